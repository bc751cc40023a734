//! The executor pool: preflight checks, one pinned glommio executor per shard, channel wiring.
//!
//! Owns process start-up (locked memory, io_uring probe, data-directory lock, CPU map) and
//! wiring the shards to the commit core. Makes no protocol decisions.

pub mod kick;
pub mod local;
pub mod oneshot;
pub mod port;
pub mod preflight;
pub mod shared;
pub mod slice;

use crate::commit;
use crate::config::Config;
use crate::log;
use crate::node::msg::{ToCommit, ToShard};
use crate::shard;
use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};
use shared::Shared;
use std::net::SocketAddr;
use std::sync::Arc;

/// Locked memory each executor's io_uring buffers take.
pub const IO_MEMORY_PER_EXECUTOR: usize = 1 << 20;

/// The replication settings: the ensemble from `server.N` and `myid` (none: a standalone
/// server, a quorum of one), ZooKeeper's limits in ticks of the commit core's clock. Takes this
/// server's client address from its `server.N` line when the line gives one.
fn zab_config(cfg: &mut Config) -> Result<crate::zab::ZabConfig, String> {
    let servers = cfg.ensemble()?;
    let ticks = |n: u64| (n / commit::TICK.as_millis() as u64).max(1);
    let tick = cfg.tick_time as u64;
    let (id, voters, observers) = if servers.len() <= 1 {
        let id = cfg.myid.or(servers.first().map(|s| s.id)).unwrap_or(1);
        (id, vec![id], vec![])
    } else {
        let id = match cfg.myid {
            Some(id) => id,
            None => {
                let p = cfg.data_dir.join("myid");
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| format!("an ensemble needs this server's id: cannot read {}: {e}", p.display()))?;
                text.trim().parse().map_err(|_| format!("{}: not a server id: {text:?}", p.display()))?
            }
        };
        let me = servers.iter().find(|s| s.id == id).ok_or_else(|| format!("myid {id} has no server.{id} line"))?;
        if me.observer != cfg.peer_type_observer && cfg.peer_type_observer {
            return Err(format!("peerType=observer but server.{id} is not marked :observer"));
        }
        if let Some(c) = me.client {
            cfg.client_port = c.port();
            if !c.ip().is_unspecified() {
                cfg.client_port_address = c.ip();
            }
        }
        let voters = servers.iter().filter(|s| !s.observer).map(|s| s.id).collect();
        let observers = servers.iter().filter(|s| s.observer).map(|s| s.id).collect();
        (id, voters, observers)
    };
    let z = crate::zab::ZabConfig {
        id,
        voters,
        observers,
        init_limit_ticks: ticks(cfg.init_limit as u64 * tick),
        sync_limit_ticks: ticks(cfg.sync_limit as u64 * tick),
        ping_ticks: ticks(tick / 2),
        election_resend_ticks: 20,
        finalize_ticks: 2,
        dial_retry_ticks: 5,
        history_bytes_max: 64 << 20,
        uncommitted_bytes_max: 4 * cfg.max_batch_bytes,
        snapshot_chunk_bytes: 4 << 20,
        snapshot_bytes_max: 64 << 30,
        zxid_counter_max: cfg.zxid_counter_max,
        fault: None,
    };
    z.validate().map_err(|e| format!("ensemble configuration: {e}"))?;
    if z.voters.len() + z.observers.len() > 1 {
        eprintln!(
            "corezk: server {id} of an ensemble of {} voters and {} observers",
            z.voters.len(),
            z.observers.len()
        );
    }
    Ok(z)
}

/// Starts the server and blocks until it stops. Returns an error message for the operator.
pub fn serve(cfg: Config) -> Result<(), String> {
    for note in &cfg.ignored {
        eprintln!("corezk: {note}");
    }
    let mut cfg = cfg;
    let zab_cfg = zab_config(&mut cfg)?;
    if cfg.client_port == 0 {
        return Err("clientPort must be a port number > 0".into());
    }
    let cpus = preflight::cpus_for(cfg.cores)?;
    preflight::ensure_memlock(cpus.len(), IO_MEMORY_PER_EXECUTOR)?;
    preflight::probe_io_uring()?;
    let _lock = preflight::lock_data_dir(&cfg.data_dir)?;
    let addr = SocketAddr::new(cfg.client_port_address, cfg.client_port);
    let client_port = port::ClientPort::bind(addr)?;
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
    let recovered = log::recover(&dirs, &secret, zab_cfg.history_bytes_max)?;
    for n in &recovered.notes {
        eprintln!("corezk: {n}");
    }
    let state = &recovered.state;
    eprintln!(
        "corezk: recovered to zxid 0x{:x} ({} znodes, {} sessions, {} transactions replayed, {} records to replicate) \
         in {} ms",
        state.tree.last_zxid(),
        state.tree.node_count(),
        state.sessions.len(),
        recovered.replayed,
        recovered.records.iter().filter(|b| b.last > state.tree.last_zxid()).count(),
        t0.elapsed().as_millis()
    );
    let last_epoch = recovered.epochs.keys().next_back().copied().unwrap_or(0);
    let epochs = log::load_epochs(&dirs.data)?.unwrap_or((last_epoch, 0, last_epoch));
    // Started here, on the main thread, so it inherits the process's CPU mask and not a shard's.
    let log = log::writer::LogThread::start(dirs.clone(), cfg.log_segment_bytes, cfg.force_sync)
        .map_err(|e| format!("cannot start the log writer thread: {e}"))?;
    let standalone = zab_cfg.voters.len() + zab_cfg.observers.len() <= 1;
    let mut setup = Some(commit::CommitSetup { dirs, recovered, secret, log, zab: zab_cfg, epochs });
    let n = cpus.len();
    let kicker = kick::Kicker::start(n).map_err(|e| format!("cannot start the kicker thread: {e}"))?;
    let cfg = Arc::new(cfg);
    let shared = Arc::new(Shared::new(cfg.clone(), n, standalone));
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
        let listener = client_port.share()?;
        let kick = kicker.slot(i);
        let h = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{i}"))
            .io_memory(IO_MEMORY_PER_EXECUTOR)
            .preempt_timer(slice::PREEMPT_TIMER)
            .spawn(move || async move {
                glommio::spawn_local(kick::keep_awake(kick)).detach();
                if let Some(((rx, tx), setup)) = commit_parts {
                    // The commit core shares its CPU with shard 0's connections: its own favoured
                    // task queue (busy readers yield it the core every `slice::SLICE`).
                    let tq = glommio::executor().create_task_queue(
                        glommio::Shares::Static(4000),
                        glommio::Latency::NotImportant,
                        "commit",
                    );
                    glommio::spawn_local_into(commit::run(cfg, shared.clone(), setup, rx, tx), tq)
                        .expect("the commit task queue exists")
                        .detach();
                }
                shard::run(i, shared, ctx, srx, listener, addr).await
            })
            .map_err(|e| format!("cannot start executor for shard {i} on CPU {cpu}: {e}"))?;
        handles.push(h);
    }
    drop(client_port);
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("shard {i} failed: {e}")),
            Err(e) => return Err(format!("shard {i} executor failed: {e}")),
        }
    }
    Ok(())
}
