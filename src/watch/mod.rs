//! The watch table of one shard: which of its connections watch which paths, in which modes,
//! and which events a tree change fires (ZooKeeper's WatchManager, data and child tables).
//!
//! Pure bookkeeping keyed by connection id. Never sends anything and never checks ACLs: the
//! shard filters fired events by the watcher's permissions.

use crate::proto::codes::{event, watcher_type};
use crate::tree::{path, Trigger, TriggerKind};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

pub type ConnId = u64;

/// Mode bits of a watch registration.
pub const STANDARD: u8 = 1;
pub const PERSISTENT: u8 = 2;
pub const RECURSIVE: u8 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Data,
    Child,
}

type Fixed = BuildHasherDefault<DefaultHasher>;
type Watchers = BTreeMap<ConnId, u8>;

/// A removeWatches/checkWatches watcher type ZooKeeper does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadWatcherType;

/// One event to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub conn: ConnId,
    pub event_type: i32,
    pub path: Arc<str>,
}

#[derive(Default)]
struct Index {
    paths: HashMap<Arc<str>, Watchers, Fixed>,
    recursive: usize,
    /// (path, connection) registrations.
    entries: usize,
}

impl Index {
    fn add(&mut self, path: &Arc<str>, conn: ConnId, mode: u8) -> bool {
        let w = self.paths.entry(path.clone()).or_default();
        let old = w.get(&conn).copied().unwrap_or(0);
        if old & RECURSIVE == 0 && mode & RECURSIVE != 0 {
            self.recursive += 1;
        }
        w.insert(conn, old | mode);
        if old == 0 {
            self.entries += 1;
        }
        old == 0
    }

    /// Clears `mode` bits of `conn` on `path`. Returns (had any of them, entry now gone).
    fn clear(&mut self, path: &str, conn: ConnId, mode: u8) -> (bool, bool) {
        let Some(w) = self.paths.get_mut(path) else { return (false, false) };
        let Some(m) = w.get_mut(&conn) else { return (false, false) };
        let had = *m & mode != 0;
        if *m & mode & RECURSIVE != 0 {
            self.recursive -= 1;
        }
        *m &= !mode;
        let gone = *m == 0;
        if gone {
            w.remove(&conn);
            if w.is_empty() {
                self.paths.remove(path);
            }
            self.entries -= 1;
        }
        (had, gone)
    }

    fn modes(&self, path: &str, conn: ConnId) -> u8 {
        self.paths.get(path).and_then(|w| w.get(&conn)).copied().unwrap_or(0)
    }

    /// Fires `path`: every watcher of the path itself, and recursive watchers of its ancestors.
    /// Standard modes are consumed. Returns the connections that fired (deduplicated).
    fn fire(&mut self, path: &str, skip: &BTreeSet<ConnId>, out: &mut BTreeSet<ConnId>) {
        let mut consumed = Vec::new();
        if let Some(w) = self.paths.get(path) {
            for (&c, &m) in w {
                // A suppressed watcher (already told by the other table) still loses its
                // one-shot watch, as in ZooKeeper.
                if m & STANDARD != 0 {
                    consumed.push(c);
                }
                if !skip.contains(&c) {
                    out.insert(c);
                }
            }
        }
        for c in consumed {
            self.clear(path, c, STANDARD);
        }
        if self.recursive > 0 {
            for a in path::ancestors(path) {
                if let Some(w) = self.paths.get(a) {
                    for (&c, &m) in w {
                        if m & RECURSIVE != 0 && !skip.contains(&c) {
                            out.insert(c);
                        }
                    }
                }
            }
        }
    }
}

/// The watches of one shard's connections.
#[derive(Default)]
pub struct WatchTable {
    data: Index,
    child: Index,
    by_conn: HashMap<ConnId, BTreeSet<(Table, Arc<str>)>, Fixed>,
}

impl WatchTable {
    pub fn new() -> WatchTable {
        WatchTable::default()
    }

    fn index(&mut self, t: Table) -> &mut Index {
        match t {
            Table::Data => &mut self.data,
            Table::Child => &mut self.child,
        }
    }

