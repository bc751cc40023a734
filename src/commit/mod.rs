//! The commit core's runtime: gathers writes from every shard, runs them through the
//! sequencer, makes each batch durable (one log record, group commit), then fans it out to all
//! shards in order. Also drives session expiry, container/TTL reaping and snapshots.
//!
//! Owns the channels, the clock, the timers and the log writer around the pure `sequencer`.
//! Makes no protocol decisions of its own. While one batch is being written and synced, the
//! next one gathers: that is the group commit.

pub mod msg;

use crate::config::Config;
use crate::log::writer::LogThread;
use crate::log::{self, Dirs, Recovered};
use crate::record;
use crate::runtime::local::{with_ticks, LocalQueue, Notify};
use crate::runtime::shared::Shared;
use crate::sequencer::{Now, Sequencer};
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use msg::{ToCommit, ToShard};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

enum Input {
    Msg(ToCommit),
    Tick,
}

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// How often the commit core checks session expiry.
const TICK: Duration = Duration::from_millis(100);
/// How long to wait before retrying a failed log write.
const RETRY: Duration = Duration::from_millis(500);

struct Core {
    seq: RefCell<Sequencer>,
    start: Instant,
    /// Rung when the sequencer has something for the logger.
    work: Notify,
    /// Rung when the logger took a batch (room for the sequencer again).
    sealed: Notify,
}

impl Core {
    fn now(&self) -> Now {
        Now { mono_ms: self.start.elapsed().as_millis() as u64, wall_ms: wall_ms() }
    }
}

/// Everything the commit core starts from.
pub struct CommitSetup {
    pub dirs: Dirs,
    pub recovered: Recovered,
    pub secret: [u8; 16],
    /// The log writer thread (started off the shards' CPUs).
    pub log: LogThread,
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
    let queue: Rc<LocalQueue<Input>> = Rc::new(LocalQueue::new(cfg.channel_depth * shards.max(1)));
    for rx in inputs {
        let q = queue.clone();
        glommio::spawn_local(async move {
            let rx = with_ticks(rx.connect()).await;
            while let Some(m) = rx.recv().await {
                q.push(Input::Msg(m)).await;
            }
        })
        .detach();
    }
    let mut outs = Vec::with_capacity(shards);
    for tx in outputs {
        outs.push(with_ticks(tx.connect()).await);
    }
    {
        let q = queue.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(TICK).await;
                q.push_now(Input::Tick);
            }
        })
        .detach();
    }
    let start = Instant::now();
    let first_id = crate::session::initial_session_id(0, wall_ms()).max(setup.recovered.next_session_id);
    let seq = Sequencer::new(&cfg, shards, first_id, setup.secret);
    let core = Rc::new(Core { seq: RefCell::new(seq), start, work: Notify::new(), sealed: Notify::new() });
    {
        let now = core.now();
        let rec = setup.recovered;
        core.seq.borrow_mut().restore(rec.tree, &rec.sessions, now);
        let first = core.seq.borrow_mut().take_batch();
        let (c, _) = first.unwrap_or_else(|| empty_batch(&core));
        shared.publish(Arc::new(c));
        for o in &outs {
            let _ = o.send(ToShard::Doorbell).await;
        }
    }
    glommio::spawn_local(logger(cfg.clone(), shared.clone(), core.clone(), setup.dirs, setup.log, outs)).detach();
    let reap_every = Duration::from_millis(cfg.container_check_interval_ms.max(1));
    let mut last_reap = Instant::now();
    let mut batch = Vec::with_capacity(cfg.max_batch);
    loop {
        // Back-pressure: a full open batch waits for the logger to take it.
        loop {
            let wait = core.sealed.notified();
            let full = {
                let seq = core.seq.borrow();
                seq.pending() >= cfg.max_batch || seq.pending_bytes() >= cfg.max_batch_bytes
            };
            if !full {
                break;
            }
            wait.await;
        }
        batch.clear();
        let room = cfg.max_batch - core.seq.borrow().pending();
        queue.pop_batch(room, &mut batch).await;
        let now = core.now();
        {
            let mut seq = core.seq.borrow_mut();
            for input in batch.drain(..) {
                match input {
                    Input::Msg(m) => seq.handle(m, now),
                    Input::Tick => {
                        seq.expire_sessions(now);
                        if last_reap.elapsed() >= reap_every {
                            last_reap = Instant::now();
                            seq.reap(now);
                        }
                    }
                }
            }
        }
        core.work.notify();
        glommio::yield_if_needed().await;
    }
}

fn empty_batch(core: &Core) -> (msg::Committed, Vec<crate::txn::Txn>) {
    let seq = core.seq.borrow();
    (
        msg::Committed {
            tree: Arc::new(seq.tree().clone()),
            triggers: Vec::new(),
            closed_sessions: Vec::new(),
            parts: vec![msg::ShardPart::default(); seq.shard_count()],
            session_count: seq.session_count(),
        },
        Vec::new(),
    )
}

