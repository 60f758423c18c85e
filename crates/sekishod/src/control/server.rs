//! The control socket's server: a current-thread tokio runtime on a thread of its own
//! (the data-plane workers never wait on it), one task per client, blocking work
//! (reloads, flow-table walks) on tokio's blocking pool.
//!
//! Bounds: [`MAX_CLIENTS`] at once (others get `busy` and are closed); a hello within
//! [`HELLO_TIMEOUT`]; a request line of at most [`MAX_LINE`] bytes that, once begun,
//! completes within [`REQUEST_TIMEOUT`]; [`IDLE_TIMEOUT`] between requests; every reply
//! written within [`WRITE_TIMEOUT`] (a client that does not read is dropped) and at most
//! [`MAX_REPLY`] bytes; [`MAX_BAD_LINES`] bad lines in a row close the connection.

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use sekisho_control::*;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::{broadcast, watch, Semaphore};
use tokio::time::{timeout, timeout_at, Instant};

use super::{auth, Controller, Who};

/// Clients served at once.
pub(crate) const MAX_CLIENTS: usize = 64;
/// Time to send the hello after connecting.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Time between requests before the connection is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Time to finish a request line once its first byte arrived.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to write one reply.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bad lines in a row before the connection is closed.
pub(crate) const MAX_BAD_LINES: u32 = 8;
/// Blocking-pool threads (reloads, flow walks) at most.
const BLOCKING_THREADS: usize = 4;

/// The running server.
pub(crate) struct Server {
    thread: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl Server {
    /// Serves `listener` on a new thread.
    pub(crate) fn start(
        ctl: Arc<Controller>,
        listener: std::os::unix::net::UnixListener,
    ) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        let (stop, stopped) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .max_blocking_threads(BLOCKING_THREADS)
            .thread_name("control")
            .build()?;
        let thread = std::thread::Builder::new().name("control".into()).spawn(move || {
            let served = runtime.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(listener)?;
                serve(ctl, listener, stopped).await;
                Ok::<(), io::Error>(())
            });
            if let Err(e) = served {
                tracing::error!("control socket: {e}");
            }
            runtime.shutdown_timeout(Duration::from_secs(2));
        })?;
        Ok(Server { thread, stop })
    }

    /// Closes every connection and stops the thread.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.thread.join();
    }
}

