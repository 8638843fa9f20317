//! The router's own HTTP/1.1 path for the common case: a request without a body, in origin
//! form, from an HTTP/1.1 client. It reads the head with `httparse`, writes a fresh head to
//! the app (so the app sees the router's reading of the request, never the client's bytes),
//! and relays the answer on an upstream connection the task owns while the request lasts —
//! no channel, no second task. Anything else (a body, `Transfer-Encoding`, an upgrade,
//! `Expect`, HTTP/1.0, an absolute or `*` target, more than 64 headers, a `Connection`
//! header naming other headers) hands the connection, with what was read of it, to hyper in
//! `proxy.rs`, which handles the full protocol.
//!
//! Request smuggling: the head the app gets is re-serialised from the parsed request with
//! CRLF line ends, and no body bytes follow it; a request whose framing is not "no body" is
//! never read here. An app's response must be framed plainly (one `Content-Length`, or
//! `Transfer-Encoding` ending in `chunked`, or read until close), else it is a 502 and the
//! upstream connection is dropped.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::chunked::ChunkedEnd;
use super::pages::Failure;
use super::table::Route;
use super::{ClientIo, Edge, HEADER_READ_TIMEOUT, UPSTREAM_TIMEOUT};

/// The longest request or response head read.
pub const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client connection waits for its next request before its buffers are freed.
const IDLE_RELEASE: Duration = Duration::from_secs(1);

/// How a client connection left the fast path.
pub enum Outcome {
    Closed,
    /// Hyper serves the rest of the connection, starting with these bytes.
    Handoff(BytesMut),
}

/// What a request head asks for.
enum Prepared {
    Partial,
    Hyper,
    Answer { consumed: usize, failure: Failure, route: Option<std::sync::Arc<Route>>, close: bool },
    Forward(Forward),
}

/// A request to send on: its head is in the output buffer.
struct Forward {
    consumed: usize,
    route: std::sync::Arc<Route>,
    /// The client asked to close after this response.
    close: bool,
    /// A `HEAD` request: the answer has no body whatever its headers say.
    head: bool,
    /// Safe to send twice (RFC 9110 §9.2.2): retried once when a pooled connection was dead.
    idempotent: bool,
}

/// How an app's response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// What an app's response head says.
struct Answer {
    consumed: usize,
    status: u16,
    framing: Framing,
    /// The app keeps the connection open after this response.
    upstream_keeps: bool,
}

