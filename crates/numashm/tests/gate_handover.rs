//! A gatekeeper hands its pool to a successor (`Peer::hand_over`): its ticket
//! holders keep exchanging messages with it, and the successor is still their
//! gate for new links (the gate is whoever the gatekeeper pool's descriptor
//! names as owner, not the pid written in the ticket).

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::{role, spawn};
use numashm::pool::{ChannelError, Handover, JoinTicket, Peer, PeerConfig, Sender};

const T: Duration = Duration::from_secs(60);
const NAME: &str = "a_gatekeepers_successor_is_still_the_gate_of_its_ticket_holders";

fn send(tx: &Sender<'_>, v: u64) {
    let deadline = Instant::now() + T;
    loop {
        let mut m = tx.alloc(8).unwrap();
        m.copy_from_slice(&v.to_le_bytes());
        match tx.send(m) {
            Ok(()) => return,
            Err(e) if matches!(e.error, ChannelError::Full) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("send {v}: {}", e.error),
        }
    }
}

/// The gatekeeper: creates the rendezvous, grants the test process a ticket,
/// sends 0..10 on channel 0, hands over; the successor sends 10..20 on
/// channel 0 and 100..110 on a channel it starts producing only now (1), and
/// a second peer of its process sends 200..210 on channel 2.
fn gate() {
    let path = std::env::var("NUMASHM_PATH").unwrap();
    let member: u32 = std::env::var("NUMASHM_MEMBER").unwrap().parse().unwrap();
    let peer = Peer::create(&path, 4, PeerConfig::new("gate-keeper").gatekeeper()).unwrap();
    println!("\nticket {}", peer.grant_join(member).unwrap());
    {
        let tx = peer.sender(0).unwrap();
        for v in 0..10 {
            send(&tx, v);
        }
        // Until the member read them all (it has mapped our pool to admit us).
        let deadline = Instant::now() + T;
        while common::lent(&peer) != 0 {
            assert!(Instant::now() < deadline, "the member never read channel 0");
            peer.collect_returns();
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // SAFETY: this role's thread is the only one the successor needs.
    match unsafe { peer.hand_over(Duration::from_secs(20)) }.map_err(|e| e.error).unwrap() {
        Handover::Predecessor { successor } => println!("\nhanded {successor}"),
        Handover::Successor(peer) => {
            let tx = peer.sender(0).unwrap();
            for v in 10..20 {
                send(&tx, v);
            }
            let tx = peer.sender(1).unwrap();
            for v in 100..110 {
                send(&tx, v);
            }
            // Another peer of the successor's process, with a pool of its own:
            // admitted as the gatekeeper's process (the descriptor names the
            // successor now), not as the gatekeeper's pool.
            let extra = peer.join_same(PeerConfig::new("gate-extra")).unwrap();
            let tx2 = extra.sender(2).unwrap();
            for v in 200..210 {
                send(&tx2, v);
            }
            let deadline = Instant::now() + T;
            while common::lent(&extra) != 0 {
                assert!(Instant::now() < deadline, "the member never read the extra peer's channel");
                extra.collect_returns();
                std::thread::sleep(Duration::from_millis(1));
            }
            while common::lent(&peer) != 0 {
                assert!(Instant::now() < deadline, "the member never read what the successor sent");
                peer.collect_returns();
                std::thread::sleep(Duration::from_millis(1));
            }
            println!("\nsuccessor done refused={:?}", peer.refused_peers());
            std::process::exit(0);
        }
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_gatekeepers_successor_is_still_the_gate_of_its_ticket_holders() {
    if role().as_deref() == Some("gate") {
        return gate();
    }
    let path = common::path("gate-handover");
    let mut child = spawn(NAME, "gate", &[("NUMASHM_PATH", path.clone()), ("NUMASHM_MEMBER", std::process::id().to_string())]);
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let ticket: JoinTicket = loop {
        let line = lines.recv_timeout(T).expect("a ticket from the gatekeeper");
        if let Some(t) = line.trim().strip_prefix("ticket ") {
            break t.parse().unwrap();
        }
    };
    let member = Peer::join(&path, PeerConfig::new("gate-member").ticket(ticket)).unwrap();
    let (rx0, rx1, rx2) = (member.receiver(0).unwrap(), member.receiver(1).unwrap(), member.receiver(2).unwrap());
    let mut got = (Vec::new(), Vec::new(), Vec::new());
    let deadline = Instant::now() + T;
    while got.0.len() < 20 || got.1.len() < 10 || got.2.len() < 10 {
        assert!(Instant::now() < deadline, "got {got:?}; refused {:?}", member.refused_peers());
        for (rx, into) in [(&rx0, &mut got.0), (&rx1, &mut got.1), (&rx2, &mut got.2)] {
            if let Ok(m) = rx.recv_timeout(Duration::from_millis(2)) {
                into.push(u64::from_le_bytes(m[..8].try_into().unwrap()));
            }
        }
    }
    assert_eq!(got.0, (0..20).collect::<Vec<_>>(), "channel 0: before and after the hand-over, in order");
    assert_eq!(got.1, (100..110).collect::<Vec<_>>(), "channel 1, linked after the hand-over: the successor was admitted");
    assert_eq!(got.2, (200..210).collect::<Vec<_>>(), "channel 2: another peer of the successor's process was admitted");
    assert!(member.refused_peers().is_empty(), "nobody refused: {:?}", member.refused_peers());
    let done = loop {
        let line = lines.recv_timeout(T).expect("the successor's report");
        if let Some(rest) = line.trim().strip_prefix("successor done ") {
            break rest.to_owned();
        }
    };
    assert_eq!(done, "refused=[]", "the successor refused nobody: the member's ticket is in its pool");
    common::wait_ok(child, T);
}
