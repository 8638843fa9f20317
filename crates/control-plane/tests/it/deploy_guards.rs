//! What a deploy refuses, end to end: repositories and builds that reach for the host or
//! private addresses, registries outside the allowed ones, tokens sent anywhere but the
//! repository's host, payloads that do not read, and links in a hostile checkout.

use std::time::Duration;

use serde_json::{Value, json};
use wisehosting_testkit::{
    PrivateCanary, TcpCanary, TestDns, TestRepo, create_worker, eventually, spawn_control_plane_with,
    spawn_worker,
};

use super::deploy::*;

/// T23: from inside a build, the host (through the build network's gateway), a private
/// address and a mesh address — each a canary that answers (the private ones in a network
/// namespace of their own, reached by an unconfined container as the control) — are out of
/// reach; and the confinement survives a firewall reload that puts an ACCEPT above it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_cannot_reach_the_host_or_private_addresses() {
    let cp = spawn_control_plane_with(|c| {
        c.single_machine = true;
        c.heartbeat_interval_secs = 1;
    })
    .await;
    // A canary on every host address: any connection from a build counts as a hit.
    let canary = TcpCanary::bind("0.0.0.0:0", true).await;
    let port = canary.port;
    let private = PrivateCanary::start().await;
    let targets = [
        ("host", format!("10.89.0.1 {port}")),
        ("private", format!("{} {}", private.private, private.port)),
        ("mesh", format!("{} {}", private.mesh, private.port)),
    ];
    // The control: from podman's default bridge, both private canaries answer.
    let control = probe_unconfined(&targets[1..].iter().map(|(_, t)| t.clone()).collect::<Vec<_>>());
    assert_eq!(control.matches("REACHED canary").count(), 2, "unconfined: {control}");
    assert_eq!(private.hits(), 2);

    let w = create_worker(&cp, "isolated").await;
    let agent = spawn_worker(&cp, &w, &cp.base_url);
    assert!(
        agent
            .wait_for(Duration::from_secs(15), |s| s.connected.load(std::sync::atomic::Ordering::Relaxed))
            .await
    );
    let user = cp.login("egress@example.com").await;
    let repo = TestRepo::new();
    // Each probe prints REACHED-<name> or BLOCKED-<name>; the build itself succeeds either way.
    let build_probes = |round: &str| {
        let probes: String = targets
            .iter()
            .map(|(name, target)| format!("RUN (printf 'GET /probe HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {target} | head -1 | grep -q HTTP && echo REACHED-{name}) || echo BLOCKED-{name}\n"))
            .collect();
        // The round's own first step, so no probe is taken from the layer cache.
        format!(
            "FROM localhost/wisehosting/busybox:latest\nRUN echo {round}\n{probes}RUN mkdir -p /www && echo ok > /www/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
        )
    };
    let deploy_round = |round: &'static str| {
        let (user, repo, file) = (&user, &repo, build_probes(round));
        async move {
            repo.commit(&[("Containerfile", &file)], round);
            let (_, d) =
                deploy_and_wait(user, json!({"name": round, "repo_url": repo.url(), "port": 8080})).await;
            assert_eq!(d["status"], "running", "{round}: {d}");
            let id = d["id"].as_i64().expect("id");
            let log: Value =
                user.get(&format!("/api/deployments/{id}/log")).await.json().await.expect("json");
            log["log"].as_str().unwrap_or_default().to_string()
        }
    };
    let check = |round: &str, log: &str| {
        // The STEP lines echo each instruction; the probes' own output stands alone on a line.
        for (name, _) in &targets {
            assert!(
                log.lines().any(|l| l.trim() == format!("BLOCKED-{name}")),
                "{round}: {name} was not refused: {log}"
            );
        }
        assert!(!log.lines().any(|l| l.trim().starts_with("REACHED-")), "{round}: {log}");
    };
    let log = deploy_round("round-1").await;
    check("round-1", &log);
    assert_eq!(canary.hits(), 0, "the canary on the host was reached from a build");
    assert_eq!(private.hits(), 2, "a private canary was reached from a build");

    // A firewall reload that puts an ACCEPT above our jump (for this test's canary only, so
    // other tests running meanwhile are not opened): the next job's check repairs the order.
    let accept = ["FORWARD", "-s", "10.89.0.0/16", "-d", &format!("{}/32", private.private), "-j", "ACCEPT"];
    let iptables = |op: &str| {
        std::process::Command::new("iptables")
            .arg(op)
            .args(accept)
            .output()
            .expect("iptables")
            .status
            .success()
    };
    assert!(iptables("-I"));
    let log = deploy_round("round-2").await;
    while iptables("-D") {}
    check("round-2", &log);
    assert_eq!(private.hits(), 2, "a private canary was reached after the reload");
}

