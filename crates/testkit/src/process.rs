//! The platform's binaries as processes of their own, for tests that kill one with SIGKILL:
//! [`ControlPlaneProcess`] (`wisehosting serve`) and [`WorkerProcess`] (`wisehosting-worker`).
//! Each is started with a systemd notify socket of the test's, so the test learns where it
//! listens from its `READY=1` status line, exactly as systemd would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::worker::{TestWorker, containers_conf, remove_instance_in};

/// A binary of this workspace, next to the test executable's directory (`target/debug`).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let debug = exe.parent().and_then(Path::parent).expect("target/debug");
    let path = debug.join(name);
    assert!(path.is_file(), "{} is built (cargo build --workspace)", path.display());
    path
}

/// Waits for the `READY=1` datagram on `socket` and returns its `STATUS=` line.
async fn ready_status(socket: &tokio::net::UnixDatagram, limit: Duration) -> String {
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .expect("the process says READY=1 in time")
            .expect("notify socket");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.lines().any(|l| l == "READY=1") {
            return text.lines().find_map(|l| l.strip_prefix("STATUS=")).unwrap_or_default().to_string();
        }
    }
}

/// The `host:port` at the end of a status line such as `… listening on 127.0.0.1:8000`.
fn addr_in(status: &str) -> SocketAddr {
    status
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("an address in {status:?}"))
}

fn sigkill(child: &Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// `wisehosting serve` over `database_url` with `env` (`WH__…` settings).
pub struct ControlPlaneProcess {
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl ControlPlaneProcess {
    pub async fn start(env: &[(&str, &str)]) -> ControlPlaneProcess {
        let dir = tempfile::tempdir().expect("dir");
        let socket_path = dir.path().join("notify.sock");
        let socket = tokio::net::UnixDatagram::bind(&socket_path).expect("notify socket");
        let mut cmd = Command::new(workspace_binary("wisehosting"));
        cmd.arg("serve")
            .env_remove("CONFIG_PATH")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env("NOTIFY_SOCKET", &socket_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn wisehosting serve");
        let status = ready_status(&socket, Duration::from_secs(60)).await;
        ControlPlaneProcess { addr: addr_in(&status), child, _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL: no drain, no goodbye to its workers.
    pub fn kill9(&mut self) {
        sigkill(&self.child);
        let _ = self.child.wait();
    }
}

impl Drop for ControlPlaneProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A worker host's config dir, before its agent starts: `worker.yaml` (no credentials yet),
/// its data dir, a unique instance label, and the network namespace it runs in, if any. Its
/// WireGuard key can be made and read first (`wisehosting-worker mesh-key`), as an operator
/// does before creating the worker.
pub struct WorkerSetup {
    pub instance: String,
    pub dir: tempfile::TempDir,
    /// `/run/netns/<name>` of the namespace the agent runs in.
    netns: Option<String>,
}

impl WorkerSetup {
    /// `deploy_yaml`: more `deploy:` settings (lines indented by two spaces); `extra_yaml`:
    /// more top-level ones (e.g. a `mesh:` section).
    pub fn new(
        name: &str,
        base_url: &str,
        netns: Option<&crate::netns::Namespace>,
        deploy_yaml: &str,
        extra_yaml: &str,
    ) -> WorkerSetup {
        let instance = format!("t{}", hex::encode(wisehosting_crypto::random_bytes::<5>()));
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(dir.path().join("credentials")).expect("credentials dir");
        std::fs::create_dir_all(&data).expect("data dir");
        let yaml = format!(
            "control_plane_url: {base_url}\nname: {name}\ndata_dir: {}\npodman:\n  containers_conf: {}\ndeploy:\n  instance: {instance}\n  allow_local_repos: true\n  health_timeout_secs: 20\n  drain_secs: 1\n  monitor_interval_ms: 1000\n{deploy_yaml}edge:\n  listen: 127.0.0.1:0\n  metrics_listen: 127.0.0.1:0\n  https_listen: 127.0.0.1:0\n{extra_yaml}",
            data.display(),
            containers_conf().display(),
        );
        std::fs::write(dir.path().join("worker.yaml"), yaml).expect("config");
        WorkerSetup { instance, dir, netns: netns.map(crate::netns::Namespace::path) }
    }

    fn command(netns: Option<&str>, dir: &Path) -> Command {
        let binary = workspace_binary("wisehosting-worker");
        let mut command = match netns {
            Some(path) => {
                let mut command = Command::new("nsenter");
                command.arg(format!("--net={path}")).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .env("CONFIG_PATH", dir.join("worker.yaml"))
            .env("CREDENTIALS_DIRECTORY", dir.join("credentials"));
        command
    }

    /// `wisehosting-worker mesh-key`: the worker's WireGuard public key, its key pair made now.
    pub fn mesh_key(&self) -> String {
        let out =
            Self::command(self.netns.as_deref(), self.dir.path()).arg("mesh-key").output().expect("mesh-key");
        assert!(out.status.success(), "mesh-key: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Gives it `worker`'s API key and the join secret `secret` as credentials and starts it.
    pub async fn start(self, secret: &str, worker: &TestWorker) -> WorkerProcess {
        let credentials = self.dir.path().join("credentials");
        std::fs::write(credentials.join("worker_api_key"), &worker.api_key).expect("api key");
        std::fs::write(credentials.join("worker_shared_secret"), secret).expect("secret");
        let (child, edge) = WorkerProcess::spawn(self.netns.as_deref(), self.dir.path()).await;
        WorkerProcess {
            worker: worker.clone(),
            instance: self.instance,
            edge,
            child,
            dir: self.dir,
            netns: self.netns,
        }
    }
}

/// `wisehosting-worker` for `worker` against `base_url`, its secrets as systemd credentials.
/// Its containers and images carry a unique instance label and are removed when it is dropped.
pub struct WorkerProcess {
    pub worker: TestWorker,
    pub instance: String,
    /// Where its edge router listens.
    pub edge: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
    netns: Option<String>,
}

impl WorkerProcess {
    pub async fn start(secret: &str, worker: &TestWorker, base_url: &str) -> WorkerProcess {
        WorkerSetup::new(&worker.name, base_url, None, "", "").start(secret, worker).await
    }

    /// Runs the binary over the config and credentials in `dir`; returns once it is ready.
    async fn spawn(netns: Option<&str>, dir: &Path) -> (Child, SocketAddr) {
        let socket_path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&socket_path);
        let socket = tokio::net::UnixDatagram::bind(&socket_path).expect("notify socket");
        let child = WorkerSetup::command(netns, dir)
            .env("NOTIFY_SOCKET", &socket_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn wisehosting-worker");
        let status = ready_status(&socket, Duration::from_secs(60)).await;
        (child, addr_in(&status))
    }

    /// SIGKILL to the agent alone, as `kill -9 <pid>` does: its podman children run on
    /// (killing them mid-`podman build` corrupts podman's store for everyone) and its
    /// containers keep running.
    pub fn kill9(&mut self) {
        sigkill(&self.child);
        let _ = self.child.wait();
    }

    /// SIGKILL, then the same worker (config, data dir, instance) started again.
    pub async fn restart(&mut self) {
        self.kill9();
        let (child, edge) = Self::spawn(self.netns.as_deref(), self.dir.path()).await;
        self.child = child;
        self.edge = edge;
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill9();
        let _ = remove_instance_in(&self.instance, self.netns.as_deref());
    }
}
