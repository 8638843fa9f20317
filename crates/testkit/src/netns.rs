//! [`PrivateCanary`]: an HTTP listener on private addresses that really answer — in a network
//! namespace of its own, joined to the host by a veth pair — so a test that says a container
//! cannot reach private ranges or the mesh can fail: an unconfined container reaches it, a
//! confined one must not. Every connection is counted.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct PrivateCanary {
    /// An RFC 1918 address (172.31.x.y).
    pub private: Ipv4Addr,
    /// An address in the mesh range (10.50.x.y).
    pub mesh: Ipv4Addr,
    pub port: u16,
    hits: Arc<AtomicUsize>,
    namespace: String,
    task: tokio::task::JoinHandle<()>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl PrivateCanary {
    /// Creates the namespace `whc<random>` and starts answering `HTTP/1.0 200` with `canary`
    /// on both addresses.
    pub async fn start() -> PrivateCanary {
        let [a, b, c] = wisehosting_crypto::random_bytes::<3>();
        let tag = hex::encode([a, b, c]);
        let namespace = format!("whc{tag}");
        let (host_if, ns_if) = (format!("whc{tag}h"), format!("whc{tag}n"));
        // Two /30s: .1 on the host's end, .2 in the namespace.
        let quad = (c & 0x3f) * 4;
        let private = Ipv4Addr::new(172, 31, a, quad + 2);
        let mesh = Ipv4Addr::new(10, 50, 128 | (b & 0x7f), quad + 2);
        ip(&["netns", "add", &namespace]);
        ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &ns_if]);
        ip(&["link", "set", &ns_if, "netns", &namespace]);
        for addr in [private, mesh] {
            let o = addr.octets();
            let host_side = format!("{}.{}.{}.{}/30", o[0], o[1], o[2], o[3] - 1);
            ip(&["addr", "add", &host_side, "dev", &host_if]);
            ip(&["-n", &namespace, "addr", "add", &format!("{addr}/30"), "dev", &ns_if]);
        }
        ip(&["link", "set", &host_if, "up"]);
        ip(&["-n", &namespace, "link", "set", &ns_if, "up"]);
        ip(&["-n", &namespace, "link", "set", "lo", "up"]);
        let gateway = Ipv4Addr::new(172, 31, a, quad + 1).to_string();
        ip(&["-n", &namespace, "route", "add", "default", "via", &gateway]);

        // The listener's socket is made inside the namespace (by a thread that enters it) and
        // served from here: a socket stays in the namespace it was made in.
        let path = format!("/run/netns/{namespace}");
        let listener = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open the namespace");
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("enter the namespace");
            let listener = std::net::TcpListener::bind((IpAddr::from([0, 0, 0, 0]), 0)).expect("bind");
            listener.set_nonblocking(true).expect("nonblocking");
            listener
        })
        .join()
        .expect("listener thread");
        let port = listener.local_addr().expect("addr").port();
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = socket.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\ncanary").await;
            }
        });
        PrivateCanary { private, mesh, port, hits, namespace, task }
    }

    /// Connections accepted so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for PrivateCanary {
    fn drop(&mut self) {
        self.task.abort();
        // Deleting the namespace deletes its end of the veth pair, and with it the host's.
        let _ = Command::new("ip").args(["netns", "delete", &self.namespace]).output();
    }
}
