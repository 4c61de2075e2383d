//! `tap_tc`: see [`passt_ebpf::tc`].

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, macros::map, maps::PerCpuArray, programs::TcContext};
use passt_ebpf::tc::{Proto, TC_COUNTERS};

#[map]
static TAP_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(TC_COUNTERS, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;

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

#[classifier]
pub fn tap_tc(ctx: TcContext) -> i32 {
    let proto = classify(&ctx);
    if let Some(counter) = TAP_COUNTERS.get_ptr_mut(proto as u32) {
        // Per-CPU slot: no other writer while this program runs on this CPU.
        unsafe { *counter += 1 };
    }
    TC_ACT_OK
}