/// Serves `client` until it closes, errs, `stop` fires between requests, or a request needs
/// hyper.
pub async fn serve<S: ClientIo>(
    edge: &Edge,
    client: &mut S,
    peer: SocketAddr,
    stop: &CancellationToken,
) -> Outcome {
    let peer_ip = peer.ip().to_string();
    let mut inbuf = BytesMut::new();
    let mut out: Vec<u8> = Vec::new();
    let mut ubuf = BytesMut::new();
    // One wait for the stop for the whole connection, not one registration per request.
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    // Buffers are given back while the connection waits for a next request for long
    // ([`IDLE_RELEASE`]), so an idle keep-alive connection holds no buffer. The timer is armed
    // once and left running across requests, not reset per request.
    let idle = tokio::time::sleep(IDLE_RELEASE);
    tokio::pin!(idle);
    let mut armed = false;
    loop {
        let deadline = tokio::time::Instant::now() + HEADER_READ_TIMEOUT;
        let prepared = loop {
            if !inbuf.is_empty() {
                out.clear();
                // The table as it is when the head is complete, not when the wait began.
                let redirect = |host: &str| edge.redirects_to_https(host);
                match prepare(&inbuf, &edge.table(), &peer_ip, S::SECURE, redirect, &mut out) {
                    Prepared::Partial => {}
                    other => break other,
                }
                if inbuf.len() >= MAX_HEAD {
                    break Prepared::Answer {
                        consumed: inbuf.len(),
                        failure: Failure::HeadTooLarge,
                        route: None,
                        close: true,
                    };
                }
            } else {
                // Between requests: wait without holding a buffer.
                let holding = inbuf.capacity() + out.capacity() + ubuf.capacity() > 0;
                if holding && !armed {
                    idle.as_mut().reset(tokio::time::Instant::now() + IDLE_RELEASE);
                    armed = true;
                }
                let ready = tokio::select! {
                    biased;
                    ready = tokio::time::timeout_at(deadline, client.readable()) => ready,
                    () = &mut stopped => return Outcome::Closed,
                    () = &mut idle, if armed => {
                        armed = false;
                        (inbuf, out, ubuf) = (BytesMut::new(), Vec::new(), BytesMut::new());
                        continue;
                    }
                };
                if !matches!(ready, Ok(Ok(()))) {
                    return Outcome::Closed;
                }
            }
            // Small first buffers: most heads fit in 2 KiB, and an idle connection's pages count.
            if inbuf.capacity() - inbuf.len() < 256 {
                inbuf.reserve(2048);
            }
            // `read_buf`, not `try_read_buf`: only the former takes a short read as "drained"
            // and waits for the next event instead of trying the socket again.
            match tokio::time::timeout_at(deadline, client.read_buf(&mut inbuf)).await {
                Ok(Ok(0) | Err(_)) | Err(_) => return Outcome::Closed,
                Ok(Ok(_)) => {}
            }
        };
        match prepared {
            Prepared::Partial | Prepared::Hyper => return Outcome::Handoff(inbuf),
            Prepared::Answer { consumed, failure, route, close } => {
                inbuf.advance(consumed);
                out.clear();
                failure.write_response(close, &mut out);
                if let Some(route) = route {
                    edge.metrics.record(&route.name, failure.status(), Duration::ZERO);
                }
                if write_client(client, &out, edge.stall).await.is_err() || close {
                    return Outcome::Closed;
                }
            }
            Prepared::Forward(forward) => {
                inbuf.advance(forward.consumed);
                let Some(authority) = forward.route.upstream.as_deref() else { return Outcome::Closed };
                edge.inflight_add(authority, 1);
                let kept = exchange(edge, client, authority, &forward, S::SECURE, &mut out, &mut ubuf).await;
                edge.inflight_add(authority, -1);
                if !kept || forward.close {
                    return Outcome::Closed;
                }
            }
        }
        if stop.is_cancelled() {
            return Outcome::Closed;
        }
    }
}

fn is(name: &str, wanted: &str) -> bool {
    name.eq_ignore_ascii_case(wanted)
}

