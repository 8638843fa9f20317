//! Network confinement of builds and apps (SPEC §6, SECURITY-TESTS T23 and T37).
//!
//! Builds run on `wisehosting-build` (10.89.0.0/16) and app containers on `wisehosting-apps`
//! (10.90.0.0/16), two podman networks of our own. For each, iptables refuses what a
//! container starts towards the host (DNS to the network's gateway aside) and towards
//! private, loopback, link-local, CGNAT, mesh, multicast and reserved ranges — which include
//! both networks, so an app reaches another app only through the edge router, and a build
//! reaches no app. The public internet stays open. On the apps network, answers to
//! connections made *to* an app (the edge router, a central proxy over the mesh) pass: only
//! connections an app starts are judged. Neither network has IPv6; ip6tables refuses
//! everything that enters from their bridges anyway, so a link-local IPv6 address cannot
//! reach the host or a neighbour.
//!
//! App-to-app traffic on one bridge is seen by iptables only with `br_netfilter`
//! (`net.bridge.bridge-nf-call-iptables = 1`); the apps network is not used without it.
//!
//! The rules live in chains of our own, jumped to from the *top* of INPUT and FORWARD: an
//! ACCEPT above our jump would disable it, so the check reads `iptables -S` in order and
//! repairs when anything differs — a missing, extra or changed rule, or a jump that is no
//! longer first (a firewall reload, netavark adding its own jump above ours). The check runs
//! once per job, for the networks the job uses: one `iptables -S` and one `ip6tables -S`.
//! Every command is argv, never a shell.

use std::process::Stdio;

use tokio::process::Command;

use super::Podman;

message_error! {
    /// The confined networks or their firewall could not be set up: the platform's to fix.
    pub FirewallError
}

/// One of our confined networks.
#[derive(Debug)]
pub struct Confined {
    pub network: &'static str,
    pub subnet: &'static str,
    pub gateway: &'static str,
    chain: &'static str,
    /// Let answers to connections made to the containers pass (apps serve; builds do not).
    serves: bool,
    /// Needs bridged traffic to pass iptables (several tenants on one bridge).
    needs_br_netfilter: bool,
}

pub const BUILD: Confined = Confined {
    network: "wisehosting-build",
    subnet: "10.89.0.0/16",
    gateway: "10.89.0.1",
    chain: "WISEHOSTING-BUILD",
    serves: false,
    needs_br_netfilter: false,
};

pub const APPS: Confined = Confined {
    network: "wisehosting-apps",
    subnet: "10.90.0.0/16",
    gateway: "10.90.0.1",
    chain: "WISEHOSTING-APPS",
    serves: true,
    needs_br_netfilter: true,
};

/// Destinations a container may not start a connection to (beyond the host itself).
const BLOCKED: [&str; 12] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "0.0.0.0/8",
    "192.0.0.0/24",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

const REJECT: &str = "-j REJECT --reject-with icmp-port-unreachable";
const REJECT6: &str = "-j REJECT --reject-with icmp6-port-unreachable";
const REPLIES: &str = "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN";

/// What one tool (`iptables` or `ip6tables`) must list: jumps at the top of built-in chains,
/// and our chains' rules, each exactly as `-S` prints it (and as given to `-A`/`-I`).
#[derive(Debug, PartialEq)]
struct Ruleset {
    /// `(parent, "-A <parent> … -j <chain>")`.
    jumps: Vec<(&'static str, String)>,
    /// `(chain, rules)`, each rule `-A <chain> …`.
    chains: Vec<(String, Vec<String>)>,
}

impl Confined {
    fn in_chain(&self) -> String {
        format!("{}-IN", self.chain)
    }

    fn fwd_chain(&self) -> String {
        format!("{}-FWD", self.chain)
    }

    fn v6_chain(&self) -> String {
        format!("{}-V6", self.chain)
    }

    fn v4_rules(&self) -> Ruleset {
        let (cin, cfwd) = (self.in_chain(), self.fwd_chain());
        let mut rules_in = Vec::new();
        let mut rules_fwd = Vec::new();
        if self.serves {
            rules_in.push(format!("-A {cin} {REPLIES}"));
            rules_fwd.push(format!("-A {cfwd} {REPLIES}"));
        }
        for proto in ["udp", "tcp"] {
            rules_in
                .push(format!("-A {cin} -d {}/32 -p {proto} -m {proto} --dport 53 -j RETURN", self.gateway));
        }
        rules_in.push(format!("-A {cin} {REJECT}"));
        rules_fwd.extend(BLOCKED.iter().map(|net| format!("-A {cfwd} -d {net} {REJECT}")));
        Ruleset {
            jumps: vec![
                ("INPUT", format!("-A INPUT -s {} -j {cin}", self.subnet)),
                ("FORWARD", format!("-A FORWARD -s {} -j {cfwd}", self.subnet)),
            ],
            chains: vec![(cin, rules_in), (cfwd, rules_fwd)],
        }
    }

