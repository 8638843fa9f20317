//! One worker connection: `welcome` first, then every frame through the receive checks.
//!
//! A valid JWT alone proves little (it is a bearer token); a signed `hello` proves the worker
//! holds its API key. So the connection joins the hub's registry only at its first valid
//! `hello`: until then it displaces no live connection of the same worker, is sent nothing but
//! its `welcome`, and its other frames are verified but not acted on; a `hello` that does not
//! come within [`HELLO_TIMEOUT`] ends it.
//!
//! Frames go out through an mpsc queue so any part of the control plane can send; a refused
//! frame gets an `error` envelope with its code and closes the connection; the connection also
//! closes when the worker's JWT lapses without an `auth_refresh`, when a newer connection of
//! the same worker replaces it, when the sweeper declares the worker offline, and at shutdown.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use wisehosting_crypto::PurposeKey;
use wisehosting_crypto::jwt::verify_worker_token;
use wisehosting_proto::messages::{ErrorMessage, Welcome};
use wisehosting_proto::{LinkKeys, Receiver, RejectCode, Sender, WorkerMessage};

use super::{Hub, Outgoing, Report};

/// What the upgrade handler learned before the 101.
#[derive(Debug)]
pub struct ConnectionParams {
    pub worker_id: i64,
    pub connection_id: String,
    pub mac_key: [u8; 32],
    /// The JWT's `exp`, Unix seconds.
    pub token_exp: i64,
    /// To check tokens presented in `auth_refresh`.
    pub jwt_key: PurposeKey,
}

/// How long a new connection may take to send its signed `hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

fn now_secs() -> i64 {
    now_ms() / 1000
}

/// How the connection ended, for the log.
enum End {
    Rejected(RejectCode),
    TokenExpired,
    NoHello,
    Replaced,
    Shutdown,
    PeerClosed,
}

struct Conn {
    hub: Hub,
    worker_id: i64,
    sender: Sender,
    receiver: Receiver,
    jwt_key: PurposeKey,
    token_exp: i64,
    /// When this connection opened; jobs leased before it may have been lost.
    connected_at: chrono::DateTime<chrono::Utc>,
    connection_id: String,
    /// The queue and close token the hub gets at the first valid `hello`; `None` once the
    /// connection is registered.
    unproven: Option<(mpsc::Sender<Box<Outgoing>>, CancellationToken)>,
    /// Where this connection's reports go once it is registered, to be applied in order.
    reports: Option<mpsc::Sender<Box<Report>>>,
}

pub async fn serve_connection(hub: Hub, socket: WebSocket, params: ConnectionParams) {
    let ConnectionParams { worker_id, connection_id, mac_key, token_exp, jwt_key } = params;
    let span = tracing::info_span!("worker_conn", worker_id, connection = %connection_id);
    let keys = LinkKeys::derive(&mac_key, &connection_id);
    let (tx, rx) = mpsc::channel::<Box<Outgoing>>(64);
    let close = CancellationToken::new();
    let mut conn = Conn {
        hub: hub.clone(),
        worker_id,
        sender: Sender::new(keys.s2c),
        receiver: Receiver::new(keys.c2s),
        jwt_key,
        token_exp,
        connected_at: chrono::Utc::now(),
        connection_id: connection_id.clone(),
        unproven: Some((tx, close.clone())),
        reports: None,
    };
    let end = conn.run(socket, rx, close).instrument(span).await;
    hub.detach(worker_id, &connection_id);
    match end {
        End::Rejected(code) => tracing::warn!(
            worker_id,
            code = code.as_str(),
            "closed a worker connection after a refused frame"
        ),
        End::TokenExpired => tracing::info!(worker_id, "closed a worker connection whose token lapsed"),
        End::NoHello => tracing::warn!(worker_id, "closed a worker connection that sent no signed hello"),
        End::Replaced => {
            tracing::info!(worker_id, "closed a worker connection replaced by a newer one or swept offline")
        }
        End::Shutdown | End::PeerClosed => tracing::debug!(worker_id, "worker connection ended"),
    }
}

impl Conn {
    /// Hands a report on; waits while this connection's earlier ones are still being applied.
    async fn report(&self, report: Report) {
        if let Some(reports) = &self.reports
            && reports.send(Box::new(report)).await.is_err()
        {
            tracing::debug!(
                worker_id = self.worker_id,
                "dropped a report: nothing applies them (shutting down)"
            );
        }
    }

    fn frame(&mut self, out: &Outgoing) -> Message {
        let id = wisehosting_crypto::random_bytes::<16>();
        Message::Text(self.sender.seal_raw(out.t, id, now_ms(), &out.payload).into())
    }

