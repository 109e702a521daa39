//! `bridge_vs_zenoh_64b`, `bridge_vs_zenoh_64k` and `bridge_rtt_vs_zenoh`
//! (feature `bridge`): segments bridged over Zenoh on 127.0.0.1 against plain
//! Zenoh between two sessions of the same process, same payloads, same run.
//!
//! Ours is the whole product path: a sender allocates and sends on channel 0
//! of segment A; an outbound bridge publishes; an inbound bridge sends into
//! channel 0 of segment B; a receiver takes each message. Each bridge, the
//! receiver (and for the round trip the echo) run on threads of their own,
//! each its own peer. The baseline is a publisher session and a subscriber
//! session whose callback counts (and for the round trip answers).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use numashm::{ChannelError, Peer, PeerConfig, Receiver, Sender};
use numashm_bridge::{BridgeConfig, Inbound, Outbound, Stop};
use zenoh::bytes::ZBytes;
use zenoh::handlers::FifoChannel;
use zenoh::qos::CongestionControl;
use zenoh::Wait;

use crate::{interleave, Budget, Comparison};

/// A rendezvous file of the bench, removed at the end.
struct Segment(PathBuf);

impl Segment {
    fn new(tag: &str) -> Segment {
        let p = PathBuf::from(format!("/dev/shm/numashm-bench-bridge-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        numashm::pool::create_rendezvous(&p, 8, 0).expect("bench rendezvous");
        Segment(p)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let mut state = self.0.clone().into_os_string();
        state.push(".bridge-in-0");
        let _ = std::fs::remove_file(&state);
        let mut state = self.0.clone().into_os_string();
        state.push(".bridge-in-1");
        let _ = std::fs::remove_file(state);
    }
}

fn endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port();
    format!("tcp/127.0.0.1:{port}")
}

/// Runs a bridge from `from`'s channel `c` to `to`'s channel `c` on two
/// threads until `stop`; returns once both are ready.
fn bridge<'scope>(s: &'scope std::thread::Scope<'scope, '_>, from: &Segment, to: &Segment, c: usize, stop: &Stop) {
    let ep = endpoint();
    let key = format!("numashm/bench/{}/{c}/{}", std::process::id(), ep.rsplit(':').next().unwrap_or("0"));
    let out = Outbound::new(&from.0, c, &key, BridgeConfig::new().listen(&ep));
    let inb = Inbound::new(&key, &to.0, c, BridgeConfig::new().connect(&ep));
    let (ready, wait) = mpsc::channel();
    for run in [Box::new(move |stop: Stop, ready: mpsc::Sender<()>| {
        let _ = out.run(&stop, &mut || {
            let _ = ready.send(());
        });
    }) as Box<dyn FnOnce(Stop, mpsc::Sender<()>) + Send>, Box::new(move |stop: Stop, ready: mpsc::Sender<()>| {
        let _ = inb.run(&stop, &mut || {
            let _ = ready.send(());
        });
    })] {
        let (stop, ready) = (stop.clone(), ready.clone());
        s.spawn(move || run(stop, ready));
    }
    for _ in 0..2 {
        wait.recv_timeout(Duration::from_secs(30)).expect("bridge ready");
    }
}

/// Sends a message of `len` bytes whose first 8 bytes are `i`, waiting for room.
fn send(tx: &Sender<'_>, len: usize, i: u64) {
    let mut m = loop {
        match tx.alloc(len) {
            Ok(m) => break m,
            Err(_) => std::thread::yield_now(),
        }
    };
    m[..8].copy_from_slice(&i.to_le_bytes());
    let mut m = Some(m);
    while let Some(msg) = m.take() {
        if let Err(e) = tx.send_timeout(msg, Duration::from_secs(5)) {
            m = Some(e.message);
        }
    }
}

fn recv<'p>(rx: &Receiver<'p>) -> numashm::Message<'p> {
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(m) => return m,
            Err(ChannelError::TimedOut) => {}
            Err(e) => panic!("bench receive: {e}"),
        }
    }
}

/// Messages per batch of the throughput rows.
fn batch(budget: Budget, len: usize) -> u64 {
    let quick = budget.rounds <= Budget::QUICK.rounds;
    match (len > 1024, quick) {
        (false, true) => 5_000,
        (false, false) => 20_000,
        (true, true) => 500,
        (true, false) => 2_000,
    }
}

