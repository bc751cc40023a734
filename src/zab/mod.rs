//! ZAB as a pure state machine: leader election, discovery (a new epoch), synchronisation
//! (DIFF / TRUNC / SNAP), broadcast (propose, ack once durable, commit on a quorum), followers
//! and observers.
//!
//! Owns every protocol decision of replication. Never does I/O, never reads a clock, never
//! draws randomness, never spawns a thread: time is `Input::Tick`, the disk and the network
//! are requests in `Ready` and completions in later inputs.
//!
//! # The Ready contract
//! After each `step`, the caller takes `ready()` and, in this order:
//! 1. performs `storage` operations in sequence order (they may be combined, e.g. several
//!    appends in one write and one fdatasync, but never reordered) and reports each finished
//!    prefix with `Input::Persisted { upto }`; a crash may lose any suffix that was not reported;
//! 2. applies `apply` in order to the node's state (committed, and durable here);
//! 3. sends `notifications` (datagrams: may be lost, duplicated, reordered) and `messages` (on
//!    the quorum connection named by its id, in order; a connection that breaks loses its tail
//!    and is reported with `Input::Disconnected`), closes `close`, dials `dial`;
//! 4. answers `snapshots` with `Input::SnapshotReady` (the committed state it has applied);
//! 5. hands `forwarded` payloads to the node (the leader's share of its learners' requests).
//!
//! Messages never wait for storage inside one `Ready`: whatever must be durable before a
//! message is sent (an epoch, an acked record) is waited for through `Persisted`.

pub mod msg;
pub mod sync;

use bytes::Bytes;
use msg::{Notification, PeerState, QuorumMsg, Summary, Vote, SUMMARY_EPOCHS_MAX};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

pub type Zxid = i64;
pub type NodeId = u32;
/// A quorum connection, numbered by the runtime; messages name the connection they belong to.
pub type ConnId = u64;

pub fn zxid(epoch: u32, counter: u32) -> Zxid {
    ((epoch as i64) << 32) | counter as i64
}

pub fn epoch_of(z: Zxid) -> u32 {
    (z >> 32) as u32
}

pub fn counter_of(z: Zxid) -> u32 {
    z as u32
}

/// Whether a record starting at `next` may follow a history ending at `last`: zxids rise by
/// one within an epoch, and a new epoch starts at counter 1.
pub fn follows(last: Zxid, next: Zxid) -> bool {
    (epoch_of(next) == epoch_of(last) && next == last + 1) || (epoch_of(next) > epoch_of(last) && counter_of(next) == 1)
}

/// One replicated batch: the bytes of its log record and its zxid range. A batch without
/// transactions (only replies, e.g. for `sync`) has `first == last + 1` and is never logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub first: Zxid,
    pub last: Zxid,
    pub bytes: Bytes,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.first > self.last
    }
}

/// A fault injected on purpose so the simulator can show it finds it. Never set in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The leader commits what it alone has made durable.
    CommitOnMinority,
}

/// Settings of one node's ZAB machine. Times are in ticks of the caller's clock.
#[derive(Debug, Clone)]
pub struct ZabConfig {
    pub id: NodeId,
    /// Voting members (this node too, unless it observes).
    pub voters: Vec<NodeId>,
    pub observers: Vec<NodeId>,
    /// Discovery and synchronisation must finish within this.
    pub init_limit_ticks: u64,
    /// A leader and its learners must hear from each other within this.
    pub sync_limit_ticks: u64,
    pub ping_ticks: u64,
    pub election_resend_ticks: u64,
    /// How long a quorum's agreement waits for a better vote before it decides.
    pub finalize_ticks: u64,
    pub dial_retry_ticks: u64,
    /// Committed records kept in memory for DIFF beyond what is not yet applied.
    pub history_bytes_max: usize,
    /// The leader takes no new batch while this much is proposed and not committed.
    pub uncommitted_bytes_max: usize,
    pub snapshot_chunk_bytes: usize,
    pub snapshot_bytes_max: u64,
    /// Past this zxid counter the leader gives up its epoch so a new one starts.
    pub zxid_counter_max: u32,
    pub fault: Option<Fault>,
}

