//! The lab topology (docs/ARCHITECTURE.md, "The lab") in network namespaces, and its services.
//!
//! ```text
//!  <p>mn  eth0 ─ mn-in ┐            ┌ mn-out ─ r-mn ┐
//!  <p>lg  eth0 ─ lg-in ┤  <p>gw     ├ lg-out ─ r-lg ┤  <p>core (kernel forwarding)
//!  <p>in  eth0 ─ in-in ┤ (no bridge,├ in-out ─ r-in ┤
//!  <p>sz  eth0 ─ sz-in ┘  no forward)└ sz-out ─ r-sz ┘
//! ```
//!
//! The gateway namespace holds the eight port interfaces named as in `configs/lab.toml`,
//! with no addresses, IPv4 forwarding off and IPv6 disabled: without `sekishod run`
//! nothing crosses. Offloads stay as the kernel sets them (transmit checksum offload and
//! TSO on for veth), as virtual machines and containers behind a gateway have them: the
//! gateway then sees frames with checksums left to offload and GSO super-frames, which
//! the data plane forwards with their virtio-net headers. `offloads_off` switches the
//! hosts' and router's transmit offloads off instead.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::cmd::{self, Output};

/// The file sanitiser and web server (Python, standard library only).
const FILE_SANITIZER_PY: &str = include_str!("../../../deploy/lab/file_sanitizer.py");
/// Sends raw frames with AF_PACKET (Python, standard library only).
const SEND_FRAME_PY: &str = include_str!("../../../deploy/lab/send_frame.py");

/// The default namespace-name prefix.
pub const DEFAULT_PREFIX: &str = "sk-";

/// Lab addresses (the documentation and benchmarking ranges of RFC 5737, 2544 and 3849, inside the lab only).
pub mod addr {
    /// mynumber: the juki batch client (the exception's `from`).
    pub const MN_BATCH: &str = "198.18.10.5";
    /// mynumber: another host.
    pub const MN_OTHER: &str = "198.18.10.9";
    /// mynumber: the router.
    pub const MN_ROUTER: &str = "198.18.10.1";
    /// lgwan: a staff terminal.
    pub const LG_TERMINAL: &str = "198.18.20.5";
    /// lgwan: the LGWAN mail host (SMTP sink).
    pub const LG_MAIL: &str = "198.18.20.25";
    /// lgwan: the juki server (SSH on port 22).
    pub const LG_JUKI: &str = "198.18.20.30";
    /// lgwan: the router.
    pub const LG_ROUTER: &str = "198.18.20.1";
    /// internet: an outside mail sender and web server (HTTPS on 443).
    pub const IN_SENDER: &str = "203.0.113.7";
    /// internet: the VDI host (RDP on 3389).
    pub const IN_VDI: &str = "203.0.113.50";
    /// internet: the router.
    pub const IN_ROUTER: &str = "203.0.113.1";
    /// sanitization: the mail text-ification relay (SMTP on 25).
    pub const SZ_RELAY: &str = "198.18.40.10";
    /// sanitization: the file sanitiser (HTTPS on 443).
    pub const SZ_CDR: &str = "198.18.40.20";
    /// sanitization: the router.
    pub const SZ_ROUTER: &str = "198.18.40.1";
    /// lgwan terminal, IPv6.
    pub const LG_TERMINAL6: &str = "2001:db8:20::5";
    /// lgwan router, IPv6.
    pub const LG_ROUTER6: &str = "2001:db8:20::1";
    /// internet sender, IPv6.
    pub const IN_SENDER6: &str = "2001:db8:30::7";
    /// mynumber batch client, IPv6.
    pub const MN_BATCH6: &str = "2001:db8:10::5";
    /// sanitization relay, IPv6.
    pub const SZ_RELAY6: &str = "2001:db8:40::10";
}

/// The namespaces of a lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ns {
    /// The gateway: the eight port interfaces, where `sekishod run` runs.
    Gateway,
    /// The core router.
    Core,
    /// The mynumber segment's hosts.
    Mynumber,
    /// The LGWAN segment's hosts.
    Lgwan,
    /// The internet segment's hosts.
    Internet,
    /// The sanitisation segment's hosts.
    Sanitization,
}

