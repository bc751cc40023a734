//! The run's settings and their command-line syntax.

use crate::workload::{OpMix, ReadRatio};
use serde::Serialize;
use std::time::Duration;

/// Every knob of one load run. All of it goes into the JSON/CSV output.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// `host:port` of each server; session `i` connects to `hosts[i % hosts.len()]`.
    pub hosts: Vec<String>,
    /// Sessions (TCP connections), spread over the threads round-robin.
    pub sessions: usize,
    /// Requests each session keeps outstanding (closed loop); the cap of outstanding requests per
    /// session in open loop.
    pub inflight: usize,
    pub read_ratio: ReadRatio,
    /// The read ratio as the user wrote it (e.g. `10:1`).
    pub read_ratio_spec: String,
    /// Bytes of data in each key node and in every setData.
    pub value_size: usize,
    /// Key nodes created by the setup and hit uniformly by getData/setData/exists/getChildren.
    pub keys: usize,
    pub op_mix: OpMix,
    /// Measured time, after the warm-up.
    pub duration: Duration,
    /// Time the load runs before measuring starts.
    pub warmup: Duration,
    /// Executor threads (each pinned to one CPU of the affinity mask, round-robin).
    pub threads: usize,
    /// Total requests per second for open loop; `None` = closed loop (saturation).
    pub rate: Option<f64>,
    pub label: String,
    pub seed: u64,
    /// Session timeout asked for in the handshake (ms).
    pub session_timeout_ms: i32,
    /// The run's znodes live under `/loadgen-<run_id>`.
    pub run_id: String,
    /// Skip creating the key nodes (they exist from an earlier run with the same `run_id`).
    pub skip_setup: bool,
    /// Leave `/loadgen-<run_id>` in place after the run.
    pub keep: bool,
    /// No live progress on stderr.
    pub quiet: bool,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            hosts: vec!["127.0.0.1:2181".into()],
            sessions: 16,
            inflight: 8,
            read_ratio: ReadRatio(10.0 / 11.0),
            read_ratio_spec: "10:1".into(),
            value_size: 1024,
            keys: 1000,
            op_mix: OpMix::default(),
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            threads: 0,
            rate: None,
            label: String::new(),
            seed: 0,
            session_timeout_ms: 30_000,
            run_id: String::new(),
            skip_setup: false,
            keep: false,
            quiet: false,
        }
    }
}

/// The settings as they appear in the JSON output.
#[derive(Clone, Debug, Serialize)]
pub struct SettingsRecord {
    pub hosts: Vec<String>,
    pub sessions: usize,
    pub inflight: usize,
    pub read_ratio: String,
    pub read_pct: f64,
    pub value_size: usize,
    pub keys: usize,
    pub op_mix: String,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub threads: usize,
    pub mode: &'static str,
    pub rate: Option<f64>,
    pub seed: u64,
    pub session_timeout_ms: i32,
    pub run_id: String,
    pub base_path: String,
}

impl LoadConfig {
    pub fn base_path(&self) -> String {
        format!("/loadgen-{}", self.run_id)
    }

    /// Fills in defaults that depend on the machine (threads) or the moment (run id, seed).
    pub fn resolve(&mut self, affinity_cpus: usize) {
        if self.threads == 0 {
            self.threads = affinity_cpus.max(1).min(self.sessions.max(1));
        }
        self.threads = self.threads.min(self.sessions.max(1));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        if self.seed == 0 {
            self.seed = (now.as_nanos() as u64) ^ ((std::process::id() as u64) << 32) | 1;
        }
        if self.run_id.is_empty() {
            self.run_id = format!("{:x}{:04x}", now.as_secs(), (now.subsec_nanos() ^ std::process::id()) & 0xffff);
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.hosts.is_empty() {
            return Err("--hosts: need at least one host:port".into());
        }
        if self.sessions == 0 {
            return Err("--sessions must be at least 1".into());
        }
        if self.inflight == 0 {
            return Err("--inflight must be at least 1".into());
        }
        if self.keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        if self.value_size > 1_000_000 {
            return Err("--value-size must be at most 1000000 (ZooKeeper's jute.maxbuffer is 1 MiB)".into());
        }
        if self.duration.is_zero() {
            return Err("--duration must be > 0".into());
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err("--rate must be a positive number of requests per second".into());
            }
        }
        if !self.run_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err("--run-id may only hold letters, digits, '-' and '_'".into());
        }
        crate::workload::Mixer::new(self.read_ratio, &self.op_mix)?;
        Ok(())
    }

    pub fn record(&self) -> SettingsRecord {
        SettingsRecord {
            hosts: self.hosts.clone(),
            sessions: self.sessions,
            inflight: self.inflight,
            read_ratio: self.read_ratio_spec.clone(),
            read_pct: self.read_ratio.percent(),
            value_size: self.value_size,
            keys: self.keys,
            op_mix: self.op_mix.to_string(),
            duration_s: self.duration.as_secs_f64(),
            warmup_s: self.warmup.as_secs_f64(),
            threads: self.threads,
            mode: if self.rate.is_some() { "open" } else { "closed" },
            rate: self.rate,
            seed: self.seed,
            session_timeout_ms: self.session_timeout_ms,
            run_id: self.run_id.clone(),
            base_path: self.base_path(),
        }
    }
}

/// Parses `10`, `2.5`, `10s`, `500ms`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("bad duration `{s}` (e.g. 10, 10s, 500ms, 2m)"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("bad duration `{s}`"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// Command-line arguments as `--name value` / `--name=value` pairs and bare flags.
pub struct Args {
    items: Vec<(String, Option<String>)>,
}

