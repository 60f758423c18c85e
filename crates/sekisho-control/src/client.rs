//! A blocking client: what `sekishoctl`, the lab and the tests use.

use std::io::{self, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::codec::{LineError, LineReader};
use crate::proto::*;

/// Why a call did not get its answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket could not be opened.
    #[error("cannot connect to the control socket {path}: {source}{}", hint(source))]
    Connect {
        /// The socket path.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// The connection failed or closed.
    #[error("control connection: {0}")]
    Io(#[from] io::Error),
    /// The daemon said something this client does not understand.
    #[error("control protocol: {0}")]
    Protocol(String),
    /// The daemon refused the request.
    #[error("{0}")]
    Refused(ErrorBody),
}

fn hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            " (is sekishod running? pass its socket with --socket)"
        }
        io::ErrorKind::PermissionDenied => {
            " (only root and the members of the [control] admin_group and read_group may use it)"
        }
        _ => "",
    }
}

impl ClientError {
    /// The daemon's error code, when it refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused(e) => Some(e.code),
            _ => None,
        }
    }
}

/// An open, greeted control connection.
pub struct Client {
    reader: LineReader<BufReader<UnixStream>>,
    writer: UnixStream,
    next_id: u64,
    welcome: Welcome,
    line: Vec<u8>,
}

impl Client {
    /// Connects to `socket`, says hello as `client` and reads the welcome. Every later
    /// read and write gives up after `timeout`.
    pub fn connect(socket: &Path, client: &str, timeout: Duration) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(socket)
            .map_err(|source| ClientError::Connect { path: socket.display().to_string(), source })?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let writer = stream.try_clone()?;
        let reader = LineReader::new(BufReader::new(stream), crate::MAX_REPLY);
        let mut c = Client {
            reader,
            writer,
            next_id: 1,
            welcome: Welcome {
                proto: String::new(),
                version: 0,
                daemon: String::new(),
                role: Role::Read,
                uid: 0,
                pid: 0,
            },
            line: Vec::new(),
        };
        c.send_line(&serde_json::to_string(&HelloLine { hello: Hello::new(client) }).map_err(proto_err)?)?;
        let reply = c.read_reply()?;
        c.welcome = open(reply)?;
        Ok(c)
    }

    /// The daemon's answer to the hello: its version and this connection's role.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Changes the read timeout (`None`: wait for ever, for `events --follow`).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.reader.get_mut().get_ref().set_read_timeout(timeout)
    }

    fn send_line(&mut self, line: &str) -> Result<(), ClientError> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.writer.write_all(&bytes)?;
        Ok(())
    }

    /// Sends a request; returns its id (read its replies with [`Client::next_reply`]).
    pub fn send(&mut self, cmd: Command) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let line = serde_json::to_string(&Request { id, cmd }).map_err(proto_err)?;
        self.send_line(&line)?;
        Ok(id)
    }

    /// Reads the next reply.
    pub fn next_reply(&mut self) -> Result<Reply, ClientError> {
        self.read_reply()
    }

    fn read_reply(&mut self) -> Result<Reply, ClientError> {
        match self.reader.read_line(&mut self.line) {
            Ok(()) => serde_json::from_slice(&self.line)
                .map_err(|e| ClientError::Protocol(format!("a reply that is not an envelope: {e}"))),
            Err(LineError::Closed) => Err(ClientError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection",
            ))),
            Err(LineError::TooLong(n)) => {
                Err(ClientError::Protocol(format!("a reply longer than {n} bytes")))
            }
            Err(LineError::Io(e)) => Err(ClientError::Io(e)),
        }
    }

    /// Sends `cmd` and returns the `data` of its reply.
    pub fn request(&mut self, cmd: Command) -> Result<Value, ClientError> {
        let id = self.send(cmd)?;
        let reply = self.read_reply()?;
        if reply.id.is_some_and(|r| r != id) {
            return Err(ClientError::Protocol(format!("asked {id}, answered {:?}", reply.id)));
        }
        open(reply)
    }

    /// Sends `cmd` and decodes the `data` of its reply as `T`.
    pub fn call<T: DeserializeOwned>(&mut self, cmd: Command) -> Result<T, ClientError> {
        let data = self.request(cmd)?;
        serde_json::from_value(data).map_err(proto_err)
    }

    /// [`Command::Status`].
    pub fn status(&mut self) -> Result<Status, ClientError> {
        self.call(Command::Status)
    }

    /// [`Command::Stats`].
    pub fn stats(&mut self) -> Result<Stats, ClientError> {
        self.call(Command::Stats)
    }

    /// [`Command::Flows`].
    pub fn flows(&mut self, query: FlowQuery) -> Result<Vec<Flow>, ClientError> {
        self.call(Command::Flows(query))
    }

    /// [`Command::Reload`].
    pub fn reload(&mut self, args: ReloadArgs) -> Result<ReloadReport, ClientError> {
        self.call(Command::Reload(args))
    }

    /// [`Command::Explain`].
    pub fn explain(&mut self, args: ExplainArgs) -> Result<Explanation, ClientError> {
        self.call(Command::Explain(args))
    }
}

/// `data` of a successful reply, or the refusal.
fn open<T: DeserializeOwned>(reply: Reply) -> Result<T, ClientError> {
    if let Some(e) = reply.error {
        return Err(ClientError::Refused(e));
    }
    if !reply.ok {
        return Err(ClientError::Protocol("a refusal without an error".into()));
    }
    serde_json::from_value(reply.data.unwrap_or(Value::Null)).map_err(proto_err)
}

fn proto_err(e: serde_json::Error) -> ClientError {
    ClientError::Protocol(e.to_string())
}
