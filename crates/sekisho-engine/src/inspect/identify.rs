//! A best guess at what a stream that failed its check carries, for the alert ("expected
//! smtp, seen http") and the per-leg counters. Only a guess: it decides nothing.

use super::Seen;

/// What the first bytes of a direction look like.
pub(crate) fn guess(data: &[u8], from_initiator: bool) -> Seen {
    let token = data.iter().take(16).take_while(|b| b.is_ascii_uppercase()).count();
    match data {
        [0x16, 0x03, minor, ..] if *minor <= 0x04 => Seen::Tls,
        [0x14 | 0x15 | 0x17, 0x03, minor, ..] if *minor <= 0x04 => Seen::Tls,
        [hi, _, 0x01, 0x03 | 0x00 | 0x02, ..] if hi & 0x80 != 0 && from_initiator => Seen::Tls,
        [b'S', b'S', b'H', b'-', ..] => Seen::Ssh,
        [0x03, 0x00, _, _, _, 0xe0 | 0xd0 | 0xf0, ..] => Seen::Rdp,
        [0x7f, 0x7f, b'I', b'C', b'A', ..] => Seen::Ica,
        [b'R', b'F', b'B', b' ', ..] => Seen::Vnc,
        _ if data.starts_with(b"HTTP/1.") || data.starts_with(b"PRI * HTTP/2") => Seen::Http,
        _ if data.starts_with(b"CONNECT ") => Seen::HttpConnect,
        _ if (3..=10).contains(&token)
            && data.get(token) == Some(&b' ')
            && is_http_method(&data[..token]) =>
        {
            Seen::Http
        }
        _ if is_smtp(data, from_initiator) => Seen::Smtp,
        _ => Seen::Unknown,
    }
}

fn is_http_method(m: &[u8]) -> bool {
    matches!(m, b"GET" | b"POST" | b"PUT" | b"HEAD" | b"DELETE" | b"OPTIONS" | b"PATCH" | b"TRACE")
}

fn is_smtp(data: &[u8], from_initiator: bool) -> bool {
    if from_initiator {
        let verb = data.get(..4).unwrap_or(data);
        ["EHLO", "HELO", "MAIL", "RCPT", "QUIT"].iter().any(|v| verb.eq_ignore_ascii_case(v.as_bytes()))
    } else {
        matches!(data, [a, b, c, d, ..] if (b'2'..=b'5').contains(a) && b.is_ascii_digit() && c.is_ascii_digit() && matches!(d, b' ' | b'-'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses() {
        assert_eq!(guess(b"GET / HTTP/1.1\r\n", true), Seen::Http);
        assert_eq!(guess(b"CONNECT mail:25 HTTP/1.0\r\n", true), Seen::HttpConnect);
        assert_eq!(guess(b"HTTP/1.1 200 OK\r\n", false), Seen::Http);
        assert_eq!(guess(b"SSH-2.0-x\r\n", true), Seen::Ssh);
        assert_eq!(guess(&[0x16, 0x03, 0x01, 0, 5, 1], true), Seen::Tls);
        assert_eq!(guess(&[0x03, 0, 0, 0x13, 0x0e, 0xe0], true), Seen::Rdp);
        assert_eq!(guess(b"ehlo x\r\n", true), Seen::Smtp);
        assert_eq!(guess(b"220 mx ESMTP\r\n", false), Seen::Smtp);
        assert_eq!(guess(b"\x7f\x7fICA\x00", false), Seen::Ica);
        assert_eq!(guess(b"RFB 003.008\n", false), Seen::Vnc);
        assert_eq!(guess(b"\x00\x01binary", true), Seen::Unknown);
    }
}
