//! An app's bytes as the edge router's fast path reads a response head: never a panic, and an
//! accepted head is written for the client as one whole head with a framing it can follow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = wisehosting_worker::edge::fuzzing::response_head(data) {
        panic!("{broken}: {:?}", String::from_utf8_lossy(data));
    }
});
