//! # Theory of operation
//!
//! The spliced TCP short-circuit (`passt_ebpf::sockmap`): for a spliced
//! flow, client C -> our accepted socket A -> splice relay -> our socket B
//! -> server S, the `sk_msg` program moves what C (or S) sends straight
//! into the receive queue of S (or C), skipping two TCP stacks and our
//! relay, while the relay keeps carrying everything else: FIN and RST
//! (shutdown and close are not sends), and whatever the program passes.
//!
//! ## Pairing
//! The `sock_ops` program (attached to `--ebpf-cgroup`) inserts sockets
//! that may be C or S into the sockhash when they reach ESTABLISHED:
//! connecting sockets to a port we listen on, accepted sockets on a port
//! we forward to, in our namespace or the target one ([`Sockmap::sync_ports`]
//! keeps `PORTS` in line with the listeners, `auto` rescans included),
//! with a local peer (loopback, or the socket's own address). It also creates the socket's zeroed `STATS`.
//! We don't own C and S, but their keys are those of A and B swapped
//! ([`key_of_peer`]); a flow is paired ([`Sockmap::pair`]) when both
//! have `STATS`, i.e. are in the sockhash, and else stays on splice
//! (counted: processes outside the cgroup, sockets made before the attach,
//! dual-stack sockets seen under another family, peers on other addresses).
//!
//! ## Switching a direction to redirect
//! Direction `d` (sender X, receiver Y) is armed by writing `CTL[X] =
//! {peer: Y, passed_at, redirect_limit}`. The program redirects a send only
//! while `STATS[X].passed == passed_at` and within `redirect_limit`, so
//! any byte that went through TCP after we looked disarms it by itself:
//! arming never races with the sender. We arm only when it can't reorder
//! ([`decide`]): everything X passed reached us (`passed == relayed`),
//! our pipe of that direction is empty, our socket towards Y has nothing
//! unacknowledged (SIOCOUTQ), and Y has read all of it (inet_diag
//! `rqueue`, asked in Y's namespace). Y reads its redirected queue before
//! its TCP queue, so bytes redirected before bytes that then went through
//! TCP are read first; the reverse (new redirected bytes ahead of older
//! TCP bytes) is what the checks exclude.
//!
//! ## Budget
//! The receive queue a redirect fills is not bounded by the receiver's
//! buffer (measured: 1 GiB queued in 3 s behind a stalled reader). So each
//! arming allows [`BUDGET`] bytes. While the direction redirects, we poll
//! the receiver's receive memory (inet_diag SKMEMINFO `rmem_alloc`, which
//! counts redirected bytes not read yet): below half the budget, the limit
//! moves to [`BUDGET`] past what was redirected so far ([`extend`]; same
//! `passed_at`, so no race with the sender either). A receiver that keeps
//! up never sees the budget run out; one that stops reading holds at most
//! 1.5 x [`BUDGET`] redirected bytes, then the sender's bytes go through
//! TCP and our relay, whose backpressure (splice's) applies, and we re-arm
//! only after Y read what passed, which means it also read everything
//! redirected before.
//!
//! ## Re-checks
//! A direction that moved bytes through the relay is re-checked on the
//! fast timer (1 ms, backing off to 64 ms while it stays unsafe), until it
//! is armed again or its sender is done (end of file); an armed direction
//! is polled for [`extend`] the same way (1 ms while it redirects, backing
//! off while idle).
//!
//! ## Limits
//! Sockets in the sockhash that read with splice(2) never see redirected
//! bytes; MSG_ZEROCOPY completions of redirected sends never arrive. One
//! pasta per cgroup: the sockops program is attached in single mode, so a
//! later pasta's replaces an earlier one's, whose new flows then stay on
//! splice (unpaired). Without `--ebpf-cgroup`, the cgroup v2 root
//! ([`super::default_cgroup`]) catches every process of the machine, but only
//! sockets of our two namespaces, on forwarded ports, with local peers,
//! get into the sockhash. `STATS` is an LRU hash, preallocated by the
//! kernel: about 8 MiB for its 65536 entries.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use passt_ebpf::sockmap::*;

use super::Attach;
use crate::flow::Inany;
use crate::sys;

/// Bytes a sender may redirect beyond what its receiver has read: 8 MiB.
/// An armed direction gets this much; while it redirects, the budget is
/// extended ([`extend`]) when the receiver's unread memory is below half
/// of it, so a stalled reader holds at most 1.5 times this more than with
/// splice alone.
pub const BUDGET: u64 = 8 << 20;