fn trim(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

/// Parses a request head at the start of `buf` and, when it can be forwarded here, writes the
/// head for the app into `out`. `secure`: it came over TLS; `redirect`: whether a plain
/// request for a host goes to HTTPS (answered on the hyper path).
fn prepare(
    buf: &[u8],
    table: &super::Table,
    peer_ip: &str,
    secure: bool,
    redirect: impl Fn(&str) -> bool,
    out: &mut Vec<u8>,
) -> Prepared {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let consumed = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Prepared::Partial,
        Err(httparse::Error::TooManyHeaders) => return Prepared::Hyper,
        Err(_) => {
            return Prepared::Answer {
                consumed: buf.len(),
                failure: Failure::BadRequest,
                route: None,
                close: true,
            };
        }
    };
    let (Some(method), Some(path), Some(1)) = (request.method, request.path, request.version) else {
        return Prepared::Hyper;
    };
    // Not relative, or an ACME challenge (answered by the router itself, in `proxy.rs`).
    if !path.starts_with('/') || path.starts_with(super::ACME_CHALLENGE_PREFIX) {
        return Prepared::Hyper;
    }
    let mut host: Option<&[u8]> = None;
    let mut hosts = 0;
    let mut close = false;
    for header in request.headers.iter() {
        let name = header.name;
        if is(name, "host") {
            hosts += 1;
            host = Some(trim(header.value));
        } else if is(name, "content-length") {
            if trim(header.value) != b"0" {
                return Prepared::Hyper;
            }
        } else if is(name, "transfer-encoding") || is(name, "upgrade") || is(name, "expect") {
            return Prepared::Hyper;
        } else if is(name, "connection") {
            for token in header.value.split(|b| *b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
                    return Prepared::Hyper;
                }
            }
        }
    }
    let bad = |close| Prepared::Answer { consumed, failure: Failure::BadRequest, route: None, close };
    if hosts > 1 {
        return bad(true);
    }
    let Ok(host) = std::str::from_utf8(host.unwrap_or_default()) else { return bad(true) };
    let Some(route) = table.lookup(host).cloned() else {
        return Prepared::Answer { consumed, failure: Failure::NoApp, route: None, close };
    };
    if !secure && route.https_redirect && redirect(host) {
        return Prepared::Hyper;
    }
    if route.upstream.is_none() {
        return Prepared::Answer { consumed, failure: Failure::NotRunning, route: Some(route), close };
    }

    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut forwarded_for: Vec<&[u8]> = Vec::new();
    for header in request.headers.iter() {
        let name = header.name;
        if is(name, "x-forwarded-for") {
            forwarded_for.push(trim(header.value));
            continue;
        }
        if is(name, "x-forwarded-proto") || is(name, "x-forwarded-host") || super::is_hop_by_hop(name) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(header.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    for prior in forwarded_for.into_iter().filter(|p| !p.is_empty()) {
        out.extend_from_slice(prior);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(peer_ip.as_bytes());
    out.extend_from_slice(if secure {
        b"\r\nX-Forwarded-Proto: https\r\n".as_slice()
    } else {
        b"\r\nX-Forwarded-Proto: http\r\n".as_slice()
    });
    if !host.is_empty() {
        out.extend_from_slice(b"X-Forwarded-Host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let idempotent = matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE");
    Prepared::Forward(Forward { consumed, route, close, head: method == "HEAD", idempotent })
}

/// Parses an app's response head at the start of `buf`; when complete, writes the head for
/// the client into `out` (with [`super::HSTS`] when `hsts` and the app sent none). `Err` when
/// the head is malformed or its framing unclear.
fn answer(
    buf: &[u8],
    head_request: bool,
    close_client: bool,
    hsts: bool,
    out: &mut Vec<u8>,
) -> Result<Option<Answer>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut response = httparse::Response::new(&mut headers);
    let consumed = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return if buf.len() >= MAX_HEAD { Err(()) } else { Ok(None) },
        Err(_) => return Err(()),
    };
    let (Some(version), Some(status)) = (response.version, response.code) else { return Err(()) };
    if (100..200).contains(&status) {
        // Informational answers (100, 103) are dropped; 101 was never asked for.
        return if status == 101 {
            Err(())
        } else {
            Ok(Some(Answer { consumed, status, framing: Framing::Empty, upstream_keeps: true }))
        };
    }
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut upstream_keeps = version == 1;
    let mut hsts = hsts;
    // Headers the app's `Connection` names as hop-by-hop.
    let mut named: Vec<&[u8]> = Vec::new();
    for header in response.headers.iter() {
        if is(header.name, "content-length") {
            let value = std::str::from_utf8(trim(header.value))
                .ok()
                .filter(|v| v.bytes().all(|b| b.is_ascii_digit()));
            let Some(n) = value.and_then(|v| v.parse::<u64>().ok()) else { return Err(()) };
            if length.is_some_and(|l| l != n) {
                return Err(());
            }
            length = Some(n);
        } else if is(header.name, "transfer-encoding") {
            if chunked.is_some() {
                return Err(());
            }
            let last = header.value.rsplit(|b| *b == b',').next().map(trim).unwrap_or_default();
            chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
        } else if is(header.name, "strict-transport-security") {
            hsts = false;
        } else if is(header.name, "connection") {
            for token in header.value.split(|b| *b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    upstream_keeps = false;
                } else if !token.is_empty() {
                    named.push(token);
                }
            }
        }
    }
    let framing = if head_request || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) | (None, None) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
        }
    };
    if framing == Framing::UntilClose {
        upstream_keeps = false;
    }
    let close_client = close_client || framing == Framing::UntilClose;

    // httparse reads exactly three digits.
    let digits = [status / 100, status / 10 % 10, status % 10].map(|d| b'0' + (d as u8));
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&digits);
    out.push(b' ');
    out.extend_from_slice(response.reason.unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
    for header in response.headers.iter() {
        let name = header.name;
        let keep_framing = is(name, "transfer-encoding") && framing == Framing::Chunked;
        let drop_length = is(name, "content-length") && chunked.is_some();
        let listed = named.iter().any(|n| n.eq_ignore_ascii_case(name.as_bytes()));
        if (super::is_hop_by_hop(name) && !keep_framing) || drop_length || listed {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(header.value);
        out.extend_from_slice(b"\r\n");
    }
    if hsts {
        out.extend_from_slice(b"Strict-Transport-Security: ");
        out.extend_from_slice(super::HSTS.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close_client {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(Answer { consumed, status, framing, upstream_keeps }))
}

/// Why no response head came from the app.
#[derive(Debug, Clone, Copy)]
enum Failed {
    /// Before any byte of an answer: another connection may try again.
    Early,
    Late,
    TimedOut,
}

async fn connect(authority: &str) -> Option<TcpStream> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority)).await.ok()?.ok()?;
    let _ = stream.set_nodelay(true);
    Some(stream)
}

