//! Start-up checks that fail with a message saying what to change: the CPU set, locked memory
//! for io_uring, io_uring itself, and the data-directory lock.
//!
//! Runs once before any executor starts. Never retries and never silently degrades.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// The CPUs this process may run on (sched_getaffinity), in order.
pub fn allowed_cpus() -> Vec<usize> {
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return (0..std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).collect();
    }
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}

/// The CPUs the shards are pinned to: the first `cores` of the affinity mask (all by default).
pub fn cpus_for(cores: Option<usize>) -> Result<Vec<usize>, String> {
    let cpus = allowed_cpus();
    match cores {
        None => Ok(cpus),
        Some(n) if n <= cpus.len() => Ok(cpus[..n].to_vec()),
        Some(n) => Err(format!(
            "cores={n} but this process may only run on {} CPU(s) {cpus:?}: lower `cores` or widen the CPU affinity \
             (taskset / systemd CPUAffinity)",
            cpus.len()
        )),
    }
}

/// Makes sure RLIMIT_MEMLOCK covers the executors' io_uring memory, raising it where allowed.
pub fn ensure_memlock(executors: usize, per_executor: usize) -> Result<(), String> {
    // Registered buffers plus ring memory, with headroom.
    let need = (executors * per_executor + (1 << 20)) as u64;
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) };
    if r.rlim_cur == libc::RLIM_INFINITY || r.rlim_cur >= need {
        return Ok(());
    }
    for target in [
        libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY },
        libc::rlimit { rlim_cur: r.rlim_max, rlim_max: r.rlim_max },
    ] {
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &target) } == 0
            && (target.rlim_cur == libc::RLIM_INFINITY || target.rlim_cur >= need)
        {
            return Ok(());
        }
    }
    Err(format!(
        "locked-memory limit (RLIMIT_MEMLOCK) is {} KiB but {executors} shard(s) need {} KiB for io_uring: \
         run `ulimit -l unlimited` (or `ulimit -l {}`) before starting corezk, set LimitMEMLOCK=infinity in its \
         systemd unit, or lower `cores`",
        r.rlim_cur / 1024,
        need / 1024,
        need / 1024
    ))
}

/// Checks that io_uring can be set up, naming the real cause when it cannot.
pub fn probe_io_uring() -> Result<(), String> {
    match io_uring::IoUring::new(8) {
        Ok(ring) => {
            let mut probe = io_uring::Probe::new();
            if ring.submitter().register_probe(&mut probe).is_err() {
                return Err("io_uring is available but cannot be probed: kernel 5.8 or newer is required".into());
            }
            Ok(())
        }
        Err(e) => {
            let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").unwrap_or_default();
            let hint = match disabled.trim() {
                "1" | "2" => "io_uring is disabled by sysctl kernel.io_uring_disabled: set it to 0 \
                              (sysctl -w kernel.io_uring_disabled=0)"
                    .to_string(),
                _ if e.raw_os_error() == Some(libc::EPERM) || e.raw_os_error() == Some(libc::ENOSYS) => {
                    "io_uring is blocked for this process (a seccomp profile such as Docker's default blocks it): \
                     run with a profile that allows io_uring_setup/io_uring_enter/io_uring_register"
                        .to_string()
                }
                _ if e.raw_os_error() == Some(libc::ENOMEM) => {
                    "io_uring could not lock memory: raise RLIMIT_MEMLOCK (ulimit -l unlimited)".to_string()
                }
                _ => "corezk needs io_uring (Linux 5.8 or newer)".to_string(),
            };
            Err(format!("io_uring is unavailable ({e}): {hint}"))
        }
    }
}

/// An exclusive lock on the data directory, held for the life of the process.
pub struct DataDirLock {
    _file: File,
}

/// Creates the data directory and locks it so a second corezk cannot share it (or the port).
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create dataDir {}: {e}", dir.display()))?;
    let path = dir.join("corezk.lock");
    let file = File::create(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!(
            "dataDir {} is in use by another corezk process (lock {} is held): stop it or choose another dataDir",
            dir.display(),
            path.display()
        ));
    }
    Ok(DataDirLock { _file: file })
}
