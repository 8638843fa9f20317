//! Cloudflare for SaaS: custom hostnames of one zone (`cloudflare.zone_id`), created when a
//! user adds a custom domain, read back for their status, deleted with the domain; and the
//! zone's TXT records that answer ACME DNS-01 challenges for the platform's wildcard
//! certificate (`POST/DELETE /zones/{zone}/dns_records[/{id}]`).
//!
//! The client speaks Cloudflare's v4 API unchanged (`POST/GET/DELETE
//! /zones/{zone}/custom_hostnames[/{id}]`, the `{"success", "errors", "result"}` envelope);
//! tests point `cloudflare.api_url` at a local stand-in. The API token travels only in the
//! `Authorization` header (marked sensitive); errors name Cloudflare's codes and messages,
//! never the token. No proxy, no redirects, a 10 s deadline per call.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wisehosting_crypto::Secret;

use crate::config::CloudflareConfig;

#[derive(Debug, thiserror::Error)]
pub enum CloudflareError {
    #[error("Cloudflare refused the request ({status}): {detail}")]
    Refused { status: u16, detail: String },
    #[error("Cloudflare could not be reached: {0}; try again in a minute")]
    Unreachable(String),
    #[error("Cloudflare sent an answer this client does not understand: {0}")]
    Malformed(String),
}

/// A DNS record Cloudflare wants published before it serves the hostname.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ValidationRecord {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub value: String,
}

/// What the control plane keeps of a custom hostname.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomHostname {
    pub id: String,
    pub status: String,
    pub ssl_status: Option<String>,
    pub records: Vec<ValidationRecord>,
}

const CUSTOM_HOSTNAMES: &str = "custom_hostnames";
const DNS_RECORDS: &str = "dns_records";

#[derive(Clone)]
pub struct Cloudflare {
    http: reqwest::Client,
    base: String,
    zone_id: String,
    token: Secret,
}

impl std::fmt::Debug for Cloudflare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloudflare")
            .field("base", &self.base)
            .field("zone_id", &self.zone_id)
            .finish_non_exhaustive()
    }
}

impl Cloudflare {
    /// The client for `config`, or `None` when Cloudflare for SaaS is not configured.
    pub fn from_config(config: &CloudflareConfig) -> Result<Option<Cloudflare>, CloudflareError> {
        if !config.enabled() {
            return Ok(None);
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| CloudflareError::Unreachable(e.without_url().to_string()))?;
        Ok(Some(Cloudflare {
            http,
            base: config.api_url.trim_end_matches('/').to_string(),
            zone_id: config.zone_id.clone(),
            token: config.api_token.clone(),
        }))
    }

    fn url(&self, resource: &str, id: Option<&str>) -> String {
        match id {
            Some(id) => format!("{}/zones/{}/{resource}/{id}", self.base, self.zone_id),
            None => format!("{}/zones/{}/{resource}", self.base, self.zone_id),
        }
    }

    /// Registers `hostname` with TXT (DCV) validation.
    pub async fn create(&self, hostname: &str) -> Result<CustomHostname, CloudflareError> {
        let body = json!({ "hostname": hostname, "ssl": { "method": "txt", "type": "dv" } });
        let result = self.call(reqwest::Method::POST, CUSTOM_HOSTNAMES, None, Some(body)).await?;
        parse_custom_hostname(&result)
    }

    pub async fn get(&self, id: &str) -> Result<CustomHostname, CloudflareError> {
        let result = self.call(reqwest::Method::GET, CUSTOM_HOSTNAMES, Some(id), None).await?;
        parse_custom_hostname(&result)
    }

    /// Deletes a custom hostname; one already gone counts as deleted.
    pub async fn delete(&self, id: &str) -> Result<(), CloudflareError> {
        self.delete_in(CUSTOM_HOSTNAMES, id).await
    }

