//! A process limit for one build. `podman build` (4.x) has `--memory` and CPU quotas but no
//! `--pids-limit`, and `--ulimit nproc` counts every process of the user on the host (the
//! builds run as root). So each build gets a cgroup of its own, `wisehosting-build/<name>`,
//! with `pids.max` set, and `podman --cgroup-manager cgroupfs build --cgroup-parent
//! /wisehosting-build/<name>/run` puts every `RUN` step's container beneath it: the limit
//! holds for the whole build, however many steps (runc creates and removes `run` for each).
//! Works on cgroup v1 (the `pids` hierarchy) and v2 (the pids controller enabled on the way
//! down). The cgroup is removed when the build ends.

use std::path::Path;

message_error! {
    /// A build's cgroup could not be set up: the platform's to fix.
    pub CgroupError
}

const ROOT: &str = "/sys/fs/cgroup";
const PARENT: &str = "wisehosting-build";

#[derive(Debug)]
pub struct BuildCgroup {
    parent: String,
    name: String,
}

impl BuildCgroup {
    /// Creates the cgroup `name` (a job's unique name) allowing at most `pids_max` processes.
    pub fn create(name: &str, pids_max: u32) -> Result<BuildCgroup, CgroupError> {
        let root = Path::new(ROOT);
        let v1 = root.join("pids");
        let base = if v1.join("cgroup.procs").exists() {
            v1.join(PARENT)
        } else if root.join("cgroup.controllers").exists() {
            let base = root.join(PARENT);
            create_dir(&base)?;
            enable_pids(root)?;
            enable_pids(&base)?;
            base
        } else {
            return Err("this host has no pids cgroup controller".into());
        };
        create_dir(&base)?;
        let dir = base.join(name);
        create_dir(&dir)?;
        // From here on, dropping the guard removes what was made.
        let cgroup = BuildCgroup { parent: format!("/{PARENT}/{name}/run"), name: name.to_string() };
        std::fs::write(dir.join("pids.max"), pids_max.to_string())
            .map_err(|e| format!("cannot set pids.max of {}: {e}", dir.display()))?;
        Ok(cgroup)
    }

    /// The value of `podman build --cgroup-parent`.
    pub fn parent(&self) -> &str {
        &self.parent
    }
}

impl Drop for BuildCgroup {
    fn drop(&mut self) {
        remove_where(|name| name == self.name);
    }
}

/// Removes the cgroups builds of `instance` left behind (a worker killed mid-build never
/// removes its own): every `wisehosting-build/<instance>-*` that is empty. One still in use
/// (an orphaned build running on) is not empty, and stays.
pub fn prune_stale(instance: &str) {
    let prefix = format!("{instance}-");
    remove_where(|name| name.starts_with(&prefix));
}

/// Removes the build cgroups whose names `pick` chooses, in every hierarchy (v1: runc makes
/// `<name>/run` in each; v2: the root is the one tree). Removing one still in use fails, and it
/// stays. runc removes `run` after each step; a step killed mid-way may leave it behind.
fn remove_where(pick: impl Fn(&str) -> bool) {
    let Ok(hierarchies) = std::fs::read_dir(ROOT) else { return };
    let bases = hierarchies.flatten().map(|h| h.path().join(PARENT)).chain([Path::new(ROOT).join(PARENT)]);
    for base in bases {
        let Ok(builds) = std::fs::read_dir(&base) else { continue };
        for build in builds.flatten().filter(|b| pick(&b.file_name().to_string_lossy())) {
            let _ = std::fs::remove_dir(build.path().join("run"));
            let _ = std::fs::remove_dir(build.path());
        }
    }
}

fn create_dir(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(CgroupError::from(format!("cannot create the cgroup {}: {e}", dir.display()))),
    }
}

/// cgroup v2: lets the children of `dir` use the pids controller.
fn enable_pids(dir: &Path) -> Result<(), CgroupError> {
    let control = dir.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&control).unwrap_or_default();
    if enabled.split_whitespace().any(|c| c == "pids") {
        return Ok(());
    }
    std::fs::write(&control, "+pids")
        .map_err(|e| CgroupError(format!("cannot enable the pids controller in {}: {e}", dir.display())))
}
