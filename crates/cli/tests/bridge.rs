//! `numashm bridge out|in`: two segments ("two hosts") joined by two bridge
//! processes talking Zenoh over TCP on 127.0.0.1 (scouting off, explicit
//! endpoints). A sender on segment A and a receiver on segment B run in this
//! process, each its own peer.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use numashm::{ChannelError, Peer, PeerConfig};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn segment(tag: &str) -> std::path::PathBuf {
    let p = std::path::PathBuf::from(format!("/dev/shm/numashm-cli-bridge-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    numashm::pool::create_rendezvous(&p, 8, 0).unwrap();
    p
}

/// A bridge process; its stdout lines arrive on `lines`.
struct Bridge {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Bridge {
    fn start(args: &[&str]) -> Bridge {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("numashm"))
            .arg("bridge")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let b = Bridge { child, lines };
        let ready = b.lines.recv_timeout(Duration::from_secs(60)).expect("bridge ready within 60 s");
        assert_eq!(ready, "ready");
        b
    }

    /// SIGTERM, then its final report line (it must exit 0 within 30 s).
    fn stop(mut self) -> String {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let report = self.lines.recv_timeout(Duration::from_secs(30)).expect("a report line");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}: {report}");
        report
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Bridge {
    /// A test that fails leaves no bridge behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn message(i: u64, buf: &mut [u8]) {
    buf[..8].copy_from_slice(&i.to_le_bytes());
    for (k, b) in buf[8..].iter_mut().enumerate() {
        *b = (i as usize).wrapping_mul(131).wrapping_add(k * 7) as u8;
    }
}

/// Mixed sizes: mostly 8–1 KiB, every 997th 64 KiB, every 9973rd 1 MiB.
fn len_of(i: u64) -> usize {
    if i % 9973 == 1 {
        1 << 20
    } else if i % 997 == 0 {
        64 << 10
    } else {
        8 + (i as usize * 37) % 1000
    }
}

/// The index of a message whose bytes are all right (panics otherwise).
fn checked(m: &[u8]) -> u64 {
    let i = u64::from_le_bytes(m[..8].try_into().unwrap());
    assert_eq!(m.len(), len_of(i), "message {i}: length");
    for (k, &b) in m[8..].iter().enumerate() {
        assert_eq!(b, (i as usize).wrapping_mul(131).wrapping_add(k * 7) as u8, "message {i}: byte {k}");
    }
    i
}

/// Sends `0..n` on channel 0 of `seg` (waiting for room, bounded).
fn send_all(seg: &std::path::Path, n: u64) {
    let peer = Peer::join(seg, PeerConfig::new("test-sender")).unwrap();
    let tx = peer.sender(0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    for i in 0..n {
        let mut m = loop {
            match tx.alloc(len_of(i)) {
                Ok(m) => break m,
                Err(e) => {
                    assert!(Instant::now() < deadline, "alloc of {i}: {e}");
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        };
        message(i, &mut m);
        let mut m = Some(m);
        while let Some(msg) = m.take() {
            if let Err(e) = tx.send_timeout(msg, Duration::from_millis(200)) {
                assert!(Instant::now() < deadline, "message {i} never sent: {}", e.error);
                m = Some(e.message);
            }
        }
    }
    // Stay attached until the bridge returned everything (its slots are ours).
    let lent = |p: &Peer| p.census().classes.iter().map(|c| c.lent).sum::<u64>() + p.census().dedicated.lent;
    while lent(&peer) > 0 {
        assert!(Instant::now() < deadline, "{} slots never came back from the bridge", lent(&peer));
        peer.collect_returns();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Receives on channel 0 of `seg` until `n` messages came, or nothing came
/// for 10 s (the caller then sees what is missing); calls `at(count)` after
/// each. Returns the indices in arrival order.
fn receive(seg: &std::path::Path, n: u64, mut at: impl FnMut(u64)) -> Vec<u64> {
    let peer = Peer::join(seg, PeerConfig::new("test-receiver")).unwrap();
    let rx = peer.receiver(0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut got = Vec::with_capacity(n as usize);
    let mut last = Instant::now();
    while (got.len() as u64) < n && last.elapsed() < Duration::from_secs(10) {
        assert!(Instant::now() < deadline, "only {} of {n} came (last {:?})", got.len(), got.last());
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(m) => {
                got.push(checked(&m));
                at(got.len() as u64);
                last = Instant::now();
            }
            Err(ChannelError::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(matches!(rx.recv_timeout(Duration::from_millis(500)), Err(ChannelError::TimedOut)), "nothing more comes");
    got
}

fn field(report: &str, name: &str) -> u64 {
    let at = report.find(&format!("{name} ")).unwrap_or_else(|| panic!("{name} in {report}")) + name.len() + 1;
    report[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn a_hundred_thousand_messages_cross_two_bridge_processes_in_order_none_twice() {
    const N: u64 = 100_000;
    let (a, b) = (segment("a"), segment("b"));
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let key = format!("numashm/test/cli/{}", std::process::id());
    let state = format!("{}.state", b.display());
    let _ = std::fs::remove_file(&state);
    let out = Bridge::start(&["out", "--segment", a.to_str().unwrap(), "--ring", "0", "--key", &key, "--listen", &endpoint]);
    let inb = Bridge::start(&["in", "--key", &key, "--segment", b.to_str().unwrap(), "--ring", "0", "--connect", &endpoint, "--state", &state]);
    std::thread::scope(|s| {
        let rx = s.spawn(|| receive(&b, N, |_| {}));
        send_all(&a, N);
        let got = rx.join().unwrap();
        assert!(got.iter().copied().eq(0..N), "in order, none twice, none missing");
    });
    let report = inb.stop();
    assert_eq!([field(&report, "delivered"), field(&report, "lost"), field(&report, "dropped"), field(&report, "in doubt")], [N, 0, 0, 0], "{report}");
    let report = out.stop();
    assert_eq!(field(&report, "published"), N, "{report}");
    for p in [&a, &b] {
        std::fs::remove_file(p).unwrap();
    }
    std::fs::remove_file(&state).unwrap();
}

#[test]
fn an_inbound_bridge_killed_and_restarted_mid_stream_loses_nothing_and_repeats_nothing() {
    const N: u64 = 30_000;
    let (a, b) = (segment("ra"), segment("rb"));
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let key = format!("numashm/test/restart/{}", std::process::id());
    let state = format!("{}.state", b.display());
    let _ = std::fs::remove_file(&state);
    let in_args = ["in", "--key", &key, "--segment", b.to_str().unwrap(), "--ring", "0", "--connect", &endpoint, "--state", &state];
    let out = Bridge::start(&["out", "--segment", a.to_str().unwrap(), "--ring", "0", "--key", &key, "--listen", &endpoint]);
    let first = Bridge::start(&in_args);
    let (at_third, third) = mpsc::channel::<()>();
    let got = std::thread::scope(|s| {
        let rx = s.spawn(|| {
            receive(&b, N, |count| {
                if count == N / 3 {
                    let _ = at_third.send(());
                }
            })
        });
        let tx = s.spawn(|| send_all(&a, N));
        third.recv_timeout(Duration::from_secs(120)).expect("a third arrived");
        first.kill9();
        let second = Bridge::start(&in_args);
        let got = rx.join().unwrap();
        tx.join().unwrap();
        let report = second.stop();
        (got, report)
    });
    let (got, report) = got;
    let stats = numashm_bridge::read_stats(&state).unwrap();
    let mut seen = vec![false; N as usize];
    for &i in &got {
        assert!(!std::mem::replace(&mut seen[i as usize], true), "message {i} came twice");
    }
    // In order across the restart too: the receiver reads what the killed
    // bridge left in its ring before it links the new bridge's (pools.md, step 5).
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order across the restart");
    // A kill between the ring's tail store and the state file's store leaves
    // that one message in doubt (delivered or not: the next run skips it).
    let missing = seen.iter().filter(|s| !**s).count() as u64;
    assert!(missing == 0 || missing <= stats.in_doubt, "{missing} never came: {stats:?}");
    assert_eq!((stats.lost, stats.dropped, stats.runs), (0, 0, 2), "{stats:?}");
    assert!(N - stats.delivered <= 1 + stats.in_doubt, "{stats:?}");
    assert_eq!((field(&report, "lost"), field(&report, "over")), (0, 2), "{report}");
    let report = out.stop();
    assert!(field(&report, "published") >= N, "{report}");
    for p in [&a, &b] {
        std::fs::remove_file(p).unwrap();
    }
    std::fs::remove_file(&state).unwrap();
}
