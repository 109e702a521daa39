//! Real processes on one segment: ping-pong with checksums, kill -9 of guests
//! mid-traffic with recovery, growth during traffic, fan-out with a slow consumer.

mod common;

use std::time::{Duration, Instant};

use common::*;
use numashm::*;

fn messages() -> u64 {
    std::env::var("NUMASHM_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

/// Child entry point; a no-op as a normal test.
#[test]
fn child() {
    let Some(role) = role() else { return };
    let path = std::env::var("NUMASHM_PATH").unwrap();
    let seg = Segment::attach(&path).expect("attach");
    match role.as_str() {
        // Receive on ring 0, check, send the same bytes back on ring 1.
        "echo" => {
            let rx = seg.receiver(0).unwrap();
            let tx = seg.sender(1).unwrap();
            let n: u64 = std::env::var("NUMASHM_N").unwrap().parse().unwrap();
            for i in 0..n {
                let msg = rx.recv_timeout(Duration::from_secs(30)).expect("recv");
                let seq = u64::from_le_bytes(msg[..8].try_into().unwrap());
                assert_eq!(seq, i, "in order");
                let sum = u64::from_le_bytes(msg[8..16].try_into().unwrap());
                assert_eq!(sum, checksum(&msg[16..]), "payload intact");
                let mut reply = tx.alloc(msg.len()).unwrap();
                reply.copy_from_slice(&msg);
                drop(msg);
                tx.send_blocking(reply).map_err(|e| e.error).unwrap();
            }
        }
        // Allocate, send and receive forever until killed.
        "churn" => {
            // Ring ends are exclusive: the first churner gets them, the others
            // allocate, hold and free through the allocator directly.
            let rx = seg.receiver(0).ok();
            let tx = seg.sender(1).ok();
            // SAFETY: raw handles allocated here are freed here; the SlotMuts held
            // below came from `tx.alloc` and are never freed through `a`.
            let a = unsafe { seg.raw_allocator() };
            let me = seg.peer_index() + 1;
            let mut held = Vec::new();
            let mut raw_held = Vec::new();
            let mut i = 0u64;
            loop {
                i += 1;
                let len = (i as usize * 37) % 3000 + 1;
                match &tx {
                    Some(tx) => {
                        if let Ok(mut m) = tx.alloc(len) {
                            m[0] = i as u8;
                            if i % 3 == 0 {
                                held.push(m); // hold some allocated slots too
                                if held.len() > 20 {
                                    held.clear();
                                }
                            } else {
                                let _ = tx.send(m);
                            }
                        }
                    }
                    None => {
                        if let Ok(h) = a.alloc(len, me) {
                            raw_held.push(h);
                            if raw_held.len() > 16 {
                                for h in raw_held.drain(..8) {
                                    let _ = a.free(h);
                                }
                            }
                        }
                    }
                }
                if let Some(rx) = &rx {
                    let _ = rx.try_recv();
                }
            }
        }
        // Receive slowly on the ring given.
        "slow" | "fast" => {
            let ring: usize = std::env::var("NUMASHM_RING").unwrap().parse().unwrap();
            let n: usize = std::env::var("NUMASHM_N").unwrap().parse().unwrap();
            let rx = seg.receiver(ring).unwrap();
            std::fs::write(format!("{path}.ready{ring}"), b"1").unwrap();
            for _ in 0..n {
                let m = rx.recv_timeout(Duration::from_secs(30)).expect("recv");
                assert_eq!(m[0], ring as u8);
                if role == "slow" {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        // Recover dead peers when told to (all recoverers start together); write
        // down which entries this process recovered.
        "recover" => {
            let id = std::env::var("NUMASHM_ID").unwrap();
            std::fs::write(format!("{path}.ready{id}"), b"1").unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            while !std::path::Path::new(&format!("{path}.go")).exists() {
                assert!(Instant::now() < deadline, "no go");
                std::hint::spin_loop();
            }
            let report = seg.recover_dead_peers();
            let entries: Vec<String> = report.peers.iter().map(|&(i, _, n)| format!("{i}:{n}")).collect();
            std::fs::write(format!("{path}.rec{id}"), entries.join(",")).unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn ping_pong_of_many_messages_keeps_every_byte() {
    let path = path("pingpong");
    let host = Segment::create(SegmentConfig::file(&path)).unwrap();
    let n = messages();
    let child = spawn("child", "echo", &[("NUMASHM_PATH", path.clone()), ("NUMASHM_N", n.to_string())]);
    let tx = host.sender(0).unwrap();
    let rx = host.receiver(1).unwrap();
    for i in 0..n {
        let len = 16 + (i as usize * 131) % 2000;
        let mut m = tx.alloc(len).unwrap();
        m[..8].copy_from_slice(&i.to_le_bytes());
        for (k, b) in m[16..].iter_mut().enumerate() {
            *b = (k as u64 ^ i) as u8;
        }
        let sum = checksum(&m[16..]);
        m[8..16].copy_from_slice(&sum.to_le_bytes());
        tx.send_blocking(m).map_err(|e| e.error).unwrap();
        let back = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(back.len(), len);
        assert_eq!(u64::from_le_bytes(back[..8].try_into().unwrap()), i);
        assert_eq!(checksum(&back[16..]), sum);
    }
    wait_ok(child, Duration::from_secs(300));
    let peers = host.peers();
    let me = &peers[host.peer_index() as usize];
    assert_eq!(me.sent, n);
    assert_eq!(me.received, n);
    assert_eq!(count_free(&host, 999), total_slots(&host), "no slot lost");
}

#[test]
fn killed_guests_are_recovered_and_no_slot_is_lost() {
    // NUMASHM_KILLS rounds (20 here; the soak runs 1000), each with NUMASHM_GUESTS
    // guest processes killed with SIGKILL at a pseudo-random moment.
    let rounds: usize = std::env::var("NUMASHM_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let guests: usize = std::env::var("NUMASHM_GUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let path = path("kill");
    let mut host = Segment::create(SegmentConfig::file(&path).max_peers(8)).unwrap();
    let (mut killed, mut swept_total, mut reclaimed_total) = (0usize, 0usize, 0usize);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..rounds {
        let mut children: Vec<_> = (0..guests).map(|_| spawn("child", "churn", &[("NUMASHM_PATH", path.clone())])).collect();
        let tx = host.sender(0).unwrap();
        let rx = host.receiver(1).unwrap();
        // Traffic for a pseudo-random while, then kill -9 at whatever point it is.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let until = Instant::now() + Duration::from_millis(5 + seed % 40);
        while Instant::now() < until {
            if let Ok(m) = tx.alloc(100) {
                let _ = tx.send(m);
            }
            while rx.try_recv().is_ok() {}
        }
        for child in &mut children {
            child.kill().unwrap();
            child.wait().unwrap();
            killed += 1;
            // The host keeps serving between kills.
            if let Ok(m) = tx.alloc(10) {
                let _ = tx.send(m);
            }
            while rx.try_recv().is_ok() {}
        }
        // Recovery finds every dead guest (some may not have attached yet when killed).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rec = host.recover_dead_peers();
            reclaimed_total += rec.peers.iter().map(|p| p.2).sum::<usize>();
            if host.peers().iter().all(|p| p.state == PeerState::Empty || p.index == host.peer_index()) {
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: dead guests never recovered");
            std::thread::sleep(Duration::from_millis(1));
        }
        while rx.try_recv().is_ok() {}
        drop(tx);
        drop(rx);
        // Whatever the host sent that the guest never took is in ring 0: the
        // guest's reclaim freed those slots; drain the stale handles.
        let drain = host.receiver(0).unwrap();
        while drain.try_recv().is_ok() {}
        drop(drain);
        // Alone again: put back any slot the kill caught inside alloc/free.
        let swept = host.sweep_lost_slots().expect("the host is the only peer");
        swept_total += swept;
        // The host may have grown classes meanwhile: count against the current total.
        host.flush_cache();
        let census = host.allocator().census();
        if census.owners.iter().any(|o| o.0 == 1) {
            // SAFETY: only reads which handles peer 1 owns.
            let owned = unsafe { host.raw_allocator() }.owned_by(1);
            eprintln!("DEBUG round {round}: host owns {owned:#x?}");
        }
        let free_now: usize = census.extents.iter().map(|e| e.free).sum();
        assert_eq!(
            count_free(&host, 999),
            total_slots(&host),
            "round {round}: every slot accounted for (before counting: {free_now} free, owners (peer, allocated, in flight) {:?}; \
             ring ends {:?})",
            census.owners,
            (0..host.ring_count()).map(|i| host.ring_info(i).map(|r| (r.producer, r.consumer, r.fill))).collect::<Vec<_>>()
        );
        assert!(host.peers().iter().all(|p| p.state == PeerState::Empty || p.index == host.peer_index()), "no stuck peer slot");
    }
    println!(
        "soak: {rounds} rounds, {killed} guests killed with SIGKILL, {reclaimed_total} slots reclaimed from them, \
         {swept_total} found by the sweep, 0 lost, 0 owned twice, no stuck peer"
    );
    // The next guest attaches and works.
    let child = spawn("child", "echo", &[("NUMASHM_PATH", path.clone()), ("NUMASHM_N", "10".into())]);
    let tx = host.sender(0).unwrap();
    let rx = host.receiver(1).unwrap();
    for i in 0..10u64 {
        let mut m = tx.alloc(16).unwrap();
        m[..8].copy_from_slice(&i.to_le_bytes());
        m[8..16].copy_from_slice(&checksum(&[]).to_le_bytes());
        tx.send_blocking(m).map_err(|e| e.error).unwrap();
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
    }
    wait_ok(child, Duration::from_secs(60));
}

#[test]
fn a_slow_consumer_does_not_block_the_others() {
    let path = path("fanout");
    let rings = vec![RingSpec::spsc(16), RingSpec::spsc(16), RingSpec::spsc(16)];
    let host = Segment::create(SegmentConfig::file(&path).rings(rings)).unwrap();
    let n = 200usize;
    let kids: Vec<_> = (0..3)
        .map(|r| {
            let role = if r == 0 { "slow" } else { "fast" };
            spawn("child", role, &[("NUMASHM_PATH", path.clone()), ("NUMASHM_RING", r.to_string()), ("NUMASHM_N", n.to_string())])
        })
        .collect();
    for r in 0..3 {
        let ready = format!("{path}.ready{r}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::path::Path::new(&ready).exists() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = std::fs::remove_file(ready);
    }
    let txs: Vec<_> = (0..3).map(|r| host.sender(r).unwrap()).collect();
    let mut sent = [0usize; 3];
    let mut slow_full = false;
    let mut fast_done_while_slow_lagged = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    while sent.iter().any(|&s| s < n) {
        assert!(Instant::now() < deadline, "fan-out stalled: {sent:?}");
        for (r, tx) in txs.iter().enumerate() {
            if sent[r] == n {
                continue;
            }
            let mut m = tx.alloc(8).unwrap();
            m[0] = r as u8;
            match tx.send(m) {
                Ok(()) => sent[r] += 1,
                Err(SendError { error: MessageError::Full, message }) => {
                    // The producer gets the message back and goes on with the others.
                    drop(message);
                    if r == 0 {
                        slow_full = true;
                        assert!(host.ring_info(0).unwrap().fill > 0, "its lag is visible");
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
        if sent[1] == n && sent[2] == n && sent[0] < n {
            fast_done_while_slow_lagged = true;
        }
    }
    assert!(slow_full, "the slow consumer's ring never filled");
    assert!(fast_done_while_slow_lagged, "the fast consumers waited for the slow one");
    for k in kids {
        wait_ok(k, Duration::from_secs(120));
    }
}

#[test]
fn peers_full_is_a_clear_error_and_detach_frees_the_slot() {
    let path = path("full");
    let host = Segment::create(SegmentConfig::file(&path).max_peers(2)).unwrap();
    let g1 = Segment::attach(&path).unwrap();
    let err = Segment::attach(&path).unwrap_err();
    assert!(matches!(err, SegmentError::PeersFull { max: 2 }), "{err}");
    drop(g1);
    let g2 = Segment::attach(&path).unwrap();
    assert_ne!(g2.peers()[g2.peer_index() as usize].epoch, 0);
    drop(host);
}

#[test]
fn spsc_ends_are_exclusive_to_one_live_peer() {
    let path = path("ends");
    let host = Segment::create(SegmentConfig::file(&path)).unwrap();
    let guest = Segment::attach(&path).unwrap();
    let _tx = host.sender(0).unwrap();
    assert!(matches!(guest.sender(0), Err(SegmentError::EndTaken { ring: 0, end: "producer", .. })));
    assert!(matches!(host.sender(9), Err(SegmentError::NoSuchRing { ring: 9, count: 2 })));
    drop(_tx);
    let _tx2 = guest.sender(0).unwrap();
}

#[test]
fn growth_during_traffic_is_seen_by_the_receiver() {
    let path = path("growth");
    let classes = ClassConfig::new().class(1024, 8).max_extents(8);
    let host = Segment::create(SegmentConfig::file(&path).classes(classes)).unwrap();
    let guest = Segment::attach(&path).unwrap();
    let tx = host.sender(0).unwrap();
    let rx = guest.receiver(0).unwrap();
    let before = host.region().len();
    // 40 messages held in the ring need 5 extents: the host grows while sending.
    for i in 0..40u8 {
        let mut m = tx.alloc(10).unwrap();
        m[0] = i;
        tx.send(m).map_err(|e| e.error).unwrap();
    }
    assert!(host.allocator().extent_count(0) >= 5);
    assert!(host.region().len() > before, "the region grew");
    for i in 0..40u8 {
        let m = rx.try_recv().unwrap();
        assert_eq!(m[0], i);
    }
}

#[test]
fn corrupt_segment_header_names_the_field() {
    use std::io::{Seek, SeekFrom, Write};
    let path = path("corrupt");
    let host = Segment::create(SegmentConfig::file(&path)).unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    // Word 4 of the segment header (rings_off) points elsewhere.
    f.seek(SeekFrom::Start(4096 + 4 * 8)).unwrap();
    f.write_all(&0xdead_beefu64.to_le_bytes()).unwrap();
    drop(f);
    let err = Segment::attach(&path).unwrap_err();
    assert!(matches!(err, SegmentError::Corrupt { field: "rings_off", .. }), "{err}");
    drop(host);
}

/// Starts a churning guest on `path`, lets it work a little and kills it: a dead
/// peer holding slots and ring ends. Returns its pid.
fn kill_a_churning_guest(host: &Segment, path: &str) -> u32 {
    let mut churn = spawn("child", "churn", &[("NUMASHM_PATH", path.to_string())]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while host.peers().iter().filter(|p| p.state == PeerState::Attached).count() < 2 {
        assert!(Instant::now() < deadline, "the churning guest never attached");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    churn.kill().unwrap();
    churn.wait().unwrap();
    churn.id()
}

/// The host alone again after a recovery: drains both rings (stale handles of
/// the dead), sweeps, and checks that every slot is free.
fn drain_sweep_and_count(host: &mut Segment, what: &str) {
    for ring in [1, 0] {
        let drain = host.receiver(ring).unwrap();
        while drain.try_recv().is_ok() {}
    }
    host.sweep_lost_slots().expect("alone");
    assert_eq!(count_free(host, 999), total_slots(host), "{what}: every slot back");
}

#[test]
fn recoverers_in_several_processes_recover_a_dead_peer_once() {
    // Three processes and the host recover the same dead peer at once: exactly
    // one of them does it (the entry's recovery claim), and every slot of the
    // dead peer comes back.
    for round in 0..4 {
        let path = path(&format!("multirec{round}"));
        let mut host = Segment::create(SegmentConfig::file(&path).max_peers(8)).unwrap();
        let dead_pid = kill_a_churning_guest(&host, &path);
        let deadline = Instant::now() + Duration::from_secs(30);
        let recoverers: Vec<_> = (0..3)
            .map(|k| spawn("child", "recover", &[("NUMASHM_PATH", path.clone()), ("NUMASHM_ID", k.to_string())]))
            .collect();
        for k in 0..3 {
            while !std::path::Path::new(&format!("{path}.ready{k}")).exists() {
                assert!(Instant::now() < deadline, "round {round}: recoverer {k} not ready");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        std::fs::write(format!("{path}.go"), b"1").unwrap();
        let mine = host.recover_dead_peers();
        for c in recoverers {
            wait_ok(c, Duration::from_secs(60));
        }
        let mut reports: Vec<(u32, usize)> = mine.peers.iter().map(|&(i, _, n)| (i, n)).collect();
        for k in 0..3 {
            let text = std::fs::read_to_string(format!("{path}.rec{k}")).unwrap();
            for e in text.split(',').filter(|e| !e.is_empty()) {
                let (i, n) = e.split_once(':').unwrap();
                reports.push((i.parse().unwrap(), n.parse().unwrap()));
            }
        }
        assert_eq!(reports.len(), 1, "round {round}: one recovery of the dead peer (pid {dead_pid}), not {reports:?}");
        let dead = &host.peers()[reports[0].0 as usize];
        assert_eq!((dead.state, dead.recovered_by), (PeerState::Empty, None), "round {round}");
        drain_sweep_and_count(&mut host, &format!("round {round}"));
        for k in 0..3 {
            let _ = std::fs::remove_file(format!("{path}.ready{k}"));
            let _ = std::fs::remove_file(format!("{path}.rec{k}"));
        }
        let _ = std::fs::remove_file(format!("{path}.go"));
    }
}

#[test]
fn two_recoverers_reclaim_a_dead_peer_exactly_once() {
    let path = path("tworec");
    let mut host = Segment::create(SegmentConfig::file(&path)).unwrap();
    kill_a_churning_guest(&host, &path);
    let other = Segment::attach(&path).unwrap();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| host.recover_dead_peers());
        let b = s.spawn(|| other.recover_dead_peers());
        (a.join().unwrap(), b.join().unwrap())
    });
    let dead: Vec<_> = a.peers.iter().chain(b.peers.iter()).collect();
    assert_eq!(dead.len(), 1, "the dead peer was recovered, by one of the two: {dead:?}");
    // Running again finds nothing.
    assert!(host.recover_dead_peers().peers.is_empty());
    drop(other);
    drain_sweep_and_count(&mut host, "two recoverers");
}
