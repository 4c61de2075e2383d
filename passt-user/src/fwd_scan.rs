//! # Theory of operation
//!
//! The listening-socket scan behind `auto` port forwarding (passt(1), `-t`:
//! "auto ... forward ports that are bound in the namespace"; DESIGN.md §7).
//! About once a second pasta looks at which TCP ports are listening and which
//! UDP ports are bound on the *other* side, and the caller binds or closes its
//! own listeners to follow. This module only answers "which ports": it never
//! binds anything.
//!
//! ## Source: `/proc/net/{tcp,tcp6,udp,udp6}`
//!
//! Each file is a table printed by the kernel (proc(5), "/proc/net/tcp"), one
//! socket per line after a header line:
//!
//! ```text
//!   sl  local_address rem_address   st tx_queue rx_queue ...
//!    0: 0100007F:8845 00000000:0000 0A 00000000:00000000 ...
//! ```
//!
//! Only the first four columns are read: `sl` (decimal slot, then `:`),
//! `local_address` and `rem_address` (`ADDR:PORT`, ADDR 8 hex digits for
//! IPv4 or 32 for IPv6, as the kernel's in-memory words; PORT 4 hex digits,
//! the port number as a plain value, most significant digit first), and `st`
//! (2 hex digits, the kernel's `TCP_*` state numbers of
//! `include/net/tcp_states.h`). A TCP socket counts if its state is
//! `0A` (`TCP_LISTEN`); a UDP socket counts if its state is `07`
//! (`TCP_CLOSE`), which is how an unconnected, bound UDP socket is shown (a
//! connected one shows `01`, `TCP_ESTABLISHED`; an unbound one is not in the
//! table at all). This is the same rule as upstream's scan. The addresses are
//! validated but not used: a socket bound to a single address (loopback,
//! IPv4-mapped) counts like a wildcard one.
//!
//! The header line is recognised by its first column `sl`; any other line
//! that does not have the four columns in this shape is counted as malformed
//! and skipped. Nothing in this text can make the parser panic.
//!
//! ## Network namespaces
//!
//! A `/proc/net` file shows the network namespace it was *opened* in, for as
//! long as it stays open, whichever thread reads it later. [`ProcNet::open`]
//! opens the files under `/proc/thread-self/net`, the calling thread's own
//! namespace; `/proc/net` would not do, as it is `/proc/self/net`, the
//! namespace of the process's *main* thread. So pasta opens one [`ProcNet`]
//! from a thread that has joined the target namespace, hands it back, and
//! scans it from the main thread for the rest of its life.
//!
//! ## Reading
//!
//! Each [`ProcNet::scan`] rereads every file from offset 0 with `pread`, in
//! pieces into one buffer of [`READ_BUF_BYTES`] owned by the [`ProcNet`]: only
//! complete lines are parsed, and the incomplete tail of a piece is moved to
//! the front of the buffer before the next read, so a scan allocates nothing
//! whatever the number of sockets. (The kernel hands out at most about one
//! page per read call.) At most [`MAX_FILE_BYTES`] are read from one file per
//! scan; the rest is ignored and counted in [`ScanStats::truncated_files`].
//! The kernel builds the text while we read it, so a socket opened or closed
//! during the scan may be missed or seen twice; the next scan catches up.
//!
//! Cost: the kernel formats every socket of the table, listening or not, and
//! this is most of the time spent; the parse here looks at bytes only (no
//! strings, no allocation), and stops reading a line after its `st` column.
//! Worse, for `tcp` and `tcp6` the kernel walks the whole established-socket
//! hash table, which all namespaces share and which is sized by the host's
//! memory: about 5 ms per file with the 262144 buckets of a 24 GiB host, even
//! in an empty namespace. Hence the next section.
//!
//! ## TCP through sock_diag
//!
//! [`ProcNet::open`] also opens a NETLINK_SOCK_DIAG socket (sock_diag(7)) in
//! the same namespace and, if a first dump works, takes the two TCP sets from
//! it instead of from `tcp` and `tcp6`: one `SOCK_DIAG_BY_FAMILY` dump
//! request per IP version, `struct inet_diag_req_v2` with protocol TCP and
//! the state mask `1 << TCP_LISTEN`. With only LISTEN asked for, the kernel
//! walks its listening hash and skips the established one, so a dump costs
//! tens of microseconds instead of milliseconds. Each reply message is a
//! `struct inet_diag_msg` (linux/inet_diag.h): family (byte 0), state (byte
//! 1), then `inet_diag_sockid` whose first field is the local port in
//! network byte order (bytes 4-5); attributes after it are ignored. The dump
//! ends with NLMSG_DONE; NLMSG_ERROR, a truncated or malformed datagram, a
//! failed send or receive (receives time out after one second) end it with an
//! error. After an error the socket is dropped for good and that scan and all
//! later ones read `tcp` and `tcp6` instead ([`ScanStats::diag_errors`]).
//! UDP stays on `/proc/net`: its walk is far cheaper (on the host above,
//! about 20 µs empty and 150 µs with 100 sockets, the kernel rewalking its
//! 16384 UDP buckets on each read call), and a udp_diag dump measured only
//! about 20 % faster.
//! The same request (`inet_diag_request`) serves exact lookups of one
//! socket's receive queues ([`tcp_diag_queues`], for the eBPF
//! short-circuit).
//!
//! ## Using the result
//!
//! [`Listening`] holds one [`PortSet`] per file. Ports the caller listens on
//! itself must be taken out before acting on a scan ([`Listening::remove`],
//! [`Listening::remove_ports`]), or `-t auto` and `-T auto` would keep
//! bouncing each other's listeners. [`changes`] turns two successive scans
//! into the ports to start and stop forwarding, word by word.

use std::fs::File;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use netlink_packet_core::{
    NetlinkBuffer, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

use crate::fwd_rule::{udp_scan_ports, PortSet};

/// Bytes of the read buffer a [`ProcNet`] owns; one line of `/proc/net/tcp6`
/// is about 150 bytes, and the kernel returns at most about a page per read.
pub const READ_BUF_BYTES: usize = 32 * 1024;

/// Most bytes read from one `/proc/net` file in one scan (64 MiB, roughly
/// 400 000 sockets); anything after is ignored.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// `TCP_LISTEN` of the kernel's `include/net/tcp_states.h`: the `st` of a
/// listening TCP socket.
const ST_TCP_LISTEN: u8 = 0x0a;

/// `TCP_CLOSE` of the kernel's `include/net/tcp_states.h`: the `st` of an
/// unconnected (bound) UDP socket.
const ST_UDP_UNCONNECTED: u8 = 0x07;

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h): the sock_diag request and
/// reply message type.
const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// Bytes of `struct nlmsghdr`.
const NLMSG_HDR_LEN: usize = 16;

/// Bytes of `struct inet_diag_req_v2` (linux/inet_diag.h).
const INET_DIAG_REQ_V2_LEN: usize = 56;

/// Bytes of a whole dump request: header and `inet_diag_req_v2`.
const DIAG_REQ_LEN: usize = NLMSG_HDR_LEN + INET_DIAG_REQ_V2_LEN;

/// Bytes of `struct inet_diag_msg` (linux/inet_diag.h), before attributes.
const INET_DIAG_MSG_LEN: usize = 72;

/// Most reply datagrams read for one dump (each at most [`READ_BUF_BYTES`]),
/// to bound a dump as [`MAX_FILE_BYTES`] bounds a file.
const MAX_DIAG_DATAGRAMS: usize = (MAX_FILE_BYTES / READ_BUF_BYTES as u64) as usize;

/// Errors of [`ProcNet::open`] and [`ProcNet::open_dir`].
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// One of the files exists but could not be opened.
    #[error("opening {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What open() said.
        #[source]
        source: io::Error,
    },
    /// None of `tcp`, `tcp6`, `udp`, `udp6` exists in the directory (procfs
    /// not mounted?).
    #[error("none of tcp, tcp6, udp, udp6 found in {dir}")]
    NoTables {
        /// The directory looked in.
        dir: PathBuf,
    },
}

