//! Worker configuration: YAML at `CONFIG_PATH` (default `/etc/wisehosting/worker.yaml`), with
//! the raw API key and the shared secret from systemd credentials (`worker_api_key`,
//! `worker_shared_secret`) beating the YAML. Unknown keys are refused with their name.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::{Deserialize, Serialize};
use wisehosting_crypto::Secret;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/wisehosting/worker.yaml";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// `https://` (the system's authorities, or `control_plane_ca_file`), or `http://` only to
    /// a loopback or private-range address (the mesh).
    pub control_plane_url: String,
    /// A PEM file of certificate authorities trusted for an `https://` control plane besides
    /// the system's (a control plane with a private CA).
    #[serde(default)]
    pub control_plane_ca_file: Option<PathBuf>,
    /// The raw API key printed by `wisehosting worker create`.
    #[serde(default)]
    pub api_key: Secret,
    /// The fleet's join secret (the control plane's `workers.join_secret`), which registration
    /// presents. Never the master secret: a worker runs untrusted builds.
    #[serde(default)]
    pub shared_secret: Secret,
    pub name: String,
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub edge: EdgeConfig,
    #[serde(default)]
    pub podman: PodmanConfig,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub deploy: DeploySettings,
    #[serde(default)]
    pub mesh: MeshSettings,
}

/// This host's end of the WireGuard mesh (SPEC §11), which the agent brings up itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshSettings {
    /// The `wg-quick` file `wisehosting mesh config --worker NAME` printed, named after the
    /// interface (`/etc/wisehosting/wh0.conf` → `wh0`): when set, the agent brings the
    /// interface up with `wg-quick` before it registers, unless this host has it already.
    pub config_file: Option<PathBuf>,
    /// A userspace WireGuard (`wireguard-go`, `boringtun-cli`, `wisehosting-wg-userspace`),
    /// which `wg-quick` starts when the kernel has no WireGuard module.
    pub userspace: Option<PathBuf>,
}

/// How the deploy pipeline runs on this worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeploySettings {
    /// Prefix of container and image names and value of the `wisehosting.instance` label, so
    /// several platforms (or test runs) can share one podman without touching each other.
    pub instance: String,
    /// Accept `file://` repositories (single-machine mode only).
    pub allow_local_repos: bool,
    /// Base image of the `static` preset (a busybox with `httpd`; `scripts/base-image.sh`).
    pub static_image: String,
    /// Base images of the language presets (SPEC §6): the official images by default; a
    /// worker without a registry uses local ones (`scripts/preset-images.sh`).
    pub node_image: String,
    pub python_image: String,
    /// The Go and Rust presets build in these...
    pub go_image: String,
    pub rust_image: String,
    /// ...and run the binary in this one.
    pub runtime_image: String,
    /// How long a build may take; a longer one is stopped (with its `RUN` steps) and fails.
    pub build_timeout_secs: u64,
    /// The worker's mesh address (its WireGuard IP, e.g. 10.50.0.2): app containers are
    /// published there too, where a central proxy reaches them; unset, only on loopback (for
    /// this worker's own edge router).
    pub mesh_address: Option<std::net::IpAddr>,
    /// How long a new container may take to answer its first non-5xx response.
    pub health_timeout_secs: u64,
    /// How long the old container keeps serving after the switch before it is stopped.
    pub drain_secs: u64,
    /// Run builds on the isolated `wisehosting-build` network (needs iptables and root).
    /// Turning it off lets a build reach private addresses: never in production.
    pub isolate_builds: bool,
    /// Run app containers on the confined `wisehosting-apps` network, whose egress to the
    /// host, private ranges and other apps is refused (needs iptables, `br_netfilter` and
    /// root). Turning it off puts apps on podman's default bridge: never in production.
    pub isolate_apps: bool,
    /// The DNS server (`ip:port`) repository hosts are resolved with before git is let
    /// connect; unset, the system's resolver. The address found is the one git is pinned to.
    pub dns_resolver: Option<SocketAddr>,
    /// A PEM file of certificate authorities git trusts for `https://` repositories, in place
    /// of the system's (a git host with a private CA); unset, the system's.
    pub git_ca_file: Option<PathBuf>,
    /// Registries a repository's Containerfile may pull images from (`FROM`, `COPY --from`);
    /// `localhost` means images already on this worker. Short names (`node:20`) are
    /// `docker.io`'s.
    pub base_image_registries: Vec<String>,
    /// Memory one build may use, its `RUN` steps included.
    pub build_memory_mb: u64,
    /// CPUs one build may use.
    pub build_cpus: f64,
    /// Processes (threads included) one build may have at once, over all its steps.
    pub build_pids: u32,
    /// How often the monitor looks at the app containers and reports their state and figures
    /// (the control plane's live stats, alerts and usage are made of these reports).
    pub monitor_interval_ms: u64,
    /// Images of an app's newest deployments kept on the worker after a switch, so a rollback
    /// to one of them runs without a build (an older one is built again from its commit).
    pub keep_images: usize,
}

