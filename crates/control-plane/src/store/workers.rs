//! The `workers` table.

use sqlx::PgPool;
use wisehosting_crypto::{Aad, Sealer, envelope_mac_key, random_token, sha256_hex};

use super::{StoreError, is_unique_violation};
use crate::domain::{WorkerName, Zone};

/// A worker just created. The raw key is shown once and never stored.
#[derive(Debug)]
pub struct CreatedWorker {
    pub id: i64,
    pub raw_api_key: String,
}

/// Where a worker's sealed MAC key lives, for the sealing AAD.
pub fn mac_key_aad(id: &str) -> Aad<'_> {
    Aad { table: "workers", column: "mac_key_sealed", row: id }
}

/// Creates a worker with a fresh raw API key; stores the key's sha256 hex and the sealed
/// envelope MAC key derived from it.
pub async fn create(
    pool: &PgPool,
    sealer: &Sealer,
    name: &WorkerName,
    zone: Option<&Zone>,
) -> Result<CreatedWorker, StoreError> {
    let raw_api_key = random_token("whk_");
    let mut tx = pool.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO workers (name, zone, api_key_hash, mac_key_sealed) VALUES ($1, $2, $3, '') RETURNING id",
    )
    .bind(name.as_str())
    .bind(zone.map(Zone::as_str))
    .bind(sha256_hex(raw_api_key.as_bytes()))
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(format!("a worker named {name} already exists; pick another name"))
        } else {
            StoreError::Db(e)
        }
    })?;
    let row = id.to_string();
    let sealed = sealer.seal(envelope_mac_key(&raw_api_key).as_bytes(), mac_key_aad(&row))?;
    sqlx::query("UPDATE workers SET mac_key_sealed = $1 WHERE id = $2")
        .bind(sealed)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(CreatedWorker { id, raw_api_key })
}
