#!/usr/bin/env python3
"""Tables, plots and README for bench/compare.sh (corezk vs Apache ZooKeeper 3.8).

Usage: python3 bench/compare_report.py RESULTS_DIR

Reads what compare.sh left in RESULTS_DIR/raw (runs.tsv, servers.tsv, memory.tsv,
timings.tsv, settings.env and the loadgen JSON files) and RESULTS_DIR/sweep, and writes
summary.{md,csv}, tables/*.{md,csv}, plots/*.svg and README.md. Standard library only.
"""
import csv
import html
import json
import math
import os
import platform
import statistics
import subprocess
import sys

TARGETS = ("zookeeper", "corezk")
WORKLOADS = {
    "mixed-10to1": "10:1 reads:writes (getData:setData), closed loop",
    "reads-100": "100% reads (getData), closed loop",
    "writes-100": "100% writes (setData), closed loop",
    "latency-fixed-rate": "10:1 at a fixed rate (open loop), latency",
}
PHASES = {
    "pinned": "server on one CPU, loadgen on the other, corezk --cores 1",
    "unpinned": "servers and loadgen unpinned on all CPUs, corezk --cores = all CPUs",
}
# The targets of issue 4, as (metric, comparison, bound).
ISSUE_TARGETS = {
    ("pinned", "mixed-10to1"): ("throughput", ">=", 10.0),
    ("pinned", "writes-100"): ("throughput", ">=", 3.0),
    ("pinned", "latency-fixed-rate"): ("p99", "<=", 0.1),
}
MEM_TARGET = 0.25
SERVER_CPU, LOADGEN_CPU = 0, 1  # set from settings.env in main()


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def read_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                env[k] = v
    return env


def fnum(x, digits=0):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fratio(r):
    return "-" if r is None else f"{r:.2f}x"


def median(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


class Run:
    def __init__(self, row, out):
        self.row = row
        self.phase = row["phase"]
        self.workload = row["workload"]
        self.target = row["target"]
        self.rep = int(row["rep"])
        self.file = row["file"]
        self.rc = int(row["rc"])
        self.wall = float(row["wall_s"] or 0)
        self.cpu = float(row["server_cpu_s"] or 0)
        self.other_cpu = float(row["other_server_cpu_s"] or 0)
        self.cpu_busy = row.get("cpu_busy_pct", "").split()
        self.command = row["command"].strip()
        self.data = None
        p = os.path.join(out, self.file)
        if os.path.exists(p):
            try:
                with open(p) as f:
                    self.data = json.load(f)
            except ValueError:
                self.data = None

    @property
    def ok(self):
        return self.data is not None

    def res(self, *path):
        d = self.data["results"] if self.data else None
        for k in path:
            if d is None:
                return None
            d = d.get(k)
        return d

    @property
    def ops(self):
        return self.res("ops_per_sec")

    def lat(self, q):
        return self.res("latency_us", q)

    @property
    def cpu_us_per_op(self):
        n = (self.res("total_ops") or 0) + (self.res("warmup_ops") or 0)
        return self.cpu / n * 1e6 if n else None

    @property
    def cpu_pct(self):
        return self.cpu / self.wall * 100 if self.wall else None

    def busy(self, i):
        return int(self.cpu_busy[i]) if i < len(self.cpu_busy) else None


# ---------------------------------------------------------------- SVG
def svg_doc(w, h, body, title):
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'font-family="sans-serif" font-size="12">\n<title>{html.escape(title)}</title>\n'
        f'<rect width="{w}" height="{h}" fill="white"/>\n{body}</svg>\n'
    )


COLORS = {"zookeeper": "#6b7b8c", "corezk": "#e07b24"}


def log_ticks(lo, hi):
    ticks = []
    e = math.floor(math.log10(lo))
    while 10**e <= hi * 1.0001:
        for m in (1, 2, 5):
            t = m * 10**e
            if lo <= t <= hi:
                ticks.append(t)
        e += 1
    return ticks


