//! Criterion benchmarks of the log record path: encoding a committed batch into a record,
//! validating and decoding it (from disk or a peer), applying the decoded batch to a large
//! tree, and the snapshot codec on a tree of 100k nodes.
//!
//! The batch is the write-heavy case the durability issue measures: 100 setData transactions
//! with 1 KiB values.

use bytes::Bytes;
use corezk::proto::Acl;
use corezk::record;
use corezk::snapshot;
use corezk::tree::Tree;
use corezk::txn::{Txn, TxnBody, TxnOp};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Arc;

const NODES: usize = 100_000;
const BATCH: usize = 100;

fn path(i: usize) -> Arc<str> {
    format!("/bench/{:03}/n{i:06}", i % 100).into()
}

/// A tree with `NODES` leaves under 100 parents, 100-byte values; last zxid = its node count.
fn big_tree() -> Tree {
    let acl = Arc::new(vec![Acl::world(31)]);
    let mut t = Tree::new();
    let (mut trig, mut stats) = (Vec::new(), Vec::new());
    let mut zxid = 0;
    let mut create = |t: &mut Tree, p: Arc<str>, data: Option<Bytes>| {
        zxid += 1;
        let op = TxnOp::Create { path: p, data, acl: acl.clone(), owner: 0 };
        let txn = Txn { zxid, time: zxid, session: 1, body: TxnBody::Ops { ops: vec![op], multi: false } };
        t.apply(&txn, &mut trig, &mut stats);
        trig.clear();
        stats.clear();
    };
    create(&mut t, "/bench".into(), None);
    for p in 0..100 {
        create(&mut t, format!("/bench/{p:03}").into(), None);
    }
    for i in 0..NODES {
        create(&mut t, path(i), Some(Bytes::from(vec![b'v'; 100])));
    }
    t
}

/// 100 setData transactions with 1 KiB values, zxids after `after`, spread over the tree.
fn set_data_batch(after: i64) -> Vec<Txn> {
    (0..BATCH)
        .map(|i| {
            let zxid = after + 1 + i as i64;
            let data = Some(Bytes::from(vec![(i % 251) as u8; 1024]));
            let op = TxnOp::SetData { path: path(i * 997 % NODES), data };
            Txn {
                zxid,
                time: 1_700_000_000_000 + zxid,
                session: 0x1234,
                body: TxnBody::Ops { ops: vec![op], multi: false },
            }
        })
        .collect()
}

/// `bytes` copied to a 4096-aligned address, as a DMA read buffer holds them.
fn aligned_copy(bytes: &[u8]) -> rkyv::util::AlignedVec<4096> {
    let mut v = rkyv::util::AlignedVec::<4096>::with_capacity(bytes.len());
    v.extend_from_slice(bytes);
    v
}

fn record_codec(c: &mut Criterion) {
    let batch = set_data_batch(0);
    let rec = record::encode(&batch);
    let on_disk = aligned_copy(&rec);
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("encode_100x1KiB_setData", |b| b.iter(|| record::encode(black_box(&batch))));
    g.bench_function("validate_in_place_100x1KiB", |b| {
        b.iter(|| record::access(black_box(&on_disk)).expect("valid").1.txns().len())
    });
    g.bench_function("decode_100x1KiB", |b| b.iter(|| record::decode(black_box(&on_disk)).expect("valid")));
    g.bench_function("decode_misaligned_100x1KiB", |b| {
        let mut shifted = vec![0u8; 8];
        shifted.extend_from_slice(&rec);
        b.iter(|| record::decode(black_box(&shifted[8..])).expect("valid"))
    });
    g.finish();
}

fn apply_batch(c: &mut Criterion) {
    let tree = big_tree();
    let decoded = record::decode(&aligned_copy(&record::encode(&set_data_batch(tree.last_zxid())))).expect("valid");
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("100_setData_to_100k_node_tree", |b| {
        b.iter_batched(
            || tree.clone(),
            |mut t| {
                let (mut trig, mut stats) = (Vec::with_capacity(BATCH), Vec::with_capacity(BATCH));
                for txn in &decoded.txns {
                    t.apply(txn, &mut trig, &mut stats);
                }
                t
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn snapshot_codec(c: &mut Criterion) {
    let tree = big_tree();
    let sessions: Vec<(i64, i32, [u8; 16])> = (0..1000).map(|i| (i, 30_000, [i as u8; 16])).collect();
    let snap = snapshot::encode(&tree, &sessions, 1000);
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10);
    g.throughput(Throughput::Elements(tree.node_count() as u64));
    g.bench_function("encode_100k_nodes", |b| b.iter(|| snapshot::encode(black_box(&tree), &sessions, 1000)));
    g.bench_function("decode_100k_nodes", |b| b.iter(|| snapshot::decode(black_box(&snap)).expect("valid")));
    g.finish();
}

criterion_group!(benches, record_codec, apply_batch, snapshot_codec);
criterion_main!(benches);
