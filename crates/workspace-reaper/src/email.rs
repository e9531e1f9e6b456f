//! What the reaper tells users: one notice per person per run, naming each of their WorkSpaces
//! that is at risk (last used, the date of the run that will remove it, how to keep it) or was
//! removed (what, whom to ask), as plain text and HTML; and the MIME message SES sends. Pure
//! text building, no I/O.

use chrono::{DateTime, Utc};

use crate::notice::{NoticeItem, NoticeKind, UserNotice};
use crate::policy::Policy;
use crate::wiki::escape_html;

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

fn at_risk_text(i: &NoticeItem, removal: DateTime<Utc>, policy: &Policy) -> String {
    let used = match i.last_used.as_str() {
        "never" => "has never been signed in to".to_string(),
        "unknown" => "has not been used recently".to_string(),
        d => format!("was last used on {d}"),
    };
    format!(
        "Your Amazon WorkSpace {} (directory {}) {used}. WorkSpaces unused for more than {} days are \
         removed. Unless you sign in to it before {}, the run on that day will remove it, with all \
         its data; this cannot be undone. To keep it, sign in to it before {}; if you need it kept \
         while you do not use it, ask {} to give it the tag \"{}\".",
        i.workspace_id,
        i.directory,
        policy.inactivity_limit_days,
        day(removal),
        day(removal),
        policy.notify.contact,
        policy.exempt_tag_key
    )
}

fn terminated_text(i: &NoticeItem, run_at: DateTime<Utc>, policy: &Policy) -> String {
    let used = match i.last_used.as_str() {
        "never" => "had never been signed in to".to_string(),
        "unknown" => "had not been used recently".to_string(),
        d => format!("was last used on {d}"),
    };
    format!(
        "Your Amazon WorkSpace {} (directory {}) {used} and was removed on {} because it had not \
         been used for more than {} days. Its data cannot be recovered. If you still need a \
         WorkSpace, ask {} for a new one.",
        i.workspace_id,
        i.directory,
        day(run_at),
        policy.inactivity_limit_days,
        policy.notify.contact
    )
}

/// The paragraphs of a notice, one per WorkSpace (removed ones first).
fn paragraphs(items: &[NoticeItem], run_at: DateTime<Utc>, policy: &Policy) -> Vec<String> {
    let mut sorted: Vec<&NoticeItem> = items.iter().collect();
    sorted.sort_by_key(|i| (!matches!(i.kind, NoticeKind::Terminated), i.workspace_id.clone()));
    sorted
        .into_iter()
        .map(|i| match i.kind {
            NoticeKind::AtRisk { removal_run } => at_risk_text(i, removal_run, policy),
            NoticeKind::Terminated => terminated_text(i, run_at, policy),
        })
        .collect()
}

fn subject(items: &[NoticeItem]) -> String {
    let removed: Vec<&NoticeItem> = items.iter().filter(|i| i.kind == NoticeKind::Terminated).collect();
    let first_risk = items.iter().find_map(|i| match i.kind {
        NoticeKind::AtRisk { removal_run } => Some((i, removal_run)),
        NoticeKind::Terminated => None,
    });
    match (removed.as_slice(), first_risk) {
        ([one], None) => format!("Your WorkSpace {} was removed", one.workspace_id),
        ([], Some((one, when))) if items.len() == 1 => {
            format!("Your WorkSpace {} will be removed on {} unless you sign in", one.workspace_id, day(when))
        }
        ([], _) => format!("{} of your WorkSpaces will be removed unless you sign in", items.len()),
        _ => format!("{} of your WorkSpaces: removed or about to be removed", items.len()),
    }
}

