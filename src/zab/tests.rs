//! Unit tests of the ZAB machine on a tiny in-memory cluster with an instant, lossless network
//! and disk. The seeded fault simulator (tests/simulator.rs) is the real test; these keep the
//! basic flows readable.

use super::*;

pub(super) fn config(id: NodeId, voters: &[NodeId], observers: &[NodeId]) -> ZabConfig {
    ZabConfig {
        id,
        voters: voters.to_vec(),
        observers: observers.to_vec(),
        init_limit_ticks: 50,
        sync_limit_ticks: 20,
        ping_ticks: 5,
        election_resend_ticks: 10,
        finalize_ticks: 2,
        dial_retry_ticks: 2,
        history_bytes_max: 1 << 20,
        uncommitted_bytes_max: 1 << 20,
        snapshot_chunk_bytes: 7,
        snapshot_bytes_max: 1 << 20,
        zxid_counter_max: 1000,
        fault: None,
    }
}

struct Disk {
    log: Vec<Arc<Batch>>,
    snapshot: Option<(Zxid, Bytes)>,
}

struct Cluster {
    nodes: BTreeMap<NodeId, Zab>,
    disks: BTreeMap<NodeId, Disk>,
    applied: BTreeMap<NodeId, Vec<Zxid>>,
    down: Vec<NodeId>,
    next_conn: ConnId,
    /// conn -> (dialer, acceptor)
    conns: BTreeMap<ConnId, (NodeId, NodeId)>,
    queue: VecDeque<(NodeId, Input)>,
}

impl Cluster {
    fn new(voters: &[NodeId], observers: &[NodeId]) -> Cluster {
        let mut c = Cluster {
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            applied: BTreeMap::new(),
            down: Vec::new(),
            next_conn: 1,
            conns: BTreeMap::new(),
            queue: VecDeque::new(),
        };
        for &id in voters.iter().chain(observers) {
            c.nodes.insert(id, Zab::new(config(id, voters, observers), Start::default()));
            c.disks.insert(id, Disk { log: Vec::new(), snapshot: None });
            c.applied.insert(id, Vec::new());
        }
        c
    }

    fn drain(&mut self, id: NodeId) {
        let ready = self.nodes.get_mut(&id).unwrap().ready();
        let mut upto = None;
        for (seq, op) in ready.storage {
            let d = self.disks.get_mut(&id).unwrap();
            match op {
                Storage::Append(b) => d.log.push(b),
                Storage::Truncate { after } => d.log.retain(|b| b.last <= after),
                Storage::Snapshot { zxid, bytes, .. } => {
                    d.log.clear();
                    d.snapshot = Some((zxid, bytes));
                }
                Storage::Epochs { .. } => {}
            }
            upto = Some(seq);
        }
        if let Some(upto) = upto {
            self.queue.push_back((id, Input::Persisted { upto }));
        }
        for a in ready.apply {
            if let Apply::Batch(b) = a {
                if !b.is_empty() {
                    self.applied.get_mut(&id).unwrap().push(b.last);
                }
            }
        }
        for (to, note) in ready.notifications {
            self.queue.push_back((to, Input::Notification { from: id, note }));
        }
        for (to, conn, msg) in ready.messages {
            if self.conns.contains_key(&conn) {
                self.queue.push_back((to, Input::Message { from: id, conn, msg }));
            }
        }
        for (peer, conn) in ready.close {
            if self.conns.remove(&conn).is_some() {
                self.queue.push_back((peer, Input::Disconnected { peer: id, conn }));
            }
        }
        for leader in ready.dial {
            let conn = self.next_conn;
            self.next_conn += 1;
            if self.down.contains(&leader) {
                self.queue.push_back((id, Input::Disconnected { peer: leader, conn }));
            } else {
                self.conns.insert(conn, (id, leader));
                self.queue.push_back((id, Input::Connected { peer: leader, conn }));
            }
        }
        for (peer, conn) in ready.snapshots {
            let z = self.nodes[&id].status().applied;
            let epochs = self.nodes[&id].epochs().iter().map(|(&e, &z)| (e, z)).collect();
            let input = Input::SnapshotReady { peer, conn, zxid: z, bytes: Bytes::from_static(b"state-bytes"), epochs };
            self.queue.push_back((id, input));
        }
        assert!(ready.errors.is_empty(), "node {id}: {:?}", ready.errors);
    }

