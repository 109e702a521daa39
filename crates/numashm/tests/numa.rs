//! Pools per NUMA node: each sender's pool on its own node, an interleaved
//! pool spread over its nodes, every page verified where it is. CI runs this
//! binary in 2- and 4-node guests.

use numashm::Topology;

/// Two senders whose pools are bound to two nodes: every touched page of each
/// pool (header, rings, extents) is on its own node, and a receiver reads both.
#[test]
fn two_senders_pools_each_on_its_own_node() {
    use numashm::pool::{Peer, PeerConfig};
    let topo = Topology::get().unwrap();
    let nodes: Vec<u32> = topo.nodes().iter().filter(|n| n.total_memory > 0).map(|n| n.os_index).collect();
    let (first, last) = (nodes[0], *nodes.last().unwrap());
    let bind = numashm::MemPolicy::Bind;
    let rx_peer = Peer::create_anonymous("numa-pools", 4, PeerConfig::new("numa-rx").reserve(64 << 20)).unwrap();
    let a = rx_peer.join_same(PeerConfig::new("numa-a").reserve(64 << 20).nodes(&[first], bind)).unwrap();
    let b = rx_peer.join_same(PeerConfig::new("numa-b").reserve(64 << 20).nodes(&[last], bind)).unwrap();
    let (ta, tb) = (a.sender(0).unwrap(), b.sender(0).unwrap());
    let rx = rx_peer.receiver(0).unwrap();
    for (tx, byte) in [(&ta, 1u8), (&tb, 2u8)] {
        for len in [64, 4096, 100_000] {
            let mut m = tx.alloc(len).unwrap();
            m.fill(byte); // first touch
            tx.send(m).map_err(|e| e.error).unwrap();
        }
    }
    let mut seen = [0usize; 3];
    for _ in 0..6 {
        let m = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        seen[m[0] as usize] += 1;
    }
    assert_eq!(seen, [0, 3, 3]);
    for (peer, node) in [(&a, first), (&b, last)] {
        let pages = peer.pool_region().verify_placement().unwrap();
        assert_eq!(pages.on_node(node), pages.present(), "pool pages on node {node}: {pages:?}");
        println!("pool on node {node}: {} pages, all on node {node}", pages.present());
    }
}

/// A pool made with `--policy interleave` over every node spreads its pages
/// (header, rings, extents alike) over all of them; layout 3 put every extent
/// on one node whatever the policy (65 532 KiB on node 0, 16 KiB on node 1).
#[test]
fn an_interleaved_pool_spreads_every_page_over_its_nodes() {
    use numashm::pool::{Peer, PeerConfig};
    let topo = Topology::get().unwrap();
    let nodes: Vec<u32> = topo.nodes().iter().filter(|n| n.total_memory > 0).map(|n| n.os_index).collect();
    if nodes.len() < 2 {
        println!("SKIPPED: interleave needs two nodes with memory (this machine has {})", nodes.len());
        return;
    }
    let cfg = PeerConfig::new("numa-interleave").reserve(64 << 20).nodes(&nodes, numashm::MemPolicy::Interleave);
    let rx_peer = Peer::create_anonymous("numa-interleave-rv", 4, PeerConfig::new("numa-interleave-rx")).unwrap();
    let p = rx_peer.join_same(cfg).unwrap();
    let tx = p.sender(0).unwrap();
    let _rx = rx_peer.receiver(0).unwrap();
    // Touch a few MiB of slots in several classes.
    let mut held = Vec::new();
    for len in [64usize, 1024, 4096, 65536] {
        for _ in 0..(1 << 20) / len {
            let mut m = tx.alloc(len).unwrap();
            m.fill(3);
            held.push(m);
        }
    }
    let pages = p.pool_region().pages_per_node(0, p.pool_region().len()).unwrap();
    for &n in &nodes {
        let share = pages.on_node(n) as f64 / pages.present() as f64;
        println!("node {n}: {} of {} pages", pages.on_node(n), pages.present());
        assert!(share > 0.5 / nodes.len() as f64, "node {n} holds {share:.2} of the pool's pages: {pages:?}");
    }
}