/// First re-check delay of a direction waiting to switch back.
const RECHECK_MIN: Duration = Duration::from_millis(1);
/// Longest re-check delay.
const RECHECK_MAX: Duration = Duration::from_millis(64);

/// What the short-circuit needs: sockops on `cgroup`, sk_msg on `SOCKS`.
pub fn attaches(cgroup: &std::path::Path) -> Vec<Attach> {
    vec![
        Attach::SockOps { prog: SOCKOPS_PROG.into(), cgroup: cgroup.to_owned() },
        Attach::SkMsg { prog: SKMSG_PROG.into(), map: SOCKS_MAP.into() },
    ]
}

/// Event counters, printed at exit.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SockmapCounters {
    /// Flows whose end sockets were both found.
    pub paired: u64,
    /// Flows left on splice: an end socket was not in the sockhash.
    pub unpaired: u64,
    /// Directions switched to redirect.
    pub armed: u64,
    /// Of those, switches after bytes of the direction went through the
    /// relay (mid-stream).
    pub armed_mid: u64,
    /// Budget extensions of redirecting directions whose receiver kept up.
    pub extended: u64,
    /// Directions that went back to the relay (budget spent, or bytes sent
    /// while a switch waited).
    pub fallbacks: u64,
    /// Bytes redirected, in flows that ended.
    pub redirected: u64,
    /// Bytes passed through the relay while paired, in flows that ended.
    pub passed: u64,
    /// Failed map or diag operations (the direction stays on splice).
    pub errors: u64,
}

/// One spliced flow's short-circuit state, kept in the flow.
#[derive(Debug, Clone)]
pub struct Pair {
    /// Sender key of each relay direction `d` (from `socks[d]` to
    /// `socks[1 - d]`): the peer of `socks[d]`.
    keys: [SockKey; 2],
    /// Namespace index (`NETNS_HOST`/`NETNS_NS`) of each end.
    ns: [usize; 2],
    /// `passed_at` of the current arming of each direction.
    armed: [Option<u64>; 2],
    /// `redirect_limit` of the current arming of each direction.
    limit: [u64; 2],
    /// `FlowStats::redirected` of each direction at the last check.
    seen: [u64; 2],
    /// Direction `d` is done (its sender sent its FIN, or failed).
    done: [bool; 2],
    /// Next re-check, if queued.
    check_at: Option<Instant>,
    /// Delay before the next re-check.
    backoff: Duration,
}

impl Pair {
    /// When the flow's queued re-check is due, if one is.
    pub fn check_at(&self) -> Option<Instant> {
        self.check_at
    }
}

/// What [`decide`] looks at for one direction, gathered in this order
/// (each check only means something once the ones before it held).
#[derive(Debug, Clone, Copy, Default)]
pub struct DirSnapshot {
    /// The sender's counters.
    pub stats: FlowStats,
    /// `passed_at` of the current arming, if armed before.
    pub armed_at: Option<u64>,
    /// Bytes we read from our socket facing the sender.
    pub relayed: u64,
    /// Bytes of this direction in our pipe.
    pub pipe: usize,
    /// Unacknowledged bytes in our socket facing the receiver (SIOCOUTQ).
    pub outq: u32,
    /// Bytes the receiver got through TCP and has not read.
    pub rqueue: u32,
}

/// What to do with one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Armed and nothing passed since: leave it.
    Redirecting,
    /// Safe to switch: arm with these values.
    Arm {
        /// `FlowCtl::passed_at`.
        passed_at: u64,
        /// `FlowCtl::redirect_limit`.
        redirect_limit: u64,
    },
    /// Not safe yet: check again later.
    Wait(WaitReason),
    /// The counters can't be trusted (more relayed than the sender
    /// passed: its `STATS` were recreated): stay on splice for good.
    Never,
}

/// Why a direction can't switch yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// The sender passed bytes we haven't read yet.
    InFlight,
    /// Bytes wait in our pipe.
    Pipe,
    /// The receiver hasn't acknowledged all we wrote.
    Unacked,
    /// The receiver hasn't read all it got.
    Unread,
}