/// `bridge_vs_zenoh_64b` / `_64k`: messages per second of segment → bridge →
/// Zenoh → bridge → segment ÷ a plain Zenoh publisher → subscriber.
pub fn compare_bridge_vs_zenoh(budget: Budget, len: usize) -> Comparison {
    let n = batch(budget, len);
    let (a, b) = (Segment::new(&format!("ta{len}")), Segment::new(&format!("tb{len}")));
    let stop = Stop::new();
    let medians = std::thread::scope(|s| {
        bridge(s, &a, &b, 0, &stop);
        // The receiver: tells the measuring thread each time another `n` came.
        let (reached, wait) = mpsc::channel::<()>();
        let (stop_rx, b_path) = (stop.clone(), &b.0);
        s.spawn(move || {
            let peer = Peer::join(b_path, PeerConfig::new("bench-receiver")).expect("join B");
            let rx = peer.receiver(0).expect("receiver");
            let mut count = 0u64;
            while !stop_rx.is_stopped() {
                if let Ok(m) = rx.recv_timeout(Duration::from_millis(20)) {
                    drop(m);
                    count += 1;
                    if count % n == 0 {
                        let _ = reached.send(());
                    }
                }
            }
        });
        let peer = Peer::join(&a.0, PeerConfig::new("bench-sender")).expect("join A");
        let tx = peer.sender(0).expect("sender");
        let mut i = 0u64;
        let ours = || {
            let start = Instant::now();
            for _ in 0..n {
                send(&tx, len, i);
                i += 1;
            }
            wait.recv_timeout(Duration::from_secs(120)).expect("the bridged batch arrived");
            start.elapsed().as_nanos() as f64 / n as f64
        };
        let zenoh = PlainZenoh::new(n);
        let payload = bytes::Bytes::from(vec![7u8; len]);
        let baseline = || zenoh.batch(n, &payload);
        let m = interleave(budget.rounds.min(9), ours, baseline);
        stop.stop();
        m
    });
    let (name, ours_label, base_label) = if len <= 64 {
        (
            "bridge_vs_zenoh_64b",
            "64 B: alloc+send on segment A -> bridge out -> Zenoh TCP 127.0.0.1 -> bridge in -> segment B -> recv",
            "64 B: Zenoh publisher put -> subscriber callback (two sessions, TCP 127.0.0.1)",
        )
    } else {
        (
            "bridge_vs_zenoh_64k",
            "64 KiB: alloc+send on segment A -> bridge out -> Zenoh TCP 127.0.0.1 -> bridge in -> segment B -> recv",
            "64 KiB: Zenoh publisher put -> subscriber callback (two sessions, TCP 127.0.0.1)",
        )
    };
    Comparison::rates(name, ours_label, base_label, medians, 0.9)
}

/// A publisher session and a subscriber session whose callback counts.
struct PlainZenoh {
    _sub_session: zenoh::Session,
    _subscriber: zenoh::pubsub::Subscriber<()>,
    _pub_session: zenoh::Session,
    publisher: zenoh::pubsub::Publisher<'static>,
    reached: mpsc::Receiver<()>,
}

impl PlainZenoh {
    fn new(n: u64) -> PlainZenoh {
        let ep = endpoint();
        let key = format!("numashm/bench/plain/{}/{}", std::process::id(), ep.rsplit(':').next().unwrap_or("0"));
        let sub_session = zenoh::open(config(&ep, true)).wait().expect("zenoh session");
        let (tell, reached) = mpsc::channel();
        let tell = Mutex::new(tell);
        let count = AtomicU64::new(0);
        let subscriber = sub_session
            .declare_subscriber(key.clone())
            .callback(move |_sample| {
                // Relaxed: a count; the callback runs on one Zenoh task at a time.
                if (count.fetch_add(1, Ordering::Relaxed) + 1) % n == 0 {
                    let _ = tell.lock().map(|t| t.send(()));
                }
            })
            .wait()
            .expect("subscriber");
        let pub_session = zenoh::open(config(&ep, false)).wait().expect("zenoh session");
        let publisher = pub_session.declare_publisher(key).congestion_control(CongestionControl::Block).wait().expect("publisher");
        // Wait until the subscriber is matched (a put before that goes nowhere).
        let deadline = Instant::now() + Duration::from_secs(30);
        while !publisher.matching_status().wait().map(|m| m.matching()).unwrap_or(false) {
            assert!(Instant::now() < deadline, "plain Zenoh subscriber never matched");
            std::thread::sleep(Duration::from_millis(10));
        }
        PlainZenoh { _sub_session: sub_session, _subscriber: subscriber, _pub_session: pub_session, publisher, reached }
    }

    fn batch(&self, n: u64, payload: &bytes::Bytes) -> f64 {
        let start = Instant::now();
        for _ in 0..n {
            self.publisher.put(ZBytes::from(payload.clone())).wait().expect("put");
        }
        self.reached.recv_timeout(Duration::from_secs(120)).expect("the plain batch arrived");
        start.elapsed().as_nanos() as f64 / n as f64
    }
}

/// The baseline's sessions are configured as the bridges' are (peer mode,
/// scouting off, one explicit endpoint): `BridgeConfig::zenoh`.
fn config(ep: &str, listen: bool) -> zenoh::Config {
    let cfg = if listen { BridgeConfig::new().listen(ep) } else { BridgeConfig::new().connect(ep) };
    cfg.zenoh().expect("zenoh config")
}

