//! # Theory of operation
//!
//! Listening sockets for the forwarding rules ([`crate::fwd_rule`]): one
//! socket per rule and port, as passt(1) describes under `-t`.
//!
//! - Direction [`IN`] (`-t`/`-u`) binds in our own (init) namespace,
//!   direction [`OUT`] (`-T`/`-U`, pasta) in the target namespace through
//!   [`NsSwitch`] (their rules name interface `lo`: any loopback address).
//! - No listening address means any address: one dual-stack socket
//!   (`IPV6_V6ONLY` off) when both IP versions are enabled. `%ifname`
//!   binds the socket to that interface (SO_BINDTODEVICE).
//! - [`Listeners::sync`] makes the sockets match the rules and, for `auto`
//!   rules, the ports found bound on the other side: it binds what is
//!   missing and closes what is no longer wanted, so it runs at start and
//!   after every scan. A port that can't be bound is an error for an
//!   explicit rule, skipped for a best-effort one (`all`, exclusions),
//!   and an error if a best-effort rule could bind nothing at all
//!   (upstream: "Listen failed ...", "All listens failed ...").
//! - Each socket is registered in epoll as [`EpollType::Listen`] with
//!   [`listen_ref`] data (direction, rule, port), so an event finds its
//!   rule without a lookup.
//!
//! ## Socket lookup (`--ebpf`)
//!
//! With [`Listeners::steer`] (the `sk_lookup` program is attached, see
//! [`crate::ebpf::lookup`]), best-effort rules (`all`, `auto`, exclusions
//! only) without an interface get one socket each instead of one per
//! port: bound to the rule's address and an ephemeral port, put in the
//! program's sockmap, and registered with port 0 in its [`listen_ref`].
//! [`Listeners::sync`] then writes the rule's ports into the program's
//! bitmap instead of binding them, less the ports that applications
//! listen on (TCP) or have bound (UDP) in that namespace, from a
//! `/proc/net` scan of its own ([`crate::fwd_scan::ProcNet`]) at every
//! sync. A connection's original port is its accepted socket's local port,
//! a datagram's comes with it (`IP_ORIGDSTADDR` / `IPV6_ORIGDSTADDR`);
//! [`Listeners::steered_target`] turns it into the rule's [`Target`].
//! When the socket of a rule can't be set up, the rule falls back to
//! per-port sockets (logged).
//!
//! Syscalls: socket, setsockopt (SO_REUSEADDR, IPV6_V6ONLY,
//! SO_BINDTODEVICE, IP_RECVORIGDSTADDR, IPV6_RECVORIGDSTADDR), bind,
//! listen, getsockname, epoll_ctl, close; setns via [`NsSwitch`]; bpf and
//! pread via [`crate::ebpf::lookup`] and [`crate::fwd_scan`].

use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::ebpf::lookup::LookupMaps;
use crate::epoll::{Epoll, EpollRef, EpollType};
use crate::fwd_scan::{Listening, ProcNet};
use crate::flow::Inany;
use crate::fwd_rule::{FwdRule, FwdTable, PortSet, Proto};
use crate::netns::NsSwitch;
use crate::sys;

/// Direction of `-t`/`-u`: host to guest or namespace.
pub const IN: usize = 0;
/// Direction of `-T`/`-U`: namespace to host.
pub const OUT: usize = 1;

/// Backlog of listening TCP sockets.
const BACKLOG: i32 = 1024;

/// Why listening sockets could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// An explicit rule's port could not be bound.
    #[error("Listen failed for {what} port {port}: {err}")]
    Port {
        /// Protocol and address, e.g. `TCP [*]`.
        what: String,
        /// The port.
        port: u16,
        /// The OS error.
        err: std::io::Error,
    },
    /// A best-effort rule could bind none of its ports.
    #[error("All listens failed for {0}")]
    Rule(String),
    /// Entering the target namespace failed.
    #[error("can't enter the target namespace: {0}")]
    Netns(std::io::Error),
}

/// The sockets of one direction: for each rule, one slot per port, and
/// for rules served by socket lookup, their one socket.
#[derive(Debug, Default)]
struct Dir {
    rules: Vec<FwdRule>,
    socks: Vec<Vec<Option<OwnedFd>>>,
    steer: Vec<Option<Steered>>,
}

/// A rule served by socket lookup.
#[derive(Debug)]
struct Steered {
    /// Its slot in the program's maps.
    slot: u32,
    /// Its socket, once set up by [`Listeners::sync`], if it owns one.
    sock: Option<OwnedFd>,
    /// The socket's (ephemeral) port.
    lport: u16,
    /// Index of the rule whose socket serves this one (its own, or an
    /// earlier rule's with the same protocol, address and interface: the
    /// `all` ports below and above the ephemeral range are two rules);
    /// `None` until set up.
    owner: Option<usize>,
}

/// Socket lookup state: the program's maps and, per direction, a scanner
/// of the namespace where that direction listens (for the ports that
/// applications hold there).
#[derive(Debug)]
struct Steering {
    maps: LookupMaps,
    held: [Option<ProcNet>; 2],
    buf: Listening,
}

