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
