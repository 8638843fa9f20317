//! `wisehosting-worker`: the worker agent. Everything lives in the library.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use wisehosting_worker::{Agent, WorkerConfig};

/// Prints the worker's WireGuard public key, making its key pair in the configured data dir
/// when there is none (before the worker is created on the control plane, so it joins the
/// mesh with the address given there and registers over it).
fn print_mesh_key() -> ExitCode {
    let path = std::env::var_os("CONFIG_PATH").map_or_else(
        || std::path::PathBuf::from(wisehosting_worker::config::DEFAULT_CONFIG_PATH),
        Into::into,
    );
    let config = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read worker config {}: {e}; check CONFIG_PATH", path.display()))
        .and_then(|text| {
            WorkerConfig::from_yaml(&text, &path.display().to_string()).map_err(|e| e.to_string())
        });
    match config.and_then(|c| wisehosting_worker::mesh::public_key(&c.data_dir).map_err(|e| e.to_string())) {
        Ok(key) => {
            println!("{key}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

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
                "wisehosting-worker {}\n\nRuns the worker agent with the config at CONFIG_PATH (default /etc/wisehosting/worker.yaml).\nSecrets: systemd credentials worker_api_key and worker_shared_secret.\n\n`wisehosting-worker mesh-key` prints this worker's WireGuard public key (its key pair made\nin data_dir when missing), for `wisehosting worker create --wg-public-key`.",
                env!("CARGO_PKG_VERSION")
            );
            return ExitCode::SUCCESS;
        }
        Some("mesh-key") => return print_mesh_key(),
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
