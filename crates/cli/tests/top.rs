//! `numashm top` against a rendezvous with live peers: `--once --json`, and
//! the live view driven in a pseudo-terminal (util-linux `script`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn exe() -> PathBuf {
    assert_cmd::cargo::cargo_bin("numashm")
}

fn path(tag: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/numashm-top-test-{tag}-{}", std::process::id()))
}

/// Waits for `child` at most `limit`; kills it (ours) and fails past that.
fn wait_or_kill(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two `numashm __pool-peer` children ping-ponging (the host sends on channel 0,
/// the guest on 1) for as long as the test needs: ROUNDS is more than they reach before
/// they are killed (or their own 120 s watchdog ends them).
struct Traffic(Vec<Child>);

impl Traffic {
    fn start(p: &Path) -> Self {
        let spawn = |role: &str| {
            Command::new(exe())
                .arg("__pool-peer")
                .arg(p)
                .args([role, "1000000000"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        };
        let t = Traffic(vec![spawn("host"), spawn("guest")]);
        // Until both are attached and messages flow both ways (at most 60 s).
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let r = numashm::pool::inspect(p).unwrap();
            let flowing = r.live_peers().filter(|e| e.pool.as_ref().is_some_and(|p| p.as_ref().is_ok_and(|p| p.sent > 0))).count();
            if flowing == 2 {
                return t;
            }
            assert!(Instant::now() < end, "no traffic within 60 s: {r:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pids(&self) -> Vec<u32> {
        self.0.iter().map(Child::id).collect()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn once_json_shows_live_peers_channels_rates_and_pages_per_node() {
    let p = path("json");
    let out = Command::new(exe()).arg("create").arg(&p).args(["--max-peers", "8"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let traffic = Traffic::start(&p);
    let mut top = Command::new(exe())
        .arg("top")
        .arg(&p)
        .args(["--once", "--json", "--interval", "500"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_or_kill(&mut top, Duration::from_secs(60), "top --once --json");
    let (mut stdout, mut stderr) = (String::new(), String::new());
    top.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    top.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let peers = v["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2, "{v:#}");
    for pid in traffic.pids() {
        let e = peers.iter().find(|e| e["pid"] == pid).unwrap_or_else(|| panic!("pid {pid}: {v:#}"));
        assert_eq!((e["state"].as_str(), e["alive"].as_str()), (Some("Attached"), Some("yes")), "{e:#}");
        assert!(e["sent_per_s"].as_f64().unwrap() > 0.0, "{e:#}");
        assert!(e["received_per_s"].as_f64().unwrap() > 0.0, "{e:#}");
    }
    let entry_of = |pid: u32| peers.iter().find(|e| e["pid"] == pid).unwrap()["entry"].clone();
    let (host, guest) = (entry_of(traffic.pids()[0]), entry_of(traffic.pids()[1]));
    let channels = v["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 2, "{v:#}");
    for (c, producer, consumer) in [(0, &host, &guest), (1, &guest, &host)] {
        let ch = channels.iter().find(|x| x["channel"] == c).unwrap_or_else(|| panic!("channel {c}: {v:#}"));
        assert_eq!(&ch["consumer"], consumer, "{ch:#}");
        assert_eq!(ch["producers"], serde_json::json!([producer]), "{ch:#}");
        assert!(ch["per_s"].as_f64().unwrap() > 0.0, "{ch:#}");
        let ring = &ch["rings"][0];
        assert_eq!(ring["bound"], true, "{ch:#}");
        assert!(ring["fill"].as_u64().unwrap() <= ring["capacity"].as_u64().unwrap(), "{ch:#}");
    }
    let pools = v["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 2, "{v:#}");
    for pool in pools {
        let pages: u64 = pool["pages_per_node"].as_array().unwrap().iter().map(|n| n["pages"].as_u64().unwrap()).sum();
        assert!(pages > 0, "{pool:#}");
        assert!(pool["classes"].as_array().unwrap().iter().any(|c| c["slot_size"] == 1024), "1000 B messages: {pool:#}");
    }
    assert_eq!(v["recoveries"]["bad_returns"], 0, "{v:#}");
    drop(traffic);
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn once_json_requires_once_and_a_missing_file_is_an_error() {
    let out = Command::new(exe()).args(["top", "/dev/shm/nothing-here", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "--json without --once is a usage error");
    let out = Command::new(exe()).args(["top", "/dev/shm/numashm-top-test-missing", "--once"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("top /dev/shm/numashm-top-test-missing"));
}

/// Runs `numashm top` in a pseudo-terminal of 150 × 40 (util-linux `script`),
/// sends `key` after 1.5 s, and returns (exit status, everything the terminal got).
fn top_in_pty(p: &Path, key: &[u8]) -> (std::process::ExitStatus, String) {
    top_in_pty_then(p, Poke::Key(key))
}

/// What the test does to `top` after 1.5 s.
enum Poke<'a> {
    Key(&'a [u8]),
    /// SIGTERM to `top` itself (the child `script` started).
    Term,
}

fn top_in_pty_then(p: &Path, poke: Poke<'_>) -> (std::process::ExitStatus, String) {
    let cmd = format!("stty cols 150 rows 40; exec {} top {} --interval 200", exe().display(), p.display());
    let mut child = Command::new("script")
        .args(["-q", "-e", "-f", "-c", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` (Debian: bsdutils)");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    std::thread::sleep(Duration::from_millis(1500));
    let mut stdin = child.stdin.take().unwrap();
    match poke {
        Poke::Key(key) => {
            stdin.write_all(key).unwrap();
            stdin.flush().unwrap();
        }
        Poke::Term => {
            let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
            let top: i32 = children.split_whitespace().next().expect("script's child, top").parse().unwrap();
            rustix::process::kill_process(rustix::process::Pid::from_raw(top).unwrap(), rustix::process::Signal::TERM).unwrap();
        }
    }
    let status = wait_or_kill(&mut child, Duration::from_secs(30), "top in a pty");
    drop(stdin);
    let out = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    (status, out)
}

#[test]
fn the_live_view_draws_peers_and_restores_the_terminal_on_q_and_ctrl_c() {
    let p = path("pty");
    let out = Command::new(exe()).arg("create").arg(&p).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // One peer, joined by this process, so the peers table has a row.
    let peer = numashm::pool::Peer::join(&p, numashm::pool::PeerConfig::new("top-pty-peer")).unwrap();
    for key in [&b"q"[..], &b"\x03"[..]] {
        let (status, out) = top_in_pty(&p, key);
        assert!(status.success(), "key {key:?}: {status:?}\n{out}");
        assert!(out.contains("\x1b[?1049h"), "entered the alternate screen: {out:?}");
        assert!(out.contains("peers") && out.contains("produces") && out.contains("channels"), "{out:?}");
        assert!(out.contains(&std::process::id().to_string()), "our peer's pid in the table: {out:?}");
        // Restored: the alternate screen left (and the cursor shown) after the last frame.
        let left = out.rfind("\x1b[?1049l").unwrap_or_else(|| panic!("alternate screen never left: {out:?}"));
        assert!(left > out.rfind("peers").unwrap(), "{out:?}");
        assert!(out[left..].contains("\x1b[?25h"), "cursor shown again: {out:?}");
    }
    drop(peer);
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn the_live_view_restores_the_terminal_on_sigterm() {
    let p = path("pty-term");
    let out = Command::new(exe()).arg("create").arg(&p).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, out) = top_in_pty_then(&p, Poke::Term);
    assert!(status.success(), "SIGTERM ends top like q: {status:?}\n{out}");
    assert!(out.contains("\x1b[?1049h"), "entered the alternate screen: {out:?}");
    let left = out.rfind("\x1b[?1049l").unwrap_or_else(|| panic!("alternate screen never left: {out:?}"));
    assert!(out[left..].contains("\x1b[?25h"), "cursor shown again: {out:?}");
    std::fs::remove_file(&p).unwrap();
}
