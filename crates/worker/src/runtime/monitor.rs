//! Watches the app containers of this worker: follows each running container's output as
//! `runtime` log lines, reports each app's state (running, exited, crash-looping with its exit
//! code and restarts) and its CPU, memory and network figures. Runs for the agent's whole life;
//! its messages queue until a session is live.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wisehosting_proto::messages::{AppRunState, AppStat, AppStateEntry, AppStates, AppStats, Log, LogStream};

use super::Podman;
use wisehosting_proto::messages::Outgoing;

use super::lines::{LogBatch, LogBudget};
use super::supervisor::{CRASH_LOOP_FAILURES, Supervisor};

/// One container as `podman inspect` describes it.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    app_id: i64,
    running: bool,
    exit_code: Option<i32>,
    restarts: u32,
}

pub struct Monitor {
    pub podman: Podman,
    pub instance: String,
    pub out: mpsc::Sender<Outgoing>,
    pub every: Duration,
    pub supervisor: std::sync::Arc<Supervisor>,
}

impl Monitor {
    pub async fn run(self, stop: CancellationToken) {
        let mut following: HashMap<String, CancellationToken> = HashMap::new();
        let mut last_states: HashMap<i64, AppStateEntry> = HashMap::new();
        let mut tick = tokio::time::interval(self.every);
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    for token in following.values() { token.cancel(); }
                    return;
                }
                _ = tick.tick() => {}
            }
            let mut seen = self.containers().await;
            // Every running app container is wanted (the worker stops what it does not want,
            // releasing it first): watch those not watched yet — after an agent restart, say.
            // An exit the events stream missed is caught here.
            for c in &seen {
                if c.running {
                    self.supervisor.watch(&c.id);
                } else {
                    self.supervisor.exited(&c.id);
                }
            }
            for c in &mut seen {
                c.restarts = self.supervisor.failures(&c.id).unwrap_or(0);
            }
            // An empty list may be a podman that did not answer: forget nothing then.
            if !seen.is_empty() {
                self.supervisor.retain(&seen.iter().map(|c| c.id.as_str()).collect());
            }
            let live: HashSet<&str> = seen.iter().filter(|c| c.running).map(|c| c.id.as_str()).collect();
            following.retain(|id, token| {
                let keep = live.contains(id.as_str()) && !token.is_cancelled();
                if !keep {
                    token.cancel();
                }
                keep
            });
            let new: Vec<&Seen> =
                seen.iter().filter(|c| c.running && !following.contains_key(&c.id)).collect();
            for c in new {
                let token = stop.child_token();
                following.insert(c.id.clone(), token.clone());
                tokio::spawn(follow(self.podman.clone(), c.id.clone(), c.app_id, self.out.clone(), token));
            }
            let states = app_states(&seen);
            let changed: Vec<AppStateEntry> =
                states.into_iter().filter(|s| last_states.get(&s.app_id) != Some(s)).collect();
            for s in &changed {
                last_states.insert(s.app_id, s.clone());
            }
            if !changed.is_empty() {
                let _ = self.out.send(Outgoing::of(&AppStates { apps: changed })).await;
            }
            let stats = self.stats(&seen).await;
            if !stats.is_empty() {
                let _ = self.out.send(Outgoing::of(&AppStats { apps: stats })).await;
            }
        }
    }

    async fn containers(&self) -> Vec<Seen> {
        let ids = self.podman.container_ids(&format!("label=wisehosting.instance={}", self.instance)).await;
        if ids.is_empty() {
            return Vec::new();
        }
        let Ok(listing) = self.podman.inspect_json(&ids).await else {
            return Vec::new();
        };
        let Ok(serde_json::Value::Array(items)) = serde_json::from_str(&listing) else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|c| {
                let app_id = c["Config"]["Labels"]["wisehosting.app"].as_str()?.parse().ok()?;
                Some(Seen {
                    id: c["Id"].as_str()?.to_string(),
                    app_id,
                    running: c["State"]["Running"].as_bool().unwrap_or(false),
                    exit_code: c["State"]["ExitCode"].as_i64().and_then(|v| i32::try_from(v).ok()),
                    restarts: 0,
                })
            })
            .collect()
    }

    async fn stats(&self, seen: &[Seen]) -> Vec<AppStat> {
        let running: Vec<&Seen> = seen.iter().filter(|c| c.running).collect();
        if running.is_empty() {
            return Vec::new();
        }
        let ids: Vec<&str> = running.iter().map(|c| c.id.as_str()).collect();
        let Ok(listing) = self.podman.stats_json(&ids).await else {
            return Vec::new();
        };
        let Ok(serde_json::Value::Array(items)) = serde_json::from_str(&listing) else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|s| {
                let id = s["id"].as_str().or_else(|| s["ID"].as_str())?;
                let app = running
                    .iter()
                    .find(|c| c.id.starts_with(id) || id.starts_with(&c.id[..12.min(c.id.len())]))?;
                Some(AppStat {
                    app_id: app.app_id,
                    cpu_pct: parse_pct(
                        s["cpu_percent"].as_str().or_else(|| s["CPU"].as_str()).unwrap_or("0"),
                    ),
                    memory_bytes: parse_size(
                        s["mem_usage"]
                            .as_str()
                            .or_else(|| s["MemUsage"].as_str())
                            .unwrap_or("0")
                            .split('/')
                            .next()
                            .unwrap_or("0"),
                    ),
                    net_rx_bytes: 0,
                    net_tx_bytes: 0,
                })
            })
            .collect()
    }
}

