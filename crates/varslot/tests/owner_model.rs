//! Property test: random sequences of alloc / free / lend / give_back / take_back /
//! reclaim_reader, with valid and bogus handles and random readers, against a simple
//! model (HashMap of live slots, a LIFO stack per class, the layout's bump pointer).
//! Every result, error included, must be the model's prediction; no two live slots may
//! overlap; the census must match the model and `audit` must pass after every step.

use std::collections::HashMap;

use numashm_varslot::{
    GiveBack, HandleParts, HeapPoolMemory, OwnedSlot, OwnerAlloc, OwnerConfig, OwnerError,
    PoolMemory, ReturnError,
};
use proptest::prelude::*;

const CLASSES: [usize; 3] = [64, 256, 1024];
const EXTENT_BYTES: usize = 1024;
const MAX_EXTENTS: u32 = 12;
const RESERVED: usize = 96 * 1024;
const PAGE: usize = 4096;

#[derive(Debug, Clone)]
enum Sel {
    Live(usize),
    Dead(usize),
    Raw(u64),
    /// A live handle with one field replaced: 0 generation, 1 extent, 2 slot.
    Tweak(usize, u8, u32),
}

#[derive(Debug, Clone)]
enum Op {
    Alloc(usize, bool),
    Free(Sel),
    Lend(Sel, u64),
    GiveBack(Sel, u32),
    TakeBack(Sel),
    Reclaim(u32),
}

fn sel() -> impl Strategy<Value = Sel> {
    prop_oneof![
        6 => any::<usize>().prop_map(Sel::Live),
        2 => any::<usize>().prop_map(Sel::Dead),
        1 => any::<u64>().prop_map(Sel::Raw),
        2 => (any::<usize>(), 0u8..3, prop_oneof![0u32..20, any::<u32>()]).prop_map(|(i, f, v)| Sel::Tweak(i, f, v)),
    ]
}

