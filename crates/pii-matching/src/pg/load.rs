//! Bulk load of a person file into `person`.

use super::{map_err, Db};
use crate::index::{read_csv, IndexError};
use crate::model::Person;

/// The persons of a CSV, normalised, as CSV in the column order of the COPY below.
fn normalised_csv(path: &std::path::Path) -> Result<Vec<u8>, IndexError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let err = |e: csv::Error| IndexError::Load(e.to_string());
    w.write_record(crate::index::PERSON_COLUMNS).map_err(err)?;
    for p in read_csv(path)?.into_iter().map(Person::normalised) {
        let id = p.person_id.to_string();
        let dob = p.dob.map(|d| d.to_string()).unwrap_or_default();
        let s = |v: &Option<compact_str::CompactString>| v.as_deref().unwrap_or("").to_string();
        w.write_record([
            id,
            s(&p.first_name),
            s(&p.last_name),
            s(&p.middle_initial),
            dob,
            s(&p.sex),
            s(&p.ssn),
            s(&p.address),
            s(&p.city),
            s(&p.state),
            s(&p.zip),
            s(&p.phone),
        ])
        .map_err(err)?;
    }
    w.into_inner().map_err(|e| IndexError::Load(e.to_string()))
}

/// Loads a person CSV (columns by name, the benchmark's `people_<N>.csv` layout) with COPY, then
/// VACUUM ANALYZE. Every value is normalised first ([`Person::normalised`], as the in-memory
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
    Ok(n)
}
