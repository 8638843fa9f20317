//! Canaries: listeners that count every connection and answer `HTTP/1.0 200 canary`, so a
//! test that says something cannot be reached can fail. [`TcpCanary`] listens on a host
//! address; [`PrivateCanary`] on private and mesh addresses that really answer — in a network
//! [`Namespace`] of its own, joined to the host by a veth pair — so an unconfined container
//! reaches it and a confined one must not.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A network namespace joined to the host by a veth pair, with addresses on /30s: for each
/// address given (the namespace's, `.2` of its /30), the host's end gets the one before it,
/// which is also the namespace's default route. Deleted on drop.
pub struct Namespace {
    pub name: String,
}

impl Namespace {
    pub fn create(addrs: &[Ipv4Addr]) -> Namespace {
        let tag = hex::encode(wisehosting_crypto::random_bytes::<3>());
        let name = format!("whn{tag}");
        let (host_if, ns_if) = (format!("whn{tag}h"), format!("whn{tag}n"));
        ip(&["netns", "add", &name]);
        let namespace = Namespace { name };
        let name = namespace.name.as_str();
        ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &ns_if]);
        ip(&["link", "set", &ns_if, "netns", name]);
        for addr in addrs {
            let o = addr.octets();
            let host_side = format!("{}.{}.{}.{}/30", o[0], o[1], o[2], o[3] - 1);
            ip(&["addr", "add", &host_side, "dev", &host_if]);
            ip(&["-n", name, "addr", "add", &format!("{addr}/30"), "dev", &ns_if]);
        }
        ip(&["link", "set", &host_if, "up"]);
        ip(&["-n", name, "link", "set", &ns_if, "up"]);
        ip(&["-n", name, "link", "set", "lo", "up"]);
        if let Some(first) = addrs.first() {
            let o = first.octets();
            let gateway = Ipv4Addr::new(o[0], o[1], o[2], o[3] - 1).to_string();
            ip(&["-n", name, "route", "add", "default", "via", &gateway]);
        }
        namespace
    }

    /// A listener bound to `addr` inside the namespace (made by a thread that enters it: a
    /// socket stays in the namespace it was made in), ready for tokio.
    pub fn listen(&self, addr: SocketAddr) -> tokio::net::TcpListener {
        let path = format!("/run/netns/{}", self.name);
        let listener = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open the namespace");
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("enter the namespace");
            let listener = std::net::TcpListener::bind(addr).expect("bind");
            listener.set_nonblocking(true).expect("nonblocking");
            listener
        })
        .join()
        .expect("listener thread");
        tokio::net::TcpListener::from_std(listener).expect("tokio listener")
    }

    /// A TCP connection to `addr` made from inside the namespace (by a thread that enters
    /// it), within two seconds: `Ok` when something there accepted it.
    pub fn connect(&self, addr: SocketAddr) -> std::io::Result<()> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path)?;
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).map(drop)
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the connecting thread panicked")))
    }

    /// The host's end of the veth pair for the namespace's first address.
    pub fn host_side(addr: Ipv4Addr) -> Ipv4Addr {
        let o = addr.octets();
        Ipv4Addr::new(o[0], o[1], o[2], o[3] - 1)
    }
}

impl Namespace {
    /// Where the namespace is mounted (for `nsenter --net=` and `setns`).
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `program` to be run in the namespace's network (`nsenter --net`: only the network, so
    /// podman still finds the host's cgroups and storage, which `ip netns exec` would hide).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command.arg(format!("--net={}", self.path())).arg(program);
        command
    }

    /// Runs `f` on a thread of its own that has entered the namespace: every socket it makes
    /// is made there, and so is every thread it starts (a tokio runtime's workers) and every
    /// process it spawns.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = self.path();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let file = std::fs::File::open(&path).expect("open the namespace");
                    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                        .expect("enter the namespace");
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Processes whose network is this namespace's (`ip netns pids`).
    pub fn pids(&self) -> Vec<i32> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // What still runs there (a userspace WireGuard, a proxy) would keep it alive.
        for pid in self.pids() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        // The host's end first: a namespace outlives its deletion while a socket made there
        // lingers (a TCP connection still closing), and would keep the pair until then.
        let _ = Command::new("ip").args(["link", "delete", &format!("{}h", self.name)]).output();
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).output();
    }
}

/// Counts and answers every connection `listener` accepts (from loopback peers too, unless
/// `remote_only`: other tests' local clients may stumble on a port).
fn count_connections(
    listener: tokio::net::TcpListener,
    remote_only: bool,
) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut socket, peer)) = listener.accept().await {
            if !(remote_only && peer.ip().to_canonical().is_loopback()) {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            let _ = socket.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\ncanary").await;
        }
    });
    (hits, task)
}

/// A canary on a host address (`0.0.0.0:0` for every address, `[::]:0` for v6 too).
pub struct TcpCanary {
    pub port: u16,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpCanary {
    /// Listens on `addr`; with `remote_only`, connections from loopback are not counted.
    pub async fn bind(addr: &str, remote_only: bool) -> TcpCanary {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind the canary");
        let port = listener.local_addr().expect("addr").port();
        let (hits, task) = count_connections(listener, remote_only);
        TcpCanary { port, hits, task }
    }

    /// Connections counted so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Starts counting again from zero (after a control that was meant to hit).
    pub fn reset(&self) {
        self.hits.store(0, Ordering::SeqCst);
    }
}

impl Drop for TcpCanary {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct PrivateCanary {
    /// An RFC 1918 address (172.31.x.y).
    pub private: Ipv4Addr,
    /// An address in the mesh range (10.50.x.y).
    pub mesh: Ipv4Addr,
    pub port: u16,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
    _namespace: Namespace,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl PrivateCanary {
    /// Creates its namespace and starts answering `HTTP/1.0 200` with `canary` on both
    /// addresses.
    pub async fn start() -> PrivateCanary {
        let [a, b, c] = wisehosting_crypto::random_bytes::<3>();
        let quad = (c & 0x3f) * 4;
        let private = Ipv4Addr::new(172, 31, a, quad + 2);
        let mesh = Ipv4Addr::new(10, 50, 128 | (b & 0x7f), quad + 2);
        let namespace = Namespace::create(&[private, mesh]);
        let listener = namespace.listen(SocketAddr::from(([0, 0, 0, 0], 0)));
        let port = listener.local_addr().expect("addr").port();
        let (hits, task) = count_connections(listener, false);
        PrivateCanary { private, mesh, port, hits, task, _namespace: namespace }
    }

    /// Connections accepted so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for PrivateCanary {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A line of `/etc/hosts` naming `ip` for a unique name, for as long as the guard lives: what
/// the *system* resolver answers (the one git would use, were it not pinned), apart from the
/// DNS server the worker checks with.
pub struct HostsEntry {
    line: String,
}

const HOSTS: &str = "/etc/hosts";

impl HostsEntry {
    pub fn add(ip: IpAddr, name: &str) -> HostsEntry {
        use std::io::Write as _;
        let line = format!("{ip} {name} # wisehosting test");
        let mut file = std::fs::OpenOptions::new().append(true).open(HOSTS).expect("open /etc/hosts");
        writeln!(file, "{line}").expect("append to /etc/hosts");
        HostsEntry { line }
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        if let Ok(text) = std::fs::read_to_string(HOSTS) {
            let kept: String = text.lines().filter(|l| *l != self.line).map(|l| format!("{l}\n")).collect();
            let _ = std::fs::write(HOSTS, kept);
        }
    }
}
