//! End-to-end tests: the lab in network namespaces, `sekishod run` in its gateway, real
//! client programs (ping, curl, swaks, socat, iperf3, tcpdump) and raw frames. Each test
//! asserts what the client observed and which reason counter moved in the daemon, read
//! through its control socket. The fixture (and the root requirement) is in
//! `tests/src/lib.rs`.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use sekisho_e2e::{blocked, pass, visible, with_lab, Fixture, Mode};
use sekisho_lab::{addr, cmd, MailProbe, Ns};
use sekisho_testkit as tk;

fn web() -> String {
    format!("https://{}/", addr::IN_SENDER)
}

fn cdr() -> String {
    format!("https://{}/", addr::SZ_CDR)
}

#[test]
fn intra_zone_traffic_passes() {
    with_lab("intra_zone_traffic_passes", Mode::Enforce, |fx| {
        let before = fx.snapshot()?;
        pass(fx.lab.ping(Ns::Lgwan, addr::LG_TERMINAL, addr::LG_ROUTER), "lgwan terminal -> its router")?;
        pass(
            fx.lab.ping(Ns::Lgwan, addr::LG_TERMINAL6, addr::LG_ROUTER6),
            "lgwan terminal -> its router (v6)",
        )?;
        pass(fx.lab.ping(Ns::Mynumber, addr::MN_BATCH, addr::MN_ROUTER), "mynumber host -> its router")?;
        pass(fx.lab.ping(Ns::Sanitization, addr::SZ_RELAY, addr::SZ_ROUTER), "relay -> its router")?;
        fx.moved(&before, "allow:intra-zone")?;
        Ok(())
    });
}

#[test]
fn mail_path_delivers_a_textified_message() {
    with_lab("mail_path_delivers_a_textified_message", Mode::Enforce, |fx| {
        let before = fx.snapshot()?;
        let count = fx.lab.mailbox().len();
        let marker = format!("e2e-mail-{}", std::process::id());
        let probe = MailProbe { marker: &marker, subject: "e2e mail path" };
        pass(fx.lab.swaks(Ns::Internet, addr::IN_SENDER, addr::SZ_RELAY, &probe), "swaks to the relay")?;
        fx.moved(&before, "allow:path")?;
        let mailbox = fx.lab.mailbox();
        let new: Vec<&(String, String)> = mailbox.iter().skip(count).collect();
        ensure!(new.len() == 1, "expected one new message at the LGWAN mail host, found {}", new.len());
        let (file, message) = new[0];
        let check = |cond: bool, what: &str| -> anyhow::Result<()> {
            ensure!(cond, "message {file}: {what}:\n{message}");
            Ok(())
        };
        check(message.contains("X-Sekisho-Sanitized: mail-text"), "no X-Sekisho-Sanitized header")?;
        check(message.contains("Content-Type: text/plain"), "not text/plain")?;
        check(
            message.contains(&format!("Plain text for LGWAN staff: {marker}")),
            "the text body is missing",
        )?;
        check(message.contains("peer=198.18.40.10:"), "not delivered by the relay (198.18.40.10)")?;
        check(!message.to_ascii_lowercase().contains("<script"), "HTML script survived")?;
        check(!message.contains("<html"), "HTML survived")?;
        check(!message.contains("EXECUTABLE-PAYLOAD"), "the attachment's content survived")?;
        check(!message.contains("TVotdGhpcy"), "the attachment (base64) survived")?;
        check(message.contains("invoice.exe"), "the removal note does not name the attachment")?;
        check(!message.contains("multipart"), "still multipart")?;
        Ok(())
    });
}

#[test]
fn file_sanitiser_takes_files_in_and_gives_text_out() {
    with_lab("file_sanitiser_takes_files_in_and_gives_text_out", Mode::Enforce, |fx| {
        let before = fx.snapshot()?;
        let url = format!("https://{}/files/e2e-report.html", addr::SZ_CDR);
        let body = b"<p>Quarterly report</p><script>steal()</script>";
        pass(fx.lab.https(Ns::Internet, addr::IN_SENDER, &url, Some(body)), "internet upload")?;
        let got = pass(fx.lab.https(Ns::Lgwan, addr::LG_TERMINAL, &url, None), "lgwan download")?;
        let text = got.output.stdout_text();
        ensure!(text.contains("Quarterly report") && !text.contains("steal"), "not sanitised: {text:?}");
        fx.moved(&before, "allow:path")?;
        Ok(())
    });
}

#[test]
fn screen_transfer_leg_works_and_the_vdi_host_cannot_connect_back() {
    with_lab("screen_transfer_leg_works_and_the_vdi_host_cannot_connect_back", Mode::Enforce, |fx| {
        let before = fx.snapshot()?;
        pass(fx.lab.rdp(Ns::Lgwan, addr::LG_TERMINAL, addr::IN_VDI), "lgwan -> VDI 3389")?;
        fx.moved(&before, "allow:path")?;
        let before = fx.snapshot()?;
        blocked(fx.lab.rdp(Ns::Internet, addr::IN_VDI, addr::LG_TERMINAL), "VDI -> lgwan terminal 3389")?;
        blocked(
            fx.lab.tcp_exchange(Ns::Internet, addr::IN_VDI, addr::LG_JUKI, 22, b"SSH-2.0-x\r\n", b"SSH-"),
            "VDI -> lgwan juki 22",
        )?;
        fx.moved(&before, "deny:unsanitized-crossing")?;
        Ok(())
    });
}

