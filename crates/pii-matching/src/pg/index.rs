//! The person index in PostgreSQL: the keys of a batch hashed here as the generated key columns
//! of `person` (migrations 0002, 0007, 0008), looked up in one set-based query per chunk.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use compact_str::CompactString;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;

use super::Db;
use crate::index::{IndexError, PersonIndex};
use crate::model::{BlockingKey, BlockingKind, Person};

/// The person index in PostgreSQL: one query per chunk of keys (a UNION ALL of one `= ANY`
/// index scan per key kind over the keys' hashes, computed here by [`key_hash`]), the chunks
/// run concurrently on the pool's connections. A person may come back twice.
pub struct PgIndex {
    pub db: Arc<Db>,
    /// Keys per query; a batch larger than this runs as several concurrent queries.
    pub chunk: usize,
}

/// The keys of one query as the hashes of the generated key columns (migrations 0002, 0007, 0008),
/// one array per key kind that has keys. Hashing here, not in SQL, keeps that work off the
/// shared database.
#[derive(Default)]
struct KeyArrays(Vec<(BlockingKind, Vec<i64>)>);

impl KeyArrays {
    fn of(keys: &[BlockingKey]) -> Self {
        let mut a: Vec<(BlockingKind, Vec<i64>)> = Vec::new();
        for k in keys {
            let kind = k.kind();
            let h = key_hash(k);
            match a.iter_mut().find(|(x, _)| *x == kind) {
                Some((_, v)) => v.push(h),
                None => a.push((kind, vec![h])),
            }
        }
        a.sort_by_key(|(k, _)| column(*k)); // one statement text per set of kinds
        Self(a)
    }
}

/// The generated hash column of `person` that holds a key kind.
pub fn column(kind: BlockingKind) -> &'static str {
    match kind {
        BlockingKind::LastNameDob => "k_last_dob",
        BlockingKind::FirstNameDob => "k_first_dob",
        BlockingKind::Address => "k_address",
        BlockingKind::AddressZip => "k_address_zip",
        BlockingKind::Phone => "k_phone",
        BlockingKind::LastFirstName => "k_last_first",
        BlockingKind::NamesYear => "k_names_year",
        BlockingKind::NamesMonthDay => "k_names_mmdd",
        BlockingKind::LastSoundexDob => "k_last_sdx_dob",
        BlockingKind::FirstSoundexDob => "k_first_sdx_dob",
        BlockingKind::LastSoundexYear => "k_last_sdx_year",
        BlockingKind::ZipHouseStreet => "k_zip_house_street",
        BlockingKind::DobCity => "k_dob_city",
        BlockingKind::PhoneLast7 => "k_phone_last7",
        BlockingKind::NamesZip => "k_names_zip",
        BlockingKind::ZipDob => "k_zip_dob",
        BlockingKind::FirstSoundexMonthDay => "k_first_sdx_mmdd",
        BlockingKind::NamesSoundex => "k_names_sdx",
        BlockingKind::LastNameZip => "k_last_zip",
    }
}

/// The value of a key's generated column in `person` (migration 0002): PostgreSQL's
/// `hashtextextended(text, 0)` of the same text, e.g. `last_name || '|' || (dob - DATE
/// '2000-01-01')::text`. The test `key_hashes_equal_the_generated_columns` checks it against
/// the server on every key kind.
pub fn key_hash(k: &BlockingKey) -> i64 {
    use std::fmt::Write;
    let days = |d: &NaiveDate| (*d - EPOCH_2000).num_days();
    let sdx = |c: &[u8; 4]| c.iter().map(|&b| char::from(b)).collect::<CompactString>();
    let mut text = CompactString::default();
    // writing to a string cannot fail
    let _ = match k {
        BlockingKey::LastNameDob { last_name, dob } => write!(text, "{last_name}|{}", days(dob)),
        BlockingKey::FirstNameDob { first_name, dob } => write!(text, "{first_name}|{}", days(dob)),
        BlockingKey::Address { address } => write!(text, "{address}"),
        BlockingKey::AddressZip { address, zip } => write!(text, "{address}|{zip}"),
        BlockingKey::Phone { phone } => write!(text, "{phone}"),
        BlockingKey::LastFirstName { last_name, first_name } => write!(text, "{last_name}|{first_name}"),
        BlockingKey::NamesYear { low, high, year } => write!(text, "{}|{}|{year}", sdx(low), sdx(high)),
        BlockingKey::NamesMonthDay { low, high, month, day } => {
            write!(text, "{}|{}|{month}-{day}", sdx(low), sdx(high))
        }
        BlockingKey::LastSoundexDob { code, dob } | BlockingKey::FirstSoundexDob { code, dob } => {
            write!(text, "{}|{}", sdx(code), days(dob))
        }
        BlockingKey::LastSoundexYear { code, year } => write!(text, "{}|{year}", sdx(code)),
        BlockingKey::ZipHouseStreet { zip, house, street } => write!(text, "{zip}|{house}|{street}"),
        BlockingKey::DobCity { dob, city } => write!(text, "{city}|{}", days(dob)),
        BlockingKey::PhoneLast7 { digits } => write!(text, "{digits}"),
        BlockingKey::NamesZip { low, high, zip } => write!(text, "{}|{}|{zip}", sdx(low), sdx(high)),
        BlockingKey::ZipDob { zip, dob } => write!(text, "{zip}|{}", days(dob)),
        BlockingKey::FirstSoundexMonthDay { code, month, day } => write!(text, "{}|{month}-{day}", sdx(code)),
        BlockingKey::NamesSoundex { low, high } => write!(text, "{}|{}", sdx(low), sdx(high)),
        BlockingKey::LastNameZip { last_name, zip } => write!(text, "{last_name}|{zip}"),
    };
    pg_hash_bytes_extended(text.as_bytes()) as i64
}

