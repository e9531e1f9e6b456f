//! `pii-matching`: finds the county person behind each bad record (a row missing an identity
//! field) and completes it. Blocking keys find candidates for a whole batch in one set-based
//! call to the `PersonIndex` port (PostgreSQL via sqlx, or in memory from a CSV/Parquet file);
//! rules from `config/matching.toml` score every candidate field by field and decide exact /
//! proposed / none, recording the rule or score that fired. The Lambda handler writes completed
//! rows into the dataset, proposals into `match_review`, and leaves the rest in quarantine.
//!
//! Boundaries: no transform or polars; AWS only through `layer`'s ports (plus Secrets Manager
//! for the database credentials). Library code logs ids and counts, never values.

pub mod compare;
pub mod deploy;
pub mod error;
pub mod evaluate;
pub mod handler;
pub mod index;
pub mod matcher;
pub mod measure;
pub mod model;
pub mod people;
pub mod pg;
pub mod review;
pub mod review_store;
pub mod reviews;
pub mod rows;
pub mod rules;
pub mod rules_store;
pub mod setup;
pub mod train;

pub use index::{IndexError, MemoryIndex, PersonIndex};
pub use matcher::{Decision, Matcher, Scored, Tier, Trace};
pub use model::{BlockingKey, BlockingKind, Person, Record};
pub use rules::Rules;
