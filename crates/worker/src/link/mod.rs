//! The worker's link to the control plane (SPEC §4): transport only.
//!
//! [`Link::register`] trades the shared secret and the raw API key for a JWT;
//! [`Link::connect`] opens the WebSocket with it, reads the `X-WH-Connection` id, derives the
//! per-direction keys and expects a valid `welcome`, giving a [`SessionTx`] that seals and
//! sends frames and a [`SessionRx`] that verifies and decodes them; [`Link::keep_token_fresh`]
//! renews the JWT 2 minutes before expiry (handed to the session as `auth_refresh`). What the
//! messages mean is the agent's ([`crate::agent`]).

mod backoff;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use wisehosting_crypto::Secret;
use wisehosting_proto::messages::{AuthRefresh, Welcome};
use wisehosting_proto::{
    CONNECTION_HEADER, LinkKeys, MAX_FRAME_BYTES, Receiver, Sender, ServerMessage, mac_key_from_api_key,
};

pub use backoff::Backoff;
pub use wisehosting_proto::messages::Outgoing;

use crate::config::{WorkerConfigError, check_control_plane_url};

/// Renew the JWT this long before it expires.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(120);
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// The envelope's fields around a payload (`t`, `i`, `s`, `ts`, `h` and the JSON punctuation),
/// with room to spare.
const FRAME_OVERHEAD: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Config(#[from] WorkerConfigError),
    #[error("the control plane refused our credentials (401); check api_key and shared_secret")]
    Unauthorized,
    #[error("the control plane answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("cannot reach the control plane: {0}")]
    Http(String),
    #[error("WebSocket: {0}")]
    WebSocket(String),
    #[error("the control plane sent no valid connection id header")]
    NoConnectionId,
    #[error("the control plane sent no welcome")]
    NoWelcome,
    #[error("the control plane refused a frame or closed the link: {0}")]
    Closed(String),
    #[error("a frame from the control plane failed verification: {0}")]
    BadFrame(String),
    #[error(transparent)]
    Mesh(#[from] crate::mesh::MeshError),
}

/// What a worker says of itself when it registers (SPEC §14: `POST /v1/workers/register`).
#[derive(Debug, Serialize)]
pub struct Registration<'a> {
    pub secret: &'a str,
    pub api_key: &'a str,
    pub name: &'a str,
    pub version: &'a str,
    pub zone: Option<&'a str>,
    pub capacity: Capacity,
    pub wg_public_key: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Capacity {
    pub cpus: u64,
    pub memory_mb: u64,
}

/// The control plane's answer to a registration or a refresh.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    pub worker_id: i64,
    pub token: String,
    token_expires_at: String,
    /// The worker's mesh address (`workers.wg_ip`), once the control plane gave it one.
    #[serde(default)]
    pub wg_ip: Option<String>,
}

impl TokenResponse {
    pub fn expires_at(&self) -> SystemTime {
        chrono::DateTime::parse_from_rfc3339(&self.token_expires_at)
            .ok()
            .and_then(|t| u64::try_from(t.timestamp()).ok())
            .map_or_else(SystemTime::now, |secs| UNIX_EPOCH + Duration::from_secs(secs))
    }
}

