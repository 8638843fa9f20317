//! A private PostgreSQL cluster for single-machine mode.
//!
//! The cluster lives in `<data dir>/postgres` (`data/` for PGDATA, `run/` for the unix socket,
//! `postgres.log`), listens on the socket only (no TCP port), and trusts local connections,
//! which only its owner can reach (`run/` is mode 0700). PostgreSQL refuses to run as root, so
//! when we are root it runs as the `postgres` system user. When that user cannot traverse to
//! the data dir (a checkout under `/root`, mode 0700), the cluster is kept in
//! `/var/lib/wisehosting/dev-postgres/<hash of the data dir>` instead and a note in the data dir
//! says where.
//!
//! `postgres` is started directly (argv, no `pg_ctl -o` string, which goes through a shell), in
//! its own process group so a terminal's Ctrl-C reaches only us: we stop it ourselves after the
//! control plane has drained.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid, User};

/// The Debian package that ships the server binaries.
pub const PG_PACKAGE: &str = "postgresql-15";
const SOCKET_PATH_MAX: usize = 107;
const FALLBACK_ROOT: &str = "/var/lib/wisehosting/dev-postgres";

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) were not found in /usr/lib/postgresql/*/bin or on PATH; install them with `apt-get install {PG_PACKAGE}` or point WH_PG_BINDIR at their directory"
    )]
    BinariesMissing,
    #[error(
        "running as root needs the `postgres` system user, because PostgreSQL refuses to run as root; install `{PG_PACKAGE}` (it creates the user) or run as an ordinary user"
    )]
    NoPostgresUser,
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("initdb failed for {path} (exit {status}): {output}")]
    Initdb { path: PathBuf, status: String, output: String },
    #[error(
        "the unix socket path {path} is {len} bytes, over the limit of {SOCKET_PATH_MAX}; choose a shorter --data-dir"
    )]
    SocketPathTooLong { path: PathBuf, len: usize },
    #[error("PostgreSQL did not start within {secs} s; its log {log} ends with: {tail}")]
    StartTimeout { secs: u64, log: PathBuf, tail: String },
    #[error("PostgreSQL exited at start-up ({status}); its log {log} ends with: {tail}")]
    Exited { status: String, log: PathBuf, tail: String },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PgError + 'a {
    move |source| PgError::Io { action, path: path.to_path_buf(), source }
}

/// The directory holding `initdb` and `postgres`.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub bindir: PathBuf,
}

impl Binaries {
    pub fn find() -> Result<Binaries, PgError> {
        let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
        if let Some(dir) = std::env::var_os("WH_PG_BINDIR").map(PathBuf::from) {
            return if has_both(&dir) { Ok(Binaries { bindir: dir }) } else { Err(PgError::BinariesMissing) };
        }
        let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((version, e.path().join("bin")))
            })
            .filter(|(_, dir)| has_both(dir))
            .collect();
        versioned.sort();
        if let Some((_, dir)) = versioned.pop() {
            return Ok(Binaries { bindir: dir });
        }
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .find(|dir| has_both(dir))
            .map(|bindir| Binaries { bindir })
            .ok_or(PgError::BinariesMissing)
    }
}

/// The account the cluster runs as.
#[derive(Debug, Clone, Copy)]
pub struct RunAs {
    pub uid: Uid,
    pub gid: Gid,
    /// True when we switch to another user (we are root).
    pub switch: bool,
}

impl RunAs {
    pub fn detect() -> Result<RunAs, PgError> {
        if !Uid::effective().is_root() {
            return Ok(RunAs { uid: Uid::effective(), gid: Gid::effective(), switch: false });
        }
        let user = User::from_name("postgres").ok().flatten().ok_or(PgError::NoPostgresUser)?;
        Ok(RunAs { uid: user.uid, gid: user.gid, switch: true })
    }

    fn command(&self, program: PathBuf, cwd: &Path) -> Command {
        let mut cmd = Command::new(program);
        // The caller's directory may be closed to the cluster's account (a checkout in /root).
        cmd.current_dir(cwd);
        if self.switch {
            cmd.uid(self.uid.as_raw()).gid(self.gid.as_raw());
        }
        cmd
    }

    fn own(&self, path: &Path) -> Result<(), PgError> {
        if self.switch {
            std::os::unix::fs::chown(path, Some(self.uid.as_raw()), Some(self.gid.as_raw()))
                .map_err(io_err("cannot hand over", path))?;
        }
        Ok(())
    }

    /// Whether this account can reach `path` through every ancestor directory.
    fn can_traverse(&self, path: &Path) -> bool {
        if !self.switch {
            return true;
        }
        path.ancestors().skip(1).all(|dir| {
            let Ok(meta) = fs::metadata(dir) else { return false };
            let mode = std::os::unix::fs::MetadataExt::mode(&meta);
            let owner = std::os::unix::fs::MetadataExt::uid(&meta);
            let group = std::os::unix::fs::MetadataExt::gid(&meta);
            if owner == self.uid.as_raw() {
                mode & 0o100 != 0
            } else if group == self.gid.as_raw() {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            }
        })
    }
}

/// Where a cluster's files are.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("postgres.log")
    }
    fn socket(&self) -> PathBuf {
        self.run().join(".s.PGSQL.5432")
    }
    /// A sqlx URL for `database` over the unix socket.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@localhost/{database}?host={}", self.run().display())
    }

    /// The cluster root for a data dir: inside it when the cluster's account can reach it,
    /// else a fixed place keyed by the data dir's path.
    pub fn choose(data_dir: &Path, run_as: &RunAs) -> Layout {
        let inside = data_dir.join("postgres");
        if run_as.can_traverse(&inside) {
            return Layout { root: inside };
        }
        let key = wisehosting_crypto::sha256_hex(data_dir.as_os_str().as_encoded_bytes());
        Layout { root: Path::new(FALLBACK_ROOT).join(&key[..16]) }
    }
}

/// A running cluster, stopped by [`Cluster::stop`] (fast shutdown).
#[derive(Debug)]
pub struct Cluster {
    pub layout: Layout,
    child: Child,
}

/// Creates the cluster on first use; returns true when it was created now.
pub fn ensure(bins: &Binaries, run_as: &RunAs, layout: &Layout) -> Result<bool, PgError> {
    let data = layout.data();
    if data.join("PG_VERSION").is_file() {
        return Ok(false);
    }
    let socket = layout.socket();
    let len = socket.as_os_str().len();
    if len > SOCKET_PATH_MAX {
        return Err(PgError::SocketPathTooLong { path: socket, len });
    }
    // Parents must be traversable by the cluster's account; the cluster dirs are its alone.
    if let Some(parent) = layout.root.parent()
        && !parent.exists()
    {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(io_err("cannot create", parent))?;
    }
    for dir in [layout.root.clone(), layout.run()] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("cannot create", &dir))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err("cannot set permissions of", &dir))?;
        run_as.own(&dir)?;
    }
    // A data dir left by an interrupted initdb is removed so the next try starts clean.
    if data.exists() {
        fs::remove_dir_all(&data).map_err(io_err("cannot remove the incomplete", &data))?;
    }
    let output = run_as
        .command(bins.bindir.join("initdb"), &layout.root)
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions"])
        .stdin(Stdio::null())
        .output()
        .map_err(io_err("cannot run initdb for", &data))?;
    if !output.status.success() {
        let _ = fs::remove_dir_all(&data);
        let text = String::from_utf8_lossy(&output.stderr);
        return Err(PgError::Initdb {
            path: data,
            status: output.status.to_string(),
            output: text.lines().rev().take(3).collect::<Vec<_>>().join(" / "),
        });
    }
    Ok(true)
}

/// Starts the cluster and waits until its socket accepts connections.
pub fn start(bins: &Binaries, run_as: &RunAs, layout: &Layout) -> Result<Cluster, PgError> {
    stop_stale(layout);
    let log_path = layout.log();
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_err("cannot open the log", &log_path))?;
    let log_err = log.try_clone().map_err(io_err("cannot open the log", &log_path))?;
    let child = run_as
        .command(bins.bindir.join("postgres"), &layout.root)
        .arg("-D")
        .arg(layout.data())
        .arg("-k")
        .arg(layout.run())
        .args(["-c", "listen_addresses=", "-c", "unix_socket_permissions=0700"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(io_err("cannot start postgres for", &layout.data()))?;
    let mut cluster = Cluster { layout: layout.clone(), child };
    cluster.wait_ready(Duration::from_secs(30))?;
    Ok(cluster)
}

impl Cluster {
    fn wait_ready(&mut self, limit: Duration) -> Result<(), PgError> {
        let started = Instant::now();
        let socket = self.layout.socket();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(PgError::Exited {
                    status: status.to_string(),
                    log: self.layout.log(),
                    tail: log_tail(&self.layout.log()),
                });
            }
            // The socket file appears when postgres listens; the lock file beside it is
            // written just before, so wait for both and for "ready" in postmaster.pid.
            if socket.exists() && postmaster_ready(&self.layout.data()) {
                return Ok(());
            }
            if started.elapsed() > limit {
                let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGQUIT);
                let _ = self.child.wait();
                return Err(PgError::StartTimeout {
                    secs: limit.as_secs(),
                    log: self.layout.log(),
                    tail: log_tail(&self.layout.log()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fast shutdown: active sessions end, the cluster checkpoints and exits.
    pub fn stop(mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Immediate shutdown as a last resort; recovery on the next start is safe.
        let _ = kill(pid, Signal::SIGQUIT);
        let _ = self.child.wait();
    }
}

/// postmaster.pid's 8th line is the status, `ready` once connections are accepted.
fn postmaster_ready(data: &Path) -> bool {
    fs::read_to_string(data.join("postmaster.pid"))
        .map(|text| text.lines().nth(7).is_some_and(|l| l.trim() == "ready"))
        .unwrap_or(false)
}

/// A postmaster left running by a control plane that was killed: stop it before starting ours.
fn stop_stale(layout: &Layout) {
    let Ok(text) = fs::read_to_string(layout.data().join("postmaster.pid")) else { return };
    let Some(pid) = text.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) else { return };
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { return };
    let data = layout.data();
    let ours = String::from_utf8_lossy(&cmdline).contains(data.to_string_lossy().as_ref());
    if !ours {
        return;
    }
    tracing::warn!(pid, "stopping a PostgreSQL left running by an earlier run");
    let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
}
