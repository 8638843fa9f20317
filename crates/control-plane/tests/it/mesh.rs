//! The fleet over a real WireGuard mesh (SPEC §11): the control plane in one network
//! namespace, three workers in three others, the control plane reachable from them only
//! through WireGuard (this kernel has no WireGuard module: the userspace
//! `wisehosting-wg-userspace`, over boringtun, behind the same `wg-quick` and `wg`). Each host
//! joins as an operator joins it — `wisehosting-worker mesh-key`, `wisehosting worker create
//! --wg-public-key`, `wisehosting mesh config --worker`, `wisehosting mesh up` — and each
//! worker brings its own interface up before it registers, over the mesh. A central Traefik on
//! a fifth host, itself a member of the mesh (`wisehosting mesh proxy add`), routes to the
//! workers through the control plane's hub.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use wisehosting_testkit::process::workspace_binary;
use wisehosting_testkit::{
    Browser, FakeOidc, GitHttpsServer, Namespace, TestDns, TestRepo, TestWorker, UserSession, WorkerProcess,
    WorkerSetup, eventually, page_containerfile,
};

use crate::{text, wisehosting};

/// `iptables` in `netns`, which must succeed.
fn iptables(netns: &Namespace, args: &[&str]) {
    let out = netns.command("iptables").args(args).output().expect("run iptables");
    assert!(out.status.success(), "iptables {args:?}: {}", text(&out.stderr));
}

/// GET `/` with `host` from inside `netns` to `port` on its loopback (where the proxy's
/// Traefik listens): (status, body); 0 when nothing answered.
fn through(netns: &Namespace, port: u16, host: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    netns.run(move || {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            return (0, String::new());
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut answer = String::new();
        if stream.write_all(request.as_bytes()).is_err() || stream.read_to_string(&mut answer).is_err() {
            return (0, String::new());
        }
        let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    })
}

/// The whole path on five network namespaces: join, register over WireGuard, deploy, route
/// through a central Traefik (on a host of its own in the mesh) from the proxy config; then the app's worker is cut off the
/// network: its app is deployed again on another worker and Traefik follows; the link comes
/// back: the worker reconnects over the mesh and removes its stale copy, one copy serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_in_their_own_namespaces_join_over_wireguard_deploy_route_and_survive_a_cut() {
    let traefik = std::env::var("WH_TRAEFIK_BIN").expect(
        "WH_TRAEFIK_BIN names the Traefik binary; scripts/test.sh sets it (scripts/traefik.sh fetches it)",
    );
    // The underlay: each namespace joined to this host by a veth pair on a /30, the host
    // forwarding between them (as the internet would).
    let [a] = wisehosting_crypto::random_bytes::<1>();
    let underlay = |i: u8| Ipv4Addr::new(172, 30, a, i * 4 + 2);
    let cp_ns = Namespace::create(&[underlay(0)]);
    let worker_ns: Vec<Namespace> = (1..=3).map(|i| Namespace::create(&[underlay(i)])).collect();
    let proxy_ns = Namespace::create(&[underlay(4)]);

    // The git host stands in for GitHub on a public address, its name answered by a DNS
    // server on this host's side of the first worker's link (every namespace reaches it).
    let dns = TestDns::start_on(Namespace::host_side(underlay(1)).into()).await;
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", &page_containerfile("over the mesh"))], "v1");
    let token = format!("ghp_{}", hex::encode(wisehosting_crypto::random_bytes::<12>()));
    let git_host = format!("git-{}.test", hex::encode(wisehosting_crypto::random_bytes::<4>()));
    let git = GitHttpsServer::start(&repo, &git_host, &token).await;
    dns.set_addrs(&git_host, &[&[git.addr.into()]]);
    let repo_url = format!("https://{git_host}:{}/repo.git", git.port);
    let deploy_yaml = format!("  dns_resolver: {}\n  git_ca_file: {}\n", dns.addr, git.ca_file.display());

    // Everything of the control plane's host runs on a runtime inside its namespace.
    let traefik = traefik.as_str();
    let (worker_ns, proxy_ns, deploy_yaml, repo_url, token) =
        (&worker_ns, &proxy_ns, &deploy_yaml, &repo_url, &token);
    tokio::task::block_in_place(|| {
        cp_ns.run(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(on_the_control_planes_host(
                    underlay(0),
                    worker_ns,
                    proxy_ns,
                    traefik,
                    deploy_yaml,
                    repo_url,
                    token,
                ))
        })
    });
    drop(git);
}

