//! Benchmark of the job queue (issue 19), against a throwaway PostgreSQL:
//!
//! 1. Claim + complete throughput: 2,000 queued jobs (one per app) taken by 4 concurrent
//!    claimers through the queue's own statements (`lock_ready` with its one-job-per-app rule,
//!    `lease` of the batch — which also places the apps —, then `accept` of the batch and its
//!    results finished in one transaction, as the applier of worker reports applies the
//!    acceptances and results that arrive together), against the same work in the same round
//!    trips with raw `FOR UPDATE SKIP LOCKED` (claim 20 and mark them dispatched, mark them
//!    running in one statement, then each done in one transaction) — on the same `jobs` table
//!    (the price of the queue's rules) and on a bare table (that and the price of the schema) —
//!    in rotating rounds on the same database.
//! 2. Pickup latency: a real control plane with a connected worker (driven by hand); a job
//!    enqueued as the API enqueues it (sealed payload, `NOTIFY` at commit), timed from the
//!    commit to the job frame arriving at the worker, one at a time, p50/p99.
//!
//! Run with `bash scripts/bench.sh queue`. Prints figures; asserts nothing about speed.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use sqlx::PgPool;
use wisehosting_control_plane::store::jobs::{self, Fence, Outcome};
use wisehosting_proto::ServerMessage;
use wisehosting_proto::job::{JobSpec, RestartSpec};
use wisehosting_testkit::worker::RawWorker;
use wisehosting_testkit::{create_worker, fresh_database, percentile, spawn_control_plane_on};

const JOBS: i64 = 2000;
const CLAIMERS: usize = 4;
const BATCH: i64 = 20;
const ROUNDS: usize = 9;
const PICKUPS: usize = 200;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("rt");
    runtime.block_on(async {
        throughput().await;
        pickup().await;
    });
}

/// A user, a worker and `JOBS` apps running on it, each with one queued restart job (a job for
/// the app's worker: what most jobs are; a first deploy's placement is not what this measures).
async fn fill_queue(pool: &PgPool) -> i64 {
    sqlx::query("DELETE FROM jobs").execute(pool).await.expect("clear jobs");
    let worker: i64 = sqlx::query_scalar(
        "INSERT INTO workers (name, api_key_hash, mac_key_sealed) VALUES ('bench', encode(sha256(random()::text::bytea), 'hex'), '')
         ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
    )
    .fetch_one(pool)
    .await
    .expect("worker");
    let user: i64 = sqlx::query_scalar(
        "INSERT INTO users (email) VALUES ('queue@example.com')
         ON CONFLICT (lower(email)) DO UPDATE SET updated_at = now() RETURNING id",
    )
    .fetch_one(pool)
    .await
    .expect("user");
    sqlx::query(
        "INSERT INTO apps (user_id, slug, name, status, repo_url, worker_id)
         SELECT $1, 'app-' || n, 'app-' || n, 'running', 'https://example.com/r.git', $3
         FROM generate_series(1, $2) AS n ON CONFLICT (slug) DO NOTHING",
    )
    .bind(user)
    .bind(JOBS)
    .bind(worker)
    .execute(pool)
    .await
    .expect("apps");
    sqlx::query("INSERT INTO jobs (kind, app_id, status) SELECT 'restart', id, 'queued' FROM apps")
        .execute(pool)
        .await
        .expect("jobs");
    worker
}

/// Runs `CLAIMERS` claimers side by side until the queue is empty (each returns how many jobs
/// it completed): jobs per second.
async fn drain_with<F, Fut>(pool: &PgPool, claimer: F) -> f64
where
    F: Fn(PgPool) -> Fut,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    let started = Instant::now();
    let claimers: Vec<_> = (0..CLAIMERS).map(|_| tokio::spawn(claimer(pool.clone()))).collect();
    let mut total = 0;
    for claimer in claimers {
        total += claimer.await.expect("claimer");
    }
    assert_eq!(total, JOBS as u64, "every job claimed and completed once");
    total as f64 / started.elapsed().as_secs_f64()
}