/// Decide whether direction `s` may switch to redirect (see the module
/// documentation), with `budget` bytes. Pure.
pub fn decide(s: &DirSnapshot, budget: u64) -> Verdict {
    if s.armed_at == Some(s.stats.passed) {
        return Verdict::Redirecting;
    }
    if s.relayed > s.stats.passed {
        return Verdict::Never;
    }
    if s.relayed < s.stats.passed {
        return Verdict::Wait(WaitReason::InFlight);
    }
    if s.pipe > 0 {
        return Verdict::Wait(WaitReason::Pipe);
    }
    if s.outq > 0 {
        return Verdict::Wait(WaitReason::Unacked);
    }
    if s.rqueue > 0 {
        return Verdict::Wait(WaitReason::Unread);
    }
    Verdict::Arm { passed_at: s.stats.passed, redirect_limit: s.stats.redirected.saturating_add(budget) }
}

/// The new `redirect_limit` of a redirecting direction whose receiver
/// holds `rmem` bytes of receive memory (redirected bytes it hasn't read
/// included): `budget` past what was redirected so far if `rmem` is under
/// half the budget, else `None` (let the budget run out). Pure.
pub fn extend(stats: &FlowStats, rmem: u32, budget: u64) -> Option<u64> {
    (u64::from(rmem) < budget / 2).then(|| stats.redirected.saturating_add(budget))
}

/// The key a socket `laddr`:`lport` connected to `raddr`:`rport` in
/// namespace `netns` has in the maps, as the programs compute it: IPv4
/// addresses as `AF_INET` unless `mapped` (an `AF_INET6` socket talking
/// IPv4, with `::ffff:a.b.c.d` addresses).
pub fn key(netns: u64, laddr: Inany, lport: u16, raddr: Inany, rport: u16, mapped: bool) -> SockKey {
    let words = |a: Inany| -> [u32; 4] {
        match a.v4() {
            Some(v4) if !mapped => [u32::from_ne_bytes(v4.octets()), 0, 0, 0],
            _ => {
                let b = a.0;
                [0, 4, 8, 12].map(|i| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]))
            }
        }
    };
    let family = if laddr.v4().is_some() && !mapped { libc::AF_INET } else { libc::AF_INET6 } as u32;
    SockKey { netns, laddr: words(laddr), raddr: words(raddr), lport: lport.into(), rport: rport.into(), family, pad: 0 }
}

/// The key of the peer of our connected socket `fd` in namespace `netns`
/// (its 4-tuple swapped), IPv4 as `AF_INET` or as mapped (see [`key`]).
///
/// # Errors
/// getsockname/getpeername errors.
pub fn key_of_peer(fd: RawFd, netns: u64, mapped: bool) -> std::io::Result<SockKey> {
    let (la, lp) = sys::local_addr(fd)?;
    let (ra, rp) = sys::peer_addr(fd)?;
    Ok(key(netns, ra, rp, la, lp, mapped))
}

/// The short-circuit's maps and state in a running pasta.
pub struct Sockmap {
    ctl: HashMap<MapData, SockKey, FlowCtl>,
    stats: HashMap<MapData, SockKey, FlowStats>,
    ports: Array<MapData, u8>,
    errors: PerCpuArray<MapData, u64>,
    /// What `ports` holds (65536 entries).
    ports_now: Vec<u8>,
    /// Namespace cookies: [`NETNS_HOST`], [`NETNS_NS`].
    netns: [u64; 2],
    /// inet_diag sockets in each namespace.
    diag: [OwnedFd; 2],
    diag_seq: u32,
    /// Flows (indices) with a re-check queued.
    pub waiting: Vec<u32>,
    /// Counters.
    pub counters: SockmapCounters,
}

impl std::fmt::Debug for Sockmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sockmap").field("netns", &self.netns).field("counters", &self.counters).finish()
    }
}

fn take<T>(loaded: &mut super::Loaded, name: &str) -> Result<T, String>
where
    T: TryFrom<Map>,
    <T as TryFrom<Map>>::Error: std::fmt::Display,
{
    let m = loaded.take_map(name).ok_or_else(|| format!("no {name} map"))?;
    T::try_from(m).map_err(|e| format!("map {name}: {e}"))
}

