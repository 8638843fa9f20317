//! AES-256-GCM sealing of column values (NIST SP 800-38D).
//!
//! Stored form: `whs1.<key version>.<base64url(nonce ‖ ciphertext ‖ tag)>`. The version names
//! which key sealed the value so keys can be rotated: a [`Sealer`] holds every version it can
//! open and seals only with the active one. The associated data binds the value to its table,
//! column and row, so a ciphertext copied to another row, column or table fails to open.
//!
//! Nonces are 96 random bits. Random nonces are safe for about 2^32 seals per key, so each key
//! counts its seals and refuses to seal past [`Sealer::MAX_SEALS_PER_KEY`]: rotate before that.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::PurposeKey;
use crate::token::random_bytes;

const PREFIX: &str = "whs1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The version number of a column key, as named in the stored form.
pub type KeyVersion = u32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the sealed value is malformed (expected `whs1.<version>.<data>`)")]
    Malformed,
    #[error("the sealed value names key version {0}, which this keyring does not hold")]
    UnknownKeyVersion(KeyVersion),
    #[error("the sealed value failed authentication: wrong key, wrong row, or tampered data")]
    OpenFailed,
    #[error("key version {0} has sealed its safe maximum of values; rotate to a new key")]
    KeyExhausted(KeyVersion),
    #[error("the active key version {0} is not in the keyring")]
    NoActiveKey(KeyVersion),
}

/// Where a sealed value lives. Part of the authenticated data, never of the ciphertext.
#[derive(Debug, Clone, Copy)]
pub struct Aad<'a> {
    pub table: &'a str,
    pub column: &'a str,
    pub row: &'a str,
}

impl Aad<'_> {
    fn bytes(&self) -> Vec<u8> {
        // Lengths first, so `("a|b", "c")` and `("a", "b|c")` can never collide.
        let mut out = Vec::with_capacity(64);
        for part in [self.table, self.column, self.row] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

struct VersionedKey {
    cipher: Aes256Gcm,
    seals: AtomicU64,
}

/// Seals with the active key version; opens with any version it holds.
pub struct Sealer {
    active: KeyVersion,
    keys: BTreeMap<KeyVersion, VersionedKey>,
    limit: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("active", &self.active)
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Sealer {
    /// Random 96-bit nonces stay safe (collision chance below 2^-32) up to 2^32 seals per key.
    pub const MAX_SEALS_PER_KEY: u64 = 1 << 32;

    /// A sealer whose active version is `active`; `keys` lists every version it can open.
    pub fn new(
        active: KeyVersion,
        keys: impl IntoIterator<Item = (KeyVersion, PurposeKey)>,
    ) -> Result<Self, SealError> {
        let keys: BTreeMap<_, _> = keys
            .into_iter()
            .map(|(version, key)| {
                let cipher = Aes256Gcm::new(key.as_bytes().into());
                (version, VersionedKey { cipher, seals: AtomicU64::new(0) })
            })
            .collect();
        if !keys.contains_key(&active) {
            return Err(SealError::NoActiveKey(active));
        }
        Ok(Self { active, keys, limit: Self::MAX_SEALS_PER_KEY })
    }

    /// Raises a key's counter to what was persisted (never lowers it), so the limit holds
    /// across restarts.
    pub fn resume_seal_count(&self, version: KeyVersion, count: u64) {
        if let Some(key) = self.keys.get(&version) {
            key.seals.fetch_max(count, Ordering::Relaxed);
        }
    }

    /// Lowers the seal limit (tests use it to reach exhaustion quickly).
    pub fn with_limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }

    pub fn active_version(&self) -> KeyVersion {
        self.active
    }

    /// How many values a key version has sealed in this process (plus its persisted start).
    pub fn seal_count(&self, version: KeyVersion) -> u64 {
        self.keys.get(&version).map_or(0, |k| k.seals.load(Ordering::Relaxed))
    }

    pub fn seal(&self, plaintext: &[u8], aad: Aad<'_>) -> Result<String, SealError> {
        let key = self.keys.get(&self.active).ok_or(SealError::NoActiveKey(self.active))?;
        let previous = key.seals.fetch_add(1, Ordering::Relaxed);
        if previous >= self.limit {
            key.seals.fetch_sub(1, Ordering::Relaxed);
            return Err(SealError::KeyExhausted(self.active));
        }
        let nonce_bytes: [u8; NONCE_LEN] = random_bytes();
        let nonce = Nonce::from_slice(&nonce_bytes);
        let aad = aad.bytes();
        let ciphertext = key
            .cipher
            .encrypt(nonce, Payload { msg: plaintext, aad: &aad })
            .map_err(|_| SealError::OpenFailed)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce_bytes);
        blob.extend_from_slice(&ciphertext);
        Ok(format!("{PREFIX}.{}.{}", self.active, URL_SAFE_NO_PAD.encode(blob)))
    }

    pub fn open(&self, sealed: &str, aad: Aad<'_>) -> Result<Vec<u8>, SealError> {
        let (version, blob) = parse_stored(sealed)?;
        let key = self.keys.get(&version).ok_or(SealError::UnknownKeyVersion(version))?;
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let aad = aad.bytes();
        key.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| SealError::OpenFailed)
    }

    /// The key version a stored value names, without opening it.
    pub fn version_of(sealed: &str) -> Result<KeyVersion, SealError> {
        parse_stored(sealed).map(|(version, _)| version)
    }
}

