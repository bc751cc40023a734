//! State every core can see: settings, per-shard counters, the connection registry for the
//! four-letter words, and per-IP connection counts.
//!
//! Touched on accept/close and by counters only: never on a lock in the request path.
//! Per-shard counters are cache-padded so cores do not share cache lines.

use crate::config::Config;
use crate::node::msg::Committed;
use crossbeam::queue::SegQueue;
use crossbeam::utils::CachePadded;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Request latency bookkeeping in microseconds.
#[derive(Default)]
pub struct Latency {
    pub min_us: AtomicU64,
    pub max_us: AtomicU64,
    pub sum_us: AtomicU64,
    pub count: AtomicU64,
}

impl Latency {
    pub fn record(&self, us: u64) {
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        if n == 0 || us < self.min_us.load(Ordering::Relaxed) {
            self.min_us.store(us, Ordering::Relaxed);
        }
        if us > self.max_us.load(Ordering::Relaxed) {
            self.max_us.store(us, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn reset(&self) {
        for a in [&self.min_us, &self.max_us, &self.sum_us, &self.count] {
            a.store(0, Ordering::Relaxed);
        }
    }
}

/// The worst value of a measure over the last one to two windows (two rolling buckets).
pub struct WorstRecent {
    window: Duration,
    started: Instant,
    current: u64,
    previous: u64,
}

impl WorstRecent {
    pub fn new(window: Duration, now: Instant) -> WorstRecent {
        assert!(!window.is_zero());
        WorstRecent { window, started: now, current: 0, previous: 0 }
    }

    fn roll(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.started);
        if age >= 2 * self.window {
            (self.previous, self.current, self.started) = (0, 0, now);
        } else if age >= self.window {
            (self.previous, self.current) = (self.current, 0);
            self.started += self.window;
        }
    }

    pub fn record(&mut self, value: u64, now: Instant) {
        self.roll(now);
        self.current = self.current.max(value);
    }

    pub fn get(&mut self, now: Instant) -> u64 {
        self.roll(now);
        self.current.max(self.previous)
    }
}

/// How far back `zk_log_write_max_recent_us` looks (one to two of these).
pub const LOG_WRITE_WINDOW: Duration = Duration::from_secs(60);

/// Counters of one shard (written by that shard only).
#[derive(Default)]
pub struct ShardStats {
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub outstanding: AtomicU64,
    pub latency: Latency,
    pub connections: AtomicUsize,
    /// Data plus child watch registrations.
    pub watch_total: AtomicUsize,
    pub last_zxid: AtomicI64,
    pub node_count: AtomicUsize,
    pub ephemerals: AtomicUsize,
    pub data_size: AtomicU64,
}

/// Per-connection numbers for `cons` and `stat`.
pub struct ConnStats {
    pub peer: SocketAddr,
    pub established_ms: i64,
    pub session: AtomicI64,
    pub timeout: AtomicI32,
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub queued: AtomicU64,
    pub last_op: AtomicI32,
    pub last_cxid: AtomicI64,
    pub last_zxid: AtomicI64,
    pub last_resp_ms: AtomicI64,
    pub last_latency_us: AtomicU64,
    pub latency: Latency,
}

impl ConnStats {
    pub fn new(peer: SocketAddr, established_ms: i64) -> ConnStats {
        ConnStats {
            peer,
            established_ms,
            session: AtomicI64::new(0),
            timeout: AtomicI32::new(0),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            last_op: AtomicI32::new(-100),
            last_cxid: AtomicI64::new(-1),
            last_zxid: AtomicI64::new(-1),
            last_resp_ms: AtomicI64::new(0),
            last_latency_us: AtomicU64::new(0),
            latency: Latency::default(),
        }
    }
}

/// A shard's data-watch listing: (the request number it answers, (session, path) pairs).
pub type WatchListing = (u64, Vec<(i64, String)>);

/// Process-wide state shared by all cores.
pub struct Shared {
    pub cfg: Arc<Config>,
    pub started: Instant,
    pub shards: Vec<CachePadded<ShardStats>>,
    pub conns: Mutex<BTreeMap<(usize, u64), Arc<ConnStats>>>,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    pub sessions: AtomicUsize,
    pub batches: AtomicU64,
    pub logged_txns: AtomicU64,
    /// Log records written, and the time spent writing and syncing them.
    pub log_records: AtomicU64,
    pub log_write_us: AtomicU64,
    /// The slowest log write + sync ever, the slowest recently, and how many were slower than
    /// `fsync.warningthresholdms`.
    pub log_write_max_us: AtomicU64,
    pub log_write_worst_recent: Mutex<WorstRecent>,
    pub log_slow_writes: AtomicU64,
    /// The log cannot be written right now (writes are refused).
    pub disk_failed: AtomicBool,
    /// Raised by a four-letter word that needs every shard's watch listing (wchc, wchp).
    pub listing_wanted: AtomicU64,
    /// Each shard's latest listing.
    pub listings: Vec<Mutex<WatchListing>>,
    /// Each shard's queue of committed batches, in commit order (one producer: the commit
    /// core; one consumer: the shard). Bounded by the doorbell channel's depth.
    pub inboxes: Vec<SegQueue<Arc<Committed>>>,
    /// The node serves clients (an ensemble member without a quorum does not).
    serving: AtomicBool,
    /// The node is in read-only mode (no quorum; read-only clients served).
    read_only: AtomicBool,
    /// A standalone server (a quorum of one): its shards accept clients only once it serves,
    /// so that nothing it says at start-up is "not currently serving". Ensemble members accept
    /// at once (the four-letter words must answer while there is no quorum).
    pub standalone: bool,
    /// Raised each time serving stops: every shard closes all its client connections.
    client_generation: AtomicU64,
    /// The replication state, for the four-letter words.
    status: Mutex<Option<crate::zab::Status>>,
    /// Batches pushed to every shard's inbox so far. Raised only after all inboxes hold the
    /// batch, so a shard that sees it can take the batch before answering anyone.
    published: CachePadded<AtomicU64>,
}

impl Shared {
    pub fn new(cfg: Arc<Config>, shards: usize, standalone: bool) -> Shared {
        Shared {
            cfg,
            standalone,
            started: Instant::now(),
            shards: (0..shards).map(|_| CachePadded::new(ShardStats::default())).collect(),
            conns: Mutex::new(BTreeMap::new()),
            per_ip: Mutex::new(HashMap::new()),
            sessions: AtomicUsize::new(0),
            batches: AtomicU64::new(0),
            logged_txns: AtomicU64::new(0),
            log_records: AtomicU64::new(0),
            log_write_us: AtomicU64::new(0),
            log_write_max_us: AtomicU64::new(0),
            log_write_worst_recent: Mutex::new(WorstRecent::new(LOG_WRITE_WINDOW, Instant::now())),
            log_slow_writes: AtomicU64::new(0),
            disk_failed: AtomicBool::new(false),
            listing_wanted: AtomicU64::new(0),
            listings: (0..shards).map(|_| Mutex::new((0, Vec::new()))).collect(),
            inboxes: (0..shards).map(|_| SegQueue::new()).collect(),
            published: CachePadded::new(AtomicU64::new(0)),
            serving: AtomicBool::new(false),
            read_only: AtomicBool::new(false),
            client_generation: AtomicU64::new(0),
            status: Mutex::new(None),
        }
    }

    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Release);
    }

