//! The real `numashm` binary against real regions.

use std::io::{Seek, SeekFrom, Write};

use assert_cmd::Command;

fn numashm() -> Command {
    Command::cargo_bin("numashm").unwrap()
}

fn path(tag: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/dev/shm/numashm-cli-test-{tag}-{}", std::process::id()))
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn create_inspect_grow_rm_round_trip() {
    let p = path("roundtrip");
    let out = numashm().arg("create").arg(&p).args(["--size", "1M", "--max-peers", "8"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = stdout(&out);
    assert!(text.contains("layout 4 rendezvous") && text.contains("1 MiB") && text.contains("8 peers max"), "{text}");
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 1 << 20);

    let out = numashm().arg("inspect").arg(&p).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["layout"], 4);
    assert_eq!(v["len"], 1 << 20);
    assert_eq!(v["max_peers"], 8);
    assert!(v["peers"].as_array().unwrap().is_empty(), "nobody joined; the inspector did not join: {v:#}");
    assert!(v["channels"].as_array().unwrap().is_empty(), "{v:#}");

    let out = numashm().arg("grow").arg(&p).args(["--to", "2M"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = numashm().arg("inspect").arg(&p).output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("rendezvous") && text.contains("2 MiB") && text.contains("max peers"), "{text}");

    let out = numashm().arg("grow").arg(&p).args(["--to", "1M"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shrink"));

    numashm().arg("rm").arg(&p).assert().success();
    assert!(!p.exists());
}

#[test]
fn create_refuses_an_existing_file_and_leaves_it_alone() {
    let p = path("exists");
    std::fs::write(&p, b"keep me").unwrap();
    let out = numashm().arg("create").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("create") && err.contains(&p.display().to_string()), "{err}");
    assert_eq!(std::fs::read(&p).unwrap(), b"keep me");
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn inspect_names_the_bad_field_of_a_corrupt_rendezvous() {
    let p = path("corrupt");
    numashm().arg("create").arg(&p).assert().success();
    // The rendezvous version word (byte 4096 + 8): `version | max_peers << 32`.
    write_word(&p, 4096 + 8, 9 | 64 << 32);
    let out = numashm().arg("inspect").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("version") && err.contains(&p.display().to_string()), "{err}");
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn inspect_of_a_region_that_is_not_a_rendezvous_is_a_clear_error() {
    // A valid region whose header at 4096 is an older segment layout's
    // (magic "NUMASHMS", version 3): not a rendezvous.
    let p = path("older");
    let mut region = numashm_region::RegionOptions::new(1 << 20).create_file(&p).unwrap();
    region.write_at(4096, &u64::from_le_bytes(*b"NUMASHMS").to_le_bytes()).unwrap();
    region.write_at(4104, &3u64.to_le_bytes()).unwrap();
    region.release_ownership();
    drop(region);
    let out = numashm().arg("inspect").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("magic") && err.contains(&p.display().to_string()), "{err}");
    assert!(err.contains("not a layout-4 rendezvous"), "{err}");
    assert!(out.stdout.is_empty(), "no partial report: {}", stdout(&out));
    // It is a region: rm removes it without --force.
    numashm().arg("rm").arg(&p).assert().success();
    assert!(!p.exists());
}

#[test]
fn inspect_of_a_foreign_file_is_a_clear_error() {
    let p = path("foreign");
    std::fs::write(&p, vec![0x5a; 8192]).unwrap();
    let out = numashm().arg("inspect").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("magic"));
    // rm refuses what is not a valid region unless forced.
    numashm().arg("rm").arg(&p).assert().code(1);
    numashm().arg("rm").arg(&p).arg("--force").assert().success();
    assert!(!p.exists());
}

#[test]
fn usage_errors_exit_2() {
    numashm().arg("frobnicate").assert().code(2);
    numashm().args(["create", "/dev/shm/x", "--size", "12Q"]).assert().code(2);
    numashm().args(["create", "/dev/shm/x", "--max-peers", "0"]).assert().code(2);
    numashm().args(["create", "/dev/shm/x", "--max-peers", "1025"]).assert().code(2);
    // Options of the removed segment layout are unknown now.
    for old in [["--layout", "3"], ["--classes", "1k:16"], ["--node", "0"], ["--pages", "thp"]] {
        let out = numashm().args(["create", "/dev/shm/x"]).args(old).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{old:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(old[0]), "{old:?}");
    }
    numashm().args(["create", "/dev/shm/x", "--populate"]).assert().code(2);
    assert!(!std::path::Path::new("/dev/shm/x").exists());
}

#[test]
fn topology_json_lists_nodes_and_limits() {
    let out = numashm().args(["topology", "--json"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!v["nodes"].as_array().unwrap().is_empty());
    assert!(v["nodes"][0]["distances"].is_array());
    assert!(v["rlimit_memlock"].is_object());
}

#[test]
fn demo_runs_the_guest_sees_growth_and_the_pools_ping_pong() {
    let out = numashm().arg("demo").timeout(std::time::Duration::from_secs(120)).output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("noticed growth to 32 MiB"), "{text}");
    assert!(text.contains("noticed growth to 64 MiB"), "{text}");
    assert!(text.contains("verified on node"), "{text}");
    // The pool ping-pong: every round trip done, a median reported.
    assert!(text.contains("host: 20000 pool round trips of 64 B") && text.contains("median"), "{text}");
    assert!(text.contains("guest> echoed 21128 messages"), "20000 measured + 1000 warm-up + 128 burst + none lost: {text}");
    // The guest reads both message sizes in place through a read-only mapping of the host's pool.
    let reads: Vec<&str> = text.lines().filter(|l| l.contains("is read in place")).collect();
    assert_eq!(reads.len(), 2, "{text}");
    for l in reads {
        assert!(l.contains("(read-only) from /memfd:numashm-demo-host"), "{l}");
    }
    // Every slot sent is returned and accepted or still lent (none lost), none refused.
    let returns = text.lines().find(|l| l.starts_with("host: 21128 messages sent, ")).unwrap_or_else(|| panic!("{text}"));
    let num = |before: &str| -> u64 {
        let head = returns.split(before).next().unwrap();
        head.rsplit(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("{before}: {returns}"))
    };
    assert_eq!(num(" slots returned"), 21128 - num(" still lent"), "{returns}");
    assert_eq!(num(" refused"), 0, "{returns}");
    let inspected: Vec<&str> = text.lines().filter(|l| l.starts_with("inspect: entry")).collect();
    assert_eq!(inspected.len(), 2, "host and guest pools: {text}");
    assert!(inspected.iter().all(|l| l.contains("resident pages per node [(")), "{text}");
    let host_pid = inspected[0].split("(host, pid ").nth(1).and_then(|r| r.split(')').next()).expect("host pid");
    let rendezvous = std::path::PathBuf::from(format!("/dev/shm/numashm-demo-{host_pid}-rendezvous"));
    assert!(!rendezvous.exists(), "the demo removes its rendezvous");
}

/// A `numashm __pool-peer` child, with its stdin kept open (closing it ends the child).
struct PoolChild(std::process::Child);

impl PoolChild {
    fn start(p: &std::path::Path, role: &str) -> Self {
        let exe = assert_cmd::cargo::cargo_bin("numashm");
        let child = std::process::Command::new(exe)
            .arg("__pool-peer")
            .arg(p)
            .args([role, "300"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        PoolChild(child)
    }

    /// Waits (at most 60 s, on a watchdog thread) for the child's `ready` line.
    fn ready(&mut self) {
        use std::io::BufRead;
        let out = self.0.stdout.take().unwrap();
        let (send, recv) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(out).read_line(&mut line);
            let _ = send.send(line);
        });
        let line = recv.recv_timeout(std::time::Duration::from_secs(60)).expect("child ready within 60 s");
        assert_eq!(line.trim(), "ready");
    }

    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for PoolChild {
    fn drop(&mut self) {
        drop(self.0.stdin.take()); // the child leaves when its stdin closes
        let _ = self.0.wait();
    }
}

/// Rendezvous layout (docs/pools.md): entries from byte 5120, 16 words each;
/// channel words from byte 4608.
fn write_word(p: &std::path::Path, offset: u64, value: u64) {
    let mut f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&value.to_le_bytes()).unwrap();
}

#[test]
fn v4_create_then_inspect_two_live_peers_and_hostile_words_as_error_lines() {
    let p = path("v4");
    let out = numashm().arg("create").arg(&p).args(["--size", "4M"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).contains("layout 4"), "{}", stdout(&out));
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 4 << 20);

    let mut host = PoolChild::start(&p, "host");
    let mut guest = PoolChild::start(&p, "guest");
    host.ready();
    guest.ready();

    let out = numashm().arg("inspect").arg(&p).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["layout"], 4);
    let peers = v["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2, "{v:#}");
    for (child, sends_on, role) in [(&host, 0, "host"), (&guest, 1, "guest")] {
        let e = peers.iter().find(|e| e["pid"] == child.id()).unwrap_or_else(|| panic!("pid {} in {v:#}", child.id()));
        assert_eq!(e["state"], "Attached");
        assert_eq!(e["alive"], "yes");
        assert_eq!(e["produces"], 1u64 << sends_on);
        let pool = &e["pool"];
        assert_eq!(pool["sent"], 300, "{pool:#}");
        assert_eq!(pool["received"], 300, "{pool:#}");
        assert_eq!(pool["name"], format!("numashm-{role}"), "the name its pool header keeps: {pool:#}");
        assert_eq!(pool["dropped"], 0, "{pool:#}");
        assert!(pool["committed"].as_u64().unwrap() > 0);
        // 1000 B messages live in the 1 KiB class (class 2).
        let class = &pool["allocator"]["classes"][2];
        assert_eq!(class["slot_size"], 1024, "{pool:#}");
        assert!(class["slots"].as_u64().unwrap() > 0, "{pool:#}");
        assert!(pool["pages"]["per_node"][0]["pages"].as_u64().unwrap() > 0, "{pool:#}");
    }
    assert_eq!(v["channels"].as_array().unwrap().len(), 2);

    // Hostile words: entry 10 claims to be this test process with a pool fd that is
    // not a sealed memfd (fd 0), but nobody holds its lock (the kernel's word on
    // who lives there); channel 20's consumer word is garbage.
    let me = std::process::id();
    write_word(&p, 5120 + 10 * 128, 2 << 56 | 1 << 32 | u64::from(me));
    write_word(&p, 5120 + 10 * 128 + 16, 0);
    write_word(&p, 5120 + 10 * 128 + 24, 77);
    write_word(&p, 4608 + 20 * 8, 0xdead);
    // A corrupt pool header: this process joins and damages its own pool
    // (the only process that can write it), its allocator offset word.
    let spoiler = numashm::pool::Peer::join(&p, numashm::pool::PeerConfig::new("cli-test-spoiler")).unwrap();
    let alloc_off_word = 4096 + 9 * 8;
    let mut was = [0u8; 8];
    spoiler.pool_region().read_at(alloc_off_word, &mut was).unwrap();
    spoiler.pool_region().write_at(alloc_off_word, &3u64.to_le_bytes()).unwrap();

    let out = numashm().arg("inspect").arg(&p).output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("20       error: rendezvous channel: corrupt consumer (0xdead)"), "{text}");
    let entry10 = text.lines().find(|l| l.starts_with("10 ")).unwrap_or_else(|| panic!("entry 10 listed: {text}"));
    assert!(entry10.split_whitespace().nth(3) == Some("no"), "entry 10 is nobody's, whatever its pid says: {entry10}");
    assert!(!text.contains("pool of entry 10 "), "the pool of an entry nobody holds is not opened: {text}");
    assert!(text.contains("error: pool: corrupt allocator offset (0x3)"), "{text}");
    assert_eq!(text.matches("resident pages").count(), 3, "both children's pools and the spoiler's still reported: {text}");

    spoiler.pool_region().write_at(alloc_off_word, &was).unwrap();
    drop(spoiler);
    drop((host, guest));
    std::fs::remove_file(&p).unwrap();
}
