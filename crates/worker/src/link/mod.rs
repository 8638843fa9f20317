//! The worker's link to the control plane (SPEC §4).
//!
//! [`Agent::run`] loops until shutdown: register (shared secret + raw API key → JWT), open the
//! WebSocket with the JWT, read the `X-WH-Connection` id and derive the per-direction keys,
//! expect `welcome`, send `hello` with the container inventory, then heartbeat every interval
//! and answer admin queries, while a refresher renews the JWT 2 minutes before expiry (sent
//! over the socket as `auth_refresh`). Any failure ends the session; the loop waits a jittered,
//! capped, exponentially growing delay and starts again from registration.

mod backoff;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;
use wisehosting_proto::messages::{AdminQueryReply, AuthRefresh, Hello};
use wisehosting_proto::{
    CONNECTION_HEADER, LinkKeys, MAX_FRAME_BYTES, Receiver, Sender, ServerMessage, mac_key_from_api_key,
};

pub use backoff::Backoff;
pub use wisehosting_proto::messages::Outgoing;

use crate::config::{WorkerConfig, WorkerConfigError, check_control_plane_url};
use crate::deploy::Pipeline;
use crate::runtime::Podman;
use crate::stats::HostSampler;

/// Renew the JWT this long before it expires.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(120);
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// The envelope's fields around a payload (`t`, `i`, `s`, `ts`, `h` and the JSON punctuation),
/// with room to spare.
const FRAME_OVERHEAD: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Config(#[from] WorkerConfigError),
    #[error("the control plane refused our credentials (401); check api_key and shared_secret")]
    Unauthorized,
    #[error("the control plane answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("cannot reach the control plane: {0}")]
    Http(String),
    #[error("WebSocket: {0}")]
    WebSocket(String),
    #[error("the control plane sent no valid connection id header")]
    NoConnectionId,
    #[error("the control plane sent no welcome")]
    NoWelcome,
    #[error("the control plane refused a frame or closed the link: {0}")]
    Closed(String),
    #[error("a frame from the control plane failed verification: {0}")]
    BadFrame(String),
}

/// What the agent is doing, for the dev banner, tests and the worker's metrics.
#[derive(Debug, Default)]
pub struct AgentStatus {
    pub connected: AtomicBool,
    pub registrations: AtomicU64,
    pub sessions: AtomicU64,
    pub refreshes: AtomicU64,
    pub heartbeats: AtomicU64,
    /// Route tables the edge router swapped in (pushed by the control plane).
    pub route_swaps: AtomicU64,
    /// Retire-and-prune passes finished after deploys (old containers stopped, old images
    /// pruned), shared with the pipeline.
    pub housekeeping_done: Arc<AtomicU64>,
    connection_id: Mutex<Option<String>>,
    worker_id: AtomicU64,
    /// The current worker JWT (what the agent registered or refreshed last).
    token: Mutex<Option<wisehosting_crypto::Secret>>,
    /// Where the edge router and its metrics listen, once bound.
    edge_addr: Mutex<Option<std::net::SocketAddr>>,
    metrics_addr: Mutex<Option<std::net::SocketAddr>>,
}

impl AgentStatus {
    pub fn connection_id(&self) -> Option<String> {
        self.connection_id.lock().ok().and_then(|g| g.clone())
    }

    pub fn worker_id(&self) -> Option<i64> {
        match self.worker_id.load(Ordering::Relaxed) {
            0 => None,
            id => i64::try_from(id).ok(),
        }
    }

    pub fn token(&self) -> Option<wisehosting_crypto::Secret> {
        self.token.lock().ok().and_then(|g| g.clone())
    }

    fn set_token(&self, token: &str) {
        if let Ok(mut g) = self.token.lock() {
            *g = Some(wisehosting_crypto::Secret::new(token));
        }
    }

    /// The edge router's bound address (`edge.listen` with its real port).
    pub fn edge_addr(&self) -> Option<std::net::SocketAddr> {
        self.edge_addr.lock().ok().and_then(|g| *g)
    }

