//! The `jobs` table: the queue (SPEC §5). Jobs are enqueued in the transaction of the rows they
//! act on, claimed with `FOR UPDATE SKIP LOCKED`, and fenced: every worker message names
//! (job id, attempt) and counts only if it matches the job's current lease.

use std::collections::HashMap;

use sqlx::{PgConnection, PgPool};
use wisehosting_crypto::{Aad, Sealer};
use wisehosting_proto::job::Fault;
use wisehosting_proto::{JobKind, JobSpec};

use super::StoreError;
use super::deployments::{self, Ending};
use crate::domain::JobStatus;

/// The channel `NOTIFY` wakes the dispatcher on.
pub const CHANNEL: &str = "wh_jobs";
/// The channel naming a worker whose desired state changed, for the control plane holding it.
pub const DESIRED_CHANNEL: &str = "wh_desired";
/// A job leased longer than this is failed with a reason.
pub const STUCK_AFTER_MINUTES: i32 = 15;

fn payload_aad(job_id: &str) -> Aad<'_> {
    Aad { table: "jobs", column: "payload_sealed", row: job_id }
}

/// Queues a job with its payload sealed, supersedes older queued deploys of the app, and
/// notifies the dispatcher (the notification is sent at commit).
pub async fn enqueue(
    tx: &mut PgConnection,
    sealer: &Sealer,
    app_id: i64,
    deployment_id: Option<i64>,
    spec: &JobSpec,
) -> Result<i64, StoreError> {
    let Some(kind) = spec.kind().filter(|_| !matches!(spec, JobSpec::Invalid { .. })) else {
        return Err(StoreError::Conflict(format!("a {} job cannot be queued", spec.kind_str())));
    };
    if kind == JobKind::Deploy {
        supersede_queued_deploys(tx, app_id).await?;
    }
    let kind = kind.as_str();
    let payload = spec.payload();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO jobs (kind, app_id, deployment_id, status) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(kind)
    .bind(app_id)
    .bind(deployment_id)
    .bind(JobStatus::Queued)
    .fetch_one(&mut *tx)
    .await?;
    let sealed = sealer.seal(payload.to_string().as_bytes(), payload_aad(&id.to_string()))?;
    sqlx::query("UPDATE jobs SET payload_sealed = $2 WHERE id = $1")
        .bind(id)
        .bind(sealed)
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(id.to_string()).execute(&mut *tx).await?;
    Ok(id)
}

/// A newer deploy replaces queued older ones: their jobs are cancelled and their
/// deployments superseded.
async fn supersede_queued_deploys(tx: &mut PgConnection, app_id: i64) -> Result<(), sqlx::Error> {
    let superseded: Vec<Option<i64>> = sqlx::query_scalar(
        "UPDATE jobs SET status = $3, error = 'superseded by a newer deploy', finished_at = now()
         WHERE app_id = $1 AND kind = $2 AND status = $4 RETURNING deployment_id",
    )
    .bind(app_id)
    .bind(JobKind::Deploy.as_str())
    .bind(JobStatus::Cancelled)
    .bind(JobStatus::Queued)
    .fetch_all(&mut *tx)
    .await?;
    let ids: Vec<i64> = superseded.into_iter().flatten().collect();
    deployments::supersede(tx, &ids).await
}

/// A queued job ready to lease: the oldest queued job of its app, none of whose jobs is leased.
#[derive(Debug, Clone)]
pub struct Ready {
    pub id: i64,
    pub kind: JobKind,
    pub app_id: i64,
    pub deployment_id: Option<i64>,
    pub payload_sealed: Option<String>,
    /// The attempts made so far (the lease makes the next).
    pub attempt: i32,
    /// The worker the app is placed on, if any.
    pub app_worker_id: Option<i64>,
    pub goes: Goes,
}

/// Where a ready job goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goes {
    /// To the worker its app is on.
    ToAppWorker(i64),
    /// To a worker placement chooses: the app has none, or the job is a deploy and the app's
    /// worker is not online (offline, or disabled by an operator).
    Placed(Placing),
}

