//! # Theory of operation
//!
//! The thin, `unsafe`-holding wrappers over the socket syscalls the data
//! plane uses, taking and returning [`Inany`] addresses and host-order
//! ports. Everything else in the crate stays safe code.
//!
//! Syscalls: socket, bind, connect, getsockname, getpeername, getsockopt, sendto, recvfrom, recvmmsg,
//! setsockopt.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::flow::Inany;

/// A socket address built from an [`Inany`] and a port.
pub struct SockAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl SockAddr {
    /// IPv4 addresses give `sockaddr_in`, IPv6 ones `sockaddr_in6`.
    pub fn new(a: Inany, port: u16) -> Self {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let len = if let Some(v4) = a.v4() {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = port.to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.octets());
            size_of::<libc::sockaddr_in>()
        } else {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = port.to_be();
            sin6.sin6_addr.s6_addr = a.0;
            size_of::<libc::sockaddr_in6>()
        };
        SockAddr { storage, len: len as libc::socklen_t }
    }

    fn ptr(&self) -> *const libc::sockaddr {
        &self.storage as *const _ as *const libc::sockaddr
    }
}

/// Address and port from a `sockaddr_storage` filled by the kernel.
pub fn from_storage(s: &libc::sockaddr_storage) -> Option<(Inany, u16)> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: family says sockaddr_in.
            let sin = unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
            let a = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some((a.into(), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: family says sockaddr_in6.
            let sin6 = unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
            Some((Inany(sin6.sin6_addr.s6_addr), u16::from_be(sin6.sin6_port)))
        }
        _ => None,
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The result of a call returning a byte or message count: the OS error
/// if negative.
fn cvt_len(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// The result of a non-blocking call returning a count or fd: `Ok(None)`
/// on EAGAIN, `Ok(Some(r))` otherwise.
fn cvt_again(r: isize) -> io::Result<Option<usize>> {
    if r >= 0 {
        return Ok(Some(r as usize));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EAGAIN) {
        return Ok(None);
    }
    Err(e)
}

/// A non-blocking, close-on-exec socket of family v4/v6, `ty` and `proto`.
///
/// # Errors
/// The OS error of socket(2).
pub fn socket(v4: bool, ty: libc::c_int, proto: libc::c_int) -> io::Result<OwnedFd> {
    let af = if v4 { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain syscall.
    let fd = cvt(unsafe { libc::socket(af, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, proto) })?;
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// bind(2) to `a`:`port`.
///
/// # Errors
/// The OS error.
pub fn bind(fd: RawFd, a: Inany, port: u16) -> io::Result<()> {
    let sa = SockAddr::new(a, port);
    // SAFETY: sa is a valid sockaddr of sa.len bytes.
    cvt(unsafe { libc::bind(fd, sa.ptr(), sa.len) }).map(drop)
}

/// connect(2) to `a`:`port` (immediate for datagram sockets).
///
/// # Errors
/// The OS error.
pub fn connect(fd: RawFd, a: Inany, port: u16) -> io::Result<()> {
    let sa = SockAddr::new(a, port);
    // SAFETY: as for bind.
    cvt(unsafe { libc::connect(fd, sa.ptr(), sa.len) }).map(drop)
}

/// Our bound address and port (getsockname(2)).
///
/// # Errors
/// The OS error, or `InvalidData` for a family that is not IP.
pub fn local_addr(fd: RawFd) -> io::Result<(Inany, u16)> {
    sock_name(fd, libc::getsockname)
}

/// The address `call` (getsockname or getpeername) gives for `fd`.
fn sock_name(
    fd: RawFd,
    call: unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int,
) -> io::Result<(Inany, u16)> {
    // SAFETY: zeroed storage is valid; len tells the kernel its size.
    let mut s: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: s is writable for len bytes.
    cvt(unsafe { call(fd, &mut s as *mut _ as *mut libc::sockaddr, &mut len) })?;
    from_storage(&s).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
}

/// send(2) on a connected socket, or sendto(2) when `to` is given.
///
/// # Errors
/// The OS error (EAGAIN included).
pub fn send(fd: RawFd, buf: &[u8], to: Option<(Inany, u16)>) -> io::Result<usize> {
    let r = match to {
        None => {
            // SAFETY: buf is valid for its length.
            unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) }
        }
        Some((a, p)) => {
            let sa = SockAddr::new(a, p);
            // SAFETY: buf and sa are valid.
            unsafe { libc::sendto(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL, sa.ptr(), sa.len) }
        }
    };
    cvt_len(r)
}

/// sendmsg(2) of the buffers `iov` points at, in order, on a connected
/// socket (MSG_NOSIGNAL). Returns the bytes taken, which may be fewer
/// than their total. No iovecs: Ok(0) without a syscall.
///
/// # Safety
/// Every iovec must point at `iov_len` readable bytes.
///
/// # Errors
/// The OS error (EAGAIN included).
pub unsafe fn send_iov(fd: RawFd, iov: &[libc::iovec]) -> io::Result<usize> {
    if iov.is_empty() {
        return Ok(0);
    }
    // SAFETY: a zeroed msghdr is valid (no name, no control data).
    let mut mh: libc::msghdr = unsafe { zeroed() };
    mh.msg_iov = iov.as_ptr().cast_mut();
    mh.msg_iovlen = iov.len() as _;
    // SAFETY: mh points at iovecs the caller vouches for, read only.
    cvt_len(unsafe { libc::sendmsg(fd, &mh, libc::MSG_NOSIGNAL) })
}

/// UDP_SEGMENT (udp(7), linux/udp.h): the socket option and control
/// message level SOL_UDP (17) that asks the kernel to split one send into
/// datagrams of the given size.
pub const UDP_SEGMENT: libc::c_int = 103;

/// Send the buffers `iov` points at, concatenated, as datagrams of
/// `gso_size` bytes each (the last may be shorter) on connected UDP socket
/// `fd`, with one sendmsg(2) carrying a UDP_SEGMENT control message
/// (udp(7), Linux 4.18 and later: at most 64 segments, the whole within
/// one IP packet's 64 KiB). Returns the bytes sent.
///
/// # Safety
/// Every iovec must point at `iov_len` readable bytes.
///
/// # Errors
/// The OS error: EIO or EINVAL when the kernel or the route refuses
/// segmentation, EAGAIN, EMSGSIZE...
pub unsafe fn send_udp_gso(fd: RawFd, iov: &[libc::iovec], gso_size: u16) -> io::Result<usize> {
    // Room for one cmsghdr and a u16, aligned as CMSG_SPACE(2) asks.
    let mut cbuf = [0u64; 4];
    // SAFETY: CMSG_SPACE is arithmetic only.
    let space = unsafe { libc::CMSG_SPACE(2) } as usize;
    debug_assert!(space <= std::mem::size_of_val(&cbuf));
    // SAFETY: a zeroed msghdr is valid (no name).
    let mut mh: libc::msghdr = unsafe { zeroed() };
    mh.msg_iov = iov.as_ptr().cast_mut();
    mh.msg_iovlen = iov.len() as _;
    mh.msg_control = cbuf.as_mut_ptr().cast();
    mh.msg_controllen = space as _;
    // SAFETY: msg_control points at `space` zeroed, aligned bytes: room
    // for the first header and its 2 data bytes.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&mh);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(2) as _;
        std::ptr::copy_nonoverlapping(gso_size.to_ne_bytes().as_ptr(), libc::CMSG_DATA(c), 2);
    }
    // SAFETY: mh points at live iovecs (caller) and our control buffer.
    cvt_len(unsafe { libc::sendmsg(fd, &mh, libc::MSG_NOSIGNAL) })
}

/// recv(2) of up to `buf.len()` bytes from stream socket `fd`, without
/// blocking. `Ok(None)` on EAGAIN, `Ok(Some(0))` at end of file.
///
/// # Errors
/// Other OS errors (ECONNRESET...).
pub fn recv_some(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: buf is valid for writes of its length.
    cvt_again(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) })
}

