//! ZooKeeper request and response records, decoded from and encoded to jute.
//!
//! Owns the byte layout of every client-visible record (zookeeper.jute). It never checks a
//! request against the tree and never decides which error a valid request deserves.

use super::codes::{op, CreateMode};
use super::jute::{DecodeError, DecodeResult, Reader, Writer};
use bytes::Bytes;

/// An ACL identity: scheme plus id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id {
    pub scheme: String,
    pub id: String,
}

/// One ACL entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Acl {
    pub perms: i32,
    pub id: Id,
}

impl Acl {
    pub fn world(perms: i32) -> Acl {
        Acl { perms, id: Id { scheme: "world".into(), id: "anyone".into() } }
    }
}

/// The Stat a client sees (already with shown cversion and ephemeralOwner).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

impl Stat {
    pub fn encode(&self, w: &mut Writer) {
        w.i64(self.czxid);
        w.i64(self.mzxid);
        w.i64(self.ctime);
        w.i64(self.mtime);
        w.i32(self.version);
        w.i32(self.cversion);
        w.i32(self.aversion);
        w.i64(self.ephemeral_owner);
        w.i32(self.data_length);
        w.i32(self.num_children);
        w.i64(self.pzxid);
    }

    pub fn decode(r: &mut Reader) -> DecodeResult<Stat> {
        Ok(Stat {
            czxid: r.i64()?,
            mzxid: r.i64()?,
            ctime: r.i64()?,
            mtime: r.i64()?,
            version: r.i32()?,
            cversion: r.i32()?,
            aversion: r.i32()?,
            ephemeral_owner: r.i64()?,
            data_length: r.i32()?,
            num_children: r.i32()?,
            pzxid: r.i64()?,
        })
    }
}

pub fn encode_acls(w: &mut Writer, acls: &[Acl]) {
    w.i32(acls.len() as i32);
    for a in acls {
        w.i32(a.perms);
        w.string(&a.id.scheme);
        w.string(&a.id.id);
    }
}

fn decode_acls(r: &mut Reader) -> DecodeResult<Vec<Acl>> {
    let n = r.vec_len(12)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let perms = r.i32()?;
        let scheme = r.string()?;
        let id = r.string()?;
        v.push(Acl { perms, id: Id { scheme, id } });
    }
    Ok(v)
}

/// The first frame of a client connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    /// `None` when the client did not send the readOnly byte (pre-3.4 clients).
    pub read_only: Option<bool>,
}

impl ConnectRequest {
    pub fn decode(body: &[u8]) -> DecodeResult<ConnectRequest> {
        let mut r = Reader::new(body);
        let protocol_version = r.i32()?;
        let last_zxid_seen = r.i64()?;
        let timeout = r.i32()?;
        let session_id = r.i64()?;
        let passwd = r.buffer()?.map(|b| b.to_vec()).unwrap_or_default();
        let read_only = if r.remaining() > 0 { Some(r.bool()?) } else { None };
        Ok(ConnectRequest { protocol_version, last_zxid_seen, timeout, session_id, passwd, read_only })
    }
}

/// The server's answer to a ConnectRequest, as a whole frame. `timeout == 0` means expired.
pub fn encode_connect_response(timeout: i32, session_id: i64, passwd: &[u8; 16], read_only: Option<bool>) -> Bytes {
    let mut w = Writer::frame();
    w.i32(0);
    w.i32(timeout);
    w.i64(session_id);
    w.buffer(Some(passwd));
    if let Some(ro) = read_only {
        w.bool(ro);
    }
    w.finish_frame()
}

/// The body of a create-family request (ops 1, 15, 19, 21).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    pub path: String,
    pub data: Option<Bytes>,
    pub acl: Vec<Acl>,
    pub flags: i32,
    /// -1 unless the request was createTTL.
    pub ttl: i64,
    /// The op code it arrived with (decides the response shape).
    pub op: i32,
}

/// One write op inside a multi.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    Create(CreateRequest),
    Delete { path: String, version: i32 },
    SetData { path: String, data: Option<Bytes>, version: i32 },
    Check { path: String, version: i32 },
}

/// One read op inside a multiRead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOp {
    GetData { path: String },
    GetChildren { path: String },
}

