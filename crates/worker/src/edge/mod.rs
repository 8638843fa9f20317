//! The edge router (SPEC §7): an HTTP/1.1 reverse proxy on `edge.listen` (`:8080`) that sends
//! each request to the app its `Host` names, and the same over TLS on `edge.https_listen` (with
//! HTTP/2 by ALPN) with the certificates the control plane pushes, chosen by SNI (`tls.rs`). Its table is the control plane's typed
//! `route_table` for this worker, pushed over the link on connect and on every change, and
//! swapped whole (readers never see half a table). Keep-alive to clients and upstreams,
//! WebSocket upgrades passed through, `X-Forwarded-*` set, clear 404/502/503/504 pages, and
//! per-app request counts and latency histograms for `/metrics`.
//!
//! Zero-downtime switches rest on [`Edge::wait_drained`]: the deploy pipeline stops an old
//! container only once no route points at it and no request to it is in flight.

mod chunked;
mod fast;
mod metrics;
mod pages;
mod proxy;
pub mod table;
pub mod tls;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use table::{Route, Table};

/// Entry points of the fuzz targets (`fuzz/fuzz_targets/edge_*.rs`): the code that reads what
/// the internet and the apps send. Each returns `Err` naming a broken rule; none may panic.
#[doc(hidden)]
pub mod fuzzing {
    message_error! {
        /// A rule of the parsers that some input broke, named.
        pub BrokenRule
    }

    /// A client's bytes as the fast path reads a request head.
    pub fn request_head(input: &[u8]) -> Result<(), BrokenRule> {
        super::fast::check_request(input)
    }

    /// An app's bytes as the fast path reads a response head.
    pub fn response_head(input: &[u8]) -> Result<(), BrokenRule> {
        super::fast::check_response(input)
    }

    /// A chunked body fed whole and fed in the pieces `cuts` makes: the same end, or malformed
    /// both times (how bytes arrive must not change where the body ends).
    pub fn chunked(input: &[u8], cuts: &[usize]) -> Result<(), BrokenRule> {
        let whole = super::chunked::ChunkedEnd::default().feed(input).map_err(drop);
        let mut pieces = super::chunked::ChunkedEnd::default();
        let mut at = 0;
        let mut piecewise = Ok(None);
        for cut in cuts.iter().copied().chain([input.len()]) {
            let cut = cut.clamp(at, input.len());
            piecewise = pieces.feed(&input[at..cut]).map(|end| end.map(|n| at + n)).map_err(drop);
            if !matches!(piecewise, Ok(None)) {
                break;
            }
            at = cut;
        }
        if whole == piecewise {
            Ok(())
        } else {
            Err(BrokenRule(format!("whole {whole:?}, in pieces {piecewise:?}")))
        }
    }

    #[cfg(test)]
    mod tests {
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

            #[test]
            fn any_bytes_end_a_chunked_body_in_the_same_place_however_they_arrive(
                body in proptest::collection::vec(
                    prop_oneof![Just(b'0'), Just(b'1'), Just(b'a'), Just(b'\r'), Just(b'\n'), Just(b';'), any::<u8>()],
                    0..200,
                ),
                cuts in proptest::collection::vec(0usize..200, 0..12),
            ) {
                let mut cuts = cuts;
                cuts.sort_unstable();
                prop_assert_eq!(super::chunked(&body, &cuts), Ok(()));
            }

            #[test]
            fn any_response_head_is_refused_or_written_whole(
                head in "HTTP/1\\.[01] [0-9]{3} [ -~]{0,8}\r\n([A-Za-z-]{1,16}: [ -~]{0,12}\r\n){0,6}\r\n",
                tail in proptest::collection::vec(any::<u8>(), 0..40),
            ) {
                let mut input = head.into_bytes();
                input.extend_from_slice(&tail);
                prop_assert_eq!(super::response_head(&input), Ok(()));
                prop_assert_eq!(super::response_head(&tail), Ok(()));
            }
        }
    }
}

/// How long a client may take to send a request head, and an app to answer with one.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a response body may pause (the app sending nothing) and a client may take to
/// accept the next piece of it; past it both connections are closed (nginx's
/// `proxy_read_timeout` and `send_timeout`).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Idle upstream connections of the fast path: kept this long, this many per upstream.
const POOL_IDLE: Duration = Duration::from_secs(30);
const POOL_PER_UPSTREAM: usize = 64;

