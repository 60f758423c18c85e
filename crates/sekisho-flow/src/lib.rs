//! The sekisho flow table, in two layers that can be read and tested alone:
//!
//! - [`map`]: a generic bounded, lock-free map (papaya, keyed SipHash-1-3) with a hard
//!   capacity, a guaranteed share per bucket, and eviction of candidates;
//! - connection tracking on top of it: the canonical, family-aware [`FlowKey`],
//!   [`FlowEntry`] (atomics only: state, the cached decision word, counters, TCP sequence
//!   tracking), idle [`Timeouts`], the [`FlowTable`], and the [`FragmentTable`] of
//!   fragmented datagrams in flight.
//!
//! Pure: no clock reads and no I/O. Every time is a `u64` of nanoseconds on the caller's
//! monotonic clock, passed in.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod entry;
mod fragments;
pub mod hash;
mod key;
pub mod map;
mod table;
pub mod tcp;

pub use entry::{
    tcp_flags, CachedDecision, FlowEntry, FlowSnapshot, FlowState, NewFlow, Observed, Timeouts, SHARES,
};
pub use fragments::{FragmentKey, FragmentRecord, FragmentTable};
pub use key::{Endpoint, FlowKey, Socket};
pub use table::{FlowTable, Pinned, TableFull, TableStats};
