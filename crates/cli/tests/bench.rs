//! `numashm bench --quick`, the real binary: every row of the report is there
//! with a figure that is a positive finite number, in the JSON and in the
//! `ratios:` line. No timing is asserted (the machine may be loaded).

use std::sync::Mutex;
use std::time::Duration;

use assert_cmd::Command;
use numashm_benches::NAMES;

/// A quick report takes well under a minute even in a debug build; the
/// watchdog only stops a hung run (its own spin loops give up after 10 s).
const WATCHDOG: Duration = Duration::from_secs(300);

/// The reports pin themselves to CPUs 0 and 1: two at once would measure each
/// other and could starve each other's spin loops, so they run one at a time.
static ONE_REPORT_AT_A_TIME: Mutex<()> = Mutex::new(());

fn bench(args: &[&str]) -> String {
    let _one = ONE_REPORT_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::cargo_bin("numashm").unwrap().arg("bench").args(args).timeout(WATCHDOG).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "numashm bench {args:?}: {:?} (a signal exit after {WATCHDOG:?}: the watchdog killed a hung run)\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn positive_finite(v: &serde_json::Value, what: &str) -> f64 {
    // serde_json writes NaN and infinities as null, so a bad figure fails here too.
    let x = v.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x.is_finite() && x > 0.0, "{what} = {x}");
    x
}

#[test]
#[cfg_attr(miri, ignore)] // runs a process
fn quick_json_has_every_row_with_positive_finite_figures() {
    let stdout = bench(&["--quick", "--json"]);
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{stdout}"));
    assert!(v["machine"].as_str().is_some_and(|m| !m.is_empty()), "{v:#}");
    let rows = v["results"].as_array().unwrap_or_else(|| panic!("no results array: {v:#}"));
    let names: Vec<&str> =
        rows.iter().map(|r| r["name"].as_str().unwrap_or_else(|| panic!("row without name: {r}"))).collect();
    assert_eq!(names, NAMES, "every row of the report, once, in order");
    for r in rows {
        let name = r["name"].as_str().unwrap_or_default();
        for key in ["ours_median_ns", "ours_p99_ns", "baseline_median_ns", "baseline_p99_ns"] {
            positive_finite(&r[key], &format!("{name}.{key}"));
        }
        positive_finite(&r["ratio"], &format!("{name}.ratio"));
        for key in ["ours", "baseline"] {
            assert!(r[key].as_str().is_some_and(|s| !s.is_empty()), "{name}.{key} label: {r}");
        }
        assert!(r["higher_is_better"].is_boolean(), "{name}.higher_is_better: {r}");
        // A reference row has no target and so no verdict; every other row has both.
        if r["target"].is_null() {
            assert!(r["meets_target"].is_null(), "{name}: a verdict without a target: {r}");
        } else {
            positive_finite(&r["target"], &format!("{name}.target"));
            assert!(r["meets_target"].is_boolean(), "{name}.meets_target: {r}");
        }
    }
    assert!(
        rows.iter().filter(|r| !r["target"].is_null()).count() >= NAMES.len() - 1,
        "at most one reference row: {v:#}"
    );
}

#[test]
#[cfg_attr(miri, ignore)] // runs a process
fn quick_report_ends_with_a_ratio_for_every_row() {
    let stdout = bench(&["--quick"]);
    let last = stdout.lines().last().unwrap_or_default();
    let pairs = last.strip_prefix("ratios: ").unwrap_or_else(|| panic!("the last line is not `ratios: …`:\n{stdout}"));
    let parsed: Vec<(&str, f64)> = pairs
        .split(' ')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or_else(|| panic!("`{pair}` is not name=number in {last}"));
            let value: f64 = value.parse().unwrap_or_else(|e| panic!("`{pair}`: {e}"));
            // Three decimals: a ratio below 0.0005 would print as 0.000.
            assert!(value.is_finite() && value >= 0.0, "`{pair}` in {last}");
            (name, value)
        })
        .collect();
    let names: Vec<&str> = parsed.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, NAMES, "one ratio per row, in order: {last}");
    // The table above it has a line for each row too.
    for name in NAMES {
        assert!(
            stdout.lines().any(|l| l.split_whitespace().next() == Some(name) && l.contains("(p99 ")),
            "no table row {name}:\n{stdout}"
        );
    }
}
