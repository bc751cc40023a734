//! The data tree: znodes with data, ACL and stat, held once per node and shared by every core.
//!
//! A `Tree` is a persistent (structurally shared) map of path to immutable node. The commit
//! core applies transactions to its own copy and publishes snapshots; shards read snapshots
//! without locks, and a snapshot never changes after it is published. This module never
//! validates requests (that is `prep`) and never reads a clock: times come in transactions.

pub mod acl;
pub mod path;

use crate::proto::codes::{CONTAINER_OWNER, TTL_MARKER};
use crate::proto::{Acl, Stat};
use crate::txn::{Txn, TxnBody, TxnOp};
use bytes::Bytes;
use std::sync::Arc;

/// A znode path, shared between the map key, the parent's child set and transactions.
pub type Path = Arc<str>;
type ChildSet = imbl::OrdSet<Arc<str>>;

/// One znode. Immutable once in a published tree; updates make a new `Node`.
#[derive(Debug, Clone)]
pub struct Node {
    pub data: Option<Bytes>,
    pub acl: Arc<Vec<Acl>>,
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    /// The stored child version: number of children ever created (deletes do not change it).
    pub cversion: i32,
    pub aversion: i32,
    /// Stored ephemeralOwner: session id, container marker, TTL marker | ttl, or 0.
    pub owner: i64,
    pub pzxid: i64,
    /// Children, as their full paths (the same shared strings the map is keyed by, so a child
    /// costs no second allocation); `None` while the node has no children.
    children: Option<ChildSet>,
}

/// What kind of node the stored owner says this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Persistent,
    Ephemeral(i64),
    Container,
    Ttl(i64),
}

pub fn kind_of_owner(owner: i64) -> Kind {
    if owner == 0 {
        Kind::Persistent
    } else if owner == CONTAINER_OWNER {
        Kind::Container
    } else if owner & TTL_MARKER == TTL_MARKER {
        Kind::Ttl(owner & !TTL_MARKER)
    } else {
        Kind::Ephemeral(owner)
    }
}

impl Node {
    /// A node as stored in a snapshot (children are rebuilt by `Tree::from_nodes`).
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        data: Option<Bytes>,
        acl: Arc<Vec<Acl>>,
        czxid: i64,
        mzxid: i64,
        ctime: i64,
        mtime: i64,
        version: i32,
        cversion: i32,
        aversion: i32,
        owner: i64,
        pzxid: i64,
    ) -> Node {
        Node { data, acl, czxid, mzxid, ctime, mtime, version, cversion, aversion, owner, pzxid, children: None }
    }

    fn new(data: Option<Bytes>, acl: Arc<Vec<Acl>>, zxid: i64, time: i64, owner: i64) -> Node {
        Node {
            data,
            acl,
            czxid: zxid,
            mzxid: zxid,
            ctime: time,
            mtime: time,
            version: 0,
            cversion: 0,
            aversion: 0,
            owner,
            pzxid: zxid,
            children: None,
        }
    }

    pub fn kind(&self) -> Kind {
        kind_of_owner(self.owner)
    }

    pub fn num_children(&self) -> usize {
        self.children.as_ref().map_or(0, |c| c.len())
    }

    /// Child names (the last path segment), in path order.
    pub fn children(&self) -> impl Iterator<Item = &str> {
        self.child_paths().map(|p| path::name(p))
    }

    /// Children's full paths.
    pub fn child_paths(&self) -> impl Iterator<Item = &Arc<str>> {
        self.children.iter().flat_map(|c| c.iter())
    }

    pub fn data_len(&self) -> usize {
        self.data.as_ref().map_or(0, |d| d.len())
    }

    /// The Stat clients see: shown cversion is `2 * stored - numChildren`; containers and TTL
    /// nodes show ephemeralOwner 0.
    pub fn stat(&self) -> Stat {
        let n = self.num_children() as i32;
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self.cversion.wrapping_mul(2).wrapping_sub(n),
            aversion: self.aversion,
            ephemeral_owner: match self.kind() {
                Kind::Ephemeral(s) => s,
                _ => 0,
            },
            data_length: self.data_len() as i32,
            num_children: n,
            pzxid: self.pzxid,
        }
    }
}

