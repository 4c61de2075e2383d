//! `fwd_lookup_in` / `fwd_lookup_out`: see [`passt_ebpf::lookup`].

use aya_ebpf::{
    macros::{map, sk_lookup},
    maps::{Array, SockMap},
    programs::SkLookupContext,
};
use passt_ebpf::lookup::{LookupRule, DIR_IN, DIR_OUT, MAX_RULES, PORT_WORDS};

#[map]
static LOOKUP_SOCKS: SockMap = SockMap::with_max_entries(MAX_RULES, 0);
#[map]
static LOOKUP_RULES: Array<LookupRule> = Array::with_max_entries(MAX_RULES, 0);
#[map]
static LOOKUP_PORTS: Array<u64> = Array::with_max_entries(MAX_RULES * PORT_WORDS, 0);

/// `SK_PASS`: go on with this socket, or with the ordinary lookup.
const SK_PASS: u32 = 1;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

/// Assign the socket of the first matching rule slot of direction `dir`.
fn steer(ctx: &SkLookupContext, dir: u32) -> u32 {
    // SAFETY: the kernel hands us a valid context for the program's run.
    let l = unsafe { &*ctx.lookup };
    let (family, protocol, port) = (l.family, l.protocol, l.local_port);
    if port > 65535 {
        return SK_PASS;
    }
    let (word, bit) = (port / 64, port % 64);
    let mut slot = 0;
    while slot < MAX_RULES {
        let i = slot;
        slot += 1;
        let Some(r) = LOOKUP_RULES.get(i) else { break };
        if r.active == 0 || r.dir != dir || r.protocol != protocol {
            continue;
        }
        if r.family != 0 && r.family != family {
            continue;
        }
        if r.ifindex != 0 && r.ifindex != l.ingress_ifindex {
            continue;
        }
        if r.any == 0 {
            let same = match family {
                AF_INET => l.local_ip4 == r.addr[0],
                AF_INET6 => l.local_ip6 == r.addr,
                _ => false,
            };
            if !same {
                continue;
            }
        }
        let Some(w) = LOOKUP_PORTS.get(i * PORT_WORDS + word) else { continue };
        if *w & (1u64 << bit) == 0 {
            continue;
        }
        // A slot being set up has no socket yet (ENOENT): ordinary lookup.
        let _ = LOOKUP_SOCKS.redirect_sk_lookup(ctx, i, 0);
        return SK_PASS;
    }
    SK_PASS
}

#[sk_lookup]
pub fn fwd_lookup_in(ctx: SkLookupContext) -> u32 {
    steer(&ctx, DIR_IN)
}

#[sk_lookup]
pub fn fwd_lookup_out(ctx: SkLookupContext) -> u32 {
    steer(&ctx, DIR_OUT)
}
