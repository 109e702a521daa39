//! The measured paths of numashm beside their baselines.
//!
//! Criterion (`benches/*.rs`) and `numashm bench` call the same functions, so
//! the quick report and the careful measurement time the same code. Every
//! comparison runs ours and the baseline interleaved (A, B, A, B, ...) in one
//! process, so both see the same machine state, and reports the ratio of
//! medians (see `docs/benchmarks.md` for each definition and target).
//!
//! Every row of ours measures the product path, the pools of `numashm::pool`
//! (each sender owns its pool; [`pool`], [`rtt`]), or the ring and region
//! layers under it ([`ring`], [`region`]).
//!
//! The cross-process comparisons run a second copy of the executable (see
//! [`child`]): every `main` that may run them must call
//! [`child_main_if_requested`] first.
#![deny(unsafe_code)]
// The atomics here are harness scaffolding (start/stop flags, the raw floor's
// flag word), not numashm's algorithms, so the loom shim does not apply.
#![allow(clippy::disallowed_types)]

pub mod baselines;
#[cfg(feature = "bridge")]
pub mod bridge;
pub mod child;
#[cfg(feature = "peers")]
pub mod peers;
pub mod pool;
pub mod region;
pub mod ring;
pub mod rtt;

pub use child::child_main_if_requested;

use std::time::{Duration, Instant};

/// One side-by-side figure.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Ratio name, as in the `ratios:` line.
    pub name: &'static str,
    /// What "ours" measures.
    pub ours_label: &'static str,
    /// What the baseline measures.
    pub baseline_label: &'static str,
    /// Median of ours, nanoseconds per operation.
    pub ours_ns: f64,
    /// 99th percentile of ours.
    pub ours_p99_ns: f64,
    /// Median of the baseline, nanoseconds per operation.
    pub baseline_ns: f64,
    /// 99th percentile of the baseline.
    pub baseline_p99_ns: f64,
    /// ours ÷ baseline (or baseline ÷ ours where higher is better).
    pub ratio: f64,
    /// The target ratio; `None` for a [`reference`](Self::reference) row.
    pub target: Option<f64>,
    /// Whether a higher ratio is better (throughput ratios).
    pub higher_is_better: bool,
}

/// Medians and 99th percentiles from [`interleave`]: `(ours, ours p99, baseline, baseline p99)`.
pub type Medians = (f64, f64, f64, f64);

impl Comparison {
    /// A comparison of times per operation: ratio ours ÷ baseline, lower is better.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = numashm_benches::Comparison::times("x", "ours", "base", (5.0, 6.0, 10.0, 11.0), 0.8);
    /// assert_eq!((c.ratio, c.meets_target()), (0.5, true));
    /// ```
    pub fn times(name: &'static str, ours_label: &'static str, baseline_label: &'static str, m: Medians, target: f64) -> Self {
        let (o, o99, b, b99) = m;
        Comparison {
            name,
            ours_label,
            baseline_label,
            ours_ns: o,
            ours_p99_ns: o99,
            baseline_ns: b,
            baseline_p99_ns: b99,
            ratio: o / b,
            target: Some(target),
            higher_is_better: false,
        }
    }

    /// A comparison of rates, measured as times per operation: ratio baseline ÷
    /// ours (our operations per second ÷ the baseline's), higher is better.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = numashm_benches::Comparison::rates("x", "ours", "base", (5.0, 6.0, 10.0, 11.0), 1.5);
    /// assert_eq!((c.ratio, c.meets_target()), (2.0, true));
    /// ```
    pub fn rates(name: &'static str, ours_label: &'static str, baseline_label: &'static str, m: Medians, target: f64) -> Self {
        let (o, _, b, _) = m;
        Comparison { ratio: b / o, higher_is_better: true, ..Self::times(name, ours_label, baseline_label, m, target) }
    }

    /// A reference measurement, not a target: what some unavoidable part of
    /// our path costs against the same baseline (ratio ours ÷ baseline).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = numashm_benches::Comparison::reference("x", "part", "base", (6.0, 6.0, 6.0, 7.0));
    /// assert_eq!((c.ratio, c.is_reference(), c.meets_target()), (1.0, true, true));
    /// ```
    pub fn reference(name: &'static str, ours_label: &'static str, baseline_label: &'static str, m: Medians) -> Self {
        Comparison { target: None, ..Self::times(name, ours_label, baseline_label, m, 0.0) }
    }

    /// Whether this is a [`reference`](Self::reference) row (no target).
    pub fn is_reference(&self) -> bool {
        self.target.is_none()
    }

    /// The target as the report writes it (`<= 1.3`, `>= 1.5`); `None` for a
    /// reference row.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = numashm_benches::Comparison::rates("x", "ours", "base", (5.0, 6.0, 10.0, 11.0), 1.5);
    /// assert_eq!(c.target_text().as_deref(), Some(">= 1.5"));
    /// ```
    pub fn target_text(&self) -> Option<String> {
        self.target.map(|t| format!("{}{t}", if self.higher_is_better { ">= " } else { "<= " }))
    }

