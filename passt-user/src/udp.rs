//! # Theory of operation
//!
//! UDP from the guest or namespace, without a UDP stack: each (guest
//! address/port, destination address/port) is a flow with its own host
//! socket, connected to the destination chosen by [`crate::fwd`], so the
//! kernel matches replies to the flow for us. Datagrams from the tap are
//! sent with send(2); replies are read in batches with recvmmsg(2) straight
//! into transmit slots, and the UDP, IP and Ethernet headers are written in
//! front of them (no copy). A flow idle for [`UDP_TIMEOUT`] is closed.
//!
//! The tap side of a flow keeps the addresses the guest used, so replies
//! go back with the source the guest expects even when the host side was
//! translated (gateway to loopback, DNS forwarding).
//!
//! Syscalls: socket, bind, connect, send, recvmmsg, getsockopt, close.

use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::daemon::Ctx;
use crate::flow::{FlowData, FlowSide, Inany, Proto, Sidx, INI, TGT};
use crate::fwd::L4;
use crate::sys;
use crate::tap::SLOT;
use crate::wire::{csum, frame};

/// Idle timeout of a UDP flow (upstream uses 180 s).
pub const UDP_TIMEOUT: Duration = Duration::from_secs(180);

const IPPROTO_UDP: u8 = 17;
const UDP_HDR: usize = 8;

/// Handle one datagram from the tap: `src`:`sport` (the guest) to
/// `dst`:`dport`, with `payload` the UDP payload (length already checked
/// against the UDP and IP headers by the caller).
pub fn from_tap(ctx: &mut Ctx, src: Inany, dst: Inany, sport: u16, dport: u16, payload: &[u8]) {
    let ini = FlowSide { eaddr: src, eport: sport, oaddr: dst, oport: dport };
    let Some((fd, _)) = ctx.tap_sock_flow(Proto::Udp, ini, open_flow) else { return };
    match sys::send(fd, payload, None) {
        Ok(_) => {}
        Err(e) => {
            ctx.counters.drop_host_send += 1;
            log::trace!("UDP: send to host failed: {e}");
        }
    }
}

fn open_flow(ctx: &mut Ctx, ini: FlowSide) -> Option<Sidx> {
    let Some(eaddr) = ctx.fwd.from_tap(L4::Udp, ini.oaddr, ini.oport) else {
        ctx.counters.drop_addr += 1;
        return None;
    };
    let v4 = eaddr.is_v4();
    let sock = match sys::socket(v4, libc::SOCK_DGRAM, 0) {
        Ok(s) => s,
        Err(e) => {
            ctx.counters.drop_socket += 1;
            log::debug!("UDP: socket: {e}");
            return None;
        }
    };
    let fd = sock.as_raw_fd();
    let bound = match ctx.fwd.outbound(v4) {
        Some(o) if !eaddr.is_loopback() => sys::bind(fd, o, 0),
        _ => Ok(()),
    };
    if let Err(e) = bound.and_then(|()| sys::connect(fd, eaddr, ini.oport)) {
        ctx.counters.drop_socket += 1;
        log::debug!("UDP: connect to {eaddr}:{}: {e}", ini.oport);
        return None;
    }
    let (oaddr, oport) = sys::local_addr(fd).unwrap_or((Inany::UNSPEC4, 0));
    let tgt = FlowSide { eaddr, eport: ini.oport, oaddr, oport };
    let s = ctx.new_sock_flow(Proto::Udp, ini, tgt, sock, FlowData::Udp)?;
    ctx.counters.udp_flows += 1;
    log::debug!("UDP flow {}: {}:{} -> {}:{} via {eaddr}", s.flow(), ini.eaddr, ini.eport, ini.oaddr, ini.oport);
    Some(s)
}

/// The host socket of flow side `sidx` is readable (or has an error):
/// move queued datagrams to the tap, in batches of free transmit slots.
pub fn sock_ready(ctx: &mut Ctx, sidx: Sidx, events: u32) {
    let Some(f) = ctx.flows.get(sidx.flow()) else { return };
    let (FlowData::Udp(sf), TGT) = (&f.data, sidx.side()) else { return };
    let fd = sf.sock.as_raw_fd();
    let label = sf.flow_label;
    let tap = f.side[INI];
    if events & libc::EPOLLERR as u32 != 0 {
        // ICMP errors (port unreachable...) on a connected socket: clear them.
        let err = sys::take_error(fd);
        log::trace!("UDP flow {}: socket error {err}", sidx.flow());
    }
    let mut out = [sys::Datagram { len: 0, truncated: false, from: None }; 64];
    let mut moved = false;
    // Bounded: at most 16 batches per wakeup, then back to epoll (level
    // triggered, so the rest is picked up on the next cycle).
    for _ in 0..16 {
        if ctx.tx.is_full() {
            ctx.flush_tx();
        }
        let room = ctx.tx.room();
        let bufs = ctx.tx.free_slots().map(|s| &mut s[frame::L4_OFF + UDP_HDR..SLOT]);
        let n = match sys::recv_batch(fd, bufs, &mut out) {
            Ok(n) => n,
            Err(e) => {
                log::trace!("UDP flow {}: recv: {e}", sidx.flow());
                break;
            }
        };
        emit(ctx, &tap, label, &out[..n]);
        moved |= n > 0;
        if n < room {
            break;
        }
    }
    if moved {
        let now = ctx.now;
        if let Some(sf) = ctx.flows.get_mut(sidx.flow()).and_then(|f| f.data.sock_flow_mut()) {
            sf.last = now;
        }
    }
}

/// Largest UDP payload that fits an IPv6 (or IPv4) packet of 65535 bytes.
const MAX_DLEN: usize = 65535 - 40 - UDP_HDR;

/// Turn datagrams received into consecutive free slots into frames, then
/// consume those slots.
fn emit(ctx: &mut Ctx, tap: &FlowSide, label: u32, dgrams: &[sys::Datagram]) {
    let addrs = frame::FrameAddrs { src_mac: ctx.our_mac, dst_mac: ctx.guest_mac, src: tap.oaddr, dst: tap.eaddr };
    for (i, d) in dgrams.iter().enumerate() {
        if d.truncated || d.len > MAX_DLEN {
            ctx.counters.drop_host_oversize += 1;
            continue;
        }
        let Some(slot) = ctx.tx.slot(i) else { break };
        let l4len = UDP_HDR + d.len;
        let h = &mut slot[frame::L4_OFF..frame::L4_OFF + UDP_HDR];
        h[0..2].copy_from_slice(&tap.oport.to_be_bytes());
        h[2..4].copy_from_slice(&tap.eport.to_be_bytes());
        h[4..6].copy_from_slice(&(l4len as u16).to_be_bytes());
        h[6..8].copy_from_slice(&[0, 0]);
        let acc = frame::pseudo(tap.oaddr, tap.eaddr, IPPROTO_UDP, l4len);
        let mut c = csum::fold(csum::sum(acc, &slot[frame::L4_OFF..frame::L4_OFF + l4len]));
        if c == 0 {
            c = 0xffff;
        }
        slot[frame::L4_OFF + 6..frame::L4_OFF + 8].copy_from_slice(&c.to_be_bytes());
        let r = frame::push_ip_eth(slot, l4len, &addrs, IPPROTO_UDP, label);
        ctx.tx.commit_in(i, r);
    }
    ctx.tx.advance(dgrams.len());
}
