//! Engine throughput on one core: established-flow hits and new-flow setup, through
//! `Engine::process` on pre-built frames, and the cost of application inspection on its
//! own. `cargo bench -p sekisho-engine`.

mod support;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sekisho_engine::{Action, Engine};
use sekisho_testkit::flags::*;
use sekisho_testkit::{tcp, tls, TcpConn};
use support::{established_mail_flow, inside, lab_engine, sides, NOW};

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

/// The lab policy with an α' local-breakout service (its ClientHellos are checked) and a
/// leg to a sanitiser's port that names no application (nothing is checked).
fn inspection_engine() -> Engine {
    let text = include_str!("../../../configs/lab.toml")
        .replace("capacity = 1_000_000", "capacity = 1_048_576")
        + r#"
[[service]]
name = "cloud"
proto = "tcp"
ports = [443]
app = "tls"
sni_allow = ["portal.example.lg.jp", "*.example.com"]

[[service]]
name = "cloud-any"
proto = "tcp"
ports = [8443]

[[path]]
name = "alpha-prime"
method = "local-breakout"
  [[path.leg]]
  from = "zone:lgwan"
  to = "203.0.113.80"
  service = "cloud"

[[path]]
name = "plain-tcp"
method = "file-sanitize"
  [[path.leg]]
  from = "zone:lgwan"
  to = "198.18.40.21"
  service = "cloud-any"
"#;
    Engine::new(sekisho_policy::load_str(&text, "bench.toml").expect("the bench policy loads"))
}

/// A ClientHello of `size` bytes or so naming portal.example.lg.jp (post-quantum sized):
/// its server name and a padding extension.
fn client_hello(size: usize) -> Vec<u8> {
    let name = tls::sni("portal.example.lg.jp");
    let pad = size.saturating_sub(60 + name.1.len());
    tls::client_hello(&[name, (21, vec![0; pad])])
}

/// A whole short TLS connection from an lgwan terminal: handshake, a 1,800-byte
/// ClientHello in two segments, the server's first record, the client's ACK — to `dst`
/// (inspected: the α' service; not: a service without an application).
fn tls_connection(dst: &str, port: u16, sport: u16) -> Vec<(bool, Vec<u8>)> {
    let mut c = TcpConn::new(("198.18.20.5", sport), (dst, port));
    let hello = client_hello(1800);
    let (a, b) = hello.split_at(1200);
    vec![
        (true, c.syn()),
        (false, c.syn_ack()),
        (true, c.client(ACK, b"")),
        (true, c.client(ACK | PSH, a)),
        (true, c.client(ACK | PSH, b)),
        (false, c.server(ACK | PSH, &[0x16, 3, 3, 0, 0x7a, 2, 0, 0, 0x76, 3, 3])),
        (true, c.client(ACK, b"")),
    ]
}

/// The cost of inspection on its own: a whole short TLS connection with and without its
/// ClientHello checked (the difference is what inspection adds per connection), and the
/// per-packet cost of a flow while it is inspected (the text leg of the mail path, which
/// is followed to its end: a text line and its acknowledgement).
fn inspection(c: &mut Criterion) {
    let mut g = c.benchmark_group("inspection");
    for (name, dst, port) in
        [("tls_connection_checked", "203.0.113.80", 443), ("tls_connection_unchecked", "198.18.40.21", 8443)]
    {
        g.throughput(Throughput::Elements(7));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    // A fresh engine for every 50 000 connections: their ports stay unique.
                    let n = left.min(50_000);
                    let e = inspection_engine();
                    let mut w = e.worker();
                    let (lg_in, lg_out) = sides(&e, "lgwan-uplink");
                    let conns: Vec<_> = (0..n).map(|i| tls_connection(dst, port, 1024 + i as u16)).collect();
                    let start = Instant::now();
                    for conn in &conns {
                        for (client, f) in conn {
                            std::hint::black_box(w.process(NOW, if *client { lg_in } else { lg_out }, f));
                        }
                    }
                    total += start.elapsed();
                    left -= n;
                }
                total
            })
        });
    }
    g.throughput(Throughput::Elements(2));
    g.bench_function("text_leg_line_and_ack", |b| {
        b.iter_custom(|iters| {
            let e = inspection_engine();
            let mut w = e.worker();
            let (at, back) = sides(&e, "sanitization-uplink");
            let mut c = TcpConn::new(("198.18.40.10", 42000), ("198.18.20.25", 25));
            let mut setup = vec![(at, c.syn()), (back, c.syn_ack()), (at, c.client(ACK, b""))];
            setup.push((back, c.server(ACK | PSH, b"220 lgwan ESMTP\r\n")));
            setup.push((
                at,
                c.client(ACK | PSH, b"EHLO relay\r\nMAIL FROM:<r@sz>\r\nRCPT TO:<s@lg>\r\nDATA\r\n"),
            ));
            setup.push((back, c.server(ACK | PSH, b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")));
            setup.push((at, c.client(ACK | PSH, b"Subject: r\r\nContent-Type: text/plain\r\n\r\n")));
            for (side, f) in &setup {
                assert_eq!(w.process(NOW, *side, f).action, Action::Forward);
            }
            let line = [&[b'a'; 62][..], b"\r\n"].concat();
            let pairs: Vec<_> =
                (0..iters).map(|_| (c.client(ACK | PSH, &line), c.server(ACK, b""))).collect();
            let start = Instant::now();
            for (text, ack) in &pairs {
                std::hint::black_box(w.process(NOW, at, text));
                std::hint::black_box(w.process(NOW, back, ack));
            }
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, established, new_flows, inspection);
criterion_main!(benches);
