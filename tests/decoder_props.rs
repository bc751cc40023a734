//! Property tests of the frame and record decoders: arbitrary bytes never panic, and every
//! encodable request decodes back to itself.

use corezk::proto::frame::next_frame;
use corezk::proto::jute::Writer;
use corezk::proto::records::{decode_request, encode_request, request_op, DecodeOutcome};
use corezk::proto::{Acl, ConnectRequest, CreateRequest, Id, MultiOp, ReadOp, Request};
use proptest::prelude::*;

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9.]{1,6}", 1..4).prop_map(|v| format!("/{}", v.join("/")))
}

fn data() -> impl Strategy<Value = Option<bytes::Bytes>> {
    prop::option::of(prop::collection::vec(any::<u8>(), 0..64).prop_map(bytes::Bytes::from))
}

fn acl() -> impl Strategy<Value = Vec<Acl>> {
    prop::collection::vec(
        (0..32i32, "[a-z]{1,6}", "[a-z:]{1,10}").prop_map(|(perms, scheme, id)| Acl { perms, id: Id { scheme, id } }),
        0..3,
    )
}

fn create() -> impl Strategy<Value = CreateRequest> {
    (path(), data(), acl(), 0..7i32, prop::sample::select(vec![1, 15, 19, 21]), 1..1_000_000i64).prop_map(
        |(path, data, acl, flags, op, ttl)| CreateRequest {
            path,
            data,
            acl,
            flags,
            ttl: if op == 21 { ttl } else { -1 },
            op,
        },
    )
}

/// A create inside a multi as ZooKeeper rebuilds it from its flags (what decoding returns).
fn rebuilt(mut c: CreateRequest) -> CreateRequest {
    let ttl_mode = matches!(c.flags, 5 | 6);
    if c.op == 21 && ttl_mode {
        return c;
    }
    c.ttl = -1;
    c.op = match c.flags {
        4 => 19,
        5 | 6 => 21,
        _ => 1,
    };
    c
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        create().prop_map(Request::Create),
        (path(), any::<i32>()).prop_map(|(path, version)| Request::Delete { path, version }),
        (path(), any::<bool>()).prop_map(|(path, watch)| Request::GetData { path, watch }),
        (path(), any::<bool>()).prop_map(|(path, watch)| Request::Exists { path, watch }),
        (path(), any::<bool>(), any::<bool>()).prop_map(|(path, watch, with_stat)| Request::GetChildren {
            path,
            watch,
            with_stat
        }),
        (path(), data(), any::<i32>()).prop_map(|(path, data, version)| Request::SetData { path, data, version }),
        (path(), acl(), any::<i32>()).prop_map(|(path, acl, version)| Request::SetAcl { path, acl, version }),
        prop::collection::vec(
            prop_oneof![
                create().prop_map(|c| MultiOp::Create(rebuilt(c))),
                (path(), any::<i32>()).prop_map(|(path, version)| MultiOp::Check { path, version }),
                (path(), any::<i32>()).prop_map(|(path, version)| MultiOp::Delete { path, version }),
                (path(), data(), any::<i32>()).prop_map(|(path, data, version)| MultiOp::SetData {
                    path,
                    data,
                    version
                }),
            ],
            0..5
        )
        .prop_map(Request::Multi),
        prop::collection::vec(path().prop_map(|path| ReadOp::GetChildren { path }), 0..4).prop_map(Request::MultiRead),
        (path(), 0..2i32).prop_map(|(path, mode)| Request::AddWatch { path, mode }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(op in -20i32..120, body in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_request(op, &body);
        let _ = ConnectRequest::decode(&body);
        let _ = next_frame(&body, 1 << 20);
    }

    #[test]
    fn requests_round_trip(req in request()) {
        let mut w = Writer::new();
        encode_request(&mut w, &req);
        prop_assert_eq!(decode_request(request_op(&req), &w.buf), DecodeOutcome::Ok(req));
    }

    #[test]
    fn truncated_requests_are_malformed_not_panics(req in request(), cut in 0usize..64) {
        let mut w = Writer::new();
        encode_request(&mut w, &req);
        if cut < w.buf.len() {
            let short = &w.buf[..w.buf.len() - cut - 1];
            let out = decode_request(request_op(&req), short);
            // Fewer bytes can still be a valid shorter record (e.g. an empty vector), but never
            // the same request, and never a panic.
            prop_assert_ne!(out, DecodeOutcome::Ok(req));
        }
    }

    #[test]
    fn frame_lengths(len in any::<i32>(), max in 1usize..(1 << 20)) {
        let mut b = len.to_be_bytes().to_vec();
        b.extend(std::iter::repeat_n(0u8, 16));
        match next_frame(&b, max) {
            Err(_) => prop_assert!(len < 0 || len as usize > max),
            Ok(Some((r, used))) => prop_assert!(r.len() == len as usize && used == 4 + len as usize),
            Ok(None) => prop_assert!(len as usize > 16),
        }
    }
}
