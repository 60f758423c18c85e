//! The validators under random streams: on every inspected leg (SMTP to the relay, the
//! text leg into LGWAN, RDP, SSH, TLS by server name, HTTP, DNS), random interleavings of
//! client and server segments built from protocol fragments, bit flips and random bytes.
//! Whatever an attacker sends: no panic, a forwarded segment always carries an allow
//! reason, and a connection cut for its content stays cut.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use sekisho_engine::{Action, Engine, Ingress, Now};
use sekisho_testkit::flags::*;
use sekisho_testkit::*;

/// The common policy plus a TLS service checked by server name and an HTTP proxy leg.
fn random_policy() -> String {
    format!("{POLICY}{}", breakout_and_proxy("http"))
}

/// An inspected leg: the client, the server, the zone whose port the client's frames
/// enter (inside) and the server's come back through (outside), the verdict's name.
struct Leg {
    client: &'static str,
    server: (&'static str, u16),
    zone: &'static str,
    allowed: &'static str,
    /// Fragments of what the client and the server of this protocol send.
    client_words: &'static [&'static [u8]],
    server_words: &'static [&'static [u8]],
}

const SMTP_CLIENT: &[&[u8]] = &[
    b"EHLO client.example\r\n",
    b"HELO c\r\n",
    b"MAIL FROM:<a@example.com>\r\n",
    b"RCPT TO:<b@example.lg.jp>\r\n",
    b"DATA\r\n",
    b"BDAT 12 LAST\r\n",
    b"STARTTLS\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"AUTH PLAIN AGEAYg==\r\n",
    b"Subject: =?UTF-8?B?5pel5pys?=\r\n",
    b"MIME-Version: 1.0\r\n",
    b"Content-Type: text/plain; charset=UTF-8\r\n",
    b"Content-Type: multipart/mixed; boundary=\"b\"\r\n",
    b"Content-Type: application/octet-stream\r\n",
    b"Content-Disposition: attachment; filename=x.exe\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: 7bit\r\n",
    b" folded\r\n",
    b"--b\r\n",
    b"--b--\r\n",
    b"begin 644 x.bin\r\n",
    b"TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n",
    b"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\r\n",
    b"..dot\r\n",
    b"\r\n",
    b".\r\n",
    b"\r\n.\r\n",
];

const SMTP_SERVER: &[&[u8]] = &[
    b"220 relay ESMTP\r\n",
    b"250-relay\r\n",
    b"250-PIPELINING\r\n",
    b"250-CHUNKING\r\n",
    b"250 8BITMIME\r\n",
    b"250 ok\r\n",
    b"354 go ahead\r\n",
    b"220 ready to start TLS\r\n",
    b"221 bye\r\n",
    b"421 closing\r\n",
    b"500 what\r\n",
];

const RDP_CLIENT: &[&[u8]] = &[
    b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00",
    b"\x03\x00\x00\x2a\x25\xe0\x00\x00\x00\x00\x00Cookie: mstshash=user\r\n",
    b"\x16\x03\x01\x00\x40\x01\x00\x00\x3c\x03\x03",
    b"\x30\x82\x01\x00\xa0\x03\x02\x01\x06",
    b"\x17\x03\x03\x00\x10",
];

const RDP_SERVER: &[&[u8]] = &[
    b"\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\x02\x1f\x08\x00\x02\x00\x00\x00",
    b"\x16\x03\x03\x00\x31\x02\x00\x00\x2d\x03\x03",
    b"\x17\x03\x03\x00\x10",
];

const SSH_CLIENT: &[&[u8]] =
    &[b"SSH-2.0-OpenSSH_9.6\r\n", b"SSH-1.99-old\r\n", b"\x00\x00\x01\x2c\x0a\x14", b"GET / HTTP/1.1\r\n"];