/// send(2) of `buf` on stream socket `fd`, without blocking and without
/// SIGPIPE. Returns the bytes taken (possibly fewer), `Ok(None)` on EAGAIN.
///
/// # Errors
/// Other OS errors (EPIPE, ECONNRESET...).
pub fn send_some(fd: RawFd, buf: &[u8]) -> io::Result<Option<usize>> {
    // SAFETY: buf is valid for its length.
    cvt_again(unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    })
}

/// write(2) of `buf` to `fd` (a non-blocking pipe). Returns the bytes
/// taken, `Ok(None)` on EAGAIN.
///
/// # Errors
/// Other OS errors.
pub fn write_some(fd: RawFd, buf: &[u8]) -> io::Result<Option<usize>> {
    // SAFETY: buf is valid for its length.
    cvt_again(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
}

/// One datagram received by [`recv_batch`].
#[derive(Debug, Clone, Copy)]
pub struct Datagram {
    /// Bytes received (the datagram's length when not truncated).
    pub len: usize,
    /// The datagram did not fit its buffer (MSG_TRUNC).
    pub truncated: bool,
    /// Sender, when the kernel reported one.
    pub from: Option<(Inany, u16)>,
}

/// Receive up to as many datagrams as `bufs` yields (at most 64) in one recvmmsg(2),
/// each into its own buffer. Returns how many arrived (0 when none is
/// queued).
///
/// # Errors
/// The OS error other than EAGAIN (ECONNREFUSED for a connected UDP socket
/// after an ICMP error, for instance).
pub fn recv_batch<'a>(fd: RawFd, bufs: impl Iterator<Item = &'a mut [u8]>, out: &mut [Datagram; 64]) -> io::Result<usize> {
    recv_batch_inner(fd, bufs, out, None)
}

