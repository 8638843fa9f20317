//! Push webhooks from git providers (SPEC §14.6): which provider, whether a delivery is signed
//! with the app's secret, its delivery id, and what it says — a push of one commit to one
//! branch, or something to ignore (and why). Pure: no IO, so every provider's shapes are
//! tested here with their real header names and payloads.
//!
//! | provider  | event header                 | signature                                   | delivery id           |
//! |-----------|------------------------------|---------------------------------------------|-----------------------|
//! | github    | `X-GitHub-Event: push`       | `X-Hub-Signature-256: sha256=<hex HMAC>`    | `X-GitHub-Delivery`   |
//! | codeberg  | `X-Gitea-Event: push`        | `X-Gitea-Signature: <hex HMAC>`             | `X-Gitea-Delivery`    |
//! | gitlab    | `X-Gitlab-Event: Push Hook`  | `X-Gitlab-Token: <secret>`                  | `X-Gitlab-Event-UUID` |
//! | bitbucket | `X-Event-Key: repo:push`     | `X-Hub-Signature: sha256=<hex HMAC>`        | `X-Request-UUID`      |
//!
//! HMACs are SHA-256 over the raw body; every comparison is constant-time.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use wisehosting_crypto::constant_time_eq;

use crate::domain::{Branch, CommitSha};

pub use wisehosting_proto::job::GitProvider as Provider;

/// The header naming a delivery's event.
fn event_header(provider: Provider) -> &'static str {
    match provider {
        Provider::Github => "x-github-event",
        Provider::Gitlab => "x-gitlab-event",
        Provider::Bitbucket => "x-event-key",
        Provider::Codeberg => "x-gitea-event",
    }
}

/// The event of a push.
fn push_event(provider: Provider) -> &'static str {
    match provider {
        Provider::Github | Provider::Codeberg => "push",
        Provider::Gitlab => "Push Hook",
        Provider::Bitbucket => "repo:push",
    }
}

/// The header naming a delivery's id.
fn delivery_header(provider: Provider) -> &'static str {
    match provider {
        Provider::Github => "x-github-delivery",
        Provider::Gitlab => "x-gitlab-event-uuid",
        Provider::Bitbucket => "x-request-uuid",
        Provider::Codeberg => "x-gitea-delivery",
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The event the delivery names (at most 100 characters), or `""`.
pub fn event(provider: Provider, headers: &HeaderMap) -> String {
    header(headers, event_header(provider)).unwrap_or_default().chars().take(100).collect()
}

/// The provider's id of the delivery, when it sent a usable one.
pub fn delivery_id(provider: Provider, headers: &HeaderMap) -> Option<String> {
    header(headers, delivery_header(provider))
        .filter(|id| !id.is_empty() && id.len() <= 100 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
}

/// Why a delivery is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unverified {
    #[error("no signature header ({0})")]
    Missing(&'static str),
    #[error("the signature does not match the app's webhook secret")]
    Mismatch,
}

/// Checks the delivery against the app's secret, the provider's way.
pub fn verify(provider: Provider, headers: &HeaderMap, body: &[u8], secret: &str) -> Result<(), Unverified> {
    let (name, prefix) = match provider {
        Provider::Github => ("x-hub-signature-256", "sha256="),
        Provider::Bitbucket => ("x-hub-signature", "sha256="),
        Provider::Codeberg => ("x-gitea-signature", ""),
        Provider::Gitlab => {
            let token = header(headers, "x-gitlab-token").ok_or(Unverified::Missing("X-Gitlab-Token"))?;
            return if constant_time_eq(token.as_bytes(), secret.as_bytes()) {
                Ok(())
            } else {
                Err(Unverified::Mismatch)
            };
        }
    };
    let given = header(headers, name).ok_or(Unverified::Missing(match provider {
        Provider::Github => "X-Hub-Signature-256",
        Provider::Bitbucket => "X-Hub-Signature",
        _ => "X-Gitea-Signature",
    }))?;
    let given = given.strip_prefix(prefix).filter(|g| !g.is_empty()).ok_or(Unverified::Mismatch)?;
    let expected = sign(secret, body);
    if !expected.is_empty() && constant_time_eq(given.to_ascii_lowercase().as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(Unverified::Mismatch)
    }
}

/// Lowercase hex HMAC-SHA256 of `body` under `secret`, as the providers send it.
pub fn sign(secret: &str, body: &[u8]) -> String {
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length; were it ever refused, nothing would match.
        Err(_) => String::new(),
    }
}

/// What a verified delivery says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// A push whose newest commit on `branch` is `commit`.
    Push { branch: Branch, commit: CommitSha },
    /// Nothing to deploy, and why (`ping`, `a tag`, `a deleted branch`, …).
    Ignored(String),
}

