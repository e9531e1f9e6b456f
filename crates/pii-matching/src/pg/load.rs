//! Bulk load of a person file into `person`.

use super::{map_err, Db};
use crate::error::IndexError;
use crate::model::{Person, PERSON_COLUMNS};
use crate::people::{read_export, PeopleMapping};

/// One person as a CSV row in the column order of the COPYs here (empty = NULL).
fn write_person(w: &mut csv::Writer<Vec<u8>>, p: &Person) -> Result<(), IndexError> {
    let s = |v: &Option<compact_str::CompactString>| v.as_deref().unwrap_or("").to_string();
    w.write_record([
        p.person_id.to_string(),
        s(&p.first_name),
        s(&p.last_name),
        s(&p.middle_initial),
        p.dob.map(|d| d.to_string()).unwrap_or_default(),
        s(&p.sex),
        s(&p.ssn),
        s(&p.address),
        s(&p.city),
        s(&p.state),
        s(&p.zip),
        s(&p.phone),
    ])
    .map_err(|e| IndexError::Load(e.to_string()))
}

/// The persons of a person file (the index's column names; read as `lake people load` reads
/// it, any rejected row fails the load), normalised, as CSV in the column order of the COPY below.
fn normalised_csv(path: &std::path::Path) -> Result<Vec<u8>, IndexError> {
    let file = read_export(path, &PeopleMapping::identity())?;
    file.refuse_rejected(&path.display().to_string())?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let err = |e: csv::Error| IndexError::Load(e.to_string());
    w.write_record(PERSON_COLUMNS).map_err(err)?;
    for p in &file.persons {
        write_person(&mut w, p)?;
    }
    w.into_inner().map_err(|e| IndexError::Load(e.to_string()))
}

/// Loads a person file (columns by name, the benchmark's `people_<N>.csv` layout) with COPY, then
/// VACUUM ANALYZE and refreshes `wide_key`. Every value is normalised first ([`Person::normalised`], as the in-memory
/// adapter loads it), so the key columns hash what the records' keys hash.
/// A load into an empty table is a bulk load: its indexes are rebuilt afterwards, as compact as
/// CREATE INDEX after COPY makes them (the baseline's load). Row by row, page splits leave the
/// 64-bit key indexes ~30% larger, and each probe reads through more pages.
pub async fn copy_people_csv(db: &Db, path: &std::path::Path) -> Result<u64, IndexError> {
    let p = path.to_path_buf();
    let data = tokio::task::spawn_blocking(move || normalised_csv(&p))
        .await
        .map_err(|e| IndexError::Load(format!("load task: {e}")))??;
    let pool = db.pool();
    let mut conn = pool.acquire().await.map_err(map_err)?;
    let empty: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM person)")
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
    let mut copy = conn
        .copy_in_raw(
            "COPY person (person_id, first_name, last_name, middle_initial, dob, sex, ssn, address, city, \
             state, zip, phone) FROM STDIN WITH (FORMAT csv, HEADER true)",
        )
        .await
        .map_err(map_err)?;
    copy.send(data).await.map_err(map_err)?;
    let n = copy.finish().await.map_err(map_err)?;
    if empty {
        sqlx::query("REINDEX TABLE person").execute(&mut *conn).await.map_err(map_err)?;
    }
    sqlx::query("VACUUM ANALYZE person").execute(&mut *conn).await.map_err(map_err)?;
    // the keys more persons hold than the matcher reads (migration 0009)
    sqlx::query("SELECT lake_refresh_wide_keys()").execute(&mut *conn).await.map_err(map_err)?;
    Ok(n)
}

/// What happens to persons of the index that the loaded file does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// A full export: they move to `person_inactive` (no longer candidates, still explainable).
    Inactivate,
    /// A full export, `--prune`: they are deleted (from `person_inactive` too).
    Delete,
    /// A partial file (`--partial`): they stay as they are.
    Keep,
}

/// What a load changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadCounts {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Persons not in the export, moved to `person_inactive` ([`Missing::Inactivate`]).
    pub inactivated: u64,
    /// Inactive persons the export holds again (back in `person`).
    pub reactivated: u64,
    /// Persons not in the export, deleted ([`Missing::Delete`]).
    pub pruned: u64,
}

/// Upserts `persons` by `person_id` in one transaction (all or nothing): a person whose values
/// are already stored is left alone, so loading the same export twice changes nothing; persons
/// missing from the export are handled as `missing` says; `wide_key` is recounted in the same
/// transaction. Then ANALYZE.
pub async fn upsert_people(db: &Db, persons: &[Person], missing: Missing) -> Result<LoadCounts, IndexError> {
    upsert_people_with(db, persons, missing, &|_| {}).await
}

