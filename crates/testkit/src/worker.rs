//! Workers for tests: [`create_worker`] (a row and its raw key), [`RawWorker`] (a hand-driven
//! connection that can send any frame, for attacks), [`spawn_worker`] (the real agent).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use wisehosting_control_plane::domain::WorkerName;
use wisehosting_control_plane::store;
use wisehosting_proto::{LinkKeys, Receiver, Sender, ServerMessage, mac_key_from_api_key};
use wisehosting_worker::{Agent, AgentStatus, WorkerConfig};

use crate::TestControlPlane;

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// A worker row and its raw API key.
#[derive(Debug, Clone)]
pub struct TestWorker {
    pub id: i64,
    pub name: String,
    pub api_key: String,
}

pub async fn create_worker(cp: &TestControlPlane, name: &str) -> TestWorker {
    create_worker_in(&cp.db, &cp.config, name).await
}

/// A worker of `zone`, as `wisehosting worker create --name N --zone Z` makes it.
pub async fn create_worker_in_zone(cp: &TestControlPlane, name: &str, zone: &str) -> TestWorker {
    let zone = wisehosting_control_plane::domain::Zone::parse(zone).expect("zone");
    create_with_zone(&cp.db, &cp.config, name, Some(&zone)).await
}

/// Creates a worker row in `db` for a control plane configured by `config`.
pub async fn create_worker_in(
    db: &sqlx::PgPool,
    config: &wisehosting_control_plane::config::Config,
    name: &str,
) -> TestWorker {
    create_with_zone(db, config, name, None).await
}

async fn create_with_zone(
    db: &sqlx::PgPool,
    config: &wisehosting_control_plane::config::Config,
    name: &str,
    zone: Option<&wisehosting_control_plane::domain::Zone>,
) -> TestWorker {
    let (_, sealer) = wisehosting_control_plane::startup::keys(config).expect("keys");
    let created = store::workers::create(db, &sealer, &WorkerName::parse(name).expect("name"), zone)
        .await
        .expect("create worker");
    TestWorker { id: created.id, name: name.to_string(), api_key: created.raw_api_key }
}

impl TestControlPlane {
    /// `POST /v1/workers/register` with the right (join) secret, for `worker`.
    pub async fn register(&self, worker: &TestWorker) -> reqwest::Response {
        self.client
            .post(self.url("/v1/workers/register"))
            .json(&json!({
                "secret": self.config.workers.join_secret.expose(),
                "api_key": worker.api_key,
                "name": worker.name,
                "version": "test",
                "zone": null,
                // Room for every app a test deploys: placement counts plans' reservations.
                "capacity": {"cpus": 64, "memory_mb": 262144},
                "wg_public_key": null
            }))
            .send()
            .await
            .expect("register")
    }

    /// A valid JWT for `worker`.
    pub async fn token(&self, worker: &TestWorker) -> String {
        let response = self.register(worker).await;
        assert_eq!(response.status(), 200, "register");
        let body: Value = response.json().await.expect("json");
        body["token"].as_str().expect("token").to_string()
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/workers/ws", self.addr)
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens the worker WebSocket with `token` (any string); the upgrade's error on refusal.
pub async fn open_ws(cp: &TestControlPlane, token: &str) -> Result<(Ws, String), tungstenite::Error> {
    let mut request = cp.ws_url().into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| tungstenite::Error::HttpFormat(e.into()))?,
    );
    let (ws, response) = tokio_tungstenite::connect_async(request).await?;
    let id = response
        .headers()
        .get("x-wh-connection")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((ws, id))
}

/// A connection driven by hand: sends any frame, reads and verifies the control plane's.
pub struct RawWorker {
    pub worker: TestWorker,
    pub ws: Ws,
    pub connection_id: String,
    pub keys: LinkKeys,
    pub sender: Sender,
    pub receiver: Receiver,
}