/// Which watch event a tree change fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    Created,
    Deleted,
    DataChanged,
    /// Fired on the parent of a created or deleted node.
    ChildrenChanged,
}

/// One watch trigger produced by applying a transaction. `acl` is the ACL of `path` (for the
/// READ filter on delivery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub kind: TriggerKind,
    pub path: Path,
    pub acl: Arc<Vec<Acl>>,
}

/// The whole data tree at one zxid.
#[derive(Clone)]
pub struct Tree {
    /// Path -> node. A B-tree rather than a hash trie: about 60 bytes per entry of overhead
    /// instead of about 320 (measured at 1M nodes), for a few more comparisons per lookup.
    nodes: imbl::OrdMap<Path, Arc<Node>>,
    ephemerals: imbl::OrdMap<i64, imbl::OrdSet<Path>>,
    /// Containers and TTL nodes: the reaper's candidates.
    reapable: imbl::OrdSet<Path>,
    last_zxid: i64,
    data_size: u64,
    /// The last zxid of each earlier epoch this tree has applied (replication finds common
    /// history from it; the current epoch ends at `last_zxid`). Shared: it changes once per
    /// epoch, the tree is cloned once per batch.
    past_epochs: Arc<Vec<(u32, i64)>>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new()
    }
}

impl Tree {
    /// A fresh tree: `/`, `/zookeeper`, `/zookeeper/quota`, `/zookeeper/config`.
    pub fn new() -> Tree {
        let all = Arc::new(vec![Acl::world(crate::proto::codes::perm::ALL)]);
        let mut t = Tree {
            nodes: imbl::OrdMap::new(),
            ephemerals: imbl::OrdMap::new(),
            reapable: imbl::OrdSet::new(),
            last_zxid: 0,
            data_size: 0,
            past_epochs: Arc::new(Vec::new()),
        };
        let empty = Some(Bytes::new());
        let mut root = Node::new(empty.clone(), all.clone(), 0, 0, 0);
        let (zk_path, quota_path, config_path): (Path, Path, Path) =
            ("/zookeeper".into(), "/zookeeper/quota".into(), "/zookeeper/config".into());
        root.children = Some(ChildSet::unit(zk_path.clone()));
        let mut zk = Node::new(empty.clone(), all.clone(), 0, 0, 0);
        zk.children = Some([quota_path.clone(), config_path.clone()].into_iter().collect());
        let quota = Node::new(empty.clone(), all, 0, 0, 0);
        let mut config = Node::new(empty, Arc::new(acl::read_only_world()), 0, 0, 0);
        config.aversion = -1;
        t.nodes.insert("/".into(), Arc::new(root));
        t.nodes.insert(zk_path, Arc::new(zk));
        t.nodes.insert(quota_path, Arc::new(quota));
        t.nodes.insert(config_path, Arc::new(config));
        t
    }

    /// Looks a node up; `""` is the root, as on the real server.
    pub fn get(&self, path: &str) -> Option<&Arc<Node>> {
        self.nodes.get(if path.is_empty() { "/" } else { path })
    }

    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// The last zxid of each epoch applied, oldest first.
    pub fn epochs(&self) -> Vec<(u32, i64)> {
        let mut v = (*self.past_epochs).clone();
        if self.last_zxid > 0 {
            v.push(((self.last_zxid >> 32) as u32, self.last_zxid));
        }
        v
    }

