//! TLS at the edge router (SPEC §14.7): pushed certificates served by SNI on the HTTPS
//! listener, HTTP/2 by ALPN, plain requests redirected per app, HSTS when the app opts in, and a
//! certificate swap that leaves established connections alone. Real sockets, certificates from
//! a test CA made with openssl.

use std::path::Path;
use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wisehosting_proto::job::WireSecret;
use wisehosting_proto::messages::{EdgeCertificate, EdgeCertificates, RouteEntry, RouteTable};
use wisehosting_testkit::tls::{certificate_for, test_ca};
use wisehosting_worker::edge::{Edge, Table};

/// An app that answers each request with the head it received (lowercased), over HTTP/1.1.
async fn echo_app() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                        let mut head = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
                        for (name, value) in req.headers() {
                            head.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
                        }
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                            Bytes::from(head.to_ascii_lowercase()),
                        )))
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    port
}

fn pem(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read PEM")
}

/// A pushed certificate: `id`, for `names`, from the files `certificate_for` made.
fn pushed(id: i64, names: &[&str], files: &(std::path::PathBuf, std::path::PathBuf)) -> EdgeCertificate {
    EdgeCertificate {
        id,
        names: names.iter().map(|n| n.to_string()).collect(),
        chain_pem: pem(&files.0),
        key_pem: WireSecret::new(pem(&files.1)),
    }
}

fn route(app_id: i64, hosts: &[&str], port: u16, https_redirect: bool, hsts: bool) -> RouteEntry {
    RouteEntry {
        app_id,
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        port: Some(port),
        https_redirect,
        hsts,
    }
}

struct Router {
    edge: Arc<Edge>,
    http: std::net::SocketAddr,
    https: std::net::SocketAddr,
    stop: CancellationToken,
}

impl Drop for Router {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn router(routes: Vec<RouteEntry>) -> Router {
    let edge = Edge::new();
    edge.swap(Table::from_message(&RouteTable { version: 1, routes }));
    let stop = CancellationToken::new();
    let plain = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let secure = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (http, https) = (plain.local_addr().expect("addr"), secure.local_addr().expect("addr"));
    tokio::spawn(edge.clone().serve(plain, stop.clone()));
    let serving = edge.clone();
    let token = stop.clone();
    tokio::spawn(async move { serving.serve_tls(secure, token).await.expect("TLS set up") });
    // The listener's port is known once `serve_tls` runs.
    for _ in 0..200 {
        if edge.https_port() == https.port() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(edge.https_port(), https.port(), "the HTTPS listener serves");
    Router { edge, http, https, stop }
}

fn roots(ca: &Path) -> rustls::RootCertStore {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(cert.expect("CA cert")).expect("add CA");
    }
    roots
}

/// A TLS connection to the router for `name` (SNI) offering `alpn`.
async fn connect_tls(
    ca: &Path,
    at: std::net::SocketAddr,
    name: &str,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots(ca))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(at).await?;
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
    connector.connect(server_name, tcp).await
}

/// The subject CN of the certificate the server presented.
fn presented_cn(tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> String {
    let leaf = tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone();
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).expect("x509");
    parsed.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).expect("CN").to_string()
}

