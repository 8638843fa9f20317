//! Podman, driven with argv arrays only (never a shell).

pub mod firewall;
pub mod monitor;
pub mod podman;
pub mod supervisor;
pub mod tree;

pub use podman::{AdminOutcome, Podman, admin_argv};
pub use supervisor::Supervisor;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{ChildStderr, ChildStdout};
use tokio::sync::mpsc;

/// Merges a child's stdout and stderr into one stream of lines; the channel closes when both
/// pipes do.
pub fn output_lines(stdout: ChildStdout, stderr: ChildStderr, capacity: usize) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel::<String>(capacity);
    for pipe in [Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>, Box::new(stderr)] {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        });
    }
    rx
}
