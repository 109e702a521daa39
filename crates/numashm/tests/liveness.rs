//! Liveness the kernel holds: a peer owns its rendezvous entry by an OFD lock
//! on the entry's byte, which the kernel drops when the process dies and no
//! other process can take or drop. The entry's pid, start time and state
//! words are hints another process may rewrite.

mod common;

use std::io::{BufRead, BufReader};
use std::time::Duration;


use common::*;
use numashm::pool::{Peer, PeerConfig, PoolError};
use numashm::Region;

/// Byte offset of entry `i`'s first word (ident: `state << 56 | epoch << 32 | pid`)
/// in the rendezvous (docs/pools.md).
fn ident_off(i: u32) -> usize {
    5120 + i as usize * 128
}

/// A pid that names no process: a child that exited and was reaped.
fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// Rewrites entry `i` to say: Attached, by `pid`, started at 0 (what a
/// hostile peer can write into the rendezvous).
fn say_attached_by(rdv: &Region, i: u32, pid: u32) {
    rdv.write_at(ident_off(i), &(2u64 << 56 | 1 << 32 | u64::from(pid)).to_le_bytes()).unwrap();
    rdv.write_at(ident_off(i) + 8, &0u64.to_le_bytes()).unwrap();
}

#[test]
fn liveness_child() {
    let Some(role) = role() else { return };
    let path = std::env::var("NUMASHM_PATH").unwrap();
    let peer = Peer::join(&path, PeerConfig::new("liveness-child")).expect("join");
    match role.as_str() {
        // Join, say which entry, wait to be killed (bounded).
        "stay" => {
            println!("joined {}", peer.entry());
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
}

/// Joins when the start file appears (all children at once), says which entry,
/// stays until told to go (the go file), so every entry is held at the end.
#[test]
fn racing_child() {
    let Some(role) = role() else { return };
    assert_eq!(role, "race");
    let path = std::env::var("NUMASHM_PATH").unwrap();
    let start = std::time::Instant::now();
    let wait_for = |f: &str| {
        while !std::path::Path::new(f).exists() {
            assert!(start.elapsed() < Duration::from_secs(30), "{f} never appeared");
            std::thread::sleep(Duration::from_micros(100));
        }
    };
    wait_for(&format!("{path}.start"));
    let peer = Peer::join(&path, PeerConfig::new("liveness-race")).expect("join");
    println!("joined {}", peer.entry());
    wait_for(&format!("{path}.go"));
    drop(peer);
}

#[test]
#[cfg_attr(miri, ignore)]
fn an_entry_rewritten_to_name_a_dead_process_stays_with_its_live_owner() {
    let a = Peer::create_anonymous("live-lie", 4, PeerConfig::new("ll-a")).unwrap();
    let rdv = Region::attach_fd(a.rendezvous_fd().try_clone_to_owned().unwrap()).unwrap();
    say_attached_by(&rdv, a.entry(), dead_pid());
    // Before: a joiner took over any entry whose pid the kernel called dead.
    let b = a.join_same(PeerConfig::new("ll-b")).unwrap();
    assert_ne!(b.entry(), a.entry(), "the live owner keeps its entry");
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_killed_peers_entry_is_free_for_the_next_joiner() {
    let path = path("liveness-killed");
    let host = Peer::create(&path, 2, PeerConfig::new("lk-host")).unwrap();
    let mut child = spawn("liveness_child", "stay", &[("NUMASHM_PATH", path.clone())]);
    let seen = BufReader::new(child.stdout.as_mut().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.split("joined ").nth(1).map(|n| n.trim().parse::<u32>().unwrap()));
    let Some(taken) = seen else {
        let _ = child.kill();
        panic!("the child did not join: {:?}", child.wait_with_output().unwrap());
    };
    assert_ne!(taken, host.entry());
    // Both entries held: a third peer finds the table full.
    assert!(matches!(host.join_same(PeerConfig::new("lk-full")), Err(PoolError::Full { .. })));
    child.kill().unwrap();
    child.wait().unwrap();
    // The kernel dropped the child's lock with its last descriptor: the entry is free,
    // whatever its words still say (the child never left).
    let next = host.join_same(PeerConfig::new("lk-next")).unwrap();
    assert_eq!(next.entry(), taken);
    drop((next, host));
    let _ = std::fs::remove_file(&path);
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_live_consumer_keeps_its_channel_whatever_its_entry_says() {
    let a = Peer::create_anonymous("live-chan", 4, PeerConfig::new("lc-a")).unwrap();
    let b = a.join_same(PeerConfig::new("lc-b")).unwrap();
    let rx = b.receiver(0).unwrap();
    let rdv = Region::attach_fd(a.rendezvous_fd().try_clone_to_owned().unwrap()).unwrap();
    say_attached_by(&rdv, b.entry(), dead_pid());
    // Before: the claim asked the kernel about the pid in the entry (dead) and took the channel.
    let c = a.join_same(PeerConfig::new("lc-c")).unwrap();
    match c.receiver(0) {
        Err(PoolError::ChannelTaken { channel: 0, peer }) => assert_eq!(peer, Some(b.entry())),
        other => panic!("the channel of a live consumer was taken: {other:?}"),
    }
    drop(rx);
}

/// Several processes join one rendezvous at the same instant: each gets an
/// entry of its own (the kernel gives an entry's lock to one of them), none is
/// refused while entries are free, and the table then says it is full.
#[test]
#[cfg_attr(miri, ignore)]
fn processes_joining_at_once_each_get_their_own_entry() {
    const N: usize = 6;
    let path = path("liveness-race");
    let host = Peer::create(&path, N as u32 + 1, PeerConfig::new("race-host")).unwrap();
    let mut children: Vec<_> = (0..N).map(|_| spawn("racing_child", "race", &[("NUMASHM_PATH", path.clone())])).collect();
    std::fs::write(format!("{path}.start"), b"").unwrap();
    let mut entries = vec![host.entry()];
    for child in &mut children {
        let seen = BufReader::new(child.stdout.as_mut().unwrap())
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.split("joined ").nth(1).map(|n| n.trim().parse::<u32>().unwrap()));
        entries.push(seen.expect("every child joined"));
    }
    let mut distinct = entries.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), N + 1, "one entry each: {entries:?}");
    assert!(matches!(host.join_same(PeerConfig::new("race-late")), Err(PoolError::Full { .. })));
    std::fs::write(format!("{path}.go"), b"").unwrap();
    for child in children {
        wait_ok(child, Duration::from_secs(30));
    }
    drop(host);
    for f in [path.clone(), format!("{path}.start"), format!("{path}.go")] {
        let _ = std::fs::remove_file(f);
    }
}
