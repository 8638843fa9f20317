//! What workers report about jobs and apps, applied under the fence: a message counts only if
//! its (job id, attempt) is the job's live lease and the sender is the worker it was leased to.
//! A worker that was cut off and comes back can never overwrite a newer result.
//!
//! The hub hands each connection's reports over a channel ([`crate::hub::Reports`]); [`spawn`]
//! applies them here, each connection's in order and connections side by side, so no SQL runs
//! in a socket's read loop. Every statement lives in `store/`; this layer decides which.

use std::sync::Arc;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use wisehosting_proto::JobKind;
use wisehosting_proto::messages::{
    AppRunState, AppStateEntry, AppStates, ContainerInfo, DesiredApp, DesiredState, JobAccepted, JobProgress,
    JobResult, Log, LogStream,
};

use super::reschedule::Settled;
use crate::domain::{AlertKind, AppStatus, DeploymentStatus};
use crate::hub::{HelloReport, Hub, Outgoing, Report, Reports};
use crate::logbus::LogBus;
use crate::observe::{self, notify::Channels};
use crate::store::apps;
use crate::store::deployments::{self, Ending, Switched};
use crate::store::jobs::{self, Fence, Outcome};

/// Lines accepted in one `log` frame.
const MAX_LINES_PER_FRAME: usize = 1000;
/// Job results (or acceptances) applied in one transaction, at most.
const MAX_PER_TRANSACTION: usize = 64;
/// The longest job error kept.
const MAX_ERROR_CHARS: usize = 8_000;

/// Applies reports until shutdown.
pub fn spawn(db: PgPool, hub: Hub, bus: Arc<LogBus>, channels: Channels, shutdown: CancellationToken) {
    let Some(mut incoming) = hub.take_reports() else {
        tracing::error!("worker reports are already being applied elsewhere; not starting a second applier");
        return;
    };
    let applier = Applier { db, hub: hub.clone(), bus, channels };
    tokio::spawn(hub.track(async move {
        loop {
            let reports = tokio::select! {
                _ = shutdown.cancelled() => return,
                reports = incoming.recv() => match reports {
                    Some(reports) => reports,
                    None => return,
                },
            };
            let applier = applier.clone();
            tokio::spawn(applier.hub.track(applier.clone().apply_all(reports)));
        }
    }));
}

/// `first` and the reports of its kind queued right behind it (`pick` takes them), up to
/// [`MAX_PER_TRANSACTION`]; the first report of another kind is kept in `next`.
fn together<T>(
    reports: &mut Reports,
    next: &mut Option<Report>,
    first: T,
    pick: impl Fn(Report) -> Result<T, Report>,
) -> Vec<T> {
    let mut batch = vec![first];
    while batch.len() < MAX_PER_TRANSACTION {
        let Ok(report) = reports.rx.try_recv() else { break };
        match pick(*report) {
            Ok(more) => batch.push(more),
            Err(other) => {
                *next = Some(other);
                break;
            }
        }
    }
    batch
}

#[derive(Clone)]
struct Applier {
    db: PgPool,
    hub: Hub,
    bus: Arc<LogBus>,
    channels: Channels,
}

impl Applier {
    async fn apply_all(self, mut reports: Reports) {
        let worker_id = reports.worker_id;
        let mut next = None;
        loop {
            let report = match next.take() {
                Some(report) => report,
                None => match reports.rx.recv().await {
                    Some(report) => *report,
                    None => return,
                },
            };
            // Boxed: the task waits on `recv` most of its life, and one per connection should
            // not hold the space of every SQL future `apply` may await.
            // Results, and acceptances, that arrived together are applied together (in order;
            // the report after them waits its turn).
            let applied = match report {
                Report::JobResult(first) => {
                    let batch = together(&mut reports, &mut next, *first, |report| match report {
                        Report::JobResult(more) => Ok(*more),
                        other => Err(other),
                    });
                    Box::pin(self.apply_results(worker_id, batch)).await
                }
                Report::JobAccepted(first) => {
                    let batch = together(&mut reports, &mut next, first, |report| match report {
                        Report::JobAccepted(more) => Ok(more),
                        other => Err(other),
                    });
                    Box::pin(accepted(&self.db, worker_id, &batch)).await
                }
                report => Box::pin(self.apply(worker_id, report)).await,
            };
            if let Err(e) = applied {
                tracing::warn!(worker_id, error = %e, "cannot apply a worker report");
            }
        }
    }

