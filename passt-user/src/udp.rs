//! # Theory of operation
//!
//! UDP from the guest or namespace, without a UDP stack: each (guest
//! address/port, destination address/port) is a flow with its own host
//! socket, connected to the destination chosen by [`crate::fwd`], so the
//! kernel matches replies to the flow for us. Datagrams from the tap are
//! sent with send(2); replies are read in batches with recvmmsg(2) straight
//! into transmit slots, and the UDP, IP and Ethernet headers are written in
//! front of them (no copy). A flow idle for [`UDP_TIMEOUT`] is closed.
//!
//! The tap side of a flow keeps the addresses the guest used, so replies
//! go back with the source the guest expects even when the host side was
//! translated (gateway to loopback, DNS forwarding).
//!
//! Consecutive datagrams of one flow and size in one tap batch go as one
//! sendmsg(2) with UDP_SEGMENT ([`Stage`]).
//!
//! Syscalls: socket, bind, connect, send, sendmsg, recvmmsg, getsockopt, close.

use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::daemon::Ctx;
use std::os::fd::{OwnedFd, RawFd};
use std::time::Instant;

use crate::epoll::{EpollRef, EpollType};
use crate::flow::{FlowData, FlowSide, Inany, Pif, Proto, Sidx, INI, TGT};
use crate::fwd::Fwd;
use crate::listen::{Target, OUT};
use crate::fwd::L4;
use crate::limits::{self, Refusal};
use crate::sys;
use crate::tap::{GsoType, Offload, SLOT};
use crate::wire::{csum, frame};

/// Idle timeout of a UDP flow (upstream uses 180 s).
pub const UDP_TIMEOUT: Duration = Duration::from_secs(180);

const IPPROTO_UDP: u8 = 17;
const UDP_HDR: usize = 8;

/// Handle one datagram from the tap: `src`:`sport` (the guest) to
/// `dst`:`dport`, with `payload` the UDP payload (length already checked
/// against the UDP and IP headers by the caller).
///
/// # Errors
/// The datagram starts a new flow that was refused (counted):
/// [`Refusal::Prohibited`] when out of flow slots or descriptors, for the
/// caller to answer with an ICMP error ([`crate::limits`]).
pub fn from_tap(ctx: &mut Ctx, src: Inany, dst: Inany, sport: u16, dport: u16, payload: &[u8]) -> Result<(), Refusal> {
    let ini = FlowSide { eaddr: src, eport: sport, oaddr: dst, oport: dport };
    let (fd, _) = ctx.tap_sock_flow(Proto::Udp, ini, open_flow)?;
    if ctx.in_batch && ctx.udp_stage.pinned {
        if !ctx.udp_stage.joins(fd, payload.len()) {
            flush_stage(ctx);
        }
        if ctx.udp_stage.joins(fd, payload.len()) || ctx.udp_stage.starts(payload.len()) {
            ctx.udp_stage.push(fd, payload);
            return Ok(());
        }
    }
    match sys::send(fd, payload, None) {
        Ok(_) => {}
        Err(e) => {
            ctx.counters.drop_host_send += 1;
            log::trace!("UDP: send to host failed: {e}");
        }
    }
    Ok(())
}

/// Most datagrams one [`flush_stage`] sends (udp(7): UDP_MAX_SEGMENTS).
pub const STAGE_SEGS: usize = 64;

/// Most payload bytes one [`flush_stage`] sends: what one IPv6 packet of
/// 64 KiB holds after its headers, rounded down.
const STAGE_MAX: usize = 65000;

/// Datagrams of one flow from a tap batch, all of one size but the last,
/// which may be shorter: sent to the host with one sendmsg(2) carrying a
/// UDP_SEGMENT control message ([`sys::send_udp_gso`]), so the host's
/// stack handles them as one send instead of one per datagram. Only used
/// while the tap batch is pinned ([`Stage::pin`]): the iovecs point at
/// the payloads in the batch, no copy. Kept apart: zero-length datagrams,
/// and every datagram outside a pinned batch (sent at once, as before).
/// If the kernel refuses the segmentation (EIO, EINVAL...), the datagrams
/// go one by one and `udp_gso_fallbacks` counts it.
#[derive(Debug)]
pub struct Stage {
    /// Connected socket of the flow staged for (valid: flows are freed
    /// only after the epoll cycle, the stage is flushed within it).
    fd: RawFd,
    /// The payloads, in order.
    iov: Vec<libc::iovec>,
    /// Size of the first datagram: the segment size.
    size: usize,
    /// Total bytes staged.
    len: usize,
    /// A shorter datagram was staged: it must be the last.
    closed: bool,
    /// Payload slices given to [`Stage::push`] outlive the next flush.
    pinned: bool,
}

