//! [`FakeCloudflare`]: a local stand-in for Cloudflare's custom-hostnames and DNS-records API
//! (v4), which the control plane's production client talks to unchanged through
//! `cloudflare.api_url`. TXT records it is given are published in a real DNS server,
//! `pebble-challtestsrv` ([`crate::challtestsrv::ChallTestSrv`]), when one is attached: that is
//! where an ACME server looks for DNS-01 answers.
//!
//! It keeps custom hostnames per zone, answers in Cloudflare's envelope
//! (`{"success", "errors", "messages", "result"}`) with its error codes (10000 authentication,
//! 1406 duplicate, 1436 not found), checks the Bearer token, and records every request so a
//! test can assert what was asked. `set_status` moves a hostname along (e.g. to `active`);
//! `fail_next` makes the next call answer a 500.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorized: bool,
}

#[derive(Default)]
struct Inner {
    hostnames: BTreeMap<String, Value>,
    /// DNS records by id: (type, name, content).
    records: BTreeMap<String, (String, String, String)>,
    seen: Vec<Seen>,
    fail_next: bool,
    next_id: u64,
}

#[derive(Clone)]
struct Shared {
    token: String,
    zone: String,
    inner: Arc<Mutex<Inner>>,
    /// challtestsrv's management URL, where TXT records are published.
    publish: Option<String>,
}

pub struct FakeCloudflare {
    pub addr: SocketAddr,
    pub zone_id: String,
    pub token: String,
    shared: Shared,
    stop: CancellationToken,
}

fn envelope_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = json!({ "success": false, "errors": [{ "code": code, "message": message }], "messages": [], "result": null });
    (status, Json(body)).into_response()
}

fn ok(result: Value) -> Response {
    Json(json!({ "success": true, "errors": [], "messages": [], "result": result })).into_response()
}

impl FakeCloudflare {
    pub async fn start() -> FakeCloudflare {
        Self::start_with(None).await
    }

    /// A zone whose TXT records are published in `dns` (for ACME DNS-01).
    pub async fn publishing_to(dns: &crate::challtestsrv::ChallTestSrv) -> FakeCloudflare {
        Self::start_with(Some(dns.management_url())).await
    }

    async fn start_with(publish: Option<String>) -> FakeCloudflare {
        let zone_id = "023e105f4ecef8ad9ca31a8372d0c353".to_string();
        let token = format!("cf-test-token-{}", hex::encode(rand::random::<[u8; 8]>()));
        let shared = Shared { token: token.clone(), zone: zone_id.clone(), inner: Arc::default(), publish };
        let router = axum::Router::new()
            .route("/client/v4/zones/{zone}/custom_hostnames", get(list).post(create))
            .route("/client/v4/zones/{zone}/custom_hostnames/{id}", get(one).delete(one))
            .route("/client/v4/zones/{zone}/dns_records", axum::routing::post(create_record))
            .route("/client/v4/zones/{zone}/dns_records/{id}", axum::routing::delete(delete_record))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let until = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).with_graceful_shutdown(until).await;
        });
        FakeCloudflare { addr, zone_id, token, shared, stop }
    }

    /// What to put in `cloudflare.api_url`.
    pub fn api_url(&self) -> String {
        format!("http://{}/client/v4", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.inner.lock().expect("state").seen.clone()
    }

    /// The custom hostnames the zone holds, by hostname.
    pub fn hostnames(&self) -> Vec<String> {
        let inner = self.shared.inner.lock().expect("state");
        inner.hostnames.values().filter_map(|v| v["hostname"].as_str().map(str::to_string)).collect()
    }

    pub fn set_status(&self, hostname: &str, status: &str, ssl_status: &str) {
        let mut inner = self.shared.inner.lock().expect("state");
        for value in inner.hostnames.values_mut() {
            if value["hostname"] == hostname {
                value["status"] = json!(status);
                value["ssl"]["status"] = json!(ssl_status);
            }
        }
    }

    /// The zone's DNS records: (type, name, content).
    pub fn records(&self) -> Vec<(String, String, String)> {
        self.shared.inner.lock().expect("state").records.values().cloned().collect()
    }

    pub fn fail_next(&self) {
        self.shared.inner.lock().expect("state").fail_next = true;
    }
}