/// Ports with a listening or bound socket, one set per `/proc/net` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listening {
    /// TCP ports in state LISTEN in `/proc/net/tcp`.
    pub tcp4: PortSet,
    /// TCP ports in state LISTEN in `/proc/net/tcp6` (including sockets
    /// bound to IPv4-mapped addresses, and dual-stack ones).
    pub tcp6: PortSet,
    /// Bound, unconnected UDP ports in `/proc/net/udp`.
    pub udp4: PortSet,
    /// Bound, unconnected UDP ports in `/proc/net/udp6`.
    pub udp6: PortSet,
}

impl Listening {
    /// Four empty sets.
    pub fn new() -> Self {
        Self::default()
    }

    /// Empty all four sets, keeping their allocations.
    pub fn clear(&mut self) {
        self.tcp4.clear();
        self.tcp6.clear();
        self.udp4.clear();
        self.udp6.clear();
    }

    /// Take the ports of `other` out, table by table (`tcp4` minus
    /// `other.tcp4`, and so on).
    pub fn remove(&mut self, other: &Listening) {
        self.tcp4.difference_with(&other.tcp4);
        self.tcp6.difference_with(&other.tcp6);
        self.udp4.difference_with(&other.udp4);
        self.udp6.difference_with(&other.udp6);
    }

    /// Take `ports` out of all four sets, whatever the protocol and IP
    /// version (as upstream excludes the ports it listens on itself).
    pub fn remove_ports(&mut self, ports: &PortSet) {
        self.tcp4.difference_with(ports);
        self.tcp6.difference_with(ports);
        self.udp4.difference_with(ports);
        self.udp6.difference_with(ports);
    }

    /// TCP ports listening on IPv4 or IPv6: what an `auto` TCP rule forwards
    /// (upstream merges both tables).
    pub fn tcp_ports(&self) -> PortSet {
        let mut out = self.tcp4.clone();
        out.union_with(&self.tcp6);
        out
    }

    /// Ports an `auto` UDP rule forwards: bound UDP ports of either IP
    /// version plus listening TCP ports (see
    /// [`crate::fwd_rule::udp_scan_ports`]).
    pub fn udp_ports(&self) -> PortSet {
        udp_scan_ports(&self.udp4, &self.udp6, &self.tcp4, &self.tcp6)
    }
}

/// Problems met by [`ProcNet::scan`], cumulative since [`ProcNet::open`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Lines skipped as malformed (never seen from a real kernel).
    pub malformed_lines: u64,
    /// Reads that failed (the rest of that file was skipped for that scan).
    pub read_errors: u64,
    /// Files cut at [`MAX_FILE_BYTES`] in one scan.
    pub truncated_files: u64,
    /// sock_diag dumps that failed (at most one: the socket is then dropped
    /// and TCP read from `/proc/net`).
    pub diag_errors: u64,
}

/// What [`parse_proc_net`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineCounts {
    /// Lines with a well-formed socket entry, in any state.
    pub sockets: usize,
    /// Of those, entries in the state looked for (listening TCP, bound UDP).
    pub matched: usize,
    /// Lines neither a socket entry nor the header.
    pub malformed: usize,
}

/// The four `/proc/net` tables of one network namespace, kept open, the
/// buffer to read them, and, if [`ProcNet::open`] could use one, a
/// sock_diag socket of the same namespace for TCP.
#[derive(Debug)]
pub struct ProcNet {
    /// `tcp`, `None` if absent.
    tcp4: Option<File>,
    /// `tcp6`, `None` if absent (IPv6 disabled).
    tcp6: Option<File>,
    /// `udp`, `None` if absent.
    udp4: Option<File>,
    /// `udp6`, `None` if absent (IPv6 disabled).
    udp6: Option<File>,
    /// Listening TCP sockets through sock_diag, if it works.
    diag: Option<SockDiag>,
    /// Read buffer for files and netlink datagrams, [`READ_BUF_BYTES`].
    buf: Box<[u8]>,
    /// Cumulative problems.
    stats: ScanStats,
}

impl ProcNet {
    /// Open `/proc/thread-self/net/{tcp,tcp6,udp,udp6}`: the tables of the
    /// calling thread's network namespace, which the files keep showing
    /// from any thread (see the module documentation). A missing file (IPv6
    /// disabled) is left out of every scan. Also open a NETLINK_SOCK_DIAG
    /// socket in the same namespace and try one dump: if that works, TCP
    /// comes from sock_diag ([`ProcNet::uses_sock_diag`]); if not, from the
    /// files, silently (a debug message).
    ///
    /// # Errors
    /// [`ScanError::Open`] if a file exists but cannot be opened;
    /// [`ScanError::NoTables`] if none of the four exists.
    ///
    /// Syscalls: openat, socket, bind, getsockname, connect, setsockopt,
    /// sendto, recvfrom.
    pub fn open() -> Result<Self, ScanError> {
        let mut net = Self::open_dir(Path::new("/proc/thread-self/net"))?;
        let probe = SockDiag::open()
            .map_err(DiagError::Io)
            .and_then(|mut diag| {
                diag.dump_listening(libc::AF_INET as u8, &mut net.buf, &mut PortSet::new())?;
                Ok(diag)
            });
        match probe {
            Ok(diag) => net.diag = Some(diag),
            Err(e) => log::debug!("sock_diag unusable, scanning /proc/net/tcp{{,6}}: {e}"),
        }
        Ok(net)
    }