/// Claims and completes every queued job through the queue's statements: jobs per second.
async fn drain_queue(pool: &PgPool, worker: i64) -> f64 {
    drain_with(pool, |pool| async move {
        let mut done = 0u64;
        loop {
            let mut tx = pool.begin().await.expect("tx");
            let ready = jobs::lock_ready(&mut tx, BATCH, &[worker]).await.expect("lock");
            if ready.is_empty() {
                tx.commit().await.expect("commit");
                return done;
            }
            let batch: Vec<&jobs::Ready> = ready.iter().collect();
            jobs::lease(&mut tx, worker, &batch).await.expect("lease");
            tx.commit().await.expect("commit");
            let fences: Vec<Fence> = ready.iter().map(|j| j.fence(worker)).collect();
            // The worker accepts the batch's jobs together: the applier accepts them in one
            // statement.
            let accepted = jobs::accept(&pool, &fences).await.expect("accept");
            assert_eq!(accepted.len(), fences.len(), "every job of the batch accepted");
            // The results of a batch arrive together: the applier finishes them in one
            // transaction, and wakes the dispatchers if jobs of those apps wait behind them.
            let mut tx = pool.begin().await.expect("tx");
            let mut queued_behind = false;
            for fence in fences {
                let outcome = Outcome { ok: true, error: None, fault: None };
                let job = jobs::finish(&mut tx, fence, outcome).await.expect("finish").expect("finished");
                queued_behind |= job.queued_behind;
                done += 1;
            }
            if queued_behind {
                jobs::wake(&mut tx).await.expect("wake");
            }
            tx.commit().await.expect("commit");
        }
    })
    .await
}

/// The four statements of a raw `FOR UPDATE SKIP LOCKED` queue: claim `$1` ids, lease them
/// (`$1` ids, `$2` the worker), mark them running (`$1` ids, `$2` the status they leave), finish
/// one (`$1` its id, `$2` the status it leaves). The statuses a job leaves are bound, as the
/// queue's own statements bind them: as literals, a partial index's predicate matches them and,
/// with statistics that predate the burst, the planner finds a job by its id by scanning every
/// leased job in `jobs_one_active_per_app` — a raw queue slowed by a plan, not a baseline.
struct RawStatements {
    claim: &'static str,
    lease: &'static str,
    accept: &'static str,
    finish: &'static str,
}

/// The queue's own table (its indexes and keys, filled by [`fill_queue`]), with none of the
/// queue's rules (no one-job-per-app, no placement, no fence, no wake-up): against this the
/// ratio is the price of the queue's logic alone.
const ON_JOBS: RawStatements = RawStatements {
    claim: "SELECT id FROM jobs WHERE status = 'queued' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    lease:
        "UPDATE jobs SET status = 'dispatched', worker_id = $2, attempt = attempt + 1, dispatched_at = now()
            WHERE id = ANY($1)",
    accept: "UPDATE jobs SET status = 'running', started_at = now() WHERE id = ANY($1) AND status = $2",
    finish: "UPDATE jobs SET status = 'succeeded', finished_at = now() WHERE id = $1 AND status = $2",
};

/// A bare table ([`bare_table`]): against this the ratio also includes the price of the schema.
const ON_BARE: RawStatements = RawStatements {
    claim: "SELECT id FROM bench_raw WHERE status = 'queued' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    lease: "UPDATE bench_raw SET status = 'dispatched', worker = $2, attempt = attempt + 1 WHERE id = ANY($1)",
    accept: "UPDATE bench_raw SET status = 'running' WHERE id = ANY($1) AND status = $2",
    finish: "UPDATE bench_raw SET status = 'done' WHERE id = $1 AND status = $2",
};

/// A bare 4-column table of `JOBS` queued jobs, for [`ON_BARE`].
async fn bare_table(pool: &PgPool) {
    sqlx::query("DROP TABLE IF EXISTS bench_raw").execute(pool).await.expect("drop");
    sqlx::query(
        "CREATE TABLE bench_raw (id BIGSERIAL PRIMARY KEY, status TEXT NOT NULL, worker BIGINT, attempt INT NOT NULL DEFAULT 0)",
    )
    .execute(pool)
    .await
    .expect("create");
    sqlx::query("INSERT INTO bench_raw (status) SELECT 'queued' FROM generate_series(1, $1)")
        .bind(JOBS)
        .execute(pool)
        .await
        .expect("fill");
}

/// The same work in the same round trips with raw `FOR UPDATE SKIP LOCKED` statements: jobs
/// per second.
async fn drain_raw(pool: &PgPool, sql: &'static RawStatements, worker: i64) -> f64 {
    drain_with(pool, |pool| async move {
        let mut done = 0u64;
        loop {
            let mut tx = pool.begin().await.expect("tx");
            let ids: Vec<i64> =
                sqlx::query_scalar(sql.claim).bind(BATCH).fetch_all(&mut *tx).await.expect("claim");
            if ids.is_empty() {
                tx.commit().await.expect("commit");
                return done;
            }
            sqlx::query(sql.lease).bind(&ids).bind(worker).execute(&mut *tx).await.expect("lease");
            tx.commit().await.expect("commit");
            sqlx::query(sql.accept).bind(&ids).bind("dispatched").execute(&pool).await.expect("accept");
            let mut tx = pool.begin().await.expect("tx");
            for id in ids {
                sqlx::query(sql.finish).bind(id).bind("running").execute(&mut *tx).await.expect("finish");
                done += 1;
            }
            tx.commit().await.expect("commit");
        }
    })
    .await
}

