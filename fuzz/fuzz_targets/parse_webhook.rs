//! Fuzzes the webhook parse path: any bytes that passed the signature check must parse or fail
//! cleanly, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wabot::meta::webhook::{parse, VerifiedBody};

fuzz_target!(|data: &[u8]| {
    let _ = parse(&VerifiedBody::trusted(data.to_vec()));
});
