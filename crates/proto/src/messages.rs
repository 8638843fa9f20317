//! Message types (SPEC §4.3). Append-only: a new field gets a serde default so an older
//! peer's frames still parse, and an unknown type decodes to `Unknown` for the receiver to
//! log and ignore.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::job::{Fault, JobSpec, Phase, WireSecret};

/// A payload type and its `t`.
pub trait MessageType: Serialize {
    const TYPE: &'static str;
}

/// A message ready to seal: its type and its payload's JSON text. Both sides queue these and
/// seal them with the next sequence number when the frame goes out.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub t: &'static str,
    pub payload: String,
}

impl Outgoing {
    pub fn of<M: MessageType>(message: &M) -> Self {
        Self { t: M::TYPE, payload: serde_json::to_string(message).unwrap_or_else(|_| "{}".into()) }
    }
}

macro_rules! message {
    ($ty:ident, $name:literal) => {
        impl MessageType for $ty {
            const TYPE: &'static str = $name;
        }
    };
}

// ---- Worker -> control plane ----

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hello {
    pub version: String,
    pub capabilities: Vec<String>,
    /// The app containers the worker runs, for re-sync after a reconnect.
    pub containers: Vec<ContainerInfo>,
    /// The jobs the worker is still running (id, attempt). Jobs leased to it before this
    /// connection and missing here were lost (the worker restarted) and are failed at once.
    pub running_jobs: Vec<RunningJob>,
}
message!(Hello, "hello");

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunningJob {
    pub job_id: i64,
    pub attempt: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub app_id: Option<i64>,
    pub deployment_id: Option<i64>,
    pub image_id: String,
    /// Podman's state: `running`, `exited`, ….
    pub state: String,
    pub host_port: Option<u16>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Heartbeat {
    pub cpu_pct: f64,
    pub load1: f64,
    pub mem_used_bytes: u64,
    pub mem_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub containers_running: u64,
    pub uptime_secs: u64,
}
message!(Heartbeat, "heartbeat");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppStats {
    pub apps: Vec<AppStat>,
    /// Chosen at random when the agent starts: the `requests` counters count from zero with
    /// it, so a new epoch tells the control plane the worker restarted (its counters reset).
    pub epoch: u64,
}
message!(AppStats, "app_stats");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppStat {
    pub app_id: i64,
    pub cpu_pct: f64,
    pub memory_bytes: u64,
    /// Cumulative over the app's running containers (each counts from its own start).
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    /// The memory limit of one container of the app; 0 when none is set.
    pub mem_limit_bytes: u64,
    /// Times the worker started the app's current containers again after they exited.
    pub restarts: u32,
    /// The app's running containers and their cumulative counters, for usage: a container
    /// id seen for the first time counts from zero.
    pub containers: Vec<ContainerCounters>,
    /// HTTP requests the edge router answered for the app since [`AppStats::epoch`] began.
    pub requests: u64,
}

/// A running container's counters since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerCounters {
    pub id: String,
    pub cpu_nanos: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppStates {
    pub apps: Vec<AppStateEntry>,
}
message!(AppStates, "app_state");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppStateEntry {
    pub app_id: i64,
    pub state: AppRunState,
    pub exit_code: Option<i32>,
    pub restarts: u32,
}

/// An app's containers as the worker's monitor sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppRunState {
    /// A container of the app runs.
    Running,
    /// None runs, after a few exits at most.
    Exited,
    /// It exited again and again in a row.
    CrashLooping,
    /// A state a newer worker reports that this build does not know, or none at all: ignored.
    #[default]
    #[serde(other)]
    Other,
}

/// Which log a batch of lines belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// A deployment's build (clone and build output).
    Build,
    /// The app's own output; also what a stream this build does not know is shown as.
    #[default]
    #[serde(other)]
    Runtime,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Build => "build",
            LogStream::Runtime => "runtime",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobAccepted {
    pub job_id: i64,
    pub attempt: i32,
}
message!(JobAccepted, "job_accepted");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobProgress {
    pub job_id: i64,
    pub attempt: i32,
    pub phase: Phase,
}
message!(JobProgress, "job_progress");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobResult {
    pub job_id: i64,
    pub attempt: i32,
    pub ok: bool,
    pub error: Option<String>,
    pub image_id: Option<String>,
    pub host_port: Option<u16>,
    pub container_id: Option<String>,
    /// The commit the deploy built (added after the first release; optional).
    pub commit: Option<String>,
    /// Whose fault a failure was (added later; optional).
    pub fault: Option<Fault>,
}
message!(JobResult, "job_result");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Log {
    pub app_id: i64,
    pub deployment_id: Option<i64>,
    pub stream: LogStream,
    pub lines: Vec<String>,
}
message!(Log, "log");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminQueryReply {
    pub query_id: String,
    pub command: String,
    pub output: String,
    pub err: Option<String>,
}
message!(AdminQueryReply, "admin_query_reply");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthRefresh {
    pub token: String,
}
message!(AuthRefresh, "auth_refresh");