    /// Job results, in one transaction; should it fail, each again in its own (one result's
    /// failure must not lose the others: the fence makes a retry safe).
    async fn apply_results(&self, worker_id: i64, batch: Vec<JobResult>) -> Result<(), sqlx::Error> {
        let db = &self.db;
        let settled = match results(db, worker_id, &batch).await {
            Ok(settled) => settled,
            Err(e) if batch.len() > 1 => {
                tracing::warn!(worker_id, results = batch.len(), error = %e, "applying job results one by one");
                let mut settled = Vec::new();
                for one in &batch {
                    match results(db, worker_id, std::slice::from_ref(one)).await {
                        Ok(more) => settled.extend(more),
                        Err(e) => {
                            tracing::warn!(worker_id, job_id = one.job_id, error = %e, "cannot apply a job result")
                        }
                    }
                }
                settled
            }
            Err(e) => return Err(e),
        };
        self.hub.routes_changed(worker_id);
        for one in settled {
            // An app runs on its new worker: the old one removes its copy (never two
            // serving); or a standby was dropped: its worker removes it.
            super::reschedule::announce(db, &self.hub, one).await?;
        }
        Ok(())
    }

    async fn apply(&self, worker_id: i64, report: Report) -> Result<(), sqlx::Error> {
        let db = &self.db;
        match report {
            Report::Hello(hello) => {
                let HelloReport { version, containers, running_jobs, connected_at } = *hello;
                self.hub.came_online(worker_id, &version).await;
                let running: Vec<i64> = running_jobs.iter().map(|j| j.job_id).collect();
                match jobs::fail_lost(db, worker_id, connected_at, &running).await? {
                    0 => {}
                    n => tracing::warn!(worker_id, jobs = n, "failed jobs the worker lost while it was away"),
                }
                send_desired(db, &self.hub, worker_id).await?;
                // Answers of an order under way (the worker restarted, or moved here from the
                // other control plane of a pair).
                crate::acme::push_challenges(db, &self.hub, worker_id, false).await;
                resync(db, worker_id, &containers).await?;
                self.hub.worker_ready(worker_id);
            }
            Report::JobAccepted(m) => accepted(db, worker_id, &[m]).await?,
            Report::JobProgress(m) => progress(db, worker_id, m).await?,
            Report::JobResult(m) => self.apply_results(worker_id, vec![*m]).await?,
            Report::Log(m) => log(db, &self.bus, worker_id, *m).await?,
            // The monitor reports every few seconds; routes move only when a status did.
            Report::AppStates(m) => {
                if app_states(db, self.channels, worker_id, m).await? {
                    self.hub.routes_changed(worker_id);
                }
            }
        }
        Ok(())
    }
}

/// Acceptances that arrived together, in one statement; their deployments start.
pub async fn accepted(db: &PgPool, worker_id: i64, msgs: &[JobAccepted]) -> Result<(), sqlx::Error> {
    let fences: Vec<Fence> =
        msgs.iter().map(|m| Fence { job_id: m.job_id, attempt: m.attempt, worker_id }).collect();
    let accepted = jobs::accept(db, &fences).await?;
    for msg in msgs.iter().filter(|m| !accepted.iter().any(|a| a.job_id == m.job_id)) {
        stale(worker_id, msg.job_id, msg.attempt, "job_accepted");
    }
    let deployments: Vec<i64> = accepted.iter().filter_map(|a| a.deployment_id).collect();
    deployments::start(db, &deployments).await
}

pub async fn progress(db: &PgPool, worker_id: i64, msg: JobProgress) -> Result<(), sqlx::Error> {
    let fence = Fence { job_id: msg.job_id, attempt: msg.attempt, worker_id };
    let Some(job) = jobs::fenced(db, fence).await? else {
        stale(worker_id, msg.job_id, msg.attempt, "job_progress");
        return Ok(());
    };
    if let (Some(deployment), Some(status)) = (job.deployment_id, DeploymentStatus::of_phase(msg.phase)) {
        deployments::enter_phase(db, deployment, status).await?;
    }
    Ok(())
}

/// Sends a worker connected here its desired state; false if it is not connected here.
pub async fn send_desired(db: &PgPool, hub: &Hub, worker_id: i64) -> Result<bool, sqlx::Error> {
    if !hub.is_connected(worker_id) {
        return Ok(false);
    }
    let desired = desired_state(db, worker_id).await?;
    let _ = hub.send(worker_id, Outgoing::of(&desired));
    Ok(true)
}

