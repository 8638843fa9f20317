//! Worker JWTs (SPEC §4.1): HS256 only, signed with the `wisehosting-worker-jwt-v1` purpose key,
//! with `iss` = `wisehosting`, `aud` = `wisehosting-worker`, `sub` = the worker id, `exp` and
//! `iat` all required, and no leeway. Written out by hand (a JWT is two base64url JSON objects
//! and an HMAC) so every rule is visible here: libraries accept 60 s past `exp` by default and
//! skip `aud`/`iss` unless asked (RFC 8725).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::PurposeKey;

pub const ISSUER: &str = "wisehosting";
pub const AUDIENCE: &str = "wisehosting-worker";
/// Longer tokens are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is too large")]
    TooLarge,
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not HS256")]
    Algorithm,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token lacks a required claim or has a wrong issuer, audience or subject")]
    Claims,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

impl WorkerClaims {
    /// The worker id in `sub`.
    pub fn worker_id(&self) -> Result<i64, JwtError> {
        match self.sub.parse::<i64>() {
            Ok(id) if id > 0 && id.to_string() == self.sub => Ok(id),
            _ => Err(JwtError::Claims),
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

fn mac(key: &PurposeKey) -> Hmac<Sha256> {
    match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; 32 bytes always works.
        Err(_) => <Hmac<Sha256> as Mac>::new(&Default::default()),
    }
}

/// A token for `worker_id` valid from `now` for `ttl_secs` seconds (Unix seconds).
pub fn sign_worker_token(key: &PurposeKey, worker_id: i64, now: i64, ttl_secs: i64) -> String {
    let claims = WorkerClaims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: worker_id.to_string(),
        exp: now + ttl_secs,
        iat: now,
        nbf: None,
    };
    sign_claims(key, &claims)
}

/// Signs arbitrary claims (tests forge tokens with it).
pub fn sign_claims<C: Serialize>(key: &PurposeKey, claims: &C) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let mut m = mac(key);
    m.update(header.as_bytes());
    m.update(b".");
    m.update(payload.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{header}.{payload}.{sig}")
}

/// Verifies every rule; `now` is Unix seconds.
pub fn verify_worker_token(key: &PurposeKey, token: &str, now: i64) -> Result<WorkerClaims, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed)?;
    if header.alg != "HS256" || header.crit.is_some() || header.typ.as_deref().is_some_and(|t| t != "JWT") {
        return Err(JwtError::Algorithm);
    }
    let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
    let mut m = mac(key);
    m.update(h.as_bytes());
    m.update(b".");
    m.update(p.as_bytes());
    m.verify_slice(&signature).map_err(|_| JwtError::Signature)?;
    let claims: WorkerClaims = URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Claims)?;
    if claims.iss != ISSUER || claims.aud != AUDIENCE {
        return Err(JwtError::Claims);
    }
    claims.worker_id()?;
    if now >= claims.exp {
        return Err(JwtError::Expired);
    }
    if claims.iat > now || claims.nbf.is_some_and(|nbf| nbf > now) {
        return Err(JwtError::NotYetValid);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{Keyring, Purpose, Secret};

    const NOW: i64 = 1_800_000_000;

    fn key() -> PurposeKey {
        Keyring::from_master(&Secret::new("jwt test master secret, long enough"))
            .key(Purpose::WorkerJwt)
            .clone()
    }

    fn forge(header: serde_json::Value, claims: serde_json::Value, key: &PurposeKey) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        let mut m = mac(key);
        m.update(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
    }

    fn good_claims() -> serde_json::Value {
        json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "7", "exp": NOW + 60, "iat": NOW})
    }

    #[test]
    fn a_signed_token_verifies_until_its_exp_and_not_one_second_later() {
        let token = sign_worker_token(&key(), 7, NOW, 900);
        let claims = verify_worker_token(&key(), &token, NOW + 899).expect("valid just before exp");
        assert_eq!(claims.worker_id(), Ok(7));
        assert_eq!(verify_worker_token(&key(), &token, NOW + 900), Err(JwtError::Expired));
        assert_eq!(verify_worker_token(&key(), &token, NOW + 901), Err(JwtError::Expired));
    }

    #[test]
    fn every_forged_or_incomplete_token_is_refused() {
        let k = key();
        let hs = json!({"alg": "HS256", "typ": "JWT"});
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(json!({"alg": "none"}).to_string()),
            URL_SAFE_NO_PAD.encode(good_claims().to_string())
        );
        let mut no_exp = good_claims();
        no_exp.as_object_mut().map(|o| o.remove("exp"));
        let mut no_iat = good_claims();
        no_iat.as_object_mut().map(|o| o.remove("iat"));
        let cases = [
            ("alg none", unsigned, JwtError::Algorithm),
            ("HS512", forge(json!({"alg": "HS512"}), good_claims(), &k), JwtError::Algorithm),
            ("RS256", forge(json!({"alg": "RS256"}), good_claims(), &k), JwtError::Algorithm),
            ("no exp", forge(hs.clone(), no_exp, &k), JwtError::Claims),
            ("no iat", forge(hs.clone(), no_iat, &k), JwtError::Claims),
            (
                "wrong aud",
                forge(
                    hs.clone(),
                    json!({"iss": ISSUER, "aud": "other", "sub": "7", "exp": NOW + 60, "iat": NOW}),
                    &k,
                ),
                JwtError::Claims,
            ),
            (
                "wrong iss",
                forge(
                    hs.clone(),
                    json!({"iss": "evil", "aud": AUDIENCE, "sub": "7", "exp": NOW + 60, "iat": NOW}),
                    &k,
                ),
                JwtError::Claims,
            ),
            (
                "bad sub",
                forge(
                    hs.clone(),
                    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "07", "exp": NOW + 60, "iat": NOW}),
                    &k,
                ),
                JwtError::Claims,
            ),
            (
                "future nbf",
                forge(
                    hs.clone(),
                    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "7", "exp": NOW + 60, "iat": NOW, "nbf": NOW + 1}),
                    &k,
                ),
                JwtError::NotYetValid,
            ),
            (
                "future iat",
                forge(
                    hs.clone(),
                    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "7", "exp": NOW + 60, "iat": NOW + 1}),
                    &k,
                ),
                JwtError::NotYetValid,
            ),
            ("crit", forge(json!({"alg": "HS256", "crit": ["x"]}), good_claims(), &k), JwtError::Algorithm),
            (
                "rotated secret",
                forge(
                    hs.clone(),
                    good_claims(),
                    &Keyring::from_master(&Secret::new("another master secret entirely"))
                        .key(Purpose::WorkerJwt)
                        .clone(),
                ),
                JwtError::Signature,
            ),
            ("1 MB", format!("{}.{}", "a".repeat(1_000_000), "b"), JwtError::TooLarge),
            ("two parts", "a.b".to_string(), JwtError::Malformed),
        ];
        for (name, token, expected) in cases {
            assert_eq!(verify_worker_token(&k, &token, NOW), Err(expected), "{name}");
        }
    }
}