// ---- Control plane -> worker ----

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Welcome {
    pub connection_id: String,
    pub server_time_ms: i64,
    pub heartbeat_interval_ms: u64,
}
message!(Welcome, "welcome");

/// A job for the worker. On the wire: `job_id`, `attempt`, `kind`, `app_id`, `deployment_id`
/// and `payload` (SPEC §4.3); in code the (kind, payload) pair is a typed [`JobSpec`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "JobWire", into = "JobWire")]
pub struct Job {
    pub job_id: i64,
    pub attempt: i32,
    pub app_id: i64,
    pub deployment_id: Option<i64>,
    pub spec: JobSpec,
}
message!(Job, "job");

#[derive(Serialize, Deserialize)]
#[serde(default)]
struct JobWire {
    job_id: i64,
    attempt: i32,
    kind: String,
    app_id: i64,
    deployment_id: Option<i64>,
    payload: serde_json::Value,
}

impl Default for JobWire {
    fn default() -> Self {
        Self {
            job_id: 0,
            attempt: 0,
            kind: String::new(),
            app_id: 0,
            deployment_id: None,
            payload: serde_json::Value::Null,
        }
    }
}

impl From<JobWire> for Job {
    fn from(w: JobWire) -> Job {
        let spec = JobSpec::from_parts(&w.kind, w.payload);
        Job { job_id: w.job_id, attempt: w.attempt, app_id: w.app_id, deployment_id: w.deployment_id, spec }
    }
}

impl From<Job> for JobWire {
    fn from(j: Job) -> JobWire {
        JobWire {
            job_id: j.job_id,
            attempt: j.attempt,
            kind: j.spec.kind_str().to_string(),
            app_id: j.app_id,
            deployment_id: j.deployment_id,
            payload: j.spec.payload(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobCancel {
    pub job_id: i64,
    pub attempt: i32,
}
message!(JobCancel, "job_cancel");

/// Superseded by [`RouteTable`] (the table itself is pushed); kept so the type stays known.
/// A worker ignores it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoutesChanged {}
message!(RoutesChanged, "routes_changed");

/// The worker's routing table, whole: sent after its `hello` and whenever a route of its
/// apps changes. The worker swaps it in at once; one whose `version` is below the table it
/// has is ignored (versions only grow, across control-plane restarts too).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteTable {
    pub version: u64,
    pub routes: Vec<RouteEntry>,
}
message!(RouteTable, "route_table");

/// One app's routes on the worker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteEntry {
    pub app_id: i64,
    /// Lowercase hostnames; `*.suffix` stands for exactly one more label before `suffix`.
    pub hosts: Vec<String>,
    /// The app's published port on the worker's loopback; none while the app does not serve
    /// (the edge router answers 503).
    pub port: Option<u16>,
    /// Plain-HTTP requests for a host the router holds a certificate for are redirected to
    /// HTTPS (308), once its HTTPS listener is open (the app's setting; on by default).
    pub https_redirect: bool,
    /// HTTPS answers carry `Strict-Transport-Security` (opt-in).
    pub hsts: bool,
}

/// Certificates the worker's edge router serves on `edge.https_listen`, chosen by SNI (SPEC
/// §14.7). Each listed certificate replaces the one with its `id`; then, when `retain` is
/// given, every certificate whose id is in neither list is dropped. The control plane sends the
/// whole set after `hello` (in frames of a bounded size, the last with `retain`) and then only
/// what changed. Keys are held in memory only, never logged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EdgeCertificates {
    pub certificates: Vec<EdgeCertificate>,
    pub retain: Option<Vec<i64>>,
}
message!(EdgeCertificates, "edge_certificates");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeCertificate {
    /// The custom domain's id; 0 for the platform's own wildcard certificate.
    pub id: i64,
    /// The names it is served for: exact, or `*.suffix` for exactly one more label.
    pub names: Vec<String>,
    /// The leaf first, then the intermediates (PEM).
    pub chain_pem: String,
    /// The private key (PEM, PKCS#8 or SEC1 or PKCS#1).
    pub key_pem: WireSecret,
}

/// The ACME HTTP-01 challenges the worker's edge router answers (SPEC §7, §14.7), whole: it
/// replaces the set the router has. `GET /.well-known/acme-challenge/<token>` on any host
/// answers the token's key authorization before routing; other tokens go to the app.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AcmeChallenges {
    pub challenges: Vec<AcmeChallenge>,
}
message!(AcmeChallenges, "acme_challenges");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AcmeChallenge {
    /// The challenge's token (base64url, as RFC 8555 §8.3 makes it).
    pub token: String,
    /// `<token>.<account key thumbprint>`: what the answer's body is.
    pub key_authorization: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminQuery {
    pub query_id: String,
    pub command: String,
}
message!(AdminQuery, "admin_query");

/// What should run on the worker, sent after its `hello`: for each app placed on it, the
/// deployment whose container should run (none while `busy`: a job is changing it). The worker
/// removes containers of other deployments and of apps not listed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DesiredState {
    pub apps: Vec<DesiredApp>,
}
message!(DesiredState, "desired_state");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DesiredApp {
    pub app_id: i64,
    pub deployment_id: Option<i64>,
    pub busy: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorMessage {
    pub code: String,
    pub message: String,
}
message!(ErrorMessage, "error");

fn decode<T: DeserializeOwned>(p: &RawValue) -> Result<T, serde_json::Error> {
    serde_json::from_str(p.get())
}

/// A frame from a worker, by type.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerMessage {
    Hello(Hello),
    Heartbeat(Heartbeat),
    AppStats(AppStats),
    AppState(AppStates),
    JobAccepted(JobAccepted),
    JobProgress(JobProgress),
    JobResult(JobResult),
    Log(Log),
    AdminQueryReply(AdminQueryReply),
    AuthRefresh(AuthRefresh),
    Unknown(String),
}

