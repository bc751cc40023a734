//! The leader's side of ZAB: discovery (a new epoch from a quorum's accepted epochs), the
//! synchronisation of each learner, broadcast with the quorum commit rule, pings and the
//! quorum liveness check.
//!
//! Part of the pure ZAB machine: no I/O, no clock.

use super::msg::QuorumMsg;
use super::sync::{self, Plan};
use super::*;

impl Zab {
    fn leading(&mut self) -> &mut Leading {
        match &mut self.role {
            Role::Leading(l) => l,
            _ => unreachable!("not leading"),
        }
    }

    pub(super) fn leader_message(&mut self, from: NodeId, conn: ConnId, m: QuorumMsg) {
        let now = self.now;
        let done = self.done_op;
        if let QuorumMsg::FollowerInfo { accepted_epoch, accepted_leader, last_zxid, observer } = m {
            if observer == self.cfg.is_voter(from) {
                return self.protocol_error(from, conn, "observer flag does not match the configuration".into());
            }
            self.epoch_floor = self.epoch_floor.max(accepted_epoch);
            let l = self.leading();
            let bound_elsewhere = !observer
                && l.phase > LeaderPhase::Discovery
                && (accepted_epoch > l.epoch || (accepted_epoch == l.epoch && accepted_leader != self.cfg.id))
                && accepted_leader != from;
            if bound_elsewhere {
                // A voter promised a newer epoch (to a leader that never established it) and
                // cannot follow ours: lead again under an epoch above every promise, or it stays
                // out for good.
                self.ready.notes.push(format!(
                    "server {from} promised epoch {accepted_epoch} to server {accepted_leader}; starting a new epoch"
                ));
                self.become_looking();
                return;
            }
            let l = self.leading();
            if let Some(old) = l.peers.get(&from) {
                if old.conn != conn {
                    let old = old.conn;
                    self.ready.close.push((from, old));
                }
            }
            let l = self.leading();
            l.peers.insert(
                from,
                Peer {
                    conn,
                    observer,
                    accepted_epoch,
                    current_epoch: 0,
                    last: last_zxid,
                    summary: Summary::default(),
                    sync: Sync::Info,
                    up_to_date: false,
                    heard: now,
                    acked: 0,
                    rounds: VecDeque::new(),
                    answered: 0,
                },
            );
            if l.phase > LeaderPhase::EpochProposed || (l.phase == LeaderPhase::EpochProposed && done >= l.accepted_op)
            {
                let epoch = l.epoch;
                l.peers.get_mut(&from).expect("inserted").sync = Sync::EpochSent;
                self.ready.messages.push((from, conn, QuorumMsg::LeaderInfo { epoch }));
            }
            return;
        }
        let Some(p) = self.leading().peers.get_mut(&from) else {
            // A connection we dropped (the learner went quiet, or reconnected): close it.
            self.ready.close.push((from, conn));
            return;
        };
        if p.conn != conn {
            self.ready.close.push((from, conn));
            return;
        }
        p.heard = now;
        match m {
            QuorumMsg::AckEpoch { current_epoch, last_zxid, summary } => {
                if p.sync != Sync::EpochSent {
                    return self.protocol_error(from, conn, "unexpected ACKEPOCH".into());
                }
                p.current_epoch = current_epoch;
                p.last = last_zxid;
                p.summary = summary;
                p.sync = Sync::EpochAcked;
                let l = self.leading();
                if l.phase < LeaderPhase::Broadcast && (current_epoch, last_zxid) > (l.prior_epoch, l.start_last) {
                    // While the epoch is being established, a learner with a newer history than
                    // ours means we must not lead. Once it is (broadcast), a learner that
                    // returns holds at most what we proposed: it is synced like any other.
                    self.become_looking();
                    return;
                }
                if l.current_op.is_some_and(|op| self.done_op >= op) {
                    self.start_sync(from);
                }
            }
            QuorumMsg::AckNewLeader { epoch } => {
                let l = self.leading();
                let p = l.peers.get_mut(&from).expect("checked");
                let Sync::Synced { last } = p.sync else {
                    return self.protocol_error(from, conn, "unexpected NEWLEADER ack".into());
                };
                if epoch != l.epoch {
                    return self.protocol_error(from, conn, format!("NEWLEADER ack for epoch {epoch}"));
                }
                p.sync = Sync::Acked;
                p.acked = p.acked.max(last);
                if l.phase == LeaderPhase::Broadcast {
                    let commit = self.commit;
                    let p = self.leading().peers.get_mut(&from).expect("checked");
                    p.up_to_date = true;
                    self.ready.messages.push((from, conn, QuorumMsg::UpToDate { commit }));
                    self.recompute_commit();
                }
            }
            QuorumMsg::Ack { zxid } => {
                if zxid > self.logged {
                    return self.protocol_error(from, conn, format!("ack of {zxid:x} never proposed"));
                }
                let l = self.leading();
                let p = l.peers.get_mut(&from).expect("checked");
                if p.sync == Sync::Acked && !p.observer {
                    p.acked = p.acked.max(zxid);
                    self.recompute_commit();
                }
            }
            QuorumMsg::PingReply => {
                let l = self.leading();
                let p = l.peers.get_mut(&from).expect("checked");
                if let Some(r) = p.rounds.pop_front() {
                    p.answered = p.answered.max(r);
                }
                self.release_held_sync();
            }
            QuorumMsg::Forward(bytes) => {
                let l = self.leading();
                if l.phase == LeaderPhase::Broadcast && l.peers.get(&from).is_some_and(|p| p.up_to_date) {
                    self.ready.forwarded.push((from, bytes));
                }
            }
            other => {
                self.protocol_error(from, conn, format!("a learner sent {}", message_kind(&other)));
            }
        }
    }

