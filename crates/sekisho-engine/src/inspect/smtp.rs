//! SMTP (RFC 5321): the server's greeting and replies (three-digit codes, multi-line
//! replies with one code), the client's commands (known verbs, printable arguments, one
//! per line) until the message data starts — `DATA` answered by 354, `BDAT` — or TLS
//! starts (`STARTTLS` answered by 220: then a ClientHello and the server's first record).
//! Pipelined commands are matched to their replies by count; after `DATA`, `STARTTLS` and
//! `AUTH` the client must wait for the reply.
//!
//! On the text leg of a mail path (delivering into LGWAN) the whole session is followed:
//! each message's data, dot-stuffing undone, goes through the [`Mime`] text check, and
//! `STARTTLS` is refused — a message that is not text-ified is cut before its end of
//! data reaches the server.

use super::mime::Mime;
use super::validate::{line_len, trim_eol, Env, Step};
use super::{identify, tls, Seen};

/// Longest command line (RFC 5321 allows 512; AUTH responses and extensions need more).
const MAX_COMMAND: usize = 2048;
/// Longest reply line.
const MAX_REPLY: usize = 2048;
/// Commands sent and not yet answered, at most.
const MAX_PENDING: u32 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    Commands,
    /// Message data after 354 (text leg).
    Data,
    /// Bytes of a BDAT chunk still to come (text leg), and whether it is the last.
    Bdat {
        left: u64,
        last: bool,
    },
    /// After STARTTLS was accepted: the ClientHello.
    Tls,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    Greeting,
    Replies,
    Tls,
    Done,
}

/// The last command of a pipelined group, whose reply changes what follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Special {
    None,
    Data,
    StartTls,
    Auth,
}

/// One SMTP session, both directions.
#[derive(Debug)]
pub(crate) struct Smtp {
    text_leg: bool,
    client: Client,
    server: Server,
    pending: u32,
    special: Special,
    /// The server's last reply was 334: the client's next line answers the AUTH challenge.
    auth_challenge: bool,
    /// The code of a multi-line reply in progress.
    multi: Option<[u8; 3]>,
    mime: Option<Box<Mime>>,
    /// A command was answered: both ends have spoken SMTP.
    replied: bool,
    /// The server announced CHUNKING (a 250 reply line whose first word it is): without
    /// it a server takes a BDAT chunk for commands (text leg).
    chunking: bool,
    /// BDAT chunks without LAST were sent: a message is open in the text check whose
    /// start the server may have refused (text leg).
    chunks_open: bool,
}

const VERBS: [&[u8]; 14] = [
    b"HELO", b"EHLO", b"MAIL", b"RCPT", b"DATA", b"BDAT", b"RSET", b"NOOP", b"QUIT", b"VRFY", b"EXPN",
    b"HELP", b"AUTH", b"ETRN",
];

