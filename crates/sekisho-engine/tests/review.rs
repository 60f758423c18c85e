//! `Engine::review` (what a candidate policy would cut) and `Engine::kill_flows`.

mod common;

use common::*;
use sekisho_engine::{Action, Now};
use sekisho_policy::Mode;
use sekisho_testkit::{flags, tcp};

/// Opens an RDP connection lgwan terminal → VDI host (two flows: one per port it
/// crosses) and a mail connection internet → relay (two flows).
fn open_flows(e: &sekisho_engine::Engine) {
    let rdp = tcp("198.18.20.5", 40000, "203.0.113.50", 3389, flags::SYN, b"");
    crossing(
        e,
        NOW,
        &rdp,
        &[
            (inside("lgwan"), "allow:path:screen-transfer/1"),
            (outside("internet"), "allow:path:screen-transfer/1"),
        ],
    );
    let mail = tcp("203.0.113.7", 40001, "198.18.40.10", 25, flags::SYN, b"");
    crossing(
        e,
        NOW,
        &mail,
        &[
            (inside("internet"), "allow:path:mail-textify/1"),
            (outside("sanitization"), "allow:path:mail-textify/1"),
        ],
    );
}

#[test]
fn a_candidate_without_the_screen_transfer_path_would_cut_its_flows_and_nothing_else() {
    let e = engine();
    open_flows(&e);
    let now = Now::at(NOW);
    let same = e.review(&policy(POLICY), now);
    assert_eq!((same.flows, same.cut), (4, 0));
    let start = POLICY.find("[[path]]\nname = \"screen-transfer\"").expect("the path");
    let end = POLICY.find("[[exception]]").expect("the exception");
    let without = policy(&format!("{}{}", &POLICY[..start], &POLICY[end..]));
    let r = e.review(&without, now);
    assert_eq!((r.flows, r.cut), (4, 2), "the RDP connection's two flows");
    assert_eq!(r.cut_by_code().collect::<Vec<_>>(), [("deny:unsanitized-crossing", 2)]);
    // A review changes nothing: the flows still pass under the policy in force.
    let ack = tcp("198.18.20.5", 40000, "203.0.113.50", 3389, flags::ACK, b"");
    let v = e.process(now, inside("lgwan"), &ack);
    assert_ne!(name(&e, &v), "deny:unsanitized-crossing");
    // Monitor mode cuts nothing; going back to enforce cuts what monitor let through.
    let monitor = without.with_mode(Mode::Monitor);
    assert_eq!(e.review(&monitor, now).cut, 0);
    e.reload(monitor).expect("same ports");
    let r = e.review(&without, now);
    assert_eq!((r.cut, r.by_reason[sekisho_policy::Reason::UnsanitizedCrossing.index()]), (2, 2));
}

#[test]
fn killed_tcp_flows_are_gone_and_their_next_segment_is_refused() {
    let e = engine();
    open_flows(&e);
    assert_eq!(e.kill_flows(|_, _, _| false), 0, "a selector that matches nothing kills nothing");
    let killed = e.kill_flows(|key, s, _| key.socket(s.initiator).addr.to_string() == "198.18.20.5");
    assert_eq!(killed, 2);
    let mut left = 0;
    e.for_each_flow(|_, _, _| left += 1);
    assert_eq!(left, 2, "the mail flows stay");
    let ack = tcp("198.18.20.5", 40000, "203.0.113.50", 3389, flags::ACK, b"");
    expect(&e, NOW, inside("lgwan"), &ack, Action::Drop, "deny:no-flow");
}
