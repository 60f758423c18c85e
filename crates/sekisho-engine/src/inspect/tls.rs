//! TLS: the client's ClientHello must be well formed (RFC 8446 section 4.1.2; the record
//! layer may split it into several records, the network into several segments), its
//! server name (SNI), ALPN and an Encrypted Client Hello are read out; the server's first
//! record must be a handshake or an alert record. A service with `sni_allow` passes only a
//! ClientHello whose server name is on the list: no name, an IP literal or ECH are refused;
//! after a HelloRetryRequest the second ClientHello is checked alike.

use std::net::IpAddr;

use super::validate::{side, Env, Outcome, Step};
use super::{identify, Seen};

const HANDSHAKE: u8 = 22;
const ALERT: u8 = 21;
const CLIENT_HELLO: u8 = 1;
/// Largest TLSPlaintext fragment (2^14), plus the slack RFC 8446 allows ciphertext.
const MAX_RECORD: usize = 16_384 + 2048;
/// Records a ClientHello may be split into.
const MAX_RECORDS: usize = 64;
/// Extensions a ClientHello may carry.
const MAX_EXTENSIONS: usize = 64;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_ECH: u16 = 0xfe0d;

/// What the ClientHello said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hello {
    /// The host name of the server_name extension (at most 255 bytes).
    pub sni: Option<Name>,
    /// The first protocol the ALPN extension offers (at most 32 bytes).
    pub alpn: Option<Name>,
    /// An `encrypted_client_hello` extension: the real server name is hidden.
    pub ech: bool,
    /// An SSLv2-compatible ClientHello (no extensions).
    pub sslv2: bool,
}

/// A short byte string held inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Name {
    bytes: [u8; 255],
    len: u8,
}

impl Name {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// Reads the handshake bytes carried by a run of records, across record boundaries.
struct Reader<'a> {
    data: &'a [u8],
    /// (start, length) of each record's fragment in `data`.
    frags: &'a [(usize, usize)],
    frag: usize,
    off: usize,
    /// Handshake bytes left in the message being parsed.
    left: usize,
}

type Parse<T> = Result<T, &'static str>;

const SHORT: &str = "ClientHello shorter than its lengths say";

impl Reader<'_> {
    fn u8(&mut self) -> Parse<u8> {
        if self.left == 0 {
            return Err(SHORT);
        }
        while let Some(&(start, len)) = self.frags.get(self.frag) {
            if self.off < len {
                let b = self.data.get(start + self.off).copied().ok_or(SHORT)?;
                self.off += 1;
                self.left -= 1;
                return Ok(b);
            }
            self.frag += 1;
            self.off = 0;
        }
        Err(SHORT)
    }

    fn u16(&mut self) -> Parse<u16> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    fn u24(&mut self) -> Parse<usize> {
        Ok((usize::from(self.u8()?) << 16) | (usize::from(self.u8()?) << 8) | usize::from(self.u8()?))
    }

    fn skip(&mut self, mut n: usize) -> Parse<()> {
        if n > self.left {
            return Err(SHORT);
        }
        while n > 0 {
            let &(_, len) = self.frags.get(self.frag).ok_or(SHORT)?;
            let here = (len - self.off).min(n);
            self.off += here;
            self.left -= here;
            n -= here;
            if self.off == len {
                self.frag += 1;
                self.off = 0;
            }
        }
        Ok(())
    }

    /// Reads `n` bytes into a [`Name`] (at most 255 are kept; `n` must not exceed it).
    fn name(&mut self, n: usize) -> Parse<Name> {
        let mut name = Name { bytes: [0; 255], len: 0 };
        if n > name.bytes.len() {
            return Err("ClientHello name longer than 255 bytes");
        }
        for b in name.bytes.iter_mut().take(n) {
            *b = self.u8()?;
        }
        name.len = n as u8;
        Ok(name)
    }
}

