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
#[async_trait]
pub trait PersonIndex: Send + Sync {
    async fn candidates(&self, keys: &[BlockingKey]) -> Result<Found, IndexError>;
}

#[async_trait]
impl<T: PersonIndex + ?Sized> PersonIndex for Arc<T> {
    async fn candidates(&self, keys: &[BlockingKey]) -> Result<Found, IndexError> {
        (**self).candidates(keys).await
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
    async fn candidates(&self, keys: &[BlockingKey]) -> Result<Found, IndexError> {
        let mut local: HashMap<u32, u32> = HashMap::new();
        let mut found = Found::default();
        for (k, key) in keys.iter().enumerate() {
            let h = key_hash(key);
            let from = self.by_key.partition_point(|e| e.0 < h);
            for e in self.by_key[from..].iter().take_while(|e| e.0 == h) {
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
