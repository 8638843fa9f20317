//! The proxying itself: one task per client connection. Requests start on the fast path
//! (`fast.rs`); a request it leaves alone hands the connection to hyper here, which sends each
//! request to its app over a pooled keep-alive client and splices upgrades byte for byte.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::fast::{self, Outcome};
use super::pages::Failure;
use super::{ClientIo, Edge, HEADER_READ_TIMEOUT, TlsStream, UPSTREAM_TIMEOUT};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

/// Serves plain HTTP on `listener` until `shutdown`.
pub async fn serve(edge: Arc<Edge>, listener: tokio::net::TcpListener, shutdown: CancellationToken) {
    accept_each(listener, shutdown, move |stream, peer, stop| connection(edge.clone(), stream, peer, stop))
        .await;
}

/// Serves HTTPS on `listener` until `shutdown`: the TLS handshake (certificate by SNI) under
/// the header timeout, then HTTP/2 when the client chose it by ALPN, else HTTP/1.1 as on the
/// plain listener.
pub async fn serve_tls(
    edge: Arc<Edge>,
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shutdown: CancellationToken,
) {
    accept_each(listener, shutdown, move |stream, peer, stop| {
        let (edge, acceptor) = (edge.clone(), acceptor.clone());
        async move {
            let Ok(Ok(tls)) = tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await else {
                return;
            };
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                Box::pin(serve_h2(edge, tls, peer, stop)).await;
            } else {
                connection(edge, tls, peer, stop).await;
            }
        }
    })
    .await;
}

/// Accepts connections until `shutdown`, each served by `serve` in its own task; requests in
/// flight at shutdown get 5 s to finish.
async fn accept_each<F, Fut>(listener: tokio::net::TcpListener, shutdown: CancellationToken, serve: F)
where
    F: Fn(tokio::net::TcpStream, SocketAddr, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "edge accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let stop = shutdown.clone();
        let work = serve(stream, peer, stop.clone());
        tokio::spawn(async move {
            let grace = async {
                stop.cancelled().await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            };
            tokio::select! {
                () = work => {}
                () = grace => {}
            }
        });
    }
}

/// One HTTP/1.1 client connection: the fast path, then hyper for what it hands over.
async fn connection<S: ClientIo>(edge: Arc<Edge>, mut stream: S, peer: SocketAddr, stop: CancellationToken) {
    match fast::serve(&edge, &mut stream, peer, &stop).await {
        Outcome::Closed => {}
        Outcome::Handoff(read) => {
            let io = Rewind { read: read.freeze(), inner: stream, stall: edge.stall, write_stalled: None };
            // Boxed: the rare hyper path does not make every connection's task larger.
            Box::pin(serve_with_hyper(edge.clone(), io, peer, stop)).await;
        }
    }
}

