//! Engine throughput on one core: established-flow hits and new-flow setup, through
//! `Engine::process` on pre-built frames. `cargo bench -p sekisho-engine`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sekisho_engine::{Action, Engine, Ingress, Side};
use sekisho_policy::{PortId, Timestamp};
use sekisho_testkit::flags::*;
use sekisho_testkit::tcp;

const NOW: Timestamp = Timestamp(1_795_316_400 * 1_000_000_000);

fn engine(capacity: usize) -> Engine {
    let text = include_str!("../../../configs/lab.toml")
        .replace("capacity = 1_000_000", &format!("capacity = {capacity}"));
    Engine::new(sekisho_policy::load_str(&text, "lab.toml").expect("configs/lab.toml loads"))
}

fn port(policy: &sekisho_policy::Policy, name: &str) -> PortId {
    PortId(policy.ports().iter().position(|p| p.name == name).expect("lab port") as u16)
}

fn established(c: &mut Criterion) {
    let e = engine(1 << 16);
    let at = Ingress { port: port(&e.loaded().policy, "internet-uplink"), side: Side::Inside };
    let back = Ingress { side: Side::Outside, ..at };
    let (cl, sv) = (("203.0.113.7", 41000), ("198.18.40.10", 25));
    e.process(NOW, at, &tcp(cl.0, cl.1, sv.0, sv.1, SYN, b""));
    e.process(NOW, back, &tcp(sv.0, sv.1, cl.0, cl.1, SYN | ACK, b""));
    e.process(NOW, at, &tcp(cl.0, cl.1, sv.0, sv.1, ACK, b""));
    e.process(NOW, back, &tcp(sv.0, sv.1, cl.0, cl.1, ACK | PSH, b"220 relay ESMTP\r\n"));
    let data = tcp(cl.0, cl.1, sv.0, sv.1, ACK | PSH, &[b'x'; 64]);
    assert_eq!(e.process(NOW, at, &data).action, Action::Forward);
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    g.bench_function("established_flow_packet", |b| {
        b.iter(|| e.process(NOW, at, std::hint::black_box(&data)))
    });
    g.finish();
}

/// Each iteration opens a new flow along the mail path (a path-leg decision, the most
/// common cross-zone case); a fresh engine replaces a full one outside the timed region.
fn new_flows(c: &mut Criterion) {
    const CAPACITY: usize = 1 << 20;
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    g.bench_function("new_flow_syn", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            let mut frame = tcp("203.0.113.7", 1, "198.18.40.10", 25, SYN, b"");
            while left > 0 {
                let e = engine(CAPACITY);
                let at = Ingress { port: port(&e.loaded().policy, "internet-uplink"), side: Side::Inside };
                let n = left.min(CAPACITY as u64 - 1);
                let start = Instant::now();
                for i in 0..n {
                    // Vary the source address (low 16 bits) and port: a new 5-tuple each time.
                    let i = i as u32;
                    frame[28..30].copy_from_slice(&((i >> 16) as u16).to_be_bytes());
                    frame[34..36].copy_from_slice(&(i as u16).to_be_bytes());
                    std::hint::black_box(e.process(NOW, at, &frame));
                }
                total += start.elapsed();
                left -= n;
            }
            total
        })
    });
    g.bench_function("denied_syn", |b| {
        let e = engine(1 << 16);
        let at = Ingress { port: port(&e.loaded().policy, "lgwan-uplink"), side: Side::Inside };
        let frame = tcp("198.18.20.5", 40000, "203.0.113.9", 443, SYN, b"");
        b.iter_batched_ref(|| frame.clone(), |f| e.process(NOW, at, f), BatchSize::SmallInput)
    });
    g.finish();
}

criterion_group!(benches, established, new_flows);
criterion_main!(benches);
