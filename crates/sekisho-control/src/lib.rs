//! The sekisho control protocol (docs/control-protocol.md): the daemon `sekishod`
//! serves it on a Unix stream socket, `sekishoctl`, the lab and the tests speak it.
//!
//! One JSON object per line each way. The client opens with a [`Hello`]; every reply,
//! the hello's included, is one [`Reply`] envelope: `ok` with `data`, or `error` with a
//! stable [`ErrorCode`] and a message a person can act on. Requests carry an `id` that
//! the replies repeat.
//!
//! ```text
//! → {"hello":{"proto":"sekisho-control","version":1}}
//! ← {"id":null,"ok":true,"data":{"proto":"sekisho-control","version":1,"daemon":"0.1.0","role":"admin","uid":0,"pid":4242}}
//! → {"id":1,"cmd":"status"}
//! ← {"id":1,"ok":true,"data":{"version":"0.1.0","mode":"enforce","generation":1,...}}
//! ```
//!
//! This crate holds the one definition of each message ([`proto`]), the bounded line
//! codec both ends use ([`codec`]) and a blocking client ([`client`]). Pure apart from the
//! client's socket; `forbid(unsafe_code)`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod codec;
pub mod proto;
pub mod text;

pub use client::{Client, ClientError};
pub use codec::{parse_hello, parse_request, LineError, LineReader};
pub use proto::*;

/// The protocol's name in the handshake.
pub const PROTO: &str = "sekisho-control";
/// The protocol version this crate speaks.
pub const VERSION: u32 = 1;
/// The longest request line accepted, in bytes (newline excluded).
pub const MAX_LINE: usize = 1 << 20;
/// The largest policy text `check` and `reload` accept, in bytes (it travels in one line,
/// escaped).
pub const MAX_POLICY_TEXT: usize = 512 * 1024;
/// The largest reply line the client reads, in bytes.
pub const MAX_REPLY: usize = 16 << 20;
/// The most flows one `flows` reply lists.
pub const MAX_FLOWS: u32 = 10_000;
/// How many flows `flows` lists by default.
pub const DEFAULT_FLOWS: u32 = 100;
/// The most events or history entries one reply lists.
pub const MAX_EVENTS: u32 = 1_000;
/// The longest `reload --confirm` window, in seconds.
pub const MAX_CONFIRM_S: u32 = 3_600;
