//! Bulk load of a person file into `person`.

use super::{map_err, Db};
use crate::index::IndexError;

/// Loads a person CSV (the benchmark's `people_<N>.csv` layout) with COPY, then VACUUM ANALYZE.
/// A load into an empty table is a bulk load: its indexes are rebuilt afterwards, as compact as
/// CREATE INDEX after COPY makes them (the baseline's load). Row by row, page splits leave the
/// 64-bit key indexes ~30% larger, and each probe reads through more pages.
pub async fn copy_people_csv(db: &Db, path: &std::path::Path) -> Result<u64, IndexError> {
    let data = tokio::fs::read(path).await.map_err(|e| IndexError::Load(e.to_string()))?;
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