/// Sends the head in `request` on `upstream` and reads the first bytes of the answer into
/// `ubuf`.
async fn send(
    upstream: &mut TcpStream,
    request: &[u8],
    ubuf: &mut BytesMut,
    deadline: tokio::time::Instant,
) -> Result<(), Failed> {
    ubuf.clear();
    if ubuf.capacity() < 2048 {
        ubuf.reserve(4096);
    }
    if upstream.write_all(request).await.is_err() {
        return Err(Failed::Early);
    }
    match tokio::time::timeout_at(deadline, upstream.read_buf(ubuf)).await {
        Ok(Ok(0) | Err(_)) => Err(Failed::Early),
        Ok(Ok(_)) => Ok(()),
        Err(_) => Err(Failed::TimedOut),
    }
}

/// One request's round trip to the app and the answer's relay to the client; false when the
/// client connection must close.
async fn exchange<S: ClientIo>(
    edge: &Edge,
    client: &mut S,
    authority: &str,
    forward: &Forward,
    secure: bool,
    out: &mut Vec<u8>,
    ubuf: &mut BytesMut,
) -> bool {
    let started = Instant::now();
    let route = forward.route.name.as_str();
    let hsts = secure && forward.route.hsts;
    let (mut upstream, parsed) = match round_trip(edge, authority, forward, hsts, out, ubuf).await {
        Ok(done) => done,
        Err(failed) => {
            let failure =
                if matches!(failed, Failed::TimedOut) { Failure::Timeout } else { Failure::BadGateway };
            edge.metrics.record(route, failure.status(), started.elapsed());
            out.clear();
            failure.write_response(forward.close, out);
            return write_client(client, out, edge.stall).await.is_ok();
        }
    };
    edge.metrics.record(route, parsed.status, started.elapsed());
    ubuf.advance(parsed.consumed);
    if relay(client, &mut upstream, parsed.framing, out, ubuf, edge.stall).await.is_err() {
        return false;
    }
    if parsed.upstream_keeps && ubuf.is_empty() {
        edge.pool_put(authority, upstream);
    }
    !forward.close && parsed.framing != Framing::UntilClose
}

