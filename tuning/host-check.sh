#!/usr/bin/env bash
# tuning/host-check.sh: is this host (and this shell's limits) ready for corezk?
#
# Checks and reports, without changing anything:
#   io_uring (kernel.io_uring_disabled and a real io_uring_setup probe), the
#   kernel version, RLIMIT_MEMLOCK, RLIMIT_NOFILE, the CPUs in the affinity mask,
#   isolated CPUs, the CPU frequency governor, transparent huge pages, irqbalance,
#   net.core.somaxconn, free disk and O_DIRECT support on the data directory.
# Lines start with [ ok ], [info], [warn] or [FAIL]. Exits 1 when any check is a
# hard failure (corezk cannot run here as configured), 0 otherwise, 2 on bad usage.
#
# Limits are per process: run it the way corezk runs, e.g. for the systemd unit
#   systemd-run --wait --pty -p LimitMEMLOCK=infinity -p LimitNOFILE=1048576 \
#       /path/to/host-check.sh --config /etc/corezk/zoo.cfg
#
# Usage: host-check.sh [--config ZOO_CFG] [--data-dir DIR] [--cores N]
set -uo pipefail

data_dir=""
cores=""
config=""
usage() { sed -n 's/^# Usage: //p' "$0"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --config) config=${2:-}; shift 2 || { usage; exit 2; } ;;
        --data-dir) data_dir=${2:-}; shift 2 || { usage; exit 2; } ;;
        --cores) cores=${2:-}; shift 2 || { usage; exit 2; } ;;
        -h | --help) usage; exit 0 ;;
        *) echo "host-check: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

failures=0
warnings=0
ok() { echo "[ ok ] $*"; }
info() { echo "[info] $*"; }
warn() { echo "[warn] $*"; warnings=$((warnings + 1)); }
fail() { echo "[FAIL] $*"; failures=$((failures + 1)); }

# Values from zoo.cfg (the options above win).
cfg_value() { # cfg_value KEY: last value of KEY= in $config
    sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$config" | tail -n 1 | sed 's/[[:space:]]*$//'
}
if [ -n "$config" ]; then
    if [ ! -r "$config" ]; then
        echo "host-check: cannot read config '$config'" >&2
        exit 2
    fi
    [ -n "$data_dir" ] || data_dir=$(cfg_value dataDir)
    [ -n "$cores" ] || cores=$(cfg_value cores)
    log_dir=$(cfg_value dataLogDir)
fi
data_dir=${data_dir:-./corezk-data}
log_dir=${log_dir:-}

echo "corezk host check: $(uname -n), $(uname -sr), $(date -u +%Y-%m-%dT%H:%M:%SZ)"

# --- CPUs ---------------------------------------------------------------------
allowed=$(awk '/^Cpus_allowed_list/ { print $2 }' /proc/self/status 2>/dev/null)
n_allowed=$(nproc 2>/dev/null || echo 1)
info "CPUs in this process's affinity mask: ${allowed:-?} ($n_allowed); online: $(cat /sys/devices/system/cpu/online 2>/dev/null || echo ?)"
if [ -z "$cores" ] || ! [[ "$cores" =~ ^[0-9]+$ ]]; then
    cores=$n_allowed
fi
isolated=$(cat /sys/devices/system/cpu/isolated 2>/dev/null)
if [ -n "$isolated" ]; then
    info "isolated CPUs (isolcpus/nohz_full): $isolated; pin corezk to them (CPUAffinity=, taskset)"
else
    info "no isolated CPUs (see tuning/README.md: optional, for the lowest tail latency)"
fi

# --- kernel and io_uring ------------------------------------------------------
kver=$(uname -r)
kmaj=${kver%%.*}
kmin=${kver#*.}
kmin=${kmin%%.*}
if [ "$kmaj" -lt 5 ] || { [ "$kmaj" -eq 5 ] && [ "$kmin" -lt 8 ]; }; then
    fail "kernel $kver: glommio needs Linux 5.8 or newer"
else
    ok "kernel $kver (glommio needs 5.8+)"
fi

if [ -r /proc/sys/kernel/io_uring_disabled ]; then
    v=$(cat /proc/sys/kernel/io_uring_disabled)
    case "$v" in
        0) ok "kernel.io_uring_disabled = 0 (io_uring allowed)" ;;
        1) warn "kernel.io_uring_disabled = 1: only root / members of kernel.io_uring_group may use io_uring;" \
            "run corezk as such a user or set kernel.io_uring_disabled=0" ;;
        *) fail "kernel.io_uring_disabled = $v: io_uring is off; set kernel.io_uring_disabled=0 (sysctl)" ;;
    esac
