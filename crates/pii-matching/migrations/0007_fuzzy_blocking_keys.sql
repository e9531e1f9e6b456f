-- Blocking keys that survive an error in any one field (docs/MATCHING.md, "Blocking"): the
-- keys of 0002 each need an exact birth date, an exact address and ZIP, or an exact phone.
-- Same scheme as 0002: generated BIGINT hash columns (hashtextextended of a text the matcher
-- builds the same way, pg::key_hash), each with a b-tree, all probed with `= ANY(array)`.
--
-- lake_soundex(text) is American Soundex exactly as the matcher's compare::soundex_code: ASCII
-- letters only (anything else is skipped), upper-cased; the first letter kept; H and W do not
-- separate equal codes, vowels do; padded with 0 to four characters; NULL without a letter.
-- Written in SQL (inlinable) with pg_catalog-qualified calls, so a search_path cannot change it.
CREATE OR REPLACE FUNCTION lake_soundex(s text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN l = '' THEN NULL ELSE
        pg_catalog.rpad(
            pg_catalog.left(l, 1) || pg_catalog.replace(pg_catalog.substr(pg_catalog.regexp_replace(
                -- the first letter's code (H, W: '-', equal to nothing), then the others' (H, W dropped)
                pg_catalog.translate(pg_catalog.left(l, 1), 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', '0123012-02245501262301-202')
                || pg_catalog.translate(pg_catalog.substr(l, 2), 'ABCDEFGIJKLMNOPQRSTUVXYZHW', '012301202245501262301202'),
                '(.)\1+', '\1', 'g'), 2), '0', ''),
            4, '0')
    END
    FROM (SELECT pg_catalog.upper(pg_catalog.regexp_replace(
        s, '[^ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz]', '', 'g')) AS l) x
$$;

-- The sorted pair of the two names' codes (swapped names give the same key). COLLATE "C":
-- byte order, as the matcher sorts. LEAST/GREATEST skip a NULL, so the pair starts with
-- left(a || b, 0): '' when both names have a code, NULL (no key) when either has none.
ALTER TABLE person
    ADD COLUMN IF NOT EXISTS k_names_year BIGINT GENERATED ALWAYS AS (hashtextextended(
        left(lake_soundex(last_name) || lake_soundex(first_name), 0) || LEAST(lake_soundex(last_name) COLLATE "C", lake_soundex(first_name) COLLATE "C") || '|'
        || GREATEST(lake_soundex(last_name) COLLATE "C", lake_soundex(first_name) COLLATE "C") || '|'
        || extract(year FROM dob)::int::text, 0)) STORED,
    ADD COLUMN IF NOT EXISTS k_names_mmdd BIGINT GENERATED ALWAYS AS (hashtextextended(
        left(lake_soundex(last_name) || lake_soundex(first_name), 0) || LEAST(lake_soundex(last_name) COLLATE "C", lake_soundex(first_name) COLLATE "C") || '|'
        || GREATEST(lake_soundex(last_name) COLLATE "C", lake_soundex(first_name) COLLATE "C") || '|'
        || extract(month FROM dob)::int::text || '-' || extract(day FROM dob)::int::text, 0)) STORED,
    ADD COLUMN IF NOT EXISTS k_last_sdx_dob BIGINT GENERATED ALWAYS AS (hashtextextended(
        lake_soundex(last_name) || '|' || (dob - DATE '2000-01-01')::text, 0)) STORED,
    ADD COLUMN IF NOT EXISTS k_first_sdx_dob BIGINT GENERATED ALWAYS AS (hashtextextended(
        lake_soundex(first_name) || '|' || (dob - DATE '2000-01-01')::text, 0)) STORED,
    ADD COLUMN IF NOT EXISTS k_last_sdx_year BIGINT GENERATED ALWAYS AS (hashtextextended(
        lake_soundex(last_name) || '|' || extract(year FROM dob)::int::text, 0)) STORED,
    -- a US ZIP only (NNNNN, NNNNN-NNNN, 9 digits), the house number (leading digits of the first
    -- word) and the first character of the second word
    ADD COLUMN IF NOT EXISTS k_zip_house_street BIGINT GENERATED ALWAYS AS (hashtextextended(
        CASE WHEN zip ~ '^[0-9]{5}(-?[0-9]{4})?$' THEN left(zip, 5) END || '|'
        || substring(address FROM '^([0-9]+)') || '|'
        || substring(address FROM '^[^ ]+ ([^ ])'), 0)) STORED;

CREATE INDEX IF NOT EXISTS person_k_names_year ON person (k_names_year);
CREATE INDEX IF NOT EXISTS person_k_names_mmdd ON person (k_names_mmdd);
CREATE INDEX IF NOT EXISTS person_k_last_sdx_dob ON person (k_last_sdx_dob);
CREATE INDEX IF NOT EXISTS person_k_first_sdx_dob ON person (k_first_sdx_dob);
CREATE INDEX IF NOT EXISTS person_k_last_sdx_year ON person (k_last_sdx_year);
CREATE INDEX IF NOT EXISTS person_k_zip_house_street ON person (k_zip_house_street);
