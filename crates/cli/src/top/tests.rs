//! The frame's text against a live pair of peers in this process.

use super::*;
use numashm::pool::{Peer, PeerConfig};

#[test]
fn a_frame_shows_peers_channels_pools_and_rates() {
    let host = Peer::create_anonymous("top-frame", 4, PeerConfig::new("top-frame-a").ring_capacity(64)).unwrap();
    let guest = host.join_same(PeerConfig::new("top-frame-b")).unwrap();
    let (tx, rx) = (host.sender(2).unwrap(), guest.receiver(2).unwrap());
    let fd = || numashm::pool::inspect_fd(host.rendezvous_fd().try_clone_to_owned().unwrap()).unwrap();
    let before = fd();
    for _ in 0..40 {
        tx.send(tx.alloc(700).unwrap()).map_err(|e| e.error).unwrap();
    }
    let held: Vec<_> = (0..10).map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap()).collect();
    let s = snapshot::build("/dev/shm/example", &before, &fd(), 2.0);
    let a = s.peers.iter().find(|p| p.entry == host.entry()).unwrap();
    assert_eq!((a.sent, a.sent_rate, a.lent), (Some(40), Some(20.0), Some(40)));
    let b = s.peers.iter().find(|p| p.entry == guest.entry()).unwrap();
    assert_eq!((b.received, b.received_rate, b.held), (Some(10), Some(5.0), Some(10)));
    let ch = &s.channels[0];
    assert_eq!((ch.channel, ch.consumer.clone(), ch.rate), (2, Ok(guest.entry()), Some(20.0)));
    assert_eq!((ch.rings[0].fill, ch.rings[0].held), (Some(30), Some(10)));
    assert_eq!(ch.slow, None, "30 of 64 cells waiting is under half, 10 held under a ring's worth");
    let text = render_text(&s, ONCE_SIZE);
    assert!(text.contains("peers") && text.contains("channels") && text.contains("pools") && text.contains("recoveries"), "{text}");
    assert!(text.contains("20/s") && text.contains("30/64"), "{text}");
    let pool = s.pools.iter().find(|p| p.entry == host.entry()).unwrap();
    assert!(pool.classes.iter().any(|(name, c)| name == "1KiB" && c.lent == 40), "{:?}", pool.classes);
    assert!(pool.pages.as_ref().is_ok_and(|p| p.iter().map(|(_, c)| c).sum::<usize>() > 0));
    // Two more messages than half a ring wait: the consumer is the slow one.
    for _ in 0..4 {
        tx.send(tx.alloc(700).unwrap()).map_err(|e| e.error).unwrap();
    }
    let s = snapshot::build("/dev/shm/example", &before, &fd(), 2.0);
    let want = format!("entry {}: reads behind (ring of entry {} 34/64)", guest.entry(), host.entry());
    assert_eq!(s.channels[0].slow.as_deref(), Some(want.as_str()));
    assert!(render_text(&s, ONCE_SIZE).contains(&want));
    drop(held);
    println!("{text}");
}

#[test]
fn rates_are_none_when_a_counter_goes_backwards_or_no_time_passed() {
    assert_eq!(snapshot::rate_for_tests(Some(10), 5, 1.0), None);
    assert_eq!(snapshot::rate_for_tests(Some(10), 30, 2.0), Some(10.0));
    assert_eq!(snapshot::rate_for_tests(Some(10), 30, 0.0), None);
    assert_eq!(snapshot::rate_for_tests(None, 30, 1.0), None);
}

#[test]
fn q_esc_and_ctrl_c_quit_other_keys_do_not() {
    let k = |code, m| KeyEvent::new(code, m);
    assert!(quits(&k(KeyCode::Char('q'), KeyModifiers::NONE)));
    assert!(quits(&k(KeyCode::Esc, KeyModifiers::NONE)));
    assert!(quits(&k(KeyCode::Char('c'), KeyModifiers::CONTROL)));
    assert!(!quits(&k(KeyCode::Char('c'), KeyModifiers::NONE)));
    assert!(!quits(&k(KeyCode::Char('x'), KeyModifiers::NONE)));
}

/// Writes `word` into channel `c`'s consumer word (docs/pools.md: channel
/// words from byte 4608, `epoch << 32 | entry + 1`), as any peer could.
fn write_consumer_word(peer: &Peer, c: u64, word: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::from(peer.rendezvous_fd().try_clone_to_owned().unwrap());
    f.write_all_at(&word.to_le_bytes(), 4608 + 8 * c).unwrap();
}

#[test]
fn a_leftover_consumer_word_is_shown_as_nobody_consuming() {
    let host = Peer::create_anonymous("top-leftover", 4, PeerConfig::new("top-leftover-a")).unwrap();
    let guest = host.join_same(PeerConfig::new("top-leftover-b")).unwrap();
    let fd = || numashm::pool::inspect_fd(host.rendezvous_fd().try_clone_to_owned().unwrap()).unwrap();
    let epoch = fd().entries.iter().find(|e| e.index == guest.entry()).unwrap().epoch;
    // Channel 5 names the guest's entry in an earlier epoch (a dead earlier user's claim).
    write_consumer_word(&host, 5, u64::from(epoch - 1) << 32 | u64::from(guest.entry() + 1));
    let r = fd();
    let c = r.channels.iter().find(|c| c.channel == 5).unwrap();
    assert_eq!((c.consumer.as_ref().ok(), c.consumer_epoch, c.leftover), (Some(&guest.entry()), epoch - 1, true));
    let s = snapshot::build("/dev/shm/example", &r, &r, 1.0);
    let ch = s.channels.iter().find(|c| c.channel == 5).unwrap();
    assert_eq!((ch.consumer_alive, ch.slow.as_deref()), (Some("leftover"), None), "the live guest is not its consumer");
    assert!(s.recoveries.dead_consumers.is_empty());
    assert!(render_text(&s, ONCE_SIZE).contains(&format!("{} (leftover)", guest.entry())));
}
