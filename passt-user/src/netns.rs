//! # Theory of operation
//!
//! pasta's data plane runs in the init (host) network namespace, but the
//! splice path and `-T`/`-U` need sockets in the target namespace: a
//! socket belongs to the network namespace of the thread that created it,
//! and keeps it for life, whatever thread uses it later.
//!
//! The main thread can't go there and back: once pasta made its own user
//! namespace, it has no CAP_SYS_ADMIN over the init network namespace any
//! more, so setns(2) back would fail. [`NsSwitch`] therefore keeps one
//! helper thread parked in the target namespace (setns(2) with
//! `CLONE_NEWNET` affects only the calling thread) and runs closures there
//! on request ([`NsSwitch::in_target`]), like upstream's `NS_CALL`. Threads
//! don't survive fork(2): after going to background, [`NsSwitch::restart`].
//!
//! The sandbox ([`crate::isolation`]) needs a single-threaded process to
//! detach namespaces: [`NsSwitch::stop`] ends the helper thread (or
//! [`NsSwitch::forget`] after fork(2)), and [`NsSwitch::restart`] starts a
//! new one, which, given a `harden` function, runs it right after its
//! setns(2): it drops its own capabilities, while the main thread drops
//! its own separately.
//!
//! Connections spliced into the namespace need a fresh socket each: a pool
//! of unbound TCP sockets ([`NsSwitch::tcp_socket`]) is refilled [`POOL`]
//! at a time, so that one round trip to the helper thread serves many
//! connections.
//!
//! Syscalls: setns (helper thread), socket, close.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;

use crate::sys;

/// Sockets created per request when the pool runs dry.
pub const POOL: usize = 32;

type Job = Box<dyn FnOnce() + Send>;

/// Runs work in the target network namespace; see the module
/// documentation.
#[derive(Debug)]
pub struct NsSwitch {
    /// Requests to the helper thread (it exits when this is dropped).
    jobs: mpsc::Sender<Job>,
    /// Unbound TCP sockets made in the target namespace: IPv4, IPv6.
    pool: [Vec<OwnedFd>; 2],
    /// The helper thread, to wait for in [`NsSwitch::stop`].
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Run by a new helper thread right after it joined the target namespace
/// ([`NsSwitch::restart`]); an error ends the thread.
pub type Harden = fn() -> io::Result<()>;

fn setns(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: plain syscall on a namespace fd; affects this thread only.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn gone() -> io::Error {
    io::Error::other("namespace helper thread gone")
}

/// A thread that joins `target`, runs `harden` if given, and runs the jobs
/// sent to it until the sender is dropped.
fn spawn(target: OwnedFd, harden: Option<Harden>) -> io::Result<(mpsc::Sender<Job>, std::thread::JoinHandle<()>)> {
    let (jobs, rx) = mpsc::channel::<Job>();
    let (ready_tx, ready_rx) = mpsc::sync_channel::<io::Result<()>>(1);
    let thread = std::thread::Builder::new().name("netns".into()).stack_size(256 << 10).spawn(move || {
        let r = setns(&target).and_then(|()| harden.map_or(Ok(()), |h| h()));
        let ok = r.is_ok();
        let _ = ready_tx.send(r);
        drop(target);
        if ok {
            while let Ok(job) = rx.recv() {
                job();
            }
        }
    })?;
    ready_rx.recv().map_err(|_| gone())??;
    Ok((jobs, thread))
}

impl NsSwitch {
    /// Start a helper thread in namespace `target` (an fd of
    /// /proc/PID/ns/net or of a bind mount of it).
    ///
    /// # Errors
    /// Thread creation, or setns(2) into `target`.
    pub fn new(target: OwnedFd) -> io::Result<Self> {
        let (jobs, thread) = spawn(target, None)?;
        Ok(NsSwitch { jobs, pool: [Vec::new(), Vec::new()], thread: Some(thread) })
    }

    /// Start a new helper thread in `target`, keeping the pooled sockets:
    /// after fork(2), which only the calling thread survives, or after
    /// [`NsSwitch::stop`]. `harden` runs on the new thread right after its
    /// setns(2).
    ///
    /// # Errors
    /// As [`NsSwitch::new`], or `harden`'s; the switch is unchanged then.
    pub fn restart(&mut self, target: OwnedFd, harden: Option<Harden>) -> io::Result<()> {
        let (jobs, thread) = spawn(target, harden)?;
        self.jobs = jobs;
        self.thread = Some(thread);
        Ok(())
    }

    /// End the helper thread and wait for it: calls into the namespace
    /// fail until [`NsSwitch::restart`].
    pub fn stop(&mut self) {
        self.jobs = mpsc::channel().0;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// After fork(2): the helper thread doesn't exist in this process;
    /// forget it without touching its handle (joining or detaching a
    /// thread of the parent would be undefined).
    pub fn forget(&mut self) {
        self.jobs = mpsc::channel().0;
        std::mem::forget(self.thread.take());
    }

    /// Run `f` on the helper thread, in the target namespace, and return
    /// its result.
    ///
    /// # Errors
    /// The helper thread is gone (it panicked, or this process forked).
    pub fn in_target<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())
    }

    /// An unbound, non-blocking, close-on-exec TCP socket of the target
    /// namespace, from the pool (refilled [`POOL`] at a time).
    ///
    /// # Errors
    /// socket(2) errors or [`NsSwitch::in_target`]'s when the pool is empty.
    pub fn tcp_socket(&mut self, v4: bool) -> io::Result<OwnedFd> {
        let i = usize::from(!v4);
        if let Some(s) = self.pool[i].pop() {
            return Ok(s);
        }
        let made = self.in_target(move || {
            let mut made = Vec::with_capacity(POOL);
            for _ in 0..POOL {
                match sys::socket(v4, libc::SOCK_STREAM, 0) {
                    Ok(s) => made.push(s),
                    Err(e) if made.is_empty() => return Err(e),
                    Err(_) => break,
                }
            }
            Ok(made)
        })??;
        self.pool[i] = made;
        self.pool[i].pop().ok_or_else(|| io::Error::from(io::ErrorKind::Other))
    }

    /// A non-blocking socket of `ty` (`SOCK_STREAM`, `SOCK_DGRAM`) in the
    /// target namespace, not pooled.
    ///
    /// # Errors
    /// socket(2) errors, or [`NsSwitch::in_target`]'s.
    pub fn socket(&self, v4: bool, ty: i32) -> io::Result<OwnedFd> {
        self.in_target(move || sys::socket(v4, ty, 0))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our own namespace as the "target": the switch must work and come
    /// back, and pooled sockets must be distinct and usable.
    #[test]
    fn switch_to_own_namespace_and_pool_sockets() {
        let me: OwnedFd = std::fs::File::open("/proc/thread-self/ns/net").unwrap().into();
        let mut ns = NsSwitch::new(me).unwrap();
        assert_eq!(ns.in_target(|| 7).unwrap(), 7);
        let a = ns.tcp_socket(true).unwrap();
        let b = ns.tcp_socket(true).unwrap();
        assert_ne!(a.as_raw_fd(), b.as_raw_fd());
        assert_eq!(ns.pool[0].len(), POOL - 2);
        let c = ns.tcp_socket(false).unwrap();
        assert!(sys::bind(c.as_raw_fd(), crate::flow::Inany::LOOPBACK6, 0).is_ok());
        let u = ns.socket(true, libc::SOCK_DGRAM).unwrap();
        assert!(sys::bind(u.as_raw_fd(), crate::flow::Inany::LOOPBACK4, 0).is_ok());
    }
}
