//! Path inspection, attacked: decoy first segments the server never accepts (a wrong
//! checksum, out of window, riding on a RST, a TTL that expires past the gate), a
//! ClientHello split over segments for α' local breakout, an attachment on the text leg of
//! the mail path — each as the frames an attacker sends, with the verdict they get.

mod common;

use common::*;
use sekisho_engine::{Action, Engine, FindingKind, FrameMeta, Gso, Ingress, Now, Seen, Verdict};
use sekisho_policy::{App, Timestamp};
use sekisho_testkit::flags::*;
use sekisho_testkit::tls::{client_hello as hello, server_hello_start, sni};
use sekisho_testkit::*;

use Action::{Drop, Forward};

const NET: &str = "203.0.113.7";
const RELAY: &str = "198.18.40.10";
const LG_MAIL: &str = "198.18.20.25";
const LG_TERM: &str = "198.18.20.5";
const CLOUD: &str = "203.0.113.80";
const PROXY: &str = "198.18.40.30";
const LEG1: &str = "allow:path:mail-textify/1";
const LEG2: &str = "allow:path:mail-textify/2";
const BREAKOUT: &str = "allow:path:alpha-prime/1";
const WEB: &str = "allow:path:web/1";

/// The common policy plus an α' local-breakout path (lgwan → 203.0.113.80:443 by SNI) and
/// a web-isolation leg to an HTTP proxy (lgwan → 198.18.40.30:8080).
fn inspection_policy() -> String {
    format!("{POLICY}{}", breakout_and_proxy("http"))
}

fn inspection_engine() -> Engine {
    Engine::new(policy(&inspection_policy()))
}

/// One TCP connection judged at the first port it crosses: the client's frames on that
/// port's inside, the server's on its outside.
struct Conn<'e> {
    e: &'e Engine,
    c: TcpConn,
    client_at: Ingress,
    server_at: Ingress,
    allowed: &'static str,
}

impl<'e> Conn<'e> {
    /// Opens the connection (the handshake passes).
    fn open(
        e: &'e Engine,
        client: (&str, u16),
        server: (&str, u16),
        zone: &str,
        allowed: &'static str,
    ) -> Conn<'e> {
        let mut c = TcpConn::new(client, server);
        let (client_at, server_at) = (inside(zone), outside(zone));
        for (at, f) in [(client_at, c.syn()), (server_at, c.syn_ack()), (client_at, c.client(ACK, b""))] {
            expect(e, NOW, at, &f, Forward, allowed);
        }
        Conn { e, c, client_at, server_at, allowed }
    }

    fn client(&mut self, data: &[u8]) -> Verdict {
        let f = self.c.client(ACK | PSH, data);
        self.e.process(Now::at(NOW), self.client_at, &f)
    }

    fn server(&mut self, data: &[u8]) -> Verdict {
        let f = self.c.server(ACK | PSH, data);
        self.e.process(Now::at(NOW), self.server_at, &f)
    }

    #[track_caller]
    fn client_passes(&mut self, data: &[u8]) {
        let v = self.client(data);
        assert_eq!(
            (v.action, name(self.e, &v)),
            (Forward, self.allowed.to_owned()),
            "client {:?}",
            String::from_utf8_lossy(data)
        );
    }

    #[track_caller]
    fn server_passes(&mut self, data: &[u8]) {
        let v = self.server(data);
        assert_eq!(
            (v.action, name(self.e, &v)),
            (Forward, self.allowed.to_owned()),
            "server {:?}",
            String::from_utf8_lossy(data)
        );
    }

    /// A frame from the client with an explicit sequence number and TTL.
    fn client_raw(&self, flags: u16, seq: u32, ttl: u8, data: &[u8]) -> Vec<u8> {
        let (c, s) = (self.c.client_addr(), self.c.server_addr());
        ip_frame(&c.0, &s.0, 6, ttl, &tcp_segment_seq(c.1, s.1, flags, seq, self.c.server_next(), data))
    }

    #[track_caller]
    fn send(&self, frame: &[u8], action: Action, reason: &str) -> Verdict {
        expect(self.e, NOW, self.client_at, frame, action, reason)
    }
}

