//! Flood control: 100 000 alerts of one (kind, source) become a bounded number of
//! messages, and the individually sent ones plus the `count` of the summaries add up
//! to exactly 100 000 — from one thread and from two at once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sekisho_alert::{AlertTarget, Submitted};
use sekisho_policy::Timestamp;

const N: u64 = 100_000;

/// Send `N` records of one key from `threads` threads, with the record time advancing
/// 30 µs per record (three simulated seconds), and account for every one at the collector.
fn flood(threads: u64) {
    let c = TcpCollector::new();
    let a = start(vec![AlertTarget::new(c.url())]);
    let base = now().as_nanos();
    let started = Instant::now();
    let results: Vec<(u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let sub = a.submitter();
                s.spawn(move || {
                    let (mut queued, mut suppressed) = (0, 0);
                    for i in 0..N / threads {
                        let at = Timestamp(base + (i * threads + t) * 30_000);
                        match sub.submit(&record("deny:no-rule", "203.0.113.66", "198.18.20.5", at)) {
                            Submitted::Queued => queued += 1,
                            Submitted::Suppressed => suppressed += 1,
                            other => panic!("{other:?}"),
                        }
                    }
                    (queued, suppressed)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();
    let queued: u64 = results.iter().map(|r| r.0).sum();
    let suppressed: u64 = results.iter().map(|r| r.1).sum();
    eprintln!(
        "{threads} thread(s): {N} submits in {elapsed:?} ({:?} each); {queued} passed",
        elapsed / N as u32
    );
    assert_eq!(queued + suppressed, N);

    let counters = a.shutdown(Duration::from_secs(5));
    assert_eq!(counters.passed, queued);
    assert_eq!(counters.suppressed, suppressed);
    assert_eq!(counters.queue_dropped, 0);
    let frames = c.wait_for(counters.targets[0].sent as usize, Duration::from_secs(5));
    assert_eq!(frames.len() as u64, counters.targets[0].sent);

    let (mut single, mut summarised, mut summaries) = (0u64, 0u64, 0u64);
    for f in &frames {
        let m = parse5424(f);
        match m.msgid.as_deref() {
            Some("NO_RULE") => single += 1,
            Some("SUPPRESSED") => {
                summaries += 1;
                assert_eq!(sd(&m, "reason"), Some("deny:no-rule"));
                assert_eq!(sd(&m, "src"), Some("203.0.113.66"), "one source: it is named");
                assert_eq!(sd(&m, "src_zone"), Some("internet"));
                assert!(m.msg.contains("similar alerts suppressed in the last"), "{}", m.msg);
                summarised += sd(&m, "count").unwrap().parse::<u64>().unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    eprintln!("{single} sent one by one, {summaries} summaries covering {summarised}");
    assert_eq!(single, queued);
    assert_eq!(single + summarised, N, "every alert is accounted for exactly once");
    // Three simulated seconds at one per second after a burst of 5: 5 + 2 (the third
    // second ends just before its token), and at most one summary per summary
    // interval of the run, plus the final one.
    assert_eq!(single, 5 + 2);
    assert!(summaries >= 1 && summaries <= 2 + elapsed.as_millis() as u64 / 200, "{summaries}");
}

#[test]
fn one_thread_flood_is_accounted_exactly() {
    flood(1);
}

#[test]
fn two_thread_flood_is_accounted_exactly() {
    flood(2);
}

#[test]
fn many_sources_give_few_summaries_and_exact_counts() {
    let c = TcpCollector::new();
    let mut cfg = config(vec![sekisho_alert::AlertTarget::new(c.url())]);
    cfg.limits.slots_per_kind = 1 << 14;
    cfg.limits.queue_capacity = 1 << 16;
    cfg.limits.summary_interval = Duration::from_secs(3600); // only the final round
    let a = sekisho_alert::Alerter::start(cfg).unwrap();
    a.set_names(1, policy());
    let at = now();
    let (sources, each) = (1000u32, 20u64);
    for i in 0..sources {
        for _ in 0..each {
            a.submit(&record("deny:no-rule", &internet_src(i), "198.18.20.5", at));
        }
    }
    let counters = a.shutdown(Duration::from_secs(5));
    assert_eq!(counters.queue_dropped, 0);
    let frames = c.wait_for(counters.targets[0].sent as usize, Duration::from_secs(5));
    let (mut single, mut summarised, mut summaries, mut named) = (0u64, 0u64, 0u64, 0u64);
    for f in &frames {
        let m = parse5424(f);
        match m.msgid.as_deref() {
            Some("NO_RULE") => single += 1,
            Some("SUPPRESSED") => {
                summaries += 1;
                named += u64::from(sd(&m, "src").is_some());
                summarised += sd(&m, "count").unwrap().parse::<u64>().unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    eprintln!("{single} one by one, {summaries} summaries ({named} naming a source) covering {summarised}");
    assert_eq!(single + summarised, u64::from(sources) * each);
    assert!(summaries <= 17 && named <= 16, "{summaries} summaries, {named} named");
    assert_eq!(summaries, named + 1);
}
