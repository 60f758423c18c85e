//! A small, bounded SMTP server and client: the lab's mail relay (無害化 mail-text
//! sanitiser) and the LGWAN mail host's sink.
//!
//! The server speaks enough of RFC 5321 for swaks and ordinary MTAs (EHLO/HELO, MAIL,
//! RCPT, DATA, RSET, NOOP, QUIT). Everything is bounded: line length, message size,
//! recipients, bad commands, concurrent connections, idle time. A message is accepted
//! only after the handler has dealt with it (the relay delivers synchronously), so a
//! client's "250" means the message reached its destination.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

/// Bounds of one server.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest command or data line, CRLF included.
    pub max_line: usize,
    /// Largest message (DATA), in bytes.
    pub max_message: usize,
    /// Most recipients per message.
    pub max_recipients: usize,
    /// Most connections served at once; more are answered 421 and closed.
    pub max_connections: usize,
    /// Most unknown or out-of-order commands before the connection is closed.
    pub max_errors: usize,
    /// Idle time after which a connection is closed.
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 4096,
            max_message: 4 << 20,
            max_recipients: 100,
            max_connections: 32,
            max_errors: 10,
            idle: Duration::from_secs(60),
        }
    }
}

/// The envelope of one message.
#[derive(Clone, Debug, Default)]
pub struct Envelope {
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// The EHLO/HELO name.
    pub helo: String,
    /// MAIL FROM (without angle brackets; empty for the null sender).
    pub from: String,
    /// RCPT TO, in order.
    pub to: Vec<String>,
}

/// What the server does with an accepted message.
pub trait Handler: Send + Sync {
    /// Deals with one message; `Ok(id)` is reported to the client as queued, `Err(text)`
    /// as a temporary failure (451).
    fn handle(&self, envelope: &Envelope, data: &[u8]) -> Result<String, String>;
}

/// Stores each message as a file in a directory: the LGWAN mail host's sink.
pub struct Sink {
    /// The directory.
    pub dir: PathBuf,
    /// Most files kept; beyond it messages are refused (452).
    pub max_files: usize,
    counter: AtomicU64,
}

impl Sink {
    /// A sink writing into `dir` (created if missing).
    pub fn new(dir: PathBuf) -> anyhow::Result<Sink> {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Sink { dir, max_files: 1000, counter: AtomicU64::new(0) })
    }
}

impl Handler for Sink {
    fn handle(&self, envelope: &Envelope, data: &[u8]) -> Result<String, String> {
        let count = std::fs::read_dir(&self.dir).map(|d| d.count()).unwrap_or(0);
        if count >= self.max_files {
            return Err(format!("mailbox full ({count} messages)"));
        }
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let id = format!("{ms}-{}-{n}", std::process::id());
        let mut file = Vec::with_capacity(data.len() + 200);
        let peer = envelope.peer.map(|p| p.to_string()).unwrap_or_default();
        file.extend_from_slice(
            format!(
                "X-Sekisho-Envelope: from=<{}> to=<{}> helo={} peer={peer}\r\n",
                envelope.from,
                envelope.to.join(">,<"),
                envelope.helo
            )
            .as_bytes(),
        );
        file.extend_from_slice(data);
        let tmp = self.dir.join(format!(".{id}.tmp"));
        let path = self.dir.join(format!("{id}.eml"));
        std::fs::write(&tmp, &file)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("cannot store the message: {e}"))?;
        Ok(id)
    }
}

/// Text-ifies each message and delivers it onward: the sanitisation zone's mail relay.
pub struct Relay {
    /// Where messages go (the LGWAN mail host).
    pub deliver: SocketAddr,
    /// The source address used for delivery.
    pub source: Option<IpAddr>,
    /// The name this relay gives in EHLO.
    pub hostname: String,
    /// Connect and reply timeout toward `deliver`.
    pub timeout: Duration,
}

impl Handler for Relay {
    fn handle(&self, envelope: &Envelope, data: &[u8]) -> Result<String, String> {
        let sanitized = crate::textify::textify(data);
        let mut message = format!(
            "Received: from {} ({}) by {} (sekisho-lab mail-text relay)\r\n",
            envelope.helo,
            envelope.peer.map(|p| p.ip().to_string()).unwrap_or_default(),
            self.hostname
        )
        .into_bytes();
        message.extend_from_slice(&sanitized.message);
        let out = Envelope { from: envelope.from.clone(), to: envelope.to.clone(), ..Envelope::default() };
        send(self.deliver, self.source, &self.hostname, &out, &message, self.timeout)
            .map_err(|e| format!("delivery to {} failed: {e:#}", self.deliver))?;
        Ok(format!(
            "text-ified ({} part(s) removed) and delivered to {}",
            sanitized.removed.len(),
            self.deliver
        ))
    }
}

