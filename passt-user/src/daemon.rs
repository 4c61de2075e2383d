//! # Theory of operation
//!
//! The data plane: one thread, one epoll loop, run to completion, as
//! upstream. [`Ctx`] holds everything the handlers need; there is no global
//! state. Each cycle:
//!
//! 1. `epoll_wait` (the periodic timerfd bounds the wait to one second);
//! 2. each event is dispatched on its [`EpollType`]: tap frames are read in
//!    a batch and handed to [`dispatch_frame`], flow sockets to their
//!    protocol module, the timer and signals to their handlers;
//! 3. frames queued for the tap are written in one batch;
//! 4. flows closed during the cycle are freed (deferred pass).
//!
//! [`dispatch_frame`] parses each frame once (etherparse, length-checked)
//! and routes it: ARP, DHCP, NDP and DHCPv6 to the local responders
//! ([`crate::svc`]), UDP and ICMP echo to their flows. Anything malformed
//! or not forwarded is counted under one reason in [`Counters`]; nothing
//! from the guest can panic the loop.
//!
//! Syscalls: epoll_wait, read (timerfd, signalfd), plus those of the tap
//! and protocol modules.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use etherparse::{EtherType, Ethernet2Slice, IpNumber, Ipv4Slice, Ipv6Slice, UdpSlice};

use crate::counters::Counters;
use crate::epoll::{event_ref, Epoll, EpollRef, EpollType, EPOLL_EVENTS};
use crate::flow::table::FlowTable;
use crate::flow::{FlowData, FlowSide, Inany, Pif, Proto, Sidx, SockFlow, INI, TGT};
use crate::fwd::Fwd;
use crate::svc::{self, SvcConf};
use crate::tap::{RxBatch, Tap, TapError, TxBatch};
use crate::{icmp, udp};

/// Flows in the table (UDP and ping share it); upstream's default order of
/// magnitude.
pub const FLOW_CAPACITY: usize = 16384;

/// What tells the loop to stop, checked on SIGCHLD and every timer tick.
pub trait Watch {
    /// `Some(status)` when the daemon must exit with `status`.
    fn check(&mut self) -> Option<i32>;
}

/// The execution context of the data plane.
pub struct Ctx {
    /// Time at the start of the current cycle.
    pub now: Instant,
    /// The epoll instance.
    pub epoll: Epoll,
    /// The tap back-end.
    pub tap: Box<dyn Tap>,
    /// Frames read in this wakeup (taken out while they are dispatched).
    pub rx: RxBatch,
    /// Frames queued for the tap.
    pub tx: TxBatch,
    /// Every flow.
    pub flows: FlowTable<FlowData>,
    /// Event and drop counters.
    pub counters: Counters,
    /// Forwarding and NAT.
    pub fwd: Fwd,
    /// Local services' configuration.
    pub svc: SvcConf,
    /// Our MAC, source of every frame to the guest.
    pub our_mac: [u8; 6],
    /// The guest's MAC (learnt from its frames; broadcast until then).
    pub guest_mac: [u8; 6],
    /// `--no-udp`.
    pub no_udp: bool,
    /// `--no-icmp`.
    pub no_icmp: bool,
    /// IPv4 enabled (not `-6`).
    pub v4: bool,
    /// IPv6 enabled (not `-4`).
    pub v6: bool,
    /// The ping_group_range warning was given.
    pub ping_warned: bool,
    label_seed: u32,
    counters_logged: Counters,
    exit: Option<i32>,
}

/// Everything needed to build a [`Ctx`].
pub struct CtxInit {
    /// The tap back-end.
    pub tap: Box<dyn Tap>,
    /// Forwarding rules.
    pub fwd: Fwd,
    /// Services.
    pub svc: SvcConf,
    /// Guest MAC if known (pasta reads it from the tap interface).
    pub guest_mac: Option<[u8; 6]>,
    /// `--no-udp`.
    pub no_udp: bool,
    /// `--no-icmp`.
    pub no_icmp: bool,
    /// IPv4 enabled.
    pub v4: bool,
    /// IPv6 enabled.
    pub v6: bool,
}

