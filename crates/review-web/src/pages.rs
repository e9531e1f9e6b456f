//! The pages' bodies: the queue, a proposal beside its candidates, the refusal pages.

use std::fmt::Write;

use pii_matching::model::{Person, Record};
use pii_matching::review::{person_value, record_value, Candidate, FIELDS};
use pii_matching::reviews::StoredReview;

use crate::html::{csrf_field, diff_marked, esc, mask_tail, MASKED};
use crate::store::{Cursor, Decided, Lease, Position, QueuePage, QueueQuery};

fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn opt_when(t: &Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.as_ref().map(when).unwrap_or_else(|| "an unrecorded time".into())
}

/// The query string of a queue filter (without the page).
pub fn filter_qs(q: &QueueQuery) -> String {
    let mut parts = Vec::new();
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    if let Some(s) = &q.source {
        parts.push(format!("source={}", enc(s)));
    }
    if let Some(d) = &q.dataset {
        parts.push(format!("dataset={}", enc(d)));
    }
    if let Some(m) = q.min_score {
        parts.push(format!("min={m}"));
    }
    if let Some(m) = q.max_score {
        parts.push(format!("max={m}"));
    }
    parts.join("&")
}

fn select(name: &str, label: &str, options: &[String], chosen: Option<&str>) -> String {
    let mut o = format!("<label>{label} <select name=\"{name}\"><option value=\"\">all</option>");
    for v in options {
        let sel = if chosen == Some(v.as_str()) { " selected" } else { "" };
        let _ = write!(o, "<option{sel}>{}</option>", esc(v));
    }
    o.push_str("</select></label>");
    o
}

/// The queue: filters, counts, the page of pending proposals, paging.
pub fn queue(p: &QueuePage, q: &QueueQuery) -> String {
    let mut sources: Vec<String> = p.facets.iter().map(|f| f.source.clone()).collect();
    sources.dedup();
    let mut datasets: Vec<String> = p.facets.iter().map(|f| f.dataset.clone()).collect();
    datasets.sort();
    datasets.dedup();
    let all: i64 = p.facets.iter().map(|f| f.pending).sum();
    let mut o = format!("<h1>Pending proposals</h1><p class=\"counts\" id=\"counts\">{} shown of {all} pending, oldest first</p>", p.total);
    o.push_str("<form method=\"get\" action=\"/\" class=\"filters\">");
    o.push_str(&select("source", "Source", &sources, q.source.as_deref()));
    o.push_str(&select("dataset", "Dataset", &datasets, q.dataset.as_deref()));
    let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let _ = write!(
        o,
        "<label>Score from <input name=\"min\" inputmode=\"decimal\" size=\"5\" value=\"{}\"></label>\
         <label>below <input name=\"max\" inputmode=\"decimal\" size=\"5\" value=\"{}\"></label>\
         <button type=\"submit\">Filter</button></form>",
        num(q.min_score),
        num(q.max_score)
    );
    o.push_str("<details><summary>Pending per source and dataset</summary><table class=\"facets\"><tr><th>Source</th><th>Dataset</th><th>Pending</th></tr>");
    for f in &p.facets {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&f.source),
            esc(&f.dataset),
            f.pending
        );
    }
    o.push_str("</table></details>");
    o.push_str("<table class=\"queue\"><thead><tr><th>#</th><th>Proposed</th><th>Source</th><th>Dataset</th><th>Best score</th><th>Candidates</th><th>Rule</th><th></th></tr></thead><tbody>");
    for r in &p.rows {
        let taken = match &r.taken_by {
            Some(w) => format!("<span class=\"taken\">taken by {}</span>", esc(w)),
            None => String::new(),
        };
        let created = r.created_at.as_ref().map(when).unwrap_or_default();
        let _ = write!(
            o,
            "<tr{}><td><a href=\"/proposal/{id}\" class=\"open\">{id}</a></td><td>{created}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{taken}</td></tr>",
            if r.taken_by.is_some() { " class=\"is-taken\"" } else { "" },
            esc(&r.source),
            esc(&r.dataset),
            r.best_score,
            r.candidates,
            esc(&r.rule),
            id = r.review_id,
        );
    }
    if p.rows.is_empty() {
        o.push_str("<tr><td colspan=\"8\">Nothing pending with these filters.</td></tr>");
    }
    o.push_str("</tbody></table>");
    paging(&mut o, p, q);
    o
}

