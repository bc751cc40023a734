//! Configuration: ZooKeeper's zoo.cfg keys, corezk's own keys, command-line flags.
//!
//! Owns parsing and validation of settings and their defaults. A ZooKeeper key corezk does not
//! implement is reported as ignored; any other unknown key or a bad value is an error naming
//! the key. Never starts anything.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

/// Which four-letter words are enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whitelist {
    All,
    Some(BTreeSet<String>),
}

impl Whitelist {
    pub fn allows(&self, cmd: &str) -> bool {
        cmd == "srvr"
            || match self {
                Whitelist::All => true,
                Whitelist::Some(s) => s.contains(cmd),
            }
    }
}

/// One `server.N` line: `host:quorumPort:electionPort[:participant|:observer][;[clientAddr:]clientPort]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub id: u32,
    pub quorum: std::net::SocketAddr,
    pub election: std::net::SocketAddr,
    pub observer: bool,
    pub client: Option<std::net::SocketAddr>,
}

fn resolve(host: &str, port: &str, line: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let port: u16 = port.trim().parse().map_err(|_| format!("bad port {port:?} in {line:?}"))?;
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?} in {line:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host:?} in {line:?} has no address"))
}

impl ServerSpec {
    pub fn parse(id: u32, spec: &str) -> Result<ServerSpec, String> {
        let line = format!("server.{id}={spec}");
        let (main, client) = match spec.split_once(';') {
            Some((m, c)) => (m.trim(), Some(c.trim())),
            None => (spec.trim(), None),
        };
        let parts: Vec<&str> = main.split(':').collect();
        let (host, q, e, role) = match parts.as_slice() {
            [h, q, e] => (*h, *q, *e, None),
            [h, q, e, r] => (*h, *q, *e, Some(*r)),
            _ => return Err(format!("expected host:quorumPort:electionPort[:role] in {line:?}")),
        };
        let observer = match role.map(str::trim) {
            None | Some("participant") => false,
            Some("observer") => true,
            Some(r) => return Err(format!("unknown role {r:?} in {line:?} (participant or observer)")),
        };
        let client = match client {
            None | Some("") => None,
            Some(c) => Some(match c.rsplit_once(':') {
                Some((a, p)) => resolve(a, p, &line)?,
                None => resolve("0.0.0.0", c, &line)?,
            }),
        };
        Ok(ServerSpec { id, quorum: resolve(host, q, &line)?, election: resolve(host, e, &line)?, observer, client })
    }
}

