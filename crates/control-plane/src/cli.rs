//! The `wisehosting` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::db::{self, AppliedState, DbError};
use crate::dev::{self, DevError, DevOptions};
use crate::domain::{NameError, WorkerName, Zone};
use crate::say::say;
use crate::startup::{App, StartupError};
use crate::store::{self, StoreError};
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "wisehosting",
    version,
    about = "WiseHosting control plane: a self-hosted platform-as-a-service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane with the config at CONFIG_PATH (the default command).
    Serve,
    /// Run the whole platform on this machine: a private PostgreSQL, the control plane on loopback.
    Dev {
        /// Where the cluster, the secrets and the platform's state are kept.
        #[arg(long, default_value = ".wisehosting")]
        data_dir: PathBuf,
        /// Port of the dashboard and API on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 8081)]
        port: u16,
    },
    /// Apply, revert or list database migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Manage worker hosts.
    Worker {
        #[command(subcommand)]
        action: WorkerAction,
    },
    /// Render the WireGuard mesh's `wg-quick` configs.
    Mesh {
        #[command(subcommand)]
        action: MeshAction,
    },
    /// Check configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print the user API's OpenAPI 3.1 document (as served at /api/openapi.json), for
    /// generating clients without a running control plane.
    Openapi,
}

#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Revert the last N applied migrations (default 1).
    Down {
        #[arg(default_value_t = 1)]
        steps: usize,
    },
    /// List migrations as applied, pending, dirty or unknown.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum WorkerAction {
    /// Create a worker and print its raw API key, once, alone on the last line.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        zone: Option<String>,
        /// The worker's WireGuard public key (`wisehosting-worker mesh-key` on its host): it
        /// is given its mesh address now, so its host joins the mesh (`wisehosting mesh
        /// config --worker NAME`) before it first registers, over the mesh.
        #[arg(long)]
        wg_public_key: Option<String>,
    },
    /// List the workers: id, name, status, zone and mesh address.
    List {
        /// JSON: `[{"id", "name", "status", "zone", "wg_ip"}]`.
        #[arg(long)]
        json: bool,
    },
    /// Drain a worker: it takes no new apps, and the apps it has are deployed on other
    /// workers of their zone (it removes its copies once they run there).
    Disable {
        #[arg(long)]
        name: String,
    },
    /// Let a disabled worker connect and take apps again.
    Enable {
        #[arg(long)]
        name: String,
    },
    /// Delete a worker (refused while apps run there: disable it first and let them move).
    Delete {
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MeshAction {
    /// Print the control plane's `wg-quick` file (its key made in mesh.private_key_file when
    /// missing), or with --worker or --proxy the one of that worker or central proxy.
    Config {
        #[arg(long, conflicts_with = "proxy")]
        worker: Option<String>,
        #[arg(long)]
        proxy: Option<String>,
        /// Where that host keeps its private key (a worker: its data_dir's wg-private.key).
        #[arg(long, alias = "worker-key-file", default_value = "/var/lib/wisehosting-worker/wg-private.key")]
        key_file: PathBuf,
    },
    /// Bring this host's mesh interface (mesh.interface) up, unless it is, and make its peers
    /// the workers and proxies that have joined; run again after one joins. Needs root.
    Up,
    /// Central proxies on the mesh: a Traefik host that reads the proxy config and reaches the
    /// workers at their mesh addresses through this host.
    Proxy {
        #[command(subcommand)]
        action: ProxyAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProxyAction {
    /// Give a central proxy a mesh address from its public key (`wg genkey | tee key | wg
    /// pubkey` on its host); again with a new key to change it, the address kept.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        wg_public_key: String,
    },
    /// Take a central proxy off the mesh (then `wisehosting mesh up` removes its peer).
    Remove {
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Validate a config file (default: CONFIG_PATH) and print it resolved, secrets redacted.
    Check { path: Option<PathBuf> },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error(transparent)]
    Dev(#[from] DevError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("cannot listen for shutdown signals: {0}")]
    Signals(std::io::Error),
    #[error("cannot write the output: {0}")]
    Output(String),
    /// Bad input to a command, with the fix.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Mesh(#[from] crate::mesh::MeshError),
    #[error("no worker is named {0}; see `wisehosting worker list`")]
    NoWorker(String),
    #[error(
        "worker {name} still runs {}: disable it (`wisehosting worker disable --name {name}`), wait until its apps run elsewhere, then delete it",
        apps.join(", ")
    )]
    WorkerBusy { name: String, apps: Vec<String> },
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::Dev { data_dir, port } => {
            let shutdown = CancellationToken::new();
            spawn_signal_listener(shutdown.clone())?;
            dev::run(DevOptions { data_dir, port }, shutdown).await.map_err(CliError::from)
        }
        Command::Migrate { action } => migrate(action).await,
        Command::Worker { action: WorkerAction::Create { name, zone, wg_public_key } } => {
            create_worker(&name, zone.as_deref(), wg_public_key.as_deref()).await
        }
        Command::Worker { action: WorkerAction::List { json } } => list_workers(json).await,
        Command::Worker { action: WorkerAction::Disable { name } } => set_worker_enabled(&name, false).await,
        Command::Worker { action: WorkerAction::Enable { name } } => set_worker_enabled(&name, true).await,
        Command::Worker { action: WorkerAction::Delete { name } } => delete_worker(&name).await,
        Command::Mesh { action: MeshAction::Config { worker, proxy, key_file } } => {
            let spoke = match (worker, proxy) {
                (Some(name), _) => Some((crate::mesh::PeerKind::Worker, name)),
                (None, Some(name)) => Some((crate::mesh::PeerKind::Proxy, name)),
                (None, None) => None,
            };
            mesh_config(spoke, &key_file).await
        }
        Command::Mesh { action: MeshAction::Proxy { action } } => mesh_proxy(action).await,
        Command::Mesh { action: MeshAction::Up } => mesh_up().await,
        Command::Config { action: ConfigAction::Check { path } } => check_config(path),
        Command::Openapi => {
            let doc = crate::http::openapi().to_pretty_json().map_err(|e| CliError::Output(e.to_string()))?;
            println!("{doc}");
            Ok(())
        }
    }
}

