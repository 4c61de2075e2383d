//! # Theory of operation
//!
//! `passt-ebpf-helper`: a small privileged daemon that loads and attaches
//! the eBPF programs for an unprivileged pasta and passes it the map file
//! descriptors; with them pasta inserts sockets and updates maps without
//! any privilege (research/ebpf.md).
//!
//! Protocol, over a `SOCK_SEQPACKET` UNIX socket (one message per request,
//! reply or log record; text, UTF-8, lines separated by `\n`):
//! - request (pasta -> helper): `passt-ebpf-helper 1`, then one line per
//!   [`Attach`]: `tc PROG IFNAME egress|ingress N`, `sockops PROG PATH`,
//!   `sk_msg PROG MAP`, `sk_lookup PROG N`, where N indexes the file
//!   descriptors (network namespaces) sent with the message (SCM_RIGHTS);
//! - reply: `ok` and one map name per line, the maps' fds attached in the
//!   same order, or `error TEXT`;
//! - then, while the connection lasts: `log LEVEL TEXT` records of the
//!   programs (LEVEL 1 = error .. 5 = trace). When pasta closes its end the
//!   helper drops the programs (the kernel detaches them).
//!
//! Trust: the helper serves root and the uids given with `--allow-uid`. A
//! cgroup must be owned by the client's uid, and a network namespace must
//! belong to a user namespace owned by it (the client could already
//! administer it), unless the client is root: an allowed user can't attach
//! programs to namespaces or cgroups of others. Anyone may connect (the
//! socket is mode 0666): the helper serves at most `SESSIONS_MAX` sessions
//! at once, waits at most 5 s for a request, and reads it before refusing
//! one, so that the client reads the reason rather than a reset.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use nix::sys::socket::{
    self, sockopt, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
};

use super::Attach;

/// Default socket path of the helper.
pub const DEFAULT_SOCKET: &str = "/run/passt-ebpf-helper.sock";
/// First line of a request.
const MAGIC: &str = "passt-ebpf-helper 1";
/// Largest message (request, reply, log record).
const MSG_MAX: usize = 65536;
/// Most file descriptors in one message.
const FDS_MAX: usize = 64;

/// A connected helper, as pasta sees it after the handshake (non-blocking).
#[derive(Debug)]
pub struct Conn(OwnedFd);

impl AsRawFd for Conn {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Conn {
    /// Log the records waiting on the connection. Returns false when the
    /// helper has closed it (or it failed).
    pub fn relay_log(&mut self) -> bool {
        let mut buf = vec![0u8; MSG_MAX];
        loop {
            match socket::recv(self.0.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return false,
                Ok(n) => log_record(&buf[..n]),
                Err(nix::errno::Errno::EAGAIN) => return true,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("eBPF helper connection: {e}");
                    return false;
                }
            }
        }
    }
}

/// Log one `log LEVEL TEXT` record; anything else is ignored.
fn log_record(msg: &[u8]) {
    let text = String::from_utf8_lossy(msg);
    let Some(rest) = text.strip_prefix("log ") else { return };
    let (level, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let level = match level {
        "1" => log::Level::Error,
        "2" => log::Level::Warn,
        "3" => log::Level::Info,
        "4" => log::Level::Debug,
        _ => log::Level::Trace,
    };
    log::log!(level, "ebpf: {text}");
}

/// Connect to the helper daemon at `path`.
///
/// # Errors
/// socket(2), connect(2).
pub fn connect(path: &Path) -> anyhow::Result<OwnedFd> {
    let fd = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)
        .context("socket")?;
    let addr = UnixAddr::new(path).context("socket path")?;
    socket::connect(fd.as_raw_fd(), &addr).context("connect")?;
    Ok(fd)
}

/// Fork our own loader: a child that keeps this process's privileges,
/// serves one request on a socket pair (as the helper daemon serves a
/// connection, with no ownership checks: it is us), then drops every
/// capability and relays program logs until our end closes. Call it while
/// single-threaded, before leaving the initial user namespace.
///
/// # Errors
/// socketpair(2), fork(2).
pub fn fork_private() -> anyhow::Result<OwnedFd> {
    let (ours, theirs) = socket::socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .context("socketpair")?;
    // SAFETY: no other thread runs yet (documented precondition), so the
    // child may allocate and use any of our code.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(theirs);
            Ok(ours)
        }
        nix::unistd::ForkResult::Child => {
            drop(ours);
            // Leave pasta's session so terminal signals go to it only; we
            // end when its end of the socket closes. Hold none of its other
            // descriptors: whoever waits for EOF on pasta's output (or for
            // a file to close) must not wait for us.
            let _ = nix::unistd::setsid();
            detach_fds(theirs.as_raw_fd());
            let code = match session(&theirs, 0, &[], true) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = send(theirs.as_fd(), format!("error {e:#}").as_bytes(), &[]);
                    1
                }
            };
            // SAFETY: leave without running the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
    }
}

