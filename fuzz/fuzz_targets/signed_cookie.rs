//! See `tower_balancer::fuzzing::signed_cookie` for what it checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tower_balancer::fuzzing::signed_cookie(data);
});
