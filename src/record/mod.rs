//! The log record format: one committed batch = one record, the unit the log writes, followers
//! receive and shards read.
//!
//! A record is a fixed 64-byte header followed by the rkyv-archived transactions of the batch
//! (see `schema`), zero-padded to a multiple of `BLOCK` so a DMA writer never rewrites a block
//! holding an earlier record. All integers are little-endian.
//!
//! ```text
//! offset size field
//!   0     4   magic        b"CZKR"
//!   4     2   version      VERSION (2); bumped on any change to the header or the payload schema
//!   6     2   flags        0 (a reader rejects unknown bits)
//!   8     4   payload_len  bytes of rkyv archive after the header (excluding padding)
//!  12     4   payload_crc  CRC32C of the payload
//!  16     8   first_zxid   zxid of the first transaction (a batch without transactions, never
//!                          logged, has first_zxid = last_zxid + 1: its place in the history)
//!  24     8   last_zxid    zxid of the last transaction
//!  32     4   txn_count    number of transactions
//!  36     8   commit       version 2: every zxid up to this was committed when the batch was made
//!  44     4   answer_count version 2: client replies carried (for the nodes that took the requests)
//!  48    12   reserved     zero
//!  60     4   header_crc   CRC32C of bytes 0..60
//!  64     …   payload      rkyv archive of `schema::RBatch2` (version 1: `schema::RBatch`)
//!   …     …   padding      zeros up to the next multiple of BLOCK
//! ```
//!
//! A log segment is records back to back at BLOCK-aligned offsets from 0, followed by zeros
//! (preallocated space). An all-zero header is the clean end of the log. `scan` tells a torn
//! tail (cut off, with a reason) from corruption in the middle (an error: never silent loss).
//!
//! Pure: bytes in, values out. Bytes from disk or peers are always validated (CRC, then rkyv's
//! bytecheck); the archive is copied into an aligned buffer first when the input is not.

mod schema;
pub mod text;

pub use schema::{
    op_from_archived, txn_from_archived, ArchivedRBatch, ArchivedRBatch2, ArchivedRBody, ArchivedROp, ArchivedRTxn,
};

use crate::txn::{Answer, Txn, TxnBody, TxnOp};
use rkyv::rancor;
use std::fmt;
use std::fmt::Write as _;

/// The device block: every record starts at and is padded to a multiple of it.
pub const BLOCK: usize = 4096;
/// Size of the fixed record header; the payload starts right after it.
pub const HEADER: usize = 64;
/// Record magic.
pub const MAGIC: [u8; 4] = *b"CZKR";
/// Current record format version.
pub const VERSION: u16 = 2;
/// Alignment the rkyv payload is read at (the archive needs 8; rkyv's AlignedVec gives 16).
const PAYLOAD_ALIGN: usize = 16;

/// A parsed, checksum-verified record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub flags: u16,
    pub payload_len: u32,
    pub payload_crc: u32,
    pub first_zxid: i64,
    pub last_zxid: i64,
    pub txn_count: u32,
    pub commit: i64,
    pub answer_count: u32,
}

impl Header {
    /// Bytes the whole record occupies, padding included.
    pub fn record_len(&self) -> usize {
        padded(HEADER + self.payload_len as usize)
    }