/// What placement weighs for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placing {
    /// The zone the app must stay in: its own, else its worker's (its hostname has it).
    pub zone: Option<String>,
    /// The plan of the app's owner (what it reserves on a worker).
    pub owner_plan: String,
    /// A standby's deploy (a rescheduled app of a worker gone, started before the limit): the
    /// app stays placed where it is until the switch.
    pub standby: bool,
}

impl Ready {
    /// A standby's deploy (see [`Placing::standby`]).
    pub fn is_standby(&self) -> bool {
        matches!(&self.goes, Goes::Placed(p) if p.standby)
    }

    /// The lease [`lease`] gives it on `worker_id` (the next attempt: the job is locked, its
    /// attempt cannot change meanwhile).
    pub fn fence(&self, worker_id: i64) -> Fence {
        Fence { job_id: self.id, attempt: self.attempt + 1, worker_id }
    }
}

/// A row of [`claim_in_window`]: the window's size and last id, and a job locked in it (none,
/// every column `NULL`, when no job of the window was ready).
#[derive(sqlx::FromRow)]
struct ClaimRow {
    window_len: i64,
    window_last: Option<i64>,
    id: Option<i64>,
    kind: Option<String>,
    app_id: Option<i64>,
    deployment_id: Option<i64>,
    payload_sealed: Option<String>,
    attempt: Option<i32>,
    app_worker_id: Option<i64>,
    needs_placement: Option<bool>,
}

/// Locks up to `limit` ready jobs this control plane can act on: those of apps on a worker
/// connected here (`local`), and those that need placing. Jobs of apps held by another control
/// plane of a pair are left to it (and never crowd these out). At most one job per app, its
/// oldest: jobs of one app run one at a time in the order queued (two leased at once would
/// break `jobs_one_active_per_app` and fail the whole batch).
///
/// The queue is read in windows of the oldest queued jobs (by `jobs_queued_idx`, in id order),
/// each read, judged and locked in one statement, the next window read only if this one held
/// too few ready jobs: a claim costs the same whatever the planner believes of the table's
/// statistics. (One statement over every queued job let a stale estimate choose to join and
/// sort all of them on each claim: 15–30 ms at 2,000 queued, instead of well under 1 ms.)
/// What placement weighs (the owner's plan, the zone, whether a deploy is a standby's) is read
/// afterwards, only for the jobs placement chooses a worker for: most go to their app's worker.
pub async fn lock_ready(tx: &mut PgConnection, limit: i64, local: &[i64]) -> Result<Vec<Ready>, sqlx::Error> {
    let window = limit.saturating_mul(4).max(1);
    let mut claimed: Vec<ClaimRow> = Vec::new();
    let mut after = 0i64;
    loop {
        let rows = claim_in_window(&mut *tx, (after, window), limit - claimed.len() as i64, local).await?;
        let (window_len, window_last) = rows.first().map_or((0, None), |r| (r.window_len, r.window_last));
        claimed.extend(rows.into_iter().filter(|r| r.id.is_some()));
        match window_last {
            Some(last) if (claimed.len() as i64) < limit && window_len >= window => after = last,
            _ => break,
        }
    }
    with_placing(tx, claimed).await
}

