//! Sends N packets of one established flow through `Engine::process`: a fixed workload
//! for instruction counts, which (unlike times) repeat exactly on a noisy machine.
//!
//! ```sh
//! cargo build --release -p sekisho-engine --example established_loop
//! valgrind --tool=callgrind target/release/examples/established_loop 100000
//! valgrind --tool=callgrind target/release/examples/established_loop 200000
//! # instructions per packet = (second total - first total) / 100000
//! ```

#[path = "../benches/support/mod.rs"]
mod support;

use sekisho_engine::Action;
use support::{established_mail_flow, lab_engine, NOW};

fn main() {
    let e = lab_engine(1000);
    let (at, data) = established_mail_flow(&e);
    let mut w = e.worker();
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    for _ in 0..n {
        let v = w.process(NOW, at, std::hint::black_box(&data));
        assert_eq!(v.action, Action::Forward);
    }
}
