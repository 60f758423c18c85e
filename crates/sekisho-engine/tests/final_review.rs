//! A last attacker's review of path inspection: the frames an internet host, a
//! compromised LGWAN host or a host at the relay's address sends to get bytes to a
//! receiver that the gate did not inspect (or inspected as something else), with the
//! verdict at every port each frame reaches.
//!
//! - `finding_*`: a way around the inspection rule found in this review. Un-ignored, the
//!   test holds the fix; `#[ignore = "finding: ..."]` marks one left open.
//! - `held_*`: attacks that were already refused (or legitimate traffic that still passes).
//!
//! The tests after the divider "a second review" come from a second review, of the fixes for classes
//! 37–42 themselves.

mod common;

use common::*;
use sekisho_engine::Action::{Drop, Forward};
use sekisho_engine::{Engine, FrameMeta, Gso, Ingress, Now, Verdict};
use sekisho_testkit::flags::*;
use sekisho_testkit::tls::{
    client_hello as hello, hello_retry_request, server_hello_start, sni, sni_names, CCS,
};
use sekisho_testkit::*;

const LG_TERM: &str = "198.18.20.5";
const CLOUD: &str = "203.0.113.80";
const PROXY: &str = "198.18.40.30";
const RELAY: &str = "198.18.40.10";
const LG_MAIL: &str = "198.18.20.25";
const BREAKOUT: &str = "allow:path:alpha-prime/1";
const WEB: &str = "allow:path:web/1";
const TEXT_LEG: &str = "allow:path:mail-textify/2";

/// The common policy plus an α' local-breakout path (lgwan → 203.0.113.80:443 by SNI) and
/// a web-isolation leg to an HTTP proxy (lgwan → 198.18.40.30:8080, `proxy_app`).
fn review_policy(proxy_app: &str) -> String {
    format!("{POLICY}{}", breakout_and_proxy(proxy_app))
}

fn review_engine() -> Engine {
    Engine::new(policy(&review_policy("http")))
}

/// One TCP connection across the two ports it crosses: the client's frames enter the
/// inside of its zone's port and leave through the outside of the server's; the server's
/// the other way round.
struct Leg<'e> {
    e: &'e Engine,
    c: TcpConn,
    client_hops: [Ingress; 2],
    server_hops: [Ingress; 2],
    allowed: &'static str,
}

impl<'e> Leg<'e> {
    /// The handshake, passing both ports.
    fn open(
        e: &'e Engine,
        client: (&str, u16),
        server: (&str, u16),
        zones: (&str, &str),
        allowed: &'static str,
    ) -> Leg<'e> {
        let c = TcpConn::new(client, server);
        let mut l = Leg {
            e,
            c,
            client_hops: [inside(zones.0), outside(zones.1)],
            server_hops: [inside(zones.1), outside(zones.0)],
            allowed,
        };
        let (syn, syn_ack) = (l.c.syn(), l.c.syn_ack());
        l.client_crosses(&syn);
        l.server_crosses(&syn_ack);
        let ack = l.c.client(ACK, b"");
        l.client_crosses(&ack);
        l
    }

    #[track_caller]
    fn client_crosses(&self, frame: &[u8]) {
        let [a, b] = self.client_hops;
        crossing(self.e, NOW, frame, &[(a, self.allowed), (b, self.allowed)]);
    }

    #[track_caller]
    fn server_crosses(&self, frame: &[u8]) {
        let [a, b] = self.server_hops;
        crossing(self.e, NOW, frame, &[(a, self.allowed), (b, self.allowed)]);
    }

    #[track_caller]
    fn client_passes(&mut self, data: &[u8]) {
        let f = self.c.client(ACK | PSH, data);
        self.client_crosses(&f);
    }

    #[track_caller]
    fn server_passes(&mut self, data: &[u8]) {
        let f = self.c.server(ACK | PSH, data);
        self.server_crosses(&f);
    }

    /// Sends the client's next data; it must be dropped at the first port with `reason`
    /// (and so reaches no other).
    #[track_caller]
    fn client_refused(&mut self, data: &[u8], reason: &str) -> Verdict {
        let f = self.c.client(ACK | PSH, data);
        expect(self.e, NOW, self.client_hops[0], &f, Drop, reason)
    }

    /// A frame from the client with explicit flags, sequence number, TTL and urgent
    /// pointer (acknowledging what the server sent).
    fn client_raw(&self, flags: u16, seq: u32, ttl: u8, urgent: u16, data: &[u8]) -> Vec<u8> {
        let (c, s) = (self.c.client_addr(), self.c.server_addr());
        let mut seg = tcp_segment_seq(c.1, s.1, flags, seq, self.c.server_next(), data);
        seg[18..20].copy_from_slice(&urgent.to_be_bytes());
        ip_frame(&c.0, &s.0, 6, ttl, &seg)
    }
}

/// lgwan terminal → the α' cloud service (lg-in, then in-out).
fn breakout(e: &Engine, port: u16) -> Leg<'_> {
    Leg::open(e, (LG_TERM, port), (CLOUD, 443), ("lgwan", "internet"), BREAKOUT)
}

/// An α' connection whose check is over: a hello for a listed name, the ServerHello's
/// start, both acknowledged; both inspection states freed.
fn checked_breakout(e: &Engine, port: u16) -> Leg<'_> {
    let mut c = breakout(e, port);
    c.client_passes(&hello(&[sni("portal.example.lg.jp")]));
    c.server_passes(&server_hello_start());
    let ack = c.c.client(ACK, b"");
    c.client_crosses(&ack);
    let ack = c.c.server(ACK, b"");
    c.server_crosses(&ack);
    assert_eq!(e.inspection_stats().active, 0, "both states freed");
    c
}

/// The relay delivering into LGWAN, the text leg of the mail path (sz-in, then lg-out),
/// after the greeting and EHLO; `chunking`: the server announces CHUNKING.
fn text_leg(e: &Engine, port: u16, chunking: bool) -> Leg<'_> {
    let mut m = Leg::open(e, (RELAY, port), (LG_MAIL, 25), ("sanitization", "lgwan"), TEXT_LEG);
    m.server_passes(b"220 mail.lgwan ESMTP\r\n");
    m.client_passes(b"EHLO relay.sanitization\r\n");
    if chunking {
        m.server_passes(b"250-mail.lgwan\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n");
    } else {
        m.server_passes(b"250-mail.lgwan\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
    }
    m
}

/// A message with a Windows executable as attachment, as the relay is meant to remove.
const ATTACHMENT: &[u8] = b"Subject: invoice\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: application/x-msdownload; name=\"invoice.exe\"\r\nContent-Disposition: attachment; filename=\"invoice.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n--XX--\r\n";

// ---- findings -----------------------------------------------------------------------------

