//! Reads served against a tree snapshot: getData, exists, getChildren(2), getACL,
//! getAllChildrenNumber, getEphemerals, multiRead, whoAmI, and the watch requests
//! (setWatches, addWatch, removeWatches, checkWatches) that only touch the shard's watch table.
//!
//! Pure: one request, one snapshot, one watch table in; reply frames out. Never waits, never
//! sends, never writes the tree.

use crate::prep::reply::result_header;
use crate::proto::codes::{err, event, op, perm};
use crate::proto::jute::Writer;
use crate::proto::{encode_acls, encode_notification, multi_end, reply_empty, reply_header, ReadOp, Request};
use crate::tree::acl::{self, AuthInfo};
use crate::tree::{Node, Tree};
use crate::watch::{ConnId, Table, WatchTable, STANDARD};
use bytes::Bytes;
use std::sync::Arc;

/// What a read runs against.
pub struct ReadCtx<'a> {
    pub tree: &'a Tree,
    pub auth: &'a AuthInfo,
    pub session: i64,
    pub conn: ConnId,
    pub watches: &'a mut WatchTable,
}

fn readable<'t>(tree: &'t Tree, path: &str, auth: &AuthInfo) -> Result<&'t Arc<Node>, i32> {
    let node = tree.get(path).ok_or(err::NO_NODE)?;
    if !acl::allowed(&node.acl, perm::READ, auth) {
        return Err(err::NO_AUTH);
    }
    Ok(node)
}

fn encode_children(w: &mut Writer, node: &Node) {
    w.i32(node.num_children() as i32);
    for c in node.children() {
        w.string(c);
    }
}

/// Serves a read-side request. Catch-up watch events (setWatches) are appended to `events`,
/// which must be sent before the returned reply.
pub fn serve(ctx: &mut ReadCtx, xid: i32, req: &Request, events: &mut Vec<Bytes>) -> Bytes {
    let zxid = ctx.tree.last_zxid();
    let tree = ctx.tree;
    let fail = |code| reply_empty(xid, zxid, code);
    match req {
        Request::GetData { path, watch } => match readable(tree, path, ctx.auth) {
            Ok(n) => {
                if *watch {
                    ctx.watches.add(Table::Data, path, ctx.conn, STANDARD);
                }
                let mut w = reply_header(xid, zxid, err::OK);
                w.buffer(n.data.as_deref());
                n.stat().encode(&mut w);
                w.finish_frame()
            }
            Err(c) => fail(c),
        },
        Request::Exists { path, watch } => {
            if path.contains('\0') {
                return fail(err::BAD_ARGUMENTS);
            }
            // ZooKeeper checks no permission on exists: its events are READ-filtered instead.
            let node = tree.get(path);
            if *watch {
                ctx.watches.add(Table::Data, path, ctx.conn, STANDARD);
            }
            match node {
                Some(n) => {
                    let mut w = reply_header(xid, zxid, err::OK);
                    n.stat().encode(&mut w);
                    w.finish_frame()
                }
                None => fail(err::NO_NODE),
            }
        }
        Request::GetChildren { path, watch, with_stat } => match readable(tree, path, ctx.auth) {
            Ok(n) => {
                if *watch {
                    ctx.watches.add(Table::Child, path, ctx.conn, STANDARD);
                }
                let mut w = reply_header(xid, zxid, err::OK);
                encode_children(&mut w, n);
                if *with_stat {
                    n.stat().encode(&mut w);
                }
                w.finish_frame()
            }
            Err(c) => fail(c),
        },
        Request::GetAcl { path } => {
            let Some(n) = tree.get(path) else { return fail(err::NO_NODE) };
            let admin = acl::allowed(&n.acl, perm::ADMIN, ctx.auth);
            if !admin && !acl::allowed(&n.acl, perm::READ, ctx.auth) {
                return fail(err::NO_AUTH);
            }
            let mut w = reply_header(xid, zxid, err::OK);
            if admin {
                encode_acls(&mut w, &n.acl);
            } else {
                encode_acls(&mut w, &acl::mask_digests(&n.acl));
            }
            n.stat().encode(&mut w);
            w.finish_frame()
        }
        Request::GetAllChildrenNumber { path } => match readable(tree, path, ctx.auth) {
            Ok(_) => {
                let mut w = reply_header(xid, zxid, err::OK);
                w.i32(tree.descendant_count(path) as i32);
                w.finish_frame()
            }
            Err(c) => fail(c),
        },
        Request::GetEphemerals { prefix } => {
            let mut w = reply_header(xid, zxid, err::OK);
            let paths: Vec<_> =
                tree.ephemerals_of(ctx.session).into_iter().filter(|p| p.starts_with(prefix.as_str())).collect();
            w.strings(&paths);
            w.finish_frame()
        }
        Request::WhoAmI => {
            let mut w = reply_header(xid, zxid, err::OK);
            let mut infos: Vec<(String, String)> = vec![("ip".into(), ctx.auth.ip.to_string())];
            for id in &ctx.auth.ids {
                let user = match id.scheme.as_str() {
                    "digest" => id.id.split(':').next().unwrap_or("").to_string(),
                    _ => id.id.clone(),
                };
                let info = (id.scheme.clone(), user);
                if !infos.contains(&info) {
                    infos.push(info);
                }
            }
            if ctx.auth.is_super {
                infos.push(("super".into(), String::new()));
            }
            w.i32(infos.len() as i32);
            for (s, u) in infos {
                w.string(&s);
                w.string(&u);
            }
            w.finish_frame()
        }
        Request::MultiRead(ops) => {
            let mut w = reply_header(xid, zxid, err::OK);
            for o in ops {
                let (kind, path) = match o {
                    ReadOp::GetData { path } => (op::GET_DATA, path),
                    ReadOp::GetChildren { path } => (op::GET_CHILDREN, path),
                };
                match readable(tree, path, ctx.auth) {
                    Ok(n) => {
                        result_header(&mut w, kind, 0);
                        if kind == op::GET_DATA {
                            w.buffer(n.data.as_deref());
                            n.stat().encode(&mut w);
                        } else {
                            encode_children(&mut w, n);
                        }
                    }
                    Err(c) => {
                        result_header(&mut w, op::ERROR, c);
                        w.i32(c);
                    }
                }
            }
            multi_end(&mut w);
            w.finish_frame()
        }
        Request::SetWatches(s) => {
            let rel = s.relative_zxid;
            for p in &s.data {
                match tree.get(p) {
                    None => events.push(encode_notification(-1, event::NODE_DELETED, p)),
                    Some(n) if n.mzxid > rel => events.push(encode_notification(-1, event::NODE_DATA_CHANGED, p)),
                    Some(_) => ctx.watches.add(Table::Data, p, ctx.conn, STANDARD),
                }
            }
            for p in &s.exist {
                match tree.get(p) {
                    Some(_) => events.push(encode_notification(-1, event::NODE_CREATED, p)),
                    None => ctx.watches.add(Table::Data, p, ctx.conn, STANDARD),
                }
            }
            for p in &s.child {
                match tree.get(p) {
                    None => events.push(encode_notification(-1, event::NODE_DELETED, p)),
                    Some(n) if n.pzxid > rel => events.push(encode_notification(-1, event::NODE_CHILDREN_CHANGED, p)),
                    Some(_) => ctx.watches.add(Table::Child, p, ctx.conn, STANDARD),
                }
            }
            for p in &s.persistent {
                ctx.watches.add_persistent(p, ctx.conn, false);
            }
            for p in &s.recursive {
                ctx.watches.add_persistent(p, ctx.conn, true);
            }
            fail(err::OK)
        }
        Request::AddWatch { path, mode } => match mode {
            0 | 1 => {
                ctx.watches.add_persistent(path, ctx.conn, *mode == 1);
                let mut w = reply_header(xid, zxid, err::OK);
                w.i32(0);
                w.finish_frame()
            }
            _ => fail(err::MARSHALLING_ERROR),
        },
        Request::RemoveWatches { path, kind } => match ctx.watches.remove(path, ctx.conn, *kind) {
            Ok(true) => fail(err::OK),
            Ok(false) => fail(err::NO_WATCHER),
            Err(_) => fail(err::MARSHALLING_ERROR),
        },
        Request::CheckWatches { path, kind } => match ctx.watches.has(path, ctx.conn, *kind) {
            Ok(true) => fail(err::OK),
            Ok(false) => fail(err::NO_WATCHER),
            Err(_) => fail(err::MARSHALLING_ERROR),
        },
        _ => fail(err::UNIMPLEMENTED),
    }
}

