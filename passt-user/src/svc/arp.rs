//! # Theory of operation
//!
//! ARP responder (RFC 826) for IPv4 over Ethernet. The guest sees one
//! neighbour behind every IPv4 address, with our MAC: whatever it resolves
//! (the gateway, a resolver, another host on its subnet) ends up in a frame
//! to us, which is what the data path needs. The one exception is the
//! guest's own address, so that the guest's duplicate address checks never
//! see a conflict.
//!
//! Only requests get a reply, and not every request:
//! - a probe (sender IP 0.0.0.0, RFC 5227 §2.1.1) or a gratuitous
//!   announcement (sender IP equal to target IP, RFC 5227 §2.3) is the guest
//!   checking or claiming an address: answering would report a conflict;
//! - a request for the guest's own address gets nothing for the same reason.
//!
//! Replies (RFC 826, "Packet Reception") swap sender and target: our MAC and
//! the requested address as sender, the requester's MAC and address as
//! target, in a frame to the requester's MAC (its sender hardware address).
//! The reply is 42 bytes, without Ethernet padding: taps take short frames.
//!
//! Stateless: no ARP cache is kept, nothing is learnt from requests.

use std::net::Ipv4Addr;

use etherparse::ArpPacketSlice;

use super::{put_eth, SvcConf, Writer};
use crate::wire;

/// Ethertype of ARP.
const ETHERTYPE_ARP: u16 = 0x0806;
/// ARP hardware type of Ethernet (RFC 826, IANA "Hardware Types").
const HTYPE_ETHERNET: u16 = 1;
/// ARP protocol type of IPv4 (the IPv4 ethertype).
const PTYPE_IPV4: u16 = 0x0800;
/// ARP opcode of a request.
const OP_REQUEST: u16 = 1;
/// ARP opcode of a reply.
const OP_REPLY: u16 = 2;
/// Length in bytes of a reply frame: Ethernet header and the 28-byte
/// Ethernet/IPv4 ARP body.
const REPLY_LEN: usize = 42;

