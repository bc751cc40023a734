//! The snapshot file format: the whole tree and the session table at one zxid.
//!
//! A snapshot is a fixed 72-byte header followed by a body in a simple hand-written
//! little-endian encoding, written in one pass over the tree (so a million nodes need no
//! intermediate structures and each node is visited once).
//!
//! ```text
//! header                                   body
//!   0  4  magic           b"CZKS"            session_count sessions: i64 id, i32 timeout_ms,
//!   4  2  version         VERSION (2)          16 bytes passwd
//!   6  2  flags           0                  node_count nodes: str path, u32 acl index,
//!   8  4  body_crc        CRC32C of the body   i64 czxid, mzxid, ctime, mtime,
//!  12  4  acl_count                            i32 version, stored cversion, aversion,
//!  16  8  zxid            the tree's zxid      i64 owner, pzxid, i32 data length (-1: null),
//!  24  8  body_len                             data bytes
//!  32  8  node_count                         acl_count ACL lists (from body offset acl_offset):
//!  40  8  session_count                        u32 n, then n × (i32 perms, str scheme, str id)
//!                                          version 2, after the ACL lists: u32 n, then n × (u32
//!                                            epoch, i64 last zxid of that epoch), oldest first
//!  48  8  next_session_id
//!  56  8  acl_offset      body offset of the ACL lists
//!  64  4  reserved        0                  (str = u32 byte length + UTF-8 bytes)
//!  68  4  header_crc      CRC32C of bytes 0..68
//! ```
//!
//! ACL lists are stored once and referenced by index (nodes share them, as in ZooKeeper's ACL
//! cache); they follow the nodes because they are only known once every node has been seen, and
//! the decoder reads them first through `acl_offset`. Decoding shares one `Arc` per list again.
//! Bytes after the body must be zeros.
//!
//! Pure: bytes in, values out; every read is bounds-checked, so a corrupt or hostile file
//! yields an error, never a panic.

use crate::proto::{Acl, Id};
use crate::record::text;
use crate::tree::{Node, Path, Tree};
use bytes::Bytes;
use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;

/// Snapshot magic.
pub const MAGIC: [u8; 4] = *b"CZKS";
/// Current snapshot format version.
pub const VERSION: u16 = 2;
/// Size of the fixed header; the body follows it.
pub const HEADER: usize = 72;
/// Most bytes `encode` reserves up front (it grows past this when it must).
const MAX_PREALLOC: u64 = 1 << 30;
/// Bytes the header CRC covers.
const HEADER_CRC_AT: usize = 68;

/// A decoded snapshot.
#[derive(Clone)]
pub struct SnapshotData {
    /// The zxid the tree is at (every transaction up to it is included).
    pub zxid: i64,
    pub tree: Tree,
    /// `(id, timeout_ms, passwd)` of every session, in the order they were saved.
    pub sessions: Vec<(i64, i32, [u8; 16])>,
    /// The session table's next id, so ids are never reused.
    pub next_session_id: i64,
}

impl fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotData")
            .field("zxid", &self.zxid)
            .field("nodes", &self.tree.node_count())
            .field("sessions", &self.sessions.len())
            .field("next_session_id", &self.next_session_id)
            .finish()
    }
}

/// Which part of a snapshot a checksum covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumPart {
    Header,
    Body,
}

