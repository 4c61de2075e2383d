//! # Theory of operation
//!
//! The program: `argv[0]` picks passt or pasta, the command line is parsed
//! ([`crate::conf`]), the host is looked at ([`crate::host`]) and the
//! guest's configuration resolved. Then the back-end is set up: pasta joins
//! or creates the target namespace and configures its tap
//! ([`crate::pasta`]); passt listens on its UNIX socket (or takes `--fd`,
//! [`crate::tap::stream`]). The forwarding listeners are bound, and, once
//! everything is ready, the PID file is written and we go to the background
//! (the parent exits 0), the process locks itself into its sandbox
//! ([`crate::isolation`]: fds not needed closed first thing, then after
//! start-up new namespaces, an empty root, no capabilities, seccomp), and
//! the data plane runs ([`crate::daemon`]).
//! Start-up errors print one line and exit 1.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Context};

use crate::conf::{resolve, Conf, ConfError, Mode, NetConf, PastaTarget};
use crate::daemon::{Ctx, CtxInit};
use crate::fwd::{Fwd, FwdFamily};
use crate::isolation::{Plan, Profile};
use crate::listen::Listeners;
use crate::svc::{SvcConf, SvcV4, SvcV6};

/// Entry point of both binaries; never returns.
pub fn main() -> ! {
    let args: Vec<OsString> = std::env::args_os().collect();
    let name = args.first().map(|a| Path::new(a).file_name().unwrap_or(a).to_string_lossy().into_owned()).unwrap_or_default();
    let mode = if name.starts_with("pasta") { Mode::Pasta } else { Mode::Passt };
    let prog = if mode == Mode::Pasta { "pasta" } else { "passt" };
    let conf = match Conf::parse(mode, args.get(1..).unwrap_or(&[])) {
        Ok(c) => c,
        Err(ConfError::Help(s)) | Err(ConfError::Version(s)) => {
            print!("{s}");
            std::process::exit(0);
        }
        Err(ConfError::Invalid(s)) => {
            eprintln!("{s}");
            std::process::exit(1);
        }
    };
    crate::log::init(prog, conf.quiet, conf.debug, conf.trace);
    if let Err(e) = crate::isolation::close_inherited_fds(conf.fd) {
        eprintln!("{prog}: Failed to close files leaked by parent: {e}");
        std::process::exit(1);
    }
    if let Some(p) = &conf.log_file {
        if let Err(e) = crate::log::to_file(p, conf.log_size) {
            eprintln!("{prog}: can't open log file {}: {e}", p.display());
            std::process::exit(1);
        }
    } else {
        crate::log::open_syslog();
    }
    let sandbox = Sandbox::new(&conf);
    let r = match mode {
        Mode::Pasta => run_pasta(&conf, &sandbox),
        Mode::Passt => run_passt(&conf, &sandbox),
    };
    match r {
        Ok(st) => std::process::exit(st),
        Err(e) => {
            log::error!("{e:#}");
            if conf.log_file.is_some() {
                eprintln!("{prog}: {e:#}");
            }
            std::process::exit(1);
        }
    }
}

/// What the sandbox needs from start-up, decided before anything else.
struct Sandbox {
    /// `--runas`, resolved.
    runas: Option<(u32, u32)>,
    /// Debug builds: `main` or `netns`, see
    /// [`crate::isolation::forbidden_syscall_trigger`].
    trigger: Option<String>,
}

impl Sandbox {
    fn new(conf: &Conf) -> Self {
        Sandbox { runas: conf.runas, trigger: crate::isolation::forbidden_syscall_trigger() }
    }

    /// (UID, GID) to change to ([`crate::isolation::run_as`]), decided when
    /// the sandbox is entered: pasta may have created a user namespace of
    /// its own by then, and its root is not dropped (only the init user
    /// namespace's root is, as upstream).
    fn ids(&self) -> Option<(u32, u32)> {
        let uid_map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        let euid = nix::unistd::geteuid().as_raw();
        let db = crate::isolation::SystemDb;
        crate::isolation::run_as(self.runas, euid, crate::isolation::is_init_userns(&uid_map), &db)
    }