impl Sockmap {
    /// From the loaded maps, with `host` a socket of our namespace and
    /// `ns_diag`/`ns_sock` an inet_diag socket and any socket of the target
    /// namespace. Writes the namespace cookies (no port is a candidate
    /// yet: see [`Sockmap::sync_ports`]).
    ///
    /// # Errors
    /// Missing or mistyped maps, SO_NETNS_COOKIE or socket errors, as one
    /// line.
    ///
    /// Syscalls: socket, getsockopt, bpf.
    pub fn new(loaded: &mut super::Loaded, host: RawFd, ns_sock: RawFd, ns_diag: OwnedFd) -> Result<Self, String> {
        let mut netns_map: Array<MapData, u64> = take(loaded, NETNS_MAP)?;
        let cookie = |fd| sys::netns_cookie(fd).map_err(|e| format!("SO_NETNS_COOKIE: {e}"));
        let netns = [cookie(host)?, cookie(ns_sock)?];
        for (i, c) in netns.iter().enumerate() {
            netns_map.set(i as u32, *c, 0).map_err(|e| format!("map {NETNS_MAP}: {e}"))?;
        }
        let host_diag = crate::fwd_scan::sock_diag_socket().map_err(|e| format!("inet_diag socket: {e}"))?;
        Ok(Self {
            ctl: take(loaded, CTL_MAP)?,
            stats: take(loaded, STATS_MAP)?,
            ports: take(loaded, PORTS_MAP)?,
            errors: take(loaded, ERRORS_MAP)?,
            ports_now: vec![0; 65536],
            netns,
            diag: [host_diag, ns_diag],
            diag_seq: 0,
            waiting: Vec::new(),
            counters: SockmapCounters::default(),
        })
    }

    /// Make `PORTS` say which ports may carry spliced flows: `fwd_in` and
    /// `fwd_out` are (listening port, target port) pairs of the TCP
    /// listeners of `-t` (listening here, target in the namespace) and
    /// `-T` (the other way). Only changed entries are written.
    ///
    /// Syscalls: bpf.
    pub fn sync_ports(&mut self, fwd_in: &[(u16, u16)], fwd_out: &[(u16, u16)]) {
        let mut want = vec![0u8; 65536];
        for &(l, t) in fwd_in {
            want[usize::from(l)] |= PORT_HOST_CLIENT;
            want[usize::from(t)] |= PORT_NS_SERVER;
        }
        for &(l, t) in fwd_out {
            want[usize::from(l)] |= PORT_NS_CLIENT;
            want[usize::from(t)] |= PORT_HOST_SERVER;
        }
        for (port, (w, now)) in want.iter().zip(self.ports_now.iter_mut()).enumerate() {
            if w != now {
                if self.ports.set(port as u32, *w, 0).is_ok() {
                    *now = *w;
                } else {
                    self.counters.errors += 1;
                }
            }
        }
    }

    /// Namespace index of socket `fd`, by its cookie.
    fn ns_of(&self, fd: RawFd) -> Option<usize> {
        let c = sys::netns_cookie(fd).ok()?;
        self.netns.iter().position(|&n| n == c)
    }

    /// The key of the peer of `fd` under which the sockops program
    /// inserted it, if it did (`AF_INET`, else mapped).
    fn find_peer(&self, fd: RawFd, netns: u64) -> Option<SockKey> {
        for mapped in [false, true] {
            let k = key_of_peer(fd, netns, mapped).ok()?;
            if self.stats.get(&k, 0).is_ok() {
                return Some(k);
            }
            if k.family == libc::AF_INET6 as u32 {
                break;
            }
        }
        None
    }

    /// Pair a spliced flow whose sockets are `socks` (ours, connected):
    /// `Some` if both peers are in the sockhash (counted either way).
    pub fn pair(&mut self, socks: [RawFd; 2]) -> Option<Pair> {
        let found = (|| {
            let ns = [self.ns_of(socks[0])?, self.ns_of(socks[1])?];
            let k0 = self.find_peer(socks[0], self.netns[ns[0]])?;
            let k1 = self.find_peer(socks[1], self.netns[ns[1]])?;
            Some(Pair {
                keys: [k0, k1],
                ns,
                armed: [None; 2],
                limit: [0; 2],
                seen: [0; 2],
                done: [false; 2],
                check_at: None,
                backoff: RECHECK_MIN,
            })
        })();
        match found {
            Some(_) => self.counters.paired += 1,
            None => self.counters.unpaired += 1,
        }
        found
    }

