//! The writer: batches of normalised rows in, good and bad Parquet (snappy) and malformed JSON
//! lines out, in file order whatever order the batches arrive in. Every reader ends here.

use std::collections::BTreeMap;
use std::io::Write;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::TransformError;
use crate::outcome::{Malformed, Outputs, ValueIssue};
use crate::plan::Plan;

/// The rows of one stretch of the file, numbered by `seq` so the writer keeps file order.
pub(crate) struct Batch {
    pub seq: u64,
    pub good: Option<RecordBatch>,
    pub bad: Option<RecordBatch>,
    pub malformed: Vec<Malformed>,
    /// Bad rows per required column of the plan (in column order) missing in them.
    pub bad_by_field: Vec<u64>,
    pub ignored: BTreeMap<usize, u64>,
    /// Refused values per column and reason: `[column * ValueIssue::ALL.len() + issue]`.
    pub refused: Vec<u64>,
    pub blank: u64,
    pub skipped: u64,
}

/// Counts of refused values, per column of the plan and reason.
pub(crate) fn refused_slots(plan: &Plan) -> Vec<u64> {
    vec![0; plan.cols.len() * ValueIssue::ALL.len()]
}

/// Adds a row's refused values to `slots`.
#[inline]
pub(crate) fn count_refused(slots: &mut [u64], issues: &[(usize, ValueIssue)]) {
    for &(col, why) in issues {
        slots[col * ValueIssue::ALL.len() + why.index()] += 1;
    }
}

/// What the writer wrote, in counts.
pub(crate) struct Written {
    pub good: u64,
    pub bad: u64,
    pub malformed: u64,
    pub blank: u64,
    pub skipped: u64,
    pub bad_by_field: Vec<u64>,
    pub ignored: BTreeMap<usize, u64>,
    pub refused: Vec<u64>,
}

impl Written {
    /// Refused values as `<column>: <reason>` -> count (none left out).
    pub fn refused_values(&self, plan: &Plan) -> BTreeMap<String, u64> {
        let n = ValueIssue::ALL.len();
        let mut out = BTreeMap::new();
        for (k, &count) in self.refused.iter().enumerate().filter(|(_, c)| **c > 0) {
            let (col, why) = (&plan.cols[k / n].name, ValueIssue::ALL[k % n]);
            out.insert(format!("{col}: {}", why.reason()), count);
        }
        out
    }

    /// Bad rows per missing required column, by column name (columns with none left out).
    pub fn bad_by_field(&self, plan: &Plan) -> BTreeMap<String, u64> {
        plan.cols
            .iter()
            .filter(|c| c.required)
            .zip(&self.bad_by_field)
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| (c.name.clone(), *n))
            .collect()
    }
}

fn properties(row_group_rows: usize) -> WriterProperties {
    // Dictionary encoding only pays for columns with few distinct values; for identifiers it is
    // built, overflows and is thrown away, costing a third of the writer's time.
    let low_cardinality = ["source_system", "source_file", "sex", "state", "city", "facility"];
    let mut b = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_size(row_group_rows)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_created_by("county-lake transform".into());
    for c in low_cardinality {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c), true);
    }
    b.build()
}

fn pq(e: parquet::errors::ParquetError) -> TransformError {
    TransformError::Write(e.to_string())
}

fn write_error(e: impl std::fmt::Display) -> TransformError {
    TransformError::Write(e.to_string())
}

/// The open outputs of one run and the counts so far.
struct Files<'a> {
    good: ArrowWriter<&'a mut (dyn Write + Send)>,
    bad: ArrowWriter<&'a mut (dyn Write + Send)>,
    malformed: &'a mut (dyn Write + Send),
    w: Written,
}

impl Files<'_> {
    fn write(&mut self, d: Batch) -> Result<(), TransformError> {
        let w = &mut self.w;
        if let Some(b) = d.good {
            w.good += b.num_rows() as u64;
            self.good.write(&b).map_err(pq)?;
        }
        if let Some(b) = d.bad {
            w.bad += b.num_rows() as u64;
            self.bad.write(&b).map_err(pq)?;
        }
        for m in &d.malformed {
            let line = serde_json::to_string(m).map_err(write_error)?;
            writeln!(self.malformed, "{line}").map_err(write_error)?;
        }
        w.malformed += d.malformed.len() as u64;
        w.blank += d.blank;
        w.skipped += d.skipped;
        for (a, b) in w.bad_by_field.iter_mut().zip(&d.bad_by_field) {
            *a += b;
        }
        for (k, n) in d.ignored {
            *w.ignored.entry(k).or_default() += n;
        }
        for (a, b) in w.refused.iter_mut().zip(&d.refused) {
            *a += b;
        }
        Ok(())
    }
}

/// Writes every batch received on `rx` in `seq` order, then closes the outputs.
pub(crate) fn write_all(
    plan: &Plan,
    rx: crossbeam_channel::Receiver<Batch>,
    out: Outputs<'_>,
    row_group_rows: usize,
) -> Result<Written, TransformError> {
    let good = ArrowWriter::try_new(out.good, plan.good_schema.clone(), Some(properties(row_group_rows)))
        .map_err(pq)?;
    let bad = ArrowWriter::try_new(out.bad, plan.bad_schema.clone(), Some(properties(row_group_rows)))
        .map_err(pq)?;
    let mut files = Files {
        good,
        bad,
        malformed: out.malformed,
        w: Written {
            good: 0,
            bad: 0,
            malformed: 0,
            blank: 0,
            skipped: 0,
            bad_by_field: vec![0; plan.cols.iter().filter(|c| c.required).count()],
            ignored: BTreeMap::new(),
            refused: refused_slots(plan),
        },
    };
    let mut pending: BTreeMap<u64, Batch> = BTreeMap::new();
    let mut next = 0u64;
    for d in rx {
        pending.insert(d.seq, d);
        while let Some(d) = pending.remove(&next) {
            files.write(d)?;
            next += 1;
        }
    }
    if !pending.is_empty() {
        return Err(TransformError::Internal("a chunk was lost between workers and writer".into()));
    }
    files.good.close().map_err(pq)?;
    files.bad.close().map_err(pq)?;
    files.malformed.flush().map_err(write_error)?;
    Ok(files.w)
}