    /// Publishes a TXT record in the zone (an ACME DNS-01 answer): the record's id.
    pub async fn create_txt(&self, name: &str, content: &str) -> Result<String, CloudflareError> {
        let body = json!({ "type": "TXT", "name": name, "content": content, "ttl": 60 });
        let result = self.call(reqwest::Method::POST, DNS_RECORDS, None, Some(body)).await?;
        result["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| CloudflareError::Malformed("a DNS record without an id".into()))
    }

    /// Deletes a DNS record; one already gone counts as deleted.
    pub async fn delete_dns_record(&self, id: &str) -> Result<(), CloudflareError> {
        self.delete_in(DNS_RECORDS, id).await
    }

    async fn delete_in(&self, resource: &str, id: &str) -> Result<(), CloudflareError> {
        match self.call(reqwest::Method::DELETE, resource, Some(id), None).await {
            Ok(_) | Err(CloudflareError::Refused { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        resource: &str,
        id: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value, CloudflareError> {
        if id.is_some_and(|id| id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')) {
            return Err(CloudflareError::Malformed("an object id that is not an id".into()));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.token.expose())).map_err(|_| {
            CloudflareError::Malformed("the API token has characters a header cannot carry".into())
        })?;
        auth.set_sensitive(true);
        let mut request = self.http.request(method, self.url(resource, id)).header(AUTHORIZATION, auth);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response =
            request.send().await.map_err(|e| CloudflareError::Unreachable(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let text =
            response.text().await.map_err(|e| CloudflareError::Unreachable(e.without_url().to_string()))?;
        let envelope: Value = serde_json::from_str(&text)
            .map_err(|_| CloudflareError::Malformed(format!("HTTP {status} with a body that is not JSON")))?;
        if !(200..300).contains(&status) || envelope["success"] != Value::Bool(true) {
            return Err(CloudflareError::Refused { status, detail: errors_of(&envelope) });
        }
        Ok(envelope["result"].clone())
    }
}

/// `code: message` of each error of Cloudflare's envelope.
fn errors_of(envelope: &Value) -> String {
    let list: Vec<String> = envelope["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e["code"].as_i64().map(|c| format!("[{c}]")).unwrap_or_default(),
                        e["message"].as_str().unwrap_or("")
                    )
                })
                .map(|s| s.trim().chars().take(300).collect())
                .collect()
        })
        .unwrap_or_default();
    if list.is_empty() { "no reason given".into() } else { list.join("; ") }
}

fn parse_custom_hostname(result: &Value) -> Result<CustomHostname, CloudflareError> {
    let id = result["id"]
        .as_str()
        .ok_or_else(|| CloudflareError::Malformed("a custom hostname without an id".into()))?;
    let text = |v: &Value| v.as_str().map(str::to_string);
    let mut records = Vec::new();
    let ownership = &result["ownership_verification"];
    if let (Some(name), Some(value)) = (text(&ownership["name"]), text(&ownership["value"])) {
        let kind = text(&ownership["type"]).unwrap_or_else(|| "txt".into()).to_ascii_uppercase();
        records.push(ValidationRecord { kind, name, value });
    }
    let ssl = &result["ssl"];
    let mut ssl_records: Vec<ValidationRecord> = ssl["validation_records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some(ValidationRecord {
                kind: "TXT".into(),
                name: text(&r["txt_name"])?,
                value: text(&r["txt_value"])?,
            })
        })
        .collect();
    if ssl_records.is_empty()
        && let (Some(name), Some(value)) = (text(&ssl["txt_name"]), text(&ssl["txt_value"]))
    {
        ssl_records.push(ValidationRecord { kind: "TXT".into(), name, value });
    }
    records.extend(ssl_records);
    Ok(CustomHostname {
        id: id.to_string(),
        status: text(&result["status"]).unwrap_or_else(|| "pending".into()),
        ssl_status: text(&ssl["status"]),
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_custom_hostname_yields_its_ownership_and_certificate_records() {
        let result = json!({
            "id": "0d89c70d-ad9f-4843-b99f-6cc0252067e9",
            "hostname": "shop.example.com",
            "status": "pending",
            "ssl": {"status": "pending_validation", "method": "txt", "type": "dv",
                    "validation_records": [{"txt_name": "_acme-challenge.shop.example.com", "txt_value": "ca3-abc"}]},
            "ownership_verification": {"type": "txt", "name": "_cf-custom-hostname.shop.example.com", "value": "5cc07c04"}
        });
        let custom = parse_custom_hostname(&result).expect("parse");
        assert_eq!(custom.status, "pending");
        assert_eq!(custom.ssl_status.as_deref(), Some("pending_validation"));
        assert_eq!(custom.records.len(), 2);
        assert_eq!(custom.records[0].kind, "TXT");
        assert_eq!(custom.records[0].name, "_cf-custom-hostname.shop.example.com");
        assert_eq!(custom.records[1].value, "ca3-abc");
        assert!(parse_custom_hostname(&json!({"status": "active"})).is_err());
    }

    #[test]
    fn errors_name_cloudflares_codes_and_messages() {
        let envelope = json!({"success": false, "errors": [{"code": 1406, "message": "Duplicate custom hostname found."}]});
        assert_eq!(errors_of(&envelope), "[1406] Duplicate custom hostname found.");
        assert_eq!(errors_of(&json!({"success": false})), "no reason given");
    }

    #[test]
    fn the_client_is_built_only_when_configured_and_never_prints_its_token() {
        let mut config = CloudflareConfig::default();
        assert!(Cloudflare::from_config(&config).expect("no client").is_none());
        config.zone_id = "023e105f4ecef8ad9ca31a8372d0c353".into();
        config.api_token = Secret::new("cf-token-value-123".to_string());
        let client = Cloudflare::from_config(&config).expect("build").expect("configured");
        assert!(!format!("{client:?}").contains("cf-token-value-123"));
    }
}
