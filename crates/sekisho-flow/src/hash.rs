//! The tables' hash: SipHash-1-3 (the keyed PRF `std` uses against hash flooding) under a
//! random per-process key, fed whole 64-bit words.
//!
//! `std`'s `DefaultHasher` is the same function but buffers every write byte by byte,
//! which cost ≈ 300 instructions per flow-key lookup; keys here are written as a fixed
//! sequence of integers, so the words go straight into the compression rounds (≈ 100).
//! The encoding is injective for a key type that always writes the same sequence of
//! integer widths, which [`FlowKey`](crate::FlowKey) does.

use std::hash::{BuildHasher, Hasher};

/// Builds [`SipHasher13`]s under one random key, drawn when the table is made.
#[derive(Clone, Debug)]
pub struct KeyedState {
    k0: u64,
    k1: u64,
}

impl KeyedState {
    /// A state with a fresh random key. The key comes from `std`'s `RandomState`, which
    /// the operating system's random source seeds.
    pub fn random() -> KeyedState {
        let s = std::collections::hash_map::RandomState::new();
        KeyedState { k0: s.hash_one(0x5e6b_6973_686f_u64), k1: s.hash_one(0x7365_6b69_7368_u64) }
    }

    /// A state with a fixed key (tests).
    pub const fn with_key(k0: u64, k1: u64) -> KeyedState {
        KeyedState { k0, k1 }
    }
}

impl Default for KeyedState {
    fn default() -> Self {
        KeyedState::random()
    }
}

impl BuildHasher for KeyedState {
    type Hasher = SipHasher13;

    #[inline]
    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13 {
            v0: self.k0 ^ 0x736f_6d65_7073_6575,
            v1: self.k1 ^ 0x646f_7261_6e64_6f6d,
            v2: self.k0 ^ 0x6c79_6765_6e65_7261,
            v3: self.k1 ^ 0x7465_6462_7974_6573,
            len: 0,
        }
    }
}

/// SipHash-1-3 over 64-bit words.
#[derive(Clone, Debug)]
pub struct SipHasher13 {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
    len: u64,
}

impl SipHasher13 {
    #[inline(always)]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13) ^ self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16) ^ self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21) ^ self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17) ^ self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    #[inline(always)]
    fn word(&mut self, m: u64) {
        self.v3 ^= m;
        self.round();
        self.v0 ^= m;
        self.len = self.len.wrapping_add(8);
    }
}

impl Hasher for SipHasher13 {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.word(u64::from_le_bytes(b));
        }
        // The true length, so that writes of different lengths never collide.
        self.len = self.len.wrapping_sub(8 * bytes.len().div_ceil(8) as u64).wrapping_add(bytes.len() as u64);
    }

    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.word(u64::from(v));
    }

    #[inline]
    fn write_u16(&mut self, v: u16) {
        self.word(u64::from(v));
    }

    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.word(u64::from(v));
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.word(v);
    }

    #[inline]
    fn write_u128(&mut self, v: u128) {
        self.word(v as u64);
        self.word((v >> 64) as u64);
    }

    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.word(v as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        let mut s = self.clone();
        let b = s.len << 56;
        s.v3 ^= b;
        s.round();
        s.v0 ^= b;
        s.v2 ^= 0xff;
        s.round();
        s.round();
        s.round();
        s.v0 ^ s.v1 ^ s.v2 ^ s.v3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_siphash_1_3_on_whole_words() {
        // std's DefaultHasher is SipHash-1-3 with keys (0, 0) when built by
        // `DefaultHasher::new()`; on a byte string that is a whole number of words, both
        // process the same blocks.
        let mut reference = std::hash::DefaultHasher::new();
        let mut ours = KeyedState::with_key(0, 0).build_hasher();
        let words = [0x0123_4567_89ab_cdef_u64, 42, u64::MAX];
        for w in words {
            reference.write(&w.to_le_bytes());
            ours.write_u64(w);
        }
        assert_eq!(ours.finish(), reference.finish());
    }

    #[test]
    fn different_keys_give_different_hashes() {
        let a = KeyedState::random();
        let b = KeyedState::random();
        assert_ne!(a.hash_one(7u64), b.hash_one(7u64));
        assert_eq!(a.hash_one(7u64), a.hash_one(7u64));
    }
}
