//! A fast hasher for keys taken from the job's own data, hashed once per value or run where
//! std's SipHash (built to resist chosen keys from an adversary) costs more than the work
//! around it.

use std::hash::Hasher;

/// FNV-1a over a key's bytes, a multiplicative mix for 8-byte keys.
pub(crate) struct Mix(u64);

impl Default for Mix {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, key: u64) {
        self.0 = (key ^ (key >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        self.0 ^= self.0 >> 32;
    }
}
