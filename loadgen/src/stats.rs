//! Counting and latency: per-op counters, errors by code, and hdrhistogram latencies.
//!
//! Each executor thread owns one `Stats` (no sharing while measuring); the run merges them at the
//! end. Latencies are recorded in nanoseconds and reported in microseconds.

use crate::workload::OpKind;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;

/// Highest latency a histogram holds (longer ones are clamped): 100 s.
const MAX_LATENCY_NS: u64 = 100_000_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("valid histogram bounds")
}

/// Counters and latencies of one op kind.
#[derive(Clone, Debug)]
pub struct OpStats {
    /// Completed operations (successful or not).
    pub count: u64,
    /// Completed operations whose reply carried an error.
    pub errors: u64,
    pub latency: Histogram<u64>,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats { count: 0, errors: 0, latency: new_histogram() }
    }
}

/// Everything one thread (or, after merging, the whole run) measured.
#[derive(Clone, Debug)]
pub struct Stats {
    pub ops: Vec<OpStats>,
    pub errors_by_code: BTreeMap<i32, u64>,
    /// Operations that completed during the warm-up (not in `ops`).
    pub warmup_ops: u64,
    /// Sessions (connections) that had to be re-established after a failure.
    pub reconnects: u64,
    /// Times an open-loop sender had to wait because `inflight` requests were outstanding.
    pub inflight_cap_waits: u64,
    /// Open loop: how late each request left the loadgen after its intended send time (a large
    /// value means the loadgen itself could not keep the schedule).
    pub send_lag: Histogram<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            ops: (0..OpKind::COUNT).map(|_| OpStats::default()).collect(),
            errors_by_code: BTreeMap::new(),
            warmup_ops: 0,
            reconnects: 0,
            inflight_cap_waits: 0,
            send_lag: new_histogram(),
        }
    }
}

impl Stats {
    /// Records one completed operation (`err` is its reply code, 0 for success).
    pub fn record(&mut self, kind: OpKind, latency_ns: u64, err: i32) {
        let s = &mut self.ops[kind.index()];
        s.count += 1;
        s.latency.saturating_record(latency_ns.max(1));
        if err != 0 {
            s.errors += 1;
            *self.errors_by_code.entry(err).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        for (a, b) in self.ops.iter_mut().zip(&other.ops) {
            a.count += b.count;
            a.errors += b.errors;
            a.latency.add(&b.latency).expect("histograms with the same bounds merge");
        }
        for (code, n) in &other.errors_by_code {
            *self.errors_by_code.entry(*code).or_default() += n;
        }
        self.warmup_ops += other.warmup_ops;
        self.reconnects += other.reconnects;
        self.inflight_cap_waits += other.inflight_cap_waits;
        self.send_lag.add(&other.send_lag).expect("same bounds");
    }

    pub fn total_ops(&self) -> u64 {
        self.ops.iter().map(|o| o.count).sum()
    }

    pub fn total_errors(&self) -> u64 {
        self.ops.iter().map(|o| o.errors).sum()
    }

    /// All op kinds' latencies in one histogram.
    pub fn overall_latency(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for o in &self.ops {
            h.add(&o.latency).expect("same bounds");
        }
        h
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Percentiles {
            min: us(h.min()),
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// What one second of the run looked like on one thread (for live progress).
#[derive(Debug)]
pub struct Tick {
    pub thread: usize,
    /// Seconds since the start of the run (1 = the first second).
    pub second: u64,
    pub ops: u64,
    pub errors: u64,
    pub latency: Histogram<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_counts_errors_and_histograms() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for i in 1..=1000u64 {
            a.record(OpKind::GetData, i * 1000, 0);
        }
        for i in 1..=1000u64 {
            b.record(OpKind::GetData, (1000 + i) * 1000, 0);
        }
        b.record(OpKind::SetData, 5_000_000, -101);
        b.record(OpKind::SetData, 7_000_000, -103);
        b.record(OpKind::Delete, 1_000, -101);
        b.warmup_ops = 3;
        a.merge(&b);
        assert_eq!(a.ops[OpKind::GetData.index()].count, 2000);
        assert_eq!(a.ops[OpKind::SetData.index()].count, 2);
        assert_eq!(a.ops[OpKind::SetData.index()].errors, 2);
        assert_eq!(a.total_ops(), 2003);
        assert_eq!(a.total_errors(), 3);
        assert_eq!(a.errors_by_code.get(&-101), Some(&2));
        assert_eq!(a.errors_by_code.get(&-103), Some(&1));
        assert_eq!(a.warmup_ops, 3);
        let get = &a.ops[OpKind::GetData.index()].latency;
        assert_eq!(get.len(), 2000);
        // Merged median of 1..2000 us sits near 1000 us, max near 2000 us (3 significant digits).
        let p = Percentiles::of(get);
        assert!((p.p50 - 1000.0).abs() / 1000.0 < 0.002, "{p:?}");
        assert!((p.max - 2000.0).abs() / 2000.0 < 0.002, "{p:?}");
        let all = a.overall_latency();
        assert_eq!(all.len(), 2003);
        assert!(all.max() >= 7_000_000 - 7_000);
    }

    #[test]
    fn merging_many_thread_histograms_equals_one_histogram() {
        let mut merged = Stats::default();
        let mut single = new_histogram();
        for t in 0..4u64 {
            let mut s = Stats::default();
            for i in 0..10_000u64 {
                let v = 1 + (i * 7919 + t * 104_729) % 5_000_000;
                s.record(OpKind::Exists, v, 0);
                single.record(v).unwrap();
            }
            merged.merge(&s);
        }
        let m = &merged.ops[OpKind::Exists.index()].latency;
        assert_eq!(m.len(), single.len());
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(m.value_at_quantile(q), single.value_at_quantile(q));
        }
    }

    #[test]
    fn percentiles_of_empty_is_zero() {
        assert_eq!(Percentiles::of(&new_histogram()), Percentiles::default());
    }

    #[test]
    fn huge_latencies_are_clamped_not_lost() {
        let mut s = Stats::default();
        s.record(OpKind::Multi, u64::MAX, 0);
        assert_eq!(s.ops[OpKind::Multi.index()].latency.len(), 1);
    }
}
