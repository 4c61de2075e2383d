//! TCP state machine event sequences (guest segments, socket events,
//! timers). The body is `passt::fuzz_entry::tcp_conn`, which says what an input
//! is and what is checked; `cargo test` replays seeds and regressions
//! through it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| passt::fuzz_entry::tcp_conn(data));
