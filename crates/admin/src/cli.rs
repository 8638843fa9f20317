//! `wisehosting-admin`'s commands. There is no default account: the first one is made here,
//! on the control plane's host, with the control plane's config file (`CONFIG_PATH`, env,
//! credentials), and every change is written to the admin audit trail in its transaction.

use std::io::{IsTerminal, Read};

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use serde_json::json;
use wisehosting_control_plane::config::Config;
use wisehosting_control_plane::db::{self, DbError};
use wisehosting_control_plane::domain::AdminRole;
use wisehosting_control_plane::identity::totp;
use wisehosting_control_plane::store::{StoreError, admin};

use crate::password::{self, PasswordError};

#[derive(Debug, Parser)]
#[command(name = "wisehosting-admin", version, about = "The WiseHosting admin console for operators")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Creates an admin account with one role. The password is read from standard input when
    /// it is not a terminal; otherwise one is generated and printed alone on the last line.
    CreateAccount {
        #[arg(long)]
        username: String,
        /// super_admin, support, billing or read_only.
        #[arg(long)]
        role: String,
    },
    /// Grants a role (replacing a live grant of it), until `--expires-at` if given.
    Grant {
        #[arg(long)]
        username: String,
        #[arg(long)]
        role: String,
        /// RFC 3339, e.g. 2026-12-01T00:00:00Z: the grant gives nothing from then on.
        #[arg(long)]
        expires_at: Option<String>,
        /// Why, for the audit trail.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Revokes a role.
    Revoke {
        #[arg(long)]
        username: String,
        #[arg(long)]
        role: String,
    },
    /// Turns on a second factor (TOTP) for an account and prints its secret once, to add to
    /// an authenticator app; `--off` removes it. The secret is sealed with the control plane's
    /// master secret, so this and `serve` need `api_server.secret` (credential
    /// `api_server_secret`).
    Totp {
        #[arg(long)]
        username: String,
        #[arg(long)]
        off: bool,
    },
    /// Runs the console on `admin.listen` (default 127.0.0.1:9443) until SIGINT or SIGTERM.
    Serve,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Reading the config or reaching the database, as the control plane's commands do.
    #[error(transparent)]
    Setup(#[from] wisehosting_control_plane::cli::CliError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Serve(#[from] crate::serve::ServeError),
    #[error("{0}")]
    Usage(String),
}

fn role(text: &str) -> Result<AdminRole, CliError> {
    AdminRole::parse(text).ok_or_else(|| {
        CliError::Usage(format!("{text:?} is not a role; use super_admin, support, billing or read_only"))
    })
}

fn username(text: &str) -> Result<String, CliError> {
    let ok = (3..=32).contains(&text.len())
        && text.as_bytes()[0].is_ascii_lowercase()
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(text.to_string())
    } else {
        Err(CliError::Usage(format!(
            "{text:?} is not a username; use 3-32 lowercase letters, digits, '.', '_' or '-', starting with a letter"
        )))
    }
}

/// Who ran the command, for the audit trail.
fn actor() -> String {
    let user =
        std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "unknown".into());
    format!("cli:{}", user.chars().take(64).collect::<String>())
}

async fn connect() -> Result<sqlx::PgPool, CliError> {
    Ok(connect_with_config().await?.1)
}

async fn connect_with_config() -> Result<(Config, sqlx::PgPool), CliError> {
    let (config, pool) = wisehosting_control_plane::cli::connect_configured().await?;
    db::check_clean(&pool).await?;
    db::migrate_up(&pool).await?;
    Ok((config, pool))
}