def short(v):
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def bar_chart(groups, title, ylabel, logy=True):
    """groups: list of (label, {target: value}, note)."""
    W, H = 130 * max(len(groups), 3) + 120, 440
    L, R, T, B = 80, 20, 50, 95
    pw, ph = W - L - R, H - T - B
    vals = [v for _, d, _ in groups for v in d.values() if v]
    if not vals:
        return svg_doc(W, H, "", title)
    if logy:
        lo = 10 ** math.floor(math.log10(min(vals)))
        hi = 10 ** math.ceil(math.log10(max(vals) * 1.05))

        def y(v):
            return T + ph - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * ph

        ticks = log_ticks(lo, hi)
    else:
        lo, hi = 0, max(vals) * 1.15

        def y(v):
            return T + ph - (v - lo) / (hi - lo) * ph

        step = 10 ** math.floor(math.log10(hi / 2))
        ticks = [i * step for i in range(int(hi / step) + 1)]
    b = [f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{html.escape(title)}</text>']
    for t in ticks:
        yy = y(t)
        b.append(f'<line x1="{L}" x2="{W - R}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>')
        b.append(f'<text x="{L - 6}" y="{yy + 4:.1f}" text-anchor="end">{short(t)}</text>')
    b.append(
        f'<text x="18" y="{T + ph / 2}" text-anchor="middle" transform="rotate(-90 18 {T + ph / 2})">'
        f"{html.escape(ylabel)}</text>"
    )
    gw = pw / len(groups)
    bw = min(40, gw / 3)
    for i, (label, d, note) in enumerate(groups):
        cx = L + gw * (i + 0.5)
        for j, t in enumerate(TARGETS):
            v = d.get(t)
            if not v:
                continue
            x = cx + (j - 1) * bw - 2 + j * 4
            yy = y(v)
            b.append(
                f'<rect x="{x:.1f}" y="{yy:.1f}" width="{bw:.1f}" height="{T + ph - yy:.1f}" fill="{COLORS[t]}"/>'
            )
            b.append(f'<text x="{x + bw / 2:.1f}" y="{yy - 4:.1f}" text-anchor="middle" font-size="10">{short(round(v, -2) if v >= 1000 else round(v, 1))}</text>')
        for k, line in enumerate(label.split("\n")):
            b.append(f'<text x="{cx:.1f}" y="{T + ph + 16 + 14 * k}" text-anchor="middle">{html.escape(line)}</text>')
        if note:
            b.append(
                f'<text x="{cx:.1f}" y="{T + ph + 48}" text-anchor="middle" font-weight="bold">{html.escape(note)}</text>'
            )
    b.append(f'<line x1="{L}" x2="{W - R}" y1="{T + ph}" y2="{T + ph}" stroke="black"/>')
    for j, t in enumerate(TARGETS):
        x = L + 10 + j * 120
        b.append(f'<rect x="{x}" y="{H - 22}" width="12" height="12" fill="{COLORS[t]}"/>')
        b.append(f'<text x="{x + 16}" y="{H - 12}">{t}</text>')
    return svg_doc(W, H, "\n".join(b) + "\n", title)


def ladder_chart(series, title):
    """series: {target: [(label, value_us), ...]}, log y."""
    W, H = 640, 400
    L, R, T, B = 80, 20, 50, 70
    pw, ph = W - L - R, H - T - B
    vals = [v for s in series.values() for _, v in s if v]
    if not vals:
        return svg_doc(W, H, "", title)
    lo = 10 ** math.floor(math.log10(min(vals)))
    hi = 10 ** math.ceil(math.log10(max(vals)))

    def y(v):
        return T + ph - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * ph

    labels = next(iter(series.values()))
    n = len(labels)

    def x(i):
        return L + pw * (i + 0.5) / n

    b = [f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{html.escape(title)}</text>']
    for t in log_ticks(lo, hi):
        yy = y(t)
        b.append(f'<line x1="{L}" x2="{W - R}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>')
        b.append(f'<text x="{L - 6}" y="{yy + 4:.1f}" text-anchor="end">{short(t)}</text>')
    b.append(
        f'<text x="18" y="{T + ph / 2}" text-anchor="middle" transform="rotate(-90 18 {T + ph / 2})">latency (µs)</text>'
    )
    for i, (lab, _) in enumerate(labels):
        b.append(f'<text x="{x(i):.1f}" y="{T + ph + 18}" text-anchor="middle">{lab}</text>')
    for t, s in series.items():
        pts = [(x(i), y(v)) for i, (_, v) in enumerate(s) if v]
        b.append(
            f'<polyline fill="none" stroke="{COLORS[t]}" stroke-width="2.5" points="'
            + " ".join(f"{a:.1f},{c:.1f}" for a, c in pts)
            + '"/>'
        )
        for (a, c), (_, v) in zip(pts, [p for p in s if p[1]]):
            b.append(f'<circle cx="{a:.1f}" cy="{c:.1f}" r="3.5" fill="{COLORS[t]}"/>')
            b.append(f'<text x="{a + 6:.1f}" y="{c - 6:.1f}" font-size="10">{short(round(v))}</text>')
    b.append(f'<line x1="{L}" x2="{W - R}" y1="{T + ph}" y2="{T + ph}" stroke="black"/>')
    for j, t in enumerate(TARGETS):
        xx = L + 10 + j * 120
        b.append(f'<rect x="{xx}" y="{H - 22}" width="12" height="12" fill="{COLORS[t]}"/>')
        b.append(f'<text x="{xx + 16}" y="{H - 12}">{t}</text>')
    return svg_doc(W, H, "\n".join(b) + "\n", title)


# ---------------------------------------------------------------- tables
def md_table(header, rows, align=None):
    align = align or ["---"] + ["---:"] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def judge(r, cmp, bound):
    if r is None:
        return "not measured"
    ok = r >= bound if cmp == ">=" else r <= bound
    if ok:
        return "met"
    # how far off: factor between the bound and the measurement
    miss = bound / r if cmp == ">=" else r / bound
    return f"missed ({miss:.1f}x short)"


def main():
    out = os.path.abspath(sys.argv[1])
    raw = os.path.join(out, "raw")
    env = read_env(os.path.join(raw, "settings.env"))
    global SERVER_CPU, LOADGEN_CPU
    SERVER_CPU, LOADGEN_CPU = int(env.get("SERVER_CPU", 0)), int(env.get("LOADGEN_CPU", 1))
    runs = [Run(r, out) for r in read_tsv(os.path.join(raw, "runs.tsv"))]
    servers = read_tsv(os.path.join(raw, "servers.tsv"))
    mem = read_tsv(os.path.join(raw, "memory.tsv"))
    timings = read_tsv(os.path.join(raw, "timings.tsv"))
    os.makedirs(os.path.join(out, "tables"), exist_ok=True)
    os.makedirs(os.path.join(out, "plots"), exist_ok=True)
    rel_out = os.path.relpath(out, os.getcwd()) if out.startswith(os.getcwd()) else out

    summary = []  # dicts
    per_file_cmd = []  # (file, how)

    # ---- per workload tables
    for phase in PHASES:
        for wl, title in WORKLOADS.items():
            rs = [r for r in runs if r.phase == phase and r.workload == wl]
            if not rs:
                continue
            latency = wl == "latency-fixed-rate"
            header = ["target", "run", "ops/s", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "errors",
                      "reconnects", "server CPU s", "server CPU %", "server CPU µs/op", "other server CPU s",
                      f"CPU{SERVER_CPU} busy %", f"CPU{LOADGEN_CPU} busy %"]
            if latency:
                header += ["send lag p99 µs", "in-flight cap waits"]
            header += ["file"]
            rows = []
            for r in sorted(rs, key=lambda r: (r.rep, TARGETS.index(r.target))):
                if not r.ok:
                    rows.append([r.target, r.rep, f"failed (exit {r.rc})"] + ["-"] * (len(header) - 4) + [r.file])
                    continue
                row = [r.target, r.rep, fnum(r.ops), fnum(r.lat("p50"), 1), fnum(r.lat("p90"), 1),
                       fnum(r.lat("p99"), 1), fnum(r.lat("p999"), 1), fnum(r.lat("max"), 1), r.res("errors"),
                       r.res("reconnects"), fnum(r.cpu, 2), fnum(r.cpu_pct, 0), fnum(r.cpu_us_per_op, 1),
                       fnum(r.other_cpu, 2), fnum(r.busy(SERVER_CPU), 0), fnum(r.busy(LOADGEN_CPU), 0)]
                if latency:
                    row += [fnum(r.res("send_lag_us", "p99"), 1), r.res("inflight_cap_waits")]
                row += [r.file]
                rows.append(row)
            med = {}
            for t in TARGETS:
                ok = [r for r in rs if r.target == t and r.ok]
                med[t] = {
                    "ops": median([r.ops for r in ok]),
                    "p50": median([r.lat("p50") for r in ok]),
                    "p99": median([r.lat("p99") for r in ok]),
                    "p999": median([r.lat("p999") for r in ok]),
                    "cpu_us_per_op": median([r.cpu_us_per_op for r in ok]),
                    "n": len(ok),
                    "errors": sum(r.res("errors") or 0 for r in ok),
                }
            tr = ratio(med["corezk"]["ops"], med["zookeeper"]["ops"])
            pr = ratio(med["corezk"]["p99"], med["zookeeper"]["p99"])
            entry = {"phase": phase, "workload": wl, "title": title, "med": med, "tput_ratio": tr, "p99_ratio": pr}
            tgt = ISSUE_TARGETS.get((phase, wl))
            if tgt:
                metric, cmp, bound = tgt
                r_ = tr if metric == "throughput" else pr
                entry["target"] = f"corezk/ZK {metric} {cmp} {bound:g}"
                entry["verdict"] = judge(r_, cmp, bound)
            summary.append(entry)

            name = f"{phase}-{wl}"
            s = read_env_settings(rs)
            md = [f"# {title} — {phase} ({PHASES[phase]})\n\n"]
            md.append(f"Generated by bench/compare_report.py from the runs below; settings: {s}. ")
            md.append(f"Runs alternate ZooKeeper, corezk per repeat; medians over {med['corezk']['n']} run(s) each.\n\n")
            md.append(md_table(header, rows, ["---"] * 2 + ["---:"] * (len(header) - 3) + ["---"]))
            md.append("\n**Medians and ratio (corezk / ZooKeeper)**\n\n")
            md.append(md_table(
                ["", "ops/s", "p50 µs", "p99 µs", "p99.9 µs", "server CPU µs/op"],
                [[t, fnum(med[t]["ops"]), fnum(med[t]["p50"], 1), fnum(med[t]["p99"], 1), fnum(med[t]["p999"], 1),
                  fnum(med[t]["cpu_us_per_op"], 1)] for t in TARGETS]
                + [["corezk / ZooKeeper", fratio(tr), fratio(ratio(med["corezk"]["p50"], med["zookeeper"]["p50"])),
                    fratio(pr), fratio(ratio(med["corezk"]["p999"], med["zookeeper"]["p999"])),
                    fratio(ratio(med["corezk"]["cpu_us_per_op"], med["zookeeper"]["cpu_us_per_op"]))]]))
            if tgt:
                md.append(f"\nIssue 4 target: {entry['target']}: **{entry['verdict']}**.\n")
            md.append("\nServer CPU is the server process's user+system time over the whole loadgen run "
                      "(setup, warm-up, measurement, teardown), from /proc/PID/stat; µs/op divides it by the "
                      "operations of warm-up and measurement. \"other server\" is the idle server's CPU meanwhile. "
                      "Server CPU % is over the run's wall time (setup and teardown included), 100% = one CPU. "
                      "CPU busy % is the share of that CPU not idle during the run (from /proc/stat: the process "
                      "pinned there, its kernel and softirq work, and anything else the machine ran there); in the "
                      f"pinned phase the server runs on CPU{SERVER_CPU} and the loadgen on CPU{LOADGEN_CPU}, so a "
                      "loadgen CPU near 100% means the loadgen, not the server, set the pace.\n")
            with open(os.path.join(out, "tables", name + ".md"), "w") as f:
                f.write("".join(md))
            write_csv(os.path.join(out, "tables", name + ".csv"),
                      ["phase", "workload", "target", "run", "ops_per_sec", "p50_us", "p90_us", "p99_us", "p999_us",
                       "max_us", "errors", "reconnects", "server_cpu_s", "server_cpu_us_per_op", "cpu_busy_pct", "send_lag_p99_us",
                       "inflight_cap_waits", "file"],
                      [[phase, wl, r.target, r.rep, r.ops, r.lat("p50"), r.lat("p90"), r.lat("p99"), r.lat("p999"),
                        r.lat("max"), r.res("errors"), r.res("reconnects"), r.cpu, r.cpu_us_per_op, " ".join(r.cpu_busy),
                        r.res("send_lag_us", "p99"), r.res("inflight_cap_waits"), r.file] for r in rs]
                      + [[phase, wl, f"median-{t}", "", med[t]["ops"], med[t]["p50"], "", med[t]["p99"], med[t]["p999"],
                          "", med[t]["errors"], "", "", med[t]["cpu_us_per_op"], "", "", "", ""] for t in TARGETS]
                      + [[phase, wl, "ratio-corezk/zookeeper", "", tr, "", "", pr] + [""] * 10])

    # ---- memory
    memrows = {(m["target"], m["stage"]): m for m in mem}
    mem_entry = None
    if mem:
        def mb(m):
            return int(m["rss_kb"]) / 1024 if m and m.get("rss_kb") else None

        zk_l, cz_l = memrows.get(("zookeeper", "loaded")), memrows.get(("corezk", "loaded"))
        mr = ratio(mb(cz_l), mb(zk_l))
        mem_entry = {"zk": mb(zk_l), "cz": mb(cz_l), "ratio": mr, "verdict": judge(mr, "<=", MEM_TARGET),
                     "zk_n": zk_l and zk_l["znodes"], "cz_n": cz_l and cz_l["znodes"]}
        header = ["target", "stage", "RSS MiB", "peak RSS (VmHWM) MiB", "znodes", "seconds", "note"]
        rows = [[m["target"], m["stage"], fnum(mb(m), 1), fnum(int(m["hwm_kb"] or 0) / 1024, 1), m["znodes"],
                 m["seconds"] or "-", m["note"]] for m in mem]
        md = [f"# Resident memory with {int(env.get('MEM_KEYS', 0)):,} znodes of {env.get('MEM_VALUE')} bytes\n\n",
              "Fresh servers (pinned as in the throughput runs, ZooKeeper with "
              f"-Xmx{env.get('ZK_HEAP')}), loaded by `corezk-loadgen --keys {env.get('MEM_KEYS')} "
              f"--value-size {env.get('MEM_VALUE')} --keep` (four pipelined setup sessions), RSS from "
              "/proc/PID/status VmRSS after a settle time. The headline ratio uses the `loaded` rows; "
              "the `after-full-gc` and `after-restart` rows are context.\n\n",
              md_table(header, rows, ["---", "---"] + ["---:"] * 4 + ["---"]),
              f"\ncorezk / ZooKeeper RSS after loading: **{fratio(mr)}** "
              f"(issue 4 target <= {MEM_TARGET}: **{mem_entry['verdict']}**).\n"]
        if env.get("ZK_DATA_DU_KB"):
            md.append(f"\nOn disk afterwards: ZooKeeper data dir {int(env['ZK_DATA_DU_KB']) / 1024:,.0f} MiB, "
                      f"corezk data dir {int(env.get('CZ_DATA_DU_KB') or 0) / 1024:,.0f} MiB.\n")
        with open(os.path.join(out, "tables", "memory.md"), "w") as f:
            f.write("".join(md))
        write_csv(os.path.join(out, "tables", "memory.csv"),
                  ["target", "stage", "rss_kb", "hwm_kb", "znodes", "seconds", "note"],
                  [[m["target"], m["stage"], m["rss_kb"], m["hwm_kb"], m["znodes"], m["seconds"], m["note"]]
                   for m in mem] + [["ratio-corezk/zookeeper", "loaded", mr, "", "", "", ""]])

    # ---- summary
    sum_header = ["phase", "workload", "ZooKeeper ops/s", "corezk ops/s", "throughput ratio", "ZooKeeper p99 µs",
                  "corezk p99 µs", "p99 ratio", "issue 4 target", "verdict"]
    sum_rows, sum_csv = [], []
    for e in summary:
        z, c = e["med"]["zookeeper"], e["med"]["corezk"]
        sum_rows.append([e["phase"], e["workload"], fnum(z["ops"]), fnum(c["ops"]), fratio(e["tput_ratio"]),
                         fnum(z["p99"], 1), fnum(c["p99"], 1), fratio(e["p99_ratio"]), e.get("target", "-"),
                         e.get("verdict", "-")])
        sum_csv.append([e["phase"], e["workload"], z["ops"], c["ops"], e["tput_ratio"], z["p99"], c["p99"],
                        e["p99_ratio"], e.get("target", ""), e.get("verdict", "")])
    mem_md = ""
    if mem_entry:
        mem_md = md_table(
            ["", "ZooKeeper RSS MiB", "corezk RSS MiB", "RSS ratio", "issue 4 target", "verdict"],
            [[f"{int(env.get('MEM_KEYS', 0)):,} znodes x {env.get('MEM_VALUE')} B (ZK {mem_entry['zk_n']}, corezk "
              f"{mem_entry['cz_n']} znodes)", fnum(mem_entry["zk"], 1), fnum(mem_entry["cz"], 1),
              fratio(mem_entry["ratio"]), f"corezk/ZK RSS <= {MEM_TARGET}", mem_entry["verdict"]]])
        sum_csv.append(["memory", "rss-loaded", mem_entry["zk"], mem_entry["cz"], mem_entry["ratio"], "", "", "",
                        f"corezk/ZK RSS <= {MEM_TARGET}", mem_entry["verdict"]])
    summary_md = (md_table(sum_header, sum_rows, ["---", "---"] + ["---:"] * 6 + ["---", "---"]) + "\n" + mem_md)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("# corezk vs Apache ZooKeeper 3.8 — summary\n\n")
        f.write("Medians over the repeats; ratios are corezk / ZooKeeper within this one run. "
                "See README.md for how it was made.\n\n")
        f.write(summary_md)
    write_csv(os.path.join(out, "summary.csv"),
              ["phase", "workload", "zookeeper_ops_per_sec", "corezk_ops_per_sec", "throughput_ratio",
               "zookeeper_p99_us", "corezk_p99_us", "p99_ratio", "issue_target", "verdict"], sum_csv)

    # ---- plots
    short_wl = {"mixed-10to1": "10:1", "reads-100": "100% reads", "writes-100": "100% writes"}
    groups = [(f"{short_wl[e['workload']]}\n{e['phase']}", {t: e["med"][t]["ops"] for t in TARGETS},
               fratio(e["tput_ratio"])) for e in summary if e["workload"] in short_wl]
    if groups:
        with open(os.path.join(out, "plots", "throughput.svg"), "w") as f:
            f.write(bar_chart(groups, "Saturated throughput, corezk vs ZooKeeper 3.8 (median; label = ratio)",
                              "ops/s (log scale)"))
    lat = [r for r in runs if r.workload == "latency-fixed-rate" and r.ok]
    if lat:
        series = {}
        for t in TARGETS:
            rs = sorted([r for r in lat if r.target == t], key=lambda r: r.lat("p99"))
            if rs:
                r = rs[len(rs) // 2] if len(rs) % 2 else rs[len(rs) // 2 - 1]
                series[t] = [(q, r.lat(k)) for q, k in
                             (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p999"), ("max", "max"))]
        with open(os.path.join(out, "plots", "latency.svg"), "w") as f:
            f.write(ladder_chart(series, f"Latency at {env.get('LAT_RATE')} ops/s fixed rate, 10:1 "
                                         "(run with the median p99)"))
    if mem_entry:
        with open(os.path.join(out, "plots", "memory.svg"), "w") as f:
            f.write(bar_chart([(f"{int(env.get('MEM_KEYS', 0)):,} znodes\nx {env.get('MEM_VALUE')} B",
                                {"zookeeper": mem_entry["zk"], "corezk": mem_entry["cz"]}, fratio(mem_entry["ratio"]))],
                              "Resident memory after loading", "RSS (MiB)", logy=False))

    # ---- README
    write_readme(out, rel_out, env, runs, servers, mem, timings, summary_md)
    print_summary(summary, mem_entry, env, timings)


def read_env_settings(rs):
    r = next((r for r in rs if r.ok), None)
    if not r:
        return "-"
    s = r.data["settings"]
    parts = [f"{s['sessions']} sessions x {s['inflight']} in flight", f"{s['threads']} loadgen thread(s)",
             f"read ratio {s['read_ratio']}", f"{s['value_size']} B values", f"{s['keys']} keys",
             f"{s['duration_s']:g} s measured after {s['warmup_s']:g} s warm-up"]
    if s.get("rate"):
        parts.append(f"open loop at {s['rate']} ops/s")
    return ", ".join(parts)


def machine():
    info = {}
    info["nproc"] = os.cpu_count()
    try:
        with open("/proc/cpuinfo") as f:
            models = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
        info["cpu"] = f"{len(models)} x {models[0]}" if models else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    info["kernel"] = " ".join(platform.uname())
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(l for l in f if l.startswith("MemTotal")).split()[1])
        info["memory"] = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        info["memory"] = "?"
    try:
        info["os"] = subprocess.run(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"], capture_output=True,
                                    text=True).stdout.strip()
    except OSError:
        info["os"] = "?"
    return info


def write_readme(out, rel_out, env, runs, servers, mem, timings, summary_md):
    m = machine()
    total = sum(float(t["seconds"]) for t in timings)
    L = []
    L.append("# results/\n\n")
    L.append("Benchmark results of corezk side by side with Apache ZooKeeper 3.8, made by `bench/compare.sh` "
             "(which runs `bench/compare_report.py` for the tables, plots and this README). Nothing here is "
             "written or edited by hand: to change a number, change the script or the code and run it again. "
             "Any performance figure quoted elsewhere must come from a file here.\n\n")
    L.append("**Read the numbers as ratios within one run.** This machine has "
             f"{m['nproc']} CPUs shared with other work (load average {env.get('LOAD_START')} at the start, "
             f"{env.get('LOAD_END')} at the end); absolute figures move a lot from run to run, the ratios "
             "between the two servers measured alternately in the same run much less. Where other processes "
             "compete for the server's CPU, the kernel shares it per thread, so multi-threaded ZooKeeper keeps a "
             "larger share of it than corezk's single executor thread; the `CPU busy %` and `server CPU %` "
             "columns in `tables/` show how much of its CPU each server actually got. `raw/host-load-*.txt` "
             "show what else was running.\n\n")
    L.append("## How this was made\n\n")
    L.append(f"- Command (from the repository root): `{env.get('INVOCATION', '').strip()}`\n")
    L.append(f"- Date (UTC): {env.get('START_DATE')} to {env.get('END_DATE')}; build: {env.get('BUILD_S')} s; "
             f"measuring phases: {total:.0f} s (" + ", ".join(f"{t['phase']} {float(t['seconds']):.0f} s"
                                                            for t in timings) + ")\n")
    dirty = env.get("GIT_DIRTY", "0")
    L.append(f"- Commit: {env.get('GIT_COMMIT')}" + (f" with {dirty} uncommitted change(s) in src/, loadgen/ or "
                                                    "Cargo files at build time" if dirty not in ("", "0") else "")
             + f"; {env.get('COREZK_VERSION')}\n")
    L.append(f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, {m['os']}, kernel `{m['kernel']}`\n")
    L.append(f"- Apache ZooKeeper: Debian package {env.get('ZK_PACKAGE')}, {env.get('JAVA_VERSION')}, "
             f"-Xmx{env.get('ZK_HEAP')}\n")
    L.append(f"- Data directories of both servers on the same file system ({env.get('DATA_FS')}), fresh per phase.\n")
    if env.get("QUICK") == "1":
        L.append("- **QUICK=1 smoke test: durations and sizes are too small to mean anything.**\n")
    L.append("\n## Settings\n\n")
    L.append("- Both servers standalone on 127.0.0.1, same keys in their config: `tickTime=2000`, "
             "`maxClientCnxns=0`, `4lw.commands.whitelist=*`, `admin.enableServer=false`, `forceSync=yes` "
             "(fsync of the transaction log before replying, both). Configs are in `raw/config/`.\n")
    L.append(f"- **pinned** phase: each server pinned to CPU {env.get('SERVER_CPU')} (`taskset`), corezk "
             f"`--cores 1`, the loadgen pinned to CPU {env.get('LOADGEN_CPU')} (one loadgen thread). Both servers "
             "run during the phase; the idle one's CPU use is recorded with each run.\n")
    L.append(f"- **unpinned** phase: no pinning, corezk `--cores {env.get('NPROC')}`, the loadgen with one thread "
             "per CPU; servers and loadgen share all CPUs.\n")
    L.append(f"- Closed-loop workloads: {env.get('SESSIONS')} sessions x {env.get('INFLIGHT')} in flight, "
             f"{env.get('VALUE_SIZE')} B values, {env.get('KEYS')} keys, {env.get('DURATION')} s measured after "
             f"{env.get('WARMUP')} s warm-up; pinned: {env.get('REPEATS')} repeats, unpinned: "
             f"{env.get('UNPINNED_REPEATS')}, alternating ZooKeeper then corezk for each repeat; medians reported. "
             f"Each phase starts with {env.get('PRIME')} s of untimed 10:1 load on each server (JIT warm-up; "
             "files `raw/<phase>/prime-*`).\n")
    L.append(f"- Latency run: open loop at {env.get('LAT_RATE')} ops/s ({env.get('LAT_RATE_SOURCE')}), 10:1, "
             f"per-session cap of {env.get('LAT_INFLIGHT')} outstanding requests; latency counted from each "
             "request's intended send time.\n")
    L.append(f"- Sweep: `corezk-loadgen sweep` over read percentages {env.get('SWEEP_RATIOS')}, "
             f"{env.get('SWEEP_DURATION')} s per cell after {env.get('SWEEP_WARMUP')} s warm-up, pinned as above.\n")
    L.append(f"- Memory: fresh servers, {int(env.get('MEM_KEYS', 0)):,} znodes of {env.get('MEM_VALUE')} bytes "
             f"loaded (bounded by {env.get('MEM_TIMEOUT')} s per server), RSS (VmRSS) after "
             f"{env.get('MEM_SETTLE')} s.\n")
    L.append("\n## Results\n\n")
    L.append(summary_md)
    L.append("\nThroughput ratio = corezk ops/s / ZooKeeper ops/s (higher is better for corezk); p99 and RSS "
             "ratios = corezk / ZooKeeper (lower is better for corezk). Per-run numbers, p50/p99.9, and server "
             "CPU per operation are in `tables/`.\n")
    L.append("\n## Files and the commands that made them\n\n")
    L.append("Paths relative to the repository root; `$WORK` is the script's temporary directory.\n\n")
    L.append("Servers (`raw/servers.tsv`):\n\n")
    for s in servers:
        L.append(f"- {s['phase']} {s['target']}: `{s['command'].strip()}`\n")
    L.append("\nLoadgen runs (`raw/runs.tsv`; each `.json` is the loadgen's `--json` report, the `.txt` beside it "
             "its printed summary):\n\n")
    for r in runs:
        extra = "" if r.rc == 0 else f" (exit {r.rc})"
        if r.workload == "sweep":
            L.append(f"- `sweep/` (sweep.md, sweep.csv, sweep.json, throughput-vs-read-ratio.svg; sweep.txt is its "
                     f"output){extra}: `{r.command}`\n")
        else:
            L.append(f"- `{r.file}`{extra}: `{r.command}`\n")
    L.append("\nWritten by `bench/compare.sh` itself: `raw/runs.tsv` (one line per loadgen run: wall time, server "
             "CPU seconds from /proc/PID/stat, the idle server's CPU seconds, the busy % of each CPU, command), `raw/servers.tsv` (server command lines), "
             "`raw/memory.tsv` (VmRSS/VmHWM from /proc/PID/status, znode count from `mntr`), "
             "`raw/timings.tsv` (seconds per phase), `raw/settings.env` (settings, versions, load average), "
             "`raw/host-load-start.txt` and `raw/host-load-end.txt` (`top -bn1` at the start and the end: what "
             "else was running), "
             "`raw/config/` (the servers' configs).\n\n")
    L.append(f"Written by `python3 bench/compare_report.py {rel_out}` (run by compare.sh at the end) from the "
             "files above: `summary.md`, `summary.csv`, `tables/<phase>-<workload>.{md,csv}` (every run, medians, "
             "ratios), `tables/memory.{md,csv}`, `plots/throughput.svg`, `plots/latency.svg`, `plots/memory.svg`, "
             "and this README.\n")
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("".join(L))


def print_summary(summary, mem_entry, env, timings):
    print()
    print("corezk vs Apache ZooKeeper 3.8 (medians; ratio = corezk / ZooKeeper)")
    print(f"{'phase':9} {'workload':19} {'ZK ops/s':>10} {'corezk ops/s':>13} {'ratio':>7} "
          f"{'ZK p99us':>10} {'cz p99us':>10} {'p99 ratio':>9}  verdict")
    for e in summary:
        z, c = e["med"]["zookeeper"], e["med"]["corezk"]
        print(f"{e['phase']:9} {e['workload']:19} {fnum(z['ops']):>10} {fnum(c['ops']):>13} "
              f"{fratio(e['tput_ratio']):>7} {fnum(z['p99'], 0):>10} {fnum(c['p99'], 0):>10} "
              f"{fratio(e['p99_ratio']):>9}  {e.get('target', '')} {e.get('verdict', '')}")
    if mem_entry:
        print(f"memory: {env.get('MEM_KEYS')} znodes x {env.get('MEM_VALUE')} B: ZooKeeper RSS "
              f"{fnum(mem_entry['zk'], 1)} MiB ({mem_entry['zk_n']} znodes), corezk {fnum(mem_entry['cz'], 1)} MiB "
              f"({mem_entry['cz_n']} znodes), ratio {fratio(mem_entry['ratio'])}: {mem_entry['verdict']}")
    print("time: " + ", ".join(f"{t['phase']} {float(t['seconds']):.0f} s" for t in timings))


if __name__ == "__main__":
    main()
