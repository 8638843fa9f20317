//! The fleet (SPEC §5, §14.5): placement by zone and room, rescheduling the apps of a worker
//! that is gone, drain/enable/delete, and two control planes on one database.

use std::time::{Duration, Instant};

use serde_json::Value;
use wisehosting_proto::messages::{Hello, Job};
use wisehosting_proto::{JobSpec, ServerMessage};
use wisehosting_testkit::{
    BeatingWorker, ControlPlaneProcess, FailoverProxy, RawWorker, TestControlPlane, UserSession,
    WorkerProcess, create_worker, create_worker_in_zone, eventually, spawn_control_plane_on,
    spawn_control_plane_with,
};

use crate::{text, wisehosting};

const BEAT: Duration = Duration::from_millis(300);

async fn fleet(reschedule_after_secs: u64) -> TestControlPlane {
    spawn_control_plane_with(|c| {
        c.single_machine = true;
        c.heartbeat_interval_secs = 1;
        c.scheduler.reschedule_after_secs = reschedule_after_secs;
    })
    .await
}

async fn online(cp: &TestControlPlane, worker: &wisehosting_testkit::TestWorker) -> BeatingWorker {
    RawWorker::connect_online(cp, worker).await.beating(BEAT)
}

async fn app_json(user: &UserSession, app: i64) -> Value {
    user.get(&format!("/api/apps/{app}")).await.json().await.expect("json")
}

async fn wait_app(user: &UserSession, app: i64, check: impl Fn(&Value) -> bool) -> Value {
    let done = eventually(Duration::from_secs(15), Duration::from_millis(50), || async {
        check(&app_json(user, app).await)
    })
    .await;
    let now = app_json(user, app).await;
    assert!(done, "the app reached the expected state: {now}");
    now
}

fn deploy_spec(job: &Job) -> &wisehosting_proto::job::DeploySpec {
    match &job.spec {
        JobSpec::Deploy(spec) => spec,
        other => panic!("expected a deploy, got {other:?}"),
    }
}

/// A `hello` on a new connection of `worker`, and the `desired_state` it is answered with.
async fn come_back(cp: &TestControlPlane, worker: &wisehosting_testkit::TestWorker) -> Vec<i64> {
    let mut raw = RawWorker::connect(cp, worker).await;
    raw.send(&Hello { version: "test".into(), ..Default::default() }).await;
    loop {
        match raw.recv().await {
            Some(ServerMessage::DesiredState(d)) => return d.apps.iter().map(|a| a.app_id).collect(),
            Some(_) => continue,
            None => panic!("closed before desired_state"),
        }
    }
}

