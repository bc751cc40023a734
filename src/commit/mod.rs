//! The commit core's runtime: it drives the node (`node`) with the shards' requests, the
//! peers' messages, the log's completions and a clock, and performs what the node asks: storage
//! operations on the log writer thread (consecutive appends gathered into one write and one
//! fdatasync: the group commit), messages to peers, committed batches to the shards, snapshots.
//!
//! Owns the channels, the clock, the timers and the I/O around the pure node. Makes no protocol
//! decisions of its own.

use crate::config::Config;
use crate::log::writer::{LogThread, Op};
use crate::log::{self, Dirs};
use crate::net::peer::PeerNet;
use crate::node::msg::{ToCommit, ToShard};
use crate::node::recovery::Recovered;
use crate::node::{Node, NodeReady};
use crate::runtime::local::LocalQueue;
use crate::runtime::oneshot;
use crate::runtime::shared::Shared;
use crate::sequencer::Now;
use crate::zab::{self, Storage, ZabConfig};
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the node's clock ticks (ZAB's timeouts are counted in these).
pub const TICK: Duration = Duration::from_millis(10);
/// Most ticks one timer firing makes up for (a node paused for longer only sees this much).
const TICKS_CAUGHT_UP_MAX: u64 = 100_000;
/// Ticks missed at once that mean this process stalled (see `settle_then_tick`).
const STALL_TICKS: u64 = 5;
/// How long to wait before retrying a failed storage operation.
const RETRY: Duration = Duration::from_millis(500);
/// Most bytes of records gathered into one log write.
const APPEND_GATHER_MAX: usize = 64 << 20;

/// What reaches the commit core besides shard requests.
pub enum Event {
    Tick,
    Peer(zab::Input),
    Persisted { upto: u64 },
    DiskFailed(bool),
    SnapshotBytes { peer: zab::NodeId, conn: zab::ConnId, zxid: i64, bytes: bytes::Bytes, epochs: Vec<(u32, i64)> },
}

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Everything the commit core starts from.
pub struct CommitSetup {
    pub dirs: Dirs,
    pub recovered: Recovered,
    pub secret: [u8; 16],
    /// The log writer thread (started off the shards' CPUs).
    pub log: LogThread,
    pub zab: ZabConfig,
    /// (accepted epoch, its leader, current epoch) from disk.
    pub epochs: (u32, u32, u32),
}

struct Core {
    node: RefCell<Node>,
    start: Instant,
    shared: Arc<Shared>,
    events: Rc<LocalQueue<Event>>,
    storage: Rc<LocalQueue<(u64, Storage)>>,
    peers: Option<Rc<PeerNet>>,
    outs: Vec<ConnectedSender<ToShard>>,
    snapshot_running: Arc<AtomicBool>,
    last_snapshot_txns: Cell<u64>,
    /// The next append starts a new segment (after a snapshot, so old ones can be purged).
    roll: Rc<Cell<bool>>,
}

impl Core {
    fn now(&self) -> Now {
        Now { mono_ms: self.start.elapsed().as_millis() as u64, wall_ms: wall_ms() }
    }
}

