//! Option files are read from disk as the operator wrote them: the parser must meet any bytes
//! with settings or an error, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = shardctl::config::optionfile::fuzz_one(data);
});
