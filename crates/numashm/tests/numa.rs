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