/// [`recv_batch`] on a socket with `IP_RECVORIGDSTADDR` (and, for IPv6,
/// `IPV6_RECVORIGDSTADDR`) on: also gives each datagram's original
/// destination address and port in `dst` (`None` if the kernel sent no
/// such control message, or a malformed one).
///
/// # Errors
/// As [`recv_batch`].
pub fn recv_batch_dst<'a>(
    fd: RawFd,
    bufs: impl Iterator<Item = &'a mut [u8]>,
    out: &mut [Datagram; 64],
    dst: &mut [Option<(Inany, u16)>; 64],
) -> io::Result<usize> {
    recv_batch_inner(fd, bufs, out, Some(dst))
}

/// Room for one `IP_ORIGDSTADDR` or `IPV6_ORIGDSTADDR` control message
/// (a `cmsghdr` and a `sockaddr_in6`), 8-byte aligned.
type OrigDstCmsg = [u64; 8];

/// The original destination in the control messages of `h`, if any.
fn orig_dst(h: &libc::msghdr) -> Option<(Inany, u16)> {
    // SAFETY: h was filled by recvmmsg; the CMSG_* macros stay within
    // msg_control..msg_control+msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            let (level, ty, len) = ((*c).cmsg_level, (*c).cmsg_type, (*c).cmsg_len as usize);
            let data = libc::CMSG_DATA(c);
            let dlen = len.saturating_sub(libc::CMSG_LEN(0) as usize);
            let want = match (level, ty) {
                (libc::SOL_IP, libc::IP_ORIGDSTADDR) => size_of::<libc::sockaddr_in>(),
                (libc::SOL_IPV6, libc::IPV6_ORIGDSTADDR) => size_of::<libc::sockaddr_in6>(),
                _ => 0,
            };
            if want != 0 && dlen >= want {
                let mut st: libc::sockaddr_storage = zeroed();
                std::ptr::copy_nonoverlapping(data, (&mut st as *mut libc::sockaddr_storage).cast::<u8>(), want);
                return from_storage(&st);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

fn recv_batch_inner<'a>(
    fd: RawFd,
    bufs: impl Iterator<Item = &'a mut [u8]>,
    out: &mut [Datagram; 64],
    mut dst: Option<&mut [Option<(Inany, u16)>; 64]>,
) -> io::Result<usize> {
    // SAFETY: zeroed iovec/mmsghdr/sockaddr arrays are valid.
    let mut iov: [libc::iovec; 64] = unsafe { zeroed() };
    let mut cmsgs: [OrigDstCmsg; 64] = [[0; 8]; 64];
    let mut names: [libc::sockaddr_storage; 64] = unsafe { zeroed() };
    let mut hdrs: [libc::mmsghdr; 64] = unsafe { zeroed() };
    let mut n = 0;
    for b in bufs.take(64) {
        iov[n] = libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() };
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    for i in 0..n {
        hdrs[i].msg_hdr.msg_iov = &mut iov[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
        hdrs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        hdrs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if dst.is_some() {
            hdrs[i].msg_hdr.msg_control = cmsgs[i].as_mut_ptr().cast();
            hdrs[i].msg_hdr.msg_controllen = size_of::<OrigDstCmsg>();
        }
    }
    // SAFETY: hdrs[..n] point at live buffers for the duration of the call.
    let r = unsafe {
        libc::recvmmsg(fd, hdrs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT, std::ptr::null_mut())
    };
    let Some(r) = cvt_again(r as isize)? else { return Ok(0) };
    for i in 0..r {
        let h = &hdrs[i];
        out[i] = Datagram {
            len: (h.msg_len as usize).min(iov[i].iov_len),
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            from: if h.msg_hdr.msg_namelen > 0 { from_storage(&names[i]) } else { None },
        };
        if let Some(d) = dst.as_deref_mut() {
            d[i] = orig_dst(&h.msg_hdr);
        }
    }
    Ok(r)
}

/// Set an integer socket option.
///
/// # Errors
/// The OS error of setsockopt.
pub fn set_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: v is a valid int for the option's length.
    cvt(unsafe {
        libc::setsockopt(fd, level, name, (&v as *const libc::c_int).cast(), size_of::<libc::c_int>() as libc::socklen_t)
    })
    .map(drop)
}

/// Read an integer socket option.
///
/// # Errors
/// The OS error of getsockopt.
pub fn get_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v is writable for len bytes.
    cvt(unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut libc::c_int).cast(), &mut len) })?;
    Ok(v)
}

