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
    let stat = corezk::proto::Stat { czxid: 5, mzxid: 9, data_length: 1024, ..Default::default() };
    let data = vec![3u8; 1024];
    c.bench_function("encode getData reply 1KiB", |b| {
        b.iter(|| {
            let mut w = corezk::proto::reply_header(7, 9, 0);
            w.buffer(Some(black_box(&data)));
            stat.encode(&mut w);
            w.finish_frame()
        })
    });
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
    let t = tree_with(1_000_000);
    c.bench_function("tree get (1M nodes)", |b| b.iter(|| t.get(black_box("/k/00054321")).map(|n| n.stat())));
    let mut t3 = t.clone();
    let acl = Arc::new(vec![Acl::world(31)]);
    let mut next = 0u64;
    c.bench_function("tree create + snapshot (1M nodes)", |b| {
        b.iter(|| {
            next += 1;
            let body = TxnBody::Ops {
                ops: vec![TxnOp::Create {
                    path: format!("/k/new{next:012}").into(),
                    data: Some(Bytes::from_static(b"v")),
                    acl: acl.clone(),
                    owner: 0,
                }],
                multi: false,
            };
            t3.apply(&Txn { zxid: 1_000_000 + next as i64, time: 0, session: 0, body }, &mut vec![], &mut vec![]);
            black_box(Arc::new(t3.clone()));
        })
    });
    let mut t2 = t.clone();
    let mut zxid = 2;
    c.bench_function("tree setData + snapshot (1M nodes)", |b| {
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

/// Cross-core fan-out: the commit core publishes a batch to every shard's inbox; the shards
/// (other threads, one per remaining CPU so none are oversubscribed) take it. Measures the time
/// until every shard holds the batch.
fn fan_out(c: &mut Criterion) {
    use crossbeam::queue::SegQueue;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let shards = std::thread::available_parallelism().map_or(2, |n| n.get()).saturating_sub(1).max(1);
    let inboxes: Arc<Vec<SegQueue<Arc<u64>>>> = Arc::new((0..shards).map(|_| SegQueue::new()).collect());
    let taken: Arc<Vec<AtomicU64>> = Arc::new((0..shards).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..shards)
        .map(|i| {
            let (inboxes, taken, stop) = (inboxes.clone(), taken.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match inboxes[i].pop() {
                        Some(b) => {
                            black_box(b);
                            taken[i].fetch_add(1, Ordering::Release);
                        }
                        None => std::hint::spin_loop(),
                    }
                }
            })
        })
        .collect();
    let mut sent = 0u64;
    c.bench_function(&format!("publish a batch to {shards} shard thread(s)"), |b| {
        b.iter(|| {
            let batch = Arc::new(sent);
            for inbox in inboxes.iter() {
                inbox.push(batch.clone());
            }
            sent += 1;
            for t in taken.iter() {
                while t.load(Ordering::Acquire) < sent {
                    std::hint::spin_loop();
                }
            }
        })
    });
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
}

criterion_group!(benches, proto, tree, watches, fan_out);
criterion_main!(benches);
