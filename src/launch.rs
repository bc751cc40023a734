//! `corezk ensemble`: a whole ensemble on this host with one command, for trying corezk out,
//! testing and benchmarking. Writes one ZooKeeper zoo.cfg and `myid` per node into a
//! directory, starts one corezk process per node (each pinned to its own CPU where there are
//! enough), prints the connect string and each node's role, reports a node that exits, and
//! stops them all on Ctrl-C / SIGTERM.
//!
//! Owns the generated configuration files and the child processes only. Never decides anything
//! about replication: each node is an ordinary corezk started with `--config`.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What `corezk ensemble` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub voters: u32,
    pub observers: u32,
    pub dir: PathBuf,
    /// Node i (from 1) serves clients on `client_port + i - 1`, takes part in the quorum on
    /// `quorum_port + i - 1` and elections on `election_port + i - 1`.
    pub client_port: u16,
    pub quorum_port: u16,
    pub election_port: u16,
    /// Extra `key=value` lines for every node's zoo.cfg.
    pub settings: Vec<(String, String)>,
}

pub const USAGE: &str = "\
usage: corezk ensemble [--nodes N] [--observers M] [--dir DIR] [--client-port P] [--quorum-port Q]
                       [--election-port E] [--set KEY=VALUE]...

Runs an ensemble of N voting nodes (default 3) and M observers (default 0) on this host, one
corezk process each, until Ctrl-C. Node i serves clients on P+i-1 (default 2181..), uses
Q+i-1 (2888..) and E+i-1 (3888..) between nodes, and keeps its zoo.cfg, myid, data and log
(corezk.log) in DIR/node<i> (default ./corezk-ensemble). Data survives restarts.
";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Parses `corezk ensemble ...` arguments (those after `ensemble`).
pub fn parse(args: &[String]) -> Result<Plan, String> {
    let mut p = Plan {
        voters: 3,
        observers: 0,
        dir: PathBuf::from("corezk-ensemble"),
        client_port: 2181,
        quorum_port: 2888,
        election_port: 3888,
        settings: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        let num = |v: String| v.parse::<u32>().map_err(|_| format!("{a}: not a number: {v}"));
        match a.as_str() {
            "--nodes" => p.voters = num(value()?)?,
            "--observers" => p.observers = num(value()?)?,
            "--dir" => p.dir = PathBuf::from(value()?),
            "--client-port" => p.client_port = num(value()?)? as u16,
            "--quorum-port" => p.quorum_port = num(value()?)? as u16,
            "--election-port" => p.election_port = num(value()?)? as u16,
            "--set" => {
                let kv = value()?;
                let (k, v) = kv.split_once('=').ok_or_else(|| format!("--set {kv}: expected KEY=VALUE"))?;
                p.settings.push((k.trim().to_string(), v.trim().to_string()));
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if p.voters == 0 || p.voters + p.observers > 64 {
        return Err("an ensemble needs 1 to 64 nodes, at least one of them voting".into());
    }
    Ok(p)
}

impl Plan {
    fn nodes(&self) -> u32 {
        self.voters + self.observers
    }

    pub fn node_dir(&self, id: u32) -> PathBuf {
        self.dir.join(format!("node{id}"))
    }

    /// The zoo.cfg of node `id` (ZooKeeper's format: an existing ZooKeeper reads it too).
    pub fn config(&self, id: u32) -> String {
        let abs = |p: PathBuf| std::fs::canonicalize(&p).unwrap_or(p);
        let mut s = String::from("# written by corezk ensemble\n");
        let _ = writeln!(s, "tickTime=2000\ninitLimit=10\nsyncLimit=5");
        let _ = writeln!(s, "dataDir={}", abs(self.node_dir(id)).display());
        let _ = writeln!(s, "clientPort={}\nclientPortAddress=127.0.0.1", self.client_port + id as u16 - 1);
        let _ = writeln!(s, "4lw.commands.whitelist=*");
        if id > self.voters {
            let _ = writeln!(s, "peerType=observer");
        }
        for (k, v) in &self.settings {
            let _ = writeln!(s, "{k}={v}");
        }
        for i in 1..=self.nodes() {
            let role = if i > self.voters { ":observer" } else { "" };
            let _ = writeln!(
                s,
                "server.{i}=127.0.0.1:{}:{}{role};127.0.0.1:{}",
                self.quorum_port + i as u16 - 1,
                self.election_port + i as u16 - 1,
                self.client_port + i as u16 - 1
            );
        }
        s
    }

    pub fn connect_string(&self) -> String {
        (1..=self.nodes())
            .map(|i| format!("127.0.0.1:{}", self.client_port + i as u16 - 1))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn four_letter(port: u16, cmd: &str) -> Option<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(cmd.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn mode(port: u16) -> String {
    four_letter(port, "srvr")
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Mode: ").map(str::to_string)))
        .unwrap_or_else(|| "not serving".into())
}

fn spawn(exe: &Path, plan: &Plan, id: u32, cpu: Option<usize>) -> Result<Child, String> {
    let dir = plan.node_dir(id);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("corezk.log"))
        .map_err(|e| format!("cannot open {}: {e}", dir.join("corezk.log").display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--config").arg(dir.join("zoo.cfg")).arg("--cores").arg("1");
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::from(log));
    if let Some(cpu) = cpu {
        // Each node on a CPU of its own: its one shard is pinned to the first CPU it may use.
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                Ok(())
            });
        }
    }
    cmd.spawn().map_err(|e| format!("cannot start node {id} ({}): {e}", exe.display()))
}

/// Runs the ensemble until Ctrl-C or SIGTERM; returns when every node has been stopped.
pub fn run(plan: &Plan) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the corezk binary: {e}"))?;
    for id in 1..=plan.nodes() {
        let dir = plan.node_dir(id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        std::fs::write(dir.join("myid"), format!("{id}\n")).map_err(|e| format!("cannot write myid: {e}"))?;
        std::fs::write(dir.join("zoo.cfg"), plan.config(id)).map_err(|e| format!("cannot write zoo.cfg: {e}"))?;
    }
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let cpus = crate::runtime::preflight::allowed_cpus();
    let pin = cpus.len() >= plan.nodes() as usize;
    let mut children: Vec<(u32, Option<Child>)> = Vec::new();
    for id in 1..=plan.nodes() {
        let cpu = pin.then(|| cpus[(id - 1) as usize]);
        children.push((id, Some(spawn(&exe, plan, id, cpu)?)));
    }
    eprintln!(
        "corezk ensemble: {} voting node(s){} in {} (logs: node<i>/corezk.log){}",
        plan.voters,
        if plan.observers > 0 { format!(" and {} observer(s)", plan.observers) } else { String::new() },
        plan.dir.display(),
        if pin { ", one CPU each" } else { "; the nodes share this host's CPUs" }
    );
    let t0 = Instant::now();
    let mut announced = false;
    while !STOP.load(Ordering::SeqCst) {
        for (id, slot) in children.iter_mut() {
            if let Some(c) = slot {
                if let Ok(Some(status)) = c.try_wait() {
                    eprintln!("corezk ensemble: node {id} exited ({status}); the others go on (Ctrl-C stops them)");
                    *slot = None;
                }
            }
        }
        if !announced && (t0.elapsed() > Duration::from_secs(60) || all_serving(plan)) {
            announced = true;
            let roles: Vec<String> = (1..=plan.nodes())
                .map(|i| {
                    format!("node {i} :{} {}", plan.client_port + i as u16 - 1, mode(plan.client_port + i as u16 - 1))
                })
                .collect();
            eprintln!("corezk ensemble: {}", roles.join(", "));
            println!("{}", plan.connect_string());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("corezk ensemble: stopping");
    for (_, slot) in children.iter_mut() {
        if let Some(c) = slot {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
    }
    for (_, slot) in children.iter_mut() {
        if let Some(mut c) = slot.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    _ if Instant::now() > deadline => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
    Ok(())
}

fn all_serving(plan: &Plan) -> bool {
    (1..=plan.nodes()).all(|i| {
        let m = mode(plan.client_port + i as u16 - 1);
        m == "leader" || m == "follower" || m == "observer"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_config_is_zookeepers_and_names_every_node() {
        let args: Vec<String> = ["--nodes", "3", "--observers", "1", "--dir", "/tmp/x", "--set", "snapCount=1000"]
            .map(String::from)
            .to_vec();
        let p = parse(&args).unwrap();
        let c = p.config(4);
        assert!(c.contains("clientPort=2184\n"), "{c}");
        assert!(c.contains("peerType=observer\n") && c.contains("snapCount=1000\n"));
        assert!(c.contains("server.1=127.0.0.1:2888:3888;127.0.0.1:2181\n"), "{c}");
        assert!(c.contains("server.4=127.0.0.1:2891:3891:observer;127.0.0.1:2184\n"), "{c}");
        assert!(!p.config(1).contains("peerType"));
        assert_eq!(p.connect_string(), "127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183,127.0.0.1:2184");
        assert!(parse(&["--nodes".into(), "0".into()]).is_err());
        assert!(parse(&["--bogus".into()]).is_err());
    }
}
