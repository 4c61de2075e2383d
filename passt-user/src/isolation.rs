//! # Theory of operation
//!
//! The sandbox, as upstream's isolation.c promises it (passt(1), "Security
//! and Privileges"): once start-up is done, the process has no
//! capabilities, its own mount (plus IPC and UTS) namespace whose root is
//! an empty, read-only tmpfs, passt its own user namespace, no_new_privs,
//! Landlock forbidding every filesystem access (where the kernel has it)
//! and a seccomp allow-list of the syscalls the data plane makes.
//!
//! Steps, in order ([`crate::entry`] calls them):
//!
//! 1. [`close_inherited_fds`], right after the command line is parsed:
//!    every fd above 2 except `--fd` is closed (close_range(2)).
//! 2. [`run_as`], right before step 3 (the files are still there):
//!    `--runas` (resolved by [`parse_runas`] when the command line is
//!    parsed), or `nobody` when running as root of the init user namespace
//!    ([`is_init_userns`]: root of a user namespace, as Podman runs pasta,
//!    or as pasta makes itself in its spawn form, keeps its identity), like
//!    upstream's conf_ugid(). Upstream decides at start-up and changes
//!    before creating pasta's user namespace; we decide late so that
//!    root can load eBPF programs first.
//! 3. [`detach`], after everything that opens files, sockets or talks
//!    netlink (listeners, eBPF, PID file, daemonizing), while the process
//!    has one thread only (unshare(2) with CLONE_NEWNS or CLONE_NEWUSER
//!    refuses multithreaded callers): change UID and GID, passt creates its
//!    own user namespace (pasta stays in the one owning its target network
//!    namespace, as upstream's isolate_user() does, so that its helper
//!    thread can still join that namespace), then new mount, IPC and UTS
//!    (and PID, as upstream) namespaces, a read-only tmpfs with no room
//!    (`nr_inodes=2,nr_blocks=0`) on /tmp, pivot_root(2) into it, the old
//!    root detached.
//! 4. pasta only: its namespace helper thread ([`crate::netns::NsSwitch`])
//!    is started again now, joins the target namespace (setns(2) needs
//!    CAP_SYS_ADMIN, which the thread still has), then runs
//!    [`harden_thread`] on itself.
//! 5. [`harden_thread`] on the main thread: capabilities are per thread,
//!    and so are no_new_privs and Landlock domains: bounding set, ambient,
//!    inheritable, permitted and effective sets emptied, no_new_privs,
//!    not dumpable, Landlock. One exception, as upstream: when pasta
//!    forwards UDP from namespace ports below 1024 (`-U 53`), its main
//!    thread keeps CAP_NET_BIND_SERVICE (permitted and effective only),
//!    because the per-client reply sockets are bound to that port at run
//!    time ([`CAP_NET_BIND_SERVICE`]).
//! 6. [`apply_seccomp`]: the filter of [`seccomp_filter`] for the mode is
//!    installed on every thread at once (SECCOMP_FILTER_FLAG_TSYNC).
//!
//! Unlike upstream, which keeps CAP_SYS_ADMIN in pasta to setns(2) on each
//! call into the namespace, our helper thread stays parked in the target
//! namespace, so no thread keeps any capability.
//!
//! UID and GID change at step 3, after the listeners and files exist
//! (upstream changes them before binding): files created at start-up
//! (socket, PID file, capture) belong to the user that started us.
//!
//! A syscall outside the allow-list raises SIGSYS (SECCOMP_RET_TRAP): the
//! handler writes `seccomp: forbidden syscall N` to stderr and to the log
//! file, and the process exits with status 159 (128 + SIGSYS). We prefer
//! this to SECCOMP_RET_KILL_PROCESS (upstream's choice, silent) because a
//! missing entry shows up as one readable line instead of a process that
//! vanished; the handler itself only uses write(2) and exit_group(2), and
//! rt_sigaction(2) is not allowed, so it can't be replaced afterwards.
//!
//! Failures follow upstream: a namespace, mount or capability step failing
//! is fatal ("Failed to sandbox process, exiting"); Landlock missing in the
//! kernel is logged at debug level (upstream doesn't use it at all).
//!
//! Syscalls (start-up only): close_range, setgroups, setgid, setuid,
//! prctl, capget, capset, unshare, mount, chdir, pivot_root, umount2,
//! landlock_create_ruleset, landlock_restrict_self, seccomp, rt_sigaction,
//! open (log file, [`sigsys_log`]). At run time: none of its own (the SIGSYS handler:
//! write, exit_group).

