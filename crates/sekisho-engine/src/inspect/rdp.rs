//! RDP over TCP (MS-RDPBCGR 2.2.1.1, 2.2.1.2): the client's TPKT with an X.224 Connection
//! Request (a cookie or routing token, an RDP negotiation request), the server's TPKT with
//! an X.224 Connection Confirm (a negotiation response or failure); then, when the server
//! chose TLS or CredSSP, the client's TLS ClientHello and the server's first TLS record;
//! with standard RDP security, the client's X.224 Data TPDU carrying the MCS
//! Connect-Initial.

use super::validate::{side, Env, Outcome, Step};
use super::{identify, tls, Seen};

const X224_CR: u8 = 0xe0;
const X224_CC: u8 = 0xd0;
const X224_DT: u8 = 0xf0;
const NEG_REQ: u8 = 1;
const NEG_RSP: u8 = 2;
const NEG_FAILURE: u8 = 3;
const CORRELATION_INFO: u8 = 6;
/// Largest connection request or confirm accepted.
const MAX_PDU: usize = 1024;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// The X.224 connection request (client) or confirm (server).
    #[default]
    Connect,
    /// After the confirm: TLS (protocols 1, 2, 4, 8) or standard security (0).
    Next,
    Done,
}

/// Both directions of an RDP connection setup.
#[derive(Debug, Default)]
pub(crate) struct Rdp {
    phase: [Phase; 2],
    /// The protocol the server selected (0: standard RDP security); `None` before the
    /// confirm.
    selected: Option<u32>,
}

/// A complete TPKT of at most `max` bytes at the start of `data`: `Ok(Some(pdu))`,
/// `Ok(None)` when more bytes are needed.
fn tpkt(data: &[u8], max: usize) -> Result<Option<&[u8]>, &'static str> {
    match data {
        [] => return Ok(None),
        [3] | [3, 0] | [3, 0, _] => return Ok(None),
        [3, 0, ..] => {}
        _ => return Err("no TPKT header"),
    }
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    if !(7..=max).contains(&len) {
        return Err("TPKT length out of range");
    }
    Ok(data.get(..len))
}

/// The X.224 CR/CC header (after the TPKT) of `pdu`: its code and the variable part.
fn x224_connect(pdu: &[u8], code: u8) -> Result<&[u8], &'static str> {
    let h = pdu.get(4..11).ok_or("X.224 header truncated")?;
    if usize::from(h[0]) != pdu.len() - 5 || h[1] & 0xf0 != code {
        return Err("not an X.224 connection request or confirm");
    }
    // Class 0, no options (MS-RDPBCGR); the destination reference of a request is 0.
    if h[6] & 0xf0 != 0 || code == X224_CR && h[2..4] != [0, 0] {
        return Err("X.224 connection TPDU not of class 0");
    }
    Ok(&pdu[11..])
}

/// The client's request: optional `Cookie: ...\r\n` (or a routing token), then an
/// optional RDP_NEG_REQ, then an optional correlation info.
fn check_request(mut rest: &[u8]) -> Result<(), &'static str> {
    if rest.starts_with(b"Cookie:") {
        let end = rest.windows(2).position(|w| w == b"\r\n").ok_or("RDP cookie without CR LF")?;
        if !rest[..end].iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            return Err("RDP cookie is not text");
        }
        rest = &rest[end + 2..];
    }
    if rest.is_empty() {
        return Ok(());
    }
    let neg = rest.get(..8).ok_or("RDP negotiation request truncated")?;
    if neg[0] != NEG_REQ || neg[2..4] != [8, 0] {
        return Err("not an RDP negotiation request");
    }
    rest = &rest[8..];
    if rest.is_empty() {
        return Ok(());
    }
    if rest.len() == 36 && rest[0] == CORRELATION_INFO && rest[2..4] == [36, 0] {
        return Ok(());
    }
    Err("unexpected data after the RDP negotiation request")
}

/// The server's confirm: nothing (standard security), or an RDP_NEG_RSP or failure.
/// Returns the selected protocol (`u32::MAX` for a failure: the server closes).
fn check_confirm(rest: &[u8]) -> Result<u32, &'static str> {
    match rest {
        [] => Ok(0),
        [ty, _, 8, 0, a, b, c, d] if *ty == NEG_RSP => Ok(u32::from_le_bytes([*a, *b, *c, *d])),
        [ty, _, 8, 0, ..] if *ty == NEG_FAILURE && rest.len() == 8 => Ok(u32::MAX),
        _ => Err("not an RDP negotiation response"),
    }
}

impl Rdp {
    pub(crate) fn finished(&self, from_initiator: bool) -> bool {
        self.phase[side(from_initiator)] == Phase::Done
    }

    fn tls_selected(&self) -> bool {
        self.selected.is_some_and(|p| p != 0 && p != u32::MAX)
    }

