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
//!   and a retransmission is a re-read of the socket from offset 0. The
//!   guest may still acknowledge data sent before such a rewind: that ACK
//!   moves `seq_to_tap` forward again, and the peek offset stays
//!   [`TcpConn::in_flight`].
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
/// Page size the announced MSS is rounded to (bytes).
const MSS_PAGE: u16 = 4096;

/// The MSS option we put in our SYN or SYN-ACK (RFC 9293 §3.7.1), for a
/// tap taking payloads of `mss_max` bytes: above one page, rounded down to
/// a multiple of 4096 bytes, as upstream passt announces (tcp.c, SYN
/// options). A guest without offloads builds one linear buffer per
/// segment: 61440 bytes of payload plus headers fit an order-4 (64 KiB)
/// allocation, 65480 do not. Segments we send keep using the guest's own
/// MSS, clamped to `mss_max` (not rounded).
pub fn mss_announced(mss_max: u16) -> u16 {
    if mss_max > MSS_PAGE {
        mss_max / MSS_PAGE * MSS_PAGE
    } else {
        mss_max
    }
}

/// Initial retransmission timeout (RFC 6298 §2.1 says 1 s).
pub const RTO_INIT: Duration = Duration::from_secs(1);
/// Longest retransmission timeout after backoff.
pub const RTO_MAX: Duration = Duration::from_secs(60);
/// Retransmissions before giving up and resetting (window probes do not
/// count: RFC 9293 §3.8.6.1).
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
    /// Send an ACK now (duplicate ACK, challenge ACK, handshake, answer to
    /// a keep-alive or window probe).
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
    /// Sequence number of our FIN, once sent (kept across rewinds).
    fin_seq: Option<u32>,
    /// Highest sequence number sent so far, plus one (SND.NXT before any
    /// rewind): the guest may acknowledge up to here even after
    /// `seq_to_tap` went back to resend.
    seq_max_to_tap: u32,
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
            fin_seq: None,
            seq_max_to_tap: isn,
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
        self.seq_max_to_tap = self.seq_to_tap;
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
            mss: Some(mss_announced(mss_max)),
            ws: (self.ws_to_tap > 0).then_some(self.ws_to_tap),
        }
    }

    /// A connection accepted on the host, to be opened towards the guest:
    /// returns the state and the SYN to send.
    pub fn to_tap_syn(now: Instant, isn: u32, mss_max: u16, wnd: u32) -> (Self, SegOut) {
        let mut c = TcpConn::base(now, isn, State::SynToTap, SYN_TIMEOUT);
        c.seq_to_tap = isn.wrapping_add(1);
        c.seq_max_to_tap = c.seq_to_tap;
        c.wnd_to_tap = wnd;
        c.mss_to_tap = mss_max;
        c.rto_at = Some(now + RTO_INIT);
        let syn = c.syn(mss_max);
        (c, syn)
    }

    fn syn(&mut self, mss_max: u16) -> SegOut {
        self.wnd_adv = self.wnd_to_tap.min(u32::from(u16::MAX));
        SegOut {
            seq: self.isn,
            ack: 0,
            flags: SYN,
            wnd: self.wnd_adv as u16,
            mss: Some(mss_announced(mss_max)),
            ws: Some(WS_TO_TAP),
        }
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
        let acceptable = seg.flags & ACK == 0 || self.process_ack(now, seg, &mut a);
        // FIN_TIMEOUT bounds the wait for the ACK of our FIN only: either
        // direction may stay open and quiet after the other closed, like a
        // connection open both ways (RFC 9293 §3.6).
        if self.tap_fin_sent && !self.tap_fin_acked {
            self.expire_at = now + FIN_TIMEOUT;
        } else {
            self.expire_at = now + IDLE_TIMEOUT;
        }
        if !acceptable {
            return a;
        }
        if seg.dlen > 0 || seg.flags & FIN != 0 {
            self.process_data(seg, &mut a);
        } else if seq_lt(seg.seq, self.seq_from_tap) {
            // Empty, before RCV.NXT: a keep-alive (RFC 9293 §3.8.4) or a
            // window probe (§3.8.6.1). Not acceptable, so answered with an
            // ACK (§3.10.7.4), which carries our current window.
            a.ack_now = true;
        }
        a
    }

    /// False if the whole segment is to be dropped.
    fn process_ack(&mut self, now: Instant, seg: &SegIn, a: &mut TapAction) -> bool {
        let wnd = u32::from(seg.wnd) << self.ws_from_tap;
        if seq_lt(self.seq_max_to_tap, seg.ack) {
            // Acknowledges something we never sent: ACK, drop the segment
            // with its data and FIN (RFC 9293 §3.10.7.4).
            a.ack_now = true;
            return false;
        }
        let old_wnd = self.wnd_from_tap;
        if seq_lt(self.seq_ack_from_tap, seg.ack) {
            let mut acked = seg.ack.wrapping_sub(self.seq_ack_from_tap);
            if seq_lt(self.seq_to_tap, seg.ack) {
                // Data sent before a rewind reached the guest after all:
                // no need to send it again.
                self.seq_to_tap = seg.ack;
            }
            let una = self.seq_ack_from_tap;
            if self.fin_seq.is_some_and(|f| seq_le(una, f) && seq_lt(f, seg.ack)) {
                // The FIN takes one sequence number but no byte of the
                // socket (possibly acknowledged after a rewind).
                self.tap_fin_sent = true;
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
            if old_wnd == 0 && self.seq_ack_from_tap == self.seq_to_tap {
                // The window opened with nothing in flight: the timer was
                // the persist timer. Stop it, so that the next data segment
                // starts a fresh retransmission timer (RFC 6298 §5.1).
                self.rto_at = None;
                self.retries = 0;
            }
        }
        true
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

    /// Data reported as written with [`TcpConn::handle_written`] was staged
    /// by the caller and the socket then took `unwritten` bytes less: take
    /// them back (they were not acknowledged yet, the caller guarantees it)
    /// and owe the guest the recovery of a short write.
    pub fn handle_write_shortfall(&mut self, unwritten: usize) {
        if unwritten > 0 {
            self.seq_from_tap = self.seq_from_tap.wrapping_sub(unwritten as u32);
            self.sock_full = true;
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

    /// The window to advertise, in bytes, as last set.
    pub fn wnd_to_tap(&self) -> u32 {
        self.wnd_to_tap
    }

    /// True if the only ACK owed is for less than one full-sized segment
    /// of data (`mss_to_tap` bytes) and for at most half the window we
    /// last advertised (the guest is not short of window), and the guest's
    /// FIN is not in: the ACK may wait a little for a segment to the tap to
    /// carry it (the delayed ACK of [`crate::tcp::io::flush_acks`]). RFC 9293
    /// §3.8.6.3 allows a delay below 0.5 s and asks for an ACK at least
    /// every second full-sized segment; one full segment is always
    /// acknowledged at once, so bulk data keeps its ACK clock.
    pub fn ack_deferrable(&self) -> bool {
        let unacked = self.seq_from_tap.wrapping_sub(self.seq_ack_to_tap);
        let mss = u32::from(self.mss_to_tap);
        self.state == State::Established
            && !self.tap_fin_rcvd
            && unacked > 0
            && unacked < mss
            && unacked <= self.wnd_adv / 2
    }

    /// True if an ACK is owed to the guest: new data acknowledged, or the
    /// window grew from what was advertised by a useful amount (or opened
    /// from zero).
    pub fn ack_needed(&self) -> bool {
        if self.state != State::Established {
            return false;
        }
        // Compare what the window field would carry, in our scale: growth
        // that rounds down to the same field is no update at all.
        let wnd = u32::from(scaled(self.wnd_to_tap, self.ws_to_tap)) << self.ws_to_tap;
        let grown =
            wnd > self.wnd_adv && (self.wnd_adv == 0 || wnd - self.wnd_adv >= u32::from(self.mss_to_tap) * 2);
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
        self.sent();
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
    /// checks that a peek at the current offset finds end of file). Arms
    /// the retransmission timer unless it is running.
    pub fn fin_segment(&mut self, now: Instant) -> Option<SegOut> {
        if self.state != State::Established || self.tap_fin_sent {
            return None;
        }
        self.sock_eof = true;
        self.tap_fin_sent = true;
        self.fin_seq = Some(self.seq_to_tap);
        let s = self.header(self.seq_to_tap, FIN | ACK);
        self.seq_to_tap = self.seq_to_tap.wrapping_add(1);
        self.sent();
        // Like data (RFC 6298 §5.1): a resent FIN keeps the backoff.
        if self.rto_at.is_none() {
            self.rto_at = Some(now + RTO_INIT);
        }
        self.expire_at = now + FIN_TIMEOUT;
        Some(s)
    }

    fn sent(&mut self) {
        if seq_lt(self.seq_max_to_tap, self.seq_to_tap) {
            self.seq_max_to_tap = self.seq_to_tap;
        }
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
        // Window probes are answered with the guest's current window, not
        // by acknowledging anything: they never count towards giving up
        // (RFC 9293 §3.8.6.1: the connection MUST stay open while the guest
        // answers). A silent guest is caught by the idle timeout.
        let probing = self.state == State::Established
            && self.seq_ack_from_tap == self.seq_to_tap
            && self.wnd_from_tap == 0;
        self.retries = self.retries.saturating_add(1);
        if self.retries > MAX_RETRIES {
            if !probing {
                self.state = State::Closed;
                return TimeoutAction::Reset;
            }
            self.retries = MAX_RETRIES;
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
        // The highest sequence number sent: after a rewind `seq_to_tap` can
        // lie below the guest's RCV.NXT, and a RST there is ignored (RFC
        // 5961 §3.2); at or beyond it, it is exact or in the window.
        self.header(if seq_lt(self.seq_max_to_tap, self.seq_to_tap) { self.seq_to_tap } else { self.seq_max_to_tap }, RST | ACK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our initial sequence number in most tests.
    const ISN: u32 = 0x1000_0000;
    /// The guest's initial sequence number in most tests.
    const G_ISN: u32 = 0x2000_0000;
    /// Largest payload the tap takes (MTU 1500 less IPv4 and TCP headers).
    const MSS_MAX: u16 = 1460;
    /// Room in the host socket's send buffer, in bytes.
    const WND_TO_TAP: u32 = 200_000;
    /// Window scale the guest announces in the fixtures.
    const G_WS: u8 = 7;
    /// Window field of the guest's segments after the SYN: 512 << 7 bytes.
    const G_WND: u16 = 512;
    /// The guest's window in bytes, scaled.
    const G_WND_BYTES: u32 = 65_536;

    fn after(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn syn(seq: u32, wnd: u16, mss: Option<u16>, ws: Option<u8>) -> SegIn {
        SegIn { seq, ack: 0, flags: SYN, wnd, dlen: 0, mss, ws }
    }

    fn ack(seq: u32, ack: u32, wnd: u16) -> SegIn {
        SegIn { seq, ack, flags: ACK, wnd, ..SegIn::default() }
    }

    fn data(seq: u32, ack: u32, wnd: u16, dlen: usize) -> SegIn {
        SegIn { seq, ack, flags: ACK | PSH, wnd, dlen, ..SegIn::default() }
    }

    fn flags(seq: u32, ack: u32, flags: u8, wnd: u16) -> SegIn {
        SegIn { seq, ack, flags, wnd, ..SegIn::default() }
    }

    /// Guest-initiated connection with ISNs `isn` (ours) and `g_isn`
    /// (guest's): SYN (MSS 1460, window scale 7) -> host connected ->
    /// SYN-ACK -> guest ACK with a 64 KiB window, all at the returned time.
    fn conn_established_isn(isn: u32, g_isn: u32) -> (TcpConn, Instant) {
        let t0 = Instant::now();
        let mut c = TcpConn::from_tap_syn(t0, &syn(g_isn, 64_240, Some(1460), Some(G_WS)), isn, MSS_MAX);
        c.set_wnd_to_tap(WND_TO_TAP);
        let syn_ack = c.handle_connected(t0, MSS_MAX);
        assert_eq!(syn_ack.flags, SYN | ACK);
        let a = c.handle_tap_segment(t0, &ack(g_isn.wrapping_add(1), isn.wrapping_add(1), G_WND), MSS_MAX);
        assert!(a.established);
        (c, t0)
    }

    fn conn_established() -> (TcpConn, Instant) {
        conn_established_isn(ISN, G_ISN)
    }

    /// Host-initiated connection: our SYN -> guest SYN-ACK (MSS 1460,
    /// window scale 7, window 64240) -> our ACK, all at the returned time.
    fn conn_established_from_host() -> (TcpConn, Instant) {
        let t0 = Instant::now();
        let (mut c, _) = TcpConn::to_tap_syn(t0, ISN, MSS_MAX, WND_TO_TAP);
        let syn_ack = SegIn { ack: ISN + 1, flags: SYN | ACK, ..syn(G_ISN, 64_240, Some(1460), Some(G_WS)) };
        let a = c.handle_tap_segment(t0, &syn_ack, MSS_MAX);
        assert!(a.established && a.ack_now);
        c.ack_segment();
        (c, t0)
    }

    /// Sends `n` full-sized segments at `now`; returns their headers.
    fn send_segments(c: &mut TcpConn, now: Instant, n: usize) -> Vec<SegOut> {
        (0..n).map(|_| c.data_segment(now, usize::from(c.mss_to_tap), false)).collect()
    }

    // --- Sequence space ---

    #[test]
    fn seq_comparisons_wrap_around_2_pow_32() {
        assert!(seq_lt(u32::MAX, 0));
        assert!(seq_lt(u32::MAX - 5, 5));
        assert!(!seq_lt(5, u32::MAX - 5));
        assert!(!seq_lt(7, 7));
        assert!(seq_le(7, 7));
        assert!(seq_le(0xffff_fff0, 0x10));
        assert!(!seq_le(0x10, 0xffff_fff0));
    }

    // --- Handshake, guest-initiated ---

    #[test]
    fn syn_mss_1400_is_mirrored_as_mss_to_tap() {
        let c = TcpConn::from_tap_syn(Instant::now(), &syn(G_ISN, 1000, Some(1400), None), ISN, MSS_MAX);
        assert_eq!(c.mss_to_tap, 1400);
        assert_eq!(c.state, State::SynFromTap);
        assert_eq!(c.seq_from_tap, G_ISN + 1);
    }

    #[test]
    fn syn_mss_above_mss_max_is_clamped_to_mss_max() {
        let c = TcpConn::from_tap_syn(Instant::now(), &syn(G_ISN, 1000, Some(9000), None), ISN, MSS_MAX);
        assert_eq!(c.mss_to_tap, 1460);
    }

    #[test]
    fn syn_without_mss_uses_mss_default() {
        let c = TcpConn::from_tap_syn(Instant::now(), &syn(G_ISN, 1000, None, None), ISN, MSS_MAX);
        assert_eq!(c.mss_to_tap, 536);
    }

    #[test]
    fn syn_without_mss_and_mss_max_below_default_uses_mss_max() {
        let c = TcpConn::from_tap_syn(Instant::now(), &syn(G_ISN, 1000, None, None), ISN, 400);
        assert_eq!(c.mss_to_tap, 400);
    }

    #[test]
    fn syn_ack_answers_guest_syn_with_our_isn_mss_and_window_scale() {
        let t0 = Instant::now();
        let mut c = TcpConn::from_tap_syn(t0, &syn(G_ISN, 64_240, Some(1460), Some(7)), ISN, MSS_MAX);
        c.set_wnd_to_tap(30_000);
        let s = c.handle_connected(after(t0, 50), MSS_MAX);
        assert_eq!(
            s,
            SegOut { seq: ISN, ack: G_ISN + 1, flags: SYN | ACK, wnd: 30_000, mss: Some(1460), ws: Some(WS_TO_TAP) }
        );
        assert_eq!(c.state, State::SynAckSent);
        assert_eq!(c.seq_to_tap, ISN + 1);
        assert_eq!(c.seq_ack_from_tap, ISN);
        assert_eq!(c.ws_from_tap, 7);
        assert_eq!(c.ws_to_tap, 8);
        assert_eq!(c.poll_timeout(), after(t0, 1050));
    }

    #[test]
    fn syn_ack_window_is_unscaled_and_capped_at_65535() {
        let mut c = TcpConn::from_tap_syn(Instant::now(), &syn(G_ISN, 64_240, None, Some(7)), ISN, MSS_MAX);
        c.set_wnd_to_tap(1 << 20);
        assert_eq!(c.handle_connected(Instant::now(), MSS_MAX).wnd, 65_535);
    }

    #[test]
    fn syn_ack_has_no_window_scale_when_guest_sent_none() {
        let mut c = TcpConn::from_tap_syn(Instant::now(), &syn(G_ISN, 64_240, Some(1460), None), ISN, MSS_MAX);
        c.set_wnd_to_tap(WND_TO_TAP);
        let s = c.handle_connected(Instant::now(), MSS_MAX);
        assert_eq!(s.ws, None);
        assert_eq!((c.ws_from_tap, c.ws_to_tap), (0, 0));
    }

    #[test]
    fn window_in_guest_syn_is_not_scaled() {
        let c = TcpConn::from_tap_syn(Instant::now(), &syn(G_ISN, 1000, None, Some(7)), ISN, MSS_MAX);
        assert_eq!(c.wnd_from_tap, 1000);
    }

    #[test]
    fn guest_ack_of_syn_ack_establishes_with_scaled_window() {
        let t0 = Instant::now();
        let mut c = TcpConn::from_tap_syn(t0, &syn(G_ISN, 64_240, Some(1460), Some(G_WS)), ISN, MSS_MAX);
        c.set_wnd_to_tap(WND_TO_TAP);
        c.handle_connected(t0, MSS_MAX);
        let a = c.handle_tap_segment(after(t0, 10), &ack(G_ISN + 1, ISN + 1, 300), MSS_MAX);
        assert_eq!(
            a,
            TapAction { established: true, can_send: true, ..TapAction::default() }
        );
        assert_eq!(c.state, State::Established);
        assert_eq!(c.seq_ack_from_tap, ISN + 1);
        assert_eq!(c.wnd_from_tap, 300 << 7);
        assert_eq!(c.send_budget(usize::MAX), 38_400);
        // The SYN-ACK's timer is gone: only the idle timeout is left.
        assert_eq!(c.poll_timeout(), after(t0, 10) + IDLE_TIMEOUT);
    }

    #[test]
    fn guest_ack_with_wrong_ack_number_does_not_establish() {
        let t0 = Instant::now();
        let mut c = TcpConn::from_tap_syn(t0, &syn(G_ISN, 64_240, None, None), ISN, MSS_MAX);
        c.handle_connected(t0, MSS_MAX);
        for bad in [ISN, ISN + 2] {
            let a = c.handle_tap_segment(t0, &ack(G_ISN + 1, bad, 1000), MSS_MAX);
            assert_eq!(a, TapAction::default());
        }
        let a = c.handle_tap_segment(t0, &flags(G_ISN + 1, 0, PSH, 1000), MSS_MAX);
        assert_eq!(a, TapAction::default());
        assert_eq!(c.state, State::SynAckSent);
        assert_eq!(c.send_budget(usize::MAX), 0);
    }

    #[test]
    fn guest_syn_retransmitted_while_connecting_is_ignored() {
        let t0 = Instant::now();
        let mut c = TcpConn::from_tap_syn(t0, &syn(G_ISN, 64_240, None, None), ISN, MSS_MAX);
        let a = c.handle_tap_segment(after(t0, 1000), &syn(G_ISN, 64_240, None, None), MSS_MAX);
        assert_eq!(a, TapAction::default());
        assert_eq!(c.state, State::SynFromTap);
    }

    #[test]
    fn lost_syn_ack_is_resent_when_guest_retransmits_syn() {
        let t0 = Instant::now();
        let mut c = TcpConn::from_tap_syn(t0, &syn(G_ISN, 64_240, Some(1460), Some(7)), ISN, MSS_MAX);
        c.set_wnd_to_tap(WND_TO_TAP);
        let first = c.handle_connected(t0, MSS_MAX);
        let a = c.handle_tap_segment(after(t0, 1000), &syn(G_ISN, 64_240, Some(1460), Some(7)), MSS_MAX);
        assert_eq!(a.reply, Some(first));
        assert_eq!(
            first,
            SegOut { seq: ISN, ack: G_ISN + 1, flags: SYN | ACK, wnd: 65_535, mss: Some(1460), ws: Some(8) }
        );
        assert!(!a.established && !a.reset && a.write.is_empty());
        assert_eq!(c.state, State::SynAckSent);
        // The handshake still completes with the guest's ACK.
        let a = c.handle_tap_segment(after(t0, 1001), &ack(G_ISN + 1, ISN + 1, G_WND), MSS_MAX);
        assert!(a.established);
    }

    #[test]
    fn syn_ack_is_retransmitted_on_timeout_with_backoff() {
        let t0 = Instant::now();
        let mut c = TcpConn::from_tap_syn(t0, &syn(G_ISN, 64_240, Some(1460), Some(7)), ISN, MSS_MAX);
        c.set_wnd_to_tap(WND_TO_TAP);
        let first = c.handle_connected(t0, MSS_MAX);
        assert_eq!(c.handle_timeout(after(t0, 999), MSS_MAX), TimeoutAction::None);
        // RTO 1 s, then 2 s, then 4 s (RFC 6298 §5.5).
        for (at, next) in [(1000, 3000), (3000, 7000)] {
            assert_eq!(c.poll_timeout(), after(t0, at));
            assert_eq!(c.handle_timeout(after(t0, at), MSS_MAX), TimeoutAction::Resend(first));
            assert_eq!(c.poll_timeout(), after(t0, next));
        }
        assert_eq!(c.handle_timeout(after(t0, 6999), MSS_MAX), TimeoutAction::None);
        assert_eq!(c.handle_timeout(after(t0, 7000), MSS_MAX), TimeoutAction::Resend(first));
        // The next RTO (15 s) is beyond the handshake timeout.
        assert_eq!(c.poll_timeout(), t0 + SYN_TIMEOUT);
    }

    #[test]
    fn handshake_times_out_with_reset() {
        let t0 = Instant::now();
        let mut c = TcpConn::from_tap_syn(t0, &syn(G_ISN, 64_240, None, None), ISN, MSS_MAX);
        c.handle_connected(after(t0, 100), MSS_MAX);
        for at in [1100, 3100, 7100] {
            assert!(matches!(c.handle_timeout(after(t0, at), MSS_MAX), TimeoutAction::Resend(_)));
        }
        assert_eq!(c.handle_timeout(after(t0, 9999), MSS_MAX), TimeoutAction::None);
        assert_eq!(c.handle_timeout(t0 + SYN_TIMEOUT, MSS_MAX), TimeoutAction::Reset);
        assert_eq!(c.state, State::Closed);
        assert!(c.is_done());
        assert_eq!(c.handle_timeout(t0 + SYN_TIMEOUT * 2, MSS_MAX), TimeoutAction::None);
    }

    #[test]
    fn connect_that_never_completes_times_out_with_reset() {
        let t0 = Instant::now();
        let mut c = TcpConn::from_tap_syn(t0, &syn(G_ISN, 64_240, None, None), ISN, MSS_MAX);
        assert_eq!(c.poll_timeout(), t0 + SYN_TIMEOUT);
        assert_eq!(c.handle_timeout(after(t0, 9999), MSS_MAX), TimeoutAction::None);
        assert_eq!(c.handle_timeout(after(t0, 10_000), MSS_MAX), TimeoutAction::Reset);
        assert_eq!(c.state, State::Closed);
    }

    #[test]
    fn data_on_handshake_ack_is_written() {
        let t0 = Instant::now();
        let mut c = TcpConn::from_tap_syn(t0, &syn(G_ISN, 64_240, Some(1460), Some(7)), ISN, MSS_MAX);
        c.handle_connected(t0, MSS_MAX);
        let a = c.handle_tap_segment(t0, &data(G_ISN + 1, ISN + 1, G_WND, 100), MSS_MAX);
        assert!(a.established);
        assert_eq!(a.write, 0..100);
        c.handle_written(100, 100, false);
        assert_eq!(c.seq_from_tap, G_ISN + 101);
        assert!(c.ack_needed());
    }

    // --- Handshake, host-initiated ---

    #[test]
    fn to_tap_syn_carries_mss_window_scale_and_unscaled_window() {
        let t0 = Instant::now();
        let (c, s) = TcpConn::to_tap_syn(t0, ISN, MSS_MAX, 100_000);
        assert_eq!(s, SegOut { seq: ISN, ack: 0, flags: SYN, wnd: 65_535, mss: Some(1460), ws: Some(8) });
        assert_eq!(c.state, State::SynToTap);
        assert_eq!(c.seq_to_tap, ISN + 1);
        assert_eq!(c.poll_timeout(), after(t0, 1000));
        assert_eq!(c.send_budget(usize::MAX), 0);
        assert!(!c.ack_needed());
    }

    #[test]
    fn mss_announced_rounds_down_to_pages_above_one_page_only() {
        assert_eq!(mss_announced(65_480), 61_440);
        assert_eq!(mss_announced(65_460), 61_440);
        assert_eq!(mss_announced(8_192), 8_192);
        assert_eq!(mss_announced(8_191), 4_096);
        assert_eq!(mss_announced(4_097), 4_096);
        assert_eq!(mss_announced(4_096), 4_096);
        assert_eq!(mss_announced(1_460), 1_460);
        assert_eq!(mss_announced(536), 536);
    }

    #[test]
    fn syn_and_syn_ack_announce_page_rounded_mss_but_send_with_guest_mss() {
        let t0 = Instant::now();
        // MTU 65520 over IPv4: 65480 bytes per segment.
        let mut c = TcpConn::from_tap_syn(t0, &syn(G_ISN, 64_240, Some(65_480), Some(7)), ISN, 65_480);
        assert_eq!(c.mss_to_tap, 65_480);
        let s = c.handle_connected(after(t0, 1), 65_480);
        assert_eq!(s.mss, Some(61_440));
        let (c, s) = TcpConn::to_tap_syn(t0, ISN, 65_480, 100_000);
        assert_eq!(s.mss, Some(61_440));
        assert_eq!(c.mss_to_tap, 65_480);
    }

    #[test]
    fn guest_syn_ack_establishes_host_initiated_connection() {
        let t0 = Instant::now();
        let (mut c, _) = TcpConn::to_tap_syn(t0, ISN, MSS_MAX, WND_TO_TAP);
        let syn_ack = SegIn { ack: ISN + 1, flags: SYN | ACK, ..syn(G_ISN, 29_200, Some(1400), Some(7)) };
        let a = c.handle_tap_segment(after(t0, 20), &syn_ack, MSS_MAX);
        assert_eq!(
            a,
            TapAction { established: true, ack_now: true, can_send: true, ..TapAction::default() }
        );
        assert_eq!(c.state, State::Established);
        assert_eq!(c.seq_from_tap, G_ISN + 1);
        assert_eq!(c.mss_to_tap, 1400);
        assert_eq!((c.ws_from_tap, c.ws_to_tap), (7, 8));
        // The SYN-ACK's window is not scaled (RFC 7323 §2.2).
        assert_eq!(c.wnd_from_tap, 29_200);
        assert_eq!(c.poll_timeout(), after(t0, 20) + IDLE_TIMEOUT);
        // Our ACK: window scaled by our shift from now on.
        assert_eq!(
            c.ack_segment(),
            SegOut { seq: ISN + 1, ack: G_ISN + 1, flags: ACK, wnd: (WND_TO_TAP >> 8) as u16, mss: None, ws: None }
        );
    }

    #[test]
    fn syn_ack_without_window_scale_disables_scaling_both_ways() {
        let t0 = Instant::now();
        let (mut c, _) = TcpConn::to_tap_syn(t0, ISN, MSS_MAX, WND_TO_TAP);
        let syn_ack = SegIn { ack: ISN + 1, flags: SYN | ACK, ..syn(G_ISN, 29_200, None, None) };
        c.handle_tap_segment(t0, &syn_ack, MSS_MAX);
        assert_eq!((c.ws_from_tap, c.ws_to_tap), (0, 0));
        assert_eq!(c.mss_to_tap, MSS_DEFAULT);
        assert_eq!(c.ack_segment().wnd, 65_535);
        c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1, 1000), MSS_MAX);
        assert_eq!(c.wnd_from_tap, 1000);
    }

    #[test]
    fn syn_ack_mss_above_mss_max_is_clamped() {
        let t0 = Instant::now();
        let (mut c, _) = TcpConn::to_tap_syn(t0, ISN, 1200, WND_TO_TAP);
        let syn_ack = SegIn { ack: ISN + 1, flags: SYN | ACK, ..syn(G_ISN, 29_200, Some(8960), None) };
        c.handle_tap_segment(t0, &syn_ack, 1200);
        assert_eq!(c.mss_to_tap, 1200);
    }

    #[test]
    fn syn_ack_window_scale_above_14_is_clamped_to_14() {
        let t0 = Instant::now();
        let (mut c, _) = TcpConn::to_tap_syn(t0, ISN, MSS_MAX, WND_TO_TAP);
        let syn_ack = SegIn { ack: ISN + 1, flags: SYN | ACK, ..syn(G_ISN, 29_200, None, Some(15)) };
        c.handle_tap_segment(t0, &syn_ack, MSS_MAX);
        assert_eq!(c.ws_from_tap, 14);
        c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1, 3), MSS_MAX);
        assert_eq!(c.wnd_from_tap, 3 << 14);
    }

    #[test]
    fn syn_ack_with_wrong_ack_or_without_syn_is_ignored() {
        let t0 = Instant::now();
        let (mut c, _) = TcpConn::to_tap_syn(t0, ISN, MSS_MAX, WND_TO_TAP);
        let wrong = SegIn { ack: ISN + 2, flags: SYN | ACK, ..syn(G_ISN, 29_200, None, None) };
        assert_eq!(c.handle_tap_segment(t0, &wrong, MSS_MAX), TapAction::default());
        assert_eq!(c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1, 1000), MSS_MAX), TapAction::default());
        assert_eq!(c.handle_tap_segment(t0, &syn(G_ISN, 29_200, None, None), MSS_MAX), TapAction::default());
        assert_eq!(c.state, State::SynToTap);
    }

    #[test]
    fn syn_is_retransmitted_on_timeout_with_backoff_then_reset() {
        let t0 = Instant::now();
        let (mut c, first) = TcpConn::to_tap_syn(t0, ISN, MSS_MAX, WND_TO_TAP);
        for (at, next) in [(1000, 3000), (3000, 7000), (7000, 10_000)] {
            assert_eq!(c.handle_timeout(after(t0, at - 1), MSS_MAX), TimeoutAction::None);
            assert_eq!(c.handle_timeout(after(t0, at), MSS_MAX), TimeoutAction::Resend(first));
            assert_eq!(c.poll_timeout(), after(t0, next));
        }
        assert_eq!(c.handle_timeout(after(t0, 10_000), MSS_MAX), TimeoutAction::Reset);
        assert_eq!(c.state, State::Closed);
    }

    #[test]
    fn guest_rst_to_our_syn_resets() {
        let t0 = Instant::now();
        let (mut c, _) = TcpConn::to_tap_syn(t0, ISN, MSS_MAX, WND_TO_TAP);
        let a = c.handle_tap_segment(t0, &flags(0, ISN + 1, RST | ACK, 0), MSS_MAX);
        assert!(a.reset);
        assert_eq!(c.state, State::Closed);
    }

    #[test]
    fn duplicate_syn_ack_after_establishment_is_acknowledged_again() {
        let (mut c, t0) = conn_established_from_host();
        let syn_ack = SegIn { ack: ISN + 1, flags: SYN | ACK, ..syn(G_ISN, 64_240, Some(1460), Some(G_WS)) };
        let a = c.handle_tap_segment(after(t0, 500), &syn_ack, MSS_MAX);
        assert_eq!(a, TapAction { ack_now: true, ..TapAction::default() });
        assert_eq!(c.seq_from_tap, G_ISN + 1);
        assert_eq!(c.state, State::Established);
    }

    #[test]
    fn syn_in_established_state_gets_challenge_ack() {
        let (mut c, t0) = conn_established();
        let a = c.handle_tap_segment(t0, &syn(G_ISN + 77, 1000, None, None), MSS_MAX);
        assert_eq!(a, TapAction { ack_now: true, ..TapAction::default() });
        assert_eq!(c.seq_from_tap, G_ISN + 1);
        assert_eq!(c.wnd_from_tap, G_WND_BYTES);
    }

    // --- Window scaling ---

    #[test]
    fn guest_window_scale_above_14_is_clamped_to_14() {
        let t0 = Instant::now();
        let mut c = TcpConn::from_tap_syn(t0, &syn(G_ISN, 64_240, None, Some(200)), ISN, MSS_MAX);
        assert_eq!(c.ws_from_tap, 14);
        c.handle_connected(t0, MSS_MAX);
        c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1, u16::MAX), MSS_MAX);
        assert_eq!(c.wnd_from_tap, 65_535 << 14);
    }

    #[test]
    fn guest_windows_without_scaling_are_taken_as_is() {
        let t0 = Instant::now();
        let mut c = TcpConn::from_tap_syn(t0, &syn(G_ISN, 64_240, None, None), ISN, MSS_MAX);
        c.handle_connected(t0, MSS_MAX);
        c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1, 512), MSS_MAX);
        assert_eq!(c.wnd_from_tap, 512);
        assert_eq!(c.send_budget(usize::MAX), 512);
    }

    #[test]
    fn our_window_is_shifted_by_our_scale_after_the_handshake() {
        let (mut c, t0) = conn_established();
        c.set_wnd_to_tap(1_000_000);
        assert_eq!(c.ack_segment().wnd, 3906);
        c.set_wnd_to_tap(u32::MAX);
        assert_eq!(c.ack_segment().wnd, 65_535);
        let s = c.data_segment(t0, 100, true);
        assert_eq!(s.wnd, 65_535);
        assert_eq!((s.mss, s.ws), (None, None));
    }

    #[test]
    fn our_window_is_capped_at_65535_without_scaling() {
        let t0 = Instant::now();
        let mut c = TcpConn::from_tap_syn(t0, &syn(G_ISN, 64_240, None, None), ISN, MSS_MAX);
        c.set_wnd_to_tap(1_000_000);
        c.handle_connected(t0, MSS_MAX);
        c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1, 512), MSS_MAX);
        assert_eq!(c.ack_segment().wnd, 65_535);
        c.set_wnd_to_tap(40_000);
        assert_eq!(c.ack_segment().wnd, 40_000);
    }

    // --- Sending data: MSS and window ---

    #[test]
    fn data_segments_advance_seq_to_tap_and_arm_rto() {
        let (mut c, t0) = conn_established();
        let now = after(t0, 5);
        let s1 = c.data_segment(now, 1460, false);
        let s2 = c.data_segment(after(t0, 6), 700, true);
        assert_eq!(
            s1,
            SegOut { seq: ISN + 1, ack: G_ISN + 1, flags: ACK, wnd: (WND_TO_TAP >> 8) as u16, mss: None, ws: None }
        );
        assert_eq!((s2.seq, s2.flags), (ISN + 1461, ACK | PSH));
        assert_eq!(c.seq_to_tap, ISN + 2161);
        assert_eq!(c.in_flight(), 2160);
        // The timer runs from the first unacknowledged segment.
        assert_eq!(c.poll_timeout(), after(t0, 1005));
    }

    #[test]
    fn send_budget_is_guest_window_less_bytes_in_flight() {
        let (mut c, t0) = conn_established();
        assert_eq!(c.send_budget(usize::MAX), 65_536);
        assert_eq!(c.send_budget(1000), 1000);
        send_segments(&mut c, t0, 2);
        assert_eq!(c.send_budget(usize::MAX), 65_536 - 2920);
        // The guest acknowledges one segment and shrinks its window.
        let a = c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1461, 16), MSS_MAX);
        assert_eq!(a.acked, 1460);
        assert_eq!(c.send_budget(usize::MAX), 2048 - 1460);
        // A window smaller than what is in flight: nothing, no underflow.
        c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1461, 10), MSS_MAX);
        assert_eq!(c.send_budget(usize::MAX), 0);
    }

    #[test]
    fn send_budget_is_zero_before_established() {
        let t0 = Instant::now();
        let mut c = TcpConn::from_tap_syn(t0, &syn(G_ISN, 64_240, None, None), ISN, MSS_MAX);
        assert_eq!(c.send_budget(usize::MAX), 0);
        c.handle_connected(t0, MSS_MAX);
        assert_eq!(c.send_budget(usize::MAX), 0);
    }

    #[test]
    fn ack_of_sent_data_reports_acked_bytes_and_rearms_rto() {
        let (mut c, t0) = conn_established();
        send_segments(&mut c, t0, 3);
        let a = c.handle_tap_segment(after(t0, 400), &ack(G_ISN + 1, ISN + 1 + 2920, G_WND), MSS_MAX);
        assert_eq!(a, TapAction { acked: 2920, can_send: true, ..TapAction::default() });
        assert_eq!(c.seq_ack_from_tap, ISN + 2921);
        assert_eq!(c.in_flight(), 1460);
        // RFC 6298 §5.3: restart the timer on new data acknowledged.
        assert_eq!(c.poll_timeout(), after(t0, 1400));
        let a = c.handle_tap_segment(after(t0, 500), &ack(G_ISN + 1, ISN + 1 + 4380, G_WND), MSS_MAX);
        assert_eq!(a.acked, 1460);
        // All acknowledged: RFC 6298 §5.2, the timer stops.
        assert_eq!(c.poll_timeout(), after(t0, 500) + IDLE_TIMEOUT);
        assert_eq!(c.handle_timeout(after(t0, 1400), MSS_MAX), TimeoutAction::None);
    }

    #[test]
    fn old_ack_acknowledges_nothing() {
        let (mut c, t0) = conn_established();
        send_segments(&mut c, t0, 2);
        c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1461, G_WND), MSS_MAX);
        let a = c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1, G_WND), MSS_MAX);
        assert_eq!(a.acked, 0);
        assert!(!a.rewind && !a.ack_now);
        assert_eq!(c.seq_ack_from_tap, ISN + 1461);
    }

    // --- Zero window ---

    #[test]
    fn zero_window_from_guest_gives_zero_budget() {
        let (mut c, t0) = conn_established();
        let a = c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1, 0), MSS_MAX);
        assert!(!a.can_send);
        assert_eq!(c.wnd_from_tap, 0);
        assert_eq!(c.send_budget(usize::MAX), 0);
    }

    #[test]
    fn arm_persist_sends_probe_one_below_seq_to_tap() {
        let (mut c, t0) = conn_established();
        send_segments(&mut c, t0, 1);
        c.handle_tap_segment(after(t0, 10), &ack(G_ISN + 1, ISN + 1461, 0), MSS_MAX);
        assert_eq!(c.poll_timeout(), after(t0, 10) + IDLE_TIMEOUT);
        c.arm_persist(after(t0, 10));
        assert_eq!(c.poll_timeout(), after(t0, 1010));
        assert_eq!(c.handle_timeout(after(t0, 1009), MSS_MAX), TimeoutAction::None);
        let probe = SegOut {
            seq: ISN + 1460,
            ack: G_ISN + 1,
            flags: ACK,
            wnd: (WND_TO_TAP >> 8) as u16,
            mss: None,
            ws: None,
        };
        assert_eq!(c.handle_timeout(after(t0, 1010), MSS_MAX), TimeoutAction::Probe(probe));
        // Probes back off like retransmissions.
        assert_eq!(c.poll_timeout(), after(t0, 3010));
        assert_eq!(c.handle_timeout(after(t0, 3010), MSS_MAX), TimeoutAction::Probe(probe));
        assert_eq!(c.poll_timeout(), after(t0, 7010));
        // Nothing moved.
        assert_eq!((c.seq_to_tap, c.seq_ack_from_tap), (ISN + 1461, ISN + 1461));
    }

    #[test]
    fn arm_persist_does_not_move_a_running_timer() {
        let (mut c, t0) = conn_established();
        send_segments(&mut c, t0, 1);
        c.arm_persist(after(t0, 500));
        assert_eq!(c.poll_timeout(), after(t0, 1000));
    }

    #[test]
    fn window_update_after_zero_window_allows_sending() {
        let (mut c, t0) = conn_established();
        c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1, 0), MSS_MAX);
        c.arm_persist(t0);
        let a = c.handle_tap_segment(after(t0, 300), &ack(G_ISN + 1, ISN + 1, 4), MSS_MAX);
        assert_eq!(a, TapAction { can_send: true, ..TapAction::default() });
        assert_eq!(c.send_budget(usize::MAX), 512);
    }

    #[test]
    fn answered_window_probes_keep_the_connection_open() {
        let (mut c, t0) = conn_established();
        c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1, 0), MSS_MAX);
        c.arm_persist(t0);
        let mut now = t0;
        // RFC 9293 §3.8.6.1: as long as the guest answers, the connection
        // MUST stay open, however long the window stays closed.
        for _ in 0..3 * usize::from(MAX_RETRIES) {
            now = c.poll_timeout();
            assert!(matches!(c.handle_timeout(now, MSS_MAX), TimeoutAction::Probe(_)));
            let a = c.handle_tap_segment(now, &ack(G_ISN + 1, ISN + 1, 0), MSS_MAX);
            assert_eq!(a, TapAction::default());
        }
        assert_eq!(c.state, State::Established);
        // Probe intervals back off up to RTO_MAX.
        assert_eq!(c.poll_timeout(), now + RTO_MAX);
    }

    #[test]
    fn unanswered_window_probes_end_at_the_idle_timeout() {
        let (mut c, t0) = conn_established();
        c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1, 0), MSS_MAX);
        c.arm_persist(t0);
        let mut probes = 0;
        let end = loop {
            let now = c.poll_timeout();
            match c.handle_timeout(now, MSS_MAX) {
                TimeoutAction::Probe(_) => probes += 1,
                TimeoutAction::Reset => break now,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(end, t0 + IDLE_TIMEOUT);
        // 1, 3, 7, 15, 31, 63 s, then one every 60 s up to 7143 s.
        assert_eq!(probes, 6 + 118);
    }

    #[test]
    fn data_sent_after_window_reopens_gets_a_fresh_rto() {
        let (mut c, t0) = conn_established();
        c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1, 0), MSS_MAX);
        c.arm_persist(t0);
        // Probes at 1, 3, 7, 15, 31, 63, 123 and 183 s; the next is due at 243 s.
        for at in [1, 3, 7, 15, 31, 63, 123, 183] {
            let now = t0 + Duration::from_secs(at);
            assert_eq!(c.poll_timeout(), now);
            assert!(matches!(c.handle_timeout(now, MSS_MAX), TimeoutAction::Probe(_)));
        }
        let now = t0 + Duration::from_millis(183_500);
        let a = c.handle_tap_segment(now, &ack(G_ISN + 1, ISN + 1, G_WND), MSS_MAX);
        assert_eq!(a, TapAction { can_send: true, ..TapAction::default() });
        // The window opened: the persist timer is over.
        assert_eq!(c.poll_timeout(), now + IDLE_TIMEOUT);
        c.data_segment(now, 1460, true);
        // RFC 6298 §5.1: a new timer with the initial RTO, and a lost
        // segment is retransmitted, not the connection reset.
        assert_eq!(c.poll_timeout(), now + RTO_INIT);
        assert_eq!(c.handle_timeout(now + RTO_INIT, MSS_MAX), TimeoutAction::Rewind);
        assert_eq!(c.poll_timeout(), now + RTO_INIT * 3);
    }

    #[test]
    fn rto_with_data_in_flight_and_zero_window_rewinds_then_probes() {
        let (mut c, t0) = conn_established();
        send_segments(&mut c, t0, 2);
        // The guest takes one segment and closes its window.
        let a = c.handle_tap_segment(after(t0, 100), &ack(G_ISN + 1, ISN + 1461, 0), MSS_MAX);
        assert_eq!(a.acked, 1460);
        assert_eq!(c.send_budget(usize::MAX), 0);
        assert_eq!(c.handle_timeout(after(t0, 1100), MSS_MAX), TimeoutAction::Rewind);
        assert_eq!(c.send_budget(usize::MAX), 0);
        // Nothing could be resent: the next expiry probes.
        let TimeoutAction::Probe(p) = c.handle_timeout(after(t0, 3100), MSS_MAX) else {
            panic!("no probe");
        };
        assert_eq!((p.seq, p.ack, p.flags), (ISN + 1460, G_ISN + 1, ACK));
        // The window opens: the persist timer stops, the rest can go.
        let a = c.handle_tap_segment(after(t0, 3200), &ack(G_ISN + 1, ISN + 1461, G_WND), MSS_MAX);
        assert!(a.can_send);
        assert_eq!(c.send_budget(usize::MAX), 65_536);
        assert_eq!(c.poll_timeout(), after(t0, 3200) + IDLE_TIMEOUT);
    }

    #[test]
    fn persist_timer_with_open_window_and_nothing_in_flight_disarms() {
        let (mut c, t0) = conn_established();
        c.arm_persist(t0);
        assert_eq!(c.handle_timeout(after(t0, 1000), MSS_MAX), TimeoutAction::None);
        assert_eq!(c.poll_timeout(), t0 + IDLE_TIMEOUT);
    }

    // --- Duplicate ACKs and fast retransmit ---

    #[test]
    fn third_duplicate_ack_triggers_fast_retransmit_once() {
        let (mut c, t0) = conn_established();
        send_segments(&mut c, t0, 4);
        let dup = ack(G_ISN + 1, ISN + 1461, G_WND);
        assert_eq!(c.handle_tap_segment(t0, &dup, MSS_MAX).acked, 1460);
        for _ in 0..2 {
            let a = c.handle_tap_segment(t0, &dup, MSS_MAX);
            assert_eq!(a, TapAction::default());
            assert_eq!(c.seq_to_tap, ISN + 1 + 4 * 1460);
        }
        let a = c.handle_tap_segment(t0, &dup, MSS_MAX);
        assert_eq!(a, TapAction { rewind: true, ..TapAction::default() });
        assert_eq!(c.seq_to_tap, ISN + 1461);
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.send_budget(usize::MAX), 65_536);
        // Resend; further duplicates do not rewind again.
        send_segments(&mut c, t0, 3);
        let a = c.handle_tap_segment(t0, &dup, MSS_MAX);
        assert!(!a.rewind);
        assert_eq!(c.seq_to_tap, ISN + 1 + 4 * 1460);
    }

    #[test]
    fn ack_with_changed_window_is_not_a_duplicate() {
        let (mut c, t0) = conn_established();
        send_segments(&mut c, t0, 2);
        for wnd in [G_WND - 1, G_WND - 2, G_WND - 3] {
            let a = c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1, wnd), MSS_MAX);
            assert!(!a.rewind);
        }
        assert_eq!(c.seq_to_tap, ISN + 2921);
    }

    #[test]
    fn ack_with_data_or_fin_is_not_a_duplicate() {
        let (mut c, t0) = conn_established();
        send_segments(&mut c, t0, 2);
        let mut seq = G_ISN + 1;
        for _ in 0..3 {
            let a = c.handle_tap_segment(t0, &data(seq, ISN + 1, G_WND, 10), MSS_MAX);
            assert!(!a.rewind);
            assert_eq!(a.write, 0..10);
            c.handle_written(10, 10, false);
            seq += 10;
        }
        let a = c.handle_tap_segment(t0, &flags(seq, ISN + 1, FIN | ACK, G_WND), MSS_MAX);
        assert!(!a.rewind);
        assert_eq!(c.seq_to_tap, ISN + 2921);
    }

    #[test]
    fn duplicate_acks_without_data_in_flight_are_not_counted() {
        let (mut c, t0) = conn_established();
        for _ in 0..5 {
            let a = c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1, G_WND), MSS_MAX);
            assert_eq!(a, TapAction::default());
        }
        send_segments(&mut c, t0, 1);
        for _ in 0..2 {
            assert!(!c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1, G_WND), MSS_MAX).rewind);
        }
        assert!(c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1, G_WND), MSS_MAX).rewind);
    }

    #[test]
    fn new_ack_restarts_the_duplicate_count() {
        let (mut c, t0) = conn_established();
        send_segments(&mut c, t0, 4);
        for _ in 0..2 {
            assert!(!c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1, G_WND), MSS_MAX).rewind);
        }
        c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1461, G_WND), MSS_MAX);
        for _ in 0..2 {
            assert!(!c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1461, G_WND), MSS_MAX).rewind);
        }
        assert!(c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1461, G_WND), MSS_MAX).rewind);
    }

    // --- Retransmission timeout ---

    #[test]
    fn rto_rewinds_to_una_with_backoff_then_resets_after_max_retries() {
        let (mut c, t0) = conn_established();
        send_segments(&mut c, t0, 2);
        c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1461, G_WND), MSS_MAX);
        // The partial ACK restarted the timer at t0 + 1 s.
        let mut at = 1000;
        // RTO doubles from 1 s (RFC 6298 §5.5) and stops at RTO_MAX.
        for next in [2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000] {
            assert_eq!(c.poll_timeout(), after(t0, at));
            assert_eq!(c.handle_timeout(after(t0, at - 1), MSS_MAX), TimeoutAction::None);
            assert_eq!(c.handle_timeout(after(t0, at), MSS_MAX), TimeoutAction::Rewind);
            assert_eq!(c.seq_to_tap, ISN + 1461);
            assert_eq!(c.in_flight(), 0);
            // The caller resends what is in flight; the timer keeps running.
            c.data_segment(after(t0, at), 1460, true);
            at += next;
        }
        assert_eq!(c.handle_timeout(after(t0, at), MSS_MAX), TimeoutAction::Reset);
        assert_eq!(c.state, State::Closed);
        assert!(c.is_done());
    }

    #[test]
    fn ack_after_rto_restarts_backoff() {
        let (mut c, t0) = conn_established();
        send_segments(&mut c, t0, 2);
        assert_eq!(c.handle_timeout(after(t0, 1000), MSS_MAX), TimeoutAction::Rewind);
        send_segments(&mut c, after(t0, 1000), 2);
        assert_eq!(c.handle_timeout(after(t0, 3000), MSS_MAX), TimeoutAction::Rewind);
        send_segments(&mut c, after(t0, 3000), 2);
        let a = c.handle_tap_segment(after(t0, 3100), &ack(G_ISN + 1, ISN + 1461, G_WND), MSS_MAX);
        assert_eq!(a.acked, 1460);
        assert_eq!(c.poll_timeout(), after(t0, 4100));
        assert_eq!(c.handle_timeout(after(t0, 4100), MSS_MAX), TimeoutAction::Rewind);
        assert_eq!(c.poll_timeout(), after(t0, 6100));
    }

    #[test]
    fn ack_for_data_sent_before_an_rto_rewind_is_accepted() {
        let (mut c, t0) = conn_established();
        send_segments(&mut c, t0, 3);
        assert_eq!(c.handle_timeout(after(t0, 1000), MSS_MAX), TimeoutAction::Rewind);
        // The caller could resend one segment only before the guest's
        // (delayed, not lost) ACK for all three arrives.
        c.data_segment(after(t0, 1000), 1460, false);
        let a = c.handle_tap_segment(after(t0, 1010), &ack(G_ISN + 1, ISN + 4381, G_WND), MSS_MAX);
        assert_eq!(a, TapAction { acked: 4380, can_send: true, ..TapAction::default() });
        assert_eq!(c.seq_ack_from_tap, ISN + 4381);
        assert_eq!(c.seq_to_tap, ISN + 4381);
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.send_budget(usize::MAX), 65_536);
        assert_eq!(c.poll_timeout(), after(t0, 1010) + IDLE_TIMEOUT);
    }

    #[test]
    fn ack_for_data_sent_before_fast_retransmit_is_accepted() {
        let (mut c, t0) = conn_established();
        send_segments(&mut c, t0, 4);
        for _ in 0..3 {
            c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1, G_WND), MSS_MAX);
        }
        assert_eq!(c.seq_to_tap, ISN + 1);
        // The resent first segment fills the guest's hole: it acknowledges
        // everything it holds, more than was resent so far.
        c.data_segment(t0, 1460, false);
        let a = c.handle_tap_segment(after(t0, 1), &ack(G_ISN + 1, ISN + 2921, G_WND), MSS_MAX);
        assert_eq!(a, TapAction { acked: 2920, can_send: true, ..TapAction::default() });
        assert_eq!(c.seq_to_tap, ISN + 2921);
        assert_eq!(c.in_flight(), 0);
        // What was sent before the rewind can still be acknowledged later.
        let a = c.handle_tap_segment(after(t0, 2), &ack(G_ISN + 1, ISN + 5841, G_WND), MSS_MAX);
        assert_eq!(a.acked, 2920);
        assert_eq!(c.seq_to_tap, ISN + 5841);
    }

    #[test]
    fn ack_of_fin_sent_before_a_rewind_is_accepted() {
        let (mut c, t0) = conn_established();
        c.data_segment(t0, 1000, true);
        c.fin_segment(t0);
        assert_eq!(c.handle_timeout(after(t0, 1000), MSS_MAX), TimeoutAction::Rewind);
        assert!(!c.tap_fin_sent);
        let a = c.handle_tap_segment(after(t0, 1001), &ack(G_ISN + 1, ISN + 1002, G_WND), MSS_MAX);
        // The FIN's sequence number is no byte of the socket.
        assert_eq!(a.acked, 1000);
        assert!(!a.ack_now);
        assert!(c.tap_fin_sent && c.tap_fin_acked);
        assert_eq!(c.seq_to_tap, ISN + 1002);
        assert_eq!(c.fin_segment(after(t0, 1001)), None);
        assert_eq!(c.send_budget(usize::MAX), 0);
    }

    #[test]
    fn ack_beyond_anything_sent_is_challenged_after_a_rewind() {
        let (mut c, t0) = conn_established();
        send_segments(&mut c, t0, 2);
        assert_eq!(c.handle_timeout(after(t0, 1000), MSS_MAX), TimeoutAction::Rewind);
        let a = c.handle_tap_segment(after(t0, 1001), &ack(G_ISN + 1, ISN + 2922, G_WND), MSS_MAX);
        assert_eq!(a, TapAction { ack_now: true, ..TapAction::default() });
        assert_eq!((c.seq_ack_from_tap, c.seq_to_tap), (ISN + 1, ISN + 1));
    }

    // --- Data from the guest: order, overlap, short writes ---

    #[test]
    fn in_order_segment_is_written_then_acknowledged() {
        let (mut c, t0) = conn_established();
        c.ack_segment();
        let a = c.handle_tap_segment(t0, &data(G_ISN + 1, ISN + 1, G_WND, 1000), MSS_MAX);
        assert_eq!(a, TapAction { write: 0..1000, ..TapAction::default() });
        // Nothing acknowledged before the socket took it.
        assert_eq!(c.seq_from_tap, G_ISN + 1);
        assert!(!c.ack_needed());
        c.handle_written(1000, 1000, false);
        assert_eq!(c.seq_from_tap, G_ISN + 1001);
        assert!(c.ack_needed());
        assert_eq!(c.ack_segment().ack, G_ISN + 1001);
        assert_eq!(c.seq_ack_to_tap, G_ISN + 1001);
        assert!(!c.ack_needed());
    }

    #[test]
    fn segment_after_hole_is_dropped_with_duplicate_ack() {
        let (mut c, t0) = conn_established();
        let a = c.handle_tap_segment(t0, &data(G_ISN + 1001, ISN + 1, G_WND, 500), MSS_MAX);
        assert_eq!(a, TapAction { ack_now: true, ..TapAction::default() });
        assert_eq!(c.seq_from_tap, G_ISN + 1);
        assert_eq!(c.ack_segment().ack, G_ISN + 1);
    }

    #[test]
    fn overlapping_segment_is_trimmed_to_new_bytes() {
        let (mut c, t0) = conn_established();
        c.handle_tap_segment(t0, &data(G_ISN + 1, ISN + 1, G_WND, 1000), MSS_MAX);
        c.handle_written(1000, 1000, false);
        let a = c.handle_tap_segment(t0, &data(G_ISN + 901, ISN + 1, G_WND, 300), MSS_MAX);
        assert_eq!(a, TapAction { write: 100..300, ..TapAction::default() });
        c.handle_written(200, 200, false);
        assert_eq!(c.seq_from_tap, G_ISN + 1201);
    }

    #[test]
    fn fully_old_segment_is_answered_with_ack_only() {
        let (mut c, t0) = conn_established();
        c.handle_tap_segment(t0, &data(G_ISN + 1, ISN + 1, G_WND, 1000), MSS_MAX);
        c.handle_written(1000, 1000, false);
        for (seq, dlen) in [(G_ISN + 1, 1000), (G_ISN + 501, 500), (G_ISN + 1, 10)] {
            let a = c.handle_tap_segment(t0, &data(seq, ISN + 1, G_WND, dlen), MSS_MAX);
            assert_eq!(a, TapAction { ack_now: true, ..TapAction::default() });
        }
        assert_eq!(c.seq_from_tap, G_ISN + 1001);
    }

    #[test]
    fn guest_keepalive_is_answered_with_an_ack() {
        let (mut c, t0) = conn_established();
        c.handle_tap_segment(t0, &data(G_ISN + 1, ISN + 1, G_WND, 100), MSS_MAX);
        c.handle_written(100, 100, false);
        c.ack_segment();
        // RFC 9293 §3.8.4: SEG.SEQ = SND.NXT - 1, with no data (Linux) or
        // one garbage byte; not acceptable, so it gets an ACK (§3.10.7.4).
        let now = t0 + Duration::from_secs(7200);
        for dlen in [0, 1] {
            let a = c.handle_tap_segment(now, &data(G_ISN + 100, ISN + 1, G_WND, dlen), MSS_MAX);
            assert_eq!(a, TapAction { ack_now: true, ..TapAction::default() }, "dlen {dlen}");
        }
        assert_eq!(c.seq_from_tap, G_ISN + 101);
        assert_eq!(c.poll_timeout(), now + IDLE_TIMEOUT);
    }

    #[test]
    fn guest_window_probe_is_answered_with_our_window() {
        let (mut c, t0) = conn_established();
        c.set_wnd_to_tap(0);
        assert_eq!(c.ack_segment().wnd, 0);
        // Our window update was lost; the guest probes the zero window.
        c.set_wnd_to_tap(64 << 8);
        let a = c.handle_tap_segment(t0, &ack(G_ISN, ISN + 1, G_WND), MSS_MAX);
        assert_eq!(a, TapAction { ack_now: true, ..TapAction::default() });
        assert_eq!(c.ack_segment().wnd, 64);
    }

    #[test]
    fn pure_ack_at_or_beyond_rcv_nxt_needs_no_answer() {
        let (mut c, t0) = conn_established();
        c.ack_segment();
        assert_eq!(c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1, G_WND), MSS_MAX), TapAction::default());
        // After a short write, the guest's ACKs carry its SND.NXT, beyond
        // what we took.
        c.handle_tap_segment(t0, &data(G_ISN + 1, ISN + 1, G_WND, 1000), MSS_MAX);
        c.handle_written(10, 1000, false);
        c.ack_segment();
        assert_eq!(c.handle_tap_segment(t0, &ack(G_ISN + 1001, ISN + 1, G_WND), MSS_MAX), TapAction::default());
    }

    #[test]
    fn short_write_acknowledges_only_written_bytes_and_owes_four_acks() {
        let (mut c, t0) = conn_established();
        let a = c.handle_tap_segment(t0, &data(G_ISN + 1, ISN + 1, G_WND, 1000), MSS_MAX);
        assert_eq!(a.write, 0..1000);
        c.handle_written(600, 1000, false);
        assert!(c.sock_full);
        assert_eq!(c.seq_from_tap, G_ISN + 601);
        assert_eq!(c.ack_segment().ack, G_ISN + 601);
        // Next segment of the guest lies beyond what we took: a hole.
        let a = c.handle_tap_segment(t0, &data(G_ISN + 1001, ISN + 1, G_WND, 1000), MSS_MAX);
        assert_eq!(a, TapAction { ack_now: true, ..TapAction::default() });
        // Room again: window update plus three duplicates, only once.
        assert_eq!(c.handle_sock_writable(), 4);
        assert!(!c.sock_full);
        assert_eq!(c.handle_sock_writable(), 0);
        // The guest's retransmission is trimmed to the part not written.
        let a = c.handle_tap_segment(t0, &data(G_ISN + 1, ISN + 1, G_WND, 1000), MSS_MAX);
        assert_eq!(a.write, 600..1000);
        c.handle_written(400, 400, false);
        assert_eq!(c.seq_from_tap, G_ISN + 1001);
        assert!(!c.sock_full);
    }

    #[test]
    fn staged_segments_short_write_is_taken_back_before_any_ack() {
        let (mut c, t0) = conn_established();
        // Two contiguous segments staged and counted as written.
        let a = c.handle_tap_segment(t0, &data(G_ISN + 1, ISN + 1, G_WND, 1000), MSS_MAX);
        c.handle_written(a.write.len(), a.write.len(), false);
        let a = c.handle_tap_segment(t0, &data(G_ISN + 1001, ISN + 1, G_WND, 1000), MSS_MAX);
        assert_eq!(a.write, 0..1000, "the second is in order thanks to the first");
        c.handle_written(1000, 1000, false);
        // The one send() of both took 1500 bytes only.
        c.handle_write_shortfall(500);
        assert_eq!(c.seq_from_tap, G_ISN + 1501);
        assert!(c.sock_full);
        assert_eq!(c.ack_segment().ack, G_ISN + 1501);
        // The guest's retransmission of the second segment is trimmed.
        let a = c.handle_tap_segment(t0, &data(G_ISN + 1001, ISN + 1, G_WND, 1000), MSS_MAX);
        assert_eq!(a.write, 500..1000);
        // No shortfall: nothing changes.
        c.handle_write_shortfall(0);
        assert_eq!(c.seq_from_tap, G_ISN + 1501);
    }

    #[test]
    fn acks_owed_after_short_write_are_a_window_update_and_three_duplicates() {
        let (mut c, t0) = conn_established();
        c.set_wnd_to_tap(1000);
        c.ack_segment();
        c.handle_tap_segment(t0, &data(G_ISN + 1, ISN + 1, G_WND, 1460), MSS_MAX);
        c.handle_written(1000, 1460, false);
        c.set_wnd_to_tap(0);
        assert_eq!(c.ack_segment().wnd, 0);
        // The socket drained: the caller sets the room and sends 4 ACKs.
        c.set_wnd_to_tap(100_000);
        let n = c.handle_sock_writable();
        let acks: Vec<SegOut> = (0..n).map(|_| c.ack_segment()).collect();
        let expected =
            SegOut { seq: ISN + 1, ack: G_ISN + 1001, flags: ACK, wnd: (100_000 >> 8) as u16, mss: None, ws: None };
        assert_eq!(acks, vec![expected; 4]);
        assert!(!c.ack_needed());
    }

    #[test]
    fn handle_sock_writable_without_short_write_owes_nothing() {
        let (mut c, _) = conn_established();
        assert_eq!(c.handle_sock_writable(), 0);
    }

    // --- ack_needed ---

    #[test]
    fn ack_needed_for_window_growth_from_zero() {
        let (mut c, _) = conn_established();
        c.set_wnd_to_tap(0);
        c.ack_segment();
        assert!(!c.ack_needed());
        c.set_wnd_to_tap(4096);
        assert!(c.ack_needed());
        assert_eq!(c.ack_segment().wnd, 16);
        assert!(!c.ack_needed());
    }

    #[test]
    fn window_above_syn_ack_cap_is_announced_after_the_handshake() {
        let (mut c, _) = conn_established();
        // The SYN-ACK carried 65535 (unscaled); the socket has 200000.
        assert!(c.ack_needed());
        let s = c.ack_segment();
        assert_eq!((s.seq, s.ack, s.wnd), (ISN + 1, G_ISN + 1, 781));
        assert!(!c.ack_needed());
    }

    #[test]
    fn ack_needed_only_for_window_growth_of_two_segments() {
        let (mut c, _) = conn_established();
        c.set_wnd_to_tap(100 << 8);
        c.ack_segment();
        // 2 * MSS = 2920 bytes: 11 units of 256 bytes are not enough.
        c.set_wnd_to_tap(111 << 8);
        assert!(!c.ack_needed());
        c.set_wnd_to_tap(112 << 8);
        assert!(c.ack_needed());
        // Shrinking never needs an ACK.
        c.ack_segment();
        c.set_wnd_to_tap(50 << 8);
        assert!(!c.ack_needed());
    }

    #[test]
    fn ack_needed_is_false_while_scaled_window_stays_zero() {
        let (mut c, _) = conn_established();
        c.set_wnd_to_tap(0);
        c.ack_segment();
        // 255 bytes are 0 in units of 256: the ACK would repeat the last one
        // (a duplicate ACK for a guest with data in flight, RFC 5681 §2).
        c.set_wnd_to_tap(255);
        assert!(!c.ack_needed());
        assert_eq!(c.ack_segment().wnd, 0);
        assert!(!c.ack_needed());
        c.set_wnd_to_tap(256);
        assert!(c.ack_needed());
        assert_eq!(c.ack_segment().wnd, 1);
        assert!(!c.ack_needed());
    }

    #[test]
    fn ack_deferrable_for_less_than_a_segment_with_room_in_the_window() {
        let (mut c, _) = conn_established();
        c.set_wnd_to_tap(1 << 20);
        c.ack_segment();
        assert!(!c.ack_deferrable(), "nothing owed");
        let mss = u32::from(c.mss_to_tap);
        c.seq_from_tap = c.seq_ack_to_tap.wrapping_add(100);
        assert!(c.ack_deferrable(), "100 bytes");
        c.seq_from_tap = c.seq_ack_to_tap.wrapping_add(mss - 1);
        assert!(c.ack_deferrable(), "just under a segment");
        c.seq_from_tap = c.seq_ack_to_tap.wrapping_add(mss);
        assert!(!c.ack_deferrable(), "a full segment");
        // More than half the advertised window used (a window below the
        // MSS, as a fresh socket's at MTU 65520, is fine while half is free).
        c.seq_from_tap = c.seq_ack_to_tap.wrapping_add(100);
        c.wnd_adv = 199;
        assert!(!c.ack_deferrable(), "the guest may soon wait for window");
        c.wnd_adv = 200;
        assert!(c.ack_deferrable());
        c.tap_fin_rcvd = true;
        assert!(!c.ack_deferrable(), "the guest's FIN");
    }

    #[test]
    fn ack_needed_is_false_before_established() {
        let t0 = Instant::now();
        let mut c = TcpConn::from_tap_syn(t0, &syn(G_ISN, 64_240, None, None), ISN, MSS_MAX);
        c.handle_connected(t0, MSS_MAX);
        c.set_wnd_to_tap(1 << 20);
        assert!(!c.ack_needed());
    }

    // --- ACK of unsent data ---

    #[test]
    fn ack_of_unsent_data_gets_challenge_ack() {
        let (mut c, t0) = conn_established();
        send_segments(&mut c, t0, 1);
        let a = c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1461 + 1, 4), MSS_MAX);
        assert_eq!(a, TapAction { ack_now: true, ..TapAction::default() });
        assert_eq!(c.seq_ack_from_tap, ISN + 1);
        assert_eq!(c.wnd_from_tap, G_WND_BYTES);
    }

    #[test]
    fn segment_acking_unsent_data_is_dropped_with_its_payload_and_fin() {
        let (mut c, t0) = conn_established();
        // RFC 9293 §3.10.7.4: send an ACK, drop the segment, and return.
        let seg = SegIn { flags: ACK | PSH | FIN, ..data(G_ISN + 1, ISN + 2, G_WND, 100) };
        let a = c.handle_tap_segment(t0, &seg, MSS_MAX);
        assert_eq!(a, TapAction { ack_now: true, ..TapAction::default() });
        assert_eq!(c.seq_from_tap, G_ISN + 1);
        // The same data with a valid ACK goes through.
        let a = c.handle_tap_segment(t0, &SegIn { ack: ISN + 1, ..seg }, MSS_MAX);
        assert_eq!(a, TapAction { write: 0..100, fin: true, ..TapAction::default() });
    }

    // --- FIN ---

    #[test]
    fn guest_fin_with_data_is_written_then_consumed() {
        let (mut c, t0) = conn_established();
        let seg = SegIn { flags: ACK | FIN, ..data(G_ISN + 1, ISN + 1, G_WND, 100) };
        let a = c.handle_tap_segment(t0, &seg, MSS_MAX);
        assert_eq!(a, TapAction { write: 0..100, fin: true, ..TapAction::default() });
        c.handle_written(100, 100, true);
        assert!(c.tap_fin_rcvd);
        // The FIN takes one sequence number.
        assert_eq!(c.ack_segment().ack, G_ISN + 102);
        // Anything after the FIN is only acknowledged again.
        let a = c.handle_tap_segment(t0, &data(G_ISN + 102, ISN + 1, G_WND, 10), MSS_MAX);
        assert_eq!(a, TapAction { ack_now: true, ..TapAction::default() });
        let a = c.handle_tap_segment(t0, &seg, MSS_MAX);
        assert_eq!(a, TapAction { ack_now: true, ..TapAction::default() });
    }

    #[test]
    fn guest_fin_after_short_write_is_not_consumed() {
        let (mut c, t0) = conn_established();
        let seg = SegIn { flags: ACK | FIN, ..data(G_ISN + 1, ISN + 1, G_WND, 100) };
        c.handle_tap_segment(t0, &seg, MSS_MAX);
        c.handle_written(40, 100, false);
        assert!(!c.tap_fin_rcvd);
        assert_eq!(c.seq_from_tap, G_ISN + 41);
        let a = c.handle_tap_segment(t0, &seg, MSS_MAX);
        assert_eq!(a, TapAction { write: 40..100, fin: true, ..TapAction::default() });
        c.handle_written(60, 60, true);
        assert_eq!(c.seq_from_tap, G_ISN + 102);
        assert!(c.tap_fin_rcvd);
    }

    #[test]
    fn guest_fin_first_then_host_fin_acknowledged_is_done() {
        let (mut c, t0) = conn_established();
        let a = c.handle_tap_segment(t0, &flags(G_ISN + 1, ISN + 1, FIN | ACK, G_WND), MSS_MAX);
        assert_eq!(a, TapAction { write: 0..0, fin: true, ..TapAction::default() });
        c.handle_written(0, 0, true);
        assert!(c.ack_needed());
        assert_eq!(c.ack_segment().ack, G_ISN + 2);
        assert!(!c.is_done());
        // The host keeps sending after the guest's half-close.
        c.data_segment(t0, 500, true);
        let a = c.handle_tap_segment(t0, &ack(G_ISN + 2, ISN + 501, G_WND), MSS_MAX);
        assert_eq!(a.acked, 500);
        // Host end of file: our FIN.
        let fin = c.fin_segment(after(t0, 10)).unwrap();
        assert_eq!((fin.seq, fin.ack, fin.flags), (ISN + 501, G_ISN + 2, FIN | ACK));
        assert_eq!(c.fin_segment(after(t0, 10)), None);
        assert_eq!(c.send_budget(usize::MAX), 0);
        assert!(!c.is_done());
        let a = c.handle_tap_segment(after(t0, 20), &ack(G_ISN + 2, ISN + 502, G_WND), MSS_MAX);
        assert_eq!(a.acked, 0);
        assert!(c.tap_fin_acked);
        assert!(c.is_done());
    }

    #[test]
    fn host_fin_first_then_guest_fin_is_done() {
        let (mut c, t0) = conn_established();
        c.data_segment(t0, 1000, true);
        let fin = c.fin_segment(t0).unwrap();
        assert_eq!(fin.seq, ISN + 1001);
        assert_eq!(c.seq_to_tap, ISN + 1002);
        assert_eq!(c.poll_timeout(), after(t0, 1000));
        let a = c.handle_tap_segment(after(t0, 5), &ack(G_ISN + 1, ISN + 1002, G_WND), MSS_MAX);
        assert_eq!(a.acked, 1000);
        assert!(c.tap_fin_acked);
        assert_eq!(c.poll_timeout(), after(t0, 5) + IDLE_TIMEOUT);
        assert!(!c.is_done());
        // The guest may still send before closing its side.
        let a = c.handle_tap_segment(after(t0, 6), &data(G_ISN + 1, ISN + 1002, G_WND, 10), MSS_MAX);
        assert_eq!(a.write, 0..10);
        c.handle_written(10, 10, false);
        let a = c.handle_tap_segment(after(t0, 7), &flags(G_ISN + 11, ISN + 1002, FIN | ACK, G_WND), MSS_MAX);
        assert_eq!(a, TapAction { write: 0..0, fin: true, ..TapAction::default() });
        c.handle_written(0, 0, true);
        assert!(c.ack_needed());
        assert_eq!(c.ack_segment().ack, G_ISN + 12);
        assert!(c.is_done());
    }

    #[test]
    fn fin_acked_separately_from_data_counts_no_byte() {
        let (mut c, t0) = conn_established();
        c.data_segment(t0, 1000, true);
        c.fin_segment(t0);
        let a = c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1001, G_WND), MSS_MAX);
        assert_eq!(a.acked, 1000);
        assert!(!c.tap_fin_acked);
        let a = c.handle_tap_segment(t0, &ack(G_ISN + 1, ISN + 1002, G_WND), MSS_MAX);
        assert_eq!(a.acked, 0);
        assert!(c.tap_fin_acked);
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn lost_fin_is_resent_after_rto() {
        let (mut c, t0) = conn_established();
        let first = c.fin_segment(t0).unwrap();
        assert_eq!(c.handle_timeout(after(t0, 1000), MSS_MAX), TimeoutAction::Rewind);
        assert!(!c.tap_fin_sent);
        assert_eq!(c.seq_to_tap, ISN + 1);
        // The caller finds end of file again at offset 0.
        assert_eq!(c.fin_segment(after(t0, 1000)), Some(first));
        assert_eq!(c.seq_to_tap, ISN + 2);
        let a = c.handle_tap_segment(after(t0, 1001), &ack(G_ISN + 1, ISN + 2, G_WND), MSS_MAX);
        assert_eq!(a.acked, 0);
        assert!(c.tap_fin_acked);
    }

    #[test]
    fn connection_half_closed_by_guest_stays_open_while_host_is_quiet() {
        let (mut c, t0) = conn_established();
        c.handle_tap_segment(t0, &flags(G_ISN + 1, ISN + 1, FIN | ACK, G_WND), MSS_MAX);
        c.handle_written(0, 0, true);
        c.ack_segment();
        c.data_segment(after(t0, 1000), 100, true);
        c.handle_tap_segment(after(t0, 1001), &ack(G_ISN + 2, ISN + 101, G_WND), MSS_MAX);
        // RFC 9293 §3.6: the host may go on sending after the guest's FIN,
        // after any pause: only the idle timeout applies.
        assert_eq!(c.poll_timeout(), after(t0, 1001) + IDLE_TIMEOUT);
        let now = t0 + Duration::from_secs(600);
        assert_eq!(c.handle_timeout(now, MSS_MAX), TimeoutAction::None);
        c.data_segment(now, 100, true);
        let a = c.handle_tap_segment(now, &ack(G_ISN + 2, ISN + 201, G_WND), MSS_MAX);
        assert_eq!(a.acked, 100);
        assert_eq!(c.state, State::Established);
    }

    #[test]
    fn connection_half_closed_by_host_stays_open_while_guest_is_quiet() {
        let (mut c, t0) = conn_established();
        c.fin_segment(t0);
        // While our FIN is not acknowledged, the FIN timeout applies.
        c.handle_tap_segment(after(t0, 1), &ack(G_ISN + 1, ISN + 1, G_WND), MSS_MAX);
        assert_eq!(c.poll_timeout(), after(t0, 1000));
        c.handle_tap_segment(after(t0, 2), &ack(G_ISN + 1, ISN + 2, G_WND), MSS_MAX);
        assert!(c.tap_fin_acked);
        assert_eq!(c.poll_timeout(), after(t0, 2) + IDLE_TIMEOUT);
        let now = t0 + Duration::from_secs(600);
        assert_eq!(c.handle_timeout(now, MSS_MAX), TimeoutAction::None);
        let a = c.handle_tap_segment(now, &data(G_ISN + 1, ISN + 2, G_WND, 10), MSS_MAX);
        assert_eq!(a.write, 0..10);
        assert_eq!(c.poll_timeout(), now + IDLE_TIMEOUT);
    }

    #[test]
    fn lost_fin_is_resent_with_backoff() {
        let (mut c, t0) = conn_established();
        c.data_segment(t0, 500, false);
        c.fin_segment(t0);
        for (at, next) in [(1, 3), (3, 7), (7, 15), (15, 31)] {
            let now = t0 + Duration::from_secs(at);
            assert_eq!(c.poll_timeout(), now);
            assert_eq!(c.handle_timeout(now, MSS_MAX), TimeoutAction::Rewind);
            // The caller resends the data, finds end of file, resends the
            // FIN: the timer keeps its backoff (RFC 6298 §5.5).
            c.data_segment(now, 500, false);
            assert_eq!(c.fin_segment(now).map(|s| s.seq), Some(ISN + 501));
            assert_eq!(c.poll_timeout(), t0 + Duration::from_secs(next));
        }
    }

    #[test]
    fn unacknowledged_fin_is_given_up_after_fin_timeout() {
        let (mut c, t0) = conn_established();
        c.fin_segment(t0);
        // The guest talks, but never acknowledges our FIN (which the
        // caller resends on each timeout).
        let (mut now, mut seq) = (t0, G_ISN + 1);
        let end = loop {
            let next = c.poll_timeout();
            // Any guest segment between timeouts keeps the FIN deadline.
            let a = c.handle_tap_segment(now, &data(seq, ISN + 1, G_WND, 1), MSS_MAX);
            assert_eq!(a.write, 0..1);
            c.handle_written(1, 1, false);
            seq += 1;
            assert!(c.poll_timeout() <= now + FIN_TIMEOUT);
            now = next;
            match c.handle_timeout(now, MSS_MAX) {
                TimeoutAction::Rewind => assert!(c.fin_segment(now).is_some()),
                TimeoutAction::Reset => break now,
                other => panic!("unexpected {other:?}"),
            }
        };
        // FIN at 0, resent at 1, 3, 7, 15, 31 and 63 s; the next RTO would
        // be at 123 s, like the FIN deadline: 63 s + 60 s.
        assert_eq!(end, t0 + Duration::from_secs(123));
    }

    #[test]
    fn idle_connection_is_reset_after_idle_timeout() {
        let (mut c, t0) = conn_established();
        c.handle_tap_segment(after(t0, 100), &ack(G_ISN + 1, ISN + 1, G_WND), MSS_MAX);
        assert_eq!(c.poll_timeout(), after(t0, 100) + IDLE_TIMEOUT);
        assert_eq!(c.handle_timeout(after(t0, 99) + IDLE_TIMEOUT, MSS_MAX), TimeoutAction::None);
        assert_eq!(c.handle_timeout(after(t0, 100) + IDLE_TIMEOUT, MSS_MAX), TimeoutAction::Reset);
        assert_eq!(c.state, State::Closed);
    }

    // --- RST ---

    #[test]
    fn guest_rst_in_window_resets() {
        let (mut c, t0) = conn_established();
        for seq in [G_ISN + 1, G_ISN + 1 + 65_534] {
            let mut c = c.clone();
            let a = c.handle_tap_segment(t0, &flags(seq, 0, RST, 0), MSS_MAX);
            assert_eq!(a, TapAction { reset: true, ..TapAction::default() });
            assert_eq!(c.state, State::Closed);
            assert!(c.is_done());
        }
        c.handle_tap_segment(t0, &flags(G_ISN + 1, 0, RST | ACK, 0), MSS_MAX);
        // Nothing more happens on a closed connection.
        let a = c.handle_tap_segment(t0, &data(G_ISN + 1, ISN + 1, G_WND, 100), MSS_MAX);
        assert_eq!(a, TapAction::default());
        assert_eq!(c.handle_timeout(t0 + IDLE_TIMEOUT, MSS_MAX), TimeoutAction::None);
    }

    #[test]
    fn guest_rst_out_of_window_is_ignored() {
        let (mut c, t0) = conn_established();
        // SYN-ACK advertised 65535 bytes, unscaled.
        for seq in [G_ISN + 1 + 65_535, G_ISN + 10_000_000, G_ISN, G_ISN - 1000] {
            let a = c.handle_tap_segment(t0, &flags(seq, 0, RST, 0), MSS_MAX);
            assert_eq!(a, TapAction::default(), "seq {seq:#x}");
        }
        assert_eq!(c.state, State::Established);
    }

    #[test]
    fn guest_rst_window_follows_last_advertised_window() {
        let (mut c, t0) = conn_established();
        c.set_wnd_to_tap(1000 << 8);
        c.ack_segment();
        let a = c.handle_tap_segment(t0, &flags(G_ISN + 1 + 255_999, 0, RST, 0), MSS_MAX);
        assert!(a.reset);
        let (mut c, t0) = conn_established();
        c.set_wnd_to_tap(0);
        c.ack_segment();
        assert!(!c.handle_tap_segment(t0, &flags(G_ISN + 2, 0, RST, 0), MSS_MAX).reset);
        assert!(c.handle_tap_segment(t0, &flags(G_ISN + 1, 0, RST, 0), MSS_MAX).reset);
    }

    #[test]
    fn guest_rst_during_handshake_resets() {
        let t0 = Instant::now();
        let mut c = TcpConn::from_tap_syn(t0, &syn(G_ISN, 64_240, None, None), ISN, MSS_MAX);
        assert!(c.handle_tap_segment(t0, &flags(G_ISN + 1, 0, RST, 0), MSS_MAX).reset);
        assert_eq!(c.state, State::Closed);
        let mut c = TcpConn::from_tap_syn(t0, &syn(G_ISN, 64_240, None, None), ISN, MSS_MAX);
        c.handle_connected(t0, MSS_MAX);
        assert!(c.handle_tap_segment(t0, &flags(G_ISN + 1, 0, RST, 0), MSS_MAX).reset);
        assert_eq!(c.state, State::Closed);
    }

    #[test]
    fn rst_segment_carries_our_seq_and_acknowledges_the_guest() {
        let (mut c, t0) = conn_established();
        c.data_segment(t0, 300, true);
        c.handle_tap_segment(t0, &data(G_ISN + 1, ISN + 1, G_WND, 70), MSS_MAX);
        c.handle_written(70, 70, false);
        let r = c.rst_segment();
        assert_eq!((r.seq, r.ack, r.flags), (ISN + 301, G_ISN + 71, RST | ACK));
        c.close();
        assert_eq!(c.state, State::Closed);
        assert!(c.is_done());
    }

    // --- Sequence wrap-around ---

    #[test]
    fn our_data_acks_and_budget_across_sequence_wrap() {
        let (mut c, t0) = conn_established_isn(u32::MAX - 1, G_ISN);
        assert_eq!(c.seq_to_tap, u32::MAX);
        let segs = send_segments(&mut c, t0, 3);
        assert_eq!(segs.iter().map(|s| s.seq).collect::<Vec<_>>(), [u32::MAX, 1459, 2919]);
        assert_eq!(c.seq_to_tap, 4379);
        assert_eq!(c.in_flight(), 4380);
        assert_eq!(c.send_budget(usize::MAX), 65_536 - 4380);
        let a = c.handle_tap_segment(t0, &ack(G_ISN + 1, 1459, G_WND), MSS_MAX);
        assert_eq!(a.acked, 1460);
        assert_eq!(c.send_budget(usize::MAX), 65_536 - 2920);
        // Duplicates across the wrap still count.
        for _ in 0..2 {
            assert!(!c.handle_tap_segment(t0, &ack(G_ISN + 1, 1459, G_WND), MSS_MAX).rewind);
        }
        assert!(c.handle_tap_segment(t0, &ack(G_ISN + 1, 1459, G_WND), MSS_MAX).rewind);
        assert_eq!(c.seq_to_tap, 1459);
        // An ACK beyond what was ever sent, across the wrap.
        let a = c.handle_tap_segment(t0, &ack(G_ISN + 1, 4380, G_WND), MSS_MAX);
        assert!(a.ack_now);
        assert_eq!(a.acked, 0);
    }

    #[test]
    fn syn_ack_and_fin_across_sequence_wrap() {
        let t0 = Instant::now();
        let mut c = TcpConn::from_tap_syn(t0, &syn(G_ISN, 64_240, None, Some(0)), u32::MAX, MSS_MAX);
        assert_eq!(c.handle_connected(t0, MSS_MAX).seq, u32::MAX);
        assert_eq!(c.seq_to_tap, 0);
        assert!(c.handle_tap_segment(t0, &ack(G_ISN + 1, 0, 1000), MSS_MAX).established);
        assert_eq!(c.fin_segment(t0).unwrap().seq, 0);
        let a = c.handle_tap_segment(t0, &ack(G_ISN + 1, 1, 1000), MSS_MAX);
        assert_eq!(a.acked, 0);
        assert!(c.tap_fin_acked);
    }

    #[test]
    fn rto_rewind_across_sequence_wrap() {
        let (mut c, t0) = conn_established_isn(u32::MAX - 100, G_ISN);
        send_segments(&mut c, t0, 1);
        assert_eq!(c.seq_to_tap, 1360);
        assert_eq!(c.handle_timeout(after(t0, 1000), MSS_MAX), TimeoutAction::Rewind);
        assert_eq!(c.seq_to_tap, u32::MAX - 99);
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn guest_data_across_sequence_wrap() {
        let (mut c, t0) = conn_established_isn(ISN, u32::MAX - 10);
        assert_eq!(c.seq_from_tap, u32::MAX - 9);
        let a = c.handle_tap_segment(t0, &data(u32::MAX - 9, ISN + 1, G_WND, 100), MSS_MAX);
        assert_eq!(a.write, 0..100);
        c.handle_written(100, 100, false);
        assert_eq!(c.seq_from_tap, 90);
        assert_eq!(c.ack_segment().ack, 90);
        // Overlap across the wrap: 20 old bytes, 30 new.
        let a = c.handle_tap_segment(t0, &data(70, ISN + 1, G_WND, 50), MSS_MAX);
        assert_eq!(a.write, 20..50);
        // Entirely old, from before the wrap.
        let a = c.handle_tap_segment(t0, &data(u32::MAX - 9, ISN + 1, G_WND, 50), MSS_MAX);
        assert_eq!(a, TapAction { ack_now: true, ..TapAction::default() });
        // A hole.
        let a = c.handle_tap_segment(t0, &data(91, ISN + 1, G_WND, 50), MSS_MAX);
        assert_eq!(a, TapAction { ack_now: true, ..TapAction::default() });
        // RST at RCV.NXT across the wrap, and far out of the window.
        assert!(!c.clone().handle_tap_segment(t0, &flags(u32::MAX - 9, 0, RST, 0), MSS_MAX).reset);
        assert!(c.handle_tap_segment(t0, &flags(90, 0, RST, 0), MSS_MAX).reset);
    }

    #[test]
    fn guest_fin_across_sequence_wrap() {
        let (mut c, t0) = conn_established_isn(ISN, u32::MAX - 1);
        assert_eq!(c.seq_from_tap, u32::MAX);
        let seg = SegIn { flags: ACK | FIN, ..data(u32::MAX, ISN + 1, G_WND, 1) };
        let a = c.handle_tap_segment(t0, &seg, MSS_MAX);
        assert_eq!(a, TapAction { write: 0..1, fin: true, ..TapAction::default() });
        c.handle_written(1, 1, true);
        assert_eq!(c.seq_from_tap, 1);
    }
}
