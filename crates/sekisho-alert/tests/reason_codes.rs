//! Every deny reason code the engine produces has an event kind of its own (not the
//! catch-all), and allow codes raise no alert. Reads `Reason::CODES`, so a code added
//! to the policy crate without a kind here fails this test.

use sekisho_alert::EventKind;
use sekisho_policy::Reason;

/// Codes of coming work, mapped ahead of time (the path-inspection cut).
const NEW_DENY_CODES: [&str; 1] = ["deny:not-sanitized"];

#[test]
fn every_deny_code_has_its_own_kind() {
    let mut kinds = std::collections::HashMap::new();
    let codes: std::collections::BTreeSet<&str> =
        Reason::CODES.iter().copied().chain(NEW_DENY_CODES).collect();
    for code in codes {
        if code.starts_with("allow:") {
            assert_eq!(EventKind::for_reason(code), None, "{code} must raise no alert");
            continue;
        }
        assert!(code.starts_with("deny:"), "{code}: neither allow nor deny");
        let kind = EventKind::for_reason(code).unwrap();
        assert_ne!(kind, EventKind::OtherDeny, "{code} has no event kind: add one to sekisho-alert");
        assert_eq!(kind.reason_code(), Some(code));
        assert!(kind.is_traffic());
        if let Some(other) = kinds.insert(kind, code) {
            panic!("{code} and {other} share {kind:?}");
        }
    }
    // Every deny reason of the enum, by its code.
    for r in Reason::ALL_DENIES {
        assert_ne!(EventKind::for_reason(r.code()), Some(EventKind::OtherDeny), "{r:?}");
    }
    for code in ["allow:path:mail-textify/1", "allow:rule:mgmt-ssh", "allow:exception:juki"] {
        assert_eq!(EventKind::for_reason(code), None);
    }
}

#[test]
fn unknown_deny_codes_still_alert() {
    assert_eq!(EventKind::for_reason("deny:invented-tomorrow"), Some(EventKind::OtherDeny));
    assert_eq!(EventKind::OtherDeny.msgid(), "DENY");
}
