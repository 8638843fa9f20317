use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use wisehosting_control_plane::store::workers::mac_key_aad;
use wisehosting_crypto::{Keyring, Purpose, Sealer, Secret, sha256_hex};
use wisehosting_proto::mac_key_from_api_key;
use wisehosting_testkit::fresh_database;

use super::{text, wisehosting};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

fn write_config(body: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(body.as_bytes()).expect("write");
    file
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["dev", "--help"],
        vec!["migrate", "--help"],
        vec!["migrate", "down", "--help"],
        vec!["worker", "create", "--help"],
        vec!["worker", "list", "--help"],
        vec!["mesh", "config", "--help"],
        vec!["config", "check", "--help"],
    ] {
        let out = wisehosting(&args, &[]);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("Usage:"), "{args:?}");
    }
}

#[test]
fn config_check_names_the_bad_key_and_exits_non_zero() {
    let file = write_config("api_server:\n  port: 8081\n  prot: 1\n");
    let out = wisehosting(&["config", "check", file.path().to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("`api_server.prot` is not a known key"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn config_check_names_a_wrong_type_malformed_yaml_and_a_missing_file() {
    let cases = [
        ("heartbeat_interval_secs: soon\n", "`heartbeat_interval_secs`"),
        ("database:\n  url: [unclosed\n", "not valid YAML"),
        ("log:\n  format: xml\n", "`log.format`"),
    ];
    for (body, expected) in cases {
        let file = write_config(body);
        let out = wisehosting(&["config", "check", file.path().to_str().unwrap()], &[]);
        assert!(!out.status.success(), "{body}");
        assert!(text(&out.stderr).contains(expected), "{body}: {}", text(&out.stderr));
    }
    let out = wisehosting(&["config", "check", "/nonexistent/wisehosting.yaml"], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cannot read config file /nonexistent/wisehosting.yaml"));
}

#[test]
fn config_check_prints_the_resolved_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("proxy_token"), "credential-canary-token").expect("write");
    let file = write_config(&format!("api_server:\n  secret: {SECRET}-canary\n"));
    let out = wisehosting(
        &["config", "check", file.path().to_str().unwrap()],
        &[("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap()), ("WH__API_SERVER__PORT", "9999")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("canary"), "{stdout}");
    assert!(stdout.contains("port: 9999"), "env override applied: {stdout}");
    assert!(stdout.contains("[redacted]"));
}

#[test]
fn an_unreadable_credential_is_one_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("database_password")).expect("mkdir");
    let out = wisehosting(&["config", "check"], &[("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("database_password") && err.contains("LoadCredential"), "{err}");
}

#[test]
fn serve_with_a_database_that_does_not_answer_fails_with_one_clear_line() {
    let out = wisehosting(
        &["serve"],
        &[
            ("WH__DATABASE__URL", "postgres://wh:pw-canary@127.0.0.1:1/wh"),
            ("WH__DATABASE__ACQUIRE_TIMEOUT_SECS", "2"),
            ("WH__API_SERVER__SECRET", SECRET),
        ],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot connect to the database at postgres://wh:[redacted]@127.0.0.1:1/wh"),
        "{err}"
    );
    assert!(!err.contains("pw-canary"));
}

#[test]
fn serve_without_a_secret_says_where_to_put_one() {
    let out = wisehosting(&["serve"], &[("WH__DATABASE__URL", "postgres://wh@127.0.0.1:1/wh")]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("api_server.secret is not set"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn migrate_down_one_then_up_round_trips_through_the_binary() {
    let url = fresh_database(true).await;
    let env = [("WH__DATABASE__URL", url.as_str())];
    let down = wisehosting(&["migrate", "down", "1"], &env);
    assert!(down.status.success(), "{}", text(&down.stderr));
    let status = text(&wisehosting(&["migrate", "status"], &env).stdout);
    assert!(status.lines().last().unwrap_or_default().contains("pending"), "{status}");
    let up = wisehosting(&["migrate", "up"], &env);
    assert!(up.status.success(), "{}", text(&up.stderr));
    assert!(text(&up.stdout).contains("applied 1 migration(s)"));
    let status = text(&wisehosting(&["migrate", "status"], &env).stdout);
    assert!(status.lines().all(|l| l.contains("applied")), "{status}");
}

#[tokio::test]
async fn worker_create_prints_the_key_once_and_stores_only_its_hash_and_sealed_mac_key() {
    let url = fresh_database(true).await;
    let env = [("WH__DATABASE__URL", url.as_str()), ("WH__API_SERVER__SECRET", SECRET)];
    let out = wisehosting(&["worker", "create", "--name", "edge-1", "--zone", "eu"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let key = stdout.trim_end().lines().last().expect("key line").to_string();
    assert!(key.starts_with("whk_") && key.len() == 68, "{key}");

    let pool = PgPool::connect(&url).await.expect("connect");
    let (id, hash, sealed, zone): (i64, String, String, Option<String>) =
        sqlx::query_as("SELECT id, api_key_hash, mac_key_sealed, zone FROM workers WHERE name = 'edge-1'")
            .fetch_one(&pool)
            .await
            .expect("row");
    assert_eq!(hash, sha256_hex(key.as_bytes()));
    assert_eq!(zone.as_deref(), Some("eu"));
    let dump: String = sqlx::query_scalar("SELECT row_to_json(w)::text FROM workers w")
        .fetch_one(&pool)
        .await
        .expect("dump");
    assert!(!dump.contains(&key), "raw key stored");
    let mac_key_hex = hex::encode(mac_key_from_api_key(&key));
    assert!(!dump.contains(&mac_key_hex), "mac key stored in clear");

    let keys = Keyring::from_master(&Secret::new(SECRET));
    let sealer = Sealer::new(1, [(1, keys.key(Purpose::ColumnEncryption).clone())]).expect("sealer");
    let opened = sealer.open(&sealed, mac_key_aad(&id.to_string())).expect("opens");
    assert_eq!(opened, mac_key_from_api_key(&key).to_vec());

    let again = wisehosting(&["worker", "create", "--name", "edge-1"], &env);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("a worker named edge-1 already exists"), "{}", text(&again.stderr));
    let bad = wisehosting(&["worker", "create", "--name", "--oops"], &env);
    assert!(!bad.status.success());
}

/// `Type=notify`: `READY=1` once it listens, `WATCHDOG=1` at half of `WATCHDOG_USEC`, and
/// `STOPPING=1` at SIGTERM, after which it drains and exits 0.
#[tokio::test]
async fn serve_tells_systemd_it_is_ready_feeds_the_watchdog_and_stops_gracefully_on_sigterm() {
    let url = fresh_database(true).await;
    let dir = tempfile::tempdir().expect("dir");
    let socket_path = dir.path().join("notify.sock");
    let notify = tokio::net::UnixDatagram::bind(&socket_path).expect("notify socket");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wisehosting"))
        .arg("serve")
        .env_remove("CONFIG_PATH")
        .env("WH__DATABASE__URL", &url)
        .env("WH__API_SERVER__SECRET", SECRET)
        .env("WH__API_SERVER__HOST", "127.0.0.1")
        .env("WH__API_SERVER__PORT", "0")
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "300000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut all);
        all
    });
    let next = |limit: Duration| {
        let notify = &notify;
        async move {
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(limit, notify.recv(&mut buf)).await.ok()?.ok()?;
            Some(String::from_utf8_lossy(&buf[..n]).into_owned())
        }
    };
    let starting = next(Duration::from_secs(30)).await.expect("a notification");
    assert_eq!(starting.trim(), "STATUS=starting");
    let ready = next(Duration::from_secs(30)).await.expect("a notification");
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(ready.contains("STATUS=control plane listening on 127.0.0.1:"), "{ready}");
    // The API answers by the time it says it is ready.
    let port: u16 = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS=control plane listening on 127.0.0.1:"))
        .and_then(|p| p.parse().ok())
        .expect("port");
    let health = reqwest::get(format!("http://127.0.0.1:{port}/health")).await.expect("healthz");
    assert_eq!(health.status(), 200);
    // Pings sent while the health check ran arrive together; the ones after are paced. The
    // widest gap shows the pace (a ping loop that did not wait would show none).
    let mut arrivals = Vec::new();
    for _ in 0..4 {
        let ping = next(Duration::from_secs(5)).await.expect("a watchdog ping");
        assert_eq!(ping.trim(), "WATCHDOG=1");
        arrivals.push(Instant::now());
    }
    let widest = arrivals.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    assert!(widest >= Duration::from_millis(100), "pings every 150 ms, not faster: widest gap {widest:?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("signal");
    let mut stopping = false;
    while let Some(m) = next(Duration::from_secs(5)).await {
        if m.trim() == "STOPPING=1" {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "STOPPING=1 at SIGTERM");
    let status = child.wait().expect("wait");
    let log = reader.join().expect("reader");
    assert!(status.success(), "exit {status}: {log}");
    assert!(log.contains("control plane stopped"), "{log}");
}

/// The three units verify with systemd's own checker (an unknown or misspelt directive is a
/// warning that fails this test), are `Type=notify` with a watchdog, and load every secret
/// the binaries read from a credential (optional ones as commented lines to enable).
#[test]
fn the_systemd_units_verify_and_load_every_secret_as_a_credential() {
    let bin_dir =
        std::path::Path::new(env!("CARGO_BIN_EXE_wisehosting")).parent().expect("bin dir").to_path_buf();
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let dir = tempfile::tempdir().expect("dir");
    let mut secrets: Vec<(&str, Vec<&str>)> = vec![
        (
            "wisehosting",
            wisehosting_control_plane::config::CREDENTIALS.iter().map(|(name, _)| *name).collect(),
        ),
        ("wisehosting-worker", vec!["worker_api_key", "worker_shared_secret"]),
        ("wisehosting-admin", vec!["internal_api_token", "database_password"]),
    ];
    for (unit, names) in secrets.drain(..) {
        let unit_text = std::fs::read_to_string(deploy.join(format!("{unit}.service"))).expect("unit");
        for line in ["Type=notify", "NotifyAccess=main", "NoNewPrivileges=yes", "ProtectSystem=strict"] {
            assert!(unit_text.lines().any(|l| l == line), "{unit}: {line}");
        }
        assert!(unit_text.lines().any(|l| l.starts_with("WatchdogSec=")), "{unit}: WatchdogSec");
        assert!(
            unit_text.lines().any(|l| l.starts_with("CapabilityBoundingSet=")),
            "{unit}: CapabilityBoundingSet"
        );
        for name in names {
            let wanted = format!("LoadCredential={name}:/etc/credstore/wisehosting/{name}");
            assert!(
                unit_text.lines().any(|l| l.trim_start_matches('#') == wanted),
                "{unit} loads {name} as a credential"
            );
        }
        let path = dir.path().join(format!("{unit}.service"));
        let local =
            unit_text.replace(&format!("/usr/local/bin/{unit}"), bin_dir.join(unit).to_str().expect("path"));
        std::fs::write(&path, local).expect("write");
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg("--man=no")
            .arg(&path)
            .output()
            .expect("systemd-analyze");
        assert!(out.status.success() && out.stderr.is_empty(), "{unit}: {}", text(&out.stderr));
    }
}

/// The provisioning script, staged under a root: the worker's config reads back (with its
/// secrets from the credential files, 0600, never on the command line), the unit and
/// containers.conf are installed, and the mesh step installs the wg-quick file and points the
/// agent at the control plane over the mesh. Bad input is refused with the fix.
#[test]
fn the_provisioning_script_installs_a_worker_that_loads_and_then_its_mesh() {
    use std::os::unix::fs::PermissionsExt as _;
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = repo.join("scripts/provision-worker.sh");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_wisehosting")).with_file_name("wisehosting-worker");
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("root");
    let key = dir.path().join("edge.key");
    let secret = dir.path().join("join.secret");
    std::fs::write(&key, "whk_provisioned-key-0123456789abcdef\n").expect("key");
    std::fs::write(&secret, format!("{SECRET}\n")).expect("secret");
    let run = |args: &[&str]| Command::new(&script).args(args).output().expect("run the script");
    let ok = run(&[
        "--root",
        root.to_str().unwrap(),
        "--skip-packages",
        "--no-start",
        "--name",
        "edge-9",
        "--zone",
        "eu",
        "--control-plane",
        "https://paas.example.com",
        "--api-key-file",
        key.to_str().unwrap(),
        "--shared-secret-file",
        secret.to_str().unwrap(),
        "--binary",
        bin.to_str().unwrap(),
    ]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("wisehosting mesh config --worker edge-9"), "{}", text(&ok.stdout));
    let credstore = root.join("etc/credstore/wisehosting");
    for name in ["worker_api_key", "worker_shared_secret"] {
        let mode = std::fs::metadata(credstore.join(name)).expect("credential").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    let config_path = root.join("etc/wisehosting/worker.yaml");
    let config =
        wisehosting_worker::WorkerConfig::load(&config_path, Some(&credstore)).expect("the config loads");
    assert_eq!(config.name, "edge-9");
    assert_eq!(config.zone.as_deref(), Some("eu"));
    assert_eq!(config.control_plane_url, "https://paas.example.com");
    assert_eq!(config.api_key.expose(), "whk_provisioned-key-0123456789abcdef");
    let yaml = std::fs::read_to_string(&config_path).expect("yaml");
    assert!(!yaml.contains("whk_provisioned") && !yaml.contains(SECRET), "no secret in the YAML");
    assert!(root.join("etc/systemd/system/wisehosting-worker.service").is_file());
    assert!(root.join("etc/wisehosting/containers.conf").is_file());
    assert!(root.join("usr/local/bin/wisehosting-worker").is_file());

    let not_yet =
        run(&["--root", root.to_str().unwrap(), "--name", "edge-9", "--mesh-config", "/nonexistent"]);
    assert!(!not_yet.status.success());
    assert!(
        text(&not_yet.stderr).contains("wisehosting mesh config --worker edge-9"),
        "{}",
        text(&not_yet.stderr)
    );
    let wg = dir.path().join("edge-9.conf");
    std::fs::write(&wg, "[Interface]\nAddress = 10.50.0.2/24\n").expect("wg");
    let meshed = run(&[
        "--root",
        root.to_str().unwrap(),
        "--no-start",
        "--name",
        "edge-9",
        "--mesh-config",
        wg.to_str().unwrap(),
    ]);
    assert!(meshed.status.success(), "{}", text(&meshed.stderr));
    let installed = root.join("etc/wireguard/wh0.conf");
    assert_eq!(std::fs::metadata(&installed).expect("wh0.conf").permissions().mode() & 0o777, 0o600);
    let config = wisehosting_worker::WorkerConfig::load(&config_path, Some(&credstore)).expect("still loads");
    assert_eq!(config.control_plane_url, "http://10.50.0.1:8081");

    let bad = run(&["--root", root.to_str().unwrap(), "--name", "Bad Name", "--control-plane", "https://x"]);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("--name must be the worker's name"), "{}", text(&bad.stderr));
}

/// `wisehosting worker list` and `wisehosting mesh config` through the binary, over workers
/// that registered with a real control plane: the list in SPEC §14.5's JSON shape, the hub's
/// wg-quick file with each joined worker as a peer (its key made here, mode 0600, and kept),
/// a worker's file with the hub's public key, both read by `wg-quick strip`; a worker that
/// has not joined is named with the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_list_and_the_mesh_configs_show_what_registration_gave_each_worker() {
    use std::os::unix::fs::PermissionsExt as _;
    use wisehosting_crypto::wireguard::WgPrivateKey;
    let url = fresh_database(true).await;
    let cp = wisehosting_testkit::spawn_control_plane_on(&url, |_| {}).await;
    let joined = wisehosting_testkit::create_worker(&cp, "edge-1").await;
    wisehosting_testkit::create_worker(&cp, "edge-2").await;
    let worker_key = WgPrivateKey::generate().public_key().to_string();
    let registered = cp
        .client
        .post(cp.url("/v1/workers/register"))
        .json(
            &serde_json::json!({"secret": cp.config.workers.join_secret.expose(), "api_key": joined.api_key,
            "name": "edge-1", "version": "x", "zone": null, "capacity": {"cpus": 1, "memory_mb": 1},
            "wg_public_key": worker_key}),
        )
        .send()
        .await
        .expect("register");
    assert_eq!(registered.status(), 200);

    let dir = tempfile::tempdir().expect("dir");
    let hub_key_file = dir.path().join("hub.key");
    let env = [
        ("WH__DATABASE__URL", url.as_str()),
        ("WH__MESH__PRIVATE_KEY_FILE", hub_key_file.to_str().expect("path")),
        ("WH__MESH__ENDPOINT", "paas.example.com:51821"),
    ];
    let listed = wisehosting(&["worker", "list", "--json"], &env);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let listed: serde_json::Value = serde_json::from_str(&text(&listed.stdout)).expect("json");
    assert_eq!(
        listed,
        serde_json::json!([
            {"id": joined.id, "name": "edge-1", "status": "pending", "zone": null, "wg_ip": "10.50.0.2"},
            {"id": joined.id + 1, "name": "edge-2", "status": "pending", "zone": null, "wg_ip": null},
        ])
    );
    let table = text(&wisehosting(&["worker", "list"], &env).stdout);
    assert!(table.lines().any(|l| l.contains("edge-1") && l.contains("10.50.0.2")), "{table}");

    let strip = |config: &str| {
        let file = dir.path().join("wh0.conf");
        std::fs::write(&file, config).expect("write");
        let out =
            Command::new("wg-quick").arg("strip").arg(&file).output().expect("wg-quick (wireguard-tools)");
        assert!(out.status.success(), "wg-quick reads it: {}\n{config}", text(&out.stderr));
    };
    let hub = wisehosting(&["mesh", "config"], &env);
    assert!(hub.status.success(), "{}", text(&hub.stderr));
    let hub = text(&hub.stdout);
    assert!(hub.contains(&format!("[Peer]\nPublicKey = {worker_key}\nAllowedIPs = 10.50.0.2/32")), "{hub}");
    assert!(hub.contains("# worker edge-2: not joined yet"), "{hub}");
    strip(&hub);
    let mode = std::fs::metadata(&hub_key_file).expect("key file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let hub_private = std::fs::read_to_string(&hub_key_file).expect("key");
    assert!(!hub.contains(hub_private.trim()), "no private key printed");
    let hub_public = WgPrivateKey::from_base64(&hub_private).expect("key").public_key();

    let worker = wisehosting(&["mesh", "config", "--worker", "edge-1"], &env);
    assert!(worker.status.success(), "{}", text(&worker.stderr));
    let worker = text(&worker.stdout);
    assert!(worker.contains("Address = 10.50.0.2/24"), "{worker}");
    assert!(
        worker.contains(&format!("PublicKey = {hub_public}\nEndpoint = paas.example.com:51821")),
        "{worker}"
    );
    strip(&worker);
    assert_eq!(std::fs::read_to_string(&hub_key_file).expect("key"), hub_private, "the hub's key is kept");

    let not_joined = wisehosting(&["mesh", "config", "--worker", "edge-2"], &env);
    assert!(!not_joined.status.success());
    assert!(text(&not_joined.stderr).contains("start it once"), "{}", text(&not_joined.stderr));
    let unknown = wisehosting(&["mesh", "config", "--worker", "nobody"], &env);
    assert!(text(&unknown.stderr).contains("no worker is named nobody"), "{}", text(&unknown.stderr));
}

/// `worker create --wg-public-key`: the worker is given its mesh address at once (before it
/// ever registers, so its host can join the mesh first and register over it), its file renders
/// straight away, and a registration with the same key keeps that address. A key that does not
/// read is refused with the fix, and no worker is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_created_with_its_public_key_has_its_mesh_address_before_it_registers() {
    use wisehosting_crypto::wireguard::WgPrivateKey;
    let url = fresh_database(true).await;
    let dir = tempfile::tempdir().expect("dir");
    let hub_key_file = dir.path().join("hub.key");
    let env = [
        ("WH__DATABASE__URL", url.as_str()),
        ("WH__API_SERVER__SECRET", SECRET),
        ("WH__MESH__PRIVATE_KEY_FILE", hub_key_file.to_str().expect("path")),
        ("WH__MESH__ENDPOINT", "paas.example.com:51821"),
    ];
    let bad = wisehosting(&["worker", "create", "--name", "edge-0", "--wg-public-key", "not-a-key"], &env);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("--wg-public-key") && text(&bad.stderr).contains("mesh-key"),
        "{}",
        text(&bad.stderr)
    );

    let key = WgPrivateKey::generate().public_key().to_string();
    let created = wisehosting(&["worker", "create", "--name", "edge-1", "--wg-public-key", &key], &env);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let out = text(&created.stdout);
    assert!(out.contains("Its mesh address is 10.50.0.2"), "{out}");
    let api_key = out.lines().last().expect("the key alone on the last line").to_string();
    assert!(api_key.starts_with("whk_"), "{out}");

    let listed = wisehosting(&["worker", "list", "--json"], &env);
    let listed: serde_json::Value = serde_json::from_str(&text(&listed.stdout)).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "the refused one was not created: {listed}");
    assert_eq!(listed[0]["wg_ip"], "10.50.0.2");
    let file = wisehosting(&["mesh", "config", "--worker", "edge-1"], &env);
    assert!(file.status.success(), "{}", text(&file.stderr));
    assert!(text(&file.stdout).contains("Address = 10.50.0.2/24"), "{}", text(&file.stdout));
    let hub = text(&wisehosting(&["mesh", "config"], &env).stdout);
    assert!(hub.contains(&format!("PublicKey = {key}\nAllowedIPs = 10.50.0.2/32")), "{hub}");

    // Its first registration, with the same key, keeps the address.
    let cp = wisehosting_testkit::spawn_control_plane_on(&url, |c| {
        c.api_server.secret = Secret::new(SECRET.to_string());
    })
    .await;
    let registered: serde_json::Value = cp
        .client
        .post(cp.url("/v1/workers/register"))
        .json(&serde_json::json!({"secret": cp.config.workers.join_secret.expose(), "api_key": api_key,
            "name": "edge-1", "version": "x", "zone": null, "capacity": {"cpus": 1, "memory_mb": 1},
            "wg_public_key": key}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    assert_eq!(registered["wg_ip"], "10.50.0.2", "{registered}");
}
