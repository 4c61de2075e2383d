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
use crate::fwd_rule::PortSet;
use crate::limits::Refusal;
use crate::svc::{self, SvcConf};
use crate::tap::offload::L4Kind;
use crate::tap::{GsoType, Offload, PollFd, RxBatch, Tap, TapError, TapEvent, TxBatch};
use crate::{icmp, tcp, udp};

/// Flows in the table by default (every protocol shares it; `--max-flows`
/// changes it); upstream's default order of magnitude.
pub const FLOW_CAPACITY: usize = 32768;

/// What tells the loop to stop, checked on SIGCHLD and every timer tick.
pub trait Watch {
    /// `Some(status)` when the daemon must exit with `status`.
    fn check(&mut self) -> Option<i32>;
}

/// A local service: frame in, reply written to the slot (see [`crate::svc`]).
type Responder = fn(&SvcConf, &[u8], &mut [u8]) -> Result<Option<usize>, crate::wire::Error>;

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
    /// `--no-tcp`.
    pub no_tcp: bool,
    /// Tap MTU in bytes (bounds the MSS we announce).
    pub mtu: u16,
    /// When the context was made (clock base for TCP initial sequence numbers).
    pub start: Instant,
    /// SipHash key for TCP initial sequence numbers (RFC 6528).
    pub isn_key: (u64, u64),
    /// TCP flows owed an ACK at the end of the current tap batch.
    pub tcp_ack_pending: Vec<u32>,
    /// The kernel supports SO_PEEK_OFF on TCP sockets (Linux >= 6.9); if
    /// not, bytes in flight are peeked again into `tcp_discard`.
    pub tcp_peek_off: bool,
    /// Discard buffer for peeks without SO_PEEK_OFF (empty until needed).
    pub tcp_discard: Vec<u8>,
    /// Guest TCP data staged during a tap batch ([`tcp::io::Stage`]).
    pub tcp_stage: tcp::io::Stage,
    /// UDP datagrams from the tap batch being dispatched, sent together.
    pub udp_stage: udp::Stage,
    /// A tap batch is being dispatched (staging allowed; flushed at its end).
    pub in_batch: bool,
    /// TCP flows whose ACK is delayed ([`tcp::io::flush_acks`]).
    pub tcp_delack: Vec<u32>,
    /// When the delayed ACKs of `tcp_delack` are due (None: none delayed);
    /// the fast timer fires then.
    pub tcp_delack_at: Option<Instant>,
    /// TCP flows whose closed window is re-checked on the fast timer.
    pub tcp_wnd_waiters: Vec<u32>,
    /// One-shot timerfd for millisecond work (TCP window re-checks,
    /// delayed ACKs).
    pub fast_timer: OwnedFd,
    /// When the fast timer fires, if armed.
    fast_timer_at: Option<Instant>,
    /// IPv4 enabled (not `-6`).
    pub v4: bool,
    /// IPv6 enabled (not `-4`).
    pub v6: bool,
    /// Loaded eBPF programs (`--ebpf`), if any.
    pub ebpf: Option<crate::ebpf::Accel>,
    /// Listening sockets of the forwarding rules.
    pub listeners: crate::listen::Listeners,
    /// Empty pipes for spliced TCP flows.
    pub splice_pipes: tcp::splice::PipePool,
    /// pasta: the way into the target namespace (splice, `-T`/`-U`).
    pub ns: Option<crate::netns::NsSwitch>,
    /// Listening-socket scanners for `auto` rules, by direction: the
    /// namespace's for `-t`/`-u`, ours for `-T`/`-U`.
    pub scanners: [Option<crate::fwd_scan::ProcNet>; 2],
    scan_buf: crate::fwd_scan::Listening,
    label_seed: u32,
    counters_logged: Counters,
    exit: Option<i32>,
    /// The tap back-end's fds as registered, and the back-end's
    /// [`Tap::poll_gen`] when they were.
    tap_regs: Vec<PollFd>,
    tap_gen: Option<u64>,
    /// Guest MAC given at start (pasta), restored when a new guest attaches.
    guest_mac_init: [u8; 6],
    /// `-p/--pcap`: capture of every frame to and from the tap.
    pub pcap: Option<crate::pcap::Pcap>,
    /// `--stats`: event counters printed to standard error.
    pub stats: Option<crate::stats::Stats>,
    /// A descriptor in reserve, to refuse connections when out of them.
    pub spare_fd: crate::limits::SpareFd,
    /// Rate limit of ICMP errors for refused flows.
    pub unreach_limit: crate::limits::RateLimit,
    /// `--threads` above 1: this worker's part ([`crate::threads`]).
    pub shard: Option<crate::threads::Shard>,
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
    /// `--no-tcp`.
    pub no_tcp: bool,
    /// Tap MTU in bytes.
    pub mtu: u16,
    /// IPv4 enabled.
    pub v4: bool,
    /// IPv6 enabled.
    pub v6: bool,
    /// Capacity of the flow table (`--max-flows`, else [`FLOW_CAPACITY`]).
    pub max_flows: usize,
}

impl Ctx {
    /// Allocate every buffer and table, create the epoll instance and
    /// reserve a spare descriptor ([`crate::limits::SpareFd`]).
    ///
    /// # Errors
    /// Errors of epoll_create1, getrandom and fcntl(F_DUPFD_CLOEXEC).
    pub fn new(i: CtxInit) -> std::io::Result<Ctx> {
        let key = crate::flow::table::random_key()?;
        let isn_key = crate::flow::table::random_key()?;
        let epoll = Epoll::new()?;
        let spare_fd = crate::limits::SpareFd::new(epoll.as_raw_fd())?;
        Ok(Ctx {
            now: Instant::now(),
            epoll,
            tap: i.tap,
            rx: RxBatch::new(),
            tx: TxBatch::new(),
            flows: FlowTable::new(i.max_flows, key),
            counters: Counters::default(),
            fwd: i.fwd,
            our_mac: i.svc.our_mac,
            svc: i.svc,
            guest_mac: i.guest_mac.unwrap_or([0xff; 6]),
            no_udp: i.no_udp,
            no_icmp: i.no_icmp,
            no_tcp: i.no_tcp,
            mtu: i.mtu,
            start: Instant::now(),
            isn_key,
            tcp_ack_pending: Vec::with_capacity(crate::tap::BATCH * 4),
            tcp_delack: Vec::with_capacity(1024),
            tcp_delack_at: None,
            tcp_wnd_waiters: Vec::with_capacity(1024),
            tcp_stage: tcp::io::Stage::new(),
            udp_stage: udp::Stage::new(),
            tcp_peek_off: true,
            tcp_discard: Vec::new(),
            in_batch: false,
            fast_timer: crate::signals::oneshot_timer()?,
            fast_timer_at: None,
            v4: i.v4,
            v6: i.v6,
            ebpf: None,
            listeners: crate::listen::Listeners::default(),
            splice_pipes: tcp::splice::PipePool::default(),
            ns: None,
            scanners: [None, None],
            scan_buf: crate::fwd_scan::Listening::new(),
            label_seed: key.0 as u32,
            counters_logged: Counters::default(),
            exit: None,
            tap_regs: Vec::with_capacity(8),
            tap_gen: None,
            guest_mac_init: i.guest_mac.unwrap_or([0xff; 6]),
            pcap: None,
            stats: None,
            spare_fd,
            unreach_limit: crate::limits::RateLimit::new(crate::limits::UNREACH_PER_SEC),
            shard: None,
        })
    }