use std::ffi::CString;
use std::io;
use std::os::fd::{IntoRawFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use seccompiler::{BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule};

/// Why the sandbox couldn't be set up; `Display` names the step.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// A syscall of the named step failed.
    #[error("{what}: {source}")]
    Sys {
        /// The step, e.g. "Failed to pivot_root() into empty tmpfs".
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// More than one thread at [`detach`].
    #[error("can't detach namespaces: {0} threads running")]
    Threads(usize),
    /// The seccomp filter couldn't be built or installed.
    #[error("seccomp: {0}")]
    Seccomp(String),
}

fn sys(what: &'static str) -> impl FnOnce(io::Error) -> IsolationError {
    move |source| IsolationError::Sys { what, source }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Close every fd above 2 except `keep` (`--fd`), as upstream's
/// isolate_fds() does: nothing the parent leaked stays open.
///
/// # Errors
/// close_range(2) failing for another reason than missing kernel support
/// (then a warning is logged and nothing is closed).
pub fn close_inherited_fds(keep: Option<RawFd>) -> io::Result<()> {
    let keep = keep.filter(|&k| k > 2).map(|k| k as libc::c_uint);
    let ranges: &[(libc::c_uint, libc::c_uint)] = match keep {
        Some(k) if k > 3 => &[(3, k - 1), (k + 1, libc::c_uint::MAX)],
        Some(k) => &[(k + 1, libc::c_uint::MAX)],
        None => &[(3, libc::c_uint::MAX)],
    };
    for &(lo, hi) in ranges {
        // SAFETY: closes fds nothing in this process uses yet (called
        // before anything is opened).
        if let Err(e) = cvt(unsafe { libc::close_range(lo, hi, libc::CLOSE_RANGE_UNSHARE as libc::c_int) }) {
            if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EINVAL)) {
                log::warn!("Can't use close_range() to ensure no files leaked by parent");
                return Ok(());
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Where [`parse_runas`] looks names up.
pub trait UserDb {
    /// UID and primary GID of login `name`.
    fn user(&self, name: &str) -> Option<(u32, u32)>;
    /// GID of group `name`.
    fn group(&self, name: &str) -> Option<u32>;
}

/// The system's user and group databases (getpwnam(3), getgrnam(3)).
pub struct SystemDb;

impl UserDb for SystemDb {
    fn user(&self, name: &str) -> Option<(u32, u32)> {
        let u = nix::unistd::User::from_name(name).ok()??;
        Some((u.uid.as_raw(), u.gid.as_raw()))
    }

    fn group(&self, name: &str) -> Option<u32> {
        Some(nix::unistd::Group::from_name(name).ok()??.gid.as_raw())
    }
}

/// Why `--runas` was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RunasError {
    /// An empty user or group part.
    #[error("empty user or group")]
    Empty,
    /// A login that doesn't exist, or whose UID is 0 (upstream refuses
    /// those too).
    #[error("no such user")]
    NoUser,
    /// A group that doesn't exist.
    #[error("no such group")]
    NoGroup,
}

/// A numeric ID as strtol(3) with base 0 reads it (decimal, `0x` hex,
/// leading `0` octal), or `None` if it's not all digits.
fn number(s: &str) -> Option<u32> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

/// Parse `--runas UID|UID:GID|LOGIN|LOGIN:GROUP` (passt(1)) into (UID,
/// GID): a UID alone also gives the GID (same number), a login gives its
/// primary group, a group after `:` overrides either.
///
/// # Errors
/// [`RunasError`]: an empty part, an unknown login or group, or a login
/// whose UID is 0 (as upstream's conf_runas()).
pub fn parse_runas(s: &str, db: &dyn UserDb) -> Result<(u32, u32), RunasError> {
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    if u.is_empty() || g.is_some_and(str::is_empty) {
        return Err(RunasError::Empty);
    }
    let (uid, gid) = match number(u) {
        Some(n) => (n, n),
        None => db.user(u).filter(|&(uid, _)| uid != 0).ok_or(RunasError::NoUser)?,
    };
    let gid = match g {
        None => gid,
        Some(g) => match number(g) {
            Some(n) => n,
            None => db.group(g).ok_or(RunasError::NoGroup)?,
        },
    };
    Ok((uid, gid))
}

/// Whether `uid_map` (the text of /proc/self/uid_map) is the init user
/// namespace's identity map `0 0 4294967295`, as upstream's ns_is_init().
pub fn is_init_userns(uid_map: &str) -> bool {
    let mut lines = uid_map.lines().filter(|l| !l.trim().is_empty());
    let first: Vec<&str> = lines.next().map(|l| l.split_whitespace().collect()).unwrap_or_default();
    lines.next().is_none() && first == ["0", "0", "4294967295"]
}

/// The (UID, GID) to change to at [`detach`], or `None` to stay: `runas`
/// if given; else, for root (`euid` 0) of the init user namespace
/// (`init_ns`), `nobody` as `db` has it (65534 if it doesn't), logging
/// upstream's "Started as root, will change to nobody.".
pub fn run_as(runas: Option<(u32, u32)>, euid: u32, init_ns: bool, db: &dyn UserDb) -> Option<(u32, u32)> {
    if runas.is_some() {
        return runas;
    }
    if euid != 0 || !init_ns {
        return None;
    }
    log::warn!("Started as root, will change to nobody.");
    Some(db.user("nobody").unwrap_or((65534, 65534)))
}

/// What [`detach`] does.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Change to this (UID, GID) first ([`run_as`]).
    pub ids: Option<(u32, u32)>,
    /// Create a new user namespace (passt; not pasta, whose helper thread
    /// must keep the rights to join the target network namespace).
    pub new_userns: bool,
    /// Also a new PID namespace (upstream: passt, and pasta in the
    /// background; not for us in pasta: once a process unshared a PID
    /// namespace, clone(2) refuses CLONE_THREAD, and pasta's helper thread
    /// starts after [`detach`]).
    pub new_pid: bool,
}

/// Linux capability sets as capget(2)/capset(2) take them (version 3: two
/// 32-bit words per set).
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

const CAP_V3: u32 = 0x2008_0522;

fn capget() -> io::Result<[CapData; 2]> {
    let mut hdr = CapHeader { version: CAP_V3, pid: 0 };
    let mut d = [CapData::default(); 2];
    // SAFETY: header and two data structs as the v3 ABI wants.
    cvt(unsafe { libc::syscall(libc::SYS_capget, &mut hdr, d.as_mut_ptr()) } as libc::c_int)?;
    Ok(d)
}

fn capset(d: &[CapData; 2]) -> io::Result<()> {
    let mut hdr = CapHeader { version: CAP_V3, pid: 0 };
    // SAFETY: as in capget; this thread only.
    cvt(unsafe { libc::syscall(libc::SYS_capset, &mut hdr, d.as_ptr()) } as libc::c_int)?;
    Ok(())
}

/// Number of threads of this process (entries of /proc/self/task).
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

/// Step 3 of the module documentation: identity, namespaces, empty root.
///
/// # Errors
/// More than one thread, or a failing step ([`IsolationError::Sys`] names
/// it, with upstream's wording).
pub fn detach(plan: &Plan) -> Result<(), IsolationError> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    // A thread just joined (pasta's namespace helper) may still be listed
    // for a moment: its tid is cleared, and join() returns, before the
    // kernel reaps it. Wait for it, boundedly (at most 200 ms).
    let mut n = threads();
    for _ in 0..200 {
        if n == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        n = threads();
    }
    if n != 1 {
        return Err(IsolationError::Threads(n));
    }
    if let Some((uid, gid)) = plan.ids {
        if !plan.new_userns {
            // Keep the permitted set across setuid(2): pasta's helper
            // thread still has to join the target namespace.
            // SAFETY: plain prctl.
            cvt(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) }).map_err(sys("Can't keep capabilities"))?;
        }
        // SAFETY: empty list; EPERM without CAP_SETGID is fine (upstream).
        if unsafe { libc::setgroups(0, std::ptr::null()) } < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
            return Err(sys("Can't drop supplementary groups")(io::Error::last_os_error()));
        }
        // SAFETY: plain syscalls.
        cvt(unsafe { libc::setgid(gid) }).map_err(sys("Can't set GID"))?;
        // SAFETY: as above.
        cvt(unsafe { libc::setuid(uid) }).map_err(sys("Can't set UID"))?;
        if !plan.new_userns {
            let mut d = capget().map_err(sys("Couldn't get current capabilities"))?;
            for w in &mut d {
                w.effective = w.permitted;
            }
            capset(&d).map_err(sys("Couldn't restore capabilities"))?;
        }
        log::debug!("Changed to UID {uid}, GID {gid}");
    }
    if plan.new_userns {
        // SAFETY: single-threaded (checked above).
        cvt(unsafe { libc::unshare(libc::CLONE_NEWUSER) }).map_err(sys("Couldn't create user namespace"))?;
    }
    let mut flags = libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if plan.new_pid {
        flags |= libc::CLONE_NEWPID;
    }
    // SAFETY: single-threaded.
    cvt(unsafe { libc::unshare(flags) }).map_err(sys("Failed to detach isolating namespaces"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_UNBINDABLE | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| sys("Failed to remount /")(e.into()))?;
    mount(
        Some(""),
        "/tmp",
        Some("tmpfs"),
        MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_RDONLY,
        Some("nr_inodes=2,nr_blocks=0"),
    )
    .map_err(|e| sys("Failed to mount empty tmpfs for sandboxing")(e.into()))?;
    std::env::set_current_dir("/tmp").map_err(sys("Failed to change directory into empty tmpfs"))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| sys("Failed to pivot_root() into empty tmpfs")(e.into()))?;
    umount2(".", MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW)
        .map_err(|e| sys("Failed to unmount original root filesystem")(e.into()))?;
    Ok(())
}

