//! Networking between the servers of an ensemble (the client port lives in `shard`).
//!
//! Owns sockets and framing only; never decides anything about the protocol.

pub mod peer;
