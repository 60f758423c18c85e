//! Feeds arbitrary bytes to both entry points of `sekisho-wire`: neither may panic, and
//! whatever parses must describe lengths within the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_wire::{parse_ethernet, parse_ip, Parsed, L3, L4};

fn check(r: Result<Parsed<'_>, sekisho_wire::ParseError>, len: usize) {
    if let Ok(Parsed { l3: L3::Ip(ip), .. }) = r {
        assert!(ip.total_len <= len);
        match ip.l4 {
            L4::Tcp(t) => assert!(t.payload.len() + 20 <= ip.total_len),
            L4::Udp(u) => assert!(u.payload.len() + 8 <= ip.total_len),
            _ => {}
        }
        let _ = ip.ports();
    }
}

fuzz_target!(|data: &[u8]| {
    check(parse_ethernet(data), data.len());
    check(parse_ip(data), data.len());
});