    /// Tell the guest that the new flow of `frame` (UDP or echo request,
    /// from the tap) was refused: ICMP/ICMPv6 "administratively
    /// prohibited" ([`crate::limits::unreach_frame`]), rate-limited, counted.
    pub fn refuse_from_tap(&mut self, frame: &[u8]) {
        if !self.unreach_limit.take(self.now) {
            self.counters.unreach_limited += 1;
            return;
        }
        if self.tx.is_full() {
            self.flush_tx();
        }
        let our_mac = self.our_mac;
        let Some(slot) = self.tx.slot(0) else { return };
        if let Some(r) = crate::limits::unreach_frame(our_mac, frame, slot) {
            self.tx.commit(r);
            self.counters.unreach_to_tap += 1;
        }
    }

    /// Add a flow owning `sock`, with sides `side` on interfaces `pif`, one
    /// of them the tap: register the socket for input as the other side,
    /// hash the tap side. Returns the tap side; `None` (counted) when the
    /// table is full or epoll refuses the socket (callers check
    /// [`FlowTable::is_full`] first, before making the socket).
    pub fn new_sock_flow(
        &mut self,
        proto: Proto,
        pif: [Pif; 2],
        side: [FlowSide; 2],
        sock: OwnedFd,
        wrap: fn(SockFlow) -> FlowData,
    ) -> Option<Sidx> {
        let fd = sock.as_raw_fd();
        let Some(idx) = self.flows.alloc(proto, pif, side, FlowData::None) else {
            self.counters.drop_flow_table_full += 1;
            return None;
        };
        let tap = self.flows.get(idx).map_or(INI, |f| f.tap_side());
        let flow_label = self.flow_label(idx);
        let kind = if proto == Proto::Udp { EpollType::UdpFlow } else { EpollType::PingFlow };
        let sidx = Sidx::new(idx as u32, 1 - tap);
        if self.epoll.add(fd, libc::EPOLLIN as u32, EpollRef::new(kind, fd, sidx.raw())).is_err() {
            self.counters.drop_socket += 1;
            self.flows.close(idx);
            return None;
        }
        if let Some(f) = self.flows.get_mut(idx) {
            f.data = wrap(SockFlow { sock, last: self.now, flow_label });
        }
        self.flows.hash_insert(idx, tap);
        Some(Sidx::new(idx as u32, tap))
    }

    /// Make the fast timer fire `after` from now, unless it fires sooner.
    pub fn arm_fast_timer(&mut self, after: Duration) {
        let at = self.now + after;
        if self.fast_timer_at.is_some_and(|t| t <= at && t > self.now) {
            return;
        }
        self.fast_timer_at = Some(at);
        crate::signals::arm_once(self.fast_timer.as_raw_fd(), after);
    }

    /// The IPv6 flow label of flow `idx` (RFC 6437: 20 bits, non-zero,
    /// unpredictable).
    pub fn flow_label(&self, idx: usize) -> u32 {
        ((self.label_seed ^ (idx as u32).wrapping_mul(0x9e37_79b1)) & 0xf_ffff).max(1)
    }

    /// The socket flow of tap side `ini` (opened with `open` if there is
    /// none): its socket and its host side, with its activity time set to
    /// now. `None` when it could not be opened (`open` counted why).
    pub fn tap_sock_flow(
        &mut self,
        proto: Proto,
        ini: FlowSide,
        open: fn(&mut Ctx, FlowSide) -> Result<Sidx, Refusal>,
    ) -> Result<(std::os::fd::RawFd, FlowSide), Refusal> {
        let sidx = match self.flows.lookup(Pif::Tap, proto, &ini) {
            Some(s) => s,
            None => open(self, ini)?,
        };
        let now = self.now;
        let f = self.flows.get_mut(sidx.flow()).ok_or(Refusal::Dropped)?;
        let tgt = f.side[TGT];
        let sf = f.data.sock_flow_mut().ok_or(Refusal::Dropped)?;
        sf.last = now;
        Ok((sf.sock.as_raw_fd(), tgt))
    }

    /// Write the queued frames to the tap.
    pub fn flush_tx(&mut self) {
        if self.tx.is_empty() {
            self.tx.clear();
            return;
        }
        if let Some(p) = &mut self.pcap {
            p.frames(self.tx.frames());
        }
        match self.tap.send_batch(&self.tx) {
            Ok(r) => {
                self.counters.tap_tx_frames += r.sent as u64;
                self.counters.drop_tap_full += r.dropped as u64;
            }
            Err(e) => self.tap_failed(e),
        }
        self.tx.clear();
        self.tap_sync();
    }

    /// Bring the epoll registrations of the tap back-end's fds up to date
    /// when its [`Tap::poll_gen`] moved. Called right after every call into
    /// the back-end that may open or close fds, so that no fd number it
    /// closed can have been reused by another part of the data plane yet.
    fn tap_sync(&mut self) {
        let gen = self.tap.poll_gen();
        if self.tap_gen == Some(gen) {
            return;
        }
        self.tap_gen = Some(gen);
        for p in self.tap_regs.drain(..) {
            self.epoll.del(p.fd);
        }
        self.tap.poll_fds(&mut self.tap_regs);
        for p in &self.tap_regs {
            if let Err(e) = self.epoll.add(p.fd, p.events, EpollRef::new(EpollType::Tap, p.fd, p.id)) {
                log::error!("can't poll the tap back-end's fd {}: {e}, exiting", p.fd);
                self.exit = Some(1);
            }
        }
        self.tap.polled();
    }

    /// An error of the tap back-end: [`TapError::Gone`] ends the loop
    /// (status 0, the error says what went), others are logged.
    fn tap_failed(&mut self, e: TapError) {
        match e {
            TapError::Gone(e) => {
                log::info!("{e}, exiting");
                self.exit = Some(0);
            }
            e => log::debug!("{e}"),
        }
    }

    /// A new guest attached: forget what was learnt from the previous one
    /// (its MAC, its addresses).
    fn guest_reset(&mut self) {
        self.guest_mac = self.guest_mac_init;
        self.fwd.guest_reset();
    }

