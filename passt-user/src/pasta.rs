//! # Theory of operation
//!
//! pasta's three forms (passt(1), SYNOPSIS and DESCRIPTION):
//!
//! - **spawn** (`pasta [COMMAND [ARG]...]`): we move into a new user
//!   namespace of our own (mapping our UID and GID to root), then fork the
//!   command, which unshares network, UTS, IPC and mount namespaces and
//!   waits on a pipe until the network is ready; then it execs COMMAND (or
//!   `$SHELL` as a login shell). We stay in the foreground and exit with
//!   its status (128 + signal if it was killed).
//! - **PID** (`pasta PID`): join the user namespace of PID (unless
//!   `--netns-only`, or `--userns PATH`) and use its network namespace.
//! - **netns** (`pasta --netns PATH|NAME`): use that network namespace
//!   (a bare NAME is /run/netns/NAME); the user namespace only with
//!   `--userns`.
//!
//! Our own sockets stay in the namespace we started in: only a short-lived
//! thread enters the target network namespace (setns(2) affects just the
//! calling thread) to create the tap device and a netlink socket there;
//! both keep working from the main thread afterwards.
//!
//! Exit on namespace gone: the spawned command exiting; the PID exiting;
//! the netns path removed or replaced; unless `--no-netns-quit` (which does
//! not apply to the spawn form: there pasta always follows its command).
//!
//! Syscalls (start-up only): unshare, setns, fork, execvp, pipe2, waitpid,
//! kill, openat, fstat, stat, write.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::conf::{Conf, NetConf, PastaTarget};
use crate::daemon::Watch;
use crate::netlink::Netlink;
use crate::tap::tun::TunTap;

/// What went wrong while setting up namespaces.
#[derive(Debug, thiserror::Error)]
pub enum PastaError {
    /// A system call failed; `what` says which step.
    #[error("{what}: {source}")]
    Sys {
        /// The step that failed.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Netlink configuration in the namespace failed.
    #[error("{what}: {source}")]
    Netlink {
        /// The step that failed.
        what: String,
        /// The netlink error.
        #[source]
        source: crate::netlink::NetlinkError,
    },
}

fn sys(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PastaError {
    let what = what.into();
    move |source| PastaError::Sys { what, source }
}

fn nl_err(what: impl Into<String>) -> impl FnOnce(crate::netlink::NetlinkError) -> PastaError {
    let what = what.into();
    move |source| PastaError::Netlink { what, source }
}

fn last_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// The target namespace, once joined or created.
pub struct Ns {
    /// An fd of the target network namespace.
    pub netns: OwnedFd,
    /// How to tell that it went away.
    pub watch: NsWatch,
    /// Spawn form: the write end of the pipe that releases the command.
    go: Option<File>,
}

/// How pasta notices that its namespace is gone; see the module docs.
pub enum NsWatch {
    /// The spawned command's PID: exit with its status when it ends.
    Child(libc::pid_t),
    /// `pasta PID`: exit when PID is gone.
    Pid(libc::pid_t),
    /// `--netns PATH`: exit when PATH no longer refers to (dev, ino). The
    /// fd is PATH's directory (O_PATH, opened at start-up: the sandbox has
    /// no filesystem), the string PATH's last component.
    Path(PathBuf, OwnedFd, CString, u64, u64),
    /// `--no-netns-quit`.
    Never,
}

/// fstatat(2) of `name` in directory `dir` (following symlinks, as
/// `std::fs::metadata`), `None` if it fails.
fn stat_at(dir: &OwnedFd, name: &CString) -> Option<libc::stat> {
    // SAFETY: zeroed plain struct, filled by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, NUL-terminated name, our struct.
    (unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, 0) } == 0).then_some(st)
}

/// The directory of `path` (O_PATH) and its last component, for
/// [`NsWatch::Path`].
fn watch_dir(path: &Path) -> Result<(OwnedFd, CString), PastaError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.as_bytes()).unwrap_or(b".");
    let name = CString::new(name).map_err(|e| sys("netns path")(std::io::Error::other(e)))?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)
        .map_err(sys(format!("open {}", dir.display())))?;
    Ok((OwnedFd::from(f), name))
}