/// The records at the start of `data` that hold the first handshake message, when they
/// are all there: the fragments, the message length and the bytes the records span.
/// `Ok(None)`: more bytes are needed.
fn handshake_records(
    data: &[u8],
    frags: &mut [(usize, usize); MAX_RECORDS],
) -> Parse<Option<(usize, usize, usize)>> {
    let mut pos = 0;
    let mut n = 0;
    let mut have = 0;
    loop {
        let Some(h) = data.get(pos..pos + 5) else { return Ok(None) };
        if h[0] != HANDSHAKE {
            return Err("not a TLS handshake record");
        }
        if h[1] != 3 || h[2] > 4 {
            return Err("TLS record version is not 3.x");
        }
        let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
        if len == 0 || len > MAX_RECORD {
            return Err("TLS record length out of range");
        }
        if n == MAX_RECORDS {
            return Err("ClientHello split into too many records");
        }
        let end = pos + 5 + len;
        // What of this record is there so far.
        let avail = data.len().saturating_sub(pos + 5).min(len);
        frags[n] = (pos + 5, avail);
        n += 1;
        have += avail;
        // The handshake header: type and 24-bit length, possibly across records.
        let header = |frags: &[(usize, usize)]| {
            let mut r = Reader { data, frags, frag: 0, off: 0, left: 4 };
            Some((r.u8().ok()?, r.u24().ok()?))
        };
        if have >= 4 {
            let (ty, msg_len) = header(&frags[..n]).ok_or(SHORT)?;
            if ty != CLIENT_HELLO {
                return Err("first handshake message is not a ClientHello");
            }
            if data.len() >= end && have >= 4 + msg_len {
                if have > 4 + msg_len {
                    return Err("data after the ClientHello in its record");
                }
                return Ok(Some((n, msg_len, end)));
            }
        }
        if data.len() < end {
            return Ok(None);
        }
        pos = end;
    }
}

fn is_host_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// Whether a server name is an IP address written as text (RFC 6066 forbids it).
pub(crate) fn is_ip_literal(name: &[u8]) -> bool {
    std::str::from_utf8(name).is_ok_and(|s| {
        let s = s.trim_start_matches('[').trim_end_matches(']');
        s.parse::<IpAddr>().is_ok() || s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    })
}

/// Parses an SSLv2-compatible ClientHello (RFC 6101 appendix E.2).
fn sslv2_hello(data: &[u8]) -> Parse<Option<(Hello, usize)>> {
    let Some(h) = data.get(..11) else { return Ok(None) };
    let len = (usize::from(h[0] & 0x7f) << 8) | usize::from(h[1]);
    let ciphers = usize::from(u16::from_be_bytes([h[5], h[6]]));
    let session = usize::from(u16::from_be_bytes([h[7], h[8]]));
    let challenge = usize::from(u16::from_be_bytes([h[9], h[10]]));
    let version_ok = h[3] == 0 && h[4] == 2 || h[3] == 3 && h[4] <= 4;
    if h[2] != CLIENT_HELLO
        || !version_ok
        || ciphers == 0
        || ciphers % 3 != 0
        || !matches!(session, 0 | 16)
        || !(16..=32).contains(&challenge)
        || len != 9 + ciphers + session + challenge
    {
        return Err("malformed SSLv2-compatible ClientHello");
    }
    if data.len() < 2 + len {
        return Ok(None);
    }
    Ok(Some((Hello { sni: None, alpn: None, ech: false, sslv2: true }, 2 + len)))
}