impl Ctx {
    /// Allocate every buffer and table, create the epoll instance.
    ///
    /// # Errors
    /// Errors of epoll_create1 and getrandom.
    pub fn new(i: CtxInit) -> std::io::Result<Ctx> {
        let key = crate::flow::table::random_key()?;
        Ok(Ctx {
            now: Instant::now(),
            epoll: Epoll::new()?,
            tap: i.tap,
            rx: RxBatch::new(),
            tx: TxBatch::new(),
            flows: FlowTable::new(FLOW_CAPACITY, key),
            counters: Counters::default(),
            fwd: i.fwd,
            our_mac: i.svc.our_mac,
            svc: i.svc,
            guest_mac: i.guest_mac.unwrap_or([0xff; 6]),
            no_udp: i.no_udp,
            no_icmp: i.no_icmp,
            v4: i.v4,
            v6: i.v6,
            ping_warned: false,
            label_seed: key.0 as u32,
            counters_logged: Counters::default(),
            exit: None,
        })
    }

    /// Add a flow owning `sock`: tap side `ini`, host side `tgt`; hash the
    /// tap side and register the socket for input. `None` (counted) when
    /// the table is full or epoll refuses the socket.
    pub fn new_sock_flow(
        &mut self,
        proto: Proto,
        ini: FlowSide,
        tgt: FlowSide,
        sock: OwnedFd,
        wrap: fn(SockFlow) -> FlowData,
    ) -> Option<Sidx> {
        let fd = sock.as_raw_fd();
        let Some(idx) = self.flows.alloc(proto, [Pif::Tap, Pif::Host], [ini, tgt], FlowData::None) else {
            self.counters.drop_flow_table_full += 1;
            return None;
        };
        let flow_label = ((self.label_seed ^ (idx as u32).wrapping_mul(0x9e37_79b1)) & 0xf_ffff).max(1);
        let kind = if proto == Proto::Udp { EpollType::UdpFlow } else { EpollType::PingFlow };
        let sidx = Sidx::new(idx as u32, TGT);
        if self.epoll.add(fd, libc::EPOLLIN as u32, EpollRef::new(kind, fd, sidx.raw())).is_err() {
            self.counters.drop_socket += 1;
            self.flows.close(idx);
            return None;
        }
        if let Some(f) = self.flows.get_mut(idx) {
            f.data = wrap(SockFlow { sock, last: self.now, flow_label });
        }
        self.flows.hash_insert(idx, INI);
        Some(Sidx::new(idx as u32, INI))
    }

    /// Write the queued frames to the tap.
    pub fn flush_tx(&mut self) {
        if self.tx.is_empty() {
            self.tx.clear();
            return;
        }
        match self.tap.send_batch(&self.tx) {
            Ok(r) => {
                self.counters.tap_tx_frames += r.sent as u64;
                self.counters.drop_tap_full += r.dropped as u64;
            }
            Err(TapError::Gone(e)) => {
                log::info!("tap device gone ({e}), exiting");
                self.exit = Some(0);
            }
            Err(e) => log::debug!("{e}"),
        }
        self.tx.clear();
    }

    /// Run a responder into the next transmit slot.
    fn answer(&mut self, f: fn(&SvcConf, &[u8], &mut [u8]) -> Result<Option<usize>, crate::wire::Error>, frame: &[u8]) {
        if self.tx.is_full() {
            self.flush_tx();
        }
        let Some(slot) = self.tx.slot(0) else { return };
        match f(&self.svc, frame, slot) {
            Ok(Some(len)) => {
                self.tx.commit(0..len);
                self.counters.svc_replies += 1;
            }
            Ok(None) => self.counters.ignored_ctrl += 1,
            Err(_) => self.counters.drop_svc_malformed += 1,
        }
    }

