//! Async ends (feature `tokio`): an async receiver fed by a sync sender in
//! another process, an async sender waiting for room with a sync receiver in
//! another process, and an idle async receiver that sleeps (no busy loop).

mod common;

use std::time::Duration;

use common::*;
use numashm::pool::{AsyncError, ChannelError, Peer, PeerConfig};

const T: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Waits until every slot `p` lent is back (bounded), then checks the returns.
fn all_returned(p: &Peer, sent: u64) {
    let until = std::time::Instant::now() + T;
    while lent(p) > 0 && std::time::Instant::now() < until {
        p.collect_returns();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(lent(p), 0, "every slot came back: {:?}", p.census());
    let (ok, bad) = p.returns();
    assert_eq!(bad, 0, "no bad returns from an honest reader");
    assert_eq!(ok, sent, "returns accepted");
}

/// Child entry point; a no-op as a normal test.
#[test]
fn tokio_child() {
    let Some(role) = role() else { return };
    let path = std::env::var("NUMASHM_PATH").unwrap();
    let n: u64 = std::env::var("NUMASHM_N").unwrap().parse().unwrap();
    let peer = Peer::join(&path, PeerConfig::new("tokio-child")).expect("join");
    match role.as_str() {
        // A sync sender: n checksummed messages on channel 0, then a one-byte
        // terminator once every slot came back.
        "sync-sender" => {
            let tx = peer.sender(0).unwrap();
            for i in 0..n {
                let mut m = tx.alloc(len_of(i)).unwrap();
                fill(i, &mut m);
                tx.send_timeout(m, T).map_err(|e| e.error).unwrap();
            }
            all_returned(&peer, n);
            tx.send_timeout(tx.alloc(1).unwrap(), T)
                .map_err(|e| e.error)
                .unwrap();
            all_returned(&peer, n + 1);
        }
        // A sync receiver: n checksummed messages on channel 0, in order.
        "sync-receiver" => {
            let rx = peer.receiver(0).unwrap();
            for i in 0..n {
                check(i, &rx.recv_timeout(T).expect("recv"));
            }
            // Stay until the sender saw its slots back (it sends one more byte then).
            let last = rx.recv_timeout(T).expect("terminator");
            assert_eq!(last.len(), 1);
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn an_async_receiver_gets_100k_messages_from_a_sync_sender_in_another_process() {
    let path = path("tokio-rx");
    let n = messages();
    let host = Peer::create(&path, 4, PeerConfig::new("tokio-rx-host")).unwrap();
    let beat = watchdog("async receiver", T);
    let rt = runtime();
    rt.block_on(async {
        let rx = host.async_receiver(0).unwrap();
        let child = spawn(
            "tokio_child",
            "sync-sender",
            &[("NUMASHM_PATH", path.clone()), ("NUMASHM_N", n.to_string())],
        );
        for i in 0..n {
            let msg = rx.recv().await.expect("recv");
            check(i, &msg);
            beat.tick();
        }
        // The sender waits for every slot to come back, then sends one byte.
        let last = rx.recv().await.expect("terminator");
        assert_eq!(last.len(), 1);
        drop(last);
        // Keep flushing returns while the child checks them.
        let done = tokio::task::spawn_blocking(move || wait_ok(child, T * 4));
        tokio::pin!(done);
        loop {
            tokio::select! {
                r = &mut done => { r.unwrap(); break; }
                _ = tokio::time::sleep(Duration::from_millis(10)) => { let _ = rx.try_recv(); }
            }
        }
    });
    beat.done();
    drop(host);
    let _ = std::fs::remove_file(&path);
}

#[test]
#[cfg_attr(miri, ignore)]
fn an_async_sender_waits_for_room_and_every_message_arrives_in_another_process() {
    let path = path("tokio-tx");
    let n = messages() / 5;
    // Four cells: the sender waits for room most of the time.
    let host = Peer::create(&path, 4, PeerConfig::new("tokio-tx-host").ring_capacity(4)).unwrap();
    let beat = watchdog("async sender", T);
    let rt = runtime();
    rt.block_on(async {
        let tx = host.async_sender(0).unwrap();
        let child = spawn(
            "tokio_child",
            "sync-receiver",
            &[("NUMASHM_PATH", path.clone()), ("NUMASHM_N", n.to_string())],
        );
        for i in 0..n {
            let mut m = tx.sender().alloc(len_of(i)).unwrap();
            fill(i, &mut m);
            tx.send(m).await.map_err(|e| e.error).expect("send");
            beat.tick();
        }
        // Returns, then the terminator the receiver waits for.
        let until = std::time::Instant::now() + T;
        while lent(&host) > 0 && std::time::Instant::now() < until {
            host.collect_returns();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(lent(&host), 0, "every slot came back: {:?}", host.census());
        assert_eq!(host.returns(), (n, 0));
        // A four-cell ring against a reader in another process: the sender
        // waited for room, and the reader's doorbell woke it through the pipe.
        assert!(tx.wakes().0 > 0, "woken through the wake pipe: {:?}", tx.wakes());
        tx.send(tx.sender().alloc(1).unwrap())
            .await
            .map_err(|e| e.error)
            .unwrap();
        tokio::task::spawn_blocking(move || wait_ok(child, T * 4))
            .await
            .unwrap();
    });
    beat.done();
    drop(host);
    let _ = std::fs::remove_file(&path);
}

/// CPU time this thread has used so far.
fn thread_cpu() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a valid, writable rusage; RUSAGE_THREAD asks about the
    // calling thread only.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, ru.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage");
    // SAFETY: getrusage succeeded, so it filled the struct (it was zeroed anyway).
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[test]
#[cfg_attr(miri, ignore)]
fn an_idle_async_receiver_sleeps_and_wakes_for_the_next_message() {
    let a = Peer::create_anonymous("tokio-idle", 4, PeerConfig::new("tokio-idle-a")).unwrap();
    let b = a.join_same(PeerConfig::new("tokio-idle-b")).unwrap();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    // The producer, a sync sender on its own thread: one message per "go".
    let producer = std::thread::spawn(move || {
        let tx = a.sender(0).unwrap();
        ready_tx.send(()).unwrap();
        while go_rx.recv_timeout(T).is_ok() {
            let mut m = tx.alloc(8).unwrap();
            m.copy_from_slice(b"wake up!");
            tx.send_timeout(m, T).map_err(|e| e.error).unwrap();
        }
        a.collect_returns();
    });
    ready_rx.recv_timeout(T).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let rx = b.async_receiver(0).unwrap();
        go_tx.send(()).unwrap();
        let first = tokio::time::timeout(T, rx.recv())
            .await
            .expect("first message")
            .unwrap();
        assert_eq!(&*first, b"wake up!");
        drop(first);
        // Idle: nothing is sent for 300 ms; the receive stays pending and the
        // thread sleeps (a busy loop would use ~300 ms of CPU).
        // A spare byte may still be in the pipe (the producer signals at its
        // bind too): one short wait takes it.
        let _ = tokio::time::timeout(Duration::from_millis(60), rx.recv()).await;
        let (woken, slices) = rx.wakes();
        let before = thread_cpu();
        let idle = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
        let used = thread_cpu() - before;
        let (woken_idle, slices_idle) = (rx.wakes().0 - woken, rx.wakes().1 - slices);
        assert_eq!(woken_idle, 0, "no wake-up while nothing is sent");
        // Slices last MAX_PARK (50 ms; timers never fire early): at most 300 / 50 of them.
        assert!(slices_idle <= 6, "{slices_idle} slices in 300 ms");
        assert!(
            idle.is_err(),
            "nothing was sent, yet recv returned {:?}",
            idle.map(|r| r.map(|m| m.len()))
        );
        assert!(
            used < Duration::from_millis(60),
            "an idle receiver used {used:?} of CPU in 300 ms"
        );
        // And it is woken for the next messages: the receive parks first (its
        // first poll runs before the other branch), then the message is sent.
        for _ in 0..5 {
            let (next, ()) = tokio::join!(tokio::time::timeout(T, rx.recv()), async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                go_tx.send(()).unwrap();
            });
            assert_eq!(&*next.expect("woken after idling").unwrap(), b"wake up!");
        }
        assert!(
            rx.wakes().0 > woken,
            "messages came through the wake pipe: {:?}",
            rx.wakes()
        );
    });
    drop(go_tx);
    producer.join().unwrap();
}

#[test]
#[cfg_attr(miri, ignore)]
fn async_ends_need_a_runtime_and_say_so() {
    let p = Peer::create_anonymous("tokio-nort", 2, PeerConfig::new("tokio-nort")).unwrap();
    assert!(matches!(p.async_receiver(0), Err(AsyncError::NoRuntime)));
    assert!(matches!(p.async_sender(1), Err(AsyncError::NoRuntime)));
    // Inside one, try_recv on an empty channel is Empty (no wait, no error).
    let rt = runtime();
    let _g = rt.enter();
    let rx = p.async_receiver(0).unwrap();
    assert!(matches!(rx.try_recv(), Err(ChannelError::Empty)));
}
