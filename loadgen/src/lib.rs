//! corezk-loadgen: a thread-per-core load generator for ZooKeeper-compatible servers.
//!
//! `run` does one complete run (setup, load, teardown) and returns a `Report` (summary, JSON,
//! CSV); `sweep::run_sweep` runs a grid of read ratios over several targets and writes tables and
//! plots. Works against corezk and Apache ZooKeeper alike: it only speaks the client protocol.

pub mod config;
pub mod engine;
pub mod plot;
pub mod report;
pub mod stats;
pub mod sweep;
pub mod workload;
pub mod zk;

pub use config::LoadConfig;
pub use report::Report;

/// Fills in machine-dependent defaults and checks the settings.
pub fn resolve(cfg: &LoadConfig) -> Result<LoadConfig, String> {
    let mut cfg = cfg.clone();
    cfg.resolve(engine::allowed_cpus().len());
    cfg.validate()?;
    Ok(cfg)
}

/// One complete run: ask the target its version, create the key nodes, run the load, remove
/// the nodes again (unless `keep`), and report.
pub fn run(cfg: &LoadConfig) -> Result<Report, String> {
    let cfg = resolve(cfg)?;
    let target = report::TargetInfo::collect(&cfg.hosts);
    let host = report::HostInfo::collect();
    if !cfg.quiet {
        eprintln!(
            "corezk-loadgen: target {} ({}); setting up {} keys of {} B under {}",
            cfg.hosts.join(","),
            target.version,
            cfg.keys,
            cfg.value_size,
            cfg.base_path()
        );
    }
    let prepared = engine::setup(&cfg)?;
    let outcome = engine::run_load(&cfg, &prepared);
    if !cfg.keep {
        if let Err(e) = engine::teardown(&cfg, &prepared) {
            eprintln!("corezk-loadgen: teardown of {} failed: {e}", prepared.base);
        }
    }
    let outcome = outcome?;
    Ok(Report::new(&cfg, target, host, report::Results::from_outcome(&outcome)))
}