// SAFETY: empty whenever a Ctx changes thread (filled and flushed within
// one tap batch); the iovecs only point into that batch.
unsafe impl Send for Stage {}

impl Stage {
    /// An empty stage with room for [`STAGE_SEGS`] iovecs.
    pub fn new() -> Self {
        Stage { fd: -1, iov: Vec::with_capacity(STAGE_SEGS), size: 0, len: 0, closed: false, pinned: false }
    }

    /// See [`crate::tcp::io::Stage::pin`].
    ///
    /// # Safety
    /// With `on`, the caller must call [`flush_stage`] before the memory of
    /// any payload pushed meanwhile is written, moved or freed.
    pub unsafe fn pin(&mut self, on: bool) {
        debug_assert!(on || self.iov.is_empty());
        self.pinned = on;
    }

    /// Whether a datagram of `dlen` bytes to `fd` joins what is staged.
    fn joins(&self, fd: RawFd, dlen: usize) -> bool {
        !self.iov.is_empty()
            && fd == self.fd
            && !self.closed
            && dlen > 0
            && dlen <= self.size
            && self.iov.len() < STAGE_SEGS
            && self.len + dlen <= STAGE_MAX
    }

    /// Whether a datagram of `dlen` bytes can start an empty stage.
    fn starts(&self, dlen: usize) -> bool {
        self.iov.is_empty() && dlen > 0 && dlen <= STAGE_MAX && dlen <= usize::from(u16::MAX)
    }

    /// Stage `data` for `fd` (checked with [`Stage::joins`] or
    /// [`Stage::starts`]).
    fn push(&mut self, fd: RawFd, data: &[u8]) {
        if self.iov.is_empty() {
            self.fd = fd;
            self.size = data.len();
        } else if data.len() < self.size {
            self.closed = true;
        }
        self.len += data.len();
        self.iov.push(libc::iovec { iov_base: data.as_ptr().cast_mut().cast(), iov_len: data.len() });
    }

    fn clear(&mut self) {
        self.iov.clear();
        self.len = 0;
        self.closed = false;
    }
}

impl Default for Stage {
    fn default() -> Self {
        Self::new()
    }
}

/// Send what is staged (see [`Stage`]): one datagram with send(2), more
/// with one UDP_SEGMENT sendmsg(2), or one by one if the kernel refuses
/// that. Datagrams the socket does not take are counted in
/// `drop_host_send`, as single sends are.
pub fn flush_stage(ctx: &mut Ctx) {
    let st = &mut ctx.udp_stage;
    let n = st.iov.len();
    if n == 0 {
        return;
    }
    let fd = st.fd;
    // SAFETY (both sends): the iovecs point into the pinned tap batch
    // (Stage::pin).
    let r = if n == 1 { unsafe { sys::send_iov(fd, &st.iov) } } else { unsafe { sys::send_udp_gso(fd, &st.iov, st.size as u16) } };
    let c = &mut ctx.counters;
    match r {
        Ok(_) if n > 1 => {
            c.udp_gso_sends += 1;
            c.udp_gso_segs += n as u64;
        }
        Ok(_) => {}
        Err(e) if n > 1 && matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)) => {
            c.udp_gso_fallbacks += 1;
            log::debug!("UDP: UDP_SEGMENT send of {n} datagrams refused ({e}): one by one");
            for v in &st.iov {
                // SAFETY: as above.
                if unsafe { sys::send_iov(fd, std::slice::from_ref(v)) }.is_err() {
                    c.drop_host_send += 1;
                }
            }
        }
        Err(e) => {
            c.drop_host_send += n as u64;
            log::trace!("UDP: send to host failed: {e}");
        }
    }
    st.clear();
}

