//! Build presets (SPEC §6, issue 17): `framework: auto` finds the language and says so in the
//! build log; the node, python, go and rust presets each build a sample app from the local
//! base images (`scripts/preset-images.sh`) and serve it; a language build's package cache is
//! the app's own, kept between its builds and never seen by another app.

use serde_json::{Value, json};
use wisehosting_testkit::{LOCAL_PRESET_IMAGES, TestRepo, UserSession, node_app};

use crate::deploy::{LIMIT, deploy_and_wait, platform_with_settings, serves};

fn commit(repo: &TestRepo, files: &[(String, String)], message: &str) {
    let files: Vec<(&str, &str)> = files.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    repo.commit(&files, message);
}

async fn log_of(user: &UserSession, deployment: &Value) -> String {
    let id = deployment["id"].as_i64().expect("id");
    user.get(&format!("/api/deployments/{id}/log")).await.text().await.expect("log")
}

const PYTHON_APP: &str = "import os\nfrom http.server import BaseHTTPRequestHandler, HTTPServer\n\nclass Hello(BaseHTTPRequestHandler):\n    def do_GET(self):\n        self.send_response(200)\n        self.end_headers()\n        self.wfile.write(('hello from python ' + os.environ.get('GREETING', '')).encode())\n\nHTTPServer(('', int(os.environ['PORT'])), Hello).serve_forever()\n";

const GO_APP: &str = "package main\n\nimport (\n\t\"fmt\"\n\t\"net/http\"\n\t\"os\"\n\t\"runtime\"\n)\n\nfunc main() {\n\thttp.HandleFunc(\"/\", func(w http.ResponseWriter, r *http.Request) {\n\t\tfmt.Fprintf(w, \"hello from go %s\", runtime.Version())\n\t})\n\thttp.ListenAndServe(\":\"+os.Getenv(\"PORT\"), nil)\n}\n";

const RUST_APP: &str = "use std::io::{Read, Write};\n\nfn main() {\n    let port = std::env::var(\"PORT\").unwrap_or_else(|_| \"8080\".into());\n    let listener = std::net::TcpListener::bind(format!(\"0.0.0.0:{port}\")).unwrap();\n    for stream in listener.incoming() {\n        let mut stream = match stream { Ok(s) => s, Err(_) => continue };\n        let mut buf = [0u8; 4096];\n        let _ = stream.read(&mut buf);\n        let body = \"hello from rust\";\n        let _ = write!(stream, \"HTTP/1.1 200 OK\\r\\nContent-Length: {}\\r\\nConnection: close\\r\\n\\r\\n{}\", body.len(), body);\n    }\n}\n";

/// Each language preset, picked by `auto` from the repository's files (python by name, with
/// a Procfile's start command), builds from the local base images and serves. (Debian
/// bookworm's Rust is 1.63: the sample is written for it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_preset_builds_and_serves_a_sample_app_from_local_base_images() {
    let (_cp, _agent, user) =
        platform_with_settings("presets", "presets@example.com", LOCAL_PRESET_IMAGES).await;
    let node = TestRepo::new();
    commit(&node, &node_app("hello from node", "echo built > previous.txt"), "node");
    let python = TestRepo::new();
    python.commit(
        &[
            ("requirements.txt", "# no dependencies\n"),
            ("web.py", PYTHON_APP),
            ("Procfile", "web: python web.py\n"),
        ],
        "python",
    );
    let go = TestRepo::new();
    go.commit(&[("go.mod", "module sample\n\ngo 1.19\n"), ("main.go", GO_APP)], "go");
    let rust = TestRepo::new();
    rust.commit(
        &[
            ("Cargo.toml", "[package]\nname = \"sample\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
            ("src/main.rs", RUST_APP),
        ],
        "rust",
    );
    for (name, repo, framework, marker, page) in [
        ("node-app", &node, "auto", Some("package.json"), "hello from node production [built]"),
        ("python-app", &python, "python", None, "hello from python hi"),
        ("go-app", &go, "auto", Some("go.mod"), "hello from go go1."),
        ("rust-app", &rust, "auto", Some("Cargo.toml"), "hello from rust"),
    ] {
        let body = json!({"name": name, "repo_url": repo.url(), "framework": framework, "port": 8080,
                          "env": {"GREETING": "hi"}});
        let (app_id, d) = deploy_and_wait(&user, body).await;
        let log = log_of(&user, &d).await;
        assert_eq!(d["status"], "running", "{name}: {d}\n{log}");
        if let Some(marker) = marker {
            let preset = name.trim_end_matches("-app");
            let said = format!("framework auto: found {marker}, building with the {preset} preset");
            assert!(log.contains(&said), "{name}: {log}");
        }
        assert!(serves(&user, app_id, page).await, "{name} serves {page:?}");
    }
}

/// A repository with nothing `auto` knows fails with the files it looked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_with_nothing_to_go_on_names_the_files_it_looked_for() {
    let (_cp, _agent, user) =
        platform_with_settings("auto-none", "none@example.com", LOCAL_PRESET_IMAGES).await;
    let repo = TestRepo::new();
    repo.commit(&[("README.md", "just words\n")], "words");
    let (_, d) =
        deploy_and_wait(&user, json!({"name": "words", "repo_url": repo.url(), "framework": "auto"})).await;
    assert_eq!(d["status"], "failed", "{d}");
    let error = d["error"].as_str().unwrap_or_default();
    assert!(error.contains("framework auto found none of Containerfile"), "{error}");
}

/// The build cache is the app's own: what app A's build left in it is there for A's next
/// build, and app B's build on the same worker — of exactly A's files — neither sees it nor
/// reuses a layer A built with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_language_builds_cache_is_kept_for_the_app_and_unseen_by_others() {
    let (_cp, _agent, user) = platform_with_settings("cache", "cache@example.com", LOCAL_PRESET_IMAGES).await;
    let files = node_app("app", "cat /wh-cache/seen > previous.txt 2>/dev/null; echo seen >> /wh-cache/seen");
    let a = TestRepo::new();
    commit(&a, &files, "a1");
    let (a_id, d) =
        deploy_and_wait(&user, json!({"name": "cache-a", "repo_url": a.url(), "framework": "node"})).await;
    assert_eq!(d["status"], "running", "{d}");
    assert!(serves(&user, a_id, "app production []").await, "a first build finds an empty cache");

    // A changed source file: the build script runs again, with A's cache from before.
    a.commit(&[("README.md", "changed\n")], "a2");
    let redeployed = user.redeploy(a_id).await;
    let d = user.wait_deployment(redeployed, LIMIT).await;
    assert_eq!(d["status"], "running", "{d}");
    assert!(serves(&user, a_id, "app production [seen]").await, "A's second build finds what its first left");

    // B: byte for byte A's files now. Its build starts from an empty cache of its own.
    let b = TestRepo::new();
    commit(&b, &files, "b1");
    b.commit(&[("README.md", "changed\n")], "b2");
    let (b_id, d) =
        deploy_and_wait(&user, json!({"name": "cache-b", "repo_url": b.url(), "framework": "node"})).await;
    assert_eq!(d["status"], "running", "{d}");
    assert!(serves(&user, b_id, "app production []").await, "B neither sees A's cache nor reuses A's layers");
}