    /// Debug builds: call a forbidden syscall where asked; surviving it is
    /// an error.
    fn pull_trigger(&self, ns: Option<&crate::netns::NsSwitch>) -> anyhow::Result<()> {
        let e = match (self.trigger.as_deref(), ns) {
            (Some("main"), _) => crate::isolation::forbidden_syscall(),
            (Some("netns"), Some(sw)) => sw.in_target(crate::isolation::forbidden_syscall).context("namespace helper")?,
            _ => return Ok(()),
        };
        bail!("forbidden syscall was not refused by seccomp: {e}")
    }
}

/// Run by pasta's namespace helper thread after it joined the namespace.
fn harden_helper() -> std::io::Result<()> {
    crate::isolation::harden_thread(0).map(|_| ())
}

fn svc_conf(conf: &Conf, net: &NetConf) -> SvcConf {
    SvcConf {
        our_mac: net.our_mac,
        mtu: net.advertise_mtu,
        v4: net.ip4.as_ref().map(|c| SvcV4 { addr: c.addr, prefix_len: c.prefix_len, gw: c.gw, dns: c.dns.clone() }),
        v6: net.ip6.as_ref().map(|c| SvcV6 { addr: c.addr, prefix_len: c.prefix_len, our_ll: c.our_ll, dns: c.dns.clone() }),
        search: net.search.clone(),
        hostname: net.hostname.clone(),
        fqdn: net.fqdn.clone(),
        // No IPv4 gateway: nothing to offer as router, no DHCP (upstream).
        no_dhcp: conf.no_dhcp || net.ip4.as_ref().is_none_or(|c| c.gw.is_unspecified()),
        no_ndp: conf.no_ndp || conf.no_icmp,
        // With --config-net the namespace is configured already (upstream
        // does the same): no router advertisements.
        no_ra: conf.no_ra || conf.config_net,
        no_dhcpv6: conf.no_dhcpv6,
    }
}

fn fwd_conf(conf: &Conf, net: &NetConf) -> Fwd {
    let mut f = Fwd {
        splice: conf.mode == Mode::Pasta && !conf.no_splice,
        splice_only: conf.splice_only,
        host_lo_to_ns_lo: conf.host_lo_to_ns_lo,
        outbound_if4: conf.outbound_if4.clone(),
        outbound_if6: conf.outbound_if6.clone(),
        ..Fwd::default()
    };
    let some4 = |a: std::net::Ipv4Addr| Some(a).filter(|a| !a.is_unspecified());
    let some6 = |a: std::net::Ipv6Addr| Some(a).filter(|a| !a.is_unspecified());
    if let Some(c) = &net.ip4 {
        f.v4 = FwdFamily {
            map_host_loopback: c.map_host_loopback,
            dns_match: c.dns_match,
            dns_host: c.dns_host,
            outbound: c.outbound,
            map_guest_addr: c.map_guest_addr,
            addr: some4(c.addr),
            addr_seen: None,
            our_tap_addr: some4(c.gw),
        };
    }
    if let Some(c) = &net.ip6 {
        f.v6 = FwdFamily {
            map_host_loopback: c.map_host_loopback,
            dns_match: c.dns_match,
            dns_host: c.dns_host,
            outbound: c.outbound,
            map_guest_addr: c.map_guest_addr,
            addr: some6(c.addr),
            addr_seen: None,
            our_tap_addr: some6(c.our_ll),
        };
    }
    f
}

