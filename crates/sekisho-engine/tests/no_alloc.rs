//! The per-packet path allocates nothing: a counting global allocator watches
//! `Engine::process` for established flows (and for common drops).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use sekisho_engine::{Action, Now};
use sekisho_policy::Timestamp;
use sekisho_testkit::flags::*;
use sekisho_testkit::*;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the thread-locals
// are const-initialised `Cell`s, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// Opens 203.0.113.7:41000 → the relay (mail path leg 1) and takes it through the SMTP
/// dialogue until its data, so that its inspection is done.
fn mail_flow_past_inspection(e: &sekisho_engine::Engine, t: Now) -> TcpConn {
    let at = inside("internet");
    let back = outside("internet");
    let mut c = TcpConn::new(("203.0.113.7", 41000), ("198.18.40.10", 25));
    let mut frames = vec![(at, c.syn()), (back, c.syn_ack()), (at, c.client(ACK, b""))];
    for (client, line) in [
        (false, &b"220 relay ESMTP\r\n"[..]),
        (true, b"EHLO sender.example\r\n"),
        (false, b"250 relay\r\n"),
        (true, b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<staff@lgwan.example>\r\nDATA\r\n"),
        (false, b"250 ok\r\n250 ok\r\n354 go ahead\r\n"),
    ] {
        if client {
            frames.push((at, c.client(ACK | PSH, line)));
        } else {
            frames.push((back, c.server(ACK | PSH, line)));
        }
    }
    frames.push((at, c.client(ACK, b"")));
    for (ingress, f) in &frames {
        assert_eq!(e.process(t, *ingress, f).action, Action::Forward);
    }
    c
}

#[test]
fn established_flows_related_packets_and_drops_allocate_nothing() {
    let e = engine();
    let at = inside("internet");
    let back = outside("internet");
    let t = |i: u64| Now::at(Timestamp(NOW.0 + i));
    let mut c = mail_flow_past_inspection(&e, t(0));
    // The server's acknowledgement first: a repeat of acknowledged bytes from the checked
    // beginning of the stream would be refused (`repeats_checked_bytes`).
    let data_back = c.server(ACK, b"");
    let data_out = c.client(ACK | PSH, &[b'x'; 1400]);
    assert_eq!(e.process(t(0), at, &data_out).action, Action::Forward);
    assert_eq!(e.process(t(0), back, &data_back).action, Action::Forward);
    assert_eq!(e.inspection_stats().active, 0, "the mail flow's inspection is over: its state is gone");
    // A datagram in two fragments (management to a sanitiser: a service that names no
    // application, as a datagram under inspection is never fragmented), and a
    // port-unreachable error about it from the server itself.
    let (l, d) = ("198.18.50.7".parse().unwrap(), "198.18.40.53".parse().unwrap());
    let dns = udp_datagram(5353, 53, &dns_query(77, "a-name.of.some.length.lgwan.example", 1));
    let first = eth(
        0x0800,
        &ipv4(l, d, 17, V4Opts { id: 77, more_fragments: true, ..V4Opts::default() }, &dns[..40]),
    );
    let later =
        eth(0x0800, &ipv4(l, d, 17, V4Opts { id: 77, frag_offset: 5, ..V4Opts::default() }, &dns[40..]));
    assert_eq!(e.process(t(0), inside("management"), &first).action, Action::Forward);
    let quoted = ipv4(l, d, 17, V4Opts { id: 77, more_fragments: true, ..V4Opts::default() }, &dns[..40]);
    let unreachable = icmp("198.18.40.53", "198.18.50.7", 3, 3, [0; 4], &quoted[..28], 64);
    let denied = tcp("198.18.20.5", 1, "203.0.113.9", 443, SYN, b"");
    let mid_stream = tcp("198.18.20.5", 2, "198.18.20.6", 443, ACK, b"");
    let third_party = icmp("198.18.40.99", "198.18.50.7", 3, 3, [0; 4], &quoted[..28], 64);
    let mapped = udp("::ffff:198.18.10.5", 1, "::ffff:198.18.10.1", 2, b"x");
    let tagged = vlan(&denied, 0x8100, 7);
    let nd = icmp("fe80::5", "ff02::1:ff00:1", 135, 0, [0; 4], &[0; 16], 255);
    let mut w = e.worker();
    // Warm up thread-local state in the map's reclamation and the policy's swap.
    for _ in 0..1000 {
        e.process(t(0), at, &data_out);
        w.process(t(0), at, &data_out);
    }
    let n = allocations_during(|| {
        for i in 0..20_000u64 {
            let now = t(i);
            assert_eq!(e.process(now, at, &data_out).action, Action::Forward);
            assert_eq!(w.process(now, at, &data_out).action, Action::Forward);
            assert_eq!(e.process(now, back, &data_back).action, Action::Forward);
            assert_eq!(e.process(now, inside("management"), &later).action, Action::Forward);
            assert_eq!(e.process(now, outside("management"), &unreachable).action, Action::Forward);
            assert_eq!(e.process(now, inside("lgwan"), &nd).action, Action::Forward);
            for drop in [&denied, &mid_stream, &tagged, &mapped] {
                assert_eq!(e.process(now, inside("lgwan"), drop).action, Action::Drop);
            }
            assert_eq!(e.process(now, outside("management"), &third_party).action, Action::Drop);
        }
    });
    assert_eq!(n, 0, "allocations on the per-packet path");
}

/// While a flow is inspected, its packets allocate nothing either (the state is made once,
/// at its first data): the text leg of the mail path, message text line after line.
#[test]
fn an_inspected_text_leg_allocates_nothing_per_packet() {
    let e = engine();
    let (at, back) = (inside("sanitization"), outside("sanitization"));
    let t = Now::at(NOW);
    let mut c = TcpConn::new(("198.18.40.10", 42000), ("198.18.20.25", 25));
    let mut frames = vec![(at, c.syn()), (back, c.syn_ack()), (at, c.client(ACK, b""))];
    frames.push((back, c.server(ACK | PSH, b"220 lgwan ESMTP\r\n")));
    frames.push((at, c.client(ACK | PSH, b"EHLO relay\r\nMAIL FROM:<r@sz>\r\nRCPT TO:<s@lg>\r\nDATA\r\n")));
    frames.push((back, c.server(ACK | PSH, b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")));
    frames.push((at, c.client(ACK | PSH, b"Subject: report\r\nContent-Type: text/plain\r\n\r\n")));
    for (ingress, f) in &frames {
        let v = e.process(t, *ingress, f);
        assert_eq!(v.action, Action::Forward, "{:?}", v.reason);
    }
    let lines: Vec<(Vec<u8>, Vec<u8>)> = (0..22_000)
        .map(|_| {
            let text = c.client(ACK | PSH, b"A line of sanitised text for LGWAN staff.\r\n");
            (text, c.server(ACK, b""))
        })
        .collect();
    let mut w = e.worker();
    for (text, ack) in &lines[..2000] {
        assert_eq!(w.process(t, at, text).action, Action::Forward);
        assert_eq!(w.process(t, back, ack).action, Action::Forward);
    }
    let n = allocations_during(|| {
        for (text, ack) in &lines[2000..] {
            assert_eq!(w.process(t, at, text).action, Action::Forward);
            assert_eq!(w.process(t, back, ack).action, Action::Forward);
        }
    });
    assert_eq!(n, 0, "allocations while inspecting");
    assert_eq!(e.inspection_stats().active, 1, "the text leg is followed to its end");
}