/// Bytes queued in a TCP socket's send buffer, sent or not (SIOCOUTQ).
///
/// # Errors
/// The OS error of ioctl.
pub fn outq(fd: RawFd) -> io::Result<u32> {
    let mut v: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int.
    cvt(unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut v) })?;
    Ok(v.max(0) as u32)
}

/// Peek up to the total length of `bufs` bytes at the socket's peek
/// offset (SO_PEEK_OFF advances by what was read), scattered over `bufs`
/// (recvmsg(2) with MSG_PEEK). Ok(0) is end of file; EAGAIN is Ok(None).
///
/// # Errors
/// Any other OS error.
pub fn peek_into<'a>(fd: RawFd, bufs: impl Iterator<Item = &'a mut [u8]>) -> io::Result<Option<usize>> {
    // SAFETY: a zeroed iovec array is valid.
    let mut iov: [libc::iovec; 64] = unsafe { zeroed() };
    let mut n = 0;
    // Empty buffers (no bytes to skip) take no iovec: a caller judging a
    // short peek against the room it passed needs all 64 for data.
    for b in bufs.filter(|b| !b.is_empty()).take(64) {
        iov[n] = libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() };
        n += 1;
    }
    // SAFETY: zeroed msghdr is valid; iov[..n] point at live buffers.
    let mut mh: libc::msghdr = unsafe { zeroed() };
    mh.msg_iov = iov.as_mut_ptr();
    mh.msg_iovlen = n;
    // SAFETY: as above.
    cvt_again(unsafe { libc::recvmsg(fd, &mut mh, libc::MSG_PEEK | libc::MSG_DONTWAIT) })
}

/// Remove `n` bytes from the front of a TCP socket's receive queue without
/// copying them (recv(2) with MSG_TRUNC). Returns how many were removed.
///
/// # Errors
/// The OS error of recv (EAGAIN included).
pub fn discard(fd: RawFd, n: usize) -> io::Result<usize> {
    // SAFETY: with MSG_TRUNC, TCP does not write to the buffer.
    cvt_len(unsafe { libc::recv(fd, std::ptr::null_mut(), n, libc::MSG_TRUNC | libc::MSG_DONTWAIT) })
}

/// shutdown(2) for writing.
pub fn shutdown_write(fd: RawFd) {
    // SAFETY: plain syscall; an error only means the socket is gone.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
}

/// Make close(2) abort the connection with a RST (SO_LINGER with a zero
/// timeout, tcp(7)).
pub fn set_linger_zero(fd: RawFd) {
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: l is a valid struct linger.
    unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_LINGER, (&l as *const libc::linger).cast(), size_of::<libc::linger>() as libc::socklen_t)
    };
}

/// Read and clear the pending error of a socket (SO_ERROR).
pub fn take_error(fd: RawFd) -> i32 {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v is writable for len bytes.
    unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, (&mut v as *mut libc::c_int).cast(), &mut len) };
    v
}


/// listen(2) with a backlog of `backlog` connections.
///
/// # Errors
/// The OS error.
pub fn listen(fd: RawFd, backlog: i32) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::listen(fd, backlog) }).map(drop)
}

