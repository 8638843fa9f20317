//! What a job asks of a worker (SPEC §5), typed once for both sides.
//!
//! On the wire a `job` frame keeps the shape of SPEC §4.3 (`kind` and a `payload` object); this
//! module reads that pair into a [`JobSpec`] whose fields are validating newtypes, so a value
//! that exists is one git and podman may be given. A kind this build does not know decodes to
//! [`JobSpec::Unknown`] and a payload that does not read to [`JobSpec::Invalid`]: the frame still
//! decodes, and the worker answers that job with a clear error instead of guessing. Values that
//! are secrets (env values, a repository token) are [`WireSecret`]s: they cross the
//! authenticated link as text (the control plane seals the payload at rest) and never print.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A value that did not pass its check: which field, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for InvalidField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for InvalidField {}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidField {
    InvalidField { field, message: message.into() }
}

/// A string newtype that is built only through `parse` and travels as a plain JSON string.
macro_rules! text_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidField;
            fn try_from(value: String) -> Result<Self, InvalidField> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_newtype! {
    /// An app's slug: a DNS label of 1 to 40 characters (`a-z`, `0-9`, `-` inside). It names
    /// containers and images, so it is plain by construction.
    Slug
}

impl Slug {
    pub const MAX_LEN: usize = 40;

    pub fn parse(value: &str) -> Result<Slug, InvalidField> {
        let ok = !value.is_empty()
            && value.len() <= Self::MAX_LEN
            && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !value.starts_with('-')
            && !value.ends_with('-');
        if ok {
            Ok(Slug(value.to_string()))
        } else {
            Err(invalid("slug", "a slug is 1 to 40 of a-z, 0-9 and `-`, not starting or ending with `-`"))
        }
    }
}

text_newtype! {
    /// A branch name: git's own rules, minus anything that could read as an option.
    Branch
}

impl Branch {
    pub fn parse(value: &str) -> Result<Branch, InvalidField> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/');
        let bad = value.is_empty()
            || value.len() > 100
            || !value.chars().all(ok_char)
            || value.starts_with(['-', '/', '.'])
            || value.ends_with(['/', '.'])
            || value.ends_with(".lock")
            || value.contains("..")
            || value.contains("//")
            || value.contains("/.");
        if bad {
            return Err(invalid(
                "branch",
                "use a plain branch name (letters, digits, `.`, `_`, `-`, `/`; not starting with `-`, no `..`)",
            ));
        }
        Ok(Branch(value.to_string()))
    }
}

text_newtype! {
    /// A commit id: 7 to 64 hex digits (SHA-1 or SHA-256 object names, or a prefix), lowercased.
    CommitSha
}

impl CommitSha {
    pub fn parse(value: &str) -> Result<CommitSha, InvalidField> {
        if (7..=64).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(CommitSha(value.to_ascii_lowercase()))
        } else {
            Err(invalid("commit", "give a commit id of 7 to 64 hex digits"))
        }
    }
}

text_newtype! {
    /// A Containerfile path relative to the repository root.
    DockerfilePath
}

impl DockerfilePath {
    pub fn parse(value: &str) -> Result<DockerfilePath, InvalidField> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/');
        let bad = value.is_empty()
            || value.len() > 200
            || !value.chars().all(ok_char)
            || value.starts_with(['/', '-'])
            || value.split('/').any(|seg| seg.is_empty() || seg == ".." || seg == ".");
        if bad {
            return Err(invalid(
                "dockerfile_path",
                "give a path inside the repository, like `Containerfile` or `docker/Dockerfile` (no `..`, no leading `/`)",
            ));
        }
        Ok(DockerfilePath(value.to_string()))
    }
}

text_newtype! {
    /// The path a new version's health check asks: `/`, then up to 200 URL path characters
    /// (letters, digits, `-._~/%!$&'()*+,;=:@?`), no spaces, no `#`.
    HealthPath
}

impl HealthPath {
    pub fn parse(value: &str) -> Result<HealthPath, InvalidField> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || "-._~/%!$&'()*+,;=:@?".contains(c);
        if !value.starts_with('/')
            || value.starts_with("//")
            || value.len() > 200
            || !value.chars().all(ok_char)
        {
            return Err(invalid(
                "health_check_path",
                "give a path on the app that answers 2xx or 3xx when it is ready, like `/healthz` (it starts with one `/`, at most 200 characters, no spaces)",
            ));
        }
        Ok(HealthPath(value.to_string()))
    }

    /// `/`, the default: any answer below 500 counts (an app with no page at its root is
    /// still up).
    pub fn root() -> HealthPath {
        HealthPath("/".into())
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }
}

