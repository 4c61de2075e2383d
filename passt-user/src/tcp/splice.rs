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
//! - a socket shut down both ways reports EPOLLHUP whatever we ask for;
//!   while its remaining data waits in the pipe for the other socket's
//!   EPOLLOUT, it is taken out of epoll (else the loop would spin on it).
//!
//! Pipes are taken at the first byte of their direction from a pool of
//! empty pipes ([`PipePool`], refilled by flows that end cleanly), or
//! created, sized up to [`PIPE_SIZE`] (what `/proc/sys/fs/pipe-max-size`
//! and the per-user pipe limits allow). A pipe that may hold data (reset)
//! is closed, never pooled. A read that filled most of the pipe is written
//! with SPLICE_F_MORE (more is coming: let TCP build full segments).
//! Small messages skip the pipe: a direction whose splice read brought
//! less than [`COPY_ENTER`] bytes reads next with recv(2) into a scratch
//! buffer of [`COPY_MAX`] bytes and writes with send(2) (two copies of a
//! few bytes cost less than two splices through a pipe); a copy read that
//! fills what it asked for is bulk data and goes back to splicing
//! ([`copy_next`]). What the other socket doesn't take is written into the
//! direction's empty pipe (a read never asks for more than it holds) and
//! leaves on EPOLLOUT like spliced data, so order is kept.
//! Both sockets get TCP_NODELAY: we relay whole writes of the peers, and
//! holding small ones back would only add latency. The flow ends when both
//! directions are shut down, or on a reset.
//!
//! With `--ebpf`, once connected, a flow whose two end sockets (the
//! client's and the server's) the sockops program caught is paired with
//! the eBPF short-circuit ([`crate::ebpf::sockmap`]): their sends may then
//! skip the relay, one direction at a time, when it can't reorder bytes.
//! The relay keeps running as before and carries whatever isn't redirected
//! (FIN and RST always); it counts the bytes it read per direction, and
//! queues a re-check (fast timer, [`sockmap_timer`]) whenever bytes of a
//! paired direction went its way.
//!
//! Syscalls: connect, splice, pipe2, fcntl (F_SETPIPE_SZ), shutdown,
//! setsockopt (SO_LINGER), getsockopt (SO_ERROR), epoll_ctl, close;
//! recvfrom, sendto (copy path) and write (to a pipe), already allowed
//! for every mode.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::daemon::Ctx;
use crate::ebpf::sockmap::Sockmap;
use crate::epoll::{EpollRef, EpollType};
use crate::flow::{FlowData, FlowSide, Pif, Proto, Sidx, INI, TGT};
use crate::sys;

/// Pipe size asked for, in bytes (Linux's default `pipe-max-size`).
pub const PIPE_SIZE: usize = 1 << 20;

/// Rounds of pipe fill and drain per event, per direction.
const ROUNDS: usize = 4;

/// One direction's pipe: read end, write end, capacity in bytes.
#[derive(Debug)]
pub struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    size: usize,
}

/// Empty pipes kept for new spliced flows (room for all of them is
/// reserved up front: putting a pipe back never allocates), and the
/// scratch buffer of the small-read copy path ([`COPY_MAX`] bytes).
#[derive(Debug)]
pub struct PipePool(Vec<Pipe>, Box<[u8]>);

impl Default for PipePool {
    fn default() -> Self {
        PipePool(
            Vec::with_capacity(POOL_MAX),
            vec![0; COPY_MAX].into_boxed_slice(),
        )
    }
}

/// Bytes one copy-path read takes at most: a read that fills them is a
/// bulk transfer, which goes back to splice(2).
pub const COPY_MAX: usize = 16 << 10;

/// A splice read shorter than this (bytes) switches its direction to the
/// copy path: small messages (request/response traffic) cost less as one
/// recv(2) and one send(2) than as two splices through a pipe.
pub const COPY_ENTER: usize = 2 << 10;

