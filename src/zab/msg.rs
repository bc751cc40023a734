//! The messages ZAB nodes exchange, and their bytes on the wire.
//!
//! Owns the shape and the encoding of election notifications (election port) and of the
//! leader/learner messages (quorum port). Decoding a peer's bytes never panics: a malformed,
//! truncated or unknown message is a typed error and the caller closes the connection. Never
//! decides anything about the protocol.

use super::{Batch, NodeId, Zxid};
use bytes::Bytes;
use std::sync::Arc;

/// Where a peer stands, as its notifications say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    Looking,
    Following,
    Leading,
    Observing,
}

/// A vote: who should lead, and the history that candidate had when the vote was cast.
/// Votes are ordered by (epoch, zxid, leader): the candidate with the newest history wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vote {
    pub leader: NodeId,
    pub zxid: Zxid,
    /// The candidate's current epoch.
    pub epoch: u32,
}

impl Vote {
    pub fn key(&self) -> (u32, Zxid, NodeId) {
        (self.epoch, self.zxid, self.leader)
    }
}

/// An election notification (fast leader election).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    /// The sender's election round (logical clock).
    pub round: u64,
    pub state: PeerState,
    pub vote: Vote,
}

/// The last zxid of each epoch in a node's history after `base` (its applied point: committed,
/// so shared with every later leader). The leader finds the longest common prefix of the
/// learner's history and its own from this; without epochs it falls back to `base`, which is
/// always safe (the learner then drops and receives again everything after `base`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    pub base: Zxid,
    pub epochs: Vec<(u32, Zxid)>,
}

/// Most epochs a summary carries; a learner with more sends none (the `base` fallback).
pub const SUMMARY_EPOCHS_MAX: usize = 1024;

/// Leader <-> learner messages on the quorum port, in ZAB's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuorumMsg {
    // learner -> leader
    FollowerInfo {
        accepted_epoch: u32,
        /// Whom the accepted epoch was promised to (0: nobody yet).
        accepted_leader: NodeId,
        last_zxid: Zxid,
        observer: bool,
    },
    AckEpoch {
        current_epoch: u32,
        last_zxid: Zxid,
        summary: Summary,
    },
    AckNewLeader {
        epoch: u32,
    },
    /// The learner's log is durable up to `zxid`.
    Ack {
        zxid: Zxid,
    },
    PingReply,
    /// Opaque node-level payload for the leader (forwarded client requests, session touches).
    Forward(Bytes),
    // leader -> learner
    LeaderInfo {
        epoch: u32,
    },
    /// Drop every record after `after`.
    Trunc {
        after: Zxid,
    },
    /// One piece of the leader's committed state at `zxid` (the first piece carries `epochs`,
    /// the leader's epoch map at that point).
    SnapChunk {
        zxid: Zxid,
        total: u64,
        offset: u64,
        epochs: Vec<(u32, Zxid)>,
        bytes: Bytes,
    },
    Proposal(Arc<Batch>),
    /// Everything up to `zxid` is committed.
    Commit {
        zxid: Zxid,
    },
    NewLeader {
        epoch: u32,
    },
    UpToDate {
        commit: Zxid,
    },
    Ping {
        commit: Zxid,
    },
}

/// Why a peer's bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    Truncated,
    UnknownType(u8),
    BadValue(&'static str),
    TooLong(usize),
    TrailingBytes(usize),
}

/// Largest frame a peer may send (a batch of up to `maxBatchBytes` with its replies, or one
/// snapshot chunk, fits with room to spare).
pub const FRAME_MAX: usize = 64 << 20;

struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self
    }
    fn epochs(&mut self, e: &[(u32, Zxid)]) -> &mut Self {
        self.u32(e.len() as u32);
        for &(epoch, z) in e {
            self.u32(epoch).i64(z);
        }
        self
    }
}

struct In<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> In<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.at.checked_add(n).ok_or(WireError::Truncated)?;
        let s = self.buf.get(self.at..end).ok_or(WireError::Truncated)?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn i64(&mut self) -> Result<i64, WireError> {
        Ok(self.u64()? as i64)
    }
    fn bool(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::BadValue("bool")),
        }
    }
    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u32()? as usize;
        if n > FRAME_MAX {
            return Err(WireError::TooLong(n));
        }
        self.take(n)
    }
    fn epochs(&mut self) -> Result<Vec<(u32, Zxid)>, WireError> {
        let n = self.u32()? as usize;
        if n > SUMMARY_EPOCHS_MAX {
            return Err(WireError::TooLong(n));
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push((self.u32()?, self.i64()?));
        }
        if v.windows(2).any(|w| w[0].0 >= w[1].0 || w[0].1 >= w[1].1) {
            return Err(WireError::BadValue("epochs out of order"));
        }
        Ok(v)
    }
    fn end(&self) -> Result<(), WireError> {
        match self.buf.len() - self.at {
            0 => Ok(()),
            n => Err(WireError::TrailingBytes(n)),
        }
    }
}