/// How a new version is checked before traffic moves to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub path: HealthPath,
    /// Seconds the new version has to answer; the worker's `deploy.health_timeout_secs` when
    /// absent.
    #[serde(default)]
    pub timeout_secs: Option<u32>,
}

impl HealthCheck {
    /// The longest a health check may be given.
    pub const MAX_TIMEOUT_SECS: u32 = 600;
}

text_newtype! {
    /// An environment variable name, `^[A-Z][A-Z0-9_]{0,63}$`.
    EnvKey
}

impl EnvKey {
    pub fn parse(value: &str) -> Result<EnvKey, InvalidField> {
        let mut chars = value.chars();
        let ok = value.len() <= 64
            && chars.next().is_some_and(|c| c.is_ascii_uppercase())
            && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(EnvKey(value.to_string()))
        } else {
            Err(invalid(
                "env",
                format!(
                    "{:?} is not a valid name: use A-Z, 0-9 and `_`, starting with a letter, at most 64 characters",
                    value.chars().take(70).collect::<String>()
                ),
            ))
        }
    }
}

text_newtype! {
    /// A podman image id: `sha256:` and 64 lowercase hex digits.
    ImageId
}

impl ImageId {
    pub fn parse(value: &str) -> Result<ImageId, InvalidField> {
        let hex = value.strip_prefix("sha256:").unwrap_or(value);
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(ImageId(format!("sha256:{hex}")))
        } else {
            Err(invalid("image_id", "an image id is `sha256:` and 64 lowercase hex digits"))
        }
    }
}

text_newtype! {
    /// Where the code comes from: an `https://` URL without credentials (the worker checks its
    /// host again before it connects), or a `file://` path on the worker (single-machine mode;
    /// the control plane refuses it otherwise).
    RepoUrl
}

impl RepoUrl {
    pub fn parse(value: &str) -> Result<RepoUrl, InvalidField> {
        let bad = |m: &str| Err(invalid("repo_url", m.to_string()));
        if value.is_empty() || value.len() > 500 {
            return bad("give the repository's https:// URL (at most 500 characters)");
        }
        if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return bad("the URL must not contain spaces or control characters");
        }
        if let Some(rest) = value.strip_prefix("https://") {
            let authority = rest.split('/').next().unwrap_or_default();
            if authority.is_empty() || authority.contains('@') {
                return bad("put no user name or token in the URL; link a git provider account instead");
            }
            if rest.split('/').any(|seg| seg == "..") {
                return bad("the URL must not contain `..`");
            }
            return Ok(RepoUrl(value.to_string()));
        }
        if let Some(path) = value.strip_prefix("file://")
            && path.starts_with('/')
            && !path.split('/').any(|seg| seg == "..")
        {
            return Ok(RepoUrl(value.to_string()));
        }
        bad("use an https:// URL (git://, ssh:// and http:// are not supported)")
    }
}

/// The port an app listens on inside its container: 1 to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct Port(u16);

impl Port {
    pub fn new(value: u16) -> Result<Port, InvalidField> {
        if value == 0 { Err(invalid("port", "give a port from 1 to 65535")) } else { Ok(Port(value)) }
    }