/// Oldest, older, page N of M, newer: each link carries the edge row of this page (keyset
/// paging), the filters and the number of the page it leads to.
fn paging(o: &mut String, p: &QueuePage, q: &QueueQuery) {
    let qs = filter_qs(q);
    let href = |at: &str, page: i64| {
        let parts: Vec<String> = [qs.clone(), at.to_string(), format!("page={page}")]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        esc(&format!("/?{}", parts.join("&")))
    };
    let n = p.page + 1;
    o.push_str("<nav class=\"paging\">");
    if p.older {
        let _ = write!(o, "<a href=\"{}\" rel=\"first\">\u{21e4} oldest</a> ", esc(&format!("/?{qs}")));
        // an empty page after a cursor (its rows decided meanwhile): older than that cursor
        let edge = p.rows.first().map(Cursor::of).or(match q.at {
            Position::After(c) | Position::Before(c) => Some(c),
            Position::First => None,
        });
        if let Some(c) = edge {
            let _ = write!(
                o,
                "<a href=\"{}\" rel=\"prev\">\u{2190} older page</a> ",
                href(&format!("before={c}"), n - 1)
            );
        }
    }
    let _ = write!(o, "<span>page {n} of {}</span>", p.pages(q.per_page));
    if let Some(c) = p.rows.last().map(Cursor::of).filter(|_| p.newer) {
        let _ = write!(
            o,
            " <a href=\"{}\" rel=\"next\">newer page \u{2192}</a>",
            href(&format!("after={c}"), n + 1)
        );
    }
    o.push_str("</nav>");
}

/// What the proposal page shows.
pub struct ProposalView<'a> {
    pub review: &'a StoredReview,
    pub record: Option<&'a Record>,
    pub missing: Option<&'a [String]>,
    pub candidates: &'a [(Candidate, Option<Person>)],
    pub revealed: &'a [String],
    pub lease: Option<&'a Lease>,
    pub decided: Option<&'a Decided>,
    pub can_decide: bool,
    pub csrf: &'a str,
    pub prev: Option<i64>,
    pub next: Option<i64>,
}

