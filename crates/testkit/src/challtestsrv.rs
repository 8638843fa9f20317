//! [`ChallTestSrv`]: Debian's `pebble-challtestsrv` as a DNS server for tests: every name
//! resolves to 127.0.0.1 and TXT records are set and cleared over its management API (what the
//! Cloudflare stand-in does with the records it is given). Pebble resolves names with it for
//! DNS-01 validation.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct ChallTestSrv {
    /// Where it answers DNS (UDP and TCP).
    pub dns_addr: SocketAddr,
    management: SocketAddr,
    child: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl ChallTestSrv {
    pub async fn start() -> ChallTestSrv {
        let dns_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let management = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new("pebble-challtestsrv")
            .args(["-dns01", &dns_addr.to_string(), "-management", &management.to_string()])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv6", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble-challtestsrv (apt-get install pebble)");
        let server = ChallTestSrv { dns_addr, management, child };
        let up = crate::eventually(Duration::from_secs(10), Duration::from_millis(50), || async {
            tokio::net::TcpStream::connect(management).await.is_ok()
        })
        .await;
        assert!(up, "pebble-challtestsrv listens on {management}");
        server
    }

    /// Its management API (`/set-txt`, `/clear-txt`, `/add-a`…).
    pub fn management_url(&self) -> String {
        format!("http://{}", self.management)
    }
}

impl Drop for ChallTestSrv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