    /// From a wider integer (a JSON number, a database column).
    pub fn parse(value: i64) -> Result<Port, InvalidField> {
        u16::try_from(value).map_err(|_| invalid("port", "give a port from 1 to 65535")).and_then(Port::new)
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<u16> for Port {
    type Error = InvalidField;
    fn try_from(value: u16) -> Result<Port, InvalidField> {
        Port::new(value)
    }
}

impl From<Port> for u16 {
    fn from(value: Port) -> u16 {
        value.0
    }
}

/// An app container's resource limits, from its plan.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawLimits", into = "RawLimits")]
pub struct Limits {
    memory_mb: u32,
    cpus: f32,
}

#[derive(Serialize, Deserialize)]
struct RawLimits {
    memory_mb: u32,
    cpus: f32,
}

impl Limits {
    pub const MIN_MEMORY_MB: u32 = 16;
    pub const MAX_MEMORY_MB: u32 = 1024 * 1024;
    pub const MAX_CPUS: f32 = 1024.0;

    pub fn new(memory_mb: u32, cpus: f32) -> Result<Limits, InvalidField> {
        if !(Self::MIN_MEMORY_MB..=Self::MAX_MEMORY_MB).contains(&memory_mb) {
            return Err(invalid("memory_mb", "a memory limit is 16 MiB to 1 TiB"));
        }
        if !((0.01..=Self::MAX_CPUS).contains(&cpus)) {
            return Err(invalid("cpus", "a CPU limit is 0.01 to 1024 CPUs"));
        }
        Ok(Limits { memory_mb, cpus })
    }

    pub fn memory_mb(self) -> u32 {
        self.memory_mb
    }

    pub fn cpus(self) -> f32 {
        self.cpus
    }
}

impl TryFrom<RawLimits> for Limits {
    type Error = InvalidField;
    fn try_from(raw: RawLimits) -> Result<Limits, InvalidField> {
        Limits::new(raw.memory_mb, raw.cpus)
    }
}

impl From<Limits> for RawLimits {
    fn from(l: Limits) -> RawLimits {
        RawLimits { memory_mb: l.memory_mb, cpus: l.cpus }
    }
}

/// A secret that crosses the link: serialized as its text (the link is authenticated and the
/// control plane seals the payload at rest), never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WireSecret(String);

impl WireSecret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The text, where it is used; never print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WireSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// An app's environment: names checked, values secret.
pub type Env = BTreeMap<EnvKey, WireSecret>;

/// How the image is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framework {
    /// The repository's Containerfile (or Dockerfile).
    Dockerfile,
    /// The repository's files served by a static web server.
    Static,
    /// `package.json`: `npm ci` (or `npm install`), `npm run build` if any, `npm start`.
    Node,
    /// `requirements.txt` or `pyproject.toml` installed into a virtualenv.
    Python,
    /// `go.mod`: `go build`, the binary run from a small runtime image.
    Go,
    /// `Cargo.toml`: `cargo install --path .`, the binary run from a small runtime image.
    Rust,
    /// Whichever the repository's files say, decided by the worker after the clone (and said
    /// in the build log).
    Auto,
}

impl Framework {
    pub const ALL: [Framework; 7] = [
        Framework::Auto,
        Framework::Dockerfile,
        Framework::Static,
        Framework::Node,
        Framework::Python,
        Framework::Go,
        Framework::Rust,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Framework::Dockerfile => "dockerfile",
            Framework::Static => "static",
            Framework::Node => "node",
            Framework::Python => "python",
            Framework::Go => "go",
            Framework::Rust => "rust",
            Framework::Auto => "auto",
        }
    }

    pub fn parse(value: &str) -> Result<Framework, InvalidField> {
        Framework::ALL.into_iter().find(|f| f.as_str() == value).ok_or_else(|| {
            invalid("framework", "choose `auto`, `dockerfile`, `static`, `node`, `python`, `go` or `rust`")
        })
    }
}

/// A git host whose accounts users link (SPEC §14.8); a deploy's token from a linked account
/// names it, since each takes its OAuth token for a clone under its own user name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GitProvider {
    Github,
    Gitlab,
    Bitbucket,
    /// Codeberg, and any Gitea or Forgejo.
    Codeberg,
}

impl GitProvider {
    pub const ALL: [GitProvider; 4] =
        [GitProvider::Github, GitProvider::Gitlab, GitProvider::Bitbucket, GitProvider::Codeberg];

    pub fn as_str(self) -> &'static str {
        match self {
            GitProvider::Github => "github",
            GitProvider::Gitlab => "gitlab",
            GitProvider::Bitbucket => "bitbucket",
            GitProvider::Codeberg => "codeberg",
        }
    }

    pub fn parse(value: &str) -> Result<GitProvider, InvalidField> {
        GitProvider::ALL
            .into_iter()
            .find(|p| p.as_str() == value)
            .ok_or_else(|| invalid("git_provider", "choose `github`, `gitlab`, `bitbucket` or `codeberg`"))
    }

    /// The user name git sends with an OAuth token as the password over HTTPS.
    pub fn clone_username(self) -> &'static str {
        match self {
            GitProvider::Github => "x-access-token",
            GitProvider::Gitlab | GitProvider::Codeberg => "oauth2",
            GitProvider::Bitbucket => "x-token-auth",
        }
    }
}

