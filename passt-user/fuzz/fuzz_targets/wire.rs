//! Ethernet, IPv4/IPv6, TCP/UDP/ICMP(v6) headers as the data plane reads and
//! writes them. The body is `passt::fuzz_entry::wire`, which says what an input
//! is and what is checked; `cargo test` replays seeds and regressions
//! through it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| passt::fuzz_entry::wire(data));
