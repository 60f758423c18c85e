//! Feeds arbitrary application bytes to the inspected legs of the lab policy (plus an α'
//! breakout by server name and an HTTP proxy leg): the input picks a leg, the connection is
//! opened with a real handshake, then each segment's direction and bytes come from the
//! input, in order, with sequence numbers and checksums that fit — so the validators, the
//! stream reassembly and the mail text check see what an attacker's endpoint could send.
//! No panic; a segment is forwarded only with an allow reason; once a connection is cut
//! for its content, nothing more of it is forwarded.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sekisho_engine::{Action, Engine, Ingress, Now, Side};
use sekisho_policy::{PortId, Timestamp};
use sekisho_testkit::flags::{ACK, PSH};
use sekisho_testkit::TcpConn;

/// (client, server, server port, the port the client's frames enter on its inside)
const LEGS: [(&str, &str, u16, &str); 7] = [
    ("203.0.113.7", "198.18.40.10", 25, "internet-uplink"),
    ("198.18.40.10", "198.18.20.25", 25, "sanitization-uplink"),
    ("198.18.20.5", "198.18.40.20", 443, "lgwan-uplink"),
    ("198.18.20.5", "203.0.113.50", 3389, "lgwan-uplink"),
    ("198.18.10.5", "198.18.20.30", 22, "mynumber-uplink"),
    ("198.18.20.5", "203.0.113.80", 443, "lgwan-uplink"),
    ("198.18.20.5", "198.18.40.30", 8080, "lgwan-uplink"),
];

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let text = include_str!("../../configs/lab.toml").replace("capacity = 1_000_000", "capacity = 4096")
            + &sekisho_testkit::breakout_and_proxy("http");
        Engine::new(sekisho_policy::load_str(&text, "lab.toml").expect("the lab policy loads"))
    })
}

fuzz_target!(|data: &[u8]| {
    // [leg, then segments: [direction bit | length / 8, the bytes...]...]
    let Some((leg, mut rest)) = data.split_first() else { return };
    let e = engine();
    let (client, server, dport, port_name) = LEGS[usize::from(*leg) % LEGS.len()];
    let port = e.loaded().policy.ports().iter().position(|p| p.name == port_name).expect("a lab port");
    let inside = Ingress { port: PortId(port as u16), side: Side::Inside };
    let outside = Ingress { side: Side::Outside, ..inside };
    // One engine for every input: a fresh source port each time keeps connections apart
    // (the flow table and the inspection table stay bounded and recycle).
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let sport = 1024 + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 60000;
    let now = Now::at(Timestamp(1_795_316_400_000_000_000));
    let mut c = TcpConn::new((client, sport), (server, dport));
    for (at, f) in [(inside, c.syn()), (outside, c.syn_ack()), (inside, c.client(ACK, b""))] {
        if e.process(now, at, &f).action != Action::Forward {
            return; // a table full of earlier inputs' flows
        }
    }
    let mut cut = false;
    while let [sel, tail @ ..] = rest {
        let n = (usize::from(sel & 0x7f) * 8).min(tail.len());
        let (payload, next) = tail.split_at(n);
        rest = next;
        let from_client = sel & 0x80 == 0;
        let (frame, at) = if from_client {
            (c.client(ACK | PSH, payload), inside)
        } else {
            (c.server(ACK | PSH, payload), outside)
        };
        let v = e.process(now, at, &frame);
        let reason = e.loaded().policy.reason_name(v.reason).to_string();
        if v.action == Action::Forward {
            assert!(reason.starts_with("allow:"), "forwarded with {reason}");
            assert!(!cut, "forwarded ({reason}) after the connection was cut");
        } else if reason == "deny:app-mismatch" || reason == "deny:not-sanitized" {
            cut = true;
        }
    }
});
