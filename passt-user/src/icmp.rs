//! # Theory of operation
//!
//! ICMP and ICMPv6 echo (RFC 792, RFC 4443 §4.1) through unprivileged
//! "ping" sockets (icmp(7): SOCK_DGRAM, IPPROTO_ICMP/IPPROTO_ICMPV6). Each
//! (guest address, destination, echo identifier) is a flow with its own
//! socket. To keep the guest's identifier, the socket is bound with the
//! identifier as its "port"; if that bind fails, the kernel picks one and
//! replies are mapped back to the guest's identifier (passt(1), NOTES,
//! "ICMP/ICMPv6 Echo sockets").
//!
//! The kernel fills in the identifier and checksum of what we send; we
//! rewrite both in what we receive, then put IP and Ethernet headers in
//! front. Ping sockets need net.ipv4.ping_group_range to include our group;
//! if it does not, one warning says so and echo requests are dropped.
//! A flow idle for [`PING_TIMEOUT`] is closed.
//!
//! Syscalls: socket, bind, sendto, recvmmsg, close, getgid (the
//! ping_group_range warning).

use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::daemon::Ctx;
use crate::flow::{FlowData, FlowSide, Inany, Pif, Proto, Sidx, INI, TGT};
use crate::fwd::L4;
use crate::limits::{self, Refusal};
use crate::sys;
use crate::tap::SLOT;
use crate::wire::{csum, frame};

/// The ping_group_range warning was given (by any worker).
static PING_WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Idle timeout of an echo flow (upstream uses 60 s).
pub const PING_TIMEOUT: Duration = Duration::from_secs(60);

const ICMP_ECHO_REPLY: u8 = 0;
const ICMPV6_ECHO_REPLY: u8 = 129;

/// Handle one echo request from the tap. `msg` is the whole ICMP/ICMPv6
/// message (8-byte header and data, at least 8 bytes, checked by the
/// caller), `id` its identifier.
///
/// # Errors
/// The request starts a new flow that was refused (counted):
/// [`Refusal::Prohibited`] when out of flow slots or descriptors, for the
/// caller to answer with an ICMP error ([`crate::limits`]).
pub fn from_tap(ctx: &mut Ctx, src: Inany, dst: Inany, id: u16, msg: &[u8]) -> Result<(), Refusal> {
    let ini = FlowSide { eaddr: src, eport: id, oaddr: dst, oport: id };
    let (fd, tgt) = ctx.tap_sock_flow(Proto::Ping, ini, open_flow)?;
    if let Err(e) = sys::send(fd, msg, Some((tgt.eaddr, 0))) {
        ctx.counters.drop_host_send += 1;
        log::trace!("ping: sendto {}: {e}", tgt.eaddr);
    }
    Ok(())
}

