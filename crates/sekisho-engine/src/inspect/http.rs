//! HTTP/1.x: the client's request line and header fields (RFC 9112), the server's status
//! line and header fields. `CONNECT` opens an opaque tunnel: refused unless the service
//! says `allow_connect`. The HTTP/2 connection preface (`PRI * HTTP/2.0`, cleartext
//! prior knowledge) is accepted only there too (its requests are compressed frames this
//! check does not read), and the server's SETTINGS frame after it.

use super::validate::{line_len, side, trim_eol, Env, Step};
use super::{identify, Seen};

/// Longest request, status or header line.
const MAX_LINE: usize = 8192;
/// Header fields in one block.
const MAX_FIELDS: u16 = 128;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    #[default]
    Start,
    Fields(u16),
    Done,
}

/// Both directions of an HTTP exchange.
#[derive(Debug, Default)]
pub(crate) struct Http {
    phase: [Phase; 2],
    /// The client sent the HTTP/2 connection preface.
    preface: bool,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `HTTP/1.0` or `HTTP/1.1`.
fn is_http1(v: &[u8]) -> bool {
    v == b"HTTP/1.1" || v == b"HTTP/1.0"
}

/// Whether a header field line is well formed (no obsolete folding, no control bytes).
fn is_field(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|b| *b == b':') else { return false };
    colon > 0
        && line[..colon].iter().all(|b| is_tchar(*b))
        && line[colon + 1..].iter().all(|b| *b == b'\t' || *b >= 0x20 && *b != 0x7f)
}

/// Whether a header field line is an `Upgrade` naming `h2c` (RFC 7540 section 3.2):
/// cleartext HTTP/2 after the server's 101, whose requests this check does not read.
fn upgrades_to_h2c(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|b| *b == b':') else { return false };
    line[..colon].eq_ignore_ascii_case(b"upgrade")
        && line[colon + 1..].split(|b| *b == b',').any(|token| {
            let token = token.trim_ascii();
            let name = token.split(|b| *b == b'/').next().unwrap_or(token);
            name.eq_ignore_ascii_case(b"h2c")
        })
}

/// What the first bytes of a request line may be: an uppercase method token.
fn could_be_request(data: &[u8]) -> bool {
    let token = data
        .iter()
        .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || **b == b'-' || **b == b'_')
        .count();
    token == data.len() && token <= 20 || (1..=20).contains(&token) && data[token] == b' '
}

impl Http {
    pub(crate) fn finished(&self, from_initiator: bool) -> bool {
        self.phase[side(from_initiator)] == Phase::Done
    }

    fn request_line(&mut self, env: &Env<'_>, line: &[u8], data: &[u8]) -> Result<(), Step> {
        let mut parts = line.split(|b| *b == b' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Step::mismatch(identify::guess(data, true), "not an HTTP request line"));
        };
        let method_ok = !method.is_empty()
            && method.len() <= 20
            && method
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_');
        let target_ok = !target.is_empty() && target.iter().all(u8::is_ascii_graphic);
        let preface = method == b"PRI" && target == b"*" && version == b"HTTP/2.0";
        if !method_ok || !target_ok || !(is_http1(version) || preface) {
            return Err(Step::mismatch(identify::guess(data, true), "not an HTTP request line"));
        }
        if method == b"CONNECT" && !env.allow_connect() {
            return Err(Step::mismatch(
                Seen::HttpConnect,
                "CONNECT opens a tunnel the service does not allow",
            ));
        }
        if preface && !env.allow_connect() {
            // Its requests come in compressed frames this check does not read: a CONNECT
            // among them would pass.
            return Err(Step::mismatch(Seen::Http, "HTTP/2 without TLS where CONNECT is not allowed"));
        }
        self.preface = preface;
        Ok(())
    }