    /// Periodic work: flow timeouts, unsolicited RA, counters in debug.
    fn timer(&mut self) {
        let now = self.now;
        let mut expired = [0u32; 256];
        let mut n = 0;
        for idx in self.flows.active_indices() {
            let Some(f) = self.flows.get(idx) else { continue };
            let timeout = match &f.data {
                FlowData::Udp(_) => udp::UDP_TIMEOUT,
                FlowData::Ping(_) => icmp::PING_TIMEOUT,
                FlowData::None => continue,
            };
            if let Some(sf) = f.data.sock_flow() {
                if now.duration_since(sf.last) >= timeout && n < expired.len() {
                    expired[n] = idx as u32;
                    n += 1;
                }
            }
        }
        for &idx in &expired[..n] {
            log::debug!("flow {idx}: idle timeout");
            self.flows.close(idx as usize);
        }
        if log::log_enabled!(log::Level::Debug) && self.counters != self.counters_logged {
            log::debug!("{}", self.counters);
            self.counters_logged = self.counters.clone();
        }
    }
}

/// A context on an in-memory tap ([`crate::tap::mem::MemTap`]) with a
/// fixed configuration (192.0.2.2/24 via 192.0.2.1, 2001:db8::2/64 via
/// fe80::1, resolvers 192.0.2.1 and 2001:db8::1), for tests and fuzzing.
///
/// # Errors
/// Errors of [`Ctx::new`] and eventfd.
pub fn test_ctx() -> std::io::Result<Ctx> {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let gw4 = Ipv4Addr::new(192, 0, 2, 1);
    let ll: Ipv6Addr = "fe80::1".parse().unwrap_or(Ipv6Addr::LOCALHOST);
    let svc = SvcConf {
        our_mac: [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55],
        mtu: Some(65520),
        v4: Some(svc::SvcV4 { addr: Ipv4Addr::new(192, 0, 2, 2), prefix_len: 24, gw: gw4, dns: vec![gw4] }),
        v6: Some(svc::SvcV6 {
            addr: "2001:db8::2".parse().unwrap_or(Ipv6Addr::LOCALHOST),
            prefix_len: 64,
            our_ll: ll,
            dns: vec!["2001:db8::1".parse().unwrap_or(Ipv6Addr::LOCALHOST)],
        }),
        search: vec!["lab.test".into()],
        hostname: None,
        fqdn: None,
        no_dhcp: false,
        no_ndp: false,
        no_ra: false,
        no_dhcpv6: false,
    };
    let mut fwd = Fwd::default();
    fwd.v4.map_host_loopback = Some(gw4);
    fwd.v6.map_host_loopback = Some(ll);
    Ctx::new(CtxInit {
        tap: Box::new(crate::tap::mem::MemTap::new()?),
        fwd,
        svc,
        guest_mac: Some([2, 0, 0, 0, 0, 2]),
        no_udp: false,
        no_icmp: false,
        v4: true,
        v6: true,
    })
}

/// Learn the guest's MAC from a frame's source address (unicast only).
fn learn_mac(ctx: &mut Ctx, src: [u8; 6]) {
    if src[0] & 1 == 0 && src != ctx.our_mac && src != [0; 6] && src != ctx.guest_mac {
        ctx.guest_mac = src;
    }
}

/// Parse one frame from the tap and route it; see the module documentation.
pub fn dispatch_frame(ctx: &mut Ctx, frame: &[u8]) {
    let Ok(eth) = Ethernet2Slice::from_slice_without_fcs(frame) else {
        ctx.counters.drop_eth_malformed += 1;
        return;
    };
    learn_mac(ctx, eth.source());
    match eth.ether_type() {
        EtherType::ARP => {
            if ctx.v4 {
                ctx.answer(svc::arp::handle, frame);
            } else {
                ctx.counters.ignored_ctrl += 1;
            }
        }
        EtherType::IPV4 => ipv4(ctx, frame, eth.payload_slice()),
        EtherType::IPV6 => ipv6(ctx, frame, eth.payload_slice()),
        _ => ctx.counters.drop_ethertype += 1,
    }
}

