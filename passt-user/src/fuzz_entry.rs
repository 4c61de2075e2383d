//! # Theory of operation
//!
//! The bodies of the cargo-fuzz targets (`passt-user/fuzz`), kept in the
//! library so that stable `cargo test` replays the same inputs: each target
//! in `fuzz/fuzz_targets/` is one line calling the function of the same
//! name here, and the unit test at the bottom feeds every file of
//! `fuzz/seeds/TARGET/` and `fuzz/regressions/TARGET/` to it. Not part of
//! the API (hidden from the documentation).
//!
//! Each function takes one input of arbitrary bytes and either returns or
//! panics; a panic is a finding. Besides "no panic", each checks the
//! invariants it can state (a reply fits its buffer and is a well-formed
//! frame from our MAC, frames come out of the stream framing exactly as a
//! reference decoder cuts them, TCP sequence numbers stay in range, no flow
//! outlives a reset or the timeouts).
//!
//! Checksums: the responders verify them, so a mutated frame would rarely
//! get past that check. Inputs whose first byte is odd get their IPv4
//! header and L4 checksums recomputed before they are handled (see
//! [`fix_checksums`]); even ones go in as they are. The code under test is
//! the same in both cases: nothing here is built differently for fuzzing.
//!
//! Targets that open sockets ([`frame_dispatch`]) must run in a network
//! namespace of their own: `cargo xtask test` runs the fuzzers under
//! `unshare --net`, and the replay test moves its thread to a new one
//! ([`isolate_net`]), so that flows opened by random frames reach nothing.
//!
//! Syscalls (tests and fuzzing only, never in the daemon): unshare,
//! socketpair, eventfd2, sendto, recvfrom, plus those of
//! [`crate::daemon::dispatch_frame`].

use std::cell::RefCell;
use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::daemon::Ctx;
use crate::flow::table::FlowTable;
use crate::flow::{FlowData, FlowSide, Pif, Proto};
use crate::svc::SvcConf;
use crate::tap::{RxBatch, Tap, TapError};
use crate::tcp::conn::{self, SegIn, SegOut, State, TcpConn, TimeoutAction};
use crate::wire::csum;

/// A fuzz target body: one input, panics on a finding.
pub type Target = fn(&[u8]);

/// Every target, by the name of its cargo-fuzz binary and of its seed and
/// regression directories.
pub const TARGETS: &[(&str, Target)] = &[
    ("wire", wire),
    ("arp", arp),
    ("dhcp", dhcp),
    ("dhcpv6", dhcpv6),
    ("ndp", ndp),
    ("stream", stream),
    ("port_spec", port_spec),
    ("frame_dispatch", frame_dispatch),
    ("tcp_conn", tcp_conn),
];

/// A cursor over the input that yields zeros once it runs out, so that
/// every input decodes into something.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Recompute the IPv4 header checksum and the TCP, UDP, ICMP or ICMPv6
/// checksum of an Ethernet frame in place, as far as its lengths allow
/// (no IPv6 extension headers). Anything that doesn't fit is left alone.
pub fn fix_checksums(f: &mut [u8]) {
    let Some(et) = f.get(12..14).map(|e| u16::from_be_bytes([e[0], e[1]])) else {
        return;
    };
    let Some(ip) = f.get_mut(14..) else { return };
    let (acc, proto, l4) = match et {
        0x0800 => {
            let ihl = usize::from(ip.first().copied().unwrap_or(0) & 0xf) * 4;
            if ihl < 20 || ip.len() < ihl {
                return;
            }
            ip[10..12].copy_from_slice(&[0, 0]);
            let c = csum::fold(csum::sum(0, &ip[..ihl]));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
            if tot < ihl {
                return;
            }
            let (src, dst) = (
                Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
                Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            );
            let proto = ip[9];
            let acc = if proto == 1 {
                0
            } else {
                csum::pseudo4(src, dst, proto, (tot - ihl) as u16)
            };
            (acc, proto, &mut ip[ihl..tot])
        }
        0x86dd => {
            if ip.len() < 40 {
                return;
            }
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]])).min(ip.len() - 40);
            let mut a = [0u8; 16];
            a.copy_from_slice(&ip[8..24]);
            let src = Ipv6Addr::from(a);
            a.copy_from_slice(&ip[24..40]);
            let dst = Ipv6Addr::from(a);
            let proto = ip[6];
            (
                csum::pseudo6(&src, &dst, proto, plen as u32),
                proto,
                &mut ip[40..40 + plen],
            )
        }
        _ => return,
    };
    let off = match proto {
        6 => 16,
        17 => 6,
        1 | 58 => 2,
        _ => return,
    };
    if l4.len() < off + 2 {
        return;
    }
    l4[off..off + 2].copy_from_slice(&[0, 0]);
    let mut c = csum::fold(csum::sum(acc, l4));
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    l4[off..off + 2].copy_from_slice(&c.to_be_bytes());
}

