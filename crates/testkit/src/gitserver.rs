//! [`GitHttpsServer`]: a git host standing in for GitHub in a whole deploy — smart HTTP
//! (`git http-backend`) over TLS, on a *public* address (in a network namespace of its own,
//! so the worker's public-address check lets git connect), serving one [`TestRepo`] only to
//! requests that carry the expected token as GitHub takes it (`Authorization: Basic` of
//! `x-access-token:<token>`). It records every `Authorization` header it saw. Requests for
//! `/moved.git/…` are redirected to wherever [`GitHttpsServer::redirect_moved_to`] says.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::io::AsyncWriteExt;

use crate::TestRepo;
use crate::netns::Namespace;

pub struct GitHttpsServer {
    /// The server's public address (192.88.100.x, not the 6to4 relay range beside it).
    pub addr: Ipv4Addr,
    pub port: u16,
    /// The certificate authority git must trust (the server's self-signed certificate).
    pub ca_file: PathBuf,
    /// Every `Authorization` header received, in order (`None` for a request without one).
    seen: Arc<Mutex<Vec<Option<String>>>>,
    moved_to: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
    _namespace: Namespace,
}

impl GitHttpsServer {
    /// Serves `repo` as `https://<hostname>:<port>/repo.git`, to `token` only (as GitHub takes
    /// it, under the user name `x-access-token`).
    pub async fn start(repo: &TestRepo, hostname: &str, token: &str) -> GitHttpsServer {
        Self::start_for_user(repo, hostname, "x-access-token", token).await
    }

    /// Serves `repo` to basic auth of `user:token` only (GitLab's OAuth tokens: `oauth2`).
    pub async fn start_for_user(repo: &TestRepo, hostname: &str, user: &str, token: &str) -> GitHttpsServer {
        let dir = tempfile::tempdir().expect("server dir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj"])
            .arg(format!("/CN={hostname}"))
            .arg("-addext")
            .arg(format!("subjectAltName=DNS:{hostname}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
        let tls = tls_config(&cert, &key);

        let [a, b] = wisehosting_crypto::random_bytes::<2>();
        let addr = Ipv4Addr::new(192, 88, 100 + (a % 100), (b & 0x3f) * 4 + 2);
        let namespace = Namespace::create(&[addr]);
        let listener = namespace.listen(SocketAddr::from((addr, 0)));
        let port = listener.local_addr().expect("addr").port();

        // GIT_PROJECT_ROOT holds the repository as `repo.git`.
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("root");
        std::os::unix::fs::symlink(repo.dir.path(), root.join("repo.git")).expect("link the repository");

        let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let expected = {
            use base64::Engine as _;
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}")))
        };
        let moved_to: Arc<Mutex<String>> = Arc::default();
        let (record, root_dir, moved) = (seen.clone(), root.clone(), moved_to.clone());
        let task = tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, record, root, expected, moved) =
                    (acceptor.clone(), record.clone(), root_dir.clone(), expected.clone(), moved.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (record, root, expected) = (record.clone(), root.clone(), expected.clone());
                        let moved = moved.lock().expect("moved").clone();
                        async move {
                            if let Some(rest) = req.uri().path().strip_prefix("/moved.git/") {
                                let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
                                let mut response = plain(StatusCode::FOUND, "moved");
                                if let Ok(to) =
                                    hyper::header::HeaderValue::from_str(&format!("{moved}/{rest}{query}"))
                                {
                                    response.headers_mut().insert("location", to);
                                }
                                return Ok::<_, Infallible>(response);
                            }
                            Ok::<_, Infallible>(serve(req, &root, &expected, &record).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        GitHttpsServer { addr, port, ca_file: cert, seen, moved_to, task, _dir: dir, _namespace: namespace }
    }

    /// Where `/moved.git/<rest>` redirects: `<base>/<rest>` (e.g. `https://127.0.0.1:1234/r.git`).
    pub fn redirect_moved_to(&self, base: &str) {
        *self.moved_to.lock().expect("moved") = base.to_string();
    }

    /// The `Authorization` headers received so far.
    pub fn seen(&self) -> Vec<Option<String>> {
        self.seen.lock().expect("seen").clone()
    }
}

impl Drop for GitHttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn tls_config(cert: &std::path::Path, key: &std::path::Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_file(cert).expect("certificate")];
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
    Arc::new(config)
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_string())));
    *response.status_mut() = status;
    response
}

/// One request: refused without the token, else answered by `git http-backend` (CGI).
async fn serve(
    req: Request<Incoming>,
    root: &std::path::Path,
    expected: &str,
    seen: &Mutex<Vec<Option<String>>>,
) -> Response<Full<Bytes>> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let authorization = header("authorization");
    seen.lock().expect("seen").push(authorization.clone());
    if authorization.as_deref() != Some(expected) {
        let mut response = plain(StatusCode::UNAUTHORIZED, "a token is needed");
        response
            .headers_mut()
            .insert("www-authenticate", hyper::header::HeaderValue::from_static("Basic realm=\"git\""));
        return response;
    }
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let (content_type, encoding, protocol) =
        (header("content-type"), header("content-encoding"), header("git-protocol"));
    let Ok(body) = req.into_body().collect().await else {
        return plain(StatusCode::BAD_REQUEST, "unreadable body");
    };
    let body = body.to_bytes();
    let mut cgi = tokio::process::Command::new("git");
    cgi.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (name, value) in
        [("CONTENT_TYPE", content_type), ("HTTP_CONTENT_ENCODING", encoding), ("GIT_PROTOCOL", protocol)]
    {
        if let Some(value) = value {
            cgi.env(name, value);
        }
    }
    let Ok(mut child) = cgi.spawn() else { return plain(StatusCode::INTERNAL_SERVER_ERROR, "no git") };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body).await;
    }
    let Ok(out) = child.wait_with_output().await else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "git http-backend failed");
    };
    // CGI: header lines, a blank line, the body.
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4))
        .or_else(|| out.stdout.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2)));
    let Some((end, gap)) = split else { return plain(StatusCode::BAD_GATEWAY, "no CGI head") };
    let head = String::from_utf8_lossy(&out.stdout[..end]).to_string();
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(&out.stdout[end + gap..])));
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(500);
            *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
