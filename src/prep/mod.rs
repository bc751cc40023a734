//! Request preparation: turns a client write into a transaction, checking it against the tree
//! as it stands after every write ordered before it (ZooKeeper's PrepRequestProcessor).
//!
//! Owns the error-check order of each write op. Pure: never mutates the tree it is given
//! (multi works on a scratch copy), never reads a clock, never does I/O.

pub mod reply;

use crate::proto::codes::{err, op, perm, CreateMode, CONTAINER_OWNER, MAX_TTL, TTL_MARKER};
use crate::proto::{CreateRequest, MultiOp, Request};
use crate::tree::acl::{self, AuthInfo};
use crate::tree::{path, Kind, Tree};
use crate::txn::{TxnBody, TxnOp};
use std::sync::Arc;

/// The context a write is prepared in.
pub struct PrepCtx<'a> {
    pub session: i64,
    pub auth: &'a AuthInfo,
    /// Whether TTL nodes are allowed (`zookeeper.extendedTypesEnabled`).
    pub extended_types: bool,
}

type OpResult = Result<TxnOp, i32>;

/// Prepares a write request. Errors become `TxnBody::Error` / `MultiError`, which still consume
/// a zxid, as on the real server.
pub fn prep_write(tree: &Tree, req: &Request, ctx: &PrepCtx) -> TxnBody {
    let single = |r: OpResult| match r {
        Ok(o) => TxnBody::Ops { ops: vec![o], multi: false },
        Err(code) => TxnBody::Error { code },
    };
    match req {
        Request::Create(c) => single(prep_create(tree, c, ctx)),
        Request::Delete { path, version } => single(prep_delete(tree, path, *version, ctx)),
        Request::SetData { path, data, version } => single(prep_set_data(tree, path, data, *version, ctx)),
        Request::SetAcl { path, acl, version } => single(prep_set_acl(tree, path, acl, *version, ctx)),
        Request::Multi(ops) => prep_multi(tree, ops, ctx),
        Request::CloseSession => TxnBody::CloseSession,
        Request::Sync { .. } => TxnBody::Barrier,
        _ => TxnBody::Error { code: err::UNIMPLEMENTED },
    }
}

fn prep_multi(tree: &Tree, ops: &[MultiOp], ctx: &PrepCtx) -> TxnBody {
    let mut scratch = tree.clone();
    let mut out = Vec::with_capacity(ops.len());
    let mut sink = Vec::new();
    for (i, o) in ops.iter().enumerate() {
        let r = match o {
            MultiOp::Create(c) => prep_create(&scratch, c, ctx),
            MultiOp::Delete { path, version } => prep_delete(&scratch, path, *version, ctx),
            MultiOp::SetData { path, data, version } => prep_set_data(&scratch, path, data, *version, ctx),
            MultiOp::Check { path, version } => prep_check(&scratch, path, *version, ctx),
        };
        match r {
            Ok(t) => {
                // Zxid and time do not matter on the scratch copy: only existence, versions,
                // children and sequence counters feed later checks.
                scratch.apply_op(&t, 0, 0, &mut sink);
                sink.clear();
                out.push(t);
            }
            Err(code) => {
                let mut codes = vec![0; i];
                codes.push(code);
                codes.resize(ops.len(), err::RUNTIME_INCONSISTENCY);
                return TxnBody::MultiError { codes };
            }
        }
    }
    TxnBody::Ops { ops: out, multi: true }
}

fn check_version(expected: i32, actual: i32) -> Result<(), i32> {
    if expected != -1 && expected != actual {
        Err(err::BAD_VERSION)
    } else {
        Ok(())
    }
}

