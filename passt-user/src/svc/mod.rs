//! # Theory of operation
//!
//! The services answered locally, without any socket: ARP (RFC 826), DHCPv4
//! (RFC 2131/2132), NDP (RFC 4861, RFC 8106) and DHCPv6 (RFC 8415).
//!
//! Each responder is a pure function: a whole Ethernet frame from the tap in,
//! at most one reply frame out, written into a caller-supplied buffer. No
//! fds, no clock, no allocation that depends on the guest's input size.
//!
//! Return convention shared by every responder:
//! - `Ok(Some(len))`: a reply of `len` bytes was written to `out[..len]`;
//! - `Ok(None)`: the frame is well-formed but needs no answer from us;
//! - `Err(wire::Error)`: malformed; the caller drops it and counts the drop.
//!
//! Requests are parsed with etherparse's length-checked slices for Ethernet,
//! ARP, IP, UDP and ICMPv6, and with small walkers of our own for DHCP, NDP
//! and DHCPv6 options: they borrow from the frame and never allocate. dhcproto is not used on this path: its decoders allocate per
//! option and reach `debug_assert!`s and unchecked subtractions on crafted
//! option lengths (v4 Rapid Commit and Client FQDN, v6 Status Code and
//! Authentication), and its DHCPv6 domain list encoder compresses names,
//! which RFC 8415 §10 forbids. The unit tests use dhcproto as an independent
//! decoder of our replies.
//!
//! Replies are written straight into `out` through `Writer`, which never
//! grows past the slice it was given. Every reply has a mandatory part
//! (headers, message type, identifiers, the lease) and optional options (DNS,
//! search list, MTU, names); an optional option that does not fit in `out` or
//! in the protocol's size limit is left out whole, never cut. An `out` of
//! [`OUT_MIN`] bytes always holds the mandatory part; a shorter one may give
//! `Err`. Nothing here allocates: the work per frame is bounded by the frame
//! and by the configuration.
//!
//! Domain names from the configuration are written in RFC 1035 §3.1 wire
//! format, uncompressed (allowed by RFC 3397 for DHCP option 119 and required
//! by RFC 8106 §5.2 and RFC 8415 §10); a name that is not valid (empty
//! label, label over 63 bytes, name over 255 bytes, the root alone) is left
//! out of the list.

pub mod arp;
pub mod dhcp;
pub mod dhcpv6;
pub mod ndp;

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire;
use crate::wire::csum;

/// IPv4 parameters for ARP and DHCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvcV4 {
    /// Address leased to the guest (yiaddr).
    pub addr: Ipv4Addr,
    /// Prefix length (option 1).
    pub prefix_len: u8,
    /// Router (option 3) and DHCP server identifier (option 54).
    pub gw: Ipv4Addr,
    /// DNS servers (option 6); empty: option omitted.
    pub dns: Vec<Ipv4Addr>,
}

/// IPv6 parameters for NDP and DHCPv6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvcV6 {
    /// Address for IA_NA and the prefix (of `prefix_len`) for SLAAC in RAs;
    /// unspecified: no IA_NA and no prefix option.
    pub addr: Ipv6Addr,
    /// Prefix length of the RA prefix information option (64).
    pub prefix_len: u8,
    /// Our link-local address: source of RAs, NAs and DHCPv6 replies.
    pub our_ll: Ipv6Addr,
    /// RDNSS / DHCPv6 option 23; empty: omitted.
    pub dns: Vec<Ipv6Addr>,
}

