//! An xlsx workbook (rust_xlsxwriter): the data on the contract's sheet (by name, after a
//! `Notes` sheet; or at its index), a title above the header when the header row is not the
//! first, one row per record. Dates are date cells (the visit's with its time), charges
//! numbers, the rest text; a field left out is an empty cell; columns the contract drops are
//! there too. A workbook has no malformed records (every cell reads), and its creation date is
//! fixed so the same seed gives the same bytes.

use chrono::{Datelike, Timelike};
use contracts::Contract;
use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format, Workbook, XlsxError};

use crate::out::Out;
use crate::record::{Columns, Kind, Record, Val};
use crate::write::{filler, FormatWriter};
use crate::SynthError;

/// xlsx rows per sheet.
const MAX_ROWS: u64 = 1_048_576;

pub(crate) struct Excel<'c> {
    wb: Workbook,
    sheet: usize,
    /// The row the next record goes to (0-based).
    row: u32,
    /// Per header column: the mapped column's number, or a dropped field's name.
    header: Vec<(Option<usize>, String)>,
    cols: &'c Columns,
    date: Format,
    datetime: Format,
}

fn xl(e: XlsxError) -> SynthError {
    SynthError::Io(std::io::Error::other(format!("xlsx: {e}")))
}

impl<'c> Excel<'c> {
    pub fn new(
        sheet: Option<&str>,
        sheet_index: Option<usize>,
        header_row: usize,
        contract: &'c Contract,
        cols: &'c Columns,
        rows: u64,
    ) -> Result<Self, SynthError> {
        if header_row as u64 + rows > MAX_ROWS {
            return Err(SynthError::Options(format!(
                "an xlsx sheet holds {MAX_ROWS} rows: {rows} records under header row {header_row} do not fit"
            )));
        }
        let mut wb = Workbook::new();
        wb.set_properties(
            &DocProperties::new()
                .set_title("Synthetic visits (no real people)")
                .set_creation_datetime(&ExcelDateTime::from_ymd(2026, 1, 1).map_err(xl)?),
        );
        let names: Vec<String> = match (sheet, sheet_index) {
            (Some(name), _) if name != "Notes" => vec!["Notes".into(), name.into()],
            (Some(name), _) => vec![name.into()],
            (None, Some(i)) => (1..=i).map(|n| format!("Sheet{n}")).collect(),
            (None, None) => vec!["Sheet1".into()],
        };
        for n in &names {
            wb.add_worksheet().set_name(n.as_str()).map_err(xl)?;
        }
        let data = names.len() - 1;
        if data > 0 {
            wb.worksheet_from_index(0)
                .map_err(xl)?
                .write_string(0, 0, "Synthetic workbook: no real people")
                .map_err(xl)?;
        }
        let mut header: Vec<(Option<usize>, String)> =
            cols.cols.iter().enumerate().map(|(k, c)| (Some(k), c.path.clone())).collect();
        header.extend(contract.drop.iter().map(|d| (None, d.clone())));
        let ws = wb.worksheet_from_index(data).map_err(xl)?;
        if header_row > 1 {
            ws.write_string(0, 0, "Synthetic visit export").map_err(xl)?;
        }
        for (c, (_, name)) in header.iter().enumerate() {
            ws.write_string(header_row as u32 - 1, c as u16, name.as_str()).map_err(xl)?;
        }
        Ok(Self {
            wb,
            sheet: data,
            row: header_row as u32,
            header,
            cols,
            date: Format::new().set_num_format("yyyy-mm-dd"),
            datetime: Format::new().set_num_format("yyyy-mm-dd hh:mm"),
        })
    }
}

fn excel_date(at: chrono::NaiveDateTime) -> Result<ExcelDateTime, XlsxError> {
    ExcelDateTime::from_ymd(at.year() as u16, at.month() as u8, at.day() as u8)?.and_hms(
        at.hour() as u16,
        at.minute() as u8,
        at.second(),
    )
}

impl FormatWriter for Excel<'_> {
    fn can_malform(&self) -> bool {
        false
    }

    fn record(&mut self, _out: &mut Out<'_>, rec: &Record, _kind: Kind) -> Result<(), SynthError> {
        let (row, cols) = (self.row, self.cols);
        let ws = self.wb.worksheet_from_index(self.sheet).map_err(xl)?;
        for (c, (slot, name)) in self.header.iter().enumerate() {
            let c = c as u16;
            let Some(k) = slot else {
                ws.write_string(row, c, filler(rec, name)).map_err(xl)?;
                continue;
            };
            match &rec.vals[*k] {
                None => {}
                Some(Val::Date { at, time }) => {
                    let f = if *time { &self.datetime } else { &self.date };
                    ws.write_datetime_with_format(row, c, &excel_date(*at).map_err(xl)?, f).map_err(xl)?;
                }
                Some(Val::Money(x)) => {
                    ws.write_number(row, c, *x).map_err(xl)?;
                }
                Some(_) => {
                    ws.write_string(row, c, rec.text(cols, *k).unwrap_or_default()).map_err(xl)?;
                }
            }
        }
        self.row += 1;
        Ok(())
    }

    fn end(&mut self, out: &mut Out<'_>) -> Result<(), SynthError> {
        let bytes = self.wb.save_to_buffer().map_err(xl)?;
        Ok(out.raw(&bytes)?)
    }
}
