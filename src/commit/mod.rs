//! The commit core's runtime: gathers writes from every shard into batches, runs them through
//! the sequencer, and fans each committed batch out to all shards in order.
//!
//! Owns the channels, the clock, the timers and password randomness around the pure
//! `sequencer`. Makes no protocol decisions of its own. (Durable logging slots in between
//! sequencing and fan-out: the batch is the unit of group commit.)

pub mod msg;

use crate::config::Config;
use crate::runtime::local::LocalQueue;
use crate::runtime::shared::Shared;
use crate::sequencer::{Now, Sequencer};
use glommio::channels::shared_channel::{SharedReceiver, SharedSender};
use msg::{ToCommit, ToShard};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

enum Input {
    Msg(ToCommit),
    Tick,
}

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn random_passwd() -> [u8; 16] {
    let mut pw = [0u8; 16];
    getrandom::getrandom(&mut pw).expect("the OS random source failed");
    pw
}

/// How often the commit core checks session expiry.
const TICK: Duration = Duration::from_millis(100);

/// Runs the commit core until the process exits.
pub async fn run(
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    inputs: Vec<SharedReceiver<ToCommit>>,
    outputs: Vec<SharedSender<ToShard>>,
) {
    let shards = outputs.len();
    let queue: Rc<LocalQueue<Input>> = Rc::new(LocalQueue::new(cfg.channel_depth * shards.max(1)));
    for rx in inputs {
        let q = queue.clone();
        glommio::spawn_local(async move {
            let rx = rx.connect().await;
            while let Some(m) = rx.recv().await {
                q.push(Input::Msg(m)).await;
            }
        })
        .detach();
    }
    let mut outs = Vec::with_capacity(shards);
    for tx in outputs {
        outs.push(tx.connect().await);
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
    let mut seq = Sequencer::new(&cfg, shards, crate::session::initial_session_id(0, wall_ms()));
    let reap_every = Duration::from_millis(cfg.container_check_interval_ms.max(1));
    let mut last_reap = Instant::now();
    let mut batch = Vec::with_capacity(cfg.max_batch);
    let mut passwd = random_passwd;
    loop {
        batch.clear();
        queue.pop_batch(cfg.max_batch, &mut batch).await;
        let now = Now { mono_ms: start.elapsed().as_millis() as u64, wall_ms: wall_ms() };
        for input in batch.drain(..) {
            match input {
                Input::Msg(m) => seq.handle(m, now, &mut passwd),
                Input::Tick => {
                    seq.expire_sessions(now);
                    if last_reap.elapsed() >= reap_every {
                        last_reap = Instant::now();
                        seq.reap(now);
                    }
                }
            }
        }
        if let Some(c) = seq.take_batch() {
            shared.sessions.store(c.session_count, Ordering::Relaxed);
            shared.batches.fetch_add(1, Ordering::Relaxed);
            shared.publish(Arc::new(c));
            for o in &outs {
                if o.send(ToShard::Doorbell).await.is_err() {
                    return;
                }
            }
        }
        glommio::yield_if_needed().await;
    }
}