/// One HTTP/1.1 request on `stream` (keep-alive); the answer's head and body as text.
async fn get_on<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    path: &str,
) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "the router closed the connection; got {:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&answer).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn sni_picks_each_hosts_certificate_and_plain_requests_are_redirected_where_one_is_held() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = test_ca(dir.path());
    let shop = certificate_for(dir.path(), &["shop.example"], "shop");
    let wildcard = certificate_for(dir.path(), &["*.apps.example"], "apps");
    let other = certificate_for(dir.path(), &["other.example"], "other");
    let app = echo_app().await;
    let r = router(vec![
        route(1, &["shop.example", "x.apps.example"], app, true, true),
        route(2, &["other.example"], app, false, false),
        route(3, &["plain.example"], app, true, false),
    ])
    .await;
    r.edge.set_certificates(&EdgeCertificates {
        certificates: vec![
            pushed(1, &["shop.example"], &shop),
            pushed(2, &["*.apps.example"], &wildcard),
            pushed(3, &["other.example"], &other),
        ],
        retain: Some(vec![1, 2, 3]),
    });
    assert_eq!(r.edge.certificates_held(), 3);

    for (name, cn) in [
        ("shop.example", "shop.example"),
        ("x.apps.example", "*.apps.example"),
        ("other.example", "other.example"),
    ] {
        let mut tls = connect_tls(&ca, r.https, name, &[b"http/1.1"]).await.expect("handshake");
        assert_eq!(presented_cn(&tls), cn, "the certificate for {name}");
        let answer = get_on(&mut tls, name, "/hello?x=1").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("x-forwarded-proto: https"), "{answer}");
        let hsts = answer.to_ascii_lowercase().contains("strict-transport-security: max-age=31536000");
        assert_eq!(hsts, name != "other.example", "HSTS only where the app opted in: {answer}");
    }
    // A name with no certificate, or none at all: no certificate, no handshake.
    assert!(connect_tls(&ca, r.https, "plain.example", &[]).await.is_err());
    assert!(connect_tls(&ca, r.https, "a.b.apps.example", &[]).await.is_err(), "a wildcard covers one label");

    // Over plain HTTP: redirected where a certificate is held and the app keeps the default.
    let mut plain = tokio::net::TcpStream::connect(r.http).await.expect("connect");
    let answer = get_on(&mut plain, "shop.example", "/path?q=1").await;
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    let location = format!("location: https://shop.example:{}/path?q=1", r.https.port());
    assert!(answer.to_ascii_lowercase().contains(&location), "{answer}");
    let answer = get_on(&mut plain, "x.apps.example:8080", "/").await;
    assert!(answer.starts_with("HTTP/1.1 308"), "the port of Host is dropped: {answer}");
    let answer = get_on(&mut plain, "other.example", "/").await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("x-forwarded-proto: http\n"),
        "redirect off: {answer}"
    );
    assert!(!answer.to_ascii_lowercase().contains("strict-transport-security"));
    let answer = get_on(&mut plain, "plain.example", "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "no certificate, no redirect: {answer}");
}

#[tokio::test]
async fn http2_is_chosen_by_alpn_and_reaches_the_app_over_http1_with_its_host() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = test_ca(dir.path());
    let shop = certificate_for(dir.path(), &["shop.example"], "shop");
    let app = echo_app().await;
    let r = router(vec![route(1, &["shop.example"], app, true, false)]).await;
    r.edge.set_certificates(&EdgeCertificates {
        certificates: vec![pushed(1, &["shop.example"], &shop)],
        retain: None,
    });

    let tls = connect_tls(&ca, r.https, "shop.example", &[b"h2", b"http/1.1"]).await.expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    for path in ["/one", "/two"] {
        let request = hyper::Request::get(format!("https://shop.example{path}"))
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("h2 response");
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        let body = response.into_body().collect().await.expect("body").to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.starts_with(&format!("get {path} http/1.1")),
            "the app is spoken to in HTTP/1.1: {body}"
        );
        assert!(body.contains("host: shop.example\n"), "{body}");
        assert!(body.contains("x-forwarded-proto: https"), "{body}");
    }
}

#[tokio::test]
async fn a_certificate_swap_leaves_open_connections_alone_and_applies_to_the_next_handshake() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = test_ca(dir.path());
    let first = certificate_for(dir.path(), &["shop.example"], "first");
    let renewed = certificate_for(dir.path(), &["shop.example", "www.shop.example"], "renewed");
    let app = echo_app().await;
    let r = router(vec![route(1, &["shop.example"], app, true, false)]).await;
    r.edge.set_certificates(&EdgeCertificates {
        certificates: vec![pushed(1, &["shop.example"], &first)],
        retain: None,
    });
    let serial = |tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        let leaf = tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone();
        x509_parser::parse_x509_certificate(&leaf).expect("x509").1.raw_serial().to_vec()
    };
    let first_serial = {
        let (_, parsed) = x509_parser::pem::parse_x509_pem(pem(&first.0).as_bytes()).expect("pem");
        parsed.parse_x509().expect("x509").raw_serial().to_vec()
    };

    let mut open = connect_tls(&ca, r.https, "shop.example", &[]).await.expect("handshake");
    assert_eq!(serial(&open), first_serial);
    assert!(get_on(&mut open, "shop.example", "/1").await.starts_with("HTTP/1.1 200"));

    // A key that is not the certificate's is refused; the certificate in place stays.
    let mismatched =
        EdgeCertificate { key_pem: WireSecret::new(pem(&renewed.1)), ..pushed(1, &["shop.example"], &first) };
    r.edge.set_certificates(&EdgeCertificates { certificates: vec![mismatched], retain: None });
    let again = connect_tls(&ca, r.https, "shop.example", &[]).await.expect("still served");
    assert_eq!(serial(&again), first_serial);

    // Renewed: new handshakes get the new one; the open connection goes on.
    r.edge.set_certificates(&EdgeCertificates {
        certificates: vec![pushed(1, &["shop.example", "www.shop.example"], &renewed)],
        retain: Some(vec![1]),
    });
    let fresh = connect_tls(&ca, r.https, "shop.example", &[]).await.expect("handshake");
    assert_ne!(serial(&fresh), first_serial, "the renewed certificate");
    assert!(get_on(&mut open, "shop.example", "/2").await.starts_with("HTTP/1.1 200"));

    // Dropped (the domain went away): no new handshake, the open connection still answers.
    r.edge.set_certificates(&EdgeCertificates { certificates: vec![], retain: Some(vec![]) });
    assert_eq!(r.edge.certificates_held(), 0);
    assert!(connect_tls(&ca, r.https, "shop.example", &[]).await.is_err());
    assert!(get_on(&mut open, "shop.example", "/3").await.starts_with("HTTP/1.1 200"));
    // …and plain HTTP is no longer redirected.
    let mut plain = tokio::net::TcpStream::connect(r.http).await.expect("connect");
    assert!(get_on(&mut plain, "shop.example", "/").await.starts_with("HTTP/1.1 200"));
}