fn open_flow(ctx: &mut Ctx, ini: FlowSide) -> Result<Sidx, Refusal> {
    let Some(eaddr) = ctx.fwd.from_tap(L4::Udp, ini.oaddr, ini.oport) else {
        ctx.counters.drop_addr += 1;
        return Err(Refusal::Dropped);
    };
    if ctx.flows.is_full() {
        ctx.counters.drop_flow_table_full += 1;
        return Err(Refusal::Prohibited);
    }
    let v4 = eaddr.is_v4();
    let sock = match sys::socket(v4, libc::SOCK_DGRAM, 0) {
        Ok(s) => s,
        Err(e) if limits::out_of_fds(&e) => {
            ctx.counters.drop_no_fds += 1;
            log::debug!("UDP: socket: {e}");
            return Err(Refusal::Prohibited);
        }
        Err(e) => {
            ctx.counters.drop_socket += 1;
            log::debug!("UDP: socket: {e}");
            return Err(Refusal::Dropped);
        }
    };
    let fd = sock.as_raw_fd();
    let bound = match ctx.fwd.outbound(v4) {
        Some(o) if !eaddr.is_loopback() => sys::bind(fd, o, 0),
        _ => Ok(()),
    };
    let bound = ctx.fwd.bind_outbound_if(fd, v4, eaddr).and(bound);
    if let Err(e) = bound.and_then(|()| sys::connect(fd, eaddr, ini.oport)) {
        ctx.counters.drop_socket += 1;
        log::debug!("UDP: connect to {eaddr}:{}: {e}", ini.oport);
        return Err(Refusal::Dropped);
    }
    let (oaddr, oport) = sys::local_addr(fd).unwrap_or((Inany::UNSPEC4, 0));
    let tgt = FlowSide { eaddr, eport: ini.oport, oaddr, oport };
    let s = ctx.new_sock_flow(Proto::Udp, [Pif::Tap, Pif::Host], [ini, tgt], sock, FlowData::Udp).ok_or(Refusal::Dropped)?;
    ctx.counters.udp_flows += 1;
    log::debug!("UDP flow {}: {}:{} -> {}:{} via {eaddr}", s.flow(), ini.eaddr, ini.eport, ini.oaddr, ini.oport);
    Ok(s)
}

/// The host socket of flow side `sidx` is readable (or has an error):
/// move queued datagrams to the tap, in batches of free transmit slots.
pub fn sock_ready(ctx: &mut Ctx, sidx: Sidx, events: u32) {
    let Some(f) = ctx.flows.get(sidx.flow()) else { return };
    let ts = f.tap_side();
    let FlowData::Udp(sf) = &f.data else { return };
    if sidx.side() == ts {
        return;
    }
    let fd = sf.sock.as_raw_fd();
    let label = sf.flow_label;
    let tap = f.side[ts];
    if events & libc::EPOLLERR as u32 != 0 {
        // ICMP errors (port unreachable...) on a connected socket: clear them.
        let err = sys::take_error(fd);
        log::trace!("UDP flow {}: socket error {err}", sidx.flow());
    }
    let mut out = [sys::Datagram { len: 0, truncated: false, from: None }; 64];
    let mut moved = false;
    // Bounded: at most 16 batches per wakeup, then back to epoll (level
    // triggered, so the rest is picked up on the next cycle).
    for _ in 0..16 {
        if ctx.tx.is_full() {
            ctx.flush_tx();
        }
        let room = ctx.tx.room();
        let bufs = ctx.tx.free_slots().map(|s| &mut s[frame::L4_OFF + UDP_HDR..SLOT]);
        let n = match sys::recv_batch(fd, bufs, &mut out) {
            Ok(n) => n,
            Err(e) => {
                log::trace!("UDP flow {}: recv: {e}", sidx.flow());
                break;
            }
        };
        emit(ctx, &tap, label, &out[..n]);
        moved |= n > 0;
        if n < room {
            break;
        }
    }
    if moved {
        let now = ctx.now;
        if let Some(sf) = ctx.flows.get_mut(sidx.flow()).and_then(|f| f.data.sock_flow_mut()) {
            sf.last = now;
        }
    }
}

/// Largest UDP payload that fits an IPv6 (or IPv4) packet of 65535 bytes.
const MAX_DLEN: usize = 65535 - 40 - UDP_HDR;

