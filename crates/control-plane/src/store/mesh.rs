//! The WireGuard mesh's members (SPEC §11): the workers' keys and addresses (in `workers`) and
//! the central proxies' (`mesh_proxies`), which share 10.50.0.0/24.

use sqlx::PgPool;

/// The lowest free mesh address, 10.50.0.2–10.50.0.254 (10.50.0.1 is the control plane), over
/// workers and proxies, or NULL when the mesh is full; callers hold [`lock_addresses`].
macro_rules! free_mesh_address {
    () => {
        "(SELECT candidate FROM generate_series(2, 254) AS n,
                 LATERAL (SELECT ('10.50.0.' || n)::inet AS candidate) AS c
          WHERE NOT EXISTS (SELECT 1 FROM workers w WHERE w.wg_ip = c.candidate)
            AND NOT EXISTS (SELECT 1 FROM mesh_proxies p WHERE p.wg_ip = c.candidate)
          ORDER BY n LIMIT 1)"
    };
}
pub(crate) use free_mesh_address;

/// Serialises mesh-address allocation until the transaction ends (a unique index backs it).
pub(crate) async fn lock_addresses(tx: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('workers.wg_ip'))").execute(&mut *tx).await.map(drop)
}

/// Every member with its key and address: workers, then proxies, each by name.
pub async fn peers(db: impl sqlx::PgExecutor<'_>) -> Result<Vec<crate::mesh::Peer>, sqlx::Error> {
    sqlx::query_as(
        "SELECT 'worker' AS kind, name, wg_public_key, host(wg_ip) AS wg_ip FROM workers
         UNION ALL
         SELECT 'proxy', name, wg_public_key, host(wg_ip) FROM mesh_proxies
         ORDER BY kind DESC, name",
    )
    .fetch_all(db)
    .await
}

/// Adds the central proxy `name` with the public key `key` (checked), or gives the one of that
/// name this key; its address: the one it has, else the lowest free one (`None`: the mesh is
/// full).
pub async fn add_proxy(pool: &PgPool, name: &str, key: &str) -> Result<Option<String>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    lock_addresses(&mut tx).await?;
    let free: Option<String> =
        sqlx::query_scalar(concat!("SELECT host(", free_mesh_address!(), ")")).fetch_one(&mut *tx).await?;
    let Some(free) = free else {
        let kept: Option<String> = sqlx::query_scalar(
            "UPDATE mesh_proxies SET wg_public_key = $2 WHERE name = $1 RETURNING host(wg_ip)",
        )
        .bind(name)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(kept);
    };
    let ip: String = sqlx::query_scalar(
        "INSERT INTO mesh_proxies (name, wg_public_key, wg_ip) VALUES ($1, $2, $3::inet)
         ON CONFLICT (name) DO UPDATE SET wg_public_key = EXCLUDED.wg_public_key
         RETURNING host(wg_ip)",
    )
    .bind(name)
    .bind(key)
    .bind(&free)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(ip))
}

/// Removes the central proxy `name`; whether there was one.
pub async fn remove_proxy(pool: &PgPool, name: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM mesh_proxies WHERE name = $1").bind(name).execute(pool).await?;
    Ok(done.rows_affected() > 0)
}
