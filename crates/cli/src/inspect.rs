//! `numashm inspect PATH`: validate and show a region without disturbing it.

use std::path::Path;

use numashm_region::{AttachOptions, Region};
use serde_json::json;

use crate::util::{ctx, human, table, CliError};

pub fn run(path: &Path, as_json: bool) -> Result<(), CliError> {
    // Read-only: an observer must not be able to change what it inspects.
    let region = Region::attach_file_with(path, AttachOptions { read_only: true }).map_err(ctx("inspect", path))?;
    let info = region.header_info().map_err(ctx("inspect", path))?;
    let pages = region.resident_pages_per_node().map_err(ctx("measure pages of", path))?;
    let creator_alive = std::path::Path::new(&format!("/proc/{}", info.creator_pid)).exists();
    let placement = info
        .placement
        .map(|p| (format!("{:?}", p.policy()), p.nodes().iter().collect::<Vec<u32>>()));
    if as_json {
        let v = json!({
            "path": path.display().to_string(),
            "version": info.version,
            "len": info.len,
            "max_len": info.max_len,
            "epoch": info.epoch,
            "page_size": format!("{:?}", info.cache.page_size),
            "populate": info.cache.populate,
            "lock": info.cache.lock,
            "commit": info.commit,
            "placement": placement.as_ref().map(|(p, n)| json!({"policy": p, "nodes": n})),
            "creator_pid": info.creator_pid,
            "creator_alive": creator_alive,
            "pages": {
                "page_size": pages.page_size,
                "per_node": pages.per_node.iter().map(|(n, c)| json!({"node": n, "pages": c})).collect::<Vec<_>>(),
                "not_resident": pages.not_present,
            },
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    println!("region {}", path.display());
    let rows = vec![
        vec!["layout version".into(), info.version.to_string()],
        vec!["size".into(), human(info.len as u64)],
        vec!["max size".into(), human(info.max_len as u64)],
        vec!["growth epoch".into(), info.epoch.to_string()],
        vec!["page size".into(), format!("{:?}", info.cache.page_size)],
        vec![
            "cache policy".into(),
            format!("populate={} lock={} commit={}", info.cache.populate, info.cache.lock, info.commit),
        ],
        vec![
            "placement".into(),
            placement.map(|(p, n)| format!("{p} on nodes {n:?}")).unwrap_or_else(|| "none (first touch)".into()),
        ],
        vec![
            "creator".into(),
            format!("pid {} ({})", info.creator_pid, if creator_alive { "alive" } else { "gone" }),
        ],
    ];
    print!("{}", table(&["field", "value"], &rows));
    println!("pages per NUMA node (measured now, {} pages):", human(pages.page_size as u64));
    let mut rows: Vec<Vec<String>> = pages
        .per_node
        .iter()
        .map(|(n, c)| vec![n.to_string(), c.to_string(), human((*c * pages.page_size) as u64)])
        .collect();
    rows.push(vec!["not resident".into(), pages.not_present.to_string(), human((pages.not_present * pages.page_size) as u64)]);
    print!("{}", table(&["node", "pages", "bytes"], &rows));
    Ok(())
}