/// A segment without data in the window moved the tracker's end of that direction, and
/// the stream of inspected bytes began where that end was at the first data. A bare ACK
/// (or a FIN whose TTL dies past the gate) with a sequence number a few kilobytes ahead,
/// sent before the first data, made everything up to there lie "before the stream": a
/// ClientHello for any name crossed α', a whole unsanitised mail crossed the text leg,
/// unread. The stream now begins at the direction's initial sequence number plus one.
#[test]
fn finding_a_bare_ack_or_fin_ahead_of_the_first_data_skipped_inspection() {
    let e = review_engine();
    let evil = hello(&[sni("evil.example.net")]);
    assert!(evil.len() < 3000);

    // α': a bare ACK 3000 bytes ahead (in the cloud server's window), then the hello.
    let mut c = breakout(&e, 50_000);
    let ahead = c.client_raw(ACK, c.c.client_next().wrapping_add(3000), 64, 0, b"");
    c.client_crosses(&ahead);
    let v = c.client_refused(&evil, "deny:app-mismatch");
    assert_eq!(v.finding.map(|f| f.detail), Some("server name not in sni_allow"));

    // The same with a FIN ahead whose TTL dies at the router (only lg-in sees it).
    let mut c = breakout(&e, 50_001);
    let fin = c.client_raw(FIN | ACK, c.c.client_next().wrapping_add(3000), 1, 0, b"");
    expect(&e, NOW, inside("lgwan"), &fin, Forward, BREAKOUT);
    c.client_refused(&evil, "deny:app-mismatch");

    // The text leg: the relay's address sends a bare ACK ahead, then a whole session with
    // an attachment in one segment (the server reads pipelined commands from its buffer).
    let mut m = Leg::open(&e, (RELAY, 42_000), (LG_MAIL, 25), ("sanitization", "lgwan"), TEXT_LEG);
    m.server_passes(b"220 mail.lgwan ESMTP\r\n");
    let ahead = m.client_raw(ACK, m.c.client_next().wrapping_add(4000), 64, 0, b"");
    m.client_crosses(&ahead);
    let mut session =
        b"EHLO relay\r\nMAIL FROM:<a@sanitization>\r\nRCPT TO:<staff@lgwan>\r\nDATA\r\n".to_vec();
    session.extend(ATTACHMENT);
    session.extend(b".\r\nQUIT\r\n");
    assert!(session.len() < 4000);
    m.client_refused(&session, "deny:app-mismatch");
}

/// In SYN-SENT a bare SYN with a new initial sequence number restarts the tracker. After
/// a SYN with data (a TTL that dies past the gate: only the gate sees it) had started the inspected stream at its
/// number, a SYN with a number far behind restarted the tracker but not the stream: every
/// byte of the new connection lay "before" the stream and crossed α' unread. Such a SYN
/// now cuts the flow.
#[test]
fn finding_a_syn_with_data_then_a_syn_with_another_number_skipped_inspection() {
    let e = review_engine();
    let a = inside("lgwan");
    let port = 50_100;
    let c = |flags: u16, seq: u32, ack: u32, ttl: u8, data: &[u8]| {
        ip_frame(LG_TERM, CLOUD, 6, ttl, &tcp_segment_seq(port, 443, flags, seq, ack, data))
    };
    // SYN with the first byte of a TLS record, TTL 2: both ports of the gate inspect it,
    // the first router past the second one drops it; the cloud server never gets it.
    let first_isn = 1_000_000u32;
    let syn_data = c(SYN, first_isn, 0, 2, &[0x16]);
    crossing(&e, NOW, &syn_data, &[(a, BREAKOUT), (outside("internet"), BREAKOUT)]);
    // The real SYN, its number 100 kB behind.
    let isn = first_isn - 100_000;
    let syn = c(SYN, isn, 0, 64, b"");
    let v = expect(&e, NOW, a, &syn, Drop, "deny:app-mismatch");
    assert_eq!(v.finding.map(|f| f.detail), Some("a new SYN after data was inspected"));
    // Had it passed, the handshake and a hello for any name would follow: the flow is
    // cut for good.
    let evil = hello(&[sni("evil.example.net")]);
    expect(&e, NOW, a, &c(ACK | PSH, isn + 1, 5001, 64, &evil), Drop, "deny:app-mismatch");
}

/// A TCP first fragment that ends right after the TCP header (24 bytes with options, a
/// multiple of 8) carries no data: it was not inspected and left a fragment record, and
/// the later fragment holding the whole ClientHello followed its flow unread — α' to any
/// name. A TCP fragment of a flow being inspected is refused now, with or without data.
#[test]
fn finding_a_first_fragment_holding_only_the_tcp_header_carried_the_data_unread() {
    let e = review_engine();
    let c = breakout(&e, 50_200);
    let (src, dst) = (LG_TERM.parse().unwrap(), CLOUD.parse().unwrap());
    let evil = hello(&[sni("evil.example.net")]);
    // The whole segment with a 24-byte header (four NOP options), its checksum right.
    let mut seg = tcp_segment_seq(50_200, 443, ACK | PSH, c.c.client_next(), c.c.server_next(), b"");
    seg[12] = 0x60;
    seg.extend([1, 1, 1, 1]);
    seg.extend(&evil);
    let whole = ipv4(src, dst, 6, V4Opts::default(), &seg);
    let seg = &whole[20..];
    let first = eth(
        0x0800,
        &ipv4(src, dst, 6, V4Opts { id: 77, more_fragments: true, ..V4Opts::default() }, &seg[..24]),
    );
    let later =
        eth(0x0800, &ipv4(src, dst, 6, V4Opts { id: 77, frag_offset: 3, ..V4Opts::default() }, &seg[24..]));
    crossing(&e, NOW, &first, &[(inside("lgwan"), "deny:fragment")]);
    crossing(&e, NOW, &later, &[(inside("lgwan"), "deny:fragment")]);
    // The flow itself goes on: the hello, sent whole, is judged (and refused by name).
    let mut c = c;
    c.client_refused(&evil, "deny:app-mismatch");
}

/// Urgent data: a receiver without SO_OOBINLINE (the default, Postfix and every mail
/// server on Linux) takes the byte before the urgent pointer out of the stream. The gate
/// read "XContent-Type: application/x-msdownload" as an unknown header; the LGWAN mail
/// server read "Content-Type: application/x-msdownload". A segment with URG on a flow
/// being inspected is refused now — also one without data, whose pointer marks a byte of
/// a later segment.
#[test]
fn finding_urgent_data_let_the_receiver_read_other_bytes_than_the_gate() {
    let e = review_engine();
    let mut m = text_leg(&e, 42_100, false);
    m.client_passes(b"MAIL FROM:<relay@sanitization>\r\nRCPT TO:<staff@lgwan>\r\nDATA\r\n");
    m.server_passes(b"250 ok\r\n250 ok\r\n354 go ahead\r\n");
    m.client_passes(b"Subject: report\r\n");
    let seq = m.c.client_next();
    let urgent = m.client_raw(
        ACK | PSH | URG,
        seq,
        64,
        1,
        b"XContent-Type: application/x-msdownload\r\nXContent-Disposition: attachment; filename=a.exe\r\n",
    );
    expect(&e, NOW, m.client_hops[0], &urgent, Drop, "deny:malformed");
    // A pure ACK whose urgent pointer reaches into the next segment: refused too.
    let pointer = m.client_raw(ACK | URG, seq, 64, 1, b"");
    expect(&e, NOW, m.client_hops[0], &pointer, Drop, "deny:malformed");
    // Without URG the same bytes are read as they are: unknown headers, text.
    m.client_passes(b"XContent-Type: application/x-msdownload\r\n\r\ntext\r\n.\r\n");
}