/// Seals batches, writes each as one log record (retrying while the disk fails), publishes it,
/// and starts snapshots.
async fn logger(
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    core: Rc<Core>,
    dirs: Dirs,
    log: LogThread,
    outs: Vec<ConnectedSender<ToShard>>,
) {
    // The first record after a start or a snapshot opens a new segment.
    let mut roll = true;
    let snapshot_running = Arc::new(AtomicBool::new(false));
    let mut since_snapshot: u64 = 0;
    let mut durable_tree = Arc::new(core.seq.borrow().tree().clone());
    loop {
        // Everything sealed so far: several batches (fenced apart for session order) still share
        // one write and one fdatasync.
        let mut batches = loop {
            let wait = core.work.notified();
            let mut taken = Vec::new();
            loop {
                let next = core.seq.borrow_mut().take_batch();
                match next {
                    Some(b) => taken.push(b),
                    None => break,
                }
            }
            if !taken.is_empty() {
                break taken;
            }
            wait.await;
        };
        core.sealed.notify();
        let txn_count: usize = batches.iter().map(|(_, t)| t.len()).sum();
        let snapshot_due = txn_count > 0
            && since_snapshot + txn_count as u64 >= cfg.snap_count
            && !snapshot_running.load(Ordering::Acquire);
        let snapshot_sessions = snapshot_due.then(|| {
            let seq = core.seq.borrow();
            (seq.session_list(), seq.next_session_id())
        });
        if txn_count > 0 {
            let mut rec = Vec::new();
            let mut first = None;
            for (_, txns) in &batches {
                if let Some(t) = txns.first() {
                    first.get_or_insert(t.zxid);
                    rec.extend_from_slice(&record::encode(txns));
                }
            }
            let first = first.expect("a batch with transactions");
            let mut failing = false;
            let took = loop {
                let e = match log.append(&rec, first, roll).await {
                    Some(Ok(took)) => break took,
                    Some(Err(e)) => e,
                    None => std::io::Error::other("the log writer thread stopped"),
                };
                if !failing {
                    eprintln!(
                        "corezk: ERROR: cannot write the transaction log in {} ({e}); refusing writes until it \
                         works again, reads continue",
                        dirs.log.display()
                    );
                    core.seq.borrow_mut().set_disk_failed(true);
                    shared.disk_failed.store(true, Ordering::Relaxed);
                    failing = true;
                }
                glommio::timer::sleep(RETRY).await;
                // Refusals decided meanwhile must still reach their clients.
                flush_refusals(&core, &shared, &outs, &durable_tree).await;
            };
            roll = false;
            shared.log_write_took(took);
            if took > Duration::from_millis(cfg.fsync_warning_threshold_ms) {
                eprintln!(
                    "corezk: WARNING: writing and syncing the transaction log took {} ms for {} bytes \
                     (fsync.warningthresholdms={}): writes wait for the disk",
                    took.as_millis(),
                    rec.len(),
                    cfg.fsync_warning_threshold_ms
                );
            }
            if failing {
                eprintln!("corezk: the transaction log is writable again; accepting writes");
                core.seq.borrow_mut().set_disk_failed(false);
                shared.disk_failed.store(false, Ordering::Relaxed);
            }
            shared.logged_txns.fetch_add(txn_count as u64, Ordering::Relaxed);
            shared
                .log_records
                .fetch_add(batches.iter().filter(|(_, t)| !t.is_empty()).count() as u64, Ordering::Relaxed);
            since_snapshot += txn_count as u64;
        }
        let mut tree = durable_tree.clone();
        for (committed, _) in batches.drain(..) {
            shared.sessions.store(committed.session_count, Ordering::Relaxed);
            shared.batches.fetch_add(1, Ordering::Relaxed);
            tree = committed.tree.clone();
            shared.publish(Arc::new(committed));
        }
        durable_tree = tree.clone();
        for o in &outs {
            if o.send(ToShard::Doorbell).await.is_err() {
                return;
            }
        }
        if let Some((sessions, next_id)) = snapshot_sessions {
            since_snapshot = 0;
            roll = true;
            snapshot_running.store(true, Ordering::Release);
            let running = snapshot_running.clone();
            let dirs = dirs.clone();
            let retain = cfg.autopurge_snap_retain_count as usize;
            let purge = cfg.autopurge_purge_interval > 0;
            std::thread::Builder::new()
                .name("snapshot".into())
                .spawn(move || {
                    let bytes = crate::snapshot::encode(&tree, &sessions, next_id);
                    match log::write_snapshot(&dirs, tree.last_zxid(), &bytes, if purge { retain } else { usize::MAX })
                    {
                        Ok(p) => eprintln!("corezk: wrote snapshot {} ({} bytes)", p.display(), bytes.len()),
                        Err(e) => eprintln!("corezk: ERROR: {e}"),
                    }
                    running.store(false, Ordering::Release);
                })
                .expect("cannot start the snapshot thread");
        }
    }
}

/// While the log is failing, publishes batches that carry no transactions (refused writes,
/// re-attached sessions) so their clients are not left waiting. They show the last durable
/// tree: nothing that is not on disk becomes visible.
async fn flush_refusals(
    core: &Core,
    shared: &Shared,
    outs: &[ConnectedSender<ToShard>],
    durable: &Arc<crate::tree::Tree>,
) {
    let batch = {
        let mut seq = core.seq.borrow_mut();
        if seq.has_transactions() {
            None
        } else {
            seq.take_batch()
        }
    };
    if let Some((mut c, _)) = batch {
        c.tree = durable.clone();
        core.sealed.notify();
        shared.publish(Arc::new(c));
        for o in outs {
            let _ = o.send(ToShard::Doorbell).await;
        }
    }
}
