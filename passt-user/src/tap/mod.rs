//! # Theory of operation
//!
//! The guest side of every flow. A [`Tap`] back-end moves whole Ethernet
//! frames: [`Tap::recv_batch`] reads as many frames as are ready (up to the
//! batch size) in one wakeup, [`Tap::send_batch`] writes every frame queued
//! in a [`TxBatch`]. Protocol code never knows which back-end it talks to.
//!
//! Back-ends: [`tun::TunTap`] (pasta: /dev/net/tun, IFF_TAP | IFF_NO_PI),
//! [`stream::StreamTap`] (passt: length-prefixed frames on a UNIX stream
//! socket, [`unix`]), [`vhost_user::VhostUserTap`] (passt `--vhost-user`:
//! virtio-net queues in the guest's shared memory).
//! A back-end may poll several fds, and their set may change (a guest
//! connecting to passt's socket): it lists them with [`Tap::poll_fds`], the
//! data plane re-registers them when [`Tap::poll_gen`] moves and hands
//! their events to [`Tap::event`].
//!
//! Buffers are allocated once at start-up: [`RxBatch`] is one contiguous
//! buffer holding up to [`BATCH`] frames back to back; [`TxBatch`] has
//! [`BATCH`] fixed slots of [`SLOT`] bytes so that replies can be built in
//! place, headers written in front of data received straight into the slot.
//!
//! Offloads ([`offload`]): each frame in either batch may carry
//! [`Offload`] metadata (a TCP or UDP super-frame, a partial checksum).
//! A back-end says what it accepts in [`Tap::offloads`]; builders produce
//! plain MSS-sized frames with full checksums for the others, and
//! back-ends that cannot read metadata leave [`RxBatch::meta`] empty.

pub mod mem;
pub mod offload;
pub mod stream;
pub mod tun;
pub mod unix;
pub mod vhost_user;

use std::ops::Range;
use std::os::fd::RawFd;

pub use offload::{GsoType, Offload, OffloadCaps};

/// Frames per batch in either direction.
pub const BATCH: usize = 64;
/// Largest frame we handle: 14 bytes of Ethernet header plus a 65535-byte
/// IP packet.
pub const MAX_FRAME: usize = 14 + 65535;
/// Size of one transmit slot, with room for any frame.
pub const SLOT: usize = MAX_FRAME + 1;
/// Room for one frame in [`RxBatch::buf`]: a frame and its virtio-net header.
pub const RX_SLOT: usize = SLOT + offload::VNET_HDR_LEN;

/// Frames read in one wakeup. The default value is empty, with no storage
/// (a placeholder while the real batch is lent out).
#[derive(Debug, Default)]
pub struct RxBatch {
    /// Backing storage; frames are `buf[r]` for `r` in `frames`.
    pub buf: Vec<u8>,
    /// Ranges of the frames read, in order.
    pub frames: Vec<Range<usize>>,
    /// Offload metadata of `frames[i]` at `meta[i]`; empty (every frame
    /// plain) for back-ends without offloads.
    pub meta: Vec<Offload>,
}

impl RxBatch {
    /// Room for [`BATCH`] frames of [`MAX_FRAME`] bytes, each with a
    /// virtio-net header.
    pub fn new() -> Self {
        RxBatch { buf: vec![0; BATCH * RX_SLOT], frames: Vec::with_capacity(BATCH), meta: Vec::with_capacity(BATCH) }
    }

    /// Offload metadata of frame `i` (plain when the back-end gave none).
    pub fn offload(&self, i: usize) -> Offload {
        self.meta.get(i).copied().unwrap_or_default()
    }
}


/// Frames queued for the tap, built in place.
#[derive(Debug)]
pub struct TxBatch {
    buf: Vec<u8>,
    frames: Vec<Range<usize>>,
    /// Offload metadata of `frames[i]` at `meta[i]`.
    meta: Vec<Offload>,
    /// Slots consumed (queued frames, plus slots skipped by `advance`).
    used: usize,
}

impl TxBatch {
    /// [`BATCH`] slots of [`SLOT`] bytes.
    pub fn new() -> Self {
        TxBatch { buf: vec![0; BATCH * SLOT], frames: Vec::with_capacity(BATCH), meta: Vec::with_capacity(BATCH), used: 0 }
    }

