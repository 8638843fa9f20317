//! The OpenAPI document (served, complete, errors described) and tenant isolation over every
//! route it lists (SECURITY-TESTS T08).

use serde_json::{Value, json};
use wisehosting_proto::job::GitProvider;
use wisehosting_testkit::{UserSession, spawn_control_plane_with};

#[tokio::test]
async fn the_openapi_document_is_3_1_lists_every_api_route_and_describes_every_error() {
    let cp = spawn_control_plane_with(|c| c.single_machine = true).await;
    let doc: Value = cp.get_json("/api/openapi.json", 200).await;
    assert!(doc["openapi"].as_str().unwrap_or_default().starts_with("3.1"), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/api/me", "get"),
        ("/api/plans", "get"),
        ("/api/deploy", "post"),
        ("/api/apps/{id}", "delete"),
        ("/api/apps/{id}/env", "put"),
        ("/api/apps/{id}/domains/{hostname}/verify", "post"),
        ("/api/auth/google/callback", "get"),
        ("/api/auth/totp", "post"),
        ("/api/account/tokens", "post"),
        ("/api/account/audit", "get"),
        ("/api/apps/{id}/stats", "get"),
        ("/api/apps/{id}/alert-rules", "post"),
        ("/api/alerts/{id}/acknowledge", "post"),
        ("/api/webhooks/{id}/deliveries/{did}/redeliver", "post"),
        ("/api/usage", "get"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} is documented");
    }
    let mut operation_ids = std::collections::HashSet::new();
    for (path, item) in paths {
        assert!(path.starts_with("/api/"), "{path}");
        for (method, operation) in item.as_object().expect("path item") {
            // Generated clients key operations by id: two handlers of one name would collide.
            let id = operation["operationId"].as_str().unwrap_or_default().to_string();
            assert!(
                !id.is_empty() && operation_ids.insert(id.clone()),
                "{method} {path}: operationId {id:?} is unique"
            );
            let default = &operation["responses"]["default"]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(default, "#/components/schemas/ErrorBody", "{method} {path}: errors are described");
        }
    }
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["required"], json!(["code", "message"]), "{error}");
    assert!(doc["components"]["securitySchemes"]["token"].is_object());
    // The reference page is served from vendored assets: no script from anywhere else.
    let page = cp.client.get(cp.url("/api/docs/")).send().await.expect("docs");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("swagger"), "{html}");
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"), "no CDN: {html}");
    // SPEC §14.1 names it `/api/docs`: that address leads to the page too.
    let bare = cp.client.get(cp.url("/api/docs")).send().await.expect("docs");
    assert_eq!(bare.status(), 200, "{}", bare.url());
    assert!(bare.text().await.expect("html").contains("swagger"));
    let bundle = cp.client.get(cp.url("/api/docs/swagger-ui-bundle.js")).send().await.expect("bundle");
    assert_eq!(bundle.status(), 200, "the bundle is served from the binary");
}

/// What user B owns, for user A to try.
struct Victim {
    user: UserSession,
    email: String,
    app_id: i64,
    slug: String,
    deployment_id: i64,
    hostname: String,
    session_id: i64,
    token_id: i64,
    token_name: String,
    alert_id: i64,
    webhook_id: i64,
    delivery_id: i64,
    rule_id: i64,
}

/// `path` with B's ids in place of its parameters; a parameter this test does not know fails
/// it, so a new route must come with its case.
fn with_victims_ids(path: &str, b: &Victim) -> String {
    let id = if path.starts_with("/api/apps/{id}") {
        b.app_id
    } else if path.starts_with("/api/deployments/{id}") {
        b.deployment_id
    } else if path.starts_with("/api/account/sessions/{id}") {
        b.session_id
    } else if path.starts_with("/api/account/tokens/{id}") {
        b.token_id
    } else if path.starts_with("/api/alerts/{id}") {
        b.alert_id
    } else if path.starts_with("/api/webhooks/{id}") {
        b.webhook_id
    } else {
        assert!(!path.contains("{id}"), "no T08 case for {path}: say whose {{id}} it takes");
        0
    };
    let filled = path
        .replace("{id}", &id.to_string())
        .replace("{hostname}", &b.hostname)
        .replace("{rid}", &b.rule_id.to_string())
        .replace("{did}", &b.delivery_id.to_string())
        // B's linked account: A's requests reach only A's own link (none).
        .replace("{provider}", "github")
        .replace("{owner}", "bee-login")
        .replace("{name}", "bees-repo");
    assert!(!filled.contains('{'), "no T08 case for the parameters of {path}");
    filled
}

