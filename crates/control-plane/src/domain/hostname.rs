//! [`Hostname`]: a custom domain as a user types it, parsed strictly — IDNA to its ASCII
//! (punycode) form, lowercased, without a trailing dot; 1 to 253 characters, labels of 1 to
//! 63 letters, digits and inner hyphens, at least two labels, a top-level label that is not
//! all digits. IP literals, ports, paths and schemes are refused with what to type instead; a
//! wildcard (`*.example.com`, one leading label) only when the operator allows it.

use std::fmt;
use std::net::IpAddr;

use super::app::InvalidInput;

const FIELD: &str = "hostname";

fn invalid(message: impl Into<String>) -> InvalidInput {
    InvalidInput { field: FIELD, message: message.into() }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hostname(String);

impl Hostname {
    pub const MAX_LEN: usize = 253;

    pub fn parse(input: &str, allow_wildcard: bool) -> Result<Hostname, InvalidInput> {
        let text = input.trim();
        if text.is_empty() {
            return Err(invalid("give the domain name alone, like www.example.com"));
        }
        if text.contains("://") || text.contains('/') || text.contains('@') || text.contains('?') {
            return Err(invalid(format!(
                "{text:?} is a URL; give the domain name alone, like www.example.com (no scheme, path or user)"
            )));
        }
        let bare = text.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() || looks_like_ipv4_with_port(text) {
            return Err(invalid(format!(
                "{text:?} is an IP address; custom domains must be DNS names (point the name's A/CNAME record at the platform instead)"
            )));
        }
        if text.contains(':') {
            return Err(invalid(format!("{text:?} has a port; give the domain name without `:port`")));
        }
        let text = text.strip_suffix('.').unwrap_or(text);
        let (wildcard, rest) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if rest.contains('*') {
            return Err(invalid(format!(
                "{text:?}: a `*` may only stand alone as the first label, like *.example.com"
            )));
        }
        if wildcard && !allow_wildcard {
            return Err(invalid(format!(
                "{text:?} is a wildcard; this platform accepts only exact names (ask the operator to set domains.allow_wildcards)"
            )));
        }
        if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(format!("{text:?} contains spaces or control characters")));
        }
        let ascii = idna::domain_to_ascii_strict(rest).map_err(|_| {
            invalid(format!(
                "{text:?} is not a valid domain name: use letters, digits and hyphens in dot-separated labels"
            ))
        })?;
        check_ascii(&ascii, text)?;
        let name = if wildcard { format!("*.{ascii}") } else { ascii };
        if name.len() > Self::MAX_LEN {
            return Err(invalid(format!("{text:?} is longer than {} characters", Self::MAX_LEN)));
        }
        Ok(Hostname(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// The name the verification TXT record is looked up under (see [`challenge_name`]).
    pub fn challenge_name(&self) -> String {
        challenge_name(&self.0)
    }

    /// True when this name is `base` or lies under it (`x.base`, `*.base`).
    pub fn is_within(&self, base: &str) -> bool {
        let base = base.trim_matches('.').to_ascii_lowercase();
        if base.is_empty() {
            return false;
        }
        let name = self.0.trim_start_matches("*.");
        name == base || name.ends_with(&format!(".{base}"))
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name the verification TXT record of a (parsed, stored) hostname is looked up under:
/// `_wisehosting-challenge.` before the hostname (before the name under the `*` for a wildcard).
pub fn challenge_name(hostname: &str) -> String {
    format!("_wisehosting-challenge.{}", hostname.trim_start_matches("*."))
}

fn looks_like_ipv4_with_port(text: &str) -> bool {
    text.rsplit_once(':').is_some_and(|(host, _)| host.parse::<std::net::Ipv4Addr>().is_ok())
}

/// The label rules on the punycode form (IDNA already refused what it could not map).
fn check_ascii(ascii: &str, shown: &str) -> Result<(), InvalidInput> {
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(invalid(format!(
            "{shown:?} is a single label; give a full domain name like www.example.com"
        )));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(invalid(format!("{shown:?} has an empty label (two dots in a row)")));
        }
        if label.len() > 63 {
            return Err(invalid(format!("{shown:?} has a label longer than 63 characters")));
        }
        if !label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(invalid(format!("{shown:?}: labels hold only letters, digits and hyphens")));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid(format!("{shown:?}: a label may not start or end with a hyphen")));
        }
    }
    if labels.last().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
        return Err(invalid(format!("{shown:?} ends in a numeric label; that is not a domain name")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> String {
        Hostname::parse(input, false).map(|h| h.0).unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn names_are_lowercased_trimmed_and_converted_to_punycode() {
        assert_eq!(ok("  WWW.Example.COM. "), "www.example.com");
        assert_eq!(ok("bücher.example"), "xn--bcher-kva.example");
        assert_eq!(ok("xn--bcher-kva.example"), "xn--bcher-kva.example");
        assert_eq!(ok("a-b.c-d.example.org"), "a-b.c-d.example.org");
        let long_label = "a".repeat(63);
        assert_eq!(ok(&format!("{long_label}.com")), format!("{long_label}.com"));
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        let cases = [
            ("", "alone"),
            ("https://example.com/", "is a URL"),
            ("example.com/path", "is a URL"),
            ("user@example.com", "is a URL"),
            ("127.0.0.1", "IP address"),
            ("10.0.0.1:80", "IP address"),
            ("[::1]", "IP address"),
            ("::ffff:127.0.0.1", "IP address"),
            ("example.com:8080", "port"),
            ("localhost", "single label"),
            ("a..example.com", "not a valid domain name"),
            ("-a.example.com", "not a valid domain name"),
            ("a_b.example.com", "not a valid domain name"),
            ("exa mple.com", "spaces"),
            ("example.123", "numeric"),
            ("*.example.com", "wildcard"),
            ("a.*.example.com", "first label"),
            ("*example.com", "first label"),
        ];
        for (input, expect) in cases {
            let err = Hostname::parse(input, false).expect_err(input).to_string();
            assert!(err.starts_with("hostname: "), "{input}: {err}");
            assert!(err.contains(expect), "{input}: {err}");
        }
        let too_long = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        assert!(Hostname::parse(&too_long, false).is_err());
        assert!(Hostname::parse(&format!("{}.com", "a".repeat(64)), false).is_err());
    }

    #[test]
    fn wildcards_only_when_allowed_and_only_as_the_first_label() {
        let w = Hostname::parse("*.Apps.Example.com", true).expect("allowed");
        assert_eq!(w.as_str(), "*.apps.example.com");
        assert!(w.is_wildcard());
        assert_eq!(w.challenge_name(), "_wisehosting-challenge.apps.example.com");
        assert!(Hostname::parse("*.com", true).is_err(), "a wildcard over a TLD");
        assert!(Hostname::parse("**.example.com", true).is_err());
    }

    #[test]
    fn within_checks_the_name_and_its_parents_not_lookalikes() {
        let h = Hostname::parse("shop.apps.example.com", false).expect("valid");
        assert!(h.is_within("apps.example.com"));
        assert!(h.is_within("example.com."));
        assert!(h.is_within("shop.apps.example.com"));
        assert!(!h.is_within("ps.example.com"));
        assert!(!h.is_within(""));
        assert_eq!(h.challenge_name(), "_wisehosting-challenge.shop.apps.example.com");
    }
}