/// CAP_NET_BIND_SERVICE (capability(7) number 10) as a [`harden_thread`]
/// `keep` bit: what pasta's main thread keeps (as upstream's pasta does)
/// when UDP is forwarded from namespace ports below 1024, whose per-client
/// reply sockets are bound to the forwarded port at run time.
pub const CAP_NET_BIND_SERVICE: u64 = 1 << 10;

/// How far [`harden_thread`] got with what needs kernel support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardened {
    /// The bounding set could be emptied (needs CAP_SETPCAP).
    pub bounding: bool,
    /// Landlock fully enforced (false: partially, or not in this kernel).
    pub landlock: bool,
}

/// Steps 4 and 5 of the module documentation, for the calling thread
/// only: empty every capability set (bounding, ambient, inheritable,
/// permitted, effective) except the bits of `keep` in the permitted and
/// effective sets (bit N = capability N; see [`CAP_NET_BIND_SERVICE`]), set
/// no_new_privs and not dumpable, and restrict filesystem access to nothing
/// with Landlock (best effort).
///
/// # Errors
/// capset(2) or prctl(PR_SET_NO_NEW_PRIVS) failing; Landlock only when the
/// kernel has it and refuses the ruleset.
pub fn harden_thread(keep: u64) -> io::Result<Hardened> {
    let mut bounding = true;
    for cap in 0..64 {
        // SAFETY: plain prctl; EINVAL for numbers that are no capability,
        // EPERM without CAP_SETPCAP (upstream carries on too).
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
            bounding = false;
        }
    }
    // SAFETY: plain prctl; EINVAL on kernels without ambient capabilities.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    let mut d = if keep == 0 { [CapData::default(); 2] } else { capget()? };
    for (i, w) in d.iter_mut().enumerate() {
        let mask = (keep >> (32 * i)) as u32;
        w.effective &= mask;
        w.permitted &= mask;
        w.inheritable = 0;
    }
    capset(&d)?;
    // SAFETY: plain prctls.
    cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let landlock = landlock_nothing()?;
    Ok(Hardened { bounding, landlock })
}