#[test]
fn direct_lgwan_internet_crossing_fails_both_ways() {
    with_lab("direct_lgwan_internet_crossing_fails_both_ways", Mode::Enforce, |fx| {
        // The servers are up: reachable from inside their own segment.
        pass(fx.lab.https(Ns::Internet, addr::IN_VDI, &web(), None), "internet web from its own segment")?;
        let before = fx.snapshot()?;
        let count = fx.lab.mailbox().len();
        let capture = fx.lab.capture(Ns::Internet, "eth0", "ip and host 198.18.20.5")?;
        blocked(fx.lab.https(Ns::Lgwan, addr::LG_TERMINAL, &web(), None), "lgwan -> internet web")?;
        blocked(fx.lab.ping(Ns::Lgwan, addr::LG_TERMINAL, addr::IN_SENDER), "lgwan -> internet ping")?;
        let seen = capture.finish()?;
        ensure!(seen.is_empty(), "packets from the lgwan terminal reached the internet segment: {seen:?}");
        let probe = MailProbe { marker: "direct", subject: "direct" };
        blocked(
            fx.lab.swaks(Ns::Internet, addr::IN_SENDER, addr::LG_MAIL, &probe),
            "internet -> LGWAN mail",
        )?;
        blocked(fx.lab.ping(Ns::Lgwan, addr::LG_TERMINAL6, addr::IN_SENDER6), "lgwan -> internet ping (v6)")?;
        ensure!(fx.lab.mailbox().len() == count, "the LGWAN mail host received a message directly");
        fx.moved(&before, "deny:unsanitized-crossing")?;
        Ok(())
    });
}

/// Packets from mynumber sources other than neighbour discovery (ICMPv6 133-137, link
/// traffic that stays on the segment).
const MYNUMBER_NOT_LINK: &str = "(ip and src net 198.18.10.0/24) or (ip6 and src net 2001:db8:10::/48 \
                                 and not (icmp6 and ip6[40] >= 133 and ip6[40] <= 137))";

#[test]
fn mynumber_reaches_no_other_zone() {
    with_lab("mynumber_reaches_no_other_zone", Mode::Enforce, |fx| {
        let before = fx.snapshot()?;
        let count = fx.lab.mailbox().len();
        // On every interface of the core router: a packet the gateway drops at mn-in
        // never gets this far.
        let capture = fx.lab.capture(Ns::Core, "any", MYNUMBER_NOT_LINK)?;
        blocked(fx.lab.ping(Ns::Mynumber, addr::MN_OTHER, addr::LG_TERMINAL), "mynumber -> lgwan ping")?;
        blocked(fx.lab.https(Ns::Mynumber, addr::MN_OTHER, &web(), None), "mynumber -> internet https")?;
        blocked(fx.lab.https(Ns::Mynumber, addr::MN_BATCH, &cdr(), None), "mynumber -> sanitiser https")?;
        let probe = MailProbe { marker: "mn", subject: "mn" };
        blocked(
            fx.lab.swaks(Ns::Mynumber, addr::MN_OTHER, addr::SZ_RELAY, &probe),
            "mynumber -> relay smtp",
        )?;
        blocked(
            fx.lab.ping(Ns::Mynumber, addr::MN_BATCH6, addr::SZ_RELAY6),
            "mynumber -> sanitization (v6)",
        )?;
        let seen = capture.finish()?;
        ensure!(seen.is_empty(), "mynumber packets got past the gateway:\n{}", seen.join("\n"));
        ensure!(fx.lab.mailbox().len() == count, "mail from mynumber arrived");
        fx.moved(&before, "deny:mynumber-isolation")?;
        Ok(())
    });
}

#[test]
fn exception_works_only_for_its_host_and_service() {
    with_lab("exception_works_only_for_its_host_and_service", Mode::Enforce, |fx| {
        let before = fx.snapshot()?;
        let a = pass(fx.lab.ssh(Ns::Mynumber, addr::MN_BATCH, addr::LG_JUKI), "juki batch -> juki ssh")?;
        ensure!(a.output.stdout_text().starts_with("SSH-2.0-sekisho-lab-juki"), "unexpected banner");
        fx.moved(&before, "allow:exception")?;
        let before = fx.snapshot()?;
        blocked(
            fx.lab.ssh(Ns::Mynumber, addr::MN_OTHER, addr::LG_JUKI),
            "another mynumber host -> juki ssh",
        )?;
        blocked(fx.lab.ping(Ns::Mynumber, addr::MN_BATCH, addr::LG_JUKI), "juki batch -> juki ping")?;
        blocked(
            fx.lab.rdp(Ns::Mynumber, addr::MN_BATCH, addr::LG_TERMINAL),
            "juki batch -> lgwan terminal rdp",
        )?;
        blocked(
            fx.lab.tcp_exchange(Ns::Lgwan, addr::LG_JUKI, addr::MN_BATCH, 22, b"SSH-2.0-x\r\n", b"SSH-"),
            "juki server -> juki batch (reverse)",
        )?;
        fx.moved(&before, "deny:mynumber-isolation")?;
        Ok(())
    });
}

