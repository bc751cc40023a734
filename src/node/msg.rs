//! Messages between the shards and the commit core.
//!
//! Owns the shape of cross-core traffic only. Every message is `Send`; shared payloads (the
//! tree snapshot, reply frames) are reference-counted, never copied per shard.

use crate::proto::{ConnectRequest, Request};
use crate::tree::acl::AuthInfo;
use crate::tree::{Tree, Trigger};
use crate::watch::ConnId;
use bytes::Bytes;
use std::sync::Arc;

/// Shard -> commit core.
#[derive(Debug)]
pub enum ToCommit {
    /// A ConnectRequest, new session or re-attach.
    Connect { shard: usize, conn: ConnId, req: ConnectRequest },
    /// A write (or sync / closeSession) in the connection's request order; `wseq` numbers the
    /// connection's writes so the reply finds its place. `fence`: a read of this session is
    /// queued before it, so it must land in a later batch than the writes before that read.
    Write {
        shard: usize,
        conn: ConnId,
        wseq: u64,
        session: i64,
        xid: i32,
        req: Request,
        auth: Arc<AuthInfo>,
        fence: bool,
    },
    /// Sessions that saw traffic since the last report.
    Touch { sessions: Vec<i64> },
}

/// What a shard does with a reply besides sending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyKind {
    /// The answer to the connection's write number `wseq`; `close` after closeSession.
    Write { wseq: u64, close: bool },
    /// The ConnectResponse of an established session.
    Connected { session: i64, timeout: i32 },
    /// The connect failed: send the frame (if any) and close.
    ConnectRefused,
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub conn: ConnId,
    pub frame: Bytes,
    pub kind: ReplyKind,
}

/// The part of a committed batch addressed to one shard.
#[derive(Debug, Default, Clone)]
pub struct ShardPart {
    pub replies: Vec<Reply>,
    /// Connections to close (their session moved to another connection).
    pub close: Vec<ConnId>,
}

/// One committed batch, shared by every shard.
pub struct Committed {
    /// The tree after the batch.
    pub tree: Arc<Tree>,
    /// Watch triggers in zxid order, with the zxid that fired them.
    pub triggers: Vec<(i64, Trigger)>,
    /// Sessions closed or expired in this batch.
    pub closed_sessions: Vec<i64>,
    pub parts: Vec<ShardPart>,
    /// Live sessions after the batch.
    pub session_count: usize,
}

/// Commit core -> shard: "your inbox has new batches". The batches themselves go through the
/// shard's inbox queue (see `Shared::inboxes`) so a shard can take them synchronously before a
/// read; the bounded doorbell channel is the flow control.
pub enum ToShard {
    Doorbell,
}