fn open_flow(ctx: &mut Ctx, ini: FlowSide) -> Result<Sidx, Refusal> {
    let Some(eaddr) = ctx.fwd.from_tap(L4::Ping, ini.oaddr, 0) else {
        ctx.counters.drop_addr += 1;
        return Err(Refusal::Dropped);
    };
    if ctx.flows.is_full() {
        ctx.counters.drop_flow_table_full += 1;
        return Err(Refusal::Prohibited);
    }
    let v4 = eaddr.is_v4();
    let proto = if v4 { libc::IPPROTO_ICMP } else { libc::IPPROTO_ICMPV6 };
    let sock = match sys::socket(v4, libc::SOCK_DGRAM, proto) {
        Ok(s) => s,
        Err(e) if limits::out_of_fds(&e) => {
            ctx.counters.drop_no_fds += 1;
            log::debug!("ping: socket: {e}");
            return Err(Refusal::Prohibited);
        }
        Err(e) => {
            ctx.counters.drop_socket += 1;
            // Once per process, not per worker (`--threads`).
            if !PING_WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                if e.raw_os_error() == Some(libc::EACCES) {
                    // SAFETY: getgid cannot fail.
                    let gid = unsafe { libc::getgid() };
                    log::warn!(
                        "ICMP echo not possible: net.ipv4.ping_group_range does not include our group {gid}; \
                         widen it (sysctl -w net.ipv4.ping_group_range=\"0 2147483647\") to forward ping"
                    );
                } else {
                    log::warn!("ICMP echo not possible: can't open ping socket: {e}");
                }
            }
            return Err(Refusal::Dropped);
        }
    };
    let fd = sock.as_raw_fd();
    if let Err(e) = ctx.fwd.bind_outbound_if(fd, v4, eaddr) {
        ctx.counters.drop_socket += 1;
        log::debug!("ping: --outbound-if{}: {e}", if v4 { 4 } else { 6 });
        return Err(Refusal::Dropped);
    }
    let src = ctx.fwd.outbound(v4).filter(|_| !eaddr.is_loopback()).unwrap_or(if v4 { Inany::UNSPEC4 } else { Inany::UNSPEC6 });
    if sys::bind(fd, src, ini.eport).is_err() {
        // Identifier taken or bind refused: let the kernel pick one and map
        // replies back to the guest's.
        if let Err(e) = sys::bind(fd, src, 0) {
            ctx.counters.drop_socket += 1;
            log::debug!("ping: bind: {e}");
            return Err(Refusal::Dropped);
        }
    }
    let (oaddr, oport) = sys::local_addr(fd).unwrap_or((src, 0));
    let tgt = FlowSide { eaddr, eport: oport, oaddr, oport };
    let s = ctx.new_sock_flow(Proto::Ping, [Pif::Tap, Pif::Host], [ini, tgt], sock, FlowData::Ping).ok_or(Refusal::Dropped)?;
    ctx.counters.ping_flows += 1;
    log::debug!("ping flow {}: {} id {} -> {} via {eaddr} id {oport}", s.flow(), ini.eaddr, ini.eport, ini.oaddr);
    Ok(s)
}

/// The ping socket of flow side `sidx` is readable: move replies to the tap.
pub fn sock_ready(ctx: &mut Ctx, sidx: Sidx, _events: u32) {
    let Some(f) = ctx.flows.get(sidx.flow()) else { return };
    let (FlowData::Ping(sf), TGT) = (&f.data, sidx.side()) else { return };
    let fd = sf.sock.as_raw_fd();
    let label = sf.flow_label;
    let tap = f.side[INI];
    let v4 = tap.eaddr.is_v4();
    let mut out = [sys::Datagram { len: 0, truncated: false, from: None }; 64];
    if ctx.tx.is_full() {
        ctx.flush_tx();
    }
    let bufs = ctx.tx.free_slots().map(|s| &mut s[frame::L4_OFF..SLOT]);
    let n = match sys::recv_batch(fd, bufs, &mut out) {
        Ok(n) => n,
        Err(e) => {
            let _ = sys::take_error(fd);
            log::trace!("ping flow {}: recv: {e}", sidx.flow());
            return;
        }
    };
    let addrs = frame::FrameAddrs { src_mac: ctx.our_mac, dst_mac: ctx.guest_mac, src: tap.oaddr, dst: tap.eaddr };
    let (want, proto) = if v4 { (ICMP_ECHO_REPLY, 1u8) } else { (ICMPV6_ECHO_REPLY, 58u8) };
    for (i, d) in out[..n].iter().enumerate() {
        let Some(slot) = ctx.tx.slot(i) else { break };
        let l4len = d.len;
        let msg = &mut slot[frame::L4_OFF..frame::L4_OFF + l4len];
        if d.truncated || l4len < 8 || msg[0] != want || l4len > 65535 - 40 {
            ctx.counters.drop_ping_reply += 1;
            continue;
        }
        msg[4..6].copy_from_slice(&tap.eport.to_be_bytes());
        msg[2..4].copy_from_slice(&[0, 0]);
        let acc = if v4 { 0 } else { frame::pseudo(tap.oaddr, tap.eaddr, proto, l4len) };
        let c = csum::fold(csum::sum(acc, msg));
        msg[2..4].copy_from_slice(&c.to_be_bytes());
        let r = frame::push_ip_eth(slot, l4len, &addrs, proto, label);
        ctx.tx.commit_in(i, r);
    }
    ctx.tx.advance(n);
    if n > 0 {
        let now = ctx.now;
        if let Some(sf) = ctx.flows.get_mut(sidx.flow()).and_then(|f| f.data.sock_flow_mut()) {
            sf.last = now;
        }
    }
}