#[test]
fn spoofed_source_is_dropped() {
    with_lab("spoofed_source_is_dropped", Mode::Enforce, |fx| {
        let spoof = "203.0.113.99";
        fx.lab.must(Ns::Lgwan, &["ip", "addr", "add", &format!("{spoof}/32"), "dev", "eth0"])?;
        let before = fx.snapshot()?;
        let a = fx.lab.https(Ns::Lgwan, spoof, &web(), None);
        let b = fx.lab.ping(Ns::Lgwan, spoof, addr::LG_ROUTER);
        fx.lab.must(Ns::Lgwan, &["ip", "addr", "del", &format!("{spoof}/32"), "dev", "eth0"])?;
        blocked(a, "spoofed 203.0.113.99 -> internet web")?;
        blocked(b, "spoofed 203.0.113.99 -> lgwan router")?;
        let d = fx.moved(&before, "deny:spoofed-source")?;
        ensure!(d.side("lg-in", "dropped") > 0, "lg-in dropped nothing: {d}");
        Ok(())
    });
}

#[test]
fn mid_stream_tcp_is_dropped() {
    with_lab("mid_stream_tcp_is_dropped", Mode::Enforce, |fx| {
        let before = fx.snapshot()?;
        // A bare ACK (and a data segment) of a connection that never began with SYN,
        // toward an allowed service.
        let ack = tk::tcp(addr::LG_TERMINAL, 40001, addr::SZ_CDR, 443, tk::flags::ACK, b"");
        let data = tk::tcp(
            addr::LG_TERMINAL,
            40001,
            addr::SZ_CDR,
            443,
            tk::flags::ACK | tk::flags::PSH,
            b"\x16\x03\x01",
        );
        fx.lab.send_frame(Ns::Lgwan, &ack)?;
        fx.lab.send_frame(Ns::Lgwan, &data)?;
        let d = fx.moved(&before, "deny:no-flow")?;
        ensure!(d.reason("deny:no-flow") >= 2, "expected two no-flow drops: {d}");
        ensure!(d.side("lg-in", "dropped") >= 2, "lg-in did not drop them: {d}");
        Ok(())
    });
}

#[test]
fn non_ip_ethertype_is_dropped() {
    with_lab("non_ip_ethertype_is_dropped", Mode::Enforce, |fx| {
        let before = fx.snapshot()?;
        fx.lab.send_frame(Ns::Lgwan, &tk::eth(0x88b5, &[0x5a; 46]))?;
        fx.lab.send_frame(Ns::Internet, &tk::eth(0x88cc, &[0x02; 46]))?;
        let d = fx.moved(&before, "deny:non-ip")?;
        ensure!(d.reason("deny:non-ip") >= 2, "expected two non-ip drops: {d}");
        ensure!(d.side("lg-in", "dropped") >= 1 && d.side("in-in", "dropped") >= 1, "not dropped: {d}");
        Ok(())
    });
}

fn gre(src: &str, dst: &str) -> Vec<u8> {
    let inner = tk::ip_packet(&tk::ping("192.0.2.1", "192.0.2.2", 7, false)).to_vec();
    let mut payload = vec![0x00, 0x00, 0x08, 0x00];
    payload.extend_from_slice(&inner);
    tk::ip_frame(src, dst, 47, 64, &payload)
}

fn six_in_four(src: &str, dst: &str) -> Vec<u8> {
    let inner = tk::ip_packet(&tk::ping("2001:db8:30::99", "2001:db8:20::99", 7, false)).to_vec();
    tk::ip_frame(src, dst, 41, 64, &inner)
}

#[test]
fn tunnels_crossing_zones_are_dropped() {
    with_lab("tunnels_crossing_zones_are_dropped", Mode::Enforce, |fx| {
        // lgwan -> internet: no path covers it, so the zone invariant decides.
        let before = fx.snapshot()?;
        fx.lab.send_frame(Ns::Lgwan, &gre(addr::LG_TERMINAL, addr::IN_SENDER))?;
        fx.lab.send_frame(Ns::Lgwan, &six_in_four(addr::LG_TERMINAL, addr::IN_SENDER))?;
        let d = fx.moved(&before, "deny:unsanitized-crossing")?;
        ensure!(d.reason("deny:unsanitized-crossing") >= 2, "{d}");
        // lgwan -> 198.18.40.30: the e2e rule allows "any" protocol there, but a
        // service that does not name the tunnel does not let one cross.
        let before = fx.snapshot()?;
        fx.lab.send_frame(Ns::Lgwan, &gre(addr::LG_TERMINAL, "198.18.40.30"))?;
        fx.lab.send_frame(Ns::Lgwan, &six_in_four(addr::LG_TERMINAL, "198.18.40.30"))?;
        let d = fx.moved(&before, "deny:tunnel")?;
        ensure!(d.reason("deny:tunnel") >= 2, "{d}");
        Ok(())
    });
}