/// Everything the responders need to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvcConf {
    /// Our MAC: source of every reply, target hardware address of ARP replies.
    pub our_mac: [u8; 6],
    /// MTU for DHCP option 26 and the RA MTU option; `None`: omitted.
    pub mtu: Option<u16>,
    /// IPv4 settings; `None` disables ARP and DHCP.
    pub v4: Option<SvcV4>,
    /// IPv6 settings; `None` disables NDP and DHCPv6.
    pub v6: Option<SvcV6>,
    /// Search domains (DHCP option 119, DNSSL, DHCPv6 option 24); empty: omitted.
    pub search: Vec<String>,
    /// DHCP option 12.
    pub hostname: Option<String>,
    /// DHCP option 81 / DHCPv6 option 39.
    pub fqdn: Option<String>,
    /// `--no-dhcp`.
    pub no_dhcp: bool,
    /// `--no-ndp`.
    pub no_ndp: bool,
    /// `--no-ra`: no RA, router solicitations ignored.
    pub no_ra: bool,
    /// `--no-dhcpv6`.
    pub no_dhcpv6: bool,
}

/// Smallest `out` in bytes that always holds the mandatory part of any reply
/// (the largest is a DHCPv4 reply padded to the 300-byte BOOTP minimum of
/// RFC 951 behind Ethernet, IPv4 and UDP headers: 342 bytes; a DHCPv6 reply
/// echoing a 130-byte client DUID needs less).
pub const OUT_MIN: usize = 512;

/// Ethernet II header length in bytes (RFC 894).
const ETH_HLEN: usize = 14;
/// IPv4 header length in bytes, without options (RFC 791 §3.1).
const IP4_HLEN: usize = 20;
/// IPv6 header length in bytes (RFC 8200 §3).
const IP6_HLEN: usize = 40;
/// UDP header length in bytes (RFC 768).
const UDP_HLEN: usize = 8;
/// IP protocol number of UDP.
const PROTO_UDP: u8 = 17;
/// IPv6 next header number of ICMPv6.
const PROTO_ICMPV6: u8 = 58;
/// Ethertype of IPv4.
const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype of IPv6.
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// "Infinity" for every 32-bit lifetime we send (DHCP lease time, RA prefix
/// and RDNSS/DNSSL lifetimes, DHCPv6 T1/T2 and address lifetimes).
const INFINITE: u32 = 0xffff_ffff;
/// Smallest IPv6 link MTU (RFC 8200 §5): the size limit of RAs and DHCPv6
/// replies when no larger MTU is configured.
const IPV6_MIN_MTU: usize = 1280;

/// `out` (or the protocol's size limit) has no room for what was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Full;

impl From<Full> for wire::Error {
    /// A reply whose mandatory part does not fit is dropped like a malformed
    /// request: the caller only counts it.
    fn from(_: Full) -> Self {
        wire::Error
    }
}

/// Bounded, append-only cursor over a reply buffer.
///
/// Invariant: `len <= limit <= buf.len()`; every write checks against
/// `limit` first and fails with [`Full`] without writing anything.
struct Writer<'a> {
    /// Destination.
    buf: &'a mut [u8],
    /// Bytes written so far.
    len: usize,
    /// Writes may not go past this offset.
    limit: usize,
}

impl<'a> Writer<'a> {
    /// A writer over `buf`, allowed to fill at most `limit` bytes of it.
    fn new(buf: &'a mut [u8], limit: usize) -> Self {
        let limit = limit.min(buf.len());
        Writer { buf, len: 0, limit }
    }

    /// Bytes written so far.
    fn len(&self) -> usize {
        self.len
    }

    /// Move the limit to `limit` bytes from the start, within the buffer and
    /// never below what is already written.
    fn set_limit(&mut self, limit: usize) {
        self.limit = limit.clamp(self.len, self.buf.len());
    }

    /// Current limit.
    fn limit(&self) -> usize {
        self.limit
    }

    /// Append `data`.
    fn put(&mut self, data: &[u8]) -> Result<(), Full> {
        let end = self.len.checked_add(data.len()).ok_or(Full)?;
        if end > self.limit {
            return Err(Full);
        }
        self.buf.get_mut(self.len..end).ok_or(Full)?.copy_from_slice(data);
        self.len = end;
        Ok(())
    }

    /// Append one byte.
    fn put_u8(&mut self, v: u8) -> Result<(), Full> {
        self.put(&[v])
    }

    /// Append a 16-bit value in network byte order.
    fn put_u16(&mut self, v: u16) -> Result<(), Full> {
        self.put(&v.to_be_bytes())
    }

