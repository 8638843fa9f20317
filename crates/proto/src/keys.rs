//! Envelope keys (SPEC §4.2).
//!
//! `mac_key` = HKDF-SHA256(ikm = the raw API key's text, no salt, info =
//! `wisehosting-envelope-v1`), 32 bytes. Per connection: `k_c2s` = HMAC-SHA256(mac_key,
//! "c2s|" + connection id) signs worker → CP frames, `k_s2c` = HMAC-SHA256(mac_key, "s2c|" +
//! connection id) signs CP → worker frames. HKDF is RustCrypto's `hkdf` (RFC 5869).

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so new_from_slice cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The envelope MAC key of a worker, derived from its raw API key.
pub fn mac_key_from_api_key(raw_api_key: &str) -> [u8; 32] {
    hkdf32(raw_api_key.as_bytes(), b"wisehosting-envelope-v1")
}

/// HKDF-SHA256 without salt (RFC 5869: 32 zero bytes), 32 bytes of output.
fn hkdf32(ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit of 255 blocks, so expand cannot fail.
    let _ = Hkdf::<Sha256>::new(None, ikm).expand(info, &mut okm);
    okm
}

/// The key that signs one direction of one connection.
#[derive(Clone, PartialEq, Eq)]
pub struct DirectionKey(pub(crate) [u8; 32]);

impl DirectionKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// HMAC-SHA256 of `parts` under this key.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        hmac(&self.0, parts)
    }

    pub(crate) fn verifier(&self) -> HmacSha256 {
        match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            // Unreachable: HMAC takes any key length. A zero key would only fail verification.
            Err(_) => <HmacSha256 as Mac>::new(&Default::default()),
        }
    }
}

impl std::fmt::Debug for DirectionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectionKey([redacted])")
    }
}

/// Both directions' keys of one connection.
#[derive(Debug, Clone)]
pub struct LinkKeys {
    /// Signs worker → control plane frames.
    pub c2s: DirectionKey,
    /// Signs control plane → worker frames.
    pub s2c: DirectionKey,
}

impl LinkKeys {
    pub fn derive(mac_key: &[u8; 32], connection_id: &str) -> Self {
        Self {
            c2s: DirectionKey(hmac(mac_key, &[b"c2s|", connection_id.as_bytes()])),
            s2c: DirectionKey(hmac(mac_key, &[b"s2c|", connection_id.as_bytes()])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hkdf_matches_rfc5869_test_case_3_for_32_bytes() {
        // RFC 5869 A.3: IKM = 22 x 0x0b, salt and info empty; the first 32 bytes of the OKM.
        let okm = hkdf32(&[0x0bu8; 22], b"");
        assert_eq!(hex::encode(okm), "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d");
    }

    #[test]
    fn the_envelope_key_is_pinned_for_a_known_api_key() {
        // Computed independently (Python's hmac, RFC 5869 by hand); a change here breaks every
        // deployed worker.
        let key = mac_key_from_api_key("whk_test");
        assert_eq!(hex::encode(key), "f2295b048e68439edc11565c2bf5ef664f40bb76e88c4e3137a07ba10acf8fb6");
    }

    #[test]
    fn directions_and_connections_get_different_keys() {
        let mac = mac_key_from_api_key("whk_test");
        let a = LinkKeys::derive(&mac, "00112233445566778899aabbccddeeff");
        let b = LinkKeys::derive(&mac, "ffeeddccbbaa99887766554433221100");
        assert_ne!(a.c2s, a.s2c);
        assert_ne!(a.c2s, b.c2s);
        assert_ne!(a.s2c, b.s2c);
    }
}