/// T21: every spelling of a private or local address is refused by the worker's clone check
/// before git connects; canary listeners on the host's loopback (v4 and v6, the port the
/// URLs name) record no hit. User names in the URL and other schemes never get that far.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_a_local_or_private_repository_address_is_refused_before_connecting() {
    let (cp, _agent, _user, _repo) = platform("ssrf", "ssrf@example.com").await;
    // One dual-stack listener on every address: 127.0.0.1, ::1, 0.0.0.0 all reach it.
    let canary = TcpCanary::bind("[::]:0", false).await;
    let port = canary.port;
    // The canary counts: a connection made on purpose is seen.
    drop(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("canary answers"));
    assert!(eventually(LIMIT, POLL, || async { canary.hits() == 1 }).await);
    canary.reset();

    let hosts = [
        "127.1",
        "2130706433",
        "0x7f000001",
        "0.0.0.0",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "localhost",
        "169.254.169.254",
        "100.64.0.1",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.0.1",
        "10.50.0.1",
    ];
    let mut pending = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        // A user per five apps: the free plan's limit.
        let user = cp.login(&format!("ssrf{}@example.com", i / 5)).await;
        let url = format!("https://{host}:{port}/repo.git");
        let created: Value = user
            .post_json("/api/deploy", &json!({"name": format!("ssrf-{i}"), "repo_url": url, "port": 8080}))
            .await
            .json()
            .await
            .expect("json");
        let deployment = created["deployment"]["id"].as_i64().unwrap_or_else(|| panic!("{host}: {created}"));
        pending.push((host, user, deployment));
    }
    for (host, user, deployment) in pending {
        let d = user.wait_deployment(deployment, LIMIT).await;
        assert_eq!(d["status"], "failed", "{host}: {d}");
        let error = d["error"].as_str().unwrap_or_default();
        assert!(error.contains("private or local address"), "{host}: {error}");
    }
    assert_eq!(canary.hits(), 0, "a refused repository address was connected to");

    let user = cp.login("ssrf-api@example.com").await;
    for url in [
        format!("https://user@127.0.0.1:{port}/r.git"),
        format!("http://127.0.0.1:{port}/r.git"),
        format!("git://127.0.0.1:{port}/r.git"),
        format!("ssh://git@127.0.0.1:{port}/r.git"),
        format!("ext::nc 127.0.0.1 {port}"),
    ] {
        let response =
            user.post_json("/api/deploy", &json!({"name": "api", "repo_url": url, "port": 8080})).await;
        assert_eq!(response.status().as_u16(), 422, "{url}");
    }
    assert_eq!(canary.hits(), 0);
}

