//! Sessions: ids, passwords, negotiated timeouts, liveness and expiry.
//!
//! The commit core owns the one authoritative table. Pure: time comes in as milliseconds from
//! the caller and random passwords are handed in; it never reads a clock or draws randomness.

use sha1::{Digest, Sha1};
use std::collections::BTreeMap;

/// One live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: i64,
    pub timeout_ms: i32,
    pub passwd: [u8; 16],
    /// Last time (caller's monotonic ms) a request was seen for it.
    pub last_touch: u64,
    /// A closeSession has been ordered; requests now get SessionExpired.
    pub closing: bool,
}

/// The session table with id allocation and expiry.
#[derive(Debug, Clone)]
pub struct SessionTable {
    sessions: BTreeMap<i64, Session>,
    next_id: i64,
}

/// Clamps a requested timeout into `[min, max]`.
pub fn negotiate_timeout(requested: i32, min: i32, max: i32) -> i32 {
    requested.clamp(min, max.max(min))
}

/// A session's password, derived from the server's secret and the session id (as ZooKeeper
/// derives it from its own secret), so it survives restarts without being logged.
pub fn password(secret: &[u8; 16], session_id: i64) -> [u8; 16] {
    let mut h = Sha1::new();
    h.update(secret);
    h.update(session_id.to_be_bytes());
    let d = h.finalize();
    let mut pw = [0u8; 16];
    pw.copy_from_slice(&d[..16]);
    pw
}

/// The first session id of a server, ZooKeeper style: `((now_ms << 24) >>> 8) | (server_id << 56)`.
pub fn initial_session_id(server_id: u8, now_ms: i64) -> i64 {
    let base = ((now_ms << 24) as u64 >> 8) as i64;
    base | ((server_id as i64) << 56)
}

impl SessionTable {
    pub fn new(first_id: i64) -> SessionTable {
        SessionTable { sessions: BTreeMap::new(), next_id: first_id }
    }

    /// Makes sure ids handed out from now on are above `id` (after recovery).
    pub fn ensure_next_above(&mut self, id: i64) {
        if self.next_id <= id {
            self.next_id = id.wrapping_add(1);
        }
    }

    /// Allocates a fresh session id; never 0, never the container marker, never a TTL-marker top byte.
    pub fn allocate_id(&mut self) -> i64 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            let top = (id as u64) >> 56;
            if id != 0 && id != i64::MIN && top != 0xff && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    pub fn insert(&mut self, id: i64, timeout_ms: i32, passwd: [u8; 16], now: u64) {
        self.sessions.insert(id, Session { id, timeout_ms, passwd, last_touch: now, closing: false });
    }

    pub fn get(&self, id: i64) -> Option<&Session> {
        self.sessions.get(&id)
    }

    pub fn is_active(&self, id: i64) -> bool {
        self.sessions.get(&id).is_some_and(|s| !s.closing)
    }

    /// Records activity. False if the session is unknown or closing.
    pub fn touch(&mut self, id: i64, now: u64) -> bool {
        match self.sessions.get_mut(&id) {
            Some(s) if !s.closing => {
                s.last_touch = s.last_touch.max(now);
                true
            }
            _ => false,
        }
    }

    /// Re-attaches a session: password must match and the session must be active. Updates
    /// the timeout to the newly negotiated one.
    pub fn reattach(&mut self, id: i64, passwd: &[u8], timeout_ms: i32, now: u64) -> Option<[u8; 16]> {
        let s = self.sessions.get_mut(&id)?;
        if s.closing || s.passwd[..] != *passwd {
            return None;
        }
        s.timeout_ms = timeout_ms;
        s.last_touch = s.last_touch.max(now);
        Some(s.passwd)
    }

    pub fn set_closing(&mut self, id: i64) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.closing = true;
        }
    }

    pub fn remove(&mut self, id: i64) -> Option<Session> {
        self.sessions.remove(&id)
    }

    /// Sessions not touched within their timeout, in id order.
    pub fn expired(&self, now: u64) -> Vec<i64> {
        self.sessions
            .values()
            .filter(|s| !s.closing && now > s.last_touch + s.timeout_ms as u64)
            .map(|s| s.id)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// The next id `allocate_id` would try (kept in snapshots so ids are never reused).
    pub fn next_id(&self) -> i64 {
        self.next_id
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle() {
        let mut t = SessionTable::new(initial_session_id(0, 1_700_000_000_000));
        let id = t.allocate_id();
        assert_ne!(id, 0);
        t.insert(id, 4000, [1; 16], 100);
        assert!(t.expired(4100).is_empty());
        assert_eq!(t.expired(4101), vec![id]);
        assert!(t.touch(id, 4000));
        assert!(t.expired(4101).is_empty());
        assert_eq!(t.reattach(id, &[2; 16], 6000, 4000), None);
        assert_eq!(t.reattach(id, &[1; 16], 6000, 4000), Some([1; 16]));
        t.set_closing(id);
        assert!(!t.touch(id, 5000));
        assert!(t.expired(1_000_000).is_empty(), "closing sessions are not expired twice");
        assert_eq!(negotiate_timeout(100, 4000, 40000), 4000);
        assert_eq!(negotiate_timeout(100_000, 4000, 40000), 40000);
    }

    #[test]
    fn ids_skip_reserved_values() {
        let mut t = SessionTable::new(-1);
        assert_eq!(t.allocate_id(), 1, "top byte 0xff and 0 are skipped");
        let mut t = SessionTable::new(0);
        assert_eq!(t.allocate_id(), 1);
        let mut t = SessionTable::new(i64::MIN);
        assert_eq!(t.allocate_id(), i64::MIN + 1);
    }
}
