//! Sampling /proc: CPU used by the services and by other processes while a row runs.

use super::*;

/// Service processes whose CPU is part of what is measured (RabbitMQ, Redis).
pub(crate) const SERVICES: &[&str] = &[
    "beam.smp",
    "erl_child_setup",
    "epmd",
    "inet_gethost",
    "redis-server",
];

/// Linux reports CPU times in USER_HZ ticks, 100 per second.
pub(crate) const TICKS_PER_SEC: f64 = 100.0;

/// Cumulative CPU seconds at one moment.
pub(crate) struct CpuSnapshot {
    pub(crate) at: Instant,
    /// Busy time of every core of the machine.
    pub(crate) machine: f64,
    /// This process and its descendants (the clusters, the 2b child).
    pub(crate) ours: f64,
    /// RabbitMQ and Redis.
    pub(crate) services: f64,
}

/// Marks where a measurement starts, to stamp its rows with the CPU other
/// processes used meanwhile: the machine may be shared, and a busy neighbour
/// shows in the numbers.
pub(crate) struct Section {
    pub(crate) first_row: usize,
    pub(crate) start: Option<CpuSnapshot>,
}

impl Section {
    /// A section whose rows will follow `rows`.
    pub(crate) fn begin(rows: &[Row]) -> Section {
        Section {
            first_row: rows.len(),
            start: cpu_snapshot(),
        }
    }

    /// Stamps the rows added since [`Section::begin`].
    pub(crate) fn end(self, rows: &mut [Row]) {
        let others = others_cores(self.start.as_ref(), cpu_snapshot().as_ref());
        for row in &mut rows[self.first_row..] {
            row.others = others;
        }
    }
}

/// Mean cores used between two snapshots by processes that are neither ours
/// nor the services.
pub(crate) fn others_cores(from: Option<&CpuSnapshot>, to: Option<&CpuSnapshot>) -> Option<f64> {
    let (from, to) = (from?, to?);
    let wall = to.at.duration_since(from.at).as_secs_f64();
    let others =
        (to.machine - from.machine) - (to.ours - from.ours) - (to.services - from.services);
    (wall > 0.0).then(|| (others / wall).max(0.0))
}

/// "0.03", or "?" when not measured.
pub(crate) fn cores(others: Option<f64>) -> String {
    others.map_or_else(|| "?".into(), |c| format!("{c:.2}"))
}

/// Reads `/proc/stat` and every `/proc/<pid>/stat`.
pub(crate) fn cpu_snapshot() -> Option<CpuSnapshot> {
    let at = Instant::now();
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: f64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    let processes = processes();
    let me = std::process::id();
    let (mut ours, mut services) = (0.0, 0.0);
    for (pid, p) in &processes {
        if descends_from(*pid, me, &processes) {
            ours += p.ticks;
        } else if SERVICES.contains(&p.comm.as_str()) {
            services += p.ticks;
        }
    }
    Some(CpuSnapshot {
        at,
        machine: busy / TICKS_PER_SEC,
        ours: ours / TICKS_PER_SEC,
        services: services / TICKS_PER_SEC,
    })
}

/// One process's parent, name and CPU ticks (its own and its reaped children's).
pub(crate) struct Process {
    pub(crate) ppid: u32,
    pub(crate) comm: String,
    pub(crate) ticks: f64,
}

/// Every process now running (those that vanish while being read are skipped).
pub(crate) fn processes() -> std::collections::HashMap<u32, Process> {
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(p) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| parse_stat(&s))
        {
            out.insert(pid, p);
        }
    }
    out
}

/// Parses `/proc/<pid>/stat`: `pid (comm) state ppid ... utime stime cutime cstime ...`.
pub(crate) fn parse_stat(stat: &str) -> Option<Process> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let number = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    let ticks = number(11)? + number(12)? + number(13)? + number(14)?;
    Some(Process {
        ppid: fields.get(1)?.parse().ok()?,
        comm,
        ticks,
    })
}

/// Whether `pid` is `ancestor` or one of its descendants.
pub(crate) fn descends_from(
    mut pid: u32,
    ancestor: u32,
    processes: &std::collections::HashMap<u32, Process>,
) -> bool {
    for _ in 0..64 {
        if pid == ancestor {
            return true;
        }
        match processes.get(&pid) {
            Some(p) if p.ppid != pid => pid = p.ppid,
            _ => return false,
        }
    }
    false
}
