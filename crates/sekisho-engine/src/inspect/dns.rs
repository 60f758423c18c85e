//! DNS (RFC 1035): every message must be well formed — header, questions and resource
//! records within the message, names of labels of at most 63 bytes and 255 in all,
//! compression pointers that point back — with the QR bit of its direction. Queries
//! that look like tunnelling (a label of 32 bytes or more, NULL or TXT questions) are
//! counted per flow; at the threshold the flow is cut.

use super::validate::{Env, Step};
use super::Seen;

const TYPE_NULL: u16 = 10;
const TYPE_TXT: u16 = 16;
/// A label this long (of 63 at most) is a sign of data encoded in names.
pub(crate) const LONG_LABEL: usize = 32;
/// Compression pointers followed in one name.
const MAX_HOPS: usize = 32;

/// What one message showed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Signs {
    /// A query with a long label or a NULL/TXT question.
    pub suspicious: bool,
}

type Parse<T> = Result<T, &'static str>;

struct Msg<'a> {
    data: &'a [u8],
    /// The message may end before its counts say (a first IP fragment; a TCP message
    /// longer than the inspection depth): running out of bytes is not an error.
    partial: bool,
}

/// Raised when a partial message ends: parsing stops, what was read was fine.
const END: &str = "end of partial message";

impl Msg<'_> {
    fn get(&self, at: usize, n: usize) -> Parse<&[u8]> {
        match self.data.get(at..at + n) {
            Some(b) => Ok(b),
            None if self.partial => Err(END),
            None => Err("DNS message shorter than its contents"),
        }
    }

    /// Walks the name at `at`: returns where it ends in the message, its longest label and
    /// its length.
    fn name(&self, mut at: usize) -> Parse<(usize, usize, usize)> {
        let mut end = None;
        let (mut longest, mut total, mut hops) = (0, 0, 0);
        loop {
            let len = usize::from(self.get(at, 1)?[0]);
            match len {
                0 => return Ok((end.unwrap_or(at + 1), longest, total + 1)),
                1..=63 => {
                    self.get(at + 1, len)?;
                    longest = longest.max(len);
                    total += len + 1;
                    if total > 255 {
                        return Err("DNS name longer than 255 bytes");
                    }
                    at += 1 + len;
                }
                0xc0..=0xff => {
                    let p = self.get(at, 2)?;
                    let target = (usize::from(p[0] & 0x3f) << 8) | usize::from(p[1]);
                    hops += 1;
                    if target >= at || hops > MAX_HOPS {
                        return Err("DNS compression pointer does not point back");
                    }
                    end.get_or_insert(at + 2);
                    at = target;
                }
                _ => return Err("DNS label type not supported"),
            }
        }
    }
}

/// Checks one DNS message sent by the initiator (a query, QR clear) or the responder (a
/// response, QR set).
pub(crate) fn check(data: &[u8], from_initiator: bool, partial: bool) -> Parse<Signs> {
    let m = Msg { data, partial: false };
    let h = m.get(0, 12).map_err(|_| "DNS message shorter than its header")?;
    let qr = h[2] & 0x80 != 0;
    let opcode = (h[2] >> 3) & 0x0f;
    if qr == from_initiator {
        return Err(if from_initiator {
            "a DNS response from the initiator"
        } else {
            "a DNS query from the responder"
        });
    }
    if !matches!(opcode, 0 | 2 | 4 | 5 | 6) {
        return Err("DNS opcode not in use");
    }
    let count = |i: usize| usize::from(u16::from_be_bytes([h[i], h[i + 1]]));
    let (qd, rrs) = (count(4), count(6) + count(8) + count(10));
    if qd > 1 {
        return Err("more than one DNS question");
    }
    let m = Msg { data, partial };
    let mut signs = Signs::default();
    let mut at = 12;
    let walk = |at: &mut usize, signs: &mut Signs| -> Parse<()> {
        for _ in 0..qd {
            let (end, longest, total) = m.name(*at)?;
            let q = m.get(end, 4)?;
            let qtype = u16::from_be_bytes([q[0], q[1]]);
            if from_initiator
                && (longest >= LONG_LABEL || total > 120 || matches!(qtype, TYPE_NULL | TYPE_TXT))
            {
                signs.suspicious = true;
            }
            *at = end + 4;
        }
        for _ in 0..rrs {
            let (end, _, _) = m.name(*at)?;
            let fixed = m.get(end, 10)?;
            let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
            m.get(end + 10, rdlen)?;
            *at = end + 10 + rdlen;
        }
        Ok(())
    };
    match walk(&mut at, &mut signs) {
        Ok(()) if at == data.len() => Ok(signs),
        Ok(()) => Err("bytes after the end of the DNS message"),
        Err(END) => Ok(signs),
        Err(why) => Err(why),
    }
}

