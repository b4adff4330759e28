//! The comparison as a markdown table: every figure of one run, and the
//! ratios the issue asks for (full Redis against empty, warren against its
//! peers, the CLI against the library).

use std::fmt::Write as _;

use crate::floor::Floor;
use crate::idle::IdleFigures;
use crate::peers::{Outcome, PeerFigures};
use crate::workloads::Figures;

/// Everything one run measured.
#[derive(Default)]
pub struct Report {
    pub warren_empty: Option<Figures>,
    pub warren_full: Option<Figures>,
    pub extra_keys: usize,
    pub idle_empty: Option<IdleFigures>,
    pub idle_full: Option<IdleFigures>,
    pub dask: Option<Outcome>,
    pub celery: Option<Outcome>,
    /// The broker's own hop time, measured after the empty-Redis rows.
    pub floor: Option<Floor>,
    /// How long Redis took to finish rewriting its AOF before the empty
    /// pass (`fill::settle`); `None` with the AOF off.
    pub settled_empty: Option<std::time::Duration>,
    /// The same before the full pass, right after the fill.
    pub settled_full: Option<std::time::Duration>,
}

/// Whether more is better (rates) or worse (latencies).
#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
}

/// warren's advantage over a peer: > 1 means warren is better.
fn advantage(warren: f64, peer: f64, better: Better) -> f64 {
    match better {
        Better::Higher => warren / peer,
        Better::Lower => peer / warren,
    }
}

fn peer_cell(
    p: Option<&Outcome>,
    get: fn(&PeerFigures) -> f64,
    ours: Option<f64>,
    better: Better,
) -> (String, String) {
    match p {
        Some(Ok(f)) => {
            let v = get(f);
            let ratio = ours.map_or("-".into(), |w| format!("{:.1}×", advantage(w, v, better)));
            (format!("{v:.1}"), ratio)
        }
        Some(Err(why)) => (format!("not run: {why}"), "-".into()),
        None => ("-".into(), "-".into()),
    }
}

impl Report {
    /// The table, with a line on how to read it.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| workload | warren, empty Redis | warren, {} extra keys | full ÷ empty | dask | warren's advantage | Celery | warren's advantage |",
            self.extra_keys
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        type Get = fn(&Figures) -> f64;
        type PeerGet = fn(&PeerFigures) -> f64;
        let rows: [(&str, Get, Option<PeerGet>, Better); 5] = [
            (
                "no-op map + gather, Rust client (tasks/s)",
                |f| f.noop_per_s,
                Some(|p| p.noop_per_s),
                Better::Higher,
            ),
            (
                "no-op `warren map \\| warren gather -` (tasks/s)",
                |f| f.cli_per_s,
                Some(|p| p.noop_per_s),
                Better::Higher,
            ),
            (
                "submit → result p50 (ms)",
                |f| f.p50_ms,
                Some(|p| p.p50_ms),
                Better::Lower,
            ),
            (
                "submit → result p99 (ms)",
                |f| f.p99_ms,
                Some(|p| p.p99_ms),
                Better::Lower,
            ),
            (
                "chain of dependent inc (tasks/s)",
                |f| f.chain_per_s,
                Some(|p| p.chain_per_s),
                Better::Higher,
            ),
        ];
        for (name, get, peer, better) in rows {
            let empty = self.warren_empty.as_ref().map(get);
            let full = self.warren_full.as_ref().map(get);
            let ratio = match (empty, full) {
                (Some(e), Some(f)) => format!("{:.2}", f / e),
                _ => "-".into(),
            };
            let (dask, dask_adv) = peer.map_or(("-".into(), "-".into()), |g| {
                peer_cell(self.dask.as_ref(), g, empty, better)
            });
            let (celery, celery_adv) = peer.map_or(("-".into(), "-".into()), |g| {
                peer_cell(self.celery.as_ref(), g, empty, better)
            });
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {ratio} | {dask} | {dask_adv} | {celery} | {celery_adv} |",
                cell(empty),
                cell(full)
            );
        }
        type IdleGet = fn(&IdleFigures) -> f64;
        let idle: [(&str, IdleGet); 3] = [
            ("idle stack: scheduler + 2 workers (cores)", |i| i.cores),
            ("idle stack: Redis commands/s", |i| i.redis_per_s),
            ("idle stack: Redis SCAN calls/s", |i| i.scans_per_s),
        ];
        for (name, get) in idle {
            let e = self.idle_empty.as_ref().map(get);
            let f = self.idle_full.as_ref().map(get);
            let ratio = match (e, f) {
                (Some(e), Some(f)) if e > 0.0 => format!("{:.2}", f / e),
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {ratio} | | | | |",
                cell3(e),
                cell3(f)
            );
        }
        if let (Some(empty), Some(full)) = (self.settled_empty, self.settled_full) {
            let _ = writeln!(
                s,
                "\nBefore each pass Redis rewrote its append-only file, outside the timings: {:.1} s on the empty Redis, {:.1} s on the full one.",
                empty.as_secs_f64(),
                full.as_secs_f64()
            );
        }
        if let Some(f) = &self.warren_empty {
            let _ = writeln!(
                s,
                "\nThe CLI ran at {:.2}× the Rust client's no-op rate (empty Redis).",
                f.cli_per_s / f.noop_per_s
            );
        }
        let _ = writeln!(
            s,
            "warren's advantage: its rate ÷ the peer's, or the peer's latency ÷ its own (> 1: warren is better)."
        );
        if let Some(f) = &self.floor {
            s.push_str(&self.floor_lines(f));
        }
        s
    }

    /// The broker's hop time against the latency rows and their targets.
    fn floor_lines(&self, f: &Floor) -> String {
        let mut s = String::new();
        let rt_floor = f.round_trip_ms();
        let chain_ceiling = f.chain_per_s();
        let _ = write!(
            s,
            "\nThe transport alone: one broker hop (publish on a confirm channel → a durable queue → another connection's consumer) took {:.3} ms, median, and one Redis script round trip (`return 1`) {:.3} ms. A round trip crosses the broker 4 times and waits for 3 scripts: at least {rt_floor:.2} ms",
            f.hop_ms, f.script_ms
        );
        if let Some(w) = &self.warren_empty {
            let _ = write!(
                s,
                " (warren's p50: {:.2} ms, {:.1}× that floor)",
                w.p50_ms,
                w.p50_ms / rt_floor
            );
        }
        if let Some(Ok(d)) = &self.dask {
            let _ = write!(s, "; a tenth of dask's p50 is {:.2} ms", d.p50_ms / 10.0);
        }
        let _ = write!(
            s,
            ". A chain link crosses the broker twice and waits for 2 scripts: at most {chain_ceiling:.0} links/s"
        );
        if let Some(w) = &self.warren_empty {
            let _ = write!(
                s,
                " (warren: {:.0}, {:.2} of that)",
                w.chain_per_s,
                w.chain_per_s / chain_ceiling
            );
        }
        if let Some(Ok(d)) = &self.dask {
            let _ = write!(s, "; 6 times dask's chain is {:.0}", 6.0 * d.chain_per_s);
        }
        s.push_str(".\n");
        s
    }
}

fn cell(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

fn cell3(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advantage_reads_the_same_way_for_rates_and_latencies() {
        assert_eq!(advantage(2000.0, 400.0, Better::Higher), 5.0);
        assert_eq!(advantage(2.0, 20.0, Better::Lower), 10.0);
    }
}
