//! Source contracts and canonical schemas: the data that drives the pipeline.
//!
//! A *canonical schema* (`config/canonical/<name>.toml`) lists the columns every source is mapped
//! onto, with their Parquet type, their *semantic type* (which carries the normalisation rule) and
//! whether they are required. A *source contract* (`config/sources/<source>.toml`) says which object
//! keys belong to a source, how its files are written (a closed [`Format`] enum) and how its fields
//! map onto a canonical schema. Both are validated on load with errors that name the file, the line
//! and what was expected, so a data engineer can fix a contract without reading code.
//!
//! Layout, one module per noun, each validating itself: `canonical` (schemas and the catalog),
//! `contract` (the contract's TOML shape, load/publish, and `validate` composing the rest),
//! `keys` (source id, object key prefixes), `limits` (size caps on hostile input), `format`
//! (formats, their options, encodings and the work-queue [`FormatFamily`]), `field_path` (JSON,
//! HL7 v2 and XML field paths), `fhir_path` (the FHIRPath subset and FHIR versions), `mapping`
//! ([fields], `drop`, [constants], [lists] against the format and the schema), `dates` (date
//! formats and the [dates] table), `values` (what a value that does not fit its column becomes:
//! [values]), `cadence` (how often a source sends), `error` (located errors).
//!
//! Boundaries: plain data, parsing and validation only. This crate must not depend on AWS, on the
//! transform engine or on any columnar library; everything else depends on it.

mod cadence;
mod canonical;
mod contract;
mod dates;
mod error;
mod fhir_path;
mod field_path;
mod format;
mod keys;
mod limits;
mod mapping;
mod values;

pub use cadence::{Cadence, CadenceUnit};
pub use canonical::{CanonicalColumn, CanonicalSchema, Catalog, ParquetType, Semantic};
pub use contract::Contract;
pub use dates::{DateFormat, DateItem};
pub use error::ContractError;
pub use fhir_path::{FhirPath, FhirStep, FhirVersion, FHIR_RESOURCES};
pub use field_path::{Hl7Path, Hl7Rep, JsonPath, PathSeg, XmlPath, XmlStep};
pub use format::{FhirExport, Format, FormatFamily, RecordType, Span, TextEncoding};
pub use limits::{
    Limits, MAX_DISTINCT_RECORDS_DEFAULT, MAX_EXPANDED_BYTES_DEFAULT, MAX_IN_MEMORY_BYTES_DEFAULT,
    MAX_RECORD_BYTES_DEFAULT,
};
pub use values::{NonScalar, PartialDates, ValueRules};
