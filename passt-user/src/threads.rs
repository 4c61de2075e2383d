//! # Theory of operation
//!
//! `--threads N` (passt-rs extension, pasta only): the tap is made with
//! IFF_MULTI_QUEUE and opened N times at start-up ([`crate::pasta`]), and
//! each queue gets a worker: a [`Ctx`] of its own (epoll loop, flow table,
//! timers, transmit batch) on its own thread. Worker 0 is the main thread
//! and keeps everything that is not per queue: signals, the spawned
//! command's watch, listeners (and so splice, port scanning, eBPF),
//! `--stats` (its own epoll events only). N = 1 builds no [`Shard`] at all:
//! exactly the single-threaded daemon.
//!
//! Which queue a frame from the namespace arrives on is the kernel's
//! choice (drivers/net/tun.c, `tun_automq_select_queue`): a table keyed by
//! the skb's symmetric flow hash, learnt from the queue a flow's frames
//! were last *written* to (`tun_flow_update`, called from `tun_get_user`
//! when there are several queues), entries expiring after 3 s of silence
//! (`TUN_FLOW_EXPIRE`); unknown flows go to `hash % numqueues`. A worker
//! writing a flow's frames to its own queue attracts the flow, but the
//! first frame of a namespace-initiated flow, and any frame after 3 s of
//! silence, may come up on any queue.
//!
//! So ownership never depends on the queue: [`Shard::owner`] is a SipHash
//! (random key, the same on every worker) of the protocol and the two
//! endpoints of the tap side, ordered so that both directions agree, modulo
//! N. UDP frames whose namespace-side port is a target of a `-u` rule
//! belong to worker 0, where the listeners (and those flows) are. A worker
//! reading a frame of a flow it does not own copies it into the owner's
//! inbox (an `std::sync::mpsc` channel, lock-free for senders and for a
//! receiver that only polls) and writes the owner's eventfd, which is in
//! the owner's epoll set; the owner dispatches it as if it had read it.
//! ARP, NDP, DHCP and DHCPv6 are answered by whichever worker reads them.
//! Connections accepted on `-t` ports (worker 0) whose tap side another
//! worker owns go to that worker's inbox as the accepted socket.
//!
//! Nothing is locked on the per-packet path: a flow's frames are read and
//! written by its owner once tun has learnt it; a copy through an inbox is
//! the exception (counted: `thread_frames_handed`, `thread_frames_taken`).
//! At exit worker 0 sends every worker [`Handoff::Stop`], waits (bounded)
//! for their counters, logs one `worker N: counters: ...` line each and
//! the sum as the usual `counters:` line.
//!
//! The workers are created after the sandbox, so they inherit its seccomp
//! filter, empty capability sets, no_new_privs and Landlock domain.
//!
//! Syscalls: eventfd2 (start-up), write and read (eventfds), and to create
//! the threads clone3 (clone as glibc's fallback), set_robust_list, rseq,
//! mmap, mprotect (PROT_NONE guard), sigaltstack, munmap, madvise, futex,
//! exit ([`crate::isolation::seccomp_filter_threads`]).

use std::hash::Hasher;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use siphasher::sip::SipHasher13;

use crate::counters::Counters;
use crate::daemon::Ctx;
use crate::flow::{FlowSide, Proto};
use crate::fwd_rule::PortSet;

/// What one worker gives another.
#[derive(Debug)]
pub enum Handoff {
    /// A whole Ethernet frame read from the tap with its offload metadata
    /// (the virtio-net header it came with), for the owner of its flow.
    Frame(Vec<u8>, crate::tap::offload::Offload),
    /// A connection accepted on a forwarded port (host side `ini`, tap
    /// side `tgt`), for the owner of `tgt`: see
    /// [`crate::tcp::io::open_inbound`].
    Tcp {
        /// The host side (the client).
        ini: FlowSide,
        /// The tap side.
        tgt: FlowSide,
        /// The accepted socket.
        sock: OwnedFd,
    },
    /// Worker 0 exits: stop and report the counters.
    Stop,
}