    fn write(&self, out: &mut [u8]) {
        out[..HEADER].fill(0);
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&self.version.to_le_bytes());
        out[6..8].copy_from_slice(&self.flags.to_le_bytes());
        out[8..12].copy_from_slice(&self.payload_len.to_le_bytes());
        out[12..16].copy_from_slice(&self.payload_crc.to_le_bytes());
        out[16..24].copy_from_slice(&self.first_zxid.to_le_bytes());
        out[24..32].copy_from_slice(&self.last_zxid.to_le_bytes());
        out[32..36].copy_from_slice(&self.txn_count.to_le_bytes());
        out[36..44].copy_from_slice(&self.commit.to_le_bytes());
        out[44..48].copy_from_slice(&self.answer_count.to_le_bytes());
        let crc = crc32c::crc32c(&out[..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
    }
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub first_zxid: i64,
    pub last_zxid: i64,
    pub txns: Vec<Txn>,
    pub answers: Vec<Answer>,
    /// Every zxid up to this was committed when the batch was made (0 in version 1).
    pub commit: i64,
    /// Bytes the record occupies, padding included (a multiple of BLOCK).
    pub len: usize,
}

/// Why the bytes at an offset are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// An all-zero header (or no bytes at all): preallocated space, the clean end of a log.
    Empty,
    /// The first four bytes are not `CZKR`.
    BadMagic { found: [u8; 4] },
    /// A version or flag bits this build does not read.
    UnsupportedVersion { version: u16, flags: u16 },
    /// The buffer ends before the header or the padded record does.
    Truncated { needed: usize, available: usize },
    /// A CRC32C mismatch in the header or in the payload.
    BadChecksum { part: ChecksumPart, stored: u32, computed: u32 },
    /// The payload passed its checksum but is not a valid archive, or disagrees with the header.
    BadPayload(String),
    /// Only from `access`: the payload is not 16-byte aligned in memory, so it cannot be read in
    /// place (use `decode`, which copies).
    Misaligned,
}

/// Which part of a record a checksum covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumPart {
    Header,
    Payload,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Empty => write!(f, "empty (all-zero) record header"),
            RecordError::BadMagic { found } => write!(f, "bad record magic {found:02x?} (expected \"CZKR\")"),
            RecordError::UnsupportedVersion { version, flags } => {
                write!(f, "unsupported record version {version} flags {flags:#x} (this build reads 1 and {VERSION})")
            }
            RecordError::Truncated { needed, available } => {
                write!(f, "truncated record: needs {needed} bytes, {available} available")
            }
            RecordError::BadChecksum { part, stored, computed } => {
                write!(f, "record {part:?} checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
            RecordError::BadPayload(why) => write!(f, "invalid record payload: {why}"),
            RecordError::Misaligned => write!(f, "record payload is not 16-byte aligned in memory"),
        }
    }
}

impl std::error::Error for RecordError {}

/// The result of scanning a log segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The valid records, in log order (zxids strictly rising).
    pub records: Vec<Decoded>,
    /// Offset just after the last valid record: where the next record goes.
    pub end: usize,
    /// A bad last record with nothing valid after it, cut off.
    pub torn: Option<TornTail>,
}

/// A torn tail: a bad record with no valid record anywhere after it (a write cut by a crash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Where the bad record starts (== `Scan::end`).
    pub offset: usize,
    pub reason: RecordError,
    /// Bytes from `offset` up to the end of the last block holding any non-zero byte: what is
    /// discarded (zero these, or write over them, before trusting the space again).
    pub discarded_bytes: usize,
}

/// Corruption in the middle of a log: a startup error, never silently dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// Offset of the offending record in the scanned buffer.
    pub offset: usize,
    pub reason: CorruptionReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorruptionReason {
    /// A bad (or all-zero) record followed by a valid record at `next_valid`.
    BadRecord { error: RecordError, next_valid: usize },
    /// The record's first zxid does not exceed the previous record's last zxid.
    ZxidOrder { prev_last: i64, first: i64 },
}

impl fmt::Display for CorruptionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptionReason::BadRecord { error, next_valid } => {
                write!(f, "{error}; a valid record follows at offset {next_valid}")
            }
            CorruptionReason::ZxidOrder { prev_last, first } => {
                write!(f, "record starts at zxid {first:#x}, not after the previous record's {prev_last:#x}")
            }
        }
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "corrupt log record at offset {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for Corruption {}

