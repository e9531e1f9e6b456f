//! Error texts from outside services, made safe to store and send. An S3 `AccessDenied` for a
//! same-account request names the resource ARN (`arn:aws-us-gov:s3:::bucket/JOHN_SMITH.csv`),
//! an SDK dispatch failure can quote the request URL, and a service or adapter can quote the
//! object key itself (`'st_marys/JOHN SMITH.csv'`): all of them can carry a patient's name.
//! Before a port error reaches an envelope, the ledger, a log line, an alert or the Lambda
//! runtime, every ARN and URL in it is replaced by its hash, and so is every quoted value that is
//! not an IAM action; the error code and the rest of the text stay, so on-call still sees what
//! went wrong. A quoted key hashes to the file's `key_hash`, so the two can be matched.
//! Sanitising is idempotent: a text that went through once comes out unchanged.

/// `text` with every ARN and URL replaced by `arn:#<hash>` / `url:#<hash>`, and every other
/// quoted value (an object key, a bucket, a path) by `key:#<hash>` inside its quotes.
pub fn port_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((at, found)) = next_sensitive(rest, out.chars().next_back()) {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let len = match found {
            Found::Token(tag) => {
                // right after an opening quote a token runs to its closing quote (keys hold
                // spaces); the closing quote stays in the text
                let len = match rest[..at].chars().next_back().filter(|c| matches!(c, '"' | '\'')) {
                    Some(q) => closing_quote(after, q).unwrap_or(after.len()),
                    None => token_len(after),
                };
                push_hashed(&mut out, tag, &after[..len]);
                len
            }
            Found::Quote(q) => {
                let inner = &after[1..];
                let end = closing_quote(inner, q);
                let value = &inner[..end.unwrap_or(inner.len())];
                out.push(q);
                if is_safe_quoted(value) {
                    out.push_str(value);
                } else {
                    push_hashed(&mut out, "key", value);
                }
                if end.is_some() {
                    out.push(q);
                }
                1 + value.len() + usize::from(end.is_some())
            }
        };
        rest = &rest[at + len..];
    }
    out.push_str(rest);
    out
}

/// Any error's text, sanitised: what a binary hands to the Lambda runtime, which logs it and
/// returns it to the caller (an async invocation's DLQ message carries it too).
pub fn error_text(e: &dyn std::fmt::Display) -> String {
    port_text(&e.to_string())
}

/// `tag:#<hash of token>`, or the token itself when it already is one.
fn push_hashed(out: &mut String, tag: &str, token: &str) {
    if is_hashed(token) {
        out.push_str(token);
        return;
    }
    out.push_str(tag);
    out.push_str(":#");
    out.push_str(&crate::key_hash(token));
}

fn is_hashed(token: &str) -> bool {
    ["arn:#", "url:#", "key:#"].iter().any(|p| {
        token.strip_prefix(p).is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// A quoted value that names no resource: an IAM action (`s3:GetObject`), or a hash already.
fn is_safe_quoted(value: &str) -> bool {
    if is_hashed(value) || value.is_empty() {
        return true;
    }
    match value.split_once(':') {
        Some((svc, action)) => {
            !svc.is_empty()
                && svc.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !action.is_empty()
                && action.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'*')
        }
        None => false,
    }
}

enum Found {
    /// An ARN or URL (its tag).
    Token(&'static str),
    /// An opening quote.
    Quote(char),
}

/// Where the next ARN, URL or opening quote starts (`prev`: the character before `s`). A quote
/// opens only at the start or after a character that is not a letter or digit, so the
/// apostrophe of `can't` opens nothing.
fn next_sensitive(s: &str, prev: Option<char>) -> Option<(usize, Found)> {
    let candidates = [("arn:", "arn"), ("https://", "url"), ("http://", "url"), ("s3://", "url")];
    let token =
        candidates.iter().filter_map(|(pat, tag)| s.find(pat).map(|i| (i, *tag))).min_by_key(|(i, _)| *i);
    let quote = s.char_indices().find(|&(i, c)| {
        let before = if i == 0 { prev } else { s[..i].chars().next_back() };
        matches!(c, '"' | '\'') && before.is_none_or(|p| !p.is_alphanumeric())
    });
    match (token, quote) {
        // a quoted ARN or URL: the token, its quote stays as text
        (Some((t, tag)), Some((q, _))) if t <= q + 1 => Some((t, Found::Token(tag))),
        (_, Some((q, c))) => Some((q, Found::Quote(c))),
        (Some((t, tag)), None) => Some((t, Found::Token(tag))),
        (None, None) => None,
    }
}

/// The closing `q` in `s` (the text after an opening quote): one followed by the end or by a
/// character that is not a letter or digit, so `'O'BRIEN.csv'` closes after `.csv`.
fn closing_quote(s: &str, q: char) -> Option<usize> {
    s.char_indices()
        .find(|&(i, c)| c == q && s[i + c.len_utf8()..].chars().next().is_none_or(|n| !n.is_alphanumeric()))
        .map(|(i, _)| i)
}

/// The length of the unquoted sensitive token at the start of `s`: to the next whitespace, except
/// that an S3 ARN runs to AWS's ` because ` clause or the end, since its key may hold spaces.
fn token_len(s: &str) -> usize {
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
        assert!(safe.contains("is not authorized to perform: s3:GetObject on resource: \"arn:#"), "{safe}");
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

    #[test]
    fn a_bare_key_in_quotes_becomes_the_files_key_hash() {
        let key = "st_marys/2026/JOHN SMITH 1984-02-29.csv";
        for text in [
            format!("local-store open: object '{key}' cannot be read"),
            format!("InvalidObjectState: The operation is not valid for the object \"{key}\""),
            format!("ValidationException: Item key '{key}' too large, can't write"),
        ] {
            let safe = port_text(&text);
            assert!(!safe.contains("JOHN") && !safe.contains("st_marys"), "{safe}");
            // on-call can match it with the ledger's key_hash of the file
            assert!(safe.contains(&format!("key:#{}", crate::key_hash(key))), "{safe}");
        }
        let safe = port_text("ValidationException: Item key 'x' too large, can't write");
        assert!(safe.ends_with("too large, can't write"), "an apostrophe opens no quote: {safe}");
        // an apostrophe inside a quoted key does not end it
        let safe = port_text("object 'st_marys/O'BRIEN MARY.csv' missing");
        assert!(!safe.contains("BRIEN") && safe.ends_with("' missing"), "{safe}");
        let safe = port_text("on resource: \"arn:aws:s3:::b/O'BRIEN MARY.csv\" because no policy");
        assert!(!safe.contains("BRIEN") && safe.ends_with("\" because no policy"), "{safe}");
    }

    #[test]
    fn iam_actions_in_quotes_stay_and_sanitising_twice_changes_nothing() {
        let text = "AccessDenied: not allowed to perform 's3:PutObject' on \"arn:aws:s3:::b/JANE DOE.csv\" \
                    and 'st_marys/JANE DOE.csv'";
        let once = port_text(text);
        assert!(once.contains("'s3:PutObject'") && !once.contains("JANE"), "{once}");
        assert_eq!(port_text(&once), once);
        // an unmatched quote hides the rest rather than leak it
        let safe = port_text("truncated: 'st_marys/JANE DOE");
        assert!(!safe.contains("JANE") && safe.starts_with("truncated: 'key:#"), "{safe}");
    }
}
