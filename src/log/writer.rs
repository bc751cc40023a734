//! The log writer: a thread of its own that appends records to preallocated segment files and
//! makes each durable (write + fdatasync) before it answers; it also truncates the log, installs
//! a leader's snapshot in place of the whole log, and stores the ZAB epochs, in the order asked.
//!
//! Owns segment files, preallocation, the write and sync of each record and their timing.
//! Never runs on a shard's executor and never leaves the completion of a write to kernel work
//! tied to a shard's CPU: every write and sync is a synchronous system call completed in this
//! thread's own context (an io_uring O_DIRECT write completes through a per-CPU kernel worker
//! that a busy shard can starve for seconds). Never interprets a record.

use crate::record;
use crate::runtime::oneshot;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One durable operation for the writer thread. At most a few are in flight: the commit core
/// waits for each before it sends the next (group commit gathers the next appends meanwhile).
#[derive(Clone)]
pub enum Op {
    /// Append records (whole blocks, back to back); `roll`: start a new segment first.
    Append { records: Vec<u8>, first_zxid: i64, roll: bool },
    /// Drop every record after `after`.
    Truncate { after: i64 },
    /// Replace the whole history by this snapshot (a leader's committed state).
    Snapshot { zxid: i64, bytes: bytes::Bytes },
    /// Store the ZAB epochs.
    Epochs { accepted: u32, leader: u32, current: u32 },
}

struct Job {
    op: Work,
    done: oneshot::Sender<io::Result<Duration>>,
}

enum Work {
    Append { block: Block, first_zxid: i64, roll: bool },
    Other(Op),
}

/// Jobs queued to the writer thread at most (one in flight, one spare).
const JOBS_MAX: usize = 2;

/// A block-aligned copy of a record, as O_DIRECT writes need.
struct Block {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// The block is owned memory handed from one thread to the other.
unsafe impl Send for Block {}

impl Block {
    fn layout(len: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(len, record::BLOCK).expect("a valid block layout")
    }

    fn copy_of(bytes: &[u8]) -> Block {
        assert!(!bytes.is_empty() && bytes.len().is_multiple_of(record::BLOCK), "records are whole blocks");
        let ptr = unsafe { std::alloc::alloc(Self::layout(bytes.len())) };
        let ptr =
            std::ptr::NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(Self::layout(bytes.len())));
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len()) };
        Block { ptr, len: bytes.len() }
    }

    fn bytes(&self) -> &[u8] {
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.len)) };
    }
}

/// The handle the commit core holds; dropping it stops the thread.
pub struct LogThread {
    jobs: Option<crossbeam::channel::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogThread {
    /// Starts the writer thread. It inherits the calling thread's CPU affinity: start it from a
    /// thread that is not pinned to a shard's CPU. `dirs`: the data directory (snapshots,
    /// epochs) and the log directory.
    pub fn start(dirs: super::Dirs, segment_bytes: u64, force_sync: bool) -> io::Result<LogThread> {
        let (tx, rx) = crossbeam::channel::bounded::<Job>(JOBS_MAX);
        let mut segments = Segments::new(dirs.log.clone(), segment_bytes, force_sync);
        let thread = std::thread::Builder::new().name("log-writer".into()).spawn(move || {
            while let Ok(job) = rx.recv() {
                let t0 = Instant::now();
                let r = match job.op {
                    Work::Append { block, first_zxid, roll } => segments.append(block.bytes(), first_zxid, roll),
                    Work::Other(Op::Truncate { after }) => segments.truncate(after),
                    Work::Other(Op::Snapshot { zxid, bytes }) => segments.replace_by_snapshot(&dirs, zxid, &bytes),
                    Work::Other(Op::Epochs { accepted, leader, current }) => {
                        super::store_epochs(&dirs.data, accepted, leader, current)
                    }
                    Work::Other(Op::Append { .. }) => unreachable!("appends travel as blocks"),
                };
                job.done.send(r.map(|()| t0.elapsed()));
            }
        })?;
        Ok(LogThread { jobs: Some(tx), thread: Some(thread) })
    }

    /// Queues one operation and returns the future of its durability: the time it took, or the
    /// error.
    pub fn submit(&self, op: &Op) -> oneshot::Receiver<io::Result<Duration>> {
        let (done, result) = oneshot::channel();
        let op = match op {
            Op::Append { records, first_zxid, roll } => {
                Work::Append { block: Block::copy_of(records), first_zxid: *first_zxid, roll: *roll }
            }
            other => Work::Other(other.clone()),
        };
        let jobs = self.jobs.as_ref().expect("the writer is running");
        // Never blocks: the caller waits for each operation before the next, so there is room.
        if let Err(e) = jobs.try_send(Job { op, done }) {
            e.into_inner().done.send(Err(io::Error::other("the log writer thread is gone or its queue is full")));
        }
        result
    }

    /// Queues one append of whole-block records (see `submit`).
    pub fn append(&self, rec: &[u8], first_zxid: i64, roll: bool) -> oneshot::Receiver<io::Result<Duration>> {
        self.submit(&Op::Append { records: rec.to_vec(), first_zxid, roll })
    }
}

impl Drop for LogThread {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The open segment and where the next record goes.
struct Segments {
    dir: PathBuf,
    file: Option<File>,
    offset: u64,
    segment_bytes: u64,
    force_sync: bool,
}

impl Segments {
    fn new(dir: PathBuf, segment_bytes: u64, force_sync: bool) -> Segments {
        Segments { dir, file: None, offset: 0, segment_bytes, force_sync }
    }

