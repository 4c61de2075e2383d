//! # Theory of operation
//!
//! Port forwarding specifiers of `-t/--tcp-ports`, `-u/--udp-ports` (both
//! modes) and `-T/--tcp-ns`, `-U/--udp-ns` (pasta only), as passt(1)
//! describes them under `-t`, turned into [`FwdRule`]s that a runtime can
//! bind listeners for. Nothing here does I/O: [`parse_spec`] is a pure
//! function of the text and a [`SpecCtx`] (which option, which program, and
//! the host's ephemeral port range, read by the caller from
//! `/proc/sys/net/ipv4/ip_local_port_range`).
//!
//! ## Grammar
//!
//! ```text
//! spec    := "none" | [prefix] chunk ("," chunk)*
//! prefix  := (addr | "*" | "") ["%" ifname] "/"
//! chunk   := "all" [":" addr] | "auto" | "~" range
//!          | range [":" (addr "/" range | range | addr)]
//! range   := port ["-" port]          port: 1..=65535, first <= last
//! addr    := IPv4 | IPv6 | "[" IPv4 | IPv6 "]"
//! ```
//!
//! The prefix is recognised as upstream does: the text before the first `/`
//! is a prefix when it parses as an address (with an optional `%ifname`), or
//! is empty or `*`. Otherwise, if it reads like the start of an include
//! chunk with a target (`5000:192.0.2.5/6000`, `all:...`), there is no
//! prefix; anything else before a `/` is reported as a bad listening
//! address. As upstream, `22:1:2::3/80` therefore means listening address
//! `22:1:2::3`, port 80: bracket IPv6 targets (`22:[1:2::3]/80`).
//!
//! ## Semantics
//!
//! - Exclusions (`~first[-last]`) apply to the whole specifier and take
//!   precedence over include ranges, which are split around them: one rule
//!   per remaining contiguous run of ports.
//! - A specifier with no include range (only `all`, `auto` or exclusions)
//!   covers ports 1-65535 minus the exclusions and minus the ephemeral range,
//!   as a best-effort rule ([`FwdRule::weak`]: failures to bind single ports
//!   are not reported unless nothing at all could be bound).
//! - `auto` (pasta only) marks every rule of the specifier as
//!   [`FwdRule::scan`]: a port is forwarded only while it is bound on the
//!   other side (periodic scan of `/proc/net/{tcp,tcp6,udp,udp6}`).
//! - `all` can't be combined with include ranges (upstream silently ignores
//!   `all` then; it is refused here so that nothing is dropped unnoticed).
//! - No listening address means "any address, both IP versions"
//!   ([`FwdRule::addr`] is `None`); `0.0.0.0/` and `[::]/` select one
//!   version. IPv4-mapped IPv6 addresses are stored as IPv4.
//! - Rules with a target address must listen on the same IP version, and the
//!   target can't be multicast; an unspecified target (`0.0.0.0`, `::`)
//!   means "the guest or namespace address", as no target does.
//! - `-T`/`-U` accept no listening address or interface: their rules
//!   listen on any address of interface `lo` (in the namespace), as
//!   upstream's (`[*]%lo`).
//!
//! ## Accumulation
//!
//! Repeated options accumulate ([`FwdTable::add_spec`]); a rule overlapping
//! an earlier rule of the same protocol on a matching address is refused,
//! and `none` is refused after rules of the same protocol, both as
//! upstream's `fwd_rule_add()` and `fwd_rule_parse()` do.
//!
//! ## Limits
//!
//! Interface names are 1-15 bytes (`IFNAMSIZ` - 1), without `/` or
//! whitespace, and not `.` or `..`. Each specifier yields at most one rule
//! per contiguous run of ports, so at most 32768 rules.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Transport protocol of a forwarding rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP (`-t`, `-T`).
    Tcp,
    /// UDP (`-u`, `-U`).
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        })
    }
}

/// Which of the four port forwarding options a specifier was given to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FwdOpt {
    /// `-t/--tcp-ports`: TCP from the host to the guest or namespace.
    TcpPorts,
    /// `-u/--udp-ports`: UDP from the host to the guest or namespace.
    UdpPorts,
    /// `-T/--tcp-ns` (pasta only): TCP from the namespace to the host.
    TcpNs,
    /// `-U/--udp-ns` (pasta only): UDP from the namespace to the host.
    UdpNs,
}

impl FwdOpt {
    /// The short option letter: `t`, `u`, `T` or `U`.
    pub fn letter(self) -> char {
        match self {
            FwdOpt::TcpPorts => 't',
            FwdOpt::UdpPorts => 'u',
            FwdOpt::TcpNs => 'T',
            FwdOpt::UdpNs => 'U',
        }
    }

    /// The protocol forwarded by this option.
    pub fn proto(self) -> Proto {
        match self {
            FwdOpt::TcpPorts | FwdOpt::TcpNs => Proto::Tcp,
            FwdOpt::UdpPorts | FwdOpt::UdpNs => Proto::Udp,
        }
    }

    /// Whether this option forwards from the namespace to the host
    /// (`-T`, `-U`), where no listening address may be given.
    pub fn from_ns(self) -> bool {
        matches!(self, FwdOpt::TcpNs | FwdOpt::UdpNs)
    }
}

