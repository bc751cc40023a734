//! Model-based recovery test of the persistence codecs: random writes (creates in every mode,
//! deletes, setData, setACL, multi, sync, session create/close) are prepared with `prep_write`
//! against a live tree, grouped into batches encoded as log records, snapshotted at random
//! points, and at random "reboots" the state is rebuilt from the newest snapshot plus the log
//! records after it and compared with the durable model, node by node.
//!
//! A reboot may also tear the batch being written (cut short, or its later blocks never written
//! to a preallocated file): the scan must report the torn tail at the right offset and recovery
//! must equal the state before that batch. Each run then checks that a flipped byte in the
//! middle of the log is reported as corruption at the right offset, and that a damaged snapshot
//! fails to decode (recovery falls back to the older snapshot and still agrees).

use bytes::Bytes;
use corezk::proto::codes::{op, perm};
use corezk::proto::{Acl, CreateRequest, Id, MultiOp, Request, Stat};
use corezk::record::{self, CorruptionReason, BLOCK};
use corezk::snapshot;
use corezk::tree::acl::AuthInfo;
use corezk::tree::Tree;
use corezk::txn::{Txn, TxnBody};
use proptest::prelude::*;
use std::collections::BTreeMap;

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const FIRST_SESSION: i64 = 0x100;
const BASE_TIME: i64 = 1_700_000_000_000;

#[derive(Debug, Clone)]
enum Sub {
    Create { parent: u16, name: u8, mode: u8, data: Option<Vec<u8>> },
    Delete { target: u16, version: i32 },
    SetData { target: u16, data: Option<Vec<u8>>, version: i32 },
    Check { target: u16, version: i32 },
}

#[derive(Debug, Clone)]
enum Step {
    Write {
        session: u16,
        sub: Sub,
    },
    SetAcl {
        session: u16,
        target: u16,
        acl: u8,
        version: i32,
    },
    Multi {
        session: u16,
        subs: Vec<Sub>,
    },
    Sync,
    CreateSession {
        timeout: i32,
    },
    CloseSession {
        which: u16,
    },
    /// End the current batch: encode it and append it to the log (it is now durable).
    Flush,
    /// Flush, then save a snapshot of the tree and the sessions.
    Snapshot,
    /// Crash and recover. `tear`: the pending batch was being written and only part landed
    /// (`(where, zero_mode)`: cut the file short, or leave later blocks as preallocated zeros).
    Reboot {
        tear: Option<(u32, bool)>,
    },
}

fn data() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Vec::new())),
        6 => prop::collection::vec(any::<u8>(), 1..24).prop_map(Some),
        1 => (100usize..6000, any::<u8>()).prop_map(|(n, b)| Some(vec![b; n])),
    ]
}

fn version() -> impl Strategy<Value = i32> {
    prop_oneof![4 => Just(-1), 1 => 0..3i32]
}

