//! `wisehosting-wg-userspace IFACE`: a userspace WireGuard interface for hosts whose kernel has
//! no WireGuard module, started the way `wg-quick` starts `wireguard-go` (set
//! `WG_QUICK_USERSPACE_IMPLEMENTATION` to this binary, or `mesh.userspace` in the worker's and
//! the control plane's config): it makes the tun device `IFACE` and its UAPI socket
//! `/var/run/wireguard/IFACE.sock`, through which `wg` configures it, then returns while a
//! detached copy of itself (`--foreground`) carries the traffic. The protocol is the
//! `boringtun` crate's.
//!
//! The socket directory is shared by every network namespace of the host: interfaces in
//! different namespaces need different names.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use boringtun::device::{DeviceConfig, DeviceHandle};

const USAGE: &str = "usage: wisehosting-wg-userspace [--foreground] IFACE";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (foreground, name) = match args.as_slice() {
        [flag, name] if flag == "--foreground" || flag == "-f" => (true, name.as_str()),
        [name] if !name.starts_with('-') => (false, name.as_str()),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !valid_name(name) {
        eprintln!("error: {name:?} is not an interface name: use 1-15 letters, digits or _=+.-");
        return ExitCode::from(2);
    }
    if foreground { run(name) } else { detach(name) }
}

/// Linux's rule for interface names, as `wg-quick` checks them.
fn valid_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'=' | b'+' | b'.' | b'-'))
}

fn socket_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/var/run/wireguard/{name}.sock"))
}

/// Starts a detached copy of this binary in the foreground mode and returns once the
/// interface's UAPI socket is there (what `wg-quick` needs next), or with its failure.
fn detach(name: &str) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("error: cannot find this binary to start it detached: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut command = Command::new(exe);
    // No inherited output: a caller reading ours to its end (wg-quick run by `output()`)
    // would wait for the device process to end.
    command.arg("--foreground").arg(name).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // A session of its own: the caller's terminal or process group ending does not end it.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("error: cannot start the WireGuard device process: {e}");
            return ExitCode::FAILURE;
        }
    };
    let socket = socket_path(name);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("error: the WireGuard device process for {name} ended: {status}");
            return ExitCode::FAILURE;
        }
        if socket.exists() {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("error: {} did not appear within 10 s", socket.display());
    let _ = child.kill();
    ExitCode::FAILURE
}

/// Closes every descriptor but standard input, output and error: ones inherited without
/// close-on-exec (wg-quick's `exec 3>&2`, a pipe its caller reads to the end) would keep the
/// caller waiting for as long as the device runs.
fn close_inherited_descriptors() {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    for fd in fds.into_iter().filter(|fd| *fd > 2) {
        // The directory's own descriptor is closed already: EBADF, ignored.
        #[allow(deprecated)]
        let _ = nix::unistd::close(fd);
    }
}

/// Makes the device and carries its traffic until the process is ended.
fn run(name: &str) -> ExitCode {
    close_inherited_descriptors();
    // One thread: the mesh carries control traffic and a few apps' requests per host.
    let config =
        DeviceConfig { n_threads: 1, use_connected_socket: true, use_multi_queue: false, uapi_fd: -1 };
    match DeviceHandle::new(name, config) {
        Ok(mut device) => {
            device.wait();
            device.clean();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "error: cannot make the WireGuard interface {name}: {e:?}; it needs CAP_NET_ADMIN and /dev/net/tun"
            );
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernels_rule() {
        assert!(valid_name("wh0"));
        assert!(valid_name("whm0a1b2c3w1"));
        assert!(!valid_name(""));
        assert!(!valid_name("a-name-that-is-too-long"));
        assert!(!valid_name("wh0/../x"));
        assert!(!valid_name("wh 0"));
    }
}