/// A decoded client request (after the RequestHeader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Create(CreateRequest),
    Delete { path: String, version: i32 },
    Exists { path: String, watch: bool },
    GetData { path: String, watch: bool },
    SetData { path: String, data: Option<Bytes>, version: i32 },
    GetAcl { path: String },
    SetAcl { path: String, acl: Vec<Acl>, version: i32 },
    GetChildren { path: String, watch: bool, with_stat: bool },
    Sync { path: String },
    Ping,
    Check { path: String, version: i32 },
    Multi(Vec<MultiOp>),
    MultiRead(Vec<ReadOp>),
    Reconfig,
    CheckWatches { path: String, kind: i32 },
    RemoveWatches { path: String, kind: i32 },
    Auth { scheme: String, auth: Vec<u8> },
    SetWatches(SetWatches),
    Sasl,
    GetEphemerals { prefix: String },
    GetAllChildrenNumber { path: String },
    AddWatch { path: String, mode: i32 },
    WhoAmI,
    CloseSession,
}

/// SetWatches (101) and SetWatches2 (105); the two persistent lists are empty for 101.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetWatches {
    pub relative_zxid: i64,
    pub data: Vec<String>,
    pub exist: Vec<String>,
    pub child: Vec<String>,
    pub persistent: Vec<String>,
    pub recursive: Vec<String>,
}

/// What decoding a request header + body can give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeOutcome {
    Ok(Request),
    /// The op is known but its record is malformed: reply MarshallingError, keep the connection.
    Malformed,
    /// The op code is unknown (or not allowed stand-alone): reply Unimplemented and close.
    Unknown,
}

fn decode_create(r: &mut Reader, opcode: i32) -> DecodeResult<CreateRequest> {
    let path = r.string()?;
    let data = r.buffer()?;
    let acl = decode_acls(r)?;
    let flags = r.i32()?;
    let ttl = if opcode == op::CREATE_TTL { r.i64()? } else { -1 };
    Ok(CreateRequest { path, data, acl, flags, ttl, op: opcode })
}

/// Reads MultiHeader-prefixed items until the `done` terminator; `item` decodes one record of
/// the given op type.
fn decode_multi_items<T>(r: &mut Reader, item: impl Fn(&mut Reader, i32) -> DecodeResult<T>) -> DecodeResult<Vec<T>> {
    let mut ops = Vec::new();
    loop {
        let t = r.i32()?;
        let done = r.bool()?;
        let _err = r.i32()?;
        if done {
            return Ok(ops);
        }
        ops.push(item(r, t)?);
    }
}

/// ZooKeeper rebuilds a create inside a multi from its flags, not from its op code: flags 4
/// make a container, flags 5 and 6 a TTL node, anything else (invalid flags too, which then
/// fail with BadArguments as that op's result) a plain create; a createTTL record whose flags
/// are not a TTL mode loses its TTL. The rebuilt op code decides the result's shape: create
/// (path only) for a plain create, create2 (path and Stat) for the others.
fn rebuild_multi_create(c: &mut CreateRequest) {
    let mode = CreateMode::from_flags(c.flags);
    if c.op == op::CREATE_TTL && mode.is_some_and(|m| m.ttl) {
        return;
    }
    c.ttl = -1;
    c.op = match mode {
        Some(m) if m.container => op::CREATE_CONTAINER,
        Some(m) if m.ttl => op::CREATE_TTL,
        _ => op::CREATE,
    };
}

fn decode_multi(r: &mut Reader) -> DecodeResult<Vec<MultiOp>> {
    decode_multi_items(r, |r, t| {
        Ok(match t {
            op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
                let mut c = decode_create(r, t)?;
                rebuild_multi_create(&mut c);
                MultiOp::Create(c)
            }
            op::DELETE => MultiOp::Delete { path: r.string()?, version: r.i32()? },
            op::SET_DATA => MultiOp::SetData { path: r.string()?, data: r.buffer()?, version: r.i32()? },
            op::CHECK => MultiOp::Check { path: r.string()?, version: r.i32()? },
            _ => return Err(DecodeError::BadValue),
        })
    })
}

fn decode_multi_read(r: &mut Reader) -> DecodeResult<Vec<ReadOp>> {
    decode_multi_items(r, |r, t| {
        let path = r.string()?;
        r.bool()?; // the watch flag: ignored in multiRead
        match t {
            op::GET_DATA => Ok(ReadOp::GetData { path }),
            op::GET_CHILDREN => Ok(ReadOp::GetChildren { path }),
            _ => Err(DecodeError::BadValue),
        }
    })
}

fn decode_set_watches(r: &mut Reader, v2: bool) -> DecodeResult<SetWatches> {
    let mut s = SetWatches { relative_zxid: r.i64()?, ..Default::default() };
    s.data = r.strings()?;
    s.exist = r.strings()?;
    s.child = r.strings()?;
    if v2 {
        s.persistent = r.strings()?;
        s.recursive = r.strings()?;
    }
    Ok(s)
}

