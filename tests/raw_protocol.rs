//! Byte-level client protocol tests with a tiny hand-written jute client (tests/common).
//!
//! Every read has a timeout, so a server that hangs fails the test instead of blocking it.

mod common;

use std::time::{Duration, Instant};

use common::*;

const CLOSE_WAIT: Duration = Duration::from_secs(5);

fn stat_of(conn: &mut RawConn, path: &str) -> RawStat {
    conn.exists(path, false).unwrap_or_else(|e| panic!("exists {path}: {e}"))
}

// ------------------------------------------------------------------------------------------------
// Connect handshake

#[test]
fn handshake_with_readonly_byte_answers_41_bytes() {
    let srv = Server::start();
    let mut c = RawConn::open(srv.addr());
    let resp = c.handshake(&connect_request(0, 30_000, 0, Some(&[0u8; 16]), Some(false))).expect("connect response");
    assert_eq!(resp.body_len, 37, "frame must be 4 + 37 = 41 bytes: {resp:?}");
    assert_eq!(resp.protocol_version, 0);
    assert_eq!(resp.timeout_ms, 30_000, "30 s is inside 4 s..40 s");
    assert_ne!(resp.session_id, 0);
    assert_ne!(resp.session_id, i64::MIN, "0x8000000000000000 is the container marker");
    assert_ne!((resp.session_id as u64) >> 56, 0xff, "top byte 0xff is reserved for TTL nodes");
    assert_eq!(resp.passwd.as_ref().map(|p| p.len()), Some(16));
    assert_eq!(resp.read_only, Some(false));
    // The session works.
    let h = c.ping();
    assert_eq!(h.xid, -2);
    assert_eq!(h.err, 0);
}

#[test]
fn handshake_without_readonly_byte_answers_40_bytes() {
    let srv = Server::start();
    let mut c = RawConn::open(srv.addr());
    let resp = c.handshake(&connect_request(0, 30_000, 0, Some(&[0u8; 16]), None)).expect("connect response");
    assert_eq!(resp.body_len, 36, "old client: no readOnly byte, 4 + 36 = 40 bytes");
    assert_eq!(resp.read_only, None);
    assert_ne!(resp.session_id, 0);
    assert_eq!(resp.passwd.as_ref().map(|p| p.len()), Some(16));
    assert_eq!(c.ping().err, 0);
}

#[test]
fn handshake_with_empty_password_like_the_rust_crate() {
    let srv = Server::start();
    let mut c = RawConn::open(srv.addr());
    let resp = c.handshake(&connect_request(0, 10_000, 0, Some(&[]), Some(false))).expect("connect response");
    assert_eq!(resp.body_len, 37);
    assert_ne!(resp.session_id, 0);
    assert_eq!(resp.passwd.as_ref().map(|p| p.len()), Some(16));
    assert_eq!(resp.timeout_ms, 10_000);
}

#[test]
fn handshake_clamps_timeout_and_issues_distinct_sessions() {
    let srv = Server::start();
    let mut a = RawConn::open(srv.addr());
    let ra = a.handshake(&connect_request(0, 1, 0, Some(&[0u8; 16]), Some(false))).unwrap();
    assert_eq!(ra.timeout_ms, 2 * TICK_TIME_MS, "minimum is 2 x tickTime");
    let mut b = RawConn::open(srv.addr());
    let rb = b.handshake(&connect_request(0, 1_000_000, 0, Some(&[0u8; 16]), Some(false))).unwrap();
    assert_eq!(rb.timeout_ms, 20 * TICK_TIME_MS, "maximum is 20 x tickTime");
    assert_ne!(ra.session_id, rb.session_id);
    assert_ne!(ra.passwd, rb.passwd, "each session gets its own password");
}

#[test]
fn requests_pipelined_behind_the_connect_request_are_answered_after_it() {
    let srv = Server::start();
    let mut c = RawConn::open(srv.addr());
    let mut bytes = Vec::new();
    let connect = connect_request(0, 10_000, 0, Some(&[0u8; 16]), Some(false));
    bytes.extend_from_slice(&(connect.len() as i32).to_be_bytes());
    bytes.extend_from_slice(&connect);
    let get = Enc::new().i32(7).i32(op::EXISTS).str("/zookeeper").bool(false).bytes();
    bytes.extend_from_slice(&(get.len() as i32).to_be_bytes());
    bytes.extend_from_slice(&get);
    c.send_raw(&bytes);
    let first = c.read_frame().expect("connect response");
    let resp = parse_connect_response(&first);
    assert_ne!(resp.session_id, 0);
    let (h, body) = c.read_reply().expect("reply to the pipelined exists");
    assert_eq!(h.xid, 7);
    assert_eq!(h.err, 0);
    assert_eq!(body.len(), 68, "ExistsResponse is one Stat");
}

#[test]
fn last_zxid_seen_ahead_of_server_is_refused_without_response() {
    let srv = Server::start();
    let mut c = RawConn::open(srv.addr());
    c.send_frame(&connect_request(0x7fff_0000_0000_0000, 10_000, 0, Some(&[0u8; 16]), Some(false)));
    c.expect_closed(CLOSE_WAIT, "client has seen a zxid the server has not");
    // Nothing else is affected.
    let mut ok = RawConn::session(srv.addr(), 10_000);
    assert_eq!(ok.ping().err, 0);
}

#[test]
fn reattach_with_wrong_password_or_unknown_session_is_rejected() {
    let srv = Server::start();
    let a = RawConn::session(srv.addr(), 10_000);
    let id = a.session_id;
    let good = a.passwd.clone();
    assert_eq!(good.len(), 16);

    // Correct password on a new connection: same session, same password.
    let mut again = RawConn::open(srv.addr());
    let r = again.handshake(&connect_request(0, 10_000, id, Some(&good), Some(false))).expect("reattach response");
    assert_eq!(r.session_id, id);
    assert!(r.timeout_ms > 0);
    assert_eq!(r.passwd.as_deref(), Some(&good[..]));
    assert_eq!(again.ping().err, 0);

    let mut bad = good.clone();
    bad[0] ^= 0xff;
    for (what, sid, pw, ro, body_len) in [
        ("wrong password", id, bad.clone(), Some(false), 37),
        ("wrong password, no readOnly byte", id, bad.clone(), None, 36),
        ("unknown session id", id ^ 0x5a5a_5a5a, good.clone(), Some(false), 37),
    ] {
        let mut c = RawConn::open(srv.addr());
        let r = c
            .handshake(&connect_request(0, 10_000, sid, Some(&pw), ro))
            .unwrap_or_else(|e| panic!("{what}: expected an invalid-session response, got {e:?}"));
        assert_eq!(r.body_len, body_len, "{what}: {r:?}");
        assert_eq!(r.protocol_version, 0, "{what}");
        assert_eq!(r.timeout_ms, 0, "{what}: timeOut must be 0");
        assert_eq!(r.session_id, 0, "{what}: sessionId must be 0");
        assert_eq!(r.passwd, Some(vec![0u8; 16]), "{what}: password must be 16 zero bytes");
        c.expect_closed(CLOSE_WAIT, what);
    }
}

