//! [`Supervisor`]: restarts app containers that exit on their own, with exponential back-off.
//!
//! Podman's own restart policy restarts at once, every time; here a container that exits is
//! started again after 1 s, then 2 s, 4 s … up to 5 minutes between tries, and a run of 60 s
//! counts as healthy (the count starts over). Exits are learnt from one `podman events`
//! stream for the whole worker (one process, not one per container), and from the monitor's
//! periodic look as a fallback. What the worker stops on purpose (a retire, a user's stop, a
//! removal) is released first, so it is never started again; a released id stays released
//! until a user's `start`. The monitor reports the failure count: from
//! [`CRASH_LOOP_FAILURES`] on, the app is crash-looping.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Podman;

/// The first back-off; each further failure doubles it.
pub const BASE_DELAY: Duration = Duration::from_secs(1);
/// The longest wait between two starts.
pub const MAX_DELAY: Duration = Duration::from_secs(300);
/// A run this long resets the failure count.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// Failures in a row after which the app counts as crash-looping.
pub const CRASH_LOOP_FAILURES: u32 = 3;

/// The wait before the next start after `failures` exits in a row (`failures` ≥ 1).
pub fn delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BASE_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

#[derive(Debug)]
struct Watched {
    failures: u32,
    /// Exits of this container the supervisor answered with a start, over its life.
    restarts: u32,
    started: Instant,
    /// When its current run was started, by the wall clock (read before the start): a death
    /// reported from before it is an earlier run's, reported late.
    started_at: DateTime<Utc>,
    /// A restart is scheduled (between an exit and the next start).
    pending: bool,
    /// The exit code of its last exit, when known (podman resets it once the container runs
    /// again, so a crash loop's code is kept here).
    last_exit: Option<i32>,
    stop: CancellationToken,
}

#[derive(Debug, Default)]
struct State {
    watched: HashMap<String, Watched>,
    released: HashSet<String>,
}

#[derive(Debug)]
pub struct Supervisor {
    podman: Podman,
    state: Mutex<State>,
}

impl Supervisor {
    pub fn new(podman: Podman) -> Arc<Supervisor> {
        Arc::new(Supervisor { podman, state: Mutex::new(State::default()) })
    }

    /// Watches a running container (a fresh start: no failures), unless it was released;
    /// watching twice is a no-op.
    pub fn watch(&self, id: &str) {
        let Ok(mut state) = self.state.lock() else { return };
        if state.released.contains(id) || state.watched.contains_key(id) {
            return;
        }
        let watched = Watched {
            failures: 0,
            restarts: 0,
            started: Instant::now(),
            started_at: Utc::now(),
            pending: false,
            last_exit: None,
            stop: CancellationToken::new(),
        };
        state.watched.insert(id.to_string(), watched);
    }

    /// Watches again what was released (a user's `start`).
    pub fn rewatch(&self, ids: &[String]) {
        if let Ok(mut state) = self.state.lock() {
            for id in ids {
                state.released.remove(id);
            }
        }
        for id in ids {
            self.watch(id);
        }
    }

    /// Stops watching before the worker stops or removes these containers on purpose; a
    /// scheduled restart is called off.
    pub fn release(&self, ids: &[String]) {
        let Ok(mut state) = self.state.lock() else { return };
        for id in ids {
            if let Some(w) = state.watched.remove(id) {
                w.stop.cancel();
            }
            state.released.insert(id.clone());
        }
    }

    /// Exits in a row of a watched container, if watched (0 once it has run for
    /// [`HEALTHY_AFTER`] since its last start).
    pub fn failures(&self, id: &str) -> Option<u32> {
        let state = self.state.lock().ok()?;
        let w = state.watched.get(id)?;
        Some(if !w.pending && w.started.elapsed() >= HEALTHY_AFTER { 0 } else { w.failures })
    }

    /// The code a watched container last exited with, when known.
    pub fn last_exit(&self, id: &str) -> Option<i32> {
        let state = self.state.lock().ok()?;
        state.watched.get(id).and_then(|w| w.last_exit)
    }

    /// Times a watched container exited and was (or is about to be) started again.
    pub fn restarts(&self, id: &str) -> Option<u32> {
        let state = self.state.lock().ok()?;
        state.watched.get(id).map(|w| w.restarts)
    }

    /// Drops what is known of containers that no longer exist.
    pub fn retain(&self, existing: &HashSet<&str>) {
        if let Ok(mut state) = self.state.lock() {
            state.released.retain(|id| existing.contains(id.as_str()));
            state.watched.retain(|id, w| {
                let keep = existing.contains(id.as_str());
                if !keep {
                    w.stop.cancel();
                }
                keep
            });
        }
    }

    /// A watched container exited (at `died_at`, when the caller knows): count the failure and
    /// schedule its start after the back-off (once: a second report of the same exit changes
    /// nothing, nor does a report of an earlier run's exit that arrives after the start).
    pub fn exited(self: &Arc<Self>, id: &str, died_at: Option<DateTime<Utc>>) {
        self.exited_with(id, None, died_at);
    }

