//! `Policy::decide` on the lab policy grown to 20 rules, for each kind of outcome.
//! `cargo bench -p sekisho-policy`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sekisho_policy::{load_str, Connection, Timestamp};

const LAB: &str = include_str!("../../../configs/lab.toml");

fn bench(c: &mut Criterion) {
    let mut text = LAB.to_owned();
    for i in 0..19 {
        text += &format!(
            "[[rule]]\nname = \"extra-{i}\"\nfrom = \"198.18.50.{}\"\nto = \"198.18.40.{}\"\nservice = \"https\"\n",
            i + 1,
            i + 100
        );
    }
    let p = load_str(&text, "bench").expect("lab + 19 rules loads");
    assert_eq!(p.rules().len(), 20);
    let cases = [
        ("path_leg", "203.0.113.7", "198.18.40.10", 25),
        ("exception", "198.18.10.5", "198.18.20.30", 22),
        ("deny_unsanitized", "198.18.20.1", "203.0.113.7", 443),
        ("no_match_scans_all_rules", "198.18.50.60", "198.18.40.10", 443),
        ("rule", "198.18.50.3", "198.18.40.10", 22),
        ("ipv6_deny", "2001:db8:20::5", "2001:db8:30::6", 443),
        ("intra_zone", "198.18.20.1", "198.18.20.2", 445),
    ];
    let now = Timestamp::from_secs(1_795_316_400);
    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(1));
    for (name, a, b, port) in cases {
        let conn = Connection {
            protocol: 6,
            initiator: a.parse().expect("address"),
            responder: b.parse().expect("address"),
            responder_port: port,
        };
        g.bench_function(name, |bench| bench.iter(|| p.decide(black_box(&conn), now)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