// ------------------------------------------------------------------------------------------------
// Requests, replies, xids

#[test]
fn ping_reply_has_xid_minus_two_and_no_body() {
    let srv = Server::start();
    let mut c = RawConn::session(srv.addr(), 10_000);
    let base = unique_path("ping");
    let h = c.create(&base, Some(b""), 0);
    assert_eq!(h.err, 0);
    c.send_request_xid(-2, op::PING, &[]);
    let body = c.read_frame().expect("ping reply");
    assert_eq!(body.len(), 16, "ReplyHeader only");
    let mut d = Dec::new(&body);
    assert_eq!(d.i32(), -2);
    let zxid = d.i64();
    assert_eq!(d.i32(), 0);
    assert!(
        zxid >= h.zxid,
        "ping reply zxid {zxid:#x} is the last processed zxid, at least the create's {:#x}",
        h.zxid
    );
}

#[test]
fn replies_echo_arbitrary_xids_in_request_order() {
    let srv = Server::start();
    let mut c = RawConn::session(srv.addr(), 10_000);
    let base = unique_path("xids");
    // C-client style xids: large, sparse. Pipeline all five in one write.
    let xids = [1_700_000_000, 1_700_000_001, 5, 1_700_000_003, i32::MAX];
    let bodies = [
        (op::CREATE, Enc::new().str(&base).buf(Some(b"v0")).world_acl(31).i32(0).bytes()),
        (op::GET_DATA, Enc::new().str(&base).bool(false).bytes()),
        (op::SET_DATA, Enc::new().str(&base).buf(Some(b"v1")).i32(0).bytes()),
        (op::EXISTS, Enc::new().str("/nope-missing").bool(false).bytes()),
        (op::GET_DATA, Enc::new().str(&base).bool(false).bytes()),
    ];
    let mut all = Vec::new();
    for (xid, (opcode, body)) in xids.iter().zip(bodies.iter()) {
        let frame = Enc::new().i32(*xid).i32(*opcode).raw(body).bytes();
        all.extend_from_slice(&(frame.len() as i32).to_be_bytes());
        all.extend_from_slice(&frame);
    }
    c.send_raw(&all);
    let mut replies = Vec::new();
    for _ in 0..5 {
        replies.push(c.read_reply().expect("reply"));
    }
    let got: Vec<i32> = replies.iter().map(|(h, _)| h.xid).collect();
    assert_eq!(got, xids, "replies must come back in request order");
    assert_eq!(replies[0].0.err, 0);
    // getData after create sees v0, the last getData sees v1 (FIFO order per session).
    let mut d = Dec::new(&replies[1].1);
    assert_eq!(d.buf().as_deref(), Some(&b"v0"[..]));
    assert_eq!(replies[2].0.err, 0);
    assert_eq!(replies[3].0.err, code::NO_NODE);
    assert!(replies[3].1.is_empty(), "error replies have no body");
    let mut d = Dec::new(&replies[4].1);
    assert_eq!(d.buf().as_deref(), Some(&b"v1"[..]));
    // Zxids in replies never go backwards.
    let zx: Vec<i64> = replies.iter().map(|(h, _)| h.zxid).collect();
    assert!(zx.windows(2).all(|w| w[0] <= w[1]), "reply zxids {zx:?}");
    // The create and the setData are two distinct transactions.
    assert!(replies[2].0.zxid > replies[0].0.zxid);
}

#[test]
fn unknown_opcode_gets_unimplemented_then_close() {
    let srv = Server::start();
    for opcode in [999, op::NOTIFICATION] {
        let mut c = RawConn::session(srv.addr(), 10_000);
        let xid = c.send_request(opcode, &Enc::new().str("/").bytes());
        let (h, body) = c.read_reply().unwrap_or_else(|e| panic!("op {opcode}: no reply: {e:?}"));
        assert_eq!(h.xid, xid, "op {opcode}");
        assert_eq!(h.err, code::UNIMPLEMENTED, "op {opcode}");
        assert!(body.is_empty());
        c.expect_closed(CLOSE_WAIT, &format!("after unimplemented op {opcode}"));
    }
    // Other clients are unaffected.
    let mut ok = RawConn::session(srv.addr(), 10_000);
    assert_eq!(ok.ping().err, 0);
}

/// A stand-alone `check` (13) is only valid inside multi. The real server answers −6 and
/// closes (3.8.0 answers NoNode for a missing node and hangs for an existing one, a bug).
/// Whatever the answer, it must come.
#[test]
fn standalone_check_is_answered_never_hangs() {
    let srv = Server::start();
    let base = unique_path("check");
    let mut setup = RawConn::session(srv.addr(), 10_000);
    assert_eq!(setup.create(&base, Some(b"x"), 0).err, 0);
    let mut paths = vec![format!("{base}/missing")];
    if srv.is_zookeeper_380() {
        eprintln!("note: ZooKeeper 3.8.0 never answers check on an existing node; not tested");
    } else {
        paths.push(base.clone());
    }
    for path in paths {
        let mut c = RawConn::session(srv.addr(), 10_000);
        let xid = c.send_request(op::CHECK, &Enc::new().str(&path).i32(0).bytes());
        let (h, body) = c.read_reply().unwrap_or_else(|e| panic!("stand-alone check on {path}: no reply ({e:?})"));
        assert_eq!(h.xid, xid);
        assert_ne!(h.err, 0, "stand-alone check on {path} must not succeed");
        assert!(body.is_empty());
        if h.err == code::UNIMPLEMENTED {
            c.expect_closed(CLOSE_WAIT, "after stand-alone check");
        } else {
            assert_eq!(c.ping().err, 0, "connection usable after error reply");
        }
    }
    assert_eq!(setup.ping().err, 0);
}

#[test]
fn close_session_replies_then_closes() {
    let srv = Server::start();
    let c = RawConn::session(srv.addr(), 10_000);
    c.close_session();
}

#[test]
fn null_and_empty_data_round_trip_distinctly() {
    let srv = Server::start();
    let mut c = RawConn::session(srv.addr(), 10_000);
    let base = unique_path("null");
    assert_eq!(c.create(&base, None, 0).err, 0);
    let (data, stat) = c.get_data(&base, false).unwrap();
    assert_eq!(data, None, "null data must come back as length -1");
    assert_eq!(stat.data_length, 0);
    let empty = format!("{base}/empty");
    assert_eq!(c.create(&empty, Some(b""), 0).err, 0);
    let (data, stat) = c.get_data(&empty, false).unwrap();
    assert_eq!(data, Some(Vec::new()), "empty data must come back as length 0");
    assert_eq!(stat.data_length, 0);
}

