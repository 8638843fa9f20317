//! Build isolation (SPEC §6, SECURITY-TESTS T23): builds run on their own podman network,
//! `wisehosting-build` (10.89.0.0/16), whose traffic to the host is refused (DNS to the
//! network's gateway aside) and whose forwarded traffic to private, loopback, link-local, CGNAT
//! and mesh ranges is refused. The rules live in two chains of our own, jumped to from the top
//! of INPUT and FORWARD. Before every build one `iptables -S` checks them, line for line; when
//! anything differs (a firewall reload, say) they are re-applied before the build runs. Every
//! command is argv, never a shell.

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

/// Serializes checks and repairs: two builds never flush and refill the chains at once.
static ENSURE: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);

/// The lines `iptables -S` prints when the rules are in place.
fn expected_rules() -> Vec<String> {
    let mut lines =
        vec![format!("-A INPUT -s {SUBNET} -j {CHAIN_IN}"), format!("-A FORWARD -s {SUBNET} -j {CHAIN_FWD}")];
    for proto in ["udp", "tcp"] {
        lines.push(format!("-A {CHAIN_IN} -d {GATEWAY}/32 -p {proto} -m {proto} --dport 53 -j RETURN"));
    }
    lines.push(format!("-A {CHAIN_IN} -j REJECT --reject-with icmp-port-unreachable"));
    for net in BLOCKED {
        lines.push(format!("-A {CHAIN_FWD} -d {net} -j REJECT --reject-with icmp-port-unreachable"));
    }
    lines
}

/// True when `listing` (`iptables -S`) holds our jumps and exactly our rules in our chains.
fn rules_in_place(listing: &str) -> bool {
    let ours: Vec<&str> = listing
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with(&format!("-A {CHAIN_IN} "))
                || l.starts_with(&format!("-A {CHAIN_FWD} "))
                || l.ends_with(&format!("-j {CHAIN_IN}"))
                || l.ends_with(&format!("-j {CHAIN_FWD}"))
        })
        .collect();
    let mut expected = expected_rules();
    let mut found: Vec<String> = ours.iter().map(|l| l.to_string()).collect();
    expected.sort();
    found.sort();
    found.dedup();
    expected == found
}

/// Creates the build network if missing and makes sure the rules are in place.
pub async fn ensure(podman: &Podman) -> Result<(), String> {
    let mut network_ready = ENSURE.lock().await;
    if !*network_ready {
        create_network(podman).await?;
        *network_ready = true;
    }
    let listing = Command::new("iptables")
        .args(["-w", "-S"])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    if listing.status.success() && rules_in_place(&String::from_utf8_lossy(&listing.stdout)) {
        return Ok(());
    }
    apply_rules().await
}

async fn create_network(podman: &Podman) -> Result<(), String> {
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
    Ok(())
}

/// Empties our chains and fills them again; adds the jumps where missing.
async fn apply_rules() -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_accepts_the_applied_rules_and_nothing_less_or_more() {
        let applied = format!(
            "-P INPUT ACCEPT\n-N {CHAIN_IN}\n-N {CHAIN_FWD}\n-A INPUT -i lo -j ACCEPT\n{}\n",
            expected_rules().join("\n")
        );
        assert!(rules_in_place(&applied));
        let missing_one = applied.replace(
            &format!("-A {CHAIN_FWD} -d 127.0.0.0/8 -j REJECT --reject-with icmp-port-unreachable\n"),
            "",
        );
        assert!(!rules_in_place(&missing_one), "a dropped rule is noticed");
        let no_jump = applied.replace(&format!("-A FORWARD -s {SUBNET} -j {CHAIN_FWD}\n"), "");
        assert!(!rules_in_place(&no_jump), "a missing jump is noticed");
        let extra = format!("{applied}-A {CHAIN_IN} -j ACCEPT\n");
        assert!(!rules_in_place(&extra), "a rule added by someone else is noticed");
        assert!(!rules_in_place(""));
    }
}
