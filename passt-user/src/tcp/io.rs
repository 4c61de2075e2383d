//! # Theory of operation
//!
//! Binds [`TcpConn`] to a host socket and to the tap.
//!
//! - **Guest to host.** A SYN from the tap opens a non-blocking socket and
//!   connect()s it to the endpoint [`crate::fwd`] chose; the SYN-ACK goes to
//!   the guest only when connect() completes, a RST if it fails. Data from
//!   the tap is written with send(2); only what the socket took is
//!   acknowledged. The window advertised to the guest is the room left in
//!   the socket's send buffer (SO_SNDBUF less SIOCOUTQ), so that a guest
//!   that respects it is never refused; after a short write anyway, the
//!   socket is polled for EPOLLOUT and the guest gets a window update and
//!   three duplicate ACKs, which make it retransmit at once.
//! - **Host to guest.** Data is peeked (MSG_PEEK at SO_PEEK_OFF, so the
//!   offset is the number of bytes in flight) straight into transmit slots,
//!   one guest-MSS segment per slot, up to the guest's window (with a
//!   back-end that takes TCP super-frames, [`crate::tap::offload`], as many
//!   whole MSS per slot as fit in 64 KiB, sent as one GSO frame with a
//!   partial checksum); bytes leave
//!   the socket (recv with MSG_TRUNC) only when the guest acknowledges
//!   them. A retransmission resets SO_PEEK_OFF to 0 and peeks again.
//! - **ACK coalescing.** Data from the tap is acknowledged once per tap
//!   batch ([`flush_acks`]), not per segment; duplicate ACKs for holes go
//!   out at once. Less than a full segment (a request, say) is not
//!   acknowledged on its own at first: the next segment to the tap (the
//!   answer) carries the ACK, or [`delack_flush`] sends it after
//!   [`DELACK`] (1 ms) on the fast timer.
//! - **Epoll interest** follows what can be done: EPOLLOUT while
//!   connecting or after a short write, EPOLLIN | EPOLLRDHUP only while
//!   the guest's window has room and our FIN is not sent, so a closed
//!   window or a finished stream never spins the loop.
//! - **Timers** (RTO, window probes, handshake, FIN and idle timeouts) are
//!   run from the periodic tick ([`timers`]), one second apart.
//!
//! Syscalls: socket, connect, setsockopt (SO_PEEK_OFF, SO_LINGER),
//! getsockopt (SO_ERROR, SO_SNDBUF, TCP_MAXSEG), ioctl (SIOCOUTQ), send, sendmsg (a staged batch, [`Stage`]),
//! recvmsg (MSG_PEEK), recv (MSG_TRUNC), shutdown, close, epoll_ctl.

use std::hash::Hasher;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};


use etherparse::{TcpOptionElement, TcpSlice};
use siphasher::sip::SipHasher13;

use super::conn::{SegIn, SegOut, State, TcpConn, TimeoutAction, ACK, FIN, PSH, RST, SYN};
use crate::daemon::Ctx;
use crate::epoll::{EpollRef, EpollType};
use crate::flow::{FlowData, FlowSide, Inany, Pif, Proto, Sidx, INI, TGT};
use crate::fwd::L4;
use crate::sys;
use crate::tap::{offload, GsoType, Offload, OffloadCaps};
use crate::wire::{csum, frame};

const IPPROTO_TCP: u8 = 6;
/// TCP header without options.
const TCP_HDR: usize = 20;
/// TCP header with the MSS and window scale options of a SYN.
const TCP_HDR_SYN: usize = 28;

/// A TCP flow: the host socket and the tap-side state.
#[derive(Debug)]
pub struct TcpFlow {
    /// The host socket.
    pub sock: OwnedFd,
    /// Tap-side state machine.
    pub conn: TcpConn,
    /// IPv6 flow label for frames to the tap.
    pub flow_label: u32,
    /// Epoll events registered now (0: not registered).
    events: u32,
    /// Waiting for connect() to complete.
    connecting: bool,
    /// Queued for an ACK at the end of the tap batch.
    ack_queued: bool,
    /// In `ctx.tcp_delack`: its ACK waits for a segment to the tap or the
    /// deadline ([`flush_acks`]).
    delack: bool,
    /// We advertised a window well below what the socket can hold: poll
    /// for EPOLLOUT to tell the guest when room comes back.
    wnd_wait: bool,
    /// EPOLLOUT came but the window is still closed: re-check after this
    /// many milliseconds (doubling up to [`WND_POLL_MAX_MS`]); 0: not waiting.
    wnd_poll_ms: u16,
    /// Everything queued on the socket was sent and awaits the guest's
    /// ACK (a peek found nothing new, or a short one drained it): EPOLLIN
    /// stays level-true, so poll it edge-triggered, and an ACK from the
    /// guest doesn't peek again (new data raises the edge).
    stalled: bool,
    /// The peer closed its side (EPOLLRDHUP): with no new data after what
    /// is in flight, that is end of file (needed without SO_PEEK_OFF).
    rdhup: bool,
    /// When [`sock_to_tap`] last read the socket's room for the window
    /// of its data segments (None: never); see [`WND_REUSE`].
    wnd_read_at: Option<std::time::Instant>,
}

impl TcpFlow {
    /// A flow on `sock`, not registered in epoll yet; `connecting` while
    /// our connect() is in progress.
    fn new(sock: OwnedFd, conn: TcpConn, flow_label: u32, connecting: bool) -> Self {
        TcpFlow {
            sock,
            conn,
            flow_label,
            events: 0,
            connecting,
            ack_queued: false,
            delack: false,
            wnd_wait: false,
            wnd_poll_ms: 0,
            stalled: false,
            rdhup: false,
            wnd_read_at: None,
        }
    }

    /// True if the socket is in the epoll set now (so it must leave it
    /// before the flow is freed; an unregistered one needs no
    /// EPOLL_CTL_DEL, which would fail with ENOENT).
    pub fn registered(&self) -> bool {
        self.events != 0
    }
}

/// Longest interval between re-checks of a closed window.
const WND_POLL_MAX_MS: u16 = 64;

/// How long [`sock_to_tap`] reuses an open window for the data segments it
/// sends instead of reading the socket's room again (SO_SNDBUF, SIOCOUTQ:
/// two syscalls per reply of a request/response flow). Between two reads
/// the room only grows (the peer's ACKs drain the queue, autotuning grows
/// the buffer) unless we write, and every write is followed by a fresh
/// read ([`flush_acks`], the EPOLLOUT path): a reused window is at most
/// this old and, but for a buffer the kernel shrinks under memory pressure
/// (then a short write is handled as always), never larger than the room.
/// A closed window is always read again.
const WND_REUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// True if [`sock_to_tap`] must read the socket's room before sending data
/// at `now`: the window is closed, or its last read (`read_at`) is older
/// than [`WND_REUSE`] or never happened.
fn wnd_stale(read_at: Option<std::time::Instant>, wnd_closed: bool, now: std::time::Instant) -> bool {
    wnd_closed || read_at.is_none_or(|t| now.saturating_duration_since(t) >= WND_REUSE)
}

/// Bytes in flight to the guest at most without SO_PEEK_OFF: they are
/// peeked again, into a discard buffer of this size, before new data.
const DISCARD_MAX: usize = 4 << 20;

/// Segments from the tap shorter than this are copied into the stage
/// when the batch they came in is not pinned (see [`Stage`]); longer ones
/// are then written directly.
const STAGE_BELOW: usize = 16384;

/// Most segments one [`flush_stage`] writes (iovecs of one sendmsg(2);
/// far below UIO_MAXIOV, 1024).
pub const STAGE_IOV: usize = 64;

/// Most bytes one [`flush_stage`] writes: 4 MiB, above what a TCP send
/// buffer takes (the guest's window is what the socket has room for).
const STAGE_MAX: usize = 4 << 20;

/// Guest data collected during a tap batch, per flow (up to
/// [`STAGE_FLOWS`] flows at once), written to each flow's host socket with
/// one sendmsg(2) (an iovec per segment) instead of one send(2) per
/// segment: each send pushes what it got through the host's
/// TCP, the link and the receiver on its own, which costs far more than
/// gathering the segments.
///
/// Two ways to hold a segment: while the tap batch the segments were read
/// into is pinned ([`Stage::pin`], by the tap reader, which flushes the
/// stage before it reads into that buffer again) the iovec points at the
/// payload in the batch, without a copy, whatever its length; otherwise
/// (frames handed over by another worker, tests) segments shorter than
/// `STAGE_BELOW` are copied into a 64 KiB buffer allocated once, and
/// longer ones are not staged.
///
/// While data is staged its sequence numbers are counted as written
/// ([`TcpConn::handle_written`]), and nothing that acknowledges them
/// reaches the guest before [`flush_stage`] wrote them; a short write is
/// then taken back ([`TcpConn::handle_write_shortfall`]), exactly as for
/// a single segment.
#[derive(Debug)]
pub struct Stage {
    /// One slot per flow staged for, at most [`STAGE_FLOWS`]: several
    /// flows sending at once (iperf3 -P 4) interleave in a tap batch.
    slots: Vec<Slot>,
    /// Payload slices given to [`Stage::push`] outlive the next flush.
    pinned: bool,
}

/// Flows staged for at once; a fifth one flushes another's slot first.
pub const STAGE_FLOWS: usize = 4;

/// What is staged for one flow.
#[derive(Debug)]
struct Slot {
    /// Copies of segments (capacity fixed: never reallocated, so iovecs
    /// into it stay valid).
    buf: Vec<u8>,
    /// What the next flush writes, in sequence order: into `buf` or into
    /// the pinned tap batch.
    iov: Vec<libc::iovec>,
    /// Total bytes of `iov`.
    len: usize,
    /// Segments staged (a copied run may share one iovec).
    segs: usize,
    /// The flow staged for (None: free).
    idx: Option<usize>,
}

// SAFETY: the iovecs are empty whenever a Ctx changes thread (they are
// filled and flushed within one tap batch on one thread); they only point
// into `buf` or into the tap batch being dispatched.
unsafe impl Send for Stage {}

impl Slot {
    fn new() -> Self {
        Slot { buf: Vec::with_capacity(65536), iov: Vec::with_capacity(STAGE_IOV), len: 0, segs: 0, idx: None }
    }

    /// Whether `dlen` more bytes of one segment can join this slot.
    fn can_take(&self, dlen: usize, pinned: bool) -> bool {
        dlen > 0
            && self.iov.len() < STAGE_IOV
            && self.len + dlen <= STAGE_MAX
            && (pinned || (dlen < STAGE_BELOW && self.buf.len() + dlen <= self.buf.capacity()))
    }

    /// Stage `data` (checked with [`Slot::can_take`]): an iovec on it when
    /// pinned, else a copy (joined to the previous iovec when adjacent).
    fn push(&mut self, data: &[u8], pinned: bool) {
        debug_assert!(self.can_take(data.len(), pinned));
        self.segs += 1;
        self.len += data.len();
        if pinned {
            self.iov.push(libc::iovec { iov_base: data.as_ptr().cast_mut().cast(), iov_len: data.len() });
            return;
        }
        let at = self.buf.len();
        // Within capacity (can_take): no reallocation, earlier iovecs stay valid.
        self.buf.extend_from_slice(data);
        // SAFETY: at..at + len is inside buf's allocation.
        let p = unsafe { self.buf.as_ptr().add(at) };
        match self.iov.last_mut() {
            Some(l) if l.iov_base.cast_const().cast::<u8>().wrapping_add(l.iov_len) == p => l.iov_len += data.len(),
            _ => self.iov.push(libc::iovec { iov_base: p.cast_mut().cast(), iov_len: data.len() }),
        }
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.iov.clear();
        self.len = 0;
        self.segs = 0;
        self.idx = None;
    }
}

