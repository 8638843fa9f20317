//! Decode and verify arbitrary frames: never a panic, and a frame is accepted only if it was
//! sealed with the key (the fuzzer cannot forge an HMAC, so any acceptance of raw input is a
//! finding). The second half seals fuzzer-chosen fields and requires the round trip to hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wisehosting_proto::envelope::seal_frame;
use wisehosting_proto::{LinkKeys, Receiver, WorkerMessage};

const NOW: i64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let keys = LinkKeys::derive(&[7u8; 32], "00112233445566778899aabbccddeeff");
    if let Ok(text) = std::str::from_utf8(data) {
        let mut rx = Receiver::new(keys.c2s.clone());
        if let Ok(frame) = rx.accept(text, NOW) {
            panic!("accepted an unsigned frame: {:?}", frame.t);
        }
    }
    // Structured: split the input into a type and a payload, seal, verify, decode.
    let cut = data.first().map_or(0, |b| *b as usize) % (data.len().max(1));
    let (t, p) = data.split_at(cut.min(data.len()));
    let t = String::from_utf8_lossy(t).replace(['"', '\\'], "");
    let payload = serde_json_like(p);
    let frame = seal_frame(&keys.c2s, &t, "0123456789abcdef0123456789abcdef", 1, NOW, &payload);
    let mut rx = Receiver::new(keys.c2s);
    if let Ok(frame) = rx.accept(&frame, NOW) {
        let _ = WorkerMessage::decode(frame.t, frame.p);
    }
});

/// A JSON string holding the bytes, so the sealed frame is well-formed JSON.
fn serde_json_like(bytes: &[u8]) -> String {
    let mut out = String::from("{\"lines\":[\"");
    for b in bytes {
        if b.is_ascii_alphanumeric() {
            out.push(*b as char);
        } else {
            out.push_str(&format!("\\u{:04x}", b));
        }
    }
    out.push_str("\"]}");
    out
}
