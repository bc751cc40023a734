//! A deterministic simulator of whole corezk ensembles: the real node logic (`corezk::node`,
//! with its ZAB machine, proposer, records, tree and recovery) of every server in one thread,
//! over a simulated network and disk, in virtual time, driven by a seeded random source.
//!
//! Faults: election messages lost, duplicated, delayed and reordered; quorum connections (TCP
//! streams) delayed, reset and cut by partitions (a broken stream loses its tail and both ends
//! hear of it); crashes that lose any suffix of the disk operations not yet reported durable,
//! and restarts through recovery; slow disks; local snapshots with log purges.
//!
//! Checked after every step: at most one serving leader per epoch; every node applies, at each
//! zxid, the same record as every other node (committed prefixes agree), contiguously; no
//! replication protocol error. At the end (faults healed, everything restarted): one leader,
//! every node at its commit point with the same tree and sessions, each node's tree equal to a
//! replay of its own durable log, and every acknowledged write present.

use bytes::Bytes;
use corezk::config::Config;
use corezk::node::msg::{Committed, ReplyKind, ToCommit};
use corezk::node::recovery;
use corezk::node::{Applied, Node};
use corezk::proto::{Acl, ConnectRequest, CreateRequest, Request};
use corezk::sequencer::Now;
use corezk::tree::acl::AuthInfo;
use corezk::tree::Tree;
use corezk::zab::msg::PeerState;
use corezk::zab::{self, Batch, ConnId, Fault, Input, NodeId, Storage, Zxid};
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;

/// SplitMix64: small, fast, and the same sequence for the same seed everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// How a run is shaped.
#[derive(Clone, Debug)]
pub struct Options {
    pub voters: u32,
    pub observers: u32,
    /// Virtual milliseconds of faults and load, then of healing.
    pub run_ms: u64,
    pub heal_ms: u64,
    pub fault: Option<Fault>,
    /// Scale of every fault probability (0: a perfect world).
    pub chaos: f64,
}

impl Default for Options {
    fn default() -> Options {
        Options { voters: 3, observers: 0, run_ms: 6_000, heal_ms: 8_000, fault: None, chaos: 1.0 }
    }
}

const TICK_MS: u64 = 10;
const SECRET: [u8; 16] = [5; 16];
const HISTORY_BYTES: usize = 24 << 10;

