//! The sequencer: the leader's proposer. It settles connects, orders writes into transactions
//! with zxids, applies them to its own speculative tree (the overlay every later write is
//! validated against), expires sessions, reaps containers and TTL nodes, and seals batches:
//! the transactions, the answers to the requests they settle, and the tree after them.
//!
//! Pure: time and session passwords come in as arguments; it never touches a channel, a socket,
//! a clock or a random source. The node layer drives it while this node leads; its state is
//! thrown away when leadership ends (the committed tree is the truth then).

use crate::config::Config;
use crate::prep::{self, reply::write_reply, PrepCtx};
use crate::proto::codes::err;
use crate::proto::{encode_connect_response, reply_empty, ConnectRequest, Request};
use crate::session::{self, negotiate_timeout, SessionTable};
use crate::tree::acl::AuthInfo;
use crate::tree::{Kind, Tree, Trigger};
use crate::txn::{Answer, AnswerKind, Origin, Txn, TxnBody, TxnOp};
use std::collections::VecDeque;
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

/// A request for the sequencer, from this node's clients or a learner's.
#[derive(Debug, Clone)]
pub enum Proposal {
    /// A ConnectRequest: a new session (id 0) or a re-attach.
    Connect { origin: Origin, req: ConnectRequest },
    /// A write, sync or closeSession in its session's order. `fence`: a read of this session is
    /// queued before it, so it must land in a later batch than the writes before that read.
    Write { origin: Origin, session: i64, xid: i32, req: Request, auth: Arc<AuthInfo>, fence: bool },
    /// Sessions that saw traffic.
    Touch { sessions: Vec<i64> },
}

/// A sealed batch: what the leader proposes and, once committed, publishes.
#[derive(Clone)]
pub struct Sealed {
    pub txns: Vec<Txn>,
    pub answers: Vec<Answer>,
    /// The tree after the batch.
    pub tree: Arc<Tree>,
    /// Watch triggers in zxid order, with the zxid that fired them.
    pub triggers: Vec<(i64, Trigger)>,
    /// Sessions closed or expired in this batch.
    pub closed: Vec<i64>,
    pub session_count: usize,
}

pub struct Sequencer {
    tree: Tree,
    sessions: SessionTable,
    /// The zxid counter within `epoch`.
    counter: u32,
    epoch: u32,
    timeout_bounds: (i32, i32),
    extended_types: bool,
    container_max_per_minute: u32,
    container_check_interval_ms: u64,
    // The batch being assembled.
    triggers: Vec<(i64, Trigger)>,
    closed: Vec<i64>,
    answers: Vec<Answer>,
    dirty: bool,
    txns: Vec<Txn>,
    /// Batches ended by a fence, waiting to be taken (oldest first).
    sealed: VecDeque<Sealed>,
    /// Requests folded into the batch being assembled, and the bytes of their payloads.
    pending: usize,
    pending_bytes: usize,
    /// The log cannot be written: writes are refused until it recovers.
    disk_failed: bool,
    secret: [u8; 16],
    stats_scratch: Vec<Option<crate::proto::Stat>>,
    trig_scratch: Vec<Trigger>,
}

