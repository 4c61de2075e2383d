//! # Theory of operation
//!
//! Synchronous rtnetlink (NETLINK_ROUTE, rtnetlink(7)) for two jobs: reading
//! the host's links, addresses and routes at start-up ([`crate::host`]), and
//! configuring pasta's tap inside the target network namespace.
//!
//! A [`Netlink`] owns one socket. A netlink socket talks to the network
//! namespace it was *created* in, whichever thread later uses it: pasta calls
//! [`Netlink::open`] from a thread that has setns()'d into the target
//! namespace, hands the value back to its main thread, and keeps using it
//! there. The socket is connected to the kernel (port 0), so nothing but the
//! kernel's replies arrives on it, and NETLINK_GET_STRICT_CHK is requested so
//! that dump filters (table, interface index) apply in the kernel; every
//! filter is applied again here for kernels without strict checking.
//!
//! Every request is one exchange, and nothing is pipelined: the request goes
//! out with NLM_F_REQUEST | NLM_F_ACK and a fresh sequence number, and replies
//! are read until the exchange ends, either with NLMSG_DONE (dumps, possibly
//! spread over many datagrams with NLM_F_MULTI) or with NLMSG_ERROR (the ack
//! of a "do" request; error 0 means success). A negative error in either ends
//! the exchange with [`NetlinkError::Kernel`]. Messages carrying another
//! sequence number are leftovers of an earlier exchange and are dropped with a
//! warning. A dump entry that netlink-packet-route cannot decode is skipped
//! with a warning (it is one link, address or route, not the whole answer);
//! broken framing, truncated datagrams and NLMSG_OVERRUN give
//! [`NetlinkError::Malformed`].
//!
//! Limits: one request at a time; replies are read into one 64 KiB buffer
//! (the kernel sizes dump datagrams to fit 32 KiB); only the main routing table
//! and unicast routes are reported; RFC 5549 routes (IPv4 via an IPv6 next
//! hop, RTA_VIA) are skipped.
//!
//! Syscalls: socket, bind, getsockname, connect, setsockopt, sendto, recvfrom,
//! close.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLMSG_DONE, NLMSG_ERROR,
    NLMSG_NOOP, NLMSG_OVERRUN, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteNextHop, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::host::Route;

/// IFA_F_NODAD (linux/if_addr.h): no duplicate address detection.
pub const IFA_F_NODAD: u32 = 0x02;
/// IFA_F_DADFAILED (linux/if_addr.h): duplicate address detection failed.
pub const IFA_F_DADFAILED: u32 = 0x08;
/// IFA_F_DEPRECATED (linux/if_addr.h): preferred lifetime expired.
pub const IFA_F_DEPRECATED: u32 = 0x20;
/// IFA_F_TENTATIVE (linux/if_addr.h): duplicate address detection running.
pub const IFA_F_TENTATIVE: u32 = 0x40;

/// RT_SCOPE_UNIVERSE (linux/rtnetlink.h): global scope.
pub const RT_SCOPE_UNIVERSE: u8 = 0;
/// RT_SCOPE_LINK (linux/rtnetlink.h): valid on this link only.
pub const RT_SCOPE_LINK: u8 = 253;
/// RT_SCOPE_HOST (linux/rtnetlink.h): valid on this host only.
pub const RT_SCOPE_HOST: u8 = 254;
/// RTPROT_BOOT (linux/rtnetlink.h): route installed "during boot", i.e. by
/// an administrative tool; what `ip route add` and pasta use.
pub const RTPROT_BOOT: u8 = 3;
/// RT_TABLE_MAIN (linux/rtnetlink.h): the main routing table.
pub const RT_TABLE_MAIN: u32 = 254;

/// Size of the receive buffer in bytes. The kernel sizes dump datagrams to
/// min(receive buffer, 32 KiB) at most, plus one message that does not fit.
const RX_BUF_LEN: usize = 65536;

/// NLMSG_ALIGN(): messages in a datagram start on 4-byte boundaries.
const NLMSG_ALIGNTO: usize = 4;

/// Errors of rtnetlink requests.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// A socket call (socket, bind, send, recv) failed.
    #[error("netlink socket: {0}")]
    Io(#[source] io::Error),
    /// The kernel answered the request `op` (e.g. "RTM_NEWADDR") with a
    /// negative error in NLMSG_ERROR or NLMSG_DONE; `errno` is positive.
    #[error("netlink {op}: {}", strerror(*.errno))]
    Kernel {
        /// Request type, as named in linux/rtnetlink.h.
        op: &'static str,
        /// The error number, positive (e.g. `libc::EEXIST`).
        errno: i32,
    },
    /// The kernel's reply could not be framed: bad message length,
    /// truncated datagram, NLMSG_OVERRUN, or a short NLMSG_ERROR.
    #[error("malformed netlink reply")]
    Malformed,
    /// Something asked for is absent (e.g. a link without a MAC address, an
    /// interface name given with -i that does not exist).
    #[error("not found: {0}")]
    NotFound(String),
}

impl From<io::Error> for NetlinkError {
    fn from(e: io::Error) -> Self {
        NetlinkError::Io(e)
    }
}

impl NetlinkError {
    /// The kernel's errno, if this is a [`NetlinkError::Kernel`].
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// strerror(3) text for a positive errno.
fn strerror(errno: i32) -> String {
    io::Error::from_raw_os_error(errno).to_string()
}

mod sealed {
    /// Restricts [`super::IpFamily`] to the two address types.
    pub trait Sealed {}
    impl Sealed for std::net::Ipv4Addr {}
    impl Sealed for std::net::Ipv6Addr {}
}

/// An address type of one IP version ([`Ipv4Addr`] or [`Ipv6Addr`]), for
/// the family-generic dumps and requests.
pub trait IpFamily: sealed::Sealed + Copy + Eq + fmt::Debug + Send + 'static {
    /// The unspecified address (0.0.0.0 or ::), destination of default routes.
    const UNSPECIFIED: Self;
    /// Address length in bits (32 or 128), the largest prefix length.
    const BITS: u8;
    /// This address as an [`IpAddr`].
    fn to_ip(self) -> IpAddr;
    /// `ip` if it is of this family.
    fn from_ip(ip: IpAddr) -> Option<Self>;
    /// Loopback: 127.0.0.0/8 (RFC 1122 §3.2.1.3) or ::1 (RFC 4291 §2.5.3).
    fn is_loopback_addr(self) -> bool;
    /// Whether the prefix `self`/`prefix_len` lies inside link-local space:
    /// 169.254.0.0/16 (RFC 3927) or fe80::/10 (RFC 4291 §2.5.6).
    fn is_link_local_prefix(self, prefix_len: u8) -> bool;
}

impl IpFamily for Ipv4Addr {
    const UNSPECIFIED: Self = Ipv4Addr::UNSPECIFIED;
    const BITS: u8 = 32;
    fn to_ip(self) -> IpAddr {
        IpAddr::V4(self)
    }
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }
    fn is_loopback_addr(self) -> bool {
        self.is_loopback()
    }
    fn is_link_local_prefix(self, prefix_len: u8) -> bool {
        prefix_len >= 16 && self.is_link_local()
    }
}

impl IpFamily for Ipv6Addr {
    const UNSPECIFIED: Self = Ipv6Addr::UNSPECIFIED;
    const BITS: u8 = 128;
    fn to_ip(self) -> IpAddr {
        IpAddr::V6(self)
    }
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }
    fn is_loopback_addr(self) -> bool {
        self.is_loopback()
    }
    fn is_link_local_prefix(self, prefix_len: u8) -> bool {
        prefix_len >= 10 && self.is_unicast_link_local()
    }
}