    /// True when no slot is free: flush before building another frame.
    pub fn is_full(&self) -> bool {
        self.used >= BATCH
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True if nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Free slots left.
    pub fn room(&self) -> usize {
        BATCH - self.used
    }

    /// The `i`-th free slot from now (0: the next one), [`SLOT`] bytes, or
    /// `None` past the last one.
    pub fn slot(&mut self, i: usize) -> Option<&mut [u8]> {
        let n = self.used + i;
        if n >= BATCH {
            return None;
        }
        self.buf.get_mut(n * SLOT..(n + 1) * SLOT)
    }

    /// Every free slot, in the order [`TxBatch::slot`] numbers them.
    pub fn free_slots(&mut self) -> impl Iterator<Item = &mut [u8]> {
        let start = (self.used * SLOT).min(self.buf.len());
        self.buf[start..].chunks_exact_mut(SLOT)
    }

    /// Queue the frame at `range` (relative to the slot's start) of the
    /// next free slot, and consume that slot.
    pub fn commit(&mut self, range: Range<usize>) {
        self.commit_offload(range, Offload::default());
    }

    /// [`TxBatch::commit`] for a frame with offload metadata `off` (only
    /// what [`Tap::offloads`] of the back-end accepts).
    pub fn commit_offload(&mut self, range: Range<usize>, off: Offload) {
        self.commit_in_offload(0, range, off);
        self.used += 1;
    }

    /// Queue the frame at `range` of free slot `i` (see [`TxBatch::slot`])
    /// without consuming slots: after filling several slots in one go,
    /// [`TxBatch::advance`] consumes them (those not queued stay unused).
    pub fn commit_in(&mut self, i: usize, range: Range<usize>) {
        self.commit_in_offload(i, range, Offload::default());
    }

    /// [`TxBatch::commit_in`] for a frame with offload metadata `off`.
    pub fn commit_in_offload(&mut self, i: usize, range: Range<usize>, off: Offload) {
        let n = self.used + i;
        debug_assert!(n < BATCH && range.end <= SLOT);
        self.frames.push(n * SLOT + range.start..n * SLOT + range.end);
        self.meta.push(off);
    }

    /// Copy bytes `range` of free slot `src` to offset `at` of free slot
    /// `dst` (slots numbered as in [`TxBatch::slot`]): gathers data read
    /// into several slots behind one header. Out-of-range slots or
    /// offsets copy nothing and return false.
    pub fn copy_between(&mut self, src: usize, range: Range<usize>, dst: usize, at: usize) -> bool {
        let (s, d) = (self.used + src, self.used + dst);
        if s >= BATCH || d >= BATCH || range.start > range.end || range.end > SLOT || at + range.len() > SLOT {
            return false;
        }
        self.buf.copy_within(s * SLOT + range.start..s * SLOT + range.end, d * SLOT + at);
        true
    }

    /// Consume `k` slots filled through [`TxBatch::commit_in`].
    pub fn advance(&mut self, k: usize) {
        self.used = (self.used + k).min(BATCH);
    }

    /// The queued frames, in order.
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> {
        self.frames.iter().map(|r| &self.buf[r.clone()])
    }

    /// The queued frames with their offload metadata, in order.
    pub fn frames_offload(&self) -> impl Iterator<Item = (&[u8], Offload)> {
        self.frames.iter().zip(&self.meta).map(|(r, m)| (&self.buf[r.clone()], *m))
    }

    /// Forget every queued frame.
    pub fn clear(&mut self) {
        self.frames.clear();
        self.meta.clear();
        self.used = 0;
    }
}

impl Default for TxBatch {
    fn default() -> Self {
        Self::new()
    }
}

/// What went wrong on the tap.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The device or peer is gone (EOF, ENXIO, EBADFD...): nothing more can
    /// be read or written.
    #[error("tap device gone: {0}")]
    Gone(#[source] std::io::Error),
    /// Any other I/O error.
    #[error("tap I/O error: {0}")]
    Io(#[source] std::io::Error),
}

/// Result of writing a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxResult {
    /// Frames written.
    pub sent: usize,
    /// Frames dropped because the device queue was full.
    pub dropped: usize,
}

/// One fd a back-end wants polled: `events` is an epoll mask
/// (EPOLLIN, EPOLLOUT, EPOLLRDHUP...), `id` is the back-end's own name for
/// it, handed back to [`Tap::event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollFd {
    /// The fd.
    pub fd: RawFd,
    /// epoll event mask to register.
    pub events: u32,
    /// Back-end-defined identifier (below 2^32).
    pub id: u32,
}

/// What an event on one of a back-end's fds amounted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapEvent {
    /// Frames may be ready: call [`Tap::recv_batch`].
    Readable,
    /// A guest attached (passt: a client connected to the socket). Per-guest
    /// state (its MAC and addresses) starts afresh.
    Connected,
    /// The guest left; frames written now are dropped until the next one.
    Disconnected,
    /// Nothing for the data path (a control message handled, a spurious
    /// wakeup, room to write again).
    Nothing,
}

/// A tap back-end.
pub trait Tap {
    /// The fds to poll now, appended to `out`. The set may change after
    /// [`Tap::event`] or [`Tap::send_batch`]; [`Tap::poll_gen`] tells when.
    fn poll_fds(&self, out: &mut Vec<PollFd>);

