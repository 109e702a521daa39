//! `numashm demo`: the README's demo.

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
    segment_ping_pong(&dir, topo.nodes().iter().find(|n| n.total_memory > 0).map(|n| n.os_index))?;
    println!("\ndone.");
    Ok(())
}

const ROUND_TRIPS: usize = 20_000;

fn segment_ping_pong(dir: &Path, node: Option<u32>) -> Result<(), CliError> {
    println!("\n-- 4. a segment: host and guest process ping-pong 64 B messages, growth while they run --");
    let path = dir.join(format!("numashm-demo-{}-segment", std::process::id()));
    let classes = numashm::ClassConfig::new().class(1024, 256).class(64 << 10, 16).max_extents(8);
    let mut cfg = numashm::SegmentConfig::file(&path).classes(classes).max_size(64 * MIB);
    if let Some(n) = node {
        cfg = cfg.node(n);
    }
    let seg = numashm::Segment::create(cfg).map_err(ctx("create", &path))?;
    let exe = std::env::current_exe().map_err(|e| CliError(format!("current_exe: {e}")))?;
    let child = Command::new(exe)
        .arg("__demo-seg-guest")
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| CliError(format!("spawn guest: {e}")))?;
    let fail = |e: &dyn std::fmt::Display| CliError(format!("ping-pong on {}: {e}", path.display()));
    let tx = seg.sender(0).map_err(|e| fail(&e))?;
    let rx = seg.receiver(1).map_err(|e| fail(&e))?;
    let mut rtts = Vec::with_capacity(ROUND_TRIPS);
    let extents_before = seg.allocator().extent_count(0);
    let len_before = seg.region().len();
    for i in 0..ROUND_TRIPS + 1000 {
        if i == ROUND_TRIPS / 2 {
            // Growth while traffic flows: a burst of 300 messages in flight at once
            // needs more than the first extent's 256 slots, so the host grows the
            // class (the region grows in place) and the guest meets handles in an
            // extent it has not mapped yet.
            let burst: Vec<_> = (0..300).map(|_| tx.alloc(64)).collect::<Result<_, _>>().map_err(|e| fail(&e))?;
            for mut m in burst {
                m.fill(0xAB);
                tx.send(m).map_err(|e| fail(&e.error))?;
            }
            for _ in 0..300 {
                let m = rx.recv_timeout(Duration::from_secs(10)).map_err(|e| fail(&e))?;
                if m.iter().any(|&b| b != 0xAB) {
                    return Err(CliError("burst reply corrupted".into()));
                }
            }
        }
        let t = Instant::now();
        let mut msg = tx.alloc(64).map_err(|e| fail(&e))?;
        msg.fill(i as u8);
        tx.send(msg).map_err(|e| fail(&e.error))?;
        let reply = loop {
            match rx.try_recv() {
                Ok(m) => break m,
                Err(numashm::MessageError::Empty) => std::hint::spin_loop(),
                Err(e) => return Err(fail(&e)),
            }
        };
        if reply.len() != 64 || reply.iter().any(|&b| b != i as u8) {
            return Err(CliError(format!("round trip {i}: reply corrupted")));
        }
        drop(reply);
        if i >= 1000 {
            rtts.push(t.elapsed().as_nanos() as u64);
        }
    }
    // A zero-length message tells the guest to stop.
    tx.send_blocking(tx.alloc(0).map_err(|e| fail(&e))?).map_err(|e| fail(&e.error))?;
    let out = child.wait_with_output().map_err(|e| CliError(format!("wait guest: {e}")))?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("  guest> {line}");
    }
    if !out.status.success() {
        return Err(CliError(format!("guest failed: {}", out.status)));
    }
    rtts.sort_unstable();
    println!(
        "host: {ROUND_TRIPS} round trips of 64 B (alloc, write, send; guest reads, frees, replies): median {} ns, p99 {} ns",
        rtts[rtts.len() / 2],
        rtts[rtts.len() * 99 / 100]
    );
    println!(
        "host: class 0 grew from {} to {} extents during the run; region {} -> {}, base {:p} unchanged",
        extents_before,
        seg.allocator().extent_count(0),
        human(len_before as u64),
        human(seg.region().len() as u64),
        seg.region().as_ptr()
    );
    let pages = seg.region().verify_placement().map_err(ctx("verify", &path))?;
    println!("host: segment pages per node {:?} (placement {:?})", pages.per_node, seg.region().placement().map(|p| p.policy()));
    Ok(())
}

/// The segment guest: echo every message back until a zero-length one.
pub fn segment_guest(path: &Path) -> Result<(), CliError> {
    let seg = numashm::Segment::attach(path).map_err(ctx("attach", path))?;
    let fail = |e: &dyn std::fmt::Display| CliError(format!("guest on {}: {e}", path.display()));
    let rx = seg.receiver(0).map_err(|e| fail(&e))?;
    let tx = seg.sender(1).map_err(|e| fail(&e))?;
    let len0 = seg.region().len();
    let mut n = 0u64;
    loop {
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(numashm::MessageError::Empty) => {
                std::hint::spin_loop();
                continue;
            }
            Err(e) => return Err(fail(&e)),
        };
        if msg.is_empty() {
            break;
        }
        let mut reply = tx.alloc(msg.len()).map_err(|e| fail(&e))?;
        reply.copy_from_slice(&msg);
        drop(msg);
        tx.send_blocking(reply).map_err(|e| fail(&e.error))?;
        n += 1;
    }
    println!(
        "echoed {n} messages; my mapping at {:p} grew from {} to {} as handles from the new extent arrived",
        seg.region().as_ptr(),
        human(len0 as u64),
        human(seg.region().len() as u64)
    );
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