#[test]
fn create_returns_path_and_create2_returns_path_and_stat() {
    let srv = Server::start();
    let mut c = RawConn::session(srv.addr(), 10_000);
    let base = unique_path("create2");
    let body = Enc::new().str(&base).buf(Some(b"abc")).world_acl(31).i32(0).bytes();
    let (h, resp) = c.call_ok(op::CREATE, &body);
    let mut d = Dec::new(&resp);
    assert_eq!(d.str().as_deref(), Some(base.as_str()));
    d.done();
    let child = format!("{base}/c");
    let body = Enc::new().str(&child).buf(Some(b"abcd")).world_acl(31).i32(0).bytes();
    let (h2, resp) = c.call_ok(op::CREATE2, &body);
    let mut d = Dec::new(&resp);
    assert_eq!(d.str().as_deref(), Some(child.as_str()));
    let st = d.stat();
    d.done();
    assert!(h2.zxid > h.zxid);
    assert_eq!(st.czxid, h2.zxid, "create2 stat czxid is the reply zxid");
    assert_eq!(st.mzxid, st.czxid);
    assert_eq!(st.pzxid, st.czxid);
    assert_eq!(st.data_length, 4);
    assert_eq!((st.version, st.cversion, st.aversion), (0, 0, 0));
    assert_eq!(st, stat_of(&mut c, &child));
}

#[test]
fn invalid_paths_are_rejected_by_the_server() {
    let srv = Server::start();
    let mut c = RawConn::session(srv.addr(), 10_000);
    let base = unique_path("badpath");
    assert_eq!(c.create(&base, Some(b""), 0).err, 0);
    let bad_creates = [
        ("no leading slash".to_string(), "abc".to_string(), code::BAD_ARGUMENTS),
        ("empty path".to_string(), String::new(), code::BAD_ARGUMENTS),
        ("trailing slash".to_string(), format!("{base}/"), code::BAD_ARGUMENTS),
        ("dot segment".to_string(), format!("{base}/."), code::BAD_ARGUMENTS),
        ("dot-dot segment".to_string(), format!("{base}/.."), code::BAD_ARGUMENTS),
        ("NUL char".to_string(), format!("{base}/a\0b"), code::BAD_ARGUMENTS),
        ("control char".to_string(), format!("{base}/a\u{1}b"), code::BAD_ARGUMENTS),
        ("DEL char".to_string(), format!("{base}/a\u{7f}"), code::BAD_ARGUMENTS),
        ("empty segment".to_string(), format!("{base}//x"), code::NO_NODE),
        ("root".to_string(), "/".to_string(), code::NODE_EXISTS),
    ];
    for (what, path, want) in &bad_creates {
        let h = c.create(path, Some(b""), 0);
        assert_eq!(h.err, *want, "create {what} {path:?}");
    }
    // Still valid: "..." and ".a" segments, and a non-ASCII BMP name.
    for ok in ["...", ".a", "é-ü"] {
        let path = format!("{base}/{ok}");
        assert_eq!(c.create(&path, Some(b""), 0).err, 0, "create {path:?}");
    }
    // setData / delete.
    assert_eq!(c.set_data("nope", b"x").err, code::BAD_ARGUMENTS);
    assert_eq!(c.set_data(&format!("{base}/"), b"x").err, code::BAD_ARGUMENTS);
    assert_eq!(c.delete("/").err, code::BAD_ARGUMENTS);
    assert_eq!(c.delete("/zookeeper").err, code::BAD_ARGUMENTS);
    assert_eq!(c.delete("/zookeeper/quota").err, code::BAD_ARGUMENTS);
    assert_eq!(c.delete(&format!("{base}/missing")).err, code::NO_NODE);
    // Sequential create on "parent/" names the child by the counter alone.
    let seq = format!("{base}/.a/");
    let body = Enc::new().str(&seq).buf(Some(b"")).world_acl(31).i32(2).bytes();
    let (_, resp) = c.call_ok(op::CREATE, &body);
    assert_eq!(Dec::new(&resp).str().as_deref(), Some(format!("{base}/.a/0000000000").as_str()));
    // Nothing bad was created.
    let mut kids = c.get_children(&base, false).unwrap();
    kids.sort();
    assert_eq!(kids, vec!["...", ".a", "é-ü"]);
}

#[test]
fn bad_create_flags_and_acls() {
    let srv = Server::start();
    let mut c = RawConn::session(srv.addr(), 10_000);
    let base = unique_path("flags");
    assert_eq!(c.create(&base, Some(b""), 0).err, 0);
    // Flag 7 and other unknown values.
    for flags in [7, 42, -3] {
        let h = c.create(&format!("{base}/f{flags}"), Some(b""), flags);
        assert_eq!(h.err, code::BAD_ARGUMENTS, "create flags {flags}");
    }
    // Empty ACL list, unknown scheme, bad world id, malformed digest id.
    let acl_cases: [(&str, Vec<u8>); 4] = [
        ("empty acl", Enc::new().i32(0).bytes()),
        ("unknown scheme", Enc::new().i32(1).i32(31).str("nosuch").str("x").bytes()),
        ("world with a non-anyone id", Enc::new().i32(1).i32(31).str("world").str("bob").bytes()),
        ("digest id without a colon", Enc::new().i32(1).i32(31).str("digest").str("nocolon").bytes()),
    ];
    for (what, acl) in acl_cases {
        let body = Enc::new().str(&format!("{base}/acl")).buf(Some(b"")).raw(&acl).i32(0).bytes();
        let (h, _) = c.call(op::CREATE, &body);
        assert_eq!(h.err, code::INVALID_ACL, "create with {what}");
    }
    // `auth` scheme without any authenticated id.
    let body = Enc::new().str(&format!("{base}/acl")).buf(Some(b"")).i32(1).i32(31).str("auth").str("").i32(0).bytes();
    assert_eq!(c.call(op::CREATE, &body).0.err, code::INVALID_ACL);
    assert_eq!(c.get_children(&base, false).unwrap(), Vec::<String>::new());
}

#[test]
fn auth_packet_replies_and_unknown_scheme_closes() {
    let srv = Server::start();
    let mut c = RawConn::session(srv.addr(), 10_000);
    let auth = |scheme: &str, cred: &[u8]| Enc::new().i32(0).str(scheme).buf(Some(cred)).bytes();
    c.send_request_xid(-4, op::AUTH, &auth("digest", b"user:password"));
    let (h, body) = c.read_reply().expect("auth reply");
    assert_eq!((h.xid, h.zxid, h.err), (-4, 0, 0), "digest auth reply");
    assert!(body.is_empty());
    assert_eq!(c.ping().err, 0);

    c.send_request_xid(-4, op::AUTH, &auth("nosuchscheme", b"x"));
    let (h, _) = c.read_reply().expect("failed auth reply");
    assert_eq!(h.xid, -4);
    assert_eq!(h.err, -115, "AuthFailed");
    c.expect_closed(CLOSE_WAIT, "after AuthFailed");
}

#[test]
fn add_watch_reply_carries_a_four_byte_error_response() {
    let srv = Server::start();
    let mut c = RawConn::session(srv.addr(), 10_000);
    let base = unique_path("addwatch");
    for mode in [0, 1] {
        let (h, body) = c.call(op::ADD_WATCH, &Enc::new().str(&base).i32(mode).bytes());
        assert_eq!(h.err, 0, "addWatch mode {mode}");
        assert_eq!(body, vec![0, 0, 0, 0], "addWatch body is ErrorResponse{{0}}");
    }
}