    /// Open `tcp`, `tcp6`, `udp` and `udp6` in `dir`, as [`ProcNet::open`]
    /// does in `/proc/thread-self/net`. Any file in the same format will do
    /// (tests use saved copies).
    ///
    /// # Errors
    /// As [`ProcNet::open`].
    ///
    /// Syscalls: openat.
    pub fn open_dir(dir: &Path) -> Result<Self, ScanError> {
        let open = |name: &str| -> Result<Option<File>, ScanError> {
            let path = dir.join(name);
            match File::open(&path) {
                Ok(f) => Ok(Some(f)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(ScanError::Open { path, source }),
            }
        };
        let net = ProcNet {
            tcp4: open("tcp")?,
            tcp6: open("tcp6")?,
            udp4: open("udp")?,
            udp6: open("udp6")?,
            diag: None,
            buf: vec![0; READ_BUF_BYTES].into_boxed_slice(),
            stats: ScanStats::default(),
        };
        if net.tcp4.is_none() && net.tcp6.is_none() && net.udp4.is_none() && net.udp6.is_none() {
            return Err(ScanError::NoTables {
                dir: dir.to_path_buf(),
            });
        }
        Ok(net)
    }

    /// Read all four tables once: listening TCP ports and bound UDP ports.
    /// Allocates the four result sets; [`ProcNet::scan_into`] reuses them.
    ///
    /// Problems (read errors, malformed lines, oversized files, a failed
    /// sock_diag dump) do not stop the scan; they are counted in
    /// [`ProcNet::stats`].
    ///
    /// Syscalls: pread64; sendto, recvfrom with sock_diag.
    pub fn scan(&mut self) -> Listening {
        let mut out = Listening::new();
        self.scan_into(&mut out);
        out
    }

    /// As [`ProcNet::scan`], into `out` (emptied first); allocates nothing.
    ///
    /// Syscalls: pread64; sendto, recvfrom with sock_diag.
    pub fn scan_into(&mut self, out: &mut Listening) {
        out.clear();
        let ProcNet {
            tcp4,
            tcp6,
            udp4,
            udp6,
            diag,
            buf,
            stats,
        } = self;
        let tcp = [
            (libc::AF_INET as u8, &*tcp4, &mut out.tcp4),
            (libc::AF_INET6 as u8, &*tcp6, &mut out.tcp6),
        ];
        for (family, file, set) in tcp {
            scan_tcp(diag, family, file.as_ref(), buf, set, stats);
        }
        for (file, set) in [(&*udp4, &mut out.udp4), (&*udp6, &mut out.udp6)] {
            if let Some(file) = file {
                scan_file(file, buf, false, set, stats);
            }
        }
    }

    /// Whether TCP comes from sock_diag (true) or from `/proc/net/tcp` and
    /// `tcp6` (false: [`ProcNet::open_dir`], or sock_diag unusable or failed).
    pub fn uses_sock_diag(&self) -> bool {
        self.diag.is_some()
    }

    /// Problems met by all scans so far.
    pub fn stats(&self) -> ScanStats {
        self.stats
    }
}

/// Listening TCP sockets of `family` (AF_INET or AF_INET6) into `out`: from
/// sock_diag if `diag` is there, else from `file`. A failed dump drops
/// `diag` for good and reads `file` instead.
fn scan_tcp(
    diag: &mut Option<SockDiag>,
    family: u8,
    file: Option<&File>,
    buf: &mut [u8],
    out: &mut PortSet,
    stats: &mut ScanStats,
) {
    if let Some(d) = diag {
        match d.dump_listening(family, buf, out) {
            Ok(()) => return,
            Err(e) => {
                log::warn!("sock_diag dump failed, scanning /proc/net/tcp{{,6}} from now on: {e}");
                stats.diag_errors += 1;
                *diag = None;
                out.clear();
            }
        }
    }
    if let Some(file) = file {
        scan_file(file, buf, true, out, stats);
    }
}

/// Why a sock_diag dump failed.
#[derive(Debug, thiserror::Error)]
enum DiagError {
    /// socket(), send() or recv() failed (recv() times out after 1 s).
    #[error("{0}")]
    Io(#[source] io::Error),
    /// The kernel answered with this errno (NLMSG_ERROR or a negative
    /// NLMSG_DONE status).
    #[error("kernel error {0}")]
    Kernel(i32),
    /// Bad framing, a short message, a truncated datagram or NLMSG_OVERRUN.
    #[error("malformed reply")]
    Malformed,
    /// More than [`MAX_DIAG_DATAGRAMS`] datagrams without NLMSG_DONE.
    #[error("dump longer than {MAX_DIAG_DATAGRAMS} datagrams")]
    TooLong,
}

/// Where a dump stands after one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DiagProgress {
    /// More datagrams follow.
    More,
    /// NLMSG_DONE seen.
    Done,
}

/// A NETLINK_SOCK_DIAG socket (sock_diag(7)), connected to the kernel, in
/// the network namespace it was opened in.
#[derive(Debug)]
struct SockDiag {
    /// The socket.
    sock: Socket,
    /// Sequence number of the last request.
    seq: u32,
}

impl SockDiag {
    /// Open, bind and connect the socket; receives time out after 1 s.
    ///
    /// Syscalls: socket, bind, getsockname, connect, setsockopt.
    fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_SOCK_DIAG)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        let timeout = nix::sys::time::TimeVal::new(1, 0);
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)
            .map_err(io::Error::from)?;
        Ok(SockDiag { sock, seq: 0 })
    }

    /// Dump the listening TCP sockets of `family` (AF_INET or AF_INET6) and
    /// add their local ports to `out`, receiving into `buf`.
    ///
    /// Syscalls: sendto, recvfrom.
    fn dump_listening(
        &mut self,
        family: u8,
        buf: &mut [u8],
        out: &mut PortSet,
    ) -> Result<(), DiagError> {
        self.seq = self.seq.wrapping_add(1);
        let req = diag_request(family, self.seq);
        let sent = loop {
            match self.sock.send(&req, 0) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r.map_err(DiagError::Io)?,
            }
        };
        if sent != req.len() {
            return Err(DiagError::Malformed);
        }
        for _ in 0..MAX_DIAG_DATAGRAMS {
            let n = loop {
                let mut dst = &mut buf[..];
                match self.sock.recv(&mut dst, libc::MSG_TRUNC) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r.map_err(DiagError::Io)?,
                }
            };
            let dgram = buf.get(..n).ok_or(DiagError::Malformed)?;
            if parse_diag_datagram(dgram, self.seq, family, out)? == DiagProgress::Done {
                return Ok(());
            }
        }
        Err(DiagError::TooLong)
    }
}

/// A `SOCK_DIAG_BY_FAMILY` dump request (sock_diag(7)) for the listening
/// TCP sockets of `family` ([`inet_diag_request`]: NLM_F_REQUEST |
/// NLM_F_DUMP, no extensions, states `1 << TCP_LISTEN`, no socket id).
fn diag_request(family: u8, seq: u32) -> [u8; DIAG_REQ_LEN] {
    inet_diag_request(NLM_F_REQUEST | NLM_F_DUMP, family, 0, 1u32 << ST_TCP_LISTEN, None, seq)
}

/// Socket id of an exact `inet_diag` lookup: ports in host byte order,
/// addresses as the kernel stores them (network byte order words, an IPv4
/// address in word 0).
#[derive(Debug, Clone, Copy)]
pub struct DiagSockId {
    /// Local port.
    pub sport: u16,
    /// Remote port.
    pub dport: u16,
    /// Local address.
    pub src: [u32; 4],
    /// Remote address.
    pub dst: [u32; 4],
}

/// A `SOCK_DIAG_BY_FAMILY` request for TCP sockets of `family`: `nlmsghdr`
/// (host byte order, `flags`, sequence `seq`, port id 0) and
/// `inet_diag_req_v2` with extensions bitmap `ext`, states bitmap `states`
/// and, for an exact lookup, socket `id` (cookie INET_DIAG_NOCOOKIE: not
/// checked); a dump has an all-zero id.
fn inet_diag_request(flags: u16, family: u8, ext: u8, states: u32, id: Option<DiagSockId>, seq: u32) -> [u8; DIAG_REQ_LEN] {
    let mut req = [0u8; DIAG_REQ_LEN];
    let (hdr, body) = req.split_at_mut(NLMSG_HDR_LEN);
    hdr[0..4].copy_from_slice(&(DIAG_REQ_LEN as u32).to_ne_bytes());
    hdr[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    hdr[6..8].copy_from_slice(&flags.to_ne_bytes());
    hdr[8..12].copy_from_slice(&seq.to_ne_bytes());
    body[0] = family;
    body[1] = libc::IPPROTO_TCP as u8;
    body[2] = ext;
    body[4..8].copy_from_slice(&states.to_ne_bytes());
    if let Some(id) = id {
        // inet_diag_sockid at 8: sport, dport (big endian), src[4], dst[4],
        // interface, cookie[2].
        body[8..10].copy_from_slice(&id.sport.to_be_bytes());
        body[10..12].copy_from_slice(&id.dport.to_be_bytes());
        for (i, (s, d)) in id.src.iter().zip(&id.dst).enumerate() {
            body[12 + 4 * i..16 + 4 * i].copy_from_slice(&s.to_ne_bytes());
            body[28 + 4 * i..32 + 4 * i].copy_from_slice(&d.to_ne_bytes());
        }
        body[48..56].copy_from_slice(&[0xff; 8]);
    }
    req
}

/// Add the listening ports of one reply datagram of dump `seq` for `family`
/// to `out`. Messages of other dumps (other sequence numbers) are skipped.
fn parse_diag_datagram(
    dgram: &[u8],
    seq: u32,
    family: u8,
    out: &mut PortSet,
) -> Result<DiagProgress, DiagError> {
    let mut rest = dgram;
    while !rest.is_empty() {
        // new_checked(): header length <= message length <= rest.len().
        let nl = NetlinkBuffer::new_checked(rest).map_err(|_| DiagError::Malformed)?;
        let len = usize::try_from(nl.length()).map_err(|_| DiagError::Malformed)?;
        let payload = nl.payload();
        let (msg_type, msg_seq) = (nl.message_type(), nl.sequence_number());
        rest = rest
            .get(len.div_ceil(4).saturating_mul(4)..)
            .unwrap_or_default();
        if msg_seq != seq {
            continue;
        }
        match msg_type {
            NLMSG_NOOP => {}
            NLMSG_DONE => {
                // Kernels always send the status; a missing one counts as 0.
                return match status_code(payload).unwrap_or(0) {
                    code if code < 0 => Err(DiagError::Kernel(code.saturating_neg())),
                    _ => Ok(DiagProgress::Done),
                };
            }
            NLMSG_ERROR => {
                return match status_code(payload).ok_or(DiagError::Malformed)? {
                    0 => Ok(DiagProgress::Done),
                    code => Err(DiagError::Kernel(code.saturating_abs())),
                };
            }
            NLMSG_OVERRUN => return Err(DiagError::Malformed),
            SOCK_DIAG_BY_FAMILY => {
                let msg: &[u8; INET_DIAG_MSG_LEN] = payload
                    .get(..INET_DIAG_MSG_LEN)
                    .and_then(|m| m.try_into().ok())
                    .ok_or(DiagError::Malformed)?;
                if msg[0] == family && msg[1] == ST_TCP_LISTEN {
                    out.insert(u16::from_be_bytes([msg[4], msg[5]]));
                }
            }
            _ => {}
        }
    }
    Ok(DiagProgress::More)
}

/// The `int` status at the start of an NLMSG_ERROR or NLMSG_DONE payload.
fn status_code(payload: &[u8]) -> Option<i32> {
    let bytes: [u8; 4] = payload.get(..4)?.try_into().ok()?;
    Some(i32::from_ne_bytes(bytes))
}

/// Read `file` from offset 0 to its end (at most [`MAX_FILE_BYTES`]) in
/// pieces through `buf`, adding matching ports to `out`.
fn scan_file(file: &File, buf: &mut [u8], tcp: bool, out: &mut PortSet, stats: &mut ScanStats) {
    let mut counts = LineCounts::default();
    let mut offset: u64 = 0;
    // buf[..kept]: the start of a line whose end is not read yet.
    let mut kept = 0usize;
    // Discarding a line longer than the buffer, up to its newline.
    let mut overlong = false;
    loop {
        if kept >= buf.len() {
            counts.malformed += 1;
            kept = 0;
            overlong = true;
        }
        let left = MAX_FILE_BYTES.saturating_sub(offset);
        if left == 0 {
            // At the limit: one more byte tells a cut file from one that
            // ended exactly here. The partial line is dropped either way.
            let mut probe = [0u8; 1];
            loop {
                match file.read_at(&mut probe, offset) {
                    Ok(0) => break,
                    Ok(_) => {
                        stats.truncated_files += 1;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        stats.read_errors += 1;
                        break;
                    }
                }
            }
            stats.malformed_lines += counts.malformed as u64;
            return;
        }
        let room = buf.len().saturating_sub(kept);
        let want = room.min(usize::try_from(left).unwrap_or(usize::MAX));
        let Some(dst) = buf.get_mut(kept..kept.saturating_add(want)) else {
            break;
        };
        let n = match file.read_at(dst, offset) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                stats.read_errors += 1;
                stats.malformed_lines += counts.malformed as u64;
                return;
            }
        };
        offset = offset.saturating_add(n as u64);
        let end = kept.saturating_add(n).min(buf.len());
        let data = buf.get(..end).unwrap_or_default();
        let mut start = 0;
        if overlong {
            match data.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    start = nl + 1;
                    overlong = false;
                }
                None => {
                    kept = 0;
                    continue;
                }
            }
        }
        let rest = data.get(start..).unwrap_or_default();
        start += parse_complete_lines(rest, tcp, out, &mut counts);
        buf.copy_within(start.min(end)..end, 0);
        kept = end.saturating_sub(start);
    }
    if kept > 0 && !overlong {
        // A last line without its newline.
        parse_one(buf.get(..kept).unwrap_or_default(), tcp, out, &mut counts);
    }
    stats.malformed_lines += counts.malformed as u64;
}

