//! Spliced TCP short-circuit (sockops + sk_msg): the key under which the
//! end sockets of spliced flows are kept in the sockhash.

/// `SockHash<SockKey>` holding the end sockets (the client's and the
/// server's) of spliced flows, inserted by the sockops program.
pub const SOCKS_MAP: &str = "SOCKS";

/// A socket as it sees itself: its network namespace and 4-tuple.
///
/// Addresses are in network byte order as the kernel stores them (an IPv4
/// address in `laddr[0]`/`raddr[0]`, the other words zero); ports are in host
/// byte order. `family` is `AF_INET` (2) or `AF_INET6` (10).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockKey {
    /// Network namespace cookie (`SO_NETNS_COOKIE`, `bpf_get_netns_cookie()`).
    pub netns: u64,
    /// Local address.
    pub laddr: [u32; 4],
    /// Remote address.
    pub raddr: [u32; 4],
    /// Local port.
    pub lport: u32,
    /// Remote port.
    pub rport: u32,
    /// Address family.
    pub family: u32,
    /// Zero.
    pub pad: u32,
}

crate::pod!(SockKey);