/// Locks up to `limit` ready jobs, in id order, among the `window` oldest queued jobs after
/// `after` (see [`lock_ready`]); every row also tells the window's size and last id.
///
/// The window's bounds are read first (a materialized scan of `jobs_queued_idx`), then its jobs
/// by a range of the same index in id order (a partial index whose predicate the status
/// literal matches): the join with `apps` stops as soon as `limit` jobs are locked, with no
/// sort. Each job's siblings are probed by a scalar subquery (one index lookup per job,
/// whatever the estimates), not a join a stale estimate could turn into a scan of every queued
/// job per job: a leased one in `jobs_one_active_per_app`, an older unfinished one in
/// `jobs_unfinished_app_idx` (whose predicate no other index's matches, so no stale estimate
/// can answer it from `jobs_queued_idx`); their statuses are literals, as in those predicates.
/// A worker's status is looked up only for a deploy of an app on a worker not connected here.
/// (Joining the owner, the worker and the deployment for every job let the planner hash-join
/// and sort the whole window before locking.) A test holds the literals equal to
/// [`JobStatus`].
async fn claim_in_window(
    tx: &mut PgConnection,
    (after, window): (i64, i64),
    limit: i64,
    local: &[i64],
) -> Result<Vec<ClaimRow>, sqlx::Error> {
    sqlx::query_as(
        "WITH w AS MATERIALIZED (SELECT id FROM jobs WHERE status = 'queued' AND id > $1 ORDER BY id LIMIT $2)
         SELECT s.window_len, s.window_last, c.*
         FROM (SELECT count(*) AS window_len, min(id) AS window_first, max(id) AS window_last FROM w) s
         LEFT JOIN LATERAL (
           SELECT j.id, j.kind, j.app_id, j.deployment_id, j.payload_sealed, j.attempt, a.worker_id AS app_worker_id,
                  (a.worker_id IS NULL OR (j.kind = $5 AND (SELECT x.status FROM workers x WHERE x.id = a.worker_id)
                                           IS DISTINCT FROM $4)) AS needs_placement
           FROM jobs j JOIN apps a ON a.id = j.app_id
           WHERE j.id BETWEEN s.window_first AND s.window_last AND j.status = 'queued'
             AND (a.worker_id = ANY($3) OR a.worker_id IS NULL
                  OR (j.kind = $5 AND (SELECT x.status FROM workers x WHERE x.id = a.worker_id) IS DISTINCT FROM $4))
             AND (SELECT r.id FROM jobs r
                  WHERE r.app_id = j.app_id AND r.status IN ('dispatched', 'running') LIMIT 1) IS NULL
             AND (SELECT e.id FROM jobs e WHERE e.app_id = j.app_id
                  AND e.status IN ('queued', 'dispatched', 'running') AND e.id < j.id LIMIT 1) IS NULL
           ORDER BY j.id LIMIT $6 FOR UPDATE OF j SKIP LOCKED
         ) c ON true",
    )
    .bind(after)
    .bind(window)
    .bind(local)
    .bind(crate::domain::WorkerStatus::Online)
    .bind(JobKind::Deploy.as_str())
    .bind(limit)
    .fetch_all(&mut *tx)
    .await
}

