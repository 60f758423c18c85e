//! Connection attempts with real client programs (ping, curl, swaks, socat), each with a
//! short deadline so that a blocked connection fails fast.

use std::time::Duration;

use crate::cmd::Output;
use crate::lab::{Lab, Ns};

/// The deadline of one attempt.
pub const DEADLINE: Duration = Duration::from_secs(6);

/// The first bytes an RDP client sends: a TPKT carrying an X.224 Connection Request with
/// an RDP negotiation request (what the gateway's `rdp` application check looks for).
pub const RDP_CONNECTION_REQUEST: [u8; 19] = [
    0x03, 0x00, 0x00, 0x13, 0x0e, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x08, 0x00, 0x03, 0x00,
    0x00, 0x00,
];

/// An SSH client's identification line.
pub const SSH_CLIENT_BANNER: &[u8] = b"SSH-2.0-sekisho-lab-client\r\n";

/// The outcome of one attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Whether the connection worked end to end (and returned what it should).
    pub passed: bool,
    /// A short description of what happened.
    pub detail: String,
    /// The client program's output.
    pub output: Output,
}

impl Attempt {
    fn from(output: Output, passed: bool, ok_detail: impl Into<String>) -> Attempt {
        let detail = if passed { ok_detail.into() } else { failure(&output) };
        Attempt { passed, detail, output }
    }
}

/// What a failed client run means, in a few words.
fn failure(out: &Output) -> String {
    let err = out.stderr_text().to_ascii_lowercase();
    let program = out.command.split_whitespace().nth(4).unwrap_or_default();
    if out.timed_out {
        format!("no answer within {:.0} s (killed)", out.elapsed.as_secs_f64())
    } else if err.contains("failed to connect") && err.contains("timeout")
        || err.contains("connection timed out")
        || err.contains("connect: timeout")
    {
        "connect timed out".to_string()
    } else if err.contains("operation timed out") {
        "connected, then no answer (timed out)".to_string()
    } else if err.contains("refused") {
        "connection refused".to_string()
    } else if err.contains("reset by peer") {
        "connection reset".to_string()
    } else if program == "ping" && out.code == Some(1) {
        "no echo reply".to_string()
    } else {
        out.summary()
    }
}

/// A multipart message with an HTML body and an executable attachment: what the mail
/// path must text-ify.
pub struct MailProbe<'a> {
    /// A word that must reach the LGWAN mail host in the text body.
    pub marker: &'a str,
    /// The subject.
    pub subject: &'a str,
}

impl Lab {
    /// `ping` once from `src` (an address of host namespace `ns`) to `dst`.
    pub fn ping(&self, ns: Ns, src: &str, dst: &str) -> anyhow::Result<Attempt> {
        let out = self.exec(ns, &["ping", "-n", "-c", "1", "-W", "2", "-I", src, dst], None, DEADLINE)?;
        let ok = out.success();
        Ok(Attempt::from(out, ok, "echo reply"))
    }

    /// An HTTPS request with curl (TLS, certificate not checked) from `src`; `upload`
    /// PUTs a body. Passes on a 2xx answer.
    pub fn https(&self, ns: Ns, src: &str, url: &str, upload: Option<&[u8]>) -> anyhow::Result<Attempt> {
        let mut args = curl_args(src, "4");
        args.extend(["-k", "-o", "-", "-w", "\n%{http_code}", "--fail"]);
        if upload.is_some() {
            args.extend(["-X", "PUT", "--data-binary", "@-"]);
        }
        args.push(url);
        let out = self.exec(ns, &args, upload, DEADLINE)?;
        let ok = out.success();
        let code = out.stdout_text().lines().last().unwrap_or_default().to_string();
        Ok(Attempt::from(out, ok, format!("HTTP {code}")))
    }

    /// Plain-text HTTP (no TLS) to a TLS port: what the gateway's application check cuts.
    pub fn plaintext_http(&self, ns: Ns, src: &str, url: &str) -> anyhow::Result<Attempt> {
        let mut args = curl_args(src, "3");
        args.push(url);
        let out = self.exec(ns, &args, None, DEADLINE)?;
        let ok = out.success();
        Ok(Attempt::from(out, ok, "answered"))
    }

    /// A mail from `src` to the SMTP server `server` (port 25) with swaks: an HTML body
    /// and an executable attachment, the text body carrying `probe.marker`.
    pub fn swaks(&self, ns: Ns, src: &str, server: &str, probe: &MailProbe<'_>) -> anyhow::Result<Attempt> {
        let text = format!("Plain text for LGWAN staff: {}", probe.marker);
        let html = format!(
            "<html><body><p>HTML for <b>LGWAN</b> staff: {}</p><script>alert('x')</script></body></html>",
            probe.marker
        );
        let args = [
            "swaks",
            "--server",
            server,
            "--port",
            "25",
            "--local-interface",
            src,
            "--timeout",
            "4",
            "--helo",
            "sender.internet.example",
            "--from",
            "sender@internet.example",
            "--to",
            "staff@lgwan.example",
            "--header",
            &format!("Subject: {}", probe.subject),
            "--attach-type",
            "text/plain",
            "--attach-body",
            &text,
            "--attach-type",
            "text/html",
            "--attach-body",
            &html,
            "--attach-type",
            "application/x-msdownload",
            "--attach-name",
            "invoice.exe",
            "--attach",
            "MZ-this-is-not-text-EXECUTABLE-PAYLOAD",
            "--suppress-data",
        ];
        let out = self.exec(ns, &args, None, Duration::from_secs(10))?;
        let ok = out.success();
        Ok(Attempt::from(out, ok, "accepted (250)"))
    }