/// Sends the request head in `out` to the app (once more on a fresh connection when a pooled
/// one turns out dead and the request may be repeated) and reads the answer's head, skipping
/// informational ones; on success `out` holds the head for the client and `ubuf` starts with
/// it.
async fn round_trip(
    edge: &Edge,
    authority: &str,
    forward: &Forward,
    hsts: bool,
    out: &mut Vec<u8>,
    ubuf: &mut BytesMut,
) -> Result<(TcpStream, Answer), Failed> {
    let deadline = tokio::time::Instant::now() + UPSTREAM_TIMEOUT;
    let pooled = match edge.pool_take(authority) {
        Some(mut stream) => match send(&mut stream, out, ubuf, deadline).await {
            Ok(()) => Some(stream),
            Err(Failed::Early) if forward.idempotent => None,
            Err(failed) => return Err(failed),
        },
        None => None,
    };
    let mut upstream = match pooled {
        Some(stream) => stream,
        None => {
            let mut fresh = connect(authority).await.ok_or(Failed::Early)?;
            send(&mut fresh, out, ubuf, deadline).await?;
            fresh
        }
    };
    out.clear();
    loop {
        match answer(ubuf, forward.head, forward.close, hsts, out) {
            Ok(Some(a)) if (100..200).contains(&a.status) => {
                ubuf.advance(a.consumed);
                out.clear();
            }
            Ok(Some(a)) => return Ok((upstream, a)),
            Ok(None) => {}
            Err(()) => return Err(Failed::Late),
        }
        if ubuf.capacity() - ubuf.len() < 1024 {
            ubuf.reserve(16 * 1024);
        }
        match tokio::time::timeout_at(deadline, upstream.read_buf(ubuf)).await {
            Ok(Ok(0) | Err(_)) => return Err(Failed::Late),
            Ok(Ok(_)) => {}
            Err(_) => return Err(Failed::TimedOut),
        }
    }
}

/// Where a response body ends: after so many bytes, or where its chunked framing says.
enum BodyEnd {
    Length(u64),
    Chunked(ChunkedEnd),
}

impl BodyEnd {
    /// How many of `bytes` belong to the body, and whether the body ends there.
    fn take(&mut self, bytes: &[u8]) -> Result<(usize, bool), ()> {
        match self {
            BodyEnd::Length(left) => {
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(bytes.len());
                *left -= take as u64;
                Ok((take, *left == 0))
            }
            BodyEnd::Chunked(end) => {
                let done = end.feed(bytes).map_err(drop)?;
                Ok((done.unwrap_or(bytes.len()), done.is_some()))
            }
        }
    }
}

/// Writes `bytes` to the client; an error when it has not taken them within `stall` (a client
/// that stopped reading holds no task and no upstream connection for ever).
async fn write_client<S: ClientIo>(client: &mut S, bytes: &[u8], stall: Duration) -> Result<(), ()> {
    tokio::time::timeout(stall, client.write_all(bytes)).await.map_err(drop)?.map_err(drop)
}

/// Reads more of the answer into `ubuf`: how many bytes; an error when the app sent nothing
/// for `stall` (a body that stalls) or the read failed.
async fn read_upstream(upstream: &mut TcpStream, ubuf: &mut BytesMut, stall: Duration) -> Result<usize, ()> {
    tokio::time::timeout(stall, upstream.read_buf(ubuf)).await.map_err(drop)?.map_err(drop)
}

/// Sends the head in `out` and the body after it (its first bytes in `ubuf`) to the client,
/// the head and the body's first bytes in one write. On success `ubuf` holds what the app sent
/// beyond this response. The app may pause at most `stall` between reads, and the client
/// take at most `stall` for each write; past it, both connections are closed.
async fn relay<S: ClientIo>(
    client: &mut S,
    upstream: &mut TcpStream,
    framing: Framing,
    out: &mut Vec<u8>,
    ubuf: &mut BytesMut,
    stall: Duration,
) -> Result<(), ()> {
    let mut end = match framing {
        Framing::Empty => BodyEnd::Length(0),
        Framing::Length(n) => BodyEnd::Length(n),
        Framing::Chunked => BodyEnd::Chunked(ChunkedEnd::default()),
        Framing::UntilClose => {
            out.extend_from_slice(ubuf);
            ubuf.clear();
            write_client(client, out, stall).await?;
            loop {
                ubuf.clear();
                ubuf.reserve(16 * 1024);
                if read_upstream(upstream, ubuf, stall).await? == 0 {
                    break;
                }
                write_client(client, ubuf, stall).await?;
            }
            ubuf.clear();
            let _ = client.shutdown().await;
            return Ok(());
        }
    };
    let mut head = Some(out);
    loop {
        let (take, done) = end.take(ubuf)?;
        match head.take() {
            Some(out) => {
                out.extend_from_slice(&ubuf[..take]);
                write_client(client, out, stall).await?;
            }
            None => write_client(client, &ubuf[..take], stall).await?,
        }
        ubuf.advance(take);
        if done {
            return Ok(());
        }
        ubuf.clear();
        ubuf.reserve(16 * 1024);
        if read_upstream(upstream, ubuf, stall).await? == 0 {
            return Err(());
        }
    }
}