    /// Everything that enters from the network's bridge over IPv6 is refused.
    fn v6_rules(&self, bridge: &str) -> Ruleset {
        let chain = self.v6_chain();
        let mut rules = Vec::new();
        if self.serves {
            rules.push(format!("-A {chain} {REPLIES}"));
        }
        rules.push(format!("-A {chain} {REJECT6}"));
        Ruleset {
            jumps: vec![
                ("INPUT", format!("-A INPUT -i {bridge} -j {chain}")),
                ("FORWARD", format!("-A FORWARD -i {bridge} -j {chain}")),
            ],
            chains: vec![(chain, rules)],
        }
    }
}

/// True when `listing` (`iptables -S`) holds exactly our rules in our chains and each of our
/// jumps comes before every rule of its parent chain that is not one of our jumps.
fn rules_in_place(listing: &str, expected: &Ruleset) -> bool {
    let lines: Vec<&str> = listing.lines().map(str::trim).collect();
    for (chain, rules) in &expected.chains {
        let prefix = format!("-A {chain} ");
        let found: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with(&prefix)).collect();
        if found != rules.iter().map(String::as_str).collect::<Vec<_>>() {
            return false;
        }
    }
    for (parent, jump) in &expected.jumps {
        let prefix = format!("-A {parent} ");
        let in_parent: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with(&prefix)).collect();
        let first_foreign = in_parent.iter().position(|l| !is_our_jump(l)).unwrap_or(in_parent.len());
        let ours = in_parent.iter().filter(|l| **l == jump.as_str()).count();
        let position = in_parent.iter().position(|l| *l == jump.as_str());
        if ours != 1 || position.is_none_or(|p| p > first_foreign) {
            return false;
        }
    }
    true
}

fn is_our_jump(line: &str) -> bool {
    line.rsplit(' ').next().is_some_and(|target| target.starts_with("WISEHOSTING-"))
}