fn mac_str(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The forwarding rules, as upstream lists them after the addresses
/// ("Inbound forwarding rules (HOST):" and "Outbound forwarding rules
/// (SPLICE):", one indented rule per line).
fn print_rules(conf: &Conf) {
    for (dir, pif, t) in [("Inbound", "HOST", &conf.fwd_in), ("Outbound", "SPLICE", &conf.fwd_out)] {
        if t.rules.is_empty() {
            continue;
        }
        let mut s = format!("{dir} forwarding rules ({pif}):");
        for r in &t.rules {
            s += &format!("\n    {r}");
        }
        log::info!("{s}");
    }
}

/// `ifname`: pasta's interface in the namespace (`None` for passt).
fn print_info(net: &NetConf, ifname: Option<&str>) {
    if net.local_mode4 {
        log::info!("IPv4: no external interface as template, use local mode");
    }
    if net.ip6.as_ref().is_some_and(|c| c.addr.is_unspecified()) {
        log::info!("IPv6: no external interface as template, use local mode");
    }
    let outer = if !net.ifname4.is_empty() { &net.ifname4 } else { &net.ifname6 };
    let outer = if outer.is_empty() { "(none)" } else { outer.as_str() };
    match ifname {
        Some(i) => log::info!("Outbound interface: {outer}, namespace interface: {i}"),
        None => log::info!("Outbound interface: {outer}"),
    }
    log::info!("ARP:\n    address: {}", mac_str(&net.our_mac));
    if let Some(c) = &net.ip4 {
        let mask = std::net::Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(c.prefix_len)).unwrap_or(0));
        log::info!("DHCP:\n    assign: {}\n    mask: {mask}\n    router: {}", c.addr, c.gw);
        for d in &c.dns {
            log::info!("    DNS: {d}");
        }
    }
    if let Some(c) = &net.ip6 {
        if !c.addr.is_unspecified() {
            log::info!("NDP/DHCPv6:\n    assign: {}\n    router: {}\n    our link-local: {}", c.addr, c.gw, c.our_ll);
        } else {
            log::info!("NDP:\n    router: {}\n    our link-local: {}", c.gw, c.our_ll);
        }
        for d in &c.dns {
            log::info!("    DNS: {d}");
        }
    }
}

/// Raise the soft limit of open files to the hard one: every TCP
/// connection holds a socket.
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// Start-up common to passt and pasta: file limits, the SO_PEEK_OFF probe,
/// what the host has and what the guest gets. Returns whether SO_PEEK_OFF
/// works for TCP, and the resolved configuration.
fn discover(conf: &Conf) -> anyhow::Result<(bool, NetConf)> {
    raise_nofile();
    let peek_off = match crate::tcp::io::probe_peek_offset() {
        Ok(()) => true,
        Err(e) => {
            log::warn!("SO_PEEK_OFF not supported for TCP sockets ({e}): TCP data in flight is read again on each peek");
            false
        }
    };
    let mut nl = crate::netlink::Netlink::open().context("netlink socket")?;
    // -i for both versions, else --outbound-if4/6 for theirs (passt(1))
    let iface4 = conf.interface.as_deref().or(conf.outbound_if4.as_deref());
    let iface6 = conf.interface.as_deref().or(conf.outbound_if6.as_deref());
    let host = crate::host::discover(&mut nl, [iface4, iface6], !conf.ipv6_only, !conf.ipv4_only)
        .context("can't read the host's interfaces and routes")?;
    drop(nl);
    let resolv = crate::host::read_resolv_conf(Path::new("/etc/resolv.conf"));
    let net = resolve(conf, &host, &resolv).map_err(|e| anyhow::anyhow!("{e}"))?;
    if net.ip4.is_none() && net.ip6.is_none() {
        bail!("no IPv4 or IPv6 to give to the {}", if conf.mode == Mode::Pasta { "namespace" } else { "guest" });
    }
    Ok((peek_off, net))
}

/// The data plane's context on back-end `tap`, with the capture file open
/// if asked for.
fn new_ctx(conf: &Conf, net: &NetConf, tap: Box<dyn crate::tap::Tap>, guest_mac: Option<[u8; 6]>, peek_off: bool) -> anyhow::Result<Ctx> {
    let mut ctx = Ctx::new(CtxInit {
        tap,
        fwd: fwd_conf(conf, net),
        svc: svc_conf(conf, net),
        guest_mac,
        no_udp: conf.no_udp,
        no_icmp: conf.no_icmp,
        no_tcp: conf.no_tcp,
        mtu: if net.mtu == 0 { 65520 } else { net.mtu },
        v4: net.ip4.is_some(),
        v6: net.ip6.is_some(),
        max_flows: conf.max_flows.unwrap_or(crate::daemon::FLOW_CAPACITY),
    })
    .context("data plane set-up")?;
    ctx.tcp_peek_off = peek_off;
    if conf.stats > 0 {
        let tap = match conf.mode {
            Mode::Pasta => "/dev/net/tun device",
            Mode::Passt if conf.vhost_user => "vhost-user socket",
            Mode::Passt => "connected qemu socket",
        };
        ctx.stats = Some(crate::stats::Stats::new(conf.stats, tap));
    }
    if let Some(p) = &conf.pcap {
        ctx.pcap = Some(crate::pcap::Pcap::create(p).with_context(|| format!("Failed to open pcap file {}", p.display()))?);
        log::info!("Saving packet capture to {}", p.display());
    }
    Ok(ctx)
}