#[tokio::test]
async fn a_gone_workers_app_is_redeployed_in_its_zone_after_the_limit_and_the_returning_worker_drops_it() {
    let cp = fleet(5).await;
    let a = create_worker_in_zone(&cp, "eu-a", "eu").await;
    // Created before eu-b: were zones ignored, the tie between the two would go to us-c.
    let c = create_worker_in_zone(&cp, "us-c", "us").await;
    let b = create_worker_in_zone(&cp, "eu-b", "eu").await;
    let mut wa = online(&cp, &a).await;
    let user = cp.login("fleet@example.com").await;
    let (app, _) = user.deploy("wanderer", "https://example.com/r.git").await;
    let first = wa.next_job(Duration::from_secs(10)).await.expect("the only worker gets the deploy");
    wa.finish_deploy(&first, 40001).await;
    let ran = wait_app(&user, app, |a| a["status"] == "running").await;
    assert_eq!(ran["worker_id"], a.id, "{ran}");
    let running_version = ran["current_deployment_id"].as_i64().expect("current deployment");

    let mut wb = online(&cp, &b).await;
    let mut wc = online(&cp, &c).await;
    let killed = Instant::now();
    wa.kill().await;
    let moved = wb.next_job(Duration::from_secs(20)).await.expect("eu-b gets the app of eu-a");
    let waited = killed.elapsed();
    // Offline after 3 silent heartbeats (3 s); the standby starts a third of the limit before
    // it (at 3.3 s of silence; the last heartbeat was up to one beat before the kill).
    assert!(waited >= Duration::from_secs(3) - BEAT, "rescheduled too early: {waited:?}");
    assert!(waited <= Duration::from_secs(12), "rescheduled too late: {waited:?}");
    assert_eq!(moved.app_id, app);
    let spec = deploy_spec(&moved);
    assert_eq!(spec.commit.as_ref().map(|c| c.as_str()), Some("0123456789abcdef0123456789abcdef01234567"));
    assert_eq!(
        spec.image.as_ref().map(|i| i.as_str().to_string()),
        Some(BeatingWorker::image_of(&first)),
        "the same version, its image reused where the worker has it"
    );
    assert_eq!(first.deployment_id, Some(running_version));
    assert!(wc.next_job(Duration::from_millis(500)).await.is_none(), "us-c is in another zone");
    // Until the new copy takes over the app is not routed to eu-a (it is gone) nor eu-b.
    let mid = app_json(&user, app).await;
    assert_ne!(mid["status"], "running", "{mid}");
    wb.finish_deploy(&moved, 40002).await;
    let standby = moved.deployment_id.expect("the standby's deployment");
    let held = eventually(Duration::from_secs(5), Duration::from_millis(20), || async {
        deployment_json(&user, standby).await["status"] == "switching"
    })
    .await;
    assert!(held, "the standby's deploy succeeded and waits for the limit (not switched to yet)");
    let now = wait_app(&user, app, |a| a["status"] == "running" && a["host_port"] == 40002).await;
    let switched = killed.elapsed();
    assert_eq!(now["worker_id"], b.id, "{now}");
    assert_eq!(now["current_deployment_id"], standby, "{now}");
    // The limit counts from the last heartbeat (up to a beat before the kill); the switch is
    // made a moment ahead of it, so that the route is there at the limit.
    let limit = Duration::from_secs(5) - BEAT - wisehosting_control_plane::jobs::reschedule::SWITCH_AHEAD;
    assert!(switched >= limit, "switched before the limit: {switched:?}");

    let audit: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_events WHERE target_type = 'app' AND target_id = $1")
            .bind(app.to_string())
            .fetch_all(&cp.db)
            .await
            .expect("audit");
    assert!(audit.iter().any(|a| a == "app.rescheduled"), "{audit:?}");

    // eu-a returns: its desired state no longer lists the app, so it removes its copy.
    let desired = come_back(&cp, &a).await;
    assert!(!desired.contains(&app), "the returning worker is told to drop its copy: {desired:?}");
    wb.kill().await;
    wc.kill().await;
}

async fn deployment_json(user: &UserSession, deployment: i64) -> Value {
    user.get(&format!("/api/deployments/{deployment}")).await.json().await.expect("json")
}

/// The reschedule limit of the standby tests: long enough that a loaded machine still acts
/// (the worker comes back, a newer deploy runs) between the standby's start and the limit.
const STANDBY_LIMIT_SECS: u64 = 12;

/// An app deployed on worker `a`, which is then killed; worker `b` got the app's standby
/// (started a third of the limit before it) and reported it running on `standby_port`.
struct StandbyWaiting {
    cp: TestControlPlane,
    user: UserSession,
    app: i64,
    a: wisehosting_testkit::TestWorker,
    b: wisehosting_testkit::TestWorker,
    /// `a`'s deploy of the app, and the deployment it runs.
    first: Job,
    version: i64,
    wb: BeatingWorker,
    killed: Instant,
    standby: i64,
}

async fn standby_waiting(name: &str, first_port: u16, standby_port: u16) -> StandbyWaiting {
    let cp = fleet(STANDBY_LIMIT_SECS).await;
    let a = create_worker(&cp, &format!("{name}-a")).await;
    let b = create_worker(&cp, &format!("{name}-b")).await;
    let mut wa = online(&cp, &a).await;
    let user = cp.login(&format!("{name}@example.com")).await;
    let (app, _) = user.deploy(name, "https://example.com/r.git").await;
    let first = wa.next_job(Duration::from_secs(10)).await.expect("the only worker gets the deploy");
    wa.finish_deploy(&first, first_port).await;
    let ran = wait_app(&user, app, |a| a["status"] == "running").await;
    let version = ran["current_deployment_id"].as_i64().expect("current deployment");

    let mut wb = online(&cp, &b).await;
    let killed = Instant::now();
    wa.kill().await;
    let standby_job = wb.next_job(Duration::from_secs(15)).await.expect("the standby's deploy");
    let started = killed.elapsed();
    let lead = Duration::from_secs(STANDBY_LIMIT_SECS) / 3;
    assert!(
        started >= Duration::from_secs(STANDBY_LIMIT_SECS) - lead - BEAT,
        "standby too early: {started:?}"
    );
    let standby = standby_job.deployment_id.expect("deployment");
    wb.finish_deploy(&standby_job, standby_port).await;
    StandbyWaiting { cp, user, app, a, b, first, version, wb, killed, standby }
}