async fn serve() -> Result<(), CliError> {
    let config = Config::load_from_env()?;
    telemetry::init(&config.log);
    let app = App::build(config).await?;
    spawn_signal_listener(app.shutdown_token())?;
    if let Ok(addr) = app.local_addr() {
        tracing::info!(%addr, "control plane listening");
        wisehosting_worker::service::ready(
            &format!("control plane listening on {addr}"),
            app.shutdown_token(),
        );
    }
    app.run().await?;
    Ok(())
}

/// Cancels `token` on the first SIGINT or SIGTERM.
pub fn spawn_signal_listener(token: CancellationToken) -> Result<(), CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).map_err(CliError::Signals)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(CliError::Signals)?;
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("shutdown signal received; draining");
        wisehosting_worker::service::stopping();
        token.cancel();
    });
    Ok(())
}

/// Runs a command's future on a fresh runtime: the `main` of both binaries. An error is one
/// line on standard error and a failing exit code.
pub fn block_on_main<E: std::fmt::Display>(
    work: impl std::future::Future<Output = Result<(), E>>,
) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The configured database (the config as `serve` reads it), with tracing set up.
pub async fn connect_configured() -> Result<(Config, sqlx::PgPool), CliError> {
    let config = Config::load_from_env()?;
    telemetry::init(&config.log);
    if config.database.url.is_none() {
        return Err(ConfigError::Invalid(
            "database.url is not set; set it in the config file or WH__DATABASE__URL".into(),
        )
        .into());
    }
    let pool = db::connect(&config.database).await?;
    Ok((config, pool))
}

async fn migrate(action: MigrateAction) -> Result<(), CliError> {
    let (_, pool) = connect_configured().await?;
    match action {
        MigrateAction::Up => {
            let applied = db::migrate_up(&pool).await?;
            say(&format!("applied {applied} migration(s); the schema is current"));
        }
        MigrateAction::Down { steps } => {
            let reverted = db::migrate_down(&pool, steps).await?;
            for version in &reverted {
                say(&format!("reverted {version:04}"));
            }
            say(&format!("reverted {} migration(s)", reverted.len()));
        }
        MigrateAction::Status => {
            for m in db::status(&pool).await? {
                let state = match m.state {
                    AppliedState::Applied { at } => format!("applied {at} UTC"),
                    AppliedState::Pending => "pending".into(),
                    AppliedState::Dirty => {
                        "DIRTY (failed part-way; see `wisehosting serve` for how to recover)".into()
                    }
                    AppliedState::Unknown => "unknown to this binary (applied by a newer version)".into(),
                };
                say(&format!("{:04}  {:<24} {state}", m.version, m.description));
            }
        }
    }
    pool.close().await;
    Ok(())
}

