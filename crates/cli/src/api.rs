//! The control plane's user API as `wh` calls it: `Authorization: Bearer <token>`, JSON both
//! ways, no redirects followed, no proxy from the environment for loopback. An error answer
//! becomes a [`CliError`] carrying the API's own message.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::CliError;

#[derive(Clone)]
pub struct Api {
    base: url::Url,
    token: String,
    http: reqwest::Client,
    /// Without the overall timeout, for `logs -f`.
    streaming: reqwest::Client,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base.as_str()).finish_non_exhaustive()
    }
}

/// `url` as the control plane's base: `http(s)://host[:port]`, nothing else.
pub fn parse_base(url: &str) -> Result<url::Url, CliError> {
    let bad = |why: &str| {
        CliError::Usage(format!(
            "{url:?} is not the platform's URL ({why}); give one like https://wisehosting.example.com or http://127.0.0.1:8081"
        ))
    };
    let parsed = url::Url::parse(url.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("it must start with http:// or https://"));
    }
    if parsed.host().is_none() || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("it needs a host and no user name or password"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("it takes no query or fragment"));
    }
    Ok(parsed)
}

impl Api {
    pub fn new(url: &str, token: &str) -> Result<Api, CliError> {
        let base = parse_base(url)?;
        let build = |timeout: Option<Duration>| {
            let mut b = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(10))
                .user_agent(concat!("wh/", env!("CARGO_PKG_VERSION")));
            if let Some(t) = timeout {
                b = b.timeout(t);
            }
            b.build().map_err(|e| CliError::Usage(format!("cannot make an HTTP client: {e}")))
        };
        Ok(Api {
            base,
            token: token.trim().to_string(),
            http: build(Some(Duration::from_secs(60)))?,
            streaming: build(None)?,
        })
    }

    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    fn unreachable(&self, e: &reqwest::Error) -> CliError {
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            reason = s.to_string();
            source = s.source();
        }
        CliError::Unreachable { url: self.base().to_string(), reason }
    }

    /// One call; the JSON answer (`null` when empty).
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        answer(response).await
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// A streaming GET (server-sent events), its answer checked.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, CliError> {
        let response = self
            .streaming
            .get(self.url(path))
            .bearer_auth(&self.token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        // Not a success, so `answer` is an error.
        Err(match answer(response).await {
            Err(e) => e,
            Ok(_) => CliError::Failed("the log stream could not be opened".into()),
        })
    }
}

async fn answer(response: reqwest::Response) -> Result<Value, CliError> {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body: Value =
        if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) };
    if status.is_success() {
        return Ok(body);
    }
    let message = body["message"].as_str().map(str::to_string).unwrap_or_else(|| {
        format!(
            "the platform answered {status}{}",
            if text.is_empty() {
                String::new()
            } else {
                format!(": {}", text.chars().take(200).collect::<String>())
            }
        )
    });
    let code = body["code"].as_str().unwrap_or("").to_string();
    Err(if status == StatusCode::UNAUTHORIZED {
        CliError::Unauthorized(message)
    } else {
        CliError::Api { code, message }
    })
}
