//! The learner's side of ZAB (followers and observers): the handshake with a leader (accept
//! its epoch only if it is newer), the sync stream (TRUNC, SNAP, records, NEWLEADER), then
//! broadcast: log each proposal, ack once durable (followers only), apply what is committed.
//!
//! Part of the pure ZAB machine: no I/O, no clock.

use super::msg::QuorumMsg;
use super::*;

impl Zab {
    fn learning(&mut self) -> &mut Learning {
        match &mut self.role {
            Role::Learning(l) => l,
            _ => unreachable!("not learning"),
        }
    }

    fn learner_error(&mut self, what: String) {
        let (leader, conn) = {
            let l = self.learning();
            (l.leader, l.conn.expect("connected"))
        };
        self.protocol_error(leader, conn, what);
    }

    pub(super) fn learner_message(&mut self, m: QuorumMsg) {
        let now = self.now;
        let (leader, phase) = {
            let l = self.learning();
            l.heard = now;
            (l.leader, l.phase)
        };
        let conn = self.learning().conn.expect("connected");
        let syncing = matches!(
            phase,
            LearnerPhase::Syncing
                | LearnerPhase::AckingNewLeader
                | LearnerPhase::AwaitUpToDate
                | LearnerPhase::Broadcast
        );
        match m {
            QuorumMsg::LeaderInfo { epoch } if phase == LearnerPhase::InfoSent => {
                // Accept an epoch newer than our promise, the one we promised to this leader, or
                // any epoch when the promise was to ourselves: we led that epoch's discovery and
                // gave it up, so nobody can build on it (a promise to another leader holds: it
                // may still be using what we told it).
                // An observer's acknowledgements never count, so its promise protects nobody: it
                // follows whichever leader the voters chose.
                let observer = self.learning().observer;
                let fresh = epoch > self.accepted_epoch
                    || (epoch == self.accepted_epoch && self.accepted_leader == leader)
                    || self.accepted_leader == self.cfg.id
                    || observer;
                if !fresh {
                    // A leader of an epoch we already left behind.
                    self.become_looking();
                    return;
                }
                let changed = epoch != self.accepted_epoch || self.accepted_leader != leader;
                self.accepted_epoch = epoch;
                self.accepted_leader = leader;
                let gate = if changed { self.store_epochs() } else { self.done_op };
                let l = self.learning();
                l.new_epoch = epoch;
                l.gate = gate;
                l.phase = LearnerPhase::AckingEpoch;
            }
            QuorumMsg::Trunc { after } if phase == LearnerPhase::Syncing => {
                if after < self.applied || after > self.logged {
                    return self.learner_error(format!("TRUNC to {after:x} outside (applied, logged]"));
                }
                self.truncate(after);
            }
            QuorumMsg::SnapChunk { zxid, total, offset, epochs, bytes } if phase == LearnerPhase::Syncing => {
                if total > self.cfg.snapshot_bytes_max {
                    return self.learner_error(format!("snapshot of {total} bytes is over the limit"));
                }
                let l = self.learning();
                let buf =
                    l.snap.get_or_insert_with(|| SnapBuf { zxid, total, epochs: epochs.clone(), bytes: Vec::new() });
                if buf.zxid != zxid || buf.total != total || buf.bytes.len() as u64 != offset {
                    return self.learner_error("snapshot chunks out of order".into());
                }
                buf.bytes.extend_from_slice(&bytes);
                if buf.bytes.len() as u64 == total {
                    let buf = l.snap.take().expect("present");
                    self.install_snapshot(buf);
                }
            }
            QuorumMsg::Proposal(b) if syncing => {
                let ok = if b.is_empty() { b.last == self.logged } else { follows(self.logged, b.first) };
                if !ok {
                    return self.learner_error(format!("record {:x}..{:x} after {:x}", b.first, b.last, self.logged));
                }
                self.append(b);
            }
            QuorumMsg::Commit { zxid } if syncing => {
                if zxid > self.logged {
                    return self.learner_error(format!("COMMIT of {zxid:x} not received"));
                }
                self.commit = self.commit.max(zxid);
            }
            QuorumMsg::NewLeader { epoch } if phase == LearnerPhase::Syncing => {
                if epoch != self.learning().new_epoch {
                    return self.learner_error(format!("NEWLEADER for epoch {epoch}"));
                }
                self.current_epoch = epoch;
                let gate = self.store_epochs();
                let l = self.learning();
                l.gate = gate;
                l.phase = LearnerPhase::AckingNewLeader;
            }
            QuorumMsg::UpToDate { commit } if phase == LearnerPhase::AwaitUpToDate => {
                if commit > self.logged {
                    return self.learner_error(format!("UPTODATE at {commit:x} not received"));
                }
                self.commit = self.commit.max(commit);
                self.learning().phase = LearnerPhase::Broadcast;
                self.serving = true;
                let epoch = self.current_epoch;
                self.ready.roles.push(RoleEvent::Serving { epoch });
            }
            QuorumMsg::Ping { commit } => {
                if syncing && commit <= self.logged {
                    self.commit = self.commit.max(commit);
                }
                self.ready.messages.push((leader, conn, QuorumMsg::PingReply));
            }
            other => {
                self.learner_error(format!("unexpected {} in phase {phase:?}", leader::message_kind(&other)));
            }
        }
    }

    fn install_snapshot(&mut self, buf: SnapBuf) {
        let SnapBuf { zxid, epochs, bytes, .. } = buf;
        let bytes = Bytes::from(bytes);
        self.logged = zxid;
        self.epochs = epochs.iter().copied().collect();
        self.history.clear();
        self.history_bytes = 0;
        self.history_base = zxid;
        self.pending.clear();
        // The leader's committed state: it replaces ours, even one we had applied further
        // (we serve nobody while syncing).
        self.commit = self.commit.max(zxid);
        self.applied = self.applied.min(zxid);
        self.persist(Storage::Snapshot { zxid, bytes: bytes.clone(), epochs });
        self.pending.push_back(Pending::Snapshot { zxid, bytes });
    }

    /// Sends what waited for storage: ACKEPOCH once the epoch is durable, the NEWLEADER ack
    /// once the whole sync stream and the epoch are, then an ACK for each durable advance.
    pub(super) fn learner_progress(&mut self) {
        let done = self.done_op;
        let (current, logged, durable) = (self.current_epoch, self.logged, self.durable);
        let summary = self.summary();
        let l = self.learning();
        let (leader, Some(conn)) = (l.leader, l.conn) else { return };
        match l.phase {
            LearnerPhase::AckingEpoch if done >= l.gate => {
                l.phase = LearnerPhase::Syncing;
                let m = QuorumMsg::AckEpoch { current_epoch: current, last_zxid: logged, summary };
                self.ready.messages.push((leader, conn, m));
            }
            LearnerPhase::AckingNewLeader if done >= l.gate => {
                l.phase = LearnerPhase::AwaitUpToDate;
                l.acked = durable;
                let epoch = l.new_epoch;
                self.ready.messages.push((leader, conn, QuorumMsg::AckNewLeader { epoch }));
            }
            LearnerPhase::AwaitUpToDate | LearnerPhase::Broadcast if !l.observer && durable > l.acked => {
                l.acked = durable;
                self.ready.messages.push((leader, conn, QuorumMsg::Ack { zxid: durable }));
            }
            _ => {}
        }
    }
}
