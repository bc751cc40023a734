//! Sweeps: the same workload over a grid of read ratios and a list of targets, written as a
//! table (markdown + CSV + JSON) and plots of throughput against read ratio (the ZooKeeper
//! paper's Figure 5) and against node count (its Table 1).

use crate::config::LoadConfig;
use crate::engine;
use crate::plot::{line_chart, Line, XAxis};
use crate::report::{csv_field, utc_now, HostInfo, Results, TargetInfo};
use crate::workload::ReadRatio;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One server or cluster under test.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Target {
    /// As written (`corezk@3`).
    pub label: String,
    /// The label without the node count (`corezk`): points of one series are joined in the
    /// throughput-vs-nodes plot.
    pub series: String,
    pub nodes: Option<u32>,
    pub hosts: Vec<String>,
}

/// Parses `label=host:port,host:port;label2=...`. A label `name@N` says the target has N nodes.
pub fn parse_targets(spec: &str) -> Result<Vec<Target>, String> {
    let mut out = Vec::new();
    for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (label, hosts) = part
            .split_once('=')
            .ok_or_else(|| format!("--targets: `{part}` should be label=host:port[,host:port...]"))?;
        let label = label.trim().to_string();
        let hosts: Vec<String> = hosts.split(',').map(|h| h.trim().to_string()).filter(|h| !h.is_empty()).collect();
        if label.is_empty() || hosts.is_empty() {
            return Err(format!("--targets: `{part}` needs a label and at least one host"));
        }
        let (series, nodes) = match label.rsplit_once('@') {
            Some((s, n)) => {
                let n: u32 =
                    n.parse().map_err(|_| format!("--targets: `{label}`: node count after @ must be a number"))?;
                (s.to_string(), Some(n))
            }
            None => (label.clone(), None),
        };
        if out.iter().any(|t: &Target| t.label == label) {
            return Err(format!("--targets: label `{label}` is used twice"));
        }
        out.push(Target { label, series, nodes, hosts });
    }
    if out.is_empty() {
        return Err("--targets: no target given".into());
    }
    Ok(out)
}

/// Parses read percentages: `0,10,50,90,100` or a range `0..100/10` (start..end/step, inclusive).
pub fn parse_ratios(spec: &str) -> Result<Vec<f64>, String> {
    let spec = spec.trim();
    let v: Vec<f64> = if let Some((range, step)) = spec.split_once('/') {
        let (a, b) = range.split_once("..").ok_or_else(|| format!("--read-ratios: bad range `{spec}`"))?;
        let num = |s: &str| s.trim().parse::<f64>().map_err(|_| format!("--read-ratios: bad number in `{spec}`"));
        let (a, b, step) = (num(a)?, num(b)?, num(step)?);
        if step <= 0.0 || b < a {
            return Err(format!("--read-ratios: `{spec}` needs start <= end and step > 0"));
        }
        let n = ((b - a) / step + 1e-9).floor() as usize;
        (0..=n).map(|i| a + step * i as f64).collect()
    } else {
        spec.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| ReadRatio::parse(s).map(|r| r.percent()))
            .collect::<Result<_, _>>()?
    };
    if v.is_empty() {
        return Err("--read-ratios: no ratio given".into());
    }
    if let Some(bad) = v.iter().find(|p| !(0.0..=100.0).contains(*p)) {
        return Err(format!("--read-ratios: {bad} is not within 0..100"));
    }
    Ok(v)
}

/// One cell of the grid.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub target: String,
    pub series: String,
    pub nodes: Option<u32>,
    pub read_pct: f64,
    pub ops_per_sec: f64,
    pub total_ops: u64,
    pub errors: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// Set when the cell could not run; the numbers are then 0.
    pub failure: Option<String>,
    pub results: Option<Results>,
}

