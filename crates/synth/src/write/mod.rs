//! One writer per format. Each writes the records in the contract's own dialect and knows how a
//! record of its format is malformed for the pipeline's reader (docs/FORMATS.md):
//!
//! | format | a malformed record |
//! |---|---|
//! | delimited | a line with one field more than the header |
//! | json_lines | a line of JSON cut short |
//! | json_array | an element that is not an object |
//! | fixed_width | a data line shorter than the layout's last column start |
//! | hl7v2 | a message with a segment whose id is not a valid HL7 segment id |
//! | fhir_bundle | a bundle entry without a resource (NDJSON: a line that is no resource) |
//! | xml | a record whose value uses an undeclared entity |
//! | excel | none: every cell of a workbook reads |

use contracts::{Contract, Format};

use crate::out::Out;
use crate::record::{Columns, Kind, Record};
use crate::{Options, SynthError};

mod delimited;
mod excel;
mod fhir;
mod fixed;
mod hl7;
mod json;
mod node;
mod xml;

/// A format's writer: the file's start, one record at a time, the file's end.
pub(crate) trait FormatWriter {
    /// False for a format whose reader has no malformed records (workbooks).
    fn can_malform(&self) -> bool {
        true
    }

    /// Lines the reader deliberately skips (fixed-width header and trailer records).
    fn skipped(&self) -> u64 {
        0
    }

    fn begin(&mut self, _out: &mut Out<'_>) -> Result<(), SynthError> {
        Ok(())
    }

    /// Writes `rec` as `kind` says: as it is, malformed, or again (a duplicate of an earlier one).
    fn record(&mut self, out: &mut Out<'_>, rec: &Record, kind: Kind) -> Result<(), SynthError>;

    fn end(&mut self, _out: &mut Out<'_>) -> Result<(), SynthError> {
        Ok(())
    }
}

/// The writer of the contract's format.
pub(crate) fn writer_for<'c>(
    contract: &'c Contract,
    cols: &'c Columns,
    opts: &Options,
) -> Result<Box<dyn FormatWriter + 'c>, SynthError> {
    Ok(match &contract.format {
        Format::Delimited { delimiter, quote, header } => {
            Box::new(delimited::Delimited::new(*delimiter, *quote, header, contract, cols))
        }
        Format::JsonLines => Box::new(json::Json::new(false, contract, cols)?),
        Format::JsonArray => Box::new(json::Json::new(true, contract, cols)?),
        Format::FixedWidth { columns, header_lines, record_type } => {
            Box::new(fixed::Fixed::new(columns, *header_lines, record_type.as_ref(), contract, cols)?)
        }
        Format::Hl7v2 => Box::new(hl7::Hl7::new(cols)?),
        Format::FhirBundle { version, .. } => Box::new(fhir::Fhir::new(*version, cols, opts.fhir_ndjson)?),
        Format::Xml { record } => Box::new(xml::Xml::new(record, contract, cols, opts.seed)?),
        Format::Excel { sheet, sheet_index, header_row } => Box::new(excel::Excel::new(
            sheet.as_deref(),
            *sheet_index,
            *header_row,
            contract,
            cols,
            opts.rows,
        )?),
    })
}

/// A value for a source field the contract drops (it is in the file, the pipeline ignores it).
pub(crate) fn filler(rec: &Record, field: &str) -> String {
    format!(
        "{}-{}",
        field.chars().filter(char::is_ascii_alphanumeric).take(3).collect::<String>(),
        rec.index % 97
    )
}
