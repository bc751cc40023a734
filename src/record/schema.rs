//! The rkyv schema of a log record's payload: archivable mirrors of `txn::Txn`.
//!
//! `Txn` holds `Arc<str>` paths and `Bytes` data, which rkyv cannot archive directly. The
//! mirrors here borrow them through two wrappers (`ArcStr`, `AsBytes`) that archive as an
//! `ArchivedString` and an `ArchivedVec<u8>`, so building a mirror copies no path or data
//! bytes: only refcounts move. There is no schema evolution in rkyv: any change to these types
//! is a new record format version (`record::VERSION`).

use crate::proto::{Acl, Id};
use crate::txn::{Answer, AnswerKind, Origin, Txn, TxnBody, TxnOp};
use bytes::Bytes;
use rkyv::rancor::{Fallible, Source};
use rkyv::ser::{Allocator, Writer};
use rkyv::string::{ArchivedString, StringResolver};
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::with::{ArchiveWith, Map, SerializeWith};
use rkyv::{Archive, Place, Serialize};
use std::sync::Arc;

/// Archives an `Arc<str>` as an `ArchivedString`.
pub struct ArcStr;

impl ArchiveWith<Arc<str>> for ArcStr {
    type Archived = ArchivedString;
    type Resolver = StringResolver;

    fn resolve_with(field: &Arc<str>, resolver: StringResolver, out: Place<ArchivedString>) {
        ArchivedString::resolve_from_str(field, resolver, out);
    }
}

impl<S> SerializeWith<Arc<str>, S> for ArcStr
where
    S: Fallible + Writer + ?Sized,
    S::Error: Source,
{
    fn serialize_with(field: &Arc<str>, serializer: &mut S) -> Result<StringResolver, S::Error> {
        ArchivedString::serialize_from_str(field, serializer)
    }
}

/// Archives a `Bytes` as an `ArchivedVec<u8>`.
pub struct AsBytes;

impl ArchiveWith<Bytes> for AsBytes {
    type Archived = ArchivedVec<u8>;
    type Resolver = VecResolver;

    fn resolve_with(field: &Bytes, resolver: VecResolver, out: Place<ArchivedVec<u8>>) {
        ArchivedVec::resolve_from_len(field.len(), resolver, out);
    }
}

impl<S> SerializeWith<Bytes, S> for AsBytes
where
    S: Fallible + Allocator + Writer + ?Sized,
{
    fn serialize_with(field: &Bytes, serializer: &mut S) -> Result<VecResolver, S::Error> {
        ArchivedVec::<u8>::serialize_from_slice(&field[..], serializer)
    }
}

/// One ACL entry.
#[derive(Archive, Serialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RAcl {
    pub perms: i32,
    pub scheme: String,
    pub id: String,
}

/// Mirror of `TxnOp`.
#[derive(Archive, Serialize, Debug, Clone)]
#[rkyv(derive(Debug))]
pub enum ROp {
    Create {
        #[rkyv(with = ArcStr)]
        path: Arc<str>,
        #[rkyv(with = Map<AsBytes>)]
        data: Option<Bytes>,
        acl: Vec<RAcl>,
        owner: i64,
    },
    Delete {
        #[rkyv(with = ArcStr)]
        path: Arc<str>,
    },
    SetData {
        #[rkyv(with = ArcStr)]
        path: Arc<str>,
        #[rkyv(with = Map<AsBytes>)]
        data: Option<Bytes>,
    },
    SetAcl {
        #[rkyv(with = ArcStr)]
        path: Arc<str>,
        acl: Vec<RAcl>,
    },
    Check {
        #[rkyv(with = ArcStr)]
        path: Arc<str>,
    },
}

/// Mirror of `TxnBody` without `Barrier` (never logged).
#[derive(Archive, Serialize, Debug, Clone)]
#[rkyv(derive(Debug))]
pub enum RBody {
    CreateSession { timeout: i32 },
    CloseSession,
    Ops { ops: Vec<ROp>, multi: bool },
    Error { code: i32 },
    MultiError { codes: Vec<i32> },
}

