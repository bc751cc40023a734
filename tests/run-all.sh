#!/usr/bin/env bash
# tests/run-all.sh: THE test command of corezk (README.md names it, .ci/run runs it).
#
# Idempotent. Installs what it needs when it is missing (Apache ZooKeeper 3.8 from
# Debian as the reference server and zkCli.sh, the Python test requirements), then
# runs these steps, stopping at the first failure:
#   fmt check, clippy (-D warnings), release build, cargo tests (release),
#   criterion benches in test mode (if any), Python tests against the release binary.
# Ends with a verdict line and a count line "summary: N passed, N failed, N skipped"
# (tests counted from libtest's and pytest's own closing lines).
#
# Environment:
#   RUN_ALL_SKIP_INSTALL=1     install nothing (offline runs)
#   RUN_ALL_STEP_TIMEOUT=SECS  time limit of each build/test step (default 1800)
#   PYTEST_ARGS="..."          extra arguments for pytest (e.g. "-x -k watch")
# Logs of each step: target/run-all/NN.log.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

# rustup installs cargo in ~/.cargo/bin; a non-login shell may not have it on PATH.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH=$HOME/.cargo/bin:$PATH
fi

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
LOG_DIR=$TARGET_DIR/run-all
STEP_TIMEOUT=${RUN_ALL_STEP_TIMEOUT:-1800}
START=$SECONDS
mkdir -p "$LOG_DIR"

step_no=0
step_name=""
rc=0
tests_passed=0
tests_failed=0
tests_skipped=0

header() {
    echo
    echo "==================================================================="
    echo "== step $step_no: $1"
    echo "==================================================================="
}

summary_line() {
    echo "summary: $tests_passed passed, $tests_failed failed, $tests_skipped skipped"
}

fail() { # fail EXIT_CODE [REASON]: verdict for the current step, then exit.
    local code=$1 reason=${2:-}
    # A step that failed without a failing test of its own (fmt, clippy, build,
    # a crash, a timeout) still counts as one failure.
    if [ "$tests_failed" -eq 0 ]; then tests_failed=1; fi
    echo
    echo "run-all: FAILED at step $step_no ($step_name), exit $code${reason:+: $reason}," \
        "after $((SECONDS - START))s; log: $LOG_DIR/$(printf '%02d' "$step_no").log"
    summary_line
    exit "$code"
}

# sum: add up the numbers on stdin.
sum() { awk '{ for (i = 1; i <= NF; i++) s += $i } END { print s + 0 }'; }

# count_cargo LOG: add up libtest's "test result:" lines.
count_cargo() {
    local results
    results=$(grep -aE '^test result: ' "$1")
    tests_passed=$((tests_passed + $(grep -oE '[0-9]+ passed' <<<"$results" | grep -oE '[0-9]+' | sum)))
    tests_failed=$((tests_failed + $(grep -oE '[0-9]+ failed' <<<"$results" | grep -oE '[0-9]+' | sum)))
    tests_skipped=$((tests_skipped + $(grep -oE '[0-9]+ ignored' <<<"$results" | grep -oE '[0-9]+' | sum)))
}