/// The input less its first byte, with checksums fixed if that byte is odd.
fn frame_of(data: &[u8]) -> Vec<u8> {
    let mut f = data.get(1..).unwrap_or_default().to_vec();
    if data.first().is_some_and(|b| b & 1 == 1) {
        fix_checksums(&mut f);
    }
    f
}

/// The local services' configuration of [`crate::daemon::test_ctx`].
fn svc_conf() -> &'static SvcConf {
    static CONF: OnceLock<SvcConf> = OnceLock::new();
    CONF.get_or_init(|| crate::daemon::test_ctx().expect("test context").svc)
}

/// A local service's entry point (see [`crate::svc`]).
type Responder = fn(&SvcConf, &[u8], &mut [u8]) -> Result<Option<usize>, crate::wire::Error>;

/// Run a responder on the input's frame with a full-size slot and with a
/// slot cut to a length taken from the input; check what it reports.
fn responder(data: &[u8], handle: Responder) {
    let conf = svc_conf();
    let frame = frame_of(data);
    let mut out = vec![0u8; crate::tap::SLOT];
    if let Ok(Some(n)) = handle(conf, &frame, &mut out) {
        assert!((14..=out.len()).contains(&n), "reply of {n} bytes");
        let eth = etherparse::Ethernet2Slice::from_slice_without_fcs(&out[..n])
            .expect("reply is an Ethernet frame");
        assert_eq!(eth.source(), conf.our_mac, "reply from our MAC");
        // Replies carry valid checksums: recomputing them changes nothing.
        let mut again = out[..n].to_vec();
        fix_checksums(&mut again);
        assert_eq!(again, &out[..n], "reply checksums");
    }
    // A short slot: never a length beyond it.
    let cut = usize::from(data.last().copied().unwrap_or(0)) * 4;
    if let Ok(Some(n)) = handle(conf, &frame, &mut out[..cut]) {
        assert!(n <= cut, "reply of {n} bytes in a {cut}-byte slot");
    }
}

/// ARP responder ([`crate::svc::arp::handle`]).
pub fn arp(data: &[u8]) {
    responder(data, crate::svc::arp::handle);
}

/// DHCPv4 server ([`crate::svc::dhcp::handle`]).
pub fn dhcp(data: &[u8]) {
    responder(data, crate::svc::dhcp::handle);
}

/// DHCPv6 server ([`crate::svc::dhcpv6::handle`]).
pub fn dhcpv6(data: &[u8]) {
    responder(data, crate::svc::dhcpv6::handle);
}

/// NDP responder: router and neighbour solicitations
/// ([`crate::svc::ndp::handle`]).
pub fn ndp(data: &[u8]) {
    responder(data, crate::svc::ndp::handle);
}