/// The way into a worker's inbox.
#[derive(Debug, Clone)]
struct Peer {
    tx: mpsc::Sender<Handoff>,
    wake: Arc<OwnedFd>,
}

/// One worker's part of the multi-queue set-up; see the module
/// documentation. `None` in [`Ctx::shard`] with one thread.
#[derive(Debug)]
pub struct Shard {
    /// This worker's number, 0 for the main thread.
    pub id: usize,
    key: (u64, u64),
    peers: Vec<Peer>,
    inbox: mpsc::Receiver<Handoff>,
    udp_fwd: Arc<PortSet>,
    /// Worker 0: where the others report their counters when they stop.
    done_rx: Option<mpsc::Receiver<(usize, Counters)>>,
    /// Workers 1..N: where they report their counters.
    done_tx: Option<mpsc::Sender<(usize, Counters)>>,
}

/// Make the shards of `n` workers (`n` >= 2): eventfds, inboxes, a common
/// random ownership key. `udp_fwd` holds the namespace-side ports of `-u`
/// rules (those flows stay with worker 0).
///
/// # Errors
/// eventfd(2) and getrandom(2) errors.
pub fn shards(n: usize, udp_fwd: PortSet) -> io::Result<Vec<Shard>> {
    let key = crate::flow::table::random_key()?;
    shards_keyed(n, udp_fwd, key)
}

fn shards_keyed(n: usize, udp_fwd: PortSet, key: (u64, u64)) -> io::Result<Vec<Shard>> {
    let udp_fwd = Arc::new(udp_fwd);
    let mut peers = Vec::with_capacity(n);
    let mut inboxes = Vec::with_capacity(n);
    for _ in 0..n {
        // SAFETY: plain syscall, result checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd, owned from here.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let (tx, rx) = mpsc::channel();
        peers.push(Peer { tx, wake });
        inboxes.push(rx);
    }
    let (done_tx, done_rx) = mpsc::channel();
    let mut done_rx = Some(done_rx);
    Ok(inboxes
        .into_iter()
        .enumerate()
        .map(|(id, inbox)| Shard {
            id,
            key,
            peers: peers.clone(),
            inbox,
            udp_fwd: udp_fwd.clone(),
            done_rx: if id == 0 { done_rx.take() } else { None },
            done_tx: (id != 0).then(|| done_tx.clone()),
        })
        .collect())
}

/// The worker, out of `n`, owning a flow of protocol `proto` between
/// endpoints `a` and `b` (address, port; the echo identifier twice for
/// ping flows): SipHash-1-3 with `key` of the endpoints in a fixed order,
/// so both directions agree, modulo `n`.
pub fn owner(
    key: (u64, u64),
    n: usize,
    proto: Proto,
    a: (&[u8; 16], u16),
    b: (&[u8; 16], u16),
) -> usize {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut h = SipHasher13::new_with_keys(key.0, key.1);
    h.write_u8(proto as u8);
    h.write(lo.0);
    h.write_u16(lo.1);
    h.write(hi.0);
    h.write_u16(hi.1);
    (h.finish() % n.max(1) as u64) as usize
}

