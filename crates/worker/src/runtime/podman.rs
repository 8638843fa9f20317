//! The `podman` command, typed: one method per call the worker makes (argv arrays from
//! validated values, `CONTAINERS_CONF` when configured, a timeout on every short call), the
//! state-changing ones never killed half-way by construction, and the closed map of read-only
//! admin queries (SPEC §4.4).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use wisehosting_proto::AdminCommand;

use super::command::{self, CommandError};

fn strs(values: &[String]) -> Vec<&str> {
    values.iter().map(String::as_str).collect()
}

/// How long an admin query may run.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The argv of each allowed admin query ([`AdminCommand`]); anything else has none.
pub fn admin_argv(command: &str) -> Option<&'static [&'static str]> {
    AdminCommand::parse(command).map(AdminCommand::podman_args)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminOutcome {
    pub output: String,
    pub err: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Podman {
    program: PathBuf,
    containers_conf: Option<PathBuf>,
}

impl Podman {
    pub fn new(containers_conf: Option<PathBuf>) -> Self {
        Self { program: PathBuf::from("podman"), containers_conf }
    }

    /// A podman command with these first arguments, `CONTAINERS_CONF` applied, killed when
    /// dropped; every argv of the worker's podman calls is written in this file.
    fn command_for(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(args).kill_on_drop(true);
        if let Some(conf) = &self.containers_conf {
            cmd.env("CONTAINERS_CONF", conf);
        }
        cmd
    }

    /// A podman command whose output is captured.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.command_for(args);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    /// Runs a call that changes containers, images or networks to its end, even when the
    /// caller is dropped (a cancelled job, a shutting-down agent): a podman killed mid-change
    /// can leave a running container it no longer knows. Every state-changing method goes
    /// through here, so none can be killed half-way.
    async fn change(&self, args: &[&str], targets: &[&str], what: &str) -> Result<String, CommandError> {
        let mut cmd = self.command_for(args);
        cmd.args(targets).kill_on_drop(false);
        command::run(cmd, what).await
    }

    /// Runs a call that only reads; it dies with its caller.
    async fn read(&self, args: &[&str], targets: &[&str], what: &str) -> Result<String, CommandError> {
        let mut cmd = self.command_for(args);
        cmd.args(targets);
        command::run(cmd, what).await
    }

    // ---- Changes (never killed half-way) ----

    /// `podman run -d <args>`; the new container's id.
    pub async fn run_detached(&self, args: &[String]) -> Result<String, CommandError> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.change(&["run", "-d"], &args, "podman run").await
    }

    pub async fn start(&self, ids: &[String]) -> Result<(), CommandError> {
        self.change(&["start", "--"], &strs(ids), "podman start").await.map(drop)
    }

    /// Stops containers, each given `grace_secs` after SIGTERM.
    pub async fn stop(&self, ids: &[String], grace_secs: u32) -> Result<(), CommandError> {
        let grace = grace_secs.to_string();
        self.change(&["stop", "-t", &grace, "--"], &strs(ids), "podman stop").await.map(drop)
    }

    /// Removes containers at once (SIGKILL); one already gone counts as removed.
    pub async fn remove(&self, ids: &[String]) -> Result<(), CommandError> {
        self.change(&["rm", "-f", "--ignore", "-t", "0", "--"], &strs(ids), "podman rm").await.map(drop)
    }

    /// Removes image tags, without `-f`: an image still in use, or tagged for another app,
    /// stays.
    pub async fn untag(&self, tags: &[String]) -> Result<(), CommandError> {
        self.change(&["rmi", "--"], &strs(tags), "podman rmi").await.map(drop)
    }

    /// Gives an image another name (`repo:tag`).
    pub async fn tag(&self, image: &str, name: &str) -> Result<(), CommandError> {
        self.change(&["tag", "--"], &[image, name], "podman tag").await.map(drop)
    }

    /// Removes untagged images older than an hour (what killed or failed builds left).
    pub async fn prune_dangling_images(&self) -> Result<(), CommandError> {
        self.change(&["image", "prune", "-f", "--filter", "until=1h"], &[], "podman image prune")
            .await
            .map(drop)
    }

    /// Creates a network without IPv6; one that exists already is not an error.
    pub async fn create_network(&self, name: &str, subnet: &str, gateway: &str) -> Result<(), CommandError> {
        let args = ["network", "create", "--subnet", subnet, "--gateway", gateway, name];
        match self.change(&args, &[], "podman network create").await {
            // Another worker (or test) may have created it in the meantime.
            Err(CommandError::Failed { output, .. }) if output.contains("already exists") => Ok(()),
            other => other.map(drop),
        }
    }

    // ---- Reads ----

    /// True when the image is on this host.
    pub async fn image_exists(&self, reference: &str) -> bool {
        self.read(&["image", "exists"], &[reference], "podman image exists").await.is_ok()
    }

    pub async fn network_exists(&self, name: &str) -> bool {
        self.read(&["network", "exists", name], &[], "podman network exists").await.is_ok()
    }

    /// The bridge interface of a network.
    pub async fn network_interface(&self, name: &str) -> Result<String, CommandError> {
        self.read(
            &["network", "inspect", "--format", "{{.NetworkInterface}}", name],
            &[],
            "podman network inspect",
        )
        .await
    }

    /// One Go template of `podman inspect` for a container.
    pub async fn inspect(&self, id: &str, format: &str) -> Result<String, CommandError> {
        self.read(&["inspect", "--format", format, "--"], &[id], "podman inspect").await
    }

    /// `podman inspect --format json` of containers.
    pub async fn inspect_json(&self, ids: &[String]) -> Result<String, CommandError> {
        self.read(&["inspect", "--format", "json", "--"], &strs(ids), "podman inspect").await
    }

    /// The last `lines` lines of a container's output ("" when podman cannot tell).
    pub async fn logs_tail(&self, id: &str, lines: u32) -> String {
        let lines = lines.to_string();
        self.read(&["logs", "--tail", &lines, "--"], &[id], "podman logs").await.unwrap_or_default()
    }

    /// Containers, stopped ones included, matching every `label=…` filter.
    pub async fn containers(&self, labels: &[String]) -> Vec<wisehosting_proto::messages::ContainerInfo> {
        let mut args = vec!["ps", "-a", "--format", "json"];
        for label in labels {
            args.extend(["--filter", label]);
        }
        parse_ps(self.read(&args, &[], "podman ps").await.unwrap_or_default().as_bytes())
    }

    /// Ids of containers matching a `label=…` filter, stopped ones included.
    pub async fn container_ids(&self, label: &str) -> Vec<String> {
        let ids = self.read(&["ps", "-aq", "--filter", label], &[], "podman ps").await.unwrap_or_default();
        ids.split_whitespace().map(str::to_string).collect()
    }

    /// `podman ps -a --external --format json`: buildah's working containers included.
    pub async fn all_containers_json(&self) -> String {
        self.read(&["ps", "-a", "--external", "--format", "json"], &[], "podman ps").await.unwrap_or_default()
    }

    /// `podman images --format json` of one repository.
    pub async fn images_json(&self, repository: &str) -> String {
        let filter = format!("reference={repository}");
        self.read(&["images", "--format", "json", "--filter", &filter], &[], "podman images")
            .await
            .unwrap_or_default()
    }

    /// `podman stats --no-stream --format json` of running containers.
    pub async fn stats_json(&self, ids: &[&str]) -> Result<String, CommandError> {
        self.read(
            &["stats", "--no-stream", "--format", "{{json .ContainerStats}}", "--"],
            ids,
            "podman stats",
        )
        .await
    }

    // ---- Long-running commands, run by their callers ----

    /// `podman build`, under the cgroup manager that honours `--cgroup-parent`; the caller
    /// adds the limits and sources and runs it in a process group it can stop whole.
    /// `podman run …` for a one-off container run to its end (a release command).
    pub fn run_command(&self) -> Command {
        self.command_for(&["run"])
    }

    pub fn build_command(&self) -> Command {
        self.command_for(&["--cgroup-manager", "cgroupfs", "build"])
    }

    /// Follows a container's output from its last 100 lines.
    pub fn follow_logs(&self, id: &str) -> Command {
        let mut cmd = self.command_for(&["logs", "-f", "--tail", "100", "--"]);
        cmd.arg(id);
        cmd
    }

    /// The deaths of this worker's containers, as JSON lines.
    pub fn death_events(&self, instance: &str) -> Command {
        let mut cmd = self.command_for(&["events", "--format", "json", "--filter", "event=died", "--filter"]);
        cmd.arg(format!("label=wisehosting.instance={instance}"));
        cmd
    }

    /// Runs an allowed admin query; output is returned even when podman exits non-zero.
    pub async fn admin_query(&self, command: &str) -> AdminOutcome {
        let Some(argv) = admin_argv(command) else {
            return AdminOutcome { output: String::new(), err: Some("unknown command".into()) };
        };
        match tokio::time::timeout(ADMIN_TIMEOUT, self.command(argv).output()).await {
            Err(_) => AdminOutcome { output: String::new(), err: Some("timed out after 10 s".into()) },
            Ok(Err(e)) => {
                AdminOutcome { output: String::new(), err: Some(format!("cannot run podman: {e}")) }
            }
            Ok(Ok(out)) => {
                let output = String::from_utf8_lossy(&out.stdout).into_owned();
                let err = (!out.status.success()).then(|| {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    let tail: String =
                        stderr.chars().rev().take(500).collect::<Vec<_>>().into_iter().rev().collect();
                    format!("podman exited with {}: {}", out.status, tail.trim())
                });
                AdminOutcome { output, err }
            }
        }
    }

    /// How many containers run; 0 when podman is missing or fails.
    pub async fn running_containers(&self) -> u64 {
        let out = tokio::time::timeout(Duration::from_secs(5), self.command(&["ps", "-q"]).output()).await;
        match out {
            Ok(Ok(out)) if out.status.success() => {
                String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count() as u64
            }
            _ => 0,
        }
    }
}

impl Podman {
    /// This worker's app containers (labelled `wisehosting.app` and with its instance), for
    /// `hello`: never another worker's sharing this host's podman. At most 10 s: the `hello`
    /// it goes into must not wait on a stuck podman.
    pub async fn app_containers(&self, instance: &str) -> Vec<wisehosting_proto::messages::ContainerInfo> {
        let label = [
            format!("label={}", wisehosting_proto::LABEL_APP),
            format!("label=wisehosting.instance={instance}"),
        ];
        tokio::time::timeout(Duration::from_secs(10), self.containers(&label)).await.unwrap_or_default()
    }
}

/// A time podman wrote, in RFC 3339 (an event's `Time`, a container's `State.FinishedAt`).
pub fn time(value: &serde_json::Value) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(value.as_str()?).ok().map(|t| t.with_timezone(&chrono::Utc))
}