impl Stage {
    /// An empty stage: [`STAGE_FLOWS`] slots of 64 KiB for copies and
    /// [`STAGE_IOV`] iovecs each, allocated once.
    pub fn new() -> Self {
        Stage { slots: (0..STAGE_FLOWS).map(|_| Slot::new()).collect(), pinned: false }
    }

    /// Declare that the payloads given to `Stage::push` from now on stay
    /// valid and unchanged until the next [`flush_stage`] (true), or no
    /// longer (false: call only with the stage empty, i.e. after a flush).
    ///
    /// # Safety
    /// With `on`, the caller must flush the stage ([`flush_stage`]) before
    /// the memory of any payload pushed meanwhile is written, moved or
    /// freed.
    pub unsafe fn pin(&mut self, on: bool) {
        debug_assert!(on || self.slots.iter().all(|s| s.iov.is_empty()));
        self.pinned = on;
    }

    /// The slot of flow `idx`, if something is staged for it.
    fn slot(&self, idx: usize) -> Option<usize> {
        self.slots.iter().position(|s| s.idx == Some(idx))
    }

    /// Whether `dlen` more bytes of one segment of flow `idx` can be
    /// staged (in its slot, or in a slot freed for it).
    fn can_take(&self, idx: usize, dlen: usize) -> bool {
        match self.slot(idx) {
            Some(i) => self.slots[i].can_take(dlen, self.pinned),
            None => dlen > 0 && dlen <= STAGE_MAX && (self.pinned || dlen < STAGE_BELOW),
        }
    }

    /// Stage `data` for flow `idx` (checked with [`Stage::can_take`]; a
    /// free slot must exist if `idx` has none: [`make_room`]).
    fn push(&mut self, idx: usize, data: &[u8]) {
        let i = match self.slot(idx) {
            Some(i) => i,
            None => {
                let i = self.slots.iter().position(|s| s.idx.is_none()).expect("a free slot (make_room)");
                self.slots[i].idx = Some(idx);
                i
            }
        };
        self.slots[i].push(data, self.pinned);
    }
}

impl Default for Stage {
    fn default() -> Self {
        Self::new()
    }
}

/// Make sure flow `idx` has a slot or a free one exists: flush another
/// flow's slot if all are taken (the order between flows does not matter).
fn make_room(ctx: &mut Ctx, idx: usize) {
    let st = &ctx.tcp_stage;
    if st.slot(idx).is_some() || st.slots.iter().any(|s| s.idx.is_none()) {
        return;
    }
    if let Some(other) = st.slots.iter().filter_map(|s| s.idx).find(|&o| o != idx) {
        flush_flow(ctx, other);
    }
}

/// Write everything staged (see [`Stage`]), one sendmsg(2) per flow.
pub fn flush_stage(ctx: &mut Ctx) {
    for i in 0..ctx.tcp_stage.slots.len() {
        if let Some(idx) = ctx.tcp_stage.slots[i].idx {
            flush_flow(ctx, idx);
        }
    }
}

/// Write what is staged for flow `idx` to its socket with one
/// sendmsg(2). Returns how many staged bytes the socket did not take
/// (taken back from the flow: the guest resends them); 0 if nothing was
/// staged for it.
pub fn flush_flow(ctx: &mut Ctx, idx: usize) -> usize {
    let Some(i) = ctx.tcp_stage.slot(idx) else { return 0 };
    let slot = &mut ctx.tcp_stage.slots[i];
    let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) else {
        slot.clear();
        return 0;
    };
    let len = slot.len;
    // SAFETY: the iovecs point into the slot's own buffer or, when pinned,
    // into the tap batch, which stays untouched until this flush (Stage::pin).
    let r = unsafe { sys::send_iov(tf.sock.as_raw_fd(), &slot.iov) };
    if slot.segs > 1 {
        ctx.counters.tcp_batched_writes += 1;
        ctx.counters.tcp_batched_segs += slot.segs as u64;
    }
    slot.clear();
    let written = match r {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => 0,
        Err(e) => {
            log::debug!("TCP flow {idx}: sendmsg: {e}");
            reset_both(ctx, idx);
            return len;
        }
    };
    if written < len {
        tf.conn.handle_write_shortfall(len - written);
        ctx.counters.tcp_short_writes += 1;
    }
    len - written
}

/// Check that the kernel supports SO_PEEK_OFF on TCP sockets (Linux 6.9
/// and later). Without it, every peek starts at the head of the receive
/// queue: the bytes in flight are then peeked into a discard buffer first
/// (see [`Ctx::tcp_peek_off`]), which costs a copy of them per peek.
///
/// # Errors
/// The OS error of socket(2) or setsockopt(2) (EOPNOTSUPP before 6.9).
///
/// Syscalls: socket, setsockopt, close.
pub fn probe_peek_offset() -> std::io::Result<()> {
    let s = sys::socket(true, libc::SOCK_STREAM, 0)?;
    sys::set_int_opt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)
}

/// Largest payload per segment a tap of `mtu` bytes takes for this family:
/// the MSS we announce (RFC 9293 §3.7.1).
fn mss_max(mtu: u16, v4: bool) -> u16 {
    (usize::from(mtu).saturating_sub(frame::ip_hdr_len(v4) + TCP_HDR)).clamp(536, 65535 - 40 - TCP_HDR) as u16
}

/// Initial sequence number (RFC 6528 §3): a keyed hash of the connection's
/// addresses and ports, plus a timer ticking every 4 µs.
fn isn(ctx: &Ctx, s: &FlowSide) -> u32 {
    let mut h = SipHasher13::new_with_keys(ctx.isn_key.0, ctx.isn_key.1);
    h.write(&s.eaddr.0);
    h.write(&s.oaddr.0);
    h.write_u16(s.eport);
    h.write_u16(s.oport);
    let ticks = (ctx.now.duration_since(ctx.start).as_nanos() / 4000) as u32;
    (h.finish() as u32).wrapping_add(ticks)
}

/// Parse the TCP header of a segment from the tap.
pub(crate) fn seg_in(t: &TcpSlice) -> SegIn {
    let mut s = SegIn {
        seq: t.sequence_number(),
        ack: t.acknowledgment_number(),
        flags: (u8::from(t.fin()))
            | (u8::from(t.syn()) << 1)
            | (u8::from(t.rst()) << 2)
            | (u8::from(t.psh()) << 3)
            | (u8::from(t.ack()) << 4),
        wnd: t.window_size(),
        dlen: t.payload().len(),
        mss: None,
        ws: None,
    };
    if t.syn() {
        for o in t.options_iterator() {
            match o {
                Ok(TcpOptionElement::MaximumSegmentSize(m)) => s.mss = Some(m),
                Ok(TcpOptionElement::WindowScale(w)) => s.ws = Some(w),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    s
}

/// Handle a TCP segment from the tap: `src` (the guest) to `dst`, with
/// `l4` the TCP header and payload (length checked by the IP layer).
pub fn from_tap(ctx: &mut Ctx, src: Inany, dst: Inany, l4: &[u8]) {
    let Ok(t) = TcpSlice::from_slice(l4) else {
        ctx.counters.drop_l4_malformed += 1;
        return;
    };
    let seg = seg_in(&t);
    let ini = FlowSide { eaddr: src, eport: t.source_port(), oaddr: dst, oport: t.destination_port() };
    let Some(sidx) = ctx.flows.lookup(Pif::Tap, Proto::Tcp, &ini) else {
        if seg.flags & (SYN | ACK | RST) == SYN {
            open_flow(ctx, ini, &seg);
        } else if seg.flags & RST == 0 {
            // Nothing known about it (RFC 9293 §3.10.7.1): reset.
            ctx.counters.tcp_rst_no_flow += 1;
            log::trace!("TCP: segment of no flow {}:{} -> {}:{} flags {:#04x} seq {}, reset", src, ini.eport, dst, ini.oport, seg.flags, seg.seq);
            let seq = if seg.flags & ACK != 0 { seg.ack } else { 0 };
            let mut ack = seg.seq.wrapping_add(seg.dlen as u32);
            if seg.flags & (SYN | FIN) != 0 {
                ack = ack.wrapping_add(1);
            }
            let out = SegOut { seq, ack, flags: RST | ACK, wnd: 0, mss: None, ws: None };
            emit(ctx, &ini, 0, &out, &[]);
        }
        return;
    };
    let idx = sidx.flow();
    let mss = mss_max(ctx.mtu, src.is_v4());
    let now = ctx.now;
    // A segment that will not join the stage: write the stage first, so
    // that this segment is judged against what the socket really took.
    let joins = seg.flags & (SYN | FIN | RST) == 0 && ctx.tcp_stage.can_take(idx, seg.dlen);
    if !joins {
        flush_flow(ctx, idx);
    }
    let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) else { return };
    let act = tf.conn.handle_tap_segment(now, &seg, mss);
    log::trace!(
        "TCP flow {idx}: from tap {} seq {} ack {} wnd {} len {} -> {act:?}",
        flags_str(seg.flags),
        seg.seq,
        seg.ack,
        seg.wnd,
        seg.dlen
    );
    let fd = tf.sock.as_raw_fd();
    let emits = act.reset || act.ack_now || act.reply.is_some() || act.rewind || act.can_send || act.established;
    // A short flush of this flow's stage moves RCV.NXT back: `act.write`
    // and `act.fin` were computed before and no longer apply.
    let mut stale = false;
    if emits {
        // Acknowledgements are coming: what they cover must be written.
        stale |= flush_flow(ctx, idx) > 0;
    }
    if act.reset {
        sys::set_linger_zero(fd);
        ctx.flows.close(idx);
        return;
    }
    if act.acked > 0 {
        let mut left = act.acked as usize;
        // Bounded: a discard removes what is queued, at most what was sent.
        for _ in 0..4 {
            match sys::discard(fd, left) {
                Ok(0) | Err(_) => break,
                Ok(n) if n >= left => break,
                Ok(n) => left -= n,
            }
        }
    }
    if act.rewind {
        if ctx.tcp_peek_off {
            let _ = sys::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0);
        }
        ctx.counters.tcp_fast_retransmits += 1;
    }
    let payload = t.payload();
    let mut want = &payload[act.write.clone()];
    let stageable = ctx.in_batch && !act.fin && !emits && !want.is_empty();
    if !stageable || !ctx.tcp_stage.can_take(idx, want.len()) {
        stale |= flush_flow(ctx, idx) > 0;
    }
    let stageable = stageable && !stale && ctx.tcp_stage.can_take(idx, want.len());
    let mut act_fin = act.fin;
    if stale {
        // Beyond the hole the short write left: drop, the guest resends.
        want = &[];
        act_fin = false;
    }
    if stageable {
        make_room(ctx, idx);
        ctx.tcp_stage.push(idx, want);
        if let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) {
            tf.conn.handle_written(want.len(), want.len(), false);
        }
        queue_ack(ctx, idx);
    } else if !want.is_empty() || act_fin {
        let written = if want.is_empty() {
            0
        } else {
            match sys::send(fd, want, None) {
                Ok(n) => n,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => 0,
                Err(e) => {
                    log::debug!("TCP flow {idx}: send: {e}");
                    reset_both(ctx, idx);
                    return;
                }
            }
        };
        let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) else { return };
        let all = written == want.len();
        if act_fin && all {
            sys::shutdown_write(fd);
        }
        tf.conn.handle_written(written, want.len(), act_fin);
        if !all {
            ctx.counters.tcp_short_writes += 1;
        }
        queue_ack(ctx, idx);
    }
    if let Some(r) = act.reply {
        send_seg(ctx, idx, &r, &[]);
    }
    if act.ack_now {
        send_ack(ctx, idx, true);
    }
    // A drained socket polled on the edge reports new data itself: an ACK
    // opening the window has nothing more to send from it. Not after the
    // peer's FIN (EPOLLRDHUP, reported once): then as before.
    let drained = matches!(ctx.flows.get(idx).map(|f| &f.data),
        Some(FlowData::Tcp(tf)) if tf.stalled && !tf.rdhup && tf.events & libc::EPOLLIN as u32 != 0);
    // Just established and not polled for EPOLLIN yet: update() adds the
    // socket to the epoll set now, and EPOLL_CTL_ADD reports data already
    // queued (or the peer's FIN) on the next epoll_wait, so a peek here
    // would only find EAGAIN on most connections (one syscall each).
    let first_poll = act.established
        && !act.rewind
        && matches!(ctx.flows.get(idx).map(|f| &f.data),
            Some(FlowData::Tcp(tf)) if tf.events & libc::EPOLLIN as u32 == 0 && wants_epollin(tf));
    if first_poll {
        // As after a peek into EAGAIN: poll on the edge (the ADD reports
        // what is queued now, new data raises the edge).
        if let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) {
            tf.stalled = true;
        }
    } else if act.established || act.rewind || (act.can_send && !drained) {
        sock_to_tap(ctx, idx);
    }
    update(ctx, idx);
}