/// accept4(2) a connection: a non-blocking, close-on-exec socket and the
/// peer's address and port. `Ok(None)` when none is pending (EAGAIN).
///
/// # Errors
/// Other OS errors (ECONNABORTED, EMFILE...).
pub fn accept(fd: RawFd) -> io::Result<Option<(OwnedFd, Inany, u16)>> {
    // SAFETY: zeroed storage is valid; len tells the kernel its size.
    let mut s: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: s is writable for len bytes.
    let r = unsafe {
        libc::accept4(fd, &mut s as *mut _ as *mut libc::sockaddr, &mut len, libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
    };
    let Some(r) = cvt_again(r as isize)? else { return Ok(None) };
    // SAFETY: fresh fd.
    let sock = unsafe { OwnedFd::from_raw_fd(r as RawFd) };
    let (a, p) = from_storage(&s).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
    Ok(Some((sock, a, p)))
}

/// SO_BINDTODEVICE to interface `ifname` (1-15 bytes).
///
/// # Errors
/// The OS error of setsockopt (ENODEV for an unknown interface).
pub fn bind_to_device(fd: RawFd, ifname: &str) -> io::Result<()> {
    let b = ifname.as_bytes();
    // SAFETY: b is readable for b.len() bytes.
    cvt(unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, b.as_ptr().cast(), b.len() as libc::socklen_t) })
        .map(drop)
}

/// A non-blocking, close-on-exec pipe of at least `size` bytes if the
/// system allows (F_SETPIPE_SZ; halved until accepted, down to the
/// default): (read end, write end, size in bytes).
///
/// # Errors
/// The OS error of pipe2(2).
pub fn pipe(size: usize) -> io::Result<(OwnedFd, OwnedFd, usize)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for two descriptors.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    // SAFETY: fresh fds.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut want = size;
    while want > 65536 {
        // SAFETY: plain fcntl on our pipe.
        let got = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, want as libc::c_int) };
        if got > 0 {
            return Ok((r, w, got as usize));
        }
        want /= 2;
    }
    // SAFETY: plain fcntl on our pipe.
    let got = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ) };
    Ok((r, w, got.max(4096) as usize))
}

/// splice(2) up to `len` bytes from `from` to `to`, non-blocking, one of
/// them a pipe. `Ok(None)` on EAGAIN, `Ok(Some(0))` at end of file.
///
/// # Errors
/// Other OS errors (ECONNRESET, EPIPE...).
pub fn splice(from: RawFd, to: RawFd, len: usize, more: bool) -> io::Result<Option<usize>> {
    let mut flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    if more {
        flags |= libc::SPLICE_F_MORE;
    }
    // SAFETY: plain syscall, null offsets (neither end is a file).
    cvt_again(unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, flags) })
}

/// Send each of `bufs` as one datagram on connected socket `fd`, with one
/// sendmmsg(2) (at most 64). Returns how many were sent.
///
/// # Errors
/// The OS error when not even the first could be sent (EAGAIN included).
pub fn send_batch(fd: RawFd, bufs: &[&[u8]]) -> io::Result<usize> {
    // SAFETY: zeroed iovec/mmsghdr arrays are valid.
    let mut iov: [libc::iovec; 64] = unsafe { zeroed() };
    let mut hdrs: [libc::mmsghdr; 64] = unsafe { zeroed() };
    let n = bufs.len().min(64);
    for i in 0..n {
        iov[i] = libc::iovec { iov_base: bufs[i].as_ptr() as *mut libc::c_void, iov_len: bufs[i].len() };
    }
    for i in 0..n {
        hdrs[i].msg_hdr.msg_iov = &mut iov[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: hdrs[..n] point at live buffers for the duration of the call.
    cvt_len(unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) } as isize)
}

/// The connected peer's address and port (getpeername(2)).
///
/// # Errors
/// The OS error (ENOTCONN), or `InvalidData` for a family that is not IP.
pub fn peer_addr(fd: RawFd) -> io::Result<(Inany, u16)> {
    sock_name(fd, libc::getpeername)
}

