//! Running a short external command to its end: argv only, a time limit, stdout returned and
//! the tail of stderr in the error ([`CommandError`]).

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// A command that did not end well.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot run {what}: {source}")]
    Spawn { what: String, source: std::io::Error },
    #[error("cannot read the output of {what}")]
    NoOutput { what: String },
    #[error("{what} did not finish: {source}")]
    Wait { what: String, source: std::io::Error },
    #[error("{what} took longer than {secs} s and was stopped; make it faster, or raise the worker's limit")]
    TimedOut { what: String, secs: u64 },
    #[error("{what} failed ({status}):\n{output}")]
    Failed { what: String, status: String, output: String },
}

/// How long a short command may take.
pub const SHORT_LIMIT: Duration = Duration::from_secs(120);

/// Runs `cmd` to its end within [`SHORT_LIMIT`] and returns its stdout, trimmed (the tail of
/// stderr in the error). Whether it is killed when the caller is dropped is the caller's
/// choice (`kill_on_drop`), made where the command is built.
pub async fn run(mut cmd: Command, what: &str) -> Result<String, CommandError> {
    let what = what.to_string();
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = match tokio::time::timeout(SHORT_LIMIT, cmd.output()).await {
        Err(_) => return Err(CommandError::TimedOut { what, secs: SHORT_LIMIT.as_secs() }),
        Ok(Err(source)) => return Err(CommandError::Spawn { what, source }),
        Ok(Ok(out)) => out,
    };
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let output = err.trim().chars().take(2000).collect();
        Err(CommandError::Failed { what, status: out.status.to_string(), output })
    }
}
