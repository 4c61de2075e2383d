//! # Theory of operation
//!
//! Signals are read from a signalfd in the epoll loop, never handled
//! asynchronously. SIGTERM, SIGHUP and SIGQUIT (and SIGINT, unless pasta
//! shares a terminal with the command it spawned) end the daemon cleanly
//! with status 0, after the counters are logged. SIGCHLD wakes the loop so
//! that pasta can reap the command it spawned and exit with its status.
//!
//! Syscalls: rt_sigprocmask, signalfd4, read.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Block the signals we handle and return a non-blocking signalfd for them.
/// With `interactive` (pasta spawned a command on our terminal), SIGINT,
/// SIGQUIT and SIGTSTP are ignored instead: they are for the command.
///
/// # Errors
/// The OS error of sigprocmask or signalfd.
pub fn setup(interactive: bool) -> std::io::Result<OwnedFd> {
    // SAFETY: sigset manipulation on a local set; syscalls checked.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGHUP, libc::SIGCHLD] {
            libc::sigaddset(&mut set, s);
        }
        if interactive {
            for s in [libc::SIGINT, libc::SIGQUIT, libc::SIGTSTP, libc::SIGTTOU, libc::SIGTTIN] {
                libc::signal(s, libc::SIG_IGN);
            }
        } else {
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGQUIT);
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Drain the signalfd. Returns `Some(0)` if a terminating signal arrived;
/// `None` otherwise (SIGCHLD: the caller checks its child).
pub fn read(fd: RawFd) -> Option<i32> {
    let mut quit = None;
    loop {
        // SAFETY: zeroed siginfo is valid; read size matches.
        let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let sz = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: si is writable for sz bytes.
        let n = unsafe { libc::read(fd, (&mut si as *mut libc::signalfd_siginfo).cast(), sz) };
        if n != sz as isize {
            return quit;
        }
        match si.ssi_signo as i32 {
            libc::SIGCHLD => {}
            s => {
                log::info!("received signal {s}, exiting");
                quit = Some(0);
            }
        }
    }
}

/// A non-blocking timerfd, not armed (see [`arm_once`]).
///
/// # Errors
/// The OS error of timerfd_create.
pub fn oneshot_timer() -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall, result checked.
    let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arm a timerfd to fire once, `after` from now (at least 1 ns).
pub fn arm_once(fd: RawFd, after: std::time::Duration) {
    let ns = after.as_nanos().max(1);
    let ts = libc::timespec { tv_sec: (ns / 1_000_000_000) as libc::time_t, tv_nsec: (ns % 1_000_000_000) as libc::c_long };
    let spec = libc::itimerspec { it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 }, it_value: ts };
    // SAFETY: spec is valid; an error leaves the timer as it was.
    unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) };
}

/// A periodic, non-blocking timerfd firing every `period_ms`.
///
/// # Errors
/// The OS error of timerfd_create or timerfd_settime.
pub fn periodic_timer(period_ms: u64) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscalls, results checked.
    unsafe {
        let fd = libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let ts = libc::timespec { tv_sec: (period_ms / 1000) as libc::time_t, tv_nsec: ((period_ms % 1000) * 1_000_000) as libc::c_long };
        let spec = libc::itimerspec { it_interval: ts, it_value: ts };
        if libc::timerfd_settime(std::os::fd::AsRawFd::as_raw_fd(&fd), 0, &spec, std::ptr::null_mut()) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    }
}