/// A worker away for less than the limit keeps its apps: the standby started before the limit
/// is dropped when the worker comes back, and its worker told to remove it.
#[tokio::test]
async fn a_standby_is_dropped_and_the_app_stays_when_its_worker_comes_back_before_the_limit() {
    let StandbyWaiting { cp, user, app, a, first, version, mut wb, killed, standby, .. } =
        standby_waiting("homebody", 40011, 40012).await;
    let limit = Duration::from_secs(STANDBY_LIMIT_SECS);

    // The worker comes back before the limit, its copy running.
    let mut back = RawWorker::connect(&cp, &a).await;
    let container = wisehosting_proto::messages::ContainerInfo {
        id: format!("{:064x}", first.job_id),
        name: "homebody".into(),
        app_id: Some(app),
        deployment_id: Some(version),
        image_id: BeatingWorker::image_of(&first),
        state: "running".into(),
        host_port: Some(40011),
    };
    back.hello(Hello { version: "test".into(), containers: vec![container], ..Default::default() }).await;
    let returned = killed.elapsed();
    let _back = back.beating(BEAT);
    assert!(returned < limit - BEAT, "the test came back before the limit: {returned:?}");

    // The standby's worker is told the app is not its to run, and the deployment says why.
    let dropped = wb
        .next(Duration::from_secs(10), |m| match m {
            ServerMessage::DesiredState(d) if !d.apps.iter().any(|x| x.app_id == app) => Some(()),
            _ => None,
        })
        .await;
    assert!(dropped.is_some(), "the standby's worker removes its copy");
    let ended = deployment_json(&user, standby).await;
    assert_eq!(ended["status"], "cancelled", "{ended}");
    assert!(ended["error"].as_str().unwrap_or_default().contains("came back"), "{ended}");
    // Past the limit the app still runs where it was, its version unchanged.
    tokio::time::sleep_until((killed + limit + Duration::from_secs(1)).into()).await;
    let now = app_json(&user, app).await;
    assert_eq!(
        (now["worker_id"].as_i64(), now["status"].as_str(), now["current_deployment_id"].as_i64()),
        (Some(a.id), Some("running"), Some(version)),
        "{now}"
    );
    assert_eq!(now["host_port"], 40011, "{now}");
    wb.kill().await;
}

/// A standby waiting for the limit is never switched to once a newer version of the app ran
/// (a deploy its user made meanwhile): it is dropped at its time, and the app keeps the newer one.
#[tokio::test]
async fn a_standby_is_dropped_when_a_newer_deploy_ran_before_it_was_due() {
    // The control plane is kept to the end (`_cp`: dropping it stops it).
    let StandbyWaiting { cp: _cp, user, app, b, mut wb, killed, standby, .. } =
        standby_waiting("overtaken", 40021, 40022).await;
    // The user deploys again before the limit; the new version goes to the online worker.
    let deployed = user.post_json(&format!("/api/apps/{app}/deployments"), &serde_json::json!({})).await;
    assert!(deployed.status().is_success(), "{}", deployed.text().await.unwrap_or_default());
    let newer_job = wb.next_job(Duration::from_secs(10)).await.expect("the newer deploy");
    let newer = newer_job.deployment_id.expect("deployment");
    assert!(newer > standby);
    wb.finish_deploy(&newer_job, 40023).await;
    let ran = wait_app(&user, app, |a| a["current_deployment_id"] == newer && a["status"] == "running").await;
    assert_eq!(ran["worker_id"], b.id, "{ran}");
    assert!(
        killed.elapsed() < Duration::from_secs(STANDBY_LIMIT_SECS) - BEAT,
        "the newer version ran before the standby was due"
    );

    // At its time the standby is dropped, not switched to.
    let dropped = eventually(Duration::from_secs(15), Duration::from_millis(100), || async {
        deployment_json(&user, standby).await["status"] == "cancelled"
    })
    .await;
    let ended = deployment_json(&user, standby).await;
    assert!(dropped, "the standby is dropped: {ended}");
    assert!(ended["error"].as_str().unwrap_or_default().contains("newer version"), "{ended}");
    let now = app_json(&user, app).await;
    assert_eq!(
        (now["worker_id"].as_i64(), now["current_deployment_id"].as_i64(), now["host_port"].as_i64()),
        (Some(b.id), Some(newer), Some(40023)),
        "{now}"
    );
    wb.kill().await;
}

