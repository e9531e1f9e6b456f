//! The format readers, one module each, and the one place a contract's format picks its reader.
//!
//! Streaming (through `stream`): `delimited`, `json` (lines and arrays), `fixed_width`, `hl7`.
//! Documents (through `sink`): `xml` (streamed on one thread), `fhir` and `excel` (held in
//! memory up to the contract's `max_in_memory_bytes`).

mod delimited;
mod excel;
pub(crate) mod fhir;
mod fhir_xml;
mod fixed_width;
mod hl7;
pub(crate) mod json;
mod xml;

use contracts::Format;

use crate::job::Reader;

/// The reader of a format, holding what it needs of the format's settings.
pub(crate) fn reader_for(format: &Format) -> Box<dyn Reader + '_> {
    match format {
        Format::Delimited { delimiter, quote, header } => {
            Box::new(delimited::Delimited::new(*delimiter, *quote, header))
        }
        Format::JsonLines => Box::new(json::Json { array: false }),
        Format::JsonArray => Box::new(json::Json { array: true }),
        Format::FixedWidth { columns, header_lines, record_type } => {
            Box::new(fixed_width::FixedWidth::new(columns, record_type.as_ref(), *header_lines))
        }
        Format::Hl7v2 => Box::new(hl7::Hl7),
        Format::FhirBundle { version, .. } => Box::new(fhir::Fhir { version: *version }),
        Format::Xml { record } => Box::new(xml::Xml { record }),
        Format::Excel { sheet, sheet_index, header_row } => Box::new(excel::Excel {
            sheet: sheet.as_deref(),
            sheet_index: *sheet_index,
            header_row: *header_row,
        }),
    }
}
