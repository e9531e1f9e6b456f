-- Least-privilege roles. Only the migration runs as the database owner (in AWS the Aurora
-- master user, from its secret); the functions log in as one of these:
--   lake_matcher  (the pii-matching Lambda): reads `person`, inserts proposals and decisions.
--   lake_reviewer (`lake review`, a review front end): reads proposals and the persons they
--                 name, decides a pending proposal (status columns only), appends decisions.
-- Neither may change `person`, delete or rewrite a proposal, or change the decision audit.
-- The roles log in without a password: in Aurora through IAM database authentication
-- (`rds_iam`, a token per connection), elsewhere as the server's pg_hba.conf allows.
--
-- Roles are cluster-wide and several databases of one cluster may be migrated at once (each
-- under its own migration lock), so a role another migration created meanwhile is not an error.

DO $$
DECLARE
    r TEXT;
BEGIN
    FOREACH r IN ARRAY ARRAY['lake_matcher', 'lake_reviewer'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam') THEN
            BEGIN
                EXECUTE format('GRANT rds_iam TO %I', r);
            EXCEPTION WHEN unique_violation THEN
                NULL;
            END;
        END IF;
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), r);
        EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', r);
    END LOOP;
END
$$;

REVOKE ALL ON person, match_review, match_decision FROM PUBLIC;

GRANT SELECT ON person TO lake_matcher;
GRANT INSERT ON match_review, match_decision TO lake_matcher;
-- INSERT .. ON CONFLICT (cols) DO NOTHING reads the conflict target: ids only, no values
GRANT SELECT (record_ref) ON match_review TO lake_matcher;
GRANT SELECT (record_ref, tier, decided_by) ON match_decision TO lake_matcher;
GRANT USAGE ON SEQUENCE match_review_review_id_seq, match_decision_decision_id_seq TO lake_matcher;

GRANT SELECT ON person, match_review TO lake_reviewer;
GRANT UPDATE (status, accepted_person_id, reviewer, decided_at) ON match_review TO lake_reviewer;
GRANT INSERT ON match_decision TO lake_reviewer;
GRANT SELECT (record_ref, tier, decided_by) ON match_decision TO lake_reviewer;
GRANT USAGE ON SEQUENCE match_decision_decision_id_seq TO lake_reviewer;