    /// Run a responder into the next transmit slot.
    fn answer(&mut self, f: Responder, frame: &[u8]) {
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
        // One scan of the table per tick, at most 256 of each kind acted on
        // (the rest on the next tick).
        let (mut expired, mut n) = ([0u32; 256], 0);
        let (mut tcp_due, mut m) = ([0u32; 256], 0);
        for idx in self.flows.active_indices() {
            let Some(f) = self.flows.get(idx) else { continue };
            let (last, timeout) = match &f.data {
                FlowData::Udp(sf) => (sf.last, udp::UDP_TIMEOUT),
                FlowData::UdpSplice(us) => (us.last, udp::UDP_TIMEOUT),
                FlowData::Ping(sf) => (sf.last, icmp::PING_TIMEOUT),
                FlowData::Tcp(tf) => {
                    if tcp::io::timer_due(tf, now) && m < tcp_due.len() {
                        tcp_due[m] = idx as u32;
                        m += 1;
                    }
                    continue;
                }
                FlowData::None | FlowData::TcpSplice(_) => continue,
            };
            if now.duration_since(last) >= timeout && n < expired.len() {
                expired[n] = idx as u32;
                n += 1;
            }
        }
        for &idx in &expired[..n] {
            log::debug!("flow {idx}: idle timeout");
            self.flows.close(idx as usize);
        }
        tcp::io::timers(self, &tcp_due[..m]);
        if self.listeners.any_paused() {
            self.listeners.resume(&self.epoll);
        }
        if self.scanners.iter().any(Option::is_some) || self.listeners.steers(crate::listen::IN) || self.listeners.steers(crate::listen::OUT) {
            let _ = self.fwd_rescan(false);
            if let Some(sm) = self.ebpf.as_mut().and_then(|a| a.sockmap.as_mut()) {
                self.listeners.sync_sockmap(sm);
            }
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
    test_ctx_flows(FLOW_CAPACITY)
}

/// [`test_ctx`] with a flow table of `max_flows` slots.
///
/// # Errors
/// Errors of [`Ctx::new`] and eventfd.
pub fn test_ctx_flows(max_flows: usize) -> std::io::Result<Ctx> {
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
        no_tcp: false,
        mtu: 65520,
        v4: true,
        v6: true,
        max_flows,
    })
}

impl Ctx {
    /// Re-read the listening sockets of the other side (for `auto` rules)
    /// and bind or release ours to match. With `strict` (start-up), every
    /// direction with rules is bound and a failure is an error; afterwards
    /// only directions with `auto` rules are resynced, failures logged.
    ///
    /// # Errors
    /// [`crate::listen::ListenError`] when a requested port can't be bound.
    pub fn fwd_rescan(&mut self, strict: bool) -> Result<(), crate::listen::ListenError> {
        use crate::listen::{IN, OUT};
        for dir in [IN, OUT] {
            // After start-up only `auto` rules change: don't retry the
            // ports of other rules every second.
            if !self.listeners.any(dir) || (!strict && !self.listeners.scans(dir) && !self.listeners.steers(dir)) {
                continue;
            }
            let (tcp, udp) = self.fwd_scan_ports(dir);
            let r = self.listeners.sync(dir, &tcp, &udp, &self.epoll, self.ns.as_ref());
            match r {
                Err(e) if strict => return Err(e),
                Err(e) => log::debug!("{e}"),
                Ok(()) => {}
            }
        }
        Ok(())
    }

    /// The target ports `auto` rules of direction `dir` forward now:
    /// those bound on the other side (TCP listening, UDP bound; UDP also
    /// follows TCP, see [`crate::fwd_rule::udp_scan_ports`]), less the
    /// ports of our own listeners there. Empty sets without a scanner
    /// (there is one only for directions with `auto` rules).
    fn fwd_scan_ports(&mut self, dir: usize) -> (PortSet, PortSet) {
        use crate::fwd_rule::Proto as P;
        let Some(scanner) = self.scanners.get_mut(dir).and_then(Option::as_mut) else {
            return (PortSet::new(), PortSet::new());
        };
        // The scanner of direction IN reads the namespace, where our
        // OUT listeners are, and the other way round.
        scanner.scan_into(&mut self.scan_buf);
        let other = 1 - dir;
        let mut ours = self.listeners.bound(other, P::Tcp);
        ours.union_with(&self.listeners.bound(other, P::Udp));
        self.scan_buf.remove_ports(&ours);
        (self.scan_buf.tcp_ports(), self.scan_buf.udp_ports())
    }
}

/// Learn the guest's MAC from a frame's source address (unicast only).
fn learn_mac(ctx: &mut Ctx, src: [u8; 6]) {
    if src[0] & 1 == 0 && src != ctx.our_mac && src != [0; 6] && src != ctx.guest_mac {
        ctx.guest_mac = src;
    }
}

/// Parse one frame from the tap and route it; see the module documentation.
pub fn dispatch_frame(ctx: &mut Ctx, frame: &[u8]) {
    dispatch_frame_offload(ctx, frame, Offload::default());
}

/// [`dispatch_frame`] for a frame with offload metadata `off` from the
/// back-end: a TCP super-frame is one segment to [`tcp::io::from_tap`], a
/// UDP one is sent as one datagram per `gso_size` bytes of payload;
/// metadata inconsistent with the frame is a counted drop
/// (`drop_offload_malformed`). Partial checksums are never verified (no
/// L4 checksum from the tap is).
pub fn dispatch_frame_offload(ctx: &mut Ctx, frame: &[u8], off: Offload) {
    let Ok(eth) = Ethernet2Slice::from_slice_without_fcs(frame) else {
        ctx.counters.drop_eth_malformed += 1;
        return;
    };
    learn_mac(ctx, eth.source());
    match eth.ether_type() {
        EtherType::ARP if off.is_gso() => ctx.counters.drop_offload_malformed += 1,
        EtherType::ARP => {
            ctx.counters.svc_arp_frames += 1;
            if ctx.v4 {
                ctx.answer(svc::arp::handle, frame);
            } else {
                ctx.counters.ignored_ctrl += 1;
            }
        }
        EtherType::IPV4 => ip(ctx, frame, eth.payload_slice(), false, off),
        EtherType::IPV6 => ip(ctx, frame, eth.payload_slice(), true, off),
        _ if off.is_gso() => ctx.counters.drop_offload_malformed += 1,
        _ => ctx.counters.drop_ethertype += 1,
    }
}

/// The IP layer of a frame from the tap (`v6`: ethertype IPv6): parse
/// and check the header, then route its payload with [`transport`].
fn ip(ctx: &mut Ctx, frame: &[u8], l3: &[u8], v6: bool, off: Offload) {
    let parsed = if v6 {
        Ipv6Slice::from_slice(l3).ok().map(|ip| {
            let (h, p) = (ip.header(), ip.payload());
            (ip.is_payload_fragmented(), Inany::from(h.source_addr()), Inany::from(h.destination_addr()), p.ip_number, p.payload)
        })
    } else {
        Ipv4Slice::from_slice(l3).ok().map(|ip| {
            let (h, p) = (ip.header(), ip.payload());
            (ip.is_payload_fragmented(), Inany::from(h.source_addr()), Inany::from(h.destination_addr()), p.ip_number, p.payload)
        })
    };
    let Some((fragmented, src, dst, proto, l4)) = parsed else {
        ctx.counters.drop_ip_malformed += 1;
        return;
    };
    if !(if v6 { ctx.v6 } else { ctx.v4 }) {
        ctx.counters.drop_addr += 1;
        return;
    }
    if fragmented {
        ctx.counters.drop_ip_fragment += 1;
        return;
    }
    if off != Offload::default() {
        let kind = match proto {
            IpNumber::TCP => L4Kind::Tcp(v6),
            IpNumber::UDP => L4Kind::Udp(v6),
            _ => L4Kind::Other,
        };
        // l4 is a subslice of frame: its offset is the pointer difference.
        let l4_off = (l4.as_ptr() as usize).wrapping_sub(frame.as_ptr() as usize);
        if off.check(frame.len(), l4_off, kind).is_err() {
            ctx.counters.drop_offload_malformed += 1;
            return;
        }
        if off.is_gso() {
            ctx.counters.tap_rx_gso += 1;
        }
    }
    transport(ctx, frame, proto, src, dst, l4, off);
}

