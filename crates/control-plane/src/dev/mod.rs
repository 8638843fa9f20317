//! Single-machine mode (`wisehosting dev`): a private PostgreSQL cluster in the data dir,
//! generated secrets kept beside it (files mode 0600), and the control plane on loopback.
//!
//! The file at `CONFIG_PATH`, when set, is applied over the generated values, so a script can
//! pin `proxy.token` or `api_server.secret`. A second run reuses the cluster and the secrets.

pub mod postgres;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wisehosting_crypto::Secret;
use wisehosting_worker::config::{DeploySettings, EdgeConfig, PodmanConfig};
use wisehosting_worker::{Agent, WorkerConfig};
use yaml_serde::{Mapping, Value};

use crate::config::{Config, ConfigError};
use crate::domain::WorkerName;
use crate::say::say;
use crate::startup::{App, StartupError};

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("the data dir {path} is not writable ({source}); choose another with --data-dir")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot keep the secret {path}: {source}")]
    Secret { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Postgres(#[from] postgres::PgError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("cannot create the database: {0}")]
    CreateDb(String),
    #[error("cannot set up the local worker: {0}")]
    Worker(String),
    #[error("cannot write the admin console's config admin.yaml: {0}")]
    AdminConfig(String),
}

#[derive(Debug, Clone)]
pub struct DevOptions {
    pub data_dir: PathBuf,
    pub port: u16,
}

/// Secrets generated on first run and kept in `<data dir>/secrets/<name>`.
const GENERATED_SECRETS: [&str; 4] =
    ["api_server_secret", "worker_join_secret", "worker_api_key", "internal_api_token"];
/// The name of the worker single-machine mode runs in-process.
pub const LOCAL_WORKER: &str = "local";

/// Runs the platform until `shutdown` is cancelled, then stops the control plane and the
/// cluster, in that order.
pub async fn run(options: DevOptions, shutdown: CancellationToken) -> Result<(), DevError> {
    let bins = postgres::Binaries::find()?;
    let run_as = postgres::RunAs::detect()?;
    let data_dir = prepare_data_dir(&options.data_dir, run_as.switch)?;
    let secrets = load_or_generate_secrets(&data_dir)?;
    let layout = postgres::Layout::choose(&data_dir, &run_as);
    if !layout.root.starts_with(&data_dir) {
        note_cluster_location(&data_dir, &layout.root)?;
    }
    let created = tokio::task::block_in_place(|| postgres::ensure(&bins, &run_as, &layout))?;
    let cluster = tokio::task::block_in_place(|| postgres::start(&bins, &run_as, &layout))?;
    let result = serve(&options, &data_dir, &layout, &secrets, created, shutdown).await;
    tokio::task::block_in_place(|| cluster.stop());
    result
}

async fn serve(
    options: &DevOptions,
    data_dir: &Path,
    layout: &postgres::Layout,
    secrets: &[(String, String)],
    created: bool,
    shutdown: CancellationToken,
) -> Result<(), DevError> {
    create_database(layout).await?;
    let base = generated_config(options, layout, secrets);
    let path = std::env::var_os("CONFIG_PATH").map(PathBuf::from);
    let config = Config::load_layered(base, path.as_deref())?;
    crate::telemetry::init(&config.log);
    let app = App::build(config).await?;
    let addr = app.local_addr().map_err(StartupError::Serve)?;
    let url = format!("http://{addr}");
    let internal = app.internal_addr();
    let (db, sealer, hub, join_secret) =
        (app.db(), app.sealer(), app.hub(), app.config().workers.join_secret.clone());
    let edge = app.config().edge.clone().unwrap_or_default();
    let token = app.shutdown_token();
    let serving = tokio::spawn(app.run());
    let local = LocalWorker { db: &db, sealer: &sealer, join_secret: &join_secret, url: &url, edge };
    let worker = match local.start(data_dir, secrets, shutdown.clone()).await {
        Ok(id) => id,
        Err(e) => {
            token.cancel();
            let _ = serving.await;
            return Err(e);
        }
    };
    let online = wait_online(&hub, worker, Duration::from_secs(15)).await;
    let cluster_note = if created { "created" } else { "reused" };
    let worker_note = if online { "online" } else { "connecting (see the log)" };
    let admin_note = match internal {
        Some(internal) => {
            let path = write_admin_config(data_dir, layout, secrets, internal)?;
            let admin = admin_binary();
            format!(
                "CONFIG_PATH={path} {admin} serve\n                (first make an account: CONFIG_PATH={path} {admin} create-account --username you --role super_admin)",
                path = path.display()
            )
        }
        None => "off (internal_api.token is empty)".into(),
    };
    say(&format!(
        "WiseHosting is running in single-machine mode.\n  Dashboard:    {url}/\n  API:          {url}/api  (health: {url}/health, readiness: {url}/ready)\n  Worker:       {LOCAL_WORKER} (id {worker}), {worker_note}\n  Apps:         http://<app slug>.localhost:8080/ (the edge router on 127.0.0.1:8080)\n  Admin:        {admin_note}\n  Data dir:     {}\n  PostgreSQL:   {} ({cluster_note}; unix socket only, no TCP port)\nPress Ctrl-C to stop.",
        data_dir.display(),
        layout.root.display()
    ));
    shutdown.cancelled().await;
    token.cancel();
    match serving.await {
        Ok(result) => result?,
        Err(e) => return Err(StartupError::Serve(std::io::Error::other(e.to_string())).into()),
    }
    say("Stopped the control plane; stopping PostgreSQL.");
    Ok(())
}

/// What the local worker needs of the running control plane.
struct LocalWorker<'a> {
    db: &'a sqlx::PgPool,
    sealer: &'a wisehosting_crypto::Sealer,
    /// The fleet's join secret; the local worker, like any other, never sees the master.
    join_secret: &'a Secret,
    url: &'a str,
    edge: EdgeConfig,
}

