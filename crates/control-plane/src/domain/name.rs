//! Names of workers and zones: lowercase DNS labels, because they end up in hostnames,
//! container labels and log lines.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} {value:?} is not valid: use 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit and not ending with '-'"
)]
pub struct NameError {
    what: &'static str,
    value: String,
}

fn parse_label(what: &'static str, value: &str) -> Result<String, NameError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok { Ok(value.to_string()) } else { Err(NameError { what, value: value.chars().take(80).collect() }) }
}

macro_rules! label_type {
    ($name:ident, $what:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, NameError> {
                parse_label($what, value).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

label_type!(WorkerName, "worker name");
label_type!(Zone, "zone");

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn plain_dns_labels_are_accepted() {
        for ok in ["w1", "worker-eu-1", "a", &"x".repeat(63)] {
            assert!(WorkerName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn anything_that_could_smuggle_an_option_or_a_path_is_refused() {
        for bad in ["", "-rf", "a-", "UPPER", "a b", "a/b", "../x", "$(id)", "a;b", &"x".repeat(64), "é"] {
            let err = WorkerName::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("worker name"), "{err}");
        }
    }

    proptest! {
        #[test]
        fn a_parsed_name_only_holds_label_characters(s in "\\PC{0,70}") {
            if let Ok(name) = Zone::parse(&s) {
                prop_assert!(name.as_str().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
                prop_assert!(!name.as_str().starts_with('-'));
            }
        }
    }
}