/// Whether serving `req` may add or remove watches.
pub fn changes_watches(req: &Request) -> bool {
    match req {
        Request::GetData { watch, .. } | Request::Exists { watch, .. } | Request::GetChildren { watch, .. } => *watch,
        Request::SetWatches(_) | Request::AddWatch { .. } | Request::RemoveWatches { .. } => true,
        _ => false,
    }
}

/// Whether `req` is served by `serve` (on the shard, without the commit core).
pub fn is_read(req: &Request) -> bool {
    matches!(
        req,
        Request::GetData { .. }
            | Request::Exists { .. }
            | Request::GetChildren { .. }
            | Request::GetAcl { .. }
            | Request::GetAllChildrenNumber { .. }
            | Request::GetEphemerals { .. }
            | Request::WhoAmI
            | Request::MultiRead(_)
            | Request::SetWatches(_)
            | Request::AddWatch { .. }
            | Request::RemoveWatches { .. }
            | Request::CheckWatches { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::jute::Reader;

    #[test]
    fn exists_on_missing_registers_watch_get_data_does_not() {
        let tree = Tree::new();
        let auth = AuthInfo::new("127.0.0.1".parse().unwrap());
        let mut watches = WatchTable::new();
        let mut ev = vec![];
        let mut ctx = ReadCtx { tree: &tree, auth: &auth, session: 1, conn: 9, watches: &mut watches };
        let r = serve(&mut ctx, 5, &Request::Exists { path: "/x".into(), watch: true }, &mut ev);
        assert_eq!(r.len(), 20);
        assert_eq!(Reader::new(&r[16..]).i32().unwrap(), err::NO_NODE);
        let r = serve(&mut ctx, 6, &Request::GetData { path: "/y".into(), watch: true }, &mut ev);
        assert_eq!(Reader::new(&r[16..]).i32().unwrap(), err::NO_NODE);
        assert_eq!(watches.total(), 1);
    }

    #[test]
    fn get_data_of_root_via_empty_path() {
        let tree = Tree::new();
        let auth = AuthInfo::new("127.0.0.1".parse().unwrap());
        let mut watches = WatchTable::new();
        let mut ctx = ReadCtx { tree: &tree, auth: &auth, session: 1, conn: 9, watches: &mut watches };
        let r = serve(&mut ctx, 1, &Request::GetData { path: "".into(), watch: false }, &mut vec![]);
        assert_eq!(r.len(), 4 + 16 + 4 + 68);
    }
}
