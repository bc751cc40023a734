//! corezk: a ZooKeeper-compatible coordination service built as a thread-per-core server.
//!
//! Pure layer (no I/O, no clocks, no threads): `proto`, `tree`, `txn`, `prep`, `read`,
//! `sequencer`, `session`, `watch`, `record`, `snapshot`, `zab` (replication), `node` (one
//! server's decisions around ZAB). Runtime layer (thin, makes no protocol decisions): `config`,
//! `runtime`, `shard`, `commit`, `log`, `net`, `admin`, `launch` (`corezk ensemble`).

pub mod admin;
pub mod commit;
pub mod config;
pub mod launch;
pub mod log;
pub mod net;
pub mod node;
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