    pub(crate) fn feed(&mut self, env: &Env<'_>, from_initiator: bool, data: &[u8]) -> Step {
        let d = side(from_initiator);
        let mut used = 0;
        loop {
            let rest = &data[used..];
            if self.phase[d] == Phase::Done {
                return Step::done(used);
            }
            if !from_initiator && self.phase[d] == Phase::Start && self.preface {
                // HTTP/2: the server's connection preface is a SETTINGS frame on stream 0.
                let Some(h) = rest.get(..9) else { return Step::more(used) };
                if h[3] != 4 || h[5..9] != [0, 0, 0, 0] {
                    return Step::mismatch(
                        identify::guess(rest, false),
                        "server's HTTP/2 preface is not SETTINGS",
                    );
                }
                self.phase[d] = Phase::Done;
                return Step::done(used);
            }
            let Some(n) = line_len(rest) else {
                let fits = !from_initiator || self.phase[d] != Phase::Start || could_be_request(rest);
                let fits = fits
                    && (from_initiator
                        || self.phase[d] != Phase::Start
                        || b"HTTP/1.".iter().zip(rest).all(|(a, b)| a == b));
                if rest.len() >= MAX_LINE || !fits {
                    return Step::mismatch(identify::guess(rest, from_initiator), "not an HTTP message");
                }
                return Step::more(used);
            };
            if n > MAX_LINE {
                return Step::mismatch(identify::guess(rest, from_initiator), "HTTP line too long");
            }
            let line = trim_eol(&rest[..n]);
            match self.phase[d] {
                Phase::Start if from_initiator => {
                    if let Err(step) = self.request_line(env, line, rest) {
                        return step;
                    }
                    self.phase[d] = Phase::Fields(0);
                }
                Phase::Start => {
                    let ok = line.len() >= 12
                        && is_http1(&line[..8])
                        && line[8] == b' '
                        && line[9..12].iter().all(u8::is_ascii_digit)
                        && (b'1'..=b'5').contains(&line[9])
                        && (line.len() == 12 || line[12] == b' ');
                    if !ok {
                        return Step::mismatch(identify::guess(rest, false), "not an HTTP status line");
                    }
                    self.phase[d] = Phase::Fields(0);
                }
                Phase::Fields(_) if line.is_empty() => self.phase[d] = Phase::Done,
                Phase::Fields(count) => {
                    if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                        return Step::mismatch(Seen::Http, "obsolete header line folding");
                    }
                    if !is_field(line) {
                        return Step::mismatch(
                            identify::guess(rest, from_initiator),
                            "malformed HTTP header field",
                        );
                    }
                    if count >= MAX_FIELDS {
                        return Step::mismatch(Seen::Http, "too many HTTP header fields");
                    }
                    if from_initiator && !env.allow_connect() && upgrades_to_h2c(line) {
                        // The same HTTP/2 as the preface, reached after a 101.
                        return Step::mismatch(
                            Seen::Http,
                            "upgrade to HTTP/2 without TLS where CONNECT is not allowed",
                        );
                    }
                    self.phase[d] = Phase::Fields(count + 1);
                }
                Phase::Done => {}
            }
            used += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::validate::Outcome;
    use sekisho_policy::{App, Proto, Service};

    fn env(service: Option<&Service>) -> Env<'_> {
        Env { service, text_leg: false, dns_threshold: 8 }
    }

    fn run(env: &Env<'_>, from_initiator: bool, data: &[u8]) -> Outcome {
        Http::default().feed(env, from_initiator, data).outcome
    }

    #[test]
    fn requests_and_responses() {
        let e = env(None);
        let req = b"GET /index.html HTTP/1.1\r\nHost: example\r\nUser-Agent: curl/8\r\n\r\nbody";
        let mut h = Http::default();
        assert_eq!(h.feed(&e, true, req), Step::done(req.len() - 4));
        assert!(h.finished(true));
        assert_eq!(run(&e, true, b"GET /index.html HTTP/1.1\r\nHost: ex"), Outcome::More);
        assert_eq!(run(&e, true, b"GE"), Outcome::More);
        assert_eq!(run(&e, false, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"), Outcome::Done);
        assert_eq!(run(&e, false, b"HTTP/1.0 404\r\n\r\n"), Outcome::Done);
        assert!(matches!(run(&e, true, b"EHLO mail\r\n"), Outcome::Mismatch(..)));
        assert!(matches!(run(&e, true, b"ehlo"), Outcome::Mismatch(Seen::Smtp, _)));
        assert!(matches!(run(&e, true, b"GET / HTTP/1.1\r\nBad Header\r\n"), Outcome::Mismatch(..)));
        assert!(matches!(run(&e, true, b"GET / HTTP/1.1\r\nA: b\r\n c\r\n"), Outcome::Mismatch(..)));
        assert!(matches!(run(&e, false, b"SSH-2.0-x\r\n"), Outcome::Mismatch(Seen::Ssh, _)));
        assert!(matches!(run(&e, false, b"220 smtp\r\n"), Outcome::Mismatch(..)));
        assert!(matches!(
            run(&e, true, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Outcome::Mismatch(Seen::Http, _)
        ));
    }

    #[test]
    fn connect_needs_allow_connect() {
        let req = b"CONNECT mail.example:25 HTTP/1.0\r\n\r\n";
        assert_eq!(
            run(&env(None), true, req),
            Outcome::Mismatch(Seen::HttpConnect, "CONNECT opens a tunnel the service does not allow")
        );
        let proxy = Service {
            name: "proxy".into(),
            proto: Proto::Tcp,
            ports: vec![],
            app: App::Http,
            sni_allow: vec![],
            allow_connect: true,
        };
        assert_eq!(run(&env(Some(&proxy)), true, req), Outcome::Done);
        assert_eq!(run(&env(Some(&proxy)), true, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Outcome::Done);
    }
}