    /// Sends learner `id` what it needs to reach our history, then NEWLEADER.
    fn start_sync(&mut self, id: NodeId) {
        let (leader_last, history_base) = (self.logged, self.history_base);
        let l = match &self.role {
            Role::Leading(l) => l,
            _ => return,
        };
        let p = &l.peers[&id];
        let history = &self.history;
        let is_boundary = |z: Zxid| history.iter().any(|b| b.last == z);
        let plan = sync::plan(&self.epochs, leader_last, history_base, is_boundary, &p.summary, p.last);
        let conn = p.conn;
        match plan {
            Plan::Snap => {
                self.leading().peers.get_mut(&id).expect("present").sync = Sync::AwaitingSnapshot;
                self.ready.snapshots.push((id, conn));
            }
            Plan::Diff { trunc, from } => {
                if let Some(after) = trunc {
                    self.ready.messages.push((id, conn, QuorumMsg::Trunc { after }));
                }
                self.send_from(id, conn, from);
            }
        }
    }

    /// The rest of a sync stream: every held record after `from`, the commit point, NEWLEADER.
    fn send_from(&mut self, id: NodeId, conn: ConnId, from: Zxid) {
        for b in self.history.iter().filter(|b| b.last > from) {
            self.ready.messages.push((id, conn, QuorumMsg::Proposal(b.clone())));
        }
        if self.commit > from {
            self.ready.messages.push((id, conn, QuorumMsg::Commit { zxid: self.commit }));
        }
        let last = self.logged;
        let l = self.leading();
        let epoch = l.epoch;
        l.peers.get_mut(&id).expect("present").sync = Sync::Synced { last };
        self.ready.messages.push((id, conn, QuorumMsg::NewLeader { epoch }));
    }

    pub(super) fn on_snapshot_ready(
        &mut self,
        peer: NodeId,
        conn: ConnId,
        zxid: Zxid,
        bytes: Bytes,
        epochs: Vec<(u32, Zxid)>,
    ) {
        let Role::Leading(l) = &self.role else { return };
        let Some(p) = l.peers.get(&peer) else { return };
        if p.conn != conn || p.sync != Sync::AwaitingSnapshot {
            return;
        }
        if zxid < self.history_base || zxid > self.commit {
            // The records after it are no longer held (or it is not committed): ask again.
            self.ready.snapshots.push((peer, conn));
            return;
        }
        let total = bytes.len() as u64;
        let chunk = self.cfg.snapshot_chunk_bytes;
        let mut offset = 0usize;
        loop {
            let end = (offset + chunk).min(bytes.len());
            let epochs = if offset == 0 { epochs.clone() } else { Vec::new() };
            let m =
                QuorumMsg::SnapChunk { zxid, total, offset: offset as u64, epochs, bytes: bytes.slice(offset..end) };
            self.ready.messages.push((peer, conn, m));
            offset = end;
            if offset >= bytes.len() {
                break;
            }
        }
        self.send_from(peer, conn, zxid);
    }

    pub(super) fn on_propose(&mut self, b: Arc<Batch>) {
        assert!(self.can_propose() || self.serving, "propose only while leading and serving");
        assert!(self.leading().holding.is_none(), "nothing is proposed while a sync is held");
        if b.is_empty() && self.cfg.quorum() > 1 {
            let round = self.ping_round();
            self.leading().holding = Some((b, round));
            return self.release_held_sync();
        }
        self.propose_now(b);
    }

