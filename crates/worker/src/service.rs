//! systemd integration of the three binaries (`Type=notify`): [`ready`] once the service
//! serves, a watchdog kept fed from the async runtime (so a wedged runtime is restarted by
//! systemd after `WatchdogSec=`), and [`stopping`] when shutdown begins. Outside systemd (no
//! `NOTIFY_SOCKET`) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// Tells systemd the service is ready (with a status line), and when the unit has a watchdog,
/// pings it at half its period until `shutdown`.
pub fn ready(status: &str, shutdown: CancellationToken) {
    if let Err(e) = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(status)]) {
        tracing::warn!(error = %e, "cannot tell systemd the service is ready");
        return;
    }
    let Some(period) =
        watchdog_period(std::env::var("WATCHDOG_USEC").ok(), std::env::var("WATCHDOG_PID").ok())
    else {
        return;
    };
    let every = period / 2;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = sd_notify::notify(false, &[NotifyState::Watchdog]) {
                        tracing::warn!(error = %e, "cannot ping systemd's watchdog");
                    }
                }
            }
        }
    });
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

/// Tells systemd the service is stopping (its stop timeout covers the drain).
pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
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