/// Point stdin, stdout and stderr at /dev/null and close every other
/// descriptor but `keep`.
fn detach_fds(keep: RawFd) {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(d) => d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect(),
        Err(_) => return,
    };
    for fd in fds {
        if fd > 2 && fd != keep {
            // SAFETY: closing descriptors of this (single-threaded) child;
            // nothing here uses them (the directory iterator is gone).
            unsafe { libc::close(fd) };
        }
    }
}

/// Send `attaches` on a connected loader socket `fd` and take the maps
/// from the reply; `how` says who loaded them, for the log.
///
/// # Errors
/// The loader's `error` reply, a malformed reply, the connection closing.
pub fn request(fd: OwnedFd, attaches: Vec<Attach>, how: String) -> anyhow::Result<super::Loaded> {
    let timeout = nix::sys::time::TimeVal::new(10, 0);
    socket::setsockopt(&fd, sockopt::ReceiveTimeout, &timeout).context("SO_RCVTIMEO")?;
    let (text, fds) = encode(&attaches);
    send(fd.as_fd(), text.as_bytes(), &fds).context("sending the request")?;
    let (reply, map_fds) = recv(fd.as_fd()).context("no reply")?;
    let reply = String::from_utf8_lossy(&reply).into_owned();
    if let Some(e) = reply.strip_prefix("error ") {
        // Errors may span lines (a verifier log): all of it in the debug
        // log, the first line for the one-line fallback warning.
        let mut lines = e.lines();
        let first = lines.next().unwrap_or_default();
        if lines.next().is_some() {
            log::debug!("eBPF loader error, in full:\n{e}");
            bail!("{first} (more with --debug)");
        }
        bail!("{first}");
    }
    let mut lines = reply.lines();
    if lines.next() != Some("ok") {
        bail!("malformed reply");
    }
    let names: Vec<&str> = lines.collect();
    if names.len() != map_fds.len() {
        bail!("reply names {} maps but carries {} descriptors", names.len(), map_fds.len());
    }
    let mut maps = std::collections::HashMap::new();
    for (name, fd) in names.into_iter().zip(map_fds) {
        maps.insert(name.to_owned(), super::map_from_fd(fd).with_context(|| format!("map {name}"))?);
    }
    let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL).context("F_GETFL")?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags)).context("F_SETFL")?;
    Ok(super::Loaded { maps, log: Some(Conn(fd)), how })
}

/// Request text and the fds it refers to.
fn encode(attaches: &[Attach]) -> (String, Vec<RawFd>) {
    let mut text = String::from(MAGIC);
    let mut fds = Vec::new();
    for a in attaches {
        text.push('\n');
        match a {
            Attach::Tc { prog, netns, ifname, egress } => {
                let dir = if *egress { "egress" } else { "ingress" };
                text += &format!("tc {prog} {ifname} {dir} {}", fds.len());
                fds.push(netns.as_raw_fd());
            }
            Attach::SockOps { prog, cgroup } => text += &format!("sockops {prog} {}", cgroup.display()),
            Attach::SkMsg { prog, map } => text += &format!("sk_msg {prog} {map}"),
            Attach::SkLookup { prog, netns } => {
                text += &format!("sk_lookup {prog} {}", fds.len());
                fds.push(netns.as_raw_fd());
            }
        }
    }
    (text, fds)
}

