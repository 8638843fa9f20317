//! The command line of `wisehosting-wg-userspace`: what it refuses, and why. (Bringing an
//! interface up and carrying traffic is proved by the control plane's multi-host test, which
//! also needs this binary built: this test makes `cargo test` build it.)

#![allow(clippy::expect_used)]

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wisehosting-wg-userspace")).args(args).output().expect("runs");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_name_linux_would_refuse_is_refused_with_the_rule_and_no_device_is_made() {
    for bad in ["../etc", "a-name-longer-than-15", "has space", ""] {
        let (code, stderr) = run(&[bad]);
        assert_eq!(code, Some(2), "{bad:?} refused");
        assert!(stderr.contains("is not an interface name: use 1-15 letters, digits or _=+.-"), "{stderr}");
        assert!(!std::path::Path::new(&format!("/var/run/wireguard/{bad}.sock")).exists());
    }
}

#[test]
fn no_interface_or_an_unknown_flag_prints_the_usage() {
    for args in [&[][..], &["--verbose"][..], &["--foreground"][..], &["a", "b", "c"][..]] {
        let (code, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}");
        assert!(stderr.contains("usage: wisehosting-wg-userspace [--foreground] IFACE"), "{stderr}");
    }
}