    /// Whether the target is met (always, for a reference row).
    pub fn meets_target(&self) -> bool {
        match self.target {
            None => true,
            Some(t) if self.higher_is_better => self.ratio >= t,
            Some(t) => self.ratio <= t,
        }
    }
}

/// How long to measure.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Interleaved rounds (each runs ours once and the baseline once).
    pub rounds: usize,
}

impl Budget {
    /// For `numashm bench --quick`.
    pub const QUICK: Budget = Budget { rounds: 15 };
    /// For the full report.
    pub const FULL: Budget = Budget { rounds: 61 };
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

/// Runs `ours` and `baseline` in alternation; each returns nanoseconds per
/// operation for one round. Returns (ours median, ours p99, baseline median, baseline p99).
pub fn interleave(rounds: usize, mut ours: impl FnMut() -> f64, mut baseline: impl FnMut() -> f64) -> Medians {
    // Warm both paths (page cache, topology, branch predictors).
    ours();
    baseline();
    let mut a = Vec::with_capacity(rounds);
    let mut b = Vec::with_capacity(rounds);
    for i in 0..rounds {
        // Alternate who goes first so neither always runs on a warmer cache.
        if i % 2 == 0 {
            a.push(ours());
            b.push(baseline());
        } else {
            b.push(baseline());
            a.push(ours());
        }
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    (percentile(&a, 0.5), percentile(&a, 0.99), percentile(&b, 0.5), percentile(&b, 0.99))
}

/// Times `iters` calls of `f`, in nanoseconds per call.
pub fn per_op(iters: u64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

/// Like [`per_op`], but stops early once `max` has passed (the clock is read
/// every 16 calls): on a loaded machine a cross-process round trip can take
/// a scheduler time slice instead of a microsecond, and the report must still
/// finish in bounded time. Nanoseconds per call actually made.
pub fn per_op_for(iters: u64, max: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut done = 0;
    while done < iters {
        for _ in 0..16.min(iters - done) {
            f();
        }
        done += 16.min(iters - done);
        if start.elapsed() > max {
            break;
        }
    }
    start.elapsed().as_nanos() as f64 / done as f64
}

/// Nanoseconds in a duration, as f64.
pub fn ns(d: Duration) -> f64 {
    d.as_nanos() as f64
}

/// The name of every comparison of the report, in order.
pub const NAMES: &[&str] = &[
    "region_create",
    "check_and_remap",
    "grow",
    "grow_committed",
    "alloc_vs_pool",
    "alloc_vs_malloc",
    "alloc_2t_scaling",
    "rtt_vs_floor",
    "rtt_4m_vs_64b",
    "spsc_vs_rtrb",
    "doorbell_vs_eventfd",
    "fanout4_vs_unicast",
    // Reference, no target: one locked instruction against malloc + free.
    "locked_rmw_vs_malloc",
    // Built with the bridge (feature `bridge`) only.
    #[cfg(feature = "bridge")]
    "bridge_vs_zenoh_64b",
    #[cfg(feature = "bridge")]
    "bridge_vs_zenoh_64k",
    #[cfg(feature = "bridge")]
    "bridge_rtt_vs_zenoh",
];

/// Runs one comparison by name (see [`NAMES`]).
pub fn by_name(name: &str, budget: Budget) -> Option<Comparison> {
    Some(match name {
        "region_create" => region::compare_create(budget),
        "check_and_remap" => region::compare_check_and_remap(budget),
        "grow" => region::compare_grow(budget),
        "grow_committed" => region::compare_grow_committed(budget),
        "alloc_vs_pool" => pool::compare_alloc_vs_pool(budget),
        "alloc_vs_malloc" => pool::compare_alloc_vs_malloc(budget),
        "alloc_2t_scaling" => pool::compare_alloc_2t_scaling(budget),
        "rtt_vs_floor" => rtt::compare_rtt_vs_floor(budget),
        "rtt_4m_vs_64b" => rtt::compare_rtt_4m_vs_64b(budget),
        "spsc_vs_rtrb" => ring::compare_spsc_vs_rtrb(budget),
        "doorbell_vs_eventfd" => rtt::compare_doorbell_vs_eventfd(budget),
        "fanout4_vs_unicast" => pool::compare_fanout4_vs_unicast(budget),
        "locked_rmw_vs_malloc" => baselines::compare_locked_rmw_vs_malloc(budget),
        #[cfg(feature = "bridge")]
        "bridge_vs_zenoh_64b" => bridge::compare_bridge_vs_zenoh(budget, 64),
        #[cfg(feature = "bridge")]
        "bridge_vs_zenoh_64k" => bridge::compare_bridge_vs_zenoh(budget, 64 << 10),
        #[cfg(feature = "bridge")]
        "bridge_rtt_vs_zenoh" => bridge::compare_bridge_rtt_vs_zenoh(budget),
        _ => return None,
    })
}

/// Every comparison of the report, in order.
pub fn all(budget: Budget) -> Vec<Comparison> {
    NAMES.iter().filter_map(|n| by_name(n, budget)).collect()
}