/// `--threads N`: workers 1..N, one per extra tap queue in `queues`,
/// each a [`Ctx`] of its own with its [`crate::threads::Shard`]; worker
/// 0's shard goes to `ctx`. Made before the sandbox (epoll, timerfds,
/// eventfds), started after it ([`crate::threads::spawn`]).
///
/// # Errors
/// Those of [`new_ctx`], eventfd and timerfd.
fn new_workers(
    conf: &Conf,
    net: &NetConf,
    ctx: &mut Ctx,
    queues: Vec<crate::tap::tun::TunTap>,
    guest_mac: Option<[u8; 6]>,
    peek_off: bool,
) -> anyhow::Result<Vec<crate::threads::Worker>> {
    if queues.is_empty() {
        return Ok(Vec::new());
    }
    let udp = crate::threads::udp_targets(&conf.fwd_in.rules);
    let mut shards = crate::threads::shards(queues.len() + 1, udp)
        .context("worker threads")?
        .into_iter();
    ctx.shard = shards.next();
    let mut workers = Vec::with_capacity(queues.len());
    for (q, sh) in queues.into_iter().zip(shards) {
        let mut w = new_ctx(conf, net, Box::new(q), guest_mac, peek_off)?;
        // --stats counts worker 0's events only.
        w.stats = None;
        w.shard = Some(sh);
        let timer = crate::signals::periodic_timer(1000).context("timer")?;
        workers.push(crate::threads::Worker { ctx: w, timer });
    }
    Ok(workers)
}

/// Write the PID file, or go to the background (the parent writes it and
/// exits 0): the caller is told we are ready only now.
fn ready(conf: &Conf) -> anyhow::Result<()> {
    if conf.foreground {
        if let Some(p) = &conf.pid_file {
            crate::pasta::write_pid_file(p, std::process::id()).with_context(|| format!("can't write PID file {}", p.display()))?;
        }
    } else {
        crate::pasta::daemonize(conf.pid_file.as_deref()).context("can't go to background")?;
        if conf.log_file.is_none() {
            crate::log::to_background();
        }
    }
    Ok(())
}

