//! Runs some comparisons by name, e.g.
//! `cargo run --release -p numashm-benches --example compare -- rtt_vs_floor spsc_vs_rtrb`
//! (`--full` for the full budget; no name: all of them).

fn main() {
    numashm_benches::child_main_if_requested();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let budget = if args.iter().any(|a| a == "--full") { numashm_benches::Budget::FULL } else { numashm_benches::Budget::QUICK };
    let names: Vec<&str> = args.iter().map(String::as_str).filter(|a| !a.starts_with("--")).collect();
    for name in numashm_benches::NAMES {
        if !names.is_empty() && !names.contains(name) {
            continue;
        }
        let t = std::time::Instant::now();
        let c = numashm_benches::by_name(name, budget).expect("known name");
        println!(
            "{:<20} ours {:>10.1} ns (p99 {:>10.1})  baseline {:>10.1} ns (p99 {:>10.1})  ratio {:.3} ({})  [{:.1} s]",
            c.name,
            c.ours_ns,
            c.ours_p99_ns,
            c.baseline_ns,
            c.baseline_p99_ns,
            c.ratio,
            c.target_text().map_or_else(|| "reference".to_string(), |t| format!("target {t}")),
            t.elapsed().as_secs_f64()
        );
    }
}