impl Default for DeploySettings {
    fn default() -> Self {
        Self {
            instance: "wh".into(),
            allow_local_repos: false,
            static_image: "localhost/wisehosting/busybox:latest".into(),
            node_image: "docker.io/library/node:22-bookworm-slim".into(),
            python_image: "docker.io/library/python:3.12-slim-bookworm".into(),
            go_image: "docker.io/library/golang:1.23-bookworm".into(),
            rust_image: "docker.io/library/rust:1-slim-bookworm".into(),
            runtime_image: "docker.io/library/debian:bookworm-slim".into(),
            build_timeout_secs: 600,
            mesh_address: None,
            health_timeout_secs: 60,
            drain_secs: 2,
            isolate_builds: true,
            isolate_apps: true,
            dns_resolver: None,
            git_ca_file: None,
            base_image_registries: [
                "docker.io",
                "quay.io",
                "ghcr.io",
                "registry.gitlab.com",
                "public.ecr.aws",
                "mcr.microsoft.com",
                "localhost",
            ]
            .map(String::from)
            .to_vec(),
            build_memory_mb: 2048,
            build_cpus: 1.0,
            build_pids: 1024,
            monitor_interval_ms: 5000,
            keep_images: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Where the edge router takes the apps' HTTP traffic.
    pub listen: SocketAddr,
    /// Where its per-app request figures are served (`GET /metrics`); `null` for nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Where it serves HTTPS with the certificates the control plane pushes (SPEC §14.7):
    /// opened when the first certificate arrives; a failure to bind is logged, not fatal;
    /// `null` for nowhere.
    pub https_listen: Option<SocketAddr>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9101))),
            https_listen: Some(SocketAddr::from(([0, 0, 0, 0], 443))),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PodmanConfig {
    /// Handed to podman as `CONTAINERS_CONF` (see `deploy/containers.conf`).
    pub containers_conf: Option<PathBuf>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/wisehosting-worker")
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerConfigError {
    #[error("cannot read worker config {path}: {source}; check CONFIG_PATH")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("worker config {path}: `{key}`: {message}")]
    Bad { path: String, key: String, message: String },
    #[error("cannot read systemd credential {path}: {source}")]
    Credential { path: PathBuf, source: std::io::Error },
    #[error("control_plane_url {url:?} is not a valid http(s) URL; expected e.g. http://10.50.0.1:8081")]
    BadUrl { url: String },
    #[error(
        "control_plane_url {url:?} uses http:// to a public address: the API key would cross the internet in clear; use the mesh address (10.50.0.1) or https://"
    )]
    PlainHttpToPublic { url: String },
    #[error("control_plane_ca_file {path}: {reason}; give a PEM file of certificate authorities")]
    CaFile { path: PathBuf, reason: String },
    #[error("{0} is not set; put it in the config or the systemd credential {1}")]
    Missing(&'static str, &'static str),
}

