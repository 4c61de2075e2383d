//! # Theory of operation
//!
//! NDP responder (RFC 4861) for the guest's link: we are its router and the
//! neighbour behind every address it resolves.
//!
//! - Router Solicitation (133) -> Router Advertisement (134), unless
//!   `no_ra`; the same RA goes out unsolicited through [`unsolicited_ra`],
//!   which the caller sends periodically (RFC 4861 §6.2.4).
//! - Neighbor Solicitation (135) -> Neighbor Advertisement (136) with our
//!   MAC, for any target but the guest's own address, and never for
//!   Duplicate Address Detection probes (source ::, RFC 4862 §5.4.2): the
//!   guest must not see its own addresses as taken.
//! - Everything else: no answer.
//!
//! Solicitations are validated as RFC 4861 §6.1.1 and §7.1.1 require: hop
//! limit 255 (so they cannot come from off-link), ICMP code 0, a correct
//! ICMPv6 checksum, enough length, options of non-zero length inside the
//! message, no source link-layer address option from the unspecified
//! address, a unicast NS target, and DAD probes sent to a solicited-node
//! multicast address. A solicitation that fails is malformed (`Err`).
//!
//! The RA (RFC 4861 §4.2) comes from `our_ll` and `our_mac` with hop limit
//! 255, and says: current hop limit 64; M and O set when DHCPv6 is on
//! (addresses and other configuration from DHCPv6, RFC 4861 §4.2); router
//! lifetime 65535 s (RFC 8319); reachable time and retransmission timer
//! unspecified (0). Options: source link-layer address; MTU if configured;
//! prefix information (L and A set, infinite lifetimes) for `addr` cut to
//! `prefix_len`, unless `addr` is unspecified; RDNSS (RFC 8106 §5.1) and
//! DNSSL (RFC 8106 §5.2), infinite lifetimes, when configured. RDNSS and
//! DNSSL are optional: if they would take the RA past 1280 bytes (the IPv6
//! minimum MTU, which every link carries) they are left out whole.
//!
//! The NA (RFC 4861 §4.4) goes to the soliciting address and MAC with the
//! Router, Solicited and Override flags and a target link-layer address
//! option with our MAC. The R flag matters: an NA without it for the address
//! of the guest's default router would remove that router (RFC 4861
//! §7.2.5).

use std::net::Ipv6Addr;

use super::{ip6_frame, parse_ip6, Macs, SvcConf, SvcV6, Writer, INFINITE, IPV6_MIN_MTU, L4};
use crate::wire;

/// ICMPv6 type of Router Solicitation.
const RS: u8 = 133;
/// ICMPv6 type of Router Advertisement.
const RA: u8 = 134;
/// ICMPv6 type of Neighbor Solicitation.
const NS: u8 = 135;
/// ICMPv6 type of Neighbor Advertisement.
const NA: u8 = 136;
/// Hop limit of every NDP message (RFC 4861 §6.1.1, §7.1.1).
const NDP_HOP_LIMIT: u8 = 255;
/// Bytes of an RS before its options: type, code, checksum, reserved.
const RS_LEN: usize = 8;
/// Bytes of an NS before its options: RS_LEN plus the 16-byte target.
const NS_LEN: usize = 24;
/// All-nodes multicast address (RFC 4291 §2.7.1).
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// MAC of the all-nodes address (RFC 2464 §7).
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// NDP option types (RFC 4861 §4.6, RFC 8106 §5).
mod opt {
    pub const SOURCE_LL: u8 = 1;
    pub const TARGET_LL: u8 = 2;
    pub const PREFIX_INFO: u8 = 3;
    pub const MTU: u8 = 5;
    pub const RDNSS: u8 = 25;
    pub const DNSSL: u8 = 31;
}

