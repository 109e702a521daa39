//! A consumer that gave every message back and was then killed before its
//! producer took the returns: the producer takes them from the dead reader's
//! return ring (its pool is frozen, still mapped by the binding), so they
//! count as returned, not as lost to a dead consumer.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::role;
use numashm::pool::{Peer, PeerConfig};

const T: Duration = Duration::from_secs(60);
const N: u64 = 50;
const NAME: &str = "returns_a_reader_gave_back_before_it_died_count_as_returned_not_lost";

/// Receives `N`, holds them until told (a stdin line), gives them all back,
/// says so and waits to be killed.
fn reader() {
    let peer = Peer::join(std::env::var("NUMASHM_PATH").unwrap(), PeerConfig::new("dead-reader")).unwrap();
    let rx = peer.receiver(0).unwrap();
    let held: Vec<_> = (0..N).map(|i| rx.recv_timeout(T).unwrap_or_else(|e| panic!("message {i}: {e}"))).collect();
    println!("\nheld");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    drop(held); // onto the return ring
    println!("\nreturned");
    let mut rest = Vec::new();
    let _ = std::io::stdin().lock().read_to_end(&mut rest); // until killed (or the parent goes)
}

#[test]
#[cfg_attr(miri, ignore)]
fn returns_a_reader_gave_back_before_it_died_count_as_returned_not_lost() {
    if role().as_deref() == Some("reader") {
        return reader();
    }
    let path = common::path("dead-reader");
    let host = Peer::create(&path, 4, PeerConfig::new("dead-reader-host").ring_capacity(64)).unwrap();
    let tx = host.sender(0).unwrap();
    for _ in 0..N {
        tx.send(tx.alloc(100).unwrap()).map_err(|e| e.error).unwrap();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env("NUMASHM_ROLE", "reader")
        .env("NUMASHM_PATH", &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok);
    // The reader reads once we bound it: our calls bind (a wait slice's upkeep
    // would too); nothing is returned while it holds them.
    let (seen_tx, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.by_ref() {
            let _ = seen_tx.send(line);
        }
    });
    let deadline = Instant::now() + T;
    let wait_for = |want: &str, bind: bool| loop {
        assert!(Instant::now() < deadline, "the reader never said {want}");
        if bind {
            host.collect_returns();
        }
        if let Ok(line) = seen.recv_timeout(Duration::from_millis(5)) {
            if line.trim() == want {
                return;
            }
        }
    };
    wait_for("held", true);
    assert_eq!(host.returns(), (0, 0), "nothing given back yet");
    writeln!(child.stdin.as_mut().unwrap(), "give back").unwrap();
    wait_for("returned", false); // we take nothing back meanwhile
    child.kill().unwrap();
    child.wait().unwrap();
    host.collect_returns();
    assert_eq!(common::lent(&host), 0, "every slot is back");
    assert_eq!(host.returns(), (N, 0), "taken from the dead reader's return ring");
    assert_eq!(host.lost_to_dead_consumers(), 0, "nothing it gave back counts as lost");
    drop(host);
    let _ = std::fs::remove_file(&path);
}