/// Parse a request; takes the fds it refers to out of `fds`.
///
/// # Errors
/// Any malformed line, bad index or fd used twice.
fn decode(text: &str, fds: &mut [Option<OwnedFd>]) -> anyhow::Result<Vec<Attach>> {
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        bail!("not a passt-ebpf-helper request (want '{MAGIC}')");
    }
    let mut take = |idx: &str| -> anyhow::Result<OwnedFd> {
        let i: usize = idx.parse().with_context(|| format!("bad descriptor index '{idx}'"))?;
        fds.get_mut(i).and_then(Option::take).with_context(|| format!("no descriptor {i}"))
    };
    let mut out = Vec::new();
    for line in lines {
        let w: Vec<&str> = line.splitn(3, ' ').collect();
        let a = match w.as_slice() {
            ["tc", prog, rest] => {
                let r: Vec<&str> = rest.split(' ').collect();
                let [ifname, dir, idx] = r.as_slice() else { bail!("bad tc line '{line}'") };
                let egress = match *dir {
                    "egress" => true,
                    "ingress" => false,
                    _ => bail!("bad tc direction '{dir}'"),
                };
                Attach::Tc { prog: prog.to_string(), netns: take(idx)?, ifname: ifname.to_string(), egress }
            }
            ["sockops", prog, path] => Attach::SockOps { prog: prog.to_string(), cgroup: PathBuf::from(path) },
            ["sk_msg", prog, map] => Attach::SkMsg { prog: prog.to_string(), map: map.to_string() },
            ["sk_lookup", prog, idx] => Attach::SkLookup { prog: prog.to_string(), netns: take(idx)? },
            _ => bail!("bad request line '{line}'"),
        };
        out.push(a);
    }
    Ok(out)
}