/// Internet sender → relay, after the relay's greeting.
fn mail_leg1(e: &Engine) -> Conn<'_> {
    let mut m = Conn::open(e, (NET, 41000), (RELAY, 25), "internet", LEG1);
    m.server_passes(b"220 relay ESMTP\r\n");
    m
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: relay\r\n\r\n";

/// After a decoy, the real stream — an HTTP request on the SMTP port — is what is checked.
#[track_caller]
fn the_real_stream_is_cut(m: &mut Conn<'_>) {
    let v = m.client(GET);
    assert_eq!((v.action, name(m.e, &v).as_str()), (Drop, "deny:app-mismatch"));
    let f = v.finding.expect("a finding");
    assert_eq!((f.kind, f.expected, f.seen), (FindingKind::Mismatch, App::Smtp, Seen::Http));
    // Cut for good: the next segment too.
    let v = m.client(b"EHLO now-i-am-smtp\r\n");
    assert_eq!(name(m.e, &v), "deny:app-mismatch");
}

#[test]
fn decoy_with_a_wrong_checksum_is_not_what_is_inspected() {
    let e = inspection_engine();
    let mut m = mail_leg1(&e);
    let decoy =
        corrupt_transport_checksum(&m.client_raw(ACK | PSH, m.c.client_next(), 64, b"EHLO decoy\r\n"));
    m.send(&decoy, Drop, "deny:malformed");
    the_real_stream_is_cut(&mut m);
    assert!(e.inspection_stats().bad_checksum >= 1);
}

#[test]
fn a_checksum_the_sending_kernel_completes_is_trusted() {
    let e = inspection_engine();
    let mut m = mail_leg1(&e);
    let partial = corrupt_transport_checksum(&m.c.client(ACK | PSH, b"EHLO sender\r\n"));
    // As the data plane reads it: the TCP checksum (14 + 20 bytes in, at 16) to complete.
    let meta = FrameMeta { checksum_partial: true, checksum_at: Some((34, 16)), ..FrameMeta::default() };
    let v = e.process_meta(Now::at(NOW), m.client_at, &partial, meta);
    assert_eq!((v.action, name(&e, &v).as_str()), (Forward, LEG1));
    m.server_passes(b"250 relay\r\n");
}

/// A host that writes its own vnet header (a virtual machine's guest, or root on a veth
/// peer) chooses where "its" checksum goes: whoever completes it on the way out would
/// write two bytes it chose into the payload the gate inspected. Only the packet's own
/// TCP or UDP checksum may be left to complete, and a super-frame only for its own
/// protocol.
#[test]
fn offload_work_must_be_the_packets_own() {
    let e = inspection_engine();
    let mut m = mail_leg1(&e);
    let ehlo = corrupt_transport_checksum(&m.c.client(ACK | PSH, b"EHLO sender\r\n"));
    let at =
        |start, offset, gso| FrameMeta { checksum_partial: true, checksum_at: Some((start, offset)), gso };
    for (meta, why) in [
        (at(54, 0, Gso::None), "a checksum written into the payload"),
        (at(34, 6, Gso::None), "a UDP checksum's place in a TCP segment"),
        (at(14, 10, Gso::None), "the IP header"),
        (at(34, 16, Gso::TcpV6), "IPv6 segmentation of an IPv4 packet"),
        (at(34, 16, Gso::Udp), "UDP segmentation of TCP"),
        (at(34, 16, Gso::Other), "an unknown segmentation"),
        (FrameMeta { gso: Gso::TcpV4, ..FrameMeta::default() }, "a super-frame without a partial checksum"),
    ] {
        let v = e.process_meta(Now::at(NOW), m.client_at, &ehlo, meta);
        assert_eq!((v.action, name(&e, &v).as_str()), (Drop, "deny:malformed"), "{why}");
    }
    let v = e.process_meta(Now::at(NOW), m.client_at, &ehlo, at(34, 16, Gso::TcpV4));
    assert_eq!((v.action, name(&e, &v).as_str()), (Forward, LEG1));
    // Link traffic and other protocols leave no checksum to complete.
    let v = e.process_meta(Now::at(NOW), m.client_at, &arp(), at(14, 0, Gso::None));
    assert_eq!((v.action, name(&e, &v).as_str()), (Drop, "deny:malformed"));
}