#[test]
fn another_protocol_on_an_approved_port_is_cut() {
    with_lab("another_protocol_on_an_approved_port_is_cut", Mode::Enforce, |fx| {
        let before = fx.snapshot()?;
        let url = format!("http://{}:443/", addr::SZ_CDR);
        blocked(fx.lab.plaintext_http(Ns::Lgwan, addr::LG_TERMINAL, &url), "plain HTTP to the https port")?;
        fx.moved(&before, "deny:app-mismatch")?;
        Ok(())
    });
}

#[test]
fn iperf3_runs_through_an_allowed_leg() {
    with_lab("iperf3_runs_through_an_allowed_leg", Mode::Enforce, |fx| {
        let mut server = fx.lab.command(Ns::Sanitization, "iperf3");
        server.args(["-s", "-1", "-B", addr::SZ_CDR, "-p", "5201"]);
        server.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        let mut server = server.spawn().context("cannot start iperf3 -s")?;
        std::thread::sleep(Duration::from_millis(300));
        let before = fx.snapshot()?;
        let out = fx.lab.exec(
            Ns::Lgwan,
            &["iperf3", "-c", addr::SZ_CDR, "-B", addr::LG_TERMINAL, "-p", "5201", "-t", "2", "-f", "m"],
            None,
            Duration::from_secs(15),
        );
        let _ = cmd::stop_child(&mut server, Duration::from_secs(1));
        let out = out?;
        ensure!(out.success(), "iperf3 failed: {}\n{}", out.summary(), out.stdout_text());
        let receiver =
            out.stdout_text().lines().find(|l| l.contains("receiver")).unwrap_or_default().to_string();
        visible(&format!("e2e iperf3 through sekishod (debug build): {}", receiver.trim()));
        fx.moved(&before, "allow:path")?;
        Ok(())
    });
}

#[test]
fn monitor_mode_passes_what_enforce_drops_and_records_it() {
    with_lab("monitor_mode_passes_what_enforce_drops_and_records_it", Mode::Monitor, |fx| {
        let stats = fx.snapshot()?;
        ensure!(stats.mode == "monitor", "the daemon reports mode {:?}", stats.mode);
        let before = stats;
        pass(fx.lab.https(Ns::Lgwan, addr::LG_TERMINAL, &web(), None), "lgwan -> internet web (monitor)")?;
        let d = fx.moved(&before, "deny:unsanitized-crossing")?;
        ensure!(d.total("monitored") > 0, "nothing counted as monitored: {d}");
        let before = fx.snapshot()?;
        pass(
            fx.lab.ping(Ns::Mynumber, addr::MN_OTHER, addr::IN_SENDER),
            "mynumber -> internet ping (monitor)",
        )?;
        let d = fx.moved(&before, "deny:mynumber-isolation")?;
        ensure!(d.total("monitored") > 0, "nothing counted as monitored: {d}");
        ensure!(d.total("dropped") == 0, "monitor mode dropped something: {d}");
        Ok(())
    });
}

#[test]
fn killed_daemon_stops_all_crossing() {
    with_lab("killed_daemon_stops_all_crossing", Mode::Enforce, |fx| {
        let page = format!("https://{}/", addr::SZ_CDR);
        pass(fx.lab.https(Ns::Lgwan, addr::LG_TERMINAL, &page, None), "lgwan -> sanitiser (daemon up)")?;
        pass(fx.lab.ping(Ns::Lgwan, addr::LG_TERMINAL, addr::LG_ROUTER), "lgwan -> router (daemon up)")?;
        let (daemon, _) = fx.daemon.take().context("no daemon")?;
        let status = daemon.kill()?;
        ensure!(!status.success(), "SIGKILL ended the daemon with {status}?");
        blocked(
            fx.lab.https(Ns::Lgwan, addr::LG_TERMINAL, &page, None),
            "lgwan -> sanitiser (daemon killed)",
        )?;
        blocked(
            fx.lab.ping(Ns::Lgwan, addr::LG_TERMINAL, addr::LG_ROUTER),
            "lgwan -> router (daemon killed)",
        )?;
        blocked(fx.lab.rdp(Ns::Lgwan, addr::LG_TERMINAL, addr::IN_VDI), "screen transfer (daemon killed)")?;
        let probe = MailProbe { marker: "killed", subject: "killed" };
        blocked(fx.lab.swaks(Ns::Internet, addr::IN_SENDER, addr::SZ_RELAY, &probe), "mail (daemon killed)")?;
        // Back up: traffic flows again.
        fx.ensure(Mode::Enforce)?;
        pass(fx.lab.https(Ns::Lgwan, addr::LG_TERMINAL, &page, None), "lgwan -> sanitiser (restarted)")?;
        Ok(())
    });
}

