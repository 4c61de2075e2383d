//! # Theory of operation
//!
//! Stateful DHCPv6 server (RFC 8415) with exactly one binding: an IA_NA
//! holding `conf.v6.addr`, forever. No state is kept: the answer depends only
//! on the request and the configuration.
//!
//! | request                         | reply                                  |
//! |---------------------------------|----------------------------------------|
//! | SOLICIT                         | ADVERTISE                              |
//! | SOLICIT with Rapid Commit       | REPLY with Rapid Commit (§18.3.1)      |
//! | REQUEST, RENEW, REBIND          | REPLY                                  |
//! | CONFIRM                         | REPLY, status Success or NotOnLink     |
//! | INFORMATION-REQUEST             | REPLY without IA_NA                    |
//! | REQUEST, RENEW, INFORMATION-REQUEST for another server | nothing         |
//! | anything else (RELEASE, DECLINE, relayed, ...) | nothing                 |
//!
//! Every reply carries our server identifier (a DUID-LL, RFC 8415 §11.4,
//! from `our_mac`), the client's identifier echoed byte for byte, and when
//! configured DNS servers (23, RFC 3646), the domain list (24, RFC 3646,
//! uncompressed as RFC 8415 §10 requires) and client FQDN (39, RFC 4704,
//! with the O flag when the client asked us to update DNS, which we never
//! do). ADVERTISE and REPLY to SOLICIT, REQUEST, RENEW and REBIND carry an
//! IA_NA with the client's IAID (the first IA_NA of the request; none if it
//! sent none) holding `conf.v6.addr` with infinite T1, T2 and lifetimes, or,
//! if that address is unspecified, a NoAddrsAvail status (§21.13).
//!
//! CONFIRM (§18.3.3) compares every address in the client's IA_NA and IA_TA
//! options with `conf.v6.addr`: the guest may only keep the address we give
//! it, so any other address is NotOnLink, which sends the client back to
//! SOLICIT. A CONFIRM without addresses gets no reply.
//!
//! Validation (§16): a client identifier of 1 to 130 bytes is required except
//! in INFORMATION-REQUEST; REQUEST and RENEW require a server identifier;
//! SOLICIT, CONFIRM and REBIND must not have one; INFORMATION-REQUEST must
//! not carry IA options. Violations, truncated options and repeated
//! identifiers are malformed (`Err`).
//!
//! The reply goes from `our_ll`:547 and `our_mac` to the request's source
//! address and MAC, port 546, and is at most 1280 bytes (the IPv6 minimum
//! MTU); DNS servers, domain list and FQDN are optional and left out whole
//! if they do not fit. Incoming UDP checksums are not verified (checksum
//! offload, as for DHCPv4). Limits: one IA_NA is answered, further IA_NA,
//! IA_TA and IA_PD options get nothing; addresses the client asks for in
//! REQUEST, RENEW or REBIND are not echoed back with zero lifetimes.

use std::net::Ipv6Addr;

use super::{ip6_frame, once, parse_ip6, Macs, SvcConf, SvcV6, Writer, INFINITE, IPV6_MIN_MTU, L4};
use crate::wire;

/// DHCPv6 server port.
const PORT_SERVER: u16 = 547;
/// DHCPv6 client port.
const PORT_CLIENT: u16 = 546;
/// Hop limit of replies.
const HOP_LIMIT: u8 = 64;
/// Longest DUID with its type (RFC 8415 §11.1).
const DUID_MAX: usize = 130;

/// Message types (RFC 8415 §7.3).
mod msg {
    pub const SOLICIT: u8 = 1;
    pub const ADVERTISE: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const CONFIRM: u8 = 4;
    pub const RENEW: u8 = 5;
    pub const REBIND: u8 = 6;
    pub const REPLY: u8 = 7;
    pub const INFORMATION_REQUEST: u8 = 11;
}

/// Option codes (RFC 8415 §21, RFC 3646, RFC 4704).
mod opt {
    pub const CLIENTID: u16 = 1;
    pub const SERVERID: u16 = 2;
    pub const IA_NA: u16 = 3;
    pub const IA_TA: u16 = 4;
    pub const IAADDR: u16 = 5;
    pub const STATUS_CODE: u16 = 13;
    pub const RAPID_COMMIT: u16 = 14;
    pub const DNS_SERVERS: u16 = 23;
    pub const DOMAIN_LIST: u16 = 24;
    pub const CLIENT_FQDN: u16 = 39;
}

/// Status codes (RFC 8415 §21.13).
mod status {
    pub const SUCCESS: u16 = 0;
    pub const NO_ADDRS_AVAIL: u16 = 2;
    pub const NOT_ON_LINK: u16 = 4;
}

/// Client FQDN (39) flags (RFC 4704 §4.1).
mod fqdn_flag {
    /// Client: "server, please update AAAA RRs".
    pub const S: u8 = 0x01;
    /// Server: "I overrode your S".
    pub const O: u8 = 0x02;
}

