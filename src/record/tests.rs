//! Unit tests of the record format: round trips of every transaction type, each error kind,
//! in-place access, segment scans (clean end, torn tail, corruption) and the dump text.

use super::*;
use crate::proto::codes::{err, perm, CONTAINER_OWNER, TTL_MARKER};
use crate::proto::{Acl, Id};
use bytes::Bytes;
use std::sync::Arc;

fn acl() -> Arc<Vec<Acl>> {
    Arc::new(vec![
        Acl::world(perm::ALL),
        Acl { perms: perm::READ, id: Id { scheme: "digest".into(), id: "bob:abcdefghijklmnopqrstuvwxyz0=".into() } },
    ])
}

fn create(path: &str, data: Option<&[u8]>, owner: i64) -> TxnOp {
    TxnOp::Create { path: path.into(), data: data.map(Bytes::copy_from_slice), acl: acl(), owner }
}

fn ops(zxid: i64, ops: Vec<TxnOp>, multi: bool) -> Txn {
    Txn { zxid, time: 1_700_000_000_000 + zxid, session: 0x1234, body: TxnBody::Ops { ops, multi } }
}

/// One transaction of every kind (and every create mode), zxids 1..
fn every_kind() -> Vec<Txn> {
    let body = |zxid: i64, body: TxnBody| Txn { zxid, time: 1_700_000_000_000, session: 0x55, body };
    let long_path: String = format!("/{}", "x".repeat(300));
    vec![
        body(1, TxnBody::CreateSession { timeout: 30_000, passwd: [7; 16] }),
        ops(2, vec![create("/p", Some(b"persistent"), 0)], false),
        ops(3, vec![create("/e", Some(b""), 0x55)], false),
        ops(4, vec![create("/s0000000001", None, 0)], false),
        ops(5, vec![create("/c", Some(b"c"), CONTAINER_OWNER)], false),
        ops(6, vec![create("/t", Some(&[0u8; 1000]), TTL_MARKER | 60_000)], false),
        ops(7, vec![create(&long_path, Some(&[7u8; 5000]), 0)], false),
        ops(8, vec![TxnOp::SetData { path: "/p".into(), data: None }], false),
        ops(9, vec![TxnOp::SetData { path: "/p".into(), data: Some(Bytes::new()) }], false),
        ops(10, vec![TxnOp::SetAcl { path: "/p".into(), acl: Arc::new(vec![]) }], false),
        ops(11, vec![TxnOp::SetAcl { path: "/p".into(), acl: acl() }], false),
        ops(12, vec![TxnOp::Delete { path: "/s0000000001".into() }], false),
        ops(
            13,
            vec![
                TxnOp::Check { path: "/p".into() },
                create("/p/m", Some(b"m"), 0),
                TxnOp::SetData { path: "/p/m".into(), data: Some(Bytes::from_static(b"mm")) },
                TxnOp::Delete { path: "/p/m".into() },
            ],
            true,
        ),
        ops(14, vec![], true),
        body(15, TxnBody::Error { code: err::NO_NODE }),
        body(16, TxnBody::MultiError { codes: vec![0, err::BAD_VERSION, err::RUNTIME_INCONSISTENCY] }),
        body(17, TxnBody::CloseSession),
    ]
}

/// A buffer whose data starts at a 16-aligned address (plus `shift` bytes).
fn at_alignment(bytes: &[u8], shift: usize) -> (rkyv::util::AlignedVec<16>, usize) {
    let mut v = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len() + shift);
    v.extend_from_slice(&vec![0u8; shift]);
    v.extend_from_slice(bytes);
    (v, shift)
}

#[test]
fn every_txn_kind_round_trips() {
    let txns = every_kind();
    let rec = encode(&txns);
    assert_eq!(rec.len() % BLOCK, 0);
    assert!(rec.len() >= 2 * BLOCK, "the 5000-byte value spills into a second block");
    let d = decode(&rec).unwrap();
    assert_eq!(d.txns, txns);
    assert_eq!((d.first_zxid, d.last_zxid, d.len), (1, 17, rec.len()));
    // Null and empty data stay distinct.
    assert!(matches!(&d.txns[7].body, TxnBody::Ops { ops, .. }
        if matches!(&ops[0], TxnOp::SetData { data: None, .. })));
    assert!(matches!(&d.txns[8].body, TxnBody::Ops { ops, .. }
        if matches!(&ops[0], TxnOp::SetData { data: Some(b), .. } if b.is_empty())));
    let h = header(&rec).unwrap();
    assert_eq!((h.version, h.flags, h.txn_count), (VERSION, 0, 17));
    assert_eq!(h.record_len(), rec.len());
    assert!(rec[HEADER + h.payload_len as usize..].iter().all(|&b| b == 0), "padding is zeros");
}

