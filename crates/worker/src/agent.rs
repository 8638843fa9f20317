//! The worker agent: assembles the parts and runs them until shutdown.
//!
//! [`Agent::run`] starts the supervisor, the monitor, the clean-up of build leftovers and the
//! edge router, then loops: register, connect ([`crate::link`]), send `hello` with the
//! container inventory and the jobs still running, heartbeat every interval, keep the token
//! fresh, and act on what the control plane sends — jobs, cancellations, the desired state,
//! route tables, admin queries. Any failure ends the session; the loop waits a jittered,
//! capped, exponentially growing delay and starts again from registration. Jobs outlive
//! sessions: their messages queue and go out on whichever session is live.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wisehosting_proto::ServerMessage;
use wisehosting_proto::messages::{AdminQueryReply, Hello, Outgoing, RunningJob};

use crate::config::WorkerConfig;
use crate::deploy::Pipeline;
use crate::link::{Backoff, Capacity, Link, LinkError, Registration, SessionRx, SessionTx, TokenResponse};
use crate::runtime::Podman;
use crate::stats::HostSampler;

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
    /// Shared with the pipeline, which stamps it on containers.
    worker_id: Arc<AtomicU64>,
    /// The current worker JWT (what the agent registered or refreshed last).
    token: Mutex<Option<wisehosting_crypto::Secret>>,
    /// Where the edge router and its metrics listen, once bound.
    edge_addr: Mutex<Option<std::net::SocketAddr>>,
    metrics_addr: Mutex<Option<std::net::SocketAddr>>,
    /// Where the edge router serves HTTPS, once the first certificate opened it.
    https_addr: Mutex<Option<std::net::SocketAddr>>,
    /// The mesh address the control plane gave this worker at registration.
    wg_ip: Mutex<Option<std::net::IpAddr>>,
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

    /// The edge router's HTTPS address (`edge.https_listen` with its real port), once open.
    pub fn https_addr(&self) -> Option<std::net::SocketAddr> {
        self.https_addr.lock().ok().and_then(|g| *g)
    }

    /// The mesh address the control plane gave this worker (`workers.wg_ip`).
    pub fn wg_ip(&self) -> Option<std::net::IpAddr> {
        self.wg_ip.lock().ok().and_then(|g| *g)
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
    /// This worker's WireGuard public key (its private key stays in its data dir).
    wg_public_key: String,
    /// `mesh.config_file`: the mesh interface brought up before each registration (when
    /// this host does not have it: at first start, or after something took it down).
    mesh_interface: Option<crate::mesh::WgQuick>,
    /// `edge.https_listen` and the token that stops it, until the first certificate opens it.
    https_pending: Mutex<Option<(std::net::SocketAddr, CancellationToken)>>,
    pipeline: Arc<Pipeline>,
    config: WorkerConfig,
    link: Link,
    podman: Podman,
    status: Arc<AgentStatus>,
    backoff: Backoff,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("name", &self.config.name).field("link", &self.link).finish()
    }
}

enum SessionEnd {
    Shutdown,
    Lost(LinkError),
}

