//! `wisehosting-admin`: the operators' console. A stub until the admin issue: it prints its
//! version.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("--version") | Some("version") => {
            println!("wisehosting-admin {}", env!("CARGO_PKG_VERSION"));
        }
        Some(other) => {
            eprintln!(
                "error: unknown argument {other:?}; this build of the admin console only knows --version (the console itself is issue 15's)"
            );
            std::process::exit(2);
        }
    }
}
