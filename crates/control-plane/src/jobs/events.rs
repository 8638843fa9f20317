//! What workers report about jobs and apps, applied under the fence: a message counts only if
//! its (job id, attempt) is the job's live lease and the sender is the worker it was leased to.
//! A worker that was cut off and comes back can never overwrite a newer result.

use sqlx::PgPool;
use wisehosting_proto::messages::{
    AppStates, ContainerInfo, JobAccepted, JobProgress, JobResult, Log, RunningJob,
};

use wisehosting_proto::Phase;

use crate::logbus::LogBus;
use crate::store::jobs::{self, Fence};

/// The deployment phases a worker reports that the deployment's status shows.
const PHASES: [Phase; 4] = [Phase::Cloning, Phase::Building, Phase::Starting, Phase::HealthChecking];
/// Lines accepted in one `log` frame.
const MAX_LINES_PER_FRAME: usize = 1000;

pub async fn accepted(db: &PgPool, worker_id: i64, msg: JobAccepted) -> Result<(), sqlx::Error> {
    let fence = Fence { job_id: msg.job_id, attempt: msg.attempt, worker_id };
    match jobs::accept(db, fence).await? {
        Some(job) => {
            if let Some(deployment) = job.deployment_id {
                sqlx::query("UPDATE deployments SET status = 'cloning', started_at = now() WHERE id = $1 AND status = 'queued'")
                    .bind(deployment)
                    .execute(db)
                    .await?;
            }
        }
        None => stale(worker_id, msg.job_id, msg.attempt, "job_accepted"),
    }
    Ok(())
}

pub async fn progress(db: &PgPool, worker_id: i64, msg: JobProgress) -> Result<(), sqlx::Error> {
    let fence = Fence { job_id: msg.job_id, attempt: msg.attempt, worker_id };
    let Some(job) = jobs::fenced(db, fence).await? else {
        stale(worker_id, msg.job_id, msg.attempt, "job_progress");
        return Ok(());
    };
    if let (Some(deployment), true) = (job.deployment_id, PHASES.contains(&msg.phase)) {
        sqlx::query(
            "UPDATE deployments SET status = $2 WHERE id = $1 AND status NOT IN ('running', 'superseded', 'failed', 'cancelled')",
        )
        .bind(deployment)
        .bind(msg.phase.as_str())
        .execute(db)
        .await?;
    }
    Ok(())
}