    pub fn serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    pub fn set_read_only(&self, read_only: bool) {
        self.read_only.store(read_only, Ordering::Release);
    }

    pub fn read_only(&self) -> bool {
        self.read_only.load(Ordering::Acquire)
    }

    /// Tells every shard to close all its client connections.
    pub fn close_clients(&self) {
        self.client_generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn client_generation(&self) -> u64 {
        self.client_generation.load(Ordering::Acquire)
    }

    pub fn set_status(&self, s: crate::zab::Status) {
        *self.status.lock().unwrap() = Some(s);
    }

    pub fn status(&self) -> Option<crate::zab::Status> {
        *self.status.lock().unwrap()
    }

    /// Hands a committed batch to every shard (before any shard can answer for it).
    pub fn publish(&self, c: Arc<Committed>) {
        for inbox in &self.inboxes {
            inbox.push(c.clone());
        }
        self.published.fetch_add(1, Ordering::Release);
    }

    /// Batches published so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// Counts a new connection from `ip`; false if `maxClientCnxns` is reached (0 = no limit).
    pub fn admit(&self, ip: IpAddr) -> bool {
        let mut m = self.per_ip.lock().unwrap();
        let n = m.entry(ip).or_insert(0);
        let max = self.cfg.max_client_cnxns;
        if max != 0 && *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    pub fn release(&self, ip: IpAddr) {
        let mut m = self.per_ip.lock().unwrap();
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }

    /// Records how long one log write + sync took.
    pub fn log_write_took(&self, took: Duration) {
        let us = took.as_micros() as u64;
        self.log_write_us.fetch_add(us, Ordering::Relaxed);
        self.log_write_max_us.fetch_max(us, Ordering::Relaxed);
        self.log_write_worst_recent.lock().unwrap().record(us, Instant::now());
        if took > Duration::from_millis(self.cfg.fsync_warning_threshold_ms) {
            self.log_slow_writes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sum of a counter over shards.
    pub fn sum(&self, f: impl Fn(&ShardStats) -> u64) -> u64 {
        self.shards.iter().map(|s| f(s)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_recent_forgets_old_windows() {
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut r = WorstRecent::new(w, t0);
        r.record(5, t0);
        r.record(3, t0 + Duration::from_secs(1));
        assert_eq!(r.get(t0 + Duration::from_secs(2)), 5);
        r.record(2, t0 + Duration::from_secs(12));
        assert_eq!(r.get(t0 + Duration::from_secs(13)), 5, "the previous window still counts");
        assert_eq!(r.get(t0 + Duration::from_secs(21)), 2);
        assert_eq!(r.get(t0 + Duration::from_secs(45)), 0);
    }
}