impl WorkerMessage {
    pub fn decode(t: &str, p: &RawValue) -> Result<Self, serde_json::Error> {
        Ok(match t {
            Hello::TYPE => Self::Hello(decode(p)?),
            Heartbeat::TYPE => Self::Heartbeat(decode(p)?),
            AppStats::TYPE => Self::AppStats(decode(p)?),
            AppStates::TYPE => Self::AppState(decode(p)?),
            JobAccepted::TYPE => Self::JobAccepted(decode(p)?),
            JobProgress::TYPE => Self::JobProgress(decode(p)?),
            JobResult::TYPE => Self::JobResult(decode(p)?),
            Log::TYPE => Self::Log(decode(p)?),
            AdminQueryReply::TYPE => Self::AdminQueryReply(decode(p)?),
            AuthRefresh::TYPE => Self::AuthRefresh(decode(p)?),
            other => Self::Unknown(other.chars().take(64).collect()),
        })
    }
}

/// A frame from the control plane, by type.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    Welcome(Welcome),
    /// Boxed: a job (its spec) is far larger than every other message.
    Job(Box<Job>),
    JobCancel(JobCancel),
    RoutesChanged(RoutesChanged),
    RouteTable(RouteTable),
    AcmeChallenges(AcmeChallenges),
    EdgeCertificates(EdgeCertificates),
    AdminQuery(AdminQuery),
    DesiredState(DesiredState),
    Error(ErrorMessage),
    Unknown(String),
}

impl ServerMessage {
    pub fn decode(t: &str, p: &RawValue) -> Result<Self, serde_json::Error> {
        Ok(match t {
            Welcome::TYPE => Self::Welcome(decode(p)?),
            Job::TYPE => Self::Job(Box::new(decode(p)?)),
            JobCancel::TYPE => Self::JobCancel(decode(p)?),
            RoutesChanged::TYPE => Self::RoutesChanged(decode(p)?),
            RouteTable::TYPE => Self::RouteTable(decode(p)?),
            AcmeChallenges::TYPE => Self::AcmeChallenges(decode(p)?),
            EdgeCertificates::TYPE => Self::EdgeCertificates(decode(p)?),
            AdminQuery::TYPE => Self::AdminQuery(decode(p)?),
            DesiredState::TYPE => Self::DesiredState(decode(p)?),
            ErrorMessage::TYPE => Self::Error(decode(p)?),
            other => Self::Unknown(other.chars().take(64).collect()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).expect("raw json")
    }

    #[test]
    fn the_heartbeat_has_exactly_the_spec_fields() {
        let json = serde_json::to_value(Heartbeat::default()).expect("json");
        let mut keys: Vec<_> = json.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "containers_running",
                "cpu_pct",
                "disk_total_bytes",
                "disk_used_bytes",
                "load1",
                "mem_total_bytes",
                "mem_used_bytes",
                "net_rx_bytes",
                "net_tx_bytes",
                "uptime_secs"
            ]
        );
    }

