//! Local stand-ins for what the platform sends requests and mail to: [`WebhookReceiver`] (an
//! HTTP endpoint that records every request and answers from a script) and [`SmtpSink`] (an
//! SMTP server that keeps what it is sent).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: String,
    /// What the receiver answered.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// Whether `X-WH-Signature` is `t=…,v1=…` with v1 = HMAC-SHA256(secret, "<t>.<body>"),
    /// computed here independently of the platform's code.
    pub fn signed_with(&self, secret: &str) -> bool {
        let sig = self.header("x-wh-signature");
        let mut t = None;
        let mut v1 = None;
        for part in sig.split(',') {
            match part.split_once('=') {
                Some(("t", value)) => t = Some(value),
                Some(("v1", value)) => v1 = Some(value),
                _ => {}
            }
        }
        let (Some(t), Some(v1)) = (t, v1) else { return false };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return false };
        mac.update(format!("{t}.{}", self.body).as_bytes());
        hex::encode(mac.finalize().into_bytes()) == v1
    }
}

/// How the receiver answers its next requests.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// A redirect to this URL.
    Redirect(String),
    /// No answer for this long (a timeout for the sender).
    Hang(std::time::Duration),
}

#[derive(Default)]
struct Shared {
    /// Requests being answered now, and the most there ever were at once.
    in_flight: std::sync::atomic::AtomicUsize,
    most_in_flight: std::sync::atomic::AtomicUsize,
    script: Mutex<VecDeque<Reply>>,
    /// Scripts for one `X-WH-Event`, used before the general one.
    by_event: Mutex<std::collections::HashMap<String, VecDeque<Reply>>>,
    received: Mutex<Vec<Received>>,
}

pub struct WebhookReceiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl WebhookReceiver {
    /// Answers 200 to everything unless [`WebhookReceiver::script`] says otherwise.
    pub async fn start() -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        let app = axum::Router::new().fallback(receive).with_state(shared.clone());
        let s = stop.clone();
        tokio::spawn(async move {
            let _ =
                axum::serve(listener, app).with_graceful_shutdown(async move { s.cancelled().await }).await;
        });
        WebhookReceiver { addr, shared, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The answers to the next requests, in order; after them, 200.
    pub fn script(&self, replies: &[Reply]) {
        if let Ok(mut s) = self.shared.script.lock() {
            s.extend(replies.iter().cloned());
        }
    }

    /// The answers to the next requests of one event type (`X-WH-Event`), in order.
    pub fn script_for(&self, event: &str, replies: &[Reply]) {
        if let Ok(mut s) = self.shared.by_event.lock() {
            s.entry(event.to_string()).or_default().extend(replies.iter().cloned());
        }
    }

    /// The most requests this receiver was answering at once.
    pub fn most_in_flight(&self) -> usize {
        self.shared.most_in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    use std::sync::atomic::Ordering;
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.most_in_flight.fetch_max(now, Ordering::SeqCst);
    let response = answer(&shared, headers, body).await;
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

async fn answer(shared: &Shared, headers: HeaderMap, body: Bytes) -> Response {
    let event = headers.get("x-wh-event").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let scripted =
        shared.by_event.lock().ok().and_then(|mut s| s.get_mut(&event).and_then(VecDeque::pop_front));
    let reply = scripted
        .or_else(|| shared.script.lock().ok().and_then(|mut s| s.pop_front()))
        .unwrap_or(Reply::Status(200));
    let status = match &reply {
        Reply::Status(s) => *s,
        Reply::Redirect(_) => 302,
        Reply::Hang(_) => 0,
    };
    if let Ok(mut r) = shared.received.lock() {
        r.push(Received { headers, body: String::from_utf8_lossy(&body).into_owned(), status });
    }
    match reply {
        Reply::Status(s) => StatusCode::from_u16(s).unwrap_or(StatusCode::OK).into_response(),
        Reply::Redirect(to) => (StatusCode::FOUND, [("location", to)]).into_response(),
        Reply::Hang(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK.into_response()
        }
    }
}

/// One mail the sink got.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// A plain SMTP server (no TLS, no auth) that keeps every message.
pub struct SmtpSink {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    stop: CancellationToken,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
        let addr = listener.local_addr().expect("addr");
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let stop = CancellationToken::new();
        let (m, s) = (mails.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = s.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((stream, _)) = accepted else { continue };
                tokio::spawn(smtp_session(stream, m.clone()));
            }
        });
        SmtpSink { addr, mails, stop }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn smtp_session(stream: tokio::net::TcpStream, mails: Arc<Mutex<Vec<Mail>>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let _ = write.write_all(b"220 sink ESMTP\r\n").await;
    let mut mail = Mail { from: String::new(), to: Vec::new(), data: String::new() };
    while let Ok(Some(line)) = lines.next_line().await {
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250-sink\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = line[10..].trim().to_string();
            b"250 ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(line[8..].trim().to_string());
            b"250 ok\r\n"
        } else if upper == "DATA" {
            let _ = write.write_all(b"354 go on\r\n").await;
            let mut data = String::new();
            while let Ok(Some(l)) = lines.next_line().await {
                if l == "." {
                    break;
                }
                data.push_str(&l);
                data.push('\n');
            }
            mail.data = data;
            if let Ok(mut m) = mails.lock() {
                m.push(std::mem::replace(
                    &mut mail,
                    Mail { from: String::new(), to: Vec::new(), data: String::new() },
                ));
            }
            b"250 queued\r\n"
        } else if upper == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"250 ok\r\n"
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}