impl Ns {
    /// Every namespace, in creation order.
    pub const ALL: [Ns; 6] = [Ns::Gateway, Ns::Core, Ns::Mynumber, Ns::Lgwan, Ns::Internet, Ns::Sanitization];

    /// The namespace name's suffix (after the prefix).
    pub fn suffix(self) -> &'static str {
        match self {
            Ns::Gateway => "gw",
            Ns::Core => "core",
            Ns::Mynumber => "mn",
            Ns::Lgwan => "lg",
            Ns::Internet => "in",
            Ns::Sanitization => "sz",
        }
    }
}

/// One segment: a host namespace behind one port pair.
#[derive(Debug)]
pub struct Segment {
    /// The host namespace.
    pub ns: Ns,
    /// The interface prefix: `mn` gives `mn-in`, `mn-out` and the router's `r-mn`.
    pub short: &'static str,
    /// The zone (in `configs/lab.toml`).
    pub zone: &'static str,
    /// The router's addresses on this segment (CIDR).
    pub router: &'static [&'static str],
    /// The hosts' addresses (CIDR).
    pub hosts: &'static [&'static str],
    /// What the hosts are.
    pub roles: &'static str,
}

/// The four segments.
pub const SEGMENTS: [Segment; 4] = [
    Segment {
        ns: Ns::Mynumber,
        short: "mn",
        zone: "mynumber",
        router: &["198.18.10.1/24", "2001:db8:10::1/64"],
        hosts: &["198.18.10.5/24", "198.18.10.9/24", "2001:db8:10::5/64"],
        roles: ".5 juki batch client, .9 staff terminal",
    },
    Segment {
        ns: Ns::Lgwan,
        short: "lg",
        zone: "lgwan",
        router: &["198.18.20.1/24", "2001:db8:20::1/64"],
        hosts: &["198.18.20.5/24", "198.18.20.25/24", "198.18.20.30/24", "2001:db8:20::5/64"],
        roles: ".5 terminal, .25 LGWAN mail host, .30 juki server",
    },
    Segment {
        ns: Ns::Internet,
        short: "in",
        zone: "internet",
        router: &["203.0.113.1/24", "198.51.100.1/24", "2001:db8:30::1/64"],
        hosts: &["203.0.113.7/24", "203.0.113.50/24", "2001:db8:30::7/64"],
        roles: ".7 outside sender + web server, .50 VDI host",
    },
    Segment {
        ns: Ns::Sanitization,
        short: "sz",
        zone: "sanitization",
        router: &["198.18.40.1/24", "2001:db8:40::1/64"],
        hosts: &["198.18.40.10/24", "198.18.40.20/24", "2001:db8:40::10/64"],
        roles: ".10 mail text-ification relay, .20 file sanitiser",
    },
];

/// How to bring a lab up.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// Namespace-name prefix (`sk-` gives `sk-gw`, `sk-core`, ...).
    pub prefix: String,
    /// The directory holding `sekishod`, `sekishoctl` and `sekisho-lab` (the lab's
    /// services run as hidden `sekisho-lab ...` subcommands).
    pub bin_dir: PathBuf,
    /// Whether to start the lab services.
    pub services: bool,
    /// Switch the hosts' and the router's transmit offloads off (checksum, TSO). By
    /// default they stay as the kernel sets them (on, for veth), as virtual machines and
    /// containers behind a gateway have them: frames then reach the gateway with checksums
    /// left to offload and as GSO super-frames.
    pub offloads_off: bool,
}

/// A service the lab started.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    /// Its name.
    pub name: String,
    /// Where it runs.
    pub ns: Ns,
    /// What it listens on.
    pub listen: String,
    /// Its process id.
    pub pid: u32,
}

/// A running lab. Dropping it tears it down (services stopped, namespaces deleted)
/// unless [`Lab::detach`] was called.
pub struct Lab {
    prefix: String,
    state: PathBuf,
    bin_dir: PathBuf,
    children: Vec<Child>,
    services: Vec<ServiceInfo>,
    attached: bool,
}