    #[test]
    fn an_edge_certificate_decodes_and_its_key_never_prints() {
        let text = r#"{"certificates":[{"id":7,"names":["shop.example"],"chain_pem":"C","key_pem":"K-secret"}],"retain":[7]}"#;
        let ServerMessage::EdgeCertificates(msg) =
            ServerMessage::decode("edge_certificates", &raw(text)).expect("decodes")
        else {
            panic!("not edge_certificates")
        };
        assert_eq!(msg.retain, Some(vec![7]));
        assert_eq!(msg.certificates[0].key_pem.expose(), "K-secret");
        assert!(!format!("{msg:?}").contains("K-secret"));
    }

    #[test]
    fn missing_fields_default_and_unknown_fields_are_ignored() {
        let msg = WorkerMessage::decode("hello", &raw("{\"version\":\"1\",\"from_the_future\":true}"))
            .expect("decodes");
        assert_eq!(msg, WorkerMessage::Hello(Hello { version: "1".into(), ..Hello::default() }));
    }

    #[test]
    fn acme_challenges_decode_by_their_type() {
        let text = r#"{"challenges":[{"token":"t1","key_authorization":"t1.print"}]}"#;
        let msg = ServerMessage::decode("acme_challenges", &raw(text)).expect("decodes");
        let expected = AcmeChallenge { token: "t1".into(), key_authorization: "t1.print".into() };
        assert_eq!(msg, ServerMessage::AcmeChallenges(AcmeChallenges { challenges: vec![expected] }));
    }

    #[test]
    fn an_unknown_type_decodes_as_unknown_for_the_receiver_to_ignore() {
        let msg = ServerMessage::decode("teleport", &raw("{}")).expect("decodes");
        assert_eq!(msg, ServerMessage::Unknown("teleport".into()));
    }

    #[test]
    fn a_job_of_an_unknown_kind_still_decodes_so_the_worker_can_refuse_it() {
        let text = r#"{"job_id":7,"attempt":1,"kind":"teleport","app_id":3,"payload":{}}"#;
        let msg = ServerMessage::decode("job", &raw(text)).expect("decodes");
        let ServerMessage::Job(job) = msg else { panic!("not a job") };
        assert_eq!((job.job_id, job.attempt, job.app_id), (7, 1, 3));
        assert_eq!(job.spec, JobSpec::Unknown { kind: "teleport".into() });
    }

    #[test]
    fn states_and_streams_a_newer_worker_invents_still_decode() {
        let states = r#"{"apps":[{"app_id":1,"state":"hibernating"},{"app_id":2,"state":"crash_looping"}]}"#;
        let WorkerMessage::AppState(states) =
            WorkerMessage::decode("app_state", &raw(states)).expect("decodes")
        else {
            panic!("not app_state")
        };
        assert_eq!(states.apps[0].state, AppRunState::Other);
        assert_eq!(states.apps[1].state, AppRunState::CrashLooping);
        // Append-only: a field left out decodes to its default, never to a state that acts.
        let bare = r#"{"apps":[{"app_id":3}]}"#;
        let WorkerMessage::AppState(bare) = WorkerMessage::decode("app_state", &raw(bare)).expect("decodes")
        else {
            panic!("not app_state")
        };
        assert_eq!(bare.apps[0].state, AppRunState::Other);
        let progress = WorkerMessage::decode("job_progress", &raw(r#"{"job_id":1}"#)).expect("decodes");
        assert_eq!(progress, WorkerMessage::JobProgress(JobProgress { job_id: 1, ..JobProgress::default() }));
        let log = r#"{"app_id":1,"stream":"audit","lines":["x"]}"#;
        let WorkerMessage::Log(log) = WorkerMessage::decode("log", &raw(log)).expect("decodes") else {
            panic!("not a log")
        };
        assert_eq!(log.stream, LogStream::Runtime);
    }

    #[test]
    fn a_job_keeps_the_wire_shape_of_kind_and_payload() {
        let job = Job {
            job_id: 7,
            attempt: 2,
            app_id: 3,
            deployment_id: None,
            spec: JobSpec::Stop(crate::job::AppSpec { slug: crate::job::Slug::parse("shop").expect("slug") }),
        };
        let json = serde_json::to_value(&job).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"job_id": 7, "attempt": 2, "kind": "stop", "app_id": 3,
                               "deployment_id": null, "payload": {"slug": "shop"}})
        );
        let back: Job = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, job);
    }

    #[test]
    fn a_payload_of_the_wrong_shape_is_an_error() {
        assert!(WorkerMessage::decode("heartbeat", &raw("{\"cpu_pct\":\"high\"}")).is_err());
    }
}
