//! Newtypes built only through `parse`, so a value that exists is a valid one.

mod app;
mod hostname;
mod name;

pub use app::{
    AppSlug, Branch, CommitSha, DockerfilePath, EnvKey, Framework, GitToken, InvalidInput, RepoUrl,
    parse_port,
};
pub use hostname::{Hostname, challenge_name};
pub use name::{NameError, WorkerName, Zone};
