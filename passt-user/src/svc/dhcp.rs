//! # Theory of operation
//!
//! DHCPv4 server (RFC 2131, options from RFC 2132) with exactly one lease:
//! `conf.v4.addr`, forever. There is no lease table and no state: the
//! answer depends only on the request and the configuration.
//!
//! | request                           | reply                         |
//! |-----------------------------------|-------------------------------|
//! | DISCOVER                          | OFFER                         |
//! | DISCOVER with Rapid Commit (80)   | ACK with Rapid Commit (RFC 4039) |
//! | REQUEST for our address           | ACK                           |
//! | REQUEST for another address       | NAK                           |
//! | REQUEST naming another server (54)| nothing: the client chose it  |
//! | anything else, or no type (BOOTP) | nothing                       |
//!
//! "The requested address" is option 50 if present, else `ciaddr`
//! (RENEWING/REBINDING, RFC 2131 §4.3.2); a REQUEST with neither is ACKed.
//!
//! OFFER and ACK carry: message type (53), server identifier (54) = gateway,
//! lease time (51) = infinite, subnet mask (1), router (3), and when
//! configured DNS (6), hostname (12), interface MTU (26), client FQDN (81,
//! RFC 4702), domain search (119, RFC 3397) and, when the gateway is outside
//! the guest's subnet, classless static routes (121, RFC 3442): a host route
//! to the gateway (on-link, router 0.0.0.0) and the default route via it, as
//! RFC 3442 makes clients ignore option 3 when 121 is present. NAK carries
//! only 53 and 54 (RFC 2131 Table 3).
//!
//! Option order: 53 first (some DOS-era clients require it), then 54 and
//! 51, then what the client asked for in its parameter request list (55) in
//! its order, then the rest by code. Options longer than 255 bytes are split
//! into consecutive instances (RFC 3396). The reply's IP datagram is at most
//! 576 bytes, or the client's maximum message size (57) capped to the MTU;
//! an optional option that does not fit is left out whole. BOOTP messages
//! are padded to 300 bytes (RFC 951).
//!
//! The reply comes from `conf.our_mac` and the gateway, UDP 67 to 68, to
//! `chaddr` and to 255.255.255.255 if the broadcast flag is set, `ciaddr` is
//! 0.0.0.0 or it is a NAK (RFC 2131 §4.1), else to the leased address.
//!
//! Limits: Ethernet clients only (htype 1, hlen 6); no relay agents
//! (`giaddr` is echoed, nothing is sent to it); option overload (52) is not
//! followed into `sname`/`file`; of a repeated parameter request list only
//! the first instance counts. Incoming UDP checksums are not verified: with
//! checksum offload, guests may hand us partial ones. The IPv4 header
//! checksum is verified.

use std::net::Ipv4Addr;

use super::{once, udp4_frame, Macs, SvcConf, SvcV4, Writer, ETHERTYPE_IPV4, INFINITE, IP4_HLEN};
use crate::wire;

/// DHCP server port.
const PORT_SERVER: u16 = 67;
/// DHCP client port.
const PORT_CLIENT: u16 = 68;
/// BOOTP op of requests.
const BOOTREQUEST: u8 = 1;
/// BOOTP op of replies.
const BOOTREPLY: u8 = 2;
/// Offset of `xid` in a BOOTP message (RFC 2131 §2, Figure 1).
const XID_AT: usize = 4;
/// Offset of `flags`.
const FLAGS_AT: usize = 10;
/// Offset of `ciaddr`.
const CIADDR_AT: usize = 12;
/// Offset of `giaddr`.
const GIADDR_AT: usize = 24;
/// Offset of `chaddr` (16 bytes).
const CHADDR_AT: usize = 28;
/// Offset of the magic cookie, right after `file`.
const MAGIC_AT: usize = 236;
/// Offset of the options.
const OPTIONS_AT: usize = 240;
/// The magic cookie (RFC 2131 §3).
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Broadcast bit of `flags` (RFC 2131 §2, Figure 2).
const FLAG_BROADCAST: u16 = 0x8000;
/// Minimum BOOTP message length (RFC 951), and so of our replies.
const BOOTP_MIN: usize = 300;
/// IP datagram size every client accepts (RFC 2131 §2).
const DATAGRAM_MIN: usize = 576;

/// Option codes (RFC 2132 unless noted).
mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const MTU: u8 = 26;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const MSG_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAM_REQUEST_LIST: u8 = 55;
    pub const MAX_MSG_SIZE: u8 = 57;
    /// RFC 4039.
    pub const RAPID_COMMIT: u8 = 80;
    /// RFC 4702.
    pub const CLIENT_FQDN: u8 = 81;
    /// RFC 3397.
    pub const DOMAIN_SEARCH: u8 = 119;
    /// RFC 3442.
    pub const CLASSLESS_ROUTES: u8 = 121;
    pub const END: u8 = 255;
}

/// DHCP message types (option 53).
mod msg {
    pub const DISCOVER: u8 = 1;
    pub const OFFER: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const ACK: u8 = 5;
    pub const NAK: u8 = 6;
}

/// Client FQDN (81) flags (RFC 4702 §2.1).
mod fqdn_flag {
    /// Client: "server, please update A RRs".
    pub const S: u8 = 0x01;
    /// Server: "I overrode your S".
    pub const O: u8 = 0x02;
    /// Domain name in canonical wire format.
    pub const E: u8 = 0x04;
}

