//! # Theory of operation
//!
//! The UNIX domain socket passt listens on for its hypervisor (passt(1),
//! `-s/--socket`): qemu's `-netdev stream` connects to it, and so does a
//! vhost-user front-end with `--vhost-user`.
//!
//! Without `--socket`, the paths /tmp/passt_1.socket to
//! /tmp/passt_64.socket are tried in order (passt(1)): a path is taken if
//! nothing answers a connect() there (no file, or a stale socket file left
//! by a process that is gone: ENOENT, ECONNREFUSED, or EACCES); a stale file
//! is unlinked first. With `--socket`, a path in use is an error, a stale
//! file is replaced.
//!
//! The listener is non-blocking and close-on-exec, with a backlog of one:
//! passt serves one guest at a time.
//!
//! Syscalls: socket, connect, unlink, bind, listen.

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Default socket paths: `/tmp/passt_N.socket` for N in 1..=[`PROBE_MAX`].
pub const PROBE_MAX: u32 = 64;

/// Why no socket could be made.
#[derive(Debug, thiserror::Error)]
pub enum UnixError {
    /// `--socket PATH` names a socket something is listening on.
    #[error("Socket path {0} already in use")]
    InUse(PathBuf),
    /// Every default path is taken.
    #[error("Failed to bind UNIX domain socket: /tmp/passt_1.socket to /tmp/passt_{PROBE_MAX}.socket are all in use")]
    AllInUse,
    /// bind() or listen() failed.
    #[error("Failed to bind UNIX domain socket {0}: {1}")]
    Bind(PathBuf, #[source] io::Error),
}

/// Whether something accepts connections at `path` (a live socket, or
/// anything connect() refuses for another reason than "nobody there").
fn in_use(path: &Path) -> bool {
    match UnixStream::connect(path) {
        Ok(_) => true,
        Err(e) => !matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ECONNREFUSED) | Some(libc::EACCES)),
    }
}

/// Bind and listen at `path`, replacing a stale socket file.
fn bind(path: &Path) -> io::Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)?;
    l.set_nonblocking(true)?;
    // std's backlog is 128; one guest at a time is enough.
    // SAFETY: listen() on a socket we own.
    if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&l), 1) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(l)
}

/// Listen at `path`, or at the first free default path. Returns the
/// listener (non-blocking, close-on-exec) and its path.
///
/// # Errors
/// [`UnixError::InUse`] when `path` is live, [`UnixError::AllInUse`] when
/// every default path is, [`UnixError::Bind`] with the OS error of bind()
/// or listen() (for a default path, only if nothing else could be bound).
pub fn listen(path: Option<&Path>) -> Result<(UnixListener, PathBuf), UnixError> {
    if let Some(p) = path {
        if in_use(p) {
            return Err(UnixError::InUse(p.to_path_buf()));
        }
        return bind(p).map(|l| (l, p.to_path_buf())).map_err(|e| UnixError::Bind(p.to_path_buf(), e));
    }
    let mut last = None;
    for i in 1..=PROBE_MAX {
        let p = PathBuf::from(format!("/tmp/passt_{i}.socket"));
        if in_use(&p) {
            continue;
        }
        match bind(&p) {
            Ok(l) => return Ok((l, p)),
            Err(e) => last = Some((p, e)),
        }
    }
    Err(match last {
        Some((p, e)) => UnixError::Bind(p, e),
        None => UnixError::AllInUse,
    })
}

/// The PID of the process at the other end of `fd` (SO_PEERCRED), for the
/// log; `None` if the kernel doesn't say.
pub fn peer_pid(fd: std::os::fd::RawFd) -> Option<i32> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for getsockopt's output.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, (&raw mut cred).cast(), &mut len) };
    (r == 0 && cred.pid > 0).then_some(cred.pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("passt-rs-unix-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&d);
        d
    }

    #[test]
    fn a_given_path_is_bound_and_a_stale_socket_file_replaced() {
        let p = tmp("stale");
        // A socket file nobody listens on any more.
        drop(UnixListener::bind(&p).unwrap());
        assert!(p.exists());
        let (l, got) = listen(Some(&p)).unwrap();
        assert_eq!(got, p);
        let c = UnixStream::connect(&p).unwrap();
        let (s, _) = loop {
            match l.accept() {
                Ok(x) => break x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(std::time::Duration::from_millis(5)),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(peer_pid(std::os::fd::AsRawFd::as_raw_fd(&s)), Some(std::process::id() as i32));
        drop(c);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_given_path_in_use_is_refused() {
        let p = tmp("busy");
        let (_l, _) = listen(Some(&p)).unwrap();
        match listen(Some(&p)) {
            Err(UnixError::InUse(q)) => assert_eq!(q, p),
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn an_unbindable_path_is_an_error() {
        let p = PathBuf::from("/nonexistent-dir-passt-rs/x.socket");
        assert!(matches!(listen(Some(&p)), Err(UnixError::Bind(..))));
    }
}
