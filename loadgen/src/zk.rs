//! Client side of the ZooKeeper wire protocol: the handshake, request frames, reply parsing,
//! four-letter words, and a small blocking pipelined client used for setup and teardown.
//!
//! Record layouts come from corezk's `proto` (jute reader/writer, request encoding); this module
//! adds the parts only a client needs.

use bytes::Bytes;
use corezk::proto::codes::{err, op, perm};
use corezk::proto::jute::{Reader, Writer};
use corezk::proto::records::{encode_request, request_op, Acl, CreateRequest, Request, Stat};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The largest reply frame accepted (ZooKeeper's default jute.maxbuffer plus headroom).
pub const MAX_FRAME: usize = 4 << 20;

/// ConnectionLoss: what a request that never got a reply is counted as.
pub const CONNECTION_LOSS: i32 = -4;

/// The name ZooKeeper's KeeperException gives an error code.
pub fn error_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        -1 => "SystemError",
        -2 => "RuntimeInconsistency",
        -3 => "DataInconsistency",
        -4 => "ConnectionLoss",
        -5 => "MarshallingError",
        -6 => "Unimplemented",
        -7 => "OperationTimeout",
        -8 => "BadArguments",
        -12 => "UnknownSession",
        -13 => "NewConfigNoQuorum",
        -14 => "ReconfigInProgress",
        -101 => "NoNode",
        -102 => "NoAuth",
        -103 => "BadVersion",
        -108 => "NoChildrenForEphemerals",
        -110 => "NodeExists",
        -111 => "NotEmpty",
        -112 => "SessionExpired",
        -114 => "InvalidACL",
        -115 => "AuthFailed",
        -118 => "SessionMoved",
        -119 => "NotReadOnly",
        -120 => "EphemeralOnLocalSession",
        -121 => "NoWatcher",
        -122 => "RequestTimeout",
        -123 => "ReconfigDisabled",
        -124 => "SessionClosedRequireSaslAuth",
        -125 => "QuotaExceeded",
        -127 => "ThrottledOp",
        _ => "Unknown",
    }
}

/// The ACL every node the loadgen creates gets.
pub fn open_acl() -> Vec<Acl> {
    vec![Acl::world(perm::ALL)]
}

/// A ConnectRequest frame for a new session (16 zero password bytes, readOnly=false), as the
/// Java client sends it.
pub fn connect_frame(timeout_ms: i32) -> Vec<u8> {
    let mut w = Writer::frame();
    w.i32(0);
    w.i64(0);
    w.i32(timeout_ms);
    w.i64(0);
    w.buffer(Some(&[0u8; 16]));
    w.bool(false);
    w.finish_frame().to_vec()
}

/// The server's answer to a ConnectRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResponse {
    pub timeout: i32,
    pub session_id: i64,
}

pub fn parse_connect_response(body: &[u8]) -> Result<ConnectResponse, String> {
    let mut r = Reader::new(body);
    let bad = |e| format!("malformed ConnectResponse: {e:?}");
    let _proto = r.i32().map_err(bad)?;
    let timeout = r.i32().map_err(bad)?;
    let session_id = r.i64().map_err(bad)?;
    let _passwd = r.buffer().map_err(bad)?;
    if timeout <= 0 || session_id == 0 {
        return Err("the server refused the session (timeout 0 / session id 0)".into());
    }
    Ok(ConnectResponse { timeout, session_id })
}

/// The header of every reply after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
}

/// Splits a reply frame body into its header and the response record.
pub fn parse_reply(body: &[u8]) -> Result<(ReplyHeader, &[u8]), String> {
    if body.len() < 16 {
        return Err(format!("reply frame of {} bytes is shorter than a ReplyHeader", body.len()));
    }
    let xid = i32::from_be_bytes(body[0..4].try_into().expect("4 bytes"));
    let zxid = i64::from_be_bytes(body[4..12].try_into().expect("8 bytes"));
    let err = i32::from_be_bytes(body[12..16].try_into().expect("4 bytes"));
    Ok((ReplyHeader { xid, zxid, err }, &body[16..]))
}

