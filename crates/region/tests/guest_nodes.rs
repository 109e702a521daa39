//! The checker that `scripts/numa-guest-selftest` runs inside guests of
//! `scripts/numa-guest`: with `NUMASHM_EXPECT_NODES=N` set, the machine must
//! have exactly N NUMA nodes online (as sysfs lists them and as
//! [`numashm_region::Topology`] reports them), numbered 0..N, each with
//! memory. Without the variable (an ordinary `cargo test`) it checks nothing
//! and says so, since the host may have any number of nodes.

use std::fs;

use numashm_region::Topology;

/// The node ids in a kernel cpu/node list such as `0-3,5`, or `None` if it is
/// malformed.
fn parse_node_list(list: &str) -> Option<Vec<u32>> {
    let mut ids = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last): (u32, u32) = (first.parse().ok()?, last.parse().ok()?);
                if first > last {
                    return None;
                }
                ids.extend(first..=last);
            }
            None => ids.push(part.parse().ok()?),
        }
    }
    Some(ids)
}

#[test]
fn node_list_parser_reads_ranges_and_single_ids() {
    assert_eq!(parse_node_list("0\n"), Some(vec![0]));
    assert_eq!(parse_node_list("0-3"), Some(vec![0, 1, 2, 3]));
    assert_eq!(parse_node_list("0,2-3,7\n"), Some(vec![0, 2, 3, 7]));
    assert_eq!(parse_node_list(""), Some(vec![]));
    assert_eq!(parse_node_list("3-1"), None);
    assert_eq!(parse_node_list("0-x"), None);
}

#[test]
fn guest_has_exactly_the_expected_numa_nodes() {
    let Ok(expected) = std::env::var("NUMASHM_EXPECT_NODES") else {
        println!("guest_nodes: NUMASHM_EXPECT_NODES is not set: nothing checked (scripts/numa-guest-selftest sets it in a guest)");
        return;
    };
    let expected: u32 = expected
        .parse()
        .expect("NUMASHM_EXPECT_NODES is a node count");
    let want: Vec<u32> = (0..expected).collect();

    let online = fs::read_to_string("/sys/devices/system/node/online")
        .expect("read /sys/devices/system/node/online");
    let online =
        parse_node_list(&online).unwrap_or_else(|| panic!("malformed node list {online:?}"));
    assert_eq!(online, want, "nodes online in sysfs");

    // Every online node also has its directory, and no other node does.
    let mut dirs: Vec<u32> = fs::read_dir("/sys/devices/system/node")
        .expect("list /sys/devices/system/node")
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_prefix("node")?
                .parse()
                .ok()
        })
        .collect();
    dirs.sort_unstable();
    assert_eq!(dirs, want, "node directories in sysfs");

    let topo = Topology::get().expect("topology");
    let seen: Vec<u32> = topo.nodes().iter().map(|n| n.os_index).collect();
    assert_eq!(seen, want, "nodes in Topology::get()");
    for node in topo.nodes() {
        assert!(
            node.total_memory > 0,
            "node {} has no memory",
            node.os_index
        );
    }
    println!("guest_nodes: {expected} nodes online, all with memory, as expected");
}