/// The rtnetlink address family of `A`.
fn family<A: IpFamily>() -> AddressFamily {
    match A::UNSPECIFIED.to_ip() {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// A route attribute's address, if it is of family `A`.
fn route_addr<A: IpFamily>(a: &RouteAddress) -> Option<A> {
    match a {
        RouteAddress::Inet(v4) => A::from_ip(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => A::from_ip(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// One network interface, from RTM_NEWLINK (rtnetlink(7)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index (ifi_index).
    pub index: u32,
    /// Interface name (IFLA_IFNAME).
    pub name: String,
    /// MTU in bytes, L3 header included (IFLA_MTU; 0 if absent).
    pub mtu: u32,
    /// Hardware address (IFLA_ADDRESS), if it is a 6-byte MAC.
    pub mac: Option<[u8; 6]>,
    /// IFF_UP is set.
    pub up: bool,
    /// IFF_LOOPBACK is set.
    pub loopback: bool,
}

/// One interface address, from RTM_NEWADDR (rtnetlink(7)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddr<A> {
    /// Index of the interface holding the address.
    pub index: u32,
    /// The address (IFA_LOCAL, else IFA_ADDRESS: on point-to-point links
    /// IFA_ADDRESS is the peer's).
    pub addr: A,
    /// Prefix length in bits.
    pub prefix_len: u8,
    /// Scope: [`RT_SCOPE_UNIVERSE`], [`RT_SCOPE_LINK`], [`RT_SCOPE_HOST`], ...
    pub scope: u8,
    /// IFA_F_* flags (IFA_FLAGS if present, else ifa_flags), e.g.
    /// [`IFA_F_DEPRECATED`].
    pub flags: u32,
}

/// One next hop of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop<A> {
    /// Output interface index (RTA_OIF, or rtnh_ifindex for multipath).
    pub index: u32,
    /// Gateway (RTA_GATEWAY); `None`: destination is on-link.
    pub gw: Option<A>,
    /// Multipath weight, 1 to 256 (rtnh_hops + 1); 1 for single-path routes.
    pub weight: u16,
}

/// One unicast route of the main table, from RTM_NEWROUTE (rtnetlink(7)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry<A> {
    /// Destination prefix (RTA_DST; unspecified for a default route).
    pub dst: A,
    /// Destination prefix length in bits (0: default route).
    pub prefix_len: u8,
    /// Routing table (RTA_TABLE, else rtm_table).
    pub table: u32,
    /// Origin, RTPROT_* (e.g. 2 kernel, [`RTPROT_BOOT`], 4 static, 9 RA).
    pub protocol: u8,
    /// Scope, e.g. [`RT_SCOPE_LINK`] for on-link routes.
    pub scope: u8,
    /// Metric (RTA_PRIORITY), if set.
    pub metric: Option<u32>,
    /// Next hops, in kernel order: one for a plain route, several for a
    /// multipath one (RTA_MULTIPATH); empty for a route without interface.
    pub nexthops: Vec<NextHop<A>>,
}

/// A NETLINK_ROUTE socket bound to the network namespace it was opened in.
///
/// Not thread-safe by design (`&mut self` everywhere), but `Send`: it can be
/// opened in a thread that has entered another namespace and then used from
/// any thread.
pub struct Netlink {
    /// The socket, connected to the kernel (port 0).
    sock: Socket,
    /// Sequence number of the last request.
    seq: u32,
    /// Request buffer, reused.
    tx: Vec<u8>,
    /// Reply buffer, capacity [`RX_BUF_LEN`].
    rx: Vec<u8>,
}

impl fmt::Debug for Netlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netlink")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// Serialize `msg` as one netlink message with `flags` and `seq` into `out`
/// (cleared first). Host byte order, as netlink(7) requires.
fn encode(msg: RouteNetlinkMessage, flags: u16, seq: u32, out: &mut Vec<u8>) {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    nl.finalize();
    out.clear();
    out.resize(nl.buffer_len(), 0);
    nl.serialize(out);
}

/// Read a native-endian i32 at the start of `payload` (nlmsgerr.error, or the
/// NLMSG_DONE status).
fn status_code(payload: &[u8]) -> Option<i32> {
    let bytes: [u8; 4] = payload.get(..4)?.try_into().ok()?;
    Some(i32::from_ne_bytes(bytes))
}

/// Where an exchange stands after one reply datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// More datagrams are to come.
    More,
    /// NLMSG_DONE or the ack arrived: the exchange is over.
    Done,
}

/// Process one reply datagram for the request `op` with sequence number
/// `seq`, appending decoded messages to `out`.
///
/// Returns [`Progress::Done`] once the exchange is over (NLMSG_DONE, or
/// NLMSG_ERROR with error 0), [`Progress::More`] if more datagrams are to
/// come.
///
/// # Errors
/// [`NetlinkError::Kernel`] for a negative status, [`NetlinkError::Malformed`]
/// for bad framing or NLMSG_OVERRUN.
fn parse_datagram(
    op: &'static str,
    buf: &[u8],
    seq: u32,
    out: &mut Vec<RouteNetlinkMessage>,
) -> Result<Progress, NetlinkError> {
    let mut rest = buf;
    while !rest.is_empty() {
        let nl = NetlinkBuffer::new_checked(rest).map_err(|e| {
            log::debug!("netlink {op}: bad message framing: {e}");
            NetlinkError::Malformed
        })?;
        // new_checked() guarantees header length <= len <= rest.len().
        let len = usize::try_from(nl.length()).map_err(|_| NetlinkError::Malformed)?;
        let msg = rest.get(..len).ok_or(NetlinkError::Malformed)?;
        let payload = nl.payload();
        let msg_type = nl.message_type();
        let msg_seq = nl.sequence_number();
        let aligned = len.div_ceil(NLMSG_ALIGNTO).saturating_mul(NLMSG_ALIGNTO);
        rest = rest.get(aligned..).unwrap_or(&[]);

        if msg_seq != seq {
            log::warn!("netlink {op}: dropping reply with sequence {msg_seq}, expected {seq}");
            continue;
        }
        match msg_type {
            NLMSG_NOOP => {}
            NLMSG_DONE => {
                // Kernels always send the status; treat a missing one as 0.
                let code = status_code(payload).unwrap_or(0);
                if code < 0 {
                    return Err(NetlinkError::Kernel {
                        op,
                        errno: code.saturating_neg(),
                    });
                }
                return Ok(Progress::Done);
            }
            NLMSG_ERROR => {
                let code = status_code(payload).ok_or(NetlinkError::Malformed)?;
                if code == 0 {
                    return Ok(Progress::Done);
                }
                return Err(NetlinkError::Kernel {
                    op,
                    errno: code.saturating_abs(),
                });
            }
            NLMSG_OVERRUN => {
                log::debug!("netlink {op}: NLMSG_OVERRUN");
                return Err(NetlinkError::Malformed);
            }
            _ => match NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg) {
                Ok(m) => {
                    if let NetlinkPayload::InnerMessage(inner) = m.payload {
                        out.push(inner);
                    }
                }
                Err(e) => {
                    log::warn!("netlink {op}: skipping undecodable message type {msg_type}: {e}");
                }
            },
        }
    }
    Ok(Progress::More)
}

/// RTM_NEWLINK contents → [`Link`].
fn link_from_msg(m: &LinkMessage) -> Link {
    let mut link = Link {
        index: m.header.index,
        name: String::new(),
        mtu: 0,
        mac: None,
        up: m.header.flags.contains(LinkFlags::Up),
        loopback: m.header.flags.contains(LinkFlags::Loopback),
    };
    for attr in &m.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name.clone_from(n),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::Address(a) => link.mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
            _ => {}
        }
    }
    link
}

/// RTM_NEWADDR contents → [`IfAddr`], if it is of family `A` and has an
/// address.
fn addr_from_msg<A: IpFamily>(m: &AddressMessage) -> Option<IfAddr<A>> {
    if m.header.family != family::<A>() {
        return None;
    }
    let mut local = None;
    let mut address = None;
    let mut flags = u32::from(m.header.flags.bits());
    for attr in &m.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = A::from_ip(*ip),
            AddressAttribute::Address(ip) => address = A::from_ip(*ip),
            AddressAttribute::Flags(f) => flags = f.bits(),
            _ => {}
        }
    }
    Some(IfAddr {
        index: m.header.index,
        addr: local.or(address)?,
        prefix_len: m.header.prefix_len,
        scope: u8::from(m.header.scope),
        flags,
    })
}

/// Next hop from the attributes of a route or of one RTA_MULTIPATH entry.
/// `None` if the next hop is not expressible in family `A` (RTA_VIA).
fn nexthop_from_attrs<A: IpFamily>(
    index: u32,
    weight: u16,
    attrs: &[RouteAttribute],
) -> Option<NextHop<A>> {
    let mut nh = NextHop {
        index,
        gw: None,
        weight,
    };
    for attr in attrs {
        match attr {
            RouteAttribute::Gateway(a) => nh.gw = Some(route_addr::<A>(a)?),
            RouteAttribute::Via(_) => return None,
            _ => {}
        }
    }
    Some(nh)
}

