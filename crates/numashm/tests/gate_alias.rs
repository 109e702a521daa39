//! A rogue without a ticket advertises its pool under the gatekeeper's own
//! pid: the gatekeeper once opened the rogue's pool (read-only, to look at
//! it), so `/proc/GATEKEEPER/fd/N` *is* the rogue's pool. The rogue writes the
//! gatekeeper's pid into its own pool header and its rendezvous entry. A check
//! that asks "which process holds this fd?" admits it as the gatekeeper's own
//! process; the kernel's answer to "which process maps it writable?" does not.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::role;
use numashm::pool::{ChannelError, Peer, PeerConfig};

const T: Duration = Duration::from_secs(60);
const NAME: &str = "a_rogue_advertising_its_pool_under_the_gatekeepers_pid_is_refused";

/// Rendezvous layout (docs/pools.md): entries from byte 5120, 16 words each.
const PEERS_OFF: u64 = 5120;
const POOL_HEADER: usize = 4096;

/// The rogue: produces channel 0 (refused by the gatekeeper), then, told the
/// gatekeeper's pid, finds the gatekeeper's fd of its pool and advertises
/// its pool under the gatekeeper's identity; then keeps still (its own
/// upkeep would repair its entry).
fn rogue() {
    let path = std::env::var("NUMASHM_PATH").unwrap();
    let peer = Peer::join(&path, PeerConfig::new("alias-rogue")).unwrap();
    let tx = peer.sender(0).unwrap();
    let send = |i: u64| {
        let mut m = tx.alloc(8).unwrap();
        m.copy_from_slice(&i.to_le_bytes());
        let _ = tx.send(m); // a send binds a consumer that linked us; it never waits
    };
    (0..10).for_each(send);
    println!("\nsent {}", peer.entry());
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    let gate: u32 = line.trim().parse().unwrap();
    // The gatekeeper's fd of our pool: same inode as ours.
    let ours = rustix::fs::fstat(peer.pool_region().as_fd()).unwrap();
    let fd = std::fs::read_dir(format!("/proc/{gate}/fd"))
        .unwrap()
        .flatten()
        .find_map(|e| {
            let st = std::fs::metadata(e.path()).ok()?;
            use std::os::unix::fs::MetadataExt;
            (st.ino() == ours.st_ino && st.dev() == ours.st_dev).then(|| e.file_name().to_string_lossy().parse::<u64>().ok())?
        })
        .expect("the gatekeeper holds an fd of our pool (it looked at it)");
    let gate_start = numashm_region::process::start_time(gate).unwrap();
    // Our pool header: pid (word 3), start (4), owner word (15).
    let pool = peer.pool_region();
    pool.write_at(POOL_HEADER + 3 * 8, &u64::from(gate).to_le_bytes()).unwrap();
    pool.write_at(POOL_HEADER + 4 * 8, &gate_start.to_le_bytes()).unwrap();
    pool.write_at(POOL_HEADER + 15 * 8, &(u64::from(gate) | gate_start << 22).to_le_bytes()).unwrap();
    // Our entry: same state and epoch, the gatekeeper's pid, start and fd number.
    let rdv = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let at = PEERS_OFF + u64::from(peer.entry()) * 128;
    let mut w = [0u8; 8];
    std::os::unix::fs::FileExt::read_exact_at(&rdv, &mut w, at).unwrap();
    let ident = u64::from_le_bytes(w) & !0xffff_ffff | u64::from(gate);
    let put = |word: u64, v: u64| std::os::unix::fs::FileExt::write_all_at(&rdv, &v.to_le_bytes(), at + word * 8).unwrap();
    put(1, gate_start);
    put(2, fd);
    put(0, ident);
    // The change counter (header word 2 at 4096 + 16): peers rescan.
    let mut c = [0u8; 8];
    std::os::unix::fs::FileExt::read_exact_at(&rdv, &mut c, 4096 + 16).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&rdv, &(u64::from_le_bytes(c) + 1).to_le_bytes(), 4096 + 16).unwrap();
    println!("\naliased {fd}");
    // Keep sending (binding whoever linked us) until the parent is done; no
    // call that waits, so no upkeep repairs the entry.
    let stop = std::thread::spawn(|| {
        let mut rest = Vec::new();
        let _ = std::io::stdin().lock().read_to_end(&mut rest);
    });
    let mut i = 10;
    while !stop.is_finished() {
        send(i);
        i += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    std::mem::forget(peer); // never repair the entry, even on the way out
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_rogue_advertising_its_pool_under_the_gatekeepers_pid_is_refused() {
    if role().as_deref() == Some("rogue") {
        return rogue();
    }
    let path = common::path("gate-alias");
    let gate = Peer::create(&path, 4, PeerConfig::new("alias-gate").gatekeeper()).unwrap();
    let rx = gate.receiver(0).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env("NUMASHM_ROLE", "rogue")
        .env("NUMASHM_PATH", &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + T;
    let wait_for = |prefix: &str| loop {
        assert!(Instant::now() < deadline, "the rogue never said {prefix}");
        // Our receives rescan: we look at (and refuse) the rogue's pool meanwhile.
        if let Ok(m) = rx.recv_timeout(Duration::from_millis(5)) {
            panic!("a message from the rogue got through: {:?}", &m[..]);
        }
        if let Ok(line) = lines.try_recv() {
            if line.trim().starts_with(prefix) {
                return;
            }
        }
    };
    wait_for("sent");
    while !gate.refused_peers().contains(&child.id()) {
        assert!(Instant::now() < deadline, "the rogue was never refused");
        let _ = rx.recv_timeout(Duration::from_millis(5));
    }
    writeln!(child.stdin.as_mut().unwrap(), "{}", std::process::id()).unwrap();
    wait_for("aliased");
    // The rogue's entry now names us; its pool is reached through our own fd.
    let r = numashm::pool::inspect(&path).unwrap();
    assert_eq!(r.entries.iter().filter(|e| e.pid == std::process::id()).count(), 2, "the alias is in place");
    let settle = Instant::now() + Duration::from_secs(1);
    while Instant::now() < settle {
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(m) => panic!("the rogue's message {:?} was admitted under our pid", &m[..]),
            Err(ChannelError::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(gate.refused_peers().contains(&std::process::id()), "the alias was looked at and refused: {:?}", gate.refused_peers());
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
}
