-- Wide keys (docs/MATCHING.md, "Wide keys"): a blocking key that more persons hold than a record
-- may have candidates (`blocking.max_candidates`, 200 by default) cannot single out the record's
-- person, so the matcher ignores it: it finds nobody. This table lists the keys that more than
-- 50 persons hold, with their count, so that the candidate query leaves out the ones above the
-- rules' limit before it reads a row (a common surname without a birth date holds hundreds).
-- The matcher also drops any key that returns more rows than the limit, so a key missing here
-- (persons added since the last refresh) costs time, never a different decision.
-- Refreshed from `person` by lake_refresh_wide_keys(): at the end of this migration and by every
-- load, in the load's transaction. A count can only be too high after persons are removed or
-- changed outside a load (by hand): such a key is left out until the next load.
CREATE TABLE IF NOT EXISTS wide_key (
    key_column TEXT NOT NULL,   -- a generated key column of person (k_...)
    hash BIGINT NOT NULL,       -- its value
    persons INTEGER NOT NULL,   -- the persons holding it (more than 50)
    PRIMARY KEY (key_column, hash)
);

REVOKE ALL ON wide_key FROM PUBLIC;
-- the roles that look up candidates (0003); only the owner's function below writes it
GRANT SELECT ON wide_key TO lake_matcher, lake_reviewer;

-- Recounts every generated key column of person (one index-only GROUP BY each: ~2 s at
-- 1,000,000 persons). The lock makes two refreshes take turns (each would otherwise insert
-- what the other had not deleted yet); readers are not blocked, and see the old list until the
-- caller's transaction commits. Every name is schema-qualified and the temporary schema comes
-- last, so a caller's temporary tables cannot stand in for what this reads as the owner.
CREATE OR REPLACE FUNCTION lake_refresh_wide_keys() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c name;
    added integer;
    total integer := 0;
BEGIN
    LOCK TABLE public.wide_key IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM public.wide_key;
    FOR c IN
        SELECT a.attname FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = 'public.person'::regclass AND a.attnum > 0 AND NOT a.attisdropped
          AND a.attname LIKE 'k\_%'
        ORDER BY a.attname
    LOOP
        EXECUTE pg_catalog.format(
            'INSERT INTO public.wide_key (key_column, hash, persons) '
            'SELECT %L, %I, count(*) FROM public.person WHERE %I IS NOT NULL GROUP BY %I HAVING count(*) > 50',
            c, c, c, c);
        GET DIAGNOSTICS added = ROW_COUNT;
        total := total + added;
    END LOOP;
    RETURN total;
END
$$;
REVOKE ALL ON FUNCTION lake_refresh_wide_keys() FROM PUBLIC;
-- `lake people load` runs it inside its own transaction, before the commit: the list a load
-- commits counts exactly the persons it commits
GRANT EXECUTE ON FUNCTION lake_refresh_wide_keys() TO lake_loader;

SELECT lake_refresh_wide_keys();