/// Per app: running if any container runs; crash-looping after repeated exits in a row (the
/// supervisor's count); else exited.
fn app_states(seen: &[Seen]) -> Vec<AppStateEntry> {
    let mut by_app: HashMap<i64, AppStateEntry> = HashMap::new();
    for c in seen {
        let state = if c.running && c.restarts < CRASH_LOOP_FAILURES {
            AppRunState::Running
        } else if c.restarts >= CRASH_LOOP_FAILURES {
            AppRunState::CrashLooping
        } else {
            AppRunState::Exited
        };
        let entry = by_app.entry(c.app_id).or_insert_with(|| AppStateEntry {
            app_id: c.app_id,
            state,
            exit_code: None,
            restarts: 0,
        });
        // A running container wins over an old exited one.
        if state == AppRunState::Running || entry.state != AppRunState::Running {
            entry.state = state;
            entry.exit_code = if c.running { None } else { c.exit_code };
            entry.restarts = c.restarts;
        }
    }
    let mut out: Vec<AppStateEntry> = by_app.into_values().collect();
    out.sort_by_key(|s| s.app_id);
    out
}

fn parse_pct(s: &str) -> f64 {
    s.trim().trim_end_matches('%').parse().unwrap_or(0.0)
}

/// `12.5MB`, `1.2GiB`, `300kB` → bytes.
fn parse_size(s: &str) -> u64 {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.trim().parse().unwrap_or(0.0);
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "kb" => 1e3,
        "kib" => 1024.0,
        "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => 1.0,
    };
    (n * factor) as u64
}

/// Streams one container's output as runtime log lines until it stops or is dropped.
async fn follow(
    podman: Podman,
    id: String,
    app_id: i64,
    out: mpsc::Sender<Outgoing>,
    stop: CancellationToken,
) {
    let mut cmd = podman.follow_logs(&id);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let Ok(mut child) = cmd.spawn() else { return };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else { return };
    let mut rx = super::output_lines(stdout, stderr, 512);
    let mut batch = LogBatch::new(100);
    let mut budget = LogBudget::default();
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break,
            line = rx.recv() => line,
            _ = tokio::time::sleep(Duration::from_millis(300)), if !batch.is_empty() => {
                flush(&out, app_id, &mut batch).await;
                continue;
            }
        };
        let Some(line) = next else { break };
        for line in budget.admit(line) {
            if batch.push(line) {
                flush(&out, app_id, &mut batch).await;
            }
        }
    }
    flush(&out, app_id, &mut batch).await;
    let _ = child.kill().await;
}

async fn flush(out: &mpsc::Sender<Outgoing>, app_id: i64, batch: &mut LogBatch) {
    if batch.is_empty() {
        return;
    }
    let lines = batch.take();
    let _ =
        out.send(Outgoing::of(&Log { app_id, deployment_id: None, stream: LogStream::Runtime, lines })).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(app_id: i64, running: bool, restarts: u32, exit: Option<i32>) -> Seen {
        Seen { id: format!("c{app_id}{restarts}"), app_id, running, exit_code: exit, restarts }
    }

    #[test]
    fn app_states_say_running_exited_or_crash_looping() {
        let states = app_states(&[
            seen(1, true, 0, None),
            seen(2, false, 1, Some(3)),
            seen(3, false, 5, Some(1)),
            seen(1, false, 0, Some(0)),
        ]);
        let by = |id: i64| states.iter().find(|s| s.app_id == id).map(|s| (s.state, s.exit_code, s.restarts));
        assert_eq!(by(1), Some((AppRunState::Running, None, 0)));
        assert_eq!(by(2), Some((AppRunState::Exited, Some(3), 1)));
        assert_eq!(by(3), Some((AppRunState::CrashLooping, Some(1), 5)));
    }

    #[test]
    fn sizes_and_percentages_parse() {
        assert_eq!(parse_size("12.5MB"), 12_500_000);
        assert_eq!(parse_size("1KiB"), 1024);
        assert_eq!(parse_size("300kB "), 300_000);
        assert_eq!(parse_pct("2.50%"), 2.5);
    }
}