/// All settings of one corezk node.
#[derive(Debug, Clone)]
pub struct Config {
    pub tick_time: u32,
    pub init_limit: u32,
    pub sync_limit: u32,
    pub data_dir: PathBuf,
    pub data_log_dir: Option<PathBuf>,
    pub client_port: u16,
    pub client_port_address: IpAddr,
    pub max_client_cnxns: u32,
    pub min_session_timeout: Option<u32>,
    /// `readonlymode.enabled`: an ensemble member without a quorum serves read-only clients.
    pub read_only_mode: bool,
    pub max_session_timeout: Option<u32>,
    pub autopurge_snap_retain_count: u32,
    pub autopurge_purge_interval: u32,
    pub four_letter_words: Whitelist,
    pub extended_types: bool,
    pub jute_max_buffer: usize,
    pub container_check_interval_ms: u64,
    pub container_max_per_minute: u32,
    pub super_digest: Option<String>,
    /// `server.N` lines: (id, spec).
    pub servers: Vec<(u32, String)>,
    /// This server's id (`myid`: the dataDir's myid file, or the key).
    pub myid: Option<u32>,
    /// `peerType=observer`.
    pub peer_type_observer: bool,
    /// A secret every server of the ensemble shares (`peerSecret`, or `peerSecretFile`): peers
    /// prove it when they connect.
    pub peer_secret: Option<String>,
    /// `quorumListenOnAllIPs`: bind the quorum and election ports on every address.
    pub quorum_listen_on_all_ips: bool,
    /// The leader starts a new epoch past this zxid counter (ZooKeeper: near 2^32).
    pub zxid_counter_max: u32,
    /// Number of shards (executors); `None` = one per CPU in the affinity mask.
    pub cores: Option<usize>,
    /// Requests one connection may have in flight before the server stops reading from it.
    pub max_outstanding_per_session: usize,
    /// Most requests the commit core folds into one batch.
    pub max_batch: usize,
    /// Most transaction payload bytes in one batch (one log record).
    pub max_batch_bytes: usize,
    /// Outgoing bytes queued for a connection before it is closed as a slow consumer.
    pub max_queued_bytes_per_connection: usize,
    /// Messages in flight on each shard <-> commit-core channel.
    pub channel_depth: usize,
    /// fdatasync every log record (`forceSync`; off only for benchmarks).
    pub force_sync: bool,
    /// Transactions between snapshots (`snapCount`).
    pub snap_count: u64,
    /// Log segment preallocation in bytes (`preAllocSize`, given in KiB as in ZooKeeper).
    pub log_segment_bytes: u64,
    /// A log write + sync slower than this is logged (`fsync.warningthresholdms`).
    pub fsync_warning_threshold_ms: u64,
    /// Notes about ignored ZooKeeper keys, to log at start.
    pub ignored: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tick_time: 2000,
            init_limit: 10,
            sync_limit: 5,
            data_dir: PathBuf::from("corezk-data"),
            data_log_dir: None,
            client_port: 2181,
            client_port_address: "0.0.0.0".parse().unwrap(),
            max_client_cnxns: 60,
            min_session_timeout: None,
            read_only_mode: false,
            max_session_timeout: None,
            autopurge_snap_retain_count: 3,
            autopurge_purge_interval: 1,
            four_letter_words: Whitelist::Some(["srvr".to_string()].into_iter().collect()),
            extended_types: true,
            jute_max_buffer: 0xfffff,
            container_check_interval_ms: 60_000,
            container_max_per_minute: 10_000,
            super_digest: None,
            servers: Vec::new(),
            myid: None,
            peer_type_observer: false,
            peer_secret: None,
            quorum_listen_on_all_ips: false,
            zxid_counter_max: 0xffff_fff0,
            cores: None,
            max_outstanding_per_session: 1000,
            max_batch: 1000,
            max_batch_bytes: 8 << 20,
            max_queued_bytes_per_connection: 64 << 20,
            channel_depth: 1024,
            force_sync: true,
            snap_count: 100_000,
            log_segment_bytes: 64 << 20,
            fsync_warning_threshold_ms: 1000,
            ignored: Vec::new(),
        }
    }
}

/// ZooKeeper keys (zoo.cfg or Java properties) that corezk accepts but does not act on.
const IGNORED_ZK_KEYS: &[&str] = &[
    "admin.enableServer",
    "admin.serverPort",
    "admin.serverAddress",
    "admin.idleTimeout",
    "admin.commandURL",
    "standaloneEnabled",
    "reconfigEnabled",
    "snapSizeLimitInKb",
    "globalOutstandingLimit",
    "secureClientPort",
    "secureClientPortAddress",
    "electionAlg",
    "syncEnabled",
    "leaderServes",
    "cnxTimeout",
    "maxCnxns",
    "localSessionsEnabled",
    "localSessionsUpgradingEnabled",
    "clientPortListenBacklog",
    "sslQuorum",
    "dynamicConfigFile",
    "skipACL",
    "serverCnxnFactory",
    "audit.enable",
    "authProvider.1",
    "requireClientAuthScheme",
    "syncLimitCheck",
    "connectToLearnerMasterLimit",
    "snapshot.trust.empty",
    "txnLogSizeLimitInKb",
    "digest.enabled",
];