/// The first non-zero per-op error in a multi response (0 when every op succeeded).
pub fn multi_error(body: &[u8]) -> Result<i32, String> {
    let mut r = Reader::new(body);
    let bad = |e| format!("malformed multi response: {e:?}");
    let mut first = 0;
    loop {
        let t = r.i32().map_err(bad)?;
        let done = r.bool().map_err(bad)?;
        let e = r.i32().map_err(bad)?;
        if done {
            return Ok(first);
        }
        match t {
            op::ERROR => {
                let code = r.i32().map_err(bad)?;
                if first == 0 && code != 0 {
                    first = code;
                }
            }
            op::CREATE => {
                r.string().map_err(bad)?;
            }
            op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
                r.string().map_err(bad)?;
                Stat::decode(&mut r).map_err(bad)?;
            }
            op::SET_DATA => {
                Stat::decode(&mut r).map_err(bad)?;
            }
            op::DELETE | op::CHECK => {}
            op::GET_DATA => {
                r.buffer().map_err(bad)?;
                Stat::decode(&mut r).map_err(bad)?;
            }
            op::GET_CHILDREN => {
                r.strings().map_err(bad)?;
            }
            other => return Err(format!("multi response holds an unexpected op type {other}")),
        }
        if first == 0 && e != 0 && t != op::ERROR {
            first = e;
        }
    }
}

/// The path in a CreateResponse (op 1).
pub fn created_path(body: &[u8]) -> Result<String, String> {
    Reader::new(body).string().map_err(|e| format!("malformed CreateResponse: {e:?}"))
}

/// The children in a GetChildrenResponse (op 8).
pub fn children(body: &[u8]) -> Result<Vec<String>, String> {
    Reader::new(body).strings().map_err(|e| format!("malformed GetChildrenResponse: {e:?}"))
}

/// Appends one request frame (length, RequestHeader, record) to `out`.
pub fn push_request(out: &mut Vec<u8>, xid: i32, req: &Request) {
    let mut w = Writer { buf: std::mem::take(out) };
    let start = w.buf.len();
    w.i32(0);
    w.i32(xid);
    w.i32(request_op(req));
    encode_request(&mut w, req);
    let len = (w.buf.len() - start - 4) as u32;
    w.buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
    *out = w.buf;
}

/// Appends a path-only read request (`getData`, `exists`, `getChildren` with watch=false), the
/// loadgen's hot path, without building a `Request`.
pub fn push_path_read(out: &mut Vec<u8>, xid: i32, opcode: i32, path: &str) {
    let len = 4 + 4 + 4 + path.len() + 1;
    out.reserve(len + 4);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&xid.to_be_bytes());
    out.extend_from_slice(&opcode.to_be_bytes());
    out.extend_from_slice(&(path.len() as i32).to_be_bytes());
    out.extend_from_slice(path.as_bytes());
    out.push(0);
}

/// Appends a `setData(path, data, version=-1)` request.
pub fn push_set_data(out: &mut Vec<u8>, xid: i32, path: &str, data: &[u8]) {
    let len = 4 + 4 + 4 + path.len() + 4 + data.len() + 4;
    out.reserve(len + 4);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&xid.to_be_bytes());
    out.extend_from_slice(&op::SET_DATA.to_be_bytes());
    out.extend_from_slice(&(path.len() as i32).to_be_bytes());
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(&(data.len() as i32).to_be_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&(-1i32).to_be_bytes());
}

/// A ping frame (xid -2).
pub fn push_ping(out: &mut Vec<u8>) {
    out.extend_from_slice(&8u32.to_be_bytes());
    out.extend_from_slice(&(-2i32).to_be_bytes());
    out.extend_from_slice(&op::PING.to_be_bytes());
}

/// A create request with the open ACL.
pub fn create(path: &str, data: Option<Bytes>, flags: i32) -> Request {
    Request::Create(CreateRequest { path: path.to_string(), data, acl: open_acl(), flags, ttl: -1, op: op::CREATE })
}

/// If `buf` starts with a whole frame, its total length (4 + body).
pub fn whole_frame(buf: &[u8]) -> Result<Option<usize>, String> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let n = u32::from_be_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if n > MAX_FRAME {
        return Err(format!("reply frame of {n} bytes is larger than {MAX_FRAME}"));
    }
    Ok(if buf.len() >= 4 + n { Some(4 + n) } else { None })
}

