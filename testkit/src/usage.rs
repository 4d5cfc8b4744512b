//! What a process under load uses, read from `/proc`: CPU seconds and
//! resident memory, for the benchmarks' per-request figures.

use std::process::Command;

/// Resident memory of `pid` in MiB (`VmRSS`), 0 when it cannot be read.
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
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