    /// Opens a new preallocated segment named after its first zxid.
    fn roll(&mut self, first_zxid: i64, min_len: u64) -> io::Result<()> {
        self.file = None;
        let path = self.dir.join(super::file_name(super::LOG_PREFIX, first_zxid));
        let f = open_direct(&path)?;
        let size = self.segment_bytes.max(min_len);
        // Preallocated blocks make each fdatasync cheaper (no block allocation per write).
        let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, size as libc::off_t) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            drop(f);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        super::sync_dir(&self.dir)?;
        self.file = Some(f);
        self.offset = 0;
        Ok(())
    }

    /// Drops every record after `after`: cuts the segment holding the first later record at its
    /// offset and deletes the segments after it. The next append opens a new segment.
    fn truncate(&mut self, after: i64) -> io::Result<()> {
        self.file = None;
        for (_, path) in super::list(&self.dir, super::LOG_PREFIX).into_iter().rev() {
            let bytes = std::fs::read(&path)?;
            let scan = record::scan(&bytes).map_err(|c| io::Error::other(c.to_string()))?;
            let mut off = 0u64;
            let mut cut = None;
            for r in &scan.records {
                if r.last_zxid > after {
                    cut = Some(off);
                    break;
                }
                off += r.len as u64;
            }
            match cut {
                None => break,
                Some(0) => std::fs::remove_file(&path)?,
                Some(at) => {
                    let f = std::fs::OpenOptions::new().write(true).open(&path)?;
                    f.set_len(at)?;
                    f.sync_all()?;
                    break;
                }
            }
        }
        super::sync_dir(&self.dir)
    }

    /// Installs a leader's snapshot: written durably, then every log segment (older records are
    /// in it, later ones are the leader's to send again) and every snapshot past it removed.
    fn replace_by_snapshot(&mut self, dirs: &super::Dirs, zxid: i64, bytes: &[u8]) -> io::Result<()> {
        self.file = None;
        let path = dirs.data.join(super::file_name(super::SNAP_PREFIX, zxid));
        super::write_durably(&path, bytes)?;
        for (z, p) in super::list(&dirs.data, super::SNAP_PREFIX) {
            if z > zxid {
                std::fs::remove_file(p)?;
            }
        }
        for (_, p) in super::list(&self.dir, super::LOG_PREFIX) {
            std::fs::remove_file(p)?;
        }
        super::sync_dir(&self.dir)?;
        super::sync_dir(&dirs.data)
    }

    fn append(&mut self, rec: &[u8], first_zxid: i64, roll: bool) -> io::Result<()> {
        let len = rec.len() as u64;
        if roll || self.file.is_none() || self.offset + len > self.segment_bytes.max(len) {
            self.roll(first_zxid, len)?;
        }
        let f = self.file.as_ref().expect("a segment is open");
        f.write_all_at(rec, self.offset)?;
        if self.force_sync {
            f.sync_data()?;
        }
        self.offset += len;
        debug_assert!(self.offset.is_multiple_of(record::BLOCK as u64));
        Ok(())
    }
}

/// Opens a new segment for direct I/O where the filesystem supports it (tmpfs does not: it
/// then falls back to buffered writes, still made durable by fdatasync).
fn open_direct(path: &std::path::Path) -> io::Result<File> {
    let open = |flags| std::fs::OpenOptions::new().write(true).create_new(true).custom_flags(flags).open(path);
    match open(libc::O_DIRECT) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let _ = std::fs::remove_file(path);
            open(0)
        }
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_land_in_segments_in_order() {
        let dir = std::env::temp_dir().join(format!("corezk-writer-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = Segments::new(dir.clone(), 3 * record::BLOCK as u64, true);
        let rec = |b: u8| Block::copy_of(&vec![b; record::BLOCK]);
        s.append(rec(1).bytes(), 1, false).unwrap();
        s.append(rec(2).bytes(), 2, false).unwrap();
        s.append(rec(3).bytes(), 3, true).unwrap();
        s.append(rec(4).bytes(), 4, false).unwrap();
        let files = super::super::list(&dir, super::super::LOG_PREFIX);
        assert_eq!(files.iter().map(|f| f.0).collect::<Vec<_>>(), vec![1, 3]);
        let first = std::fs::read(&files[0].1).unwrap();
        assert_eq!(first.len(), 3 * record::BLOCK, "preallocated");
        assert_eq!((first[0], first[record::BLOCK], first[2 * record::BLOCK]), (1, 2, 0));
        let second = std::fs::read(&files[1].1).unwrap();
        assert_eq!((second[0], second[record::BLOCK]), (3, 4));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