/// Decodes the record of op `opcode` from `body` (the bytes after the RequestHeader).
pub fn decode_request(opcode: i32, body: &[u8]) -> DecodeOutcome {
    let mut r = Reader::new(body);
    let res: DecodeResult<Request> = (|| {
        Ok(match opcode {
            op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
                Request::Create(decode_create(&mut r, opcode)?)
            }
            op::DELETE => Request::Delete { path: r.string()?, version: r.i32()? },
            op::EXISTS => Request::Exists { path: r.string()?, watch: r.bool()? },
            op::GET_DATA => Request::GetData { path: r.string()?, watch: r.bool()? },
            op::SET_DATA => Request::SetData { path: r.string()?, data: r.buffer()?, version: r.i32()? },
            op::GET_ACL => Request::GetAcl { path: r.string()? },
            op::SET_ACL => Request::SetAcl { path: r.string()?, acl: decode_acls(&mut r)?, version: r.i32()? },
            op::GET_CHILDREN => Request::GetChildren { path: r.string()?, watch: r.bool()?, with_stat: false },
            op::GET_CHILDREN2 => Request::GetChildren { path: r.string()?, watch: r.bool()?, with_stat: true },
            op::SYNC => Request::Sync { path: r.string()? },
            op::PING => Request::Ping,
            op::MULTI => Request::Multi(decode_multi(&mut r)?),
            op::MULTI_READ => Request::MultiRead(decode_multi_read(&mut r)?),
            op::RECONFIG => Request::Reconfig,
            op::CHECK_WATCHES => Request::CheckWatches { path: r.string()?, kind: r.i32()? },
            op::REMOVE_WATCHES => Request::RemoveWatches { path: r.string()?, kind: r.i32()? },
            op::AUTH => {
                let _type = r.i32()?;
                let scheme = r.string()?;
                let auth = r.buffer()?.map(|b| b.to_vec()).unwrap_or_default();
                Request::Auth { scheme, auth }
            }
            op::SET_WATCHES => Request::SetWatches(decode_set_watches(&mut r, false)?),
            op::SET_WATCHES2 => Request::SetWatches(decode_set_watches(&mut r, true)?),
            op::SASL => Request::Sasl,
            op::GET_EPHEMERALS => Request::GetEphemerals { prefix: r.string()? },
            op::GET_ALL_CHILDREN_NUMBER => Request::GetAllChildrenNumber { path: r.string()? },
            op::ADD_WATCH => Request::AddWatch { path: r.string()?, mode: r.i32()? },
            op::WHO_AM_I => Request::WhoAmI,
            op::CLOSE_SESSION => Request::CloseSession,
            op::CHECK => Request::Check { path: r.string()?, version: r.i32()? },
            _ => return Err(DecodeError::BadValue),
        })
    })();
    match res {
        Ok(req) => DecodeOutcome::Ok(req),
        Err(_) if !is_known_op(opcode) => DecodeOutcome::Unknown,
        Err(_) => DecodeOutcome::Malformed,
    }
}

/// Whether `opcode` is one a client may send.
pub fn is_known_op(opcode: i32) -> bool {
    matches!(
        opcode,
        op::CREATE..=op::SYNC
            | op::PING
            | op::GET_CHILDREN2..=op::CREATE_CONTAINER
            | op::CREATE_TTL
            | op::MULTI_READ
            | op::AUTH..=op::WHO_AM_I
            | op::CLOSE_SESSION
    )
}

