//! One direction of an inspected TCP flow: the bytes inspected so far, kept until the
//! receiver has acknowledged them, keyed to the next sequence number expected.
//!
//! A segment that starts beyond the next expected byte is refused (the sender sends it
//! again, in order); a segment that repeats bytes already inspected must repeat them
//! exactly — a retransmission that differs would hand the receiver bytes nobody checked.
//! Bytes past the inspection depth (or after the validator is done) pass unchecked, but
//! those before it are still compared until the receiver has acknowledged them.

/// What became of a segment's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Accept {
    /// New bytes were appended: the validator has more to read.
    New,
    /// Nothing new to inspect (a repetition that matched, or bytes past the depth).
    Nothing,
    /// The segment starts beyond the next expected byte.
    Ahead,
    /// The segment repeats inspected bytes with other content.
    Differs,
    /// No room: the receiver has not acknowledged enough of what was inspected.
    WindowFull,
    /// The segment carries inspected bytes that were dropped as acknowledged: they can no
    /// longer be compared, and the acknowledgement may have been forged by a host claiming
    /// the receiver's address (a real receiver has them already).
    Acknowledged,
}

/// One direction's inspected bytes.
#[derive(Debug)]
pub(crate) struct Dir {
    buf: Box<[u8]>,
    /// The sequence number of `buf[0]`.
    base: u32,
    /// Bytes inspected and dropped as acknowledged, in all: the `dropped` sequence
    /// numbers before `base` (a count, not a number: the text leg has no end).
    dropped: u64,
    /// Bytes held: sequence numbers `[base, base + len)`.
    len: usize,
    /// The validator has read `buf[..consumed]`.
    pub consumed: usize,
    /// The first data byte's sequence number is known.
    pub started: bool,
    /// No further bytes need checking (the validator is done, or the depth is reached).
    pub done: bool,
    /// Bytes inspected in all.
    inspected: u64,
    /// Bytes to inspect at most (the depth; unbounded on the text leg).
    limit: u64,
}

/// `a` is later than `b` in sequence space.
#[inline]
fn after(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) < 0
}

impl Dir {
    /// A direction that inspects at most `limit` bytes and keeps at most `capacity`
    /// unacknowledged ones.
    pub(crate) fn new(capacity: usize, limit: u64) -> Dir {
        Dir {
            buf: vec![0; capacity].into_boxed_slice(),
            base: 0,
            dropped: 0,
            len: 0,
            consumed: 0,
            started: false,
            done: false,
            inspected: 0,
            limit,
        }
    }

    /// The first data byte has sequence number `seq`.
    pub(crate) fn start(&mut self, seq: u32) {
        self.base = seq;
        self.started = true;
    }

    /// The next sequence number expected.
    pub(crate) fn next(&self) -> u32 {
        self.base.wrapping_add(self.len as u32)
    }

    /// Whether the depth has been reached.
    pub(crate) fn at_limit(&self) -> bool {
        self.inspected >= self.limit
    }

    /// The bytes the validator has not read yet.
    pub(crate) fn unread(&self) -> &[u8] {
        &self.buf[self.consumed..self.len]
    }

    /// Whether the receiver has acknowledged everything inspected (`acked`: its highest
    /// acknowledgement number).
    pub(crate) fn delivered(&self, acked: u32) -> bool {
        !self.started || !after(self.next(), acked)
    }

    /// Drops acknowledged bytes the validator has read, to make room.
    fn compact(&mut self, acked: u32) {
        let acked_off = acked.wrapping_sub(self.base) as i32;
        let drop = usize::try_from(acked_off).unwrap_or(0).min(self.consumed).min(self.len);
        if drop == 0 {
            return;
        }
        self.buf.copy_within(drop..self.len, 0);
        self.len -= drop;
        self.consumed -= drop;
        self.base = self.base.wrapping_add(drop as u32);
        self.dropped += drop as u64;
    }