/// Whether rule `r` can be served by socket lookup: best effort, so
/// failing to take a port is no error, and bound to no interface or to
/// `lo` (see [`LOOPBACK_IFINDEX`]).
pub fn steerable(r: &FwdRule) -> bool {
    (r.weak || r.scan) && r.ifname.as_deref().is_none_or(|i| i == "lo")
}

/// The loopback interface's index, the same in every network namespace
/// (the kernel's `LOOPBACK_IFINDEX`).
pub const LOOPBACK_IFINDEX: u32 = 1;

/// Every listening socket of both directions.
#[derive(Debug, Default)]
pub struct Listeners {
    dirs: [Dir; 2],
    v4: bool,
    v6: bool,
    /// Listeners taken out of epoll until the next tick: (fd, data word).
    paused: Vec<(std::os::fd::RawFd, u32)>,
    /// Socket lookup, with `--ebpf`.
    steering: Option<Steering>,
    /// Per direction: [`Listeners::sync`] ran once.
    synced: [bool; 2],
    /// `--freebind`: the sockets of `-t`/`-u` rules (not `-T`/`-U`) are
    /// bound with IP_FREEBIND / IPV6_FREEBIND, so that a rule's address
    /// need not be configured on the host yet (passt(1)).
    pub freebind: bool,
}

/// The epoll data word of a listening socket: bit 31 the direction, bits
/// 16..31 the rule index, bits 0..16 the port (0: the rule's socket-lookup
/// socket).
pub fn listen_ref(dir: usize, rule: usize, port: u16) -> u32 {
    ((dir as u32 & 1) << 31) | ((rule as u32 & 0x7fff) << 16) | u32::from(port)
}

/// Unpack [`listen_ref`]: (direction, rule index, port).
pub fn unpack_ref(data: u32) -> (usize, usize, u16) {
    ((data >> 31) as usize, ((data >> 16) & 0x7fff) as usize, data as u16)
}

/// What an event on a listening socket needs from its rule.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// [`IN`] or [`OUT`].
    pub dir: usize,
    /// TCP or UDP.
    pub proto: Proto,
    /// The port the socket listens on (0 for a socket-lookup socket,
    /// until [`Listeners::steered_target`] gives the original port).
    pub port: u16,
    /// The port to forward to.
    pub to: u16,
    /// The rule's target address, if any.
    pub taddr: Option<Inany>,
    /// The epoll data word of the socket ([`listen_ref`]).
    pub data: u32,
    /// The address the socket is bound to (unspecified: any).
    pub laddr: Inany,
}

fn rule_name(r: &FwdRule) -> String {
    let a = r.addr.map_or_else(|| "*".to_string(), |a| a.to_string());
    match &r.ifname {
        Some(i) => format!("{} [{a}]%{i}", r.proto),
        None => format!("{} [{a}]", r.proto),
    }
}

impl Listeners {
    /// Rules of `fwd_in` (`-t`/`-u`) and `fwd_out` (`-T`/`-U`) for the
    /// enabled IP versions and protocols; nothing is bound yet.
    pub fn new(fwd_in: &FwdTable, fwd_out: &FwdTable, tcp: bool, udp: bool, v4: bool, v6: bool) -> Self {
        let keep = |r: &&FwdRule| {
            let proto_ok = match r.proto {
                Proto::Tcp => tcp,
                Proto::Udp => udp,
            };
            let fam_ok = match r.addr {
                Some(IpAddr::V4(_)) => v4,
                Some(IpAddr::V6(_)) => v6,
                None => true,
            };
            proto_ok && fam_ok
        };
        let dir = |t: &FwdTable| {
            let rules: Vec<FwdRule> = t.rules.iter().filter(keep).take(0x8000).cloned().collect();
            let socks = rules.iter().map(|r| (0..r.ports.len()).map(|_| None).collect()).collect();
            let steer = rules.iter().map(|_| None).collect();
            Dir { rules, socks, steer }
        };
        Listeners { dirs: [dir(fwd_in), dir(fwd_out)], v4, v6, paused: Vec::new(), steering: None, synced: [false; 2], freebind: false }
    }

    /// Whether direction `dir` has rules that socket lookup could serve
    /// ([`steerable`]).
    pub fn steerable(&self, dir: usize) -> bool {
        self.dirs[dir].rules.iter().any(steerable)
    }