#[test]
fn decode_at_any_alignment_and_with_trailing_bytes() {
    let txns = every_kind();
    let rec = encode(&txns);
    for shift in [0, 1, 4, 8, 13] {
        let (v, s) = at_alignment(&rec, shift);
        let mut longer = v[s..].to_vec();
        longer.extend_from_slice(&[0xAB; 100]);
        assert_eq!(decode(&v[s..]).unwrap().txns, txns, "shift {shift}");
        assert_eq!(decode(&longer).unwrap().len, rec.len());
    }
}

#[test]
fn access_in_place_needs_alignment() {
    let txns = every_kind();
    let rec = encode(&txns);
    let (v, _) = at_alignment(&rec, 0);
    let (h, batch) = access(&v).unwrap();
    assert_eq!(h.txn_count as usize, batch.txns().len());
    let back: Vec<Txn> = batch.txns().iter().map(|t| txn_from_archived(t, |_| [7; 16])).collect();
    assert_eq!(back, txns);
    let (v, s) = at_alignment(&rec, 8);
    assert_eq!(access(&v[s..]).err(), Some(RecordError::Misaligned));
}

#[test]
fn barriers_are_not_logged() {
    let barrier = |zxid| Txn { zxid, time: 0, session: 1, body: TxnBody::Barrier };
    assert!(encode(&[]).is_empty());
    assert!(encode(&[barrier(0), barrier(0)]).is_empty());
    let real = ops(5, vec![TxnOp::Delete { path: "/a".into() }], false);
    let rec = encode(&[barrier(4), real.clone(), barrier(5)]);
    assert_eq!(decode(&rec).unwrap().txns, vec![real]);
}

#[test]
#[should_panic(expected = "strictly rise")]
fn encode_rejects_falling_zxids() {
    let t = ops(5, vec![TxnOp::Delete { path: "/a".into() }], false);
    encode(&[t.clone(), t]);
}

/// Rewrites the header CRC after a deliberate header edit.
fn reseal_header(rec: &mut [u8]) {
    let crc = crc32c::crc32c(&rec[..60]);
    rec[60..64].copy_from_slice(&crc.to_le_bytes());
}