/// Mirror of `Txn`.
#[derive(Archive, Serialize, Debug, Clone)]
#[rkyv(derive(Debug))]
pub struct RTxn {
    pub zxid: i64,
    pub time: i64,
    pub session: i64,
    pub body: RBody,
}

/// The archived root of a version 1 record payload: the batch's transactions in zxid order.
/// Only read now (old logs); this build writes version 2.
#[allow(dead_code)]
#[derive(Archive, Serialize, Debug, Clone)]
#[rkyv(derive(Debug))]
pub struct RBatch {
    pub txns: Vec<RTxn>,
}

/// A new session's password (version 2; a version 1 record has none).
#[derive(Archive, Serialize, Debug, Clone)]
#[rkyv(derive(Debug))]
pub struct RPasswd {
    pub session: i64,
    pub passwd: [u8; 16],
}

/// A client reply addressed to the node that took the request (version 2).
#[derive(Archive, Serialize, Debug, Clone)]
#[rkyv(derive(Debug))]
pub struct RAnswer {
    pub server: u32,
    pub rid: u64,
    /// 0 write, 1 write that closed its session, 2 connected, 3 refused.
    pub kind: u8,
    pub session: i64,
    pub timeout: i32,
    #[rkyv(with = AsBytes)]
    pub frame: Bytes,
}

/// The archived root of a version 2 record payload.
#[derive(Archive, Serialize, Debug, Clone)]
#[rkyv(derive(Debug))]
pub struct RBatch2 {
    pub txns: Vec<RTxn>,
    pub passwords: Vec<RPasswd>,
    pub answers: Vec<RAnswer>,
}

pub fn answer_to_mirror(a: &Answer) -> RAnswer {
    let (kind, session, timeout) = match a.kind {
        AnswerKind::Write { close: false } => (0, 0, 0),
        AnswerKind::Write { close: true } => (1, 0, 0),
        AnswerKind::Connected { session, timeout } => (2, session, timeout),
        AnswerKind::Refused => (3, 0, 0),
    };
    RAnswer { server: a.origin.server, rid: a.origin.rid, kind, session, timeout, frame: a.frame.clone() }
}

/// An owned answer from its validated archive; `None` for an unknown kind.
pub fn answer_from_archived(a: &ArchivedRAnswer) -> Option<Answer> {
    let kind = match a.kind {
        0 => AnswerKind::Write { close: false },
        1 => AnswerKind::Write { close: true },
        2 => AnswerKind::Connected { session: a.session.to_native(), timeout: a.timeout.to_native() },
        3 => AnswerKind::Refused,
        _ => return None,
    };
    Some(Answer {
        origin: Origin { server: a.server.to_native(), rid: a.rid.to_native() },
        kind,
        frame: Bytes::copy_from_slice(a.frame.as_slice()),
    })
}

/// The password of each new session in `txns`.
pub fn passwords_of(txns: &[Txn]) -> Vec<RPasswd> {
    txns.iter()
        .filter_map(|t| match t.body {
            TxnBody::CreateSession { passwd, .. } => Some(RPasswd { session: t.session, passwd }),
            _ => None,
        })
        .collect()
}

fn acls_to_mirror(acl: &[Acl]) -> Vec<RAcl> {
    acl.iter().map(|a| RAcl { perms: a.perms, scheme: a.id.scheme.clone(), id: a.id.id.clone() }).collect()
}