/// The one-route table the request checks run against (`a.localhost` → a dead port).
use super::fuzzing::BrokenRule;

pub(super) fn fuzz_table() -> super::Table {
    use wisehosting_proto::messages::{RouteEntry, RouteTable};
    let entry = RouteEntry {
        app_id: 1,
        hosts: vec!["a.localhost".into()],
        port: Some(1),
        https_redirect: true,
        hsts: true,
    };
    super::Table::from_message(&RouteTable { version: 1, routes: vec![entry] })
}

/// Checks what the fast path makes of `input` (proptest here, the fuzz target in `fuzz/`): a
/// forwarded head is exactly one complete, bodyless HTTP/1.1 request with the same method and
/// target, carrying no framing or hop-by-hop header. `Err` names the broken rule.
pub(super) fn check_request(input: &[u8]) -> Result<(), BrokenRule> {
    check_request_over(input, false)?;
    check_request_over(input, true)
}

fn check_request_over(input: &[u8], secure: bool) -> Result<(), BrokenRule> {
    let ensure = |ok: bool, what: &str| if ok { Ok(()) } else { Err(BrokenRule::from(what)) };
    let mut out = Vec::new();
    let Prepared::Forward(forward) = prepare(input, &fuzz_table(), "127.0.0.1", secure, |_| false, &mut out)
    else {
        return Ok(());
    };
    ensure(forward.consumed <= input.len(), "consumed more than was read")?;
    let mut original_headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut original = httparse::Request::new(&mut original_headers);
    ensure(
        matches!(original.parse(input), Ok(httparse::Status::Complete(_))),
        "forwarded an incomplete head",
    )?;
    // What was read as one request has no body: nothing after it belongs to it.
    for header in original.headers.iter() {
        ensure(!header.name.eq_ignore_ascii_case("transfer-encoding"), "a framed body read as none")?;
        if header.name.eq_ignore_ascii_case("content-length") {
            ensure(header.value.trim_ascii() == b"0", "a body read as none")?;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS + 3];
    let mut sent = httparse::Request::new(&mut headers);
    ensure(
        sent.parse(&out) == Ok(httparse::Status::Complete(out.len())),
        "the head sent is not one whole request",
    )?;
    ensure(sent.method == original.method, "the method changed")?;
    ensure(sent.path == original.path, "the target changed")?;
    for header in sent.headers.iter() {
        let name = header.name.to_ascii_lowercase();
        ensure(
            !["transfer-encoding", "connection", "upgrade", "expect"].contains(&name.as_str()),
            &format!("{name} forwarded"),
        )?;
        if name == "content-length" {
            ensure(header.value.trim_ascii() == b"0", "a content length forwarded")?;
        }
    }
    Ok(())
}

/// Checks what the fast path makes of an app's response head: never a panic, an
/// informational head is dropped, and a final head it accepts was written for the client as
/// one whole head (no body for a HEAD request).
pub(super) fn check_response(input: &[u8]) -> Result<(), BrokenRule> {
    for (head_request, close, hsts) in [(false, false, false), (true, false, true), (false, true, true)] {
        let mut out = Vec::new();
        if let Ok(Some(parsed)) = answer(input, head_request, close, hsts, &mut out) {
            if parsed.consumed > input.len() {
                return Err(BrokenRule::from("consumed more than was read"));
            }
            if (100..200).contains(&parsed.status) {
                // Informational answers are dropped, never written for the client.
                if !out.is_empty() {
                    return Err(BrokenRule::from("an informational answer was written for the client"));
                }
                continue;
            }
            let mut headers = [httparse::EMPTY_HEADER; 110];
            let mut sent = httparse::Response::new(&mut headers);
            if sent.parse(&out) != Ok(httparse::Status::Complete(out.len())) {
                return Err(BrokenRule::from("the head written for the client is not one whole head"));
            }
            if head_request && parsed.framing != Framing::Empty {
                return Err(BrokenRule::from("a HEAD answer given a body"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn routed_table() -> super::super::Table {
        fuzz_table()
    }

    fn check(input: &[u8]) -> Result<(), TestCaseError> {
        check_request(input).map_err(|e| TestCaseError::fail(e.0))
    }

    #[test]
    fn bodyless_requests_are_forwarded_and_everything_else_is_handed_over_or_refused() {
        let kind = |input: &str| {
            let mut out = Vec::new();
            match prepare(input.as_bytes(), &routed_table(), "127.0.0.1", false, |_| false, &mut out) {
                Prepared::Partial => "partial".to_string(),
                Prepared::Hyper => "hyper".to_string(),
                Prepared::Answer { failure, .. } => failure.status().to_string(),
                Prepared::Forward(_) => String::from_utf8_lossy(&out).to_string(),
            }
        };
        let forwarded = kind(
            "GET /x?y HTTP/1.1\r\nHost: a.localhost\r\nX-Forwarded-For: 10.0.0.1\r\nConnection: keep-alive\r\n\r\n",
        );
        assert_eq!(
            forwarded,
            "GET /x?y HTTP/1.1\r\nHost: a.localhost\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.1\r\n\
             X-Forwarded-Proto: http\r\nX-Forwarded-Host: a.localhost\r\n\r\n"
        );
        assert_eq!(kind("GET / HTTP/1.1\r\nHost: a.localhost\r\n"), "partial");
        for handed_over in [
            "POST / HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a.localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: a.localhost\r\n\r\n",
            "GET http://a.localhost/ HTTP/1.1\r\nHost: a.localhost\r\n\r\n",
        ] {
            assert_eq!(kind(handed_over), "hyper", "{handed_over:?}");
        }
        assert_eq!(kind("GET / HTTP/1.1\r\nHost: a.localhost\r\nHost: b\r\n\r\n"), "400");
        assert_eq!(kind("GET / HTTP/1.1\r\nHost: nowhere.localhost\r\n\r\n"), "404");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_are_answered_handed_over_or_forwarded_as_one_bodyless_request(
            input in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            check(&input)?;
        }

        #[test]
        fn request_like_heads_are_forwarded_as_one_bodyless_request(
            method in "GET|HEAD|POST|DELETE|OPTIONS|G\\x00T",
            path in "/[!-~]{0,20}",
            version in "HTTP/1\\.1|HTTP/1\\.1|HTTP/1\\.0",
            headers in proptest::collection::vec(
                (
                    "Host|host|Content-Length|Transfer-Encoding|Connection|Upgrade|Expect|X-Forwarded-For|X-A|Te|Trailer",
                    "a\\.localhost|0|5|chunked|close|keep-alive|Upgrade|x, close|[ -~]{0,10}",
                ),
                0..8,
            ),
            line_end in "\r\n|\n",
        ) {
            let mut input = format!("{method} {path} {version}{line_end}Host: a.localhost{line_end}");
            for (name, value) in headers {
                input.push_str(&format!("{name}: {value}{line_end}"));
            }
            input.push_str(&line_end);
            input.push_str("GET /next HTTP/1.1\r\n\r\n");
            check(input.as_bytes())?;
        }
    }
}
