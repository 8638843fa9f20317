//! What the binary prints for people (the dev banner, a new worker's key, migration status).

/// Prints a line to stdout; a closed pipe (`| head`) is no reason to fail, or to panic as
/// `println!` does.
pub fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
