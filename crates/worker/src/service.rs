//! systemd integration of the three binaries (`Type=notify`): [`ready`] once the service
//! serves, a watchdog kept fed from the async runtime (so a wedged runtime is restarted by
//! systemd after `WatchdogSec=`), and [`stopping`] when shutdown begins.
//!
//! [`take_from_env`] runs first in each `main`, before any thread: it keeps where to notify
//! and removes `NOTIFY_SOCKET` and `WATCHDOG_*` from the environment, so nothing the service
//! runs inherits them — podman and runc notify systemd themselves when they see
//! `NOTIFY_SOCKET`, which fails every build and would speak for the service. Outside systemd
//! every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// Where systemd listens, and the watchdog period it asked for.
#[derive(Debug, Default)]
struct Notifier {
    socket: Option<PathBuf>,
    watchdog: Option<Duration>,
}

static NOTIFIER: OnceLock<Notifier> = OnceLock::new();

/// Reads systemd's notify settings and removes them from this process's environment. Call it
/// first thing in `main`, while the process has one thread.
pub fn take_from_env() {
    let socket = std::env::var_os("NOTIFY_SOCKET").map(PathBuf::from);
    let watchdog = watchdog_period(std::env::var("WATCHDOG_USEC").ok(), std::env::var("WATCHDOG_PID").ok());
    // The crate unsets the variables (it owns that `unsafe`); the status line is harmless.
    let mut usec = 0;
    let _ = sd_notify::watchdog_enabled(true, &mut usec);
    if socket.is_some() {
        let _ = sd_notify::notify(true, &[NotifyState::Status("starting")]);
    }
    let _ = NOTIFIER.set(Notifier { socket, watchdog });
}

/// Sends one notification (`KEY=value` lines); nothing without a socket.
fn send(message: &str) -> std::io::Result<()> {
    let Some(path) = NOTIFIER.get().and_then(|n| n.socket.as_ref()) else { return Ok(()) };
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_os_str().as_encoded_bytes();
    match bytes.strip_prefix(b"@") {
        // An abstract socket (`@name`), as systemd may give.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(message.as_bytes(), &addr)?;
        }
        None => {
            socket.send_to(message.as_bytes(), path)?;
        }
    }
    Ok(())
}

/// Tells systemd the service is ready (with a status line), and when the unit has a watchdog,
/// pings it at half its period until `shutdown`.
pub fn ready(status: &str, shutdown: CancellationToken) {
    let status = status.replace('\n', " ");
    if let Err(e) = send(&format!("READY=1\nSTATUS={status}\n")) {
        tracing::warn!(error = %e, "cannot tell systemd the service is ready");
        return;
    }
    let Some(period) = NOTIFIER.get().and_then(|n| n.watchdog) else { return };
    let every = period / 2;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = send("WATCHDOG=1\n") {
                        tracing::warn!(error = %e, "cannot ping systemd's watchdog");
                    }
                }
            }
        }
    });
}

/// Tells systemd the service is stopping (its stop timeout covers the drain).
pub fn stopping() {
    let _ = send("STOPPING=1\n");
}

/// The watchdog period systemd set, as libsystemd's `sd_watchdog_enabled` reads it:
/// `WATCHDOG_USEC`, for this process when `WATCHDOG_PID` is unset or names it (the
/// `sd-notify` crate's own check also wants the PID set, which systemd does not promise).
fn watchdog_period(usec: Option<String>, pid: Option<String>) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    match pid.map(|p| p.trim().parse::<u32>()) {
        None => Some(Duration::from_micros(usec)),
        Some(Ok(pid)) if pid == std::process::id() => Some(Duration::from_micros(usec)),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_ours_when_its_pid_is_unset_or_ours() {
        let me = std::process::id().to_string();
        assert_eq!(watchdog_period(Some("400000".into()), None), Some(Duration::from_millis(400)));
        assert_eq!(watchdog_period(Some("400000".into()), Some(me)), Some(Duration::from_millis(400)));
        assert_eq!(watchdog_period(Some("400000".into()), Some("1".into())), None, "another process's");
        assert_eq!(watchdog_period(Some("0".into()), None), None);
        assert_eq!(watchdog_period(Some("soon".into()), None), None);
        assert_eq!(watchdog_period(None, None), None);
    }
}
