//! Recovery as a pure function: the state a node restarts from, given what its disk holds (a
//! snapshot and the records after it). Used by the log at start-up and by the simulator.
//!
//! Applies only what a record says was committed when it was made: later records wait for the
//! quorum (an uncommitted tail is never applied, only kept for replication to decide on).

use super::State;
use crate::record;
use crate::snapshot::SnapshotData;
use crate::zab::{self, Batch};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What recovery found.
pub struct Recovered {
    /// The state at the last zxid known committed (the snapshot, then every record up to the
    /// highest commit point a record names). Records after it are in `records` and are applied
    /// only when replication commits them.
    pub state: State,
    /// The log's records after `records_base`, oldest first: every record not yet applied, and
    /// the newest applied ones within the history budget (for DIFF to learners).
    pub records: Vec<Arc<Batch>>,
    pub records_base: i64,
    /// The last zxid of each epoch in the whole history.
    pub epochs: BTreeMap<u32, i64>,
    /// Zxid of the snapshot the state was built from (0: none).
    pub snapshot_zxid: i64,
    /// Transactions replayed from the log into the state.
    pub replayed: u64,
    /// Operator-facing lines about what was found, discarded or skipped.
    pub notes: Vec<String>,
}

/// The state from a snapshot (or none) and the records after it, in order and without gaps.
pub fn rebuild(
    snapshot: Option<SnapshotData>,
    after: Vec<(Arc<Batch>, record::Decoded)>,
    secret: &[u8; 16],
    history_bytes: usize,
) -> Recovered {
    let (mut state, snapshot_zxid) = match snapshot {
        Some(s) => {
            let sessions = s.sessions.iter().map(|&(id, to, pw)| (id, (to, pw))).collect();
            let z = s.zxid;
            (State { tree: s.tree, sessions, next_session_id: s.next_session_id }, z)
        }
        None => (State::default(), 0),
    };
    let known = after.iter().map(|(_, d)| d.commit).max().unwrap_or(0).max(snapshot_zxid);
    let mut replayed = 0u64;
    let (mut triggers, mut closed) = (Vec::new(), Vec::new());
    let mut applied_upto = 0;
    for (i, (_, d)) in after.iter().enumerate() {
        if d.last_zxid > known {
            break;
        }
        for txn in &d.txns {
            state.apply(txn, secret, &mut triggers, &mut closed);
            triggers.clear();
            replayed += 1;
        }
        applied_upto = i + 1;
    }
    let mut epochs: BTreeMap<u32, i64> = state.tree.epochs().into_iter().collect();
    for (b, _) in &after[applied_upto..] {
        zab::sync::note_append(&mut epochs, b.last);
    }
    // Keep the newest applied records within the budget, and every unapplied one.
    let mut keep_from = applied_upto;
    let mut kept = 0;
    while keep_from > 0 && kept + after[keep_from - 1].0.bytes.len() <= history_bytes {
        keep_from -= 1;
        kept += after[keep_from].0.bytes.len();
    }
    let records_base = if keep_from == 0 { snapshot_zxid } else { after[keep_from - 1].0.last };
    let records = after[keep_from..].iter().map(|(b, _)| b.clone()).collect();
    Recovered { state, records, records_base, epochs, snapshot_zxid, replayed, notes: Vec::new() }
}
