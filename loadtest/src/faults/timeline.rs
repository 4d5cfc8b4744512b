//! What k6 saw, request by request (its CSV output, millisecond
//! timestamps), cut into the faults' windows: how many failed, from when
//! to when, and how long after the fault ended the last one came.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Expected 200.
    Allowed,
    /// Expected 401 or 403; a 2xx is the gateway failing open.
    Refused,
    /// Expected 200.
    Tokens,
}

impl Scenario {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "allowed" => Some(Self::Allowed),
            "refused" => Some(Self::Refused),
            "tokens" => Some(Self::Tokens),
            _ => None,
        }
    }

    fn failed(self, status: Option<u16>) -> bool {
        match self {
            Self::Allowed | Self::Tokens => status != Some(200),
            Self::Refused => !matches!(status, Some(401 | 403)),
        }
    }
}

/// How a status reads in the report.
fn label(status: Option<u16>) -> String {
    match status {
        None => "not sent".into(),
        Some(0) => "no answer".into(),
        Some(s) => s.to_string(),
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Unix seconds.
    pub at: f64,
    pub scenario: Scenario,
    /// `Some(0)`: no answer (connection refused, reset, timed out);
    /// `None`: not sent, because every VU k6 may start was busy (a
    /// dropped iteration), which counts as a failure too.
    pub status: Option<u16>,
}

/// The `http_reqs` and `dropped_iterations` rows of a k6 CSV file written
/// with `K6_CSV_TIME_FORMAT=unix_milli`.
pub fn read_csv(path: &Path) -> Result<Vec<Sample>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_csv(&text)
}

fn parse_csv(text: &str) -> Result<Vec<Sample>, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or("k6 wrote no CSV header")?
        .split(',')
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| format!("k6's CSV has no `{name}` column"))
    };
    let (metric, time, scenario, status) = (
        column("metric_name")?,
        column("timestamp")?,
        column("scenario")?,
        column("status")?,
    );
    let mut samples = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let sent = match fields.get(metric) {
            Some(&"http_reqs") => true,
            Some(&"dropped_iterations") => false,
            _ => continue,
        };
        let field = |i: usize| fields.get(i).copied().unwrap_or_default();
        let Some(scenario) = Scenario::parse(field(scenario)) else {
            continue; // setup's requests
        };
        let millis: u64 = field(time).parse().map_err(|_| {
            format!(
                "k6 CSV: a timestamp `{}` that is not unix_milli",
                field(time)
            )
        })?;
        samples.push(Sample {
            at: millis as f64 / 1000.0,
            scenario,
            status: sent.then(|| field(status).parse().unwrap_or(0)),
        });
    }
    samples.sort_by(|a, b| a.at.total_cmp(&b.at));
    Ok(samples)
}

/// A fault's window: from the fault to the next one (or the end); the
/// fault itself ended at `restored`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: f64,
    pub to: f64,
    pub restored: f64,
}

/// What one scenario saw within `window`.
pub fn summarize(samples: &[Sample], scenario: Scenario, window: Window) -> Value {
    let within: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.scenario == scenario && s.at >= window.from && s.at < window.to)
        .collect();
    let failures: Vec<&Sample> = within
        .iter()
        .copied()
        .filter(|s| scenario.failed(s.status))
        .collect();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    for s in &failures {
        *statuses.entry(label(s.status)).or_default() += 1;
    }
    let ms = |t: f64| ((t - window.from) * 1000.0).round() as i64;
    // Per second since the fault: [answered as expected, failed].
    let seconds = ((window.to - window.from).ceil() as usize).max(1);
    let mut per_second = vec![[0u64; 2]; seconds];
    for s in &within {
        let i = ((s.at - window.from) as usize).min(seconds - 1);
        per_second[i][usize::from(scenario.failed(s.status))] += 1;
    }
    let (first, last) = (failures.first(), failures.last());
    json!({
        "sent": within.len(),
        "failed": failures.len(),
        "failed_by_status": statuses,
        "opened_2xx": within
            .iter()
            .filter(|s| scenario == Scenario::Refused && s.status.is_some_and(|c| (200..300).contains(&c)))
            .count(),
        "first_failure_ms": first.map(|s| ms(s.at)),
        "last_failure_ms": last.map(|s| ms(s.at)),
        "error_window_ms": first.zip(last).map(|(f, l)| ms(l.at) - ms(f.at)),
        // How long after the fault ended the last failure came (0: none
        // after it).
        "recovery_ms": last.map(|l| ((l.at - window.restored) * 1000.0).round().max(0.0) as i64),
        "per_second": per_second,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "metric_name,timestamp,metric_value,check,error,error_code,expected_response,group,method,name,proto,scenario,service,status,subproto,tls_version,url,extra_tags,metadata\n\
        http_reqs,1000000,1.000000,,,,,,,allowed,,allowed,,200,,,,,\n\
        http_req_duration,1000100,2.5,,,,,,,allowed,,allowed,,200,,,,,\n\
        http_reqs,1000500,1.000000,,,,,,,allowed,,allowed,,0,,,,,\n\
        http_reqs,1001200,1.000000,,,,,,,allowed,,allowed,,503,,,,,\n\
        http_reqs,1002900,1.000000,,,,,,,allowed,,allowed,,200,,,,,\n\
        http_reqs,1000600,1.000000,,,,,,,no token,,refused,,401,,,,,\n\
        http_reqs,1000700,1.000000,,,,,,,forbidden path,,refused,,200,,,,,\n\
        dropped_iterations,1001500,1.000000,,,,,,,,,refused,,,,,,,\n\
        http_reqs,999000,1.000000,,,,,,,,,,,200,,,,,\n";

    #[test]
    fn failures_are_placed_in_the_faults_window() {
        let samples = parse_csv(CSV).unwrap();
        assert_eq!(
            samples.len(),
            7,
            "the scenarios' requests and dropped iterations"
        );
        let window = Window {
            from: 1000.0,
            to: 1003.0,
            restored: 1001.0,
        };
        let allowed = summarize(&samples, Scenario::Allowed, window);
        assert_eq!(allowed["sent"], 4);
        assert_eq!(allowed["failed"], 2);
        assert_eq!(
            allowed["failed_by_status"],
            json!({"no answer": 1, "503": 1})
        );
        assert_eq!(allowed["first_failure_ms"], 500);
        assert_eq!(allowed["error_window_ms"], 700);
        assert_eq!(allowed["recovery_ms"], 200);
        assert_eq!(allowed["per_second"], json!([[1, 1], [0, 1], [1, 0]]));
        let refused = summarize(&samples, Scenario::Refused, window);
        assert_eq!(refused["opened_2xx"], 1, "a 200 where 401/403 belongs");
        assert_eq!(refused["failed"], 2);
        assert_eq!(
            refused["failed_by_status"],
            json!({"200": 1, "not sent": 1})
        );
        let tokens = summarize(&samples, Scenario::Tokens, window);
        assert_eq!(tokens["sent"], 0);
        assert_eq!(tokens["recovery_ms"], Value::Null);
    }

    #[test]
    fn a_csv_without_millisecond_times_is_named() {
        let bad =
            "metric_name,timestamp,scenario,status\nhttp_reqs,2026-12-07T00:00:00Z,allowed,200\n";
        assert!(parse_csv(bad).unwrap_err().contains("unix_milli"));
        assert!(parse_csv("a,b\n").unwrap_err().contains("metric_name"));
    }
}
