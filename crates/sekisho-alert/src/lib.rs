//! sekisho's alerts: RFC 5424 syslog with structured data under `sekisho@32473` (or
//! RFC 3164 for old collectors) to unix, UDP and TCP (RFC 6587 octet counting)
//! collectors, flood control on the caller's side, and a local JSON-lines event file.
//!
//! The data plane calls [`Submitter::submit`] for every dropped frame: a keyed hash
//! and a few relaxed atomic operations (a token bucket per event kind and source
//! address), then, if the record passes, a push onto a bounded lock-free queue. It
//! never allocates, locks or waits. A dispatcher thread resolves names (zones, ports,
//! paths) in the policy generation of each record, decides the severity, writes the
//! event file, turns suppressed and dropped counts into summaries, and hands the
//! formatted messages to one sender thread per collector.
//!
//! ```no_run
//! use std::sync::Arc;
//! use sekisho_alert::{Alerter, AlerterConfig, Notice, Packet, Record, What};
//! use sekisho_policy::{load_str, Mode, PortId, PortSide, Timestamp};
//!
//! let policy = Arc::new(load_str("[[alert.target]]\nurl = \"udp://127.0.0.1:514\"\n", "x.toml").unwrap());
//! let alerter = Alerter::start(AlerterConfig::from_policy(&policy)).unwrap();
//! alerter.set_names(1, policy.clone());
//! let now = Timestamp::from_secs(1_795_655_730);
//! alerter.notice(Notice { at: now, mode: Mode::Enforce, generation: 1, uid: None,
//!     what: What::DaemonStart { version: "0.1.0".into() } });
//! let submitter = alerter.submitter(); // one per data-plane worker
//! let packet = Packet { proto: 6, src: "198.18.10.5".parse().unwrap(),
//!     dst: "203.0.113.9".parse().unwrap(), sport: 51000, dport: 443 };
//! if let Some(r) = Record::deny("deny:mynumber-isolation", now, Mode::Enforce, 1,
//!     (PortId(0), PortSide::Inside), Some(packet)) {
//!     submitter.submit(&r);
//! }
//! let counters = alerter.shutdown(std::time::Duration::from_secs(2));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod alerter;
mod event;
mod event_file;
pub mod format;
mod kind;
mod limiter;
mod record;
mod target;

pub use crate::alerter::{
    AlertCounters, AlertError, Alerter, AlerterConfig, Limits, Submitted, Submitter, TargetCounters,
};
pub use crate::event::{NameSource, PARAM_NAMES};
pub use crate::kind::EventKind;
pub use crate::record::{Matched, Notice, Packet, Record, What};
pub use sekisho_policy::{AlertTarget, Facility, Format, Severity, TargetUrl};