/// Route the L4 part `l4` of an IPv4 or IPv6 packet (`frame` is the whole
/// frame, for the local services): DHCP (UDP 67) or DHCPv6 (UDP 547), NDP
/// and echo requests, UDP, TCP.
fn transport(ctx: &mut Ctx, frame: &[u8], proto: IpNumber, src: Inany, dst: Inany, l4: &[u8], off: Offload) {
    let v4 = src.is_v4();
    let src_ok = !src.is_unspecified() && !src.is_multicast_or_broadcast();
    if src_ok {
        // Destination of inbound flows (passt(1) NOTES: "observed address").
        ctx.fwd.saw_guest(src);
    }
    match proto {
        IpNumber::UDP => {
            let Ok(u) = UdpSlice::from_slice(l4) else {
                ctx.counters.drop_l4_malformed += 1;
                return;
            };
            match (v4, u.destination_port()) {
                (true, 67) if !off.is_gso() => ctx.answer(svc::dhcp::handle, frame),
                (false, 547) if !off.is_gso() => ctx.answer(svc::dhcpv6::handle, frame),
                _ if ctx.no_udp => ctx.counters.drop_udp_disabled += 1,
                _ if !src_ok => ctx.counters.drop_addr += 1,
                (_, dport) if crate::threads::handed(ctx, frame, off, Proto::Udp, &tap_side(src, u.source_port(), dst, dport)) => {}
                _ if off.gso == GsoType::UdpL4 => udp_gso(ctx, frame, src, dst, &u, off.gso_size),
                (_, dport) => {
                    if udp::from_tap(ctx, src, dst, u.source_port(), dport, u.payload()) == Err(Refusal::Prohibited) {
                        ctx.refuse_from_tap(frame);
                    }
                }
            }
        }
        IpNumber::ICMP | IpNumber::IPV6_ICMP if (proto == IpNumber::ICMP) != v4 => ctx.counters.drop_ip_proto += 1,
        IpNumber::ICMP | IpNumber::IPV6_ICMP => {
            let Some(&kind) = l4.first().filter(|_| l4.len() >= 8) else {
                ctx.counters.drop_l4_malformed += 1;
                return;
            };
            let echo_request = if v4 { 8 } else { 128 };
            match kind {
                k if k == echo_request && !ctx.no_icmp && src_ok && !dst.is_multicast_or_broadcast() => {
                    let id = u16::from_be_bytes([l4[4], l4[5]]);
                    if crate::threads::handed(ctx, frame, off, Proto::Ping, &tap_side(src, id, dst, id)) {
                        return;
                    }
                    if icmp::from_tap(ctx, src, dst, id, l4) == Err(Refusal::Prohibited) {
                        ctx.refuse_from_tap(frame);
                    }
                }
                k if k == echo_request && !ctx.no_icmp && !src_ok => ctx.counters.drop_addr += 1,
                // Router and neighbour solicitations.
                133 | 135 if !v4 => {
                    if kind == 135 {
                        ctx.counters.svc_ns_requests += 1;
                    }
                    ctx.answer(svc::ndp::handle, frame)
                }
                // RA, NA, redirects, MLD and the rest are for the link only.
                _ if !v4 && kind != echo_request => ctx.counters.ignored_ctrl += 1,
                _ => ctx.counters.drop_icmp_type += 1,
            }
        }
        IpNumber::TCP if ctx.no_tcp => ctx.counters.drop_tcp += 1,
        IpNumber::TCP if !src_ok || dst.is_multicast_or_broadcast() => ctx.counters.drop_addr += 1,
        IpNumber::TCP => {
            if let (true, Some(p)) = (ctx.shard.is_some(), l4.get(0..4)) {
                let side = tap_side(src, u16::from_be_bytes([p[0], p[1]]), dst, u16::from_be_bytes([p[2], p[3]]));
                if crate::threads::handed(ctx, frame, off, Proto::Tcp, &side) {
                    return;
                }
            }
            tcp::io::from_tap(ctx, src, dst, l4)
        }
        _ => ctx.counters.drop_ip_proto += 1,
    }
}

/// A UDP super-frame from the tap (GSO type UDP_L4): its payload is a
/// series of datagrams of `gso_size` bytes (the last may be shorter),
/// each sent to the host as its own datagram (what the kernel would do
/// with UDP_SEGMENT, udp(7)); at most
/// [`crate::tap::offload::UDP_GSO_MAX_SEGS`] of them.
fn udp_gso(ctx: &mut Ctx, frame: &[u8], src: Inany, dst: Inany, u: &UdpSlice, gso_size: u16) {
    // Offload::check bounds the number of datagrams and gso_size > 0.
    for d in u.payload().chunks(usize::from(gso_size).max(1)) {
        if udp::from_tap(ctx, src, dst, u.source_port(), u.destination_port(), d) == Err(Refusal::Prohibited) {
            ctx.refuse_from_tap(frame);
            return;
        }
    }
}

/// The tap side of a flow from a frame of the namespace: source `src`,
/// `sport`, destination `dst`, `dport`.
fn tap_side(src: Inany, sport: u16, dst: Inany, dport: u16) -> FlowSide {
    FlowSide { eaddr: src, eport: sport, oaddr: dst, oport: dport }
}

/// `--threads`: what other workers handed us ([`crate::threads`]), as a
/// batch of frames read from the tap; at most 256 things per wake-up (the
/// eventfd is written again if more are waiting).
fn inbox_ready(ctx: &mut Ctx) {
    let mut n = 0;
    ctx.in_batch = true;
    while n < 256 {
        let Some(h) = ctx.shard.as_ref().and_then(crate::threads::Shard::take) else { break };
        n += 1;
        match h {
            crate::threads::Handoff::Frame(f, off) => {
                ctx.counters.thread_frames_taken += 1;
                // UDP datagrams of the frame (a super-frame's) go together;
                // TCP segments are copied into the stage, across frames.
                // SAFETY: f outlives the flush below.
                unsafe { ctx.udp_stage.pin(true) };
                dispatch_frame_offload(ctx, &f, off);
                udp::flush_stage(ctx);
                // SAFETY: flushed.
                unsafe { ctx.udp_stage.pin(false) };
            }
            crate::threads::Handoff::Tcp { ini, tgt, sock } => tcp::io::open_inbound(ctx, ini, tgt, sock),
            crate::threads::Handoff::Stop => ctx.exit = Some(0),
        }
    }
    ctx.in_batch = false;
    tcp::io::flush_acks(ctx);
    ctx.flush_tx();
    if n == 256 {
        if let Some(sh) = &ctx.shard {
            let one = 1u64.to_ne_bytes();
            // SAFETY: 8 readable bytes to our own eventfd.
            unsafe { libc::write(sh.wake_fd(), one.as_ptr().cast(), one.len()) };
        }
    }
}