/// Answer a Router or Neighbor Solicitation (RFC 4861 §6.2.6, §7.2.3).
///
/// `frame` is a whole Ethernet II frame carrying IPv6 (extension headers
/// allowed) and ICMPv6. On a reply, `out[..len]` holds an Ethernet/IPv6/
/// ICMPv6 frame from `conf.our_mac` and `conf.v6.our_ll`, hop limit 255,
/// with a valid ICMPv6 checksum: an RA to the soliciting host (to ff02::1
/// and 33:33:00:00:00:01 if it solicited from ::), or an NA to the
/// soliciting address and MAC. All fields are in network byte order.
///
/// Returns `Ok(None)` without looking at `frame` if `conf.no_ndp` is set or
/// `conf.v6` is `None`; otherwise `Ok(None)` for other ICMPv6 messages, for
/// a valid RS when `conf.no_ra` is set, a valid DAD probe, and a valid NS
/// for `conf.v6.addr`.
///
/// # Errors
/// [`wire::Error`] if a header is short or inconsistent (ethertype, IPv6
/// payload length, extension headers, fragment, next header not ICMPv6,
/// message shorter than 4 bytes), or an RS or NS fails validation (see the
/// module documentation); also if `out` is too short for the mandatory part
/// of the reply (never with [`super::OUT_MIN`] bytes).
///
/// # Panics
/// Never.
pub fn handle(conf: &SvcConf, frame: &[u8], out: &mut [u8]) -> Result<Option<usize>, wire::Error> {
    let Some(v6) = conf.v6.as_ref().filter(|_| !conf.no_ndp) else {
        return Ok(None);
    };
    let req = parse_ip6(frame, super::PROTO_ICMPV6)?;
    let icmp = req.l4;
    let (&ty, &code) = icmp.first().zip(icmp.get(1)).ok_or(wire::Error)?;
    let fixed_len = match ty {
        RS => RS_LEN,
        NS => NS_LEN,
        _ => return Ok(None),
    };
    let l4len = u32::try_from(icmp.len()).map_err(|_| wire::Error)?;
    let acc = super::csum::pseudo6(&req.src, &req.dst, super::PROTO_ICMPV6, l4len);
    if req.hop_limit != NDP_HOP_LIMIT
        || code != 0
        || icmp.len() < fixed_len
        || super::csum::fold(super::csum::sum(acc, icmp)) != 0
    {
        return Err(wire::Error);
    }
    let has_source_ll = walk_options(icmp.get(fixed_len..).unwrap_or_default())?;
    if req.src.is_unspecified() && has_source_ll {
        return Err(wire::Error);
    }

    if ty == RS {
        if conf.no_ra {
            return Ok(None);
        }
        let to = if req.src.is_unspecified() {
            (ALL_NODES, ALL_NODES_MAC)
        } else {
            (req.src, req.src_mac)
        };
        return Ok(Some(ra_frame(conf, v6, to, out)?));
    }

    let target: [u8; 16] =
        icmp.get(RS_LEN..NS_LEN).and_then(|t| t.try_into().ok()).ok_or(wire::Error)?;
    let target = Ipv6Addr::from(target);
    if target.is_multicast() {
        return Err(wire::Error);
    }
    if req.src.is_unspecified() {
        // DAD probe: valid only to the target's solicited-node group.
        return if req.dst == solicited_node(&target) { Ok(None) } else { Err(wire::Error) };
    }
    if target == v6.addr {
        return Ok(None);
    }
    let macs = Macs { dst: req.src_mac, src: conf.our_mac };
    let len = ip6_frame(
        out,
        IPV6_MIN_MTU,
        macs,
        (&v6.our_ll, &req.src, NDP_HOP_LIMIT),
        L4::Icmpv6,
        |w| {
            w.put(&[NA, 0, 0, 0])?; // type, code, checksum (filled in later)
            w.put(&[0xe0, 0, 0, 0])?; // Router, Solicited, Override; reserved
            w.put(&target.octets())?;
            w.put(&[opt::TARGET_LL, 1])?;
            w.put(&conf.our_mac)
        },
    )?;
    Ok(Some(len))
}