#[test]
fn decoy_out_of_window_or_ahead_changes_nothing() {
    let e = inspection_engine();
    let mut m = mail_leg1(&e);
    let far = m.client_raw(ACK | PSH, m.c.client_next().wrapping_add(5_000_000), 64, b"EHLO decoy\r\n");
    m.send(&far, Drop, "deny:out-of-window");
    // In the window, but beyond the next byte: dropped until the bytes before it come.
    let ahead = m.client_raw(ACK | PSH, m.c.client_next().wrapping_add(100), 64, b"EHLO decoy\r\n");
    m.send(&ahead, Drop, "deny:out-of-window");
    assert!(e.inspection_stats().ahead >= 1);
    the_real_stream_is_cut(&mut m);
}

#[test]
fn decoy_riding_on_a_rst_is_not_data() {
    let e = inspection_engine();
    let mut m = mail_leg1(&e);
    // In the window but not exact: it passes (the endpoint answers with a challenge ACK),
    // closes nothing, and its data is never delivered — so it is not inspected either.
    let rst = m.client_raw(RST | ACK, m.c.client_next().wrapping_add(10), 64, b"EHLO decoy\r\n");
    m.send(&rst, Forward, LEG1);
    the_real_stream_is_cut(&mut m);
}

#[test]
fn decoy_whose_ttl_expires_past_the_gate_cannot_be_replaced() {
    let e = inspection_engine();
    let m = mail_leg1(&e);
    let seq = m.c.client_next();
    // The gate sees and checks "EHLO", the relay never gets it (TTL 1 dies at the router).
    m.send(&m.client_raw(ACK | PSH, seq, 1, b"EHLO decoy\r\n"), Forward, LEG1);
    // The same bytes again are fine (a retransmission) ...
    m.send(&m.client_raw(ACK | PSH, seq, 64, b"EHLO decoy\r\n"), Forward, LEG1);
    // ... other bytes at the same place are not: the relay would get what nobody checked.
    let v = m.send(&m.client_raw(ACK | PSH, seq, 64, GET), Drop, "deny:app-mismatch");
    assert_eq!(v.finding.map(|f| f.detail), Some("a retransmission differs from the inspected bytes"));
    assert_eq!(e.inspection_stats().retransmission_differs, 1);
    // Partly overlapping with other bytes (the "GOOD" / "XXX" reassembly evasion) likewise.
    let m = mail_leg1_from(&e, 41_200);
    let seq = m.c.client_next();
    m.send(&m.client_raw(ACK | PSH, seq, 64, b"EHLO GOOD"), Forward, LEG1);
    m.send(&m.client_raw(ACK | PSH, seq.wrapping_add(6), 64, b"XXX\r\n"), Drop, "deny:app-mismatch");
}

#[test]
fn fragments_of_an_inspected_segment_are_refused() {
    let e = inspection_engine();
    let m = mail_leg1(&e);
    let whole = m.client_raw(ACK | PSH, m.c.client_next(), 64, &[b'E'; 64]);
    let seg = &ip_packet(&whole)[20..];
    let (s, d) = (NET.parse().unwrap(), RELAY.parse().unwrap());
    let first =
        eth(0x0800, &ipv4(s, d, 6, V4Opts { id: 5, more_fragments: true, ..V4Opts::default() }, &seg[..40]));
    let later =
        eth(0x0800, &ipv4(s, d, 6, V4Opts { id: 5, frag_offset: 5, ..V4Opts::default() }, &seg[40..]));
    m.send(&first, Drop, "deny:fragment");
    m.send(&later, Drop, "deny:fragment");
}