/// True unless an idle upstream connection was closed by the app (or sent something unasked).
/// Apps close idle keep-alive connections after a few seconds (Node and uvicorn after 5 s,
/// gunicorn after 2): a request written to such a connection would be lost, and one that is
/// not idempotent cannot be sent again. Costs no system call while the socket has had no event.
fn still_open(stream: &tokio::net::TcpStream) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut byte = [0u8; 1];
    let mut buf = tokio::io::ReadBuf::new(&mut byte);
    matches!(stream.poll_peek(&mut cx, &mut buf), std::task::Poll::Pending)
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded as they are.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// True for a hop-by-hop header's name (any case).
fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// A client connection the router serves: plain TCP, or TLS over it.
pub(crate) trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// It came over TLS (`X-Forwarded-Proto: https`, HSTS, no redirect).
    const SECURE: bool;

    /// Resolves when a read may make progress, without reading (so a connection waiting for
    /// its next request holds no buffer).
    fn readable(&self) -> impl Future<Output = std::io::Result<()>> + Send;
}

impl ClientIo for tokio::net::TcpStream {
    const SECURE: bool = false;

    fn readable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        tokio::net::TcpStream::readable(self)
    }
}

type TlsStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

impl ClientIo for TlsStream {
    const SECURE: bool = true;

    /// Decrypted bytes rustls already holds are ready now; otherwise the socket must have some.
    fn readable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        let (tcp, session) = self.get_ref();
        let wait = session.wants_read();
        async move { if wait { tcp.readable().await } else { Ok(()) } }
    }
}

/// `Strict-Transport-Security` for apps that opt in: a year, this host only.
pub const HSTS: &str = "max-age=31536000";

/// The most ACME challenges a router holds at once.
pub const MAX_CHALLENGES: usize = 1000;

/// Where ACME HTTP-01 challenges are asked for (RFC 8555 §8.3).
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

pub struct Edge {
    table: RwLock<Arc<Table>>,
    client: Client<HttpConnector, Incoming>,
    /// The fast path's idle upstream connections, by `host:port`, oldest first.
    pool: Mutex<HashMap<String, VecDeque<(tokio::net::TcpStream, std::time::Instant)>>>,
    metrics: metrics::Registry,
    /// Requests in flight, by upstream `host:port`.
    inflight: Mutex<HashMap<String, usize>>,
    /// Woken on every swap and every finished request, for drain waits.
    changed: Notify,
    /// [`STALL_TIMEOUT`], shorter in tests.
    stall: Duration,
    /// ACME HTTP-01 answers by token, as last pushed (`acme_challenges`).
    challenges: RwLock<Arc<HashMap<String, String>>>,
    /// The certificates pushed (`edge_certificates`), by SNI.
    certificates: Arc<tls::Certificates>,
    /// The HTTPS listener's port once it serves; 0 before (no redirect to it).
    https_port: AtomicU16,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge").field("routes", &self.table().hosts.len()).finish()
    }
}

impl Edge {
    pub fn new() -> Arc<Edge> {
        Edge::with_stall_timeout(STALL_TIMEOUT)
    }

