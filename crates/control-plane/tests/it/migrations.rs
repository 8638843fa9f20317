use sqlx::PgPool;
use wisehosting_control_plane::db::{self, AppliedState, DbError};
use wisehosting_testkit::{fresh_database, test_config};

async fn tables(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations' ORDER BY 1")
        .fetch_all(pool)
        .await
        .expect("list tables")
}

#[tokio::test]
async fn every_up_then_every_down_then_every_up_again_round_trips() {
    let pool = PgPool::connect(&fresh_database(false).await).await.expect("connect");
    let total = db::MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).count();
    assert_eq!(db::migrate_up(&pool).await.expect("up"), total);
    let after_up = tables(&pool).await;
    for table in
        ["users", "sessions", "audit_events", "workers", "apps", "deployments", "jobs", "env_vars", "domains"]
    {
        assert!(after_up.iter().any(|t| t == table), "missing table {table}: {after_up:?}");
    }
    let reverted = db::migrate_down(&pool, total).await.expect("down all");
    assert_eq!(reverted.len(), total);
    assert!(tables(&pool).await.is_empty(), "down left tables behind");
    assert_eq!(db::migrate_up(&pool).await.expect("up again"), total);
    assert_eq!(tables(&pool).await, after_up);
    assert!(db::is_current(&pool).await.expect("current"));
}

#[tokio::test]
async fn status_lists_applied_and_pending_migrations() {
    let pool = PgPool::connect(&fresh_database(true).await).await.expect("connect");
    db::migrate_down(&pool, 1).await.expect("down 1");
    let status = db::status(&pool).await.expect("status");
    let last = status.last().expect("some migrations");
    assert_eq!(last.state, AppliedState::Pending);
    assert!(status[..status.len() - 1].iter().all(|m| matches!(m.state, AppliedState::Applied { .. })));
    assert!(!db::is_current(&pool).await.expect("current"));
}

#[tokio::test]
async fn reverting_more_than_applied_changes_nothing() {
    let pool = PgPool::connect(&fresh_database(true).await).await.expect("connect");
    let err = db::migrate_down(&pool, 99).await.expect_err("too many");
    assert!(matches!(err, DbError::TooFew { .. }), "{err}");
    assert!(db::is_current(&pool).await.expect("current"));
}

#[tokio::test]
async fn start_up_refuses_a_dirty_migration_and_says_how_to_recover() {
    let url = fresh_database(true).await;
    let pool = PgPool::connect(&url).await.expect("connect");
    sqlx::query("UPDATE _sqlx_migrations SET success = FALSE WHERE version = 2")
        .execute(&pool)
        .await
        .expect("mark dirty");
    let err = wisehosting_control_plane::App::build(test_config(&url)).await.err().expect("refused");
    let message = err.to_string();
    assert!(message.contains("migration 2") && message.contains("dirty"), "{message}");
    assert!(message.contains("DELETE FROM _sqlx_migrations WHERE version = 2"), "{message}");
}

#[tokio::test]
async fn start_up_refuses_a_migration_edited_after_it_was_applied() {
    let url = fresh_database(true).await;
    let pool = PgPool::connect(&url).await.expect("connect");
    sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00' WHERE version = 1")
        .execute(&pool)
        .await
        .expect("edit");
    let err = db::check_clean(&pool).await.expect_err("refused");
    assert!(matches!(err, DbError::Changed { version: 1 }), "{err}");
}

#[tokio::test]
async fn start_up_refuses_a_migration_from_a_newer_binary() {
    let url = fresh_database(true).await;
    let pool = PgPool::connect(&url).await.expect("connect");
    sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9999, 'future', TRUE, '\\x00', 1)")
        .execute(&pool)
        .await
        .expect("insert");
    let err = db::check_clean(&pool).await.expect_err("refused");
    assert!(matches!(err, DbError::Unknown { version: 9999 }), "{err}");
}

/// A PostgreSQL cluster of its own, listening on 127.0.0.1 with TLS on (`scripts/pg-temp.sh`
/// with `WH_PG_TLS_PORT`), stopped on drop.
struct TlsPostgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl TlsPostgres {
    fn start() -> TlsPostgres {
        let dir = tempfile::Builder::new().prefix("wh-tls-pg").tempdir_in("/tmp").expect("dir");
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-temp.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .arg("start")
            .arg(dir.path().join("pg"))
            .env("WH_PG_TLS_PORT", port.to_string())
            .output()
            .expect("pg-temp.sh");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        TlsPostgres { dir, port }
    }

