//! CloudWatch Embedded Metric Format: one JSON line per data point on stdout inside Lambda, which
//! CloudWatch turns into metrics with no API call. Dimensions are the function and the source id;
//! values are counts and seconds. Inside a message scope each record also carries the request id
//! and file id as properties (see `telemetry`). Never a key, a file name or a row value.

use std::io::Write;
use std::sync::Mutex;

static CAPTURE: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// Starts keeping emitted lines in memory (tests scan them); outside Lambda nothing is printed.
pub fn capture() {
    if let Ok(mut c) = CAPTURE.lock() {
        *c = Some(Vec::new());
    }
}

/// The lines captured so far.
pub fn captured() -> Vec<String> {
    CAPTURE.lock().ok().and_then(|c| c.clone()).unwrap_or_default()
}

/// Emits metrics under namespace `CountyLake`.
pub fn emit(function: &str, source: Option<&str>, values: &[(&str, f64, &str)]) {
    let mut dims = vec!["function"];
    if source.is_some() {
        dims.push("source");
    }
    let mut doc = serde_json::json!({
        "_aws": {
            "Timestamp": chrono::Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": "CountyLake",
                "Dimensions": [dims],
                "Metrics": values.iter().map(|(n, _, u)| serde_json::json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
            }]
        },
        "function": function,
    });
    if let Some(s) = source {
        doc["source"] = s.into();
    }
    // correlation as properties, not dimensions: searchable in the log, no metric per file
    if let Some(c) = crate::telemetry::correlation() {
        doc["request_id"] = c.request_id.into();
        if let Some(f) = c.file_id {
            doc["file_id"] = f.into();
        }
    }
    for (n, v, _) in values {
        doc[*n] = serde_json::json!(v);
    }
    let line = doc.to_string();
    if let Ok(mut c) = CAPTURE.lock() {
        if let Some(buf) = c.as_mut() {
            buf.push(line.clone());
        }
    }
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}
