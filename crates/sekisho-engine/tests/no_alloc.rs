//! The per-packet path allocates nothing: a counting global allocator watches
//! `Engine::process` for established flows (and for common drops).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use sekisho_engine::Action;
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

#[test]
fn established_flows_and_drops_allocate_nothing() {
    let e = engine();
    let (c, s) = (("203.0.113.7", 41000), ("198.18.40.10", 25));
    let at = inside("internet");
    let back = outside("internet");
    let frames = [
        (at, tcp(c.0, c.1, s.0, s.1, SYN, b"")),
        (back, tcp(s.0, s.1, c.0, c.1, SYN | ACK, b"")),
        (at, tcp(c.0, c.1, s.0, s.1, ACK, b"")),
        (back, tcp(s.0, s.1, c.0, c.1, ACK | PSH, b"220 relay ESMTP\r\n")),
    ];
    for (ingress, f) in &frames {
        assert_eq!(e.process(NOW, *ingress, f).action, Action::Forward);
    }
    let data_out = tcp(c.0, c.1, s.0, s.1, ACK | PSH, &[b'x'; 1400]);
    let data_back = tcp(s.0, s.1, c.0, c.1, ACK, b"");
    let denied = tcp("198.18.20.5", 1, "203.0.113.9", 443, SYN, b"");
    let mid_stream = tcp("198.18.20.5", 2, "198.18.20.6", 443, ACK, b"");
    // Warm up thread-local state in the map's reclamation and the policy's swap.
    for _ in 0..1000 {
        e.process(NOW, at, &data_out);
    }
    let n = allocations_during(|| {
        for i in 0..20_000u64 {
            let now = sekisho_policy::Timestamp(NOW.0 + i);
            assert_eq!(e.process(now, at, &data_out).action, Action::Forward);
            assert_eq!(e.process(now, back, &data_back).action, Action::Forward);
            assert_eq!(e.process(now, inside("lgwan"), &denied).action, Action::Drop);
            assert_eq!(e.process(now, inside("lgwan"), &mid_stream).action, Action::Drop);
        }
    });
    assert_eq!(n, 0, "allocations on the per-packet path");
}
