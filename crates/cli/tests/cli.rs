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
    let out = numashm()
        .args(["create"])
        .arg(&p)
        .args(["--layout", "3", "--size", "4M", "--max-size", "64M", "--node", "0", "--populate", "--classes", "1k:64,16k:16"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).contains("4 MiB"));

    let out = numashm().arg("inspect").arg(&p).arg("--json").output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["len"], 4 << 20);
    assert_eq!(v["epoch"], 0);
    assert_eq!(v["placement"]["policy"], "Bind");
    assert_eq!(v["pages"]["per_node"][0]["node"], 0);
    assert_eq!(v["pages"]["per_node"][0]["pages"], 1024, "populated pages measured on node 0");
    assert_eq!(v["classes"][1]["slot_size"], 16384);
    assert_eq!(v["rings"].as_array().unwrap().len(), 2);
    assert!(v["peers"].as_array().unwrap().is_empty(), "the creator detached; the inspector did not join");

    let out = numashm().arg("grow").arg(&p).args(["--to", "8M"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = numashm().arg("inspect").arg(&p).output().unwrap();
    let text = stdout(&out);
    assert!(text.contains("8 MiB") && text.contains("growth epoch"), "{text}");

    let out = numashm().arg("grow").arg(&p).args(["--to", "4M"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shrink"));

    numashm().arg("rm").arg(&p).assert().success();
    assert!(!p.exists());
}

#[test]
fn inspect_names_the_bad_field_of_a_corrupt_file() {
    let p = path("corrupt");
    numashm().arg("create").arg(&p).args(["--layout", "3", "--size", "1M", "--classes", "1k:16"]).assert().success();
    let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.seek(SeekFrom::Start(8)).unwrap();
    f.write_all(&[9, 0, 0, 0]).unwrap();
    drop(f);
    let out = numashm().arg("inspect").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("version") && err.contains(&p.display().to_string()), "{err}");
    // rm refuses what is not a valid region unless forced.
    numashm().arg("rm").arg(&p).assert().code(1);
    numashm().arg("rm").arg(&p).arg("--force").assert().success();
}

#[test]
fn inspect_of_a_foreign_file_is_a_clear_error() {
    let p = path("foreign");
    std::fs::write(&p, vec![0x5a; 8192]).unwrap();
    let out = numashm().arg("inspect").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("magic"));
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn usage_errors_exit_2() {
    numashm().arg("frobnicate").assert().code(2);
    numashm().args(["create", "/dev/shm/x", "--size", "12Q"]).assert().code(2);
    numashm().args(["create", "/dev/shm/x", "--layout", "3", "--size", "1M", "--classes", "1k"]).assert().code(2);
    numashm().args(["create", "/dev/shm/x", "--layout", "5"]).assert().code(2);
}

#[test]
fn create_too_small_for_the_classes_says_how_much_is_needed() {
    let p = path("small");
    let out = numashm().arg("create").arg(&p).args(["--layout", "3", "--size", "64k"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("size") && err.contains("need"), "{err}");
    assert!(!p.exists());
}

#[test]
fn inspect_shows_a_live_peer_without_joining() {
    let p = path("live");
    numashm().arg("create").arg(&p).args(["--layout", "3", "--size", "1M", "--classes", "1k:16"]).assert().success();
    // A live peer: this test process attaches and sends one message.
    let seg = numashm::Segment::attach(&p).unwrap();
    let tx = seg.sender(0).unwrap();
    tx.send(tx.alloc(10).unwrap()).map_err(|e| e.error).unwrap();
    let out = numashm().arg("inspect").arg(&p).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let peers = v["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["pid"], std::process::id());
    assert_eq!(peers[0]["alive"], true);
    assert_eq!(peers[0]["sent"], 1);
    assert_eq!(v["rings"][0]["fill"], 1);
    // The message waits in ring 0 for a consumer: the ring holds its slot.
    assert_eq!(v["classes"][0]["extents"][0]["in_flight"], 1);
    assert_eq!(v["classes"][0]["extents"][0]["free"], 15);
    drop(tx);
    drop(seg);
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn create_with_unknown_node_fails_with_the_path_and_no_file() {
    let p = path("badnode");
    let out = numashm().arg("create").arg(&p).args(["--layout", "3", "--size", "1M", "--classes", "1k:16", "--node", "200"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("node 200") && err.contains("create"), "{err}");
    assert!(!p.exists());
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
fn demo_runs_and_the_guest_sees_growth() {
    let out = numashm().arg("demo").timeout(std::time::Duration::from_secs(120)).output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("noticed growth to 32 MiB"), "{text}");
    assert!(text.contains("noticed growth to 64 MiB"), "{text}");
    assert!(text.contains("verified on node"), "{text}");
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
    // Layout-3 options are refused with layout 4, by name.
    let out = numashm().arg("create").arg(format!("{}-x", p.display())).args(["--classes", "1k:16"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--layout 3"));

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
    for (child, sends_on) in [(&host, 0), (&guest, 1)] {
        let e = peers.iter().find(|e| e["pid"] == child.id()).unwrap_or_else(|| panic!("pid {} in {v:#}", child.id()));
        assert_eq!(e["state"], "Attached");
        assert_eq!(e["alive"], "yes");
        assert_eq!(e["produces"], 1u64 << sends_on);
        let pool = &e["pool"];
        assert_eq!(pool["sent"], 300, "{pool:#}");
        assert_eq!(pool["received"], 300, "{pool:#}");
        assert!(pool["committed"].as_u64().unwrap() > 0);
        // 1000 B messages live in the 1 KiB class (class 2).
        let class = &pool["allocator"]["classes"][2];
        assert_eq!(class["slot_size"], 1024, "{pool:#}");
        assert!(class["slots"].as_u64().unwrap() > 0, "{pool:#}");
        assert!(pool["pages"]["per_node"][0]["pages"].as_u64().unwrap() > 0, "{pool:#}");
    }
    assert_eq!(v["channels"].as_array().unwrap().len(), 2);

    // Hostile words: entry 10 claims to be this test process with a pool fd that is
    // not a sealed memfd (fd 0); channel 20's consumer word is garbage.
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
    assert!(text.contains("pool of entry 10 (pid"), "{text}");
    let entry10 = text.lines().find(|l| l.starts_with("pool of entry 10 ")).unwrap();
    assert!(entry10.contains("error:"), "{entry10}");
    assert!(text.contains("error: pool: corrupt allocator offset (0x3)"), "{text}");
    assert_eq!(text.matches("resident pages").count(), 3, "both children's pools and the spoiler's still reported: {text}");

    spoiler.pool_region().write_at(alloc_off_word, &was).unwrap();
    drop(spoiler);
    drop((host, guest));
    std::fs::remove_file(&p).unwrap();
}