/// The state directory of the lab with `prefix`.
pub fn state_dir(prefix: &str) -> PathBuf {
    PathBuf::from(format!("/run/sekisho-lab-{}", prefix.trim_end_matches('-')))
}

/// Checks that a prefix is short and made of safe characters.
pub fn validate_prefix(prefix: &str) -> anyhow::Result<()> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 16
        && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && prefix.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if !ok {
        bail!("prefix {prefix:?}: use 1 to 16 characters a-z 0-9 - _, starting with a letter");
    }
    Ok(())
}

/// The namespaces that exist now.
fn existing_namespaces() -> anyhow::Result<Vec<String>> {
    let out = cmd::run(Command::new("ip").args(["netns", "list"]), None, Duration::from_secs(10))?.check()?;
    Ok(out.stdout_text().lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect())
}

/// Whether any part of the lab with `prefix` exists (a namespace or its state directory).
pub fn exists(prefix: &str) -> anyhow::Result<bool> {
    let names: Vec<String> = Ns::ALL.iter().map(|n| format!("{prefix}{}", n.suffix())).collect();
    Ok(state_dir(prefix).exists() || existing_namespaces()?.iter().any(|n| names.contains(n)))
}

/// Tears down the lab with `prefix` (whole or half-built): stops the processes it
/// started and everything still running in its namespaces, deletes the namespaces and
/// its state directory. Returns what it did, one line each.
pub fn teardown(prefix: &str) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    let state = state_dir(prefix);
    if let Ok(pids) = std::fs::read_to_string(state.join("pids")) {
        for line in pids.lines() {
            let mut it = line.split('\t');
            if let (Some(Ok(pid)), name) = (it.next().map(str::parse::<u32>), it.next()) {
                // Only a process that still is a lab service (pids get reused).
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                let ours = cmdline.contains("sekisho-lab") || cmdline.contains("file_sanitizer.py");
                if ours && cmd::alive(pid) {
                    cmd::stop_pid(pid, Duration::from_secs(2));
                    done.push(format!("stopped {} (pid {pid})", name.unwrap_or("?")));
                }
            }
        }
    }
    let existing = existing_namespaces()?;
    for ns in Ns::ALL {
        let name = format!("{prefix}{}", ns.suffix());
        if !existing.contains(&name) {
            continue;
        }
        // Whatever still runs inside the lab's own namespaces was started in the lab.
        if let Ok(out) =
            cmd::run(Command::new("ip").args(["netns", "pids", &name]), None, Duration::from_secs(10))
        {
            for pid in out.stdout_text().lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                if pid != std::process::id() {
                    cmd::stop_pid(pid, Duration::from_secs(2));
                    done.push(format!("stopped pid {pid} in {name}"));
                }
            }
        }
        cmd::run(Command::new("ip").args(["netns", "del", &name]), None, Duration::from_secs(10))?.check()?;
        done.push(format!("deleted namespace {name}"));
    }
    if state.exists() {
        std::fs::remove_dir_all(&state).with_context(|| format!("cannot remove {}", state.display()))?;
        done.push(format!("removed {}", state.display()));
    }
    Ok(done)
}