const IGNORED_ZK_PREFIXES: &[&str] = &["ssl.", "metricsProvider.", "authProvider.", "admin.", "quorum.", "jute."];

fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.trim().parse::<T>().map_err(|_| format!("invalid value for {key}: {v:?}"))
}

fn boolean(key: &str, v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" => Ok(true),
        "false" | "no" => Ok(false),
        _ => Err(format!("invalid value for {key}: {v:?} (expected true or false)")),
    }
}

impl Config {
    /// Applies one `key=value` setting.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let key = key.trim();
        let v = value.trim();
        // Java system properties may carry the `zookeeper.` prefix.
        let k = key.strip_prefix("zookeeper.").unwrap_or(key);
        match k {
            "tickTime" => {
                self.tick_time = num(key, v)?;
                if self.tick_time == 0 {
                    return Err(format!("invalid value for {key}: must be > 0"));
                }
            }
            "initLimit" => self.init_limit = num(key, v)?,
            "syncLimit" => self.sync_limit = num(key, v)?,
            "dataDir" => self.data_dir = PathBuf::from(v),
            "dataLogDir" => self.data_log_dir = Some(PathBuf::from(v)),
            "clientPort" => self.client_port = num(key, v)?,
            "clientPortAddress" => self.client_port_address = num(key, v)?,
            "maxClientCnxns" => self.max_client_cnxns = num(key, v)?,
            "minSessionTimeout" => self.min_session_timeout = Some(num(key, v)?),
            "maxSessionTimeout" => self.max_session_timeout = Some(num(key, v)?),
            "autopurge.snapRetainCount" => self.autopurge_snap_retain_count = num(key, v)?,
            "autopurge.purgeInterval" => self.autopurge_purge_interval = num(key, v)?,
            "4lw.commands.whitelist" => {
                let words: BTreeSet<String> =
                    v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
                self.four_letter_words = if words.contains("*") { Whitelist::All } else { Whitelist::Some(words) };
            }
            "extendedTypesEnabled" => self.extended_types = boolean(key, v)?,
            "jute.maxbuffer" => {
                let n: i64 = if let Some(h) = v.strip_prefix("0x") {
                    i64::from_str_radix(h, 16).map_err(|_| format!("invalid value for {key}: {v:?}"))?
                } else {
                    num(key, v)?
                };
                if !(1024..=(1 << 30)).contains(&n) {
                    return Err(format!("invalid value for {key}: {v} (1024..1073741824)"));
                }
                self.jute_max_buffer = n as usize;
            }
            "znode.container.checkIntervalMs" => self.container_check_interval_ms = num(key, v)?,
            "znode.container.maxPerMinute" => self.container_max_per_minute = num(key, v)?,
            "DigestAuthenticationProvider.superDigest" => {
                if !v.contains(':') {
                    return Err(format!("invalid value for {key}: expected user:base64digest"));
                }
                self.super_digest = Some(v.to_string());
            }
            "forceSync" => self.force_sync = boolean(key, v)?,
            "fsync.warningthresholdms" => self.fsync_warning_threshold_ms = num(key, v)?,
            "snapCount" => {
                self.snap_count = num(key, v)?;
                if self.snap_count < 2 {
                    return Err(format!("invalid value for {key}: must be >= 2"));
                }
            }
            "preAllocSize" => {
                let kib: u64 = num(key, v)?;
                if !(4..=(1 << 22)).contains(&kib) {
                    return Err(format!("invalid value for {key}: {v} KiB (4..4194304)"));
                }
                self.log_segment_bytes = kib * 1024;
            }
            "cores" => {
                let n: usize = num(key, v)?;
                if n == 0 {
                    return Err(format!("invalid value for {key}: must be >= 1"));
                }
                self.cores = Some(n);
            }
            "maxOutstandingPerSession" => self.max_outstanding_per_session = num::<usize>(key, v)?.max(1),
            "maxBatch" => self.max_batch = num::<usize>(key, v)?.max(1),
            "maxBatchBytes" => self.max_batch_bytes = num::<usize>(key, v)?.max(1 << 16),
            "maxQueuedBytesPerConnection" => self.max_queued_bytes_per_connection = num::<usize>(key, v)?.max(1 << 20),
            "myid" => self.myid = Some(num(key, v)?),
            "readonlymode.enabled" => self.read_only_mode = boolean(key, v)?,
            "peerType" => {
                self.peer_type_observer = match v {
                    "observer" => true,
                    "participant" => false,
                    _ => return Err(format!("invalid value for {key}: {v:?} (participant or observer)")),
                }
            }
            "peerSecret" => {
                if v.is_empty() {
                    return Err(format!("invalid value for {key}: empty"));
                }
                self.peer_secret = Some(v.to_string());
            }
            "peerSecretFile" => {
                let text = std::fs::read_to_string(v).map_err(|e| format!("cannot read {key} {v}: {e}"))?;
                self.set("peerSecret", text.trim())?;
            }
            "quorumListenOnAllIPs" => self.quorum_listen_on_all_ips = boolean(key, v)?,
            "zxidCounterMax" => {
                self.zxid_counter_max = num(key, v)?;
                if self.zxid_counter_max < 2 {
                    return Err(format!("invalid value for {key}: must be >= 2"));
                }
            }
            _ if k.starts_with("server.") => {
                let id: u32 = num(key, &k["server.".len()..])?;
                self.servers.push((id, v.to_string()));
            }
            _ if IGNORED_ZK_KEYS.contains(&k) || IGNORED_ZK_PREFIXES.iter().any(|p| k.starts_with(p)) => {
                self.ignored.push(format!("ZooKeeper setting {key} is not implemented by corezk and is ignored"));
            }
            _ => return Err(format!("unknown setting {key:?}")),
        }
        Ok(())
    }

    /// Parses zoo.cfg text (java.util.Properties style: `key=value`, `#`/`!` comments).
    pub fn apply_cfg(&mut self, text: &str) -> Result<(), String> {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some((k, v)) = line.split_once(['=', ':']) else {
                return Err(format!("line {}: expected key=value, got {line:?}", n + 1));
            };
            self.set(k, v).map_err(|e| format!("line {}: {e}", n + 1))?;
        }
        Ok(())
    }

    /// The ensemble's servers, parsed and checked (empty: standalone).
    pub fn ensemble(&self) -> Result<Vec<ServerSpec>, String> {
        let mut v = Vec::new();
        for (id, spec) in &self.servers {
            let s = ServerSpec::parse(*id, spec)?;
            if v.iter().any(|o: &ServerSpec| o.id == s.id) {
                return Err(format!("server.{id} is given twice"));
            }
            v.push(s);
        }
        v.sort_by_key(|s| s.id);
        Ok(v)
    }

    /// The session timeout bounds: 2x and 20x tickTime unless set.
    pub fn session_timeout_bounds(&self) -> (i32, i32) {
        let min = self.min_session_timeout.unwrap_or(self.tick_time * 2) as i32;
        let max = self.max_session_timeout.unwrap_or(self.tick_time * 20) as i32;
        (min, max.max(min))
    }
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    Serve(Box<Config>),
    Help,
    Version,
}