/// Options we may send beyond the mandatory ones, in the order used for
/// those the client did not ask for.
const OPTIONAL: [u8; 8] = [
    opt::SUBNET_MASK,
    opt::ROUTER,
    opt::DNS,
    opt::HOSTNAME,
    opt::MTU,
    opt::CLIENT_FQDN,
    opt::DOMAIN_SEARCH,
    opt::CLASSLESS_ROUTES,
];

/// What we need of a request; borrows from the frame.
#[derive(Debug)]
struct Request<'a> {
    /// BOOTP fixed part: `xid`, `flags`, `ciaddr`, `giaddr`, `chaddr`.
    fixed: &'a [u8],
    /// Option 53, if present.
    msg_type: Option<u8>,
    /// Option 50.
    requested: Option<Ipv4Addr>,
    /// Option 54.
    server_id: Option<Ipv4Addr>,
    /// Option 55 (first instance), empty if absent.
    prl: &'a [u8],
    /// Option 57, bytes.
    max_size: Option<u16>,
    /// Option 80 present.
    rapid_commit: bool,
    /// Flags of option 81, if present.
    fqdn_flags: Option<u8>,
}

impl Request<'_> {
    /// 4 bytes at `at` of the fixed part.
    fn quad(&self, at: usize) -> [u8; 4] {
        self.fixed.get(at..at + 4).and_then(|s| s.try_into().ok()).unwrap_or_default()
    }

    /// `ciaddr`.
    fn ciaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.quad(CIADDR_AT))
    }

    /// `flags`, host order.
    fn flags(&self) -> u16 {
        let f = self.fixed.get(FLAGS_AT..FLAGS_AT + 2).unwrap_or_default();
        f.first().zip(f.get(1)).map_or(0, |(h, l)| u16::from_be_bytes([*h, *l]))
    }

    /// First 6 bytes of `chaddr`: the client's MAC.
    fn mac(&self) -> [u8; 6] {
        self.fixed.get(CHADDR_AT..CHADDR_AT + 6).and_then(|s| s.try_into().ok()).unwrap_or_default()
    }
}

/// Fixed-length option data of exactly `N` bytes.
fn exact<const N: usize>(data: &[u8]) -> Result<[u8; N], wire::Error> {
    data.try_into().map_err(|_| wire::Error)
}

/// Parse a BOOTP/DHCP message (the UDP payload).
///
/// # Errors
/// [`wire::Error`] if it is shorter than 240 bytes, not a BOOTREQUEST, not
/// Ethernet (htype 1, hlen 6), lacks the magic cookie, if an option runs
/// past the end, or if option 53, 50, 54, 57 or 80 has the wrong length or
/// comes twice.
fn parse(m: &[u8]) -> Result<Request<'_>, wire::Error> {
    let fixed = m.get(..OPTIONS_AT).ok_or(wire::Error)?;
    if fixed.get(..3) != Some(&[BOOTREQUEST, 1, 6][..]) || fixed.get(MAGIC_AT..) != Some(&MAGIC[..])
    {
        return Err(wire::Error);
    }
    let mut req = Request {
        fixed,
        msg_type: None,
        requested: None,
        server_id: None,
        prl: &[],
        max_size: None,
        rapid_commit: false,
        fqdn_flags: None,
    };
    let mut seen_prl = false;
    let mut rest = m.get(OPTIONS_AT..).unwrap_or_default();
    loop {
        let (code, data) = match rest {
            [] | [opt::END, ..] => break,
            [opt::PAD, tail @ ..] => {
                rest = tail;
                continue;
            }
            [code, len, tail @ ..] => {
                let (data, tail) = tail.split_at_checked(usize::from(*len)).ok_or(wire::Error)?;
                rest = tail;
                (*code, data)
            }
            [_] => return Err(wire::Error),
        };
        match code {
            opt::MSG_TYPE => once(&mut req.msg_type, exact::<1>(data)?[0])?,
            opt::REQUESTED_IP => once(&mut req.requested, Ipv4Addr::from(exact::<4>(data)?))?,
            opt::SERVER_ID => once(&mut req.server_id, Ipv4Addr::from(exact::<4>(data)?))?,
            opt::MAX_MSG_SIZE => once(&mut req.max_size, u16::from_be_bytes(exact::<2>(data)?))?,
            opt::RAPID_COMMIT => {
                if !data.is_empty() || req.rapid_commit {
                    return Err(wire::Error);
                }
                req.rapid_commit = true;
            }
            opt::PARAM_REQUEST_LIST if !seen_prl => {
                seen_prl = true;
                req.prl = data;
            }
            opt::CLIENT_FQDN if req.fqdn_flags.is_none() => {
                // Flags, RCODE1, RCODE2, then the name (RFC 4702 §2).
                if data.len() < 3 {
                    return Err(wire::Error);
                }
                req.fqdn_flags = data.first().copied();
            }
            _ => {}
        }
    }
    Ok(req)
}

