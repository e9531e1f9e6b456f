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

/// Finds the persons that share at least one of `keys` (one call per batch: set-based). A
/// person may come back more than once (found by two keys); callers deduplicate by id.
#[async_trait]
pub trait PersonIndex: Send + Sync {
    async fn candidates(&self, keys: &[BlockingKey]) -> Result<Vec<Person>, IndexError>;
}

#[async_trait]
impl<T: PersonIndex + ?Sized> PersonIndex for Arc<T> {
    async fn candidates(&self, keys: &[BlockingKey]) -> Result<Vec<Person>, IndexError> {
        (**self).candidates(keys).await
    }
}

/// Every person in memory, with one sorted index of (key hash, person) over every blocking key
/// kind: 16 bytes per key instead of a map entry and a list per key (16 kinds of 1,000,000
/// persons fit in ~260 MB). A hash collision can only add a candidate; the matcher attaches a
/// person to a record only when their own keys agree.
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
    async fn candidates(&self, keys: &[BlockingKey]) -> Result<Vec<Person>, IndexError> {
        let mut idx: Vec<u32> = Vec::new();
        for k in keys {
            let h = key_hash(k);
            let from = self.by_key.partition_point(|e| e.0 < h);
            idx.extend(self.by_key[from..].iter().take_while(|e| e.0 == h).map(|e| e.1));
        }
        idx.sort_unstable();
        idx.dedup();
        Ok(idx.into_iter().map(|i| self.persons[i as usize].clone()).collect())
    }
}