/// The Ethernet, IPv4/IPv6, TCP, UDP and ICMP(v6) layers as the data plane
/// reads and writes them: etherparse's checked slices as the dispatcher
/// uses them, the TCP header and options as [`crate::tcp::io`] reads them,
/// the checksum ([`csum::sum`] against a word-by-word reference), and
/// [`crate::wire::frame::push_ip_eth`] writing back headers that parse to
/// the same addresses, protocol and payload.
pub fn wire(data: &[u8]) {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let frame = frame_of(data);
    // Checksum: any start value, any data.
    let acc = u32::from_be_bytes([
        0,
        0,
        frame.first().copied().unwrap_or(0),
        frame.get(1).copied().unwrap_or(0),
    ]);
    let mut r = u64::from(acc);
    let mut words = frame.chunks_exact(2);
    for w in &mut words {
        r += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        r += u64::from(*last) << 8;
    }
    while r > 0xffff {
        r = (r & 0xffff) + (r >> 16);
    }
    assert_eq!(
        csum::fold(csum::sum(acc, &frame)),
        !(r as u16),
        "checksum against the reference"
    );

    let Ok(p) = SlicedPacket::from_ethernet(&frame) else {
        return;
    };
    let (src, dst, proto): (crate::flow::Inany, crate::flow::Inany, u8) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
            ip.payload().ip_number.0,
        ),
        Some(NetSlice::Ipv6(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
            ip.payload().ip_number.0,
        ),
        _ => return,
    };
    let l4: &[u8] = match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let s = crate::tcp::io::seg_in(t);
            assert_eq!(s.dlen, t.payload().len());
            assert_eq!(s.flags & conn::SYN != 0, t.syn());
            assert!(
                s.mss.is_none() && s.ws.is_none() || t.syn(),
                "options read from a SYN only"
            );
            t.slice()
        }
        Some(TransportSlice::Udp(u)) => u.slice(),
        Some(TransportSlice::Icmpv4(i)) => i.slice(),
        Some(TransportSlice::Icmpv6(i)) => i.slice(),
        _ => return,
    };
    // Write the L4 part back behind fresh headers and read it again.
    if l4.len() > 65535 - 40 {
        return;
    }
    let mut slot = vec![0u8; crate::tap::SLOT];
    slot[crate::wire::frame::L4_OFF..crate::wire::frame::L4_OFF + l4.len()].copy_from_slice(l4);
    let a = crate::wire::frame::FrameAddrs {
        src_mac: [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src,
        dst,
    };
    let range = crate::wire::frame::push_ip_eth(
        &mut slot,
        l4.len(),
        &a,
        proto,
        u32::from(data.len() as u16),
    );
    let q = SlicedPacket::from_ethernet(&slot[range]).expect("a frame we wrote parses");
    let (qsrc, qdst, qproto, qpayload): (crate::flow::Inany, crate::flow::Inany, u8, &[u8]) =
        match &q.net {
            Some(NetSlice::Ipv4(ip)) => (
                ip.header().source_addr().into(),
                ip.header().destination_addr().into(),
                ip.payload().ip_number.0,
                ip.payload().payload,
            ),
            Some(NetSlice::Ipv6(ip)) => (
                ip.header().source_addr().into(),
                ip.header().destination_addr().into(),
                ip.payload().ip_number.0,
                ip.payload().payload,
            ),
            _ => panic!("a frame we wrote has no IP header"),
        };
    assert_eq!(
        (qsrc, qdst, qproto),
        (src, dst, proto),
        "addresses and protocol written back"
    );
    assert_eq!(qpayload, l4, "payload written back");
}

