//! Which NUMA nodes are near the CPU this thread runs on: a pool's default
//! placement.
#![allow(unsafe_code)] // sched_getcpu (SAFETY below)

/// Nodes nearest first from the node of the CPU we run on now (empty when the
/// topology or the CPU cannot be read).
pub(crate) fn local_node_order() -> Vec<u32> {
    let Ok(topo) = numashm_region::Topology::get() else { return Vec::new() };
    // libc's sched_getcpu, not rustix's: rustix's vDSO lookup crashes under valgrind (callgrind of the message path).
    // SAFETY: sched_getcpu has no preconditions; it returns -1 on error.
    let cpu = unsafe { libc::sched_getcpu() };
    let Ok(cpu) = u32::try_from(cpu) else { return Vec::new() };
    match topo.nodes().iter().find(|n| n.cpus.contains(&cpu)) {
        Some(n) => topo.nodes_by_distance(n.os_index),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg_attr(miri, ignore)] // hwloc and sched_getcpu are foreign calls
    fn the_local_node_comes_first_and_every_node_once() {
        let order = super::local_node_order();
        let topo = numashm_region::Topology::get().unwrap();
        let mut all: Vec<u32> = topo.nodes().iter().map(|n| n.os_index).collect();
        let mut got = order.clone();
        all.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, all, "every node once");
        let cpu = rustix::thread::sched_getcpu() as u32;
        let local = topo.nodes().iter().find(|n| n.cpus.contains(&cpu)).map(|n| n.os_index);
        // The thread may move between the two reads; on one node it cannot matter.
        if topo.nodes().len() == 1 {
            assert_eq!(order.first().copied(), local);
        }
    }
}