    /// The bound address of the edge router's `/metrics`.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_addr.lock().ok().and_then(|g| *g)
    }

    fn set_connection(&self, id: Option<String>) {
        self.connected.store(id.is_some(), Ordering::Relaxed);
        if let Ok(mut g) = self.connection_id.lock() {
            *g = id;
        }
    }
}

#[derive(Debug, Serialize)]
struct RegisterBody<'a> {
    secret: &'a str,
    api_key: &'a str,
    name: &'a str,
    version: &'a str,
    zone: Option<&'a str>,
    capacity: CapacityBody,
    wg_public_key: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct CapacityBody {
    cpus: u64,
    memory_mb: u64,
}

#[derive(Debug, Clone, Deserialize)]
struct TokenResponse {
    worker_id: i64,
    token: String,
    token_expires_at: String,
}

impl TokenResponse {
    fn expires_at(&self) -> SystemTime {
        chrono::DateTime::parse_from_rfc3339(&self.token_expires_at)
            .ok()
            .and_then(|t| u64::try_from(t.timestamp()).ok())
            .map_or_else(SystemTime::now, |secs| UNIX_EPOCH + Duration::from_secs(secs))
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// Clears what stopped builds leave behind, 10 minutes after start and then daily: buildah's
/// working containers (storage only, no process) older than an hour — no build runs that long
/// (`deploy.build_timeout_secs`) — and untagged images older than an hour (the last layers of
/// builds that were killed or failed). Tagged images (apps' versions) and the layers finished
/// builds reuse are not dangling, so caching is untouched.
async fn clear_build_leftovers(podman: Podman, shutdown: CancellationToken) {
    let mut wait = Duration::from_secs(600);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = Duration::from_secs(24 * 3600);
        let listing = podman.all_containers_json().await.into_bytes();
        let hour_ago = chrono::Utc::now().timestamp() - 3600;
        let stale = stale_build_containers(&listing, hour_ago);
        if !stale.is_empty() {
            let _ = podman.remove(&stale).await;
        }
        if podman.prune_dangling_images().await.is_err() {
            tracing::warn!("cannot prune old untagged images; trying again tomorrow");
        }
    }
}

/// Ids of buildah working containers (`State: storage`) created before `before` (unix
/// seconds), from `podman ps -a --external --format json`.
fn stale_build_containers(listing: &[u8], before: i64) -> Vec<String> {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_slice(listing) else { return Vec::new() };
    items
        .iter()
        .filter(|c| c["State"] == "storage" && c["Created"].as_i64().is_some_and(|t| t < before))
        .filter_map(|c| {
            c["Id"].as_str().filter(|id| id.bytes().all(|b| b.is_ascii_hexdigit())).map(str::to_string)
        })
        .collect()
}

/// Jobs in flight, by job id: the token that cancels each, and its attempt.
type RunningJobs = std::collections::HashMap<i64, (CancellationToken, i32)>;

/// Job messages outlive a session: they queue here and go out on whichever session is live
/// (the control plane's fencing drops any that no longer count).
struct JobQueue {
    tx: mpsc::Sender<Outgoing>,
    rx: mpsc::Receiver<Outgoing>,
    running: RunningJobs,
}

pub struct Agent {
    edge: Arc<crate::edge::Edge>,
    pipeline: Arc<Pipeline>,
    config: WorkerConfig,
    base: Url,
    http: reqwest::Client,
    podman: Podman,
    status: Arc<AgentStatus>,
    backoff: Backoff,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("name", &self.config.name).field("base", &self.base.as_str()).finish()
    }
}

enum SessionEnd {
    Shutdown,
    Lost(LinkError),
}

