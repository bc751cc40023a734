//! Criterion benchmark of the log write path: appending one-block records through the log
//! writer thread (O_DIRECT write, with and without fdatasync; group commit makes one of these
//! per batch), measured as the commit core sees it: from handing the record over to its answer.

use bytes::Bytes;
use corezk::log::writer::LogThread;
use corezk::record;
use corezk::txn::{Txn, TxnBody, TxnOp};
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::{Duration, Instant};

fn one_record() -> Vec<u8> {
    let txn = Txn {
        zxid: 1,
        time: 0,
        session: 1,
        body: TxnBody::Ops {
            ops: vec![TxnOp::SetData { path: "/k/00000001".into(), data: Some(Bytes::from(vec![7u8; 1024])) }],
            multi: false,
        },
    };
    record::encode(&[txn])
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("log append");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for sync in [false, true] {
        let name = if sync { "4 KiB record + fdatasync" } else { "4 KiB record, no fdatasync" };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let dir = std::env::temp_dir().join(format!("corezk-bench-log-{}-{sync}", std::process::id()));
                std::fs::create_dir_all(&dir).unwrap();
                let d = dir.clone();
                let rec = one_record();
                let w = LogThread::start(corezk::log::Dirs { data: d.clone(), log: d }, 64 << 20, sync)
                    .expect("log writer");
                let t = Instant::now();
                for i in 0..iters {
                    futures_lite::future::block_on(w.append(&rec, 1 + i as i64, i == 0))
                        .expect("an answer")
                        .expect("log append");
                }
                let took = t.elapsed();
                drop(w);
                let _ = std::fs::remove_dir_all(&dir);
                took
            })
        });
    }
    g.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
