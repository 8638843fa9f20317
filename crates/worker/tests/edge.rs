//! The edge router against real sockets: a local upstream that echoes what it received, a
//! WebSocket echo server, and a port where nothing listens.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wisehosting_proto::messages::{RouteEntry, RouteTable};
use wisehosting_worker::edge::{Edge, Table};

/// An upstream on a free port that runs `handle` for each connection it accepts.
async fn upstream_each<F, Fut>(handle: F) -> u16
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(stream));
        }
    });
    port
}

/// An upstream that answers every request with the request head it received, as text.
async fn echo_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                // Keep-alive: answer requests on this connection until it closes.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        let response = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{head}",
                            head.len()
                        );
                        if stream.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

/// A WebSocket server that echoes every text message back, upper-cased.
async fn websocket_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
                while let Some(Ok(message)) = ws.next().await {
                    if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                        let _ =
                            ws.send(tokio_tungstenite::tungstenite::Message::text(text.to_uppercase())).await;
                    }
                }
            });
        }
    });
    port
}

fn table(routes: RouteTable) -> Table {
    Table::from_message(&routes)
}

/// A pushed table of `(app-<id>, host, port)` entries.
fn config(entries: &[(&str, &str, Option<u16>)]) -> RouteTable {
    let routes = entries
        .iter()
        .map(|(name, host, port)| RouteEntry {
            app_id: name.trim_start_matches("app-").parse().expect("app-<id>"),
            hosts: vec![host.to_string()],
            port: *port,
            https_redirect: true,
            hsts: false,
        })
        .collect();
    RouteTable { version: 1, routes }
}

async fn start_edge() -> (Arc<Edge>, String, String, CancellationToken) {
    let edge = Edge::new();
    let stop = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(edge.clone().serve(listener, stop.clone()));
    let metrics = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let metrics_url = format!("http://{}/metrics", metrics.local_addr().expect("addr"));
    tokio::spawn(edge.clone().serve_metrics(metrics, stop.clone()));
    (edge, base, metrics_url, stop)
}