/// Serves the rest of a connection with hyper: requests the fast path leaves alone.
async fn serve_with_hyper<S: ClientIo>(
    edge: Arc<Edge>,
    io: Rewind<S>,
    peer: SocketAddr,
    stop: CancellationToken,
) {
    let service = service_fn(move |req| {
        let edge = edge.clone();
        async move { Ok::<_, Infallible>(handle(edge, req, peer, S::SECURE).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// An HTTP/2 connection (TLS with ALPN `h2`): every request through hyper, to the app over
/// HTTP/1.1.
async fn serve_h2(edge: Arc<Edge>, io: TlsStream, peer: SocketAddr, stop: CancellationToken) {
    let service = service_fn(move |req| {
        let edge = edge.clone();
        async move { Ok::<_, Infallible>(handle(edge, req, peer, true).await) }
    });
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(io), service);
    // Not shared with the HTTP/1.1 one: a generic helper over both connection types loses
    // their `Send` to a higher-ranked lifetime.
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A client connection whose first bytes were already read by the fast path. A write the
/// client does not take within `stall` (it stopped reading) fails, which ends the connection.
struct Rewind<S> {
    read: Bytes,
    inner: S,
    stall: Duration,
    /// Armed while a write waits on the client.
    write_stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Rewind<S> {
    /// Passes a write's outcome on; a pending one fails once it has waited `stall`.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.write_stalled = None;
            return polled;
        }
        let stall = self.stall;
        let timer = self.write_stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// An app's response body that may pause at most `stall` between frames; past it, it ends
/// with an error (the client connection is closed, as for an app that died mid-body).
struct StallBody {
    inner: Incoming,
    stall: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl StallBody {
    fn new(inner: Incoming, stall: Duration) -> StallBody {
        StallBody { inner, stall, timer: Box::pin(tokio::time::sleep(stall)) }
    }
}

impl hyper::body::Body for StallBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.stall;
                this.timer.as_mut().reset(next);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err("the app's response body stalled".into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl<S: ClientIo> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.read.is_empty() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: ClientIo> AsyncWrite for Rewind<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

pub async fn serve_metrics(edge: Arc<Edge>, listener: tokio::net::TcpListener, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
        };
        let edge = edge.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let edge = edge.clone();
                async move {
                    let response = if req.uri().path() == "/metrics" {
                        text(StatusCode::OK, "text/plain; version=0.0.4", edge.render_metrics())
                    } else {
                        text(StatusCode::NOT_FOUND, "text/plain", "only /metrics here\n".into())
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The router's own page for `failure`.
fn page(failure: Failure) -> Response<Body> {
    let status = StatusCode::from_u16(failure.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = text(status, "text/html; charset=utf-8", failure.html());
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in super::HOP_BY_HOP {
        headers.remove(name);
    }
}

/// `200 text/plain` with a challenge's key authorization.
fn acme_answer(key_authorization: String) -> Response<Body> {
    let mut response = text(StatusCode::OK, "text/plain", key_authorization);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn is_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")));
    if connection_upgrade { headers.get(header::UPGRADE).cloned() } else { None }
}

/// `308` to the same place over HTTPS (`port` unless it is 443).
fn to_https(host: &str, path: &str, port: u16) -> Response<Body> {
    let host = super::table::bare_host(host);
    let location =
        if port == 443 { format!("https://{host}{path}") } else { format!("https://{host}:{port}{path}") };
    let mut response = text(StatusCode::PERMANENT_REDIRECT, "text/plain", format!("Moved to {location}\n"));
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

async fn handle(
    edge: Arc<Edge>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    secure: bool,
) -> Response<Body> {
    let started = Instant::now();
    // A pending ACME challenge is answered here, whatever the host; other tokens go on to the
    // app (which may run its own ACME client).
    if let Some(answer) =
        req.uri().path().strip_prefix(super::ACME_CHALLENGE_PREFIX).and_then(|token| edge.challenge(token))
    {
        return acme_answer(answer);
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or_default()
        .to_string();
    let table = edge.table();
    let Some(route) = table.lookup(&host).cloned() else {
        return page(Failure::NoApp);
    };
    if !secure && route.https_redirect && edge.redirects_to_https(&host) {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        return to_https(&host, path, edge.https_port());
    }
    let Some(authority) = route.upstream.clone() else {
        let response = page(Failure::NotRunning);
        edge.metrics.record(&route.name, 503, started.elapsed());
        return response;
    };

    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = &upgrade {
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol.clone());
    }
    let forwarded_for = match parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        parts.headers.insert("x-forwarded-for", v);
    }
    parts
        .headers
        .insert("x-forwarded-proto", HeaderValue::from_static(if secure { "https" } else { "http" }));
    if let Ok(v) = HeaderValue::from_str(&host) {
        parts.headers.insert("x-forwarded-host", v.clone());
        // HTTP/2 names the host in `:authority`; the app, spoken to in HTTP/1.1, needs `Host`.
        parts.headers.entry(header::HOST).or_insert(v);
    }
    parts.version = hyper::Version::HTTP_11;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("http://{authority}{path}").parse() else {
        return page(Failure::BadRequest);
    };
    parts.uri = uri;
    let upstream_request = Request::from_parts(parts, body);

    edge.inflight_add(&authority, 1);
    let sent = tokio::time::timeout(UPSTREAM_TIMEOUT, edge.client.request(upstream_request)).await;
    let response = match sent {
        Ok(Ok(mut response)) => {
            if response.status() == StatusCode::SWITCHING_PROTOCOLS
                && let Some(client_upgrade) = client_upgrade
            {
                let upstream_upgrade = hyper::upgrade::on(&mut response);
                let (edge, authority) = (edge.clone(), authority.clone());
                // The upgraded connection counts as in flight until either side closes it.
                edge.inflight_add(&authority, 1);
                tokio::spawn(async move {
                    if let (Ok(client), Ok(upstream)) = (client_upgrade.await, upstream_upgrade.await) {
                        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                    edge.inflight_add(&authority, -1);
                });
                let (parts, _) = response.into_parts();
                Response::from_parts(parts, Full::new(Bytes::new()).map_err(|never| match never {}).boxed())
            } else {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                if secure && route.hsts {
                    parts
                        .headers
                        .entry(header::STRICT_TRANSPORT_SECURITY)
                        .or_insert(HeaderValue::from_static(super::HSTS));
                }
                // The body streams after this returns; its end is not tracked, the drain
                // delay after the route moves covers it. A body that stalls is cut.
                Response::from_parts(parts, StallBody::new(body, edge.stall).boxed())
            }
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, upstream = %authority, "upstream request failed");
            page(Failure::BadGateway)
        }
        Err(_) => page(Failure::Timeout),
    };
    edge.inflight_add(&authority, -1);
    edge.metrics.record(&route.name, response.status().as_u16(), started.elapsed());
    response
}
