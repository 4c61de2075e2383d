//! Spliced TCP short-circuit (sockops + sk_msg): the maps and the records
//! they hold, shared by the programs and pasta.
//!
//! A spliced flow has two end sockets pasta does not own: the client C,
//! which connected to one of pasta's listeners, and the server S, which
//! accepted pasta's connection in the other namespace. The `sock_ops`
//! program ([`SOCKOPS_PROG`]) puts them in [`SOCKS_MAP`] when they reach
//! ESTABLISHED, if [`PORTS_MAP`] says they may be the end of a spliced flow,
//! and gives each a zeroed [`FlowStats`] in [`STATS_MAP`]. The `sk_msg`
//! program ([`SKMSG_PROG`]) runs on every send of a socket in
//! [`SOCKS_MAP`]: if pasta armed the sender ([`FlowCtl`] in [`CTL_MAP`]) and
//! nothing went the ordinary way since, the bytes go straight into the
//! peer's receive queue (within a byte budget), else through TCP (and
//! pasta's splice relay), counted either way.

/// `SockHash<SockKey>` holding the end sockets (the client's and the
/// server's) of spliced flows, inserted by the sockops program.
pub const SOCKS_MAP: &str = "SOCKS";
/// `LruHashMap<SockKey, FlowStats>`: per end socket counters, created
/// zeroed by the sockops program when it inserts the socket in
/// [`SOCKS_MAP`], written only by the programs, removed by pasta when the
/// flow ends; entries of sockets that were never paired age out (an
/// evicted entry stops redirection for its socket: it stays on splice).
pub const STATS_MAP: &str = "STATS";
/// `HashMap<SockKey, FlowCtl>`: written only by pasta, keyed by the sending
/// end socket.
pub const CTL_MAP: &str = "CTL";
/// `Array<u8>` of 65536 entries indexed by TCP port (host byte order): a
/// bit mask of [`PORT_HOST_CLIENT`], [`PORT_HOST_SERVER`],
/// [`PORT_NS_CLIENT`], [`PORT_NS_SERVER`].
pub const PORTS_MAP: &str = "PORTS";
/// `Array<u64>` of 2 entries: the network namespace cookies of
/// [`NETNS_HOST`] (pasta's own) and [`NETNS_NS`] (the target namespace);
/// zero until pasta writes them (no socket is a candidate before).
pub const NETNS_MAP: &str = "NETNS";
/// `PerCpuArray<u64>` of [`ERR_COUNT`] event counters, indexed by `ERR_*`.
pub const ERRORS_MAP: &str = "SOCKMAP_ERRORS";

/// The `sock_ops` program.
pub const SOCKOPS_PROG: &str = "sockmap_ops";
/// The `sk_msg` program, attached to [`SOCKS_MAP`].
pub const SKMSG_PROG: &str = "sockmap_msg";

/// [`NETNS_MAP`] index of pasta's own namespace.
pub const NETNS_HOST: u32 = 0;
/// [`NETNS_MAP`] index of the target namespace.
pub const NETNS_NS: u32 = 1;

/// [`PORTS_MAP`] bit: in pasta's namespace, a connecting socket whose remote
/// port is this one may be a client (a `-t` listener).
pub const PORT_HOST_CLIENT: u8 = 1;
/// [`PORTS_MAP`] bit: in pasta's namespace, an accepted socket whose local
/// port is this one may be a server (a `-T` target port).
pub const PORT_HOST_SERVER: u8 = 2;
/// [`PORTS_MAP`] bit: in the target namespace, a client (a `-T` listener).
pub const PORT_NS_CLIENT: u8 = 4;
/// [`PORTS_MAP`] bit: in the target namespace, a server (a `-t` target
/// port).
pub const PORT_NS_SERVER: u8 = 8;

/// [`ERRORS_MAP`] index: a candidate socket could not be inserted in
/// [`SOCKS_MAP`] (full, or the kernel refused it).
pub const ERR_INSERT: u32 = 0;
/// [`ERRORS_MAP`] index: [`STATS_MAP`] was full.
pub const ERR_STATS: u32 = 1;
/// [`ERRORS_MAP`] index: a redirect found no peer socket (it closed); the
/// bytes went through TCP instead.
pub const ERR_REDIRECT: u32 = 2;
/// Number of [`ERRORS_MAP`] counters.
pub const ERR_COUNT: u32 = 3;

/// Capacity of [`SOCKS_MAP`] and [`STATS_MAP`] (end sockets).
pub const MAX_SOCKS: u32 = 65536;
/// Capacity of [`CTL_MAP`] (armed senders).
pub const MAX_CTL: u32 = 65536;

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

/// What one end socket sent since it was established, in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Bytes that went the ordinary way (TCP, then pasta's relay).
    pub passed: u64,
    /// Bytes put straight into the peer's receive queue.
    pub redirected: u64,
}

/// pasta's permission for one sender to short-circuit its sends.
///
/// The program redirects a message of `n` bytes only while
/// `stats.passed == passed_at` (nothing went through TCP since pasta checked
/// that everything that did was read by the peer) and
/// `stats.redirected + n <= redirect_limit` (the budget).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCtl {
    /// The receiving end socket.
    pub peer: SockKey,
    /// [`FlowStats::passed`] when pasta armed the sender.
    pub passed_at: u64,
    /// [`FlowStats::redirected`] may grow up to this.
    pub redirect_limit: u64,
}

crate::pod!(SockKey, FlowStats, FlowCtl);
