//! Runs the loadgen against a real corezk server started by the test.
//!
//! The server binary is taken from `COREZK_BIN`, else from this build's target directory
//! (`release/corezk`, then `debug/corezk`), else from `../target/release/corezk`; when none exists
//! it is built with cargo into this build's target directory.

use corezk_loadgen::config::LoadConfig;
use corezk_loadgen::workload::{OpMix, ReadRatio};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tests run one at a time: they measure, and the machine is small.
static SERIAL: Mutex<()> = Mutex::new(());

fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target dir>/tmp.
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").to_path_buf()
}

fn corezk_bin() -> PathBuf {
    static BIN: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut bin = BIN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = bin.as_ref() {
        return b.clone();
    }
    if let Ok(p) = std::env::var("COREZK_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "COREZK_BIN={} is not a file", p.display());
        *bin = Some(p.clone());
        return p;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf();
    let candidates = [
        target_dir().join("release/corezk"),
        target_dir().join("debug/corezk"),
        workspace.join("target/release/corezk"),
    ];
    let found = match candidates.iter().find(|p| p.is_file()) {
        Some(p) => p.clone(),
        None => {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--release", "-p", "corezk", "--bin", "corezk", "--manifest-path"])
                .arg(workspace.join("Cargo.toml"))
                .arg("--target-dir")
                .arg(target_dir())
                .status()
                .expect("run cargo to build corezk");
            assert!(status.success(), "building corezk failed; build it first or set COREZK_BIN");
            target_dir().join("release/corezk")
        }
    };
    *bin = Some(found.clone());
    found
}

/// A corezk process on a free loopback port with a temporary data directory; killed and
/// waited for on drop.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Server {
    fn start() -> Server {
        let bin = corezk_bin();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("corezk-loadgen-it-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let child = Command::new(&bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--cores", "1", "--set", "4lw.commands.whitelist=*"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut s = Server { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if s.four("ruok").as_deref() == Some("imok") {
                return s;
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                let log = std::fs::read_to_string(s.dir.join("server.log")).unwrap_or_default();
                panic!("corezk exited with {status} before it was ready:\n{log}");
            }
            assert!(Instant::now() < deadline, "corezk did not answer ruok within 15 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn four(&self, word: &str) -> Option<String> {
        let mut c = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        c.write_all(word.as_bytes()).ok()?;
        let mut out = String::new();
        c.read_to_string(&mut out).ok()?;
        Some(out)
    }

    fn node_count(&self) -> Option<u64> {
        let srvr = self.four("srvr")?;
        srvr.lines().find_map(|l| l.strip_prefix("Node count:")).and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn quick_config(server: &Server) -> LoadConfig {
    LoadConfig {
        hosts: vec![server.host()],
        sessions: 4,
        inflight: 4,
        keys: 200,
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(300),
        quiet: true,
        label: "integration".into(),
        seed: 42,
        ..Default::default()
    }
}

#[test]
fn closed_loop_counts_are_consistent_and_error_free() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start();
    let before = server.node_count();
    let cfg = LoadConfig {
        op_mix: OpMix::parse("get=4,exists=2,children=1,set=3,ephemeral=1,sequential=1,multi=1").unwrap(),
        read_ratio: ReadRatio::parse("10:1").unwrap(),
        ..quick_config(&server)
    };
    let report = corezk_loadgen::run(&cfg).expect("the run succeeds");
    let r = &report.results;
    assert!(r.total_ops > 0, "no operation completed");
    assert_eq!(r.errors, 0, "errors: {:?}", r.errors_by_code);
    assert!(r.errors_by_code.is_empty());
    let sum: u64 = r.ops.values().map(|o| o.count).sum();
    assert_eq!(r.total_ops, sum, "total ops must be the sum over op types");
    for name in
        ["getData", "exists", "getChildren", "setData", "createEphemeral", "createSequential", "delete", "multi"]
    {
        assert!(r.ops.get(name).is_some_and(|o| o.count > 0), "{name} never ran: {:?}", r.ops.keys());
    }
    let reads: u64 = ["getData", "exists", "getChildren"].iter().map(|n| r.ops[*n].count).sum();
    let read_frac = reads as f64 / r.total_ops as f64;
    assert!((read_frac - 10.0 / 11.0).abs() < 0.05, "read fraction {read_frac}");
    assert!((r.ops_per_sec - r.total_ops as f64 / 2.0).abs() < 1e-6);
    assert!(r.latency_us.p50 > 0.0 && r.latency_us.p50 <= r.latency_us.p99 && r.latency_us.p99 <= r.latency_us.max);
    assert!(report.target.version.contains("corezk"), "srvr said {}", report.target.version);
    assert_eq!(report.settings.sessions, 4);
    // Teardown removed everything the run made (keys, sequential nodes; ephemerals went with
    // their sessions).
    assert_eq!(server.node_count(), before, "teardown left nodes behind");
}

#[test]
fn binary_writes_json_and_csv() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start();
    let dir = std::env::temp_dir().join(format!("corezk-loadgen-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("run.json");
    let csv = dir.join("run.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_corezk-loadgen"))
        .args(["--hosts", &server.host(), "--sessions", "2", "--inflight", "2", "--keys", "50"])
        .args(["--duration", "1", "--warmup", "0.2", "--quiet", "--label", "bin"])
        .arg("--json")
        .arg(&json)
        .arg("--csv")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(out.status.success(), "loadgen failed: {}", String::from_utf8_lossy(&out.stderr));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("getData") && summary.contains("errors: none"), "{summary}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["label"], "bin");
    assert_eq!(v["settings"]["sessions"], 2);
    assert_eq!(v["results"]["errors"], 0);
    let total = v["results"]["total_ops"].as_u64().unwrap();
    let sum: u64 = v["results"]["ops"].as_object().unwrap().values().map(|o| o["count"].as_u64().unwrap()).sum();
    assert!(total > 0);
    assert_eq!(total, sum);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 2, "header + one row:\n{text}");
    assert!(text.starts_with("date,label,hosts,"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn open_loop_keeps_the_rate() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start();
    let cfg = LoadConfig { rate: Some(2000.0), ..quick_config(&server) };
    let report = corezk_loadgen::run(&cfg).expect("the run succeeds");
    let r = &report.results;
    assert_eq!(r.errors, 0, "errors: {:?}", r.errors_by_code);
    // 2000/s for 2 s, give or take scheduling at the window's edges.
    assert!((3000..=4600).contains(&r.total_ops), "open loop at 2000/s for 2 s completed {}", r.total_ops);
    assert!(r.send_lag_us.is_some());
    assert_eq!(report.settings.mode, "open");
}

#[test]
fn sweep_writes_tables_and_plots() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start();
    let dir = std::env::temp_dir().join(format!("corezk-loadgen-sweep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The same server under two labels, so the node-count plot has two points.
    let h = server.host();
    let targets = corezk_loadgen::sweep::parse_targets(&format!("corezk@1={h};corezk@2={h}")).unwrap();
    let cfg = LoadConfig {
        duration: Duration::from_millis(700),
        warmup: Duration::from_millis(100),
        sessions: 2,
        ..quick_config(&server)
    };
    let report = corezk_loadgen::sweep::run_sweep(&cfg, &targets, &[0.0, 100.0], &dir).expect("sweep runs");
    assert_eq!(report.cells.len(), 4);
    for c in &report.cells {
        assert!(c.failure.is_none(), "{:?}", c.failure);
        assert!(c.total_ops > 0);
        assert_eq!(c.errors, 0);
    }
    for f in ["sweep.csv", "sweep.md", "sweep.json", "throughput-vs-read-ratio.svg", "throughput-vs-nodes.svg"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let md = std::fs::read_to_string(dir.join("sweep.md")).unwrap();
    assert!(md.contains("| corezk@1 | 1 |") && md.contains("| corezk@2 | 2 |"), "{md}");
    std::fs::remove_dir_all(&dir).unwrap();
}
