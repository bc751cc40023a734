//! The load engine: setup, one pinned glommio executor per thread, sessions, teardown.
//!
//! Each executor owns its sessions and their statistics; nothing is shared while measuring
//! except a once-a-second progress message to the main thread. A session is one TCP connection
//! with a sender task (keeps `inflight` requests outstanding, or follows the open-loop schedule)
//! and a reader task (matches replies to requests in FIFO order).

use crate::config::LoadConfig;
use crate::stats::{new_histogram, Stats, Tick};
use crate::workload::{MixKind, Mixer, OpKind, Rng};
use crate::zk;
use bytes::Bytes;
use corezk::proto::codes::{err, op};
use corezk::proto::records::{MultiOp, Request};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Locked memory each executor's io_uring buffers take (small: the container's hard limit is low).
pub const IO_MEMORY_PER_EXECUTOR: usize = 1 << 20;

/// Ephemeral/sequential nodes a session holds before it deletes its oldest one.
const NODE_BACKLOG: usize = 4;

/// Requests a setup connection keeps outstanding.
const SETUP_WINDOW: usize = 256;

/// How long a session waits for any reply before it gives the connection up.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// An idle open-loop session pings after this long, so its session never expires.
const PING_IDLE: Duration = Duration::from_secs(2);

/// What the setup made: the paths and the value the load uses.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub base: String,
    pub keys: Arc<Vec<String>>,
    pub value: Bytes,
}

impl Prepared {
    pub fn new(cfg: &LoadConfig) -> Prepared {
        let base = cfg.base_path();
        let keys = (0..cfg.keys).map(|i| format!("{base}/k{i:07}")).collect();
        // Printable, deterministic filler.
        let mut rng = Rng::new(0x5eed);
        let value: Vec<u8> = (0..cfg.value_size).map(|_| b'a' + rng.below(26) as u8).collect();
        Prepared { base, keys: Arc::new(keys), value: Bytes::from(value) }
    }
}

/// Creates `/loadgen-<id>`, `/loadgen-<id>/seq` and the key nodes (with values), through a few
/// pipelined sessions. Keys that already exist get their value rewritten.
pub fn setup(cfg: &LoadConfig) -> Result<Prepared, String> {
    let p = Prepared::new(cfg);
    let mut c = zk::SyncClient::connect(&cfg.hosts[0], cfg.session_timeout_ms)?;
    if cfg.skip_setup {
        let r = c.call(&[Request::Exists { path: p.keys[0].clone(), watch: false }])?;
        c.close();
        if r[0].0 != 0 {
            return Err(format!(
                "--skip-setup: {} does not exist ({}); run once without --skip-setup (and with --keep)",
                p.keys[0],
                zk::error_name(r[0].0)
            ));
        }
        return Ok(p);
    }
    let r = c.call(&[zk::create(&p.base, Some(Bytes::new()), 0), zk::create(&format!("{}/seq", p.base), None, 0)])?;
    c.close();
    for (code, _) in &r {
        if *code != 0 && !zk::is_node_exists(*code) {
            return Err(format!("setup: cannot create {}: {}", p.base, zk::error_name(*code)));
        }
    }
    let conns = cfg.keys.div_ceil(SETUP_WINDOW).clamp(1, 4);
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|i| {
                let p = &p;
                let host = cfg.hosts[i % cfg.hosts.len()].clone();
                s.spawn(move || -> Result<(), String> {
                    let mut c = zk::SyncClient::connect(&host, cfg.session_timeout_ms)?;
                    let mine: Vec<&String> = p.keys.iter().skip(i).step_by(conns).collect();
                    let reqs: Vec<Request> = mine.iter().map(|k| zk::create(k, Some(p.value.clone()), 0)).collect();
                    let replies = c.call_windowed(&reqs, SETUP_WINDOW)?;
                    let mut rewrite = Vec::new();
                    for (k, (code, _)) in mine.iter().zip(&replies) {
                        match *code {
                            0 => {}
                            e if zk::is_node_exists(e) => rewrite.push(Request::SetData {
                                path: (*k).clone(),
                                data: Some(p.value.clone()),
                                version: -1,
                            }),
                            e => return Err(format!("setup: cannot create {k}: {}", zk::error_name(e))),
                        }
                    }
                    for (code, _) in c.call_windowed(&rewrite, SETUP_WINDOW)? {
                        if code != 0 {
                            return Err(format!("setup: cannot rewrite a key's value: {}", zk::error_name(code)));
                        }
                    }
                    c.close();
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("setup thread panicked".into()))).collect()
    });
    results.into_iter().collect::<Result<Vec<()>, String>>()?;
    Ok(p)
}

