-- The county person index, the review queue for proposed matches, and the audit of decisions.
-- PostgreSQL 15 / Aurora PostgreSQL compatible. Names are stored upper-case (the canonical
-- `name` normalisation), so blocking uses plain b-tree equality.

CREATE TABLE IF NOT EXISTS person (
    person_id      BIGINT PRIMARY KEY,
    first_name     TEXT,
    last_name      TEXT,
    middle_initial TEXT,
    dob            DATE,
    sex            TEXT,
    ssn            TEXT,
    address        TEXT,
    city           TEXT,
    state          TEXT,
    zip            TEXT,
    phone          TEXT
);

-- Blocking keys (config/matching.toml `blocking`): one index per key kind.
CREATE INDEX IF NOT EXISTS person_last_dob ON person (last_name, dob);
CREATE INDEX IF NOT EXISTS person_first_dob ON person (first_name, dob);
CREATE INDEX IF NOT EXISTS person_address ON person (address);
CREATE INDEX IF NOT EXISTS person_phone ON person (phone);
CREATE INDEX IF NOT EXISTS person_last_first ON person (last_name, first_name);

-- One row per record the matcher could not decide alone. `record_ref` is
-- `<file_id>:<row>` (pipeline) or the record id (benchmark): unique, so a retry never duplicates.
CREATE TABLE IF NOT EXISTS match_review (
    review_id    BIGSERIAL PRIMARY KEY,
    record_ref   TEXT NOT NULL UNIQUE,
    file_id      TEXT NOT NULL,
    row_index    INTEGER NOT NULL,
    dataset      TEXT NOT NULL,
    source       TEXT NOT NULL,
    -- where the completed row goes when accepted (raw bucket key of the input file's matched rows)
    bad_bucket   TEXT NOT NULL,
    bad_key      TEXT NOT NULL,
    -- [{person_id, score, rule, evidence: {field: level}}], best first
    candidates   JSONB NOT NULL,
    best_score   DOUBLE PRECISION NOT NULL,
    rule         TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'rejected')),
    accepted_person_id BIGINT,
    reviewer     TEXT,
    decided_at   TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS match_review_pending ON match_review (status, created_at);

-- Audit: every decision the matcher or a reviewer made, with the rule or score that fired.
CREATE TABLE IF NOT EXISTS match_decision (
    decision_id  BIGSERIAL PRIMARY KEY,
    record_ref   TEXT NOT NULL,
    file_id      TEXT NOT NULL,
    tier         TEXT NOT NULL CHECK (tier IN ('exact', 'proposed', 'none', 'accepted', 'rejected')),
    person_id    BIGINT,
    score        DOUBLE PRECISION,
    rule         TEXT NOT NULL,
    decided_by   TEXT NOT NULL,
    decided_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (record_ref, tier, decided_by)
);
