//! TCP proxies for tests: [`CutProxy`], a link that can be cut and restored (outages between a
//! worker and the control plane), and [`FailoverProxy`], a load balancer in front of a pair of
//! control planes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

struct Shared {
    down: AtomicBool,
    /// Cancelled on every cut; replaced by a fresh token afterwards.
    generation: Mutex<CancellationToken>,
}

impl Shared {
    fn current(&self) -> CancellationToken {
        self.generation.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

pub struct CutProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl CutProxy {
    pub async fn start(target: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            down: AtomicBool::new(false),
            generation: Mutex::new(CancellationToken::new()),
        });
        let stop = CancellationToken::new();
        let task_shared = shared.clone();
        accept_loop(listener, stop.clone(), move |mut client| {
            if task_shared.down.load(Ordering::SeqCst) {
                return;
            }
            let cut = task_shared.current();
            tokio::spawn(async move {
                let Ok(mut upstream) = TcpStream::connect(target).await else { return };
                tokio::select! {
                    _ = cut.cancelled() => {}
                    _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                }
            });
        });
        CutProxy { addr, shared, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
        if let Ok(mut generation) = self.shared.generation.lock() {
            generation.cancel();
            *generation = CancellationToken::new();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A load balancer in front of several servers: each new connection goes to the first target
/// that accepts it (a target that died refuses, and the next one takes its clients).
pub struct FailoverProxy {
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl FailoverProxy {
    pub async fn start(targets: Vec<SocketAddr>) -> FailoverProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        accept_loop(listener, stop.clone(), move |mut client| {
            let targets = targets.clone();
            tokio::spawn(async move {
                for target in targets {
                    if let Ok(mut upstream) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        return;
                    }
                }
            });
        });
        FailoverProxy { addr, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FailoverProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Hands each connection `listener` accepts to `take`, until `stop`.
fn accept_loop(listener: TcpListener, stop: CancellationToken, take: impl Fn(TcpStream) + Send + 'static) {
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                a = listener.accept() => a,
            };
            if let Ok((client, _)) = accepted {
                take(client);
            }
        }
    });
}
