//! Opens N new flows along the mail path through `Engine::process` (a SYN each, from a
//! different internet source and port, as the `new_flow_syn` benchmark does): a fixed
//! workload for instruction counts of a flow's setup.
//!
//! ```sh
//! cargo build --release -p sekisho-engine --example new_flow_loop
//! valgrind --tool=callgrind target/release/examples/new_flow_loop 100000
//! valgrind --tool=callgrind target/release/examples/new_flow_loop 200000
//! # instructions per new flow = (second total - first total) / 100000
//! ```

#[path = "../benches/support/mod.rs"]
mod support;

use sekisho_engine::Action;
use sekisho_testkit::flags::SYN;
use sekisho_testkit::tcp;
use support::{inside, lab_engine, NOW};

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let e = lab_engine(1 << 20);
    let at = inside(&e, "internet-uplink");
    let mut frame = tcp("203.0.113.7", 1, "198.18.40.10", 25, SYN, b"");
    let mut w = e.worker();
    for i in 0..n {
        // The low 16 bits of the source address and the source port: a new 5-tuple each time.
        frame[28..30].copy_from_slice(&((i >> 16) as u16).to_be_bytes());
        frame[34..36].copy_from_slice(&(i as u16).to_be_bytes());
        let v = w.process(NOW, at, std::hint::black_box(&frame));
        assert_eq!(v.action, Action::Forward);
    }
}
