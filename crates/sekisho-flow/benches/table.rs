//! Flow-table lookups of established flows, from 1 and from 2 threads at once.
//! `cargo bench -p sekisho-flow --bench table`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sekisho_flow::{CachedDecision, Endpoint, FlowEntry, FlowKey, FlowTable, NewFlow, Socket, Timeouts};

const FLOWS: u32 = 100_000;

fn key(n: u32) -> FlowKey {
    let a = Socket { addr: IpAddr::V4(Ipv4Addr::from(0xCB00_7100 + (n >> 16))), port: n as u16 };
    let b = Socket { addr: IpAddr::V4(Ipv4Addr::new(198, 18, 40, 10)), port: 25 };
    FlowKey::new(2, 0, 17, a, b).0
}

fn filled() -> (FlowTable, Vec<FlowKey>) {
    let t = FlowTable::new(FLOWS as usize * 2, 1, Timeouts::default());
    let keys: Vec<FlowKey> = (0..FLOWS).map(key).collect();
    {
        let p = t.pin();
        for k in &keys {
            let decision = CachedDecision { verdict: 1, generation: 1 };
            let f = NewFlow {
                protocol: 17,
                initiator: Endpoint::Lo,
                origin: 0,
                share: 0,
                class: 0,
                decision,
                syn: None,
            };
            p.insert(*k, FlowEntry::new(0, f), 0).expect("room");
        }
    }
    (t, keys)
}

/// Looks up `n` keys (a stride through the set, so caches see a realistic mix) and
/// touches each entry the way the engine does.
fn lookups(t: &FlowTable, keys: &[FlowKey], n: u64, offset: usize) {
    let p = t.pin();
    let mut i = offset;
    for _ in 0..n {
        i = (i + 7919) % keys.len();
        let e = p.get(&keys[i], 1).expect("present");
        e.observe(1, true, 100, None);
    }
}

fn bench(c: &mut Criterion) {
    let (t, keys) = filled();
    let mut g = c.benchmark_group("flow_table");
    g.throughput(Throughput::Elements(1));
    g.bench_function("lookup_1_thread", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            lookups(&t, &keys, iters, 0);
            start.elapsed()
        })
    });
    // Two threads each do `iters` lookups; the reported time is the wall time, so the
    // throughput shown is per thread (the aggregate is twice it when they scale).
    g.bench_function("lookup_2_threads_each", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for th in 0..2 {
                    let (t, keys) = (&t, &keys);
                    s.spawn(move || lookups(t, keys, iters, th * 50_000));
                }
            });
            let elapsed = start.elapsed();
            elapsed.max(Duration::from_nanos(1))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