/// Runs the commit core until the process exits.
pub async fn run(
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    setup: CommitSetup,
    inputs: Vec<SharedReceiver<ToCommit>>,
    outputs: Vec<SharedSender<ToShard>>,
) {
    let shards = outputs.len();
    let requests: Rc<LocalQueue<ToCommit>> = Rc::new(LocalQueue::new(cfg.channel_depth * shards.max(1)));
    for rx in inputs {
        let q = requests.clone();
        glommio::spawn_local(async move {
            let rx = rx.connect().await;
            while let Some(m) = rx.recv().await {
                q.push(m).await;
            }
        })
        .detach();
    }
    let mut outs = Vec::with_capacity(shards);
    for tx in outputs {
        outs.push(tx.connect().await);
    }
    let events: Rc<LocalQueue<Event>> = Rc::new(LocalQueue::new(cfg.channel_depth * 4));
    let start = Instant::now();
    let now = Now { mono_ms: 0, wall_ms: wall_ms() };
    let rec = setup.recovered;
    let (accepted_epoch, accepted_leader, current_epoch) = setup.epochs;
    let zab_start = zab::Start {
        accepted_epoch,
        accepted_leader,
        current_epoch,
        applied: rec.state.tree.last_zxid(),
        epochs: rec.epochs,
        history: rec.records,
        history_base: rec.records_base,
    };
    let peers = if setup.zab.voters.len() + setup.zab.observers.len() > 1 {
        match PeerNet::start(&cfg, setup.zab.id, events.clone()) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("corezk: error: {e}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    let node = Node::new(&cfg, setup.zab, shards, zab_start, rec.state, setup.secret, now);
    let core = Rc::new(Core {
        node: RefCell::new(node),
        start,
        shared: shared.clone(),
        events: events.clone(),
        storage: Rc::new(LocalQueue::new(1 << 16)),
        peers,
        outs,
        snapshot_running: Arc::new(AtomicBool::new(false)),
        last_snapshot_txns: Cell::new(0),
        roll: Rc::new(Cell::new(true)),
    });
    glommio::spawn_local(storage(cfg.clone(), core.clone(), setup.log)).detach();
    {
        let q = events.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(TICK).await;
                q.push_now(Event::Tick);
            }
        })
        .detach();
    }
    perform(&cfg, &core, &setup.dirs).await;
    let mut batch: Vec<ToCommit> = Vec::with_capacity(cfg.max_batch);
    let mut evs: Vec<Event> = Vec::new();
    // ZAB counts time in ticks; they follow the monotonic clock, not the timer's firings (a
    // starved or paused node must see its timeouts expire, not stretch).
    let mut ticks_done: u64 = 0;
    // After a stall (this process starved or paused) the ticks it missed are made up only once
    // the input that arrived meanwhile has been read: a peer's messages waiting in a socket
    // must count as heard before the missed ticks call that peer quiet.
    let mut settle_then_tick = false;
    loop {
        // Requests only while the node takes them (back-pressure); events always.
        let accepting = core.node.borrow().accepting();
        if accepting {
            let room = cfg.max_batch;
            futures_lite::future::or(
                async {
                    requests.pop_batch(room, &mut batch).await;
                },
                async {
                    events.pop_batch(1024, &mut evs).await;
                },
            )
            .await;
        } else {
            events.pop_batch(1024, &mut evs).await;
        }
        let now = core.now();
        {
            let mut node = core.node.borrow_mut();
            for e in evs.drain(..) {
                match e {
                    Event::Tick => {
                        let due = (core.start.elapsed().as_millis() / TICK.as_millis()) as u64;
                        let behind = due.saturating_sub(ticks_done).min(TICKS_CAUGHT_UP_MAX);
                        if behind > STALL_TICKS && !std::mem::take(&mut settle_then_tick) {
                            settle_then_tick = true;
                            continue;
                        }
                        for _ in 0..behind {
                            node.tick(now);
                        }
                        ticks_done = ticks_done.max(due);
                    }
                    Event::Peer(input) => node.peer(input, now),
                    Event::Persisted { upto } => node.peer(zab::Input::Persisted { upto }, now),
                    Event::DiskFailed(f) => {
                        node.set_disk_failed(f);
                        shared.disk_failed.store(f, Ordering::Relaxed);
                    }
                    Event::SnapshotBytes { peer, conn, zxid, bytes, epochs } => {
                        node.snapshot_ready(peer, conn, zxid, bytes, epochs, now)
                    }
                }
            }
            for m in batch.drain(..) {
                node.shard_message(m, now);
            }
        }
        perform(&cfg, &core, &setup.dirs).await;
        if settle_then_tick {
            // Let the peer readers take what arrived during the stall (an I/O poll happens while
            // this task sleeps), then make up the ticks.
            glommio::timer::sleep(Duration::from_millis(1)).await;
            core.events.push_now(Event::Tick);
        }
        crate::runtime::slice::yield_if_slice_over().await;
    }
}