impl Sequencer {
    /// A proposer for `epoch`, starting from the committed `tree` and `sessions`
    /// (`(id, timeout, passwd)`; each gets a fresh liveness deadline from `now`).
    pub fn new(
        cfg: &Config,
        tree: Tree,
        sessions: &[(i64, i32, [u8; 16])],
        first_session_id: i64,
        epoch: u32,
        secret: [u8; 16],
        now: Now,
    ) -> Sequencer {
        let mut table = SessionTable::new(first_session_id);
        for &(id, timeout, passwd) in sessions {
            table.insert(id, timeout, passwd, now.mono_ms);
            table.ensure_next_above(id);
        }
        assert!(((tree.last_zxid() >> 32) as u32) < epoch, "a new epoch starts above the history");
        Sequencer {
            tree,
            sessions: table,
            counter: 0,
            epoch,
            timeout_bounds: cfg.session_timeout_bounds(),
            extended_types: cfg.extended_types,
            container_max_per_minute: cfg.container_max_per_minute,
            container_check_interval_ms: cfg.container_check_interval_ms.max(1),
            triggers: Vec::new(),
            closed: Vec::new(),
            answers: Vec::new(),
            dirty: false,
            txns: Vec::new(),
            sealed: VecDeque::new(),
            pending: 0,
            pending_bytes: 0,
            disk_failed: false,
            secret,
            stats_scratch: Vec::new(),
            trig_scratch: Vec::new(),
        }
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// The zxid counter used so far in this epoch.
    pub fn counter(&self) -> u32 {
        self.counter
    }

    /// Open sessions as a snapshot records them: (id, timeout, password).
    pub fn session_list(&self) -> Vec<(i64, i32, [u8; 16])> {
        self.sessions.iter().map(|s| (s.id, s.timeout_ms, s.passwd)).collect()
    }

    pub fn next_session_id(&self) -> i64 {
        self.sessions.next_id()
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
        self.counter = self.counter.checked_add(1).expect("the node ends the epoch before the zxid counter overflows");
        crate::zab::zxid(self.epoch, self.counter)
    }

    fn answer(&mut self, origin: Origin, kind: AnswerKind, frame: bytes::Bytes) {
        self.answers.push(Answer { origin, kind, frame });
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

    /// Handles one request.
    pub fn handle(&mut self, p: Proposal, now: Now) {
        if !matches!(p, Proposal::Touch { .. }) {
            self.pending += 1;
        }
        match p {
            Proposal::Touch { sessions } => {
                for s in sessions {
                    self.sessions.touch(s, now.mono_ms);
                }
            }
            Proposal::Connect { origin, req } => self.connect(origin, req, now),
            Proposal::Write { origin, session, xid, req, auth, fence } => {
                if fence {
                    self.fence();
                }
                let refuse = if !self.sessions.touch(session, now.mono_ms) {
                    Some(err::SESSION_EXPIRED)
                } else if self.disk_failed {
                    Some(err::SYSTEM_ERROR)
                } else {
                    None
                };
                if let Some(code) = refuse {
                    let frame = reply_empty(xid, self.tree.last_zxid(), code);
                    return self.answer(origin, AnswerKind::Write { close: false }, frame);
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
                    self.closed.push(session);
                }
                self.answer(origin, AnswerKind::Write { close: closing }, frame);
            }
        }
    }

    fn connect(&mut self, origin: Origin, req: ConnectRequest, now: Now) {
        let (min, max) = self.timeout_bounds;
        let timeout = negotiate_timeout(req.timeout, min, max);
        let read_only = req.read_only.map(|_| false);
        if req.session_id == 0 {
            if self.disk_failed {
                // A new session is a transaction, and the log cannot take one now.
                return self.answer(origin, AnswerKind::Refused, bytes::Bytes::new());
            }
            let id = self.sessions.allocate_id();
            let passwd = session::password(&self.secret, id);
            self.sessions.insert(id, timeout, passwd, now.mono_ms);
            self.commit_txn(id, &TxnBody::CreateSession { timeout, passwd }, now);
            let frame = encode_connect_response(timeout, id, &passwd, read_only);
            return self.answer(origin, AnswerKind::Connected { session: id, timeout }, frame);
        }
        match self.sessions.reattach(req.session_id, &req.passwd, timeout, now.mono_ms) {
            Some(pw) => {
                let frame = encode_connect_response(timeout, req.session_id, &pw, read_only);
                self.answer(origin, AnswerKind::Connected { session: req.session_id, timeout }, frame);
            }
            None => {
                let frame = encode_connect_response(0, 0, &[0; 16], read_only);
                self.answer(origin, AnswerKind::Refused, frame);
            }
        }
    }

    /// Expires sessions idle past their timeout: each is a closeSession transaction.
    pub fn expire_sessions(&mut self, now: Now) {
        for id in self.sessions.expired(now.mono_ms) {
            self.sessions.set_closing(id);
            self.commit_txn(id, &TxnBody::CloseSession, now);
            self.sessions.remove(id);
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

    /// Takes the oldest sealed batch, or else the batch assembled so far if anything happened.
    pub fn take_batch(&mut self) -> Option<Sealed> {
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

    fn seal_open(&mut self) -> Option<Sealed> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        Some(Sealed {
            txns: std::mem::take(&mut self.txns),
            answers: std::mem::take(&mut self.answers),
            tree: Arc::new(self.tree.clone()),
            triggers: std::mem::take(&mut self.triggers),
            closed: std::mem::take(&mut self.closed),
            session_count: self.sessions.len(),
        })
    }

    /// Whether a request needs the leader (writes, sync, closeSession).
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

    const ORIGIN: Origin = Origin { server: 1, rid: 7 };

    fn connect(seq: &mut Sequencer, sid: i64, pw: [u8; 16]) -> Answer {
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout: 1,
            session_id: sid,
            passwd: pw.to_vec(),
            read_only: Some(false),
        };
        seq.handle(Proposal::Connect { origin: ORIGIN, req }, now(0));
        seq.take_batch().unwrap().answers.pop().unwrap()
    }

    #[test]
    fn sessions_connect_expire_and_delete_ephemerals() {
        let cfg = Config::default();
        let mut seq = Sequencer::new(&cfg, Tree::new(), &[], 100, 1, [3; 16], now(0));
        let a = connect(&mut seq, 0, [0; 16]);
        let AnswerKind::Connected { session, timeout } = a.kind else { panic!("{a:?}") };
        assert_eq!(a.origin, ORIGIN);
        assert_eq!(timeout, 4000, "clamped to 2 x tickTime");
        assert_eq!(seq.tree().last_zxid(), crate::zab::zxid(1, 1), "createSession consumes a zxid of the epoch");
        let auth = Arc::new(AuthInfo::new("127.0.0.1".parse().unwrap()));
        let req = Request::Create(CreateRequest {
            path: "/e".into(),
            data: None,
            acl: vec![Acl::world(31)],
            flags: 1,
            ttl: -1,
            op: 1,
        });
        seq.handle(Proposal::Write { origin: ORIGIN, session, xid: 1, req, auth, fence: false }, now(10));
        assert!(seq.tree().get("/e").is_some());
        seq.take_batch();
        seq.expire_sessions(now(4000));
        assert!(seq.take_batch().is_none(), "not yet expired");
        seq.expire_sessions(now(4011));
        let b = seq.take_batch().unwrap();
        assert_eq!(b.txns.len(), 1, "one closeSession txn");
        assert_eq!(b.closed, vec![session]);
        assert!(b.tree.get("/e").is_none());
        // Re-attaching the expired session gets the expired answer.
        let a = connect(&mut seq, session, session::password(&[3; 16], session));
        assert_eq!(a.kind, AnswerKind::Refused);
        assert_eq!(&a.frame[4..8], &[0, 0, 0, 0], "timeout 0 marks expiry");
    }

    #[test]
    fn a_restored_proposer_keeps_sessions_and_their_passwords() {
        let cfg = Config::default();
        let mut seq = Sequencer::new(&cfg, Tree::new(), &[(55, 4000, [9; 16])], 100, 3, [3; 16], now(0));
        assert_eq!(connect(&mut seq, 55, [1; 16]).kind, AnswerKind::Refused, "a wrong password");
        assert!(matches!(connect(&mut seq, 55, [9; 16]).kind, AnswerKind::Connected { session: 55, .. }));
    }
}