/// passt: a guest on a UNIX stream socket (`-s`, or the first free
/// /tmp/passt_N.socket, or `--fd`), or a vhost-user front-end on that
/// socket (`--vhost-user`).
fn run_passt(conf: &Conf, sandbox: &Sandbox) -> anyhow::Result<i32> {
    let (peek_off, net) = discover(conf)?;
    let tap: Box<dyn crate::tap::Tap> = match conf.fd {
        Some(_) if conf.vhost_user => bail!("--vhost-user with --fd (a vhost-user connection from the parent) is not supported yet"),
        Some(fd) => {
            // SAFETY: fcntl(F_GETFD) only checks that the number is open.
            if fd <= 2 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                bail!("Invalid --fd: {fd}");
            }
            // SAFETY: the parent handed this fd over to us; nothing else
            // in the process uses it.
            let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            Box::new(crate::tap::stream::StreamTap::from_fd(owned).with_context(|| format!("Invalid --fd: {fd}"))?)
        }
        None => {
            let (l, path) = crate::tap::unix::listen(conf.socket.as_deref())?;
            log::info!("UNIX domain socket bound at {}", path.display());
            if conf.vhost_user {
                log::info!("You can start qemu with:");
                log::info!(
                    "    kvm ... -chardev socket,id=chr0,path={} -netdev vhost-user,id=netdev0,chardev=chr0 -device virtio-net,netdev=netdev0 -object memory-backend-memfd,id=memfd0,share=on,size=$RAMSIZE -numa node,memdev=memfd0",
                    path.display()
                );
                Box::new(crate::tap::vhost_user::VhostUserTap::new(l, conf.one_off).context("vhost-user")?)
            } else {
                log::info!("\nYou can now start qemu (>= 7.2, with commit 13c6be96618c):");
                log::info!("    kvm ... -device virtio-net-pci,netdev=s -netdev stream,id=s,server=off,addr.type=unix,addr.path={}", path.display());
                Box::new(crate::tap::stream::StreamTap::new(l, conf.one_off).context("tap")?)
            }
        }
    };
    let sigfd = crate::signals::setup(false).context("signals")?;
    let timer = crate::signals::periodic_timer(1000).context("timer")?;
    let mut ctx = new_ctx(conf, &net, tap, None, peek_off)?;
    ctx.listeners = Listeners::new(&conf.fwd_in, &conf.fwd_out, !conf.no_tcp, !conf.no_udp, ctx.v4, ctx.v6);
    ctx.listeners.freebind = conf.freebind;
    ctx.fwd_rescan(true).context("Couldn't listen on requested ports")?;
    print_info(&net, None);
    print_rules(conf);
    ready(conf)?;
    let plan = Plan { ids: sandbox.ids(), new_userns: true, new_pid: true };
    crate::isolation::sigsys_log(conf.log_file.as_deref());
    crate::isolation::detach(&plan).context("Failed to sandbox process, exiting")?;
    let profile = if conf.vhost_user { Profile::VhostUser } else { Profile::Passt };
    crate::isolation::lock_down(profile, false, 0).context("Failed to sandbox process, exiting")?;
    sandbox.pull_trigger(None)?;
    let st = crate::daemon::run(&mut ctx, &timer, &sigfd, &mut crate::daemon::NoWatch).context("event loop")?;
    Ok(st)
}

/// `--ebpf`: load and attach the eBPF programs, or log one line saying why
/// not and carry on without them (splice(), userspace answers).
///
/// # Errors
/// Only epoll registration of the log source.
fn ebpf_start(
    ctx: &mut crate::daemon::Ctx,
    loader: Result<crate::ebpf::Loader, String>,
    netns: &std::os::fd::OwnedFd,
    tap: Option<&str>,
    conf_cgroup: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let fds = || -> anyhow::Result<_> {
        Ok(match tap {
            Some(ifname) => Some((netns.try_clone().context("namespace fd")?, ifname)),
            None => None,
        })
    };
    let mut cgroup = conf_cgroup.map(std::path::Path::to_path_buf).or_else(crate::ebpf::default_cgroup);
    if cgroup.is_none() && loader.is_ok() {
        log::warn!("eBPF TCP short-circuit off, using splice(): no cgroup v2 at {} (--ebpf-cgroup)", crate::ebpf::DEFAULT_CGROUP);
    }
    // The helper attaches, for users other than root, only to cgroups they
    // own (as it sees them; the owner as our user namespace sees it, and
    // our uid, compare the same way), and a refusal fails the whole request.
    if let (Ok(crate::ebpf::Loader::Helper(_)), Some(cg)) = (&loader, &cgroup) {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: getuid can't fail.
        let uid = unsafe { libc::getuid() };
        if std::fs::metadata(cg).map(|m| m.uid()).ok() != Some(uid) {
            log::warn!(
                "eBPF TCP short-circuit off, using splice(): cgroup {} is not ours for the helper to attach to (--ebpf-cgroup: one we own)",
                cg.display()
            );
            cgroup = None;
        }
    }
    let cg = cgroup.as_deref();
    let mut dirs = [false; 2];
    let started = loader.and_then(|l| {
        let err = |e: anyhow::Error| format!("socket lookup: {e:#}");
        let host = host_lookup_allowed(&l);
        if !host && ctx.listeners.steerable(crate::listen::IN) {
            log::info!("eBPF socket lookup: not for -t/-u through the helper (pasta's namespace is not ours to steer)");
        }
        let lookup = lookup_netns(ctx, host, netns).map_err(err)?;
        dirs = [lookup.0.is_some(), lookup.1.is_some()];
        let retry = match &l {
            crate::ebpf::Loader::Helper(p) if dirs[crate::listen::IN] => Some(p.clone()),
            _ => None,
        };
        match crate::ebpf::Accel::start(l, fds().map_err(err)?, lookup, cg) {
            Err(why) if why.contains("not to uid") => match retry {
                // The guess was wrong: ask again without our namespace.
                Some(path) => {
                    log::info!("eBPF socket lookup: the helper won't attach to pasta's namespace, not for -t/-u");
                    dirs[crate::listen::IN] = false;
                    let lookup = lookup_netns(ctx, false, netns).map_err(err)?;
                    crate::ebpf::Accel::start(crate::ebpf::Loader::Helper(path), fds().map_err(err)?, lookup, cg)
                }
                None => Err(why),
            },
            r => r,
        }
    });
    match started {
        Ok(mut a) => {
            log::info!("eBPF programs {}", a.loaded.how);
            if let Some(t) = a.tap.as_mut() {
                let c = crate::ebpf::tap::tap_conf(&ctx.svc, ctx.v4, ctx.v6);
                if let Err(e) = t.configure(&c) {
                    log::warn!("eBPF tap classifier: can't configure it, userspace answers ARP and NDP: {e:#}");
                }
            }
            if let Some(maps) = a.lookup.take() {
                lookup_start(ctx, maps, dirs)?;
            }
            if cgroup.is_some() {
                match sockmap_start(ctx, &mut a) {
                    Ok(sm) => a.sockmap = Some(sm),
                    Err(why) => log::warn!("eBPF TCP short-circuit off, using splice(): {why}"),
                }
            }
            if let Some(fd) = a.loaded.log_fd() {
                let r = crate::epoll::EpollRef::new(crate::epoll::EpollType::Ebpf, fd, 0);
                ctx.epoll.add(fd, libc::EPOLLIN as u32, r).context("epoll")?;
            }
            ctx.ebpf = Some(a);
        }
        Err(why) => log::warn!("eBPF off, using splice(): {why}"),
    }
    Ok(())
}