impl ProposalView<'_> {
    fn shown(&self, field: &str, raw: String) -> String {
        if raw == "-" || !MASKED.contains(&field) || self.revealed.iter().any(|f| f == field) {
            raw
        } else {
            mask_tail(&raw)
        }
    }

    fn masked(&self, field: &str) -> bool {
        MASKED.contains(&field) && !self.revealed.iter().any(|f| f == field)
    }

    fn head(&self, o: &mut String) {
        let r = self.review;
        let _ = write!(
            o,
            "<h1>Proposal {}</h1><p class=\"meta\">{} / {} \u{b7} rule <code>{}</code> \u{b7} best score {:.1} \u{b7} status <b id=\"status\">{}</b></p>",
            r.review_id,
            esc(&r.source),
            esc(&r.dataset),
            esc(&r.rule),
            r.best_score,
            esc(r.status.as_str())
        );
        if let Some(d) = self.decided {
            let _ = write!(
                o,
                "<p class=\"notice decided\" id=\"decided\">Already {} by {} at {}.</p>",
                esc(&d.status),
                esc(&d.by),
                opt_when(&d.at)
            );
        }
        match self.lease {
            Some(Lease::Held { by, until }) => {
                let _ = write!(o, "<p class=\"notice taken\" id=\"lease\">{} has this proposal open until {}; you can look but not decide.</p>", esc(by), when(until));
            }
            Some(Lease::Granted { until }) => {
                let _ = write!(o, "<p class=\"lease\" id=\"lease\">Yours until {}.</p>", when(until));
            }
            None => {}
        }
        if let Some(m) = self.missing {
            let _ = write!(o, "<p class=\"missing\">Missing in the record: {}</p>", esc(&m.join(", ")));
        }
    }

    fn cell(&self, f: &str, rec_raw: &str, c: &Candidate, p: Option<&Person>) -> String {
        let raw = p.map(|p| person_value(p, f, true)).unwrap_or_else(|| "?".into());
        let value = if self.masked(f) { esc(&self.shown(f, raw)) } else { diff_marked(rec_raw, &raw) };
        let level = c.levels.get(f).and_then(|l| l.as_str()).unwrap_or("");
        let mut o = format!("<td class=\"lvl-{}\"><span class=\"v\">{value}</span>", esc(level));
        if !level.is_empty() {
            // the weight the matcher stored with the proposal (older proposals: the level only)
            let w = c.weight(f).map(|w| format!(" {w:+.1}")).unwrap_or_default();
            let _ = write!(o, " <span class=\"level\">{}{w}</span>", esc(level));
        }
        o.push_str("</td>");
        o
    }

    fn table(&self, o: &mut String) {
        o.push_str("<table class=\"evidence\"><thead><tr><th>Field</th><th>Record</th>");
        for (i, (c, _)) in self.candidates.iter().enumerate() {
            let _ = write!(
                o,
                "<th>Candidate {} <small>person {} \u{b7} score {:.1}</small></th>",
                i + 1,
                c.person_id,
                c.score
            );
        }
        o.push_str("</tr></thead><tbody>");
        for f in FIELDS {
            let rec_raw = self.record.map(|r| record_value(r, f, true)).unwrap_or_else(|| "?".into());
            let _ = write!(
                o,
                "<tr id=\"f-{f}\"><th>{f}</th><td class=\"v\">{}",
                esc(&self.shown(f, rec_raw.clone()))
            );
            // nothing to reveal where neither the record nor any candidate has a value
            let any_value = rec_raw != "-"
                || self
                    .candidates
                    .iter()
                    .any(|(_, p)| p.as_ref().is_some_and(|p| person_value(p, f, true) != "-"));
            if self.masked(f) && any_value {
                let _ = write!(
                    o,
                    " <form method=\"post\" action=\"/proposal/{}/reveal\" class=\"reveal\">{}<input type=\"hidden\" name=\"field\" value=\"{f}\"><button type=\"submit\" id=\"reveal-{f}\">Reveal</button></form>",
                    self.review.review_id,
                    csrf_field(self.csrf)
                );
            }
            o.push_str("</td>");
            for (c, p) in self.candidates {
                o.push_str(&self.cell(f, &rec_raw, c, p.as_ref()));
            }
            o.push_str("</tr>");
        }
        o.push_str("<tr class=\"total\"><th>score</th><td></td>");
        for (c, _) in self.candidates {
            match &c.weights {
                Some(w) => {
                    let sum: f64 = w.values().filter_map(|v| v.as_f64()).sum();
                    let rules = c.rules_version.map(|v| format!(", rules v{v}")).unwrap_or_default();
                    let _ = write!(o, "<td>{:.1} <small>(fields sum {sum:.1}{rules})</small></td>", c.score);
                }
                None => {
                    let _ = write!(
                        o,
                        "<td>{:.1} <small>(weights not stored with this proposal)</small></td>",
                        c.score
                    );
                }
            }
        }
        o.push_str("</tr></tbody></table>");
    }

    fn decide(&self, o: &mut String) {
        if !self.can_decide {
            return;
        }
        let _ = write!(
            o,
            "<form method=\"post\" action=\"/proposal/{}/decide\" class=\"decide\" id=\"decide\">{}",
            self.review.review_id,
            csrf_field(self.csrf)
        );
        o.push_str("<label>Note (optional) <textarea name=\"note\" maxlength=\"1000\" rows=\"2\"></textarea></label><div class=\"buttons\">");
        for (i, (c, _)) in self.candidates.iter().enumerate().take(9) {
            let k = i + 1;
            let _ = write!(o, "<button type=\"submit\" name=\"choice\" value=\"accept:{}\" data-key=\"{k}\">Accept candidate {k} <kbd>{k}</kbd></button>", c.person_id);
        }
        o.push_str("<button type=\"submit\" name=\"choice\" value=\"reject\" data-key=\"r\">Reject all <kbd>r</kbd></button>");
        o.push_str("<button type=\"submit\" name=\"choice\" value=\"skip\" data-key=\"s\">Skip <kbd>s</kbd></button></div></form>");
    }

    /// The whole page body.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(8192);
        self.head(&mut o);
        self.table(&mut o);
        self.decide(&mut o);
        o.push_str("<nav class=\"step\">");
        if let Some(p) = self.prev {
            let _ = write!(
                o,
                "<a href=\"/proposal/{p}\" id=\"prev\" data-key=\"k\">\u{2190} previous <kbd>k</kbd></a> "
            );
        }
        o.push_str("<a href=\"/\">queue</a>");
        if let Some(n) = self.next {
            let _ = write!(
                o,
                " <a href=\"/proposal/{n}\" id=\"next\" data-key=\"j\">next <kbd>j</kbd> \u{2192}</a>"
            );
        }
        o.push_str("</nav><p class=\"keys\">Keys: 1\u{2013}9 accept that candidate, r reject, s skip, j/k next/previous.</p>");
        o
    }
}