/// Two boundary parameters: the check took the last, mail readers (Python's email,
/// Thunderbird) the first — the parts delimited by the first passed here as preamble
/// text. An RFC 2231 `boundary*` beside a plain one likewise (Thunderbird prefers it).
/// Both are refused now.
#[test]
fn finding_a_second_boundary_parameter_hid_an_attachment_in_the_preamble() {
    let e = review_engine();
    let part = b"--A\r\nContent-Type: application/x-msdownload; name=\"a.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--A--\r\n--B\r\n\r\ntext\r\n--B--\r\n.\r\n";
    for (i, header) in [
        &b"Content-Type: multipart/mixed; boundary=\"A\"; boundary=\"B\"\r\n\r\n"[..],
        b"Content-Type: multipart/mixed; boundary=\"B\"; boundary*=''A\r\n\r\n",
        b"Content-Type: multipart/mixed; boundary*0=\"A\"; boundary=\"B\"\r\n\r\n",
    ]
    .into_iter()
    .enumerate()
    {
        let mut m = text_leg(&e, 42_200 + i as u16, false);
        m.client_passes(b"MAIL FROM:<relay@sanitization>\r\nRCPT TO:<staff@lgwan>\r\nDATA\r\n");
        m.server_passes(b"250 ok\r\n250 ok\r\n354 go ahead\r\n");
        let mut message = header.to_vec();
        message.extend(part);
        m.client_refused(&message, "deny:not-sanitized");
    }
}

/// BDAT to a server that did not announce CHUNKING: it refuses the command and reads the
/// chunk as commands — MAIL, RCPT, DATA and a message with an attachment — while the check
/// read the chunk as one text message (its first lines as unknown headers, the rest as
/// body). Refused now.
#[test]
fn finding_bdat_to_a_server_without_chunking_smuggled_a_message() {
    let e = review_engine();
    let mut m = text_leg(&e, 42_300, false);
    let mut chunk =
        b"X-Relay: 1\r\n\r\nMAIL FROM:<a@sanitization>\r\nRCPT TO:<staff@lgwan>\r\nDATA\r\n".to_vec();
    chunk.extend(ATTACHMENT);
    chunk.extend(b".\r\n");
    let mut data = format!("BDAT {} LAST\r\n", chunk.len()).into_bytes();
    data.extend(&chunk);
    let v = m.client_refused(&data, "deny:not-sanitized");
    assert_eq!(v.finding.map(|f| f.detail), Some("BDAT to a server that did not announce CHUNKING"));
}

/// A BDAT chunk the server refuses (no MAIL yet: it reads and drops it) still opened a
/// message in the check: the next transaction's chunk was read as the body of that text
/// message, while the server read its own headers — an attachment. A command that could
/// start another message while chunks are open is refused now; RSET clears both.
#[test]
fn finding_a_refused_bdat_chunk_left_the_text_check_in_a_body() {
    let e = review_engine();
    let mut m = text_leg(&e, 42_400, true);
    m.client_passes(b"BDAT 14\r\nSubject: x\r\n\r\n");
    let mut rest =
        format!("MAIL FROM:<a@sanitization>\r\nRCPT TO:<staff@lgwan>\r\nBDAT {} LAST\r\n", ATTACHMENT.len())
            .into_bytes();
    rest.extend(ATTACHMENT);
    let v = m.client_refused(&rest, "deny:not-sanitized");
    assert_eq!(v.finding.map(|f| f.detail), Some("SMTP command between BDAT chunks of a message"));

    // RSET clears the open message: the next one is checked from its headers.
    let mut m = text_leg(&e, 42_401, true);
    m.client_passes(b"BDAT 14\r\nSubject: x\r\n\r\n");
    m.server_passes(b"503 5.5.1 need MAIL\r\n");
    m.client_passes(b"RSET\r\n");
    m.server_passes(b"250 ok\r\n");
    let mut rest =
        format!("MAIL FROM:<a@sanitization>\r\nRCPT TO:<staff@lgwan>\r\nBDAT {} LAST\r\n", ATTACHMENT.len())
            .into_bytes();
    rest.extend(ATTACHMENT);
    m.client_refused(&rest, "deny:not-sanitized");
    // A text message in chunks passes.
    let mut m = text_leg(&e, 42_402, true);
    m.client_passes(b"MAIL FROM:<a@sanitization>\r\nRCPT TO:<staff@lgwan>\r\n");
    m.server_passes(b"250 ok\r\n250 ok\r\n");
    m.client_passes(b"BDAT 14\r\nSubject: x\r\n\r\n");
    m.client_passes(b"BDAT 7 LAST\r\nhello\r\n");
    m.server_passes(b"250 ok\r\n250 queued\r\n");
}

/// The inspection table was shared by port side only, not by the initiator's zone kind as
/// the flow table is (class 15): internet hosts opening SMTP sessions to the relay, one
/// byte each, kept fresh with an ACK every few seconds, filled the room of the
/// sanitisation port's outside — where LGWAN's web-isolation sessions to the proxy arrive
/// too, whose data was then dropped (`deny:flow-table-full`) for as long as the flood
/// lasted. States are charged to (origin, zone kind) now, each guaranteed its share.
#[test]
fn finding_internet_sessions_to_the_relay_starved_lgwan_inspection_on_the_same_port() {
    let text = review_policy("http").replace("[flow]", "[inspect]\nmax_flows = 400\n\n[flow]");
    let e = Engine::new(policy(&text));
    let (c_hops, s_hops) =
        ([inside("internet"), outside("sanitization")], [inside("sanitization"), outside("internet")]);
    for i in 0..300u16 {
        let mut c = TcpConn::new((&format!("198.51.100.{}", i % 200 + 1), 20_000 + i), (RELAY, 25));
        let (syn, syn_ack, ack) = (c.syn(), c.syn_ack(), c.client(ACK, b""));
        let data = c.client(ACK | PSH, b"E");
        for (f, hops) in [(&syn, c_hops), (&syn_ack, s_hops), (&ack, c_hops), (&data, c_hops)] {
            for at in hops {
                if e.process(Now::at(NOW), at, f).action == Drop {
                    break;
                }
            }
        }
    }
    assert!(e.inspection_stats().table_full > 0, "the flood filled what it could");
    // LGWAN's web isolation still gets its inspection, at both ports.
    let mut c = Leg::open(&e, (LG_TERM, 53_200), (PROXY, 8080), ("lgwan", "sanitization"), WEB);
    c.client_passes(b"GET http://www.example.com/ HTTP/1.1\r\nHost: www.example.com\r\n\r\n");
    c.server_passes(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
}

/// TLS 1.3 HelloRetryRequest: the client sends a second ClientHello after the server's
/// HRR, and the check stopped at the first. A server serving many names (the class 28
/// situation) that routes by the second hello's name gives α' any name. Fixed: where
/// server names are checked, the client side stays open until the ServerHello says
/// whether it is a retry; the second hello is checked like the first (and a listed name
/// in it passes).
#[test]
fn finding_a_second_client_hello_after_hello_retry_request_is_not_checked() {
    let e = review_engine();
    let mut c = breakout(&e, 50_300);
    c.client_passes(&hello(&[sni("portal.example.lg.jp")]));
    // HelloRetryRequest: a ServerHello whose random is the HRR value (RFC 8446 4.1.3).
    let hrr = hello_retry_request();
    c.server_passes(&hrr);
    // Change cipher spec (middlebox compatibility), then the second hello.
    let mut ok = retried(&e, 50_310, &hrr);
    let mut listed = CCS.to_vec();
    listed.extend(hello(&[sni("portal.example.lg.jp")]));
    ok.client_passes(&listed);
    let mut second = CCS.to_vec();
    second.extend(hello(&[sni("evil.example.net")]));
    c.client_refused(&second, "deny:app-mismatch");
}

/// A connection to the α' service whose first hello passed and whose server answered
/// with `hrr`.
fn retried<'e>(e: &'e Engine, port: u16, hrr: &[u8]) -> Leg<'e> {
    let mut c = breakout(e, port);
    c.client_passes(&hello(&[sni("portal.example.lg.jp")]));
    c.server_passes(hrr);
    c
}