/// Replaces the payload of `rec` (header fields resealed) with `payload`.
fn with_payload(rec: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = rec[..HEADER].to_vec();
    out.extend_from_slice(payload);
    out[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    out[12..16].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    reseal_header(&mut out);
    out.resize(padded(out.len()), 0);
    out
}

#[test]
fn each_error_kind() {
    let rec = encode(&every_kind());
    assert_eq!(decode(&[]), Err(RecordError::Empty));
    assert_eq!(decode(&[0; 10]), Err(RecordError::Empty));
    assert_eq!(decode(&[0; BLOCK]), Err(RecordError::Empty));
    assert!(matches!(decode(&rec[..10]), Err(RecordError::Truncated { needed: HEADER, available: 10 })));
    let cut = rec.len() - 1;
    assert_eq!(decode(&rec[..cut]), Err(RecordError::Truncated { needed: rec.len(), available: cut }));

    let mut bad = rec.clone();
    bad[0] = b'X';
    assert_eq!(decode(&bad), Err(RecordError::BadMagic { found: *b"XZKR" }));

    let mut bad = rec.clone();
    bad[4] = 3;
    reseal_header(&mut bad);
    assert_eq!(decode(&bad), Err(RecordError::UnsupportedVersion { version: 3, flags: 0 }));
    let mut bad = rec.clone();
    bad[6] = 1;
    assert_eq!(decode(&bad), Err(RecordError::UnsupportedVersion { version: 2, flags: 1 }));

    let mut bad = rec.clone();
    bad[20] ^= 1; // first_zxid
    assert!(matches!(decode(&bad), Err(RecordError::BadChecksum { part: ChecksumPart::Header, .. })));

    let mut bad = rec.clone();
    bad[HEADER + 100] ^= 0x40;
    assert!(matches!(decode(&bad), Err(RecordError::BadChecksum { part: ChecksumPart::Payload, .. })));

    // A payload with a good checksum that is not a valid archive.
    let h = header(&rec).unwrap();
    let garbage: Vec<u8> = (0..h.payload_len).map(|i| (i * 7 + 3) as u8).collect();
    assert!(matches!(decode(&with_payload(&rec, &garbage)), Err(RecordError::BadPayload(_))));
    let mut huge_len = rec[HEADER..HEADER + h.payload_len as usize].to_vec();
    let n = huge_len.len();
    huge_len[n - 4..].copy_from_slice(&0x7fff_fff0u32.to_le_bytes()); // the root Vec's length
    assert!(matches!(decode(&with_payload(&rec, &huge_len)), Err(RecordError::BadPayload(_))));

    // A valid archive that disagrees with its header.
    let mut bad = rec.clone();
    bad[32] = 3; // txn_count
    reseal_header(&mut bad);
    assert!(matches!(decode(&bad), Err(RecordError::BadPayload(m)) if m.contains("transactions")));
    let mut bad = rec.clone();
    bad[24] = 99; // last_zxid
    reseal_header(&mut bad);
    assert!(matches!(decode(&bad), Err(RecordError::BadPayload(m)) if m.contains("disagree")));
    let mut bad = rec.clone();
    bad[8..12].copy_from_slice(&0u32.to_le_bytes());
    reseal_header(&mut bad);
    assert!(matches!(decode(&bad), Err(RecordError::BadPayload(_))));

    // Every error has a readable message.
    for e in [decode(&bad).unwrap_err(), RecordError::Misaligned, RecordError::Empty] {
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn every_single_byte_flip_is_caught() {
    let rec = encode(&every_kind()[..4]);
    let used = HEADER + header(&rec).unwrap().payload_len as usize;
    for i in 0..used {
        for bit in [0x01, 0x80] {
            let mut bad = rec.clone();
            bad[i] ^= bit;
            assert!(decode(&bad).is_err(), "flip of bit {bit:#x} at byte {i} went unnoticed");
        }
    }
}

fn segment(batches: &[Vec<Txn>], tail_zero_blocks: usize) -> (Vec<u8>, Vec<usize>) {
    let mut log = Vec::new();
    let mut offsets = Vec::new();
    for b in batches {
        offsets.push(log.len());
        log.extend_from_slice(&encode(b));
    }
    log.resize(log.len() + tail_zero_blocks * BLOCK, 0);
    (log, offsets)
}

fn batches() -> Vec<Vec<Txn>> {
    let all = every_kind();
    vec![all[..3].to_vec(), all[3..7].to_vec(), all[7..8].to_vec(), all[8..14].to_vec(), all[14..].to_vec()]
}

#[test]
fn scan_clean_segments() {
    let b = batches();
    for zeros in [0, 1, 5] {
        let (log, offsets) = segment(&b, zeros);
        let s = scan(&log).unwrap();
        assert_eq!(s.records.len(), 5);
        assert_eq!(s.torn, None);
        let end = offsets[4] + encode(&b[4]).len();
        assert_eq!(s.end, end);
        let all: Vec<Txn> = s.records.iter().flat_map(|r| r.txns.clone()).collect();
        assert_eq!(all, every_kind());
    }
    assert_eq!(scan(&[]).unwrap(), Scan { records: vec![], end: 0, torn: None });
    assert_eq!(scan(&[0; 3 * BLOCK]).unwrap(), Scan { records: vec![], end: 0, torn: None });
}

#[test]
fn scan_torn_tails() {
    let b = batches();
    let (log, offsets) = segment(&b[..2], 4);
    let last = offsets[1]; // batch 1 holds the 5000-byte value: two blocks
    let last_len = encode(&b[1]).len();
    assert_eq!(last_len, 2 * BLOCK);
    let upto = |s: &Scan| s.records.iter().map(|r| r.txns.len()).sum::<usize>();

    // The file ends mid-record (a write cut short, no preallocation).
    for cut in [last + 1, last + HEADER, last + BLOCK, last + last_len - 1] {
        let s = scan(&log[..cut]).unwrap();
        assert_eq!(s.end, last);
        assert_eq!(s.records.len(), 1);
        assert_eq!(upto(&s), 3);
        let t = s.torn.expect("torn");
        assert_eq!(t.offset, last);
        assert_eq!(t.discarded_bytes, cut - last);
        assert!(matches!(t.reason, RecordError::Truncated { .. }), "{:?}", t.reason);
    }

    // The second block of the last record never reached the disk (preallocated zeros remain).
    let tail: Vec<u8> = log[..last + last_len].to_vec();
    let mut torn = tail.clone();
    torn[last + BLOCK..].fill(0);
    torn.resize(torn.len() + 2 * BLOCK, 0);
    let s = scan(&torn).unwrap();
    let t = s.torn.unwrap();
    assert_eq!((s.end, t.offset, t.discarded_bytes), (last, last, BLOCK));
    assert!(matches!(t.reason, RecordError::BadChecksum { part: ChecksumPart::Payload, .. }));

    // Only the second block landed: the header block is still zeros, so the log ends there.
    let mut torn = tail;
    torn[last..last + BLOCK].fill(0);
    let s = scan(&torn).unwrap();
    assert_eq!((s.end, s.records.len(), s.torn), (last, 1, None));
}

#[test]
fn leftovers_of_a_discarded_record_are_a_torn_tail_not_corruption() {
    // Batch 1 (two blocks) was torn and discarded; batch 2 was then written over its first
    // block, so batch 1's second block still follows the log.
    let b = batches();
    let first = encode(&b[0]);
    let torn = encode(&b[1]);
    let next = encode(&[ops(8, vec![TxnOp::Delete { path: "/x".into() }], false)]);
    assert_eq!((torn.len(), next.len()), (2 * BLOCK, BLOCK));
    let mut log = [first.clone(), next.clone(), torn[BLOCK..].to_vec()].concat();
    log.resize(log.len() + BLOCK, 0);
    let s = scan(&log).unwrap();
    assert_eq!(s.records.len(), 2);
    assert_eq!(s.end, first.len() + next.len());
    let t = s.torn.unwrap();
    assert_eq!((t.offset, t.discarded_bytes), (s.end, BLOCK));
    assert!(matches!(t.reason, RecordError::BadMagic { .. }));
}

#[test]
fn scan_reports_middle_corruption() {
    let b = batches();
    let (log, offsets) = segment(&b, 2);
    for rec in 0..4 {
        let mut bad = log.clone();
        bad[offsets[rec] + HEADER + 5] ^= 0xff;
        let c = scan(&bad).unwrap_err();
        assert_eq!(c.offset, offsets[rec]);
        match &c.reason {
            CorruptionReason::BadRecord { error, next_valid } => {
                assert!(matches!(error, RecordError::BadChecksum { .. }));
                assert_eq!(*next_valid, offsets[rec + 1]);
            }
            r => panic!("{r:?}"),
        }
        assert!(c.to_string().contains(&format!("offset {}", offsets[rec])), "{c}");
    }
    // A zeroed (lost) record in the middle is corruption too, not a clean end.
    let mut bad = log.clone();
    bad[offsets[2]..offsets[3]].fill(0);
    let c = scan(&bad).unwrap_err();
    assert_eq!(c.offset, offsets[2]);
    assert!(matches!(c.reason, CorruptionReason::BadRecord { error: RecordError::Empty, .. }));
    // Flipping the last record is a torn tail, not corruption.
    let mut bad = log.clone();
    bad[offsets[4] + HEADER + 5] ^= 0xff;
    assert_eq!(scan(&bad).unwrap().torn.unwrap().offset, offsets[4]);
}

#[test]
fn scan_rejects_zxids_that_do_not_rise() {
    let b = batches();
    let mut log = encode(&b[1]);
    log.extend_from_slice(&encode(&b[0]));
    let c = scan(&log).unwrap_err();
    assert_eq!(c.offset, encode(&b[1]).len());
    assert_eq!(c.reason, CorruptionReason::ZxidOrder { prev_last: 7, first: 1 });
    let mut log = encode(&b[0]);
    log.extend_from_slice(&encode(&b[0]));
    assert!(matches!(scan(&log).unwrap_err().reason, CorruptionReason::ZxidOrder { .. }));
}

#[test]
fn describe_lines() {
    let d = decode(&encode(&every_kind())).unwrap();
    let text = describe(&d);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 17);
    assert_eq!(lines[0], "2023-11-14T22:13:20.000Z session 0x55 zxid 0x1 createSession timeout 30000");
    assert!(lines[1].ends_with(
        "zxid 0x2 create '/p' data 10 bytes acl [world:anyone=cdrwa, digest:bob:abcdefghijklmnopqrstuvwxyz0==r] \
         persistent"
    ));
    assert!(lines[2].ends_with(
        "data 0 bytes acl [world:anyone=cdrwa, digest:bob:abcdefghijklmnopqrstuvwxyz0==r] \
         ephemeral(0x55)"
    ));
    assert!(lines[3].contains("create '/s0000000001' data null"));
    assert!(lines[4].ends_with(" container"));
    assert!(lines[5].ends_with(" ttl(60000ms)"));
    assert!(lines[7].ends_with("setData '/p' data null"));
    assert!(lines[8].ends_with("setData '/p' data 0 bytes"));
    assert!(lines[9].ends_with("setACL '/p' acl []"));
    assert!(lines[11].ends_with("delete '/s0000000001'"));
    assert!(lines[12].contains("multi [check '/p'; create '/p/m' data 1 bytes"), "{}", lines[12]);
    assert!(lines[12].ends_with("; setData '/p/m' data 2 bytes; delete '/p/m']"));
    assert!(lines[13].ends_with("multi []"));
    assert!(lines[14].ends_with("error -101"));
    assert!(lines[15].ends_with("multi error [0, -103, -2]"));
    assert!(lines[16].ends_with("zxid 0x11 closeSession"));
}
