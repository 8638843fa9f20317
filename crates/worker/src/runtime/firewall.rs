//! Build isolation (SPEC §6, SECURITY-TESTS T23): builds run on their own podman network,
//! `wisehosting-build` (10.89.0.0/16), whose traffic to the host is refused (DNS to the
//! network's gateway aside) and whose forwarded traffic to private, loopback, link-local, CGNAT
//! and mesh ranges is refused. The rules live in two chains of our own, jumped to from the top
//! of INPUT and FORWARD; they are re-applied before every build, so a firewall reload between
//! builds is repaired before the next one runs. Every command is argv, never a shell.

use std::process::Stdio;

use tokio::process::Command;

use super::Podman;

pub const NETWORK: &str = "wisehosting-build";
pub const SUBNET: &str = "10.89.0.0/16";
pub const GATEWAY: &str = "10.89.0.1";
const CHAIN_IN: &str = "WISEHOSTING-BUILD-IN";
const CHAIN_FWD: &str = "WISEHOSTING-BUILD-FWD";
/// Forwarded destinations a build may not reach.
const BLOCKED: [&str; 9] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "0.0.0.0/8",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

async fn iptables(args: &[&str]) -> Result<(), String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("iptables {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Creates the build network if missing and (re)applies the rules.
pub async fn ensure(podman: &Podman) -> Result<(), String> {
    let mut exists = podman.command_for(&["network", "exists", NETWORK]);
    let present = exists
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false);
    if !present {
        let mut create =
            podman.command_for(&["network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, NETWORK]);
        let out = create.output().await.map_err(|e| format!("cannot create the build network: {e}"))?;
        // Another worker (or test) may have created it in the meantime.
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !stderr.contains("already exists") {
            return Err(format!("cannot create the build network: {}", stderr.trim()));
        }
    }
    for chain in [CHAIN_IN, CHAIN_FWD] {
        // -N fails when the chain exists; -F then empties it either way.
        let _ = iptables(&["-N", chain]).await;
        iptables(&["-F", chain]).await?;
    }
    for proto in ["udp", "tcp"] {
        iptables(&["-A", CHAIN_IN, "-d", GATEWAY, "-p", proto, "--dport", "53", "-j", "RETURN"]).await?;
    }
    iptables(&["-A", CHAIN_IN, "-j", "REJECT"]).await?;
    for net in BLOCKED {
        iptables(&["-A", CHAIN_FWD, "-d", net, "-j", "REJECT"]).await?;
    }
    for (parent, chain) in [("INPUT", CHAIN_IN), ("FORWARD", CHAIN_FWD)] {
        if iptables(&["-C", parent, "-s", SUBNET, "-j", chain]).await.is_err() {
            iptables(&["-I", parent, "1", "-s", SUBNET, "-j", chain]).await?;
        }
    }
    Ok(())
}
