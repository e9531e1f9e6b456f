-- The reviewers' web application: leases (who has a proposal open, until when) and the audit
-- trail of every view, field reveal and decision. The audit is append-only: no role may update,
-- delete or truncate it (a trigger refuses even the owner), and lake_reviewer may only insert and
-- read it. Rows hold ids, field names, reviewer names and notes; never a record's values.

CREATE TABLE IF NOT EXISTS review_lease (
    review_id  BIGINT PRIMARY KEY REFERENCES match_review (review_id),
    reviewer   TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS review_audit (
    audit_id   BIGSERIAL PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    reviewer   TEXT NOT NULL,
    action     TEXT NOT NULL CHECK (action IN ('view', 'reveal', 'accept', 'reject', 'skip')),
    review_id  BIGINT NOT NULL,
    field      TEXT,
    person_id  BIGINT,
    note       TEXT
);
CREATE INDEX IF NOT EXISTS review_audit_at ON review_audit (at);
CREATE INDEX IF NOT EXISTS review_audit_review ON review_audit (review_id, reviewer);
-- The queue without reading the table: counts per (source, dataset), a page at any offset in
-- queue order, and the count of a score band, each from an index alone (index-only scans).
CREATE INDEX IF NOT EXISTS match_review_pending_facets ON match_review (status, source, dataset);
CREATE INDEX IF NOT EXISTS match_review_queue ON match_review (status, created_at, review_id)
    INCLUDE (source, dataset, best_score);
CREATE INDEX IF NOT EXISTS match_review_score ON match_review (status, best_score) INCLUDE (source, dataset);

CREATE OR REPLACE FUNCTION review_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'review_audit is append-only (% refused)', TG_OP;
END
$$;
DROP TRIGGER IF EXISTS review_audit_no_change ON review_audit;
CREATE TRIGGER review_audit_no_change BEFORE UPDATE OR DELETE ON review_audit
    FOR EACH ROW EXECUTE FUNCTION review_audit_append_only();
DROP TRIGGER IF EXISTS review_audit_no_truncate ON review_audit;
CREATE TRIGGER review_audit_no_truncate BEFORE TRUNCATE ON review_audit
    FOR EACH STATEMENT EXECUTE FUNCTION review_audit_append_only();

REVOKE ALL ON review_lease, review_audit FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON review_lease TO lake_reviewer;
GRANT SELECT, INSERT ON review_audit TO lake_reviewer;
GRANT USAGE ON SEQUENCE review_audit_audit_id_seq TO lake_reviewer;
