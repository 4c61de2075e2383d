//! # Theory of operation
//!
//! pasta's tap back-end: a /dev/net/tun file descriptor in IFF_TAP |
//! IFF_NO_PI mode, opened while the calling thread is in the target network
//! namespace, so that the interface appears there (tuntap(4), Linux
//! Documentation/networking/tuntap.rst). One read(2) returns one frame and
//! one write(2) sends one frame. The fd is non-blocking: a full transmit
//! queue in the namespace (EAGAIN) drops the frame, as a real link would.
//!
//! Offloads: the device is opened with IFF_VNET_HDR, a 12-byte virtio-net
//! header in front of every frame both ways ([`super::offload`];
//! TUNSETVNETHDRSZ 12, TUNSETVNETLE), and TUNSETOFFLOAD enables, in the
//! namespace's view of the interface, transmit checksum offload and TSO
//! for IPv4 and IPv6 (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6), plus UDP
//! segmentation offload (TUN_F_USO4 | TUN_F_USO6) where the kernel has it
//! (6.2 on). The kernel of the namespace then hands us TCP and UDP
//! super-frames of up to 64 KiB with partial checksums, and takes the same
//! from us (writing GSO frames needs no feature flag). If the kernel
//! refuses USO, TSO alone is used; if it refuses everything, or the
//! environment variable `PASST_RS_NO_OFFLOAD` is set (a passt-rs extension
//! for A/B measurements; upstream has no such option), the device is
//! opened without IFF_VNET_HDR, exactly as before. All ioctls happen at
//! start-up, before the sandbox.
//!
//! With `--threads N`, the device is made with IFF_MULTI_QUEUE and opened
//! N times at start-up: one queue fd per worker ([`crate::threads`]).
//!
//! Syscalls: openat, ioctl(TUNSETIFF, TUNSETVNETHDRSZ, TUNSETVNETLE,
//! TUNSETOFFLOAD: start-up only), read, write, writev, close.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::offload::VNET_HDR_LEN;
use super::{Offload, OffloadCaps, PollFd, RxBatch, Tap, TapError, TapEvent, TxBatch, TxResult, BATCH, MAX_FRAME};

/// A tap device.
#[derive(Debug)]
pub struct TunTap {
    fd: OwnedFd,
    name: String,
    /// TUN_F_* flags the kernel accepted; 0 without IFF_VNET_HDR.
    offload_flags: u32,
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// _IOW('T', 208, unsigned int).
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
/// _IOW('T', 216, int).
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
/// _IOW('T', 220, int).
const TUNSETVNETLE: libc::c_ulong = 0x4004_54dc;
/// IFF_VNET_HDR (include/uapi/linux/if_tun.h).
const IFF_VNET_HDR: libc::c_int = 0x4000;
/// IFF_MULTI_QUEUE (include/uapi/linux/if_tun.h).
const IFF_MULTI_QUEUE: libc::c_int = 0x0100;

/// Checksum offload (include/uapi/linux/if_tun.h).
pub const TUN_F_CSUM: u32 = 0x01;
/// TCP segmentation offload, IPv4.
pub const TUN_F_TSO4: u32 = 0x02;
/// TCP segmentation offload, IPv6.
pub const TUN_F_TSO6: u32 = 0x04;
/// UDP segmentation offload, IPv4 (Linux 6.2).
pub const TUN_F_USO4: u32 = 0x20;
/// UDP segmentation offload, IPv6 (Linux 6.2).
pub const TUN_F_USO6: u32 = 0x40;

/// Environment variable that turns tap offloads off (passt-rs extension).
pub const NO_OFFLOAD_ENV: &str = "PASST_RS_NO_OFFLOAD";

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
        Self::open_opts(name, std::env::var_os(NO_OFFLOAD_ENV).is_none(), false)
    }

    /// [`TunTap::open`], with offloads (`offload`: IFF_VNET_HDR and as many
    /// TUN_F_* flags as the kernel takes) or without, and with
    /// IFF_MULTI_QUEUE if `multi_queue` (more queues: [`TunTap::open_queue`]).
    ///
    /// # Errors
    /// As [`TunTap::open`]; failing offload ioctls are not errors (the
    /// device is opened again without IFF_VNET_HDR).
    pub fn open_opts(name: &str, offload: bool, multi_queue: bool) -> io::Result<Self> {
        if offload {
            match Self::open_flags(name, true, multi_queue) {
                Ok(t) if t.offload_flags != 0 => return Ok(t),
                Ok(t) => drop(t),
                Err(e) => log::debug!("tap: no virtio-net header ({e}), no offloads"),
            }
        }
        Self::open_flags(name, false, multi_queue)
    }

    /// One more queue of this multi-queue device (tuntap.rst, "Multiqueue
    /// tuntap interface"), with the same virtio-net header and offloads:
    /// TUNSETIFF refuses a queue whose flags differ from the device's.
    ///
    /// # Errors
    /// The OS error of open(/dev/net/tun) or TUNSETIFF (EINVAL if the
    /// device was not made with IFF_MULTI_QUEUE).
    pub fn open_queue(&self) -> io::Result<Self> {
        Self::open_flags(&self.name, self.offload_flags != 0, true)
    }

    fn open_flags(name: &str, vnet: bool, multi_queue: bool) -> io::Result<Self> {
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
        let flags = libc::IFF_TAP
            | libc::IFF_NO_PI
            | if vnet { IFF_VNET_HDR } else { 0 }
            | if multi_queue { IFF_MULTI_QUEUE } else { 0 };
        let mut req = IfReq { name: [0; libc::IFNAMSIZ], flags: flags as libc::c_short, _pad: [0; 22] };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: req is a valid struct ifreq layout for TUNSETIFF.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let len = req.name.iter().position(|&b| b == 0).unwrap_or(libc::IFNAMSIZ);
        let name = String::from_utf8_lossy(&req.name[..len]).into_owned();
        let offload_flags = if vnet { negotiate(fd.as_raw_fd())? } else { 0 };
        Ok(TunTap { fd, name, offload_flags })
    }

    /// TUN_F_* flags in use; 0 without offloads.
    pub fn offload_flags(&self) -> u32 {
        self.offload_flags
    }

    /// The interface name the kernel gave us.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Set the 12-byte little-endian header, then the largest set of offloads
