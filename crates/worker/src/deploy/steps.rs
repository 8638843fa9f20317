//! The pipeline's steps. Each external command is an argv array; output is streamed to the
//! build log and its tail kept for error messages.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::containerfile::build_limits;
use super::ip_literal;
use super::presets;
use wisehosting_proto::job::{
    DeploySpec, Env, Fault, Framework, HealthCheck, HealthPath, ImageId, Limits, Phase, Port,
};

use super::error::{CommandError, DeployError};
use super::{Done, Pipeline, Reporter};
use crate::runtime::cgroup::BuildCgroup;
use crate::runtime::firewall;
use crate::runtime::lines::{LogBatch, LogBudget};

/// Lines of output kept for an error message.
const TAIL: usize = 25;
/// What an app container may do as root inside it: own files, signal its processes, bind
/// low ports, switch users.
const APP_CAPABILITIES: &str = "CHOWN,DAC_OVERRIDE,FOWNER,FSETID,KILL,NET_BIND_SERVICE,SETGID,SETUID";
/// Processes (threads included) one app container may have.
const APP_PIDS_LIMIT: &str = "512";

/// Runs a command (a clone, a build), streaming stdout and stderr lines to the build log;
/// returns the tail. It runs in a process group of its own; when the job is cancelled (this
/// future dropped) or `limit` passes, the whole tree goes, the runc containers of `RUN` steps
/// included ([`TreeGuard`](crate::runtime::tree::TreeGuard)).
pub(super) async fn run_logged(
    mut cmd: Command,
    reporter: &Reporter,
    what: &str,
    limit: Duration,
) -> Result<Vec<String>, CommandError> {
    let what = what.to_string();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false)
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(source) => return Err(CommandError::Spawn { what, source }),
    };
    let mut guard = crate::runtime::tree::TreeGuard::new(child.id());
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(CommandError::NoOutput { what });
    };
    let mut rx = crate::runtime::output_lines(stdout, stderr, 256);
    let mut tail: Vec<String> = Vec::new();
    let work = async {
        let mut batch = LogBatch::new(50);
        let mut budget = LogBudget::default();
        let mut last_flush = Instant::now();
        while let Some(line) = rx.recv().await {
            for line in budget.admit(line) {
                tail.push(line.clone());
                if tail.len() > TAIL {
                    tail.remove(0);
                }
                if batch.push(line) || last_flush.elapsed() > Duration::from_millis(250) {
                    reporter.build_log(batch.take()).await;
                    last_flush = Instant::now();
                }
            }
        }
        reporter.build_log(batch.take()).await;
        child.wait().await
    };
    let status = match tokio::time::timeout(limit, work).await {
        Ok(Ok(status)) => status,
        Ok(Err(source)) => return Err(CommandError::Wait { what, source }),
        // The guard, dropped on return, stops the tree.
        Err(_) => return Err(CommandError::TimedOut { what, secs: limit.as_secs() }),
    };
    guard.disarm();
    if status.success() {
        Ok(tail)
    } else {
        Err(CommandError::Failed { what, status: status.to_string(), output: tail.join("\n") })
    }
}

/// Host ports of app containers: below Linux's default ephemeral range (32768–60999), so an
/// outgoing connection's source port never takes one between the check and podman's bind.
const HOST_PORTS: std::ops::RangeInclusive<u16> = 20000..=29999;

/// A host port in [`HOST_PORTS`] that is free on every address the container is published on.
fn free_port(mesh: Option<IpAddr>) -> Result<u16, DeployError> {
    use rand::Rng;
    let mut addrs = vec![IpAddr::from([127, 0, 0, 1])];
    addrs.extend(mesh);
    for _ in 0..64 {
        let port = rand::thread_rng().gen_range(HOST_PORTS);
        if addrs.iter().all(|ip| std::net::TcpListener::bind((*ip, port)).is_ok()) {
            return Ok(port);
        }
    }
    Err(DeployError::platform(format!(
        "no free host port in {}-{} after 64 tries; stop services using that range on this host",
        HOST_PORTS.start(),
        HOST_PORTS.end()
    )))
}

