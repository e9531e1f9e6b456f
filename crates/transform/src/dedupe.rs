//! Exact-duplicate detection in bounded memory: the first occurrence of a record wins.
//!
//! Each record is a 128-bit hash. Up to `in_memory` hashes live in a hash set (17 bytes a
//! bucket); past that the set is sorted into a *run* in an anonymous temporary file (unlinked at
//! creation, so nothing outlives the process) and emptied. A fixed-size blocked Bloom filter over
//! the spilled hashes answers "certainly new" for almost every record, so a run is read (one
//! 4 KiB block found through an in-memory sparse index) only on a Bloom hit. Runs are merged into
//! one when there are `MAX_RUNS` of them. Memory is therefore the set, the filter and one index
//! entry per 256 spilled hashes: flat in the file's size. A file that never fills the set never
//! touches the disk.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;

/// Hashes kept in memory before the first spill: just under a power-of-two table (2^22 buckets,
/// 68 MiB), so the set never grows past it.
pub(crate) const IN_MEMORY_DEFAULT: usize = (1 << 22) / 8 * 7;

/// Spilled hashes per block of a run (one index entry each): 4 KiB.
const BLOCK_KEYS: usize = 256;
/// A spill writes the key space in this many slices (by the top bits of the hash).
const SPILL_SLICES: usize = 1 << SLICE_BITS;
const SLICE_BITS: u32 = 4;
/// Runs kept before they are merged into one.
const MAX_RUNS: usize = 8;
/// The Bloom filter's largest size (bytes); smaller sets get a proportionally smaller one.
const BLOOM_MAX_BYTES: usize = 32 << 20;

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

type MemSet = HashSet<u128, BuildHasherDefault<IdHasher>>;

/// The record hashes seen so far in one file.
pub(crate) struct Seen {
    mem: MemSet,
    in_memory: usize,
    spilled: Option<Spilled>,
    len: u64,
}

impl Seen {
    /// A set that spills to the temporary directory past `in_memory` hashes (at least 1).
    pub fn new(in_memory: usize) -> Self {
        Self { mem: MemSet::default(), in_memory: in_memory.max(1), spilled: None, len: 0 }
    }

    /// Adds `key`; true when it was not there before.
    pub fn insert(&mut self, key: u128) -> io::Result<bool> {
        if self.mem.contains(&key) {
            return Ok(false);
        }
        if let Some(s) = &mut self.spilled {
            if s.contains(key)? {
                return Ok(false);
            }
        }
        if self.mem.len() >= self.in_memory {
            self.spill()?;
        }
        self.mem.insert(key);
        self.len += 1;
        Ok(true)
    }

    /// Distinct hashes seen.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The error of a set that could not spill.
    pub fn spill_error(e: io::Error) -> crate::error::TransformError {
        crate::error::TransformError::Write(format!(
            "the duplicate check could not spill its hashes to the temporary directory: {e}"
        ))
    }

    /// Moves the in-memory hashes into a new sorted run (the set keeps its capacity). The run is
    /// written in `SPILL_SLICES` slices of the key space, lowest first, each gathered and sorted
    /// on its own: the spill needs a sixteenth of the set's hashes beside it, not a copy of all.
    fn spill(&mut self) -> io::Result<()> {
        let in_memory = self.in_memory;
        let s = self.spilled.get_or_insert_with(|| Spilled::new(in_memory));
        let mut slice = Vec::with_capacity(self.mem.len() / SPILL_SLICES * 9 / 8);
        let mut run = RunWriter::new()?;
        for part in 0..SPILL_SLICES as u128 {
            slice.clear();
            slice.extend(self.mem.iter().copied().filter(|&k| k >> (128 - SLICE_BITS) == part));
            slice.sort_unstable();
            for &k in &slice {
                s.bloom.add(k);
                run.push(k)?;
            }
        }
        drop(slice);
        s.runs.push(run.finish()?);
        self.mem.clear();
        if s.runs.len() >= MAX_RUNS {
            let merged = Run::merge(&s.runs)?;
            s.runs = vec![merged];
        }
        Ok(())
    }
}

/// The hashes on disk: a Bloom filter over all of them and the sorted runs.
struct Spilled {
    bloom: Bloom,
    runs: Vec<Run>,
    block: Vec<u8>,
}

impl Spilled {
    fn new(in_memory: usize) -> Self {
        Self { bloom: Bloom::new(in_memory), runs: Vec::new(), block: vec![0; BLOCK_KEYS * 16] }
    }