/// An event on one of the tap back-end's fds.
fn tap_event(ctx: &mut Ctx, id: u32, events: u32) {
    let r = ctx.tap.event(id, events);
    ctx.tap_sync();
    match r {
        Ok(TapEvent::Readable) => tap_ready(ctx),
        Ok(TapEvent::Connected) => ctx.guest_reset(),
        Ok(TapEvent::Disconnected) | Ok(TapEvent::Nothing) => {}
        Err(e) => ctx.tap_failed(e),
    }
}

/// Start a tap batch whose frames stay in place until [`end_pinned_batch`]:
/// staged TCP and UDP payloads ([`tcp::io::flush_stage`],
/// [`udp::flush_stage`]) may point into them instead of being copied.
///
/// # Safety
/// The frames' buffer must be neither written nor moved before
/// [`end_pinned_batch`].
pub(crate) unsafe fn begin_pinned_batch(ctx: &mut Ctx) {
    ctx.in_batch = true;
    // SAFETY: the caller keeps the frames in place until the batch ends.
    unsafe {
        ctx.tcp_stage.pin(true);
        ctx.udp_stage.pin(true);
    }
}

/// End a batch started with [`begin_pinned_batch`]: write out what it
/// staged, then unpin the stages.
pub(crate) fn end_pinned_batch(ctx: &mut Ctx) {
    tcp::io::flush_stage(ctx);
    udp::flush_stage(ctx);
    // SAFETY: the stages are empty.
    unsafe {
        ctx.tcp_stage.pin(false);
        ctx.udp_stage.pin(false);
    }
    ctx.in_batch = false;
}