    /// Restores the epoch map a snapshot recorded (its last entry is the current epoch).
    pub fn set_epochs(&mut self, mut epochs: Vec<(u32, i64)>) {
        if epochs.last().is_some_and(|&(_, z)| z == self.last_zxid) {
            epochs.pop();
        }
        self.past_epochs = Arc::new(epochs);
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn approximate_data_size(&self) -> u64 {
        self.data_size
    }

    /// Ephemeral paths owned by `session`, sorted.
    pub fn ephemerals_of(&self, session: i64) -> Vec<Path> {
        self.ephemerals.get(&session).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    /// Sessions that own ephemeral nodes, sorted.
    pub fn ephemeral_sessions(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.ephemerals.keys().copied().collect();
        v.sort();
        v
    }

    pub fn ephemeral_count(&self) -> usize {
        self.ephemerals.values().map(|s| s.len()).sum()
    }

    /// Every node with its path, in no particular order (for snapshots).
    pub fn iter(&self) -> impl Iterator<Item = (&Path, &Arc<Node>)> {
        self.nodes.iter()
    }

    /// Rebuilds a tree from `(path, node)` pairs as a snapshot holds them (children lists are
    /// derived from the paths; the pairs must include every ancestor). `last_zxid` is the
    /// snapshot's zxid.
    pub fn from_nodes(nodes: impl IntoIterator<Item = (Path, Node)>, last_zxid: i64) -> Result<Tree, String> {
        let mut t = Tree {
            nodes: imbl::OrdMap::new(),
            ephemerals: imbl::OrdMap::new(),
            reapable: imbl::OrdSet::new(),
            last_zxid,
            data_size: 0,
            past_epochs: Arc::new(Vec::new()),
        };
        let mut all: Vec<(Path, Node)> = nodes.into_iter().collect();
        // Parents before children: a shorter path can never be a descendant of a longer one.
        all.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(&b.0)));
        for (p, mut n) in all {
            n.children = None;
            if &*p != "/" {
                let parent = path::parent(&p).ok_or_else(|| format!("bad path {p:?}"))?;
                let par = t.nodes.get_mut(parent).ok_or_else(|| format!("{p:?} has no parent node"))?;
                Arc::make_mut(par).children.get_or_insert_with(ChildSet::new).insert(p.clone());
            }
            // Mirrors `apply`: data always counts, the path only for nodes a create made.
            t.data_size += n.data_len() as u64;
            if !path::is_system(&p) {
                t.data_size += p.len() as u64;
            }
            match n.kind() {
                Kind::Ephemeral(s) => {
                    t.ephemerals.entry(s).or_default().insert(p.clone());
                }
                Kind::Container | Kind::Ttl(_) => {
                    t.reapable.insert(p.clone());
                }
                Kind::Persistent => {}
            }
            if t.nodes.insert(p.clone(), Arc::new(n)).is_some() {
                return Err(format!("duplicate node {p:?}"));
            }
        }
        if t.get("/").is_none() {
            return Err("snapshot has no root node".into());
        }
        Ok(t)
    }

    /// Containers and TTL nodes, for the reaper.
    pub fn reapable(&self) -> impl Iterator<Item = &Path> {
        self.reapable.iter()
    }

    /// Total number of descendants of `path` (getAllChildrenNumber).
    pub fn descendant_count(&self, path: &str) -> usize {
        let mut stack: Vec<Path> = match self.get(path) {
            Some(node) => node.child_paths().cloned().collect(),
            None => return 0,
        };
        let mut n = 0;
        while let Some(p) = stack.pop() {
            n += 1;
            if let Some(node) = self.get(&p) {
                stack.extend(node.child_paths().cloned());
            }
        }
        n
    }

    /// Applies a committed transaction, appending watch triggers and, per op, the node's Stat
    /// right after that op (for create, setData and setACL replies).
    pub fn apply(&mut self, txn: &Txn, triggers: &mut Vec<Trigger>, stats: &mut Vec<Option<Stat>>) {
        if txn.consumes_zxid() {
            assert!(txn.zxid > self.last_zxid, "zxids must rise: {:#x} after {:#x}", txn.zxid, self.last_zxid);
            if self.last_zxid > 0 && (txn.zxid >> 32) != (self.last_zxid >> 32) {
                let ended = ((self.last_zxid >> 32) as u32, self.last_zxid);
                Arc::make_mut(&mut self.past_epochs).push(ended);
            }
            self.last_zxid = txn.zxid;
        }
        match &txn.body {
            TxnBody::Ops { ops, .. } => {
                for o in ops {
                    let s = self.apply_op(o, txn.zxid, txn.time, triggers);
                    stats.push(s);
                }
            }
            TxnBody::CloseSession => {
                if let Some(paths) = self.ephemerals.get(&txn.session).cloned() {
                    for p in paths.iter() {
                        self.apply_op(&TxnOp::Delete { path: p.clone() }, txn.zxid, txn.time, triggers);
                    }
                }
                self.ephemerals.remove(&txn.session);
            }
            TxnBody::CreateSession { .. } | TxnBody::Error { .. } | TxnBody::MultiError { .. } | TxnBody::Barrier => {}
        }
    }