    /// (unread bytes of the TCP receive queue, receive memory) of end
    /// `key` in namespace `ns`.
    fn queues(&mut self, ns: usize, k: &SockKey) -> std::io::Result<(u32, u32)> {
        self.diag_seq = self.diag_seq.wrapping_add(1);
        let lport = u16::try_from(k.lport).unwrap_or(0);
        let rport = u16::try_from(k.rport).unwrap_or(0);
        let fd = self.diag[ns].as_raw_fd();
        match crate::fwd_scan::tcp_diag_queues(fd, k.family as u8, k.laddr, lport, k.raddr, rport, self.diag_seq)? {
            Some(q) => Ok(q),
            None => Err(std::io::ErrorKind::NotFound.into()),
        }
    }

    /// Re-check direction `d` of `pair`: arm it if safe, or extend the
    /// budget of an armed one if its receiver keeps up. `relayed` is what
    /// we read from `socks[d]`, `pipe` what waits in its pipe, `to` our
    /// socket facing the receiver, `eof` whether the sender is done.
    /// Returns whether to check again (`None`: no), and if so whether the
    /// direction was busy (`Some(true)`: soon).
    ///
    /// Syscalls: bpf, ioctl (SIOCOUTQ), sendto, recvfrom.
    pub fn check_dir(&mut self, pair: &mut Pair, d: usize, relayed: u64, pipe: usize, to: RawFd, eof: bool) -> Option<bool> {
        if pair.done[d] {
            return None;
        }
        if eof {
            pair.done[d] = true;
            return None;
        }
        let (x, y) = (pair.keys[d], pair.keys[1 - d]);
        let Ok(stats) = self.stats.get(&x, 0) else {
            // Its entry is gone (aged out): nothing to do.
            pair.done[d] = true;
            return None;
        };
        let busy = stats.redirected != pair.seen[d];
        pair.seen[d] = stats.redirected;
        let mut s = DirSnapshot { stats, armed_at: pair.armed[d], relayed, pipe, outq: 0, rqueue: 0 };
        match decide(&s, BUDGET) {
            Verdict::Redirecting => {
                if pair.limit[d].saturating_sub(stats.redirected) >= BUDGET * 3 / 4 {
                    return Some(busy);
                }
                let rmem = match self.queues(pair.ns[1 - d], &y) {
                    Ok((_, rmem)) => rmem,
                    Err(e) => {
                        log::debug!("ebpf sockmap: inet_diag: {e}");
                        self.counters.errors += 1;
                        return Some(false);
                    }
                };
                if let (Some(passed_at), Some(limit)) = (pair.armed[d], extend(&stats, rmem, BUDGET)) {
                    if self.ctl.insert(x, FlowCtl { peer: y, passed_at, redirect_limit: limit }, 0).is_ok() {
                        pair.limit[d] = limit;
                        self.counters.extended += 1;
                    } else {
                        self.counters.errors += 1;
                    }
                }
                return Some(busy);
            }
            v @ (Verdict::Never | Verdict::Wait(WaitReason::InFlight | WaitReason::Pipe)) => {
                return self.apply(pair, d, v, x, y).then_some(false);
            }
            _ => {}
        }
        s.outq = match sys::outq(to) {
            Ok(q) => q,
            Err(_) => {
                self.counters.errors += 1;
                return Some(false);
            }
        };
        if s.outq == 0 {
            s.rqueue = match self.queues(pair.ns[1 - d], &y) {
                Ok((q, _)) => q,
                Err(e) => {
                    log::debug!("ebpf sockmap: inet_diag: {e}");
                    self.counters.errors += 1;
                    return Some(false);
                }
            };
        }
        let v = decide(&s, BUDGET);
        let armed_now = matches!(v, Verdict::Arm { .. });
        if self.apply(pair, d, v, x, y) {
            return Some(false);
        }
        // An armed direction is polled for budget extensions.
        pair.armed[d].map(|_| armed_now)
    }

