//! An inbound bridge whose ring is full: Zenoh's subscriber callback, which
//! pushes into the ring itself, waits for room (`Block`: nothing lost, a stop
//! still ends the run, no message left in doubt) or drops and counts (`Drop`).
//! The receiver on segment B is paused or absent; segment A's sender, each
//! bridge and the receiver run on threads of their own, each its own peer.

use std::time::{Duration, Instant};

use numashm::{Peer, PeerConfig};
use numashm_bridge::{read_stats, BackPressure, BridgeConfig, Inbound, Outbound, Stop};

/// The ring capacity of a peer's channel (numashm's default `PeerConfig`).
const RING: u64 = 256;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn seg(tag: &str) -> std::path::PathBuf {
    let p = std::path::PathBuf::from(format!("/dev/shm/numashm-bridge-bp-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    numashm::pool::create_rendezvous(&p, 8, 0).unwrap();
    p
}

/// Sends `n` 64-byte messages numbered 0.. on channel 0 of `seg`, waiting
/// for room (bounded by `deadline`).
fn send_all(seg: &std::path::Path, n: u64, deadline: Instant) {
    let peer = Peer::join(seg, PeerConfig::new("test-sender")).unwrap();
    let tx = peer.sender(0).unwrap();
    for i in 0..n {
        let mut m = loop {
            match tx.alloc(64) {
                Ok(m) => break m,
                Err(e) => {
                    assert!(Instant::now() < deadline, "no slot for message {i}: {e}");
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        };
        m[..8].copy_from_slice(&i.to_le_bytes());
        let mut m = Some(m);
        while let Some(msg) = m.take() {
            if let Err(e) = tx.send_timeout(msg, Duration::from_millis(100)) {
                assert!(Instant::now() < deadline, "message {i} never sent");
                m = Some(e.message);
            }
        }
    }
}

/// Polls the state file until `done` holds for its counts (bounded).
fn wait_for(state: &std::path::Path, deadline: Instant, what: &str, done: impl Fn(&numashm_bridge::InboundStats) -> bool) {
    loop {
        if read_stats(state).is_ok_and(|s| done(&s)) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {:?}", read_stats(state));
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct Pair {
    a: std::path::PathBuf,
    b: std::path::PathBuf,
    out: Outbound,
    inb: Inbound,
}

impl Pair {
    fn new(tag: &str, mode: BackPressure) -> Pair {
        let (a, b) = (seg(&format!("{tag}-a")), seg(&format!("{tag}-b")));
        let endpoint = format!("tcp/127.0.0.1:{}", free_port());
        let key = format!("numashm/test/bp/{tag}/{}", std::process::id());
        let out = Outbound::new(&a, 0, &key, BridgeConfig::new().listen(&endpoint));
        let inb = Inbound::new(&key, &b, 0, BridgeConfig::new().connect(&endpoint).back_pressure(mode));
        let _ = std::fs::remove_file(inb.state_path());
        Pair { a, b, out, inb }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.inb.state_path());
        let _ = std::fs::remove_file(&self.a);
        let _ = std::fs::remove_file(&self.b);
    }
}

#[test]
#[cfg_attr(miri, ignore)] // sockets, mappings, threads
fn a_paused_receiver_holds_the_callback_back_and_every_message_then_arrives_in_order() {
    const N: u64 = 3_000;
    let p = Pair::new("block", BackPressure::Block);
    let (stop_out, stop_in) = (Stop::new(), Stop::new());
    let deadline = Instant::now() + Duration::from_secs(120);
    std::thread::scope(|s| {
        let out_run = s.spawn(|| p.out.run(&stop_out, &mut || {}));
        let in_run = s.spawn(|| p.inb.run(&stop_in, &mut || {}));
        let sender = s.spawn(|| send_all(&p.a, N, deadline));
        // The receiver exists (it consumes channel 0 of B) but does not read yet.
        let peer = Peer::join(&p.b, PeerConfig::new("test-receiver")).unwrap();
        let rx = peer.receiver(0).unwrap();
        wait_for(p.inb.state_path(), deadline, "a first delivery", |s| s.delivered > 0);
        std::thread::sleep(Duration::from_millis(300));
        let st = read_stats(p.inb.state_path()).unwrap();
        assert!(st.delivered <= RING, "no more than the ring holds while nobody reads: {st:?}");
        assert_eq!((st.dropped, st.lost), (0, 0), "block mode never drops: {st:?}");
        for i in 0..N {
            let m = loop {
                assert!(Instant::now() < deadline, "message {i} did not come");
                if let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
                    break m;
                }
            };
            assert_eq!(u64::from_le_bytes(m[..8].try_into().unwrap()), i, "in order, none twice");
        }
        sender.join().unwrap();
        stop_in.stop();
        stop_out.stop();
        let st = in_run.join().unwrap().unwrap();
        assert_eq!(out_run.join().unwrap().unwrap().published, N);
        // Duplicates may be counted (and skipped): the outbound bridge probes
        // with its window's first message while nobody acknowledges.
        assert_eq!((st.delivered, st.dropped, st.lost, st.in_doubt), (N, 0, 0, 0), "{st:?}");
    });
}

#[test]
#[cfg_attr(miri, ignore)] // sockets, mappings, threads
fn a_stop_ends_a_run_whose_callback_waits_for_ring_space_and_leaves_nothing_in_doubt() {
    const N: u64 = 2_000;
    let p = Pair::new("stop", BackPressure::Block);
    let (stop_out, stop_in) = (Stop::new(), Stop::new());
    let deadline = Instant::now() + Duration::from_secs(120);
    std::thread::scope(|s| {
        let out_run = s.spawn(|| p.out.run(&stop_out, &mut || {}));
        let in_run = s.spawn(|| p.inb.run(&stop_in, &mut || {}));
        // The sender gives up (its ring stays full) once the bridges stop.
        let sender = s.spawn(|| std::panic::catch_unwind(|| send_all(&p.a, N, Instant::now() + Duration::from_secs(3))));
        let peer = Peer::join(&p.b, PeerConfig::new("test-receiver")).unwrap();
        let _rx = peer.receiver(0).unwrap(); // never reads
        wait_for(p.inb.state_path(), deadline, "the ring full", |s| s.delivered >= RING / 2);
        std::thread::sleep(Duration::from_millis(300));
        stop_in.stop();
        let st = in_run.join().unwrap().unwrap();
        stop_out.stop();
        let o = out_run.join().unwrap().unwrap();
        assert!(o.published > st.delivered, "samples were offered beyond the ring: {o:?} {st:?}");
        assert!(st.delivered <= RING, "{st:?}");
        assert_eq!((st.dropped, st.lost), (0, 0), "{st:?}");
        let _ = sender.join();
        // A new run settles the state file: the stopped wait left no marker.
        let stopped = Stop::new();
        stopped.stop();
        let again = p.inb.run(&stopped, &mut || {}).unwrap();
        assert_eq!((again.runs, again.in_doubt, again.delivered), (2, 0, st.delivered), "{again:?}");
    });
}

#[test]
#[cfg_attr(miri, ignore)] // sockets, mappings, threads
fn with_drop_a_full_ring_drops_and_counts_and_the_stream_moves_on() {
    const N: u64 = 1_500;
    let p = Pair::new("drop", BackPressure::Drop);
    let (stop_out, stop_in) = (Stop::new(), Stop::new());
    let deadline = Instant::now() + Duration::from_secs(120);
    std::thread::scope(|s| {
        let out_run = s.spawn(|| p.out.run(&stop_out, &mut || {}));
        let in_run = s.spawn(|| p.inb.run(&stop_in, &mut || {}));
        let peer = Peer::join(&p.b, PeerConfig::new("test-receiver")).unwrap();
        let _rx = peer.receiver(0).unwrap(); // never reads
        send_all(&p.a, N, deadline);
        wait_for(p.inb.state_path(), deadline, "every message delivered or dropped", |s| s.delivered + s.dropped == N);
        stop_in.stop();
        stop_out.stop();
        let st = in_run.join().unwrap().unwrap();
        out_run.join().unwrap().unwrap();
        assert!(st.delivered <= RING && st.dropped == N - st.delivered, "{st:?}");
        assert_eq!((st.lost, st.in_doubt), (0, 0), "{st:?}");
    });
}