/// The qemu stream framing ([`crate::tap::stream::StreamTap`]: 4-byte
/// big-endian length, then the frame) over a real socketpair. Input: a
/// count `k` (low 4 bits of the first byte), `k` 16-bit chunk sizes, then
/// the byte stream, written to the socket in chunks of those sizes in turn
/// (all at once if `k` is 0), each followed by receives. Frames must come
/// out whole, in order and exactly as a reference decoder cuts the stream.
/// A length outside 14..=65535 ends the connection (one-off, as with
/// `--fd`: the back-end is gone), counted once; frames before it may be
/// lost with it (upstream drops them too), never altered.
pub fn stream(data: &[u8]) {
    let mut inp = Input(data);
    let k = usize::from(inp.u8() & 0xf);
    let chunks: Vec<usize> = (0..k).map(|_| usize::from(inp.u16()) + 1).collect();
    let body = inp.0;
    // The reference decoder.
    let (mut expect, mut bad, mut off) = (Vec::new(), false, 0);
    while body.len() - off >= 4 {
        let len =
            u32::from_be_bytes([body[off], body[off + 1], body[off + 2], body[off + 3]]) as usize;
        if !(14..=65535).contains(&len) {
            bad = true;
            break;
        }
        if body.len() - off - 4 < len {
            break;
        }
        expect.push(&body[off + 4..off + 4 + len]);
        off += 4 + len;
    }
    let (a, mut g) = UnixStream::pair().expect("socketpair");
    let mut tap = crate::tap::stream::StreamTap::from_fd(OwnedFd::from(a)).expect("stream tap");
    g.set_nonblocking(true).expect("non-blocking");
    let mut rx = RxBatch::new();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut gone = false;
    // Receive until nothing complete is left (bounded: each call either
    // returns frames or finds none).
    let mut drain = |tap: &mut crate::tap::stream::StreamTap, got: &mut Vec<Vec<u8>>| -> bool {
        for _ in 0..4096 {
            match tap.recv_batch(&mut rx) {
                Ok(0) => return false,
                Ok(_) => got.extend(rx.frames.iter().map(|r| rx.buf[r.clone()].to_vec())),
                Err(TapError::Gone(_)) => return true,
                Err(e) => panic!("unexpected tap error {e}"),
            }
        }
        panic!("recv_batch never ran out of frames");
    };
    let (mut sent, mut i) = (0, 0);
    while sent < body.len() && !gone {
        let n = chunks.get(i % k.max(1)).copied().unwrap_or(body.len());
        i += 1;
        let chunk = &body[sent..(sent + n).min(body.len())];
        let mut w = 0;
        while w < chunk.len() && !gone {
            match g.write(&chunk[w..]) {
                Ok(m) => w += m,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    gone = drain(&mut tap, &mut got)
                }
                Err(_) => gone = true,
            }
        }
        sent += w;
        gone = gone || drain(&mut tap, &mut got);
    }
    assert_eq!(
        gone, bad,
        "connection ended, with a bad length in the stream: {bad}"
    );
    if bad {
        assert!(got.len() <= expect.len(), "frames after a bad length");
    } else {
        assert_eq!(got.len(), expect.len(), "frame count");
    }
    for (i, (g, e)) in got.iter().zip(&expect).enumerate() {
        assert!(g == e, "frame {i} differs");
    }
    assert_eq!(tap.bad_frames(), u64::from(bad));
}

/// The port specifier grammar of `-t`, `-u`, `-T`, `-U`
/// ([`crate::fwd_rule::parse_spec`], [`crate::fwd_rule::FwdTable`]).
/// Input: one byte choosing the option and the mode, then specifiers
/// separated by NUL bytes, added to one table in turn. Accepted rules keep
/// their invariants: valid ranges, targets within 1..=65535, no conflict
/// within the table; a refused specifier leaves the table unchanged.
pub fn port_spec(data: &[u8]) {
    use crate::fwd_rule::{FwdOpt, FwdTable, SpecCtx};
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let opt = [
        FwdOpt::TcpPorts,
        FwdOpt::UdpPorts,
        FwdOpt::TcpNs,
        FwdOpt::UdpNs,
    ][usize::from(sel & 3)];
    let ctx = SpecCtx::new(opt, sel & 4 != 0);
    let mut table = FwdTable::new();
    for spec in rest.split(|&b| b == 0).take(16) {
        let Ok(spec) = std::str::from_utf8(spec) else {
            continue;
        };
        let before = table.clone();
        match table.add_spec(spec, ctx) {
            Ok(()) => {
                for r in &table.rules[before.rules.len()..] {
                    assert!(
                        1 <= r.ports.first() && r.ports.first() <= r.ports.last(),
                        "range {r}"
                    );
                    assert!(
                        r.to >= 1 && u32::from(r.to) + r.ports.len() - 1 <= 65535,
                        "target of {r}"
                    );
                    assert_eq!(r.target_ports().len(), r.ports.len(), "{r}");
                    assert!(!r.scan || ctx.pasta, "auto in passt");
                    assert!(
                        !(opt.from_ns() && r.addr.is_some()),
                        "listening address with -{}",
                        opt.letter()
                    );
                    let _ = r.to_string();
                }
                for (i, a) in table.rules.iter().enumerate() {
                    for b in &table.rules[i + 1..] {
                        assert!(!a.conflicts(b), "conflicting rules {a} and {b}");
                    }
                }
            }
            Err(e) => {
                assert_eq!(table, before, "table changed by a refused specifier");
                let _ = e.to_string();
            }
        }
    }
}

thread_local! {
    static DISPATCH_CTX: RefCell<Option<Ctx>> = const { RefCell::new(None) };
}