/// Everything a sweep writes to sweep.json.
#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    pub tool: &'static str,
    pub tool_version: &'static str,
    pub label: String,
    pub date: String,
    pub settings: crate::config::SettingsRecord,
    pub read_pcts: Vec<f64>,
    pub targets: Vec<Target>,
    pub target_versions: Vec<TargetInfo>,
    pub host: HostInfo,
    pub cells: Vec<Cell>,
}

impl SweepReport {
    fn cell(&self, target: &str, pct: f64) -> Option<&Cell> {
        self.cells.iter().find(|c| c.target == target && c.read_pct == pct)
    }

    pub fn csv(&self) -> String {
        let mut o = String::from(
            "date,label,target,series,nodes,hosts,target_version,read_pct,sessions,inflight,value_size,keys,op_mix,\
             duration_s,ops_per_sec,total_ops,errors,p50_us,p99_us,p999_us,max_us,failure\n",
        );
        for c in &self.cells {
            let t = self.targets.iter().find(|t| t.label == c.target);
            let v = self.target_versions.iter().zip(&self.targets).find(|(_, t)| t.label == c.target);
            let fields = [
                self.date.clone(),
                self.label.clone(),
                c.target.clone(),
                c.series.clone(),
                c.nodes.map(|n| n.to_string()).unwrap_or_default(),
                t.map(|t| t.hosts.join(" ")).unwrap_or_default(),
                v.map(|(v, _)| v.version.clone()).unwrap_or_default(),
                format!("{}", c.read_pct),
                self.settings.sessions.to_string(),
                self.settings.inflight.to_string(),
                self.settings.value_size.to_string(),
                self.settings.keys.to_string(),
                self.settings.op_mix.clone(),
                format!("{}", self.settings.duration_s),
                format!("{:.1}", c.ops_per_sec),
                c.total_ops.to_string(),
                c.errors.to_string(),
                format!("{:.1}", c.p50_us),
                format!("{:.1}", c.p99_us),
                format!("{:.1}", c.p999_us),
                format!("{:.1}", c.max_us),
                c.failure.clone().unwrap_or_default(),
            ];
            let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            o.push_str(&row.join(","));
            o.push('\n');
        }
        o
    }

