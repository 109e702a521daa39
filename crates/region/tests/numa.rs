//! Placement on every NUMA node with every policy, page size and growth,
//! verified page by page. On a one-node machine this covers node 0; CI runs the
//! same binary in a guest with 2 and 4 nodes (`../shared/numa-vm/run`).

mod common;

use std::os::fd::AsFd;
use std::time::Duration;

use common::*;
use numashm_region::*;

const MIB: usize = 1 << 20;

fn nodes_with_memory() -> Vec<u32> {
    Topology::get().unwrap().nodes().iter().filter(|n| n.total_memory > 0).map(|n| n.os_index).collect()
}

#[test]
fn child_process() {
    let Some(role) = role() else { return };
    assert_eq!(role, "verify-guest");
    let node: u32 = std::env::var("NUMASHM_NODE").unwrap().parse().unwrap();
    let path = std::env::var("NUMASHM_PATH").unwrap();
    let guest = Region::attach_file(&path).unwrap();
    assert_eq!(guest.placement().unwrap().nodes().iter().collect::<Vec<_>>(), vec![node]);
    // Touch every page from the guest: shmem's shared policy places the pages
    // the guest faults in too.
    let mut buf = [0u8; 1];
    for off in (0..guest.len()).step_by(4096) {
        guest.read_at(off, &mut buf).unwrap();
    }
    let pages = guest.verify_placement().unwrap();
    assert_eq!(pages.on_node(node), guest.len() / 4096, "guest view: {pages:?}");
}

#[test]
fn bind_and_preferred_place_every_page_on_each_node_and_growth_follows() {
    for node in nodes_with_memory() {
        for policy in [MemPolicy::Bind, MemPolicy::Preferred] {
            let r = RegionOptions::new(4 * MIB)
                .max_len(16 * MIB)
                .node(node)
                .policy(policy)
                .populate(true)
                .create_anonymous("numa-bind")
                .unwrap();
            let pages = r.verify_placement().unwrap();
            assert_eq!(pages.on_node(node), 4 * MIB / 4096, "node {node} {policy:?}: {pages:?}");
            r.resize(8 * MIB).unwrap();
            let pages = r.verify_placement().unwrap();
            assert_eq!(pages.on_node(node), 8 * MIB / 4096, "grown, node {node} {policy:?}: {pages:?}");
            assert_eq!(r.node_of(8 * MIB - 1).unwrap(), node, "get_mempolicy agrees");
            println!("node {node} {policy:?}: {} pages verified", pages.present());
        }
    }
}

#[test]
fn sealed_pools_are_placed_on_each_node_and_growth_follows() {
    for node in nodes_with_memory() {
        let owner = RegionOptions::new(2 * MIB)
            .max_len(8 * MIB)
            .node(node)
            .policy(MemPolicy::Bind)
            .populate(true)
            .create_sealed("numa-pool")
            .unwrap();
        assert_eq!(owner.verify_placement().unwrap().on_node(node), 2 * MIB / 4096, "node {node}");
        owner.resize(4 * MIB).unwrap();
        let pages = owner.verify_placement().unwrap();
        assert_eq!(pages.on_node(node), 4 * MIB / 4096, "grown, node {node}: {pages:?}");
        // A reader's view, counting the pages the owner committed.
        let reader =
            Region::attach_pool_fd(owner.as_fd().try_clone_to_owned().unwrap(), AttachOptions { read_only: true }).unwrap();
        let seen = reader.resident_pages_per_node().unwrap();
        assert_eq!(seen.on_node(node), 4 * MIB / 4096, "reader view, node {node}: {seen:?}");
        reader.verify_placement().unwrap();
        println!("sealed pool on node {node}: {} pages verified", pages.present());
    }
}

#[test]
fn interleave_spreads_pages_over_all_nodes() {
    let nodes = nodes_with_memory();
    let r = RegionOptions::new(8 * MIB).nodes(&nodes).policy(MemPolicy::Interleave).populate(true).create_anonymous("numa-il").unwrap();
    let pages = r.verify_placement().unwrap();
    let total = 8 * MIB / 4096;
    assert_eq!(pages.present(), total);
    for &n in &nodes {
        let share = pages.on_node(n);
        // Round-robin: each node gets its share, give or take the header page.
        assert!(share + 2 >= total / nodes.len(), "node {n} got {share} of {total}: {pages:?}");
    }
    println!("interleave over {nodes:?}: {:?}", pages.per_node);
}