/// Parse the text of one `/proc/net/{tcp,tcp6,udp,udp6}` table, header line
/// included, adding to `out` the local port of every listening TCP socket
/// (state `0A`, if `tcp`) or of every bound, unconnected UDP socket (state
/// `07`, if not). A last line without a newline is parsed too. Malformed
/// lines are skipped and counted; see the module documentation for the
/// format (proc(5)).
pub fn parse_proc_net(text: &[u8], tcp: bool, out: &mut PortSet) -> LineCounts {
    let mut counts = LineCounts::default();
    let done = parse_complete_lines(text, tcp, out, &mut counts);
    let tail = text.get(done..).unwrap_or_default();
    if !tail.is_empty() {
        parse_one(tail, tcp, out, &mut counts);
    }
    counts
}

/// Parse every newline-terminated line at the start of `text`; returns the
/// bytes consumed (up to and including the last newline).
fn parse_complete_lines(
    text: &[u8],
    tcp: bool,
    out: &mut PortSet,
    counts: &mut LineCounts,
) -> usize {
    let mut done = 0;
    let mut rest = text;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let (line, after) = rest.split_at(nl);
        parse_one(line, tcp, out, counts);
        rest = after.get(1..).unwrap_or_default();
        done += nl + 1;
    }
    done
}

/// Parse one line (without its newline) and account for it.
fn parse_one(line: &[u8], tcp: bool, out: &mut PortSet, counts: &mut LineCounts) {
    let want = if tcp {
        ST_TCP_LISTEN
    } else {
        ST_UDP_UNCONNECTED
    };
    match parse_line(line) {
        Line::Header => {}
        Line::Malformed => counts.malformed += 1,
        Line::Socket { port, state } => {
            counts.sockets += 1;
            if state == want {
                counts.matched += 1;
                out.insert(port);
            }
        }
    }
}

/// One line of a `/proc/net` table.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// The column titles (`sl  local_address ...`).
    Header,
    /// A socket: local port and `st`.
    Socket { port: u16, state: u8 },
    /// Anything else.
    Malformed,
}

/// Parse the first four columns of a line: `sl:`, local `ADDR:PORT`, remote
/// `ADDR:PORT`, `st`.
fn parse_line(line: &[u8]) -> Line {
    let mut fields = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|f| !f.is_empty());
    let Some(sl) = fields.next() else {
        return Line::Malformed;
    };
    if sl == b"sl" {
        return Line::Header;
    }
    socket(sl, &mut fields).unwrap_or(Line::Malformed)
}

/// The socket columns after `sl` (given) of a line that is not the header.
fn socket<'a>(sl: &[u8], fields: &mut impl Iterator<Item = &'a [u8]>) -> Option<Line> {
    let slot = sl.strip_suffix(b":")?;
    if slot.is_empty() || !slot.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let port = endpoint(fields.next()?)?;
    endpoint(fields.next()?)?;
    let state = u8::try_from(hex(fields.next()?, 2)?).ok()?;
    Some(Line::Socket { port, state })
}

/// `ADDR:PORT` with ADDR 8 or 32 hex digits and PORT 1-4 hex digits: the
/// port.
fn endpoint(field: &[u8]) -> Option<u16> {
    let colon = field.iter().position(|&b| b == b':')?;
    let (addr, port) = field.split_at(colon);
    let port = port.get(1..)?;
    if !(addr.len() == 8 || addr.len() == 32) || !addr.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u16::try_from(hex(port, 4)?).ok()
}

/// 1 to `max_digits` (at most 8) hex digits, either case.
fn hex(digits: &[u8], max_digits: usize) -> Option<u32> {
    if digits.is_empty() || digits.len() > max_digits.min(8) {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &b| {
        let d = char::from(b).to_digit(16)?;
        Some(acc << 4 | d)
    })
}

/// A port whose forwarding must start or stop, from [`changes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortChange {
    /// In the new set only: start forwarding.
    Added(u16),
    /// In the old set only: stop forwarding.
    Removed(u16),
}

/// Iterator of [`changes`].
#[derive(Debug, Clone)]
pub struct Changes<'a> {
    /// Previous set.
    old: &'a [u64; 1024],
    /// Current set.
    new: &'a [u64; 1024],
    /// Index of the word `pending` comes from.
    word: usize,
    /// Bits of word `word` still to report (old XOR new).
    pending: u64,
}

impl Iterator for Changes<'_> {
    type Item = PortChange;

    fn next(&mut self) -> Option<PortChange> {
        while self.pending == 0 {
            self.word += 1;
            let (o, n) = (self.old.get(self.word)?, self.new.get(self.word)?);
            self.pending = o ^ n;
        }
        let bit = self.pending.trailing_zeros();
        self.pending &= self.pending - 1;
        let port = u16::try_from(self.word << 6 | bit as usize).ok()?;
        let added = self.new.get(self.word).is_some_and(|w| w >> bit & 1 == 1);
        Some(if added {
            PortChange::Added(port)
        } else {
            PortChange::Removed(port)
        })
    }
}