impl Pipeline {
    /// The repository of an app's images: `localhost/<instance>-app<id>`, each deployment's
    /// image tagged `…:d<deployment>`. Images carry no labels (a `--label` costs a cached build
    /// ~50 ms, and an unchanged repository then rebuilds to the same, fully cached image even
    /// across apps); the repository name says whose they are.
    pub(super) fn image_repo(&self, app_id: i64) -> String {
        format!("localhost/{}-app{app_id}", self.settings.instance)
    }

    /// The `--label` arguments of a deployment's container: its app, this worker's instance
    /// (what it manages its containers by, known before it registers) and id, and the
    /// deployment.
    fn labels(&self, app_id: i64, deployment_id: i64) -> [String; 8] {
        let worker_id = self.worker_id.load(std::sync::atomic::Ordering::Relaxed);
        [
            "--label".into(),
            format!("{}={app_id}", wisehosting_proto::LABEL_APP),
            "--label".into(),
            format!("wisehosting.instance={}", self.settings.instance),
            "--label".into(),
            format!("{}={worker_id}", wisehosting_proto::LABEL_WORKER),
            "--label".into(),
            format!("{}={deployment_id}", wisehosting_proto::LABEL_DEPLOYMENT),
        ]
    }

    pub(super) fn instance_filter(&self) -> String {
        format!("label=wisehosting.instance={}", self.settings.instance)
    }