/// Parses the ClientHello at the start of `data` (the client's first bytes). `Ok(None)`:
/// well formed so far, more bytes are needed. On success, the bytes its records span.
pub(crate) fn client_hello(data: &[u8]) -> Parse<Option<(Hello, usize)>> {
    match data.first() {
        None => return Ok(None),
        Some(b) if b & 0x80 != 0 => return sslv2_hello(data),
        Some(_) => {}
    }
    let mut frags = [(0usize, 0usize); MAX_RECORDS];
    let Some((n, msg_len, end)) = handshake_records(data, &mut frags)? else { return Ok(None) };
    let mut r = Reader { data, frags: &frags[..n], frag: 0, off: 0, left: 4 + msg_len };
    r.skip(4)?;
    let version = r.u16()?;
    if !(0x0300..=0x0304).contains(&version) {
        return Err("ClientHello version is not 3.x");
    }
    r.skip(32)?;
    let session = usize::from(r.u8()?);
    if session > 32 {
        return Err("ClientHello session id longer than 32 bytes");
    }
    r.skip(session)?;
    let suites = usize::from(r.u16()?);
    if suites < 2 || suites % 2 != 0 {
        return Err("ClientHello cipher suite list malformed");
    }
    r.skip(suites)?;
    let methods = usize::from(r.u8()?);
    if methods == 0 {
        return Err("ClientHello without compression methods");
    }
    r.skip(methods)?;
    let mut hello = Hello { sni: None, alpn: None, ech: false, sslv2: false };
    if r.left == 0 {
        return Ok(Some((hello, end)));
    }
    let ext_len = usize::from(r.u16()?);
    if ext_len != r.left {
        return Err("ClientHello extensions do not fill the message");
    }
    let mut seen = [0u16; MAX_EXTENSIONS];
    let mut count = 0;
    while r.left > 0 {
        let ty = r.u16()?;
        let len = usize::from(r.u16()?);
        if len > r.left {
            return Err(SHORT);
        }
        if seen[..count].contains(&ty) {
            return Err("ClientHello repeats an extension");
        }
        if count == MAX_EXTENSIONS {
            return Err("ClientHello has too many extensions");
        }
        seen[count] = ty;
        count += 1;
        let after = r.left - len;
        match ty {
            EXT_SERVER_NAME => {
                let list = usize::from(r.u16()?);
                if list + 2 != len {
                    return Err("server_name list length malformed");
                }
                while r.left > after {
                    let kind = r.u8()?;
                    let name_len = usize::from(r.u16()?);
                    if kind != 0 || hello.sni.is_some() || name_len == 0 {
                        return Err("server_name is not one host name");
                    }
                    let name = r.name(name_len)?;
                    if !is_host_name(name.as_bytes()) {
                        return Err("server_name is not a host name");
                    }
                    hello.sni = Some(name);
                }
            }
            EXT_ALPN => {
                let list = usize::from(r.u16()?);
                if list + 2 != len || list == 0 {
                    return Err("ALPN list length malformed");
                }
                while r.left > after {
                    let l = usize::from(r.u8()?);
                    if l == 0 {
                        return Err("empty ALPN protocol name");
                    }
                    if hello.alpn.is_none() && l <= 32 {
                        hello.alpn = Some(r.name(l)?);
                    } else {
                        r.skip(l)?;
                    }
                }
            }
            EXT_ECH => {
                hello.ech = true;
                r.skip(len)?;
            }
            _ => r.skip(len)?,
        }
        if r.left != after {
            return Err("ClientHello extension longer than its length");
        }
    }
    Ok(Some((hello, end)))
}

/// Checks the server's first bytes: a TLS handshake or alert record header (or an SSLv2
/// ServerHello). `Ok(None)`: more bytes are needed; `Ok(Some(n))`: fine, `n` bytes seen.
pub(crate) fn server_first(data: &[u8]) -> Parse<Option<usize>> {
    let Some(&first) = data.first() else { return Ok(None) };
    if first & 0x80 != 0 {
        // SSLv2 ServerHello: a two-byte length with the high bit set, then type 4.
        return match data.get(2) {
            None => Ok(None),
            Some(4) => Ok(Some(3)),
            Some(_) => Err("server's SSLv2 record is not a ServerHello"),
        };
    }
    if first != HANDSHAKE && first != ALERT {
        return Err("server's first bytes are not a TLS record");
    }
    if data.get(1).is_some_and(|v| *v != 3) || data.get(2).is_some_and(|v| *v > 4) {
        return Err("server's TLS record version is not 3.x");
    }
    let Some(h) = data.get(..5) else { return Ok(None) };
    let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
    if len == 0 || len > MAX_RECORD {
        return Err("server's TLS record length out of range");
    }
    Ok(Some(5))
}

/// The server-name rule of a service with `sni_allow`.
pub(crate) fn check_server_name(env: &Env<'_>, hello: &Hello) -> Result<(), &'static str> {
    let Some(service) = env.service.filter(|s| !s.sni_allow.is_empty()) else { return Ok(()) };
    if hello.ech {
        return Err("Encrypted Client Hello hides the server name");
    }
    let Some(sni) = hello.sni else { return Err("ClientHello without a server name") };
    if is_ip_literal(sni.as_bytes()) {
        return Err("server name is an IP literal");
    }
    if !service.sni_allowed(sni.as_bytes()) {
        return Err("server name not in sni_allow");
    }
    Ok(())
}

/// The client's ClientHello as a validator step: done once it is complete and passes the
/// server-name rule.
pub(crate) fn client_step(env: &Env<'_>, data: &[u8]) -> Step {
    match client_hello(data) {
        Err(why) => Step::mismatch(identify::guess(data, true), why),
        Ok(None) => Step::more(0),
        Ok(Some((hello, n))) => match check_server_name(env, &hello) {
            Ok(()) => Step::done(n),
            Err(why) => Step::mismatch(Seen::Tls, why),
        },
    }
}

/// The server's first TLS bytes as a validator step.
pub(crate) fn server_step(data: &[u8]) -> Step {
    match server_first(data) {
        Err(why) => Step::mismatch(identify::guess(data, false), why),
        Ok(None) => Step::more(0),
        Ok(Some(n)) => Step::done(n),
    }
}

/// The random of a ServerHello that is a HelloRetryRequest (RFC 8446 section 4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2,
    0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];
