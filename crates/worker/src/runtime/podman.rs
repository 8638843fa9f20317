//! The `podman` command: argv arrays from validated values, `CONTAINERS_CONF` when configured,
//! a timeout on every call, and the closed map of read-only admin queries (SPEC §4.4).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use wisehosting_proto::AdminCommand;

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

    /// A podman command with these first arguments, `CONTAINERS_CONF` applied; the caller adds
    /// the rest and chooses how to read its output.
    pub fn command_for(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(args).kill_on_drop(true);
        if let Some(conf) = &self.containers_conf {
            cmd.env("CONTAINERS_CONF", conf);
        }
        cmd
    }

    /// Runs a command that changes containers or images (`start`, `stop`, `rm`, `prune`) to
    /// its end, output discarded; true when it succeeded. Never killed half-way, even when the
    /// caller is dropped: a podman killed mid-change can leave a running container it no
    /// longer knows.
    pub async fn change(&self, args: &[&str], targets: &[String]) -> bool {
        let mut cmd = self.command_for(args);
        cmd.args(targets)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(false);
        cmd.status().await.is_ok_and(|s| s.success())
    }

    /// A podman command whose output is captured.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.command_for(args);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
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
    /// The app containers on this host (labelled `wisehosting.app`), for `hello`.
    pub async fn app_containers(&self) -> Vec<wisehosting_proto::messages::ContainerInfo> {
        let filter = format!("label={}", wisehosting_proto::LABEL_APP);
        let args = ["ps", "-a", "--filter", filter.as_str(), "--format", "json"];
        let out = tokio::time::timeout(Duration::from_secs(10), self.command(&args).output()).await;
        let Ok(Ok(out)) = out else { return Vec::new() };
        if !out.status.success() {
            return Vec::new();
        }
        parse_ps(&out.stdout)
    }
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
