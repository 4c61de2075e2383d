//! # Theory of operation
//!
//! Bounded resources: what happens when a new flow can't get what it needs.
//! The flow table has a fixed capacity (`--max-flows`, default
//! [`crate::daemon::FLOW_CAPACITY`]) and the process a fixed number of file
//! descriptors (RLIMIT_NOFILE, `fs.file-max`). When either runs out, the
//! one new flow that needed it is refused, the refusal is counted, and
//! existing flows carry on untouched:
//!
//! - TCP SYN from the tap: an RST to the guest (`tcp::io`);
//! - TCP connection accepted on a forwarded port (to the tap or spliced):
//!   closed with SO_LINGER 0, so the client sees an RST;
//! - UDP datagram or echo request from the tap: an ICMP destination
//!   unreachable, code 13 "communication administratively prohibited"
//!   (RFC 792, RFC 1812 §5.2.7.1), or ICMPv6 destination unreachable code
//!   1 "communication with destination administratively prohibited" (RFC
//!   4443 §3.1), built by [`unreach_frame`] and limited to
//!   [`UNREACH_PER_SEC`] per second by [`RateLimit`] (RFC 1812 §4.3.2.8,
//!   RFC 4443 §2.4 (f));
//! - UDP datagram on a forwarded port: dropped, counted.
//!
//! A listening socket with a pending connection stays readable, so if
//! accept(2) fails with EMFILE/ENFILE the loop would wake up for it forever.
//! [`SpareFd`] holds one descriptor in reserve (a duplicate made at
//! start-up): on EMFILE it is closed, the connection accepted with the
//! freed slot and reset at once, and the spare opened again; the listener
//! is drained and the client gets an RST instead of a hang.
//!
//! Which flows were refused, and why: counters `drop_flow_table_full`,
//! `drop_no_fds`, `unreach_to_tap`, `unreach_limited`.
//!
//! Syscalls: fcntl (F_DUPFD_CLOEXEC), close, accept4, setsockopt
//! (SO_LINGER).

use std::io;
use std::ops::Range;
use std::os::fd::{OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::flow::Inany;
use crate::sys;
use crate::wire::{csum, frame};

/// Why a new flow was not opened (the reason is already counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Dropped silently: nothing to tell the peer (no route, bad address,
    /// a transient socket error).
    Dropped,
    /// Out of flow slots or file descriptors: tell the peer (RST or ICMP
    /// administratively prohibited).
    Prohibited,
}

/// True if `e` means the process or the system ran out of file
/// descriptors (EMFILE, ENFILE).
pub fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// One file descriptor held in reserve; see the module documentation.
#[derive(Debug)]
pub struct SpareFd {
    /// The spare: a duplicate of `of`, or `None` while it can't be opened.
    spare: Option<OwnedFd>,
    /// What the spare duplicates (not owned: it outlives this).
    of: RawFd,
}

/// The result of [`SpareFd::refuse_one`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseOne {
    /// A pending connection was accepted and reset.
    Reset,
    /// No connection was pending any more.
    Empty,
    /// No spare to free (it could not be reopened), or accept failed again.
    Failed,
}

impl SpareFd {
    /// Reserve one descriptor: a close-on-exec duplicate of `of`, a
    /// descriptor that stays open for as long as this.
    ///
    /// # Errors
    /// The OS error of fcntl(F_DUPFD_CLOEXEC), at start-up.
    pub fn new(of: RawFd) -> io::Result<Self> {
        Ok(SpareFd {
            spare: Some(dup(of)?),
            of,
        })
    }

    /// Whether the spare is held.
    pub fn held(&self) -> bool {
        self.spare.is_some()
    }

    /// Accept(2) failed on listener `lfd` for lack of descriptors: close
    /// the spare, accept one pending connection with the freed slot and
    /// reset it (SO_LINGER 0, then close), and take the spare again.
    ///
    /// Syscalls: close, accept4, setsockopt, fcntl.
    pub fn refuse_one(&mut self, lfd: RawFd) -> RefuseOne {
        if self.spare.is_none() {
            self.spare = dup(self.of).ok();
        }
        if self.spare.take().is_none() {
            return RefuseOne::Failed;
        }
        let r = match sys::accept(lfd) {
            Ok(Some((sock, _, _))) => {
                sys::set_linger_zero(std::os::fd::AsRawFd::as_raw_fd(&sock));
                RefuseOne::Reset
            }
            Ok(None) => RefuseOne::Empty,
            Err(_) => RefuseOne::Failed,
        };
        self.spare = dup(self.of).ok();
        r
    }
}

