//! Reply frames for writes, built from the request, its transaction and the applied stats.
//!
//! Pure encoding of results the commit core already decided. Never decides an error itself.

use crate::proto::codes::{err, op};
use crate::proto::jute::Writer;
use crate::proto::{multi_end, reply_empty, reply_header, MultiOp, Request, Stat};
use crate::txn::{TxnBody, TxnOp};
use bytes::Bytes;

/// The reply frame for a write request whose transaction `body` was applied at `zxid`.
/// `stats` holds the per-op stats `Tree::apply` produced.
pub fn write_reply(xid: i32, zxid: i64, req: &Request, body: &TxnBody, stats: &[Option<Stat>]) -> Bytes {
    match body {
        TxnBody::Error { code } => reply_empty(xid, zxid, *code),
        TxnBody::CloseSession | TxnBody::CreateSession { .. } => reply_empty(xid, zxid, err::OK),
        TxnBody::Barrier => {
            let mut w = reply_header(xid, zxid, err::OK);
            if let Request::Sync { path } = req {
                w.string(path);
            }
            w.finish_frame()
        }
        TxnBody::Ops { ops, multi: false } => {
            let mut w = reply_header(xid, zxid, err::OK);
            let stat = stats.first().copied().flatten().unwrap_or_default();
            match (&ops[0], req) {
                (TxnOp::Create { path, .. }, Request::Create(c)) => {
                    w.string(path);
                    if c.op != op::CREATE {
                        stat.encode(&mut w);
                    }
                }
                (TxnOp::SetData { .. }, _) | (TxnOp::SetAcl { .. }, _) => stat.encode(&mut w),
                _ => {}
            }
            w.finish_frame()
        }
        TxnBody::Ops { ops, multi: true } => {
            let mut w = reply_header(xid, zxid, err::OK);
            let req_ops: &[MultiOp] = match req {
                Request::Multi(r) => r,
                _ => &[],
            };
            for (i, o) in ops.iter().enumerate() {
                let stat = stats.get(i).copied().flatten().unwrap_or_default();
                match o {
                    TxnOp::Create { path, .. } => {
                        let plain = matches!(req_ops.get(i), Some(MultiOp::Create(c)) if c.op == op::CREATE);
                        result_header(&mut w, if plain { op::CREATE } else { op::CREATE2 }, 0);
                        w.string(path);
                        if !plain {
                            stat.encode(&mut w);
                        }
                    }
                    TxnOp::Delete { .. } => result_header(&mut w, op::DELETE, 0),
                    TxnOp::SetData { .. } => {
                        result_header(&mut w, op::SET_DATA, 0);
                        stat.encode(&mut w);
                    }
                    TxnOp::Check { .. } => result_header(&mut w, op::CHECK, 0),
                    TxnOp::SetAcl { .. } => result_header(&mut w, op::SET_ACL, 0),
                }
            }
            multi_end(&mut w);
            w.finish_frame()
        }
        TxnBody::MultiError { codes } => {
            let mut w = reply_header(xid, zxid, err::OK);
            for c in codes {
                result_header(&mut w, op::ERROR, *c);
                w.i32(*c);
            }
            multi_end(&mut w);
            w.finish_frame()
        }
    }
}

/// A MultiHeader for one result.
pub fn result_header(w: &mut Writer, kind: i32, code: i32) {
    w.i32(kind);
    w.bool(false);
    w.i32(code);
}
