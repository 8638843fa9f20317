//! What a user gives when deploying: names, repository URLs, git refs, paths, env keys, ports.
//! Each is a newtype built only through `parse`, which names the problem and the fix; values
//! that reach git or podman argv are plain by construction (no leading `-`, no `..`).

use std::fmt;

/// The values that also cross the link are the protocol's own newtypes (one definition, one
/// check on both sides).
pub use wisehosting_proto::InvalidField as InvalidInput;
pub use wisehosting_proto::job::{Branch, CommitSha, DockerfilePath, EnvKey, Framework};

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidInput {
    InvalidInput { field, message: message.into() }
}

/// A DNS-label slug derived from an app's name: `My App!` → `my-app`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppSlug(String);

/// Slugs the platform keeps for itself: `<slug>.<subdomain_base>` must never pose as the
/// platform's own sites (the dashboard, the API, the admin console, mail, …).
pub const RESERVED_SLUGS: &[&str] = &[
    "www",
    "api",
    "admin",
    "administrator",
    "dashboard",
    "console",
    "app",
    "apps",
    "auth",
    "login",
    "logout",
    "account",
    "accounts",
    "billing",
    "support",
    "help",
    "docs",
    "status",
    "blog",
    "mail",
    "smtp",
    "imap",
    "pop",
    "ftp",
    "ns",
    "ns1",
    "ns2",
    "dns",
    "cdn",
    "static",
    "assets",
    "internal",
    "internal-api",
    "metrics",
    "health",
    "traefik",
    "proxy",
    "edge",
    "mesh",
    "wg",
    "vpn",
    "webhooks",
    "git",
    "localhost",
    "root",
    "system",
    "wisehosting",
];

impl AppSlug {
    pub const MAX_LEN: usize = 40;