/// What we need of a request; borrows from the frame.
#[derive(Debug, Default)]
struct Request<'a> {
    /// Message type.
    msg_type: u8,
    /// Transaction ID, 3 bytes.
    xid: &'a [u8],
    /// Client Identifier option data (the DUID).
    client_id: Option<&'a [u8]>,
    /// Server Identifier option data.
    server_id: Option<&'a [u8]>,
    /// IAID of the first IA_NA.
    iaid: Option<[u8; 4]>,
    /// Any IA_NA or IA_TA present.
    has_ia: bool,
    /// Any address in an IA_NA or IA_TA.
    has_addr: bool,
    /// Any address in an IA_NA or IA_TA other than ours.
    foreign_addr: bool,
    /// Rapid Commit present.
    rapid_commit: bool,
    /// Client FQDN flags, if the option is present.
    fqdn_flags: Option<u8>,
}

/// Iterate over DHCPv6 options (RFC 8415 §21.1: 16-bit code and length,
/// network order): yields `Ok((code, data))`, or one `Err` if an option runs
/// past the end, then stops.
fn options(mut buf: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), wire::Error>> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let item = match *buf {
            [c0, c1, l0, l1, ref rest @ ..] => rest
                .split_at_checked(usize::from(u16::from_be_bytes([l0, l1])))
                .map(|(data, rest)| {
                    buf = rest;
                    (u16::from_be_bytes([c0, c1]), data)
                })
                .ok_or(wire::Error),
            _ => Err(wire::Error),
        };
        if item.is_err() {
            buf = &[];
        }
        Some(item)
    })
}

/// Parse a DHCPv6 client message (the UDP payload), noting how the IA
/// addresses compare with `ours`.
///
/// # Errors
/// [`wire::Error`] if shorter than 4 bytes, an option or IA sub-option runs
/// past its end, an IA_NA is shorter than 12 bytes or an IA_TA than 4, an
/// IA address shorter than 24 bytes, Rapid Commit has data, Client FQDN has
/// none, a client identifier is empty or over 130 bytes, or a client or
/// server identifier comes twice.
fn parse<'a>(m: &'a [u8], ours: &Ipv6Addr) -> Result<Request<'a>, wire::Error> {
    let (&msg_type, rest) = m.split_first().ok_or(wire::Error)?;
    let (xid, opts) = rest.split_at_checked(3).ok_or(wire::Error)?;
    let mut req = Request { msg_type, xid, ..Request::default() };
    for o in options(opts) {
        let (code, data) = o?;
        match code {
            opt::CLIENTID if data.is_empty() || data.len() > DUID_MAX => return Err(wire::Error),
            opt::CLIENTID => once(&mut req.client_id, data)?,
            opt::SERVERID => once(&mut req.server_id, data)?,
            opt::IA_NA | opt::IA_TA => {
                // IAID, then T1 and T2 for IA_NA only (§21.4, §21.5).
                let fixed = if code == opt::IA_NA { 12 } else { 4 };
                let sub = data.get(fixed..).ok_or(wire::Error)?;
                if code == opt::IA_NA && req.iaid.is_none() {
                    req.iaid = data.get(..4).and_then(|i| i.try_into().ok());
                }
                req.has_ia = true;
                for s in options(sub) {
                    let (sub_code, sub_data) = s?;
                    if sub_code == opt::IAADDR {
                        let addr: [u8; 16] = sub_data
                            .get(..16)
                            .and_then(|a| a.try_into().ok())
                            .ok_or(wire::Error)?;
                        if sub_data.len() < 24 {
                            return Err(wire::Error);
                        }
                        req.has_addr = true;
                        req.foreign_addr |= Ipv6Addr::from(addr) != *ours;
                    }
                }
            }
            opt::RAPID_COMMIT => {
                if !data.is_empty() {
                    return Err(wire::Error);
                }
                req.rapid_commit = true;
            }
            opt::CLIENT_FQDN => {
                req.fqdn_flags = Some(*data.first().ok_or(wire::Error)?);
            }
            _ => {}
        }
    }
    Ok(req)
}

/// Our server DUID: DUID-LL (type 3), hardware type Ethernet (1), our MAC
/// (RFC 8415 §11.4).
fn server_duid(mac: [u8; 6]) -> [u8; 10] {
    let [a, b, c, d, e, f] = mac;
    [0, 3, 0, 1, a, b, c, d, e, f]
}

