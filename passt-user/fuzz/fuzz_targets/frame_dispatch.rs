//! Raw frames from the tap into the dispatcher: parsing, the local
//! services and flow creation. Run it in a network namespace of its own
//! (`cargo xtask test` runs every target under `unshare --net`), so that
//! flows the input opens can reach nothing. The body is
//! `passt::fuzz_entry::frame_dispatch`, which says what an input is and
//! what is checked; `cargo test` replays seeds and regressions
//! through it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| passt::fuzz_entry::frame_dispatch(data));
