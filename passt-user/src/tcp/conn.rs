//! # Theory of operation
//!
//! The tap side of one TCP connection, as a sans-IO state machine (RFC
//! 9293): it never holds an fd and never reads the clock. The I/O layer
//! ([`super::io`]) feeds it segments from the tap, the results of socket
//! writes, socket events and the time, and acts on what comes back.
//!
//! Sequence numbers, with the flowside naming of upstream:
//! - towards the tap: `seq_to_tap` is the next sequence number we send,
//!   `seq_ack_from_tap` the first one the guest has not acknowledged yet
//!   (`SND.UNA`). Bytes in between are still in the host socket's receive
//!   queue: [`TcpConn::handle_tap_segment`] reports newly acknowledged
//!   bytes in [`TapAction::acked`] so that the caller discards exactly those,
//!   and a retransmission is a re-read of the socket from offset 0.
//! - from the tap: `seq_from_tap` is the next byte we expect (`RCV.NXT`):
//!   it moves only by what the host socket accepted
//!   ([`TcpConn::handle_written`]), so we never acknowledge data we could
//!   not deliver. `seq_ack_to_tap` is what we last acknowledged.
//!
//! Windows: the guest's window (`wnd_from_tap`, scaled by its shift) bounds
//! what we send; the window we advertise is set by the caller from the room
//! left in the host socket's send buffer ([`TcpConn::set_wnd_to_tap`]).
//!
//! Recovery without timeouts on the guest's side: data beyond what the
//! socket took is not acknowledged; once the socket has room again,
//! [`TcpConn::handle_sock_writable`] asks for a window update followed by
//! three duplicate ACKs, so that the guest retransmits at once (fast
//! retransmit, RFC 5681 §3.2) instead of waiting for its RTO. Out-of-order
//! segments are dropped and answered with a duplicate ACK for the same
//! reason.
//!
//! Towards the tap we retransmit on three duplicate ACKs, or when the
//! retransmission timer expires (RTO with exponential backoff, RFC 6298
//! §5); a zero window from the guest arms the same timer to send window
//! probes (RFC 9293 §3.8.6.1).
//!
//! Simplifications, as upstream: no SACK, no timestamps (PAWS/RTTM), no
//! urgent data; MSS and window scale are taken from the SYN only.

use std::ops::Range;
use std::time::{Duration, Instant};

/// FIN flag.
pub const FIN: u8 = 0x01;
/// SYN flag.
pub const SYN: u8 = 0x02;
/// RST flag.
pub const RST: u8 = 0x04;
/// PSH flag.
pub const PSH: u8 = 0x08;
/// ACK flag.
pub const ACK: u8 = 0x10;

/// Window scale we advertise to the guest (RFC 7323 §2.3): windows up to
/// 16 MiB, more than any socket send buffer we mirror.
pub const WS_TO_TAP: u8 = 8;
/// Largest window scale accepted from the guest (RFC 7323 §2.3).
pub const WS_MAX: u8 = 14;
/// MSS assumed when the guest sends none (RFC 9293 §3.7.1).
pub const MSS_DEFAULT: u16 = 536;
/// Initial retransmission timeout (RFC 6298 §2.1 says 1 s).
pub const RTO_INIT: Duration = Duration::from_secs(1);
/// Longest retransmission timeout after backoff.
pub const RTO_MAX: Duration = Duration::from_secs(60);
/// Retransmissions before giving up and resetting.
pub const MAX_RETRIES: u8 = 8;
/// Time allowed for the handshake (upstream: 10 s).
pub const SYN_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for our FIN to be acknowledged (upstream: 60 s).
pub const FIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle time after which a connection is reset (upstream: 2 h).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(7200);

