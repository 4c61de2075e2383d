//! # Theory of operation
//!
//! What the host has, read once at start-up: the outbound interface for each
//! IP version (the one holding the first default route; else the only
//! interface with any route; `-i` overrides), its addresses and routes, its
//! default gateway, and the resolvers and search list in /etc/resolv.conf.
//! Everything is read over rtnetlink ([`crate::netlink`]); nothing here
//! changes the host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One route of the host's outbound interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<A> {
    /// Destination prefix (unspecified with `prefix_len` 0 for default).
    pub dst: A,
    /// Destination prefix length in bits.
    pub prefix_len: u8,
    /// Next hop, if any (`None`: on-link).
    pub gw: Option<A>,
    /// RTA_PRIORITY, if set.
    pub metric: Option<u32>,
}

/// The host interface chosen for one IP version, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIf<A> {
    /// Interface name, e.g. "eth0".
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// Interface MTU in bytes.
    pub mtu: u32,
    /// Addresses with prefix lengths, in kernel order; link-local included.
    pub addrs: Vec<(A, u8)>,
    /// Gateway of the default route via this interface (highest-weight
    /// nexthop for multipath), if any.
    pub gw: Option<A>,
    /// Every route via this interface in the main table.
    pub routes: Vec<Route<A>>,
}

/// The host's network, as [`discover`] found it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostNet {
    /// IPv4 outbound interface, if the host has one with an address.
    pub v4: Option<HostIf<Ipv4Addr>>,
    /// IPv6 outbound interface, if the host has one with an address.
    pub v6: Option<HostIf<Ipv6Addr>>,
}

/// Resolver settings from resolv.conf(5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolv {
    /// `nameserver` lines, in order (zone ids on IPv6 dropped).
    pub nameservers: Vec<IpAddr>,
    /// The last `search` (or `domain`) line, split on white space.
    pub search: Vec<String>,
}
