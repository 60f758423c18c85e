//! Lines: reading one bounded line, and parsing the client's lines. Parsing never
//! panics on any input (a fuzz target holds it to that) and always says why not.

use std::io::{self, BufRead};

use serde_json::Value;

use crate::proto::{ErrorBody, ErrorCode, HelloLine, Request};

/// Why no line could be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// The line is longer than the limit.
    #[error("line longer than {0} bytes")]
    TooLong(usize),
    /// The other end closed the connection.
    #[error("connection closed")]
    Closed,
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Reads lines of at most `max` bytes (newline excluded) from a buffered reader.
pub struct LineReader<R> {
    inner: R,
    max: usize,
}

impl<R: BufRead> LineReader<R> {
    /// Lines of at most `max` bytes from `inner`.
    pub fn new(inner: R, max: usize) -> Self {
        LineReader { inner, max }
    }

    /// The reader underneath.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The next line into `line` (cleared first, newline removed). A line over the limit
    /// is an error, and the reader is then in the middle of it: drop the connection.
    pub fn read_line(&mut self, line: &mut Vec<u8>) -> Result<(), LineError> {
        line.clear();
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if available.is_empty() {
                return Err(LineError::Closed);
            }
            let (body, take, done) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (i, i + 1, true),
                None => (available.len(), available.len(), false),
            };
            // Keep at most one byte beyond the limit: enough to know it was passed.
            let room = self.max + 1 - line.len().min(self.max + 1);
            line.extend_from_slice(&available[..body.min(room)]);
            self.inner.consume(take);
            if done {
                if line.len() > self.max {
                    return Err(LineError::TooLong(self.max));
                }
                return Ok(());
            }
            if line.len() > self.max {
                return Err(LineError::TooLong(self.max));
            }
        }
    }
}

/// The request `id` of a JSON line, if it has a usable one (to answer a bad request).
fn id_of(v: &Value) -> Option<u64> {
    v.get("id").and_then(Value::as_u64)
}

/// Parses one request line. On failure: the id, if one could be read, and why.
pub fn parse_request(line: &[u8]) -> Result<Request, (Option<u64>, ErrorBody)> {
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        (
            None,
            ErrorBody::new(ErrorCode::BadJson, format!("not a JSON object: {e}; send one object per line")),
        )
    })?;
    let id = id_of(&value);
    if !value.is_object() {
        return Err((
            id,
            ErrorBody::new(
                ErrorCode::BadRequest,
                "a request is a JSON object: {\"id\":1,\"cmd\":\"status\"}",
            ),
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        (
            id,
            ErrorBody::new(
                ErrorCode::BadRequest,
                format!("not a request: {e}; write {{\"id\":N,\"cmd\":...}} (docs/control-protocol.md)"),
            ),
        )
    })
}

/// Parses the hello line; checks the protocol and version.
pub fn parse_hello(line: &[u8]) -> Result<crate::proto::Hello, ErrorBody> {
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        ErrorBody::new(ErrorCode::BadJson, format!("not a JSON object: {e}; send one object per line"))
    })?;
    let hello: HelloLine = serde_json::from_value(value).map_err(|e| {
        ErrorBody::new(
            ErrorCode::HelloRequired,
            format!(
                "the first line must be a hello ({e}): {{\"hello\":{{\"proto\":\"{}\",\"version\":{}}}}}",
                crate::PROTO,
                crate::VERSION
            ),
        )
    })?;
    let h = hello.hello;
    if h.proto != crate::PROTO || h.version != crate::VERSION {
        return Err(ErrorBody::new(
            ErrorCode::Version,
            format!(
                "this daemon speaks {} version {}, not {} version {}: use a sekishoctl of the daemon's version",
                crate::PROTO,
                crate::VERSION,
                h.proto,
                h.version
            ),
        ));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Result<String, String>> {
        let mut r = LineReader::new(io::BufReader::with_capacity(4, input), max);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        loop {
            match r.read_line(&mut buf) {
                Ok(()) => out.push(Ok(String::from_utf8_lossy(&buf).into_owned())),
                Err(LineError::Closed) => return out,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }

    #[test]
    fn lines_are_bounded() {
        assert_eq!(lines(b"ab\ncd\n", 2), vec![Ok("ab".into()), Ok("cd".into())]);
        assert_eq!(lines(b"abc\n", 2), vec![Err("line longer than 2 bytes".into())]);
        assert_eq!(lines(b"abcdefgh", 2), vec![Err("line longer than 2 bytes".into())]);
        assert_eq!(lines(b"ab", 2), Vec::<Result<String, String>>::new(), "no newline, then EOF");
    }

    #[test]
    fn requests_and_hellos() {
        assert!(parse_request(br#"{"id":1,"cmd":"status"}"#).is_ok());
        let (id, e) = parse_request(br#"{"id":7,"cmd":"stauts"}"#).unwrap_err();
        assert_eq!((id, e.code), (Some(7), ErrorCode::BadRequest));
        assert!(e.message.contains("unknown variant `stauts`"), "{}", e.message);
        assert_eq!(parse_request(b"\xff\xfe").unwrap_err().1.code, ErrorCode::BadJson);
        assert_eq!(parse_request(b"[1]").unwrap_err().1.code, ErrorCode::BadRequest);
        assert!(parse_hello(br#"{"hello":{"proto":"sekisho-control","version":1}}"#).is_ok());
        assert_eq!(
            parse_hello(br#"{"hello":{"proto":"sekisho-control","version":2}}"#).unwrap_err().code,
            ErrorCode::Version
        );
        assert_eq!(parse_hello(br#"{"id":1,"cmd":"status"}"#).unwrap_err().code, ErrorCode::HelloRequired);
    }
}