/// Why bytes are not a valid snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// The first four bytes are not `CZKS`.
    BadMagic { found: [u8; 4] },
    /// A version or flag bits this build does not read.
    UnsupportedVersion { version: u16, flags: u16 },
    /// The file ends before the header or the body does.
    Truncated { needed: u64, available: u64 },
    /// A CRC32C mismatch.
    BadChecksum { part: ChecksumPart, stored: u32, computed: u32 },
    /// The body passed its checksum but does not parse, disagrees with the header, or does not
    /// form a tree.
    BadPayload(String),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::BadMagic { found } => write!(f, "bad snapshot magic {found:02x?} (expected \"CZKS\")"),
            SnapshotError::UnsupportedVersion { version, flags } => write!(
                f,
                "unsupported snapshot version {version} flags {flags:#x} (this build reads version {VERSION})"
            ),
            SnapshotError::Truncated { needed, available } => {
                write!(f, "truncated snapshot: needs {needed} bytes, {available} available")
            }
            SnapshotError::BadChecksum { part, stored, computed } => {
                write!(f, "snapshot {part:?} checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
            SnapshotError::BadPayload(why) => write!(f, "invalid snapshot body: {why}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Encodes `tree` (at `tree.last_zxid()`) and the session table as a snapshot file.
/// `sessions` are `(id, timeout_ms, passwd)`; take them at the same zxid as the tree.
pub fn encode(tree: &Tree, sessions: &[(i64, i32, [u8; 16])], next_session_id: i64) -> Vec<u8> {
    // A preallocation hint only: capped, and robust to a nonsense data-size counter.
    let estimate = (tree.approximate_data_size().min(MAX_PREALLOC) as usize)
        .saturating_add(tree.node_count().saturating_mul(80))
        .saturating_add(sessions.len().saturating_mul(28))
        .min(MAX_PREALLOC as usize)
        + HEADER
        + 64;
    let mut out = Vec::with_capacity(estimate);
    out.resize(HEADER, 0);
    for (id, timeout, passwd) in sessions {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&timeout.to_le_bytes());
        out.extend_from_slice(passwd);
    }
    // ACL lists, deduplicated by pointer first (cheap) and by value second.
    let mut by_ptr: HashMap<usize, u32> = HashMap::new();
    let mut by_value: HashMap<&[Acl], u32> = HashMap::new();
    let mut acls: Vec<&[Acl]> = Vec::new();
    let mut nodes = 0u64;
    for (p, n) in tree.iter() {
        let acl = *by_ptr.entry(Arc::as_ptr(&n.acl) as usize).or_insert_with(|| {
            *by_value.entry(&n.acl[..]).or_insert_with(|| {
                acls.push(&n.acl[..]);
                (acls.len() - 1) as u32
            })
        });
        put_str(&mut out, p);
        out.extend_from_slice(&acl.to_le_bytes());
        for v in [n.czxid, n.mzxid, n.ctime, n.mtime] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [n.version, n.cversion, n.aversion] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&n.owner.to_le_bytes());
        out.extend_from_slice(&n.pzxid.to_le_bytes());
        match &n.data {
            Some(d) => {
                out.extend_from_slice(&i32::try_from(d.len()).expect("node data over 2 GiB").to_le_bytes());
                out.extend_from_slice(d);
            }
            None => out.extend_from_slice(&(-1i32).to_le_bytes()),
        }
        nodes += 1;
    }
    let acl_offset = (out.len() - HEADER) as u64;
    for list in &acls {
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for a in list.iter() {
            out.extend_from_slice(&a.perms.to_le_bytes());
            put_str(&mut out, &a.id.scheme);
            put_str(&mut out, &a.id.id);
        }
    }
    let epochs = tree.epochs();
    out.extend_from_slice(&(epochs.len() as u32).to_le_bytes());
    for (e, z) in epochs {
        out.extend_from_slice(&e.to_le_bytes());
        out.extend_from_slice(&z.to_le_bytes());
    }
    let body_len = (out.len() - HEADER) as u64;
    let body_crc = crc32c::crc32c(&out[HEADER..]);
    let h = &mut out[..HEADER];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&VERSION.to_le_bytes());
    h[6..8].copy_from_slice(&0u16.to_le_bytes());
    h[8..12].copy_from_slice(&body_crc.to_le_bytes());
    h[12..16].copy_from_slice(&(acls.len() as u32).to_le_bytes());
    h[16..24].copy_from_slice(&tree.last_zxid().to_le_bytes());
    h[24..32].copy_from_slice(&body_len.to_le_bytes());
    h[32..40].copy_from_slice(&nodes.to_le_bytes());
    h[40..48].copy_from_slice(&(sessions.len() as u64).to_le_bytes());
    h[48..56].copy_from_slice(&next_session_id.to_le_bytes());
    h[56..64].copy_from_slice(&acl_offset.to_le_bytes());
    let crc = crc32c::crc32c(&h[..HEADER_CRC_AT]);
    h[HEADER_CRC_AT..HEADER].copy_from_slice(&crc.to_le_bytes());
    out
}