/// Answer a DHCPv4 request with one infinite lease of `conf.v4.addr`
/// (RFC 2131, RFC 2132; see the module documentation for the options).
///
/// `frame` is a whole Ethernet II frame carrying IPv4/UDP to port 67. On a
/// reply, `out[..len]` holds an Ethernet/IPv4/UDP frame from
/// `conf.our_mac`, `conf.v4.gw`:67 to the client's `chaddr`:68, with valid
/// IPv4 header and UDP checksums; all fields in network byte order.
///
/// Returns `Ok(None)` without looking at `frame` if `conf.no_dhcp` is set
/// or `conf.v4` is `None`; otherwise `Ok(None)` for message types other than
/// DISCOVER and REQUEST, for BOOTP requests (no option 53) and for a REQUEST
/// whose server identifier (54) is not `conf.v4.gw`.
///
/// # Errors
/// [`wire::Error`] if any header is short or inconsistent (ethertype, IPv4
/// header and total length, header checksum, fragment, protocol, UDP length,
/// destination port), or the DHCP message is malformed (see `parse`); also
/// if `out` is too short for the mandatory part of the reply (never with
/// [`super::OUT_MIN`] bytes).
///
/// # Panics
/// Never.
pub fn handle(conf: &SvcConf, frame: &[u8], out: &mut [u8]) -> Result<Option<usize>, wire::Error> {
    let Some(v4) = conf.v4.as_ref().filter(|_| !conf.no_dhcp) else {
        return Ok(None);
    };
    let payload = udp4_payload(frame)?;
    let req = parse(payload)?;

    let reply_type = match req.msg_type {
        Some(msg::DISCOVER) if req.rapid_commit => msg::ACK,
        Some(msg::DISCOVER) => msg::OFFER,
        Some(msg::REQUEST) => {
            if req.server_id.is_some_and(|id| id != v4.gw) {
                return Ok(None);
            }
            let ciaddr = Some(req.ciaddr()).filter(|a| !a.is_unspecified());
            match req.requested.or(ciaddr) {
                Some(a) if a != v4.addr => msg::NAK,
                _ => msg::ACK,
            }
        }
        _ => return Ok(None),
    };

    let cap = conf.mtu.map_or(1500, usize::from).max(DATAGRAM_MIN);
    let ip_limit = req.max_size.map_or(DATAGRAM_MIN, |m| usize::from(m).clamp(DATAGRAM_MIN, cap));
    let broadcast = reply_type == msg::NAK
        || req.flags() & FLAG_BROADCAST != 0
        || req.ciaddr().is_unspecified();
    let dst = if broadcast { Ipv4Addr::BROADCAST } else { v4.addr };
    let macs = Macs { dst: req.mac(), src: conf.our_mac };
    let len = udp4_frame(out, ip_limit, macs, (v4.gw, PORT_SERVER), (dst, PORT_CLIENT), |w| {
        put_reply(w, conf, v4, &req, reply_type)
    })?;
    Ok(Some(len))
}

/// The UDP payload of an Ethernet/IPv4/UDP frame to port 67.
///
/// # Errors
/// See [`handle`].
fn udp4_payload(frame: &[u8]) -> Result<&[u8], wire::Error> {
    let (_, l3) = super::parse_eth(frame, ETHERTYPE_IPV4)?;
    let ip = etherparse::Ipv4Slice::from_slice(l3).map_err(|_| wire::Error)?;
    let hdr = ip.header().slice();
    if hdr.len() < IP4_HLEN || super::csum::fold(super::csum::sum(0, hdr)) != 0 {
        return Err(wire::Error);
    }
    let l4 = ip.payload();
    if l4.fragmented || l4.ip_number.0 != super::PROTO_UDP {
        return Err(wire::Error);
    }
    let udp = etherparse::UdpSlice::from_slice(l4.payload).map_err(|_| wire::Error)?;
    if usize::from(udp.length()) != l4.payload.len() || udp.destination_port() != PORT_SERVER {
        return Err(wire::Error);
    }
    Ok(udp.payload())
}

/// Write the BOOTP/DHCP reply of type `reply_type` to `req`.
fn put_reply(
    w: &mut Writer<'_>,
    conf: &SvcConf,
    v4: &SvcV4,
    req: &Request<'_>,
    reply_type: u8,
) -> Result<(), super::Full> {
    let nak = reply_type == msg::NAK;
    w.put(&[BOOTREPLY, 1, 6, 0])?; // op, htype, hlen, hops
    w.put(req.fixed.get(XID_AT..XID_AT + 4).unwrap_or_default())?;
    w.put_u16(0)?; // secs
    w.put_u16(req.flags())?;
    // ciaddr is echoed in ACKs only, yiaddr is ours except in NAKs
    // (RFC 2131 Table 3); siaddr is 0, giaddr echoed.
    let ciaddr = if reply_type == msg::ACK { req.ciaddr() } else { Ipv4Addr::UNSPECIFIED };
    let yiaddr = if nak { Ipv4Addr::UNSPECIFIED } else { v4.addr };
    w.put(&ciaddr.octets())?;
    w.put(&yiaddr.octets())?;
    w.put(&Ipv4Addr::UNSPECIFIED.octets())?;
    w.put(&req.quad(GIADDR_AT))?;
    w.put(req.fixed.get(CHADDR_AT..CHADDR_AT + 16).unwrap_or_default())?;
    w.zeros(64 + 128)?; // sname, file
    w.put(&MAGIC)?;

    // Keep one byte for End while options go in.
    let limit = w.limit();
    w.set_limit(limit.saturating_sub(1));
    put_opt(w, opt::MSG_TYPE, |w| w.put_u8(reply_type))?;
    put_opt(w, opt::SERVER_ID, |w| w.put(&v4.gw.octets()))?;
    if !nak {
        put_opt(w, opt::LEASE_TIME, |w| w.put_u32(INFINITE))?;
        if req.rapid_commit {
            put_opt(w, opt::RAPID_COMMIT, |_| Ok(()))?;
        }
        let mut done = [false; 256];
        for &code in req.prl.iter().chain(OPTIONAL.iter()) {
            if let Some(d) = done.get_mut(usize::from(code)) {
                if !*d {
                    *d = true;
                    w.optional(|w| put_optional(w, conf, v4, req, code));
                }
            }
        }
    }
    w.set_limit(limit);
    w.put_u8(opt::END)?;
    if w.len() < BOOTP_MIN {
        w.zeros(BOOTP_MIN - w.len())?;
    }
    Ok(())
}