    pub(crate) fn feed(&mut self, env: &Env<'_>, from_initiator: bool, data: &[u8]) -> Step {
        let d = side(from_initiator);
        match (self.phase[d], from_initiator) {
            (Phase::Done, _) => Step::done(0),
            (Phase::Connect, _) => {
                let code = if from_initiator { X224_CR } else { X224_CC };
                let pdu = match tpkt(data, MAX_PDU) {
                    Err(why) => return Step::mismatch(identify::guess(data, from_initiator), why),
                    Ok(None) => return Step::more(0),
                    Ok(Some(p)) => p,
                };
                let checked = x224_connect(pdu, code).and_then(|rest| {
                    if from_initiator {
                        check_request(rest)
                    } else {
                        self.selected = Some(check_confirm(rest)?);
                        Ok(())
                    }
                });
                if let Err(why) = checked {
                    return Step::mismatch(identify::guess(data, from_initiator), why);
                }
                self.phase[d] = match (from_initiator, self.selected) {
                    (false, Some(p)) if p == 0 || p == u32::MAX => Phase::Done,
                    _ => Phase::Next,
                };
                Step::more(pdu.len())
            }
            (Phase::Next, true) => {
                let step = match self.selected {
                    None => return Step::mismatch(Seen::Rdp, "client data before the connection confirm"),
                    Some(u32::MAX) => {
                        return Step::mismatch(Seen::Rdp, "client data after a refused negotiation")
                    }
                    Some(_) if self.tls_selected() => tls::client_step(&Env { service: None, ..*env }, data),
                    Some(_) => match tpkt(data, usize::from(u16::MAX)) {
                        Err(why) => Step::mismatch(identify::guess(data, true), why),
                        Ok(None) if data.len() < 9 => Step::more(0),
                        // X.224 Data TPDU (LI 2, DT, EOT), then the MCS Connect-Initial's BER tag.
                        _ => match data.get(4..9) {
                            Some([2, X224_DT, 0x80, 0x7f, 0x65]) => Step::done(9),
                            Some(_) => Step::mismatch(Seen::Rdp, "no MCS Connect-Initial after the confirm"),
                            None => Step::more(0),
                        },
                    },
                };
                if step.outcome == Outcome::Done {
                    self.phase[d] = Phase::Done;
                }
                step
            }
            (Phase::Next, false) => {
                let step = tls::server_step(data);
                if step.outcome == Outcome::Done {
                    self.phase[d] = Phase::Done;
                }
                step
            }
        }
    }

    pub(crate) fn at_depth(&self, _env: &Env<'_>, _from_initiator: bool) -> Outcome {
        Outcome::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CR: [u8; 19] = [
        0x03, 0x00, 0x00, 0x13, 0x0e, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x08, 0x00, 0x03, 0x00,
        0x00, 0x00,
    ];
    const CC_TLS: [u8; 19] = [
        0x03, 0x00, 0x00, 0x13, 0x0e, 0xd0, 0x00, 0x00, 0x12, 0x34, 0x00, 0x02, 0x00, 0x08, 0x00, 0x01, 0x00,
        0x00, 0x00,
    ];
    const CC_STANDARD: [u8; 11] = [0x03, 0x00, 0x00, 0x0b, 0x06, 0xd0, 0x00, 0x00, 0x12, 0x34, 0x00];

    fn env() -> Env<'static> {
        Env { service: None, text_leg: false, dns_threshold: 8 }
    }

    #[test]
    fn tls_after_the_confirm() {
        let e = env();
        let mut r = Rdp::default();
        assert_eq!(r.feed(&e, true, &CR[..10]), Step::more(0));
        assert_eq!(r.feed(&e, true, &CR), Step::more(19));
        assert!(
            matches!(r.feed(&e, true, b"\x16\x03\x01").outcome, Outcome::Mismatch(..)),
            "before the confirm"
        );
        assert_eq!(r.feed(&e, false, &CC_TLS), Step::more(19));
        let hello = crate::inspect::tls::tests::client_hello_record(&[]);
        assert_eq!(r.feed(&e, true, &hello), Step::done(hello.len()));
        assert_eq!(r.feed(&e, false, &[0x16, 3, 3, 0, 0x50]), Step::done(5));
        assert!(r.finished(true) && r.finished(false));
    }

    #[test]
    fn standard_security_and_mismatches() {
        let e = env();
        let mut r = Rdp::default();
        let mut cookie = vec![0x03, 0x00, 0x00, 0x00, 0x00, 0xe0, 0, 0, 0, 0, 0];
        cookie.extend(b"Cookie: mstshash=eltons\r\n");
        let len = cookie.len();
        cookie[3] = len as u8;
        cookie[4] = (len - 5) as u8;
        assert_eq!(r.feed(&e, true, &cookie), Step::more(len));
        assert_eq!(r.feed(&e, false, &CC_STANDARD), Step::more(11));
        assert!(r.finished(false));
        let mcs = [0x03, 0x00, 0x01, 0x00, 0x02, 0xf0, 0x80, 0x7f, 0x65, 0x82];
        assert_eq!(r.feed(&e, true, &mcs), Step::done(9));
        let mut r = Rdp::default();
        assert!(matches!(r.feed(&e, true, b"SSH-2.0-OpenSSH\r\n").outcome, Outcome::Mismatch(Seen::Ssh, _)));
        let mut r = Rdp::default();
        assert!(matches!(r.feed(&e, false, &CR).outcome, Outcome::Mismatch(..)), "a request from the server");
    }
}