async fn on_the_control_planes_host(
    cp_underlay: Ipv4Addr,
    worker_ns: &[Namespace],
    proxy_ns: &Namespace,
    traefik: &str,
    deploy_yaml: &str,
    repo_url: &str,
    token: &str,
) {
    let tag = hex::encode(wisehosting_crypto::random_bytes::<3>());
    let _sockets = Sockets(tag.clone());
    let userspace = workspace_binary("wisehosting-wg-userspace");
    let dir = tempfile::tempdir().expect("dir");
    let hub_key = dir.path().join("hub.key");
    let hub_interface = format!("whc{tag}");
    let proxy_token = "mesh-proxy-token-0123456789abcdef";
    let idp = FakeOidc::start().await;
    let cp = wisehosting_testkit::spawn_control_plane_with_oidc(&idp, |c| {
        c.api_server.host = [0, 0, 0, 0].into();
        c.heartbeat_interval_secs = 1;
        c.scheduler.reschedule_after_secs = 5;
        c.proxy.token = wisehosting_crypto::Secret::new(proxy_token.to_string());
        c.mesh.endpoint = format!("{cp_underlay}:51821");
        c.mesh.private_key_file = hub_key.clone();
        c.mesh.interface = hub_interface.clone();
        c.mesh.userspace = Some(userspace.clone());
    })
    .await;
    let port = cp.addr.port();
    let mesh_url = format!("http://10.50.0.1:{port}");
    let env = [
        ("WH__DATABASE__URL", cp.database_url.clone()),
        ("WH__API_SERVER__SECRET", cp.config.api_server.secret.expose().to_string()),
        ("WH__WORKERS__JOIN_SECRET", cp.config.workers.join_secret.expose().to_string()),
        ("WH__MESH__ENDPOINT", cp.config.mesh.endpoint.clone()),
        ("WH__MESH__PRIVATE_KEY_FILE", hub_key.display().to_string()),
        ("WH__MESH__INTERFACE", hub_interface.clone()),
        ("WH__MESH__USERSPACE", userspace.display().to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cli = |args: &[&str]| {
        let out = wisehosting(args, &env);
        assert!(out.status.success(), "wisehosting {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };

    // Each worker's host: its key made there, the worker created with it (its mesh address
    // given now), its wg-quick file rendered here for it. The CP is walled off its underlay
    // but for WireGuard's UDP.
    let mut setups = Vec::new();
    let mut workers = Vec::new();
    for (i, ns) in worker_ns.iter().enumerate() {
        iptables(
            ns,
            &[
                "-A",
                "OUTPUT",
                "-d",
                &cp_underlay.to_string(),
                "-p",
                "udp",
                "--dport",
                "51821",
                "-j",
                "ACCEPT",
            ],
        );
        iptables(ns, &["-A", "OUTPUT", "-d", &cp_underlay.to_string(), "-j", "REJECT"]);
        let name = format!("mesh-{}", i + 1);
        let interface_file = dir.path().join(format!("whw{tag}{}.conf", i + 1));
        let mesh_yaml = format!(
            "mesh:\n  config_file: {}\n  userspace: {}\n",
            interface_file.display(),
            userspace.display()
        );
        let setup = WorkerSetup::new(&name, &mesh_url, Some(ns), deploy_yaml, &mesh_yaml);
        let key = setup.mesh_key();
        let created = cli(&["worker", "create", "--name", &name, "--wg-public-key", &key]);
        let lines: Vec<&str> = created.lines().collect();
        let id: i64 = lines[0]
            .rsplit(' ')
            .next()
            .and_then(|w| w.trim_end_matches('.').parse().ok())
            .unwrap_or_else(|| panic!("an id in {created}"));
        let ip = format!("10.50.0.{}", i + 2);
        assert!(created.contains(&format!("Its mesh address is {ip}")), "{created}");
        let config = cli(&[
            "mesh",
            "config",
            "--worker",
            &name,
            "--worker-key-file",
            &setup.dir.path().join("data/wg-private.key").display().to_string(),
        ]);
        std::fs::write(&interface_file, config).expect("write the worker's wg-quick file");
        workers.push(TestWorker { id, name, api_key: lines.last().expect("key").to_string() });
        setups.push(setup);
    }
    // The central proxy's host: its key made there with `wg genkey` (it runs none of our
    // binaries), added to the mesh, its interface brought up with wg-quick.
    iptables(
        proxy_ns,
        &["-A", "OUTPUT", "-d", &cp_underlay.to_string(), "-p", "udp", "--dport", "51821", "-j", "ACCEPT"],
    );
    iptables(proxy_ns, &["-A", "OUTPUT", "-d", &cp_underlay.to_string(), "-j", "REJECT"]);
    let proxy_key = dir.path().join("proxy.key");
    let private = Command::new("wg").arg("genkey").output().expect("wg genkey");
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&proxy_key)
            .expect("key file");
        file.write_all(&private.stdout).expect("write the key");
    }
    let public = Command::new("wg")
        .arg("pubkey")
        .stdin(std::fs::File::open(&proxy_key).expect("key file"))
        .output()
        .expect("wg pubkey");
    let public = text(&public.stdout).trim().to_string();
    let added = cli(&["mesh", "proxy", "add", "--name", "central", "--wg-public-key", &public]);
    assert!(added.contains("Central proxy central has mesh address 10.50.0.5"), "{added}");
    let proxy_file = dir.path().join(format!("whp{tag}.conf"));
    let proxy_config =
        cli(&["mesh", "config", "--proxy", "central", "--key-file", &proxy_key.display().to_string()]);
    std::fs::write(&proxy_file, proxy_config).expect("write the proxy's wg-quick file");
    let proxy_up = proxy_ns
        .command("wg-quick")
        .arg("up")
        .arg(&proxy_file)
        .env("WG_QUICK_USERSPACE_IMPLEMENTATION", &userspace)
        .output()
        .expect("wg-quick");
    assert!(proxy_up.status.success(), "wg-quick up on the proxy: {}", text(&proxy_up.stderr));

    let up = cli(&["mesh", "up"]);
    assert!(up.contains(&format!("Brought {hub_interface} up with 4 peer(s).")), "{up}");
    let again = cli(&["mesh", "up"]);
    assert!(
        again.contains("was up: 0 peer(s) added, 0 removed; 4 in all"),
        "mesh up again changes nothing: {again}"
    );

    // The workers start: each brings its interface up and registers over the mesh.
    let join = cp.config.workers.join_secret.expose().to_string();
    let mut agents: Vec<WorkerProcess> = Vec::new();
    for (setup, worker) in setups.into_iter().zip(&workers) {
        agents.push(setup.start(&join, worker).await);
    }
    let all_connected = eventually(Duration::from_secs(60), Duration::from_millis(200), || async {
        workers.iter().all(|w| cp.hub.is_connected(w.id))
    })
    .await;
    assert!(all_connected, "the three workers connect over the mesh");
    let listed: Value = serde_json::from_str(&cli(&["worker", "list", "--json"])).expect("json");
    for (i, w) in workers.iter().enumerate() {
        let row = listed.as_array().expect("list").iter().find(|r| r["id"] == w.id).expect("listed");
        assert_eq!(
            (row["status"].as_str(), row["wg_ip"].as_str()),
            (Some("online"), Some(format!("10.50.0.{}", i + 2).as_str())),
            "{row}"
        );
    }
    // Only WireGuard reaches the control plane: its API answers on its underlay address here
    // (it listens on every address) and over the mesh from a worker's host, never on the
    // underlay from there.
    let api = SocketAddr::from((cp_underlay, port));
    assert!(
        std::net::TcpStream::connect_timeout(&api, Duration::from_secs(2)).is_ok(),
        "the API listens on {api}"
    );
    let w1 = &worker_ns[0];
    assert!(w1.connect(SocketAddr::from(([10, 50, 0, 1], port))).is_ok(), "over the mesh");
    assert!(w1.connect(api).is_err(), "the underlay to the control plane is closed but for WireGuard");

    // A user signs in (the stand-in provider) and deploys from the git host.
    // It listens on every address; the sign-in's redirect URI names loopback.
    let site = format!("http://127.0.0.1:{port}");
    let mut browser = Browser::new(&site);
    assert_eq!(browser.sign_in().await, "/");
    let user = UserSession::from_browser(&site, &browser).await;
    let created = user
        .post_json(
            "/api/deploy",
            &json!({"name": "meshy", "repo_url": repo_url, "port": 8080, "git_token": token}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.expect("json");
    let app = created["app"]["id"].as_i64().expect("app");
    let deployment = created["deployment"]["id"].as_i64().expect("deployment");
    let done = user.wait_deployment(deployment, Duration::from_secs(180)).await;
    assert_eq!(done["status"], "running", "{done}");
    let first = placed_on(&user, app).await;

    // The central Traefik on the proxy's host reads the proxy config over the mesh and
    // reaches the app's worker at its mesh address, through the hub.
    let entry = 8000;
    let static_config = format!(
        "entryPoints:\n  web:\n    address: \"127.0.0.1:{entry}\"\nproviders:\n  http:\n    endpoint: \"http://10.50.0.1:{port}/v1/traefik/proxy-config\"\n    pollInterval: \"1s\"\n    headers:\n      Authorization: \"Bearer {proxy_token}\"\nlog:\n  level: ERROR\nglobal:\n  checkNewVersion: false\n  sendAnonymousUsage: false\n",
    );
    std::fs::write(dir.path().join("traefik.yml"), static_config).expect("write");
    let log = std::fs::File::create(dir.path().join("traefik.log")).expect("log");
    let mut proxy = proxy_ns
        .command(traefik)
        .arg(format!("--configFile={}", dir.path().join("traefik.yml").display()))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start traefik");
    let host = format!("meshy.{}", cp.config.subdomain_base);
    let serves = |limit: u64| {
        let host = host.clone();
        async move {
            eventually(Duration::from_secs(limit), Duration::from_millis(200), || async {
                through(proxy_ns, entry, &host) == (200, "over the mesh\n".to_string())
            })
            .await
        }
    };
    let config: Value = cp
        .client
        .get(format!("{site}/v1/traefik/proxy-config"))
        .bearer_auth(proxy_token)
        .send()
        .await
        .expect("proxy config")
        .json()
        .await
        .expect("json");
    let index = workers.iter().position(|w| w.id == first).expect("one of ours");
    let upstream = format!("http://10.50.0.{}:", index + 2);
    assert!(config.to_string().contains(&upstream), "the upstream is the worker's mesh address: {config}");
    let served = serves(30).await;
    if !served {
        let wg = Command::new("wg").args(["show", &hub_interface]).output().expect("wg");
        let reach = proxy_ns.connect(SocketAddr::from(([10, 50, 0, 1], port)));
        let routes = proxy_ns.command("ip").args(["addr"]).output().expect("ip");
        panic!(
            "Traefik serves the app over the mesh; hub: {}\nproxy reaches the API: {reach:?}\nproxy addrs: {}\nits log:\n{}",
            text(&wg.stdout),
            text(&routes.stdout),
            traefik_log(&dir)
        );
    }

    // Cut: the app's worker loses its network. Its app is deployed again on another worker
    // (same commit) and Traefik follows the proxy config there.
    let cut = &worker_ns[index];
    iptables(cut, &["-I", "INPUT", "1", "-i", &format!("{}n", cut.name), "-j", "DROP"]);
    iptables(cut, &["-I", "OUTPUT", "1", "-o", &format!("{}n", cut.name), "-j", "DROP"]);
    let cut_at = std::time::Instant::now();
    let moved = eventually(Duration::from_secs(120), Duration::from_millis(250), || async {
        placed_on(&user, app).await != first
    })
    .await;
    assert!(moved, "the app moves off the cut worker");
    let second = placed_on(&user, app).await;
    assert!(serves(60).await, "Traefik serves the app from its new worker; its log:\n{}", traefik_log(&dir));
    eprintln!(
        "mesh figure: served through Traefik by another worker {:?} after the cut (reschedule_after_secs 5)",
        cut_at.elapsed()
    );
    let copies = |worker: &WorkerProcess| {
        let labels = [
            format!("wisehosting.worker={}", worker.worker.id),
            format!("wisehosting.instance={}", worker.instance),
        ];
        crate::faults::running_containers_labelled(&[&labels[0], &labels[1]], app).len()
    };
    let old = &agents[index];
    let new = agents.iter().find(|w| w.worker.id == second).expect("one of ours");
    assert_eq!(copies(new), 1, "the new worker's copy runs");

    // Restored: the worker reconnects over the mesh, finds the app is no longer its own and
    // removes its copy; one copy serves.
    iptables(cut, &["-D", "INPUT", "-i", &format!("{}n", cut.name), "-j", "DROP"]);
    iptables(cut, &["-D", "OUTPUT", "-o", &format!("{}n", cut.name), "-j", "DROP"]);
    let restored_at = std::time::Instant::now();
    let back = eventually(Duration::from_secs(90), Duration::from_millis(250), || async {
        cp.hub.is_connected(first)
    })
    .await;
    assert!(back, "the cut worker reconnects once its link is back");
    eprintln!(
        "mesh figure: the cut worker reconnected over the mesh {:?} after the link came back",
        restored_at.elapsed()
    );
    let stale_gone =
        eventually(Duration::from_secs(60), Duration::from_millis(250), || async { copies(old) == 0 }).await;
    assert!(stale_gone, "the returning worker removes its stale copy");
    assert_eq!(copies(new), 1, "one copy serves");
    assert_eq!(placed_on(&user, app).await, second, "the app stays where it moved");
    assert!(serves(10).await, "Traefik still serves the app; its log:\n{}", traefik_log(&dir));
    let handshakes =
        Command::new("wg").args(["show", &hub_interface, "latest-handshakes"]).output().expect("wg");
    assert_eq!(
        text(&handshakes.stdout)
            .lines()
            .filter(|l| l.split_whitespace().nth(1).is_some_and(|t| t != "0"))
            .count(),
        4,
        "every worker and the proxy have shaken hands with the hub: {}",
        text(&handshakes.stdout)
    );
    let _ = proxy.kill();
    let _ = proxy.wait();
    drop(agents);
    cp.stop().await.expect("stop");
}

/// Removes the UAPI sockets of this test's interfaces (a userspace device killed with its
/// namespace leaves its socket behind; the directory is the whole host's).
struct Sockets(String);

impl Drop for Sockets {
    fn drop(&mut self) {
        let Ok(dir) = std::fs::read_dir("/var/run/wireguard") else { return };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("wh") && name.get(3..).is_some_and(|rest| rest.starts_with(&self.0)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// The worker the app is placed on.
async fn placed_on(user: &UserSession, app: i64) -> i64 {
    let a: Value = user.get(&format!("/api/apps/{app}")).await.json().await.expect("json");
    a["worker_id"].as_i64().unwrap_or_else(|| panic!("placed: {a}"))
}

fn traefik_log(dir: &tempfile::TempDir) -> String {
    std::fs::read_to_string(dir.path().join("traefik.log")).unwrap_or_default()
}