    /// Append a 32-bit value in network byte order.
    fn put_u32(&mut self, v: u32) -> Result<(), Full> {
        self.put(&v.to_be_bytes())
    }

    /// Append `n` zero bytes.
    fn zeros(&mut self, n: usize) -> Result<(), Full> {
        let end = self.len.checked_add(n).ok_or(Full)?;
        if end > self.limit {
            return Err(Full);
        }
        self.buf.get_mut(self.len..end).ok_or(Full)?.fill(0);
        self.len = end;
        Ok(())
    }

    /// Forget everything written after the first `mark` bytes.
    fn truncate(&mut self, mark: usize) {
        self.len = self.len.min(mark);
    }

    /// Overwrite two already written bytes at `at` with `v` (network order).
    fn set_u16(&mut self, at: usize, v: u16) -> Result<(), Full> {
        self.written_mut(at, 2)?.copy_from_slice(&v.to_be_bytes());
        Ok(())
    }

    /// Already written bytes `at..at + n`, for patching lengths.
    fn written_mut(&mut self, at: usize, n: usize) -> Result<&mut [u8], Full> {
        let end = at.checked_add(n).ok_or(Full)?;
        if end > self.len {
            return Err(Full);
        }
        self.buf.get_mut(at..end).ok_or(Full)
    }

    /// Everything written so far.
    fn written(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// Run `f`; if it runs out of room, forget whatever it wrote. For
    /// optional options, which go out whole or not at all.
    fn optional(&mut self, f: impl FnOnce(&mut Self) -> Result<(), Full>) {
        let mark = self.len;
        if f(self).is_err() {
            self.truncate(mark);
        }
    }
}

/// Wire length in bytes of `name` in RFC 1035 §3.1 format (labels, each
/// behind its length byte, and the terminating zero), or `None` if `name` is
/// not a valid absolute or relative domain name: empty, the root alone, an
/// empty label, a label over 63 bytes or a name over 255 bytes. One trailing
/// dot is accepted and ignored.
fn dns_name_len(name: &str) -> Option<usize> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    let mut len = 1; // terminating zero
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        len += 1 + label.len();
    }
    (len <= 255).then_some(len)
}

/// Append `name` in RFC 1035 §3.1 wire format, uncompressed. `name` must
/// have passed [`dns_name_len`].
fn put_dns_name(w: &mut Writer<'_>, name: &str) -> Result<(), Full> {
    let name = name.strip_suffix('.').unwrap_or(name);
    for label in name.split('.') {
        w.put_u8(u8::try_from(label.len()).map_err(|_| Full)?)?;
        w.put(label.as_bytes())?;
    }
    w.put_u8(0)
}

/// Append every valid name of `names` in wire format, skipping invalid ones
/// (see [`dns_name_len`]). Returns how many were written.
fn put_dns_names(w: &mut Writer<'_>, names: &[String]) -> Result<usize, Full> {
    let mut n = 0;
    for name in names.iter().filter(|n| dns_name_len(n).is_some()) {
        put_dns_name(w, name)?;
        n += 1;
    }
    Ok(n)
}

/// Append an Ethernet II header (RFC 894): destination, source, ethertype.
fn put_eth(w: &mut Writer<'_>, dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Result<(), Full> {
    w.put(&dst)?;
    w.put(&src)?;
    w.put_u16(ethertype)
}

/// Link-layer addresses of a reply frame.
#[derive(Debug, Clone, Copy)]
struct Macs {
    /// Destination MAC.
    dst: [u8; 6],
    /// Source MAC (ours).
    src: [u8; 6],
}

