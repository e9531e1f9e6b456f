//! Keys: the source id (also the SFTP folder and the `source_system` value) and the object key
//! prefixes a source owns in the ingestion bucket.

use crate::error::{ContractError, Origin};

/// A source id is lower-case letters, digits, `_` or `-`: it becomes a folder name and a column
/// value, so nothing a path or a shell could read differently.
pub(crate) fn validate_source_id(source: &str, at: &Origin) -> Result<(), ContractError> {
    let ok = !source.is_empty()
        && source.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        return Ok(());
    }
    Err(at.at("source", format!("source id `{source}` must be lower-case letters, digits, `_` or `-`")))
}

/// At least one prefix, each relative to the bucket root, non-empty and never climbing out (`..`).
pub(crate) fn validate_prefixes(keys: &[String], at: &Origin) -> Result<(), ContractError> {
    if keys.is_empty() {
        return Err(at.at("keys", "`keys` needs at least one object key prefix, e.g. [\"st_marys/\"]"));
    }
    match keys.iter().find(|k| k.is_empty() || k.starts_with('/') || k.split('/').any(|s| s == "..")) {
        Some(k) => Err(at.at("keys", format!("key prefix `{k}` must be relative, non-empty, without `..`"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "description = \"x\"\nsource = \"s\"\nkeys = []\n";

    #[test]
    fn source_ids_are_folder_safe() {
        let at = Origin::new("k.toml", TEXT);
        for good in ["st_marys", "lab-2", "a"] {
            assert!(validate_source_id(good, &at).is_ok(), "{good}");
        }
        for bad in ["", "St_Marys", "a/b", "a b", "é"] {
            let e = validate_source_id(bad, &at).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("k.toml:2: source id `{bad}` must be lower-case letters, digits, `_` or `-`")
            );
        }
    }

    #[test]
    fn prefixes_are_relative_and_stay_inside_the_bucket() {
        let at = Origin::new("k.toml", TEXT);
        let keys = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(validate_prefixes(&keys(&["st_marys/", "sftp/st_marys/in/"]), &at).is_ok());
        let e = validate_prefixes(&[], &at).unwrap_err();
        assert_eq!(
            e.to_string(),
            "k.toml:3: `keys` needs at least one object key prefix, e.g. [\"st_marys/\"]"
        );
        for bad in ["", "/abs/", "a/../b/", ".."] {
            let e = validate_prefixes(&keys(&["ok/", bad]), &at).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("k.toml:3: key prefix `{bad}` must be relative, non-empty, without `..`")
            );
        }
    }
}