impl LocalWorker<'_> {
    /// Registers the local worker (its key kept in the data dir) and runs the agent in-process.
    async fn start(
        &self,
        data_dir: &Path,
        secrets: &[(String, String)],
        shutdown: CancellationToken,
    ) -> Result<i64, DevError> {
        let api_key =
            secrets.iter().find(|(n, _)| n == "worker_api_key").map(|(_, v)| v.clone()).unwrap_or_default();
        let name = WorkerName::parse(LOCAL_WORKER).map_err(|e| DevError::Worker(e.to_string()))?;
        let id = crate::store::workers::ensure_with_key(self.db, self.sealer, &name, api_key.clone())
            .await
            .map_err(|e| DevError::Worker(e.to_string()))?;
        let worker_dir = data_dir.join("worker");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&worker_dir)
            .map_err(|source| DevError::DataDir { path: worker_dir.clone(), source })?;
        let containers_conf = worker_dir.join("containers.conf");
        fs::write(&containers_conf, CONTAINERS_CONF)
            .map_err(|source| DevError::DataDir { path: containers_conf.clone(), source })?;
        let deploy = local_presets(
            &containers_conf,
            DeploySettings { allow_local_repos: true, ..DeploySettings::default() },
        );
        let config = WorkerConfig {
            control_plane_url: self.url.to_string(),
            control_plane_ca_file: None,
            api_key: Secret::new(api_key),
            shared_secret: self.join_secret.clone(),
            name: LOCAL_WORKER.into(),
            zone: None,
            edge: self.edge.clone(),
            podman: PodmanConfig { containers_conf: Some(containers_conf) },
            data_dir: worker_dir,
            deploy,
            // One machine: no mesh to bring up (the worker's mesh address is loopback).
            mesh: Default::default(),
        };
        let agent = Agent::new(config).map_err(|e| DevError::Worker(e.to_string()))?;
        tokio::spawn(agent.run(shutdown));
        Ok(id)
    }
}

/// The language presets on the local base images `scripts/preset-images.sh` builds, each one
/// this machine has (a machine without a registry has no other); the official images else.
fn local_presets(containers_conf: &Path, mut deploy: DeploySettings) -> DeploySettings {
    // One podman call lists what this machine has of them.
    let listed = std::process::Command::new("podman")
        .env("CONTAINERS_CONF", containers_conf)
        .args([
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "--filter",
            "reference=localhost/wisehosting/*",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let exists = |image: &str| listed.lines().any(|line| line.trim() == image);
    for (slot, name) in [
        (&mut deploy.node_image, "node"),
        (&mut deploy.python_image, "python"),
        (&mut deploy.go_image, "go"),
        (&mut deploy.rust_image, "rust"),
        (&mut deploy.runtime_image, "debian"),
    ] {
        let local = format!("localhost/wisehosting/{name}:bookworm");
        if exists(&local) {
            *slot = local;
        }
    }
    deploy
}

async fn wait_online(hub: &crate::hub::Hub, worker_id: i64, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if hub.is_online(worker_id) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The podman settings this machine needs (see `deploy/containers.conf`).
const CONTAINERS_CONF: &str = include_str!("../../../../deploy/containers.conf");

/// Creates the data dir (0700, or 0711 so the cluster's account may traverse it) and proves
/// it writable. Returns its absolute path.
fn prepare_data_dir(dir: &Path, other_user_traverses: bool) -> Result<PathBuf, DevError> {
    let err = |source| DevError::DataDir { path: dir.to_path_buf(), source };
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(err)?;
    let dir = dir.canonicalize().map_err(err)?;
    let mode = if other_user_traverses { 0o711 } else { 0o700 };
    fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).map_err(err)?;
    let probe = dir.join(".write-probe");
    fs::write(&probe, b"ok").map_err(err)?;
    fs::remove_file(&probe).map_err(err)?;
    Ok(dir)
}

fn load_or_generate_secrets(data_dir: &Path) -> Result<Vec<(String, String)>, DevError> {
    let dir = data_dir.join("secrets");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|source| DevError::Secret { path: dir.clone(), source })?;
    GENERATED_SECRETS
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let err = |source| DevError::Secret { path: path.clone(), source };
            match fs::read_to_string(&path) {
                Ok(text) if !text.trim().is_empty() => {
                    return Ok((name.to_string(), text.trim().to_string()));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(err(e)),
            }
            let value = match *name {
                "worker_api_key" => wisehosting_crypto::random_token("whk_"),
                _ => hex::encode(wisehosting_crypto::random_bytes::<32>()),
            };
            write_private(&path, value.as_bytes()).map_err(err)?;
            Ok((name.to_string(), value))
        })
        .collect()
}