impl ZabConfig {
    pub fn validate(&self) -> Result<(), String> {
        let mut v = self.voters.clone();
        v.sort();
        v.dedup();
        if v.len() != self.voters.len() || v.is_empty() {
            return Err("voters must be distinct and at least one".into());
        }
        if self.observers.iter().any(|o| self.voters.contains(o)) {
            return Err("a server cannot both vote and observe".into());
        }
        if !self.voters.contains(&self.id) && !self.observers.contains(&self.id) {
            return Err(format!("server {} is not in the ensemble", self.id));
        }
        if self.sync_limit_ticks == 0 || self.init_limit_ticks == 0 || self.ping_ticks == 0 {
            return Err("limits must be at least one tick".into());
        }
        if self.ping_ticks >= self.sync_limit_ticks {
            return Err("pings must come more often than the sync limit".into());
        }
        if self.snapshot_chunk_bytes == 0 || self.snapshot_chunk_bytes >= msg::FRAME_MAX / 2 {
            return Err("snapshot chunks must fit a frame".into());
        }
        if self.zxid_counter_max < 2 {
            return Err("zxid counter limit too small".into());
        }
        Ok(())
    }

    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    pub fn is_member(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.observers.contains(&id)
    }

    fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        let me = self.id;
        self.voters.iter().chain(self.observers.iter()).copied().filter(move |&p| p != me)
    }
}

/// What a node starts from (read back from its disk).
#[derive(Debug, Clone, Default)]
pub struct Start {
    pub accepted_epoch: u32,
    pub accepted_leader: NodeId,
    pub current_epoch: u32,
    /// The zxid the node's state reflects (known committed).
    pub applied: Zxid,
    /// The last zxid of each epoch in the history (snapshot and log).
    pub epochs: BTreeMap<u32, Zxid>,
    /// Records held after `history_base`, oldest first; all records after `applied` must be here.
    pub history: Vec<Arc<Batch>>,
    pub history_base: Zxid,
}

/// A storage request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    Append(Arc<Batch>),
    /// Drop every record after `after`.
    Truncate {
        after: Zxid,
    },
    /// Replace the whole history by this committed state.
    Snapshot {
        zxid: Zxid,
        bytes: Bytes,
        epochs: Vec<(u32, Zxid)>,
    },
    Epochs {
        accepted_epoch: u32,
        accepted_leader: NodeId,
        current_epoch: u32,
    },
}

/// Something committed (and durable here) to apply to the node's state, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Apply {
    Snapshot { zxid: Zxid, bytes: Bytes },
    Batch(Arc<Batch>),
}

/// A change of role the node must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleEvent {
    /// Not serving: close every client connection; refuse new ones.
    Looking,
    Following {
        leader: NodeId,
    },
    Observing {
        leader: NodeId,
    },
    Leading,
    /// Broadcast has begun: serve clients. A leader proposes from `zxid(epoch, 1)`.
    Serving {
        epoch: u32,
    },
}

/// The outputs of one or more steps.
#[derive(Debug, Default)]
pub struct Ready {
    pub storage: Vec<(u64, Storage)>,
    pub apply: Vec<Apply>,
    pub notifications: Vec<(NodeId, Notification)>,
    pub messages: Vec<(NodeId, ConnId, QuorumMsg)>,
    pub close: Vec<(NodeId, ConnId)>,
    pub dial: Vec<NodeId>,
    pub snapshots: Vec<(NodeId, ConnId)>,
    pub forwarded: Vec<(NodeId, Bytes)>,
    pub roles: Vec<RoleEvent>,
    /// Protocol violations seen from peers (logged by the runtime; none in a healthy run).
    pub errors: Vec<String>,
    /// Decisions worth telling the operator (logged by the runtime).
    pub notes: Vec<String>,
}

/// An input to the machine.
#[derive(Debug, Clone)]
pub enum Input {
    Tick,
    Notification {
        from: NodeId,
        note: Notification,
    },
    /// A quorum connection to `peer` is up (this node dialled it).
    Connected {
        peer: NodeId,
        conn: ConnId,
    },
    Message {
        from: NodeId,
        conn: ConnId,
        msg: QuorumMsg,
    },
    Disconnected {
        peer: NodeId,
        conn: ConnId,
    },
    /// Storage operations up to this sequence number are done.
    Persisted {
        upto: u64,
    },
    /// Leader, serving: a new batch (zxids follow the last proposed one).
    Propose(Arc<Batch>),
    SnapshotReady {
        peer: NodeId,
        conn: ConnId,
        zxid: Zxid,
        bytes: Bytes,
        epochs: Vec<(u32, Zxid)>,
    },
    /// The zxid counter is near its end: give up this epoch.
    EpochExhausted,
}

