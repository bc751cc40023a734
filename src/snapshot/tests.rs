//! Unit tests of the snapshot format: full round trips (stats, stored cversion, owners, ACL
//! sharing, sessions), each error kind, every byte flip, and the dump text.

use super::*;
use crate::proto::codes::{perm, CONTAINER_OWNER, TTL_MARKER};
use crate::txn::{Txn, TxnBody, TxnOp};
use std::collections::BTreeMap;

fn apply(t: &mut Tree, zxid: i64, session: i64, ops: Vec<TxnOp>) {
    let txn = Txn { zxid, time: 1_700_000_000_000 + zxid * 1000, session, body: TxnBody::Ops { ops, multi: false } };
    t.apply(&txn, &mut Vec::new(), &mut Vec::new());
}

fn create(path: &str, data: Option<&[u8]>, acl: &Arc<Vec<Acl>>, owner: i64) -> TxnOp {
    TxnOp::Create { path: path.into(), data: data.map(Bytes::copy_from_slice), acl: acl.clone(), owner }
}

/// A tree with every node kind, null and empty data, changed versions and deleted children.
fn sample() -> Tree {
    let open = Arc::new(vec![Acl::world(perm::ALL)]);
    let same_value = Arc::new(vec![Acl::world(perm::ALL)]);
    let digest = Arc::new(vec![
        Acl { perms: perm::READ | perm::ADMIN, id: Id { scheme: "digest".into(), id: "u:hash=".into() } },
        Acl { perms: perm::READ, id: Id { scheme: "ip".into(), id: "10.0.0.0/8".into() } },
    ]);
    let mut t = Tree::new();
    apply(&mut t, 1, 0, vec![create("/a", Some(b"alpha"), &open, 0)]);
    apply(&mut t, 2, 0, vec![create("/a/b", None, &same_value, 0)]);
    apply(&mut t, 3, 0, vec![create("/a/gone", Some(b""), &open, 0)]);
    apply(&mut t, 4, 0, vec![TxnOp::Delete { path: "/a/gone".into() }]);
    apply(&mut t, 5, 7, vec![create("/a/e1", Some(b"x"), &digest, 7)]);
    apply(&mut t, 6, 7, vec![create("/e2", Some(&[1u8; 3000]), &open, 7)]);
    apply(&mut t, 7, 9, vec![create("/e3", Some(b"nine"), &open, 9)]);
    apply(&mut t, 8, 0, vec![create("/c", None, &open, CONTAINER_OWNER)]);
    apply(&mut t, 9, 0, vec![create("/t", Some(b"ttl"), &open, TTL_MARKER | 1234)]);
    apply(&mut t, 10, 0, vec![TxnOp::SetData { path: "/a".into(), data: Some(Bytes::from_static(b"beta")) }]);
    apply(&mut t, 11, 0, vec![TxnOp::SetAcl { path: "/a/b".into(), acl: digest.clone() }]);
    apply(&mut t, 12, 0, vec![TxnOp::SetData { path: "/a/b".into(), data: Some(Bytes::new()) }]);
    apply(&mut t, 13, 0, vec![create("/ünïcode", Some(b"u"), &Arc::new(vec![]), 0)]);
    t
}

type NodeView = (crate::proto::Stat, i32, i64, Option<Bytes>, Vec<Acl>, Vec<String>);

/// Everything observable about every node, by path.
fn view(t: &Tree) -> BTreeMap<String, NodeView> {
    t.iter()
        .map(|(p, n)| {
            let mut kids: Vec<String> = n.children().map(|c| c.to_string()).collect();
            kids.sort();
            (p.to_string(), (n.stat(), n.cversion, n.owner, n.data.clone(), (*n.acl).clone(), kids))
        })
        .collect()
}

fn sessions() -> Vec<(i64, i32, [u8; 16])> {
    vec![(7, 30_000, [7; 16]), (9, 4_000, [9; 16]), (11, 40_000, [0xAB; 16])]
}

