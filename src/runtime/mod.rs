//! The executor pool: preflight checks, one pinned glommio executor per shard, channel wiring.
//!
//! Owns process start-up (locked memory, io_uring probe, data-directory lock, CPU map) and
//! wiring the shards to the commit core. Makes no protocol decisions.

pub mod local;
pub mod oneshot;
pub mod preflight;
pub mod shared;

use crate::commit;
use crate::commit::msg::{ToCommit, ToShard};
use crate::config::Config;
use crate::log;
use crate::shard;
use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};
use shared::Shared;
use std::net::SocketAddr;
use std::sync::Arc;

/// How long one task queue may run before the executor polls I/O and other queues.
pub const PREEMPT_AFTER: std::time::Duration = std::time::Duration::from_micros(500);

/// Locked memory each executor's io_uring buffers take.
pub const IO_MEMORY_PER_EXECUTOR: usize = 1 << 20;

/// How long the shards may take to start before the process starts itself again.
const START_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);
const START_ATTEMPTS: u32 = 3;

/// Waits for every shard to be wired up. glommio 0.9 can leave an executor asleep for good
/// while its shared channels connect (its timers stop firing too); such a start never
/// recovers, so the process replaces itself with a fresh copy of itself (same pid, same
/// arguments; the data-directory lock and the listeners close on exec) a bounded number of
/// times before giving up.
fn wait_until_started(shared: &Shared, n: usize) {
    let t0 = std::time::Instant::now();
    while shared.ready.load(std::sync::atomic::Ordering::Acquire) < n {
        if t0.elapsed() > START_DEADLINE {
            let attempt: u32 = std::env::var("COREZK_START_ATTEMPT").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
            if attempt >= START_ATTEMPTS {
                eprintln!("corezk: error: the shards did not start within {START_DEADLINE:?} ({attempt} attempts)");
                std::process::exit(1);
            }
            eprintln!(
                "corezk: the shards did not start within {START_DEADLINE:?}; starting again (attempt {})",
                attempt + 1
            );
            use std::os::unix::process::CommandExt;
            let exe = std::env::current_exe().unwrap_or_else(|_| "corezk".into());
            let err = std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env("COREZK_START_ATTEMPT", (attempt + 1).to_string())
                .exec();
            eprintln!("corezk: error: cannot restart: {err}");
            std::process::exit(1);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Starts the server and blocks until it stops. Returns an error message for the operator.
pub fn serve(cfg: Config) -> Result<(), String> {
    for note in &cfg.ignored {
        eprintln!("corezk: {note}");
    }
    if !cfg.servers.is_empty() {
        eprintln!(
            "corezk: {} server.N lines found: ensembles are not implemented yet; running standalone",
            cfg.servers.len()
        );
    }
    if cfg.client_port == 0 {
        return Err("clientPort must be a port number > 0".into());
    }
    let cpus = preflight::cpus_for(cfg.cores)?;
    preflight::ensure_memlock(cpus.len(), IO_MEMORY_PER_EXECUTOR)?;
    preflight::probe_io_uring()?;
    let _lock = preflight::lock_data_dir(&cfg.data_dir)?;
    if let Some(d) = &cfg.data_log_dir {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create dataLogDir {}: {e}", d.display()))?;
    }
    if !cfg.force_sync {
        eprintln!(
            "corezk: WARNING: forceSync=no: writes are acknowledged before they are on disk; a crash can lose them"
        );
    }
    let dirs = log::Dirs { data: cfg.data_dir.clone(), log: cfg.data_log_dir.clone().unwrap_or(cfg.data_dir.clone()) };
    let secret = log::load_secret(&dirs.data)?;
    let t0 = std::time::Instant::now();
    let recovered = log::recover(&dirs)?;
    for n in &recovered.notes {
        eprintln!("corezk: {n}");
    }
    eprintln!(
        "corezk: recovered to zxid 0x{:x} ({} znodes, {} sessions, {} transactions replayed) in {} ms",
        recovered.tree.last_zxid(),
        recovered.tree.node_count(),
        recovered.sessions.len(),
        recovered.replayed,
        t0.elapsed().as_millis()
    );
    // Started here, on the main thread, so it inherits the process's CPU mask and not a shard's.
    let log = log::writer::LogThread::start(dirs.log.clone(), cfg.log_segment_bytes, cfg.force_sync)
        .map_err(|e| format!("cannot start the log writer thread: {e}"))?;
    let mut setup = Some(commit::CommitSetup { dirs, recovered, secret, log });
    let n = cpus.len();
    let addr = SocketAddr::new(cfg.client_port_address, cfg.client_port);
    let cfg = Arc::new(cfg);
    let shared = Arc::new(Shared::new(cfg.clone(), n));
    let depth = cfg.channel_depth;
    let mut to_commit_rx = Vec::new();
    let mut to_shard_tx = Vec::new();
    let mut shard_ends = Vec::new();
    for _ in 0..n {
        let (ctx, crx) = shared_channel::new_bounded::<ToCommit>(depth);
        let (stx, srx) = shared_channel::new_bounded::<ToShard>(depth);
        to_commit_rx.push(crx);
        to_shard_tx.push(stx);
        shard_ends.push((ctx, srx));
    }
    eprintln!("corezk {}: {n} shard(s) on CPUs {cpus:?}, client port {addr}", env!("CARGO_PKG_VERSION"));
    let mut handles = Vec::new();
    let mut commit_parts = Some((to_commit_rx, to_shard_tx));
    for (i, ((ctx, srx), cpu)) in shard_ends.into_iter().zip(cpus).enumerate() {
        let shared = shared.clone();
        let commit_parts = if i == 0 { commit_parts.take().zip(setup.take()) } else { None };
        let cfg = cfg.clone();
        let h = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{i}"))
            .io_memory(IO_MEMORY_PER_EXECUTOR)
            .preempt_timer(PREEMPT_AFTER)
            .spawn(move || async move {
                if let Some(((rx, tx), setup)) = commit_parts {
                    // The commit core shares its CPU with shard 0's connections: its own task
                    // queue, favoured and latency-sensitive, keeps busy readers from starving it.
                    let tq = glommio::executor().create_task_queue(
                        glommio::Shares::Static(4000),
                        glommio::Latency::Matters(PREEMPT_AFTER),
                        "commit",
                    );
                    glommio::spawn_local_into(commit::run(cfg, shared.clone(), setup, rx, tx), tq)
                        .expect("the commit task queue exists")
                        .detach();
                }
                shard::run(i, shared, ctx, srx, addr).await
            })
            .map_err(|e| format!("cannot start executor for shard {i} on CPU {cpu}: {e}"))?;
        handles.push(h);
    }
    wait_until_started(&shared, n);
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("shard {i} failed: {e}")),
            Err(e) => return Err(format!("shard {i} executor failed: {e}")),
        }
    }
    Ok(())
}
