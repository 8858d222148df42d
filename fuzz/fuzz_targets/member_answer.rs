//! See `tower_balancer_proxy::fuzzing::member_answer` for what it checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tower_balancer_proxy::fuzzing::member_answer(data);
});