#[tokio::test]
async fn placement_fails_a_deploy_no_worker_has_room_for_and_waits_when_none_is_online() {
    let cp = spawn_control_plane_with(|c| {
        c.single_machine = true;
        c.heartbeat_interval_secs = 1;
        // The test workers have 256 GiB: a plan of 300 GiB fits none.
        c.plans = vec![wisehosting_control_plane::plans::PlanConfig {
            name: "free".into(),
            memory_mb: Some(300 * 1024),
            ..Default::default()
        }];
    })
    .await;
    let user = cp.login("huge@example.com").await;
    // No worker online: the deploy waits, queued.
    let (_, waiting) = user.deploy("patient", "https://example.com/r.git").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let d = deployment_json(&user, waiting).await;
    assert_eq!(d["status"], "queued", "{d}");

    let w = create_worker(&cp, "small").await;
    let mut small = online(&cp, &w).await;
    let failed = eventually(Duration::from_secs(10), Duration::from_millis(50), || async {
        let d = deployment_json(&user, waiting).await;
        d["status"] == "failed"
    })
    .await;
    assert!(failed, "a deploy that fits no online worker fails");
    let d = deployment_json(&user, waiting).await;
    let error = d["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("no worker can take this app"), "{error}");
    assert!(error.contains("307200 MB") && error.contains("add a worker"), "{error}");
    assert!(small.next_job(Duration::from_millis(300)).await.is_none());
    small.kill().await;
}

#[tokio::test]
async fn a_disabled_worker_takes_no_new_app_its_apps_move_and_it_is_deleted_only_when_empty() {
    let cp = fleet(30).await;
    let env = [("WH__DATABASE__URL", cp.database_url.as_str())];
    let a = create_worker(&cp, "drained").await;
    let b = create_worker(&cp, "spare").await;
    let mut wa = online(&cp, &a).await;
    let user = cp.login("drain@example.com").await;
    let (app, _) = user.deploy("resident", "https://example.com/r.git").await;
    let job = wa.next_job(Duration::from_secs(10)).await.expect("deploy on the only worker");
    wa.finish_deploy(&job, 41001).await;
    wait_app(&user, app, |a| a["status"] == "running").await;

    let refused = wisehosting(&["worker", "delete", "--name", "drained"], &env);
    assert!(!refused.status.success());
    let err = text(&refused.stderr);
    assert!(err.contains("still runs resident") && err.contains("worker disable --name drained"), "{err}");
    let unknown = wisehosting(&["worker", "disable", "--name", "nobody"], &env);
    assert!(text(&unknown.stderr).contains("no worker is named nobody"), "{}", text(&unknown.stderr));

    let mut wb = online(&cp, &b).await;
    let disabled = wisehosting(&["worker", "disable", "--name", "drained"], &env);
    assert!(disabled.status.success(), "{}", text(&disabled.stderr));
    // Its app moves at once (a drain does not wait for reschedule_after_secs).
    let moved = wb.next_job(Duration::from_secs(10)).await.expect("the app moves to the spare worker");
    assert_eq!(moved.app_id, app);
    // While the spare worker builds, the drained copy still serves: no downtime in a move.
    let during = app_json(&user, app).await;
    assert_eq!(
        (during["worker_id"].as_i64(), during["status"].as_str()),
        (Some(a.id), Some("running")),
        "{during}"
    );
    // Were the spare worker to reconnect now, its desired state keeps the app (busy): the
    // container it is building stays.
    let desired_mid =
        wisehosting_control_plane::jobs::events::desired_state(&cp.db, b.id).await.expect("desired");
    assert!(desired_mid.apps.iter().any(|d| d.app_id == app && d.busy), "{desired_mid:?}");
    // A new app goes to the spare worker, never to the disabled one.
    let (fresh, _) = user.deploy("newcomer", "https://example.com/r.git").await;
    wb.finish_deploy(&moved, 41002).await;
    let second = wb.next_job(Duration::from_secs(10)).await.expect("the new app goes to the spare worker");
    assert_eq!(second.app_id, fresh);
    // The drained worker, still connected, is told to drop its copy once the new one runs.
    let dropped = wa
        .next(Duration::from_secs(10), |m| match m {
            ServerMessage::DesiredState(d) => Some(d.apps.iter().map(|a| a.app_id).collect::<Vec<_>>()),
            _ => None,
        })
        .await
        .expect("a desired state after the move");
    assert!(!dropped.contains(&app), "{dropped:?}");
    assert!(wa.next_job(Duration::from_millis(300)).await.is_none(), "nothing new for the drained worker");
    let now = wait_app(&user, app, |a| a["worker_id"] == b.id && a["status"] == "running").await;
    assert_eq!(now["host_port"], 41002);

    let listed = wisehosting(&["worker", "list", "--json"], &env);
    let listed: Value = serde_json::from_str(&text(&listed.stdout)).expect("json");
    let drained = listed.as_array().and_then(|l| l.iter().find(|w| w["name"] == "drained")).expect("listed");
    assert_eq!(drained["status"], "disabled");

    let deleted = wisehosting(&["worker", "delete", "--name", "drained"], &env);
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));
    assert!(text(&deleted.stdout).contains("Deleted worker drained"));
    let gone: Option<i64> = sqlx::query_scalar("SELECT id FROM workers WHERE name = 'drained'")
        .fetch_optional(&cp.db)
        .await
        .expect("query");
    assert_eq!(gone, None);
    let enabled = wisehosting(&["worker", "enable", "--name", "spare"], &env);
    assert!(enabled.status.success(), "enabling an enabled worker is a no-op: {}", text(&enabled.stderr));
    wa.kill().await;
    wb.kill().await;
}