/// DNS over TCP: messages with a two-byte length in both directions; the tunnelling
/// count of the flow.
#[derive(Debug, Default)]
pub(crate) struct DnsTcp {
    suspicious: u8,
    /// Messages checked per direction (saturating).
    messages: [u8; 2],
}

impl DnsTcp {
    /// A message went each way.
    pub(crate) fn answered(&self) -> bool {
        self.messages[0] > 0 && self.messages[1] > 0
    }

    pub(crate) fn feed(&mut self, env: &Env<'_>, from_initiator: bool, data: &[u8]) -> Step {
        let Some(h) = data.get(..2) else { return Step::more(0) };
        let len = usize::from(u16::from_be_bytes([h[0], h[1]]));
        let Some(msg) = data.get(2..2 + len) else { return Step::more(0) };
        match check(msg, from_initiator, false) {
            Err(why) => Step::mismatch(super::identify::guess(data, from_initiator), why),
            Ok(signs) => {
                let d = usize::from(!from_initiator);
                self.messages[d] = self.messages[d].saturating_add(1);
                self.suspicious = self.suspicious.saturating_add(u8::from(signs.suspicious));
                if self.suspicious >= env.dns_threshold {
                    Step::mismatch(Seen::DnsTunnel, "DNS tunnelling: too many long-label or NULL/TXT queries")
                } else {
                    Step::more(2 + len)
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A query for `name` of type `qtype`.
    pub(crate) fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend(label.as_bytes());
        }
        m.push(0);
        m.extend(qtype.to_be_bytes());
        m.extend([0, 1]);
        m
    }

    /// The response to `q` with one A record (a compressed owner name).
    pub(crate) fn response(q: &[u8]) -> Vec<u8> {
        let mut r = q.to_vec();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 1;
        r.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        r
    }

    #[test]
    fn well_formed_messages() {
        let q = query("www.example.com", 1);
        assert_eq!(check(&q, true, false), Ok(Signs { suspicious: false }));
        assert_eq!(check(&response(&q), false, false), Ok(Signs::default()));
        assert!(check(&q, false, false).is_err(), "a query from the responder");
        assert!(check(&response(&q), true, false).is_err(), "a response from the initiator");
        assert!(check(&q[..q.len() - 1], true, false).is_err());
        assert_eq!(check(&response(&q)[..q.len() + 4], false, true), Ok(Signs::default()), "partial");
        let mut trailing = q.clone();
        trailing.push(0);
        assert!(check(&trailing, true, false).is_err());
        let mut forward = response(&q);
        let at = q.len();
        forward[at + 1] = 200;
        assert!(check(&forward, false, false).is_err(), "a pointer forward");
        assert!(check(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00", true, false).is_err());
        assert!(check(b"GET / HTTP/1.1\r\n", true, false).is_err());
    }

    #[test]
    fn tunnelling_signs() {
        assert!(check(&query("vaaaakardli.pirate.sea", TYPE_NULL), true, false).unwrap().suspicious);
        let hex = "546b03f50000000000a6023ed4df184d6ac5c2628b47714fdee584fed739";
        assert!(check(&query(&format!("dnscat.{hex}"), 15), true, false).unwrap().suspicious);
        assert!(!check(&query("mail.example.lg.jp", 15), true, false).unwrap().suspicious);
        let env = Env { service: None, text_leg: false, dns_threshold: 3 };
        let mut t = DnsTcp::default();
        let framed = |m: Vec<u8>| {
            let mut f = (m.len() as u16).to_be_bytes().to_vec();
            f.extend(m);
            f
        };
        let txt = framed(query("x.example", TYPE_TXT));
        assert_eq!(t.feed(&env, true, &txt), Step::more(txt.len()));
        assert_eq!(t.feed(&env, true, &txt), Step::more(txt.len()));
        assert!(matches!(
            t.feed(&env, true, &txt).outcome,
            super::super::validate::Outcome::Mismatch(Seen::DnsTunnel, _)
        ));
        assert_eq!(t.feed(&env, true, &txt[..5]), Step::more(0));
    }
}