/// A Landlock domain handling every filesystem access right this library
/// knows, with no rule: no path can be opened, created, executed or
/// changed. Returns whether it's fully enforced.
fn landlock_nothing() -> io::Result<bool> {
    use landlock::{Access, AccessFs, Ruleset, RulesetAttr, RulesetStatus, ABI};
    let r = Ruleset::default()
        .handle_access(AccessFs::from_all(ABI::V6))
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self());
    match r {
        Ok(s) => Ok(s.ruleset == RulesetStatus::FullyEnforced),
        Err(e) => Err(io::Error::other(format!("Landlock: {e}"))),
    }
}

/// Which allow-list [`seccomp_filter`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// passt on a UNIX stream socket (or `--fd`).
    Passt,
    /// passt with `--vhost-user`.
    VhostUser,
    /// pasta.
    Pasta,
}

/// Syscalls every mode makes after start-up: the event loop, sockets
/// (created, connected, bound, read and written), timers, and what Rust's
/// standard library and glibc call underneath (memory, futexes, clocks,
/// signals, thread exit).
const COMMON: &[libc::c_long] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    // Log rotation in place (crate::log): copy-down or collapse, then cut.
    libc::SYS_pwrite64,
    libc::SYS_fallocate,
    libc::SYS_ftruncate,
    libc::SYS_lseek,
    libc::SYS_close,
    libc::SYS_fcntl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_timerfd_settime,
    libc::SYS_timerfd_gettime,
    libc::SYS_bind,
    libc::SYS_connect,
    libc::SYS_listen,
    libc::SYS_accept4,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    libc::SYS_shutdown,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_sendmmsg,
    libc::SYS_recvmmsg,
    libc::SYS_futex,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_getrandom,
    libc::SYS_sched_yield,
    libc::SYS_gettid,
    // The ping_group_range warning names our group (crate::icmp).
    libc::SYS_getgid,
    libc::SYS_getpid,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_restart_syscall,
];

/// pasta: splice(2) through pipes, the spawned command reaped (wait4) or
/// watched (kill with signal 0), `--netns PATH` watched by fstatat(2) on
/// a directory fd opened at start-up.
const PASTA: &[libc::c_long] = &[
    libc::SYS_splice,
    libc::SYS_pipe2,
    libc::SYS_wait4,
    libc::SYS_kill,
    libc::SYS_newfstatat,
    libc::SYS_statx,
];

