//! Extents per NUMA node: grown on a chosen node, preferred by `alloc_on`,
//! their pages verified where they are. CI runs this binary in a 2-node guest.

use numashm::{ClassConfig, Segment, SegmentConfig, Topology};

#[test]
fn extents_grow_on_their_node_and_alloc_on_prefers_them() {
    let topo = Topology::get().unwrap();
    let nodes: Vec<u32> = topo.nodes().iter().filter(|n| n.total_memory > 0).map(|n| n.os_index).collect();
    let (first, last) = (nodes[0], *nodes.last().unwrap());
    let classes = ClassConfig::new().class(4096, 16).max_extents(4);
    let seg = Segment::create(SegmentConfig::anonymous("numa-extents").classes(classes).node(first)).unwrap();
    let ext = seg.allocator().grow(0, Some(last)).unwrap();
    assert_eq!(seg.allocator().extent_info(0, ext).unwrap().0, Some(last));
    let tx = seg.sender(0).unwrap();
    for node in [last, first] {
        let mut msg = tx.alloc_on(4000, node).unwrap();
        msg.fill(1); // first touch
        let h = msg.handle();
        assert_eq!(seg.allocator().extent_info(0, h.extent()).unwrap().0, Some(node), "extent on node {node}");
        let offset = msg.as_ptr() as usize - seg.region().as_ptr() as usize;
        let pages = seg.region().pages_per_node(offset, msg.len()).unwrap();
        assert_eq!(pages.on_node(node), pages.present(), "slot pages on node {node}: {pages:?}");
        println!("node {node}: slot in extent {} verified on node {node}", h.extent());
    }
}

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
