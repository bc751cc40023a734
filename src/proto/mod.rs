//! The ZooKeeper client wire protocol: jute primitives, records, constants and framing.
//!
//! Pure: owns bytes in and bytes out. Never touches the tree, sessions, sockets or clocks.

pub mod codes;
pub mod frame;
pub mod jute;
pub mod records;

pub use codes::{err, op};
pub use records::*;