#[test]
fn sigterm_stops_cleanly_and_nothing_crosses_after() {
    with_lab("sigterm_stops_cleanly_and_nothing_crosses_after", Mode::Enforce, |fx| {
        let (daemon, _) = fx.daemon.take().context("no daemon")?;
        let socket = daemon.socket().to_path_buf();
        let codes = daemon.client()?.stats()?.reasons.len();
        ensure!(codes == sekisho_policy::Reason::CODES.len(), "stats lists {codes} reason codes");
        let (status, summary) = daemon.stop()?;
        ensure!(status.success(), "SIGTERM: exit {status}\n{summary}");
        ensure!(
            summary.contains("lg-in") && summary.contains("lg-out"),
            "no per-interface summary:\n{summary}"
        );
        ensure!(!socket.exists(), "the control socket {} is still there", socket.display());
        let history = std::fs::read_to_string(fx.lab.state_dir().join("sekishod/history.jsonl"))?;
        ensure!(
            history.lines().last().is_some_and(|l| l.contains("\"action\":\"stop\"")),
            "no stop in the history:\n{history}"
        );
        blocked(
            fx.lab.ping(Ns::Lgwan, addr::LG_TERMINAL, addr::LG_ROUTER),
            "lgwan -> router (daemon stopped)",
        )?;
        Ok(())
    });
}

/// The IP header and first 8 transport bytes of `frame`: what an ICMP error quotes.
fn quote(frame: &[u8]) -> Vec<u8> {
    tk::ip_packet(frame)[..28].to_vec()
}

#[test]
fn forged_icmp_errors_about_a_live_connection_do_not_cross() {
    with_lab("forged_icmp_errors_about_a_live_connection_do_not_cross", Mode::Enforce, |fx| {
        // A real juki-batch connection stays open (mynumber → LGWAN, the exception) while
        // another LGWAN host forges errors about it toward the mynumber host.
        let (batch_port, juki) = (40555, addr::LG_JUKI);
        let mut holder = fx.lab.command(Ns::Mynumber, "socat");
        holder.args(["-u", "EXEC:sleep 6", &format!("TCP:{juki}:22,bind={}:{batch_port}", addr::MN_BATCH)]);
        holder.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        let mut holder = holder.spawn().context("cannot start socat")?;
        std::thread::sleep(Duration::from_millis(800));
        let segment = tk::tcp(addr::MN_BATCH, batch_port, juki, 22, tk::flags::ACK, b"");
        let third_party = tk::icmp("198.18.20.31", addr::MN_BATCH, 3, 3, [0; 4], &quote(&segment), 64);
        let oversized = tk::icmp(
            juki,
            addr::MN_BATCH,
            3,
            3,
            [0; 4],
            &[&quote(&segment)[..], &[0x41; 1200][..]].concat(),
            64,
        );
        let before = fx.snapshot()?;
        // Anything sekishod forwards from lg-in leaves through lg-out: watch it there.
        let witness = fx.lab.capture(Ns::Gateway, "lg-out", "icmp and dst host 198.18.10.5")?;
        fx.lab.send_frame(Ns::Lgwan, &third_party)?;
        fx.lab.send_frame(Ns::Lgwan, &oversized)?;
        let d = fx.moved(&before, "deny:icmp-third-party")?;
        let d = if d.reason("deny:malformed") > 0 { d } else { fx.moved(&before, "deny:malformed")? };
        let seen = witness.finish()?;
        let _ = cmd::stop_child(&mut holder, Duration::from_secs(1));
        ensure!(seen.is_empty(), "a forged ICMP error left lg-out: {seen:?}");
        ensure!(d.side("lg-in", "dropped") >= 2, "lg-in did not drop both: {d}");
        Ok(())
    });
}

#[test]
fn link_traffic_aimed_across_zones_does_not_cross() {
    with_lab("link_traffic_aimed_across_zones_does_not_cross", Mode::Enforce, |fx| {
        let payload = vec![0x42; 650];
        let frames = [
            tk::icmp("fe80::1", "2001:db8:10::5", 135, 0, [0; 4], &[0; 16], 255),
            tk::icmp("fe80::1", "2001:db8:10::5", 131, 0, [0; 4], &[0; 16], 1),
            tk::udp("fe80::1", 546, "2001:db8:20::5", 547, &payload),
            tk::udp("0.0.0.0", 68, addr::MN_BATCH, 67, &payload),
        ];
        let before = fx.snapshot()?;
        let witness = fx.lab.capture(
            Ns::Gateway,
            "in-out",
            "dst host 198.18.10.5 or dst host 2001:db8:10::5 or dst host 2001:db8:20::5",
        )?;
        for f in &frames {
            fx.lab.send_frame(Ns::Internet, f)?;
        }
        let d = fx.moved(&before, "deny:link-scope")?;
        let d = if d.reason("deny:bogon-address") > 0 { d } else { fx.moved(&before, "deny:bogon-address")? };
        let seen = witness.finish()?;
        ensure!(seen.is_empty(), "link-shaped frames left in-out: {seen:?}");
        ensure!(d.reason("deny:link-scope") >= 3, "{d}");
        ensure!(d.side("in-in", "dropped") >= 4, "in-in did not drop them all: {d}");
        // Real link traffic still works: the LGWAN terminal reaches its router over IPv6
        // (neighbour discovery first).
        pass(
            fx.lab.ping(Ns::Lgwan, addr::LG_TERMINAL6, addr::LG_ROUTER6),
            "lgwan terminal -> its router (v6)",
        )?;
        Ok(())
    });
}