/// `bridge_rtt_vs_zenoh`: a 64 B round trip through four bridges (A ch 0 →
/// B ch 0, echoed on B ch 1 → A ch 1) ÷ a Zenoh ping-pong (a put, answered by
/// the other session's callback with a put).
pub fn compare_bridge_rtt_vs_zenoh(budget: Budget) -> Comparison {
    let n = if budget.rounds <= Budget::QUICK.rounds { 300 } else { 1_000 };
    let (a, b) = (Segment::new("ra"), Segment::new("rb"));
    let stop = Stop::new();
    let medians = std::thread::scope(|s| {
        bridge(s, &a, &b, 0, &stop);
        bridge(s, &b, &a, 1, &stop);
        let (stop_echo, b_path) = (stop.clone(), &b.0);
        s.spawn(move || {
            let peer = Peer::join(b_path, PeerConfig::new("bench-echo")).expect("join B");
            let (rx, tx) = (peer.receiver(0).expect("receiver"), peer.sender(1).expect("sender"));
            while !stop_echo.is_stopped() {
                if let Ok(m) = rx.recv_timeout(Duration::from_millis(20)) {
                    let i = u64::from_le_bytes(m[..8].try_into().expect("8 bytes"));
                    drop(m);
                    send(&tx, 64, i);
                }
            }
        });
        let peer = Peer::join(&a.0, PeerConfig::new("bench-pinger")).expect("join A");
        let (tx, rx) = (peer.sender(0).expect("sender"), peer.receiver(1).expect("receiver"));
        let mut i = 0u64;
        let ours = || {
            let start = Instant::now();
            for _ in 0..n {
                send(&tx, 64, i);
                let m = recv(&rx);
                debug_assert_eq!(m[..8], i.to_le_bytes());
                i += 1;
            }
            start.elapsed().as_nanos() as f64 / n as f64
        };
        let ping = PingPong::new();
        let baseline = || ping.batch(n);
        let m = interleave(budget.rounds.min(9), ours, baseline);
        stop.stop();
        m
    });
    Comparison::times(
        "bridge_rtt_vs_zenoh",
        "64 B round trip: segment A -> bridge -> Zenoh -> bridge -> segment B, echoed back the same way (4 bridges)",
        "64 B Zenoh ping-pong: put, the other session's callback puts the answer, a FIFO subscriber takes it",
        medians,
        1.1,
    )
}

/// Two sessions: ping publisher + pong FIFO subscriber; ping callback answering.
struct PingPong {
    _echo_session: zenoh::Session,
    _echo_sub: zenoh::pubsub::Subscriber<()>,
    _session: zenoh::Session,
    ping: zenoh::pubsub::Publisher<'static>,
    pong: zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>>,
}

impl PingPong {
    fn new() -> PingPong {
        let ep = endpoint();
        let base = format!("numashm/bench/pingpong/{}/{}", std::process::id(), ep.rsplit(':').next().unwrap_or("0"));
        let echo_session = zenoh::open(config(&ep, true)).wait().expect("zenoh session");
        let answer = Arc::new(echo_session.declare_publisher(format!("{base}/pong")).wait().expect("pong publisher"));
        let echo_sub = echo_session
            .declare_subscriber(format!("{base}/ping"))
            .callback(move |sample| {
                let _ = answer.put(sample.payload().clone()).wait();
            })
            .wait()
            .expect("ping subscriber");
        let session = zenoh::open(config(&ep, false)).wait().expect("zenoh session");
        let pong = session.declare_subscriber(format!("{base}/pong")).with(FifoChannel::new(16)).wait().expect("pong subscriber");
        let ping = session.declare_publisher(format!("{base}/ping")).wait().expect("ping publisher");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ping.matching_status().wait().map(|m| m.matching()).unwrap_or(false) {
            assert!(Instant::now() < deadline, "ping never matched");
            std::thread::sleep(Duration::from_millis(10));
        }
        let p = PingPong { _echo_session: echo_session, _echo_sub: echo_sub, _session: session, ping, pong };
        // The answer's route too: ping until a pong comes back.
        while p.pong.try_recv().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "no pong");
            p.ping.put(ZBytes::from(vec![0u8; 64])).wait().expect("put");
            std::thread::sleep(Duration::from_millis(10));
        }
        while p.pong.try_recv().ok().flatten().is_some() {}
        p
    }

    fn batch(&self, n: u64) -> f64 {
        let payload = bytes::Bytes::from(vec![1u8; 64]);
        let start = Instant::now();
        for _ in 0..n {
            self.ping.put(ZBytes::from(payload.clone())).wait().expect("put");
            self.pong.recv().expect("pong");
        }
        start.elapsed().as_nanos() as f64 / n as f64
    }
}