fn state_code(s: PeerState) -> u8 {
    match s {
        PeerState::Looking => 0,
        PeerState::Following => 1,
        PeerState::Leading => 2,
        PeerState::Observing => 3,
    }
}

/// The body of an election frame.
pub fn encode_notification(n: &Notification) -> Vec<u8> {
    let mut o = Out(Vec::with_capacity(32));
    o.u8(b'N').u64(n.round).u8(state_code(n.state)).u32(n.vote.leader).i64(n.vote.zxid).u32(n.vote.epoch);
    o.0
}

pub fn decode_notification(b: &[u8]) -> Result<Notification, WireError> {
    let mut i = In { buf: b, at: 0 };
    match i.u8()? {
        b'N' => {}
        t => return Err(WireError::UnknownType(t)),
    }
    let round = i.u64()?;
    let state = match i.u8()? {
        0 => PeerState::Looking,
        1 => PeerState::Following,
        2 => PeerState::Leading,
        3 => PeerState::Observing,
        _ => return Err(WireError::BadValue("peer state")),
    };
    let vote = Vote { leader: i.u32()?, zxid: i.i64()?, epoch: i.u32()? };
    i.end()?;
    Ok(Notification { round, state, vote })
}

fn encode_batch(o: &mut Out, b: &Batch) {
    o.i64(b.first).i64(b.last).bytes(&b.bytes);
}

fn decode_batch(i: &mut In) -> Result<Arc<Batch>, WireError> {
    let first = i.i64()?;
    let last = i.i64()?;
    if first > last + 1 || first < 0 {
        return Err(WireError::BadValue("batch zxid range"));
    }
    let bytes = Bytes::copy_from_slice(i.bytes()?);
    Ok(Arc::new(Batch { first, last, bytes }))
}

/// The body of a quorum frame.
pub fn encode_quorum(m: &QuorumMsg) -> Vec<u8> {
    let mut o = Out(Vec::new());
    match m {
        QuorumMsg::FollowerInfo { accepted_epoch, accepted_leader, last_zxid, observer } => {
            o.u8(1).u32(*accepted_epoch).u32(*accepted_leader).i64(*last_zxid).u8(*observer as u8);
        }
        QuorumMsg::AckEpoch { current_epoch, last_zxid, summary } => {
            o.u8(2).u32(*current_epoch).i64(*last_zxid).i64(summary.base).epochs(&summary.epochs);
        }
        QuorumMsg::AckNewLeader { epoch } => {
            o.u8(3).u32(*epoch);
        }
        QuorumMsg::Ack { zxid } => {
            o.u8(4).i64(*zxid);
        }
        QuorumMsg::PingReply => {
            o.u8(5);
        }
        QuorumMsg::Forward(b) => {
            o.u8(6).bytes(b);
        }
        QuorumMsg::LeaderInfo { epoch } => {
            o.u8(10).u32(*epoch);
        }
        QuorumMsg::Trunc { after } => {
            o.u8(11).i64(*after);
        }
        QuorumMsg::SnapChunk { zxid, total, offset, epochs, bytes } => {
            o.u8(12).i64(*zxid).u64(*total).u64(*offset).epochs(epochs).bytes(bytes);
        }
        QuorumMsg::Proposal(b) => {
            o.u8(13);
            encode_batch(&mut o, b);
        }
        QuorumMsg::Commit { zxid } => {
            o.u8(14).i64(*zxid);
        }
        QuorumMsg::NewLeader { epoch } => {
            o.u8(15).u32(*epoch);
        }
        QuorumMsg::UpToDate { commit } => {
            o.u8(16).i64(*commit);
        }
        QuorumMsg::Ping { commit } => {
            o.u8(17).i64(*commit);
        }
    }
    o.0
}