/// Write an Ethernet/IPv4/UDP frame into `out`: `payload` writes the UDP
/// payload, limited so that the IPv4 packet is at most `ip_limit` bytes and
/// the frame fits `out`. The IPv4 header (RFC 791: no options, DF, TTL 64)
/// and UDP header (RFC 768) get their lengths and checksums afterwards.
/// Returns the frame length in bytes.
fn udp4_frame(
    out: &mut [u8],
    ip_limit: usize,
    macs: Macs,
    (src, sport): (Ipv4Addr, u16),
    (dst, dport): (Ipv4Addr, u16),
    payload: impl FnOnce(&mut Writer<'_>) -> Result<(), Full>,
) -> Result<usize, Full> {
    const HLEN: usize = ETH_HLEN + IP4_HLEN + UDP_HLEN;
    let limit = ip_limit.saturating_sub(IP4_HLEN + UDP_HLEN);
    let (hdr, body) = out.split_at_mut_checked(HLEN).ok_or(Full)?;
    let mut w = Writer::new(body, limit);
    payload(&mut w)?;
    let udp_len = u16::try_from(UDP_HLEN + w.len()).map_err(|_| Full)?;
    let ip_len = udp_len.checked_add(IP4_HLEN as u16).ok_or(Full)?;

    let mut h = Writer::new(hdr, HLEN);
    put_eth(&mut h, macs.dst, macs.src, ETHERTYPE_IPV4)?;
    h.put(&[0x45, 0])?; // version 4, IHL 5; DSCP/ECN 0
    h.put_u16(ip_len)?;
    h.put_u16(0)?; // identification: unused with DF (RFC 6864 §4.1)
    h.put_u16(0x4000)?; // DF, fragment offset 0
    h.put(&[64, PROTO_UDP])?;
    h.put_u16(0)?; // header checksum, below
    h.put(&src.octets())?;
    h.put(&dst.octets())?;
    let ip_csum = csum::fold(csum::sum(0, h.written().get(ETH_HLEN..).unwrap_or_default()));
    h.set_u16(ETH_HLEN + 10, ip_csum)?;

    h.put_u16(sport)?;
    h.put_u16(dport)?;
    h.put_u16(udp_len)?;
    h.put_u16(0)?; // checksum, below
    let acc = csum::pseudo4(src, dst, PROTO_UDP, udp_len);
    let acc = csum::sum(acc, h.written().get(ETH_HLEN + IP4_HLEN..).unwrap_or_default());
    let udp_csum = udp_checksum(csum::sum(acc, w.written()));
    h.set_u16(ETH_HLEN + IP4_HLEN + 6, udp_csum)?;
    Ok(HLEN + w.len())
}

/// Final UDP checksum from a running sum: a computed zero goes out as
/// 0xffff, as zero means "no checksum" (RFC 768; mandatory for IPv6 by
/// RFC 8200 §8.1).
fn udp_checksum(acc: u32) -> u16 {
    match csum::fold(acc) {
        0 => 0xffff,
        c => c,
    }
}

/// Upper-layer protocol of [`ip6_frame`], with where its checksum lives.
#[derive(Debug, Clone, Copy)]
enum L4 {
    /// UDP from port `.0` to port `.1`: we write the header.
    Udp(u16, u16),
    /// ICMPv6: `payload` writes the whole message, checksum field zero.
    Icmpv6,
}

/// Write an Ethernet/IPv6 frame into `out` (RFC 2464, RFC 8200 §3: traffic
/// class and flow label zero). For [`L4::Udp`], `payload` writes the UDP
/// payload; for [`L4::Icmpv6`], the whole ICMPv6 message. The IPv6 packet is
/// at most `ip_limit` bytes and the frame fits `out`; the L4 checksum (RFC
/// 8200 §8.1 pseudo-header) is filled in afterwards. Returns the frame length
/// in bytes.
fn ip6_frame(
    out: &mut [u8],
    ip_limit: usize,
    macs: Macs,
    (src, dst, hop_limit): (&Ipv6Addr, &Ipv6Addr, u8),
    l4: L4,
    payload: impl FnOnce(&mut Writer<'_>) -> Result<(), Full>,
) -> Result<usize, Full> {
    const HLEN: usize = ETH_HLEN + IP6_HLEN;
    let (hdr, body) = out.split_at_mut_checked(HLEN).ok_or(Full)?;
    let mut w = Writer::new(body, ip_limit.saturating_sub(IP6_HLEN));
    let (proto, csum_at) = match l4 {
        L4::Udp(sport, dport) => {
            w.put_u16(sport)?;
            w.put_u16(dport)?;
            w.put_u16(0)?; // length, below
            w.put_u16(0)?; // checksum, below
            payload(&mut w)?;
            let udp_len = u16::try_from(w.len()).map_err(|_| Full)?;
            w.set_u16(4, udp_len)?;
            (PROTO_UDP, 6)
        }
        L4::Icmpv6 => {
            payload(&mut w)?;
            (PROTO_ICMPV6, 2)
        }
    };
    let l4_len = u16::try_from(w.len()).map_err(|_| Full)?;
    let acc = csum::sum(csum::pseudo6(src, dst, proto, u32::from(l4_len)), w.written());
    let l4_csum = match l4 {
        L4::Udp(..) => udp_checksum(acc),
        L4::Icmpv6 => csum::fold(acc),
    };
    w.set_u16(csum_at, l4_csum)?;

    let mut h = Writer::new(hdr, HLEN);
    put_eth(&mut h, macs.dst, macs.src, ETHERTYPE_IPV6)?;
    h.put(&[0x60, 0, 0, 0])?; // version 6, traffic class 0, flow label 0
    h.put_u16(l4_len)?;
    h.put(&[proto, hop_limit])?;
    h.put(&src.octets())?;
    h.put(&dst.octets())?;
    Ok(HLEN + w.len())
}

/// Store the value of an option that may appear once; a repeat is an error.
///
/// # Errors
/// [`wire::Error`] if `slot` is already set (it then holds `v`).
fn once<T>(slot: &mut Option<T>, v: T) -> Result<(), wire::Error> {
    match slot.replace(v) {
        None => Ok(()),
        Some(_) => Err(wire::Error),
    }
}

/// Split a frame into its Ethernet II header fields and payload, requiring
/// `ethertype`.
///
/// # Errors
/// [`wire::Error`] if the frame is shorter than an Ethernet header or has
/// another ethertype.
fn parse_eth(frame: &[u8], ethertype: u16) -> Result<([u8; 6], &[u8]), wire::Error> {
    let eth = etherparse::Ethernet2Slice::from_slice_without_fcs(frame).map_err(|_| wire::Error)?;
    if eth.ether_type().0 != ethertype {
        return Err(wire::Error);
    }
    Ok((eth.source(), eth.payload_slice()))
}

/// A request's IPv6 addressing and L4 payload.
struct Ip6Req<'a> {
    /// Source MAC of the frame.
    src_mac: [u8; 6],
    /// IPv6 source address.
    src: Ipv6Addr,
    /// IPv6 destination address.
    dst: Ipv6Addr,
    /// Hop limit.
    hop_limit: u8,
    /// Upper-layer payload, after any extension headers, cut to the
    /// Payload Length.
    l4: &'a [u8],
}

/// Parse an Ethernet/IPv6 frame carrying `proto` (RFC 8200), extension
/// headers allowed.
///
/// # Errors
/// [`wire::Error`] if any header is short or inconsistent, the packet is a
/// fragment, or the upper-layer protocol is not `proto`.
fn parse_ip6(frame: &[u8], proto: u8) -> Result<Ip6Req<'_>, wire::Error> {
    let (src_mac, payload) = parse_eth(frame, ETHERTYPE_IPV6)?;
    let ip = etherparse::Ipv6Slice::from_slice(payload).map_err(|_| wire::Error)?;
    let l4 = ip.payload();
    if l4.fragmented || l4.ip_number.0 != proto {
        return Err(wire::Error);
    }
    let hdr = ip.header();
    Ok(Ip6Req {
        src_mac,
        src: hdr.source_addr(),
        dst: hdr.destination_addr(),
        hop_limit: hdr.hop_limit(),
        l4: l4.payload,
    })
}

