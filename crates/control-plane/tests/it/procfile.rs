//! A repository's Procfile (issue 17): `web:` is the command the app starts with (kept with
//! the image, so restarts use it too); `release:` runs once in the new image before the
//! switch, and when it fails the deploy fails and the previous version keeps serving.

use serde_json::json;
use wisehosting_testkit::eventually;

use super::deploy::{LIMIT, POLL, app, deploy_and_wait, fetch, platform};

const CONTAINERFILE: &str = "FROM localhost/wisehosting/busybox:latest\nRUN mkdir -p /www /alt && echo from-the-containerfile > /www/index.html && echo from-the-procfile > /alt/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_procfile_starts_the_app_with_its_web_command_and_a_failing_release_keeps_the_old_version() {
    let (_cp, _agent, user, repo) = platform("procfile", "procfile@example.com").await;
    repo.commit(
        &[
            ("Containerfile", CONTAINERFILE),
            (
                "Procfile",
                "# processes\nweb: httpd -f -p 8080 -h /alt\nrelease: echo migrating-now\nworker: sleep 1\n",
            ),
        ],
        "v1",
    );
    let (app_id, d) =
        deploy_and_wait(&user, json!({ "name": "procs", "repo_url": repo.url(), "port": 8080 })).await;
    assert_eq!(d["status"], "running", "{d}");
    let log: serde_json::Value =
        user.get(&format!("/api/deployments/{}/log", d["id"])).await.json().await.expect("log");
    let log = log["log"].as_str().unwrap_or("");
    assert!(
        log.contains("release: running `echo migrating-now`") && log.contains("\nmigrating-now"),
        "{log}"
    );
    let serves = |text: &'static str| {
        let user = &user;
        async move {
            eventually(LIMIT, POLL, || async {
                match app(user, app_id).await["host_port"].as_i64() {
                    Some(port) => fetch(port).await.contains(text),
                    None => false,
                }
            })
            .await
        }
    };
    assert!(serves("from-the-procfile").await, "the web: command, not the Containerfile's CMD");

    // A restart starts the same command (it travels with the image).
    let r = user.post_json(&format!("/api/apps/{app_id}/restart"), &json!({})).await;
    assert_eq!(r.status(), 202);
    let restarted = eventually(LIMIT, POLL, || async {
        let a = app(&user, app_id).await;
        a["status"] == "running" && a["host_port"] != d["host_port"]
    })
    .await;
    assert!(restarted, "the restart put a new container on a new port");
    assert!(serves("from-the-procfile").await, "after the restart too");

    // A release that fails: the deploy fails, the old version keeps serving.
    repo.commit(
        &[("Procfile", "web: httpd -f -p 8080 -h /www\nrelease: echo about-to-fail; exit 3\n")],
        "v2",
    );
    let failed = user.wait_deployment(user.redeploy(app_id).await, LIMIT).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap_or("");
    assert!(
        error.contains("the release command") && error.contains("previous version keeps serving"),
        "{error}"
    );
    assert!(serves("from-the-procfile").await, "v1 still serves");
    assert_eq!(app(&user, app_id).await["current_deployment_id"], d["id"]);
}
