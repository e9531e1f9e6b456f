-- Wide keys (docs/MATCHING.md, "Wide keys"): a blocking key that more persons hold than a record
-- may have candidates (`blocking.max_candidates`, 200 by default) cannot single out the record's
-- person, so the matcher ignores it: it finds nobody. This table lists the keys that more than
-- 50 persons hold, with their count, so that the candidate query leaves out the ones above the
-- rules' limit before it reads a row (a common surname without a birth date holds hundreds).
-- The matcher also drops any key that returns more rows than the limit, so a key missing here
-- (persons added since the last refresh) costs time, never a different decision.
-- Refreshed from `person` by lake_refresh_wide_keys(): at the end of this migration, and by
-- lake_analyze_person(), which every load runs.
CREATE TABLE IF NOT EXISTS wide_key (
    key_column TEXT NOT NULL,   -- a generated key column of person (k_...)
    hash BIGINT NOT NULL,       -- its value
    persons INTEGER NOT NULL,   -- the persons holding it (more than 50)
    PRIMARY KEY (key_column, hash)
);

REVOKE ALL ON wide_key FROM PUBLIC;
-- the roles that look up candidates (0003); only the owner's functions below write it
GRANT SELECT ON wide_key TO lake_matcher, lake_reviewer;

-- Recounts every generated key column of person (one index-only GROUP BY each: ~2 s at
-- 1,000,000 persons) in one transaction: a concurrent query sees the old list or the new one.
CREATE OR REPLACE FUNCTION lake_refresh_wide_keys() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    c name;
    added integer;
    total integer := 0;
BEGIN
    DELETE FROM public.wide_key;
    FOR c IN
        SELECT attname FROM pg_attribute
        WHERE attrelid = 'public.person'::regclass AND attnum > 0 AND NOT attisdropped
          AND attname LIKE 'k\_%'
        ORDER BY attname
    LOOP
        EXECUTE format(
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

-- 0006's ANALYZE for the loader, now refreshing the wide keys too
CREATE OR REPLACE FUNCTION lake_analyze_person() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    ANALYZE public.person;
    PERFORM public.lake_refresh_wide_keys();
END
$$;
REVOKE ALL ON FUNCTION lake_analyze_person() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lake_analyze_person() TO lake_loader;

SELECT lake_refresh_wide_keys();