/// A build pulls only from allowed registries (never a private address, never a registry on
/// the host posing as a local image), shares no cache mount with other apps, and is held to
/// a process limit over all its steps (a fork bomb fails the build, not the worker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_pulls_only_from_allowed_registries_and_is_held_to_a_process_limit() {
    let (cp, _agent, user, _repo) = platform("limits", "limits@example.com").await;
    let base = "FROM localhost/wisehosting/busybox:latest\n";
    let fork = |n: u32| {
        format!("RUN i=0; while [ $i -lt {n} ]; do sleep 5 & i=$((i+1)); done; wait; echo forked-{n}\n")
    };
    let cases = [
        ("registry", "FROM evil.example/app:1\n".to_string(), "comes from evil.example"),
        ("private", "FROM 10.0.0.5:5000/app:1\n".to_string(), "private or local address"),
        ("not-local", "FROM localhost/wisehosting/absent:1\n".to_string(), "is not an image on this worker"),
        ("cache", format!("{base}RUN --mount=type=cache,target=/c true\n"), "type=cache"),
        // Two steps: the limit holds for the second step too (runc re-creates each step's cgroup).
        ("forks", format!("{base}RUN true\n{}", fork(1100)), "podman build"),
    ];
    for (name, file, says) in cases {
        let repo = TestRepo::new();
        repo.commit(
            &[("Containerfile", &format!("{file}CMD [\"httpd\", \"-f\", \"-p\", \"8080\"]\n"))],
            name,
        );
        let (_, d) =
            deploy_and_wait(&user, json!({"name": name, "repo_url": repo.url(), "port": 8080})).await;
        assert_eq!(d["status"], "failed", "{name}: {d}");
        let error = d["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{name}: {error}");
        if name == "forks" {
            let id = d["id"].as_i64().expect("id");
            let log: Value = user.get(&format!("/api/deployments/{id}/log")).await.json().await.expect("log");
            let log = log["log"].as_str().unwrap_or_default();
            // The STEP line echoes the instruction; its own output would stand alone on a line.
            assert!(log.contains("can't fork") && !log.lines().any(|l| l.trim() == "forked-1100"), "{log}");
        }
    }
    // The control: the same build under the limit runs, so the limit is what stopped it.
    let user = cp.login("limits-control@example.com").await;
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", &format!("{base}RUN true\n{}RUN mkdir -p /www && echo ok > /www/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n", fork(200)))], "fine");
    let (_, d) = deploy_and_wait(&user, json!({"name": "fine", "repo_url": repo.url(), "port": 8080})).await;
    assert_eq!(d["status"], "running", "{d}");
}

