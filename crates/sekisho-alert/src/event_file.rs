//! Local retention: one JSON object per line, the same fields as the structured data
//! plus `time`, `msgid`, `severity` and `message`. Reopened on request (logrotate).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::event::Event;
use crate::format::{clean_text, param_value, rfc3339};

/// The open event file.
pub(crate) struct EventFile {
    path: PathBuf,
    out: Option<BufWriter<File>>,
}

fn open(path: &Path) -> io::Result<BufWriter<File>> {
    let f = OpenOptions::new().create(true).append(true).mode(0o640).open(path)?;
    Ok(BufWriter::with_capacity(64 * 1024, f))
}

impl EventFile {
    /// Open (create, append) the file.
    pub fn open(path: &Path) -> io::Result<EventFile> {
        Ok(EventFile { path: path.to_owned(), out: Some(open(path)?) })
    }

    /// Whether the file is open (a failed reopen leaves it closed until the next try).
    pub fn is_open(&self) -> bool {
        self.out.is_some()
    }

    /// Append one event as a JSON line (buffered; see [`EventFile::flush`]).
    pub fn write(&mut self, e: &Event, utc_offset_s: i32) -> io::Result<()> {
        let Some(out) = self.out.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "event file is not open"));
        };
        let mut line = Vec::with_capacity(512);
        json_line(e, utc_offset_s, &mut line);
        out.write_all(&line)
    }

    /// Write out what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }

    /// Close and open the path again (after logrotate moved the file away).
    pub fn reopen(&mut self) -> io::Result<()> {
        if let Some(mut o) = self.out.take() {
            let _ = o.flush();
        }
        self.out = Some(open(&self.path)?);
        Ok(())
    }
}

/// One event as a JSON object and a newline.
pub(crate) fn json_line(e: &Event, utc_offset_s: i32, out: &mut Vec<u8>) {
    let text: String = clean_text(&e.text).collect();
    let head = [
        ("time", rfc3339(e.at, utc_offset_s)),
        ("msgid", e.kind.msgid().to_owned()),
        ("severity", e.severity.as_str().to_owned()),
        ("message", text),
    ];
    out.push(b'{');
    for (i, (k, v)) in head.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, k);
        out.push(b':');
        push_json_str(out, v);
    }
    for p in &e.params {
        out.push(b',');
        push_json_str(out, p.name);
        out.push(b':');
        if p.numeric {
            out.extend_from_slice(p.value.as_bytes());
        } else {
            push_json_str(out, &param_value(&p.value));
        }
    }
    out.extend_from_slice(b"}\n");
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Serialising a &str cannot fail; fall back to an empty string regardless.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}
