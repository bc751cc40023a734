//! Four-letter words on the client port (ruok, srvr, stat, mntr, conf, cons, envi, wchs, isro,
//! dirs, srst, crst) in ZooKeeper's output formats, subject to `4lw.commands.whitelist`.
//!
//! Reads counters and settings only. Never changes server state except resetting statistics.

use crate::proto::codes::op_tag;
use crate::shard::Shard;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// The version string reported to clients (kazoo parses the leading digits).
pub const VERSION: &str = concat!("3.8.4-corezk-", env!("CARGO_PKG_VERSION"), ", built on corezk");

/// Every shard's data watches as (session, path), or `None` if a shard did not answer in time.
async fn watch_listing(shard: &Shard) -> Option<Vec<(i64, String)>> {
    let sh = &shard.shared;
    let wanted = sh.listing_wanted.fetch_add(1, Ordering::AcqRel) + 1;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        if sh.listings.iter().all(|l| l.lock().unwrap().0 >= wanted) {
            let mut all: Vec<(i64, String)> = sh.listings.iter().flat_map(|l| l.lock().unwrap().1.clone()).collect();
            all.sort();
            return Some(all);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The reply text for a four-letter word.
pub async fn respond(cmd: &str, shard: &Shard) -> String {
    if !shard.cfg.four_letter_words.allows(cmd) {
        return format!("{cmd} is not executed because it is not in the whitelist.\n");
    }
    let needs_server =
        matches!(cmd, "srvr" | "stat" | "mntr" | "cons" | "conf" | "wchs" | "wchc" | "wchp" | "dump" | "crst" | "srst");
    if !shard.shared.serving() && !shard.shared.read_only() {
        if needs_server {
            return format!("{NOT_SERVING}\n");
        }
        if cmd == "isro" {
            return "null".into();
        }
    }
    match cmd {
        "wchc" | "wchp" => {
            let Some(list) = watch_listing(shard).await else {
                return "Unable to gather the watch listing from every shard.\n".into();
            };
            let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for (sid, path) in list {
                let sid = format!("0x{:x}", sid as u64);
                let (k, v) = if cmd == "wchc" { (sid, path) } else { (path, sid) };
                groups.entry(k).or_default().push(v);
            }
            let mut s = String::new();
            for (k, vs) in groups {
                let _ = writeln!(s, "{k}");
                for v in vs {
                    let _ = writeln!(s, "\t{v}");
                }
            }
            s.push('\n');
            s
        }
        "dump" => dump(shard),
        "ruok" => "imok".into(),
        "isro" => if shard.shared.serving() { "rw" } else { "ro" }.into(),
        "srvr" => format!("Zookeeper version: {VERSION}\n{}", server_lines(shard)),
        "stat" => {
            let mut s = format!("Zookeeper version: {VERSION}\nClients:\n");
            for line in connection_lines(shard, false) {
                let _ = writeln!(s, "{line}");
            }
            s.push('\n');
            s.push_str(&server_lines(shard));
            s
        }
        "cons" => {
            let mut s = String::new();
            for line in connection_lines(shard, true) {
                let _ = writeln!(s, "{line}");
            }
            s.push('\n');
            s
        }
        "mntr" => mntr(shard),
        "conf" => conf(shard),
        "envi" => envi(),
        "wchs" => {
            let Some(list) = watch_listing(shard).await else {
                return "Unable to gather the watch listing from every shard.\n".into();
            };
            let conns: std::collections::BTreeSet<i64> = list.iter().map(|(s, _)| *s).collect();
            let paths: std::collections::BTreeSet<&str> = list.iter().map(|(_, p)| p.as_str()).collect();
            format!("{} connections watching {} paths\nTotal watches:{}\n", conns.len(), paths.len(), list.len())
        }
        "dirs" => {
            let d = dir_size(&shard.cfg.data_dir);
            let l = shard.cfg.data_log_dir.as_ref().map(|p| dir_size(p)).unwrap_or(d);
            format!("datadir_size: {d}\nlogdir_size: {l}\n")
        }
        "srst" => {
            for s in &shard.shared.shards {
                s.latency.reset();
                s.received.store(0, Ordering::Relaxed);
                s.sent.store(0, Ordering::Relaxed);
            }
            "Server stats reset.\n".into()
        }
        "crst" => {
            for c in shard.shared.conns.lock().unwrap().values() {
                c.latency.reset();
                c.received.store(0, Ordering::Relaxed);
                c.sent.store(0, Ordering::Relaxed);
            }
            "Connection stats reset.\n".into()
        }
        other => format!("{other} is not supported by corezk.\n"),
    }
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

/// Java's `double` text for an average in milliseconds.
fn java_double(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0');
    if s.ends_with('.') {
        format!("{s}0")
    } else {
        s.to_string()
    }
}

struct Totals {
    min_ms: u64,
    avg_ms: f64,
    max_ms: u64,
    received: u64,
    sent: u64,
    connections: u64,
    outstanding: u64,
}

fn totals(shard: &Shard) -> Totals {
    let sh = &shard.shared;
    let count = sh.sum(|s| s.latency.count.load(Ordering::Relaxed));
    let sum = sh.sum(|s| s.latency.sum_us.load(Ordering::Relaxed));
    let min = sh
        .shards
        .iter()
        .filter(|s| s.latency.count.load(Ordering::Relaxed) > 0)
        .map(|s| s.latency.min_us.load(Ordering::Relaxed))
        .min()
        .unwrap_or(0);
    let max = sh.shards.iter().map(|s| s.latency.max_us.load(Ordering::Relaxed)).max().unwrap_or(0);
    Totals {
        min_ms: min / 1000,
        avg_ms: if count == 0 { 0.0 } else { sum as f64 / count as f64 / 1000.0 },
        max_ms: max / 1000,
        received: sh.sum(|s| s.received.load(Ordering::Relaxed)),
        sent: sh.sum(|s| s.sent.load(Ordering::Relaxed)),
        connections: sh.sum(|s| s.connections.load(Ordering::Relaxed) as u64),
        outstanding: sh.sum(|s| s.outstanding.load(Ordering::Relaxed)),
    }
}

/// ZooKeeper's answer from a server that is not serving (no quorum, or still syncing).
pub const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests";

/// The `Mode:` of `srvr` and `zk_server_state` of `mntr`.
fn mode(shard: &Shard) -> &'static str {
    use crate::zab::msg::PeerState;
    if shard.cfg.servers.len() <= 1 {
        return "standalone";
    }
    if shard.shared.read_only() && !shard.shared.serving() {
        return "read-only";
    }
    match shard.shared.status().map(|s| s.state) {
        Some(PeerState::Leading) => "leader",
        Some(PeerState::Following) => "follower",
        Some(PeerState::Observing) => "observer",
        _ => "looking",
    }
}

fn server_lines(shard: &Shard) -> String {
    let t = totals(shard);
    let tree = shard.tree();
    format!(
        concat!(
            "Latency min/avg/max: {}/{}/{}\nReceived: {}\nSent: {}\nConnections: {}\nOutstanding: {}\n",
            "Zxid: 0x{:x}\nMode: {}\nNode count: {}\n"
        ),
        t.min_ms,
        java_double(t.avg_ms),
        t.max_ms,
        t.received,
        t.sent,
        t.connections,
        t.outstanding,
        tree.last_zxid(),
        mode(shard),
        tree.node_count() + 1,
    )
}

fn connection_lines(shard: &Shard, full: bool) -> Vec<String> {
    let conns = shard.shared.conns.lock().unwrap();
    conns
        .values()
        .map(|c| {
            let q = c.queued.load(Ordering::Relaxed);
            let r = c.received.load(Ordering::Relaxed);
            let s = c.sent.load(Ordering::Relaxed);
            let mut line = format!(" /{}:{}[1](queued={q},recved={r},sent={s}", c.peer.ip(), c.peer.port());
            if full {
                let sid = c.session.load(Ordering::Relaxed);
                if sid != 0 {
                    let _ = write!(line, ",sid=0x{:x}", sid as u64);
                }
                let count = c.latency.count.load(Ordering::Relaxed);
                let avg = if count == 0 { 0.0 } else { c.latency.sum_us.load(Ordering::Relaxed) as f64 / count as f64 };
                let _ = write!(
                    line,
                    ",lop={},est={},to={}",
                    op_tag(c.last_op.load(Ordering::Relaxed)),
                    c.established_ms,
                    c.timeout.load(Ordering::Relaxed)
                );
                let lcxid = c.last_cxid.load(Ordering::Relaxed);
                if lcxid >= 0 {
                    let _ = write!(line, ",lcxid=0x{lcxid:x}");
                }
                let _ = write!(
                    line,
                    ",lzxid=0x{:x},lresp={},llat={},minlat={},avglat={},maxlat={}",
                    c.last_zxid.load(Ordering::Relaxed) as u64,
                    c.last_resp_ms.load(Ordering::Relaxed),
                    c.last_latency_us.load(Ordering::Relaxed) / 1000,
                    c.latency.min_us.load(Ordering::Relaxed) / 1000,
                    java_double(avg / 1000.0),
                    c.latency.max_us.load(Ordering::Relaxed) / 1000,
                );
            }
            line.push(')');
            line
        })
        .collect()
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0)
}

fn max_fds() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    r.rlim_cur
}