fn ipv4(ctx: &mut Ctx, frame: &[u8], l3: &[u8]) {
    let Ok(ip) = Ipv4Slice::from_slice(l3) else {
        ctx.counters.drop_ip_malformed += 1;
        return;
    };
    if !ctx.v4 {
        ctx.counters.drop_addr += 1;
        return;
    }
    if ip.is_payload_fragmented() {
        ctx.counters.drop_ip_fragment += 1;
        return;
    }
    let src = Inany::from(ip.header().source_addr());
    let dst = Inany::from(ip.header().destination_addr());
    let l4 = ip.payload().payload;
    match ip.payload().ip_number {
        IpNumber::UDP => {
            let Ok(u) = UdpSlice::from_slice(l4) else {
                ctx.counters.drop_l4_malformed += 1;
                return;
            };
            if u.destination_port() == 67 {
                ctx.answer(svc::dhcp::handle, frame);
            } else if ctx.no_udp {
                ctx.counters.drop_udp_disabled += 1;
            } else if src.is_unspecified() || src.is_multicast_or_broadcast() {
                ctx.counters.drop_addr += 1;
            } else {
                udp::from_tap(ctx, src, dst, u.source_port(), u.destination_port(), u.payload());
            }
        }
        IpNumber::ICMP => {
            if l4.len() < 8 {
                ctx.counters.drop_l4_malformed += 1;
            } else if l4[0] != 8 || ctx.no_icmp {
                ctx.counters.drop_icmp_type += 1;
            } else if src.is_unspecified() || src.is_multicast_or_broadcast() {
                ctx.counters.drop_addr += 1;
            } else {
                icmp::from_tap(ctx, src, dst, u16::from_be_bytes([l4[4], l4[5]]), l4);
            }
        }
        IpNumber::TCP => ctx.counters.drop_tcp += 1,
        _ => ctx.counters.drop_ip_proto += 1,
    }
}

fn ipv6(ctx: &mut Ctx, frame: &[u8], l3: &[u8]) {
    let Ok(ip) = Ipv6Slice::from_slice(l3) else {
        ctx.counters.drop_ip_malformed += 1;
        return;
    };
    if !ctx.v6 {
        ctx.counters.drop_addr += 1;
        return;
    }
    if ip.is_payload_fragmented() {
        ctx.counters.drop_ip_fragment += 1;
        return;
    }
    let src = Inany::from(ip.header().source_addr());
    let dst = Inany::from(ip.header().destination_addr());
    let l4 = ip.payload().payload;
    match ip.payload().ip_number {
        IpNumber::UDP => {
            let Ok(u) = UdpSlice::from_slice(l4) else {
                ctx.counters.drop_l4_malformed += 1;
                return;
            };
            if u.destination_port() == 547 {
                ctx.answer(svc::dhcpv6::handle, frame);
            } else if ctx.no_udp {
                ctx.counters.drop_udp_disabled += 1;
            } else if src.is_unspecified() || src.is_multicast_or_broadcast() {
                ctx.counters.drop_addr += 1;
            } else {
                udp::from_tap(ctx, src, dst, u.source_port(), u.destination_port(), u.payload());
            }
        }
        IpNumber::IPV6_ICMP => {
            if l4.len() < 8 {
                ctx.counters.drop_l4_malformed += 1;
                return;
            }
            match l4[0] {
                128 if !ctx.no_icmp && !src.is_unspecified() && !dst.is_multicast_or_broadcast() => {
                    icmp::from_tap(ctx, src, dst, u16::from_be_bytes([l4[4], l4[5]]), l4)
                }
                128 => ctx.counters.drop_icmp_type += 1,
                133 | 135 => ctx.answer(svc::ndp::handle, frame),
                // RA, NA, redirects, MLD and the rest are for the link only.
                _ => ctx.counters.ignored_ctrl += 1,
            }
        }
        IpNumber::TCP => ctx.counters.drop_tcp += 1,
        _ => ctx.counters.drop_ip_proto += 1,
    }
}