impl Drop for FakeCloudflare {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Records the call; returns the error a real zone would for a bad token or zone, or the
/// injected failure.
fn gate(s: &Shared, method: &Method, path: String, headers: &HeaderMap, zone: &str) -> Option<Response> {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", s.token));
    let mut inner = s.inner.lock().expect("state");
    inner.seen.push(Seen { method: method.to_string(), path, authorized });
    if !authorized {
        return Some(envelope_error(StatusCode::FORBIDDEN, 10000, "Authentication error"));
    }
    if zone != s.zone {
        return Some(envelope_error(StatusCode::NOT_FOUND, 1001, "Invalid zone identifier"));
    }
    if std::mem::take(&mut inner.fail_next) {
        return Some(envelope_error(StatusCode::INTERNAL_SERVER_ERROR, 1000, "Internal error"));
    }
    None
}

async fn create(
    State(s): State<Shared>,
    Path(zone): Path<String>,
    method: Method,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = gate(&s, &method, format!("/zones/{zone}/custom_hostnames"), &headers, &zone) {
        return r;
    }
    let Some(hostname) = body["hostname"].as_str().map(str::to_string) else {
        return envelope_error(StatusCode::BAD_REQUEST, 1411, "Custom hostname is required.");
    };
    let mut inner = s.inner.lock().expect("state");
    if inner.hostnames.values().any(|v| v["hostname"] == hostname) {
        return envelope_error(StatusCode::CONFLICT, 1406, "Duplicate custom hostname found.");
    }
    inner.next_id += 1;
    let id = format!("0d89c70d-ad9f-4843-b99f-{:012x}", inner.next_id);
    let value = json!({
        "id": id,
        "hostname": hostname,
        "status": "pending",
        "ssl": {
            "status": "pending_validation",
            "method": body["ssl"]["method"],
            "type": body["ssl"]["type"],
            "validation_records": [{ "txt_name": format!("_acme-challenge.{hostname}"), "txt_value": format!("ca3-{}", inner.next_id) }]
        },
        "ownership_verification": {
            "type": "txt",
            "name": format!("_cf-custom-hostname.{hostname}"),
            "value": format!("5cc07c04-ea62-4a5a-95f0-{:012x}", inner.next_id)
        },
        "created_at": "2026-11-24T00:00:00Z"
    });
    inner.hostnames.insert(id, value.clone());
    ok(value)
}

async fn list(
    State(s): State<Shared>,
    Path(zone): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = gate(&s, &method, format!("/zones/{zone}/custom_hostnames"), &headers, &zone) {
        return r;
    }
    let inner = s.inner.lock().expect("state");
    ok(Value::Array(inner.hostnames.values().cloned().collect()))
}

/// `GET` (read) or `DELETE` (remove) of one custom hostname.
async fn one(
    State(s): State<Shared>,
    Path((zone, id)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = gate(&s, &method, format!("/zones/{zone}/custom_hostnames/{id}"), &headers, &zone) {
        return r;
    }
    let mut inner = s.inner.lock().expect("state");
    let found = if method == Method::DELETE {
        inner.hostnames.remove(&id).map(|_| json!({ "id": id }))
    } else {
        inner.hostnames.get(&id).cloned()
    };
    match found {
        Some(value) => ok(value),
        None => envelope_error(StatusCode::NOT_FOUND, 1436, "The custom hostname was not found."),
    }
}

/// Publishes (`set-txt`) or withdraws (`clear-txt`) a TXT record in challtestsrv.
async fn publish(s: &Shared, what: &str, body: Value) {
    if let Some(url) = &s.publish {
        let client = reqwest::Client::builder().no_proxy().build().expect("client");
        let sent = client.post(format!("{url}/{what}")).json(&body).send().await.expect("challtestsrv");
        assert!(sent.status().is_success(), "challtestsrv {what}: {}", sent.status());
    }
}

async fn create_record(
    State(s): State<Shared>,
    Path(zone): Path<String>,
    method: Method,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = gate(&s, &method, format!("/zones/{zone}/dns_records"), &headers, &zone) {
        return r;
    }
    let text = |k: &str| body[k].as_str().map(str::to_string);
    let (Some(kind), Some(name), Some(content)) = (text("type"), text("name"), text("content")) else {
        return envelope_error(StatusCode::BAD_REQUEST, 9000, "DNS name, type and content are required.");
    };
    let id = {
        let mut inner = s.inner.lock().expect("state");
        inner.next_id += 1;
        let id = format!("372e67954025e0ba6aaa6d586b9e0b{:02x}", inner.next_id % 256);
        inner.records.insert(id.clone(), (kind.clone(), name.clone(), content.clone()));
        id
    };
    if kind == "TXT" {
        publish(&s, "set-txt", json!({ "host": format!("{name}."), "value": content })).await;
    }
    ok(json!({ "id": id, "type": kind, "name": name, "content": content, "ttl": body["ttl"] }))
}

async fn delete_record(
    State(s): State<Shared>,
    Path((zone, id)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = gate(&s, &method, format!("/zones/{zone}/dns_records/{id}"), &headers, &zone) {
        return r;
    }
    let removed = s.inner.lock().expect("state").records.remove(&id);
    match removed {
        Some((kind, name, _)) => {
            if kind == "TXT" {
                publish(&s, "clear-txt", json!({ "host": format!("{name}.") })).await;
            }
            ok(json!({ "id": id }))
        }
        None => envelope_error(StatusCode::NOT_FOUND, 81044, "Record does not exist."),
    }
}