/// A refusal or error page body.
pub fn message(title: &str, text: &str) -> String {
    format!(
        "<h1>{}</h1><p class=\"notice\" id=\"message\">{}</p><p><a href=\"/\">Back to the queue</a></p>",
        esc(title),
        esc(text)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn review() -> StoredReview {
        StoredReview {
            review_id: 7,
            record_ref: "f:0".into(),
            file_id: "f".into(),
            row_index: 0,
            dataset: "encounter".into(),
            source: "s".into(),
            bad_bucket: "q".into(),
            bad_key: "k".into(),
            candidates: serde_json::json!([]),
            best_score: 20.0,
            rule: "score>=20".into(),
            status: pii_matching::reviews::ReviewStatus::Pending,
            accepted_person_id: None,
            reviewer: None,
        }
    }

    fn candidate(weights: Option<serde_json::Value>) -> Candidate {
        Candidate {
            person_id: 9000011,
            score: 21.5,
            levels: serde_json::json!({"phone": "exact"}).as_object().cloned().unwrap(),
            weights: weights.and_then(|w| w.as_object().cloned()),
            rules_version: Some(3),
        }
    }

    fn render(rec: &Record, cands: &[(Candidate, Option<Person>)]) -> String {
        let r = review();
        ProposalView {
            review: &r,
            record: Some(rec),
            missing: Some(&[]),
            candidates: cands,
            revealed: &[],
            lease: None,
            decided: None,
            can_decide: false,
            csrf: "t",
            prev: None,
            next: None,
        }
        .render()
    }

    #[test]
    fn no_reveal_button_where_no_side_has_a_value() {
        let rec = Record { reference: "f:0".into(), phone: None, ..Record::default() };
        let no_phone = Person { person_id: 9000011, ssn: Some("900-10-0011".into()), ..Person::default() };
        let html = render(&rec, &[(candidate(None), Some(no_phone))]);
        assert!(!html.contains("id=\"reveal-phone\""), "nothing to reveal: no phone anywhere");
        assert!(html.contains("id=\"reveal-ssn\""), "the candidate's SSN is there to reveal");
        let with_phone =
            Person { person_id: 9000011, phone: Some("774-656-7549".into()), ..Person::default() };
        let html = render(&rec, &[(candidate(None), Some(with_phone))]);
        assert!(html.contains("id=\"reveal-phone\""));
        assert!(!html.contains("774-656-7549"), "masked until revealed");
    }

    #[test]
    fn weights_are_the_stored_ones_and_old_proposals_show_levels_only() {
        let rec = Record { reference: "f:0".into(), ..Record::default() };
        let p = Person { person_id: 9000011, ..Person::default() };
        let html = render(&rec, &[(candidate(Some(serde_json::json!({"phone": 6.4}))), Some(p.clone()))]);
        assert!(html.contains(">exact +6.4<"), "{html}");
        assert!(html.contains("fields sum 6.4, rules v3"), "{html}");
        let html = render(&rec, &[(candidate(None), Some(p))]);
        assert!(html.contains(">exact<"), "{html}");
        assert!(html.contains("weights not stored with this proposal"), "{html}");
    }
}