/// Serves SMTP on `listen` until the process ends. Calls `ready` once bound.
pub fn serve(
    listen: SocketAddr,
    hostname: &str,
    handler: Arc<dyn Handler>,
    limits: Limits,
    ready: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    ready()?;
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(mut stream) = conn else {
            // Out of descriptors or the like: do not spin.
            std::thread::sleep(std::time::Duration::from_millis(50));
            continue;
        };
        if active.fetch_add(1, Ordering::SeqCst) >= limits.max_connections {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.write_all(b"421 4.3.2 too many connections, try later\r\n");
            continue;
        }
        let handler = Arc::clone(&handler);
        let active = Arc::clone(&active);
        let hostname = hostname.to_string();
        let spawned = std::thread::Builder::new().name("smtp".into()).spawn(move || {
            if let Err(e) = session(stream, &hostname, handler.as_ref(), limits) {
                eprintln!("smtp session: {e:#}");
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            eprintln!("smtp: cannot start a session thread");
        }
    }
    Ok(())
}

/// One line read from a client.
enum Line {
    /// A complete line without its line end.
    Text(Vec<u8>),
    /// A line longer than the limit (the rest of it was discarded).
    TooLong,
    /// The client closed the connection.
    Eof,
}

/// Reads one line of at most `max` bytes; a longer one is consumed and reported.
fn read_line(reader: &mut impl BufRead, max: usize) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(if line.is_empty() && !too_long { Line::Eof } else { Line::Text(line) });
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        if !too_long {
            if line.len() + chunk.len() > max {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = chunk.len();
        reader.consume(used);
        if done {
            if too_long {
                return Ok(Line::TooLong);
            }
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            return Ok(Line::Text(line));
        }
    }
}

/// Extracts the address from `FROM:<addr> params` / `TO:<addr>`.
fn path_arg(arg: &str, keyword: &str) -> Option<(String, String)> {
    let (k, rest) = arg.split_once(':')?;
    if !k.trim().eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = rest.trim_start();
    let (addr, params) = match rest.strip_prefix('<') {
        Some(r) => {
            let end = r.find('>')?;
            (&r[..end], &r[end + 1..])
        }
        None => rest.split_once(' ').unwrap_or((rest, "")),
    };
    if addr.len() > 254 || addr.chars().any(|c| c.is_control() || c == ' ') {
        return None;
    }
    Some((addr.to_string(), params.trim().to_string()))
}

fn session(stream: TcpStream, hostname: &str, handler: &dyn Handler, limits: Limits) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(limits.idle))?;
    stream.set_write_timeout(Some(limits.idle))?;
    let peer = stream.peer_addr().ok();
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(8192, stream);
    let mut reply = |text: &str| writer.write_all(text.as_bytes()).and_then(|()| writer.flush());
    reply(&format!("220 {hostname} ESMTP sekisho-lab\r\n"))?;
    let mut env = Envelope { peer, ..Envelope::default() };
    let mut in_mail = false;
    let mut errors = 0;
    loop {
        if errors >= limits.max_errors {
            reply("421 4.7.0 too many errors, closing\r\n")?;
            return Ok(());
        }
        let line = match read_line(&mut reader, limits.max_line)? {
            Line::Eof => return Ok(()),
            Line::TooLong => {
                errors += 1;
                reply("500 5.5.2 line too long\r\n")?;
                continue;
            }
            Line::Text(l) => String::from_utf8_lossy(&l).into_owned(),
        };
        let (verb, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" | "HELO" if !arg.trim().is_empty() => {
                env = Envelope { peer, helo: arg.trim().chars().take(255).collect(), ..Envelope::default() };
                in_mail = false;
                if verb.eq_ignore_ascii_case("EHLO") {
                    reply(&format!(
                        "250-{hostname} greets {}\r\n250-SIZE {}\r\n250-8BITMIME\r\n250 HELP\r\n",
                        env.helo, limits.max_message
                    ))?;
                } else {
                    reply(&format!("250 {hostname}\r\n"))?;
                }
            }
            "MAIL" => match path_arg(arg, "FROM") {
                Some(_) if in_mail => {
                    errors += 1;
                    reply("503 5.5.1 nested MAIL command\r\n")?;
                }
                Some((from, params)) => {
                    let size = params
                        .split_whitespace()
                        .find_map(|p| p.to_ascii_uppercase().strip_prefix("SIZE=").map(str::to_string))
                        .and_then(|s| s.parse::<usize>().ok());
                    if size.is_some_and(|s| s > limits.max_message) {
                        reply("552 5.3.4 message too big\r\n")?;
                    } else {
                        env.from = from;
                        env.to.clear();
                        in_mail = true;
                        reply("250 2.1.0 sender ok\r\n")?;
                    }
                }
                None => {
                    errors += 1;
                    reply("501 5.5.4 syntax: MAIL FROM:<address>\r\n")?;
                }
            },
            "RCPT" => match path_arg(arg, "TO") {
                _ if !in_mail => {
                    errors += 1;
                    reply("503 5.5.1 need MAIL first\r\n")?;
                }
                Some(_) if env.to.len() >= limits.max_recipients => {
                    reply("452 4.5.3 too many recipients\r\n")?;
                }
                Some((to, _)) if !to.is_empty() => {
                    env.to.push(to);
                    reply("250 2.1.5 recipient ok\r\n")?;
                }
                _ => {
                    errors += 1;
                    reply("501 5.5.4 syntax: RCPT TO:<address>\r\n")?;
                }
            },
            "DATA" => {
                if !in_mail || env.to.is_empty() {
                    errors += 1;
                    reply("503 5.5.1 need RCPT first\r\n")?;
                    continue;
                }
                reply("354 end data with <CR><LF>.<CR><LF>\r\n")?;
                let Some((data, oversize)) = read_data(&mut reader, limits)? else {
                    return Ok(());
                };
                if oversize {
                    reply("552 5.3.4 message too big\r\n")?;
                } else {
                    match handler.handle(&env, &data) {
                        Ok(id) => reply(&format!("250 2.0.0 ok: {id}\r\n"))?,
                        Err(e) => reply(&format!("451 4.3.0 {}\r\n", e.replace(['\r', '\n'], " ")))?,
                    }
                }
                in_mail = false;
                env.to.clear();
            }
            "RSET" => {
                in_mail = false;
                env.to.clear();
                reply("250 2.0.0 reset\r\n")?;
            }
            "NOOP" => reply("250 2.0.0 ok\r\n")?,
            "VRFY" => reply("252 2.5.2 cannot verify\r\n")?,
            "QUIT" => {
                reply(&format!("221 2.0.0 {hostname} closing\r\n"))?;
                return Ok(());
            }
            _ => {
                errors += 1;
                reply("502 5.5.1 command not recognised\r\n")?;
            }
        }
    }
}