const SSH_SERVER: &[&[u8]] = &[b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n", b"\x00\x00\x01\x2c\x0a\x14"];

const TLS_CLIENT: &[&[u8]] = &[
    b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    b"\x00\x00\x00\x18\x00\x16\x00\x00\x13portal.example.lg.jp",
    b"\x00\x00\x00\x12\x00\x10\x00\x00\x0dwww.evil.test",
    b"\xfe\x0d\x00\x04\x00\x01\x00\x01",
    b"\x00\x10\x00\x05\x00\x03\x02h2",
    b"\x00\x2b\x00\x03\x02\x03\x04",
    b"\x14\x03\x03\x00\x01\x01",
    b"\x17\x03\x03\x00\x20",
];

const TLS_SERVER: &[&[u8]] =
    &[b"\x16\x03\x03\x00\x5a\x02\x00\x00\x56\x03\x03", b"\x14\x03\x03\x00\x01\x01", b"\x17\x03\x03\x00\x20"];

const HTTP_CLIENT: &[&[u8]] = &[
    b"GET http://portal.example.lg.jp/ HTTP/1.1\r\n",
    b"CONNECT evil.test:443 HTTP/1.1\r\n",
    b"connect evil.test:443 HTTP/1.1\r\n",
    b"POST /upload HTTP/1.0\r\n",
    b"Host: portal.example.lg.jp\r\n",
    b"Content-Length: 4\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"\r\n",
];

const HTTP_SERVER: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 200 Connection established\r\n",
    b"Content-Length: 4\r\n",
    b"\r\n",
    b"body",
];

fn legs() -> [Leg; 6] {
    [
        Leg {
            client: "203.0.113.7",
            server: ("198.18.40.10", 25),
            zone: "internet",
            allowed: "allow:path:mail-textify/1",
            client_words: SMTP_CLIENT,
            server_words: SMTP_SERVER,
        },
        Leg {
            client: "198.18.40.10",
            server: ("198.18.20.25", 25),
            zone: "sanitization",
            allowed: "allow:path:mail-textify/2",
            client_words: SMTP_CLIENT,
            server_words: SMTP_SERVER,
        },
        Leg {
            client: "198.18.20.5",
            server: ("203.0.113.50", 3389),
            zone: "lgwan",
            allowed: "allow:path:screen-transfer/1",
            client_words: RDP_CLIENT,
            server_words: RDP_SERVER,
        },
        Leg {
            client: "198.18.10.5",
            server: ("198.18.20.30", 22),
            zone: "mynumber",
            allowed: "allow:exception:juki-batch",
            client_words: SSH_CLIENT,
            server_words: SSH_SERVER,
        },
        Leg {
            client: "198.18.20.5",
            server: ("203.0.113.80", 443),
            zone: "lgwan",
            allowed: "allow:path:alpha-prime/1",
            client_words: TLS_CLIENT,
            server_words: TLS_SERVER,
        },
        Leg {
            client: "198.18.20.5",
            server: ("198.18.40.30", 8080),
            zone: "lgwan",
            allowed: "allow:path:web/1",
            client_words: HTTP_CLIENT,
            server_words: HTTP_SERVER,
        },
    ]
}

/// One piece of a segment's payload.
#[derive(Clone, Debug)]
enum Piece {
    /// A protocol fragment of the sending side (index into its words).
    Word(usize),
    /// A protocol fragment with one byte changed.
    Flipped(usize, usize, u8),
    /// Random bytes.
    Bytes(Vec<u8>),
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        6 => any::<usize>().prop_map(Piece::Word),
        2 => (any::<usize>(), any::<usize>(), any::<u8>()).prop_map(|(w, at, b)| Piece::Flipped(w, at, b)),
        1 => proptest::collection::vec(any::<u8>(), 1..96).prop_map(Piece::Bytes),
    ]
}

/// A segment: from the client (true) or the server, and its payload's pieces.
fn segments() -> impl Strategy<Value = Vec<(bool, Vec<Piece>)>> {
    proptest::collection::vec((any::<bool>(), proptest::collection::vec(piece(), 1..6)), 1..14)
}

fn payload(words: &[&[u8]], pieces: &[Piece]) -> Vec<u8> {
    let mut p = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Word(w) => p.extend_from_slice(words[w % words.len()]),
            Piece::Flipped(w, at, b) => {
                let word = words[w % words.len()];
                let start = p.len();
                p.extend_from_slice(word);
                p[start + at % word.len()] = *b;
            }
            Piece::Bytes(b) => p.extend_from_slice(b),
        }
    }
    p
}

fn engine() -> Engine {
    Engine::new(policy(&random_policy()))
}

