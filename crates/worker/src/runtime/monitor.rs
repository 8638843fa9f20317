//! Watches the app containers of this worker: follows each running container's output as
//! `runtime` log lines, reports each app's state (running, exited, crash-looping with its exit
//! code and restarts) and its CPU, memory and network figures. Runs for the agent's whole life;
//! its messages queue until a session is live.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wisehosting_proto::messages::{
    AppRunState, AppStat, AppStateEntry, AppStates, AppStats, ContainerCounters, Log, LogStream,
};

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
    /// When it last exited (`State.FinishedAt`), if it has.
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
    restarts: u32,
}

pub struct Monitor {
    pub podman: Podman,
    pub instance: String,
    pub out: mpsc::Sender<Outgoing>,
    pub every: Duration,
    pub supervisor: std::sync::Arc<Supervisor>,
    /// Where the per-app request counts come from.
    pub edge: std::sync::Arc<crate::edge::Edge>,
    /// This process's counter epoch ([`AppStats::epoch`]).
    pub epoch: u64,
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
                    self.supervisor.exited(&c.id, c.finished_at);
                }
            }
            for c in &mut seen {
                c.restarts = self.supervisor.failures(&c.id).unwrap_or(0);
                // Podman clears the code once the container runs again; the supervisor kept it.
                if c.exit_code.is_none_or(|code| code == 0) {
                    c.exit_code = self.supervisor.last_exit(&c.id).or(c.exit_code);
                }
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
                let _ = self.out.send(Outgoing::of(&AppStats { apps: stats, epoch: self.epoch })).await;
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
                    finished_at: super::podman::time(&c["State"]["FinishedAt"]),
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
        let restarts = |id: &str| self.supervisor.restarts(id).unwrap_or(0);
        let mut stats = app_stats(&running, &listing, restarts);
        let requests = self.edge.requests_by_app();
        for stat in &mut stats {
            stat.requests = requests.get(&stat.app_id).copied().unwrap_or(0);
        }
        stats
    }
}

/// One line of `podman stats --format '{{json .ContainerStats}}'`: podman's own figures,
/// in bytes and nanoseconds (not the rounded text of `--format json`).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerStats {
    #[serde(rename = "ContainerID")]
    container_id: String,
    #[serde(rename = "CPU", default)]
    cpu: f64,
    #[serde(rename = "CPUNano", default)]
    cpu_nano: u64,
    #[serde(default)]
    mem_usage: u64,
    #[serde(default)]
    mem_limit: u64,
    #[serde(default)]
    net_input: u64,
    #[serde(default)]
    net_output: u64,
}

/// Adds up each app's running containers: CPU, memory and network summed, the limit of one
/// container, restarts summed; lines that do not read, or of containers not asked about,
/// are skipped.
fn app_stats(running: &[&Seen], listing: &str, restarts: impl Fn(&str) -> u32) -> Vec<AppStat> {
    let mut by_app: HashMap<i64, AppStat> = HashMap::new();
    for line in listing.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(s) = serde_json::from_str::<ContainerStats>(line) else { continue };
        let Some(c) = running.iter().find(|c| c.id == s.container_id) else { continue };
        let stat =
            by_app.entry(c.app_id).or_insert_with(|| AppStat { app_id: c.app_id, ..AppStat::default() });
        stat.cpu_pct += s.cpu;
        stat.memory_bytes += s.mem_usage;
        stat.net_rx_bytes += s.net_input;
        stat.net_tx_bytes += s.net_output;
        stat.mem_limit_bytes = stat.mem_limit_bytes.max(s.mem_limit);
        stat.restarts += restarts(&c.id);
        stat.containers.push(ContainerCounters {
            id: c.id.clone(),
            cpu_nanos: s.cpu_nano,
            net_rx_bytes: s.net_input,
            net_tx_bytes: s.net_output,
        });
    }
    let mut out: Vec<AppStat> = by_app.into_values().collect();
    out.sort_by_key(|s| s.app_id);
    out
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
            // A crash loop names the last exit code even while the container runs between exits.
            entry.exit_code =
                if c.running && state != AppRunState::CrashLooping { None } else { c.exit_code };
            entry.restarts = c.restarts;
        }
    }
    let mut out: Vec<AppStateEntry> = by_app.into_values().collect();
    out.sort_by_key(|s| s.app_id);
    out
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
        Seen {
            id: format!("c{app_id}{restarts}"),
            app_id,
            running,
            exit_code: exit,
            finished_at: None,
            restarts,
        }
    }

    #[test]
    fn app_states_say_running_exited_or_crash_looping() {
        let states = app_states(&[
            seen(1, true, 0, None),
            seen(2, false, 1, Some(3)),
            seen(3, false, 5, Some(1)),
            seen(1, false, 0, Some(0)),
            // Running again between exits of a crash loop: the last exit code still shows.
            seen(4, true, 4, Some(3)),
        ]);
        let by = |id: i64| states.iter().find(|s| s.app_id == id).map(|s| (s.state, s.exit_code, s.restarts));
        assert_eq!(by(1), Some((AppRunState::Running, None, 0)));
        assert_eq!(by(2), Some((AppRunState::Exited, Some(3), 1)));
        assert_eq!(by(3), Some((AppRunState::CrashLooping, Some(1), 5)));
        assert_eq!(by(4), Some((AppRunState::CrashLooping, Some(3), 4)));
    }

    #[test]
    fn app_stats_add_up_each_apps_containers_from_podmans_raw_figures() {
        // Lines as podman 4 prints them (trimmed), one unreadable, one of a container not asked about.
        let listing = concat!(
            r#"{"ContainerID":"c10","CPU":1.5,"CPUNano":36665761,"MemUsage":667648,"MemLimit":67108864,"NetInput":426,"NetOutput":1130}"#,
            "\n",
            r#"{"ContainerID":"c11","CPU":0.5,"CPUNano":1000,"MemUsage":1000,"MemLimit":67108864,"NetInput":4,"NetOutput":10}"#,
            "\nnot json\n",
            r#"{"ContainerID":"c20","CPU":9,"CPUNano":5,"MemUsage":5,"MemLimit":0,"NetInput":1,"NetOutput":1}"#,
            "\n",
            r#"{"ContainerID":"elsewhere","CPU":50,"CPUNano":5,"MemUsage":5,"MemLimit":0,"NetInput":1,"NetOutput":1}"#,
        );
        let a = seen(1, true, 0, None);
        let b = Seen { id: "c11".into(), ..seen(1, true, 1, None) };
        let c = seen(2, true, 0, None);
        let stats = app_stats(&[&a, &b, &c], listing, |id| if id == "c11" { 2 } else { 0 });
        assert_eq!(stats.len(), 2);
        let one = &stats[0];
        assert_eq!((one.app_id, one.cpu_pct, one.memory_bytes), (1, 2.0, 668_648));
        assert_eq!(
            (one.net_rx_bytes, one.net_tx_bytes, one.mem_limit_bytes, one.restarts),
            (430, 1140, 67_108_864, 2)
        );
        assert_eq!(one.containers.iter().map(|c| c.cpu_nanos).sum::<u64>(), 36_666_761);
        assert_eq!((stats[1].app_id, stats[1].cpu_pct), (2, 9.0));
    }
}