    /// Serve the [`steerable`] rules of each direction that has a scanner
    /// in `held` (of the namespace where it listens) by socket lookup, up
    /// to the slots `maps` has; must come before the first
    /// [`Listeners::sync`] (rules that have per-port sockets already are
    /// left alone). Returns how many rules it will serve.
    pub fn steer(&mut self, mut maps: LookupMaps, held: [Option<ProcNet>; 2]) -> usize {
        let mut n = 0;
        'dirs: for (dir, d) in self.dirs.iter_mut().enumerate() {
            if held[dir].is_none() {
                continue;
            }
            for ((r, socks), st) in d.rules.iter().zip(&d.socks).zip(d.steer.iter_mut()) {
                if !steerable(r) || socks.iter().any(Option::is_some) {
                    continue;
                }
                let Ok(slot) = maps.alloc() else {
                    log::info!("eBPF socket lookup: no slot left, more rules keep one socket per port");
                    break 'dirs;
                };
                *st = Some(Steered { slot, sock: None, lport: 0, owner: None });
                n += 1;
            }
        }
        self.steering = Some(Steering { maps, held, buf: Listening::new() });
        n
    }

    /// Whether direction `dir` has rules served by socket lookup (then
    /// [`Listeners::sync`] has work to do at every scan).
    pub fn steers(&self, dir: usize) -> bool {
        self.dirs[dir].steer.iter().any(Option::is_some)
    }

    /// The socket-lookup summary line for the exit log, if in use.
    pub fn steer_summary(&self) -> Option<String> {
        self.steering.as_ref().map(|s| s.maps.summary())
    }

    /// The target of a connection or datagram that socket lookup handed to
    /// the socket of `t` ([`Target::port`] 0), originally for `port`:
    /// `t` with that port and its target port; `None` if `port` is not
    /// one of the rule's.
    pub fn steered_target(&self, t: &Target, port: u16) -> Option<Target> {
        let (dir, idx, p) = unpack_ref(t.data);
        if p != 0 || port == 0 {
            return None;
        }
        let d = self.dirs.get(dir)?;
        // The rules served by this socket: idx's, and those sharing it.
        let (r, _) = d.rules.iter().zip(&d.steer).find(|(r, s)| {
            s.as_ref().is_some_and(|s| s.owner == Some(idx)) && r.ports.contains(port)
        })?;
        Some(Target { port, to: r.target_port(port)?, taddr: r.taddr.map(Inany::from), ..*t })
    }

    /// Stop polling listener `fd` (data word `data`) until [`Listeners::resume`]:
    /// when accept(2) fails for lack of file descriptors, the pending
    /// connection stays pending and a level-triggered listener would spin
    /// the loop.
    pub fn pause(&mut self, epoll: &Epoll, fd: std::os::fd::RawFd, data: u32) {
        if self.paused.iter().any(|&(f, _)| f == fd) {
            return;
        }
        if epoll.modify(fd, 0, EpollRef::new(EpollType::Listen, fd, data)).is_ok() {
            self.paused.push((fd, data));
        }
    }

    /// Poll every paused listener again (on the periodic tick). A listener
    /// closed meanwhile by [`Listeners::sync`] is skipped, even if a new
    /// socket got its descriptor number.
    pub fn resume(&mut self, epoll: &Epoll) {
        let paused = std::mem::take(&mut self.paused);
        for (fd, data) in paused {
            if self.holds(data, fd) {
                let _ = epoll.modify(fd, libc::EPOLLIN as u32, EpollRef::new(EpollType::Listen, fd, data));
            }
        }
    }

    /// Whether any listener is paused.
    pub fn any_paused(&self) -> bool {
        !self.paused.is_empty()
    }

    /// Whether direction `dir` has `auto` rules (needs scanning).
    pub fn scans(&self, dir: usize) -> bool {
        self.dirs[dir].rules.iter().any(|r| r.scan)
    }

    /// Whether direction `dir` has any rule.
    pub fn any(&self, dir: usize) -> bool {
        !self.dirs[dir].rules.is_empty()
    }

    /// True if the socket of the rule and port named by `data`
    /// ([`listen_ref`]) is `fd`.
    fn holds(&self, data: u32, fd: std::os::fd::RawFd) -> bool {
        let (dir, idx, port) = unpack_ref(data);
        let Some(d) = self.dirs.get(dir) else { return false };
        if port == 0 {
            let st = d.steer.get(idx).and_then(Option::as_ref);
            return st.and_then(|s| s.sock.as_ref()).is_some_and(|s| s.as_raw_fd() == fd);
        }
        let (Some(r), Some(socks)) = (d.rules.get(idx), d.socks.get(idx)) else { return false };
        let Some(i) = port.checked_sub(r.ports.first()) else { return false };
        socks.get(usize::from(i)).is_some_and(|s| s.as_ref().is_some_and(|s| s.as_raw_fd() == fd))
    }

    /// The rule behind an event on listening socket `fd` with the epoll
    /// data word `data` made by [`listen_ref`]; `None` if that rule and
    /// port have no such socket (any more: [`Listeners::sync`] closed it
    /// after the event was reported, and `fd` may be another socket now).
    pub fn target(&self, data: u32, fd: std::os::fd::RawFd) -> Option<Target> {
        if !self.holds(data, fd) {
            return None;
        }
        let (dir, idx, port) = unpack_ref(data);
        let r = self.dirs.get(dir)?.rules.get(idx)?;
        let laddr = listen_addr(r, self.v4, self.v6).0;
        let to = if port == 0 { 0 } else { r.target_port(port)? };
        Some(Target { dir, proto: r.proto, port, to, taddr: r.taddr.map(Inany::from), data, laddr })
    }

    /// Ports of `proto` we listen on in direction `dir` (to leave out of
    /// the other direction's scan: our own listeners are not services).
    pub fn bound(&self, dir: usize, proto: Proto) -> PortSet {
        let mut s = PortSet::new();
        let d = &self.dirs[dir];
        for (r, socks) in d.rules.iter().zip(&d.socks) {
            if r.proto != proto {
                continue;
            }
            for (i, p) in socks.iter().enumerate() {
                if p.is_some() {
                    s.insert(r.ports.first().saturating_add(i as u16));
                }
            }
        }
        for (r, st) in d.rules.iter().zip(&d.steer) {
            if let Some(st) = st.as_ref().filter(|s| r.proto == proto && s.sock.is_some()) {
                s.insert(st.lport);
            }
        }
        s
    }

    /// (listening port, target port) of every TCP port direction `dir`
    /// forwards: bound per-port listeners, and the ports socket lookup
    /// steers to a rule's one socket.
    pub fn tcp_forwards(&self, dir: usize) -> Vec<(u16, u16)> {
        let mut v = Vec::new();
        let d = &self.dirs[dir];
        for ((r, socks), st) in d.rules.iter().zip(&d.socks).zip(&d.steer) {
            if r.proto != Proto::Tcp {
                continue;
            }
            for (i, p) in socks.iter().enumerate() {
                let port = r.ports.first().saturating_add(i as u16);
                if let (Some(_), Some(to)) = (p, r.target_port(port)) {
                    v.push((port, to));
                }
            }
            let steered = st.as_ref().zip(self.steering.as_ref()).and_then(|(st, s)| s.maps.ports(st.slot));
            for port in steered.into_iter().flat_map(|ports| ports.iter()) {
                if let Some(to) = r.target_port(port) {
                    v.push((port, to));
                }
            }
        }
        v
    }

    /// Tell the eBPF TCP short-circuit which ports our TCP listeners
    /// forward, both ways.
    pub fn sync_sockmap(&self, sm: &mut crate::ebpf::sockmap::Sockmap) {
        sm.sync_ports(&self.tcp_forwards(IN), &self.tcp_forwards(OUT));
    }

    /// Bind and close sockets of direction `dir` so that they match its
    /// rules; `auto` rules listen only on the ports in `tcp`/`udp` (the
    /// target ports bound on the other side). Direction [`OUT`] needs `ns`.
    ///
    /// # Errors
    /// See [`ListenError`]; sockets bound before the error stay.
    pub fn sync(&mut self, dir: usize, tcp: &PortSet, udp: &PortSet, epoll: &Epoll, ns: Option<&NsSwitch>) -> Result<(), ListenError> {
        let (v4, v6) = (self.v4, self.v6);
        let freebind = self.freebind && dir != OUT;
        let d = &mut self.dirs[dir];
        // Per-port sockets of rules other than `auto` are retried only
        // where there are `auto` rules (as without socket lookup, whose
        // periodic sync alone must not retry them every second).
        let retry_fixed = !self.synced[dir] || d.rules.iter().any(|r| r.scan);
        self.synced[dir] = true;
        let held = match self.steering.as_mut() {
            Some(st) if d.steer.iter().any(Option::is_some) => Some(held_ports(st, dir, d)),
            _ => None,
        };
        if let (Some(steering), Some((htcp, hudp))) = (self.steering.as_mut(), held.as_ref()) {
            for idx in 0..d.rules.len() {
                if d.steer.get(idx).is_none_or(Option::is_none) {
                    continue;
                }
                let r = &d.rules[idx];
                let (scanned, held) = match r.proto {
                    Proto::Tcp => (tcp, htcp),
                    Proto::Udp => (udp, hudp),
                };
                let Err(e) = sync_steered(dir, idx, &d.rules, &mut d.steer, &mut steering.maps, scanned, held, (v4, v6), epoll, ns)
                else {
                    continue;
                };
                // This rule, and any sharing its socket, go back to one
                // socket per port (below, in this pass).
                for (k, st) in d.steer.iter_mut().enumerate() {
                    if k != idx && st.as_ref().is_none_or(|s| s.owner != Some(idx)) {
                        continue;
                    }
                    if let Some(mut s) = st.take() {
                        log::warn!("eBPF socket lookup for {} {}: {e}; one socket per port instead", rule_name(&d.rules[k]), d.rules[k].ports);
                        if let Some(fd) = s.sock.take() {
                            epoll.del(fd.as_raw_fd());
                        }
                        steering.maps.release(s.slot);
                    }
                }
            }
        }
        for (idx, ((r, socks), steer)) in d.rules.iter().zip(d.socks.iter_mut()).zip(d.steer.iter()).enumerate() {
            let map = match r.proto {
                Proto::Tcp => tcp,
                Proto::Udp => udp,
            };
            if steer.is_some() || (!r.scan && !retry_fixed) {
                continue;
            }
            let mut bound_one = false;
            for (i, slot) in socks.iter_mut().enumerate() {
                let port = r.ports.first().saturating_add(i as u16);
                let wanted = !r.scan || r.target_port(port).is_some_and(|t| map.contains(t));
                if !wanted {
                    if let Some(fd) = slot.take() {
                        epoll.del(fd.as_raw_fd());
                    }
                    continue;
                }
                if slot.is_some() {
                    bound_one = true;
                    continue;
                }
                match bind_port(dir, r, port, v4, v6, ns, freebind) {
                    Ok(fd) => {
                        let e = EpollRef::new(EpollType::Listen, fd.as_raw_fd(), listen_ref(dir, idx, port));
                        if epoll.add(fd.as_raw_fd(), libc::EPOLLIN as u32, e).is_ok() {
                            *slot = Some(fd);
                            bound_one = true;
                        }
                    }
                    Err(err) if r.scan => log::debug!("Listen failed for {} port {port}: {err}", rule_name(r)),
                    Err(err) => {
                        log::warn!("Listen failed for {} port {port}: {err}", rule_name(r));
                        if !r.weak {
                            return Err(ListenError::Port { what: rule_name(r), port, err });
                        }
                    }
                }
            }
            if !bound_one && !r.scan {
                return Err(ListenError::Rule(format!("{} {}", rule_name(r), r.ports)));
            }
        }
        Ok(())
    }
}

