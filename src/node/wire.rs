//! What a learner sends its leader besides ZAB: client requests taken on the learner (connects,
//! writes, syncs, closeSession) and the sessions its clients kept alive, as bytes.
//!
//! Owns the encoding of these payloads; decoding a peer's bytes never panics (a bad payload is
//! an error, the connection is closed). Never decides a request's outcome.

use crate::proto::jute::{Reader, Writer};
use crate::proto::records::{decode_request, encode_request, request_op, DecodeOutcome};
use crate::proto::{ConnectRequest, Id, Request};
use crate::tree::acl::AuthInfo;

/// A learner's payload for the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    Connect { rid: u64, req: ConnectRequest },
    Write { rid: u64, session: i64, xid: i32, fence: bool, auth: AuthInfo, req: Request },
    Touch { sessions: Vec<i64> },
}

/// Most sessions one touch report names.
pub const TOUCH_MAX: usize = 1 << 16;
/// Most auth ids one request carries.
const IDS_MAX: usize = 1024;

pub fn encode(f: &Forward) -> Vec<u8> {
    let mut w = Writer::new();
    match f {
        Forward::Connect { rid, req } => {
            w.i32(1);
            w.i64(*rid as i64);
            w.i32(req.protocol_version);
            w.i64(req.last_zxid_seen);
            w.i32(req.timeout);
            w.i64(req.session_id);
            w.buffer(Some(&req.passwd));
            w.i32(match req.read_only {
                None => -1,
                Some(false) => 0,
                Some(true) => 1,
            });
        }
        Forward::Write { rid, session, xid, fence, auth, req } => {
            w.i32(2);
            w.i64(*rid as i64);
            w.i64(*session);
            w.i32(*xid);
            w.bool(*fence);
            w.string(&auth.ip.to_string());
            w.bool(auth.is_super);
            w.i32(auth.ids.len() as i32);
            for id in &auth.ids {
                w.string(&id.scheme);
                w.string(&id.id);
            }
            w.i32(request_op(req));
            let mut body = Writer::new();
            encode_request(&mut body, req);
            w.buffer(Some(&body.buf));
        }
        Forward::Touch { sessions } => {
            w.i32(3);
            w.i32(sessions.len() as i32);
            for s in sessions {
                w.i64(*s);
            }
        }
    }
    w.buf
}

pub fn decode(b: &[u8]) -> Result<Forward, String> {
    let mut r = Reader::new(b);
    let e = |what: &str| format!("bad forwarded payload: {what}");
    let f = match r.i32().map_err(|_| e("type"))? {
        1 => {
            let rid = r.i64().map_err(|_| e("rid"))? as u64;
            let protocol_version = r.i32().map_err(|_| e("connect"))?;
            let last_zxid_seen = r.i64().map_err(|_| e("connect"))?;
            let timeout = r.i32().map_err(|_| e("connect"))?;
            let session_id = r.i64().map_err(|_| e("connect"))?;
            let passwd = r.buffer().map_err(|_| e("passwd"))?.map(|b| b.to_vec()).unwrap_or_default();
            let read_only = match r.i32().map_err(|_| e("read only"))? {
                -1 => None,
                0 => Some(false),
                1 => Some(true),
                _ => return Err(e("read only")),
            };
            Forward::Connect {
                rid,
                req: ConnectRequest { protocol_version, last_zxid_seen, timeout, session_id, passwd, read_only },
            }
        }
        2 => {
            let rid = r.i64().map_err(|_| e("rid"))? as u64;
            let session = r.i64().map_err(|_| e("session"))?;
            let xid = r.i32().map_err(|_| e("xid"))?;
            let fence = r.bool().map_err(|_| e("fence"))?;
            let ip = r.string().map_err(|_| e("ip"))?.parse().map_err(|_| e("ip"))?;
            let is_super = r.bool().map_err(|_| e("super"))?;
            let n = r.i32().map_err(|_| e("ids"))?;
            if !(0..=IDS_MAX as i32).contains(&n) {
                return Err(e("ids"));
            }
            let mut ids = Vec::with_capacity(n as usize);
            for _ in 0..n {
                ids.push(Id { scheme: r.string().map_err(|_| e("id"))?, id: r.string().map_err(|_| e("id"))? });
            }
            let op = r.i32().map_err(|_| e("op"))?;
            let body = r.buffer().map_err(|_| e("body"))?.unwrap_or_default();
            let req = match decode_request(op, &body) {
                DecodeOutcome::Ok(req) => req,
                _ => return Err(e("request")),
            };
            Forward::Write { rid, session, xid, fence, auth: AuthInfo { ip, ids, is_super }, req }
        }
        3 => {
            let n = r.i32().map_err(|_| e("count"))?;
            if !(0..=TOUCH_MAX as i32).contains(&n) {
                return Err(e("count"));
            }
            let mut sessions = Vec::with_capacity(n as usize);
            for _ in 0..n {
                sessions.push(r.i64().map_err(|_| e("session"))?);
            }
            Forward::Touch { sessions }
        }
        _ => return Err(e("type")),
    };
    if r.remaining() != 0 {
        return Err(e("trailing bytes"));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::CreateRequest;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let mut auth = AuthInfo::new("10.0.0.1".parse().unwrap());
        auth.ids.push(Id { scheme: "digest".into(), id: "u:abc".into() });
        let all = vec![
            Forward::Connect {
                rid: 9,
                req: ConnectRequest {
                    protocol_version: 0,
                    last_zxid_seen: 5,
                    timeout: 4000,
                    session_id: 77,
                    passwd: vec![1; 16],
                    read_only: Some(false),
                },
            },
            Forward::Write {
                rid: 10,
                session: 77,
                xid: 3,
                fence: true,
                auth,
                req: Request::Create(CreateRequest {
                    path: "/a".into(),
                    data: Some(bytes::Bytes::from_static(b"x")),
                    acl: vec![],
                    flags: 0,
                    ttl: -1,
                    op: 1,
                }),
            },
            Forward::Touch { sessions: vec![1, 2, 3] },
        ];
        for f in all {
            let b = encode(&f);
            assert_eq!(decode(&b), Ok(f.clone()));
            for cut in 0..b.len() {
                assert!(decode(&b[..cut]).is_err(), "a truncated payload is refused");
            }
        }
        assert!(decode(&[0, 0, 0, 9]).is_err());
    }
}
