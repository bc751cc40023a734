//! What a run reports: the human summary, JSON and CSV, and the facts about the machine and the
//! target that make a result comparable (settings, `srvr` version, CPU count, kernel, date).

use crate::config::{LoadConfig, SettingsRecord};
use crate::engine::{LoadOutcome, ProgressPoint};
use crate::stats::{Percentiles, Stats};
use crate::workload::OpKind;
use crate::zk;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The machine the loadgen ran on.
#[derive(Clone, Debug, Serialize)]
pub struct HostInfo {
    /// Online CPUs of the host.
    pub cpus: usize,
    /// CPUs this process may run on.
    pub affinity_cpus: Vec<usize>,
    /// `uname -srvm`.
    pub kernel: String,
    pub hostname: String,
}

impl HostInfo {
    pub fn collect() -> HostInfo {
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        let (kernel, hostname) = if unsafe { libc::uname(&mut u) } == 0 {
            let f = |a: &[libc::c_char]| {
                let bytes: Vec<u8> = a.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            };
            (format!("{} {} {} {}", f(&u.sysname), f(&u.release), f(&u.version), f(&u.machine)), f(&u.nodename))
        } else {
            ("unknown".into(), "unknown".into())
        };
        HostInfo {
            cpus: if cpus > 0 { cpus as usize } else { 0 },
            affinity_cpus: crate::engine::allowed_cpus(),
            kernel,
            hostname,
        }
    }
}

/// The servers under test.
#[derive(Clone, Debug, Serialize)]
pub struct TargetInfo {
    pub hosts: Vec<String>,
    /// First line of `srvr` from the first host that answered (e.g. `Zookeeper version: 3.8.0-...`).
    pub version: String,
    /// First line of `srvr` per host (or the error).
    pub srvr: BTreeMap<String, String>,
}

impl TargetInfo {
    pub fn collect(hosts: &[String]) -> TargetInfo {
        let mut srvr = BTreeMap::new();
        let mut version = String::new();
        for h in hosts {
            let line = match zk::server_version(h) {
                Ok(v) => {
                    if version.is_empty() {
                        version = v.clone();
                    }
                    v
                }
                Err(e) => format!("unknown ({e})"),
            };
            srvr.insert(h.clone(), line);
        }
        if version.is_empty() {
            version = "unknown".into();
        }
        TargetInfo { hosts: hosts.to_vec(), version, srvr }
    }
}

/// Results of one op kind.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OpResult {
    pub count: u64,
    pub ops_per_sec: f64,
    pub errors: u64,
    pub latency_us: Percentiles,
}

/// Errors of one code.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ErrorCount {
    pub code: i32,
    pub name: &'static str,
    pub count: u64,
}

/// The measured numbers of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub measured_s: f64,
    pub total_ops: u64,
    pub ops_per_sec: f64,
    pub errors: u64,
    pub errors_by_code: Vec<ErrorCount>,
    pub latency_us: Percentiles,
    /// Per op kind that was sent at least once.
    pub ops: BTreeMap<String, OpResult>,
    pub warmup_ops: u64,
    pub reconnects: u64,
    pub inflight_cap_waits: u64,
    /// Open loop only: how late requests left the loadgen after their intended send time.
    pub send_lag_us: Option<Percentiles>,
    pub executor_cpus: Vec<usize>,
    pub progress: Vec<ProgressPoint>,
}

impl Results {
    pub fn from_outcome(o: &LoadOutcome) -> Results {
        Results::from_stats(&o.stats, o.measured.as_secs_f64(), o.cpus.clone(), o.progress.clone())
    }

