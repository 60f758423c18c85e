//! Application-protocol signatures: the first payload of a flow must look like the
//! service's declared `app`, or the flow is cut with `deny:app-mismatch`.
//!
//! These are deliberately small checks on the first bytes (the way a classifier like
//! nDPI starts), enough to stop a tunnel or a different protocol riding on an approved
//! port; they are not protocol validators.

use sekisho_flow::FlowEntry;
use sekisho_policy::{App, Reason};

/// The inspection word of a flow whose application has been checked (or needs none).
pub(crate) const CHECKED: u8 = 0;
/// The inspection word of a flow cut for good by a failed check.
pub(crate) const CUT: u8 = 0xff;

/// What the first payload of a flow says about its application protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Looks like the declared protocol.
    Match,
    /// Does not.
    Mismatch,
}

fn starts_with_ci(payload: &[u8], prefix: &[u8]) -> bool {
    payload.len() >= prefix.len() && payload[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn is_reply_code(payload: &[u8]) -> bool {
    matches!(payload, [a, b, c, ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit())
}

/// An HTTP/1.x request line starts with a method token and a space. `CONNECT` opens an
/// opaque tunnel, which is not HTTP any more: it does not match.
fn is_http_request(payload: &[u8]) -> bool {
    let token_len = payload.iter().take(16).take_while(|b| b.is_ascii_uppercase()).count();
    if !(3..=10).contains(&token_len) || payload.get(token_len) != Some(&b' ') {
        return false;
    }
    &payload[..token_len] != b"CONNECT"
}

fn is_tls_hello(payload: &[u8]) -> bool {
    match payload {
        // TLS record: handshake, version 3.x.
        [0x16, 0x03, minor, ..] => *minor <= 0x04,
        // SSLv2-compatible ClientHello: 2-byte length with the high bit, then type 1.
        [len_hi, _, 0x01, ..] => len_hi & 0x80 != 0,
        _ => false,
    }
}

fn is_dns_message(msg: &[u8], from_initiator: bool) -> bool {
    let Some(header) = msg.get(..12) else { return false };
    let qr = header[2] & 0x80 != 0;
    let opcode = (header[2] >> 3) & 0x0f;
    let qdcount = u16::from_be_bytes([header[4], header[5]]);
    qr != from_initiator && opcode <= 6 && qdcount <= 1
}

/// Checks the first payload of a flow, sent by the initiator when `from_initiator`,
/// against `app`. `tcp` tells the transport (DNS over TCP has a length prefix; RDP over
/// UDP has its own SYN datagram).
pub(crate) fn check(app: App, from_initiator: bool, tcp: bool, payload: &[u8]) -> Check {
    let ok = match app {
        App::Smtp if from_initiator => starts_with_ci(payload, b"EHLO") || starts_with_ci(payload, b"HELO"),
        App::Smtp => is_reply_code(payload),
        App::Ssh => payload.starts_with(b"SSH-"),
        App::Tls => from_initiator && is_tls_hello(payload),
        App::Http => from_initiator && is_http_request(payload),
        // X.224 Connection Request inside TPKT version 3.
        App::Rdp if tcp => from_initiator && payload.starts_with(&[0x03, 0x00]),
        // MS-RDPEUDP SYN: snSourceAck is -1.
        App::Rdp => from_initiator && payload.starts_with(&[0xff, 0xff, 0xff, 0xff]),
        App::Ica => payload.starts_with(b"\x7f\x7fICA\x00"),
        App::Vnc => !from_initiator && payload.starts_with(b"RFB "),
        App::Dns if tcp => payload.get(2..).is_some_and(|m| is_dns_message(m, from_initiator)),
        App::Dns => is_dns_message(payload, from_initiator),
        _ => true,
    };
    if ok {
        Check::Match
    } else {
        Check::Mismatch
    }
}

/// Stage 6: checks the first payload of a flow whose service declares an application. A
/// mismatch cuts the flow for good (no reload revives it).
pub(crate) fn inspect(
    entry: &FlowEntry,
    reason: Reason,
    from_initiator: bool,
    tcp: bool,
    payload: &[u8],
) -> Reason {
    let state = entry.inspect_state();
    if state == CHECKED || payload.is_empty() {
        return reason;
    }
    if state == CUT {
        return Reason::AppMismatch;
    }
    let app = from_u8(state);
    match check(app, from_initiator, tcp, payload) {
        Check::Match => {
            entry.set_inspect_state(CHECKED);
            reason
        }
        Check::Mismatch => {
            entry.set_inspect_state(CUT);
            Reason::AppMismatch
        }
    }
}

/// The applications whose first payload is checked, in the order of their inspection-word
/// code (code = index + 1; 0 means "checked").
const INSPECTED_APPS: [App; 8] =
    [App::Smtp, App::Rdp, App::Tls, App::Http, App::Ica, App::Ssh, App::Dns, App::Vnc];

/// The inspection-word code of `app` (1..=8), or [`CHECKED`] when it is not inspected.
pub(crate) fn to_u8(app: App) -> u8 {
    INSPECTED_APPS.iter().position(|a| *a == app).map_or(0, |i| i as u8 + 1)
}

/// The application whose code is `code` (`App::Any` for 0 or unknown codes).
pub(crate) fn from_u8(code: u8) -> App {
    usize::from(code).checked_sub(1).and_then(|i| INSPECTED_APPS.get(i)).copied().unwrap_or(App::Any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        use Check::*;
        assert_eq!(check(App::Smtp, false, true, b"220 mx ESMTP\r\n"), Match);
        assert_eq!(check(App::Smtp, true, true, b"ehlo client\r\n"), Match);
        assert_eq!(check(App::Smtp, true, true, b"GET / HTTP/1.1\r\n"), Mismatch);
        assert_eq!(check(App::Ssh, false, true, b"SSH-2.0-OpenSSH_9.2\r\n"), Match);
        assert_eq!(check(App::Tls, true, true, &[0x16, 0x03, 0x01, 0x02, 0x00]), Match);
        assert_eq!(check(App::Tls, true, true, b"SSH-2.0-x\r\n"), Mismatch);
        assert_eq!(check(App::Tls, true, true, &[0x80, 0x2e, 0x01, 0x00, 0x02]), Match);
        assert_eq!(check(App::Http, true, true, b"GET /index.html HTTP/1.1\r\n"), Match);
        assert_eq!(check(App::Http, true, true, b"CONNECT mail:25 HTTP/1.0\r\n"), Mismatch);
        assert_eq!(check(App::Http, false, true, b"HTTP/1.1 200 OK\r\n"), Mismatch);
        assert_eq!(check(App::Rdp, true, true, &[0x03, 0x00, 0x00, 0x2c]), Match);
        assert_eq!(check(App::Rdp, true, false, &[0xff, 0xff, 0xff, 0xff, 0, 0x40]), Match);
        assert_eq!(check(App::Ica, false, true, b"\x7f\x7fICA\x00\x01"), Match);
        assert_eq!(check(App::Vnc, false, true, b"RFB 003.008\n"), Match);
        let query = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w'];
        assert_eq!(check(App::Dns, true, false, &query), Match);
        assert_eq!(check(App::Dns, false, false, &query), Mismatch, "a query from the responder");
        assert_eq!(check(App::Dns, true, true, &[&[0, 14][..], &query].concat()), Match);
        assert_eq!(check(App::Dns, true, false, b"\x16\x03\x01"), Mismatch);
        assert_eq!(check(App::Any, true, true, b"anything"), Match);
    }

    #[test]
    fn codes_round_trip() {
        for app in INSPECTED_APPS {
            assert_ne!(to_u8(app), 0);
            assert_eq!(from_u8(to_u8(app)), app);
        }
        assert_eq!(to_u8(App::Any), 0);
        assert_eq!(from_u8(200), App::Any);
    }
}