/// vhost-user: guest memory mapped from the fds of SET_MEM_TABLE (mmap is
/// in [`COMMON`]), its size looked up, eventfds for kicks and calls.
const VHOST_USER: &[libc::c_long] = &[libc::SYS_fstat, libc::SYS_newfstatat, libc::SYS_statx, libc::SYS_eventfd2, libc::SYS_ppoll];

/// `--threads N` above 1: the workers are created after the sandbox (so
/// they inherit the filter, no capabilities, no_new_privs and Landlock):
/// glibc's pthread_create (clone3, clone as its fallback; the stack's
/// guard page is mprotect(PROT_NONE), allowed below), and in each new
/// thread set_robust_list and rseq; sched_getaffinity (glibc sizing the
/// new thread's CPU set) ([`crate::threads`]).
const THREADS: &[libc::c_long] = &[
    libc::SYS_clone3,
    libc::SYS_clone,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_getaffinity,
];

/// `--ebpf`: map lookups and updates on maps loaded at start-up.
const EBPF: &[libc::c_long] = &[libc::SYS_bpf];

/// The seccomp allow-list of `profile` (plus bpf(2) with `ebpf`), with
/// argument checks where cheap: socket(2) only for AF_INET, AF_INET6 (and
/// AF_UNIX for passt's re-listen), ioctl(2) only FIONREAD (SIOCINQ),
/// TIOCOUTQ (SIOCOUTQ) and FIONBIO (std's `set_nonblocking`),
/// mprotect(2) only without PROT_EXEC (glibc's per-thread heaps).
/// Anything else traps (see the module documentation).
///
/// # Errors
/// seccompiler refusing the rules (unknown architecture).
pub fn seccomp_filter(profile: Profile, ebpf: bool) -> Result<BpfProgram, IsolationError> {
    seccomp_filter_threads(profile, ebpf, false)
}

/// [`seccomp_filter`], plus the syscalls of thread creation with
/// `threads` (pasta's `--threads` above 1).
///
/// # Errors
/// As [`seccomp_filter`].
pub fn seccomp_filter_threads(
    profile: Profile,
    ebpf: bool,
    threads: bool,
) -> Result<BpfProgram, IsolationError> {
    let err = |e: &dyn std::fmt::Display| IsolationError::Seccomp(e.to_string());
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> = std::collections::BTreeMap::new();
    let extra: &[libc::c_long] = match profile {
        Profile::Passt => &[],
        Profile::VhostUser => VHOST_USER,
        Profile::Pasta => PASTA,
    };
    let bpf: &[libc::c_long] = if ebpf { EBPF } else { &[] };
    let thr: &[libc::c_long] = if threads { THREADS } else { &[] };
    for &nr in COMMON.iter().chain(extra).chain(bpf).chain(thr) {
        rules.insert(nr, Vec::new());
    }
    let eq = |arg: u8, v: u64| SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, v).map_err(|e| err(&e));
    let mut families = vec![libc::AF_INET, libc::AF_INET6];
    if profile != Profile::Pasta {
        families.push(libc::AF_UNIX);
    }
    let mut socket = Vec::new();
    for f in families {
        socket.push(SeccompRule::new(vec![eq(0, f as u64)?]).map_err(|e| err(&e))?);
    }
    rules.insert(libc::SYS_socket, socket);
    let mut ioctl = Vec::new();
    for req in [libc::FIONREAD, libc::TIOCOUTQ, libc::FIONBIO] {
        ioctl.push(SeccompRule::new(vec![eq(1, req)?]).map_err(|e| err(&e))?);
    }
    rules.insert(libc::SYS_ioctl, ioctl);
    // glibc's malloc grows the heaps of threads other than the main one
    // (pasta's namespace helper) with mprotect(2): allowed, never to make
    // memory executable.
    let no_exec = SeccompCondition::new(2, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64), 0).map_err(|e| err(&e))?;
    rules.insert(libc::SYS_mprotect, vec![SeccompRule::new(vec![no_exec]).map_err(|e| err(&e))?]);
    let arch = std::env::consts::ARCH.try_into().map_err(|e| err(&e))?;
    let filter = SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, arch).map_err(|e| err(&e))?;
    filter.try_into().map_err(|e: seccompiler::BackendError| err(&e))
}

/// fd the SIGSYS handler also writes to (the log file), -1 for none.
static SIGSYS_LOG_FD: AtomicI32 = AtomicI32::new(-1);

