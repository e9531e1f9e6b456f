//! JSON lines (one object per line) and JSON arrays (one object per top-level element):
//! streamed. Fields are paths into the object; top-level keys the contract neither maps nor
//! drops are counted as ignored. Identical array elements (same keys and values, whatever the
//! spacing or key order) are duplicates.

use std::collections::BTreeMap;

use contracts::PathSeg;
use serde_json::Value;

use crate::error::TransformError;
use crate::frame::Kind;
use crate::job::{Job, Reader};
use crate::outcome::Summary;
use crate::plan::{Plan, Raw, Row, Src};
use crate::stream::{self, Parsed, RecordFormat};

/// Distinct ignored keys reported per chunk at most (a file of random keys stays small).
const MAX_IGNORED_KEYS: usize = 100;

pub(crate) struct Json {
    /// One JSON array rather than one object per line.
    pub array: bool,
}

impl Reader for Json {
    fn read(&self, job: Job<'_, '_>) -> Result<Summary, TransformError> {
        stream::run(self, job)
    }
}

impl RecordFormat for Json {
    type Scratch = ();

    fn kind(&self) -> Kind {
        if self.array {
            Kind::JsonArray
        } else {
            Kind::Lines
        }
    }

    fn dedupe_key(&self, rec: &[u8]) -> u128 {
        if self.array {
            // identical elements: same keys and values, whatever the spacing or key order
            if let Ok(v) = serde_json::from_slice::<Value>(rec) {
                return xxhash_rust::xxh3::xxh3_128(v.to_string().as_bytes());
            }
        }
        xxhash_rust::xxh3::xxh3_128(rec)
    }

    fn unterminated(&self) -> &'static str {
        if self.array {
            "truncated JSON element"
        } else {
            "unterminated quoted field (runs to end of file)"
        }
    }

    fn by_element(&self) -> bool {
        self.array
    }

    fn parse(
        &self,
        plan: &Plan,
        text: &str,
        row: &mut Row,
        _scratch: &mut (),
        ignored: &mut BTreeMap<String, u64>,
    ) -> Parsed {
        if text.trim().is_empty() {
            return Parsed::Blank;
        }
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return Parsed::Malformed(format!("invalid JSON ({})", json_err(&e))),
        };
        let Value::Object(obj) = &v else { return Parsed::Malformed("not a JSON object".into()) };
        for k in obj.keys() {
            if plan.known_keys.binary_search(k).is_err() {
                if let Some(n) = ignored.get_mut(k) {
                    *n += 1;
                } else if ignored.len() < MAX_IGNORED_KEYS {
                    ignored.insert(k.clone(), 1);
                }
            }
        }
        row.fill(plan, |_, col| match &col.src {
            Src::Path(p) => lookup(&v, &p.0).map_or(Raw::Null, Raw::Json),
            _ => Raw::Null,
        });
        Parsed::Row
    }
}

/// What kind of JSON error, in words (never the text around it).
pub(crate) fn json_err(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "truncated",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Io => "read error",
    }
}

/// The value at `path` (object keys and array indexes) in `v`.
pub(crate) fn lookup<'v>(v: &'v Value, path: &[PathSeg]) -> Option<&'v Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            PathSeg::Key(k) => cur.get(k.as_str())?,
            PathSeg::Index(i) => cur.get(*i)?,
        };
    }
    Some(cur)
}