/// Carries out what the node asked for.
async fn perform(cfg: &Arc<Config>, core: &Rc<Core>, dirs: &Dirs) {
    let r: NodeReady = core.node.borrow_mut().ready();
    for line in &r.logs {
        eprintln!("corezk: {} {line}", crate::record::text::iso_ms(wall_ms()));
    }
    for op in r.storage {
        core.storage.push_now(op);
    }
    if let Some(p) = &core.peers {
        for (to, note) in r.notifications {
            p.notify(to, note);
        }
        for (to, conn, msg) in r.messages {
            p.send(to, conn, msg);
        }
        for (_, conn) in r.close {
            p.close(conn);
        }
        for leader in r.dial {
            p.dial(leader);
        }
    }
    for (peer, conn) in r.snapshots {
        let (tree, sessions, next_id) = core.node.borrow().snapshot_source();
        let (tx, rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("snapshot-send".into())
            .spawn(move || {
                let zxid = tree.last_zxid();
                let epochs = tree.epochs();
                tx.send((zxid, crate::snapshot::encode(&tree, &sessions, next_id), epochs));
            })
            .expect("cannot start a snapshot thread");
        let q = core.events.clone();
        glommio::spawn_local(async move {
            if let Some((zxid, bytes, epochs)) = rx.await {
                q.push_now(Event::SnapshotBytes { peer, conn, zxid, bytes: bytes.into(), epochs });
            }
        })
        .detach();
    }
    let shared = &core.shared;
    if let Some(s) = r.serving {
        shared.set_serving(s);
    }
    if let Some(ro) = r.read_only {
        shared.set_read_only(ro);
    }
    if r.clients_closed {
        shared.close_clients();
    }
    let published = !r.publish.is_empty();
    for c in r.publish {
        shared.sessions.store(c.session_count, Ordering::Relaxed);
        shared.batches.fetch_add(1, Ordering::Relaxed);
        shared.publish(Arc::new(c));
    }
    shared.set_status(core.node.borrow().status());
    if published || r.clients_closed {
        for o in &core.outs {
            let _ = o.send(ToShard::Doorbell).await;
        }
    }
    maybe_snapshot(cfg, core, dirs);
}

/// Starts a background snapshot of the committed state every `snapCount` transactions.
fn maybe_snapshot(cfg: &Arc<Config>, core: &Rc<Core>, dirs: &Dirs) {
    let applied = core.node.borrow().applied_txns();
    if applied < core.last_snapshot_txns.get() + cfg.snap_count || core.snapshot_running.load(Ordering::Acquire) {
        return;
    }
    core.last_snapshot_txns.set(applied);
    core.roll.set(true);
    core.snapshot_running.store(true, Ordering::Release);
    let running = core.snapshot_running.clone();
    let (tree, sessions, next_id) = core.node.borrow().snapshot_source();
    let dirs = dirs.clone();
    let retain = cfg.autopurge_snap_retain_count as usize;
    let purge = cfg.autopurge_purge_interval > 0;
    std::thread::Builder::new()
        .name("snapshot".into())
        .spawn(move || {
            let bytes = crate::snapshot::encode(&tree, &sessions, next_id);
            match log::write_snapshot(&dirs, tree.last_zxid(), &bytes, if purge { retain } else { usize::MAX }) {
                Ok(p) => eprintln!("corezk: wrote snapshot {} ({} bytes)", p.display(), bytes.len()),
                Err(e) => eprintln!("corezk: ERROR: {e}"),
            }
            running.store(false, Ordering::Release);
        })
        .expect("cannot start the snapshot thread");
}

/// Performs storage operations in order on the log writer thread. Consecutive appends share one
/// write and one fdatasync (group commit). A failure is retried until it works; meanwhile the
/// node refuses writes (its log cannot take them) and reads go on.
async fn storage(cfg: Arc<Config>, core: Rc<Core>, log: LogThread) {
    let mut ops: VecDeque<(u64, Storage)> = VecDeque::new();
    let mut taken = Vec::new();
    loop {
        if ops.is_empty() {
            core.storage.pop_batch(usize::MAX, &mut taken).await;
            ops.extend(taken.drain(..));
        } else {
            // Whatever else arrived joins this round.
            while !core.storage.is_empty() {
                core.storage.pop_batch(usize::MAX, &mut taken).await;
                ops.extend(taken.drain(..));
            }
        }
        let (upto, op, txns, records) = gather(&mut ops, core.roll.replace(false));
        let mut failing = false;
        let took = loop {
            let result = log.submit(&op).await;
            match result {
                Some(Ok(took)) => break took,
                other => {
                    let e = match other {
                        Some(Err(e)) => e.to_string(),
                        _ => "the log writer thread stopped".into(),
                    };
                    if !failing {
                        eprintln!(
                            "corezk: ERROR: cannot write the transaction log ({e}); refusing writes until it works \
                             again, reads continue"
                        );
                        core.events.push_now(Event::DiskFailed(true));
                        failing = true;
                    }
                    glommio::timer::sleep(RETRY).await;
                }
            }
        };
        if failing {
            eprintln!("corezk: the transaction log is writable again; accepting writes");
            core.events.push_now(Event::DiskFailed(false));
        }
        if records > 0 {
            let shared = &core.shared;
            shared.log_write_took(took);
            shared.logged_txns.fetch_add(txns, Ordering::Relaxed);
            shared.log_records.fetch_add(records, Ordering::Relaxed);
        }
        if took > Duration::from_millis(cfg.fsync_warning_threshold_ms) {
            let what = match &op {
                Op::Append { .. } => "writing and syncing the transaction log",
                Op::Truncate { .. } => "truncating the transaction log",
                Op::Snapshot { .. } => "installing the leader's snapshot",
                Op::Epochs { .. } => "storing the ZAB epochs",
            };
            let count = if records > 0 { format!(" for {records} records") } else { String::new() };
            eprintln!(
                "corezk: WARNING: {what} took {} ms{count} (fsync.warningthresholdms={}): writes wait for the disk",
                took.as_millis(),
                cfg.fsync_warning_threshold_ms
            );
        }
        core.events.push_now(Event::Persisted { upto });
    }
}

/// The next operation: every leading append gathered into one, or the next other operation.
/// Returns (last sequence number covered, the op, transactions, records).
fn gather(ops: &mut VecDeque<(u64, Storage)>, roll: bool) -> (u64, Op, u64, u64) {
    let (seq, first) = ops.pop_front().expect("an operation");
    match first {
        Storage::Append(b) => {
            let first_zxid = b.first;
            let mut records = b.bytes.to_vec();
            let (mut upto, mut txns, mut count) = (seq, txn_count(&b), 1u64);
            while let Some((_, Storage::Append(next))) = ops.front() {
                if records.len() + next.bytes.len() > APPEND_GATHER_MAX {
                    break;
                }
                let Some((s, Storage::Append(next))) = ops.pop_front() else { unreachable!() };
                records.extend_from_slice(&next.bytes);
                txns += txn_count(&next);
                count += 1;
                upto = s;
            }
            (upto, Op::Append { records, first_zxid, roll }, txns, count)
        }
        Storage::Truncate { after } => (seq, Op::Truncate { after }, 0, 0),
        Storage::Snapshot { zxid, bytes, .. } => (seq, Op::Snapshot { zxid, bytes }, 0, 0),
        Storage::Epochs { accepted_epoch, accepted_leader, current_epoch } => {
            (seq, Op::Epochs { accepted: accepted_epoch, leader: accepted_leader, current: current_epoch }, 0, 0)
        }
    }
}

fn txn_count(b: &zab::Batch) -> u64 {
    crate::record::header(&b.bytes).map_or(0, |h| h.txn_count as u64)
}
