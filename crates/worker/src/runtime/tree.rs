//! Stopping a build for good. A `podman build` killed alone leaves its `RUN` step running: the
//! step is a runc container (`buildah-…`) whose process is a child of the build but in a
//! session of its own, so neither a signal to podman nor one to its process group reaches it,
//! and `RUN sleep infinity` would outlive a cancel forever. [`kill_tree`] finds every process
//! below the build, deletes the runc containers whose init process is among them, then kills
//! the build's process group.

use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Where runc keeps its containers' state when run as root (podman's and buildah's default).
const RUNC_ROOT: &str = "/run/runc";

/// Kills and deletes a runc container by id (ids other than plain names are ignored).
pub fn delete_runc_container(id: &str) {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return;
    }
    let _ = std::process::Command::new("runc")
        .args(["--root", RUNC_ROOT, "delete", "--force", "--", id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// The parent of every process, from `/proc/<pid>/stat`.
fn parents() -> HashMap<i32, i32> {
    let mut map = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return map };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses: split after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            map.insert(pid, ppid);
        }
    }
    map
}

/// `root` and every process below it.
pub fn descendants(root: i32) -> HashSet<i32> {
    let parents = parents();
    let mut found: HashSet<i32> = HashSet::from([root]);
    // Each pass adds the children of what is found; the tree is shallow.
    loop {
        let before = found.len();
        for (pid, ppid) in &parents {
            if found.contains(ppid) {
                found.insert(*pid);
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// The runc containers (id) whose init process is one of `pids`.
fn runc_containers_of(pids: &HashSet<i32>) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(RUNC_ROOT) else { return Vec::new() };
    dir.flatten()
        .filter_map(|entry| {
            let state = std::fs::read_to_string(entry.path().join("state.json")).ok()?;
            let value: serde_json::Value = serde_json::from_str(&state).ok()?;
            let init = i32::try_from(value["init_process_pid"].as_i64()?).ok()?;
            pids.contains(&init).then(|| entry.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

/// Kills the process group `pgid` (a build started with `process_group(0)`) and the runc
/// containers its processes run. Blocking: call it from a plain thread.
pub fn kill_tree(pgid: i32) {
    let below = descendants(pgid);
    for id in runc_containers_of(&below) {
        delete_runc_container(&id);
    }
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
    // Whatever of the tree is left (a step that changed its group) goes too.
    for pid in below {
        if Path::new(&format!("/proc/{pid}")).exists() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Kills the tree of a running command when dropped, unless [`TreeGuard::disarm`]ed: a
/// cancelled or timed-out build stops with everything it started.
#[derive(Debug)]
pub struct TreeGuard {
    pgid: Option<i32>,
}

impl TreeGuard {
    pub fn new(pid: Option<u32>) -> TreeGuard {
        TreeGuard { pgid: pid.and_then(|p| i32::try_from(p).ok()) }
    }

    /// The command ended by itself: nothing to kill.
    pub fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            std::thread::spawn(move || kill_tree(pgid));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn a_process_tree_is_found_and_killed_with_its_group() {
        // sh → sleep, in a group of its own.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30; wait"])
            .process_group(0)
            .spawn()
            .expect("sh");
        let pid = i32::try_from(child.id()).expect("pid");
        std::thread::sleep(std::time::Duration::from_millis(200));
        let below = descendants(pid);
        assert!(below.len() >= 3, "sh and its two sleeps: {below:?}");
        kill_tree(pid);
        let status = child.wait().expect("wait");
        assert!(!status.success());
        std::thread::sleep(std::time::Duration::from_millis(100));
        for p in below {
            let alive = std::fs::read_to_string(format!("/proc/{p}/stat"))
                .is_ok_and(|s| !s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')));
            assert!(!alive, "{p} outlived kill_tree");
        }
    }
}