/// Where socket lookup is wanted (`--ebpf`, best-effort rules, see
/// [`crate::listen::steerable`]): pasta's own network namespace for
/// `-t`/`-u` (if `host`), the target namespace `netns` for `-T`/`-U`.
///
/// # Errors
/// A namespace file can't be opened.
fn lookup_netns(
    ctx: &crate::daemon::Ctx,
    host: bool,
    netns: &std::os::fd::OwnedFd,
) -> anyhow::Result<(Option<std::os::fd::OwnedFd>, Option<std::os::fd::OwnedFd>)> {
    use crate::listen::{IN, OUT};
    let host = if host && ctx.listeners.steerable(IN) {
        let f = std::fs::File::open("/proc/thread-self/ns/net").context("/proc/thread-self/ns/net")?;
        Some(std::os::fd::OwnedFd::from(f))
    } else {
        None
    };
    let ns = if ctx.listeners.steerable(OUT) { Some(netns.try_clone().context("namespace fd")?) } else { None };
    Ok((host, ns))
}

/// Whether `loader` will attach socket lookup to pasta's own network
/// namespace: our own child always; the helper serves root and otherwise
/// only namespaces whose user namespace the client's uid owns, which we
/// guess from inside: the owner as our user namespace sees it, or, when
/// that namespace is an ancestor of ours (NS_GET_USERNS refuses), whether
/// we are root outside (`/proc/self/uid_map`). [`ebpf_start`] asks again
/// without it if the guess was wrong.
fn host_lookup_allowed(loader: &crate::ebpf::Loader) -> bool {
    let crate::ebpf::Loader::Helper(_) = loader else { return true };
    // SAFETY: getuid can't fail.
    let uid = unsafe { libc::getuid() };
    let owner = std::fs::File::open("/proc/thread-self/ns/net")
        .map_err(anyhow::Error::from)
        .and_then(|f| crate::ebpf::helper::netns_owner(&f.into()));
    match owner {
        Ok(o) => o == uid,
        Err(_) => {
            let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
            crate::ebpf::lookup::outer_uid(&map, uid) == Some(0)
        }
    }
}