/// Encodes a request (client side; used by the loadgen and tests).
pub fn encode_request(w: &mut Writer, req: &Request) {
    match req {
        Request::Create(c) => encode_create(w, c),
        Request::Delete { path, version } => {
            w.string(path);
            w.i32(*version);
        }
        Request::Exists { path, watch } | Request::GetData { path, watch } => {
            w.string(path);
            w.bool(*watch);
        }
        Request::GetChildren { path, watch, .. } => {
            w.string(path);
            w.bool(*watch);
        }
        Request::SetData { path, data, version } => {
            w.string(path);
            w.buffer(data.as_deref());
            w.i32(*version);
        }
        Request::GetAcl { path } | Request::Sync { path } | Request::GetAllChildrenNumber { path } => w.string(path),
        Request::GetEphemerals { prefix } => w.string(prefix),
        Request::SetAcl { path, acl, version } => {
            w.string(path);
            encode_acls(w, acl);
            w.i32(*version);
        }
        Request::Check { path, version } => {
            w.string(path);
            w.i32(*version);
        }
        Request::Multi(ops) => {
            for o in ops {
                let t = match o {
                    MultiOp::Create(c) => c.op,
                    MultiOp::Delete { .. } => op::DELETE,
                    MultiOp::SetData { .. } => op::SET_DATA,
                    MultiOp::Check { .. } => op::CHECK,
                };
                w.i32(t);
                w.bool(false);
                w.i32(-1);
                match o {
                    MultiOp::Create(c) => encode_create(w, c),
                    MultiOp::Delete { path, version } | MultiOp::Check { path, version } => {
                        w.string(path);
                        w.i32(*version);
                    }
                    MultiOp::SetData { path, data, version } => {
                        w.string(path);
                        w.buffer(data.as_deref());
                        w.i32(*version);
                    }
                }
            }
            multi_end(w);
        }
        Request::MultiRead(ops) => {
            for o in ops {
                let (t, p) = match o {
                    ReadOp::GetData { path } => (op::GET_DATA, path),
                    ReadOp::GetChildren { path } => (op::GET_CHILDREN, path),
                };
                w.i32(t);
                w.bool(false);
                w.i32(-1);
                w.string(p);
                w.bool(false);
            }
            multi_end(w);
        }
        Request::CheckWatches { path, kind } | Request::RemoveWatches { path, kind } => {
            w.string(path);
            w.i32(*kind);
        }
        Request::AddWatch { path, mode } => {
            w.string(path);
            w.i32(*mode);
        }
        Request::Auth { scheme, auth } => {
            w.i32(0);
            w.string(scheme);
            w.buffer(Some(auth));
        }
        Request::SetWatches(s) => {
            w.i64(s.relative_zxid);
            w.strings(&s.data);
            w.strings(&s.exist);
            w.strings(&s.child);
            if !s.persistent.is_empty() || !s.recursive.is_empty() {
                w.strings(&s.persistent);
                w.strings(&s.recursive);
            }
        }
        Request::Ping | Request::Reconfig | Request::Sasl | Request::WhoAmI | Request::CloseSession => {}
    }
}

fn encode_create(w: &mut Writer, c: &CreateRequest) {
    w.string(&c.path);
    w.buffer(c.data.as_deref());
    encode_acls(w, &c.acl);
    w.i32(c.flags);
    if c.op == op::CREATE_TTL {
        w.i64(c.ttl);
    }
}

/// The op code a request is sent with.
pub fn request_op(req: &Request) -> i32 {
    match req {
        Request::Create(c) => c.op,
        Request::Delete { .. } => op::DELETE,
        Request::Exists { .. } => op::EXISTS,
        Request::GetData { .. } => op::GET_DATA,
        Request::SetData { .. } => op::SET_DATA,
        Request::GetAcl { .. } => op::GET_ACL,
        Request::SetAcl { .. } => op::SET_ACL,
        Request::GetChildren { with_stat: false, .. } => op::GET_CHILDREN,
        Request::GetChildren { with_stat: true, .. } => op::GET_CHILDREN2,
        Request::Sync { .. } => op::SYNC,
        Request::Ping => op::PING,
        Request::Check { .. } => op::CHECK,
        Request::Multi(_) => op::MULTI,
        Request::MultiRead(_) => op::MULTI_READ,
        Request::Reconfig => op::RECONFIG,
        Request::CheckWatches { .. } => op::CHECK_WATCHES,
        Request::RemoveWatches { .. } => op::REMOVE_WATCHES,
        Request::Auth { .. } => op::AUTH,
        Request::SetWatches(s) if s.persistent.is_empty() && s.recursive.is_empty() => op::SET_WATCHES,
        Request::SetWatches(_) => op::SET_WATCHES2,
        Request::Sasl => op::SASL,
        Request::GetEphemerals { .. } => op::GET_EPHEMERALS,
        Request::GetAllChildrenNumber { .. } => op::GET_ALL_CHILDREN_NUMBER,
        Request::AddWatch { .. } => op::ADD_WATCH,
        Request::WhoAmI => op::WHO_AM_I,
        Request::CloseSession => op::CLOSE_SESSION,
    }
}

/// Writes the multi terminator `{-1, true, -1}`.
pub fn multi_end(w: &mut Writer) {
    w.i32(-1);
    w.bool(true);
    w.i32(-1);
}

/// Starts a reply frame: length placeholder + ReplyHeader.
pub fn reply_header(xid: i32, zxid: i64, err: i32) -> Writer {
    let mut w = Writer::frame();
    w.i32(xid);
    w.i64(zxid);
    w.i32(err);
    w
}

/// A header-only reply frame (errors and empty-bodied successes).
pub fn reply_empty(xid: i32, zxid: i64, err: i32) -> Bytes {
    reply_header(xid, zxid, err).finish_frame()
}

