//! `wh` against a running platform (a real control plane and worker, as `wisehosting dev`
//! runs them), driven as a person would drive it: the binary, an API token, a config home of
//! its own.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::{Value, json};
use wisehosting_testkit::{TestRepo, page_containerfile, spawn_platform};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `wh <args>` with `home` as its config home (and `stdin` on standard input).
async fn wh(home: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Run {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wh"))
        .args(args)
        .env("XDG_CONFIG_HOME", home)
        .env("HOME", home)
        .env_remove("WH_URL")
        .env_remove("WH_TOKEN")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn wh");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.expect("write");
    }
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
        .await
        .expect("wh finished in time")
        .expect("wh ran");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_developer_logs_in_deploys_with_the_live_log_reads_logs_sets_env_and_rolls_back() {
    let (cp, _agent, user) = spawn_platform("wh-cli", "dev@example.com", |_| {}).await;
    let made: Value = user
        .post_json(
            "/api/account/tokens",
            &json!({"name": "laptop", "scopes": ["write"], "expires_in_days": null}),
        )
        .await
        .json()
        .await
        .expect("token");
    let token = made["token"].as_str().expect("token").to_string();
    let home = tempfile::tempdir().expect("home");
    let home = home.path();

    // Before login, and bad logins: one clear line each, and an exit code to branch on.
    let r = wh(home, &["apps"], None).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.starts_with("error: not signed in: run `wh login"), "{}", r.stderr);
    let r = wh(home, &["login", "--url", "not a url", "--token", &token], None).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is not the platform's URL"), "{}", r.stderr);
    let r = wh(home, &["login", "--url", "http://127.0.0.1:1", "--token", &token], None).await;
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("did not answer"), "{}", r.stderr);
    let wrong = format!("wht_{}", "0".repeat(64));
    let r = wh(home, &["login", "--url", &cp.base_url, "--token", &wrong], None).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("refused the token"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
    assert!(!home.join("wisehosting/config.json").exists(), "nothing kept after a refused login");

    // The token on standard input (out of `ps`), kept mode 0600, never printed.
    let r = wh(home, &["login", "--url", &cp.base_url], Some(&format!("{token}\n"))).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("as dev@example.com") && !r.stdout.contains(&token), "{}", r.stdout);
    let kept = home.join("wisehosting/config.json");
    assert_eq!(std::fs::metadata(&kept).expect("kept").permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(home.join("wisehosting")).expect("dir").permissions().mode() & 0o777, 0o700);

    // Create follows the build to running.
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", &page_containerfile("cli-one"))], "v1");
    let r =
        wh(home, &["create", "cli app", "--repo", &repo.url(), "--env", "GREETING=hello-secret-value"], None)
            .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("STEP 1/") && r.stdout.contains("is running"),
        "the live build log: {}",
        r.stdout
    );
    assert!(!r.stdout.contains("hello-secret-value"));
    let first: i64 = r
        .stdout
        .split("deployment #")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .expect("deployment number");

    let r = wh(home, &["apps", "--json"], None).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let apps: Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(
        (apps[0]["name"].as_str(), apps[0]["status"].as_str()),
        (Some("cli app"), Some("running")),
        "{apps}"
    );
    let r = wh(home, &["apps"], None).await;
    assert!(r.stdout.starts_with("NAME") && r.stdout.contains("cli app"), "{}", r.stdout);

    // Env: names only, values never echoed.
    let r = wh(home, &["env", "cli-app", "set", "COLOR=blue", "SIZE=3"], None).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("COLOR, SIZE") && !r.stdout.contains("blue"), "{}", r.stdout);
    let r = wh(home, &["env", "cli-app", "unset", "SIZE"], None).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = wh(home, &["env", "cli-app"], None).await;
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), ["COLOR", "GREETING"], "{}", r.stdout);
    let r = wh(home, &["env", "cli-app", "set", "lower=x"], None).await;
    assert_eq!(r.code, 2, "{}", r.stderr);

    // A second version, followed live by `logs -f` too, and a rollback to the first.
    let mut follower = tokio::process::Command::new(env!("CARGO_BIN_EXE_wh"))
        .args(["logs", "cli-app", "-f", "--tail", "1"])
        .env("XDG_CONFIG_HOME", home)
        .env_remove("WH_URL")
        .env_remove("WH_TOKEN")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("logs -f");
    let followed = follower.stdout.take().expect("stdout");
    repo.commit(&[("Containerfile", &page_containerfile("cli-two"))], "v2");
    let r = wh(home, &["deploy", "cli-app"], None).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("checked out"), "{}", r.stdout);
    let v2 = r.stdout.lines().find(|l| l.starts_with("checked out")).expect("the commit line").to_string();
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(followed).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line == v2 {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true), "`logs -f` streamed the new build's lines as they came");
    drop(follower);
    let r = wh(home, &["logs", "cli-app", "--tail", "50"], None).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("checked out"), "build lines are in the app's log: {}", r.stdout);
    let r = wh(home, &["rollback", "cli-app", &first.to_string()], None).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("no build") && r.stdout.contains("is running"), "{}", r.stdout);

    // A failing build: exit 1 and the reason on one line.
    repo.commit(&[("Containerfile", "FROM localhost/wisehosting/busybox:latest\nRUN exit 3\n")], "broken");
    let r = wh(home, &["deploy", "cli-app"], None).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.starts_with("error: deployment #") && r.stderr.contains("failed"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);

    let r = wh(home, &["deploy", "no-such-app"], None).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no app named \"no-such-app\""), "{}", r.stderr);
    for action in ["restart", "stop", "start"] {
        let r = wh(home, &[action, "cli-app"], None).await;
        assert_eq!(r.code, 0, "{action}: {}", r.stderr);
        assert!(r.stdout.contains("is queued (job "), "{action}: {}", r.stdout);
    }
    let r = wh(home, &["domains", "cli-app", "add", "www.cli-example.org"], None).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("type   TXT") && r.stdout.contains("_wisehosting"),
        "the record to publish: {}",
        r.stdout
    );
    let r = wh(home, &["domains", "cli-app", "--json"], None).await;
    let listed: Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(listed[0]["hostname"], "www.cli-example.org", "{listed}");
    let r = wh(home, &["domains", "cli-app", "verify", "www.cli-example.org"], None).await;
    assert_eq!(r.code, 1, "not in DNS: {}", r.stdout);
    assert!(r.stderr.starts_with("error: ") && r.stderr.lines().count() == 1, "{}", r.stderr);
    let r = wh(home, &["domains", "cli-app", "rm", "www.cli-example.org"], None).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = wh(home, &["open", "cli-app"], None).await;
    assert!(r.stdout.trim().starts_with("http://cli-app."), "{}", r.stdout);
    let r = wh(home, &["completions", "bash"], None).await;
    assert!(r.code == 0 && r.stdout.contains("_wh()"), "{}", r.stderr);

    // The environment overrides the stored login: a revoked or wrong token is refused (3).
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wh"));
    let out =
        cmd.args(["apps"]).env("XDG_CONFIG_HOME", home).env("WH_TOKEN", &wrong).output().await.expect("run");
    assert_eq!(out.status.code(), Some(3));
    let r = wh(home, &["logout"], None).await;
    assert_eq!(r.code, 0);
    assert!(!kept.exists());
}