/// Ports held by applications in the namespace where direction `dir`
/// listens, (TCP listening, UDP bound), less our own socket-lookup sockets.
fn held_ports(st: &mut Steering, dir: usize, d: &Dir) -> (PortSet, PortSet) {
    let Some(scanner) = st.held[dir].as_mut() else { return (PortSet::new(), PortSet::new()) };
    scanner.scan_into(&mut st.buf);
    let mut ours = PortSet::new();
    for s in d.steer.iter().flatten().filter(|s| s.sock.is_some()) {
        ours.insert(s.lport);
    }
    let mut udp = st.buf.udp4.clone();
    udp.union_with(&st.buf.udp6);
    udp.difference_with(&ours);
    let mut tcp = st.buf.tcp_ports();
    tcp.difference_with(&ours);
    (tcp, udp)
}

/// The ports socket lookup takes for rule `r`: all of its ports (for
/// `auto`, those whose target port is in `scanned`), less `held`.
pub fn steered_ports(r: &FwdRule, scanned: &PortSet, held: &PortSet) -> PortSet {
    let mut s = PortSet::new();
    for p in r.ports.first()..=r.ports.last() {
        if !r.scan || r.target_port(p).is_some_and(|t| scanned.contains(t)) {
            s.insert(p);
        }
    }
    s.difference_with(held);
    s
}

