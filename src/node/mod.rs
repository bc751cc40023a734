//! The node: one server's decisions around the ZAB machine. It routes client requests (to its
//! own proposer while it leads and serves, to the leader otherwise), turns sealed batches into
//! records and proposals, applies what ZAB commits to the committed state (the tree and the
//! sessions), routes the answers in each batch to this node's own connections, and decides
//! when clients are served at all.
//!
//! Pure: time comes in as `Now`, the disk and the network are in `NodeReady` and later inputs
//! (the ZAB Ready contract, see `zab`). The runtime (`commit`) only performs what it is told;
//! the simulator drives this same code.

pub mod msg;
pub mod recovery;
pub mod wire;

use crate::config::Config;
use crate::proto::codes::err;
use crate::proto::{reply_empty, Request};
use crate::record;
use crate::sequencer::{Now, Proposal, Sealed, Sequencer};
use crate::session;
use crate::snapshot;
use crate::tree::{Tree, Trigger};
use crate::txn::{Answer, AnswerKind, Origin, Txn, TxnBody};
use crate::watch::ConnId;
use crate::zab::msg::{Notification, QuorumMsg};
use crate::zab::{self, Apply, Batch, Input, NodeId, RoleEvent, Status, Storage, Zab, ZabConfig, Zxid};
use bytes::Bytes;
use msg::{Committed, Reply, ReplyKind, ShardPart, ToCommit};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use wire::Forward;

/// A session as a snapshot records it: (id, timeout, password).
pub type SessionEntry = (i64, i32, [u8; 16]);

/// The committed state a node has applied.
#[derive(Clone, Default)]
pub struct State {
    pub tree: Tree,
    /// Open sessions: id -> (timeout, password).
    pub sessions: BTreeMap<i64, (i32, [u8; 16])>,
    pub next_session_id: i64,
}

impl State {
    /// Applies one committed transaction (the tree and the session table). `secret` derives the
    /// password of a session created by a version 1 record (which carries none).
    pub fn apply(&mut self, txn: &Txn, secret: &[u8; 16], triggers: &mut Vec<Trigger>, closed: &mut Vec<i64>) {
        let mut stats = Vec::new();
        self.tree.apply(txn, triggers, &mut stats);
        match &txn.body {
            TxnBody::CreateSession { timeout, passwd } => {
                let pw = if *passwd == [0; 16] { session::password(secret, txn.session) } else { *passwd };
                self.sessions.insert(txn.session, (*timeout, pw));
                self.next_session_id = self.next_session_id.max(txn.session.wrapping_add(1));
            }
            TxnBody::CloseSession => {
                self.sessions.remove(&txn.session);
                closed.push(txn.session);
            }
            _ => {}
        }
    }

    pub fn session_list(&self) -> Vec<SessionEntry> {
        self.sessions.iter().map(|(&id, &(t, p))| (id, t, p)).collect()
    }
}

/// Where an answer goes on this node.
#[derive(Debug, Clone, Copy)]
struct Route {
    shard: usize,
    conn: ConnId,
    /// The connection's write number, or `None` for a connect.
    wseq: Option<u64>,
}

/// What the runtime must do after a step (see the ZAB Ready contract for the first six).
#[derive(Default)]
pub struct NodeReady {
    pub storage: Vec<(u64, Storage)>,
    pub notifications: Vec<(NodeId, Notification)>,
    pub messages: Vec<(NodeId, zab::ConnId, QuorumMsg)>,
    pub close: Vec<(NodeId, zab::ConnId)>,
    pub dial: Vec<NodeId>,
    /// Learners that need the committed state as a snapshot (`Node::snapshot_ready`).
    pub snapshots: Vec<(NodeId, zab::ConnId)>,
    /// Batches for the shards, in order.
    pub publish: Vec<Committed>,
    /// What was applied, in order: each batch (the replicated record) and each snapshot
    /// installed (as the zxid it is at). For metrics and the simulator's checks.
    pub applied: Vec<Applied>,
    /// Serving stopped: every client connection must be closed.
    pub clients_closed: bool,
    /// Serving started (`true`) or stopped (`false`).
    pub serving: Option<bool>,
    /// Read-only mode started (`true`) or ended (`false`).
    pub read_only: Option<bool>,
    /// Operator-facing lines.
    pub logs: Vec<String>,
}