/// Move the calling thread into a new, empty network namespace (only
/// loopback, down): flows opened by random frames reach nothing. As root
/// (CAP_SYS_ADMIN), else with a new user namespace too, which needs a
/// single-threaded process.
///
/// # Errors
/// The OS error of unshare(2).
pub fn isolate_net() -> std::io::Result<()> {
    // SAFETY: plain syscall, affects this thread's namespaces only.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0 {
        return Ok(());
    }
    // SAFETY: as above.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } == 0 {
        return Ok(());
    }
    Err(std::io::Error::last_os_error())
}

/// Raw frames into [`crate::daemon::dispatch_frame`] on a
/// [`crate::daemon::test_ctx`] kept across inputs. One input is a sequence
/// of frames, each behind a 16-bit big-endian length (a frame whose length
/// byte pair has the top bit set gets its checksums fixed). Afterwards every
/// flow opened is closed and freed, so the table never fills.
///
/// Must run in a network namespace of its own (see [`isolate_net`]).
pub fn frame_dispatch(data: &[u8]) {
    DISPATCH_CTX.with_borrow_mut(|slot| {
        let ctx = slot.get_or_insert_with(|| crate::daemon::test_ctx().expect("test context"));
        let mut rest = data;
        while rest.len() >= 2 {
            let hdr = u16::from_be_bytes([rest[0], rest[1]]);
            let len = usize::from(hdr & 0x7fff).min(rest.len() - 2);
            let mut f = rest[2..2 + len].to_vec();
            if hdr & 0x8000 != 0 {
                fix_checksums(&mut f);
            }
            crate::daemon::dispatch_frame(ctx, &f);
            rest = &rest[2 + len..];
        }
        crate::tcp::io::flush_acks(ctx);
        ctx.flush_tx();
        let idx: Vec<usize> = ctx.flows.active_indices().collect();
        for i in idx {
            ctx.flows.close(i);
        }
        ctx.flows.defer_free(|f| f.data = FlowData::None);
        assert!(ctx.flows.is_empty(), "flows left after closing every one");
    });
}

/// The host socket of [`tcp_conn`], modelled: what the peer sent and the
/// guest has not acknowledged yet, room for the guest's data, end of file.
#[derive(Debug, Default)]
struct Sock {
    /// Bytes in the receive queue (sent to the guest or not).
    queued: u64,
    /// Room left in the send buffer for data from the guest.
    room: u64,
    /// The peer closed its side (no more data after `queued`).
    eof: bool,
    /// Bytes the guest sent that the socket took.
    written: u64,
}

/// Largest payload per segment towards the tap in [`tcp_conn`].
const TCP_MSS_MAX: u16 = 65480;