impl Shard {
    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.peers.len()
    }

    /// The worker owning the flow whose tap side is `side` (`eaddr` the
    /// namespace's address): [`owner`], except UDP from a `-u` target
    /// port, worker 0's.
    pub fn owner(&self, proto: Proto, side: &FlowSide) -> usize {
        if proto == Proto::Udp && self.udp_fwd.contains(side.eport) {
            return 0;
        }
        owner(
            self.key,
            self.peers.len(),
            proto,
            (&side.eaddr.0, side.eport),
            (&side.oaddr.0, side.oport),
        )
    }

    /// The eventfd that says this worker's inbox has something.
    pub fn wake_fd(&self) -> RawFd {
        self.peers.get(self.id).map_or(-1, |p| p.wake.as_raw_fd())
    }

    /// Put `h` in worker `to`'s inbox and wake it. `false` if that worker
    /// is gone (`h` is dropped: a socket in it is closed).
    pub fn send(&self, to: usize, h: Handoff) -> bool {
        let Some(p) = self.peers.get(to) else {
            return false;
        };
        if p.tx.send(h).is_err() {
            return false;
        }
        let one = 1u64.to_ne_bytes();
        // SAFETY: one is 8 readable bytes; an eventfd counter can't
        // overflow at our rates (EAGAIN would mean it is readable anyway).
        unsafe { libc::write(p.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        true
    }

    /// The next thing in this worker's inbox, if any (never blocks).
    pub fn take(&self) -> Option<Handoff> {
        self.inbox.try_recv().ok()
    }

    /// Worker 1..N: report `c` to worker 0 on the way out.
    pub fn report(&self, c: &Counters) {
        if let Some(tx) = &self.done_tx {
            let _ = tx.send((self.id, c.clone()));
        }
    }
}

/// Worker 0 at exit: stop the other workers and wait for their counters
/// (at most a second each), log one line per worker and return the sum
/// with ours. Without a shard, our counters.
pub fn stop_workers(ctx: &Ctx) -> Counters {
    let mut total = ctx.counters.clone();
    let Some(sh) = ctx.shard.as_ref() else {
        return total;
    };
    let n = sh.workers();
    for i in 1..n {
        sh.send(i, Handoff::Stop);
    }
    log::info!("worker 0: {}", ctx.counters);
    let Some(rx) = &sh.done_rx else { return total };
    let mut got = vec![None; n];
    for _ in 1..n {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok((id, c)) => {
                if let Some(slot) = got.get_mut(id) {
                    *slot = Some(c);
                }
            }
            Err(_) => break,
        }
    }
    for (id, c) in got.iter().enumerate().skip(1) {
        match c {
            Some(c) => {
                log::info!("worker {id}: {c}");
                total.add(c);
            }
            None => log::info!("worker {id}: no report (stopped already)"),
        }
    }
    total
}

/// A worker's context and periodic timer, moved into its thread.
pub struct Worker {
    /// Its context, with its queue of the tap and its [`Shard`].
    pub ctx: Ctx,
    /// Its periodic (1 s) timerfd.
    pub timer: OwnedFd,
}

// SAFETY: a worker's Ctx is built for it alone (entry.rs): its tap is a
// TunTap queue (an fd), it has no namespace switch, eBPF state, capture or
// statistics; nothing in it is shared with another thread but its Shard,
// whose channels and Arc'd eventfds are Send.
unsafe impl Send for Worker {}

/// Start workers 1..N on threads of their own (after the sandbox: they
/// inherit it). Each runs [`crate::daemon::run_worker`] until worker 0
/// stops it or its queue goes, then reports its counters.
///
/// # Errors
/// pthread_create's error (the ones started so far keep running; the
/// caller exits).
pub fn spawn(workers: Vec<Worker>) -> io::Result<()> {
    for w in workers {
        std::thread::Builder::new().spawn(move || {
            let mut w = w;
            let id = w.ctx.shard.as_ref().map_or(0, |s| s.id);
            if let Err(e) = crate::daemon::run_worker(&mut w.ctx, &w.timer) {
                log::error!("worker {id}: event loop: {e}");
            }
            if let Some(sh) = &w.ctx.shard {
                sh.report(&w.ctx.counters);
            }
        })?;
    }
    Ok(())
}

/// A connection accepted on a forwarded port, to the tap: opened here if
/// we own its tap side `tgt`, else handed to its owner.
pub fn inbound_tcp(ctx: &mut Ctx, ini: FlowSide, tgt: FlowSide, sock: OwnedFd) {
    if let Some(sh) = &ctx.shard {
        let o = sh.owner(Proto::Tcp, &tgt);
        if o != sh.id {
            if sh.send(o, Handoff::Tcp { ini, tgt, sock }) {
                ctx.counters.thread_tcp_handed += 1;
            } else {
                ctx.counters.drop_thread_handoff += 1;
            }
            return;
        }
    }
    crate::tcp::io::open_inbound(ctx, ini, tgt, sock);
}