/// Inspected bytes are kept "until the receiver acknowledges them" — but the receiver's
/// acknowledgement is whatever arrives from the receiver's side, and on α' that side is
/// the internet, where any host can claim the cloud server's address. A compromised
/// LGWAN terminal sends a ClientHello for a listed name whose TTL dies past the gate; an
/// accomplice on the internet, spoofing the cloud server, acknowledges it and sends a
/// TLS record header: both directions are done and "delivered", the state is freed, and
/// a hello for any name at the same sequence number crosses both ports unread — the
/// first bytes the real server ever gets. Fixed: once a flow's check is over, a segment
/// carrying acknowledged bytes of the checked beginning is refused (a real receiver has
/// them already).
#[test]
fn finding_a_forged_acknowledgement_lets_a_decoy_be_replaced_on_alpha_prime() {
    let e = review_engine();
    let c = breakout(&e, 50_400);
    let start = c.c.client_next();
    let good = hello(&[sni("portal.example.lg.jp")]);
    // The decoy, TTL 2: both ports see it, the first internet router drops it.
    let decoy = c.client_raw(ACK | PSH, start, 2, 0, &good);
    crossing(&e, NOW, &decoy, &[(inside("lgwan"), BREAKOUT), (outside("internet"), BREAKOUT)]);
    // The accomplice, as the cloud server: acknowledges the decoy, sends a record header.
    let acked = start.wrapping_add(good.len() as u32);
    let server_hello = server_hello_start();
    let forged = ip_frame(
        CLOUD,
        LG_TERM,
        6,
        64,
        &tcp_segment_seq(443, 50_400, ACK | PSH, c.c.server_next(), acked, &server_hello),
    );
    c.server_crosses(&forged);
    // The terminal acknowledges the record header: every inspected byte is "delivered".
    let ack = ip_frame(
        LG_TERM,
        CLOUD,
        6,
        64,
        &tcp_segment_seq(
            50_400,
            443,
            ACK,
            acked,
            c.c.server_next().wrapping_add(server_hello.len() as u32),
            b"",
        ),
    );
    c.client_crosses(&ack);
    assert_eq!(e.inspection_stats().active, 0, "both states freed");
    // The real hello, another name, at the decoy's place.
    let evil = c.client_raw(ACK | PSH, start, 64, 0, &hello(&[sni("evil.example.net")]));
    expect(&e, NOW, inside("lgwan"), &evil, Drop, "deny:out-of-window");
    // Data after the checked beginning still flows.
    let next = c.client_raw(ACK | PSH, acked, 64, 0, &[0x17, 0x03, 0x03, 0x00, 0x01, 0x00]);
    crossing(&e, NOW, &next, &[(inside("lgwan"), BREAKOUT), (outside("internet"), BREAKOUT)]);
}

/// HTTP: only the first request of a connection is checked. A second one pipelined
/// behind it — a CONNECT the service does not allow — crossed to the web-isolation proxy.
/// Not fixed: following every request needs the bodies (Content-Length, chunked) parsed.
#[test]
#[ignore = "finding: a CONNECT pipelined behind a first request is not checked (allow_connect = false)"]
fn finding_a_pipelined_connect_behind_a_first_request_is_not_checked() {
    let e = review_engine();
    let mut c = Leg::open(&e, (LG_TERM, 53_000), (PROXY, 8080), ("lgwan", "sanitization"), WEB);
    c.client_refused(
        b"GET / HTTP/1.1\r\nHost: proxy\r\n\r\nCONNECT mail.example.net:25 HTTP/1.1\r\nHost: mail.example.net:25\r\n\r\n",
        "deny:app-mismatch",
    );
}

/// HTTP/2 with prior knowledge: after the connection preface the check is done, and a
/// HEADERS frame whose `:method` is CONNECT (HPACK, a literal) crossed to a proxy that
/// speaks h2c, though the service does not allow CONNECT. Fixed: where `allow_connect` is
/// off, the cleartext HTTP/2 preface itself is refused (its requests are HPACK-compressed
/// frames the check does not decode).
#[test]
fn finding_an_http2_connect_after_the_preface_is_not_checked() {
    let e = review_engine();
    let mut c = Leg::open(&e, (LG_TERM, 53_050), (PROXY, 8080), ("lgwan", "sanitization"), WEB);
    let mut h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2.extend([0, 0, 0, 4, 0, 0, 0, 0, 0]); // SETTINGS, empty
    let mut block = vec![0x42, 7];
    block.extend(b"CONNECT");
    block.extend([0x41, 8]);
    block.extend(b"evil:443");
    h2.extend([0, 0, block.len() as u8, 1, 4, 0, 0, 0, 1]); // HEADERS, END_HEADERS, stream 1
    h2.extend(block);
    c.client_refused(&h2, "deny:app-mismatch");
}

/// DNS over UDP: a fragmented query was checked by its first fragment (a message that
/// may end early), and the later fragments followed the flow unread — up to 64 KB of any
/// bytes to the DNS server under `app = "dns"`. Fixed: a fragment of a datagram under
/// inspection is `deny:fragment` (a query never needs to be fragmented; resolvers keep
/// answers under 1,232 bytes or retry over TCP).
#[test]
fn finding_later_fragments_of_a_dns_query_are_not_checked() {
    let e = review_engine();
    let (l, dns) = (LG_TERM.parse().unwrap(), "198.18.40.53".parse().unwrap());
    let mut query = dns_query(9, "portal.example.lg.jp", 1);
    query[11] = 1; // one additional record: the rest of the datagram
    let mut payload = query.clone();
    payload.extend([0, 0, 16, 0, 1, 0, 0, 0, 0, 0x05, 0xdc]);
    payload.extend([b'X'; 1500]);
    let datagram = udp_datagram(40_500, 53, &payload);
    let first = eth(
        0x0800,
        &ipv4(l, dns, 17, V4Opts { id: 91, more_fragments: true, ..V4Opts::default() }, &datagram[..48]),
    );
    let later = eth(
        0x0800,
        &ipv4(l, dns, 17, V4Opts { id: 91, frag_offset: 6, ..V4Opts::default() }, &datagram[48..]),
    );
    expect(&e, NOW, inside("lgwan"), &first, Drop, "deny:fragment");
    expect(&e, NOW, inside("lgwan"), &later, Drop, "deny:fragment");
    // The same query unfragmented is a DNS message like any other.
    let whole = ip_frame(LG_TERM, "198.18.40.53", 17, 64, &datagram);
    let dns_rule = "allow:rule:lgwan-dns";
    crossing(&e, NOW, &whole, &[(inside("lgwan"), dns_rule), (outside("sanitization"), dns_rule)]);
}

/// A reload that puts an `app` on a service re-decides every flow, but the flows opened
/// before it keep their inspection word ("nothing to check"): a web-isolation connection
/// opened under `app = "any"` carries a CONNECT after the reload to `app = "http"`.
/// Fixed: such a flow is cut at its next packet (`deny:app-mismatch`; its stream cannot be
/// read from the middle), and the reload's review counts it.
#[test]
fn finding_a_reload_that_adds_an_app_leaves_open_flows_unchecked() {
    let e = Engine::new(policy(&review_policy("any")));
    let mut c = Leg::open(&e, (LG_TERM, 53_100), (PROXY, 8080), ("lgwan", "sanitization"), WEB);
    let http = policy(&review_policy("http"));
    let review = e.review(&http, Now::at(NOW));
    // One flow per port the connection crosses (lgwan's and the sanitiser's).
    assert_eq!((review.cut, review.cut_by_code().collect::<Vec<_>>()), (2, vec![("deny:app-mismatch", 2)]));
    e.reload(http).unwrap();
    c.client_refused(b"CONNECT mail.example.net:25 HTTP/1.1\r\n\r\n", "deny:app-mismatch");
}