/// A bounds-checked little-endian reader over the body.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], SnapshotError> {
        if self.buf.len() - self.pos < n {
            return Err(SnapshotError::BadPayload(format!(
                "{what} at body offset {} needs {n} bytes, {} left",
                self.pos,
                self.buf.len() - self.pos
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], SnapshotError> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }
    fn u32(&mut self, what: &str) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn i32(&mut self, what: &str) -> Result<i32, SnapshotError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }
    fn i64(&mut self, what: &str) -> Result<i64, SnapshotError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    fn str(&mut self, what: &str) -> Result<&'a str, SnapshotError> {
        let at = self.pos;
        let n = self.u32(what)? as usize;
        let b = self.take(n, what)?;
        std::str::from_utf8(b)
            .map_err(|_| SnapshotError::BadPayload(format!("{what} at body offset {at} is not UTF-8")))
    }
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes and fully validates a snapshot file (`buf` may carry zero padding after the body).
pub fn decode(buf: &[u8]) -> Result<SnapshotData, SnapshotError> {
    if buf.len() < HEADER {
        return Err(SnapshotError::Truncated { needed: HEADER as u64, available: buf.len() as u64 });
    }
    let h = &buf[..HEADER];
    if h[0..4] != MAGIC {
        return Err(SnapshotError::BadMagic { found: h[0..4].try_into().expect("4 bytes") });
    }
    let (version, flags) = (le_u16(h, 4), le_u16(h, 6));
    if !(1..=VERSION).contains(&version) || flags != 0 {
        return Err(SnapshotError::UnsupportedVersion { version, flags });
    }
    let (stored, computed) = (le_u32(h, HEADER_CRC_AT), crc32c::crc32c(&h[..HEADER_CRC_AT]));
    if stored != computed {
        return Err(SnapshotError::BadChecksum { part: ChecksumPart::Header, stored, computed });
    }
    let acl_count = le_u32(h, 12);
    let zxid = le_u64(h, 16) as i64;
    let body_len = le_u64(h, 24);
    let node_count = le_u64(h, 32);
    let session_count = le_u64(h, 40);
    let next_session_id = le_u64(h, 48) as i64;
    let acl_offset = le_u64(h, 56);
    let available = (buf.len() - HEADER) as u64;
    if body_len > available {
        return Err(SnapshotError::Truncated { needed: HEADER as u64 + body_len, available: buf.len() as u64 });
    }
    let body = &buf[HEADER..HEADER + body_len as usize];
    if buf[HEADER + body_len as usize..].iter().any(|&b| b != 0) {
        return Err(SnapshotError::BadPayload(format!("non-zero bytes after the {body_len}-byte body")));
    }
    let (stored, computed) = (le_u32(h, 8), crc32c::crc32c(body));
    if stored != computed {
        return Err(SnapshotError::BadChecksum { part: ChecksumPart::Body, stored, computed });
    }
    if acl_offset > body_len {
        return Err(SnapshotError::BadPayload(format!("ACL offset {acl_offset} beyond the {body_len}-byte body")));
    }
    // Counts come from a checksummed header, but cap preallocation by what the body can hold.
    let cap = |count: u64, min_size: u64| count.min(body_len / min_size) as usize;
    let mut r = Reader { buf: body, pos: acl_offset as usize };
    let mut acls: Vec<Arc<Vec<Acl>>> = Vec::with_capacity(cap(acl_count as u64, 4));
    for _ in 0..acl_count {
        let n = r.u32("ACL list length")?;
        let mut list = Vec::with_capacity(cap(n as u64, 12));
        for _ in 0..n {
            let perms = r.i32("ACL perms")?;
            let scheme = r.str("ACL scheme")?.to_owned();
            let id = r.str("ACL id")?.to_owned();
            list.push(Acl { perms, id: Id { scheme, id } });
        }
        acls.push(Arc::new(list));
    }
    let mut epochs = Vec::new();
    if version >= 2 {
        let n = r.u32("epoch count")?;
        for _ in 0..n.min((body_len / 12) as u32) {
            let e = r.u32("epoch")?;
            let z = r.i64("epoch last zxid")?;
            if epochs.last().is_some_and(|&(pe, pz)| pe >= e || pz >= z) || z > zxid {
                return Err(SnapshotError::BadPayload(format!("epoch map out of order at epoch {e}")));
            }
            epochs.push((e, z));
        }
    }
    if r.pos != body.len() {
        return Err(SnapshotError::BadPayload(format!(
            "{} unexplained bytes after the ACL lists at body offset {}",
            body.len() - r.pos,
            r.pos
        )));
    }
    let mut r = Reader { buf: &body[..acl_offset as usize], pos: 0 };
    let mut sessions = Vec::with_capacity(cap(session_count, 28));
    for _ in 0..session_count {
        sessions.push((r.i64("session id")?, r.i32("session timeout")?, r.array::<16>("session password")?));
    }
    let mut nodes: Vec<(Path, Node)> = Vec::with_capacity(cap(node_count, 69));
    for _ in 0..node_count {
        let path: Path = Arc::from(r.str("node path")?);
        let at = r.pos;
        let ai = r.u32("node ACL index")? as usize;
        let acl = acls.get(ai).cloned().ok_or_else(|| {
            SnapshotError::BadPayload(format!("node {path:?}: ACL index {ai} at body offset {at} out of range"))
        })?;
        let (czxid, mzxid, ctime, mtime) = (r.i64("czxid")?, r.i64("mzxid")?, r.i64("ctime")?, r.i64("mtime")?);
        let (version, cversion, aversion) = (r.i32("version")?, r.i32("cversion")?, r.i32("aversion")?);
        let (owner, pzxid) = (r.i64("owner")?, r.i64("pzxid")?);
        let len = r.i32("data length")?;
        let data = match len {
            -1 => None,
            n if n >= 0 => Some(Bytes::copy_from_slice(r.take(n as usize, "node data")?)),
            n => return Err(SnapshotError::BadPayload(format!("node {path:?}: data length {n}"))),
        };
        let node = Node::restore(data, acl, czxid, mzxid, ctime, mtime, version, cversion, aversion, owner, pzxid);
        nodes.push((path, node));
    }
    if r.pos != acl_offset as usize {
        return Err(SnapshotError::BadPayload(format!(
            "{} unexplained bytes after the nodes at body offset {}",
            acl_offset as usize - r.pos,
            r.pos
        )));
    }
    let mut tree = Tree::from_nodes(nodes, zxid).map_err(SnapshotError::BadPayload)?;
    tree.set_epochs(epochs);
    Ok(SnapshotData { zxid, tree, sessions, next_session_id })
}

