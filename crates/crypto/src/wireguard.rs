//! WireGuard keys (SPEC §11): X25519 key pairs in WireGuard's base64 form, as `wg genkey` and
//! `wg pubkey` make them. A private key is made on the host that uses it and never leaves it;
//! only public keys cross the link. No IO here: the worker and the control plane keep the
//! private key in a file of their own.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use curve25519_dalek::montgomery::MontgomeryPoint;
use zeroize::Zeroize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WgKeyError {
    #[error(
        "{what} is not a WireGuard key: give the 44-character base64 of 32 bytes that `wg {tool}` prints"
    )]
    Malformed { what: &'static str, tool: &'static str },
}

/// A private key; never printed, wiped on drop.
pub struct WgPrivateKey([u8; 32]);

impl WgPrivateKey {
    /// A fresh key, clamped as `wg genkey` clamps it.
    pub fn generate() -> WgPrivateKey {
        let mut bytes = crate::random_bytes::<32>();
        bytes[0] &= 248;
        bytes[31] &= 127;
        bytes[31] |= 64;
        WgPrivateKey(bytes)
    }

    /// A key in WireGuard's base64 form (a file `wg genkey` wrote, trimmed).
    pub fn from_base64(text: &str) -> Result<WgPrivateKey, WgKeyError> {
        decode(text)
            .map(WgPrivateKey)
            .ok_or(WgKeyError::Malformed { what: "the private key", tool: "genkey" })
    }

    /// The base64 form, for the key's own file; never log it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn public_key(&self) -> WgPublicKey {
        WgPublicKey(MontgomeryPoint::mul_base_clamped(self.0).to_bytes())
    }
}

impl Drop for WgPrivateKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for WgPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WgPrivateKey([redacted])")
    }
}

/// A public key; shown in its base64 form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WgPublicKey([u8; 32]);

impl WgPublicKey {
    pub fn parse(text: &str) -> Result<WgPublicKey, WgKeyError> {
        decode(text).map(WgPublicKey).ok_or(WgKeyError::Malformed { what: "wg_public_key", tool: "pubkey" })
    }
}

impl fmt::Display for WgPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

fn decode(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 44 {
        return None;
    }
    STANDARD.decode(text).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_key_is_rfc_7748s_x25519_of_the_base_point() {
        // RFC 7748 §6.1: Alice's private and public keys.
        let private =
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a").expect("hex");
        let key = WgPrivateKey::from_base64(&STANDARD.encode(&private)).expect("key");
        let public =
            hex::decode("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a").expect("hex");
        assert_eq!(key.public_key().to_string(), STANDARD.encode(public));
    }

    #[test]
    fn keys_round_trip_and_malformed_ones_are_refused_without_echoing_them() {
        let key = WgPrivateKey::generate();
        let again = WgPrivateKey::from_base64(&key.to_base64()).expect("round trip");
        assert_eq!(again.public_key(), key.public_key());
        assert_eq!(WgPublicKey::parse(&key.public_key().to_string()), Ok(key.public_key()));
        assert!(!format!("{key:?}").contains(&key.to_base64()));
        for bad in ["", "abc", &"A".repeat(44), &STANDARD.encode([1u8; 31])] {
            let err = WgPublicKey::parse(bad).expect_err(bad).to_string();
            assert!(err.contains("wg_public_key"), "{err}");
            assert!(bad.is_empty() || !err.contains(bad), "the input is not echoed: {err}");
        }
    }
}