async fn account(pool: &sqlx::PgPool, name: &str) -> Result<i64, CliError> {
    admin::account_id(pool, name).await?.ok_or_else(|| {
        CliError::Usage(format!("no admin account is named {name}; create it with create-account"))
    })
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Totp { username: name, off } => {
            let (config, pool) = connect_with_config().await?;
            if config.api_server.secret.is_empty() {
                return Err(CliError::Usage(
                    "api_server.secret is not set; second factors are sealed with the control plane's master secret: give this command the same config (credential api_server_secret)".into(),
                ));
            }
            let (_, sealer) = wisehosting_control_plane::startup::keys(&config)
                .map_err(|e| CliError::Usage(e.to_string()))?;
            let id = account(&pool, &name).await?;
            let secret = (!off).then(totp::new_secret);
            let mut tx = pool.begin().await?;
            admin::set_totp(&mut *tx, &sealer, id, secret.as_ref().map(|s| &s[..])).await?;
            let action = if off { "admin.totp_removed" } else { "admin.totp_enrolled" };
            admin::audit(&mut *tx, None, &actor(), action, ("admin", &name), json!({}), None).await?;
            tx.commit().await?;
            pool.close().await;
            match secret {
                None => println!("Removed the second factor of {name}."),
                Some(secret) => {
                    println!("Turned on a second factor for {name}: sign-in now needs the current code.");
                    println!("Add this to an authenticator app (shown this once):");
                    println!("{}", totp::otpauth_uri(&secret, &name));
                    println!("{}", totp::secret_base32(&secret));
                }
            }
            Ok(())
        }
        Command::Serve => {
            let (config, pool) = connect_with_config().await?;
            let server = crate::serve::Server::bind(&config, pool).await?;
            let stop = tokio_util::sync::CancellationToken::new();
            wisehosting_control_plane::cli::spawn_signal_listener(stop.clone())?;
            wisehosting_control_plane::say::say(&format!("Admin console: {}", server.url()));
            wisehosting_worker::service::ready(&format!("admin console on {}", server.url()), stop.clone());
            server.run(async move { stop.cancelled().await }).await?;
            Ok(())
        }
        Command::CreateAccount { username: name, role: r } => {
            let (name, r) = (username(&name)?, role(&r)?);
            let stdin = std::io::stdin();
            let (password, generated) = if stdin.is_terminal() {
                (password::generate(), true)
            } else {
                let mut text = String::new();
                stdin.lock().take(4096).read_to_string(&mut text).map_err(|e| {
                    CliError::Usage(format!("cannot read the password from standard input: {e}"))
                })?;
                (text.trim_end_matches(['\r', '\n']).to_string(), false)
            };
            let hash = password::hash(&password)?;
            let pool = connect().await?;
            let mut tx = pool.begin().await?;
            let id = admin::create_account(&mut *tx, &name, &hash).await?;
            admin::grant(&mut tx, id, r, &actor(), "created with the account", None).await?;
            let detail = json!({ "role": r });
            admin::audit(&mut *tx, None, &actor(), "admin.created", ("admin", &name), detail, None).await?;
            tx.commit().await?;
            pool.close().await;
            println!("Created the admin account {name} with the role {r}.");
            if generated {
                println!("Its password follows, shown this once:");
                println!("{password}");
            }
            Ok(())
        }
        Command::Grant { username: name, role: r, expires_at, reason } => {
            let r = role(&r)?;
            let expires_at = expires_at
                .map(|t| {
                    DateTime::parse_from_rfc3339(&t).map(|t| t.with_timezone(&Utc)).map_err(|_| {
                        CliError::Usage(format!(
                            "--expires-at {t:?} is not RFC 3339; give one like 2026-12-01T00:00:00Z"
                        ))
                    })
                })
                .transpose()?;
            let pool = connect().await?;
            let id = account(&pool, &name).await?;
            let mut tx = pool.begin().await?;
            admin::grant(&mut tx, id, r, &actor(), &reason, expires_at).await?;
            let detail = json!({ "role": r, "expires_at": expires_at, "reason": reason });
            admin::audit(&mut *tx, None, &actor(), "admin.role_granted", ("admin", &name), detail, None)
                .await?;
            tx.commit().await?;
            pool.close().await;
            match expires_at {
                Some(t) => println!("Granted {r} to {name} until {}.", t.to_rfc3339()),
                None => println!("Granted {r} to {name}."),
            }
            Ok(())
        }
        Command::Revoke { username: name, role: r } => {
            let r = role(&r)?;
            let pool = connect().await?;
            let id = account(&pool, &name).await?;
            let mut tx = pool.begin().await?;
            if !admin::revoke(&mut *tx, id, r).await? {
                return Err(CliError::Usage(format!("{name} does not hold {r}")));
            }
            admin::audit(
                &mut *tx,
                None,
                &actor(),
                "admin.role_revoked",
                ("admin", &name),
                json!({ "role": r }),
                None,
            )
            .await?;
            tx.commit().await?;
            pool.close().await;
            println!("Revoked {r} from {name}.");
            Ok(())
        }
    }
}