impl Watch for NsWatch {
    fn check(&mut self) -> Option<i32> {
        match self {
            NsWatch::Child(pid) => {
                let mut st = 0;
                // SAFETY: plain syscall on our own child.
                let r = unsafe { libc::waitpid(*pid, &mut st, libc::WNOHANG) };
                if r == *pid {
                    if libc::WIFEXITED(st) {
                        return Some(libc::WEXITSTATUS(st));
                    }
                    if libc::WIFSIGNALED(st) {
                        return Some(128 + libc::WTERMSIG(st));
                    }
                }
                // Reap anything else (grand-children re-parented to us).
                // SAFETY: as above.
                while unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) } > 0 {}
                None
            }
            NsWatch::Pid(pid) => {
                // SAFETY: signal 0 only checks existence.
                let gone = unsafe { libc::kill(*pid, 0) } < 0 && last_err().raw_os_error() == Some(libc::ESRCH);
                if gone {
                    log::info!("namespace process {pid} gone, exiting");
                    return Some(0);
                }
                None
            }
            NsWatch::Path(p, dir, name, dev, ino) => match stat_at(dir, name) {
                Some(m) if m.st_dev == *dev && m.st_ino == *ino => None,
                _ => {
                    log::info!("namespace {} gone, exiting", p.display());
                    Some(0)
                }
            },
            NsWatch::Never => None,
        }
    }
}

fn open_ro(p: &Path) -> Result<OwnedFd, PastaError> {
    File::open(p).map(OwnedFd::from).map_err(sys(format!("can't open {}", p.display())))
}

fn write_file(p: &str, s: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new().write(true).open(p)?.write_all(s.as_bytes())
}

/// Join the user namespace at `path` unless we are already in it.
/// Must run while the process is single-threaded.
fn join_userns(path: &Path) -> Result<(), PastaError> {
    let fd = open_ro(path)?;
    let target = File::from(fd.try_clone().map_err(sys("dup"))?).metadata().map_err(sys("fstat userns"))?;
    let ours = std::fs::metadata("/proc/self/ns/user").map_err(sys("stat /proc/self/ns/user"))?;
    if target.ino() == ours.ino() && target.dev() == ours.dev() {
        return Ok(());
    }
    // SAFETY: plain syscall.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWUSER) } < 0 {
        return Err(sys(format!("can't join user namespace {}", path.display()))(last_err()));
    }
    Ok(())
}

/// Create or join the target namespaces as `conf` says. Runs before any
/// thread exists.
///
/// # Errors
/// Any failing step, described.
pub fn enter(conf: &Conf) -> Result<Ns, PastaError> {
    match &conf.target {
        PastaTarget::Spawn { argv } => spawn(argv),
        PastaTarget::Pid(pid) => {
            let pid = *pid as libc::pid_t;
            if !conf.netns_only {
                let u = conf.userns.clone().unwrap_or_else(|| PathBuf::from(format!("/proc/{pid}/ns/user")));
                join_userns(&u)?;
            }
            let netns = open_ro(Path::new(&format!("/proc/{pid}/ns/net")))?;
            let watch = if conf.no_netns_quit { NsWatch::Never } else { NsWatch::Pid(pid) };
            Ok(Ns { netns, watch, go: None })
        }
        PastaTarget::NetNs(path) => {
            if let Some(u) = &conf.userns {
                join_userns(u)?;
            }
            let netns = open_ro(path)?;
            let m = File::from(netns.try_clone().map_err(sys("dup"))?).metadata().map_err(sys("fstat netns"))?;
            let watch = if conf.no_netns_quit {
                NsWatch::Never
            } else {
                let (dir, name) = watch_dir(path)?;
                NsWatch::Path(path.clone(), dir, name, m.dev(), m.ino())
            };
            Ok(Ns { netns, watch, go: None })
        }
    }
}

fn pipe() -> Result<(File, File), PastaError> {
    let mut fds = [0; 2];
    // SAFETY: fds is writable for two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(sys("pipe")(last_err()));
    }
    // SAFETY: fresh fds, owned from here.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

