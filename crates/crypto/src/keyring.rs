//! Purpose keys derived from the one master secret with HKDF-SHA256 (RFC 5869).
//!
//! Each purpose has its own `info` label, so the key of one purpose (say, the worker JWT key)
//! reveals nothing of another (the column-encryption key). Labels end in a version so a purpose
//! can move to a new derivation without touching the others.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroize;

use crate::Secret;

/// What a derived key is for. The label is part of the derivation and never changes once used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// AES-256-GCM column encryption (git tokens, env values, TOTP secrets, job payloads).
    ColumnEncryption,
    /// HS256 signing of worker JWTs.
    WorkerJwt,
    /// The OAuth `state` parameter.
    OauthState,
}

impl Purpose {
    pub const ALL: [Purpose; 3] = [Purpose::ColumnEncryption, Purpose::WorkerJwt, Purpose::OauthState];

    pub fn label(self) -> &'static str {
        match self {
            Purpose::ColumnEncryption => "wisehosting-aes-v1",
            Purpose::WorkerJwt => "wisehosting-worker-jwt-v1",
            Purpose::OauthState => "wisehosting-oauth-state-v1",
        }
    }
}

/// A 32-byte key for one purpose. Wiped on drop; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PurposeKey([u8; 32]);

impl PurposeKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for PurposeKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for PurposeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PurposeKey([redacted])")
    }
}

/// HKDF-SHA256 extract-and-expand. `salt: None` means the RFC's default, a string of zeros.
///
/// Fails only when `len` exceeds 255 * 32 bytes, the RFC's limit.
pub fn hkdf_sha256(ikm: &[u8], salt: Option<&[u8]>, info: &[u8], len: usize) -> Option<Vec<u8>> {
    let hk = Hkdf::<Sha256>::new(salt, ikm);
    let mut out = vec![0u8; len];
    hk.expand(info, &mut out).ok()?;
    Some(out)
}

fn derive32(ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(None, ikm);
    let mut out = [0u8; 32];
    // Expand errs only past 255 * 32 bytes of output; 32 bytes can never fail.
    let _ = hk.expand(info, &mut out);
    out
}

/// The keys of every purpose, derived once from the master secret.
#[derive(Clone)]
pub struct Keyring {
    column: PurposeKey,
    worker_jwt: PurposeKey,
    oauth_state: PurposeKey,
}

impl Keyring {
    pub fn from_master(master: &Secret) -> Self {
        let ikm = master.expose().as_bytes();
        Self {
            column: PurposeKey(derive32(ikm, Purpose::ColumnEncryption.label().as_bytes())),
            worker_jwt: PurposeKey(derive32(ikm, Purpose::WorkerJwt.label().as_bytes())),
            oauth_state: PurposeKey(derive32(ikm, Purpose::OauthState.label().as_bytes())),
        }
    }

    pub fn key(&self, purpose: Purpose) -> &PurposeKey {
        match purpose {
            Purpose::ColumnEncryption => &self.column,
            Purpose::WorkerJwt => &self.worker_jwt,
            Purpose::OauthState => &self.oauth_state,
        }
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap_or_default()
    }

    /// RFC 5869 appendix A, test cases 1-3 (SHA-256).
    #[test]
    fn hkdf_matches_rfc5869_appendix_a_vectors() {
        let cases = [
            (
                "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
                Some("000102030405060708090a0b0c"),
                "f0f1f2f3f4f5f6f7f8f9",
                42,
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
            ),
            (
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f",
                Some(
                    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
                ),
                "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
                82,
                "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
            ),
            (
                "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
                None,
                "",
                42,
                "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
            ),
        ];
        for (ikm, salt, info, len, okm) in cases {
            let salt = salt.map(unhex);
            let got = hkdf_sha256(&unhex(ikm), salt.as_deref(), &unhex(info), len);
            assert_eq!(got.map(hex::encode).as_deref(), Some(okm));
        }
    }

    #[test]
    fn every_purpose_gets_a_different_key() {
        let ring = Keyring::from_master(&Secret::new("a master secret that is long enough!!"));
        for a in Purpose::ALL {
            for b in Purpose::ALL {
                if a != b {
                    assert_ne!(ring.key(a), ring.key(b), "{a:?} vs {b:?}");
                }
            }
        }
    }

    #[test]
    fn purpose_keys_are_hkdf_of_the_master_with_the_spec_labels() {
        let master = "spec-master-secret";
        let ring = Keyring::from_master(&Secret::new(master));
        let expected = hkdf_sha256(master.as_bytes(), None, b"wisehosting-aes-v1", 32);
        assert_eq!(expected.as_deref(), Some(&ring.key(Purpose::ColumnEncryption).as_bytes()[..]));
        let expected = hkdf_sha256(master.as_bytes(), None, b"wisehosting-worker-jwt-v1", 32);
        assert_eq!(expected.as_deref(), Some(&ring.key(Purpose::WorkerJwt).as_bytes()[..]));
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let ring = Keyring::from_master(&Secret::new("x"));
        assert_eq!(format!("{ring:?}"), "Keyring([redacted])");
        assert_eq!(format!("{:?}", ring.key(Purpose::WorkerJwt)), "PurposeKey([redacted])");
    }
}