async fn run(tool: &str, args: &[&str]) -> Result<String, FirewallError> {
    let out = Command::new(tool)
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {tool}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(FirewallError::from(format!(
            "{tool} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Empties our chains and fills them again; moves each jump to the top of its parent.
async fn apply(tool: &str, expected: &Ruleset) -> Result<(), FirewallError> {
    for (chain, rules) in &expected.chains {
        // -N fails when the chain exists; -F then empties it either way.
        let _ = run(tool, &["-N", chain]).await;
        run(tool, &["-F", chain]).await?;
        for rule in rules {
            run(tool, &rule.split_whitespace().collect::<Vec<_>>()).await?;
        }
    }
    for (_, jump) in expected.jumps.iter().rev() {
        let words: Vec<&str> = jump.split_whitespace().collect();
        let (parent, matches) = (words[1], &words[2..]);
        // Every copy goes (a stale one below an ACCEPT is useless), then one at the top.
        while run(tool, &[&["-D", parent][..], matches].concat()).await.is_ok() {}
        run(tool, &[&["-I", parent, "1"][..], matches].concat()).await?;
    }
    Ok(())
}

/// Serializes checks and repairs: two jobs never flush and refill the chains at once. Holds
/// the networks already created, with their bridges.
static ENSURE: tokio::sync::Mutex<Vec<(&'static str, String)>> = tokio::sync::Mutex::const_new(Vec::new());

/// Creates each of `nets` if missing and makes sure their rules are in place, in order;
/// repairs them otherwise. An error means the networks must not be used.
pub async fn ensure(podman: &Podman, nets: &[&Confined]) -> Result<(), FirewallError> {
    if nets.is_empty() {
        return Ok(());
    }
    let mut ready = ENSURE.lock().await;
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for net in nets {
        let bridge = match ready.iter().find(|(n, _)| *n == net.network) {
            Some((_, bridge)) => bridge.clone(),
            None => {
                let bridge = create_network(podman, net).await?;
                ready.push((net.network, bridge.clone()));
                bridge
            }
        };
        if net.needs_br_netfilter {
            bridged_traffic_filtered()?;
        }
        v4.push((net.network, net.v4_rules()));
        v6.push((net.network, net.v6_rules(&bridge)));
    }
    for (tool, sets) in [("iptables", v4), ("ip6tables", v6)] {
        let listing = run(tool, &["-S"]).await.unwrap_or_default();
        for (network, expected) in sets.iter().filter(|(_, e)| !rules_in_place(&listing, e)) {
            tracing::info!(network, tool, "(re)applying the network's firewall rules");
            apply(tool, expected).await?;
        }
    }
    Ok(())
}

/// Makes sure bridged IPv4 and IPv6 traffic passes iptables (`br_netfilter`), without which
/// two apps on one bridge would talk past every rule.
fn bridged_traffic_filtered() -> Result<(), FirewallError> {
    for knob in ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables"] {
        let path = std::path::Path::new("/proc/sys/net/bridge").join(knob);
        match std::fs::read_to_string(&path) {
            Ok(v) if v.trim() == "1" => {}
            Ok(_) => {
                std::fs::write(&path, "1").map_err(|e| format!("cannot set net.bridge.{knob} = 1: {e}"))?
            }
            Err(_) => {
                return Err(FirewallError::from(format!(
                    "net.bridge.{knob} is missing: load br_netfilter (`modprobe br_netfilter`) so apps on one bridge can be kept apart"
                )));
            }
        }
    }
    Ok(())
}

/// Creates the network when missing (without IPv6); returns its bridge interface.
async fn create_network(podman: &Podman, net: &Confined) -> Result<String, FirewallError> {
    if !podman.network_exists(net.network).await {
        podman
            .create_network(net.network, net.subnet, net.gateway)
            .await
            .map_err(|e| FirewallError(format!("cannot create the {} network: {e}", net.network)))?;
    }
    let bridge = podman.network_interface(net.network).await;
    let plain = bridge.as_deref().is_ok_and(|b| {
        !b.is_empty() && b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    });
    match bridge {
        Ok(bridge) if plain => Ok(bridge),
        other => Err(FirewallError(format!(
            "cannot tell the bridge of the {} network (got {other:?})",
            net.network
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(net: &Confined, before: &str) -> String {
        let rules = net.v4_rules();
        let mut out =
            format!("-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-N {}\n-N {}\n", net.in_chain(), net.fwd_chain());
        for (parent, jump) in &rules.jumps {
            out.push_str(&format!("{jump}\n"));
            out.push_str(&before.replace("PARENT", parent));
        }
        for (_, chain_rules) in &rules.chains {
            for rule in chain_rules {
                out.push_str(&format!("{rule}\n"));
            }
        }
        out
    }

    #[test]
    fn the_check_accepts_the_applied_rules_and_nothing_less_or_more() {
        for net in [&BUILD, &APPS] {
            let expected = net.v4_rules();
            let applied = listing(net, "-A PARENT -i lo -j ACCEPT\n");
            assert!(rules_in_place(&applied, &expected), "{applied}");
            let missing_one =
                applied.replace(&format!("-A {} -d 127.0.0.0/8 {REJECT}\n", net.fwd_chain()), "");
            assert!(!rules_in_place(&missing_one, &expected), "a dropped rule is noticed");
            let no_jump =
                applied.replace(&format!("-A FORWARD -s {} -j {}\n", net.subnet, net.fwd_chain()), "");
            assert!(!rules_in_place(&no_jump, &expected), "a missing jump is noticed");
            let extra = format!("{applied}-A {} -j ACCEPT\n", net.in_chain());
            assert!(!rules_in_place(&extra, &expected), "a rule added by someone else is noticed");
            assert!(!rules_in_place("", &expected));
        }
    }

    #[test]
    fn an_accept_above_our_jump_is_noticed_and_our_other_jumps_above_it_are_fine() {
        let expected = APPS.v4_rules();
        let applied = listing(&APPS, "");
        assert!(rules_in_place(&applied, &expected));
        // An ACCEPT inserted at the top of FORWARD, above our jump, disables it.
        let shadowed = applied.replacen("-A FORWARD -s", "-A FORWARD -j ACCEPT\n-A FORWARD -s", 1);
        assert!(!rules_in_place(&shadowed, &expected), "{shadowed}");
        // netavark's own jump above ours too.
        let netavark = applied.replacen("-A INPUT -s", "-A INPUT -j NETAVARK_INPUT\n-A INPUT -s", 1);
        assert!(!rules_in_place(&netavark, &expected));
        // The build network's jump above the apps network's is one of ours: still in order.
        let both = applied.replacen(
            "-A INPUT -s",
            "-A INPUT -s 10.89.0.0/16 -j WISEHOSTING-BUILD-IN\n-A INPUT -s",
            1,
        );
        assert!(rules_in_place(&both, &expected));
        // Two copies of our jump (one left below a foreign rule) are repaired too.
        let twice = format!("{applied}-A FORWARD -s {} -j {}\n", APPS.subnet, APPS.fwd_chain());
        assert!(!rules_in_place(&twice, &expected));
    }

    #[test]
    fn apps_let_answers_out_builds_do_not_and_both_refuse_each_other_and_v6() {
        let apps = APPS.v4_rules();
        assert_eq!(apps.chains[0].1[0], format!("-A WISEHOSTING-APPS-IN {REPLIES}"));
        assert_eq!(apps.chains[1].1[0], format!("-A WISEHOSTING-APPS-FWD {REPLIES}"));
        assert!(!BUILD.v4_rules().chains.iter().flat_map(|(_, r)| r).any(|r| r.contains("ctstate")));
        for rules in [&apps, &BUILD.v4_rules()] {
            // 10.0.0.0/8 holds both networks and the mesh (10.50.0.0/24).
            assert!(rules.chains[1].1.iter().any(|r| r.contains("-d 10.0.0.0/8 ")));
        }
        let v6 = APPS.v6_rules("podman3");
        assert_eq!(v6.jumps[0].1, "-A INPUT -i podman3 -j WISEHOSTING-APPS-V6");
        assert_eq!(
            v6.chains[0].1.last().map(String::as_str),
            Some(&*format!("-A WISEHOSTING-APPS-V6 {REJECT6}"))
        );
    }
}