/// An edge router with one route, `app-1`: `host` → `127.0.0.1:port`.
async fn edge_routing(host: &str, port: u16) -> (Arc<Edge>, String, CancellationToken) {
    let (edge, base, _, stop) = start_edge().await;
    edge.swap(table(config(&[("app-1", host, Some(port))])));
    (edge, base, stop)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

#[tokio::test]
async fn requests_reach_the_app_named_by_host_with_forwarded_headers_and_clear_error_pages() {
    let up = echo_upstream().await;
    let dead = free_port();
    let (edge, base, metrics_url, stop) = start_edge().await;
    edge.swap(table(config(&[
        ("app-1", "hello.localhost", Some(up)),
        ("app-2", "stopped.localhost", None),
        ("app-3", "dead.localhost", Some(dead)),
    ])));
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let get = |host: &'static str, path: &'static str| {
        client
            .get(format!("{base}{path}"))
            .header("host", host)
            .header("x-forwarded-for", "203.0.113.9")
            .send()
    };

    let echoed = get("Hello.LOCALHOST:8080", "/a/b?c=d").await.expect("send");
    assert_eq!(echoed.status(), 200);
    let head = echoed.text().await.expect("text").to_ascii_lowercase();
    assert!(head.starts_with("get /a/b?c=d http/1.1"), "{head}");
    assert!(head.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1"), "{head}");
    assert!(head.contains("x-forwarded-proto: http"), "{head}");
    assert!(head.contains("x-forwarded-host: hello.localhost:8080"), "{head}");
    assert!(head.contains("host: hello.localhost:8080"), "the app sees its own hostname: {head}");

    let unknown = get("nobody.localhost", "/").await.expect("send");
    assert_eq!(unknown.status(), 404);
    assert!(unknown.text().await.expect("text").contains("No app on this platform answers to this hostname"));
    let stopped = get("stopped.localhost", "/").await.expect("send");
    assert_eq!(stopped.status(), 503);
    assert!(stopped.text().await.expect("text").contains("not running right now"));
    let refused = get("dead.localhost", "/").await.expect("send");
    assert_eq!(refused.status(), 502);
    assert!(refused.text().await.expect("text").contains("did not answer"));

    let metrics = client.get(&metrics_url).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("wisehosting_edge_requests_total{app=\"app-1\",class=\"2xx\"} 1"), "{metrics}");
    assert!(metrics.contains("wisehosting_edge_requests_total{app=\"app-2\",class=\"5xx\"} 1"), "{metrics}");
    assert!(metrics.contains("wisehosting_edge_requests_total{app=\"app-3\",class=\"5xx\"} 1"), "{metrics}");
    assert!(
        metrics.contains("wisehosting_edge_request_duration_seconds_count{app=\"app-1\"} 1"),
        "{metrics}"
    );
    stop.cancel();
}

#[tokio::test]
async fn one_client_connection_is_kept_alive_across_requests_and_a_table_swap() {
    let (a, b) = (echo_upstream().await, echo_upstream().await);
    let (edge, base, stop) = edge_routing("ka.localhost", a).await;
    let addr = base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let mut answers = Vec::new();
    for round in 0..3 {
        if round == 2 {
            edge.swap(table(config(&[("app-1", "ka.localhost", Some(b))])));
        }
        stream.write_all(b"GET /x HTTP/1.1\r\nHost: ka.localhost\r\n\r\n").await.expect("write");
        let mut buf = vec![0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("answer")
            .expect("read");
        answers.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert!(answers.iter().all(|a| a.starts_with("HTTP/1.1 200")), "{answers:?}");
    assert!(!answers[0].to_ascii_lowercase().contains("connection: close"));
    assert!(edge.table().uses(&format!("127.0.0.1:{b}")) && !edge.table().uses(&format!("127.0.0.1:{a}")));
    stop.cancel();
}

#[tokio::test]
async fn websocket_upgrades_pass_through_to_the_app() {
    let ws_port = websocket_upstream().await;
    let (edge, base, _, stop) = start_edge().await;
    edge.swap(table(config(&[("app-9", "chat.localhost", Some(ws_port))])));
    let addr = base.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        "ws://chat.localhost/socket",
    )
    .expect("request");
    let (mut ws, response) =
        tokio_tungstenite::client_async(request, stream).await.expect("upgrade through the edge");
    assert_eq!(response.status(), 101);
    for word in ["hello", "zero downtime"] {
        ws.send(tokio_tungstenite::tungstenite::Message::text(word)).await.expect("send");
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo")
            .expect("open")
            .expect("frame");
        assert_eq!(echoed.into_text().expect("text").as_str(), word.to_uppercase());
    }
    // While the socket is open it counts as in flight: a drain waits for it.
    edge.swap(Table::default());
    let upstream = format!("127.0.0.1:{ws_port}");
    assert!(
        !edge.wait_drained(&upstream, Duration::from_millis(300)).await,
        "an open WebSocket holds the drain"
    );
    ws.close(None).await.expect("close");
    drop(ws);
    assert!(edge.wait_drained(&upstream, Duration::from_secs(5)).await, "closed: drained");
    stop.cancel();
}

#[tokio::test]
async fn a_drain_waits_for_the_route_to_move_and_in_flight_requests_to_finish() {
    // An upstream that answers only after 500 ms.
    let slow = upstream_each(|mut stream| async move {
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ =
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow").await;
    })
    .await;
    let (edge, base, stop) = edge_routing("slow.localhost", slow).await;
    let upstream = format!("127.0.0.1:{slow}");
    assert!(!edge.wait_drained(&upstream, Duration::from_millis(100)).await, "still routed: not drained");
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let request = tokio::spawn(client.get(format!("{base}/")).header("host", "slow.localhost").send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    edge.swap(Table::default());
    assert!(!edge.wait_drained(&upstream, Duration::from_millis(100)).await, "a request is in flight");
    assert!(edge.wait_drained(&upstream, Duration::from_secs(5)).await);
    let response = request.await.expect("join").expect("response");
    assert_eq!(response.text().await.expect("text"), "slow", "the in-flight request finished");
    stop.cancel();
}

/// An upstream that answers by path with one framing or another; counts its connections.
async fn framing_upstream() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let port = upstream_each(move |mut stream| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                buf.drain(..end + 4);
                let path = head.split(' ').nth(1).unwrap_or_default().to_string();
                let is_head = head.starts_with("HEAD ");
                let parts: Vec<Vec<u8>> = match path.as_str() {
                    "/length" if is_head => vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec()],
                    "/length" => vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec()],
                    "/chunked" => vec![
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel".to_vec(),
                        b"lo\r\n6\r\n world\r\n0\r\nX-Done: yes\r\n\r\n".to_vec(),
                    ],
                    "/early" => vec![
                        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n".to_vec(),
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
                    ],
                    "/empty" => vec![b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()],
                    "/big" => {
                        let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n".to_vec();
                        r.resize(r.len() + 1_048_576, b'x');
                        vec![r]
                    }
                    "/named" => vec![
                    b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nContent-Length: 2\r\n\r\nok"
                        .to_vec(),
                ],
                    "/conflict" => {
                        vec![
                            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec(),
                        ]
                    }
                    "/close" => vec![b"HTTP/1.1 200 OK\r\n\r\nuntil close".to_vec()],
                    _ => vec![b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()],
                };
                for part in parts {
                    if stream.write_all(&part).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if path == "/close" || path == "/conflict" {
                    return;
                }
            }
        }
    })
    .await;
    (port, accepted)
}