fn padded(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

fn op_size(op: &TxnOp) -> usize {
    let acl = |a: &[crate::proto::Acl]| a.iter().map(|a| 24 + a.id.scheme.len() + a.id.id.len()).sum::<usize>();
    match op {
        TxnOp::Create { path, data, acl: a, .. } => 48 + path.len() + data.as_ref().map_or(0, |d| d.len()) + acl(a),
        TxnOp::SetData { path, data } => 40 + path.len() + data.as_ref().map_or(0, |d| d.len()),
        TxnOp::SetAcl { path, acl: a } => 40 + path.len() + acl(a),
        TxnOp::Delete { path } | TxnOp::Check { path } => 24 + path.len(),
    }
}

fn txn_size(t: &Txn) -> usize {
    48 + match &t.body {
        TxnBody::Ops { ops, .. } => ops.iter().map(op_size).sum(),
        TxnBody::MultiError { codes } => 4 * codes.len(),
        _ => 0,
    }
}

/// Encodes a batch of transactions alone as one record (see `encode_batch`).
pub fn encode(txns: &[Txn]) -> Vec<u8> {
    let at = txns.iter().find(|t| t.consumes_zxid()).map_or(0, |t| t.zxid - 1);
    encode_batch(txns, &[], at, 0)
}

/// Encodes a batch as one record: its transactions, the answers to the requests it settles,
/// and the commit point it was made at. The length is a multiple of `BLOCK`; the payload
/// starts at offset `HEADER` (64), so a copy placed at a 16-aligned address (any DMA buffer)
/// can be read in place with `access`. The returned `Vec`'s own start has only the
/// allocator's alignment.
///
/// `Barrier` transactions consume no zxid and are skipped; a batch with neither transactions
/// nor answers encodes to an empty `Vec` (nothing to write). A batch with answers only sits
/// after zxid `at`. Panics if the zxids do not strictly rise (a sequencer bug), or if the batch
/// exceeds 4 GiB.
pub fn encode_batch(txns: &[Txn], answers: &[Answer], at: i64, commit: i64) -> Vec<u8> {
    let batch = schema::RBatch2 {
        txns: txns.iter().filter_map(schema::to_mirror).collect(),
        passwords: schema::passwords_of(txns),
        answers: answers.iter().map(schema::answer_to_mirror).collect(),
    };
    if batch.txns.is_empty() && batch.answers.is_empty() {
        return Vec::new();
    }
    assert!(batch.txns.windows(2).all(|w| w[0].zxid < w[1].zxid), "record zxids must strictly rise");
    let (first_zxid, last_zxid) = match (batch.txns.first(), batch.txns.last()) {
        (Some(f), Some(l)) => (f.zxid, l.zxid),
        _ => (at + 1, at),
    };
    let estimate = HEADER
        + 64
        + txns.iter().map(txn_size).sum::<usize>()
        + answers.iter().map(|a| 48 + a.frame.len()).sum::<usize>();
    let mut buf = Vec::with_capacity(padded(estimate));
    buf.resize(HEADER, 0);
    // Positions are relative to the Vec's start; HEADER is a multiple of every alignment the
    // archive needs, so the archive is laid out exactly as if it started at offset 0.
    let mut buf = rkyv::api::high::to_bytes_in::<_, rancor::Error>(&batch, buf)
        .unwrap_or_else(|e| panic!("record serialization failed: {e}"));
    let payload_len = u32::try_from(buf.len() - HEADER).expect("record payload exceeds 4 GiB");
    let header = Header {
        version: VERSION,
        flags: 0,
        payload_len,
        payload_crc: crc32c::crc32c(&buf[HEADER..]),
        first_zxid,
        last_zxid,
        txn_count: batch.txns.len() as u32,
        commit,
        answer_count: batch.answers.len() as u32,
    };
    header.write(&mut buf);
    buf.resize(padded(buf.len()), 0);
    buf
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn le_i64(b: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses and verifies the header at the start of `buf` (magic, version, header CRC, and that
/// the padded record fits in `buf`). Does not look at the payload.
pub fn header(buf: &[u8]) -> Result<Header, RecordError> {
    let head = &buf[..buf.len().min(HEADER)];
    if head.iter().all(|&b| b == 0) {
        return Err(RecordError::Empty);
    }
    if buf.len() < HEADER {
        return Err(RecordError::Truncated { needed: HEADER, available: buf.len() });
    }
    if head[0..4] != MAGIC {
        return Err(RecordError::BadMagic { found: head[0..4].try_into().expect("4 bytes") });
    }
    let (version, flags) = (le_u16(head, 4), le_u16(head, 6));
    if !(1..=VERSION).contains(&version) || flags != 0 {
        return Err(RecordError::UnsupportedVersion { version, flags });
    }
    let stored = le_u32(head, 60);
    let computed = crc32c::crc32c(&head[..60]);
    if stored != computed {
        return Err(RecordError::BadChecksum { part: ChecksumPart::Header, stored, computed });
    }
    let h = Header {
        version,
        flags,
        payload_len: le_u32(head, 8),
        payload_crc: le_u32(head, 12),
        first_zxid: le_i64(head, 16),
        last_zxid: le_i64(head, 24),
        txn_count: le_u32(head, 32),
        commit: if version >= 2 { le_i64(head, 36) } else { 0 },
        answer_count: if version >= 2 { le_u32(head, 44) } else { 0 },
    };
    if h.payload_len == 0 || h.txn_count + h.answer_count.min(1) == 0 {
        return Err(RecordError::BadPayload(format!(
            "header claims {} payload bytes, {} transactions and {} answers",
            h.payload_len, h.txn_count, h.answer_count
        )));
    }
    let zxids_ok = if h.txn_count == 0 { h.first_zxid == h.last_zxid + 1 } else { h.first_zxid <= h.last_zxid };
    if !zxids_ok {
        return Err(RecordError::BadPayload(format!(
            "header zxids {:#x}..{:#x} for {} transactions",
            h.first_zxid, h.last_zxid, h.txn_count
        )));
    }
    if h.record_len() > buf.len() {
        return Err(RecordError::Truncated { needed: h.record_len(), available: buf.len() });
    }
    Ok(h)
}

/// Header checks plus the payload CRC: the payload bytes, not yet validated as an archive.
fn checked_payload(buf: &[u8]) -> Result<(Header, &[u8]), RecordError> {
    let h = header(buf)?;
    let payload = &buf[HEADER..HEADER + h.payload_len as usize];
    let computed = crc32c::crc32c(payload);
    if computed != h.payload_crc {
        return Err(RecordError::BadChecksum { part: ChecksumPart::Payload, stored: h.payload_crc, computed });
    }
    Ok((h, payload))
}

/// A validated payload of either version.
pub enum Payload<'a> {
    V1(&'a ArchivedRBatch),
    V2(&'a ArchivedRBatch2),
}

impl<'a> Payload<'a> {
    pub fn txns(&self) -> &'a rkyv::vec::ArchivedVec<ArchivedRTxn> {
        match self {
            Payload::V1(b) => &b.txns,
            Payload::V2(b) => &b.txns,
        }
    }
}

/// rkyv validation of aligned payload bytes, then agreement with the header.
fn validate<'a>(h: &Header, payload: &'a [u8]) -> Result<Payload<'a>, RecordError> {
    let bad = |e: rancor::Error| RecordError::BadPayload(format!("archive validation failed: {e}"));
    let batch = if h.version == 1 {
        Payload::V1(rkyv::access::<ArchivedRBatch, rancor::Error>(payload).map_err(bad)?)
    } else {
        let b = rkyv::access::<ArchivedRBatch2, rancor::Error>(payload).map_err(bad)?;
        if b.answers.len() != h.answer_count as usize {
            return Err(RecordError::BadPayload(format!(
                "header says {} answers, payload holds {}",
                h.answer_count,
                b.answers.len()
            )));
        }
        if let Some(a) = b.answers.iter().find(|a| a.kind > 3) {
            return Err(RecordError::BadPayload(format!("unknown answer kind {}", a.kind)));
        }
        Payload::V2(b)
    };
    let txns = batch.txns();
    if txns.len() != h.txn_count as usize {
        return Err(RecordError::BadPayload(format!(
            "header says {} transactions, payload holds {}",
            h.txn_count,
            txns.len()
        )));
    }
    if let (Some(first), Some(last)) = (txns.first(), txns.last()) {
        let (first, last) = (first.zxid.to_native(), last.zxid.to_native());
        if first != h.first_zxid || last != h.last_zxid {
            return Err(RecordError::BadPayload(format!(
                "header zxids {:#x}..{:#x} disagree with payload {first:#x}..{last:#x}",
                h.first_zxid, h.last_zxid
            )));
        }
    }
    if let Some(w) = txns.iter().zip(txns.iter().skip(1)).find(|(a, b)| a.zxid.to_native() >= b.zxid.to_native()) {
        return Err(RecordError::BadPayload(format!(
            "zxids do not rise inside the record: {:#x} then {:#x}",
            w.0.zxid.to_native(),
            w.1.zxid.to_native()
        )));
    }
    Ok(batch)
}

fn is_aligned(b: &[u8]) -> bool {
    (b.as_ptr() as usize).is_multiple_of(PAYLOAD_ALIGN)
}

/// Validates the record at the start of `buf` and returns its archived batch in place, without
/// copying. Fails with `Misaligned` unless the payload (at `buf + HEADER`) is 16-byte aligned
/// in memory.
pub fn access(buf: &[u8]) -> Result<(Header, Payload<'_>), RecordError> {
    let (h, payload) = checked_payload(buf)?;
    if !is_aligned(payload) {
        return Err(RecordError::Misaligned);
    }
    Ok((h, validate(&h, payload)?))
}

/// Fully validates the record at the start of `buf` without building its transactions
/// (checksums, archive, agreement with the header).
pub fn verify(buf: &[u8]) -> Result<Header, RecordError> {
    let (h, payload) = checked_payload(buf)?;
    if is_aligned(payload) {
        validate(&h, payload)?;
    } else {
        let mut v = rkyv::util::AlignedVec::<PAYLOAD_ALIGN>::with_capacity(payload.len());
        v.extend_from_slice(payload);
        validate(&h, &v)?;
    }
    Ok(h)
}

/// Decodes and fully validates the record at the start of `buf` (which may extend past it).
pub fn decode(buf: &[u8]) -> Result<Decoded, RecordError> {
    let (h, payload) = checked_payload(buf)?;
    let copy;
    let aligned: &[u8] = if is_aligned(payload) {
        payload
    } else {
        let mut v = rkyv::util::AlignedVec::<PAYLOAD_ALIGN>::with_capacity(payload.len());
        v.extend_from_slice(payload);
        copy = v;
        &copy
    };
    let (txns, answers) = match validate(&h, aligned)? {
        Payload::V1(b) => (b.txns.iter().map(|t| txn_from_archived(t, |_| [0; 16])).collect(), Vec::new()),
        Payload::V2(b) => {
            let passwd = |session: i64| {
                b.passwords.iter().find(|p| p.session.to_native() == session).map_or([0; 16], |p| p.passwd)
            };
            let txns = b.txns.iter().map(|t| txn_from_archived(t, passwd)).collect();
            (txns, b.answers.iter().filter_map(schema::answer_from_archived).collect())
        }
    };
    Ok(Decoded {
        first_zxid: h.first_zxid,
        last_zxid: h.last_zxid,
        txns,
        answers,
        commit: h.commit,
        len: h.record_len(),
    })
}

/// The first BLOCK-aligned offset after `from` where a valid record starts, if any.
fn next_valid(buf: &[u8], from: usize) -> Option<usize> {
    (from + BLOCK..buf.len()).step_by(BLOCK).find(|&at| buf[at..].starts_with(&MAGIC) && decode(&buf[at..]).is_ok())
}

/// Scans a whole log segment: records back to back at BLOCK-aligned offsets from 0. Stops
/// cleanly at an all-zero header or the end of `buf`; a bad record with no valid record at any
/// later BLOCK offset is a torn tail (reported, not an error); a bad record followed by a valid
/// one, or zxids that do not strictly rise, is `Corruption`. An all-zero header followed by a
/// valid record is corruption too (a lost write). Segments must therefore start zero-filled.
pub fn scan(buf: &[u8]) -> Result<Scan, Corruption> {
    let mut records: Vec<Decoded> = Vec::new();
    let mut off = 0;
    loop {
        if off >= buf.len() {
            return Ok(Scan { records, end: off, torn: None });
        }
        match decode(&buf[off..]) {
            Ok(d) => {
                if let Some(prev) = records.last() {
                    if d.first_zxid <= prev.last_zxid {
                        let reason = CorruptionReason::ZxidOrder { prev_last: prev.last_zxid, first: d.first_zxid };
                        return Err(Corruption { offset: off, reason });
                    }
                }
                off += d.len;
                records.push(d);
            }
            Err(error) => {
                if let Some(next_valid) = next_valid(buf, off) {
                    return Err(Corruption { offset: off, reason: CorruptionReason::BadRecord { error, next_valid } });
                }
                let torn = if error == RecordError::Empty {
                    None
                } else {
                    let last_nonzero = buf.iter().rposition(|&b| b != 0).unwrap_or(off);
                    let discarded_bytes = padded(last_nonzero + 1 - off).min(buf.len() - off);
                    Some(TornTail { offset: off, reason: error, discarded_bytes })
                };
                return Ok(Scan { records, end: off, torn });
            }
        }
    }
}

fn describe_op(out: &mut String, op: &TxnOp) {
    use text::{acl_string, data_string, owner_string};
    let _ = match op {
        TxnOp::Create { path, data, acl, owner } => write!(
            out,
            "create '{path}' data {} acl {} {}",
            data_string(data.as_deref()),
            acl_string(acl),
            owner_string(*owner)
        ),
        TxnOp::Delete { path } => write!(out, "delete '{path}'"),
        TxnOp::SetData { path, data } => write!(out, "setData '{path}' data {}", data_string(data.as_deref())),
        TxnOp::SetAcl { path, acl } => write!(out, "setACL '{path}' acl {}", acl_string(acl)),
        TxnOp::Check { path } => write!(out, "check '{path}'"),
    };
}

/// One line per transaction, like ZooKeeper's LogFormatter: time, session, zxid, type and
/// arguments.
pub fn describe(d: &Decoded) -> String {
    let mut out = String::new();
    for t in &d.txns {
        let _ = write!(out, "{} session 0x{:x} zxid 0x{:x} ", text::iso_ms(t.time), t.session, t.zxid);
        let _ = match &t.body {
            TxnBody::CreateSession { timeout, .. } => write!(out, "createSession timeout {timeout}"),
            TxnBody::CloseSession => write!(out, "closeSession"),
            TxnBody::Ops { ops, multi: false } if ops.len() == 1 => {
                describe_op(&mut out, &ops[0]);
                Ok(())
            }
            TxnBody::Ops { ops, .. } => {
                out.push_str("multi [");
                for (i, o) in ops.iter().enumerate() {
                    if i > 0 {
                        out.push_str("; ");
                    }
                    describe_op(&mut out, o);
                }
                write!(out, "]")
            }
            TxnBody::Error { code } => write!(out, "error {code}"),
            TxnBody::MultiError { codes } => write!(out, "multi error {codes:?}"),
            TxnBody::Barrier => write!(out, "barrier"),
        };
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