    /// Applies one op. Panics if the op contradicts the tree: `prep` guarantees it does not.
    pub fn apply_op(&mut self, op: &TxnOp, zxid: i64, time: i64, triggers: &mut Vec<Trigger>) -> Option<Stat> {
        match op {
            TxnOp::Create { path, data, acl, owner } => {
                let parent_path = path::parent(path).expect("create path has a parent");
                let parent = self.nodes.get_mut(parent_path).expect("create parent exists");
                let parent = Arc::make_mut(parent);
                parent.cversion = parent.cversion.wrapping_add(1);
                parent.pzxid = zxid;
                parent.children.get_or_insert_with(ChildSet::new).insert(path.clone());
                let parent_acl = parent.acl.clone();
                let node = Node::new(data.clone(), acl.clone(), zxid, time, *owner);
                let stat = node.stat();
                self.data_size += node.data_len() as u64 + path.len() as u64;
                match node.kind() {
                    Kind::Ephemeral(s) => {
                        self.ephemerals.entry(s).or_default().insert(path.clone());
                    }
                    Kind::Container | Kind::Ttl(_) => {
                        self.reapable.insert(path.clone());
                    }
                    Kind::Persistent => {}
                }
                let prev = self.nodes.insert(path.clone(), Arc::new(node));
                assert!(prev.is_none(), "create of an existing node {path}");
                triggers.push(Trigger { kind: TriggerKind::Created, path: path.clone(), acl: acl.clone() });
                triggers.push(Trigger {
                    kind: TriggerKind::ChildrenChanged,
                    path: parent_path.into(),
                    acl: parent_acl,
                });
                Some(stat)
            }
            TxnOp::Delete { path } => {
                let node = self.nodes.remove(&**path).expect("delete of a missing node");
                assert_eq!(node.num_children(), 0, "delete of a node with children");
                self.data_size = self.data_size.saturating_sub(node.data_len() as u64 + path.len() as u64);
                match node.kind() {
                    Kind::Ephemeral(s) => {
                        if let Some(set) = self.ephemerals.get_mut(&s) {
                            set.remove(path);
                            if set.is_empty() {
                                self.ephemerals.remove(&s);
                            }
                        }
                    }
                    Kind::Container | Kind::Ttl(_) => {
                        self.reapable.remove(path);
                    }
                    Kind::Persistent => {}
                }
                let parent_path = path::parent(path).expect("delete path has a parent");
                let parent = Arc::make_mut(self.nodes.get_mut(parent_path).expect("delete parent exists"));
                parent.pzxid = zxid;
                if let Some(c) = parent.children.as_mut() {
                    c.remove(path);
                    if c.is_empty() {
                        parent.children = None;
                    }
                }
                let parent_acl = parent.acl.clone();
                triggers.push(Trigger { kind: TriggerKind::Deleted, path: path.clone(), acl: node.acl.clone() });
                triggers.push(Trigger {
                    kind: TriggerKind::ChildrenChanged,
                    path: parent_path.into(),
                    acl: parent_acl,
                });
                None
            }
            TxnOp::SetData { path, data } => {
                let node = Arc::make_mut(self.nodes.get_mut(&**path).expect("setData of a missing node"));
                self.data_size =
                    self.data_size.saturating_sub(node.data_len() as u64) + data.as_ref().map_or(0, |d| d.len()) as u64;
                node.data = data.clone();
                node.version = node.version.wrapping_add(1);
                node.mzxid = zxid;
                node.mtime = time;
                let stat = node.stat();
                let acl = node.acl.clone();
                triggers.push(Trigger { kind: TriggerKind::DataChanged, path: path.clone(), acl });
                Some(stat)
            }
            TxnOp::SetAcl { path, acl } => {
                let node = Arc::make_mut(self.nodes.get_mut(&**path).expect("setACL of a missing node"));
                node.acl = acl.clone();
                node.aversion = node.aversion.wrapping_add(1);
                Some(node.stat())
            }
            TxnOp::Check { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(zxid: i64, ops: Vec<TxnOp>) -> Txn {
        Txn { zxid, time: zxid * 10, session: 1, body: TxnBody::Ops { ops, multi: false } }
    }

    fn create(path: &str, owner: i64) -> TxnOp {
        TxnOp::Create { path: path.into(), data: Some(Bytes::from_static(b"d")), acl: Arc::new(vec![]), owner }
    }

    #[test]
    fn fresh_tree_stats() {
        let t = Tree::new();
        assert_eq!(t.get("/").unwrap().stat().cversion, -1);
        assert_eq!(t.get("/zookeeper").unwrap().stat().cversion, -2);
        assert_eq!(t.get("/zookeeper/config").unwrap().stat().aversion, -1);
        assert_eq!(t.get("").unwrap().stat().num_children, 1);
    }

    #[test]
    fn create_delete_and_cversion() {
        let mut t = Tree::new();
        let (mut tr, mut st) = (vec![], vec![]);
        t.apply(&txn(1, vec![create("/a", 0)]), &mut tr, &mut st);
        t.apply(&txn(2, vec![create("/a/b", 0)]), &mut tr, &mut st);
        let a = t.get("/a").unwrap().stat();
        assert_eq!((a.czxid, a.mzxid, a.pzxid, a.cversion, a.num_children), (1, 1, 2, 1, 1));
        t.apply(&txn(3, vec![TxnOp::Delete { path: "/a/b".into() }]), &mut tr, &mut st);
        let a = t.get("/a").unwrap().stat();
        assert_eq!((a.pzxid, a.cversion, a.num_children), (3, 2, 0));
        assert_eq!(t.get("/a").unwrap().cversion, 1, "stored cversion counts creates only");
        assert_eq!(tr.len(), 6);
        assert_eq!(tr[0].kind, TriggerKind::Created);
        assert_eq!(&*tr[1].path, "/");
    }

    #[test]
    fn rebuild_from_nodes() {
        let mut t = Tree::new();
        let (mut tr, mut st) = (vec![], vec![]);
        t.apply(&txn(1, vec![create("/a", 0), create("/a/b", 5), create("/c", CONTAINER_OWNER)]), &mut tr, &mut st);
        let pairs: Vec<(Path, Node)> = t.iter().map(|(p, n)| (p.clone(), (**n).clone())).collect();
        let r = Tree::from_nodes(pairs, t.last_zxid()).unwrap();
        assert_eq!(r.node_count(), t.node_count());
        assert_eq!(r.get("/a").unwrap().stat(), t.get("/a").unwrap().stat());
        assert_eq!(r.get("/").unwrap().stat(), t.get("/").unwrap().stat());
        assert_eq!(r.ephemerals_of(5).len(), 1);
        assert_eq!(r.reapable().count(), 1);
        assert_eq!(r.approximate_data_size(), t.approximate_data_size());
        assert!(Tree::from_nodes(vec![("/x/y".into(), Node::new(None, Arc::new(vec![]), 1, 1, 0))], 1).is_err());
    }

    #[test]
    fn snapshots_are_isolated_and_ephemerals_close() {
        let mut t = Tree::new();
        let (mut tr, mut st) = (vec![], vec![]);
        t.apply(&txn(1, vec![create("/e", 42), create("/c", CONTAINER_OWNER)]), &mut tr, &mut st);
        let snap = t.clone();
        assert_eq!(t.ephemerals_of(42).len(), 1);
        assert_eq!(t.reapable().count(), 1);
        let close = Txn { zxid: 2, time: 0, session: 42, body: TxnBody::CloseSession };
        t.apply(&close, &mut tr, &mut st);
        assert!(t.get("/e").is_none());
        assert!(snap.get("/e").is_some(), "published snapshot must not change");
        assert_eq!(t.get("/e").map(|n| n.stat()), None);
        assert_eq!(snap.get("/c").unwrap().stat().ephemeral_owner, 0);
        assert_eq!(snap.get("/e").unwrap().stat().ephemeral_owner, 42);
    }
}