impl Lab {
    /// Builds the lab (tearing down a previous or half-built one with the same prefix
    /// first) and, when asked, starts its services.
    pub fn up(options: &UpOptions) -> anyhow::Result<Lab> {
        validate_prefix(&options.prefix)?;
        if !cmd::is_root() {
            bail!("the lab needs root (network namespaces): run it with sudo");
        }
        let mut needed = vec!["ip", "ethtool", "sysctl"];
        if options.services {
            needed.extend(["python3", "openssl"]);
        }
        let missing: Vec<&str> = needed.into_iter().filter(|p| !cmd::have(p)).collect();
        if !missing.is_empty() {
            bail!(
                "the lab needs {} (apt-get install iproute2 ethtool procps python3 openssl)",
                missing.join(", ")
            );
        }
        if exists(&options.prefix)? {
            eprintln!("lab {:?}: a previous or half-built lab exists; tearing it down first", options.prefix);
            teardown(&options.prefix)?;
        }
        let state = state_dir(&options.prefix);
        std::fs::create_dir_all(&state).with_context(|| format!("cannot create {}", state.display()))?;
        // Others may pass through (not list): the control socket lives in a 0750
        // directory inside, reachable by the users its ACL names.
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o711))?;
        std::fs::write(state.join("prefix"), &options.prefix)?;
        // From here on, a failure drops `lab`, which tears down what was built.
        let mut lab = Lab {
            prefix: options.prefix.clone(),
            state,
            bin_dir: options.bin_dir.clone(),
            children: Vec::new(),
            services: Vec::new(),
            attached: true,
        };
        lab.build(options.offloads_off).context("building the lab topology")?;
        std::fs::write(lab.state.join("send_frame.py"), SEND_FRAME_PY)?;
        if options.services {
            lab.start_services().context("starting the lab services")?;
        }
        Ok(lab)
    }

    /// The namespace-name prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The state directory (`/run/sekisho-lab-<prefix>`): logs, pids, mail, certificates.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// The directory where the LGWAN mail host stores each message it receives.
    pub fn mail_dir(&self) -> PathBuf {
        self.state.join("mail-lgwan")
    }

    /// The program `name` (`sekishod`, `sekishoctl`, `sekisho-lab`) of this build.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// The services started.
    pub fn services(&self) -> &[ServiceInfo] {
        &self.services
    }

    /// The full name of namespace `ns`.
    pub fn ns(&self, ns: Ns) -> String {
        format!("{}{}", self.prefix, ns.suffix())
    }

    /// A command running `program` inside namespace `ns`.
    pub fn command(&self, ns: Ns, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.arg("netns").arg("exec").arg(self.ns(ns)).arg(program);
        c
    }

    /// Runs `args` inside namespace `ns` with a deadline.
    pub fn exec(
        &self,
        ns: Ns,
        args: &[&str],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> anyhow::Result<Output> {
        let (program, rest) = args.split_first().context("empty command")?;
        let mut c = self.command(ns, program);
        c.args(rest);
        cmd::run(&mut c, stdin, timeout)
    }

    /// Runs `args` inside `ns` (10 s deadline) and fails unless it succeeds.
    pub fn must(&self, ns: Ns, args: &[&str]) -> anyhow::Result<Output> {
        self.exec(ns, args, None, Duration::from_secs(10))?.check()
    }

    /// Runs an `ip` command against namespace `ns`.
    fn ip(&self, ns: Ns, args: &[&str]) -> anyhow::Result<()> {
        let mut c = Command::new("ip");
        c.arg("-n").arg(self.ns(ns)).args(args);
        cmd::run(&mut c, None, Duration::from_secs(10))?.check().map(drop)
    }

    fn sysctl(&self, ns: Ns, settings: &[&str]) -> anyhow::Result<()> {
        let mut args = vec!["sysctl", "-q", "-w"];
        args.extend_from_slice(settings);
        self.must(ns, &args).map(drop)
    }

    fn build(&mut self, offloads_off: bool) -> anyhow::Result<()> {
        for ns in Ns::ALL {
            let name = self.ns(ns);
            cmd::run(Command::new("ip").args(["netns", "add", &name]), None, Duration::from_secs(10))?
                .check()?;
            self.ip(ns, &["link", "set", "lo", "up"])?;
        }
        // Gateway: a bump in the wire with no IP stack of its own on the ports.
        self.sysctl(
            Ns::Gateway,
            &[
                "net.ipv4.ip_forward=0",
                "net.ipv6.conf.all.forwarding=0",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        )?;
        // Core router.
        self.sysctl(
            Ns::Core,
            &[
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
                "net.ipv4.conf.all.send_redirects=0",
                "net.ipv4.conf.default.send_redirects=0",
                "net.ipv6.conf.default.accept_dad=0",
            ],
        )?;
        let gw = self.ns(Ns::Gateway);
        let core = self.ns(Ns::Core);
        for seg in &SEGMENTS {
            let host = self.ns(seg.ns);
            self.sysctl(
                seg.ns,
                &[
                    "net.ipv4.ip_forward=0",
                    "net.ipv6.conf.default.accept_dad=0",
                    "net.ipv6.conf.all.accept_ra=0",
                ],
            )?;
            let inside = format!("{}-in", seg.short);
            let outside = format!("{}-out", seg.short);
            let router = format!("r-{}", seg.short);
            let mut c = Command::new("ip");
            c.args([
                "link", "add", &inside, "netns", &gw, "type", "veth", "peer", "name", "eth0", "netns", &host,
            ]);
            cmd::run(&mut c, None, Duration::from_secs(10))?.check()?;
            let mut c = Command::new("ip");
            c.args([
                "link", "add", &outside, "netns", &gw, "type", "veth", "peer", "name", &router, "netns",
                &core,
            ]);
            cmd::run(&mut c, None, Duration::from_secs(10))?.check()?;

            for dev in [&inside, &outside] {
                self.sysctl(Ns::Gateway, &[&format!("net.ipv6.conf.{dev}.disable_ipv6=1")])?;
                self.ip(Ns::Gateway, &["link", "set", dev, "up"])?;
            }
            if offloads_off {
                self.must(seg.ns, &["ethtool", "-K", "eth0", "tx", "off"])?;
                self.must(Ns::Core, &["ethtool", "-K", &router, "tx", "off"])?;
            }
            self.sysctl(seg.ns, &["net.ipv6.conf.eth0.accept_dad=0"])?;
            self.sysctl(Ns::Core, &[&format!("net.ipv6.conf.{router}.accept_dad=0")])?;
            for a in seg.router {
                self.ip(Ns::Core, &["addr", "add", a, "dev", &router, "nodad"])?;
            }
            for a in seg.hosts {
                self.ip(seg.ns, &["addr", "add", a, "dev", "eth0", "nodad"])?;
            }
            self.ip(Ns::Core, &["link", "set", &router, "up"])?;
            self.ip(seg.ns, &["link", "set", "eth0", "up"])?;
            let v4 = seg.router.iter().find(|a| !a.contains(':')).and_then(|a| a.split('/').next());
            let v6 = seg.router.iter().find(|a| a.contains(':')).and_then(|a| a.split('/').next());
            if let Some(gw4) = v4 {
                self.ip(seg.ns, &["route", "add", "default", "via", gw4])?;
            }
            if let Some(gw6) = v6 {
                self.ip(seg.ns, &["-6", "route", "add", "default", "via", gw6])?;
            }
        }
        Ok(())
    }

    /// Starts one long-running process inside `ns`, its output going to
    /// `<state>/logs/<name>.log`, and records its pid.
    fn spawn(&mut self, name: &str, ns: Ns, listen: &str, args: Vec<OsString>) -> anyhow::Result<u32> {
        let logs = self.state.join("logs");
        std::fs::create_dir_all(&logs)?;
        let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
        let mut c = self.command(ns, &args[0]);
        c.args(&args[1..]).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let child = c.spawn().with_context(|| format!("cannot start {name}: `{}`", cmd::describe(&c)))?;
        let pid = child.id();
        self.children.push(child);
        let mut pids = std::fs::read_to_string(self.state.join("pids")).unwrap_or_default();
        let _ = writeln!(pids, "{pid}\t{name}");
        std::fs::write(self.state.join("pids"), pids)?;
        self.services.push(ServiceInfo { name: name.to_string(), ns, listen: listen.to_string(), pid });
        Ok(pid)
    }

    fn start_services(&mut self) -> anyhow::Result<()> {
        let state = self.state.clone();
        let ready = state.join("ready");
        std::fs::create_dir_all(&ready)?;
        let cert = state.join("tls-cert.pem");
        let key = state.join("tls-key.pem");
        let mut openssl = Command::new("openssl");
        openssl.args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "7",
        ]);
        openssl.args(["-subj", "/O=sekisho lab/CN=sekisho-lab"]);
        openssl.args(["-addext", &format!("subjectAltName=IP:{},IP:{}", addr::SZ_CDR, addr::IN_SENDER)]);
        openssl.arg("-keyout").arg(&key).arg("-out").arg(&cert);
        cmd::run(&mut openssl, None, Duration::from_secs(30))?.check()?;
        let py = state.join("file_sanitizer.py");
        std::fs::write(&py, FILE_SANITIZER_PY)?;

        let exe: OsString = self.bin("sekisho-lab").into();
        let os = |s: &str| OsString::from(s);
        let path = |p: &Path| p.as_os_str().to_owned();
        let ready_file = |name: &str| ready.join(name);
        let mut expected = Vec::new();

        let relay = format!("{}:25", addr::SZ_RELAY);
        let r = ready_file("mail-relay");
        self.spawn(
            "mail-relay",
            Ns::Sanitization,
            &relay,
            vec![
                exe.clone(),
                os("smtp-relay"),
                os("--listen"),
                os(&relay),
                os("--deliver"),
                os(&format!("{}:25", addr::LG_MAIL)),
                os("--source"),
                os(addr::SZ_RELAY),
                os("--ready-file"),
                path(&r),
            ],
        )?;
        expected.push(("mail-relay", r));

        let sink = format!("{}:25", addr::LG_MAIL);
        let r = ready_file("lgwan-mail");
        let mail = self.mail_dir();
        self.spawn(
            "lgwan-mail",
            Ns::Lgwan,
            &sink,
            vec![
                exe.clone(),
                os("smtp-sink"),
                os("--listen"),
                os(&sink),
                os("--dir"),
                path(&mail),
                os("--ready-file"),
                path(&r),
            ],
        )?;
        expected.push(("lgwan-mail", r));

        for (name, ns, role, listen) in [
            ("file-sanitizer", Ns::Sanitization, "cdr", format!("{}:443", addr::SZ_CDR)),
            ("internet-web", Ns::Internet, "web", format!("{}:443", addr::IN_SENDER)),
        ] {
            let r = ready_file(name);
            self.spawn(
                name,
                ns,
                &listen,
                vec![
                    os("python3"),
                    path(&py),
                    os("--role"),
                    os(role),
                    os("--listen"),
                    os(&listen),
                    os("--cert"),
                    path(&cert),
                    os("--key"),
                    path(&key),
                    os("--store"),
                    path(&state.join("files")),
                    os("--ready-file"),
                    path(&r),
                ],
            )?;
            expected.push((name, r));
        }

        for (name, ns, listen, banner) in [
            ("vdi-rdp", Ns::Internet, format!("{}:3389", addr::IN_VDI), ""),
            ("juki-ssh", Ns::Lgwan, format!("{}:22", addr::LG_JUKI), "SSH-2.0-sekisho-lab-juki\r\n"),
            ("terminal-rdp", Ns::Lgwan, format!("{}:3389", addr::LG_TERMINAL), ""),
        ] {
            let r = ready_file(name);
            let mut args = vec![exe.clone(), os("tcp-echo"), os("--listen"), os(&listen)];
            if !banner.is_empty() {
                args.extend([os("--banner"), os(banner)]);
            }
            if listen.ends_with(":3389") {
                args.push(os("--rdp"));
            }
            args.extend([os("--ready-file"), path(&r)]);
            self.spawn(name, ns, &listen, args)?;
            expected.push((name, r));
        }

        let deadline = Instant::now() + Duration::from_secs(15);
        for (name, file) in expected {
            while !file.exists() {
                let dead = self.services.iter().find(|s| s.name == name).is_some_and(|s| !cmd::alive(s.pid));
                if dead || Instant::now() > deadline {
                    let log = std::fs::read_to_string(self.state.join("logs").join(format!("{name}.log")))
                        .unwrap_or_default();
                    bail!("service {name} did not start:\n{}", log.trim_end());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Sends one raw Ethernet frame out of `eth0` in host namespace `ns` (AF_PACKET).
    pub fn send_frame(&self, ns: Ns, frame: &[u8]) -> anyhow::Result<()> {
        let mut c = self.frame_sender(ns, &[frame], 1, 0);
        cmd::run(&mut c, None, Duration::from_secs(10))?.check().map(drop)
    }

    /// Sends raw Ethernet frames back to back out of `eth0` in host namespace `ns` (a
    /// flood), one process for all of them.
    pub fn send_frames(&self, ns: Ns, frames: &[Vec<u8>]) -> anyhow::Result<()> {
        let mut text = String::with_capacity(frames.iter().map(|f| 2 * f.len() + 1).sum());
        for f in frames {
            for b in f {
                let _ = write!(text, "{b:02x}");
            }
            text.push('\n');
        }
        let file = self.state.join("frames.txt");
        std::fs::write(&file, text)?;
        let script = self.state.join("send_frame.py");
        let mut c = self.command(ns, "python3");
        c.arg(&script).args(["--dev", "eth0", "--hex-file"]).arg(&file);
        cmd::run(&mut c, None, Duration::from_secs(60))?.check().map(drop)
    }

    /// A command that sends `count` raw Ethernet frames out of `eth0` in host namespace
    /// `ns`, `frames` in turn, at `rate` frames per second (0: one every 50 ms).
    pub fn frame_sender(&self, ns: Ns, frames: &[&[u8]], count: u64, rate: u64) -> Command {
        let mut c = self.command(ns, "python3");
        c.arg(self.state.join("send_frame.py")).args(["--dev", "eth0"]);
        for f in frames {
            c.arg("--hex").arg(f.iter().map(|b| format!("{b:02x}")).collect::<String>());
        }
        c.arg("--count").arg(count.to_string());
        if rate > 0 {
            c.arg("--rate").arg(rate.to_string());
        }
        c
    }

    /// A description of what the lab is made of, for people.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "lab {:?} (state in {})", self.prefix, self.state.display());
        let _ = writeln!(
            s,
            "  {:<10} gateway: mn-in/mn-out lg-in/lg-out in-in/in-out sz-in/sz-out (no addresses, no forwarding)",
            self.ns(Ns::Gateway)
        );
        let routers: Vec<String> = SEGMENTS
            .iter()
            .flat_map(|g| g.router.iter().map(move |a| format!("r-{} {a}", g.short)))
            .collect();
        let _ = writeln!(s, "  {:<10} core router (forwarding): {}", self.ns(Ns::Core), routers.join(", "));
        for seg in &SEGMENTS {
            let _ = writeln!(
                s,
                "  {:<10} zone {:<12} eth0 -> {}-in: {} ({})",
                self.ns(seg.ns),
                seg.zone,
                seg.short,
                seg.hosts.join(" "),
                seg.roles
            );
        }
        if !self.services.is_empty() {
            let _ = writeln!(s, "services:");
            for svc in &self.services {
                let _ = writeln!(
                    s,
                    "  {:<15} {:<20} in {:<10} pid {}",
                    svc.name,
                    svc.listen,
                    self.ns(svc.ns),
                    svc.pid
                );
            }
        }
        s
    }

    /// Keeps the lab running after this value is dropped (for `lab up`).
    pub fn detach(mut self) {
        self.attached = false;
        self.children.clear();
    }

    /// Stops the services and deletes the namespaces.
    pub fn down(mut self) -> anyhow::Result<Vec<String>> {
        self.attached = false;
        self.teardown_now()
    }

    fn teardown_now(&mut self) -> anyhow::Result<Vec<String>> {
        let mut done = Vec::new();
        for child in &mut self.children {
            let pid = child.id();
            if let Ok(status) = cmd::stop_child(child, Duration::from_secs(2)) {
                done.push(format!("stopped pid {pid} ({status})"));
            }
        }
        self.children.clear();
        done.extend(teardown(&self.prefix)?);
        Ok(done)
    }

    /// The address of a service, for probes.
    pub fn socket(ip: &str, port: u16) -> anyhow::Result<SocketAddr> {
        let ip: std::net::IpAddr = ip.parse().with_context(|| format!("bad address {ip:?}"))?;
        Ok(SocketAddr::new(ip, port))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.attached {
            if let Err(e) = self.teardown_now() {
                eprintln!("lab {:?}: teardown failed: {e:#}", self.prefix);
            }
        }
    }
}