/// RTM_NEWROUTE contents → [`RouteEntry`], if it is a unicast route of
/// family `A` in the main table.
fn route_from_msg<A: IpFamily>(m: &RouteMessage) -> Option<RouteEntry<A>> {
    let h = &m.header;
    if h.address_family != family::<A>() || h.kind != RouteType::Unicast {
        return None;
    }
    let mut r = RouteEntry {
        dst: A::UNSPECIFIED,
        prefix_len: h.destination_prefix_length,
        table: u32::from(h.table),
        protocol: u8::from(h.protocol),
        scope: u8::from(h.scope),
        metric: None,
        nexthops: Vec::new(),
    };
    let mut oif = None;
    for attr in &m.attributes {
        match attr {
            RouteAttribute::Destination(a) => r.dst = route_addr::<A>(a)?,
            RouteAttribute::Table(t) => r.table = *t,
            RouteAttribute::Priority(p) => r.metric = Some(*p),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::MultiPath(hops) => {
                for hop in hops {
                    let weight = u16::from(hop.hops).saturating_add(1);
                    r.nexthops.push(nexthop_from_attrs(
                        hop.interface_index,
                        weight,
                        &hop.attributes,
                    )?);
                }
            }
            _ => {}
        }
    }
    if r.table != RT_TABLE_MAIN {
        return None;
    }
    if let Some(index) = oif {
        r.nexthops
            .push(nexthop_from_attrs(index, 1, &m.attributes)?);
    }
    Some(r)
}

/// RTM_NEWADDR request body for `addr`/`prefix_len` on interface `index`.
///
/// IPv4: IFA_LOCAL, IFA_ADDRESS and, below /31, IFA_BROADCAST (all host bits
/// set), scope universe. IPv6: IFA_LOCAL, IFA_ADDRESS, IFA_F_NODAD in the
/// header and in IFA_FLAGS.
fn addr_msg(index: u32, addr: IpAddr, prefix_len: u8) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.index = index;
    m.header.prefix_len = prefix_len;
    m.header.scope = AddressScope::Universe;
    m.attributes.push(AddressAttribute::Local(addr));
    m.attributes.push(AddressAttribute::Address(addr));
    match addr {
        IpAddr::V4(a) => {
            m.header.family = AddressFamily::Inet;
            if prefix_len < 31 {
                let host_bits = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
                let brd = Ipv4Addr::from(u32::from(a) | host_bits);
                m.attributes.push(AddressAttribute::Broadcast(brd));
            }
        }
        IpAddr::V6(_) => {
            m.header.family = AddressFamily::Inet6;
            m.header.flags = AddressHeaderFlags::Nodad;
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
    }
    m
}

/// RTM_NEWROUTE header for a main-table unicast route of family `A`,
/// installed with [`RTPROT_BOOT`].
fn route_header<A: IpFamily>(prefix_len: u8, on_link: bool) -> RouteHeader {
    RouteHeader {
        address_family: family::<A>(),
        destination_prefix_length: prefix_len,
        table: RouteHeader::RT_TABLE_MAIN,
        protocol: RouteProtocol::Boot,
        scope: if on_link {
            RouteScope::Link
        } else {
            RouteScope::Universe
        },
        kind: RouteType::Unicast,
        ..RouteHeader::default()
    }
}

/// RTM_NEWROUTE request body for `r` via interface `index`: scope link when
/// `r.gw` is `None` (on-link), universe otherwise; RTA_DST unless default,
/// RTA_OIF, RTA_GATEWAY and RTA_PRIORITY when set.
fn route_msg<A: IpFamily>(index: u32, r: &Route<A>) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header = route_header::<A>(r.prefix_len, r.gw.is_none());
    if r.prefix_len > 0 {
        m.attributes
            .push(RouteAttribute::Destination(r.dst.to_ip().into()));
    }
    m.attributes.push(RouteAttribute::Oif(index));
    if let Some(gw) = r.gw {
        m.attributes
            .push(RouteAttribute::Gateway(gw.to_ip().into()));
    }
    if let Some(metric) = r.metric {
        m.attributes.push(RouteAttribute::Priority(metric));
    }
    m
}

/// RTM_NEWROUTE request body for a multipath route (RTA_MULTIPATH), scope
/// universe. Weights are clamped to 1..=256.
fn multipath_msg<A: IpFamily>(
    dst: A,
    prefix_len: u8,
    metric: Option<u32>,
    nexthops: &[NextHop<A>],
) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header = route_header::<A>(prefix_len, false);
    if prefix_len > 0 {
        m.attributes
            .push(RouteAttribute::Destination(dst.to_ip().into()));
    }
    if let Some(metric) = metric {
        m.attributes.push(RouteAttribute::Priority(metric));
    }
    let hops = nexthops
        .iter()
        .map(|nh| {
            let mut hop = RouteNextHop::default();
            hop.interface_index = nh.index;
            hop.hops = u8::try_from(nh.weight.saturating_sub(1)).unwrap_or(u8::MAX);
            if let Some(gw) = nh.gw {
                hop.attributes
                    .push(RouteAttribute::Gateway(gw.to_ip().into()));
            }
            hop
        })
        .collect();
    m.attributes.push(RouteAttribute::MultiPath(hops));
    m
}

/// Whether `e` is the kernel saying "already there" (EEXIST).
fn is_eexist(e: &NetlinkError) -> bool {
    e.errno() == Some(libc::EEXIST)
}