impl WorkerConfig {
    /// The config at `CONFIG_PATH` with the credentials of `CREDENTIALS_DIRECTORY` (systemd's).
    pub fn load_from_env() -> Result<Self, WorkerConfigError> {
        let path =
            std::env::var_os("CONFIG_PATH").map_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH), PathBuf::from);
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        Self::load(&path, credentials.as_deref())
    }

    /// The config file at `path`, with the secrets found in `credentials` (a directory of
    /// credential files) over the YAML's, checked.
    pub fn load(path: &Path, credentials: Option<&Path>) -> Result<Self, WorkerConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| WorkerConfigError::Read { path: path.to_path_buf(), source })?;
        let mut config = Self::from_yaml(&text, &path.display().to_string())?;
        if let Some(dir) = credentials {
            config.overlay_credentials(dir)?;
        }
        config.check()?;
        Ok(config)
    }

    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, WorkerConfigError> {
        let de = yaml_serde::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| WorkerConfigError::Bad {
            path: origin.to_string(),
            key: e.path().to_string(),
            message: e.inner().to_string().split(" at line ").next().unwrap_or_default().to_string(),
        })
    }

    fn overlay_credentials(&mut self, dir: &Path) -> Result<(), WorkerConfigError> {
        for (name, slot) in
            [("worker_api_key", &mut self.api_key), ("worker_shared_secret", &mut self.shared_secret)]
        {
            let file = dir.join(name);
            match std::fs::read_to_string(&file) {
                Ok(text) => *slot = Secret::new(text.trim_end_matches(['\n', '\r'])),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(WorkerConfigError::Credential { path: file, source }),
            }
        }
        Ok(())
    }

    /// Every check that needs more than types: the URL rule and the two secrets.
    pub fn check(&self) -> Result<(), WorkerConfigError> {
        check_control_plane_url(&self.control_plane_url)?;
        let instance = &self.deploy.instance;
        let plain = !instance.is_empty()
            && instance.len() <= 20
            && instance.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && instance.as_bytes()[0].is_ascii_lowercase();
        if !plain {
            return Err(WorkerConfigError::Bad {
                path: "worker config".into(),
                key: "deploy.instance".into(),
                message: "use 1-20 lowercase letters and digits, starting with a letter".into(),
            });
        }
        if self.deploy.build_timeout_secs == 0 {
            return Err(WorkerConfigError::Bad {
                path: "worker config".into(),
                key: "deploy.build_timeout_secs".into(),
                message: "must be at least 1 (the default is 600)".into(),
            });
        }
        let d = &self.deploy;
        let limits = [
            ("deploy.build_memory_mb", d.build_memory_mb >= 64, "must be at least 64 (the default is 2048)"),
            (
                "deploy.build_cpus",
                d.build_cpus >= 0.01 && d.build_cpus <= 512.0,
                "must be between 0.01 and 512 (the default is 1)",
            ),
            ("deploy.build_pids", d.build_pids >= 32, "must be at least 32 (the default is 1024)"),
            (
                "deploy.monitor_interval_ms",
                (200..=60_000).contains(&d.monitor_interval_ms),
                "must be between 200 and 60000 (the default is 5000)",
            ),
            (
                "deploy.keep_images",
                (1..=100).contains(&d.keep_images),
                "must be between 1 and 100 (the default is 5)",
            ),
            (
                "deploy.git_ca_file",
                d.git_ca_file.as_ref().is_none_or(|f| f.is_absolute()),
                "give an absolute path to a PEM file, or null for the system's authorities",
            ),
            (
                "deploy.node_image, python_image, go_image, rust_image, runtime_image and static_image",
                [
                    &d.node_image,
                    &d.python_image,
                    &d.go_image,
                    &d.rust_image,
                    &d.runtime_image,
                    &d.static_image,
                ]
                .iter()
                .all(|i| {
                    !i.is_empty() && i.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
                }),
                "name an image, e.g. docker.io/library/node:22-bookworm-slim or localhost/wisehosting/node:bookworm",
            ),
            (
                "deploy.base_image_registries",
                d.base_image_registries.iter().all(|r| !r.is_empty() && !r.contains(['/', ' ', '@'])),
                "list registry host names, e.g. docker.io or registry.example.com:5000, without paths",
            ),
        ];
        if let Some((key, _, message)) = limits.iter().find(|(_, ok, _)| !ok) {
            return Err(WorkerConfigError::Bad {
                path: "worker config".into(),
                key: (*key).into(),
                message: (*message).into(),
            });
        }
        if self.api_key.is_empty() {
            return Err(WorkerConfigError::Missing("api_key", "worker_api_key"));
        }
        if self.shared_secret.is_empty() {
            return Err(WorkerConfigError::Missing("shared_secret", "worker_shared_secret"));
        }
        Ok(())
    }
}