impl fmt::Display for GitProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of job (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Deploy,
    Restart,
    Stop,
    Start,
    Remove,
}

impl JobKind {
    pub const ALL: [JobKind; 5] =
        [JobKind::Deploy, JobKind::Restart, JobKind::Stop, JobKind::Start, JobKind::Remove];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Deploy => "deploy",
            JobKind::Restart => "restart",
            JobKind::Stop => "stop",
            JobKind::Start => "start",
            JobKind::Remove => "remove",
        }
    }

    pub fn parse(value: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == value)
    }
}

impl TryFrom<String> for JobKind {
    type Error = InvalidField;
    fn try_from(value: String) -> Result<JobKind, InvalidField> {
        JobKind::parse(&value).ok_or_else(|| invalid("kind", format!("{value:?} is not a job kind")))
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The phases of a deploy a worker reports in `job_progress` (SPEC §4.3), in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Cloning,
    Building,
    Starting,
    HealthChecking,
    Switching,
    /// A phase a newer worker reports that this build does not know, or none: ignored.
    #[default]
    #[serde(other)]
    Other,
}

impl Phase {
    pub const ALL: [Phase; 5] =
        [Phase::Cloning, Phase::Building, Phase::Starting, Phase::HealthChecking, Phase::Switching];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Cloning => "cloning",
            Phase::Building => "building",
            Phase::Starting => "starting",
            Phase::HealthChecking => "health_checking",
            Phase::Switching => "switching",
            Phase::Other => "other",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whose fault a failed job was: what the user should fix (their build, their app's health,
/// their repository), what the operators should (podman, the firewall, the disk), or nobody's
/// (the job was cancelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    User,
    Platform,
    Cancelled,
    /// A fault a newer worker names that this build does not know.
    #[serde(other)]
    Other,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::User => "user",
            Fault::Platform => "platform",
            Fault::Cancelled => "cancelled",
            Fault::Other => "other",
        }
    }
}

/// The read-only podman queries a worker answers for admins (SPEC §4.4): a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminCommand {
    Ps,
    PsAll,
    NetworkLs,
    VolumeLs,
    ImageLs,
}

impl AdminCommand {
    pub const ALL: [AdminCommand; 5] = [
        AdminCommand::Ps,
        AdminCommand::PsAll,
        AdminCommand::NetworkLs,
        AdminCommand::VolumeLs,
        AdminCommand::ImageLs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AdminCommand::Ps => "ps",
            AdminCommand::PsAll => "ps_all",
            AdminCommand::NetworkLs => "network_ls",
            AdminCommand::VolumeLs => "volume_ls",
            AdminCommand::ImageLs => "image_ls",
        }
    }

    pub fn parse(value: &str) -> Option<AdminCommand> {
        AdminCommand::ALL.into_iter().find(|c| c.as_str() == value)
    }

    /// The podman argv (after `podman`) of the query: JSON listings only.
    pub fn podman_args(self) -> &'static [&'static str] {
        match self {
            AdminCommand::Ps => &["ps", "--format", "json"],
            AdminCommand::PsAll => &["ps", "-a", "--format", "json"],
            AdminCommand::NetworkLs => &["network", "ls", "--format", "json"],
            AdminCommand::VolumeLs => &["volume", "ls", "--format", "json"],
            AdminCommand::ImageLs => &["image", "ls", "--format", "json"],
        }
    }

    /// `ps, ps_all, …` for error messages.
    pub fn list() -> String {
        AdminCommand::ALL.map(AdminCommand::as_str).join(", ")
    }
}

impl fmt::Display for AdminCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A deploy: clone, build, run, health-check, switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploySpec {
    pub slug: Slug,
    pub repo_url: RepoUrl,
    pub branch: Branch,
    /// The commit to build; the branch's head when absent.
    #[serde(default)]
    pub commit: Option<CommitSha>,
    pub framework: Framework,
    #[serde(default)]
    pub dockerfile_path: Option<DockerfilePath>,
    pub port: Port,
    #[serde(default)]
    pub env: Env,
    #[serde(flatten)]
    pub limits: Limits,
    /// A token for a private `https://` repository; given to git through its environment.
    #[serde(default)]
    pub git_token: Option<WireSecret>,
    /// Where `git_token` comes from when it is a linked account's: git's user name for it.
    /// Absent, a token of the app's own, sent as GitHub takes it (`x-access-token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_provider: Option<GitProvider>,
    /// A rollback: the image an earlier deployment built. A worker that still has it runs it
    /// without cloning or building; otherwise it builds `commit` again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageId>,
    /// The app's health check; absent, `/` within the worker's default time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
}

