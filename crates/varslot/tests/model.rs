//! Property test: any sequence of operations gives the answers of a simple model.

use std::collections::HashSet;

use numashm_varslot::{AllocError, Config, Handle, HandleError, HeapAllocator};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Alloc { len: usize, peer: u32 },
    Free(usize),
    Write(usize, u8),
    Read(usize),
    InFlight(usize, u32),
    Take(usize, u32),
    Reclaim(u32),
    MagAlloc(usize),
    MagFree(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..300, 0u32..3).prop_map(|(len, peer)| Op::Alloc { len, peer }),
        2 => any::<usize>().prop_map(Op::Free),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Op::Write(i, b)),
        1 => any::<usize>().prop_map(Op::Read),
        1 => (any::<usize>(), 0u32..3).prop_map(|(i, p)| Op::InFlight(i, p)),
        1 => (any::<usize>(), 0u32..3).prop_map(|(i, p)| Op::Take(i, p)),
        1 => (0u32..3).prop_map(Op::Reclaim),
        2 => (0usize..300).prop_map(Op::MagAlloc),
        2 => any::<usize>().prop_map(Op::MagFree),
    ]
}

/// What the model knows about one handle ever handed out.
struct Issued {
    h: Handle,
    live: bool,
    in_flight: bool,
    owner: u32,
    byte: u8,
}

const CLASSES: [(usize, usize); 2] = [(64, 3), (256, 2)];

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut cfg = Config::new().max_extents(1);
    for (size, n) in CLASSES {
        cfg = cfg.class(size, n);
    }
    let a = HeapAllocator::new(&cfg).unwrap();
    // Peer 3's magazine (peer 3 is never reclaimed), caching up to 2 slots per class.
    const MAG: usize = 2;
    let mut mag = a.magazine(3, MAG);
    let mut cached = [0usize; 2];
    let mut issued: Vec<Issued> = Vec::new();
    for op in ops {
        let pick = |i: usize| if issued.is_empty() { None } else { Some(i % issued.len()) };
        match op {
            Op::Alloc { len, peer } => {
                let class = CLASSES.iter().position(|&(s, _)| len <= s);
                let got = a.alloc(len, peer);
                match class {
                    None => prop_assert_eq!(got, Err(AllocError::TooLarge { len, max: 256 })),
                    Some(c) => {
                        let live = issued.iter().filter(|x| x.live && x.h.class() == c).count();
                        if live + cached[c] == CLASSES[c].1 {
                            prop_assert_eq!(got, Err(AllocError::Exhausted { class: c }));
                        } else {
                            let h = got.unwrap();
                            prop_assert_eq!(h.class(), c);
                            prop_assert!(!issued.iter().any(|x| x.live && x.h.class() == c && x.h.slot() == h.slot()));
                            prop_assert!(!issued.iter().any(|x| x.h == h), "handle reissued");
                            issued.push(Issued { h, live: true, in_flight: false, owner: peer, byte: 0 });
                        }
                    }
                }
            }
            Op::Free(i) => {
                let Some(i) = pick(i) else { continue };
                let x = &mut issued[i];
                let got = a.free(x.h);
                if x.live {
                    prop_assert_eq!(got, Ok(()));
                    x.live = false;
                } else {
                    prop_assert_eq!(got, Err(HandleError::Stale));
                }
            }
            Op::Write(i, b) => {
                let Some(i) = pick(i) else { continue };
                let x = &mut issued[i];
                match a.resolve(x.h) {
                    Ok(mut s) => {
                        prop_assert!(x.live);
                        // SAFETY: single-threaded; the handle is live and no other
                        // reference to the slot exists.
                        #[allow(unsafe_code)]
                        unsafe { s.as_mut_slice().fill(b) };
                        x.byte = b;
                    }
                    Err(e) => {
                        prop_assert!(!x.live);
                        prop_assert_eq!(e, HandleError::Stale);
                    }
                }
            }
            Op::Read(i) => {
                let Some(i) = pick(i) else { continue };
                let x = &issued[i];
                match a.resolve(x.h) {
                    Ok(s) => {
                        prop_assert!(x.live);
                        // SAFETY: single-threaded, live handle, no writer.
                        #[allow(unsafe_code)]
                        let bytes = unsafe { s.as_slice() };
                        // Fresh slots may hold an earlier owner's bytes; written ones ours.
                        if x.byte != 0 {
                            prop_assert!(bytes.iter().all(|&b| b == x.byte));
                        }
                    }
                    Err(e) => {
                        prop_assert!(!x.live);
                        prop_assert_eq!(e, HandleError::Stale);
                    }
                }
            }
            Op::InFlight(i, to) => {
                let Some(i) = pick(i) else { continue };
                let x = &mut issued[i];
                let got = a.mark_in_flight(x.h, to);
                if x.live && !x.in_flight {
                    prop_assert_eq!(got, Ok(()));
                    x.in_flight = true;
                    x.owner = to;
                } else {
                    prop_assert!(got.is_err());
                }
            }
            Op::Take(i, peer) => {
                let Some(i) = pick(i) else { continue };
                let x = &mut issued[i];
                let got = a.take(x.h, peer);
                if x.live && x.in_flight {
                    prop_assert_eq!(got, Ok(()));
                    x.in_flight = false;
                    x.owner = peer;
                } else {
                    prop_assert!(got.is_err());
                }
            }
            Op::MagAlloc(len) => {
                let class = CLASSES.iter().position(|&(s, _)| len <= s);
                let got = mag.alloc(len);
                match class {
                    None => prop_assert_eq!(got, Err(AllocError::TooLarge { len, max: 256 })),
                    Some(c) => {
                        let live = issued.iter().filter(|x| x.live && x.h.class() == c).count();
                        if cached[c] > 0 {
                            cached[c] -= 1;
                        } else if live == CLASSES[c].1 {
                            prop_assert_eq!(got, Err(AllocError::Exhausted { class: c }));
                            continue;
                        }
                        let h = got.unwrap();
                        prop_assert_eq!(h.class(), c);
                        prop_assert!(!issued.iter().any(|x| x.live && x.h.class() == c && x.h.slot() == h.slot()));
                        prop_assert!(!issued.iter().any(|x| x.h == h), "handle reissued");
                        issued.push(Issued { h, live: true, in_flight: false, owner: 3, byte: 0 });
                    }
                }
            }
            Op::MagFree(i) => {
                let Some(i) = pick(i) else { continue };
                let x = &mut issued[i];
                let got = mag.free(x.h);
                if x.live {
                    prop_assert_eq!(got, Ok(()));
                    x.live = false;
                    let c = x.h.class();
                    if cached[c] < MAG {
                        cached[c] += 1;
                    }
                } else {
                    prop_assert_eq!(got, Err(HandleError::Stale));
                }
            }
            Op::Reclaim(peer) => {
                let mut n = 0;
                for x in issued.iter_mut().filter(|x| x.live && x.owner == peer) {
                    x.live = false;
                    n += 1;
                }
                prop_assert_eq!(a.reclaim_peer(peer), n);
            }
        }
        let live: HashSet<(usize, usize)> =
            issued.iter().filter(|x| x.live).map(|x| (x.h.class(), x.h.slot())).collect();
        prop_assert_eq!(live.len(), issued.iter().filter(|x| x.live).count());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 512 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn operations_match_the_model(ops in proptest::collection::vec(op(), 1..if cfg!(miri) { 30 } else { 200 })) {
        run(ops)?;
    }
}
