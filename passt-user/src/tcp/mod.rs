//! # Theory of operation
//!
//! TCP without a TCP stack (DESIGN.md §4, and upstream's rationale in the
//! seed commit log): the guest's TCP talks to the host kernel's TCP through
//! us, and we keep no data buffers of our own.
//!
//! - [`conn`] is the tap-side state machine: sequence numbers, windows,
//!   handshake, FIN and RST, retransmission and timers. It is sans-IO: no
//!   fds, no clock; callers pass `now` and act on what it returns.
//! - [`io`] binds it to a host socket and to the tap: guest data is written
//!   to the socket and acknowledged only once the socket took it; host data
//!   is read with MSG_PEEK at SO_PEEK_OFF straight into transmit slots and
//!   removed from the socket only when the guest acknowledges it, so the
//!   kernel's socket buffer is our retransmission buffer.
//!
//! - [`splice`] relays pasta's loopback-to-loopback connections between
//!   two sockets with splice(2); they never reach the tap.
//!
//! Every segment towards the tap is built in place (TCP, IP and Ethernet
//! headers in front of data received directly into the slot).

pub mod conn;
pub mod io;
pub mod splice;


use std::os::fd::{AsRawFd, RawFd};

use crate::daemon::Ctx;
use crate::flow::{FlowSide, Inany, Pif};
use crate::fwd::{Fwd, L4};
use crate::limits::{self, RefuseOne};
use crate::listen::{Target, OUT};
use crate::sys;

/// Connections wait on listening socket `lfd` of rule target `t`: accept
/// one and send it to the tap or splice it, as
/// [`Fwd::nat_from_host`] / [`Fwd::nat_from_splice`] decide. Connections
/// with nowhere to go, or for which there is no flow slot or descriptor
/// left, are reset and counted ([`crate::limits`]), and the next one is
/// accepted (at most 64 per event). One connection handed on per event,
/// like upstream: the listener is level-triggered, so more waiting
/// connections bring the next event, and a lone one (the usual case) costs
/// no accept4(2) returning EAGAIN.
pub fn listen_ready(ctx: &mut Ctx, t: Target, lfd: RawFd) {
    for _ in 0..64 {
        let (sock, peer, pport) = match sys::accept(lfd) {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) if limits::out_of_fds(&e) => {
                // Reset the connection through the spare descriptor, so
                // that the listener does not stay readable forever.
                ctx.counters.drop_no_fds += 1;
                match ctx.spare_fd.refuse_one(lfd) {
                    RefuseOne::Reset => {
                        log::debug!("TCP: out of descriptors, connection on port {} reset", t.port);
                        continue;
                    }
                    RefuseOne::Empty => return,
                    RefuseOne::Failed => {
                        // No spare: retry on the next tick.
                        log::debug!("TCP: accept on port {}: {e}", t.port);
                        ctx.listeners.pause(&ctx.epoll, lfd, t.data);
                        return;
                    }
                }
            }
            Err(e) => {
                log::debug!("TCP: accept on port {}: {e}", t.port);
                ctx.counters.drop_socket += 1;
                if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::ENOMEM)) {
                    // Out of memory: retry on the next tick.
                    ctx.listeners.pause(&ctx.epoll, lfd, t.data);
                }
                return;
            }
        };
        if ctx.flows.is_full() {
            log::debug!("TCP: flow table full, connection from {peer}:{pport} on port {} reset", t.port);
            ctx.counters.drop_flow_table_full += 1;
            sys::set_linger_zero(sock.as_raw_fd());
            continue;
        }
        let any = if peer.is_v4() { Inany::UNSPEC4 } else { Inany::UNSPEC6 };
        let (local, lport) = sys::local_addr(sock.as_raw_fd()).unwrap_or((any, 0));
        // Socket lookup: the connection's port is its original one.
        let t = if t.port != 0 {
            t
        } else if let Some(st) = ctx.listeners.steered_target(&t, lport) {
            st
        } else {
            log::debug!("TCP: {peer}:{pport} to port {lport} of a socket-lookup socket: no rule");
            ctx.counters.drop_fwd_nat += 1;
            sys::set_linger_zero(sock.as_raw_fd());
            continue;
        };
        let ini = FlowSide { eaddr: peer, eport: pport, oaddr: local, oport: t.port };
        let (pif, tgt) = if t.dir == OUT {
            match Fwd::nat_from_splice(L4::Tcp, &ini, t.to) {
                Some(tgt) => (Pif::Host, tgt),
                None => (Pif::None, ini),
            }
        } else {
            ctx.fwd.nat_from_host(L4::Tcp, &ini, t.to, t.taddr).unwrap_or((Pif::None, ini))
        };
        let tsock = match pif {
            Pif::Host => sys::socket(tgt.eaddr.is_v4(), libc::SOCK_STREAM, 0),
            Pif::Splice => match ctx.ns.as_mut() {
                Some(ns) => ns.tcp_socket(tgt.eaddr.is_v4()),
                None => Err(std::io::ErrorKind::Unsupported.into()),
            },
            Pif::Tap => {
                crate::threads::inbound_tcp(ctx, ini, tgt, sock);
                return;
            }
            Pif::None => {
                log::debug!("TCP: no target for {}:{} on port {}", peer, pport, t.port);
                ctx.counters.drop_fwd_nat += 1;
                sys::set_linger_zero(sock.as_raw_fd());
                continue;
            }
        };
        match tsock {
            Ok(ts) => {
                let ini_pif = if t.dir == OUT { Pif::Splice } else { Pif::Host };
                splice::open(ctx, [ini_pif, pif], ini, tgt, sock, ts);
                return;
            }
            Err(e) => {
                log::debug!("TCP splice: socket: {e}");
                if limits::out_of_fds(&e) {
                    ctx.counters.drop_no_fds += 1;
                } else {
                    ctx.counters.drop_socket += 1;
                }
                sys::set_linger_zero(sock.as_raw_fd());
            }
        }
    }
}
