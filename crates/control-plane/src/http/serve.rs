//! The accept loop: HTTP/1.1 with upgrades, a header-read timeout (a client that opens a
//! socket and trickles or sends nothing is dropped after `api_server.header_read_timeout_secs`), and graceful
//! shutdown (stop accepting, let in-flight requests finish, then return). `axum::serve` sets no
//! timer, so it has no header timeout; this loop is the same shape with one.
//!
//! With TLS ([`crate::tls::Reloadable`]), each connection's handshake runs in the connection's
//! own task within the same header timeout, so a silent client holds up no other.
//!
//! Upgraded WebSocket connections leave hyper's hands; the hub closes them itself.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// How long shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    tls: Option<Arc<crate::tls::Reloadable>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let connections = TaskTracker::new();
    loop {
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: wait a
                    // moment instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(remote));
            let router = router.clone();
            async move {
                Ok::<_, Infallible>(router.oneshot(req.map(Body::new)).await.unwrap_or_else(|e| match e {}))
            }
        });
        let stop = shutdown.clone();
        let acceptor = tls.as_ref().map(|tls| tls.acceptor());
        connections.spawn(async move {
            match acceptor {
                None => serve_connection(stream, service, header_read_timeout, stop, remote).await,
                Some(acceptor) => match tokio::time::timeout(header_read_timeout, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(tls)) => serve_connection(tls, service, header_read_timeout, stop, remote).await,
                    Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait()).await.is_err() {
        tracing::warn!(
            "in-flight requests did not finish within {} s; stopping anyway",
            DRAIN_TIMEOUT.as_secs()
        );
    }
    Ok(())
}

/// One connection's HTTP/1.1 with upgrades, drained gracefully on shutdown.
async fn serve_connection<IO, S>(
    io: IO,
    service: S,
    header_read_timeout: Duration,
    stop: CancellationToken,
    remote: SocketAddr,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<Incoming>,
            Response = axum::response::Response,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => log_end(result, remote),
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            log_end(conn.await, remote);
        }
    }
}

fn log_end(result: Result<(), hyper::Error>, remote: SocketAddr) {
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}
