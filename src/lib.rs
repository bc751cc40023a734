//! corezk: a ZooKeeper-compatible coordination service built as a thread-per-core server.
//!
//! Pure layer (no I/O, no clocks, no threads): `proto`, `tree`, `txn`, `prep`, `read`,
//! `sequencer`, `session`, `watch`, `record`, `snapshot`. Runtime layer (thin, makes no protocol
//! decisions): `config`, `runtime`, `shard`, `commit`, `log`, `admin`.

pub mod admin;
pub mod commit;
pub mod config;
pub mod log;
pub mod prep;
pub mod proto;
pub mod read;
pub mod record;
pub mod runtime;
pub mod sequencer;
pub mod session;
pub mod shard;
pub mod snapshot;
pub mod tree;
pub mod txn;
pub mod watch;
pub mod zab;