/// The TLS client of an `https://` control plane: TLS 1.2 or 1.3 (the server takes 1.3),
/// verified against the system's authorities plus those of `ca_file` (SPEC §14.7: an extra
/// root, for a control plane with a private CA).
fn client_tls(ca_file: Option<&Path>) -> Result<std::sync::Arc<rustls::ClientConfig>, LinkError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let bad = |reason: String| WorkerConfigError::CaFile { path: path.to_path_buf(), reason };
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no certificate in it".into()).into());
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    if roots.is_empty() {
        return Err(LinkError::Http(
            "there are no certificate authorities to verify the control plane with; install ca-certificates or set control_plane_ca_file".into(),
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| LinkError::Http(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The HTTP side of the link: the control plane's base URL and this worker's API key, and
/// for an `https://` control plane the TLS client both the HTTP calls and the `wss://`
/// WebSocket use.
#[derive(Clone)]
pub struct Link {
    http: reqwest::Client,
    base: Url,
    api_key: Secret,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("base", &self.base.as_str()).finish()
    }
}

/// A session that the control plane welcomed.
pub struct Connected {
    pub tx: SessionTx,
    pub rx: SessionRx,
    pub connection_id: String,
    pub welcome: Welcome,
}

impl Link {
    /// A link to `control_plane_url` (checked: `https://`, or `http://` to a private address);
    /// an `https://` one is verified against the system's authorities and `ca_file`'s.
    pub fn new(control_plane_url: &str, api_key: Secret, ca_file: Option<&Path>) -> Result<Link, LinkError> {
        let base = check_control_plane_url(control_plane_url)?;
        let tls = if base.scheme() == "https" { Some(client_tls(ca_file)?) } else { None };
        let mut http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(tls) = &tls {
            http = http.use_preconfigured_tls((**tls).clone());
        }
        let http = http.build().map_err(|e| LinkError::Http(e.to_string()))?;
        Ok(Link { http, base, api_key, tls })
    }

    fn url(&self, path: &str) -> Result<Url, LinkError> {
        self.base.join(path).map_err(|e| LinkError::Http(e.to_string()))
    }

    pub async fn register(&self, registration: &Registration<'_>) -> Result<TokenResponse, LinkError> {
        let response = self
            .http
            .post(self.url("/v1/workers/register")?)
            .json(registration)
            .send()
            .await
            .map_err(|e| LinkError::Http(e.without_url().to_string()))?;
        token_from(response).await
    }

    /// Opens the WebSocket with `token` and waits for a valid `welcome`.
    pub async fn connect(&self, token: &TokenResponse) -> Result<Connected, LinkError> {
        let mut ws_url = self.url("/v1/workers/ws")?;
        let scheme = if ws_url.scheme() == "https" { "wss" } else { "ws" };
        ws_url.set_scheme(scheme).map_err(|_| LinkError::WebSocket("cannot build the ws:// URL".into()))?;
        let mut request =
            ws_url.as_str().into_client_request().map_err(|e| LinkError::WebSocket(e.to_string()))?;
        let bearer = HeaderValue::from_str(&format!("Bearer {}", token.token))
            .map_err(|_| LinkError::WebSocket("the token is not a valid header".into()))?;
        request.headers_mut().insert("authorization", bearer);
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(MAX_FRAME_BYTES + 64 * 1024);
        config.max_frame_size = Some(MAX_FRAME_BYTES + 64 * 1024);
        config.read_buffer_size = 4 * 1024;
        config.write_buffer_size = 0;
        let connector = self.tls.clone().map(tokio_tungstenite::Connector::Rustls);
        let (ws, response) =
            tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector)
                .await
                .map_err(|e| match e {
                    tungstenite::Error::Http(r) if r.status().as_u16() == 401 => LinkError::Unauthorized,
                    other => LinkError::WebSocket(other.to_string()),
                })?;
        let connection_id = response
            .headers()
            .get(CONNECTION_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .ok_or(LinkError::NoConnectionId)?
            .to_string();
        let keys = LinkKeys::derive(&mac_key_from_api_key(self.api_key.expose()), &connection_id);
        let (sink, mut stream) = ws.split();
        let mut receiver = Receiver::new(keys.s2c);
        // The first frame must be a valid welcome.
        let first =
            tokio::time::timeout(WELCOME_TIMEOUT, stream.next()).await.map_err(|_| LinkError::NoWelcome)?;
        let Some(Ok(Message::Text(text))) = first else { return Err(LinkError::NoWelcome) };
        let frame =
            receiver.accept(text.as_str(), now_ms()).map_err(|r| LinkError::BadFrame(r.to_string()))?;
        let Ok(ServerMessage::Welcome(welcome)) = ServerMessage::decode(frame.t, frame.p) else {
            return Err(LinkError::NoWelcome);
        };
        Ok(Connected {
            tx: SessionTx { sink, sender: Sender::new(keys.c2s) },
            rx: SessionRx { stream, receiver },
            connection_id,
            welcome,
        })
    }

    /// Renews the JWT before it expires (2 minutes before, or half-way for short tokens) and
    /// hands each new one to the session as `auth_refresh` and to `renewed`. While the control
    /// plane cannot be reached it retries with jittered backoff until the token lapses; then
    /// the control plane closes the socket and the agent registers again.
    pub async fn keep_token_fresh(
        self,
        mut expires_at: SystemTime,
        out: mpsc::Sender<Outgoing>,
        renewed: impl Fn(&TokenResponse),
        stop: CancellationToken,
    ) {
        let Ok(url) = self.url("/v1/workers/refresh-token") else { return };
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(refresh_delay(expires_at)) => {}
            }
            let mut retry = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
            loop {
                let attempt = self.http.post(url.clone()).bearer_auth(self.api_key.expose()).send().await;
                let result = match attempt {
                    Ok(response) => token_from(response).await,
                    Err(e) => Err(LinkError::Http(e.without_url().to_string())),
                };
                match result {
                    Ok(token) => {
                        expires_at = token.expires_at();
                        renewed(&token);
                        if out.send(Outgoing::of(&AuthRefresh { token: token.token })).await.is_err() {
                            return;
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot renew the worker token; retrying");
                        if SystemTime::now() >= expires_at {
                            return;
                        }
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(retry.next_delay()) => {}
                        }
                    }
                }
            }
        }
    }
}

/// The sending half of a session: seals each message with the next sequence number.
pub struct SessionTx {
    sink: SplitSink<Socket, Message>,
    sender: Sender,
}

impl SessionTx {
    pub async fn send(&mut self, out: &Outgoing) -> Result<(), LinkError> {
        // A frame over the limit would make the control plane close the link: drop the
        // message instead (log batches are capped far below this; this is the last guard).
        if out.payload.len() + FRAME_OVERHEAD > MAX_FRAME_BYTES {
            tracing::warn!(
                message_type = out.t,
                bytes = out.payload.len(),
                "dropped a message too large for one frame"
            );
            return Ok(());
        }
        let id = wisehosting_crypto::random_bytes::<16>();
        let text = self.sender.seal_raw(out.t, id, now_ms(), &out.payload);
        self.sink.send(Message::Text(text.into())).await.map_err(|e| LinkError::WebSocket(e.to_string()))
    }

    pub async fn close(&mut self) {
        let _ = self.sink.send(Message::Close(None)).await;
    }
}

/// The receiving half of a session: verifies and decodes each frame.
pub struct SessionRx {
    stream: SplitStream<Socket>,
    receiver: Receiver,
}

impl SessionRx {
    /// The next message; an `error` frame, a close, a frame that fails verification or does
    /// not decode ends the session.
    pub async fn next(&mut self) -> Result<ServerMessage, LinkError> {
        loop {
            let text = match self.stream.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(_))) => return Err(LinkError::BadFrame("a binary frame".into())),
                Some(Ok(Message::Close(_))) | None => {
                    return Err(LinkError::Closed("the control plane closed the socket".into()));
                }
                Some(Err(e)) => return Err(LinkError::WebSocket(e.to_string())),
            };
            let frame = self
                .receiver
                .accept(text.as_str(), now_ms())
                .map_err(|r| LinkError::BadFrame(r.to_string()))?;
            return match ServerMessage::decode(frame.t, frame.p) {
                Ok(ServerMessage::Error(err)) => {
                    Err(LinkError::Closed(format!("{}: {}", err.code, err.message)))
                }
                Ok(message) => Ok(message),
                Err(e) => Err(LinkError::BadFrame(format!("payload: {e}"))),
            };
        }
    }
}

async fn token_from(response: reqwest::Response) -> Result<TokenResponse, LinkError> {
    let status = response.status().as_u16();
    if status == 401 {
        return Err(LinkError::Unauthorized);
    }
    if status != 200 {
        let body: String = response.text().await.unwrap_or_default().chars().take(300).collect();
        return Err(LinkError::Status { status, body });
    }
    response.json().await.map_err(|e| LinkError::Http(e.without_url().to_string()))
}

/// When to renew a token expiring at `expires_at`: 2 minutes before, or half-way for short
/// tokens.
fn refresh_delay(expires_at: SystemTime) -> Duration {
    let left = expires_at.duration_since(SystemTime::now()).unwrap_or_default();
    if left > REFRESH_BEFORE_EXPIRY * 2 { left - REFRESH_BEFORE_EXPIRY } else { left / 2 }
}
