//! Criterion micro-benchmarks of hot paths: request decode, reply encode, tree reads and
//! writes, watch fan-out.

use bytes::Bytes;
use corezk::proto::jute::Writer;
use corezk::proto::records::{decode_request, encode_request};
use corezk::proto::{op, Acl, Request};
use corezk::tree::{Tree, Trigger, TriggerKind};
use corezk::txn::{Txn, TxnBody, TxnOp};
use corezk::watch::{Table, WatchTable, STANDARD};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::sync::Arc;

fn tree_with(n: usize) -> Tree {
    let mut t = Tree::new();
    let acl = Arc::new(vec![Acl::world(31)]);
    let mut ops = vec![TxnOp::Create { path: "/k".into(), data: None, acl: acl.clone(), owner: 0 }];
    for i in 0..n {
        ops.push(TxnOp::Create {
            path: format!("/k/{i:08}").into(),
            data: Some(Bytes::from(vec![7u8; 100])),
            acl: acl.clone(),
            owner: 0,
        });
    }
    t.apply(&Txn { zxid: 1, time: 0, session: 0, body: TxnBody::Ops { ops, multi: true } }, &mut vec![], &mut vec![]);
    t
}

fn proto(c: &mut Criterion) {
    let mut w = Writer::new();
    encode_request(&mut w, &Request::GetData { path: "/k/00001234".into(), watch: false });
    let body = w.buf;
    c.bench_function("decode getData", |b| b.iter(|| decode_request(op::GET_DATA, black_box(&body))));
    let mut w = Writer::new();
    encode_request(
        &mut w,
        &Request::SetData { path: "/k/00001234".into(), data: Some(Bytes::from(vec![1u8; 1024])), version: -1 },
    );
    let body = w.buf;
    c.bench_function("decode setData 1KiB", |b| b.iter(|| decode_request(op::SET_DATA, black_box(&body))));
}

fn tree(c: &mut Criterion) {
    let t = tree_with(100_000);
    c.bench_function("tree get (100k nodes)", |b| b.iter(|| t.get(black_box("/k/00054321")).map(|n| n.stat())));
    let mut t2 = t.clone();
    let mut zxid = 2;
    c.bench_function("tree setData + snapshot (100k nodes)", |b| {
        b.iter(|| {
            zxid += 1;
            let body = TxnBody::Ops {
                ops: vec![TxnOp::SetData { path: "/k/00054321".into(), data: Some(Bytes::from_static(b"v")) }],
                multi: false,
            };
            t2.apply(&Txn { zxid, time: 0, session: 0, body }, &mut vec![], &mut vec![]);
            black_box(Arc::new(t2.clone()));
        })
    });
}

fn watches(c: &mut Criterion) {
    c.bench_function("watch fan-out to 1000 connections", |b| {
        b.iter_batched(
            || {
                let mut w = WatchTable::new();
                for conn in 0..1000 {
                    w.add(Table::Data, "/a", conn, STANDARD);
                }
                w
            },
            |mut w| {
                let mut out = Vec::new();
                let t = Trigger { kind: TriggerKind::DataChanged, path: "/a".into(), acl: Arc::new(vec![]) };
                w.trigger(&t, &mut out);
                out.len()
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, proto, tree, watches);
criterion_main!(benches);
