//! `wisehosting-worker`: the worker agent. Everything lives in the library.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use wisehosting_worker::{Agent, WorkerConfig};

fn main() -> ExitCode {
    wisehosting_worker::service::take_from_env();
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version" | "-V") => {
            println!("wisehosting-worker {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("--help" | "-h") => {
            println!(
                "wisehosting-worker {}\n\nRuns the worker agent with the config at CONFIG_PATH (default /etc/wisehosting/worker.yaml).\nSecrets: systemd credentials worker_api_key and worker_shared_secret.",
                env!("CARGO_PKG_VERSION")
            );
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("error: unknown argument {other:?}; see --help");
            return ExitCode::from(2);
        }
        None => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let agent = match WorkerConfig::load_from_env().map_err(Into::into).and_then(Agent::new) {
            Ok(agent) => agent,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let shutdown = CancellationToken::new();
        // Ready for systemd once the edge router serves.
        let status = agent.status();
        let ready = shutdown.clone();
        tokio::spawn(async move {
            loop {
                if let Some(addr) = status.edge_addr() {
                    let line = format!("worker agent running; edge router on {addr}");
                    wisehosting_worker::service::ready(&line, ready);
                    return;
                }
                tokio::select! {
                    _ = ready.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                }
            }
        });
        let token = shutdown.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) =
                (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
            else {
                return;
            };
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            wisehosting_worker::service::stopping();
            token.cancel();
        });
        agent.run(shutdown).await;
        ExitCode::SUCCESS
    })
}