/// T22: a repository name whose answers alternate between a public and a private address
/// (TTL 0), or that has both, never sends git to the private one. Over 1,000 checks through the
/// worker's resolver no private address is ever returned; through whole deploys, where the
/// system resolver (what git would ask, were it not pinned) says 127.0.0.1, a canary there
/// records no hit — while an unpinned git does hit it, so the test can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebinding_repository_name_never_sends_git_to_a_private_address() {
    use std::net::IpAddr;
    let dns = TestDns::start().await;
    let canary = TcpCanary::bind("127.0.0.1:0", false).await;
    let port = canary.port;
    let tag = hex::encode(wisehosting_crypto::random_bytes::<4>());
    let (rebind, both) = (format!("rebind-{tag}.test"), format!("both-{tag}.test"));
    let public: IpAddr = [192, 88, 100, 7].into();
    let local: IpAddr = [127, 0, 0, 1].into();
    dns.set_addrs(&rebind, &[&[public], &[local]]);
    dns.set_addrs(&both, &[&[public, local]]);

    let (mut pinned, mut refused) = (0, 0);
    for _ in 0..1000 {
        match wisehosting_worker::deploy::check_https_repository(
            &format!("https://{rebind}:{port}/r.git"),
            Some(dns.addr),
        )
        .await
        {
            Ok(pin) => {
                assert_eq!(pin.ip, public, "pinned to a private address");
                pinned += 1;
            }
            Err(e) => {
                assert!(e.message.contains("private or local address"), "{e}");
                refused += 1;
            }
        }
        let mixed = wisehosting_worker::deploy::check_https_repository(
            &format!("https://{both}/r.git"),
            Some(dns.addr),
        )
        .await;
        assert!(
            mixed.is_err_and(|e| e.message.contains("private or local address")),
            "a name with a private address among public ones"
        );
    }
    assert!(pinned > 400 && refused > 400, "the answers alternated: {pinned} pinned, {refused} refused");

    // The system resolver names the canary; an unpinned git goes there (the control).
    let _hosts = wisehosting_testkit::HostsEntry::add(local, &rebind);
    unguarded_git_reaches(&canary, &[], &format!("https://{rebind}:{port}/r.git"), None).await;
    canary.reset();

    // Whole deploys through a worker that checks with the rebinding DNS server.
    let settings = format!("  dns_resolver: {}\n", dns.addr);
    let (_cp, _agent, user) = platform_with_settings("rebinding", "rebind@example.com", &settings).await;
    let url = format!("https://{rebind}:{port}/r.git");
    let (app, first) = user.deploy("rebind", &url).await;
    let mut errors = vec![user.wait_deployment(first, LIMIT).await];
    for _ in 0..11 {
        let id = user.redeploy(app).await;
        errors.push(user.wait_deployment(id, LIMIT).await);
    }
    let errors: Vec<String> = errors
        .iter()
        .map(|d| {
            assert_eq!(d["status"], "failed", "{d}");
            d["error"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    let refused = errors.iter().filter(|e| e.contains("private or local address")).count();
    assert!(refused > 0 && refused < errors.len(), "both answers reached the deploys: {errors:?}");
    assert_eq!(canary.hits(), 0, "git followed the system resolver to the canary: {errors:?}");
}

/// T20 over https: a repository token reaches the repository's own host — a TLS git server
/// on a public address, checked, pinned and verified like any — as git's Authorization
/// header, and is in no process's arguments or environment in plain, no pg_dump, no build log
/// and no API answer. Without the token the same host refuses the clone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_token_goes_only_to_the_repositorys_https_host() {
    let dns = TestDns::start().await;
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", &containerfile("private repo"))], "v1");
    let token = format!("ghp_{}", hex::encode(wisehosting_crypto::random_bytes::<12>()));
    let host = format!("git-{}.test", hex::encode(wisehosting_crypto::random_bytes::<4>()));
    let server = wisehosting_testkit::GitHttpsServer::start(&repo, &host, &token).await;
    dns.set_addrs(&host, &[&[server.addr.into()]]);
    let settings = format!("  dns_resolver: {}\n  git_ca_file: {}\n", dns.addr, server.ca_file.display());
    let (cp, _agent, user) = platform_with_settings("private-repos", "private@example.com", &settings).await;
    let url = format!("https://{host}:{}/repo.git", server.port);

    let watcher = ProcessWatch::start(vec![token.clone()]);
    let (app_id, d) =
        deploy_and_wait(&user, json!({"name": "private", "repo_url": url, "port": 8080, "git_token": token}))
            .await;
    let hits = watcher.finish();
    assert_eq!(d["status"], "running", "{d}");
    assert!(hits.is_empty(), "the token appeared in a process's arguments or environment: {hits:?}");
    use base64::Engine as _;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"))
    );
    let seen = server.seen();
    assert!(!seen.is_empty() && seen.iter().all(|a| a.as_deref() == Some(expected.as_str())), "{seen:?}");

    // The same repository without the token: refused by the host, the deploy fails clearly.
    let (_, refused) =
        deploy_and_wait(&user, json!({"name": "no-token", "repo_url": url, "port": 8080})).await;
    assert_eq!(refused["status"], "failed", "{refused}");
    assert!(server.seen().iter().any(Option::is_none), "a request without the token reached the host");

    assert!(!pg_dump(&cp).contains(&token), "the git token is in a pg_dump");
    let deployment = d["id"].as_i64().expect("id");
    assert_no_api_answer_shows(&user, app_id, deployment, &[&token]).await;
    let log = user.get(&format!("/api/deployments/{deployment}/log")).await.text().await.expect("log");
    assert!(log.contains("checked out"), "{log}");

    // T22: the host redirects to a local address: git follows no redirect, the canary there
    // records nothing — while a git that follows redirects does reach it (the control).
    let canary = TcpCanary::bind("127.0.0.1:0", false).await;
    let canary_port = canary.port;
    server.redirect_moved_to(&format!("https://127.0.0.1:{canary_port}/repo.git"));
    let moved = format!("https://{host}:{}/moved.git", server.port);
    let user = cp.login("moved@example.com").await;
    let (_, d) =
        deploy_and_wait(&user, json!({"name": "moved", "repo_url": moved, "port": 8080, "git_token": token}))
            .await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(canary.hits(), 0, "git followed a redirect to a local address");
    let config = [
        "http.followRedirects=true".to_string(),
        format!("http.curloptResolve={host}:{}:{}", server.port, server.addr),
    ];
    unguarded_git_reaches(&canary, &config, &moved, Some(&server.ca_file)).await;
}