async fn serve(ctl: Arc<Controller>, listener: tokio::net::UnixListener, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let (ctl, stop) = (ctl.clone(), stop.clone());
                        tokio::spawn(async move {
                            ctl.clients.fetch_add(1, Relaxed);
                            client(&ctl, stream, stop).await;
                            ctl.clients.fetch_sub(1, Relaxed);
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tokio::spawn(refuse(stream));
                    }
                },
                Err(e) => {
                    // Out of descriptors, most likely: let some connections finish.
                    tracing::warn!("control socket: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// `busy`, best effort within a second, then close.
async fn refuse(mut stream: UnixStream) {
    let reply = Reply::error(
        None,
        ErrorBody::new(
            ErrorCode::Busy,
            format!("{MAX_CLIENTS} clients are connected already; try again shortly"),
        ),
    );
    let _ =
        timeout(Duration::from_secs(1), stream.write_all(format!("{}\n", reply.to_line()).as_bytes())).await;
}

/// Why a line could not be read.
enum ReadError {
    TooLong,
    Timeout,
    Closed,
}

/// Reads one line of at most [`MAX_LINE`] bytes: the first byte within `wait`, the rest
/// within [`REQUEST_TIMEOUT`] of it.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    line: &mut Vec<u8>,
    wait: Duration,
) -> Result<(), ReadError> {
    line.clear();
    let mut deadline = Instant::now() + wait;
    let mut begun = false;
    loop {
        let available = match timeout_at(deadline, r.fill_buf()).await {
            Err(_) => return Err(ReadError::Timeout),
            Ok(Err(_)) => return Err(ReadError::Closed),
            Ok(Ok([])) => return Err(ReadError::Closed),
            Ok(Ok(b)) => b,
        };
        if !begun {
            begun = true;
            deadline = Instant::now() + REQUEST_TIMEOUT;
        }
        let (body, take, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i, i + 1, true),
            None => (available.len(), available.len(), false),
        };
        let room = MAX_LINE + 1 - line.len().min(MAX_LINE + 1);
        line.extend_from_slice(&available[..body.min(room)]);
        r.consume(take);
        if line.len() > MAX_LINE {
            return Err(ReadError::TooLong);
        }
        if done {
            return Ok(());
        }
    }
}

/// Writes `reply` within [`WRITE_TIMEOUT`]; false when the client is gone or does not read.
async fn send(w: &mut OwnedWriteHalf, reply: &Reply) -> bool {
    let mut line = reply.to_line();
    if line.len() > MAX_REPLY {
        let too_large = ErrorBody::new(
            ErrorCode::TooLarge,
            format!("the reply would be {} bytes, more than {MAX_REPLY}: ask for less (--limit)", line.len()),
        );
        line = Reply::error(reply.id, too_large).to_line();
    }
    line.push('\n');
    matches!(timeout(WRITE_TIMEOUT, w.write_all(line.as_bytes())).await, Ok(Ok(())))
}

fn refusal(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Reply {
    Reply::error(id, ErrorBody::new(code, message))
}

async fn client(ctl: &Arc<Controller>, stream: UnixStream, mut stop: watch::Receiver<bool>) {
    let peer = match auth::peer(&stream) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("control connection without credentials ({e}); closed");
            return;
        }
    };
    let who = Who { uid: Some(peer.uid), pid: peer.pid };
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    let timed_out =
        |what: &str| refusal(None, ErrorCode::Timeout, format!("no {what} in time; connection closed"));
    match read_line(&mut r, &mut line, HELLO_TIMEOUT).await {
        Ok(()) => {}
        Err(ReadError::Timeout) => {
            send(&mut w, &timed_out("hello")).await;
            return;
        }
        Err(ReadError::TooLong) => {
            send(
                &mut w,
                &refusal(
                    None,
                    ErrorCode::LineTooLong,
                    format!("a line of more than {MAX_LINE} bytes; connection closed"),
                ),
            )
            .await;
            return;
        }
        Err(ReadError::Closed) => return,
    }
    let hello = match parse_hello(&line) {
        Ok(h) => h,
        Err(e) => {
            send(&mut w, &Reply::error(None, e)).await;
            return;
        }
    };
    let Some(role) = ctl.role(peer.uid, &peer.gids) else {
        let name = crate::sys::user_name(peer.uid).unwrap_or_else(|| "?".into());
        tracing::warn!(
            uid = peer.uid,
            pid = ?peer.pid,
            "control connection refused: uid {} ({name}) is neither root nor a member of the [control] admin_group or read_group",
            peer.uid
        );
        let message = format!(
            "uid {} may not use this socket: only root and the members of the [control] admin_group and read_group may",
            peer.uid
        );
        send(&mut w, &refusal(None, ErrorCode::PermissionDenied, message)).await;
        return;
    };
    tracing::debug!(uid = peer.uid, pid = ?peer.pid, role = role.as_str(), client = ?hello.client, "control client");
    let welcome = Welcome {
        proto: PROTO.into(),
        version: VERSION,
        daemon: env!("CARGO_PKG_VERSION").into(),
        role,
        uid: peer.uid,
        pid: std::process::id(),
    };
    if !send(&mut w, &Reply::data(None, welcome)).await {
        return;
    }
    let mut bad = 0;
    loop {
        let read = tokio::select! {
            _ = stop.changed() => return,
            read = read_line(&mut r, &mut line, IDLE_TIMEOUT) => read,
        };
        match read {
            Ok(()) => {}
            Err(ReadError::Timeout) => {
                send(&mut w, &timed_out("request")).await;
                return;
            }
            Err(ReadError::TooLong) => {
                let message = format!("a line of more than {MAX_LINE} bytes; connection closed");
                send(&mut w, &refusal(None, ErrorCode::LineTooLong, message)).await;
                return;
            }
            Err(ReadError::Closed) => return,
        }
        let request = match parse_request(&line) {
            Ok(r) => r,
            Err((id, e)) => {
                bad += 1;
                if !send(&mut w, &Reply::error(id, e)).await || bad >= MAX_BAD_LINES {
                    return;
                }
                continue;
            }
        };
        bad = 0;
        let id = Some(request.id);
        let cmd = request.cmd;
        if cmd.changes() && role != Role::Admin {
            let name = cmd.name();
            ctl.record(name, who, false, format!("refused: uid {} may only look (read_group)", peer.uid));
            let message = format!("`{name}` changes the daemon: only root and the [control] admin_group may; uid {} may only look", peer.uid);
            if !send(&mut w, &refusal(id, ErrorCode::PermissionDenied, message)).await {
                return;
            }
            continue;
        }
        if let Command::Events(EventsArgs { follow: true, .. }) = cmd {
            follow(ctl, id, &mut r, &mut w, &mut stop).await;
            return;
        }
        let worker = ctl.clone();
        let reply = match tokio::task::spawn_blocking(move || worker.handle(cmd, who)).await {
            Ok(Ok(data)) => Reply { id, ok: true, data: Some(data), error: None },
            Ok(Err(e)) => Reply::error(id, e),
            Err(e) => refusal(id, ErrorCode::Internal, format!("the request failed: {e}")),
        };
        if !send(&mut w, &reply).await {
            return;
        }
    }
}

/// `events --follow`: one reply per event until the client leaves. A client that lags
/// more than the stream holds loses events and gets a `lost` event saying how many; one
/// that stops reading is dropped after [`WRITE_TIMEOUT`].
async fn follow(
    ctl: &Arc<Controller>,
    id: Option<u64>,
    r: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    w: &mut OwnedWriteHalf,
    stop: &mut watch::Receiver<bool>,
) {
    let mut events = ctl.journal.subscribe();
    if !send(w, &Reply::data(id, serde_json::json!({ "following": true }))).await {
        return;
    }
    loop {
        let event = tokio::select! {
            _ = stop.changed() => return,
            // The client sent something or left: a stream takes no requests.
            _ = r.fill_buf() => return,
            event = events.recv() => event,
        };
        let reply = match event {
            Ok(e) => Reply::data(id, &*e),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                let lost =
                    Event { seq: 0, at: crate::wall_clock().to_jst(), body: EventBody::Lost { count: n } };
                Reply::data(id, lost)
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if !send(w, &reply).await {
            tracing::debug!("events follower dropped: it does not read");
            return;
        }
    }
}