// ------------------------------------------------------------------------------------------------
// multi / multiRead

fn multi_header(e: Enc, opcode: i32) -> Enc {
    e.i32(opcode).bool(false).i32(-1)
}

fn multi_end(e: Enc) -> Enc {
    e.i32(-1).bool(true).i32(-1)
}

/// Parses a multi response into (type, err, record bytes) per op; asserts the terminator.
fn parse_multi(body: &[u8]) -> Vec<(i32, i32, Vec<u8>)> {
    let mut d = Dec::new(body);
    let mut out = Vec::new();
    loop {
        let t = d.i32();
        let done = d.bool();
        let err = d.i32();
        if done {
            assert_eq!((t, err), (-1, -1), "multi terminator");
            d.done();
            return out;
        }
        let start = d.pos;
        match t {
            -1 => {
                d.i32();
            }
            1 | 9 => {
                d.str();
            }
            15 => {
                d.str();
                d.stat();
            }
            2 | 13 => {}
            5 => {
                d.stat();
            }
            4 => {
                d.buf();
                d.stat();
            }
            8 => {
                let n = d.i32();
                for _ in 0..n {
                    d.str();
                }
            }
            other => panic!("unexpected multi result type {other}"),
        }
        out.push((t, err, body[start..d.pos].to_vec()));
    }
}

fn create_op(e: Enc, path: &str, data: &[u8], flags: i32) -> Enc {
    multi_header(e, op::CREATE).str(path).buf(Some(data)).world_acl(31).i32(flags)
}

#[test]
fn multi_success_is_atomic_with_one_zxid() {
    let srv = Server::start();
    let mut c = RawConn::session(srv.addr(), 10_000);
    let base = unique_path("multi");
    assert_eq!(c.create(&base, Some(b""), 0).err, 0);
    let a = format!("{base}/a");
    let ab = format!("{base}/a/b");
    let mut e = Enc::new();
    e = create_op(e, &a, b"A", 0);
    e = create_op(e, &ab, b"B", 0); // parent created by the previous op
    e = create_op(e, &format!("{base}/s-"), b"", 2);
    e = create_op(e, &format!("{base}/s-"), b"", 2);
    e = multi_header(e, op::SET_DATA).str(&a).buf(Some(b"A2")).i32(0);
    e = multi_header(e, op::CHECK).str(&a).i32(1); // sees the setData above
    e = multi_header(e, op::DELETE).str(&ab).i32(0);
    let (h, body) = c.call(op::MULTI, &multi_end(e).bytes());
    assert_eq!(h.err, 0);
    let res = parse_multi(&body);
    let types: Vec<i32> = res.iter().map(|r| r.0).collect();
    assert_eq!(types, vec![1, 1, 1, 1, 5, 13, 2]);
    assert!(res.iter().all(|r| r.1 == 0));
    let names: Vec<String> = res[..4].iter().map(|r| Dec::new(&r.2).str().unwrap()).collect();
    assert_eq!(names[0], a);
    assert_eq!(names[1], ab);
    // base had no children yet: a is create #0, s- get #1 and #2.
    assert_eq!(names[2], format!("{base}/s-0000000001"));
    assert_eq!(names[3], format!("{base}/s-0000000002"));
    let set_stat = Dec::new(&res[4].2).stat();
    assert_eq!(set_stat.version, 1);
    assert_eq!(set_stat.mzxid, h.zxid);
    assert_eq!(set_stat.czxid, h.zxid, "created and changed in the same txn");

    let sa = stat_of(&mut c, &a);
    assert_eq!(sa.czxid, h.zxid);
    assert_eq!(sa.mzxid, h.zxid);
    assert_eq!(sa.pzxid, h.zxid, "child create and delete in this txn");
    assert_eq!(sa.num_children, 0);
    assert_eq!(sa.cversion, 2, "one create + one delete");
    let s1 = stat_of(&mut c, &format!("{base}/s-0000000001"));
    assert_eq!(s1.czxid, h.zxid);
    assert_eq!(s1.ctime, sa.ctime, "one timestamp per multi");
    assert_eq!(c.exists(&ab, false), Err(code::NO_NODE));
}

#[test]
fn multi_failure_reports_per_op_results_and_applies_nothing() {
    let srv = Server::start();
    let mut c = RawConn::session(srv.addr(), 10_000);
    let base = unique_path("multifail");
    assert_eq!(c.create(&base, Some(b"v"), 0).err, 0);
    let before = stat_of(&mut c, &base);
    let mut e = Enc::new();
    e = create_op(e, &format!("{base}/new"), b"", 0);
    e = multi_header(e, op::SET_DATA).str(&base).buf(Some(b"w")).i32(-1);
    e = multi_header(e, op::DELETE).str(&format!("{base}/missing")).i32(-1);
    e = multi_header(e, op::CHECK).str(&base).i32(0);
    e = create_op(e, &format!("{base}/other"), b"", 0);
    let (h, body) = c.call(op::MULTI, &multi_end(e).bytes());
    assert_eq!(h.err, 0, "a failed multi still has header err 0");
    let res = parse_multi(&body);
    let got: Vec<(i32, i32, i32)> = res.iter().map(|(t, err, rec)| (*t, *err, Dec::new(rec).i32())).collect();
    assert_eq!(
        got,
        vec![
            (-1, 0, 0),
            (-1, 0, 0),
            (-1, code::NO_NODE, code::NO_NODE),
            (-1, code::RUNTIME_INCONSISTENCY, code::RUNTIME_INCONSISTENCY),
            (-1, code::RUNTIME_INCONSISTENCY, code::RUNTIME_INCONSISTENCY),
        ]
    );
    assert_eq!(c.exists(&format!("{base}/new"), false), Err(code::NO_NODE));
    let after = stat_of(&mut c, &base);
    assert_eq!(after, before, "nothing applied");
    assert_eq!(c.get_data(&base, false).unwrap().0.as_deref(), Some(&b"v"[..]));

    // BadVersion from a check.
    let mut e = Enc::new();
    e = multi_header(e, op::CHECK).str(&base).i32(5);
    e = multi_header(e, op::SET_DATA).str(&base).buf(Some(b"w")).i32(-1);
    let (h, body) = c.call(op::MULTI, &multi_end(e).bytes());
    assert_eq!(h.err, 0);
    let res = parse_multi(&body);
    assert_eq!(res.iter().map(|r| r.1).collect::<Vec<_>>(), vec![code::BAD_VERSION, code::RUNTIME_INCONSISTENCY]);
}