/// Fixtures and harnesses shared by the responders' unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    /// Bytes from hex digits; whitespace and `|` separators are ignored.
    pub fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
        assert_eq!(digits.len() % 2, 0, "odd number of hex digits");
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    /// Our MAC in every fixture.
    pub const OUR_MAC: [u8; 6] = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55];
    /// The guest's MAC in every fixture.
    pub const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    /// The guest's IPv6 link-local address (EUI-64 of [`GUEST_MAC`]).
    pub const GUEST_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe12, 0x3456);

    /// A configuration like passt's default on a host at 192.0.2.10/24 with
    /// gateway 192.0.2.1 and 2001:db8::10/64, resolvers, a search list, MTU,
    /// hostname and FQDN.
    pub fn conf() -> SvcConf {
        SvcConf {
            our_mac: OUR_MAC,
            mtu: Some(65520),
            v4: Some(SvcV4 {
                addr: Ipv4Addr::new(192, 0, 2, 10),
                prefix_len: 24,
                gw: Ipv4Addr::new(192, 0, 2, 1),
                dns: vec![Ipv4Addr::new(192, 0, 2, 53), Ipv4Addr::new(198, 51, 100, 53)],
            }),
            v6: Some(SvcV6 {
                addr: "2001:db8::10".parse().unwrap(),
                prefix_len: 64,
                our_ll: "fe80::1".parse().unwrap(),
                dns: vec!["2001:db8::53".parse().unwrap()],
            }),
            search: vec!["example.com".into(), "lab.example.org.".into()],
            hostname: Some("guest".into()),
            fqdn: Some("guest.example.com".into()),
            no_dhcp: false,
            no_ndp: false,
            no_ra: false,
            no_dhcpv6: false,
        }
    }

    /// Xorshift64 (Marsaglia 2003): deterministic pseudo-random bytes.
    pub struct Xorshift(pub u64);

    impl Xorshift {
        /// Next 64-bit value.
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// Uniform-ish value below `n` (n > 0).
        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Responder signature shared by the four services.
    pub type Handle = fn(&SvcConf, &[u8], &mut [u8]) -> Result<Option<usize>, wire::Error>;

    /// Run `handle` on `frame` with a 64 KiB `out`; the reply as a vector.
    pub fn answer_with(
        handle: Handle,
        c: &SvcConf,
        frame: &[u8],
    ) -> Result<Option<Vec<u8>>, wire::Error> {
        let mut out = vec![0u8; 65536 + 14];
        Ok(handle(c, frame, &mut out)?.map(|n| out[..n].to_vec()))
    }

    /// Feed `handle` every truncation of `valid`, random mutations of it
    /// (passed through `fixup`, which may repair a checksum so that the
    /// mutation reaches the deeper parser), random tails behind its first
    /// `keep` bytes, and random byte strings, with `out` buffers of random
    /// sizes too. Passes if nothing panics and every reported length lies
    /// within `out`.
    pub fn no_panic(handle: Handle, valid: &[u8], keep: usize, fixup: fn(&mut [u8])) {
        let conf = conf();
        let mut out = vec![0u8; 65536 + 14];
        let check = |frame: &[u8], out: &mut [u8]| {
            if let Ok(Some(n)) = handle(&conf, frame, out) {
                assert!(n <= out.len());
            }
        };
        for n in 0..=valid.len() {
            check(&valid[..n], &mut out);
        }
        let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let mut f = valid.to_vec();
            for _ in 0..=rng.below(8) {
                let i = rng.below(f.len());
                f[i] = rng.next() as u8;
            }
            fixup(&mut f);
            check(&f, &mut out);
            let olen = rng.below(700);
            check(&f, &mut out[..olen]);
        }
        for _ in 0..3000 {
            let mut f = valid[..keep.min(valid.len())].to_vec();
            f.extend((0..rng.below(600)).map(|_| rng.next() as u8));
            fixup(&mut f);
            check(&f, &mut out);
        }
        for _ in 0..3000 {
            let f: Vec<u8> = (0..rng.below(1500)).map(|_| rng.next() as u8).collect();
            check(&f, &mut out);
        }
    }
}