impl Agent {
    pub fn new(config: WorkerConfig) -> Result<Agent, LinkError> {
        config.check()?;
        let link = Link::new(
            &config.control_plane_url,
            config.api_key.clone(),
            config.control_plane_ca_file.as_deref(),
        )?;
        let podman = Podman::new(config.podman.containers_conf.clone());
        // What builds of an earlier run of this worker left (it was killed mid-build).
        crate::runtime::cgroup::prune_stale(&config.deploy.instance);
        let edge = crate::edge::Edge::new();
        let wg_public_key = crate::mesh::public_key(&config.data_dir)?.to_string();
        let mesh_interface = config
            .mesh
            .config_file
            .as_deref()
            .map(|file| crate::mesh::WgQuick::new(file, config.mesh.userspace.as_deref()))
            .transpose()?;
        let status = Arc::new(AgentStatus::default());
        let pipeline = Arc::new(Pipeline {
            housekeeping_done: status.housekeeping_done.clone(),
            worker_id: status.worker_id.clone(),
            tasks: tokio_util::task::TaskTracker::new(),
            podman: podman.clone(),
            data_dir: config.data_dir.clone(),
            settings: config.deploy.clone(),
            mesh: Arc::default(),
            edge: Some(edge.clone()),
            supervisor: crate::runtime::Supervisor::new(podman.clone()),
        });
        Ok(Agent {
            edge,
            wg_public_key,
            mesh_interface,
            https_pending: Mutex::new(None),
            pipeline,
            config,
            link,
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
            every: Duration::from_millis(self.config.deploy.monitor_interval_ms),
            supervisor: self.pipeline.supervisor.clone(),
            edge: self.edge.clone(),
            epoch: rand::random(),
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
        if let (Some(addr), Ok(mut pending)) = (self.config.edge.https_listen, self.https_pending.lock()) {
            *pending = Some((addr, shutdown.child_token()));
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

    /// Opens `edge.https_listen` (once: when the first certificate arrives). A port that
    /// cannot be bound is logged; plain HTTP goes on, without redirects to HTTPS.
    fn open_https(&self) {
        let Some((addr, shutdown)) = self.https_pending.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        let (edge, status) = (self.edge.clone(), self.status.clone());
        tokio::spawn(async move {
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::error!(listen = %addr, error = %e, "cannot bind the edge router's HTTPS listener; apps are served over plain HTTP only");
                    return;
                }
            };
            if let Ok(mut g) = status.https_addr.lock() {
                *g = listener.local_addr().ok();
            }
            tracing::info!(listen = ?listener.local_addr().ok(), "edge router serving HTTPS");
            if let Err(e) = edge.serve_tls(listener, shutdown).await {
                tracing::error!(error = %e, "cannot set up TLS at the edge router");
            }
        });
    }

    async fn register(&self) -> Result<TokenResponse, LinkError> {
        if let Some(interface) = &self.mesh_interface {
            interface.up().await?;
        }
        let registration = Registration {
            secret: self.config.shared_secret.expose(),
            api_key: self.config.api_key.expose(),
            name: &self.config.name,
            version: env!("CARGO_PKG_VERSION"),
            zone: self.config.zone.as_deref(),
            capacity: host_capacity(),
            wg_public_key: Some(&self.wg_public_key),
        };
        let token = self.link.register(&registration).await?;
        self.status.registrations.fetch_add(1, Ordering::Relaxed);
        self.status.worker_id.store(u64::try_from(token.worker_id).unwrap_or(0), Ordering::Relaxed);
        self.status.set_token(&token.token);
        let wg_ip = token.wg_ip.as_deref().and_then(|ip| ip.parse().ok());
        self.pipeline.mesh.set(wg_ip);
        if let Ok(mut g) = self.status.wg_ip.lock() {
            *g = wg_ip;
        }
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
        let connected = self.link.connect(&token).await?;
        let (mut tx, mut rx, connection_id) = (connected.tx, connected.rx, connected.connection_id);
        let interval = Duration::from_millis(connected.welcome.heartbeat_interval_ms.clamp(100, 60_000));
        let session = CancellationToken::new();
        let _stop_tasks = session.clone().drop_guard();
        let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(64);
        jobs.running.retain(|_, (token, _)| !token.is_cancelled());
        let hello = Hello {
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec!["admin_query".into()],
            containers: self.podman.app_containers(&self.config.deploy.instance).await,
            running_jobs: jobs
                .running
                .iter()
                .map(|(job_id, (_, attempt))| RunningJob { job_id: *job_id, attempt: *attempt })
                .collect(),
        };
        tx.send(&Outgoing::of(&hello)).await?;
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
        let status = self.status.clone();
        let renewed = move |token: &TokenResponse| {
            status.refreshes.fetch_add(1, Ordering::Relaxed);
            status.set_token(&token.token);
        };
        tokio::spawn(self.link.clone().keep_token_fresh(
            token.expires_at(),
            out_tx.clone(),
            renewed,
            session.clone(),
        ));
        self.serve(&mut tx, &mut rx, &mut out_rx, out_tx, shutdown, jobs).await
    }

    /// Sends what the agent queues and acts on what the control plane sends, until the
    /// session ends.
    async fn serve(
        &self,
        tx: &mut SessionTx,
        rx: &mut SessionRx,
        out_rx: &mut mpsc::Receiver<Outgoing>,
        out_tx: mpsc::Sender<Outgoing>,
        shutdown: &CancellationToken,
        jobs: &mut JobQueue,
    ) -> Result<(), LinkError> {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    tx.close().await;
                    return Ok(());
                }
                Some(out) = out_rx.recv() => tx.send(&out).await?,
                Some(out) = jobs.rx.recv() => tx.send(&out).await?,
                message = rx.next() => self.act_on(message?, &out_tx, jobs),
            }
        }
    }

    fn act_on(&self, message: ServerMessage, out_tx: &mpsc::Sender<Outgoing>, jobs: &mut JobQueue) {
        match message {
            ServerMessage::AdminQuery(query) => {
                let (podman, tx) = (self.podman.clone(), out_tx.clone());
                tokio::spawn(async move {
                    let outcome = podman.admin_query(&query.command).await;
                    let reply = AdminQueryReply {
                        query_id: query.query_id,
                        command: query.command,
                        output: outcome.output,
                        err: outcome.err,
                    };
                    let _ = tx.send(Outgoing::of(&reply)).await;
                });
            }
            ServerMessage::Job(job) => {
                jobs.running.retain(|_, (token, _)| !token.is_cancelled());
                let cancel = CancellationToken::new();
                jobs.running.insert(job.job_id, (cancel.clone(), job.attempt));
                tracing::info!(
                    job_id = job.job_id,
                    kind = job.spec.kind_str(),
                    app_id = job.app_id,
                    "job received"
                );
                let pipeline = self.pipeline.clone();
                let tx = jobs.tx.clone();
                self.pipeline.tasks.spawn(async move {
                    pipeline.run_job(*job, tx, cancel.clone()).await;
                    // Finished: the token marks the slot free.
                    cancel.cancel();
                });
            }
            ServerMessage::JobCancel(c) => {
                if let Some((token, _)) = jobs.running.get(&c.job_id) {
                    tracing::info!(job_id = c.job_id, "job cancelled by the control plane");
                    token.cancel();
                }
            }
            ServerMessage::DesiredState(desired) => {
                let pipeline = self.pipeline.clone();
                tokio::spawn(async move { pipeline.reconcile(&desired).await });
            }
            ServerMessage::RouteTable(table) => {
                if self.edge.apply(&table) {
                    self.status.route_swaps.fetch_add(1, Ordering::Relaxed);
                }
            }
            ServerMessage::AcmeChallenges(challenges) => self.edge.set_challenges(&challenges),
            ServerMessage::EdgeCertificates(certificates) => {
                self.edge.set_certificates(&certificates);
                if self.edge.certificates_held() > 0 {
                    self.open_https();
                }
            }
            ServerMessage::RoutesChanged(_) => {
                tracing::debug!("ignored routes_changed: tables are pushed whole")
            }
            ServerMessage::Unknown(t) => {
                tracing::debug!(message_type = %t, "ignored a frame of an unknown type")
            }
            // A second welcome, or an error (which `SessionRx::next` turns into the session's end).
            other => tracing::debug!(message = ?other, "ignored a message out of place"),
        }
    }
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

fn host_capacity() -> Capacity {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024);
    Capacity { cpus, memory_mb }
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
