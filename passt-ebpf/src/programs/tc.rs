//! `tap_tc`: see [`passt_ebpf::tc`].
//!
//! Every packet access goes through `bpf_skb_load_bytes` into fixed-size
//! stack buffers and `bpf_skb_store_bytes` back, so the verifier only has to
//! check constant offsets and lengths, and frames of any layout (paged or
//! not) are handled alike. Replies are built whole in a stack buffer, the
//! frame resized to the reply's length (`bpf_skb_change_tail`), then
//! overwritten and redirected to the tap's own ingress.

use aya_ebpf::{
    bindings::{BPF_F_INGRESS, TC_ACT_OK, TC_ACT_SHOT},
    helpers::{bpf_redirect, bpf_skb_change_tail, bpf_skb_load_bytes, bpf_skb_store_bytes},
    macros::{classifier, map},
    maps::{Array, PerCpuArray},
    programs::TcContext,
};
use aya_log_ebpf::info;
use passt_ebpf::tc::{Answer, Proto, TapConf, CONF_ARP, CONF_NDP, TC_ANSWERS, TC_COUNTERS};

#[map]
static TAP_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(TC_COUNTERS, 0);

#[map]
static TAP_CONF: Array<TapConf> = Array::with_max_entries(1, 0);

#[map]
static TAP_ANSWERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(TC_ANSWERS, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
/// Ethernet/IPv4 ARP body (RFC 826).
const ARP_LEN: usize = 28;
/// ARP reply frame: Ethernet header and the ARP body, no padding.
const ARP_FRAME_LEN: usize = ETH_HLEN + ARP_LEN;
const IP6_HLEN: usize = 40;
/// ICMPv6 protocol number.
const PROTO_ICMPV6: u8 = 58;
/// NS or NA without options: type, code, checksum, flags/reserved, target.
const ND_LEN: usize = 24;
/// One 8-byte link-layer address option (RFC 4861 §4.6.1).
const LL_OPT_LEN: usize = 8;
/// NA frame: Ethernet, IPv6, NA with the target link-layer address option.
const NA_FRAME_LEN: usize = ETH_HLEN + IP6_HLEN + ND_LEN + LL_OPT_LEN;
/// ICMPv6 types (RFC 4861 §4.3, §4.4).
const NS: u8 = 135;
const NA: u8 = 136;
/// Option types: source and target link-layer address.
const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;
/// Hop limit of every NDP message (RFC 4861 §7.1.1).
const NDP_HOP_LIMIT: u8 = 255;

/// Classifies a frame by EtherType and first IP protocol number.
fn classify(ctx: &TcContext) -> Proto {
    let Ok(ethertype) = ctx.load::<u16>(12) else {
        return Proto::Other;
    };
    match u16::from_be(ethertype) {
        ETH_P_ARP => Proto::Arp,
        ETH_P_IP => match ctx.load::<u8>(ETH_HLEN + 9) {
            Ok(6) => Proto::Tcp4,
            Ok(17) => Proto::Udp4,
            Ok(1) => Proto::Icmp4,
            Ok(_) => Proto::OtherIp,
            Err(_) => Proto::Other,
        },
        ETH_P_IPV6 => match ctx.load::<u8>(ETH_HLEN + 6) {
            Ok(6) => Proto::Tcp6,
            Ok(17) => Proto::Udp6,
            Ok(58) => Proto::Icmp6,
            Ok(_) => Proto::OtherIp,
            Err(_) => Proto::Other,
        },
        _ => Proto::Other,
    }
}

/// Adds one to slot `idx` of a per-CPU counter array.
#[inline(always)]
fn bump(map: &PerCpuArray<u64>, idx: u32) {
    if let Some(counter) = map.get_ptr_mut(idx) {
        // Per-CPU slot: no other writer while this program runs on this CPU.
        unsafe { *counter += 1 };
    }
}

/// What to do with a frame after looking at it for a request.
enum Verdict {
    /// Not a request we look at: to pasta, not counted.
    Ignore,
    /// A request left to pasta, unchanged (counted as [`Answer::Passed`]).
    Pass,
    /// A malformed request, left to pasta (which counts and drops it):
    /// what is wrong and a number that shows it, for a log line.
    Refuse(&'static str, u32),
    /// A reply of `.1` bytes is ready: send it back, count it as `.0`.
    Reply(Answer, usize),
}

/// Per-CPU scratch space (the BPF stack is too small for both frames):
/// the head of the request as loaded, and the reply being built.
#[repr(C)]
struct Scratch {
    /// First bytes of the frame (as many as it has, up to the size).
    req: [u8; NA_FRAME_LEN],
    /// The reply frame.
    reply: [u8; NA_FRAME_LEN],
}

#[map]
static TAP_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[classifier]
pub fn tap_tc(ctx: TcContext) -> i32 {
    let proto = classify(&ctx);
    bump(&TAP_COUNTERS, proto as u32);
    let Some(conf) = TAP_CONF.get(0) else {
        return TC_ACT_OK;
    };
    let want = match proto {
        Proto::Arp => conf.flags & CONF_ARP != 0,
        Proto::Icmp6 => conf.flags & CONF_NDP != 0,
        _ => false,
    };
    if !want {
        return TC_ACT_OK;
    }
    let Some(buf) = TAP_SCRATCH.get_ptr_mut(0) else {
        return TC_ACT_OK;
    };
    // SAFETY: per-CPU value, ours alone while this program runs here.
    let buf = unsafe { &mut *buf };
    // At most the buffer, and more than the Ethernet header: the verifier
    // refuses a zero-length load.
    let len = ctx.len() as usize;
    let got = if len > NA_FRAME_LEN { NA_FRAME_LEN } else { len };
    if got <= ETH_HLEN {
        return TC_ACT_OK;
    }
    // SAFETY: buf.req holds NA_FRAME_LEN >= got bytes; plain helper call.
    if unsafe { bpf_skb_load_bytes(ctx.skb.skb as *const _, 0, buf.req.as_mut_ptr().cast(), got as u32) } != 0 {
        return TC_ACT_OK;
    }
    let verdict = if proto == Proto::Arp {
        arp(conf, &buf.req, got, &mut buf.reply)
    } else {
        ns(conf, &buf.req, got, &mut buf.reply)
    };
    match verdict {
        Verdict::Ignore => TC_ACT_OK,
        Verdict::Pass => {
            bump(&TAP_ANSWERS, Answer::Passed as u32);
            TC_ACT_OK
        }
        Verdict::Refuse(what, n) => {
            // Only crafted frames get here: the namespace's stack never
            // sends these, so the log stays quiet.
            info!(&ctx, "tap_tc: {} ({}), left to pasta", what, n);
            bump(&TAP_ANSWERS, Answer::Passed as u32);
            TC_ACT_OK
        }
        Verdict::Reply(kind, len) => send(&ctx, &buf.reply, len, kind),
    }
}

/// Replace the frame by `reply[..len]` and redirect it to the ingress of
/// the device it was leaving. `len` is [`ARP_FRAME_LEN`] or
/// [`NA_FRAME_LEN`].
#[inline(always)]
fn send(ctx: &TcContext, reply: &[u8; NA_FRAME_LEN], len: usize, kind: Answer) -> i32 {
    // SAFETY: ctx.skb.skb is the context pointer the kernel gave us.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let len = if len == ARP_FRAME_LEN { ARP_FRAME_LEN } else { NA_FRAME_LEN };
    if ctx.len() as usize != len {
        // SAFETY: plain helper call on our context.
        if unsafe { bpf_skb_change_tail(ctx.skb.skb, len as u32, 0) } != 0 {
            // Nothing written yet: pasta gets the request and answers.
            bump(&TAP_ANSWERS, Answer::Failed as u32);
            return TC_ACT_OK;
        }
    }
    // SAFETY: reply holds at least len bytes; plain helper call.
    let stored = unsafe { bpf_skb_store_bytes(ctx.skb.skb, 0, reply.as_ptr().cast(), len as u32, 0) };
    if stored != 0 {
        // Partly overwritten, maybe: neither request nor reply any more.
        bump(&TAP_ANSWERS, Answer::Failed as u32);
        return TC_ACT_SHOT;
    }
    bump(&TAP_ANSWERS, kind as u32);
    // SAFETY: plain helper call; returns TC_ACT_REDIRECT for valid flags.
    unsafe { bpf_redirect(ifindex, BPF_F_INGRESS as u64) as i32 }
}

/// An ARP request (RFC 826) in `req[..got]` for any address but the
/// guest's own, not a probe (sender 0.0.0.0) nor gratuitous (sender =
/// target): the reply, from our MAC, in `out[..ARP_FRAME_LEN]`.
#[inline(always)]
fn arp(conf: &TapConf, req: &[u8; NA_FRAME_LEN], got: usize, out: &mut [u8; NA_FRAME_LEN]) -> Verdict {
    if got < ARP_FRAME_LEN {
        return Verdict::Refuse("short ARP frame, bytes", got as u32);
    }
    let a = &req[ETH_HLEN..ARP_FRAME_LEN];
    // Hardware type Ethernet, protocol IPv4, address sizes 6 and 4.
    if a[0..6] != [0, 1, 8, 0, 6, 4] {
        return Verdict::Refuse("ARP not for Ethernet/IPv4, hardware type", u16::from_be_bytes([a[0], a[1]]).into());
    }
    if a[6..8] != [0, 1] {
        // Replies and other operations need no answer.
        return Verdict::Ignore;
    }
    let (sha, spa, tpa) = (&a[8..14], &a[14..18], &a[24..28]);
    if spa == [0u8; 4] || spa == tpa || tpa == conf.guest4 {
        return Verdict::Pass;
    }
    out[0..6].copy_from_slice(sha);
    out[6..12].copy_from_slice(&conf.our_mac);
    out[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    out[14..20].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
    out[20..22].copy_from_slice(&[0, 2]);
    out[22..28].copy_from_slice(&conf.our_mac);
    out[28..32].copy_from_slice(tpa);
    out[32..38].copy_from_slice(sha);
    out[38..42].copy_from_slice(spa);
    Verdict::Reply(Answer::Arp, ARP_FRAME_LEN)
}

/// A neighbour solicitation (RFC 4861 §4.3, validated as §7.1.1 asks) in
/// `req[..got]` for any unicast address but the guest's own, not a DAD
/// probe, with no options or exactly one source link-layer address option:
/// the NA (R, S and O set, target link-layer address option with our MAC)
/// from `conf.our_ll`, in `out[..NA_FRAME_LEN]`. Other ICMPv6 messages are
/// ignored; solicitations it doesn't check completely are passed.
#[inline(always)]
fn ns(conf: &TapConf, req: &[u8; NA_FRAME_LEN], got: usize, out: &mut [u8; NA_FRAME_LEN]) -> Verdict {
    const L3: usize = ETH_HLEN;
    const L4: usize = ETH_HLEN + IP6_HLEN;
    if got <= L4 || req[L3 + 6] != PROTO_ICMPV6 || req[L4] != NS {
        return Verdict::Ignore;
    }
    let plen = usize::from(u16::from_be_bytes([req[L3 + 4], req[L3 + 5]]));
    if plen != ND_LEN && plen != ND_LEN + LL_OPT_LEN {
        // Other options, or none that fit: pasta walks them.
        return Verdict::Pass;
    }
    if got < L4 + plen {
        return Verdict::Refuse("neighbour solicitation shorter than its payload length", plen as u32);
    }
    let hop_limit = req[L3 + 7];
    if hop_limit != NDP_HOP_LIMIT {
        return Verdict::Refuse("neighbour solicitation with a hop limit other than 255", hop_limit.into());
    }
    if req[L3] >> 4 != 6 || req[L4 + 1] != 0 {
        return Verdict::Refuse("neighbour solicitation with a bad version or code", req[L4 + 1].into());
    }
    let with_opt = plen > ND_LEN;
    if with_opt && (req[L4 + ND_LEN] != OPT_SOURCE_LL || req[L4 + ND_LEN + 1] != 1) {
        return Verdict::Pass;
    }
    let (src, dst) = (&req[L3 + 8..L3 + 24], &req[L3 + 24..L3 + 40]);
    let mut sum = sum16(pseudo6(src, dst, plen as u32), &req[L4..L4 + ND_LEN]);
    if with_opt {
        sum = sum16(sum, &req[L4 + ND_LEN..L4 + ND_LEN + LL_OPT_LEN]);
    }
    if fold(sum) != 0xffff {
        return Verdict::Refuse("neighbour solicitation with a bad checksum, sum", u32::from(fold(sum)));
    }
    let target = &req[L4 + 8..L4 + 24];
    // Multicast target: malformed; unspecified source: DAD; our guest's
    // own address: not to be claimed.
    if target[0] == 0xff || *src == [0u8; 16] || target == conf.guest6 {
        return Verdict::Pass;
    }

    out[0..6].copy_from_slice(&req[6..12]);
    out[6..12].copy_from_slice(&conf.our_mac);
    out[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    out[L3..L3 + 4].copy_from_slice(&[0x60, 0, 0, 0]);
    out[L3 + 4..L3 + 6].copy_from_slice(&((ND_LEN + LL_OPT_LEN) as u16).to_be_bytes());
    out[L3 + 6] = PROTO_ICMPV6;
    out[L3 + 7] = NDP_HOP_LIMIT;
    out[L3 + 8..L3 + 24].copy_from_slice(&conf.our_ll);
    out[L3 + 24..L3 + 40].copy_from_slice(src);
    out[L4..L4 + 8].copy_from_slice(&[NA, 0, 0, 0, 0xe0, 0, 0, 0]); // R, S, O
    out[L4 + 8..L4 + 24].copy_from_slice(target);
    out[L4 + 24] = OPT_TARGET_LL;
    out[L4 + 25] = 1;
    out[L4 + 26..L4 + 32].copy_from_slice(&conf.our_mac);
    let sum = sum16(pseudo6(&conf.our_ll, src, (ND_LEN + LL_OPT_LEN) as u32), &out[L4..NA_FRAME_LEN]);
    out[L4 + 2..L4 + 4].copy_from_slice(&(!fold(sum)).to_be_bytes());
    Verdict::Reply(Answer::Ns, NA_FRAME_LEN)
}

/// Ones' complement sum (RFC 1071) of the IPv6 pseudo-header (RFC 8200
/// §8.1) for ICMPv6 of `len` bytes, not folded.
#[inline(always)]
fn pseudo6(src: &[u8], dst: &[u8], len: u32) -> u32 {
    let mut sum = 0u32;
    let mut i = 0;
    while i + 1 < 16 && i + 1 < src.len() && i + 1 < dst.len() {
        sum += u32::from(u16::from_be_bytes([src[i], src[i + 1]]));
        sum += u32::from(u16::from_be_bytes([dst[i], dst[i + 1]]));
        i += 2;
    }
    sum + (len >> 16) + (len & 0xffff) + u32::from(PROTO_ICMPV6)
}

/// Adds the big-endian 16-bit words of `data` (even length) to `sum`.
#[inline(always)]
fn sum16(mut sum: u32, data: &[u8]) -> u32 {
    let mut i = 0;
    while i + 1 < data.len() {
        sum += u32::from(u16::from_be_bytes([data[i], data[i + 1]]));
        i += 2;
    }
    sum
}

/// Folds a 32-bit ones' complement sum to 16 bits.
#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}
