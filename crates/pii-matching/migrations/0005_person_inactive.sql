-- A person missing from the county's latest full export is moved here, not deleted: the proposals
-- and decisions that named them stay explainable, and the person is no longer a candidate (the
-- candidate query reads `person` only). A person who comes back in a later export moves back.
-- `lake people load --prune` deletes instead.
CREATE TABLE IF NOT EXISTS person_inactive (
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
    phone          TEXT,
    inactive_since TIMESTAMPTZ NOT NULL DEFAULT now()
);

REVOKE ALL ON person_inactive FROM PUBLIC;
-- a reviewer may look up a person a proposal named before the export dropped them
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lake_reviewer') THEN
        GRANT SELECT ON person_inactive TO lake_reviewer;
    END IF;
END
$$;
