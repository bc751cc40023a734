//! The deterministic simulator's runs (see tests/sim): many seeds of 3-node, 5-node and
//! observer ensembles under faults, and proof that it catches a broken commit rule.
//!
//! `SIM_SEEDS=N` sets the seed count, `SIM_SEED_BASE=B` the first seed, `SIM_SEED=S` replays
//! one seed (its schedule is printed when it fails; `SIM_LOG_TAIL=N` prints the last N events).

mod sim;

use sim::{seeds, Options, Sim};

fn run_all(what: &str, opts: Options, default_seeds: u64) {
    let seeds = seeds(default_seeds);
    let t0 = std::time::Instant::now();
    let mut totals = sim::Stats::default();
    for &seed in &seeds {
        let mut s = Sim::new(seed, opts.clone());
        if let Err(e) = s.run() {
            let keep = std::env::var("SIM_LOG_TAIL").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
            let tail: Vec<&String> = s.log.iter().rev().take(keep).collect();
            let tail: Vec<String> = tail.into_iter().rev().cloned().collect();
            panic!(
                "{what}: seed {seed} failed: {e}\nreplay: SIM_SEED={seed} cargo test --release --test simulator {what}\n\
                 stats: {:?}\nlast events:\n{}",
                s.stats,
                tail.join("\n")
            );
        }
        totals.acked += s.stats.acked;
        totals.crashes += s.stats.crashes;
        totals.partitions += s.stats.partitions;
        totals.elections += s.stats.elections;
        totals.snapshots_sent += s.stats.snapshots_sent;
        totals.max_epoch = totals.max_epoch.max(s.stats.max_epoch);
        totals.exhausted += s.stats.exhausted;
    }
    eprintln!("{what}: {} seeds in {:.1} s: {totals:?}", seeds.len(), t0.elapsed().as_secs_f64());
    assert!(totals.acked > 0 && totals.elections > seeds.len() as u64, "the runs did work: {totals:?}");
    if seeds.len() >= 100 && opts.voters > 1 {
        assert!(
            totals.snapshots_sent > 0 && totals.exhausted > 0 && totals.crashes > 0,
            "faults were exercised: {totals:?}"
        );
    }
}

#[test]
fn three_voters() {
    run_all("three_voters", Options::default(), 1500);
}

#[test]
fn five_voters_two_observers() {
    run_all("five_voters_two_observers", Options { voters: 5, observers: 2, ..Options::default() }, 400);
}

#[test]
fn one_voter() {
    run_all("one_voter", Options { voters: 1, ..Options::default() }, 100);
}

#[test]
fn a_broken_commit_rule_is_caught() {
    // Committing what the leader alone holds loses acknowledged writes when it crashes: the
    // checks must find that within a few seeds.
    let opts = Options { fault: Some(corezk::zab::Fault::CommitOnMinority), ..Options::default() };
    let caught = (1..=200u64).find_map(|seed| Sim::new(seed, opts.clone()).run().err().map(|e| (seed, e)));
    let (seed, e) = caught.expect("200 seeds with a broken commit rule and no violation found");
    eprintln!("broken commit rule caught at seed {seed}: {e}");
}