#[tokio::test]
async fn two_control_planes_share_the_queue_and_a_job_reaches_a_worker_held_by_the_other() {
    let first = fleet(30).await;
    let second = spawn_control_plane_on(&first.database_url, |c| {
        *c = first.config.clone();
    })
    .await;
    assert_ne!(first.hub.holder(), second.hub.holder());
    let w = create_worker(&first, "shared").await;
    // The worker is held by the second control plane; the user deploys through the first.
    let mut held = online(&second, &w).await;
    let user = first.login("pair@example.com").await;
    let (app, _) = user.deploy("paired", "https://example.com/r.git").await;
    let job = held.next_job(Duration::from_secs(10)).await.expect("the job reaches the other's worker");
    assert_eq!(job.app_id, app);
    held.finish_deploy(&job, 42001).await;
    wait_app(&user, app, |a| a["status"] == "running").await;
    // The first control plane holds no connection of this worker, and never marks it offline.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status: String = sqlx::query_scalar("SELECT status FROM workers WHERE id = $1")
        .bind(w.id)
        .fetch_one(&first.db)
        .await
        .expect("status");
    assert_eq!(status, "online");
    // A restart through the first reaches it too.
    let restart = user.post_json(&format!("/api/apps/{app}/restart"), &serde_json::json!({})).await;
    assert_eq!(restart.status(), 202);
    let job = held.next_job(Duration::from_secs(10)).await.expect("the restart reaches it");
    assert!(matches!(job.spec, JobSpec::Restart(_)), "{job:?}");
    held.kill().await;
    second.stop().await.expect("stop");
    first.stop().await.expect("stop");
}