/// The worker's desired state changed: sent if it is connected here, else its holder (the
/// other control plane of a pair) is told; a worker that is away gets it at its hello.
pub async fn tell_desired(db: &PgPool, hub: &Hub, worker_id: i64) -> Result<(), sqlx::Error> {
    if !send_desired(db, hub, worker_id).await? {
        jobs::notify_desired(db, worker_id).await?;
    }
    Ok(())
}

/// Applies job results in one transaction; returns what the deploys among them changed (apps
/// switched to this worker, or standbys dropped), for [`super::reschedule::announce`].
pub async fn results(db: &PgPool, worker_id: i64, msgs: &[JobResult]) -> Result<Vec<Settled>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let mut settled = Vec::new();
    let mut queued_behind = false;
    for msg in msgs {
        if let Some((job, changed)) = result(&mut tx, worker_id, msg).await? {
            queued_behind |= job.queued_behind;
            settled.extend(changed.filter(|s| *s != Settled::Held));
        }
    }
    if queued_behind {
        jobs::wake(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(settled)
}

/// Applies one job's result in `tx`: the job ended, if the fence matched, with what a successful
/// deploy changed (see [`results`]).
async fn result(
    tx: &mut sqlx::PgConnection,
    worker_id: i64,
    msg: &JobResult,
) -> Result<Option<(jobs::Ended, Option<Settled>)>, sqlx::Error> {
    let fence = Fence { job_id: msg.job_id, attempt: msg.attempt, worker_id };
    // PostgreSQL's text takes no NUL byte: one would fail the statement and lose the result.
    let error = msg
        .error
        .as_deref()
        .map(|e| e.chars().filter(|c| *c != '\0').take(MAX_ERROR_CHARS).collect::<String>());
    let outcome = Outcome { ok: msg.ok, error: error.as_deref(), fault: msg.fault };
    let Some(ended) = jobs::finish(&mut *tx, fence, outcome).await? else {
        stale(worker_id, msg.job_id, msg.attempt, "job_result");
        return Ok(None);
    };
    let job = &ended.job;
    let mut settled = None;
    match (job.kind, msg.ok) {
        (JobKind::Deploy, true) => {
            let switched = Switched {
                image_id: msg.image_id.as_deref(),
                container_id: msg.container_id.as_deref(),
                host_port: msg.host_port,
                commit: msg.commit.as_deref(),
            };
            let standby = match job.deployment_id {
                Some(deployment) => super::reschedule::standby_ran(&mut *tx, deployment, switched).await?,
                None => None,
            };
            settled = Some(match standby {
                Some(standby) => standby,
                None => {
                    if let Some(deployment) = job.deployment_id {
                        deployments::switch_to(&mut *tx, job.app_id, deployment, switched).await?;
                    }
                    // The app runs where this deploy switched: a move (a drain) ends here.
                    let left = jobs::place_on(&mut *tx, job.app_id, worker_id).await?;
                    Settled::Switched { to: worker_id, left }
                }
            });
        }
        (JobKind::Deploy, false) => {
            let reason = error.as_deref().unwrap_or("the deploy failed");
            if let Some(deployment) = job.deployment_id {
                deployments::end(&mut *tx, deployment, Ending::Failed, reason).await?;
            }
        }
        (JobKind::Stop, true) => apps::set_status(&mut *tx, job.app_id, AppStatus::Stopped).await?,
        (JobKind::Start, true) => apps::set_status(&mut *tx, job.app_id, AppStatus::Running).await?,
        (JobKind::Restart, true) => {
            // A restart re-creates the current version with the current env on a new port.
            apps::set_status(&mut *tx, job.app_id, AppStatus::Running).await?;
            if let Some(port) = msg.host_port {
                apps::set_host_port(&mut *tx, job.app_id, port).await?;
                if let Some(deployment) = job.deployment_id {
                    deployments::moved(&mut *tx, deployment, port, msg.container_id.as_deref()).await?;
                }
            }
        }
        (JobKind::Remove, true) => apps::delete(&mut *tx, job.app_id).await?,
        // A lifecycle job that failed leaves the app as it was; the job shows the reason.
        (JobKind::Stop | JobKind::Start | JobKind::Restart | JobKind::Remove, false) => {}
    }
    Ok(Some((ended, settled)))
}

/// Log lines go to the bus; build lines also to their deployment's stored log. Only lines
/// about apps placed on the sending worker are taken.
pub async fn log(db: &PgPool, bus: &LogBus, worker_id: i64, msg: Log) -> Result<(), sqlx::Error> {
    if !apps::reports_for(db, msg.app_id, worker_id).await? {
        tracing::warn!(
            worker_id,
            app_id = msg.app_id,
            "dropped log lines about an app this worker does not run"
        );
        return Ok(());
    }
    let lines: Vec<String> = msg.lines.into_iter().take(MAX_LINES_PER_FRAME).collect();
    bus.push(msg.app_id, msg.deployment_id, msg.stream.as_str(), &lines);
    if let (Some(deployment), LogStream::Build) = (msg.deployment_id, msg.stream) {
        let cleaned: Vec<String> = lines.iter().map(|l| crate::logbus::clean_line(l)).collect();
        deployments::append_build_log(db, msg.app_id, deployment, &cleaned).await?;
    }
    Ok(())
}

fn stale(worker_id: i64, job_id: i64, attempt: i32, what: &str) {
    tracing::info!(
        worker_id,
        job_id,
        attempt,
        message = what,
        "ignored a message for a job lease that is not live"
    );
}

/// App states from the worker's monitor: a running app that exits or crash-loops is
/// `crashed`; a crashed or offline-stopped app whose container runs again is `running`. Only
/// apps placed on the sending worker are touched, and never an app its user stopped. True if
/// any app's status moved.
pub async fn app_states(
    db: &PgPool,
    channels: Channels,
    worker_id: i64,
    msg: AppStates,
) -> Result<bool, sqlx::Error> {
    let mut moved = false;
    for entry in msg.apps {
        crashloop_alert(db, channels, worker_id, &entry).await?;
        let (from, to): (&[AppStatus], AppStatus) = match entry.state {
            AppRunState::Running => (&AppStatus::BACK_FROM, AppStatus::Running),
            AppRunState::CrashLooping | AppRunState::Exited => (&AppStatus::CRASHES_FROM, AppStatus::Crashed),
            AppRunState::Other => continue,
        };
        moved |= apps::follow_container(db, worker_id, entry.app_id, from, to).await?;
    }
    Ok(moved)
}

/// An app crash-looping raises its `crashloop` alert; running again clears it. Only for
/// apps placed on the reporting worker.
async fn crashloop_alert(
    db: &PgPool,
    channels: Channels,
    worker_id: i64,
    entry: &AppStateEntry,
) -> Result<(), sqlx::Error> {
    let crash_looping = match entry.state {
        AppRunState::CrashLooping => true,
        AppRunState::Running => false,
        AppRunState::Exited | AppRunState::Other => return Ok(()),
    };
    if apps::worker_of(db, entry.app_id).await? != Some(worker_id) {
        return Ok(());
    }
    let mut tx = db.begin().await?;
    let now = chrono::Utc::now();
    if crash_looping {
        let exit = entry.exit_code.map_or_else(String::new, |c| format!(", last exit code {c}"));
        let message = format!("its containers keep exiting ({} restarts{exit})", entry.restarts);
        observe::alerts::raise(&mut tx, channels, entry.app_id, AlertKind::Crashloop, &message, now).await?;
    } else {
        observe::alerts::clear(&mut tx, channels, entry.app_id, AlertKind::Crashloop, now).await?;
    }
    tx.commit().await
}

/// Re-sync after a reconnect (`hello`): apps whose current deployment's container runs on
/// this worker are routable again.
pub async fn resync(db: &PgPool, worker_id: i64, containers: &[ContainerInfo]) -> Result<(), sqlx::Error> {
    let running: Vec<(i64, i64)> = containers
        .iter()
        // Podman's own state name.
        .filter(|c| c.state == "running")
        .filter_map(|c| Some((c.app_id?, c.deployment_id?)))
        .collect();
    apps::resync_running(db, worker_id, &running).await
}

/// The desired state of a worker's apps, for `desired_state` after its `hello`.
pub async fn desired_state(db: &PgPool, worker_id: i64) -> Result<DesiredState, sqlx::Error> {
    let rows = apps::desired_on(db, worker_id).await?;
    let apps = rows
        .into_iter()
        .map(|(app_id, deployment_id, busy)| DesiredApp { app_id, deployment_id, busy })
        .collect();
    Ok(DesiredState { apps })
}