/// Fills and drains the queue (0), raw on the jobs table (1) or a bare table (2): jobs per
/// second.
async fn run_drain(pool: &PgPool, drain: usize) -> f64 {
    match drain {
        0 => {
            let worker = fill_queue(pool).await;
            drain_queue(pool, worker).await
        }
        1 => {
            let worker = fill_queue(pool).await;
            drain_raw(pool, &ON_JOBS, worker).await
        }
        _ => {
            bare_table(pool).await;
            drain_raw(pool, &ON_BARE, 1).await
        }
    }
}

async fn throughput() {
    let url = fresh_database(true).await;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(8).connect(&url).await.expect("pool");
    println!(
        "queue benchmark: {JOBS} jobs, {CLAIMERS} claimers taking {BATCH} at a time, {ROUNDS} rounds after an untimed one"
    );
    let (mut ours_all, mut same_all, mut bare_all) = (Vec::new(), Vec::new(), Vec::new());
    let (mut vs_same, mut vs_bare) = (Vec::new(), Vec::new());
    // A round untimed first: the tables, their indexes and the statements' plans warm.
    for drain in 0..3 {
        run_drain(&pool, drain).await;
    }
    for round in 0..ROUNDS {
        // The three in a rotating order, so none always runs on the warmest database.
        let mut rates = [0.0; 3];
        for turn in 0..3 {
            let drain = (round + turn) % 3;
            rates[drain] = run_drain(&pool, drain).await;
        }
        let [ours, same, bare] = rates;
        println!(
            "round {}: the queue {ours:.0} jobs/s; raw SKIP LOCKED on the jobs table {same:.0} jobs/s ({:.2}x), on a bare table {bare:.0} jobs/s ({:.2}x)",
            round + 1,
            ours / same,
            ours / bare
        );
        vs_same.push(ours / same);
        vs_bare.push(ours / bare);
        ours_all.push(ours);
        same_all.push(same);
        bare_all.push(bare);
    }
    let listed = |r: &[f64]| r.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ");
    let (same_listed, bare_listed) = (listed(&vs_same), listed(&vs_bare));
    println!(
        "claim + complete (medians): the queue {:.0} jobs/s; raw on the jobs table {:.0} jobs/s, queue/raw {:.2}x ({same_listed}); raw on a bare table {:.0} jobs/s, queue/raw {:.2}x ({bare_listed}) (goal >= 0.80x)",
        percentile(&mut ours_all, 0.5),
        percentile(&mut same_all, 0.5),
        percentile(&mut vs_same, 0.5),
        percentile(&mut bare_all, 0.5),
        percentile(&mut vs_bare, 0.5),
    );
    pool.close().await;
}

async fn pickup() {
    let url = fresh_database(true).await;
    let cp = spawn_control_plane_on(&url, |c| c.heartbeat_interval_secs = 30).await;
    let worker = create_worker(&cp, "pickup").await;
    let mut raw = RawWorker::connect_online(&cp, &worker).await;
    let (_, sealer) = wisehosting_control_plane::startup::keys(&cp.config).expect("keys");
    let user: i64 =
        sqlx::query_scalar("INSERT INTO users (email) VALUES ('pickup@example.com') RETURNING id")
            .fetch_one(&cp.db)
            .await
            .expect("user");
    let mut samples = Vec::with_capacity(PICKUPS);
    for n in 0..PICKUPS {
        let slug = format!("pickup-{n}");
        let app: i64 = sqlx::query_scalar(
            "INSERT INTO apps (user_id, slug, name, status, repo_url) VALUES ($1, $2, $2, 'running', 'https://example.com/r.git') RETURNING id",
        )
        .bind(user)
        .bind(&slug)
        .fetch_one(&cp.db)
        .await
        .expect("app");
        let spec = JobSpec::Restart(
            serde_json::from_value::<RestartSpec>(serde_json::json!({
                "slug": slug, "deployment_id": 1, "port": 8080, "memory_mb": 256, "cpus": 0.5
            }))
            .expect("spec"),
        );
        let mut tx = cp.db.begin().await.expect("tx");
        let id = jobs::enqueue(&mut tx, &sealer, app, None, &spec).await.expect("enqueue");
        tx.commit().await.expect("commit");
        let committed = Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), raw.recv()).await {
                Ok(Some(ServerMessage::Job(job))) if job.job_id == id => break,
                Ok(Some(_)) => continue,
                other => panic!("no job frame for job {id}: {other:?}"),
            }
        }
        samples.push(committed.elapsed().as_secs_f64() * 1000.0);
    }
    let (p50, p99) = (percentile(&mut samples, 0.5), percentile(&mut samples, 0.99));
    println!(
        "pickup latency, commit to the job frame at the worker ({PICKUPS} jobs): p50 {p50:.2} ms, p99 {p99:.2} ms (goal p99 <= 20 ms)"
    );
}