    fn contains(&mut self, key: u128) -> io::Result<bool> {
        if !self.bloom.maybe(key) {
            return Ok(false);
        }
        for run in &self.runs {
            if run.contains(key, &mut self.block)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A blocked Bloom filter: seven bits of one 512-bit block per key (one cache line a lookup).
struct Bloom {
    blocks: Vec<[u64; 8]>,
    mask: u64,
}

impl Bloom {
    /// About 64 bits per in-memory hash, up to `BLOOM_MAX_BYTES`.
    fn new(in_memory: usize) -> Self {
        let n = in_memory.saturating_mul(8).clamp(64, BLOOM_MAX_BYTES).next_power_of_two() / 64;
        Self { blocks: vec![[0; 8]; n], mask: n as u64 - 1 }
    }

    /// The block and the seven bit positions (9 bits each) of a key.
    fn probe(&self, key: u128) -> (usize, impl Iterator<Item = usize>) {
        let block = ((key >> 64) as u64 & self.mask) as usize;
        let bits = key as u64;
        (block, (0..7).map(move |i| ((bits >> (9 * i)) & 511) as usize))
    }

    fn add(&mut self, key: u128) {
        let (b, bits) = self.probe(key);
        let block = &mut self.blocks[b];
        for p in bits {
            block[p >> 6] |= 1 << (p & 63);
        }
    }

    fn maybe(&self, key: u128) -> bool {
        let (b, bits) = self.probe(key);
        let block = &self.blocks[b];
        bits.into_iter().all(|p| block[p >> 6] & (1 << (p & 63)) != 0)
    }
}

/// One sorted run of hashes (16 bytes each, little-endian) and the first hash of every block.
struct Run {
    file: File,
    index: Vec<u128>,
    keys: u64,
}

/// Writes one run: sorted hashes pushed in order.
struct RunWriter {
    out: BufWriter<File>,
    index: Vec<u128>,
    keys: u64,
}

impl RunWriter {
    /// A new anonymous temporary file.
    fn new() -> io::Result<Self> {
        Ok(Self { out: BufWriter::with_capacity(1 << 16, tempfile::tempfile()?), index: Vec::new(), keys: 0 })
    }

    fn push(&mut self, k: u128) -> io::Result<()> {
        if self.keys.is_multiple_of(BLOCK_KEYS as u64) {
            self.index.push(k);
        }
        self.keys += 1;
        self.out.write_all(&k.to_le_bytes())
    }

    fn finish(self) -> io::Result<Run> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        Ok(Run { file, index: self.index, keys: self.keys })
    }
}

impl Run {
    /// True when `key` is in the run: the index names the one block it could be in.
    fn contains(&self, key: u128, buf: &mut [u8]) -> io::Result<bool> {
        let block = self.index.partition_point(|&first| first <= key);
        if block == 0 {
            return Ok(false);
        }
        let start = (block - 1) as u64 * BLOCK_KEYS as u64;
        let n = (self.keys - start).min(BLOCK_KEYS as u64) as usize;
        let buf = &mut buf[..n * 16];
        self.file.read_exact_at(buf, start * 16)?;
        let at = |i: usize| u128::from_le_bytes(buf[i * 16..i * 16 + 16].try_into().expect("16 bytes"));
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match at(mid).cmp(&key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(true),
            }
        }
        Ok(false)
    }

    /// One run holding every hash of `runs` (their hashes are disjoint), read sequentially.
    fn merge(runs: &[Run]) -> io::Result<Self> {
        let mut readers: Vec<RunReader<'_>> = runs.iter().map(RunReader::new).collect();
        let mut heap = BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            if let Some(k) = r.next_key()? {
                heap.push(Reverse((k, i)));
            }
        }
        let mut out = RunWriter::new()?;
        while let Some(Reverse((k, i))) = heap.pop() {
            out.push(k)?;
            if let Some(next) = readers[i].next_key()? {
                heap.push(Reverse((next, i)));
            }
        }
        out.finish()
    }
}

/// Reads one run front to back in 64 KiB pieces.
struct RunReader<'r> {
    run: &'r Run,
    buf: Vec<u8>,
    at: usize,
    next: u64,
}

impl<'r> RunReader<'r> {
    fn new(run: &'r Run) -> Self {
        Self { run, buf: Vec::new(), at: 0, next: 0 }
    }

    fn next_key(&mut self) -> io::Result<Option<u128>> {
        if self.at == self.buf.len() {
            let left = self.run.keys - self.next;
            if left == 0 {
                return Ok(None);
            }
            let n = left.min(4096) as usize;
            self.buf.resize(n * 16, 0);
            self.run.file.read_exact_at(&mut self.buf, self.next * 16)?;
            self.next += n as u64;
            self.at = 0;
        }
        let k = u128::from_le_bytes(self.buf[self.at..self.at + 16].try_into().expect("16 bytes"));
        self.at += 16;
        Ok(Some(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A splitmix-style generator: uniform 128-bit keys like the record hashes.
    fn keys(seed: u64, n: usize) -> Vec<u128> {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        (0..n).map(|_| (u128::from(next()) << 64) | u128::from(next())).collect()
    }

    /// The spilling set answers exactly like an unbounded one, through spills and merges.
    #[test]
    fn spilling_set_agrees_with_a_hash_set() {
        let distinct = keys(7, 20_000);
        // Every key twice, the repeats spread over the whole stream (most after several spills).
        let mut stream: Vec<u128> = distinct.clone();
        stream.extend(distinct.iter().step_by(3));
        stream.extend(distinct.iter().rev().step_by(2));
        let mut order = keys(8, stream.len());
        let mut paired: Vec<(u128, u128)> = order.drain(..).zip(stream).collect();
        paired.sort_unstable();
        for in_memory in [64, 1000, 50_000] {
            let mut seen = Seen::new(in_memory);
            let mut reference = HashSet::new();
            for &(_, k) in &paired {
                assert_eq!(seen.insert(k).unwrap(), reference.insert(k), "in_memory {in_memory}");
            }
            assert_eq!(seen.len(), distinct.len() as u64);
            let runs = seen.spilled.as_ref().map_or(0, |s| s.runs.len());
            assert!(runs < MAX_RUNS, "runs are merged: {runs}");
            if in_memory >= 50_000 {
                assert!(seen.spilled.is_none(), "a set that fits never touches the disk");
            }
        }
    }

    #[test]
    fn the_bloom_filter_has_no_false_negatives_and_few_false_positives() {
        // 8 KiB for 6,000 keys: the 10.9 bits a key the full-size filter has at 25M hashes.
        let mut bloom = Bloom::new(1_000);
        let inside = keys(1, 6_000);
        for &k in &inside {
            bloom.add(k);
        }
        assert!(inside.iter().all(|&k| bloom.maybe(k)));
        let false_hits = keys(2, 100_000).into_iter().filter(|&k| bloom.maybe(k)).count();
        assert!(false_hits < 3_000, "{false_hits} false positives in 100,000");
    }
}
