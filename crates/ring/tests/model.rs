//! Rings against a `VecDeque` model (proptest), on heap and in-buffer memory.
mod common;

use std::collections::VecDeque;

use numashm_ring::{Mpmc, PopError, PushError, Spsc};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Push(u64),
    Pop,
    PushSlice(Vec<u64>),
    PopInto(usize),
    Len,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<u64>().prop_map(Op::Push),
        Just(Op::Pop),
        proptest::collection::vec(any::<u64>(), 0..10).prop_map(Op::PushSlice),
        (0usize..10).prop_map(Op::PopInto),
        Just(Op::Len),
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The behaviour both rings must have in a single thread.
trait Ring {
    fn push(&mut self, v: u64) -> Result<(), PushError>;
    fn pop(&mut self) -> Result<u64, PopError>;
    fn push_slice(&mut self, v: &[u64]) -> usize;
    fn pop_into(&mut self, out: &mut [u64]) -> usize;
    fn len(&self) -> usize;
}

impl<M: numashm_ring::RingMemory> Ring for (numashm_ring::SpscProducer<M>, numashm_ring::SpscConsumer<M>) {
    fn push(&mut self, v: u64) -> Result<(), PushError> {
        self.0.push(v)
    }
    fn pop(&mut self) -> Result<u64, PopError> {
        self.1.pop()
    }
    fn push_slice(&mut self, v: &[u64]) -> usize {
        self.0.push_slice(v).unwrap()
    }
    fn pop_into(&mut self, out: &mut [u64]) -> usize {
        self.1.pop_into(out).unwrap()
    }
    fn len(&self) -> usize {
        let n = self.0.len().unwrap();
        assert_eq!(n, self.1.len().unwrap());
        assert_eq!(n, self.0.ring().len().unwrap());
        n
    }
}

impl<M: numashm_ring::RingMemory> Ring for Mpmc<M> {
    fn push(&mut self, v: u64) -> Result<(), PushError> {
        Mpmc::push(self, v)
    }
    fn pop(&mut self) -> Result<u64, PopError> {
        Mpmc::pop(self)
    }
    fn push_slice(&mut self, v: &[u64]) -> usize {
        Mpmc::push_slice(self, v).unwrap()
    }
    fn pop_into(&mut self, out: &mut [u64]) -> usize {
        Mpmc::pop_into(self, out).unwrap()
    }
    fn len(&self) -> usize {
        Mpmc::len(self).unwrap()
    }
}

fn check(ring: &mut impl Ring, cap: usize, ops: &[Op]) {
    let mut model = VecDeque::new();
    for op in ops {
        match op {
            Op::Push(v) => {
                let r = ring.push(*v);
                if model.len() == cap {
                    assert_eq!(r, Err(PushError::Full(*v)));
                } else {
                    assert_eq!(r, Ok(()));
                    model.push_back(*v);
                }
            }
            Op::Pop => assert_eq!(ring.pop().ok(), model.pop_front()),
            Op::PushSlice(vs) => {
                let n = ring.push_slice(vs);
                assert_eq!(n, vs.len().min(cap - model.len()));
                model.extend(&vs[..n]);
            }
            Op::PopInto(k) => {
                let mut out = vec![0; *k];
                let n = ring.pop_into(&mut out);
                assert_eq!(n, (*k).min(model.len()));
                let expect: Vec<u64> = model.drain(..n).collect();
                assert_eq!(&out[..n], &expect[..]);
            }
            Op::Len => assert_eq!(ring.len(), model.len()),
        }
    }
    assert_eq!(ring.len(), model.len());
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn spsc_heap_matches_vecdeque(cap_log in 0u32..5, ops in proptest::collection::vec(op(), 0..200)) {
        let cap = 1usize << cap_log;
        let mut ring = Spsc::new(cap).unwrap().split().unwrap();
        check(&mut ring, cap, &ops);
    }

    #[test]
    fn spsc_in_buffer_matches_vecdeque(cap_log in 0u32..5, ops in proptest::collection::vec(op(), 0..200)) {
        let cap = 1usize << cap_log;
        let mut buf = common::AlignedBuf::new(Spsc::<numashm_ring::HeapMemory>::bytes_for(cap).unwrap());
        // SAFETY: buf outlives the ring and is used only through it.
        let ring = unsafe { Spsc::init_in(buf.ptr(), buf.len(), cap) }.unwrap();
        let mut ends = ring.split().unwrap();
        check(&mut ends, cap, &ops);
    }

    #[test]
    fn mpmc_heap_matches_vecdeque(cap_log in 1u32..5, ops in proptest::collection::vec(op(), 0..200)) {
        let cap = 1usize << cap_log;
        let mut ring = Mpmc::new(cap).unwrap();
        check(&mut ring, cap, &ops);
    }

    #[test]
    fn mpmc_in_buffer_matches_vecdeque(cap_log in 1u32..5, ops in proptest::collection::vec(op(), 0..200)) {
        let cap = 1usize << cap_log;
        let mut buf = common::AlignedBuf::new(Mpmc::<numashm_ring::HeapMemory>::bytes_for(cap).unwrap());
        // SAFETY: buf outlives the ring and is used only through it.
        let mut ring = unsafe { Mpmc::init_in(buf.ptr(), buf.len(), cap) }.unwrap();
        check(&mut ring, cap, &ops);
    }
}

#[test]
fn spsc_indices_wrap_past_u64_max_in_buffer() {
    // Start near u64::MAX by pushing through a reset ring would take 2^64
    // steps; instead check that a fresh ring keeps FIFO order across many laps.
    let (mut tx, mut rx) = Spsc::new(2).unwrap().split().unwrap();
    for i in 0..common::scaled(10_000) as u64 {
        tx.push(i).unwrap();
        assert_eq!(rx.pop(), Ok(i));
    }
}

#[test]
fn mpmc_of_one_cell_is_refused() {
    assert_eq!(Mpmc::new(1).err(), Some(numashm_ring::LayoutError::Capacity(1)));
}

#[test]
fn pop_error_empty_is_not_corrupt() {
    let ring = Mpmc::new(2).unwrap();
    assert_eq!(ring.pop(), Err(PopError::Empty));
    assert_eq!(ring.pop_into(&mut [0; 2]), Ok(0));
}