/// A command verb: one of [`VERBS`], STARTTLS, or an `X`-extension (XCLIENT, XFORWARD).
fn known_verb(verb: &[u8]) -> bool {
    VERBS.iter().any(|v| verb.eq_ignore_ascii_case(v))
        || verb.eq_ignore_ascii_case(b"STARTTLS")
        || (verb.first().is_some_and(|b| b.eq_ignore_ascii_case(&b'X'))
            && (2..=16).contains(&verb.len())
            && verb.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-'))
}

/// Printable US-ASCII, tab, or UTF-8 bytes (SMTPUTF8): what a command's arguments hold.
fn printable(b: &[u8]) -> bool {
    b.iter().all(|c| *c == b'\t' || (0x20..0x7f).contains(c) || *c >= 0x80)
}

/// `BDAT <size> [LAST]`.
fn bdat_args(args: &[u8]) -> Option<(u64, bool)> {
    let mut words = args.split(|b| *b == b' ').filter(|w| !w.is_empty());
    let size = words.next()?;
    if size.is_empty() || size.len() > 12 || !size.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = size.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    match (words.next(), words.next()) {
        (None, _) => Some((n, false)),
        (Some(w), None) if w.eq_ignore_ascii_case(b"LAST") => Some((n, true)),
        _ => None,
    }
}

impl Smtp {
    pub(crate) fn new(text_leg: bool) -> Smtp {
        Smtp {
            text_leg,
            client: Client::Commands,
            server: Server::Greeting,
            pending: 0,
            special: Special::None,
            auth_challenge: false,
            multi: None,
            mime: text_leg.then(Box::default),
            replied: false,
            chunking: false,
            chunks_open: false,
        }
    }

    /// On the text leg, whose whole session stays under inspection: identified as SMTP
    /// once a command was answered (elsewhere, once both directions are done).
    pub(crate) fn identified(&self) -> bool {
        self.text_leg && self.replied
    }

    pub(crate) fn finished(&self, from_initiator: bool) -> bool {
        if from_initiator {
            self.client == Client::Done
        } else {
            self.server == Server::Done
        }
    }

    pub(crate) fn feed(&mut self, env: &Env<'_>, from_initiator: bool, data: &[u8]) -> Step {
        if from_initiator {
            self.client_bytes(env, data)
        } else {
            self.server_bytes(data)
        }
    }

    fn mime(&mut self) -> &mut Mime {
        self.mime.get_or_insert_with(Box::default)
    }

    fn client_bytes(&mut self, env: &Env<'_>, data: &[u8]) -> Step {
        let mut used = 0;
        loop {
            let rest = &data[used..];
            match self.client {
                Client::Done => return Step::done(used),
                Client::Tls => {
                    let step = tls::client_step(&Env { service: None, ..*env }, rest);
                    if step.outcome == super::validate::Outcome::Done {
                        self.client = Client::Done;
                        return Step::done(used + step.consumed);
                    }
                    return Step { consumed: used + step.consumed, ..step };
                }
                Client::Bdat { left, last } => {
                    if rest.is_empty() {
                        return Step::more(used);
                    }
                    let n = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    if let Err(why) = self.mime().bytes(&rest[..n]) {
                        return Step::not_sanitized(why);
                    }
                    used += n;
                    let left = left - n as u64;
                    self.client = if left > 0 { Client::Bdat { left, last } } else { Client::Commands };
                    if left == 0 && last {
                        if let Err(why) = self.mime().finish() {
                            return Step::not_sanitized(why);
                        }
                    }
                }
                Client::Data => {
                    let Some(n) = line_len(rest) else {
                        if rest.len() > super::mime::MAX_LINE + 1 {
                            return Step::not_sanitized("line longer than 998 characters");
                        }
                        return Step::more(used);
                    };
                    let line = trim_eol(&rest[..n]);
                    let result = if line == b"." {
                        self.client = Client::Commands;
                        self.pending += 1;
                        self.mime().finish()
                    } else {
                        let unstuffed = line.strip_prefix(b".").unwrap_or(line);
                        self.mime().line(unstuffed)
                    };
                    if let Err(why) = result {
                        return Step::not_sanitized(why);
                    }
                    used += n;
                }
                Client::Commands => {
                    let Some(n) = line_len(rest) else {
                        let verb_so_far = rest.iter().take_while(|b| **b != b' ').count();
                        let plausible = rest.iter().take(verb_so_far).all(u8::is_ascii_alphanumeric)
                            && (verb_so_far < rest.len() || verb_so_far <= 16);
                        if rest.len() > MAX_COMMAND || !plausible && !self.auth_challenge {
                            return Step::mismatch(identify::guess(rest, true), "not an SMTP command");
                        }
                        return Step::more(used);
                    };
                    if n > MAX_COMMAND {
                        return Step::mismatch(identify::guess(rest, true), "SMTP command line too long");
                    }
                    let line = trim_eol(&rest[..n]);
                    if let Err(step) = self.command(env, line, rest) {
                        return step;
                    }
                    used += n;
                    if self.client == Client::Done {
                        return Step::done(used);
                    }
                }
            }
        }
    }

    fn command(&mut self, _env: &Env<'_>, line: &[u8], rest: &[u8]) -> Result<(), Step> {
        let not_smtp = |why| Step::mismatch(identify::guess(rest, true), why);
        if self.auth_challenge {
            // A response to a 334 challenge: base64 or "*".
            if !line.iter().all(|b| b.is_ascii_alphanumeric() || b"+/=*".contains(b)) {
                return Err(not_smtp("AUTH response is not base64"));
            }
            self.auth_challenge = false;
            self.special = Special::Auth;
            self.pending += 1;
            return Ok(());
        }
        if self.special != Special::None {
            return Err(Step::mismatch(
                Seen::Smtp,
                "SMTP command sent before the reply to DATA, STARTTLS or AUTH",
            ));
        }
        let verb_end = line.iter().position(|b| *b == b' ').unwrap_or(line.len());
        let (verb, args) = (&line[..verb_end], &line[verb_end..]);
        if !known_verb(verb) || !printable(args) {
            return Err(not_smtp("not an SMTP command"));
        }
        let args = args.strip_prefix(b" ").unwrap_or(args);
        if self.text_leg && self.chunks_open {
            // The server may have refused the open chunks (no transaction, no valid
            // recipient: it reads and drops them) while this check read them as the
            // start of a message. Until the message ends or RSET clears both, a command
            // that could start another message would be checked against the wrong one.
            if verb.eq_ignore_ascii_case(b"RSET") {
                self.mime().reset();
                self.chunks_open = false;
            } else if ![&b"BDAT"[..], b"NOOP", b"QUIT"].iter().any(|v| verb.eq_ignore_ascii_case(v)) {
                return Err(Step::not_sanitized("SMTP command between BDAT chunks of a message"));
            }
        }
        if verb.eq_ignore_ascii_case(b"DATA") {
            if !args.is_empty() {
                return Err(not_smtp("DATA takes no arguments"));
            }
            self.special = Special::Data;
        } else if verb.eq_ignore_ascii_case(b"STARTTLS") {
            if self.text_leg {
                return Err(Step::not_sanitized("STARTTLS on the text leg would hide the message"));
            }
            self.special = Special::StartTls;
        } else if verb.eq_ignore_ascii_case(b"AUTH") {
            self.special = Special::Auth;
        } else if verb.eq_ignore_ascii_case(b"BDAT") {
            let Some((left, last)) = bdat_args(args) else {
                return Err(not_smtp("malformed BDAT"));
            };
            if !self.text_leg {
                // Message data follows: nothing more of this session is checked.
                self.client = Client::Done;
                self.server = Server::Done;
                return Ok(());
            }
            if !self.chunking {
                // A server without CHUNKING refuses the command and reads the chunk as
                // commands: MAIL, RCPT, DATA and a message this check took for text.
                return Err(Step::not_sanitized("BDAT to a server that did not announce CHUNKING"));
            }
            self.chunks_open = !last;
            self.client = Client::Bdat { left, last };
            if left == 0 && last {
                if let Err(why) = self.mime().finish() {
                    return Err(Step::not_sanitized(why));
                }
                self.client = Client::Commands;
            }
        }
        self.pending += 1;
        if self.pending > MAX_PENDING {
            return Err(Step::mismatch(Seen::Smtp, "too many SMTP commands without a reply"));
        }
        Ok(())
    }

    fn server_bytes(&mut self, data: &[u8]) -> Step {
        let mut used = 0;
        loop {
            let rest = &data[used..];
            match self.server {
                Server::Done => return Step::done(used),
                Server::Tls => {
                    let step = tls::server_step(rest);
                    if step.outcome == super::validate::Outcome::Done {
                        self.server = Server::Done;
                    }
                    return Step { consumed: used + step.consumed, ..step };
                }
                Server::Greeting | Server::Replies => {}
            }
            let Some(n) = line_len(rest) else {
                let plausible = rest.iter().take(3).all(u8::is_ascii_digit)
                    && rest.get(3).is_none_or(|b| matches!(b, b' ' | b'-' | b'\r'));
                if rest.len() > MAX_REPLY || !plausible {
                    return Step::mismatch(identify::guess(rest, false), "not an SMTP reply");
                }
                return Step::more(used);
            };
            if n > MAX_REPLY {
                return Step::mismatch(identify::guess(rest, false), "SMTP reply line too long");
            }
            if let Err(step) = self.reply_line(trim_eol(&rest[..n]), rest) {
                return step;
            }
            used += n;
        }
    }

    fn reply_line(&mut self, line: &[u8], rest: &[u8]) -> Result<(), Step> {
        let not_smtp = |why| Step::mismatch(identify::guess(rest, false), why);
        let code_ok = matches!(line, [a, b, c, ..] if (b'2'..=b'5').contains(a) && (b'0'..=b'5').contains(b) && c.is_ascii_digit());
        let sep = line.get(3).copied();
        if !code_ok || !matches!(sep, None | Some(b' ' | b'-')) || !printable(line.get(4..).unwrap_or(&[])) {
            return Err(not_smtp("not an SMTP reply"));
        }
        let code = [line[0], line[1], line[2]];
        let keyword = line.get(4..).and_then(|t| t.split(|b| *b == b' ').next());
        if &code == b"250" && keyword.is_some_and(|k| k.eq_ignore_ascii_case(b"CHUNKING")) {
            self.chunking = true;
        }
        if self.multi.is_some_and(|m| m != code) {
            return Err(Step::mismatch(Seen::Smtp, "SMTP multi-line reply changes its code"));
        }
        if sep == Some(b'-') {
            self.multi = Some(code);
            return Ok(());
        }
        self.multi = None;
        if self.server == Server::Greeting {
            if !matches!(&code, b"220" | b"554" | b"421") {
                return Err(not_smtp("SMTP greeting is not 220"));
            }
            self.server = Server::Replies;
            return Ok(());
        }
        if self.pending == 0 {
            // Only a server closing the session speaks unasked (421, 554).
            return if code[0] == b'4' || code[0] == b'5' {
                Ok(())
            } else {
                Err(Step::mismatch(Seen::Smtp, "SMTP reply without a command"))
            };
        }
        self.pending -= 1;
        self.replied = true;
        if self.pending > 0 {
            return Ok(());
        }
        match std::mem::replace(&mut self.special, Special::None) {
            Special::Data if &code == b"354" => {
                if self.text_leg {
                    self.client = Client::Data;
                } else {
                    self.client = Client::Done;
                    self.server = Server::Done;
                }
            }
            Special::StartTls if &code == b"220" => {
                self.client = Client::Tls;
                self.server = Server::Tls;
            }
            Special::Auth if &code == b"334" => self.auth_challenge = true,
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::validate::Outcome;

    fn env(text_leg: bool) -> Env<'static> {
        Env { service: None, text_leg, dns_threshold: 8 }
    }

    /// Feeds a conversation (true: client) whole; returns the first outcome that is not
    /// More, or More.
    fn talk(s: &mut Smtp, e: &Env<'_>, turns: &[(bool, &[u8])]) -> Outcome {
        for (client, bytes) in turns {
            let step = s.feed(e, *client, bytes);
            if step.outcome != Outcome::More {
                return step.outcome;
            }
            assert_eq!(
                step.consumed,
                bytes.len(),
                "whole lines are consumed: {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        Outcome::More
    }

    #[test]
    fn a_session_until_data_is_smtp() {
        let e = env(false);
        let mut s = Smtp::new(false);
        let o = talk(
            &mut s,
            &e,
            &[
                (false, b"220 mx.example ESMTP\r\n"),
                (true, b"EHLO client.example\r\n"),
                (false, b"250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
                (true, b"MAIL FROM:<a@example>\r\nRCPT TO:<b@example>\r\nDATA\r\n"),
                (false, b"250 ok\r\n250 ok\r\n"),
            ],
        );
        assert_eq!(o, Outcome::More);
        assert_eq!(s.feed(&e, false, b"354 go ahead\r\n"), Step::done(14));
        assert!(s.finished(true) && s.finished(false));
    }

    #[test]
    fn other_protocols_on_the_smtp_port() {
        let e = env(false);
        let cases: [(bool, &[u8], Seen); 4] = [
            (true, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Seen::Http),
            (true, b"\x16\x03\x01\x00\xc8\x01", Seen::Tls),
            (false, b"SSH-2.0-OpenSSH_9.6\r\n", Seen::Ssh),
            (true, b"CONNECT 10.0.0.1:25 HTTP/1.0\r\n", Seen::HttpConnect),
        ];
        for (from_initiator, data, seen) in cases {
            let outcome = Smtp::new(false).feed(&e, from_initiator, data).outcome;
            assert!(matches!(outcome, Outcome::Mismatch(s, _) if s == seen), "{outcome:?}");
        }
        // A command pipelined after DATA, before its reply.
        let mut s = Smtp::new(false);
        let o = talk(&mut s, &e, &[(false, b"220 x\r\n"), (true, b"DATA\r\nfrom here on a tunnel\r\n")]);
        assert!(matches!(o, Outcome::Mismatch(Seen::Smtp, _)), "{o:?}");
    }

    #[test]
    fn starttls_then_a_client_hello() {
        let e = env(false);
        let mut s = Smtp::new(false);
        let o = talk(
            &mut s,
            &e,
            &[
                (false, b"220 x\r\n"),
                (true, b"EHLO c\r\n"),
                (false, b"250 x\r\n"),
                (true, b"STARTTLS\r\n"),
                (false, b"220 go\r\n"),
            ],
        );
        assert_eq!(o, Outcome::More);
        let hello = crate::inspect::tls::tests::client_hello_record(&[]);
        assert_eq!(s.feed(&e, true, &hello), Step::done(hello.len()));
        assert_eq!(s.feed(&e, false, &[0x16, 3, 3, 0, 0x40]), Step::done(5));
        // ... and not plain text after it.
        let mut s = Smtp::new(false);
        talk(&mut s, &e, &[(false, b"220 x\r\n"), (true, b"STARTTLS\r\n"), (false, b"220 go\r\n")]);
        assert!(matches!(s.feed(&e, true, b"MAIL FROM:<a@b>\r\n").outcome, Outcome::Mismatch(..)));
        // On the text leg STARTTLS itself is refused.
        let mut s = Smtp::new(true);
        let o = talk(&mut s, &env(true), &[(false, b"220 x\r\n"), (true, b"STARTTLS\r\n")]);
        assert_eq!(o, Outcome::NotSanitized("STARTTLS on the text leg would hide the message"));
    }

    #[test]
    fn auth_challenges_are_answered_in_base64() {
        let e = env(false);
        let mut s = Smtp::new(false);
        let o = talk(
            &mut s,
            &e,
            &[
                (false, b"220 x\r\n"),
                (true, b"AUTH LOGIN\r\n"),
                (false, b"334 VXNlcm5hbWU6\r\n"),
                (true, b"dXNlcg==\r\n"),
                (false, b"334 UGFzc3dvcmQ6\r\n"),
                (true, b"cGFzcw==\r\n"),
                (false, b"235 ok\r\n"),
                (true, b"MAIL FROM:<a@b>\r\n"),
            ],
        );
        assert_eq!(o, Outcome::More);
    }

    const TEXT_MAIL: &[u8] = b"From: relay@sanitization.lab\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain text\r\n..leading dot\r\n.\r\n";
    const ATTACHMENT: &[u8] = b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n--B\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0x\r\n--B--\r\n.\r\n";

    fn text_leg_until_data() -> Smtp {
        let mut s = Smtp::new(true);
        let o = talk(
            &mut s,
            &env(true),
            &[
                (false, b"220 lgwan ESMTP\r\n"),
                (true, b"EHLO relay\r\n"),
                (false, b"250 ok\r\n"),
                (true, b"MAIL FROM:<a@b>\r\n"),
                (false, b"250 ok\r\n"),
                (true, b"RCPT TO:<c@d>\r\n"),
                (false, b"250 ok\r\n"),
                (true, b"DATA\r\n"),
                (false, b"354 go\r\n"),
            ],
        );
        assert_eq!(o, Outcome::More);
        s
    }

    #[test]
    fn the_text_leg_follows_every_message() {
        let e = env(true);
        let mut s = text_leg_until_data();
        assert_eq!(s.feed(&e, true, TEXT_MAIL), Step::more(TEXT_MAIL.len()));
        assert_eq!(
            talk(&mut s, &e, &[(false, b"250 queued\r\n"), (true, b"MAIL FROM:<a@b>\r\n")]),
            Outcome::More
        );
        assert!(!s.finished(true), "the text leg is followed to its end");
        let mut s = text_leg_until_data();
        // Cut before the end of data reaches the server, wherever the segments split it.
        for cut in [10, 60, 120] {
            let mut s2 = text_leg_until_data();
            let first = s2.feed(&e, true, &ATTACHMENT[..cut]);
            let o = if first.outcome == Outcome::More {
                s2.feed(&e, true, &ATTACHMENT[first.consumed..]).outcome
            } else {
                first.outcome
            };
            assert_eq!(o, Outcome::NotSanitized("part is not text/plain"), "cut {cut}");
        }
        assert_eq!(s.feed(&e, true, ATTACHMENT).outcome, Outcome::NotSanitized("part is not text/plain"));
    }

    #[test]
    fn bdat_chunks_on_the_text_leg() {
        let e = env(true);
        let body = b"Content-Type: text/html\r\n\r\n<p>x</p>\r\n";
        let mut two = b"BDAT 10\r\n".to_vec();
        two.extend(&body[..10]);
        two.extend(format!("BDAT {} LAST\r\n", body.len() - 10).as_bytes());
        two.extend(&body[10..]);
        let chunking: &[(bool, &[u8])] =
            &[(false, b"220 x\r\n"), (true, b"EHLO r\r\n"), (false, b"250-x\r\n250 CHUNKING\r\n")];
        let mut s = Smtp::new(true);
        talk(&mut s, &e, chunking);
        assert_eq!(s.feed(&e, true, &two).outcome, Outcome::NotSanitized("part is not text/plain"));
        let text = b"Subject: hi\r\n\r\nhello\r\n";
        let mut ok = format!("BDAT {} LAST\r\n", text.len()).into_bytes();
        ok.extend(text);
        let mut s = Smtp::new(true);
        talk(&mut s, &e, chunking);
        assert_eq!(s.feed(&e, true, &ok), Step::more(ok.len()));
        // Not to a server that did not announce CHUNKING: it would read the chunk as
        // commands.
        let mut s = Smtp::new(true);
        talk(&mut s, &e, &[(false, b"220 x\r\n"), (true, b"EHLO r\r\n"), (false, b"250 x\r\n")]);
        assert_eq!(
            s.feed(&e, true, &ok).outcome,
            Outcome::NotSanitized("BDAT to a server that did not announce CHUNKING")
        );
        // Elsewhere BDAT starts the message: nothing after it is checked.
        let mut s = Smtp::new(false);
        talk(&mut s, &env(false), &[(false, b"220 x\r\n")]);
        assert_eq!(s.feed(&env(false), true, &two), Step::done(9));
    }
}