/// The platform's own certificate from files (`platform_certificate.cert_file`/`key_file`):
/// pushed to the worker, which serves every app's own hostname with it and redirects plain
/// requests; a key that is not the certificate's stops start-up with an error naming both
/// files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_certificate_from_files_serves_each_apps_own_hostname_and_a_bad_pair_stops_start_up() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = test_ca(dir.path());
    let (cert, key) = certificate_for(dir.path(), &["*.apps.example.com"], "platform");
    let (_, other_key) = certificate_for(dir.path(), &["other.example.com"], "other");
    let (cert_file, key_file) = (cert.clone(), key.clone());
    let (cp, agent, user) =
        wisehosting_testkit::spawn_platform("platform-cert", "owner@example.com", move |c| {
            c.subdomain_base = "apps.example.com".into();
            c.platform_certificate.cert_file = Some(cert_file);
            c.platform_certificate.key_file = Some(key_file);
        })
        .await;
    let repo = wisehosting_testkit::TestRepo::new();
    repo.commit(&[("Containerfile", &wisehosting_testkit::page_containerfile("own name"))], "v1");
    let (app, deployment) = user.deploy("Own", &repo.url()).await;
    assert_eq!(
        user.wait_deployment(deployment, std::time::Duration::from_secs(120)).await["status"],
        "running"
    );
    let app: serde_json::Value = user.get(&format!("/api/apps/{app}")).await.json().await.expect("json");
    let host = format!("{}.apps.example.com", app["slug"].as_str().expect("slug"));

    let ca_pem = pem(&ca);
    let fetch = || async {
        let at = agent.status.https_addr().ok_or("not open")?;
        let client = wisehosting_testkit::tls::client_trusting_pem(&ca_pem)
            .resolve(&host, at)
            .build()
            .expect("client");
        let response =
            client.get(format!("https://{host}:{}/", at.port())).send().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((response.status().as_u16(), response.text().await.unwrap_or_default()))
    };
    let served = wisehosting_testkit::eventually(
        std::time::Duration::from_secs(20),
        std::time::Duration::from_millis(200),
        || async { fetch().await.is_ok() },
    )
    .await;
    let answer = fetch().await;
    assert!(served, "{host} over HTTPS with the platform's certificate: {answer:?}");
    assert_eq!(answer.expect("answer"), (200, "own name\n".to_string()));
    let plain = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let edge = agent.status.edge_addr().expect("edge");
    let redirected = plain.get(format!("http://{edge}/")).header("host", &host).send().await.expect("plain");
    assert_eq!(redirected.status(), 308);

    let mut config = cp.config.clone();
    config.platform_certificate.key_file = Some(other_key.clone());
    let refused =
        wisehosting_control_plane::startup::App::build(config).await.err().expect("start-up refused");
    let said = refused.to_string();
    assert!(
        said.contains(&cert.display().to_string())
            && said.contains(&other_key.display().to_string())
            && said.contains("does not go with"),
        "{said}"
    );
    agent.stop().await;
}
