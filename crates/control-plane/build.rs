//! Makes sure the dashboard's output folder exists, so a debug build serves whatever
//! `web/dashboard` builds into it later (rust-embed reads it from disk in debug builds; a
//! folder missing at compile time would make it embed nothing, for good).

fn main() {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/dashboard/dist");
    if let Err(e) = std::fs::create_dir_all(&dist) {
        println!("cargo::warning=cannot create {}: {e}", dist.display());
    }
    println!("cargo::rerun-if-changed=build.rs");
}
