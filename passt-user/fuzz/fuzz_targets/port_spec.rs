//! The -t/-u/-T/-U port specifier grammar. The body is `passt::fuzz_entry::port_spec`, which says what an input
//! is and what is checked; `cargo test` replays seeds and regressions
//! through it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| passt::fuzz_entry::port_spec(data));
