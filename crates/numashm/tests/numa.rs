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
