//! # Theory of operation
//!
//! Building frames towards the tap in place. The L4 header and payload are
//! placed first at [`L4_OFF`] of a transmit slot (data from a socket is
//! received straight there); then [`push_ip_eth`] writes the IPv4 or IPv6
//! header and the Ethernet header right in front of it and returns where
//! the frame starts. No copy of the payload is ever made.
//!
//! Byte order: every header field is written in network order.

use std::ops::Range;

use super::csum;
use crate::flow::Inany;

/// Offset of the L4 header in a slot: room for Ethernet (14) and an IPv6
/// header (40); IPv4 frames start 20 bytes later.
pub const L4_OFF: usize = 14 + 40;

/// Length of the IP header [`push_ip_eth`] writes: 20 bytes for IPv4 (no
/// options), 40 for IPv6 (no extension headers).
pub fn ip_hdr_len(v4: bool) -> usize {
    if v4 {
        20
    } else {
        40
    }
}

/// Ethertype IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// Ethertype IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// Ethertype ARP.
pub const ETH_P_ARP: u16 = 0x0806;

/// Addresses of a frame to the guest.
#[derive(Debug, Clone, Copy)]
pub struct FrameAddrs {
    /// Our MAC (Ethernet source).
    pub src_mac: [u8; 6],
    /// The guest's MAC (Ethernet destination).
    pub dst_mac: [u8; 6],
    /// IP source (same family as `dst`).
    pub src: Inany,
    /// IP destination.
    pub dst: Inany,
}

/// Write IP and Ethernet headers in front of `slot[L4_OFF..L4_OFF + l4len]`
/// and return the frame's range in `slot`. IPv4: DF set, TTL 255, ID 0,
/// header checksum computed (RFC 791). IPv6: hop limit 255, `flow_label`
/// (20 bits) as given (RFC 8200).
///
/// # Panics
/// If `slot` is shorter than `L4_OFF + l4len` or `l4len` exceeds what the
/// IP header can describe; callers size slots at [`crate::tap::SLOT`] and
/// payloads to fit, so this is a bug, never input-driven.
pub fn push_ip_eth(slot: &mut [u8], l4len: usize, a: &FrameAddrs, proto: u8, flow_label: u32) -> Range<usize> {
    let end = L4_OFF + l4len;
    let start = match (a.src.v4(), a.dst.v4()) {
        (Some(s), Some(d)) => {
            let ip = L4_OFF - 20;
            let tot = (20 + l4len) as u16;
            let h = &mut slot[ip..L4_OFF];
            h[0] = 0x45;
            h[1] = 0;
            h[2..4].copy_from_slice(&tot.to_be_bytes());
            h[4..6].copy_from_slice(&[0, 0]);
            h[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
            h[8] = 255;
            h[9] = proto;
            h[10..12].copy_from_slice(&[0, 0]);
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let c = csum::fold(csum::sum(0, h));
            h[10..12].copy_from_slice(&c.to_be_bytes());
            write_eth(&mut slot[ip - 14..ip], a, ETH_P_IP);
            ip - 14
        }
        _ => {
            let ip = L4_OFF - 40;
            let h = &mut slot[ip..L4_OFF];
            let vtf = (6u32 << 28) | (flow_label & 0xf_ffff);
            h[0..4].copy_from_slice(&vtf.to_be_bytes());
            h[4..6].copy_from_slice(&(l4len as u16).to_be_bytes());
            h[6] = proto;
            h[7] = 255;
            h[8..24].copy_from_slice(&a.src.v6().octets());
            h[24..40].copy_from_slice(&a.dst.v6().octets());
            write_eth(&mut slot[ip - 14..ip], a, ETH_P_IPV6);
            ip - 14
        }
    };
    start..end
}

fn write_eth(h: &mut [u8], a: &FrameAddrs, ethertype: u16) {
    h[0..6].copy_from_slice(&a.dst_mac);
    h[6..12].copy_from_slice(&a.src_mac);
    h[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

/// Running pseudo-header sum for an L4 packet between `src` and `dst`.
pub fn pseudo(src: Inany, dst: Inany, proto: u8, l4len: usize) -> u32 {
    match (src.v4(), dst.v4()) {
        (Some(s), Some(d)) => csum::pseudo4(s, d, proto, l4len as u16),
        _ => csum::pseudo6(&src.v6(), &dst.v6(), proto, l4len as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::SlicedPacket;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn addrs(src: Inany, dst: Inany) -> FrameAddrs {
        FrameAddrs { src_mac: [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55], dst_mac: [2, 0, 0, 0, 0, 1], src, dst }
    }

    #[test]
    fn ipv4_frame_parses_back_with_valid_header_checksum() {
        let mut slot = vec![0u8; 256];
        slot[L4_OFF..L4_OFF + 4].copy_from_slice(b"abcd");
        let a = addrs(Ipv4Addr::new(192, 0, 2, 1).into(), Ipv4Addr::new(192, 0, 2, 2).into());
        let r = push_ip_eth(&mut slot, 4, &a, 253, 0);
        assert_eq!(r, 20..L4_OFF + 4);
        let p = SlicedPacket::from_ethernet(&slot[r.clone()]).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!("not ipv4") };
        assert_eq!(ip.header().source_addr(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(ip.header().ttl(), 255);
        assert!(ip.header().dont_fragment());
        assert_eq!(csum::fold(csum::sum(0, &slot[34..54])), 0);
        assert_eq!(&slot[r.start..r.start + 6], &[2, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn ipv6_frame_carries_flow_label_and_payload_length() {
        let mut slot = vec![0u8; 256];
        let s: Ipv6Addr = "fe80::1".parse().unwrap();
        let d: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let r = push_ip_eth(&mut slot, 10, &addrs(s.into(), d.into()), 17, 0xabcde);
        assert_eq!(r, 0..L4_OFF + 10);
        let p = SlicedPacket::from_ethernet(&slot[r]).unwrap();
        let Some(etherparse::NetSlice::Ipv6(ip)) = p.net else { panic!("not ipv6") };
        assert_eq!(ip.header().flow_label().value(), 0xabcde);
        assert_eq!(ip.header().payload_length(), 10);
        assert_eq!(ip.header().destination_addr(), d);
        assert_eq!(ip.header().hop_limit(), 255);
    }
}