/// Write optional option `code` if we have something for it.
fn put_optional(
    w: &mut Writer<'_>,
    conf: &SvcConf,
    v4: &SvcV4,
    req: &Request<'_>,
    code: u8,
) -> Result<(), super::Full> {
    let mask = prefix_mask(v4.prefix_len);
    match code {
        opt::SUBNET_MASK => put_opt(w, code, |w| w.put_u32(mask)),
        opt::ROUTER => put_opt(w, code, |w| w.put(&v4.gw.octets())),
        opt::DNS => put_opt(w, code, |w| v4.dns.iter().try_for_each(|a| w.put(&a.octets()))),
        opt::HOSTNAME => match &conf.hostname {
            Some(h) => put_opt(w, code, |w| w.put(h.as_bytes())),
            None => Ok(()),
        },
        opt::MTU => match conf.mtu {
            Some(mtu) => put_opt(w, code, |w| w.put_u16(mtu)),
            None => Ok(()),
        },
        opt::CLIENT_FQDN => match conf.fqdn.as_deref().filter(|f| super::dns_name_len(f).is_some())
        {
            Some(fqdn) => put_opt(w, code, |w| {
                // We never update DNS: if asked to (S), say we overrode it.
                let o = if req.fqdn_flags.is_some_and(|f| f & fqdn_flag::S != 0) {
                    fqdn_flag::O
                } else {
                    0
                };
                // RCODE1/2: 255 from servers (RFC 4702 §2.2).
                w.put(&[fqdn_flag::E | o, 255, 255])?;
                super::put_dns_name(w, fqdn)
            }),
            None => Ok(()),
        },
        opt::DOMAIN_SEARCH => {
            put_opt(w, code, |w| super::put_dns_names(w, &conf.search).map(|_| ()))
        }
        opt::CLASSLESS_ROUTES if u32::from(v4.addr) & mask != u32::from(v4.gw) & mask => {
            put_opt(w, code, |w| {
                // gw/32 on-link (router 0.0.0.0), then 0/0 via gw
                // (RFC 3442: width, significant octets, router).
                w.put_u8(32)?;
                w.put(&v4.gw.octets())?;
                w.put(&Ipv4Addr::UNSPECIFIED.octets())?;
                w.put_u8(0)?;
                w.put(&v4.gw.octets())
            })
        }
        _ => Ok(()),
    }
}

/// Netmask of `prefix_len` bits, host order; lengths over 32 count as 32.
fn prefix_mask(prefix_len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix_len.min(32))).unwrap_or(0)
}

