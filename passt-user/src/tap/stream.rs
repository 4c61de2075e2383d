//! # Theory of operation
//!
//! passt's `qemu` back-end: the guest's frames travel over a UNIX stream
//! socket, each one preceded by its length as a 32-bit big-endian integer
//! (QEMU's `-netdev stream` / `-net socket` framing; passt(1)
//! DESCRIPTION). The socket is one QEMU connected to our listener
//! ([`super::unix`]), or one inherited from the parent with `--fd`.
//!
//! Input: bytes are received into a buffer of our own; every complete
//! frame is copied out into the caller's [`RxBatch`], at most [`BATCH`] per
//! call, and a frame cut by the end of a read stays for the next one (a
//! frame is never split or lost). While complete frames wait in the buffer
//! an eventfd of ours stays readable, so the data plane comes back for them
//! even if the socket itself has nothing new. A length below 14 (no
//! Ethernet header) or above 65535 can't be resynchronised from: as
//! upstream, the connection is reset (counted in
//! [`StreamTap::bad_frames`]).
//!
//! Output: one sendmsg(2) per batch, two iovecs per frame (length, frame),
//! non-blocking. Frames the socket has no room for are dropped (counted),
//! as a full link would; a frame that went out in part is never cut: its
//! remainder is kept and written first, on EPOLLOUT, before any other
//! frame. Socket buffers are raised as upstream does so that drops stay
//! rare.
//!
//! One guest at a time: a second connection while one is served is
//! accepted and closed at once. When the guest leaves (EOF, hang-up, error
//! or a bad length) we listen again, or, with `--one-off` (implied by
//! `--fd`), the back-end is [`TapError::Gone`] and passt exits.
//!
//! Poll identifiers: 0 the listener, 1 the connection, 2 the eventfd.
//!
//! Syscalls: accept4, recvfrom, sendmsg, getsockopt, setsockopt, eventfd2,
//! read, write, close.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;

use super::{PollFd, RxBatch, Tap, TapError, TapEvent, TxBatch, TxResult, BATCH, MAX_FRAME};

/// Length prefix: 4 bytes, big-endian.
const PREFIX: usize = 4;
/// Shortest acceptable frame: an Ethernet header.
const MIN_FRAME: usize = 14;
/// Longest acceptable frame (upstream: `USHRT_MAX`).
const MAX_LEN: usize = 65535;
/// Input buffer: room for a good number of frames per recv.
const IBUF: usize = 1 << 20;

const ID_LISTEN: u32 = 0;
const ID_CONN: u32 = 1;
const ID_MORE: u32 = 2;

/// See the module documentation.
#[derive(Debug)]
pub struct StreamTap {
    listener: Option<UnixListener>,
    conn: Option<OwnedFd>,
    one_off: bool,
    gen: u64,
    /// Readable while complete frames wait in `ibuf`.
    more: OwnedFd,
    more_set: bool,
    ibuf: Vec<u8>,
    /// Unparsed input is `ibuf[start..end]`.
    start: usize,
    end: usize,
    /// Remainder of a frame sent in part: `pending[pending_off..]`.
    pending: Vec<u8>,
    pending_off: usize,
    bad_frames: u64,
}

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Large socket buffers, as upstream asks for (capped by the kernel's
/// rmem_max/wmem_max); failures only cost throughput.
fn raise_buffers(fd: RawFd) {
    let v: libc::c_int = libc::c_int::MAX / 2;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: v is a c_int as the option expects.
        unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&raw const v).cast(), std::mem::size_of_val(&v) as u32) };
    }
}

impl StreamTap {
    fn with(listener: Option<UnixListener>, conn: Option<OwnedFd>, one_off: bool) -> io::Result<Self> {
        Ok(StreamTap {
            listener,
            conn,
            one_off,
            gen: 0,
            more: eventfd()?,
            more_set: false,
            ibuf: vec![0; IBUF],
            start: 0,
            end: 0,
            pending: Vec::with_capacity(PREFIX + MAX_LEN),
            pending_off: 0,
            bad_frames: 0,
        })
    }