fn op_to_mirror(op: &TxnOp) -> ROp {
    match op {
        TxnOp::Create { path, data, acl, owner } => {
            ROp::Create { path: path.clone(), data: data.clone(), acl: acls_to_mirror(acl), owner: *owner }
        }
        TxnOp::Delete { path } => ROp::Delete { path: path.clone() },
        TxnOp::SetData { path, data } => ROp::SetData { path: path.clone(), data: data.clone() },
        TxnOp::SetAcl { path, acl } => ROp::SetAcl { path: path.clone(), acl: acls_to_mirror(acl) },
        TxnOp::Check { path } => ROp::Check { path: path.clone() },
    }
}

/// The mirror of `txn`; `None` for a `Barrier` (it consumes no zxid and is never logged).
pub fn to_mirror(txn: &Txn) -> Option<RTxn> {
    let body = match &txn.body {
        TxnBody::CreateSession { timeout, .. } => RBody::CreateSession { timeout: *timeout },
        TxnBody::CloseSession => RBody::CloseSession,
        TxnBody::Ops { ops, multi } => RBody::Ops { ops: ops.iter().map(op_to_mirror).collect(), multi: *multi },
        TxnBody::Error { code } => RBody::Error { code: *code },
        TxnBody::MultiError { codes } => RBody::MultiError { codes: codes.clone() },
        TxnBody::Barrier => return None,
    };
    Some(RTxn { zxid: txn.zxid, time: txn.time, session: txn.session, body })
}

fn acls_from_archived(acl: &ArchivedVec<ArchivedRAcl>) -> Arc<Vec<Acl>> {
    Arc::new(
        acl.iter()
            .map(|a| Acl {
                perms: a.perms.to_native(),
                id: Id { scheme: a.scheme.as_str().to_owned(), id: a.id.as_str().to_owned() },
            })
            .collect(),
    )
}

fn data_from_archived(data: &rkyv::option::ArchivedOption<ArchivedVec<u8>>) -> Option<Bytes> {
    data.as_ref().map(|d| Bytes::copy_from_slice(d.as_slice()))
}

fn path_from_archived(p: &ArchivedString) -> Arc<str> {
    Arc::from(p.as_str())
}

/// An owned `TxnOp` from its validated archive.
pub fn op_from_archived(op: &ArchivedROp) -> TxnOp {
    match op {
        ArchivedROp::Create { path, data, acl, owner } => TxnOp::Create {
            path: path_from_archived(path),
            data: data_from_archived(data),
            acl: acls_from_archived(acl),
            owner: owner.to_native(),
        },
        ArchivedROp::Delete { path } => TxnOp::Delete { path: path_from_archived(path) },
        ArchivedROp::SetData { path, data } => {
            TxnOp::SetData { path: path_from_archived(path), data: data_from_archived(data) }
        }
        ArchivedROp::SetAcl { path, acl } => {
            TxnOp::SetAcl { path: path_from_archived(path), acl: acls_from_archived(acl) }
        }
        ArchivedROp::Check { path } => TxnOp::Check { path: path_from_archived(path) },
    }
}

/// An owned `Txn` from its validated archive. A new session's password comes from the
/// record's password list (`passwd`); version 1 records have none (all zeros).
pub fn txn_from_archived(t: &ArchivedRTxn, passwd: impl Fn(i64) -> [u8; 16]) -> Txn {
    let body = match &t.body {
        ArchivedRBody::CreateSession { timeout } => {
            TxnBody::CreateSession { timeout: timeout.to_native(), passwd: passwd(t.session.to_native()) }
        }
        ArchivedRBody::CloseSession => TxnBody::CloseSession,
        ArchivedRBody::Ops { ops, multi } => {
            TxnBody::Ops { ops: ops.iter().map(op_from_archived).collect(), multi: *multi }
        }
        ArchivedRBody::Error { code } => TxnBody::Error { code: code.to_native() },
        ArchivedRBody::MultiError { codes } => {
            TxnBody::MultiError { codes: codes.iter().map(|c| c.to_native()).collect() }
        }
    };
    Txn { zxid: t.zxid.to_native(), time: t.time.to_native(), session: t.session.to_native(), body }
}
