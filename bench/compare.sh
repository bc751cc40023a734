#!/usr/bin/env bash
# corezk vs Apache ZooKeeper 3.8, side by side on loopback, in one run.
#
# Starts both servers with equivalent settings (standalone, tickTime 2000, fsync on,
# data directories on the same disk, free ports, temp dirs), runs the same
# corezk-loadgen workloads against each, alternating ZooKeeper/corezk per repeat,
# and writes raw JSON, tables with corezk/ZooKeeper ratios, plots and a generated
# README into results/ (bench/compare_report.py makes the tables, plots and README).
#
#   bench/compare.sh              full run into results/ (about 13 minutes)
#   QUICK=1 bench/compare.sh      smoke test (about 2 minutes) into a temp dir
#
# Phases:
#   pinned    server on CPU $SERVER_CPU (corezk --cores 1), loadgen on CPU $LOADGEN_CPU:
#             (a) 10:1 reads:writes, (b) 100% reads, (c) 100% writes, closed loop,
#             REPEATS x (ZooKeeper, corezk); (d) open loop at half of ZooKeeper's
#             median 10:1 throughput; a read-ratio sweep (corezk-loadgen sweep).
#   unpinned  both servers and the loadgen on all CPUs (corezk --cores $(nproc)): (a)-(c).
#   memory    fresh servers, 1M znodes of 100 bytes loaded into each, resident memory.
#
# Settings (environment):
#   OUT=dir                 where results go             [results, or a temp dir if QUICK=1]
#   DURATION=s WARMUP=s     measured time and warm-up per run            [10, 3]
#   REPEATS=n               runs per server per workload (median taken)  [3]
#   PRIME=s                 untimed 10:1 load on each server after start (JIT warm-up) [10]
#   LAT_RATE=ops            fixed rate for (d)           [half of ZooKeeper's 10:1 median]
#   LAT_INFLIGHT=n          per-session cap of outstanding requests in (d)  [64]
#   SWEEP=0|1 SWEEP_RATIOS=list SWEEP_DURATION=s SWEEP_WARMUP=s   [1, 0..100/10, 5, 2]
#   UNPINNED=0|1 UNPINNED_REPEATS=n                               [1, 1]
#   MEM=0|1 MEM_KEYS=n MEM_VALUE=bytes MEM_TIMEOUT=s MEM_SETTLE=s  [1, 1000000, 100, 300, 5]
#   ZK_HEAP=size            ZooKeeper -Xmx                 [2g]
#   SERVER_CPU=n LOADGEN_CPU=n                             [0, 1]
#   SESSIONS INFLIGHT KEYS VALUE_SIZE                      [16, 8, 1000, 1024]
#   BUILD=0                 use the existing binaries instead of cargo build
#   CARGO_TARGET_DIR        honoured (binaries from $CARGO_TARGET_DIR/release)
#   BENCH_TMP=dir           parent of the servers' data dirs   [$TMPDIR or /tmp]
#   KEEP_TMP=1              keep the servers' data dirs and logs
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
INVOCATION=$(printf '%q ' "$0" "$@")
ENV_SHOWN=""
for v in QUICK OUT DURATION WARMUP REPEATS PRIME LAT_RATE LAT_INFLIGHT SWEEP SWEEP_RATIOS SWEEP_DURATION \
    SWEEP_WARMUP UNPINNED UNPINNED_REPEATS MEM MEM_KEYS MEM_VALUE MEM_TIMEOUT MEM_SETTLE ZK_HEAP SERVER_CPU \
    LOADGEN_CPU SESSIONS INFLIGHT KEYS VALUE_SIZE BUILD CARGO_TARGET_DIR BENCH_TMP; do
    if [[ -n "${!v+x}" ]]; then ENV_SHOWN+="$v=$(printf '%q' "${!v}") "; fi
done

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    : "${DURATION:=2}" "${WARMUP:=1}" "${REPEATS:=1}" "${PRIME:=2}" "${SWEEP_RATIOS:=0,50,100}"
    : "${SWEEP_DURATION:=1}" "${SWEEP_WARMUP:=0.5}" "${MEM_KEYS:=20000}" "${MEM_SETTLE:=1}"
