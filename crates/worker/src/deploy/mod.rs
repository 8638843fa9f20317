//! The deploy pipeline and the other jobs (SPEC §6), run on the worker for the control plane.
//!
//! Every step is argv only: `git` and `podman` get validated values, never a shell string.
//! A deploy is: clone (shallow) → build (`podman build`, image id read back from `--iidfile`)
//! → run by image id with the plan's limits, labels and env (from a 0600 env file removed at
//! once, so values are in neither argv nor podman's environment) → health check (HTTP until a
//! non-5xx answer) → switch (older containers of the app drain, then stop) → prune old images
//! (the newest `deploy.keep_images` stay). A rollback names an earlier image: when the worker
//! still has it, clone and build are skipped. On failure the new container is removed and the
//! old one keeps serving.

mod containerfile;
mod error;
mod git;
mod lifecycle;
mod presets;
mod retire;
mod steps;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wisehosting_proto::JobSpec;
use wisehosting_proto::job::{Fault, Phase};
use wisehosting_proto::messages::{Job, JobAccepted, JobProgress, JobResult, Log, LogStream};

use crate::config::DeploySettings;
use crate::runtime::Podman;
use wisehosting_proto::messages::Outgoing;

pub use error::{CommandError, DeployError};
pub use git::{Pin, check_https_repository, is_public_ip, resolver};

/// An address as it stands in `host:port` strings: IPv6 in brackets.
fn ip_literal(ip: IpAddr) -> String {
    if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() }
}

/// Runs jobs and reports through the session's outgoing queue.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub podman: Podman,
    pub data_dir: PathBuf,
    pub settings: DeploySettings,
    /// The mesh address the control plane gave this worker (apps are published there too
    /// when this host has it and `deploy.mesh_address` does not say otherwise).
    pub mesh: Arc<crate::mesh::MeshAddress>,
    /// The edge router, whose drain an old container waits for before it stops.
    pub edge: Option<Arc<crate::edge::Edge>>,
    /// Restarts app containers that exit on their own, with back-off.
    pub supervisor: Arc<crate::runtime::Supervisor>,
    /// Counts finished retire-and-prune passes (tests and benchmarks wait on it).
    pub housekeeping_done: Arc<std::sync::atomic::AtomicU64>,
    /// This worker's id (0 until it registers), stamped on its containers.
    pub worker_id: Arc<std::sync::atomic::AtomicU64>,
    /// Jobs in flight, and the retires and late clean-ups they spawn: awaited when the agent
    /// shuts down.
    pub tasks: tokio_util::task::TaskTracker,
}

/// Sends job messages and batched log lines.
#[derive(Debug, Clone)]
pub struct Reporter {
    out: mpsc::Sender<Outgoing>,
    job: (i64, i32),
    app_id: i64,
    deployment_id: Option<i64>,
}

impl Reporter {
    pub fn new(out: mpsc::Sender<Outgoing>, job: &Job) -> Self {
        Self { out, job: (job.job_id, job.attempt), app_id: job.app_id, deployment_id: job.deployment_id }
    }

    async fn send(&self, message: Outgoing) {
        let _ = self.out.send(message).await;
    }

    pub async fn progress(&self, phase: Phase) {
        let (job_id, attempt) = self.job;
        tracing::info!(job_id, attempt, %phase, "job phase");
        self.send(Outgoing::of(&JobProgress { job_id, attempt, phase })).await;
    }

    pub async fn build_log(&self, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        let log =
            Log { app_id: self.app_id, deployment_id: self.deployment_id, stream: LogStream::Build, lines };
        self.send(Outgoing::of(&log)).await;
    }
}

/// The outcome of a job, for `job_result`.
#[derive(Debug, Default)]
pub struct Done {
    pub commit: Option<String>,
    pub image_id: Option<String>,
    pub host_port: Option<u16>,
    pub container_id: Option<String>,
}