fn reader() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 0u32..4, 1 => 60u32..70, 1 => any::<u32>()]
}

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![6 => 0usize..1100, 1 => 1025usize..20_000, 1 => Just(usize::MAX)];
    prop_oneof![
        5 => (len, prop::bool::weighted(0.8)).prop_map(|(l, g)| Op::Alloc(l, g)),
        2 => sel().prop_map(Op::Free),
        3 => (sel(), prop_oneof![0u64..16, any::<u64>()]).prop_map(|(s, m)| Op::Lend(s, m)),
        4 => (sel(), reader()).prop_map(|(s, r)| Op::GiveBack(s, r)),
        1 => sel().prop_map(Op::TakeBack),
        1 => reader().prop_map(Op::Reclaim),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum St {
    Owned,
    Lent(u64),
}

#[derive(Debug, Clone, Copy)]
struct Ext {
    class: usize,
    slots: u32,
    cap: usize,
    data: usize,
}

struct Model {
    tables_end: usize,
    bump: usize,
    extents: Vec<Ext>,
    gens: HashMap<(u32, u32), u32>,
    /// Free stacks (top = last), one per class plus the dedicated one.
    free: Vec<Vec<(u32, u32)>>,
    live: HashMap<u64, (St, OwnedSlot)>,
    dead: Vec<u64>,
}

fn up(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

impl Model {
    fn handle(&self, p: (u32, u32)) -> u64 {
        HandleParts {
            generation: self.gens[&p],
            extent: p.0,
            slot: p.1,
        }
        .encode()
    }

    fn slot(&self, p: (u32, u32)) -> OwnedSlot {
        let x = self.extents[p.0 as usize];
        OwnedSlot {
            handle: self.handle(p),
            offset: x.data + p.1 as usize * x.cap,
            capacity: x.cap,
        }
    }

    fn new_extent(
        &mut self,
        class: usize,
        slots: u32,
        cap: usize,
        skip: usize,
        align: usize,
    ) -> Option<u32> {
        if self.extents.len() >= MAX_EXTENTS as usize {
            return None;
        }
        let start = up(self.bump, align);
        let end = start + skip + slots as usize * cap;
        if end > RESERVED {
            return None;
        }
        self.bump = end;
        let e = self.extents.len() as u32;
        self.extents.push(Ext {
            class,
            slots,
            cap,
            data: start + skip,
        });
        for s in 0..slots {
            self.gens.insert((e, s), 1);
        }
        Some(e)
    }

    fn alloc(&mut self, len: usize, grow: bool) -> Result<OwnedSlot, OwnerError> {
        let n = CLASSES.len();
        let p = if let Some(c) = CLASSES.iter().position(|&s| s >= len) {
            if self.free[c].is_empty() {
                if !grow {
                    return Err(OwnerError::Exhausted { class: c });
                }
                let slots = (EXTENT_BYTES / CLASSES[c]).max(1) as u32;
                let skip = up(slots as usize * 32, 128);
                let e = self
                    .new_extent(c, slots, CLASSES[c], skip, 128)
                    .ok_or(OwnerError::Exhausted { class: c })?;
                self.free[c].extend((0..slots).rev().map(|s| (e, s)));
            }
            self.free[c].pop().unwrap()
        } else {
            let max = RESERVED - up(self.tables_end, PAGE) - PAGE;
            let need = match len.checked_next_multiple_of(PAGE) {
                Some(need) if need <= max => need,
                _ => return Err(OwnerError::TooLarge { len, max }),
            };
            let fit = self.free[n]
                .iter()
                .rposition(|&(e, _)| self.extents[e as usize].cap >= len);
            match fit {
                Some(i) => self.free[n].remove(i),
                None if !grow => return Err(OwnerError::Exhausted { class: n }),
                None => (
                    self.new_extent(n, 1, need, PAGE, PAGE)
                        .ok_or(OwnerError::Exhausted { class: n })?,
                    0,
                ),
            }
        };
        let s = self.slot(p);
        self.live.insert(s.handle, (St::Owned, s));
        Ok(s)
    }

    /// What the allocator must say about handle `h` before looking at its state.
    fn check(&self, h: u64) -> Result<(St, OwnedSlot), ReturnError> {
        let p = HandleParts::decode(h);
        if p.generation == 0 {
            return Err(ReturnError::Invalid {
                field: "generation",
            });
        }
        let Some(x) = self.extents.get(p.extent as usize) else {
            return Err(ReturnError::Invalid { field: "extent" });
        };
        if p.slot >= x.slots {
            return Err(ReturnError::Invalid { field: "slot" });
        }
        self.live.get(&h).copied().ok_or(ReturnError::Stale)
    }

    fn release(&mut self, h: u64) {
        let p = HandleParts::decode(h);
        let g = self.gens.get_mut(&(p.extent, p.slot)).unwrap();
        *g = if *g == u32::MAX { 1 } else { *g + 1 };
        self.live.remove(&h);
        self.dead.push(h);
        let class = self.extents[p.extent as usize].class;
        self.free[class].push((p.extent, p.slot));
    }

    fn set(&mut self, h: u64, st: St) {
        self.live.get_mut(&h).unwrap().0 = st;
    }
}

fn pick(m: &Model, s: &Sel) -> u64 {
    let mut live: Vec<u64> = m.live.keys().copied().collect();
    live.sort_unstable();
    let nth = |v: &[u64], i: usize| if v.is_empty() { 0 } else { v[i % v.len()] };
    match *s {
        Sel::Live(i) => nth(&live, i),
        Sel::Dead(i) => nth(&m.dead, i),
        Sel::Raw(h) => h,
        Sel::Tweak(i, f, v) => {
            let p = HandleParts::decode(nth(&live, i));
            match f {
                0 => HandleParts { generation: v, ..p },
                1 => HandleParts { extent: v, ..p },
                _ => HandleParts { slot: v, ..p },
            }
            .encode()
        }
    }
}

fn check_census(a: &OwnerAlloc<HeapPoolMemory>, m: &Model) {
    let c = a.audit().expect("audit");
    assert_eq!(c, a.census());
    let n = CLASSES.len();
    for class in 0..=n {
        let cc = if class < n {
            c.classes[class]
        } else {
            c.dedicated
        };
        let exts: Vec<&Ext> = m.extents.iter().filter(|x| x.class == class).collect();
        let of_class = |st: fn(&St) -> bool| {
            m.live
                .values()
                .filter(|(s, o)| {
                    st(s) && m.extents[HandleParts::decode(o.handle).extent as usize].class == class
                })
                .count() as u64
        };
        assert_eq!(cc.extents, exts.len() as u64, "extents of class {class}");
        assert_eq!(
            cc.slots,
            exts.iter().map(|x| u64::from(x.slots)).sum::<u64>()
        );
        assert_eq!(cc.free, m.free[class].len() as u64, "free of class {class}");
        assert_eq!(
            cc.owned,
            of_class(|s| *s == St::Owned),
            "owned of class {class}"
        );
        assert_eq!(
            cc.lent,
            of_class(|s| matches!(s, St::Lent(_))),
            "lent of class {class}"
        );
    }
    assert_eq!(c.extents, m.extents.len() as u64);
    assert!(c.committed <= RESERVED);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn owner_alloc_matches_the_model(ops in proptest::collection::vec(op(), 1..if cfg!(miri) { 40 } else { 160 })) {
        let cfg = OwnerConfig { classes: CLASSES.to_vec(), extent_bytes: EXTENT_BYTES, max_extents: MAX_EXTENTS };
        let a = OwnerAlloc::create(HeapPoolMemory::new(RESERVED).unwrap(), 128, &cfg).unwrap();
        let mut m = Model {
            tables_end: a.tables_end(),
            bump: a.tables_end(),
            extents: Vec::new(),
            gens: HashMap::new(),
            free: vec![Vec::new(); CLASSES.len() + 1],
            live: HashMap::new(),
            dead: Vec::new(),
        };
        for op in &ops {
            match op {
                Op::Alloc(len, grow) => {
                    let got = a.alloc(*len, *grow);
                    prop_assert_eq!(got, m.alloc(*len, *grow), "alloc({}, {})", len, grow);
                    if let Ok(s) = got {
                        prop_assert!(s.capacity >= *len && s.offset >= a.tables_end());
                        prop_assert!(s.offset + s.capacity <= a.memory().committed());
                        for (_, o) in m.live.values().filter(|(_, o)| o.handle != s.handle) {
                            prop_assert!(o.offset + o.capacity <= s.offset || s.offset + s.capacity <= o.offset, "overlap");
                        }
                    }
                }
                Op::Free(s) => {
                    let h = pick(&m, s);
                    let want = m.check(h).and_then(|(st, _)| match st {
                        St::Owned => Ok(()),
                        St::Lent(_) => Err(ReturnError::NotOwned),
                    });
                    prop_assert_eq!(a.free(h), want, "free({:#x})", h);
                    if want.is_ok() {
                        m.release(h);
                    }
                }
                Op::Lend(s, mask) => {
                    let h = pick(&m, s);
                    let want = if *mask == 0 {
                        Err(ReturnError::Invalid { field: "readers" })
                    } else {
                        m.check(h).and_then(|(st, _)| match st {
                            St::Owned => Ok(()),
                            St::Lent(_) => Err(ReturnError::NotOwned),
                        })
                    };
                    prop_assert_eq!(a.lend(h, *mask), want, "lend({:#x}, {:#x})", h, mask);
                    if want.is_ok() {
                        m.set(h, St::Lent(*mask));
                    }
                }
                Op::GiveBack(s, r) => {
                    let h = pick(&m, s);
                    let want = if *r >= 64 {
                        Err(ReturnError::Invalid { field: "reader" })
                    } else {
                        m.check(h).and_then(|(st, _)| match st {
                            St::Owned => Err(ReturnError::NotLent),
                            St::Lent(mask) if mask & 1 << r == 0 => Err(ReturnError::NotLentTo { reader: *r }),
                            St::Lent(mask) if mask == 1 << r => Ok(GiveBack::Freed),
                            St::Lent(_) => Ok(GiveBack::StillLent),
                        })
                    };
                    prop_assert_eq!(a.give_back(h, *r), want, "give_back({:#x}, {})", h, r);
                    match want {
                        Ok(GiveBack::Freed) => m.release(h),
                        Ok(GiveBack::StillLent) => {
                            let St::Lent(mask) = m.live[&h].0 else { unreachable!() };
                            m.set(h, St::Lent(mask & !(1 << r)));
                        }
                        Err(_) => {}
                    }
                }
                Op::TakeBack(s) => {
                    let h = pick(&m, s);
                    let want = m.check(h).and_then(|(st, _)| match st {
                        St::Owned => Err(ReturnError::NotLent),
                        St::Lent(_) => Ok(()),
                    });
                    prop_assert_eq!(a.take_back(h), want, "take_back({:#x})", h);
                    if want.is_ok() {
                        m.set(h, St::Owned);
                    }
                }
                Op::Reclaim(r) => {
                    let mut held: Vec<(HandleParts, u64, u64)> = if *r >= 64 {
                        Vec::new()
                    } else {
                        m.live
                            .iter()
                            .filter_map(|(&h, (st, _))| match *st {
                                St::Lent(mask) if mask & 1 << r != 0 => Some((HandleParts::decode(h), h, mask)),
                                _ => None,
                            })
                            .collect()
                    };
                    // The allocator walks extents and slots in order; frees push in that order.
                    held.sort_by_key(|(p, _, _)| (p.extent, p.slot));
                    prop_assert_eq!(a.reclaim_reader(*r), held.len(), "reclaim_reader({})", r);
                    for (_, h, mask) in held {
                        if mask == 1 << r {
                            m.release(h);
                        } else {
                            m.set(h, St::Lent(mask & !(1 << r)));
                        }
                    }
                }
            }
            check_census(&a, &m);
        }
    }
}
