//! Admin passwords: at least 12 characters, at most 72 bytes (bcrypt reads no further, so a
//! longer one would be silently cut: it is refused instead), hashed with bcrypt at cost 12.

use rand::Rng;

/// bcrypt's cost; each step doubles the work.
pub const COST: u32 = 12;
pub const MIN_CHARS: usize = 12;
pub const MAX_BYTES: usize = 72;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("the password is {0} bytes; bcrypt reads only 72, so use at most 72 bytes")]
    TooLong(usize),
    #[error("the password is shorter than {MIN_CHARS} characters; use a longer one")]
    TooShort,
    #[error("the password holds a NUL byte; use another")]
    Nul,
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Checks the rule and hashes.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    if password.len() > MAX_BYTES {
        return Err(PasswordError::TooLong(password.len()));
    }
    if password.chars().count() < MIN_CHARS {
        return Err(PasswordError::TooShort);
    }
    if password.contains('\0') {
        return Err(PasswordError::Nul);
    }
    bcrypt::hash(password, COST).map_err(|e| PasswordError::Hash(e.to_string()))
}

/// A new random password: 24 characters from a 56-letter alphabet without look-alikes
/// (about 139 bits).
pub fn generate() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..24).map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_over_72_bytes_or_under_12_characters_are_refused_and_others_hash_at_cost_12() {
        assert_eq!(hash(&"a".repeat(73)), Err(PasswordError::TooLong(73)));
        // 72 bytes of two-byte characters is 36 characters: allowed; one more is not.
        assert!(hash(&"é".repeat(37)).is_err());
        assert_eq!(hash("short"), Err(PasswordError::TooShort));
        let hashed = hash("correct horse battery").expect("hash");
        assert!(hashed.starts_with("$2b$12$"), "{hashed}");
        assert!(bcrypt::verify("correct horse battery", &hashed).is_ok_and(|ok| ok));
        assert!(bcrypt::verify("correct horse batterY", &hashed).is_ok_and(|ok| !ok));
    }

    #[test]
    fn generated_passwords_are_long_distinct_and_pass_the_rule() {
        let (a, b) = (generate(), generate());
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
        assert!(hash(&a).is_ok());
    }
}