async fn list_workers(json: bool) -> Result<(), CliError> {
    let (_, pool) = connect_configured().await?;
    db::check_clean(&pool).await?;
    let workers = store::workers::list(&pool).await.map_err(StoreError::from)?;
    pool.close().await;
    if json {
        let text = serde_json::to_string_pretty(&workers).map_err(|e| CliError::Output(e.to_string()))?;
        say(&text);
        return Ok(());
    }
    say(&format!("{:<6} {:<24} {:<9} {:<12} {}", "ID", "NAME", "STATUS", "ZONE", "MESH ADDRESS"));
    for w in &workers {
        say(&format!(
            "{:<6} {:<24} {:<9} {:<12} {}",
            w.id,
            w.name,
            w.status.as_str(),
            w.zone.as_deref().unwrap_or("-"),
            w.wg_ip.as_deref().unwrap_or("-")
        ));
    }
    Ok(())
}

/// Records an operator's action on a worker in the audit trail.
async fn audit_worker(
    pool: &sqlx::PgPool,
    action: store::audit::AuditAction,
    id: Option<i64>,
    name: &str,
) -> Result<(), CliError> {
    let event = store::audit::AuditEvent {
        user_id: None,
        actor: "operator:cli",
        action,
        target_type: Some("worker"),
        target_id: id.map(|id| id.to_string()),
        ip: None,
        detail: serde_json::json!({ "name": name }),
    };
    store::audit::record(pool, event).await.map_err(StoreError::from)?;
    Ok(())
}

async fn set_worker_enabled(name: &str, enabled: bool) -> Result<(), CliError> {
    let (_, pool) = connect_configured().await?;
    db::check_clean(&pool).await?;
    if !store::workers::set_enabled(&pool, name, enabled).await.map_err(StoreError::from)? {
        return Err(CliError::NoWorker(name.to_string()));
    }
    let action = if enabled {
        store::audit::AuditAction::WorkerEnabled
    } else {
        store::audit::AuditAction::WorkerDisabled
    };
    audit_worker(&pool, action, None, name).await?;
    pool.close().await;
    if enabled {
        say(&format!(
            "Worker {name} is enabled: it is online again at its next connection and takes new apps."
        ));
    } else {
        say(&format!(
            "Worker {name} is disabled: it takes no new apps, and its apps are being deployed on other workers of their zone."
        ));
    }
    Ok(())
}

async fn delete_worker(name: &str) -> Result<(), CliError> {
    let (_, pool) = connect_configured().await?;
    db::check_clean(&pool).await?;
    let deleted = store::workers::delete(&pool, name).await.map_err(StoreError::from)?;
    let id = match deleted {
        Ok(id) => id,
        Err(store::workers::DeleteRefusal::NoSuchWorker) => return Err(CliError::NoWorker(name.to_string())),
        Err(store::workers::DeleteRefusal::AppsRunning(apps)) => {
            return Err(CliError::WorkerBusy { name: name.to_string(), apps });
        }
    };
    audit_worker(&pool, store::audit::AuditAction::WorkerDeleted, Some(id), name).await?;
    pool.close().await;
    say(&format!("Deleted worker {name} (id {id}); its API key no longer works."));
    Ok(())
}

async fn mesh_config(
    spoke: Option<(crate::mesh::PeerKind, String)>,
    key_file: &std::path::Path,
) -> Result<(), CliError> {
    let (config, pool) = connect_configured().await?;
    db::check_clean(&pool).await?;
    let peers = store::mesh::peers(&pool).await.map_err(StoreError::from)?;
    pool.close().await;
    let mesh = &config.mesh;
    let text = match spoke {
        None => {
            crate::mesh::hub_public_key(&mesh.private_key_file)?;
            crate::mesh::hub_config(&mesh.private_key_file, mesh.listen_port, &peers)
        }
        Some((kind, name)) => {
            let peer = peers.iter().find(|p| p.kind == kind && p.name == name).ok_or_else(|| {
                if kind == crate::mesh::PeerKind::Proxy {
                    CliError::Usage(format!(
                        "no central proxy is named {name}; add it with `wisehosting mesh proxy add`"
                    ))
                } else {
                    crate::mesh::MeshError::NoWorker(name.clone()).into()
                }
            })?;
            let hub = crate::mesh::hub_public_key(&mesh.private_key_file)?;
            crate::mesh::spoke_config(peer, &hub, &mesh.endpoint, key_file)?
        }
    };
    print!("{text}");
    Ok(())
}