impl RawWorker {
    /// Registers, connects and reads the welcome.
    pub async fn connect(cp: &TestControlPlane, worker: &TestWorker) -> RawWorker {
        let token = cp.token(worker).await;
        let (ws, connection_id) = open_ws(cp, &token).await.expect("upgrade");
        assert_eq!(connection_id.len(), 32, "X-WH-Connection");
        let keys = LinkKeys::derive(&mac_key_from_api_key(&worker.api_key), &connection_id);
        let mut raw = RawWorker {
            worker: worker.clone(),
            ws,
            connection_id,
            sender: Sender::new(keys.c2s.clone()),
            receiver: Receiver::new(keys.s2c.clone()),
            keys,
        };
        match raw.recv().await {
            Some(ServerMessage::Welcome(w)) => assert_eq!(w.connection_id, raw.connection_id),
            other => panic!("expected welcome, got {other:?}"),
        }
        raw
    }

    /// Registers, connects, reads the welcome and sends a `hello`; returns once the control
    /// plane has answered it (`desired_state`, `route_table`, `edge_certificates`), so the connection is the
    /// worker's registered one and nothing of the hello's answer is left to read.
    pub async fn connect_online(cp: &TestControlPlane, worker: &TestWorker) -> RawWorker {
        let mut raw = Self::connect(cp, worker).await;
        raw.hello(wisehosting_proto::messages::Hello { version: "test".into(), ..Default::default() }).await;
        assert!(cp.hub.is_connected(worker.id), "the hello registered the connection");
        raw
    }