    fn config(&self, query: &str) -> wisehosting_control_plane::config::DatabaseConfig {
        let url = format!("postgres://postgres@127.0.0.1:{}/postgres?{query}", self.port);
        wisehosting_control_plane::config::DatabaseConfig {
            url: Some(wisehosting_control_plane::config::DatabaseUrl::new(url)),
            acquire_timeout_secs: 10,
            ..Default::default()
        }
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-temp.sh");
        let _ = std::process::Command::new("bash")
            .arg(script)
            .arg("stop")
            .arg(self.dir.path().join("pg"))
            .output();
    }
}

/// A managed PostgreSQL is reached over TLS: `sslmode=require` encrypts (the server says so),
/// `verify-full` refuses a certificate no known authority vouches for, and accepts it once the
/// authority is given as `sslrootcert`.
#[tokio::test]
async fn the_database_is_reached_over_tls_with_sslmode_require_and_verified_with_a_root_certificate() {
    let pg = TlsPostgres::start();
    let pool = db::connect(&pg.config("sslmode=require")).await.expect("connect with sslmode=require");
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("pg_stat_ssl");
    assert!(ssl, "the connection is encrypted");
    pool.close().await;

    let refused = db::connect(&pg.config("sslmode=verify-full")).await.expect_err("an unknown authority");
    let message = refused.to_string();
    assert!(
        message.contains("cannot connect to the database") && message.contains("certificate"),
        "{message}"
    );

    let root = pg.dir.path().join("pg/data/root.crt");
    let pool = db::connect(&pg.config(&format!("sslmode=verify-full&sslrootcert={}", root.display())))
        .await
        .expect("connect, the certificate verified");
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await.expect("query");
    assert_eq!(one, 1);
}

/// The states in a column's CHECK constraint, as the migrated database has them.
async fn checked_states(pool: &PgPool, table: &str, column: &str) -> Vec<String> {
    let defs: Vec<String> = sqlx::query_scalar(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
         WHERE c.conrelid = $1::regclass AND c.contype = 'c'",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .expect("constraints");
    let def = defs
        .into_iter()
        .filter(|d| !d.contains("IS NOT NULL"))
        .find(|d| d.contains(&format!("({column} = ")) || d.contains(&format!("(({column})")))
        .unwrap_or_else(|| panic!("no CHECK on {table}.{column}"));
    // `CHECK ((status = ANY (ARRAY['a'::text, 'b'::text])))`
    def.split('\'').skip(1).step_by(2).map(str::to_string).collect()
}

#[tokio::test]
async fn the_state_enums_name_exactly_the_states_the_database_allows() {
    use wisehosting_control_plane::domain::state::{
        AdminRole, AlertKind, AlertStatus, AppStatus, DeploymentStatus, JobStatus, WorkerStatus,
    };
    let pool = PgPool::connect(&fresh_database(true).await).await.expect("connect");
    let names = |all: Vec<&'static str>| all.into_iter().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        checked_states(&pool, "apps", "status").await,
        names(AppStatus::ALL.iter().map(|s| s.as_str()).collect())
    );
    assert_eq!(
        checked_states(&pool, "deployments", "status").await,
        names(DeploymentStatus::ALL.iter().map(|s| s.as_str()).collect())
    );
    assert_eq!(
        checked_states(&pool, "jobs", "status").await,
        names(JobStatus::ALL.iter().map(|s| s.as_str()).collect())
    );
    assert_eq!(
        checked_states(&pool, "workers", "status").await,
        names(WorkerStatus::ALL.iter().map(|s| s.as_str()).collect())
    );
    assert_eq!(
        checked_states(&pool, "alerts", "kind").await,
        names(AlertKind::ALL.iter().map(|s| s.as_str()).collect())
    );
    assert_eq!(
        checked_states(&pool, "alert_rules", "kind").await,
        names(
            AlertKind::ALL.iter().filter(|k| **k != AlertKind::WebhookDisabled).map(|s| s.as_str()).collect()
        )
    );
    assert_eq!(
        checked_states(&pool, "admin_role_grants", "role").await,
        names(AdminRole::ALL.iter().map(|s| s.as_str()).collect())
    );
    assert_eq!(
        checked_states(&pool, "alerts", "status").await,
        names(AlertStatus::ALL.iter().map(|s| s.as_str()).collect())
    );
}