/// A restart: the app's current version re-created with its current env and limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestartSpec {
    pub slug: Slug,
    /// The deployment whose container runs now.
    pub deployment_id: i64,
    pub port: Port,
    #[serde(default)]
    pub env: Env,
    #[serde(flatten)]
    pub limits: Limits,
    /// The app's health check; absent, `/` within the worker's default time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
}

/// A stop, start or remove: which app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSpec {
    pub slug: Slug,
}

/// What a job asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum JobSpec {
    Deploy(DeploySpec),
    Restart(RestartSpec),
    Stop(AppSpec),
    Start(AppSpec),
    Remove(AppSpec),
    /// A kind this build does not know (a newer control plane): refused, never guessed at.
    Unknown {
        kind: String,
    },
    /// A known kind whose payload did not read: refused with the reason.
    Invalid {
        kind: JobKind,
        error: String,
    },
}

impl JobSpec {
    /// The wire's `kind`.
    pub fn kind_str(&self) -> &str {
        match self {
            JobSpec::Unknown { kind } => kind,
            other => other.kind().map_or("unknown", JobKind::as_str),
        }
    }

    /// The kind, unless this build does not know it.
    pub fn kind(&self) -> Option<JobKind> {
        Some(match self {
            JobSpec::Deploy(_) => JobKind::Deploy,
            JobSpec::Restart(_) => JobKind::Restart,
            JobSpec::Stop(_) => JobKind::Stop,
            JobSpec::Start(_) => JobKind::Start,
            JobSpec::Remove(_) => JobKind::Remove,
            JobSpec::Invalid { kind, .. } => *kind,
            JobSpec::Unknown { .. } => return None,
        })
    }

    /// The payload object that goes with the kind.
    pub fn payload(&self) -> Value {
        let value = match self {
            JobSpec::Deploy(s) => serde_json::to_value(s),
            JobSpec::Restart(s) => serde_json::to_value(s),
            JobSpec::Stop(s) | JobSpec::Start(s) | JobSpec::Remove(s) => serde_json::to_value(s),
            JobSpec::Unknown { .. } | JobSpec::Invalid { .. } => return Value::Null,
        };
        // Every field serializes to plain JSON (strings, numbers, maps with string keys).
        value.unwrap_or(Value::Null)
    }