/// The claimed jobs with where each goes: what placement weighs is read, in one statement, for
/// the jobs placement chooses a worker for. (Such a job whose rows are gone — none can be, the
/// job is locked and its app and owner are its keys — is left queued.)
async fn with_placing(tx: &mut PgConnection, claimed: Vec<ClaimRow>) -> Result<Vec<Ready>, sqlx::Error> {
    let ids: Vec<i64> =
        claimed.iter().filter(|c| c.needs_placement == Some(true)).filter_map(|c| c.id).collect();
    let mut placing: HashMap<i64, Placing> = HashMap::new();
    if !ids.is_empty() {
        let rows: Vec<(i64, Option<String>, String, bool)> = sqlx::query_as(
            "SELECT j.id, COALESCE(a.zone, w.zone), u.plan, d.switch_at IS NOT NULL
             FROM jobs j JOIN apps a ON a.id = j.app_id JOIN users u ON u.id = a.user_id
             LEFT JOIN workers w ON w.id = a.worker_id LEFT JOIN deployments d ON d.id = j.deployment_id
             WHERE j.id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        placing.extend(
            rows.into_iter()
                .map(|(id, zone, owner_plan, standby)| (id, Placing { zone, owner_plan, standby })),
        );
    }
    let mut ready = Vec::with_capacity(claimed.len());
    for c in claimed {
        // A locked job's columns are never NULL (only a window without one gives NULLs).
        let (Some(id), Some(kind), Some(app_id), Some(attempt), Some(needs_placement)) =
            (c.id, c.kind, c.app_id, c.attempt, c.needs_placement)
        else {
            continue;
        };
        let goes = match (needs_placement, c.app_worker_id) {
            (false, Some(worker_id)) => Goes::ToAppWorker(worker_id),
            _ => match placing.remove(&id) {
                Some(placing) => Goes::Placed(placing),
                None => continue,
            },
        };
        ready.push(Ready {
            id,
            kind: JobKind::try_from(kind).map_err(|e| sqlx::Error::Decode(e.into()))?,
            app_id,
            deployment_id: c.deployment_id,
            payload_sealed: c.payload_sealed,
            attempt,
            app_worker_id: c.app_worker_id,
            goes,
        });
    }
    Ok(ready)
}

/// Tells every control plane that `worker_id`'s desired state changed (the one holding it sends
/// it).
pub async fn notify_desired(db: &PgPool, worker_id: i64) -> Result<(), sqlx::Error> {
    super::notify_worker(db, DESIRED_CHANNEL, worker_id).await
}

/// Moves apps to `worker_id`, remembering the worker each left (told to remove its copy once
/// the new one runs) — except an app whose copy is serving (a drained worker's): it stays
/// where it is, and routed there, until the new copy runs ([`place_on`] at the deploy's
/// switch), so a move is no downtime.
async fn move_apps(tx: &mut PgConnection, worker_id: i64, apps: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE apps SET moved_from_worker_id = COALESCE(worker_id, moved_from_worker_id), worker_id = $2
         WHERE id = ANY($1) AND worker_id IS DISTINCT FROM $2 AND (worker_id IS NULL OR status <> $3)",
    )
    .bind(apps)
    .bind(worker_id)
    .bind(crate::domain::AppStatus::Running)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The app runs on `worker_id` now (its deploy switched there); returns the worker it left,
/// if any (told to remove its copy), clearing the record of a move.
pub async fn place_on(
    tx: &mut PgConnection,
    app_id: i64,
    worker_id: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let left: Option<Option<i64>> = sqlx::query_scalar(
        "UPDATE apps a SET worker_id = $2, moved_from_worker_id = NULL
         FROM (SELECT id, COALESCE(moved_from_worker_id, NULLIF(worker_id, $2)) AS left_worker
               FROM apps WHERE id = $1 FOR UPDATE) o
         WHERE a.id = o.id RETURNING o.left_worker",
    )
    .bind(app_id)
    .bind(worker_id)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(left.flatten().filter(|w| *w != worker_id))
}

/// Places apps on a worker connected to another control plane of a pair, which leases their
/// jobs once woken (the caller notifies [`CHANNEL`]). A move off a worker is remembered, so the
/// old one is told to remove its copy once the new one runs. An app whose copy serves stays
/// where it is: the job is then leased to the chosen worker directly, by this control plane
/// only if it holds that worker (see the dispatcher).
pub async fn place(tx: &mut PgConnection, worker_id: i64, apps: &[i64]) -> Result<(), sqlx::Error> {
    if !apps.is_empty() {
        move_apps(tx, worker_id, apps).await?;
    }
    sqlx::query("SELECT pg_notify($1, 'placed')").bind(CHANNEL).execute(&mut *tx).await?;
    Ok(())
}

/// Fails a queued job no worker can take, and its deployment, with the reason.
pub async fn fail_queued(tx: &mut PgConnection, job_id: i64, reason: &str) -> Result<(), sqlx::Error> {
    let failed: Vec<Option<i64>> = sqlx::query_scalar(
        "UPDATE jobs SET status = $3, error = $2, finished_at = now() WHERE id = $1 AND status = $4
         RETURNING deployment_id",
    )
    .bind(job_id)
    .bind(reason)
    .bind(JobStatus::Failed)
    .bind(JobStatus::Queued)
    .fetch_all(&mut *tx)
    .await?;
    end_deployments_of(tx, &failed, reason).await
}

/// Leases jobs (locked by [`lock_ready`] in this transaction) to one worker and places their
/// apps there, in two statements whatever their number; each job's lease is
/// [`Ready::fence`].
pub async fn lease(tx: &mut PgConnection, worker_id: i64, jobs: &[&Ready]) -> Result<(), sqlx::Error> {
    let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
    // Most jobs are for apps already on the worker: only the others are moved (a standby's
    // app moves at its switch).
    let apps: Vec<i64> = jobs
        .iter()
        .filter(|j| j.app_worker_id != Some(worker_id) && !j.is_standby())
        .map(|j| j.app_id)
        .collect();
    let leased = sqlx::query(
        "UPDATE jobs SET status = $3, worker_id = $2, attempt = attempt + 1, dispatched_at = now()
         WHERE id = ANY($1)",
    )
    .bind(&ids)
    .bind(worker_id)
    .bind(JobStatus::Dispatched)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if leased != ids.len() as u64 {
        // Never: the claim locked every one of them. Rolled back, the jobs stay queued.
        return Err(sqlx::Error::Protocol(format!("{leased} of {} locked jobs leased", ids.len())));
    }
    if !apps.is_empty() {
        move_apps(tx, worker_id, &apps).await?;
    }
    Ok(())
}

/// Puts back a lease whose frame could not be sent (the worker never saw it).
pub async fn unlease(db: &PgPool, job_id: i64, attempt: i32) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE jobs SET status = $3, worker_id = NULL WHERE id = $1 AND attempt = $2 AND status = $4",
    )
    .bind(job_id)
    .bind(attempt)
    .bind(JobStatus::Queued)
    .bind(JobStatus::Dispatched)
    .execute(db)
    .await?;
    Ok(())
}