fn open_flow(ctx: &mut Ctx, ini: FlowSide, seg: &SegIn) {
    let Some(eaddr) = ctx.fwd.from_tap(L4::Tcp, ini.oaddr, ini.oport) else {
        ctx.counters.drop_addr += 1;
        return;
    };
    let v4 = eaddr.is_v4();
    let mss = mss_max(ctx.mtu, v4);
    let isn = isn(ctx, &ini);
    let conn = TcpConn::from_tap_syn(ctx.now, seg, isn, mss);
    // Out of flow slots or descriptors: refuse with an RST, before the
    // host sees a connection attempt.
    let refuse = |ctx: &mut Ctx, mut c: TcpConn| {
        let rst = c.rst_segment();
        emit(ctx, &ini, 0, &rst, &[]);
    };
    if ctx.flows.is_full() {
        ctx.counters.drop_flow_table_full += 1;
        log::debug!("TCP: flow table full, {}:{} -> {}:{} refused", ini.eaddr, ini.eport, ini.oaddr, ini.oport);
        refuse(ctx, conn);
        return;
    }
    let sock = match sys::socket(v4, libc::SOCK_STREAM, 0) {
        Ok(s) => s,
        Err(e) => {
            log::debug!("TCP: socket: {e}");
            if crate::limits::out_of_fds(&e) {
                ctx.counters.drop_no_fds += 1;
                refuse(ctx, conn);
            } else {
                ctx.counters.drop_socket += 1;
            }
            return;
        }
    };
    let fd = sock.as_raw_fd();
    if let Err(e) = ctx.fwd.bind_outbound_if(fd, v4, eaddr) {
        log::debug!("TCP: --outbound-if{}: {e}", if v4 { 4 } else { 6 });
        ctx.counters.drop_socket += 1;
        refuse(ctx, conn);
        return;
    }
    if let Some(o) = ctx.fwd.outbound(v4).filter(|_| !eaddr.is_loopback()) {
        let _ = sys::bind(fd, o, 0);
    }
    let connected = match sys::connect(fd, eaddr, ini.oport) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => false,
        Err(e) => {
            log::debug!("TCP: connect to {eaddr}:{}: {e}", ini.oport);
            let mut c = conn;
            let rst = c.rst_segment();
            ctx.counters.tcp_refused += 1;
            emit(ctx, &ini, 0, &rst, &[]);
            return;
        }
    };
    let tgt = FlowSide { eaddr, eport: ini.oport, oaddr: Inany::UNSPEC4, oport: 0 };
    let Some(idx) = ctx.flows.alloc(Proto::Tcp, [Pif::Tap, Pif::Host], [ini, tgt], FlowData::None) else {
        ctx.counters.drop_flow_table_full += 1;
        return;
    };
    let flow_label = ctx.flow_label(idx);
    if let Some(f) = ctx.flows.get_mut(idx) {
        f.data = FlowData::Tcp(TcpFlow::new(sock, conn, flow_label, true));
    }
    ctx.flows.hash_insert(idx, INI);
    ctx.counters.tcp_flows += 1;
    log::debug!("TCP flow {idx}: {}:{} -> {}:{} via {eaddr}", ini.eaddr, ini.eport, ini.oaddr, ini.oport);
    if connected {
        connect_done(ctx, idx);
    } else {
        update(ctx, idx);
    }
}

/// A connection accepted on a forwarded port goes to the guest: `ini` is
/// the host side (the client), `tgt` the tap side chosen by
/// [`crate::fwd::Fwd::nat_from_host`]. Sends our SYN; the guest's SYN-ACK
/// completes it in [`from_tap`].
pub fn open_inbound(ctx: &mut Ctx, ini: FlowSide, tgt: FlowSide, sock: OwnedFd) {
    let v4 = tgt.eaddr.is_v4();
    let fd = sock.as_raw_fd();
    let mss = mss_max(ctx.mtu, v4);
    let isn = isn(ctx, &tgt);
    if ctx.tcp_peek_off {
        let _ = sys::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0);
    }
    let (conn, syn) = TcpConn::to_tap_syn(ctx.now, isn, mss, sock_room(fd).0);
    let Some(idx) = ctx.flows.alloc(Proto::Tcp, [Pif::Host, Pif::Tap], [ini, tgt], FlowData::None) else {
        ctx.counters.drop_flow_table_full += 1;
        sys::set_linger_zero(fd);
        return;
    };
    let flow_label = ctx.flow_label(idx);
    if let Some(f) = ctx.flows.get_mut(idx) {
        let mut tf = TcpFlow::new(sock, conn, flow_label, false);
        // the room was just read for the SYN's window: good for sock_to_tap too
        tf.wnd_read_at = Some(ctx.now);
        f.data = FlowData::Tcp(tf);
    }
    ctx.flows.hash_insert(idx, TGT);
    ctx.counters.tcp_inbound_flows += 1;
    log::debug!("TCP flow {idx}: {}:{} -> tap {}:{} from {}:{}", ini.eaddr, ini.eport, tgt.eaddr, tgt.eport, tgt.oaddr, tgt.oport);
    send_seg(ctx, idx, &syn, &[]);
    update(ctx, idx);
}

/// connect() finished: check the result, then SYN-ACK or RST to the guest.
fn connect_done(ctx: &mut Ctx, idx: usize) {
    let now = ctx.now;
    let mtu = ctx.mtu;
    let peek_off = ctx.tcp_peek_off;
    let Some(f) = ctx.flows.get_mut(idx) else { return };
    let ts = f.tap_side();
    let v4 = f.side[ts].eaddr.is_v4();
    let FlowData::Tcp(tf) = &mut f.data else { return };
    let fd = tf.sock.as_raw_fd();
    let err = sys::take_error(fd);
    if err != 0 {
        log::debug!("TCP flow {idx}: connect: {}", std::io::Error::from_raw_os_error(err));
        ctx.counters.tcp_refused += 1;
        reset_both(ctx, idx);
        return;
    }
    tf.connecting = false;
    if let Ok((a, p)) = sys::local_addr(fd) {
        f.side[1 - ts].oaddr = a;
        f.side[1 - ts].oport = p;
    }
    if peek_off {
        let _ = sys::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0);
    }
    let FlowData::Tcp(tf) = &mut f.data else { return };
    tf.conn.set_wnd_to_tap(sock_room(fd).0);
    // good for the first data segments of sock_to_tap too (WND_REUSE)
    tf.wnd_read_at = Some(now);
    let synack = tf.conn.handle_connected(now, mss_max(mtu, v4));
    send_seg(ctx, idx, &synack, &[]);
    update(ctx, idx);
}

/// Room in the socket's send buffer, in bytes (what we let the guest
/// send), and what the buffer holds when empty.
fn sock_room(fd: RawFd) -> (u32, u32) {
    let sndbuf = sys::get_int_opt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF).unwrap_or(0).max(0) as u32;
    let queued = sys::outq(fd).unwrap_or(u32::MAX);
    // SO_SNDBUF counts bookkeeping too (socket(7): the kernel doubles the
    // value set); three quarters is what data can really use.
    let cap = sndbuf / 4 * 3;
    log::trace!("TCP: sndbuf {sndbuf} queued {queued}");
    (cap.saturating_sub(queued), cap)
}

/// Update the window to advertise from the socket; note when it is low
/// enough that a window update will be owed once the socket drains.
///
/// Receiver-side silly window avoidance (RFC 9293 §3.8.6.2.2): a window
/// below min(MSS, half the buffer) is advertised as zero, because a guest
/// holding a full segment does not send into a smaller window and would
/// wait for its persist timer instead. Returns true if the window is closed.
fn refresh_wnd(tf: &mut TcpFlow) -> bool {
    let (room, cap) = sock_room(tf.sock.as_raw_fd());
    let thresh = u32::from(tf.conn.mss_to_tap).min(cap / 2);
    let wnd = if room < thresh { 0 } else { room };
    tf.conn.set_wnd_to_tap(wnd);
    // Only a closed window needs telling when room comes back: a window of
    // at least one segment keeps the guest sending, and its data brings
    // our next ACK.
    if wnd == 0 {
        tf.wnd_wait = true;
    }
    wnd == 0
}

fn queue_ack(ctx: &mut Ctx, idx: usize) {
    let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) else { return };
    if !tf.ack_queued && ctx.tcp_ack_pending.len() < ctx.tcp_ack_pending.capacity() {
        tf.ack_queued = true;
        ctx.tcp_ack_pending.push(idx as u32);
    } else if !tf.ack_queued {
        flush_stage(ctx);
        send_ack(ctx, idx, true);
    }
}

/// How long an ACK for less than a full segment of guest data may wait
/// for a segment to the tap to carry it. A request's reply usually comes
/// well within this (no ACK frame then, and no window read); a guest that
/// holds back small writes until they are acknowledged (Nagle) waits at
/// most this long, against 40 ms or more for a Linux peer's delayed ACK.
pub const DELACK: std::time::Duration = std::time::Duration::from_millis(1);