fn tap_ready(ctx: &mut Ctx) {
    // A bounded number of batches per wakeup keeps sockets served too.
    for _ in 0..8 {
        let mut rx = std::mem::take(&mut ctx.rx);
        let r = ctx.tap.recv_batch(&mut rx);
        let n = match r {
            Ok(n) => n,
            Err(TapError::Gone(e)) => {
                log::info!("tap device gone ({e}), exiting");
                ctx.exit = Some(0);
                ctx.rx = rx;
                return;
            }
            Err(e) => {
                log::debug!("{e}");
                ctx.rx = rx;
                return;
            }
        };
        ctx.counters.tap_rx_frames += n as u64;
        for r in &rx.frames {
            dispatch_frame(ctx, &rx.buf[r.clone()]);
        }
        ctx.rx = rx;
        ctx.flush_tx();
        if n < crate::tap::BATCH {
            break;
        }
    }
}

/// Read the pending expirations of a timerfd.
fn drain_fd(fd: i32) {
    let mut b = [0u8; 128];
    // SAFETY: b is writable; the fd is non-blocking.
    unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) };
}

/// Run the loop until a [`Watch`] or a signal asks to stop; returns the
/// exit status.
///
/// `timer_fd` is a periodic timerfd (1 s), `signal_fd` a signalfd; both
/// non-blocking, neither registered yet.
///
/// # Errors
/// epoll registration or wait errors: fatal.
pub fn run(ctx: &mut Ctx, timer_fd: &OwnedFd, signal_fd: &OwnedFd, watch: &mut dyn Watch) -> std::io::Result<i32> {
    let tap_fd = ctx.tap.fd();
    ctx.epoll.add(tap_fd, libc::EPOLLIN as u32, EpollRef::new(EpollType::Tap, tap_fd, 0))?;
    let t = timer_fd.as_raw_fd();
    ctx.epoll.add(t, libc::EPOLLIN as u32, EpollRef::new(EpollType::Timer, t, 0))?;
    let s = signal_fd.as_raw_fd();
    ctx.epoll.add(s, libc::EPOLLIN as u32, EpollRef::new(EpollType::Signal, s, 0))?;
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; EPOLL_EVENTS];
    loop {
        let n = ctx.epoll.wait(&mut events, 1000)?;
        ctx.now = Instant::now();
        for ev in &events[..n] {
            let r = event_ref(ev);
            match r.kind() {
                Some(EpollType::Tap) => tap_ready(ctx),
                Some(EpollType::UdpFlow) => udp::sock_ready(ctx, Sidx::from_raw(r.data()), ev.events),
                Some(EpollType::PingFlow) => icmp::sock_ready(ctx, Sidx::from_raw(r.data()), ev.events),
                Some(EpollType::Timer) => {
                    drain_fd(t);
                    ctx.timer();
                    if let Some(st) = watch.check() {
                        ctx.exit = Some(st);
                    }
                }
                Some(EpollType::Signal) => {
                    if let Some(st) = crate::signals::read(s) {
                        ctx.exit = Some(st);
                    } else if let Some(st) = watch.check() {
                        ctx.exit = Some(st);
                    }
                }
                None => log::debug!("epoll: unknown reference {r:?}"),
            }
        }
        ctx.flush_tx();
        let epoll = &ctx.epoll;
        ctx.flows.defer_free(|f| {
            if let Some(sf) = f.data.sock_flow() {
                epoll.del(sf.sock.as_raw_fd());
            }
            // Dropping the data closes the socket.
            f.data = FlowData::None;
        });
        if let Some(st) = ctx.exit {
            log::info!("{}", ctx.counters);
            return Ok(st);
        }
        let _ = Duration::ZERO;
    }
}