/// Whether the next read of a direction uses the copy path, after a read
/// of `n` bytes (n > 0) of the `len` asked for, by copy (`by_copy`) or by
/// splice.
///
/// Hysteresis: a copy read that filled what it asked for (at most
/// [`COPY_MAX`]) means bulk data, so splice again; a splice read under
/// [`COPY_ENTER`] means small messages, so copy; a copy read shorter
/// than asked stays on the copy path.
pub fn copy_next(by_copy: bool, n: usize, len: usize) -> bool {
    if by_copy {
        n < len
    } else {
        n < COPY_ENTER
    }
}

/// Pipes kept in the pool at most (two per flow in use).
const POOL_MAX: usize = 64;

impl PipePool {
    /// A pooled pipe, or a new one.
    fn take(&mut self) -> std::io::Result<Pipe> {
        if let Some(p) = self.0.pop() {
            return Ok(p);
        }
        let (r, w, size) = sys::pipe(PIPE_SIZE)?;
        Ok(Pipe { r, w, size })
    }

    /// Keep an empty pipe (closed if the pool is full).
    fn put(&mut self, p: Pipe) {
        if self.0.len() < POOL_MAX {
            self.0.push(p);
        }
    }

    /// Pipes in the pool.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if the pool holds no pipe.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
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
    /// `socks[d]` reported EPOLLHUP (shut down both ways, for good).
    hup: [bool; 2],
    /// Bytes read from `socks[d]` since the flow started.
    relayed: [u64; 2],
    /// Direction `d` reads small messages by copy ([`copy_next`]).
    copy: [bool; 2],
    /// The eBPF short-circuit's state, if the flow is paired.
    pair: Option<Box<crate::ebpf::sockmap::Pair>>,
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
    for fd in [sock.as_raw_fd(), tfd] {
        let _ = sys::set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
    }
    // A slot first: with the table full, the target never sees a
    // connection.
    let Some(idx) = ctx.flows.alloc(Proto::Tcp, pif, [ini, tgt], FlowData::None) else {
        ctx.counters.drop_flow_table_full += 1;
        sys::set_linger_zero(sock.as_raw_fd());
        return;
    };
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
            ctx.flows.close(idx);
            return;
        }
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
            hup: [false, false],
            relayed: [0, 0],
            copy: [true, true],
            pair: None,
        });
    }
    ctx.counters.tcp_splice_flows += 1;
    log::debug!("TCP splice flow {idx}: {}:{} -> {}:{}", ini.eaddr, ini.eport, tgt.eaddr, tgt.eport);
    if !connecting {
        pair(ctx, idx);
    }
    update(ctx, idx);
}

/// Abort both sockets (the peers see a reset) and end flow `idx`.
fn reset(ctx: &mut Ctx, idx: usize) {
    if let Some(FlowData::TcpSplice(s)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) {
        for fd in s.fds() {
            sys::set_linger_zero(fd);
        }
    }
    end(ctx, idx);
}

/// End flow `idx`, unpairing it from the eBPF short-circuit first.
fn end(ctx: &mut Ctx, idx: usize) {
    if let Some((sm, s)) = paired(ctx, idx) {
        if let Some(p) = s.pair.take() {
            let (redirected, passed) = sm.unpair(&p);
            log::debug!("TCP splice flow {idx}: eBPF short-circuit: redirected {redirected} bytes, passed {passed}");
        }
    }
    ctx.flows.close(idx);
}

/// The eBPF short-circuit, if it runs, and the state of flow `idx`, if it
/// is a spliced TCP flow.
fn paired(ctx: &mut Ctx, idx: usize) -> Option<(&mut Sockmap, &mut TcpSplice)> {
    let sm = ctx.ebpf.as_mut().and_then(|a| a.sockmap.as_mut())?;
    match ctx.flows.get_mut(idx).map(|f| &mut f.data) {
        Some(FlowData::TcpSplice(s)) => Some((sm, s)),
        _ => None,
    }
}

