//! Route extraction from the request target and the Cookie header: no panic, and a route is
//! only ever a registered member.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tower_balancer::fuzzing::route_extraction(data);
});