fn mntr(shard: &Shard) -> String {
    let t = totals(shard);
    let tree = shard.tree();
    let sh = &shard.shared;
    let watches = sh.sum(|s| s.watch_total.load(Ordering::Relaxed) as u64);
    let mut s = String::new();
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(s, "zk_{k}\t{v}");
    };
    kv("version", VERSION.into());
    kv("server_state", mode(shard).into());
    kv("avg_latency", java_double(t.avg_ms));
    kv("max_latency", t.max_ms.to_string());
    kv("min_latency", t.min_ms.to_string());
    kv("packets_received", t.received.to_string());
    kv("packets_sent", t.sent.to_string());
    kv("num_alive_connections", t.connections.to_string());
    kv("outstanding_requests", t.outstanding.to_string());
    kv("znode_count", (tree.node_count() + 1).to_string());
    kv("watch_count", watches.to_string());
    kv("ephemerals_count", tree.ephemeral_count().to_string());
    kv("approximate_data_size", tree.approximate_data_size().to_string());
    kv("open_file_descriptor_count", open_fds().to_string());
    kv("max_file_descriptor_count", max_fds().to_string());
    kv("uptime", sh.started.elapsed().as_millis().to_string());
    kv("global_sessions", sh.sessions.load(Ordering::Relaxed).to_string());
    kv("local_sessions", "0".into());
    kv("last_zxid", format!("0x{:x}", tree.last_zxid()));
    kv("shards", sh.shards.len().to_string());
    for (i, st) in sh.shards.iter().enumerate() {
        kv(&format!("shard{i}_connections"), st.connections.load(Ordering::Relaxed).to_string());
    }
    kv("commit_batches", sh.batches.load(Ordering::Relaxed).to_string());
    kv("logged_transactions", sh.logged_txns.load(Ordering::Relaxed).to_string());
    kv("log_records", sh.log_records.load(Ordering::Relaxed).to_string());
    kv("log_write_us_total", sh.log_write_us.load(Ordering::Relaxed).to_string());
    kv("log_write_max_us", sh.log_write_max_us.load(Ordering::Relaxed).to_string());
    let recent = sh.log_write_worst_recent.lock().unwrap().get(std::time::Instant::now());
    kv("log_write_max_recent_us", recent.to_string());
    kv("log_slow_writes", sh.log_slow_writes.load(Ordering::Relaxed).to_string());
    if let Some(z) = sh.status() {
        if mode(shard) == "leader" {
            kv("learners", z.learners.to_string());
            kv("followers", z.learners.to_string());
            kv("synced_followers", z.synced_voters.to_string());
            kv("pending_syncs", z.pending_syncs.to_string());
            kv("uncommitted_bytes", z.uncommitted_bytes.to_string());
        }
        kv("current_epoch", z.epoch.to_string());
        kv("commit_zxid", format!("0x{:x}", z.commit));
    }
    s
}