fn prep_create(tree: &Tree, c: &CreateRequest, ctx: &PrepCtx) -> OpResult {
    let mode = CreateMode::from_flags(c.flags).ok_or(err::BAD_ARGUMENTS)?;
    let ttl_op = c.op == op::CREATE_TTL;
    if (mode.ttl || ttl_op) && !ctx.extended_types {
        return Err(err::UNIMPLEMENTED);
    }
    if ttl_op {
        if !mode.ttl || c.ttl <= 0 || c.ttl > MAX_TTL {
            return Err(err::BAD_ARGUMENTS);
        }
    } else if mode.ttl {
        return Err(err::BAD_ARGUMENTS);
    }
    // Inside a multi the op code was already rebuilt from the flags (`decode_multi`).
    let container = c.op == op::CREATE_CONTAINER;
    if c.op == op::CREATE_CONTAINER && c.flags > 4 {
        return Err(err::BAD_ARGUMENTS);
    }
    if c.path.contains('\0') {
        return Err(err::BAD_ARGUMENTS);
    }
    let parent_path = path::parent(&c.path).ok_or(err::BAD_ARGUMENTS)?;
    let acl = acl::fixup(&c.acl, ctx.auth).map_err(|_| err::INVALID_ACL)?;
    let parent = tree.get(parent_path).ok_or(err::NO_NODE)?;
    if !acl::allowed(&parent.acl, perm::CREATE, ctx.auth) {
        return Err(err::NO_AUTH);
    }
    let sequential = mode.sequential;
    let full: String = if sequential { format!("{}{}", c.path, seq_suffix(parent.cversion)) } else { c.path.clone() };
    if !path::is_valid(&full) {
        return Err(err::BAD_ARGUMENTS);
    }
    if tree.get(&full).is_some() {
        return Err(err::NODE_EXISTS);
    }
    if let Kind::Ephemeral(_) = parent.kind() {
        return Err(err::NO_CHILDREN_FOR_EPHEMERALS);
    }
    let owner = if container {
        CONTAINER_OWNER
    } else if mode.ttl {
        TTL_MARKER | c.ttl
    } else if mode.ephemeral {
        ctx.session
    } else {
        0
    };
    Ok(TxnOp::Create { path: full.into(), data: c.data.clone(), acl: Arc::new(acl), owner })
}

/// `%010d` of the parent's stored cversion, as Java formats it (negatives keep the sign).
pub fn seq_suffix(counter: i32) -> String {
    format!("{counter:010}")
}

fn prep_delete(tree: &Tree, p: &str, version: i32, ctx: &PrepCtx) -> OpResult {
    if p.contains('\0') || path::is_system(p) {
        return Err(err::BAD_ARGUMENTS);
    }
    let parent_path = path::parent(p).ok_or(err::BAD_ARGUMENTS)?;
    let parent = tree.get(parent_path).ok_or(err::NO_NODE)?;
    if !acl::allowed(&parent.acl, perm::DELETE, ctx.auth) {
        return Err(err::NO_AUTH);
    }
    let node = tree.get(p).filter(|_| !p.is_empty()).ok_or(err::NO_NODE)?;
    check_version(version, node.version)?;
    if node.num_children() > 0 {
        return Err(err::NOT_EMPTY);
    }
    Ok(TxnOp::Delete { path: p.into() })
}

fn prep_set_data(tree: &Tree, p: &str, data: &Option<bytes::Bytes>, version: i32, ctx: &PrepCtx) -> OpResult {
    if !path::is_valid(p) {
        return Err(err::BAD_ARGUMENTS);
    }
    let node = tree.get(p).ok_or(err::NO_NODE)?;
    if !acl::allowed(&node.acl, perm::WRITE, ctx.auth) {
        return Err(err::NO_AUTH);
    }
    check_version(version, node.version)?;
    Ok(TxnOp::SetData { path: p.into(), data: data.clone() })
}

fn prep_set_acl(tree: &Tree, p: &str, acl_in: &[crate::proto::Acl], version: i32, ctx: &PrepCtx) -> OpResult {
    if !path::is_valid(p) {
        return Err(err::BAD_ARGUMENTS);
    }
    let acl = acl::fixup(acl_in, ctx.auth).map_err(|_| err::INVALID_ACL)?;
    let node = tree.get(p).ok_or(err::NO_NODE)?;
    if !acl::allowed(&node.acl, perm::ADMIN, ctx.auth) {
        return Err(err::NO_AUTH);
    }
    check_version(version, node.aversion)?;
    Ok(TxnOp::SetAcl { path: p.into(), acl: Arc::new(acl) })
}

