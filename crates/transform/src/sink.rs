//! Rows from the document readers (FHIR, XML, workbooks), which produce records one at a time on the
//! reading thread: dedupe, normalise into Arrow builders, hand batches to the same writer as the
//! streaming engine.

use crossbeam_channel::{bounded, Sender};

use crate::dedupe::Seen;
use crate::error::TransformError;
use crate::outcome::{Malformed, Options, Outputs, Summary};
use crate::plan::{Builders, ColPlan, Plan, Raw, Row};
use crate::stream::too_many_records;
use crate::writer::{count_refused, refused_slots, write_all, Batch};

const BATCH_ROWS: usize = 8192;

pub(crate) struct Sink<'p> {
    plan: &'p Plan,
    good: Builders,
    bad: Builders,
    row: Row,
    required: Vec<usize>,
    bad_by_field: Vec<u64>,
    refused: Vec<u64>,
    malformed: Vec<Malformed>,
    pending: usize,
    seq: u64,
    tx: Sender<Batch>,
    seen: Seen,
    max_distinct: u64,
    pub rows: u64,
    pub dups: u64,
    pub skipped: u64,
    pub blank: u64,
}

impl<'p> Sink<'p> {
    pub fn plan(&self) -> &'p Plan {
        self.plan
    }

    /// One record: dropped when `key` was seen before, else normalised with `get`.
    pub fn push<'a>(
        &mut self,
        key: u128,
        get: impl FnMut(usize, &'a ColPlan) -> Raw<'a>,
    ) -> Result<(), TransformError>
    where
        'p: 'a,
    {
        self.rows += 1;
        if !self.seen.insert(key).map_err(Seen::spill_error)? {
            self.dups += 1;
            return Ok(());
        }
        if self.seen.len() > self.max_distinct {
            return Err(too_many_records(self.max_distinct));
        }
        self.row.fill(self.plan, get);
        count_refused(&mut self.refused, self.row.issues());
        if self.row.is_bad(self.plan) {
            self.bad.push(&self.row, self.plan);
            for (slot, &ci) in self.bad_by_field.iter_mut().zip(&self.required) {
                if self.row.is_null(ci) {
                    *slot += 1;
                }
            }
        } else {
            self.good.push(&self.row, self.plan);
        }
        self.pending += 1;
        if self.pending >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// A record that could not be read.
    pub fn malformed(&mut self, m: Malformed) -> Result<(), TransformError> {
        self.rows += 1;
        self.malformed.push(m);
        self.pending += 1;
        if self.pending >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TransformError> {
        let d = Batch {
            seq: self.seq,
            good: (!self.good.is_empty()).then(|| self.good.finish()),
            bad: (!self.bad.is_empty()).then(|| self.bad.finish()),
            malformed: std::mem::take(&mut self.malformed),
            bad_by_field: std::mem::replace(&mut self.bad_by_field, vec![0; self.required.len()]),
            ignored: Default::default(),
            refused: std::mem::replace(&mut self.refused, refused_slots(self.plan)),
            blank: 0,
            skipped: 0,
        };
        self.seq += 1;
        self.pending = 0;
        self.tx.send(d).map_err(|_| TransformError::Internal("the writer stopped early".into()))
    }
}

/// Runs `body` with a sink whose rows go to `out`; returns the counts.
pub(crate) fn run_records(
    plan: &Plan,
    out: Outputs<'_>,
    opts: &Options,
    body: impl FnOnce(&mut Sink<'_>) -> Result<(), TransformError>,
) -> Result<Summary, TransformError> {
    let (tx, rx) = bounded::<Batch>(4);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || write_all(plan, rx, out, opts.row_group_rows));
        let required: Vec<usize> =
            plan.cols.iter().enumerate().filter(|(_, c)| c.required).map(|(i, _)| i).collect();
        let mut sink = Sink {
            plan,
            good: Builders::new(plan, false),
            bad: Builders::new(plan, true),
            row: Row::default(),
            bad_by_field: vec![0; required.len()],
            refused: refused_slots(plan),
            required,
            malformed: Vec::new(),
            pending: 0,
            seq: 0,
            tx,
            seen: Seen::new(opts.dedupe_in_memory),
            max_distinct: plan.max_distinct_records,
            rows: 0,
            dups: 0,
            skipped: 0,
            blank: 0,
        };
        let r = body(&mut sink).and_then(|()| sink.flush());
        let (rows, dups, skipped, blank) = (sink.rows, sink.dups, sink.skipped, sink.blank);
        drop(sink);
        let w = writer.join().map_err(|_| TransformError::Internal("writer thread panicked".into()))?;
        r?;
        let w = w?;
        Ok(Summary {
            rows_read: rows,
            duplicates: dups,
            skipped,
            blank,
            malformed: w.malformed,
            good: w.good,
            bad: w.bad,
            bad_by_field: w.bad_by_field(plan),
            refused_values: w.refused_values(plan),
            ..Default::default()
        })
    })
}