fn dump(shard: &Shard) -> String {
    let tree = shard.tree();
    let mut s = String::from("SessionTracker dump:\n");
    let _ = writeln!(s, "Global Sessions({}):", shard.shared.sessions.load(Ordering::Relaxed));
    s.push_str("ephemeral nodes dump:\n");
    let owners = tree.ephemeral_sessions();
    let _ = writeln!(s, "Sessions with Ephemerals ({}):", owners.len());
    for sid in owners {
        let _ = writeln!(s, "0x{:x}:", sid as u64);
        for p in tree.ephemerals_of(sid) {
            let _ = writeln!(s, "\t{p}");
        }
    }
    s.push_str("Connections dump:\n");
    for line in connection_lines(shard, false) {
        let _ = writeln!(s, "{line}");
    }
    s
}

fn key_values(head: &str, kvs: &[(&str, String)]) -> String {
    let mut s = head.to_string();
    for (k, v) in kvs {
        let _ = writeln!(s, "{k}={v}");
    }
    s
}

fn conf(shard: &Shard) -> String {
    let c = &shard.cfg;
    let (min, max) = c.session_timeout_bounds();
    let data = c.data_dir.display().to_string();
    let log = c.data_log_dir.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| data.clone());
    key_values(
        "",
        &[
            ("clientPort", c.client_port.to_string()),
            ("secureClientPort", "-1".into()),
            ("dataDir", data),
            ("dataDirSize", dir_size(&c.data_dir).to_string()),
            ("dataLogDir", log),
            ("dataLogSize", c.data_log_dir.as_ref().map(|p| dir_size(p)).unwrap_or(0).to_string()),
            ("tickTime", c.tick_time.to_string()),
            ("maxClientCnxns", c.max_client_cnxns.to_string()),
            ("minSessionTimeout", min.to_string()),
            ("maxSessionTimeout", max.to_string()),
            ("clientPortListenBacklog", "-1".into()),
            ("serverId", "0".into()),
            ("cores", shard.shared.shards.len().to_string()),
        ],
    )
}

fn envi() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default().trim().to_string();
    key_values(
        "Environment:\n",
        &[
            ("zookeeper.version", VERSION.into()),
            ("host.name", read("/proc/sys/kernel/hostname")),
            ("os.name", "Linux".into()),
            ("os.arch", std::env::consts::ARCH.into()),
            ("os.version", read("/proc/sys/kernel/osrelease")),
            ("user.dir", std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default()),
            ("corezk.version", env!("CARGO_PKG_VERSION").into()),
        ],
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn java_doubles() {
        assert_eq!(super::java_double(0.0), "0.0");
        assert_eq!(super::java_double(1.28571), "1.2857");
        assert_eq!(super::java_double(2.5), "2.5");
    }
}