#[test]
fn a_guest_process_sees_and_keeps_the_placement() {
    for node in nodes_with_memory() {
        let path = shm_path("numa-guest");
        let host = RegionOptions::new(2 * MIB).max_len(8 * MIB).node(node).create_file(&path).unwrap();
        host.resize(4 * MIB).unwrap();
        let out = run_child(
            "child_process",
            "verify-guest",
            &[("NUMASHM_PATH", path.display().to_string()), ("NUMASHM_NODE", node.to_string())],
            Duration::from_secs(300),
        );
        assert_child_ok(&out);
        drop(host);
    }
}

#[test]
fn migrate_moves_present_pages_to_another_node() {
    let nodes = nodes_with_memory();
    let from = nodes[0];
    let to = *nodes.last().unwrap();
    let r = RegionOptions::new(4 * MIB).node(from).populate(true).create_anonymous("numa-migrate").unwrap();
    r.migrate_range(HEADER_LEN, 4 * MIB - HEADER_LEN, Placement::new(NodeSet::single(to), MemPolicy::Bind)).unwrap();
    let pages = r.pages_per_node(HEADER_LEN, 4 * MIB - HEADER_LEN).unwrap();
    assert_eq!(pages.on_node(to), (4 * MIB - HEADER_LEN) / 4096, "{pages:?}");
}

#[test]
fn hugetlb_pages_land_on_each_node() {
    for node in nodes_with_memory() {
        let free = free_huge_pages(2 * MIB, Some(node)).unwrap_or(0);
        if free < 2 && (!is_root() || !reserve_node_huge_pages(node, 2)) {
            skip(&format!("fewer than 2 free 2 MiB huge pages on node {node}"));
            continue;
        }
        let r = RegionOptions::new(4 * MIB).node(node).page_size(PageSize::Huge2M).create_anonymous("numa-huge").unwrap();
        assert_eq!(r.kernel_page_size().unwrap().0, 2 * MIB);
        let pages = r.verify_placement().unwrap();
        assert_eq!(pages.on_node(node), 2, "node {node}: {pages:?}");
        let guest = Region::attach_fd(r.as_fd().try_clone_to_owned().unwrap()).unwrap();
        assert_eq!(guest.page_size(), 2 * MIB);
        println!("hugetlb 2 MiB on node {node}: verified");
    }
}

fn reserve_node_huge_pages(node: u32, extra: u64) -> bool {
    let dir = format!("/sys/devices/system/node/node{node}/hugepages/hugepages-2048kB");
    let total: u64 = std::fs::read_to_string(format!("{dir}/nr_hugepages")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    let _ = std::fs::write(format!("{dir}/nr_hugepages"), (total + extra).to_string());
    free_huge_pages(2 * MIB, Some(node)).unwrap_or(0) >= extra
}

#[test]
fn shmem_thp_regions_are_placed_on_each_node() {
    if !ensure_shmem_thp() {
        return;
    }
    for node in nodes_with_memory() {
        let r = RegionOptions::new(8 * MIB).node(node).page_size(PageSize::Thp).populate(true).create_anonymous("numa-thp").unwrap();
        let pages = r.verify_placement().unwrap();
        assert_eq!(pages.on_node(node), 8 * MIB / 4096, "node {node}: {pages:?}");
        let (_, thp) = r.kernel_page_size().unwrap();
        println!("THP on node {node}: {thp} bytes in huge PMDs");
    }
}

#[test]
fn topology_reports_every_node_with_distances() {
    let topo = Topology::get().unwrap();
    let online = std::fs::read_to_string("/sys/devices/system/node/online").unwrap_or_default();
    println!("online nodes: {}", online.trim());
    for n in topo.nodes() {
        assert_eq!(topo.distance(n.os_index, n.os_index), Some(10));
        for m in topo.nodes() {
            let d = topo.distance(n.os_index, m.os_index).unwrap();
            assert!(d >= 10);
        }
        println!("node {}: {} MiB, cpus {:?}, by distance {:?}", n.os_index, n.total_memory >> 20, n.cpus, topo.nodes_by_distance(n.os_index));
    }
    if let Ok(expected) = std::env::var("NUMASHM_EXPECT_NODES") {
        assert_eq!(topo.nodes().len(), expected.parse::<usize>().unwrap(), "node count");
    }
}