    /// A router whose response bodies and client writes may stall for `stall` at most.
    pub fn with_stall_timeout(stall: Duration) -> Arc<Edge> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        Arc::new(Edge {
            table: RwLock::new(Arc::new(Table::default())),
            client,
            pool: Mutex::new(HashMap::new()),
            metrics: metrics::Registry::default(),
            inflight: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            stall,
            challenges: RwLock::new(Arc::default()),
            certificates: Arc::default(),
            https_port: AtomicU16::new(0),
        })
    }

    /// Applies a push of certificates (see [`tls::Certificates::apply`]).
    pub fn set_certificates(&self, message: &wisehosting_proto::messages::EdgeCertificates) {
        self.certificates.apply(message);
        tracing::debug!(held = self.certificates.len(), "certificates updated");
    }

    /// How many certificates the router holds.
    pub fn certificates_held(&self) -> usize {
        self.certificates.len()
    }

    /// The HTTPS listener's port, 0 while none serves.
    pub fn https_port(&self) -> u16 {
        self.https_port.load(Ordering::Relaxed)
    }

    /// True when a plain request for `host` (a `Host` value) may go to HTTPS: the listener
    /// serves and a certificate for the host is held.
    pub fn redirects_to_https(&self, host: &str) -> bool {
        self.https_port() != 0 && self.certificates.lookup(host).is_some()
    }

    /// Swaps in the pushed ACME challenges. Entries that are not a base64url token with its
    /// `<token>.<thumbprint>` key authorization are dropped (and logged); at most
    /// [`MAX_CHALLENGES`] are kept.
    pub fn set_challenges(&self, message: &wisehosting_proto::messages::AcmeChallenges) {
        let base64url = |s: &str| {
            !s.is_empty()
                && s.len() <= 256
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        let mut map = HashMap::new();
        for c in message.challenges.iter().take(MAX_CHALLENGES) {
            let well_formed = base64url(&c.token)
                && c.key_authorization
                    .split_once('.')
                    .is_some_and(|(token, print)| token == c.token && base64url(print));
            if well_formed {
                map.insert(c.token.clone(), c.key_authorization.clone());
            } else {
                tracing::warn!("ignored a malformed ACME challenge from the control plane");
            }
        }
        if let Ok(mut current) = self.challenges.write() {
            *current = Arc::new(map);
        }
    }

    /// The key authorization for `token`, if a challenge for it is pending.
    pub fn challenge(&self, token: &str) -> Option<String> {
        self.challenges.read().ok().and_then(|c| c.get(token).cloned())
    }

    /// The current table (a cheap clone of an `Arc`).
    pub fn table(&self) -> Arc<Table> {
        self.table.read().map(|t| t.clone()).unwrap_or_default()
    }

    /// Swaps in a pushed table unless it is older than the current one; true if it was.
    pub fn apply(&self, message: &wisehosting_proto::messages::RouteTable) -> bool {
        if message.version < self.table().version {
            tracing::info!(version = message.version, "ignored a route table older than the current one");
            return false;
        }
        let table = Table::from_message(message);
        tracing::debug!(version = table.version, hosts = table.hosts.len(), "routes updated");
        self.swap(table);
        true
    }

    /// Replaces the whole table at once; idle connections to upstreams it no longer uses
    /// are closed.
    pub fn swap(&self, table: Table) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.retain(|authority, _| table.uses(authority));
        }
        if let Ok(mut current) = self.table.write() {
            *current = Arc::new(table);
        }
        self.changed.notify_waiters();
    }

    /// The newest idle connection to `authority` that the app has not closed meanwhile;
    /// connections idle for too long are closed on the way (the oldest are at the front, so
    /// one look there suffices).
    fn pool_take(&self, authority: &str) -> Option<tokio::net::TcpStream> {
        let mut pool = self.pool.lock().ok()?;
        let idle = pool.get_mut(authority)?;
        let now = std::time::Instant::now();
        while idle.front().is_some_and(|(_, since)| now.duration_since(*since) >= POOL_IDLE) {
            idle.pop_front();
        }
        while let Some((stream, _)) = idle.pop_back() {
            if still_open(&stream) {
                return Some(stream);
            }
        }
        None
    }

    fn pool_put(&self, authority: &str, stream: tokio::net::TcpStream) {
        let Ok(mut pool) = self.pool.lock() else { return };
        let idle = match pool.get_mut(authority) {
            Some(idle) => idle,
            None => pool.entry(authority.to_string()).or_default(),
        };
        if idle.len() < POOL_PER_UPSTREAM {
            idle.push_back((stream, std::time::Instant::now()));
        }
    }

    fn inflight_add(&self, authority: &str, delta: isize) {
        if let Ok(mut map) = self.inflight.lock() {
            // Hot path: no allocation when the upstream already has an entry.
            let n = match map.get_mut(authority) {
                Some(n) => n,
                None => map.entry(authority.to_string()).or_insert(0),
            };
            *n = n.saturating_add_signed(delta);
            if *n == 0 {
                map.remove(authority);
            }
        }
        if delta < 0 {
            self.changed.notify_waiters();
        }
    }

    fn inflight_of(&self, authority: &str) -> usize {
        self.inflight.lock().map(|m| m.get(authority).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// Waits until no route points at `authority` and no request to it is in flight, up to
    /// `limit`; true when drained.
    pub async fn wait_drained(&self, authority: &str, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            if !self.table().uses(authority) && self.inflight_of(authority) == 0 {
                return true;
            }
            // A wake-up may be missed between the check and the wait: poll now and then too.
            let wait = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .min(Duration::from_millis(100));
            if wait.is_zero() {
                return false;
            }
            let _ = tokio::time::timeout(wait, notified).await;
        }
    }

    /// Prometheus text of the per-app request figures.
    /// Requests answered so far per app (routes named `app-<id>`), since this process began.
    pub fn requests_by_app(&self) -> std::collections::HashMap<i64, u64> {
        self.metrics
            .totals()
            .into_iter()
            .filter_map(|(route, n)| Some((route.strip_prefix("app-")?.parse().ok()?, n)))
            .collect()
    }

    pub fn render_metrics(&self) -> String {
        self.metrics.render()
    }

    /// Serves the router on `listener` until `shutdown`.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener, shutdown: CancellationToken) {
        proxy::serve(self, listener, shutdown).await;
    }

    /// Serves HTTPS on `listener` until `shutdown`, with the certificates pushed (by SNI); plain
    /// requests for hosts with a certificate are redirected here from then on.
    pub async fn serve_tls(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), rustls::Error> {
        let config = tls::server_config(self.certificates.clone())?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        if let Ok(addr) = listener.local_addr() {
            self.https_port.store(addr.port(), Ordering::Relaxed);
        }
        proxy::serve_tls(self.clone(), listener, acceptor, shutdown).await;
        self.https_port.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Serves `GET /metrics` on `listener` until `shutdown`.
    pub async fn serve_metrics(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) {
        proxy::serve_metrics(self, listener, shutdown).await;
    }
}
