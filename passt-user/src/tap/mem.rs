//! # Theory of operation
//!
//! An in-memory tap back-end for tests and fuzzing: frames to read are
//! queued by the test, frames written are kept (up to a bound) for the
//! test to inspect. Its fd is an eventfd that is never signalled, so it can
//! sit in an epoll set like any other back-end.
//!
//! Syscalls: eventfd2.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{PollFd, RxBatch, Tap, TapError, TapEvent, TxBatch, TxResult, BATCH};

/// Frames kept at most; older ones are dropped first.
const KEEP: usize = 1024;

/// See the module documentation.
#[derive(Debug)]
pub struct MemTap {
    fd: OwnedFd,
    /// Frames the next `recv_batch` returns.
    pub to_read: VecDeque<Vec<u8>>,
    /// Frames written by the data plane, oldest first.
    pub written: VecDeque<Vec<u8>>,
}

impl MemTap {
    /// A new, empty tap.
    ///
    /// # Errors
    /// The OS error of eventfd.
    pub fn new() -> std::io::Result<Self> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fresh fd.
        Ok(MemTap { fd: unsafe { OwnedFd::from_raw_fd(fd) }, to_read: VecDeque::new(), written: VecDeque::new() })
    }
}

impl Tap for MemTap {
    fn poll_fds(&self, out: &mut Vec<PollFd>) {
        out.push(PollFd { fd: self.fd.as_raw_fd(), events: libc::EPOLLIN as u32, id: 0 });
    }

    fn event(&mut self, _id: u32, _events: u32) -> Result<TapEvent, TapError> {
        Ok(TapEvent::Readable)
    }

    fn recv_batch(&mut self, rx: &mut RxBatch) -> Result<usize, TapError> {
        rx.frames.clear();
        let mut off = 0;
        while rx.frames.len() < BATCH {
            let Some(f) = self.to_read.front() else { break };
            if rx.buf.len() - off < f.len() {
                break;
            }
            let f = self.to_read.pop_front().unwrap_or_default();
            rx.buf[off..off + f.len()].copy_from_slice(&f);
            rx.frames.push(off..off + f.len());
            off += f.len();
        }
        Ok(rx.frames.len())
    }

    fn send_batch(&mut self, tx: &TxBatch) -> Result<TxResult, TapError> {
        let mut r = TxResult::default();
        for f in tx.frames() {
            if self.written.len() >= KEEP {
                self.written.pop_front();
            }
            self.written.push_back(f.to_vec());
            r.sent += 1;
        }
        Ok(r)
    }
}