#[test]
fn server_first_protocols_are_checked_both_ways() {
    let e = inspection_engine();
    // The "relay" answers with an SSH banner: not SMTP.
    let mut m = Conn::open(&e, (NET, 41001), (RELAY, 25), "internet", LEG1);
    let v = m.server(b"SSH-2.0-OpenSSH_9.6\r\n");
    assert_eq!(name(&e, &v), "deny:app-mismatch");
    assert_eq!(v.finding.map(|f| f.seen), Some(Seen::Ssh));
    // A real SMTP dialogue, pipelined, until DATA: then the verdict is kept.
    let mut m = mail_leg1(&e);
    m.client_passes(b"EHLO sender.example\r\n");
    m.server_passes(b"250-relay\r\n250 PIPELINING\r\n");
    m.client_passes(b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<staff@lgwan.example>\r\nDATA\r\n");
    m.server_passes(b"250 ok\r\n250 ok\r\n");
    let v = m.server(b"354 go ahead\r\n");
    assert_eq!(v.finding.map(|f| (f.kind, f.seen)), Some((FindingKind::Identified, Seen::Smtp)));
    m.client_passes(&[0x00, 0xff, 0x10, 0x20]);
    assert_eq!(e.inspection_stats().active, 0, "delivered and acknowledged: the state is gone");
    // A tunnel right after the greeting: TLS bytes where a command belongs.
    let mut m = mail_leg1_from(&e, 41_300);
    assert_eq!(name(&e, &m.client(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0, 0, 0xc4])), "deny:app-mismatch");
}

/// lgwan terminal → the α' cloud service.
fn breakout(e: &Engine, port: u16) -> Conn<'_> {
    Conn::open(e, (LG_TERM, port), (CLOUD, 443), "lgwan", BREAKOUT)
}

/// A post-quantum sized key share (X25519MLKEM768: 1216 bytes), so that the hello does
/// not fit one segment.
fn key_share() -> (u16, Vec<u8>) {
    let mut d = 1256u16.to_be_bytes().to_vec();
    d.extend(0x11ecu16.to_be_bytes());
    d.extend(1248u16.to_be_bytes());
    d.extend([0x42; 1248]);
    d.extend(0x001du16.to_be_bytes());
    d.extend(2u16.to_be_bytes());
    d.extend([0x43; 2]);
    (51, d)
}

/// Sends `hello` in `parts` segments: every one but the last passes; returns the last
/// one's verdict.
fn split(c: &mut Conn<'_>, hello: &[u8], parts: usize) -> Verdict {
    let size = hello.len().div_ceil(parts);
    let chunks: Vec<&[u8]> = hello.chunks(size).collect();
    for chunk in &chunks[..chunks.len() - 1] {
        c.client_passes(chunk);
    }
    c.client(chunks[chunks.len() - 1])
}

#[test]
fn alpha_prime_passes_a_client_hello_to_a_listed_name_split_over_segments() {
    let e = inspection_engine();
    for (i, (parts, name_)) in
        [(2, "portal.example.lg.jp"), (3, "mail.example.com"), (3, "a.b.EXAMPLE.com")].into_iter().enumerate()
    {
        let mut c = breakout(&e, 50_000 + i as u16);
        let h = hello(&[sni(name_), key_share(), (21, vec![0; 300])]);
        assert!(h.len() > 1400, "the hello needs more than one segment");
        let v = split(&mut c, &h, parts);
        assert_eq!((v.action, name(&e, &v).as_str()), (Forward, BREAKOUT), "{name_} in {parts}");
        assert_eq!(v.finding.map(|f| f.kind), None, "the server's side is still to come");
        // The ServerHello's start, to its random: not a HelloRetryRequest.
        let v = c.server(&server_hello_start());
        assert_eq!(v.finding.map(|f| (f.kind, f.seen)), Some((FindingKind::Identified, Seen::Tls)));
    }
}

