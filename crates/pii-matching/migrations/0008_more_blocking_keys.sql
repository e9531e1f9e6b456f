-- More blocking keys for records with three or more fields wrong or blank (docs/MATCHING.md,
-- "Blocking"): each key of 0002 and 0007 needs a name, or the ZIP with the street.
-- Same scheme as 0007: generated BIGINT hash columns (hashtextextended of the text the matcher
-- builds the same way, pg::key_hash), each with a b-tree, all probed with `= ANY(array)`. The
-- stored values are the normalised ones a load writes (phone NNN-NNN-NNNN, names and city upper
-- case, an empty value as NULL; NULLIF keeps an empty text from making a key, as in Rust);
-- lake_soundex is 0007's.
ALTER TABLE person
    -- city and birth date (days since 2000-01-01, as in 0002)
    ADD COLUMN IF NOT EXISTS k_dob_city BIGINT GENERATED ALWAYS AS (hashtextextended(
        NULLIF(city, '') || '|' || (dob - DATE '2000-01-01')::text, 0)) STORED,
    -- the last seven digits of a canonical phone: NNN-NNNN
    ADD COLUMN IF NOT EXISTS k_phone_last7 BIGINT GENERATED ALWAYS AS (hashtextextended(
        CASE WHEN phone ~ '^[0-9]{3}-[0-9]{3}-[0-9]{4}$' THEN right(phone, 8) END, 0)) STORED,
    -- the sorted Soundex pair of the names (as 0007's k_names_year) and the US ZIP's five digits
    ADD COLUMN IF NOT EXISTS k_names_zip BIGINT GENERATED ALWAYS AS (hashtextextended(
        left(lake_soundex(last_name) || lake_soundex(first_name), 0) || LEAST(lake_soundex(last_name) COLLATE "C", lake_soundex(first_name) COLLATE "C") || '|'
        || GREATEST(lake_soundex(last_name) COLLATE "C", lake_soundex(first_name) COLLATE "C") || '|'
        || CASE WHEN zip ~ '^[0-9]{5}(-?[0-9]{4})?$' THEN left(zip, 5) END, 0)) STORED,
    -- the US ZIP's five digits and birth date
    ADD COLUMN IF NOT EXISTS k_zip_dob BIGINT GENERATED ALWAYS AS (hashtextextended(
        CASE WHEN zip ~ '^[0-9]{5}(-?[0-9]{4})?$' THEN left(zip, 5) END || '|' || (dob - DATE '2000-01-01')::text, 0)) STORED,
    -- the first name's Soundex and birth month and day (as 0007's k_names_mmdd)
    ADD COLUMN IF NOT EXISTS k_first_sdx_mmdd BIGINT GENERATED ALWAYS AS (hashtextextended(
        lake_soundex(first_name) || '|'
        || extract(month FROM dob)::int::text || '-' || extract(day FROM dob)::int::text, 0)) STORED,
    -- the sorted Soundex pair alone
    ADD COLUMN IF NOT EXISTS k_names_sdx BIGINT GENERATED ALWAYS AS (hashtextextended(
        left(lake_soundex(last_name) || lake_soundex(first_name), 0) || LEAST(lake_soundex(last_name) COLLATE "C", lake_soundex(first_name) COLLATE "C") || '|'
        || GREATEST(lake_soundex(last_name) COLLATE "C", lake_soundex(first_name) COLLATE "C"), 0)) STORED,
    -- last name and the US ZIP's five digits
    ADD COLUMN IF NOT EXISTS k_last_zip BIGINT GENERATED ALWAYS AS (hashtextextended(
        NULLIF(last_name, '') || '|' || CASE WHEN zip ~ '^[0-9]{5}(-?[0-9]{4})?$' THEN left(zip, 5) END, 0)) STORED;

CREATE INDEX IF NOT EXISTS person_k_dob_city ON person (k_dob_city);
CREATE INDEX IF NOT EXISTS person_k_phone_last7 ON person (k_phone_last7);
CREATE INDEX IF NOT EXISTS person_k_names_zip ON person (k_names_zip);
CREATE INDEX IF NOT EXISTS person_k_zip_dob ON person (k_zip_dob);
CREATE INDEX IF NOT EXISTS person_k_first_sdx_mmdd ON person (k_first_sdx_mmdd);
CREATE INDEX IF NOT EXISTS person_k_names_sdx ON person (k_names_sdx);
CREATE INDEX IF NOT EXISTS person_k_last_zip ON person (k_last_zip);
