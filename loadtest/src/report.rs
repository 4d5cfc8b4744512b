//! Report rows and files shared by the suites: a measured run as a row,
//! rounds reduced to their median, the Markdown and JSON written out.

use std::path::Path;

use serde_json::{Value, json};

use crate::driver::Outcome;

/// `<out>/<suite>.md` and `<out>/<suite>.json`; the Markdown also on stdout.
pub(crate) fn write_report(
    out: &Path,
    suite: &str,
    report: &Value,
    md: &str,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{}: {e}", out.display());
    std::fs::create_dir_all(out).map_err(io)?;
    std::fs::write(out.join(format!("{suite}.md")), md).map_err(io)?;
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    std::fs::write(out.join(format!("{suite}.json")), json).map_err(io)?;
    println!("{md}");
    Ok(())
}

/// A measured run as a report row: volume, errors, rate, latencies.
pub(crate) fn outcome_row(key: &str, title: &str, o: &Outcome) -> Value {
    json!({
        "scenario": key,
        "title": title,
        "requests": o.requests,
        "errors": o.errors,
        "failures": o.failures,
        "rps": o.rps().round(),
        "p50_ms": o.percentile_ms(0.50),
        "p90_ms": o.percentile_ms(0.90),
        "p99_ms": o.percentile_ms(0.99),
    })
}

/// A row's error count, with what failed when anything did:
/// `9 (status 503: 9)`.
pub(crate) fn errors_cell(row: &Value) -> String {
    let kinds: Vec<String> = row["failures"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(kind, n)| format!("{kind}: {n}"))
        .collect();
    if kinds.is_empty() {
        row["errors"].to_string()
    } else {
        format!("{} ({})", row["errors"], kinds.join(", "))
    }
}

/// A row's rate in every round: `26522, 27213, 26546`.
pub(crate) fn rounds_cell(row: &Value) -> String {
    row["rps_every_round"]
        .as_array()
        .into_iter()
        .flatten()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The item whose outcome has the median rate (the lower middle one of an
/// even number).
pub(crate) fn median_by_rate<T>(items: &[T], outcome: impl Fn(&T) -> &Outcome) -> Option<&T> {
    let mut by_rate: Vec<&T> = items.iter().collect();
    by_rate.sort_by(|x, y| outcome(x).rps().total_cmp(&outcome(y).rps()));
    by_rate.get(by_rate.len().saturating_sub(1) / 2).copied()
}

/// A scenario run in rounds as one report row: the `median` round's
/// figures, every round's rate, and the errors of every round (not only
/// the median one's).
pub(crate) fn rounds_row<'a>(
    key: &str,
    title: &str,
    rounds: impl Iterator<Item = &'a Outcome> + Clone,
    median: &Outcome,
) -> Value {
    let mut row = outcome_row(key, title, median);
    row["rps_every_round"] = rounds.clone().map(|o| o.rps().round()).collect();
    let mut failures = std::collections::BTreeMap::<&str, u64>::new();
    for o in rounds.clone() {
        for (kind, n) in &o.failures {
            *failures.entry(kind).or_default() += n;
        }
    }
    row["errors"] = rounds.map(|o| o.errors).sum::<u64>().into();
    row["failures"] = json!(failures);
    row
}
