-- The rules version behind every matcher decision and proposal (`v<N>`: the published version
-- `lake rules publish` stored; `builtin-<hash>`: the rules compiled into the function). NULL on
-- rows written before this migration and on reviewers' decisions (the proposal they decide
-- carries the version).
ALTER TABLE match_decision ADD COLUMN IF NOT EXISTS rules_version TEXT;
ALTER TABLE match_review ADD COLUMN IF NOT EXISTS rules_version TEXT;

-- lake_loader (`lake people load` run by an operator): upserts the county's person export into
-- `person`, moves persons missing from a full export to `person_inactive` (or prunes them), and
-- refreshes the planner statistics of `person` afterwards. Nothing else: no proposals, no
-- decisions, no audit. Logs in without a password (IAM database authentication in Aurora), as
-- the roles of 0003.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lake_loader') THEN
        BEGIN
            CREATE ROLE lake_loader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam') THEN
        BEGIN
            GRANT rds_iam TO lake_loader;
        EXCEPTION WHEN unique_violation THEN
            NULL;
        END;
    END IF;
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO lake_loader', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO lake_loader;

-- the load stages the export in a temporary table LIKE person (SELECT), upserts (INSERT, UPDATE
-- with a WHERE over the stored values), and moves or deletes the persons a full export lacks
GRANT SELECT, INSERT, UPDATE, DELETE ON person TO lake_loader;
GRANT SELECT, INSERT, DELETE ON person_inactive TO lake_loader;

-- ANALYZE needs the table's owner; this runs it as the owner, for `person` only
CREATE OR REPLACE FUNCTION lake_analyze_person() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    ANALYZE public.person;
END
$$;
REVOKE ALL ON FUNCTION lake_analyze_person() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lake_analyze_person() TO lake_loader;
