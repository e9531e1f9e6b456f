//! FHIR Bulk Data exports: the manifest (the body of the export's completed status response,
//! `transactionTime`, `output[{type, url, count}]`, `error[]`) and which files of the export
//! folder a contract reads. Pure: the workflow and `lake contract check` find the files.
//!
//! A part's file is the last segment of its `url` (a query string dropped), looked up in the
//! manifest's own folder: a manifest cannot point outside it (no `/`, `..` or empty names).

use serde::Deserialize;

/// The most a manifest may be (a real one lists a few files per resource type).
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// One `output` (or `error`) entry of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ManifestFile {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub url: String,
    #[serde(default)]
    pub count: Option<u64>,
}

/// A Bulk Data export manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Manifest {
    #[serde(rename = "transactionTime")]
    pub transaction_time: String,
    pub output: Vec<ManifestFile>,
    #[serde(default)]
    pub error: Vec<ManifestFile>,
}

/// A part of the export a contract reads: its index in `output` and its file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    pub index: usize,
    pub resource_type: String,
    pub file_name: String,
}

impl Manifest {
    /// Parses a manifest; the error says what is wrong without quoting the text.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(format!("the export manifest is larger than {MAX_MANIFEST_BYTES} bytes"));
        }
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| {
            format!(
                "the export manifest is not a Bulk Data manifest (transactionTime and output[type, url]): {} at line {}",
                crate::read::json::json_err(&e),
                e.line()
            )
        })?;
        for f in &m.output {
            file_name(&f.url)?;
        }
        Ok(m)
    }

    /// The outputs of the `types` read, in manifest order, and the resources (by the manifest's
    /// counts) of the outputs not read.
    pub fn parts(&self, types: &[String]) -> (Vec<ExportFile>, u64) {
        let mut parts = Vec::new();
        let mut skipped = 0;
        for (index, f) in self.output.iter().enumerate() {
            if types.contains(&f.resource_type) {
                let file_name = file_name(&f.url).unwrap_or_default();
                parts.push(ExportFile { index, resource_type: f.resource_type.clone(), file_name });
            } else {
                skipped += f.count.unwrap_or(0);
            }
        }
        (parts, skipped)
    }
}

/// The file name an output `url` points at in the export folder.
pub fn file_name(url: &str) -> Result<String, String> {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let name = path.rsplit('/').next().unwrap_or("");
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('\\')
        || name.contains('%')
        || name.chars().any(char::is_control);
    if bad {
        return Err("an export manifest output url does not end in a file name".into());
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_manifest_names_its_parts() {
        let m = Manifest::parse(
            br#"{"transactionTime":"2026-12-01T00:00:00Z","request":"x","requiresAccessToken":true,
            "output":[{"type":"Patient","url":"https://h/exp/1/Patient.ndjson","count":3},
                      {"type":"Observation","url":"https://h/exp/1/Observation.ndjson?sig=1","count":7},
                      {"type":"Encounter","url":"Encounter.ndjson.gz"}],"error":[]}"#,
        )
        .unwrap();
        let (parts, skipped) = m.parts(&["Patient".into(), "Encounter".into()]);
        let names: Vec<(usize, &str)> = parts.iter().map(|p| (p.index, p.file_name.as_str())).collect();
        assert_eq!(names, [(0, "Patient.ndjson"), (2, "Encounter.ndjson.gz")]);
        assert_eq!(skipped, 7);
        assert_eq!(file_name("https://h/x/Obs.ndjson?a=b/c").unwrap(), "Obs.ndjson");
    }

    #[test]
    fn bad_manifests_are_refused_without_quoting_them() {
        for (text, want) in [
            (r#"{"output":[]}"#.to_string(), "not a Bulk Data manifest"),
            (
                "{\"transactionTime\":\"t\",\"output\":[{\"type\":\"Patient\",\"url\":\"https://h/a/\"}]}"
                    .into(),
                "does not end in a file name",
            ),
            (
                "{\"transactionTime\":\"t\",\"output\":[{\"type\":\"Patient\",\"url\":\"..\"}]}".into(),
                "does not end in a file name",
            ),
            (
                "{\"transactionTime\":\"t\",\"output\":[{\"type\":\"Patient\",\"url\":\"a/%2e%2e\"}]}".into(),
                "does not end in a file name",
            ),
            ("SECRET-NAME".into(), "not a Bulk Data manifest"),
            (" ".repeat(MAX_MANIFEST_BYTES + 1), "larger than"),
        ] {
            let e = Manifest::parse(text.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("SECRET"), "{e}");
        }
    }
}