/// What the machine reports about itself (for `srvr`, `mntr` and the node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub state: PeerState,
    pub serving: bool,
    pub leader: Option<NodeId>,
    pub epoch: u32,
    pub commit: Zxid,
    pub applied: Zxid,
    pub logged: Zxid,
    pub durable: Zxid,
    /// Leader: learners connected, voters among them synced (in broadcast), learners syncing.
    pub learners: usize,
    pub synced_voters: usize,
    pub pending_syncs: usize,
    pub uncommitted_bytes: usize,
}

enum Effect {
    Append(Zxid),
    Truncate(Zxid),
    Snapshot(Zxid),
    Epochs,
}

enum Pending {
    Batch(Arc<Batch>),
    Snapshot { zxid: Zxid, bytes: Bytes },
}

impl Pending {
    fn last(&self) -> Zxid {
        match self {
            Pending::Batch(b) => b.last,
            Pending::Snapshot { zxid, .. } => *zxid,
        }
    }
}

struct Looking {
    vote: Vote,
    votes: BTreeMap<NodeId, Vote>,
    /// Voters that already left the election: whom each says it follows (ZooKeeper's
    /// "out of election" set). A quorum following this node means it must lead: they decided
    /// while this node still looked and now wait for it.
    settled: BTreeMap<NodeId, NodeId>,
    finalize_at: Option<u64>,
    resend_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LearnerPhase {
    Connecting,
    InfoSent,
    AckingEpoch,
    Syncing,
    AckingNewLeader,
    AwaitUpToDate,
    Broadcast,
}

struct SnapBuf {
    zxid: Zxid,
    total: u64,
    epochs: Vec<(u32, Zxid)>,
    bytes: Vec<u8>,
}

struct Learning {
    leader: NodeId,
    observer: bool,
    conn: Option<ConnId>,
    phase: LearnerPhase,
    since: u64,
    heard: u64,
    next_dial: u64,
    gate: u64,
    new_epoch: u32,
    acked: Zxid,
    snap: Option<SnapBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LeaderPhase {
    Discovery,
    EpochProposed,
    Synchronizing,
    Broadcast,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Sync {
    Info,
    EpochSent,
    EpochAcked,
    AwaitingSnapshot,
    /// The sync stream and NEWLEADER are queued; records up to `last` were in it.
    Synced {
        last: Zxid,
    },
    /// Acknowledged NEWLEADER; counts for the commit point.
    Acked,
}

struct Peer {
    conn: ConnId,
    observer: bool,
    accepted_epoch: u32,
    current_epoch: u32,
    last: Zxid,
    summary: Summary,
    sync: Sync,
    up_to_date: bool,
    heard: u64,
    acked: Zxid,
    /// Ping rounds sent to this peer and not yet answered, oldest first (the connection is in
    /// order and every PING gets one reply), and the latest round it answered.
    rounds: VecDeque<u64>,
    answered: u64,
}

struct Leading {
    epoch: u32,
    /// The epoch this node had before it led (compared against learners' histories).
    prior_epoch: u32,
    phase: LeaderPhase,
    since: u64,
    peers: BTreeMap<NodeId, Peer>,
    accepted_op: u64,
    current_op: Option<u64>,
    /// The history this leader started its epoch with (committed once NEWLEADER is acked).
    start_last: Zxid,
    proposals: VecDeque<Arc<Batch>>,
    uncommitted_bytes: usize,
    next_ping: u64,
    /// Voters that say (by notification) they follow or lead another server while this one is
    /// still establishing its epoch.
    elsewhere: std::collections::BTreeSet<NodeId>,
    /// The last ping round sent (a round: one PING to every peer).
    round: u64,
    /// A batch without transactions (it answers `sync`s) held back until a quorum answered a
    /// ping round sent after it arrived: only a leader a quorum still follows may answer a sync,
    /// or a deposed leader that does not know it yet would serve stale reads after a sync.
    holding: Option<(Arc<Batch>, u64)>,
}

enum Role {
    Looking(Looking),
    Learning(Learning),
    Leading(Leading),
}

pub struct Zab {
    cfg: ZabConfig,
    now: u64,
    round: u64,
    accepted_epoch: u32,
    accepted_leader: NodeId,
    /// The highest epoch a voter said it had accepted: the next epoch this node proposes is
    /// above it (a voter bound to a newer promise cannot follow a lower epoch).
    epoch_floor: u32,
    /// The election round of each peer that announced it leads and was told where this node
    /// stands (one answer per round).
    told_leaders: BTreeMap<NodeId, u64>,
    current_epoch: u32,
    next_op: u64,
    done_op: u64,
    ops: VecDeque<(u64, Effect)>,
    logged: Zxid,
    durable: Zxid,
    epochs: BTreeMap<u32, Zxid>,
    history: VecDeque<Arc<Batch>>,
    history_bytes: usize,
    history_base: Zxid,
    commit: Zxid,
    applied: Zxid,
    pending: VecDeque<Pending>,
    serving: bool,
    role: Role,
    ready: Ready,
}

impl Zab {
    pub fn new(cfg: ZabConfig, start: Start) -> Zab {
        cfg.validate().expect("a valid ZAB configuration");
        let logged = start.history.last().map_or(start.applied.max(start.history_base), |b| b.last);
        assert!(start.history_base <= start.applied, "unapplied records must be held");
        let mut history = VecDeque::new();
        let mut pending = VecDeque::new();
        let mut prev = start.history_base;
        let mut history_bytes = 0;
        for b in start.history {
            assert!(!b.is_empty() && b.first > prev, "held records rise");
            prev = b.last;
            history_bytes += b.bytes.len();
            if b.last > start.applied {
                pending.push_back(Pending::Batch(b.clone()));
            }
            history.push_back(b);
        }
        let mut z = Zab {
            now: 0,
            round: 0,
            accepted_epoch: start.accepted_epoch,
            accepted_leader: start.accepted_leader,
            epoch_floor: 0,
            told_leaders: BTreeMap::new(),
            current_epoch: start.current_epoch,
            next_op: 1,
            done_op: 0,
            ops: VecDeque::new(),
            logged,
            durable: logged,
            epochs: start.epochs,
            history,
            history_bytes,
            history_base: start.history_base,
            commit: start.applied,
            applied: start.applied,
            pending,
            serving: false,
            role: Role::Looking(Looking {
                vote: Vote { leader: cfg.id, zxid: logged, epoch: start.current_epoch },
                votes: BTreeMap::new(),
                settled: BTreeMap::new(),
                finalize_at: None,
                resend_at: 0,
            }),
            ready: Ready::default(),
            cfg,
        };
        z.become_looking();
        z
    }

    pub fn config(&self) -> &ZabConfig {
        &self.cfg
    }

    /// Takes everything produced so far.
    pub fn ready(&mut self) -> Ready {
        std::mem::take(&mut self.ready)
    }

    pub fn status(&self) -> Status {
        let (state, leader) = match &self.role {
            Role::Looking(_) => (PeerState::Looking, None),
            Role::Learning(l) if l.observer => (PeerState::Observing, Some(l.leader)),
            Role::Learning(l) => (PeerState::Following, Some(l.leader)),
            Role::Leading(_) => (PeerState::Leading, Some(self.cfg.id)),
        };
        let (learners, synced_voters, pending_syncs, uncommitted_bytes) = match &self.role {
            Role::Leading(l) => (
                l.peers.len(),
                l.peers.values().filter(|p| !p.observer && p.up_to_date).count(),
                l.peers.values().filter(|p| !p.up_to_date).count(),
                l.uncommitted_bytes,
            ),
            _ => (0, 0, 0, 0),
        };
        Status {
            state,
            serving: self.serving,
            leader,
            epoch: self.current_epoch,
            commit: self.commit,
            applied: self.applied,
            logged: self.logged,
            durable: self.durable,
            learners,
            synced_voters,
            pending_syncs,
            uncommitted_bytes,
        }
    }

    /// Whether a leader may take another batch now (back-pressure on uncommitted bytes).
    pub fn can_propose(&self) -> bool {
        match &self.role {
            Role::Leading(l) => {
                self.serving
                    && l.phase == LeaderPhase::Broadcast
                    && l.uncommitted_bytes < self.cfg.uncommitted_bytes_max
                    && l.holding.is_none()
            }
            _ => false,
        }
    }

    /// Sends a node-level payload (forwarded client requests) to the leader; false unless this
    /// node is a learner in broadcast.
    pub fn forward(&mut self, payload: Bytes) -> bool {
        match &self.role {
            Role::Learning(l) if l.phase == LearnerPhase::Broadcast => {
                let (leader, conn) = (l.leader, l.conn.expect("connected in broadcast"));
                self.ready.messages.push((leader, conn, QuorumMsg::Forward(payload)));
                true
            }
            _ => false,
        }
    }

    /// The last zxid proposed or logged: a leader's next batch starts after it.
    pub fn last_logged(&self) -> Zxid {
        self.logged
    }

    /// The epoch map of the history (for a snapshot of the committed state).
    pub fn epochs(&self) -> &BTreeMap<u32, Zxid> {
        &self.epochs
    }

    pub fn step(&mut self, input: Input) {
        match input {
            Input::Tick => {
                self.now += 1;
                self.tick();
            }
            Input::Notification { from, note } => self.on_notification(from, note),
            Input::Connected { peer, conn } => self.on_connected(peer, conn),
            Input::Message { from, conn, msg } => self.on_message(from, conn, msg),
            Input::Disconnected { peer, conn } => self.on_disconnected(peer, conn),
            Input::Persisted { upto } => self.on_persisted(upto),
            Input::Propose(b) => self.on_propose(b),
            Input::SnapshotReady { peer, conn, zxid, bytes, epochs } => {
                self.on_snapshot_ready(peer, conn, zxid, bytes, epochs)
            }
            Input::EpochExhausted => {
                if matches!(self.role, Role::Leading(_)) {
                    self.become_looking();
                }
            }
        }
        self.progress();
    }

    // ------------------------------------------------------------------ storage and apply

    fn persist(&mut self, op: Storage) -> u64 {
        let seq = self.next_op;
        self.next_op += 1;
        let effect = match &op {
            Storage::Append(b) => Effect::Append(b.last),
            Storage::Truncate { after } => Effect::Truncate(*after),
            Storage::Snapshot { zxid, .. } => Effect::Snapshot(*zxid),
            Storage::Epochs { .. } => Effect::Epochs,
        };
        self.ops.push_back((seq, effect));
        self.ready.storage.push((seq, op));
        seq
    }

    fn store_epochs(&mut self) -> u64 {
        self.persist(Storage::Epochs {
            accepted_epoch: self.accepted_epoch,
            accepted_leader: self.accepted_leader,
            current_epoch: self.current_epoch,
        })
    }

    fn on_persisted(&mut self, upto: u64) {
        assert!(upto < self.next_op, "persisted an operation never requested");
        while let Some((seq, _)) = self.ops.front() {
            if *seq > upto {
                break;
            }
            let (seq, effect) = self.ops.pop_front().expect("checked");
            match effect {
                Effect::Append(last) => self.durable = last,
                Effect::Truncate(after) => self.durable = self.durable.min(after),
                Effect::Snapshot(z) => self.durable = z,
                Effect::Epochs => {}
            }
            self.done_op = seq;
        }
    }

    /// Logs a record received or proposed (it must follow the history).
    fn append(&mut self, b: Arc<Batch>) {
        if !b.is_empty() {
            assert!(follows(self.logged, b.first), "record {:x} cannot follow {:x}", b.first, self.logged);
            self.logged = b.last;
            sync::note_append(&mut self.epochs, b.last);
            self.history_bytes += b.bytes.len();
            self.history.push_back(b.clone());
            self.persist(Storage::Append(b.clone()));
        } else {
            assert_eq!(b.last, self.logged, "an empty batch sits at the end of the history");
        }
        self.pending.push_back(Pending::Batch(b));
    }

    fn truncate(&mut self, after: Zxid) {
        assert!(after >= self.applied, "never truncate what is applied");
        self.logged = after;
        sync::note_truncate(&mut self.epochs, after);
        while self.history.back().is_some_and(|b| b.last > after) {
            let b = self.history.pop_back().expect("checked");
            self.history_bytes -= b.bytes.len();
        }
        self.pending.retain(|p| p.last() <= after);
        self.persist(Storage::Truncate { after });
    }

    fn apply_ready(&mut self) {
        let upto = self.commit.min(self.durable);
        while let Some(p) = self.pending.front() {
            if p.last() > upto {
                break;
            }
            match self.pending.pop_front().expect("checked") {
                Pending::Batch(b) => {
                    if !b.is_empty() {
                        assert!(b.first > self.applied, "applies rise");
                    }
                    self.applied = self.applied.max(b.last);
                    self.ready.apply.push(Apply::Batch(b));
                }
                Pending::Snapshot { zxid, bytes } => {
                    self.applied = zxid;
                    self.ready.apply.push(Apply::Snapshot { zxid, bytes });
                }
            }
        }
        while self.history_bytes > self.cfg.history_bytes_max
            && self.history.front().is_some_and(|b| b.last <= self.applied)
        {
            let b = self.history.pop_front().expect("checked");
            self.history_bytes -= b.bytes.len();
            self.history_base = b.last;
        }
    }

    fn summary(&self) -> Summary {
        let base = self.applied;
        let epochs: Vec<(u32, Zxid)> = self.epochs.iter().filter(|(_, &z)| z > base).map(|(&e, &z)| (e, z)).collect();
        if epochs.len() > SUMMARY_EPOCHS_MAX {
            Summary { base, epochs: Vec::new() }
        } else {
            Summary { base, epochs }
        }
    }

    // ------------------------------------------------------------------ roles

    fn my_vote(&self) -> Vote {
        Vote { leader: self.cfg.id, zxid: self.logged, epoch: self.current_epoch }
    }

    fn leave_role(&mut self) {
        let vote = self.my_vote();
        match std::mem::replace(
            &mut self.role,
            Role::Looking(Looking {
                vote,
                votes: BTreeMap::new(),
                settled: BTreeMap::new(),
                finalize_at: None,
                resend_at: 0,
            }),
        ) {
            Role::Leading(l) => {
                for (id, p) in l.peers {
                    self.ready.close.push((id, p.conn));
                }
            }
            Role::Learning(l) => {
                if let Some(c) = l.conn {
                    self.ready.close.push((l.leader, c));
                }
            }
            Role::Looking(_) => {}
        }
        if self.serving {
            self.serving = false;
        }
        // Batches without transactions carry only replies for clients that are now gone.
        let commit = self.commit;
        self.pending.retain(|p| !matches!(p, Pending::Batch(b) if b.is_empty() && b.last > commit));
    }

    fn become_looking(&mut self) {
        self.leave_role();
        self.round += 1;
        self.ready.roles.push(RoleEvent::Looking);
        let vote = self.my_vote();
        self.role = Role::Looking(Looking {
            vote,
            votes: BTreeMap::new(),
            settled: BTreeMap::new(),
            finalize_at: None,
            resend_at: self.now,
        });
        self.send_notifications();
        self.check_election();
    }

    fn become_leading(&mut self) {
        self.leave_role();
        self.ready.roles.push(RoleEvent::Leading);
        self.role = Role::Leading(Leading {
            epoch: 0,
            prior_epoch: self.current_epoch,
            phase: LeaderPhase::Discovery,
            since: self.now,
            peers: BTreeMap::new(),
            accepted_op: 0,
            current_op: None,
            start_last: self.logged,
            proposals: VecDeque::new(),
            uncommitted_bytes: 0,
            next_ping: self.now,
            elsewhere: Default::default(),
            round: 0,
            holding: None,
        });
        self.send_notifications();
    }

    fn become_learner(&mut self, leader: NodeId) {
        self.leave_role();
        let observer = !self.cfg.is_voter(self.cfg.id);
        self.ready.roles.push(if observer { RoleEvent::Observing { leader } } else { RoleEvent::Following { leader } });
        self.role = Role::Learning(Learning {
            leader,
            observer,
            conn: None,
            phase: LearnerPhase::Connecting,
            since: self.now,
            heard: self.now,
            next_dial: self.now + self.cfg.dial_retry_ticks,
            gate: 0,
            new_epoch: 0,
            acked: 0,
            snap: None,
        });
        self.ready.dial.push(leader);
        self.send_notifications();
    }

    fn tick(&mut self) {
        let now = self.now;
        match &mut self.role {
            Role::Looking(l) => {
                if now >= l.resend_at + self.cfg.election_resend_ticks {
                    self.send_notifications();
                }
                self.check_election();
            }
            Role::Learning(l) => {
                let limit = if l.phase == LearnerPhase::Broadcast {
                    now.saturating_sub(l.heard) > self.cfg.sync_limit_ticks
                } else {
                    now.saturating_sub(l.since) > self.cfg.init_limit_ticks
                };
                if limit {
                    self.become_looking();
                } else if l.phase == LearnerPhase::Connecting && now >= l.next_dial {
                    l.next_dial = now + self.cfg.dial_retry_ticks;
                    self.ready.dial.push(l.leader);
                }
            }
            Role::Leading(_) => self.leader_tick(),
        }
    }

    fn progress(&mut self) {
        match &self.role {
            Role::Leading(_) => self.leader_progress(),
            Role::Learning(_) => self.learner_progress(),
            Role::Looking(_) => {}
        }
        self.apply_ready();
    }

    // ------------------------------------------------------------------ election

    fn notification(&self) -> Notification {
        let (state, vote) = match &self.role {
            Role::Looking(l) => {
                (if self.cfg.is_voter(self.cfg.id) { PeerState::Looking } else { PeerState::Observing }, l.vote)
            }
            Role::Learning(l) => (
                if l.observer { PeerState::Observing } else { PeerState::Following },
                Vote { leader: l.leader, zxid: self.logged, epoch: self.current_epoch },
            ),
            Role::Leading(_) => (PeerState::Leading, self.my_vote()),
        };
        Notification { round: self.round, state, vote }
    }

    fn send_notifications(&mut self) {
        let n = self.notification();
        let peers: Vec<NodeId> = self.cfg.peers().collect();
        for p in peers {
            self.ready.notifications.push((p, n));
        }
        if let Role::Looking(l) = &mut self.role {
            l.resend_at = self.now;
        }
    }

    fn on_notification(&mut self, from: NodeId, n: Notification) {
        if !self.cfg.is_member(from) || from == self.cfg.id {
            self.ready.errors.push(format!("election notification from unknown server {from}"));
            return;
        }
        let me = self.cfg.id;
        let looking = matches!(self.role, Role::Looking(_));
        if let Role::Learning(l) = &self.role {
            let chosen_gave_up = from == l.leader
                && l.phase < LearnerPhase::Broadcast
                && matches!(n.state, PeerState::Following | PeerState::Observing);
            if chosen_gave_up {
                // The server we chose follows someone else: it will not lead. Look again now
                // rather than after the init limit.
                self.become_looking();
                return;
            }
        }
        if let Role::Leading(l) = &mut self.role {
            if l.phase < LeaderPhase::Broadcast && self.cfg.is_voter(from) {
                let other = match n.state {
                    PeerState::Following => n.vote.leader != me,
                    PeerState::Leading => true,
                    PeerState::Looking | PeerState::Observing => false,
                };
                if other {
                    l.elsewhere.insert(from);
                } else {
                    l.elsewhere.remove(&from);
                }
                if self.cfg.voters.len() - l.elsewhere.len() < self.cfg.quorum() {
                    // Too many voters settled on someone else: no quorum can form here. Look
                    // again now rather than after the init limit.
                    self.become_looking();
                    return;
                }
            }
        }
        if !looking {
            // Tell a looking peer where we stand; and a peer that leads without us (it may be
            // establishing an epoch it cannot get a quorum for).
            // Another leader is told too, once per round of its (two leaders would otherwise
            // answer each other for ever).
            let leads_without_us = n.state == PeerState::Leading
                && !matches!(&self.role, Role::Learning(l) if l.leader == from)
                && self.told_leaders.get(&from) != Some(&n.round);
            if leads_without_us {
                self.told_leaders.insert(from, n.round);
            }
            if matches!(n.state, PeerState::Looking | PeerState::Observing) || leads_without_us {
                let mine = self.notification();
                self.ready.notifications.push((from, mine));
            }
            return;
        }
        if n.state == PeerState::Leading && n.vote.leader == from && n.vote.epoch >= self.current_epoch {
            // A leader whose history is at least as new as ours: join it (discovery decides
            // whether it really leads; a stale one is left again when its epoch is refused).
            self.become_learner(from);
            return;
        }
        let voter = self.cfg.is_voter(from);
        if voter && self.cfg.is_voter(me) && n.state == PeerState::Following && n.vote.leader == me {
            let Role::Looking(l) = &mut self.role else { unreachable!() };
            l.settled.insert(from, n.vote.leader);
            let following_me = 1 + l.settled.values().filter(|&&x| x == me).count();
            if following_me >= self.cfg.quorum() {
                // A quorum decided on this node and waits for it to lead.
                self.become_leading();
            }
            return;
        }
        if !voter || !self.cfg.is_voter(me) || n.state != PeerState::Looking {
            if n.state == PeerState::Observing {
                let mine = self.notification();
                self.ready.notifications.push((from, mine));
            }
            return;
        }
        let mine = self.my_vote();
        let Role::Looking(l) = &mut self.role else { unreachable!() };
        let mut changed = false;
        if n.round > self.round {
            self.round = n.round;
            l.votes.clear();
            l.vote = if n.vote.key() > mine.key() { n.vote } else { mine };
            l.finalize_at = None;
            changed = true;
        } else if n.round < self.round {
            let reply = Notification { round: self.round, state: PeerState::Looking, vote: l.vote };
            self.ready.notifications.push((from, reply));
            return;
        } else if n.vote.key() > l.vote.key() {
            l.vote = n.vote;
            l.finalize_at = None;
            changed = true;
        } else if n.vote.key() < l.vote.key() {
            // The peer backs a worse candidate: tell it ours now rather than at the next resend.
            let reply = Notification { round: self.round, state: PeerState::Looking, vote: l.vote };
            self.ready.notifications.push((from, reply));
        }
        l.votes.insert(from, n.vote);
        if changed {
            self.send_notifications();
        }
        self.check_election();
    }

    fn check_election(&mut self) {
        let me = self.cfg.id;
        if !self.cfg.is_voter(me) {
            return;
        }
        let Role::Looking(l) = &mut self.role else { return };
        let agree = self
            .cfg
            .voters
            .iter()
            .filter(|&&v| v == me || l.votes.get(&v).is_some_and(|x| x.key() == l.vote.key()))
            .count();
        if agree < self.cfg.quorum() {
            l.finalize_at = None;
            return;
        }
        let decide = agree == self.cfg.voters.len() || {
            let at = *l.finalize_at.get_or_insert(self.now + self.cfg.finalize_ticks);
            self.now >= at
        };
        if decide {
            let leader = l.vote.leader;
            if leader == me {
                self.become_leading();
            } else {
                self.become_learner(leader);
            }
        }
    }

    // ------------------------------------------------------------------ connections

    fn on_connected(&mut self, peer: NodeId, conn: ConnId) {
        let (accepted, accepted_leader, logged) = (self.accepted_epoch, self.accepted_leader, self.logged);
        if let Role::Learning(l) = &mut self.role {
            if l.leader == peer && l.phase == LearnerPhase::Connecting {
                l.conn = Some(conn);
                l.phase = LearnerPhase::InfoSent;
                l.heard = self.now;
                let observer = l.observer;
                let m =
                    QuorumMsg::FollowerInfo { accepted_epoch: accepted, accepted_leader, last_zxid: logged, observer };
                self.ready.messages.push((peer, conn, m));
                return;
            }
        }
        self.ready.close.push((peer, conn));
    }

    fn on_disconnected(&mut self, peer: NodeId, conn: ConnId) {
        match &mut self.role {
            Role::Learning(l) if l.leader == peer => {
                if l.conn == Some(conn) && l.phase == LearnerPhase::InfoSent {
                    // The leader we chose has not started leading yet (it closes learners while
                    // it still looks): dial again shortly, within the init limit.
                    l.conn = None;
                    l.phase = LearnerPhase::Connecting;
                    l.next_dial = self.now + self.cfg.dial_retry_ticks;
                } else if l.conn == Some(conn) {
                    self.become_looking();
                } else if l.conn.is_none() && l.phase == LearnerPhase::Connecting {
                    // The dial failed: try again after a pause, within the init limit.
                    l.next_dial = self.now + self.cfg.dial_retry_ticks;
                }
            }
            Role::Leading(l) if l.peers.get(&peer).is_some_and(|p| p.conn == conn) => {
                l.peers.remove(&peer);
            }
            _ => {}
        }
    }

    fn on_message(&mut self, from: NodeId, conn: ConnId, m: QuorumMsg) {
        if !self.cfg.is_member(from) {
            self.ready.errors.push(format!("quorum message from unknown server {from}"));
            self.ready.close.push((from, conn));
            return;
        }
        match &self.role {
            Role::Leading(_) => self.leader_message(from, conn, m),
            Role::Learning(l) if l.leader == from && l.conn == Some(conn) => self.learner_message(m),
            _ => {
                // Not for our current role (a stale connection, or we are not leading).
                self.ready.close.push((from, conn));
            }
        }
    }

    fn protocol_error(&mut self, peer: NodeId, conn: ConnId, what: String) {
        self.ready.errors.push(format!("server {peer}: {what}"));
        self.ready.close.push((peer, conn));
        match &mut self.role {
            Role::Leading(l) if l.peers.get(&peer).is_some_and(|p| p.conn == conn) => {
                l.peers.remove(&peer);
            }
            Role::Learning(l) if l.conn == Some(conn) => self.become_looking(),
            _ => {}
        }
    }
}

mod leader;
mod learner;

#[cfg(test)]
mod tests;