    /// Sends one PING to every peer; returns the round's number.
    fn ping_round(&mut self) -> u64 {
        let commit = self.commit;
        let l = self.leading();
        l.round += 1;
        let round = l.round;
        let mut out = Vec::new();
        for (&id, p) in l.peers.iter_mut() {
            p.rounds.push_back(round);
            out.push((id, p.conn, QuorumMsg::Ping { commit }));
        }
        self.ready.messages.extend(out);
        round
    }

    /// Proposes the held sync batch once a quorum of voters (this one included) answered a ping
    /// round sent after it.
    fn release_held_sync(&mut self) {
        let quorum = self.cfg.quorum();
        let l = self.leading();
        let Some((_, round)) = &l.holding else { return };
        let confirmed = 1 + l.peers.values().filter(|p| !p.observer && p.answered >= *round).count();
        if confirmed >= quorum {
            let (b, _) = l.holding.take().expect("checked");
            self.propose_now(b);
        }
    }

    fn propose_now(&mut self, b: Arc<Batch>) {
        let epoch = self.leading().epoch;
        if !b.is_empty() {
            assert_eq!(epoch_of(b.first), epoch, "a batch of another epoch");
            assert!(b.first <= b.last && follows(self.logged, b.first), "zxids rise by one");
        }
        self.append(b.clone());
        let l = self.leading();
        l.uncommitted_bytes += b.bytes.len();
        l.proposals.push_back(b.clone());
        let targets: Vec<(NodeId, ConnId)> = l
            .peers
            .iter()
            .filter(|(_, p)| matches!(p.sync, Sync::Synced { .. } | Sync::Acked))
            .map(|(&i, p)| (i, p.conn))
            .collect();
        for (id, conn) in targets {
            self.ready.messages.push((id, conn, QuorumMsg::Proposal(b.clone())));
        }
        self.recompute_commit();
    }

    /// The commit point: the largest zxid a quorum of voters holds durably.
    fn recompute_commit(&mut self) {
        let durable = self.durable;
        let quorum = self.cfg.quorum();
        let fault = self.cfg.fault;
        let l = self.leading();
        if l.phase != LeaderPhase::Broadcast {
            return;
        }
        let mut held: Vec<Zxid> = vec![durable];
        held.extend(l.peers.values().filter(|p| !p.observer && p.sync == Sync::Acked).map(|p| p.acked));
        held.sort_unstable_by(|a, b| b.cmp(a));
        let point = match fault {
            Some(Fault::CommitOnMinority) => held[0],
            None if held.len() >= quorum => held[quorum - 1],
            None => return,
        };
        if point > self.commit {
            self.commit = point;
            let l = self.leading();
            let targets: Vec<(NodeId, ConnId)> = l
                .peers
                .iter()
                .filter(|(_, p)| matches!(p.sync, Sync::Synced { .. } | Sync::Acked))
                .map(|(&i, p)| (i, p.conn))
                .collect();
            for (id, conn) in targets {
                self.ready.messages.push((id, conn, QuorumMsg::Commit { zxid: point }));
            }
        }
        // Batches up to the commit point are committed (an empty one as soon as it is proposed
        // behind committed records).
        let commit = self.commit;
        let l = self.leading();
        while l.proposals.front().is_some_and(|b| b.last <= commit) {
            let b = l.proposals.pop_front().expect("checked");
            l.uncommitted_bytes -= b.bytes.len();
        }
    }

