//! `wisehosting-worker`: the worker agent. For now it only reports its version; the link to the
//! control plane, the Podman runtime and the edge router arrive with their issues.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("--version") | Some("version") => {
            println!("wisehosting-worker {}", env!("CARGO_PKG_VERSION"));
        }
        Some("--help") | Some("-h") => {
            println!(
                "wisehosting-worker {}\n\nThe worker agent is not implemented yet; it only prints its version.",
                env!("CARGO_PKG_VERSION")
            );
        }
        Some(other) => {
            eprintln!("error: unknown argument {other:?}; the worker agent only supports --version for now");
            std::process::exit(2);
        }
    }
}