else
    info "kernel.io_uring_disabled: not present (kernel older than 6.6: io_uring is not switched off by sysctl)"
fi

# Probe: io_uring_setup(2) on a 4-entry ring, through ctypes (syscall 425 on
# x86_64, arm64 and every architecture with the unified syscall table).
if command -v python3 >/dev/null 2>&1; then
    probe=$(python3 - <<'PY' 2>&1
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)  # struct io_uring_params, zeroed
fd = libc.syscall(425, 4, params)
if fd >= 0:
    os.close(fd)
    print("ok")
else:
    e = ctypes.get_errno()
    print(errno.errorcode.get(e, str(e)))
PY
)
    case "$probe" in
        ok) ok "io_uring_setup probe: a ring was created" ;;
        ENOSYS) fail "io_uring_setup probe: ENOSYS: this kernel has no io_uring (or a seccomp filter hides it," \
            "e.g. Docker's default profile: run with a profile that allows io_uring_setup/enter/register)" ;;
        EPERM) fail "io_uring_setup probe: EPERM: io_uring is blocked (kernel.io_uring_disabled, a seccomp" \
            "filter such as Docker's default, or an LSM); allow it for corezk's user" ;;
        ENOMEM) fail "io_uring_setup probe: ENOMEM: RLIMIT_MEMLOCK too low even for a 4-entry ring" ;;
        *) fail "io_uring_setup probe failed: $probe" ;;
    esac
else
    warn "python3 not found: io_uring_setup probe skipped"
fi

# --- limits -------------------------------------------------------------------
# glommio locks memory for each executor's rings (>= 512 KiB each) and, by
# default, a 10 MiB io_memory buffer area per executor.
need_kib=$((cores * 512))
want_kib=$((cores * (10 * 1024 + 512)))
ml_soft=$(ulimit -S -l)
ml_hard=$(ulimit -H -l)
show_kib() { if [ "$1" = unlimited ]; then echo unlimited; else echo "$1 KiB"; fi; }
if [ "$ml_hard" != unlimited ] && [ "$ml_hard" -lt "$need_kib" ]; then
    fail "RLIMIT_MEMLOCK hard limit $(show_kib "$ml_hard") < $need_kib KiB needed for $cores executors" \
        "(512 KiB each): set LimitMEMLOCK=infinity (systemd) or memlock in /etc/security/limits.conf"
elif [ "$ml_soft" = unlimited ]; then
    ok "RLIMIT_MEMLOCK unlimited"
elif [ "$ml_soft" -ge "$want_kib" ]; then
    ok "RLIMIT_MEMLOCK $(show_kib "$ml_soft") (>= $want_kib KiB for $cores executors with 10 MiB io_memory)"
else
    warn "RLIMIT_MEMLOCK soft $(show_kib "$ml_soft"), hard $(show_kib "$ml_hard"): enough for $cores executors'" \
        "rings ($need_kib KiB) but below $want_kib KiB with the default 10 MiB io_memory each;" \
        "recommended: unlimited (LimitMEMLOCK=infinity)"
fi

nf_soft=$(ulimit -S -n)
nf_hard=$(ulimit -H -n)
if [ "$nf_hard" != unlimited ] && [ "$nf_hard" -lt 4096 ]; then
    fail "RLIMIT_NOFILE hard limit $nf_hard: at most a few thousand clients; set LimitNOFILE=1048576"
elif [ "$nf_soft" != unlimited ] && [ "$nf_soft" -lt 65536 ]; then
    warn "RLIMIT_NOFILE soft $nf_soft (hard $nf_hard): one descriptor per client connection;" \
        "recommended 1048576 (LimitNOFILE=)"
else
    ok "RLIMIT_NOFILE $nf_soft"
fi

# --- CPU frequency, THP, IRQs -------------------------------------------------
govs=$(cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor 2>/dev/null | sort | uniq -c | awk '{ printf "%s%s x%s", sep, $2, $1; sep=", " }')
if [ -z "$govs" ]; then
    info "CPU governor: no cpufreq interface (VM or container; the hypervisor decides)"