fn prep_check(tree: &Tree, p: &str, version: i32, ctx: &PrepCtx) -> OpResult {
    if !path::is_valid(p) {
        return Err(err::BAD_ARGUMENTS);
    }
    let node = tree.get(p).ok_or(err::NO_NODE)?;
    if !acl::allowed(&node.acl, perm::READ, ctx.auth) {
        return Err(err::NO_AUTH);
    }
    check_version(version, node.version)?;
    Ok(TxnOp::Check { path: p.into() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Acl;
    use crate::txn::Txn;
    use bytes::Bytes;

    fn ctx(auth: &AuthInfo) -> PrepCtx<'_> {
        PrepCtx { session: 7, auth, extended_types: true }
    }

    fn create(p: &str, flags: i32) -> Request {
        Request::Create(CreateRequest {
            path: p.into(),
            data: Some(Bytes::from_static(b"x")),
            acl: vec![Acl::world(31)],
            flags,
            ttl: -1,
            op: op::CREATE,
        })
    }

    fn commit(tree: &mut Tree, zxid: i64, body: TxnBody) {
        tree.apply(&Txn { zxid, time: 0, session: 7, body }, &mut vec![], &mut vec![]);
    }

    #[test]
    fn create_checks_in_order() {
        let auth = AuthInfo::new("127.0.0.1".parse().unwrap());
        let mut t = Tree::new();
        assert_eq!(prep_write(&t, &create("/a/b", 0), &ctx(&auth)), TxnBody::Error { code: err::NO_NODE });
        assert_eq!(prep_write(&t, &create("/a", 9), &ctx(&auth)), TxnBody::Error { code: err::BAD_ARGUMENTS });
        assert_eq!(prep_write(&t, &create("/", 0), &ctx(&auth)), TxnBody::Error { code: err::NODE_EXISTS });
        let b = prep_write(&t, &create("/e", 1), &ctx(&auth));
        commit(&mut t, 1, b);
        assert_eq!(t.get("/e").unwrap().stat().ephemeral_owner, 7);
        assert_eq!(
            prep_write(&t, &create("/e/x", 0), &ctx(&auth)),
            TxnBody::Error { code: err::NO_CHILDREN_FOR_EPHEMERALS }
        );
        assert_eq!(prep_write(&t, &create("/e", 0), &ctx(&auth)), TxnBody::Error { code: err::NODE_EXISTS });
        match prep_write(&t, &create("/s-", 2), &ctx(&auth)) {
            TxnBody::Ops { ops, .. } => {
                assert!(matches!(&ops[0], TxnOp::Create { path, .. } if &**path == "/s-0000000001"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn delete_bad_version_wins_over_not_empty() {
        let auth = AuthInfo::new("127.0.0.1".parse().unwrap());
        let mut t = Tree::new();
        let b = prep_write(&t, &create("/a", 0), &ctx(&auth));
        commit(&mut t, 1, b);
        let b = prep_write(&t, &create("/a/b", 0), &ctx(&auth));
        commit(&mut t, 2, b);
        let del = |v| Request::Delete { path: "/a".into(), version: v };
        assert_eq!(prep_write(&t, &del(5), &ctx(&auth)), TxnBody::Error { code: err::BAD_VERSION });
        assert_eq!(prep_write(&t, &del(0), &ctx(&auth)), TxnBody::Error { code: err::NOT_EMPTY });
        let z = Request::Delete { path: "/zookeeper".into(), version: -1 };
        assert_eq!(prep_write(&t, &z, &ctx(&auth)), TxnBody::Error { code: err::BAD_ARGUMENTS });
    }

    #[test]
    fn multi_sees_earlier_ops_and_reports_rollback() {
        let auth = AuthInfo::new("127.0.0.1".parse().unwrap());
        let t = Tree::new();
        let c = |p: &str| match create(p, 0) {
            Request::Create(c) => MultiOp::Create(c),
            _ => unreachable!(),
        };
        let ok = Request::Multi(vec![c("/m"), c("/m/n")]);
        assert!(matches!(prep_write(&t, &ok, &ctx(&auth)), TxnBody::Ops { multi: true, .. }));
        let bad = Request::Multi(vec![c("/m"), c("/m"), c("/z")]);
        assert_eq!(
            prep_write(&t, &bad, &ctx(&auth)),
            TxnBody::MultiError { codes: vec![0, err::NODE_EXISTS, err::RUNTIME_INCONSISTENCY] }
        );
        assert!(t.get("/m").is_none(), "prep must not change the tree");
    }

    #[test]
    fn ttl_rules() {
        let auth = AuthInfo::new("127.0.0.1".parse().unwrap());
        let t = Tree::new();
        let ttl = |flags, ttl| {
            Request::Create(CreateRequest {
                path: "/t".into(),
                data: None,
                acl: vec![Acl::world(31)],
                flags,
                ttl,
                op: op::CREATE_TTL,
            })
        };
        assert!(matches!(prep_write(&t, &ttl(5, 100), &ctx(&auth)), TxnBody::Ops { .. }));
        assert_eq!(prep_write(&t, &ttl(5, 0), &ctx(&auth)), TxnBody::Error { code: err::BAD_ARGUMENTS });
        assert_eq!(prep_write(&t, &ttl(0, 100), &ctx(&auth)), TxnBody::Error { code: err::BAD_ARGUMENTS });
        let off = PrepCtx { session: 7, auth: &auth, extended_types: false };
        assert_eq!(prep_write(&t, &ttl(5, 100), &off), TxnBody::Error { code: err::UNIMPLEMENTED });
    }
}