#[test]
fn round_trip_everything() {
    let t = sample();
    let bytes = encode(&t, &sessions(), 12);
    let s = decode(&bytes).unwrap();
    assert_eq!(s.zxid, 13);
    assert_eq!(s.tree.last_zxid(), 13);
    assert_eq!(view(&s.tree), view(&t));
    assert_eq!(s.sessions, sessions());
    assert_eq!(s.next_session_id, 12);
    assert_eq!(s.tree.ephemerals_of(7), t.ephemerals_of(7));
    assert_eq!(s.tree.ephemerals_of(9).len(), 1);
    assert_eq!(s.tree.reapable().count(), 2);
    assert_eq!(s.tree.approximate_data_size(), t.approximate_data_size());
    assert_eq!(s.tree.get("/a").unwrap().cversion, 3, "stored cversion counts creates, not deletes");
    assert_eq!(s.tree.get("/a").unwrap().stat().cversion, 4);
    assert_eq!(s.tree.get("/zookeeper/config").unwrap().aversion, -1);
    // Encoding is deterministic and re-encoding the decoded tree gives the same bytes.
    assert_eq!(encode(&t, &sessions(), 12), bytes);
    assert_eq!(encode(&s.tree, &s.sessions, s.next_session_id), bytes);
    // The decoded tree keeps working.
    let mut r = s.tree.clone();
    apply(&mut r, 14, 0, vec![TxnOp::Delete { path: "/a/b".into() }]);
    r.apply(&Txn { zxid: 15, time: 0, session: 7, body: TxnBody::CloseSession }, &mut Vec::new(), &mut Vec::new());
    assert!(r.get("/e2").is_none() && r.get("/a/e1").is_none() && r.get("/e3").is_some());
}

#[test]
fn fresh_tree_and_no_sessions() {
    let t = Tree::new();
    let s = decode(&encode(&t, &[], 1)).unwrap();
    assert_eq!(view(&s.tree), view(&t));
    assert_eq!((s.zxid, s.sessions.len(), s.next_session_id), (0, 0, 1));
}

#[test]
fn acl_lists_are_stored_once_and_shared_again() {
    let t = sample();
    let bytes = encode(&t, &[], 0);
    // open (system nodes share it by value), read-only config, digest, empty.
    assert_eq!(le_u32(&bytes, 12), 4);
    let s = decode(&bytes).unwrap();
    let a = &s.tree.get("/a").unwrap().acl;
    assert!(Arc::ptr_eq(a, &s.tree.get("/").unwrap().acl));
    assert!(Arc::ptr_eq(&s.tree.get("/a/b").unwrap().acl, &s.tree.get("/a/e1").unwrap().acl));
}

/// Seals a body (sessions and nodes, then the ACL lists) with a header, as `encode` would, with
/// the given counts.
fn seal(zxid: i64, nodes_part: &[u8], acl_part: &[u8], nodes: u64, sessions: u64, acls: u32) -> Vec<u8> {
    let body = [nodes_part, acl_part].concat();
    let mut out = vec![0u8; HEADER];
    out[0..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&VERSION.to_le_bytes());
    out[8..12].copy_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out[12..16].copy_from_slice(&acls.to_le_bytes());
    out[16..24].copy_from_slice(&zxid.to_le_bytes());
    out[24..32].copy_from_slice(&(body.len() as u64).to_le_bytes());
    out[32..40].copy_from_slice(&nodes.to_le_bytes());
    out[40..48].copy_from_slice(&sessions.to_le_bytes());
    out[56..64].copy_from_slice(&(nodes_part.len() as u64).to_le_bytes());
    reseal(&mut out);
    out.extend_from_slice(&body);
    out
}