impl Agent {
    pub fn new(config: WorkerConfig) -> Result<Agent, LinkError> {
        config.check()?;
        let base = check_control_plane_url(&config.control_plane_url)?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| LinkError::Http(e.to_string()))?;
        let podman = Podman::new(config.podman.containers_conf.clone());
        // What builds of an earlier run of this worker left (it was killed mid-build).
        crate::runtime::cgroup::prune_stale(&config.deploy.instance);
        let edge = crate::edge::Edge::new();
        let status = Arc::new(AgentStatus::default());
        let pipeline = Arc::new(Pipeline {
            housekeeping_done: status.housekeeping_done.clone(),
            tasks: tokio_util::task::TaskTracker::new(),
            podman: podman.clone(),
            data_dir: config.data_dir.clone(),
            settings: config.deploy.clone(),
            edge: Some(edge.clone()),
            supervisor: crate::runtime::Supervisor::new(podman.clone()),
        });
        Ok(Agent {
            edge,
            pipeline,
            config,
            base,
            http,
            podman,
            status,
            backoff: Backoff::new(Duration::from_millis(250), Duration::from_secs(30)),
        })
    }

    /// Replaces the reconnect backoff (tests use a short one).
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff = Backoff::new(base, cap);
        self
    }

    pub fn status(&self) -> Arc<AgentStatus> {
        self.status.clone()
    }

    /// Runs until `shutdown` fires.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let (tx, rx) = mpsc::channel(1024);
        let monitor = crate::runtime::monitor::Monitor {
            podman: self.pipeline.podman.clone(),
            instance: self.config.deploy.instance.clone(),
            out: tx.clone(),
            every: Duration::from_secs(5),
            supervisor: self.pipeline.supervisor.clone(),
        };
        let supervisor = self.pipeline.supervisor.clone();
        tokio::spawn(supervisor.run(self.config.deploy.instance.clone(), shutdown.child_token()));
        tokio::spawn(clear_build_leftovers(self.podman.clone(), shutdown.child_token()));
        tokio::spawn(monitor.run(shutdown.child_token()));
        self.start_edge(&shutdown).await;
        let mut jobs = JobQueue { tx, rx, running: RunningJobs::new() };
        self.link_until(&shutdown, &mut jobs).await;
        // Shutting down: jobs in flight are cancelled (each removes what it started, so no
        // half-deployed container outlives the agent) and awaited, for a bounded time.
        for (token, _) in jobs.running.values() {
            token.cancel();
        }
        self.pipeline.tasks.close();
        if tokio::time::timeout(Duration::from_secs(45), self.pipeline.tasks.wait()).await.is_err() {
            tracing::warn!("jobs and retires still running after 45 s; exiting anyway");
        }
    }

    /// Registers and keeps a session, reconnecting with back-off, until `shutdown`.
    async fn link_until(&mut self, shutdown: &CancellationToken, jobs: &mut JobQueue) {
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let started = Instant::now();
            let end = match self.register().await {
                Ok(token) => self.session(token, shutdown, jobs).await,
                Err(e) => SessionEnd::Lost(e),
            };
            self.status.set_connection(None);
            match end {
                SessionEnd::Shutdown => return,
                SessionEnd::Lost(e) => {
                    tracing::warn!(error = %e, "link to the control plane lost; reconnecting")
                }
            }
            // A session that lasted a while was healthy: start the backoff over.
            if started.elapsed() > Duration::from_secs(30) {
                self.backoff.reset();
            }
            let delay = self.backoff.next_delay();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Binds the edge router and its metrics listener (its table comes over the link). A port that
    /// cannot be bound is logged and the worker goes on without that listener: deploys do
    /// not depend on it.
    async fn start_edge(&self, shutdown: &CancellationToken) {
        match tokio::net::TcpListener::bind(self.config.edge.listen).await {
            Ok(listener) => {
                if let Ok(mut g) = self.status.edge_addr.lock() {
                    *g = listener.local_addr().ok();
                }
                tracing::info!(listen = ?listener.local_addr().ok(), "edge router listening");
                tokio::spawn(self.edge.clone().serve(listener, shutdown.child_token()));
            }
            Err(e) => {
                tracing::error!(listen = %self.config.edge.listen, error = %e, "cannot bind the edge router; apps are not reachable through this worker until it can")
            }
        }
        if let Some(addr) = self.config.edge.metrics_listen {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    if let Ok(mut g) = self.status.metrics_addr.lock() {
                        *g = listener.local_addr().ok();
                    }
                    tokio::spawn(self.edge.clone().serve_metrics(listener, shutdown.child_token()));
                }
                Err(e) => tracing::warn!(listen = %addr, error = %e, "cannot bind the edge metrics listener"),
            }
        }
    }

    fn url(&self, path: &str) -> Result<Url, LinkError> {
        self.base.join(path).map_err(|e| LinkError::Http(e.to_string()))
    }

    async fn register(&self) -> Result<TokenResponse, LinkError> {
        let body = RegisterBody {
            secret: self.config.shared_secret.expose(),
            api_key: self.config.api_key.expose(),
            name: &self.config.name,
            version: env!("CARGO_PKG_VERSION"),
            zone: self.config.zone.as_deref(),
            capacity: host_capacity(),
            wg_public_key: None,
        };
        let response = self
            .http
            .post(self.url("/v1/workers/register")?)
            .json(&body)
            .send()
            .await
            .map_err(|e| LinkError::Http(e.without_url().to_string()))?;
        let token = token_from(response).await?;
        self.status.registrations.fetch_add(1, Ordering::Relaxed);
        self.status.worker_id.store(u64::try_from(token.worker_id).unwrap_or(0), Ordering::Relaxed);
        self.status.set_token(&token.token);
        Ok(token)
    }

    async fn session(
        &self,
        token: TokenResponse,
        shutdown: &CancellationToken,
        jobs: &mut JobQueue,
    ) -> SessionEnd {
        match self.session_inner(token, shutdown, jobs).await {
            Ok(()) => SessionEnd::Shutdown,
            Err(e) => SessionEnd::Lost(e),
        }
    }

    async fn session_inner(
        &self,
        token: TokenResponse,
        shutdown: &CancellationToken,
        jobs: &mut JobQueue,
    ) -> Result<(), LinkError> {
        let mut ws_url = self.url("/v1/workers/ws")?;
        let scheme = if ws_url.scheme() == "https" { "wss" } else { "ws" };
        ws_url.set_scheme(scheme).map_err(|_| LinkError::WebSocket("cannot build the ws:// URL".into()))?;
        let mut request =
            ws_url.as_str().into_client_request().map_err(|e| LinkError::WebSocket(e.to_string()))?;
        let bearer = HeaderValue::from_str(&format!("Bearer {}", token.token))
            .map_err(|_| LinkError::WebSocket("the token is not a valid header".into()))?;
        request.headers_mut().insert("authorization", bearer);
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(MAX_FRAME_BYTES + 64 * 1024);
        config.max_frame_size = Some(MAX_FRAME_BYTES + 64 * 1024);
        config.read_buffer_size = 4 * 1024;
        config.write_buffer_size = 0;
        let (ws, response) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
            .await
            .map_err(|e| match e {
                tungstenite::Error::Http(r) if r.status().as_u16() == 401 => LinkError::Unauthorized,
                other => LinkError::WebSocket(other.to_string()),
            })?;
        let connection_id = response
            .headers()
            .get(CONNECTION_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .ok_or(LinkError::NoConnectionId)?
            .to_string();
        let keys = LinkKeys::derive(&mac_key_from_api_key(self.config.api_key.expose()), &connection_id);
        let mut sender = Sender::new(keys.c2s);
        let mut receiver = Receiver::new(keys.s2c);
        let (mut sink, mut stream) = ws.split();

        // The first frame must be a valid welcome.
        let first =
            tokio::time::timeout(WELCOME_TIMEOUT, stream.next()).await.map_err(|_| LinkError::NoWelcome)?;
        let Some(Ok(Message::Text(text))) = first else { return Err(LinkError::NoWelcome) };
        let frame =
            receiver.accept(text.as_str(), now_ms()).map_err(|r| LinkError::BadFrame(r.to_string()))?;
        let Ok(ServerMessage::Welcome(welcome)) = ServerMessage::decode(frame.t, frame.p) else {
            return Err(LinkError::NoWelcome);
        };
        let interval = Duration::from_millis(welcome.heartbeat_interval_ms.clamp(100, 60_000));

        let session = CancellationToken::new();
        let _stop_tasks = session.clone().drop_guard();
        let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(64);
        jobs.running.retain(|_, (token, _)| !token.is_cancelled());
        let hello = Hello {
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec!["admin_query".into()],
            containers: self.podman.app_containers().await,
            running_jobs: jobs
                .running
                .iter()
                .map(|(job_id, (_, attempt))| wisehosting_proto::messages::RunningJob {
                    job_id: *job_id,
                    attempt: *attempt,
                })
                .collect(),
        };
        send(&mut sink, &mut sender, &Outgoing::of(&hello)).await?;
        self.status.set_connection(Some(connection_id.clone()));
        self.status.sessions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(connection = %connection_id, worker_id = token.worker_id, "connected to the control plane");
        tokio::spawn(heartbeats(
            self.podman.clone(),
            self.config.data_dir.clone(),
            interval,
            out_tx.clone(),
            self.status.clone(),
            session.clone(),
        ));
        tokio::spawn(refresher(
            self.http.clone(),
            self.url("/v1/workers/refresh-token")?,
            self.config.api_key.expose().to_string(),
            token.expires_at(),
            out_tx.clone(),
            self.status.clone(),
            session.clone(),
        ));

        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = sink.send(Message::Close(None)).await;
                    return Ok(());
                }
                Some(out) = out_rx.recv() => send(&mut sink, &mut sender, &out).await?,
                Some(out) = jobs.rx.recv() => send(&mut sink, &mut sender, &out).await?,
                incoming = stream.next() => {
                    let text = match incoming {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                        Some(Ok(Message::Binary(_))) => return Err(LinkError::BadFrame("a binary frame".into())),
                        Some(Ok(Message::Close(_))) | None => return Err(LinkError::Closed("the control plane closed the socket".into())),
                        Some(Err(e)) => return Err(LinkError::WebSocket(e.to_string())),
                    };
                    let frame = receiver.accept(text.as_str(), now_ms()).map_err(|r| LinkError::BadFrame(r.to_string()))?;
                    match ServerMessage::decode(frame.t, frame.p) {
                        Ok(ServerMessage::Error(err)) => return Err(LinkError::Closed(format!("{}: {}", err.code, err.message))),
                        Ok(ServerMessage::AdminQuery(query)) => {
                            let (podman, tx) = (self.podman.clone(), out_tx.clone());
                            tokio::spawn(async move {
                                let outcome = podman.admin_query(&query.command).await;
                                let reply = AdminQueryReply { query_id: query.query_id, command: query.command, output: outcome.output, err: outcome.err };
                                let _ = tx.send(Outgoing::of(&reply)).await;
                            });
                        }
                        Ok(ServerMessage::Job(job)) => {
                            jobs.running.retain(|_, (token, _)| !token.is_cancelled());
                            let cancel = CancellationToken::new();
                            jobs.running.insert(job.job_id, (cancel.clone(), job.attempt));
                            tracing::info!(job_id = job.job_id, kind = job.spec.kind_str(), app_id = job.app_id, "job received");
                            let pipeline = self.pipeline.clone();
                            let tx = jobs.tx.clone();
                            self.pipeline.tasks.spawn(async move {
                                pipeline.run_job(job, tx, cancel.clone()).await;
                                // Finished: the token marks the slot free.
                                cancel.cancel();
                            });
                        }
                        Ok(ServerMessage::JobCancel(c)) => {
                            if let Some((token, _)) = jobs.running.get(&c.job_id) {
                                tracing::info!(job_id = c.job_id, "job cancelled by the control plane");
                                token.cancel();
                            }
                        }
                        Ok(ServerMessage::DesiredState(desired)) => {
                            let pipeline = self.pipeline.clone();
                            tokio::spawn(async move { pipeline.reconcile(&desired).await });
                        }
                        Ok(ServerMessage::RouteTable(table)) => {
                            if self.edge.apply(&table) {
                                self.status.route_swaps.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(ServerMessage::RoutesChanged(_)) => tracing::debug!("ignored routes_changed: tables are pushed whole"),
                        Ok(ServerMessage::Unknown(t)) => tracing::debug!(message_type = %t, "ignored a frame of an unknown type"),
                        Ok(other) => tracing::debug!(message = ?other, "no handler yet"),
                        Err(e) => return Err(LinkError::BadFrame(format!("payload: {e}"))),
                    }
                }
            }
        }
    }
}

