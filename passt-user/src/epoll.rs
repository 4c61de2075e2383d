//! # Theory of operation
//!
//! One epoll instance drives everything. Each registration carries an
//! [`EpollRef`]: a typed 64-bit reference that says what the fd is and which
//! flow (or rule) it belongs to, so that dispatch is one exhaustive `match`
//! and never a lookup by fd.
//!
//! Bit layout of [`EpollRef`] (host order, it never leaves the process):
//! - bits 0..8: [`EpollType`]
//! - bits 8..32: the fd (24 bits is plenty: fds are capped far below 2^24)
//! - bits 32..64: a [`crate::flow::Sidx`] or another per-type value
//!
//! Syscalls: epoll_create1, epoll_ctl, epoll_wait.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// What kind of fd an epoll event is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EpollType {
    /// The tap device (or, later, the guest's socket).
    Tap = 1,
    /// A UDP socket of one flow; data is a flow side index.
    UdpFlow = 2,
    /// A ping socket of one flow; data is a flow side index.
    PingFlow = 3,
    /// The periodic timerfd.
    Timer = 4,
    /// The signalfd.
    Signal = 5,
    /// A TCP socket of one flow; data is a flow side index.
    TcpSock = 6,
    /// The one-shot millisecond timer for TCP window re-checks.
    FastTimer = 7,
    /// A listening socket of a forwarding rule; data from
    /// [`crate::listen::listen_ref`].
    Listen = 8,
    /// A socket of a spliced TCP flow; data is a flow side index.
    TcpSplice = 9,
    /// A socket of a spliced UDP flow; data is a flow side index.
    UdpSplice = 10,
    /// The eBPF programs' log source ([`crate::ebpf::Loaded::log_fd`]).
    Ebpf = 11,
    /// `--threads`: this worker's inbox eventfd ([`crate::threads`]).
    Handoff = 12,
}

impl EpollType {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Tap,
            2 => Self::UdpFlow,
            3 => Self::PingFlow,
            4 => Self::Timer,
            5 => Self::Signal,
            6 => Self::TcpSock,
            7 => Self::FastTimer,
            8 => Self::Listen,
            9 => Self::TcpSplice,
            10 => Self::UdpSplice,
            11 => Self::Ebpf,
            12 => Self::Handoff,
            _ => return None,
        })
    }
}

/// A typed epoll reference; see the module documentation for the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpollRef(u64);

impl EpollRef {
    /// Pack a type, fd (must be below 2^24) and 32-bit data word.
    pub fn new(kind: EpollType, fd: RawFd, data: u32) -> Self {
        debug_assert!((0..1 << 24).contains(&fd));
        EpollRef(kind as u64 | ((fd as u64 & 0xff_ffff) << 8) | (u64::from(data) << 32))
    }

    /// The type, or `None` for a value we never registered.
    pub fn kind(self) -> Option<EpollType> {
        EpollType::from_u8(self.0 as u8)
    }

    /// The fd this reference was registered with.
    pub fn fd(self) -> RawFd {
        ((self.0 >> 8) & 0xff_ffff) as RawFd
    }

    /// The 32-bit data word (flow side index for flow sockets).
    pub fn data(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// An epoll instance.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Maximum events handled per `epoll_wait`.
pub const EPOLL_EVENTS: usize = 64;

impl Epoll {
    /// Create an epoll instance (close-on-exec).
    ///
    /// # Errors
    /// The OS error of epoll_create1.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall, result checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        Ok(Epoll { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, r: EpollRef) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: r.0 };
        // SAFETY: ev lives across the call; fds are checked by the kernel.
        if unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Register `fd` for `events` (EPOLLIN etc.) with reference `r`.
    ///
    /// # Errors
    /// The OS error of epoll_ctl(EPOLL_CTL_ADD).
    pub fn add(&self, fd: RawFd, events: u32, r: EpollRef) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, r)
    }

    /// Change the events of a registered fd.
    ///
    /// # Errors
    /// The OS error of epoll_ctl(EPOLL_CTL_MOD).
    pub fn modify(&self, fd: RawFd, events: u32, r: EpollRef) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, r)
    }

    /// Remove `fd`; errors are ignored (the fd is about to be closed).
    pub fn del(&self, fd: RawFd) {
        // SAFETY: a null event is allowed for EPOLL_CTL_DEL since Linux 2.6.9.
        unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
    }

    /// Wait for events, at most `timeout_ms` (-1: forever). Returns how many
    /// entries of `events` were filled; EINTR gives 0.
    ///
    /// # Errors
    /// Any other OS error of epoll_wait.
    pub fn wait(&self, events: &mut [libc::epoll_event; EPOLL_EVENTS], timeout_ms: i32) -> io::Result<usize> {
        // SAFETY: the buffer holds EPOLL_EVENTS entries.
        let n = unsafe {
            libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), EPOLL_EVENTS as i32, timeout_ms)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(n as usize)
    }
}

/// The reference stored in an event returned by [`Epoll::wait`].
pub fn event_ref(ev: &libc::epoll_event) -> EpollRef {
    EpollRef(ev.u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoll_ref_round_trips_type_fd_and_data() {
        let r = EpollRef::new(EpollType::UdpFlow, 0x12_3456, 0xdead_beef);
        assert_eq!(r.kind(), Some(EpollType::UdpFlow));
        assert_eq!(r.fd(), 0x12_3456);
        assert_eq!(r.data(), 0xdead_beef);
    }

    #[test]
    fn unknown_type_byte_is_none() {
        assert_eq!(EpollRef(0).kind(), None);
        assert_eq!(EpollRef(0xff).kind(), None);
    }
}