/// An inclusive range of port numbers, `first..=last`, host byte order.
///
/// Invariant (kept by [`PortRange::new`]): `1 <= first <= last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// The range `first..=last`, or `None` if `first` is 0 or above `last`.
    pub fn new(first: u16, last: u16) -> Option<Self> {
        (first != 0 && first <= last).then_some(PortRange { first, last })
    }

    /// First port of the range.
    pub fn first(self) -> u16 {
        self.first
    }

    /// Last port of the range (inclusive).
    pub fn last(self) -> u16 {
        self.last
    }

    /// Number of ports in the range, 1 to 65535.
    pub fn len(self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Always `false`: a range holds at least one port (for clippy's sake).
    pub fn is_empty(self) -> bool {
        false
    }

    /// Whether `port` is in the range.
    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// Whether the two ranges share at least one port.
    pub fn overlaps(self, other: PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Ephemeral ports assumed when the host's range can't be read: 49152-65535
/// (RFC 6335 §6).
pub const EPHEMERAL_DEFAULT: PortRange = PortRange {
    first: 49152,
    last: 65535,
};

/// What [`parse_spec`] needs to know besides the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecCtx {
    /// The option the specifier was given to.
    pub opt: FwdOpt,
    /// `true` for pasta: `auto` is allowed. `false` for passt.
    pub pasta: bool,
    /// The host's ephemeral ports, never covered by `all`, `auto` or
    /// exclusion-only specifiers (usually from
    /// `/proc/sys/net/ipv4/ip_local_port_range`, else
    /// [`EPHEMERAL_DEFAULT`]).
    pub ephemeral: PortRange,
}

impl SpecCtx {
    /// Context for `opt` in pasta (`pasta == true`) or passt, with the
    /// RFC 6335 ephemeral range [`EPHEMERAL_DEFAULT`].
    pub fn new(opt: FwdOpt, pasta: bool) -> Self {
        SpecCtx {
            opt,
            pasta,
            ephemeral: EPHEMERAL_DEFAULT,
        }
    }
}

/// One forwarding rule: listen on `ports` (on `addr`, `ifname`), forward to
/// the same number of ports starting at `to` on `taddr`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FwdRule {
    /// Protocol.
    pub proto: Proto,
    /// Listening address; `None` is any address of both IP versions
    /// (dual stack). `Some(0.0.0.0)` / `Some(::)` are any address of one
    /// version. IPv4-mapped IPv6 addresses are stored as IPv4.
    pub addr: Option<IpAddr>,
    /// Interface to bind the listening sockets to (`SO_BINDTODEVICE`),
    /// 1-15 bytes.
    pub ifname: Option<String>,
    /// Listening ports.
    pub ports: PortRange,
    /// Target port for `ports.first()`; port `p` goes to
    /// `to + (p - ports.first())`, which never exceeds 65535.
    pub to: u16,
    /// Target address; `None` means the guest or namespace address (as seen
    /// or configured). Same IP version as `addr`, never multicast.
    pub taddr: Option<IpAddr>,
    /// Best effort (`all`, `auto` or exclusions only): ports that can't be
    /// bound are skipped silently, unless none could be bound at all.
    pub weak: bool,
    /// `auto`: forward a port only while it is bound on the target side.
    pub scan: bool,
}

impl FwdRule {
    /// The target port range (same length as [`FwdRule::ports`]).
    pub fn target_ports(&self) -> PortRange {
        // `to + len - 1 <= 65535` and `to >= 1` are parse invariants; fall
        // back to the listening range if a caller built a bad rule by hand.
        let span = self.ports.last - self.ports.first;
        self.to
            .checked_add(span)
            .and_then(|last| PortRange::new(self.to, last))
            .unwrap_or(self.ports)
    }

    /// Target port for listening port `port`, `None` if `port` is not in
    /// [`FwdRule::ports`].
    pub fn target_port(&self, port: u16) -> Option<u16> {
        if !self.ports.contains(port) {
            return None;
        }
        self.to.checked_add(port - self.ports.first)
    }

    /// Whether both rules would listen on a common port: same protocol,
    /// overlapping ports and matching addresses (`None` matches every
    /// address, an unspecified address every address of its IP version).
    /// Interfaces are not compared, as upstream's `fwd_rule_conflicts()`.
    pub fn conflicts(&self, other: &FwdRule) -> bool {
        self.proto == other.proto
            && self.ports.overlaps(other.ports)
            && addr_matches(self.addr, other.addr)
    }
}

/// Upstream's `inany_matches()` on optional listening addresses.
fn addr_matches(a: Option<IpAddr>, b: Option<IpAddr>) -> bool {
    match (a, b) {
        (None, _) | (_, None) => true,
        (Some(a), Some(b)) if a.is_unspecified() || b.is_unspecified() => {
            a.is_ipv4() == b.is_ipv4()
        }
        (Some(a), Some(b)) => a == b,
    }
}

/// Upstream's rule format: `TCP [*]%eth0:22-23  =>  192.0.2.1:32-33`, with
/// ` (best effort)` and ` (auto-scan)` tags.
impl fmt::Display for FwdRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            Some(a) => write!(f, "{} [{a}]", self.proto)?,
            None => write!(f, "{} [*]", self.proto)?,
        }
        if let Some(ifname) = &self.ifname {
            write!(f, "%{ifname}")?;
        }
        write!(f, ":{}  =>  ", self.ports)?;
        if let Some(t) = self.taddr {
            write!(f, "{t}:")?;
        }
        write!(f, "{}", self.target_ports())?;
        if self.weak {
            f.write_str(" (best effort)")?;
        }
        if self.scan {
            f.write_str(" (auto-scan)")?;
        }
        Ok(())
    }
}

/// Why a port forwarding specifier was refused. `Display` is the one-line
/// message (without the program name), worded close to upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The specifier is empty.
    #[error("Empty port specifier")]
    Empty,
    /// An empty entry between commas, or a trailing or leading comma.
    #[error("Empty entry in port specifier {spec}")]
    EmptyEntry {
        /// The whole specifier.
        spec: String,
    },
    /// A chunk that matches none of the forms.
    #[error("Invalid port specifier {chunk}")]
    Invalid {
        /// The offending chunk.
        chunk: String,
    },
    /// A port number outside 1-65535.
    #[error("Invalid port specifier {chunk}: ports are 1 to 65535")]
    PortOutOfRange {
        /// The offending chunk.
        chunk: String,
    },
    /// A range whose first port is above its last.
    #[error("Invalid port range {chunk}: first port above last")]
    ReversedRange {
        /// The offending chunk.
        chunk: String,
    },
    /// Listening and target ranges of different lengths.
    #[error("Mismatched port range lengths in {chunk}")]
    MismatchedRange {
        /// The offending chunk.
        chunk: String,
    },
    /// The text before `/` (and `%`) is not an address.
    #[error("Invalid listening address {addr} in {spec}")]
    BadAddress {
        /// The text taken as an address.
        addr: String,
        /// The whole specifier.
        spec: String,
    },
    /// A target address that doesn't parse.
    #[error("Invalid target address {addr} in {chunk}")]
    BadTargetAddress {
        /// The text taken as an address.
        addr: String,
        /// The offending chunk.
        chunk: String,
    },
    /// An interface name that is empty, too long (16 bytes or more), `.`,
    /// `..` or holds whitespace.
    #[error("Invalid interface name '{ifname}' in {spec}")]
    BadIfname {
        /// The name as given.
        ifname: String,
        /// The whole specifier.
        spec: String,
    },
    /// A listening address or interface, but no ports after the `/`.
    #[error("No ports after listening address in {spec}")]
    MissingPorts {
        /// The whole specifier.
        spec: String,
    },
    /// `auto` given to passt.
    #[error("'auto' port forwarding is only allowed for pasta")]
    AutoNotPasta,
    /// A listening address or interface given to `-T` or `-U`.
    #[error("Listening address not allowed for -{letter} {spec}")]
    ListenAddrNotAllowed {
        /// `T` or `U`.
        letter: char,
        /// The whole specifier.
        spec: String,
    },
    /// `all` together with include ranges.
    #[error("'all' can't be combined with port ranges in {spec}")]
    AllWithRanges {
        /// The whole specifier.
        spec: String,
    },
    /// A target address on a rule listening on both IP versions.
    #[error("Dual stack forward to {taddr} unsupported, use {hint}/... in {spec}")]
    DualStackTarget {
        /// The target address.
        taddr: IpAddr,
        /// `0.0.0.0` or `[::]`, matching the target's version.
        hint: &'static str,
        /// The whole specifier.
        spec: String,
    },
    /// Listening and target addresses of different IP versions.
    #[error("Forward from {addr} to {taddr} unsupported (different IP versions) in {spec}")]
    FamilyMismatch {
        /// The listening address.
        addr: IpAddr,
        /// The target address.
        taddr: IpAddr,
        /// The whole specifier.
        spec: String,
    },
    /// A multicast target address.
    #[error("Multicast target address {taddr} in {spec}")]
    MulticastTarget {
        /// The target address.
        taddr: IpAddr,
        /// The whole specifier.
        spec: String,
    },
    /// `none` after rules for the same protocol.
    #[error("-{letter} none conflicts with previous options")]
    NoneConflict {
        /// The option letter.
        letter: char,
    },
    /// A rule overlapping an earlier one (see [`FwdRule::conflicts`]).
    #[error("Forwarding configuration conflict: {new} versus {old}")]
    Conflict {
        /// The rule being added.
        new: Box<FwdRule>,
        /// The earlier rule.
        old: Box<FwdRule>,
    },
}