#[tokio::test]
async fn every_response_framing_is_relayed_whole_over_one_reused_upstream_connection() {
    let (up, accepted) = framing_upstream().await;
    let (_edge, base, stop) = edge_routing("frames.localhost", up).await;
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let get = |path: &str| client.get(format!("{base}{path}")).header("host", "frames.localhost").send();

    for _ in 0..3 {
        assert_eq!(get("/length").await.expect("send").text().await.expect("text"), "hello");
    }
    let chunked = get("/chunked").await.expect("send");
    assert_eq!(chunked.headers()["transfer-encoding"], "chunked");
    assert_eq!(chunked.text().await.expect("text"), "hello world");
    let early = get("/early").await.expect("send");
    assert_eq!(early.status(), 200, "the 103 is not the answer");
    assert_eq!(early.text().await.expect("text"), "ok");
    assert_eq!(get("/empty").await.expect("send").status(), 204);
    let big = get("/big").await.expect("send").bytes().await.expect("bytes");
    assert!(big.len() == 1_048_576 && big.iter().all(|b| *b == b'x'), "1 MiB relayed whole");
    let head =
        client.head(format!("{base}/length")).header("host", "frames.localhost").send().await.expect("head");
    assert_eq!(head.headers()["content-length"], "5");
    let named = get("/named").await.expect("send");
    assert!(named.headers().get("x-secret").is_none(), "a header the app named in Connection is hop-by-hop");
    assert_eq!(named.text().await.expect("text"), "ok");
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one client connection's requests share one upstream connection"
    );

    let until_close = get("/close").await.expect("send");
    assert_eq!(
        until_close.headers()["connection"],
        "close",
        "a body delimited by close closes the client too"
    );
    assert_eq!(until_close.text().await.expect("text"), "until close");
    let conflict = get("/conflict").await.expect("send");
    assert_eq!(conflict.status(), 502, "two different Content-Lengths from the app are not relayed");
    assert_eq!(
        get("/length").await.expect("send").text().await.expect("text"),
        "hello",
        "and the next works"
    );
    stop.cancel();
}

/// Reads from `stream` until it closes or is quiet for 500 ms.
async fn read_all(stream: &mut tokio::net::TcpStream) -> String {
    let mut all = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&all).to_string()
}

