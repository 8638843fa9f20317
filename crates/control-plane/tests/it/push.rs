//! Push to deploy (issue 16; SPEC §14.6): real-shaped deliveries of GitHub, GitLab, Bitbucket
//! and Codeberg, signed as each provider signs, through the public receiver to a running
//! deploy of exactly the pushed commit; and everything that must not deploy, each answered
//! with its reason and kept in the app's delivery log.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use wisehosting_testkit::{TestControlPlane, UserSession};

use super::deploy::{LIMIT, containerfile, deploy_and_wait, platform, serves};

/// The hex HMAC-SHA256 a provider sends, computed here independently of the platform.
fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A push of `commit` to `branch` as `provider` shapes it, with its headers signed with
/// `secret`: (headers, body).
fn push_of(
    provider: &str,
    branch: &str,
    commit: &str,
    secret: &str,
    delivery: &str,
) -> (Vec<(&'static str, String)>, Vec<u8>) {
    let body = match provider {
        "bitbucket" => json!({
            "push": {"changes": [{
                "old": {"type": "branch", "name": branch, "target": {"hash": "1".repeat(40)}},
                "new": {"type": "branch", "name": branch, "target": {"hash": commit, "type": "commit"}},
                "created": false, "forced": false, "closed": false
            }]},
            "repository": {"full_name": "team/site", "type": "repository"},
            "actor": {"display_name": "Dev"}
        }),
        "gitlab" => json!({
            "object_kind": "push", "event_name": "push", "before": "1".repeat(40), "after": commit,
            "ref": format!("refs/heads/{branch}"), "checkout_sha": commit, "user_name": "Dev",
            "project": {"path_with_namespace": "team/site"}, "commits": [{"id": commit}], "total_commits_count": 1
        }),
        _ => json!({
            "ref": format!("refs/heads/{branch}"), "before": "1".repeat(40), "after": commit,
            "repository": {"full_name": "team/site", "default_branch": "main"},
            "pusher": {"name": "dev"}, "head_commit": {"id": commit, "message": "a change"}
        }),
    };
    let body = serde_json::to_vec(&body).expect("json");
    let mac = hmac_hex(secret, &body);
    let headers = match provider {
        "github" => vec![
            ("x-github-event", "push".to_string()),
            ("x-hub-signature-256", format!("sha256={mac}")),
            ("x-github-delivery", delivery.to_string()),
        ],
        "codeberg" => vec![
            ("x-gitea-event", "push".to_string()),
            ("x-gitea-signature", mac),
            ("x-gitea-delivery", delivery.to_string()),
        ],
        "gitlab" => vec![
            ("x-gitlab-event", "Push Hook".to_string()),
            ("x-gitlab-token", secret.to_string()),
            ("x-gitlab-event-uuid", delivery.to_string()),
        ],
        _ => vec![
            ("x-event-key", "repo:push".to_string()),
            ("x-hub-signature", format!("sha256={mac}")),
            ("x-request-uuid", delivery.to_string()),
        ],
    };
    (headers, body)
}

async fn deliver(
    cp: &TestControlPlane,
    url: &str,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = cp.client.post(url).header("content-type", "application/json").body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let r = request.send().await.expect("delivery");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

async fn webhook(user: &UserSession, app_id: i64) -> Value {
    let r = user.get(&format!("/api/apps/{app_id}/webhook")).await;
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_from_each_provider_deploys_exactly_the_pushed_commit() {
    let (cp, _agent, user, repo) = platform("push", "pusher@example.com").await;
    repo.commit(&[("Containerfile", &containerfile("first"))], "v1");
    let (app_id, first) =
        deploy_and_wait(&user, json!({ "name": "pushed", "repo_url": repo.url(), "port": 8080 })).await;
    assert_eq!(first["status"], "running", "{first}");
    let hook = webhook(&user, app_id).await;
    let secret = hook["secret"].as_str().expect("secret").to_string();
    for provider in ["github", "gitlab", "bitbucket", "codeberg"] {
        let url = hook["urls"][provider].as_str().expect("url");
        assert!(url.contains(&format!("/v1/webhooks/{provider}/")), "{url}");
        // The pushed commit, then one more on the branch before the delivery arrives: the
        // deploy must build the pushed one.
        repo.commit(&[("Containerfile", &containerfile(&format!("pushed-from-{provider}")))], provider);
        let pushed = repo.head();
        repo.commit(&[("Containerfile", &containerfile("a-later-commit"))], "later");
        let (headers, body) = push_of(provider, "main", &pushed, &secret, &format!("{provider}-delivery-1"));
        let (status, answer) = deliver(&cp, url, &headers, body).await;
        assert_eq!(status, 202, "{provider}: {answer}");
        let id = answer["deployment_id"].as_i64().expect("deployment id");
        let done = user.wait_deployment(id, LIMIT).await;
        assert_eq!(
            (done["status"].as_str(), done["commit"].as_str()),
            (Some("running"), Some(pushed.as_str())),
            "{provider}: {done}"
        );
        assert!(
            serves(&user, app_id, &format!("pushed-from-{provider}")).await,
            "{provider}'s commit serves"
        );
    }
    let log: Value =
        user.get(&format!("/api/apps/{app_id}/webhook/deliveries")).await.json().await.expect("json");
    let rows = log.as_array().expect("rows");
    assert_eq!(rows.len(), 4, "{log}");
    for row in rows {
        assert_eq!(
            (row["verified"].as_bool(), row["outcome"].as_str()),
            (Some(true), Some("deployed")),
            "{row}"
        );
        assert!(row["deployment_id"].is_i64(), "{row}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_that_must_not_deploy_are_answered_with_their_reason_and_logged() {
    let cp = wisehosting_testkit::spawn_control_plane_with(|c| c.single_machine = true).await;
    let user = cp.login("careful@example.com").await;
    let (app_id, _) = user.deploy("guarded", "https://example.com/site.git").await;
    let hook = webhook(&user, app_id).await;
    let secret = hook["secret"].as_str().expect("secret").to_string();
    let github = hook["urls"]["github"].as_str().expect("url").to_string();
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let deployments = || async {
        let list: Value =
            user.get(&format!("/api/apps/{app_id}/deployments")).await.json().await.expect("json");
        list.as_array().map_or(0, Vec::len)
    };
    let before = deployments().await;

    // Every provider: a wrong signature (401, logged unverified), a push to another branch
    // and another event (200 with the reason), then a valid push (202) and the same delivery
    // again (a duplicate that deploys nothing).
    let other_event = |provider: &str| match provider {
        "github" => ("x-github-event", "ping"),
        "gitlab" => ("x-gitlab-event", "Tag Push Hook"),
        "bitbucket" => ("x-event-key", "repo:updated"),
        _ => ("x-gitea-event", "create"),
    };
    for provider in ["github", "gitlab", "bitbucket", "codeberg"] {
        let url = hook["urls"][provider].as_str().expect("url").to_string();
        let (headers, body) = push_of(provider, "main", sha, "not-the-secret", &format!("{provider}-wrong"));
        let (status, answer) = deliver(&cp, &url, &headers, body).await;
        assert_eq!((status, answer["code"].as_str()), (401, Some("bad_signature")), "{provider}: {answer}");

        let (headers, body) = push_of(provider, "feature/x", sha, &secret, &format!("{provider}-branch"));
        let (status, answer) = deliver(&cp, &url, &headers, body).await;
        assert_eq!(status, 200, "{provider}: {answer}");
        assert_eq!(answer["ignored"], "a push to feature/x, not to the app's branch main", "{provider}");

        let (mut headers, body) = push_of(provider, "main", sha, &secret, &format!("{provider}-event"));
        let (name, event) = other_event(provider);
        headers.retain(|(n, _)| *n != name);
        headers.push((name, event.to_string()));
        let (status, answer) = deliver(&cp, &url, &headers, body).await;
        assert_eq!(status, 200, "{provider}: {answer}");
        assert_eq!(answer["ignored"], format!("not a push event ({event})"), "{provider}");

        let deployed_before = deployments().await;
        let (headers, body) = push_of(provider, "main", sha, &secret, &format!("{provider}-once"));
        let (status, answer) = deliver(&cp, &url, &headers, body.clone()).await;
        assert_eq!(status, 202, "{provider}: {answer}");
        let (status, answer) = deliver(&cp, &url, &headers, body).await;
        assert_eq!(
            (status, answer["ignored"].as_str()),
            (200, Some("duplicate")),
            "{provider} replayed: {answer}"
        );
        assert_eq!(deployments().await, deployed_before + 1, "{provider}: one deployment for two deliveries");
    }
    let (mut headers, body) = push_of("github", "main", sha, &secret, "d-unsigned");
    headers.retain(|(n, _)| *n != "x-hub-signature-256");
    assert_eq!(deliver(&cp, &github, &headers, body).await.0, 401, "no signature at all");
    let tag = json!({"ref": "refs/tags/v1.0.0", "after": sha});
    let tag = serde_json::to_vec(&tag).expect("json");
    let tag_headers = vec![
        ("x-github-event", "push".to_string()),
        ("x-hub-signature-256", format!("sha256={}", hmac_hex(&secret, &tag))),
        ("x-github-delivery", "d-tag".to_string()),
    ];
    assert_eq!(deliver(&cp, &github, &tag_headers, tag).await.1["ignored"], "a tag");

    // Auto-deploy off: ignored with that reason, nothing deployed.
    let after_pushes = deployments().await;
    let off = user
        .request(reqwest::Method::PUT, &format!("/api/apps/{app_id}/webhook"))
        .json(&json!({"auto_deploy": false}))
        .send()
        .await
        .expect("put");
    assert_eq!(off.status(), 200);
    let (headers, body) = push_of("gitlab", "main", sha, &secret, "d-off");
    let gitlab = hook["urls"]["gitlab"].as_str().expect("url");
    assert_eq!(deliver(&cp, gitlab, &headers, body).await.1["ignored"], "auto-deploy is off for this app");
    assert_eq!(deployments().await, after_pushes);
    assert_eq!(after_pushes, before + 4, "one deployment per provider's valid push");

    // A rotated secret: the old one signs nothing; the URLs stay.
    let rotated: Value = user
        .post_json(&format!("/api/apps/{app_id}/webhook/rotate"), &json!({}))
        .await
        .json()
        .await
        .expect("json");
    assert_ne!(rotated["secret"], hook["secret"]);
    assert_eq!(rotated["urls"], hook["urls"]);
    let (headers, body) = push_of("github", "main", sha, &secret, "d-old-secret");
    assert_eq!(deliver(&cp, &github, &headers, body).await.0, 401);

    // Unknown webhooks and providers are 404.
    let unknown = github.replace("/github/", "/sourcehut/");
    assert_eq!(deliver(&cp, &unknown, &[], b"{}".to_vec()).await.0, 404);
    let other = format!("{}{}", &github[..github.len() - 32], "0".repeat(32));
    assert_eq!(deliver(&cp, &other, &[], b"{}".to_vec()).await.0, 404);

    // The log holds every delivery with what came of it, newest first.
    let log: Value =
        user.get(&format!("/api/apps/{app_id}/webhook/deliveries")).await.json().await.expect("json");
    let outcomes: Vec<(bool, String)> = log
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["verified"].as_bool().unwrap_or(false), r["outcome"].as_str().unwrap_or("").to_string()))
        .collect();
    assert!(outcomes.iter().any(|(v, o)| !v && o.contains("does not match")), "{outcomes:?}");
    assert!(outcomes.iter().any(|(v, o)| !v && o.contains("no signature header")), "{outcomes:?}");
    assert!(outcomes.iter().any(|(v, o)| *v && o == "ignored: duplicate"), "{outcomes:?}");
    assert!(outcomes.iter().any(|(v, o)| *v && o == "deployed"), "{outcomes:?}");
    assert_eq!(log[0]["outcome"], "refused: the signature does not match the app's webhook secret");

    // The document describes the log as it is (one schema name per shape: utoipa keeps the
    // last of two same-named schemas, which once made this the outbound webhooks' shape).
    let doc: Value = cp.get_json("/api/openapi.json", 200).await;
    let listed = &doc["paths"]["/api/apps/{id}/webhook/deliveries"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"]["items"]["$ref"];
    let name = listed.as_str().expect("a schema ref").rsplit('/').next().expect("name");
    for field in ["provider", "verified", "outcome", "deployment_id", "received_at"] {
        assert!(doc["components"]["schemas"][name]["properties"][field].is_object(), "{name} lacks {field}");
    }

    // 60 deliveries a minute per address, then 429 with Retry-After.
    let mut limited = None;
    for _ in 0..70 {
        let r = cp.client.post(&github).body("{}").send().await.expect("post");
        if r.status() == 429 {
            limited = r.headers().get("retry-after").map(|v| v.to_str().unwrap_or("").to_string());
            break;
        }
    }
    assert!(limited.is_some_and(|s| !s.is_empty()), "the per-address limit holds");
}
