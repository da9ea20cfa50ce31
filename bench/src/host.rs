//! The load generator's host, as Linux accounts for its CPUs (`/proc/stat`, `/proc/loadavg`).
//!
//! On a shared or virtual machine, the time the hypervisor gives other guests (steal) and other
//! processes' work change throughput and tails far more than the system under test does. The
//! report carries what the host's CPUs did over the run, and each progress line the steal of
//! that second, so that a figure can be read, or thrown away, with its conditions.

use serde::Serialize;

/// Cumulative CPU time of all CPUs, in clock ticks, from the `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    busy: u64,
    idle: u64,
    iowait: u64,
    steal: u64,
}

impl CpuTimes {
    /// The host's counters now; `None` where `/proc/stat` is missing or unreadable.
    pub(crate) fn read() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Parses the aggregate `cpu` line: user nice system idle iowait irq softirq steal
    /// (guest time is already inside user and nice).
    fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|line| line.starts_with("cpu "))?;
        let fields: Vec<u64> = line.split_whitespace().skip(1).map(str::parse).collect::<Result<_, _>>().ok()?;
        let field = |index: usize| fields.get(index).copied().unwrap_or(0);
        if fields.len() < 4 {
            return None;
        }
        Some(Self {
            busy: field(0) + field(1) + field(2) + field(5) + field(6),
            idle: field(3),
            iowait: field(4),
            steal: field(7),
        })
    }
}

/// Shares of the host's CPU time between two readings, in percent of all CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[allow(clippy::struct_field_names)] // the JSON names say their unit
pub(crate) struct CpuShare {
    pub busy_pct: f64,
    pub steal_pct: f64,
    pub iowait_pct: f64,
    pub idle_pct: f64,
}

impl CpuShare {
    /// `None` when no time passed between the readings.
    pub(crate) fn between(before: CpuTimes, after: CpuTimes) -> Option<Self> {
        let busy = after.busy.saturating_sub(before.busy) as f64;
        let idle = after.idle.saturating_sub(before.idle) as f64;
        let iowait = after.iowait.saturating_sub(before.iowait) as f64;
        let steal = after.steal.saturating_sub(before.steal) as f64;
        let total = busy + idle + iowait + steal;
        let pct = |part: f64| (part * 1000.0 / total).round() / 10.0;
        (total > 0.0).then(|| Self {
            busy_pct: pct(busy),
            steal_pct: pct(steal),
            iowait_pct: pct(iowait),
            idle_pct: pct(idle),
        })
    }
}

/// What the host's CPUs did over a run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HostCpu {
    /// CPUs this process may run on.
    pub cpus: usize,
    /// The 1-minute load average when the run started: work already running on the host.
    pub load_avg_1m_at_start: Option<f64>,
    /// Over the whole run, warm-up included.
    pub over_run: Option<CpuShare>,
}

/// The 1-minute load average, from `/proc/loadavg`.
pub(crate) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_come_from_the_aggregate_cpu_line() {
        let before = CpuTimes::parse("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 1 2 3 4\n").expect("parses");
        let after = CpuTimes::parse("cpu  160 0 90 900 10 0 0 140 0 0\n").expect("parses");
        let share = CpuShare::between(before, after).expect("time passed");
        // 100 busy, 100 idle, 0 iowait, 100 steal of 300 ticks.
        assert_eq!(share, CpuShare { busy_pct: 33.3, steal_pct: 33.3, iowait_pct: 0.0, idle_pct: 33.3 });
        assert_eq!(CpuShare::between(after, after), None, "no time passed");
        assert_eq!(CpuTimes::parse("intr 1 2 3\n"), None, "no cpu line");
        assert_eq!(CpuTimes::parse("cpu  1 2\n"), None, "too few fields");
    }

    #[test]
    fn the_host_of_this_test_reads() {
        if std::path::Path::new("/proc/stat").exists() {
            assert!(CpuTimes::read().is_some());
        }
    }
}