/// Write option `code` whose data `data` writes: header, data, and, for data
/// over 255 bytes, further instances of the option carrying the rest (RFC
/// 3396 §5). Nothing is written if `data` writes nothing, except for Rapid
/// Commit, which has no data by definition.
fn put_opt(
    w: &mut Writer<'_>,
    code: u8,
    data: impl FnOnce(&mut Writer<'_>) -> Result<(), super::Full>,
) -> Result<(), super::Full> {
    let mark = w.len();
    w.put(&[code, 0])?;
    data(w)?;
    let n = w.len().saturating_sub(mark + 2);
    if n == 0 && code != opt::RAPID_COMMIT {
        w.truncate(mark);
        return Ok(());
    }
    // Instances after the first need a header each: make room, then move
    // every 255-byte chunk but the first into place, last one first, so that
    // no chunk is overwritten before it moves. Chunk i goes from 2 + 255 i
    // to 2 + 257 i, relative to `mark`.
    let chunks = n.div_ceil(255).max(1);
    w.zeros(2 * (chunks - 1))?;
    let buf = w.written_mut(mark, n + 2 * chunks)?;
    for i in (0..chunks).rev() {
        let len = (n - 255 * i).min(255);
        let (from, to) = (2 + 255 * i, 2 + 257 * i);
        if to + len > buf.len() {
            return Err(super::Full); // unreachable: the sizes add up
        }
        buf.copy_within(from..from + len, to);
        if let Some(hdr) = buf.get_mut(to - 2..to) {
            hdr.copy_from_slice(&[code, len as u8]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svc::test_util::{self, conf, hex, no_panic, GUEST_MAC, OUR_MAC};
    use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
    use dhcproto::Decodable;
    use etherparse::{Ethernet2Slice, Ipv4Slice, UdpSlice};

    // Requests as busybox udhcpc 1.36 sends them from 52:54:00:12:34:56:
    // raw socket (IP id 0, no DF, TTL 64), 0.0.0.0:68 to 255.255.255.255:67,
    // xid 3903f326, options 53, 61 (01 + MAC), 57 = 576, 55 = [1 3 6 12 15
    // 28 42], 60 = "udhcp 1.36.1", padded to a 300-byte BOOTP message. The
    // REQUEST adds 50 = 192.0.2.10 and 54 = 192.0.2.1; REQUEST_OTHER asks
    // for 192.0.2.99.
    const DISCOVER: &str = "\
    ffffffff ffff5254 00123456 08004500 01480000 00004011 79a60000 0000ffff \
    ffff0044 00430134 8aa60101 06003903 f3260000 00000000 00000000 00000000 \
    00000000 00005254 00123456 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00006382 53633501 013d0701 \
    52540012 34563902 02403707 0103060c 0f1c2a3c 0c756468 63702031 2e33362e \
    31ff0000 00000000 00000000 00000000 00000000 0000 \
";
    const REQUEST: &str = "\
    ffffffff ffff5254 00123456 08004500 01480000 00004011 79a60000 0000ffff \
    ffff0044 00430134 9c910101 06003903 f3260000 00000000 00000000 00000000 \
    00000000 00005254 00123456 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00006382 53633501 033d0701 \
    52540012 34563204 c000020a 3604c000 02013902 02403707 0103060c 0f1c2a3c \
    0c756468 63702031 2e33362e 31ff0000 00000000 0000 \
";
    const REQUEST_OTHER: &str = "\
    ffffffff ffff5254 00123456 08004500 01480000 00004011 79a60000 0000ffff \
    ffff0044 00430134 9c380101 06003903 f3260000 00000000 00000000 00000000 \
    00000000 00005254 00123456 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00006382 53633501 033d0701 \
    52540012 34563204 c0000263 3604c000 02013902 02403707 0103060c 0f1c2a3c \
    0c756468 63702031 2e33362e 31ff0000 00000000 0000 \
";

    // Golden replies for `conf()`, laid out independently from RFC 2131
    // and 2132: 53, 54, 51, then the PRL's 1, 3, 6, 12, then 26, 81, 119.
    const OFFER: &str = "\
    52540012 34569a55 9a559a55 08004500 01750000 40004011 7777c000 0201ffff \
    ffff0043 00440161 85160201 06003903 f3260000 00000000 0000c000 020a0000 \
    00000000 00005254 00123456 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00006382 53633501 023604c0 \
    00020133 04ffffff ff0104ff ffff0003 04c00002 010608c0 000235c6 3364350c \
    05677565 73741a02 fff05116 04ffff05 67756573 74076578 616d706c 6503636f \
    6d00771e 07657861 6d706c65 03636f6d 00036c61 62076578 616d706c 65036f72 \
    6700ff \
";
    const ACK: &str = "\
    52540012 34569a55 9a559a55 08004500 01750000 40004011 7777c000 0201ffff \
    ffff0043 00440161 82160201 06003903 f3260000 00000000 0000c000 020a0000 \
    00000000 00005254 00123456 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00006382 53633501 053604c0 \
    00020133 04ffffff ff0104ff ffff0003 04c00002 010608c0 000235c6 3364350c \
    05677565 73741a02 fff05116 04ffff05 67756573 74076578 616d706c 6503636f \
    6d00771e 07657861 6d706c65 03636f6d 00036c61 62076578 616d706c 65036f72 \
    6700ff \
";
    const NAK: &str = "\
    52540012 34569a55 9a559a55 08004500 01480000 40004011 77a4c000 0201ffff \
    ffff0043 00440134 87380201 06003903 f3260000 00000000 00000000 00000000 \
    00000000 00005254 00123456 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 00006382 53633501 063604c0 \
    000201ff 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
    00000000 00000000 00000000 00000000 00000000 0000 \
";

    /// Offset of the BOOTP message in a request or reply frame.
    const BOOTP_AT: usize = 14 + 20 + 8;

    fn answer_with(c: &SvcConf, frame: &[u8]) -> Result<Option<Vec<u8>>, wire::Error> {
        test_util::answer_with(handle, c, frame)
    }

    fn answer(frame: &[u8]) -> Result<Option<Vec<u8>>, wire::Error> {
        answer_with(&conf(), frame)
    }

    /// Rewrite the BOOTP options of a udhcpc request (keeping the fixed
    /// part) and fix up IPv4 and UDP lengths and checksums.
    fn with_options(frame: &[u8], opts: &[u8]) -> Vec<u8> {
        let mut m = frame[BOOTP_AT..BOOTP_AT + OPTIONS_AT].to_vec();
        m.extend_from_slice(opts);
        reframe(frame, &m)
    }

    /// Put BOOTP message `m` behind the Ethernet, IPv4 and UDP headers of
    /// `frame`, with lengths and checksums recomputed.
    fn reframe(frame: &[u8], m: &[u8]) -> Vec<u8> {
        let mut f = frame[..BOOTP_AT].to_vec();
        f.extend_from_slice(m);
        let ip_len = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        fix_ip_checksum(&mut f);
        f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
        f[40..42].fill(0); // UDP checksum: not verified on input
        f
    }

    /// Recompute the IPv4 header checksum of a frame (20-byte header).
    fn fix_ip_checksum(f: &mut [u8]) {
        f[24..26].fill(0);
        let c = crate::wire::csum::fold(crate::wire::csum::sum(0, &f[14..34]));
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }

    /// Check Ethernet, IPv4 and UDP headers and checksums of a reply with
    /// etherparse, and decode its DHCP message with dhcproto.
    fn decode(reply: &[u8], dst_ip: Ipv4Addr) -> Message {
        let eth = Ethernet2Slice::from_slice_without_fcs(reply).unwrap();
        assert_eq!(eth.source(), OUR_MAC);
        assert_eq!(eth.destination(), GUEST_MAC);
        let ip = Ipv4Slice::from_slice(eth.payload_slice()).unwrap();
        let hdr = ip.header().to_header();
        assert_eq!(hdr.header_checksum, hdr.calc_header_checksum());
        assert_eq!(ip.header().source_addr(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(ip.header().destination_addr(), dst_ip);
        assert_eq!(usize::from(ip.header().total_len()), reply.len() - 14);
        let udp = UdpSlice::from_slice(ip.payload().payload).unwrap();
        assert_eq!((udp.source_port(), udp.destination_port()), (67, 68));
        let uh = udp.to_header();
        assert_eq!(uh.checksum, uh.calc_checksum_ipv4(&hdr, udp.payload()).unwrap());
        Message::from_bytes(udp.payload()).unwrap()
    }

    /// Option codes of a reply, in wire order.
    fn codes(reply: &[u8]) -> Vec<u8> {
        let mut v = vec![];
        let mut o = &reply[BOOTP_AT + OPTIONS_AT..];
        while let [code, len, rest @ ..] = o {
            if *code == opt::END {
                break;
            }
            v.push(*code);
            o = &rest[usize::from(*len)..];
        }
        v
    }

    #[test]
    fn udhcpc_discover_gets_offer_with_all_options() {
        let reply = answer(&hex(DISCOVER)).unwrap().unwrap();
        assert_eq!(hex(OFFER), reply, "golden OFFER");
        assert_eq!(&reply[24..26], &[0x77, 0x77], "IPv4 header checksum");
        assert_eq!(&reply[40..42], &[0x85, 0x16], "UDP checksum");

        let m = decode(&reply, Ipv4Addr::BROADCAST);
        assert_eq!(m.opcode(), dhcproto::v4::Opcode::BootReply);
        assert_eq!(m.xid(), 0x3903_f326);
        assert_eq!(m.yiaddr(), Ipv4Addr::new(192, 0, 2, 10));
        assert_eq!(m.ciaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(m.siaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(&m.chaddr()[..6], &GUEST_MAC);
        let o = m.opts();
        assert_eq!(o.msg_type(), Some(MessageType::Offer));
        let gw = Ipv4Addr::new(192, 0, 2, 1);
        assert_eq!(o.get(OptionCode::ServerIdentifier), Some(&DhcpOption::ServerIdentifier(gw)));
        assert_eq!(
            o.get(OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(u32::MAX))
        );
        assert_eq!(
            o.get(OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
        );
        assert_eq!(o.get(OptionCode::Router), Some(&DhcpOption::Router(vec![gw])));
        assert_eq!(
            o.get(OptionCode::DomainNameServer),
            Some(&DhcpOption::DomainNameServer(vec![
                Ipv4Addr::new(192, 0, 2, 53),
                Ipv4Addr::new(198, 51, 100, 53)
            ]))
        );
        assert_eq!(o.get(OptionCode::Hostname), Some(&DhcpOption::Hostname("guest".into())));
        assert_eq!(o.get(OptionCode::InterfaceMtu), Some(&DhcpOption::InterfaceMtu(65520)));
        let Some(DhcpOption::DomainSearch(names)) = o.get(OptionCode::DomainSearch) else {
            panic!("no option 119")
        };
        let names: Vec<String> = names.iter().map(|n| n.to_ascii()).collect();
        assert_eq!(names, ["example.com.", "lab.example.org."]);
        let Some(DhcpOption::ClientFQDN(fqdn)) = o.get(OptionCode::ClientFQDN) else {
            panic!("no option 81")
        };
        assert_eq!(u8::from(fqdn.flags()), fqdn_flag::E);
        assert_eq!((fqdn.r1(), fqdn.r2()), (255, 255));
        assert_eq!(fqdn.domain().to_ascii(), "guest.example.com.");
        assert!(o.get(OptionCode::ClasslessStaticRoute).is_none(), "gateway is on-link");
        assert!(o.get(OptionCode::RapidCommit).is_none());
        assert_eq!(o.len(), 10, "no other option");
        assert_eq!(codes(&reply), [53, 54, 51, 1, 3, 6, 12, 26, 81, 119]);
    }

    #[test]
    fn udhcpc_request_for_our_address_gets_ack() {
        let reply = answer(&hex(REQUEST)).unwrap().unwrap();
        assert_eq!(hex(ACK), reply, "golden ACK");
        let m = decode(&reply, Ipv4Addr::BROADCAST);
        assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(m.yiaddr(), Ipv4Addr::new(192, 0, 2, 10));
    }

    #[test]
    fn request_for_another_address_gets_nak() {
        let reply = answer(&hex(REQUEST_OTHER)).unwrap().unwrap();
        assert_eq!(hex(NAK), reply, "golden NAK");
        let m = decode(&reply, Ipv4Addr::BROADCAST);
        assert_eq!(m.opts().msg_type(), Some(MessageType::Nak));
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert!(m.opts().get(OptionCode::AddressLeaseTime).is_none());
        assert_eq!(codes(&reply), [53, 54]);
    }

    #[test]
    fn request_selecting_another_server_is_ignored() {
        let mut f = hex(REQUEST);
        // Option 54 data of udhcpc's REQUEST: 192.0.2.1 -> 192.0.2.2.
        let at = f.windows(6).position(|w| w == [54, 4, 192, 0, 2, 1]).unwrap();
        f[at + 5] = 2;
        assert_eq!(answer(&f), Ok(None));
    }

    #[test]
    fn renewing_request_is_acked_by_unicast_with_ciaddr() {
        // RENEWING (RFC 2131 §4.3.2): ciaddr set, no options 50 and 54.
        let mut m = hex(REQUEST)[BOOTP_AT..BOOTP_AT + OPTIONS_AT].to_vec();
        m[CIADDR_AT..CIADDR_AT + 4].copy_from_slice(&[192, 0, 2, 10]);
        m.extend_from_slice(&[53, 1, 3, 55, 2, 1, 3, 255]);
        let reply = answer(&reframe(&hex(REQUEST), &m)).unwrap().unwrap();
        let msg = decode(&reply, Ipv4Addr::new(192, 0, 2, 10));
        assert_eq!(msg.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(msg.ciaddr(), Ipv4Addr::new(192, 0, 2, 10));
        assert_eq!(reply.len(), BOOTP_AT + 345, "no option 57: 576-byte limit is not reached");

        // The same with the broadcast flag goes to 255.255.255.255.
        m[FLAGS_AT] = 0x80;
        let reply = answer(&reframe(&hex(REQUEST), &m)).unwrap().unwrap();
        let msg = decode(&reply, Ipv4Addr::BROADCAST);
        assert_eq!(u16::from(msg.flags()), FLAG_BROADCAST);

        // Renewing another address is refused.
        m[CIADDR_AT + 3] = 11;
        let reply = answer(&reframe(&hex(REQUEST), &m)).unwrap().unwrap();
        assert_eq!(decode(&reply, Ipv4Addr::BROADCAST).opts().msg_type(), Some(MessageType::Nak));
    }

    #[test]
    fn gateway_outside_subnet_adds_classless_static_routes() {
        let mut c = conf();
        c.v4.as_mut().unwrap().gw = Ipv4Addr::new(198, 51, 100, 1);
        let reply = answer_with(&c, &hex(DISCOVER)).unwrap().unwrap();
        let m = Message::from_bytes(&reply[BOOTP_AT..]).unwrap();
        let Some(DhcpOption::ClasslessStaticRoute(routes)) =
            m.opts().get(OptionCode::ClasslessStaticRoute)
        else {
            panic!("no option 121")
        };
        let gw = Ipv4Addr::new(198, 51, 100, 1);
        let routes: Vec<(String, Ipv4Addr)> =
            routes.iter().map(|(n, r)| (n.to_string(), *r)).collect();
        assert_eq!(
            routes,
            [("198.51.100.1/32".to_string(), Ipv4Addr::UNSPECIFIED), ("0.0.0.0/0".to_string(), gw)]
        );
        let at = reply.windows(2).position(|w| w == [121, 14]).unwrap();
        assert_eq!(&reply[at + 2..at + 16], &[32, 198, 51, 100, 1, 0, 0, 0, 0, 0, 198, 51, 100, 1]);
        assert_eq!(
            m.opts().get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(gw))
        );
    }

    #[test]
    fn rapid_commit_discover_gets_ack_with_rapid_commit() {
        let f = hex(DISCOVER);
        let mut opts = vec![53, 1, 1, 80, 0, 55, 2, 1, 3, 255];
        opts.resize(60, 0);
        let reply = answer(&with_options(&f, &opts)).unwrap().unwrap();
        let m = decode(&reply, Ipv4Addr::BROADCAST);
        assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(m.opts().get(OptionCode::RapidCommit), Some(&DhcpOption::RapidCommit));
        assert_eq!(codes(&reply), [53, 54, 51, 80, 1, 3, 6, 12, 26, 81, 119]);
    }

    #[test]
    fn requested_options_come_first_in_client_order() {
        let opts = [53, 1, 1, 55, 4, 119, 26, 6, 200, 255];
        let reply = answer(&with_options(&hex(DISCOVER), &opts)).unwrap().unwrap();
        assert_eq!(codes(&reply), [53, 54, 51, 119, 26, 6, 1, 3, 12, 81]);
        // ... unless the client lists 53 itself: 53 still goes first.
        let opts = [53, 1, 1, 55, 3, 3, 53, 1, 255];
        let reply = answer(&with_options(&hex(DISCOVER), &opts)).unwrap().unwrap();
        assert_eq!(codes(&reply), [53, 54, 51, 3, 1, 6, 12, 26, 81, 119]);
    }

    /// A configuration whose options cannot fit in 576 bytes.
    fn big_conf() -> SvcConf {
        let mut c = conf();
        c.v4.as_mut().unwrap().dns = (0..100).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        c.search = (0..20).map(|i| format!("domain{i}.example.net")).collect();
        c
    }

    #[test]
    fn options_over_576_bytes_are_left_out_whole() {
        let reply = answer_with(&big_conf(), &hex(DISCOVER)).unwrap().unwrap();
        assert!(reply.len() - 14 <= 576, "{} bytes", reply.len() - 14);
        let m = decode(&reply, Ipv4Addr::BROADCAST);
        // 6 (400 bytes) and 119 (430 bytes) do not fit; the rest does.
        assert_eq!(codes(&reply), [53, 54, 51, 1, 3, 12, 26, 81]);
        assert!(m.opts().get(OptionCode::DomainNameServer).is_none());
    }

    #[test]
    fn long_options_are_split_when_client_takes_large_messages() {
        let mut opts = vec![53, 1, 1, 57, 2, 0x05, 0xdc]; // max size 1500
        opts.extend_from_slice(&[255]);
        let c = big_conf();
        let reply = answer_with(&c, &with_options(&hex(DISCOVER), &opts)).unwrap().unwrap();
        assert!(reply.len() - 14 <= 1500);
        // Option 6 (400 bytes) goes as 255 + 145, option 119 (430 bytes) as
        // 255 + 175, in consecutive instances (RFC 3396 §5).
        let split = codes(&reply);
        assert_eq!(split, [53, 54, 51, 1, 3, 6, 6, 12, 26, 81, 119, 119]);
        let m = decode(&reply, Ipv4Addr::BROADCAST);
        assert_eq!(
            m.opts().get(OptionCode::DomainNameServer),
            Some(&DhcpOption::DomainNameServer(c.v4.as_ref().unwrap().dns.clone()))
        );
        let Some(DhcpOption::DomainSearch(names)) = m.opts().get(OptionCode::DomainSearch) else {
            panic!("no option 119")
        };
        assert_eq!(names.len(), 20);
        assert_eq!(names[19].to_ascii(), "domain19.example.net.");
    }

    #[test]
    fn client_asking_for_dns_update_gets_override_flag() {
        let mut opts = vec![53, 1, 1, 81, 3, fqdn_flag::S, 0, 0];
        opts.push(255);
        let reply = answer(&with_options(&hex(DISCOVER), &opts)).unwrap().unwrap();
        let m = decode(&reply, Ipv4Addr::BROADCAST);
        let Some(DhcpOption::ClientFQDN(fqdn)) = m.opts().get(OptionCode::ClientFQDN) else {
            panic!("no option 81")
        };
        assert_eq!(u8::from(fqdn.flags()), fqdn_flag::E | fqdn_flag::O);
    }

    #[test]
    fn unconfigured_options_are_omitted() {
        let mut c = conf();
        c.v4.as_mut().unwrap().dns.clear();
        c.search = vec!["".into(), ".".into(), "a..b".into()];
        c.hostname = None;
        c.fqdn = None;
        c.mtu = None;
        let reply = answer_with(&c, &hex(DISCOVER)).unwrap().unwrap();
        assert_eq!(codes(&reply), [53, 54, 51, 1, 3]);
        assert_eq!(reply.len(), BOOTP_AT + BOOTP_MIN, "padded to the BOOTP minimum");
    }

    #[test]
    fn other_message_types_and_bootp_are_ignored() {
        for t in [4u8, 7, 8, 2, 5, 0, 200] {
            let opts = [53, 1, t, 255];
            assert_eq!(answer(&with_options(&hex(DISCOVER), &opts)), Ok(None), "type {t}");
        }
        assert_eq!(answer(&with_options(&hex(DISCOVER), &[255])), Ok(None), "BOOTP");
    }

    #[test]
    fn disabled_dhcp_gives_none() {
        let mut c = conf();
        c.no_dhcp = true;
        assert_eq!(answer_with(&c, &hex(DISCOVER)), Ok(None));
        let mut c = conf();
        c.v4 = None;
        assert_eq!(answer_with(&c, &hex(DISCOVER)), Ok(None));
    }

    #[test]
    fn truncated_request_is_malformed() {
        let f = hex(DISCOVER);
        for n in 0..f.len() {
            assert_eq!(answer(&f[..n]), Err(wire::Error), "length {n}");
        }
    }

    #[test]
    fn bogus_options_are_malformed() {
        let f = hex(DISCOVER);
        for opts in [
            &[53, 1, 1, 12, 10, b'x'][..], // runs past the end
            &[53, 1, 1, 12],               // length byte missing
            &[53, 2, 1, 1, 255],           // type of wrong length
            &[53, 1, 1, 53, 1, 1, 255],    // type twice
            &[53, 1, 3, 50, 3, 1, 2, 3, 255],
            &[53, 1, 3, 54, 5, 1, 2, 3, 4, 5, 255],
            &[53, 1, 1, 57, 1, 2, 255],
            &[53, 1, 1, 80, 1, 0, 255],
            &[53, 1, 1, 81, 2, 0, 0, 255],
        ] {
            assert_eq!(answer(&with_options(&f, opts)), Err(wire::Error), "{opts:?}");
        }
    }

    #[test]
    fn bad_headers_are_malformed() {
        let f = hex(DISCOVER);
        let mut magic = f[BOOTP_AT..].to_vec();
        magic[MAGIC_AT] = 0;
        let mut op = f[BOOTP_AT..].to_vec();
        op[0] = BOOTREPLY;
        let mut htype = f[BOOTP_AT..].to_vec();
        htype[1] = 6;
        for m in [magic, op, htype] {
            assert_eq!(answer(&reframe(&f, &m)), Err(wire::Error));
        }
        // (offset, xor, fix the IPv4 header checksum afterwards)
        for (at, v, fix) in [
            (12, 0x86, false), // ethertype
            (14, 0x10, true),  // IP version
            (14, 0x01, true),  // IHL past the packet's start
            (17, 0x01, true),  // total length
            (24, 0x01, false), // header checksum
            (23, 0x06, true),  // protocol: not UDP
            (20, 0x20, true),  // more fragments
            (37, 0x44, false), // UDP destination port
            (39, 0x01, false), // UDP length
        ] {
            let mut g = f.clone();
            g[at] ^= v;
            if fix {
                fix_ip_checksum(&mut g);
            }
            assert_eq!(answer(&g), Err(wire::Error), "byte {at} ^ {v:#x}");
        }
    }

    #[test]
    fn out_of_out_min_bytes_always_holds_the_reply() {
        for frame in [DISCOVER, REQUEST, REQUEST_OTHER] {
            let mut out = [0u8; crate::svc::OUT_MIN];
            let n = handle(&big_conf(), &hex(frame), &mut out).unwrap().unwrap();
            assert!(n <= out.len());
            assert!(Message::from_bytes(&out[BOOTP_AT..n]).is_ok());
        }
        let mut out = [0u8; BOOTP_AT + BOOTP_MIN - 1];
        assert_eq!(handle(&conf(), &hex(DISCOVER), &mut out), Err(wire::Error));
    }

    #[test]
    fn arbitrary_input_never_panics() {
        no_panic(handle, &hex(DISCOVER), BOOTP_AT + OPTIONS_AT, |_| {});
        no_panic(handle, &hex(REQUEST), BOOTP_AT, |_| {});
    }
}