/// One TCP connection of [`TcpConn`] driven by events decoded from the
/// input, with the socket side modelled (`Sock`) and the I/O layer's
/// part played the way [`crate::tcp::io`] plays it: write what the guest
/// sent, discard what it acknowledged, send host data within its window,
/// FIN after the peer's end of file, RST on a peer reset, run the timers.
///
/// Events (one byte each, then their arguments): a segment from the guest
/// (flags, sequence and acknowledgement numbers near the live ones or
/// arbitrary, window, payload length, MSS and window scale options), peer
/// data, peer end of file, peer reset, socket room, a window update, time
/// passing (milliseconds to hours). Invariants checked after every event:
/// - SND.UNA <= SND.NXT, and what is in flight is never more than the
///   socket holds (plus our FIN);
/// - the guest never acknowledges more than the socket holds;
/// - RCV.NXT moved by exactly what the socket took (plus the guest's FIN);
/// - every segment we send acknowledges RCV.NXT;
/// - after a reset (either side) nothing more is written or sent;
/// - with time running and no more input, every connection ends within the
///   idle timeout and its flow is freed from a real [`FlowTable`].
pub fn tcp_conn(data: &[u8]) {
    let mut inp = Input(data);
    let t0 = Instant::now();
    let mut now = t0;
    let mut table: FlowTable<()> = FlowTable::new(4, (1, 2));
    let side = FlowSide::UNSPEC;
    let idx = table
        .alloc(Proto::Tcp, [Pif::Tap, Pif::Host], [side, side], ())
        .expect("empty table");
    let mut sock = Sock {
        room: u64::from(inp.u16()) * 16,
        ..Sock::default()
    };
    let isn = inp.u32();
    let guest_isn = inp.u32();
    let guest_opens = inp.u8() & 1 == 0;
    let mut c = if guest_opens {
        let syn = SegIn {
            seq: guest_isn,
            flags: conn::SYN,
            wnd: inp.u16(),
            mss: Some(inp.u16()).filter(|m| *m != 0),
            ws: Some(inp.u8()).filter(|w| *w != 0xff),
            ..SegIn::default()
        };
        let mut c = TcpConn::from_tap_syn(now, &syn, isn, TCP_MSS_MAX);
        c.set_wnd_to_tap(sock.room.min(u64::from(u32::MAX)) as u32);
        let s = c.handle_connected(now, TCP_MSS_MAX);
        assert_eq!(s.ack, guest_isn.wrapping_add(1));
        c
    } else {
        let (c, s) = TcpConn::to_tap_syn(now, isn, TCP_MSS_MAX, 65535);
        assert_eq!(s.seq, isn);
        c
    };
    // RCV.NXT before any data (set by the handshake for host-opened ones).
    let mut rcv_base = guest_opens.then(|| guest_isn.wrapping_add(1));
    let mut fin_rcvd = false;
    let mut closed = false;
    let mut flow_open = true;

    let check_out = |c: &TcpConn, s: &SegOut| {
        assert_eq!(s.ack, c.seq_from_tap, "segment acknowledges RCV.NXT");
    };
    // The I/O layer's sending: data within the window, then our FIN.
    let send = |c: &mut TcpConn, sock: &Sock, now: Instant| {
        for _ in 0..64 {
            if c.state != State::Established || c.tap_fin_sent {
                return;
            }
            let in_flight = u64::from(c.in_flight());
            let unsent = sock.queued.saturating_sub(in_flight);
            if unsent == 0 {
                if sock.eof {
                    if let Some(s) = c.fin_segment(now) {
                        check_out(c, &s);
                    }
                }
                return;
            }
            let budget = c.send_budget(unsent.min(1 << 20) as usize);
            if budget == 0 {
                if c.wnd_from_tap == 0 {
                    c.arm_persist(now);
                }
                return;
            }
            let dlen = budget.min(usize::from(c.mss_to_tap));
            let s = c.data_segment(now, dlen, true);
            check_out(c, &s);
        }
    };

    for _ in 0..256 {
        if inp.is_empty() {
            break;
        }
        let op = inp.u8();
        match op % 8 {
            // A segment from the guest.
            0..=2 => 'seg: {
                let flags = inp.u8() & 0x1f;
                let mode = inp.u8();
                let seq = match mode & 3 {
                    0 => c.seq_from_tap,
                    1 => c.seq_from_tap.wrapping_add(u32::from(inp.u16())),
                    2 => c.seq_from_tap.wrapping_sub(u32::from(inp.u16())),
                    _ => inp.u32(),
                };
                let ack = match (mode >> 2) & 3 {
                    0 => c.seq_to_tap,
                    1 => c.seq_ack_from_tap.wrapping_add(u32::from(inp.u16())),
                    2 => c.seq_to_tap.wrapping_sub(u32::from(inp.u8())),
                    _ => inp.u32(),
                };
                let wnd = inp.u16();
                let dlen = usize::from(inp.u16() % 3000);
                let (mss, ws) = if mode & 0x10 != 0 {
                    (Some(inp.u16()), Some(inp.u8()))
                } else {
                    (None, None)
                };
                let seg = SegIn {
                    seq,
                    ack,
                    flags,
                    wnd,
                    dlen,
                    mss,
                    ws,
                };
                let was_established = c.state == State::Established;
                let before_una = c.seq_ack_from_tap;
                let a = c.handle_tap_segment(now, &seg, TCP_MSS_MAX);
                if closed {
                    assert_eq!(
                        a,
                        Default::default(),
                        "action after the connection was reset"
                    );
                    break 'seg;
                }
                if c.state == State::Established && rcv_base.is_none() {
                    rcv_base = Some(c.seq_from_tap);
                }
                assert!(
                    a.write.end <= seg.dlen && a.write.start <= a.write.end,
                    "write range {:?} of {}",
                    a.write,
                    seg.dlen
                );
                assert!(
                    u64::from(a.acked) <= sock.queued,
                    "guest acknowledged {} of {} bytes",
                    a.acked,
                    sock.queued
                );
                if a.acked > 0 {
                    assert!(was_established || c.state == State::Established);
                    assert!(conn::seq_lt(before_una, c.seq_ack_from_tap));
                }
                sock.queued -= u64::from(a.acked);
                if a.reset {
                    assert_eq!(c.state, State::Closed);
                    closed = true;
                    break 'seg;
                }
                if !a.write.is_empty() || a.fin {
                    let want = a.write.len() as u64;
                    let took = want.min(sock.room);
                    sock.room -= took;
                    sock.written += took;
                    let fin = a.fin && took == want;
                    c.handle_written(took as usize, want as usize, fin);
                    fin_rcvd |= fin;
                }
                if let Some(r) = a.reply {
                    assert_eq!(r.ack, c.seq_from_tap);
                }
                if a.ack_now || c.ack_needed() {
                    let s = c.ack_segment();
                    check_out(&c, &s);
                }
                if a.can_send || a.rewind {
                    send(&mut c, &sock, now);
                }
            }
            // Peer data.
            3 => {
                if !sock.eof {
                    sock.queued += u64::from(inp.u16());
                }
                send(&mut c, &sock, now);
            }
            // Peer end of file, or a reset.
            4 => {
                if inp.u8() & 1 == 0 {
                    sock.eof = true;
                    send(&mut c, &sock, now);
                } else if !closed {
                    let s = c.rst_segment();
                    check_out(&c, &s);
                    c.close();
                    closed = true;
                }
            }
            // The socket drained: room for the guest's data again.
            5 => {
                sock.room += u64::from(inp.u16());
                c.set_wnd_to_tap(sock.room.min(u64::from(u32::MAX)) as u32);
                for _ in 0..c.handle_sock_writable() {
                    let s = c.ack_segment();
                    check_out(&c, &s);
                }
            }
            // Window update owed?
            6 => {
                c.set_wnd_to_tap(sock.room.min(u64::from(u32::MAX)) as u32);
                if c.ack_needed() {
                    let s = c.ack_segment();
                    check_out(&c, &s);
                }
            }
            // Time passes: milliseconds, seconds or up to hours.
            _ => {
                let v = u64::from(inp.u16());
                let d = match inp.u8() % 3 {
                    0 => Duration::from_millis(v),
                    1 => Duration::from_secs(v % 600),
                    _ => Duration::from_secs(v),
                };
                now += d;
                closed |= timeout(&mut c, &sock, now, &send, &check_out);
            }
        }
        check_invariants(&c, &sock, rcv_base, fin_rcvd, closed);
        flow_open = release(&c, &mut table, idx, flow_open);
    }
    // No more input: time runs until the connection is gone, within the
    // idle timeout (window probes every RTO_MAX at most keep it no longer).
    let last = now;
    for _ in 0..1024 {
        if c.state == State::Closed {
            break;
        }
        now = now.max(c.poll_timeout());
        closed |= timeout(&mut c, &sock, now, &send, &check_out);
        check_invariants(&c, &sock, rcv_base, fin_rcvd, closed);
        flow_open = release(&c, &mut table, idx, flow_open);
    }
    assert!(
        c.state == State::Closed && now.duration_since(last) <= conn::IDLE_TIMEOUT + conn::RTO_MAX,
        "connection alive {:?} after the last event ({:?})",
        now.duration_since(t0),
        c.state
    );
    assert!(!flow_open && table.is_empty(), "flow leaked");
}

