//! Raw frames from the tap into the dispatcher: parsing, the local
//! services (ARP, DHCP, NDP, DHCPv6) and flow creation. Run inside a network
//! namespace of its own (`cargo xtask test` does `unshare --net`), so that
//! flows the input opens can reach nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Mutex;

static CTX: Mutex<Option<passt::daemon::Ctx>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut g = CTX.lock().unwrap_or_else(|e| e.into_inner());
    let ctx = g.get_or_insert_with(|| passt::daemon::test_ctx().expect("context"));
    // One input is a sequence of frames, each prefixed by a 16-bit length.
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        passt::daemon::dispatch_frame(ctx, &rest[2..2 + len]);
        rest = &rest[2 + len..];
    }
    ctx.flush_tx();
});