#[test]
fn alpha_prime_cuts_other_names_no_name_ech_and_ip_literals() {
    let e = inspection_engine();
    let ech = (0xfe0d, vec![0; 64]);
    type Extensions = Vec<(u16, Vec<u8>)>;
    let cases: [(Extensions, &str); 6] = [
        (vec![sni("evil.example.net"), key_share()], "server name not in sni_allow"),
        (vec![sni("example.com"), key_share()], "server name not in sni_allow"),
        (vec![sni("portal.example.lg.jp.evil.net"), key_share()], "server name not in sni_allow"),
        (vec![key_share()], "ClientHello without a server name"),
        (vec![sni("portal.example.lg.jp"), ech, key_share()], "Encrypted Client Hello hides the server name"),
        (vec![sni("203.0.113.80"), key_share()], "server name is an IP literal"),
    ];
    for (i, (exts, why)) in cases.into_iter().enumerate() {
        for parts in [1, 2, 3] {
            let mut c = breakout(&e, 51_000 + (i * 10 + parts) as u16);
            let v = split(&mut c, &hello(&exts), parts);
            assert_eq!((v.action, name(&e, &v).as_str()), (Drop, "deny:app-mismatch"), "{why} in {parts}");
            let f = v.finding.unwrap();
            assert_eq!((f.expected, f.seen, f.detail), (App::Tls, Seen::Tls, why));
        }
    }
    // Not TLS at all.
    let mut c = breakout(&e, 52_000);
    assert_eq!(name(&e, &c.client(GET)), "deny:app-mismatch");
    let legs = e.leg_stats();
    let leg = legs.iter().find(|l| l.path == "alpha-prime").unwrap();
    assert_eq!(leg.mismatches, 19);
    assert_eq!(leg.identified[Seen::Http.index()], 1);
}

#[test]
fn http_connect_is_refused_unless_the_service_allows_it() {
    let e = inspection_engine();
    let mut c = Conn::open(&e, (LG_TERM, 53_000), (PROXY, 8080), "lgwan", WEB);
    let v = c.client(b"CONNECT mail.example.net:25 HTTP/1.1\r\nHost: mail.example.net:25\r\n\r\n");
    assert_eq!(name(&e, &v), "deny:app-mismatch");
    assert_eq!(v.finding.map(|f| f.seen), Some(Seen::HttpConnect));
    let mut c = Conn::open(&e, (LG_TERM, 53_001), (PROXY, 8080), "lgwan", WEB);
    c.client_passes(b"GET http://www.example.com/ HTTP/1.1\r\nHost: www.example.com\r\n\r\n");
    c.server_passes(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let e = Engine::new(policy(
        &inspection_policy().replace("app = \"http\"", "app = \"http\"\nallow_connect = true"),
    ));
    let mut c = Conn::open(&e, (LG_TERM, 53_002), (PROXY, 8080), "lgwan", WEB);
    c.client_passes(b"CONNECT mail.example.net:25 HTTP/1.1\r\n\r\n");
}

/// The relay delivering into LGWAN: the text leg of the mail path.
fn text_leg(e: &Engine, port: u16) -> Conn<'_> {
    let mut m = Conn::open(e, (RELAY, port), (LG_MAIL, 25), "sanitization", LEG2);
    m.server_passes(b"220 mail.lgwan ESMTP\r\n");
    m.client_passes(b"EHLO relay.sanitization\r\n");
    m.server_passes(b"250-mail.lgwan\r\n250 PIPELINING\r\n");
    m.client_passes(b"MAIL FROM:<relay@sanitization>\r\nRCPT TO:<staff@lgwan>\r\nDATA\r\n");
    m.server_passes(b"250 ok\r\n250 ok\r\n354 go ahead\r\n");
    m
}