    pub fn markdown(&self) -> String {
        let s = &self.settings;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# corezk-loadgen sweep{}",
            if self.label.is_empty() { String::new() } else { format!(": {}", self.label) }
        );
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{} · {} sessions x {} in flight, {} B values, {} keys, mix `{}`, {} s per cell after {} s warm-up · \
             host {} CPUs, {}",
            self.date,
            s.sessions,
            s.inflight,
            s.value_size,
            s.keys,
            s.op_mix,
            s.duration_s,
            s.warmup_s,
            self.host.cpus,
            self.host.kernel
        );
        let _ = writeln!(o);
        for (t, v) in self.targets.iter().zip(&self.target_versions) {
            let _ = writeln!(o, "- `{}`: {} ({})", t.label, t.hosts.join(", "), v.version);
        }
        for (title, pick) in
            [("Throughput (ops/s) by percentage of reads", 0usize), ("p99 latency (µs) by percentage of reads", 1)]
        {
            let _ = writeln!(o);
            let _ = writeln!(o, "## {title}");
            let _ = writeln!(o);
            let mut head = String::from("| target | nodes |");
            let mut rule = String::from("|---|---:|");
            for p in &self.read_pcts {
                let _ = write!(head, " {}% |", trim_num(*p));
                rule.push_str("---:|");
            }
            let _ = writeln!(o, "{head}");
            let _ = writeln!(o, "{rule}");
            for t in &self.targets {
                let mut row = format!("| {} | {} |", t.label, t.nodes.map(|n| n.to_string()).unwrap_or("-".into()));
                for p in &self.read_pcts {
                    let v = match self.cell(&t.label, *p) {
                        Some(c) if c.failure.is_some() => "failed".to_string(),
                        Some(c) if pick == 0 => format!("{:.0}", c.ops_per_sec),
                        Some(c) => format!("{:.0}", c.p99_us),
                        None => String::new(),
                    };
                    let errs = match self.cell(&t.label, *p) {
                        Some(c) if c.errors > 0 && pick == 0 => format!(" ({} errors)", c.errors),
                        _ => String::new(),
                    };
                    let _ = write!(row, " {v}{errs} |");
                }
                let _ = writeln!(o, "{row}");
            }
        }
        o
    }

    /// Throughput against read percentage, one line per target.
    pub fn ratio_lines(&self) -> Vec<Line> {
        self.targets
            .iter()
            .map(|t| Line {
                name: t.label.clone(),
                points: self
                    .read_pcts
                    .iter()
                    .filter_map(|p| {
                        self.cell(&t.label, *p).filter(|c| c.failure.is_none()).map(|c| (*p, c.ops_per_sec))
                    })
                    .collect(),
            })
            .collect()
    }

    /// Throughput against node count: one line per series and read percentage (all percentages
    /// when there are at most 4, else the lowest, the one nearest 50%, the one nearest 10:1 and
    /// the highest).
    pub fn node_lines(&self) -> Vec<Line> {
        let mut pcts = self.read_pcts.clone();
        if pcts.len() > 4 {
            let nearest = |want: f64| {
                *pcts.iter().min_by(|a, b| (*a - want).abs().total_cmp(&(*b - want).abs())).expect("non-empty")
            };
            let mut pick = vec![pcts[0], nearest(50.0), nearest(100.0 * 10.0 / 11.0), pcts[pcts.len() - 1]];
            pick.dedup();
            pcts = pick;
        }
        let mut series: Vec<&str> = Vec::new();
        for t in &self.targets {
            if t.nodes.is_some() && !series.contains(&t.series.as_str()) {
                series.push(&t.series);
            }
        }
        let mut lines = Vec::new();
        for s in series {
            for p in &pcts {
                let mut points: Vec<(f64, f64)> = self
                    .targets
                    .iter()
                    .filter(|t| t.series == s)
                    .filter_map(|t| {
                        let c = self.cell(&t.label, *p)?;
                        if c.failure.is_some() {
                            return None;
                        }
                        Some((t.nodes? as f64, c.ops_per_sec))
                    })
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                if !points.is_empty() {
                    lines.push(Line { name: format!("{s} {}% reads", trim_num(*p)), points });
                }
            }
        }
        lines
    }

    /// Writes sweep.csv, sweep.md, sweep.json and the plots into `dir` (the node-count plot only
    /// when the targets carry at least two different node counts).
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut written = Vec::new();
        let mut put = |name: &str, text: String| -> Result<(), String> {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            written.push(p);
            Ok(())
        };
        put("sweep.csv", self.csv())?;
        put("sweep.md", self.markdown())?;
        put("sweep.json", serde_json::to_string_pretty(self).expect("serialises"))?;
        let p = dir.join("throughput-vs-read-ratio.svg");
        let title = if self.label.is_empty() { "Throughput vs read ratio".to_string() } else { self.label.clone() };
        line_chart(
            &p,
            &title,
            "reads (% of operations)",
            "operations per second",
            XAxis::Continuous,
            &self.ratio_lines(),
        )?;
        written.push(p);
        let mut counts: Vec<u32> = self.targets.iter().filter_map(|t| t.nodes).collect();
        counts.sort_unstable();
        counts.dedup();
        let nodes = self.node_lines();
        if counts.len() >= 2 && !nodes.is_empty() {
            let p = dir.join("throughput-vs-nodes.svg");
            let t = format!("{title}: throughput vs nodes");
            line_chart(&p, &t, "nodes", "operations per second", XAxis::Integer, &nodes)?;
            written.push(p);
        }
        Ok(written)
    }
}

