//! The real worker agent against a real control plane: heartbeats with host figures, the five
//! admin queries through podman (T16), token refresh across an outage (T12), short and long
//! link outages (T31).

use std::time::Duration;

use wisehosting_control_plane::hub::HubEvent;
use wisehosting_testkit::{CutProxy, create_worker, eventually, spawn_control_plane_with, spawn_worker};

async fn status_of(db: &sqlx::PgPool, id: i64) -> String {
    sqlx::query_scalar("SELECT status FROM workers WHERE id = $1")
        .bind(id)
        .fetch_one(db)
        .await
        .expect("status")
}

#[tokio::test]
async fn the_agent_registers_says_hello_and_sends_real_host_figures() {
    let cp = spawn_control_plane_with(|c| c.heartbeat_interval_secs = 1).await;
    let w = create_worker(&cp, "real-agent").await;
    let agent = spawn_worker(&cp, &w, &cp.base_url);
    assert!(
        agent
            .wait_for(Duration::from_secs(15), |s| s.heartbeats.load(std::sync::atomic::Ordering::Relaxed)
                >= 2)
            .await
    );
    assert_eq!(status_of(&cp.db, w.id).await, "online");
    let hb = cp.hub.snapshot(w.id).expect("a live snapshot");
    assert!(hb.mem_total_bytes > 0 && hb.disk_total_bytes > 0 && hb.uptime_secs > 0, "{hb:?}");
    let (version, cpus): (Option<String>, Option<i32>) =
        sqlx::query_as("SELECT version, capacity_cpus FROM workers WHERE id = $1")
            .bind(w.id)
            .fetch_one(&cp.db)
            .await
            .expect("row");
    assert_eq!(version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert!(cpus.unwrap_or(0) >= 1);
    agent.stop().await;
}

#[tokio::test]
async fn the_five_admin_queries_run_podman_on_the_worker() {
    let cp = spawn_control_plane_with(|c| c.heartbeat_interval_secs = 1).await;
    let w = create_worker(&cp, "podman-admin").await;
    let agent = spawn_worker(&cp, &w, &cp.base_url);
    assert!(
        agent
            .wait_for(Duration::from_secs(15), |s| s.connected.load(std::sync::atomic::Ordering::Relaxed))
            .await
    );
    // The agent counts itself connected when its link is up; the hub takes the connection in
    // only once it has read the signed `hello`, and queries go to connections the hub holds.
    assert!(
        eventually(Duration::from_secs(10), Duration::from_millis(20), || async {
            cp.hub.is_connected(w.id)
        })
        .await
    );
    for command in ["ps", "ps_all", "network_ls", "volume_ls", "image_ls"] {
        let reply = cp.hub.worker_query(w.id, command, Duration::from_secs(20)).await.expect("reply");
        assert_eq!(reply.err, None, "{command}: {}", reply.output);
        let parsed: serde_json::Value = serde_json::from_str(&reply.output).expect("podman JSON");
        assert!(parsed.is_array(), "{command}");
    }
    agent.stop().await;
}

#[tokio::test]
async fn the_agent_renews_its_token_and_keeps_its_connection() {
    let cp = spawn_control_plane_with(|c| {
        c.heartbeat_interval_secs = 1;
        c.worker_token_ttl_secs = 5;
    })
    .await;
    let w = create_worker(&cp, "renewer").await;
    let agent = spawn_worker(&cp, &w, &cp.base_url);
    assert!(
        agent
            .wait_for(Duration::from_secs(10), |s| s.connected.load(std::sync::atomic::Ordering::Relaxed))
            .await
    );
    let first = agent.status.connection_id();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(agent.status.refreshes.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert_eq!(agent.status.connection_id(), first, "the same connection outlived its first token");
    assert_eq!(agent.status.sessions.load(std::sync::atomic::Ordering::Relaxed), 1);
    agent.stop().await;
}

#[tokio::test]
async fn an_outage_across_the_refresh_window_ends_in_a_fresh_registration() {
    let cp = spawn_control_plane_with(|c| {
        c.heartbeat_interval_secs = 1;
        c.worker_token_ttl_secs = 5;
    })
    .await;
    let proxy = CutProxy::start(cp.addr).await;
    let w = create_worker(&cp, "outage-refresh").await;
    let agent = spawn_worker(&cp, &w, &proxy.url());
    assert!(
        agent
            .wait_for(Duration::from_secs(10), |s| s.connected.load(std::sync::atomic::Ordering::Relaxed))
            .await
    );
    let first = agent.status.connection_id();
    proxy.cut();
    // Longer than the token's life: refreshes fail and are retried, the token lapses.
    tokio::time::sleep(Duration::from_secs(7)).await;
    proxy.restore();
    assert!(
        agent
            .wait_for(Duration::from_secs(15), |s| s.connected.load(std::sync::atomic::Ordering::Relaxed)
                && s.connection_id() != first)
            .await,
        "reconnected on a new connection"
    );
    assert!(agent.status.registrations.load(std::sync::atomic::Ordering::Relaxed) >= 2, "re-authenticated");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status_of(&cp.db, w.id).await, "online");
    agent.stop().await;
}

#[tokio::test]
async fn a_short_outage_keeps_the_worker_online() {
    let cp = spawn_control_plane_with(|c| c.heartbeat_interval_secs = 2).await;
    let proxy = CutProxy::start(cp.addr).await;
    let w = create_worker(&cp, "short-outage").await;
    let mut events = cp.hub.subscribe();
    let agent = spawn_worker(&cp, &w, &proxy.url());
    assert!(
        agent
            .wait_for(Duration::from_secs(10), |s| s.connected.load(std::sync::atomic::Ordering::Relaxed))
            .await
    );
    let first = agent.status.connection_id();
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.restore();
    assert!(
        agent
            .wait_for(Duration::from_secs(10), |s| s.connected.load(std::sync::atomic::Ordering::Relaxed)
                && s.connection_id() != first)
            .await
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut offline = false;
    while let Ok(event) = events.try_recv() {
        offline |= event == HubEvent::WorkerOffline { worker_id: w.id };
    }
    assert!(!offline, "a short outage raised an offline event");
    assert_eq!(status_of(&cp.db, w.id).await, "online");
    agent.stop().await;
}

#[tokio::test]
async fn a_long_outage_marks_the_worker_offline_and_its_apps_stopped_until_it_returns() {
    let cp = spawn_control_plane_with(|c| c.heartbeat_interval_secs = 1).await;
    let proxy = CutProxy::start(cp.addr).await;
    let w = create_worker(&cp, "long-outage").await;
    let user: i64 = sqlx::query_scalar("INSERT INTO users (email) VALUES ('o@example.com') RETURNING id")
        .fetch_one(&cp.db)
        .await
        .expect("user");
    let app: i64 = sqlx::query_scalar(
        "INSERT INTO apps (user_id, slug, name, status, repo_url, worker_id) VALUES ($1, 'long-app', 'long-app', 'running', 'https://example.com/r.git', $2) RETURNING id",
    )
    .bind(user)
    .bind(w.id)
    .fetch_one(&cp.db)
    .await
    .expect("app");
    let mut events = cp.hub.subscribe();
    let agent = spawn_worker(&cp, &w, &proxy.url());
    assert!(
        agent
            .wait_for(Duration::from_secs(10), |s| s.connected.load(std::sync::atomic::Ordering::Relaxed))
            .await
    );
    for _ in 0..100 {
        if cp.hub.is_online(w.id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cp.hub.is_online(w.id));
    proxy.cut();
    let offline = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(HubEvent::WorkerOffline { worker_id }) = events.recv().await
                && worker_id == w.id
            {
                return;
            }
        }
    })
    .await;
    assert!(offline.is_ok(), "no offline event: {:?} {:?}", cp.hub.link_statuses(), agent.status);
    assert_eq!(status_of(&cp.db, w.id).await, "offline");
    let app_status: String = sqlx::query_scalar("SELECT status FROM apps WHERE id = $1")
        .bind(app)
        .fetch_one(&cp.db)
        .await
        .expect("app");
    assert_eq!(app_status, "stopped");
    assert!(cp.hub.snapshot(w.id).is_none(), "no live figures for an offline worker");

    proxy.restore();
    let back = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Ok(HubEvent::WorkerOnline { worker_id }) = events.recv().await
                && worker_id == w.id
            {
                return;
            }
        }
    })
    .await;
    assert!(back.is_ok(), "the worker came back online after the outage");
    assert_eq!(status_of(&cp.db, w.id).await, "online");
    agent.stop().await;
}