    /// Lowercases, turns runs of other characters into one `-`, trims `-` at both ends.
    pub fn from_name(name: &str) -> Result<AppSlug, InvalidInput> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(invalid("name", "give the app a name of 1 to 64 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid("name", "the name must not contain control characters"));
        }
        let mut slug = String::new();
        for c in name.chars().flat_map(char::to_lowercase) {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                slug.push(c);
            } else if !slug.ends_with('-') {
                slug.push('-');
            }
        }
        let slug = slug.trim_matches('-');
        if slug.is_empty() {
            return Err(invalid("name", "the name needs at least one letter or digit (a-z, 0-9)"));
        }
        if slug.len() > Self::MAX_LEN {
            return Err(invalid(
                "name",
                format!("the name makes a slug longer than {} characters; shorten it", Self::MAX_LEN),
            ));
        }
        if RESERVED_SLUGS.contains(&slug) {
            return Err(invalid(
                "name",
                format!("`{slug}` is kept for the platform's own sites; choose another name"),
            ));
        }
        Ok(AppSlug(slug.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the code comes from: `https://` (public hosts, checked again by the worker before it
/// connects), or in single-machine mode a `file://` URL or absolute local path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrl(String);

impl RepoUrl {
    /// The protocol's check ([`wisehosting_proto::job::RepoUrl`]); in single-machine mode an
    /// absolute local path is taken too, as a `file://` URL.
    pub fn parse(value: &str, allow_local: bool) -> Result<RepoUrl, InvalidInput> {
        let value = value.trim();
        let local =
            !value.starts_with("https://") && (value.starts_with('/') || value.starts_with("file://"));
        if local && !allow_local {
            return Err(invalid(
                "repo_url",
                "use an https:// URL (git://, ssh:// and http:// are not supported)",
            ));
        }
        if local {
            let path = value.strip_prefix("file://").unwrap_or(value);
            return wisehosting_proto::job::RepoUrl::parse(&format!("file://{path}"))
                .map(|url| RepoUrl(url.into()))
                .map_err(|_| {
                    invalid(
                        "repo_url",
                        "use an https:// URL, a file:// URL, or an absolute path without `..`",
                    )
                });
        }
        wisehosting_proto::job::RepoUrl::parse(value).map(|url| RepoUrl(url.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A repository access token (a personal access token or deploy token): printable ASCII
/// without spaces, at most 1,024 characters. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct GitToken(String);

impl GitToken {
    pub fn parse(value: &str) -> Result<GitToken, InvalidInput> {
        if !value.is_empty() && value.len() <= 1024 && value.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(GitToken(value.to_string()))
        } else {
            Err(invalid(
                "git_token",
                "a repository token is 1 to 1,024 printable characters without spaces; paste the token alone",
            ))
        }
    }

    /// The token's text, for sealing. Never print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for GitToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GitToken([redacted])")
    }
}

/// The port the app listens on inside its container.
pub fn parse_port(value: i64) -> Result<u16, InvalidInput> {
    wisehosting_proto::job::Port::parse(value).map(wisehosting_proto::job::Port::get)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn names_become_dns_slugs() {
        assert_eq!(AppSlug::from_name("My App!").map(|s| s.0), Ok("my-app".into()));
        assert_eq!(AppSlug::from_name("  hello--world  ").map(|s| s.0), Ok("hello-world".into()));
        assert!(AppSlug::from_name("$(id)").is_ok_and(|s| s.as_str() == "id"));
        assert!(AppSlug::from_name("!!!").is_err());
        assert!(AppSlug::from_name("").is_err());
        assert!(AppSlug::from_name(&"a".repeat(41)).is_err());
    }

    #[test]
    fn the_platforms_own_names_are_reserved() {
        for name in ["www", "API", "Admin", "dashboard", " Internal API ", "wisehosting"] {
            let err = AppSlug::from_name(name).expect_err(name);
            assert!(err.to_string().contains("kept for the platform"), "{name}: {err}");
        }
        assert!(AppSlug::from_name("my-api").is_ok(), "only exact slugs are reserved");
    }

    #[test]
    fn option_like_and_traversing_refs_and_paths_are_refused() {
        for bad in
            ["--upload-pack=touch /tmp/x", "-b", "a..b", "a//b", "/abs", "x.lock", "a b", "a;b", "$(id)", ""]
        {
            assert!(Branch::parse(bad).is_err(), "{bad}");
        }
        for ok in ["main", "release/1.2", "feature_x-y"] {
            assert!(Branch::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["../Dockerfile", "/etc/passwd", "a/../b", "-f", "a//b", "./x", "a b"] {
            assert!(DockerfilePath::parse(bad).is_err(), "{bad}");
        }
        assert!(DockerfilePath::parse("docker/Containerfile").is_ok());
    }

    #[test]
    fn repo_urls_must_be_https_or_local_in_single_machine_mode() {
        assert!(RepoUrl::parse("https://github.com/a/b.git", false).is_ok());
        for bad in [
            "http://x/y",
            "git://x/y",
            "ssh://git@x/y",
            "https://user:tok@x/y",
            "ext::sh -c id",
            "-u",
            "https://",
        ] {
            assert!(RepoUrl::parse(bad, false).is_err(), "{bad}");
        }
        assert!(RepoUrl::parse("/srv/repo", false).is_err());
        assert_eq!(RepoUrl::parse("/srv/repo", true).map(|r| r.0), Ok("file:///srv/repo".into()));
        assert!(RepoUrl::parse("file:///srv/../etc", true).is_err());
    }

    #[test]
    fn env_keys_follow_the_spec_pattern() {
        for ok in ["A", "DATABASE_URL", "X1", &format!("A{}", "B".repeat(63))] {
            assert!(EnvKey::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "1A", "_A", "A-B", "A B", &format!("A{}", "B".repeat(64))] {
            assert!(EnvKey::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn a_parsed_branch_can_never_start_an_option(s in "\\PC{0,40}") {
            if let Ok(b) = Branch::parse(&s) {
                prop_assert!(!b.as_str().starts_with('-'));
                prop_assert!(!b.as_str().contains(".."));
            }
        }

        #[test]
        fn slugs_are_dns_labels(s in "\\PC{0,70}") {
            if let Ok(slug) = AppSlug::from_name(&s) {
                prop_assert!(slug.as_str().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
                prop_assert!(!slug.as_str().starts_with('-') && !slug.as_str().ends_with('-'));
            }
        }
    }
}