#[test]
fn multi_with_a_read_op_fails_whole_request() {
    let srv = Server::start();
    let mut c = RawConn::session(srv.addr(), 10_000);
    let base = unique_path("multimixed");
    let mut e = Enc::new();
    e = create_op(e, &base, b"", 0);
    e = multi_header(e, op::GET_DATA).str(&base).bool(false);
    let (h, body) = c.call(op::MULTI, &multi_end(e).bytes());
    assert_eq!(h.err, code::MARSHALLING_ERROR);
    assert!(body.is_empty());
    assert_eq!(c.exists(&base, false), Err(code::NO_NODE));
    assert_eq!(c.ping().err, 0, "connection stays usable");
}

#[test]
fn multi_read_answers_each_op_independently() {
    let srv = Server::start();
    let mut c = RawConn::session(srv.addr(), 10_000);
    let base = unique_path("multiread");
    assert_eq!(c.create(&base, Some(b"root"), 0).err, 0);
    assert_eq!(c.create(&format!("{base}/k"), Some(b"kid"), 0).err, 0);
    let mut e = Enc::new();
    e = multi_header(e, op::GET_DATA).str(&base).bool(false);
    e = multi_header(e, op::GET_CHILDREN).str(&base).bool(false);
    e = multi_header(e, op::GET_DATA).str(&format!("{base}/missing")).bool(false);
    e = multi_header(e, op::GET_DATA).str(&format!("{base}/k")).bool(false);
    let (h, body) = c.call(op::MULTI_READ, &multi_end(e).bytes());
    assert_eq!(h.err, 0);
    let res = parse_multi(&body);
    assert_eq!(res.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(), vec![(4, 0), (8, 0), (-1, code::NO_NODE), (4, 0)]);
    let mut d = Dec::new(&res[0].2);
    assert_eq!(d.buf().as_deref(), Some(&b"root"[..]));
    let mut d = Dec::new(&res[1].2);
    assert_eq!(d.i32(), 1);
    assert_eq!(d.str().as_deref(), Some("k"));
    let mut d = Dec::new(&res[3].2);
    assert_eq!(d.buf().as_deref(), Some(&b"kid"[..]));
}

// ------------------------------------------------------------------------------------------------
// Malformed input

#[test]
fn garbage_and_truncated_frames_close_only_that_connection() {
    let srv = Server::start();
    let base = unique_path("garbage");
    let mut keeper = RawConn::session(srv.addr(), 30_000);
    assert_eq!(keeper.create(&base, Some(b"precious"), 0).err, 0);
    let before = stat_of(&mut keeper, &base);

    // Before any handshake.
    let pre: Vec<(&str, Vec<u8>)> = vec![
        ("2 GiB - 1 length prefix", 0x7fff_ffffu32.to_be_bytes().to_vec()),
        ("2 GiB length prefix (negative)", 0x8000_0000u32.to_be_bytes().to_vec()),
        ("length just over jute.maxbuffer", 0x0010_0000u32.to_be_bytes().to_vec()),
        ("4 bytes that are no command", b"xyzw".to_vec()),
        (
            "connect request with a huge password length",
            Enc::new().i32(45).i32(0).i64(0).i32(10_000).i64(0).i32(0x7fff_fff0).raw(&[0u8; 17]).bytes(),
        ),
    ];
    for (what, bytes) in pre {
        let mut c = RawConn::open(srv.addr());
        let _ = c.try_send_raw(&bytes);
        c.expect_closed(CLOSE_WAIT, what);
    }

    // After a handshake.
    let post: Vec<(&str, Vec<u8>)> = vec![
        ("2 GiB - 1 length prefix", 0x7fff_ffffu32.to_be_bytes().to_vec()),
        ("2 GiB length prefix (negative)", 0x8000_0000u32.to_be_bytes().to_vec()),
        ("length -5", (-5i32).to_be_bytes().to_vec()),
        ("length over jute.maxbuffer", 0x0020_0000u32.to_be_bytes().to_vec()),
    ];
    for (what, bytes) in post {
        let mut c = RawConn::session(srv.addr(), 10_000);
        let _ = c.try_send_raw(&bytes);
        c.expect_closed(CLOSE_WAIT, what);
    }

    // Truncated frame, then the client half-closes: the server must drop the connection.
    let mut c = RawConn::session(srv.addr(), 10_000);
    c.send_raw(&Enc::new().i32(100).raw(&[1u8; 10]).bytes());
    c.shutdown_write();
    c.expect_closed(CLOSE_WAIT, "truncated frame then EOF");

    // Truncated handshake.
    let mut c = RawConn::open(srv.addr());
    c.send_raw(&Enc::new().i32(45).raw(&[0u8; 20]).bytes());
    c.shutdown_write();
    c.expect_closed(CLOSE_WAIT, "truncated connect request then EOF");

    // The other client and its data are intact, and the server still serves.
    assert_eq!(keeper.ping().err, 0, "the other client still works");
    let (data, after) = keeper.get_data(&base, false).unwrap();
    assert_eq!(data.as_deref(), Some(&b"precious"[..]));
    assert_eq!(after, before);
    assert_eq!(keeper.set_data(&base, b"still").err, 0);
    assert_eq!(four_letter(srv.addr(), "ruok").unwrap(), "imok");
    let mut fresh = RawConn::session(srv.addr(), 10_000);
    assert_eq!(fresh.get_data(&base, false).unwrap().0.as_deref(), Some(&b"still"[..]));
}

#[test]
fn unparseable_request_body_is_a_marshalling_error() {
    let srv = Server::start();
    let mut c = RawConn::session(srv.addr(), 10_000);
    // getData whose path length claims more bytes than the frame has.
    let xid = c.send_request(op::GET_DATA, &Enc::new().i32(50).raw(b"/ab").bytes());
    match c.read_reply() {
        Ok((h, body)) => {
            assert_eq!(h.xid, xid);
            assert_eq!(h.err, code::MARSHALLING_ERROR);
            assert!(body.is_empty());
            assert_eq!(c.ping().err, 0, "connection stays open after MarshallingError");
        }
        Err(ReadError::Closed) => panic!("server closed the connection instead of -5"),
        Err(e) => panic!("no reply to an unparseable getData: {e:?}"),
    }
}

// ------------------------------------------------------------------------------------------------
// Four-letter words and connection limits