fn sub() -> impl Strategy<Value = Sub> {
    prop_oneof![
        6 => (any::<u16>(), 0..4u8, 0..8u8, data())
            .prop_map(|(parent, name, mode, data)| Sub::Create { parent, name, mode, data }),
        3 => (any::<u16>(), version()).prop_map(|(target, version)| Sub::Delete { target, version }),
        4 => (any::<u16>(), data(), version())
            .prop_map(|(target, data, version)| Sub::SetData { target, data, version }),
        1 => (any::<u16>(), version()).prop_map(|(target, version)| Sub::Check { target, version }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        14 => (any::<u16>(), sub()).prop_map(|(session, sub)| Step::Write { session, sub }),
        2 => (any::<u16>(), any::<u16>(), 0..3u8, version())
            .prop_map(|(session, target, acl, version)| Step::SetAcl { session, target, acl, version }),
        3 => (any::<u16>(), prop::collection::vec(sub(), 0..4))
            .prop_map(|(session, subs)| Step::Multi { session, subs }),
        1 => Just(Step::Sync),
        2 => (1000..60_000i32).prop_map(|timeout| Step::CreateSession { timeout }),
        1 => any::<u16>().prop_map(|which| Step::CloseSession { which }),
        5 => Just(Step::Flush),
        1 => Just(Step::Snapshot),
        1 => prop::option::of((any::<u32>(), any::<bool>())).prop_map(|tear| Step::Reboot { tear }),
    ]
}

fn acl_choice(i: u8) -> Vec<Acl> {
    match i % 3 {
        0 => vec![Acl::world(perm::ALL)],
        1 => vec![Acl::world(perm::READ | perm::CREATE | perm::ADMIN)],
        _ => vec![
            Acl { perms: perm::ALL, id: Id { scheme: "ip".into(), id: "127.0.0.1".into() } },
            Acl::world(perm::READ),
        ],
    }
}

/// Sessions: id → (timeout, password). Passwords are derived from the id so replayed
/// createSession transactions (which carry none) come back with the same one.
type Sessions = BTreeMap<i64, (i32, [u8; 16])>;

fn passwd(id: i64) -> [u8; 16] {
    [id as u8; 16]
}

/// The durable state: what a reboot must find.
#[derive(Clone)]
struct State {
    tree: Tree,
    sessions: Sessions,
    next_session: i64,
}

type NodeView = (Stat, i32, i64, Option<Bytes>, Vec<Acl>);

/// Everything observable about a state. (`Tree::approximate_data_size` is left out: the tree
/// counts system nodes' data when applying but not when rebuilding from a snapshot.)
#[derive(Debug, PartialEq)]
struct View {
    last_zxid: i64,
    nodes: BTreeMap<String, NodeView>,
    ephemerals: BTreeMap<i64, Vec<String>>,
    sessions: Sessions,
    next_session: i64,
}

fn view(s: &State) -> View {
    let nodes = s
        .tree
        .iter()
        .map(|(p, n)| (p.to_string(), (n.stat(), n.cversion, n.owner, n.data.clone(), (*n.acl).clone())))
        .collect();
    let mut ephemerals = BTreeMap::new();
    for (p, n) in s.tree.iter() {
        if let corezk::tree::Kind::Ephemeral(id) = n.kind() {
            ephemerals.entry(id).or_insert_with(Vec::new).push(p.to_string());
        }
    }
    for (id, paths) in ephemerals.iter_mut() {
        paths.sort();
        let indexed: Vec<String> = s.tree.ephemerals_of(*id).iter().map(|p| p.to_string()).collect();
        assert_eq!(*paths, indexed, "ephemeral index of session {id:#x}");
    }
    View {
        last_zxid: s.tree.last_zxid(),
        nodes,
        ephemerals,
        sessions: s.sessions.clone(),
        next_session: s.next_session,
    }
}

fn apply_sessions(sessions: &mut Sessions, next: &mut i64, txn: &Txn) {
    match txn.body {
        TxnBody::CreateSession { timeout, passwd: pw } => {
            assert_eq!(pw, passwd(txn.session), "the password travels in the record");
            sessions.insert(txn.session, (timeout, pw));
            *next = (*next).max(txn.session + 1);
        }
        TxnBody::CloseSession => {
            sessions.remove(&txn.session);
        }
        _ => {}
    }
}

/// Recovery as the server does it: the newest snapshot that decodes, then every logged
/// transaction after its zxid. The log must scan without corruption; a torn tail is returned.
fn recover(snaps: &[Vec<u8>], disk: &[u8]) -> (State, Option<record::TornTail>, usize) {
    let mut base = None;
    for s in snaps.iter().rev() {
        if let Ok(d) = snapshot::decode(s) {
            base = Some(d);
            break;
        }
    }
    let mut st = match base {
        Some(d) => {
            let sessions = d.sessions.iter().map(|&(id, t, pw)| (id, (t, pw))).collect();
            State { tree: d.tree, sessions, next_session: d.next_session_id }
        }
        None => State { tree: Tree::new(), sessions: BTreeMap::new(), next_session: FIRST_SESSION },
    };
    let scan = record::scan(disk).unwrap_or_else(|c| panic!("unexpected corruption: {c}"));
    let (mut trig, mut stats) = (Vec::new(), Vec::new());
    for rec in &scan.records {
        for txn in &rec.txns {
            if txn.zxid <= st.tree.last_zxid() {
                continue;
            }
            assert_eq!(txn.zxid, st.tree.last_zxid() + 1, "no gap in the log");
            apply_sessions(&mut st.sessions, &mut st.next_session, txn);
            st.tree.apply(txn, &mut trig, &mut stats);
        }
    }
    (st, scan.torn, scan.end)
}

struct Model {
    live: State,
    durable: State,
    pending: Vec<Txn>,
    /// The log file's bytes as the disk holds them: records up to `end`, then whatever torn
    /// writes left behind (never acknowledged; the next records overwrite it).
    file: Vec<u8>,
    end: usize,
    offsets: Vec<usize>,
    snaps: Vec<Vec<u8>>,
    auth: AuthInfo,
    reboots: usize,
    torn: usize,
}

impl Model {
    fn new() -> Model {
        let st = State { tree: Tree::new(), sessions: BTreeMap::new(), next_session: FIRST_SESSION };
        Model {
            live: st.clone(),
            durable: st,
            pending: Vec::new(),
            file: Vec::new(),
            end: 0,
            offsets: Vec::new(),
            snaps: Vec::new(),
            auth: AuthInfo::new("127.0.0.1".parse().unwrap()),
            reboots: 0,
            torn: 0,
        }
    }

    fn paths(&self) -> Vec<String> {
        let mut v: Vec<String> = self.live.tree.iter().map(|(p, _)| p.to_string()).collect();
        v.sort();
        v
    }

    fn pick(&self, i: u16) -> String {
        let p = self.paths();
        p[i as usize % p.len()].clone()
    }

    fn session(&self, i: u16) -> i64 {
        let ids: Vec<i64> = self.live.sessions.keys().copied().collect();
        if ids.is_empty() {
            0
        } else {
            ids[i as usize % ids.len()]
        }
    }

    fn commit(&mut self, session: i64, body: TxnBody) {
        let zxid =
            if matches!(body, TxnBody::Barrier) { self.live.tree.last_zxid() } else { self.live.tree.last_zxid() + 1 };
        let txn = Txn { zxid, time: BASE_TIME + zxid * 1000, session, body };
        apply_sessions(&mut self.live.sessions, &mut self.live.next_session, &txn);
        self.live.tree.apply(&txn, &mut Vec::new(), &mut Vec::new());
        self.pending.push(txn);
    }

    fn request(&self, sub: &Sub, session: i64) -> MultiOp {
        let bytes = |d: &Option<Vec<u8>>| d.clone().map(Bytes::from);
        match sub {
            Sub::Create { parent, name, mode, data } => {
                let path = corezk::tree::path::join(&self.pick(*parent), NAMES[*name as usize]);
                // Ephemeral modes need a live session; without one they fall back to persistent.
                let (flags, opcode, ttl) = match (mode, session != 0) {
                    (1, true) => (1, op::CREATE, -1),
                    (3, true) => (3, op::CREATE, -1),
                    (2, _) => (2, op::CREATE, -1),
                    (4, _) => (4, op::CREATE_CONTAINER, -1),
                    (5, _) => (5, op::CREATE_TTL, 1000 + *name as i64),
                    (6, _) => (6, op::CREATE_TTL, 5000),
                    (7, _) => (0, op::CREATE2, -1),
                    _ => (0, op::CREATE, -1),
                };
                let acl = acl_choice(*name);
                MultiOp::Create(CreateRequest { path, data: bytes(data), acl, flags, ttl, op: opcode })
            }
            Sub::Delete { target, version } => MultiOp::Delete { path: self.pick(*target), version: *version },
            Sub::SetData { target, data, version } => {
                MultiOp::SetData { path: self.pick(*target), data: bytes(data), version: *version }
            }
            Sub::Check { target, version } => MultiOp::Check { path: self.pick(*target), version: *version },
        }
    }

    fn prep(&self, req: &Request, session: i64) -> TxnBody {
        let ctx = corezk::prep::PrepCtx { session, auth: &self.auth, extended_types: true };
        corezk::prep::prep_write(&self.live.tree, req, &ctx)
    }

    fn write_at(&mut self, at: usize, bytes: &[u8]) {
        if self.file.len() < at + bytes.len() {
            self.file.resize(at + bytes.len(), 0);
        }
        self.file[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn flush(&mut self) {
        let rec = record::encode(&self.pending);
        if !rec.is_empty() {
            assert_eq!(rec.len() % BLOCK, 0);
            self.offsets.push(self.end);
            self.write_at(self.end, &rec);
            self.end += rec.len();
        }
        self.pending.clear();
        self.durable = self.live.clone();
    }

    /// The log as it sits on disk: the file, then preallocated zeros.
    fn disk(&self) -> Vec<u8> {
        let mut d = self.file.clone();
        d.resize(d.len() + 2 * BLOCK, 0);
        d
    }

    fn reboot(&mut self, tear: Option<(u32, bool)>) {
        let rec = record::encode(&self.pending);
        let mut preallocated = true;
        let tore = match tear {
            Some((at, zero_mode)) if !rec.is_empty() => {
                if zero_mode && rec.len() > BLOCK {
                    // Some leading blocks landed; the rest still hold what was there before.
                    let blocks = rec.len() / BLOCK;
                    self.write_at(self.end, &rec[..BLOCK * (1 + at as usize % (blocks - 1))]);
                } else {
                    // The write stopped inside the header or payload.
                    let used = record::HEADER + record::header(&rec).unwrap().payload_len as usize;
                    self.write_at(self.end, &rec[..1 + at as usize % (used - 1)]);
                    preallocated = zero_mode;
                }
                true
            }
            _ => false,
        };
        let disk = if preallocated { self.disk() } else { self.file.clone() };
        let mut tore = tore;
        if tore && record::decode(&disk[self.end..]).is_ok() {
            // The bytes that did not land were zeros anyway (the archive's root ends with the
            // high bytes of a small length): the record is complete, so the batch is durable.
            self.offsets.push(self.end);
            self.end += rec.len();
            self.durable = self.live.clone();
            tore = false;
        }
        let (recovered, torn, end) = recover(&self.snaps, &disk);
        assert_eq!(end, self.end, "recovery ends where the last durable record ends");
        if tore {
            let t = torn.expect("a torn tail is reported");
            assert_eq!(t.offset, self.end, "torn tail offset");
            assert!(t.discarded_bytes > 0, "{t:?}");
            // What the server does before writing again: zero the discarded bytes, so a torn
            // record whose missing bytes happened to be zeros cannot read back as complete
            // after a later restart.
            let to = (t.offset + t.discarded_bytes).min(self.file.len());
            self.file[t.offset..to].fill(0);
            self.torn += 1;
        } else if let Some(t) = torn {
            // Only leftovers of an earlier torn write can follow the durable records.
            assert!(self.file.len() > self.end, "torn tail {t:?} in a clean log");
        }
        // The unflushed batch is lost (it was never durable, so never acknowledged).
        assert_eq!(view(&recovered), view(&self.durable), "recovered state differs from the durable model");
        self.pending.clear();
        self.live = recovered;
        self.durable = self.live.clone();
        self.reboots += 1;
    }

    fn step(&mut self, s: &Step) {
        match s {
            Step::Write { session, sub } => {
                let sid = self.session(*session);
                let req = match self.request(sub, sid) {
                    MultiOp::Create(c) => Request::Create(c),
                    MultiOp::Delete { path, version } => Request::Delete { path, version },
                    MultiOp::SetData { path, data, version } => Request::SetData { path, data, version },
                    MultiOp::Check { path, .. } => Request::Sync { path },
                };
                let body = self.prep(&req, sid);
                self.commit(sid, body);
            }
            Step::SetAcl { session, target, acl, version } => {
                let sid = self.session(*session);
                let req = Request::SetAcl { path: self.pick(*target), acl: acl_choice(*acl), version: *version };
                let body = self.prep(&req, sid);
                self.commit(sid, body);
            }
            Step::Multi { session, subs } => {
                let sid = self.session(*session);
                let ops = subs.iter().map(|s| self.request(s, sid)).collect();
                let body = self.prep(&Request::Multi(ops), sid);
                self.commit(sid, body);
            }
            Step::Sync => {
                let body = self.prep(&Request::Sync { path: "/".into() }, 0);
                assert_eq!(body, TxnBody::Barrier);
                self.commit(0, body);
            }
            Step::CreateSession { timeout } => {
                let id = self.live.next_session;
                self.commit(id, TxnBody::CreateSession { timeout: *timeout, passwd: passwd(id) });
            }
            Step::CloseSession { which } => {
                let sid = self.session(*which);
                if sid != 0 {
                    let body = self.prep(&Request::CloseSession, sid);
                    self.commit(sid, body);
                }
            }
            Step::Flush => self.flush(),
            Step::Snapshot => {
                self.flush();
                let sessions: Vec<(i64, i32, [u8; 16])> =
                    self.live.sessions.iter().map(|(&id, &(t, pw))| (id, t, pw)).collect();
                self.snaps.push(snapshot::encode(&self.live.tree, &sessions, self.live.next_session));
            }
            Step::Reboot { tear } => self.reboot(*tear),
        }
    }

    /// End-of-run checks on damaged copies of the final log and snapshots.
    fn damage(&mut self, pick: u32, byte: u32, bit: u8) {
        self.flush();
        let disk = self.disk();
        // A flipped byte in any record but the last: corruption at that record's offset.
        if self.offsets.len() >= 2 {
            let i = pick as usize % (self.offsets.len() - 1);
            let at = self.offsets[i];
            let h = record::header(&disk[at..]).unwrap();
            let used = record::HEADER + h.payload_len as usize;
            let mut bad = disk.clone();
            bad[at + byte as usize % used] ^= 1 << (bit % 8);
            let c = record::scan(&bad).unwrap_err();
            assert_eq!(c.offset, at, "{c}");
            match c.reason {
                CorruptionReason::BadRecord { next_valid, .. } => assert_eq!(next_valid, self.offsets[i + 1]),
                r => panic!("{r:?}"),
            }
        }
        // The same flip in the last record is a torn tail at its offset.
        if let Some(&at) = self.offsets.last() {
            let h = record::header(&disk[at..]).unwrap();
            let mut bad = disk.clone();
            bad[at + byte as usize % (record::HEADER + h.payload_len as usize)] ^= 1 << (bit % 8);
            let s = record::scan(&bad).unwrap();
            assert_eq!((s.end, s.torn.map(|t| t.offset)), (at, Some(at)));
            assert_eq!(s.records.len(), self.offsets.len() - 1);
        }
        // A damaged newest snapshot fails to decode; recovery falls back to the older one (or to
        // the whole log) and still reaches the same state.
        if let Some(newest) = self.snaps.last().cloned() {
            let mut bad = newest.clone();
            let i = byte as usize % bad.len();
            bad[i] ^= 1 << (bit % 8);
            assert!(snapshot::decode(&bad).is_err(), "flip at byte {i} went unnoticed");
            assert!(snapshot::decode(&newest[..pick as usize % newest.len()]).is_err());
            let n = self.snaps.len();
            self.snaps[n - 1] = bad;
            let (recovered, _, end) = recover(&self.snaps, &disk);
            assert_eq!(end, self.end);
            assert_eq!(view(&recovered), view(&self.durable), "recovery past a corrupt snapshot");
            self.snaps[n - 1] = newest;
        }
    }
}

fn run(steps: &[Step], pick: u32, byte: u32, bit: u8) -> (usize, usize) {
    let mut m = Model::new();
    for s in steps {
        m.step(s);
    }
    m.reboot(None);
    m.damage(pick, byte, bit);
    // Snapshots and the dump tools render whatever was recovered.
    let last = snapshot::decode(&m.snaps.last().cloned().unwrap_or_else(|| snapshot::encode(&m.live.tree, &[], 1)));
    assert!(!snapshot::describe(&last.unwrap()).is_empty());
    for r in record::scan(&m.disk()).unwrap().records {
        assert_eq!(record::describe(&r).lines().count(), r.txns.len());
    }
    (m.reboots, m.torn)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn recovery_matches_the_model(
        steps in prop::collection::vec(step(), 1..160),
        pick in any::<u32>(),
        byte in any::<u32>(),
        bit in any::<u8>(),
    ) {
        run(&steps, pick, byte, bit);
    }
}

/// A fixed scenario that exercises every feature at least once, so a weak random draw cannot
/// hide a regression.
#[test]
fn fixed_scenario_covers_everything() {
    let w = |sub| Step::Write { session: 0, sub };
    let create =
        |parent, name, mode, data: Option<&[u8]>| Sub::Create { parent, name, mode, data: data.map(|d| d.to_vec()) };
    let steps = vec![
        Step::CreateSession { timeout: 4000 },
        Step::CreateSession { timeout: 9000 },
        w(create(0, 0, 0, Some(b"root-a"))), // /a persistent
        w(create(0, 1, 1, Some(b""))),       // /b ephemeral
        w(create(0, 2, 2, None)),            // /c0000000002 sequential
        Step::Flush,
        w(create(0, 3, 4, Some(&[9; 5000]))), // /d container, two-block record
        w(create(0, 0, 5, Some(b"ttl"))),     // /a exists: NodeExists error
        Step::Multi { session: 1, subs: vec![create(1, 1, 3, Some(b"m")), Sub::Check { target: 1, version: -1 }] },
        Step::Multi { session: 1, subs: vec![Sub::Delete { target: 9999, version: 7 }] }, // MultiError
        Step::Sync,
        Step::Snapshot,
        Step::SetAcl { session: 0, target: 1, acl: 2, version: -1 },
        w(Sub::SetData { target: 1, data: None, version: -1 }),
        w(Sub::SetData { target: 1, data: Some(vec![]), version: 0 }),
        w(create(0, 1, 6, Some(b"ttl-seq"))),
        w(create(0, 2, 7, Some(b"create2"))),
        Step::Flush,
        Step::CloseSession { which: 0 },
        w(create(0, 2, 1, Some(b"lost"))),
        Step::Reboot { tear: Some((7, false)) },
        w(create(0, 2, 0, Some(&[1; 9000]))),
        Step::Reboot { tear: Some((1, true)) },
        w(Sub::Delete { target: 2, version: -1 }),
        Step::Flush,
        Step::Snapshot,
        Step::Reboot { tear: None },
        Step::CloseSession { which: 1 },
        Step::Flush,
    ];
    let (reboots, torn) = run(&steps, 0, 77, 3);
    assert_eq!((reboots, torn), (4, 2));
    // Every transaction kind reached the log.
    let mut m = Model::new();
    for s in &steps {
        m.step(s);
    }
    m.flush();
    let kinds: std::collections::BTreeSet<&str> = record::scan(&m.disk())
        .unwrap()
        .records
        .iter()
        .flat_map(|r| r.txns.iter())
        .map(|t| match &t.body {
            TxnBody::CreateSession { .. } => "createSession",
            TxnBody::CloseSession => "closeSession",
            TxnBody::Ops { multi: true, .. } => "multi",
            TxnBody::Ops { .. } => "op",
            TxnBody::Error { .. } => "error",
            TxnBody::MultiError { .. } => "multiError",
            TxnBody::Barrier => "barrier",
        })
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["closeSession", "createSession", "error", "multi", "multiError", "op"]
    );
}