/// The base URL, checked: `http://` only to loopback or private-range addresses.
pub fn check_control_plane_url(url: &str) -> Result<Url, WorkerConfigError> {
    let bad = || WorkerConfigError::BadUrl { url: url.to_string() };
    let parsed = Url::parse(url).map_err(|_| bad())?;
    let host = parsed.host_str().ok_or_else(bad)?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad());
    }
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let private = match host.parse::<IpAddr>() {
                Ok(ip) => is_loopback_or_private(ip),
                Err(_) => host.eq_ignore_ascii_case("localhost"),
            };
            if private {
                Ok(parsed)
            } else {
                Err(WorkerConfigError::PlainHttpToPublic { url: url.to_string() })
            }
        }
        _ => Err(bad()),
    }
}

fn is_loopback_or_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
        // fc00::/7, unique local addresses.
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_accepted_only_to_loopback_and_private_addresses() {
        for ok in [
            "http://127.0.0.1:8081",
            "http://10.50.0.1:8081",
            "http://192.168.1.2",
            "http://172.16.0.1",
            "http://[::1]:8081",
            "http://[::ffff:10.50.0.1]",
            "http://localhost:8081",
        ] {
            assert!(check_control_plane_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://8.8.8.8",
            "http://example.com",
            "http://[2001:db8::1]",
            "http://172.32.0.1",
            "http://[::ffff:8.8.8.8]",
        ] {
            assert!(
                matches!(check_control_plane_url(bad), Err(WorkerConfigError::PlainHttpToPublic { .. })),
                "{bad}"
            );
        }
        for bad in ["ftp://10.0.0.1", "not a url", "http://user:pw@10.0.0.1"] {
            assert!(matches!(check_control_plane_url(bad), Err(WorkerConfigError::BadUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn an_unknown_key_is_named() {
        let err = WorkerConfig::from_yaml(
            "control_plane_url: http://10.0.0.1\nname: w\nedge:\n  lisen: x\n",
            "w.yaml",
        )
        .expect_err("unknown");
        assert!(err.to_string().contains("edge.lisen") || err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn credentials_beat_the_yaml_and_secrets_never_print() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("worker_api_key"), "whk_from_credential\n").expect("write");
        let mut c = WorkerConfig::from_yaml(
            "control_plane_url: http://10.0.0.1\nname: w\napi_key: whk_from_yaml\nshared_secret: s\n",
            "w.yaml",
        )
        .expect("parses");
        c.overlay_credentials(dir.path()).expect("overlay");
        assert_eq!(c.api_key.expose(), "whk_from_credential");
        assert!(!format!("{c:?}").contains("whk_"));
        assert!(c.check().is_ok());
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn the_example_worker_config_parses_and_names_every_key() {
        let text = include_str!("../../../deploy/worker.example.yaml");
        let config = WorkerConfig::from_yaml(text, "deploy/worker.example.yaml").expect("parses");
        assert!(check_control_plane_url(&config.control_plane_url).is_ok());
        for key in [
            "control_plane_url:",
            "name:",
            "zone:",
            "api_key:",
            "shared_secret:",
            "listen:",
            "containers_conf:",
            "data_dir:",
        ] {
            assert!(text.lines().any(|l| l.trim_start().starts_with(key)), "missing {key}");
        }
    }
}
