//! The read benchmark's plot (used by `scripts/bench`): `bench_plot reads REPORT OUT.svg`
//! reads a report `scripts/bench` wrote (`bench/results/<stamp>.txt`: one row per scenario,
//! its last column the throughput ratio of sqlite-rest over the baseline) and draws one bar
//! per read scenario (the `GET` rows) with `testkit::plot::ratio_bars`. The insert scenario
//! is left out: its baseline is a one-transaction-per-row loop, so its ratio (tens) is on
//! another scale and says something else (group commit).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, kind, report, out] = args.as_slice() else {
        panic!("usage: bench_plot reads REPORT OUT.svg");
    };
    assert_eq!(kind, "reads", "usage: bench_plot reads REPORT OUT.svg");
    let text = std::fs::read_to_string(report).unwrap();
    let title = text.lines().next().unwrap_or_default().to_string();
    let bars = scenario_ratios(&text);
    assert!(!bars.is_empty(), "no scenario rows in {report}");
    testkit::plot::ratio_bars(Path::new(out), &title, &bars).unwrap();
}

/// `(scenario, ratio)` of each row that names a scenario (`(a) GET 1 row …  …  0.81`).
fn scenario_ratios(report: &str) -> Vec<(String, f64)> {
    report
        .lines()
        .filter(|l| l.starts_with('(') && l.contains(" GET "))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let ratio = words.last()?.parse().ok()?;
            // The name, then five numbers: baseline r/s and p99, ours r/s and p99, the ratio.
            let name = words.get(..words.len().checked_sub(5)?)?.join(" ");
            Some((name, ratio))
        })
        .collect()
}