/// Send the ACKs owed for data of this tap batch (one per flow), after
/// writing what is staged.
///
/// An ACK owed only for less than one full-sized segment of data
/// ([`TcpConn::ack_deferrable`]), with no closed window to reopen, is
/// delayed instead: the flow joins `ctx.tcp_delack`, and [`delack_flush`]
/// sends what is still owed [`DELACK`] after the first of them.
pub fn flush_acks(ctx: &mut Ctx) {
    flush_stage(ctx);
    let mut i = 0;
    while i < ctx.tcp_ack_pending.len() {
        let idx = ctx.tcp_ack_pending[i] as usize;
        i += 1;
        if let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) {
            tf.ack_queued = false;
            if tf.conn.ack_deferrable()
                && !tf.wnd_wait
                && (tf.delack || ctx.tcp_delack.len() < ctx.tcp_delack.capacity())
            {
                if !tf.delack {
                    tf.delack = true;
                    ctx.tcp_delack.push(idx as u32);
                }
                ctx.counters.tcp_acks_delayed += 1;
                if ctx.tcp_delack_at.is_none() {
                    // One timer per deadline, not per flow or per sleep:
                    // the loop flushes once it is past (daemon::run_loop).
                    ctx.tcp_delack_at = Some(ctx.now + DELACK);
                    ctx.arm_fast_timer(DELACK);
                }
                continue;
            }
            refresh_wnd(tf);
            if tf.conn.ack_needed() {
                send_ack(ctx, idx, false);
            }
            // Closes the flow if done; polls for room if the window is low.
            update(ctx, idx);
        }
    }
    ctx.tcp_ack_pending.clear();
}

/// The delayed ACKs are due: send those still owed (a segment to the tap
/// carries the ACK, so most were sent already), with a fresh window.
pub fn delack_flush(ctx: &mut Ctx) {
    ctx.tcp_delack_at = None;
    let mut due = std::mem::take(&mut ctx.tcp_delack);
    for &idx in &due {
        let idx = idx as usize;
        // A flow closed since, or its slot reused by one not delayed: skipped.
        let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) else { continue };
        // Carried by a segment since, or the connection moved on (a FIN or
        // RST, acknowledged or closed by its own path): nothing to send.
        if !std::mem::take(&mut tf.delack)
            || tf.conn.seq_from_tap == tf.conn.seq_ack_to_tap
            || tf.conn.state != State::Established
        {
            continue;
        }
        refresh_wnd(tf);
        if tf.conn.ack_needed() {
            ctx.counters.tcp_delayed_acks_sent += 1;
            send_ack(ctx, idx, false);
        }
        // Polls for room if the window is low.
        update(ctx, idx);
    }
    due.clear();
    ctx.tcp_delack = due;
}

/// Send a pure ACK for flow `idx`; with `refresh`, read the socket's room
/// first (callers that just did so pass false: two syscalls saved).
fn send_ack(ctx: &mut Ctx, idx: usize, refresh: bool) {
    let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) else { return };
    if refresh {
        refresh_wnd(tf);
    }
    let s = tf.conn.ack_segment();
    log::trace!("TCP flow {idx}: ACK to tap seq {} ack {} wnd {}", s.seq, s.ack, s.wnd);
    send_seg(ctx, idx, &s, &[]);
}

/// Send a segment of flow `idx` without payload.
fn send_seg(ctx: &mut Ctx, idx: usize, s: &SegOut, payload: &[u8]) {
    let Some(f) = ctx.flows.get(idx) else { return };
    let tap = f.side[f.tap_side()];
    let label = match &f.data {
        FlowData::Tcp(tf) => tf.flow_label,
        _ => 0,
    };
    emit(ctx, &tap, label, s, payload);
}

/// Ethernet addresses of frames to the guest: (ours, the guest's).
type Macs = ([u8; 6], [u8; 6]);

/// Largest payload of one TCP super-frame: what a transmit slot holds
/// after the headers (65476 bytes; below the 65495 an IPv4 total length
/// allows). Super-frames carry a multiple of the MSS.
const TSO_MAX: usize = crate::tap::SLOT - frame::L4_OFF - TCP_HDR;

/// Payload bytes per transmit slot for segments of `mss` bytes: one MSS
/// without TSO, else as many whole MSS as [`TSO_MAX`] holds.
fn slot_payload(mss: usize, caps: OffloadCaps) -> usize {
    if caps.tso && mss > 0 {
        (TSO_MAX / mss).max(1) * mss
    } else {
        mss
    }
}

/// Write the TCP header for `s` at `slot[L4_OFF..]` (payload of `dlen`
/// bytes already after it), checksum, IP and Ethernet headers; returns the
/// frame's range in the slot and its offload metadata.
///
/// With `caps.csum` the checksum field holds only the folded pseudo-header
/// sum and the metadata asks the receiver to complete it (NEEDS_CSUM,
/// csum_offset 16); with `caps.tso` too, a payload of more than `mss`
/// bytes is a super-frame (GSO TCPv4/TCPv6, gso_size `mss`; virtio 1.2
/// §5.1.6.2: GSO needs the partial checksum). `mss` 0: never GSO.
#[allow(clippy::too_many_arguments)]
fn build(
    slot: &mut [u8],
    tap: &FlowSide,
    s: &SegOut,
    dlen: usize,
    hlen: usize,
    macs: Macs,
    label: u32,
    caps: OffloadCaps,
    mss: usize,
) -> (std::ops::Range<usize>, Offload) {
    let o = frame::L4_OFF;
    let h = &mut slot[o..o + hlen];
    h[0..2].copy_from_slice(&tap.oport.to_be_bytes());
    h[2..4].copy_from_slice(&tap.eport.to_be_bytes());
    h[4..8].copy_from_slice(&s.seq.to_be_bytes());
    h[8..12].copy_from_slice(&s.ack.to_be_bytes());
    h[12] = ((hlen / 4) as u8) << 4;
    h[13] = s.flags;
    h[14..16].copy_from_slice(&s.wnd.to_be_bytes());
    h[16..20].copy_from_slice(&[0, 0, 0, 0]);
    if hlen == TCP_HDR_SYN {
        let mss = s.mss.unwrap_or(536).to_be_bytes();
        h[20..24].copy_from_slice(&[2, 4, mss[0], mss[1]]);
        match s.ws {
            Some(ws) => h[24..28].copy_from_slice(&[1, 3, 3, ws]),
            None => h[24..28].copy_from_slice(&[1, 1, 1, 1]),
        }
    }
    let l4len = hlen + dlen;
    let acc = frame::pseudo(tap.oaddr, tap.eaddr, IPPROTO_TCP, l4len);
    let c = if caps.csum {
        // Partial: the pseudo-header sum, folded, not complemented.
        !csum::fold(acc)
    } else {
        csum::fold(csum::sum(acc, &slot[o..o + l4len]))
    };
    slot[o + 16..o + 18].copy_from_slice(&c.to_be_bytes());
    let addrs = frame::FrameAddrs { src_mac: macs.0, dst_mac: macs.1, src: tap.oaddr, dst: tap.eaddr };
    let r = frame::push_ip_eth(slot, l4len, &addrs, IPPROTO_TCP, label);
    let mut off = Offload::default();
    if caps.csum {
        let start = (o - r.start) as u16;
        off.csum = Some((start, offload::TCP_CSUM_OFF));
        off.hdr_len = start + hlen as u16;
        if caps.tso && mss > 0 && dlen > mss {
            off.gso = if tap.eaddr.is_v4() { GsoType::TcpV4 } else { GsoType::TcpV6 };
            off.gso_size = mss as u16;
        }
    }
    (r, off)
}

/// Queue one segment (with a copy of a small `payload`) to the tap.
fn emit(ctx: &mut Ctx, tap: &FlowSide, label: u32, s: &SegOut, payload: &[u8]) {
    if ctx.tx.is_full() {
        ctx.flush_tx();
    }
    let macs = (ctx.our_mac, ctx.guest_mac);
    let Some(slot) = ctx.tx.slot(0) else { return };
    let hlen = if s.flags & SYN != 0 { TCP_HDR_SYN } else { TCP_HDR };
    let o = frame::L4_OFF + hlen;
    let Some(dst) = slot.get_mut(o..o + payload.len()) else { return };
    dst.copy_from_slice(payload);
    let caps = ctx.tap.offloads();
    let (r, off) = build(slot, tap, s, payload.len(), hlen, macs, label, caps, 0);
    ctx.tx.commit_offload(r, off);
}

/// Move host data to the guest, as much as its window and our transmit
/// slots allow; our FIN once the socket is drained and closed.
pub fn sock_to_tap(ctx: &mut Ctx, idx: usize) {
    // Bounded: a few rounds of full batches per call, then back to epoll.
    for _ in 0..8 {
        let now = ctx.now;
        let macs = (ctx.our_mac, ctx.guest_mac);
        if ctx.tx.is_full() {
            ctx.flush_tx();
        }
        let room = ctx.tx.room();
        let caps = ctx.tap.offloads();
        let Some(f) = ctx.flows.get_mut(idx) else { return };
        let tap = f.side[f.tap_side()];
        let FlowData::Tcp(tf) = &mut f.data else { return };
        if tf.connecting || tf.conn.state != State::Established || tf.conn.tap_fin_sent {
            return;
        }
        let mss = usize::from(tf.conn.mss_to_tap);
        // One MSS per slot, or with TSO a super-frame of several.
        let cap = slot_payload(mss, caps);
        let in_flight = tf.conn.in_flight() as usize;
        let peek_off = ctx.tcp_peek_off;
        let mut budget = tf.conn.send_budget(room * cap);
        if !peek_off {
            // Without SO_PEEK_OFF what is in flight is peeked again into the
            // discard buffer: keep it within that buffer, and leave one
            // iovec for it.
            budget = budget.min(DISCARD_MAX.saturating_sub(in_flight)).min(63 * cap);
        }
        let rdhup = tf.rdhup;
        if budget == 0 {
            if tf.conn.wnd_from_tap == 0 {
                tf.conn.arm_persist(now);
            }
            return;
        }
        let fd = tf.sock.as_raw_fd();
        let nseg = budget.div_ceil(cap);
        let mut left = budget;
        let bufs = ctx.tx.free_slots().take(nseg).map(|s| {
            let n = left.min(cap);
            left -= n;
            &mut s[frame::L4_OFF + TCP_HDR..frame::L4_OFF + TCP_HDR + n]
        });
        let skip = if peek_off { 0 } else { in_flight };
        if ctx.tcp_discard.len() < skip {
            // Allocated once, on first use, only on kernels without SO_PEEK_OFF.
            ctx.tcp_discard.resize(DISCARD_MAX, 0);
        }
        let discard = ctx.tcp_discard.get_mut(..skip).into_iter();
        let peeked = sys::peek_into(fd, discard.chain(bufs));
        let got = match peeked {
            // Nothing new beyond what is in flight: like EAGAIN, or end of
            // file if the peer closed (EPOLLRDHUP seen).
            Ok(Some(n)) if n > 0 && n <= skip && rdhup => 0,
            Ok(Some(n)) if n > 0 && n <= skip => {
                if let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) {
                    tf.stalled = true;
                }
                return;
            }
            Ok(Some(n)) => n.saturating_sub(skip),
            Ok(None) => {
                if let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) {
                    tf.stalled = true;
                }
                return;
            }
            Err(e) => {
                log::debug!("TCP flow {idx}: recv: {e}");
                reset_both(ctx, idx);
                return;
            }
        };
        let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) else { return };
        if got == 0 {
            // End of file, and every byte was sent: our FIN.
            if let Some(fin) = tf.conn.fin_segment(now) {
                let label = tf.flow_label;
                emit(ctx, &tap, label, &fin, &[]);
            }
            return;
        }
        tf.stalled = false;
        if wnd_stale(tf.wnd_read_at, tf.conn.wnd_to_tap() == 0, now) {
            refresh_wnd(tf);
            tf.wnd_read_at = Some(now);
        }
        let label = tf.flow_label;
        let segs = got.div_ceil(cap);
        let mut gso = 0;
        for i in 0..segs {
            let dlen = (got - i * cap).min(cap);
            let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) else { return };
            let s = tf.conn.data_segment(now, dlen, i + 1 == segs);
            let Some(slot) = ctx.tx.slot(i) else { break };
            let (r, off) = build(slot, &tap, &s, dlen, TCP_HDR, macs, label, caps, mss);
            gso += u64::from(off.is_gso());
            ctx.tx.commit_in_offload(i, r, off);
        }
        ctx.tx.advance(segs);
        // Segments as the guest sees them (a super-frame is several).
        ctx.counters.tcp_segs_to_tap += got.div_ceil(mss) as u64;
        ctx.counters.tap_tx_gso += gso;
        if got < budget {
            // A short peek drained the socket: wait for new data on the
            // edge (EPOLLET) instead of peeking again into EAGAIN.
            if let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) {
                tf.stalled = true;
            }
            return;
        }
    }
}