/// The cookie of the network namespace socket `fd` belongs to
/// (getsockopt SO_NETNS_COOKIE, Linux >= 5.14), as eBPF programs see it
/// with `bpf_get_netns_cookie()`.
///
/// # Errors
/// The OS error (ENOPROTOOPT on older kernels).
pub fn netns_cookie(fd: RawFd) -> io::Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let mut v: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: v is writable for len bytes.
    cvt(unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, SO_NETNS_COOKIE, (&mut v as *mut u64).cast(), &mut len) })?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn peek_into_fills_64_buffers_after_an_empty_one() {
        // An empty skip buffer first (SO_PEEK_OFF in use) must not cost one
        // of the 64 iovecs: sock_to_tap takes a short peek for a drained
        // socket, and would wait for an edge that never comes.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        use std::io::Write;
        (&a).write_all(&[7u8; 64 * 10 + 5]).unwrap();
        let mut none: [u8; 0] = [];
        let mut bufs = vec![[0u8; 10]; 65];
        let it = std::iter::once(&mut none[..]).chain(bufs.iter_mut().map(|x| &mut x[..]));
        assert_eq!(peek_into(b.as_raw_fd(), it).unwrap(), Some(640));
        assert!(bufs[..64].iter().all(|x| x == &[7u8; 10]));
        assert_eq!(bufs[64], [0u8; 10], "at most 64 iovecs");
    }

    #[test]
    fn recv_batch_dst_reports_each_datagrams_original_destination() {
        // A dual-stack socket: IPv4 datagrams come with IP_ORIGDSTADDR,
        // IPv6 ones with IPV6_ORIGDSTADDR.
        let s = socket(false, libc::SOCK_DGRAM, 0).unwrap();
        let fd = s.as_raw_fd();
        set_int_opt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0).unwrap();
        set_int_opt(fd, libc::SOL_IP, libc::IP_RECVORIGDSTADDR, 1).unwrap();
        set_int_opt(fd, libc::SOL_IPV6, libc::IPV6_RECVORIGDSTADDR, 1).unwrap();
        bind(fd, Inany::UNSPEC6, 0).unwrap();
        let port = local_addr(fd).unwrap().1;
        let c4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        c4.send_to(b"four", ("127.0.0.1", port)).unwrap();
        let c6 = std::net::UdpSocket::bind("[::1]:0").unwrap();
        c6.send_to(b"six", ("::1", port)).unwrap();
        let mut bufs = [[0u8; 64]; 2];
        let mut out = [Datagram { len: 0, truncated: false, from: None }; 64];
        let mut dst = [None; 64];
        let mut got = Vec::new();
        for _ in 0..100 {
            let n = recv_batch_dst(fd, bufs.iter_mut().map(|b| &mut b[..]), &mut out, &mut dst).unwrap();
            got.extend((0..n).map(|i| (bufs[i][..out[i].len].to_vec(), dst[i])));
            if got.len() == 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        got.sort();
        assert_eq!(got, vec![(b"four".to_vec(), Some((Inany::LOOPBACK4, port))), (b"six".to_vec(), Some((Inany::LOOPBACK6, port)))]);
        // Without the options there is no control message.
        let plain = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        plain.set_nonblocking(true).unwrap();
        c4.send_to(b"x", plain.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let n = recv_batch_dst(plain.as_raw_fd(), bufs.iter_mut().map(|b| &mut b[..]), &mut out, &mut dst).unwrap();
        assert_eq!((n, dst[0]), (1, None));
    }

    #[test]
    fn udp_loopback_round_trip_through_batch_receive() {
        let a = socket(true, libc::SOCK_DGRAM, 0).unwrap();
        bind(a.as_raw_fd(), Inany::LOOPBACK4, 0).unwrap();
        let (_, pa) = local_addr(a.as_raw_fd()).unwrap();
        let b = socket(true, libc::SOCK_DGRAM, 0).unwrap();
        connect(b.as_raw_fd(), Inany::LOOPBACK4, pa).unwrap();
        let (_, pb) = local_addr(b.as_raw_fd()).unwrap();
        send(b.as_raw_fd(), b"one", None).unwrap();
        send(b.as_raw_fd(), b"two!", None).unwrap();
        let mut x = [0u8; 16];
        let mut y = [0u8; 2];
        let mut out = [Datagram { len: 0, truncated: false, from: None }; 64];
        let bufs: [&mut [u8]; 2] = [&mut x, &mut y];
        let n = recv_batch(a.as_raw_fd(), bufs.into_iter(), &mut out).unwrap();
        assert_eq!(n, 2);
        assert_eq!(&x[..out[0].len], b"one");
        assert!(out[1].truncated && out[1].len == 2);
        assert_eq!(out[0].from, Some((Inany::LOOPBACK4, pb)));
    }
}