    pub fn from_stats(s: &Stats, secs: f64, executor_cpus: Vec<usize>, progress: Vec<ProgressPoint>) -> Results {
        let secs = if secs > 0.0 { secs } else { 1.0 };
        let mut ops = BTreeMap::new();
        for k in OpKind::ALL {
            let o = &s.ops[k.index()];
            if o.count > 0 {
                ops.insert(
                    k.name().to_string(),
                    OpResult {
                        count: o.count,
                        ops_per_sec: o.count as f64 / secs,
                        errors: o.errors,
                        latency_us: Percentiles::of(&o.latency),
                    },
                );
            }
        }
        let total = s.total_ops();
        Results {
            measured_s: secs,
            total_ops: total,
            ops_per_sec: total as f64 / secs,
            errors: s.total_errors(),
            errors_by_code: s
                .errors_by_code
                .iter()
                .map(|(&code, &count)| ErrorCount { code, name: zk::error_name(code), count })
                .collect(),
            latency_us: Percentiles::of(&s.overall_latency()),
            ops,
            warmup_ops: s.warmup_ops,
            reconnects: s.reconnects,
            inflight_cap_waits: s.inflight_cap_waits,
            send_lag_us: if s.send_lag.is_empty() { None } else { Some(Percentiles::of(&s.send_lag)) },
            executor_cpus,
            progress,
        }
    }
}

/// Everything one run writes to JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub tool_version: &'static str,
    pub label: String,
    /// UTC, ISO 8601.
    pub date: String,
    pub settings: SettingsRecord,
    pub target: TargetInfo,
    pub host: HostInfo,
    pub results: Results,
}

impl Report {
    pub fn new(cfg: &LoadConfig, target: TargetInfo, host: HostInfo, results: Results) -> Report {
        Report {
            tool: "corezk-loadgen",
            tool_version: env!("CARGO_PKG_VERSION"),
            label: cfg.label.clone(),
            date: utc_now(),
            settings: cfg.record(),
            target,
            host,
            results,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// The CSV header (fixed columns, one per op kind too, so rows of different runs line up).
    pub fn csv_header() -> String {
        let mut cols: Vec<String> = [
            "date",
            "label",
            "hosts",
            "target_version",
            "mode",
            "sessions",
            "inflight",
            "threads",
            "read_ratio",
            "read_pct",
            "value_size",
            "keys",
            "op_mix",
            "duration_s",
            "warmup_s",
            "rate",
            "seed",
            "total_ops",
            "ops_per_sec",
            "errors",
            "p50_us",
            "p90_us",
            "p99_us",
            "p999_us",
            "max_us",
            "mean_us",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for k in OpKind::ALL {
            cols.push(format!("{}_ops", k.name()));
            cols.push(format!("{}_p99_us", k.name()));
        }
        cols.extend(["errors_by_code", "reconnects", "host_cpus", "kernel"].map(String::from));
        cols.join(",")
    }

    /// One CSV row matching `csv_header`.
    pub fn csv_row(&self) -> String {
        let s = &self.settings;
        let r = &self.results;
        let l = &r.latency_us;
        let mut f: Vec<String> = vec![
            self.date.clone(),
            self.label.clone(),
            s.hosts.join(" "),
            self.target.version.clone(),
            s.mode.to_string(),
            s.sessions.to_string(),
            s.inflight.to_string(),
            s.threads.to_string(),
            s.read_ratio.clone(),
            format!("{:.2}", s.read_pct),
            s.value_size.to_string(),
            s.keys.to_string(),
            s.op_mix.clone(),
            format!("{}", s.duration_s),
            format!("{}", s.warmup_s),
            s.rate.map(|r| r.to_string()).unwrap_or_default(),
            s.seed.to_string(),
            r.total_ops.to_string(),
            format!("{:.1}", r.ops_per_sec),
            r.errors.to_string(),
            format!("{:.1}", l.p50),
            format!("{:.1}", l.p90),
            format!("{:.1}", l.p99),
            format!("{:.1}", l.p999),
            format!("{:.1}", l.max),
            format!("{:.1}", l.mean),
        ];
        for k in OpKind::ALL {
            match r.ops.get(k.name()) {
                Some(o) => {
                    f.push(o.count.to_string());
                    f.push(format!("{:.1}", o.latency_us.p99));
                }
                None => {
                    f.push("0".into());
                    f.push(String::new());
                }
            }
        }
        f.push(r.errors_by_code.iter().map(|e| format!("{}:{}", e.code, e.count)).collect::<Vec<_>>().join(" "));
        f.push(r.reconnects.to_string());
        f.push(self.host.cpus.to_string());
        f.push(self.host.kernel.clone());
        f.iter().map(|v| csv_field(v)).collect::<Vec<_>>().join(",")
    }

    /// The human-readable summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let s = &self.settings;
        let r = &self.results;
        let mut o = String::new();
        let _ = writeln!(o, "corezk-loadgen {}{}", self.tool_version, label_suffix(&self.label));
        let _ = writeln!(o, "target   {} ({})", s.hosts.join(","), self.target.version);
        let _ = writeln!(
            o,
            "workload {} loop{}, {} sessions x {} in flight on {} thread(s), reads {} ({:.1}%), {} B values, {} keys, \
             mix {}",
            s.mode,
            s.rate.map(|r| format!(" at {r} ops/s")).unwrap_or_default(),
            s.sessions,
            s.inflight,
            s.threads,
            s.read_ratio,
            s.read_pct,
            s.value_size,
            s.keys,
            s.op_mix
        );
        let _ = writeln!(
            o,
            "measured {:.1} s after {:.1} s warm-up; host {} CPUs, {}",
            r.measured_s, s.warmup_s, self.host.cpus, self.host.kernel
        );
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<18} {:>10} {:>12} {:>8} {:>10} {:>10} {:>10} {:>10}",
            "op", "count", "ops/s", "errors", "p50 us", "p99 us", "p99.9 us", "max us"
        );
        for (name, op) in &r.ops {
            let l = &op.latency_us;
            let _ = writeln!(
                o,
                "{:<18} {:>10} {:>12.1} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                name, op.count, op.ops_per_sec, op.errors, l.p50, l.p99, l.p999, l.max
            );
        }
        let l = &r.latency_us;
        let _ = writeln!(
            o,
            "{:<18} {:>10} {:>12.1} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            "total", r.total_ops, r.ops_per_sec, r.errors, l.p50, l.p99, l.p999, l.max
        );
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "latency us: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (mean {:.1})",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        );
        if r.errors_by_code.is_empty() {
            let _ = writeln!(o, "errors: none");
        } else {
            let list: Vec<String> =
                r.errors_by_code.iter().map(|e| format!("{} {} x{}", e.code, e.name, e.count)).collect();
            let _ = writeln!(o, "errors: {}", list.join(", "));
        }
        if let Some(lag) = &r.send_lag_us {
            let _ = writeln!(
                o,
                "send lag us (loadgen lateness vs schedule, included in latency): p50 {:.1}  p99 {:.1}  max {:.1}",
                lag.p50, lag.p99, lag.max
            );
        }
        if r.reconnects > 0 {
            let _ = writeln!(o, "reconnects: {}", r.reconnects);
        }
        if r.inflight_cap_waits > 0 {
            let _ = writeln!(
                o,
                "note: the open-loop schedule hit the --inflight cap {} times (latency still counts from the intended \
                 send time)",
                r.inflight_cap_waits
            );
        }
        o
    }
}

