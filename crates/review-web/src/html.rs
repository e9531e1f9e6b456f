//! Server-rendered HTML: the layout, escaping, masking for the web pages and the in-value
//! difference marking. No templates engine: small functions writing strings.

use std::fmt::Write;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Fields a decision rarely needs: masked (last characters only) until revealed.
pub const MASKED: [&str; 3] = ["ssn", "phone", "address"];

/// A masked value: bullets, then the last four characters.
pub fn mask_tail(v: &str) -> String {
    let chars: Vec<char> = v.chars().collect();
    let keep = chars.len().min(4).min(chars.len().saturating_sub(1));
    let tail: String = chars[chars.len() - keep..].iter().collect();
    format!("\u{2022}\u{2022}\u{2022}{tail}")
}

/// `cand` with the characters that differ from `base` marked (common prefix and suffix plain).
pub fn diff_marked(base: &str, cand: &str) -> String {
    if base == cand || base.is_empty() || base == "-" || cand == "-" {
        return esc(cand);
    }
    let (a, b): (Vec<char>, Vec<char>) = (base.chars().collect(), cand.chars().collect());
    let pre = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let max_suf = a.len().min(b.len()) - pre;
    let suf = a.iter().rev().zip(b.iter().rev()).take(max_suf).take_while(|(x, y)| x == y).count();
    let s = |v: &[char]| esc(&v.iter().collect::<String>());
    let mid = &b[pre..b.len() - suf];
    let marked = if mid.is_empty() {
        "<mark class=\"gap\">\u{2038}</mark>".to_string()
    } else {
        format!("<mark>{}</mark>", s(mid))
    };
    format!("{}{marked}{}", s(&b[..pre]), s(&b[b.len() - suf..]))
}

/// The page around `body`: title, stylesheet and script from the app itself, the banner.
pub fn layout(title: &str, banner: Option<&str>, who: Option<&str>, body: &str) -> String {
    let mut o = String::with_capacity(body.len() + 1024);
    o.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    o.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let _ = write!(o, "<title>{} \u{2013} match review</title>", esc(title));
    o.push_str(
        "<link rel=\"stylesheet\" href=\"/assets/app.css\"><script src=\"/assets/app.js\" defer></script>",
    );
    o.push_str("</head><body>");
    if let Some(b) = banner {
        let _ = write!(o, "<div class=\"banner\" role=\"status\">{}</div>", esc(b));
    }
    o.push_str("<header><a href=\"/\" class=\"home\">Match review</a>");
    if let Some(w) = who {
        let _ = write!(o, "<span class=\"who\">{}</span>", esc(w));
    }
    o.push_str("</header><main>");
    o.push_str(body);
    o.push_str("</main></body></html>");
    o
}

/// A hidden CSRF field.
pub fn csrf_field(token: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_only_the_tail_and_diffs_mark_the_middle() {
        assert_eq!(mask_tail("900-10-0011"), "\u{2022}\u{2022}\u{2022}0011");
        assert_eq!(mask_tail("ab"), "\u{2022}\u{2022}\u{2022}b");
        assert_eq!(diff_marked("SMITH", "SMYTH"), "SM<mark>Y</mark>TH");
        assert_eq!(diff_marked("SMITH", "SMITH"), "SMITH");
        assert_eq!(diff_marked("A<B", "A<C"), "A&lt;<mark>C</mark>");
        assert!(diff_marked("SMITHE", "SMITH").contains("class=\"gap\""));
    }
}