/// The one notice for `email` about `items` (all of that person's WorkSpaces in this run).
pub fn compose(email: &str, items: &[NoticeItem], run_at: DateTime<Utc>, policy: &Policy) -> UserNotice {
    let paras = paragraphs(items, run_at, policy);
    let footer = format!(
        "This message was sent by the weekly WorkSpaces clean-up of {}. Questions: {}.",
        day(run_at),
        policy.notify.contact
    );
    let mut body = String::from("Hello,\n\n");
    for p in &paras {
        body.push_str(p);
        body.push_str("\n\n");
    }
    body.push_str(&footer);
    body.push('\n');
    let mut html = String::from("<!DOCTYPE html><html><body><p>Hello,</p>");
    for p in &paras {
        html.push_str("<p>");
        html.push_str(&escape_html(p));
        html.push_str("</p>");
    }
    html.push_str("<p><small>");
    html.push_str(&escape_html(&footer));
    html.push_str("</small></p></body></html>");
    UserNotice {
        email: email.to_string(),
        workspace_ids: items.iter().map(|i| i.workspace_id.clone()).collect(),
        subject: subject(items),
        body,
        html,
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Base64 in lines of 76 characters (RFC 2045), each ended by CRLF.
fn base64_lines(data: &[u8]) -> String {
    let b = base64(data);
    let mut out = String::with_capacity(b.len() + b.len() / 38 + 2);
    for line in b.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

/// A header value with no line breaks; non-ASCII text as an RFC 2047 encoded word.
fn header_text(s: &str) -> String {
    let clean: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.is_ascii() {
        clean
    } else {
        format!("=?UTF-8?B?{}?=", base64(clean.as_bytes()))
    }
}

/// `_` is not in the base64 alphabet, so the boundary cannot occur in the encoded parts.
const BOUNDARY: &str = "=_workspace_reaper_alt";

/// The notice as a MIME message: `multipart/alternative` with the plain-text and HTML parts,
/// both UTF-8 in base64. Addresses were checked (no whitespace or line breaks) before.
pub fn mime(from: &str, n: &UserNotice) -> Vec<u8> {
    let mut m = String::new();
    m.push_str(&format!("From: {}\r\n", header_text(from)));
    m.push_str(&format!("To: {}\r\n", header_text(&n.email)));
    m.push_str(&format!("Subject: {}\r\n", header_text(&n.subject)));
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!("Content-Type: multipart/alternative; boundary=\"{BOUNDARY}\"\r\n\r\n"));
    for (kind, text) in [("plain", &n.body), ("html", &n.html)] {
        m.push_str(&format!("--{BOUNDARY}\r\n"));
        m.push_str(&format!("Content-Type: text/{kind}; charset=UTF-8\r\n"));
        m.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
        m.push_str(&base64_lines(text.as_bytes()));
    }
    m.push_str(&format!("--{BOUNDARY}--\r\n"));
    m.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or_default()
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let v = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
        ];
        for (plain, enc) in v {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn one_notice_names_every_workspace_and_how_to_keep_it() {
        let p = Policy::embedded().unwrap_or_else(|e| panic!("{e}"));
        let run = at("2025-03-10T06:00:00Z");
        let items = vec![
            NoticeItem {
                workspace_id: "ws-risk00001".into(),
                directory: "d-0123456789".into(),
                last_used: "2025-02-28".into(),
                kind: NoticeKind::AtRisk { removal_run: at("2025-03-17T06:00:00Z") },
            },
            NoticeItem {
                workspace_id: "ws-gone00001".into(),
                directory: "d-0123456789".into(),
                last_used: "never".into(),
                kind: NoticeKind::Terminated,
            },
        ];
        let n = compose("a@county.gov", &items, run, &p);
        assert_eq!(n.workspace_ids, vec!["ws-risk00001", "ws-gone00001"]);
        assert!(
            n.body.contains("ws-risk00001 (directory d-0123456789) was last used on 2025-02-28"),
            "{}",
            n.body
        );
        assert!(n.body.contains("before 2025-03-17"), "{}", n.body);
        assert!(n.body.contains("\"reaper:exempt\""), "{}", n.body);
        assert!(n.body.contains(
            "ws-gone00001 (directory d-0123456789) had never been signed in to and was removed on 2025-03-10"
        ));
        assert!(n.body.find("ws-gone00001") < n.body.find("ws-risk00001"), "removed first");
        assert!(n.html.contains("&quot;reaper:exempt&quot;"), "{}", n.html);
        assert_eq!(n.subject, "2 of your WorkSpaces: removed or about to be removed");
        let m = String::from_utf8(mime("reaper@county.gov", &n)).unwrap_or_default();
        assert!(m.contains("Content-Type: text/plain; charset=UTF-8"));
        assert!(m.contains("Content-Type: text/html; charset=UTF-8"));
        assert!(m.ends_with("--=_workspace_reaper_alt--\r\n"));
        assert!(m.lines().all(|l| l.len() <= 998), "SMTP line limit");
    }

    #[test]
    fn headers_cannot_be_injected() {
        let n = UserNotice {
            email: "a@b.gov".into(),
            workspace_ids: vec![],
            subject: "x\r\nBcc: evil@example.com".into(),
            body: String::new(),
            html: String::new(),
        };
        let m = String::from_utf8(mime("r@b.gov", &n)).unwrap_or_default();
        assert!(!m.contains("\r\nBcc:"), "{m}");
        assert_eq!(header_text("Grüße"), "=?UTF-8?B?R3LDvMOfZQ==?=");
    }
}
