//! Time-based one-time passwords (RFC 6238 through `totp-rs`: SHA-1, 6 digits, 30 s steps, one
//! step either side), their QR code as inline SVG, and recovery codes.
//!
//! Which step a code matched is returned so the caller can record it: a step is accepted once
//! (the database keeps the last used one; see `store::totp::use_step`).

use totp_rs::{Algorithm, Totp};

/// The issuer authenticator apps show next to the account.
pub const ISSUER: &str = "WiseHosting";
/// Secret length: 160 bits, as RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;
/// Wrong codes (TOTP or recovery) one user may send per minute; past them every try is
/// refused until the minute ends (SPEC §8, §14.1).
pub const TRIES_PER_MINUTE: u32 = 5;
/// Recovery codes handed out when 2FA is turned on.
pub const RECOVERY_CODES: usize = 10;

/// The RFC 6238 generator over `secret` (`digits` is 6 except in the RFC's test vectors).
fn generator(secret: &[u8], digits: u8, account: &str) -> Totp {
    totp_rs::Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(digits)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret.to_vec().into_boxed_slice())
        .with_issuer(Some(ISSUER))
        .with_account_name(account)
        .build_noncompliant()
}

/// A fresh random secret.
pub fn new_secret() -> [u8; SECRET_BYTES] {
    wisehosting_crypto::random_bytes::<SECRET_BYTES>()
}

/// The secret as authenticator apps take it when typed: base32 without padding.
pub fn secret_base32(secret: &[u8]) -> String {
    totp_rs::Secret::new(secret.to_vec().into_boxed_slice()).to_base32()
}

/// The `otpauth://totp/…` URI the QR code holds.
pub fn otpauth_uri(secret: &[u8], account: &str) -> String {
    generator(secret, 6, account).to_url().unwrap_or_default()
}

/// The step (`unix time / 30`) whose code `code` is, within one step of `now`; `None` when
/// the code matches none of them or is not six digits.
pub fn matching_step(secret: &[u8], code: &str, now_unix: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    generator(secret, 6, "").check(code, now_unix)
}

/// The current Unix time in seconds.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Ten fresh recovery codes, `xxxxx-xxxxx` in lowercase base32 (50 bits each).
pub fn new_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let text = secret_base32(&wisehosting_crypto::random_bytes::<7>()).to_ascii_lowercase();
            format!("{}-{}", &text[..5], &text[5..10])
        })
        .collect()
}

/// A recovery code as typed (any case, with or without the dash and spaces), as stored:
/// `None` when it cannot be one.
pub fn normalize_recovery_code(code: &str) -> Option<String> {
    let plain: String =
        code.chars().filter(|c| !c.is_whitespace() && *c != '-').map(|c| c.to_ascii_lowercase()).collect();
    (plain.len() == 10 && plain.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)))
        .then(|| format!("{}-{}", &plain[..5], &plain[5..]))
}

/// `text` as a QR code in an inline SVG document (no scripts, no external references).
pub fn qr_svg(text: &str) -> Option<String> {
    use qrcodegen::{QrCode, QrCodeEcc};
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium).ok()?;
    let border = 4;
    let size = qr.size() + border * 2;
    let mut path = String::new();
    for y in 0..qr.size() {
        for x in 0..qr.size() {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    Some(format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" shape-rendering="crispEdges" role="img" aria-label="QR code"><rect width="100%" height="100%" fill="#fff"/><path d="{path}" fill="#000"/></svg>"##
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows (8 digits, the RFC's 20-byte ASCII key).
    #[test]
    fn rfc_6238_appendix_b_vectors_hold() {
        let secret = b"12345678901234567890";
        let vectors = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (time, code) in vectors {
            assert_eq!(generator(secret, 8, "").generate(time).to_string(), code, "t={time}");
            // Six digits are the last six of eight.
            assert_eq!(generator(secret, 6, "").generate(time).to_string(), &code[2..], "t={time}");
        }
    }

    #[test]
    fn a_code_is_accepted_one_step_either_side_and_not_two() {
        let secret = new_secret();
        let now = 1_700_000_015;
        let code_at = |t: u64| generator(&secret, 6, "").generate(t).to_string();
        assert_eq!(matching_step(&secret, &code_at(now), now), Some(now / 30));
        assert_eq!(matching_step(&secret, &code_at(now - 30), now), Some(now / 30 - 1));
        assert_eq!(matching_step(&secret, &code_at(now + 30), now), Some(now / 30 + 1));
        assert_eq!(matching_step(&secret, &code_at(now - 60), now), None);
        assert_eq!(matching_step(&secret, &code_at(now + 60), now), None);
        assert_eq!(matching_step(&secret, "12345", now), None);
        assert_eq!(matching_step(&secret, "abcdef", now), None);
    }

    #[test]
    fn recovery_codes_are_ten_distinct_and_read_back_however_typed() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        let distinct: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), 10);
        for code in &codes {
            assert_eq!(normalize_recovery_code(code).as_deref(), Some(code.as_str()));
            let shouted = code.to_ascii_uppercase().replace('-', " ");
            assert_eq!(normalize_recovery_code(&shouted).as_deref(), Some(code.as_str()));
        }
        assert_eq!(normalize_recovery_code("123456"), None);
        assert_eq!(normalize_recovery_code("abcde-fghi1"), None);
    }

    #[test]
    fn the_qr_code_is_an_svg_holding_only_rectangles() {
        let svg = qr_svg(&otpauth_uri(&new_secret(), "dev@example.com")).expect("svg");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
        assert!(!svg.contains("<script") && !svg.contains("href"), "{svg}");
        assert!(svg.matches('M').count() > 100, "a QR code has many dark modules");
    }

    #[test]
    fn the_otpauth_uri_names_the_issuer_and_account() {
        let uri = otpauth_uri(&[7; 20], "dev@example.com");
        assert!(uri.starts_with("otpauth://totp/WiseHosting:dev%40example.com?"), "{uri}");
        assert!(uri.contains(&format!("secret={}", secret_base32(&[7; 20]))), "{uri}");
        assert!(uri.contains("issuer=WiseHosting"), "{uri}");
    }
}