/// Hand the socket lookup maps to the listeners, with a scanner of each
/// namespace they steer ports in (for the ports applications hold there):
/// `dirs` says where the program is attached ([`lookup_netns`]).
///
/// # Errors
/// A scanner can't be opened.
fn lookup_start(ctx: &mut crate::daemon::Ctx, maps: crate::ebpf::lookup::LookupMaps, dirs: [bool; 2]) -> anyhow::Result<()> {
    use crate::listen::{IN, OUT};
    let host = if dirs[IN] {
        Some(crate::fwd_scan::ProcNet::open().context("can't read listening sockets")?)
    } else {
        None
    };
    let ns = if dirs[OUT] {
        let sw = ctx.ns.as_ref().context("namespace switch")?;
        Some(sw.in_target(crate::fwd_scan::ProcNet::open).context("namespace helper")?.context("can't read the namespace's listening sockets")?)
    } else {
        None
    };
    let n = ctx.listeners.steer(maps, [host, ns]);
    log::debug!("eBPF socket lookup serves {n} rules");
    Ok(())
}

/// The spliced TCP short-circuit's maps: namespace cookies of a socket
/// here and one in the target namespace, an inet_diag socket there, the
/// candidate ports of the current listeners (again once they are bound,
/// and on every rescan).
///
/// # Errors
/// One line saying why not.
fn sockmap_start(ctx: &mut crate::daemon::Ctx, a: &mut crate::ebpf::Accel) -> Result<crate::ebpf::sockmap::Sockmap, String> {
    use std::os::fd::AsRawFd;
    let ns = ctx.ns.as_ref().ok_or("no target namespace")?;
    let host = crate::sys::socket(true, libc::SOCK_STREAM, 0).map_err(|e| format!("socket: {e}"))?;
    let ns_sock = ns.socket(true, libc::SOCK_STREAM).map_err(|e| format!("namespace socket: {e}"))?;
    let ns_diag = ns
        .in_target(crate::fwd_scan::sock_diag_socket)
        .map_err(|e| format!("namespace helper: {e}"))?
        .map_err(|e| format!("inet_diag socket in the namespace: {e}"))?;
    let mut sm = crate::ebpf::sockmap::Sockmap::new(&mut a.loaded, host.as_raw_fd(), ns_sock.as_raw_fd(), ns_diag)?;
    ctx.listeners.sync_sockmap(&mut sm);
    Ok(sm)
}

