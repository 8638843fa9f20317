//! [`Secret`]: a string that never prints.
//!
//! Secrets (the master secret, tokens, passwords) travel through typed config. Their `Debug`,
//! `Display` and `Serialize` all produce `[redacted]`, so a config dump, a log line or an error
//! message cannot leak them by accident; the only way to the text is [`Secret::expose`].

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroize;

/// What every secret prints as.
pub const REDACTED: &str = "[redacted]";

/// A secret string. Empty means "not set" wherever the key is optional.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret's text. Call it only where the value is used, never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.is_empty() { serializer.serialize_str("") } else { serializer.serialize_str(REDACTED) }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

/// Accepts any scalar: a secret given through an environment variable may be all digits, which
/// YAML reads as a number.
struct SecretVisitor;

impl Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a secret string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Secret, E> {
        Ok(Secret::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<Secret, E> {
        Ok(Secret::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_display_and_serialize_never_show_the_value() {
        let s = Secret::new("hunter2-canary");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(serde_json::to_string(&s).ok().as_deref(), Some("\"[redacted]\""));
        assert_eq!(s.expose(), "hunter2-canary");
    }

    #[test]
    fn an_empty_secret_serializes_as_empty_so_unset_is_visible() {
        assert_eq!(serde_json::to_string(&Secret::default()).ok().as_deref(), Some("\"\""));
    }

    #[test]
    fn a_numeric_scalar_deserializes_as_its_text() {
        let s: Option<Secret> = serde_json::from_str("12345").ok();
        assert_eq!(s.as_ref().map(Secret::expose), Some("12345"));
    }
}
