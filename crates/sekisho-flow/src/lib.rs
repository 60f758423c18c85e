//! The sekisho flow table: canonical bidirectional flow keys, flow entries made of
//! atomics, per-protocol idle timeouts, and a lock-free table with a hard capacity.
//!
//! Pure: no clock reads and no I/O. Every time is a `u64` of nanoseconds on the caller's
//! clock, passed in.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod entry;
mod key;
mod table;

pub use entry::{tcp_flags, CachedDecision, FlowEntry, FlowSnapshot, FlowState, Timeouts};
pub use key::{Endpoint, FlowKey, Socket};
pub use table::{FlowTable, Pinned, TableFull, TableStats};