/// `a < b` in sequence space (RFC 9293 §3.4, modulo 2^32).
#[inline]
pub fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a <= b` in sequence space.
#[inline]
pub fn seq_le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

/// A segment from the tap, as parsed by the caller (host byte order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegIn {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful with [`ACK`]).
    pub ack: u32,
    /// Flags ([`FIN`], [`SYN`], [`RST`], [`PSH`], [`ACK`]).
    pub flags: u8,
    /// Window field, unscaled.
    pub wnd: u16,
    /// Payload length in bytes.
    pub dlen: usize,
    /// MSS option (SYN only).
    pub mss: Option<u16>,
    /// Window scale option (SYN only).
    pub ws: Option<u8>,
}

/// Header fields of a segment to send to the tap (host byte order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegOut {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags.
    pub flags: u8,
    /// Window field, already scaled down.
    pub wnd: u16,
    /// MSS option to include (SYN segments).
    pub mss: Option<u16>,
    /// Window scale option to include (SYN segments).
    pub ws: Option<u8>,
}

/// Where the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Guest sent SYN; we are connecting the host socket.
    SynFromTap,
    /// We sent SYN-ACK to the guest; waiting for its ACK.
    SynAckSent,
    /// Host-initiated: we sent SYN to the guest; waiting for SYN-ACK.
    SynToTap,
    /// Both sides synchronised.
    Established,
    /// Reset or fully closed: the flow can go.
    Closed,
}

/// What the caller must do after a segment from the tap.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TapAction {
    /// Payload bytes (offsets in the segment's payload) to write to the
    /// host socket, in order; then report with [`TcpConn::handle_written`].
    pub write: Range<usize>,
    /// The guest's FIN follows `write`: shut the socket down for writing
    /// once all of `write` went through.
    pub fin: bool,
    /// The guest reset the connection: abort the socket (RST to the host).
    pub reset: bool,
    /// Bytes of host data the guest newly acknowledged: discard them from
    /// the socket's receive queue.
    pub acked: u32,
    /// Resend from the first unacknowledged byte (fast retransmit).
    pub rewind: bool,
    /// Send an ACK now (duplicate ACK, challenge ACK, handshake).
    pub ack_now: bool,
    /// The handshake completed with this segment.
    pub established: bool,
    /// The guest's window opened or data was acknowledged: try sending.
    pub can_send: bool,
    /// A segment to send back right away (SYN-ACK retransmission).
    pub reply: Option<SegOut>,
}

/// What the caller must do when the timer expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutAction {
    /// Nothing to do (the deadline moved).
    None,
    /// Resend this handshake segment.
    Resend(SegOut),
    /// Resend data from the first unacknowledged byte.
    Rewind,
    /// Send this window probe (zero window from the guest).
    Probe(SegOut),
    /// Give up: reset both sides.
    Reset,
}

/// One connection's tap-side state; see the module documentation.
#[derive(Debug, Clone)]
pub struct TcpConn {
    /// Handshake state.
    pub state: State,
    isn: u32,
    /// Next sequence number we send to the tap.
    pub seq_to_tap: u32,
    /// First sequence number not acknowledged by the guest (SND.UNA).
    pub seq_ack_from_tap: u32,
    /// Next sequence number expected from the tap (RCV.NXT).
    pub seq_from_tap: u32,
    /// Last acknowledgement number sent to the tap.
    pub seq_ack_to_tap: u32,
    /// The guest's window in bytes (scaled).
    pub wnd_from_tap: u32,
    /// The guest's window scale shift (0: no scaling).
    pub ws_from_tap: u8,
    /// Our window scale shift towards the guest (0: no scaling).
    pub ws_to_tap: u8,
    /// Largest payload per segment to the guest (its MSS, bounded by ours).
    pub mss_to_tap: u16,
    /// Window we want to advertise, in bytes.
    wnd_to_tap: u32,
    /// Window field we last advertised, in bytes.
    wnd_adv: u32,
    /// The guest's FIN was consumed and the socket shut down for writing.
    pub tap_fin_rcvd: bool,
    /// The host socket reached end of file.
    pub sock_eof: bool,
    /// Our FIN went to the guest (at `fin_seq`).
    pub tap_fin_sent: bool,
    fin_seq: u32,
    /// The guest acknowledged our FIN.
    pub tap_fin_acked: bool,
    dup_acks: u8,
    retries: u8,
    rto_at: Option<Instant>,
    expire_at: Instant,
    /// The host socket refused part of a write: window update and
    /// duplicate ACKs owed once it is writable again.
    pub sock_full: bool,
}

fn scaled(wnd_bytes: u32, shift: u8) -> u16 {
    (wnd_bytes >> shift).min(u32::from(u16::MAX)) as u16
}

impl TcpConn {
    fn base(now: Instant, isn: u32, state: State, expire: Duration) -> Self {
        TcpConn {
            state,
            isn,
            seq_to_tap: isn,
            seq_ack_from_tap: isn,
            seq_from_tap: 0,
            seq_ack_to_tap: 0,
            wnd_from_tap: 0,
            ws_from_tap: 0,
            ws_to_tap: 0,
            mss_to_tap: MSS_DEFAULT,
            wnd_to_tap: 0,
            wnd_adv: 0,
            tap_fin_rcvd: false,
            sock_eof: false,
            tap_fin_sent: false,
            fin_seq: 0,
            tap_fin_acked: false,
            dup_acks: 0,
            retries: 0,
            rto_at: None,
            expire_at: now + expire,
            sock_full: false,
        }
    }

    /// A connection opened by the guest's SYN `syn` (no ACK, no RST; checked
    /// by the caller), with our initial sequence number `isn` (RFC 6528) and
    /// `mss_max` the largest payload the tap takes. The caller connects the
    /// host socket and then calls [`TcpConn::handle_connected`].
    pub fn from_tap_syn(now: Instant, syn: &SegIn, isn: u32, mss_max: u16) -> Self {
        let mut c = TcpConn::base(now, isn, State::SynFromTap, SYN_TIMEOUT);
        c.seq_from_tap = syn.seq.wrapping_add(1);
        c.seq_ack_to_tap = c.seq_from_tap;
        if let Some(ws) = syn.ws {
            c.ws_from_tap = ws.min(WS_MAX);
            c.ws_to_tap = WS_TO_TAP;
        }
        c.mss_to_tap = syn.mss.unwrap_or(MSS_DEFAULT).clamp(64, mss_max.max(64));
        // The window in a SYN is never scaled (RFC 7323 §2.2).
        c.wnd_from_tap = u32::from(syn.wnd);
        c
    }

    /// The host socket connected: the SYN-ACK for the guest. `mss_max` is
    /// the MSS we announce (the tap's MTU less headers).
    pub fn handle_connected(&mut self, now: Instant, mss_max: u16) -> SegOut {
        self.state = State::SynAckSent;
        self.seq_to_tap = self.isn.wrapping_add(1);
        self.seq_ack_from_tap = self.isn;
        self.rto_at = Some(now + RTO_INIT);
        self.syn_ack(mss_max)
    }

    fn syn_ack(&mut self, mss_max: u16) -> SegOut {
        self.wnd_adv = self.wnd_to_tap.min(u32::from(u16::MAX));
        SegOut {
            seq: self.isn,
            ack: self.seq_from_tap,
            flags: SYN | ACK,
            // Unscaled in a SYN (RFC 7323 §2.2).
            wnd: self.wnd_adv as u16,
            mss: Some(mss_max),
            ws: (self.ws_to_tap > 0).then_some(self.ws_to_tap),
        }
    }

    /// A connection accepted on the host, to be opened towards the guest:
    /// returns the state and the SYN to send.
    pub fn to_tap_syn(now: Instant, isn: u32, mss_max: u16, wnd: u32) -> (Self, SegOut) {
        let mut c = TcpConn::base(now, isn, State::SynToTap, SYN_TIMEOUT);
        c.seq_to_tap = isn.wrapping_add(1);
        c.wnd_to_tap = wnd;
        c.mss_to_tap = mss_max;
        c.rto_at = Some(now + RTO_INIT);
        let syn = c.syn(mss_max);
        (c, syn)
    }

    fn syn(&mut self, mss_max: u16) -> SegOut {
        self.wnd_adv = self.wnd_to_tap.min(u32::from(u16::MAX));
        SegOut { seq: self.isn, ack: 0, flags: SYN, wnd: self.wnd_adv as u16, mss: Some(mss_max), ws: Some(WS_TO_TAP) }
    }

    /// Handle one segment from the tap; see [`TapAction`].
    pub fn handle_tap_segment(&mut self, now: Instant, seg: &SegIn, mss_max: u16) -> TapAction {
        let mut a = TapAction::default();
        if self.state == State::Closed {
            return a;
        }
        if seg.flags & RST != 0 {
            // Accept a reset anywhere in the window we advertised (RFC 5961
            // §3 would ask for an exact match; the guest is a local peer).
            let wnd = self.wnd_adv.max(1);
            let off = seg.seq.wrapping_sub(self.seq_from_tap);
            if self.state != State::Established || off < wnd || seg.seq == self.seq_from_tap {
                self.state = State::Closed;
                a.reset = true;
            }
            return a;
        }
        match self.state {
            State::SynFromTap => return a, // SYN retransmitted while we connect
            State::SynAckSent => {
                if seg.flags & SYN != 0 {
                    // Our SYN-ACK was lost: the guest retransmitted its SYN.
                    a.reply = Some(self.syn_ack(mss_max));
                    return a;
                }
                if seg.flags & ACK == 0 || seg.ack != self.isn.wrapping_add(1) {
                    return a;
                }
                self.state = State::Established;
                self.seq_ack_from_tap = seg.ack;
                self.rto_at = None;
                self.retries = 0;
                self.expire_at = now + IDLE_TIMEOUT;
                a.established = true;
                a.can_send = true;
            }
            State::SynToTap => {
                if seg.flags & (SYN | ACK) != SYN | ACK || seg.ack != self.isn.wrapping_add(1) {
                    return a;
                }
                self.state = State::Established;
                self.seq_from_tap = seg.seq.wrapping_add(1);
                self.seq_ack_from_tap = seg.ack;
                if let Some(ws) = seg.ws {
                    self.ws_from_tap = ws.min(WS_MAX);
                    self.ws_to_tap = WS_TO_TAP;
                } else {
                    self.ws_to_tap = 0;
                }
                self.mss_to_tap = seg.mss.unwrap_or(MSS_DEFAULT).clamp(64, mss_max.max(64));
                self.wnd_from_tap = u32::from(seg.wnd);
                self.rto_at = None;
                self.retries = 0;
                self.expire_at = now + IDLE_TIMEOUT;
                a.established = true;
                a.ack_now = true;
                a.can_send = true;
                return a;
            }
            State::Established | State::Closed => {}
        }
        if seg.flags & SYN != 0 {
            // A SYN in a synchronised state: challenge ACK (RFC 5961 §4).
            a.ack_now = true;
            return a;
        }
        if self.tap_fin_sent || self.tap_fin_rcvd {
            self.expire_at = now + FIN_TIMEOUT;
        } else {
            self.expire_at = now + IDLE_TIMEOUT;
        }
        if seg.flags & ACK != 0 {
            self.process_ack(now, seg, &mut a);
        }
        if seg.dlen > 0 || seg.flags & FIN != 0 {
            self.process_data(seg, &mut a);
        }
        a
    }

    fn process_ack(&mut self, now: Instant, seg: &SegIn, a: &mut TapAction) {
        let wnd = u32::from(seg.wnd) << self.ws_from_tap;
        if seq_lt(self.seq_to_tap, seg.ack) {
            // Acknowledges something we never sent.
            a.ack_now = true;
            return;
        }
        let old_wnd = self.wnd_from_tap;
        if seq_lt(self.seq_ack_from_tap, seg.ack) {
            let mut acked = seg.ack.wrapping_sub(self.seq_ack_from_tap);
            if self.tap_fin_sent && seq_lt(self.fin_seq, seg.ack) {
                // The FIN takes one sequence number but no byte of the socket.
                self.tap_fin_acked = true;
                acked -= 1;
            }
            a.acked = acked;
            self.seq_ack_from_tap = seg.ack;
            self.dup_acks = 0;
            self.retries = 0;
            self.rto_at = (self.seq_ack_from_tap != self.seq_to_tap).then(|| now + RTO_INIT);
            a.can_send = true;
        } else if seg.ack == self.seq_ack_from_tap
            && seg.dlen == 0
            && seg.flags & FIN == 0
            && wnd == old_wnd
            && self.seq_ack_from_tap != self.seq_to_tap
        {
            self.dup_acks = self.dup_acks.saturating_add(1);
            if self.dup_acks == 3 {
                a.rewind = true;
                self.rewind();
            }
        }
        self.wnd_from_tap = wnd;
        if wnd > old_wnd {
            a.can_send = true;
        }
    }

    fn process_data(&mut self, seg: &SegIn, a: &mut TapAction) {
        if self.tap_fin_rcvd {
            // Nothing may follow the FIN: acknowledge again, ignore.
            a.ack_now = true;
            return;
        }
        if seq_lt(self.seq_from_tap, seg.seq) {
            // A hole before this segment: drop it, duplicate ACK.
            a.ack_now = true;
            return;
        }
        let have = self.seq_from_tap.wrapping_sub(seg.seq) as usize;
        if have >= seg.dlen && (seg.flags & FIN == 0 || have > seg.dlen) {
            // Entirely old: the guest retransmitted what we acknowledged.
            a.ack_now = true;
            return;
        }
        a.write = have.min(seg.dlen)..seg.dlen;
        a.fin = seg.flags & FIN != 0;
    }

    /// The socket took `written` bytes of [`TapAction::write`]; `fin` when
    /// the whole write went through and the FIN was acted on (socket shut
    /// down for writing). A short write leaves the rest unacknowledged and
    /// marks the socket full (see [`TcpConn::handle_sock_writable`]).
    pub fn handle_written(&mut self, written: usize, requested: usize, fin: bool) {
        self.seq_from_tap = self.seq_from_tap.wrapping_add(written as u32);
        if written < requested {
            self.sock_full = true;
        } else if fin {
            self.seq_from_tap = self.seq_from_tap.wrapping_add(1);
            self.tap_fin_rcvd = true;
        }
    }

    /// The host socket is writable again after a short write: returns how
    /// many identical ACKs to send (a window update, then three duplicates
    /// so that the guest retransmits without waiting for its RTO).
    pub fn handle_sock_writable(&mut self) -> usize {
        if std::mem::take(&mut self.sock_full) {
            4
        } else {
            0
        }
    }

    /// Set the window to advertise, in bytes (room in the host socket's
    /// send buffer).
    pub fn set_wnd_to_tap(&mut self, bytes: u32) {
        self.wnd_to_tap = bytes;
    }

    /// True if an ACK is owed to the guest: new data acknowledged, or the
    /// window grew from what was advertised by a useful amount (or opened
    /// from zero).
    pub fn ack_needed(&self) -> bool {
        if self.state != State::Established {
            return false;
        }
        let grown = self.wnd_to_tap > self.wnd_adv
            && (self.wnd_adv == 0 || self.wnd_to_tap - self.wnd_adv >= u32::from(self.mss_to_tap) * 2);
        self.seq_from_tap != self.seq_ack_to_tap || grown
    }

    /// True if the window to advertise is larger than the one advertised.
    pub fn wnd_grown(&self) -> bool {
        self.wnd_to_tap > self.wnd_adv
    }

    /// A pure ACK with the current state; records what was acknowledged.
    pub fn ack_segment(&mut self) -> SegOut {
        self.header(self.seq_to_tap, ACK)
    }

    fn header(&mut self, seq: u32, flags: u8) -> SegOut {
        self.seq_ack_to_tap = self.seq_from_tap;
        let wnd = scaled(self.wnd_to_tap, self.ws_to_tap);
        self.wnd_adv = u32::from(wnd) << self.ws_to_tap;
        SegOut { seq, ack: self.seq_from_tap, flags, wnd, mss: None, ws: None }
    }

    /// How many more bytes of host data may go to the guest now (its window
    /// less what is in flight), at most `limit`. Zero after our FIN.
    pub fn send_budget(&self, limit: usize) -> usize {
        if self.state != State::Established || self.tap_fin_sent {
            return 0;
        }
        let in_flight = self.seq_to_tap.wrapping_sub(self.seq_ack_from_tap);
        (self.wnd_from_tap.saturating_sub(in_flight) as usize).min(limit)
    }

    /// Bytes sent to the guest and not acknowledged yet (the socket's peek
    /// offset).
    pub fn in_flight(&self) -> u32 {
        self.seq_to_tap.wrapping_sub(self.seq_ack_from_tap)
    }

    /// Header of the next data segment of `dlen` bytes; `push` on the last
    /// of a batch. Arms the retransmission timer.
    pub fn data_segment(&mut self, now: Instant, dlen: usize, push: bool) -> SegOut {
        let seq = self.seq_to_tap;
        self.seq_to_tap = self.seq_to_tap.wrapping_add(dlen as u32);
        if self.rto_at.is_none() {
            self.rto_at = Some(now + RTO_INIT);
        }
        self.header(seq, ACK | if push { PSH } else { 0 })
    }

    /// The guest's window is closed while host data waits: arm the timer
    /// that sends window probes.
    pub fn arm_persist(&mut self, now: Instant) {
        if self.rto_at.is_none() {
            self.rto_at = Some(now + RTO_INIT);
        }
    }

    /// Our FIN, once every byte of the host socket was sent (the caller
    /// checks that a peek at the current offset finds end of file).
    pub fn fin_segment(&mut self, now: Instant) -> Option<SegOut> {
        if self.state != State::Established || self.tap_fin_sent {
            return None;
        }
        self.sock_eof = true;
        self.tap_fin_sent = true;
        self.fin_seq = self.seq_to_tap;
        let s = self.header(self.seq_to_tap, FIN | ACK);
        self.seq_to_tap = self.seq_to_tap.wrapping_add(1);
        self.rto_at = Some(now + RTO_INIT);
        self.expire_at = now + FIN_TIMEOUT;
        Some(s)
    }

    fn rewind(&mut self) {
        if self.tap_fin_sent && !self.tap_fin_acked {
            self.tap_fin_sent = false;
        }
        self.seq_to_tap = self.seq_ack_from_tap;
    }

    /// The earliest time [`TcpConn::handle_timeout`] wants to run.
    pub fn poll_timeout(&self) -> Instant {
        match self.rto_at {
            Some(t) if t < self.expire_at => t,
            _ => self.expire_at,
        }
    }

    /// Run the timers; see [`TimeoutAction`].
    pub fn handle_timeout(&mut self, now: Instant, mss_max: u16) -> TimeoutAction {
        if self.state == State::Closed {
            return TimeoutAction::None;
        }
        if now >= self.expire_at {
            self.state = State::Closed;
            return TimeoutAction::Reset;
        }
        let Some(at) = self.rto_at else { return TimeoutAction::None };
        if now < at {
            return TimeoutAction::None;
        }
        self.retries += 1;
        if self.retries > MAX_RETRIES {
            self.state = State::Closed;
            return TimeoutAction::Reset;
        }
        let backoff = RTO_INIT.saturating_mul(1 << self.retries.min(6)).min(RTO_MAX);
        self.rto_at = Some(now + backoff);
        match self.state {
            State::SynAckSent => TimeoutAction::Resend(self.syn_ack(mss_max)),
            State::SynToTap => TimeoutAction::Resend(self.syn(mss_max)),
            State::Established if self.seq_ack_from_tap != self.seq_to_tap => {
                self.rewind();
                TimeoutAction::Rewind
            }
            State::Established if self.wnd_from_tap == 0 => {
                // Window probe: an ACK one below the next sequence number
                // makes the guest answer with its current window.
                let s = self.header(self.seq_to_tap.wrapping_sub(1), ACK);
                TimeoutAction::Probe(s)
            }
            _ => {
                self.rto_at = None;
                self.retries = 0;
                TimeoutAction::None
            }
        }
    }

    /// Both directions are closed and acknowledged: the flow can go.
    pub fn is_done(&self) -> bool {
        self.state == State::Closed || (self.tap_fin_rcvd && self.tap_fin_acked)
    }

    /// Mark the connection reset (socket error): nothing more to do.
    pub fn close(&mut self) {
        self.state = State::Closed;
    }

    /// Sequence number for a RST to the guest: ours, acknowledging theirs.
    pub fn rst_segment(&mut self) -> SegOut {
        self.header(self.seq_to_tap, RST | ACK)
    }
}