/// Reads DATA up to the lone dot: `(message, oversize)`, or `None` when the client
/// disconnected. Dot-stuffing is undone; lines end with CRLF.
fn read_data(reader: &mut impl BufRead, limits: Limits) -> std::io::Result<Option<(Vec<u8>, bool)>> {
    let mut data = Vec::new();
    let mut oversize = false;
    loop {
        let line = match read_line(reader, limits.max_line)? {
            Line::Eof => return Ok(None),
            Line::TooLong => {
                oversize = true;
                continue;
            }
            Line::Text(l) => l,
        };
        if line == b"." {
            return Ok(Some((data, oversize)));
        }
        let line = line.strip_prefix(b".").unwrap_or(&line);
        if data.len() + line.len() + 2 > limits.max_message {
            oversize = true;
        }
        if !oversize {
            data.extend_from_slice(line);
            data.extend_from_slice(b"\r\n");
        }
    }
}

/// Reads one (possibly multi-line) reply; returns the code and the text.
fn read_reply(reader: &mut impl BufRead) -> anyhow::Result<(u16, String)> {
    let mut text = String::new();
    for _ in 0..100 {
        let line = match read_line(reader, 4096)? {
            Line::Text(l) => String::from_utf8_lossy(&l).into_owned(),
            Line::TooLong => bail!("reply line too long"),
            Line::Eof => bail!("connection closed"),
        };
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok()).context("malformed reply")?;
        text.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, text));
        }
        text.push('\n');
    }
    bail!("reply too long")
}