    async fn run(
        &mut self,
        socket: WebSocket,
        mut rx: mpsc::Receiver<Box<Outgoing>>,
        close: CancellationToken,
    ) -> End {
        let (mut sink, mut stream) = socket.split();
        let welcome = Outgoing::of(&Welcome {
            connection_id: self.connection_id.clone(),
            server_time_ms: now_ms(),
            heartbeat_interval_ms: self.hub.heartbeat_interval().as_millis() as u64,
        });
        let frame = self.frame(&welcome);
        if sink.send(frame).await.is_err() {
            return End::PeerClosed;
        }
        let shutdown = self.hub.inner.shutdown.clone();
        let hello_deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
        loop {
            let until_exp = Duration::from_secs(u64::try_from(self.token_exp - now_secs()).unwrap_or(0));
            let end = tokio::select! {
                _ = shutdown.cancelled() => Some(End::Shutdown),
                _ = close.cancelled() => Some(End::Replaced),
                _ = tokio::time::sleep_until(hello_deadline), if self.unproven.is_some() => Some(End::NoHello),
                _ = tokio::time::sleep(until_exp) => {
                    if now_secs() >= self.token_exp { Some(End::TokenExpired) } else { None }
                }
                out = rx.recv() => match out {
                    Some(out) => {
                        let frame = self.frame(&out);
                        if sink.send(frame).await.is_err() { Some(End::PeerClosed) } else { None }
                    }
                    None => Some(End::Replaced),
                },
                incoming = stream.next() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Some(End::PeerClosed),
                    // Boxed: the task waits here most of its life, and should rest at the
                    // size of its waits, not of every future handling a frame may await.
                    Some(Ok(Message::Text(text))) => Box::pin(self.on_text(text.as_str())).await.err(),
                    Some(Ok(Message::Binary(_))) => Some(End::Rejected(RejectCode::BadFrame)),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
                },
            };
            let Some(end) = end else { continue };
            let error = match &end {
                End::Rejected(code) => {
                    self.hub.inner.metrics.record_rejection(*code);
                    Some(ErrorMessage {
                        code: code.as_str().into(),
                        message: "the frame was refused; reconnect".into(),
                    })
                }
                End::TokenExpired => Some(ErrorMessage {
                    code: "token_expired".into(),
                    message: "the connection's token lapsed without an auth_refresh; register again".into(),
                }),
                End::NoHello => Some(ErrorMessage {
                    code: "hello_timeout".into(),
                    message: "no signed hello arrived in time after the welcome; reconnect".into(),
                }),
                _ => None,
            };
            if let Some(error) = error {
                let frame = self.frame(&Outgoing::of(&error));
                let _ = sink.send(frame).await;
            }
            let _ = sink.send(Message::Close(Some(CloseFrame { code: 1000, reason: "bye".into() }))).await;
            return end;
        }
    }

    /// Checks and handles one text frame; `Err` ends the connection.
    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        let frame =
            self.receiver.accept(text, now_ms()).map_err(|rejection| End::Rejected(rejection.code))?;
        let message =
            WorkerMessage::decode(frame.t, frame.p).map_err(|_| End::Rejected(RejectCode::BadFrame))?;
        if let WorkerMessage::Hello(_) = &message
            && let Some((tx, close)) = self.unproven.take()
        {
            // The first valid hello: from now on this is the worker's connection.
            self.hub.attach(self.worker_id, self.connection_id.clone(), tx, close);
            self.reports = Some(self.hub.open_reports(self.worker_id));
        }
        if self.unproven.is_some() {
            if let WorkerMessage::AuthRefresh(refresh) = message {
                return self.refresh(&refresh.token);
            }
            self.hub.inner.metrics.record_before_hello();
            tracing::debug!(
                worker_id = self.worker_id,
                message_type = frame.t,
                "ignored a frame sent before hello"
            );
            return Ok(());
        }
        self.hub.touch(self.worker_id);
        match message {
            WorkerMessage::Hello(hello) => {
                let connected_at = self.connected_at;
                let (version, containers, running_jobs) =
                    (hello.version, hello.containers, hello.running_jobs);
                let hello = super::HelloReport { version, containers, running_jobs, connected_at };
                self.report(Report::Hello(Box::new(hello))).await;
            }
            WorkerMessage::Heartbeat(heartbeat) => self.hub.record_heartbeat(self.worker_id, heartbeat),
            WorkerMessage::AdminQueryReply(reply) => self.hub.complete_query(self.worker_id, reply),
            WorkerMessage::AuthRefresh(refresh) => self.refresh(&refresh.token)?,
            WorkerMessage::Unknown(t) => {
                self.hub.inner.metrics.record_unknown_message();
                tracing::debug!(worker_id = self.worker_id, message_type = %t, "ignored a frame of an unknown type");
            }
            WorkerMessage::JobAccepted(m) => self.report(Report::JobAccepted(m)).await,
            WorkerMessage::JobProgress(m) => self.report(Report::JobProgress(m)).await,
            WorkerMessage::JobResult(m) => self.report(Report::JobResult(Box::new(m))).await,
            WorkerMessage::Log(m) => self.report(Report::Log(Box::new(m))).await,
            WorkerMessage::AppState(m) => self.report(Report::AppStates(m)).await,
            // Per-app figures: the hub's live snapshot (in memory).
            WorkerMessage::AppStats(m) => self.hub.stats().record(self.worker_id, m),
        }
        Ok(())
    }

    /// A fresh JWT extends the connection's life; one that fails or names another worker ends it.
    fn refresh(&mut self, token: &str) -> Result<(), End> {
        let claims = verify_worker_token(&self.jwt_key, token, now_secs()).map_err(|_| End::TokenExpired)?;
        if claims.worker_id() != Ok(self.worker_id) {
            return Err(End::TokenExpired);
        }
        self.token_exp = claims.exp;
        Ok(())
    }
}
