//! A client's bytes as the edge router's fast path reads a request head: never a panic, and
//! what it forwards is exactly one complete, bodyless request (no smuggling).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = wisehosting_worker::edge::fuzzing::request_head(data) {
        panic!("{broken}: {:?}", String::from_utf8_lossy(data));
    }
});
