#!/usr/bin/env bash
# The log write path before and after a change: two corezk builds side by side, same loadgen.
#
# Builds corezk at BEFORE (a git revision, in a temporary worktree) and at the working tree,
# then runs, alternating the two builds REPEATS times, with the server on CPU $SERVER_CPU
# (--cores 1) and the loadgen on CPU $LOADGEN_CPU, fsync on:
#   writes   100% setData of 1 KiB, closed loop, 16 sessions x 8 outstanding
#   mixed    10:1 getData:setData, closed loop, 16 x 8 (writes behind a busy shard)
#   readers  setData at a fixed 2000/s while 4 more sessions read back to back in closed loop
#            (the shape of the stall: a shard busy with readers while its writes wait)
# and writes raw JSON plus README.md with medians (throughput, setData p50/p99/max) and the
# log's own timing from mntr into $OUT.
#
#   BEFORE=f216dd3~1 bench/write_path.sh
#
# Settings: BEFORE (required), OUT [results/write-path], DURATION [10], WARMUP [2], REPEATS [3],
# SERVER_CPU [0], LOADGEN_CPU [1].
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BEFORE=${BEFORE:?set BEFORE to the git revision to compare against}
OUT=${OUT:-$ROOT/results/write-path}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
REPEATS=${REPEATS:-3}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
log() { printf '[write_path %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/corezk-write-path.XXXXXX")
PID=""
cleanup() {
    [[ -n $PID ]] && kill -9 "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    git worktree remove --force "$WORK/before-src" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

BEFORE_REV=$(git rev-parse --short "$BEFORE")
AFTER_REV=$(git rev-parse --short HEAD)$( [[ -n $(git status --porcelain -- src) ]] && echo "+changes")
log "building before ($BEFORE_REV) and after ($AFTER_REV)"
git worktree add --detach "$WORK/before-src" "$BEFORE_REV" >/dev/null
(cd "$WORK/before-src" && CARGO_TARGET_DIR=$WORK/before-target cargo build --release -q -p corezk)
cargo build --release -q -p corezk -p corezk-loadgen
declare -A BIN=([before]=$WORK/before-target/release/corezk [after]=$ROOT/target/release/corezk)
LG=$ROOT/target/release/corezk-loadgen
mkdir -p "$OUT/raw"
rm -f "$OUT"/raw/*.json

port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
four() { exec 3<>"/dev/tcp/127.0.0.1/$1"; printf '%s' "$2" >&3; cat <&3; exec 3<&-; }

start_server() { # which -> sets PORT, PID
    PORT=$(port)
    rm -rf "$WORK/data"
    taskset -c "$SERVER_CPU" "${BIN[$1]}" --cores 1 --port "$PORT" --bind 127.0.0.1 --data-dir "$WORK/data" \
        --set 4lw.commands.whitelist='*' --set maxClientCnxns=0 >"$WORK/server-$1.log" 2>&1 &
    PID=$!
    for _ in $(seq 100); do
        [[ $(four "$PORT" ruok 2>/dev/null) == imok ]] && return 0
        sleep 0.1
    done
    log "server $1 did not start"; cat "$WORK/server-$1.log" >&2; exit 1
}
stop_server() { kill -9 "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }

run() { # which workload repeat
    local which=$1 w=$2 r=$3 json=$OUT/raw/$2-$1-$3.json
    start_server "$which"
    local common=(--hosts "127.0.0.1:$PORT" --duration "$DURATION" --warmup "$WARMUP" --quiet --label "$which")
    case $w in
        writes) taskset -c "$LOADGEN_CPU" "$LG" "${common[@]}" --read-ratio 0 --json "$json" >/dev/null ;;
        mixed) taskset -c "$LOADGEN_CPU" "$LG" "${common[@]}" --read-ratio 10:1 --json "$json" >/dev/null ;;
        readers)
            taskset -c "$LOADGEN_CPU" "$LG" --hosts "127.0.0.1:$PORT" --duration $((DURATION + WARMUP + 2)) \
                --warmup 0 --quiet --read-ratio 100 --sessions 4 --inflight 1 --label "$which-readers" \
                >/dev/null &
            local readers=$!
            sleep 1
            taskset -c "$LOADGEN_CPU" "$LG" "${common[@]}" --read-ratio 0 --rate 2000 --sessions 4 --json "$json" \
                >/dev/null
            wait "$readers"
            ;;
    esac
    four "$PORT" mntr | grep -E 'zk_log_(records|write_us_total|write_max_us)|zk_logged_transactions' \
        >"$OUT/raw/$w-$which-$r.mntr" || true
    stop_server
}

for r in $(seq "$REPEATS"); do
    for w in writes mixed readers; do
        for which in before after; do
            log "$w $which (repeat $r/$REPEATS)"
            run "$which" "$w" "$r"
        done
    done
done

python3 - "$OUT" "$BEFORE_REV" "$AFTER_REV" "$DURATION" "$REPEATS" "$SERVER_CPU" "$LOADGEN_CPU" <<'EOF'
import glob, json, os, platform, statistics, sys
out, before, after, duration, repeats, scpu, lcpu = sys.argv[1:]
rows = []
for w, title in (("writes", "100% setData, 16x8 closed loop"), ("mixed", "10:1, 16x8 closed loop"),
                 ("readers", "setData at 2000/s beside 4 back-to-back readers")):
    for which, rev in (("before", before), ("after", after)):
        runs = [json.load(open(p)) for p in sorted(glob.glob("%s/raw/%s-%s-*.json" % (out, w, which)))]
        if not runs:
            continue
        sd = [r["results"]["ops"].get("setData", {}).get("latency_us", {}) for r in runs]
        med = lambda xs: statistics.median(xs) if xs else float("nan")
        mntr = {}
        for p in sorted(glob.glob("%s/raw/%s-%s-*.mntr" % (out, w, which))):
            for line in open(p):
                k, v = line.split()
                mntr.setdefault(k, []).append(float(v))
        rec = mntr.get("zk_log_records", [0])
        per_rec = [u / max(n, 1) for u, n in zip(mntr.get("zk_log_write_us_total", [0]), rec)]
        rows.append((title, "%s (%s)" % (which, rev), med([r["results"]["ops_per_sec"] for r in runs]),
                     med([s.get("p50", 0) for s in sd]), med([s.get("p99", 0) for s in sd]),
                     max([s.get("max", 0) for s in sd] or [0]), med(per_rec), max(mntr.get("zk_log_write_max_us", [0]))))
with open(os.path.join(out, "README.md"), "w") as f:
    f.write("# Log write path: before and after\n\n")
    f.write("Made by `bench/write_path.sh` (BEFORE=%s, after=%s) on %s, %d CPUs, %s; server on CPU %s "
            "(--cores 1), loadgen on CPU %s; fsync on; %s s measured per run, median of %s runs "
            "(max: the worst run). Raw loadgen JSON and mntr extracts in raw/.\n\n"
            % (before, after, platform.node(), os.cpu_count(), platform.release(), scpu, lcpu, duration, repeats))
    f.write("| workload | build | ops/s | setData p50 us | setData p99 us | setData max us | "
            "log write+sync per record us | slowest log write us |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
    for t, b, ops, p50, p99, mx, pr, lw in rows:
        f.write("| %s | %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n" % (t, b, ops, p50, p99, mx, pr, lw))
print(open(os.path.join(out, "README.md")).read())
EOF