fn now(ms: u64) -> Now {
    Now { mono_ms: ms, wall_ms: 1_700_000_000_000 + ms as i64 }
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A digest of a tree's content (paths, data, stats).
pub fn tree_digest(t: &Tree) -> u64 {
    let mut h: u64 = fnv(&t.last_zxid().to_le_bytes());
    for (p, n) in t.iter() {
        let s = n.stat();
        let line = format!(
            "{p}|{:?}|{}|{}|{}|{}|{}|{}|{}",
            n.data.as_deref(),
            s.czxid,
            s.mzxid,
            s.version,
            s.cversion,
            s.aversion,
            s.ephemeral_owner,
            s.pzxid
        );
        h = h.rotate_left(5) ^ fnv(line.as_bytes());
    }
    h
}

struct Disk {
    snapshot: Option<Vec<u8>>,
    log: Vec<Arc<Batch>>,
    epochs: (u32, u32, u32),
    /// Requested, not yet durable: (seq, op, due).
    pending: VecDeque<(u64, Storage, u64)>,
}

struct Client {
    session: i64,
    next_wseq: u64,
    /// wseq -> xid of writes in flight.
    inflight: BTreeMap<u64, i32>,
    connected: bool,
    next_xid: i32,
}

struct Host {
    node: Option<Node>,
    disk: Disk,
    down_until: u64,
    clients: BTreeMap<u64, Client>,
    next_conn: u64,
    /// The last zxid applied (a batch's last, or a snapshot's).
    applied: Zxid,
}

enum What {
    Input(NodeId, Input),
    DiskDone(NodeId, u64),
    Snapshot(NodeId, NodeId, ConnId),
}

struct Event {
    at: u64,
    seq: u64,
    what: What,
}

impl PartialEq for Event {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Event {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

struct Stream {
    dialer: NodeId,
    acceptor: NodeId,
    open: bool,
    /// The latest delivery time scheduled in each direction (TCP keeps order).
    last: [u64; 2],
}

pub struct Sim {
    pub seed: u64,
    opts: Options,
    rng: Rng,
    now: u64,
    cfg: Config,
    ids: Vec<NodeId>,
    hosts: BTreeMap<NodeId, Host>,
    events: BinaryHeap<Event>,
    next_event: u64,
    streams: BTreeMap<ConnId, Stream>,
    next_stream: ConnId,
    /// A partition: the side each node is on (empty: none).
    side: BTreeMap<NodeId, u8>,
    /// Record last zxid -> (first zxid, digest of the record bytes), as first applied anywhere.
    history: BTreeMap<Zxid, (Zxid, u64)>,
    leaders: BTreeMap<u32, NodeId>,
    /// Record last zxid -> the zxid it was applied after.
    pred: BTreeMap<Zxid, Zxid>,
    /// Acknowledged writes: zxid -> session.
    acked: BTreeMap<Zxid, i64>,
    pub log: Vec<String>,
    pub violation: Option<String>,
    pub stats: Stats,
}

#[derive(Default, Debug, Clone)]
pub struct Stats {
    pub acked: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub elections: u64,
    pub snapshots_sent: u64,
    pub max_epoch: u32,
    /// Epochs given up because the zxid counter ran out.
    pub exhausted: u64,
}

impl Sim {
    pub fn new(seed: u64, opts: Options) -> Sim {
        let cfg = Config { tick_time: 200, container_check_interval_ms: 500, max_batch: 50, ..Config::default() };
        let ids: Vec<NodeId> = (1..=opts.voters + opts.observers).collect();
        let mut sim = Sim {
            seed,
            rng: Rng::new(seed),
            now: 0,
            cfg,
            ids: ids.clone(),
            hosts: BTreeMap::new(),
            events: BinaryHeap::new(),
            next_event: 0,
            streams: BTreeMap::new(),
            next_stream: 1,
            side: BTreeMap::new(),
            history: BTreeMap::new(),
            leaders: BTreeMap::new(),
            pred: BTreeMap::new(),
            acked: BTreeMap::new(),
            log: Vec::new(),
            violation: None,
            stats: Stats::default(),
            opts,
        };
        for &id in &ids {
            let disk = Disk { snapshot: None, log: Vec::new(), epochs: (0, 0, 0), pending: VecDeque::new() };
            sim.hosts.insert(
                id,
                Host { node: None, disk, down_until: 0, clients: BTreeMap::new(), next_conn: 1, applied: 0 },
            );
        }
        for id in ids {
            sim.boot(id);
        }
        sim
    }

    fn zab_config(&self, id: NodeId) -> zab::ZabConfig {
        zab::ZabConfig {
            id,
            voters: (1..=self.opts.voters).collect(),
            observers: (self.opts.voters + 1..=self.opts.voters + self.opts.observers).collect(),
            init_limit_ticks: 100,
            sync_limit_ticks: 30,
            ping_ticks: 5,
            election_resend_ticks: 10,
            finalize_ticks: 2,
            dial_retry_ticks: 2,
            history_bytes_max: HISTORY_BYTES,
            uncommitted_bytes_max: 1 << 20,
            snapshot_chunk_bytes: 1000,
            snapshot_bytes_max: 1 << 30,
            zxid_counter_max: 400,
            fault: self.opts.fault,
        }
    }

    fn note(&mut self, line: String) {
        self.log.push(format!("{:>6} ms  {line}", self.now));
    }

    fn schedule(&mut self, after: u64, what: What) {
        self.next_event += 1;
        self.events.push(Event { at: self.now + after, seq: self.next_event, what });
    }

    fn reachable(&self, a: NodeId, b: NodeId) -> bool {
        let up = |x: NodeId| self.hosts.get(&x).is_some_and(|h| h.node.is_some());
        up(a) && up(b) && self.side.get(&a) == self.side.get(&b)
    }

    /// Starts (or restarts) a node from what its disk holds, through recovery.
    fn boot(&mut self, id: NodeId) {
        let zcfg = self.zab_config(id);
        let h = self.hosts.get_mut(&id).unwrap();
        let snapshot = h.disk.snapshot.as_ref().map(|b| corezk::snapshot::decode(b).expect("a snapshot decodes"));
        let base = snapshot.as_ref().map_or(0, |s| s.zxid);
        let after: Vec<(Arc<Batch>, corezk::record::Decoded)> = h
            .disk
            .log
            .iter()
            .filter(|b| b.last > base)
            .map(|b| (b.clone(), corezk::record::decode(&b.bytes).expect("a logged record decodes")))
            .collect();
        let r = recovery::rebuild(snapshot, after, &SECRET, HISTORY_BYTES);
        let (a, l, c) = h.disk.epochs;
        let start = zab::Start {
            accepted_epoch: a,
            accepted_leader: l,
            current_epoch: c,
            applied: r.state.tree.last_zxid(),
            epochs: r.epochs,
            history: r.records,
            history_base: r.records_base,
        };
        h.applied = r.state.tree.last_zxid();
        h.clients.clear();
        let node = Node::new(&self.cfg, zcfg, 1, start, r.state, SECRET, now(self.now));
        h.node = Some(node);
        self.drain(id);
    }

    fn crash(&mut self, id: NodeId) {
        let keep = {
            let h = &self.hosts[&id];
            self.rng.below(h.disk.pending.len() as u64 + 1) as usize
        };
        let h = self.hosts.get_mut(&id).unwrap();
        h.node = None;
        // A suffix of what was not reported durable is lost.
        let pending: Vec<(u64, Storage, u64)> = h.disk.pending.drain(..).collect();
        for (_, op, _) in pending.into_iter().take(keep) {
            apply_storage(&mut h.disk, op);
        }
        h.clients.clear();
        h.down_until = self.now + 50 + self.rng.below(1500);
        self.stats.crashes += 1;
        let gone: Vec<ConnId> = self
            .streams
            .iter()
            .filter(|(_, s)| s.open && (s.dialer == id || s.acceptor == id))
            .map(|(&c, _)| c)
            .collect();
        for c in gone {
            self.break_stream(c);
        }
        self.note(format!("crash {id} (kept {keep} pending disk ops)"));
    }

    fn break_stream(&mut self, c: ConnId) {
        let Some(s) = self.streams.get_mut(&c) else { return };
        if !s.open {
            return;
        }
        s.open = false;
        let (a, b) = (s.dialer, s.acceptor);
        for (me, other) in [(a, b), (b, a)] {
            if self.hosts[&me].node.is_some() {
                let d = 1 + self.rng.below(5);
                self.schedule(d, What::Input(me, Input::Disconnected { peer: other, conn: c }));
            }
        }
    }

    /// Performs what node `id` asked for.
    fn drain(&mut self, id: NodeId) {
        let Some(node) = self.hosts.get_mut(&id).and_then(|h| h.node.as_mut()) else { return };
        let r = node.ready();
        for line in &r.logs {
            if line.starts_with("replication:") {
                self.violation.get_or_insert(format!("node {id}: protocol error: {line}"));
            }
        }
        for line in r.logs {
            if line.contains("zxid counter") {
                self.stats.exhausted += 1;
            }
            self.note(format!("{id}: {line}"));
        }
        for a in r.applied {
            self.check_applied(id, a);
        }
        for c in r.publish {
            self.deliver_to_clients(id, c);
        }
        if r.clients_closed {
            self.hosts.get_mut(&id).unwrap().clients.clear();
        }
        for (seq, op) in r.storage {
            let slow = self.rng.chance(0.02 * self.opts.chaos);
            let d = if slow { 30 + self.rng.below(100) } else { self.rng.below(3) };
            let h = self.hosts.get_mut(&id).unwrap();
            let due = h.disk.pending.back().map_or(0, |p| p.2).max(self.now + d);
            h.disk.pending.push_back((seq, op, due));
            let at = due - self.now;
            self.schedule(at, What::DiskDone(id, seq));
        }
        for (to, note) in r.notifications {
            if !self.reachable(id, to) || self.rng.chance(0.05 * self.opts.chaos) {
                continue;
            }
            let copies = if self.rng.chance(0.03 * self.opts.chaos) { 2 } else { 1 };
            for _ in 0..copies {
                let d = 1 + self.rng.below(8);
                self.schedule(d, What::Input(to, Input::Notification { from: id, note }));
            }
        }
        for (to, conn, msg) in r.messages {
            let Some(s) = self.streams.get(&conn) else { continue };
            if !s.open || (s.dialer != to && s.acceptor != to) {
                continue;
            }
            let healing = self.now >= self.opts.run_ms;
            if !self.reachable(id, to) || (!healing && self.rng.chance(0.002 * self.opts.chaos)) {
                self.note(format!("stream {conn} ({id}->{to}) broken"));
                self.break_stream(conn);
                continue;
            }
            let dir = usize::from(to == s.dialer);
            let d = 1 + self.rng.below(4);
            let at = self.streams[&conn].last[dir].max(self.now + d);
            self.streams.get_mut(&conn).unwrap().last[dir] = at;
            self.schedule(at - self.now, What::Input(to, Input::Message { from: id, conn, msg }));
        }
        for (peer, conn) in r.close {
            if self.streams.get(&conn).is_some_and(|s| s.open) {
                self.note(format!("{id} closes stream {conn} with {peer}"));
            }
            self.break_stream(conn);
        }
        for leader in r.dial {
            let conn = self.next_stream;
            self.next_stream += 1;
            let d = 1 + self.rng.below(4);
            if self.reachable(id, leader) {
                self.streams.insert(conn, Stream { dialer: id, acceptor: leader, open: true, last: [0, 0] });
                self.schedule(d, What::Input(id, Input::Connected { peer: leader, conn }));
            } else {
                self.schedule(d, What::Input(id, Input::Disconnected { peer: leader, conn }));
            }
        }
        for (peer, conn) in r.snapshots {
            let d = 2 + self.rng.below(20);
            self.schedule(d, What::Snapshot(id, peer, conn));
            self.stats.snapshots_sent += 1;
        }
        self.check_leaders();
    }

    fn check_applied(&mut self, id: NodeId, a: Applied) {
        let h = self.hosts.get_mut(&id).unwrap();
        match a {
            Applied::Snapshot(z) => h.applied = z,
            Applied::Batch(b) => {
                if b.is_empty() {
                    if b.last != h.applied {
                        self.violation
                            .get_or_insert(format!("node {id}: empty batch at {:#x} after {:#x}", b.last, h.applied));
                    }
                    return;
                }
                if !zab::follows(h.applied, b.first) {
                    let v = format!("node {id}: applied {:#x}..{:#x} after {:#x}", b.first, b.last, h.applied);
                    self.violation.get_or_insert(v);
                }
                let prev = h.applied;
                h.applied = b.last;
                if *self.pred.entry(b.last).or_insert(prev) != prev {
                    let v = format!("node {id}: applied {:#x} after {prev:#x}, another node after another", b.last);
                    self.violation.get_or_insert(v);
                }
                let digest = fnv(&b.bytes);
                match self.history.get(&b.last) {
                    None => {
                        self.history.insert(b.last, (b.first, digest));
                    }
                    Some(&(first, d)) if (first, d) != (b.first, digest) => {
                        let v = format!("node {id}: applied a different record at {:#x} than another node", b.last);
                        self.violation.get_or_insert(v);
                    }
                    _ => {}
                }
            }
        }
    }

    fn check_leaders(&mut self) {
        for (&id, h) in &self.hosts {
            let Some(n) = &h.node else { continue };
            let s = n.status();
            if s.state == PeerState::Leading && s.serving {
                match self.leaders.get(&s.epoch) {
                    Some(&other) if other != id => {
                        self.violation.get_or_insert(format!("two leaders in epoch {}: {other} and {id}", s.epoch));
                    }
                    None => {
                        self.leaders.insert(s.epoch, id);
                        self.stats.elections += 1;
                        self.stats.max_epoch = self.stats.max_epoch.max(s.epoch);
                    }
                    _ => {}
                }
            }
        }
    }

    fn deliver_to_clients(&mut self, id: NodeId, c: Committed) {
        let h = self.hosts.get_mut(&id).unwrap();
        for r in &c.parts[0].replies {
            let Some(cl) = h.clients.get_mut(&r.conn) else { continue };
            match r.kind {
                ReplyKind::Connected { session, .. } => {
                    cl.session = session;
                    cl.connected = true;
                }
                ReplyKind::ConnectRefused => {
                    h.clients.remove(&r.conn);
                }
                ReplyKind::Write { wseq, .. } => {
                    let Some(xid) = cl.inflight.remove(&wseq) else { continue };
                    let f = &r.frame;
                    let rxid = i32::from_be_bytes(f[4..8].try_into().unwrap());
                    let zxid = i64::from_be_bytes(f[8..16].try_into().unwrap());
                    let err = i32::from_be_bytes(f[16..20].try_into().unwrap());
                    assert_eq!(rxid, xid, "replies keep request order");
                    if err == 0 {
                        self.acked.insert(zxid, cl.session);
                        self.stats.acked += 1;
                    }
                }
            }
        }
        for conn in &c.parts[0].close {
            h.clients.remove(conn);
        }
        for s in &c.closed_sessions {
            h.clients.retain(|_, cl| cl.session != *s);
        }
    }

    fn client_actions(&mut self) {
        let id = self.ids[self.rng.below(self.ids.len() as u64) as usize];
        let t = now(self.now);
        let h = self.hosts.get_mut(&id).unwrap();
        let Some(node) = h.node.as_mut() else { return };
        if h.clients.len() < 3 && self.rng.chance(0.3) {
            let conn = h.next_conn;
            h.next_conn += 1;
            h.clients.insert(
                conn,
                Client { session: 0, next_wseq: 0, inflight: BTreeMap::new(), connected: false, next_xid: 1 },
            );
            let req = ConnectRequest {
                protocol_version: 0,
                last_zxid_seen: 0,
                timeout: 1000,
                session_id: 0,
                passwd: vec![0; 16],
                read_only: Some(false),
            };
            node.shard_message(ToCommit::Connect { shard: 0, conn, req }, t);
        } else {
            let conns: Vec<u64> = h.clients.iter().filter(|(_, c)| c.connected).map(|(&k, _)| k).collect();
            if conns.is_empty() {
                return;
            }
            let conn = conns[self.rng.below(conns.len() as u64) as usize];
            let cl = h.clients.get_mut(&conn).unwrap();
            let key = format!("/k{}", self.rng.below(12));
            let req = match self.rng.below(10) {
                0..=3 => Request::Create(CreateRequest {
                    path: key,
                    data: Some(Bytes::from(format!("{}-{}", self.seed, self.now))),
                    acl: vec![Acl::world(31)],
                    flags: if self.rng.chance(0.3) { 1 } else { 0 },
                    ttl: -1,
                    op: 1,
                }),
                4..=6 => Request::SetData { path: key, data: Some(Bytes::from(vec![7; 40])), version: -1 },
                7 => Request::Delete { path: key, version: -1 },
                8 => Request::Sync { path: "/".into() },
                _ => {
                    node.shard_message(ToCommit::Touch { sessions: vec![cl.session] }, t);
                    return;
                }
            };
            let (wseq, xid) = (cl.next_wseq, cl.next_xid);
            cl.next_wseq += 1;
            cl.next_xid += 1;
            cl.inflight.insert(wseq, xid);
            let auth = Arc::new(AuthInfo::new("127.0.0.1".parse().unwrap()));
            let session = cl.session;
            let m = ToCommit::Write { shard: 0, conn, wseq, session, xid, req, auth, fence: self.rng.chance(0.1) };
            node.shard_message(m, t);
            // Active sessions stay alive.
            node.shard_message(ToCommit::Touch { sessions: vec![session] }, t);
        }
        self.drain(id);
    }

    fn faults(&mut self) {
        let chaos = self.opts.chaos;
        if self.rng.chance(0.0015 * chaos) {
            let id = self.ids[self.rng.below(self.ids.len() as u64) as usize];
            if self.hosts[&id].node.is_some() {
                self.crash(id);
            }
        }
        if self.side.is_empty() && self.rng.chance(0.0008 * chaos) {
            for &id in &self.ids {
                let s = self.rng.below(2) as u8;
                self.side.insert(id, s);
            }
            self.stats.partitions += 1;
            let sides = format!("{:?}", self.side);
            self.note(format!("partition {sides}"));
            let cut: Vec<ConnId> = self
                .streams
                .iter()
                .filter(|(_, s)| s.open && self.side.get(&s.dialer) != self.side.get(&s.acceptor))
                .map(|(&c, _)| c)
                .collect();
            for c in cut {
                self.break_stream(c);
            }
        } else if !self.side.is_empty() && self.rng.chance(0.002) {
            self.side.clear();
            self.note("partition healed".into());
        }
        if self.rng.chance(0.002 * chaos) {
            // A local snapshot of the committed state, then a purge of the log before it.
            let id = self.ids[self.rng.below(self.ids.len() as u64) as usize];
            let h = self.hosts.get_mut(&id).unwrap();
            if let Some(n) = &h.node {
                let (tree, sessions, next) = n.snapshot_source();
                let z = tree.last_zxid();
                h.disk.snapshot = Some(corezk::snapshot::encode(&tree, &sessions, next));
                h.disk.log.retain(|b| b.last > z);
            }
        }
    }

    fn step_event(&mut self, e: Event) {
        match e.what {
            What::Input(id, input) => {
                if let Input::Message { conn, .. } = &input {
                    // A closed stream delivers nothing more.
                    if !self.streams.get(conn).is_some_and(|s| s.open) {
                        return;
                    }
                }
                let t = now(self.now);
                let Some(n) = self.hosts.get_mut(&id).and_then(|h| h.node.as_mut()) else { return };
                n.peer(input, t);
                self.drain(id);
            }
            What::DiskDone(id, seq) => {
                let h = self.hosts.get_mut(&id).unwrap();
                let Some(n) = h.node.as_mut() else { return };
                if h.disk.pending.front().map(|p| p.0) != Some(seq) {
                    return;
                }
                let (seq, op, _) = h.disk.pending.pop_front().unwrap();
                apply_storage(&mut h.disk, op);
                n.peer(Input::Persisted { upto: seq }, now(self.now));
                self.drain(id);
            }
            What::Snapshot(id, peer, conn) => {
                let t = now(self.now);
                let Some(n) = self.hosts.get_mut(&id).and_then(|h| h.node.as_mut()) else { return };
                let (tree, sessions, next) = n.snapshot_source();
                let bytes = corezk::snapshot::encode(&tree, &sessions, next);
                n.snapshot_ready(peer, conn, tree.last_zxid(), Bytes::from(bytes), tree.epochs(), t);
                self.drain(id);
            }
        }
    }

    /// Runs to the end; returns the first violation, if any.
    pub fn run(&mut self) -> Result<(), String> {
        let end = self.opts.run_ms + self.opts.heal_ms;
        while self.now < end && self.violation.is_none() {
            while self.events.peek().is_some_and(|e| e.at <= self.now) {
                let e = self.events.pop().unwrap();
                self.step_event(e);
                if self.violation.is_some() {
                    break;
                }
            }
            if self.now.is_multiple_of(TICK_MS) {
                for id in self.ids.clone() {
                    let t = now(self.now);
                    let h = self.hosts.get_mut(&id).unwrap();
                    match h.node.as_mut() {
                        Some(n) => {
                            n.tick(t);
                            self.drain(id);
                        }
                        None if self.now >= h.down_until => {
                            self.note(format!("restart {id}"));
                            self.boot(id);
                        }
                        None => {}
                    }
                }
            }
            let healing = self.now >= self.opts.run_ms;
            if healing && !self.side.is_empty() {
                self.side.clear();
                self.note("partition healed (end)".into());
            }
            if !healing {
                self.faults();
            }
            // Load goes on while healing, then stops so the end state is quiet.
            let quiet = self.now + 1500 >= end;
            if !quiet && self.rng.chance(if healing { 0.05 } else { 0.2 }) {
                self.client_actions();
            }
            self.now += 1;
        }
        if let Some(v) = &self.violation {
            return Err(v.clone());
        }
        self.final_checks()
    }

    fn final_checks(&mut self) -> Result<(), String> {
        let leaders: Vec<NodeId> = self
            .hosts
            .iter()
            .filter(|(_, h)| {
                h.node.as_ref().is_some_and(|n| n.status().state == PeerState::Leading && n.status().serving)
            })
            .map(|(&id, _)| id)
            .collect();
        if leaders.len() != 1 {
            return Err(format!("after healing, {} serving leaders: {leaders:?}", leaders.len()));
        }
        let leader = leaders[0];
        let commit = self.hosts[&leader].node.as_ref().unwrap().status().commit;
        let mut digests = BTreeMap::new();
        for (&id, h) in &self.hosts {
            let n = h.node.as_ref().ok_or(format!("node {id} is down after healing"))?;
            let s = n.status();
            if !s.serving || s.applied != commit {
                return Err(format!(
                    "node {id} after healing: serving {} applied {:#x}, commit {commit:#x}",
                    s.serving, s.applied
                ));
            }
            let st = n.state();
            digests.insert(id, (tree_digest(&st.tree), st.sessions.clone(), st.tree.ephemeral_sessions()));
            // The tree is a replay of this node's own durable log (and snapshot).
            let replay = replay_disk(&h.disk, s.applied);
            if tree_digest(&replay) != tree_digest(&st.tree) {
                return Err(format!("node {id}: its tree differs from a replay of its own log"));
            }
        }
        let first = digests.values().next().unwrap().clone();
        if let Some((id, _)) = digests.iter().find(|(_, d)| **d != first) {
            return Err(format!("node {id}: tree, sessions or ephemerals differ from node 1's at the same zxid"));
        }
        // The committed history: the chain of records back from the commit point.
        let mut chain = Vec::new();
        let mut at = commit;
        while at > 0 {
            let Some(&(first, _)) = self.history.get(&at) else { break };
            chain.push((first, at));
            at = self.pred.get(&at).copied().unwrap_or(0);
        }
        for (&z, &session) in &self.acked {
            if !chain.iter().any(|&(f, l)| f <= z && z <= l) && z > at {
                return Err(format!(
                    "acknowledged write at {z:#x} (session {session:#x}) is not in the committed history"
                ));
            }
        }
        Ok(())
    }
}

fn apply_storage(d: &mut Disk, op: Storage) {
    match op {
        Storage::Append(b) => d.log.push(b),
        Storage::Truncate { after } => d.log.retain(|b| b.last <= after),
        Storage::Snapshot { bytes, .. } => {
            d.snapshot = Some(bytes.to_vec());
            d.log.clear();
        }
        Storage::Epochs { accepted_epoch, accepted_leader, current_epoch } => {
            d.epochs = (accepted_epoch, accepted_leader, current_epoch)
        }
    }
}

/// The tree a disk holds up to `upto`: its snapshot, then its records.
fn replay_disk(d: &Disk, upto: Zxid) -> Tree {
    let snapshot = d.snapshot.as_ref().map(|b| corezk::snapshot::decode(b).expect("a snapshot decodes"));
    let mut state = corezk::node::State::default();
    if let Some(s) = snapshot {
        state.tree = s.tree;
    }
    let (mut trig, mut closed) = (Vec::new(), Vec::new());
    for b in &d.log {
        if b.last <= state.tree.last_zxid() || b.last > upto {
            continue;
        }
        let rec = corezk::record::decode(&b.bytes).expect("a logged record decodes");
        for t in &rec.txns {
            state.apply(t, &SECRET, &mut trig, &mut closed);
        }
    }
    state.tree
}

/// The seeds a CI run covers, from `SIM_SEEDS` (count) and `SIM_SEED` (one seed to replay).
pub fn seeds(default_count: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("SIM_SEED") {
        return vec![s.parse().expect("SIM_SEED is a number")];
    }
    let n = std::env::var("SIM_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(default_count);
    let base: u64 = std::env::var("SIM_SEED_BASE").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    (base..base + n).collect()
}