/// One thing applied to the committed state.
#[derive(Debug, Clone)]
pub enum Applied {
    Batch(Arc<Batch>),
    Snapshot(Zxid),
}

/// Most client requests a learner keeps forwarded and unanswered before it stops taking more.
pub const FORWARDED_MAX: usize = 100_000;

pub struct Node {
    cfg: Config,
    id: NodeId,
    shards: usize,
    zab: Zab,
    seq: Option<Sequencer>,
    secret: [u8; 16],
    state: State,
    /// Leader: batches proposed, not yet applied, with what they publish.
    sealed: VecDeque<(Arc<Batch>, Sealed)>,
    routes: BTreeMap<u64, Route>,
    next_rid: u64,
    /// Which local connection each session is attached to.
    owners: BTreeMap<i64, (usize, ConnId)>,
    touched: BTreeSet<i64>,
    disk_failed: bool,
    now: Now,
    last_expiry_ms: u64,
    last_reap_ms: u64,
    last_touch_ms: u64,
    /// Transactions applied (the runtime snapshots every `snapCount`).
    applied_txns: u64,
    /// Connects that arrived while the node was not serving, held until it serves (an election
    /// takes milliseconds) or until their deadline (then refused, and the client tries again).
    held: VecDeque<(u64, ToCommit)>,
    /// Clients have been served since the node last stopped serving (so stopping must close
    /// their connections; before the first serving role there is nothing to close, and a
    /// connect held meanwhile must not be dropped).
    served: bool,
    /// Read-only mode (`readonlymode.enabled`): an ensemble member without a quorum serves
    /// reads to clients that allow it, in sessions of its own.
    ro: ReadOnly,
    out: NodeReady,
}

/// Read-only mode's state: when the node stopped serving, whether read-only mode is on, and
/// the local sessions it gave out (never replicated; they end with the mode).
#[derive(Default)]
struct ReadOnly {
    enabled: bool,
    not_serving_since_ms: Option<u64>,
    active: bool,
    sessions: BTreeMap<i64, (usize, ConnId)>,
    next_session: i64,
}

/// Most read-only sessions a node gives out.
const RO_SESSIONS_MAX: usize = 100_000;

/// How long a connect waits for the node to serve, and how many may wait.
const HOLD_CONNECT_MS: u64 = 2000;
const HELD_MAX: usize = 10_000;

/// How often the leader checks session expiry, and a learner reports its sessions' activity.
const EXPIRY_EVERY_MS: u64 = 100;
const TOUCH_EVERY_MS: u64 = 250;