#[tokio::test]
async fn every_route_of_the_document_called_with_another_users_ids_answers_404_with_none_of_their_data() {
    let github = wisehosting_testkit::FakeGitProvider::start(GitProvider::Github, "bee-login").await;
    github.add_repo(wisehosting_testkit::FakeRepo {
        full_name: "bee-login/bees-repo".into(),
        clone_url: "https://example.com/bee-login/bees-repo.git".into(),
        private: true,
        default_branch: "main".into(),
    });
    let cp = spawn_control_plane_with(|c| {
        c.single_machine = true;
        c.api_server.public_url = Some(crate::gitlink::PUBLIC_URL.into());
        github.configure(c);
    })
    .await;
    let b_user = cp.login("bee@example.com").await;
    crate::gitlink::link(&cp, &b_user, GitProvider::Github).await;
    let (app_id, deployment_id) = b_user.deploy("bees-private-app", "https://example.com/r.git").await;
    let hostname = "bees.example.org".to_string();
    let added =
        b_user.post_json(&format!("/api/apps/{app_id}/domains"), &json!({ "hostname": hostname })).await;
    assert_eq!(added.status(), 201);
    let token: Value = b_user
        .post_json(
            "/api/account/tokens",
            &json!({"name": "bees-ci-token", "scopes": ["write"], "expires_in_days": null}),
        )
        .await
        .json()
        .await
        .expect("json");
    let sessions: Value = b_user.get("/api/account/sessions").await.json().await.expect("json");
    // A webhook, and an alert raised the way the platform raises one (which queues a delivery).
    let hook: Value = b_user
        .post_json(
            "/api/webhooks",
            &json!({"url": "https://93.184.216.34/bees-hook", "events": ["alert.fired"]}),
        )
        .await
        .json()
        .await
        .expect("json");
    let webhook_id = hook["id"].as_i64().expect("webhook id");
    let me: Value = b_user.get("/api/me").await.json().await.expect("json");
    let mut tx = cp.db.begin().await.expect("tx");
    let new = wisehosting_control_plane::store::alerts::NewAlert {
        user_id: me["user"]["id"].as_i64().expect("user id"),
        app_id: Some(app_id),
        kind: wisehosting_control_plane::domain::AlertKind::DeploymentFailed,
        message: "bees-private-app: deployment #1 failed",
        at: chrono::Utc::now(),
    };
    let alert = wisehosting_control_plane::observe::alerts::raise_for(
        &mut tx,
        wisehosting_control_plane::observe::notify::Channels::default(),
        &new,
    )
    .await
    .expect("raise")
    .expect("a new alert");
    tx.commit().await.expect("commit");
    let deliveries: Value =
        b_user.get(&format!("/api/webhooks/{webhook_id}/deliveries")).await.json().await.expect("json");
    let rules: Value =
        b_user.get(&format!("/api/apps/{app_id}/alert-rules")).await.json().await.expect("json");
    let b = Victim {
        email: "bee@example.com".into(),
        app_id,
        slug: "bees-private-app".into(),
        deployment_id,
        hostname,
        session_id: sessions[0]["id"].as_i64().expect("session id"),
        token_id: token["id"].as_i64().expect("token id"),
        token_name: "bees-ci-token".into(),
        alert_id: alert.id,
        webhook_id,
        delivery_id: deliveries[0]["id"].as_i64().expect("delivery id"),
        rule_id: rules[0]["id"].as_i64().expect("rule id"),
        user: b_user,
    };

    let a = cp.login("ant@example.com").await;
    let a_token: Value = a
        .post_json(
            "/api/account/tokens",
            &json!({"name": "ants", "scopes": ["write"], "expires_in_days": null}),
        )
        .await
        .json()
        .await
        .expect("json");
    let a_token = a_token["token"].as_str().expect("token").to_string();
    let doc: Value = cp.get_json("/api/openapi.json", 200).await;
    let plain = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut tried = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.contains('{') {
            continue;
        }
        let url = with_victims_ids(path, &b);
        for method in item.as_object().expect("item").keys() {
            let method: reqwest::Method = method.to_uppercase().parse().expect("method");
            for by_token in [false, true] {
                // Redirects are answers here, not followed.
                let mut request = if by_token {
                    plain.request(method.clone(), cp.url(&url)).bearer_auth(&a_token)
                } else {
                    plain.request(method.clone(), cp.url(&url)).header("cookie", &a.cookie)
                };
                if method == reqwest::Method::POST || method == reqwest::Method::PUT {
                    request = request.json(&json!({}));
                }
                let response = request.send().await.expect("request");
                let status = response.status().as_u16();
                // Beginning or ending a link of A's own account redirects (to the provider, or
                // to the account page with an error): no id of B's is involved.
                let own_link = url.ends_with("/link") || url.ends_with("/callback");
                let location =
                    response.headers().get("location").map(|l| format!("{l:?}")).unwrap_or_default();
                let text = format!("{location} {}", response.text().await.unwrap_or_default());
                let allowed = if own_link && !by_token { vec![302] } else { vec![403, 404] };
                assert!(allowed.contains(&status), "{method} {url} (token: {by_token}) → {status} {text}");
                for secret in [
                    &b.email,
                    &b.slug,
                    &b.token_name,
                    &b.hostname,
                    &"bees-hook".to_string(),
                    &"bee-login".to_string(),
                ] {
                    assert!(!text.contains(secret.as_str()), "{method} {url} leaks {secret}: {text}");
                }
                tried += 1;
            }
        }
    }
    assert!(tried >= 30, "every route with an id was tried ({tried})");
    // B's things are untouched.
    assert_eq!(b.user.get(&format!("/api/apps/{}", b.app_id)).await.status(), 200);
    assert_eq!(b.user.get(&format!("/api/apps/{}/domains/{}", b.app_id, b.hostname)).await.status(), 200);
    let tokens: Value = b.user.get("/api/account/tokens").await.json().await.expect("json");
    assert_eq!(tokens.as_array().map(Vec::len), Some(1), "B's token lives");
    let sessions: Value = b.user.get("/api/account/sessions").await.json().await.expect("json");
    assert_eq!(sessions.as_array().map(Vec::len), Some(1), "B's session lives");
    let deployment: Value =
        b.user.get(&format!("/api/deployments/{}", b.deployment_id)).await.json().await.expect("json");
    assert_ne!(deployment["status"], "cancelled", "B's deployment was not cancelled");
    let firing: Value = b.user.get("/api/alerts?status=firing").await.json().await.expect("json");
    assert_eq!(firing[0]["id"], b.alert_id, "B's alert is neither acknowledged nor resolved");
    let hooks: Value = b.user.get("/api/webhooks").await.json().await.expect("json");
    assert_eq!(hooks[0]["id"], b.webhook_id, "B's webhook lives");
    let rules: Value =
        b.user.get(&format!("/api/apps/{}/alert-rules", b.app_id)).await.json().await.expect("json");
    let defaults = wisehosting_control_plane::domain::AlertKind::DEFAULT_RULES.len();
    assert_eq!(rules.as_array().map(Vec::len), Some(defaults), "B's rules live");
    let linked: Value = b.user.get("/api/git/providers").await.json().await.expect("json");
    assert_eq!(linked[0]["login"], "bee-login", "B's linked account lives");
    assert!(github.revocations().is_empty(), "B's token was not revoked");
}

#[test]
fn the_openapi_command_prints_the_document_the_control_plane_serves() {
    let out = super::wisehosting(&["openapi"], &[]);
    assert!(out.status.success(), "{}", super::text(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let served = serde_json::to_value(wisehosting_control_plane::http::openapi()).expect("value");
    assert_eq!(printed, served);
    assert!(printed["paths"]["/api/me"]["get"].is_object());
}
