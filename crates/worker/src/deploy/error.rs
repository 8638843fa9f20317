//! Why a job failed and whose fault it was ([`Fault`]): the user's (their build, their app's
//! health, their repository or Containerfile), the platform's (podman, the firewall, the
//! disk), or nobody's (cancelled). The control plane keeps the fault with the job, so what the
//! user must fix and what the operators must are told apart.

use wisehosting_proto::job::Fault;

pub use crate::runtime::CommandError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeployError {
    pub fault: Fault,
    pub message: String,
}

impl DeployError {
    /// Something the user fixes: the message says what.
    pub fn user(message: impl Into<String>) -> DeployError {
        DeployError { fault: Fault::User, message: message.into() }
    }

    /// Something the platform's operators fix.
    pub fn platform(message: impl Into<String>) -> DeployError {
        DeployError { fault: Fault::Platform, message: message.into() }
    }

    pub fn cancelled() -> DeployError {
        DeployError { fault: Fault::Cancelled, message: "the job was cancelled".into() }
    }
}

impl CommandError {
    /// The job's error: a command that ran and failed (or ran too long) is `fault`'s — the
    /// user's for a clone or a build; one that could not run at all is the platform's.
    pub fn blame(self, fault: Fault) -> DeployError {
        let fault = match self {
            CommandError::Failed { .. } | CommandError::TimedOut { .. } => fault,
            CommandError::Spawn { .. } | CommandError::NoOutput { .. } | CommandError::Wait { .. } => {
                Fault::Platform
            }
        };
        DeployError { fault, message: self.to_string() }
    }

    /// The error of a command the platform runs for itself (podman run, stop, inspect, …).
    pub fn platform(self) -> DeployError {
        self.blame(Fault::Platform)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_build_is_the_users_and_a_missing_tool_the_platforms() {
        let failed =
            CommandError::Failed { what: "podman build".into(), status: "exit 1".into(), output: "x".into() };
        assert_eq!(failed.blame(Fault::User).fault, Fault::User);
        let slow = CommandError::TimedOut { what: "podman build".into(), secs: 5 };
        assert_eq!(slow.blame(Fault::User).fault, Fault::User);
        let missing = CommandError::Spawn {
            what: "podman build".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let error = missing.blame(Fault::User);
        assert_eq!(error.fault, Fault::Platform);
        assert!(error.message.starts_with("cannot run podman build"), "{}", error.message);
    }
}