/// The job's spec, opened from its sealed payload; `Invalid` when the payload does not open
/// (the master secret changed) or does not read, with the reason.
pub fn open_spec(sealer: &Sealer, job: &Ready) -> JobSpec {
    let opened = job
        .payload_sealed
        .as_deref()
        .ok_or_else(|| "it has no payload".to_string())
        .and_then(|sealed| {
            sealer
                .open(sealed, payload_aad(&job.id.to_string()))
                .map_err(|e| format!("its payload cannot be opened ({e}); was the master secret changed?"))
        })
        .and_then(|bytes| {
            serde_json::from_slice(&bytes).map_err(|e| format!("its payload does not read: {e}"))
        });
    match opened {
        Ok(payload) => JobSpec::from_parts(job.kind.as_str(), payload),
        Err(error) => JobSpec::Invalid { kind: job.kind, error },
    }
}

/// Cancels the app's queued jobs (the app is going away), with the reason.
pub async fn cancel_queued_for_app(
    tx: &mut PgConnection,
    app_id: i64,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE jobs SET status = $3, error = $2, finished_at = now() WHERE app_id = $1 AND status = $4",
    )
    .bind(app_id)
    .bind(reason)
    .bind(JobStatus::Cancelled)
    .bind(JobStatus::Queued)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Fails leased jobs (returned by `failed`, each with its deployment) and their deployments,
/// with the reason.
async fn end_deployments_of(
    tx: &mut PgConnection,
    failed: &[Option<i64>],
    reason: &str,
) -> Result<(), sqlx::Error> {
    for deployment in failed.iter().flatten() {
        deployments::end(tx, *deployment, Ending::Failed, reason).await?;
    }
    Ok(())
}

/// Fails a job the control plane itself cannot send (its payload does not open or read), and
/// its deployment, with the reason; nothing reached a worker.
pub async fn fail_unsendable(
    db: &PgPool,
    job_id: i64,
    attempt: i32,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    let failed: Vec<Option<i64>> = sqlx::query_scalar(
        "UPDATE jobs SET status = $4, error = $3, finished_at = now()
         WHERE id = $1 AND attempt = $2 AND status = $5 RETURNING deployment_id",
    )
    .bind(job_id)
    .bind(attempt)
    .bind(reason)
    .bind(JobStatus::Failed)
    .bind(JobStatus::Dispatched)
    .fetch_all(&mut *tx)
    .await?;
    end_deployments_of(&mut tx, &failed, reason).await?;
    tx.commit().await
}

/// The lease a worker message must match.
#[derive(Debug, Clone, Copy)]
pub struct Fence {
    pub job_id: i64,
    pub attempt: i32,
    pub worker_id: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Leased {
    #[sqlx(try_from = "String")]
    pub kind: JobKind,
    pub app_id: i64,
    pub deployment_id: Option<i64>,
}

/// A job a worker accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Accepted {
    pub job_id: i64,
    pub deployment_id: Option<i64>,
}

