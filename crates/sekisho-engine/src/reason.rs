//! Packing a [`Reason`] into the 32-bit verdict word a flow entry caches (beside the
//! policy generation, in one atomic word).

use sekisho_policy::{ExceptionId, PathId, Reason, RuleId};

/// Packs `reason` as `index << 24 | index << 8 | leg`. Leg numbers above 255 are clamped
/// (the validator refuses paths that long).
pub fn encode(reason: Reason) -> u32 {
    let (index, leg) = match reason {
        Reason::Path { path, leg } => (path.0, leg.min(255)),
        Reason::Exception(id) => (id.0, 0),
        Reason::Rule(id) => (id.0, 0),
        _ => (0, 0),
    };
    ((reason.index() as u32) << 24) | (u32::from(index) << 8) | u32::from(leg)
}

/// The inverse of [`encode`]. Words this module did not produce decode as
/// `deny:malformed`, so a corrupted cache can only ever deny.
pub fn decode(word: u32) -> Reason {
    let index = ((word >> 8) & 0xffff) as u16;
    let leg = (word & 0xff) as u16;
    match word >> 24 {
        0 => Reason::IntraZone,
        1 => Reason::Path { path: PathId(index), leg },
        2 => Reason::Exception(ExceptionId(index)),
        3 => Reason::Rule(RuleId(index)),
        4 => Reason::Link,
        5 => Reason::Related,
        6 => Reason::MynumberIsolation,
        7 => Reason::UnsanitizedCrossing,
        8 => Reason::NoRule,
        9 => Reason::SpoofedSource,
        10 => Reason::NoFlow,
        12 => Reason::Fragment,
        13 => Reason::Tunnel,
        14 => Reason::NonIp,
        15 => Reason::AppMismatch,
        16 => Reason::FlowTableFull,
        17 => Reason::Vlan,
        18 => Reason::BogonAddress,
        19 => Reason::LinkScope,
        20 => Reason::Misdirected,
        21 => Reason::IcmpThirdParty,
        22 => Reason::OutOfWindow,
        23 => Reason::NotSanitized,
        24 => Reason::BlockedSource,
        _ => Reason::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_reason() {
        let all = [
            Reason::IntraZone,
            Reason::Path { path: PathId(3), leg: 2 },
            Reason::Exception(ExceptionId(65535)),
            Reason::Rule(RuleId(7)),
            Reason::Link,
            Reason::Related,
            Reason::MynumberIsolation,
            Reason::UnsanitizedCrossing,
            Reason::NoRule,
            Reason::SpoofedSource,
            Reason::NoFlow,
            Reason::Malformed,
            Reason::Fragment,
            Reason::Tunnel,
            Reason::NonIp,
            Reason::AppMismatch,
            Reason::FlowTableFull,
            Reason::Vlan,
            Reason::BogonAddress,
            Reason::LinkScope,
            Reason::Misdirected,
            Reason::IcmpThirdParty,
            Reason::OutOfWindow,
            Reason::NotSanitized,
            Reason::BlockedSource,
        ];
        assert_eq!(all.len(), Reason::CODES.len(), "every reason is listed here");
        for (i, r) in all.into_iter().enumerate() {
            assert_eq!(decode(encode(r)), r);
            assert_eq!(r.index(), i);
            assert!(r.code().starts_with(if r.allowed() { "allow:" } else { "deny:" }));
        }
        assert_eq!(decode(0xff00_0000), Reason::Malformed);
    }
}
