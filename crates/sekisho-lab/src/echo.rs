//! A bounded TCP echo service with an optional banner: the lab's stand-ins for the VDI
//! host's RDP port and the juki server's SSH port.
//!
//! The gateway checks both directions of a flow (an RDP connection request from the
//! client answered by a connection confirm, an `SSH-` banner from each side); this
//! service sends its banner (if any) — or, as an RDP stand-in, answers an X.224
//! connection request with a confirm — and echoes what it receives, so a client can
//! check that its bytes made the round trip.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

/// Most connections served at once.
const MAX_CONNECTIONS: usize = 32;
/// Most bytes echoed per connection.
const MAX_BYTES: usize = 1 << 20;
/// Idle time after which a connection is closed.
const IDLE: Duration = Duration::from_secs(30);

/// The X.224 Connection Confirm an RDP stand-in answers a connection request with (TPKT,
/// CC, an RDP negotiation response selecting standard RDP security).
pub const RDP_CONNECTION_CONFIRM: [u8; 19] = [
    0x03, 0x00, 0x00, 0x13, 0x0e, 0xd0, 0x00, 0x00, 0x12, 0x34, 0x00, 0x02, 0x00, 0x08, 0x00, 0x00, 0x00,
    0x00, 0x00,
];

/// Serves on `listen` until the process ends; `banner` is sent first on each connection;
/// with `rdp`, a first segment that is an X.224 connection request is answered with
/// [`RDP_CONNECTION_CONFIRM`] instead of its echo.
pub fn serve(
    listen: SocketAddr,
    banner: &[u8],
    rdp: bool,
    ready: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    ready()?;
    let active = Arc::new(AtomicUsize::new(0));
    let banner: Arc<[u8]> = banner.into();
    for conn in listener.incoming() {
        let Ok(stream) = conn else {
            // Out of descriptors or the like: do not spin.
            std::thread::sleep(std::time::Duration::from_millis(50));
            continue;
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let active = Arc::clone(&active);
        let banner = Arc::clone(&banner);
        let spawned = std::thread::Builder::new().name("echo".into()).spawn(move || {
            let _ = echo(stream, &banner, rdp);
            active.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            eprintln!("echo: cannot start a connection thread");
        }
    }
    Ok(())
}

fn echo(mut stream: TcpStream, banner: &[u8], rdp: bool) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    stream.set_write_timeout(Some(IDLE))?;
    if !banner.is_empty() {
        stream.write_all(banner)?;
    }
    let mut buf = [0u8; 4096];
    let mut total = 0;
    while total < MAX_BYTES {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let request = matches!(&buf[..n], [0x03, 0x00, _, _, _, code, ..] if code & 0xf0 == 0xe0);
        if rdp && total == 0 && request {
            stream.write_all(&RDP_CONNECTION_CONFIRM)?;
        } else {
            stream.write_all(&buf[..n])?;
        }
        total += n;
    }
    Ok(())
}