/// A watch notification frame.
pub fn encode_notification(zxid: i64, event_type: i32, path: &str) -> Bytes {
    let mut w = reply_header(-1, zxid, 0);
    w.i32(event_type);
    w.i32(super::codes::event::STATE_SYNC_CONNECTED);
    w.string(path);
    w.finish_frame()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(req: Request) {
        let mut w = Writer::new();
        encode_request(&mut w, &req);
        assert_eq!(decode_request(request_op(&req), &w.buf), DecodeOutcome::Ok(req));
    }

    #[test]
    fn multi_creates_are_rebuilt_from_their_flags() {
        let create = |op, flags, ttl| CreateRequest { path: "/a".into(), data: None, acl: vec![], flags, ttl, op };
        let decoded = |c: CreateRequest| {
            let mut w = Writer::new();
            encode_request(&mut w, &Request::Multi(vec![MultiOp::Create(c)]));
            match decode_request(op::MULTI, &w.buf) {
                DecodeOutcome::Ok(Request::Multi(mut ops)) => match ops.pop() {
                    Some(MultiOp::Create(c)) => (c.op, c.flags, c.ttl),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            }
        };
        for o in [op::CREATE, op::CREATE2, op::CREATE_CONTAINER] {
            assert_eq!(decoded(create(o, 3, -1)), (op::CREATE, 3, -1));
            assert_eq!(decoded(create(o, 4, -1)), (op::CREATE_CONTAINER, 4, -1));
            assert_eq!(decoded(create(o, 7, -1)), (op::CREATE, 7, -1), "invalid flags fail when prepared");
        }
        assert_eq!(decoded(create(op::CREATE_TTL, 5, 100)), (op::CREATE_TTL, 5, 100));
        assert_eq!(decoded(create(op::CREATE_TTL, 0, 0)), (op::CREATE, 0, -1), "the TTL is ignored");
        assert_eq!(decoded(create(op::CREATE_TTL, 4, -5)), (op::CREATE_CONTAINER, 4, -1));
        assert_eq!(decoded(create(op::CREATE_TTL, -1, 9)), (op::CREATE, -1, -1));
    }

    #[test]
    fn requests_round_trip() {
        round_trip(Request::Create(CreateRequest {
            path: "/a".into(),
            data: Some(Bytes::from_static(b"x")),
            acl: vec![Acl::world(31)],
            flags: 3,
            ttl: -1,
            op: op::CREATE2,
        }));
        round_trip(Request::Create(CreateRequest {
            path: "/t".into(),
            data: None,
            acl: vec![],
            flags: 5,
            ttl: 1000,
            op: op::CREATE_TTL,
        }));
        round_trip(Request::SetData { path: "/a".into(), data: None, version: -1 });
        round_trip(Request::Multi(vec![
            MultiOp::Check { path: "/a".into(), version: 2 },
            MultiOp::Delete { path: "/b".into(), version: -1 },
        ]));
        round_trip(Request::MultiRead(vec![ReadOp::GetData { path: "/a".into() }]));
        round_trip(Request::SetWatches(SetWatches {
            relative_zxid: 9,
            data: vec!["/a".into()],
            persistent: vec!["/p".into()],
            ..Default::default()
        }));
    }

    #[test]
    fn connect_request_with_and_without_read_only() {
        let mut w = Writer::new();
        w.i32(0);
        w.i64(5);
        w.i32(30000);
        w.i64(0);
        w.buffer(Some(&[0u8; 16]));
        let c = ConnectRequest::decode(&w.buf).unwrap();
        assert_eq!(c.read_only, None);
        w.bool(false);
        let c = ConnectRequest::decode(&w.buf).unwrap();
        assert_eq!((c.read_only, c.last_zxid_seen, c.timeout), (Some(false), 5, 30000));
        assert_eq!(encode_connect_response(4000, 1, &[0; 16], Some(false)).len(), 41);
        assert_eq!(encode_connect_response(4000, 1, &[0; 16], None).len(), 40);
    }

    #[test]
    fn unknown_and_malformed() {
        assert_eq!(decode_request(999, &[]), DecodeOutcome::Unknown);
        assert_eq!(decode_request(op::GET_DATA, &[0, 0]), DecodeOutcome::Malformed);
        // A multi whose sub-op type is not a write fails as a whole.
        let mut w = Writer::new();
        w.i32(op::GET_DATA);
        w.bool(false);
        w.i32(-1);
        w.string("/a");
        w.bool(false);
        multi_end(&mut w);
        assert_eq!(decode_request(op::MULTI, &w.buf), DecodeOutcome::Malformed);
    }
}
