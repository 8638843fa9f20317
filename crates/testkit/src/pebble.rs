//! [`Pebble`]: Debian's `pebble`, a real ACME server for tests, on loopback. Its API's TLS
//! certificate comes from a test CA made here (`tls::test_ca_and_certificate`); it validates
//! HTTP-01 challenges by connecting to `http_port` at the address the test DNS server gives
//! for the name, and issues certificates under a root of its own (`root_pem`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Pebble {
    pub directory_url: String,
    /// The test CA that signed pebble's own TLS certificate (`acme.ca_file`).
    pub ca_file: PathBuf,
    management: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on `http_port` and resolving names with `dns`.
    pub async fn start(http_port: u16, dns: SocketAddr) -> Pebble {
        Self::start_issuing_for(http_port, dns, None).await
    }

    /// Like [`Pebble::start`], its certificates valid for `validity_secs` (pebble's default:
    /// about five years).
    pub async fn start_issuing_for(http_port: u16, dns: SocketAddr, validity_secs: Option<u64>) -> Pebble {
        let dir = tempfile::tempdir().expect("pebble dir");
        let (ca_file, cert, key) = crate::tls::test_ca_and_certificate(dir.path());
        let (api, management) = (free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{api}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert, "privateKey": key,
            "httpPort": http_port, "tlsPort": free_port(),
            "ocspResponderURL": "", "externalAccountBindingRequired": false,
        }});
        let mut config = config;
        if let Some(secs) = validity_secs {
            config["pebble"]["certificateValidityPeriod"] = serde_json::json!(secs);
        }
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("pebble config");
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .arg("-dnsserver")
            .arg(dns.to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble (apt-get install pebble)");
        let up = crate::eventually(Duration::from_secs(15), Duration::from_millis(50), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", api)).await.is_ok()
        })
        .await;
        assert!(up, "pebble listens");
        Pebble {
            directory_url: format!("https://127.0.0.1:{api}/dir"),
            ca_file,
            management: SocketAddr::from(([127, 0, 0, 1], management)),
            child,
            _dir: dir,
        }
    }

    /// The root pebble issues under (it makes a new one each start).
    pub async fn root_pem(&self) -> String {
        let client = crate::tls::client_trusting(&self.ca_file);
        let url = format!("https://{}/roots/0", self.management);
        client.get(url).send().await.expect("pebble roots").text().await.expect("root PEM")
    }

    /// The intermediate pebble signs with.
    pub async fn intermediate_pem(&self) -> String {
        let client = crate::tls::client_trusting(&self.ca_file);
        let url = format!("https://{}/intermediates/0", self.management);
        client.get(url).send().await.expect("pebble intermediates").text().await.expect("intermediate PEM")
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