    /// The app's build cache directory on this worker (created, private to root).
    async fn build_cache(&self, app_id: i64) -> Result<PathBuf, DeployError> {
        let dir = self.build_cache_dir(app_id);
        tokio::fs::create_dir_all(&dir).await.map_err(|e| {
            DeployError::platform(format!("cannot create the build cache {}: {e}", dir.display()))
        })?;
        use std::os::unix::fs::PermissionsExt;
        let _ = tokio::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).await;
        Ok(dir)
    }

    pub(super) fn build_cache_dir(&self, app_id: i64) -> PathBuf {
        self.data_dir.join("cache").join(format!("{}-app{app_id}", self.settings.instance))
    }

    fn container_name(&self, app_id: i64, deployment_id: i64) -> String {
        format!(
            "{}-app{app_id}-d{deployment_id}-{}",
            self.settings.instance,
            hex::encode(wisehosting_crypto::random_bytes::<3>())
        )
    }

    /// The Containerfile to build with: the configured path (inside the checkout), the
    /// repository's `Containerfile`/`Dockerfile`, or a preset's.
    ///
    /// The checkout is hostile (T35): a generated file is written in the work dir beside it,
    /// which the repository cannot name, created new (never through an existing name or link);
    /// a repository file is used only when its real path, links resolved, stays inside the
    /// checkout.
    fn containerfile(
        &self,
        work: &Path,
        src: &Path,
        payload: &DeploySpec,
        framework: Framework,
        app_id: i64,
    ) -> Result<PathBuf, DeployError> {
        if presets::is_language(framework) {
            let file = work.join("preset.Containerfile");
            let scope = format!("{}-app{app_id}", self.settings.instance);
            let text = presets::containerfile(framework, &self.settings, src, payload.port.get(), &scope)?;
            write_new(&file, &text, "the preset's Containerfile")?;
            return Ok(file);
        }
        if framework == Framework::Static {
            let file = work.join("static.Containerfile");
            let text = format!(
                "FROM {}\nCOPY . /www\nEXPOSE {port}\nCMD [\"httpd\", \"-f\", \"-v\", \"-p\", \"{port}\", \"-h\", \"/www\"]\n",
                self.settings.static_image,
                port = payload.port.get()
            );
            write_new(&file, &text, "the static preset's Containerfile")?;
            return Ok(file);
        }
        let candidates: Vec<(String, PathBuf)> = match &payload.dockerfile_path {
            Some(path) => vec![(path.to_string(), src.join(path.as_str()))],
            None => ["Containerfile", "Dockerfile"].iter().map(|n| (n.to_string(), src.join(n))).collect(),
        };
        let root = src
            .canonicalize()
            .map_err(|e| DeployError::platform(format!("cannot read the checkout: {e}")))?;
        for (name, candidate) in candidates {
            let Ok(real) = candidate.canonicalize() else { continue };
            if !real.starts_with(&root) {
                return Err(DeployError::user(format!(
                    "{name} in the repository is a symbolic link (or passes through one) that leaves the repository; commit the Containerfile itself, or point dockerfile_path at a file inside the repository"
                )));
            }
            if real.is_file() {
                return Ok(real);
            }
        }
        Err(DeployError::user(match &payload.dockerfile_path {
            Some(path) => format!("no Containerfile at {path} in the repository; fix dockerfile_path"),
            None => "the repository has no Containerfile or Dockerfile at its root; add one, set dockerfile_path, or use the static framework".into(),
        }))
    }

    pub(super) async fn deploy(
        &self,
        app_id: i64,
        deployment_id: i64,
        payload: &DeploySpec,
        reporter: &Reporter,
    ) -> Result<Done, DeployError> {
        let work = self.data_dir.join("builds").join(format!("{}-{deployment_id}", self.settings.instance));
        let _ = tokio::fs::remove_dir_all(&work).await;
        tokio::fs::create_dir_all(&work)
            .await
            .map_err(|e| DeployError::platform(format!("cannot create {}: {e}", work.display())))?;
        let result = self.deploy_in(&work, app_id, deployment_id, payload, reporter).await;
        let _ = tokio::fs::remove_dir_all(&work).await;
        result
    }

    async fn deploy_in(
        &self,
        work: &Path,
        app_id: i64,
        deployment_id: i64,
        payload: &DeploySpec,
        reporter: &Reporter,
    ) -> Result<Done, DeployError> {
        if let Some(image) = &payload.image {
            if self.podman.image_exists(image.as_str()).await {
                return self.run_kept_image(work, app_id, deployment_id, payload, image, reporter).await;
            }
            reporter
                .build_log(vec![format!(
                    "rollback: the image {image} is no longer on this worker; building its commit again"
                )])
                .await;
        }
        reporter.progress(Phase::Cloning).await;
        let src = work.join("src");
        let commit = self.clone(work, &src, payload, reporter).await?;
        reporter.build_log(vec![format!("checked out {commit}")]).await;

        let procfile = Procfile::read(&src)?;
        if let Some(web) = &procfile.web {
            reporter.build_log(vec![format!("Procfile: the app starts with `{web}`")]).await;
        }
        let (framework, marker) =
            presets::resolve(payload.framework, &src, payload.dockerfile_path.as_ref())?;
        if let Some(marker) = marker {
            reporter
                .build_log(vec![format!(
                    "framework auto: found {marker}, building with the {} preset",
                    framework.as_str()
                )])
                .await;
        }
        reporter.progress(Phase::Building).await;
        let containerfile = self.containerfile(work, &src, payload, framework, app_id)?;
        // A language preset's package caches, the app's own (SPEC §6).
        let cache =
            if presets::is_language(framework) { Some(self.build_cache(app_id).await?) } else { None };
        let iidfile = work.join("image-id");
        let tag = format!("{}:d{deployment_id}", self.image_repo(app_id));
        // The firewall of both networks the deploy uses, checked once, before anything runs.
        let mut networks = Vec::new();
        if self.settings.isolate_builds {
            networks.push(&firewall::BUILD);
        }
        if self.settings.isolate_apps {
            networks.push(&firewall::APPS);
        }
        // Independent: the firewall check and the Containerfile's images, side by side.
        let images = async {
            if framework == Framework::Static { Ok(()) } else { self.check_images(&containerfile).await }
        };
        let (confined, images) = tokio::join!(firewall::ensure(&self.podman, &networks), images);
        confined.map_err(|e| {
            DeployError::platform(format!(
                "cannot confine the build and the app, so nothing was started: {e}"
            ))
        })?;
        images?;
        let cgroup = BuildCgroup::create(
            &format!("{}-{deployment_id}", self.settings.instance),
            self.settings.build_pids,
        )
        .map_err(|e| {
            DeployError::platform(format!("cannot limit the build's processes, so it was not started: {e}"))
        })?;
        let build = || {
            let mut build = self.podman.build_command();
            if self.settings.isolate_builds {
                build.arg("--network").arg(firewall::BUILD.network);
            }
            build.args(build_limits(&self.settings, cgroup.parent()));
            if let Some(cache) = &cache {
                build.arg("--volume").arg(format!("{}:{}:rw", cache.display(), presets::CACHE_MOUNT));
            }
            if let Some(web) = &procfile.web {
                // The start command travels with the image, for restarts and rollbacks.
                build.arg("--label").arg(format!("{WEB_LABEL}={web}"));
            }
            build
                .arg("-f")
                .arg(&containerfile)
                .arg("-t")
                .arg(&tag)
                .arg("--iidfile")
                .arg(&iidfile)
                .arg("--")
                .arg(&src);
            build
        };
        let limit = Duration::from_secs(self.settings.build_timeout_secs);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match run_logged(build(), reporter, "podman build", limit).await {
                // Another build or an image prune on this host changed podman's store under
                // the cache lookup: a race of podman's, not the repository's fault. Once more.
                Err(CommandError::Failed { output, .. })
                    if attempt == 1 && output.contains("layer not known") =>
                {
                    reporter
                        .build_log(vec![
                            "podman's image store changed under the build (another build or a prune); building again"
                                .into(),
                        ])
                        .await;
                }
                result => {
                    result.map_err(|e| e.blame(Fault::User))?;
                    break;
                }
            }
        }
        drop(cgroup);
        let image_id = tokio::fs::read_to_string(&iidfile)
            .await
            .map_err(|e| DeployError::platform(format!("the build left no image id: {e}")))?;
        let image_id = ImageId::parse(image_id.trim()).map_err(|_| {
            DeployError::platform(format!("the build reported a malformed image id {:?}", image_id.trim()))
        })?;
        if let Some(release) = &procfile.release {
            self.release(work, deployment_id, &image_id, payload, release, reporter).await?;
        }
        // The static preset's httpd writes nothing.
        let run =
            RunSpec { read_only_root: framework == Framework::Static, ..RunSpec::of(payload, &image_id) };
        let done = self.start_version(work, app_id, deployment_id, &run, reporter).await?;
        Ok(Done { commit: Some(commit), ..done })
    }

    /// A rollback to an image this worker still has: no clone, no build. The image is tagged
    /// for the new deployment (so pruning counts it among the newest), then run as any new
    /// version: health check, switch.
    async fn run_kept_image(
        &self,
        work: &Path,
        app_id: i64,
        deployment_id: i64,
        payload: &DeploySpec,
        image: &ImageId,
        reporter: &Reporter,
    ) -> Result<Done, DeployError> {
        reporter
            .build_log(vec![format!("rollback: the image {image} is still on this worker; no build")])
            .await;
        let tag = format!("{}:d{deployment_id}", self.image_repo(app_id));
        self.podman.tag(image.as_str(), &tag).await.map_err(CommandError::platform)?;
        if self.settings.isolate_apps {
            firewall::ensure(&self.podman, &[&firewall::APPS]).await.map_err(|e| {
                DeployError::platform(format!("cannot confine the app, so it was not started: {e}"))
            })?;
        }
        let done =
            self.start_version(work, app_id, deployment_id, &RunSpec::of(payload, image), reporter).await?;
        Ok(Done { commit: payload.commit.as_ref().map(ToString::to_string), ..done })
    }

    /// Runs an image as the app's new version, checks its health and switches to it. The
    /// caller has checked the apps network's firewall ([`firewall::ensure`]) for this job.
    pub(super) async fn start_version(
        &self,
        work: &Path,
        app_id: i64,
        deployment_id: i64,
        spec: &RunSpec<'_>,
        reporter: &Reporter,
    ) -> Result<Done, DeployError> {
        let RunSpec { image_id, port, env, limits, read_only_root, health } = *spec;
        let web = self.web_command(image_id).await;
        reporter.progress(Phase::Starting).await;
        let env_file = work.join("env");
        write_new(&env_file, &env_file_text(env), "the env file")?;
        // A port found free can be taken before podman binds it (another process's outgoing
        // connection picks it as its source port): then the run is tried again on another.
        let mut attempt = 0;
        let mesh = self.settings.mesh_address.or_else(|| self.mesh.published());
        let (container_id, host_port) = loop {
            attempt += 1;
            let host_port = free_port(mesh)?;
            let name = self.container_name(app_id, deployment_id);
            let mut run: Vec<String> = vec!["--name".into(), name.clone()];
            run.extend(self.labels(app_id, deployment_id));
            run.extend(self.confinement(read_only_root));
            run.extend([
                "--memory".into(),
                format!("{}m", limits.memory_mb()),
                "--cpus".into(),
                format!("{}", limits.cpus()),
            ]);
            run.extend(publish_args(mesh, host_port, port.get()));
            run.extend([
                "--env-file".into(),
                env_file.display().to_string(),
                "--".into(),
                image_id.to_string(),
            ]);
            if let Some(web) = &web {
                run.extend(["/bin/sh".into(), "-c".into(), web.clone()]);
            }
            match self.podman.run_detached(&run).await {
                Ok(id) => break (id, host_port),
                Err(CommandError::Failed { output, .. })
                    if attempt < 3 && output.contains("address already in use") =>
                {
                    tracing::info!(
                        host_port,
                        "the host port was taken before podman bound it; trying another"
                    );
                    let _ = self.podman.remove(&[name]).await;
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&env_file);
                    return Err(CommandError::platform(e));
                }
            }
        };
        let _ = std::fs::remove_file(&env_file);

        reporter.progress(Phase::HealthChecking).await;
        if let Err(e) = self.wait_healthy(&container_id, host_port, health).await {
            let tail = self.podman.logs_tail(&container_id, 20).await;
            return Err(DeployError { message: format!("{e}\nlast lines of the container:\n{tail}"), ..e });
        }
        // From now on an exit of its own is restarted with back-off (not podman's policy,
        // which restarts at once, forever).
        self.supervisor.watch(&container_id);
        // The switch: the result goes out first (the control plane moves the app to the new
        // container), then the old ones drain and stop (`Pipeline::run_job`). A worker killed in
        // between leaves the old container to the re-sync, never an app with none.
        reporter.progress(Phase::Switching).await;
        Ok(Done {
            commit: None,
            image_id: Some(image_id.to_string()),
            host_port: Some(host_port),
            container_id: Some(container_id),
        })
    }

    /// The Procfile `web:` command the image was built with (its label), if any.
    async fn web_command(&self, image: &ImageId) -> Option<String> {
        let labels = self.podman.inspect(image.as_str(), "{{json .Labels}}").await.ok()?;
        let labels: serde_json::Value = serde_json::from_str(&labels).ok()?;
        labels[WEB_LABEL].as_str().filter(|c| !c.trim().is_empty()).map(str::to_string)
    }

    /// Runs the Procfile's `release:` command once in the new image — with the app's env,
    /// limits and confinement, to its end, its output in the build log — before the new
    /// version starts. A failure fails the deploy; the old version keeps serving.
    async fn release(
        &self,
        work: &Path,
        deployment_id: i64,
        image: &ImageId,
        payload: &DeploySpec,
        command: &str,
        reporter: &Reporter,
    ) -> Result<(), DeployError> {
        reporter.build_log(vec![format!("release: running `{command}`")]).await;
        if self.settings.isolate_apps {
            firewall::ensure(&self.podman, &[&firewall::APPS]).await.map_err(|e| {
                DeployError::platform(format!("cannot confine the release command, so it was not run: {e}"))
            })?;
        }
        let env_file = work.join("release-env");
        write_new(&env_file, &env_file_text(&payload.env), "the release env file")?;
        let mut run = self.podman.run_command();
        run.args(["--rm", "--name"])
            .arg(format!("{}-release-d{deployment_id}", self.settings.instance))
            // The instance's label only: not an app container, nothing supervises or routes it.
            .arg("--label")
            .arg(format!("wisehosting.instance={}", self.settings.instance))
            .args(self.confinement(false))
            .arg("--memory")
            .arg(format!("{}m", payload.limits.memory_mb()))
            .arg("--cpus")
            .arg(format!("{}", payload.limits.cpus()))
            .arg("--env-file")
            .arg(&env_file)
            .arg("--")
            .arg(image.as_str())
            .args(["/bin/sh", "-c", command]);
        let limit = Duration::from_secs(self.settings.build_timeout_secs);
        let result = run_logged(run, reporter, "the release command", limit).await;
        let _ = std::fs::remove_file(&env_file);
        result.map(drop).map_err(|e| {
            let failed = e.blame(Fault::User);
            DeployError {
                message: format!("{}; the previous version keeps serving", failed.message),
                ..failed
            }
        })
    }

    /// The `podman run` arguments that confine an app (T37): its own network, whose egress to
    /// the host, private ranges and other apps is refused ([`firewall::APPS`]); no IPv6; no
    /// privilege gained through setuid binaries; a minimal set of capabilities (podman's
    /// default without `SETFCAP`, `SETPCAP`, `SYS_CHROOT`); a cap on processes; and a read-only
    /// root where the preset writes nothing (the static preset).
    fn confinement(&self, read_only_root: bool) -> Vec<String> {
        let mut args: Vec<String> = [
            "--security-opt",
            "no-new-privileges",
            "--cap-drop",
            "all",
            "--cap-add",
            APP_CAPABILITIES,
            "--pids-limit",
            APP_PIDS_LIMIT,
        ]
        .map(String::from)
        .to_vec();
        if read_only_root {
            args.push("--read-only".into());
        }
        if self.settings.isolate_apps {
            args.extend(
                ["--network", firewall::APPS.network, "--sysctl", "net.ipv6.conf.all.disable_ipv6=1"]
                    .map(String::from),
            );
        }
        args
    }

    /// Waits until the app is healthy: at `/` (the default) any answer below 500, at a path the
    /// app named a 2xx or 3xx; its failing to is the user's fault.
    async fn wait_healthy(
        &self,
        container_id: &str,
        host_port: u16,
        health: Option<&HealthCheck>,
    ) -> Result<(), DeployError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DeployError::platform(format!("cannot set up the health check: {e}")))?;
        let root = HealthPath::root();
        let path = health.map_or(&root, |h| &h.path);
        let strict = !path.is_root();
        let secs = health.and_then(|h| h.timeout_secs).map_or(self.settings.health_timeout_secs, u64::from);
        let deadline = Instant::now() + Duration::from_secs(secs);
        let url = format!("http://127.0.0.1:{host_port}{path}");
        let healthy = |status: u16| if strict { (200..400).contains(&status) } else { status < 500 };
        let mut last = None;
        // Asked every 10 ms for the first 100 ms (most apps answer that fast), then with a
        // growing pause up to 250 ms, asking podman each time whether the container died.
        let mut pause = Duration::from_millis(10);
        for attempt in 0.. {
            if let Ok(response) = client.get(&url).send().await {
                let status = response.status().as_u16();
                if healthy(status) {
                    return Ok(());
                }
                last = Some(status);
            }
            if attempt < 10 {
                tokio::time::sleep(pause).await;
                continue;
            }
            let state = self.podman.inspect(container_id, "{{.State.Status}}").await.unwrap_or_default();
            if state == "exited" || state == "stopped" {
                return Err(DeployError::user("the container exited before answering its health check"));
            }
            if Instant::now() > deadline {
                let wanted = if strict { "2xx or 3xx" } else { "below 500" };
                let got = last.map_or("no answer".to_string(), |s| format!("the last answer was {s}"));
                return Err(DeployError::user(format!(
                    "no answer {wanted} at {path} on the app's port within {secs} s ({got}); check the app's health check path and that it listens on its port"
                )));
            }
            pause = (pause * 2).min(Duration::from_millis(250));
            tokio::time::sleep(pause).await;
        }
        Err(DeployError::user("the health check ended without an answer"))
    }
}

