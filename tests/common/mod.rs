//! Shared support for corezk's integration tests.
//!
//! * [`Server`]: a corezk child process on a free port with a temporary data directory, killed,
//!   reaped and cleaned up on drop. With `COREZK_TEST_ADDR=host:port` no process is started and the
//!   tests run against that external server instead (for example Apache ZooKeeper 3.8, to check
//!   that the tests themselves are right). Tests that need a server with a special configuration
//!   use a named profile: in external mode they read `COREZK_TEST_ADDR_<PROFILE>` and are skipped
//!   (with a message) when it is not set.
//! * `COREZK_BIN` overrides the binary path (default: cargo's `CARGO_BIN_EXE_corezk`);
//!   `COREZK_TEST_CORES` passes `--cores N`.
//! * Profiles (external variable → settings): `DEFAULT_WHITELIST` (no 4lw.commands.whitelist),
//!   `MAXCNXN3` (maxClientCnxns=3), `NO_EXTENDED_TYPES` (extendedTypesEnabled=false),
//!   `SESSION_BOUNDS` (minSessionTimeout=5000, maxSessionTimeout=7000). Tests that kill and
//!   restart the server are skipped in external mode.
//! * Checking the tests against Apache ZooKeeper 3.8: start one server per profile with
//!   tickTime=2000, maxClientCnxns=0 (3 for MAXCNXN3), 4lw.commands.whitelist=* (except
//!   DEFAULT_WHITELIST) and the JVM properties
//!   `-Dzookeeper.DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=
//!   -Dzookeeper.extendedTypesEnabled=true -Dznode.container.checkIntervalMs=1000` (without
//!   extendedTypesEnabled for NO_EXTENDED_TYPES), then e.g.
//!   `COREZK_TEST_ADDR=127.0.0.1:21810 COREZK_TEST_ADDR_MAXCNXN3=127.0.0.1:21812 ... cargo test
//!   --test raw_protocol` (docs/reference-zookeeper.md shows how to run the JVM).
//! * A tiny raw jute client ([`RawConn`], [`Enc`], [`Dec`]) for byte-level protocol tests.
//! * Helpers for the `zookeeper-client` crate: [`connect`], [`run`], [`within`], [`eventually`].
#![allow(dead_code)]

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `super:test`, the super user digest every test server is configured with.
pub const SUPER_DIGEST: &str = "super:D/InIHSb7yEEbrWz8b9l71RjZJU=";
pub const TICK_TIME_MS: i32 = 2000;
/// How long a test server may take to answer `ruok`.
/// How long a raw connection waits for a reply before calling it unanswered. Generous: these
/// are hang detectors, and a write waits for the disk, which on a shared virtual disk was seen
/// taking 12 s for one small fsync while other jobs wrote (latency bounds live in the liveness
/// test, which measures the disk beside the server).
pub const RAW_TIMEOUT: Duration = Duration::from_secs(20);
pub const START_DEADLINE: Duration = Duration::from_secs(30);
/// Default bound for a single client operation or awaited event.
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// The zoo.cfg keys every test server gets unless a profile overrides them.
pub fn default_settings() -> Vec<(String, String)> {
    [
        ("tickTime", "2000"),
        ("4lw.commands.whitelist", "*"),
        ("maxClientCnxns", "0"),
        ("DigestAuthenticationProvider.superDigest", SUPER_DIGEST),
        ("extendedTypesEnabled", "true"),
        ("znode.container.checkIntervalMs", "1000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

fn unique_suffix() -> String {
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{}-{}-{}", std::process::id(), n, nanos % 1_000_000_000_000)
}

/// A znode path no other test (or earlier run against a shared external server) uses.
pub fn unique_path(tag: &str) -> String {
    format!("/czk-{}-{}", tag, unique_suffix())
}

/// A running server for one test.
pub struct Server {
    addr: String,
    child: Option<Child>,
    dir: Option<PathBuf>,
    log: Option<PathBuf>,
    settings: Vec<(String, String)>,
}

fn binary() -> String {
    std::env::var("COREZK_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_corezk").to_string())
}

/// Starts the binary on `port` with `dir`, appending stderr to `log`.
fn launch(port: u16, dir: &PathBuf, log: &PathBuf, settings: &[(String, String)]) -> Child {
    let bin = binary();
    let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("open log file");
    let mut cmd = Command::new(&bin);
    cmd.arg("--port").arg(port.to_string()).arg("--bind").arg("127.0.0.1").arg("--data-dir").arg(dir);
    if let Ok(cores) = std::env::var("COREZK_TEST_CORES") {
        cmd.arg("--cores").arg(cores);
    }
    for (k, v) in settings {
        cmd.arg("--set").arg(format!("{k}={v}"));
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::from(log_file));
    cmd.spawn().unwrap_or_else(|e| panic!("cannot start {bin}: {e}"))
}

impl Server {
    /// A server with the default settings (see [`default_settings`]).
    pub fn start() -> Server {
        if let Ok(addr) = std::env::var("COREZK_TEST_ADDR") {
            return Server::external(addr);
        }
        Server::spawn(&default_settings())
    }

    /// A server with the default settings changed by `overrides` (`None` removes a key).
    /// In external mode the address comes from `COREZK_TEST_ADDR_<PROFILE>`; `None` (test
    /// skipped) when that is not set.
    pub fn start_profile(profile: &str, overrides: &[(&str, Option<&str>)]) -> Option<Server> {
        if std::env::var("COREZK_TEST_ADDR").is_ok() {
            let var = format!("COREZK_TEST_ADDR_{}", profile.to_uppercase());
            return match std::env::var(&var) {
                Ok(addr) => Some(Server::external(addr)),
                Err(_) => {
                    eprintln!("SKIPPED: external server mode and {var} is not set");
                    None
                }
            };
        }
        let mut settings = default_settings();
        for (key, value) in overrides {
            settings.retain(|(k, _)| k != key);
            if let Some(v) = value {
                settings.push((key.to_string(), v.to_string()));
            }
        }
        Some(Server::spawn(&settings))
    }

    /// A server this test may kill and restart (`None`, test skipped, in external mode).
    pub fn start_restartable() -> Option<Server> {
        if std::env::var("COREZK_TEST_ADDR").is_ok() {
            eprintln!("SKIPPED: needs a server process the test controls (COREZK_TEST_ADDR is set)");
            return None;
        }
        Some(Server::spawn(&default_settings()))
    }

    fn external(addr: String) -> Server {
        let server = Server { addr, child: None, dir: None, log: None, settings: Vec::new() };
        let deadline = Instant::now() + START_DEADLINE;
        while !is_ready(&server.addr) {
            assert!(Instant::now() < deadline, "external server {} does not answer ruok", server.addr);
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn spawn(settings: &[(String, String)]) -> Server {
        let mut last_failure = String::new();
        // A port picked as free can be taken by someone else before the server binds it:
        // retry a few times with a new port when the process exits early.
        for _attempt in 0..3 {
            let port = free_port();
            let base = std::env::temp_dir().join(format!("corezk-test-{}", unique_suffix()));
            let dir = base.with_extension("data");
            let log = base.with_extension("log");
            std::fs::create_dir_all(&dir).expect("create data dir");
            let child = launch(port, &dir, &log, settings);
            let mut server = Server {
                addr: format!("127.0.0.1:{port}"),
                child: Some(child),
                dir: Some(dir),
                log: Some(log),
                settings: settings.to_vec(),
            };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(failure) => last_failure = failure,
            }
            drop(server);
        }
        panic!("{last_failure}");
    }

    /// Polls until the server answers; `Err` if the process exited first. Panics at the deadline.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                return Err(format!("corezk exited early with {status}; log tail:\n{}", self.log_tail()));
            }
            if is_ready(&self.addr) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                panic!(
                    "corezk did not answer ruok within {:?} on {}; log tail:\n{}",
                    START_DEADLINE,
                    self.addr,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILLs the process (no clean shutdown), reaps it, and starts it again on the same port
    /// and data directory.
    pub fn kill_and_restart(&mut self) {
        let mut child = self.child.take().expect("restart needs a spawned server");
        let _ = child.kill();
        let _ = child.wait();
        let port: u16 = self.addr.rsplit(':').next().unwrap().parse().unwrap();
        let dir = self.dir.clone().unwrap();
        let log = self.log.clone().unwrap();
        // The port may linger briefly: retry the start a few times.
        for attempt in 0..5 {
            self.child = Some(launch(port, &dir, &log, &self.settings));
            match self.wait_ready() {
                Ok(()) => return,
                Err(failure) if attempt == 4 => panic!("restart failed: {failure}"),
                Err(_) => {
                    self.child = None;
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }

    /// Starts a second process on this server's data directory (and another port); returns
    /// its exit status if it exits within `limit`, else kills it and returns `None`.
    pub fn second_process_on_same_data_dir(&self, limit: Duration) -> Option<std::process::ExitStatus> {
        let dir = self.dir.clone().expect("needs a spawned server");
        let log = self.log.clone().unwrap();
        let mut child = launch(free_port(), &dir, &log, &self.settings);
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn is_external(&self) -> bool {
        self.child.is_none()
    }

    /// The server's `srvr` version line says this is Apache ZooKeeper 3.8.0 (used only to
    /// skip checks that hit documented bugs of that exact release).
    pub fn is_zookeeper_380(&self) -> bool {
        self.is_external()
            && four_letter(&self.addr, "srvr").map(|s| s.starts_with("Zookeeper version: 3.8.0")).unwrap_or(false)
    }

    fn log_tail(&self) -> String {
        let Some(log) = &self.log else {
            return String::new();
        };
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(40);
        lines[from..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            // What the server says of itself, while it still runs: the slowest recent log write
            // tells a disk that stalled from a server that did.
            let mntr = four_letter(&self.addr, "mntr").unwrap_or_else(|e| format!("(mntr failed: {e})"));
            let lines: Vec<&str> = mntr
                .lines()
                .filter(|l| l.contains("log_") || l.contains("server_state") || l.contains("outstanding"))
                .collect();
            eprintln!("--- corezk mntr ({}) ---\n{}", self.addr, lines.join("\n"));
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() && self.log.is_some() {
            eprintln!("--- corezk log tail ({}) ---\n{}\n---", self.addr, self.log_tail());
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(log) = self.log.take() {
            let _ = std::fs::remove_file(log);
        }
    }
}

/// `ruok` answers `imok`; or, where `ruok` is not whitelisted, `srvr` (always enabled) answers.
pub fn is_ready(addr: &str) -> bool {
    match four_letter(addr, "ruok") {
        Ok(answer) if answer == "imok" => true,
        Ok(answer) if answer.contains("not in the whitelist") => {
            four_letter(addr, "srvr").map(|s| s.contains("Mode: ")).unwrap_or(false)
        }
        _ => false,
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().unwrap().port()
}

pub fn sock_addr(addr: &str) -> SocketAddr {
    addr.to_socket_addrs().expect("resolve address").next().expect("an address")
}

/// Sends a four-letter word on a fresh connection and returns the whole answer (the server
/// closes the connection after answering).
pub fn four_letter(addr: &str, cmd: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&sock_addr(addr), Duration::from_secs(1))?;
    stream.set_read_timeout(Some(RAW_TIMEOUT))?;
    stream.set_write_timeout(Some(RAW_TIMEOUT))?;
    stream.write_all(cmd.as_bytes())?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

// ------------------------------------------------------------------------------------------------
// zookeeper-client helpers

/// Runs an async test body on a fresh multi-threaded runtime, bounded by 90 s so that a hang
/// becomes a failure.
///
/// The `zookeeper-client` crate spawns its session task through `asyncs`/`spawns`, which needs
/// the crate's `tokio` feature to find the tokio runtime; without it every connect panics with
/// "no spawner". That panic is turned into a message naming the fix.
pub fn run<F: Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            match tokio::time::timeout(Duration::from_secs(90), f).await {
                Ok(v) => v,
                Err(_) => panic!("test body did not finish within 90 s"),
            }
        })
    }));
    match result {
        Ok(v) => v,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if msg.contains("no spawner") {
                panic!(
                    "zookeeper-client cannot spawn its session task: enable its tokio feature in \
                     Cargo.toml: [dev-dependencies] zookeeper-client = {{ version = \"0.9\", features = [\"tokio\"] }}"
                );
            }
            std::panic::resume_unwind(payload)
        }
    }
}

/// Awaits `f` for at most [`OP_TIMEOUT`]; panics naming `what` on timeout.
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(OP_TIMEOUT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {OP_TIMEOUT:?} waiting for {what}"),
    }
}

/// Polls `check` every 50 ms until it returns true; panics naming `what` after `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        if Instant::now() >= deadline {
            panic!("{what}: not reached within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A crate client with a 10 s session, failing fast when the server is unreachable.
pub async fn connect(addr: &str) -> zookeeper_client::Client {
    connect_with(addr, Duration::from_secs(10)).await
}

pub async fn connect_with(addr: &str, session_timeout: Duration) -> zookeeper_client::Client {
    let mut connector = zookeeper_client::Client::connector();
    connector.session_timeout(session_timeout).fail_eagerly();
    within("client connect", connector.connect(addr)).await.unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

pub fn persistent() -> zookeeper_client::CreateOptions<'static> {
    zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all())
}

pub fn ephemeral() -> zookeeper_client::CreateOptions<'static> {
    zookeeper_client::CreateMode::Ephemeral.with_acls(zookeeper_client::Acls::anyone_all())
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

// ------------------------------------------------------------------------------------------------
// Raw jute client

pub mod op {
    pub const NOTIFICATION: i32 = 0;
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const SET_WATCHES: i32 = 101;
    pub const ADD_WATCH: i32 = 106;
    pub const WHO_AM_I: i32 = 107;
    pub const CLOSE_SESSION: i32 = -11;
}

pub mod code {
    pub const OK: i32 = 0;
    pub const RUNTIME_INCONSISTENCY: i32 = -2;
    pub const MARSHALLING_ERROR: i32 = -5;
    pub const UNIMPLEMENTED: i32 = -6;
    pub const BAD_ARGUMENTS: i32 = -8;
    pub const NO_NODE: i32 = -101;
    pub const NO_AUTH: i32 = -102;
    pub const BAD_VERSION: i32 = -103;
    pub const NO_CHILDREN_FOR_EPHEMERALS: i32 = -108;
    pub const NODE_EXISTS: i32 = -110;
    pub const NOT_EMPTY: i32 = -111;
    pub const INVALID_ACL: i32 = -114;
    pub const NO_WATCHER: i32 = -121;
}

pub mod event {
    pub const NODE_CREATED: i32 = 1;
    pub const NODE_DELETED: i32 = 2;
    pub const NODE_DATA_CHANGED: i32 = 3;
    pub const NODE_CHILDREN_CHANGED: i32 = 4;
}

/// Big-endian jute encoder.
#[derive(Default, Clone)]
pub struct Enc(pub Vec<u8>);

impl Enc {
    pub fn new() -> Enc {
        Enc(Vec::new())
    }
    pub fn i32(mut self, v: i32) -> Enc {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i64(mut self, v: i64) -> Enc {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bool(mut self, v: bool) -> Enc {
        self.0.push(v as u8);
        self
    }
    pub fn str(self, s: &str) -> Enc {
        self.buf(Some(s.as_bytes()))
    }
    pub fn buf(mut self, b: Option<&[u8]>) -> Enc {
        match b {
            None => self.i32(-1),
            Some(b) => {
                self = self.i32(b.len() as i32);
                self.0.extend_from_slice(b);
                self
            }
        }
    }
    pub fn raw(mut self, b: &[u8]) -> Enc {
        self.0.extend_from_slice(b);
        self
    }
    /// `vector<ACL>` with one `world:anyone` entry with `perms`.
    pub fn world_acl(self, perms: i32) -> Enc {
        self.i32(1).i32(perms).str("world").str("anyone")
    }
    pub fn bytes(self) -> Vec<u8> {
        self.0
    }
}

/// Big-endian jute decoder that panics with a message on short input.
pub struct Dec<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Dec<'a> {
        Dec { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(
            self.pos + n <= self.buf.len(),
            "short record: need {} bytes at offset {}, have {} (bytes {:02x?})",
            n,
            self.pos,
            self.buf.len(),
            self.buf
        );
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        s
    }
    pub fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    pub fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    pub fn bool(&mut self) -> bool {
        self.take(1)[0] != 0
    }
    pub fn buf(&mut self) -> Option<Vec<u8>> {
        let n = self.i32();
        if n < 0 {
            assert_eq!(n, -1, "negative buffer length other than -1");
            None
        } else {
            Some(self.take(n as usize).to_vec())
        }
    }
    pub fn str(&mut self) -> Option<String> {
        self.buf().map(|b| String::from_utf8(b).expect("utf-8 string"))
    }
    pub fn stat(&mut self) -> RawStat {
        RawStat {
            czxid: self.i64(),
            mzxid: self.i64(),
            ctime: self.i64(),
            mtime: self.i64(),
            version: self.i32(),
            cversion: self.i32(),
            aversion: self.i32(),
            ephemeral_owner: self.i64(),
            data_length: self.i32(),
            num_children: self.i32(),
            pzxid: self.i64(),
        }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn done(&self) {
        assert_eq!(self.remaining(), 0, "trailing bytes in record: {:02x?}", &self.buf[self.pos..]);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawStat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub zxid: i64,
    pub kind: i32,
    pub state: i32,
    pub path: String,
}

/// How reading a frame ended when it did not produce a frame.
#[derive(Debug)]
pub enum ReadError {
    /// EOF or reset: the server closed the connection.
    Closed,
    /// Nothing arrived before the read timeout.
    Timeout,
    Other(io::Error),
}

/// One raw TCP connection speaking jute frames.
pub struct RawConn {
    pub stream: TcpStream,
    pub next_xid: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub timeout_ms: i32,
    /// Watch notifications read while waiting for replies.
    pub events: VecDeque<RawEvent>,
}

/// Fields of a ConnectResponse plus the frame's body length.
#[derive(Debug, Clone)]
pub struct ConnectResponse {
    pub body_len: usize,
    pub protocol_version: i32,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Option<Vec<u8>>,
    pub read_only: Option<bool>,
}

/// A ConnectRequest body; `read_only: None` leaves the optional byte out.
pub fn connect_request(
    last_zxid: i64,
    timeout_ms: i32,
    session_id: i64,
    passwd: Option<&[u8]>,
    read_only: Option<bool>,
) -> Vec<u8> {
    let mut e = Enc::new().i32(0).i64(last_zxid).i32(timeout_ms).i64(session_id).buf(passwd);
    if let Some(ro) = read_only {
        e = e.bool(ro);
    }
    e.bytes()
}

pub fn parse_connect_response(body: &[u8]) -> ConnectResponse {
    let mut d = Dec::new(body);
    let protocol_version = d.i32();
    let timeout_ms = d.i32();
    let session_id = d.i64();
    let passwd = d.buf();
    let read_only = if d.remaining() > 0 { Some(d.bool()) } else { None };
    d.done();
    ConnectResponse { body_len: body.len(), protocol_version, timeout_ms, session_id, passwd, read_only }
}

impl RawConn {
    /// A plain TCP connection (no handshake) with `RAW_TIMEOUT` read/write timeouts.
    pub fn open(addr: &str) -> RawConn {
        RawConn::try_open(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    /// Like [`RawConn::open`], but returns the error: a server that drops a connection at once
    /// (e.g. over maxClientCnxns) can make the connect itself fail.
    pub fn try_open(addr: &str) -> io::Result<RawConn> {
        let stream = TcpStream::connect_timeout(&sock_addr(addr), Duration::from_secs(2))?;
        stream.set_read_timeout(Some(RAW_TIMEOUT))?;
        stream.set_write_timeout(Some(RAW_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(RawConn { stream, next_xid: 1, session_id: 0, passwd: Vec::new(), timeout_ms: 0, events: VecDeque::new() })
    }

    /// A new session (requested timeout `timeout_ms`, readOnly byte sent); asserts the
    /// handshake succeeded.
    pub fn session(addr: &str, timeout_ms: i32) -> RawConn {
        let mut c = RawConn::open(addr);
        let resp = c.handshake(&connect_request(0, timeout_ms, 0, Some(&[0u8; 16]), Some(false)));
        let resp = resp.expect("connect response for a new session");
        assert!(resp.session_id != 0, "new session got session id 0");
        assert!(resp.timeout_ms > 0, "new session got timeout {}", resp.timeout_ms);
        c
    }

    /// Sends a ConnectRequest body and reads the ConnectResponse.
    pub fn handshake(&mut self, request_body: &[u8]) -> Result<ConnectResponse, ReadError> {
        self.send_frame(request_body);
        let body = self.read_frame()?;
        let resp = parse_connect_response(&body);
        self.session_id = resp.session_id;
        self.passwd = resp.passwd.clone().unwrap_or_default();
        self.timeout_ms = resp.timeout_ms;
        Ok(resp)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
    }

    /// Like [`RawConn::send_raw`] but tolerates a server that already closed the connection.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes `len(body)` then `body`.
    pub fn send_frame(&mut self, body: &[u8]) {
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        self.send_raw(&frame);
    }

    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ReadError> {
        match self.stream.read_exact(buf) {
            Ok(()) => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }

    /// Reads one frame body.
    pub fn read_frame(&mut self) -> Result<Vec<u8>, ReadError> {
        let mut len = [0u8; 4];
        self.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len);
        assert!((0..=16 << 20).contains(&len), "server sent frame length {len}");
        let mut body = vec![0u8; len as usize];
        self.read_exact(&mut body)?;
        Ok(body)
    }

    /// Sends a request with the next xid.
    pub fn send_request(&mut self, opcode: i32, body: &[u8]) -> i32 {
        let xid = self.next_xid;
        self.next_xid += 1;
        self.send_request_xid(xid, opcode, body);
        xid
    }

    pub fn send_request_xid(&mut self, xid: i32, opcode: i32, body: &[u8]) {
        let frame = Enc::new().i32(xid).i32(opcode).raw(body).bytes();
        self.send_frame(&frame);
    }

    /// Reads the next reply, queuing watch notifications read before it.
    pub fn read_reply(&mut self) -> Result<(ReplyHeader, Vec<u8>), ReadError> {
        loop {
            let body = self.read_frame()?;
            let mut d = Dec::new(&body);
            let header = ReplyHeader { xid: d.i32(), zxid: d.i64(), err: d.i32() };
            let rest = body[16..].to_vec();
            if header.xid == -1 {
                self.events.push_back(parse_event(header.zxid, &rest));
                continue;
            }
            return Ok((header, rest));
        }
    }

    /// Sends a request and reads its reply; asserts the reply xid matches.
    pub fn call(&mut self, opcode: i32, body: &[u8]) -> (ReplyHeader, Vec<u8>) {
        let xid = self.send_request(opcode, body);
        let (h, b) = self.read_reply().unwrap_or_else(|e| panic!("no reply to op {opcode} xid {xid}: {e:?}"));
        assert_eq!(h.xid, xid, "reply xid for op {opcode}");
        (h, b)
    }

    /// Like [`RawConn::call`] but asserts err == 0.
    pub fn call_ok(&mut self, opcode: i32, body: &[u8]) -> (ReplyHeader, Vec<u8>) {
        let (h, b) = self.call(opcode, body);
        assert_eq!(h.err, 0, "op {opcode} failed with {}", h.err);
        (h, b)
    }

    /// Creates a node with world:anyone ALL; returns the reply header (err may be non-zero).
    pub fn create(&mut self, path: &str, data: Option<&[u8]>, flags: i32) -> ReplyHeader {
        let body = Enc::new().str(path).buf(data).world_acl(31).i32(flags).bytes();
        self.call(op::CREATE, &body).0
    }

    pub fn set_data(&mut self, path: &str, data: &[u8]) -> ReplyHeader {
        let body = Enc::new().str(path).buf(Some(data)).i32(-1).bytes();
        self.call(op::SET_DATA, &body).0
    }

    pub fn delete(&mut self, path: &str) -> ReplyHeader {
        let body = Enc::new().str(path).i32(-1).bytes();
        self.call(op::DELETE, &body).0
    }

    /// getData; `Ok((data, stat))` or `Err(code)`.
    pub fn get_data(&mut self, path: &str, watch: bool) -> Result<(Option<Vec<u8>>, RawStat), i32> {
        let body = Enc::new().str(path).bool(watch).bytes();
        let (h, b) = self.call(op::GET_DATA, &body);
        if h.err != 0 {
            assert!(b.is_empty(), "error reply {} carries a body", h.err);
            return Err(h.err);
        }
        let mut d = Dec::new(&b);
        let data = d.buf();
        let stat = d.stat();
        d.done();
        Ok((data, stat))
    }

    /// exists; `Ok(stat)` or `Err(code)`.
    pub fn exists(&mut self, path: &str, watch: bool) -> Result<RawStat, i32> {
        let body = Enc::new().str(path).bool(watch).bytes();
        let (h, b) = self.call(op::EXISTS, &body);
        if h.err != 0 {
            assert!(b.is_empty(), "error reply {} carries a body", h.err);
            return Err(h.err);
        }
        let mut d = Dec::new(&b);
        let stat = d.stat();
        d.done();
        Ok(stat)
    }

    pub fn get_children(&mut self, path: &str, watch: bool) -> Result<Vec<String>, i32> {
        let body = Enc::new().str(path).bool(watch).bytes();
        let (h, b) = self.call(op::GET_CHILDREN, &body);
        if h.err != 0 {
            return Err(h.err);
        }
        let mut d = Dec::new(&b);
        let n = d.i32();
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(d.str().expect("child name"));
        }
        d.done();
        Ok(out)
    }

    /// The next watch notification (queued or read now).
    pub fn next_event(&mut self) -> Result<RawEvent, ReadError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(e);
        }
        let body = self.read_frame()?;
        let mut d = Dec::new(&body);
        let xid = d.i32();
        let zxid = d.i64();
        let err = d.i32();
        assert_eq!(xid, -1, "expected a notification, got a reply frame xid {xid} err {err}");
        Ok(parse_event(zxid, &body[16..]))
    }

    pub fn ping(&mut self) -> ReplyHeader {
        self.send_request_xid(-2, op::PING, &[]);
        let (h, b) = self.read_reply().expect("ping reply");
        assert!(b.is_empty(), "ping reply has a body");
        h
    }

    /// Asserts the server closes the connection (EOF or reset) within `limit` without sending
    /// any further byte.
    pub fn expect_closed(&mut self, limit: Duration, context: &str) {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 256];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{context}: connection still open after {limit:?}");
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => panic!("{context}: expected the connection to close, got {n} bytes: {:02x?}", &buf[..n]),
                Err(e) => match classify(e) {
                    ReadError::Closed => return,
                    ReadError::Timeout => continue,
                    ReadError::Other(e) => panic!("{context}: read error {e}"),
                },
            }
        }
    }

    /// Closes the session with closeSession and waits for the server to close the socket.
    pub fn close_session(mut self) {
        let (h, b) = self.call(op::CLOSE_SESSION, &[]);
        assert_eq!(h.err, 0, "closeSession");
        assert!(b.is_empty());
        self.expect_closed(RAW_TIMEOUT, "after closeSession");
    }
}

fn classify(e: io::Error) -> ReadError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => ReadError::Closed,
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ReadError::Timeout,
        _ => ReadError::Other(e),
    }
}

fn parse_event(zxid: i64, body: &[u8]) -> RawEvent {
    let mut d = Dec::new(body);
    let kind = d.i32();
    let state = d.i32();
    let path = d.str().unwrap_or_default();
    d.done();
    RawEvent { zxid, kind, state, path }
}

// ------------------------------------------------------------------------------------------------
// A TCP proxy that can drop its connections, to make a real client reconnect.

/// Forwards 127.0.0.1:<port> to an upstream server. [`Proxy::cut`] shuts down every current
/// connection; [`Proxy::pause`] holds new connections (accepted, not forwarded) until
/// [`Proxy::resume`].
pub struct Proxy {
    addr: String,
    inner: std::sync::Arc<ProxyInner>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

struct ProxyInner {
    upstream: String,
    conns: std::sync::Mutex<Vec<TcpStream>>,
    paused: std::sync::Mutex<bool>,
    resumed: std::sync::Condvar,
    stop: std::sync::atomic::AtomicBool,
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let addr = listener.local_addr().unwrap().to_string();
        let inner = std::sync::Arc::new(ProxyInner {
            upstream: upstream.to_string(),
            conns: std::sync::Mutex::new(Vec::new()),
            paused: std::sync::Mutex::new(false),
            resumed: std::sync::Condvar::new(),
            stop: std::sync::atomic::AtomicBool::new(false),
        });
        let shared = inner.clone();
        let acceptor = std::thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                {
                    let mut paused = shared.paused.lock().unwrap();
                    while *paused && !shared.stop.load(Ordering::SeqCst) {
                        paused = shared.resumed.wait(paused).unwrap();
                    }
                }
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(server) = TcpStream::connect(&shared.upstream) else { continue };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut conns = shared.conns.lock().unwrap();
                    conns.push(client.try_clone().unwrap());
                    conns.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    std::thread::spawn(move || {
                        let _ = io::copy(&mut from, &mut to);
                        let _ = from.shutdown(Shutdown::Both);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { addr, inner, acceptor: Some(acceptor) }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Shuts down every connection made so far (both sides see EOF/reset).
    pub fn cut(&self) {
        for s in self.inner.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn pause(&self) {
        *self.inner.paused.lock().unwrap() = true;
    }

    pub fn resume(&self) {
        *self.inner.paused.lock().unwrap() = false;
        self.inner.resumed.notify_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.resume();
        let _ = TcpStream::connect(&self.addr); // wake the acceptor
        self.cut();
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The disk beside the server

/// Measures the test machine's own disk while a test runs: a thread writes 4 KiB and
/// fdatasyncs it every 10 ms in the temporary directory (the filesystem the test servers' data
/// directories are on), recording when each sync started and how long it took.
///
/// A write cannot be acknowledged before the disk has it: a virtual disk was seen taking 2.4 s
/// for one fdatasync here while other jobs wrote. Tests that bound write latency use this to
/// tell a disk that stalled from a server that did.
pub struct DiskProbe {
    samples: std::sync::Arc<std::sync::Mutex<Vec<(Instant, Duration)>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
}

impl DiskProbe {
    pub fn start() -> DiskProbe {
        use std::os::unix::fs::FileExt;
        let path = std::env::temp_dir().join(format!("corezk-disk-probe-{}", unique_suffix()));
        let file = std::fs::File::create(&path).expect("create the disk probe file");
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, st) = (samples.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let block = [0x5au8; 4096];
            let mut n = 0u64;
            while !st.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = file.write_all_at(&block, (n % 256) * 4096).and_then(|_| file.sync_data());
                if ok.is_ok() {
                    s.lock().unwrap().push((t, t.elapsed()));
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        DiskProbe { samples, stop, thread: Some(thread), path }
    }

    /// The longest probe sync that overlapped `[from, to]` (a sync still running at `to`
    /// counts with its time so far).
    pub fn worst_between(&self, from: Instant, to: Instant) -> Duration {
        let samples = self.samples.lock().unwrap();
        samples
            .iter()
            .filter(|(start, took)| *start <= to && *start + *took >= from)
            .map(|(_, took)| *took)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// The longest probe sync so far.
    pub fn worst(&self) -> Duration {
        self.samples.lock().unwrap().iter().map(|(_, t)| *t).max().unwrap_or(Duration::ZERO)
    }
}

impl Drop for DiskProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
