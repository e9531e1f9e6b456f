//! One file's transform as a job: what every reader gets, and the trait every reader implements.

use contracts::Contract;

use crate::decode::Input;
use crate::error::TransformError;
use crate::outcome::{Options, Outputs, Summary};
use crate::plan::Plan;

/// Everything a reader needs for one file: the contract, the compiled plan (canonical columns,
/// their sources and rules, the file name as `source_file`), the decoded input, the outputs and
/// the run's knobs.
pub(crate) struct Job<'j, 'o> {
    pub contract: &'j Contract,
    pub plan: Plan,
    pub input: Input<'j>,
    pub out: Outputs<'o>,
    pub opts: &'j Options,
}

/// A format reader: turns one job's input into rows for the writer and says what it did.
/// `bytes`, `compression`, `encoding` and `seconds` of the summary may be left to the caller.
pub(crate) trait Reader {
    /// True when the reader takes text (the decoding layer transcodes it), false for binary
    /// containers (workbooks).
    fn text(&self) -> bool {
        true
    }

    fn read(&self, job: Job<'_, '_>) -> Result<Summary, TransformError>;
}