/// `--wg-public-key`, checked; `source` says where a right one comes from.
fn wg_public_key_arg(
    key: &str,
    source: &str,
) -> Result<wisehosting_crypto::wireguard::WgPublicKey, CliError> {
    wisehosting_crypto::wireguard::WgPublicKey::parse(key.trim())
        .map_err(|e| CliError::Usage(format!("--wg-public-key: {e}; give what {source}")))
}

async fn mesh_proxy(action: ProxyAction) -> Result<(), CliError> {
    let (_, pool) = connect_configured().await?;
    db::check_clean(&pool).await?;
    db::migrate_up(&pool).await?;
    match action {
        ProxyAction::Add { name, wg_public_key } => {
            let name = WorkerName::parse(&name)?;
            let key = wg_public_key_arg(&wg_public_key, "`wg pubkey` printed on the proxy's host")?;
            let ip = store::mesh::add_proxy(&pool, name.as_str(), &key.to_string())
                .await
                .map_err(StoreError::from)?;
            pool.close().await;
            match ip {
                Some(ip) => say(&format!(
                    "Central proxy {name} has mesh address {ip}: run `wisehosting mesh up` here, and give its host `wisehosting mesh config --proxy {name}`."
                )),
                None => {
                    return Err(CliError::Usage(
                        "the mesh is full (10.50.0.0/24): no address is free".into(),
                    ));
                }
            }
        }
        ProxyAction::Remove { name } => {
            let removed = store::mesh::remove_proxy(&pool, &name).await.map_err(StoreError::from)?;
            pool.close().await;
            if !removed {
                return Err(CliError::Usage(format!("no central proxy is named {name}")));
            }
            say(&format!("Removed central proxy {name}; run `wisehosting mesh up` to drop its peer."));
        }
    }
    Ok(())
}

async fn mesh_up() -> Result<(), CliError> {
    let (config, pool) = connect_configured().await?;
    db::check_clean(&pool).await?;
    let peers = store::mesh::peers(&pool).await.map_err(StoreError::from)?;
    pool.close().await;
    let mesh = &config.mesh;
    let done = crate::mesh::up(
        &mesh.interface,
        mesh.userspace.as_deref(),
        &mesh.private_key_file,
        mesh.listen_port,
        &peers,
    )
    .await?;
    let name = &mesh.interface;
    say(&if done.brought_up {
        format!("Brought {name} up with {} peer(s).", done.peers)
    } else {
        format!(
            "{name} was up: {} peer(s) added, {} removed; {} in all.",
            done.peers_added, done.peers_removed, done.peers
        )
    });
    if done.forwarding_turned_on {
        say("Turned IPv4 forwarding on: central proxies reach the workers through this host.");
    }
    Ok(())
}

async fn create_worker(name: &str, zone: Option<&str>, wg_public_key: Option<&str>) -> Result<(), CliError> {
    let name = WorkerName::parse(name)?;
    let zone = zone.map(Zone::parse).transpose()?;
    let wg_public_key = wg_public_key
        .map(|key| wg_public_key_arg(key, "`wisehosting-worker mesh-key` printed on the worker's host"))
        .transpose()?;
    let (config, pool) = connect_configured().await?;
    config.require_for_serve()?;
    db::check_clean(&pool).await?;
    db::migrate_up(&pool).await?;
    let (_, sealer) = crate::startup::keys(&config)?;
    let created = store::workers::create(&pool, &sealer, &name, zone.as_ref()).await?;
    let address = match &wg_public_key {
        Some(key) => store::workers::join_mesh(&pool, name.as_str(), &key.to_string())
            .await
            .map_err(StoreError::from)?
            .flatten(),
        None => None,
    };
    pool.close().await;
    say(&format!("Created worker {name} with id {}.", created.id));
    match (&wg_public_key, address) {
        (Some(_), Some(ip)) => say(&format!(
            "Its mesh address is {ip}: run `wisehosting mesh up` here, and give its host `wisehosting mesh config --worker {name}`."
        )),
        (Some(_), None) => say("The mesh is full (10.50.0.0/24): it has no mesh address."),
        (None, _) => {}
    }
    say("Its API key follows, shown this once; give it to the worker (credential worker_api_key):");
    say(&created.raw_api_key);
    Ok(())
}

fn check_config(path: Option<PathBuf>) -> Result<(), CliError> {
    let config = match path {
        Some(path) => Config::load(Some(&path))?,
        None => Config::load_from_env()?,
    };
    print!("{}", config.to_redacted_yaml());
    eprintln!("config is valid");
    Ok(())
}
