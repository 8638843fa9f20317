//! Cryptography for WiseHosting, with no IO.
//!
//! - [`secret`]: [`Secret`], a string that never prints (Debug, Display and Serialize all show
//!   `[redacted]`) and is wiped from memory on drop.
//! - [`keyring`]: HKDF-SHA256 (RFC 5869) purpose keys derived from the one master secret, so a
//!   leaked key of one purpose reveals nothing of another.
//! - [`seal`]: AES-256-GCM sealing of column values with a fresh random nonce, a stored form that
//!   names its key version, associated data that binds a value to its table, column and row,
//!   and a per-key use counter that refuses to go past the safe number of random nonces.
//! - [`jwt`]: worker JWTs, HS256 only, every claim required, no leeway.
//! - [`token`]: random tokens, sha256 hex digests and constant-time comparison.
//! - [`wireguard`]: WireGuard key pairs (X25519, as `wg genkey` and `wg pubkey` make them).

pub mod jwt;
pub mod keyring;
pub mod seal;
pub mod secret;
pub mod token;
pub mod wireguard;

pub use keyring::{Keyring, Purpose, PurposeKey, hkdf_sha256};
pub use seal::{Aad, KeyVersion, SealError, Sealer};
pub use secret::Secret;
pub use token::{constant_time_eq, random_bytes, random_token, sha256_hex};