fn reseal(out: &mut [u8]) {
    let crc = crc32c::crc32c(&out[..HEADER_CRC_AT]);
    out[HEADER_CRC_AT..HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// One node record with ACL index 0.
fn node_bytes(path: &str) -> Vec<u8> {
    let mut b = Vec::new();
    put_str(&mut b, path);
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&[0u8; 8 * 4 + 4 * 3 + 8 * 2]);
    b.extend_from_slice(&(-1i32).to_le_bytes());
    b
}

#[test]
fn each_error_kind() {
    let bytes = encode(&sample(), &sessions(), 12);
    let err = |b: &[u8]| decode(b).unwrap_err();
    assert_eq!(err(&[]), SnapshotError::Truncated { needed: HEADER as u64, available: 0 });
    assert!(matches!(err(&bytes[..bytes.len() - 1]), SnapshotError::Truncated { .. }));
    let mut bad = bytes.clone();
    bad[3] = b'R';
    assert_eq!(err(&bad), SnapshotError::BadMagic { found: *b"CZKR" });
    assert!(matches!(err(&encode_record_instead()), SnapshotError::BadMagic { .. }));
    let mut bad = bytes.clone();
    bad[4] = 9;
    assert_eq!(err(&bad), SnapshotError::UnsupportedVersion { version: 9, flags: 0 });
    let mut bad = bytes.clone();
    bad[17] ^= 1;
    assert!(matches!(err(&bad), SnapshotError::BadChecksum { part: ChecksumPart::Header, .. }));
    let mut bad = bytes.clone();
    let mid = bytes.len() / 2;
    bad[mid] ^= 0x10;
    assert!(matches!(err(&bad), SnapshotError::BadChecksum { part: ChecksumPart::Body, .. }));

    // Zero padding after the body is fine, anything else is not.
    let mut padded = bytes.clone();
    padded.resize(bytes.len() + 4096, 0);
    assert!(decode(&padded).is_ok());
    padded[bytes.len() + 10] = 1;
    assert!(matches!(err(&padded), SnapshotError::BadPayload(_)));

    // Bodies with a good checksum that do not parse or do not form a tree.
    let acl_at = le_u64(&bytes, 56) as usize;
    let (nodes_part, acl_part) = bytes[HEADER..].split_at(acl_at);
    let (n, acls) = (le_u64(&bytes, 32), le_u32(&bytes, 12));
    assert!(decode(&seal(13, nodes_part, acl_part, n, 3, acls)).is_ok(), "the test's sealing matches encode");
    let more_nodes = seal(13, nodes_part, acl_part, n + 1, 3, acls);
    assert!(matches!(err(&more_nodes), SnapshotError::BadPayload(m) if m.contains("needs")));
    let fewer_nodes = seal(13, nodes_part, acl_part, n - 1, 3, acls);
    assert!(matches!(err(&fewer_nodes), SnapshotError::BadPayload(m) if m.contains("after the nodes")));
    let fewer_acls = seal(13, nodes_part, acl_part, n, 3, acls - 1);
    assert!(matches!(err(&fewer_acls), SnapshotError::BadPayload(m) if m.contains("after the ACL lists")));
    let more_acls = seal(13, nodes_part, acl_part, n, 3, acls + 1);
    assert!(matches!(err(&more_acls), SnapshotError::BadPayload(m) if m.contains("needs")));
    let mut far_acls = seal(13, nodes_part, acl_part, n, 3, acls);
    far_acls[56..64].copy_from_slice(&u64::MAX.to_le_bytes());
    reseal(&mut far_acls);
    assert!(matches!(err(&far_acls), SnapshotError::BadPayload(m) if m.contains("ACL offset")));

    // One empty ACL list, then an empty epoch map.
    let open_acl = [0u32.to_le_bytes(), 0u32.to_le_bytes()].concat();
    let orphan = [node_bytes("/"), node_bytes("/x/y")].concat();
    assert!(
        matches!(err(&seal(1, &orphan, &open_acl, 2, 0, 1)), SnapshotError::BadPayload(m) if m.contains("no parent"))
    );
    let dup = [node_bytes("/"), node_bytes("/")].concat();
    assert!(matches!(err(&seal(1, &dup, &open_acl, 2, 0, 1)), SnapshotError::BadPayload(m) if m.contains("duplicate")));
    assert!(matches!(err(&seal(1, &node_bytes("/a"), &open_acl, 1, 0, 1)), SnapshotError::BadPayload(_)));
    let bad_acl = seal(1, &node_bytes("/"), &0u32.to_le_bytes(), 1, 0, 0);
    assert!(matches!(err(&bad_acl), SnapshotError::BadPayload(m) if m.contains("ACL index")));
    let bad_utf8 = [2u32.to_le_bytes().to_vec(), vec![0xff, 0xfe]].concat();
    assert!(
        matches!(err(&seal(1, &bad_utf8, &open_acl, 1, 0, 1)), SnapshotError::BadPayload(m) if m.contains("UTF-8"))
    );
    let mut neg_len = node_bytes("/");
    let k = neg_len.len();
    neg_len[k - 4..].copy_from_slice(&(-2i32).to_le_bytes());
    assert!(matches!(err(&seal(1, &neg_len, &open_acl, 1, 0, 1)), SnapshotError::BadPayload(m) if m.contains("-2")));
    assert!(decode(&seal(1, &node_bytes("/"), &open_acl, 1, 0, 1)).is_ok());
    // Huge counts in a sealed header fail cleanly instead of allocating.
    assert!(matches!(err(&seal(1, &[], &[], u64::MAX, u64::MAX, u32::MAX)), SnapshotError::BadPayload(_)));

    for e in [err(&bad), err(&[]), err(&more_nodes)] {
        assert!(!e.to_string().is_empty());
    }
}

fn encode_record_instead() -> Vec<u8> {
    let txn = Txn { zxid: 1, time: 0, session: 1, body: TxnBody::CloseSession };
    crate::record::encode(&[txn])
}

#[test]
fn every_byte_flip_and_cut_is_caught() {
    let mut t = Tree::new();
    let acl = Arc::new(vec![Acl::world(perm::ALL)]);
    apply(&mut t, 1, 5, vec![create("/e", Some(b"data"), &acl, 5)]);
    let bytes = encode(&t, &[(5, 4000, [1; 16])], 6);
    for i in 0..bytes.len() {
        for bit in [0x01, 0x80] {
            let mut bad = bytes.clone();
            bad[i] ^= bit;
            assert!(decode(&bad).is_err(), "flip of bit {bit:#x} at byte {i} went unnoticed");
        }
    }
    for cut in 0..bytes.len() {
        assert!(decode(&bytes[..cut]).is_err(), "cut at {cut} went unnoticed");
    }
}

#[test]
fn describe_lists_nodes_and_sessions() {
    let s = decode(&encode(&sample(), &sessions(), 12)).unwrap();
    let text = describe(&s);
    assert!(text.starts_with("Snapshot at zxid 0xd: 12 nodes, 3 sessions, next session id 0xc\n"), "{text}");
    assert!(text.contains("ZNode Details (count=12):"));
    let a = text.split("----\n").find(|b| b.starts_with("/a\n")).unwrap();
    assert_eq!(
        a,
        "/a\n  cZxid = 0x1\n  ctime = 2023-11-14T22:13:21.000Z\n  mZxid = 0xa\n  mtime = 2023-11-14T22:13:30.000Z\n  \
         pZxid = 0x5\n  cversion = 4\n  dataVersion = 1\n  aclVersion = 0\n  ephemeralOwner = 0x0\n  \
         kind = persistent\n  numChildren = 2\n  dataLength = 4\n  data = 4 bytes\n  acl = [world:anyone=cdrwa]\n"
    );
    assert!(text.contains("/e2\n"));
    assert!(text.contains("  ephemeralOwner = 0x7\n  kind = ephemeral(0x7)\n"));
    assert!(text.contains("  kind = container\n"));
    assert!(text.contains("  kind = ttl(1234ms)\n"));
    assert!(text.contains("  data = null\n"));
    assert!(text.ends_with(
        "Session Details (sid, timeout, ephemeralCount):\n0x7, 30000, 2\n  /a/e1\n  /e2\n0x9, 4000, 1\n  /e3\n\
         0xb, 40000, 0\n"
    ));
    // Paths are sorted.
    let paths: Vec<&str> = text.split("----\n").skip(1).filter_map(|b| b.lines().next()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
}