elif grep -qv performance < <(cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor); then
    warn "CPU governor: $govs; recommended: performance (cpupower frequency-set -g performance)"
else
    ok "CPU governor: $govs"
fi

thp=$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)
case "$thp" in
    *"[always]"*) warn "transparent huge pages: always ($thp): latency spikes from compaction;" \
        "recommended: madvise or never (transparent_hugepage=madvise)" ;;
    *"[madvise]"* | *"[never]"*) ok "transparent huge pages: $thp" ;;
    "") info "transparent huge pages: not available" ;;
    *) info "transparent huge pages: $thp" ;;
esac

if pgrep -x irqbalance >/dev/null 2>&1; then
    info "irqbalance is running: keep NIC IRQs off the shard CPUs (IRQBALANCE_BANNED_CPULIST, tuning/README.md)"
else
    info "irqbalance is not running: pin NIC IRQs by hand (tuning/README.md)"
fi

somaxconn=$(cat /proc/sys/net/core/somaxconn 2>/dev/null)
if [ -n "$somaxconn" ] && [ "$somaxconn" -lt 4096 ]; then
    warn "net.core.somaxconn = $somaxconn: connection storms overflow the accept queue; see tuning/sysctl.conf"
elif [ -n "$somaxconn" ]; then
    ok "net.core.somaxconn = $somaxconn"
fi

# --- disk ---------------------------------------------------------------------
# Nearest existing directory of a path that may not exist yet.
existing_dir() {
    local d=$1
    while [ ! -d "$d" ]; do
        if [ "$d" = / ] || [ "$d" = . ]; then break; fi
        d=$(dirname "$d")
    done
    echo "$d"
}

check_dir() { # check_dir LABEL PATH
    local label=$1 dir=$2 base avail fstype res
    base=$(existing_dir "$dir")
    avail=$(df -Pk "$base" 2>/dev/null | awk 'NR == 2 { print $4 }')
    fstype=$(df -PT "$base" 2>/dev/null | awk 'NR == 2 { print $2 }')
    if [ -z "$avail" ]; then
        fail "$label $dir: cannot stat its filesystem"
        return
    fi
    if [ "$avail" -lt $((100 * 1024)) ]; then
        fail "$label $dir: only $((avail / 1024)) MiB free on $base ($fstype)"
    elif [ "$avail" -lt $((2 * 1024 * 1024)) ]; then
        warn "$label $dir: $((avail / 1024)) MiB free on $base ($fstype): logs and snapshots need room"
    else
        ok "$label $dir: $((avail / 1024 / 1024)) GiB free on $base ($fstype)"
    fi
    if [ ! -w "$base" ]; then
        fail "$label $dir: $base is not writable by $(id -un)"
        return
    fi
    # The log is written with O_DIRECT and fdatasync: check that this filesystem takes it.
    if command -v python3 >/dev/null 2>&1; then
        res=$(python3 - "$base" <<'PY' 2>&1
import mmap, os, sys, time
path = os.path.join(sys.argv[1], ".corezk-host-check-%d" % os.getpid())
buf = mmap.mmap(-1, 4096)  # page aligned
buf.write(b"x" * 4096)
try:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    try:
        t = time.monotonic()
        os.write(fd, buf)
        os.fdatasync(fd)
        print("ok %.2f" % ((time.monotonic() - t) * 1000))
    finally:
        os.close(fd)
except OSError as e:
    print("error " + (e.strerror or str(e)))
finally:
    try:
        os.unlink(path)
    except OSError:
        pass
PY
)
        case "$res" in
            ok*) ok "$label $dir: O_DIRECT write + fdatasync work (one 4 KiB write: ${res#ok } ms)" ;;
            *) fail "$label $dir: O_DIRECT write failed on $fstype (${res#error }); the log needs a filesystem" \
                "that supports O_DIRECT (ext4, xfs)" ;;
        esac
    fi
}

check_dir "data dir" "$data_dir"
if [ -n "$log_dir" ] && [ "$log_dir" != "$data_dir" ]; then
    check_dir "log dir" "$log_dir"
fi

echo
if [ "$failures" -gt 0 ]; then
    echo "host-check: $failures hard failure(s), $warnings warning(s): corezk will not run as configured"
    exit 1
fi
echo "host-check: no hard failures, $warnings warning(s)"