pub const USAGE: &str = "\
usage: corezk [--config zoo.cfg] [--port PORT] [--bind ADDR] [--data-dir DIR] [--cores N] [--set KEY=VALUE]...

Starts a standalone ZooKeeper-compatible server (port 2181, data in ./corezk-data by default).
  --config FILE     read a ZooKeeper zoo.cfg (flags given after it override its keys)
  --port PORT       client port (zoo.cfg clientPort)
  --bind ADDR       address to listen on (zoo.cfg clientPortAddress, default 0.0.0.0)
  --data-dir DIR    data directory (zoo.cfg dataDir)
  --cores N         number of shards, one pinned executor each (default: CPUs this process may use)
  --set KEY=VALUE   any zoo.cfg or corezk key, e.g. --set 4lw.commands.whitelist=*
  --help, --version

An ensemble on this host (one process per node, zoo.cfg files written for you):
  corezk ensemble [--nodes 3] [--observers 0] [--dir corezk-ensemble]   (corezk ensemble --help)

Tools:
  corezk log dump <log file or directory>     print log records (like ZooKeeper's LogFormatter)
  corezk snapshot dump <snapshot file>        print a snapshot (like ZooKeeper's SnapshotFormatter)
";

/// Parses command-line arguments (without the program name).
pub fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut cfg = Config::default();
    let mut i = 0;
    let value = |i: &mut usize| -> Result<String, String> {
        *i += 1;
        args.get(*i).cloned().ok_or_else(|| format!("{} needs a value", args[*i - 1]))
    };
    while i < args.len() {
        let a = args[i].as_str();
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a, None),
        };
        let val = |i: &mut usize| inline.clone().map(Ok).unwrap_or_else(|| value(i));
        match flag {
            "--help" | "-h" => return Ok(Command::Help),
            "--version" | "-V" => return Ok(Command::Version),
            "--config" | "-c" => {
                let p = val(&mut i)?;
                let text = std::fs::read_to_string(&p).map_err(|e| format!("cannot read config {p}: {e}"))?;
                cfg.apply_cfg(&text).map_err(|e| format!("{p}: {e}"))?;
            }
            "--port" => cfg.set("clientPort", &val(&mut i)?)?,
            "--bind" => cfg.set("clientPortAddress", &val(&mut i)?)?,
            "--data-dir" => cfg.set("dataDir", &val(&mut i)?)?,
            "--cores" => cfg.set("cores", &val(&mut i)?)?,
            "--set" => {
                let kv = val(&mut i)?;
                let (k, v) = kv.split_once('=').ok_or_else(|| format!("--set expects KEY=VALUE, got {kv:?}"))?;
                cfg.set(k, v)?;
            }
            _ => return Err(format!("unknown argument {a:?}\n\n{USAGE}")),
        }
        i += 1;
    }
    Ok(Command::Serve(Box::new(cfg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoo_cfg_keys() {
        let mut c = Config::default();
        let cfg = "# c\ntickTime=3000\nclientPort = 2182\n4lw.commands.whitelist=ruok, stat\n";
        c.apply_cfg(&format!("{cfg}admin.enableServer=false\nserver.1=127.0.0.1:2888:3888\n")).unwrap();
        assert_eq!(c.tick_time, 3000);
        assert_eq!(c.client_port, 2182);
        assert!(c.four_letter_words.allows("ruok") && c.four_letter_words.allows("srvr"));
        assert!(!c.four_letter_words.allows("mntr"));
        assert_eq!(c.ignored.len(), 1);
        assert_eq!(c.servers.len(), 1);
        assert_eq!(c.session_timeout_bounds(), (6000, 60000));
        let e = c.apply_cfg("bogusKey=1").unwrap_err();
        assert!(e.contains("bogusKey"), "{e}");
        let e = c.apply_cfg("tickTime=abc").unwrap_err();
        assert!(e.contains("tickTime"), "{e}");
    }

    #[test]
    fn flags_override() {
        let args: Vec<String> = ["--port", "1234", "--set", "zookeeper.extendedTypesEnabled=false", "--cores=1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        match parse_args(&args).unwrap() {
            Command::Serve(c) => {
                assert_eq!(c.client_port, 1234);
                assert!(!c.extended_types);
                assert_eq!(c.cores, Some(1));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_args(&["--nope".to_string()]).is_err());
        assert!(parse_args(&["--set".to_string(), "x".to_string()]).is_err());
    }
}
