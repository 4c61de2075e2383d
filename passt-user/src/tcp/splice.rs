//! # Theory of operation
//!
//! pasta's splice path for TCP (passt(1) NOTES, "Handling of local traffic
//! in pasta"; DESIGN.md §7): a connection accepted on one side's loopback
//! is relayed to a socket we connect in the other namespace, and the bytes
//! move between the two sockets with splice(2) through a pipe per
//! direction, never entering our address space nor the tap.
//!
//! Per direction `d` (from `socks[d]` to `socks[1 - d]`):
//!
//! - on EPOLLIN of `socks[d]`, splice from it into the pipe (as much as the
//!   pipe holds), then from the pipe into the other socket; repeat while
//!   the pipe filled up, a bounded number of times;
//! - if the other socket takes less than the pipe holds, stop reading
//!   `socks[d]` (no EPOLLIN: its receive buffer fills, and the sender's
//!   TCP window closes, which is the backpressure) and wait for EPOLLOUT
//!   on the other socket, then drain the pipe and read again;
//! - end of file from `socks[d]`, once the pipe is empty, becomes
//!   shutdown(SHUT_WR) of the other socket: half-close is mirrored;
//! - an error (RST) on either socket aborts the other one with SO_LINGER 0,
//!   so the peer sees a reset as well, and the flow ends.
//!
//! Pipes are created at the first byte of their direction, sized up to
//! [`PIPE_SIZE`] (what `/proc/sys/fs/pipe-max-size` and the per-user pipe
//! limits allow). The flow ends when both directions are shut down, or on
//! a reset.
//!
//! Syscalls: connect, splice, pipe2, fcntl (F_SETPIPE_SZ), shutdown,
//! setsockopt (SO_LINGER), getsockopt (SO_ERROR), epoll_ctl, close.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::daemon::Ctx;
use crate::epoll::{EpollRef, EpollType};
use crate::flow::{FlowData, FlowSide, Pif, Proto, Sidx, INI, TGT};
use crate::sys;

/// Pipe size asked for, in bytes (Linux's default `pipe-max-size`).
pub const PIPE_SIZE: usize = 1 << 20;

/// Rounds of pipe fill and drain per event, per direction.
const ROUNDS: usize = 4;

/// One direction's pipe: read end, write end, capacity in bytes.
#[derive(Debug)]
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    size: usize,
}

/// A spliced TCP connection: two connected sockets in two namespaces.
#[derive(Debug)]
pub struct TcpSplice {
    /// The sockets: [`INI`] (accepted), [`TGT`] (connected by us).
    socks: [OwnedFd; 2],
    /// Pipe of direction `d`, from `socks[d]` to `socks[1 - d]`.
    pipes: [Option<Pipe>; 2],
    /// Bytes waiting in each pipe.
    pending: [usize; 2],
    /// Epoll events registered for each socket (0: none).
    events: [u32; 2],
    /// The connect() of the target socket is in progress.
    connecting: bool,
    /// End of file read from `socks[d]`.
    eof: [bool; 2],
    /// `socks[d]` was shut down for writing.
    shut: [bool; 2],
}

impl TcpSplice {
    /// The sockets' fds, for closing.
    pub fn fds(&self) -> [RawFd; 2] {
        [self.socks[0].as_raw_fd(), self.socks[1].as_raw_fd()]
    }
}

/// Start a spliced flow: `sock` is the accepted socket on side `pif[INI]`,
/// `tsock` an unbound socket of the other namespace, connected here to
/// `tgt.eaddr`:`tgt.eport`. A refused connection resets the client.
pub fn open(ctx: &mut Ctx, pif: [Pif; 2], ini: FlowSide, tgt: FlowSide, sock: OwnedFd, tsock: OwnedFd) {
    let tfd = tsock.as_raw_fd();
    if !tgt.oaddr.is_unspecified() || tgt.oport != 0 {
        let _ = sys::bind(tfd, tgt.oaddr, tgt.oport);
    }
    let connecting = match sys::connect(tfd, tgt.eaddr, tgt.eport) {
        Ok(()) => false,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => true,
        Err(e) => {
            log::debug!("TCP splice: connect to {}:{}: {e}", tgt.eaddr, tgt.eport);
            ctx.counters.tcp_refused += 1;
            sys::set_linger_zero(sock.as_raw_fd());
            return;
        }
    };
    let Some(idx) = ctx.flows.alloc(Proto::Tcp, pif, [ini, tgt], FlowData::None) else {
        ctx.counters.drop_flow_table_full += 1;
        sys::set_linger_zero(sock.as_raw_fd());
        return;
    };
    if let Some(f) = ctx.flows.get_mut(idx) {
        f.data = FlowData::TcpSplice(TcpSplice {
            socks: [sock, tsock],
            pipes: [None, None],
            pending: [0, 0],
            events: [0, 0],
            connecting,
            eof: [false, false],
            shut: [false, false],
        });
    }
    ctx.counters.tcp_splice_flows += 1;
    log::debug!("TCP splice flow {idx}: {}:{} -> {}:{}", ini.eaddr, ini.eport, tgt.eaddr, tgt.eport);
    update(ctx, idx);
}

/// Abort both sockets (the peers see a reset) and end flow `idx`.
fn reset(ctx: &mut Ctx, idx: usize) {
    if let Some(FlowData::TcpSplice(s)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) {
        for fd in s.fds() {
            sys::set_linger_zero(fd);
        }
    }
    ctx.flows.close(idx);
}