    /// Sends `hello` and returns once the control plane has answered it (`desired_state`, its
    /// `route_table`, then its `edge_certificates`, the whole set): everything the hello
    /// changes has been done.
    pub async fn hello(&mut self, hello: wisehosting_proto::messages::Hello) {
        self.send(&hello).await;
        loop {
            match self.recv().await {
                Some(ServerMessage::EdgeCertificates(c)) if c.retain.is_some() => return,
                Some(_) => continue,
                None => panic!("the connection closed after the hello"),
            }
        }
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::Text(text.into())).await.expect("send");
    }

    /// Seals and sends a typed message with the next sequence number.
    pub async fn send<M: wisehosting_proto::MessageType>(&mut self, message: &M) {
        let text = self.sender.seal(message, wisehosting_crypto::random_bytes::<16>(), now_ms());
        self.send_text(text).await;
    }

    /// The next verified message, or None when the socket closes (10 s limit).
    pub async fn recv(&mut self) -> Option<ServerMessage> {
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await.ok()??;
            match next {
                Ok(Message::Text(text)) => {
                    let frame = self
                        .receiver
                        .accept(text.as_str(), now_ms())
                        .expect("the control plane's frame verifies");
                    return Some(ServerMessage::decode(frame.t, frame.p).expect("decodes"));
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Hands the connection to a task that sends a heartbeat every `every` (a host with 64 GiB,
    /// 5 % used) and passes frames both ways, so the worker stays online while a test waits.
    pub fn beating(self, every: Duration) -> BeatingWorker {
        let RawWorker { worker, mut ws, mut sender, mut receiver, .. } = self;
        let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<wisehosting_proto::messages::Outgoing>(64);
        let (in_tx, in_rx) = tokio::sync::mpsc::channel::<ServerMessage>(256);
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let beat = wisehosting_proto::messages::Heartbeat {
                cpu_pct: 5.0,
                mem_used_bytes: 3 << 30,
                mem_total_bytes: 64 << 30,
                ..Default::default()
            };
            loop {
                let text = tokio::select! {
                    _ = stopped.cancelled() => return,
                    _ = tick.tick() => sender.seal(&beat, wisehosting_crypto::random_bytes::<16>(), now_ms()),
                    out = out_rx.recv() => match out {
                        Some(o) => sender.seal_raw(o.t, wisehosting_crypto::random_bytes::<16>(), now_ms(), &o.payload),
                        None => return,
                    },
                    next = ws.next() => match next {
                        Some(Ok(Message::Text(text))) => {
                            let Ok(frame) = receiver.accept(text.as_str(), now_ms()) else { return };
                            if let Ok(m) = ServerMessage::decode(frame.t, frame.p) {
                                let _ = in_tx.try_send(m);
                            }
                            continue;
                        }
                        Some(Ok(_)) => continue,
                        _ => return,
                    },
                };
                if ws.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
        });
        BeatingWorker { worker, out: out_tx, rx: in_rx, stop, task }
    }

    /// Waits for an `error` frame and then the close; returns the error's code.
    pub async fn expect_error_and_close(&mut self) -> String {
        let code = loop {
            match self.recv().await {
                Some(ServerMessage::Error(e)) => break e.code,
                Some(_) => continue,
                None => panic!("closed without an error frame"),
            }
        };
        assert!(self.recv().await.is_none(), "the connection stays open after an error");
        code
    }
}

/// A real agent running in this process. Its containers and images carry a unique
/// `wisehosting.instance` label and are removed when it is dropped.
pub struct SpawnedWorker {
    pub worker: TestWorker,
    pub status: std::sync::Arc<AgentStatus>,
    pub instance: String,
    _data_dir: tempfile::TempDir,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The project's podman settings for this machine.
pub fn containers_conf() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/containers.conf")
}

/// Removes every container labelled with this instance, then its images' tags
/// (`localhost/<instance>-app…`; untagged without `-f`, so an image another test's app shares
/// stays for it). True if it found containers.
pub fn remove_instance(instance: &str) -> bool {
    remove_instance_in(instance, None)
}

/// [`remove_instance`] with podman run in the network namespace `netns` (mounted at that
/// path), where the instance's worker ran: its networks and port forwards are there.
pub fn remove_instance_in(instance: &str, netns: Option<&str>) -> bool {
    let podman = || {
        let mut cmd = match netns {
            Some(path) => {
                let mut cmd = std::process::Command::new("nsenter");
                cmd.arg(format!("--net={path}")).arg("podman");
                cmd
            }
            None => std::process::Command::new("podman"),
        };
        cmd.env("CONTAINERS_CONF", containers_conf())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        cmd
    };
    let containers = podman()
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=wisehosting.instance={instance}"))
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).split_whitespace().map(str::to_string).collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let found = !containers.is_empty();
    if found {
        let _ = podman().args(["rm", "-f", "-t", "0", "--"]).args(&containers).output();
    }
    let tags = image_names(&format!("localhost/{instance}-*"), &format!("localhost/{instance}-app"));
    if !tags.is_empty() {
        let _ = podman().args(["rmi", "--"]).args(&tags).output();
    }
    reap_orphans(instance);
    found
}

/// Deletes containers of `instance` that podman lost track of (a podman process killed
/// half-way can leave the runc container running with no record): found by their conmon's
/// `-n <instance>-…` argument, deleted with runc.
fn reap_orphans(instance: &str) {
    let prefix = format!("{instance}-");
    let Ok(dir) = std::fs::read_dir("/proc") else { return };
    for entry in dir.flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if !args.first().is_some_and(|a| a.ends_with(b"conmon")) {
            continue;
        }
        let value = |flag: &[u8]| {
            args.windows(2).find(|w| w[0] == flag).map(|w| String::from_utf8_lossy(w[1]).into_owned())
        };
        let (Some(name), Some(id)) = (value(b"-n"), value(b"-c")) else { continue };
        if !name.starts_with(&prefix) || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let known = std::process::Command::new("podman")
            .env("CONTAINERS_CONF", containers_conf())
            .args(["container", "exists", &id])
            .status()
            .is_ok_and(|s| s.success());
        if known {
            continue;
        }
        wisehosting_worker::runtime::tree::delete_runc_container(&id);
        if let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// The image names matching the `reference` filter that start with `prefix`.
fn image_names(reference: &str, prefix: &str) -> Vec<String> {
    let Ok(out) = std::process::Command::new("podman")
        .env("CONTAINERS_CONF", containers_conf())
        .args(["images", "--format", "json", "--filter"])
        .arg(format!("reference={reference}"))
        .output()
    else {
        return Vec::new();
    };
    let images: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut names: Vec<String> = images
        .iter()
        .flat_map(|i| i["Names"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(str::to_string))
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names.dedup();
    names
}

impl Drop for SpawnedWorker {
    fn drop(&mut self) {
        // The agent stops acting first: a supervisor or re-sync still running would start
        // again what is removed below (a leaked container after the test).
        self.task.abort();
        self.shutdown.cancel();
        // A podman command the agent started before it stopped may still land a container (a
        // supervisor's restart): once it had containers, look again a moment later.
        if remove_instance(&self.instance) {
            std::thread::sleep(Duration::from_millis(1500));
            remove_instance(&self.instance);
        }
    }
}

impl SpawnedWorker {
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
    }

    /// Lists this worker's containers of an app, as podman reports them.
    pub fn containers_of(&self, app_id: i64) -> Vec<serde_json::Value> {
        let out = std::process::Command::new("podman")
            .env("CONTAINERS_CONF", containers_conf())
            .args(["ps", "-a", "--format", "json", "--filter"])
            .arg(format!("label=wisehosting.instance={}", self.instance))
            .arg("--filter")
            .arg(format!("label=wisehosting.app={app_id}"))
            .output()
            .expect("podman ps");
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// The tags of this worker's images of an app (`localhost/<instance>-app<id>:d<n>`).
    pub fn image_tags_of(&self, app_id: i64) -> Vec<String> {
        let repo = format!("localhost/{}-app{app_id}", self.instance);
        image_names(&repo, &format!("{repo}:"))
    }

    /// Waits until `check` holds, polling every 50 ms, up to `limit`.
    pub async fn wait_for(&self, limit: Duration, check: impl Fn(&AgentStatus) -> bool) -> bool {
        crate::eventually(limit, Duration::from_millis(50), || async { check(&self.status) }).await
    }
}

/// Starts the real agent for `worker` against `base_url` (the control plane, or a proxy to it).
pub fn spawn_worker(cp: &TestControlPlane, worker: &TestWorker, base_url: &str) -> SpawnedWorker {
    spawn_worker_with_secret(cp.config.workers.join_secret.expose(), worker, base_url)
}

/// Starts the real agent for `worker` against the control plane at `base_url` whose shared
/// secret is `secret` (for a control plane that runs as its own process).
pub fn spawn_worker_with_secret(secret: &str, worker: &TestWorker, base_url: &str) -> SpawnedWorker {
    spawn_agent(secret, worker, base_url, "", None, None)
}

/// Like [`spawn_worker`], for an `https://` control plane whose certificate `ca_file`'s
/// authority signed (`control_plane_ca_file`).
pub fn spawn_worker_with_ca(
    cp: &TestControlPlane,
    worker: &TestWorker,
    base_url: &str,
    ca_file: Option<&std::path::Path>,
) -> SpawnedWorker {
    spawn_agent(cp.config.workers.join_secret.expose(), worker, base_url, "", ca_file, None)
}

/// Like [`spawn_worker`], with more `deploy:` settings: YAML lines indented by two spaces.
pub fn spawn_worker_with_settings(
    cp: &TestControlPlane,
    worker: &TestWorker,
    base_url: &str,
    deploy_settings: &str,
) -> SpawnedWorker {
    spawn_agent(cp.config.workers.join_secret.expose(), worker, base_url, deploy_settings, None, None)
}

/// Like [`spawn_worker`], with the edge router on `edge` (an ACME server validates there).
pub fn spawn_worker_with_edge(
    cp: &TestControlPlane,
    worker: &TestWorker,
    base_url: &str,
    edge: std::net::SocketAddr,
) -> SpawnedWorker {
    spawn_agent(cp.config.workers.join_secret.expose(), worker, base_url, "", None, Some(edge))
}

fn spawn_agent(
    secret: &str,
    worker: &TestWorker,
    base_url: &str,
    extra_deploy: &str,
    ca_file: Option<&std::path::Path>,
    edge_listen: Option<std::net::SocketAddr>,
) -> SpawnedWorker {
    let instance = format!("t{}", hex::encode(wisehosting_crypto::random_bytes::<5>()));
    let data_dir = tempfile::tempdir().expect("worker data dir");
    let ca = ca_file.map(|f| format!("control_plane_ca_file: {}\n", f.display())).unwrap_or_default();
    let edge = edge_listen.map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
    let yaml = format!(
        "{ca}control_plane_url: {base_url}\nname: {}\napi_key: {}\nshared_secret: {}\ndata_dir: {}\npodman:\n  containers_conf: {}\ndeploy:\n  instance: {instance}\n  allow_local_repos: true\n  health_timeout_secs: 20\n  drain_secs: 1\n  monitor_interval_ms: 1000\n{extra_deploy}edge:\n  listen: {edge}\n  metrics_listen: 127.0.0.1:0\n  https_listen: 127.0.0.1:0\n",
        worker.name,
        worker.api_key,
        secret,
        data_dir.path().display(),
        containers_conf().display(),
    );
    let config = WorkerConfig::from_yaml(&yaml, "test").expect("worker config");
    let agent = Agent::new(config)
        .expect("agent")
        .with_backoff(Duration::from_millis(50), Duration::from_millis(500));
    let status = agent.status();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(agent.run(shutdown.clone()));
    SpawnedWorker { worker: worker.clone(), status, instance, _data_dir: data_dir, shutdown, task }
}

/// A connected worker kept online by a task (see [`RawWorker::beating`]).
pub struct BeatingWorker {
    pub worker: TestWorker,
    out: tokio::sync::mpsc::Sender<wisehosting_proto::messages::Outgoing>,
    rx: tokio::sync::mpsc::Receiver<ServerMessage>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl BeatingWorker {
    pub async fn send<M: wisehosting_proto::MessageType>(&self, message: &M) {
        self.out
            .send(wisehosting_proto::messages::Outgoing::of(message))
            .await
            .expect("the connection is open");
    }

    /// The next message that `pick` takes (others are skipped), within `limit`.
    pub async fn next<T>(&mut self, limit: Duration, pick: impl Fn(ServerMessage) -> Option<T>) -> Option<T> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let m = tokio::time::timeout_at(deadline, self.rx.recv()).await.ok()??;
            if let Some(t) = pick(m) {
                return Some(t);
            }
        }
    }

    /// The next job sent to this worker, within `limit`.
    pub async fn next_job(&mut self, limit: Duration) -> Option<wisehosting_proto::messages::Job> {
        self.next(limit, |m| match m {
            ServerMessage::Job(j) => Some(*j),
            _ => None,
        })
        .await
    }

    /// Accepts a deploy job and reports it done: the app runs here on `host_port`.
    pub async fn finish_deploy(&self, job: &wisehosting_proto::messages::Job, host_port: u16) {
        use wisehosting_proto::messages::{JobAccepted, JobResult};
        self.send(&JobAccepted { job_id: job.job_id, attempt: job.attempt }).await;
        let image = Self::image_of(job);
        let result = JobResult {
            job_id: job.job_id,
            attempt: job.attempt,
            ok: true,
            image_id: Some(image),
            container_id: Some(format!("{:064x}", job.job_id)),
            host_port: Some(host_port),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            ..Default::default()
        };
        self.send(&result).await;
    }

    /// The image id [`BeatingWorker::finish_deploy`] reports for `job` (a podman id).
    pub fn image_of(job: &wisehosting_proto::messages::Job) -> String {
        format!("sha256:{:032x}{:032x}", job.app_id, job.deployment_id.unwrap_or_default())
    }

    /// Drops the connection at once, as a worker whose process died.
    pub async fn kill(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