const SERVER_HELLO: u8 = 2;
const CHANGE_CIPHER_SPEC: u8 = 20;

/// Whether the server's first record is a HelloRetryRequest: `Ok(None)` until its
/// ServerHello's random has arrived.
fn hello_retry(data: &[u8]) -> Parse<Option<bool>> {
    if data.first() != Some(&HANDSHAKE) {
        // An alert or an SSLv2 ServerHello: no retry.
        return Ok(Some(false));
    }
    // Record header (5), handshake type and length (4), legacy version (2), random (32).
    let Some(h) = data.get(..43) else { return Ok(None) };
    if h[5] != SERVER_HELLO {
        return Err("server's first handshake message is not a ServerHello");
    }
    Ok(Some(h[11..43] == HRR_RANDOM))
}

/// The TLS validator: the ClientHello, then the server's first record. Where the
/// service checks server names, the client side stays open until the server's
/// ServerHello says whether it asks for a second ClientHello (a HelloRetryRequest),
/// whose server name is checked too.
#[derive(Debug, Default)]
pub(crate) struct Tls {
    done: [bool; 2],
    /// The first ClientHello passed the server-name rule; its answer is awaited.
    first_hello: bool,
    /// The server's answer: a HelloRetryRequest or not.
    retry: Option<bool>,
}

impl Tls {
    pub(crate) fn finished(&self, from_initiator: bool) -> bool {
        if from_initiator {
            self.done[0] || (self.first_hello && self.retry == Some(false))
        } else {
            self.done[1]
        }
    }

    pub(crate) fn feed(&mut self, env: &Env<'_>, from_initiator: bool, data: &[u8]) -> Step {
        let names = env.service.is_some_and(|s| !s.sni_allow.is_empty());
        let step = match (from_initiator, names) {
            (true, true) => self.client_checking_names(env, data),
            (true, false) => client_step(env, data),
            (false, true) => match hello_retry(data) {
                Err(why) => Step::mismatch(identify::guess(data, false), why),
                Ok(None) => Step::more(0),
                Ok(Some(retry)) => {
                    self.retry = Some(retry);
                    server_step(data)
                }
            },
            (false, false) => server_step(data),
        };
        if step.outcome == Outcome::Done {
            self.done[side(from_initiator)] = true;
        }
        step
    }

    /// The client's side where server names are checked: the first ClientHello; after a
    /// HelloRetryRequest, a change-cipher-spec record (middlebox compatibility) and the
    /// second ClientHello, checked alike. Bytes after the first hello wait (unconsumed,
    /// within the depth) until the server's answer is known.
    fn client_checking_names(&mut self, env: &Env<'_>, data: &[u8]) -> Step {
        if !self.first_hello {
            let step = client_step(env, data);
            if step.outcome != Outcome::Done {
                return step;
            }
            self.first_hello = true;
            return Step::more(step.consumed);
        }
        match self.retry {
            None => Step::more(0),
            Some(false) => Step::done(0),
            Some(true) => {
                let Some(h) = data.get(..5) else { return Step::more(0) };
                if h[0] == CHANGE_CIPHER_SPEC {
                    let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
                    if len != 1 {
                        return Step::mismatch(Seen::Unknown, "change cipher spec record of wrong length");
                    }
                    return if data.len() >= 6 { Step::more(6) } else { Step::more(0) };
                }
                client_step(env, data)
            }
        }
    }

    pub(crate) fn at_depth(&self, env: &Env<'_>, from_initiator: bool) -> Outcome {
        at_depth(env, from_initiator)
    }
}