/// Options that take no value.
const FLAGS: &[&str] = &["keep", "skip-setup", "quiet", "help"];

impl Args {
    pub fn parse(args: &[String]) -> Result<Args, String> {
        let mut items = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let name =
                a.strip_prefix("--").ok_or_else(|| format!("unexpected argument `{a}` (options start with --)"))?;
            if let Some((n, v)) = name.split_once('=') {
                items.push((n.to_string(), Some(v.to_string())));
            } else if FLAGS.contains(&name) {
                items.push((name.to_string(), None));
            } else {
                let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                items.push((name.to_string(), Some(v.clone())));
            }
        }
        Ok(Args { items })
    }

    pub fn has(&self, name: &str) -> bool {
        self.items.iter().any(|(n, _)| n == name)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.items.iter().rev().find(|(n, _)| n == name).and_then(|(_, v)| v.as_deref())
    }

    /// Fails on an option not in `known`.
    pub fn check_known(&self, known: &[&str]) -> Result<(), String> {
        for (n, _) in &self.items {
            if !known.contains(&n.as_str()) {
                return Err(format!("unknown option --{n} (see --help)"));
            }
        }
        Ok(())
    }

    fn num<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        self.get(name).map(|v| v.trim().parse::<T>().map_err(|_| format!("--{name}: bad number `{v}`"))).transpose()
    }
}

/// The options `run` (and `sweep`) understand.
pub const RUN_OPTIONS: &[&str] = &[
    "hosts",
    "sessions",
    "inflight",
    "read-ratio",
    "value-size",
    "keys",
    "op-mix",
    "duration",
    "warmup",
    "threads",
    "rate",
    "json",
    "csv",
    "label",
    "seed",
    "session-timeout",
    "run-id",
    "skip-setup",
    "keep",
    "quiet",
    "help",
];

/// Builds a `LoadConfig` from the workload options (not the output ones).
pub fn load_config(args: &Args) -> Result<LoadConfig, String> {
    let mut c = LoadConfig::default();
    if let Some(h) = args.get("hosts") {
        c.hosts = h.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    }
    if let Some(v) = args.num("sessions")? {
        c.sessions = v;
    }
    if let Some(v) = args.num("inflight")? {
        c.inflight = v;
    }
    if let Some(v) = args.get("read-ratio") {
        c.read_ratio = ReadRatio::parse(v)?;
        c.read_ratio_spec = v.to_string();
    }
    if let Some(v) = args.num("value-size")? {
        c.value_size = v;
    }
    if let Some(v) = args.num("keys")? {
        c.keys = v;
    }
    if let Some(v) = args.get("op-mix") {
        c.op_mix = OpMix::parse(v)?;
    }
    if let Some(v) = args.get("duration") {
        c.duration = parse_duration(v)?;
    }
    if let Some(v) = args.get("warmup") {
        c.warmup = parse_duration(v)?;
    }
    if let Some(v) = args.num("threads")? {
        c.threads = v;
    }
    c.rate = args.num("rate")?;
    if let Some(v) = args.get("label") {
        c.label = v.to_string();
    }
    if let Some(v) = args.num("seed")? {
        c.seed = v;
    }
    if let Some(v) = args.num("session-timeout")? {
        c.session_timeout_ms = v;
    }
    if let Some(v) = args.get("run-id") {
        c.run_id = v.to_string();
    }
    c.skip_setup = args.has("skip-setup");
    c.keep = args.has("keep");
    c.quiet = args.has("quiet");
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Args {
        Args::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn parses_the_knobs() {
        let a = args(&[
            "--hosts",
            "127.0.0.1:1,127.0.0.1:2",
            "--sessions=4",
            "--inflight",
            "2",
            "--read-ratio",
            "90%",
            "--duration",
            "500ms",
            "--warmup",
            "0",
            "--op-mix",
            "get,set,multi",
            "--rate",
            "1000",
            "--keep",
        ]);
        a.check_known(RUN_OPTIONS).unwrap();
        let c = load_config(&a).unwrap();
        assert_eq!(c.hosts, vec!["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(c.sessions, 4);
        assert_eq!(c.inflight, 2);
        assert_eq!(c.read_ratio.0, 0.9);
        assert_eq!(c.duration, Duration::from_millis(500));
        assert_eq!(c.warmup, Duration::ZERO);
        assert_eq!(c.rate, Some(1000.0));
        assert!(c.keep);
        assert!(!c.quiet);
        assert_eq!(c.value_size, 1024);
        assert_eq!(c.keys, 1000);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Args::parse(&["--sessions".to_string()]).is_err());
        assert!(Args::parse(&["oops".to_string()]).is_err());
        assert!(args(&["--bogus", "1"]).check_known(RUN_OPTIONS).is_err());
        assert!(load_config(&args(&["--sessions", "x"])).is_err());
        let mut c = load_config(&args(&["--sessions", "0"])).unwrap();
        c.resolve(2);
        assert!(c.validate().is_err());
    }

    #[test]
    fn resolve_caps_threads_and_picks_ids() {
        let mut c = LoadConfig { sessions: 3, ..Default::default() };
        c.resolve(8);
        assert_eq!(c.threads, 3);
        assert!(!c.run_id.is_empty());
        assert_ne!(c.seed, 0);
        c.validate().unwrap();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("-1").is_err());
    }
}