/// A set of port numbers 0-65535, as a 8 KiB bitmap.
#[derive(Clone, PartialEq, Eq)]
pub struct PortSet {
    bits: Box<[u64; 1024]>,
}

impl Default for PortSet {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl PortSet {
    /// The empty set.
    pub fn new() -> Self {
        PortSet {
            bits: Box::new([0; 1024]),
        }
    }

    /// Add `port`.
    pub fn insert(&mut self, port: u16) {
        let (word, bit) = (usize::from(port >> 6), port & 63);
        if let Some(w) = self.bits.get_mut(word) {
            *w |= 1 << bit;
        }
    }

    /// Add every port of `range`.
    pub fn insert_range(&mut self, range: PortRange) {
        for port in range.first..=range.last {
            self.insert(port);
        }
    }

    /// Whether `port` is in the set.
    pub fn contains(&self, port: u16) -> bool {
        let (word, bit) = (usize::from(port >> 6), port & 63);
        self.bits.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    /// Add every port of `other`.
    pub fn union_with(&mut self, other: &PortSet) {
        for (a, b) in self.bits.iter_mut().zip(other.bits.iter()) {
            *a |= *b;
        }
    }

    /// Take `port` out of the set (no-op if absent).
    pub fn remove(&mut self, port: u16) {
        let (word, bit) = (usize::from(port >> 6), port & 63);
        if let Some(w) = self.bits.get_mut(word) {
            *w &= !(1 << bit);
        }
    }

    /// Take every port of `other` out of the set (set difference, word by
    /// word).
    pub fn difference_with(&mut self, other: &PortSet) {
        for (a, b) in self.bits.iter_mut().zip(other.bits.iter()) {
            *a &= !*b;
        }
    }

    /// Empty the set, keeping its allocation.
    pub fn clear(&mut self) {
        self.bits.fill(0);
    }

    /// Whether the set holds no port.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }

    /// The bitmap as 1024 words: port `p` is bit `p % 64` (least
    /// significant first) of word `p / 64`. For word-wise set algebra
    /// outside this module (e.g. diffing two scans).
    pub fn words(&self) -> &[u64; 1024] {
        &self.bits
    }

    /// The ports in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=u16::MAX).filter(|&p| self.contains(p))
    }
}

/// Ports an `auto` UDP rule forwards after one scan of the target side.
///
/// passt(1), `-u`: "UDP ports with numbers corresponding to forwarded TCP
/// port numbers are forwarded too, without, however, any port translation.
/// IPv6 bound ports are also forwarded for IPv4." Upstream applies this to
/// the `auto` scan (`fwd_scan_ports_udp()`): a port is forwarded for UDP if
/// it has a UDP socket bound in `/proc/net/udp` or `/proc/net/udp6`, or a
/// listening TCP socket in `/proc/net/tcp` or `/proc/net/tcp6` (useful for
/// iperf3 and similar, where a TCP control port sets up transfers on the
/// same UDP port). The four scans are merged regardless of IP version, so a
/// port bound on IPv6 only is also forwarded for IPv4.
///
/// The runtime intersects the result with the ports of its
/// [`FwdRule::scan`] UDP rules; those rules never hold excluded or (for
/// `auto` alone) ephemeral ports, so no exclusion set is needed here.
pub fn udp_scan_ports(udp4: &PortSet, udp6: &PortSet, tcp4: &PortSet, tcp6: &PortSet) -> PortSet {
    let mut out = udp4.clone();
    out.union_with(udp6);
    out.union_with(tcp4);
    out.union_with(tcp6);
    out
}

/// One comma-separated piece of a specifier.
enum Chunk {
    /// `all[:taddr]`.
    All(Option<IpAddr>),
    /// `auto`.
    Auto,
    /// `~first[-last]`.
    Exclude(PortRange),
    /// `first[-last][:...]`: listening range, target address, target first
    /// port.
    Include(PortRange, Option<IpAddr>, u16),
}

/// Parse an IPv4 or IPv6 address, optionally in brackets, as upstream's
/// `parse_inany()`; IPv4-mapped IPv6 addresses come back as IPv4.
fn parse_addr(s: &str) -> Option<IpAddr> {
    let inner = match s.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']')?,
        None => s,
    };
    IpAddr::from_str(inner).ok().map(|a| a.to_canonical())
}

/// Parse a decimal port number, 1-65535.
fn parse_port(s: &str, chunk: &str) -> Result<u16, SpecError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SpecError::Invalid {
            chunk: chunk.to_owned(),
        });
    }
    match u16::from_str(s) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(SpecError::PortOutOfRange {
            chunk: chunk.to_owned(),
        }),
    }
}

/// Parse `first[-last]`.
fn parse_range(s: &str, chunk: &str) -> Result<PortRange, SpecError> {
    let (first, last) = match s.split_once('-') {
        Some((a, b)) => (parse_port(a, chunk)?, parse_port(b, chunk)?),
        None => {
            let p = parse_port(s, chunk)?;
            (p, p)
        }
    };
    PortRange::new(first, last).ok_or_else(|| SpecError::ReversedRange {
        chunk: chunk.to_owned(),
    })
}

/// Whether `s` holds only characters of a port range (digits and `-`).
fn is_range_text(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'-')
}

/// Parse a target address; unspecified means "no target address".
fn parse_target(s: &str, chunk: &str) -> Result<Option<IpAddr>, SpecError> {
    let a = parse_addr(s).ok_or_else(|| SpecError::BadTargetAddress {
        addr: s.to_owned(),
        chunk: chunk.to_owned(),
    })?;
    Ok((!a.is_unspecified()).then_some(a))
}

