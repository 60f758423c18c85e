//! SSH: each end's identification line (RFC 4253 section 4.2). The server may send other
//! lines before it; the client may not.

use super::validate::{line_len, trim_eol, Step};
use super::{identify, Seen};

/// Longest identification line, with its CR LF (RFC 4253).
const MAX_LINE: usize = 255;
/// Lines a server may send before its identification line.
const MAX_PRE_LINES: u8 = 16;

/// One direction's progress.
#[derive(Debug, Default)]
pub(crate) struct Banner {
    done: bool,
    pre_lines: u8,
}

/// `SSH-protoversion-softwareversion[ SP comments]`: a protocol version of 2.0 or 1.x
/// (1.99 announces 2.0 compatibility), a software version of printable characters
/// without spaces (RFC 4253 forbids '-' too, but real servers use it), printable comments.
fn is_version_line(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"SSH-") else { return false };
    let Some(dash) = rest.iter().position(|b| *b == b'-') else { return false };
    let (proto, rest) = (&rest[..dash], &rest[dash + 1..]);
    let proto_ok = proto == b"2.0"
        || proto.starts_with(b"1.") && proto.len() <= 4 && proto[2..].iter().all(u8::is_ascii_digit);
    let software_end = rest.iter().position(|b| *b == b' ').unwrap_or(rest.len());
    let software = &rest[..software_end];
    proto_ok
        && !software.is_empty()
        && software.iter().all(u8::is_ascii_graphic)
        && rest[software_end..].iter().all(|b| b.is_ascii_graphic() || *b == b' ')
}

impl Banner {
    pub(crate) fn finished(&self) -> bool {
        self.done
    }

    pub(crate) fn feed(&mut self, from_initiator: bool, data: &[u8]) -> Step {
        let Some(n) = line_len(data) else {
            let k = data.len().min(4);
            let fits = !from_initiator || data[..k] == b"SSH-"[..k];
            return if data.len() >= MAX_LINE || !fits {
                Step::mismatch(identify::guess(data, from_initiator), "no SSH identification line")
            } else {
                Step::more(0)
            };
        };
        let line = trim_eol(&data[..n]);
        if n > MAX_LINE {
            return Step::mismatch(identify::guess(data, from_initiator), "SSH identification line too long");
        }
        if is_version_line(line) {
            self.done = true;
            return Step::done(n);
        }
        if from_initiator || line.starts_with(b"SSH-") || self.pre_lines >= MAX_PRE_LINES {
            return Step::mismatch(identify::guess(data, from_initiator), "no SSH identification line");
        }
        if !line.iter().all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\t') {
            return Step::mismatch(
                Seen::Unknown,
                "SSH server's lines before its identification are not text",
            );
        }
        self.pre_lines += 1;
        Step::more(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::validate::Outcome;

    fn run(from_initiator: bool, data: &[u8]) -> Outcome {
        let mut b = Banner::default();
        b.feed(from_initiator, data).outcome
    }

    #[test]
    fn identification_lines() {
        assert_eq!(run(true, b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3\r\n"), Outcome::Done);
        assert_eq!(run(false, b"SSH-1.99-Cisco-1.25\r\n"), Outcome::Done);
        assert_eq!(run(true, b"SSH-2.0-PuTTY_Release_0.80\n"), Outcome::Done);
        assert_eq!(run(true, b"SSH-2.0-Open"), Outcome::More);
        assert_eq!(run(true, b"SS"), Outcome::More);
        assert!(matches!(run(true, b"GET / HTTP/1.1\r\n"), Outcome::Mismatch(Seen::Http, _)));
        assert!(matches!(run(true, b"\x16\x03\x01\x02\x00\x01"), Outcome::Mismatch(Seen::Tls, _)));
        assert!(matches!(run(true, b"SSH-3.0-x\r\n"), Outcome::Mismatch(..)));
        assert!(matches!(run(true, b"SSH-2.0-\r\n"), Outcome::Mismatch(..)));
        assert!(matches!(run(true, b"hello\r\nSSH-2.0-x\r\n"), Outcome::Mismatch(..)));
        // A server may greet with other lines first.
        let mut b = Banner::default();
        let data = b"Welcome\r\nSSH-2.0-srv\r\n";
        let s = b.feed(false, data);
        assert_eq!(s, Step::more(9));
        assert_eq!(b.feed(false, &data[9..]), Step::done(13));
        assert!(matches!(run(false, &[b'x'; 300]), Outcome::Mismatch(..)));
    }
}