/// A readable dump like ZooKeeper's SnapshotFormatter: every node (sorted by path) with its
/// stat, kind, ACL and data length, then every session with its ephemeral nodes.
pub fn describe(s: &SnapshotData) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Snapshot at zxid 0x{:x}: {} nodes, {} sessions, next session id 0x{:x}",
        s.zxid,
        s.tree.node_count(),
        s.sessions.len(),
        s.next_session_id
    );
    let mut paths: Vec<(&Path, &Arc<Node>)> = s.tree.iter().collect();
    paths.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let _ = writeln!(out, "ZNode Details (count={}):", paths.len());
    for (p, n) in paths {
        let st = n.stat();
        let _ = writeln!(out, "----\n{p}");
        let _ = writeln!(out, "  cZxid = 0x{:x}\n  ctime = {}", st.czxid, text::iso_ms(st.ctime));
        let _ = writeln!(out, "  mZxid = 0x{:x}\n  mtime = {}", st.mzxid, text::iso_ms(st.mtime));
        let _ = writeln!(out, "  pZxid = 0x{:x}\n  cversion = {}", st.pzxid, st.cversion);
        let _ = writeln!(out, "  dataVersion = {}\n  aclVersion = {}", st.version, st.aversion);
        let _ =
            writeln!(out, "  ephemeralOwner = 0x{:x}\n  kind = {}", st.ephemeral_owner, text::owner_string(n.owner));
        let _ = writeln!(out, "  numChildren = {}\n  dataLength = {}", st.num_children, st.data_length);
        let _ =
            writeln!(out, "  data = {}\n  acl = {}", text::data_string(n.data.as_deref()), text::acl_string(&n.acl));
    }
    let _ = writeln!(out, "----\nSession Details (sid, timeout, ephemeralCount):");
    for (id, timeout, _) in &s.sessions {
        let eph = s.tree.ephemerals_of(*id);
        let _ = writeln!(out, "0x{id:x}, {timeout}, {}", eph.len());
        for p in eph {
            let _ = writeln!(out, "  {p}");
        }
    }
    out
}

#[cfg(test)]
mod tests;
