//! Error texts from outside services, made safe to store and send. An S3 `AccessDenied` for a
//! same-account request names the resource ARN (`arn:aws-us-gov:s3:::bucket/JOHN_SMITH.csv`),
//! and an SDK dispatch failure can quote the request URL: both contain the object key, which can
//! carry a patient's name. Before a port error reaches an envelope, the ledger, a log line or an
//! alert, every ARN and URL in it is replaced by its hash; the error code and the rest of the
//! text stay, so on-call still sees what went wrong.

/// `text` with every ARN and URL replaced by `arn:#<hash>` / `url:#<hash>`.
pub fn port_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((at, tag)) = next_sensitive(rest) {
        out.push_str(&rest[..at]);
        let quoted = rest[..at].ends_with(['"', '\'']);
        let len = token_len(&rest[at..], quoted);
        let token = &rest[at..at + len];
        out.push_str(tag);
        out.push_str(":#");
        out.push_str(&crate::key_hash(token));
        rest = &rest[at + len..];
    }
    out.push_str(rest);
    out
}

/// Where the next ARN or URL starts, and what to call it.
fn next_sensitive(s: &str) -> Option<(usize, &'static str)> {
    let candidates = [("arn:", "arn"), ("https://", "url"), ("http://", "url"), ("s3://", "url")];
    candidates.iter().filter_map(|(pat, tag)| s.find(pat).map(|i| (i, *tag))).min_by_key(|(i, _)| *i)
}

/// The length of the sensitive token at the start of `s`. A quoted token runs to its closing
/// quote (object keys may hold spaces); an unquoted one to the next whitespace, except that an
/// unquoted S3 ARN runs to AWS's ` because ` clause or the end, since its key may hold spaces.
fn token_len(s: &str, quoted: bool) -> usize {
    if quoted {
        return s.find(['"', '\'']).unwrap_or(s.len());
    }
    if s.starts_with("arn:") && s.split(':').nth(2) == Some("s3") {
        if let Some(i) = s.find(" because ") {
            return i;
        }
        return s.trim_end_matches(['.', ' ']).len();
    }
    s.find(char::is_whitespace).unwrap_or(s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_denied_text_keeps_its_code_and_loses_the_key() {
        // as S3 words it for a same-account request without an allowing policy
        let text = "s3 GetObject: AccessDenied: User: arn:aws-us-gov:sts::123456789012:assumed-role/\
                    lake-workflow/semi-structured-workflow is not authorized to perform: s3:GetObject \
                    on resource: \"arn:aws-us-gov:s3:::county-ingest/st_marys/2026/JOHN SMITH 1984-02-29.csv\" \
                    because no identity-based policy allows the s3:GetObject action";
        let safe = port_text(text);
        for leak in ["JOHN", "SMITH", "1984", "st_marys/2026", "lake-workflow"] {
            assert!(!safe.contains(leak), "{leak} in {safe}");
        }
        assert!(safe.starts_with("s3 GetObject: AccessDenied: User: arn:#"), "{safe}");
        assert!(safe.contains("is not authorized to perform: s3:GetObject"), "{safe}");
        assert!(safe.ends_with("because no identity-based policy allows the s3:GetObject action"), "{safe}");
    }

    #[test]
    fn unquoted_s3_arns_and_urls_are_hashed_whole() {
        let safe = port_text(
            "denied on arn:aws-us-gov:s3:::b/JANE DOE.csv because no policy; \
             dispatch failure: https://b.s3.us-gov-west-1.amazonaws.com/JANE_DOE.csv?versionId=1 timed out",
        );
        assert!(!safe.contains("JANE"), "{safe}");
        assert!(safe.contains("timed out") && safe.contains("because no policy"), "{safe}");
        // the same resource hashes the same way, so two alerts about one object can be matched
        assert_eq!(port_text("x arn:aws:s3:::b/k y"), port_text("x arn:aws:s3:::b/k y"));
        assert_eq!(
            port_text("NoSuchKey: The specified key does not exist."),
            "NoSuchKey: The specified key does not exist."
        );
    }
}
