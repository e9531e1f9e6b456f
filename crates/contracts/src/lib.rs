//! Source contracts and canonical schemas: the data that drives the pipeline.
//!
//! A *canonical schema* (`config/canonical/<name>.toml`) lists the columns every source is mapped
//! onto, with their Parquet type, their *semantic type* (which carries the normalisation rule) and
//! whether they are required. A *source contract* (`config/sources/<source>.toml`) says which object
//! keys belong to a source, how its files are written (a closed [`Format`] enum) and how its fields
//! map onto a canonical schema. Both are validated on load with errors that name the file, the line
//! and what was expected, so a data engineer can fix a contract without reading code.
//!
//! Boundaries: plain data, parsing and validation only. This crate must not depend on AWS, on the
//! transform engine or on any columnar library; everything else depends on it.

mod canonical;
mod contract;
mod error;

pub use canonical::{CanonicalColumn, CanonicalSchema, Catalog, ParquetType, Semantic};
pub use contract::{
    Contract, DateFormat, DateItem, Format, Hl7Path, JsonPath, Limits, PathSeg, RecordType, Span,
    TextEncoding, XmlPath, XmlStep, FHIR_RESOURCES, MAX_EXPANDED_BYTES_DEFAULT, MAX_IN_MEMORY_BYTES_DEFAULT,
    MAX_RECORD_BYTES_DEFAULT,
};
pub use error::ContractError;