const EPOCH_2000: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(d) => d,
    None => panic!("2000-01-01 is a date"),
};

/// PostgreSQL's `hash_bytes_extended(k, len, 0)` (src/common/hashfn.c: Bob Jenkins' lookup3,
/// 64-bit result `b << 32 | c`), which `hashtextextended` applies to a text's bytes under a
/// deterministic collation. Words are read little-endian, as every PostgreSQL on x86 and ARM
/// does; a big-endian server would hash differently (and fail the test above).
fn pg_hash_bytes_extended(mut k: &[u8]) -> u64 {
    const A: usize = 0;
    const B: usize = 1;
    const C: usize = 2;
    // mix(a, b, c): six steps of x -= y; x ^= rot(y, r); y += z, cycling (a c b), (b a c), (c b a)
    fn mix(s: &mut [u32; 3]) {
        for (i, r) in [4, 6, 8, 16, 19, 4].into_iter().enumerate() {
            let (x, y, z) = [(A, C, B), (B, A, C), (C, B, A)][i % 3];
            s[x] = s[x].wrapping_sub(s[y]) ^ s[y].rotate_left(r);
            s[y] = s[y].wrapping_add(s[z]);
        }
    }
    let word = |w: &[u8]| u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
    let init = 0x9e37_79b9_u32.wrapping_add(k.len() as u32).wrapping_add(3_923_095);
    let mut s = [init; 3];
    while k.len() >= 12 {
        for (j, v) in s.iter_mut().enumerate() {
            *v = v.wrapping_add(word(&k[4 * j..4 * j + 4]));
        }
        mix(&mut s);
        k = &k[12..];
    }
    // the last 0..=11 bytes, little-endian into a, b and c's upper three bytes (c's lowest
    // byte stands for the length, added above)
    for (i, &byte) in k.iter().enumerate() {
        let (j, shift) = if i < 8 { (i / 4, 8 * (i % 4)) } else { (C, 8 * (i - 7)) };
        s[j] = s[j].wrapping_add(u32::from(byte) << shift);
    }
    // final(a, b, c): seven steps of x ^= y; x -= rot(y, r), cycling (c b), (a c), (b a)
    for (i, r) in [14, 11, 25, 16, 4, 14, 24].into_iter().enumerate() {
        let (x, y) = [(C, B), (A, C), (B, A)][i % 3];
        s[x] = (s[x] ^ s[y]).wrapping_sub(s[y].rotate_left(r));
    }
    (u64::from(s[B]) << 32) | u64::from(s[C])
}

/// The candidate query for these key kinds: one `UNION ALL` branch per kind, each handing its
/// generated hash column all of its keys at once (one b-tree scan over the sorted hashes). A
/// row may come back twice (two keys) or, on a 64-bit collision, for no record at all: the
/// matcher dedups, and attaches a person to a record only when their normalised keys agree.
fn candidates_sql(kinds: impl Iterator<Item = BlockingKind>) -> String {
    let branches: Vec<String> = kinds
        .enumerate()
        .map(|(i, k)| {
            format!(
                "SELECT q.person_id, q.first_name, q.last_name, q.middle_initial, q.dob, q.sex, q.ssn, \
                 q.address, q.city, q.state, q.zip, q.phone FROM person q WHERE q.{} = ANY(${}::int8[])",
                column(k),
                i + 1
            )
        })
        .collect();
    branches.join("\nUNION ALL\n")
}

async fn candidates_query(pool: PgPool, a: Arc<KeyArrays>) -> Result<Vec<Person>, sqlx::Error> {
    if a.0.is_empty() {
        return Ok(Vec::new());
    }
    let sql = candidates_sql(a.0.iter().map(|(k, _)| *k));
    let mut q = sqlx::query(&sql);
    for (_, hashes) in &a.0 {
        q = q.bind(hashes);
    }
    let rows = q.fetch_all(&pool).await?;
    rows.iter().map(person_row).collect()
}

/// A `person` row in the column order of [`candidates_sql`] (values decode as inline strings).
fn person_row(r: &PgRow) -> Result<Person, sqlx::Error> {
    let s = |i: usize| r.try_get::<Option<CompactString>, _>(i);
    Ok(Person {
        person_id: r.try_get(0)?,
        first_name: s(1)?,
        last_name: s(2)?,
        middle_initial: s(3)?,
        dob: r.try_get(4)?,
        sex: s(5)?,
        ssn: s(6)?,
        address: s(7)?,
        city: s(8)?,
        state: s(9)?,
        zip: s(10)?,
        phone: s(11)?,
    })
}

#[async_trait]
impl PersonIndex for PgIndex {
    async fn candidates(&self, keys: &[BlockingKey]) -> Result<Vec<Person>, IndexError> {
        let chunks: Vec<Arc<KeyArrays>> =
            keys.chunks(self.chunk.max(1)).map(|c| Arc::new(KeyArrays::of(c))).collect();
        let out: Vec<Person> = self
            .db
            .run(|pool| {
                let chunks = chunks.clone();
                async move {
                    let tasks: Vec<_> =
                        chunks.into_iter().map(|a| tokio::spawn(candidates_query(pool.clone(), a))).collect();
                    let mut all = Vec::new();
                    for t in tasks {
                        let rows =
                            t.await.map_err(|e| sqlx::Error::Protocol(format!("query task: {e}")))??;
                        if all.is_empty() {
                            all = rows; // one chunk (the usual case): no copy
                        } else {
                            all.extend(rows);
                        }
                    }
                    Ok(all)
                }
            })
            .await?;
        // A person found by two keys comes back twice; the matcher's pool keeps the first (sorting
        // and deduplicating the ~300-byte rows here cost more than the duplicates).
        Ok(out)
    }
}
