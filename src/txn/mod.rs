//! Transactions: the committed, already-validated changes the tree applies in zxid order.
//!
//! A transaction carries everything needed to apply it deterministically (resolved sequential
//! names, stored ephemeral owners, the txn time), so a log replay or a follower reproduces the
//! same tree. It never validates: that is `prep`'s job.

use crate::proto::Acl;
use bytes::Bytes;
use std::sync::Arc;

/// One change inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Create `path` (sequential suffix already appended). `owner` is the stored ephemeralOwner:
    /// a session id, the container marker, the TTL marker with the TTL, or 0.
    Create {
        path: Arc<str>,
        data: Option<Bytes>,
        acl: Arc<Vec<Acl>>,
        owner: i64,
    },
    Delete {
        path: Arc<str>,
    },
    SetData {
        path: Arc<str>,
        data: Option<Bytes>,
    },
    SetAcl {
        path: Arc<str>,
        acl: Arc<Vec<Acl>>,
    },
    /// A version check inside a multi: changes nothing.
    Check {
        path: Arc<str>,
    },
}

/// What a transaction does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnBody {
    /// A new session with its negotiated timeout and password (the password travels with the
    /// transaction so any later leader can check a re-attach).
    CreateSession { timeout: i32, passwd: [u8; 16] },
    /// Closes the session and deletes its ephemerals.
    CloseSession,
    /// One op (`multi == false`) or a successful multi.
    Ops { ops: Vec<TxnOp>, multi: bool },
    /// A failed single write: consumes a zxid, changes nothing.
    Error { code: i32 },
    /// A failed multi: per-op result codes (0 before the failure, -2 after).
    MultiError { codes: Vec<i32> },
    /// A request that only needs ordering, not a zxid (sync).
    Barrier,
}

/// One transaction with its zxid, time and originating session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub zxid: i64,
    pub time: i64,
    pub session: i64,
    pub body: TxnBody,
}

impl Txn {
    /// Whether this transaction consumes a zxid.
    pub fn consumes_zxid(&self) -> bool {
        !matches!(self.body, TxnBody::Barrier)
    }
}

/// Who asked: the node a client request arrived at, and that node's own number for it. Replies
/// travel in the replicated batch so the node that took the request can answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    pub server: u32,
    pub rid: u64,
}

/// What an answer does at the node that routes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    /// The reply to a write (or sync); `close`: the session closed with it.
    Write { close: bool },
    /// The ConnectResponse of a session that is now attached to this request's connection.
    Connected { session: i64, timeout: i32 },
    /// The connect failed: send the frame (if any) and close.
    Refused,
}

/// A client reply decided by the leader, in the batch it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub origin: Origin,
    pub kind: AnswerKind,
    pub frame: Bytes,
}
