//! `sockmap_ops` and `sockmap_msg`: see [`passt_ebpf::sockmap`].

use aya_ebpf::{
    bindings::{
        sk_action::SK_PASS, BPF_ANY, BPF_F_INGRESS, BPF_F_NO_PREALLOC, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB,
        BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB,
    },
    helpers::bpf_get_netns_cookie,
    macros::{map, sk_msg, sock_ops},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, SockHash},
    programs::{SkMsgContext, SockOpsContext},
};
use core::ptr::read_volatile;

use passt_ebpf::sockmap::*;

#[map]
static SOCKS: SockHash<SockKey> = SockHash::with_max_entries(MAX_SOCKS, 0);
#[map]
static STATS: LruHashMap<SockKey, FlowStats> = LruHashMap::with_max_entries(MAX_SOCKS, 0);
#[map]
static CTL: HashMap<SockKey, FlowCtl> = HashMap::with_max_entries(MAX_CTL, BPF_F_NO_PREALLOC);
#[map]
static PORTS: Array<u8> = Array::with_max_entries(65536, 0);
#[map]
static NETNS: Array<u64> = Array::with_max_entries(2, 0);
#[map]
static SOCKMAP_ERRORS: PerCpuArray<u64> = PerCpuArray::with_max_entries(ERR_COUNT, 0);

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

fn count(err: u32) {
    if let Some(c) = SOCKMAP_ERRORS.get_ptr_mut(err) {
        // Per-CPU slot: no other writer while this program runs on this CPU.
        unsafe { *c += 1 };
    }
}

/// A remote port as `bpf_sock_ops` and `sk_msg_md` give it: network byte
/// order in the upper 16 bits (little-endian kernel).
fn remote_port(raw: u32) -> u32 {
    u32::from(u16::from_be((raw >> 16) as u16))
}

/// True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104 (addresses as the
/// kernel stores them: network byte order words).
fn loopback(family: u32, a: &[u32; 4]) -> bool {
    match family {
        AF_INET => a[0] & 0xff == 127,
        AF_INET6 => {
            a[0] == 0 && a[1] == 0 && ((a[2] == 0 && a[3] == u32::from_be(1)) || (a[2] == u32::from_be(0xffff) && a[3] & 0xff == 127))
        }
        _ => false,
    }
}

/// The key of a socket from its context fields (both program types give
/// them the same way): addresses as stored (network order), the local port
/// in host order, the remote one as [`remote_port`] takes it; `None` for a
/// family other than IPv4 and IPv6.
#[inline(always)]
fn sock_key(netns: u64, family: u32, lport: u32, rport: u32, v4: (u32, u32), v6: ([u32; 4], [u32; 4])) -> Option<SockKey> {
    let mut key = SockKey { netns, family, lport, rport: remote_port(rport), ..SockKey::default() };
    match family {
        AF_INET => {
            key.laddr[0] = v4.0;
            key.raddr[0] = v4.1;
        }
        AF_INET6 => {
            key.laddr = v6.0;
            key.raddr = v6.1;
        }
        _ => return None,
    }
    Some(key)
}

#[sock_ops]
pub fn sockmap_ops(ctx: SockOpsContext) -> u32 {
    let op = ctx.op();
    if op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB {
        return 0;
    }
    // Whole-word loads only (volatile, so that LLVM can't narrow them):
    // the verifier refuses narrower loads of most context fields.
    // SAFETY: the context pointer is the program's argument; plain loads
    // of its fields.
    let (family, lport, rport, l4, r4, l6, r6) = unsafe {
        let o = ctx.ops;
        (
            read_volatile(&(*o).family),
            read_volatile(&(*o).local_port),
            read_volatile(&(*o).remote_port),
            read_volatile(&(*o).local_ip4),
            read_volatile(&(*o).remote_ip4),
            [0, 1, 2, 3].map(|i| read_volatile(&(*o).local_ip6[i])),
            [0, 1, 2, 3].map(|i| read_volatile(&(*o).remote_ip6[i])),
        )
    };
    // SAFETY: the context pointer is the program's argument.
    let netns = unsafe { bpf_get_netns_cookie(ctx.ops as *mut _) };
    let Some(mut key) = sock_key(netns, family, lport, rport, (l4, r4), (l6, r6)) else { return 0 };
    // Local connections only: a loopback peer, or one on our own address
    // (pasta connects to the namespace's address from it).
    if netns == 0 || !(loopback(family, &key.raddr) || key.raddr == key.laddr) {
        return 0;
    }
    let (host, ns) = (NETNS.get(NETNS_HOST).copied().unwrap_or(0), NETNS.get(NETNS_NS).copied().unwrap_or(0));
    let (client, server) = if netns == host {
        (PORT_HOST_CLIENT, PORT_HOST_SERVER)
    } else if netns == ns {
        (PORT_NS_CLIENT, PORT_NS_SERVER)
    } else {
        return 0;
    };
    let (port, bit) = if op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB { (key.rport, client) } else { (key.lport, server) };
    let Some(bits) = PORTS.get(port) else { return 0 };
    if bits & bit == 0 {
        return 0;
    }
    if STATS.insert(&key, &FlowStats::default(), u64::from(BPF_ANY)).is_err() {
        count(ERR_STATS);
        return 0;
    }
    // SAFETY: the context pointer is the program's argument.
    if SOCKS.update(&mut key, unsafe { &mut *ctx.ops }, u64::from(BPF_ANY)).is_err() {
        count(ERR_INSERT);
        let _ = STATS.remove(&key);
        return 0;
    }
    0
}

#[sk_msg]
pub fn sockmap_msg(ctx: SkMsgContext) -> u32 {
    // SAFETY: the context pointer is the program's argument; these are
    // plain loads of context fields.
    let (family, lport, rport, l4, r4, l6, r6, size) = unsafe {
        let m = ctx.msg;
        (
            read_volatile(&(*m).family),
            read_volatile(&(*m).local_port),
            read_volatile(&(*m).remote_port),
            read_volatile(&(*m).local_ip4),
            read_volatile(&(*m).remote_ip4),
            [0, 1, 2, 3].map(|i| read_volatile(&(*m).local_ip6[i])),
            [0, 1, 2, 3].map(|i| read_volatile(&(*m).remote_ip6[i])),
            read_volatile(&(*m).size),
        )
    };
    // SAFETY: as above.
    let netns = unsafe { bpf_get_netns_cookie(ctx.msg as *mut _) };
    let Some(key) = sock_key(netns, family, lport, rport, (l4, r4), (l6, r6)) else { return SK_PASS };
    let Some(st) = STATS.get_ptr_mut(&key) else { return SK_PASS };
    let len = u64::from(size);
    // SAFETY: sends of one socket run under its socket lock, so this
    // program is the only writer of the sender's stats at a time; pasta
    // only reads them.
    let st = unsafe { &mut *st };
    // SAFETY: pasta replaces CTL entries whole (hash map update), never
    // in place.
    if let Some(ctl) = unsafe { CTL.get(&key) } {
        if ctl.passed_at == st.passed && st.redirected + len <= ctl.redirect_limit {
            let mut peer = ctl.peer;
            if SOCKS.redirect_msg(&ctx, &mut peer, u64::from(BPF_F_INGRESS)) == i64::from(SK_PASS) {
                st.redirected += len;
                return SK_PASS;
            }
            count(ERR_REDIRECT);
        }
    }
    st.passed += len;
    SK_PASS
}