/// Whether the sockets of rules `a` and `b` would be the same: protocol,
/// address and interface.
fn same_socket(a: &FwdRule, b: &FwdRule) -> bool {
    a.proto == b.proto && a.addr == b.addr && a.ifname == b.ifname
}

/// Set up steered rule `idx` of `rules` (direction `dir`) if it isn't yet:
/// share the socket of an earlier rule with the same one
/// ([`same_socket`]), or open its own; then write its ports
/// ([`steered_ports`]).
///
/// # Errors
/// Socket, map or epoll errors, as text for the fallback log line.
#[allow(clippy::too_many_arguments)]
fn sync_steered(
    dir: usize,
    idx: usize,
    rules: &[FwdRule],
    steer: &mut [Option<Steered>],
    maps: &mut LookupMaps,
    scanned: &PortSet,
    held: &PortSet,
    (v4, v6): (bool, bool),
    epoll: &Epoll,
    ns: Option<&NsSwitch>,
) -> Result<(), String> {
    let r = &rules[idx];
    let (a, v6only) = listen_addr(r, v4, v6);
    let ifindex = if r.ifname.is_some() { LOOPBACK_IFINDEX } else { 0 };
    let entry = crate::ebpf::lookup::rule_entry(dir, r.proto, a, v6only, ifindex);
    let unset = steer[idx].as_ref().is_some_and(|s| s.owner.is_none());
    let shared = (0..idx).find(|&j| {
        steer[j].as_ref().is_some_and(|s| s.owner == Some(j) && s.sock.is_some()) && same_socket(&rules[j], r)
    });
    if let (true, Some(j)) = (unset, shared) {
        let (fd, lport) = match &steer[j] {
            Some(Steered { sock: Some(s), lport, .. }) => (s.as_raw_fd(), *lport),
            _ => return Err("shared socket gone".into()),
        };
        let Some(st) = steer[idx].as_mut() else { return Err("not steered".into()) };
        maps.install(st.slot, entry, &fd).map_err(|e| e.to_string())?;
        log::info!("eBPF socket lookup: {} {} through one socket (port {lport}, shared)", rule_name(r), r.ports);
        st.owner = Some(j);
    }
    let Some(st) = steer[idx].as_mut() else { return Err("not steered".into()) };
    if st.owner.is_none() {
        let ty = match r.proto {
            Proto::Tcp => libc::SOCK_STREAM,
            Proto::Udp => libc::SOCK_DGRAM,
        };
        let s = if dir == OUT {
            let Some(ns) = ns else { return Err("no namespace".into()) };
            ns.in_target(move || bind_steered(ty, a, v6only)).and_then(|r| r)
        } else {
            bind_steered(ty, a, v6only)
        }
        .map_err(|e| format!("socket: {e}"))?;
        let lport = sys::local_addr(s.as_raw_fd()).map_err(|e| format!("getsockname: {e}"))?.1;
        maps.install(st.slot, entry, &s).map_err(|e| e.to_string())?;
        let e = EpollRef::new(EpollType::Listen, s.as_raw_fd(), listen_ref(dir, idx, 0));
        epoll.add(s.as_raw_fd(), libc::EPOLLIN as u32, e).map_err(|e| format!("epoll: {e}"))?;
        log::info!("eBPF socket lookup: {} {} through one socket (port {lport})", rule_name(r), r.ports);
        st.sock = Some(s);
        st.lport = lport;
        st.owner = Some(idx);
    }
    let ports = steered_ports(r, scanned, held);
    if maps.set_ports(st.slot, &ports).map_err(|e| e.to_string())? > 0 {
        let n: u32 = ports.words().iter().map(|w| w.count_ones()).sum();
        log::debug!("eBPF socket lookup: {} {} now takes {n} ports", rule_name(r), r.ports);
    }
    Ok(())
}