/// Answer an ARP request for any IPv4 address but the guest's own, with our
/// MAC (RFC 826).
///
/// `frame` is a whole Ethernet II frame (no FCS, padding allowed) with
/// ethertype ARP. On a reply, `out[..len]` holds a 42-byte Ethernet frame
/// from `conf.our_mac` to the requester's MAC, ARP opcode 2, sender
/// `conf.our_mac` and the requested address, target the requester. All
/// multi-byte fields are in network byte order.
///
/// Returns `Ok(None)` without looking at `frame` if `conf.v4` is `None`;
/// otherwise `Ok(None)` for anything but a request, for a probe (sender IP
/// 0.0.0.0), a gratuitous ARP (sender IP = target IP) and a request for
/// `conf.v4.addr`.
///
/// # Errors
/// [`wire::Error`] if the frame is short, its ethertype is not ARP, the ARP
/// hardware type is not Ethernet (1) with 6-byte addresses or the protocol
/// type is not IPv4 (0x0800) with 4-byte addresses; also if `out` is shorter
/// than 42 bytes.
///
/// # Panics
/// Never.
pub fn handle(conf: &SvcConf, frame: &[u8], out: &mut [u8]) -> Result<Option<usize>, wire::Error> {
    let Some(v4) = &conf.v4 else {
        return Ok(None);
    };
    let (_, body) = super::parse_eth(frame, ETHERTYPE_ARP)?;
    let arp = ArpPacketSlice::from_slice(body).map_err(|_| wire::Error)?;
    if arp.hw_addr_type().0 != HTYPE_ETHERNET
        || arp.proto_addr_type().0 != PTYPE_IPV4
        || arp.hw_addr_size() != 6
        || arp.proto_addr_size() != 4
    {
        return Err(wire::Error);
    }
    if arp.operation().0 != OP_REQUEST {
        return Ok(None);
    }
    // Sizes were checked above: these conversions cannot fail.
    let sha: [u8; 6] = arp.sender_hw_addr().try_into().map_err(|_| wire::Error)?;
    let spa: [u8; 4] = arp.sender_protocol_addr().try_into().map_err(|_| wire::Error)?;
    let tpa: [u8; 4] = arp.target_protocol_addr().try_into().map_err(|_| wire::Error)?;
    let (spa, tpa) = (Ipv4Addr::from(spa), Ipv4Addr::from(tpa));
    if spa.is_unspecified() || spa == tpa || tpa == v4.addr {
        return Ok(None);
    }

    let mut w = Writer::new(out, REPLY_LEN);
    put_eth(&mut w, sha, conf.our_mac, ETHERTYPE_ARP)?;
    w.put_u16(HTYPE_ETHERNET)?;
    w.put_u16(PTYPE_IPV4)?;
    w.put(&[6, 4])?;
    w.put_u16(OP_REPLY)?;
    w.put(&conf.our_mac)?;
    w.put(&tpa.octets())?;
    w.put(&sha)?;
    w.put(&spa.octets())?;
    Ok(Some(w.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svc::test_util::{answer_with, conf, hex, no_panic, GUEST_MAC, OUR_MAC};

    /// A Linux ARP request from the guest (192.0.2.10, 52:54:00:12:34:56)
    /// for `target`, broadcast, padded to the 60-byte Ethernet minimum as
    /// virtio-net delivers it.
    fn request(sender: &str, target: &str) -> Vec<u8> {
        hex(&format!(
            "ffffffffffff 525400123456 0806 | 0001 0800 06 04 0001 \
             525400123456 {sender} 000000000000 {target} | {}",
            "00".repeat(18)
        ))
    }

    fn answer(frame: &[u8]) -> Result<Option<Vec<u8>>, wire::Error> {
        answer_with(handle, &conf(), frame)
    }

    #[test]
    fn request_for_gateway_gets_reply_with_our_mac() {
        let reply = answer(&request("c000020a", "c0000201")).unwrap().unwrap();
        // Golden reply: to the requester, from us; sender = us at
        // 192.0.2.1, target = requester at 192.0.2.10.
        let golden = hex("525400123456 9a559a559a55 0806 | 0001 0800 06 04 0002 \
                          9a559a559a55 c0000201 525400123456 c000020a");
        assert_eq!(reply, golden);
        let eth = etherparse::Ethernet2Slice::from_slice_without_fcs(&reply).unwrap();
        assert_eq!(eth.source(), OUR_MAC);
        assert_eq!(eth.destination(), GUEST_MAC);
        let arp = ArpPacketSlice::from_slice(eth.payload_slice()).unwrap();
        assert_eq!(arp.operation().0, OP_REPLY);
        assert_eq!(arp.sender_hw_addr(), OUR_MAC);
        assert_eq!(arp.sender_protocol_addr(), [192, 0, 2, 1]);
        assert_eq!(arp.target_hw_addr(), GUEST_MAC);
        assert_eq!(arp.target_protocol_addr(), [192, 0, 2, 10]);
    }

    #[test]
    fn request_for_any_other_address_gets_reply() {
        let reply = answer(&request("c000020a", "08080808")).unwrap().unwrap();
        assert_eq!(&reply[28..32], &[8, 8, 8, 8]);
        assert_eq!(&reply[22..28], &OUR_MAC);
    }

    #[test]
    fn request_for_guest_own_address_is_ignored() {
        assert_eq!(answer(&request("c0000263", "c000020a")), Ok(None));
    }

    #[test]
    fn gratuitous_arp_is_ignored() {
        assert_eq!(answer(&request("c000020a", "c000020a")), Ok(None));
    }

    #[test]
    fn probe_from_unspecified_sender_is_ignored() {
        assert_eq!(answer(&request("00000000", "c0000201")), Ok(None));
    }

    #[test]
    fn reply_from_guest_is_ignored() {
        let mut f = request("c000020a", "c0000201");
        f[21] = OP_REPLY as u8;
        assert_eq!(answer(&f), Ok(None));
    }

    #[test]
    fn disabled_ipv4_gives_none() {
        let mut c = conf();
        c.v4 = None;
        assert_eq!(handle(&c, &request("c000020a", "c0000201"), &mut [0u8; 64]), Ok(None));
    }

    #[test]
    fn truncated_request_is_malformed() {
        let f = request("c000020a", "c0000201");
        for n in [0, 13, 14, 21, 41] {
            assert_eq!(answer(&f[..n]), Err(wire::Error), "length {n}");
        }
        // Without the padding, the 42-byte request is complete.
        assert!(answer(&f[..42]).unwrap().is_some());
    }

    #[test]
    fn wrong_hardware_or_protocol_is_malformed() {
        for (at, v) in [(15, 6u8), (16, 0x86), (18, 8), (19, 16)] {
            let mut f = request("c000020a", "c0000201");
            f[at] = v;
            assert_eq!(answer(&f), Err(wire::Error), "byte {at} = {v}");
        }
    }

    #[test]
    fn other_ethertype_is_malformed() {
        let mut f = request("c000020a", "c0000201");
        f[13] = 0x00;
        assert_eq!(answer(&f), Err(wire::Error));
    }

    #[test]
    fn short_out_is_an_error_not_a_panic() {
        let f = request("c000020a", "c0000201");
        assert_eq!(handle(&conf(), &f, &mut [0u8; 41]), Err(wire::Error));
        assert_eq!(handle(&conf(), &f, &mut [0u8; 42]), Ok(Some(42)));
    }

    #[test]
    fn arbitrary_input_never_panics() {
        no_panic(handle, &request("c000020a", "c0000201"), 14, |_| {});
    }
}