impl Netlink {
    /// Open a NETLINK_ROUTE socket in the network namespace of the calling
    /// thread, connected to the kernel, with NETLINK_GET_STRICT_CHK if the
    /// kernel has it (4.20+; failure to set it is not an error).
    ///
    /// # Errors
    /// [`NetlinkError::Io`] if socket(), bind() or connect() fail.
    ///
    /// Syscalls: socket, bind, getsockname, connect, setsockopt.
    pub fn open() -> Result<Netlink, NetlinkError> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        if let Err(e) = sock.set_netlink_get_strict_chk(true) {
            log::debug!("netlink: no NETLINK_GET_STRICT_CHK: {e}");
        }
        Ok(Netlink {
            sock,
            seq: 0,
            tx: Vec::new(),
            rx: Vec::with_capacity(RX_BUF_LEN),
        })
    }

    /// Send `msg` with NLM_F_REQUEST | NLM_F_ACK | `flags`, and collect the
    /// decoded replies until NLMSG_DONE or the ack.
    fn transact(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        encode(msg, NLM_F_REQUEST | NLM_F_ACK | flags, seq, &mut self.tx);
        let sent = loop {
            match self.sock.send(&self.tx, 0) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        if sent != self.tx.len() {
            return Err(NetlinkError::Io(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short netlink send ({sent} of {} bytes)", self.tx.len()),
            )));
        }

        let mut out = Vec::new();
        loop {
            self.rx.clear();
            let n = loop {
                match self.sock.recv(&mut self.rx, libc::MSG_TRUNC) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            if n > self.rx.len() {
                log::debug!("netlink {op}: datagram of {n} bytes truncated");
                return Err(NetlinkError::Malformed);
            }
            if parse_datagram(op, &self.rx, seq, &mut out)? == Progress::Done {
                return Ok(out);
            }
        }
    }

    /// Every interface of the namespace (RTM_GETLINK dump), in kernel order.
    ///
    /// # Errors
    /// [`NetlinkError`] from the exchange.
    ///
    /// Syscalls: sendto, recvfrom.
    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let replies = self.transact(
            "RTM_GETLINK",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_from_msg(l)),
                _ => None,
            })
            .collect())
    }

    /// One interface by index (RTM_GETLINK request).
    ///
    /// # Errors
    /// [`NetlinkError::Kernel`] with ENODEV if there is no such interface;
    /// [`NetlinkError::NotFound`] if the kernel answered without it.
    ///
    /// Syscalls: sendto, recvfrom.
    pub fn link(&mut self, index: u32) -> Result<Link, NetlinkError> {
        let mut req = LinkMessage::default();
        req.header.index = index;
        let replies = self.transact("RTM_GETLINK", RouteNetlinkMessage::GetLink(req), 0)?;
        replies
            .iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) if l.header.index == index => {
                    Some(link_from_msg(l))
                }
                _ => None,
            })
            .ok_or_else(|| NetlinkError::NotFound(format!("interface index {index}")))
    }

    /// Index of the interface called `name` (RTM_GETLINK with IFLA_IFNAME),
    /// `None` if there is none.
    ///
    /// # Errors
    /// [`NetlinkError`] from the exchange, other than ENODEV.
    ///
    /// Syscalls: sendto, recvfrom.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>, NetlinkError> {
        let mut req = LinkMessage::default();
        req.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let replies = match self.transact("RTM_GETLINK", RouteNetlinkMessage::GetLink(req), 0) {
            Err(e) if e.errno() == Some(libc::ENODEV) => return Ok(None),
            r => r?,
        };
        Ok(replies.iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => {
                let link = link_from_msg(l);
                (link.name == name).then_some(link.index)
            }
            _ => None,
        }))
    }

    /// MAC address of interface `index` (IFLA_ADDRESS).
    ///
    /// # Errors
    /// [`NetlinkError::NotFound`] if the link has no 6-byte hardware address
    /// (e.g. a tun device in L3 mode); else as [`Netlink::link`].
    ///
    /// Syscalls: sendto, recvfrom.
    pub fn link_get_mac(&mut self, index: u32) -> Result<[u8; 6], NetlinkError> {
        self.link(index)?
            .mac
            .ok_or_else(|| NetlinkError::NotFound(format!("MAC address of interface {index}")))
    }

    /// RTM_SETLINK on interface `index` with `attrs` and flags `set` within
    /// `change`.
    fn link_set(
        &mut self,
        index: u32,
        attrs: Vec<LinkAttribute>,
        set: LinkFlags,
        change: LinkFlags,
    ) -> Result<(), NetlinkError> {
        let mut req = LinkMessage::default();
        req.header.index = index;
        req.header.flags = set;
        req.header.change_mask = change;
        req.attributes = attrs;
        self.transact("RTM_SETLINK", RouteNetlinkMessage::SetLink(req), 0)
            .map(drop)
    }

    /// Set the MAC address of interface `index` (IFLA_ADDRESS).
    ///
    /// # Errors
    /// [`NetlinkError::Kernel`], e.g. ENODEV, EADDRNOTAVAIL for a multicast
    /// address, EBUSY on some drivers while up.
    ///
    /// Syscalls: sendto, recvfrom.
    pub fn link_set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<(), NetlinkError> {
        self.link_set(
            index,
            vec![LinkAttribute::Address(mac.to_vec())],
            LinkFlags::empty(),
            LinkFlags::empty(),
        )
    }

    /// Bring interface `index` up (IFF_UP).
    ///
    /// # Errors
    /// [`NetlinkError::Kernel`], e.g. ENODEV.
    ///
    /// Syscalls: sendto, recvfrom.
    pub fn link_set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.link_set(index, Vec::new(), LinkFlags::Up, LinkFlags::Up)
    }

    /// Set the MTU of interface `index`, in bytes (IFLA_MTU).
    ///
    /// # Errors
    /// [`NetlinkError::Kernel`], e.g. EINVAL outside the device's range.
    ///
    /// Syscalls: sendto, recvfrom.
    pub fn link_set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        self.link_set(
            index,
            vec![LinkAttribute::Mtu(mtu)],
            LinkFlags::empty(),
            LinkFlags::empty(),
        )
    }

    /// Create a veth pair `a` <-> `b` in this namespace (RTM_NEWLINK,
    /// IFLA_INFO_KIND "veth", VETH_INFO_PEER), both down.
    ///
    /// # Errors
    /// [`NetlinkError::Kernel`], e.g. EEXIST if a name is taken, EINVAL for
    /// names over 15 bytes, EPERM without CAP_NET_ADMIN.
    ///
    /// Syscalls: sendto, recvfrom.
    pub fn veth_add(&mut self, a: &str, b: &str) -> Result<(), NetlinkError> {
        let mut peer = LinkMessage::default();
        peer.attributes.push(LinkAttribute::IfName(b.to_owned()));
        let mut req = LinkMessage::default();
        req.attributes.push(LinkAttribute::IfName(a.to_owned()));
        req.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.transact(
            "RTM_NEWLINK",
            RouteNetlinkMessage::NewLink(req),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Addresses of family `A` on interface `index` (RTM_GETADDR dump), in
    /// kernel order, link-local and tentative ones included.
    ///
    /// # Errors
    /// [`NetlinkError`] from the exchange.
    ///
    /// Syscalls: sendto, recvfrom.
    pub fn addrs<A: IpFamily>(&mut self, index: u32) -> Result<Vec<IfAddr<A>>, NetlinkError> {
        let mut req = AddressMessage::default();
        req.header.family = family::<A>();
        req.header.index = index;
        let replies = self.transact(
            "RTM_GETADDR",
            RouteNetlinkMessage::GetAddress(req),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => addr_from_msg::<A>(a),
                _ => None,
            })
            .filter(|a| a.index == index)
            .collect())
    }

    /// IPv4 addresses of interface `index`; see [`Netlink::addrs`].
    ///
    /// # Errors
    /// As [`Netlink::addrs`].
    pub fn addrs4(&mut self, index: u32) -> Result<Vec<IfAddr<Ipv4Addr>>, NetlinkError> {
        self.addrs(index)
    }

    /// IPv6 addresses of interface `index`; see [`Netlink::addrs`].
    ///
    /// # Errors
    /// As [`Netlink::addrs`].
    pub fn addrs6(&mut self, index: u32) -> Result<Vec<IfAddr<Ipv6Addr>>, NetlinkError> {
        self.addrs(index)
    }

    /// Add `addr`/`prefix_len` to interface `index` (RTM_NEWADDR, create,
    /// exclusive); an address already present (EEXIST) is success.
    fn addr_add(&mut self, index: u32, addr: IpAddr, prefix_len: u8) -> Result<(), NetlinkError> {
        let req = addr_msg(index, addr, prefix_len);
        match self.transact(
            "RTM_NEWADDR",
            RouteNetlinkMessage::NewAddress(req),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if is_eexist(&e) => Ok(()),
            r => r.map(drop),
        }
    }

    /// Add IPv4 `addr`/`prefix_len` to interface `index`, with the broadcast
    /// address (all host bits set) below /31, scope global. Idempotent.
    ///
    /// # Errors
    /// [`NetlinkError::Kernel`], e.g. EINVAL for `prefix_len` > 32, ENODEV.
    ///
    /// Syscalls: sendto, recvfrom.
    pub fn addr_add4(
        &mut self,
        index: u32,
        addr: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        self.addr_add(index, IpAddr::V4(addr), prefix_len)
    }

    /// Add IPv6 `addr`/`prefix_len` to interface `index` with IFA_F_NODAD:
    /// the address is the host's too, so duplicate address detection would
    /// fail or delay it (as upstream passt does). Idempotent.
    ///
    /// # Errors
    /// [`NetlinkError::Kernel`], e.g. EINVAL for `prefix_len` > 128, ENODEV.
    ///
    /// Syscalls: sendto, recvfrom.
    pub fn addr_add6(
        &mut self,
        index: u32,
        addr: Ipv6Addr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        self.addr_add(index, IpAddr::V6(addr), prefix_len)
    }

    /// Unicast routes of family `A` in the main table (RTM_GETROUTE dump),
    /// in kernel order. A main table that does not exist yet is empty.
    ///
    /// # Errors
    /// [`NetlinkError`] from the exchange, other than ENOENT.
    ///
    /// Syscalls: sendto, recvfrom.
    pub fn routes<A: IpFamily>(&mut self) -> Result<Vec<RouteEntry<A>>, NetlinkError> {
        let mut req = RouteMessage::default();
        req.header.address_family = family::<A>();
        req.header.table = RouteHeader::RT_TABLE_MAIN;
        let replies = match self.transact(
            "RTM_GETROUTE",
            RouteNetlinkMessage::GetRoute(req),
            NLM_F_DUMP,
        ) {
            // With strict checking, filtering on a table that was never
            // created (no route of that family yet) fails with ENOENT.
            Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(Vec::new()),
            r => r?,
        };
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => route_from_msg::<A>(r),
                _ => None,
            })
            .collect())
    }

    /// IPv4 main-table unicast routes; see [`Netlink::routes`].
    ///
    /// # Errors
    /// As [`Netlink::routes`].
    pub fn routes4(&mut self) -> Result<Vec<RouteEntry<Ipv4Addr>>, NetlinkError> {
        self.routes()
    }

    /// IPv6 main-table unicast routes; see [`Netlink::routes`].
    ///
    /// # Errors
    /// As [`Netlink::routes`].
    pub fn routes6(&mut self) -> Result<Vec<RouteEntry<Ipv6Addr>>, NetlinkError> {
        self.routes()
    }

    /// Add route `r` via interface `index` to the main table (RTM_NEWROUTE,
    /// create, exclusive; RTPROT_BOOT; scope link without gateway, universe
    /// with one). A route already present (EEXIST) is success.
    ///
    /// # Errors
    /// [`NetlinkError::Kernel`], e.g. ENETUNREACH if the gateway is not
    /// reachable on-link, ENODEV, EINVAL.
    ///
    /// Syscalls: sendto, recvfrom.
    pub fn route_add<A: IpFamily>(&mut self, index: u32, r: &Route<A>) -> Result<(), NetlinkError> {
        let req = route_msg(index, r);
        match self.transact(
            "RTM_NEWROUTE",
            RouteNetlinkMessage::NewRoute(req),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if is_eexist(&e) => Ok(()),
            r => r.map(drop),
        }
    }

    /// Add IPv4 route `r` via interface `index`; see [`Netlink::route_add`].
    ///
    /// # Errors
    /// As [`Netlink::route_add`].
    pub fn route_add4(&mut self, index: u32, r: &Route<Ipv4Addr>) -> Result<(), NetlinkError> {
        self.route_add(index, r)
    }

    /// Add IPv6 route `r` via interface `index`; see [`Netlink::route_add`].
    ///
    /// # Errors
    /// As [`Netlink::route_add`].
    pub fn route_add6(&mut self, index: u32, r: &Route<Ipv6Addr>) -> Result<(), NetlinkError> {
        self.route_add(index, r)
    }

    /// Add a multipath route to `dst`/`prefix_len` (RTA_MULTIPATH) with
    /// `nexthops` to the main table, RTPROT_BOOT, scope universe. Weights are
    /// clamped to 1..=256. A route already present (EEXIST) is success.
    ///
    /// # Errors
    /// [`NetlinkError::Kernel`], e.g. ENETUNREACH for an unreachable gateway,
    /// EINVAL for an empty `nexthops`.
    ///
    /// Syscalls: sendto, recvfrom.
    pub fn route_add_multipath<A: IpFamily>(
        &mut self,
        dst: A,
        prefix_len: u8,
        metric: Option<u32>,
        nexthops: &[NextHop<A>],
    ) -> Result<(), NetlinkError> {
        let req = multipath_msg(dst, prefix_len, metric, nexthops);
        match self.transact(
            "RTM_NEWROUTE",
            RouteNetlinkMessage::NewRoute(req),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if is_eexist(&e) => Ok(()),
            r => r.map(drop),
        }
    }
}