/// What a new container of an app runs with.
#[derive(Debug, Clone, Copy)]
pub(super) struct RunSpec<'a> {
    /// The image the build produced (by id, never a tag).
    pub image_id: &'a ImageId,
    pub port: Port,
    pub env: &'a Env,
    pub limits: Limits,
    pub read_only_root: bool,
    /// The app's health check; `None` for `/` within `deploy.health_timeout_secs`.
    pub health: Option<&'a HealthCheck>,
}

impl<'a> RunSpec<'a> {
    /// A deploy's new version: `image` with the payload's port, env, limits and health check.
    pub fn of(payload: &'a DeploySpec, image: &'a ImageId) -> RunSpec<'a> {
        RunSpec {
            image_id: image,
            port: payload.port,
            env: &payload.env,
            limits: payload.limits,
            // The static preset's httpd writes nothing.
            read_only_root: payload.framework == Framework::Static,
            health: payload.health.as_ref(),
        }
    }
}

/// The text of an env file (`KEY=value` lines) for `podman run --env-file`.
fn env_file_text(env: &Env) -> String {
    env.iter().map(|(k, v)| format!("{k}={}\n", v.expose())).collect()
}

/// `-p` arguments: the container's port on loopback (the edge router's upstream, the health
/// check) and, when the worker has a mesh address, there too at the same port (a central
/// proxy's upstream, `http://<wg_ip>:<port>`).
fn publish_args(mesh: Option<IpAddr>, host_port: u16, port: u16) -> Vec<String> {
    let mut args = vec!["-p".to_string(), format!("127.0.0.1:{host_port}:{port}")];
    if let Some(ip) = mesh.filter(|ip| *ip != IpAddr::from([127, 0, 0, 1])) {
        args.extend(["-p".to_string(), format!("{}:{host_port}:{port}", ip_literal(ip))]);
    }
    args
}

