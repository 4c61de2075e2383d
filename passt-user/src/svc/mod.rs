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

pub mod arp;
pub mod dhcp;
pub mod dhcpv6;
pub mod ndp;

use std::net::{Ipv4Addr, Ipv6Addr};

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
