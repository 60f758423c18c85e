//! What one `submit` costs on the data plane's side, under flood:
//!
//! ```sh
//! cargo run --release -p sekisho-alert --example submit_cost
//! ```
//!
//! 1. one (kind, source), from 1 and 2 threads: almost every call is suppressed
//!    (hash, a load, a `fetch_add`);
//! 2. distinct sources into a full queue: every call passes the bucket and fails the
//!    push (counted as `queue_dropped`);
//! 3. distinct sources while the dispatcher drains the queue to a UDP socket nobody
//!    reads.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use sekisho_alert::{AlertTarget, Alerter, AlerterConfig, Limits, Packet, Record, TargetUrl};
use sekisho_policy::{Mode, PortId, PortSide, Timestamp};

const N: u64 = 2_000_000;

fn record(src: IpAddr, at: u64) -> Record {
    let p =
        Packet { proto: 6, src, dst: IpAddr::V4(Ipv4Addr::new(198, 18, 20, 5)), sport: 40000, dport: 443 };
    Record::deny("deny:no-rule", Timestamp(at), Mode::Enforce, 1, (PortId(0), PortSide::Inside), Some(p))
        .expect("a deny code")
}

fn start(limits: Limits, targets: Vec<AlertTarget>) -> Alerter {
    let mut c = AlerterConfig::new(targets, None);
    c.limits = limits;
    Alerter::start(c).expect("alerter")
}

fn per_call(threads: u64, a: &Alerter, distinct: bool) -> Duration {
    let base = 1_795_655_730_000_000_000u64;
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let sub = a.submitter();
            s.spawn(move || {
                for i in 0..N / threads {
                    let n = i * threads + t;
                    let src = if distinct {
                        IpAddr::V4(Ipv4Addr::from(0xcb00_0000u32 | (n as u32 & 0x00ff_ffff)))
                    } else {
                        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 66))
                    };
                    black_box(sub.submit(&record(src, base + n * 1000)));
                }
            });
        }
    });
    started.elapsed() / N as u32
}

fn main() {
    for threads in [1, 2] {
        let a = start(Limits::default(), vec![]);
        let d = per_call(threads, &a, false);
        let c = a.shutdown(Duration::from_secs(1));
        println!(
            "same key, {threads} thread(s): {d:?} per submit ({} passed, {} suppressed)",
            c.passed, c.suppressed
        );
    }
    let full = Limits {
        queue_capacity: 1024,
        burst: u32::MAX,
        poll_interval: Duration::from_secs(60),
        ..Limits::default()
    };
    let a = start(full, vec![]);
    std::thread::sleep(Duration::from_millis(20));
    let d = per_call(1, &a, true);
    let c = a.counters();
    println!(
        "distinct keys, full queue: {d:?} per submit ({} passed, {} queue_dropped)",
        c.passed, c.queue_dropped
    );
    drop(a);
    let sink = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let url = TargetUrl::Udp(sink.local_addr().expect("addr"));
    let draining = Limits { slots_per_kind: 1 << 16, ..Limits::default() };
    let a = start(draining, vec![AlertTarget::new(url)]);
    let d = per_call(1, &a, true);
    let c = a.shutdown(Duration::from_secs(2));
    println!(
        "distinct sources, draining to UDP: {d:?} per submit ({} passed, {} suppressed, {} queue_dropped, {} sent)",
        c.passed, c.suppressed, c.queue_dropped, c.targets[0].sent
    );
}
