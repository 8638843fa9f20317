//! `wisehosting-admin`'s account commands against a real PostgreSQL, run as an operator would
//! run them (the binary, the control plane's config file, the password on standard input).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use chrono::{Duration, Utc};
use sqlx::PgPool;
use wisehosting_control_plane::domain::AdminRole;
use wisehosting_control_plane::store::admin;

struct Setup {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    db: PgPool,
}

async fn setup() -> Setup {
    let url = wisehosting_testkit::fresh_database(true).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, format!("database:\n  url: {url}\n")).expect("config");
    let db = PgPool::connect(&url).await.expect("connect");
    Setup { _dir: dir, config, db }
}

fn admin_cmd(setup: &Setup, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wisehosting-admin"));
    cmd.args(args)
        .env("CONFIG_PATH", &setup.config)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write");
        }
    }
    child.wait_with_output().expect("wait")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn accounts_are_made_with_a_checked_bcrypt_password_and_roles_granted_until_they_expire() {
    let s = setup().await;
    let none: i64 =
        sqlx::query_scalar("SELECT count(*) FROM admin_accounts").fetch_one(&s.db).await.expect("count");
    assert_eq!(none, 0, "no default account");

    let made = admin_cmd(
        &s,
        &["create-account", "--username", "ops", "--role", "super_admin"],
        Some("a long enough password\n"),
    );
    assert!(made.status.success(), "{}", text(&made.stderr));
    assert!(text(&made.stdout).contains("Created the admin account ops with the role super_admin"));
    assert!(!text(&made.stdout).contains("a long enough password"), "a given password is never printed");
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM admin_accounts WHERE username = 'ops'")
        .fetch_one(&s.db)
        .await
        .expect("row");
    assert!(hash.starts_with("$2b$12$"), "{hash}");
    assert!(
        bcrypt::verify("a long enough password", &hash).is_ok_and(|ok| ok),
        "the newline is not part of it"
    );
    let id = admin::account_id(&s.db, "ops").await.expect("query").expect("account");
    assert_eq!(admin::roles_at(&s.db, id, Utc::now()).await.expect("roles"), [AdminRole::SuperAdmin]);

    // Refusals name the problem; nothing is written.
    for (args, stdin, needle) in [
        (
            vec!["create-account", "--username", "ops", "--role", "support"],
            "another long password",
            "exists already",
        ),
        (
            vec!["create-account", "--username", "long", "--role", "support"],
            &*"x".repeat(73),
            "at most 72 bytes",
        ),
        (vec!["create-account", "--username", "short", "--role", "support"], "tiny", "shorter than 12"),
        (
            vec!["create-account", "--username", "Bad Name", "--role", "support"],
            "a long enough password",
            "is not a username",
        ),
        (
            vec!["create-account", "--username", "newbie", "--role", "root"],
            "a long enough password",
            "is not a role",
        ),
        (vec!["grant", "--username", "nobody", "--role", "support"], "", "no admin account is named nobody"),
        (vec!["grant", "--username", "ops", "--role", "support", "--expires-at", "tomorrow"], "", "RFC 3339"),
        (vec!["revoke", "--username", "ops", "--role", "billing"], "", "does not hold billing"),
    ] {
        let out = admin_cmd(&s, &args, Some(stdin));
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(text(&out.stderr).contains(needle), "{args:?}: {}", text(&out.stderr));
    }
    let accounts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM admin_accounts").fetch_one(&s.db).await.expect("count");
    assert_eq!(accounts, 1);

    // A grant that expires gives nothing from that instant on.
    let until = (Utc::now() + Duration::hours(1)).to_rfc3339();
    let out = admin_cmd(
        &s,
        &["grant", "--username", "ops", "--role", "support", "--expires-at", &until, "--reason", "on call"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let at = |d: Duration| admin::roles_at(&s.db, id, Utc::now() + d);
    assert_eq!(at(Duration::minutes(59)).await.expect("roles"), [AdminRole::SuperAdmin, AdminRole::Support]);
    assert_eq!(at(Duration::minutes(61)).await.expect("roles"), [AdminRole::SuperAdmin]);
    let out = admin_cmd(&s, &["revoke", "--username", "ops", "--role", "support"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(at(Duration::zero()).await.expect("roles"), [AdminRole::SuperAdmin]);

    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM admin_audit_events ORDER BY id")
        .fetch_all(&s.db)
        .await
        .expect("audit");
    assert_eq!(actions, ["admin.created", "admin.role_granted", "admin.role_revoked"]);
}

#[tokio::test]
async fn on_a_terminal_a_password_is_generated_and_printed_alone_on_the_last_line() {
    let s = setup().await;
    // Standard input is a pseudo-terminal, as when an operator types the command.
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let out = Command::new(env!("CARGO_BIN_EXE_wisehosting-admin"))
        .args(["create-account", "--username", "term", "--role", "read_only"])
        .env("CONFIG_PATH", &s.config)
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(Stdio::from(pty.slave))
        .output()
        .expect("run");
    drop(pty.master);
    let printed = text(&out.stdout);
    assert!(out.status.success(), "{printed}{}", text(&out.stderr));
    let password = printed.lines().last().expect("a last line").to_string();
    assert_eq!(password.len(), 24, "{printed}");
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM admin_accounts WHERE username = 'term'")
        .fetch_one(&s.db)
        .await
        .expect("row");
    assert!(bcrypt::verify(&password, &hash).is_ok_and(|ok| ok));
}