/// Sends a four-letter word and returns the whole answer (the server closes after it).
pub fn four_letter(host: &str, word: &str, timeout: Duration) -> Result<String, String> {
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{host}: {e}"))?;
    s.set_read_timeout(Some(timeout)).ok();
    s.set_write_timeout(Some(timeout)).ok();
    s.write_all(word.as_bytes()).map_err(|e| format!("{host}: {e}"))?;
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if !out.is_empty() => {
            let _ = e;
        }
        Err(e) => return Err(format!("{host}: {word}: {e}")),
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The first line of `srvr` (e.g. `Zookeeper version: 3.8.0-...`), the target's version.
pub fn server_version(host: &str) -> Result<String, String> {
    let out = four_letter(host, "srvr", Duration::from_secs(3))?;
    let line = out.lines().next().unwrap_or("").trim().to_string();
    if line.is_empty() {
        return Err(format!("{host}: srvr gave no answer (is `srvr` in 4lw.commands.whitelist?)"));
    }
    Ok(line)
}

/// A blocking client that pipelines batches of requests on one session: used for setup and
/// teardown, where simplicity beats speed.
pub struct SyncClient {
    stream: TcpStream,
    xid: i32,
    buf: Vec<u8>,
    pub session_id: i64,
}

impl SyncClient {
    pub fn connect(host: &str, timeout_ms: i32) -> Result<SyncClient, String> {
        let addr = host
            .to_socket_addrs()
            .map_err(|e| format!("{host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host}: no address"))?;
        let stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("connect {host}: {e}"))?;
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let mut c = SyncClient { stream, xid: 0, buf: Vec::new(), session_id: 0 };
        c.stream.write_all(&connect_frame(timeout_ms)).map_err(|e| format!("{host}: handshake: {e}"))?;
        let body = c.read_frame().map_err(|e| format!("{host}: handshake: {e}"))?;
        c.session_id = parse_connect_response(&body).map_err(|e| format!("{host}: {e}"))?.session_id;
        Ok(c)
    }

    fn read_frame(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(n) = whole_frame(&self.buf)? {
                let body = self.buf[4..n].to_vec();
                self.buf.drain(..n);
                return Ok(body);
            }
            let mut chunk = [0u8; 65536];
            let got = self.stream.read(&mut chunk).map_err(|e| e.to_string())?;
            if got == 0 {
                return Err("connection closed by the server".into());
            }
            self.buf.extend_from_slice(&chunk[..got]);
        }
    }

    /// Sends all requests at once, then returns each reply's error code and record, in order.
    pub fn call(&mut self, reqs: &[Request]) -> Result<Vec<(i32, Vec<u8>)>, String> {
        let mut out = Vec::new();
        let mut xids = Vec::with_capacity(reqs.len());
        for r in reqs {
            self.xid += 1;
            xids.push(self.xid);
            push_request(&mut out, self.xid, r);
        }
        self.stream.write_all(&out).map_err(|e| e.to_string())?;
        let mut replies = Vec::with_capacity(reqs.len());
        while replies.len() < reqs.len() {
            let body = self.read_frame()?;
            let (h, rest) = parse_reply(&body)?;
            if h.xid == -1 || h.xid == -2 {
                continue;
            }
            let want = xids[replies.len()];
            if h.xid != want {
                return Err(format!("reply xid {} does not match request xid {want}", h.xid));
            }
            replies.push((h.err, rest.to_vec()));
        }
        Ok(replies)
    }

    /// Like `call`, in windows of `window` requests.
    pub fn call_windowed(&mut self, reqs: &[Request], window: usize) -> Result<Vec<(i32, Vec<u8>)>, String> {
        let mut all = Vec::with_capacity(reqs.len());
        for chunk in reqs.chunks(window.max(1)) {
            all.extend(self.call(chunk)?);
        }
        Ok(all)
    }

    /// Closes the session (its ephemeral nodes go with it).
    pub fn close(mut self) {
        let mut out = Vec::new();
        self.xid += 1;
        push_request(&mut out, self.xid, &Request::CloseSession);
        if self.stream.write_all(&out).is_ok() {
            self.stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let _ = self.read_frame();
        }
    }
}