    /// Reads the wire's (kind, payload) pair. Never fails: what does not read is `Unknown` or
    /// `Invalid`, for the receiver to refuse with a clear error.
    pub fn from_parts(kind: &str, payload: Value) -> JobSpec {
        let Some(known) = JobKind::parse(kind) else {
            return JobSpec::Unknown { kind: kind.chars().take(64).collect() };
        };
        if !payload.is_object() {
            return JobSpec::Invalid {
                kind: known,
                error: "the job came without a readable payload (the control plane could not open it)".into(),
            };
        }
        let parsed = match known {
            JobKind::Deploy => serde_json::from_value(payload).map(JobSpec::Deploy),
            JobKind::Restart => serde_json::from_value(payload).map(JobSpec::Restart),
            JobKind::Stop => serde_json::from_value(payload).map(JobSpec::Stop),
            JobKind::Start => serde_json::from_value(payload).map(JobSpec::Start),
            JobKind::Remove => serde_json::from_value(payload).map(JobSpec::Remove),
        };
        parsed.unwrap_or_else(|e| JobSpec::Invalid { kind: known, error: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deploy_payload() -> Value {
        json!({
            "slug": "shop",
            "repo_url": "https://git.example.com/shop.git",
            "branch": "main",
            "commit": null,
            "framework": "dockerfile",
            "dockerfile_path": null,
            "port": 8080,
            "env": {"DATABASE_URL": "postgres://u:p@db/shop"},
            "memory_mb": 256,
            "cpus": 0.5,
            "git_token": "glpat-secret",
        })
    }

    #[test]
    fn a_deploy_payload_reads_into_typed_fields_and_writes_back_the_same_shape() {
        let spec = JobSpec::from_parts("deploy", deploy_payload());
        let JobSpec::Deploy(deploy) = &spec else { panic!("not a deploy: {spec:?}") };
        assert_eq!(deploy.branch.as_str(), "main");
        assert_eq!(deploy.port.get(), 8080);
        assert_eq!(deploy.limits.memory_mb(), 256);
        assert_eq!(deploy.git_token.as_ref().map(WireSecret::expose), Some("glpat-secret"));
        let mut expected = deploy_payload();
        // Absent optionals are written as null, as the control plane always did.
        expected["commit"] = Value::Null;
        assert_eq!(spec.payload(), expected);
        assert_eq!(spec.kind_str(), "deploy");
    }

    #[test]
    fn secrets_in_a_spec_never_show_in_debug() {
        let spec = JobSpec::from_parts("deploy", deploy_payload());
        let shown = format!("{spec:?}");
        assert!(!shown.contains("glpat-secret") && !shown.contains("u:p@db"), "{shown}");
        assert!(shown.contains("DATABASE_URL"), "names are not secret: {shown}");
    }

    #[test]
    fn an_unknown_kind_is_explicit_and_never_a_restart() {
        assert_eq!(
            JobSpec::from_parts("teleport", json!({"slug": "shop"})),
            JobSpec::Unknown { kind: "teleport".into() }
        );
    }

    #[test]
    fn a_payload_that_does_not_read_is_invalid_with_the_reason() {
        for (kind, payload, needle) in [
            ("restart", Value::Null, "readable payload"),
            (
                "restart",
                json!({"slug": "shop", "port": 8080, "memory_mb": 256, "cpus": 0.5}),
                "deployment_id",
            ),
            ("deploy", json!({"slug": "shop", "branch": "--upload-pack=x"}), "branch"),
            ("stop", json!({"slug": "../etc"}), "slug"),
        ] {
            match JobSpec::from_parts(kind, payload) {
                JobSpec::Invalid { kind: k, error } => {
                    assert_eq!(k.as_str(), kind);
                    assert!(error.contains(needle), "{kind}: {error}");
                }
                other => panic!("{kind} read as {other:?}"),
            }
        }
    }

    #[test]
    fn values_that_would_reach_argv_are_refused_at_the_edge() {
        assert!(Branch::parse("-x").is_err());
        assert!(Branch::parse("a..b").is_err());
        assert!(CommitSha::parse("xyz1234").is_err());
        assert!(DockerfilePath::parse("../Containerfile").is_err());
        assert!(Slug::parse("-shop").is_err());
        assert!(ImageId::parse("sha256:abc").is_err());
        assert!(RepoUrl::parse("https://user:pw@example.com/r.git").is_err());
        assert!(RepoUrl::parse("ssh://example.com/r.git").is_err());
        assert!(Port::new(0).is_err());
        assert!(Limits::new(8, 0.5).is_err());
        assert!(Limits::new(256, f32::NAN).is_err());
        assert_eq!(CommitSha::parse("ABCDEF1").map(String::from), Ok("abcdef1".into()));
        assert!(CommitSha::parse(&"a".repeat(64)).is_ok(), "a SHA-256 repository's commit");
        assert!(CommitSha::parse(&"a".repeat(65)).is_err());
        let id = "a".repeat(64);
        assert_eq!(ImageId::parse(&id).map(String::from), Ok(format!("sha256:{id}")));
    }

    #[test]
    fn kinds_phases_and_admin_commands_round_trip_their_wire_names() {
        for kind in JobKind::ALL {
            assert_eq!(JobKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).ok(), Some(json!(kind.as_str())));
        }
        for command in AdminCommand::ALL {
            assert_eq!(AdminCommand::parse(command.as_str()), Some(command));
        }
        assert_eq!(AdminCommand::parse("ps; rm -rf /"), None);
        for phase in Phase::ALL {
            assert_eq!(serde_json::to_value(phase).ok(), Some(json!(phase.as_str())));
        }
        assert_eq!(serde_json::from_value::<Phase>(json!("teleporting")).ok(), Some(Phase::Other));
        assert_eq!(AdminCommand::list(), "ps, ps_all, network_ls, volume_ls, image_ls");
    }
}