/// Write UDP, IP and Ethernet headers in front of the `dlen` bytes of
/// payload at `slot[L4_OFF + 8..]`; returns the frame's range in the slot
/// and its offload metadata: with `partial` (the back-end takes partial
/// checksums, [`crate::tap::offload`]) the checksum field holds only the
/// pseudo-header sum and the receiver completes it (csum_offset 6).
fn build_udp(
    slot: &mut [u8],
    tap: &FlowSide,
    addrs: &frame::FrameAddrs,
    label: u32,
    dlen: usize,
    partial: bool,
) -> (std::ops::Range<usize>, Offload) {
    let l4len = UDP_HDR + dlen;
    let h = &mut slot[frame::L4_OFF..frame::L4_OFF + UDP_HDR];
    h[0..2].copy_from_slice(&tap.oport.to_be_bytes());
    h[2..4].copy_from_slice(&tap.eport.to_be_bytes());
    h[4..6].copy_from_slice(&(l4len as u16).to_be_bytes());
    h[6..8].copy_from_slice(&[0, 0]);
    let acc = frame::pseudo(tap.oaddr, tap.eaddr, IPPROTO_UDP, l4len);
    let mut c = if partial { !csum::fold(acc) } else { csum::fold(csum::sum(acc, &slot[frame::L4_OFF..frame::L4_OFF + l4len])) };
    if c == 0 && !partial {
        c = 0xffff;
    }
    slot[frame::L4_OFF + 6..frame::L4_OFF + 8].copy_from_slice(&c.to_be_bytes());
    let r = frame::push_ip_eth(slot, l4len, addrs, IPPROTO_UDP, label);
    let mut off = Offload::default();
    if partial {
        let start = (frame::L4_OFF - r.start) as u16;
        off.csum = Some((start, crate::tap::offload::UDP_CSUM_OFF));
        off.hdr_len = start + UDP_HDR as u16;
    }
    (r, off)
}

/// Datagrams at most in one UDP super-frame to the tap.
const USO_MAX_SEGS: usize = 64;

/// Turn datagrams received into consecutive free slots into frames, then
/// consume those slots. Where the back-end takes UDP super-frames
/// ([`crate::tap::OffloadCaps::uso`]), a run of datagrams found by
/// [`uso_run`] becomes one frame (GSO type UDP_L4, `gso_size` the run's
/// datagram size): the payloads are gathered behind the first one's
/// headers, and the namespace's kernel splits the frame into the same
/// datagrams. One write to the tap instead of one per datagram.
fn emit(ctx: &mut Ctx, tap: &FlowSide, label: u32, dgrams: &[sys::Datagram]) {
    let addrs = frame::FrameAddrs { src_mac: ctx.our_mac, dst_mac: ctx.guest_mac, src: tap.oaddr, dst: tap.eaddr };
    let caps = ctx.tap.offloads();
    // A segment is a datagram the tap's MTU carries in one frame.
    let l3 = frame::ip_hdr_len(tap.eaddr.is_v4());
    let uso_max = if caps.csum && caps.uso { usize::from(ctx.mtu).saturating_sub(l3 + UDP_HDR) } else { 0 };
    let p = frame::L4_OFF + UDP_HDR;
    let mut i = 0;
    while i < dgrams.len() {
        let d = dgrams[i];
        if d.truncated || d.len > MAX_DLEN {
            ctx.counters.drop_host_oversize += 1;
            i += 1;
            continue;
        }
        let k = uso_run(&dgrams[i..], uso_max);
        let (mut dlen, mut n) = (d.len, 1);
        for (j, e) in dgrams.iter().enumerate().take(i + k).skip(i + 1) {
            if !ctx.tx.copy_between(j, p..p + e.len, i, p + dlen) {
                break;
            }
            dlen += e.len;
            n += 1;
        }
        let Some(slot) = ctx.tx.slot(i) else { break };
        let (r, mut off) = build_udp(slot, tap, &addrs, label, dlen, caps.csum);
        if dlen > d.len {
            off.gso = GsoType::UdpL4;
            off.gso_size = d.len as u16;
            ctx.counters.udp_uso_frames += 1;
            ctx.counters.udp_uso_segs += n as u64;
        }
        ctx.tx.commit_in_offload(i, r, off);
        i += n;
    }
    ctx.tx.advance(dgrams.len());
}