/// `job_accepted` for the acceptances that arrived together, in one statement: each job whose
/// fence matches goes dispatched → running; returns those (the others were stale).
pub async fn accept(db: &PgPool, fences: &[Fence]) -> Result<Vec<Accepted>, sqlx::Error> {
    let ids: Vec<i64> = fences.iter().map(|f| f.job_id).collect();
    let attempts: Vec<i32> = fences.iter().map(|f| f.attempt).collect();
    let workers: Vec<i64> = fences.iter().map(|f| f.worker_id).collect();
    // The jobs are found by their ids (the primary key); the fence is checked on each. (A join
    // with the fences let the planner read every leased job through `jobs_one_active_per_app`.)
    sqlx::query_as(
        "UPDATE jobs j SET status = $4, started_at = now()
         WHERE j.id = ANY($1) AND j.status = $5
           AND (j.id, j.attempt, j.worker_id) IN (SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[]))
         RETURNING j.id AS job_id, j.deployment_id",
    )
    .bind(&ids)
    .bind(&attempts)
    .bind(&workers)
    .bind(JobStatus::Running)
    .bind(JobStatus::Dispatched)
    .fetch_all(db)
    .await
}

/// The job, if the fence matches its live lease.
pub async fn fenced(db: impl sqlx::PgExecutor<'_>, fence: Fence) -> Result<Option<Leased>, sqlx::Error> {
    sqlx::query_as(
        "SELECT kind, app_id, deployment_id FROM jobs
         WHERE id = $1 AND attempt = $2 AND worker_id = $3 AND status = ANY($4)",
    )
    .bind(fence.job_id)
    .bind(fence.attempt)
    .bind(fence.worker_id)
    .bind(JobStatus::LEASED)
    .fetch_optional(db)
    .await
}

/// How a leased job ended, as its worker reports it.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    pub ok: bool,
    pub error: Option<&'a str>,
    /// Whose fault a failure was, when the worker said.
    pub fault: Option<Fault>,
}

/// A job [`finish`] ended.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Ended {
    #[sqlx(flatten)]
    pub job: Leased,
    /// A job of the same app waits in the queue (it can go now: see [`wake`]).
    pub queued_behind: bool,
}

/// Ends a leased job, if the fence matches; returns what it was, and whether a job of its app
/// waits behind it.
///
/// The app's other unfinished jobs (queued: one leased job per app, this one) are probed in
/// `jobs_unfinished_app_idx`, its statuses literals as in its predicate (implied by no other
/// index's), in the same statement: one index lookup, not a statement per batch of results.
/// (With `app_id = ANY`, the planner read every version of every job of the apps by
/// `jobs_app_id_idx`, dead ones included; with `EXISTS`, it could join the apps with every
/// queued job.) The fence's statuses stay a bound array: as literals, they let the planner find
/// the job by scanning `jobs_one_active_per_app` when its statistics are stale.
pub async fn finish(
    tx: &mut PgConnection,
    fence: Fence,
    outcome: Outcome<'_>,
) -> Result<Option<Ended>, sqlx::Error> {
    let status = if outcome.ok { JobStatus::Succeeded } else { JobStatus::Failed };
    let fault = outcome.fault.filter(|f| *f != Fault::Other && !outcome.ok).map(Fault::as_str);
    sqlx::query_as(
        "UPDATE jobs j SET status = $4, error = $5, fault = $6, finished_at = now()
         WHERE id = $1 AND attempt = $2 AND worker_id = $3 AND status = ANY($7)
         RETURNING kind, app_id, deployment_id,
                   (SELECT q.id FROM jobs q WHERE q.app_id = j.app_id
                      AND q.status IN ('queued', 'dispatched', 'running') AND q.id > j.id LIMIT 1) IS NOT NULL
                   OR (SELECT q.id FROM jobs q WHERE q.app_id = j.app_id
                      AND q.status IN ('queued', 'dispatched', 'running') AND q.id < j.id LIMIT 1) IS NOT NULL
                   AS queued_behind",
    )
    .bind(fence.job_id)
    .bind(fence.attempt)
    .bind(fence.worker_id)
    .bind(status)
    .bind(outcome.error)
    .bind(fault)
    .bind(JobStatus::LEASED)
    .fetch_optional(&mut *tx)
    .await
}