/// What one random connection got: data segments forwarded, and whether it was cut for
/// its content.
#[derive(Default)]
struct Outcome {
    forwarded: usize,
    cut: bool,
}

/// Runs one random connection on `leg`; returns an error naming the broken promise.
fn run(e: &Engine, leg: &Leg, sport: u16, segs: &[(bool, Vec<Piece>)]) -> Result<Outcome, TestCaseError> {
    let mut c = TcpConn::new((leg.client, sport), leg.server);
    let (client_at, server_at): (Ingress, Ingress) = (inside(leg.zone), outside(leg.zone));
    for (at, f) in [(client_at, c.syn()), (server_at, c.syn_ack()), (client_at, c.client(ACK, b""))] {
        let v = e.process(Now::at(NOW), at, &f);
        prop_assert_eq!((v.action, name(e, &v)), (Action::Forward, leg.allowed.to_owned()), "handshake");
    }
    let mut cut: Option<String> = None;
    let mut forwarded = 0;
    for (from_client, pieces) in segs {
        let (frame, at) = if *from_client {
            (c.client(ACK | PSH, &payload(leg.client_words, pieces)), client_at)
        } else {
            (c.server(ACK | PSH, &payload(leg.server_words, pieces)), server_at)
        };
        let v = e.process(Now::at(NOW), at, &frame);
        let reason = name(e, &v);
        if v.action == Action::Forward {
            prop_assert!(reason.starts_with("allow:"), "forwarded with {}", reason);
            prop_assert!(cut.is_none(), "forwarded ({}) after the connection was cut by {:?}", reason, cut);
            forwarded += 1;
        } else if matches!(reason.as_str(), "deny:app-mismatch" | "deny:not-sanitized") {
            cut.get_or_insert(reason);
        }
    }
    Ok(Outcome { forwarded, cut: cut.is_some() })
}

/// The generator is not blind: on every leg, some random connections carry data through
/// and some are cut for their content (else the properties below could not fail).
#[test]
fn the_random_streams_reach_both_verdicts_on_every_leg() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = segments();
    for leg in &legs() {
        let e = engine();
        let (mut forwarded, mut cut) = (0, 0);
        for i in 0..64 {
            let segs = strategy.new_tree(&mut runner).expect("a value").current();
            let o = run(&e, leg, 30000 + i, &segs).unwrap_or_else(|err| panic!("{}: {err}", leg.allowed));
            forwarded += usize::from(o.forwarded > 0);
            cut += usize::from(o.cut);
        }
        assert!(
            forwarded > 0 && cut > 0,
            "{}: {forwarded} connections carried data, {cut} were cut",
            leg.allowed
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_streams_on_every_inspected_leg(segs in segments(), which in 0usize..6) {
        let e = engine();
        let legs = legs();
        run(&e, &legs[which], 40000, &segs)?;
    }

    /// Many connections through one engine: the inspection table's states are made,
    /// reused and freed under random content.
    #[test]
    fn random_streams_share_one_engine(conns in proptest::collection::vec((0usize..6, segments()), 1..12)) {
        let e = engine();
        let legs = legs();
        for (i, (which, segs)) in conns.iter().enumerate() {
            run(&e, &legs[*which], 40000 + i as u16, segs)?;
        }
    }

    /// DNS datagrams from an lgwan host to its resolver: random and query-shaped bytes.
    #[test]
    fn random_dns_datagrams(datagrams in proptest::collection::vec(
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            (any::<u16>(), "[a-z0-9]{1,63}(\\.[a-z0-9]{1,63}){0,3}", any::<u16>())
                .prop_map(|(id, name, qtype)| dns_query(id, &name, qtype)),
        ],
        1..20,
    )) {
        let e = engine();
        let at = inside("lgwan");
        for (i, d) in datagrams.iter().enumerate() {
            let f = ip_frame("198.18.20.5", "198.18.40.53", 17, 64, &udp_datagram(50000 + i as u16 % 4, 53, d));
            let v = e.process(Now::at(NOW), at, &f);
            let reason = name(&e, &v);
            prop_assert!(v.action == Action::Drop || reason.starts_with("allow:"), "forwarded with {}", reason);
        }
    }
}