    fn run(&mut self, ticks: u64) {
        for _ in 0..ticks {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                if !self.down.contains(&id) {
                    self.queue.push_back((id, Input::Tick));
                }
            }
            while let Some((id, input)) = self.queue.pop_front() {
                if self.down.contains(&id) {
                    continue;
                }
                self.nodes.get_mut(&id).unwrap().step(input);
                self.drain(id);
            }
        }
    }

    fn leader(&self) -> Option<NodeId> {
        let leaders: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(id, n)| !self.down.contains(id) && n.status().state == PeerState::Leading && n.status().serving)
            .map(|(&id, _)| id)
            .collect();
        assert!(leaders.len() <= 1, "two serving leaders: {leaders:?}");
        leaders.first().copied()
    }

    fn propose(&mut self, n: u32) {
        let id = self.leader().expect("a leader");
        for _ in 0..n {
            let node = self.nodes.get_mut(&id).unwrap();
            let last = node.last_logged();
            let epoch = node.status().epoch;
            let first = if epoch_of(last) == epoch { last + 1 } else { zxid(epoch, 1) };
            let b = Arc::new(Batch { first, last: first, bytes: Bytes::from(format!("txn {first:x}")) });
            node.step(Input::Propose(b));
            self.drain(id);
        }
    }

    fn crash(&mut self, id: NodeId) {
        self.down.push(id);
        let gone: Vec<ConnId> = self.conns.iter().filter(|(_, (a, b))| *a == id || *b == id).map(|(&c, _)| c).collect();
        for c in gone {
            let (a, b) = self.conns.remove(&c).unwrap();
            let other = if a == id { b } else { a };
            self.queue.push_back((other, Input::Disconnected { peer: id, conn: c }));
        }
    }
}

#[test]
fn standalone_leads_itself_and_commits() {
    let mut c = Cluster::new(&[1], &[]);
    c.run(3);
    assert_eq!(c.leader(), Some(1));
    c.propose(3);
    c.run(1);
    assert_eq!(c.applied[&1], vec![zxid(1, 1), zxid(1, 2), zxid(1, 3)]);
}

#[test]
fn three_nodes_elect_replicate_and_fail_over() {
    let mut c = Cluster::new(&[1, 2, 3], &[4]);
    c.run(10);
    let l = c.leader().expect("elected");
    assert_eq!(l, 3, "the highest id wins among equal histories");
    c.propose(5);
    c.run(3);
    for id in [1, 2, 3, 4] {
        assert_eq!(c.applied[&id].len(), 5, "node {id} applied {:?}", c.applied[&id]);
    }
    c.crash(3);
    c.run(10);
    let l2 = c.leader().expect("re-elected");
    assert_ne!(l2, 3);
    c.propose(2);
    c.run(3);
    for id in [1, 2, 4] {
        assert_eq!(c.applied[&id].len(), 7, "node {id} applied {:?}", c.applied[&id]);
        assert_eq!(epoch_of(*c.applied[&id].last().unwrap()), 2);
    }
}

#[test]
fn a_minority_never_commits() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run(10);
    c.propose(2);
    c.run(3);
    let l = c.leader().unwrap();
    let others: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&i| i != l).collect();
    c.crash(others[0]);
    c.crash(others[1]);
    c.run(1);
    // The leader may still believe it leads for a moment, but nothing new commits.
    let before = c.applied[&l].len();
    if c.leader() == Some(l) {
        c.propose(2);
    }
    c.run(30);
    assert_eq!(c.applied[&l].len(), before);
    assert_eq!(c.leader(), None, "the leader steps down without a quorum");
}