/// The status codes of the responses in `text`, in order.
fn statuses(text: &str) -> Vec<u16> {
    text.split("HTTP/1.1 ").skip(1).filter_map(|r| r.get(..3)?.parse().ok()).collect()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let up = echo_upstream().await;
    let (_edge, base, stop) = edge_routing("pipe.localhost", up).await;
    let mut stream =
        tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.expect("connect");
    stream
        .write_all(
            b"GET /first HTTP/1.1\r\nHost: pipe.localhost\r\n\r\nGET /second HTTP/1.1\r\nHost: pipe.localhost\r\n\r\n\
              GET /third HTTP/1.1\r\nHost: pipe.localhost\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("write");
    let text = read_all(&mut stream).await;
    assert_eq!(statuses(&text), [200, 200, 200], "{text}");
    let at = |p: &str| text.find(p).unwrap_or_else(|| panic!("{p} missing: {text}"));
    assert!(at("GET /first") < at("GET /second") && at("GET /second") < at("GET /third"), "{text}");
    assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
    stop.cancel();
}

/// An upstream (hyper, a strict HTTP/1.1 server) that records `METHOD path body-length` of
/// every request it gets.
async fn recording_upstream() -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    use http_body_util::BodyExt;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let port = upstream_each(move |stream| {
        let log = log.clone();
        async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let log = log.clone();
                async move {
                    let line = format!("{} {}", req.method(), req.uri().path());
                    let body = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
                    log.lock().expect("log").push(format!("{line} {body}"));
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(b"seen"),
                    )))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
    (port, seen)
}

#[tokio::test]
async fn request_smuggling_attempts_never_put_an_unseen_request_before_the_app() {
    let (up, seen) = recording_upstream().await;
    let (_edge, base, stop) = edge_routing("h.localhost", up).await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: h.localhost\r\n\r\n";
    // (what is sent, the statuses the client gets, what the app sees)
    let cases: Vec<(String, Vec<u16>, Vec<String>)> = vec![
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: h.localhost\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
                5 + smuggled.len()
            ),
            vec![200],
            vec!["POST /a 0".into()],
        ),
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: h.localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            vec![200],
            vec!["POST /a 0".into()],
        ),
        (
            format!(
                "GET /a HTTP/1.1\r\nHost: h.localhost\r\nContent-Length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            ),
            vec![200],
            vec![format!("GET /a {}", smuggled.len())],
        ),
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: h.localhost\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            vec![400],
            vec![],
        ),
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: h.localhost\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n{smuggled}"
            ),
            vec![400],
            vec![],
        ),
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: h.localhost\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            vec![400],
            vec![],
        ),
        (
            format!("GET /a HTTP/1.1\r\nHost: h.localhost\r\nX-Fold: a\r\n b\r\n\r\n{smuggled}"),
            vec![400],
            vec![],
        ),
        (
            format!("GET /a HTTP/1.1\r\nHost: h.localhost\r\nHost: other.localhost\r\n\r\n{smuggled}"),
            vec![400],
            vec![],
        ),
        (
            format!("GET /a HTTP/1.1\nHost: h.localhost\n\n{smuggled}"),
            vec![200, 200],
            vec!["GET /a 0".into(), "GET /smuggled 0".into()],
        ),
    ];
    for (sent, statuses_wanted, app_saw) in cases {
        seen.lock().expect("seen").clear();
        let mut stream =
            tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.expect("connect");
        stream.write_all(sent.as_bytes()).await.expect("write");
        let text = read_all(&mut stream).await;
        assert_eq!(statuses(&text), statuses_wanted, "client side of {sent:?}: {text}");
        assert_eq!(*seen.lock().expect("seen"), app_saw, "app side of {sent:?}");
    }
    stop.cancel();
}

#[tokio::test]
async fn an_oversized_head_gets_431_and_garbage_gets_400() {
    let up = echo_upstream().await;
    let (_edge, base, stop) = edge_routing("big.localhost", up).await;
    let addr = base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let big = format!("GET / HTTP/1.1\r\nHost: big.localhost\r\nCookie: {}\r\n\r\n", "a".repeat(70 * 1024));
    let _ = stream.write_all(big.as_bytes()).await;
    let text = read_all(&mut stream).await;
    assert_eq!(statuses(&text), [431], "{}", &text[..text.len().min(300)]);
    assert!(text.contains("exceed 64 KiB"), "the page names the limit");

    let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: big.localhost\r\nBad\0Header: x\r\n\r\n")
        .await
        .expect("write");
    let text = read_all(&mut stream).await;
    assert_eq!(statuses(&text), [400], "{text}");
    assert!(text.contains("not valid HTTP/1.1"), "{text}");
    stop.cancel();
}