#[tokio::test]
async fn periodic_passes_take_turns_across_control_planes() {
    // A database no control plane runs on: its own passes would take turns here too.
    let db = sqlx::PgPool::connect(&wisehosting_testkit::fresh_database(true).await).await.expect("db");
    let mut one = db.begin().await.expect("tx");
    let mut two = db.begin().await.expect("tx");
    use wisehosting_control_plane::store::{Periodic, take_turn};
    assert!(take_turn(&mut one, Periodic::Reschedule).await.expect("turn"));
    assert!(!take_turn(&mut two, Periodic::Reschedule).await.expect("turn"), "held by the other");
    assert!(take_turn(&mut two, Periodic::Rescue).await.expect("turn"), "another job's turn is free");
    one.commit().await.expect("commit");
    assert!(take_turn(&mut two, Periodic::Reschedule).await.expect("turn"), "free once the pass ends");
    two.rollback().await.expect("rollback");

    // A turn longer than a transaction (an ACME round) is held by its session.
    use wisehosting_control_plane::store::{end_session_turn, take_session_turn};
    let mut one = db.acquire().await.expect("conn");
    let mut two = db.acquire().await.expect("conn");
    assert!(take_session_turn(&mut one, Periodic::Acme).await.expect("turn"));
    assert!(!take_session_turn(&mut two, Periodic::Acme).await.expect("turn"), "held by the other");
    end_session_turn(&mut one, Periodic::Acme).await.expect("end");
    assert!(take_session_turn(&mut two, Periodic::Acme).await.expect("turn"), "free once ended");
    // A control plane that dies mid-round: its session ends, and so does its turn.
    // (The server ends the session a moment after the client closes it.)
    let _ = sqlx::Connection::close(two.detach()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut taken = false;
    while !taken && Instant::now() < deadline {
        taken = take_session_turn(&mut one, Periodic::Acme).await.expect("turn");
        if !taken {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(taken, "free once its session ended");
    end_session_turn(&mut one, Periodic::Acme).await.expect("end");
    drop(one);
    db.close().await;
}

/// GET `/` through an edge router with `host`: (status, body); a connection error as 0.
async fn via_edge(edge: std::net::SocketAddr, host: &str) -> (u16, String) {
    let client =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().expect("client");
    match client.get(format!("http://{edge}/")).header("host", host).send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// Two `wisehosting serve` processes on one database behind a load balancer; the worker and
/// the user's requests reach the first. It is killed with SIGKILL while a deploy builds: the
/// worker reconnects through the balancer to the other, which takes the job's result (the
/// same lease, attempt 1: nothing lost, nothing redone), and the app serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_killed_mid_deploy_hands_its_worker_to_the_other_and_the_deploy_finishes() {
    let url = wisehosting_testkit::fresh_database(true).await;
    let config = wisehosting_testkit::test_config(&url);
    let (secret, join) =
        (config.api_server.secret.expose().to_string(), config.workers.join_secret.expose().to_string());
    let env = [
        ("WH__DATABASE__URL", url.as_str()),
        ("WH__API_SERVER__SECRET", secret.as_str()),
        ("WH__WORKERS__JOIN_SECRET", join.as_str()),
        ("WH__API_SERVER__HOST", "127.0.0.1"),
        ("WH__API_SERVER__PORT", "0"),
        ("WH__SINGLE_MACHINE", "true"),
        ("WH__HEARTBEAT_INTERVAL_SECS", "1"),
    ];
    let mut victim = ControlPlaneProcess::start(&env).await;
    let survivor = ControlPlaneProcess::start(&env).await;
    let balancer = FailoverProxy::start(vec![victim.addr, survivor.addr]).await;
    let db = sqlx::PgPool::connect(&url).await.expect("db");
    let w = wisehosting_testkit::create_worker_in(&db, &config, "paired-worker").await;
    let agent = wisehosting_testkit::spawn_worker_with_secret(&join, &w, &balancer.url());
    let holder = || async {
        sqlx::query_scalar::<_, Option<String>>("SELECT connected_to FROM workers WHERE id = $1")
            .bind(w.id)
            .fetch_one(&db)
            .await
            .expect("holder")
    };
    assert!(
        eventually(Duration::from_secs(20), Duration::from_millis(50), || async { holder().await.is_some() })
            .await,
        "the worker is held by a control plane"
    );
    let first_holder = holder().await;

    let repo = wisehosting_testkit::TestRepo::new();
    // A build that takes a few seconds: the control plane dies in the middle of it.
    let containerfile = format!(
        "FROM localhost/wisehosting/busybox:latest\nRUN sleep 4\n{}",
        wisehosting_testkit::page_containerfile("survived").lines().skip(1).collect::<Vec<_>>().join("\n")
    );
    repo.commit(&[("Containerfile", &containerfile)], "v1");
    let user = UserSession::dev_login(&balancer.url(), "pair@example.com").await;
    let (app, deployment) = user.deploy("survivor-app", &repo.url()).await;
    let building = eventually(Duration::from_secs(60), Duration::from_millis(100), || async {
        let d = deployment_json(&user, deployment).await;
        d["status"] == "building"
    })
    .await;
    assert!(building, "the deploy builds");
    let killed = Instant::now();
    victim.kill9();
    let moved = eventually(Duration::from_secs(20), Duration::from_millis(50), || async {
        holder().await.is_some_and(|h| Some(h) != first_holder.clone())
    })
    .await;
    assert!(moved, "the worker is held by the surviving control plane");
    let took_over = killed.elapsed();
    eprintln!("fleet figure: the worker was held by the other control plane {took_over:?} after the kill");
    assert!(took_over < Duration::from_secs(10), "within a few heartbeats: {took_over:?}");

    let done = user.wait_deployment(deployment, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "running", "{done}");
    let (status, attempt): (String, i32) =
        sqlx::query_as("SELECT status, attempt FROM jobs WHERE deployment_id = $1")
            .bind(deployment)
            .fetch_one(&db)
            .await
            .expect("job");
    assert_eq!((status.as_str(), attempt), ("succeeded", 1), "the same lease finished the job");
    let edge = agent.status.edge_addr().expect("edge");
    let served = eventually(Duration::from_secs(15), Duration::from_millis(100), || async {
        via_edge(edge, "survivor-app.localhost").await == (200, "survived\n".to_string())
    })
    .await;
    assert!(served, "app {app} serves");
    agent.stop().await;
    drop(survivor);
    db.close().await;
}

/// With the default settings (heartbeats every 5 s, reschedule_after_secs 30), a worker killed
/// with SIGKILL: its app is deployed again on the other worker (its image reused: both share
/// this host's podman) and served there. Prints how long that took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_with_sigkill_has_its_app_served_by_another_after_the_reschedule_limit() {
    let cp = spawn_control_plane_with(|c| c.single_machine = true).await;
    assert_eq!((cp.config.heartbeat_interval_secs, cp.config.scheduler.reschedule_after_secs), (5, 30));
    let join = cp.config.workers.join_secret.expose().to_string();
    let a = create_worker(&cp, "doomed").await;
    let b = create_worker(&cp, "heir").await;
    let wa = WorkerProcess::start(&join, &a, &cp.base_url).await;
    let wb = WorkerProcess::start(&join, &b, &cp.base_url).await;
    let both = eventually(Duration::from_secs(20), Duration::from_millis(100), || async {
        cp.hub.is_connected(a.id) && cp.hub.is_connected(b.id)
    })
    .await;
    assert!(both, "both workers connect");
    let user = cp.login("sigkill@example.com").await;
    let repo = wisehosting_testkit::TestRepo::new();
    repo.commit(&[("Containerfile", &wisehosting_testkit::page_containerfile("still here"))], "v1");
    let (app, deployment) = user.deploy("phoenix", &repo.url()).await;
    let done = user.wait_deployment(deployment, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "running", "{done}");
    let placed = app_json(&user, app).await["worker_id"].as_i64().expect("placed");
    let (mut victim, heir) = if placed == a.id { (wa, wb) } else { (wb, wa) };
    victim.kill9();
    let killed = Instant::now();
    let killed_at = chrono::Utc::now();
    let served = eventually(Duration::from_secs(90), Duration::from_millis(10), || async {
        via_edge(heir.edge, "phoenix.localhost").await == (200, "still here\n".to_string())
    })
    .await;
    let took = killed.elapsed();
    assert!(served, "the app is served by the other worker");
    let last_frame: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT offline_since FROM workers WHERE id = $1")
            .bind(victim.worker.id)
            .fetch_one(&cp.db)
            .await
            .expect("offline since");
    let silent_before_kill = (killed_at - last_frame).to_std().unwrap_or_default();
    eprintln!(
        "fleet figure: served again by another worker {took:?} after SIGKILL of its worker (defaults); its last frame came {silent_before_kill:?} before the kill"
    );
    let now = app_json(&user, app).await;
    assert_eq!(now["worker_id"], heir.worker.id, "{now}");
    // Each copy carries the id of the worker that made it (both share this host's podman; ids
    // repeat across the tests' databases, so the instance narrows it to this test's worker).
    let copies_of = |worker: &WorkerProcess| {
        let labels = [
            format!("wisehosting.worker={}", worker.worker.id),
            format!("wisehosting.instance={}", worker.instance),
        ];
        crate::faults::running_containers_labelled(&[&labels[0], &labels[1]], app).len()
    };
    assert_eq!(copies_of(&heir), 1, "the heir's copy runs");
    assert_eq!(copies_of(&victim), 1, "the dead worker's copy waits for its return to be removed");
    assert!(took >= Duration::from_secs(25), "not before the worker counts as gone: {took:?}");
    assert!(took <= Duration::from_secs(60), "{took:?}");
}
