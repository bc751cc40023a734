//! corezk-loadgen command line: `run` (the default) and `sweep`.

use corezk_loadgen::config::{load_config, Args, RUN_OPTIONS};
use corezk_loadgen::report::{append_csv, Report};
use corezk_loadgen::sweep::{parse_ratios, parse_targets, run_sweep, Target};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
corezk-loadgen: load generator for ZooKeeper-compatible servers (corezk, Apache ZooKeeper)

usage:
  corezk-loadgen [run] [options]          one run: setup, warm-up, measure, teardown
  corezk-loadgen sweep [options]          a grid of read ratios x targets, with tables and plots

workload options (run and sweep):
  --hosts H:P[,H:P...]   servers; session i connects to host i % count   [127.0.0.1:2181]
  --sessions N           sessions (one TCP connection each)                [16]
  --inflight N           requests outstanding per session (closed loop);
                         in open loop, the cap of outstanding requests       [8]
  --read-ratio R         R:W reads to writes (10:1), P% or P = percent of reads  [10:1]
  --value-size B         bytes in each key node and each setData            [1024]
  --keys N               key nodes created by the setup                     [1000]
  --op-mix SPEC          weights of ops, reads and writes normalised apart:
                         get, exists, children (reads); set, ephemeral,
                         sequential, multi (writes). e.g. get=8,exists=1,set=1,multi=1
                         ephemeral/sequential create nodes and delete them again
                                                                            [get=1,set=1]
  --duration T           measured time (10, 10s, 500ms, 2m)                 [10s]
  --warmup T             load before measuring                              [2s]
  --threads N            executor threads, pinned to the CPUs of the affinity mask
                                                                            [CPUs, at most sessions]
  --rate OPS             open loop at OPS requests/s in total; latency counts from the
                         intended send time (no coordinated omission)      [closed loop]
  --seed N               RNG seed                                           [from the clock]
  --session-timeout MS   session timeout asked for                           [30000]
  --run-id ID            znodes live under /loadgen-ID                      [random]
  --skip-setup           reuse the keys of an earlier --keep run with the same --run-id
  --keep                 leave /loadgen-ID in place afterwards
  --quiet                no live progress on stderr
  --label TEXT           a name stored with the results

run output:
  --json FILE            write the full report as JSON
  --csv FILE             append one row (header written when the file is new)

sweep options:
  --targets SPEC         label=H:P[,H:P];label2=...  (label name@N = N nodes) [target=--hosts]
  --read-ratios LIST     read percentages: 0,10,50 or 0..100/10              [0..100/10]
  --out DIR              where sweep.{csv,md,json} and the SVG plots go      [sweep-out]
";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match argv.first().map(String::as_str) {
        Some("run") => ("run", &argv[1..]),
        Some("sweep") => ("sweep", &argv[1..]),
        Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => ("run", &argv[..]),
    };
    let result = Args::parse(rest).and_then(|args| {
        if args.has("help") {
            print!("{USAGE}");
            return Ok(());
        }
        if cmd == "sweep" {
            sweep(&args)
        } else {
            run(&args)
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corezk-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    args.check_known(RUN_OPTIONS)?;
    let cfg = load_config(args)?;
    let report = corezk_loadgen::run(&cfg)?;
    print!("{}", report.summary());
    if let Some(path) = args.get("json") {
        std::fs::write(path, report.to_json() + "\n").map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    if let Some(path) = args.get("csv") {
        append_csv(path, &Report::csv_header(), &report.csv_row())?;
    }
    Ok(())
}

fn sweep(args: &Args) -> Result<(), String> {
    let mut known: Vec<&str> =
        RUN_OPTIONS.iter().copied().filter(|o| !matches!(*o, "json" | "csv" | "read-ratio")).collect();
    known.extend(["targets", "read-ratios", "out"]);
    args.check_known(&known)?;
    let cfg = load_config(args)?;
    let targets = match args.get("targets") {
        Some(spec) => parse_targets(spec)?,
        None => vec![Target { label: "target".into(), series: "target".into(), nodes: None, hosts: cfg.hosts.clone() }],
    };
    let ratios = parse_ratios(args.get("read-ratios").unwrap_or("0..100/10"))?;
    let out = PathBuf::from(args.get("out").unwrap_or("sweep-out"));
    let report = run_sweep(&cfg, &targets, &ratios, &out)?;
    print!("{}", report.markdown());
    eprintln!("sweep: wrote {}", out.display());
    Ok(())
}