/// [`upsert_people`], telling `phase` what it starts: `staging` (COPY into a temporary table),
/// `upserting`, `missing persons`, `counting wide keys`, `committing`, `analyzing`.
pub async fn upsert_people_with(
    db: &Db,
    persons: &[Person],
    missing: Missing,
    phase: &(dyn Fn(&'static str) + Sync),
) -> Result<LoadCounts, IndexError> {
    let pool = db.pool();
    phase("staging");
    let mut tx = pool.begin().await.map_err(map_err)?;
    sqlx::query("CREATE TEMP TABLE person_load (LIKE person INCLUDING DEFAULTS) ON COMMIT DROP")
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    let mut w = csv::Writer::from_writer(Vec::new());
    for p in persons {
        write_person(&mut w, p)?;
    }
    let data = w.into_inner().map_err(|e| IndexError::Load(e.to_string()))?;
    let mut copy = tx
        .copy_in_raw(
            "COPY person_load (person_id, first_name, last_name, middle_initial, dob, sex, ssn, address, \
             city, state, zip, phone) FROM STDIN WITH (FORMAT csv)",
        )
        .await
        .map_err(map_err)?;
    copy.send(data).await.map_err(map_err)?;
    copy.finish().await.map_err(map_err)?;
    phase("upserting");
    let (inserted, updated): (i64, i64) = sqlx::query_as(
        "WITH up AS (
            INSERT INTO person (person_id, first_name, last_name, middle_initial, dob, sex, ssn, address, city, state, zip, phone)
            SELECT person_id, first_name, last_name, middle_initial, dob, sex, ssn, address, city, state, zip, phone FROM person_load
            ON CONFLICT (person_id) DO UPDATE SET
                first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,
                middle_initial = EXCLUDED.middle_initial, dob = EXCLUDED.dob, sex = EXCLUDED.sex,
                ssn = EXCLUDED.ssn, address = EXCLUDED.address, city = EXCLUDED.city,
                state = EXCLUDED.state, zip = EXCLUDED.zip, phone = EXCLUDED.phone
            WHERE (person.first_name, person.last_name, person.middle_initial, person.dob, person.sex,
                   person.ssn, person.address, person.city, person.state, person.zip, person.phone)
                IS DISTINCT FROM
                  (EXCLUDED.first_name, EXCLUDED.last_name, EXCLUDED.middle_initial, EXCLUDED.dob,
                   EXCLUDED.sex, EXCLUDED.ssn, EXCLUDED.address, EXCLUDED.city, EXCLUDED.state,
                   EXCLUDED.zip, EXCLUDED.phone)
            RETURNING (xmax = 0) AS inserted
        )
        SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(map_err)?;
    phase("missing persons");
    let reactivated =
        sqlx::query("DELETE FROM person_inactive i USING person_load l WHERE i.person_id = l.person_id")
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected();
    let gone = "person p WHERE NOT EXISTS (SELECT 1 FROM person_load l WHERE l.person_id = p.person_id)";
    let (inactivated, pruned) = match missing {
        Missing::Keep => (0, 0),
        Missing::Inactivate => {
            let sql = format!(
                "WITH gone AS (DELETE FROM {gone} RETURNING p.person_id, p.first_name, p.last_name,
                     p.middle_initial, p.dob, p.sex, p.ssn, p.address, p.city, p.state, p.zip, p.phone)
                 INSERT INTO person_inactive (person_id, first_name, last_name, middle_initial, dob, sex,
                     ssn, address, city, state, zip, phone)
                 SELECT * FROM gone"
            );
            (sqlx::query(&sql).execute(&mut *tx).await.map_err(map_err)?.rows_affected(), 0)
        }
        Missing::Delete => {
            let mut n = sqlx::query(&format!("DELETE FROM {gone}"))
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
            n += sqlx::query(
                "DELETE FROM person_inactive i WHERE NOT EXISTS \
                 (SELECT 1 FROM person_load l WHERE l.person_id = i.person_id)",
            )
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected();
            (0, n)
        }
    };
    // the wide keys of what this transaction commits (migration 0009), counted before the
    // commit so that no matcher sees these persons with an older count
    phase("counting wide keys");
    sqlx::query("SELECT lake_refresh_wide_keys()").execute(&mut *tx).await.map_err(map_err)?;
    phase("committing");
    tx.commit().await.map_err(map_err)?;
    phase("analyzing");
    // ANALYZE as the table owner (migration 0006), so the loader role needs no ownership
    sqlx::query("SELECT lake_analyze_person()").execute(&pool).await.map_err(map_err)?;
    let n = |v: i64| u64::try_from(v).unwrap_or_default();
    let (inserted, updated) = (n(inserted), n(updated));
    let unchanged = (persons.len() as u64).saturating_sub(inserted + updated);
    Ok(LoadCounts { inserted, updated, unchanged, inactivated, reactivated, pruned })
}