async fn send<S>(sink: &mut S, sender: &mut Sender, out: &Outgoing) -> Result<(), LinkError>
where
    S: SinkExt<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    // A frame over the limit would make the control plane close the link: drop the message
    // instead (log batches are capped far below this; this is the last guard).
    if out.payload.len() + FRAME_OVERHEAD > MAX_FRAME_BYTES {
        tracing::warn!(
            message_type = out.t,
            bytes = out.payload.len(),
            "dropped a message too large for one frame"
        );
        return Ok(());
    }
    let id = wisehosting_crypto::random_bytes::<16>();
    let text = sender.seal_raw(out.t, id, now_ms(), &out.payload);
    sink.send(Message::Text(text.into())).await.map_err(|e| LinkError::WebSocket(e.to_string()))
}

async fn token_from(response: reqwest::Response) -> Result<TokenResponse, LinkError> {
    let status = response.status().as_u16();
    if status == 401 {
        return Err(LinkError::Unauthorized);
    }
    if status != 200 {
        let body: String = response.text().await.unwrap_or_default().chars().take(300).collect();
        return Err(LinkError::Status { status, body });
    }
    response.json().await.map_err(|e| LinkError::Http(e.without_url().to_string()))
}

async fn heartbeats(
    podman: Podman,
    disk_path: std::path::PathBuf,
    interval: Duration,
    out: mpsc::Sender<Outgoing>,
    status: Arc<AgentStatus>,
    stop: CancellationToken,
) {
    let mut sampler = HostSampler::new();
    let mut tick = tokio::time::interval(interval);
    let disk = if disk_path.exists() { disk_path } else { std::path::PathBuf::from("/") };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                let mut hb = sampler.sample(&disk);
                hb.containers_running = podman.running_containers().await;
                if out.send(Outgoing::of(&hb)).await.is_err() {
                    return;
                }
                status.heartbeats.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// When to renew a token expiring at `expires_at`: 2 minutes before, or half-way for short
/// tokens.
fn refresh_delay(expires_at: SystemTime) -> Duration {
    let left = expires_at.duration_since(SystemTime::now()).unwrap_or_default();
    if left > REFRESH_BEFORE_EXPIRY * 2 { left - REFRESH_BEFORE_EXPIRY } else { left / 2 }
}

/// Renews the JWT before it expires and hands it to the session as `auth_refresh`. While the
/// control plane cannot be reached it retries with jittered backoff until the token lapses;
/// then the control plane closes the socket and the agent registers again.
async fn refresher(
    http: reqwest::Client,
    url: Url,
    api_key: String,
    mut expires_at: SystemTime,
    out: mpsc::Sender<Outgoing>,
    status: Arc<AgentStatus>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(refresh_delay(expires_at)) => {}
        }
        let mut retry = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        loop {
            let attempt = http.post(url.clone()).bearer_auth(&api_key).send().await;
            let result = match attempt {
                Ok(response) => token_from(response).await,
                Err(e) => Err(LinkError::Http(e.without_url().to_string())),
            };
            match result {
                Ok(token) => {
                    expires_at = token.expires_at();
                    status.refreshes.fetch_add(1, Ordering::Relaxed);
                    status.set_token(&token.token);
                    if out.send(Outgoing::of(&AuthRefresh { token: token.token })).await.is_err() {
                        return;
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the worker token; retrying");
                    if SystemTime::now() >= expires_at {
                        return;
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(retry.next_delay()) => {}
                    }
                }
            }
        }
    }
}

fn host_capacity() -> CapacityBody {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024);
    CapacityBody { cpus, memory_mb }
}

#[cfg(test)]
mod tests {
    use super::stale_build_containers;

    #[test]
    fn only_old_buildah_working_containers_are_stale() {
        let listing = br#"[
            {"Id": "aa11", "State": "storage", "Created": 100},
            {"Id": "bb22", "State": "storage", "Created": 5000},
            {"Id": "cc33", "State": "running", "Created": 100},
            {"Id": "--rm", "State": "storage", "Created": 100}
        ]"#;
        assert_eq!(stale_build_containers(listing, 1000), vec!["aa11".to_string()]);
        assert!(stale_build_containers(b"null", 1000).is_empty());
    }
}
