//! Single-thread hot path for instruction counting under callgrind (see
//! `docs/varslot.md`): `hotpath varslot N` or `hotpath queue N` runs N alloc+free (or
//! ArrayQueue pop+push) pairs; the per-pair cost is the difference between two N.

use std::hint::black_box;

use crossbeam_queue::ArrayQueue;
use numashm_varslot::{Config, HeapAllocator};

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "varslot".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    match what.as_str() {
        "varslot" => {
            let a = HeapAllocator::new(&Config::default().max_extents(1)).unwrap();
            for _ in 0..n {
                let h = alloc(&a);
                free(&a, h);
            }
        }
        "magazine" => {
            let a = HeapAllocator::new(&Config::default().max_extents(1)).unwrap();
            let mut m = a.magazine(1, 32);
            for _ in 0..n {
                let h = mag_alloc(&mut m);
                mag_free(&mut m, h);
            }
        }
        "queue" => {
            let q = ArrayQueue::<u32>::new(1024);
            for i in 0..1024 {
                q.push(i).unwrap();
            }
            for _ in 0..n {
                let i = q.pop().unwrap();
                q.push(black_box(i)).unwrap();
            }
        }
        other => panic!("unknown {other}"),
    }
}

#[inline(never)]
fn alloc(a: &HeapAllocator) -> numashm_varslot::Handle {
    a.alloc(black_box(1000), 1).unwrap()
}

#[inline(never)]
fn free(a: &HeapAllocator, h: numashm_varslot::Handle) {
    a.free(black_box(h)).unwrap()
}

type Mag<'a> = numashm_varslot::Magazine<'a, numashm_varslot::HeapWords, numashm_varslot::HeapMemory>;

#[inline(never)]
fn mag_alloc(m: &mut Mag<'_>) -> numashm_varslot::Handle {
    m.alloc(black_box(1000)).unwrap()
}

#[inline(never)]
fn mag_free(m: &mut Mag<'_>, h: numashm_varslot::Handle) {
    m.free(black_box(h)).unwrap()
}