/// A close-on-exec duplicate of `of` (std's F_DUPFD_CLOEXEC).
fn dup(of: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: `of` stays open for as long as the SpareFd holding it (see
    // SpareFd::new); the borrow ends with this call.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(of) }.try_clone_to_owned()
}

/// ICMP errors sent to the tap per second, at most.
pub const UNREACH_PER_SEC: u32 = 100;

/// A fixed-window rate limit: at most `per_sec` events in each second.
#[derive(Debug, Clone)]
pub struct RateLimit {
    per_sec: u32,
    window: Option<Instant>,
    used: u32,
}

impl RateLimit {
    /// At most `per_sec` events per second.
    pub fn new(per_sec: u32) -> Self {
        RateLimit {
            per_sec,
            window: None,
            used: 0,
        }
    }

    /// Take one event at time `now`: `false` if over the limit.
    pub fn take(&mut self, now: Instant) -> bool {
        match self.window {
            Some(w) if now.saturating_duration_since(w) < Duration::from_secs(1) => {}
            _ => {
                self.window = Some(now);
                self.used = 0;
            }
        }
        if self.used >= self.per_sec {
            return false;
        }
        self.used += 1;
        true
    }
}

/// Longest IPv4 ICMP error: 576 bytes in all (RFC 1812 §4.3.2.3).
const ICMP4_MAX: usize = 576;
/// Longest ICMPv6 error: the IPv6 minimum MTU (RFC 4443 §2.4 (c)).
const ICMP6_MAX: usize = 1280;

/// Build, in `slot`, the "administratively prohibited" destination
/// unreachable answering `frame`, an Ethernet frame from the guest holding
/// an IPv4 or IPv6 packet (already validated by the caller; checked again
/// here without panicking). The error comes from the packet's destination
/// address, from `our_mac` to the frame's source MAC, and quotes as much of
/// the packet as fits in 576 (IPv4) or 1280 (IPv6) bytes.
///
/// Returns the frame's range in `slot`, or `None` if no error may be sent:
/// malformed or truncated packet, multicast or broadcast destination,
/// unspecified or multicast source (RFC 1122 §3.2.2, RFC 4443 §2.4 (e)).
///
/// `slot` must be at least [`crate::tap::SLOT`] bytes (a transmit slot).
pub fn unreach_frame(our_mac: [u8; 6], frame: &[u8], slot: &mut [u8]) -> Option<Range<usize>> {
    let (eth, l3) = frame.split_at_checked(14)?;
    let ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    let (src, dst, pkt, quote_max, proto, kind, code) = match ethertype {
        frame::ETH_P_IP => {
            let h = l3.get(..20)?;
            if h[0] >> 4 != 4 {
                return None;
            }
            let tot = usize::from(u16::from_be_bytes([h[2], h[3]]));
            let pkt = l3.get(..tot)?;
            let src = Inany::from(std::net::Ipv4Addr::new(h[12], h[13], h[14], h[15]));
            let dst = Inany::from(std::net::Ipv4Addr::new(h[16], h[17], h[18], h[19]));
            (src, dst, pkt, ICMP4_MAX - 20 - 8, 1u8, 3u8, 13u8)
        }
        frame::ETH_P_IPV6 => {
            let h = l3.get(..40)?;
            if h[0] >> 4 != 6 {
                return None;
            }
            let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
            let pkt = l3.get(..40 + plen)?;
            let a = |r: Range<usize>| -> Option<Inany> {
                let b: [u8; 16] = h.get(r)?.try_into().ok()?;
                Some(Inany::from(std::net::Ipv6Addr::from(b)))
            };
            (
                a(8..24)?,
                a(24..40)?,
                pkt,
                ICMP6_MAX - 40 - 8,
                58u8,
                1u8,
                1u8,
            )
        }
        _ => return None,
    };
    if src.is_unspecified()
        || src.is_multicast_or_broadcast()
        || dst.is_unspecified()
        || dst.is_multicast_or_broadcast()
    {
        return None;
    }
    let quote = &pkt[..pkt.len().min(quote_max)];
    let l4len = 8 + quote.len();
    let msg = slot.get_mut(frame::L4_OFF..frame::L4_OFF + l4len)?;
    msg[0] = kind;
    msg[1] = code;
    msg[2..8].fill(0);
    msg[8..].copy_from_slice(quote);
    let acc = if proto == 58 {
        frame::pseudo(dst, src, proto, l4len)
    } else {
        0
    };
    let c = csum::fold(csum::sum(acc, msg));
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    let mut guest_mac = [0u8; 6];
    guest_mac.copy_from_slice(&eth[6..12]);
    let addrs = frame::FrameAddrs {
        src_mac: our_mac,
        dst_mac: guest_mac,
        src: dst,
        dst: src,
    };
    Some(frame::push_ip_eth(slot, l4len, &addrs, proto, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
    use std::io::Read;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::os::fd::AsRawFd;

    const OUR: [u8; 6] = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55];
    const GUEST: [u8; 6] = [2, 0, 0, 0, 0, 1];

    fn udp4(dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(GUEST, OUR)
            .ipv4([10, 0, 2, 15], dst.octets(), 64)
            .udp(40000, 5353);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    #[test]
    fn ipv4_udp_gets_admin_prohibited_quoting_the_datagram() {
        let f = udp4(Ipv4Addr::new(192, 0, 2, 7), b"hello");
        let mut slot = vec![0u8; crate::tap::SLOT];
        let r = unreach_frame(OUR, &f, &mut slot).unwrap();
        let out = &slot[r];
        assert_eq!(&out[0..6], &GUEST);
        assert_eq!(&out[6..12], &OUR);
        let p = SlicedPacket::from_ethernet(out).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not ipv4")
        };
        assert_eq!(ip.header().source_addr(), Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(ip.header().destination_addr(), Ipv4Addr::new(10, 0, 2, 15));
        let icmp = &out[34..];
        assert_eq!((icmp[0], icmp[1]), (3, 13));
        assert_eq!(csum::fold(csum::sum(0, icmp)), 0, "ICMP checksum");
        assert_eq!(&icmp[8..], &f[14..], "whole datagram quoted");
    }

    #[test]
    fn ipv6_echo_gets_admin_prohibited_with_valid_checksum() {
        let s: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let d: Ipv6Addr = "2001:db8:1::9".parse().unwrap();
        let b = PacketBuilder::ethernet2(GUEST, OUR)
            .ipv6(s.octets(), d.octets(), 64)
            .icmpv6_echo_request(7, 1);
        let mut f = Vec::new();
        b.write(&mut f, &[0xab; 2000]).unwrap();
        let mut slot = vec![0u8; crate::tap::SLOT];
        let r = unreach_frame(OUR, &f, &mut slot).unwrap();
        let out = slot[r].to_vec();
        assert_eq!(out.len(), 14 + ICMP6_MAX, "quote cut to the minimum MTU");
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let Some(TransportSlice::Icmpv6(i)) = p.transport else {
            panic!("not icmpv6")
        };
        assert_eq!((i.type_u8(), i.code_u8()), (1, 1));
        assert!(
            i.is_checksum_valid(d.octets(), s.octets()),
            "ICMPv6 checksum"
        );
        assert_eq!(
            &out[14 + 48..14 + 48 + 40],
            &f[14..54],
            "quote starts with the IPv6 header"
        );
    }

    #[test]
    fn no_error_about_broadcast_multicast_or_junk() {
        let mut slot = vec![0u8; crate::tap::SLOT];
        assert!(unreach_frame(OUR, &udp4(Ipv4Addr::BROADCAST, b"x"), &mut slot).is_none());
        assert!(
            unreach_frame(OUR, &udp4(Ipv4Addr::new(224, 0, 0, 251), b"x"), &mut slot).is_none()
        );
        let f = udp4(Ipv4Addr::new(192, 0, 2, 7), b"hello");
        for n in 0..f.len() - 1 {
            // Truncated frames: never a panic; shorter than the IP total length: nothing.
            assert!(unreach_frame(OUR, &f[..n], &mut slot).is_none(), "len {n}");
        }
        let mut bad = f.clone();
        bad[14] = 0x65;
        assert!(unreach_frame(OUR, &bad, &mut slot).is_none());
    }

    #[test]
    fn rate_limit_allows_per_second_then_refills() {
        let mut l = RateLimit::new(3);
        let t = Instant::now();
        assert_eq!((0..5).filter(|_| l.take(t)).count(), 3);
        assert!(!l.take(t + Duration::from_millis(999)));
        assert!(l.take(t + Duration::from_millis(1000)));
    }

    #[test]
    fn spare_fd_resets_a_pending_connection_and_is_taken_again() {
        let lst = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        lst.set_nonblocking(true).unwrap();
        let mut c = std::net::TcpStream::connect(lst.local_addr().unwrap()).unwrap();
        let mut s = SpareFd::new(lst.as_raw_fd()).unwrap();
        assert_eq!(s.refuse_one(lst.as_raw_fd()), RefuseOne::Reset);
        assert!(s.held());
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut b = [0u8; 1];
        let e = c.read(&mut b).unwrap_err();
        assert_eq!(
            e.kind(),
            io::ErrorKind::ConnectionReset,
            "client sees an RST, not a hang"
        );
        assert_eq!(s.refuse_one(lst.as_raw_fd()), RefuseOne::Empty);
        assert!(s.held());
    }

    #[test]
    fn out_of_fds_is_emfile_or_enfile_only() {
        assert!(out_of_fds(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(out_of_fds(&io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!out_of_fds(&io::Error::from_raw_os_error(libc::ENOBUFS)));
    }
}