#[tokio::test]
async fn a_pooled_connection_the_app_closed_is_replaced_without_an_error_even_for_a_post() {
    // An app that answers one request per connection and then hangs up without saying so.
    let port = upstream_each(|mut stream| async move {
        let mut buf = [0u8; 4096];
        if matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        }
    })
    .await;
    let (_edge, base, stop) = edge_routing("flaky.localhost", port).await;
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    for i in 0..20 {
        // A POST cannot be sent twice, so the dead connection must be noticed before it is used.
        let url = format!("{base}/{i}");
        let request = if i % 2 == 0 { client.get(url) } else { client.post(url) };
        let response = request.header("host", "flaky.localhost").send().await.expect("send");
        assert_eq!(response.status(), 200, "request {i}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
}

#[tokio::test]
async fn a_connection_idle_past_the_buffer_release_still_serves_requests_large_heads_too() {
    let up = echo_upstream().await;
    let (_edge, base, stop) = edge_routing("idle.localhost", up).await;
    let mut stream =
        tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.expect("connect");
    let mut answers = Vec::new();
    for (round, cookie) in ["a".repeat(10), "b".repeat(3000), "c".repeat(10)].iter().enumerate() {
        if round > 0 {
            // Past the 1 s after which an idle connection's buffers are given back.
            tokio::time::sleep(Duration::from_millis(1300)).await;
        }
        let request = format!("GET /{round} HTTP/1.1\r\nHost: idle.localhost\r\nCookie: {cookie}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        let mut chunk = [0u8; 8192];
        while !String::from_utf8_lossy(&answer).contains(cookie.as_str()) {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
                .await
                .expect("answer in time")
                .expect("read");
            assert!(n > 0, "closed after round {round}");
            answer.extend_from_slice(&chunk[..n]);
        }
        answers.push(String::from_utf8_lossy(&answer).to_string());
    }
    assert!(answers.iter().all(|a| a.starts_with("HTTP/1.1 200")), "{answers:?}");
    assert!(answers[1].contains("GET /1 HTTP/1.1"), "the 3 KiB head arrived whole");
    stop.cancel();
}

/// An edge router with a short stall limit and one route to `port`; its address.
async fn stall_edge(port: u16, stall: Duration) -> (String, CancellationToken) {
    let edge = Edge::with_stall_timeout(stall);
    let stop = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(edge.clone().serve(listener, stop.clone()));
    edge.swap(table(config(&[("app-1", "stall.localhost", Some(port))])));
    (addr, stop)
}

/// Reads the upstream's request head (and a body of `Content-Length` bytes, if any).
async fn read_request(stream: &mut tokio::net::TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
    let mut have = buf.len() - end;
    while have < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
    }
}

/// The two requests of each test: a bodyless GET (the fast path) and a POST with a body (hyper).
const REQUESTS: [&str; 2] = [
    "GET / HTTP/1.1\r\nHost: stall.localhost\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: stall.localhost\r\nContent-Length: 2\r\n\r\nhi",
];

#[tokio::test]
async fn a_response_body_that_stalls_is_cut_after_the_stall_limit_on_both_paths() {
    // The app sends its head and 10 of 100 promised bytes, then nothing, keeping the socket.
    let up = upstream_each(|mut stream| async move {
        read_request(&mut stream).await;
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789").await;
        tokio::time::sleep(Duration::from_secs(600)).await;
    })
    .await;
    let (addr, _stop) = stall_edge(up, Duration::from_millis(500)).await;
    for request in REQUESTS {
        let mut client = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        client.write_all(request.as_bytes()).await.expect("send");
        let mut got = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            let mut chunk = [0u8; 1024];
            loop {
                match client.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        let text = String::from_utf8_lossy(&got);
        assert!(ended.is_ok(), "{request:?}: the connection is still open after 10 s: {text}");
        assert!(text.starts_with("HTTP/1.1 200") && text.ends_with("0123456789"), "{request:?}: {text}");
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_releases_the_app_after_the_stall_limit_on_both_paths() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // The app streams an endless body; its write fails once the router lets go.
    let released = Arc::new(AtomicUsize::new(0));
    let seen = released.clone();
    let up = upstream_each(move |mut stream| {
        let released = seen.clone();
        async move {
            read_request(&mut stream).await;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").await;
            let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
            while stream.write_all(chunk.as_bytes()).await.is_ok() {}
            released.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await;
    let (addr, _stop) = stall_edge(up, Duration::from_millis(500)).await;
    let mut clients = Vec::new();
    for (i, request) in REQUESTS.iter().enumerate() {
        let mut client = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        client.write_all(request.as_bytes()).await.expect("send");
        // The client reads nothing more and keeps its socket open.
        clients.push(client);
        let let_go = tokio::time::timeout(Duration::from_secs(15), async {
            while released.load(Ordering::SeqCst) <= i {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(let_go.is_ok(), "{request:?}: the app is still held by a client that reads nothing");
    }
}

#[tokio::test]
async fn a_pushed_table_swaps_whole_and_an_older_one_is_ignored() {
    let edge = Edge::new();
    let mut newer = config(&[("app-1", "a.localhost", Some(1))]);
    newer.version = 5;
    assert!(edge.apply(&newer));
    let mut older = config(&[("app-2", "b.localhost", Some(2))]);
    older.version = 4;
    assert!(!edge.apply(&older), "a table older than the current one is not taken");
    assert!(edge.table().lookup("a.localhost").is_some() && edge.table().lookup("b.localhost").is_none());
    let mut next = config(&[("app-2", "b.localhost", Some(2))]);
    next.version = 6;
    assert!(edge.apply(&next));
    assert!(edge.table().lookup("a.localhost").is_none(), "the whole table was replaced");
    assert_eq!(
        edge.table().lookup("b.localhost").and_then(|r| r.upstream.clone()).as_deref(),
        Some("127.0.0.1:2")
    );
}

/// ACME HTTP-01 (SPEC §14.7): a pushed challenge is answered by the router itself on any host
/// — a custom domain not routed yet, or an app's — with the key authorization; a token the
/// router was not given goes on to the app (which may run its own ACME client); a new set
/// replaces the old one; malformed entries are dropped.
#[tokio::test]
async fn pushed_acme_challenges_are_answered_before_routing_and_replaced_whole() {
    use wisehosting_proto::messages::{AcmeChallenge, AcmeChallenges};
    let up = echo_upstream().await;
    let (edge, base, stop) = edge_routing("app.localhost", up).await;
    let challenge = |token: &str, print: &str| AcmeChallenge {
        token: token.into(),
        key_authorization: format!("{token}.{print}"),
    };
    edge.set_challenges(&AcmeChallenges {
        challenges: vec![
            challenge("tok-EN_1", "thumbPRINT_x"),
            challenge("bad/token", "x"),
            AcmeChallenge { token: "mismatch".into(), key_authorization: "other.print".into() },
        ],
    });
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let get = |host: &'static str, path: &'static str| {
        client.get(format!("{base}{path}")).header("host", host).send()
    };

    for host in ["www.customer.example", "app.localhost"] {
        let answer = get(host, "/.well-known/acme-challenge/tok-EN_1").await.expect("send");
        assert_eq!(answer.status(), 200, "{host}");
        assert_eq!(answer.headers()["content-type"], "text/plain");
        assert_eq!(answer.text().await.expect("text"), "tok-EN_1.thumbPRINT_x", "{host}");
    }
    let theirs = get("app.localhost", "/.well-known/acme-challenge/mismatch").await.expect("send");
    assert!(
        theirs
            .text()
            .await
            .expect("text")
            .to_ascii_lowercase()
            .starts_with("get /.well-known/acme-challenge/mismatch"),
        "a token the router does not hold reaches the app"
    );
    let nowhere = get("www.customer.example", "/.well-known/acme-challenge/bad").await.expect("send");
    assert_eq!(nowhere.status(), 404, "unknown host, unknown token: the router's 404");

    edge.set_challenges(&AcmeChallenges { challenges: vec![challenge("second", "p")] });
    let gone = get("www.customer.example", "/.well-known/acme-challenge/tok-EN_1").await.expect("send");
    assert_eq!(gone.status(), 404, "a set replaces the old one");
    let second = get("www.customer.example", "/.well-known/acme-challenge/second").await.expect("send");
    assert_eq!(second.text().await.expect("text"), "second.p");
    stop.cancel();
}
