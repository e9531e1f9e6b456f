//! S3 event notifications, as they arrive directly or wrapped in an SQS message body.

use percent_encoding::percent_decode_str;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Notification {
    #[serde(rename = "Records", default)]
    records: Vec<Record>,
    #[serde(rename = "Event")]
    event: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Record {
    #[serde(rename = "eventName", default)]
    event_name: String,
    s3: S3,
}

#[derive(Debug, Deserialize)]
struct S3 {
    bucket: Bucket,
    object: Object,
}

#[derive(Debug, Deserialize)]
struct Bucket {
    name: String,
}

#[derive(Debug, Deserialize)]
struct Object {
    key: String,
    #[serde(rename = "versionId")]
    version_id: Option<String>,
    size: Option<u64>,
}

/// One created object, its key decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedObject {
    pub bucket: String,
    pub key: crate::ObjectKey,
    pub version_id: Option<String>,
    pub size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the message is not an S3 event notification ({0})")]
    NotAnEvent(String),
    #[error("an object key is not valid percent-encoded UTF-8")]
    BadKey,
}

/// Decodes an S3 notification key: `+` is a space, `%XX` a byte, the result UTF-8.
pub fn decode_key(k: &str) -> Result<String, EventError> {
    let plus = k.replace('+', " ");
    percent_decode_str(&plus).decode_utf8().map(|c| c.into_owned()).map_err(|_| EventError::BadKey)
}

/// The created objects in a notification (a test event yields none).
pub fn parse(body: &str) -> Result<Vec<CreatedObject>, EventError> {
    let n: Notification =
        serde_json::from_str(body).map_err(|e| EventError::NotAnEvent(format!("{:?}", e.classify())))?;
    if n.event.as_deref() == Some("s3:TestEvent") {
        return Ok(vec![]);
    }
    if n.records.is_empty() {
        return Err(EventError::NotAnEvent("no Records".into()));
    }
    n.records
        .into_iter()
        .filter(|r| r.event_name.is_empty() || r.event_name.starts_with("ObjectCreated"))
        .map(|r| {
            Ok(CreatedObject {
                bucket: r.s3.bucket.name,
                key: decode_key(&r.s3.object.key)?.into(),
                version_id: r.s3.object.version_id.filter(|v| !v.is_empty() && v != "null"),
                size: r.s3.object.size,
            })
        })
        .collect()
}

/// A notification for one object, as S3 would send it (used by `lake run` and the tests).
pub fn notification(bucket: &str, key: &str, version: Option<&str>, size: u64) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const KEEP: &AsciiSet =
        &NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    let enc = utf8_percent_encode(key, KEEP).to_string().replace("%20", "+");
    let mut obj = serde_json::json!({"key": enc, "size": size});
    if let Some(v) = version {
        obj["versionId"] = v.into();
    }
    serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-gov-west-1",
        "eventTime": crate::ledger::now(), "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")}, "object": obj}
    }]})
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_decoded_like_s3_encodes_them() {
        assert_eq!(decode_key("a/b+c%2Bd%20e%C3%A9.csv").unwrap(), "a/b c+d eé.csv");
        assert!(decode_key("%FF").is_err());
        let n = notification("in", "st_marys/x y+z é.csv", Some("v1"), 10);
        let got = parse(&n).unwrap();
        assert_eq!(got[0].key.expose(), "st_marys/x y+z é.csv");
        assert_eq!(got[0].version_id.as_deref(), Some("v1"));
        assert!(parse(r#"{"Event":"s3:TestEvent"}"#).unwrap().is_empty());
        assert!(parse("{}").is_err());
    }
}
