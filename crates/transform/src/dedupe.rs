//! Exact-duplicate detection: a set of 128-bit record hashes (16 bytes per distinct record);
//! the first occurrence of a record wins.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// The keys are already uniform hashes: use their low bits as they are.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

/// The record hashes seen so far in one file.
pub(crate) type Seen = HashSet<u128, BuildHasherDefault<IdHasher>>;