/// How much path `path`'s leg `leg` moved between two `stats` answers (its
/// `leg_counters`): (flows, mismatches, not-sanitised cuts, connections identified as
/// `app`).
fn leg_moved(
    before: &sekisho_lab::Stats,
    after: &sekisho_lab::Stats,
    path: &str,
    leg: u16,
    app: &str,
) -> anyhow::Result<[u64; 4]> {
    let find = |s: &sekisho_lab::Stats| {
        s.raw
            .leg_counters
            .iter()
            .find(|l| l.path == path && l.leg == leg)
            .map(|l| [l.flows, l.mismatches, l.not_sanitized, l.apps.get(app).copied().unwrap_or(0)])
            .with_context(|| format!("stats has no leg_counters for {path}/{leg}"))
    };
    let (b, a) = (find(before)?, find(after)?);
    Ok([0, 1, 2, 3].map(|i| a[i].saturating_sub(b[i])))
}

/// Runs `f` with `address` added to `eth0` of host namespace `ns` for the while: a source
/// of its own for a connection that is cut, so that the server's retransmissions to it
/// afterwards cannot show up in another test's witness.
fn with_address<T>(
    fx: &mut Fixture,
    ns: Ns,
    address: &str,
    f: impl FnOnce(&mut Fixture) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    fx.lab.must(ns, &["ip", "addr", "add", &format!("{address}/32"), "dev", "eth0"])?;
    let result = f(fx);
    fx.lab.must(ns, &["ip", "addr", "del", &format!("{address}/32"), "dev", "eth0"])?;
    result
}

/// Captures, in host namespace `ns`, TCP segments to `dst` port `port` whose data starts
/// with `prefix` (4 bytes): a witness that a payload did or did not arrive.
fn payload_witness(
    fx: &Fixture,
    ns: Ns,
    dst: &str,
    port: u16,
    prefix: &[u8; 4],
) -> anyhow::Result<sekisho_lab::probe::Capture> {
    let word = u32::from_be_bytes(*prefix);
    fx.lab.capture(
        ns,
        "eth0",
        &format!("dst host {dst} and tcp dst port {port} and tcp[((tcp[12:1] & 0xf0) >> 2):4] = {word:#x}"),
    )
}

#[test]
fn an_http_request_to_the_smtp_relay_is_cut_before_its_first_byte_arrives() {
    with_lab("an_http_request_to_the_smtp_relay_is_cut_before_its_first_byte_arrives", Mode::Enforce, |fx| {
        let before = fx.snapshot()?;
        let witness = payload_witness(fx, Ns::Sanitization, addr::SZ_RELAY, 25, b"GET ")?;
        let url = format!("http://{}:25/", addr::SZ_RELAY);
        blocked(fx.lab.plaintext_http(Ns::Internet, addr::IN_SENDER, &url), "HTTP to the relay's SMTP port")?;
        let seen = witness.finish()?;
        ensure!(seen.is_empty(), "the HTTP request reached the relay: {seen:?}");
        let d = fx.moved(&before, "deny:app-mismatch")?;
        ensure!(d.side("in-in", "dropped") >= 1, "in-in dropped nothing: {d}");
        // The control socket's per-leg counters: a mismatch on the mail path's first leg,
        // seen as HTTP.
        let [flows, mismatches, _, http] = leg_moved(&before, &fx.snapshot()?, "mail-textify", 1, "http")?;
        ensure!(flows >= 1 && mismatches >= 1 && http >= 1, "leg counters: {flows} {mismatches} {http}");
        Ok(())
    });
}

#[test]
fn an_ssh_client_pointed_at_the_screen_transfer_port_is_cut() {
    with_lab("an_ssh_client_pointed_at_the_screen_transfer_port_is_cut", Mode::Enforce, |fx| {
        let terminal = "198.18.20.78";
        let before = fx.snapshot()?;
        let witness = payload_witness(fx, Ns::Internet, addr::IN_VDI, 3389, b"SSH-")?;
        let out = with_address(fx, Ns::Lgwan, terminal, |fx| {
            fx.lab.exec(
                Ns::Lgwan,
                &[
                    "ssh",
                    "-p",
                    "3389",
                    "-b",
                    terminal,
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                    "-o",
                    "ConnectTimeout=3",
                    "-o",
                    "ServerAliveInterval=1",
                    "-o",
                    "ServerAliveCountMax=2",
                    &format!("e2e@{}", addr::IN_VDI),
                    "true",
                ],
                None,
                Duration::from_secs(8),
            )
        })?;
        ensure!(!out.success(), "ssh to the VDI's RDP port succeeded: {}", out.summary());
        let seen = witness.finish()?;
        ensure!(seen.is_empty(), "the SSH client's banner reached the VDI host: {seen:?}");
        fx.moved(&before, "deny:app-mismatch")?;
        // The real screen transfer on the same leg still works.
        pass(fx.lab.rdp(Ns::Lgwan, addr::LG_TERMINAL, addr::IN_VDI), "lgwan -> VDI 3389")?;
        Ok(())
    });
}