#[test]
fn a_text_mail_is_delivered_and_one_with_an_attachment_is_cut_before_its_end() {
    let e = inspection_engine();
    let mut m = text_leg(&e, 42_000);
    m.client_passes(b"From: relay@sanitization\r\nSubject: report\r\nX-Sekisho-Sanitized: mail-text\r\n");
    m.client_passes(b"Content-Type: text/plain; charset=utf-8\r\n\r\nPlain text for LGWAN staff.\r\n");
    m.client_passes(b"..a line that starts with a dot\r\n.\r\n");
    m.server_passes(b"250 queued as 42\r\n");
    m.client_passes(b"QUIT\r\n");
    m.server_passes(b"221 bye\r\n");

    let mut m = text_leg(&e, 42_001);
    m.client_passes(b"Subject: invoice\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\n");
    m.client_passes(b"Content-Type: text/plain\r\n\r\nPlease find the invoice attached.\r\n--XX\r\n");
    let v = m.client(b"Content-Type: application/x-msdownload; name=\"invoice.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    assert_eq!((v.action, name(&e, &v).as_str()), (Drop, "deny:not-sanitized"));
    let f = v.finding.unwrap();
    assert_eq!(
        (f.kind, f.expected, f.detail),
        (FindingKind::NotSanitized, App::Smtp, "part is not text/plain")
    );
    // The end of data never reaches the LGWAN mail server.
    let v = m.client(b"TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQ\r\n--XX--\r\n.\r\n");
    assert_eq!((v.action, name(&e, &v).as_str()), (Drop, "deny:not-sanitized"));
    let leg = e.leg_stats().into_iter().find(|l| l.path == "mail-textify" && l.leg == 2).unwrap();
    assert_eq!((leg.flows, leg.not_sanitized), (2, 1));
    // The text mail's session counts as SMTP (its commands were answered); the cut one
    // as what was seen, SMTP too.
    assert_eq!(leg.identified[Seen::Smtp.index()], 2);
    assert_eq!(e.inspection_stats().not_sanitized, 1);

    // A base64 body, an attachment disposition, STARTTLS: all cut on the text leg.
    for (i, bad) in [
        &b"Content-Transfer-Encoding: base64\r\n\r\n"[..],
        b"Content-Disposition: attachment; filename=a.txt\r\n\r\n",
        b"Subject: x\r\n\r\nbegin 644 payload.exe\r\n",
    ]
    .into_iter()
    .enumerate()
    {
        let mut m = text_leg(&e, 42_010 + i as u16);
        assert_eq!(name(&e, &m.client(bad)), "deny:not-sanitized", "{:?}", String::from_utf8_lossy(bad));
    }
    let mut m = Conn::open(&e, (RELAY, 42_020), (LG_MAIL, 25), "sanitization", LEG2);
    m.server_passes(b"220 mail.lgwan ESMTP\r\n");
    assert_eq!(name(&e, &m.client(b"STARTTLS\r\n")), "deny:not-sanitized");
    // On leg 1 (into the sanitiser) attachments are the relay's business.
    let mut m = mail_leg1(&e);
    m.client_passes(b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    m.server_passes(b"250 x\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    m.client_passes(
        b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0x\r\n.\r\n",
    );
}

#[test]
fn the_inspection_table_is_bounded_and_fails_closed() {
    let text = POLICY.replace("[flow]", "[inspect]\nmax_flows = 2\n\n[flow]");
    let e = Engine::new(policy(&text));
    let mut a = mail_leg1(&e);
    let _b = mail_leg1_from(&e, 41_101);
    // A third flow's first data finds no room: dropped, not passed unchecked.
    let mut c = Conn::open(&e, (NET, 41_102), (RELAY, 25), "internet", LEG1);
    let v = c.server(b"220 relay ESMTP\r\n");
    assert_eq!((v.action, name(&e, &v).as_str()), (Drop, "deny:flow-table-full"));
    assert_eq!(e.inspection_stats().table_full, 1);
    // Once a state is freed, the sender's retransmission passes.
    a.client_passes(b"EHLO x\r\nDATA\r\n");
    a.server_passes(b"250 x\r\n354 go\r\n");
    a.client_passes(b"body\r\n");
    assert_eq!(e.inspection_stats().active, 1);
    let retransmit =
        c.c.server_at(ACK | PSH, c.c.server_next() - 17, c.c.client_next(), b"220 relay ESMTP\r\n");
    expect(&e, NOW, c.server_at, &retransmit, Forward, LEG1);
}

fn mail_leg1_from(e: &Engine, port: u16) -> Conn<'_> {
    let mut m = Conn::open(e, (NET, port), (RELAY, 25), "internet", LEG1);
    m.server_passes(b"220 relay ESMTP\r\n");
    m
}

#[test]
fn dns_tunnels_are_cut_over_the_threshold() {
    let e = inspection_engine();
    let (at, back) = (inside("lgwan"), outside("lgwan"));
    let mut cut = None;
    for i in 0..20u16 {
        let q = dns_query(i, &format!("{}.t.pirate.example", "a1b2c3d4".repeat(5)), 10);
        let v = e.process(Now::at(NOW), at, &udp(LG_TERM, 40_000, "198.18.40.53", 53, &q));
        if v.action == Drop {
            cut.get_or_insert((i, v));
            continue;
        }
        let v = e.process(Now::at(NOW), back, &udp("198.18.40.53", 53, LG_TERM, 40_000, &dns_answer(&q)));
        assert_eq!(v.action, Forward);
    }
    let (i, v) = cut.expect("the tunnel was cut");
    assert_eq!(i, 7, "the 8th suspicious query reaches the default threshold");
    assert_eq!(v.finding.map(|f| (f.seen, f.kind)), Some((Seen::DnsTunnel, FindingKind::Mismatch)));
    // Ordinary lookups pass, one flow each or many on one.
    for i in 0..20u16 {
        let q = dns_query(i, "portal.example.lg.jp", 1);
        expect(&e, NOW, at, &udp(LG_TERM, 40_001, "198.18.40.53", 53, &q), Forward, "allow:rule:lgwan-dns");
    }
    // Not DNS at all on the DNS port.
    expect(
        &e,
        NOW,
        at,
        &udp(LG_TERM, 40_002, "198.18.40.53", 53, b"SSH-2.0-tunnel\r\n"),
        Drop,
        "deny:app-mismatch",
    );
}

#[test]
fn scans_and_floods_from_the_internet_are_detected_and_sessions_keep_working() {
    let text = POLICY
        .replace("[flow]", "[monitor]\nscan_ports = 32\nsyn_half_open = 200\nicmp_flood = 100\n\n[flow]");
    let e = Engine::new(policy(&text));
    let mut m = mail_leg1(&e);
    m.client_passes(b"EHLO sender\r\n");
    // A port scan of the relay from one internet host.
    for port in 1..=500u16 {
        let _ =
            e.process(Now::at(NOW), inside("internet"), &tcp("203.0.113.66", 40_000, RELAY, port, SYN, b""));
    }
    // A SYN flood against the relay's SMTP port from many sources.
    for i in 0..3000u32 {
        let src = format!("198.51.100.{}", i % 250 + 1);
        let _ = e.process(
            Now::at(NOW),
            inside("internet"),
            &tcp(&src, (i % 60_000) as u16 + 1024, RELAY, 25, SYN, b""),
        );
    }
    for _ in 0..150 {
        let _ = e.process(Now::at(NOW), inside("internet"), &ping("203.0.113.67", RELAY, 1, false));
    }
    // The established session goes on.
    m.server_passes(b"250 relay\r\n");
    m.client_passes(b"QUIT\r\n");
    let mut found = Vec::new();
    e.drain_detections(|d| found.push(d));
    let kinds: Vec<_> = found.iter().map(|d| (d.kind.as_str(), d.subject.to_string(), d.summary)).collect();
    assert!(kinds.contains(&("port-scan", "203.0.113.66".into(), false)), "{kinds:?}");
    assert!(kinds.contains(&("syn-flood", RELAY.into(), false)), "{kinds:?}");
    assert!(kinds.contains(&("icmp-flood", RELAY.into(), false)), "{kinds:?}");
    assert_eq!(found.len(), 3, "once per window and key: {kinds:?}");
    // The window ends: one summary each, with what was not reported one by one.
    e.sweep(NOW.0 + 11 * SEC);
    let mut summaries = Vec::new();
    e.drain_detections(|d| summaries.push(d));
    let syn = summaries.iter().find(|d| d.kind.as_str() == "syn-flood").unwrap();
    assert!(syn.summary && syn.suppressed >= 2700, "{syn:?}");
    let scan = summaries.iter().find(|d| d.kind.as_str() == "port-scan").unwrap();
    assert!(scan.suppressed >= 400, "{scan:?}");
}

#[test]
fn a_detected_scanner_can_be_blocked_for_a_while() {
    let text = POLICY.replace("[flow]", "[monitor]\nscan_ports = 16\nblock_ttl_s = 60\n\n[flow]");
    let e = Engine::new(policy(&text));
    let mut last = String::new();
    for port in 1..=100u16 {
        last = name(
            &e,
            &e.process(Now::at(NOW), inside("internet"), &tcp("203.0.113.66", 40_000, RELAY, port, SYN, b"")),
        );
    }
    assert_eq!(last, "deny:blocked-source");
    let mail = tcp("203.0.113.66", 40_001, RELAY, 25, SYN, b"");
    expect(&e, NOW, inside("internet"), &mail, Drop, "deny:blocked-source");
    expect(&e, Timestamp(NOW.0 + 61 * SEC), inside("internet"), &mail, Forward, LEG1);
    assert!(e.monitor_stats().blocked > 0);
}

#[test]
fn inspected_bytes_are_kept_until_the_receiver_has_them() {
    let e = inspection_engine();
    // The juki exception's SFTP connection: the server's banner, then the client's with
    // a TTL that dies past the gate — both checks pass, the flow would be identified.
    let mut c = TcpConn::new(("198.18.10.5", 40_100), ("198.18.20.30", 22));
    let (at, back) = (inside("mynumber"), outside("mynumber"));
    let r = "allow:exception:juki-batch";
    for (side, f) in [(at, c.syn()), (back, c.syn_ack()), (at, c.client(ACK, b""))] {
        expect(&e, NOW, side, &f, Forward, r);
    }
    expect(&e, NOW, back, &c.server(ACK | PSH, b"SSH-2.0-juki\r\n"), Forward, r);
    let seq = c.client_next();
    let (src, dst) = (c.client_addr(), c.server_addr());
    let raw = |ttl: u8, data: &[u8]| {
        ip_frame(
            &src.0,
            &dst.0,
            6,
            ttl,
            &tcp_segment_seq(src.1, dst.1, ACK | PSH, seq, c.server_next(), data),
        )
    };
    expect(&e, NOW, at, &raw(1, b"SSH-2.0-decoy\r\n"), Forward, r);
    // Not acknowledged by the server: the state stays, and the bytes in place of the decoy
    // must be the decoy's.
    assert_eq!(e.inspection_stats().active, 1);
    expect(&e, NOW, at, &raw(64, b"GET / HTTP/1.1\r\n\r\n"), Drop, "deny:app-mismatch");
}