fn spawn(argv: &[OsString]) -> Result<Ns, PastaError> {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // SAFETY: plain syscall, single-threaded here.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } < 0 {
        return Err(sys("can't create user namespace")(last_err()));
    }
    if write_file("/proc/self/uid_map", &format!("0 {uid} 1"))
        .and_then(|()| write_file("/proc/self/setgroups", "deny"))
        .and_then(|()| write_file("/proc/self/gid_map", &format!("0 {gid} 1")))
        .is_err()
    {
        log::warn!("Couldn't configure user mappings");
    }

    // Build everything the child needs before fork(): it must not allocate.
    let shell;
    let (exe, args): (CString, Vec<CString>) = if argv.is_empty() {
        shell = std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into());
        let exe = CString::new(shell.as_bytes()).map_err(|_| sys("bad $SHELL")(std::io::ErrorKind::InvalidInput.into()))?;
        let mut arg0 = b"-".to_vec();
        arg0.extend_from_slice(shell.as_bytes());
        let arg0 = CString::new(arg0).map_err(|_| sys("bad $SHELL")(std::io::ErrorKind::InvalidInput.into()))?;
        (exe, vec![arg0])
    } else {
        let v: Result<Vec<CString>, _> = argv.iter().map(|a| CString::new(a.as_bytes())).collect();
        let v = v.map_err(|_| sys("bad command")(std::io::ErrorKind::InvalidInput.into()))?;
        (v[0].clone(), v)
    };
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());

    let (mut ready_r, ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    // SAFETY: single-threaded; the child only makes async-signal-safe calls.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(sys("fork")(last_err()));
    }
    if pid == 0 {
        // Child.
        // SAFETY: raw syscalls only, then exec or _exit.
        unsafe {
            // The parent's ends: with our copy of go_w open, a parent that
            // fails before releasing us would leave us waiting forever.
            libc::close(go_w.as_raw_fd());
            libc::close(ready_r.as_raw_fd());
            let flags = libc::CLONE_NEWNET | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWNS;
            let ok: u8 = if libc::unshare(flags) == 0 { 1 } else { 0 };
            libc::write(ready_w.as_raw_fd(), (&ok as *const u8).cast(), 1);
            if ok == 0 {
                libc::_exit(1);
            }
            let mut b = 0u8;
            if libc::read(go_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1) != 1 {
                libc::_exit(1);
            }
            libc::execvp(exe.as_ptr(), ptrs.as_ptr());
            let msg = b"pasta: failed to start command or shell\n";
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(127);
        }
    }
    drop(ready_w);
    drop(go_r);
    let mut b = [0u8; 1];
    if ready_r.read(&mut b).ok() != Some(1) || b[0] != 1 {
        return Err(sys("command namespace setup failed")(std::io::ErrorKind::Other.into()));
    }
    let netns = open_ro(Path::new(&format!("/proc/{pid}/ns/net")))?;
    Ok(Ns { netns, watch: NsWatch::Child(pid), go: Some(go_w) })
}

impl Ns {
    /// Spawn form: let the command run (the network is ready).
    pub fn release(&mut self) {
        if let Some(mut go) = self.go.take() {
            let _ = go.write_all(&[1]);
        }
    }

    /// Run `f` in a thread that joined the target network namespace.
    ///
    /// # Errors
    /// setns failing, or the thread panicking.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, PastaError> {
        let fd = self.netns.as_fd();
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: plain syscall, affects this thread only.
                if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                    return Err(sys("can't join network namespace")(last_err()));
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| Err(sys("namespace thread")(std::io::ErrorKind::Other.into())))
        })
    }
}

/// The tap, its netlink socket and what we learnt about it.
pub struct NsTap {
    /// The tap device.
    pub tap: TunTap,
    /// `--threads N`: the device's other N - 1 queues (worker 1 onwards).
    pub queues: Vec<TunTap>,
    /// Interface index in the namespace.
    pub ifindex: u32,
    /// The interface's MAC (the guest's MAC as far as we are concerned).
    pub mac: [u8; 6],
}

/// `--splice-only`: no tap device, only bring lo up in the namespace
/// (passt(1), "pasta and loopback interface").
///
/// # Errors
/// Netlink errors, described.
pub fn setup_lo(ns: &Ns) -> Result<(), PastaError> {
    let mut nl = ns.run_in(Netlink::open)?.map_err(nl_err("netlink socket in namespace"))?;
    let lo = nl.link_index("lo").map_err(nl_err("lo"))?.unwrap_or(1);
    nl.link_set_up(lo).map_err(nl_err("can't bring up loopback interface in namespace"))
}