    /// Serve guests connecting to `listener` (bound, listening,
    /// non-blocking), one at a time; with `one_off`, only the first.
    ///
    /// # Errors
    /// The OS error of eventfd.
    pub fn new(listener: UnixListener, one_off: bool) -> io::Result<Self> {
        Self::with(Some(listener), None, one_off)
    }

    /// Serve the guest at the other end of `fd`, a connected stream socket
    /// (`--fd`): made non-blocking here; the back-end is gone when it
    /// closes.
    ///
    /// # Errors
    /// `InvalidInput` if `fd` is not a stream socket, or the OS error of
    /// fcntl or eventfd.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        let mut ty: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: ty and len are valid for the option's output.
        let r = unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TYPE, (&raw mut ty).cast(), &mut len) };
        if r < 0 || ty != libc::SOCK_STREAM {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "--fd is not a stream socket"));
        }
        // SAFETY: fcntl on an fd we own.
        let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        // SAFETY: as above.
        if fl < 0 || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        raise_buffers(fd.as_raw_fd());
        Self::with(None, Some(fd), true)
    }

    /// Frames refused for a length below 14 or above 65535 (each reset the
    /// connection).
    pub fn bad_frames(&self) -> u64 {
        self.bad_frames
    }

    /// Whether a guest is connected.
    pub fn connected(&self) -> bool {
        self.conn.is_some()
    }

    fn set_more(&mut self, on: bool) {
        if on == self.more_set {
            return;
        }
        let fd = self.more.as_raw_fd();
        if on {
            let one: u64 = 1;
            // SAFETY: 8 bytes from a u64.
            unsafe { libc::write(fd, (&raw const one).cast(), 8) };
        } else {
            let mut v: u64 = 0;
            // SAFETY: 8 bytes into a u64.
            unsafe { libc::read(fd, (&raw mut v).cast(), 8) };
        }
        self.more_set = on;
    }

    /// The guest left (or must be made to): close its socket and forget
    /// its state. `Gone` with one-off.
    fn reset(&mut self) -> Result<TapEvent, TapError> {
        self.conn = None;
        self.start = 0;
        self.end = 0;
        self.pending.clear();
        self.pending_off = 0;
        self.set_more(false);
        self.gen += 1;
        if self.one_off || self.listener.is_none() {
            return Err(TapError::Gone(io::Error::other("Client connection closed")));
        }
        log::info!("Client connection closed");
        Ok(TapEvent::Disconnected)
    }

    fn accept(&mut self) -> Result<TapEvent, TapError> {
        let Some(l) = &self.listener else { return Ok(TapEvent::Nothing) };
        let fd = l.as_raw_fd();
        // SAFETY: accept4 without peer address.
        let c = unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) };
        if c < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EAGAIN) {
                log::warn!("Error accepting tap client: {e}");
            }
            return Ok(TapEvent::Nothing);
        }
        // SAFETY: fresh fd.
        let c = unsafe { OwnedFd::from_raw_fd(c) };
        let pid = super::unix::peer_pid(c.as_raw_fd()).map_or_else(|| "unknown".into(), |p| p.to_string());
        if self.conn.is_some() {
            log::info!("discarding connection from PID {pid}");
            return Ok(TapEvent::Nothing);
        }
        log::info!("accepted connection from PID {pid}");
        raise_buffers(c.as_raw_fd());
        self.conn = Some(c);
        self.gen += 1;
        Ok(TapEvent::Connected)
    }

    /// Length of the frame starting at `ibuf[start]`: `Ok(None)` if its
    /// prefix isn't all there, `Err` for a length out of bounds.
    fn next_len(&self) -> Result<Option<usize>, ()> {
        let Some(p) = self.ibuf.get(self.start..self.start + PREFIX).filter(|_| self.end - self.start >= PREFIX) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
        if !(MIN_FRAME..=MAX_LEN).contains(&len) {
            return Err(());
        }
        Ok(Some(len))
    }

    /// Whether a complete frame waits at `ibuf[start..]` (a bad length
    /// counts: the next call reports it).
    fn frame_ready(&self) -> bool {
        match self.next_len() {
            Ok(Some(len)) => self.end - self.start >= PREFIX + len,
            Ok(None) => false,
            Err(()) => true,
        }
    }

    /// Write what is left of a frame sent in part. True when none is left.
    fn flush_pending(&mut self) -> Result<bool, io::Error> {
        let Some(c) = &self.conn else { return Ok(true) };
        while self.pending_off < self.pending.len() {
            let rest = &self.pending[self.pending_off..];
            // SAFETY: rest is a valid slice.
            let n = unsafe {
                libc::send(c.as_raw_fd(), rest.as_ptr().cast(), rest.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return Ok(false),
                    _ => return Err(e),
                }
            }
            self.pending_off += n as usize;
        }
        if !self.pending.is_empty() {
            self.pending.clear();
            self.pending_off = 0;
            self.gen += 1;
        }
        Ok(true)
    }
}

