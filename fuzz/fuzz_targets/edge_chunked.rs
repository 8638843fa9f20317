//! The edge router's chunked-body decoder: never a panic, and where a body ends does not
//! depend on how its bytes arrive (the first byte chooses the cuts).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else { return };
    let step = usize::from(seed % 17) + 1;
    let cuts: Vec<usize> = (step..body.len()).step_by(step).collect();
    if let Err(broken) = wisehosting_worker::edge::fuzzing::chunked(body, &cuts) {
        panic!("{broken}: {:?}", String::from_utf8_lossy(body));
    }
});