fn parse_stored(sealed: &str) -> Result<(KeyVersion, Vec<u8>), SealError> {
    let mut parts = sealed.splitn(3, '.');
    let (Some(PREFIX), Some(version), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(SealError::Malformed);
    };
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SealError::Malformed);
    }
    let version: KeyVersion = version.parse().map_err(|_| SealError::Malformed)?;
    let blob = URL_SAFE_NO_PAD.decode(data).map_err(|_| SealError::Malformed)?;
    if blob.len() < NONCE_LEN + TAG_LEN {
        return Err(SealError::Malformed);
    }
    Ok((version, blob))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::{Keyring, Purpose, Secret};

    fn key(master: &str) -> PurposeKey {
        Keyring::from_master(&Secret::new(master)).key(Purpose::ColumnEncryption).clone()
    }

    fn sealer() -> Sealer {
        Sealer::new(1, [(1, key("master one"))]).unwrap_or_else(|e| unreachable!("{e}"))
    }

    const AAD: Aad<'static> = Aad { table: "env_vars", column: "value_sealed", row: "42" };

    #[test]
    fn a_sealed_value_opens_to_the_plaintext() {
        let s = sealer();
        let sealed = s.seal(b"postgres://secret", AAD);
        let sealed = sealed.as_deref().unwrap_or_default();
        assert!(sealed.starts_with("whs1.1."), "{sealed}");
        assert!(!sealed.contains("secret"));
        assert_eq!(s.open(sealed, AAD).as_deref(), Ok(&b"postgres://secret"[..]));
    }

    #[test]
    fn one_flipped_bit_anywhere_in_the_data_fails_to_open() {
        let s = sealer();
        let sealed = s.seal(b"value", AAD).unwrap_or_default();
        let (head, data) = sealed.rsplit_once('.').unwrap_or_default();
        let blob = URL_SAFE_NO_PAD.decode(data).unwrap_or_default();
        for byte in 0..blob.len() {
            for bit in 0..8 {
                let mut tampered = blob.clone();
                tampered[byte] ^= 1 << bit;
                let forged = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&tampered));
                assert_eq!(s.open(&forged, AAD), Err(SealError::OpenFailed), "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn a_ciphertext_moved_to_another_row_column_or_table_fails() {
        let s = sealer();
        let sealed = s.seal(b"value", AAD).unwrap_or_default();
        for other in [Aad { row: "43", ..AAD }, Aad { column: "name", ..AAD }, Aad { table: "apps", ..AAD }] {
            assert_eq!(s.open(&sealed, other), Err(SealError::OpenFailed));
        }
    }

    #[test]
    fn a_value_sealed_under_another_purpose_key_fails() {
        let jwt_key = Keyring::from_master(&Secret::new("master one")).key(Purpose::WorkerJwt).clone();
        let wrong = Sealer::new(1, [(1, jwt_key)]).unwrap_or_else(|e| unreachable!("{e}"));
        let sealed = sealer().seal(b"value", AAD).unwrap_or_default();
        assert_eq!(wrong.open(&sealed, AAD), Err(SealError::OpenFailed));
    }

    #[test]
    fn an_unknown_key_version_fails_closed_with_a_typed_error() {
        let sealed = sealer().seal(b"value", AAD).unwrap_or_default();
        let renamed = sealed.replacen("whs1.1.", "whs1.7.", 1);
        assert_eq!(sealer().open(&renamed, AAD), Err(SealError::UnknownKeyVersion(7)));
    }

    #[test]
    fn rotation_seals_with_the_new_key_and_still_opens_the_old() {
        let old = sealer().seal(b"old", AAD).unwrap_or_default();
        let rotated = Sealer::new(2, [(1, key("master one")), (2, key("master two"))])
            .unwrap_or_else(|e| unreachable!("{e}"));
        let new = rotated.seal(b"new", AAD).unwrap_or_default();
        assert_eq!(Sealer::version_of(&new), Ok(2));
        assert_eq!(rotated.open(&old, AAD).as_deref(), Ok(&b"old"[..]));
        assert_eq!(rotated.open(&new, AAD).as_deref(), Ok(&b"new"[..]));
    }

    #[test]
    fn malformed_stored_forms_are_refused() {
        let s = sealer();
        for bad in
            ["", "whs1", "whs1.1", "whs2.1.AAAA", "whs1.x.AAAA", "whs1.1.!!", "whs1.1.AAAA", "whs1.-1.AAAA"]
        {
            assert_eq!(s.open(bad, AAD), Err(SealError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn sealing_stops_at_the_key_limit_and_counts_every_use() {
        let s = sealer().with_limit(3);
        for _ in 0..3 {
            assert!(s.seal(b"v", AAD).is_ok());
        }
        assert_eq!(s.seal(b"v", AAD), Err(SealError::KeyExhausted(1)));
        assert_eq!(s.seal_count(1), 3);
        let resumed = sealer().with_limit(3);
        resumed.resume_seal_count(1, 3);
        assert_eq!(resumed.seal(b"v", AAD), Err(SealError::KeyExhausted(1)));
    }

    #[test]
    fn a_million_seals_repeat_no_nonce() {
        let s = sealer();
        let mut seen = HashSet::with_capacity(1_000_000);
        for _ in 0..1_000_000 {
            let sealed = s.seal(b"", AAD).unwrap_or_default();
            let data = sealed.rsplit_once('.').map(|(_, d)| d).unwrap_or_default();
            let blob = URL_SAFE_NO_PAD.decode(data).unwrap_or_default();
            let nonce: [u8; NONCE_LEN] = blob[..NONCE_LEN].try_into().unwrap_or_default();
            assert!(seen.insert(nonce), "nonce repeated");
        }
        assert_eq!(s.seal_count(1), 1_000_000);
    }
}