/// A frame from the tap of the flow with tap side `side`: `true` if
/// another worker owns it and it was handed over (or dropped, counted,
/// if that worker is gone).
pub fn handed(ctx: &mut Ctx, frame: &[u8], off: crate::tap::offload::Offload, proto: Proto, side: &FlowSide) -> bool {
    let Some(sh) = &ctx.shard else { return false };
    let o = sh.owner(proto, side);
    if o == sh.id {
        return false;
    }
    if sh.send(o, Handoff::Frame(frame.to_vec(), off)) {
        ctx.counters.thread_frames_handed += 1;
    } else {
        ctx.counters.drop_thread_handoff += 1;
    }
    true
}

/// The namespace-side ports of the `-u` rules in `rules`.
pub fn udp_targets(rules: &[crate::fwd_rule::FwdRule]) -> PortSet {
    let mut s = PortSet::new();
    for r in rules
        .iter()
        .filter(|r| r.proto == crate::fwd_rule::Proto::Udp)
    {
        let last = u32::from(r.to) + u32::from(r.ports.last() - r.ports.first());
        for p in u32::from(r.to)..=last.min(65535) {
            s.insert(p as u16);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Inany;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn side(e: Inany, ep: u16, o: Inany, op: u16) -> FlowSide {
        FlowSide {
            eaddr: e,
            eport: ep,
            oaddr: o,
            oport: op,
        }
    }

    #[test]
    fn both_directions_of_a_flow_have_one_owner_and_flows_spread() {
        let key = (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
        let sh = shards_keyed(2, PortSet::new(), key).unwrap();
        let g4 = Inany::from(Ipv4Addr::new(192, 0, 2, 2));
        let h4 = Inany::from(Ipv4Addr::new(198, 51, 100, 1));
        let g6 = Inany::from("2001:db8::2".parse::<Ipv6Addr>().unwrap());
        let h6 = Inany::from("2001:db8:1::1".parse::<Ipv6Addr>().unwrap());
        let mut per = [[0usize; 4]; 3];
        for (i, n) in [2usize, 3, 4].into_iter().enumerate() {
            for port in 40000..41000u16 {
                for (g, h, proto) in [(g4, h4, Proto::Tcp), (g6, h6, Proto::Udp)] {
                    let a = owner(key, n, proto, (&g.0, port), (&h.0, 5201));
                    let b = owner(key, n, proto, (&h.0, 5201), (&g.0, port));
                    assert_eq!(a, b, "both directions");
                    assert!(a < n);
                    per[i][a] += 1;
                }
            }
            // 2000 flows over n workers: each gets a fair part (binomial,
            // 10 sigma below the mean is still far above this bound).
            for (w, &c) in per[i][..n].iter().enumerate() {
                assert!(c > 2000 / n / 2, "n={n}: worker {w} got {c} flows");
            }
        }
        // The shard agrees with the function, for a tap side.
        let s = side(g4, 40001, h4, 5201);
        assert_eq!(
            sh[0].owner(Proto::Tcp, &s),
            owner(key, 2, Proto::Tcp, (&g4.0, 40001), (&h4.0, 5201))
        );
        assert_eq!(sh[0].owner(Proto::Tcp, &s), sh[1].owner(Proto::Tcp, &s));
        // Another key spreads differently (it is keyed, not fixed).
        let other = (1, 2);
        let differ = (40000..40100u16)
            .filter(|&p| {
                owner(key, 2, Proto::Tcp, (&g4.0, p), (&h4.0, 80))
                    != owner(other, 2, Proto::Tcp, (&g4.0, p), (&h4.0, 80))
            })
            .count();
        assert!(differ > 10, "{differ}");
    }

    #[test]
    fn udp_from_a_forwarded_port_belongs_to_worker_0() {
        let mut ports = PortSet::new();
        ports.insert(5353);
        let sh = shards_keyed(4, ports, (7, 9)).unwrap();
        let g = Inany::from(Ipv4Addr::new(192, 0, 2, 2));
        let h = Inany::from(Ipv4Addr::new(192, 0, 2, 1));
        for p in 1000..1100u16 {
            assert_eq!(sh[2].owner(Proto::Udp, &side(g, 5353, h, p)), 0);
        }
        let spread: std::collections::BTreeSet<_> = (1000..1100u16)
            .map(|p| sh[2].owner(Proto::Udp, &side(g, 5354, h, p)))
            .collect();
        assert!(spread.len() > 1);
        // TCP on that port is not concerned.
        let spread: std::collections::BTreeSet<_> = (1000..1100u16)
            .map(|p| sh[2].owner(Proto::Tcp, &side(g, 5353, h, p)))
            .collect();
        assert!(spread.len() > 1);
    }

    fn eventfd_count(fd: RawFd) -> u64 {
        let mut b = [0u8; 8];
        // SAFETY: b is 8 writable bytes; the fd is non-blocking.
        let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 8) };
        if n == 8 {
            u64::from_ne_bytes(b)
        } else {
            0
        }
    }

    #[test]
    fn handoff_wakes_the_owner_keeps_order_and_crosses_threads() {
        let sh = shards_keyed(3, PortSet::new(), (1, 1)).unwrap();
        assert!(sh[1].take().is_none());
        assert_eq!(eventfd_count(sh[1].wake_fd()), 0, "nothing yet");
        assert!(sh[0].send(1, Handoff::Frame(vec![1], Default::default())));
        assert!(sh[2].send(1, Handoff::Frame(vec![2], Default::default())));
        assert!(sh[0].send(1, Handoff::Frame(vec![3], Default::default())));
        assert_eq!(eventfd_count(sh[1].wake_fd()), 3, "one wake-up per handoff");
        assert_eq!(
            eventfd_count(sh[2].wake_fd()),
            0,
            "the others are not woken"
        );
        let got: Vec<u8> = std::iter::from_fn(|| sh[1].take())
            .map(|h| match h {
                Handoff::Frame(v, _) => v[0],
                h => panic!("{h:?}"),
            })
            .collect();
        // Per sender, in order; here all arrive.
        assert_eq!(got.len(), 3);
        assert!(got.iter().position(|&x| x == 1) < got.iter().position(|&x| x == 3));
        // From another thread, many.
        let mut it = sh.into_iter();
        let s0 = it.next().unwrap();
        let s1 = it.next().unwrap();
        let t = std::thread::spawn(move || {
            for i in 0..1000u32 {
                assert!(s0.send(1, Handoff::Frame(i.to_ne_bytes().to_vec(), Default::default())));
            }
            s0
        });
        let s0 = t.join().unwrap();
        let mut n = 0u32;
        while let Some(Handoff::Frame(v, _)) = s1.take() {
            assert_eq!(v, n.to_ne_bytes());
            n += 1;
        }
        assert_eq!(n, 1000);
        // A worker that is gone: the send fails and says so.
        drop(it);
        drop(s1);
        assert!(!s0.send(1, Handoff::Stop));
        assert!(!s0.send(9, Handoff::Stop), "no such worker");
    }

    #[test]
    fn stopped_workers_report_their_counters() {
        let sh = shards_keyed(2, PortSet::new(), (1, 1)).unwrap();
        let c = Counters { tcp_flows: 5, ..Counters::default() };
        sh[1].report(&c);
        let (id, got) = sh[0]
            .done_rx
            .as_ref()
            .unwrap()
            .recv_timeout(Duration::from_secs(1))
            .unwrap();
        assert_eq!((id, got.tcp_flows), (1, 5));
        let mut t = Counters { tcp_flows: 2, ..Counters::default() };
        t.add(&got);
        assert_eq!(t.tcp_flows, 7);
    }

    #[test]
    fn udp_targets_follow_the_rules_mapping() {
        let args: Vec<std::ffi::OsString> = ["-u", "5000-5002:6000-6002", "-t", "80"]
            .iter()
            .map(std::ffi::OsString::from)
            .collect();
        let Ok(c) = crate::conf::Conf::parse(crate::conf::Mode::Pasta, &args) else {
            panic!("parse")
        };
        let s = udp_targets(&c.fwd_in.rules);
        assert!(s.contains(6000) && s.contains(6002));
        assert!(!s.contains(5000) && !s.contains(6003) && !s.contains(80));
    }
}