/// What moving data in one direction came to.
enum Moved {
    /// Carry on.
    Ok,
    /// A socket failed: reset both.
    Reset,
}

/// Move data of direction `d` (see the module documentation).
fn forward(s: &mut TcpSplice, d: usize) -> Moved {
    let from = s.socks[d].as_raw_fd();
    let to = s.socks[1 - d].as_raw_fd();
    for _ in 0..ROUNDS {
        let mut filled = false;
        if !s.eof[d] {
            if s.pipes[d].is_none() {
                match sys::pipe(PIPE_SIZE) {
                    Ok((r, w, size)) => s.pipes[d] = Some(Pipe { r, w, size }),
                    Err(e) => {
                        log::debug!("TCP splice: pipe: {e}");
                        return Moved::Reset;
                    }
                }
            }
            let Some(p) = &s.pipes[d] else { return Moved::Reset };
            let room = p.size - s.pending[d];
            if room > 0 {
                match sys::splice(from, p.w.as_raw_fd(), room, false) {
                    Ok(Some(0)) => s.eof[d] = true,
                    Ok(Some(n)) => {
                        s.pending[d] += n;
                        filled = n == room;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        log::debug!("TCP splice: read: {e}");
                        return Moved::Reset;
                    }
                }
            }
        }
        if s.pending[d] > 0 {
            let Some(p) = &s.pipes[d] else { return Moved::Reset };
            match sys::splice(p.r.as_raw_fd(), to, s.pending[d], false) {
                Ok(Some(n)) => s.pending[d] -= n.min(s.pending[d]),
                Ok(None) => return Moved::Ok,
                Err(e) => {
                    log::debug!("TCP splice: write: {e}");
                    return Moved::Reset;
                }
            }
            if s.pending[d] > 0 {
                // The other socket is full: wait for EPOLLOUT.
                return Moved::Ok;
            }
        }
        if !filled {
            break;
        }
    }
    if s.eof[d] && s.pending[d] == 0 && !s.shut[1 - d] {
        sys::shutdown_write(to);
        s.shut[1 - d] = true;
        // Nothing more goes this way: give the pipe back.
        s.pipes[d] = None;
    }
    Moved::Ok
}

/// A socket of spliced flow side `sidx` has `events`.
pub fn sock_ready(ctx: &mut Ctx, sidx: Sidx, events: u32) {
    let (idx, side) = (sidx.flow(), sidx.side());
    let Some(FlowData::TcpSplice(s)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) else { return };
    if s.connecting {
        if side != TGT {
            // The client's data waits in its socket until we are connected.
            if events & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
                reset(ctx, idx);
            }
            return;
        }
        let err = sys::take_error(s.socks[TGT].as_raw_fd());
        if err != 0 || events & libc::EPOLLERR as u32 != 0 {
            log::debug!("TCP splice flow {idx}: connect: {}", std::io::Error::from_raw_os_error(err));
            ctx.counters.tcp_refused += 1;
            reset(ctx, idx);
            return;
        }
        s.connecting = false;
        let r = [forward(s, INI), forward(s, TGT)];
        if r.iter().any(|m| matches!(m, Moved::Reset)) {
            reset(ctx, idx);
            return;
        }
        update(ctx, idx);
        return;
    }
    if events & libc::EPOLLERR as u32 != 0 {
        let e = sys::take_error(s.socks[side].as_raw_fd());
        log::debug!("TCP splice flow {idx}: socket error {}", std::io::Error::from_raw_os_error(e));
        reset(ctx, idx);
        return;
    }
    if events & libc::EPOLLOUT as u32 != 0 && matches!(forward(s, 1 - side), Moved::Reset) {
        reset(ctx, idx);
        return;
    }
    if events & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP) as u32 != 0 && matches!(forward(s, side), Moved::Reset) {
        reset(ctx, idx);
        return;
    }
    update(ctx, idx);
}

/// Bring epoll interest in line with the flow's state; end it when both
/// directions are shut down.
fn update(ctx: &mut Ctx, idx: usize) {
    let Some(FlowData::TcpSplice(s)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) else { return };
    if s.shut[INI] && s.shut[TGT] {
        log::debug!("TCP splice flow {idx}: closed");
        ctx.flows.close(idx);
        return;
    }
    for side in [INI, TGT] {
        // EPOLLERR alone keeps the socket registered (errors and hang-ups
        // are always reported) when there is nothing else to wait for.
        let mut ev = libc::EPOLLERR as u32;
        if s.connecting {
            if side == TGT {
                ev = libc::EPOLLOUT as u32;
            }
        } else {
            let blocked_in = s.pending[side] > 0;
            if !s.eof[side] && !blocked_in {
                ev |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
            }
            if s.pending[1 - side] > 0 {
                ev |= libc::EPOLLOUT as u32;
            }
        }
        if ev == s.events[side] {
            continue;
        }
        let fd = s.socks[side].as_raw_fd();
        let r = EpollRef::new(EpollType::TcpSplice, fd, Sidx::new(idx as u32, side).raw());
        let res = if s.events[side] == 0 { ctx.epoll.add(fd, ev, r) } else { ctx.epoll.modify(fd, ev, r) };
        if let Err(e) = res {
            log::debug!("TCP splice flow {idx}: epoll: {e}");
        }
        s.events[side] = ev;
    }
}
