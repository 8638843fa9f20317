//! The edge router against real sockets: a local upstream that echoes what it received, a
//! WebSocket echo server, and a port where nothing listens.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wisehosting_worker::edge::{Edge, Table};

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

fn table(routes: serde_json::Value) -> Table {
    let (table, warnings) = Table::from_traefik(&routes);
    assert!(warnings.is_empty(), "{warnings:?}");
    table
}

fn config(entries: &[(&str, &str, Option<u16>)]) -> serde_json::Value {
    let mut routers = serde_json::Map::new();
    let mut services = serde_json::Map::new();
    for (name, host, port) in entries {
        routers.insert(name.to_string(), json!({"rule": format!("Host(`{host}`)"), "service": name}));
        let servers = port.map(|p| vec![json!({"url": format!("http://127.0.0.1:{p}")})]).unwrap_or_default();
        services.insert(name.to_string(), json!({"loadBalancer": {"servers": servers}}));
    }
    json!({"http": {"routers": routers, "services": services}})
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
    let (edge, base, _, stop) = start_edge().await;
    edge.swap(table(config(&[("app-1", "ka.localhost", Some(a))])));
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
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let slow = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow")
                    .await;
            });
        }
    });
    let (edge, base, _, stop) = start_edge().await;
    edge.swap(table(config(&[("app-1", "slow.localhost", Some(slow))])));
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