/// the kernel takes: everything, then without USO, then checksums only.
/// Returns the flags set (0: none taken).
fn negotiate(fd: libc::c_int) -> io::Result<u32> {
    let sz: libc::c_int = VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads an int.
    if unsafe { libc::ioctl(fd, TUNSETVNETHDRSZ, &sz) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let le: libc::c_int = 1;
    // SAFETY: TUNSETVNETLE reads an int. Little-endian is the default on
    // little-endian hosts anyway; failure only matters on big-endian ones.
    if unsafe { libc::ioctl(fd, TUNSETVNETLE, &le) } < 0 && cfg!(target_endian = "big") {
        return Err(io::Error::last_os_error());
    }
    let tso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
    for flags in [tso | TUN_F_USO4 | TUN_F_USO6, tso, TUN_F_CSUM] {
        // SAFETY: TUNSETOFFLOAD takes the flags as the argument itself.
        if unsafe { libc::ioctl(fd, TUNSETOFFLOAD, flags as libc::c_ulong) } == 0 {
            log::debug!("tap: offloads 0x{flags:02x} (CSUM 1, TSO4 2, TSO6 4, USO4 0x20, USO6 0x40)");
            return Ok(flags);
        }
    }
    Ok(0)
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
        rx.meta.clear();
        let hl = if self.offload_flags != 0 { VNET_HDR_LEN } else { 0 };
        let mut off = 0;
        while rx.frames.len() < BATCH && rx.buf.len() - off >= hl + MAX_FRAME {
            let dst = &mut rx.buf[off..off + hl + MAX_FRAME];
            // SAFETY: dst is valid for its length.
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
            if hl > 0 {
                // A frame without a whole header cannot come from the
                // kernel: skipped.
                let Some(h) = rx.buf.get(off..off + hl).filter(|_| n >= hl) else { continue };
                rx.meta.push(Offload::decode(h).unwrap_or_default());
            }
            rx.frames.push(off + hl..off + n);
            off += n;
        }
        Ok(rx.frames.len())
    }

    fn send_batch(&mut self, tx: &TxBatch) -> Result<TxResult, TapError> {
        let mut r = TxResult::default();
        let vnet = self.offload_flags != 0;
        for (f, m) in tx.frames_offload() {
            let mut h = [0u8; VNET_HDR_LEN];
            m.encode(&mut h);
            let iov = [
                libc::iovec { iov_base: h.as_mut_ptr().cast(), iov_len: h.len() },
                libc::iovec { iov_base: f.as_ptr().cast_mut().cast(), iov_len: f.len() },
            ];
            loop {
                let n = if vnet {
                    // SAFETY: both iovecs point to live buffers of their
                    // length; the kernel only reads them.
                    unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) }
                } else {
                    // SAFETY: f is a valid slice.
                    unsafe { libc::write(self.fd.as_raw_fd(), f.as_ptr().cast(), f.len()) }
                };
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

    fn offloads(&self) -> OffloadCaps {
        let tso = TUN_F_TSO4 | TUN_F_TSO6;
        // Writing needs no TUN_F_* flag, only the header; the flags the
        // namespace accepted tell that its kernel knows them.
        let uso = TUN_F_USO4 | TUN_F_USO6;
        OffloadCaps {
            csum: self.offload_flags & TUN_F_CSUM != 0,
            tso: self.offload_flags & tso == tso,
            uso: self.offload_flags & uso == uso,
        }
    }
}
