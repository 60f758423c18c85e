//! Bytes per flow at 1 M flows: resident memory of a table pre-sized for 1 M flows,
//! filled with 1 M established TCP flows, divided by 1 M.
//! `cargo bench -p sekisho-flow --bench memory` (Linux: reads /proc/self/statm).

use std::net::{IpAddr, Ipv6Addr};

use sekisho_flow::tcp::Segment;
use sekisho_flow::{tcp_flags::*, CachedDecision, FlowEntry, FlowKey, FlowTable, NewFlow, Socket, Timeouts};

const FLOWS: usize = 1_000_000;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("statm field 2");
    pages * 4096
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let before = resident_bytes();
    // Eight origins (four ports), as in the lab; flows spread evenly over their shares.
    let t = FlowTable::new(FLOWS, 8, Timeouts::default());
    let p = t.pin();
    for n in 0..FLOWS as u32 {
        // IPv6 keys: the largest address family, so this is the worst case.
        let a = Socket {
            addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x30, 0, 0, 0, (n >> 16) as u16, n as u16)),
            port: 40000,
        };
        let b = Socket { addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x40, 0, 0, 0, 0, 10)), port: 443 };
        let (k, sender) = FlowKey::new(2, 0, 6, a, b);
        let decision = CachedDecision { verdict: 1, generation: 1 };
        let seg = |flags, seq, ack| Segment { flags, seq, ack, window: 65535, wscale: None, len: 0 };
        let syn = seg(SYN, 1000, 0);
        let f = NewFlow {
            protocol: 6,
            initiator: sender,
            origin: (n % 8) as u16,
            share: (n / 8 % 8) as u8,
            class: 0,
            decision,
            syn: Some(&syn),
        };
        let e = p.insert(k, FlowEntry::new(0, f), 0).expect("room for every flow");
        e.observe(0, false, 60, Some(&seg(SYN | ACK, 5000, 1001)));
        e.observe(0, true, 52, Some(&seg(ACK, 1001, 5001)));
        assert_eq!(e.state(), sekisho_flow::FlowState::Established);
    }
    drop(p);
    let after = resident_bytes();
    assert_eq!(t.stats().entries, FLOWS);
    let per_flow = (after - before) as f64 / FLOWS as f64;
    println!(
        "flow_table/bytes_per_flow: {per_flow:.1} bytes ({} flows, {:.1} MiB resident)",
        FLOWS,
        (after - before) as f64 / 1048576.0
    );
}