fn tap_ready(ctx: &mut Ctx) {
    // A bounded number of batches per wakeup keeps sockets served too.
    for _ in 0..8 {
        let mut rx = std::mem::take(&mut ctx.rx);
        rx.meta.clear();
        let r = ctx.tap.recv_batch(&mut rx);
        ctx.tap_sync();
        let n = match r {
            Ok(n) => n,
            Err(e) => {
                ctx.tap_failed(e);
                ctx.rx = rx;
                return;
            }
        };
        ctx.counters.tap_rx_frames += n as u64;
        if let Some(p) = &mut ctx.pcap {
            p.frames(rx.frames.iter().map(|r| &rx.buf[r.clone()]));
        }
        // SAFETY: rx is neither written nor moved before the batch ends.
        unsafe { begin_pinned_batch(ctx) };
        for (i, r) in rx.frames.iter().enumerate() {
            dispatch_frame_offload(ctx, &rx.buf[r.clone()], rx.offload(i));
        }
        // Staged TCP and UDP payloads point into rx: sent before rx is reused.
        end_pinned_batch(ctx);
        ctx.rx = rx;
        tcp::io::flush_acks(ctx);
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

/// A [`Watch`] that never asks to stop (passt: nothing outside the
/// process decides its end but signals and the guest).
#[derive(Debug, Default)]
pub struct NoWatch;

impl Watch for NoWatch {
    fn check(&mut self) -> Option<i32> {
        None
    }
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
    let s = signal_fd.as_raw_fd();
    ctx.epoll.add(s, libc::EPOLLIN as u32, EpollRef::new(EpollType::Signal, s, 0))?;
    run_loop(ctx, timer_fd, s, watch)
}

/// `--threads`: the loop of worker 1..N ([`crate::threads`]): no signals,
/// nothing to watch; ends on [`crate::threads::Handoff::Stop`] or when its
/// tap queue goes.
///
/// # Errors
/// As [`run`].
pub fn run_worker(ctx: &mut Ctx, timer_fd: &OwnedFd) -> std::io::Result<i32> {
    run_loop(ctx, timer_fd, -1, &mut NoWatch)
}

fn run_loop(ctx: &mut Ctx, timer_fd: &OwnedFd, s: i32, watch: &mut dyn Watch) -> std::io::Result<i32> {
    ctx.tap_sync();
    let t = timer_fd.as_raw_fd();
    ctx.epoll.add(t, libc::EPOLLIN as u32, EpollRef::new(EpollType::Timer, t, 0))?;
    if let Some(sh) = &ctx.shard {
        let w = sh.wake_fd();
        ctx.epoll.add(w, libc::EPOLLIN as u32, EpollRef::new(EpollType::Handoff, w, 0))?;
    }
    let ft = ctx.fast_timer.as_raw_fd();
    ctx.epoll.add(ft, libc::EPOLLIN as u32, EpollRef::new(EpollType::FastTimer, ft, 0))?;
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; EPOLL_EVENTS];
    loop {
        let n = ctx.epoll.wait(&mut events, 1000)?;
        ctx.now = Instant::now();
        for ev in &events[..n] {
            let r = event_ref(ev);
            log::trace!("epoll event on {} {} (events: 0x{:08x})", crate::stats::epoll_type_str(r.kind()), r.fd(), { ev.events });
            if let Some(st) = &mut ctx.stats {
                let l = &ctx.listeners;
                st.count_ref(r, || l.target(r.data(), r.fd()).is_some_and(|t| t.proto == crate::fwd_rule::Proto::Tcp));
            }
            match r.kind() {
                Some(EpollType::Tap) => tap_event(ctx, r.data(), ev.events),
                Some(EpollType::UdpFlow) => udp::sock_ready(ctx, Sidx::from_raw(r.data()), ev.events),
                Some(EpollType::PingFlow) => icmp::sock_ready(ctx, Sidx::from_raw(r.data()), ev.events),
                Some(EpollType::TcpSock) => tcp::io::sock_ready(ctx, Sidx::from_raw(r.data()), ev.events),
                Some(EpollType::TcpSplice) => tcp::splice::sock_ready(ctx, Sidx::from_raw(r.data()), ev.events),
                Some(EpollType::UdpSplice) => udp::splice_ready(ctx, Sidx::from_raw(r.data()), ev.events),
                Some(EpollType::Listen) => match ctx.listeners.target(r.data(), r.fd()) {
                    Some(t) if t.proto == crate::fwd_rule::Proto::Tcp => tcp::listen_ready(ctx, t, r.fd()),
                    Some(t) => udp::listen_ready(ctx, t, r.fd()),
                    None => log::debug!("epoll: stale listener {r:?}"),
                },
                Some(EpollType::FastTimer) => {
                    drain_fd(ft);
                    ctx.fast_timer_at = None;
                    tcp::io::wnd_timer(ctx);
                    tcp::splice::sockmap_timer(ctx);
                }
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
                Some(EpollType::Ebpf) => {
                    if let Some(a) = ctx.ebpf.as_mut() {
                        if !a.loaded.log_event() {
                            ctx.epoll.del(r.fd());
                        }
                    }
                }
                Some(EpollType::Handoff) => {
                    drain_fd(r.fd());
                    inbox_ready(ctx);
                }
                None => log::debug!("epoll: unknown reference {r:?}"),
            }
        }
        if ctx.tcp_delack_at.is_some_and(|at| ctx.now >= at) {
            tcp::io::delack_flush(ctx);
        }
        ctx.flush_tx();
        if let Some(txt) = ctx.stats.as_mut().and_then(|st| st.poll(ctx.now)) {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), txt.as_bytes());
        }
        let epoll = &ctx.epoll;
        ctx.flows.defer_free(|f| {
            // A TCP socket out of the epoll set already (end of file seen,
            // nothing to poll) needs no EPOLL_CTL_DEL: one syscall per
            // connection saved.
            let registered = match &f.data {
                FlowData::Tcp(tf) => tf.registered(),
                _ => true,
            };
            if let Some(fd) = f.data.sock_fd().filter(|_| registered) {
                epoll.del(fd);
            }
            // Dropping the data closes the socket.
            f.data = FlowData::None;
        });
        if let Some(st) = ctx.exit {
            if ctx.shard.as_ref().is_some_and(|sh| sh.id != 0) {
                // A worker: worker 0 reports for everyone.
                return Ok(st);
            }
            log::info!("{}", crate::threads::stop_workers(ctx));
            for l in ctx.ebpf.iter().flat_map(crate::ebpf::Accel::summary) {
                log::info!("{l}");
            }
            if let Some(l) = ctx.listeners.steer_summary() {
                log::info!("{l}");
            }
            return Ok(st);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
    use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};

    const GUEST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const OUR_MAC: [u8; 6] = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55];

    fn udp4(dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(GUEST_MAC, OUR_MAC).ipv4([192, 0, 2, 2], dst.octets(), 64).udp(sport, dport);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn udp6(dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let src: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let b = PacketBuilder::ethernet2(GUEST_MAC, OUR_MAC).ipv6(src.octets(), dst.octets(), 64).udp(sport, dport);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn frames(ctx: &Ctx) -> Vec<Vec<u8>> {
        ctx.tx.frames().map(|f| f.to_vec()).collect()
    }

    /// Wait (bounded) until `sock` has a datagram.
    fn recv_within(sock: &UdpSocket, buf: &mut [u8]) -> (usize, std::net::SocketAddr) {
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        sock.recv_from(buf).expect("datagram within 2 s")
    }

    /// Poll the flow's socket until a reply frame is queued (bounded).
    fn pump_reply(ctx: &mut Ctx, sidx: Sidx) {
        for _ in 0..200 {
            udp::sock_ready(ctx, sidx, libc::EPOLLIN as u32);
            if !ctx.tx.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no reply frame within 2 s");
    }

    fn check_udp_reply(frame: &[u8], src: std::net::IpAddr, sport: u16, dport: u16, payload: &[u8]) {
        let p = SlicedPacket::from_ethernet(frame).unwrap();
        let Some(TransportSlice::Udp(u)) = p.transport else { panic!("not UDP") };
        assert_eq!(u.source_port(), sport);
        assert_eq!(u.destination_port(), dport);
        assert_eq!(u.payload(), payload);
        let (s, d) = match p.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => {
                (std::net::IpAddr::V4(ip.header().source_addr()), Inany::from(ip.header().destination_addr()))
            }
            Some(etherparse::NetSlice::Ipv6(ip)) => {
                (std::net::IpAddr::V6(ip.header().source_addr()), Inany::from(ip.header().destination_addr()))
            }
            _ => panic!("no IP"),
        };
        assert_eq!(s, src);
        let l4 = u.slice();
        let acc = crate::wire::frame::pseudo(Inany::from(s), d, 17, l4.len());
        assert_eq!(crate::wire::csum::fold(crate::wire::csum::sum(acc, l4)), 0, "UDP checksum");
        assert_eq!(&frame[0..6], &GUEST_MAC);
        assert_eq!(&frame[6..12], &OUR_MAC);
    }

    #[test]
    fn udp_to_ipv4_gateway_reaches_host_loopback_and_reply_comes_from_gateway() {
        let mut ctx = test_ctx().unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        dispatch_frame(&mut ctx, &udp4(Ipv4Addr::new(192, 0, 2, 1), 40000, port, b"ping"));
        assert_eq!(ctx.counters.udp_flows, 1);
        let mut buf = [0u8; 64];
        let (n, from) = recv_within(&server, &mut buf);
        assert_eq!(&buf[..n], b"ping");
        assert!(from.ip().is_loopback());
        server.send_to(b"pong!", from).unwrap();
        let side = FlowSide {
            eaddr: Ipv4Addr::new(192, 0, 2, 2).into(),
            eport: 40000,
            oaddr: Ipv4Addr::new(192, 0, 2, 1).into(),
            oport: port,
        };
        let ini = ctx.flows.lookup(Pif::Tap, Proto::Udp, &side).expect("flow hashed by its tap side");
        pump_reply(&mut ctx, Sidx::new(ini.flow() as u32, TGT));
        let f = frames(&ctx);
        assert_eq!(f.len(), 1);
        check_udp_reply(&f[0], Ipv4Addr::new(192, 0, 2, 1).into(), port, 40000, b"pong!");
        // A second datagram of the same flow reuses it.
        dispatch_frame(&mut ctx, &udp4(Ipv4Addr::new(192, 0, 2, 1), 40000, port, b"again"));
        assert_eq!(ctx.counters.udp_flows, 1);
        let (n, _) = recv_within(&server, &mut buf);
        assert_eq!(&buf[..n], b"again");
    }

    #[test]
    fn udp_to_ipv6_link_local_gateway_reaches_loopback_and_replies_with_flow_label() {
        let mut ctx = test_ctx().unwrap();
        let Ok(server) = UdpSocket::bind("[::1]:0") else { panic!("IPv6 loopback needed") };
        let port = server.local_addr().unwrap().port();
        let gw: Ipv6Addr = "fe80::1".parse().unwrap();
        dispatch_frame(&mut ctx, &udp6(gw, 40001, port, b"v6"));
        let mut buf = [0u8; 64];
        let (n, from) = recv_within(&server, &mut buf);
        assert_eq!(&buf[..n], b"v6");
        server.send_to(b"v6 back", from).unwrap();
        let side =
            FlowSide { eaddr: "2001:db8::2".parse::<Ipv6Addr>().unwrap().into(), eport: 40001, oaddr: gw.into(), oport: port };
        let ini = ctx.flows.lookup(Pif::Tap, Proto::Udp, &side).unwrap();
        pump_reply(&mut ctx, Sidx::new(ini.flow() as u32, TGT));
        let f = frames(&ctx);
        check_udp_reply(&f[0], gw.into(), port, 40001, b"v6 back");
        let Some(etherparse::NetSlice::Ipv6(ip)) = SlicedPacket::from_ethernet(&f[0]).unwrap().net else { panic!() };
        assert_ne!(ip.header().flow_label().value(), 0);
    }

    #[test]
    fn idle_udp_flow_is_closed_by_the_timer_and_freed_after_the_cycle() {
        let mut ctx = test_ctx().unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        dispatch_frame(&mut ctx, &udp4(Ipv4Addr::new(192, 0, 2, 1), 40002, port, b"x"));
        assert_eq!(ctx.flows.len(), 1);
        ctx.now += udp::UDP_TIMEOUT - Duration::from_secs(1);
        ctx.timer();
        ctx.flows.defer_free(|_| {});
        assert_eq!(ctx.flows.len(), 1, "not idle long enough yet");
        ctx.now += Duration::from_secs(2);
        ctx.timer();
        ctx.flows.defer_free(|f| f.data = FlowData::None);
        assert_eq!(ctx.flows.len(), 0);
    }

    #[test]
    fn arp_request_for_the_gateway_is_answered_through_the_dispatcher() {
        let mut ctx = test_ctx().unwrap();
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&GUEST_MAC);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&GUEST_MAC);
        f.extend_from_slice(&[192, 0, 2, 2, 0, 0, 0, 0, 0, 0, 192, 0, 2, 1]);
        dispatch_frame(&mut ctx, &f);
        let out = frames(&ctx);
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0][0..6], &GUEST_MAC);
        assert_eq!(&out[0][20..22], &[0, 2], "ARP reply opcode");
        assert_eq!(&out[0][22..28], &OUR_MAC, "sender hardware address is ours");
        assert_eq!(ctx.counters.svc_replies, 1);
        assert_eq!(ctx.counters.svc_arp_frames, 1);
    }

    #[test]
    fn tcp_with_no_tcp_and_martian_traffic_is_counted_not_forwarded() {
        let mut ctx = test_ctx().unwrap();
        ctx.no_tcp = true;
        let b = PacketBuilder::ethernet2(GUEST_MAC, OUR_MAC).ipv4([192, 0, 2, 2], [198, 51, 100, 1], 64).tcp(1, 2, 3, 4);
        let mut v = Vec::new();
        b.write(&mut v, b"").unwrap();
        dispatch_frame(&mut ctx, &v);
        assert_eq!(ctx.counters.drop_tcp, 1);
        dispatch_frame(&mut ctx, &udp4(Ipv4Addr::new(127, 0, 0, 1), 1, 7, b"x"));
        dispatch_frame(&mut ctx, &udp4(Ipv4Addr::new(224, 0, 0, 251), 5353, 5353, b"x"));
        assert_eq!(ctx.counters.drop_addr, 2);
        assert_eq!(ctx.flows.len(), 0);
        assert!(ctx.tx.is_empty());
    }

    #[test]
    fn truncated_and_random_frames_are_counted_and_never_panic() {
        let mut ctx = test_ctx().unwrap();
        // No sockets from random input: parsing and services only.
        ctx.no_udp = true;
        ctx.no_tcp = true;
        ctx.no_icmp = true;
        let valid = [udp4(Ipv4Addr::new(198, 51, 100, 1), 1000, 53, b"query"), udp6("2001:db8::1".parse().unwrap(), 1, 547, b"dhcpv6")];
        for v in &valid {
            for cut in 0..v.len() {
                dispatch_frame(&mut ctx, &v[..cut]);
                ctx.tx.clear();
            }
        }
        let before = ctx.counters.drops();
        assert!(before > 0);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut buf = [0u8; 400];
        for i in 0..20_000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            // Make many of them look like IPv4/IPv6/ARP so deeper parsers run.
            let et: [u8; 2] = match i % 4 {
                0 => [0x08, 0x00],
                1 => [0x86, 0xdd],
                2 => [0x08, 0x06],
                _ => [buf[12], buf[13]],
            };
            buf[12..14].copy_from_slice(&et);
            if i % 4 == 0 {
                buf[14] = 0x45;
            }
            if i % 4 == 1 {
                buf[14] = 0x60;
            }
            let len = (x as usize >> 8) % buf.len();
            dispatch_frame(&mut ctx, &buf[..len]);
            ctx.tx.clear();
        }
        assert!(ctx.counters.drops() > before);
        assert_eq!(ctx.flows.len(), 0);
    }

    /// The ICMP type and code of an error frame to the guest, checking
    /// that it quotes `sent` (the refused frame's IP packet) from its start.
    fn icmp_error(frame: &[u8], sent: &[u8]) -> (u8, u8) {
        let p = SlicedPacket::from_ethernet(frame).unwrap();
        let (l4, quote_at) = match p.transport {
            Some(TransportSlice::Icmpv4(i)) => ((i.type_u8(), i.code_u8()), 14 + 20 + 8),
            Some(TransportSlice::Icmpv6(i)) => ((i.type_u8(), i.code_u8()), 14 + 40 + 8),
            _ => panic!("not ICMP"),
        };
        assert_eq!(&frame[quote_at..], &sent[14..], "the refused packet is quoted");
        l4
    }

    #[test]
    fn full_table_refuses_udp_from_tap_with_admin_prohibited_and_keeps_the_first_flow() {
        let mut ctx = test_ctx_flows(1).unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let mut buf = [0u8; 64];
        dispatch_frame(&mut ctx, &udp4(Ipv4Addr::new(192, 0, 2, 1), 40010, port, b"first"));
        assert_eq!(recv_within(&server, &mut buf).0, 5);
        assert!(ctx.tx.is_empty());
        let refused = udp4(Ipv4Addr::new(192, 0, 2, 1), 40011, port, b"second");
        dispatch_frame(&mut ctx, &refused);
        assert_eq!(ctx.counters.drop_flow_table_full, 1);
        assert_eq!(ctx.counters.unreach_to_tap, 1);
        let f = frames(&ctx);
        assert_eq!(f.len(), 1);
        assert_eq!(icmp_error(&f[0], &refused), (3, 13), "destination unreachable, administratively prohibited");
        let Some(etherparse::NetSlice::Ipv4(ip)) = SlicedPacket::from_ethernet(&f[0]).unwrap().net else { panic!() };
        assert_eq!(ip.header().source_addr(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(ip.header().destination_addr(), Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(&f[0][0..6], &GUEST_MAC);
        ctx.tx.clear();
        let v6 = udp6("fe80::1".parse().unwrap(), 40012, port, b"six");
        dispatch_frame(&mut ctx, &v6);
        assert_eq!(icmp_error(&frames(&ctx)[0], &v6), (1, 1), "ICMPv6 administratively prohibited");
        // The first flow still carries data.
        dispatch_frame(&mut ctx, &udp4(Ipv4Addr::new(192, 0, 2, 1), 40010, port, b"again"));
        let (n, _) = recv_within(&server, &mut buf);
        assert_eq!(&buf[..n], b"again");
        assert_eq!(ctx.counters.udp_flows, 1);
        assert_eq!(ctx.flows.len(), 1);
    }

    #[test]
    fn refusals_are_rate_limited_and_counted() {
        let mut ctx = test_ctx_flows(1).unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        dispatch_frame(&mut ctx, &udp4(Ipv4Addr::new(192, 0, 2, 1), 40020, port, b"x"));
        let n = crate::limits::UNREACH_PER_SEC as u64 + 50;
        for i in 0..n {
            dispatch_frame(&mut ctx, &udp4(Ipv4Addr::new(192, 0, 2, 1), 41000 + i as u16, port, b"y"));
        }
        assert_eq!(ctx.counters.drop_flow_table_full, n);
        assert_eq!(ctx.counters.unreach_to_tap, u64::from(crate::limits::UNREACH_PER_SEC));
        assert_eq!(ctx.counters.unreach_limited, 50);
        ctx.now += Duration::from_secs(1);
        dispatch_frame(&mut ctx, &udp4(Ipv4Addr::new(192, 0, 2, 1), 40021, port, b"z"));
        assert_eq!(ctx.counters.unreach_to_tap, u64::from(crate::limits::UNREACH_PER_SEC) + 1, "a new second, a new allowance");
    }

    #[test]
    fn no_error_for_refused_datagrams_to_broadcast() {
        let mut ctx = test_ctx_flows(1).unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        dispatch_frame(&mut ctx, &udp4(Ipv4Addr::new(192, 0, 2, 1), 40030, port, b"x"));
        dispatch_frame(&mut ctx, &udp4(Ipv4Addr::BROADCAST, 40031, 9, b"y"));
        assert!(ctx.tx.is_empty(), "never an ICMP error about a broadcast");
    }

    #[test]
    fn udp_super_frame_is_sent_as_one_datagram_per_segment_and_bad_metadata_is_counted() {
        let mut ctx = test_ctx().unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let payload: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        let f = udp4(Ipv4Addr::new(192, 0, 2, 1), 40040, port, &payload);
        let uso = Offload { gso: GsoType::UdpL4, gso_size: 1000, hdr_len: 42, csum: Some((34, 6)), data_valid: false };
        dispatch_frame_offload(&mut ctx, &f, uso);
        let mut buf = [0u8; 4096];
        for chunk in payload.chunks(1000) {
            let (n, _) = recv_within(&server, &mut buf);
            assert_eq!(&buf[..n], chunk, "one datagram per gso_size bytes");
        }
        assert_eq!(ctx.counters.tap_rx_gso, 1);
        // Inconsistent metadata: dropped and counted, nothing sent.
        let bad = [
            Offload { gso: GsoType::TcpV4, ..uso },
            Offload { gso_size: 0, ..uso },
            Offload { csum: Some((34, 60000)), ..uso },
            Offload { hdr_len: 9000, ..uso },
            Offload { gso: GsoType::Unknown(3), ..uso },
            // 2500 bytes in more than 128 segments.
            Offload { gso_size: 10, ..uso },
        ];
        for (i, o) in bad.iter().enumerate() {
            dispatch_frame_offload(&mut ctx, &f, *o);
            assert_eq!(ctx.counters.drop_offload_malformed, i as u64 + 1, "{o:?}");
        }
        // ARP can never be a super-frame.
        let arp = [0u8; 42];
        let mut arp = arp.to_vec();
        arp[12..14].copy_from_slice(&[8, 6]);
        dispatch_frame_offload(&mut ctx, &arp, Offload { gso: GsoType::TcpV4, gso_size: 1, ..Offload::default() });
        assert_eq!(ctx.counters.drop_offload_malformed, bad.len() as u64 + 1);
        server.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        assert!(server.recv_from(&mut buf).is_err(), "nothing sent for malformed metadata");
        assert_eq!(ctx.counters.tap_rx_gso, 1);
    }

    /// Dispatch `frames` as one pinned tap batch, as [`tap_ready`] does.
    fn pinned_batch(ctx: &mut Ctx, frames: &[(Vec<u8>, Offload)]) {
        // SAFETY: frames outlives the batch.
        unsafe { begin_pinned_batch(ctx) };
        for (f, o) in frames {
            dispatch_frame_offload(ctx, f, *o);
        }
        end_pinned_batch(ctx);
    }

    fn udp_flow_fd(ctx: &Ctx, sport: u16, port: u16) -> i32 {
        let side = tap_side(Inany::from(Ipv4Addr::new(192, 0, 2, 2)), sport, Inany::from(Ipv4Addr::new(192, 0, 2, 1)), port);
        let idx = ctx.flows.lookup(Pif::Tap, Proto::Udp, &side).expect("flow").flow();
        match &ctx.flows.get(idx).unwrap().data {
            FlowData::Udp(sf) => sf.sock.as_raw_fd(),
            _ => panic!("not UDP"),
        }
    }

    #[test]
    fn udp_datagrams_of_one_flow_and_size_in_a_batch_go_as_one_udp_segment_send() {
        let mut ctx = test_ctx().unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let other = UdpSocket::bind("127.0.0.1:0").unwrap();
        let oport = other.local_addr().unwrap().port();
        let dg = |i: usize, n: usize| -> Vec<u8> { (0..n).map(|j| (i * 7 + j) as u8).collect() };
        let gw = Ipv4Addr::new(192, 0, 2, 1);
        // 5 x 1400 then a shorter one (joins, as the last), then one
        // more of 1400 (starts a new send), one to another flow, one empty.
        let sizes = [1400, 1400, 1400, 1400, 1400, 300, 1400];
        let mut frames: Vec<_> = sizes.iter().enumerate().map(|(i, &n)| (udp4(gw, 40050, port, &dg(i, n)), Offload::default())).collect();
        frames.push((udp4(gw, 40050, oport, &dg(9, 100)), Offload::default()));
        frames.push((udp4(gw, 40050, port, &[]), Offload::default()));
        // And a UDP super-frame of 3 x 1000 + 500: one send too.
        let sup: Vec<u8> = (0..3500u32).map(|i| (i % 249) as u8).collect();
        frames.push((udp4(gw, 40051, port, &sup), Offload { gso: GsoType::UdpL4, gso_size: 1000, hdr_len: 42, csum: Some((34, 6)), data_valid: false }));
        pinned_batch(&mut ctx, &frames);
        let mut buf = [0u8; 4096];
        for (i, &n) in sizes.iter().enumerate() {
            let (got, _) = recv_within(&server, &mut buf);
            assert_eq!(&buf[..got], &dg(i, n)[..], "datagram {i}");
        }
        let (got, _) = recv_within(&server, &mut buf);
        assert_eq!(got, 0, "the empty datagram, after the others of its flow");
        for chunk in sup.chunks(1000) {
            let (got, _) = recv_within(&server, &mut buf);
            assert_eq!(&buf[..got], chunk);
        }
        let (got, _) = recv_within(&other, &mut buf);
        assert_eq!(&buf[..got], &dg(9, 100)[..]);
        // 6 datagrams, then 1 + 1 + 1 (single sends), then the super-frame's 4.
        assert_eq!((ctx.counters.udp_gso_sends, ctx.counters.udp_gso_segs, ctx.counters.udp_gso_fallbacks), (2, 10, 0));
        assert_eq!(ctx.counters.drop_host_send, 0);
    }

    #[test]
    fn udp_segment_refused_by_the_kernel_falls_back_to_one_send_per_datagram() {
        let mut ctx = test_ctx().unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let gw = Ipv4Addr::new(192, 0, 2, 1);
        let mut buf = [0u8; 4096];
        dispatch_frame(&mut ctx, &udp4(gw, 40060, port, b"open"));
        recv_within(&server, &mut buf);
        // No UDP checksums: the kernel refuses UDP_SEGMENT with EINVAL (udp(7)).
        let fd = udp_flow_fd(&ctx, 40060, port);
        crate::sys::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
        let frames: Vec<_> = (0..4u8).map(|i| (udp4(gw, 40060, port, &[i; 1000]), Offload::default())).collect();
        pinned_batch(&mut ctx, &frames);
        for i in 0..4u8 {
            let (got, _) = recv_within(&server, &mut buf);
            assert_eq!(&buf[..got], &[i; 1000][..]);
        }
        assert_eq!((ctx.counters.udp_gso_sends, ctx.counters.udp_gso_fallbacks, ctx.counters.drop_host_send), (0, 1, 0));
    }
}