/// Reads `podman ps --format json` into container inventory entries.
pub fn parse_ps(json: &[u8]) -> Vec<wisehosting_proto::messages::ContainerInfo> {
    use wisehosting_proto::messages::ContainerInfo;
    let Ok(serde_json::Value::Array(items)) = serde_json::from_slice::<serde_json::Value>(json) else {
        return Vec::new();
    };
    items
        .iter()
        .map(|c| {
            let label = |name: &str| c["Labels"][name].as_str().and_then(|v| v.parse::<i64>().ok());
            ContainerInfo {
                id: c["Id"].as_str().unwrap_or_default().to_string(),
                name: c["Names"][0].as_str().unwrap_or_default().to_string(),
                app_id: label(wisehosting_proto::LABEL_APP),
                deployment_id: label(wisehosting_proto::LABEL_DEPLOYMENT),
                image_id: c["ImageID"].as_str().unwrap_or_default().to_string(),
                state: c["State"].as_str().unwrap_or_default().to_string(),
                host_port: c["Ports"][0]["host_port"].as_u64().and_then(|p| u16::try_from(p).ok()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn anything_outside_the_five_queries_is_refused_without_running_anything() {
        let canary = std::env::temp_dir().join(format!("wh-canary-{}", std::process::id()));
        let canary_text = canary.display().to_string();
        let touch = format!("touch {canary_text}");
        let subst = format!("$(touch {canary_text})");
        let chained = format!("ps; touch {canary_text}");
        let podman = Podman::new(None);
        for bad in [
            "exec",
            "rm",
            "; id",
            "$(whoami)",
            "-rf",
            "--help",
            "ps ",
            "PS",
            "",
            touch.as_str(),
            subst.as_str(),
            chained.as_str(),
        ] {
            assert_eq!(admin_argv(bad), None, "{bad:?}");
            let outcome = podman.admin_query(bad).await;
            assert_eq!(outcome.err.as_deref(), Some("unknown command"), "{bad:?}");
            assert!(outcome.output.is_empty());
        }
        assert!(!canary.exists(), "a refused command ran");
    }

    #[test]
    fn the_five_queries_map_to_read_only_json_listings() {
        for (cmd, argv) in [
            ("ps", vec!["ps", "--format", "json"]),
            ("ps_all", vec!["ps", "-a", "--format", "json"]),
            ("network_ls", vec!["network", "ls", "--format", "json"]),
            ("volume_ls", vec!["volume", "ls", "--format", "json"]),
            ("image_ls", vec!["image", "ls", "--format", "json"]),
        ] {
            assert_eq!(admin_argv(cmd).map(|a| a.to_vec()), Some(argv));
        }
    }
}