/// `<data dir>/admin.yaml` (mode 0600, rewritten each run): what `wisehosting-admin` needs of
/// this platform — its database, and the internal API's address and token.
fn write_admin_config(
    data_dir: &Path,
    layout: &postgres::Layout,
    secrets: &[(String, String)],
    internal: std::net::SocketAddr,
) -> Result<PathBuf, DevError> {
    let token =
        secrets.iter().find(|(n, _)| n == "internal_api_token").map(|(_, v)| v.as_str()).unwrap_or_default();
    let mut db = Mapping::new();
    db.insert("url".into(), layout.url("wisehosting").into());
    let mut internal_api = Mapping::new();
    internal_api.insert("token".into(), token.into());
    let mut admin = Mapping::new();
    admin.insert("internal_api_url".into(), format!("http://{internal}").into());
    let mut root = Mapping::new();
    root.insert("database".into(), Value::Mapping(db));
    root.insert("internal_api".into(), Value::Mapping(internal_api));
    root.insert("admin".into(), Value::Mapping(admin));
    let text =
        yaml_serde::to_string(&Value::Mapping(root)).map_err(|e| DevError::AdminConfig(e.to_string()))?;
    let path = data_dir.join("admin.yaml");
    let text = format!("# Written by `wisehosting dev` for wisehosting-admin on each run.\n{text}");
    write_private(&path, text.as_bytes())
        .map_err(|source| DevError::Secret { path: path.clone(), source })?;
    Ok(path)
}

/// Writes a file only its owner may read (mode 0600), replacing what was there.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(path)?;
    file.write_all(bytes)
}

/// `wisehosting-admin` beside this binary when it is there (a workspace build makes both).
fn admin_binary() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("wisehosting-admin")))
        .filter(|path| path.exists())
        .map_or_else(|| "wisehosting-admin".to_string(), |path| path.display().to_string())
}

fn note_cluster_location(data_dir: &Path, root: &Path) -> Result<(), DevError> {
    let path = data_dir.join("postgres-location.txt");
    let text = format!(
        "The PostgreSQL cluster of this data dir is kept in {}\nbecause the `postgres` user cannot traverse to {}.\n",
        root.display(),
        data_dir.display()
    );
    fs::write(&path, text).map_err(|source| DevError::DataDir { path, source })
}

/// The local worker's edge router's port: apps answer at `http://<slug>.localhost:8080/`.
const EDGE_PORT: u16 = 8080;

fn generated_config(options: &DevOptions, layout: &postgres::Layout, secrets: &[(String, String)]) -> Value {
    let generated =
        |name: &str| secrets.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let secret = generated("api_server_secret");
    let mut workers = Mapping::new();
    workers.insert("join_secret".into(), generated("worker_join_secret").into());
    let mut api = Mapping::new();
    api.insert("host".into(), "127.0.0.1".into());
    api.insert("port".into(), Value::Number(options.port.into()));
    api.insert("secret".into(), secret.into());
    let mut db = Mapping::new();
    db.insert("url".into(), layout.url("wisehosting").into());
    db.insert("min_connections".into(), Value::Number(1.into()));
    db.insert("max_connections".into(), Value::Number(10.into()));
    // The internal API on a free loopback port, for the admin console (see admin.yaml).
    let mut internal = Mapping::new();
    internal.insert("bind".into(), "127.0.0.1:0".into());
    internal.insert("token".into(), generated("internal_api_token").into());
    let mut root = Mapping::new();
    root.insert("internal_api".into(), Value::Mapping(internal));
    root.insert("single_machine".into(), Value::Bool(true));
    root.insert("apps_port".into(), Value::Number(EDGE_PORT.into()));
    root.insert("api_server".into(), Value::Mapping(api));
    root.insert("database".into(), Value::Mapping(db));
    root.insert("workers".into(), Value::Mapping(workers));
    // The local worker's edge router; `edge:` in CONFIG_PATH overrides any of it.
    let mut edge = Mapping::new();
    edge.insert("listen".into(), format!("127.0.0.1:{EDGE_PORT}").into());
    edge.insert("metrics_listen".into(), "127.0.0.1:9101".into());
    edge.insert("https_listen".into(), "127.0.0.1:8443".into());
    root.insert("edge".into(), Value::Mapping(edge));
    Value::Mapping(root)
}

async fn create_database(layout: &postgres::Layout) -> Result<(), DevError> {
    use sqlx::Connection;
    let url = layout.url("postgres");
    let mut conn = sqlx::PgConnection::connect(&url).await.map_err(|e| DevError::CreateDb(e.to_string()))?;
    crate::store::create_platform_database(&mut conn).await.map_err(|e| DevError::CreateDb(e.to_string()))?;
    let _ = conn.close().await;
    Ok(())
}