/// Close and free the flow once the connection is done, as
/// [`crate::tcp::io`] does after each event; returns whether it is open.
fn release(c: &TcpConn, table: &mut FlowTable<()>, idx: usize, open: bool) -> bool {
    if open && c.is_done() {
        table.close(idx);
        table.defer_free(|_| {});
        return false;
    }
    open
}

/// Run the connection's timers at `now`, the I/O layer's way; true if it
/// was reset.
fn timeout(
    c: &mut TcpConn,
    sock: &Sock,
    now: Instant,
    send: &impl Fn(&mut TcpConn, &Sock, Instant),
    check_out: &impl Fn(&TcpConn, &SegOut),
) -> bool {
    if c.poll_timeout() > now {
        return false;
    }
    match c.handle_timeout(now, TCP_MSS_MAX) {
        TimeoutAction::None => {}
        TimeoutAction::Resend(s) => {
            assert_eq!(s.flags & conn::SYN, conn::SYN, "handshake resend is a SYN")
        }
        TimeoutAction::Rewind => {
            assert_eq!(c.in_flight(), 0, "rewind resends from SND.UNA");
            send(c, sock, now);
        }
        TimeoutAction::Probe(s) => check_out(c, &s),
        TimeoutAction::Reset => {
            assert_eq!(c.state, State::Closed);
            return true;
        }
    }
    false
}

