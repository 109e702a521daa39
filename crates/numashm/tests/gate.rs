//! A gated rendezvous (`PeerConfig::gatekeeper`, `Peer::grant_join`): four
//! processes join the gatekeeper's rendezvous; only the one it granted a ticket
//! exchanges messages with it. A process without a ticket, one holding a ticket
//! granted to another process (the token copied), and a consumer without a
//! ticket are refused: their rings are never linked, the consumer is never
//! bound, and none of their messages arrives.

mod common;

use std::io::{BufRead, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use common::role;
use numashm::pool::{ChannelError, JoinTicket, Peer, PeerConfig};

const T: Duration = Duration::from_secs(60);
const EACH: u64 = 100;
const NAME: &str = "a_gatekeeper_exchanges_messages_only_with_the_processes_it_admitted";

fn spawn_role(role: &str, path: &str) -> (Child, ChildStdin) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env("NUMASHM_ROLE", role)
        .env("NUMASHM_PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

/// A child's first stdin line: its ticket, or "none".
fn ticket_from_stdin() -> Option<JoinTicket> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    (line.trim() != "none").then(|| line.parse().unwrap())
}

/// Blocks until the parent closes our stdin (the end of the test).
fn wait_for_parent() {
    let mut rest = Vec::new();
    let _ = std::io::stdin().lock().read_to_end(&mut rest);
}

/// A producer of channel 0: sends `EACH` messages tagged with `tag`, then
/// stays (its ring stays readable) until the parent is done.
fn producer(tag: u8) {
    let ticket = ticket_from_stdin();
    let mut cfg = PeerConfig::new("gate-producer");
    if let Some(t) = ticket {
        cfg = cfg.ticket(t);
    }
    let peer = Peer::join(std::env::var("NUMASHM_PATH").unwrap(), cfg).unwrap();
    let tx = peer.sender(0).unwrap();
    for i in 0..EACH {
        let mut m = tx.alloc(9).unwrap();
        m[0] = tag;
        m[1..].copy_from_slice(&i.to_le_bytes());
        // Sent into our ring whether or not a consumer is bound (it waits there).
        let _ = tx.send_timeout(m, Duration::from_millis(10));
    }
    // Keep calling (binds, returns) until the parent is done.
    let stop = std::thread::spawn(wait_for_parent);
    while !stop.is_finished() {
        peer.collect_returns();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A consumer of channel 1 without a ticket: counts what it gets.
fn listener() {
    assert!(ticket_from_stdin().is_none());
    let peer = Peer::join(std::env::var("NUMASHM_PATH").unwrap(), PeerConfig::new("gate-listener")).unwrap();
    let rx = peer.receiver(1).unwrap();
    let stop = std::thread::spawn(wait_for_parent);
    let mut got = 0;
    while !stop.is_finished() {
        if rx.recv_timeout(Duration::from_millis(5)).is_ok() {
            got += 1;
        }
    }
    println!("\ngot {got}");
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_gatekeeper_exchanges_messages_only_with_the_processes_it_admitted() {
    match role().as_deref() {
        Some("member") => return producer(b'A'),
        Some("rogue") => return producer(b'R'),
        Some("thief") => return producer(b'T'),
        Some("listener") => return listener(),
        _ => {}
    }
    let path = common::path("gate");
    let gate = Peer::create(&path, 8, PeerConfig::new("gatekeeper").gatekeeper()).unwrap();
    let rx = gate.receiver(0).unwrap();
    let tx = gate.sender(1).unwrap();
    let (member, mut member_in) = spawn_role("member", &path);
    let (rogue, mut rogue_in) = spawn_role("rogue", &path);
    let (thief, mut thief_in) = spawn_role("thief", &path);
    let (listener, mut listener_in) = spawn_role("listener", &path);
    let ticket = gate.grant_join(member.id()).unwrap();
    writeln!(member_in, "{ticket}").unwrap();
    writeln!(thief_in, "{ticket}").unwrap(); // the member's ticket, copied
    writeln!(rogue_in, "none").unwrap();
    writeln!(listener_in, "none").unwrap();
    let refused_all = |g: &Peer| [rogue.id(), thief.id(), listener.id()].iter().all(|p| g.refused_peers().contains(p));
    let mut from = [0u64; 3]; // A, R, T
    let deadline = Instant::now() + T;
    while from[0] < EACH || !refused_all(&gate) {
        assert!(
            Instant::now() < deadline,
            "received {from:?} (A, R, T); refused {:?} of rogue {}, thief {}, listener {}",
            gate.refused_peers(),
            rogue.id(),
            thief.id(),
            listener.id()
        );
        if let Ok(mut m) = tx.alloc(8) {
            m.copy_from_slice(b"for you?");
            let _ = tx.send(m); // full or unbound: stays ours
        }
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(m) => {
                let i = u64::from_le_bytes(m[1..9].try_into().unwrap());
                match m[0] {
                    b'A' => {
                        assert_eq!(i, from[0], "the member's messages in order");
                        from[0] += 1;
                    }
                    b'R' => from[1] += 1,
                    b'T' => from[2] += 1,
                    other => panic!("unknown tag {other}"),
                }
            }
            Err(ChannelError::TimedOut) => {}
            Err(e) => panic!("receive: {e}"),
        }
    }
    // Refused for good: still nothing from them a while later.
    let settle = Instant::now() + Duration::from_millis(300);
    while Instant::now() < settle {
        if let Ok(m) = rx.recv_timeout(Duration::from_millis(5)) {
            panic!("a message after the refusals: tag {}", m[0] as char);
        }
    }
    assert_eq!(from, [EACH, 0, 0], "only the admitted member's messages arrive");
    assert!(!gate.refused_peers().contains(&member.id()), "the member was never refused");
    assert_eq!(gate.lost_to_dead_consumers(), 0);
    drop((member_in, rogue_in, thief_in, listener_in));
    for child in [member, rogue, thief] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{:?}", out.status);
    }
    let out = listener.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l == "got 0"), "the unadmitted consumer was never bound: {text}");
}

#[test]
fn a_ticket_survives_its_text_form_and_garbage_is_a_typed_error() {
    let t = JoinTicket { gate_pid: 42, gate_started: 777, gate_pool_fd: 9, token: 0xdead_beef };
    assert_eq!(t.to_string().parse::<JoinTicket>().unwrap(), t);
    for bad in ["", "none", "nshm-ticket-1:1:2:3", "nshm-ticket-1:0:2:3:4", "nshm-ticket-1:1:2:3:0", "nshm-ticket-1:1:2:3:zz", "nshm-ticket-1:1:2:3:4:5", "other:1:2:3:4"] {
        assert!(matches!(bad.parse::<JoinTicket>(), Err(numashm::pool::PoolError::Config { field: "ticket", .. })), "{bad:?}");
    }
}