/// Exit status after a forbidden syscall: 128 + SIGSYS, as a shell shows
/// a process killed by it.
pub const SIGSYS_EXIT: i32 = 128 + libc::SIGSYS;

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // siginfo_t for SIGSYS: si_signo, si_errno, si_code (3 ints, padded to
    // 16 bytes), then _sigsys: void *call_addr, int syscall, unsigned arch.
    // SAFETY: the kernel hands a valid siginfo_t; we read within its 128
    // bytes.
    let (code, nr) = unsafe { ((*info).si_code, *((info as *const u8).add(16 + std::mem::size_of::<usize>()) as *const i32)) };
    let mut buf = [0u8; 64];
    let mut n = 0;
    let mut put = |b: &[u8]| {
        for &c in b {
            if n < buf.len() {
                buf[n] = c;
                n += 1;
            }
        }
    };
    put(if code == 1 { b"seccomp: forbidden syscall " } else { b"SIGSYS, syscall " });
    let mut digits = [0u8; 12];
    let mut d = digits.len();
    let mut v = i64::from(nr).unsigned_abs();
    loop {
        d -= 1;
        digits[d] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    put(&digits[d..]);
    put(b"\n");
    // SAFETY: async-signal-safe calls on a stack buffer.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), n);
        let fd = SIGSYS_LOG_FD.load(Ordering::Relaxed);
        if fd >= 0 {
            libc::write(fd, buf.as_ptr().cast(), n);
        }
        libc::syscall(libc::SYS_exit_group, SIGSYS_EXIT);
    }
}

/// Open `log_file` (append mode) as the SIGSYS handler's second
/// destination: before [`detach`], while the path still exists. Best
/// effort: without it the handler writes to stderr only.
pub fn sigsys_log(log_file: Option<&Path>) {
    if let Some(p) = log_file {
        if let Ok(f) = std::fs::OpenOptions::new().append(true).open(p) {
            SIGSYS_LOG_FD.store(f.into_raw_fd(), Ordering::Relaxed);
        }
    }
}

/// Install the SIGSYS handler (see [`sigsys_log`]), then `prog` on every
/// thread (TSYNC). Sets no_new_privs for all threads, as seccomp(2)
/// requires.
///
/// # Errors
/// sigaction(2) or seccomp(2) failing, or a thread refusing the filter.
pub fn apply_seccomp(prog: &BpfProgram) -> Result<(), IsolationError> {
    // SAFETY: a zeroed sigaction with our handler; the handler only makes
    // async-signal-safe calls.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigsys as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) < 0 {
            return Err(sys("Couldn't install SIGSYS handler")(io::Error::last_os_error()));
        }
    }
    seccompiler::apply_filter_all_threads(prog).map_err(|e| IsolationError::Seccomp(e.to_string()))
}

/// The whole sequence for a process whose other threads (if any) are
/// already hardened: [`harden_thread`] here (keeping `keep`), then the
/// filter of `profile` on every thread. Logs what Landlock and the
/// bounding set gave.
///
/// # Errors
/// As [`harden_thread`] and [`apply_seccomp`].
pub fn lock_down(profile: Profile, ebpf: bool, keep: u64) -> Result<(), IsolationError> {
    lock_down_threads(profile, ebpf, keep, false)
}

/// [`lock_down`] with the syscalls of thread creation allowed if
/// `threads` ([`seccomp_filter_threads`]).
///
/// # Errors
/// As [`lock_down`].
pub fn lock_down_threads(
    profile: Profile,
    ebpf: bool,
    keep: u64,
    threads: bool,
) -> Result<(), IsolationError> {
    let prog = seccomp_filter_threads(profile, ebpf, threads)?;
    let h = harden_thread(keep).map_err(sys("Couldn't drop capabilities"))?;
    if !h.bounding {
        log::warn!("Couldn't empty the capability bounding set (no CAP_SETPCAP)");
    }
    if !h.landlock {
        log::debug!("Landlock not fully enforced by this kernel");
    }
    apply_seccomp(&prog)
}

/// Debug builds only: `PASST_RS_FORBIDDEN_SYSCALL=main|netns` makes the
/// sandboxed process call execve(2) (refused by seccomp) on the main thread
/// or on pasta's namespace helper thread, for tests/cases/30-sandbox.sh.
/// Read at start-up.
#[cfg(debug_assertions)]
pub fn forbidden_syscall_trigger() -> Option<String> {
    std::env::var("PASST_RS_FORBIDDEN_SYSCALL").ok()
}

/// Release builds: never.
#[cfg(not(debug_assertions))]
pub fn forbidden_syscall_trigger() -> Option<String> {
    None
}