#[test]
fn a_mail_with_an_attachment_straight_from_the_relay_host_to_lgwan_is_refused() {
    with_lab(
        "a_mail_with_an_attachment_straight_from_the_relay_host_to_lgwan_is_refused",
        Mode::Enforce,
        |fx| {
            let before = fx.snapshot()?;
            let count = fx.lab.mailbox().len();
            // The relay's own address, the LGWAN mail host: the leg allows the connection, but
            // the message is not text-ified (HTML, an executable attachment, base64).
            let probe = MailProbe { marker: "bypass", subject: "bypass" };
            blocked(
                fx.lab.swaks(Ns::Sanitization, addr::SZ_RELAY, addr::LG_MAIL, &probe),
                "relay host -> LGWAN mail, not sanitised",
            )?;
            let d = fx.moved(&before, "deny:not-sanitized")?;
            ensure!(d.reason("allow:path") > 0, "the connection was not allowed to start: {d}");
            // The control socket's per-leg counters: the relay → LGWAN leg counted the cut.
            let [_, _, cut, _] = leg_moved(&before, &fx.snapshot()?, "mail-textify", 2, "smtp")?;
            ensure!(cut == 1, "leg counters: {cut} not-sanitised cuts on mail-textify/2");
            ensure!(fx.lab.mailbox().len() == count, "the LGWAN mail host accepted the message");
            // Through the relay, the same mail arrives text-ified.
            let marker = format!("e2e-after-bypass-{}", std::process::id());
            let probe = MailProbe { marker: &marker, subject: "through the relay" };
            pass(fx.lab.swaks(Ns::Internet, addr::IN_SENDER, addr::SZ_RELAY, &probe), "swaks to the relay")?;
            let deadline = Instant::now() + Duration::from_secs(5);
            while fx.lab.mailbox().len() == count && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            ensure!(
                fx.lab.mailbox().iter().any(|(_, m)| m.contains(&marker)),
                "the text mail did not arrive"
            );
            Ok(())
        },
    );
}

#[test]
fn alpha_prime_passes_curl_to_an_allowed_name_and_cuts_another() {
    with_lab("alpha_prime_passes_curl_to_an_allowed_name_and_cuts_another", Mode::Enforce, |fx| {
        // A TLS server on the internet host's port 8443 (the lab's web server, again).
        let state = fx.lab.state_dir().to_path_buf();
        let mut server = fx.lab.command(Ns::Internet, "python3");
        server
            .arg(state.join("file_sanitizer.py"))
            .args(["--role", "web", "--listen", &format!("{}:8443", addr::IN_SENDER)])
            .arg("--cert")
            .arg(state.join("tls-cert.pem"))
            .arg("--key")
            .arg(state.join("tls-key.pem"))
            .arg("--store")
            .arg(state.join("files"));
        server.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        let mut server = server.spawn().context("cannot start the TLS server")?;
        std::thread::sleep(Duration::from_millis(700));
        let terminal = "198.18.20.77";
        let before = fx.snapshot()?;
        let results = with_address(fx, Ns::Lgwan, terminal, |fx| {
            let curl = |target: &str, resolve: Option<&str>| {
                let mut args = vec![
                    "curl",
                    "-sS",
                    "-k",
                    "--noproxy",
                    "*",
                    "--interface",
                    terminal,
                    "--connect-timeout",
                    "2",
                    "--max-time",
                    "4",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                ];
                if let Some(r) = resolve {
                    args.extend(["--resolve", r]);
                }
                args.push(target);
                fx.lab.exec(Ns::Lgwan, &args, None, Duration::from_secs(8))
            };
            let allowed_resolve = format!("portal.example.lg.jp:8443:{}", addr::IN_SENDER);
            let other_resolve = format!("www.example.net:8443:{}", addr::IN_SENDER);
            Ok((
                curl("https://portal.example.lg.jp:8443/", Some(&allowed_resolve))?,
                curl("https://www.example.net:8443/", Some(&other_resolve))?,
                curl(&format!("https://{}:8443/", addr::IN_SENDER), None)?,
            ))
        });
        let _ = cmd::stop_child(&mut server, Duration::from_secs(1));
        let (allowed, other, ip) = results?;
        ensure!(
            allowed.success() && allowed.stdout_text().starts_with('2'),
            "curl to an allowed name: {}",
            allowed.summary()
        );
        ensure!(!other.success(), "curl to a name not in sni_allow passed");
        ensure!(!ip.success(), "curl to the IP address (no server name) passed");
        let d = fx.moved(&before, "deny:app-mismatch")?;
        ensure!(d.reason("allow:path") > 0, "{d}");
        let [flows, mismatches, _, tls] = leg_moved(&before, &fx.snapshot()?, "e2e-alpha-prime", 1, "tls")?;
        ensure!(
            flows >= 3 && mismatches >= 2 && tls >= 3,
            "leg counters of the α' leg: {flows} flows, {mismatches} mismatches, {tls} seen as TLS"
        );
        Ok(())
    });
}