/// Deletes `base` and everything under it. Returns how many nodes were deleted.
pub fn delete_tree(host: &str, base: &str, timeout_ms: i32) -> Result<usize, String> {
    let mut c = zk::SyncClient::connect(host, timeout_ms)?;
    // Level by level: list every node of a level (pipelined), then delete deepest first.
    let mut levels: Vec<Vec<String>> = vec![vec![base.to_string()]];
    loop {
        let last = levels.last().expect("non-empty");
        let reqs: Vec<Request> =
            last.iter().map(|p| Request::GetChildren { path: p.clone(), watch: false, with_stat: false }).collect();
        let replies = c.call_windowed(&reqs, SETUP_WINDOW)?;
        let mut next = Vec::new();
        for (parent, (code, body)) in last.iter().zip(replies) {
            if code == 0 {
                for child in zk::children(&body)? {
                    next.push(format!("{parent}/{child}"));
                }
            }
        }
        if next.is_empty() {
            break;
        }
        levels.push(next);
    }
    let mut deleted = 0;
    for level in levels.iter().rev() {
        let reqs: Vec<Request> = level.iter().map(|p| Request::Delete { path: p.clone(), version: -1 }).collect();
        for (code, _) in c.call_windowed(&reqs, SETUP_WINDOW)? {
            match code {
                0 => deleted += 1,
                e if e == err::NO_NODE => {}
                e => {
                    c.close();
                    return Err(format!("teardown: delete failed: {}", zk::error_name(e)));
                }
            }
        }
    }
    c.close();
    Ok(deleted)
}

/// Removes what `setup` made (and whatever the load left under it).
pub fn teardown(cfg: &LoadConfig, p: &Prepared) -> Result<usize, String> {
    delete_tree(&cfg.hosts[0], &p.base, cfg.session_timeout_ms)
}

/// The CPUs this process may run on (sched_getaffinity), in order: the server's own check.
pub use corezk::runtime::preflight::{allowed_cpus, probe_io_uring};

/// Raises RLIMIT_MEMLOCK to cover `executors` io_uring rings where allowed (the server's check).
pub fn ensure_memlock(executors: usize) -> Result<(), String> {
    corezk::runtime::preflight::ensure_memlock(executors, IO_MEMORY_PER_EXECUTOR)
}

/// What one load run measured.
#[derive(Debug)]
pub struct LoadOutcome {
    /// All threads' statistics, merged.
    pub stats: Stats,
    /// The measured interval (the configured duration).
    pub measured: Duration,
    /// CPU of each executor thread.
    pub cpus: Vec<usize>,
    /// One line per second: the run's ticks merged over threads.
    pub progress: Vec<ProgressPoint>,
}

/// One second of progress, over all threads.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProgressPoint {
    pub second: u64,
    pub warmup: bool,
    pub ops: u64,
    pub errors: u64,
    pub p99_us: f64,
}

/// State the main thread and the executors share (only at start and for aborts).
struct Coordinator {
    ready: AtomicUsize,
    abort: AtomicBool,
    failure: Mutex<Option<String>>,
    start: OnceLock<Instant>,
}

/// One session's fixed assignment.
#[derive(Clone, Debug)]
struct SessionSpec {
    /// Index among all sessions of the run.
    index: usize,
    addr: SocketAddr,
    host: String,
    seed: u64,
}