    /// Like [`Supervisor::exited`], with the exit code when the caller knows it.
    pub fn exited_with(self: &Arc<Self>, id: &str, code: Option<i32>, died_at: Option<DateTime<Utc>>) {
        let (failures, stop) = {
            let Ok(mut state) = self.state.lock() else { return };
            let Some(w) = state.watched.get_mut(id) else { return };
            // The monitor's look (a listing taken before the start) or the events stream (late
            // under load) can report the death the start answered: counted again, it scheduled a
            // second start that cut the back-off of the run's own death short.
            if died_at.is_some_and(|t| t < w.started_at) {
                return;
            }
            if code.is_some() {
                w.last_exit = code;
            }
            if w.pending {
                return;
            }
            w.failures = if w.started.elapsed() >= HEALTHY_AFTER { 1 } else { w.failures.saturating_add(1) };
            w.pending = true;
            w.restarts = w.restarts.saturating_add(1);
            (w.failures, w.stop.clone())
        };
        let wait = delay(failures);
        tracing::info!(container = %id, failures, delay_ms = wait.as_millis() as u64, "an app container exited; starting it again after a back-off");
        tokio::spawn(self.clone().restart_later(id.to_string(), wait, stop));
    }

    async fn restart_later(self: Arc<Self>, id: String, wait: Duration, stop: CancellationToken) {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let target = [id.clone()];
        let started_at = Utc::now();
        let ok = self.podman.start(&target).await.is_ok();
        if stop.is_cancelled() {
            // Released while podman was starting it: the worker's own stop may have run
            // before this start, so stop it again.
            let _ = self.podman.stop(&target, 5).await;
            return;
        }
        let Ok(mut state) = self.state.lock() else { return };
        if !ok {
            tracing::warn!(container = %id, "cannot start the app container again");
            state.watched.remove(&id);
            return;
        }
        if let Some(w) = state.watched.get_mut(&id) {
            w.pending = false;
            w.started = Instant::now();
            w.started_at = started_at;
        }
    }

    /// Follows `podman events` for this worker's containers' deaths until `shutdown`,
    /// starting the stream again if it ends.
    pub async fn run(self: Arc<Self>, instance: String, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let mut events = self.podman.death_events(&instance);
            events.stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true);
            match events.spawn() {
                Ok(mut child) => {
                    if let Some(stdout) = child.stdout.take() {
                        let mut lines = BufReader::new(stdout).lines();
                        loop {
                            let line = tokio::select! {
                                _ = shutdown.cancelled() => return,
                                line = lines.next_line() => line,
                            };
                            let Ok(Some(line)) = line else { break };
                            if let Some((id, code, died_at)) = died_container(&line) {
                                self.exited_with(&id, code, died_at);
                            }
                        }
                    }
                    let _ = child.kill().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot follow podman events; the monitor's look every few seconds takes over")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }
}

/// The container id, exit code and time of a `died` event line of `podman events --format
/// json`.
fn died_container(line: &str) -> Option<(String, Option<i32>, Option<DateTime<Utc>>)> {
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    if event["Status"] != "died" {
        return None;
    }
    let code = event["ContainerExitCode"].as_i64().and_then(|c| i32::try_from(c).ok());
    Some((event["ID"].as_str()?.to_string(), code, super::podman::time(&event["Time"])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_doubles_from_one_second_up_to_five_minutes() {
        let secs: Vec<u64> = (1..=12).map(|f| delay(f).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(delay(u32::MAX), MAX_DELAY);
        assert_eq!(delay(0), BASE_DELAY);
    }

    #[test]
    fn died_events_name_their_container_and_its_exit_code() {
        let line = r#"{"ContainerExitCode":5,"ID":"0c4eb4","Image":"x","Name":"n","Status":"died","Time":"2026-12-07T21:01:45.222429379Z","Type":"container"}"#;
        let at = DateTime::parse_from_rfc3339("2026-12-07T21:01:45.222429379Z")
            .map(|t| t.with_timezone(&Utc))
            .ok();
        assert_eq!(died_container(line), Some(("0c4eb4".to_string(), Some(5), at)));
        assert_eq!(
            died_container(r#"{"ID":"0c4eb4","Status":"died"}"#),
            Some(("0c4eb4".to_string(), None, None))
        );
        assert_eq!(died_container(r#"{"ID":"0c4eb4","Status":"start"}"#), None);
        assert_eq!(died_container("not json"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_container_is_neither_watched_nor_restarted() {
        let supervisor = Supervisor::new(Podman::new(None));
        supervisor.watch("a");
        supervisor.watch("b");
        supervisor.release(&["a".to_string()]);
        supervisor.watch("a");
        assert_eq!(supervisor.failures("a"), None, "a released id stays released");
        assert_eq!(supervisor.failures("b"), Some(0));
        supervisor.exited("a", None);
        assert_eq!(supervisor.failures("a"), None);
        supervisor.exited("b", None);
        supervisor.exited("b", None);
        assert_eq!(supervisor.failures("b"), Some(1), "one exit counts once");
        assert_eq!(supervisor.restarts("b"), Some(1), "and is one restart");
        assert_eq!(supervisor.restarts("a"), None);
        supervisor.rewatch(&["a".to_string()]);
        assert_eq!(supervisor.failures("a"), Some(0));
        supervisor.retain(&["a"].into_iter().collect());
        assert_eq!(supervisor.failures("b"), None, "gone containers are forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn a_death_reported_from_before_the_current_run_is_not_counted() {
        let supervisor = Supervisor::new(Podman::new(None));
        supervisor.watch("a");
        let before = Utc::now() - chrono::Duration::seconds(1);
        supervisor.exited_with("a", Some(7), Some(before));
        assert_eq!(supervisor.restarts("a"), Some(0), "an earlier run's death, reported late");
        assert_eq!(supervisor.last_exit("a"), None);
        supervisor.exited_with("a", Some(7), Some(Utc::now() + chrono::Duration::seconds(1)));
        assert_eq!(
            (supervisor.restarts("a"), supervisor.last_exit("a")),
            (Some(1), Some(7)),
            "this run's death"
        );
    }
}