/// SYNs toward the relay's SMTP port from `n` internet sources (the 198.51.100.0/24
/// documentation range, changing ports).
fn syn_flood(n: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let src = format!("198.51.100.{}", i % 250 + 2);
            tk::tcp(&src, 1024 + (i % 60_000) as u16, addr::SZ_RELAY, 25, tk::flags::SYN, b"")
        })
        .collect()
}

#[test]
fn a_syn_flood_and_a_scan_from_the_internet_leave_established_sessions_working() {
    with_lab(
        "a_syn_flood_and_a_scan_from_the_internet_leave_established_sessions_working",
        Mode::Enforce,
        |fx| {
            // A mail session to the relay, established before the flood and finished during it.
            let marker = format!("e2e-flood-{}", std::process::id());
            let script = format!(
                r#"
import socket, sys
s = socket.create_connection(("{relay}", 25), timeout=10, source_address=("{sender}", 0))
f = s.makefile("rwb")
def reply():
    while True:
        line = f.readline()
        if not line: sys.exit("closed")
        if line[3:4] != b"-": return line
def say(cmd, code):
    f.write(cmd + b"\r\n"); f.flush()
    line = reply()
    if not line.startswith(code): sys.exit("%r -> %r" % (cmd, line))
if not reply().startswith(b"220"): sys.exit("no greeting")
say(b"EHLO sender.internet.example", b"250")
print("ready", flush=True)
sys.stdin.readline()
say(b"MAIL FROM:<sender@internet.example>", b"250")
say(b"RCPT TO:<staff@lgwan.example>", b"250")
say(b"DATA", b"354")
say(b"Subject: during a flood\r\n\r\nText for LGWAN staff: {marker}\r\n.", b"250")
say(b"QUIT", b"221")
print("delivered", flush=True)
"#,
                relay = addr::SZ_RELAY,
                sender = addr::IN_SENDER,
            );
            let count = fx.lab.mailbox().len();
            let mut session = fx.lab.command(Ns::Internet, "python3");
            session
                .args(["-c", &script])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped());
            let mut session = session.spawn().context("cannot start the SMTP session")?;
            let mut out = std::io::BufReader::new(session.stdout.take().context("no stdout")?);
            let mut line = String::new();
            std::io::BufRead::read_line(&mut out, &mut line)?;
            ensure!(line.trim() == "ready", "the session did not start: {line:?}");
            let before = fx.snapshot()?;
            fx.lab.send_frames(Ns::Internet, &syn_flood(5000))?;
            // A scan of the relay's ports from one internet address.
            let scanner = "203.0.113.98";
            let scan: Vec<Vec<u8>> = (1..=200u16)
                .map(|p| tk::tcp(scanner, 40000, addr::SZ_RELAY, p, tk::flags::SYN, b""))
                .collect();
            fx.lab.send_frames(Ns::Internet, &scan)?;
            let d = fx.moved(&before, "allow:path")?;
            ensure!(d.reason("allow:path") >= 1000, "the flood did not reach the gate: {d}");
            // The session goes on.
            session.stdin.take().context("no stdin")?.write_all(b"go\n")?;
            line.clear();
            std::io::BufRead::read_line(&mut out, &mut line)?;
            let status = session.wait()?;
            ensure!(
                status.success() && line.trim() == "delivered",
                "the session broke during the flood: {line:?} {status}"
            );
            let deadline = Instant::now() + Duration::from_secs(5);
            while !fx.lab.mailbox().iter().skip(count).any(|(_, m)| m.contains(&marker)) {
                ensure!(Instant::now() < deadline, "the mail sent during the flood did not arrive");
                std::thread::sleep(Duration::from_millis(100));
            }
            // The scanner is now blocked for a while (`[monitor] block_ttl_s`): its next
            // connection is refused.
            let before = fx.snapshot()?;
            fx.lab.send_frame(
                Ns::Internet,
                &tk::tcp(scanner, 40001, addr::SZ_RELAY, 25, tk::flags::SYN, b""),
            )?;
            fx.moved(&before, "deny:blocked-source")?;
            // The monitor's detections (the scan, the flood), for the alert pipeline.
            let m = fx.snapshot()?.raw.monitor;
            ensure!(m.detections >= 2 && m.blocked >= 1, "monitor counters: {m:?}");
            Ok(())
        },
    );
}