fn trim_num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Runs every (read ratio, target) cell with `base`'s workload, alternating targets within
/// each ratio, and rewrites the outputs in `out_dir` after each cell (a partial sweep keeps
/// what it measured). A cell that fails is recorded and the sweep goes on.
pub fn run_sweep(
    base: &LoadConfig,
    targets: &[Target],
    read_pcts: &[f64],
    out_dir: &Path,
) -> Result<SweepReport, String> {
    let base = crate::resolve(&LoadConfig { hosts: targets[0].hosts.clone(), ..base.clone() })?;
    let host = HostInfo::collect();
    let versions: Vec<TargetInfo> = targets.iter().map(|t| TargetInfo::collect(&t.hosts)).collect();
    let mut report = SweepReport {
        tool: "corezk-loadgen",
        tool_version: env!("CARGO_PKG_VERSION"),
        label: base.label.clone(),
        date: utc_now(),
        settings: base.record(),
        read_pcts: read_pcts.to_vec(),
        targets: targets.to_vec(),
        target_versions: versions,
        host,
        cells: Vec::new(),
    };
    // Set every target up once; the cells reuse its keys.
    let mut cfgs = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let cfg = LoadConfig { hosts: t.hosts.clone(), run_id: format!("{}-t{i}", base.run_id), ..base.clone() };
        if !cfg.quiet {
            eprintln!("sweep: setting up {} ({})", t.label, t.hosts.join(","));
        }
        let prepared = engine::setup(&cfg).map_err(|e| format!("target {}: {e}", t.label));
        cfgs.push((cfg, prepared));
    }
    for &pct in read_pcts {
        for (t, (cfg, prepared)) in targets.iter().zip(&cfgs) {
            let mut cfg = cfg.clone();
            cfg.read_ratio = ReadRatio(pct / 100.0);
            cfg.read_ratio_spec = format!("{}%", trim_num(pct));
            if !cfg.quiet {
                eprintln!("sweep: {} at {}% reads", t.label, trim_num(pct));
            }
            let outcome = match prepared {
                Ok(p) => {
                    crate::workload::Mixer::new(cfg.read_ratio, &cfg.op_mix).and_then(|_| engine::run_load(&cfg, p))
                }
                Err(e) => Err(e.clone()),
            };
            let cell = match outcome {
                Ok(o) => {
                    let r = Results::from_outcome(&o);
                    if !cfg.quiet {
                        eprintln!(
                            "sweep: {} at {}% reads: {:.0} ops/s, p99 {:.0} us, {} errors",
                            t.label,
                            trim_num(pct),
                            r.ops_per_sec,
                            r.latency_us.p99,
                            r.errors
                        );
                    }
                    Cell {
                        target: t.label.clone(),
                        series: t.series.clone(),
                        nodes: t.nodes,
                        read_pct: pct,
                        ops_per_sec: r.ops_per_sec,
                        total_ops: r.total_ops,
                        errors: r.errors,
                        p50_us: r.latency_us.p50,
                        p99_us: r.latency_us.p99,
                        p999_us: r.latency_us.p999,
                        max_us: r.latency_us.max,
                        failure: None,
                        results: Some(r),
                    }
                }
                Err(e) => {
                    eprintln!("sweep: {} at {}% reads failed: {e}", t.label, trim_num(pct));
                    Cell {
                        target: t.label.clone(),
                        series: t.series.clone(),
                        nodes: t.nodes,
                        read_pct: pct,
                        ops_per_sec: 0.0,
                        total_ops: 0,
                        errors: 0,
                        p50_us: 0.0,
                        p99_us: 0.0,
                        p999_us: 0.0,
                        max_us: 0.0,
                        failure: Some(e),
                        results: None,
                    }
                }
            };
            report.cells.push(cell);
            report.write(out_dir)?;
        }
    }
    if !base.keep {
        for (t, (cfg, prepared)) in targets.iter().zip(&cfgs) {
            if let Ok(p) = prepared {
                if let Err(e) = engine::teardown(cfg, p) {
                    eprintln!("sweep: teardown on {} failed: {e}", t.label);
                }
            }
        }
    }
    report.write(out_dir)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_ratios_parse() {
        let t = parse_targets("corezk@1=127.0.0.1:2181; zk@3=h1:1,h2:2,h3:3;plain=x:1").unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].series, "corezk");
        assert_eq!(t[0].nodes, Some(1));
        assert_eq!(t[1].hosts, vec!["h1:1", "h2:2", "h3:3"]);
        assert_eq!(t[2].nodes, None);
        assert!(parse_targets("nohosts").is_err());
        assert!(parse_targets("a=x:1;a=y:2").is_err());
        assert!(parse_targets("a@x=h:1").is_err());
        assert_eq!(parse_ratios("0..100/10").unwrap(), (0..=10).map(|i| i as f64 * 10.0).collect::<Vec<_>>());
        assert_eq!(parse_ratios("0,50%,10:1").unwrap()[2], 100.0 * 10.0 / 11.0);
        assert!(parse_ratios("0..100/0").is_err());
        assert!(parse_ratios("120").is_err());
    }

    fn fake_report() -> SweepReport {
        let targets = parse_targets("corezk@1=a:1;corezk@3=b:1,c:1,d:1;zk@1=e:1").unwrap();
        let pcts = vec![0.0, 50.0, 100.0];
        let mut cells = Vec::new();
        for t in &targets {
            for &p in &pcts {
                cells.push(Cell {
                    target: t.label.clone(),
                    series: t.series.clone(),
                    nodes: t.nodes,
                    read_pct: p,
                    ops_per_sec: 1000.0 + p * 10.0 * t.nodes.unwrap_or(1) as f64,
                    total_ops: 10,
                    errors: 0,
                    p50_us: 100.0,
                    p99_us: 900.0,
                    p999_us: 1000.0,
                    max_us: 2000.0,
                    failure: if t.series == "zk" && p == 50.0 { Some("boom".into()) } else { None },
                    results: None,
                });
            }
        }
        let cfg = LoadConfig::default();
        SweepReport {
            tool: "corezk-loadgen",
            tool_version: "0",
            label: "test".into(),
            date: "2026-01-01T00:00:00Z".into(),
            settings: cfg.record(),
            read_pcts: pcts,
            target_versions: targets
                .iter()
                .map(|t| TargetInfo { hosts: t.hosts.clone(), version: "v".into(), srvr: Default::default() })
                .collect(),
            targets,
            host: HostInfo { cpus: 2, affinity_cpus: vec![0, 1], kernel: "k".into(), hostname: "h".into() },
            cells,
        }
    }

    #[test]
    fn tables_and_plots() {
        let r = fake_report();
        let md = r.markdown();
        assert!(md.contains("| corezk@3 | 3 | 1000 | 2500 | 4000 |"), "{md}");
        assert!(md.contains("failed"));
        let csv = r.csv();
        assert_eq!(csv.lines().count(), 1 + 9);
        assert!(csv.lines().nth(1).unwrap().contains(",corezk@1,corezk,1,"));
        let lines = r.ratio_lines();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2].points.len(), 2, "the failed cell is left out");
        let nodes = r.node_lines();
        // corezk: 3 ratios; zk: 2 ratios (one failed).
        assert_eq!(nodes.len(), 5);
        assert_eq!(nodes[2].points, vec![(1.0, 2000.0), (3.0, 4000.0)]);
        let dir = std::env::temp_dir().join(format!("loadgen-sweep-{}", std::process::id()));
        let written = r.write(&dir).unwrap();
        assert_eq!(written.len(), 5);
        for p in &written {
            assert!(std::fs::metadata(p).unwrap().len() > 0);
        }
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("sweep.json")).unwrap()).unwrap();
        assert_eq!(v["cells"].as_array().unwrap().len(), 9);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