/// Sends one message to `server` (binding `source` when given), as `hostname`.
pub fn send(
    server: SocketAddr,
    source: Option<IpAddr>,
    hostname: &str,
    envelope: &Envelope,
    message: &[u8],
    timeout: Duration,
) -> anyhow::Result<()> {
    let domain = if server.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if let Some(src) = source {
        socket.bind(&SocketAddr::new(src, 0).into()).with_context(|| format!("cannot bind {src}"))?;
    }
    socket.connect_timeout(&server.into(), timeout).with_context(|| format!("cannot connect to {server}"))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream.take(16 << 20));
    let expect = |reader: &mut BufReader<_>, want: u16, what: &str| -> anyhow::Result<()> {
        let (code, text) = read_reply(reader)?;
        if code / 100 != want / 100 {
            bail!("{what}: the server answered {text:?}");
        }
        Ok(())
    };
    expect(&mut reader, 220, "greeting")?;
    writer.write_all(format!("EHLO {hostname}\r\n").as_bytes())?;
    expect(&mut reader, 250, "EHLO")?;
    writer.write_all(format!("MAIL FROM:<{}>\r\n", envelope.from).as_bytes())?;
    expect(&mut reader, 250, "MAIL")?;
    for to in &envelope.to {
        writer.write_all(format!("RCPT TO:<{to}>\r\n").as_bytes())?;
        expect(&mut reader, 250, "RCPT")?;
    }
    writer.write_all(b"DATA\r\n")?;
    expect(&mut reader, 354, "DATA")?;
    let mut out = Vec::with_capacity(message.len() + 64);
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    // `split` yields an empty last piece after the final newline: drop its CRLF.
    if message.ends_with(b"\n") {
        out.truncate(out.len() - 2);
    }
    out.extend_from_slice(b".\r\n");
    writer.write_all(&out)?;
    expect(&mut reader, 250, "end of data")?;
    writer.write_all(b"QUIT\r\n")?;
    let _ = read_reply(&mut reader);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Keep(Mutex<Vec<(Envelope, Vec<u8>)>>);

    impl Handler for Keep {
        fn handle(&self, envelope: &Envelope, data: &[u8]) -> Result<String, String> {
            let mut all = self.0.lock().map_err(|_| "poisoned".to_string())?;
            all.push((envelope.clone(), data.to_vec()));
            Ok(format!("#{}", all.len()))
        }
    }

    fn server(limits: Limits) -> (SocketAddr, Arc<Keep>) {
        let keep = Arc::new(Keep(Mutex::new(Vec::new())));
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = probe.local_addr().expect("addr");
        drop(probe);
        let h: Arc<dyn Handler> = keep.clone();
        std::thread::spawn(move || serve(addr, "test.lab", h, limits, || Ok(())));
        for _ in 0..100 {
            if TcpStream::connect(addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (addr, keep)
    }

    #[test]
    fn client_and_server_round_trip_with_dot_stuffing() {
        let (addr, keep) = server(Limits::default());
        let env =
            Envelope { from: "a@x".into(), to: vec!["b@y".into(), "c@y".into()], ..Envelope::default() };
        send(
            addr,
            None,
            "client.lab",
            &env,
            b"Subject: t\r\n\r\n.leading dot\r\nend\r\n",
            Duration::from_secs(5),
        )
        .expect("send");
        let all = keep.0.lock().expect("lock");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0.to, vec!["b@y", "c@y"]);
        assert_eq!(all[0].0.helo, "client.lab");
        assert_eq!(all[0].1, b"Subject: t\r\n\r\n.leading dot\r\nend\r\n");
    }

    #[test]
    fn garbage_and_limits_are_answered_not_fatal() {
        let limits = Limits { max_line: 64, max_message: 100, max_errors: 3, ..Limits::default() };
        let (addr, keep) = server(limits);
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut input = Vec::new();
        input.extend_from_slice(b"EHLO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
        input.extend(std::iter::repeat_n(b'z', 500));
        input.extend_from_slice(b"\r\n.\r\n");
        input.extend_from_slice(&[0xff, 0x00, b'\r', b'\n']);
        input.extend_from_slice(b"BOGUS\r\nRCPT TO:<c@y>\r\n");
        s.write_all(&input).expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.contains("552 5.3.4"), "{out}");
        assert!(out.contains("421 4.7.0"), "{out}");
        assert!(keep.0.lock().expect("lock").is_empty());
    }

    #[test]
    fn mail_paths_are_parsed() {
        assert_eq!(path_arg("FROM:<a@b> SIZE=10", "FROM"), Some(("a@b".into(), "SIZE=10".into())));
        assert_eq!(path_arg("from: <>", "FROM"), Some((String::new(), String::new())));
        assert_eq!(path_arg("TO:<a b>", "TO"), None);
        assert_eq!(path_arg("TO:<a", "TO"), None);
    }
}
