//! # Theory of operation
//!
//! Port forwarding by socket lookup (`passt_ebpf::lookup`, `--ebpf`): an
//! `sk_lookup` program in the namespace where a direction's rules listen
//! (pasta's own for `-t`/`-u`, the target namespace for `-T`/`-U`) hands
//! every connection request and datagram for a forwarded port to one
//! socket per rule, instead of one bound socket per port.
//!
//! [`LookupMaps`] owns the program's three maps: rule slots (protocol,
//! family, address: [`rule_entry`]), one socket per slot (a sockmap), and
//! one 65536-bit port bitmap per slot. [`crate::listen::Listeners`] decides
//! which rules are steered and which ports each one takes; this module
//! only writes them, and only the bitmap words that changed since the
//! last write (a shadow copy of each slot's bitmap is kept).
//!
//! ## Ports that applications hold
//!
//! The program runs before the kernel's own socket lookup, so a port in a
//! bitmap is taken from any application listening on it. The kernel gives
//! the program no way to ask whether a listener exists (the socket lookup
//! helpers are not available to `sk_lookup` programs), so the caller takes
//! out of the bitmaps the ports found listening (TCP) or bound (UDP) by
//! the `/proc/net` scan ([`crate::fwd_scan`]) of the namespace the rule
//! listens in, at start and about once a second. An application that binds
//! a steered port between two scans loses the connections or datagrams
//! that arrive before the next scan (at most about one second).
//!
//! ## Privileges
//!
//! The program is attached by the loader (our privileged child, or the
//! helper), so steered ports need no bind(2) of ours: ports below
//! `net.ipv4.ip_unprivileged_port_start` are steered too, where an
//! unprivileged pasta's per-port sockets could not bind them. Through the
//! helper, pasta's own namespace is asked for only when the helper should
//! allow it (the helper lets no user but root attach to a namespace whose
//! user namespace it doesn't own): pasta compares the namespace's owner
//! with its own uid where it can see it, else asks whether it is root
//! outside ([`outer_uid`]), and asks again without its own namespace if
//! the helper refuses (one refused attachment fails a whole request).
//!
//! Our socket for a rule is bound to an ephemeral port, which a client can
//! reach directly; what arrives there is not for one of the rule's ports
//! and is reset or dropped (counted).
//!
//! ## Limits
//!
//! [`passt_ebpf::lookup::MAX_RULES`] slots, shared by both directions;
//! rules beyond them, rules bound to an interface other than `lo` and
//! rules with explicit ports keep their per-port sockets. A rule on `lo`
//! (all `-T`/`-U` rules) matches packets that arrived on the loopback
//! interface (index 1 in every namespace), as its per-port sockets bound
//! to `lo` would; its one socket is not bound to `lo` itself.
//!
//! Syscalls: bpf (BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM).

use std::os::fd::{AsRawFd, OwnedFd};

use aya::maps::{Array, Map, MapData, SockMap};
use passt_ebpf::lookup::{LookupRule, DIR_IN, DIR_OUT, MAX_RULES, PORTS_MAP, PORT_WORDS, PROG_IN, PROG_OUT, RULES_MAP, SOCKS_MAP};

use super::Attach;
use crate::flow::Inany;
use crate::fwd_rule::{PortSet, Proto};

/// What socket lookup needs: `fwd_lookup_in` on `host` (pasta's own
/// network namespace, for `-t`/`-u`) and `fwd_lookup_out` on `ns` (the
/// target namespace, for `-T`/`-U`), each if given.
pub fn attaches(host: Option<OwnedFd>, ns: Option<OwnedFd>) -> Vec<Attach> {
    let mut v = Vec::new();
    if let Some(netns) = host {
        v.push(Attach::SkLookup { prog: PROG_IN.into(), netns });
    }
    if let Some(netns) = ns {
        v.push(Attach::SkLookup { prog: PROG_OUT.into(), netns });
    }
    v
}

/// The rule slot for sockets of protocol `proto` on `addr` (unspecified:
/// any address of its version; an unspecified IPv6 address that is not
/// `v6only` also covers IPv4, as a dual-stack socket), direction `dir`
/// ([`crate::listen::IN`] or [`crate::listen::OUT`]), for packets that
/// arrived on interface `ifindex` (0: any).
pub fn rule_entry(dir: usize, proto: Proto, addr: Inany, v6only: bool, ifindex: u32) -> LookupRule {
    let protocol = match proto {
        Proto::Tcp => libc::IPPROTO_TCP as u32,
        Proto::Udp => libc::IPPROTO_UDP as u32,
    };
    let mut r = LookupRule {
        active: 1,
        dir: if dir == crate::listen::OUT { DIR_OUT } else { DIR_IN },
        protocol,
        ifindex,
        ..Default::default()
    };
    if let Some(a4) = addr.v4() {
        r.family = libc::AF_INET as u32;
        r.any = u32::from(a4.is_unspecified());
        r.addr[0] = u32::from_ne_bytes(a4.octets());
        return r;
    }
    let a6 = addr.v6();
    r.family = if a6.is_unspecified() && !v6only { 0 } else { libc::AF_INET6 as u32 };
    r.any = u32::from(a6.is_unspecified());
    for (w, b) in r.addr.iter_mut().zip(a6.octets().chunks_exact(4)) {
        *w = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    }
    r
}

