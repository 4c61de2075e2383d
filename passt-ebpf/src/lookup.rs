//! Port forwarding by socket lookup (`sk_lookup`): the maps that tell the
//! `fwd_lookup_in` / `fwd_lookup_out` programs which connections and
//! datagrams to hand to which of pasta's few listening sockets.
//!
//! For every TCP connection request and every UDP datagram that reaches a
//! local address of its network namespace, the kernel runs the program
//! before its own socket lookup. The program walks the [`RULES_MAP`] slots
//! of its direction; the first slot whose protocol, family and address
//! (and interface) match and whose port set ([`PORTS_MAP`]) holds the destination port
//! gets the packet: the socket in slot `i` of [`SOCKS_MAP`] is assigned
//! (`bpf_sk_assign`). Nothing matches: the ordinary lookup runs.

/// Program attached to pasta's own network namespace (`-t`, `-u`).
pub const PROG_IN: &str = "fwd_lookup_in";
/// Program attached to the target namespace (`-T`, `-U`).
pub const PROG_OUT: &str = "fwd_lookup_out";
/// `SockMap` of [`MAX_RULES`] sockets: slot `i` is the listening TCP
/// socket or bound UDP socket of rule slot `i`.
pub const SOCKS_MAP: &str = "LOOKUP_SOCKS";
/// `Array<LookupRule>` of [`MAX_RULES`] slots.
pub const RULES_MAP: &str = "LOOKUP_RULES";
/// `Array<u64>` of [`MAX_RULES`] × [`PORT_WORDS`] words: the ports steered
/// by rule slot `i` are the bitmap at words `i * PORT_WORDS ..`, port `p`
/// being bit `p % 64` (least significant first) of word `p / 64`.
pub const PORTS_MAP: &str = "LOOKUP_PORTS";

/// Rule slots (both directions share them).
pub const MAX_RULES: u32 = 16;
/// 64-bit words per port bitmap (65536 ports).
pub const PORT_WORDS: u32 = 1024;

/// [`LookupRule::dir`] of `-t`/`-u` rules (program [`PROG_IN`]).
pub const DIR_IN: u32 = 0;
/// [`LookupRule::dir`] of `-T`/`-U` rules (program [`PROG_OUT`]).
pub const DIR_OUT: u32 = 1;

/// What one rule slot matches.
///
/// `addr` is in network byte order as the kernel stores it (an IPv4
/// address in `addr[0]`, the other words zero).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LookupRule {
    /// 1: the slot is in use, its socket is in [`SOCKS_MAP`].
    pub active: u32,
    /// [`DIR_IN`] or [`DIR_OUT`].
    pub dir: u32,
    /// IP protocol number: 6 (TCP) or 17 (UDP).
    pub protocol: u32,
    /// `AF_INET` (2) or `AF_INET6` (10); 0: both (a dual-stack socket).
    pub family: u32,
    /// 1: any local address of `family`; 0: only `addr`.
    pub any: u32,
    /// The local address, when `any` is 0.
    pub addr: [u32; 4],
    /// Interface index the packet must have arrived on (1: loopback, for
    /// `-T`/`-U` rules, which listen on `lo`); 0: any.
    pub ifindex: u32,
}

crate::pod!(LookupRule);
