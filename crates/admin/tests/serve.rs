//! `wisehosting-admin serve` as systemd runs it: the binary, the control plane's config file,
//! the internal API's token from a credential (`LoadCredential=internal_api_token`), plain
//! HTTP on loopback or HTTPS with a configured certificate.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use wisehosting_crypto::Secret;
use wisehosting_testkit::{TestControlPlane, spawn_control_plane_with};

const TOKEN: &str = "internal-api-token-0123456789abcdef0123";
const PASSWORD: &str = "a long enough console password";

struct Serving {
    child: Child,
    url: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, cp: &TestControlPlane, extra: &str) -> std::path::PathBuf {
    let path = dir.join("config.yaml");
    let internal = cp.internal_addr.expect("the internal API listens");
    std::fs::write(
        &path,
        format!(
            "database:\n  url: {}\nadmin:\n  listen: 127.0.0.1:0\n  internal_api_url: http://{internal}\n{extra}",
            cp.database_url
        ),
    )
    .expect("config");
    path
}

fn admin(config: &Path, credentials: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wisehosting-admin"));
    cmd.args(args)
        .env("CONFIG_PATH", config)
        .env("CREDENTIALS_DIRECTORY", credentials)
        .env("RUST_LOG", "warn");
    cmd
}

/// Starts `serve` and reads the address it prints.
fn serve(config: &Path, credentials: &Path) -> Serving {
    let mut child = admin(config, credentials, &["serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("Admin console: ").map(str::to_string))
        .expect("serve prints its address");
    std::thread::spawn(move || for _ in lines {});
    Serving { child, url }
}

fn create_account(config: &Path, credentials: &Path) {
    let mut child =
        admin(config, credentials, &["create-account", "--username", "ops", "--role", "super_admin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn");
    child.stdin.take().expect("stdin").write_all(PASSWORD.as_bytes()).expect("password");
    assert!(child.wait().expect("wait").success());
}

async fn sign_in_and_read_workers(client: &reqwest::Client, url: &str) -> String {
    let r = client
        .post(format!("{url}api/login"))
        .json(&json!({ "username": "ops", "password": PASSWORD }))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().expect("ascii").to_string();
    let pair = cookie.split(';').next().expect("pair").to_string();
    let r = client.get(format!("{url}api/workers")).header("cookie", &pair).send().await.expect("workers");
    assert_eq!(r.status(), 200, "the control plane took the token from the credential");
    assert!(r.json::<Value>().await.expect("json").is_array());
    cookie
}

use wisehosting_testkit::tls::test_ca_and_certificate;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_its_token_from_a_credential_and_speaks_https_when_given_a_certificate() {
    let cp = spawn_control_plane_with(|c| c.internal_api.token = Secret::new(TOKEN)).await;
    let dir = tempfile::tempdir().expect("dir");
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).expect("credentials dir");
    std::fs::write(credentials.join("internal_api_token"), TOKEN).expect("credential");

    // Plain HTTP on loopback.
    let config = write_config(dir.path(), &cp, "");
    create_account(&config, &credentials);
    let plain = serve(&config, &credentials);
    assert!(plain.url.starts_with("http://127.0.0.1:") && plain.url.ends_with("/admin/"), "{}", plain.url);
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let cookie = sign_in_and_read_workers(&client, &plain.url).await;
    assert!(!cookie.contains("Secure"), "{cookie}");
    drop(plain);

    // Without the credential the console refuses to start, and says what to set.
    let empty = dir.path().join("no-credentials");
    std::fs::create_dir(&empty).expect("dir");
    let out = admin(&config, &empty, &["serve"]).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("internal_api_token"), "{err}");

    // HTTPS with a certificate: TLS 1.3, and the cookie is Secure.
    let (ca, cert, key) = test_ca_and_certificate(dir.path());
    let config = write_config(
        dir.path(),
        &cp,
        &format!("  tls_cert: {}\n  tls_key: {}\n", cert.display(), key.display()),
    );
    let tls = serve(&config, &credentials);
    assert!(tls.url.starts_with("https://127.0.0.1:"), "{}", tls.url);
    let root = reqwest::Certificate::from_pem(&std::fs::read(&ca).expect("ca")).expect("pem");
    let client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(root)
        .min_tls_version(reqwest::tls::Version::TLS_1_3)
        .build()
        .expect("client");
    let cookie = sign_in_and_read_workers(&client, &tls.url).await;
    assert!(cookie.contains("; Secure"), "{cookie}");
    let old = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&cert).expect("cert")).expect("pem"),
        )
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .expect("client");
    assert!(old.get(&tls.url).send().await.is_err(), "TLS 1.2 is refused");
    let plain_to_tls = reqwest::Client::new().get(tls.url.replace("https://", "http://")).send().await;
    assert!(plain_to_tls.is_err(), "no plain HTTP on the HTTPS port");
}

#[test]
fn the_unit_loads_the_token_as_a_credential_and_is_hardened_like_the_control_planes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let unit = std::fs::read_to_string(root.join("wisehosting-admin.service")).expect("unit");
    let control_plane = std::fs::read_to_string(root.join("wisehosting.service")).expect("unit");
    let lines: Vec<&str> = unit.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("LoadCredential=internal_api_token:")), "{unit}");
    assert!(lines.contains(&"ExecStart=/usr/local/bin/wisehosting-admin serve"));
    assert!(!lines.iter().any(|l| l.starts_with("LoadCredential=api_server_secret")), "no master secret");
    let section = control_plane.split("# Hardening.").nth(1).expect("hardening section");
    for line in section.lines().take_while(|l| !l.starts_with('[')).filter(|l| l.contains('=')) {
        assert!(lines.contains(&line), "the admin unit lacks {line}");
    }
}