fn check_invariants(c: &TcpConn, sock: &Sock, rcv_base: Option<u32>, fin_rcvd: bool, closed: bool) {
    if closed {
        assert_eq!(c.state, State::Closed, "reset connection came back");
        return;
    }
    assert!(
        conn::seq_le(c.seq_ack_from_tap, c.seq_to_tap),
        "SND.UNA {} beyond SND.NXT {}",
        c.seq_ack_from_tap,
        c.seq_to_tap
    );
    // Our SYN and FIN take a sequence number each, no byte of the socket.
    let syn = u64::from(matches!(c.state, State::SynAckSent | State::SynToTap));
    let fin = u64::from(c.tap_fin_sent && !c.tap_fin_acked);
    assert!(
        u64::from(c.in_flight()) <= sock.queued + syn + fin,
        "{} bytes in flight, socket holds {}",
        c.in_flight(),
        sock.queued
    );
    if let Some(base) = rcv_base {
        let moved = c.seq_from_tap.wrapping_sub(base);
        assert_eq!(
            u64::from(moved),
            sock.written + u64::from(fin_rcvd),
            "RCV.NXT moved by what the socket took"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every file of `fuzz/seeds/TARGET/` and `fuzz/regressions/TARGET/`
    /// through its target. Targets opening sockets run in a thread moved to
    /// a network namespace of its own.
    #[test]
    fn seeds_and_regressions_replay_without_finding() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut n = 0;
        for &(name, f) in TARGETS {
            let mut inputs = Vec::new();
            for dir in ["seeds", "regressions"] {
                let Ok(rd) = std::fs::read_dir(root.join(dir).join(name)) else {
                    continue;
                };
                for e in rd.flatten() {
                    let p = e.path();
                    if p.is_file() && p.extension().is_none_or(|x| x != "md" && x != "py") {
                        inputs.push(p);
                    }
                }
            }
            assert!(!inputs.is_empty(), "no seeds for fuzz target {name}");
            n += inputs.len();
            let run = move || {
                for p in inputs {
                    let data = std::fs::read(&p).unwrap();
                    let r = std::panic::catch_unwind(|| f(&data));
                    assert!(r.is_ok(), "fuzz target {name} fails on {}", p.display());
                }
            };
            if name == "frame_dispatch" {
                std::thread::spawn(move || {
                    isolate_net().expect("a network namespace for frame_dispatch (run as root)");
                    run();
                })
                .join()
                .unwrap();
            } else {
                run();
            }
        }
        assert!(n > 0);
    }

    #[test]
    fn fixed_checksums_verify() {
        // A UDP/IPv4 frame with zeroed checksums: fixed, both verify.
        let mut f = vec![0u8; 14 + 20 + 8 + 4];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&32u16.to_be_bytes());
        f[23] = 17;
        f[26..30].copy_from_slice(&[192, 0, 2, 2]);
        f[30..34].copy_from_slice(&[192, 0, 2, 1]);
        f[38..40].copy_from_slice(&12u16.to_be_bytes());
        f[42..46].copy_from_slice(b"abcd");
        fix_checksums(&mut f);
        assert_eq!(csum::fold(csum::sum(0, &f[14..34])), 0);
        let acc = csum::pseudo4(
            Ipv4Addr::new(192, 0, 2, 2),
            Ipv4Addr::new(192, 0, 2, 1),
            17,
            12,
        );
        assert_eq!(csum::fold(csum::sum(acc, &f[34..46])), 0);
    }
}