    fn apply(&mut self, pair: &mut Pair, d: usize, v: Verdict, x: SockKey, y: SockKey) -> bool {
        match v {
            Verdict::Redirecting => false,
            Verdict::Never => {
                pair.done[d] = true;
                false
            }
            Verdict::Wait(_) => {
                if pair.armed[d].is_some() {
                    // It was armed, and bytes went through TCP since.
                    pair.armed[d] = None;
                    self.counters.fallbacks += 1;
                }
                true
            }
            Verdict::Arm { passed_at, redirect_limit } => {
                if pair.armed[d].is_some() {
                    self.counters.fallbacks += 1;
                }
                match self.ctl.insert(x, FlowCtl { peer: y, passed_at, redirect_limit }, 0) {
                    Ok(()) => {
                        pair.armed[d] = Some(passed_at);
                        pair.limit[d] = redirect_limit;
                        self.counters.armed += 1;
                        if passed_at > 0 {
                            self.counters.armed_mid += 1;
                        }
                        false
                    }
                    Err(e) => {
                        log::debug!("ebpf sockmap: CTL: {e}");
                        self.counters.errors += 1;
                        pair.armed[d] = None;
                        true
                    }
                }
            }
        }
    }

    /// Queue flow `idx` for a re-check at `now` + its backoff (doubling
    /// each time, up to 64 ms; `reset` starts again at 1 ms). Returns when
    /// it is due.
    pub fn queue(&mut self, pair: &mut Pair, idx: usize, now: Instant, reset: bool) -> Instant {
        if reset {
            pair.backoff = RECHECK_MIN;
        }
        if let Some(at) = pair.check_at {
            if reset && at > now + pair.backoff {
                pair.check_at = Some(now + pair.backoff);
            }
            return pair.check_at.unwrap_or(now);
        }
        let at = now + pair.backoff;
        pair.backoff = (pair.backoff * 2).min(RECHECK_MAX);
        pair.check_at = Some(at);
        self.waiting.push(idx as u32);
        at
    }

    /// The flow's re-check is due at `now` (taken off the queue by the
    /// caller's scan).
    pub fn due(pair: &Pair, now: Instant) -> bool {
        pair.check_at.is_some_and(|t| t <= now)
    }

    /// A queued re-check ran.
    pub fn ran(pair: &mut Pair) {
        pair.check_at = None;
    }

    /// The flow ends: forget its entries, add its byte counts. Returns the
    /// flow's (redirected, passed) bytes, both directions.
    ///
    /// Syscalls: bpf.
    pub fn unpair(&mut self, pair: &Pair) -> (u64, u64) {
        let (mut redirected, mut passed) = (0, 0);
        for k in &pair.keys {
            let _ = self.ctl.remove(k);
            if let Ok(s) = self.stats.get(k, 0) {
                redirected += s.redirected;
                passed += s.passed;
            }
            let _ = self.stats.remove(k);
        }
        self.counters.redirected += redirected;
        self.counters.passed += passed;
        (redirected, passed)
    }

    /// The programs' error counters: (insert failed, STATS full, redirect
    /// without peer).
    pub fn prog_errors(&self) -> [u64; ERR_COUNT as usize] {
        let mut out = [0; ERR_COUNT as usize];
        for (i, o) in out.iter_mut().enumerate() {
            if let Ok(v) = self.errors.get(&(i as u32), 0) {
                *o = v.iter().sum();
            }
        }
        out
    }
}