    /// Registers a watch of `mode` in table `t`.
    pub fn add(&mut self, t: Table, path: &str, conn: ConnId, mode: u8) {
        let p: Arc<str> = path.into();
        self.index(t).add(&p, conn, mode);
        self.by_conn.entry(conn).or_default().insert((t, p));
    }

    /// addWatch: PERSISTENT goes in both tables, PERSISTENT_RECURSIVE in the data table only.
    pub fn add_persistent(&mut self, path: &str, conn: ConnId, recursive: bool) {
        if recursive {
            self.add(Table::Data, path, conn, RECURSIVE);
        } else {
            self.add(Table::Data, path, conn, PERSISTENT);
            self.add(Table::Child, path, conn, PERSISTENT);
        }
    }

    fn clear(&mut self, t: Table, path: &str, conn: ConnId, mode: u8) -> bool {
        let (had, gone) = self.index(t).clear(path, conn, mode);
        if gone {
            if let Some(set) = self.by_conn.get_mut(&conn) {
                set.remove(&(t, Arc::from(path)));
            }
        }
        had
    }

    /// The (table, modes) pairs a removeWatches/checkWatches type selects; `None` for a bad type.
    fn selection(kind: i32) -> Option<&'static [(Table, u8)]> {
        Some(match kind {
            watcher_type::CHILDREN => &[(Table::Child, STANDARD)],
            watcher_type::DATA => &[(Table::Data, STANDARD)],
            watcher_type::ANY => {
                &[(Table::Data, STANDARD | PERSISTENT | RECURSIVE), (Table::Child, STANDARD | PERSISTENT | RECURSIVE)]
            }
            watcher_type::PERSISTENT => &[(Table::Data, PERSISTENT), (Table::Child, PERSISTENT)],
            watcher_type::PERSISTENT_RECURSIVE => &[(Table::Data, RECURSIVE)],
            _ => return None,
        })
    }

    /// removeWatches: `Ok(true)` if something was removed, `Ok(false)` if nothing matched,
    /// `Err` for an unknown watcher type.
    pub fn remove(&mut self, path: &str, conn: ConnId, kind: i32) -> Result<bool, BadWatcherType> {
        let sel = Self::selection(kind).ok_or(BadWatcherType)?;
        let mut any = false;
        for &(t, m) in sel {
            any |= self.clear(t, path, conn, m);
        }
        Ok(any)
    }

    /// checkWatches: whether `conn` holds a watch of `kind` on `path`.
    pub fn has(&self, path: &str, conn: ConnId, kind: i32) -> Result<bool, BadWatcherType> {
        let sel = Self::selection(kind).ok_or(BadWatcherType)?;
        Ok(sel.iter().any(|&(t, m)| {
            let idx = match t {
                Table::Data => &self.data,
                Table::Child => &self.child,
            };
            idx.modes(path, conn) & m != 0
        }))
    }

    /// Drops every watch of a closed connection.
    pub fn remove_conn(&mut self, conn: ConnId) {
        if let Some(set) = self.by_conn.remove(&conn) {
            for (t, p) in set {
                self.index(t).clear(&p, conn, STANDARD | PERSISTENT | RECURSIVE);
            }
        }
    }

    /// The events a tree change fires, in ZooKeeper's order, one per connection per trigger.
    pub fn trigger(&mut self, t: &Trigger, out: &mut Vec<Fired>) {
        let mut fired = BTreeSet::new();
        let none = BTreeSet::new();
        let (event_type, idx) = match t.kind {
            TriggerKind::Created => (event::NODE_CREATED, Table::Data),
            TriggerKind::DataChanged => (event::NODE_DATA_CHANGED, Table::Data),
            TriggerKind::ChildrenChanged => (event::NODE_CHILDREN_CHANGED, Table::Child),
            TriggerKind::Deleted => {
                self.data.fire(&t.path, &none, &mut fired);
                let mut more = BTreeSet::new();
                self.child.fire(&t.path, &fired, &mut more);
                fired.extend(more);
                (event::NODE_DELETED, Table::Data)
            }
        };
        if t.kind != TriggerKind::Deleted {
            self.index(idx).fire(&t.path, &none, &mut fired);
        }
        for conn in fired {
            self.forget_if_gone(conn, &t.path);
            out.push(Fired { conn, event_type, path: t.path.clone() });
        }
    }

    fn forget_if_gone(&mut self, conn: ConnId, path: &Arc<str>) {
        for t in [Table::Data, Table::Child] {
            let idx = match t {
                Table::Data => &self.data,
                Table::Child => &self.child,
            };
            if idx.modes(path, conn) == 0 {
                if let Some(set) = self.by_conn.get_mut(&conn) {
                    set.remove(&(t, path.clone()));
                }
            }
        }
    }

    /// (connections, paths, watches) of the data table, as `wchs` reports.
    pub fn data_summary(&self) -> (usize, usize, usize) {
        let conns: BTreeSet<ConnId> = self.data.paths.values().flat_map(|w| w.keys().copied()).collect();
        (conns.len(), self.data.paths.len(), self.data.entries)
    }

    /// Total registrations across both tables.
    pub fn total(&self) -> usize {
        self.data.entries + self.child.entries
    }

    /// Every (connection, path) of the data table, for `wchc` and `wchp`.
    pub fn data_listing(&self) -> Vec<(ConnId, Arc<str>)> {
        let mut v: Vec<(ConnId, Arc<str>)> =
            self.data.paths.iter().flat_map(|(p, w)| w.keys().map(move |c| (*c, p.clone()))).collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trig(kind: TriggerKind, p: &str) -> Trigger {
        Trigger { kind, path: p.into(), acl: Arc::new(vec![]) }
    }

    fn fire(w: &mut WatchTable, kind: TriggerKind, p: &str) -> Vec<(ConnId, i32)> {
        let mut out = vec![];
        w.trigger(&trig(kind, p), &mut out);
        out.into_iter().map(|f| (f.conn, f.event_type)).collect()
    }

    #[test]
    fn standard_watches_fire_once() {
        let mut w = WatchTable::new();
        w.add(Table::Data, "/a", 1, STANDARD);
        w.add(Table::Data, "/a", 1, STANDARD);
        assert_eq!(fire(&mut w, TriggerKind::DataChanged, "/a"), vec![(1, event::NODE_DATA_CHANGED)]);
        assert!(fire(&mut w, TriggerKind::DataChanged, "/a").is_empty());
        assert_eq!(w.total(), 0);
    }

    #[test]
    fn delete_notifies_data_and_child_watchers_once() {
        let mut w = WatchTable::new();
        w.add(Table::Data, "/a", 1, STANDARD);
        w.add(Table::Child, "/a", 1, STANDARD);
        w.add(Table::Child, "/a", 2, STANDARD);
        assert_eq!(fire(&mut w, TriggerKind::Deleted, "/a"), vec![(1, 2), (2, 2)]);
        assert_eq!(w.total(), 0);
    }

    #[test]
    fn persistent_and_recursive() {
        let mut w = WatchTable::new();
        w.add_persistent("/a", 1, false);
        w.add_persistent("/a", 2, true);
        assert_eq!(fire(&mut w, TriggerKind::ChildrenChanged, "/a"), vec![(1, event::NODE_CHILDREN_CHANGED)]);
        assert_eq!(fire(&mut w, TriggerKind::Created, "/a/b/c"), vec![(2, event::NODE_CREATED)]);
        assert_eq!(fire(&mut w, TriggerKind::DataChanged, "/a"), vec![(1, 3), (2, 3)]);
        assert_eq!(fire(&mut w, TriggerKind::DataChanged, "/a"), vec![(1, 3), (2, 3)], "persistent stays");
        assert_eq!(w.remove("/a", 2, watcher_type::DATA), Ok(false));
        assert_eq!(w.remove("/a", 2, watcher_type::PERSISTENT_RECURSIVE), Ok(true));
        assert_eq!(w.remove("/a", 1, 99), Err(BadWatcherType));
        assert_eq!(w.has("/a", 1, watcher_type::PERSISTENT), Ok(true));
        assert_eq!(w.data_summary(), (1, 1, 1));
        w.remove_conn(1);
        assert_eq!(w.total(), 0);
        assert_eq!(w.data_summary(), (0, 0, 0));
        assert!(fire(&mut w, TriggerKind::DataChanged, "/a").is_empty());
    }
}