/// Answer a DHCPv6 client message with one infinite binding of
/// `conf.v6.addr` (RFC 8415; see the module documentation for which message
/// gets which reply).
///
/// `frame` is a whole Ethernet II frame carrying IPv6 (extension headers
/// allowed) and UDP to port 547, multicast (ff02::1:2) or unicast. On a
/// reply, `out[..len]` holds an Ethernet/IPv6/UDP frame from
/// `conf.our_mac`, `conf.v6.our_ll`:547 to the request's source MAC and
/// address, port 546, with a valid UDP checksum; all fields in network byte
/// order.
///
/// Returns `Ok(None)` without looking at `frame` if `conf.no_dhcpv6` is set
/// or `conf.v6` is `None`; otherwise `Ok(None)` for message types we do not
/// answer, for a REQUEST, RENEW or INFORMATION-REQUEST addressed to another
/// server, and for a CONFIRM without addresses.
///
/// # Errors
/// [`wire::Error`] if a header is short or inconsistent (ethertype, IPv6
/// payload length, fragment, next header, UDP length, destination port), the
/// source address is unspecified or multicast, or the message is malformed
/// or invalid (see the module documentation); also if `out` is too short
/// for the mandatory part of the reply (never with [`super::OUT_MIN`]
/// bytes).
///
/// # Panics
/// Never.
pub fn handle(conf: &SvcConf, frame: &[u8], out: &mut [u8]) -> Result<Option<usize>, wire::Error> {
    let Some(v6) = conf.v6.as_ref().filter(|_| !conf.no_dhcpv6) else {
        return Ok(None);
    };
    let ip = parse_ip6(frame, super::PROTO_UDP)?;
    let udp = etherparse::UdpSlice::from_slice(ip.l4).map_err(|_| wire::Error)?;
    if usize::from(udp.length()) != ip.l4.len()
        || udp.destination_port() != PORT_SERVER
        || ip.src.is_unspecified()
        || ip.src.is_multicast()
    {
        return Err(wire::Error);
    }
    let req = parse(udp.payload(), &v6.addr)?;
    let duid = server_duid(conf.our_mac);
    let for_us = req.server_id.is_none_or(|id| id == duid);

    // Server Identifier rules of RFC 8415 §16: (required, forbidden).
    let (needs_server_id, forbids_server_id) = match req.msg_type {
        msg::SOLICIT | msg::CONFIRM | msg::REBIND => (false, true),
        msg::REQUEST | msg::RENEW => (true, false),
        msg::INFORMATION_REQUEST => (false, false),
        _ => return Ok(None),
    };
    let is_info = req.msg_type == msg::INFORMATION_REQUEST;
    if (req.client_id.is_none() && !is_info)
        || (needs_server_id && req.server_id.is_none())
        || (forbids_server_id && req.server_id.is_some())
        || (is_info && req.has_ia)
    {
        return Err(wire::Error);
    }
    if !for_us || (req.msg_type == msg::CONFIRM && !req.has_addr) {
        return Ok(None);
    }

    let reply_type = match req.msg_type {
        msg::SOLICIT if !req.rapid_commit => msg::ADVERTISE,
        _ => msg::REPLY,
    };
    let macs = Macs { dst: ip.src_mac, src: conf.our_mac };
    let hdr = (&v6.our_ll, &ip.src, HOP_LIMIT);
    let len = ip6_frame(out, IPV6_MIN_MTU, macs, hdr, L4::Udp(PORT_SERVER, PORT_CLIENT), |w| {
        put_reply(w, conf, v6, &req, reply_type, &duid)
    })?;
    Ok(Some(len))
}

