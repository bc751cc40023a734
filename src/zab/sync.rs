//! How a leader brings one learner's log in line with its own: the longest common prefix of
//! the two histories, then TRUNC (drop the learner's tail after it), DIFF (send the records
//! after it) or SNAP (send the committed state) when the records are no longer held.
//!
//! Pure decision on zxids; owns no state and sends nothing.

use super::msg::Summary;
use super::{epoch_of, Zxid};
use std::collections::BTreeMap;

/// What the leader sends a learner before NEWLEADER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Optionally truncate after `trunc`, then send every held record after `from`.
    Diff { trunc: Option<Zxid>, from: Zxid },
    /// Send the committed state, then the records after it.
    Snap,
}

/// The largest zxid both histories hold. Histories are prefix-consistent (a zxid names one
/// transaction, proposed by the one leader of its epoch, after the same history), so within an
/// epoch both hold a prefix of the same sequence, and the learner's `base` (its applied point)
/// is committed and held by every later leader.
pub fn common_prefix(leader: &BTreeMap<u32, Zxid>, leader_last: Zxid, learner: &Summary) -> Zxid {
    let mut common = learner.base.min(leader_last);
    for &(epoch, learner_last) in &learner.epochs {
        if learner_last <= learner.base {
            continue;
        }
        if let Some(&leader_epoch_last) = leader.get(&epoch) {
            common = common.max(learner_last.min(leader_epoch_last));
        }
    }
    common
}

/// The plan for a learner whose history is summarised by `learner` and ends at `learner_last`.
/// The leader holds its records after `history_base` (each ending at one of `boundaries`, the
/// last zxids of its held records) and its history ends at `leader_last`.
pub fn plan(
    leader: &BTreeMap<u32, Zxid>,
    leader_last: Zxid,
    history_base: Zxid,
    is_boundary: impl Fn(Zxid) -> bool,
    learner: &Summary,
    learner_last: Zxid,
) -> Plan {
    let common = common_prefix(leader, leader_last, learner);
    debug_assert!(common <= leader_last && common <= learner_last.max(learner.base));
    if common < history_base || (common > history_base && common < leader_last && !is_boundary(common)) {
        return Plan::Snap;
    }
    let trunc = (common < learner_last).then_some(common);
    Plan::Diff { trunc, from: common }
}

/// The epoch map after appending a record that ends at `last`.
pub fn note_append(epochs: &mut BTreeMap<u32, Zxid>, last: Zxid) {
    epochs.insert(epoch_of(last), last);
}

/// The epoch map after dropping every record after `after`.
pub fn note_truncate(epochs: &mut BTreeMap<u32, Zxid>, after: Zxid) {
    let keep = epoch_of(after);
    epochs.retain(|&e, _| e <= keep);
    if let Some(z) = epochs.get_mut(&keep) {
        *z = (*z).min(after);
    }
}

#[cfg(test)]
mod tests {
    use super::super::zxid;
    use super::*;

    fn map(v: &[(u32, u32)]) -> BTreeMap<u32, Zxid> {
        v.iter().map(|&(e, c)| (e, zxid(e, c))).collect()
    }

    fn summary(base: Zxid, v: &[(u32, u32)]) -> Summary {
        Summary { base, epochs: v.iter().map(|&(e, c)| (e, zxid(e, c))).collect() }
    }

    #[test]
    fn common_prefix_across_epochs() {
        // Leader: epoch 1 up to 9, epoch 3 up to 4. Learner: epoch 1 up to 7, then epoch 2
        // records the leader never had. The common prefix is (1,7): the learner drops its
        // epoch-2 tail and gets (1,8), (1,9), (3,1).. from the leader.
        let leader = map(&[(1, 9), (3, 4)]);
        let learner = summary(zxid(1, 3), &[(1, 7), (2, 2)]);
        assert_eq!(common_prefix(&leader, zxid(3, 4), &learner), zxid(1, 7));
        let all = |_z| true;
        let p = plan(&leader, zxid(3, 4), 0, all, &learner, zxid(2, 2));
        assert_eq!(p, Plan::Diff { trunc: Some(zxid(1, 7)), from: zxid(1, 7) });
        // A learner ahead within the leader's epoch: truncate to the leader's end.
        let learner = summary(zxid(1, 1), &[(1, 12)]);
        assert_eq!(common_prefix(&leader, zxid(3, 4), &learner), zxid(1, 9));
        // A learner behind: plain DIFF.
        let learner = summary(zxid(1, 2), &[(1, 5)]);
        let p = plan(&leader, zxid(3, 4), 0, all, &learner, zxid(1, 5));
        assert_eq!(p, Plan::Diff { trunc: None, from: zxid(1, 5) });
        // Records no longer held: SNAP.
        let p = plan(&leader, zxid(3, 4), zxid(1, 8), all, &learner, zxid(1, 5));
        assert_eq!(p, Plan::Snap);
        // No epochs in the summary: fall back to the base (always safe).
        let learner = summary(zxid(1, 2), &[]);
        let p = plan(&leader, zxid(3, 4), 0, all, &learner, zxid(2, 9));
        assert_eq!(p, Plan::Diff { trunc: Some(zxid(1, 2)), from: zxid(1, 2) });
        // The same history: nothing to do.
        let learner = summary(zxid(3, 4), &[]);
        let p = plan(&leader, zxid(3, 4), 0, all, &learner, zxid(3, 4));
        assert_eq!(p, Plan::Diff { trunc: None, from: zxid(3, 4) });
    }

    #[test]
    fn epoch_map_updates() {
        let mut m = map(&[(1, 9)]);
        note_append(&mut m, zxid(3, 1));
        note_append(&mut m, zxid(3, 4));
        assert_eq!(m, map(&[(1, 9), (3, 4)]));
        note_truncate(&mut m, zxid(1, 7));
        assert_eq!(m, map(&[(1, 7)]));
        note_truncate(&mut m, zxid(0, 0));
        assert!(m.is_empty());
    }
}