/// Connected: pair flow `idx` with the eBPF short-circuit if it is on and
/// both end sockets are in its sockhash, and see whether a direction can
/// switch at once.
fn pair(ctx: &mut Ctx, idx: usize) {
    let Some((sm, s)) = paired(ctx, idx) else { return };
    s.pair = sm.pair(s.fds()).map(Box::new);
    if s.pair.is_some() {
        log::debug!("TCP splice flow {idx}: paired with the eBPF short-circuit");
        recheck(ctx, idx, true);
    }
}

/// Check both directions of paired flow `idx` now (unless `check` is
/// false: bytes just went through the relay, so it can't switch yet);
/// queue a later re-check if one still waits (`reset`: after fresh
/// activity, start from the shortest delay).
fn queue_check(ctx: &mut Ctx, idx: usize, check: bool, reset: bool) {
    let now = ctx.now;
    let Some((sm, s)) = paired(ctx, idx) else { return };
    let Some(p) = s.pair.as_deref_mut() else { return };
    let (mut again, mut busy) = (!check, reset);
    for d in [INI, TGT].into_iter().filter(|_| check) {
        let to = s.socks[1 - d].as_raw_fd();
        if let Some(b) = sm.check_dir(p, d, s.relayed[d], s.pending[d], to, s.eof[d]) {
            again = true;
            busy |= b;
        }
    }
    if again {
        let at = sm.queue(p, idx, now, busy);
        ctx.arm_fast_timer(at.saturating_duration_since(now));
    }
}

/// [`queue_check`] with the checks.
fn recheck(ctx: &mut Ctx, idx: usize, reset: bool) {
    queue_check(ctx, idx, true, reset);
}

/// Bytes of paired flow `idx` went through the relay: re-check it soon.
fn relayed(ctx: &mut Ctx, idx: usize) {
    queue_check(ctx, idx, false, true);
}

