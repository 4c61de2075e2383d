//! The ARP responder. The body is `passt::fuzz_entry::arp`, which says what an input
//! is and what is checked; `cargo test` replays seeds and regressions
//! through it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| passt::fuzz_entry::arp(data));