impl Node {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &Config,
        zab_cfg: ZabConfig,
        shards: usize,
        start: zab::Start,
        state: State,
        secret: [u8; 16],
        now: Now,
    ) -> Node {
        assert!(shards > 0);
        assert_eq!(start.applied, state.tree.last_zxid(), "the state is at the applied zxid");
        let id = zab_cfg.id;
        let ensemble = zab_cfg.voters.len() + zab_cfg.observers.len() > 1;
        let mut n = Node {
            cfg: cfg.clone(),
            id,
            shards,
            zab: Zab::new(zab_cfg, start),
            seq: None,
            secret,
            state,
            sealed: VecDeque::new(),
            routes: BTreeMap::new(),
            next_rid: 1,
            owners: BTreeMap::new(),
            touched: BTreeSet::new(),
            disk_failed: false,
            now,
            last_expiry_ms: now.mono_ms,
            last_reap_ms: now.mono_ms,
            last_touch_ms: now.mono_ms,
            applied_txns: 0,
            held: VecDeque::new(),
            served: false,
            ro: ReadOnly {
                enabled: cfg.read_only_mode && ensemble,
                not_serving_since_ms: Some(now.mono_ms),
                ..ReadOnly::default()
            },
            out: NodeReady::default(),
        };
        // The first published batch gives every shard the recovered tree.
        let first = n.local_batch(Vec::new());
        n.out.publish.push(first);
        n.drain();
        n
    }

    pub fn ready(&mut self) -> NodeReady {
        std::mem::take(&mut self.out)
    }

    pub fn status(&self) -> Status {
        self.zab.status()
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Transactions applied since start.
    pub fn applied_txns(&self) -> u64 {
        self.applied_txns
    }

    /// Whether the node takes more client requests now (back-pressure on the proposer's open
    /// batch and on requests forwarded and not yet answered).
    pub fn accepting(&self) -> bool {
        match &self.seq {
            Some(s) => s.pending() < self.cfg.max_batch && s.pending_bytes() < self.cfg.max_batch_bytes,
            None => self.routes.len() < FORWARDED_MAX,
        }
    }

    /// While set, this node's clients get SystemError for writes and new sessions are refused
    /// (its log cannot be written).
    pub fn set_disk_failed(&mut self, failed: bool) {
        self.disk_failed = failed;
        if let Some(s) = &mut self.seq {
            s.set_disk_failed(failed);
        }
    }

    /// The committed state to snapshot: tree (with its epoch map), sessions, next session id.
    pub fn snapshot_source(&self) -> (Tree, Vec<SessionEntry>, i64) {
        let next = self.seq.as_ref().map_or(self.state.next_session_id, |s| s.next_session_id());
        (self.state.tree.clone(), self.state.session_list(), next.max(self.state.next_session_id))
    }

    fn part_count(&self) -> usize {
        self.shards
    }

    /// A batch for this node's shards only: replies and closes decided here, the tree as it is.
    fn local_batch(&self, parts: Vec<ShardPart>) -> Committed {
        let mut parts = parts;
        parts.resize(self.part_count(), ShardPart::default());
        Committed {
            tree: Arc::new(self.state.tree.clone()),
            triggers: Vec::new(),
            closed_sessions: Vec::new(),
            parts,
            session_count: self.state.sessions.len(),
        }
    }

    fn reply_now(&mut self, shard: usize, reply: Reply) {
        let mut parts = vec![ShardPart::default(); self.part_count()];
        parts[shard].replies.push(reply);
        let b = self.local_batch(parts);
        self.out.publish.push(b);
    }

    fn close_now(&mut self, shard: usize, conn: ConnId) {
        let mut parts = vec![ShardPart::default(); self.part_count()];
        parts[shard].close.push(conn);
        let b = self.local_batch(parts);
        self.out.publish.push(b);
    }

    /// A request from one of this node's shards.
    pub fn shard_message(&mut self, m: ToCommit, now: Now) {
        self.now = now;
        let serving = self.zab.status().serving;
        match m {
            ToCommit::Touch { sessions } => {
                if let Some(s) = &mut self.seq {
                    s.handle(Proposal::Touch { sessions }, now);
                } else if serving {
                    self.touched.extend(sessions);
                }
            }
            ToCommit::Connect { shard, conn, req } => {
                if !serving && self.ro.active && req.read_only == Some(true) {
                    return self.read_only_connect(shard, conn, &req);
                }
                if !serving && self.held.len() < HELD_MAX {
                    self.held.push_back((now.mono_ms + HOLD_CONNECT_MS, ToCommit::Connect { shard, conn, req }));
                    return;
                }
                let refused = Reply { conn, frame: Bytes::new(), kind: ReplyKind::ConnectRefused };
                // A node behind what the client has seen must not serve it; nor one that is
                // not serving, nor one whose log cannot take the createSession.
                if !serving
                    || req.last_zxid_seen > self.state.tree.last_zxid()
                    || (self.disk_failed && req.session_id == 0)
                {
                    return self.reply_now(shard, refused);
                }
                let rid = self.route(shard, conn, None);
                let origin = Origin { server: self.id, rid };
                if let Some(s) = &mut self.seq {
                    s.handle(Proposal::Connect { origin, req }, now);
                } else {
                    self.forward(&Forward::Connect { rid, req });
                }
            }
            ToCommit::Write { shard, conn, wseq, session, xid, req, auth, fence } => {
                if self.ro.sessions.contains_key(&session) {
                    return self.read_only_write(shard, conn, wseq, session, xid, &req);
                }
                if !serving {
                    return self.close_now(shard, conn);
                }
                if self.disk_failed {
                    let frame = reply_empty(xid, self.state.tree.last_zxid(), err::SYSTEM_ERROR);
                    return self.reply_now(shard, Reply { conn, frame, kind: ReplyKind::Write { wseq, close: false } });
                }
                let rid = self.route(shard, conn, Some(wseq));
                let origin = Origin { server: self.id, rid };
                if let Some(s) = &mut self.seq {
                    s.handle(Proposal::Write { origin, session, xid, req, auth, fence }, now);
                } else {
                    let auth = (*auth).clone();
                    self.forward(&Forward::Write { rid, session, xid, fence, auth, req });
                }
            }
        }
        self.flush();
    }

    fn route(&mut self, shard: usize, conn: ConnId, wseq: Option<u64>) -> u64 {
        let rid = self.next_rid;
        self.next_rid += 1;
        self.routes.insert(rid, Route { shard, conn, wseq });
        rid
    }

    fn forward(&mut self, f: &Forward) {
        if !self.zab.forward(Bytes::from(wire::encode(f))) {
            self.out.logs.push("cannot forward a request: no leader connection".into());
        }
        self.drain();
    }

    /// A peer event or a storage completion.
    pub fn peer(&mut self, input: Input, now: Now) {
        self.now = now;
        if let Input::Message { from, conn, msg: QuorumMsg::Proposal(b) } = &input {
            if let Err(e) = verify(b) {
                self.out.logs.push(format!("server {from} sent a bad record: {e}; closing the connection"));
                self.out.close.push((*from, *conn));
                self.zab.step(Input::Disconnected { peer: *from, conn: *conn });
                return self.drain();
            }
        }
        self.zab.step(input);
        self.drain();
        self.flush();
    }

    /// The committed state a learner asked for, encoded (see `NodeReady::snapshots`), with the
    /// tree's epoch map at that point.
    #[allow(clippy::too_many_arguments)]
    pub fn snapshot_ready(
        &mut self,
        peer: NodeId,
        conn: zab::ConnId,
        zxid: Zxid,
        bytes: Bytes,
        epochs: Vec<(u32, Zxid)>,
        now: Now,
    ) {
        self.now = now;
        self.zab.step(Input::SnapshotReady { peer, conn, zxid, bytes, epochs });
        self.drain();
    }

    /// The runtime's clock: call every tick.
    pub fn tick(&mut self, now: Now) {
        self.now = now;
        self.zab.step(Input::Tick);
        self.drain();
        self.maybe_read_only();
        while self.held.front().is_some_and(|(deadline, _)| *deadline <= now.mono_ms) {
            if let Some((_, ToCommit::Connect { shard, conn, .. })) = self.held.pop_front() {
                self.reply_now(shard, Reply { conn, frame: Bytes::new(), kind: ReplyKind::ConnectRefused });
            }
        }
        if let Some(s) = &mut self.seq {
            if now.mono_ms >= self.last_expiry_ms + EXPIRY_EVERY_MS {
                self.last_expiry_ms = now.mono_ms;
                s.expire_sessions(now);
            }
            if now.mono_ms >= self.last_reap_ms + self.cfg.container_check_interval_ms.max(1) {
                self.last_reap_ms = now.mono_ms;
                s.reap(now);
            }
        } else if now.mono_ms >= self.last_touch_ms + TOUCH_EVERY_MS {
            self.last_touch_ms = now.mono_ms;
            if !self.touched.is_empty() && self.zab.status().serving {
                let sessions: Vec<i64> = std::mem::take(&mut self.touched).into_iter().take(wire::TOUCH_MAX).collect();
                self.forward(&Forward::Touch { sessions });
            }
        }
        self.flush();
    }

    /// Proposes what the sequencer sealed, while ZAB takes more.
    fn flush(&mut self) {
        loop {
            if !self.zab.can_propose() {
                return;
            }
            let Some(seq) = &mut self.seq else { return };
            if seq.counter() >= self.zab.config().zxid_counter_max {
                self.out.logs.push("the zxid counter of this epoch is used up: starting a new epoch".into());
                self.zab.step(Input::EpochExhausted);
                return self.drain();
            }
            let Some(sealed) = seq.take_batch() else { return };
            let at = self.zab.last_logged();
            let commit = self.zab.status().commit;
            let bytes = record::encode_batch(&sealed.txns, &sealed.answers, at, commit);
            assert!(!bytes.is_empty(), "a sealed batch holds transactions or answers");
            let (first, last) = match (sealed.txns.first(), sealed.txns.last()) {
                (Some(f), Some(l)) => (f.zxid, l.zxid),
                _ => (at + 1, at),
            };
            let b = Arc::new(Batch { first, last, bytes: Bytes::from(bytes) });
            self.sealed.push_back((b.clone(), sealed));
            self.zab.step(Input::Propose(b));
            self.drain();
        }
    }

    /// Takes the ZAB machine's outputs, acting on what is the node's to act on.
    fn drain(&mut self) {
        loop {
            let r = self.zab.ready();
            let idle = r.apply.is_empty() && r.roles.is_empty() && r.forwarded.is_empty();
            self.out.storage.extend(r.storage);
            self.out.notifications.extend(r.notifications);
            self.out.messages.extend(r.messages);
            self.out.close.extend(r.close);
            self.out.dial.extend(r.dial);
            self.out.snapshots.extend(r.snapshots);
            self.out.logs.extend(r.errors.into_iter().map(|e| format!("replication: {e}")));
            self.out.logs.extend(r.notes);
            for a in r.apply {
                self.apply(a);
            }
            for role in r.roles {
                self.role(role);
            }
            for (from, bytes) in r.forwarded {
                self.forwarded(from, &bytes);
            }
            if idle {
                return;
            }
        }
    }

    fn role(&mut self, role: RoleEvent) {
        match role {
            RoleEvent::Serving { epoch } => {
                self.out.serving = Some(true);
                self.served = true;
                self.end_read_only();
                if self.zab.status().state == zab::msg::PeerState::Leading {
                    let first_id =
                        session::initial_session_id(self.id as u8, self.now.wall_ms).max(self.state.next_session_id);
                    let tree = self.state.tree.clone();
                    let sessions = self.state.session_list();
                    let mut s = Sequencer::new(&self.cfg, tree, &sessions, first_id, epoch, self.secret, self.now);
                    s.set_disk_failed(self.disk_failed);
                    self.seq = Some(s);
                }
                self.out.logs.push(format!("serving clients in epoch {epoch} ({:?})", self.zab.status().state));
                let now = self.now;
                for (_, c) in std::mem::take(&mut self.held) {
                    self.shard_message(c, now);
                }
            }
            _ => {
                self.out.logs.push(match role {
                    RoleEvent::Looking => "looking for a leader".to_string(),
                    RoleEvent::Following { leader } => format!("following server {leader}"),
                    RoleEvent::Observing { leader } => format!("observing server {leader}"),
                    _ => "leading: establishing a new epoch".to_string(),
                });
                self.seq = None;
                self.sealed.clear();
                self.routes.clear();
                self.owners.clear();
                self.touched.clear();
                if std::mem::replace(&mut self.served, false) {
                    self.out.clients_closed = true;
                }
                self.out.serving = Some(false);
                self.ro.not_serving_since_ms.get_or_insert(self.now.mono_ms);
            }
        }
    }

    /// Starts read-only mode once the node has been without a quorum for max(2 s, tickTime),
    /// as ZooKeeper does.
    fn maybe_read_only(&mut self) {
        if !self.ro.enabled || self.ro.active || self.zab.status().serving {
            return;
        }
        let Some(since) = self.ro.not_serving_since_ms else { return };
        if self.now.mono_ms < since + (self.cfg.tick_time as u64).max(2000) {
            return;
        }
        self.ro.active = true;
        self.out.read_only = Some(true);
        self.out.logs.push("no quorum: serving read-only clients (readonlymode.enabled)".into());
        // Held connects that allow read-only mode are served now; the others keep waiting.
        let now = self.now;
        let held = std::mem::take(&mut self.held);
        for (deadline, m) in held {
            match m {
                ToCommit::Connect { ref req, .. } if req.read_only != Some(true) => self.held.push_back((deadline, m)),
                other => self.shard_message(other, now),
            }
        }
    }

    fn end_read_only(&mut self) {
        self.ro.not_serving_since_ms = None;
        if !self.ro.active {
            return;
        }
        self.ro.active = false;
        self.out.read_only = Some(false);
        self.out.logs.push("quorum back: read-only mode ends, its clients reconnect".into());
        for (_, (shard, conn)) in std::mem::take(&mut self.ro.sessions) {
            self.close_now(shard, conn);
        }
    }

    /// A session of read-only mode: local to this node, never replicated, no writes.
    fn read_only_connect(&mut self, shard: usize, conn: ConnId, req: &crate::proto::ConnectRequest) {
        let (min, max) = self.cfg.session_timeout_bounds();
        let timeout = session::negotiate_timeout(req.timeout, min, max);
        let known = self.ro.sessions.contains_key(&req.session_id)
            && req.passwd == session::password(&self.secret, req.session_id);
        let id = if req.session_id == 0 && self.ro.sessions.len() < RO_SESSIONS_MAX {
            if self.ro.next_session == 0 {
                self.ro.next_session = session::initial_session_id(self.id as u8, self.now.wall_ms);
            }
            self.ro.next_session += 1;
            self.ro.next_session
        } else if known {
            req.session_id
        } else {
            // An unknown or global session cannot be checked here: it is expired for this client.
            let frame = crate::proto::encode_connect_response(0, 0, &[0; 16], Some(true));
            return self.reply_now(shard, Reply { conn, frame, kind: ReplyKind::ConnectRefused });
        };
        self.ro.sessions.insert(id, (shard, conn));
        let passwd = session::password(&self.secret, id);
        let frame = crate::proto::encode_connect_response(timeout, id, &passwd, Some(true));
        self.reply_now(shard, Reply { conn, frame, kind: ReplyKind::Connected { session: id, timeout } });
    }

    /// A read-only session's write: refused with NotReadOnly, as ZooKeeper's read-only server
    /// does; closeSession ends the session.
    fn read_only_write(&mut self, shard: usize, conn: ConnId, wseq: u64, session: i64, xid: i32, req: &Request) {
        let zxid = self.state.tree.last_zxid();
        let (frame, close) = match req {
            Request::CloseSession => {
                self.ro.sessions.remove(&session);
                (reply_empty(xid, zxid, err::OK), true)
            }
            _ => (reply_empty(xid, zxid, err::NOT_READ_ONLY), false),
        };
        self.reply_now(shard, Reply { conn, frame, kind: ReplyKind::Write { wseq, close } });
    }

    fn forwarded(&mut self, from: NodeId, bytes: &[u8]) {
        let Some(seq) = &mut self.seq else { return };
        let now = self.now;
        match wire::decode(bytes) {
            Ok(Forward::Connect { rid, req }) => {
                seq.handle(Proposal::Connect { origin: Origin { server: from, rid }, req }, now)
            }
            Ok(Forward::Write { rid, session, xid, fence, auth, req }) => {
                let origin = Origin { server: from, rid };
                seq.handle(Proposal::Write { origin, session, xid, req, auth: Arc::new(auth), fence }, now);
            }
            Ok(Forward::Touch { sessions }) => seq.handle(Proposal::Touch { sessions }, now),
            Err(e) => self.out.logs.push(format!("server {from}: {e}")),
        }
    }

    fn apply(&mut self, a: Apply) {
        match a {
            Apply::Batch(b) => {
                self.out.applied.push(Applied::Batch(b.clone()));
                let own = self.sealed.front().is_some_and(|(s, _)| Arc::ptr_eq(s, &b));
                let committed = if own {
                    let (_, sealed) = self.sealed.pop_front().expect("checked");
                    self.apply_sealed(sealed)
                } else {
                    self.apply_record(&b)
                };
                self.out.publish.push(committed);
            }
            Apply::Snapshot { zxid, bytes } => match snapshot::decode(&bytes) {
                Ok(s) => {
                    assert_eq!(s.zxid, zxid, "a snapshot of the zxid ZAB sent");
                    self.out.applied.push(Applied::Snapshot(zxid));
                    let mut sessions = BTreeMap::new();
                    for (id, t, p) in s.sessions {
                        sessions.insert(id, (t, p));
                    }
                    self.state = State { tree: s.tree, sessions, next_session_id: s.next_session_id };
                    let b = self.local_batch(Vec::new());
                    self.out.publish.push(b);
                }
                Err(e) => panic!("the leader's snapshot at {zxid:#x} does not decode ({e:?}); its checksum passed"),
            },
        }
    }

    /// The leader's own batch: its sequencer already applied it to the tree it sealed.
    fn apply_sealed(&mut self, s: Sealed) -> Committed {
        for t in &s.txns {
            self.applied_txns += 1;
            match &t.body {
                TxnBody::CreateSession { timeout, passwd } => {
                    self.state.sessions.insert(t.session, (*timeout, *passwd));
                    self.state.next_session_id = self.state.next_session_id.max(t.session.wrapping_add(1));
                }
                TxnBody::CloseSession => {
                    self.state.sessions.remove(&t.session);
                }
                _ => {}
            }
        }
        self.state.tree = (*s.tree).clone();
        let parts = self.route_answers(&s.answers, &s.closed);
        Committed {
            tree: s.tree,
            triggers: s.triggers,
            closed_sessions: s.closed,
            parts,
            session_count: s.session_count,
        }
    }

    /// A batch decided elsewhere (or before this node led): apply its transactions.
    fn apply_record(&mut self, b: &Batch) -> Committed {
        let d = record::decode(&b.bytes).unwrap_or_else(|e| panic!("a committed record does not decode: {e}"));
        let (mut triggers, mut closed, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
        for t in &d.txns {
            self.applied_txns += 1;
            self.state.apply(t, &self.secret, &mut scratch, &mut closed);
            triggers.extend(scratch.drain(..).map(|x| (t.zxid, x)));
        }
        let parts = self.route_answers(&d.answers, &closed);
        Committed {
            tree: Arc::new(self.state.tree.clone()),
            triggers,
            closed_sessions: closed,
            parts,
            session_count: self.state.sessions.len(),
        }
    }

    /// The replies of a batch addressed to this node's connections, and the connections to
    /// close because their session moved elsewhere.
    fn route_answers(&mut self, answers: &[Answer], closed: &[i64]) -> Vec<ShardPart> {
        let mut parts = vec![ShardPart::default(); self.part_count()];
        for a in answers {
            let mine = a.origin.server == self.id;
            let route = if mine { self.routes.remove(&a.origin.rid) } else { None };
            if let AnswerKind::Connected { session, .. } = a.kind {
                let new_owner = route.map(|r| (r.shard, r.conn));
                if let Some(old) = self.owners.get(&session).copied() {
                    if Some(old) != new_owner {
                        parts[old.0].close.push(old.1);
                        self.owners.remove(&session);
                    }
                }
                if let Some(o) = new_owner {
                    self.owners.insert(session, o);
                }
            }
            let Some(r) = route else { continue };
            let kind = match (r.wseq, a.kind) {
                (Some(wseq), AnswerKind::Write { close }) => ReplyKind::Write { wseq, close },
                (None, AnswerKind::Connected { session, timeout }) => ReplyKind::Connected { session, timeout },
                (None, AnswerKind::Refused) => ReplyKind::ConnectRefused,
                _ => {
                    self.out.logs.push(format!("an answer of the wrong kind for request {}", a.origin.rid));
                    continue;
                }
            };
            parts[r.shard].replies.push(Reply { conn: r.conn, frame: a.frame.clone(), kind });
        }
        for s in closed {
            self.owners.remove(s);
        }
        parts
    }
}

/// Checks a record received from the leader before it is logged: checksums, archive, and that
/// its zxids are the batch's.
pub fn verify(b: &Batch) -> Result<(), String> {
    let h = record::verify(&b.bytes).map_err(|e| e.to_string())?;
    if h.first_zxid != b.first || h.last_zxid != b.last || h.record_len() != b.bytes.len() {
        return Err(format!(
            "record {:#x}..{:#x} ({} bytes) sent as {:#x}..{:#x} ({} bytes)",
            h.first_zxid,
            h.last_zxid,
            h.record_len(),
            b.first,
            b.last,
            b.bytes.len()
        ));
    }
    Ok(())
}