/// An allowed registry whose name resolves to a private address is refused before podman
/// pulls from it; the same name resolving to a public address passes the check (and fails
/// later only because this machine has no registry to pull from).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_name_resolving_to_a_private_address_is_refused_before_the_pull() {
    let dns = TestDns::start().await;
    let tag = hex::encode(wisehosting_crypto::random_bytes::<4>());
    let (inside, outside) = (format!("inside-{tag}.test"), format!("outside-{tag}.test"));
    dns.set_addrs(&inside, &[&[[10, 0, 0, 5].into()]]);
    dns.set_addrs(&outside, &[&[[192, 88, 100, 9].into()]]);
    let settings =
        format!("  dns_resolver: {}\n  base_image_registries: [localhost, {inside}, {outside}]\n", dns.addr);
    let (_cp, _agent, user) = platform_with_settings("registries", "registries@example.com", &settings).await;
    for (name, registry, private) in [("inside", &inside, true), ("outside", &outside, false)] {
        let repo = TestRepo::new();
        repo.commit(&[("Containerfile", &format!("FROM {registry}/app:1\nCMD [\"true\"]\n"))], name);
        let (_, d) =
            deploy_and_wait(&user, json!({"name": name, "repo_url": repo.url(), "port": 8080})).await;
        assert_eq!(d["status"], "failed", "{d}");
        let error = d["error"].as_str().unwrap_or_default();
        assert_eq!(error.contains("resolves to a private or local address"), private, "{name}: {error}");
    }
}

/// A job whose sealed payload the control plane cannot open is failed by the control plane
/// with the reason, and never reaches the worker (which would otherwise have had to guess: a
/// restart on port 8080 without env).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lifecycle_job_without_a_readable_payload_is_refused_not_run_with_defaults() {
    let cp = spawn_control_plane_with(|c| c.single_machine = true).await;
    let w = create_worker(&cp, "unreadable").await;
    let user = cp.login("unreadable@example.com").await;
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", &containerfile("unreadable"))], "v1");
    let agent = spawn_worker(&cp, &w, &cp.base_url);
    let (app, first) = user.deploy("unreadable", &repo.url()).await;
    let done = user.wait_deployment(first, LIMIT).await;
    assert_eq!(done["status"], "running", "{done}");
    agent.stop().await;
    let offline = eventually(LIMIT, POLL, || async { !cp.hub.is_connected(w.id) }).await;
    assert!(offline, "the worker went offline");
    // Queued while no worker is online; then a fault outside the platform (a bad restore, rows
    // mixed up) puts a payload the control plane itself sealed — the first deploy's, bound to
    // that job's row — in the restart's row, where it cannot open.
    let response = user.post_json(&format!("/api/apps/{app}/restart"), &json!({})).await;
    assert!(response.status().is_success(), "{}", response.status());
    let damaged = sqlx::query(
        "UPDATE jobs SET payload_sealed = (SELECT d.payload_sealed FROM jobs d WHERE d.app_id = $1 AND d.kind = 'deploy')
         WHERE app_id = $1 AND kind = 'restart'",
    )
    .bind(app)
    .execute(&cp.db)
    .await
    .expect("swap in another row's payload");
    assert_eq!(damaged.rows_affected(), 1);
    let agent = spawn_worker(&cp, &w, &cp.base_url);
    let refused = eventually(LIMIT, POLL, || async {
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT status, error FROM jobs WHERE app_id = $1 AND kind = 'restart'")
                .bind(app)
                .fetch_optional(&cp.db)
                .await
                .expect("job");
        row.is_some_and(|(status, error)| {
            status == "failed"
                && error.is_some_and(|e| e.contains("could not be sent") && e.contains("cannot be opened"))
        })
    })
    .await;
    let jobs: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT kind, status, error FROM jobs WHERE app_id = $1 ORDER BY id")
            .bind(app)
            .fetch_all(&cp.db)
            .await
            .expect("jobs");
    assert!(refused, "the restart was refused by name: {jobs:?}");
    agent.stop().await;
}