/// The socket of a rule served by socket lookup: on `a` (`v6only` for
/// IPv6), an ephemeral port; TCP listening, UDP reporting each datagram's
/// original destination.
fn bind_steered(ty: i32, a: Inany, v6only: bool) -> std::io::Result<OwnedFd> {
    let s = bind_one(ty, a, 0, None, v6only, false)?;
    if ty == libc::SOCK_DGRAM {
        let fd = s.as_raw_fd();
        if a.is_v4() || !v6only {
            sys::set_int_opt(fd, libc::SOL_IP, libc::IP_RECVORIGDSTADDR, 1)?;
        }
        if !a.is_v4() {
            sys::set_int_opt(fd, libc::SOL_IPV6, libc::IPV6_RECVORIGDSTADDR, 1)?;
        }
    }
    Ok(s)
}

/// Bind the socket for `port` of rule `r`: on its address, or on any
/// address (dual-stack if both versions are on), bound to its interface
/// if it names one; for [`OUT`] in the target namespace. `freebind`: see
/// [`bind_one`].
fn bind_port(dir: usize, r: &FwdRule, port: u16, v4: bool, v6: bool, ns: Option<&NsSwitch>, freebind: bool) -> std::io::Result<OwnedFd> {
    let ty = match r.proto {
        Proto::Tcp => libc::SOCK_STREAM,
        Proto::Udp => libc::SOCK_DGRAM,
    };
    let (a, v6only) = listen_addr(r, v4, v6);
    if dir == OUT {
        let Some(ns) = ns else { return Err(std::io::ErrorKind::Unsupported.into()) };
        let ifname = r.ifname.clone();
        return ns.in_target(move || bind_one(ty, a, port, ifname.as_deref(), v6only, freebind))?;
    }
    bind_one(ty, a, port, r.ifname.as_deref(), v6only, freebind)
}

/// The address the sockets of rule `r` bind to, and whether an IPv6 one
/// is IPv6-only: the rule's address, else any address (dual-stack if both
/// versions are on).
fn listen_addr(r: &FwdRule, v4: bool, v6: bool) -> (Inany, bool) {
    match r.addr {
        Some(a) => (Inany::from(a), true),
        None if v6 => (Inany::UNSPEC6, !v4),
        None => (Inany::UNSPEC4, true),
    }
}