#[test]
fn four_letter_words() {
    let srv = Server::start();
    assert_eq!(four_letter(srv.addr(), "ruok").unwrap(), "imok");
    if !srv.is_external() {
        // A fresh server counts 5 nodes like ZooKeeper ("" and "/" are both counted, plus
        // /zookeeper, /zookeeper/quota and /zookeeper/config).
        let srvr = four_letter(srv.addr(), "srvr").unwrap();
        assert!(srvr.contains("\nNode count: 5\n") || srvr.ends_with("Node count: 5\n"), "srvr:\n{srvr}");
    }
    // Make the zxid non-zero first.
    let mut c = RawConn::session(srv.addr(), 10_000);
    let base = unique_path("srvr");
    let h = c.create(&base, Some(b""), 0);
    assert_eq!(h.err, 0);
    let srvr = four_letter(srv.addr(), "srvr").unwrap();
    assert!(srvr.contains("Mode: standalone\n"), "srvr:\n{srvr}");
    let zxid_line =
        srvr.lines().find(|l| l.starts_with("Zxid: 0x")).unwrap_or_else(|| panic!("no Zxid line in srvr:\n{srvr}"));
    let zxid = i64::from_str_radix(zxid_line.trim_start_matches("Zxid: 0x"), 16)
        .unwrap_or_else(|e| panic!("bad Zxid line {zxid_line:?}: {e}"));
    assert!(zxid >= h.zxid, "srvr Zxid {zxid:#x} < create zxid {:#x}", h.zxid);
    assert!(srvr.contains("Node count: "), "srvr:\n{srvr}");
    let stat = four_letter(srv.addr(), "stat").unwrap();
    assert!(stat.contains("Mode: standalone"), "stat:\n{stat}");
    let mntr = four_letter(srv.addr(), "mntr").unwrap();
    assert!(mntr.lines().any(|l| l.starts_with("zk_server_state\tstandalone")), "mntr:\n{mntr}");
    // A 4lw on a connection that already did its handshake is just a bad frame.
    assert_eq!(c.ping().err, 0);
}

#[test]
fn four_letter_whitelist_defaults_to_srvr_only() {
    let Some(srv) = Server::start_profile("default_whitelist", &[("4lw.commands.whitelist", None)]) else {
        return;
    };
    let srvr = four_letter(srv.addr(), "srvr").unwrap();
    assert!(srvr.contains("Mode: standalone"), "srvr is always enabled:\n{srvr}");
    for cmd in ["ruok", "mntr", "stat", "conf"] {
        assert_eq!(
            four_letter(srv.addr(), cmd).unwrap(),
            format!("{cmd} is not executed because it is not in the whitelist.\n")
        );
    }
}