/// Whether an error code means the thing already exists (fine when re-running setup).
pub fn is_node_exists(code: i32) -> bool {
    code == err::NODE_EXISTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use corezk::proto::records::{decode_request, ConnectRequest, DecodeOutcome, MultiOp};

    #[test]
    fn connect_frame_is_the_java_clients() {
        let f = connect_frame(30_000);
        assert_eq!(f.len(), 49);
        assert_eq!(&f[..4], &45u32.to_be_bytes());
        let c = ConnectRequest::decode(&f[4..]).unwrap();
        assert_eq!(c.timeout, 30_000);
        assert_eq!(c.session_id, 0);
        assert_eq!(c.passwd, vec![0u8; 16]);
        assert_eq!(c.read_only, Some(false));
    }

    #[test]
    fn hand_encoded_requests_match_the_record_encoder() {
        let mut a = Vec::new();
        push_path_read(&mut a, 7, op::GET_DATA, "/a/b");
        let mut b = Vec::new();
        push_request(&mut b, 7, &Request::GetData { path: "/a/b".into(), watch: false });
        assert_eq!(a, b);
        let mut a = Vec::new();
        push_set_data(&mut a, 9, "/k", b"xyz");
        let mut b = Vec::new();
        push_request(
            &mut b,
            9,
            &Request::SetData { path: "/k".into(), data: Some(Bytes::from_static(b"xyz")), version: -1 },
        );
        assert_eq!(a, b);
        let mut p = Vec::new();
        push_ping(&mut p);
        assert_eq!(p, [0, 0, 0, 8, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 11]);
    }

    #[test]
    fn multi_request_round_trips_through_the_server_decoder() {
        let req = Request::Multi(vec![
            MultiOp::Check { path: "/k1".into(), version: -1 },
            MultiOp::SetData { path: "/k2".into(), data: Some(Bytes::from_static(b"v")), version: -1 },
        ]);
        let mut out = Vec::new();
        push_request(&mut out, 1, &req);
        let n = whole_frame(&out).unwrap().unwrap();
        assert_eq!(n, out.len());
        match decode_request(op::MULTI, &out[12..]) {
            DecodeOutcome::Ok(r) => assert_eq!(r, req),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn multi_error_finds_the_failing_op() {
        let mut w = Writer::new();
        // setData ok (stat), then error result -101, then -2, then end.
        w.i32(op::SET_DATA);
        w.bool(false);
        w.i32(0);
        Stat::default().encode(&mut w);
        w.i32(op::ERROR);
        w.bool(false);
        w.i32(-101);
        w.i32(-101);
        w.i32(op::ERROR);
        w.bool(false);
        w.i32(-2);
        w.i32(-2);
        corezk::proto::records::multi_end(&mut w);
        assert_eq!(multi_error(&w.buf).unwrap(), -101);
        let mut ok = Writer::new();
        ok.i32(op::CHECK);
        ok.bool(false);
        ok.i32(0);
        ok.i32(op::SET_DATA);
        ok.bool(false);
        ok.i32(0);
        Stat::default().encode(&mut ok);
        corezk::proto::records::multi_end(&mut ok);
        assert_eq!(multi_error(&ok.buf).unwrap(), 0);
        assert!(multi_error(&ok.buf[..10]).is_err());
    }

    #[test]
    fn reply_parsing() {
        let f = corezk::proto::records::reply_empty(5, 0x1234, -101);
        assert_eq!(whole_frame(&f[..10]).unwrap(), None);
        let n = whole_frame(&f).unwrap().unwrap();
        let (h, rest) = parse_reply(&f[4..n]).unwrap();
        assert_eq!(h, ReplyHeader { xid: 5, zxid: 0x1234, err: -101 });
        assert!(rest.is_empty());
        assert!(whole_frame(&[0x7f, 0, 0, 0]).is_err());
        let resp = corezk::proto::records::encode_connect_response(30_000, 42, &[1; 16], Some(false));
        assert_eq!(parse_connect_response(&resp[4..]).unwrap(), ConnectResponse { timeout: 30_000, session_id: 42 });
        let expired = corezk::proto::records::encode_connect_response(0, 0, &[0; 16], Some(false));
        assert!(parse_connect_response(&expired[4..]).is_err());
    }
}
