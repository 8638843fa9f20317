//! `wisehosting dev`: the private cluster, secrets kept across runs, nothing left behind.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{text, wisehosting};

struct DevRun {
    child: Child,
    url: String,
    banner: String,
}

/// Starts `wisehosting dev` and reads its banner up to "Press Ctrl-C".
fn start_dev(data_dir: &Path) -> DevRun {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wisehosting"))
        .args(["dev", "--port", "0", "--data-dir"])
        .arg(data_dir)
        .env_remove("CONFIG_PATH")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn dev");
    let stdout = child.stdout.take().expect("stdout");
    let mut banner = String::new();
    let mut url = String::new();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("line");
        banner.push_str(&line);
        banner.push('\n');
        if let Some(rest) = line.trim().strip_prefix("Dashboard:") {
            url = rest.trim().trim_end_matches('/').to_string();
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    assert!(!url.is_empty(), "no dashboard URL in: {banner}");
    // Keep draining stdout so the process never writes into a closed pipe.
    std::thread::spawn(move || for _ in lines {});
    DevRun { child, url, banner }
}

fn postgres_processes_of(data_dir: &Path) -> Vec<String> {
    let needle = data_dir.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("postgres") && c.contains(&needle) && !c.contains("wisehosting"))
        .collect()
}

fn interrupt_and_wait(mut run: DevRun) -> std::process::ExitStatus {
    kill(Pid::from_raw(run.child.id() as i32), Signal::SIGINT).expect("SIGINT");
    run.child.wait().expect("wait")
}

#[tokio::test]
async fn dev_serves_health_and_ready_then_ctrl_c_leaves_no_postgres_and_a_second_run_reuses_the_data() {
    let dir = tempfile::Builder::new().prefix("whdev").tempdir_in("/tmp").expect("tempdir");
    let data = dir.path().join("data");
    let client =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client");

    let run = start_dev(&data);
    assert!(run.banner.contains("created"), "{}", run.banner);
    assert!(
        run.banner.contains("Worker:       local (id 1), online"),
        "the local worker shows online: {}",
        run.banner
    );
    for path in ["/health", "/ready"] {
        let status = client.get(format!("{}{path}", run.url)).send().await.expect("GET").status();
        assert_eq!(status, 200, "{path}");
    }
    assert!(!postgres_processes_of(&data).is_empty(), "the private cluster runs while dev runs");
    let secret_path = data.join("secrets/api_server_secret");
    let secret = std::fs::read_to_string(&secret_path).expect("secret kept");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&secret_path).expect("meta").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // The admin console's config: the database and the internal API that answers its token.
    let admin_path = data.join("admin.yaml");
    assert!(run.banner.contains(&format!("CONFIG_PATH={}", admin_path.display())), "{}", run.banner);
    let meta = std::fs::metadata(&admin_path).expect("admin.yaml written");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o600);
    let admin: yaml_serde::Value =
        yaml_serde::from_str(&std::fs::read_to_string(&admin_path).expect("read")).expect("yaml");
    let token = admin["internal_api"]["token"].as_str().expect("token").to_string();
    let internal = admin["admin"]["internal_api_url"].as_str().expect("url").to_string();
    let stats = format!("{internal}/internal-api/dashboard-stats");
    assert_eq!(client.get(&stats).bearer_auth(&token).send().await.expect("GET").status(), 200);
    assert_eq!(client.get(&stats).send().await.expect("GET").status(), 401);

    let status = interrupt_and_wait(run);
    assert!(status.success(), "exit {status}");
    assert!(
        postgres_processes_of(&data).is_empty(),
        "postgres left behind: {:?}",
        postgres_processes_of(&data)
    );

    let run = start_dev(&data);
    assert!(run.banner.contains("reused"), "{}", run.banner);
    assert!(run.banner.contains("local (id 1), online"), "the same local worker again: {}", run.banner);
    let status = client.get(format!("{}/ready", run.url)).send().await.expect("GET").status();
    assert_eq!(status, 200);
    assert_eq!(
        std::fs::read_to_string(&secret_path).expect("secret"),
        secret,
        "the secret is kept across runs"
    );
    assert!(interrupt_and_wait(run).success());
    assert!(postgres_processes_of(&data).is_empty());
}

#[test]
fn a_data_dir_that_cannot_be_created_is_one_clear_error() {
    let file = tempfile::NamedTempFile::new().expect("file");
    let under_a_file = file.path().join("data");
    let out = wisehosting(&["dev", "--port", "0", "--data-dir", under_a_file.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("is not writable") && err.contains("--data-dir"), "{err}");
}

#[test]
fn missing_postgres_binaries_name_the_package_to_install() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = wisehosting(
        &["dev", "--port", "0", "--data-dir", dir.path().join("d").to_str().unwrap()],
        &[("WH_PG_BINDIR", "/nonexistent/bin")],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("apt-get install postgresql-15"), "{err}");
    assert!(!dir.path().join("d").exists(), "no partial state left behind");
}