/// What every session of a thread shares: the workload, the clock marks and the statistics.
struct ThreadCtx {
    cfg: LoadConfig,
    prepared: Prepared,
    mixer: Mixer,
    start: Instant,
    measure_start: Instant,
    end: Instant,
    stats: RefCell<Stats>,
    interval: RefCell<(u64, u64, Histogram<u64>)>,
}

impl ThreadCtx {
    /// Records a reply (or a lost request) that arrived at `now`.
    fn complete(&self, kind: OpKind, t0: Instant, now: Instant, code: i32) {
        if now >= self.end {
            return;
        }
        let ns = now.saturating_duration_since(t0).as_nanos() as u64;
        {
            let mut iv = self.interval.borrow_mut();
            iv.0 += 1;
            if code != 0 {
                iv.1 += 1;
            }
            iv.2.saturating_record(ns.max(1));
        }
        let mut st = self.stats.borrow_mut();
        if now < self.measure_start {
            st.warmup_ops += 1;
        } else {
            st.record(kind, ns, code);
        }
    }
}

/// Runs the load against servers that `setup` prepared; blocks until it is over.
pub fn run_load(cfg: &LoadConfig, prepared: &Prepared) -> Result<LoadOutcome, String> {
    Mixer::new(cfg.read_ratio, &cfg.op_mix)?;
    let cpus = allowed_cpus();
    let threads = cfg.threads.max(1);
    ensure_memlock(threads)?;
    probe_io_uring()?;
    let mut addrs = Vec::new();
    for h in &cfg.hosts {
        let a =
            h.to_socket_addrs().map_err(|e| format!("host {h}: {e}"))?.next().ok_or(format!("host {h}: no address"))?;
        addrs.push(a);
    }
    let mut per_thread: Vec<Vec<SessionSpec>> = vec![Vec::new(); threads];
    for i in 0..cfg.sessions {
        let h = i % cfg.hosts.len();
        per_thread[i % threads].push(SessionSpec {
            index: i,
            addr: addrs[h],
            host: cfg.hosts[h].clone(),
            seed: cfg.seed.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        });
    }
    let coord = Arc::new(Coordinator {
        ready: AtomicUsize::new(0),
        abort: AtomicBool::new(false),
        failure: Mutex::new(None),
        start: OnceLock::new(),
    });
    let (tick_tx, tick_rx) = mpsc::channel::<Tick>();
    let mut handles = Vec::new();
    let mut thread_cpus = Vec::new();
    for (t, sessions) in per_thread.into_iter().enumerate() {
        let cpu = cpus[t % cpus.len()];
        thread_cpus.push(cpu);
        let cfg = cfg.clone();
        let prepared = prepared.clone();
        let coord2 = coord.clone();
        let tick_tx = tick_tx.clone();
        let spawned = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("loadgen-{t}"))
            .io_memory(IO_MEMORY_PER_EXECUTOR)
            .spawn(move || async move {
                let res = thread_main(t, cfg, prepared, sessions, coord2.clone(), tick_tx).await;
                if let Err(e) = &res {
                    coord2.failure.lock().expect("lock").get_or_insert_with(|| e.clone());
                    coord2.abort.store(true, Ordering::SeqCst);
                }
                res
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                coord.abort.store(true, Ordering::SeqCst);
                let _ = coord.start.set(Instant::now());
                for h in handles {
                    let _ = h.join();
                }
                return Err(format!("cannot start executor {t} on CPU {cpu}: {e}"));
            }
        }
    }
    drop(tick_tx);
    // Wait for every thread's sessions to be connected, then start the clock for all of them.
    let connect_deadline = Instant::now() + Duration::from_secs(30);
    while coord.ready.load(Ordering::SeqCst) < threads && !coord.abort.load(Ordering::SeqCst) {
        if Instant::now() > connect_deadline {
            coord.abort.store(true, Ordering::SeqCst);
            coord.failure.lock().expect("lock").get_or_insert_with(|| "sessions did not connect within 30 s".into());
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let start = Instant::now() + Duration::from_millis(5);
    let _ = coord.start.set(start);
    let progress =
        if coord.abort.load(Ordering::SeqCst) { Vec::new() } else { collect_progress(cfg, threads, &tick_rx) };
    let mut merged = Stats::default();
    let mut first_err = None;
    for (t, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(s)) => merged.merge(&s),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(format!("executor {t} failed: {e}"));
            }
        }
    }
    if let Some(e) = coord.failure.lock().expect("lock").take().or(first_err) {
        return Err(e);
    }
    Ok(LoadOutcome { stats: merged, measured: cfg.duration, cpus: thread_cpus, progress })
}

