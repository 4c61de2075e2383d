//! # Theory of operation
//!
//! No allocation on the per-packet path (STYLE.md §2), checked with a
//! counting global allocator. The data plane runs on an in-memory tap
//! ([`passt::daemon::test_ctx`]) against real loopback sockets; after a
//! warm-up (flows open, buffers grown), allocations are counted on this
//! thread only, and only inside the data plane's calls: frames from the tap
//! ([`passt::daemon::dispatch_frame`]: UDP datagrams and TCP segments with
//! data and ACKs to the host), replies from the host (UDP and TCP socket
//! handlers building frames in the transmit slots). Building the test's
//! frames, the peers' I/O and reading the transmit queue are not counted;
//! neither is the tap back-end's write (the in-memory tap keeps copies; the
//! real back-ends write the slots in place).
//!
//! One `#[test]` in this binary, so nothing else allocates on its thread
//! while counting.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::time::Duration;

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use passt::daemon::{dispatch_frame, test_ctx, Ctx};
use passt::flow::{FlowSide, Inany, Pif, Proto, Sidx, TGT};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counters are thread-local
// Cells (no allocation, no reentrancy).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Run `f` with allocations counted; returns how many it made.
fn counted<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = ALLOCS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCS.with(Cell::get) - before)
}

const GUEST: [u8; 6] = [2, 0, 0, 0, 0, 2];
const OUR: [u8; 6] = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55];
const GW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const ME: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn udp_frame(dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(GUEST, OUR)
        .ipv4(ME.octets(), GW.octets(), 64)
        .udp(40000, dport)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn tcp_frame(dport: u16, seq: u32, ack: Option<u32>, syn: bool, payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(GUEST, OUR)
        .ipv4(ME.octets(), GW.octets(), 64)
        .tcp(45000, dport, seq, 65535);
    if syn {
        b = b.syn();
    }
    if let Some(a) = ack {
        b = b.ack(a);
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// (seq, ack, syn, payload length) of the TCP segments queued to the tap.
fn tcp_out(ctx: &Ctx) -> Vec<(u32, u32, bool, usize)> {
    ctx.tx
        .frames()
        .filter_map(|f| {
            let p = SlicedPacket::from_ethernet(f).ok()?;
            let Some(TransportSlice::Tcp(t)) = p.transport else {
                return None;
            };
            Some((
                t.sequence_number(),
                t.acknowledgment_number(),
                t.syn(),
                t.payload().len(),
            ))
        })
        .collect()
}

#[test]
fn steady_state_udp_and_tcp_data_paths_do_not_allocate() {
    // The counter sees this thread's allocations.
    let (v, n) = counted(|| Vec::<u8>::with_capacity(64));
    assert_eq!(
        (v.capacity() >= 64, n),
        (true, 1),
        "the counting allocator counts"
    );
    let mut ctx = test_ctx().unwrap();

    // ---- UDP: guest -> host loopback (through the gateway) and back ----
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let uport = server.local_addr().unwrap().port();
    let uside = FlowSide {
        eaddr: Inany::from(ME),
        eport: 40000,
        oaddr: Inany::from(GW),
        oport: uport,
    };
    let frame = udp_frame(uport, &[0x5a; 1000]);
    let mut buf = [0u8; 2048];
    let mut udp_allocs = 0;
    for round in 0..300 {
        let (_, n) = counted(|| dispatch_frame(&mut ctx, &frame));
        let (len, from) = server.recv_from(&mut buf).expect("datagram at the server");
        assert_eq!(len, 1000);
        server.send_to(&buf[..len], from).unwrap();
        let sidx = ctx
            .flows
            .lookup(Pif::Tap, Proto::Udp, &uside)
            .expect("UDP flow");
        let mut got = false;
        let mut m = 0;
        for _ in 0..200 {
            let (_, k) = counted(|| {
                passt::udp::sock_ready(
                    &mut ctx,
                    Sidx::new(sidx.flow() as u32, TGT),
                    libc::EPOLLIN as u32,
                )
            });
            m += k;
            if !ctx.tx.is_empty() {
                got = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(got, "reply frame queued");
        ctx.tx.clear();
        // The first rounds open the flow (socket, table slot) and may grow buffers.
        if round >= 10 {
            udp_allocs += n + m;
        }
    }
    assert_eq!(
        udp_allocs, 0,
        "allocations on the UDP path in 290 steady-state round trips"
    );

    // ---- TCP: handshake, then data both ways with ACKs ----
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let tport = l.local_addr().unwrap().port();
    dispatch_frame(&mut ctx, &tcp_frame(tport, 1000, None, true, &[]));
    let tside = FlowSide {
        eaddr: Inany::from(ME),
        eport: 45000,
        oaddr: Inany::from(GW),
        oport: tport,
    };
    let idx = ctx
        .flows
        .lookup(Pif::Tap, Proto::Tcp, &tside)
        .expect("TCP flow")
        .flow();
    let host = Sidx::new(idx as u32, TGT);
    for _ in 0..200 {
        if tcp_out(&ctx).iter().any(|o| o.2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
        passt::tcp::io::sock_ready(&mut ctx, host, libc::EPOLLOUT as u32);
    }
    let isn = tcp_out(&ctx).iter().find(|o| o.2).expect("SYN-ACK").0;
    ctx.tx.clear();
    let (mut peer, _) = l.accept().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut seq_in = 1001u32; // next guest sequence number
    let mut seq_out = isn.wrapping_add(1); // next byte from the host, as the guest acknowledges
    dispatch_frame(
        &mut ctx,
        &tcp_frame(tport, seq_in, Some(seq_out), false, &[]),
    );
    passt::tcp::io::flush_acks(&mut ctx);
    ctx.tx.clear();

    let up = [0xa5u8; 1400];
    let down = [0x3cu8; 1400];
    let mut tcp_allocs = 0;
    let mut rbuf = [0u8; 1400];
    for round in 0..300 {
        // Guest -> host: one data segment, staged and written at the batch end.
        let f = tcp_frame(tport, seq_in, Some(seq_out), false, &up);
        let (_, a) = counted(|| {
            ctx.in_batch = true;
            dispatch_frame(&mut ctx, &f);
            ctx.in_batch = false;
            passt::tcp::io::flush_stage(&mut ctx);
            passt::tcp::io::flush_acks(&mut ctx);
        });
        seq_in = seq_in.wrapping_add(up.len() as u32);
        peer.read_exact(&mut rbuf).expect("guest data at the peer");
        assert_eq!(rbuf, up);
        ctx.tx.clear();
        // Host -> guest: the peer writes, the socket handler builds segments.
        peer.write_all(&down).unwrap();
        let mut got = 0;
        let mut b = 0;
        for _ in 0..200 {
            let (_, k) =
                counted(|| passt::tcp::io::sock_ready(&mut ctx, host, libc::EPOLLIN as u32));
            b += k;
            got += tcp_out(&ctx).iter().map(|o| o.3).sum::<usize>();
            ctx.tx.clear();
            if got >= down.len() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(got, down.len(), "host data reached the tap");
        seq_out = seq_out.wrapping_add(down.len() as u32);
        // The guest acknowledges it (the socket then drops it).
        let ack = tcp_frame(tport, seq_in, Some(seq_out), false, &[]);
        let (_, c) = counted(|| dispatch_frame(&mut ctx, &ack));
        ctx.tx.clear();
        if round >= 10 {
            tcp_allocs += a + b + c;
        }
    }
    assert_eq!(
        tcp_allocs, 0,
        "allocations on the TCP path in 290 steady-state exchanges"
    );
}