/// The host socket of flow side `sidx` has events.
pub fn sock_ready(ctx: &mut Ctx, sidx: Sidx, events: u32) {
    let idx = sidx.flow();
    let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) else { return };
    if tf.connecting {
        if events & (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
            connect_done(ctx, idx);
        }
        return;
    }
    if events & libc::EPOLLERR as u32 != 0 {
        let e = sys::take_error(tf.sock.as_raw_fd());
        log::debug!("TCP flow {idx}: socket error {}", std::io::Error::from_raw_os_error(e));
        reset_both(ctx, idx);
        return;
    }
    if events & libc::EPOLLOUT as u32 != 0 {
        let mut n = tf.conn.handle_sock_writable();
        let was_waiting = std::mem::take(&mut tf.wnd_wait);
        let closed = if was_waiting || n > 0 { refresh_wnd(tf) } else { false };
        if closed && n > 0 {
            // Duplicate ACKs with a zero window make nobody retransmit:
            // owe them until the window re-check sees it open.
            tf.conn.sock_full = true;
            n = 0;
        }
        if was_waiting && n == 0 && tf.conn.wnd_grown() {
            n = 1;
        }
        // Identical ACKs (same window): after the first, duplicates.
        for _ in 0..n {
            send_ack(ctx, idx, false);
        }
        // EPOLLOUT is level-triggered: stop polling for it now. If the
        // window is still closed, re-check on the millisecond timer.
        if let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) {
            tf.wnd_wait = false;
            if closed {
                schedule_wnd_poll(ctx, idx, 1);
            }
        }
    }
    if events & (libc::EPOLLRDHUP | libc::EPOLLHUP) as u32 != 0 {
        if let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) {
            tf.rdhup = true;
        }
    }
    if events & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP) as u32 != 0 {
        sock_to_tap(ctx, idx);
    }
    update(ctx, idx);
}

/// Reset the guest's side and abort the host socket.
fn reset_both(ctx: &mut Ctx, idx: usize) {
    let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) else { return };
    let rst = tf.conn.rst_segment();
    tf.conn.close();
    sys::set_linger_zero(tf.sock.as_raw_fd());
    send_seg(ctx, idx, &rst, &[]);
    ctx.flows.close(idx);
}

/// True if [`update`] polls the socket for EPOLLIN: established, our FIN
/// not sent, and the guest's window has room.
fn wants_epollin(tf: &TcpFlow) -> bool {
    let c = &tf.conn;
    !tf.connecting && c.state == State::Established && !c.tap_fin_sent && c.send_budget(1) > 0
}

/// Bring epoll interest in line with the flow's state; close it when done.
fn update(ctx: &mut Ctx, idx: usize) {
    let Some(f) = ctx.flows.get_mut(idx) else { return };
    let sock_side = 1 - f.tap_side();
    let FlowData::Tcp(tf) = &mut f.data else { return };
    if tf.conn.is_done() {
        log::debug!("TCP flow {idx}: closed");
        ctx.flows.close(idx);
        return;
    }
    let c = &tf.conn;
    let mut ev = 0u32;
    if tf.connecting || c.sock_full || (tf.wnd_wait && c.state == State::Established && !c.tap_fin_rcvd) {
        ev |= libc::EPOLLOUT as u32;
    }
    if wants_epollin(tf) {
        ev |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        if tf.stalled {
            ev |= libc::EPOLLET as u32;
        }
    }
    if ev == tf.events {
        return;
    }
    let fd = tf.sock.as_raw_fd();
    let r = EpollRef::new(EpollType::TcpSock, fd, Sidx::new(idx as u32, sock_side).raw());
    let res = match (tf.events, ev) {
        (0, _) => ctx.epoll.add(fd, ev, r),
        (_, 0) => {
            ctx.epoll.del(fd);
            Ok(())
        }
        _ => ctx.epoll.modify(fd, ev, r),
    };
    if let Err(e) = res {
        log::debug!("TCP flow {idx}: epoll: {e}");
    }
    tf.events = ev;
}

/// Re-check the closed window of flow `idx` in `ms` milliseconds.
fn schedule_wnd_poll(ctx: &mut Ctx, idx: usize, ms: u16) {
    let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) else { return };
    if tf.wnd_poll_ms == 0 {
        if ctx.tcp_wnd_waiters.len() >= ctx.tcp_wnd_waiters.capacity() {
            // Too many at once: fall back to the guest's window probes.
            return;
        }
        ctx.tcp_wnd_waiters.push(idx as u32);
    }
    tf.wnd_poll_ms = ms;
    ctx.arm_fast_timer(std::time::Duration::from_millis(u64::from(ms)));
}

/// The millisecond timer: re-check closed windows, send updates for those
/// that opened, back off for the others.
pub fn wnd_timer(ctx: &mut Ctx) {
    let mut i = 0;
    let mut next: Option<u16> = None;
    while i < ctx.tcp_wnd_waiters.len() {
        let idx = ctx.tcp_wnd_waiters[i] as usize;
        let Some(FlowData::Tcp(tf)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) else {
            ctx.tcp_wnd_waiters.swap_remove(i);
            continue;
        };
        if tf.wnd_poll_ms == 0 || tf.conn.state != State::Established || tf.conn.tap_fin_rcvd {
            tf.wnd_poll_ms = 0;
            ctx.tcp_wnd_waiters.swap_remove(i);
            continue;
        }
        if !refresh_wnd(tf) {
            tf.wnd_poll_ms = 0;
            tf.wnd_wait = false;
            // A window update, plus the duplicates owed after a short write.
            let n = tf.conn.handle_sock_writable().max(1);
            ctx.tcp_wnd_waiters.swap_remove(i);
            for _ in 0..n {
                send_ack(ctx, idx, false);
            }
            update(ctx, idx);
            continue;
        }
        tf.wnd_wait = false;
        tf.wnd_poll_ms = (tf.wnd_poll_ms * 2).min(WND_POLL_MAX_MS);
        next = Some(next.map_or(tf.wnd_poll_ms, |n| n.min(tf.wnd_poll_ms)));
        i += 1;
    }
    if let Some(ms) = next {
        ctx.arm_fast_timer(std::time::Duration::from_millis(u64::from(ms)));
    }
}

/// True if TCP flow `tf` has a timer due at `now` (see [`timers`]).
pub fn timer_due(tf: &TcpFlow, now: std::time::Instant) -> bool {
    tf.conn.poll_timeout() <= now
}

/// Run the timers of the TCP flows in `due` (found by the periodic tick's
/// scan of the table, with [`timer_due`]).
pub fn timers(ctx: &mut Ctx, due: &[u32]) {
    let now = ctx.now;
    let mtu = ctx.mtu;
    let peek_off = ctx.tcp_peek_off;
    for &idx in due {
        let idx = idx as usize;
        let Some(f) = ctx.flows.get_mut(idx) else { continue };
        let mss = mss_max(mtu, f.side[f.tap_side()].eaddr.is_v4());
        let FlowData::Tcp(tf) = &mut f.data else { continue };
        match tf.conn.handle_timeout(now, mss) {
            TimeoutAction::None => {}
            TimeoutAction::Resend(s) | TimeoutAction::Probe(s) => send_seg(ctx, idx, &s, &[]),
            TimeoutAction::Rewind => {
                if peek_off {
                    let _ = sys::set_int_opt(tf.sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0);
                }
                ctx.counters.tcp_timeout_retransmits += 1;
                sock_to_tap(ctx, idx);
            }
            TimeoutAction::Reset => {
                log::debug!("TCP flow {idx}: timeout, resetting");
                reset_both(ctx, idx);
                continue;
            }
        }
        update(ctx, idx);
    }
}

/// Flags as a short string, for trace logs.
pub fn flags_str(f: u8) -> String {
    let mut s = String::new();
    for (b, c) in [(SYN, 'S'), (ACK, '.'), (FIN, 'F'), (RST, 'R'), (PSH, 'P')] {
        if f & b != 0 {
            s.push(c);
        }
    }
    s
}

