//! # Theory of operation
//!
//! pasta's tap back-end: a /dev/net/tun file descriptor in IFF_TAP |
//! IFF_NO_PI mode, opened while the calling thread is in the target network
//! namespace, so that the interface appears there (tuntap(4), Linux
//! Documentation/networking/tuntap.rst). One read(2) returns one frame and
//! one write(2) sends one frame. The fd is non-blocking: a full transmit
//! queue in the namespace (EAGAIN) drops the frame, as a real link would.
//!
//! With `--threads N`, the device is made with IFF_MULTI_QUEUE and opened
//! N times at start-up: one queue fd per worker ([`crate::threads`]).
//!
//! Syscalls: openat, ioctl(TUNSETIFF), read, write, close.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{PollFd, RxBatch, Tap, TapError, TapEvent, TxBatch, TxResult, BATCH, MAX_FRAME};

/// A tap device.
#[derive(Debug)]
pub struct TunTap {
    fd: OwnedFd,
    name: String,
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// include/uapi/linux/if_tun.h.
const IFF_MULTI_QUEUE: libc::c_int = 0x0100;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl TunTap {
    /// Create (or attach to) tap interface `name` in the calling thread's
    /// network namespace. An empty name lets the kernel pick tapN.
    ///
    /// # Errors
    /// The OS error of open(/dev/net/tun) or TUNSETIFF; `InvalidInput` for a
    /// name of 16 bytes or more.
    pub fn open(name: &str) -> io::Result<Self> {
        Self::open_flags(name, false)
    }

    /// [`TunTap::open`] with IFF_MULTI_QUEUE if `multi_queue`: each call
    /// with the same name (and the flag) attaches one more queue of the
    /// same device (tuntap.rst, "Multiqueue tuntap interface").
    ///
    /// # Errors
    /// As [`TunTap::open`]; EINVAL when the device exists without (or with)
    /// the flag.
    pub fn open_flags(name: &str, multi_queue: bool) -> io::Result<Self> {
        if name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface name '{name}'")));
        }
        let path: &CStr = c"/dev/net/tun";
        // SAFETY: path is NUL-terminated; result checked.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh fd, owned from here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut req = IfReq { name: [0; libc::IFNAMSIZ], flags: (libc::IFF_TAP | libc::IFF_NO_PI | if multi_queue { IFF_MULTI_QUEUE } else { 0 }) as libc::c_short, _pad: [0; 22] };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: req is a valid struct ifreq layout for TUNSETIFF.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let len = req.name.iter().position(|&b| b == 0).unwrap_or(libc::IFNAMSIZ);
        let name = String::from_utf8_lossy(&req.name[..len]).into_owned();
        Ok(TunTap { fd, name })
    }

    /// The interface name the kernel gave us.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn classify(e: io::Error) -> TapError {
    match e.raw_os_error() {
        Some(libc::EBADFD) | Some(libc::ENXIO) | Some(libc::EBADF) | Some(libc::EIO) => super::device_gone(&e),
        _ => TapError::Io(e),
    }
}

impl Tap for TunTap {
    fn poll_fds(&self, out: &mut Vec<PollFd>) {
        out.push(PollFd { fd: self.fd.as_raw_fd(), events: libc::EPOLLIN as u32, id: 0 });
    }

    fn event(&mut self, _id: u32, events: u32) -> Result<TapEvent, TapError> {
        super::single_fd_event(events)
    }

    fn recv_batch(&mut self, rx: &mut RxBatch) -> Result<usize, TapError> {
        rx.frames.clear();
        let mut off = 0;
        while rx.frames.len() < BATCH && rx.buf.len() - off >= MAX_FRAME {
            let dst = &mut rx.buf[off..off + MAX_FRAME];
            // SAFETY: dst is valid for MAX_FRAME bytes.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), dst.as_mut_ptr().cast(), dst.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => break,
                    Some(libc::EINTR) => continue,
                    _ => return Err(classify(e)),
                }
            }
            if n == 0 {
                return Err(super::device_gone(&io::Error::from(io::ErrorKind::UnexpectedEof)));
            }
            let n = n as usize;
            rx.frames.push(off..off + n);
            off += n;
        }
        Ok(rx.frames.len())
    }

    fn send_batch(&mut self, tx: &TxBatch) -> Result<TxResult, TapError> {
        let mut r = TxResult::default();
        for f in tx.frames() {
            loop {
                // SAFETY: f is a valid slice.
                let n = unsafe { libc::write(self.fd.as_raw_fd(), f.as_ptr().cast(), f.len()) };
                if n >= 0 {
                    r.sent += 1;
                    break;
                }
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINVAL) | Some(libc::EMSGSIZE) => {
                        r.dropped += 1;
                        break;
                    }
                    _ => return Err(classify(e)),
                }
            }
        }
        Ok(r)
    }
}
