//! `numashm bench`: the side-by-side report. The measured code lives in the
//! `numashm-benches` crate, shared with the criterion benches.

use indicatif::{ProgressBar, ProgressStyle};
use numashm_benches::{Budget, Comparison};
use serde_json::json;

use crate::util::{table, CliError};

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

pub fn run(quick: bool, as_json: bool) -> Result<(), CliError> {
    let budget = if quick { Budget::QUICK } else { Budget::FULL };
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").unwrap_or_else(|_| ProgressStyle::default_spinner()));
    spinner.set_message("measuring (ours and baseline interleaved)");
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let results: Vec<Comparison> = numashm_benches::all(budget);
    spinner.finish_and_clear();
    let machine = machine_state();
    if as_json {
        let v = json!({
            "machine": machine,
            "results": results.iter().map(|c| json!({
                "name": c.name, "ours": c.ours_label, "baseline": c.baseline_label,
                "ours_median_ns": c.ours_ns, "ours_p99_ns": c.ours_p99_ns,
                "baseline_median_ns": c.baseline_ns, "baseline_p99_ns": c.baseline_p99_ns,
                "ratio": c.ratio, "higher_is_better": c.higher_is_better,
                "target": c.target,
                "meets_target": (!c.is_reference()).then(|| c.meets_target()),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!("machine: {machine}");
        let rows: Vec<Vec<String>> = results
            .iter()
            .map(|c| {
                vec![
                    c.name.to_string(),
                    format!("{} (p99 {})", fmt_ns(c.ours_ns), fmt_ns(c.ours_p99_ns)),
                    format!("{} (p99 {})", fmt_ns(c.baseline_ns), fmt_ns(c.baseline_p99_ns)),
                    format!("{:.3}", c.ratio),
                    c.target_text().unwrap_or_else(|| "—".into()),
                    if c.is_reference() {
                        "reference".into()
                    } else if c.meets_target() {
                        "met".into()
                    } else {
                        "MISSED".into()
                    },
                ]
            })
            .collect();
        print!("{}", table(&["ratio", "ours (median)", "baseline (median)", "ratio", "target", ""], &rows));
        for c in &results {
            println!("  {}: ours = {}; baseline = {}", c.name, c.ours_label, c.baseline_label);
        }
        // Only in the plain report: with --json, stdout is the one JSON object.
        let line: Vec<String> = results.iter().map(|c| format!("{}={:.3}", c.name, c.ratio)).collect();
        println!("ratios: {}", line.join(" "));
    }
    Ok(())
}

fn machine_state() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} cpus, kernel {}, loadavg {}", kernel.trim(), load.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}