fn run_pasta(conf: &Conf, sandbox: &Sandbox) -> anyhow::Result<i32> {
    let (peek_off, net) = discover(conf)?;
    // Before entering (and maybe creating) a user namespace, where we'd
    // lose any privilege to load programs.
    let loader = conf.ebpf.then(|| crate::ebpf::Loader::prepare(conf.ebpf_helper.as_deref()));
    let mut ns = crate::pasta::enter(conf)?;
    let ifname = conf.ns_ifname.clone().unwrap_or_else(|| {
        let n = if !net.ifname4.is_empty() { &net.ifname4 } else { &net.ifname6 };
        if n.is_empty() { "tap0".to_string() } else { n.clone() }
    });
    let (tap, guest_mac, queues): (Box<dyn crate::tap::Tap>, _, _) = if conf.splice_only {
        crate::pasta::setup_lo(&ns)?;
        (
            Box::new(crate::tap::NoTap::new().context("tap")?),
            None,
            Vec::new(),
        )
    } else {
        let t = crate::pasta::setup_tap(&ns, conf, &net, &ifname)?;
        (Box::new(t.tap), Some(t.mac), t.queues)
    };
    let interactive = matches!(conf.target, PastaTarget::Spawn { .. });
    let sigfd = crate::signals::setup(interactive).context("signals")?;
    let timer = crate::signals::periodic_timer(1000).context("timer")?;
    let mut ctx = new_ctx(conf, &net, tap, guest_mac, peek_off)?;
    let workers = new_workers(conf, &net, &mut ctx, queues, guest_mac, peek_off)?;
    let nsfd = ns.netns.try_clone().context("namespace fd")?;
    ctx.ns = Some(crate::netns::NsSwitch::new(nsfd).context("network namespace switch")?);
    ctx.listeners = Listeners::new(&conf.fwd_in, &conf.fwd_out, !conf.no_tcp, !conf.no_udp, ctx.v4, ctx.v6);
    ctx.listeners.freebind = conf.freebind;
    if ctx.listeners.scans(crate::listen::IN) {
        let sw = ctx.ns.as_ref().context("namespace switch")?;
        let s = sw.in_target(crate::fwd_scan::ProcNet::open).context("namespace helper")?;
        ctx.scanners[crate::listen::IN] = Some(s.context("can't read the namespace's listening sockets")?);
    }
    if ctx.listeners.scans(crate::listen::OUT) {
        ctx.scanners[crate::listen::OUT] = Some(crate::fwd_scan::ProcNet::open().context("can't read listening sockets")?);
    }
    // Before the listeners are bound: with socket lookup, rules it serves
    // get one socket instead of one per port.
    if let Some(loader) = loader {
        ebpf_start(&mut ctx, loader, &ns.netns, (!conf.splice_only).then_some(ifname.as_str()), conf.ebpf_cgroup.as_deref())?;
    }
    ctx.fwd_rescan(true).context("Couldn't listen on requested ports")?;
    if let Some(sm) = ctx.ebpf.as_mut().and_then(|a| a.sockmap.as_mut()) {
        // Now that the listeners are bound: their ports are candidates.
        ctx.listeners.sync_sockmap(sm);
    }
    print_info(&net, Some(&ifname));
    print_rules(conf);
    ready(conf)?;
    // The sandbox: namespaces can only be detached by a single thread, so
    // the namespace helper thread ends (in the background it did not
    // survive fork() anyway), and starts again once the root is empty,
    // dropping its own capabilities right after joining the namespace.
    let nsfd = ns.netns.try_clone().context("namespace fd")?;
    let sw = ctx.ns.as_mut().context("namespace switch")?;
    if conf.foreground {
        sw.stop();
    } else {
        sw.forget();
    }
    // No new PID namespace, unlike upstream in the background: clone(2)
    // refuses to create threads once the process has unshared one, and the
    // helper thread starts again below.
    let plan = Plan { ids: sandbox.ids(), new_userns: false, new_pid: false };
    crate::isolation::sigsys_log(conf.log_file.as_deref());
    if ctx.ebpf.is_some() {
        // aya reads these files on first use (per-CPU maps, at exit too)
        // and caches them per thread: read them while there are files.
        let _ = aya::util::nr_cpus();
        let _ = aya::util::KernelVersion::current();
    }
    crate::isolation::detach(&plan).context("Failed to sandbox process, exiting")?;
    sw.restart(nsfd, Some(harden_helper)).context("network namespace switch")?;
    // UDP reply sockets in the namespace are bound to the forwarded port
    // at run time: below 1024 that needs CAP_NET_BIND_SERVICE there.
    let low_udp = conf.fwd_out.rules.iter().any(|r| r.proto == crate::fwd_rule::Proto::Udp && r.ports.first() < 1024);
    let keep = if low_udp { crate::isolation::CAP_NET_BIND_SERVICE } else { 0 };
    if low_udp {
        log::debug!("Keeping CAP_NET_BIND_SERVICE: UDP forwarded from namespace ports below 1024");
    }
    crate::isolation::lock_down_threads(
        Profile::Pasta,
        ctx.ebpf.is_some(),
        keep,
        !workers.is_empty(),
    )
    .context("Failed to sandbox process, exiting")?;
    sandbox.pull_trigger(ctx.ns.as_ref())?;
    // After the sandbox, which they inherit.
    if !workers.is_empty() {
        log::debug!("{} worker threads, one per tap queue", workers.len() + 1);
        crate::threads::spawn(workers).context("worker threads")?;
    }
    ns.release();
    if matches!(conf.target, PastaTarget::Spawn { .. }) {
        // The command owns the terminal now (upstream does the same).
        crate::log::to_background();
    }
    let st = crate::daemon::run(&mut ctx, &timer, &sigfd, &mut ns.watch).context("event loop")?;
    Ok(st)
}
