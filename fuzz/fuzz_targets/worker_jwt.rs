//! Verify arbitrary tokens: never a panic, never an acceptance of unsigned input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wisehosting_crypto::PurposeKey;
use wisehosting_crypto::jwt::verify_worker_token;

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        let key = PurposeKey::from_bytes([3u8; 32]);
        assert!(verify_worker_token(&key, token, 1_800_000_000).is_err(), "accepted a forged token");
    }
});