/// Private network namespaces for tests that need a real kernel.
#[cfg(test)]
pub(crate) mod test_ns {
    use super::Netlink;

    /// Whether privileged tests may run: true as root. Otherwise the calling
    /// test fails, unless PASST_SKIP_PRIV_TESTS=1 asks to skip it (false).
    pub(crate) fn privileged() -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        if std::env::var_os("PASST_SKIP_PRIV_TESTS").is_some_and(|v| v == "1") {
            eprintln!("skipped: needs root (PASST_SKIP_PRIV_TESTS=1)");
            return false;
        }
        panic!(
            "this test needs root (unshare(CLONE_NEWNET) and CAP_NET_ADMIN in a private \
             network namespace); run it as root, or set PASST_SKIP_PRIV_TESTS=1 to skip it"
        );
    }

    /// Run `f` on a dedicated thread that has unshare()d into a new, empty
    /// network namespace, with a [`Netlink`] opened there; the namespace
    /// goes away with the thread. `None` if skipped (see [`privileged`]);
    /// a panic in `f` fails the calling test.
    pub(crate) fn in_netns<T: Send + 'static>(
        f: impl FnOnce(&mut Netlink) -> T + Send + 'static,
    ) -> Option<T> {
        if !privileged() {
            return None;
        }
        let thread = std::thread::spawn(move || {
            // Must succeed before any socket is opened: never touch the
            // host's namespace.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare(CLONE_NEWNET) failed: need CAP_SYS_ADMIN");
            let mut nl = Netlink::open().expect("netlink socket in the test namespace");
            f(&mut nl)
        });
        match thread.join() {
            Ok(v) => Some(v),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Create veth pair `a` <-> `b`, set `a`'s MTU, bring both up; returns
    /// their indices.
    pub(crate) fn veth_up(nl: &mut Netlink, a: &str, b: &str, mtu: u32) -> (u32, u32) {
        nl.veth_add(a, b).expect("veth_add");
        let ia = nl
            .link_index(a)
            .expect("link_index")
            .expect("first veth end");
        let ib = nl
            .link_index(b)
            .expect("link_index")
            .expect("second veth end");
        nl.link_set_mtu(ia, mtu).expect("link_set_mtu");
        nl.link_set_up(ia).expect("link_set_up");
        nl.link_set_up(ib).expect("link_set_up");
        (ia, ib)
    }
}

#[cfg(test)]
mod tests {
    use super::test_ns::{in_netns, veth_up};
    use super::*;

    const SEQ: u32 = 7;

    /// nlmsghdr in host byte order.
    fn nlhdr(len: u32, ty: u16, flags: u16, seq: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v
    }

    /// Complete message: header + payload (payload padded to 4 by caller).
    fn nlmsg(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(16 + payload.len()).unwrap();
        let mut v = nlhdr(len, ty, flags, seq);
        v.extend_from_slice(payload);
        v
    }

    /// NLMSG_ERROR with `code` and a 16-byte copy of the request header.
    fn error_msg(seq: u32, code: i32) -> Vec<u8> {
        let mut p = code.to_ne_bytes().to_vec();
        p.extend_from_slice(&nlhdr(16, 20, 0x605, seq));
        nlmsg(NLMSG_ERROR, 0x100, seq, &p)
    }

    /// RTM_NEWLINK for a loopback "lo", index 1, MTU 65536, with a bogus
    /// 5-byte IFLA_ADDRESS (not a MAC).
    fn newlink_lo(seq: u32) -> Vec<u8> {
        #[rustfmt::skip]
        let mut p = vec![
            0, 0, 0x04, 0x03, // family, pad, ARPHRD_LOOPBACK (772)
        ];
        p.extend_from_slice(&1u32.to_ne_bytes()); // index
        p.extend_from_slice(&(0x49u32).to_ne_bytes()); // UP|LOOPBACK|RUNNING
        p.extend_from_slice(&0u32.to_ne_bytes()); // change
        p.extend_from_slice(&[7, 0, 3, 0, b'l', b'o', 0, 0]); // IFLA_IFNAME "lo"
        p.extend_from_slice(&[8, 0, 4, 0]); // IFLA_MTU
        p.extend_from_slice(&65536u32.to_ne_bytes());
        p.extend_from_slice(&[9, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // IFLA_ADDRESS, 5 bytes
        nlmsg(16, 2, seq, &p)
    }

    #[test]
    fn ack_ends_exchange_without_messages() {
        let mut out = Vec::new();
        assert_eq!(
            parse_datagram("RTM_NEWADDR", &error_msg(SEQ, 0), SEQ, &mut out).unwrap(),
            Progress::Done
        );
        assert!(out.is_empty());
    }

    #[test]
    fn nlmsg_error_gives_kernel_error_with_positive_errno() {
        let mut out = Vec::new();
        let e = parse_datagram("RTM_NEWADDR", &error_msg(SEQ, -libc::EEXIST), SEQ, &mut out)
            .unwrap_err();
        assert!(
            matches!(e, NetlinkError::Kernel { op: "RTM_NEWADDR", errno } if errno == libc::EEXIST)
        );
        assert_eq!(
            e.to_string(),
            format!("netlink RTM_NEWADDR: {}", strerror(libc::EEXIST))
        );
        assert!(e.to_string().contains("File exists"));
    }

    #[test]
    fn done_with_negative_status_gives_kernel_error() {
        let mut out = Vec::new();
        let done = nlmsg(NLMSG_DONE, 2, SEQ, &(-libc::EINTR).to_ne_bytes());
        let e = parse_datagram("RTM_GETROUTE", &done, SEQ, &mut out).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EINTR));
    }

    #[test]
    fn dump_datagram_collects_messages_until_done() {
        let mut d = newlink_lo(SEQ);
        d.extend_from_slice(&newlink_lo(SEQ));
        let mut out = Vec::new();
        assert_eq!(
            parse_datagram("RTM_GETLINK", &d, SEQ, &mut out).unwrap(),
            Progress::More
        );
        assert_eq!(out.len(), 2);
        d = nlmsg(NLMSG_DONE, 2, SEQ, &0i32.to_ne_bytes());
        assert_eq!(
            parse_datagram("RTM_GETLINK", &d, SEQ, &mut out).unwrap(),
            Progress::Done
        );
        assert_eq!(out.len(), 2);
        let RouteNetlinkMessage::NewLink(l) = &out[0] else {
            panic!("not a link: {:?}", out[0])
        };
        assert_eq!(
            link_from_msg(l),
            Link {
                index: 1,
                name: "lo".into(),
                mtu: 65536,
                mac: None,
                up: true,
                loopback: true
            }
        );
    }

    #[test]
    fn replies_with_other_sequence_numbers_are_dropped() {
        let mut d = newlink_lo(SEQ - 1);
        d.extend_from_slice(&error_msg(SEQ - 1, -libc::EPERM));
        let mut out = Vec::new();
        assert_eq!(
            parse_datagram("RTM_GETLINK", &d, SEQ, &mut out).unwrap(),
            Progress::More
        );
        assert!(out.is_empty());
        d.extend_from_slice(&error_msg(SEQ, 0));
        assert_eq!(
            parse_datagram("RTM_GETLINK", &d, SEQ, &mut out).unwrap(),
            Progress::Done
        );
        assert!(out.is_empty());
    }

    #[test]
    fn noop_is_ignored() {
        let mut d = nlmsg(NLMSG_NOOP, 0, SEQ, &[]);
        d.extend_from_slice(&error_msg(SEQ, 0));
        assert_eq!(
            parse_datagram("x", &d, SEQ, &mut Vec::new()).unwrap(),
            Progress::Done
        );
    }

    #[test]
    fn undecodable_dump_entry_is_skipped() {
        // RTM_NEWROUTE whose 3-byte body is shorter than struct rtmsg.
        let mut d = nlmsg(24, 2, SEQ, &[2, 0, 0, 0]);
        d.truncate(16 + 3);
        d[0] = 19;
        d.push(0); // alignment padding
        d.extend_from_slice(&newlink_lo(SEQ));
        let mut out = Vec::new();
        assert_eq!(
            parse_datagram("RTM_GETROUTE", &d, SEQ, &mut out).unwrap(),
            Progress::More
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn truncated_and_misframed_datagrams_are_malformed() {
        let full = newlink_lo(SEQ);
        for cut in [1, 15, 16, 20, full.len() - 1] {
            let r = parse_datagram("RTM_GETLINK", &full[..cut], SEQ, &mut Vec::new());
            assert!(
                matches!(r, Err(NetlinkError::Malformed)),
                "cut at {cut}: {r:?}"
            );
        }
        // nlmsg_len below the header size.
        let mut bad = full.clone();
        bad[..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(matches!(
            parse_datagram("x", &bad, SEQ, &mut Vec::new()),
            Err(NetlinkError::Malformed)
        ));
        // NLMSG_ERROR without room for the error code.
        let short = nlmsg(NLMSG_ERROR, 0, SEQ, &[0, 0]);
        assert!(matches!(
            parse_datagram("x", &short, SEQ, &mut Vec::new()),
            Err(NetlinkError::Malformed)
        ));
        let overrun = nlmsg(NLMSG_OVERRUN, 0, SEQ, &[]);
        assert!(matches!(
            parse_datagram("x", &overrun, SEQ, &mut Vec::new()),
            Err(NetlinkError::Malformed)
        ));
        assert_eq!(
            parse_datagram("x", &[], SEQ, &mut Vec::new()).unwrap(),
            Progress::More
        );
    }

    fn encoded(msg: RouteNetlinkMessage, flags: u16) -> Vec<u8> {
        let mut out = Vec::new();
        encode(msg, flags, SEQ, &mut out);
        out
    }

    const NEW: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;

    #[test]
    #[cfg(target_endian = "little")]
    fn addr_add4_request_golden_bytes() {
        let m = addr_msg(3, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 24);
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            48, 0, 0, 0, 20, 0, 0x05, 0x06, 7, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr
            2, 24, 0, 0, 3, 0, 0, 0,                 // ifaddrmsg: AF_INET /24 if 3
            8, 0, 2, 0, 10, 0, 0, 1,                 // IFA_LOCAL
            8, 0, 1, 0, 10, 0, 0, 1,                 // IFA_ADDRESS
            8, 0, 4, 0, 10, 0, 0, 255,               // IFA_BROADCAST
        ];
        assert_eq!(encoded(RouteNetlinkMessage::NewAddress(m), NEW), want);
    }

    #[test]
    fn addr4_broadcast_only_below_slash_31() {
        let brd = |p| {
            addr_msg(1, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77)), p)
                .attributes
                .iter()
                .find_map(|a| match a {
                    AddressAttribute::Broadcast(b) => Some(*b),
                    _ => None,
                })
        };
        assert_eq!(brd(0), Some(Ipv4Addr::BROADCAST));
        assert_eq!(brd(8), Some(Ipv4Addr::new(192, 255, 255, 255)));
        assert_eq!(brd(30), Some(Ipv4Addr::new(192, 0, 2, 79)));
        assert_eq!(brd(31), None);
        assert_eq!(brd(32), None);
        assert_eq!(brd(200), None);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn addr_add6_request_golden_bytes_has_nodad() {
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let m = addr_msg(3, IpAddr::V6(a), 64);
        let mut want: Vec<u8> = vec![72, 0, 0, 0, 20, 0, 0x05, 0x06, 7, 0, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(&[10, 64, 2, 0, 3, 0, 0, 0]); // AF_INET6 /64 IFA_F_NODAD
        want.extend_from_slice(&[20, 0, 2, 0]);
        want.extend_from_slice(&a.octets());
        want.extend_from_slice(&[20, 0, 1, 0]);
        want.extend_from_slice(&a.octets());
        want.extend_from_slice(&[8, 0, 8, 0, 2, 0, 0, 0]); // IFA_FLAGS: NODAD
        assert_eq!(encoded(RouteNetlinkMessage::NewAddress(m), NEW), want);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn route_add4_request_golden_bytes() {
        let r = Route {
            dst: Ipv4Addr::new(10, 1, 0, 0),
            prefix_len: 16,
            gw: Some(Ipv4Addr::new(10, 0, 0, 2)),
            metric: Some(100),
        };
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            60, 0, 0, 0, 24, 0, 0x05, 0x06, 7, 0, 0, 0, 0, 0, 0, 0,
            2, 16, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0,  // rtmsg: main, boot, universe, unicast
            8, 0, 1, 0, 10, 1, 0, 0,                // RTA_DST
            8, 0, 4, 0, 5, 0, 0, 0,                 // RTA_OIF
            8, 0, 5, 0, 10, 0, 0, 2,                // RTA_GATEWAY
            8, 0, 6, 0, 100, 0, 0, 0,               // RTA_PRIORITY
        ];
        assert_eq!(
            encoded(RouteNetlinkMessage::NewRoute(route_msg(5, &r)), NEW),
            want
        );
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn route_add6_on_link_default_golden_bytes() {
        let r = Route {
            dst: Ipv6Addr::UNSPECIFIED,
            prefix_len: 0,
            gw: None,
            metric: None,
        };
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            36, 0, 0, 0, 24, 0, 0x05, 0x06, 7, 0, 0, 0, 0, 0, 0, 0,
            10, 0, 0, 0, 254, 3, 253, 1, 0, 0, 0, 0, // scope link, no RTA_DST
            8, 0, 4, 0, 5, 0, 0, 0,                  // RTA_OIF
        ];
        assert_eq!(
            encoded(RouteNetlinkMessage::NewRoute(route_msg(5, &r)), NEW),
            want
        );
    }

    #[rustfmt::skip]
    const MULTIPATH4: [u8; 72] = [
        72, 0, 0, 0, 24, 0, 0x05, 0x06, 7, 0, 0, 0, 0, 0, 0, 0,
        2, 0, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0,
        8, 0, 6, 0, 10, 0, 0, 0,                     // RTA_PRIORITY 10
        36, 0, 9, 0,                                 // RTA_MULTIPATH
        16, 0, 0, 0, 2, 0, 0, 0, 8, 0, 5, 0, 10, 0, 0, 2, // weight 1 if 2 via 10.0.0.2
        16, 0, 0, 2, 3, 0, 0, 0, 8, 0, 5, 0, 10, 1, 0, 2, // weight 3 if 3 via 10.1.0.2
    ];

    fn multipath4_hops() -> [NextHop<Ipv4Addr>; 2] {
        [
            NextHop {
                index: 2,
                gw: Some(Ipv4Addr::new(10, 0, 0, 2)),
                weight: 1,
            },
            NextHop {
                index: 3,
                gw: Some(Ipv4Addr::new(10, 1, 0, 2)),
                weight: 3,
            },
        ]
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn multipath_request_golden_bytes() {
        let m = multipath_msg(Ipv4Addr::UNSPECIFIED, 0, Some(10), &multipath4_hops());
        assert_eq!(encoded(RouteNetlinkMessage::NewRoute(m), NEW), MULTIPATH4);
    }

    /// Decode one encoded message as if the kernel had sent it.
    fn decode(bytes: &[u8]) -> RouteNetlinkMessage {
        let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).unwrap();
        match m.payload {
            NetlinkPayload::InnerMessage(i) => i,
            p => panic!("not an inner message: {p:?}"),
        }
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn multipath_route_decodes_with_weights_in_kernel_order() {
        let RouteNetlinkMessage::NewRoute(r) = decode(&MULTIPATH4) else {
            panic!()
        };
        let e = route_from_msg::<Ipv4Addr>(&r).unwrap();
        assert_eq!(
            e,
            RouteEntry {
                dst: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
                table: RT_TABLE_MAIN,
                protocol: RTPROT_BOOT,
                scope: RT_SCOPE_UNIVERSE,
                metric: Some(10),
                nexthops: multipath4_hops().to_vec(),
            }
        );
        // Wrong family: not an IPv6 route.
        assert_eq!(route_from_msg::<Ipv6Addr>(&r), None);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn kernel_route_with_rta_table_decodes() {
        let a: Ipv6Addr = "2001:db8::".parse().unwrap();
        let gw: Ipv6Addr = "fe80::1".parse().unwrap();
        // As dumped: rtm_table main, RTA_TABLE, RTA_DST, RTA_PRIORITY,
        // RTA_OIF, RTA_GATEWAY; proto RA (9), scope universe.
        let mut p = vec![10, 48, 0, 0, 254, 9, 0, 1, 0, 0, 0, 0];
        p.extend_from_slice(&[8, 0, 15, 0, 254, 0, 0, 0]);
        p.extend_from_slice(&[20, 0, 1, 0]);
        p.extend_from_slice(&a.octets());
        p.extend_from_slice(&[8, 0, 6, 0, 0, 4, 0, 0]);
        p.extend_from_slice(&[8, 0, 4, 0, 4, 0, 0, 0]);
        p.extend_from_slice(&[20, 0, 5, 0]);
        p.extend_from_slice(&gw.octets());
        let RouteNetlinkMessage::NewRoute(r) = decode(&nlmsg(24, 2, 1, &p)) else {
            panic!()
        };
        let e = route_from_msg::<Ipv6Addr>(&r).unwrap();
        assert_eq!(e.dst, a);
        assert_eq!(e.prefix_len, 48);
        assert_eq!(e.protocol, 9);
        assert_eq!(e.metric, Some(1024));
        assert_eq!(
            e.nexthops,
            vec![NextHop {
                index: 4,
                gw: Some(gw),
                weight: 1
            }]
        );

        // Same route in the local table (255, via RTA_TABLE): not reported.
        p[12 + 4] = 255;
        let RouteNetlinkMessage::NewRoute(r) = decode(&nlmsg(24, 2, 1, &p)) else {
            panic!()
        };
        assert_eq!(route_from_msg::<Ipv6Addr>(&r), None);
        // Type local (2) in the main table: not unicast, not reported.
        p[12 + 4] = 254;
        p[7] = 2;
        let RouteNetlinkMessage::NewRoute(r) = decode(&nlmsg(24, 2, 1, &p)) else {
            panic!()
        };
        assert_eq!(route_from_msg::<Ipv6Addr>(&r), None);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn kernel_address_prefers_ifa_local_and_ifa_flags() {
        // Point-to-point: IFA_ADDRESS is the peer, IFA_LOCAL ours.
        let mut p = vec![2, 32, 0x80, 0, 9, 0, 0, 0];
        p.extend_from_slice(&[8, 0, 1, 0, 10, 0, 0, 9]);
        p.extend_from_slice(&[8, 0, 2, 0, 10, 0, 0, 1]);
        p.extend_from_slice(&[8, 0, 8, 0, 0xa0, 0, 0, 0]); // PERMANENT|DEPRECATED
        let RouteNetlinkMessage::NewAddress(m) = decode(&nlmsg(20, 2, 1, &p)) else {
            panic!()
        };
        let a = addr_from_msg::<Ipv4Addr>(&m).unwrap();
        assert_eq!(
            a,
            IfAddr {
                index: 9,
                addr: Ipv4Addr::new(10, 0, 0, 1),
                prefix_len: 32,
                scope: 0,
                flags: 0xa0
            }
        );
        assert_eq!(addr_from_msg::<Ipv6Addr>(&m), None);
    }

    // Tests against the kernel, each in a private network namespace.

    #[test]
    fn fresh_namespace_has_only_loopback() {
        in_netns(|nl| {
            let links = nl.links().unwrap();
            assert_eq!(links.len(), 1, "{links:?}");
            assert_eq!(links[0].name, "lo");
            assert_eq!(links[0].index, 1);
            assert!(links[0].loopback);
            assert!(!links[0].up);
            assert_eq!(links[0].mac, Some([0; 6]));
        });
    }

    #[test]
    fn veth_add_creates_both_ends_found_by_name() {
        in_netns(|nl| {
            nl.veth_add("pt0a", "pt0b").unwrap();
            let a = nl.link_index("pt0a").unwrap().unwrap();
            let b = nl.link_index("pt0b").unwrap().unwrap();
            assert_ne!(a, b);
            assert_eq!(nl.link_index("pt0c").unwrap(), None);
            let mut names: Vec<String> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
            names.sort();
            assert_eq!(names, ["lo", "pt0a", "pt0b"].map(String::from).to_vec());
            let e = nl.veth_add("pt0a", "pt0c").unwrap_err();
            assert!(
                matches!(e, NetlinkError::Kernel { op: "RTM_NEWLINK", errno } if errno == libc::EEXIST)
            );
        });
    }

    #[test]
    fn link_set_mac_mtu_up_read_back() {
        in_netns(|nl| {
            nl.veth_add("pt0a", "pt0b").unwrap();
            let i = nl.link_index("pt0a").unwrap().unwrap();
            let mac = [0x02, 0x50, 0x41, 0x53, 0x54, 0x01];
            nl.link_set_mac(i, mac).unwrap();
            nl.link_set_mtu(i, 1400).unwrap();
            assert!(!nl.link(i).unwrap().up);
            nl.link_set_up(i).unwrap();
            let l = nl.link(i).unwrap();
            assert_eq!(
                (l.name.as_str(), l.mtu, l.mac, l.up, l.loopback),
                ("pt0a", 1400, Some(mac), true, false)
            );
            assert_eq!(nl.link_get_mac(i).unwrap(), mac);

            let missing = 9999;
            assert_eq!(nl.link(missing).unwrap_err().errno(), Some(libc::ENODEV));
            assert_eq!(
                nl.link_set_mtu(missing, 1400).unwrap_err().errno(),
                Some(libc::ENODEV)
            );
            assert_eq!(
                nl.link_set_up(missing).unwrap_err().errno(),
                Some(libc::ENODEV)
            );
            // Below the IPv4 minimum of 68 bytes is fine for veth, 0 is not.
            assert!(nl.link_set_mtu(i, 0).unwrap_err().errno().is_some());
        });
    }

    #[test]
    fn addr_add4_is_idempotent_and_has_broadcast() {
        in_netns(|nl| {
            let (i, _) = veth_up(nl, "pt0a", "pt0b", 1500);
            let a = Ipv4Addr::new(10, 0, 0, 1);
            nl.addr_add4(i, a, 24).unwrap();
            nl.addr_add4(i, a, 24).unwrap();
            nl.addr_add4(i, Ipv4Addr::new(10, 0, 1, 1), 32).unwrap();
            let got: Vec<_> = nl
                .addrs4(i)
                .unwrap()
                .into_iter()
                .map(|x| (x.addr, x.prefix_len, x.scope))
                .collect();
            assert_eq!(
                got,
                vec![
                    (a, 24, RT_SCOPE_UNIVERSE),
                    (Ipv4Addr::new(10, 0, 1, 1), 32, RT_SCOPE_UNIVERSE)
                ]
            );
            assert!(
                nl.addrs4(1).unwrap().is_empty(),
                "lo is down, has no address"
            );

            let mut req = AddressMessage::default();
            req.header.family = AddressFamily::Inet;
            let brd: Vec<Ipv4Addr> = nl
                .transact(
                    "RTM_GETADDR",
                    RouteNetlinkMessage::GetAddress(req),
                    NLM_F_DUMP,
                )
                .unwrap()
                .iter()
                .flat_map(|m| match m {
                    RouteNetlinkMessage::NewAddress(a) => a.attributes.clone(),
                    _ => Vec::new(),
                })
                .filter_map(|attr| match attr {
                    AddressAttribute::Broadcast(b) => Some(b),
                    _ => None,
                })
                .collect();
            assert_eq!(brd, vec![Ipv4Addr::new(10, 0, 0, 255)]);

            assert_eq!(
                nl.addr_add4(i, a, 33).unwrap_err().errno(),
                Some(libc::EINVAL)
            );
            assert_eq!(
                nl.addr_add4(9999, a, 24).unwrap_err().errno(),
                Some(libc::ENODEV)
            );
        });
    }

    #[test]
    fn addr_add6_is_idempotent_and_skips_dad() {
        in_netns(|nl| {
            let (i, _) = veth_up(nl, "pt0a", "pt0b", 1500);
            let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
            nl.addr_add6(i, a, 64).unwrap();
            nl.addr_add6(i, a, 64).unwrap();
            let got: Vec<_> = nl
                .addrs6(i)
                .unwrap()
                .into_iter()
                .filter(|x| x.addr == a)
                .collect();
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(got[0].prefix_len, 64);
            assert_eq!(got[0].scope, RT_SCOPE_UNIVERSE);
            assert_ne!(got[0].flags & IFA_F_NODAD, 0);
            assert_eq!(got[0].flags & IFA_F_TENTATIVE, 0);
            let b: Ipv6Addr = "2001:db8::2".parse().unwrap();
            assert_eq!(
                nl.addr_add6(i, b, 129).unwrap_err().errno(),
                Some(libc::EINVAL)
            );
        });
    }

    #[test]
    fn route_add4_on_link_and_via_gateway_read_back() {
        in_netns(|nl| {
            let (i, _) = veth_up(nl, "pt0a", "pt0b", 1500);
            nl.addr_add4(i, Ipv4Addr::new(10, 0, 0, 1), 24).unwrap();
            let on_link = Route {
                dst: Ipv4Addr::new(10, 9, 0, 0),
                prefix_len: 16,
                gw: None,
                metric: None,
            };
            let dflt = Route {
                dst: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
                gw: Some(Ipv4Addr::new(10, 0, 0, 2)),
                metric: Some(50),
            };
            for _ in 0..2 {
                nl.route_add4(i, &on_link).unwrap();
                nl.route_add4(i, &dflt).unwrap();
            }
            let routes = nl.routes4().unwrap();
            let find = |dst, len| {
                routes
                    .iter()
                    .find(|r| r.dst == dst && r.prefix_len == len)
                    .cloned()
            };
            assert_eq!(
                find(Ipv4Addr::new(10, 9, 0, 0), 16),
                Some(RouteEntry {
                    dst: Ipv4Addr::new(10, 9, 0, 0),
                    prefix_len: 16,
                    table: RT_TABLE_MAIN,
                    protocol: RTPROT_BOOT,
                    scope: RT_SCOPE_LINK,
                    metric: None,
                    nexthops: vec![NextHop {
                        index: i,
                        gw: None,
                        weight: 1
                    }],
                })
            );
            assert_eq!(
                find(Ipv4Addr::UNSPECIFIED, 0),
                Some(RouteEntry {
                    dst: Ipv4Addr::UNSPECIFIED,
                    prefix_len: 0,
                    table: RT_TABLE_MAIN,
                    protocol: RTPROT_BOOT,
                    scope: RT_SCOPE_UNIVERSE,
                    metric: Some(50),
                    nexthops: vec![NextHop {
                        index: i,
                        gw: Some(Ipv4Addr::new(10, 0, 0, 2)),
                        weight: 1
                    }],
                })
            );
            // The prefix route the kernel made for the address.
            let kernel = find(Ipv4Addr::new(10, 0, 0, 0), 24).unwrap();
            assert_eq!((kernel.protocol, kernel.scope), (2, RT_SCOPE_LINK));
            // The local table (10.0.0.1 local, broadcasts) is not reported.
            assert!(routes.iter().all(|r| r.table == RT_TABLE_MAIN));
            assert_eq!(routes.len(), 3, "{routes:?}");

            let far = Route {
                gw: Some(Ipv4Addr::new(192, 0, 2, 1)),
                ..on_link
            };
            let e = nl
                .route_add4(
                    i,
                    &Route {
                        dst: Ipv4Addr::new(10, 8, 0, 0),
                        ..far
                    },
                )
                .unwrap_err();
            assert!(
                matches!(e, NetlinkError::Kernel { op: "RTM_NEWROUTE", errno } if errno == libc::ENETUNREACH),
                "{e:?}"
            );
        });
    }

    #[test]
    fn route_add6_via_link_local_and_global_gateway_read_back() {
        in_netns(|nl| {
            let (i, _) = veth_up(nl, "pt0a", "pt0b", 1500);
            nl.addr_add6(i, "2001:db8::1".parse().unwrap(), 64).unwrap();
            let ll_gw: Ipv6Addr = "fe80::1".parse().unwrap();
            let r1 = Route {
                dst: "2001:db8:5::".parse().unwrap(),
                prefix_len: 48,
                gw: Some(ll_gw),
                metric: Some(7),
            };
            let r2 = Route {
                dst: Ipv6Addr::UNSPECIFIED,
                prefix_len: 0,
                gw: Some("2001:db8::2".parse().unwrap()),
                metric: None,
            };
            let r3 = Route {
                dst: "2001:db8:6::".parse().unwrap(),
                prefix_len: 64,
                gw: None,
                metric: None,
            };
            for _ in 0..2 {
                for r in [&r1, &r2, &r3] {
                    nl.route_add6(i, r).unwrap();
                }
            }
            let routes = nl.routes6().unwrap();
            for r in [&r1, &r2, &r3] {
                let e = routes
                    .iter()
                    .find(|e| e.dst == r.dst && e.prefix_len == r.prefix_len)
                    .unwrap_or_else(|| panic!("{r:?} missing from {routes:?}"));
                assert_eq!(
                    e.nexthops,
                    vec![NextHop {
                        index: i,
                        gw: r.gw,
                        weight: 1
                    }]
                );
                assert_eq!(e.protocol, RTPROT_BOOT);
                // IPv6 has no route scopes: the default metric is 1024.
                assert_eq!(e.metric, Some(r.metric.unwrap_or(1024)));
            }
        });
    }

    #[test]
    fn multipath_routes_read_back_with_weights() {
        in_netns(|nl| {
            let (a, _) = veth_up(nl, "pt0a", "pt0b", 1500);
            let (b, _) = veth_up(nl, "pt1a", "pt1b", 1500);
            nl.addr_add4(a, Ipv4Addr::new(10, 0, 0, 1), 24).unwrap();
            nl.addr_add4(b, Ipv4Addr::new(10, 1, 0, 1), 24).unwrap();
            let hops = [
                NextHop {
                    index: a,
                    gw: Some(Ipv4Addr::new(10, 0, 0, 2)),
                    weight: 1,
                },
                NextHop {
                    index: b,
                    gw: Some(Ipv4Addr::new(10, 1, 0, 2)),
                    weight: 3,
                },
            ];
            nl.route_add_multipath(Ipv4Addr::UNSPECIFIED, 0, None, &hops)
                .unwrap();
            let dflt: Vec<_> = nl
                .routes4()
                .unwrap()
                .into_iter()
                .filter(|r| r.prefix_len == 0)
                .collect();
            assert_eq!(dflt.len(), 1);
            assert_eq!(dflt[0].nexthops, hops.to_vec());

            nl.addr_add6(a, "2001:db8::1".parse().unwrap(), 64).unwrap();
            nl.addr_add6(b, "2001:db8:1::1".parse().unwrap(), 64)
                .unwrap();
            let hops6 = [
                NextHop {
                    index: a,
                    gw: Some("2001:db8::2".parse().unwrap()),
                    weight: 2,
                },
                NextHop {
                    index: b,
                    gw: Some("2001:db8:1::2".parse().unwrap()),
                    weight: 256,
                },
            ];
            nl.route_add_multipath(Ipv6Addr::UNSPECIFIED, 0, None, &hops6)
                .unwrap();
            let dflt: Vec<_> = nl
                .routes6()
                .unwrap()
                .into_iter()
                .filter(|r| r.prefix_len == 0)
                .collect();
            assert_eq!(dflt.len(), 1, "{dflt:?}");
            assert_eq!(dflt[0].nexthops, hops6.to_vec());
        });
    }

    #[test]
    fn dump_spanning_many_datagrams_is_complete() {
        in_netns(|nl| {
            let (i, _) = veth_up(nl, "pt0a", "pt0b", 1500);
            for n in 0..1500u32 {
                let dst = Ipv4Addr::from(0x0a40_0000 | (n << 8));
                nl.route_add4(
                    i,
                    &Route {
                        dst,
                        prefix_len: 24,
                        gw: None,
                        metric: None,
                    },
                )
                .unwrap();
            }
            let routes = nl.routes4().unwrap();
            assert_eq!(routes.len(), 1500);
            assert!(routes.iter().all(|r| r.nexthops
                == [NextHop {
                    index: i,
                    gw: None,
                    weight: 1
                }]));
        });
    }

    #[test]
    fn routes_of_a_namespace_without_main_table_are_empty() {
        in_netns(|nl| {
            assert_eq!(nl.routes4().unwrap(), Vec::new());
            assert_eq!(nl.routes6().unwrap(), Vec::new());
        });
    }

    #[test]
    fn socket_keeps_its_namespace_when_used_from_another_thread() {
        let Some(mut nl) = in_netns(|nl| {
            nl.veth_add("ptns0", "ptns1").unwrap();
            Netlink::open().unwrap()
        }) else {
            return;
        };
        // Back on the test thread, in the host's namespace: the socket still
        // sees the private one (which it keeps alive).
        assert!(nl.link_index("ptns0").unwrap().is_some());
        assert_eq!(nl.links().unwrap().len(), 3);
        // Read-only look at the host's namespace: the veth is not there.
        let mut host = Netlink::open().unwrap();
        assert_eq!(host.link_index("ptns0").unwrap(), None);
    }
}
