//! The sequencer: the commit core's decision logic. It settles connects, orders writes into
//! transactions with zxids, applies them to the authoritative tree, expires sessions, reaps
//! containers and TTL nodes, and assembles the committed batch for the shards.
//!
//! Pure: time and session passwords come in as arguments; it never touches a channel, a socket,
//! a clock or a random source. The runtime's `commit` module drives it.

use crate::commit::msg::{Committed, Reply, ReplyKind, ShardPart, ToCommit};
use crate::config::Config;
use crate::prep::{self, reply::write_reply, PrepCtx};
use crate::proto::codes::err;
use crate::proto::{encode_connect_response, reply_empty, ConnectRequest, Request};
use crate::session::{self, negotiate_timeout, SessionTable};
use crate::tree::{Kind, Tree};
use crate::txn::{Txn, TxnBody, TxnOp};
use crate::watch::ConnId;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Time as the sequencer sees it: a monotonic clock for liveness, wall time for znode stats.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono_ms: u64,
    pub wall_ms: i64,
}

/// Rough size of a transaction in a log record: its paths and data.
fn txn_bytes(txn: &Txn) -> usize {
    const OVERHEAD: usize = 64;
    match &txn.body {
        TxnBody::Ops { ops, .. } => ops
            .iter()
            .map(|o| {
                OVERHEAD
                    + match o {
                        TxnOp::Create { path, data, acl, .. } => {
                            path.len() + data.as_ref().map_or(0, |d| d.len()) + 32 * acl.len()
                        }
                        TxnOp::SetData { path, data } => path.len() + data.as_ref().map_or(0, |d| d.len()),
                        TxnOp::SetAcl { path, acl } => path.len() + 32 * acl.len(),
                        TxnOp::Delete { path } | TxnOp::Check { path } => path.len(),
                    }
            })
            .sum(),
        _ => OVERHEAD,
    }
}

pub struct Sequencer {
    tree: Tree,
    sessions: SessionTable,
    /// Which connection each session is attached to.
    owners: BTreeMap<i64, (usize, ConnId)>,
    last_zxid: i64,
    epoch: i64,
    timeout_bounds: (i32, i32),
    extended_types: bool,
    container_max_per_minute: u32,
    container_check_interval_ms: u64,
    // The batch being assembled.
    triggers: Vec<(i64, crate::tree::Trigger)>,
    closed: Vec<i64>,
    parts: Vec<ShardPart>,
    dirty: bool,
    /// Transactions of the batch being assembled, for the log.
    txns: Vec<Txn>,
    /// Batches ended by a fence, waiting for the logger (oldest first).
    sealed: std::collections::VecDeque<(Committed, Vec<Txn>)>,
    /// Requests folded into the batch being assembled, and the bytes of their payloads.
    pending: usize,
    pending_bytes: usize,
    /// The log cannot be written: writes are refused until it recovers.
    disk_failed: bool,
    secret: [u8; 16],
    stats_scratch: Vec<Option<crate::proto::Stat>>,
    trig_scratch: Vec<crate::tree::Trigger>,
}