fi
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
REPEATS=${REPEATS:-3}
PRIME=${PRIME:-10}
LAT_RATE=${LAT_RATE:-}
LAT_INFLIGHT=${LAT_INFLIGHT:-64}
SWEEP=${SWEEP:-1}
SWEEP_RATIOS=${SWEEP_RATIOS:-0..100/10}
SWEEP_DURATION=${SWEEP_DURATION:-5}
SWEEP_WARMUP=${SWEEP_WARMUP:-2}
UNPINNED=${UNPINNED:-1}
UNPINNED_REPEATS=${UNPINNED_REPEATS:-1}
MEM=${MEM:-1}
MEM_KEYS=${MEM_KEYS:-1000000}
MEM_VALUE=${MEM_VALUE:-100}
MEM_TIMEOUT=${MEM_TIMEOUT:-300}
MEM_SETTLE=${MEM_SETTLE:-5}
ZK_HEAP=${ZK_HEAP:-2g}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
SESSIONS=${SESSIONS:-16}
INFLIGHT=${INFLIGHT:-8}
KEYS=${KEYS:-1000}
VALUE_SIZE=${VALUE_SIZE:-1024}
BUILD=${BUILD:-1}
BENCH_TMP=${BENCH_TMP:-${TMPDIR:-/tmp}}
KEEP_TMP=${KEEP_TMP:-0}