fn send(fd: BorrowedFd<'_>, msg: &[u8], fds: &[RawFd]) -> nix::Result<usize> {
    let iov = [IoSlice::new(msg)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
    socket::sendmsg::<()>(fd.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
}

/// Receive one message and the fds it carries. A zero-length message
/// (connection closed) is an error.
fn recv(fd: BorrowedFd<'_>) -> anyhow::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; MSG_MAX];
    let mut cmsg = nix::cmsg_space!([RawFd; FDS_MAX]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = socket::recvmsg::<()>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(v) = c {
            // SAFETY: the kernel just installed these descriptors for us.
            fds.extend(v.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) || msg.flags.contains(MsgFlags::MSG_TRUNC) {
        bail!("message truncated");
    }
    let n = msg.bytes;
    if n == 0 {
        bail!("connection closed");
    }
    buf.truncate(n);
    Ok((buf, fds))
}

// ---- the helper daemon ----------------------------------------------------

/// Serve clients on `path` forever (a thread per connection).
///
/// # Errors
/// Binding or listening on `path` failed.
pub fn serve(path: &Path, allow: &[u32]) -> anyhow::Result<()> {
    if super::OBJECT.is_none() {
        bail!("built without the eBPF programs (cargo xtask build-ebpf, then rebuild)");
    }
    super::probe_privileges().map_err(|e| anyhow!("{e}"))?;
    if let Ok(m) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if m.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        }
    }
    let fd = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)
        .context("socket")?;
    socket::bind(fd.as_raw_fd(), &UnixAddr::new(path).context("socket path")?)
        .with_context(|| format!("bind {}", path.display()))?;
    // Access is checked per connection (SO_PEERCRED), not by file mode.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).context("chmod")?;
    socket::listen(&fd, socket::Backlog::new(16).context("backlog")?).context("listen")?;
    log::info!("passt-ebpf-helper: listening on {}", path.display());
    let allow = allow.to_vec();
    let active = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        let c = match socket::accept4(fd.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
            Ok(c) => c,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::warn!("accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        };
        // SAFETY: accept4 returned a new descriptor we own.
        let conn = unsafe { OwnedFd::from_raw_fd(c) };
        // Anyone may connect: bound what connections can hold.
        let Some(slot) = Slot::take(&active, SESSIONS_MAX) else {
            log::warn!("passt-ebpf-helper: {SESSIONS_MAX} sessions already, connection refused");
            let _ = send(conn.as_fd(), format!("error the helper serves {SESSIONS_MAX} sessions already").as_bytes(), &[]);
            // Whatever the client sent must be read, or closing resets the
            // connection before it reads why.
            let mut buf = vec![0u8; MSG_MAX];
            while socket::recv(conn.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).is_ok_and(|n| n > 0) {}
            continue;
        };
        let allow = allow.clone();
        let spawned = std::thread::Builder::new().name("session".into()).spawn(move || {
            let _slot = slot;
            let cred = socket::getsockopt(&conn, sockopt::PeerCredentials).ok();
            let who = cred.map_or("unknown peer".into(), |c| format!("pid {} uid {}", c.pid(), c.uid()));
            serve_conn(&conn, cred.map(|c| c.uid()), &allow, &who);
        });
        if let Err(e) = spawned {
            // The connection closes unanswered: the client reports no reply.
            log::warn!("passt-ebpf-helper: can't start a session thread: {e}");
        }
    }
}

/// Most sessions served at once: each holds a thread and, once attached,
/// its programs and maps. Connections beyond it are refused.
const SESSIONS_MAX: usize = 1024;

/// One of the sessions counted by an [`AtomicUsize`], given back on drop.
struct Slot(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Slot {
    /// Count one more session if fewer than `max` are active.
    fn take(active: &std::sync::Arc<std::sync::atomic::AtomicUsize>, max: usize) -> Option<Self> {
        use std::sync::atomic::Ordering::SeqCst;
        active.fetch_update(SeqCst, SeqCst, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Self(active.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Serve one accepted connection from `uid` (`None`: unknown, refused):
/// a session, or the reason it failed sent back as `error TEXT`.
fn serve_conn(conn: &OwnedFd, uid: Option<u32>, allow: &[u32], who: &str) {
    let r = match uid {
        Some(uid) => session(conn, uid, allow, false),
        None => Err(anyhow!("no peer credentials")),
    };
    match r {
        Ok(()) => log::info!("passt-ebpf-helper: {who}: done, programs detached"),
        Err(e) => {
            log::warn!("passt-ebpf-helper: {who}: {e:#}");
            let _ = send(conn.as_fd(), format!("error {e:#}").as_bytes(), &[]);
        }
    }
}

/// One client: check, load, attach, reply, relay logs until it goes.
/// `private`: our own forked loader, which drops its capabilities once
/// the programs are attached.
fn session(conn: &OwnedFd, uid: u32, allow: &[u32], private: bool) -> anyhow::Result<()> {
    if !private {
        let t = nix::sys::time::TimeVal::new(5, 0);
        socket::setsockopt(conn, sockopt::ReceiveTimeout, &t).context("SO_RCVTIMEO")?;
    }
    // Read the request before any refusal: closing with it unread would
    // reset the connection, and the client would get ECONNRESET instead
    // of our reason.
    let (req, fds) = recv(conn.as_fd()).context("reading the request")?;
    if uid != 0 && !allow.contains(&uid) {
        bail!("uid {uid} is not allowed (passt-ebpf-helper --allow-uid {uid})");
    }
    let mut fds: Vec<Option<OwnedFd>> = fds.into_iter().map(Some).collect();
    let attaches = decode(&String::from_utf8_lossy(&req), &mut fds)?;
    for a in &attaches {
        check(a, uid)?;
    }
    let fwd = Forward(conn.as_raw_fd());
    let obj = super::OBJECT.context("built without the eBPF programs")?;
    let mut ebpf = aya::EbpfLoader::new().load(obj).context("loading the eBPF object")?;
    let mut logger = aya_log::EbpfLogger::init_with_logger(&mut ebpf, fwd).ok();
    for a in &attaches {
        super::attach(&mut ebpf, a)?;
    }
    let maps = super::map_fds(&ebpf);
    let mut text = String::from("ok");
    for (n, _) in &maps {
        text.push('\n');
        text += n;
    }
    let raw: Vec<RawFd> = maps.iter().map(|(_, f)| f.as_raw_fd()).collect();
    send(conn.as_fd(), text.as_bytes(), &raw).context("sending the reply")?;
    if private {
        drop_capabilities().context("dropping capabilities")?;
    } else {
        log::info!("passt-ebpf-helper: uid {uid}: attached {} program(s), sent {} map(s)", attaches.len(), maps.len());
    }
    let mut buf = [0u8; 512];
    loop {
        let mut pfd = vec![libc::pollfd { fd: conn.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        if let Some(l) = &logger {
            pfd.push(libc::pollfd { fd: l.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        // SAFETY: pfd is a valid array of pollfd.
        let n = unsafe { libc::poll(pfd.as_mut_ptr(), pfd.len() as libc::nfds_t, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            bail!("poll: {}", std::io::Error::last_os_error());
        }
        if pfd.get(1).is_some_and(|p| p.revents != 0) {
            if let Some(l) = logger.as_mut() {
                l.flush();
            }
        }
        if pfd[0].revents != 0 {
            // Anything but more data from the client ends the session.
            match socket::recv(conn.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) if n > 0 => {}
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
                _ => return Ok(()),
            }
        }
    }
}

/// Drop every capability (effective, permitted, inheritable, bounding
/// set) and set no_new_privs: the programs stay attached without them.
fn drop_capabilities() -> anyhow::Result<()> {
    for cap in 0..=63 {
        // SAFETY: plain prctl; EINVAL past the last capability ends it.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } < 0 {
            break;
        }
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    let hdr = Header { version: 0x2008_0522, pid: 0 }; // _LINUX_CAPABILITY_VERSION_3
    let data = [0u32; 6]; // two __user_cap_data_struct, all sets empty
    // SAFETY: capset reads a header and two data structs.
    if unsafe { libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) } < 0 {
        bail!("capset: {}", std::io::Error::last_os_error());
    }
    // SAFETY: plain prctl.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
        bail!("PR_SET_NO_NEW_PRIVS: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The uid owning the user namespace that owns network namespace `netns`,
/// as the caller's user namespace sees it (65534 if unmapped there).
///
/// # Errors
/// `netns` is not a network namespace; ioctl_ns(2) failures.
pub fn netns_owner(netns: &OwnedFd) -> anyhow::Result<u32> {
    // ioctl_ns(2): NS_GET_NSTYPE = _IO(0xb7, 3), NS_GET_USERNS = _IO(0xb7, 1),
    // NS_GET_OWNER_UID = _IO(0xb7, 4).
    // SAFETY: ioctl without arguments on an fd we own.
    let ty = unsafe { libc::ioctl(netns.as_raw_fd(), 0xb703) };
    if ty != libc::CLONE_NEWNET {
        bail!("descriptor is not a network namespace");
    }
    // SAFETY: as above; returns a new fd.
    let userns = unsafe { libc::ioctl(netns.as_raw_fd(), 0xb701) };
    if userns < 0 {
        bail!("NS_GET_USERNS: {}", std::io::Error::last_os_error());
    }
    // SAFETY: userns was just returned to us.
    let userns = unsafe { OwnedFd::from_raw_fd(userns) };
    let mut owner: libc::uid_t = u32::MAX;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t.
    if unsafe { libc::ioctl(userns.as_raw_fd(), 0xb704, &mut owner) } < 0 {
        bail!("NS_GET_OWNER_UID: {}", std::io::Error::last_os_error());
    }
    Ok(owner)
}

/// Refuse attach points the client doesn't own.
fn check(a: &Attach, uid: u32) -> anyhow::Result<()> {
    match a {
        Attach::Tc { netns, .. } | Attach::SkLookup { netns, .. } => {
            let owner = netns_owner(netns)?;
            if uid != 0 && owner != uid {
                bail!("network namespace belongs to uid {owner}'s user namespace, not to uid {uid}");
            }
        }
        Attach::SockOps { cgroup, .. } => {
            let real = std::fs::canonicalize(cgroup).with_context(|| format!("cgroup {}", cgroup.display()))?;
            if !super::is_cgroup2(&real) {
                bail!("{} is not a cgroup v2 directory", real.display());
            }
            let owner = std::fs::metadata(&real)?.uid();
            if uid != 0 && owner != uid {
                bail!("cgroup {} belongs to uid {owner}, not to uid {uid}", real.display());
            }
        }
        Attach::SkMsg { .. } => {}
    }
    Ok(())
}

/// Sends program log records to the client as `log LEVEL TEXT` messages.
struct Forward(RawFd);

impl log::Log for Forward {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        let msg = format!("log {} {}", r.level() as usize, r.args());
        // SAFETY: the fd outlives the logger (both live in `client`).
        let fd = unsafe { BorrowedFd::borrow_raw(self.0) };
        let _ = socket::send(fd.as_raw_fd(), msg.as_bytes(), MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL);
    }
    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn netns() -> OwnedFd {
        std::fs::File::open("/proc/self/ns/net").unwrap().into()
    }

    #[test]
    fn request_round_trip() {
        let a = vec![
            Attach::Tc { prog: "tap_tc".into(), netns: netns(), ifname: "eth0".into(), egress: true },
            Attach::SockOps { prog: "so".into(), cgroup: PathBuf::from("/sys/fs/cgroup/a b") },
            Attach::SkMsg { prog: "msg".into(), map: "SOCKS".into() },
            Attach::SkLookup { prog: "lk".into(), netns: netns() },
        ];
        let (text, raw) = encode(&a);
        assert_eq!(raw.len(), 2);
        let mut fds: Vec<Option<OwnedFd>> = vec![Some(netns()), Some(netns())];
        let back = decode(&text, &mut fds).unwrap();
        assert_eq!(format!("{:?}", back.iter().map(kind).collect::<Vec<_>>()), format!("{:?}", a.iter().map(kind).collect::<Vec<_>>()));
        match &back[1] {
            Attach::SockOps { cgroup, .. } => assert_eq!(cgroup, Path::new("/sys/fs/cgroup/a b")),
            other => panic!("{other:?}"),
        }
        assert!(fds.iter().all(Option::is_none), "both descriptors taken");
    }

    fn kind(a: &Attach) -> String {
        match a {
            Attach::Tc { prog, ifname, egress, .. } => format!("tc {prog} {ifname} {egress}"),
            Attach::SockOps { prog, cgroup } => format!("sockops {prog} {}", cgroup.display()),
            Attach::SkMsg { prog, map } => format!("sk_msg {prog} {map}"),
            Attach::SkLookup { prog, .. } => format!("sk_lookup {prog}"),
        }
    }

    #[test]
    fn malformed_requests_refused() {
        let mut none: Vec<Option<OwnedFd>> = vec![];
        for bad in [
            "",
            "hello",
            "passt-ebpf-helper 1\ntc p eth0 sideways 0",
            "passt-ebpf-helper 1\ntc p eth0 egress 0",
            "passt-ebpf-helper 1\nsk_lookup p 7",
            "passt-ebpf-helper 1\nsk_lookup p x",
            "passt-ebpf-helper 1\nrm -rf /",
        ] {
            assert!(decode(bad, &mut none).is_err(), "{bad:?} accepted");
        }
        // One descriptor can't serve two lines.
        let mut one = vec![Some(netns())];
        assert!(decode("passt-ebpf-helper 1\nsk_lookup a 0\nsk_lookup b 0", &mut one).is_err());
    }

    #[test]
    fn refused_uid_gets_the_reason_not_a_reset() {
        // The request is already queued when the helper refuses: it must
        // still be read, or closing resets the connection and the client
        // reads ECONNRESET instead of the reason.
        let (ours, theirs) =
            socket::socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).unwrap();
        let attaches = [Attach::SkLookup { prog: "p".into(), netns: netns() }];
        let (text, fds) = encode(&attaches);
        send(ours.as_fd(), text.as_bytes(), &fds).unwrap();
        serve_conn(&theirs, Some(4242), &[4243], "test");
        drop(theirs);
        let (reply, _) = recv(ours.as_fd()).unwrap();
        let reply = String::from_utf8(reply).unwrap();
        assert!(reply.starts_with("error uid 4242 is not allowed"), "{reply}");
    }

    #[test]
    fn sessions_are_bounded_and_given_back() {
        let active = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let a = Slot::take(&active, 2).unwrap();
        let b = Slot::take(&active, 2).unwrap();
        assert!(Slot::take(&active, 2).is_none(), "third session over a limit of 2");
        drop(a);
        let c = Slot::take(&active, 2).expect("a place freed by the end of a session");
        drop((b, c));
        assert_eq!(active.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[test]
    fn ownership_checks() {
        // Root may use anything; another uid not a namespace of init's user
        // namespace (owned by uid 0), nor a cgroup it doesn't own.
        let a = Attach::SkLookup { prog: "p".into(), netns: netns() };
        assert!(check(&a, 0).is_ok());
        let e = check(&a, 4242).unwrap_err().to_string();
        assert!(e.contains("not to uid 4242"), "{e}");
        let c = Attach::SockOps { prog: "p".into(), cgroup: super::super::default_cgroup().expect("cgroup v2") };
        assert!(check(&c, 4242).is_err());
        let c = Attach::SockOps { prog: "p".into(), cgroup: PathBuf::from("/tmp") };
        assert!(check(&c, 0).is_err(), "outside the cgroup tree");
        let mut not_ns = vec![Some(OwnedFd::from(std::fs::File::open("/dev/null").unwrap()))];
        let a = decode("passt-ebpf-helper 1\nsk_lookup p 0", &mut not_ns).unwrap();
        assert!(check(&a[0], 0).unwrap_err().to_string().contains("not a network namespace"));
    }
}