/// T35: a repository is hostile. A symbolic link named like the file the static preset
/// generates must not make the worker write through it; a Containerfile that is (or lies
/// behind) a link leaving the checkout is refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_in_the_repository_never_makes_the_worker_touch_a_file_outside_it() {
    let (_cp, _agent, user, repo) = platform("symlinked", "links@example.com").await;
    let outside = tempfile::tempdir().expect("outside dir");
    let canary = outside.path().join("canary");
    std::fs::write(&canary, "untouched").expect("canary");
    std::fs::write(outside.path().join("Containerfile"), containerfile("from outside"))
        .expect("outside file");
    // The name the static preset once wrote into the checkout, committed as a link.
    std::os::unix::fs::symlink(&canary, repo.dir.path().join(".wisehosting.Containerfile")).expect("link");
    repo.commit(&[("index.html", "<h1>linked</h1>")], "page and link");
    let (_, d) = deploy_and_wait(
        &user,
        json!({"name": "linked", "repo_url": repo.url(), "framework": "static", "port": 8080}),
    )
    .await;
    assert_eq!(d["status"], "running", "{d}");
    assert_eq!(std::fs::read_to_string(&canary).expect("canary"), "untouched", "written through the link");

    // A Containerfile that is a link out of the checkout, and one behind a linked directory.
    for (name, dockerfile_path) in [("link-file", None), ("link-dir", Some("sub/Containerfile"))] {
        let repo = TestRepo::new();
        match dockerfile_path {
            None => std::os::unix::fs::symlink(
                outside.path().join("Containerfile"),
                repo.dir.path().join("Containerfile"),
            ),
            Some(_) => std::os::unix::fs::symlink(outside.path(), repo.dir.path().join("sub")),
        }
        .expect("link");
        repo.commit(&[("README", "links")], "link");
        let (_, d) = deploy_and_wait(
            &user,
            json!({"name": name, "repo_url": repo.url(), "framework": "dockerfile",
                        "dockerfile_path": dockerfile_path, "port": 8080}),
        )
        .await;
        assert_eq!(d["status"], "failed", "{name}: {d}");
        let error = d["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("symbolic link") && error.contains("leaves the repository"),
            "{name}: {error}"
        );
    }
    assert_eq!(std::fs::read_to_string(&canary).expect("canary"), "untouched");
}