/// Write an unsolicited Router Advertisement to all nodes (RFC 4861 §6.2.4)
/// into `out`: the RA of [`handle`], from `conf.our_mac` and
/// `conf.v6.our_ll` to ff02::1 and 33:33:00:00:00:01. Returns the frame
/// length in bytes.
///
/// Returns `None` if `conf.no_ndp` or `conf.no_ra` is set, `conf.v6` is
/// `None`, or `out` is too short for the mandatory part of the RA (never
/// with [`super::OUT_MIN`] bytes).
///
/// # Panics
/// Never.
pub fn unsolicited_ra(conf: &SvcConf, out: &mut [u8]) -> Option<usize> {
    let v6 = conf.v6.as_ref().filter(|_| !conf.no_ndp && !conf.no_ra)?;
    ra_frame(conf, v6, (ALL_NODES, ALL_NODES_MAC), out).ok()
}

/// Check NDP options (RFC 4861 §4.6): each has a non-zero length in units of
/// 8 bytes and ends inside `opts`. Returns whether a source link-layer
/// address option is among them.
///
/// # Errors
/// [`wire::Error`] on a zero length or an option running past the end.
fn walk_options(mut opts: &[u8]) -> Result<bool, wire::Error> {
    let mut source_ll = false;
    while let [ty, len, ..] = *opts {
        let n = usize::from(len) * 8;
        if n == 0 {
            return Err(wire::Error);
        }
        source_ll |= ty == opt::SOURCE_LL;
        opts = opts.get(n..).ok_or(wire::Error)?;
    }
    if opts.is_empty() {
        Ok(source_ll)
    } else {
        Err(wire::Error)
    }
}

/// Solicited-node multicast address of `addr` (RFC 4291 §2.7.1).
fn solicited_node(addr: &Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15]])
}

/// Write the Router Advertisement frame to address and MAC `to`.
fn ra_frame(
    conf: &SvcConf,
    v6: &SvcV6,
    (dst, dst_mac): (Ipv6Addr, [u8; 6]),
    out: &mut [u8],
) -> Result<usize, super::Full> {
    let macs = Macs { dst: dst_mac, src: conf.our_mac };
    ip6_frame(out, IPV6_MIN_MTU, macs, (&v6.our_ll, &dst, NDP_HOP_LIMIT), L4::Icmpv6, |w| {
        put_ra(w, conf, v6)
    })
}