pub async fn result(db: &PgPool, worker_id: i64, msg: JobResult) -> Result<(), sqlx::Error> {
    let fence = Fence { job_id: msg.job_id, attempt: msg.attempt, worker_id };
    let mut tx = db.begin().await?;
    let error = msg.error.as_deref().map(|e| e.chars().take(8_000).collect::<String>());
    let Some(job) = jobs::finish(&mut tx, fence, msg.ok, error.as_deref()).await? else {
        stale(worker_id, msg.job_id, msg.attempt, "job_result");
        return Ok(());
    };
    match (job.kind.as_str(), msg.ok) {
        ("deploy", true) => {
            let deployment = job.deployment_id.unwrap_or_default();
            sqlx::query(
                "UPDATE deployments SET status = 'running', image_id = $2, container_id = $3, host_port = $4, error = NULL, finished_at = now(),
                        commit_sha = COALESCE(commit_sha, $5) WHERE id = $1",
            )
            .bind(deployment)
            .bind(&msg.image_id)
            .bind(&msg.container_id)
            .bind(msg.host_port.map(i32::from))
            .bind(msg.commit.as_deref().filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_hexdigit())))
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE deployments SET status = 'superseded' WHERE app_id = $1 AND id <> $2 AND status = 'running'")
                .bind(job.app_id)
                .bind(deployment)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE apps SET status = 'running', current_deployment_id = $2, host_port = $3, updated_at = now() WHERE id = $1",
            )
            .bind(job.app_id)
            .bind(deployment)
            .bind(msg.host_port.map(i32::from))
            .execute(&mut *tx)
            .await?;
        }
        ("deploy", false) => {
            let reason = error.as_deref().unwrap_or("the deploy failed");
            if let Some(deployment) = job.deployment_id {
                crate::store::apps::end_deployment(&mut tx, deployment, "failed", reason).await?;
            }
        }
        ("stop", true) => set_app_status(&mut tx, job.app_id, "stopped").await?,
        ("start", true) => set_app_status(&mut tx, job.app_id, "running").await?,
        ("restart", true) => {
            // A restart re-creates the current version with the current env on a new port.
            set_app_status(&mut tx, job.app_id, "running").await?;
            if let Some(port) = msg.host_port {
                sqlx::query("UPDATE apps SET host_port = $2 WHERE id = $1")
                    .bind(job.app_id)
                    .bind(i32::from(port))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE deployments SET host_port = $2, container_id = COALESCE($3, container_id) WHERE id = $1")
                    .bind(job.deployment_id)
                    .bind(i32::from(port))
                    .bind(&msg.container_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        ("remove", true) => {
            sqlx::query("DELETE FROM apps WHERE id = $1").bind(job.app_id).execute(&mut *tx).await?;
        }
        _ => {}
    }
    tx.commit().await
}

async fn set_app_status(tx: &mut sqlx::PgConnection, app_id: i64, status: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE apps SET status = $2, updated_at = now() WHERE id = $1")
        .bind(app_id)
        .bind(status)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Log lines go to the bus; build lines also to their deployment's stored log. Only lines
/// about apps placed on the sending worker are taken.
pub async fn log(db: &PgPool, bus: &LogBus, worker_id: i64, msg: Log) -> Result<(), sqlx::Error> {
    let owner: Option<Option<i64>> = sqlx::query_scalar("SELECT worker_id FROM apps WHERE id = $1")
        .bind(msg.app_id)
        .fetch_optional(db)
        .await?;
    if owner.flatten() != Some(worker_id) {
        tracing::warn!(
            worker_id,
            app_id = msg.app_id,
            "dropped log lines about an app this worker does not run"
        );
        return Ok(());
    }
    let lines: Vec<String> = msg.lines.into_iter().take(MAX_LINES_PER_FRAME).collect();
    let stream = if msg.stream == "build" { "build" } else { "runtime" };
    bus.push(msg.app_id, msg.deployment_id, stream, &lines);
    if let (Some(deployment), "build") = (msg.deployment_id, stream) {
        let cleaned: Vec<String> = lines.iter().map(|l| crate::logbus::clean_line(l)).collect();
        let belongs: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM deployments WHERE id = $1 AND app_id = $2)")
                .bind(deployment)
                .bind(msg.app_id)
                .fetch_one(db)
                .await?;
        if belongs {
            crate::store::apps::append_build_log(db, deployment, &cleaned).await?;
        }
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

/// True for an app the user has not stopped since it last started (a SQL condition on `apps`):
/// a container coming back never overrides a user's stop.
const NOT_STOPPED_BY_USER: &str =
    "NOT EXISTS (SELECT 1 FROM jobs j WHERE j.app_id = apps.id AND j.kind = 'stop' AND j.status = 'succeeded'
    AND j.finished_at > coalesce((SELECT max(s.finished_at) FROM jobs s WHERE s.app_id = apps.id
        AND s.kind IN ('start', 'restart', 'deploy') AND s.status = 'succeeded'), 'epoch'))";

/// App states from the worker's monitor: a running app that exits or crash-loops is
/// `crashed`; a crashed or offline-stopped app whose container runs again is `running`. Only
/// apps placed on the sending worker are touched.
pub async fn app_states(db: &PgPool, worker_id: i64, msg: AppStates) -> Result<(), sqlx::Error> {
    for entry in msg.apps {
        let (from, to): (&[&str], &str) = match entry.state.as_str() {
            "running" => (&["crashed", "stopped"], "running"),
            "crash_looping" | "exited" => (&["running"], "crashed"),
            _ => continue,
        };
        sqlx::query(
            &format!(
                "UPDATE apps SET status = $3, updated_at = now() WHERE id = $1 AND worker_id = $2 AND status = ANY($4)
                   AND current_deployment_id IS NOT NULL AND {NOT_STOPPED_BY_USER}"
            ),
        )
        .bind(entry.app_id)
        .bind(worker_id)
        .bind(to)
        .bind(from)
        .execute(db)
        .await?;
    }
    Ok(())
}

/// Re-sync after a reconnect (`hello`): apps whose current deployment's container runs on
/// this worker are routable again.
pub async fn resync(db: &PgPool, worker_id: i64, containers: &[ContainerInfo]) -> Result<(), sqlx::Error> {
    let running: Vec<(i64, i64)> = containers
        .iter()
        .filter(|c| c.state == "running")
        .filter_map(|c| Some((c.app_id?, c.deployment_id?)))
        .collect();
    let (apps, deployments): (Vec<i64>, Vec<i64>) = running.into_iter().unzip();
    sqlx::query(
        &format!(
            "UPDATE apps SET status = 'running', updated_at = now() FROM unnest($2::bigint[], $3::bigint[]) AS r(app_id, deployment_id)
             WHERE apps.id = r.app_id AND apps.current_deployment_id = r.deployment_id AND apps.worker_id = $1
               AND apps.status IN ('stopped', 'crashed') AND {NOT_STOPPED_BY_USER}"
        ),
    )
    .bind(worker_id)
    .bind(&apps)
    .bind(&deployments)
    .execute(db)
    .await?;
    Ok(())
}

/// After a reconnect: jobs leased to this worker before the connection opened that it no
/// longer runs were lost with its process; they fail at once instead of waiting for the
/// rescue horizon, and the user can deploy again.
pub async fn fail_lost_jobs(
    db: &PgPool,
    worker_id: i64,
    connected_at: chrono::DateTime<chrono::Utc>,
    running: &[RunningJob],
) -> Result<u64, sqlx::Error> {
    let ids: Vec<i64> = running.iter().map(|j| j.job_id).collect();
    let reason = "the worker restarted while running this job; deploy again";
    let mut tx = db.begin().await?;
    let lost: Vec<Option<i64>> = sqlx::query_scalar(
        "UPDATE jobs SET status = 'failed', error = $4, finished_at = now()
         WHERE worker_id = $1 AND status IN ('dispatched', 'running') AND dispatched_at < $2 AND NOT (id = ANY($3))
         RETURNING deployment_id",
    )
    .bind(worker_id)
    .bind(connected_at)
    .bind(&ids)
    .bind(reason)
    .fetch_all(&mut *tx)
    .await?;
    for deployment in lost.iter().flatten() {
        crate::store::apps::end_deployment(&mut tx, *deployment, "failed", reason).await?;
    }
    tx.commit().await?;
    Ok(lost.len() as u64)
}

/// The desired state of a worker's apps, for `desired_state` after its `hello`.
pub async fn desired_state(
    db: &PgPool,
    worker_id: i64,
) -> Result<wisehosting_proto::messages::DesiredState, sqlx::Error> {
    let rows: Vec<(i64, Option<i64>, bool)> = sqlx::query_as(
        "SELECT a.id, a.current_deployment_id,
                EXISTS (SELECT 1 FROM jobs j WHERE j.app_id = a.id AND j.status IN ('queued', 'dispatched', 'running'))
         FROM apps a WHERE a.worker_id = $1",
    )
    .bind(worker_id)
    .fetch_all(db)
    .await?;
    Ok(wisehosting_proto::messages::DesiredState {
        apps: rows
            .into_iter()
            .map(|(app_id, deployment_id, busy)| wisehosting_proto::messages::DesiredApp {
                app_id,
                deployment_id,
                busy,
            })
            .collect(),
    })
}