/// Call execve(2) on a path that doesn't exist: a sandboxed process dies
/// of it ([`SIGSYS_EXIT`]); returns the error otherwise.
pub fn forbidden_syscall() -> io::Error {
    let path = CString::new("/nonexistent").unwrap_or_default();
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    // SAFETY: valid NUL-terminated path and argument arrays.
    unsafe { libc::syscall(libc::SYS_execve, path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A user database with `alice` (1000:1000), `rooty` (UID 0),
    /// `nobody` and group `staff` (50).
    struct FakeDb {
        nobody: bool,
    }

    impl UserDb for FakeDb {
        fn user(&self, name: &str) -> Option<(u32, u32)> {
            match name {
                "alice" => Some((1000, 1000)),
                "rooty" => Some((0, 0)),
                "nobody" if self.nobody => Some((65534, 65533)),
                _ => None,
            }
        }

        fn group(&self, name: &str) -> Option<u32> {
            (name == "staff").then_some(50)
        }
    }

    const DB: FakeDb = FakeDb { nobody: true };

    #[test]
    fn runas_accepts_the_four_forms() {
        assert_eq!(parse_runas("1234", &DB), Ok((1234, 1234)));
        assert_eq!(parse_runas("1234:99", &DB), Ok((1234, 99)));
        assert_eq!(parse_runas("alice", &DB), Ok((1000, 1000)));
        assert_eq!(parse_runas("alice:staff", &DB), Ok((1000, 50)));
        assert_eq!(parse_runas("alice:7", &DB), Ok((1000, 7)));
        assert_eq!(parse_runas("1234:staff", &DB), Ok((1234, 50)));
        // strtol(3) with base 0, as upstream.
        assert_eq!(parse_runas("0x10:010", &DB), Ok((16, 8)));
        assert_eq!(parse_runas("0", &DB), Ok((0, 0)));
    }

    #[test]
    fn runas_refuses_unknown_names_root_logins_and_empty_parts() {
        assert_eq!(parse_runas("bob", &DB), Err(RunasError::NoUser));
        assert_eq!(parse_runas("rooty", &DB), Err(RunasError::NoUser));
        assert_eq!(parse_runas("alice:wheel", &DB), Err(RunasError::NoGroup));
        assert_eq!(parse_runas("1234:wheel", &DB), Err(RunasError::NoGroup));
        assert_eq!(parse_runas("", &DB), Err(RunasError::Empty));
        assert_eq!(parse_runas(":50", &DB), Err(RunasError::Empty));
        assert_eq!(parse_runas("alice:", &DB), Err(RunasError::Empty));
        assert_eq!(parse_runas("12a", &DB), Err(RunasError::NoUser));
        assert_eq!(parse_runas("99999999999", &DB), Err(RunasError::NoUser));
    }

    #[test]
    fn runas_option_is_parsed_or_refused_by_conf() {
        use crate::conf::{Conf, ConfError, Mode};
        let c = Conf::parse(Mode::Passt, &["--runas".into(), "1234:99".into()]).unwrap();
        assert_eq!(c.runas, Some((1234, 99)));
        match Conf::parse(Mode::Pasta, &["--runas".into(), "no-such-user-here".into()]) {
            Err(ConfError::Invalid(s)) => assert_eq!(s, "pasta: Invalid --runas option: no-such-user-here"),
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn only_the_identity_map_is_the_init_user_namespace() {
        assert!(is_init_userns("         0          0 4294967295\n"));
        assert!(!is_init_userns("         0       1000          1\n"));
        assert!(!is_init_userns("         0          0 4294967294\n"));
        assert!(!is_init_userns("0 0 4294967295\n1 1 1\n"));
        assert!(!is_init_userns(""));
    }

    #[test]
    fn root_of_the_init_namespace_changes_to_nobody_others_stay() {
        assert_eq!(run_as(Some((5, 6)), 0, true, &DB), Some((5, 6)));
        assert_eq!(run_as(Some((5, 6)), 1000, false, &DB), Some((5, 6)));
        assert_eq!(run_as(None, 1000, true, &DB), None);
        // Root of a user namespace (Podman's pasta) keeps its identity.
        assert_eq!(run_as(None, 0, false, &DB), None);
        assert_eq!(run_as(None, 0, true, &DB), Some((65534, 65533)));
        assert_eq!(run_as(None, 0, true, &FakeDb { nobody: false }), Some((65534, 65534)));
    }

    #[test]
    fn seccomp_filter_builds_for_every_mode() {
        for p in [Profile::Passt, Profile::VhostUser, Profile::Pasta] {
            for ebpf in [false, true] {
                let f = seccomp_filter(p, ebpf).unwrap();
                assert!(f.len() > COMMON.len(), "{p:?} {ebpf}: {} instructions", f.len());
            }
        }
        let plain = seccomp_filter(Profile::Pasta, false).unwrap().len();
        assert!(seccomp_filter(Profile::Pasta, true).unwrap().len() > plain);
    }

    #[test]
    fn threads_can_be_created_only_with_the_threads_list() {
        let with = seccomp_filter_threads(Profile::Pasta, false, true).unwrap();
        let without = seccomp_filter(Profile::Pasta, false).unwrap();
        assert!(with.len() > without.len());
        let spawn = |prog: &BpfProgram| {
            in_child(|| {
                if apply_seccomp(prog).is_err() {
                    return 2;
                }
                match std::thread::spawn(|| 7).join() {
                    Ok(7) => 0,
                    _ => 3,
                }
            })
        };
        let st = spawn(&with);
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "status {st:#x}");
        let st = spawn(&without);
        // glibc blocks every signal around clone3: the trap kills the
        // process (SIGSYS, default action) instead of reaching our handler.
        let trapped = (libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == SIGSYS_EXIT) || (libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGSYS);
        assert!(trapped, "status {st:#x}");
    }

    /// Fork; the child runs `f` and exits with its return value. Returns
    /// the child's wait status.
    fn in_child(f: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child only makes syscalls (no allocation: filters
        // are built by the caller) and leaves with _exit.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                // Let go of every inherited fd at once: other tests of this
                // binary see their sockets closed only when no copy is left.
                libc::close_range(3, u32::MAX, 0);
                let r = f();
                libc::_exit(r);
            }
            let mut st = 0;
            assert_eq!(libc::waitpid(pid, &mut st, 0), pid);
            st
        }
    }

    #[test]
    fn pasta_filter_traps_execve_and_open_and_allows_the_data_plane() {
        let prog = seccomp_filter(Profile::Pasta, false).unwrap();
        let path = CString::new("/").unwrap();
        // execve: our handler reports it and exits with 159.
        let st = in_child(|| {
            if apply_seccomp(&prog).is_err() {
                return 2;
            }
            forbidden_syscall();
            3
        });
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == SIGSYS_EXIT, "status {st:#x}");
        // openat: the same.
        let st = in_child(|| {
            if apply_seccomp(&prog).is_err() {
                return 2;
            }
            // SAFETY: valid path.
            unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
            3
        });
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == SIGSYS_EXIT, "status {st:#x}");
        // Without our handler, the kernel's SIGSYS kills the process.
        let st = in_child(|| {
            if seccompiler::apply_filter(&prog).is_err() {
                return 2;
            }
            forbidden_syscall();
            3
        });
        assert!(libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGSYS, "status {st:#x}");
        // Allowed: sockets of the two families, a pipe, splice-side calls.
        let st = in_child(|| {
            if apply_seccomp(&prog).is_err() {
                return 2;
            }
            // SAFETY: plain syscalls on fds of our own.
            unsafe {
                let s = libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0);
                let mut p = [0; 2];
                // getgid: icmp's ping_group_range warning.
                libc::getgid();
                if s < 0 || libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) < 0 || libc::write(p[1], b"x".as_ptr().cast(), 1) != 1 {
                    return 4;
                }
                libc::close(s);
            }
            0
        });
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "status {st:#x}");
        // mprotect(2) without PROT_EXEC works, with it traps.
        let st = in_child(|| {
            if apply_seccomp(&prog).is_err() {
                return 2;
            }
            // SAFETY: a fresh anonymous mapping of our own.
            unsafe {
                let m = libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
                if m == libc::MAP_FAILED || libc::mprotect(m, 4096, libc::PROT_READ | libc::PROT_WRITE) != 0 {
                    return 4;
                }
                libc::mprotect(m, 4096, libc::PROT_READ | libc::PROT_EXEC);
            }
            3
        });
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == SIGSYS_EXIT, "status {st:#x}");
        // socket(2) of another family (netlink) is refused.
        let st = in_child(|| {
            if apply_seccomp(&prog).is_err() {
                return 2;
            }
            // SAFETY: plain syscall.
            unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, 0) };
            3
        });
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == SIGSYS_EXIT, "status {st:#x}");
    }

    #[test]
    fn harden_thread_leaves_no_capability_and_sets_no_new_privs() {
        let path = CString::new("/proc/self/status").unwrap();
        let st = in_child(|| {
            let Ok(h) = harden_thread(0) else { return 2 };
            let Ok(d) = capget() else { return 3 };
            if d.iter().any(|w| w.effective | w.permitted | w.inheritable != 0) {
                return 4;
            }
            // SAFETY: plain prctls and open on a valid path.
            unsafe {
                if libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1 {
                    return 5;
                }
                if h.bounding && libc::prctl(libc::PR_CAPBSET_READ, 12 /* CAP_NET_ADMIN */, 0, 0, 0) != 0 {
                    return 6;
                }
                // Landlock: no path can be opened.
                if h.landlock && libc::open(path.as_ptr(), libc::O_RDONLY) >= 0 {
                    return 7;
                }
            }
            0
        });
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "status {st:#x}");
    }
}