/// Parse one chunk.
fn parse_chunk(chunk: &str) -> Result<Chunk, SpecError> {
    if chunk == "all" {
        return Ok(Chunk::All(None));
    }
    if let Some(t) = chunk.strip_prefix("all:") {
        return Ok(Chunk::All(parse_target(t, chunk)?));
    }
    if chunk == "auto" {
        return Ok(Chunk::Auto);
    }
    if let Some(r) = chunk.strip_prefix('~') {
        return Ok(Chunk::Exclude(parse_range(r, chunk)?));
    }
    let (lhs, target) = match chunk.split_once(':') {
        Some((l, t)) => (l, Some(t)),
        None => (chunk, None),
    };
    let lrange = parse_range(lhs, chunk)?;
    let (taddr, trange) = match target {
        None => (None, lrange),
        Some(t) => match t.split_once('/') {
            Some((a, r)) => (parse_target(a, chunk)?, parse_range(r, chunk)?),
            None if is_range_text(t) => (None, parse_range(t, chunk)?),
            None if t.is_empty() => {
                return Err(SpecError::Invalid {
                    chunk: chunk.to_owned(),
                })
            }
            None => (parse_target(t, chunk)?, lrange),
        },
    };
    if trange.len() != lrange.len() {
        return Err(SpecError::MismatchedRange {
            chunk: chunk.to_owned(),
        });
    }
    Ok(Chunk::Include(lrange, taddr, trange.first))
}

/// Listening address and interface from the optional prefix.
struct Prefix {
    /// `None`: no address, or `*`.
    addr: Option<IpAddr>,
    /// Interface name after `%`.
    ifname: Option<String>,
}

/// Whether the text before the first `/` starts an include or `all` chunk
/// with a target address (`5000:192.0.2.5`, `all:192.0.2.6`) rather than a
/// listening address.
fn is_chunk_head(head: &str) -> bool {
    head.contains(',')
        || head
            .split_once(':')
            .is_some_and(|(l, _)| l == "all" || is_range_text(l))
}

/// Split off `[addr][%ifname]/`, returning the prefix (if any) and the
/// port list after it.
fn split_prefix(spec: &str) -> Result<(Option<Prefix>, &str), SpecError> {
    let Some((head, rest)) = spec.split_once('/') else {
        return Ok((None, spec));
    };
    let (a, ifname) = match head.split_once('%') {
        Some((a, i)) => (a, Some(i)),
        None => (head, None),
    };
    let addr = match a {
        "" | "*" => None,
        _ => match parse_addr(a) {
            Some(addr) => Some(addr),
            None if ifname.is_none() && is_chunk_head(head) => return Ok((None, spec)),
            None => {
                return Err(SpecError::BadAddress {
                    addr: a.to_owned(),
                    spec: spec.to_owned(),
                })
            }
        },
    };
    // "/22" (neither address nor interface) is "any address", as upstream.
    if let Some(i) = ifname {
        let bad = i.is_empty()
            || i.len() >= 16
            || i == "."
            || i == ".."
            || i.chars().any(char::is_whitespace);
        if bad {
            return Err(SpecError::BadIfname {
                ifname: i.to_owned(),
                spec: spec.to_owned(),
            });
        }
    }
    if rest.is_empty() {
        return Err(SpecError::MissingPorts {
            spec: spec.to_owned(),
        });
    }
    Ok((
        Some(Prefix {
            addr,
            ifname: ifname.map(str::to_owned),
        }),
        rest,
    ))
}

/// Parse one `-t`/`-u`/`-T`/`-U` specifier into rules (passt(1), `-t`).
///
/// `none` gives no rules. Rules come out in specifier order, each include
/// range split around the exclusions; a specifier without include ranges
/// gives the runs of 1-65535 outside exclusions and `opts.ephemeral`, as
/// best-effort rules. See the module documentation for the grammar.
///
/// # Errors
/// A [`SpecError`] naming the offending part: malformed chunks, ports
/// outside 1-65535, reversed or mismatched ranges, bad addresses or
/// interface names, `auto` for passt, a listening address for `-T`/`-U`,
/// `all` with ranges, and target addresses that can't work (dual stack,
/// other IP version, multicast).
pub fn parse_spec(spec: &str, opts: SpecCtx) -> Result<Vec<FwdRule>, SpecError> {
    if spec == "none" {
        return Ok(Vec::new());
    }
    if spec.is_empty() {
        return Err(SpecError::Empty);
    }
    let (prefix, ports) = split_prefix(spec)?;
    if prefix.is_some() && opts.opt.from_ns() {
        return Err(SpecError::ListenAddrNotAllowed {
            letter: opts.opt.letter(),
            spec: spec.to_owned(),
        });
    }
    let (addr, ifname) = match prefix {
        Some(p) => (p.addr, p.ifname),
        // `-T`/`-U` listen on any address of the namespace's loopback
        // interface, as upstream (`[*]%lo`).
        None if opts.opt.from_ns() => (None, Some("lo".to_string())),
        None => (None, None),
    };

    let mut chunks = Vec::new();
    for text in ports.split(',') {
        if text.is_empty() {
            return Err(SpecError::EmptyEntry {
                spec: spec.to_owned(),
            });
        }
        chunks.push(parse_chunk(text)?);
    }

    let mut exclude = PortSet::new();
    let mut scan = false;
    let mut all: Option<Option<IpAddr>> = None;
    let mut includes = Vec::new();
    for chunk in chunks {
        match chunk {
            Chunk::Auto if !opts.pasta => return Err(SpecError::AutoNotPasta),
            Chunk::Auto => scan = true,
            Chunk::Exclude(r) => exclude.insert_range(r),
            Chunk::All(t) => all = Some(t),
            Chunk::Include(r, t, to) => includes.push((r, t, to)),
        }
    }
    if all.is_some() && !includes.is_empty() {
        return Err(SpecError::AllWithRanges {
            spec: spec.to_owned(),
        });
    }

    let base = FwdRule {
        proto: opts.opt.proto(),
        addr,
        ifname,
        ports: PortRange { first: 1, last: 1 },
        to: 1,
        taddr: None,
        weak: false,
        scan,
    };
    let mut rules = Vec::new();
    if includes.is_empty() {
        exclude.insert_range(opts.ephemeral);
        let rule = FwdRule {
            taddr: all.flatten(),
            weak: true,
            ..base
        };
        push_runs(
            &mut rules,
            &rule,
            PortRange {
                first: 1,
                last: 65535,
            },
            1,
            &exclude,
        );
    } else {
        for (r, taddr, to) in includes {
            push_runs(
                &mut rules,
                &FwdRule {
                    taddr,
                    ..base.clone()
                },
                r,
                to,
                &exclude,
            );
        }
    }
    for rule in &rules {
        check_target(rule, spec)?;
    }
    Ok(rules)
}

