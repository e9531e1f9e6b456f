//! The `PersonIndex` port (find candidate persons for a set of blocking keys in one call) and its
//! in-memory adapter, loaded from a CSV or Parquet person file through the same reader as
//! `lake people load` (`people`: mapping, normalisation, rejected rows).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

pub use crate::error::IndexError;
use crate::model::{BlockingKey, BlockingKind, Person};
use crate::people::{self, PeopleMapping};

/// Finds the persons that share at least one of `keys` (one call per batch: set-based), each
/// once, with the keys each one holds: the matcher attaches a person to exactly the records
/// that asked for one of its keys, and never hashes a person's values again.
///
/// With `max_persons`, a *wide* key, one that more than `max_persons` persons hold, finds
/// nobody (the matcher passes `blocking.max_candidates`: such a key cannot single out a
/// record's person); `None` finds every holder of every key (the `--by-key` table, training).
#[async_trait]
pub trait PersonIndex: Send + Sync {
    async fn candidates(&self, keys: &[BlockingKey], max_persons: Option<usize>)
        -> Result<Found, IndexError>;
}

#[async_trait]
impl<T: PersonIndex + ?Sized> PersonIndex for Arc<T> {
    async fn candidates(
        &self,
        keys: &[BlockingKey],
        max_persons: Option<usize>,
    ) -> Result<Found, IndexError> {
        (**self).candidates(keys, max_persons).await
    }
}

/// What [`PersonIndex::candidates`] found: every person once, and which asked keys each holds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Found {
    pub persons: Vec<Person>,
    /// `(k, p)`: `keys[k]` is a key of `persons[p]`; a person holding two of the keys appears
    /// twice. In no particular order.
    pub hits: Vec<(u32, u32)>,
}

impl Found {
    /// Without the hits of keys that more than `max_persons` of the found persons hold, and
    /// without the persons left with no hit. An index that leaves wide keys out before reading
    /// them (PostgreSQL, from its `wide_key` table) applies this to what it read, so that a key
    /// the table does not list yet finds nobody all the same.
    pub fn without_wide(mut self, max_persons: usize) -> Self {
        // key numbers index the asked keys: a vector, not a map
        let keys = self.hits.iter().map(|&(k, _)| k as usize + 1).max().unwrap_or(0);
        let mut per_key = vec![0usize; keys];
        for &(k, _) in &self.hits {
            per_key[k as usize] += 1;
        }
        if per_key.iter().all(|&n| n <= max_persons) {
            return self;
        }
        self.hits.retain(|&(k, _)| per_key[k as usize] <= max_persons);
        let mut to: Vec<Option<u32>> = vec![None; self.persons.len()];
        for &(_, p) in &self.hits {
            to[p as usize] = Some(0);
        }
        let mut kept = Vec::with_capacity(self.persons.len());
        for (slot, p) in to.iter_mut().zip(self.persons) {
            if slot.is_some() {
                *slot = Some(u32::try_from(kept.len()).unwrap_or(u32::MAX));
                kept.push(p);
            }
        }
        self.persons = kept;
        for (_, p) in &mut self.hits {
            *p = to[*p as usize].unwrap_or(u32::MAX);
        }
        self
    }
}

/// Every person in memory, with one sorted index of (key hash, person) over every blocking key
/// kind: 16 bytes per key instead of a map entry and a list per key (16 kinds of 1,000,000
/// persons fit in ~260 MB). A 64-bit hash collision (odds of about 1e-9 per batch at a million
/// persons) could only add a candidate, scored on its values like any other.
#[derive(Debug, Default)]
pub struct MemoryIndex {
    persons: Vec<Person>,
    by_key: Vec<(u64, u32)>,
    by_id: HashMap<i64, u32>,
}

fn key_hash(k: &BlockingKey) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x1dea).hash_one(k)
}

impl MemoryIndex {
    pub fn new(persons: Vec<Person>) -> Self {
        let mut by_key = Vec::with_capacity(persons.len() * BlockingKind::ALL.len());
        let mut by_id = HashMap::with_capacity(persons.len());
        for (i, p) in persons.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            by_id.insert(p.person_id, i);
            for k in BlockingKind::ALL {
                if let Some(key) = BlockingKey::of_person(k, p) {
                    by_key.push((key_hash(&key), i));
                }
            }
        }
        by_key.sort_unstable();
        by_key.shrink_to_fit();
        Self { persons, by_key, by_id }
    }

    pub fn len(&self) -> usize {
        self.persons.len()
    }

    pub fn is_empty(&self) -> bool {
        self.persons.is_empty()
    }

    /// Every person, in load order.
    pub fn persons(&self) -> &[Person] {
        &self.persons
    }

    pub fn person(&self, id: i64) -> Option<&Person> {
        self.by_id.get(&id).map(|&i| &self.persons[i as usize])
    }

    /// Loads a person file with the index's own column names (`.csv` or `.parquet`).
    pub fn load(path: &Path) -> Result<Self, IndexError> {
        Self::load_mapped(path, &PeopleMapping::identity())
    }

    /// Loads a person export through `mapping`, as `lake people load` reads it: every value
    /// normalised; any row that cannot be loaded (by line or row number and reason) fails the load.
    pub fn load_mapped(path: &Path, mapping: &PeopleMapping) -> Result<Self, IndexError> {
        let file = people::read_export(path, mapping)?;
        file.refuse_rejected(&path.display().to_string())?;
        Ok(Self::new(file.persons))
    }
}

#[async_trait]
impl PersonIndex for MemoryIndex {
    async fn candidates(
        &self,
        keys: &[BlockingKey],
        max_persons: Option<usize>,
    ) -> Result<Found, IndexError> {
        let mut local: HashMap<u32, u32> = HashMap::new();
        let mut found = Found::default();
        for (k, key) in keys.iter().enumerate() {
            let h = key_hash(key);
            let from = self.by_key.partition_point(|e| e.0 < h);
            let to = from + self.by_key[from..].partition_point(|e| e.0 == h);
            if max_persons.is_some_and(|max| to - from > max) {
                continue; // a wide key
            }
            for e in &self.by_key[from..to] {
                let p = *local.entry(e.1).or_insert_with(|| {
                    found.persons.push(self.persons[e.1 as usize].clone());
                    u32::try_from(found.persons.len() - 1).unwrap_or(u32::MAX)
                });
                found.hits.push((u32::try_from(k).unwrap_or(u32::MAX), p));
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: i64) -> Person {
        Person { person_id: id, ..Person::default() }
    }

    #[test]
    fn without_wide_drops_the_hits_of_keys_held_by_too_many_and_the_persons_left_without_one() {
        // key 0: persons 10, 20, 30; key 1: 30; key 2: 20
        let found = Found {
            persons: vec![person(10), person(20), person(30)],
            hits: vec![(0, 0), (0, 1), (1, 2), (0, 2), (2, 1)],
        };
        assert_eq!(found.clone().without_wide(3), found, "no key above 3: unchanged");
        let narrow = found.without_wide(2);
        let named: Vec<(u32, i64)> =
            narrow.hits.iter().map(|&(k, p)| (k, narrow.persons[p as usize].person_id)).collect();
        assert_eq!(named, vec![(1, 30), (2, 20)]);
        assert_eq!(narrow.persons.iter().map(|p| p.person_id).collect::<Vec<_>>(), vec![20, 30]);
    }
}