pub fn decode_quorum(b: &[u8]) -> Result<QuorumMsg, WireError> {
    let mut i = In { buf: b, at: 0 };
    let m = match i.u8()? {
        1 => QuorumMsg::FollowerInfo {
            accepted_epoch: i.u32()?,
            accepted_leader: i.u32()?,
            last_zxid: i.i64()?,
            observer: i.bool()?,
        },
        2 => QuorumMsg::AckEpoch {
            current_epoch: i.u32()?,
            last_zxid: i.i64()?,
            summary: Summary { base: i.i64()?, epochs: i.epochs()? },
        },
        3 => QuorumMsg::AckNewLeader { epoch: i.u32()? },
        4 => QuorumMsg::Ack { zxid: i.i64()? },
        5 => QuorumMsg::PingReply,
        6 => QuorumMsg::Forward(Bytes::copy_from_slice(i.bytes()?)),
        10 => QuorumMsg::LeaderInfo { epoch: i.u32()? },
        11 => QuorumMsg::Trunc { after: i.i64()? },
        12 => {
            let zxid = i.i64()?;
            let total = i.u64()?;
            let offset = i.u64()?;
            let epochs = i.epochs()?;
            let bytes = Bytes::copy_from_slice(i.bytes()?);
            if offset.checked_add(bytes.len() as u64).is_none_or(|end| end > total) {
                return Err(WireError::BadValue("snapshot chunk past its total"));
            }
            QuorumMsg::SnapChunk { zxid, total, offset, epochs, bytes }
        }
        13 => QuorumMsg::Proposal(decode_batch(&mut i)?),
        14 => QuorumMsg::Commit { zxid: i.i64()? },
        15 => QuorumMsg::NewLeader { epoch: i.u32()? },
        16 => QuorumMsg::UpToDate { commit: i.i64()? },
        17 => QuorumMsg::Ping { commit: i.i64()? },
        t => return Err(WireError::UnknownType(t)),
    };
    i.end()?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let n =
            Notification { round: 7, state: PeerState::Following, vote: Vote { leader: 2, zxid: 1 << 33, epoch: 2 } };
        assert_eq!(decode_notification(&encode_notification(&n)), Ok(n));
        let batch = Arc::new(Batch { first: 5, last: 6, bytes: Bytes::from_static(b"record") });
        let msgs = vec![
            QuorumMsg::FollowerInfo { accepted_epoch: 3, accepted_leader: 2, last_zxid: 9, observer: true },
            QuorumMsg::AckEpoch {
                current_epoch: 2,
                last_zxid: 9,
                summary: Summary { base: 4, epochs: vec![(1, 6), (2, 9)] },
            },
            QuorumMsg::AckNewLeader { epoch: 3 },
            QuorumMsg::Ack { zxid: 10 },
            QuorumMsg::PingReply,
            QuorumMsg::Forward(Bytes::from_static(b"req")),
            QuorumMsg::LeaderInfo { epoch: 4 },
            QuorumMsg::Trunc { after: 3 },
            QuorumMsg::SnapChunk {
                zxid: 8,
                total: 10,
                offset: 6,
                epochs: vec![(1, 8)],
                bytes: Bytes::from_static(b"abcd"),
            },
            QuorumMsg::Proposal(batch),
            QuorumMsg::Commit { zxid: 6 },
            QuorumMsg::NewLeader { epoch: 4 },
            QuorumMsg::UpToDate { commit: 6 },
            QuorumMsg::Ping { commit: 6 },
        ];
        for m in msgs {
            assert_eq!(decode_quorum(&encode_quorum(&m)), Ok(m));
        }
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert_eq!(decode_quorum(&[]), Err(WireError::Truncated));
        assert_eq!(decode_quorum(&[99]), Err(WireError::UnknownType(99)));
        assert_eq!(decode_quorum(&[4, 0, 0]), Err(WireError::Truncated));
        let mut ok = encode_quorum(&QuorumMsg::Ack { zxid: 1 });
        ok.push(0);
        assert_eq!(decode_quorum(&ok), Err(WireError::TrailingBytes(1)));
        let past = encode_quorum(&QuorumMsg::SnapChunk {
            zxid: 1,
            total: 2,
            offset: 1,
            epochs: vec![],
            bytes: Bytes::from_static(b"xy"),
        });
        assert!(matches!(decode_quorum(&past), Err(WireError::BadValue(_))));
        let unordered = encode_quorum(&QuorumMsg::AckEpoch {
            current_epoch: 1,
            last_zxid: 1,
            summary: Summary { base: 0, epochs: vec![(2, 5), (1, 9)] },
        });
        assert!(matches!(decode_quorum(&unordered), Err(WireError::BadValue(_))));
        assert!(decode_notification(&[b'N', 1]).is_err());
        // Arbitrary bytes never panic.
        let mut x: u64 = 1;
        for len in 0..200 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (x >> 56) as u8
                })
                .collect();
            let _ = decode_quorum(&buf);
            let _ = decode_notification(&buf);
        }
    }
}
