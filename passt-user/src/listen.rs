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
//! Syscalls: socket, setsockopt (SO_REUSEADDR, IPV6_V6ONLY,
//! SO_BINDTODEVICE), bind, listen, epoll_ctl, close; setns via
//! [`NsSwitch`].

use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::epoll::{Epoll, EpollRef, EpollType};
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
        /// Protocol and address, e.g. "TCP [*]".
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

/// The sockets of one direction: for each rule, one slot per port.
#[derive(Debug, Default)]
struct Dir {
    rules: Vec<FwdRule>,
    socks: Vec<Vec<Option<OwnedFd>>>,
}

/// Every listening socket of both directions.
#[derive(Debug, Default)]
pub struct Listeners {
    dirs: [Dir; 2],
    v4: bool,
    v6: bool,
    /// Listeners taken out of epoll until the next tick: (fd, data word).
    paused: Vec<(std::os::fd::RawFd, u32)>,
}

/// The epoll data word of a listening socket: bit 31 the direction, bits
/// 16..31 the rule index, bits 0..16 the port.
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
    /// The port the socket listens on.
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
            Dir { rules, socks }
        };
        Listeners { dirs: [dir(fwd_in), dir(fwd_out)], v4, v6, paused: Vec::new() }
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
        Some(Target { dir, proto: r.proto, port, to: r.target_port(port)?, taddr: r.taddr.map(Inany::from), data, laddr })
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
        s
    }

    /// (listening port, target port) of every bound TCP listener of
    /// direction `dir`.
    pub fn tcp_forwards(&self, dir: usize) -> Vec<(u16, u16)> {
        let mut v = Vec::new();
        let d = &self.dirs[dir];
        for (r, socks) in d.rules.iter().zip(&d.socks) {
            if r.proto != Proto::Tcp {
                continue;
            }
            for (i, p) in socks.iter().enumerate() {
                let port = r.ports.first().saturating_add(i as u16);
                if let (Some(_), Some(to)) = (p, r.target_port(port)) {
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
        let d = &mut self.dirs[dir];
        for (idx, (r, socks)) in d.rules.iter().zip(d.socks.iter_mut()).enumerate() {
            let map = match r.proto {
                Proto::Tcp => tcp,
                Proto::Udp => udp,
            };
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
                match bind_port(dir, r, port, v4, v6, ns) {
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

/// Bind the socket for `port` of rule `r`: on its address, or on any
/// address (dual-stack if both versions are on), bound to its interface
/// if it names one; for [`OUT`] in the target namespace.
fn bind_port(dir: usize, r: &FwdRule, port: u16, v4: bool, v6: bool, ns: Option<&NsSwitch>) -> std::io::Result<OwnedFd> {
    let ty = match r.proto {
        Proto::Tcp => libc::SOCK_STREAM,
        Proto::Udp => libc::SOCK_DGRAM,
    };
    let (a, v6only) = listen_addr(r, v4, v6);
    if dir == OUT {
        let Some(ns) = ns else { return Err(std::io::ErrorKind::Unsupported.into()) };
        let ifname = r.ifname.clone();
        return ns.in_target(move || bind_one(ty, a, port, ifname.as_deref(), v6only))?;
    }
    bind_one(ty, a, port, r.ifname.as_deref(), v6only)
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

/// One listening socket on `a`:`port` (`v6only` for IPv6 addresses).
fn bind_one(ty: i32, a: Inany, port: u16, ifname: Option<&str>, v6only: bool) -> std::io::Result<OwnedFd> {
    let s = sys::socket(a.is_v4(), ty, 0)?;
    let fd = s.as_raw_fd();
    sys::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
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
        let p = free_port();
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
        assert!(std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok(), "released");
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