/// Push one copy of `template` per run of `range` outside `exclude`, port
/// `range.first` going to `to`.
fn push_runs(
    out: &mut Vec<FwdRule>,
    template: &FwdRule,
    range: PortRange,
    to: u16,
    exclude: &PortSet,
) {
    let mut start: Option<u16> = None;
    for port in range.first..=range.last {
        let excluded = exclude.contains(port);
        match (start, excluded) {
            (None, false) => start = Some(port),
            (Some(s), true) => {
                push_run(out, template, s, port - 1, range.first, to);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        push_run(out, template, s, range.last, range.first, to);
    }
}

/// Push the rule for listening ports `first..=last` of a range starting at
/// `base` that maps to `to`.
fn push_run(out: &mut Vec<FwdRule>, template: &FwdRule, first: u16, last: u16, base: u16, to: u16) {
    // `to + (last - base) <= 65535` holds as the target range parsed.
    let (Some(ports), Some(to)) = (PortRange::new(first, last), to.checked_add(first - base))
    else {
        return;
    };
    out.push(FwdRule {
        ports,
        to,
        ..template.clone()
    });
}

/// Refuse target addresses upstream's `fwd_rule_add()` refuses.
fn check_target(rule: &FwdRule, spec: &str) -> Result<(), SpecError> {
    let Some(taddr) = rule.taddr else {
        return Ok(());
    };
    if taddr.is_multicast() {
        return Err(SpecError::MulticastTarget {
            taddr,
            spec: spec.to_owned(),
        });
    }
    match rule.addr {
        None => Err(SpecError::DualStackTarget {
            taddr,
            hint: if taddr.is_ipv4() { "0.0.0.0" } else { "[::]" },
            spec: spec.to_owned(),
        }),
        Some(addr) if addr.is_ipv4() != taddr.is_ipv4() => Err(SpecError::FamilyMismatch {
            addr,
            taddr,
            spec: spec.to_owned(),
        }),
        Some(_) => Ok(()),
    }
}

/// The rules of repeated port forwarding options, accumulated in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FwdTable {
    /// Rules in the order they were given.
    pub rules: Vec<FwdRule>,
}

impl FwdTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse `spec` (see [`parse_spec`]) and append its rules.
    ///
    /// On error the table is unchanged.
    ///
    /// # Errors
    /// Those of [`parse_spec`]; [`SpecError::NoneConflict`] for `none`
    /// after rules of the same protocol; those of [`FwdTable::merge`].
    pub fn add_spec(&mut self, spec: &str, opts: SpecCtx) -> Result<(), SpecError> {
        let proto = opts.opt.proto();
        if spec == "none" && self.rules.iter().any(|r| r.proto == proto) {
            return Err(SpecError::NoneConflict {
                letter: opts.opt.letter(),
            });
        }
        let rules = parse_spec(spec, opts)?;
        self.merge(rules)
    }

    /// Append `rules`, refusing any that conflicts with an earlier rule or
    /// with another of `rules` (see [`FwdRule::conflicts`]).
    ///
    /// On error the table is unchanged.
    ///
    /// # Errors
    /// [`SpecError::Conflict`] naming the new and the earlier rule.
    pub fn merge(&mut self, rules: Vec<FwdRule>) -> Result<(), SpecError> {
        let before = self.rules.len();
        for new in rules {
            if let Some(old) = self.rules.iter().find(|old| old.conflicts(&new)) {
                let err = SpecError::Conflict {
                    new: Box::new(new),
                    old: Box::new(old.clone()),
                };
                self.rules.truncate(before);
                return Err(err);
            }
            self.rules.push(new);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pasta(opt: FwdOpt) -> SpecCtx {
        SpecCtx::new(opt, true)
    }

    fn tcp(spec: &str) -> Vec<FwdRule> {
        parse_spec(spec, pasta(FwdOpt::TcpPorts)).unwrap_or_else(|e| panic!("{spec}: {e}"))
    }

    fn err(spec: &str, ctx: SpecCtx) -> String {
        match parse_spec(spec, ctx) {
            Err(e) => e.to_string(),
            Ok(r) => panic!("{spec}: expected an error, got {r:?}"),
        }
    }

    fn tcp_err(spec: &str) -> String {
        err(spec, pasta(FwdOpt::TcpPorts))
    }

    /// TCP rule, any address, `first..=last` to `to`.
    fn rule(first: u16, last: u16, to: u16) -> FwdRule {
        FwdRule {
            proto: Proto::Tcp,
            addr: None,
            ifname: None,
            ports: PortRange::new(first, last).expect("test range"),
            to,
            taddr: None,
            weak: false,
            scan: false,
        }
    }

    fn weak(r: FwdRule) -> FwdRule {
        FwdRule { weak: true, ..r }
    }

    fn scan(r: FwdRule) -> FwdRule {
        FwdRule { scan: true, ..r }
    }

    fn at(addr: &str, r: FwdRule) -> FwdRule {
        FwdRule {
            addr: Some(addr.parse().expect("test address")),
            ..r
        }
    }

    fn to_addr(taddr: &str, r: FwdRule) -> FwdRule {
        FwdRule {
            taddr: Some(taddr.parse().expect("test address")),
            ..r
        }
    }

    fn on(ifname: &str, r: FwdRule) -> FwdRule {
        FwdRule {
            ifname: Some(ifname.to_owned()),
            ..r
        }
    }

    // passt(1), -t, "Examples", in the order of the man page.

    #[test]
    fn man_all_forwards_non_ephemeral_ports_best_effort() {
        assert_eq!(tcp("all"), vec![weak(rule(1, 49151, 1))]);
    }

    #[test]
    fn man_all_on_ipv6_loopback() {
        assert_eq!(tcp("::1/all"), vec![at("::1", weak(rule(1, 49151, 1)))]);
    }

    #[test]
    fn man_single_port() {
        assert_eq!(tcp("22"), vec![rule(22, 22, 22)]);
    }

    #[test]
    fn man_single_port_translated() {
        assert_eq!(tcp("22:23"), vec![rule(22, 22, 23)]);
    }

    #[test]
    fn man_port_list() {
        assert_eq!(tcp("22,25"), vec![rule(22, 22, 22), rule(25, 25, 25)]);
    }

    #[test]
    fn man_port_range() {
        assert_eq!(tcp("22-80"), vec![rule(22, 80, 22)]);
    }

    #[test]
    fn man_port_range_translated() {
        let r = tcp("22-80:32-90");
        assert_eq!(r, vec![rule(22, 80, 32)]);
        assert_eq!(r[0].target_ports(), PortRange::new(32, 90).unwrap());
        assert_eq!(r[0].target_port(80), Some(90));
        assert_eq!(r[0].target_port(21), None);
    }

    #[test]
    fn man_listening_address() {
        assert_eq!(tcp("192.0.2.1/22"), vec![at("192.0.2.1", rule(22, 22, 22))]);
    }

    #[test]
    fn man_listening_address_and_interface() {
        assert_eq!(
            tcp("192.0.2.1%eth0/22"),
            vec![on("eth0", at("192.0.2.1", rule(22, 22, 22)))]
        );
    }

    #[test]
    fn man_interface_only() {
        assert_eq!(tcp("%eth0/22"), vec![on("eth0", rule(22, 22, 22))]);
    }

    #[test]
    fn man_any_ipv4_to_target_address_and_port() {
        assert_eq!(
            tcp("0.0.0.0/5000:192.0.2.5/6000"),
            vec![to_addr("192.0.2.5", at("0.0.0.0", rule(5000, 5000, 6000)))]
        );
    }

    #[test]
    fn man_all_to_target_address() {
        assert_eq!(
            tcp("127.0.0.6/all:192.0.2.6"),
            vec![to_addr(
                "192.0.2.6",
                at("127.0.0.6", weak(rule(1, 49151, 1)))
            )]
        );
    }

    #[test]
    fn man_range_minus_exclusion() {
        assert_eq!(
            tcp("2000-5000,~3000-3010"),
            vec![rule(2000, 2999, 2000), rule(3011, 5000, 3011)]
        );
    }

    #[test]
    fn man_address_range_minus_single_port() {
        assert_eq!(
            tcp("192.0.2.1/20-30,~25"),
            vec![
                at("192.0.2.1", rule(20, 24, 20)),
                at("192.0.2.1", rule(26, 30, 26))
            ]
        );
    }

    #[test]
    fn man_exclusion_only_means_all_others() {
        assert_eq!(
            tcp("~20000-20010"),
            vec![weak(rule(1, 19999, 1)), weak(rule(20011, 49151, 20011))]
        );
    }

    #[test]
    fn man_auto() {
        assert_eq!(tcp("auto"), vec![scan(weak(rule(1, 49151, 1)))]);
    }

    #[test]
    fn man_auto_on_ipv6_loopback() {
        assert_eq!(
            tcp("::1/auto"),
            vec![at("::1", scan(weak(rule(1, 49151, 1))))]
        );
    }

    #[test]
    fn man_range_with_auto_scans_only_that_range() {
        assert_eq!(tcp("8000-8010,auto"), vec![scan(rule(8000, 8010, 8000))]);
        assert_eq!(tcp("auto,8000-8010"), vec![scan(rule(8000, 8010, 8000))]);
    }

    #[test]
    fn none_gives_no_rules() {
        assert_eq!(tcp("none"), vec![]);
        let passt = SpecCtx::new(FwdOpt::UdpPorts, false);
        assert_eq!(parse_spec("none", passt), Ok(vec![]));
    }

    // Forms used by Podman and rootlesskit.

    #[test]
    fn podman_single_port_ranges() {
        assert_eq!(tcp("8080-8080:80-80"), vec![rule(8080, 8080, 80)]);
        assert_eq!(
            tcp("127.0.0.1/8080-8080:80-80"),
            vec![at("127.0.0.1", rule(8080, 8080, 80))]
        );
    }

    #[test]
    fn podman_udp_ipv6_loopback_forms() {
        let ctx = pasta(FwdOpt::UdpPorts);
        let udp = |first, last, to| FwdRule {
            proto: Proto::Udp,
            ..at("::1", rule(first, last, to))
        };
        assert_eq!(
            parse_spec("::1/5353-5353:53-53", ctx),
            Ok(vec![udp(5353, 5353, 53)])
        );
        assert_eq!(
            parse_spec("[::1]/5353", ctx),
            Ok(vec![udp(5353, 5353, 5353)])
        );
    }

    #[test]
    fn rootlesskit_auto_for_every_option() {
        for opt in [
            FwdOpt::TcpPorts,
            FwdOpt::UdpPorts,
            FwdOpt::TcpNs,
            FwdOpt::UdpNs,
        ] {
            let rules = parse_spec("auto", pasta(opt)).unwrap();
            let want = FwdRule {
                proto: opt.proto(),
                ifname: opt.from_ns().then(|| "lo".to_string()),
                ..scan(weak(rule(1, 49151, 1)))
            };
            assert_eq!(rules, vec![want], "-{}", opt.letter());
        }
    }

    // Other accepted forms.

    #[test]
    fn target_address_only_keeps_ports() {
        assert_eq!(
            tcp("192.0.2.1/22-23:192.0.2.9"),
            vec![to_addr("192.0.2.9", at("192.0.2.1", rule(22, 23, 22)))]
        );
        assert_eq!(
            tcp("::1/22:[2001:db8::9]/2222"),
            vec![to_addr("2001:db8::9", at("::1", rule(22, 22, 2222)))]
        );
    }

    #[test]
    fn star_and_empty_address_mean_any() {
        assert_eq!(tcp("*/22"), vec![rule(22, 22, 22)]);
        assert_eq!(tcp("/22"), vec![rule(22, 22, 22)]);
        assert_eq!(tcp("*%lo/22"), vec![on("lo", rule(22, 22, 22))]);
    }

    #[test]
    fn bracketed_ipv4_and_mapped_ipv6_are_ipv4() {
        assert_eq!(
            tcp("[192.0.2.1]/22"),
            vec![at("192.0.2.1", rule(22, 22, 22))]
        );
        assert_eq!(
            tcp("::ffff:192.0.2.1/22"),
            vec![at("192.0.2.1", rule(22, 22, 22))]
        );
        assert_eq!(tcp("[::]/22"), vec![at("::", rule(22, 22, 22))]);
    }

    #[test]
    fn unspecified_target_means_guest_address() {
        assert_eq!(
            tcp("0.0.0.0/22:0.0.0.0/23"),
            vec![at("0.0.0.0", rule(22, 22, 23))]
        );
    }

    #[test]
    fn exclusion_order_does_not_matter_and_excludes_ends() {
        assert_eq!(tcp("~1,1-3,~3"), vec![rule(2, 2, 2)]);
        assert_eq!(
            tcp("10-12:20-22,~11"),
            vec![rule(10, 10, 20), rule(12, 12, 22)]
        );
        assert_eq!(tcp("5,~5"), vec![]);
    }

    #[test]
    fn highest_port_and_full_range_are_accepted() {
        assert_eq!(tcp("65535"), vec![rule(65535, 65535, 65535)]);
        assert_eq!(tcp("1-65535"), vec![rule(1, 65535, 1)]);
        assert_eq!(tcp("1:65535"), vec![rule(1, 1, 65535)]);
    }

    #[test]
    fn ephemeral_range_comes_from_context() {
        let ctx = SpecCtx {
            ephemeral: PortRange::new(32768, 60999).unwrap(),
            ..pasta(FwdOpt::TcpPorts)
        };
        assert_eq!(
            parse_spec("all", ctx),
            Ok(vec![
                weak(rule(1, 32767, 1)),
                weak(rule(61000, 65535, 61000))
            ])
        );
    }

    #[test]
    fn all_and_exclusions_on_target_address() {
        assert_eq!(
            tcp("0.0.0.0/all:192.0.2.6,~22"),
            vec![
                to_addr("192.0.2.6", at("0.0.0.0", weak(rule(1, 21, 1)))),
                to_addr("192.0.2.6", at("0.0.0.0", weak(rule(23, 49151, 23)))),
            ]
        );
    }

    #[test]
    fn ns_options_accept_plain_ports() {
        let rules = parse_spec("53", pasta(FwdOpt::UdpNs)).unwrap();
        assert_eq!(
            rules,
            vec![FwdRule {
                proto: Proto::Udp,
                ifname: Some("lo".into()),
                ..rule(53, 53, 53)
            }]
        );
        assert_eq!(rules[0].to_string(), "UDP [*]%lo:53  =>  53");
    }

    #[test]
    fn rule_display_follows_upstream_format() {
        let r = on(
            "eth0",
            to_addr("192.0.2.5", at("0.0.0.0", rule(22, 23, 32))),
        );
        assert_eq!(
            r.to_string(),
            "TCP [0.0.0.0]%eth0:22-23  =>  192.0.2.5:32-33"
        );
        assert_eq!(
            scan(weak(rule(5, 5, 5))).to_string(),
            "TCP [*]:5  =>  5 (best effort) (auto-scan)"
        );
    }

    // Refused forms.

    #[test]
    fn port_zero_and_above_65535_are_refused() {
        assert_eq!(
            tcp_err("0"),
            "Invalid port specifier 0: ports are 1 to 65535"
        );
        assert_eq!(
            tcp_err("65536"),
            "Invalid port specifier 65536: ports are 1 to 65535"
        );
        assert_eq!(
            tcp_err("70000"),
            "Invalid port specifier 70000: ports are 1 to 65535"
        );
        assert_eq!(
            tcp_err("1-99999999999999999999"),
            "Invalid port specifier 1-99999999999999999999: ports are 1 to 65535"
        );
        assert_eq!(
            tcp_err("22:0"),
            "Invalid port specifier 22:0: ports are 1 to 65535"
        );
        assert_eq!(
            tcp_err("~0"),
            "Invalid port specifier ~0: ports are 1 to 65535"
        );
    }

    #[test]
    fn malformed_ranges_are_refused() {
        assert_eq!(tcp_err("1-"), "Invalid port specifier 1-");
        assert_eq!(tcp_err("-5"), "Invalid port specifier -5");
        assert_eq!(tcp_err("1-2-3"), "Invalid port specifier 1-2-3");
        assert_eq!(tcp_err("+22"), "Invalid port specifier +22");
        assert_eq!(tcp_err(" 22"), "Invalid port specifier  22");
        assert_eq!(
            tcp_err("5-3"),
            "Invalid port range 5-3: first port above last"
        );
        assert_eq!(
            tcp_err("~9-1"),
            "Invalid port range ~9-1: first port above last"
        );
    }

    #[test]
    fn mismatched_range_lengths_are_refused() {
        assert_eq!(
            tcp_err("1-3:4-9"),
            "Mismatched port range lengths in 1-3:4-9"
        );
        assert_eq!(
            tcp_err("22-23:80"),
            "Mismatched port range lengths in 22-23:80"
        );
        assert_eq!(
            tcp_err("0.0.0.0/1-3:192.0.2.1/4"),
            "Mismatched port range lengths in 1-3:192.0.2.1/4"
        );
    }

    #[test]
    fn words_and_stray_punctuation_are_refused() {
        assert_eq!(tcp_err("abc"), "Invalid port specifier abc");
        assert_eq!(tcp_err("~"), "Invalid port specifier ~");
        assert_eq!(tcp_err("22:"), "Invalid port specifier 22:");
        assert_eq!(
            tcp_err("auto:192.0.2.1"),
            "Invalid port specifier auto:192.0.2.1"
        );
        assert_eq!(tcp_err("none,22"), "Invalid port specifier none");
        assert_eq!(tcp_err("ALL"), "Invalid port specifier ALL");
    }

    #[test]
    fn empty_spec_and_empty_entries_are_refused() {
        assert_eq!(tcp_err(""), "Empty port specifier");
        assert_eq!(tcp_err("22,"), "Empty entry in port specifier 22,");
        assert_eq!(tcp_err(",22"), "Empty entry in port specifier ,22");
        assert_eq!(tcp_err("22,,23"), "Empty entry in port specifier 22,,23");
    }

    #[test]
    fn missing_ports_after_address_are_refused() {
        assert_eq!(
            tcp_err("1.2.3.4/"),
            "No ports after listening address in 1.2.3.4/"
        );
        assert_eq!(
            tcp_err("%eth0/"),
            "No ports after listening address in %eth0/"
        );
    }

    #[test]
    fn bad_interface_names_are_refused() {
        assert_eq!(tcp_err("%/22"), "Invalid interface name '' in %/22");
        assert_eq!(tcp_err("%../22"), "Invalid interface name '..' in %../22");
        assert_eq!(
            tcp_err("%abcdefghijklmnop/22"),
            "Invalid interface name 'abcdefghijklmnop' in %abcdefghijklmnop/22"
        );
        assert_eq!(
            tcp_err("%a b/22"),
            "Invalid interface name 'a b' in %a b/22"
        );
        // 15 bytes is the longest name.
        assert_eq!(
            tcp("%abcdefghijklmno/22"),
            vec![on("abcdefghijklmno", rule(22, 22, 22))]
        );
    }

    #[test]
    fn bad_addresses_are_refused() {
        assert_eq!(
            tcp_err("1.2.3.400/22"),
            "Invalid listening address 1.2.3.400 in 1.2.3.400/22"
        );
        assert_eq!(tcp_err("foo/22"), "Invalid listening address foo in foo/22");
        assert_eq!(
            tcp_err("[::1/22"),
            "Invalid listening address [::1 in [::1/22"
        );
        assert_eq!(
            tcp_err("::g%lo/22"),
            "Invalid listening address ::g in ::g%lo/22"
        );
        assert_eq!(
            tcp_err("0.0.0.0/22:192.0.2.300"),
            "Invalid target address 192.0.2.300 in 22:192.0.2.300"
        );
        assert_eq!(
            tcp_err("0.0.0.0/22:host/23"),
            "Invalid target address host in 22:host/23"
        );
        assert_eq!(
            tcp_err("0.0.0.0/all:nowhere"),
            "Invalid target address nowhere in all:nowhere"
        );
    }

    #[test]
    fn auto_is_refused_for_passt() {
        let passt = SpecCtx::new(FwdOpt::TcpPorts, false);
        assert_eq!(
            err("auto", passt),
            "'auto' port forwarding is only allowed for pasta"
        );
        assert_eq!(
            err("8000,auto", passt),
            "'auto' port forwarding is only allowed for pasta"
        );
        assert_eq!(parse_spec("all", passt).map(|r| r.len()), Ok(1));
    }

    #[test]
    fn listening_address_is_refused_for_ns_options() {
        assert_eq!(
            err("127.0.0.1/22", pasta(FwdOpt::TcpNs)),
            "Listening address not allowed for -T 127.0.0.1/22"
        );
        assert_eq!(
            err("%lo/53", pasta(FwdOpt::UdpNs)),
            "Listening address not allowed for -U %lo/53"
        );
    }

    #[test]
    fn all_with_ranges_is_refused() {
        assert_eq!(
            tcp_err("22,all"),
            "'all' can't be combined with port ranges in 22,all"
        );
        assert_eq!(tcp("all,~22,all").len(), 2);
    }

    #[test]
    fn target_addresses_that_cannot_work_are_refused() {
        assert_eq!(
            tcp_err("5000:192.0.2.5/6000"),
            "Dual stack forward to 192.0.2.5 unsupported, use 0.0.0.0/... in 5000:192.0.2.5/6000"
        );
        assert_eq!(
            tcp_err("all:2001:db8::1"),
            "Dual stack forward to 2001:db8::1 unsupported, use [::]/... in all:2001:db8::1"
        );
        assert_eq!(
            tcp_err("::1/22:192.0.2.1"),
            "Forward from ::1 to 192.0.2.1 unsupported (different IP versions) in ::1/22:192.0.2.1"
        );
        assert_eq!(
            tcp_err("0.0.0.0/22:224.0.0.1"),
            "Multicast target address 224.0.0.1 in 0.0.0.0/22:224.0.0.1"
        );
    }

    #[test]
    fn ipv6_target_after_port_without_brackets_is_a_listening_address() {
        // Upstream's reading: the text before '/' parses as an address.
        assert_eq!(tcp("22:1:2::3/80"), vec![at("22:1:2::3", rule(80, 80, 80))]);
    }

    // Accumulation of repeated options.

    fn table(specs: &[(FwdOpt, &str)]) -> Result<FwdTable, SpecError> {
        let mut t = FwdTable::new();
        for &(opt, spec) in specs {
            t.add_spec(spec, pasta(opt))?;
        }
        Ok(t)
    }

    #[test]
    fn repeated_options_accumulate_in_order() {
        let t = table(&[
            (FwdOpt::TcpPorts, "22"),
            (FwdOpt::TcpPorts, "80-81:8080-8081"),
        ])
        .unwrap();
        assert_eq!(t.rules, vec![rule(22, 22, 22), rule(80, 81, 8080)]);
    }

    #[test]
    fn same_port_on_other_protocol_or_address_is_no_conflict() {
        let t = table(&[
            (FwdOpt::TcpPorts, "22"),
            (FwdOpt::UdpPorts, "22"),
            (FwdOpt::TcpPorts, "127.0.0.1/80"),
            (FwdOpt::TcpPorts, "::1/80"),
            (FwdOpt::TcpPorts, "192.0.2.1/80"),
        ])
        .unwrap();
        assert_eq!(t.rules.len(), 5);
    }

    #[test]
    fn overlapping_rules_conflict_and_leave_table_unchanged() {
        let mut t = table(&[(FwdOpt::TcpPorts, "22"), (FwdOpt::TcpPorts, "127.0.0.1/80")]).unwrap();
        let before = t.clone();
        assert_eq!(
            t.add_spec("30,20-25", pasta(FwdOpt::TcpPorts)).map_err(|e| e.to_string()),
            Err("Forwarding configuration conflict: TCP [*]:20-25  =>  20-25 versus TCP [*]:22  =>  22".into())
        );
        assert_eq!(t, before);
        for spec in ["0.0.0.0/80", "80", "127.0.0.1/79-81"] {
            assert!(
                matches!(
                    t.add_spec(spec, pasta(FwdOpt::TcpPorts)),
                    Err(SpecError::Conflict { .. })
                ),
                "{spec}"
            );
        }
        assert_eq!(t, before);
        assert!(matches!(
            table(&[(FwdOpt::TcpPorts, "1-10"), (FwdOpt::TcpPorts, "~5")]),
            Err(SpecError::Conflict { .. })
        ));
    }

    #[test]
    fn none_after_rules_of_same_protocol_conflicts() {
        assert_eq!(
            table(&[(FwdOpt::TcpPorts, "22"), (FwdOpt::TcpPorts, "none")])
                .map_err(|e| e.to_string()),
            Err("-t none conflicts with previous options".into())
        );
        assert!(table(&[(FwdOpt::TcpPorts, "22"), (FwdOpt::UdpPorts, "none")]).is_ok());
        assert_eq!(
            table(&[(FwdOpt::TcpPorts, "none"), (FwdOpt::TcpPorts, "22")]).map(|t| t.rules),
            Ok(vec![rule(22, 22, 22)])
        );
    }

    #[test]
    fn merge_refuses_conflicts_within_the_new_rules() {
        let mut t = FwdTable::new();
        assert!(matches!(
            t.merge(vec![rule(1, 5, 1), rule(5, 6, 5)]),
            Err(SpecError::Conflict { .. })
        ));
        assert_eq!(t, FwdTable::new());
    }

    // UDP follows TCP in auto mode.

    fn set(ports: &[u16]) -> PortSet {
        let mut s = PortSet::new();
        for &p in ports {
            s.insert(p);
        }
        s
    }

    #[test]
    fn udp_scan_adds_tcp_ports_and_ipv6_ports() {
        let got = udp_scan_ports(&set(&[53]), &set(&[5353]), &set(&[5201]), &set(&[8080, 53]));
        assert_eq!(got.iter().collect::<Vec<_>>(), vec![53, 5201, 5353, 8080]);
        assert!(udp_scan_ports(&set(&[]), &set(&[]), &set(&[]), &set(&[]))
            .iter()
            .next()
            .is_none());
    }

    #[test]
    fn port_set_covers_both_ends() {
        let mut s = set(&[0, 65535]);
        assert!(s.contains(0) && s.contains(65535) && !s.contains(1));
        s.insert_range(PortRange::new(63, 65).unwrap());
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 63, 64, 65, 65535]);
    }

    #[test]
    fn port_set_remove_and_difference_keep_other_ports() {
        let mut s = set(&[0, 63, 64, 80, 65535]);
        s.remove(64);
        s.remove(81);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 63, 80, 65535]);
        s.difference_with(&set(&[0, 80, 443]));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![63, 65535]);
        assert!(!s.is_empty());
        assert_eq!(s.words()[0], 1 << 63);
        assert_eq!(s.words()[1023], 1 << 63);
        s.clear();
        assert!(s.is_empty() && s == PortSet::new());
    }

    #[test]
    fn port_range_rejects_zero_and_reversed() {
        assert_eq!(PortRange::new(0, 1), None);
        assert_eq!(PortRange::new(3, 2), None);
        assert_eq!(PortRange::new(1, 65535).map(PortRange::len), Some(65535));
    }
}
