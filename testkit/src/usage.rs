//! What a process under load uses, read from `/proc`: CPU seconds and
//! resident memory, for the benchmarks' per-request figures.

use std::process::Command;

/// Resident memory of `pid` in MiB (`VmRSS`), 0 when it cannot be read.
pub fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:").unwrap_or(0.0)
}

/// The most `pid` has been resident so far, in MiB (`VmHWM`).
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    status_mib(pid, "VmHWM:")
}

/// What `pid` has resident now, in MiB, split in two: its own memory
/// (`RssAnon`) and pages mapped from files (`RssFile`), mostly its
/// executable's code, shared with every process running the same file.
pub fn resident_split_mib(pid: u32) -> Option<(f64, f64)> {
    Some((status_mib(pid, "RssAnon:")?, status_mib(pid, "RssFile:")?))
}

/// A kB field of `/proc/PID/status` in MiB, to a tenth.
fn status_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((kib / 1024.0 * 10.0).round() / 10.0)
}

/// CPU seconds (user + system) used by `pid` and its live children
/// (nginx's workers are children of its master).
pub fn cpu_seconds(pid: u32) -> f64 {
    let ticks = |path: String| -> f64 {
        let Ok(stat) = std::fs::read_to_string(path) else {
            return 0.0;
        };
        // Fields after the command name, which is in parentheses.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            return 0.0;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime, stime are fields 14 and 15 of the whole line (11, 12 here).
        [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<f64>().ok()))
            .sum()
    };
    let mut total = ticks(format!("/proc/{pid}/stat"));
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        for child in children.split_whitespace() {
            total += ticks(format!("/proc/{child}/stat"));
        }
    }
    total / clock_ticks()
}

/// Clock ticks per second, asked once (a snapshot may be taken while a
/// load runs, so it must not start a process each time).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_resident_and_its_peak_is_no_lower() {
        let pid = std::process::id();
        let now = rss_mib(pid);
        assert!(now > 0.0, "VmRSS read as {now}");
        let peak = peak_rss_mib(pid).expect("VmHWM");
        assert!(peak >= now, "peak {peak} below current {now}");
        assert_eq!(peak_rss_mib(u32::MAX), None, "no such process");
    }
}
