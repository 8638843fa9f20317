//! Random tokens, digests and constant-time comparison.

use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

/// A fresh 256-bit token as lowercase hex, with a prefix naming what it is (`whk_` for worker
/// keys, `whs_` for sessions) so a leaked token is recognisable in a scan.
pub fn random_token(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(random_bytes::<32>()))
}

/// Lowercase hex SHA-256, the stored form of tokens that only need checking.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_256_bit_hex_and_unique() {
        let a = random_token("whk_");
        let b = random_token("whk_");
        assert_eq!(a.len(), 4 + 64);
        assert!(a.starts_with("whk_"));
        assert_ne!(a, b);
    }

    #[test]
    fn sha256_hex_matches_the_known_digest_of_abc() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn constant_time_eq_needs_every_byte_and_the_length() {
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"tokem"));
        assert!(!constant_time_eq(b"token", b"toke"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
