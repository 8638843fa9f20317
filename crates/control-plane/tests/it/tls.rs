//! TLS on the control plane and the worker link (SPEC §14.7, issue 18 item 3): the public
//! listener speaks only TLS 1.3 with `api_server.tls_cert`/`tls_key`, loads a new pair on
//! SIGHUP without a restart (keeping the old one when the new does not load), and a worker
//! joins over `https://` and `wss://`, verifying the control plane against its configured CA.

use std::time::Duration;

use wisehosting_testkit::tls::{client_trusting, test_ca_and_certificate};
use wisehosting_testkit::worker::spawn_worker_with_ca;
use wisehosting_testkit::{create_worker, eventually, spawn_control_plane_with};

async fn answers(client: &reqwest::Client, url: &str) -> bool {
    client.get(url).send().await.is_ok_and(|r| r.status() == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_speaks_tls_13_only_and_reloads_its_certificate_on_sighup() {
    let first = tempfile::tempdir().expect("dir");
    let (ca, cert, key) = test_ca_and_certificate(first.path());
    let live = tempfile::tempdir().expect("dir");
    let (live_cert, live_key) = (live.path().join("cert.pem"), live.path().join("key.pem"));
    std::fs::copy(&cert, &live_cert).expect("cert");
    std::fs::copy(&key, &live_key).expect("key");
    let cp = spawn_control_plane_with(|c| {
        c.api_server.tls_cert = Some(live_cert.clone());
        c.api_server.tls_key = Some(live_key.clone());
    })
    .await;
    let url = format!("https://{}/health", cp.addr);
    let trusting_first = client_trusting(&ca);
    assert!(answers(&trusting_first, &url).await, "HTTPS with the configured certificate");
    let old = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).expect("ca")).expect("pem"))
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .expect("client");
    assert!(old.get(&url).send().await.is_err(), "TLS 1.2 is refused");
    let plain =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().expect("client");
    assert!(
        plain.get(format!("http://{}/health", cp.addr)).send().await.is_err(),
        "no plain HTTP on the port"
    );

    // A pair that does not load: SIGHUP keeps the running one.
    std::fs::write(&live_key, "not a key").expect("break the key");
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(answers(&trusting_first, &url).await, "a bad new pair leaves the old certificate in use");

    // A new pair from another CA: the next handshakes present it.
    let second = tempfile::tempdir().expect("dir");
    let (ca2, cert2, key2) = test_ca_and_certificate(second.path());
    std::fs::copy(&cert2, &live_cert).expect("cert");
    std::fs::copy(&key2, &live_key).expect("key");
    let trusting_second = client_trusting(&ca2);
    assert!(!answers(&trusting_second, &url).await, "the new CA is not trusted before the reload");
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    let reloaded = eventually(Duration::from_secs(5), Duration::from_millis(50), || async {
        answers(&trusting_second, &url).await
    })
    .await;
    assert!(reloaded, "after SIGHUP the new certificate is served");
    let fresh_first = client_trusting(&ca);
    assert!(!answers(&fresh_first, &url).await, "the old certificate is gone for new connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_joins_over_https_and_wss_verifying_the_control_planes_ca() {
    let dir = tempfile::tempdir().expect("dir");
    let (ca, cert, key) = test_ca_and_certificate(dir.path());
    let cp = spawn_control_plane_with(|c| {
        c.api_server.tls_cert = Some(cert.clone());
        c.api_server.tls_key = Some(key.clone());
        c.heartbeat_interval_secs = 1;
    })
    .await;
    let https = format!("https://{}", cp.addr);

    // Without the CA the system's authorities do not know the certificate: no link.
    let stranger = create_worker(&cp, "no-ca").await;
    let refused = spawn_worker_with_ca(&cp, &stranger, &https, None);
    // Two seconds of its retries (every 50 to 500 ms): none gets past the TLS handshake.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(refused.status.registrations.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert!(
        !cp.hub.is_connected(stranger.id),
        "a worker that cannot verify the control plane does not connect"
    );
    refused.stop().await;

    let w = create_worker(&cp, "over-tls").await;
    let agent = spawn_worker_with_ca(&cp, &w, &https, Some(&ca));
    let online = eventually(Duration::from_secs(20), Duration::from_millis(100), || async {
        cp.hub.is_connected(w.id)
    })
    .await;
    assert!(online, "the worker registered over https:// and holds a wss:// link");
    // Heartbeats arrive over the TLS link.
    let beat = eventually(Duration::from_secs(20), Duration::from_millis(200), || async {
        sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
            "SELECT last_heartbeat_at FROM workers WHERE id = $1",
        )
        .bind(w.id)
        .fetch_one(&cp.db)
        .await
        .ok()
        .flatten()
        .is_some()
    })
    .await;
    assert!(beat, "a heartbeat over wss:// reached the control plane");
    agent.stop().await;
}
