//! Podman, driven with argv arrays only (never a shell), and what runs around the apps:
//! the confined networks' firewall, build cgroups, the monitor and the supervisor.

pub mod cgroup;
pub mod command;
pub mod firewall;
pub mod lines;
pub mod monitor;
pub mod podman;
pub mod supervisor;
pub mod tree;

pub use command::CommandError;
pub use podman::{AdminOutcome, Podman, admin_argv};
pub use supervisor::Supervisor;

use tokio::process::{ChildStderr, ChildStdout};
use tokio::sync::mpsc;

/// Merges a child's stdout and stderr into one stream of lines, each cut at
/// [`lines::MAX_LINE_BYTES`] while reading; the channel closes when both pipes do.
pub fn output_lines(stdout: ChildStdout, stderr: ChildStderr, capacity: usize) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel::<String>(capacity);
    tokio::spawn(lines::read_lines(stdout, tx.clone()));
    tokio::spawn(lines::read_lines(stderr, tx));
    rx
}
