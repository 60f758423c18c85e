//! Bytes per flow at 1 M flows: resident memory of a table pre-sized for 1 M flows,
//! filled with 1 M established TCP flows, divided by 1 M.
//! `cargo bench -p sekisho-flow --bench memory` (Linux: reads /proc/self/statm).

use std::net::{IpAddr, Ipv6Addr};

use sekisho_flow::{tcp_flags, CachedDecision, FlowEntry, FlowKey, FlowTable, Socket, Timeouts};

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
    let t = FlowTable::new(FLOWS, Timeouts::default());
    let p = t.pin();
    for n in 0..FLOWS as u32 {
        // IPv6 keys: the largest address family, so this is the worst case.
        let a = Socket {
            addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x30, 0, 0, 0, (n >> 16) as u16, n as u16)),
            port: 40000,
        };
        let b = Socket { addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x40, 0, 0, 0, 0, 10)), port: 443 };
        let (k, sender) = FlowKey::new(2, 0, 6, a, b);
        let d = CachedDecision { verdict: 1, generation: 1 };
        let e = p.insert(k, FlowEntry::new(0, 6, sender, d, u64::MAX), 0).expect("room for every flow");
        e.observe(0, sender.other(), 60, tcp_flags::SYN | tcp_flags::ACK);
        e.observe(0, sender, 52, tcp_flags::ACK);
    }
    drop(p);
    let after = resident_bytes();
    assert_eq!(t.stats().flows, FLOWS);
    let per_flow = (after - before) as f64 / FLOWS as f64;
    println!(
        "flow_table/bytes_per_flow: {per_flow:.1} bytes ({} flows, {:.1} MiB resident)",
        FLOWS,
        (after - before) as f64 / 1048576.0
    );
}