impl Sequencer {
    pub fn new(cfg: &Config, shards: usize, first_session_id: i64, secret: [u8; 16]) -> Sequencer {
        Sequencer {
            txns: Vec::new(),
            sealed: std::collections::VecDeque::new(),
            pending: 0,
            pending_bytes: 0,
            disk_failed: false,
            secret,
            tree: Tree::new(),
            sessions: SessionTable::new(first_session_id),
            owners: BTreeMap::new(),
            last_zxid: 0,
            epoch: 0,
            timeout_bounds: cfg.session_timeout_bounds(),
            extended_types: cfg.extended_types,
            container_max_per_minute: cfg.container_max_per_minute,
            container_check_interval_ms: cfg.container_check_interval_ms.max(1),
            triggers: Vec::new(),
            closed: Vec::new(),
            parts: vec![ShardPart::default(); shards],
            dirty: false,
            stats_scratch: Vec::new(),
            trig_scratch: Vec::new(),
        }
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// Installs recovered state: the tree at its last zxid and the sessions that were open
    /// (each gets a fresh liveness deadline from `now`).
    pub fn restore(&mut self, tree: Tree, sessions: &[(i64, i32)], now: Now) {
        self.last_zxid = tree.last_zxid() & 0xffff_ffff;
        self.epoch = tree.last_zxid() >> 32;
        self.tree = tree;
        for &(id, timeout) in sessions {
            self.sessions.insert(id, timeout, session::password(&self.secret, id), now.mono_ms);
            self.sessions.ensure_next_above(id);
        }
    }

    /// Open sessions as a snapshot records them: (id, timeout, password).
    pub fn session_list(&self) -> Vec<(i64, i32, [u8; 16])> {
        self.sessions.iter().map(|s| (s.id, s.timeout_ms, s.passwd)).collect()
    }

    pub fn next_session_id(&self) -> i64 {
        self.sessions.next_id()
    }

    /// Whether the batches not yet taken hold transactions (or their watch triggers).
    pub fn has_transactions(&self) -> bool {
        !self.sealed.is_empty() || !self.txns.is_empty() || !self.triggers.is_empty() || !self.closed.is_empty()
    }

    pub fn shard_count(&self) -> usize {
        self.parts.len()
    }

    /// Requests folded into the batch being assembled.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Approximate payload bytes (data, paths) of the transactions in the batch being assembled.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// While set, writes and new sessions are refused (the log cannot be written).
    pub fn set_disk_failed(&mut self, failed: bool) {
        self.disk_failed = failed;
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    fn next_zxid(&mut self) -> i64 {
        self.last_zxid += 1;
        assert!(self.last_zxid < (1 << 32), "zxid counter overflow needs a new epoch");
        (self.epoch << 32) | self.last_zxid
    }

    fn reply(&mut self, shard: usize, conn: ConnId, frame: bytes::Bytes, kind: ReplyKind) {
        self.parts[shard].replies.push(Reply { conn, frame, kind });
        self.dirty = true;
    }

    /// Applies `body` as a transaction of `session`; returns the zxid shown in the reply and
    /// leaves the per-op stats in `stats_scratch`.
    fn commit_txn(&mut self, session: i64, body: &TxnBody, now: Now) -> i64 {
        let zxid = if matches!(body, TxnBody::Barrier) { self.tree.last_zxid() } else { self.next_zxid() };
        let txn = Txn { zxid, time: now.wall_ms, session, body: body.clone() };
        self.stats_scratch.clear();
        self.trig_scratch.clear();
        self.tree.apply(&txn, &mut self.trig_scratch, &mut self.stats_scratch);
        self.triggers.extend(self.trig_scratch.drain(..).map(|t| (zxid, t)));
        self.dirty = true;
        if txn.consumes_zxid() {
            self.pending_bytes += txn_bytes(&txn);
            self.txns.push(txn);
        }
        zxid
    }

    /// Handles one message from a shard.
    pub fn handle(&mut self, msg: ToCommit, now: Now) {
        if !matches!(msg, ToCommit::Touch { .. }) {
            self.pending += 1;
        }
        match msg {
            ToCommit::Touch { sessions } => {
                for s in sessions {
                    self.sessions.touch(s, now.mono_ms);
                }
            }
            ToCommit::Connect { shard, conn, req } => self.connect(shard, conn, req, now),
            ToCommit::Write { shard, conn, wseq, session, xid, req, auth, fence } => {
                if fence {
                    self.fence();
                }
                if !self.sessions.touch(session, now.mono_ms) {
                    let frame = reply_empty(xid, self.tree.last_zxid(), err::SESSION_EXPIRED);
                    self.reply(shard, conn, frame, ReplyKind::Write { wseq, close: false });
                    return;
                }
                if self.disk_failed {
                    let frame = reply_empty(xid, self.tree.last_zxid(), err::SYSTEM_ERROR);
                    self.reply(shard, conn, frame, ReplyKind::Write { wseq, close: false });
                    return;
                }
                let ctx = PrepCtx { session, auth: &auth, extended_types: self.extended_types };
                let body = prep::prep_write(&self.tree, &req, &ctx);
                let closing = matches!(body, TxnBody::CloseSession);
                if closing {
                    self.sessions.set_closing(session);
                }
                let zxid = self.commit_txn(session, &body, now);
                let frame = write_reply(xid, zxid, &req, &body, &self.stats_scratch);
                if closing {
                    self.sessions.remove(session);
                    self.owners.remove(&session);
                    self.closed.push(session);
                }
                self.reply(shard, conn, frame, ReplyKind::Write { wseq, close: closing });
            }
        }
    }

    fn connect(&mut self, shard: usize, conn: ConnId, req: ConnectRequest, now: Now) {
        if req.last_zxid_seen > self.tree.last_zxid() {
            // The client has seen a newer state than ours: refuse without an answer.
            self.reply(shard, conn, bytes::Bytes::new(), ReplyKind::ConnectRefused);
            return;
        }
        let (min, max) = self.timeout_bounds;
        let timeout = negotiate_timeout(req.timeout, min, max);
        if req.session_id == 0 {
            if self.disk_failed {
                // A new session is a transaction, and the log cannot take one now.
                self.reply(shard, conn, bytes::Bytes::new(), ReplyKind::ConnectRefused);
                return;
            }
            let id = self.sessions.allocate_id();
            let pw = session::password(&self.secret, id);
            self.sessions.insert(id, timeout, pw, now.mono_ms);
            self.owners.insert(id, (shard, conn));
            self.commit_txn(id, &TxnBody::CreateSession { timeout }, now);
            let frame = encode_connect_response(timeout, id, &pw, req.read_only.map(|_| false));
            self.reply(shard, conn, frame, ReplyKind::Connected { session: id, timeout });
            return;
        }
        match self.sessions.reattach(req.session_id, &req.passwd, timeout, now.mono_ms) {
            Some(pw) => {
                if let Some((s, c)) = self.owners.insert(req.session_id, (shard, conn)) {
                    if (s, c) != (shard, conn) {
                        self.parts[s].close.push(c);
                    }
                }
                let frame = encode_connect_response(timeout, req.session_id, &pw, req.read_only.map(|_| false));
                self.reply(shard, conn, frame, ReplyKind::Connected { session: req.session_id, timeout });
            }
            None => {
                let frame = encode_connect_response(0, 0, &[0; 16], req.read_only.map(|_| false));
                self.reply(shard, conn, frame, ReplyKind::ConnectRefused);
            }
        }
    }

    /// Expires sessions idle past their timeout: each is a closeSession transaction.
    pub fn expire_sessions(&mut self, now: Now) {
        for id in self.sessions.expired(now.mono_ms) {
            self.sessions.set_closing(id);
            self.commit_txn(id, &TxnBody::CloseSession, now);
            self.sessions.remove(id);
            if let Some((s, c)) = self.owners.remove(&id) {
                self.parts[s].close.push(c);
            }
            self.closed.push(id);
        }
    }

    /// Deletes empty containers that once had a child and childless TTL nodes past their TTL,
    /// at most the per-pass share of `znode.container.maxPerMinute`.
    pub fn reap(&mut self, now: Now) {
        let per_pass =
            ((self.container_max_per_minute as u64 * self.container_check_interval_ms) / 60_000).max(1) as usize;
        let victims: Vec<Arc<str>> = self
            .tree
            .reapable()
            .filter(|p| {
                let Some(n) = self.tree.get(p) else { return false };
                if n.num_children() > 0 {
                    return false;
                }
                match n.kind() {
                    Kind::Container => n.cversion > 0,
                    Kind::Ttl(ttl) => now.wall_ms - n.mtime > ttl,
                    _ => false,
                }
            })
            .take(per_pass)
            .cloned()
            .collect();
        for p in victims {
            let body = TxnBody::Ops { ops: vec![TxnOp::Delete { path: p }], multi: false };
            self.commit_txn(0, &body, now);
        }
    }

    /// Takes the oldest sealed batch, or else the batch assembled so far if anything happened,
    /// with its transactions (which must be durable before the batch is published).
    pub fn take_batch(&mut self) -> Option<(Committed, Vec<Txn>)> {
        if let Some(b) = self.sealed.pop_front() {
            return Some(b);
        }
        let b = self.seal_open()?;
        self.pending = 0;
        self.pending_bytes = 0;
        Some(b)
    }

    /// Ends the open batch here: what follows goes into a later batch. A write that a queued
    /// read of its session must not see asks for this, so the read can be served from the
    /// snapshot at the end of the earlier batch.
    fn fence(&mut self) {
        if let Some(b) = self.seal_open() {
            self.sealed.push_back(b);
        }
    }

    fn seal_open(&mut self) -> Option<(Committed, Vec<Txn>)> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        let shards = self.parts.len();
        let txns = std::mem::take(&mut self.txns);
        Some((
            Committed {
                tree: Arc::new(self.tree.clone()),
                triggers: std::mem::take(&mut self.triggers),
                closed_sessions: std::mem::take(&mut self.closed),
                parts: std::mem::replace(&mut self.parts, vec![ShardPart::default(); shards]),
                session_count: self.sessions.len(),
            },
            txns,
        ))
    }

    /// Whether a request needs the commit core (writes, sync, closeSession).
    pub fn is_write(req: &Request) -> bool {
        matches!(
            req,
            Request::Create(_)
                | Request::Delete { .. }
                | Request::SetData { .. }
                | Request::SetAcl { .. }
                | Request::Multi(_)
                | Request::Sync { .. }
                | Request::CloseSession
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Acl, CreateRequest};
    use crate::tree::acl::AuthInfo;

    fn now(ms: u64) -> Now {
        Now { mono_ms: ms, wall_ms: 1_700_000_000_000 + ms as i64 }
    }

    fn connect(seq: &mut Sequencer, sid: i64, pw: [u8; 16], last: i64) -> Reply {
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: last,
            timeout: 1,
            session_id: sid,
            passwd: pw.to_vec(),
            read_only: Some(false),
        };
        seq.handle(ToCommit::Connect { shard: 0, conn: 1, req }, now(0));
        seq.take_batch().unwrap().0.parts[0].replies.pop().unwrap()
    }

    #[test]
    fn sessions_connect_expire_and_delete_ephemerals() {
        let cfg = Config::default();
        let mut seq = Sequencer::new(&cfg, 1, 100, [3; 16]);
        let r = connect(&mut seq, 0, [0; 16], 0);
        let ReplyKind::Connected { session, timeout } = r.kind else { panic!("{r:?}") };
        assert_eq!(timeout, 4000, "clamped to 2 x tickTime");
        assert_eq!(seq.tree().last_zxid(), 1, "createSession consumes a zxid");
        let auth = Arc::new(AuthInfo::new("127.0.0.1".parse().unwrap()));
        let req = Request::Create(CreateRequest {
            path: "/e".into(),
            data: None,
            acl: vec![Acl::world(31)],
            flags: 1,
            ttl: -1,
            op: 1,
        });
        seq.handle(ToCommit::Write { shard: 0, conn: 1, wseq: 1, session, xid: 1, req, auth, fence: false }, now(10));
        assert!(seq.tree().get("/e").is_some());
        seq.take_batch();
        seq.expire_sessions(now(4000));
        assert!(seq.take_batch().is_none(), "not yet expired");
        seq.expire_sessions(now(4011));
        let (b, txns) = seq.take_batch().unwrap();
        assert_eq!(txns.len(), 1, "one closeSession txn");
        assert_eq!(b.closed_sessions, vec![session]);
        assert!(b.tree.get("/e").is_none());
        assert_eq!(b.parts[0].close, vec![1]);
        // Re-attaching the expired session gets the expired answer.
        let r = connect(&mut seq, session, session::password(&[3; 16], session), 0);
        assert_eq!(r.kind, ReplyKind::ConnectRefused);
        assert_eq!(&r.frame[4..8], &[0, 0, 0, 0], "timeout 0 marks expiry");
        // A client ahead of the server is refused without a frame.
        let r = connect(&mut seq, 0, [0; 16], 1 << 40);
        assert!(r.frame.is_empty());
    }
}