    /// A counter that changes whenever [`Tap::poll_fds`] would return
    /// something else: the caller re-registers its fds then.
    fn poll_gen(&self) -> u64 {
        0
    }

    /// The caller removed the registrations of the previous
    /// [`Tap::poll_fds`] list and added the current one: fds the back-end
    /// stopped listing can be closed now (closing one while still
    /// registered could leave the registration behind, when another
    /// process holds the same file).
    fn polled(&mut self) {}

    /// Handle readiness `events` (epoll mask) of the fd registered with
    /// identifier `id`.
    ///
    /// # Errors
    /// [`TapError::Gone`] when the back-end cannot go on (device gone, or
    /// the only guest of `--one-off` left): the process exits.
    fn event(&mut self, id: u32, events: u32) -> Result<TapEvent, TapError>;

    /// Read every frame ready, at most [`BATCH`], into `rx` (cleared first).
    /// Returns the number of frames read; 0 when none was ready.
    ///
    /// # Errors
    /// [`TapError::Gone`] when the device is gone, [`TapError::Io`] otherwise.
    fn recv_batch(&mut self, rx: &mut RxBatch) -> Result<usize, TapError>;

    /// Write every frame of `tx`; frames the device cannot take now are
    /// dropped and counted in the result.
    ///
    /// # Errors
    /// [`TapError::Gone`] when the device is gone, [`TapError::Io`] otherwise.
    fn send_batch(&mut self, tx: &TxBatch) -> Result<TxResult, TapError>;

    /// What frames written to the back-end may carry (see [`offload`]);
    /// none by default. May change when a guest (re)negotiates.
    fn offloads(&self) -> OffloadCaps {
        OffloadCaps::default()
    }
}

/// [`TapError::Gone`] for a tap device that failed with `e`, saying so
/// ("tap device gone (Input/output error)").
pub fn device_gone(e: &std::io::Error) -> TapError {
    TapError::Gone(std::io::Error::new(e.kind(), format!("tap device gone ({e})")))
}

/// [`Tap::event`] for a back-end that is one fd: hang-up or error is
/// [`TapError::Gone`], anything else [`TapEvent::Readable`].
///
/// # Errors
/// [`TapError::Gone`] on EPOLLHUP or EPOLLERR.
pub fn single_fd_event(events: u32) -> Result<TapEvent, TapError> {
    if events & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
        return Err(device_gone(&std::io::Error::other("hang-up")));
    }
    Ok(TapEvent::Readable)
}

/// The back-end of `--splice-only` (passt(1): "Do not create a tap device
/// in the namespace"): no device; nothing is ever read, and frames written
/// (none are expected: nothing is forwarded to a tap) are dropped and
/// counted. Its fd is an eventfd that is never signalled.
///
/// Syscalls: eventfd2.
#[derive(Debug)]
pub struct NoTap {
    fd: std::os::fd::OwnedFd,
}

impl NoTap {
    /// A new back-end without a device.
    ///
    /// # Errors
    /// The OS error of eventfd.
    pub fn new() -> std::io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscall.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fresh fd.
        Ok(NoTap { fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) } })
    }
}

impl Tap for NoTap {
    fn poll_fds(&self, out: &mut Vec<PollFd>) {
        use std::os::fd::AsRawFd;
        out.push(PollFd { fd: self.fd.as_raw_fd(), events: libc::EPOLLIN as u32, id: 0 });
    }

    fn event(&mut self, _id: u32, _events: u32) -> Result<TapEvent, TapError> {
        Ok(TapEvent::Nothing)
    }

    fn recv_batch(&mut self, rx: &mut RxBatch) -> Result<usize, TapError> {
        rx.frames.clear();
        Ok(0)
    }

    fn send_batch(&mut self, tx: &TxBatch) -> Result<TxResult, TapError> {
        Ok(TxResult { sent: 0, dropped: tx.frames().count() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_between_gathers_across_free_slots_and_refuses_out_of_range() {
        let mut b = TxBatch::new();
        b.slot(1).unwrap()[10..13].copy_from_slice(b"abc");
        assert!(b.copy_between(1, 10..13, 0, 100));
        assert_eq!(&b.slot(0).unwrap()[100..103], b"abc");
        assert!(!b.copy_between(BATCH, 0..1, 0, 0));
        assert!(!b.copy_between(1, 0..SLOT + 1, 0, 0));
        assert!(!b.copy_between(1, 0..10, 0, SLOT - 5));
        b.advance(BATCH - 1);
        assert!(!b.copy_between(1, 0..1, 0, 0), "slot 1 is past the last free one");
    }
}