/// Writes a new private file (mode 0600). `create_new` (`O_CREAT|O_EXCL`) refuses an existing
/// name, a symbolic link included, so nothing is ever written through a link.
fn write_new(path: &Path, text: &str, what: &str) -> Result<(), DeployError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = |e: std::io::Error| DeployError::platform(format!("cannot write {what}: {e}"));
    let mut file =
        std::fs::OpenOptions::new().create_new(true).write(true).mode(0o600).open(path).map_err(cannot)?;
    file.write_all(text.as_bytes()).map_err(cannot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_are_free_and_below_the_ephemeral_range() {
        for _ in 0..50 {
            let port = free_port(None).expect("a free port");
            assert!(HOST_PORTS.contains(&port) && port < 32768, "{port}");
            assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), "{port} is free");
        }
    }

    #[test]
    fn containers_are_published_on_loopback_and_on_the_mesh_address_when_there_is_one() {
        assert_eq!(publish_args(None, 40001, 8080), ["-p", "127.0.0.1:40001:8080"]);
        assert_eq!(
            publish_args(Some("10.50.0.2".parse().expect("ip")), 40001, 8080),
            ["-p", "127.0.0.1:40001:8080", "-p", "10.50.0.2:40001:8080"]
        );
        assert_eq!(publish_args(Some("127.0.0.1".parse().expect("ip")), 1, 2), ["-p", "127.0.0.1:1:2"]);
        assert_eq!(publish_args(Some("fd00::2".parse().expect("ip")), 1, 2)[3], "[fd00::2]:1:2");
    }

    #[tokio::test]
    async fn a_command_past_its_limit_is_stopped_with_its_whole_tree() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let job = wisehosting_proto::messages::Job {
            job_id: 1,
            attempt: 1,
            app_id: 1,
            deployment_id: None,
            spec: wisehosting_proto::JobSpec::Unknown { kind: "test".into() },
        };
        let reporter = Reporter::new(tx, &job);
        let seconds = 100_000 + rand::random::<u32>() % 800_000;
        let mut cmd = Command::new("sh");
        // The sleep runs in a session of its own, as a RUN step's container process does.
        cmd.args(["-c", &format!("echo started; setsid sleep {seconds} & wait")]);
        let err =
            run_logged(cmd, &reporter, "the slow step", Duration::from_secs(1)).await.expect_err("too slow");
        assert!(err.to_string().contains("the slow step took longer than 1 s and was stopped"), "{err}");
        let needle = format!("sleep\0{seconds}");
        let mut gone = false;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            gone = !std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
            });
            if gone {
                break;
            }
        }
        assert!(gone, "the step's sleep outlived the limit");
    }
}

