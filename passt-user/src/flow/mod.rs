//! # Theory of operation
//!
//! One table holds every flow of every protocol. A flow has two sides,
//! [`INI`] (the side that initiated it) and [`TGT`] (the side we opened
//! towards). Each side is a [`FlowSide`] on a [`Pif`] (tap, host or splice):
//! our address and port on that interface (`oaddr`/`oport`) and the
//! endpoint's (`eaddr`/`eport`). Forwarding ([`crate::fwd`]) maps the
//! initiating side to the target side; protocol modules never invent
//! addresses.
//!
//! Flows are looked up from tap packets through the hash table in
//! [`table`], keyed by (pif, protocol, flowside) with SipHash-1-3 and a
//! random key. Packets from sockets need no lookup: their epoll reference
//! carries the flow side index ([`Sidx`]).
//!
//! Lifecycle: a slot is `Free`, becomes `Active` once both sides and the
//! protocol state are set, and `Closing` when the protocol wants it gone.
//! Closing flows are freed in the deferred pass after each epoll cycle
//! ([`table::FlowTable::defer_free`]), so that a flow never disappears while
//! an event for it is still being handled in the same cycle.

pub mod inany;
pub mod table;

pub use inany::Inany;

/// Index of the initiating side.
pub const INI: usize = 0;
/// Index of the target side.
pub const TGT: usize = 1;

/// The interface a flow side lives on (upstream's "pif").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Pif {
    /// Not set.
    None = 0,
    /// The guest or namespace, through the tap.
    Tap = 1,
    /// Host sockets in the init namespace.
    Host = 2,
    /// Sockets in the target namespace (pasta's splice path).
    Splice = 3,
}

/// One side of a flow: addresses and ports as seen on that side's interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowSide {
    /// Endpoint (remote peer on this interface) address.
    pub eaddr: Inany,
    /// Our address on this interface.
    pub oaddr: Inany,
    /// Endpoint port (echo identifier for ping flows), host order.
    pub eport: u16,
    /// Our port (echo identifier for ping flows), host order.
    pub oport: u16,
}

impl FlowSide {
    /// An all-zero side.
    pub const UNSPEC: FlowSide =
        FlowSide { eaddr: Inany::UNSPEC4, oaddr: Inany::UNSPEC4, eport: 0, oport: 0 };
}

/// A flow and side: bits 0..31 flow index, bit 31 the side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sidx(u32);

impl Sidx {
    /// Flow `flow`, side `side` (`INI` or `TGT`).
    pub fn new(flow: u32, side: usize) -> Self {
        debug_assert!(flow < 1 << 31 && side < 2);
        Sidx(flow | ((side as u32) << 31))
    }
    /// The flow index.
    pub fn flow(self) -> usize {
        (self.0 & 0x7fff_ffff) as usize
    }
    /// The side.
    pub fn side(self) -> usize {
        (self.0 >> 31) as usize
    }
    /// The packed value (for epoll references).
    pub fn raw(self) -> u32 {
        self.0
    }
    /// Unpack a value made by [`Sidx::raw`].
    pub fn from_raw(v: u32) -> Self {
        Sidx(v)
    }
}

/// Where a flow is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// Unused slot.
    Free,
    /// In use.
    Active,
    /// Waiting for the deferred pass to free it.
    Closing,
}

/// Protocol of a flow (IP protocol numbers, RFC 790 / IANA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Proto {
    /// ICMP echo (1) or ICMPv6 echo (58), by address family.
    Ping = 1,
    /// TCP (6).
    Tcp = 6,
    /// UDP (17).
    Udp = 17,
}

/// Protocol state of a flow that owns one host socket (UDP, ping).
#[derive(Debug)]
pub struct SockFlow {
    /// The host-side socket, registered in epoll with this flow's target
    /// side index.
    pub sock: std::os::fd::OwnedFd,
    /// Last time a packet went either way.
    pub last: std::time::Instant,
    /// IPv6 flow label for frames to the tap (20 bits, non-zero).
    pub flow_label: u32,
}

/// Per-protocol data of a flow in the table.
#[derive(Debug, Default)]
pub enum FlowData {
    /// Free slot.
    #[default]
    None,
    /// A UDP flow ([`crate::udp`]).
    Udp(SockFlow),
    /// An ICMP/ICMPv6 echo flow ([`crate::icmp`]).
    Ping(SockFlow),
    /// A TCP connection ([`crate::tcp::io`]).
    Tcp(crate::tcp::io::TcpFlow),
    /// A spliced TCP connection ([`crate::tcp::splice`]).
    TcpSplice(crate::tcp::splice::TcpSplice),
    /// A spliced UDP flow ([`crate::udp`]).
    UdpSplice(crate::udp::UdpSplice),
}

impl FlowData {
    /// The socket flow, for either protocol.
    pub fn sock_flow(&self) -> Option<&SockFlow> {
        match self {
            FlowData::Udp(s) | FlowData::Ping(s) => Some(s),
            FlowData::None | FlowData::Tcp(_) | FlowData::TcpSplice(_) | FlowData::UdpSplice(_) => None,
        }
    }

    /// The socket flow, mutably.
    pub fn sock_flow_mut(&mut self) -> Option<&mut SockFlow> {
        match self {
            FlowData::Udp(s) | FlowData::Ping(s) => Some(s),
            FlowData::None | FlowData::Tcp(_) | FlowData::TcpSplice(_) | FlowData::UdpSplice(_) => None,
        }
    }

    /// The host socket's fd, for every protocol.
    pub fn sock_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match self {
            FlowData::Udp(s) | FlowData::Ping(s) => Some(s.sock.as_raw_fd()),
            FlowData::Tcp(t) => Some(t.sock.as_raw_fd()),
            FlowData::TcpSplice(t) => Some(t.fds()[0]),
            FlowData::UdpSplice(u) => Some(u.socks[0].as_raw_fd()),
            FlowData::None => None,
        }
    }
}