impl Pipeline {
    /// Accepts, runs and reports one job; cancelling `cancel` stops it where it stands.
    pub async fn run_job(self: Arc<Self>, job: Job, out: mpsc::Sender<Outgoing>, cancel: CancellationToken) {
        let reporter = Reporter::new(out.clone(), &job);
        reporter.send(Outgoing::of(&JobAccepted { job_id: job.job_id, attempt: job.attempt })).await;
        let work = self.dispatch(&job, &reporter);
        let result = tokio::select! {
            r = work => r,
            _ = cancel.cancelled() => Err(DeployError::cancelled()),
        };
        if result.is_err() {
            // Whatever the job started for this deployment goes: the old version keeps serving.
            // A `podman run` the cancel interrupted runs to its end (it is never killed
            // half-way), so look again a moment later for a container it created late.
            if let Some(deployment) = job.deployment_id.filter(|_| matches!(job.spec, JobSpec::Deploy(_))) {
                self.remove_deployment_containers(job.app_id, deployment).await;
                let pipeline = self.clone();
                self.tasks.spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                    pipeline.remove_deployment_containers(job.app_id, deployment).await;
                });
            }
        }
        let (ok, error, fault, done) = match result {
            Ok(done) => (true, None, None, done),
            Err(e) => {
                if e.fault == Fault::Platform {
                    tracing::error!(job_id = job.job_id, error = %e.message, "a job failed on the platform's side");
                }
                (false, Some(e.message), Some(e.fault), Done::default())
            }
        };
        let switched = done.container_id.clone().zip(done.image_id.clone());
        let message = JobResult {
            job_id: job.job_id,
            attempt: job.attempt,
            ok,
            error,
            image_id: done.image_id,
            host_port: done.host_port,
            container_id: done.container_id,
            commit: done.commit,
            fault,
        };
        let _ = out.send(Outgoing::of(&message)).await;
        // After the switch, off the job's path: the old containers drain and stop, then old
        // images go. The next job of the app may already run; it never touches these.
        if let Some((keep, image)) = switched {
            let pipeline = self.clone();
            self.tasks.spawn(async move {
                pipeline.retire_others(job.app_id, &keep, job.deployment_id).await;
                pipeline.prune_images(job.app_id, &image).await;
                pipeline.housekeeping_done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            });
        }
    }

    async fn dispatch(&self, job: &Job, reporter: &Reporter) -> Result<Done, DeployError> {
        match &job.spec {
            JobSpec::Deploy(spec) => {
                let deployment = job
                    .deployment_id
                    .ok_or_else(|| DeployError::platform("a deploy job needs a deployment"))?;
                self.deploy(job.app_id, deployment, spec, reporter).await
            }
            JobSpec::Restart(spec) => self.restart(job.app_id, spec, reporter).await,
            JobSpec::Stop(_) => self.stop(job.app_id).await,
            JobSpec::Start(_) => self.start(job.app_id).await,
            JobSpec::Remove(_) => self.remove(job.app_id).await,
            // Never a guess: an unreadable payload would have meant a restart on made-up
            // defaults (the wrong port, no env), an unknown kind anything at all.
            JobSpec::Invalid { kind, error } => Err(DeployError::platform(format!(
                "the {kind} job's payload is not understood ({error}); nothing was done"
            ))),
            JobSpec::Unknown { kind } => Err(DeployError::platform(format!(
                "this worker does not know the job kind {kind:?}; update the worker to the control plane's version"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wisehosting_proto::messages::JobResult;

    use super::*;

    fn pipeline() -> Arc<Pipeline> {
        let podman = Podman::new(None);
        Arc::new(Pipeline {
            supervisor: crate::runtime::Supervisor::new(podman.clone()),
            podman,
            data_dir: std::env::temp_dir().join("wisehosting-refusal-test"),
            settings: DeploySettings::default(),
            mesh: Arc::default(),
            edge: None,
            housekeeping_done: Arc::default(),
            worker_id: Arc::default(),
            tasks: tokio_util::task::TaskTracker::new(),
        })
    }

    /// Runs one job and returns its `job_result`.
    async fn result_of(kind: &str, payload: serde_json::Value) -> JobResult {
        let spec = JobSpec::from_parts(kind, payload);
        let job = Job { job_id: 9, attempt: 1, app_id: 4, deployment_id: Some(5), spec };
        let (tx, mut rx) = mpsc::channel(16);
        pipeline().run_job(job, tx, CancellationToken::new()).await;
        let mut last = None;
        while let Ok(out) = rx.try_recv() {
            if out.t == "job_result" {
                last = serde_json::from_str(&out.payload).ok();
            }
        }
        last.expect("a job_result was sent")
    }

    #[tokio::test]
    async fn an_unknown_job_kind_is_refused_by_name_never_run_as_something_else() {
        let result = result_of("teleport", json!({"slug": "shop"})).await;
        assert!(!result.ok);
        let error = result.error.unwrap_or_default();
        assert!(error.contains("does not know the job kind \"teleport\""), "{error}");
        assert_eq!(result.fault, Some(Fault::Platform), "the operators update the worker, not the user");
    }

    #[tokio::test]
    async fn a_restart_whose_payload_does_not_read_is_refused_with_the_reason() {
        // No port, no env, no limits: an older worker would have restarted on port 8080.
        let result = result_of("restart", json!({"slug": "shop", "deployment_id": 5})).await;
        assert!(!result.ok);
        let error = result.error.unwrap_or_default();
        assert!(
            error.contains("restart job's payload is not understood") && error.contains("port"),
            "{error}"
        );
        assert!(error.contains("nothing was done"), "{error}");
    }
}