/// The image label that carries the Procfile's `web:` command.
pub(super) const WEB_LABEL: &str = "io.wisehosting.procfile.web";

/// The `web:` and `release:` lines of a repository's `Procfile` (Heroku's format: `name:
/// command`, one per line; other process types are ignored).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Procfile {
    pub web: Option<String>,
    pub release: Option<String>,
}

impl Procfile {
    /// At most this much of a Procfile is read.
    const MAX_BYTES: u64 = 64 * 1024;

    /// Reads `<checkout>/Procfile` when it is a regular file inside the checkout (not a link).
    pub fn read(checkout: &Path) -> Result<Procfile, DeployError> {
        let path = checkout.join("Procfile");
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return Ok(Procfile::default());
        };
        if !meta.file_type().is_file() {
            return Err(DeployError::user(
                "the Procfile is not a regular file (a link or a directory); make it a file",
            ));
        }
        if meta.len() > Self::MAX_BYTES {
            return Err(DeployError::user("the Procfile is larger than 64 KiB; keep only its process lines"));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|_| DeployError::user("the Procfile is not UTF-8 text; save it as UTF-8"))?;
        Ok(Procfile::parse(&text))
    }

    pub fn parse(text: &str) -> Procfile {
        let mut procfile = Procfile::default();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            let Some((name, command)) = line.split_once(':') else { continue };
            let command = command.trim();
            if command.is_empty() || command.contains('\0') {
                continue;
            }
            match name.trim() {
                "web" => procfile.web = Some(command.to_string()),
                "release" => procfile.release = Some(command.to_string()),
                _ => {}
            }
        }
        procfile
    }
}

#[cfg(test)]
mod procfile_tests {
    use super::Procfile;

    #[test]
    fn a_procfile_gives_its_web_and_release_commands_and_ignores_the_rest() {
        let p = Procfile::parse(
            "# comment\nweb: node server.js --port $PORT\nworker: node jobs.js\nrelease:  npm run migrate \n\nbad line\n",
        );
        assert_eq!(p.web.as_deref(), Some("node server.js --port $PORT"));
        assert_eq!(p.release.as_deref(), Some("npm run migrate"));
        assert_eq!(Procfile::parse("web:\nrelease:   \n"), Procfile::default());
    }
}