    /// Takes the data of a segment starting at sequence number `seq`; `acked` is the
    /// receiver's highest acknowledgement.
    pub(crate) fn accept(&mut self, seq: u32, payload: &[u8], acked: u32) -> Accept {
        let next = self.next();
        let off = seq.wrapping_sub(next) as i32;
        if off > 0 {
            return if self.done { Accept::Nothing } else { Accept::Ahead };
        }
        // Bytes of the segment before `next`: compare those still held.
        let behind = usize::try_from(-i64::from(off)).unwrap_or(usize::MAX);
        let overlap = behind.min(payload.len());
        let from_base = i64::from(seq.wrapping_sub(self.base) as i32);
        let skip = usize::try_from(-from_base).unwrap_or(0).min(overlap);
        // The segment's `skip` bytes before `base` end `-from_base - skip` bytes before it;
        // the last `dropped` bytes before it were inspected.
        if skip > 0 && ((-from_base) as u64) < self.dropped + skip as u64 {
            return Accept::Acknowledged;
        }
        if skip < overlap {
            let at = usize::try_from(from_base + skip as i64).unwrap_or(0);
            let held = self.buf.get(at..at + (overlap - skip));
            if held != Some(&payload[skip..overlap]) {
                return Accept::Differs;
            }
        }
        let new = &payload[overlap..];
        if new.is_empty() || self.done {
            return Accept::Nothing;
        }
        let take = new.len().min(usize::try_from(self.limit - self.inspected).unwrap_or(usize::MAX));
        if self.len + take > self.buf.len() {
            self.compact(acked);
            if self.len + take > self.buf.len() {
                return Accept::WindowFull;
            }
        }
        self.buf[self.len..self.len + take].copy_from_slice(&new[..take]);
        self.len += take;
        self.inspected += take as u64;
        Accept::New
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_repeats_and_gaps() {
        let mut d = Dir::new(16, 16);
        d.start(1000);
        assert_eq!(d.accept(1000, b"EHLO", 1000), Accept::New);
        assert_eq!(d.accept(1008, b"tail", 1000), Accept::Ahead, "a gap");
        assert_eq!(d.accept(1000, b"EHLO x", 1000), Accept::New, "a repetition that goes on");
        assert_eq!(d.unread(), b"EHLO x");
        assert_eq!(d.accept(1002, b"LO", 1000), Accept::Nothing);
        assert_eq!(d.accept(1000, b"GET ", 1000), Accept::Differs);
        assert_eq!(d.accept(1004, b" y", 1000), Accept::Differs);
        assert_eq!(
            d.accept(999, b"xEH", 1000),
            Accept::Nothing,
            "the byte before the stream is not compared"
        );
        // The depth: 16 bytes; the rest passes, the inspected part is still compared.
        assert_eq!(d.accept(1006, b"0123456789abcdef", 1000), Accept::New);
        assert!(d.at_limit());
        assert_eq!(d.next(), 1016);
        d.done = true;
        assert_eq!(d.accept(1016, b"anything", 1000), Accept::Nothing);
        assert_eq!(d.accept(1030, b"anything", 1000), Accept::Nothing);
        assert_eq!(d.accept(1010, b"45", 1000), Accept::Nothing);
        assert_eq!(d.accept(1010, b"XX", 1000), Accept::Differs);
        assert!(!d.delivered(1000) && d.delivered(1016) && d.delivered(1020));
    }

    #[test]
    fn an_unbounded_direction_keeps_what_is_not_acknowledged() {
        let mut d = Dir::new(8, u64::MAX);
        d.start(u32::MAX - 2);
        assert_eq!(d.accept(u32::MAX - 2, b"abcdef", u32::MAX - 2), Accept::New);
        d.consumed = 6;
        assert_eq!(d.accept(3, b"ghij", u32::MAX - 2), Accept::WindowFull, "nothing acknowledged yet");
        assert_eq!(d.accept(3, b"ghij", 1), Accept::New, "four acknowledged: room");
        assert_eq!(d.unread(), b"ghij");
        assert_eq!(
            d.accept(0, b"def", 1),
            Accept::Acknowledged,
            "acknowledged bytes dropped are not compared: refused"
        );
        assert_eq!(d.accept(1, b"fX", 1), Accept::Differs);
        assert_eq!(d.accept(u32::MAX - 4, b"ab", 1), Accept::Nothing, "before the stream");
    }
}