    pub(super) fn leader_progress(&mut self) {
        let quorum = self.cfg.quorum();
        let me = self.cfg.id;
        let voter =
            |l: &Leading, pred: &dyn Fn(&Peer) -> bool| 1 + l.peers.values().filter(|p| !p.observer && pred(p)).count();
        // Discovery: a quorum's FOLLOWERINFO gives the new epoch.
        let l = self.leading();
        if l.phase == LeaderPhase::Discovery && voter(l, &|_| true) >= quorum {
            let epoch = l
                .peers
                .values()
                .map(|p| p.accepted_epoch)
                .max()
                .unwrap_or(0)
                .max(self.accepted_epoch)
                .max(self.epoch_floor)
                + 1;
            self.accepted_epoch = epoch;
            self.accepted_leader = me;
            if quorum == 1 {
                // This node alone is the quorum: it accepts and starts the epoch in one durable
                // write (nobody else's acknowledgement is awaited in between).
                self.current_epoch = epoch;
            }
            let op = self.store_epochs();
            let l = self.leading();
            l.epoch = epoch;
            l.accepted_op = op;
            l.phase = LeaderPhase::EpochProposed;
            if quorum == 1 {
                l.current_op = Some(op);
                l.phase = LeaderPhase::Synchronizing;
            }
        }
        let done = self.done_op;
        let l = self.leading();
        if l.phase == LeaderPhase::EpochProposed && done >= l.accepted_op {
            let epoch = l.epoch;
            let mut out = Vec::new();
            for (&id, p) in l.peers.iter_mut().filter(|(_, p)| p.sync == Sync::Info) {
                p.sync = Sync::EpochSent;
                out.push((id, p.conn, QuorumMsg::LeaderInfo { epoch }));
            }
            self.ready.messages.extend(out);
            let l = self.leading();
            if l.current_op.is_none() && voter(l, &|p| p.sync == Sync::EpochAcked) >= quorum {
                self.current_epoch = epoch;
                let op = self.store_epochs();
                let l = self.leading();
                l.current_op = Some(op);
                l.phase = LeaderPhase::Synchronizing;
            }
        }
        let l = self.leading();
        if l.phase >= LeaderPhase::Synchronizing && l.current_op.is_some_and(|op| done >= op) {
            let waiting: Vec<NodeId> =
                l.peers.iter().filter(|(_, p)| p.sync == Sync::EpochAcked).map(|(&i, _)| i).collect();
            for id in waiting {
                self.start_sync(id);
            }
            let durable = self.durable;
            let l = self.leading();
            let self_ready = durable >= l.start_last;
            if l.phase == LeaderPhase::Synchronizing && self_ready && voter(l, &|p| p.sync == Sync::Acked) >= quorum {
                // A quorum holds our whole history under the new epoch: it is committed.
                l.phase = LeaderPhase::Broadcast;
                let epoch = l.epoch;
                let start_last = l.start_last;
                self.commit = self.commit.max(start_last);
                let commit = self.commit;
                let l = self.leading();
                let mut out = Vec::new();
                for (&id, p) in l.peers.iter_mut().filter(|(_, p)| p.sync == Sync::Acked) {
                    p.up_to_date = true;
                    out.push((id, p.conn, QuorumMsg::UpToDate { commit }));
                    if commit > p.acked {
                        out.push((id, p.conn, QuorumMsg::Commit { zxid: commit }));
                    }
                }
                self.ready.messages.extend(out);
                self.serving = true;
                self.ready.roles.push(RoleEvent::Serving { epoch });
            }
        }
        if self.leading().phase == LeaderPhase::Broadcast {
            self.recompute_commit();
        }
    }

    pub(super) fn leader_tick(&mut self) {
        let now = self.now;
        let (sync_limit, init_limit, ping) =
            (self.cfg.sync_limit_ticks, self.cfg.init_limit_ticks, self.cfg.ping_ticks);
        let quorum = self.cfg.quorum();
        let commit = self.commit;
        let l = self.leading();
        // Learners that went quiet are dropped.
        let quiet: Vec<(NodeId, ConnId)> = l
            .peers
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.heard) > sync_limit)
            .map(|(&i, p)| (i, p.conn))
            .collect();
        for &(id, _) in &quiet {
            l.peers.remove(&id);
        }
        self.ready.close.extend(quiet);
        let l = self.leading();
        if l.phase < LeaderPhase::Broadcast {
            if now.saturating_sub(l.since) > init_limit {
                self.become_looking();
            }
            return;
        }
        let alive = 1 + l.peers.values().filter(|p| !p.observer && p.up_to_date).count();
        if alive < quorum {
            self.become_looking();
            return;
        }
        if now >= l.next_ping {
            l.next_ping = now + ping;
            let _ = commit;
            self.ping_round();
        }
    }
}

pub(super) fn message_kind(m: &QuorumMsg) -> &'static str {
    match m {
        QuorumMsg::FollowerInfo { .. } => "FOLLOWERINFO",
        QuorumMsg::AckEpoch { .. } => "ACKEPOCH",
        QuorumMsg::AckNewLeader { .. } => "ACK(NEWLEADER)",
        QuorumMsg::Ack { .. } => "ACK",
        QuorumMsg::PingReply => "PING reply",
        QuorumMsg::Forward(_) => "REQUEST",
        QuorumMsg::LeaderInfo { .. } => "LEADERINFO",
        QuorumMsg::Trunc { .. } => "TRUNC",
        QuorumMsg::SnapChunk { .. } => "SNAP",
        QuorumMsg::Proposal(_) => "PROPOSAL",
        QuorumMsg::Commit { .. } => "COMMIT",
        QuorumMsg::NewLeader { .. } => "NEWLEADER",
        QuorumMsg::UpToDate { .. } => "UPTODATE",
        QuorumMsg::Ping { .. } => "PING",
    }
}