/// Write option `code` whose data `data` writes (RFC 8415 §21.1).
fn put_opt(
    w: &mut Writer<'_>,
    code: u16,
    data: impl FnOnce(&mut Writer<'_>) -> Result<(), super::Full>,
) -> Result<(), super::Full> {
    let mark = w.len();
    w.put_u16(code)?;
    w.put_u16(0)?;
    data(w)?;
    let len = u16::try_from(w.len().saturating_sub(mark + 4)).map_err(|_| super::Full)?;
    w.set_u16(mark + 2, len)
}

/// Write the reply message of type `reply_type` to `req`.
fn put_reply(
    w: &mut Writer<'_>,
    conf: &SvcConf,
    v6: &SvcV6,
    req: &Request<'_>,
    reply_type: u8,
    duid: &[u8],
) -> Result<(), super::Full> {
    w.put_u8(reply_type)?;
    w.put(req.xid)?;
    put_opt(w, opt::SERVERID, |w| w.put(duid))?;
    if let Some(id) = req.client_id {
        put_opt(w, opt::CLIENTID, |w| w.put(id))?;
    }
    match (req.msg_type, req.iaid) {
        (msg::CONFIRM, _) => {
            let code = if req.foreign_addr { status::NOT_ON_LINK } else { status::SUCCESS };
            put_opt(w, opt::STATUS_CODE, |w| w.put_u16(code))?;
        }
        (msg::INFORMATION_REQUEST, _) | (_, None) => {}
        (_, Some(iaid)) => put_opt(w, opt::IA_NA, |w| {
            w.put(&iaid)?;
            if v6.addr.is_unspecified() {
                w.put_u32(0)?; // T1
                w.put_u32(0)?; // T2
                put_opt(w, opt::STATUS_CODE, |w| w.put_u16(status::NO_ADDRS_AVAIL))
            } else {
                w.put_u32(INFINITE)?; // T1
                w.put_u32(INFINITE)?; // T2
                put_opt(w, opt::IAADDR, |w| {
                    w.put(&v6.addr.octets())?;
                    w.put_u32(INFINITE)?; // preferred lifetime
                    w.put_u32(INFINITE) // valid lifetime
                })
            }
        })?,
    }
    if req.msg_type == msg::SOLICIT && req.rapid_commit {
        put_opt(w, opt::RAPID_COMMIT, |_| Ok(()))?;
    }
    if !v6.dns.is_empty() {
        w.optional(|w| {
            put_opt(w, opt::DNS_SERVERS, |w| v6.dns.iter().try_for_each(|a| w.put(&a.octets())))
        });
    }
    w.optional(|w| {
        let mark = w.len();
        put_opt(w, opt::DOMAIN_LIST, |w| super::put_dns_names(w, &conf.search).map(|_| ()))?;
        if w.len() == mark + 4 {
            w.truncate(mark); // no valid name: no option
        }
        Ok(())
    });
    if let Some(fqdn) = conf.fqdn.as_deref().filter(|f| super::dns_name_len(f).is_some()) {
        w.optional(|w| {
            put_opt(w, opt::CLIENT_FQDN, |w| {
                let asked = req.fqdn_flags.is_some_and(|f| f & fqdn_flag::S != 0);
                w.put_u8(if asked { fqdn_flag::O } else { 0 })?;
                super::put_dns_name(w, fqdn)
            })
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svc::test_util::{self, conf, hex, no_panic, GUEST_LL, GUEST_MAC, OUR_MAC};
    use dhcproto::v6::{DhcpOption, IAAddr, Message, MessageType, OptionCode, IANA};
    use dhcproto::Decodable;
    use etherparse::{Ethernet2Slice, Ipv6Slice, PacketBuilder, UdpSlice};

    // Requests as ISC dhclient -6 sends them from 52:54:00:12:34:56,
    // fe80::5054:ff:fe12:3456:546 to ff02::1:2:547, hop limit 1, xid
    // 5c1a2b: Client ID (DUID-LLT 0001 0001 2f1e3c4a + MAC), ORO (23, 24,
    // 39), Elapsed Time 0, IA_NA (IAID 00123456, T1 = T2 = 0). SOLICIT_RC
    // adds Rapid Commit; INFOREQ (dhclient -6 -S) has no IA_NA; REQUEST6
    // names our server ID and holds IA address 2001:db8::10 in its IA_NA.
    const SOLICIT: &str = "\
    33330001 00025254 00123456 86dd6000 0000003e 1101fe80 00000000 00005054 \
    00fffe12 3456ff02 00000000 00000000 00000001 00020222 0223003e 374a015c \
    1a2b0001 000e0001 00012f1e 3c4a5254 00123456 00060006 00170018 00270008 \
    00020000 0003000c 00123456 00000000 00000000 \
";
    const SOLICIT_RC: &str = "\
    33330001 00025254 00123456 86dd6000 00000042 1101fe80 00000000 00005054 \
    00fffe12 3456ff02 00000000 00000000 00000001 00020222 02230042 3734015c \
    1a2b0001 000e0001 00012f1e 3c4a5254 00123456 00060006 00170018 00270008 \
    00020000 000e0000 0003000c 00123456 00000000 00000000 \
";
    const INFOREQ: &str = "\
    33330001 00025254 00123456 86dd6000 0000002e 1101fe80 00000000 00005054 \
    00fffe12 3456ff02 00000000 00000000 00000001 00020222 0223002e 61e10b5c \
    1a2b0001 000e0001 00012f1e 3c4a5254 00123456 00060006 00170018 00270008 \
    00020000 \
";
    const REQUEST6: &str = "\
    33330001 00025254 00123456 86dd6000 00000068 1101fe80 00000000 00005054 \
    00fffe12 3456ff02 00000000 00000000 00000001 00020222 02230068 db4e035c \
    1a2b0001 000e0001 00012f1e 3c4a5254 00123456 0002000a 00030001 9a559a55 \
    9a550006 00060017 00180027 00080002 00000003 00280012 34560000 0e100000 \
    15180005 00182001 0db80000 00000000 00000000 00100000 1c200000 1d4c \
";

    // Golden replies for `conf()`, laid out independently from RFC 8415,
    // RFC 3646 and RFC 4704: Server ID (DUID-LL 0003 0001 + our MAC),
    // Client ID, IA_NA (infinite T1, T2, lifetimes), [Rapid Commit], DNS
    // servers, domain list, client FQDN.
    const ADVERTISE: &str = "\
    52540012 34569a55 9a559a55 86dd6000 000000a6 1140fe80 00000000 00000000 \
    00000000 0001fe80 00000000 00005054 00fffe12 34560223 022200a6 4f57025c \
    1a2b0002 000a0003 00019a55 9a559a55 0001000e 00010001 2f1e3c4a 52540012 \
    34560003 00280012 3456ffff ffffffff ffff0005 00182001 0db80000 00000000 \
    00000000 0010ffff ffffffff ffff0017 00102001 0db80000 00000000 00000000 \
    00530018 001e0765 78616d70 6c650363 6f6d0003 6c616207 6578616d 706c6503 \
    6f726700 00270014 00056775 65737407 6578616d 706c6503 636f6d00 \
";
    const REPLY_RC: &str = "\
    52540012 34569a55 9a559a55 86dd6000 000000aa 1140fe80 00000000 00000000 \
    00000000 0001fe80 00000000 00005054 00fffe12 34560223 022200aa 4a41075c \
    1a2b0002 000a0003 00019a55 9a559a55 0001000e 00010001 2f1e3c4a 52540012 \
    34560003 00280012 3456ffff ffffffff ffff0005 00182001 0db80000 00000000 \
    00000000 0010ffff ffffffff ffff000e 00000017 00102001 0db80000 00000000 \
    00000000 00530018 001e0765 78616d70 6c650363 6f6d0003 6c616207 6578616d \
    706c6503 6f726700 00270014 00056775 65737407 6578616d 706c6503 636f6d00 \
";
    const REPLY_INFO: &str = "\
    52540012 34569a55 9a559a55 86dd6000 0000007a 1140fe80 00000000 00000000 \
    00000000 0001fe80 00000000 00005054 00fffe12 34560223 0222007a ad28075c \
    1a2b0002 000a0003 00019a55 9a559a55 0001000e 00010001 2f1e3c4a 52540012 \
    34560017 00102001 0db80000 00000000 00000000 00530018 001e0765 78616d70 \
    6c650363 6f6d0003 6c616207 6578616d 706c6503 6f726700 00270014 00056775 \
    65737407 6578616d 706c6503 636f6d00 \
";
    const REPLY_REQUEST: &str = "\
    52540012 34569a55 9a559a55 86dd6000 000000a6 1140fe80 00000000 00000000 \
    00000000 0001fe80 00000000 00005054 00fffe12 34560223 022200a6 4a57075c \
    1a2b0002 000a0003 00019a55 9a559a55 0001000e 00010001 2f1e3c4a 52540012 \
    34560003 00280012 3456ffff ffffffff ffff0005 00182001 0db80000 00000000 \
    00000000 0010ffff ffffffff ffff0017 00102001 0db80000 00000000 00000000 \
    00530018 001e0765 78616d70 6c650363 6f6d0003 6c616207 6578616d 706c6503 \
    6f726700 00270014 00056775 65737407 6578616d 706c6503 636f6d00 \
";

    /// Offset of the DHCPv6 message in a frame.
    const MSG_AT: usize = 14 + 40 + 8;
    /// dhclient's client DUID.
    const CLIENT_DUID: [u8; 14] =
        [0, 1, 0, 1, 0x2f, 0x1e, 0x3c, 0x4a, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    fn answer_with(c: &SvcConf, frame: &[u8]) -> Result<Option<Vec<u8>>, wire::Error> {
        test_util::answer_with(handle, c, frame)
    }

    fn answer(frame: &[u8]) -> Result<Option<Vec<u8>>, wire::Error> {
        answer_with(&conf(), frame)
    }

    /// A DHCPv6 option.
    fn o6(code: u16, data: &[u8]) -> Vec<u8> {
        let mut v = code.to_be_bytes().to_vec();
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    /// A client message of type `ty` with `opts`, framed by etherparse
    /// like dhclient's.
    fn request(ty: u8, opts: &[Vec<u8>]) -> Vec<u8> {
        let mut m = vec![ty, 0x5c, 0x1a, 0x2b];
        opts.iter().for_each(|o| m.extend_from_slice(o));
        let dst: Ipv6Addr = "ff02::1:2".parse().unwrap();
        let b = PacketBuilder::ethernet2(GUEST_MAC, [0x33, 0x33, 0, 1, 0, 2])
            .ipv6(GUEST_LL.octets(), dst.octets(), 1)
            .udp(PORT_CLIENT, PORT_SERVER);
        let mut f = vec![];
        b.write(&mut f, &m).unwrap();
        f
    }

    /// Client ID option of dhclient.
    fn client_id() -> Vec<u8> {
        o6(opt::CLIENTID, &CLIENT_DUID)
    }

    /// Our Server ID option.
    fn server_id() -> Vec<u8> {
        o6(opt::SERVERID, &server_duid(OUR_MAC))
    }

    /// An IA_NA option with IAID 00123456 holding `addrs`.
    fn ia_na(addrs: &[&str]) -> Vec<u8> {
        let mut d = vec![0, 0x12, 0x34, 0x56, 0, 0, 0, 0, 0, 0, 0, 0];
        for a in addrs {
            let mut ia = a.parse::<Ipv6Addr>().unwrap().octets().to_vec();
            ia.extend_from_slice(&[0; 8]);
            d.extend_from_slice(&o6(opt::IAADDR, &ia));
        }
        o6(opt::IA_NA, &d)
    }

    /// Check Ethernet, IPv6 and UDP headers and the UDP checksum of a reply
    /// with etherparse, and decode it with dhcproto.
    fn decode(reply: &[u8]) -> Message {
        let eth = Ethernet2Slice::from_slice_without_fcs(reply).unwrap();
        assert_eq!((eth.source(), eth.destination()), (OUR_MAC, GUEST_MAC));
        let ip = Ipv6Slice::from_slice(eth.payload_slice()).unwrap();
        let h = ip.header();
        assert_eq!(h.source_addr(), "fe80::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(h.destination_addr(), GUEST_LL);
        let udp = UdpSlice::from_slice(ip.payload().payload).unwrap();
        assert_eq!((udp.source_port(), udp.destination_port()), (547, 546));
        let uh = udp.to_header();
        assert_eq!(uh.checksum, uh.calc_checksum_ipv6(&h.to_header(), udp.payload()).unwrap());
        Message::from_bytes(udp.payload()).unwrap()
    }

    /// Top-level option codes of a reply frame, in wire order.
    fn codes(reply: &[u8]) -> Vec<u16> {
        options(&reply[MSG_AT + 4..]).map(|o| o.unwrap().0).collect()
    }

    /// The IA_NA of `conf()` for dhclient's IAID.
    fn our_ia_na() -> DhcpOption {
        let mut opts = dhcproto::v6::DhcpOptions::new();
        opts.insert(DhcpOption::IAAddr(IAAddr {
            addr: "2001:db8::10".parse().unwrap(),
            preferred_life: u32::MAX,
            valid_life: u32::MAX,
            opts: dhcproto::v6::DhcpOptions::new(),
        }));
        DhcpOption::IANA(IANA { id: 0x0012_3456, t1: u32::MAX, t2: u32::MAX, opts })
    }

    /// Check the options every reply to dhclient carries.
    fn check_common(m: &Message) {
        assert_eq!(m.xid(), [0x5c, 0x1a, 0x2b]);
        let o = m.opts();
        assert_eq!(
            o.get(OptionCode::ServerId),
            Some(&DhcpOption::ServerId(server_duid(OUR_MAC).to_vec()))
        );
        assert_eq!(o.get(OptionCode::ClientId), Some(&DhcpOption::ClientId(CLIENT_DUID.to_vec())));
        assert_eq!(
            o.get(OptionCode::DomainNameServers),
            Some(&DhcpOption::DomainNameServers(vec!["2001:db8::53".parse().unwrap()]))
        );
        let Some(DhcpOption::DomainSearchList(names)) = o.get(OptionCode::DomainSearchList) else {
            panic!("no option 24")
        };
        let names: Vec<String> = names.iter().map(|n| n.to_ascii()).collect();
        assert_eq!(names, ["example.com.", "lab.example.org."]);
        let Some(DhcpOption::Unknown(fqdn)) = o.get(OptionCode::Unknown(opt::CLIENT_FQDN)) else {
            panic!("no option 39")
        };
        assert_eq!(fqdn.data(), b"\x00\x05guest\x07example\x03com\x00");
    }

    #[test]
    fn server_duid_is_duid_ll_of_our_mac() {
        assert_eq!(server_duid(OUR_MAC), [0, 3, 0, 1, 0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55]);
    }

    #[test]
    fn dhclient_solicit_gets_advertise_with_ia_na() {
        let reply = answer(&hex(SOLICIT)).unwrap().unwrap();
        assert_eq!(reply, hex(ADVERTISE), "golden ADVERTISE");
        let uh = &reply[MSG_AT - 8..MSG_AT];
        assert_eq!(&uh[4..], &[0, 166, 0x4f, 0x57], "UDP length and checksum");
        let m = decode(&reply);
        assert_eq!(m.msg_type(), MessageType::Advertise);
        check_common(&m);
        assert_eq!(m.opts().get(OptionCode::IANA), Some(&our_ia_na()));
        assert!(m.opts().get(OptionCode::RapidCommit).is_none());
        assert_eq!(m.opts().iter().count(), 6);
        assert_eq!(codes(&reply), [2, 1, 3, 23, 24, 39]);
    }

    #[test]
    fn rapid_commit_solicit_gets_reply_with_rapid_commit() {
        let reply = answer(&hex(SOLICIT_RC)).unwrap().unwrap();
        assert_eq!(reply, hex(REPLY_RC), "golden REPLY");
        let m = decode(&reply);
        assert_eq!(m.msg_type(), MessageType::Reply);
        check_common(&m);
        assert_eq!(m.opts().get(OptionCode::IANA), Some(&our_ia_na()));
        assert_eq!(m.opts().get(OptionCode::RapidCommit), Some(&DhcpOption::RapidCommit));
        assert_eq!(codes(&reply), [2, 1, 3, 14, 23, 24, 39]);
    }

    #[test]
    fn information_request_gets_reply_without_ia_na() {
        let reply = answer(&hex(INFOREQ)).unwrap().unwrap();
        assert_eq!(reply, hex(REPLY_INFO), "golden REPLY");
        let m = decode(&reply);
        assert_eq!(m.msg_type(), MessageType::Reply);
        check_common(&m);
        assert!(m.opts().get(OptionCode::IANA).is_none());
        // Without a client ID too (RFC 8415 §16.12).
        let reply = answer(&request(msg::INFORMATION_REQUEST, &[])).unwrap().unwrap();
        assert!(decode(&reply).opts().get(OptionCode::ClientId).is_none());
    }

    #[test]
    fn request_renew_rebind_get_reply_with_ia_na() {
        let reply = answer(&hex(REQUEST6)).unwrap().unwrap();
        assert_eq!(reply, hex(REPLY_REQUEST), "golden REPLY");
        for (ty, sid) in [(msg::RENEW, true), (msg::REBIND, false)] {
            let mut opts = vec![client_id(), ia_na(&["2001:db8::10"])];
            if sid {
                opts.push(server_id());
            }
            let m = decode(&answer(&request(ty, &opts)).unwrap().unwrap());
            assert_eq!(m.msg_type(), MessageType::Reply);
            check_common(&m);
            assert_eq!(m.opts().get(OptionCode::IANA), Some(&our_ia_na()));
        }
    }

    #[test]
    fn request_for_another_server_is_ignored() {
        let other = o6(opt::SERVERID, &[0, 3, 0, 1, 2, 2, 2, 2, 2, 2]);
        for ty in [msg::REQUEST, msg::RENEW, msg::INFORMATION_REQUEST] {
            let mut opts = vec![client_id(), other.clone()];
            if ty != msg::INFORMATION_REQUEST {
                opts.push(ia_na(&[]));
            }
            assert_eq!(answer(&request(ty, &opts)), Ok(None), "type {ty}");
        }
    }

    #[test]
    fn server_id_rules_of_rfc8415_section_16_are_enforced() {
        let cases = [
            (msg::REQUEST, vec![client_id(), ia_na(&[])]),
            (msg::RENEW, vec![client_id(), ia_na(&[])]),
            (msg::SOLICIT, vec![client_id(), server_id(), ia_na(&[])]),
            (msg::REBIND, vec![client_id(), server_id(), ia_na(&[])]),
            (msg::CONFIRM, vec![client_id(), server_id(), ia_na(&["2001:db8::10"])]),
            (msg::SOLICIT, vec![ia_na(&[])]),
            (msg::INFORMATION_REQUEST, vec![client_id(), ia_na(&[])]),
        ];
        for (ty, opts) in cases {
            assert_eq!(answer(&request(ty, &opts)), Err(wire::Error), "type {ty}, {opts:?}");
        }
    }

    #[test]
    fn confirm_checks_addresses_against_ours() {
        let status = |addrs: &[&str]| {
            let reply = answer(&request(msg::CONFIRM, &[client_id(), ia_na(addrs)]))?;
            Ok::<_, wire::Error>(reply.map(|r| {
                let m = decode(&r);
                assert_eq!(m.msg_type(), MessageType::Reply);
                assert!(m.opts().get(OptionCode::IANA).is_none());
                match m.opts().get(OptionCode::StatusCode) {
                    Some(DhcpOption::StatusCode(s)) => u16::from(s.status),
                    other => panic!("{other:?}"),
                }
            }))
        };
        assert_eq!(status(&["2001:db8::10"]), Ok(Some(status::SUCCESS)));
        assert_eq!(status(&["2001:db8::10", "2001:db8::11"]), Ok(Some(status::NOT_ON_LINK)));
        assert_eq!(status(&[]), Ok(None), "no addresses: no reply");
    }

    #[test]
    fn unspecified_address_gives_no_addrs_avail() {
        let mut c = conf();
        c.v6.as_mut().unwrap().addr = Ipv6Addr::UNSPECIFIED;
        let m = decode(&answer_with(&c, &hex(SOLICIT)).unwrap().unwrap());
        let Some(DhcpOption::IANA(ia)) = m.opts().get(OptionCode::IANA) else { panic!("no IA_NA") };
        assert_eq!((ia.id, ia.t1, ia.t2), (0x0012_3456, 0, 0));
        let Some(DhcpOption::StatusCode(s)) = ia.opts.get(OptionCode::StatusCode) else {
            panic!("no status")
        };
        assert_eq!(u16::from(s.status), status::NO_ADDRS_AVAIL);
        assert!(ia.opts.get(OptionCode::IAAddr).is_none());
    }

    #[test]
    fn solicit_without_ia_na_gets_advertise_without_ia_na() {
        let m = decode(&answer(&request(msg::SOLICIT, &[client_id()])).unwrap().unwrap());
        assert_eq!(m.msg_type(), MessageType::Advertise);
        assert!(m.opts().get(OptionCode::IANA).is_none());
    }

    #[test]
    fn client_asking_for_dns_update_gets_override_flag() {
        let opts = [client_id(), ia_na(&[]), o6(opt::CLIENT_FQDN, &[fqdn_flag::S, 0])];
        let m = decode(&answer(&request(msg::SOLICIT, &opts)).unwrap().unwrap());
        let Some(DhcpOption::Unknown(fqdn)) = m.opts().get(OptionCode::Unknown(opt::CLIENT_FQDN))
        else {
            panic!("no option 39")
        };
        assert_eq!(fqdn.data()[0], fqdn_flag::O);
    }

    #[test]
    fn unconfigured_options_are_omitted() {
        let mut c = conf();
        c.v6.as_mut().unwrap().dns.clear();
        c.search = vec!["bad..name".into()];
        c.fqdn = None;
        let reply = answer_with(&c, &hex(SOLICIT)).unwrap().unwrap();
        let m = decode(&reply);
        assert_eq!(m.opts().iter().count(), 3);
        assert_eq!(codes(&reply), [opt::SERVERID, opt::CLIENTID, opt::IA_NA]);
    }

    #[test]
    fn other_message_types_are_ignored() {
        for ty in [2u8, 7, 8, 9, 10, 12, 13, 0, 255] {
            assert_eq!(answer(&request(ty, &[client_id()])), Ok(None), "type {ty}");
        }
    }

    #[test]
    fn disabled_dhcpv6_gives_none() {
        let mut c = conf();
        c.no_dhcpv6 = true;
        assert_eq!(answer_with(&c, &hex(SOLICIT)), Ok(None));
        let mut c = conf();
        c.v6 = None;
        assert_eq!(answer_with(&c, &hex(SOLICIT)), Ok(None));
    }

    #[test]
    fn truncated_message_is_malformed() {
        let f = hex(SOLICIT);
        for n in 0..f.len() {
            assert_eq!(answer(&f[..n]), Err(wire::Error), "length {n}");
        }
    }

    #[test]
    fn bogus_options_are_malformed() {
        let mut past_end = client_id();
        past_end[3] += 1;
        let cases = [
            vec![past_end],
            vec![client_id(), vec![0, 8, 0]],
            vec![client_id(), client_id()],
            vec![o6(opt::CLIENTID, &[])],
            vec![o6(opt::CLIENTID, &[7; 131])],
            vec![client_id(), o6(opt::IA_NA, &[0; 11])],
            vec![client_id(), o6(opt::IA_TA, &[0; 3])],
            vec![
                client_id(),
                o6(opt::IA_NA, &[[0; 12].as_slice(), &o6(opt::IAADDR, &[0; 23])].concat()),
            ],
            vec![client_id(), o6(opt::IA_NA, &[[0; 12].as_slice(), &[0, 5, 0, 24, 0]].concat())],
            vec![client_id(), o6(opt::RAPID_COMMIT, &[0])],
            vec![client_id(), o6(opt::CLIENT_FQDN, &[])],
        ];
        for opts in cases {
            assert_eq!(answer(&request(msg::SOLICIT, &opts)), Err(wire::Error), "{opts:?}");
        }
        assert_eq!(answer(&request(msg::SOLICIT, &[])[..MSG_AT + 3]), Err(wire::Error));
    }

    #[test]
    fn bad_headers_are_malformed() {
        let f = hex(SOLICIT);
        let mut port = f.clone();
        port[14 + 40 + 3] = 0x24; // destination port 548
        let mut udp_len = f.clone();
        udp_len[14 + 40 + 5] += 1;
        let mut unspecified = f.clone();
        unspecified[22..38].fill(0);
        let mut next_header = f.clone();
        next_header[20] = 6;
        for g in [port, udp_len, unspecified, next_header] {
            assert_eq!(answer(&g), Err(wire::Error));
        }
    }

    #[test]
    fn out_of_out_min_bytes_holds_the_reply_to_the_longest_duid() {
        let opts = [o6(opt::CLIENTID, &[7; DUID_MAX]), ia_na(&[])];
        let mut out = [0u8; crate::svc::OUT_MIN];
        let n = handle(&conf(), &request(msg::SOLICIT, &opts), &mut out).unwrap().unwrap();
        let m = decode(&out[..n]);
        assert_eq!(m.opts().get(OptionCode::ClientId), Some(&DhcpOption::ClientId(vec![7; 130])));
        assert_eq!(m.opts().get(OptionCode::IANA), Some(&our_ia_na()));
        assert_eq!(codes(&out[..n]), [2, 1, 3, 23, 24, 39]);
        // Mandatory: 62 bytes of headers, 4 + 14 + 134 + 44 of message.
        // With 20 more, the 20 bytes of DNS servers fit, nothing else.
        let mut out = [0u8; 62 + 196 + 20];
        let n = handle(&conf(), &request(msg::SOLICIT, &opts), &mut out).unwrap().unwrap();
        assert_eq!(codes(&out[..n]), [opt::SERVERID, opt::CLIENTID, opt::IA_NA, opt::DNS_SERVERS]);
        let mut out = [0u8; 62 + 196 + 19];
        let n = handle(&conf(), &request(msg::SOLICIT, &opts), &mut out).unwrap().unwrap();
        assert_eq!(codes(&out[..n]), [opt::SERVERID, opt::CLIENTID, opt::IA_NA]);
        let mut out = [0u8; 62 + 195];
        assert_eq!(handle(&conf(), &request(msg::SOLICIT, &opts), &mut out), Err(wire::Error));
    }

    #[test]
    fn arbitrary_input_never_panics() {
        no_panic(handle, &hex(SOLICIT), MSG_AT, |_| {});
        no_panic(handle, &hex(REQUEST6), MSG_AT + 4, |_| {});
    }
}