pub(crate) fn podman(args: &[&str]) -> String {
    let out = std::process::Command::new("podman")
        .env("CONTAINERS_CONF", wisehosting_testkit::worker::containers_conf())
        .args(args)
        .output()
        .expect("podman");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A shell probe run in a container: per `host port`, "REACHED <last line of the answer>"
/// when it answers, else "BLOCKED". (busybox's `nc`: its `wget` crashes here.)
pub(crate) fn probe_script(targets: &[String]) -> String {
    targets
        .iter()
        .map(|target| {
            format!("if body=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {target}); then echo \"REACHED $(echo \"$body\" | tail -1)\"; else echo BLOCKED; fi; ")
        })
        .collect()
}

/// Runs the probes of [`probe_script`] from a container on podman's default bridge, outside
/// our confinement: the control that shows a canary answers.
pub(crate) fn probe_unconfined(targets: &[String]) -> String {
    podman(&[
        "run",
        "--rm",
        "--network",
        "podman",
        "localhost/wisehosting/busybox:latest",
        "sh",
        "-c",
        &probe_script(targets),
    ])
}

/// T37: from inside an app, the host's services and another app's container are out of
/// reach, while the same probes from an unconfined container reach them (so the canaries
/// answer and the probes work); the app runs with no new privileges, few capabilities, a
/// pids limit and (static preset) a read-only root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_reaches_neither_the_host_nor_another_app_and_runs_without_privileges() {
    let (_cp, agent, user, repo) = platform("confiner", "confined@example.com").await;
    // A canary on every host address, answering HTTP; any hit from a container counts.
    let canary = TcpCanary::bind("0.0.0.0:0", true).await;
    let port = canary.port;
    repo.commit(&[("index.html", "target-app")], "target");
    let prober_repo = TestRepo::new();
    prober_repo.commit(&[("index.html", "prober-app")], "prober");
    let mut ids = Vec::new();
    for (name, url) in [("target", repo.url()), ("prober", prober_repo.url())] {
        let (app_id, d) = deploy_and_wait(
            &user,
            json!({"name": name, "repo_url": url, "framework": "static", "port": 8080}),
        )
        .await;
        assert_eq!(d["status"], "running", "{d}");
        ids.push(app_id);
    }
    let container = |app: i64| agent.containers_of(app)[0]["Id"].as_str().expect("id").to_string();
    let (target, prober) = (container(ids[0]), container(ids[1]));
    let target_ip = podman(&[
        "inspect",
        "--format",
        "{{(index .NetworkSettings.Networks \"wisehosting-apps\").IPAddress}}",
        &target,
    ]);
    let target_ip = target_ip.trim();
    assert!(target_ip.starts_with("10.90."), "the app runs on the apps network: {target_ip}");
    let host_ip = "192.0.2.2";
    let private = PrivateCanary::start().await;
    let urls = [
        format!("10.90.0.1 {port}"),
        format!("{host_ip} {port}"),
        format!("{target_ip} 8080"),
        format!("{} {}", private.private, private.port),
        format!("{} {}", private.mesh, private.port),
    ];
    // The host's own address, where this machine has it (a local service's address).
    let host_has_ip = std::process::Command::new("ip")
        .args(["-4", "-o", "addr"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("inet {host_ip}/")));
    let urls: Vec<String> = urls.into_iter().filter(|u| host_has_ip || !u.contains(host_ip)).collect();

    let confined = podman(&["exec", &prober, "sh", "-c", &probe_script(&urls)]);
    let answers: Vec<&str> =
        confined.lines().filter(|l| l.starts_with("REACHED") || *l == "BLOCKED").collect();
    assert_eq!(answers, vec!["BLOCKED"; urls.len()], "from inside an app: {confined}");
    assert_eq!(canary.hits(), 0, "a canary on the host was reached from an app");
    assert_eq!(private.hits(), 0, "a private or mesh canary was reached from an app");

    // The same probes from a container on podman's default bridge reach both canaries.
    let control = probe_unconfined(&[
        format!("10.88.0.1 {port}"),
        format!("{target_ip} 8080"),
        format!("{} {}", private.private, private.port),
        format!("{} {}", private.mesh, private.port),
    ]);
    assert!(
        control.matches("REACHED canary").count() == 3 && control.contains("REACHED target-app"),
        "unconfined: {control}"
    );
    assert!(canary.hits() > 0);
    assert_eq!(private.hits(), 2);

    // No new privileges, podman's capabilities less SETFCAP, SETPCAP and SYS_CHROOT.
    let status = podman(&["exec", &prober, "cat", "/proc/1/status"]);
    assert!(
        status.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["NoNewPrivs:", "1"]),
        "{status}"
    );
    assert!(
        status.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["CapEff:", "00000000000004fb"]),
        "{status}"
    );
    let limits =
        podman(&["inspect", "--format", "{{.HostConfig.PidsLimit}} {{.HostConfig.ReadonlyRootfs}}", &prober]);
    assert_eq!(limits.trim(), "512 true");
    let write = podman(&["exec", &prober, "sh", "-c", "touch /www/x && echo WROTE || echo READ-ONLY"]);
    assert!(write.contains("READ-ONLY"), "{write}");
}
