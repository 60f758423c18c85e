//! Engine throughput on one core: established-flow hits and new-flow setup, through
//! `Engine::process` on pre-built frames. `cargo bench -p sekisho-engine`.

mod support;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sekisho_testkit::flags::*;
use sekisho_testkit::tcp;
use support::{established_mail_flow, inside, lab_engine, NOW};

fn established(c: &mut Criterion) {
    let e = lab_engine(1 << 16);
    let (at, data) = established_mail_flow(&e);
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    let mut w = e.worker();
    g.bench_function("established_flow_packet", |b| {
        b.iter(|| w.process(NOW, at, std::hint::black_box(&data)))
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
                let e = lab_engine(CAPACITY);
                let mut w = e.worker();
                let at = inside(&e, "internet-uplink");
                let n = left.min(CAPACITY as u64 - 1);
                let start = Instant::now();
                for i in 0..n {
                    // Vary the source address (low 16 bits) and port: a new 5-tuple each time.
                    let i = i as u32;
                    frame[28..30].copy_from_slice(&((i >> 16) as u16).to_be_bytes());
                    frame[34..36].copy_from_slice(&(i as u16).to_be_bytes());
                    std::hint::black_box(w.process(NOW, at, &frame));
                }
                total += start.elapsed();
                left -= n;
            }
            total
        })
    });
    g.bench_function("denied_syn", |b| {
        let e = lab_engine(1 << 16);
        let mut w = e.worker();
        let at = inside(&e, "lgwan-uplink");
        let frame = tcp("198.18.20.5", 40000, "203.0.113.9", 443, SYN, b"");
        b.iter_batched_ref(|| frame.clone(), |f| w.process(NOW, at, f), BatchSize::SmallInput)
    });
    g.finish();
}

criterion_group!(benches, established, new_flows);
criterion_main!(benches);
