//! The durable log and snapshots on disk: segment files (appended by the writer thread in
//! `writer`), recovery at start-up, background snapshots and retention.
//!
//! Owns file names, preallocation, fdatasync and the recovery procedure. The record and
//! snapshot byte formats belong to `record` and `snapshot`; this module never interprets a
//! transaction beyond replaying it into the tree and session list.

pub mod writer;

use crate::node::recovery::Recovered;
use crate::record;
use crate::snapshot;
use crate::zab::{self, Batch};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const LOG_PREFIX: &str = "log.";
pub const SNAP_PREFIX: &str = "snapshot.";

/// Where the log and the snapshots live (the same directory unless dataLogDir is set).
#[derive(Debug, Clone)]
pub struct Dirs {
    pub data: PathBuf,
    pub log: PathBuf,
}

pub fn file_name(prefix: &str, zxid: i64) -> String {
    format!("{prefix}{zxid:016x}")
}

/// Files named `<prefix><hex zxid>` in `dir`, sorted by zxid.
pub fn list(dir: &Path, prefix: &str) -> Vec<(i64, PathBuf)> {
    let mut v: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let hex = name.strip_prefix(prefix)?;
                    let z = u64::from_str_radix(hex, 16).ok()? as i64;
                    Some((z, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The server secret session passwords derive from, created on first start.
pub fn load_secret(data: &Path) -> Result<[u8; 16], String> {
    let p = data.join("corezk.secret");
    match std::fs::read(&p) {
        Ok(b) if b.len() == 16 => {
            let mut s = [0u8; 16];
            s.copy_from_slice(&b);
            Ok(s)
        }
        Ok(_) => {
            Err(format!("{} is damaged (expected 16 bytes): remove it only if no session must survive", p.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut s = [0u8; 16];
            getrandom::getrandom(&mut s).map_err(|e| format!("no randomness for the server secret: {e}"))?;
            write_durably(&p, &s).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            Ok(s)
        }
        Err(e) => Err(format!("cannot read {}: {e}", p.display())),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Writes a file atomically: temporary name, fsync, rename, fsync of the directory.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Rebuilds the state from the newest valid snapshot plus the log records after it, up to the
/// last zxid known committed (`node::recovery::rebuild`). A torn last record is cut off (noted);
/// corruption anywhere else is an error naming file and offset. `secret` derives passwords of
/// sessions that version 1 records created. `history_bytes`: applied records kept for DIFF.
pub fn recover(dirs: &Dirs, secret: &[u8; 16], history_bytes: usize) -> Result<Recovered, String> {
    let mut notes = Vec::new();
    let snaps = list(&dirs.data, SNAP_PREFIX);
    let mut base: Option<snapshot::SnapshotData> = None;
    let mut bad_snaps = Vec::new();
    for (_, p) in snaps.iter().rev() {
        let bytes = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        match snapshot::decode(&bytes) {
            Ok(s) => {
                notes.push(format!("loaded snapshot {} at zxid 0x{:x}", p.display(), s.zxid));
                base = Some(s);
                break;
            }
            Err(e) => {
                notes.push(format!("snapshot {} is corrupt ({e:?}); trying an older one", p.display()));
                bad_snaps.push(format!("{}: {e:?}", p.display()));
            }
        }
    }
    let snapshot_zxid = base.as_ref().map_or(0, |s| s.zxid);
    let logs = list(&dirs.log, LOG_PREFIX);
    if snapshot_zxid == 0 && !bad_snaps.is_empty() {
        let starts_at_one = logs.first().is_some_and(|(z, _)| *z & 0xffff_ffff <= 1);
        if !starts_at_one {
            return Err(format!(
                "no valid snapshot and the log does not reach back to the start: {}",
                bad_snaps.join("; ")
            ));
        }
    }
    // Every record after the snapshot, in order, checked for gaps.
    let mut after: Vec<(Arc<Batch>, record::Decoded)> = Vec::new();
    let mut last = snapshot_zxid;
    for (i, (_, p)) in logs.iter().enumerate() {
        let bytes = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        let scan = record::scan(&bytes).map_err(|c| {
            format!("{}: corrupt log record at offset {} ({}); refusing to start", p.display(), c.offset, c.reason)
        })?;
        let mut off = 0;
        for rec in scan.records {
            let raw = bytes::Bytes::copy_from_slice(&bytes[off..off + rec.len]);
            off += rec.len;
            if rec.last_zxid <= last {
                continue;
            }
            if rec.first_zxid <= last || !zab::follows(last, rec.first_zxid) {
                return Err(format!(
                    "log gap: the history ends at zxid 0x{last:x} but {} continues at 0x{:x} (a log segment is \
                     missing?)",
                    p.display(),
                    rec.first_zxid
                ));
            }
            last = rec.last_zxid;
            after.push((Arc::new(Batch { first: rec.first_zxid, last: rec.last_zxid, bytes: raw }), rec));
        }
        if let Some(t) = &scan.torn {
            if i + 1 != logs.len() {
                return Err(format!(
                    "{}: damaged record at offset {} ({}) in a segment that is not the last; refusing to start",
                    p.display(),
                    t.offset,
                    t.reason
                ));
            }
            notes.push(format!(
                "{}: discarded a torn record at offset {} ({}, {} bytes): it was never acknowledged",
                p.display(),
                t.offset,
                t.reason,
                t.discarded_bytes
            ));
            let f = std::fs::OpenOptions::new().write(true).open(p).map_err(|e| format!("{}: {e}", p.display()))?;
            f.set_len(scan.end as u64).and_then(|_| f.sync_all()).map_err(|e| format!("{}: {e}", p.display()))?;
        }
    }
    if snapshot_zxid > 0 && after.is_empty() && logs.is_empty() {
        notes.push("no log segments after the snapshot".into());
    }
    let mut r = crate::node::recovery::rebuild(base, after, secret, history_bytes);
    notes.append(&mut r.notes);
    r.notes = notes;
    Ok(r)
}

/// The durable ZAB epochs: (accepted epoch, the leader it was accepted from, current epoch).
pub fn load_epochs(data: &Path) -> Result<Option<(u32, u32, u32)>, String> {
    let p = data.join(EPOCHS_FILE);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
    };
    let mut v = [None, None, None];
    for line in text.lines() {
        let (k, val) = line.split_once('=').ok_or_else(|| format!("{}: bad line {line:?}", p.display()))?;
        let n: u32 = val.trim().parse().map_err(|_| format!("{}: bad value in {line:?}", p.display()))?;
        match k.trim() {
            "acceptedEpoch" => v[0] = Some(n),
            "acceptedLeader" => v[1] = Some(n),
            "currentEpoch" => v[2] = Some(n),
            _ => return Err(format!("{}: unknown key in {line:?}", p.display())),
        }
    }
    match v {
        [Some(a), Some(l), Some(c)] if c <= a => Ok(Some((a, l, c))),
        _ => Err(format!("{} is incomplete or inconsistent: {text:?}", p.display())),
    }
}

/// Writes the epochs durably (atomic replace).
pub fn store_epochs(data: &Path, accepted: u32, leader: u32, current: u32) -> std::io::Result<()> {
    let text = format!("acceptedEpoch={accepted}\nacceptedLeader={leader}\ncurrentEpoch={current}\n");
    write_durably(&data.join(EPOCHS_FILE), text.as_bytes())
}

pub const EPOCHS_FILE: &str = "corezk.epochs";

/// Writes a snapshot file and purges what the retention setting no longer needs. Runs on a
/// background thread; errors are reported, never fatal (the log still holds everything).
pub fn write_snapshot(dirs: &Dirs, zxid: i64, bytes: &[u8], retain: usize) -> Result<PathBuf, String> {
    let path = dirs.data.join(file_name(SNAP_PREFIX, zxid));
    write_durably(&path, bytes).map_err(|e| format!("cannot write snapshot {}: {e}", path.display()))?;
    purge(dirs, retain.max(1));
    Ok(path)
}

/// Keeps the newest `retain` snapshots and the log segments needed to replay after the oldest
/// of them; deletes the rest.
pub fn purge(dirs: &Dirs, retain: usize) {
    let snaps = list(&dirs.data, SNAP_PREFIX);
    if snaps.len() < retain {
        return;
    }
    let keep_from = snaps[snaps.len() - retain].0;
    for (_, p) in &snaps[..snaps.len() - retain] {
        let _ = std::fs::remove_file(p);
    }
    let logs = list(&dirs.log, LOG_PREFIX);
    for w in logs.windows(2) {
        // Segment w[0] holds zxids below w[1]'s first: not needed if all are <= keep_from.
        if w[1].0 <= keep_from + 1 {
            let _ = std::fs::remove_file(&w[0].1);
        }
    }
}