/// Wakes the dispatchers (at commit): jobs queued behind ones that just ended can go now, not
/// at the next poll.
pub async fn wake(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, 'ended')").bind(CHANNEL).execute(&mut *tx).await?;
    Ok(())
}

/// Fails every job leased longer than the rescue horizon, and its deployment.
pub async fn fail_stuck(db: &PgPool) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    if !super::take_turn(&mut tx, super::Periodic::Rescue).await? {
        return Ok(0);
    }
    let reason = format!("the worker did not finish within {STUCK_AFTER_MINUTES} minutes; deploy again");
    let stuck: Vec<Option<i64>> = sqlx::query_scalar(
        "UPDATE jobs SET status = $3, error = $2, finished_at = now()
         WHERE status = ANY($4) AND dispatched_at < now() - make_interval(mins => $1)
         RETURNING deployment_id",
    )
    .bind(STUCK_AFTER_MINUTES)
    .bind(&reason)
    .bind(JobStatus::Failed)
    .bind(JobStatus::LEASED)
    .fetch_all(&mut *tx)
    .await?;
    end_deployments_of(&mut tx, &stuck, &reason).await?;
    tx.commit().await?;
    Ok(stuck.len() as u64)
}

/// After a reconnect: jobs leased to this worker before the connection opened that it no
/// longer runs (`running` are the ones it does) were lost with its process; they fail at once
/// instead of waiting for the rescue horizon, and the user can deploy again.
pub async fn fail_lost(
    db: &PgPool,
    worker_id: i64,
    connected_at: chrono::DateTime<chrono::Utc>,
    running: &[i64],
) -> Result<u64, sqlx::Error> {
    let reason = "the worker restarted while running this job; deploy again";
    let mut tx = db.begin().await?;
    let lost: Vec<Option<i64>> = sqlx::query_scalar(
        "UPDATE jobs SET status = $5, error = $4, finished_at = now()
         WHERE worker_id = $1 AND status = ANY($6) AND dispatched_at < $2 AND NOT (id = ANY($3))
         RETURNING deployment_id",
    )
    .bind(worker_id)
    .bind(connected_at)
    .bind(running)
    .bind(reason)
    .bind(JobStatus::Failed)
    .bind(JobStatus::LEASED)
    .fetch_all(&mut *tx)
    .await?;
    end_deployments_of(&mut tx, &lost, reason).await?;
    tx.commit().await?;
    Ok(lost.len() as u64)
}

/// A cancelled job's lease, to tell its worker about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelledLease {
    pub job_id: i64,
    pub attempt: i32,
    pub worker_id: i64,
}

/// Cancels the unfinished job of a deployment. Returns the lease to tell the worker about,
/// when the job had reached one.
pub async fn cancel_for_deployment(
    tx: &mut PgConnection,
    deployment_id: i64,
    reason: &str,
) -> Result<Option<CancelledLease>, sqlx::Error> {
    let row: Option<(i64, i32, Option<i64>, JobStatus)> = sqlx::query_as(
        "UPDATE jobs j SET status = $2, error = $4, finished_at = now()
         FROM jobs old WHERE old.id = j.id AND j.deployment_id = $1 AND j.status = ANY($3)
         RETURNING j.id, j.attempt, j.worker_id, old.status",
    )
    .bind(deployment_id)
    .bind(JobStatus::Cancelled)
    .bind(JobStatus::OPEN)
    .bind(reason)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.and_then(|(job_id, attempt, worker, old)| {
        let was_leased = JobStatus::LEASED.contains(&old);
        worker.filter(|_| was_leased).map(|worker_id| CancelledLease { job_id, attempt, worker_id })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_literals_of_the_claim_are_the_statuses_it_means() {
        assert_eq!(JobStatus::Queued.as_str(), "queued");
        assert_eq!(JobStatus::LEASED.map(JobStatus::as_str), ["dispatched", "running"]);
    }
}