impl Tap for StreamTap {
    fn poll_fds(&self, out: &mut Vec<PollFd>) {
        if let Some(l) = &self.listener {
            out.push(PollFd { fd: l.as_raw_fd(), events: libc::EPOLLIN as u32, id: ID_LISTEN });
        }
        if let Some(c) = &self.conn {
            let mut ev = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
            if !self.pending.is_empty() {
                ev |= libc::EPOLLOUT as u32;
            }
            out.push(PollFd { fd: c.as_raw_fd(), events: ev, id: ID_CONN });
        }
        out.push(PollFd { fd: self.more.as_raw_fd(), events: libc::EPOLLIN as u32, id: ID_MORE });
    }

    fn poll_gen(&self) -> u64 {
        self.gen
    }

    fn event(&mut self, id: u32, events: u32) -> Result<TapEvent, TapError> {
        match id {
            ID_LISTEN => self.accept(),
            ID_CONN if self.conn.is_none() => Ok(TapEvent::Nothing),
            ID_CONN => {
                if events & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                    return self.reset();
                }
                if events & libc::EPOLLOUT as u32 != 0 {
                    match self.flush_pending() {
                        Ok(_) => {}
                        Err(e) => {
                            log::debug!("tap: write error: {e}");
                            return self.reset();
                        }
                    }
                }
                Ok(if events & libc::EPOLLIN as u32 != 0 { TapEvent::Readable } else { TapEvent::Nothing })
            }
            ID_MORE if self.conn.is_some() => Ok(TapEvent::Readable),
            _ => Ok(TapEvent::Nothing),
        }
    }

    fn recv_batch(&mut self, rx: &mut RxBatch) -> Result<usize, TapError> {
        rx.frames.clear();
        let mut off = 0;
        let mut drained = false;
        while self.conn.is_some() && rx.frames.len() < BATCH && rx.buf.len() - off >= MAX_FRAME {
            match self.next_len() {
                Err(()) => {
                    self.bad_frames += 1;
                    log::error!("Bad frame size from guest, resetting connection");
                    self.reset()?;
                    break;
                }
                Ok(Some(len)) if self.end - self.start >= PREFIX + len => {
                    let from = self.start + PREFIX;
                    rx.buf[off..off + len].copy_from_slice(&self.ibuf[from..from + len]);
                    rx.frames.push(off..off + len);
                    off += len;
                    self.start = from + len;
                    continue;
                }
                Ok(_) if drained => break,
                Ok(_) => {}
            }
            // No complete frame left: keep the partial one and read more.
            if self.start > 0 {
                self.ibuf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let Some(c) = &self.conn else { break };
            let room = &mut self.ibuf[self.end..];
            // SAFETY: room is valid for room.len() bytes.
            let n = unsafe { libc::recv(c.as_raw_fd(), room.as_mut_ptr().cast(), room.len(), libc::MSG_DONTWAIT) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => drained = true,
                    _ => {
                        log::error!("Receive error on guest connection, reset: {e}");
                        self.reset()?;
                        break;
                    }
                }
            } else if n == 0 {
                self.reset()?;
                break;
            } else {
                self.end += n as usize;
                // Whatever the socket had fits: no need to ask again.
                drained = (n as usize) < room.len();
            }
        }
        let more = self.conn.is_some() && self.frame_ready();
        self.set_more(more);
        Ok(rx.frames.len())
    }

    fn send_batch(&mut self, tx: &TxBatch) -> Result<TxResult, TapError> {
        let total = tx.len();
        let mut r = TxResult::default();
        if self.conn.is_none() {
            r.dropped = total;
            return Ok(r);
        }
        match self.flush_pending() {
            Ok(true) => {}
            Ok(false) => {
                r.dropped = total;
                return Ok(r);
            }
            Err(e) => {
                log::debug!("tap: write error: {e}");
                self.reset()?;
                r.dropped = total;
                return Ok(r);
            }
        }
        let mut lens = [[0u8; PREFIX]; BATCH];
        let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; 2 * BATCH];
        let mut n = 0;
        for (i, f) in tx.frames().enumerate().take(BATCH) {
            lens[i] = (f.len() as u32).to_be_bytes();
            n = i + 1;
        }
        for (i, f) in tx.frames().enumerate().take(n) {
            iov[2 * i] = libc::iovec { iov_base: lens[i].as_mut_ptr().cast(), iov_len: PREFIX };
            iov[2 * i + 1] = libc::iovec { iov_base: f.as_ptr() as *mut libc::c_void, iov_len: f.len() };
        }
        let Some(c) = &self.conn else { return Ok(r) };
        // SAFETY: an all-zero msghdr is valid.
        let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
        mh.msg_iov = iov.as_mut_ptr();
        mh.msg_iovlen = 2 * n;
        let sent = loop {
            // SAFETY: mh points at valid iovecs, read-only use by the kernel.
            let s = unsafe { libc::sendmsg(c.as_raw_fd(), &mh, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
            if s >= 0 {
                break s as usize;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) => break 0,
                _ => {
                    log::debug!("tap: write error: {e}");
                    self.reset()?;
                    r.dropped = total;
                    return Ok(r);
                }
            }
        };
        // Whole frames sent, then the one cut short (if any).
        let mut left = sent;
        for (i, f) in tx.frames().enumerate().take(n) {
            let whole = PREFIX + f.len();
            if left >= whole {
                left -= whole;
                r.sent += 1;
                continue;
            }
            if left > 0 {
                self.pending.clear();
                self.pending.extend_from_slice(&lens[i]);
                self.pending.extend_from_slice(f);
                self.pending_off = left;
                self.gen += 1;
                r.sent += 1;
                left = 0;
                continue;
            }
            r.dropped += 1;
        }
        r.dropped += total - n;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    fn frame(len: usize, fill: u8) -> Vec<u8> {
        let mut f = vec![fill; len];
        f[12] = 0x08;
        f[13] = 0x00;
        f
    }

    fn wire(f: &[u8]) -> Vec<u8> {
        let mut v = (f.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(f);
        v
    }

    fn pair() -> (StreamTap, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (StreamTap::from_fd(OwnedFd::from(a)).unwrap(), b)
    }

    fn frames(rx: &RxBatch) -> Vec<Vec<u8>> {
        rx.frames.iter().map(|r| rx.buf[r.clone()].to_vec()).collect()
    }

    fn more_readable(t: &StreamTap) -> bool {
        let mut p = libc::pollfd { fd: t.more.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 0) };
        p.revents & libc::POLLIN != 0
    }

    #[test]
    fn coalesced_frames_come_out_whole_and_in_order() {
        let (mut t, mut g) = pair();
        let (a, b, c) = (frame(60, 1), frame(1514, 2), frame(65535, 3));
        let mut bytes = wire(&a);
        bytes.extend(wire(&b));
        bytes.extend(wire(&c));
        g.write_all(&bytes).unwrap();
        let mut rx = RxBatch::new();
        assert_eq!(t.recv_batch(&mut rx).unwrap(), 3);
        assert_eq!(frames(&rx), vec![a, b, c]);
        assert_eq!(t.recv_batch(&mut rx).unwrap(), 0);
    }

    #[test]
    fn a_frame_split_across_reads_is_kept_until_complete() {
        let (mut t, mut g) = pair();
        let f = frame(3000, 7);
        let w = wire(&f);
        let mut rx = RxBatch::new();
        // Cut inside the length prefix, then inside the frame.
        for cut in [&w[..2], &w[2..1000], &w[1000..]] {
            assert_eq!(t.recv_batch(&mut rx).unwrap(), 0);
            g.write_all(cut).unwrap();
        }
        assert_eq!(t.recv_batch(&mut rx).unwrap(), 1);
        assert_eq!(frames(&rx), vec![f]);
    }

    #[test]
    fn more_than_a_batch_waits_and_the_eventfd_says_so() {
        let (mut t, mut g) = pair();
        let mut bytes = Vec::new();
        for i in 0..(BATCH + 5) {
            bytes.extend(wire(&frame(100, i as u8)));
        }
        g.write_all(&bytes).unwrap();
        let mut rx = RxBatch::new();
        assert_eq!(t.recv_batch(&mut rx).unwrap(), BATCH);
        assert!(more_readable(&t));
        assert_eq!(t.event(ID_MORE, libc::EPOLLIN as u32).unwrap(), TapEvent::Readable);
        assert_eq!(t.recv_batch(&mut rx).unwrap(), 5);
        assert_eq!(frames(&rx)[4][0], (BATCH + 4) as u8);
        assert!(!more_readable(&t));
    }

    #[test]
    fn zero_and_oversized_lengths_reset_the_connection_counted() {
        for bad in [0u32, 13, 65536, u32::MAX] {
            let (a, mut g) = UnixStream::pair().unwrap();
            let l = UnixListener::bind(std::env::temp_dir().join(format!("passt-rs-st-{}-{bad}", std::process::id())));
            let l = l.unwrap();
            let mut t = StreamTap::with(Some(l), Some(OwnedFd::from(a)), false).unwrap();
            let good = frame(60, 9);
            let mut bytes = wire(&good);
            bytes.extend(bad.to_be_bytes());
            bytes.extend([0u8; 64]);
            g.write_all(&bytes).unwrap();
            let mut rx = RxBatch::new();
            // The good frame before the bad length still comes out.
            assert_eq!(t.recv_batch(&mut rx).unwrap(), 1, "length {bad}");
            assert_eq!(t.bad_frames(), 1);
            assert!(!t.connected());
            // The guest sees the connection closed.
            let mut buf = [0u8; 8];
            assert_eq!(g.read(&mut buf).unwrap(), 0);
            let _ = std::fs::remove_file(std::env::temp_dir().join(format!("passt-rs-st-{}-{bad}", std::process::id())));
        }
    }

    #[test]
    fn a_bad_length_with_one_off_is_gone() {
        let (mut t, mut g) = pair();
        g.write_all(&0u32.to_be_bytes()).unwrap();
        let mut rx = RxBatch::new();
        assert!(matches!(t.recv_batch(&mut rx), Err(TapError::Gone(_))));
    }

    #[test]
    fn frames_to_the_guest_are_length_prefixed() {
        let (mut t, mut g) = pair();
        let mut tx = TxBatch::new();
        let fs = [frame(42, 1), frame(1514, 2)];
        for f in &fs {
            let s = tx.slot(0).unwrap();
            s[..f.len()].copy_from_slice(f);
            tx.commit(0..f.len());
        }
        let r = t.send_batch(&tx).unwrap();
        assert_eq!((r.sent, r.dropped), (2, 0));
        let mut want = wire(&fs[0]);
        want.extend(wire(&fs[1]));
        let mut got = vec![0u8; want.len()];
        g.read_exact(&mut got).unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn a_frame_sent_in_part_is_completed_before_anything_else() {
        let (mut t, mut g) = pair();
        // Small buffers so that the socket fills quickly.
        let small: libc::c_int = 4096;
        for fd in [t.conn.as_ref().unwrap().as_raw_fd(), g.as_raw_fd()] {
            for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
                // SAFETY: a c_int option.
                unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&raw const small).cast(), 4) };
            }
        }
        let mut sent_frames = Vec::new();
        let mut dropped = 0;
        let mut k = 0u8;
        // Fill the socket until frames are dropped, then drain the guest
        // side and check the stream: whole frames only, in order.
        for _ in 0..50 {
            let mut tx = TxBatch::new();
            let mut batch = Vec::new();
            for _ in 0..4 {
                let f = frame(3000, k);
                k = k.wrapping_add(1);
                let s = tx.slot(0).unwrap();
                s[..f.len()].copy_from_slice(&f);
                tx.commit(0..f.len());
                batch.push(f);
            }
            let r = t.send_batch(&tx).unwrap();
            sent_frames.extend(batch.into_iter().take(r.sent));
            dropped += r.dropped;
            if dropped > 8 {
                break;
            }
        }
        assert!(dropped > 0, "the small socket never filled");
        assert!(!t.pending.is_empty() || t.pending_off == 0);
        // Drain on the guest side while completing the pending frame.
        g.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        for _ in 0..1000 {
            let mut buf = [0u8; 65536];
            match g.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if t.pending.is_empty() {
                        break;
                    }
                    t.event(ID_CONN, libc::EPOLLOUT as u32).unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
        let mut want = Vec::new();
        for f in &sent_frames {
            want.extend(wire(f));
        }
        assert_eq!(got.len(), want.len());
        assert!(got == want, "stream differs from the frames reported sent");
    }

    #[test]
    fn a_second_client_is_turned_away_and_a_new_one_served_after_the_first_leaves() {
        let path = std::env::temp_dir().join(format!("passt-rs-st-{}-two", std::process::id()));
        let (l, _) = super::super::unix::listen(Some(&path)).unwrap();
        let mut t = StreamTap::new(l, false).unwrap();
        let g1 = UnixStream::connect(&path).unwrap();
        assert_eq!(t.event(ID_LISTEN, libc::EPOLLIN as u32).unwrap(), TapEvent::Connected);
        let mut g2 = UnixStream::connect(&path).unwrap();
        assert_eq!(t.event(ID_LISTEN, libc::EPOLLIN as u32).unwrap(), TapEvent::Nothing);
        let mut buf = [0u8; 4];
        assert_eq!(g2.read(&mut buf).unwrap(), 0, "second client closed");
        drop(g1);
        let mut rx = RxBatch::new();
        assert_eq!(t.recv_batch(&mut rx).unwrap(), 0);
        assert!(!t.connected());
        let mut g3 = UnixStream::connect(&path).unwrap();
        assert_eq!(t.event(ID_LISTEN, libc::EPOLLIN as u32).unwrap(), TapEvent::Connected);
        let f = frame(80, 5);
        g3.write_all(&wire(&f)).unwrap();
        assert_eq!(t.recv_batch(&mut rx).unwrap(), 1);
        assert_eq!(frames(&rx), vec![f]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn without_a_guest_frames_are_dropped() {
        let path = std::env::temp_dir().join(format!("passt-rs-st-{}-none", std::process::id()));
        let (l, _) = super::super::unix::listen(Some(&path)).unwrap();
        let mut t = StreamTap::new(l, false).unwrap();
        let mut tx = TxBatch::new();
        tx.slot(0).unwrap()[..60].fill(1);
        tx.commit(0..60);
        assert_eq!(t.send_batch(&tx).unwrap(), TxResult { sent: 0, dropped: 1 });
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn from_fd_refuses_a_datagram_socket() {
        let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        assert!(StreamTap::from_fd(OwnedFd::from(a)).is_err());
    }
}