/// How many datagrams from the start of `dgrams` go to the tap as one
/// super-frame: a run of datagrams of the first one's length, which is
/// non-zero and at most `max` bytes (0: no super-frames), the last of the
/// run possibly shorter; at most [`USO_MAX_SEGS`] datagrams and
/// [`MAX_DLEN`] bytes in all. 1: the first datagram goes alone.
fn uso_run(dgrams: &[sys::Datagram], max: usize) -> usize {
    let size = dgrams.first().map_or(0, |d| d.len);
    if size == 0 || size > max {
        return 1;
    }
    let (mut k, mut total) = (1, size);
    for d in dgrams.iter().take(USO_MAX_SEGS).skip(1) {
        if d.truncated || d.len == 0 || d.len > size || total + d.len > MAX_DLEN {
            break;
        }
        k += 1;
        total += d.len;
        if d.len < size {
            break;
        }
    }
    k
}

/// A spliced UDP flow (pasta: loopback to loopback through two sockets).
#[derive(Debug)]
pub struct UdpSplice {
    /// [`INI`]: our socket on the client's side, bound to the forwarded
    /// port and connected to the client; [`TGT`]: our socket in the other
    /// namespace, connected to the server.
    pub socks: [OwnedFd; 2],
    /// Last time a datagram went either way.
    pub last: Instant,
}

