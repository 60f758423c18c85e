//! The one place where what happens is recorded: every operator change (and automatic
//! rollback) is logged with uid, pid and what changed, appended to the change history on
//! disk and published on the event stream; verdict events from the data plane are
//! published on the same stream. (Syslog notices about changes are sent by the
//! controller, which knows their details: `crate::alerts`.)

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use sekisho_control::{Change, Event, EventBody};
use tokio::sync::broadcast;

/// The history file is rotated past this size (one older file is kept).
pub(crate) const HISTORY_MAX_BYTES: u64 = 1 << 20;
/// Recent events kept in memory for `events` without `--follow`.
pub(crate) const BACKLOG: usize = 1_000;
/// Events a `--follow` reader may lag behind before it loses some.
pub(crate) const STREAM_CAPACITY: usize = 4_096;

struct Published {
    next_seq: u64,
    backlog: VecDeque<Arc<Event>>,
}

/// The change history and the event stream.
pub(crate) struct Journal {
    path: PathBuf,
    file: Mutex<File>,
    published: Mutex<Published>,
    stream: broadcast::Sender<Arc<Event>>,
}

impl Journal {
    /// Opens (creating) `<dir>/history.jsonl` for appending.
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Journal> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the state directory {} (--state-dir)", dir.display()))?;
        let path = dir.join("history.jsonl");
        let file = open_append(&path)?;
        let (stream, _) = broadcast::channel(STREAM_CAPACITY);
        Ok(Journal {
            path,
            file: Mutex::new(file),
            published: Mutex::new(Published { next_seq: 1, backlog: VecDeque::with_capacity(BACKLOG) }),
            stream,
        })
    }

    /// The history file.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Records one change: log line, history file, event stream.
    pub(crate) fn record(&self, change: Change) {
        let who = match (change.uid, change.pid) {
            (Some(uid), Some(pid)) => {
                let name = crate::sys::user_name(uid).unwrap_or_else(|| "?".into());
                format!("uid {uid} ({name}) pid {pid}")
            }
            (Some(uid), None) => format!("uid {uid}"),
            _ => "sekishod".to_owned(),
        };
        if change.ok {
            tracing::info!(
                action = %change.action, generation = change.generation,
                "change by {who}: {}", change.detail
            );
        } else {
            tracing::warn!(
                action = %change.action, generation = change.generation,
                "change refused, asked by {who}: {}", change.detail
            );
        }
        if let Err(e) = self.append(&change) {
            tracing::error!("cannot append to the change history {}: {e:#}", self.path.display());
        }
        let at = change.at.clone();
        self.publish(at, EventBody::Change { change });
    }

    fn append(&self, change: &Change) -> anyhow::Result<()> {
        let mut file = self.file.lock().map_err(|_| anyhow::anyhow!("history lock poisoned"))?;
        if file.metadata().map(|m| m.len()).unwrap_or(0) >= HISTORY_MAX_BYTES {
            let old = self.path.with_extension("jsonl.1");
            std::fs::rename(&self.path, &old)
                .with_context(|| format!("cannot rotate {} to {}", self.path.display(), old.display()))?;
            *file = open_append(&self.path)?;
        }
        let mut line = serde_json::to_string(change)?;
        line.push('\n');
        file.write_all(line.as_bytes())?;
        file.sync_data()?;
        Ok(())
    }

    /// The latest `limit` changes from the history on disk, oldest first.
    pub(crate) fn history(&self, limit: usize) -> anyhow::Result<Vec<Change>> {
        let mut out = VecDeque::with_capacity(limit);
        for path in [self.path.with_extension("jsonl.1"), self.path.clone()] {
            let Ok(file) = File::open(&path) else { continue };
            for line in BufReader::new(file).lines() {
                let line = line.with_context(|| format!("reading {}", path.display()))?;
                if let Ok(change) = serde_json::from_str::<Change>(&line) {
                    if out.len() == limit {
                        out.pop_front();
                    }
                    out.push_back(change);
                }
            }
        }
        Ok(out.into())
    }

    /// Publishes an event: numbered, kept in the backlog, sent to every follower (a
    /// follower that lags loses events, and is told how many; nobody waits).
    pub(crate) fn publish(&self, at: String, body: EventBody) {
        let Ok(mut p) = self.published.lock() else { return };
        let event = Arc::new(Event { seq: p.next_seq, at, body });
        p.next_seq += 1;
        if p.backlog.len() == BACKLOG {
            p.backlog.pop_front();
        }
        p.backlog.push_back(event.clone());
        // No followers is not an error.
        let _ = self.stream.send(event);
    }

    /// Whether anybody follows the stream (verdict events are only built then, or for
    /// the backlog).
    pub(crate) fn followers(&self) -> usize {
        self.stream.receiver_count()
    }

    /// The latest `limit` events, oldest first.
    pub(crate) fn recent(&self, limit: usize) -> Vec<Event> {
        let Ok(p) = self.published.lock() else { return Vec::new() };
        let skip = p.backlog.len().saturating_sub(limit);
        p.backlog.iter().skip(skip).map(|e| (**e).clone()).collect()
    }

    /// A new follower of the stream.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.stream.subscribe()
    }
}

fn open_append(path: &Path) -> anyhow::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .with_context(|| format!("cannot open the change history {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(n: u32) -> Change {
        Change {
            at: "t".into(),
            action: "reload".into(),
            uid: Some(0),
            pid: Some(1),
            ok: true,
            detail: format!("change {n}"),
            generation: n,
        }
    }

    #[test]
    fn history_is_appended_rotated_and_read_back() {
        let dir = std::env::temp_dir().join(format!("sekishod-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let j = Journal::open(&dir).unwrap();
        let mut follower = j.subscribe();
        for n in 0..3 {
            j.record(change(n));
        }
        assert_eq!(j.history(2).unwrap().iter().map(|c| c.generation).collect::<Vec<_>>(), [1, 2]);
        let e = follower.try_recv().unwrap();
        assert_eq!((e.seq, matches!(e.body, EventBody::Change { .. })), (1, true));
        // Past the bound the file is rotated; the latest changes still read back.
        let big = Change { detail: "x".repeat(HISTORY_MAX_BYTES as usize), ..change(9) };
        j.record(big);
        j.record(change(10));
        assert!(dir.join("history.jsonl.1").exists());
        assert!(std::fs::metadata(j.path()).unwrap().len() < 1000);
        let last: Vec<u32> = j.history(3).unwrap().iter().map(|c| c.generation).collect();
        assert_eq!(last, [2, 9, 10]);
        assert_eq!(j.recent(1)[0].seq, 5);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
