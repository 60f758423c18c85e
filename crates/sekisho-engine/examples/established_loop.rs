//! Sends N packets of one established flow through `Engine::process`: a fixed workload
//! for instruction counts, which (unlike times) repeat exactly on a noisy machine.
//!
//! ```sh
//! cargo build --release -p sekisho-engine --example established_loop
//! valgrind --tool=callgrind target/release/examples/established_loop 100000
//! valgrind --tool=callgrind target/release/examples/established_loop 200000
//! # instructions per packet = (second total - first total) / 100000
//! ```

use sekisho_engine::{Action, Engine, Ingress, Side};
use sekisho_policy::{PortId, Timestamp};
use sekisho_testkit::flags::*;
use sekisho_testkit::tcp;

fn main() {
    let lab = include_str!("../../../configs/lab.toml").replace("capacity = 1_000_000", "capacity = 1000");
    let e = Engine::new(sekisho_policy::load_str(&lab, "configs/lab.toml").expect("the lab policy loads"));
    let internet =
        e.loaded().policy.ports().iter().position(|p| p.name == "internet-uplink").expect("lab port");
    let at = Ingress { port: PortId(internet as u16), side: Side::Inside };
    let back = Ingress { side: Side::Outside, ..at };
    let now = Timestamp(1_795_316_400 * 1_000_000_000);
    let (c, s) = (("203.0.113.7", 41000), ("198.18.40.10", 25));
    e.process(now, at, &tcp(c.0, c.1, s.0, s.1, SYN, b""));
    e.process(now, back, &tcp(s.0, s.1, c.0, c.1, SYN | ACK, b""));
    e.process(now, at, &tcp(c.0, c.1, s.0, s.1, ACK, b""));
    e.process(now, back, &tcp(s.0, s.1, c.0, c.1, ACK | PSH, b"220 relay ESMTP\r\n"));
    let data = tcp(c.0, c.1, s.0, s.1, ACK | PSH, &[b'x'; 64]);
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    for _ in 0..n {
        let v = e.process(now, at, std::hint::black_box(&data));
        assert_eq!(v.action, Action::Forward);
    }
}
