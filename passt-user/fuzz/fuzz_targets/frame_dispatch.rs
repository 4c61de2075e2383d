//! Raw frames from the tap into the dispatcher: parsing, the local
//! services (ARP, DHCP, NDP, DHCPv6) and flow creation. Run inside a network
//! namespace of its own (`cargo xtask test` runs it under `unshare --net`),
//! so that flows the input opens can reach nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

thread_local! {
    static CTX: RefCell<passt::daemon::Ctx> =
        RefCell::new(passt::daemon::test_ctx().expect("context"));
}

fuzz_target!(|data: &[u8]| {
    CTX.with_borrow_mut(|ctx| {
        // One input is a sequence of frames, each prefixed by a 16-bit length.
        let mut rest = data;
        while rest.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
            passt::daemon::dispatch_frame(ctx, &rest[2..2 + len]);
            rest = &rest[2 + len..];
        }
        ctx.flush_tx();
        // Flows opened by the input are closed again, so the table never fills
        // across runs and the deferred pass is exercised too.
        let idx: Vec<usize> = ctx.flows.active_indices().collect();
        for i in idx {
            ctx.flows.close(i);
        }
        ctx.flows.defer_free(|f| f.data = passt::flow::FlowData::None);
    });
});
