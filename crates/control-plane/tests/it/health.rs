//! An app's health check (issue 17): a path other than `/` must answer 2xx or 3xx within the
//! app's time before traffic moves to a new version; failing it fails the deploy and the old
//! version keeps serving.

use serde_json::{Value, json};
use wisehosting_testkit::eventually;

use super::deploy::{LIMIT, POLL, app, deploy_and_wait, fetch, platform};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_check_path_must_answer_2xx_or_3xx_in_time_and_a_failing_one_keeps_the_old_version() {
    let (_cp, _agent, user, repo) = platform("health", "health@example.com").await;
    repo.commit(&[("Containerfile", &wisehosting_testkit::page_containerfile("version one page"))], "v1");

    // Refused at their field.
    for (body, field) in [
        (json!({"health_check_path": "healthz"}), "health_check_path"),
        (json!({"health_check_path": "/a b"}), "health_check_path"),
        (json!({"health_check_timeout_secs": 0}), "health_check_timeout_secs"),
        (json!({"health_check_timeout_secs": 601}), "health_check_timeout_secs"),
    ] {
        let mut request = json!({ "name": "refused", "repo_url": repo.url(), "port": 8080 });
        request.as_object_mut().expect("object").extend(body.as_object().expect("object").clone());
        let r = user.post_json("/api/deploy", &request).await;
        assert_eq!(r.status(), 422, "{request}");
        let answer: Value = r.json().await.expect("json");
        assert!(answer["message"].as_str().unwrap_or("").starts_with(field), "{answer}");
    }

    // A path the app does not serve (busybox httpd answers 404): not healthy, with the reason.
    let (app_id, d) = deploy_and_wait(
        &user,
        json!({ "name": "checked", "repo_url": repo.url(), "port": 8080,
                "health_check_path": "/healthz", "health_check_timeout_secs": 2 }),
    )
    .await;
    assert_eq!(d["status"], "failed", "{d}");
    let error = d["error"].as_str().unwrap_or("");
    assert!(
        error.contains("no answer 2xx or 3xx at /healthz") && error.contains("the last answer was 404"),
        "{error}"
    );

    // A path it serves: the deploy runs.
    let r = user
        .request(reqwest::Method::PUT, &format!("/api/apps/{app_id}/health-check"))
        .json(&json!({ "path": "/index.html", "timeout_secs": 30 }))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    let shown: Value = r.json().await.expect("json");
    assert_eq!(
        (shown["health_check_path"].as_str(), shown["health_check_timeout_secs"].as_i64()),
        (Some("/index.html"), Some(30))
    );
    let ok = user.wait_deployment(user.redeploy(app_id).await, LIMIT).await;
    assert_eq!(ok["status"], "running", "{ok}");

    // A new version that fails its check never takes the traffic.
    let r = user
        .request(reqwest::Method::PUT, &format!("/api/apps/{app_id}/health-check"))
        .json(&json!({ "path": "/not-there", "timeout_secs": 2 }))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    repo.commit(&[("Containerfile", &wisehosting_testkit::page_containerfile("version two page"))], "v2");
    let failed = user.wait_deployment(user.redeploy(app_id).await, LIMIT).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let port = app(&user, app_id).await["host_port"].as_i64().expect("port");
    let serving = eventually(LIMIT, POLL, || async { fetch(port).await.contains("version one page") }).await;
    assert!(serving, "the old version keeps serving");
    assert_eq!(app(&user, app_id).await["current_deployment_id"], ok["id"]);
}
