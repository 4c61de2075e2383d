//! The tap classifier (`tap_tc`): counts the frames it sees per protocol.
//!
//! Attached to the tap device (TCX, or clsact on older kernels), egress: the
//! frames the namespace sends, which pasta reads from the tap fd.

/// Program name in the object (a `classifier`).
pub const PROG: &str = "tap_tc";
/// `PerCpuArray<u64>` of [`TC_COUNTERS`] frame counters, indexed by [`Proto`].
pub const COUNTERS_MAP: &str = "TAP_COUNTERS";

/// Index into [`COUNTERS_MAP`]: what a frame carried, by its EtherType and,
/// for IP, its protocol number (first header only, no extension-header walk).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// ARP (EtherType 0x0806).
    Arp = 0,
    /// IPv4, TCP.
    Tcp4 = 1,
    /// IPv4, UDP.
    Udp4 = 2,
    /// IPv4, ICMP.
    Icmp4 = 3,
    /// IPv6, TCP.
    Tcp6 = 4,
    /// IPv6, UDP.
    Udp6 = 5,
    /// IPv6, ICMPv6.
    Icmp6 = 6,
    /// Any other IPv4 or IPv6 protocol, or IPv6 with extension headers.
    OtherIp = 7,
    /// Any other EtherType, or a frame too short for its headers.
    Other = 8,
}

/// Number of counters in [`COUNTERS_MAP`].
pub const TC_COUNTERS: u32 = 9;

/// Counter names, indexed like [`Proto`], as pasta prints them.
pub const PROTO_NAMES: [&str; TC_COUNTERS as usize] = [
    "arp", "tcp4", "udp4", "icmp4", "tcp6", "udp6", "icmp6", "other_ip", "other",
];