/// The ports that differ between two scans, ascending: those only in `new`
/// as [`PortChange::Added`], those only in `old` as [`PortChange::Removed`].
/// Works on 64 ports at a time (XOR of the bitmap words) and allocates
/// nothing.
pub fn changes<'a>(old: &'a PortSet, new: &'a PortSet) -> Changes<'a> {
    let (old, new) = (old.words(), new.words());
    Changes {
        old,
        new,
        word: 0,
        pending: old[0] ^ new[0],
    }
}

/// A NETLINK_SOCK_DIAG socket of the calling thread's network namespace
/// (non-blocking, close-on-exec), for [`tcp_diag_queues`].
///
/// # Errors
/// The OS error of socket(2).
pub fn sock_diag_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the fd is owned from here on.
    let fd = unsafe {
        libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, libc::NETLINK_SOCK_DIAG)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The receive-side queues of the TCP socket whose own view is `family`
/// (`AF_INET`/`AF_INET6`), local `src`:`sport`, remote `dst`:`dport`
/// (addresses as network byte order words, an IPv4 address in word 0;
/// ports in host byte order), in the namespace of `diag` (a
/// [`sock_diag_socket`]), from an exact inet_diag lookup: `(rqueue,
/// rmem_alloc)`, in bytes. `rqueue` is what TCP received and the socket
/// has not read (`rcv_nxt - copied_seq` when established); `rmem_alloc`
/// the memory charged to its receive side (INET_DIAG_SKMEMINFO), which
/// also counts bytes queued by an eBPF ingress redirect. `seq` tags the
/// request. `Ok(None)`: no such socket.
///
/// # Errors
/// The OS error of sendto/recv (EAGAIN if no answer came at once: exact
/// lookups are answered within sendto), or `InvalidData` for a malformed
/// answer.
///
/// Syscalls: sendto, recvfrom.
pub fn tcp_diag_queues(
    diag: RawFd,
    family: u8,
    src: [u32; 4],
    sport: u16,
    dst: [u32; 4],
    dport: u16,
    seq: u32,
) -> io::Result<Option<(u32, u32)>> {
    const INET_DIAG_SKMEMINFO: u16 = 7;
    let id = DiagSockId { sport, dport, src, dst };
    let req = inet_diag_request(NLM_F_REQUEST, family, 1 << (INET_DIAG_SKMEMINFO - 1), u32::MAX, Some(id), seq);
    // SAFETY: zeroed sockaddr_nl is valid; nl_family set below (pid 0: the kernel).
    let mut sa: libc::sockaddr_nl = unsafe { zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: req and sa are valid for their lengths.
    let r = unsafe {
        libc::sendto(diag, req.as_ptr().cast(), req.len(), 0, (&sa as *const libc::sockaddr_nl).cast(), size_of::<libc::sockaddr_nl>() as u32)
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 512];
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(diag, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let msg = &buf[..n as usize];
        if msg.len() < 16 {
            return Err(io::ErrorKind::InvalidData.into());
        }
        let ty = u16::from_ne_bytes([msg[4], msg[5]]);
        let rseq = u32::from_ne_bytes([msg[8], msg[9], msg[10], msg[11]]);
        if rseq != seq {
            // An answer to an earlier request we gave up on.
            continue;
        }
        if ty == NLMSG_ERROR {
            let e = msg.get(16..20).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            return match -e {
                0 | libc::ENOENT => Ok(None),
                e => Err(io::Error::from_raw_os_error(e)),
            };
        }
        if ty != SOCK_DIAG_BY_FAMILY {
            return Err(io::ErrorKind::InvalidData.into());
        }
        // inet_diag_msg at 16: family, state, timer, retrans, id (48),
        // expires, rqueue (at 56), wqueue, uid, inode.
        let word = |at: usize| msg.get(at..at + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        let rqueue = word(72).ok_or(io::Error::from(io::ErrorKind::InvalidData))?;
        // Attributes (rtattr: length, type; 4-byte aligned) after the
        // 72-byte inet_diag_msg; SKMEMINFO's first word is rmem_alloc.
        let len = (u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]) as usize).min(msg.len());
        let mut at = 88;
        let mut rmem = None;
        while at + 4 <= len {
            let alen = usize::from(u16::from_ne_bytes([msg[at], msg[at + 1]]));
            let aty = u16::from_ne_bytes([msg[at + 2], msg[at + 3]]);
            if alen < 4 {
                break;
            }
            if aty == INET_DIAG_SKMEMINFO && alen >= 8 {
                rmem = word(at + 4);
            }
            at += (alen + 3) & !3;
        }
        let rmem = rmem.ok_or(io::Error::from(io::ErrorKind::InvalidData))?;
        return Ok(Some((rqueue, rmem)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, TcpStream, UdpSocket};

    /// `/proc/net/tcp` as printed by Linux 6.18 (lines padded with spaces):
    /// listener on 127.0.0.1:34885, listener on 0.0.0.0:2024, and both ends
    /// of an established loopback connection to the first.
    const TCP4: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     
   0: 0100007F:8845 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2238985 1 00000000ae21579e 100 0 0 10 0                   
   1: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 492 1 00000000f5224bf8 100 0 0 10 0                       
   2: 0100007F:8845 0100007F:9370 01 00000000:00000000 00:00000000 00000000     0        0 2238987 1 00000000566d2140 20 0 0 10 -1                   
   3: 0100007F:9370 0100007F:8845 01 00000000:00000000 00:00000000 00000000     0        0 2238986 2 0000000057e1115d 20 0 0 10 -1                   
";

    /// `/proc/net/tcp6`: listener on [::1]:51743, listener on [::]:40767,
    /// and an established IPv4-mapped connection to the latter.
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:CA1F 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2238991 1 000000007dec8edd 100 0 0 10 0
   1: 00000000000000000000000000000000:9F3F 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2238988 1 000000002cbf829b 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:9F3F 0000000000000000FFFF00000100007F:BCDC 01 00000000:00000000 00:00000000 00000000     0        0 2238990 1 00000000331c277a 20 0 0 10 -1
   3: 0000000000000000FFFF00000100007F:BCDC 0000000000000000FFFF00000100007F:9F3F 01 00000000:00000000 00:00000000 00000000     0        0 2238989 2 00000000377929bc 20 0 0 10 -1
";

    /// `/proc/net/udp`: a socket connected to 127.0.0.1:51850 (from port
    /// 44167), and the one bound to 0.0.0.0:51850; five-digit slot.
    const UDP4: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            
 3708: 0100007F:AC87 0100007F:CA8A 01 00000000:00000000 00:00000000 00000000     0        0 2238993 2 0000000030d09f23 0       
11391: 00000000:CA8A 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2238992 2 00000000a6d3d390 0       
";

    /// `/proc/net/udp6`: bound to [::1]:46871, connected from [::1]:49781 to
    /// it, bound to [::ffff:127.0.0.1]:39912.
    const UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 6412: 00000000000000000000000001000000:B717 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2238994 2 00000000f4c36bdd 0
 9322: 00000000000000000000000001000000:C275 00000000000000000000000001000000:B717 01 00000000:00000000 00:00000000 00000000     0        0 2238996 2 00000000a8979520 0
15837: 0000000000000000FFFF00000100007F:9BE8 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2238995 2 00000000fdd9e871 0
";

    fn ports(s: &PortSet) -> Vec<u16> {
        s.iter().collect()
    }

    fn set(ports: &[u16]) -> PortSet {
        let mut s = PortSet::new();
        for &p in ports {
            s.insert(p);
        }
        s
    }

    fn parse(text: &str, tcp: bool) -> (Vec<u16>, LineCounts) {
        let mut out = PortSet::new();
        let counts = parse_proc_net(text.as_bytes(), tcp, &mut out);
        (ports(&out), counts)
    }

    fn counts(sockets: usize, matched: usize, malformed: usize) -> LineCounts {
        LineCounts {
            sockets,
            matched,
            malformed,
        }
    }

    #[test]
    fn tcp4_counts_listeners_not_established_sockets() {
        assert_eq!(parse(TCP4, true), (vec![0x07e8, 0x8845], counts(4, 2, 0)));
    }

    #[test]
    fn tcp6_counts_loopback_and_wildcard_listeners_not_mapped_connections() {
        assert_eq!(parse(TCP6, true), (vec![0x9f3f, 0xca1f], counts(4, 2, 0)));
    }

    #[test]
    fn udp4_counts_bound_sockets_not_connected_ones() {
        assert_eq!(parse(UDP4, false), (vec![0xca8a], counts(2, 1, 0)));
    }

    #[test]
    fn udp6_counts_bound_and_mapped_sockets_not_connected_ones() {
        assert_eq!(parse(UDP6, false), (vec![0x9be8, 0xb717], counts(3, 2, 0)));
    }

    #[test]
    fn state_looked_for_depends_on_protocol() {
        // UDP's 07 is TCP_CLOSE for TCP, TCP's 0A is never a UDP state.
        let tcp_close = "   0: 00000000:0050 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n";
        assert_eq!(parse(tcp_close, true), (vec![], counts(1, 0, 0)));
        assert_eq!(parse(TCP4, false), (vec![], counts(4, 0, 0)));
        assert_eq!(parse(UDP4, true), (vec![], counts(2, 0, 0)));
    }

    #[test]
    fn header_only_and_empty_text_give_nothing() {
        let header = TCP4.lines().next().unwrap();
        assert_eq!(parse(header, true), (vec![], counts(0, 0, 0)));
        assert_eq!(parse("", true), (vec![], counts(0, 0, 0)));
    }

    #[test]
    fn last_line_without_newline_and_lowercase_hex_are_parsed() {
        let text = "  sl  local_address\n   0: 0100007f:1f90 00000000:0000 0a\n   1: 00000000:01BB 00000000:0000 0A";
        assert_eq!(parse(text, true), (vec![443, 8080], counts(2, 2, 0)));
    }

    #[test]
    fn malformed_and_truncated_lines_are_skipped_and_counted() {
        let good = "   9: 00000000:0016 00000000:0000 0A 00000000:00000000\n";
        let bad = [
            "",
            "    ",
            "garbage",
            "   0:",
            "   0: 0100007F:0050",
            "   0: 0100007F:0050 00000000:0000",
            "   0: 0100007F:00",
            "   0 0100007F:0050 00000000:0000 0A",
            "   x: 0100007F:0050 00000000:0000 0A",
            "   -1: 0100007F:0050 00000000:0000 0A",
            "   0: 0100007:0050 00000000:0000 0A",
            "   0: 0100007F0:0050 00000000:0000 0A",
            "   0: 0100007F:10050 00000000:0000 0A",
            "   0: 0100007F:00G0 00000000:0000 0A",
            "   0: 0100007F: 00000000:0000 0A",
            "   0: 0100007F0050 00000000:0000 0A",
            "   0: 0100007F:0050 00000000 0A",
            "   0: 0100007F:0050 00000000:0000 A0A",
            "   0: 0100007F:0050 00000000:0000 zz",
            "   0: \u{ff}100007F:0050 00000000:0000 0A",
        ];
        let mut text = String::from(good);
        for line in bad {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(good);
        // Unterminated and cut short, as at the end of a short read.
        text.push_str("   3: 0100007F:1F90 00000000:0000 0");
        assert_eq!(parse(&text, true), (vec![22], counts(3, 2, bad.len())));
    }

    #[test]
    fn non_utf8_bytes_are_malformed_not_a_panic() {
        let mut out = PortSet::new();
        let text = b"   0: 0100007F:0050 00000000:0000 0A\n\xff\xfe:\x00 \x80\n\n";
        assert_eq!(parse_proc_net(text, true, &mut out), counts(1, 1, 2));
        assert_eq!(ports(&out), vec![80]);
    }

    /// A fresh directory holding `files` (name, contents).
    fn table_dir(name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("passt-fwd-scan-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            std::fs::write(dir.join(file), text).unwrap();
        }
        dir
    }

    #[test]
    fn scan_reads_all_four_tables() {
        let dir = table_dir(
            "four",
            &[
                ("tcp", TCP4.as_bytes()),
                ("tcp6", TCP6.as_bytes()),
                ("udp", UDP4.as_bytes()),
                ("udp6", UDP6.as_bytes()),
            ],
        );
        let mut net = ProcNet::open_dir(&dir).unwrap();
        let l = net.scan();
        assert_eq!(ports(&l.tcp4), vec![0x07e8, 0x8845]);
        assert_eq!(ports(&l.tcp6), vec![0x9f3f, 0xca1f]);
        assert_eq!(ports(&l.udp4), vec![0xca8a]);
        assert_eq!(ports(&l.udp6), vec![0x9be8, 0xb717]);
        // Rereading from offset 0 gives the same again, into old sets.
        let mut again = Listening::new();
        again.udp4.insert(1);
        net.scan_into(&mut again);
        assert_eq!(again, l);
        assert_eq!(net.stats(), ScanStats::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_ipv6_tables_are_left_out() {
        let dir = table_dir(
            "v4only",
            &[("tcp", TCP4.as_bytes()), ("udp", UDP4.as_bytes())],
        );
        let mut net = ProcNet::open_dir(&dir).unwrap();
        assert!(net.tcp6.is_none() && net.udp6.is_none());
        let l = net.scan();
        assert_eq!(ports(&l.tcp4), vec![0x07e8, 0x8845]);
        assert_eq!(ports(&l.udp4), vec![0xca8a]);
        assert!(l.tcp6.is_empty() && l.udp6.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn no_table_at_all_is_an_error() {
        let dir = table_dir("none", &[]);
        assert!(matches!(
            ProcNet::open_dir(&dir),
            Err(ScanError::NoTables { dir: d }) if d == dir
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unreadable_table_is_counted_and_others_still_scanned() {
        let dir = table_dir("eisdir", &[("udp", UDP4.as_bytes())]);
        // Opening a directory read-only works; reading it fails (EISDIR).
        std::fs::create_dir(dir.join("tcp")).unwrap();
        let mut net = ProcNet::open_dir(&dir).unwrap();
        let l = net.scan();
        assert!(l.tcp4.is_empty());
        assert_eq!(ports(&l.udp4), vec![0xca8a]);
        assert_eq!(net.stats().read_errors, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A table of `n` sockets: port `1000 + i`, listening if `i` is even.
    fn big_table(n: u16) -> String {
        let mut text = String::from(TCP6.lines().next().unwrap());
        text.push('\n');
        for i in 0..n {
            let st = if i % 2 == 0 { "0A" } else { "01" };
            text.push_str(&format!(
                "{i:4}: 00000000000000000000000000000000:{:04X} 00000000000000000000000000000000:0000 {st} 00000000:00000000 00:00000000 00000000     0        0 {i} 1 0000000000000000 100 0 0 10 0\n",
                1000 + i
            ));
        }
        text
    }

    #[test]
    fn tables_larger_than_the_buffer_are_read_in_pieces() {
        let text = big_table(2000);
        assert!(text.len() > 4 * READ_BUF_BYTES);
        let dir = table_dir("big", &[("tcp6", text.as_bytes())]);
        let mut net = ProcNet::open_dir(&dir).unwrap();
        let l = net.scan();
        let want: Vec<u16> = (0..2000).filter(|i| i % 2 == 0).map(|i| 1000 + i).collect();
        assert_eq!(ports(&l.tcp6), want);
        assert_eq!(net.stats(), ScanStats::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn line_longer_than_the_buffer_is_skipped_and_counted() {
        let mut text = String::from("   0: 00000000:0050 00000000:0000 0A ");
        text.push_str(&"x".repeat(3 * READ_BUF_BYTES));
        text.push('\n');
        text.push_str("   1: 00000000:0051 00000000:0000 0A\n");
        let dir = table_dir("long", &[("tcp", text.as_bytes())]);
        let mut net = ProcNet::open_dir(&dir).unwrap();
        assert_eq!(ports(&net.scan().tcp4), vec![0x51]);
        assert_eq!(net.stats().malformed_lines, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn live_scan_sees_own_listeners_not_connected_sockets() {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let tcp_port = tcp.local_addr().unwrap().port();
        let client = TcpStream::connect((Ipv4Addr::LOCALHOST, tcp_port)).unwrap();
        let client_port = client.local_addr().unwrap().port();
        let (_accepted, _) = tcp.accept().unwrap();
        let udp = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
        let udp_port = udp.local_addr().unwrap().port();
        let udp_client = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
        udp_client.connect((Ipv6Addr::LOCALHOST, udp_port)).unwrap();
        let udp_client_port = udp_client.local_addr().unwrap().port();

        let l = ProcNet::open().unwrap().scan();
        assert!(l.tcp4.contains(tcp_port), "{tcp_port} in {:?}", l.tcp4);
        assert!(!l.tcp4.contains(client_port) && !l.tcp6.contains(client_port));
        assert!(l.udp6.contains(udp_port), "{udp_port} in {:?}", l.udp6);
        assert!(!l.udp6.contains(udp_client_port) && !l.udp4.contains(udp_client_port));

        drop((tcp, udp));
        let l = ProcNet::open().unwrap().scan();
        assert!(!l.tcp4.contains(tcp_port) && !l.udp6.contains(udp_port));
    }

    #[test]
    fn tables_opened_in_another_netns_keep_showing_it() {
        if !crate::netlink::test_ns::privileged() {
            return;
        }
        let host = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let host_port = host.local_addr().unwrap().port();
        let (mut diag, mut proc, socks) = std::thread::spawn(|| {
            // Before any socket is opened: never touch the host's namespace.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare(CLONE_NEWNET)");
            let socks = (
                TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap(),
                TcpListener::bind((Ipv6Addr::UNSPECIFIED, 0)).unwrap(),
                UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).unwrap(),
            );
            let diag = ProcNet::open().unwrap();
            let proc = ProcNet::open_dir(Path::new("/proc/thread-self/net")).unwrap();
            (diag, proc, socks)
        })
        .join()
        .unwrap();
        let port = |a: std::io::Result<std::net::SocketAddr>| a.unwrap().port();
        let (tcp4, tcp6, udp6) = (
            port(socks.0.local_addr()),
            port(socks.1.local_addr()),
            port(socks.2.local_addr()),
        );
        assert!(
            diag.uses_sock_diag(),
            "this kernel has no usable sock_diag for TCP"
        );
        assert!(!proc.uses_sock_diag());
        // Read from this thread, which is in the test's own namespace.
        for net in [&mut diag, &mut proc] {
            let l = net.scan();
            assert_eq!(ports(&l.tcp4), vec![tcp4]);
            assert_eq!(ports(&l.tcp6), vec![tcp6]);
            assert_eq!(ports(&l.udp6), vec![udp6]);
            assert!(l.udp4.is_empty());
            if host_port != tcp4 {
                assert!(!l.tcp4.contains(host_port));
            }
        }
        drop(socks);
        for net in [&mut diag, &mut proc] {
            // A child forked by another test of this binary may hold a copy
            // of the sockets for a moment: wait for it, boundedly.
            for _ in 0..100 {
                if net.scan() == Listening::new() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            assert_eq!(net.scan(), Listening::new());
            assert_eq!(net.stats(), ScanStats::default());
        }
    }

    #[test]
    fn exclusions_remove_per_table_or_per_port() {
        let mut l = Listening {
            tcp4: set(&[22, 80]),
            tcp6: set(&[80, 443]),
            udp4: set(&[53, 80]),
            udp6: set(&[5353]),
        };
        let mut own = Listening::new();
        own.tcp6.insert(80);
        own.udp6.insert(53);
        l.remove(&own);
        assert_eq!(
            (
                ports(&l.tcp4),
                ports(&l.tcp6),
                ports(&l.udp4),
                ports(&l.udp6)
            ),
            (vec![22, 80], vec![443], vec![53, 80], vec![5353])
        );
        l.remove_ports(&set(&[80, 5353]));
        assert_eq!(
            (
                ports(&l.tcp4),
                ports(&l.tcp6),
                ports(&l.udp4),
                ports(&l.udp6)
            ),
            (vec![22], vec![443], vec![53], vec![])
        );
    }

    #[test]
    fn tcp_ports_merge_families_and_udp_ports_add_tcp_ones() {
        let l = Listening {
            tcp4: set(&[22]),
            tcp6: set(&[5201]),
            udp4: set(&[53]),
            udp6: set(&[5353]),
        };
        assert_eq!(ports(&l.tcp_ports()), vec![22, 5201]);
        assert_eq!(ports(&l.udp_ports()), vec![22, 53, 5201, 5353]);
    }

    #[test]
    fn changes_list_added_and_removed_ports_ascending() {
        let old = set(&[1, 64, 80, 65535]);
        let new = set(&[0, 1, 63, 81, 65535]);
        assert_eq!(
            changes(&old, &new).collect::<Vec<_>>(),
            vec![
                PortChange::Added(0),
                PortChange::Added(63),
                PortChange::Removed(64),
                PortChange::Removed(80),
                PortChange::Added(81),
            ]
        );
        assert_eq!(changes(&new, &new).count(), 0);
        assert_eq!(
            changes(&PortSet::new(), &set(&[65535])).collect::<Vec<_>>(),
            vec![PortChange::Added(65535)]
        );
        assert_eq!(
            changes(&set(&[65535]), &PortSet::new()).collect::<Vec<_>>(),
            vec![PortChange::Removed(65535)]
        );
    }

    #[test]
    fn changes_agree_with_per_port_comparison() {
        let mut old = PortSet::new();
        let mut new = PortSet::new();
        for p in (0..=u16::MAX).step_by(7) {
            old.insert(p);
        }
        for p in (0..=u16::MAX).step_by(11) {
            new.insert(p);
        }
        let want: Vec<PortChange> = (0..=u16::MAX)
            .filter_map(|p| match (old.contains(p), new.contains(p)) {
                (false, true) => Some(PortChange::Added(p)),
                (true, false) => Some(PortChange::Removed(p)),
                _ => None,
            })
            .collect();
        assert_eq!(changes(&old, &new).collect::<Vec<_>>(), want);
    }

    /// The request sock_diag answered in the golden replies below, as sent
    /// by hand (Python) on a little-endian host: sequence 1, AF_INET.
    #[cfg(target_endian = "little")]
    const DIAG_REQ_AF_INET_SEQ_1: &str = "480000001400010301000000000000000206000000040000\
        000000000000000000000000000000000000000000000000\
        000000000000000000000000000000000000000000000000";

    /// Linux 6.18's first reply datagram to that request: listeners on
    /// 127.0.0.1:8080 and 0.0.0.0:2024, each an `inet_diag_msg` plus
    /// attributes (INET_DIAG_SHUTDOWN, ...), 124 bytes.
    #[cfg(target_endian = "little")]
    const DIAG_REPLY: &str = "7c0000001400020001000000a3190000020a00001f9000007f00000100000000\
        0000000000000000000000000000000000000000000000000000000099110000\
        0000000000000000000000008000000000000000ffbd22000500080000000000\
        08000f00000000000c001500010000000000000006001600520000007c000000\
        1400020001000000a3190000020a000007e80000000000000000000000000000\
        0000000000000000000000000000000000000000000000009a11000000000000\
        00000000000000008000000000000000ec010000050008000000000008000f00\
        000000000c00150001000000000000000600160052000000";

    /// The second: NLMSG_DONE, status 0.
    #[cfg(target_endian = "little")]
    const DIAG_DONE: &str = "140000000300020001000000a319000000000000";

    fn unhex(s: &str) -> Vec<u8> {
        let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        s.chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    /// A netlink message of `msg_type` and `seq` around `payload`.
    fn nlmsg(msg_type: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(NLMSG_HDR_LEN + payload.len()).unwrap();
        let mut m = Vec::new();
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&msg_type.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m
    }

    /// An `inet_diag_msg` of `family`, `state`, local port `port`.
    fn diag_msg(family: u8, state: u8, port: u16) -> Vec<u8> {
        let mut m = vec![0u8; INET_DIAG_MSG_LEN];
        m[0] = family;
        m[1] = state;
        m[4..6].copy_from_slice(&port.to_be_bytes());
        m
    }

    fn diag_parse(dgram: &[u8], seq: u32, family: u8) -> (Result<DiagProgress, String>, Vec<u16>) {
        let mut out = PortSet::new();
        let r = parse_diag_datagram(dgram, seq, family, &mut out).map_err(|e| e.to_string());
        (r, ports(&out))
    }

    const AF_INET: u8 = libc::AF_INET as u8;
    const AF_INET6: u8 = libc::AF_INET6 as u8;

    #[test]
    #[cfg(target_endian = "little")]
    fn diag_request_matches_golden_bytes() {
        assert_eq!(
            diag_request(AF_INET, 1).to_vec(),
            unhex(DIAG_REQ_AF_INET_SEQ_1)
        );
    }

    #[test]
    fn diag_request_asks_for_listening_tcp_of_one_family() {
        let req = diag_request(AF_INET6, 0x0102_0304);
        assert_eq!(&req[0..4], &72u32.to_ne_bytes());
        assert_eq!(&req[4..6], &SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        assert_eq!(&req[6..8], &(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        assert_eq!(&req[8..12], &0x0102_0304u32.to_ne_bytes());
        assert_eq!(&req[16..20], &[AF_INET6, 6, 0, 0]);
        assert_eq!(&req[20..24], &0x400u32.to_ne_bytes());
        assert!(req[12..16].iter().chain(&req[24..]).all(|&b| b == 0));
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn diag_golden_reply_gives_listening_ports_then_done() {
        let reply = unhex(DIAG_REPLY);
        assert_eq!(reply.len(), 2 * 124);
        assert_eq!(
            diag_parse(&reply, 1, AF_INET),
            (Ok(DiagProgress::More), vec![2024, 8080])
        );
        let done = unhex(DIAG_DONE);
        assert_eq!(
            diag_parse(&done, 1, AF_INET),
            (Ok(DiagProgress::Done), vec![])
        );
        // Another dump's messages, or another family's sockets, are skipped.
        assert_eq!(
            diag_parse(&reply, 2, AF_INET),
            (Ok(DiagProgress::More), vec![])
        );
        assert_eq!(
            diag_parse(&done, 2, AF_INET),
            (Ok(DiagProgress::More), vec![])
        );
        assert_eq!(
            diag_parse(&reply, 1, AF_INET6),
            (Ok(DiagProgress::More), vec![])
        );
    }

    #[test]
    fn diag_counts_only_listen_state_and_reads_port_big_endian() {
        let mut d = nlmsg(SOCK_DIAG_BY_FAMILY, 5, &diag_msg(AF_INET6, 10, 0x1234));
        d.extend(nlmsg(
            SOCK_DIAG_BY_FAMILY,
            5,
            &diag_msg(AF_INET6, 1, 0x5678),
        ));
        d.extend(nlmsg(NLMSG_NOOP, 5, &[]));
        d.extend(nlmsg(NLMSG_DONE, 5, &0i32.to_ne_bytes()));
        assert_eq!(
            diag_parse(&d, 5, AF_INET6),
            (Ok(DiagProgress::Done), vec![0x1234])
        );
    }

    #[test]
    fn diag_kernel_errors_end_the_dump() {
        let err = nlmsg(NLMSG_ERROR, 3, &(-libc::EINVAL).to_ne_bytes());
        assert_eq!(
            diag_parse(&err, 3, AF_INET).0,
            Err("kernel error 22".into())
        );
        let done = nlmsg(NLMSG_DONE, 3, &(-libc::EINTR).to_ne_bytes());
        assert_eq!(
            diag_parse(&done, 3, AF_INET).0,
            Err("kernel error 4".into())
        );
        let overrun = nlmsg(NLMSG_OVERRUN, 3, &[]);
        assert_eq!(
            diag_parse(&overrun, 3, AF_INET).0,
            Err("malformed reply".into())
        );
    }

    #[test]
    fn diag_malformed_datagrams_are_errors_not_panics() {
        let good = nlmsg(SOCK_DIAG_BY_FAMILY, 1, &diag_msg(AF_INET, 10, 80));
        let mut short_len = good.clone();
        short_len[0..4].copy_from_slice(&15u32.to_ne_bytes());
        let mut long_len = good.clone();
        long_len[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        let cases: Vec<Vec<u8>> = vec![
            good[..good.len() - 1].to_vec(),
            good[..10].to_vec(),
            short_len,
            long_len,
            nlmsg(SOCK_DIAG_BY_FAMILY, 1, &diag_msg(AF_INET, 10, 80)[..71]),
            nlmsg(NLMSG_ERROR, 1, &[0xff, 0xff]),
        ];
        for (i, d) in cases.iter().enumerate() {
            assert_eq!(
                diag_parse(d, 1, AF_INET).0,
                Err("malformed reply".into()),
                "case {i}"
            );
        }
        // Trailing bytes after an aligned message are a malformed header.
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0; 3]);
        assert_eq!(
            diag_parse(&trailing, 1, AF_INET).0,
            Err("malformed reply".into())
        );
    }

    #[test]
    fn failed_diag_dump_falls_back_to_the_file_for_good() {
        let dir = table_dir("fallback", &[("tcp", TCP4.as_bytes())]);
        let file = File::open(dir.join("tcp")).unwrap();
        let mut diag = Some(SockDiag::open().unwrap());
        let mut buf = vec![0u8; READ_BUF_BYTES];
        let mut out = PortSet::new();
        let mut stats = ScanStats::default();
        // sock_diag refuses families >= AF_MAX with EINVAL.
        scan_tcp(&mut diag, 255, Some(&file), &mut buf, &mut out, &mut stats);
        assert!(diag.is_none());
        assert_eq!(ports(&out), vec![0x07e8, 0x8845]);
        assert_eq!(stats.diag_errors, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn diag_and_proc_agree_on_live_listeners() {
        let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
        let mut diag = SockDiag::open().unwrap();
        let mut buf = vec![0u8; READ_BUF_BYTES];
        let mut by_diag = PortSet::new();
        diag.dump_listening(AF_INET, &mut buf, &mut by_diag)
            .unwrap();
        assert!(by_diag.contains(v4.local_addr().unwrap().port()));
        assert!(!by_diag.contains(v6.local_addr().unwrap().port()));
        let mut by_diag6 = PortSet::new();
        diag.dump_listening(AF_INET6, &mut buf, &mut by_diag6)
            .unwrap();
        assert!(by_diag6.contains(v6.local_addr().unwrap().port()));
        // Other tests open and close listeners meanwhile: compare only ours.
        let mut net = ProcNet::open().unwrap();
        assert!(net.uses_sock_diag());
        let l = net.scan();
        assert!(l.tcp4.contains(v4.local_addr().unwrap().port()));
        assert!(l.tcp6.contains(v6.local_addr().unwrap().port()));
    }

    /// Not a test: prints how long one scan takes with about 1000 TCP
    /// sockets open (500 loopback connections, both ends) plus 100 UDP.
    /// `cargo test -p passt-user --lib fwd_scan::tests::measure -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn measure_scan_with_1000_sockets() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut keep = Vec::new();
        for _ in 0..500 {
            let c = TcpStream::connect(addr).unwrap();
            let (a, _) = listener.accept().unwrap();
            keep.push((c, a));
        }
        let udp: Vec<UdpSocket> = (0..100)
            .map(|_| UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap())
            .collect();
        let bytes = std::fs::read("/proc/thread-self/net/tcp").unwrap().len();
        let mut diag = ProcNet::open().unwrap();
        let mut proc = ProcNet::open_dir(Path::new("/proc/thread-self/net")).unwrap();
        for (name, net) in [("sock_diag", &mut diag), ("/proc/net", &mut proc)] {
            let mut out = Listening::new();
            net.scan_into(&mut out);
            let rounds = 100;
            let t = std::time::Instant::now();
            for _ in 0..rounds {
                net.scan_into(&mut out);
            }
            let per_scan = t.elapsed() / rounds;
            eprintln!(
                "one scan, TCP via {name}: {per_scan:?} ({} TCP + {} UDP sockets; \
                 /proc/net/tcp {bytes} bytes)",
                2 * keep.len() + 1,
                udp.len()
            );
            assert!(out.tcp4.contains(addr.port()));
        }
    }
}
