//! Two segments bridged over Zenoh on 127.0.0.1 inside one process (each
//! bridge, the sender and the receiver on threads of their own, each its own
//! peer): every message arrives once, in order, with its bytes.

use std::time::{Duration, Instant};

use numashm::{ChannelError, Peer, PeerConfig};
use numashm_bridge::{BackPressure, BridgeConfig, Inbound, Outbound, Stop};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn seg(tag: &str) -> std::path::PathBuf {
    let p = std::path::PathBuf::from(format!("/dev/shm/numashm-bridge-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    numashm::pool::create_rendezvous(&p, 8, 0).unwrap();
    p
}

/// Message `i`: its index, then bytes derived from it; sizes from 8 B to 20 KiB.
fn message(i: u64, buf: &mut [u8]) {
    buf[..8].copy_from_slice(&i.to_le_bytes());
    for (k, b) in buf[8..].iter_mut().enumerate() {
        *b = (i as usize).wrapping_mul(31).wrapping_add(k) as u8;
    }
}

fn len_of(i: u64) -> usize {
    if i % 997 == 0 {
        20 << 10
    } else {
        8 + (i as usize * 37) % 600
    }
}

fn check(i: u64, m: &[u8]) {
    assert_eq!(m.len(), len_of(i), "message {i}: length");
    assert_eq!(u64::from_le_bytes(m[..8].try_into().unwrap()), i, "in order, none twice");
    for (k, &b) in m[8..].iter().enumerate() {
        assert_eq!(b, (i as usize).wrapping_mul(31).wrapping_add(k) as u8, "message {i}: byte {k}");
    }
}

#[test]
fn twenty_thousand_messages_cross_two_bridges_in_order_with_their_bytes() {
    const N: u64 = 20_000;
    let (a, b) = (seg("a"), seg("b"));
    let port = free_port();
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let key = format!("numashm/test/{}", std::process::id());
    let stop = Stop::new();
    let out = Outbound::new(&a, 0, &key, BridgeConfig::new().listen(&endpoint));
    let inb = Inbound::new(&key, &b, 0, BridgeConfig::new().connect(&endpoint).back_pressure(BackPressure::Block));
    let _ = std::fs::remove_file(inb.state_path());
    std::thread::scope(|s| {
        let out_run = s.spawn(|| out.run(&stop, &mut || {}));
        let in_run = s.spawn(|| inb.run(&stop, &mut || {}));
        let receiver = s.spawn(|| {
            let peer = Peer::join(&b, PeerConfig::new("test-receiver")).unwrap();
            let rx = peer.receiver(0).unwrap();
            let deadline = Instant::now() + Duration::from_secs(240);
            for i in 0..N {
                let m = loop {
                    assert!(Instant::now() < deadline, "message {i} did not come");
                    match rx.recv_timeout(Duration::from_millis(100)) {
                        Ok(m) => break m,
                        Err(ChannelError::TimedOut) => continue,
                        Err(e) => panic!("{e}"),
                    }
                };
                check(i, &m);
            }
            assert!(matches!(rx.recv_timeout(Duration::from_millis(300)), Err(ChannelError::TimedOut)), "nothing more");
        });
        let peer = Peer::join(&a, PeerConfig::new("test-sender")).unwrap();
        let tx = peer.sender(0).unwrap();
        let deadline = Instant::now() + Duration::from_secs(240);
        for i in 0..N {
            if Instant::now() > deadline || out_run.is_finished() || in_run.is_finished() || receiver.is_finished() {
                stop.stop();
                panic!("stuck at message {i}: out {:?}, in {:?}", out_run.join().map_err(|_| "panicked"), in_run.join().map_err(|_| "panicked"));
            }
            let mut m = loop {
                match tx.alloc(len_of(i)) {
                    Ok(m) => break m,
                    Err(e) => {
                        assert!(Instant::now() < deadline, "no slot for message {i}: {e}");
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            };
            message(i, &mut m);
            let mut m = Some(m);
            while let Some(msg) = m.take() {
                if let Err(e) = tx.send_timeout(msg, Duration::from_secs(1)) {
                    assert!(Instant::now() < deadline && !out_run.is_finished(), "message {i} never sent");
                    m = Some(e.message);
                }
            }
        }
        receiver.join().unwrap();
        stop.stop();
        let o = out_run.join().unwrap().unwrap();
        let st = in_run.join().unwrap().unwrap();
        assert_eq!(o.published, N);
        assert_eq!((st.delivered, st.lost, st.dropped, st.in_doubt), (N, 0, 0, 0), "{st:?}");
        assert_eq!(peer.counts().0, N);
    });
    let _ = std::fs::remove_file(inb.state_path());
    for p in [a, b] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn messages_published_before_the_inbound_bridge_subscribed_still_arrive() {
    // The outbound bridge's window (16) fills with messages nobody heard; an
    // inbound bridge that starts later must still get all of them, in order.
    const N: u64 = 200;
    let (a, b) = (seg("late-a"), seg("late-b"));
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let key = format!("numashm/test/late/{}", std::process::id());
    let stop = Stop::new();
    let out = Outbound::new(&a, 0, &key, BridgeConfig::new().listen(&endpoint).window(16));
    let inb = Inbound::new(&key, &b, 0, BridgeConfig::new().connect(&endpoint));
    let _ = std::fs::remove_file(inb.state_path());
    std::thread::scope(|s| {
        let (ready, wait) = std::sync::mpsc::channel();
        let (out, stop_out) = (&out, &stop);
        let out_run = s.spawn(move || out.run(stop_out, &mut || ready.send(()).unwrap()));
        wait.recv_timeout(Duration::from_secs(60)).expect("outbound ready");
        let peer = Peer::join(&a, PeerConfig::new("test-sender")).unwrap();
        let tx = peer.sender(0).unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        // Enough to fill the window and the ring: the sender then waits.
        let (b, inb, stop_in) = (&b, &inb, &stop);
        let sender = s.spawn(move || {
            let peer = Peer::join(b, PeerConfig::new("test-receiver")).unwrap();
            let rx = peer.receiver(0).unwrap();
            std::thread::sleep(Duration::from_millis(500)); // the outbound published into the void by now
            let in_run = s.spawn(move || inb.run(stop_in, &mut || {}));
            for i in 0..N {
                let m = loop {
                    assert!(Instant::now() < deadline, "message {i} did not come");
                    if let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
                        break m;
                    }
                };
                check(i, &m);
            }
            in_run
        });
        for i in 0..N {
            let mut m = tx.alloc(len_of(i)).unwrap();
            message(i, &mut m);
            let mut m = Some(m);
            while let Some(msg) = m.take() {
                if let Err(e) = tx.send_timeout(msg, Duration::from_millis(100)) {
                    assert!(Instant::now() < deadline, "message {i} never sent");
                    m = Some(e.message);
                }
            }
        }
        let in_run = sender.join().unwrap();
        stop.stop();
        let o = out_run.join().unwrap().unwrap();
        let st = in_run.join().unwrap().unwrap();
        assert!(o.republished > 0, "the window went out again: {o:?}");
        assert_eq!((st.delivered, st.lost, st.dropped), (N, 0, 0), "{st:?}");
    });
    let _ = std::fs::remove_file(inb.state_path());
    for p in [a, b] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn a_last_message_published_before_the_inbound_bridge_subscribed_still_arrives() {
    // Three messages, then silence: no later publication reveals a gap to
    // the inbound bridge, and the window (1024) is far from full. The
    // outbound bridge's idle probe (the newest unacknowledged message again)
    // is what makes the inbound bridge learn of the stream and ask for it.
    const N: u64 = 3;
    let (a, b) = (seg("idle-a"), seg("idle-b"));
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let key = format!("numashm/test/idle/{}", std::process::id());
    let stop = Stop::new();
    let out = Outbound::new(&a, 0, &key, BridgeConfig::new().listen(&endpoint));
    let inb = Inbound::new(&key, &b, 0, BridgeConfig::new().connect(&endpoint));
    let _ = std::fs::remove_file(inb.state_path());
    std::thread::scope(|s| {
        let (ready, wait) = std::sync::mpsc::channel();
        let (out, stop_out) = (&out, &stop);
        let out_run = s.spawn(move || out.run(stop_out, &mut || ready.send(()).unwrap()));
        wait.recv_timeout(Duration::from_secs(60)).expect("outbound ready");
        let sender = Peer::join(&a, PeerConfig::new("test-sender")).unwrap();
        let tx = sender.sender(0).unwrap();
        for i in 0..N {
            let mut m = tx.alloc(len_of(i)).unwrap();
            message(i, &mut m);
            tx.send(m).map_err(|e| e.error).unwrap();
        }
        // A pure sender's pushes can sit in its ring until it binds its
        // consumer, which its empty receives do now and then (numashm's
        // `unbound_sent`); a sender with nothing else to do receives on a
        // channel nobody feeds until the outbound bridge has taken them.
        let idle = sender.receiver(7).unwrap();
        let taken_by = Instant::now() + Duration::from_secs(60);
        while tx.queued() > 0 {
            assert!(Instant::now() < taken_by, "the outbound bridge never took the messages");
            let _ = idle.try_recv();
        }
        let receiver = Peer::join(&b, PeerConfig::new("test-receiver")).unwrap();
        let rx = receiver.receiver(0).unwrap();
        // Nobody subscribes for a while: the outbound bridge publishes into the void.
        let deadline = Instant::now() + Duration::from_secs(60);
        std::thread::sleep(Duration::from_millis(300));
        assert!(rx.try_recv().is_err() && !out_run.is_finished(), "nothing arrives before the inbound bridge runs");
        let in_run = s.spawn(|| inb.run(&stop, &mut || {}));
        for i in 0..N {
            let m = loop {
                if Instant::now() >= deadline {
                    stop.stop(); // the bridges end, so the scope does
                    panic!("message {i} did not come");
                }
                if let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
                    break m;
                }
            };
            check(i, &m);
        }
        stop.stop();
        let o = out_run.join().unwrap().unwrap();
        let st = in_run.join().unwrap().unwrap();
        assert_eq!(o.published, N);
        assert!(o.republished > 0, "probed and replayed: {o:?}");
        assert_eq!((st.delivered, st.lost, st.dropped), (N, 0, 0), "{st:?}");
    });
    let _ = std::fs::remove_file(inb.state_path());
    for p in [a, b] {
        std::fs::remove_file(p).unwrap();
    }
}