log() { printf '[compare %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- prerequisites
ZK_JAR=/usr/share/java/zookeeper.jar
ZK_CP_EXTRA=/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar
[[ -f $ZK_JAR ]] || die "Apache ZooKeeper not installed ($ZK_JAR): apt-get install -y zookeeper"
command -v java >/dev/null || die "java not found"
command -v taskset >/dev/null || die "taskset not found (util-linux)"
command -v python3 >/dev/null || die "python3 not found"
NPROC=$(nproc)
(( NPROC >= 2 )) || die "needs at least 2 CPUs (server on CPU $SERVER_CPU, loadgen on CPU $LOADGEN_CPU)"

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN_DIR=$TARGET_DIR/release
if [[ $BUILD == 1 ]]; then
    log "cargo build --release -p corezk -p corezk-loadgen (target dir $TARGET_DIR)"
    T0=$(date +%s.%N)
    cargo build --release -p corezk -p corezk-loadgen
    BUILD_S=$(python3 -c "import time;print(round(time.time()-$T0,1))")
else
    BUILD_S=skipped
fi
COREZK=$BIN_DIR/corezk
LG=$BIN_DIR/corezk-loadgen
[[ -x $COREZK && -x $LG ]] || die "binaries missing in $BIN_DIR (run without BUILD=0)"
# Shown paths are relative to the repo when they can be.
rel() { local p=$1; [[ $p == "$ROOT/"* ]] && p=${p#"$ROOT/"}; printf '%s' "$p"; }

if [[ -z ${OUT:-} ]]; then
    if [[ $QUICK == 1 ]]; then OUT=$(mktemp -d "$BENCH_TMP/corezk-compare-quick.XXXXXX"); else OUT=$ROOT/results; fi
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

WORK=$(mktemp -d "$BENCH_TMP/corezk-compare.XXXXXX")
declare -A SERVER_PIDS=()
cleanup() {
    local rc=$?
    for pid in "${!SERVER_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${!SERVER_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $KEEP_TMP == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# fourlw PORT WORD: a four-letter-word reply ("" on failure)
fourlw() {
    timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" && printf %s "$1" >&3 && cat <&3' "$1" "$2" 2>/dev/null || true
}
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kb() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK)
# CPU seconds (user+system, all threads) a process has used so far.
cpu_s() { awk -v t="$CLK_TCK" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12+$13)/t }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Per-CPU busy and total ticks from /proc/stat ("busy:total" per CPU), and the busy % between two snapshots
# (all work on that CPU, whoever did it: the server or loadgen, their softirqs, or other processes).
cpu_snap() { awk '/^cpu[0-9]/{b=$2+$3+$4+$7+$8+$9; t=b+$5+$6; printf "%s:%s ", b, t}' /proc/stat; }
cpu_busy() { python3 -c '
import sys
a, b = sys.argv[1].split(), sys.argv[2].split()
print(" ".join(str(round(100 * (int(y.split(":")[0]) - int(x.split(":")[0])) / max(1, int(y.split(":")[1]) - int(x.split(":")[1]))))
               for x, y in zip(a, b)))' "$1" "$2"; }
znodes() { fourlw "$1" mntr | awk '$1=="zk_znode_count"{print $2}'; }
alive() { kill -0 "$1" 2>/dev/null; }

wait_ready() { # PID PORT NAME
    local pid=$1 port=$2 name=$3
    for _ in $(seq 600); do
        alive "$pid" || die "$name exited during start-up (see its log in $WORK)"
        if [[ $(fourlw "$port" ruok) == imok ]] && fourlw "$port" srvr | grep -q '^Mode: standalone'; then
            return 0
        fi
        sleep 0.1
    done
    die "$name on port $port not ready after 60 s"
}

printf 'phase\tworkload\ttarget\trep\tfile\trc\twall_s\tserver_cpu_s\tother_server_cpu_s\tcpu_busy_pct\tcommand\n' >"$WORK/runs.tsv"
printf 'phase\ttarget\tport\tpid\tstart_s\tcommand\n' >"$WORK/servers.tsv"
printf 'phase\tseconds\n' >"$WORK/timings.tsv"
printf 'target\tstage\trss_kb\thwm_kb\tznodes\tseconds\tnote\n' >"$WORK/memory.tsv"
tsv() { local IFS=$'\t'; printf '%s\n' "$*"; }

COMMON_CFG="tickTime=2000
maxClientCnxns=0
4lw.commands.whitelist=*
admin.enableServer=false
forceSync=yes"

# start_zk PHASE PIN(cpu list or "") -> ZK_PID ZK_PORT
start_zk() {
    local phase=$1 pin=$2 d=$WORK/zk-$1
    mkdir -p "$d/data" "$d/conf"
    ZK_PORT=$(free_port)
    printf '%s\ndataDir=%s\nclientPort=%s\nclientPortAddress=127.0.0.1\n' "$COMMON_CFG" "$d/data" "$ZK_PORT" >"$d/conf/zoo.cfg"
    cat >"$d/conf/log4j.properties" <<EOF
log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=$d/zookeeper.log
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} - %-5p [%t:%C{1}@%L] - %m%n
EOF
    local cmd=()
    [[ -n $pin ]] && cmd+=(taskset -c "$pin")
    cmd+=(java "-Xmx$ZK_HEAP" -Dzookeeper.admin.enableServer=false "-Dlog4j.configuration=file:$d/conf/log4j.properties"
        -cp "$d/conf:$ZK_JAR:$ZK_CP_EXTRA" org.apache.zookeeper.server.quorum.QuorumPeerMain "$d/conf/zoo.cfg")
    local t0; t0=$(date +%s.%N)
    "${cmd[@]}" >"$d/stdout.log" 2>&1 &
    ZK_PID=$!
    SERVER_PIDS[$ZK_PID]=1
    wait_ready "$ZK_PID" "$ZK_PORT" "ZooKeeper ($phase)"
    local secs; secs=$(python3 -c "import time;print(round(time.time()-$t0,2))")
    cp "$d/conf/zoo.cfg" "$OUT/raw/config/zookeeper-$phase.zoo.cfg"
    tsv "$phase" zookeeper "$ZK_PORT" "$ZK_PID" "$secs" "$(printf '%q ' "${cmd[@]}")" >>"$WORK/servers.tsv"
    log "ZooKeeper ($phase) pid $ZK_PID on 127.0.0.1:$ZK_PORT${pin:+, CPU $pin}, ready in ${secs}s"
}

# start_cz PHASE PIN CORES [DATADIR] -> CZ_PID CZ_PORT
start_cz() {
    local phase=$1 pin=$2 cores=$3 d=${4:-$WORK/cz-$1}
    mkdir -p "$d"
    CZ_PORT=${CZ_PORT_REUSE:-$(free_port)}
    printf '%s\n' "$COMMON_CFG" >"$WORK/cz-$phase.cfg"
    local cmd=()
    [[ -n $pin ]] && cmd+=(taskset -c "$pin")
    cmd+=("$(rel "$COREZK")" --config "$WORK/cz-$phase.cfg" --port "$CZ_PORT" --bind 127.0.0.1 --data-dir "$d"
        --cores "$cores" --set '4lw.commands.whitelist=*')
    local t0; t0=$(date +%s.%N)
    "${cmd[@]}" >>"$WORK/cz-$phase.log" 2>&1 &
    CZ_PID=$!
    SERVER_PIDS[$CZ_PID]=1
    wait_ready "$CZ_PID" "$CZ_PORT" "corezk ($phase)"
    CZ_START_S=$(python3 -c "import time;print(round(time.time()-$t0,2))")
    cp "$WORK/cz-$phase.cfg" "$OUT/raw/config/corezk-$phase.cfg"
    tsv "$phase" corezk "$CZ_PORT" "$CZ_PID" "$CZ_START_S" "$(printf '%q ' "${cmd[@]}")" >>"$WORK/servers.tsv"
    log "corezk ($phase) pid $CZ_PID on 127.0.0.1:$CZ_PORT${pin:+, CPU $pin}, --cores $cores, ready in ${CZ_START_S}s"
}

stop_server() { # PID
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "SERVER_PIDS[$pid]"
}

PHASE_T0=0
phase_begin() { PHASE_T0=$(date +%s.%N); log "=== phase $1"; }
phase_end() { tsv "$1" "$(python3 -c "import time;print(round(time.time()-$PHASE_T0,1))")" >>"$WORK/timings.tsv"; }

# run_lg PHASE WORKLOAD TARGET REP PIN -- loadgen args...
# Runs one loadgen run against TARGET (zookeeper|corezk), JSON into raw/PHASE/, text summary beside it.
run_lg() {
    local phase=$1 workload=$2 target=$3 rep=$4 pin=$5; shift 6
    local port pid other
    if [[ $target == zookeeper ]]; then port=$ZK_PORT pid=$ZK_PID other=$CZ_PID; else port=$CZ_PORT pid=$CZ_PID other=$ZK_PID; fi
    alive "$pid" || die "$target died before $phase/$workload #$rep"
    local base=raw/$phase/$workload-$target-$rep
    mkdir -p "$OUT/raw/$phase"
    local cmd=()
    [[ -n ${LG_TIMEOUT:-} ]] && cmd+=(timeout "$LG_TIMEOUT")
    [[ -n $pin ]] && cmd+=(taskset -c "$pin")
    cmd+=("$(rel "$LG")" --hosts "127.0.0.1:$port" --label "$target" "$@" --quiet --json "$(rel "$OUT/$base.json")")
    local c0 o0 t0 rc=0 s0 s1
    c0=$(cpu_s "$pid"); o0=$(cpu_s "$other"); t0=$(date +%s.%N); s0=$(cpu_snap)
    "${cmd[@]}" >"$OUT/$base.txt" 2>&1 || rc=$?
    s1=$(cpu_snap)
    local c1 o1 wall
    c1=$(cpu_s "$pid"); o1=$(cpu_s "$other")
    wall=$(python3 -c "import time;print(round(time.time()-$t0,2))")
    tsv "$phase" "$workload" "$target" "$rep" "$base.json" "$rc" "$wall" \
        "$(python3 -c "print(round($c1-$c0,2))")" "$(python3 -c "print(round($o1-$o0,2))")" \
        "$(cpu_busy "$s0" "$s1")" "$(printf '%q ' "${cmd[@]}")" >>"$WORK/runs.tsv"
    local summary
    summary=$(awk '$1=="total"{printf "%s ops/s, p99 %s us", $3, $6}' "$OUT/$base.txt")
    if [[ $rc != 0 ]]; then
        log "  $phase $workload $target #$rep: loadgen exit $rc: $(tail -n 2 "$OUT/$base.txt" | tr '\n' ' ')"
    else
        log "  $phase $workload $target #$rep: $summary"
    fi
}

median_ops() { # PHASE WORKLOAD TARGET
    python3 - "$OUT" "$1" "$2" "$3" <<'EOF'
import json, glob, statistics, sys
out, phase, wl, target = sys.argv[1:]
v = []
for f in sorted(glob.glob(f"{out}/raw/{phase}/{wl}-{target}-*.json")):
    try:
        v.append(json.load(open(f))["results"]["ops_per_sec"])
    except Exception:
        pass
print(int(statistics.median(v)) if v else 0)
EOF
}

# wl_args DURATION WARMUP INFLIGHT -> WL_ARGS (the knobs every run shares)
wl_args() {
    WL_ARGS=(--sessions "$SESSIONS" --inflight "$3" --value-size "$VALUE_SIZE" --keys "$KEYS" --duration "$1" --warmup "$2")
}
declare -A WORKLOADS=([mixed-10to1]="--read-ratio 10:1" [reads-100]="--read-ratio 100" [writes-100]="--read-ratio 0")
WL_ORDER=(mixed-10to1 reads-100 writes-100)

# closed_loop_phase PHASE PIN REPEATS
closed_loop_phase() {
    local phase=$1 pin=$2 reps=$3 wl rep target
    if [[ $PRIME != 0 ]]; then
        wl_args "$PRIME" 0 "$INFLIGHT"
        for target in zookeeper corezk; do
            run_lg "$phase" prime "$target" 1 "$pin" -- "${WL_ARGS[@]}" --read-ratio 10:1
        done
    fi
    wl_args "$DURATION" "$WARMUP" "$INFLIGHT"
    for wl in "${WL_ORDER[@]}"; do
        for rep in $(seq "$reps"); do
            for target in zookeeper corezk; do
                # shellcheck disable=SC2086
                run_lg "$phase" "$wl" "$target" "$rep" "$pin" -- "${WL_ARGS[@]}" ${WORKLOADS[$wl]}
            done
        done
    done
}

# ---------------------------------------------------------------- run
START_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "results into $OUT; servers' data and logs in $WORK"
# Clear what an earlier run generated (only our own files: results/ is written only by this script).
rm -rf "$OUT/raw" "$OUT/sweep" "$OUT/tables" "$OUT/plots" "$OUT"/*.md "$OUT"/*.csv
mkdir -p "$OUT/raw/config"
top -bn1 -w 160 2>/dev/null | head -n 25 >"$OUT/raw/host-load-start.txt" || true

# --- pinned: server on SERVER_CPU, loadgen on LOADGEN_CPU, corezk --cores 1
phase_begin pinned
start_zk pinned "$SERVER_CPU"
start_cz pinned "$SERVER_CPU" 1
closed_loop_phase pinned "$LOADGEN_CPU" "$REPEATS"

ZK_MAX=$(median_ops pinned mixed-10to1 zookeeper)
if [[ -z $LAT_RATE ]]; then
    LAT_RATE=$(( ZK_MAX / 2 ))
    (( LAT_RATE > 0 )) || die "no ZooKeeper 10:1 throughput measured, cannot pick the fixed rate"
    LAT_RATE_SOURCE="half of ZooKeeper's median 10:1 throughput ($ZK_MAX ops/s) in this run"
else
    LAT_RATE_SOURCE="set by LAT_RATE"
fi
log "fixed rate for the latency run: $LAT_RATE ops/s ($LAT_RATE_SOURCE)"
wl_args "$DURATION" "$WARMUP" "$LAT_INFLIGHT"
for rep in $(seq "$REPEATS"); do
    for target in zookeeper corezk; do
        run_lg pinned latency-fixed-rate "$target" "$rep" "$LOADGEN_CPU" -- "${WL_ARGS[@]}" --read-ratio 10:1 \
            --rate "$LAT_RATE"
    done
done
phase_end pinned

if [[ $SWEEP == 1 ]]; then
    phase_begin sweep
    SWEEP_CMD=(taskset -c "$LOADGEN_CPU" "$(rel "$LG")" sweep
        --targets "zookeeper=127.0.0.1:$ZK_PORT;corezk=127.0.0.1:$CZ_PORT" --read-ratios "$SWEEP_RATIOS"
        --sessions "$SESSIONS" --inflight "$INFLIGHT" --value-size "$VALUE_SIZE" --keys "$KEYS"
        --duration "$SWEEP_DURATION" --warmup "$SWEEP_WARMUP" --quiet --out "$(rel "$OUT/sweep")")
    log "sweep: ${SWEEP_CMD[*]}"
    c0=$(cpu_s "$ZK_PID"); o0=$(cpu_s "$CZ_PID"); t0=$(date +%s.%N); rc=0
    s0=$(cpu_snap)
    "${SWEEP_CMD[@]}" >"$WORK/sweep.txt" 2>&1 || rc=$?
    s1=$(cpu_snap)
    mkdir -p "$OUT/sweep"; cp "$WORK/sweep.txt" "$OUT/sweep/sweep.txt"
    tsv pinned sweep both 1 sweep/sweep.json "$rc" "$(python3 -c "import time;print(round(time.time()-$t0,2))")" \
        "$(python3 -c "print(round($(cpu_s "$ZK_PID")-$c0,2))")" "$(python3 -c "print(round($(cpu_s "$CZ_PID")-$o0,2))")" \
        "$(cpu_busy "$s0" "$s1")" "$(printf '%q ' "${SWEEP_CMD[@]}")" >>"$WORK/runs.tsv"
    [[ $rc == 0 ]] || log "sweep failed (exit $rc): $(tail -n 3 "$WORK/sweep.txt" | tr '\n' ' ')"
    phase_end sweep
fi
stop_server "$ZK_PID"; stop_server "$CZ_PID"

# --- unpinned: servers and loadgen on all CPUs, corezk --cores NPROC
if [[ $UNPINNED == 1 ]]; then
    phase_begin unpinned
    start_zk unpinned ""
    start_cz unpinned "" "$NPROC"
    closed_loop_phase unpinned "" "$UNPINNED_REPEATS"
    stop_server "$ZK_PID"; stop_server "$CZ_PID"
    phase_end unpinned
fi

# --- memory: fresh servers (pinned as above), MEM_KEYS znodes of MEM_VALUE bytes each
if [[ $MEM == 1 ]]; then
    phase_begin memory
    start_zk memory "$SERVER_CPU"
    start_cz memory "$SERVER_CPU" 1
    sleep "$MEM_SETTLE"
    tsv zookeeper baseline "$(rss_kb "$ZK_PID")" "$(hwm_kb "$ZK_PID")" "$(znodes "$ZK_PORT")" "" "fresh server, ready" >>"$WORK/memory.tsv"
    tsv corezk baseline "$(rss_kb "$CZ_PID")" "$(hwm_kb "$CZ_PID")" "$(znodes "$CZ_PORT")" "" "fresh server, ready" >>"$WORK/memory.tsv"
    for target in zookeeper corezk; do
        if [[ $target == zookeeper ]]; then pid=$ZK_PID port=$ZK_PORT; else pid=$CZ_PID port=$CZ_PORT; fi
        log "loading $MEM_KEYS znodes of $MEM_VALUE bytes into $target (at most ${MEM_TIMEOUT}s)"
        t0=$(date +%s.%N)
        LG_TIMEOUT=$MEM_TIMEOUT run_lg memory load "$target" 1 "$LOADGEN_CPU" -- --sessions "$SESSIONS" \
            --keys "$MEM_KEYS" --value-size "$MEM_VALUE" --read-ratio 100 --duration 100ms --warmup 0 --keep --run-id mem
        secs=$(python3 -c "import time;print(round(time.time()-$t0,1))")
        sleep "$MEM_SETTLE"
        n=$(znodes "$port")
        note="after loading, ${MEM_SETTLE}s settle"
        rc=$(tail -n 1 "$WORK/runs.tsv" | cut -f6)
        [[ $rc == 0 ]] || note="loader exit $rc (124 = stopped by the ${MEM_TIMEOUT}s limit); $note"
        tsv "$target" loaded "$(rss_kb "$pid")" "$(hwm_kb "$pid")" "$n" "$secs" "$note" >>"$WORK/memory.tsv"
        log "  $target: $n znodes, RSS $(rss_kb "$pid") kB (load took ${secs}s)"
    done
    # Context, not the headline: ZooKeeper after a full GC; corezk after a restart that recovers from disk.
    if command -v jcmd >/dev/null; then
        jcmd "$ZK_PID" GC.run >/dev/null 2>&1 || true
        sleep 2
        tsv zookeeper after-full-gc "$(rss_kb "$ZK_PID")" "$(hwm_kb "$ZK_PID")" "$(znodes "$ZK_PORT")" "" \
            "jcmd PID GC.run, 2s settle" >>"$WORK/memory.tsv"
    fi
    stop_server "$CZ_PID"
    CZ_PORT_REUSE=$CZ_PORT start_cz memory-restart "$SERVER_CPU" 1 "$WORK/cz-memory"
    sleep "$MEM_SETTLE"
    tsv corezk after-restart "$(rss_kb "$CZ_PID")" "$(hwm_kb "$CZ_PID")" "$(znodes "$CZ_PORT")" "$CZ_START_S" \
        "restarted on the same data dir (recovery from snapshot + log; seconds = start-up), ${MEM_SETTLE}s settle" >>"$WORK/memory.tsv"
    du -sk "$WORK/zk-memory/data" "$WORK/cz-memory" | awk '{print $1}' | paste -sd' ' >"$WORK/du.txt"
    stop_server "$ZK_PID"; stop_server "$CZ_PID"
    phase_end memory
fi

# ---------------------------------------------------------------- report
top -bn1 -w 160 2>/dev/null | head -n 25 >"$OUT/raw/host-load-end.txt" || true
cp "$WORK/runs.tsv" "$WORK/servers.tsv" "$WORK/timings.tsv" "$WORK/memory.tsv" "$OUT/raw/"
# Server commands mention the temp dir; show it as $WORK.
sed -i "s|$WORK|\$WORK|g" "$OUT/raw/servers.tsv" "$OUT/raw/runs.tsv"
{
    echo "START_DATE=$START_DATE"
    echo "END_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "INVOCATION=${ENV_SHOWN}${INVOCATION}"
    echo "LOAD_START=$LOAD_START"
    echo "LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "BUILD_S=$BUILD_S"
    echo "QUICK=$QUICK"
    for v in DURATION WARMUP REPEATS PRIME LAT_RATE LAT_INFLIGHT SWEEP SWEEP_RATIOS SWEEP_DURATION SWEEP_WARMUP \
        UNPINNED UNPINNED_REPEATS MEM MEM_KEYS MEM_VALUE MEM_TIMEOUT MEM_SETTLE ZK_HEAP SERVER_CPU LOADGEN_CPU \
        SESSIONS INFLIGHT KEYS VALUE_SIZE NPROC; do
        echo "$v=${!v}"
    done
    echo "LAT_RATE_SOURCE=$LAT_RATE_SOURCE"
    echo "ZK_DATA_DU_KB=$(cut -d' ' -f1 "$WORK/du.txt" 2>/dev/null)"
    echo "CZ_DATA_DU_KB=$(cut -d' ' -f2 "$WORK/du.txt" 2>/dev/null)"
    echo "DATA_FS=$(df -PT "$WORK" | awk 'NR==2{print $1" "$2}')"
    echo "GIT_COMMIT=$(git rev-parse HEAD 2>/dev/null)"
    echo "GIT_DIRTY=$(git status --porcelain -- src loadgen Cargo.toml Cargo.lock 2>/dev/null | wc -l)"
    echo "COREZK_VERSION=$("$COREZK" --version 2>&1 | head -n 1)"
    echo "JAVA_VERSION=$(java -version 2>&1 | head -n 1)"
    echo "ZK_PACKAGE=$(dpkg-query -W -f='${Package} ${Version}' zookeeper 2>/dev/null)"
} >"$OUT/raw/settings.env"
python3 "$ROOT/bench/compare_report.py" "$OUT"
log "done: $OUT"