/// Fast timer: run the due re-checks of paired flows (see
/// [`crate::ebpf::sockmap`]).
pub fn sockmap_timer(ctx: &mut Ctx) {
    let now = ctx.now;
    let Some(sm) = ctx.ebpf.as_mut().and_then(|a| a.sockmap.as_mut()) else { return };
    if sm.waiting.is_empty() {
        return;
    }
    let waiting = std::mem::take(&mut sm.waiting);
    let mut next: Option<std::time::Instant> = None;
    for idx in waiting {
        let Some((sm, s)) = paired(ctx, idx as usize) else { continue };
        let Some(p) = s.pair.as_deref_mut() else { continue };
        if Sockmap::due(p, now) {
            Sockmap::ran(p);
            // Queues the flow again (and arms the timer) if it still waits.
            recheck(ctx, idx as usize, false);
        } else if let Some(at) = p.check_at() {
            sm.waiting.push(idx);
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    // Not due yet: fire again for the earliest.
    if let Some(at) = next {
        ctx.arm_fast_timer(at.saturating_duration_since(now));
    }
}

/// What moving data in one direction came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moved {
    /// Carry on.
    Ok,
    /// A socket failed: reset both.
    Reset,
    /// No pipe: out of file descriptors (pipe2 failed with EMFILE or
    /// ENFILE); reset both, counted as `drop_no_fds`.
    NoFds,
}

/// Reset flow `idx` after `forward` gave `m`, counting why; false if `m`
/// is [`Moved::Ok`] (nothing done).
fn reset_on(ctx: &mut Ctx, idx: usize, m: Moved) -> bool {
    match m {
        Moved::Ok => return false,
        Moved::Reset => {}
        Moved::NoFds => ctx.counters.drop_no_fds += 1,
    }
    reset(ctx, idx);
    true
}

/// Move data of direction `d` (see the module documentation), with pipes
/// from `pool`.
fn forward(s: &mut TcpSplice, d: usize, pool: &mut PipePool) -> Moved {
    let from = s.socks[d].as_raw_fd();
    let to = s.socks[1 - d].as_raw_fd();
    for _ in 0..ROUNDS {
        let mut filled = false;
        let mut more = false;
        if s.copy[d] && !s.eof[d] && s.pending[d] == 0 {
            match copy(s, d, pool) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(m) => return m,
            }
        }
        if !s.eof[d] {
            if let Err(m) = take_pipe(s, d, pool) {
                return m;
            }
            let Some(p) = &s.pipes[d] else { return Moved::Reset };
            let room = p.size - s.pending[d];
            if room > 0 {
                match sys::splice(from, p.w.as_raw_fd(), room, false) {
                    Ok(Some(0)) => s.eof[d] = true,
                    Ok(Some(n)) => {
                        s.pending[d] += n;
                        s.relayed[d] += n as u64;
                        s.copy[d] = copy_next(false, n, room);
                        filled = n == room;
                        more = n >= p.size / 10 * 9;
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
            match sys::splice(p.r.as_raw_fd(), to, s.pending[d], more) {
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
        // Nothing more goes this way: give the (empty) pipe back.
        if let Some(p) = s.pipes[d].take() {
            pool.put(p);
        }
    }
    Moved::Ok
}

/// Give direction `d` its pipe from `pool` if it has none yet (at its
/// first byte). Errors: out of file descriptors ([`Moved::NoFds`]) or any
/// other pipe(2) failure ([`Moved::Reset`]).
fn take_pipe(s: &mut TcpSplice, d: usize, pool: &mut PipePool) -> Result<(), Moved> {
    if s.pipes[d].is_none() {
        match pool.take() {
            Ok(p) => s.pipes[d] = Some(p),
            Err(e) => {
                log::debug!("TCP splice: pipe: {e}");
                return Err(if crate::limits::out_of_fds(&e) { Moved::NoFds } else { Moved::Reset });
            }
        }
    }
    Ok(())
}

/// One read of direction `d` by copy: recv(2) into the pool's scratch
/// buffer, send(2) to the other socket; what it doesn't take goes into
/// the direction's (empty) pipe, to be spliced on its EPOLLOUT. True if
/// the read filled the buffer (read again), false if there is nothing
/// more to read now (socket drained, end of file, or the other socket
/// full).
fn copy(s: &mut TcpSplice, d: usize, pool: &mut PipePool) -> Result<bool, Moved> {
    let from = s.socks[d].as_raw_fd();
    let to = s.socks[1 - d].as_raw_fd();
    // The pipe first (as the splice path takes it at the first byte): a
    // read never takes more than the empty pipe holds, so what the other
    // socket refuses always fits in it.
    take_pipe(s, d, pool)?;
    let Some(p) = &s.pipes[d] else {
        return Err(Moved::Reset);
    };
    let len = COPY_MAX.min(p.size);
    let n = match sys::recv_some(from, &mut pool.1[..len]) {
        Ok(Some(0)) => {
            s.eof[d] = true;
            return Ok(false);
        }
        Ok(Some(n)) => n,
        Ok(None) => return Ok(false),
        Err(e) => {
            log::debug!("TCP splice: read: {e}");
            return Err(Moved::Reset);
        }
    };
    s.relayed[d] += n as u64;
    s.copy[d] = copy_next(true, n, len);
    let sent = match sys::send_some(to, &pool.1[..n]) {
        Ok(Some(k)) => k,
        Ok(None) => 0,
        Err(e) => {
            log::debug!("TCP splice: write: {e}");
            return Err(Moved::Reset);
        }
    };
    if sent < n {
        // The other socket is full: the rest waits in the (empty) pipe for
        // EPOLLOUT.
        match sys::write_some(p.w.as_raw_fd(), &pool.1[sent..n]) {
            Ok(Some(w)) if w == n - sent => s.pending[d] = w,
            r => {
                log::debug!("TCP splice: pipe write: {r:?}");
                return Err(Moved::Reset);
            }
        }
        return Ok(false);
    }
    Ok(n == len)
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
        // A failed connect() reports EPOLLERR (and EPOLLHUP): only then is
        // SO_ERROR worth a syscall.
        let err = if events & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
            sys::take_error(s.socks[TGT].as_raw_fd())
        } else {
            0
        };
        if err != 0 || events & libc::EPOLLERR as u32 != 0 {
            log::debug!("TCP splice flow {idx}: connect: {}", std::io::Error::from_raw_os_error(err));
            ctx.counters.tcp_refused += 1;
            reset(ctx, idx);
            return;
        }
        s.connecting = false;
        let pool = &mut ctx.splice_pipes;
        let r = [forward(s, INI, pool), forward(s, TGT, pool)];
        let m = if r.contains(&Moved::NoFds) { Moved::NoFds } else if r.contains(&Moved::Reset) { Moved::Reset } else { Moved::Ok };
        if reset_on(ctx, idx, m) {
            return;
        }
        pair(ctx, idx);
        update(ctx, idx);
        return;
    }
    if events & libc::EPOLLERR as u32 != 0 {
        let e = sys::take_error(s.socks[side].as_raw_fd());
        log::debug!("TCP splice flow {idx}: socket error {}", std::io::Error::from_raw_os_error(e));
        reset(ctx, idx);
        return;
    }
    if events & libc::EPOLLHUP as u32 != 0 {
        s.hup[side] = true;
    }
    let before = s.relayed;
    let paired = s.pair.is_some();
    let pool = &mut ctx.splice_pipes;
    let out = if events & libc::EPOLLOUT as u32 != 0 { forward(s, 1 - side, pool) } else { Moved::Ok };
    let m = if out == Moved::Ok && events & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP) as u32 != 0 {
        forward(s, side, pool)
    } else {
        out
    };
    let moved = s.relayed != before;
    if reset_on(ctx, idx, m) {
        return;
    }
    if paired && moved {
        relayed(ctx, idx);
    }
    update(ctx, idx);
}

/// Bring epoll interest in line with the flow's state; end it when both
/// directions are shut down.
fn update(ctx: &mut Ctx, idx: usize) {
    let Some(FlowData::TcpSplice(s)) = ctx.flows.get_mut(idx).map(|f| &mut f.data) else { return };
    if s.shut[INI] && s.shut[TGT] {
        log::debug!("TCP splice flow {idx}: closed");
        end(ctx, idx);
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
            // EPOLLHUP can't be masked and stays: a hung-up socket we want
            // nothing from (its data waits for the other socket's
            // EPOLLOUT) leaves epoll, or the loop would spin on it.
            if s.hup[side] && ev & (libc::EPOLLIN | libc::EPOLLOUT) as u32 == 0 {
                ev = 0;
            }
        }
        if ev == s.events[side] {
            continue;
        }
        let fd = s.socks[side].as_raw_fd();
        let r = EpollRef::new(EpollType::TcpSplice, fd, Sidx::new(idx as u32, side).raw());
        let res = match (s.events[side], ev) {
            (0, _) => ctx.epoll.add(fd, ev, r),
            (_, 0) => {
                ctx.epoll.del(fd);
                Ok(())
            }
            _ => ctx.epoll.modify(fd, ev, r),
        };
        match res {
            Ok(()) => s.events[side] = ev,
            Err(e) => {
                // Not polled, it would never be woken: end it.
                log::debug!("TCP splice flow {idx}: epoll: {e}");
                ctx.counters.drop_socket += 1;
                reset(ctx, idx);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epoll::{event_ref, EPOLL_EVENTS};
    use crate::flow::Inany;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::FromRawFd;

    /// Dispatch splice events for up to `ms` milliseconds (bounded).
    fn pump(ctx: &mut Ctx, ms: u64) {
        let mut ev = [libc::epoll_event { events: 0, u64: 0 }; EPOLL_EVENTS];
        let end = std::time::Instant::now() + std::time::Duration::from_millis(ms);
        while std::time::Instant::now() < end {
            let n = ctx.epoll.wait(&mut ev, 10).unwrap();
            for e in &ev[..n] {
                let r = event_ref(e);
                if r.kind() == Some(EpollType::TcpSplice) {
                    sock_ready(ctx, Sidx::from_raw(r.data()), e.events);
                }
            }
            ctx.flows.defer_free(|f| f.data = FlowData::None);
        }
    }

    /// A spliced flow between a client and a server on loopback: (ctx,
    /// client, server as accepted).
    fn spliced() -> (Ctx, TcpStream, TcpStream) {
        let mut ctx = crate::daemon::test_ctx().unwrap();
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let back = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(front.local_addr().unwrap()).unwrap();
        let (acc, peer) = front.accept().unwrap();
        acc.set_nonblocking(true).unwrap();
        let tsock = sys::socket(true, libc::SOCK_STREAM, 0).unwrap();
        let ini = FlowSide { eaddr: Inany::LOOPBACK4, eport: peer.port(), oaddr: Inany::LOOPBACK4, oport: 1 };
        let tgt = FlowSide { eaddr: Inany::LOOPBACK4, eport: back.local_addr().unwrap().port(), oaddr: Inany::UNSPEC4, oport: 0 };
        // SAFETY: the fd is taken out of the std stream.
        let sock = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(acc)) };
        open(&mut ctx, [Pif::Host, Pif::Splice], ini, tgt, sock, tsock);
        pump(&mut ctx, 20);
        let (server, _) = back.accept().unwrap();
        for s in [&client, &server] {
            s.set_read_timeout(Some(std::time::Duration::from_millis(20))).unwrap();
        }
        (ctx, client, server)
    }

    /// Read from `s` while pumping until `want` bytes or EOF (bounded).
    fn read_all(ctx: &mut Ctx, s: &mut TcpStream, want: usize) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        for _ in 0..500 {
            pump(ctx, 2);
            match s.read(&mut buf) {
                Ok(0) => return (out, true),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
            if out.len() >= want && want > 0 {
                break;
            }
        }
        (out, false)
    }

    #[test]
    fn data_both_ways_then_half_close_from_each_side() {
        let (mut ctx, mut client, mut server) = spliced();
        let up: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7) as u8).collect();
        let writer = {
            let mut c = client.try_clone().unwrap();
            let up = up.clone();
            std::thread::spawn(move || {
                c.write_all(&up).unwrap();
                c.shutdown(std::net::Shutdown::Write).unwrap();
            })
        };
        let (got, eof) = read_all(&mut ctx, &mut server, 0);
        writer.join().unwrap();
        assert!(eof, "the client's FIN reaches the server");
        assert_eq!(got.len(), up.len());
        assert!(got == up, "bytes intact");
        assert_eq!(ctx.flows.len(), 1, "half-closed: the flow stays for the other way");
        // The server still answers after the client's FIN, then closes.
        server.write_all(b"answer after FIN").unwrap();
        server.shutdown(std::net::Shutdown::Write).unwrap();
        let (got, eof) = read_all(&mut ctx, &mut client, 0);
        assert_eq!(got, b"answer after FIN");
        assert!(eof);
        pump(&mut ctx, 20);
        assert_eq!(ctx.flows.len(), 0, "both ways shut down: flow gone");
        assert_eq!(ctx.splice_pipes.len(), 2, "both pipes back in the pool");
    }

    #[test]
    fn copy_path_hysteresis() {
        // Small splice reads switch to copying, mid-sized ones don't.
        assert!(copy_next(false, 64, PIPE_SIZE));
        assert!(copy_next(false, COPY_ENTER - 1, PIPE_SIZE));
        assert!(!copy_next(false, COPY_ENTER, PIPE_SIZE));
        assert!(!copy_next(false, 8 << 10, PIPE_SIZE));
        // A copy read that filled its buffer is bulk: splice again; a
        // shorter one (even above COPY_ENTER) stays on the copy path.
        assert!(!copy_next(true, COPY_MAX, COPY_MAX));
        assert!(copy_next(true, COPY_MAX - 1, COPY_MAX));
        assert!(copy_next(true, 8 << 10, COPY_MAX));
        assert!(
            !copy_next(true, 4096, 4096),
            "a pipe smaller than the buffer limits the read"
        );
    }

    /// A spliced flow (flow 0 of `ctx`) from a client with a 4 KiB receive
    /// buffer, through an accepted socket with a 4 KiB send buffer, to a
    /// server: (client, server), both blocking.
    fn slow_client_flow(ctx: &mut crate::daemon::Ctx) -> (TcpStream, TcpStream) {
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let back = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = sys::socket(true, libc::SOCK_STREAM, 0).unwrap();
        sys::set_int_opt(c.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 4096).unwrap();
        let fport = front.local_addr().unwrap().port();
        let _ = sys::connect(c.as_raw_fd(), Inany::LOOPBACK4, fport);
        let (acc, peer) = front.accept().unwrap();
        // SAFETY: the fd is taken out of the OwnedFd.
        let client = unsafe { TcpStream::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(c)) };
        client.set_nonblocking(false).unwrap();
        acc.set_nonblocking(true).unwrap();
        sys::set_int_opt(acc.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, 4096).unwrap();
        let tsock = sys::socket(true, libc::SOCK_STREAM, 0).unwrap();
        let ini = FlowSide {
            eaddr: Inany::LOOPBACK4,
            eport: peer.port(),
            oaddr: Inany::LOOPBACK4,
            oport: fport,
        };
        let tgt = FlowSide {
            eaddr: Inany::LOOPBACK4,
            eport: back.local_addr().unwrap().port(),
            oaddr: Inany::UNSPEC4,
            oport: 0,
        };
        // SAFETY: the fd is taken out of the std stream.
        let sock = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(acc)) };
        open(ctx, [Pif::Host, Pif::Splice], ini, tgt, sock, tsock);
        pump(ctx, 20);
        let (server, _) = back.accept().unwrap();
        (client, server)
    }

    #[test]
    fn small_messages_to_a_slow_reader_spill_into_the_pipe_intact() {
        // Small messages go by recv/send; the client reads nothing at
        // first and has tiny buffers, so send() takes only part of a
        // message: the rest waits in the pipe, and order is kept.
        let mut ctx = crate::daemon::test_ctx().unwrap();
        let (mut client, mut server) = slow_client_flow(&mut ctx);
        server.set_nodelay(true).unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_millis(20)))
            .unwrap();
        let mut sent = Vec::new();
        for i in 0..600u32 {
            let msg: Vec<u8> = (0..(1 + i % 300)).map(|j| (i * 31 + j * 7) as u8).collect();
            server.write_all(&msg).unwrap();
            sent.extend_from_slice(&msg);
            if i % 20 == 0 {
                pump(&mut ctx, 2);
            }
        }
        server.shutdown(std::net::Shutdown::Write).unwrap();
        pump(&mut ctx, 30);
        let Some(FlowData::TcpSplice(s)) = ctx.flows.get_mut(0).map(|f| &mut f.data) else {
            panic!("flow gone")
        };
        assert!(s.copy[TGT], "small reads: the server's direction copies");
        assert!(
            s.pending[TGT] > 0,
            "the slow client left bytes waiting in the pipe"
        );
        let (got, eof) = read_all(&mut ctx, &mut client, 0);
        assert!(eof, "the server's FIN reaches the client");
        assert!(
            got == sent,
            "bytes intact and in order: {} of {}",
            got.len(),
            sent.len()
        );
    }

    #[test]
    fn reset_by_the_server_resets_the_client() {
        let (mut ctx, mut client, server) = spliced();
        client.write_all(b"hello").unwrap();
        pump(&mut ctx, 20);
        sys::set_linger_zero(std::os::fd::AsRawFd::as_raw_fd(&server));
        drop(server);
        pump(&mut ctx, 50);
        let mut buf = [0u8; 16];
        let r = client.read(&mut buf);
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "client sees the reset: {r:?}"
        );
        assert_eq!(ctx.flows.len(), 0);
        assert_eq!(ctx.splice_pipes.len(), 0, "pipes of a reset flow are not pooled");
    }

    #[test]
    fn refused_target_resets_the_client() {
        let mut ctx = crate::daemon::test_ctx().unwrap();
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut client = TcpStream::connect(front.local_addr().unwrap()).unwrap();
        let (acc, _) = front.accept().unwrap();
        acc.set_nonblocking(true).unwrap();
        // SAFETY: the fd is taken out of the std stream.
        let sock = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(acc)) };
        let tsock = sys::socket(true, libc::SOCK_STREAM, 0).unwrap();
        let tgt = FlowSide { eaddr: Inany::LOOPBACK4, eport: closed, oaddr: Inany::UNSPEC4, oport: 0 };
        open(&mut ctx, [Pif::Host, Pif::Splice], tgt, tgt, sock, tsock);
        pump(&mut ctx, 50);
        client.set_read_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 4];
        let r = client.read(&mut buf);
        assert!(matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset), "{r:?}");
        assert_eq!(ctx.counters.tcp_refused, 1);
    }

    #[test]
    fn hung_up_socket_waiting_for_a_slow_reader_does_not_spin() {
        // The client half-closes, then the server answers and closes while
        // the client reads nothing: the target socket is shut down both
        // ways (EPOLLHUP, which can't be masked) with its data stuck in
        // the pipe. Nothing can move until the client reads.
        let mut ctx = crate::daemon::test_ctx().unwrap();
        let (mut client, mut server) = slow_client_flow(&mut ctx);
        server.set_read_timeout(Some(std::time::Duration::from_millis(20))).unwrap();
        client.set_read_timeout(Some(std::time::Duration::from_millis(20))).unwrap();
        client.write_all(b"request").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let (got, eof) = read_all(&mut ctx, &mut server, 0);
        assert_eq!((got.as_slice(), eof), (&b"request"[..], true));
        let answer: Vec<u8> = (0..48_000u32).map(|i| (i * 13) as u8).collect();
        server.write_all(&answer).unwrap();
        server.shutdown(std::net::Shutdown::Write).unwrap();
        pump(&mut ctx, 50);
        let mut ev = [libc::epoll_event { events: 0, u64: 0 }; EPOLL_EVENTS];
        let mut wakeups = 0;
        let end = std::time::Instant::now() + std::time::Duration::from_millis(200);
        while std::time::Instant::now() < end {
            let n = ctx.epoll.wait(&mut ev, 10).unwrap();
            for e in &ev[..n] {
                let r = event_ref(e);
                if r.kind() == Some(EpollType::TcpSplice) {
                    wakeups += 1;
                    sock_ready(&mut ctx, Sidx::from_raw(r.data()), e.events);
                }
            }
        }
        assert!(wakeups < 20, "{wakeups} wakeups in 200 ms with nothing to move");
        // Once the client reads, everything arrives, then the end of file.
        let (got, eof) = read_all(&mut ctx, &mut client, 0);
        assert!(eof, "the server's FIN reaches the client");
        assert!(got == answer, "answer intact: {} of {} bytes", got.len(), answer.len());
        pump(&mut ctx, 20);
        assert_eq!(ctx.flows.len(), 0, "both ways shut down: flow gone");
    }
}