/// A ClientHello longer than the inspection depth: kept, unless its server name had to
/// be checked.
pub(crate) fn at_depth(env: &Env<'_>, from_initiator: bool) -> Outcome {
    if from_initiator && env.service.is_some_and(|s| !s.sni_allow.is_empty()) {
        Outcome::Mismatch(Seen::Tls, "ClientHello longer than the inspection depth: server name unchecked")
    } else {
        Outcome::Done
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ClientHello record with these extensions (type, data), in one record.
    pub(crate) fn client_hello_record(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend([0x11; 32]);
        body.push(32);
        body.extend([0x22; 32]);
        body.extend([0x00, 0x04, 0x13, 0x01, 0x13, 0x02]);
        body.extend([0x01, 0x00]);
        let mut e = Vec::new();
        for (ty, data) in exts {
            e.extend(ty.to_be_bytes());
            e.extend((data.len() as u16).to_be_bytes());
            e.extend(data);
        }
        body.extend((e.len() as u16).to_be_bytes());
        body.extend(e);
        let mut hs = vec![CLIENT_HELLO];
        hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend(body);
        let mut rec = vec![HANDSHAKE, 3, 1];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    pub(crate) fn sni(name: &str) -> (u16, Vec<u8>) {
        let mut d = ((name.len() + 3) as u16).to_be_bytes().to_vec();
        d.push(0);
        d.extend((name.len() as u16).to_be_bytes());
        d.extend(name.as_bytes());
        (EXT_SERVER_NAME, d)
    }

    pub(crate) fn alpn(p: &str) -> (u16, Vec<u8>) {
        let mut d = ((p.len() + 1) as u16).to_be_bytes().to_vec();
        d.push(p.len() as u8);
        d.extend(p.as_bytes());
        (EXT_ALPN, d)
    }

    /// Splits one record's handshake bytes into records of at most `size` bytes.
    fn resplit(record: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in record[5..].chunks(size) {
            out.extend([HANDSHAKE, 3, 3]);
            out.extend((chunk.len() as u16).to_be_bytes());
            out.extend(chunk);
        }
        out
    }

    #[test]
    fn client_hello_with_sni_and_alpn() {
        let rec = client_hello_record(&[sni("portal.example.lg.jp"), alpn("h2"), (0x002b, vec![2, 3, 4])]);
        let (h, n) = client_hello(&rec).unwrap().unwrap();
        assert_eq!(n, rec.len());
        assert_eq!(h.sni.unwrap().as_bytes(), b"portal.example.lg.jp");
        assert_eq!(h.alpn.unwrap().as_bytes(), b"h2");
        assert!(!h.ech && !h.sslv2);
        // Every prefix needs more bytes, never fails.
        for cut in 0..rec.len() {
            assert_eq!(client_hello(&rec[..cut]), Ok(None), "prefix {cut}");
        }
        // Across records of 7 bytes, also with a trailing record.
        let split = resplit(&rec, 7);
        let (h2, n2) = client_hello(&split).unwrap().unwrap();
        assert_eq!((h2.sni, n2), (h.sni, split.len()));
        for cut in 0..split.len() {
            assert_eq!(client_hello(&split[..cut]), Ok(None), "prefix {cut} of the split hello");
        }
        let ech = client_hello_record(&[sni("public.example.com"), (EXT_ECH, vec![0; 40])]);
        assert!(client_hello(&ech).unwrap().unwrap().0.ech);
    }

    #[test]
    fn malformed_client_hellos() {
        let good = client_hello_record(&[sni("a.example")]);
        let mut bad_type = good.clone();
        bad_type[5] = 2;
        assert!(client_hello(&bad_type).is_err());
        let mut long_len = good.clone();
        long_len[4] = long_len[4].wrapping_add(1);
        long_len.push(0);
        assert!(client_hello(&long_len).is_err(), "nothing after the ClientHello in its record");
        assert!(client_hello(&client_hello_record(&[sni("a.example"), sni("b.example")])).is_err());
        assert!(client_hello(&client_hello_record(&[sni("a example")])).is_err());
        assert!(client_hello(b"GET / HTTP/1.1\r\n").is_err());
        assert!(client_hello(&[0x17, 3, 3, 0, 5]).is_err(), "application data first");
        assert!(client_hello(&[0x16, 2, 0, 0, 5]).is_err(), "record version 2.0");
        let sslv2 = [0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10];
        let mut v2 = sslv2.to_vec();
        v2.extend([0u8; 21 + 16]);
        let (h, n) = client_hello(&v2).unwrap().unwrap();
        assert!(h.sslv2 && h.sni.is_none());
        assert_eq!(n, v2.len());
    }

    #[test]
    fn server_first_records() {
        assert_eq!(server_first(&[0x16, 3, 3, 0, 0x7a]), Ok(Some(5)));
        assert_eq!(server_first(&[0x15, 3, 3, 0, 2]), Ok(Some(5)));
        assert_eq!(server_first(&[0x16, 3]), Ok(None));
        assert!(server_first(b"HTTP/1.1 400 Bad\r\n").is_err());
        assert!(server_first(&[0x16, 3, 3, 0, 0]).is_err());
    }

    #[test]
    fn ip_literals() {
        assert!(is_ip_literal(b"203.0.113.7"));
        assert!(is_ip_literal(b"2001:db8::1"));
        assert!(is_ip_literal(b"[2001:db8::1]"));
        assert!(!is_ip_literal(b"portal.example.lg.jp"));
    }
}
