//! Newtypes built only through `parse`, so a value that exists is a valid one; and the state
//! enums of apps, deployments, jobs and workers with their allowed moves ([`state`]).

mod app;
mod hostname;
mod name;
pub mod state;

pub use app::{
    AppSlug, Branch, CommitSha, DockerfilePath, EnvKey, Framework, GitToken, InvalidInput, RepoUrl,
    parse_port,
};
pub use hostname::{Hostname, challenge_name};
pub use name::{NameError, WorkerName, Zone};
pub use state::{AdminRole, AlertKind, AlertStatus, AppStatus, DeploymentStatus, JobStatus, WorkerStatus};