/// One listening socket on `a`:`port` (`v6only` for IPv6 addresses);
/// with `freebind`, `a` need not be an address of the host (IP_FREEBIND,
/// ip(7); IPV6_FREEBIND, ipv6(7)): the socket answers once it is added.
///
/// # Errors
/// The OS error of socket(2), setsockopt(2), bind(2) (EADDRNOTAVAIL for an
/// address the host doesn't have, without `freebind`) or listen(2).
fn bind_one(ty: i32, a: Inany, port: u16, ifname: Option<&str>, v6only: bool, freebind: bool) -> std::io::Result<OwnedFd> {
    let s = sys::socket(a.is_v4(), ty, 0)?;
    let fd = s.as_raw_fd();
    sys::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if freebind {
        if a.is_v4() {
            sys::set_int_opt(fd, libc::SOL_IP, libc::IP_FREEBIND, 1)?;
        } else {
            sys::set_int_opt(fd, libc::SOL_IPV6, libc::IPV6_FREEBIND, 1)?;
        }
    }
    if !a.is_v4() {
        sys::set_int_opt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, i32::from(v6only))?;
    }
    if let Some(i) = ifname {
        sys::bind_to_device(fd, i)?;
    }
    sys::bind(fd, a, port)?;
    if ty == libc::SOCK_STREAM {
        sys::listen(fd, BACKLOG)?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fwd_rule::{FwdOpt, SpecCtx};

    fn table(specs: &[(FwdOpt, &str)]) -> FwdTable {
        let mut t = FwdTable::new();
        for (o, s) in specs {
            t.add_spec(s, SpecCtx::new(*o, true)).unwrap();
        }
        t
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    /// A UDP port nothing holds right now: a free TCP port number may be
    /// any other test's UDP socket.
    fn free_udp_port() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    #[test]
    fn steered_ports_leave_out_held_and_unscanned_ports() {
        let t = table(&[(FwdOpt::TcpPorts, "~2001-65535"), (FwdOpt::UdpPorts, "1000-1999:3000-3999,auto")]);
        let (all, auto) = (&t.rules[0], &t.rules[1]);
        assert!(all.weak && steerable(all) && steerable(auto));
        let mut held = PortSet::new();
        held.insert(22);
        let s = steered_ports(all, &PortSet::new(), &held);
        assert!(s.contains(1) && s.contains(2000) && !s.contains(22) && !s.contains(2001));
        // auto: only ports whose target (listening port + 2000) is bound
        // on the other side.
        let mut scanned = PortSet::new();
        scanned.insert(3005);
        scanned.insert(5000);
        let s = steered_ports(auto, &scanned, &PortSet::new());
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![1005]);
    }

    #[test]
    fn explicit_and_interface_rules_keep_one_socket_per_port() {
        let rule = |spec: &str| table(&[(FwdOpt::TcpPorts, spec)]).rules.remove(0);
        assert!(!steerable(&rule("80")));
        assert!(!steerable(&rule("%eth0/~1-999")));
        assert!(steerable(&rule("%lo/~1-999")), "lo: checked by the program (ingress interface 1)");
    }

    #[test]
    fn ref_round_trips() {
        assert_eq!(unpack_ref(listen_ref(OUT, 0x7fff, 65535)), (OUT, 0x7fff, 65535));
        assert_eq!(unpack_ref(listen_ref(IN, 3, 22)), (IN, 3, 22));
    }

    #[test]
    fn explicit_rule_binds_dual_stack_and_reports_target() {
        let p = free_port();
        let t = table(&[(FwdOpt::TcpPorts, &format!("{p}:{}", p.wrapping_add(1).max(1)))]);
        let mut l = Listeners::new(&t, &FwdTable::new(), true, true, true, true);
        let ep = Epoll::new().unwrap();
        l.sync(IN, &PortSet::new(), &PortSet::new(), &ep, None).unwrap();
        assert!(l.bound(IN, Proto::Tcp).contains(p));
        // Both versions reach the one socket.
        std::net::TcpStream::connect(("127.0.0.1", p)).unwrap();
        std::net::TcpStream::connect(("::1", p)).unwrap();
        let fd = l.dirs[IN].socks[0][0].as_ref().unwrap().as_raw_fd();
        let tg = l.target(listen_ref(IN, 0, p), fd).unwrap();
        assert_eq!((tg.proto, tg.port, tg.to), (Proto::Tcp, p, p.wrapping_add(1).max(1)));
        assert!(l.target(listen_ref(IN, 1, p), fd).is_none());
        assert!(l.target(listen_ref(IN, 0, p), fd + 1).is_none(), "not that rule's socket");
    }

    #[test]
    fn freebind_binds_an_address_the_host_does_not_have() {
        // Documentation addresses (RFC 5737, RFC 3849): on no host.
        for a in ["198.51.100.251", "[2001:db8:ffff::251]"] {
            let p = free_port();
            let t = table(&[(FwdOpt::TcpPorts, &format!("{a}/{p}")), (FwdOpt::UdpPorts, &format!("{a}/{p}"))]);
            let ep = Epoll::new().unwrap();
            let mut l = Listeners::new(&t, &FwdTable::new(), true, true, true, true);
            let e = l.sync(IN, &PortSet::new(), &PortSet::new(), &ep, None).unwrap_err();
            assert!(e.to_string().contains("Cannot assign requested address"), "without --freebind: {e}");
            let mut l = Listeners::new(&t, &FwdTable::new(), true, true, true, true);
            l.freebind = true;
            l.sync(IN, &PortSet::new(), &PortSet::new(), &ep, None).unwrap();
            assert_eq!(l.bound(IN, Proto::Tcp).iter().collect::<Vec<_>>(), vec![p], "{a}: TCP");
            assert_eq!(l.bound(IN, Proto::Udp).iter().collect::<Vec<_>>(), vec![p], "{a}: UDP");
        }
    }

    #[test]
    fn port_in_use_fails_an_explicit_rule() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = held.local_addr().unwrap().port();
        let t = table(&[(FwdOpt::TcpPorts, &format!("127.0.0.1/{p}"))]);
        let mut l = Listeners::new(&t, &FwdTable::new(), true, true, true, true);
        let ep = Epoll::new().unwrap();
        let e = l.sync(IN, &PortSet::new(), &PortSet::new(), &ep, None).unwrap_err();
        assert!(e.to_string().starts_with("Listen failed for TCP [127.0.0.1] port"), "{e}");
    }

    #[test]
    fn auto_rule_follows_the_scan_map() {
        let p = free_udp_port();
        let t = table(&[(FwdOpt::UdpPorts, &format!("127.0.0.1/{p},auto"))]);
        let mut l = Listeners::new(&t, &FwdTable::new(), true, true, true, true);
        let ep = Epoll::new().unwrap();
        let mut map = PortSet::new();
        l.sync(IN, &PortSet::new(), &map, &ep, None).unwrap();
        assert!(!l.bound(IN, Proto::Udp).contains(p), "not bound on the other side yet");
        map.insert(p);
        l.sync(IN, &PortSet::new(), &map, &ep, None).unwrap();
        assert!(l.bound(IN, Proto::Udp).contains(p));
        assert!(std::net::UdpSocket::bind(("127.0.0.1", p)).is_err(), "we hold it");
        l.sync(IN, &PortSet::new(), &PortSet::new(), &ep, None).unwrap();
        assert!(!l.bound(IN, Proto::Udp).contains(p));
        // A child forked by another test of this binary may hold a copy of
        // the socket for a moment: retry, boundedly.
        let released = (0..100).any(|_| {
            let ok = std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok();
            if !ok {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            ok
        });
        assert!(released, "released");
    }

    #[test]
    fn disabled_protocol_and_family_rules_are_left_out() {
        let t = table(&[(FwdOpt::TcpPorts, "[::1]/10000"), (FwdOpt::UdpPorts, "10001")]);
        let l = Listeners::new(&t, &FwdTable::new(), true, false, true, false);
        assert!(!l.any(IN));
    }

    #[test]
    fn paused_listener_is_silent_until_resumed() {
        let p = free_port();
        let t = table(&[(FwdOpt::TcpPorts, &format!("127.0.0.1/{p}"))]);
        let mut l = Listeners::new(&t, &FwdTable::new(), true, true, true, true);
        let ep = Epoll::new().unwrap();
        l.sync(IN, &PortSet::new(), &PortSet::new(), &ep, None).unwrap();
        let _c = std::net::TcpStream::connect(("127.0.0.1", p)).unwrap();
        let mut ev = [libc::epoll_event { events: 0, u64: 0 }; crate::epoll::EPOLL_EVENTS];
        assert_eq!(ep.wait(&mut ev, 100).unwrap(), 1, "pending connection reported");
        let r = crate::epoll::event_ref(&ev[0]);
        l.pause(&ep, r.fd(), r.data());
        assert!(l.any_paused());
        assert_eq!(ep.wait(&mut ev, 50).unwrap(), 0, "paused: no event");
        l.resume(&ep);
        assert!(!l.any_paused());
        assert_eq!(ep.wait(&mut ev, 100).unwrap(), 1, "resumed: reported again");
        assert_eq!(crate::epoll::event_ref(&ev[0]).data(), listen_ref(IN, 0, p));
    }

    #[test]
    fn resume_leaves_alone_a_new_listener_on_a_paused_fd_number() {
        let (p1, p2) = (free_port(), free_port());
        let t = table(&[(FwdOpt::TcpPorts, &format!("127.0.0.1/{p1},auto")), (FwdOpt::TcpPorts, &format!("127.0.0.1/{p2},auto"))]);
        let mut l = Listeners::new(&t, &FwdTable::new(), true, true, true, true);
        let ep = Epoll::new().unwrap();
        let only = |p: u16| {
            let mut m = PortSet::new();
            m.insert(p);
            m
        };
        l.sync(IN, &only(p1), &PortSet::new(), &ep, None).unwrap();
        let fd1 = l.dirs[IN].socks[0][0].as_ref().unwrap().as_raw_fd();
        l.pause(&ep, fd1, listen_ref(IN, 0, p1));
        // The scan drops p1 and finds p2: the paused socket is closed, and
        // the new one may well get its number (modelled here).
        l.sync(IN, &only(p2), &PortSet::new(), &ep, None).unwrap();
        let fd2 = l.dirs[IN].socks[1][0].as_ref().unwrap().as_raw_fd();
        l.paused[0].0 = fd2;
        l.resume(&ep);
        let _c = std::net::TcpStream::connect(("127.0.0.1", p2)).unwrap();
        let mut ev = [libc::epoll_event { events: 0, u64: 0 }; crate::epoll::EPOLL_EVENTS];
        assert_eq!(ep.wait(&mut ev, 100).unwrap(), 1);
        assert_eq!(crate::epoll::event_ref(&ev[0]).data(), listen_ref(IN, 1, p2), "p2's connections go to p2's rule");
        // An event reported for p1's socket before it was closed names p1's
        // rule with the number now used by p2's socket: not dispatched.
        assert!(l.target(listen_ref(IN, 0, p1), fd2).is_none());
        assert!(l.target(listen_ref(IN, 1, p2), fd2).is_some());
    }
}
