//! `numashm topology`: what decides which placement and cache policy will work.

use numashm_region::{anon_thp_mode, free_huge_pages, shmem_thp_mode, total_huge_pages, Topology};
use serde_json::json;

use crate::util::{human, table, CliError};

const HUGE_SIZES: [usize; 2] = [2 << 20, 1 << 30];

pub fn run(as_json: bool) -> Result<(), CliError> {
    let topo = Topology::get().map_err(|e| CliError(format!("topology: {e}")))?;
    let memlock = rustix::process::getrlimit(rustix::process::Resource::Memlock);
    let root = rustix::process::geteuid().is_root();
    let shmem_thp = shmem_thp_mode();
    let mut hints: Vec<String> = Vec::new();

    let mut nodes_json = Vec::new();
    let mut rows = Vec::new();
    for n in topo.nodes() {
        let free = topo.free_memory(n.os_index);
        let huge: Vec<(usize, u64, u64)> = HUGE_SIZES
            .iter()
            .map(|&s| (s, total_huge_pages(s, Some(n.os_index)).unwrap_or(0), free_huge_pages(s, Some(n.os_index)).unwrap_or(0)))
            .collect();
        let distances: Vec<u64> = topo.nodes().iter().map(|m| topo.distance(n.os_index, m.os_index).unwrap_or(0)).collect();
        if n.total_memory == 0 {
            hints.push(format!("node {} has no memory: placement on it is refused", n.os_index));
        }
        if huge[0].2 == 0 {
            hints.push(format!(
                "no free 2 MiB hugetlb pages on node {}: echo 512 > /sys/devices/system/node/node{}/hugepages/hugepages-2048kB/nr_hugepages",
                n.os_index, n.os_index
            ));
        }
        rows.push(vec![
            n.os_index.to_string(),
            human(n.total_memory),
            free.map(human).unwrap_or_else(|| "?".into()),
            compress(&n.cpus),
            format!("{}/{}", huge[0].2, huge[0].1),
            format!("{}/{}", huge[1].2, huge[1].1),
            distances.iter().map(u64::to_string).collect::<Vec<_>>().join(" "),
        ]);
        nodes_json.push(json!({
            "node": n.os_index,
            "memory_bytes": n.total_memory,
            "free_bytes": free,
            "cpus": n.cpus,
            "hugepages": huge.iter().map(|(s, t, f)| json!({"page_size": s, "total": t, "free": f})).collect::<Vec<_>>(),
            "distances": distances,
        }));
    }
    match shmem_thp.as_deref() {
        Some("always" | "advise" | "within_size" | "force") => {}
        other => hints.push(format!(
            "shmem THP is {}: PageSize::Thp fails; echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled",
            other.unwrap_or("unsupported")
        )),
    }
    if !root && memlock.current.is_some_and(|c| c < 64 << 20) {
        hints.push(format!(
            "RLIMIT_MEMLOCK is {}: CachePolicy::lock of larger regions fails; raise it (ulimit -l) or grant CAP_IPC_LOCK",
            memlock.current.map(human).unwrap_or_default()
        ));
    }
    if as_json {
        let v = json!({
            "nodes": nodes_json,
            "thp": {"anon": anon_thp_mode(), "shmem": shmem_thp},
            "rlimit_memlock": {"soft": memlock.current, "hard": memlock.maximum},
            "root": root,
            "hints": hints,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    println!("NUMA nodes ({}):", topo.nodes().len());
    print!(
        "{}",
        table(&["node", "memory", "free", "cpus", "2M free/total", "1G free/total", "distances"], &rows)
    );
    println!(
        "THP: anonymous {}, shmem {}",
        anon_thp_mode().unwrap_or_else(|| "?".into()),
        shmem_thp.unwrap_or_else(|| "?".into())
    );
    let lim = |v: Option<u64>| v.map(human).unwrap_or_else(|| "unlimited".into());
    println!(
        "RLIMIT_MEMLOCK: soft {}, hard {}{}",
        lim(memlock.current),
        lim(memlock.maximum),
        if root { " (root: CAP_IPC_LOCK ignores it)" } else { "" }
    );
    if !hints.is_empty() {
        println!("hints:");
        for h in hints {
            println!("  - {h}");
        }
    }
    Ok(())
}

/// `[0,1,2,3,8]` → `0-3,8`.
fn compress(cpus: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        out.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    if out.is_empty() {
        "-".into()
    } else {
        out.join(",")
    }
}