fn label_suffix(label: &str) -> String {
    if label.is_empty() {
        String::new()
    } else {
        format!(" [{label}]")
    }
}

/// Quotes a CSV field when it needs it (RFC 4180).
pub fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

/// Appends `row` to the CSV file at `path`, writing `header` first if the file is new or empty.
pub fn append_csv(path: &str, header: &str, row: &str) -> Result<(), String> {
    use std::io::Write;
    let fresh = std::fs::metadata(path).map(|m| m.len() == 0).unwrap_or(true);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open {path}: {e}"))?;
    let mut text = String::new();
    if fresh {
        text.push_str(header);
        text.push('\n');
    }
    text.push_str(row);
    text.push('\n');
    f.write_all(text.as_bytes()).map_err(|e| format!("cannot write {path}: {e}"))
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format_utc(secs as i64)
}

pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample() -> Report {
        let mut s = Stats::default();
        for i in 0..100 {
            s.record(OpKind::GetData, 100_000 + i * 1000, 0);
        }
        for i in 0..10 {
            s.record(OpKind::SetData, 1_000_000 + i * 1000, if i == 0 { -101 } else { 0 });
        }
        s.warmup_ops = 5;
        let cfg = LoadConfig { duration: Duration::from_secs(2), label: "unit, \"test\"".into(), ..Default::default() };
        let host =
            HostInfo { cpus: 2, affinity_cpus: vec![0, 1], kernel: "Linux 6.1 x86_64".into(), hostname: "h".into() };
        let target = TargetInfo {
            hosts: cfg.hosts.clone(),
            version: "Zookeeper version: 3.8.0".into(),
            srvr: BTreeMap::from([("127.0.0.1:2181".to_string(), "Zookeeper version: 3.8.0".to_string())]),
        };
        let progress = vec![ProgressPoint { second: 1, warmup: false, ops: 110, errors: 1, p99_us: 1009.0 }];
        Report::new(&cfg, target, host, Results::from_stats(&s, 2.0, vec![1], progress))
    }

    #[test]
    fn json_has_every_key() {
        let r = sample();
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for k in ["tool", "tool_version", "label", "date", "settings", "target", "host", "results"] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        for k in [
            "hosts",
            "sessions",
            "inflight",
            "read_ratio",
            "read_pct",
            "value_size",
            "keys",
            "op_mix",
            "duration_s",
            "warmup_s",
            "threads",
            "mode",
            "rate",
            "seed",
            "session_timeout_ms",
            "run_id",
            "base_path",
        ] {
            assert!(v["settings"].get(k).is_some(), "settings.{k} missing");
        }
        assert_eq!(v["target"]["version"], "Zookeeper version: 3.8.0");
        assert_eq!(v["host"]["cpus"], 2);
        assert!(v["host"]["kernel"].is_string());
        let res = &v["results"];
        for k in ["measured_s", "total_ops", "ops_per_sec", "errors", "errors_by_code", "latency_us", "ops", "progress"]
        {
            assert!(res.get(k).is_some(), "results.{k} missing");
        }
        for k in ["p50", "p90", "p99", "p999", "max", "mean", "min"] {
            assert!(res["latency_us"].get(k).is_some(), "latency_us.{k} missing");
        }
        assert_eq!(res["total_ops"], 110);
        assert_eq!(res["ops_per_sec"], 55.0);
        assert_eq!(res["errors"], 1);
        assert_eq!(res["errors_by_code"][0]["code"], -101);
        assert_eq!(res["errors_by_code"][0]["name"], "NoNode");
        assert_eq!(res["ops"]["getData"]["count"], 100);
        assert_eq!(res["ops"]["setData"]["count"], 10);
        let sum: u64 = res["ops"].as_object().unwrap().values().map(|o| o["count"].as_u64().unwrap()).sum();
        assert_eq!(sum, 110);
        assert!(v["date"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn csv_row_matches_header() {
        let r = sample();
        let header = Report::csv_header();
        let row = r.csv_row();
        let split = |line: &str| {
            // A small RFC 4180 splitter for the test.
            let mut out = Vec::new();
            let mut cur = String::new();
            let mut quoted = false;
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                match (c, quoted) {
                    ('"', true) if chars.peek() == Some(&'"') => {
                        cur.push('"');
                        chars.next();
                    }
                    ('"', _) => quoted = !quoted,
                    (',', false) => out.push(std::mem::take(&mut cur)),
                    _ => cur.push(c),
                }
            }
            out.push(cur);
            out
        };
        let h = split(&header);
        let f = split(&row);
        assert_eq!(h.len(), f.len());
        let col = |name: &str| f[h.iter().position(|c| c == name).unwrap()].clone();
        assert_eq!(col("label"), "unit, \"test\"");
        assert_eq!(col("total_ops"), "110");
        assert_eq!(col("getData_ops"), "100");
        assert_eq!(col("multi_ops"), "0");
        assert_eq!(col("errors_by_code"), "-101:1");
        assert_eq!(col("target_version"), "Zookeeper version: 3.8.0");
        assert_eq!(col("host_cpus"), "2");
    }

    #[test]
    fn summary_mentions_ops_and_errors() {
        let s = sample().summary();
        assert!(s.contains("getData"));
        assert!(s.contains("setData"));
        assert!(s.contains("-101 NoNode x1"));
        assert!(s.contains("p99.9"));
    }

    #[test]
    fn dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn append_csv_writes_header_once() {
        let dir = std::env::temp_dir().join(format!("loadgen-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.csv");
        let p = p.to_str().unwrap();
        let _ = std::fs::remove_file(p);
        append_csv(p, "a,b", "1,2").unwrap();
        append_csv(p, "a,b", "3,4").unwrap();
        assert_eq!(std::fs::read_to_string(p).unwrap(), "a,b\n1,2\n3,4\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