/// Merges the threads' one-second ticks and prints a progress line per second (unless quiet).
fn collect_progress(cfg: &LoadConfig, threads: usize, rx: &mpsc::Receiver<Tick>) -> Vec<ProgressPoint> {
    let warmup_s = cfg.warmup.as_secs_f64();
    let mut pending: std::collections::BTreeMap<u64, (usize, u64, u64, Histogram<u64>)> = Default::default();
    let mut out = Vec::new();
    let mut emit = |second: u64, ops: u64, errors: u64, h: &Histogram<u64>| {
        let warmup = (second as f64) <= warmup_s;
        let p99_us = if h.is_empty() { 0.0 } else { h.value_at_quantile(0.99) as f64 / 1000.0 };
        if !cfg.quiet {
            eprintln!(
                "[{second:>4}s] {:<7} {:>10} ops/s  {:>6} errors  p99 {:>9.3} ms",
                if warmup { "warmup" } else { "measure" },
                ops,
                errors,
                p99_us / 1000.0
            );
        }
        out.push(ProgressPoint { second, warmup, ops, errors, p99_us });
    };
    loop {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(t) => {
                let e = pending.entry(t.second).or_insert_with(|| (0, 0, 0, new_histogram()));
                e.0 += 1;
                e.1 += t.ops;
                e.2 += t.errors;
                let _ = e.3.add(&t.latency);
                if e.0 == threads {
                    let (_, ops, errors, h) = pending.remove(&t.second).expect("present");
                    emit(t.second, ops, errors, &h);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    for (second, (_, ops, errors, h)) in pending {
        emit(second, ops, errors, &h);
    }
    out
}

async fn thread_main(
    thread: usize,
    cfg: LoadConfig,
    prepared: Prepared,
    sessions: Vec<SessionSpec>,
    coord: Arc<Coordinator>,
    tick_tx: mpsc::Sender<Tick>,
) -> Result<Stats, String> {
    // Connect every session of this thread (concurrently), then report ready.
    let mut connecting = Vec::new();
    for s in &sessions {
        let s = s.clone();
        let timeout = cfg.session_timeout_ms;
        let base = prepared.base.clone();
        connecting.push(glommio::spawn_local(async move { connect(&s, timeout, &base).await }));
    }
    let mut conns = Vec::new();
    let mut failure = None;
    for c in connecting {
        match c.await {
            Ok(c) => conns.push(c),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        coord.ready.fetch_add(1, Ordering::SeqCst);
        return Err(e);
    }
    coord.ready.fetch_add(1, Ordering::SeqCst);
    let start = loop {
        if let Some(s) = coord.start.get() {
            break *s;
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    };
    if coord.abort.load(Ordering::SeqCst) {
        drop(conns);
        return Ok(Stats::default());
    }
    let measure_start = start + cfg.warmup;
    let end = measure_start + cfg.duration;
    let mixer = Mixer::new(cfg.read_ratio, &cfg.op_mix)?;
    let ctx = Rc::new(ThreadCtx {
        cfg,
        prepared,
        mixer,
        start,
        measure_start,
        end,
        stats: RefCell::new(Stats::default()),
        interval: RefCell::new((0, 0, new_histogram())),
    });
    let ticker = glommio::spawn_local(ticker(thread, ctx.clone(), tick_tx));
    let mut tasks = Vec::new();
    for (spec, conn) in sessions.into_iter().zip(conns) {
        tasks.push(glommio::spawn_local(session_driver(ctx.clone(), spec, conn)));
    }
    for t in tasks {
        t.await;
    }
    ticker.await;
    let stats = ctx.stats.replace(Stats::default());
    Ok(stats)
}

/// Sends this thread's last second to the main thread, once a second, until the run ends.
async fn ticker(thread: usize, ctx: Rc<ThreadCtx>, tx: mpsc::Sender<Tick>) {
    let total = ctx.end.duration_since(ctx.start).as_secs_f64().ceil() as u64;
    for second in 1..=total {
        let at = (ctx.start + Duration::from_secs(second)).min(ctx.end);
        let now = Instant::now();
        if at > now {
            glommio::timer::sleep(at - now).await;
        }
        let (ops, errors, latency) = ctx.interval.replace((0, 0, new_histogram()));
        if tx.send(Tick { thread, second, ops, errors, latency }).is_err() {
            return;
        }
    }
}

/// A connected, handshaken session: its stream, its session id and any bytes read past the
/// handshake.
struct Conn {
    stream: TcpStream,
    session_id: i64,
    leftover: Vec<u8>,
    next_xid: i32,
}

async fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Vec<u8>, String> {
    loop {
        if let Some(n) = zk::whole_frame(buf)? {
            let body = buf[4..n].to_vec();
            buf.drain(..n);
            return Ok(body);
        }
        let mut chunk = [0u8; 4096];
        let got = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if got == 0 {
            return Err("connection closed by the server".into());
        }
        buf.extend_from_slice(&chunk[..got]);
    }
}

/// Connects, does the handshake, and syncs on the base path (so a follower has caught up with
/// the setup's writes before the first read).
async fn connect(spec: &SessionSpec, timeout_ms: i32, base: &str) -> Result<Conn, String> {
    let host = &spec.host;
    let mut stream = TcpStream::connect_timeout(spec.addr, Duration::from_secs(5))
        .await
        .map_err(|e| format!("connect {host}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| format!("{host}: {e}"))?;
    stream.set_read_timeout(Some(READ_TIMEOUT)).map_err(|e| format!("{host}: {e}"))?;
    stream.write_all(&zk::connect_frame(timeout_ms)).await.map_err(|e| format!("{host}: handshake: {e}"))?;
    let mut buf = Vec::new();
    let body = read_frame(&mut stream, &mut buf).await.map_err(|e| format!("{host}: handshake: {e}"))?;
    let resp = zk::parse_connect_response(&body).map_err(|e| format!("{host}: {e}"))?;
    let mut out = Vec::new();
    zk::push_request(&mut out, 1, &Request::Sync { path: base.to_string() });
    stream.write_all(&out).await.map_err(|e| format!("{host}: sync: {e}"))?;
    loop {
        let body = read_frame(&mut stream, &mut buf).await.map_err(|e| format!("{host}: sync: {e}"))?;
        let (h, _) = zk::parse_reply(&body)?;
        if h.xid == 1 {
            if h.err != 0 {
                return Err(format!("{host}: sync {base}: {}", zk::error_name(h.err)));
            }
            break;
        }
    }
    Ok(Conn { stream, session_id: resp.session_id, leftover: buf, next_xid: 2 })
}

/// One request waiting for its reply.
struct Pending {
    xid: i32,
    /// `None` for the closeSession that ends the connection.
    kind: Option<OpKind>,
    /// When it was sent (closed loop) or meant to be sent (open loop).
    t0: Instant,
}

/// A session's state that outlives a connection.
struct SessionState {
    rng: Rng,
    /// Ephemeral nodes this session created (and has not deleted yet), oldest first.
    ephemerals: VecDeque<String>,
    /// Sequential nodes this session created, oldest first (known once the create's reply arrives).
    sequentials: VecDeque<String>,
    sequential_creates_in_flight: usize,
    counter: u64,
}

/// One connection's shared state between its sender and its reader.
struct ConnState {
    pending: VecDeque<Pending>,
    session_id: i64,
}

/// Keeps a session running until the end, reconnecting (as a new session) after a failure.
async fn session_driver(ctx: Rc<ThreadCtx>, spec: SessionSpec, first: Conn) {
    let state = Rc::new(RefCell::new(SessionState {
        rng: Rng::new(spec.seed),
        ephemerals: VecDeque::new(),
        sequentials: VecDeque::new(),
        sequential_creates_in_flight: 0,
        counter: 0,
    }));
    // Open loop: this session's share of the rate, its first send staggered across sessions.
    let schedule = ctx.cfg.rate.map(|rate| {
        let interval = Duration::from_secs_f64(ctx.cfg.sessions as f64 / rate);
        let phase = interval.mul_f64(spec.index as f64 / ctx.cfg.sessions as f64);
        (interval, ctx.start + phase)
    });
    let next_send = Rc::new(RefCell::new(schedule.map(|(_, first)| first)));
    let mut conn = Some(first);
    loop {
        let c = match conn.take() {
            Some(c) => c,
            None => match connect(&spec, ctx.cfg.session_timeout_ms, &ctx.prepared.base).await {
                Ok(c) => {
                    ctx.stats.borrow_mut().reconnects += 1;
                    c
                }
                Err(_) => {
                    if Instant::now() >= ctx.end {
                        return;
                    }
                    glommio::timer::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        {
            let mut st = state.borrow_mut();
            st.ephemerals.clear();
            st.sequential_creates_in_flight = 0;
        }
        let closed = run_connection(&ctx, &state, schedule.map(|s| s.0), &next_send, c).await;
        if closed || Instant::now() >= ctx.end {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
}

/// Drives one connection until the run ends (returns true after a clean closeSession) or the
/// connection fails (false; outstanding requests are counted as ConnectionLoss).
async fn run_connection(
    ctx: &Rc<ThreadCtx>,
    state: &Rc<RefCell<SessionState>>,
    interval: Option<Duration>,
    next_send: &Rc<RefCell<Option<Instant>>>,
    conn: Conn,
) -> bool {
    let (rd, wr) = futures_lite::io::split(conn.stream);
    let cs = Rc::new(RefCell::new(ConnState { pending: VecDeque::new(), session_id: conn.session_id }));
    let sem = Rc::new(Semaphore::new(ctx.cfg.inflight as u64));
    let reader =
        glommio::spawn_local(reader_loop(ctx.clone(), state.clone(), cs.clone(), sem.clone(), rd, conn.leftover));
    let sent = sender_loop(ctx, state, &cs, &sem, wr, conn.next_xid, interval, next_send).await;
    let closed = reader.await;
    // Whatever is still outstanding never got a reply.
    let now = Instant::now();
    let lost: Vec<Pending> = cs.borrow_mut().pending.drain(..).collect();
    for p in lost {
        if let Some(kind) = p.kind {
            ctx.complete(kind, p.t0, now, zk::CONNECTION_LOSS);
        }
    }
    closed && sent.is_ok()
}

#[allow(clippy::too_many_arguments)]
async fn sender_loop(
    ctx: &Rc<ThreadCtx>,
    state: &Rc<RefCell<SessionState>>,
    cs: &Rc<RefCell<ConnState>>,
    sem: &Rc<Semaphore>,
    mut wr: WriteHalf<TcpStream>,
    mut xid: i32,
    interval: Option<Duration>,
    next_send: &Rc<RefCell<Option<Instant>>>,
) -> Result<(), String> {
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut last_write = Instant::now();
    let batch_max = ctx.cfg.inflight.max(1);
    loop {
        match interval {
            None => {
                // Closed loop: one permit per outstanding request.
                if sem.acquire(1).await.is_err() {
                    return Err("connection lost".into());
                }
                let mut n = 1;
                while n < batch_max && sem.try_acquire(1).unwrap_or(false) {
                    n += 1;
                }
                let now = Instant::now();
                if now >= ctx.end {
                    break;
                }
                for _ in 0..n {
                    build_request(ctx, state, cs, &mut out, &mut xid, now);
                }
            }
            Some(iv) => {
                // Open loop: send every request whose intended time has come; sleep otherwise.
                let due = next_send.borrow().expect("open loop has a schedule");
                if due >= ctx.end {
                    break;
                }
                let now = Instant::now();
                if due > now {
                    let idle_for = now.saturating_duration_since(last_write);
                    let wake = (due - now).min(PING_IDLE.saturating_sub(idle_for).max(Duration::from_millis(1)));
                    glommio::timer::sleep(wake).await;
                    if Instant::now() < due && last_write.elapsed() >= PING_IDLE {
                        zk::push_ping(&mut out);
                        wr.write_all(&out).await.map_err(|e| e.to_string())?;
                        out.clear();
                        last_write = Instant::now();
                    }
                    continue;
                }
                let mut t = due;
                while t <= now && t < ctx.end && out.len() < 256 * 1024 {
                    match sem.try_acquire(1) {
                        Ok(true) => {}
                        Ok(false) => {
                            ctx.stats.borrow_mut().inflight_cap_waits += 1;
                            if !out.is_empty() {
                                break;
                            }
                            if sem.acquire(1).await.is_err() {
                                return Err("connection lost".into());
                            }
                        }
                        Err(_) => return Err("connection lost".into()),
                    }
                    build_request(ctx, state, cs, &mut out, &mut xid, t);
                    let sent = Instant::now();
                    if sent >= ctx.measure_start {
                        let lag = sent.saturating_duration_since(t).as_nanos() as u64;
                        ctx.stats.borrow_mut().send_lag.saturating_record(lag.max(1));
                    }
                    t += iv;
                }
                *next_send.borrow_mut() = Some(t);
            }
        }
        if !out.is_empty() {
            wr.write_all(&out).await.map_err(|e| e.to_string())?;
            out.clear();
            last_write = Instant::now();
        }
    }
    // The run is over: close the session; the reader ends on its reply.
    xid = next_xid(xid);
    cs.borrow_mut().pending.push_back(Pending { xid, kind: None, t0: Instant::now() });
    zk::push_request(&mut out, xid, &Request::CloseSession);
    wr.write_all(&out).await.map_err(|e| e.to_string())?;
    Ok(())
}

fn next_xid(xid: i32) -> i32 {
    if xid >= i32::MAX - 1 {
        1
    } else {
        xid + 1
    }
}

/// Appends the next request (drawn from the mix) to `out` and queues its Pending entry.
fn build_request(
    ctx: &ThreadCtx,
    state: &Rc<RefCell<SessionState>>,
    cs: &Rc<RefCell<ConnState>>,
    out: &mut Vec<u8>,
    xid: &mut i32,
    t0: Instant,
) {
    let mut st = state.borrow_mut();
    let id = next_xid(*xid);
    *xid = id;
    let keys = &ctx.prepared.keys;
    let key = &keys[st.rng.below(keys.len())];
    let kind = match ctx.mixer.draw(&mut st.rng) {
        MixKind::Get => {
            zk::push_path_read(out, id, op::GET_DATA, key);
            OpKind::GetData
        }
        MixKind::Exists => {
            zk::push_path_read(out, id, op::EXISTS, key);
            OpKind::Exists
        }
        MixKind::Children => {
            zk::push_path_read(out, id, op::GET_CHILDREN, key);
            OpKind::GetChildren
        }
        MixKind::Set => {
            zk::push_set_data(out, id, key, &ctx.prepared.value);
            OpKind::SetData
        }
        MixKind::Ephemeral => {
            if st.ephemerals.len() >= NODE_BACKLOG {
                let path = st.ephemerals.pop_front().expect("non-empty");
                zk::push_request(out, id, &Request::Delete { path, version: -1 });
                OpKind::Delete
            } else {
                st.counter += 1;
                let path = format!("{key}/e{:x}-{}", cs.borrow().session_id, st.counter);
                zk::push_request(out, id, &zk::create(&path, Some(ctx.prepared.value.clone()), 1));
                st.ephemerals.push_back(path);
                OpKind::CreateEphemeral
            }
        }
        MixKind::Sequential => {
            if st.sequentials.len() + st.sequential_creates_in_flight >= NODE_BACKLOG && !st.sequentials.is_empty() {
                let path = st.sequentials.pop_front().expect("non-empty");
                zk::push_request(out, id, &Request::Delete { path, version: -1 });
                OpKind::Delete
            } else {
                st.sequential_creates_in_flight += 1;
                let path = format!("{}/seq/s-", ctx.prepared.base);
                zk::push_request(out, id, &zk::create(&path, Some(ctx.prepared.value.clone()), 2));
                OpKind::CreateSequential
            }
        }
        MixKind::Multi => {
            let other = &keys[st.rng.below(keys.len())];
            let req = Request::Multi(vec![
                MultiOp::Check { path: key.clone(), version: -1 },
                MultiOp::SetData { path: other.clone(), data: Some(ctx.prepared.value.clone()), version: -1 },
            ]);
            zk::push_request(out, id, &req);
            OpKind::Multi
        }
    };
    cs.borrow_mut().pending.push_back(Pending { xid: id, kind: Some(kind), t0 });
}

/// Reads replies, matches each to the oldest outstanding request, records it and frees a
/// permit. Returns true when the closeSession reply arrived, false when the connection failed.
async fn reader_loop(
    ctx: Rc<ThreadCtx>,
    state: Rc<RefCell<SessionState>>,
    cs: Rc<RefCell<ConnState>>,
    sem: Rc<Semaphore>,
    mut rd: ReadHalf<TcpStream>,
    leftover: Vec<u8>,
) -> bool {
    let mut buf = vec![0u8; 256 * 1024];
    let mut filled = leftover.len();
    if filled > buf.len() {
        buf.resize(filled, 0);
    }
    buf[..filled].copy_from_slice(&leftover);
    let result: Result<bool, String> = async {
        loop {
            let mut pos = 0;
            while let Some(n) = zk::whole_frame(&buf[pos..filled])? {
                let body = &buf[pos + 4..pos + n];
                pos += n;
                let (h, rest) = zk::parse_reply(body)?;
                if h.xid == -1 || h.xid == -2 {
                    continue; // a watch event or a ping reply
                }
                let p = cs
                    .borrow_mut()
                    .pending
                    .pop_front()
                    .ok_or_else(|| format!("reply xid {} without an outstanding request", h.xid))?;
                if p.xid != h.xid {
                    return Err(format!("reply xid {} but the oldest outstanding request is xid {}", h.xid, p.xid));
                }
                let now = Instant::now();
                let Some(kind) = p.kind else {
                    return Ok(true);
                };
                let mut code = h.err;
                match kind {
                    OpKind::Multi if code == 0 => code = zk::multi_error(rest)?,
                    OpKind::CreateSequential => {
                        let mut st = state.borrow_mut();
                        st.sequential_creates_in_flight = st.sequential_creates_in_flight.saturating_sub(1);
                        if code == 0 {
                            st.sequentials.push_back(zk::created_path(rest)?);
                        }
                    }
                    _ => {}
                }
                ctx.complete(kind, p.t0, now, code);
                sem.signal(1);
            }
            if pos > 0 {
                buf.copy_within(pos..filled, 0);
                filled -= pos;
            }
            if filled == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            let got = rd.read(&mut buf[filled..]).await.map_err(|e| e.to_string())?;
            if got == 0 {
                return Err("connection closed by the server".into());
            }
            filled += got;
        }
    }
    .await;
    sem.close();
    result.unwrap_or(false)
}