/// Create tap `ifname` in the namespace, bring lo up, set the MAC if asked,
/// and with `--config-net` set MTU, addresses and routes (passt(1),
/// --config-net, --ns-mac-addr, "pasta and loopback interface").
///
/// # Errors
/// Any failing step, described.
pub fn setup_tap(ns: &Ns, conf: &Conf, net: &NetConf, ifname: &str) -> Result<NsTap, PastaError> {
    // --threads N: a multi-queue device and its other N - 1 queues, one
    // per worker, all opened here, before the sandbox.
    let (n, mq) = (conf.threads.max(1), conf.threads > 1);
    let (tap, queues, nl) = ns.run_in(|| {
        let offload = std::env::var_os(crate::tap::tun::NO_OFFLOAD_ENV).is_none();
        let tap = TunTap::open_opts(ifname, offload, mq);
        let queues = match &tap {
            Ok(t) => (1..n)
                .map(|_| t.open_queue())
                .collect::<std::io::Result<Vec<_>>>(),
            Err(_) => Ok(Vec::new()),
        };
        (tap, queues, Netlink::open())
    })?;
    let tap = tap.map_err(sys(format!("can't create tap device {ifname}")))?;
    let queues = queues.map_err(sys(format!(
        "can't open another queue of tap device {}",
        tap.name()
    )))?;
    let mut nl = nl.map_err(nl_err("netlink socket in namespace"))?;
    let lo = nl.link_index("lo").map_err(nl_err("lo"))?.unwrap_or(1);
    nl.link_set_up(lo).map_err(nl_err("can't bring up loopback interface in namespace"))?;
    let ifindex = nl
        .link_index(tap.name())
        .map_err(nl_err("tap index"))?
        .ok_or_else(|| sys("tap device vanished")(std::io::ErrorKind::NotFound.into()))?;
    if let Some(mac) = conf.ns_mac {
        nl.link_set_mac(ifindex, mac).map_err(nl_err("can't set MAC address in namespace"))?;
    }
    let mac = nl.link_get_mac(ifindex).map_err(nl_err("can't read tap MAC address"))?;
    if conf.config_net {
        if net.mtu != 0 {
            nl.link_set_mtu(ifindex, u32::from(net.mtu)).map_err(nl_err("can't set MTU"))?;
        }
        if let Some(ip4) = &net.ip4 {
            for &(a, p) in &ip4.copy_addrs {
                nl.addr_add4(ifindex, a, p).map_err(nl_err(format!("can't set address {a}/{p}")))?;
            }
        }
        if let Some(ip6) = &net.ip6 {
            for &(a, p) in &ip6.copy_addrs {
                nl.addr_add6(ifindex, a, p).map_err(nl_err(format!("can't set address {a}/{p}")))?;
            }
        }
        nl.link_set_up(ifindex).map_err(nl_err("can't bring up tap interface"))?;
        if let Some(ip4) = &net.ip4 {
            for r in routes_ordered(&ip4.copy_routes) {
                nl.route_add4(ifindex, r).map_err(nl_err(format!("can't set route {r:?}")))?;
            }
        }
        if let Some(ip6) = &net.ip6 {
            for r in routes_ordered(&ip6.copy_routes) {
                nl.route_add6(ifindex, r).map_err(nl_err(format!("can't set route {r:?}")))?;
            }
        }
    }
    Ok(NsTap {
        tap,
        queues,
        ifindex,
        mac,
    })
}

/// On-link routes first, so that gateways are reachable when routes via
/// them are added.
fn routes_ordered<A>(r: &[crate::host::Route<A>]) -> impl Iterator<Item = &crate::host::Route<A>> {
    r.iter().filter(|r| r.gw.is_none()).chain(r.iter().filter(|r| r.gw.is_some()))
}

/// Write `pid` to the `--pid` file.
///
/// # Errors
/// The error of creating or writing the file.
pub fn write_pid_file(path: &Path, pid: u32) -> std::io::Result<()> {
    std::fs::write(path, format!("{pid}\n"))
}

/// Go to the background: fork; the parent writes the child's PID to
/// `pid_file` and exits 0 (so a caller waiting for it knows we are
/// ready); the child starts a new session with standard streams on
/// /dev/null.
///
/// # Errors
/// fork or setsid failing (in the parent: nothing was written).
pub fn daemonize(pid_file: Option<&Path>) -> std::io::Result<()> {
    // SAFETY: single-threaded here (the namespace thread was joined).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(last_err());
    }
    if pid > 0 {
        let st = match pid_file {
            Some(p) => match write_pid_file(p, pid as u32) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("Failed to write PID file {}: {e}", p.display());
                    // SAFETY: the child must not outlive a failed start.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                    1
                }
            },
            None => 0,
        };
        // SAFETY: leave without running destructors twice across fork.
        unsafe { libc::_exit(st) };
    }
    // SAFETY: plain syscalls in the child.
    unsafe {
        if libc::setsid() < 0 {
            return Err(last_err());
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
            if null > 2 {
                libc::close(null);
            }
        }
    }
    Ok(())
}
