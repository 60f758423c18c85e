//! The validators' common interface: each application's state machine is fed the bytes
//! of one direction in order and says how far it got.

use sekisho_policy::{App, Service};

use super::{dns, http, identify, rdp, smtp, ssh, tls, Seen};

/// What a validator made of the bytes it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Fine so far; more bytes are needed (or welcome).
    More,
    /// This direction is what it should be: no further bytes of it need checking.
    Done,
    /// Not the expected application: what it looks like instead, and why.
    Mismatch(Seen, &'static str),
    /// On the text leg of a mail path: content that is not text-ified.
    NotSanitized(&'static str),
}

/// How many bytes a validator consumed and what it concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    /// Bytes consumed from the front of what it was given (a partial unit — a line, a
    /// handshake message — stays unconsumed and is given again with more bytes).
    pub consumed: usize,
    /// The conclusion.
    pub outcome: Outcome,
}

impl Step {
    pub(crate) const fn more(consumed: usize) -> Step {
        Step { consumed, outcome: Outcome::More }
    }

    pub(crate) const fn done(consumed: usize) -> Step {
        Step { consumed, outcome: Outcome::Done }
    }

    pub(crate) const fn mismatch(seen: Seen, why: &'static str) -> Step {
        Step { consumed: 0, outcome: Outcome::Mismatch(seen, why) }
    }

    pub(crate) const fn not_sanitized(why: &'static str) -> Step {
        Step { consumed: 0, outcome: Outcome::NotSanitized(why) }
    }
}

/// What a validator may consult besides the bytes: the service in force for the flow and
/// whether the flow is the text leg of a mail path.
#[derive(Clone, Copy)]
pub(crate) struct Env<'a> {
    /// The service the flow's path leg, exception or rule names.
    pub service: Option<&'a Service>,
    /// The leg of a `mail-text` path that delivers into an lgwan zone.
    pub text_leg: bool,
    /// Suspicious DNS messages a flow may carry before it is cut.
    pub dns_threshold: u8,
}

impl Env<'_> {
    /// Whether `CONNECT` may pass (`allow_connect`).
    pub(crate) fn allow_connect(&self) -> bool {
        self.service.is_some_and(|s| s.allow_connect)
    }
}

/// One flow's application state machine, both directions.
#[derive(Debug)]
pub(crate) enum Validator {
    Smtp(smtp::Smtp),
    Tls(tls::Tls),
    Http(http::Http),
    Ssh([ssh::Banner; 2]),
    Rdp(rdp::Rdp),
    /// ICA: both ends start with the ICA preamble.
    Ica([bool; 2]),
    /// VNC: both ends start with an RFB version line.
    Vnc([bool; 2]),
    Dns(dns::DnsTcp),
}

/// Index of a direction in per-direction arrays.
#[inline]
pub(crate) fn side(from_initiator: bool) -> usize {
    usize::from(!from_initiator)
}

const ICA_PREAMBLE: &[u8] = b"\x7f\x7fICA\x00";

/// `RFB xxx.yyy\n`: `Some(true)` when complete, `Some(false)` when what is there fits so
/// far, `None` when it does not.
fn rfb_version(data: &[u8]) -> Option<bool> {
    const PATTERN: &[u8; 12] = b"RFB 999.999\n";
    for (p, d) in PATTERN.iter().zip(data) {
        let ok = if *p == b'9' { d.is_ascii_digit() } else { p == d };
        if !ok {
            return None;
        }
    }
    Some(data.len() >= PATTERN.len())
}

impl Validator {
    /// The validator for `app` (TCP), or `None` when the application is not inspected
    /// over TCP.
    pub(crate) fn new(app: App, env: &Env<'_>) -> Option<Validator> {
        Some(match app {
            App::Smtp => Validator::Smtp(smtp::Smtp::new(env.text_leg)),
            App::Tls => Validator::Tls(tls::Tls::default()),
            App::Http => Validator::Http(http::Http::default()),
            App::Ssh => Validator::Ssh(Default::default()),
            App::Rdp => Validator::Rdp(rdp::Rdp::default()),
            App::Ica => Validator::Ica([false; 2]),
            App::Vnc => Validator::Vnc([false; 2]),
            App::Dns => Validator::Dns(dns::DnsTcp::default()),
            _ => return None,
        })
    }

    /// Feeds bytes of one direction, in order, from the first not yet consumed.
    pub(crate) fn feed(&mut self, env: &Env<'_>, from_initiator: bool, data: &[u8]) -> Step {
        let d = side(from_initiator);
        match self {
            Validator::Smtp(s) => s.feed(env, from_initiator, data),
            Validator::Tls(t) => t.feed(env, from_initiator, data),
            Validator::Http(h) => h.feed(env, from_initiator, data),
            Validator::Ssh(b) => b[d].feed(from_initiator, data),
            Validator::Rdp(r) => r.feed(env, from_initiator, data),
            Validator::Ica(done) => {
                let n = data.len().min(ICA_PREAMBLE.len());
                if data[..n] != ICA_PREAMBLE[..n] {
                    return Step::mismatch(identify::guess(data, from_initiator), "no ICA preamble");
                }
                if n < ICA_PREAMBLE.len() {
                    return Step::more(0);
                }
                done[d] = true;
                Step::done(n)
            }
            Validator::Vnc(done) => match rfb_version(data) {
                None => Step::mismatch(identify::guess(data, from_initiator), "no RFB version line"),
                Some(false) => Step::more(0),
                Some(true) => {
                    done[d] = true;
                    Step::done(12)
                }
            },
            Validator::Dns(x) => x.feed(env, from_initiator, data),
        }
    }

    /// Whether the direction needs no more checking.
    pub(crate) fn finished(&self, from_initiator: bool) -> bool {
        let d = side(from_initiator);
        match self {
            Validator::Smtp(s) => s.finished(from_initiator),
            Validator::Tls(t) => t.finished(from_initiator),
            Validator::Http(h) => h.finished(from_initiator),
            Validator::Ssh(b) => b[d].finished(),
            Validator::Rdp(r) => r.finished(from_initiator),
            Validator::Ica(done) | Validator::Vnc(done) => done[d],
            Validator::Dns(_) => false,
        }
    }

    /// Whether the flow counts as identified, given which directions are done: both done;
    /// DNS over TCP once a message went each way; SMTP on the text leg once a command was
    /// answered.
    pub(crate) fn identified(&self, done: [bool; 2]) -> bool {
        match self {
            Validator::Dns(x) => x.answered(),
            Validator::Smtp(s) => done[0] && done[1] || s.identified(),
            _ => done[0] && done[1],
        }
    }

    /// The verdict when a direction reached the inspection depth without concluding:
    /// kept as it is, except where what must be seen has not been (a TLS server name that
    /// must be checked).
    pub(crate) fn at_depth(&self, env: &Env<'_>, from_initiator: bool) -> Outcome {
        match self {
            Validator::Tls(t) => t.at_depth(env, from_initiator),
            Validator::Rdp(r) => r.at_depth(env, from_initiator),
            _ => Outcome::Done,
        }
    }
}

/// The next line of `data` (up to and including LF; a CR before it is part of the line):
/// `Some(len)` with the line's length including its end, `None` when no LF is there yet.
#[inline]
pub(crate) fn line_len(data: &[u8]) -> Option<usize> {
    data.iter().position(|b| *b == b'\n').map(|i| i + 1)
}

/// The line without its end (`\r\n` or `\n`).
#[inline]
pub(crate) fn trim_eol(line: &[u8]) -> &[u8] {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    l.strip_suffix(b"\r").unwrap_or(l)
}