/// The other side of the fix: a flow already checked as its service's application keeps
/// going across a reload that leaves the application as it is, and one whose service
/// stops naming an application too.
#[test]
fn fixes_keep_checked_flows_across_reloads_that_keep_or_drop_their_app() {
    let e = Engine::new(policy(&review_policy("http")));
    let mut c = Leg::open(&e, (LG_TERM, 53_200), (PROXY, 8080), ("lgwan", "sanitization"), WEB);
    c.client_passes(b"GET http://portal.example.lg.jp/ HTTP/1.1\r\nHost: portal.example.lg.jp\r\n\r\n");
    c.server_passes(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let same = policy(&review_policy("http"));
    assert_eq!(e.review(&same, Now::at(NOW)).cut, 0);
    e.reload(same).unwrap();
    c.client_passes(b"GET http://portal.example.lg.jp/2 HTTP/1.1\r\nHost: portal.example.lg.jp\r\n\r\n");
    e.reload(policy(&review_policy("any"))).unwrap();
    c.server_passes(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
}

// ---- held -----------------------------------------------------------------------------------

/// SNI tricks against α': two server_name extensions, two names in one, a trailing dot, a
/// NUL, an empty name, ECH (also as GREASE beside a listed name); an uppercase listed name
/// is the same name and passes.
#[test]
fn held_server_name_tricks_on_alpha_prime() {
    let e = review_engine();
    type Extensions = Vec<(u16, Vec<u8>)>;
    let cases: Vec<(Extensions, &str)> = vec![
        (vec![sni("portal.example.lg.jp"), sni("evil.example.net")], "ClientHello repeats an extension"),
        (
            vec![sni_names(&[b"portal.example.lg.jp", b"evil.example.net"])],
            "server_name is not one host name",
        ),
        (vec![sni("portal.example.lg.jp.")], "server name not in sni_allow"),
        (vec![sni_names(&[b"portal.example.lg.jp\0.evil.net"])], "server_name is not a host name"),
        (vec![sni_names(&[b""])], "server_name is not one host name"),
        (
            vec![sni("portal.example.lg.jp"), (0xfe0d, vec![0; 32])],
            "Encrypted Client Hello hides the server name",
        ),
    ];
    for (i, (exts, why)) in cases.into_iter().enumerate() {
        let mut c = breakout(&e, 51_000 + i as u16);
        let v = c.client_refused(&hello(&exts), "deny:app-mismatch");
        assert_eq!(v.finding.map(|f| f.detail), Some(why), "case {i}");
    }
    let mut c = breakout(&e, 51_100);
    c.client_passes(&hello(&[sni("PORTAL.Example.LG.JP")]));
}

/// Overlap tricks on an inspected stream: a retransmission that changes bytes already
/// inspected (also after the verdict, before the receiver acknowledged them), a segment
/// starting before the stream with other bytes where the stream is, and a segment ahead
/// of the next byte.
#[test]
fn held_overlaps_and_gaps_on_an_inspected_stream() {
    let e = review_engine();
    let mut c = breakout(&e, 52_000);
    let good = hello(&[sni("portal.example.lg.jp")]);
    let start = c.c.client_next();
    c.client_passes(&good);
    // The verdict is kept for the client side; a repetition with another name is cut.
    let mut other = hello(&[sni("portal.example.lg.xx")]);
    other.truncate(good.len());
    let f = c.client_raw(ACK | PSH, start, 64, 0, &other);
    expect(&e, NOW, inside("lgwan"), &f, Drop, "deny:app-mismatch");

    let c = breakout(&e, 52_001);
    let start = c.c.client_next();
    // Ahead of the next byte: dropped, the sender must send in order.
    let f = c.client_raw(ACK | PSH, start.wrapping_add(10), 64, 0, &good[10..]);
    expect(&e, NOW, inside("lgwan"), &f, Drop, "deny:out-of-window");
    // Starting before the stream (the SYN's number): the bytes from the stream's start on
    // are what is inspected.
    let mut early = vec![0x00];
    early.extend(hello(&[sni("evil.example.net")]));
    let f = c.client_raw(ACK | PSH, start.wrapping_sub(1), 64, 0, &early);
    expect(&e, NOW, inside("lgwan"), &f, Drop, "deny:app-mismatch");
}

/// SMTP smuggling on the text leg: an end of data with bare LF ends the message for the
/// check too (so the next message is checked from its headers), and commands pipelined
/// behind DATA before its 354 are refused.
#[test]
fn held_smtp_smuggling_and_pipelining_on_the_text_leg() {
    let e = review_engine();
    let mut m = text_leg(&e, 42_500, false);
    m.client_passes(b"MAIL FROM:<relay@sanitization>\r\nRCPT TO:<staff@lgwan>\r\nDATA\r\n");
    m.server_passes(b"250 ok\r\n250 ok\r\n354 go ahead\r\n");
    let mut smuggled = b"Subject: hi\r\n\r\ntext\n.\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n".to_vec();
    smuggled.extend(ATTACHMENT);
    smuggled.extend(b".\r\n");
    m.client_refused(&smuggled, "deny:app-mismatch");

    let mut m = text_leg(&e, 42_501, false);
    let mut pipelined = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n".to_vec();
    pipelined.extend(ATTACHMENT);
    m.client_refused(&pipelined, "deny:app-mismatch");
}

// ---- a second review: the fixes above, attacked ---------------------------------------

/// `n` bytes of plain text lines.
fn text(n: usize) -> Vec<u8> {
    let line = b"plain text of the minutes, nothing attached.\r\n";
    line.iter().copied().cycle().take(n).collect()
}

// ---- findings -----------------------------------------------------------------------------

/// Class 41 refuses a data segment that *starts* in the acknowledged part of the checked
/// beginning — but one that starts a byte *before* the stream (at the SYN's own sequence
/// number) and runs over the whole checked beginning was let through: its start, taken
/// relative to the first data byte, wraps to 4 GiB. The receiver never got the decoy
/// (its TTL died past the gate), so it takes every byte of the segment from its first
/// data byte on: a hello for any name, unread. Fixed: a segment is refused when any of
/// its bytes lies in the acknowledged checked beginning, wherever it starts.
#[test]
fn finding_a_segment_starting_before_the_stream_replaces_acknowledged_checked_bytes() {
    let e = review_engine();
    let c = breakout(&e, 51_400);
    let start = c.c.client_next();
    let good = hello(&[sni("portal.example.lg.jp")]);
    // The decoy, TTL 2: both ports see it, the first internet router drops it.
    let decoy = c.client_raw(ACK | PSH, start, 2, 0, &good);
    crossing(&e, NOW, &decoy, &[(inside("lgwan"), BREAKOUT), (outside("internet"), BREAKOUT)]);
    // The accomplice, as the cloud server: acknowledges the decoy, sends a ServerHello's start.
    let acked = start.wrapping_add(good.len() as u32);
    let sh = server_hello_start();
    let forged = c.c.server_at(ACK | PSH, c.c.server_next(), acked, &sh);
    c.server_crosses(&forged);
    // The terminal acknowledges the forged record: every inspected byte is "delivered".
    let ack = c.c.client_at(ACK, acked, c.c.server_next().wrapping_add(sh.len() as u32), b"");
    c.client_crosses(&ack);
    assert_eq!(e.inspection_stats().active, 0, "both states freed");
    // At the decoy's place: refused (class 41).
    let evil_hello = hello(&[sni("evil.example.net")]);
    let evil = c.client_raw(ACK | PSH, start, 64, 0, &evil_hello);
    expect(&e, NOW, inside("lgwan"), &evil, Drop, "deny:out-of-window");
    // One byte earlier — the SYN's own number, which the receiver trims away: it takes the
    // hello from its first data byte on.
    let mut early = vec![0x00];
    early.extend(&evil_hello);
    let evil = c.client_raw(ACK | PSH, start.wrapping_sub(1), 64, 0, &early);
    expect(&e, NOW, inside("lgwan"), &evil, Drop, "deny:out-of-window");
    // Further back, within the window, too.
    let mut earlier = vec![0x00; 600];
    earlier.extend(&evil_hello);
    let evil = c.client_raw(ACK | PSH, start.wrapping_sub(600), 64, 0, &earlier);
    expect(&e, NOW, inside("lgwan"), &evil, Drop, "deny:out-of-window");
    // Data after the checked beginning still flows.
    let next = c.client_raw(ACK | PSH, acked, 64, 0, &[0x17, 0x03, 0x03, 0x00, 0x01, 0x00]);
    crossing(&e, NOW, &next, &[(inside("lgwan"), BREAKOUT), (outside("internet"), BREAKOUT)]);
}

/// UDP segmentation offload (`VIRTIO_NET_HDR_GSO_UDP_L4`) turns one super-datagram into
/// several datagrams after the gate, each `gso_size` bytes of its payload behind a copy of
/// its headers. The gate checked the super-datagram as one DNS message — a query whose
/// additional record holds 1,500 bytes — while the DNS server gets that query's first
/// piece and then datagrams that are pieces of the record: any bytes (queries with
/// tunnel-like names, counted by nobody), under `app = "dns"`. Fixed: a super-datagram of
/// a flow whose datagrams are inspected is refused (`deny:fragment`: it is split after the
/// gate like a fragmented one; a DNS client never segments its queries).
#[test]
fn finding_a_udp_super_datagram_is_checked_as_one_dns_message() {
    let e = review_engine();
    let mut query = dns_query(9, "portal.example.lg.jp", 1);
    query[11] = 1; // one additional record: the rest of the datagram
    let mut payload = query.clone();
    payload.extend([0, 0, 16, 0, 1, 0, 0, 0, 0, 0x05, 0xdc]);
    // What the pieces would be: another query each, for a name that tunnels data.
    let tunnel = dns_query(10, "aGVsbG8gd29ybGQgZXhmaWx0cmF0aW9u.t.evil.example.net", 16);
    while payload.len() < query.len() + 11 + 1500 {
        payload.extend(&tunnel);
    }
    payload.truncate(query.len() + 11 + 1500);
    let datagram = udp_datagram(40_600, 53, &payload);
    let frame = ip_frame(LG_TERM, "198.18.40.53", 17, 64, &datagram);
    let gso = FrameMeta { checksum_partial: true, checksum_at: Some((34, 6)), gso: Gso::Udp };
    let v = e.process_meta(Now::at(NOW), inside("lgwan"), &frame, gso);
    assert_eq!((v.action, name(&e, &v).as_str()), (Drop, "deny:fragment"));
    // The same datagram without segmentation is one DNS message, as the server gets it.
    let dns_rule = "allow:rule:lgwan-dns";
    let whole = ip_frame(LG_TERM, "198.18.40.53", 17, 64, &udp_datagram(40_601, 53, &payload));
    crossing(&e, NOW, &whole, &[(inside("lgwan"), dns_rule), (outside("sanitization"), dns_rule)]);
    // A super-datagram of a flow whose service inspects nothing still crosses.
    let mg = "allow:rule:mgmt-any";
    let any = ip_frame("198.18.50.5", "198.18.40.20", 17, 64, &udp_datagram(40_602, 4433, &payload));
    let v = e.process_meta(Now::at(NOW), inside("management"), &any, gso);
    assert_eq!((v.action, name(&e, &v).as_str()), (Forward, mg));
}

/// After a first ClientHello for a listed name the client side waits for the server's
/// answer: a HelloRetryRequest means a second hello, checked. But the "answer" is the
/// first server bytes the gate inspects, and on α' any internet host can claim the cloud
/// server's address: an accomplice sends the start of an ordinary ServerHello at the
/// server's first byte, the terminal acknowledges it, and both directions are "done and
/// delivered". The real server's HelloRetryRequest at the same place is refused (class
/// 41) — but the terminal does not need it (a HelloRetryRequest without a cookie is
/// predictable) — and its second ClientHello, for any name, crosses both ports unread to
/// a server that asked for it.
#[test]
#[ignore = "finding: a forged, acknowledged ServerHello ends the client's check; the second ClientHello is not read"]
fn finding_a_forged_server_hello_skips_the_second_client_hello_check() {
    let e = review_engine();
    let mut c = breakout(&e, 51_500);
    c.client_passes(&hello(&[sni("portal.example.lg.jp")]));
    let server_first = c.c.server_next();
    let sh = server_hello_start();
    let forged = c.c.server_at(ACK | PSH, server_first, c.c.client_next(), &sh);
    c.server_crosses(&forged);
    let ack = c.c.client_at(ACK, c.c.client_next(), server_first.wrapping_add(sh.len() as u32), b"");
    c.client_crosses(&ack);
    assert_eq!(e.inspection_stats().active, 0, "both states freed");
    // The real server's HelloRetryRequest: refused at the internet port.
    let hrr = c.c.server_at(ACK | PSH, server_first, c.c.client_next(), &hello_retry_request());
    expect(&e, NOW, inside("internet"), &hrr, Drop, "deny:out-of-window");
    // The second hello, for another name.
    let mut second = CCS.to_vec();
    second.extend(hello(&[sni("evil.example.net")]));
    let f = c.c.client_at(ACK | PSH, c.c.client_next(), server_first.wrapping_add(sh.len() as u32), &second);
    expect(&e, NOW, inside("lgwan"), &f, Drop, "deny:app-mismatch");
}

/// Class 39 keeps a checked flow across a reload whose service names the same `app`. But
/// what it was checked against may have changed: a reload that takes a name off
/// `sni_allow` (an incident answer: "stop the breakout to that name") leaves the open TLS
/// sessions to it running; one that turns `allow_connect` off leaves open CONNECT tunnels
/// through the proxy running.
#[test]
fn finding_a_reload_that_narrows_what_an_app_allows_keeps_flows_checked_under_the_old_one() {
    let wide = review_policy("http\"\nallow_connect = true\n#");
    let e = Engine::new(policy(&wide));
    let mut c = breakout(&e, 51_600);
    c.client_passes(&hello(&[sni("files.example.com")]));
    c.server_passes(&server_hello_start());
    let mut t = Leg::open(&e, (LG_TERM, 51_601), (PROXY, 8080), ("lgwan", "sanitization"), WEB);
    t.client_passes(b"CONNECT mail.example.net:25 HTTP/1.1\r\nHost: mail.example.net:25\r\n\r\n");
    t.server_passes(b"HTTP/1.1 200 Connection established\r\n\r\n");
    let narrow = review_policy("http").replace(
        r#"sni_allow = ["portal.example.lg.jp", "*.example.com"]"#,
        r#"sni_allow = ["portal.example.lg.jp"]"#,
    );
    assert!(!narrow.contains("*.example.com"));
    e.reload(policy(&narrow)).unwrap();
    // A new session to the name is refused ...
    let mut n = breakout(&e, 51_602);
    n.client_refused(&hello(&[sni("files.example.com")]), "deny:app-mismatch");
    // ... the open ones are not: the session to the name and the tunnel both go on.
    let tls = c.c.client(ACK | PSH, &[0x17, 0x03, 0x03, 0x00, 0x01, 0x00]);
    let tls = e.process(Now::at(NOW), inside("lgwan"), &tls);
    let tunnel = t.c.client(ACK | PSH, b"MAIL FROM:<x@lgwan>\r\n");
    let tunnel = e.process(Now::at(NOW), inside("lgwan"), &tunnel);
    let got = |v: &Verdict| (v.action, name(&e, v));
    let cut = (Drop, "deny:app-mismatch".to_string());
    assert_eq!((got(&tls), got(&tunnel)), (cut.clone(), cut));
}

/// The text leg keeps 128 KiB of inspected bytes until the LGWAN mail server acknowledges
/// them; when that is full, acknowledged bytes are dropped — and a later segment over
/// dropped bytes is not compared (they were "delivered"). But the acknowledgement is
/// whatever arrives from the mail server's side, where a compromised LGWAN host can claim
/// its address. A taken-over relay sends 60 KB of text that never reaches the server
/// (the accomplice diverts it on the LGWAN segment, e.g. by ARP), the accomplice
/// acknowledges it as the server, one more segment makes the gate drop it — and the relay
/// sends other bytes in its place: the end of the message, a new transaction and a
/// message with an executable attached, unread (class 41 while the check lives, on the
/// leg that is checked to its end). Fixed: on an inspected stream, a segment carrying
/// bytes that were inspected and dropped as acknowledged is refused
/// (`deny:out-of-window`; a real receiver has them already).
#[test]
fn finding_a_forged_acknowledgement_on_the_text_leg_lets_dropped_bytes_be_replaced() {
    let e = review_engine();
    let mut m = text_leg(&e, 42_900, false);
    m.client_passes(b"MAIL FROM:<relay@sanitization>\r\nRCPT TO:<staff@lgwan>\r\nDATA\r\n");
    m.server_passes(b"250 ok\r\n250 ok\r\n354 go ahead\r\n");
    m.client_passes(b"Subject: minutes\r\n\r\n");
    // 70,000 bytes of text the server gets and acknowledges (kept: there is room).
    for i in 0..50 {
        m.client_passes(&text(1400));
        if i % 10 == 9 {
            let ack = m.c.server(ACK, b"");
            m.server_crosses(&ack);
        }
    }
    // The decoy: 60,200 bytes of text both ports inspect, diverted past the gate.
    let decoy_at = m.c.client_next();
    for _ in 0..43 {
        m.client_passes(&text(1400));
    }
    assert_eq!(e.inspection_stats().active, 2, "one state per port, none full yet");
    // The accomplice, as the mail server, acknowledges it.
    let forged = m.c.server(ACK, b"");
    m.server_crosses(&forged);
    // One more segment: no room, so the acknowledged bytes are dropped.
    m.client_passes(&text(1400));
    // Other bytes where the decoy was: what the server gets first after the subject line.
    let mut evil = b"\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n".to_vec();
    evil.extend(ATTACHMENT);
    evil.extend(b".\r\n");
    evil.extend(text(1400 - evil.len()));
    let f = m.c.client_at(ACK | PSH, decoy_at, m.c.server_next(), &evil);
    expect(&e, NOW, inside("sanitization"), &f, Drop, "deny:out-of-window");
    // The text after it still flows.
    m.client_passes(&text(1400));
}

/// Class 38 refuses the cleartext HTTP/2 preface where CONNECT is not allowed — as the
/// first request. HTTP/1.1 reaches the same place another way: a first request asking to
/// upgrade to h2c (RFC 7540 3.2), which the check reads as an ordinary GET; after the
/// proxy's 101 the check is over, and the preface and a HEADERS frame whose `:method`
/// is CONNECT cross unread. Fixed: where `allow_connect` is off, a request asking to
/// upgrade to h2c is refused like the preface.
#[test]
fn finding_an_upgrade_to_h2c_reaches_http2_where_the_preface_is_refused() {
    let e = review_engine();
    let mut c = Leg::open(&e, (LG_TERM, 53_300), (PROXY, 8080), ("lgwan", "sanitization"), WEB);
    c.client_refused(
        b"GET http://portal.example.lg.jp/ HTTP/1.1\r\nHost: portal.example.lg.jp\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
        "deny:app-mismatch",
    );
    // Other upgrades and ordinary requests are still read as before.
    let mut ok = Leg::open(&e, (LG_TERM, 53_301), (PROXY, 8080), ("lgwan", "sanitization"), WEB);
    ok.client_passes(b"GET http://portal.example.lg.jp/ HTTP/1.1\r\nHost: portal.example.lg.jp\r\nUpgrade-Insecure-Requests: 1\r\n\r\n");
}

/// Where server names are checked, the client's bytes after its first ClientHello wait
/// for the server's answer — but they are forwarded while they wait. A terminal sends,
/// right behind a hello for a listed name, a change-cipher-spec record and a second hello
/// for another name: both ports forward it before any HelloRetryRequest exists, and a
/// server that then asks for a retry reads the second hello already in its buffer. The
/// gate reads it (and cuts the flow) only at the terminal's next data; the server's
/// answers to it cross until then. Low: everything after needs the terminal's own data.
#[test]
#[ignore = "finding (low): bytes after the first ClientHello are forwarded before the server's answer says whether they must be checked"]
fn finding_a_second_client_hello_sent_ahead_of_the_retry_reaches_the_server() {
    let e = review_engine();
    let mut c = breakout(&e, 51_700);
    c.client_passes(&hello(&[sni("portal.example.lg.jp")]));
    let mut second = CCS.to_vec();
    second.extend(hello(&[sni("evil.example.net")]));
    let ahead = c.c.client(ACK | PSH, &second);
    let at_lgwan = e.process(Now::at(NOW), inside("lgwan"), &ahead);
    let at_internet = e.process(Now::at(NOW), outside("internet"), &ahead);
    let hrr = c.c.server(ACK | PSH, &hello_retry_request());
    c.server_crosses(&hrr);
    // The server's ServerHello for the other name: still crosses.
    let sh = c.c.server(ACK | PSH, &server_hello_start());
    let sh_at_internet = e.process(Now::at(NOW), inside("internet"), &sh);
    e.process(Now::at(NOW), outside("lgwan"), &sh);
    // The terminal's next data: the flow is cut now.
    c.client_refused(&[0x17, 0x03, 0x03, 0x00, 0x01, 0x00], "deny:app-mismatch");
    let got = |v: &Verdict| (v.action, name(&e, v));
    // Fixed, the second hello would wait at the first port for the server's answer.
    assert_eq!(
        (got(&at_lgwan), got(&at_internet), got(&sh_at_internet)),
        (
            (Drop, "deny:out-of-window".to_string()),
            (Drop, "deny:out-of-window".to_string()),
            (Drop, "deny:app-mismatch".to_string())
        )
    );
}

// ---- held -----------------------------------------------------------------------------------

/// Class 42 against legitimate offload: the place of the checksum is counted from the
/// frame's first byte as the data plane gets it — past an 802.1Q tag, past IPv6 extension
/// headers — and a frame naming that place crosses; one counting without the tag, or
/// naming the extension header, is refused.
#[test]
fn held_offloaded_frames_with_a_vlan_tag_or_ipv6_extension_headers() {
    let text = format!(
        "{}\n[[rule]]\nname = \"lgwan-dns6\"\nfrom = \"zone:lgwan\"\nto = \"2001:db8:40::53\"\nservice = \"dns\"\n",
        POLICY.replace("inside = \"lg-in\"\n", "inside = \"lg-in\"\nvlans = [20]\n")
    );
    let e = Engine::new(policy(&text));
    let partial = |start| FrameMeta { checksum_partial: true, checksum_at: Some((start, 6)), gso: Gso::None };
    let verdict = |frame: &[u8], meta| {
        let v = e.process_meta(Now::at(NOW), inside("lgwan"), frame, meta);
        (v.action, name(&e, &v))
    };
    let query = dns_query(7, "portal.example.lg.jp", 1);
    let tagged =
        vlan(&ip_frame(LG_TERM, "198.18.40.53", 17, 64, &udp_datagram(40_700, 53, &query)), 0x8100, 20);
    assert_eq!(verdict(&tagged, partial(34)), (Drop, "deny:malformed".into()), "counted without the tag");
    assert_eq!(verdict(&tagged, partial(38)), (Forward, "allow:rule:lgwan-dns".into()));
    // IPv6 with a destination options header (PadN) before the UDP header.
    let mut opts = vec![17, 0, 1, 4, 0, 0, 0, 0];
    opts.extend(udp_datagram(40_701, 53, &query));
    let (src, dst) = ("2001:db8:20::5".parse().unwrap(), "2001:db8:40::53".parse().unwrap());
    let v6 = vlan(&eth(0x86dd, &ipv6(src, dst, 60, 64, &opts)), 0x8100, 20);
    assert_eq!(verdict(&v6, partial(58)), (Drop, "deny:malformed".into()), "the extension header");
    assert_eq!(verdict(&v6, partial(66)), (Forward, "allow:rule:lgwan-dns6".into()));
}

/// Repeats of the checked beginning, from the legitimate side: a receiver's real
/// acknowledgement lets data after it flow, before its first acknowledgement nothing is
/// refused, and a segment that starts before the stream but ends before it (nothing of the
/// checked beginning in it) is judged as before.
#[test]
fn held_repeats_of_checked_bytes_do_not_stall_the_other_direction() {
    let e = review_engine();
    let mut c = checked_breakout(&e, 51_800);
    // The server's next bytes, and the client's, flow.
    c.server_passes(&[0x16, 0x03, 0x03, 0x00, 0x01, 0x00]);
    c.client_passes(&[0x17, 0x03, 0x03, 0x00, 0x01, 0x00]);
    // A repeat of the server's acknowledged first bytes is refused ...
    let first = c.c.server_at(ACK | PSH, 5001, c.c.client_next(), &server_hello_start());
    expect(&e, NOW, inside("internet"), &first, Drop, "deny:out-of-window");
    // ... a segment wholly before the stream (ending at the SYN's own number) is not.
    let before = c.c.server_at(ACK | PSH, 4990, c.c.client_next(), b"0123456789");
    c.server_crosses(&before);
}

/// Legitimate traffic refused: the checked beginning is the first `[inspect] depth` bytes
/// after the initial sequence number — and sequence numbers wrap every 4 GiB. A long
/// transfer (a download over α', a screen session) reaches the same numbers again, and
/// its new segments there, sent before the receiver had acknowledged up to the wrap, were
/// refused as repeats of the checked beginning (the offsets were compared unsigned: an
/// acknowledgement just short of the wrap counted as "4 GiB in"). Fixed: offsets are
/// compared signed.
#[test]
fn finding_a_transfer_past_four_gibibytes_was_refused_where_its_numbers_wrap() {
    let e = review_engine();
    let c = checked_breakout(&e, 51_900);
    let first = 1001u32; // the client's initial sequence number plus one
    let (server_seq, mut acked) = (c.c.server_next(), c.c.client_next());
    let step = |frame: &[u8], hops: [Ingress; 2]| {
        for at in hops {
            let v = e.process(Now::at(NOW), at, frame);
            assert_eq!((v.action, name(&e, &v).as_str()), (Forward, BREAKOUT));
        }
    };
    let client_hops = [inside("lgwan"), outside("internet")];
    let server_hops = [inside("internet"), outside("lgwan")];
    // Each round: one byte at the far end of the window, acknowledged.
    while acked.wrapping_sub(first) < u32::MAX - 200_000 {
        let seq = acked.wrapping_add(65_534);
        step(&c.c.client_at(ACK | PSH, seq, server_seq, b"x"), client_hops);
        acked = seq.wrapping_add(1);
        step(&c.c.server_at(ACK, server_seq, acked, b""), server_hops);
    }
    // Up to the wrap in full segments, then the first numbers again, none acknowledged yet.
    let mut seq = acked;
    while seq.wrapping_sub(first) > 0x8000_0000 || seq.wrapping_sub(first) < 4_000 {
        step(&c.c.client_at(ACK | PSH, seq, server_seq, &[0x17; 1000]), client_hops);
        seq = seq.wrapping_add(1000);
        if seq.wrapping_sub(acked) > 60_000 {
            acked = seq;
            step(&c.c.server_at(ACK, server_seq, acked, b""), server_hops);
        }
    }
}

/// The other side of class 41: "a real receiver has these bytes already" holds only when
/// the acknowledgement is real. An internet host that knows the connection's numbers (on
/// the path, or told by an accomplice) claims the cloud server's address and acknowledges
/// client bytes of the checked beginning that were lost past the gate: the client's
/// retransmissions of them are refused for good, and the session stalls until it times
/// out. Low: a denial of service that needs the sequence numbers.
#[test]
#[ignore = "finding (low, denial of service): a forged acknowledgement makes a lost segment of the checked beginning unrepeatable"]
fn finding_a_forged_acknowledgement_makes_a_lost_segment_unrepeatable() {
    let e = review_engine();
    let mut c = checked_breakout(&e, 52_000);
    // The client's Finished: both ports forward it, it is lost on the internet.
    let at = c.c.client_next();
    let finished = [0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5];
    c.client_passes(&finished);
    // The forged acknowledgement, as the cloud server.
    let forged = c.c.server_at(ACK, c.c.server_next(), c.c.client_next(), b"");
    c.server_crosses(&forged);
    // The client's retransmission: the server never had it.
    let again = c.c.client_at(ACK | PSH, at, c.c.server_next(), &finished);
    c.client_crosses(&again);
}

/// The other side of the narrowing fix: a reload that adds a name to `sni_allow` (the
/// common change) keeps the open sessions to the names already listed.
#[test]
fn fixes_a_reload_that_widens_sni_allow_keeps_open_sessions() {
    let e = review_engine();
    let mut c = breakout(&e, 51_700);
    c.client_passes(&hello(&[sni("portal.example.lg.jp")]));
    c.server_passes(&server_hello_start());
    let wider = review_policy("http").replace(
        r#"sni_allow = ["portal.example.lg.jp", "*.example.com"]"#,
        r#"sni_allow = ["portal.example.lg.jp", "*.example.com", "new.example.net"]"#,
    );
    assert!(wider.contains("new.example.net"));
    e.reload(policy(&wider)).unwrap();
    c.client_passes(&[0x17, 0x03, 0x03, 0x00, 0x01, 0x00]);
}