/// A socket on the listening side of rule `t` for one client: bound to
/// the listening port (SO_REUSEADDR, as the listener) and connected to the
/// client, so that the kernel hands this socket, not the listener, the
/// client's next datagrams, and our replies leave from the forwarded port.
/// In the namespace for [`OUT`].
fn reply_socket(ctx: &Ctx, t: &Target, laddr: Inany, client: Inany, cport: u16) -> std::io::Result<OwnedFd> {
    let v4 = client.is_v4();
    let s = if t.dir == OUT {
        match &ctx.ns {
            Some(ns) => ns.socket(v4, libc::SOCK_DGRAM)?,
            None => return Err(std::io::ErrorKind::Unsupported.into()),
        }
    } else {
        sys::socket(v4, libc::SOCK_DGRAM, 0)?
    };
    let fd = s.as_raw_fd();
    sys::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    let any = if v4 { Inany::UNSPEC4 } else { Inany::UNSPEC6 };
    let bind_to = if laddr.is_v4() == v4 && !laddr.is_unspecified() { laddr } else { any };
    if !v4 {
        sys::set_int_opt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    sys::bind(fd, bind_to, t.port)?;
    sys::connect(fd, client, cport)?;
    Ok(s)
}

/// Datagrams wait on listening socket `lfd` of rule target `t`: each
/// starts a flow (to the tap, or spliced) unless its client has one
/// already, and is forwarded. Datagrams are received into free transmit
/// slots, so that those going to the tap become frames in place.
///
/// On a socket-lookup socket ([`Target::port`] 0), each datagram's original
/// destination gives its port and local address.
pub fn listen_ready(ctx: &mut Ctx, t0: Target, lfd: RawFd) {
    let steered = t0.port == 0;
    let pif_ini = if t0.dir == OUT { Pif::Splice } else { Pif::Host };
    let mut out = [sys::Datagram { len: 0, truncated: false, from: None }; 64];
    let mut dsts = [None; 64];
    for _ in 0..4 {
        if ctx.tx.room() < crate::tap::BATCH / 2 {
            ctx.flush_tx();
        }
        let room = ctx.tx.room();
        let bufs = ctx.tx.free_slots().map(|s| &mut s[frame::L4_OFF + UDP_HDR..SLOT]);
        let r = if steered { sys::recv_batch_dst(lfd, bufs, &mut out, &mut dsts) } else { sys::recv_batch(lfd, bufs, &mut out) };
        let n = match r {
            Ok(n) => n,
            Err(e) => {
                log::trace!("UDP: recv on port {}: {e}", t0.port);
                break;
            }
        };
        for (i, d) in out[..n].iter().enumerate() {
            let Some((from, fport)) = d.from else { continue };
            if d.truncated || d.len > MAX_DLEN {
                ctx.counters.drop_host_oversize += 1;
                continue;
            }
            let t = if !steered {
                t0
            } else if let Some((t, dst)) = dsts[i].and_then(|(a, p)| Some((ctx.listeners.steered_target(&t0, p)?, a))) {
                Target { laddr: dst, ..t }
            } else {
                log::debug!("UDP: datagram from {from}:{fport} on a socket-lookup socket: no rule for {:?}", dsts[i]);
                ctx.counters.drop_fwd_nat += 1;
                continue;
            };
            let laddr = t.laddr;
            // `-U` listens on any address of lo: the datagram was sent to a
            // loopback address (which one is not known; the usual one).
            let oaddr = match (t.dir == OUT && laddr.is_unspecified(), from.is_v4()) {
                (true, true) => Inany::LOOPBACK4,
                (true, false) => Inany::LOOPBACK6,
                (false, _) => laddr,
            };
            let ini = FlowSide { eaddr: from, eport: fport, oaddr, oport: t.port };
            let sidx = match ctx.flows.lookup(pif_ini, Proto::Udp, &ini) {
                Some(s) => s,
                None => match open_inbound(ctx, &t, ini) {
                    Some(s) => s,
                    None => continue,
                },
            };
            let now = ctx.now;
            let Some(f) = ctx.flows.get_mut(sidx.flow()) else { continue };
            let o = frame::L4_OFF + UDP_HDR;
            match &mut f.data {
                FlowData::Udp(sf) => {
                    sf.last = now;
                    let (tap, label) = (f.side[TGT], sf.flow_label);
                    // Frame in place in slot i (consumed below by advance).
                    emit_one(ctx, i, &tap, label, d.len);
                }
                FlowData::UdpSplice(us) => {
                    us.last = now;
                    let fd = us.socks[TGT].as_raw_fd();
                    let Some(slot) = ctx.tx.slot(i) else { continue };
                    if sys::send(fd, &slot[o..o + d.len], None).is_err() {
                        ctx.counters.drop_host_send += 1;
                    }
                }
                _ => {}
            }
        }
        ctx.tx.advance(n);
        if n < room {
            break;
        }
    }
}

/// Start a flow for a client's first datagram on a forwarded port: to
/// the tap ([`FlowData::Udp`], the reply socket as its socket) or spliced
/// ([`FlowData::UdpSplice`]). `None` (counted) if it can't be forwarded.
fn open_inbound(ctx: &mut Ctx, t: &Target, ini: FlowSide) -> Option<Sidx> {
    let nat = if t.dir == OUT {
        Fwd::nat_from_splice(L4::Udp, &ini, t.to).map(|tgt| (Pif::Host, tgt))
    } else {
        ctx.fwd.nat_from_host(L4::Udp, &ini, t.to, t.taddr)
    };
    let Some((pif, tgt)) = nat else {
        ctx.counters.drop_fwd_nat += 1;
        return None;
    };
    if ctx.flows.is_full() {
        ctx.counters.drop_flow_table_full += 1;
        return None;
    }
    let reply = match reply_socket(ctx, t, ini.oaddr, ini.eaddr, ini.eport) {
        Ok(s) => s,
        Err(e) => {
            log::debug!("UDP: reply socket for {}:{}: {e}", ini.eaddr, ini.eport);
            count_socket_error(ctx, &e);
            return None;
        }
    };
    let pif_ini = if t.dir == OUT { Pif::Splice } else { Pif::Host };
    let now = ctx.now;
    if pif == Pif::Tap {
        let s = ctx.new_sock_flow(Proto::Udp, [pif_ini, Pif::Tap], [ini, tgt], reply, FlowData::Udp)?;
        // Also found by its client, for datagrams still reaching the listener.
        ctx.flows.hash_insert(s.flow(), INI);
        ctx.counters.udp_flows += 1;
        log::debug!("UDP flow {}: {}:{} -> tap {}:{}", s.flow(), ini.eaddr, ini.eport, tgt.eaddr, tgt.eport);
        return Some(Sidx::new(s.flow() as u32, INI));
    }
    // Spliced: a socket on the other side, connected to the server.
    let v4 = tgt.eaddr.is_v4();
    let other = match (pif, &ctx.ns) {
        (Pif::Splice, Some(ns)) => ns.socket(v4, libc::SOCK_DGRAM),
        (Pif::Host, _) => sys::socket(v4, libc::SOCK_DGRAM, 0),
        _ => Err(std::io::ErrorKind::Unsupported.into()),
    };
    let other = match other {
        Ok(s) => s,
        Err(e) => {
            log::debug!("UDP splice: socket: {e}");
            count_socket_error(ctx, &e);
            return None;
        }
    };
    let ofd = other.as_raw_fd();
    // Keep the client's port where it is free (as upstream), else any.
    if sys::bind(ofd, tgt.oaddr, tgt.oport).is_err() {
        let _ = sys::bind(ofd, tgt.oaddr, 0);
    }
    if let Err(e) = sys::connect(ofd, tgt.eaddr, tgt.eport) {
        log::debug!("UDP splice: connect to {}:{}: {e}", tgt.eaddr, tgt.eport);
        ctx.counters.drop_socket += 1;
        return None;
    }
    let Some(idx) = ctx.flows.alloc(Proto::Udp, [pif_ini, pif], [ini, tgt], FlowData::None) else {
        ctx.counters.drop_flow_table_full += 1;
        return None;
    };
    for (side, fd) in [(INI, reply.as_raw_fd()), (TGT, ofd)] {
        let r = EpollRef::new(EpollType::UdpSplice, fd, Sidx::new(idx as u32, side).raw());
        if ctx.epoll.add(fd, libc::EPOLLIN as u32, r).is_err() {
            ctx.counters.drop_socket += 1;
            ctx.flows.close(idx);
            return None;
        }
    }
    if let Some(f) = ctx.flows.get_mut(idx) {
        f.data = FlowData::UdpSplice(UdpSplice { socks: [reply, other], last: now });
    }
    ctx.flows.hash_insert(idx, INI);
    ctx.counters.udp_splice_flows += 1;
    log::debug!("UDP splice flow {idx}: {}:{} -> {}:{}", ini.eaddr, ini.eport, tgt.eaddr, tgt.eport);
    Some(Sidx::new(idx as u32, INI))
}

/// A socket of spliced UDP flow side `sidx` is readable: relay its
/// datagrams to the other socket, recvmmsg(2) then sendmmsg(2), through
/// free transmit slots used as scratch space (nothing is queued to the
/// tap).
pub fn splice_ready(ctx: &mut Ctx, sidx: Sidx, events: u32) {
    let (idx, side) = (sidx.flow(), sidx.side());
    let Some(FlowData::UdpSplice(us)) = ctx.flows.get(idx).map(|f| &f.data) else { return };
    let (from, to) = (us.socks[side].as_raw_fd(), us.socks[1 - side].as_raw_fd());
    if events & libc::EPOLLERR as u32 != 0 {
        let _ = sys::take_error(from);
    }
    let mut out = [sys::Datagram { len: 0, truncated: false, from: None }; 64];
    let mut moved = false;
    for _ in 0..4 {
        if ctx.tx.room() < crate::tap::BATCH / 2 {
            ctx.flush_tx();
        }
        let room = ctx.tx.room();
        let n = match sys::recv_batch(from, ctx.tx.free_slots().map(|s| &mut s[..]), &mut out) {
            Ok(n) => n,
            Err(e) => {
                log::trace!("UDP splice flow {idx}: recv: {e}");
                break;
            }
        };
        if n == 0 {
            break;
        }
        moved = true;
        let mut bufs: [&[u8]; 64] = [&[]; 64];
        let mut k = 0;
        for (slot, d) in ctx.tx.free_slots().zip(&out[..n]) {
            if d.truncated {
                ctx.counters.drop_host_oversize += 1;
                continue;
            }
            bufs[k] = &slot[..d.len];
            k += 1;
        }
        let mut sent = 0;
        // Bounded: each round sends at least one or stops.
        for _ in 0..4 {
            match sys::send_batch(to, &bufs[sent..k]) {
                Ok(m) if m > 0 => sent += m,
                _ => break,
            }
            if sent >= k {
                break;
            }
        }
        ctx.counters.drop_host_send += (k - sent) as u64;
        if n < room {
            break;
        }
    }
    if moved {
        let now = ctx.now;
        if let Some(FlowData::UdpSplice(us)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) {
            us.last = now;
        }
    }
}

/// Count a failed socket(2) for a new flow: out of descriptors or other.
fn count_socket_error(ctx: &mut Ctx, e: &std::io::Error) {
    if limits::out_of_fds(e) {
        ctx.counters.drop_no_fds += 1;
    } else {
        ctx.counters.drop_socket += 1;
    }
}

/// Turn one datagram of `dlen` bytes received into free slot `i` into a
/// frame for tap side `tap` (not consumed: the caller advances).
fn emit_one(ctx: &mut Ctx, i: usize, tap: &FlowSide, label: u32, dlen: usize) {
    let addrs = frame::FrameAddrs { src_mac: ctx.our_mac, dst_mac: ctx.guest_mac, src: tap.oaddr, dst: tap.eaddr };
    let partial = ctx.tap.offloads().csum;
    let Some(slot) = ctx.tx.slot(i) else { return };
    let (r, off) = build_udp(slot, tap, &addrs, label, dlen, partial);
    ctx.tx.commit_in_offload(i, r, off);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn partial_udp_checksum_completes_to_a_valid_one_and_full_is_unchanged() {
        let tap = FlowSide {
            eaddr: Ipv4Addr::new(192, 0, 2, 2).into(),
            eport: 40000,
            oaddr: Ipv4Addr::new(192, 0, 2, 1).into(),
            oport: 53,
        };
        let addrs = frame::FrameAddrs { src_mac: [2, 0, 0, 0, 0, 1], dst_mac: [2, 0, 0, 0, 0, 2], src: tap.oaddr, dst: tap.eaddr };
        let payload: Vec<u8> = (0..3001u32).map(|i| (i * 31 % 256) as u8).collect();
        let verify = |f: &[u8]| {
            let l4 = &f[34..];
            csum::fold(csum::sum(frame::pseudo(tap.oaddr, tap.eaddr, IPPROTO_UDP, l4.len()), l4))
        };
        let mut slot = vec![0u8; SLOT];
        slot[frame::L4_OFF + UDP_HDR..][..payload.len()].copy_from_slice(&payload);
        let (r, off) = build_udp(&mut slot, &tap, &addrs, 0, payload.len(), false);
        assert_eq!(off, Offload::default());
        assert_eq!(verify(&slot[r.clone()]), 0, "full checksum");
        let full = slot[r.clone()].to_vec();
        let (r, off) = build_udp(&mut slot, &tap, &addrs, 0, payload.len(), true);
        assert_eq!((off.csum, off.hdr_len), (Some((34, 6)), 42));
        let mut f = slot[r].to_vec();
        assert_ne!(verify(&f), 0, "only the pseudo-header sum");
        // Completed as the receiver does (Linux skb_checksum_help).
        let c = csum::fold(csum::sum(0, &f[34..]));
        f[40..42].copy_from_slice(&c.to_be_bytes());
        assert_eq!(verify(&f), 0);
        assert_eq!(f, full);
    }

    fn dg(len: usize) -> sys::Datagram {
        sys::Datagram { len, truncated: false, from: None }
    }

    #[test]
    fn uso_run_takes_equal_datagrams_and_one_shorter_last() {
        let d = |lens: &[usize]| lens.iter().map(|&l| dg(l)).collect::<Vec<_>>();
        assert_eq!(uso_run(&d(&[1000, 1000, 1000, 400, 1000]), 1472), 4);
        assert_eq!(uso_run(&d(&[1000, 1200, 1000]), 1472), 1, "a longer one ends the run");
        assert_eq!(uso_run(&d(&[1000, 1000]), 0), 1, "no super-frames");
        assert_eq!(uso_run(&d(&[2000, 2000]), 1472), 1, "segments over the MTU");
        assert_eq!(uso_run(&d(&[0, 0]), 1472), 1, "empty datagrams");
        assert_eq!(uso_run(&d(&[1000, 0, 1000]), 1472), 1);
        let mut t = d(&[1000, 1000, 1000]);
        t[2].truncated = true;
        assert_eq!(uso_run(&t, 1472), 2, "a truncated one is not gathered");
        assert_eq!(uso_run(&d(&[100; 100]), 1472), USO_MAX_SEGS);
        assert_eq!(uso_run(&d(&[1400; 64]), 65520), MAX_DLEN / 1400, "bytes capped");
        assert_eq!(uso_run(&[], 1472), 1);
    }
}