#[test]
fn max_client_cnxns_per_ip_is_enforced() {
    let Some(srv) = Server::start_profile("maxcnxn3", &[("maxClientCnxns", Some("3"))]) else {
        return;
    };
    let mut conns: Vec<RawConn> = (0..3).map(|_| RawConn::session(srv.addr(), 10_000)).collect();
    // The fourth connection from this IP is closed without a connect response.
    // (The server may drop it so early that the connect itself fails; that counts too.)
    if let Ok(mut extra) = RawConn::try_open(srv.addr()) {
        let _ = extra.try_send_raw(
            &Enc::new()
                .raw(&(45i32).to_be_bytes())
                .raw(&connect_request(0, 10_000, 0, Some(&[0u8; 16]), Some(false)))
                .bytes(),
        );
        extra.expect_closed(CLOSE_WAIT, "fourth connection with maxClientCnxns=3");
    }
    // The three are fine.
    for c in conns.iter_mut() {
        assert_eq!(c.ping().err, 0);
    }
    // Closing one frees a slot (the server notices the close asynchronously: poll).
    conns.pop().unwrap().close_session();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let Ok(mut c) = RawConn::try_open(srv.addr()) else {
            assert!(Instant::now() < deadline, "no connection slot after closing one of three");
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let sent = c.try_send_raw(
            &Enc::new()
                .raw(&(45i32).to_be_bytes())
                .raw(&connect_request(0, 10_000, 0, Some(&[0u8; 16]), Some(false)))
                .bytes(),
        );
        if sent.is_ok() {
            if let Ok(body) = c.read_frame() {
                assert_ne!(parse_connect_response(&body).session_id, 0);
                break;
            }
        }
        assert!(Instant::now() < deadline, "no connection slot after closing one of three");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn large_values_round_trip_and_oversized_frames_close() {
    let srv = Server::start();
    let mut c = RawConn::session(srv.addr(), 30_000);
    let base = unique_path("large");
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(c.create(&base, Some(&big), 0).err, 0);
    let (data, st) = c.get_data(&base, false).unwrap();
    assert_eq!(st.data_length, 1_000_000);
    assert!(data.as_deref() == Some(&big[..]), "1 MB value corrupted");
    // A setData frame over jute.maxbuffer (1 048 575) closes the connection, nothing applied.
    let mut w = RawConn::session(srv.addr(), 10_000);
    let huge = vec![7u8; 1_048_576];
    let body = Enc::new().i32(1).i32(op::SET_DATA).str(&base).buf(Some(&huge)).i32(-1).bytes();
    let _ = w.try_send_raw(&Enc::new().i32(body.len() as i32).raw(&body).bytes());
    w.expect_closed(CLOSE_WAIT, "oversized setData frame");
    let (data, st2) = c.get_data(&base, false).unwrap();
    assert_eq!(st2, st);
    assert!(data.as_deref() == Some(&big[..]));
}

#[test]
fn pipelined_reads_see_exactly_the_preceding_writes() {
    let srv = Server::start();
    let mut c = RawConn::session(srv.addr(), 30_000);
    let base = unique_path("fifo");
    assert_eq!(c.create(&base, Some(b"init"), 0).err, 0);
    // 40 x (setData i, getData, exists, getChildren, create child i) in one write.
    let mut bytes = Vec::new();
    let mut expect = Vec::new();
    let mut xid = 100;
    for i in 0..40 {
        let reqs = [
            (op::SET_DATA, Enc::new().str(&base).buf(Some(format!("d{i}").as_bytes())).i32(-1).bytes()),
            (op::GET_DATA, Enc::new().str(&base).bool(false).bytes()),
            (op::EXISTS, Enc::new().str(&base).bool(false).bytes()),
            (op::GET_CHILDREN, Enc::new().str(&base).bool(false).bytes()),
            (op::CREATE, Enc::new().str(&format!("{base}/k{i:02}")).buf(Some(b"")).world_acl(31).i32(0).bytes()),
        ];
        for (opcode, body) in reqs {
            let frame = Enc::new().i32(xid).i32(opcode).raw(&body).bytes();
            bytes.extend_from_slice(&(frame.len() as i32).to_be_bytes());
            bytes.extend_from_slice(&frame);
            expect.push((xid, opcode, i));
            xid += 1;
        }
    }
    c.send_raw(&bytes);
    for (xid, opcode, i) in expect {
        let (h, body) = c.read_reply().unwrap_or_else(|e| panic!("reply xid {xid}: {e:?}"));
        assert_eq!(h.xid, xid, "reply order");
        assert_eq!(h.err, 0, "xid {xid} op {opcode}");
        let mut d = Dec::new(&body);
        match opcode {
            op::GET_DATA => {
                let data = d.buf();
                let st = d.stat();
                assert_eq!(
                    data.as_deref(),
                    Some(format!("d{i}").as_bytes()),
                    "round {i}: getData must see the setData before it and not the one after"
                );
                assert_eq!(st.version, i + 1, "round {i}");
                assert_eq!(st.num_children, i, "round {i}: children created before this read");
            }
            op::EXISTS => {
                let st = d.stat();
                assert_eq!((st.version, st.num_children), (i + 1, i), "round {i}: exists");
            }
            op::GET_CHILDREN => {
                assert_eq!(d.i32(), i, "round {i}: getChildren count");
            }
            _ => {}
        }
    }
}

#[test]
fn sync_echoes_path_and_reconfig_is_refused() {
    let srv = Server::start();
    let mut c = RawConn::session(srv.addr(), 10_000);
    let (h, body) = c.call(op::SYNC, &Enc::new().str("/zookeeper").bytes());
    assert_eq!(h.err, 0);
    let mut d = Dec::new(&body);
    assert_eq!(d.str().as_deref(), Some("/zookeeper"));
    d.done();
    // reconfig (16) on a standalone server with reconfigEnabled=false (the default).
    let body = Enc::new().str("").str("").str("server.9=127.0.0.1:1:2").i64(-1).bytes();
    let (h, body) = c.call(16, &body);
    assert_eq!(h.err, -123, "ReconfigDisabled");
    assert!(body.is_empty());
    assert_eq!(c.ping().err, 0);
}

#[test]
fn a_client_that_reads_slowly_still_gets_every_reply() {
    let srv = Server::start();
    let base = unique_path("slowreader");
    let mut setup = RawConn::session(srv.addr(), 30_000);
    let value = vec![b'x'; 200_000];
    assert_eq!(setup.create(&base, Some(&value), 0).err, 0);
    let mut c = RawConn::session(srv.addr(), 30_000);
    // 100 getData requests (20 MB of replies) written from another thread, since the server may
    // stop reading while the replies pile up; this thread starts reading only later.
    let mut frames = Vec::new();
    for xid in 1..=100 {
        let frame = Enc::new().i32(xid).i32(op::GET_DATA).str(&base).bool(false).bytes();
        frames.extend_from_slice(&(frame.len() as i32).to_be_bytes());
        frames.extend_from_slice(&frame);
    }
    let mut writer = c.stream.try_clone().unwrap();
    writer.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    let t = std::thread::spawn(move || {
        use std::io::Write;
        writer.write_all(&frames)
    });
    std::thread::sleep(Duration::from_millis(1500));
    c.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for xid in 1..=100 {
        let (h, body) = c.read_reply().unwrap_or_else(|e| panic!("reply {xid}: {e:?}"));
        assert_eq!((h.xid, h.err), (xid, 0));
        assert_eq!(body.len(), 4 + 200_000 + 68);
    }
    t.join().unwrap().expect("all requests written");
    assert_eq!(c.ping().err, 0);
}

#[test]
fn abrupt_disconnect_with_writes_in_flight_applies_a_prefix() {
    let srv = Server::start();
    let base = unique_path("abrupt");
    let mut setup = RawConn::session(srv.addr(), 30_000);
    assert_eq!(setup.create(&base, Some(b""), 0).err, 0);
    for round in 0..5 {
        let dir = format!("{base}/r{round}");
        assert_eq!(setup.create(&dir, Some(b""), 0).err, 0);
        let mut c = RawConn::session(srv.addr(), 30_000);
        let mut frames = Vec::new();
        for i in 0..200 {
            let body = Enc::new().str(&format!("{dir}/n{i:03}")).buf(Some(b"")).world_acl(31).i32(0).bytes();
            let frame = Enc::new().i32(i + 1).i32(op::CREATE).raw(&body).bytes();
            frames.extend_from_slice(&(frame.len() as i32).to_be_bytes());
            frames.extend_from_slice(&frame);
        }
        c.send_raw(&frames);
        drop(c); // close with most replies unread
                 // Whatever was applied is a prefix of the session's requests (FIFO order).
        std::thread::sleep(Duration::from_millis(200));
        let mut kids = setup.get_children(&dir, false).unwrap();
        kids.sort();
        let want: Vec<String> = (0..kids.len()).map(|i| format!("n{i:03}")).collect();
        assert_eq!(kids, want, "round {round}: applied creates are not a prefix");
    }
    assert_eq!(four_letter(srv.addr(), "ruok").unwrap(), "imok");
    assert_eq!(setup.ping().err, 0);
}

#[test]
fn four_letter_word_formats() {
    let srv = Server::start();
    let addr = srv.addr();
    assert_eq!(four_letter(addr, "isro").unwrap(), "rw");
    let conf = four_letter(addr, "conf").unwrap();
    for line in ["tickTime=2000", "maxClientCnxns=0", "minSessionTimeout=4000", "maxSessionTimeout=40000"] {
        assert!(conf.lines().any(|l| l == line), "conf lacks {line:?}:\n{conf}");
    }
    assert!(conf.lines().any(|l| l.starts_with("clientPort=")), "conf:\n{conf}");
    let envi = four_letter(addr, "envi").unwrap();
    assert!(envi.starts_with("Environment:\n"), "envi:\n{envi}");
    assert!(envi.lines().nth(1).unwrap_or("").starts_with("zookeeper.version="), "envi:\n{envi}");
    assert_eq!(four_letter(addr, "srst").unwrap(), "Server stats reset.\n");
    assert_eq!(four_letter(addr, "crst").unwrap(), "Connection stats reset.\n");

    // A session with two data watches and one child watch.
    let base = unique_path("wchs");
    let mut c = RawConn::session(addr, 10_000);
    assert_eq!(c.create(&base, Some(b""), 0).err, 0);
    assert_eq!(c.create(&format!("{base}/a"), Some(b""), 0).err, 0);
    c.get_data(&base, true).unwrap();
    c.get_data(&format!("{base}/a"), true).unwrap();
    c.get_children(&base, true).unwrap();
    let wchs = four_letter(addr, "wchs").unwrap();
    let lines: Vec<&str> = wchs.lines().collect();
    assert!(
        lines.len() == 2
            && lines[0].ends_with(" paths")
            && lines[0].contains(" connections watching ")
            && lines[1].starts_with("Total watches:"),
        "wchs:\n{wchs}"
    );
    if !srv.is_external() {
        // Only the data-watch table counts. (The count may lag the registration a little.)
        let want = "1 connections watching 2 paths\nTotal watches:2\n";
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut got = wchs.clone();
        while got != want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            got = four_letter(addr, "wchs").unwrap();
        }
        assert_eq!(got, want);
    }
    let sid = format!("0x{:x}", c.session_id);
    let cons = four_letter(addr, "cons").unwrap();
    assert!(cons.contains(&format!("sid={sid}")), "cons lacks sid={sid}:\n{cons}");
    let stat = four_letter(addr, "stat").unwrap();
    assert!(stat.contains("\nClients:\n") && stat.contains("Mode: standalone"), "stat:\n{stat}");
    let mntr = four_letter(addr, "mntr").unwrap();
    for key in ["zk_version", "zk_znode_count", "zk_watch_count", "zk_num_alive_connections", "zk_ephemerals_count"] {
        assert!(mntr.lines().any(|l| l.starts_with(&format!("{key}\t"))), "mntr lacks {key}:\n{mntr}");
    }
    assert_eq!(c.ping().err, 0);
}

#[test]
fn ttl_and_container_create_validation() {
    let srv = Server::start();
    let mut c = RawConn::session(srv.addr(), 10_000);
    let base = unique_path("ttlval");
    assert_eq!(c.create(&base, Some(b""), 0).err, 0);
    let create_ttl = |c: &mut RawConn, name: &str, flags: i32, ttl: i64| {
        let body = Enc::new().str(&format!("{base}/{name}")).buf(Some(b"")).world_acl(31).i32(flags).i64(ttl).bytes();
        c.call(op::CREATE_TTL, &body).0.err
    };
    assert_eq!(create_ttl(&mut c, "ok", 5, 60_000), 0);
    assert_eq!(create_ttl(&mut c, "okseq-", 6, 60_000), 0);
    assert_eq!(create_ttl(&mut c, "max", 5, 0xff_ffff_ffff), 0);
    assert_eq!(create_ttl(&mut c, "zero", 5, 0), code::BAD_ARGUMENTS, "ttl 0");
    assert_eq!(create_ttl(&mut c, "neg", 5, -5), code::BAD_ARGUMENTS, "negative ttl");
    assert_eq!(create_ttl(&mut c, "huge", 5, 0x100_0000_0000), code::BAD_ARGUMENTS, "ttl over 2^40-1");
    assert_eq!(create_ttl(&mut c, "plainflag", 0, 60_000), code::BAD_ARGUMENTS, "createTTL with a non-TTL mode");
    assert_eq!(create_ttl(&mut c, "ephflag", 1, 60_000), code::BAD_ARGUMENTS, "createTTL with an ephemeral mode");
    // TTL modes through plain create have no ttl: BadArguments.
    assert_eq!(c.create(&format!("{base}/ttlviacreate"), Some(b""), 5).err, code::BAD_ARGUMENTS);
    // createContainer with a TTL or unknown mode.
    for flags in [5, 6, 7] {
        let body = Enc::new().str(&format!("{base}/c{flags}")).buf(Some(b"")).world_acl(31).i32(flags).bytes();
        assert_eq!(c.call(op::CREATE_CONTAINER, &body).0.err, code::BAD_ARGUMENTS, "createContainer flags {flags}");
    }
    let st = c.exists(&format!("{base}/ok"), false).unwrap();
    assert_eq!(st.ephemeral_owner, 0, "TTL nodes report ephemeralOwner 0");
    let mut kids = c.get_children(&base, false).unwrap();
    kids.sort();
    assert_eq!(kids, vec!["max", "ok", "okseq-0000000001"]);
}

#[test]
fn thousands_of_pipelined_requests_are_answered_in_order() {
    let srv = Server::start();
    let base = unique_path("pipeline");
    let mut c = RawConn::session(srv.addr(), 30_000);
    assert_eq!(c.create(&base, Some(b"x"), 0).err, 0);
    const N: i32 = 5000;
    let mut frames = Vec::new();
    for xid in 1..=N {
        // Mostly reads, every 10th a write.
        let frame = if xid % 10 == 0 {
            Enc::new().i32(xid).i32(op::SET_DATA).str(&base).buf(Some(xid.to_string().as_bytes())).i32(-1).bytes()
        } else {
            Enc::new().i32(xid).i32(op::GET_DATA).str(&base).bool(false).bytes()
        };
        frames.extend_from_slice(&(frame.len() as i32).to_be_bytes());
        frames.extend_from_slice(&frame);
    }
    let mut writer = c.stream.try_clone().unwrap();
    writer.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    let t = std::thread::spawn(move || {
        use std::io::Write;
        writer.write_all(&frames)
    });
    let mut last_write = 0;
    for xid in 1..=N {
        let (h, body) = c.read_reply().unwrap_or_else(|e| panic!("reply {xid}: {e:?}"));
        assert_eq!((h.xid, h.err), (xid, 0), "reply order");
        if xid % 10 == 0 {
            last_write = xid;
        } else {
            let mut d = Dec::new(&body);
            let data = d.buf().unwrap();
            let want = if last_write == 0 { "x".to_string() } else { last_write.to_string() };
            assert_eq!(String::from_utf8(data).unwrap(), want, "xid {xid} sees exactly the writes before it");
        }
    }
    t.join().unwrap().expect("all requests written");
}

#[test]
fn four_letter_watch_and_ephemeral_listings() {
    let srv = Server::start();
    let addr = srv.addr();
    let base = unique_path("wchc");
    let mut c = RawConn::session(addr, 10_000);
    assert_eq!(c.create(&base, Some(b""), 0).err, 0);
    c.get_data(&base, true).unwrap();
    let eph = format!("{base}/eph");
    assert_eq!(c.create(&eph, Some(b""), 1).err, 0);
    let sid = format!("0x{:x}", c.session_id);
    let wchc = four_letter(addr, "wchc").unwrap();
    assert!(wchc.contains(&format!("{sid}\n")), "wchc lacks {sid}:\n{wchc}");
    assert!(wchc.contains(&format!("\t{base}\n")), "wchc:\n{wchc}");
    let wchp = four_letter(addr, "wchp").unwrap();
    assert!(wchp.contains(&format!("{base}\n\t{sid}\n")), "wchp:\n{wchp}");
    let dump = four_letter(addr, "dump").unwrap();
    assert!(dump.contains("Sessions with Ephemerals ("), "dump:\n{dump}");
    assert!(dump.contains(&format!("{sid}:\n\t{eph}\n")), "dump lacks {sid} with {eph}:\n{dump}");
}

/// Clients that issue reads back to back must not stall other clients' writes (ZooKeeper 3.8
/// here: well under 1 ms each; the bound below is generous).
#[test]
fn writes_are_not_starved_by_clients_reading_back_to_back() {
    // A write cannot be faster than the disk: a slow setData is excused only when an
    // independent probe of the same filesystem saw a sync stall covering the excess.
    let probe = DiskProbe::start();
    let srv = Server::start();
    let base = unique_path("starve");
    let mut w = RawConn::session(srv.addr(), 30_000);
    assert_eq!(w.create(&base, Some(b"0"), 0).err, 0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut r = RawConn::session(srv.addr(), 30_000);
        let stop = stop.clone();
        let path = base.clone();
        readers.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                r.get_data(&path, false).unwrap();
                n += 1;
            }
            n
        }));
    }
    std::thread::sleep(Duration::from_millis(200));
    let bound = Duration::from_millis(500);
    let mut slow = Vec::new();
    for i in 0..50 {
        let t = Instant::now();
        assert_eq!(w.set_data(&base, i.to_string().as_bytes()).err, 0);
        if t.elapsed() > bound {
            slow.push((t, t.elapsed()));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|t| t.join().unwrap()).sum();
    let unexplained: Vec<String> = slow
        .iter()
        .filter_map(|&(t, took)| {
            let disk = probe.worst_between(t, t + took);
            (disk < took - bound).then(|| format!("{took:?} (disk probe's worst sync meanwhile {disk:?})"))
        })
        .collect();
    assert!(
        unexplained.is_empty(),
        "setData slower than {bound:?} while 2 clients read back to back ({reads} reads): {unexplained:?}"
    );
}