# count_pytest LOG: read pytest's closing line ("3 failed, 10 passed, 1 skipped in 2.10s").
count_pytest() {
    local line
    line=$(grep -aE '[0-9]+ (passed|failed|skipped|errors?|deselected|xfailed|xpassed)' "$1" \
        | grep -aE ' in [0-9.]+s' | tail -n 1)
    [ -n "$line" ] || return 0
    tests_passed=$((tests_passed + $(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+' | sum)))
    tests_failed=$((tests_failed + $(grep -oE '[0-9]+ (failed|errors?)' <<<"$line" | grep -oE '[0-9]+' | sum)))
    tests_skipped=$((tests_skipped + $(grep -oE '[0-9]+ skipped' <<<"$line" | grep -oE '[0-9]+' | sum)))
}

# begin NAME: start a step (number, name, header).
begin() {
    step_no=$((step_no + 1))
    step_name=$1
    header "$1"
}

# run COUNTER COMMAND...: run the current step's command with a time limit, tee
# its output to the step's log, count tests with COUNTER (count_cargo,
# count_pytest or none). Returns the command's exit code and leaves it in $rc.
# A shell function of this script runs without a time limit.
run() {
    local counter=$1 log t0=$SECONDS
    shift
    echo "+ $*"
    log=$LOG_DIR/$(printf '%02d' "$step_no").log
    rm -f "$log.rc" "$log.pid"
    # The step runs in the background so that Ctrl-C and SIGTERM reach on_signal,
    # which stops it. timeout gives the command a process group of its own and,
    # on expiry or on a signal, kills the whole group (servers a test left too).
    {
        if [ "$(type -t "$1")" = function ]; then
            "$@" 2>&1 &
        else
            timeout --kill-after=30 "$STEP_TIMEOUT" "$@" 2>&1 &
        fi
        echo $! >"$log.pid"
        wait $!
        echo $? >"$log.rc"
    } | tee "$log" &
    wait $!
    rc=$(cat "$log.rc" 2>/dev/null || echo 1)
    rm -f "$log.pid" "$log.rc"
    [ "$counter" = none ] || "$counter" "$log"
    echo "-- step $step_no ($step_name): exit $rc in $((SECONDS - t0))s"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        fail "$rc" "timed out after ${STEP_TIMEOUT}s (RUN_ALL_STEP_TIMEOUT)"
    fi
    return "$rc"
}

on_signal() {
    local pidfile
    trap - INT TERM
    pidfile=$LOG_DIR/$(printf '%02d' "$step_no").log.pid
    if [ -f "$pidfile" ]; then
        kill -TERM "$(cat "$pidfile")" 2>/dev/null
        wait 2>/dev/null
        rm -f "$pidfile"
    fi
    fail 130 "interrupted"
}
trap on_signal INT TERM

install_deps() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi

    if [ -f /usr/share/java/zookeeper.jar ] && [ -x /usr/share/zookeeper/bin/zkCli.sh ]; then
        echo "ZooKeeper reference: present (/usr/share/java/zookeeper.jar, zkCli.sh)"
    else
        echo "ZooKeeper reference: missing; installing Debian's zookeeper and zookeeper-bin"
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q || return 1
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q zookeeper zookeeper-bin </dev/null \
            || return 1
    fi

    if [ -f tests/python/requirements.txt ]; then
        echo "Python test requirements: tests/python/requirements.txt"
        python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r tests/python/requirements.txt || return 1
    else
        echo "Python test requirements: no tests/python/requirements.txt; installing kazoo pytest pytest-timeout"
        python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore kazoo pytest pytest-timeout || return 1
    fi
    python3 -c 'import kazoo.version, pytest, pytest_timeout
print("kazoo", kazoo.version.__version__, "/ pytest", pytest.__version__)'
}

raise_limits() {
    # glommio locks memory for each executor's io_uring rings and buffers.
    if ulimit -l unlimited 2>/dev/null; then
        echo "RLIMIT_MEMLOCK: unlimited"
    else
        ulimit -l "$(ulimit -H -l)" 2>/dev/null || true
        echo "RLIMIT_MEMLOCK: $(ulimit -l) KiB (hard limit $(ulimit -H -l); 'unlimited' is not allowed here)"
    fi
    ulimit -n "$(ulimit -H -n)" 2>/dev/null || true
    echo "RLIMIT_NOFILE: $(ulimit -n)"
}

echo "corezk run-all: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $ROOT (CI=${CI:-})"
echo "$(nproc) CPUs, $(uname -sr); $(cargo --version 2>&1); $(python3 --version 2>&1)"

if [ "${RUN_ALL_SKIP_INSTALL:-0}" = 1 ]; then
    begin "install dependencies (skipped: RUN_ALL_SKIP_INSTALL=1)"
else
    begin "install dependencies"
    run none install_deps || fail "$rc"
fi

begin "raise resource limits"
raise_limits

begin "cargo fmt --check"
run none cargo fmt --all -- --check || fail "$rc" "run 'cargo fmt --all' to fix"

begin "cargo clippy"
run none cargo clippy --workspace --all-targets -- -D warnings || fail "$rc"

begin "cargo build --release"
run none cargo build --release --workspace || fail "$rc"

# Integration tests find the release server through CARGO_BIN_EXE_corezk.
begin "cargo test --release"
run count_cargo cargo test --workspace --release || fail "$rc"

if [ -d bench ] && [ -n "$(find bench -name '*.rs' -print -quit)" ]; then
    # Runs each criterion benchmark once as a test, without measuring. Not
    # counted: --benches also re-runs the unit tests already counted above.
    begin "cargo test --benches --release"
    run none cargo test --workspace --benches --release || fail "$rc"
else
    begin "cargo test --benches --release (skipped: no bench/*.rs yet)"
fi

if [ -d tests/python ]; then
    begin "pytest tests/python"
    has_tests=$(find tests/python \( -name 'test_*.py' -o -name '*_test.py' \) -print -quit)
    export COREZK_BIN=$TARGET_DIR/release/corezk
    # shellcheck disable=SC2086 # PYTEST_ARGS is split into words on purpose
    if ! run count_pytest python3 -m pytest tests/python -q ${PYTEST_ARGS:-}; then
        if [ "$rc" -eq 5 ] && [ -z "$has_tests" ]; then
            echo "pytest: no test files in tests/python yet (exit 5 accepted)"
        else
            fail "$rc"
        fi
    fi
else
    begin "pytest tests/python (skipped: no tests/python yet)"
fi

echo
echo "run-all: all $step_no steps passed in $((SECONDS - START))s"
summary_line