#[cfg(test)]
mod review_tests {
    use super::*;
    use crate::daemon::{dispatch_frame, test_ctx};
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    const GUEST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const OUR_MAC: [u8; 6] = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55];
    const SPORT: u16 = 45000;

    fn seg(dport: u16, seq: u32, ack: Option<u32>, fin: bool, syn: bool, wnd: u16, data: &[u8]) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2(GUEST_MAC, OUR_MAC).ipv4([192, 0, 2, 2], [192, 0, 2, 1], 64).tcp(SPORT, dport, seq, wnd);
        if syn {
            b = b.syn().options(&[TcpOptionElement::MaximumSegmentSize(1460), TcpOptionElement::WindowScale(7)]).unwrap();
        }
        if let Some(a) = ack {
            b = b.ack(a);
        }
        if fin {
            b = b.fin();
        }
        let mut v = Vec::new();
        b.write(&mut v, data).unwrap();
        v
    }

    #[test]
    fn window_is_read_again_when_closed_old_or_never_read() {
        let t0 = std::time::Instant::now();
        let fresh = t0 + WND_REUSE / 2;
        let old = t0 + WND_REUSE;
        assert!(wnd_stale(None, false, t0), "never read");
        assert!(!wnd_stale(Some(t0), false, t0), "just read");
        assert!(!wnd_stale(Some(t0), false, fresh), "read within WND_REUSE");
        assert!(wnd_stale(Some(t0), false, old), "read WND_REUSE ago");
        assert!(wnd_stale(Some(t0), true, t0), "closed window");
        // a read stamped later than `now` (never in the loop) is fresh, no panic
        assert!(!wnd_stale(Some(fresh), false, t0));
    }

    /// (seq, ack, flags-as-fin?, payload len) of TCP frames queued to the tap.
    fn out(ctx: &Ctx) -> Vec<(u32, u32, bool, bool, usize)> {
        ctx.tx
            .frames()
            .filter_map(|f| {
                let p = SlicedPacket::from_ethernet(f).ok()?;
                let Some(TransportSlice::Tcp(t)) = p.transport else { return None };
                Some((t.sequence_number(), t.acknowledgment_number(), t.syn(), t.fin(), t.payload().len()))
            })
            .collect()
    }

    struct Setup {
        ctx: Ctx,
        idx: usize,
        port: u16,
        isn: u32,
        peer: TcpStream,
    }

    /// Payloads of the data segments queued to the tap, put in place from
    /// `base` (retransmissions must repeat the same bytes); clears the queue.
    /// Returns the FIN's offset if one was queued.
    fn take_payloads(ctx: &mut Ctx, base: u32, got: &mut Vec<u8>) -> Option<usize> {
        let mut fin = None;
        for f in ctx.tx.frames() {
            let p = SlicedPacket::from_ethernet(f).unwrap();
            let Some(TransportSlice::Tcp(t)) = p.transport else { continue };
            let off = t.sequence_number().wrapping_sub(base) as usize;
            let d = t.payload();
            assert!(off <= got.len(), "a hole before offset {off} (have {})", got.len());
            let overlap = (got.len() - off).min(d.len());
            assert_eq!(&got[off..off + overlap], &d[..overlap], "a retransmission with other bytes at {off}");
            got.extend_from_slice(&d[overlap..]);
            if t.fin() {
                fin = Some(off + d.len());
            }
        }
        ctx.tx.clear();
        fin
    }

    #[test]
    fn download_without_so_peek_off_skips_in_flight_bytes_and_keeps_order() {
        download_with_bytes_in_flight(false);
    }

    #[test]
    fn download_with_so_peek_off_and_bytes_in_flight_keeps_order() {
        download_with_bytes_in_flight(true);
    }

    fn download_with_bytes_in_flight(peek_off: bool) {
        use std::io::Write;
        let mut s = establish(None);
        s.ctx.tcp_peek_off = peek_off;
        if !peek_off {
            // As on a kernel without SO_PEEK_OFF for TCP: peeks from the head.
            let Some(FlowData::Tcp(tf)) = s.ctx.flows.get(s.idx).map(|f| &f.data) else { panic!("flow gone") };
            sys::set_int_opt(tf.sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEEK_OFF, -1).unwrap();
        }
        // A guest window of 500 << 7 = 64000 bytes: one peek fits the 64
        // transmit slots, so every segment stays in ctx.tx for the test.
        dispatch_frame(&mut s.ctx, &seg(s.port, 1001, Some(s.isn.wrapping_add(1)), false, false, 500, &[]));
        s.ctx.tx.clear();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(7) % 251) as u8).collect();
        s.peer.write_all(&data).unwrap();
        s.peer.shutdown(std::net::Shutdown::Write).unwrap();
        let base = s.isn.wrapping_add(1);
        let (mut got, mut fin) = (Vec::new(), None);
        let sidx = Sidx::new(s.idx as u32, TGT);
        // Bounded at ~6 s: the host peer may wait for its persist timer when
        // our receive window closed while bytes were held for the guest.
        for round in 0..6000 {
            std::thread::sleep(Duration::from_millis(1));
            // The socket's real readiness, as epoll would report it.
            let Some(FlowData::Tcp(tf)) = s.ctx.flows.get(s.idx).map(|f| &f.data) else { panic!("flow gone") };
            let fd = tf.sock.as_raw_fd();
            let mut pfd = libc::pollfd { fd, events: libc::POLLIN | libc::POLLRDHUP, revents: 0 };
            // SAFETY: one valid pollfd, zero timeout.
            unsafe { libc::poll(&mut pfd, 1, 0) };
            let mut ev = 0u32;
            if pfd.revents & libc::POLLIN != 0 {
                ev |= libc::EPOLLIN as u32;
            }
            if pfd.revents & libc::POLLRDHUP != 0 {
                ev |= libc::EPOLLRDHUP as u32;
            }
            if ev != 0 {
                sock_ready(&mut s.ctx, sidx, ev);
            }
            fin = fin.or(take_payloads(&mut s.ctx, base, &mut got));
            if fin.is_some() {
                let mut q: libc::c_int = 0;
                // SAFETY: FIONREAD writes one int.
                unsafe { libc::ioctl(fd, libc::FIONREAD, &mut q) };
                assert_eq!(fin, Some(data.len()), "FIN early: socket still holds {q} bytes, got {}", got.len());
                break;
            }
            // Every other round the guest acknowledges all but the last
            // 3000 bytes it has (later peeks start with bytes in flight),
            // else everything, as a real guest soon does.
            let held = if round % 2 == 0 { 3000 } else { 0 };
            let ack = base.wrapping_add(got.len().saturating_sub(held) as u32);
            dispatch_frame(&mut s.ctx, &seg(s.port, 1001, Some(ack), false, false, 500, &[]));
            fin = fin.or(take_payloads(&mut s.ctx, base, &mut got));
        }
        assert!(fin.is_some(), "our FIN after the peer's end of file ({} of {} bytes)", got.len(), data.len());
        assert!(got == data, "bytes reordered or repeated");
        assert_eq!(!s.ctx.tcp_discard.is_empty(), !peek_off, "the discard buffer is used without SO_PEEK_OFF only");
    }

    fn establish(rcvbuf: Option<i32>) -> Setup {
        let mut ctx = test_ctx().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        if let Some(r) = rcvbuf {
            sys::set_int_opt(l.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, r).unwrap();
        }
        let port = l.local_addr().unwrap().port();
        dispatch_frame(&mut ctx, &seg(port, 1000, None, false, true, 65535, &[]));
        let side = FlowSide { eaddr: Inany::from(std::net::Ipv4Addr::new(192, 0, 2, 2)), eport: SPORT, oaddr: Inany::from(std::net::Ipv4Addr::new(192, 0, 2, 1)), oport: port };
        let idx = ctx.flows.lookup(Pif::Tap, Proto::Tcp, &side).expect("flow").flow();
        for _ in 0..100 {
            if out(&ctx).iter().any(|o| o.2) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            sock_ready(&mut ctx, Sidx::new(idx as u32, TGT), libc::EPOLLOUT as u32);
        }
        let synack = *out(&ctx).iter().find(|o| o.2).expect("SYN-ACK");
        assert_eq!(synack.1, 1001);
        let isn = synack.0;
        ctx.tx.clear();
        let (peer, _) = l.accept().unwrap();
        dispatch_frame(&mut ctx, &seg(port, 1001, Some(isn.wrapping_add(1)), false, false, 4096, &[]));
        flush_acks(&mut ctx);
        ctx.tx.clear();
        Setup { ctx, idx, port, isn, peer }
    }

    #[test]
    fn epollin_is_not_left_armed_while_all_host_data_is_in_flight() {
        let mut s = establish(None);
        use std::io::Write;
        s.peer.write_all(b"hello").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        sock_ready(&mut s.ctx, Sidx::new(s.idx as u32, TGT), libc::EPOLLIN as u32);
        assert_eq!(out(&s.ctx).iter().map(|o| o.4).sum::<usize>(), 5, "data went to the tap");
        s.ctx.tx.clear();
        // The guest has not acknowledged yet: nothing more can be done.
        let mut spins = 0;
        for _ in 0..1000 {
            let mut ev = [libc::epoll_event { events: 0, u64: 0 }; crate::epoll::EPOLL_EVENTS];
            let n = s.ctx.epoll.wait(&mut ev, 0).unwrap();
            if n == 0 {
                break;
            }
            spins += 1;
            sock_ready(&mut s.ctx, Sidx::new(s.idx as u32, TGT), ev[0].events);
            assert!(s.ctx.tx.is_empty(), "wakeups do nothing");
        }
        assert!(spins <= 2, "epoll_wait returned the idle socket {spins} times in a row (busy loop)");
    }

    #[test]
    fn fin_and_new_data_after_a_drained_socket_reach_the_guest() {
        // A short peek drains the socket (edge-triggered from then on, and
        // the guest's ACKs don't peek again): more data, then the peer's
        // FIN, must still reach the guest, in order, through the edges.
        let mut s = establish(None);
        use std::io::Write;
        s.peer.write_all(b"hello").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let sidx = Sidx::new(s.idx as u32, TGT);
        sock_ready(&mut s.ctx, sidx, libc::EPOLLIN as u32);
        assert_eq!(out(&s.ctx).iter().map(|o| o.4).sum::<usize>(), 5);
        assert!(
            tf(&mut s.ctx, s.idx).stalled,
            "a short peek drained the socket"
        );
        assert!(
            tf(&mut s.ctx, s.idx).events & libc::EPOLLET as u32 != 0,
            "polled on the edge"
        );
        s.ctx.tx.clear();
        // The guest's ACK finds nothing to send (no peek into EAGAIN).
        let mut seq = s.isn.wrapping_add(1 + 5);
        dispatch_frame(
            &mut s.ctx,
            &seg(s.port, 1001, Some(seq), false, false, 4096, &[]),
        );
        assert!(
            out(&s.ctx).iter().all(|o| o.4 == 0),
            "no data without new data"
        );
        s.ctx.tx.clear();
        s.peer.write_all(b"world").unwrap();
        s.peer.shutdown(std::net::Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let mut ev = [libc::epoll_event { events: 0, u64: 0 }; crate::epoll::EPOLL_EVENTS];
        let mut fin = None;
        let mut got = 0;
        for _ in 0..10 {
            let n = s.ctx.epoll.wait(&mut ev, 10).unwrap();
            for e in &ev[..n] {
                sock_ready(&mut s.ctx, sidx, e.events);
            }
            for o in out(&s.ctx) {
                if o.4 > 0 {
                    assert_eq!(o.0, seq, "data in order");
                    seq = seq.wrapping_add(o.4 as u32);
                    got += o.4;
                }
                if o.3 {
                    fin = Some(o.0);
                }
            }
            s.ctx.tx.clear();
            dispatch_frame(
                &mut s.ctx,
                &seg(s.port, 1001, Some(seq), false, false, 4096, &[]),
            );
            for o in out(&s.ctx) {
                if o.3 {
                    fin = Some(o.0);
                }
            }
            s.ctx.tx.clear();
            if fin.is_some() {
                break;
            }
        }
        assert_eq!(got, 5, "the new data, reported by the edge");
        assert_eq!(
            fin,
            Some(s.isn.wrapping_add(1 + 10)),
            "our FIN after all the data"
        );
    }

    /// A request of 64 bytes from the guest, written to the peer.
    fn request(s: &mut Setup) {
        dispatch_frame(&mut s.ctx, &seg(s.port, 1001, Some(s.isn.wrapping_add(1)), false, false, 4096, &[7; 64]));
        flush_acks(&mut s.ctx);
        let mut b = [0u8; 64];
        s.peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.peer.read_exact(&mut b).unwrap();
        assert_eq!(b, [7; 64], "the request reached the peer");
    }

    #[test]
    fn small_request_ack_waits_for_the_reply_to_carry_it() {
        use std::io::Write;
        let mut s = establish(None);
        request(&mut s);
        assert!(out(&s.ctx).is_empty(), "no pure ACK for 64 bytes: {:?}", out(&s.ctx));
        assert_eq!(s.ctx.counters.tcp_acks_delayed, 1);
        let at = s.ctx.tcp_delack_at.expect("a deadline");
        assert_eq!(at, s.ctx.now + DELACK);
        s.peer.write_all(&[9; 64]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        sock_ready(&mut s.ctx, Sidx::new(s.idx as u32, TGT), libc::EPOLLIN as u32);
        let o = out(&s.ctx);
        assert_eq!(o.len(), 1, "one segment: the reply {o:?}");
        assert_eq!((o[0].1, o[0].4), (1001 + 64, 64), "the reply acknowledges the request");
        s.ctx.tx.clear();
        s.ctx.now = at;
        delack_flush(&mut s.ctx);
        assert!(out(&s.ctx).is_empty(), "nothing owed at the deadline");
        assert_eq!(s.ctx.counters.tcp_delayed_acks_sent, 0);
        assert!(s.ctx.tcp_delack_at.is_none() && s.ctx.tcp_delack.is_empty());
        assert!(!tf(&mut s.ctx, s.idx).delack);
    }

    #[test]
    fn delayed_ack_without_a_reply_goes_at_the_deadline() {
        let mut s = establish(None);
        request(&mut s);
        assert!(out(&s.ctx).is_empty());
        // More small data before the deadline: still one delayed ACK.
        dispatch_frame(&mut s.ctx, &seg(s.port, 1065, Some(s.isn.wrapping_add(1)), false, false, 4096, &[8; 100]));
        flush_acks(&mut s.ctx);
        assert!(out(&s.ctx).is_empty());
        assert_eq!((s.ctx.counters.tcp_acks_delayed, s.ctx.tcp_delack.len()), (2, 1), "two ACKs held, one flow listed");
        s.ctx.now += DELACK;
        delack_flush(&mut s.ctx);
        let o = out(&s.ctx);
        assert_eq!(o.len(), 1, "one pure ACK {o:?}");
        assert_eq!((o[0].1, o[0].4), (1001 + 164, 0), "it acknowledges all the data");
        assert_eq!(s.ctx.counters.tcp_delayed_acks_sent, 1);
        // Nothing left: a second flush sends nothing.
        s.ctx.tx.clear();
        delack_flush(&mut s.ctx);
        assert!(out(&s.ctx).is_empty());
    }

    #[test]
    fn a_full_segment_and_a_fin_are_acknowledged_at_once() {
        let mut s = establish(None);
        let ack = Some(s.isn.wrapping_add(1));
        // The guest's MSS (its SYN said 1460): one full segment.
        dispatch_frame(&mut s.ctx, &seg(s.port, 1001, ack, false, false, 4096, &pattern(0, 1460)));
        flush_acks(&mut s.ctx);
        let o = out(&s.ctx);
        assert_eq!(o.iter().map(|o| (o.1, o.4)).collect::<Vec<_>>(), [(1001 + 1460, 0)], "ACK now");
        s.ctx.tx.clear();
        // A few bytes with the guest's FIN.
        dispatch_frame(&mut s.ctx, &seg(s.port, 2461, ack, true, false, 4096, &[1; 10]));
        flush_acks(&mut s.ctx);
        let o = out(&s.ctx);
        assert_eq!(o.last().map(|o| o.1), Some(2461 + 10 + 1), "data and FIN acknowledged now: {o:?}");
        assert_eq!(s.ctx.counters.tcp_acks_delayed, 0);
        assert!(s.ctx.tcp_delack_at.is_none());
    }

    #[test]
    fn delayed_ack_of_a_closed_flow_is_dropped() {
        let mut s = establish(None);
        request(&mut s);
        assert_eq!(s.ctx.tcp_delack.len(), 1);
        // The guest resets the connection before the deadline.
        let mut rst = Vec::new();
        PacketBuilder::ethernet2(GUEST_MAC, OUR_MAC)
            .ipv4([192, 0, 2, 2], [192, 0, 2, 1], 64)
            .tcp(SPORT, s.port, 1065, 0)
            .rst()
            .write(&mut rst, &[])
            .unwrap();
        dispatch_frame(&mut s.ctx, &rst);
        assert_eq!(tf(&mut s.ctx, s.idx).conn.state, State::Closed, "flow closed by the RST");
        s.ctx.now += DELACK;
        delack_flush(&mut s.ctx);
        assert!(out(&s.ctx).is_empty(), "no ACK for a closed flow");
        assert_eq!(s.ctx.counters.tcp_delayed_acks_sent, 0);
    }

    fn tf(ctx: &mut Ctx, idx: usize) -> &mut TcpFlow {
        match ctx.flows.get_mut(idx).map(|f| &mut f.data) {
            Some(FlowData::Tcp(t)) => t,
            _ => panic!("not TCP"),
        }
    }

    fn pattern(off: usize, n: usize) -> Vec<u8> {
        (off..off + n).map(|i| (i % 251) as u8).collect()
    }

    fn read_all(peer: &mut TcpStream) -> (Vec<u8>, bool) {
        peer.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 65536];
        loop {
            match peer.read(&mut b) {
                Ok(0) => return (got, true),
                Ok(n) => got.extend_from_slice(&b[..n]),
                Err(_) => return (got, false),
            }
        }
    }

    #[test]
    fn fin_after_staged_data_that_the_socket_refused_in_part_does_not_truncate_the_stream() {
        let mut s = establish(Some(4096));
        let fd = tf(&mut s.ctx, s.idx).sock.as_raw_fd();
        sys::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 4096).unwrap();
        let ack = Some(s.isn.wrapping_add(1));
        let total = 40 * 1400;
        s.ctx.in_batch = true;
        for i in 0..40 {
            dispatch_frame(&mut s.ctx, &seg(s.port, 1001 + (i * 1400) as u32, ack, false, false, 4096, &pattern(i * 1400, 1400)));
        }
        dispatch_frame(&mut s.ctx, &seg(s.port, 1001 + total as u32, ack, true, false, 4096, &[]));
        s.ctx.in_batch = false;
        flush_acks(&mut s.ctx);
        let acks: Vec<_> = out(&s.ctx).iter().map(|o| o.1.wrapping_sub(1001)).collect();
        let (got, eof) = read_all(&mut s.peer);
        eprintln!("ACKs to guest (relative): {acks:?}; peer got {} bytes, eof {eof}", got.len());
        assert_eq!(got, pattern(0, got.len()), "received bytes are a prefix of the stream");
        assert!(!eof || got.len() == total, "peer saw EOF after {} of {total} bytes: stream truncated", got.len());
    }

    #[test]
    fn staged_data_after_a_short_flush_is_not_written_past_a_gap() {
        let mut s = establish(Some(4096));
        let fd = tf(&mut s.ctx, s.idx).sock.as_raw_fd();
        sys::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 4096).unwrap();
        let ack = Some(s.isn.wrapping_add(1));
        s.ctx.in_batch = true;
        // 47 x 1400 > 64 KiB: the 47th forces a flush, which is short.
        for i in 0..47 {
            dispatch_frame(&mut s.ctx, &seg(s.port, 1001 + (i * 1400) as u32, ack, false, false, 4096, &pattern(i * 1400, 1400)));
        }
        // The host application reads meanwhile (another CPU in real life).
        let mut got = Vec::new();
        s.peer.set_nonblocking(true).unwrap();
        let mut b = [0u8; 65536];
        for _ in 0..20 {
            while let Ok(n) = s.peer.read(&mut b) {
                if n == 0 { break; }
                got.extend_from_slice(&b[..n]);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        s.peer.set_nonblocking(false).unwrap();
        s.ctx.in_batch = false;
        flush_acks(&mut s.ctx);
        let (more, _) = read_all(&mut s.peer);
        got.extend_from_slice(&more);
        let acks: Vec<_> = out(&s.ctx).iter().map(|o| o.1.wrapping_sub(1001)).collect();
        eprintln!("ACKs to guest (relative): {acks:?}; peer got {} bytes", got.len());
        let first_bad = got.iter().zip(pattern(0, got.len())).position(|(a, b)| *a != b);
        assert_eq!(first_bad, None, "peer's stream differs from the guest's from byte {first_bad:?}");
    }

    /// Dispatch `frames` as one tap batch, the stage pinned on them as the
    /// tap reader does, then flush and send the ACKs.
    fn pinned_batch(ctx: &mut Ctx, frames: &[Vec<u8>]) {
        // SAFETY: frames outlives the batch.
        unsafe { crate::daemon::begin_pinned_batch(ctx) };
        for f in frames {
            dispatch_frame(ctx, f);
        }
        crate::daemon::end_pinned_batch(ctx);
        flush_acks(ctx);
    }

    #[test]
    fn pinned_batch_of_large_segments_goes_in_one_sendmsg_byte_exact() {
        let mut s = establish(None);
        let ack = Some(s.isn.wrapping_add(1));
        let n = 5;
        let dlen = 20_000;
        let frames: Vec<_> = (0..n)
            .map(|i| {
                seg(
                    s.port,
                    1001 + (i * dlen) as u32,
                    ack,
                    false,
                    false,
                    4096,
                    &pattern(i * dlen, dlen),
                )
            })
            .collect();
        pinned_batch(&mut s.ctx, &frames);
        assert_eq!(
            (
                s.ctx.counters.tcp_batched_writes,
                s.ctx.counters.tcp_batched_segs
            ),
            (1, n as u64)
        );
        assert_eq!(s.ctx.counters.tcp_short_writes, 0);
        let acks = out(&s.ctx);
        assert_eq!(acks.len(), 1, "one ACK for the batch: {acks:?}");
        assert_eq!(acks[0].1, 1001 + (n * dlen) as u32);
        let mut got = vec![0u8; n * dlen];
        s.peer
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        s.peer.read_exact(&mut got).unwrap();
        assert!(got == pattern(0, n * dlen), "the stream differs");
    }

    #[test]
    fn pinned_stage_taken_in_part_keeps_the_stream_exact_and_acks_only_what_was_written() {
        let mut s = establish(Some(4096));
        let fd = tf(&mut s.ctx, s.idx).sock.as_raw_fd();
        sys::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 4096).unwrap();
        let ack = Some(s.isn.wrapping_add(1));
        // 60 x 1400 bytes: far more than the socket takes at once.
        let frames: Vec<_> = (0..60)
            .map(|i| {
                seg(
                    s.port,
                    1001 + (i * 1400) as u32,
                    ack,
                    false,
                    false,
                    4096,
                    &pattern(i * 1400, 1400),
                )
            })
            .collect();
        pinned_batch(&mut s.ctx, &frames);
        assert_eq!(s.ctx.counters.tcp_batched_writes, 1);
        assert_eq!(
            s.ctx.counters.tcp_short_writes, 1,
            "the socket took only part"
        );
        let acked = out(&s.ctx)
            .iter()
            .map(|o| o.1.wrapping_sub(1001))
            .max()
            .unwrap_or(0) as usize;
        let (got, _) = read_all(&mut s.peer);
        assert!(acked < 60 * 1400, "not everything acknowledged");
        assert!(
            got.len() >= acked,
            "acknowledged {acked} but the peer got {}",
            got.len()
        );
        assert!(
            got == pattern(0, got.len()),
            "received bytes are a prefix of the stream"
        );
        // The guest resends from the ACK: the rest arrives, in order.
        let total = 60 * 1400;
        let mut all = got;
        let mut from = acked;
        // Bounded: each round the peer drains the socket, so it takes more.
        for _ in 0..200 {
            if from >= total {
                break;
            }
            s.ctx.tx.clear();
            let rest: Vec<_> = (from..total)
                .step_by(1400)
                .take(4)
                .map(|o| {
                    seg(
                        s.port,
                        1001 + o as u32,
                        ack,
                        false,
                        false,
                        4096,
                        &pattern(o, 1400.min(total - o)),
                    )
                })
                .collect();
            pinned_batch(&mut s.ctx, &rest);
            let (more, _) = read_all(&mut s.peer);
            all.extend_from_slice(&more);
            from = out(&s.ctx)
                .iter()
                .map(|o| o.1.wrapping_sub(1001) as usize)
                .max()
                .unwrap_or(from)
                .max(from);
        }
        assert_eq!(from, total, "everything acknowledged in the end");
        assert_eq!(all.len(), total);
        assert!(all == pattern(0, total), "stream exact after the resends");
    }

    #[test]
    fn stage_decisions() {
        let mut st = Stage::new();
        // Unpinned: copies below STAGE_BELOW, within 64 KiB; adjacent copies share an iovec.
        assert!(!st.can_take(7, 0));
        assert!(!st.can_take(7, STAGE_BELOW));
        assert!(st.can_take(7, STAGE_BELOW - 1));
        let a = [1u8; 1000];
        st.push(7, &a);
        st.push(7, &a);
        let s7 = st.slot(7).unwrap();
        assert_eq!((st.slots[s7].iov.len(), st.slots[s7].len, st.slots[s7].segs), (1, 2000, 2));
        for _ in 0..63 {
            if st.can_take(7, 1000) {
                st.push(7, &a);
            }
        }
        assert_eq!(st.slots[s7].len, 65000, "the copy buffer bounds a flow's slot");
        assert!(!st.can_take(7, 1000));
        assert!(st.can_take(8, 1000), "another flow has its own slot");
        for s in &mut st.slots {
            s.clear();
        }
        // Pinned: any length, one iovec per segment, at most STAGE_IOV of them.
        let big = vec![2u8; 65000];
        // SAFETY: big outlives the stage's use here (cleared below, never written).
        unsafe { st.pin(true) };
        assert!(st.can_take(7, 65000));
        for _ in 0..STAGE_IOV {
            assert!(st.can_take(7, big.len()));
            st.push(7, &big);
        }
        let s7 = st.slot(7).unwrap();
        assert_eq!((st.slots[s7].iov.len(), st.slots[s7].segs), (STAGE_IOV, STAGE_IOV));
        assert!(!st.can_take(7, 1), "iovec limit");
        st.slots[s7].clear();
        let huge = vec![0u8; STAGE_MAX];
        assert!(st.can_take(7, huge.len()));
        st.push(7, &huge);
        assert!(!st.can_take(7, 1), "byte limit");
        assert!(!st.can_take(8, STAGE_MAX + 1));
        // Flows get slots until STAGE_FLOWS are taken.
        for f in 1..STAGE_FLOWS {
            st.push(100 + f, &a);
        }
        assert!(st.slots.iter().all(|s| s.idx.is_some()), "all slots taken");
        for s in &mut st.slots {
            s.clear();
        }
        // SAFETY: empty.
        unsafe { st.pin(false) };
    }

    #[test]
    fn syn_from_tap_with_the_table_full_gets_an_rst_and_no_host_connection() {
        let mut ctx = crate::daemon::test_ctx_flows(1).unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        // Fill the table with a UDP flow.
        let mut udp = Vec::new();
        PacketBuilder::ethernet2(GUEST_MAC, OUR_MAC).ipv4([192, 0, 2, 2], [192, 0, 2, 1], 64).udp(40000, 9).write(&mut udp, b"x").unwrap();
        dispatch_frame(&mut ctx, &udp);
        assert_eq!(ctx.flows.len(), 1);
        dispatch_frame(&mut ctx, &seg(port, 1000, None, false, true, 65535, &[]));
        assert_eq!(ctx.counters.drop_flow_table_full, 1);
        assert_eq!(ctx.counters.tcp_flows, 0);
        let f: Vec<Vec<u8>> = ctx.tx.frames().map(|f| f.to_vec()).collect();
        assert_eq!(f.len(), 1);
        let p = etherparse::SlicedPacket::from_ethernet(&f[0]).unwrap();
        let Some(etherparse::TransportSlice::Tcp(t)) = p.transport else { panic!("not TCP") };
        assert!(t.rst(), "RST");
        assert_eq!((t.source_port(), t.destination_port()), (port, SPORT));
        assert!(t.ack() && t.acknowledgment_number() == 1001, "RST acknowledges the SYN");
        std::thread::sleep(Duration::from_millis(50));
        assert!(l.accept().is_err(), "the host never saw a connection");
    }

    /// A back-end that takes partial checksums and TCP super-frames.
    struct OffloadTap(crate::tap::NoTap);

    impl crate::tap::Tap for OffloadTap {
        fn poll_fds(&self, out: &mut Vec<crate::tap::PollFd>) {
            self.0.poll_fds(out)
        }
        fn event(&mut self, id: u32, events: u32) -> Result<crate::tap::TapEvent, crate::tap::TapError> {
            self.0.event(id, events)
        }
        fn recv_batch(&mut self, rx: &mut crate::tap::RxBatch) -> Result<usize, crate::tap::TapError> {
            self.0.recv_batch(rx)
        }
        fn send_batch(&mut self, tx: &crate::tap::TxBatch) -> Result<crate::tap::TxResult, crate::tap::TapError> {
            self.0.send_batch(tx)
        }
        fn offloads(&self) -> OffloadCaps {
            OffloadCaps { csum: true, tso: true, uso: false }
        }
    }

    /// Host data to the guest, with a back-end taking offloads or not:
    /// returns (payload, metadata) of every frame, after checking each
    /// checksum (completed as the kernel would for partial ones).
    fn download_frames(offload: bool, len: usize) -> Vec<(Vec<u8>, Offload)> {
        use std::io::Write;
        let mut s = establish(None);
        if offload {
            s.ctx.tap = Box::new(OffloadTap(crate::tap::NoTap::new().unwrap()));
        }
        // Window 65535 << 7: about 8 MiB.
        dispatch_frame(&mut s.ctx, &seg(s.port, 1001, Some(s.isn.wrapping_add(1)), false, false, 65535, &[]));
        s.ctx.tx.clear();
        let data: Vec<u8> = (0..len as u32).map(|i| (i.wrapping_mul(13) % 251) as u8).collect();
        s.peer.write_all(&data).unwrap();
        let sidx = Sidx::new(s.idx as u32, TGT);
        let mut frames = Vec::new();
        let mut got = 0;
        for _ in 0..500 {
            if got >= len {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
            sock_ready(&mut s.ctx, sidx, libc::EPOLLIN as u32);
            for (f, m) in s.ctx.tx.frames_offload() {
                let p = SlicedPacket::from_ethernet(f).unwrap();
                let Some(TransportSlice::Tcp(t)) = p.transport else { panic!("not TCP") };
                let payload = t.payload().to_vec();
                let l4_start = t.slice().as_ptr() as usize - f.as_ptr() as usize;
                let l4len = t.slice().len();
                let mut f = f.to_vec();
                if let Some((start, off)) = m.csum {
                    // What the receiver does (Linux skb_checksum_help): sum
                    // from csum_start, complement, store.
                    let (start, off) = (start as usize, off as usize);
                    assert_eq!((start, off), (l4_start, 16));
                    let c = csum::fold(csum::sum(0, &f[start..]));
                    f[start + off..start + off + 2].copy_from_slice(&c.to_be_bytes());
                }
                let acc = frame::pseudo(Inany::from(std::net::Ipv4Addr::new(192, 0, 2, 1)), Inany::from(std::net::Ipv4Addr::new(192, 0, 2, 2)), IPPROTO_TCP, l4len);
                assert_eq!(csum::fold(csum::sum(acc, &f[l4_start..l4_start + l4len])), 0, "TCP checksum (offload {offload})");
                got += payload.len();
                frames.push((payload, m));
            }
            // Acknowledge everything so far (what that sends is checked
            // next round).
            let ack = s.isn.wrapping_add(1).wrapping_add(got as u32);
            s.ctx.tx.clear();
            dispatch_frame(&mut s.ctx, &seg(s.port, 1001, Some(ack), false, false, 65535, &[]));
        }
        let all: Vec<u8> = frames.iter().flat_map(|(p, _)| p.iter().copied()).collect();
        assert!(all == data, "payloads in order, byte-exact ({} of {len} bytes)", all.len());
        frames
    }

    #[test]
    fn sock_to_tap_sends_super_frames_of_whole_mss_with_partial_checksums() {
        let frames = download_frames(true, 300_000);
        let mss = 1460;
        let gso: Vec<_> = frames.iter().filter(|(_, m)| m.is_gso()).collect();
        assert!(!gso.is_empty(), "no super-frame");
        for (p, m) in &frames {
            assert!(p.len() <= TSO_MAX);
            assert!(m.csum.is_some(), "partial checksum on every frame");
            assert_eq!(m.hdr_len, 14 + 20 + 20);
            if p.len() > mss {
                assert_eq!((m.gso, m.gso_size), (GsoType::TcpV4, mss as u16), "{} bytes", p.len());
            } else {
                assert_eq!(m.gso, GsoType::None);
            }
        }
        // A full super-frame is a multiple of the MSS.
        assert!(gso.iter().any(|(p, _)| p.len() == (TSO_MAX / mss) * mss), "sizes {:?}", gso.iter().map(|(p, _)| p.len()).collect::<Vec<_>>());
    }

    #[test]
    fn sock_to_tap_without_offloads_sends_mss_frames_with_full_checksums() {
        // At most one transmit batch (64 frames) per call: the frames are
        // read from the batch, and a fuller one is flushed to the tap.
        let frames = download_frames(false, 80_000);
        assert!(frames.len() >= 80_000 / 1460);
        for (p, m) in &frames {
            assert!(p.len() <= 1460);
            assert_eq!(*m, Offload::default());
        }
    }

    #[test]
    fn tcp_super_frame_from_the_tap_is_written_whole() {
        let mut s = establish(None);
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
        let mut f = seg(s.port, 1001, Some(s.isn.wrapping_add(1)), false, false, 4096, &data);
        // A partial checksum (pseudo-header sum only): must not matter.
        f[34 + 16..34 + 18].copy_from_slice(&[0x12, 0x34]);
        let off = Offload { gso: GsoType::TcpV4, gso_size: 1460, hdr_len: 54, csum: Some((34, 16)), data_valid: false };
        // The wrong family first: dropped, counted, nothing written.
        crate::daemon::dispatch_frame_offload(&mut s.ctx, &f, Offload { gso: GsoType::TcpV6, ..off });
        assert_eq!(s.ctx.counters.drop_offload_malformed, 1);
        crate::daemon::dispatch_frame_offload(&mut s.ctx, &f, off);
        flush_acks(&mut s.ctx);
        assert_eq!(s.ctx.counters.tap_rx_gso, 1);
        let acks = out(&s.ctx);
        assert!(acks.iter().any(|o| o.1 == 1001 + 20_000), "the whole segment acknowledged: {acks:?}");
        let mut got = vec![0u8; data.len()];
        s.peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.peer.read_exact(&mut got).unwrap();
        assert!(got == data);
    }
}