    /// A TCP exchange with socat from `src` to `dst:port`: sends `payload`, passes when
    /// the answer starts with `expect`.
    pub fn tcp_exchange(
        &self,
        ns: Ns,
        src: &str,
        dst: &str,
        port: u16,
        payload: &[u8],
        expect: &[u8],
    ) -> anyhow::Result<Attempt> {
        let host = if dst.contains(':') { format!("[{dst}]") } else { dst.to_string() };
        let bind = if src.contains(':') { format!("[{src}]") } else { src.to_string() };
        let target = format!("TCP:{host}:{port},bind={bind},connect-timeout=2");
        let out =
            self.exec(ns, &["socat", "-T", "2", "-t", "1", "STDIO", &target], Some(payload), DEADLINE)?;
        let ok = out.success() && !expect.is_empty() && out.stdout.starts_with(expect);
        let mut attempt = Attempt::from(out, ok, "answered");
        if !ok && attempt.output.success() {
            attempt.detail = if attempt.output.stdout.is_empty() {
                "connected, no answer".to_string()
            } else {
                format!("unexpected answer {:?}", String::from_utf8_lossy(&attempt.output.stdout))
            };
        }
        Ok(attempt)
    }

    /// An RDP connection request from `src` to `dst:3389` (the stand-in answers with a
    /// connection confirm).
    pub fn rdp(&self, ns: Ns, src: &str, dst: &str) -> anyhow::Result<Attempt> {
        self.tcp_exchange(ns, src, dst, 3389, &RDP_CONNECTION_REQUEST, &crate::echo::RDP_CONNECTION_CONFIRM)
    }

    /// An SSH identification exchange from `src` to `dst:22`.
    pub fn ssh(&self, ns: Ns, src: &str, dst: &str) -> anyhow::Result<Attempt> {
        self.tcp_exchange(ns, src, dst, 22, SSH_CLIENT_BANNER, b"SSH-")
    }

    /// The messages the LGWAN mail host holds, oldest first: (file name, contents).
    pub fn mailbox(&self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = std::fs::read_dir(self.mail_dir())
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
                    .map(|e| {
                        let text = std::fs::read(e.path()).unwrap_or_default();
                        (
                            e.file_name().to_string_lossy().into_owned(),
                            String::from_utf8_lossy(&text).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        all.sort();
        all
    }
}

/// A packet capture (tcpdump) running in a host namespace.
pub struct Capture {
    child: std::process::Child,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Lab {
    /// Starts `tcpdump -n -i <interface> <filter>` in namespace `ns` and returns once it
    /// is capturing.
    pub fn capture(&self, ns: Ns, interface: &str, filter: &str) -> anyhow::Result<Capture> {
        use std::io::{BufRead, Read};
        use std::process::Stdio;
        let mut c = self.command(ns, "tcpdump");
        c.args(["-l", "-n", "-i", interface]).args(filter.split_whitespace());
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let mut child = c.spawn().map_err(|e| anyhow::anyhow!("cannot start tcpdump: {e}"))?;
        let stdout = child.stdout.take().map(|mut out| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = (&mut out).take(1 << 20).read_to_end(&mut buf);
                buf
            })
        });
        let mut capture = Capture { child, stdout };
        let stderr = capture.child.stderr.take();
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(stderr) = stderr {
            std::thread::spawn(move || {
                let mut last = String::new();
                for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("listening on") {
                        let _ = tx.send(Ok(line));
                        continue;
                    }
                    last = line;
                }
                // tcpdump ended: if it never listened, this says why.
                let _ = tx.send(Err(last));
            });
        }
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(_)) => Ok(capture),
            Ok(Err(line)) => {
                let _ = capture.finish();
                anyhow::bail!("tcpdump did not start: {line}")
            }
            Err(_) => {
                let _ = capture.finish();
                anyhow::bail!("tcpdump did not start within 5 s")
            }
        }
    }
}

impl Capture {
    /// Stops the capture and returns the packets seen, one summary line each.
    pub fn finish(mut self) -> anyhow::Result<Vec<String>> {
        // Let frames in flight arrive, then stop tcpdump (SIGINT flushes its output).
        std::thread::sleep(Duration::from_millis(100));
        crate::cmd::signal(self.child.id(), libc::SIGINT);
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while self.child.try_wait()?.is_none() {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = self.stdout.take().and_then(|h| h.join().ok()).unwrap_or_default();
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// curl from source address `src`, no proxy, a 2 s connect timeout and `max_time`
/// seconds in all: the arguments every HTTP probe starts with.
fn curl_args<'a>(src: &'a str, max_time: &'a str) -> Vec<&'a str> {
    vec![
        "curl",
        "-sS",
        "--noproxy",
        "*",
        "--interface",
        src,
        "--connect-timeout",
        "2",
        "--max-time",
        max_time,
    ]
}