/// The uid that `uid` of our user namespace stands for in the parent
/// namespace, from the text of `/proc/self/uid_map` (lines `INSIDE
/// OUTSIDE COUNT`, decimal); `None` if it is not mapped or the text is
/// malformed. In the initial namespace (`0 0 4294967295`) that is `uid`.
pub fn outer_uid(uid_map: &str, uid: u32) -> Option<u32> {
    uid_map.lines().find_map(|l| {
        let mut f = l.split_whitespace().map(str::parse::<u32>);
        let (Some(Ok(inside)), Some(Ok(outside)), Some(Ok(count))) = (f.next(), f.next(), f.next()) else { return None };
        let off = uid.checked_sub(inside).filter(|&o| o < count)?;
        outside.checked_add(off)
    })
}

/// Indices and new values of the words of `new` that differ from `old`.
pub fn changed_words<'a>(old: &'a PortSet, new: &'a PortSet) -> impl Iterator<Item = (u32, u64)> + 'a {
    old.words().iter().zip(new.words().iter()).enumerate().filter(|(_, (o, n))| o != n).map(|(i, (_, &n))| (i as u32, n))
}

/// Why a map update failed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// No rule slot is free.
    #[error("all {MAX_RULES} socket lookup slots are in use")]
    Full,
    /// The kernel refused an update.
    #[error("{map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// aya's error (the bpf(2) errno inside).
        #[source]
        source: aya::maps::MapError,
    },
}

/// The socket lookup program's maps, and what we last wrote into them.
pub struct LookupMaps {
    socks: SockMap<MapData>,
    rules: Array<MapData, LookupRule>,
    ports: Array<MapData, u64>,
    /// Bitmap of each slot as written to the ports map.
    shadow: Vec<PortSet>,
    /// Slots in use.
    used: Vec<bool>,
    /// Bitmap words written since start (for the summary).
    words_written: u64,
}

impl std::fmt::Debug for LookupMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupMaps").field("used", &self.used).finish()
    }
}

impl LookupMaps {
    /// Take the three maps out of `loaded`.
    ///
    /// # Errors
    /// A map is missing or of the wrong type.
    pub fn take(loaded: &mut super::Loaded) -> anyhow::Result<Self> {
        let mut take = |n: &str| loaded.take_map(n).ok_or_else(|| anyhow::anyhow!("no map {n}"));
        let (s, r, p): (Map, Map, Map) = (take(SOCKS_MAP)?, take(RULES_MAP)?, take(PORTS_MAP)?);
        Ok(Self {
            socks: SockMap::try_from(s)?,
            rules: Array::try_from(r)?,
            ports: Array::try_from(p)?,
            shadow: (0..MAX_RULES).map(|_| PortSet::new()).collect(),
            used: vec![false; MAX_RULES as usize],
            words_written: 0,
        })
    }

    /// Reserve a free slot.
    ///
    /// # Errors
    /// [`LookupError::Full`].
    pub fn alloc(&mut self) -> Result<u32, LookupError> {
        let i = self.used.iter().position(|u| !u).ok_or(LookupError::Full)?;
        self.used[i] = true;
        Ok(i as u32)
    }

    /// Put socket `sock` in slot `slot` and make the slot match `entry`;
    /// its port bitmap stays as it is (empty after [`LookupMaps::alloc`]).
    ///
    /// # Errors
    /// [`LookupError::Map`]: the kernel refused the socket (wrong state:
    /// TCP must listen, UDP must be bound and unconnected) or the entry.
    pub fn install(&mut self, slot: u32, entry: LookupRule, sock: &impl AsRawFd) -> Result<(), LookupError> {
        self.socks.set(slot, sock, 0).map_err(|source| LookupError::Map { map: SOCKS_MAP, source })?;
        self.rules.set(slot, entry, 0).map_err(|source| LookupError::Map { map: RULES_MAP, source })
    }