/// Reads a verified delivery's event and body.
pub fn read(provider: Provider, event: &str, body: &[u8]) -> Said {
    if event != push_event(provider) {
        let shown = if event.is_empty() { "no event header".to_string() } else { event.to_string() };
        return Said::Ignored(format!("not a push event ({shown})"));
    }
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return Said::Ignored("the body is not JSON".into());
    };
    let (reference, after) = match provider {
        Provider::Bitbucket => {
            // The newest change whose new side is a branch.
            let change =
                json["push"]["changes"].as_array().and_then(|c| c.last()).cloned().unwrap_or_default();
            let new = &change["new"];
            if new.is_null() {
                return Said::Ignored("a deleted branch".into());
            }
            if new["type"] != "branch" {
                return Said::Ignored(format!(
                    "a push to a {}, not a branch",
                    new["type"].as_str().unwrap_or("ref")
                ));
            }
            (
                format!("refs/heads/{}", new["name"].as_str().unwrap_or_default()),
                new["target"]["hash"].as_str().unwrap_or_default().to_string(),
            )
        }
        _ => (
            json["ref"].as_str().unwrap_or_default().to_string(),
            json["after"].as_str().unwrap_or_default().to_string(),
        ),
    };
    let Some(branch) = reference.strip_prefix("refs/heads/") else {
        return Said::Ignored(if reference.starts_with("refs/tags/") {
            "a tag".into()
        } else {
            format!("not a branch ({})", reference.chars().take(100).collect::<String>())
        });
    };
    if !after.is_empty() && after.bytes().all(|b| b == b'0') {
        return Said::Ignored("a deleted branch".into());
    }
    match (Branch::parse(branch), CommitSha::parse(&after)) {
        (Ok(branch), Ok(commit)) => Said::Push { branch, commit },
        (Err(_), _) => Said::Ignored("the branch name is not one the platform accepts".into()),
        (_, Err(_)) => Said::Ignored("the push names no commit".into()),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;

    const SECRET: &str = "whsec-test-0123456789";
    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("value"));
        }
        map
    }

    #[test]
    fn each_provider_is_verified_its_own_way_and_nothing_else_passes() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let mac = sign(SECRET, body);
        let good = [
            (Provider::Github, headers(&[("x-hub-signature-256", &format!("sha256={mac}"))])),
            (Provider::Bitbucket, headers(&[("x-hub-signature", &format!("sha256={mac}"))])),
            (Provider::Codeberg, headers(&[("x-gitea-signature", &mac)])),
            (Provider::Gitlab, headers(&[("x-gitlab-token", SECRET)])),
        ];
        for (provider, h) in &good {
            assert_eq!(verify(*provider, h, body, SECRET), Ok(()), "{provider:?}");
            assert_eq!(
                verify(*provider, h, b"{}", SECRET).is_ok(),
                *provider == Provider::Gitlab,
                "{provider:?} body"
            );
            assert_eq!(
                verify(*provider, h, body, "another secret"),
                Err(Unverified::Mismatch),
                "{provider:?}"
            );
            assert!(matches!(
                verify(*provider, &HeaderMap::new(), body, SECRET),
                Err(Unverified::Missing(_))
            ));
        }
        // The GitHub header without its prefix, a prefix alone, another provider's header.
        let bare = headers(&[("x-hub-signature-256", &mac)]);
        assert_eq!(verify(Provider::Github, &bare, body, SECRET), Err(Unverified::Mismatch));
        let prefix = headers(&[("x-hub-signature-256", "sha256=")]);
        assert_eq!(verify(Provider::Github, &prefix, body, SECRET), Err(Unverified::Mismatch));
        let gitea = headers(&[("x-gitea-signature", &mac)]);
        assert!(verify(Provider::Github, &gitea, body, SECRET).is_err());
    }

    #[test]
    fn pushes_name_their_branch_and_commit_and_everything_else_says_why_it_is_ignored() {
        let push =
            |r: &str, after: &str| serde_json::to_vec(&json!({ "ref": r, "after": after })).expect("json");
        let main = Said::Push {
            branch: Branch::parse("main").expect("b"),
            commit: CommitSha::parse(SHA).expect("c"),
        };
        assert_eq!(read(Provider::Github, "push", &push("refs/heads/main", SHA)), main);
        assert_eq!(read(Provider::Codeberg, "push", &push("refs/heads/main", SHA)), main);
        assert_eq!(read(Provider::Gitlab, "Push Hook", &push("refs/heads/main", SHA)), main);
        let bitbucket = json!({"push": {"changes": [{"new": {"type": "branch", "name": "main", "target": {"hash": SHA}}}]}});
        assert_eq!(
            read(Provider::Bitbucket, "repo:push", &serde_json::to_vec(&bitbucket).expect("json")),
            main
        );

        let ignored = |said: Said| match said {
            Said::Ignored(why) => why,
            other => panic!("not ignored: {other:?}"),
        };
        assert!(ignored(read(Provider::Github, "ping", b"{}")).contains("not a push event (ping)"));
        assert!(ignored(read(Provider::Gitlab, "Tag Push Hook", b"{}")).contains("not a push event"));
        assert_eq!(ignored(read(Provider::Github, "push", &push("refs/tags/v1", SHA))), "a tag");
        assert_eq!(
            ignored(read(Provider::Github, "push", &push("refs/heads/main", &"0".repeat(40)))),
            "a deleted branch"
        );
        assert_eq!(ignored(read(Provider::Github, "push", b"not json")), "the body is not JSON");
        assert_eq!(
            ignored(read(Provider::Github, "push", &push("refs/heads/main", "HEAD~1"))),
            "the push names no commit"
        );
        let deleted =
            json!({"push": {"changes": [{"new": null, "old": {"type": "branch", "name": "main"}}]}});
        assert_eq!(
            ignored(read(Provider::Bitbucket, "repo:push", &serde_json::to_vec(&deleted).expect("json"))),
            "a deleted branch"
        );
    }

    #[test]
    fn delivery_ids_come_from_each_providers_header_and_odd_ones_are_dropped() {
        let h = headers(&[
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("x-request-uuid", "bb-1"),
        ]);
        assert_eq!(
            delivery_id(Provider::Github, &h).as_deref(),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
        );
        assert_eq!(delivery_id(Provider::Bitbucket, &h).as_deref(), Some("bb-1"));
        assert_eq!(delivery_id(Provider::Gitlab, &h), None);
        let long = headers(&[("x-gitea-delivery", &"x".repeat(101))]);
        assert_eq!(delivery_id(Provider::Codeberg, &long), None);
    }
}