impl std::fmt::Display for Sockmap {
    /// `ebpf sockmap: paired N unpaired N switches N mid-stream N
    /// extensions N fallbacks N redirected-bytes N passed-bytes N errors N prog-errors
    /// I/S/R`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.counters;
        let [i, s, r] = self.prog_errors();
        write!(
            f,
            "ebpf sockmap: paired {} unpaired {} switches {} mid-stream {} extensions {} fallbacks {} redirected-bytes {} passed-bytes {} errors {} prog-errors {i}/{s}/{r}",
            c.paired, c.unpaired, c.armed, c.armed_mid, c.extended, c.fallbacks, c.redirected, c.passed, c.errors
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(passed: u64, redirected: u64, armed_at: Option<u64>, relayed: u64) -> DirSnapshot {
        DirSnapshot { stats: FlowStats { passed, redirected }, armed_at, relayed, ..DirSnapshot::default() }
    }

    #[test]
    fn first_arming_needs_everything_relayed_acked_and_read() {
        let s = snap(1000, 0, None, 1000);
        assert_eq!(decide(&s, BUDGET), Verdict::Arm { passed_at: 1000, redirect_limit: BUDGET });
        assert_eq!(decide(&snap(1000, 0, None, 900), BUDGET), Verdict::Wait(WaitReason::InFlight));
        assert_eq!(decide(&DirSnapshot { pipe: 1, ..s }, BUDGET), Verdict::Wait(WaitReason::Pipe));
        assert_eq!(decide(&DirSnapshot { outq: 5, ..s }, BUDGET), Verdict::Wait(WaitReason::Unacked));
        assert_eq!(decide(&DirSnapshot { rqueue: 5, ..s }, BUDGET), Verdict::Wait(WaitReason::Unread));
    }

    #[test]
    fn armed_direction_with_nothing_passed_since_is_left_alone() {
        assert_eq!(decide(&snap(1000, 300, Some(1000), 1000), BUDGET), Verdict::Redirecting);
        // Even with the receiver's TCP queue not empty: it holds nothing
        // newer than the redirected bytes.
        let s = DirSnapshot { rqueue: 7, ..snap(1000, 300, Some(1000), 1000) };
        assert_eq!(decide(&s, BUDGET), Verdict::Redirecting);
    }

    #[test]
    fn budget_spent_rearms_from_the_redirected_count_once_passed_bytes_are_read() {
        let s = snap(1000 + 64, 4 << 20, Some(1000), 1000);
        assert_eq!(decide(&s, 1 << 20), Verdict::Wait(WaitReason::InFlight), "64 passed bytes not relayed yet");
        let s = snap(1064, 4 << 20, Some(1000), 1064);
        assert_eq!(decide(&s, 1 << 20), Verdict::Arm { passed_at: 1064, redirect_limit: (4 << 20) + (1 << 20) });
    }

    #[test]
    fn budget_extends_only_while_the_receiver_keeps_up() {
        let st = FlowStats { passed: 10, redirected: 5 << 20 };
        assert_eq!(extend(&st, 1 << 20, 8 << 20), Some(13 << 20));
        assert_eq!(extend(&st, 4 << 20, 8 << 20), None, "half the budget unread: let it run out");
        assert_eq!(extend(&FlowStats { passed: 0, redirected: u64::MAX }, 0, 8), Some(u64::MAX));
    }

    #[test]
    fn more_relayed_than_passed_means_lost_counters_and_stays_on_splice() {
        assert_eq!(decide(&snap(10, 0, None, 20), BUDGET), Verdict::Never);
    }

    #[test]
    fn limit_saturates() {
        let s = snap(0, u64::MAX - 1, None, 0);
        assert_eq!(decide(&s, BUDGET), Verdict::Arm { passed_at: 0, redirect_limit: u64::MAX });
    }

    #[test]
    fn keys_swap_the_tuple_and_match_the_kernel_layout() {
        let lo: Inany = std::net::Ipv4Addr::new(127, 0, 0, 1).into();
        let k = key(7, lo, 40000, lo, 80, false);
        assert_eq!(k.family, 2);
        assert_eq!(k.laddr, [u32::from_ne_bytes([127, 0, 0, 1]), 0, 0, 0]);
        assert_eq!((k.lport, k.rport, k.netns), (40000, 80, 7));
        let m = key(7, lo, 40000, lo, 80, true);
        assert_eq!(m.family, 10);
        assert_eq!(m.raddr, [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), u32::from_ne_bytes([127, 0, 0, 1])]);
        // A connected pair: the peer's key seen from our socket.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        let cookie = sys::netns_cookie(a.as_raw_fd()).unwrap();
        let pk = key_of_peer(a.as_raw_fd(), cookie, false).unwrap();
        let cl = c.local_addr().unwrap();
        assert_eq!((pk.lport, pk.rport), (u32::from(cl.port()), u32::from(l.local_addr().unwrap().port())));
    }

    #[test]
    fn inet_diag_finds_unread_bytes_of_a_socket() {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        c.write_all(&[1u8; 1000]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let diag = crate::fwd_scan::sock_diag_socket().unwrap();
        // The accepted socket's own view: local = listener address.
        let k = key_of_peer(c.as_raw_fd(), 0, false).unwrap();
        let (lp, rp) = (k.lport as u16, k.rport as u16);
        let q = crate::fwd_scan::tcp_diag_queues(diag.as_raw_fd(), 2, k.laddr, lp, k.raddr, rp, 1).unwrap();
        let (rq, rmem) = q.unwrap();
        assert_eq!(rq, 1000);
        assert!(rmem >= 1000, "receive memory {rmem} counts the unread bytes");
        drop(a);
        let none = crate::fwd_scan::tcp_diag_queues(diag.as_raw_fd(), 2, k.laddr, 1, k.raddr, 1, 2).unwrap();
        assert_eq!(none, None);
    }
}