    /// Make the port bitmap of `slot` equal `ports`, writing only the
    /// words that changed. Returns how many were written.
    ///
    /// # Errors
    /// [`LookupError::Map`]; the words written before stay (and the shadow
    /// copy says so).
    pub fn set_ports(&mut self, slot: u32, ports: &PortSet) -> Result<usize, LookupError> {
        let Some(shadow) = self.shadow.get_mut(slot as usize) else { return Err(LookupError::Full) };
        let mut n = 0;
        let changes: Vec<(u32, u64)> = changed_words(shadow, ports).collect();
        for (w, v) in changes {
            self.ports.set(slot * PORT_WORDS + w, v, 0).map_err(|source| LookupError::Map { map: PORTS_MAP, source })?;
            for b in 0..64u16 {
                let p = (w as u16) * 64 + b;
                if v & (1 << b) != 0 {
                    shadow.insert(p);
                } else {
                    shadow.remove(p);
                }
            }
            n += 1;
        }
        self.words_written += n as u64;
        Ok(n)
    }

    /// Empty slot `slot` (rule off, no ports, no socket) and free it.
    pub fn release(&mut self, slot: u32) {
        let _ = self.rules.set(slot, LookupRule::default(), 0);
        let _ = self.set_ports(slot, &PortSet::new());
        let _ = self.socks.clear_index(&slot);
        if let Some(u) = self.used.get_mut(slot as usize) {
            *u = false;
        }
    }

    /// Ports steered by slot `slot`, as last written.
    pub fn ports(&self, slot: u32) -> Option<&PortSet> {
        self.shadow.get(slot as usize)
    }

    /// `ebpf socket lookup: N rules, N ports steered, N map words written`.
    pub fn summary(&self) -> String {
        let ports: usize = self.used.iter().zip(&self.shadow).filter(|(u, _)| **u).map(|(_, s)| s.words().iter().map(|w| w.count_ones() as usize).sum::<usize>()).sum();
        let rules = self.used.iter().filter(|u| **u).count();
        format!("ebpf socket lookup: {rules} rules, {ports} ports steered, {} map words written", self.words_written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn dual_stack_any_matches_both_families() {
        let r = rule_entry(crate::listen::IN, Proto::Tcp, Inany::UNSPEC6, false, 0);
        assert_eq!((r.active, r.dir, r.protocol, r.family, r.any, r.ifindex), (1, DIR_IN, 6, 0, 1, 0));
        let r = rule_entry(crate::listen::OUT, Proto::Udp, Inany::UNSPEC6, true, 1);
        assert_eq!((r.dir, r.protocol, r.family, r.any, r.ifindex), (DIR_OUT, 17, 10, 1, 1));
        let r = rule_entry(crate::listen::IN, Proto::Udp, Inany::UNSPEC4, true, 0);
        assert_eq!((r.family, r.any, r.addr), (2, 1, [0; 4]));
    }

    #[test]
    fn addresses_are_in_network_order_as_the_kernel_keeps_them() {
        let r = rule_entry(crate::listen::IN, Proto::Tcp, Inany::from(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))), true, 0);
        assert_eq!((r.family, r.any), (2, 0));
        assert_eq!(r.addr[0].to_ne_bytes(), [127, 0, 0, 1]);
        assert_eq!(&r.addr[1..], &[0, 0, 0]);
        let r = rule_entry(crate::listen::IN, Proto::Tcp, Inany::from(std::net::IpAddr::V6(Ipv6Addr::LOCALHOST)), true, 0);
        assert_eq!((r.family, r.any), (10, 0));
        assert_eq!(r.addr[3].to_ne_bytes(), [0, 0, 0, 1]);
        assert_eq!(&r.addr[..3], &[0, 0, 0]);
    }

    #[test]
    fn outer_uid_follows_the_map() {
        assert_eq!(outer_uid("         0          0 4294967295\n", 1000), Some(1000));
        assert_eq!(outer_uid("         0       1000          1\n", 0), Some(1000));
        assert_eq!(outer_uid("         0       1000          1\n", 1), None);
        assert_eq!(outer_uid("0 100000 65536\n65536 5 1\n", 65536), Some(5));
        assert_eq!(outer_uid("garbage\n0 x 1\n", 0), None);
        assert_eq!(outer_uid("4294967295 0 4294967295\n", 4294967295), Some(0));
    }

    #[test]
    fn only_changed_words_are_written() {
        let mut old = PortSet::new();
        let mut new = PortSet::new();
        assert_eq!(changed_words(&old, &new).count(), 0);
        new.insert(1);
        new.insert(63);
        new.insert(65535);
        old.insert(65535);
        old.insert(64);
        let c: Vec<_> = changed_words(&old, &new).collect();
        assert_eq!(c, vec![(0, (1 << 1) | (1 << 63)), (1, 0)]);
    }
}
