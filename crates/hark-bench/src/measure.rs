//! Counting and timing: closed-loop load, latency percentiles, process memory.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Successful operations, their rate, and each one's latency.
pub struct Figure {
    pub count: u64,
    pub per_second: f64,
    pub latencies_us: Vec<u64>,
}

pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

impl Figure {
    /// A figure with only a count over an elapsed time (no per-operation latency).
    pub fn rate(count: u64, elapsed: Duration) -> Self {
        Self {
            count,
            per_second: count as f64 / elapsed.as_secs_f64().max(1e-9),
            latencies_us: Vec::new(),
        }
    }

    pub fn p(&mut self, p: f64) -> f64 {
        self.latencies_us.sort_unstable();
        percentile(&self.latencies_us, p)
    }

    pub fn describe(&mut self) -> String {
        if self.latencies_us.is_empty() {
            return format!("{:>9.0}/s  (n={})", self.per_second, self.count);
        }
        let percentiles = self.percentiles();
        format!(
            "{:>9.0}/s  (n={}, {percentiles})",
            self.per_second, self.count
        )
    }

    /// The latency percentiles alone, for a figure whose rate is another's.
    pub fn percentiles(&mut self) -> String {
        let (p50, p90, p99, max) = (self.p(0.5), self.p(0.9), self.p(0.99), self.p(1.0));
        format!("p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, max {max:.2} ms")
    }
}

/// Runs `clients` loops of `request` for `seconds`, counting successes.
pub async fn closed_loop<F, Fut>(clients: usize, seconds: u64, request: F) -> Figure
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let start = Instant::now();
    for _ in 0..clients {
        let (request, stop, counter) = (request.clone(), stop.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut ok = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                if request(n).await {
                    ok += 1;
                    lat.push(t.elapsed().as_micros() as u64);
                }
            }
            (ok, lat)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut count = 0;
    let mut latencies_us = Vec::new();
    for t in tasks {
        if let Ok((ok, lat)) = t.await {
            count += ok;
            latencies_us.extend(lat);
        }
    }
    Figure {
        count,
        per_second: count as f64 / start.elapsed().as_secs_f64(),
        latencies_us,
    }
}

/// A `/proc/<pid>/status` field in MiB (`VmRSS` now, `VmHWM` the peak); 0 when unknown.
pub fn proc_memory_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Linux reports process times in clock ticks of 1/100 s (`USER_HZ`, fixed by the ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time (user and system) a process has used, with that of its children it has
/// reaped, in seconds; 0 when unknown. PostgreSQL's ended backends count through the
/// postmaster's children times.
pub fn proc_cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state, ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt, majflt, cmajflt,
    // utime, stime, cutime, cstime.
    let Some((_, fields)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let ticks: f64 = fields
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|t| t.parse::<f64>().ok())
        .sum();
    ticks / TICKS_PER_SECOND
}

/// CPU time of every process whose command name is `name`, in seconds.
pub fn cpu_seconds_named(name: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .map(proc_cpu_seconds)
        .sum()
}
