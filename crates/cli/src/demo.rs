//! `numashm demo`: the README's demo (its pool ping-pong is in `demo_pool.rs`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use numashm_region::{MemPolicy, PageSize, Region, RegionOptions, Topology};

use crate::util::{ctx, human, CliError};

const MIB: usize = 1 << 20;

pub fn run() -> Result<(), CliError> {
    println!("== numashm demo ==\n");
    println!("-- 1. topology --");
    crate::topology::run(false)?;
    let topo = Topology::get().map_err(|e| CliError(format!("topology: {e}")))?;

    println!("\n-- 2. a region on each node, bound before first touch, populated --");
    let dir = PathBuf::from("/dev/shm");
    let dir = if dir.is_dir() { dir } else { std::env::temp_dir() };
    for node in topo.nodes().iter().filter(|n| n.total_memory > 0) {
        let path = dir.join(format!("numashm-demo-{}-node{}", std::process::id(), node.os_index));
        let region = RegionOptions::new(16 * MIB)
            .max_len(256 * MIB)
            .node(node.os_index)
            .policy(MemPolicy::Bind)
            .page_size(PageSize::Thp)
            .populate(true)
            .fallback(true)
            .create_file(&path)
            .map_err(ctx("create", &path))?;
        let pages = region.verify_placement().map_err(ctx("verify", &path))?;
        println!(
            "node {}: {} at {:p}, {:?} pages, {} of {} pages verified on node {}",
            node.os_index,
            human(region.len() as u64),
            region.as_ptr(),
            region.cache_policy().page_size,
            pages.on_node(node.os_index),
            pages.present(),
            node.os_index
        );
        if node.os_index == topo.nodes()[0].os_index {
            grow_with_guest(&region, &path, node.os_index)?;
        }
    }
    crate::demo_pool::ping_pong(&dir)?;
    println!("\ndone.");
    Ok(())
}

fn grow_with_guest(region: &Region, path: &Path, node: u32) -> Result<(), CliError> {
    println!("\n-- 3. growth seen by a guest process --");
    region.write_at(region.data_offset(), b"hello from the host").map_err(ctx("write", path))?;
    let exe = std::env::current_exe().map_err(|e| CliError(format!("current_exe: {e}")))?;
    let mut child = Command::new(exe)
        .arg("__demo-guest")
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| CliError(format!("spawn guest: {e}")))?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    // Wait for the guest to attach before growing.
    for line in lines.by_ref() {
        let line = line.map_err(|e| CliError(format!("guest output: {e}")))?;
        println!("  guest> {line}");
        if line.starts_with("attached") {
            break;
        }
    }
    let start = Instant::now();
    for to in [32 * MIB, 64 * MIB] {
        region.resize(to).map_err(ctx("grow", path))?;
        let tail = format!("tail at {}", human(to as u64));
        region.write_at(to - 64, tail.as_bytes()).map_err(ctx("write", path))?;
        println!("host: grew to {} (epoch {}), base still {:p}", human(to as u64), region.epoch(), region.as_ptr());
        std::thread::sleep(Duration::from_millis(50));
    }
    for line in lines {
        let line = line.map_err(|e| CliError(format!("guest output: {e}")))?;
        println!("  guest> {line}");
    }
    let status = child.wait().map_err(|e| CliError(format!("wait guest: {e}")))?;
    if !status.success() {
        return Err(CliError(format!("guest failed: {status}")));
    }
    let pages = region.verify_placement().map_err(ctx("verify", path))?;
    println!(
        "host: after growth, {} pages on node {node} ({} in {:.1} ms), pages per node: {:?}",
        pages.on_node(node),
        human(region.len() as u64),
        start.elapsed().as_secs_f64() * 1e3,
        pages.per_node
    );
    Ok(())
}

/// The guest process: attach, read the host's message, follow two growths.
pub fn guest(path: &Path) -> Result<(), CliError> {
    let region = Region::attach_file(path).map_err(ctx("attach", path))?;
    let mut msg = [0u8; 19];
    region.read_at(region.data_offset(), &mut msg).map_err(ctx("read", path))?;
    println!("attached at {:p}, {}; host says {:?}", region.as_ptr(), human(region.len() as u64), String::from_utf8_lossy(&msg));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    let mut checks: u64 = 0;
    while seen < 2 {
        if Instant::now() > deadline {
            return Err(CliError("guest: growth not seen within 30 s".into()));
        }
        checks += 1;
        if region.check_and_remap().map_err(ctx("check_and_remap", path))? {
            seen += 1;
            let len = region.len();
            let mut tail = [0u8; 16];
            // The host writes the tail marker right after growing; wait for it.
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                region.read_at(len - 64, &mut tail).map_err(ctx("read", path))?;
                if tail[0] != 0 {
                    break;
                }
                std::thread::yield_now();
            }
            let pages = region.resident_pages_per_node().map_err(ctx("pages", path))?;
            println!(
                "noticed growth to {} after {checks} checks (epoch {}), base {:p}, reads {:?}, pages per node {:?}",
                human(len as u64),
                region.epoch(),
                region.as_ptr(),
                String::from_utf8_lossy(&tail).trim_end_matches('\0'),
                pages.per_node
            );
        }
        std::hint::spin_loop();
    }
    Ok(())
}