/// Write the Router Advertisement message (RFC 4861 §4.2), checksum zero.
fn put_ra(w: &mut Writer<'_>, conf: &SvcConf, v6: &SvcV6) -> Result<(), super::Full> {
    let managed = if conf.no_dhcpv6 { 0 } else { 0x80 | 0x40 }; // M, O
    w.put(&[RA, 0, 0, 0])?; // type, code, checksum (filled in later)
    w.put(&[64, managed])?; // cur hop limit, flags
    w.put_u16(65535)?; // router lifetime, s
    w.put_u32(0)?; // reachable time: unspecified
    w.put_u32(0)?; // retrans timer: unspecified

    w.put(&[opt::SOURCE_LL, 1])?;
    w.put(&conf.our_mac)?;
    if let Some(mtu) = conf.mtu {
        w.put(&[opt::MTU, 1, 0, 0])?;
        w.put_u32(u32::from(mtu))?;
    }
    if !v6.addr.is_unspecified() {
        let prefix_len = v6.prefix_len.min(128);
        let mask = u128::MAX.checked_shl(128 - u32::from(prefix_len)).unwrap_or(0);
        w.put(&[opt::PREFIX_INFO, 4, prefix_len, 0xc0])?; // L, A
        w.put_u32(INFINITE)?; // valid lifetime
        w.put_u32(INFINITE)?; // preferred lifetime
        w.put_u32(0)?; // reserved
        w.put(&(u128::from(v6.addr) & mask).to_be_bytes())?;
    }
    if !v6.dns.is_empty() {
        w.optional(|w| {
            // Length in units of 8 bytes: header of 8, 16 per address.
            let len = u8::try_from(1 + 2 * v6.dns.len()).map_err(|_| super::Full)?;
            w.put(&[opt::RDNSS, len, 0, 0])?;
            w.put_u32(INFINITE)?;
            v6.dns.iter().try_for_each(|a| w.put(&a.octets()))
        });
    }
    w.optional(|w| {
        let mark = w.len();
        w.put(&[opt::DNSSL, 0, 0, 0])?;
        w.put_u32(INFINITE)?;
        if super::put_dns_names(w, &conf.search)? == 0 {
            w.truncate(mark);
            return Ok(());
        }
        let n = w.len() - mark;
        w.zeros(n.next_multiple_of(8) - n)?; // padding (RFC 8106 §5.2)
        let len = u8::try_from((w.len() - mark) / 8).map_err(|_| super::Full)?;
        w.written_mut(mark + 1, 1)?.copy_from_slice(&[len]);
        Ok(())
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svc::test_util::{self, conf, hex, no_panic, GUEST_LL, GUEST_MAC, OUR_MAC};
    use etherparse::{Ethernet2Slice, Icmpv6Slice, Ipv6Slice, PacketBuilder};

    // Requests as Linux sends them from 52:54:00:12:34:56, link-local
    // fe80::5054:ff:fe12:3456: an RS to ff02::2 with a source link-layer
    // address option, an NS for fe80::1 to its solicited-node group with
    // the same option, and a DAD probe for its own link-local address.
    const LINUX_RS: &str = "\
    33330000 00025254 00123456 86dd6000 00000010 3afffe80 00000000 00005054 \
    00fffe12 3456ff02 00000000 00000000 00000000 00028500 71b50000 00000101 \
    52540012 3456 \
";
    const LINUX_NS: &str = "\
    3333ff00 00015254 00123456 86dd6000 00000020 3afffe80 00000000 00005054 \
    00fffe12 3456ff02 00000000 00000000 0001ff00 00018700 72220000 0000fe80 \
    00000000 00000000 00000000 00010101 52540012 3456 \
";
    const LINUX_DAD: &str = "\
    3333ff12 34565254 00123456 86dd6000 00000018 3aff0000 00000000 00000000 \
    00000000 0000ff02 00000000 00000000 0001ff12 34568700 c4020000 0000fe80 \
    00000000 00005054 00fffe12 3456 \
";

    // Golden replies for `conf()`, laid out independently from RFC 4861
    // and RFC 8106: the RA to the soliciting host and to all nodes, and the
    // NA for fe80::1.
    const GOLDEN_RA: &str = "\
    52540012 34569a55 9a559a55 86dd6000 00000080 3afffe80 00000000 00000000 \
    00000000 0001fe80 00000000 00005054 00fffe12 34568600 fd9e40c0 ffff0000 \
    00000000 00000101 9a559a55 9a550501 00000000 fff00304 40c0ffff ffffffff \
    ffff0000 00002001 0db80000 00000000 00000000 00001903 0000ffff ffff2001 \
    0db80000 00000000 00000000 00531f05 0000ffff ffff0765 78616d70 6c650363 \
    6f6d0003 6c616207 6578616d 706c6503 6f726700 0000 \
";
    const GOLDEN_RA_ALL: &str = "\
    33330000 00019a55 9a559a55 86dd6000 00000080 3afffe80 00000000 00000000 \
    00000000 0001ff02 00000000 00000000 00000000 00018600 80d840c0 ffff0000 \
    00000000 00000101 9a559a55 9a550501 00000000 fff00304 40c0ffff ffffffff \
    ffff0000 00002001 0db80000 00000000 00000000 00001903 0000ffff ffff2001 \
    0db80000 00000000 00000000 00531f05 0000ffff ffff0765 78616d70 6c650363 \
    6f6d0003 6c616207 6578616d 706c6503 6f726700 0000 \
";
    const GOLDEN_NA: &str = "\
    52540012 34569a55 9a559a55 86dd6000 00000020 3afffe80 00000000 00000000 \
    00000000 0001fe80 00000000 00005054 00fffe12 34568800 4761e000 0000fe80 \
    00000000 00000000 00000000 00010201 9a559a55 9a55 \
";

    fn answer_with(c: &SvcConf, frame: &[u8]) -> Result<Option<Vec<u8>>, wire::Error> {
        test_util::answer_with(handle, c, frame)
    }

    fn answer(frame: &[u8]) -> Result<Option<Vec<u8>>, wire::Error> {
        answer_with(&conf(), frame)
    }

    /// An ICMPv6 frame from the guest built by etherparse (its own checksum
    /// code): `msg` is the message from byte 4 on, after type, code and
    /// checksum.
    fn icmp(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, ty: u8, msg: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(GUEST_MAC, [0x33, 0x33, 0, 0, 0, 2])
            .ipv6(src.octets(), dst.octets(), hop_limit)
            .icmpv6_raw(ty, 0, msg[..4].try_into().unwrap());
        let mut f = vec![];
        b.write(&mut f, &msg[4..]).unwrap();
        f
    }

    /// An NS for `target` from the guest's link-local address.
    fn ns_for(target: Ipv6Addr) -> Vec<u8> {
        let mut m = vec![0; 4];
        m.extend_from_slice(&target.octets());
        icmp(GUEST_LL, solicited_node(&target), 255, NS, &m)
    }

    /// Recompute the ICMPv6 checksum of a frame without extension headers,
    /// as far as its length allows.
    fn fix_checksum(f: &mut [u8]) {
        if f.len() < 58 {
            return;
        }
        let plen = usize::from(u16::from_be_bytes([f[18], f[19]])).min(f.len() - 54);
        f[56..58].fill(0);
        let (src, dst) = (
            Ipv6Addr::from(<[u8; 16]>::try_from(&f[22..38]).unwrap()),
            Ipv6Addr::from(<[u8; 16]>::try_from(&f[38..54]).unwrap()),
        );
        let acc = crate::wire::csum::pseudo6(&src, &dst, 58, plen as u32);
        let c = crate::wire::csum::fold(crate::wire::csum::sum(acc, &f[54..54 + plen]));
        f[56..58].copy_from_slice(&c.to_be_bytes());
    }

    /// Check Ethernet and IPv6 headers and the ICMPv6 checksum of a reply
    /// with etherparse; return the ICMPv6 message.
    fn icmp_of(reply: &[u8], dst_mac: [u8; 6], dst: Ipv6Addr) -> Vec<u8> {
        let eth = Ethernet2Slice::from_slice_without_fcs(reply).unwrap();
        assert_eq!((eth.source(), eth.destination()), (OUR_MAC, dst_mac));
        let ip = Ipv6Slice::from_slice(eth.payload_slice()).unwrap();
        let h = ip.header();
        assert_eq!(h.hop_limit(), 255);
        assert_eq!(h.source_addr(), "fe80::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(h.destination_addr(), dst);
        let icmp = Icmpv6Slice::from_slice(ip.payload().payload).unwrap();
        assert!(icmp.is_checksum_valid(h.source(), h.destination()));
        icmp.slice().to_vec()
    }

    /// (type, length in bytes, data) of each NDP option.
    fn ndp_options(mut o: &[u8]) -> Vec<(u8, usize, Vec<u8>)> {
        let mut v = vec![];
        while let [ty, len, ..] = *o {
            let n = usize::from(len) * 8;
            v.push((ty, n, o[2..n].to_vec()));
            o = &o[n..];
        }
        v
    }

    #[test]
    fn linux_rs_gets_ra_with_pio_rdnss_dnssl_mtu() {
        let reply = answer(&hex(LINUX_RS)).unwrap().unwrap();
        assert_eq!(reply, hex(GOLDEN_RA), "golden RA");
        assert_eq!(&reply[56..58], &[0xfd, 0x9e], "ICMPv6 checksum");
        let ra = icmp_of(&reply, GUEST_MAC, GUEST_LL);
        assert_eq!(&ra[..2], &[RA, 0]);
        assert_eq!(ra[4], 64, "cur hop limit");
        assert_eq!(ra[5], 0xc0, "M and O");
        assert_eq!(&ra[6..8], &65535u16.to_be_bytes(), "router lifetime");
        assert_eq!(&ra[8..16], &[0; 8], "reachable time, retrans timer");
        let o = ndp_options(&ra[16..]);
        let types: Vec<u8> = o.iter().map(|(t, ..)| *t).collect();
        assert_eq!(types, [opt::SOURCE_LL, opt::MTU, opt::PREFIX_INFO, opt::RDNSS, opt::DNSSL]);
        assert_eq!(o[0].2, OUR_MAC);
        assert_eq!(o[1].2, [0, 0, 0, 0, 0xff, 0xf0], "MTU 65520");
        let pio = &o[2].2;
        assert_eq!(&pio[..2], &[64, 0xc0], "prefix length, L and A");
        assert_eq!(&pio[2..10], &[0xff; 8], "infinite lifetimes");
        let prefix: Ipv6Addr = "2001:db8::".parse().unwrap();
        assert_eq!(&pio[14..30], &prefix.octets(), "prefix, host part zeroed");
        let rdnss = &o[3].2;
        assert_eq!(&rdnss[2..6], &[0xff; 4]);
        assert_eq!(&rdnss[6..], &"2001:db8::53".parse::<Ipv6Addr>().unwrap().octets());
        let dnssl = &o[4].2;
        assert_eq!(&dnssl[2..6], &[0xff; 4]);
        assert_eq!(&dnssl[6..36], b"\x07example\x03com\x00\x03lab\x07example\x03org\x00");
        assert_eq!(&dnssl[36..], &[0; 2], "padding");
    }

    #[test]
    fn rs_from_unspecified_address_gets_ra_to_all_nodes() {
        let rs = icmp(Ipv6Addr::UNSPECIFIED, "ff02::2".parse().unwrap(), 255, RS, &[0; 4]);
        let reply = answer(&rs).unwrap().unwrap();
        assert_eq!(reply, hex(GOLDEN_RA_ALL));
        icmp_of(&reply, ALL_NODES_MAC, ALL_NODES);
    }

    #[test]
    fn rs_with_link_layer_address_from_unspecified_is_malformed() {
        let mut m = vec![0; 4];
        m.extend_from_slice(&[opt::SOURCE_LL, 1]);
        m.extend_from_slice(&GUEST_MAC);
        let rs = icmp(Ipv6Addr::UNSPECIFIED, "ff02::2".parse().unwrap(), 255, RS, &m);
        assert_eq!(answer(&rs), Err(wire::Error));
    }

    #[test]
    fn unsolicited_ra_goes_to_all_nodes() {
        let mut out = [0u8; 1600];
        let n = unsolicited_ra(&conf(), &mut out).unwrap();
        assert_eq!(out[..n], hex(GOLDEN_RA_ALL)[..]);
    }

    #[test]
    fn ra_without_optional_configuration_is_bare() {
        let mut c = conf();
        c.mtu = None;
        c.search.clear();
        c.no_dhcpv6 = true;
        let v6 = c.v6.as_mut().unwrap();
        v6.dns.clear();
        v6.addr = Ipv6Addr::UNSPECIFIED;
        let reply = answer_with(&c, &hex(LINUX_RS)).unwrap().unwrap();
        let ra = icmp_of(&reply, GUEST_MAC, GUEST_LL);
        assert_eq!(ra[5], 0, "no M, no O without DHCPv6");
        assert_eq!(ndp_options(&ra[16..]), [(opt::SOURCE_LL, 8, OUR_MAC.to_vec())]);
    }

    #[test]
    fn ra_leaves_out_rdnss_that_does_not_fit_1280_bytes() {
        let mut c = conf();
        c.v6.as_mut().unwrap().dns =
            (0..100u16).map(|i| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i)).collect();
        let reply = answer_with(&c, &hex(LINUX_RS)).unwrap().unwrap();
        assert!(reply.len() - 14 <= 1280);
        let ra = icmp_of(&reply, GUEST_MAC, GUEST_LL);
        let types: Vec<u8> = ndp_options(&ra[16..]).iter().map(|(t, ..)| *t).collect();
        assert_eq!(types, [opt::SOURCE_LL, opt::MTU, opt::PREFIX_INFO, opt::DNSSL]);
        // 72 servers fit: IPv6 40 + RA 16 + SLLA 8 + MTU 8 + PIO 32 + RDNSS
        // 8 + 16 * 72 = 1264 bytes, but then the DNSSL's 40 do not.
        c.v6.as_mut().unwrap().dns.truncate(72);
        let reply = answer_with(&c, &hex(LINUX_RS)).unwrap().unwrap();
        let ra = icmp_of(&reply, GUEST_MAC, GUEST_LL);
        let types: Vec<u8> = ndp_options(&ra[16..]).iter().map(|(t, ..)| *t).collect();
        assert_eq!(types, [opt::SOURCE_LL, opt::MTU, opt::PREFIX_INFO, opt::RDNSS]);
    }

    #[test]
    fn ns_for_gateway_gets_na_with_our_mac() {
        let reply = answer(&hex(LINUX_NS)).unwrap().unwrap();
        assert_eq!(reply, hex(GOLDEN_NA), "golden NA");
        assert_eq!(&reply[56..58], &[0x47, 0x61], "ICMPv6 checksum");
        let na = icmp_of(&reply, GUEST_MAC, GUEST_LL);
        assert_eq!(&na[..2], &[NA, 0]);
        assert_eq!(na[4], 0xe0, "Router, Solicited, Override");
        assert_eq!(&na[8..24], &"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(ndp_options(&na[24..]), [(opt::TARGET_LL, 8, OUR_MAC.to_vec())]);
    }

    #[test]
    fn ns_for_any_other_address_gets_na() {
        let target: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let reply = answer(&ns_for(target)).unwrap().unwrap();
        let na = icmp_of(&reply, GUEST_MAC, GUEST_LL);
        assert_eq!(&na[8..24], &target.octets());
    }

    #[test]
    fn dad_probe_is_ignored() {
        assert_eq!(answer(&hex(LINUX_DAD)), Ok(None));
    }

    #[test]
    fn dad_probe_not_to_solicited_node_group_is_malformed() {
        let mut m = vec![0; 4];
        m.extend_from_slice(&GUEST_LL.octets());
        let f = icmp(Ipv6Addr::UNSPECIFIED, ALL_NODES, 255, NS, &m);
        assert_eq!(answer(&f), Err(wire::Error));
    }

    #[test]
    fn ns_for_guest_own_address_is_ignored() {
        assert_eq!(answer(&ns_for("2001:db8::10".parse().unwrap())), Ok(None));
    }

    #[test]
    fn ns_for_multicast_target_is_malformed() {
        assert_eq!(answer(&ns_for(ALL_NODES)), Err(wire::Error));
    }

    #[test]
    fn bad_hop_limit_is_malformed() {
        for frame in [LINUX_RS, LINUX_NS] {
            let mut f = hex(frame);
            f[21] = 64; // the checksum does not cover the hop limit
            assert_eq!(answer(&f), Err(wire::Error));
        }
    }

    #[test]
    fn bad_checksum_is_malformed() {
        for frame in [LINUX_RS, LINUX_NS] {
            let mut f = hex(frame);
            f[57] ^= 1;
            assert_eq!(answer(&f), Err(wire::Error));
        }
    }

    #[test]
    fn bad_code_length_or_options_are_malformed() {
        let mut code = hex(LINUX_NS);
        code[55] = 1;
        let mut zero_len = hex(LINUX_RS);
        zero_len[63] = 0;
        let mut past_end = hex(LINUX_RS);
        past_end[63] = 2;
        let short_ns = icmp(GUEST_LL, "ff02::1:ff00:1".parse().unwrap(), 255, NS, &[0; 12]);
        for mut f in [code, zero_len, past_end, short_ns] {
            fix_checksum(&mut f);
            assert_eq!(answer(&f), Err(wire::Error));
        }
    }

    #[test]
    fn truncated_solicitation_is_malformed() {
        for frame in [LINUX_RS, LINUX_NS] {
            let f = hex(frame);
            for n in 0..f.len() {
                assert_eq!(answer(&f[..n]), Err(wire::Error), "length {n}");
            }
        }
    }

    #[test]
    fn other_icmpv6_is_ignored() {
        let dst = "fe80::1".parse().unwrap();
        for ty in [128u8, 129, RA, NA, 137, 143] {
            assert_eq!(answer(&icmp(GUEST_LL, dst, 64, ty, &[0; 20])), Ok(None), "type {ty}");
        }
    }

    #[test]
    fn no_ra_ignores_rs_but_answers_ns() {
        let mut c = conf();
        c.no_ra = true;
        assert_eq!(answer_with(&c, &hex(LINUX_RS)), Ok(None));
        assert_eq!(answer_with(&c, &hex(LINUX_NS)).unwrap().unwrap(), hex(GOLDEN_NA));
        assert_eq!(unsolicited_ra(&c, &mut [0u8; 1600]), None);
    }

    #[test]
    fn disabled_ndp_gives_none() {
        let mut c = conf();
        c.no_ndp = true;
        assert_eq!(answer_with(&c, &hex(LINUX_RS)), Ok(None));
        assert_eq!(answer_with(&c, &hex(LINUX_NS)), Ok(None));
        assert_eq!(unsolicited_ra(&c, &mut [0u8; 1600]), None);
        let mut c = conf();
        c.v6 = None;
        assert_eq!(answer_with(&c, &hex(LINUX_NS)), Ok(None));
        assert_eq!(unsolicited_ra(&c, &mut [0u8; 1600]), None);
    }

    #[test]
    fn out_of_out_min_bytes_holds_the_mandatory_reply() {
        let mut out = [0u8; crate::svc::OUT_MIN];
        let n = handle(&conf(), &hex(LINUX_RS), &mut out).unwrap().unwrap();
        assert_eq!(out[..n], hex(GOLDEN_RA)[..], "the whole RA fits");
        // Mandatory part: 14 + 40 + 16 + SLLA 8 + MTU 8 + PIO 32 = 118
        // bytes, RDNSS takes 24 more, DNSSL 40: with 150, DNSSL is dropped.
        let mut out = [0u8; 150];
        let n = handle(&conf(), &hex(LINUX_RS), &mut out).unwrap().unwrap();
        assert_eq!(n, 142);
        let ra = icmp_of(&out[..n], GUEST_MAC, GUEST_LL);
        let types: Vec<u8> = ndp_options(&ra[16..]).iter().map(|(t, ..)| *t).collect();
        assert_eq!(types, [opt::SOURCE_LL, opt::MTU, opt::PREFIX_INFO, opt::RDNSS]);
        assert_eq!(handle(&conf(), &hex(LINUX_RS), &mut [0u8; 118]).map(|r| r.is_some()), Ok(true));
        assert_eq!(handle(&conf(), &hex(LINUX_RS), &mut [0u8; 117]), Err(wire::Error));
        assert_eq!(unsolicited_ra(&conf(), &mut [0u8; 117]), None);
        assert_eq!(handle(&conf(), &hex(LINUX_NS), &mut [0u8; 85]), Err(wire::Error));
    }

    #[test]
    fn arbitrary_input_never_panics() {
        no_panic(handle, &hex(LINUX_RS), 54, fix_checksum);
        no_panic(handle, &hex(LINUX_NS), 62, fix_checksum);
    }
}
