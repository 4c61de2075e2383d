//! # Theory of operation
//!
//! Command-line parsing (clap) with upstream's option names and semantics
//! (passt(1)), and the resolution of the parsed options against what the host
//! has ([`crate::host::HostNet`], /etc/resolv.conf) into the [`NetConf`] that
//! the data plane and the local services use.
//!
//! Parsing is pure: [`Conf::parse`] takes argv and returns either a [`Conf`]
//! or a [`ConfError`] whose `Display` is the one line printed before exiting
//! with status 1. [`resolve`] is pure as well: host facts in, [`NetConf`] out
//! (it only logs a warning for an MTU too small for an enabled IP version).
//!
//! ## getopt_long(3) on top of clap
//!
//! Upstream parses with `getopt_long()` and the option string `"+..."`, and
//! integrations (Podman, libvirt, rootlesskit) depend on its details, so the
//! clap command is set up to tokenize the same way:
//!
//! - `--opt=val` and `--opt val`, `-m1500` and `-m 1500`, bundles (`-fd`,
//!   `-fm1500`); unambiguous prefixes of long options (`--fore`); an option
//!   that takes a value takes the next word whatever it looks like
//!   (`--mtu --debug` is an invalid MTU, as with getopt);
//! - the first non-option word ends option parsing (the `+` mode), as does
//!   `--`; everything after it is kept verbatim, even words that look like
//!   options. For pasta a single all-digit word is a PID, anything else is a
//!   command; for passt any such word is an error.
//!
//! clap only tokenizes. The options are then applied one at a time in
//! command-line order, reconstructed from clap's indices: later options
//! override earlier ones (passt(1): "if conflicting or multiple options are
//! given, the last one takes effect"), and the first `-h`, `--version` or
//! invalid value stops processing, as `getopt_long()` does. Repeated flags
//! keep only their last position in clap; this is equivalent because every
//! flag just assigns constants. When clap itself fails (unknown option,
//! missing argument), the words before the failure are applied first, so that
//! `--version --bogus` still prints the version, and the error is then
//! reported in glibc's wording (`unrecognized option '--x'`,
//! `invalid option -- 'x'`, `option '--mtu' requires an argument`, ...).
//!
//! Every upstream option is recognised. Options whose machinery is not built
//! yet are refused with `<prog>: option --xyz is not supported yet`; port
//! forwarding options check their specifier ([`crate::fwd_rule`]) and then
//! accept only `none`. Options of the other program
//! (pasta-only given to passt and the reverse) are refused as upstream does.
//!
//! ## Resolution
//!
//! [`resolve`] follows passt(1) for `-a`, `-n`, `-g`, `-D`, `-S`,
//! `--dns-forward`, `--dns-host`, `--map-host-loopback`, `--no-map-gw` and the
//! NOTES sections "Handling of traffic with loopback destination and source
//! addresses" and "Local mode for disconnected setups"; see its
//! documentation for the rules, and where they differ from upstream's code.

use std::ffi::{OsStr, OsString};
use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};

use crate::fwd_rule::{FwdOpt, FwdTable, PortRange, SpecCtx, EPHEMERAL_DEFAULT};
use crate::host::{HostIf, HostNet, Resolv, Route};

/// Which program we are, chosen by `argv[0]` (basename starting with "pasta").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// passt: a guest on a UNIX stream socket (or vhost-user).
    Passt,
    /// pasta: a network namespace behind a tap device.
    Pasta,
}

/// What pasta attaches to (passt(1) SYNOPSIS: the three forms of pasta).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PastaTarget {
    /// `pasta [OPTIONS] [COMMAND [ARG]...]`: new user and network namespace
    /// running `argv` (empty: `$SHELL`, else /bin/sh, as a login shell).
    Spawn { argv: Vec<OsString> },
    /// `pasta [OPTIONS] PID`: the namespaces of an existing process.
    Pid(u32),
    /// `pasta [OPTIONS] --netns PATH|NAME`: a bare name means /run/netns/NAME.
    NetNs(PathBuf),
}

/// A `-D/--dns` setting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DnsOpt {
    /// Not given: take nameservers from /etc/resolv.conf.
    #[default]
    Host,
    /// `-D none`: advertise no resolver.
    None,
    /// `-D addr` (repeatable): advertise these, unmapped. An IP version with
    /// no address here still takes the host's resolvers, as upstream.
    List(Vec<IpAddr>),
}

/// A `-S/--search` setting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SearchOpt {
    /// Not given: take `search` domains from /etc/resolv.conf.
    #[default]
    Host,
    /// `-S none`: no search list.
    None,
    /// `-S "a.example b.example"`: space-separated list.
    List(Vec<String>),
}

/// The parsed command line, before looking at the host.
///
/// Field names follow upstream's options; `None` means "not given".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conf {
    /// passt or pasta (`argv[0]`).
    pub mode: Mode,
    /// `-f/--foreground` (implied for pasta's spawn form, as upstream's
    /// `pasta_start_ns()` does).
    pub foreground: bool,
    /// `-d/--debug`.
    pub debug: bool,
    /// `--trace` (implies `debug`).
    pub trace: bool,
    /// `-q/--quiet` (also implied for pasta's spawn form unless `debug`).
    pub quiet: bool,
    /// `-l/--log-file PATH`.
    pub log_file: Option<PathBuf>,
    /// `--log-size SIZE`: bound of the log file, bytes (default 1 MiB, at
    /// least [`crate::log::LOG_SIZE_MIN`]).
    pub log_size: u64,
    /// `--stats DELAY`: event statistics on standard error at most every
    /// DELAY seconds; 0: none.
    pub stats: u64,
    /// `-P/--pid FILE`.
    pub pid_file: Option<PathBuf>,
    /// passt: `-s/--socket PATH` (`None`: the first free of
    /// /tmp/passt_1.socket to /tmp/passt_64.socket).
    pub socket: Option<PathBuf>,
    /// passt: `-F/--fd FD`, a connected socket inherited from the parent
    /// (implies `one_off`).
    pub fd: Option<i32>,
    /// passt: `-1/--one-off`: exit when the guest disconnects.
    pub one_off: bool,
    /// passt: `--vhost-user`.
    pub vhost_user: bool,
    /// `-p/--pcap FILE`: capture of every frame to and from the tap.
    pub pcap: Option<PathBuf>,
    /// `-m/--mtu`: `None` is the default (65520), `Some(0)` disables advertising.
    pub mtu: Option<u16>,
    /// `--max-flows N` (passt-rs extension): capacity of the flow table,
    /// 1 to [`MAX_FLOWS_LIMIT`]; `None` is [`crate::daemon::FLOW_CAPACITY`].
    pub max_flows: Option<usize>,
    /// `--threads N` (passt-rs extension, pasta only): worker threads, one
    /// per queue of a multi-queue tap, 1 to [`MAX_THREADS`]; 1 (the
    /// default) is upstream's single thread ([`crate::threads`]).
    pub threads: usize,
    /// `-a` IPv4 address, with prefix length if given in CIDR notation.
    pub addr4: Option<(Ipv4Addr, Option<u8>)>,
    /// `-a` IPv6 address (a given prefix length is overridden by 64, as upstream).
    pub addr6: Option<Ipv6Addr>,
    /// `-n/--netmask` as a prefix length (dot-decimal or bits accepted).
    pub netmask4: Option<u8>,
    /// `-M/--mac-addr`: our MAC as seen by the guest (default 9a:55:9a:55:9a:55).
    pub our_mac: [u8; 6],
    /// `-g/--gateway` IPv4.
    pub gw4: Option<Ipv4Addr>,
    /// `-g/--gateway` IPv6.
    pub gw6: Option<Ipv6Addr>,
    /// `-i/--interface`: host interface to take addresses and routes from.
    pub interface: Option<String>,
    /// `--outbound-if4`: host interface IPv4 outbound sockets are bound to
    /// (SO_BINDTODEVICE), and, without `-i`, the one IPv4 addresses and
    /// routes come from.
    pub outbound_if4: Option<String>,
    /// `--outbound-if6`: the same for IPv6.
    pub outbound_if6: Option<String>,
    /// `-o/--outbound` IPv4 source address for outbound sockets.
    pub outbound4: Option<Ipv4Addr>,
    /// `-o/--outbound` IPv6 source address for outbound sockets.
    pub outbound6: Option<Ipv6Addr>,
    /// `-D/--dns`. `-D none` also clears any earlier `--dns-forward` and
    /// `--dns-host`, as upstream.
    pub dns: DnsOpt,
    /// `-S/--search` (repeatable: lists are concatenated).
    pub search: SearchOpt,
    /// Whether resolvers go out in DHCP/RA/DHCPv6: default true for passt,
    /// false for pasta; `--dhcp-dns` / `--no-dhcp-dns` flip it.
    pub dhcp_dns: bool,
    /// Whether the search list goes out: same defaults, `--dhcp-search` /
    /// `--no-dhcp-search`.
    pub dhcp_search: bool,
    /// `--dns-forward` IPv4.
    pub dns_forward4: Option<Ipv4Addr>,
    /// `--dns-forward` IPv6.
    pub dns_forward6: Option<Ipv6Addr>,
    /// `--dns-host` IPv4.
    pub dns_host4: Option<Ipv4Addr>,
    /// `--dns-host` IPv6.
    pub dns_host6: Option<Ipv6Addr>,
    /// `--map-host-loopback` IPv4: `Some(None)` is `none`.
    pub map_host_loopback4: Option<Option<Ipv4Addr>>,
    /// `--map-host-loopback` IPv6: `Some(None)` is `none`.
    pub map_host_loopback6: Option<Option<Ipv6Addr>>,
    /// `--no-map-gw`.
    pub no_map_gw: bool,
    /// `--no-copy-routes` (pasta, deprecated upstream): with `--config-net`,
    /// only a default route per IP version, as `-g` gives.
    pub no_copy_routes: bool,
    /// `--no-copy-addrs` (pasta, deprecated upstream): with `--config-net`,
    /// only one address per IP version, as `-a` gives.
    pub no_copy_addrs: bool,
    /// `--freebind`: `-t`/`-u` sockets may bind addresses not (yet)
    /// configured on the host (IP_FREEBIND, IPV6_FREEBIND: ip(7), ipv6(7)).
    pub freebind: bool,
    /// `--map-guest-addr` IPv4: `Some(None)` is `none`.
    pub map_guest_addr4: Option<Option<Ipv4Addr>>,
    /// `--map-guest-addr` IPv6: `Some(None)` is `none`.
    pub map_guest_addr6: Option<Option<Ipv6Addr>>,
    /// `-t`/`-u`: forwarding into the guest or namespace, in option order.
    /// After [`Conf::parse`], pasta's default `auto` is filled in for a
    /// protocol given no option (passt(1): "Default is none for passt and
    /// auto for pasta").
    pub fwd_in: FwdTable,
    /// `-T`/`-U` (pasta): forwarding from the namespace to the host.
    pub fwd_out: FwdTable,
    /// Protocols that got an explicit forwarding option: `[-t, -u, -T, -U]`.
    pub fwd_given: [bool; 4],
    /// `--no-splice`: no bypass for local traffic.
    pub no_splice: bool,
    /// `--splice-only`: no tap device, only spliced local traffic.
    pub splice_only: bool,
    /// `--ebpf` (pasta): load the optional eBPF programs ([`crate::ebpf`]);
    /// without the privileges or the helper, log why and keep to splice().
    pub ebpf: bool,
    /// `--ebpf-helper PATH`: UNIX socket of a privileged `passt-ebpf-helper`
    /// that loads and attaches the programs for us (implies `--ebpf`).
    pub ebpf_helper: Option<PathBuf>,
    /// `--ebpf-cgroup PATH`: cgroup v2 directory whose sockets the sockops
    /// program sees (default: the cgroup v2 root,
    /// [`crate::ebpf::default_cgroup`]; implies `--ebpf`).
    pub ebpf_cgroup: Option<PathBuf>,
    /// `--host-lo-to-ns-lo`: spliced connections to a host loopback address
    /// reach the same loopback address in the namespace.
    pub host_lo_to_ns_lo: bool,
    /// `-H/--hostname` (DHCP option 12).
    pub hostname: Option<String>,
    /// `--fqdn` (DHCP option 81, DHCPv6 option 39).
    pub fqdn: Option<String>,
    /// `--no-tcp`: TCP segments from the guest are dropped (and counted).
    pub no_tcp: bool,
    /// `--no-udp`.
    pub no_udp: bool,
    /// `--no-icmp` (implies `no_ndp`, already applied by [`Conf::parse`]).
    pub no_icmp: bool,
    /// `--no-dhcp`.
    pub no_dhcp: bool,
    /// `--no-ndp`.
    pub no_ndp: bool,
    /// `--no-dhcpv6`.
    pub no_dhcpv6: bool,
    /// `--no-ra` (implied by `--config-net`, as upstream; already applied by
    /// [`Conf::parse`]).
    pub no_ra: bool,
    /// `-4/--ipv4-only`.
    pub ipv4_only: bool,
    /// `-6/--ipv6-only`.
    pub ipv6_only: bool,
    /// pasta: what to attach to (`Spawn { argv: [] }` for passt, unused).
    pub target: PastaTarget,
    /// `--userns PATH`, as given. With a PID and no `--userns`, the user
    /// namespace to join is /proc/PID/ns/user (derived by the pasta code).
    pub userns: Option<PathBuf>,
    /// `--netns-only` (implied by `--netns` without `--userns`; not implied
    /// by a PID).
    pub netns_only: bool,
    /// `--no-netns-quit`.
    pub no_netns_quit: bool,
    /// `--config-net`.
    pub config_net: bool,
    /// `-I/--ns-ifname`.
    pub ns_ifname: Option<String>,
    /// `--ns-mac-addr`.
    pub ns_mac: Option<[u8; 6]>,
    /// `--runas`, resolved to (UID, GID) at parse time, while the user and
    /// group databases can still be read ([`crate::isolation::parse_runas`]).
    pub runas: Option<(u32, u32)>,
}

/// Why the command line was refused. `Display` is the whole message line,
/// already prefixed with the program name, e.g. `pasta: unrecognized option '--x'`.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// `--help`: print this text to stdout and exit 0.
    #[error("{0}")]
    Help(String),
    /// `--version`: print this text to stdout and exit 0.
    #[error("{0}")]
    Version(String),
    /// Anything else: print to stderr and exit 1.
    #[error("{0}")]
    Invalid(String),
}

/// The resolved IPv4 configuration seen by the guest or namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ip4Conf {
    /// Address assigned to the guest (DHCP yiaddr, `--config-net`).
    pub addr: Ipv4Addr,
    /// Prefix length (DHCP option 1).
    pub prefix_len: u8,
    /// Default gateway given to the guest (DHCP option 3); also our address.
    /// Unspecified when the host interface has no default gateway and `-g`
    /// was not given: upstream then implies `--no-dhcp` (passt(1)).
    pub gw: Ipv4Addr,
    /// Resolvers advertised via DHCP option 6 (empty: none).
    pub dns: Vec<Ipv4Addr>,
    /// Guest-side address whose port 53 traffic goes to `dns_host`
    /// (`--dns-forward`, or the mapped gateway when a host resolver is loopback).
    pub dns_match: Option<Ipv4Addr>,
    /// Host-side resolver that `dns_match` traffic is sent to. Only meaningful
    /// with `dns_match`; `None` if no resolver of this version is known.
    pub dns_host: Option<Ipv4Addr>,
    /// Guest-side address translated to 127.0.0.1 (`--map-host-loopback`).
    pub map_host_loopback: Option<Ipv4Addr>,
    /// `--map-guest-addr`: guest-side address standing for `addr` on the
    /// host (Podman's host.containers.internal).
    pub map_guest_addr: Option<Ipv4Addr>,
    /// `-o`: bind outbound sockets to this source.
    pub outbound: Option<Ipv4Addr>,
    /// Every non-link-local address of the host interface, for `--config-net`
    /// (just `addr` when `-a` was given).
    pub copy_addrs: Vec<(Ipv4Addr, u8)>,
    /// Routes of the host interface, for `--config-net` (default route only
    /// when `-g` was given).
    pub copy_routes: Vec<crate::host::Route<Ipv4Addr>>,
}

/// The resolved IPv6 configuration seen by the guest or namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ip6Conf {
    /// Address assigned via DHCPv6 IA_NA and `--config-net`
    /// (unspecified in local mode: none assigned).
    pub addr: Ipv6Addr,
    /// Prefix length for the RA prefix information option (64).
    pub prefix_len: u8,
    /// Default gateway (router) the guest uses.
    pub gw: Ipv6Addr,
    /// Our link-local address: source of RA, NA for it, DHCPv6 replies.
    /// Equal to `gw` when that is link-local, else fe80::1.
    pub our_ll: Ipv6Addr,
    /// Resolvers advertised via RDNSS / DHCPv6 option 23.
    pub dns: Vec<Ipv6Addr>,
    /// See [`Ip4Conf::dns_match`].
    pub dns_match: Option<Ipv6Addr>,
    /// See [`Ip4Conf::dns_host`].
    pub dns_host: Option<Ipv6Addr>,
    /// Guest-side address translated to ::1.
    pub map_host_loopback: Option<Ipv6Addr>,
    /// `--map-guest-addr` (IPv6).
    pub map_guest_addr: Option<Ipv6Addr>,
    /// `-o`: bind outbound sockets to this source.
    pub outbound: Option<Ipv6Addr>,
    /// Addresses to copy with `--config-net` (global only).
    pub copy_addrs: Vec<(Ipv6Addr, u8)>,
    /// Routes to copy with `--config-net`.
    pub copy_routes: Vec<crate::host::Route<Ipv6Addr>>,
}

/// Everything the data plane and services need, after looking at the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConf {
    /// Host interface IPv4 was taken from ("" in local mode).
    pub ifname4: String,
    /// Host interface IPv6 was taken from ("" when none).
    pub ifname6: String,
    /// IPv4 settings; `None` when IPv4 is disabled (`-6`).
    pub ip4: Option<Ip4Conf>,
    /// IPv6 settings; `None` when IPv6 is disabled (`-4`). Without a usable
    /// host interface this is local mode: no address, gateway fe80::1.
    pub ip6: Option<Ip6Conf>,
    /// Tap MTU in bytes, L2 header excluded (65520 by default; 0 with `-m 0`:
    /// leave the tap's MTU alone).
    pub mtu: u16,
    /// MTU advertised via DHCP option 26 / RA option 5; `None` with `-m 0`.
    pub advertise_mtu: Option<u16>,
    /// Our MAC (`-M`).
    pub our_mac: [u8; 6],
    /// Search domains to advertise (already filtered by `dhcp_search`).
    pub search: Vec<String>,
    /// DHCP option 12.
    pub hostname: Option<String>,
    /// DHCP option 81 / DHCPv6 option 39.
    pub fqdn: Option<String>,
    /// True when no host interface was usable for IPv4 (169.254.2.1 mode).
    pub local_mode4: bool,
}

/// MTU used when `-m` is not given: the largest 802.3 frame minus its
/// header, rounded down to 32 bits (passt(1), `-m`).
pub const DEFAULT_MTU: u16 = 65520;

/// Largest `--max-flows`: 2^20, Linux's default `fs.nr_open` (every flow
/// holds at least one file descriptor, so a larger table could never
/// fill), and a table of that size still takes well under 1 GiB.
pub const MAX_FLOWS_LIMIT: usize = 1 << 20;

/// Largest `--threads`: a small fixed cap (each worker is a queue of the
/// tap, an epoll loop and a flow table of `--max-flows` slots).
pub const MAX_THREADS: usize = 16;

/// Our MAC when `-M` is not given: locally administered 9a:55:9a:55:9a:55.
pub const DEFAULT_MAC: [u8; 6] = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55];

/// Local mode (passt(1) NOTES): address assigned to the guest.
pub const LOCAL_ADDR4: Ipv4Addr = Ipv4Addr::new(169, 254, 2, 1);
/// Local mode: IPv4 gateway, and our address.
pub const LOCAL_GW4: Ipv4Addr = Ipv4Addr::new(169, 254, 2, 2);
/// Local mode: IPv4 prefix length.
pub const LOCAL_PREFIX_LEN4: u8 = 16;
/// IPv6 gateway without a host default route, and fallback link-local
/// address of ours (passt(1), `-g`).
pub const LOCAL_GW6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// Prefix length advertised for the guest's IPv6 address (passt(1), `-a`).
pub const PREFIX_LEN6: u8 = 64;

/// Smallest MTU that can carry IPv4 (RFC 791: 68 bytes).
const IPV4_MIN_MTU: u16 = 68;
/// Smallest MTU that can carry IPv6 (RFC 8200 §5: 1280 bytes).
const IPV6_MIN_MTU: u16 = 1280;
/// Longest domain name in presentation form (RFC 1035 §2.3.4: 253 bytes).
const MAX_DNAME_LEN: usize = 253;
/// Linux IFNAMSIZ, terminator included.
const IFNAMSIZ: usize = 16;
/// Linux PATH_MAX, terminator included.
const PATH_MAX: usize = 4096;
/// Where `--netns NAME` looks, as ip-netns(8).
const NETNS_RUN_DIR: &str = "/run/netns";
/// clap id of the trailing non-option words.
const TRAILING: &str = "TRAILING ARGS";

/// Every option upstream knows, by what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Ebpf,
    EbpfHelper,
    EbpfCgroup,
    Debug,
    Quiet,
    Foreground,
    Stderr,
    LogFile,
    Help,
    Socket,
    Fd,
    NsIfname,
    Pcap,
    PidFile,
    Mtu,
    MaxFlows,
    Threads,
    Address,
    Netmask,
    MacAddr,
    Gateway,
    Interface,
    Outbound,
    Dns,
    Search,
    Hostname,
    NoTcp,
    NoUdp,
    NoIcmp,
    NoDhcp,
    NoDhcpv6,
    NoNdp,
    NoRa,
    NoSplice,
    SpliceOnly,
    Freebind,
    NoMapGw,
    Ipv4Only,
    Ipv6Only,
    OneOff,
    TcpPorts,
    UdpPorts,
    TcpNs,
    UdpNs,
    Userns,
    Netns,
    NsMacAddr,
    DhcpDns,
    NoDhcpDns,
    DhcpSearch,
    NoDhcpSearch,
    DnsForward,
    NoNetnsQuit,
    Trace,
    Runas,
    LogSize,
    Version,
    OutboundIf4,
    OutboundIf6,
    ConfigNet,
    NoCopyRoutes,
    NoCopyAddrs,
    NetnsOnly,
    MapHostLoopback,
    MapGuestAddr,
    HostLoToNsLo,
    DnsHost,
    VhostUser,
    PrintCapabilities,
    Fqdn,
    RepairPath,
    MigrateExit,
    MigrateNoLinger,
    Stats,
    ConfPath,
    ChrootFallback,
}

/// One row of the option table (getopt's `struct option`, plus our notes).
#[derive(Debug)]
struct OptSpec {
    opt: Opt,
    /// Long name, without `--`; also the clap id.
    long: &'static str,
    /// Second long name for the same option (`--socket-path`).
    alias: Option<&'static str>,
    short: Option<char>,
    takes_value: bool,
    /// `Some(mode)`: refused in the other mode.
    only: Option<Mode>,
    /// `false`: recognised but refused as not supported yet.
    built: bool,
}

impl OptSpec {
    const fn flag(opt: Opt, long: &'static str, short: Option<char>) -> Self {
        OptSpec {
            opt,
            long,
            alias: None,
            short,
            takes_value: false,
            only: None,
            built: true,
        }
    }
    const fn value(opt: Opt, long: &'static str, short: Option<char>) -> Self {
        OptSpec {
            opt,
            long,
            alias: None,
            short,
            takes_value: true,
            only: None,
            built: true,
        }
    }
    const fn pasta(self) -> Self {
        OptSpec {
            only: Some(Mode::Pasta),
            ..self
        }
    }
    const fn passt(self) -> Self {
        OptSpec {
            only: Some(Mode::Passt),
            ..self
        }
    }
    const fn later(self) -> Self {
        OptSpec {
            built: false,
            ..self
        }
    }
}

/// The options of passt(1), in upstream's table order (which is also the
/// order of "possibilities" in the ambiguity message).
const OPTIONS: &[OptSpec] = &[
    OptSpec::flag(Opt::Debug, "debug", Some('d')),
    OptSpec::flag(Opt::Quiet, "quiet", Some('q')),
    OptSpec::flag(Opt::Foreground, "foreground", Some('f')),
    OptSpec::flag(Opt::Stderr, "stderr", Some('e')),
    OptSpec::value(Opt::LogFile, "log-file", Some('l')),
    OptSpec::flag(Opt::Help, "help", Some('h')),
    OptSpec {
        alias: Some("socket-path"),
        ..OptSpec::value(Opt::Socket, "socket", Some('s'))
    }
    .passt(),
    OptSpec::value(Opt::Fd, "fd", Some('F')).passt(),
    OptSpec::value(Opt::NsIfname, "ns-ifname", Some('I')).pasta(),
    OptSpec::value(Opt::Pcap, "pcap", Some('p')),
    OptSpec::value(Opt::PidFile, "pid", Some('P')),
    OptSpec::value(Opt::Mtu, "mtu", Some('m')),
    OptSpec::value(Opt::Address, "address", Some('a')),
    OptSpec::value(Opt::Netmask, "netmask", Some('n')),
    OptSpec::value(Opt::MacAddr, "mac-addr", Some('M')),
    OptSpec::value(Opt::Gateway, "gateway", Some('g')),
    OptSpec::value(Opt::Interface, "interface", Some('i')),
    OptSpec::value(Opt::Outbound, "outbound", Some('o')),
    OptSpec::value(Opt::Dns, "dns", Some('D')),
    OptSpec::value(Opt::Search, "search", Some('S')),
    OptSpec::value(Opt::Hostname, "hostname", Some('H')),
    OptSpec::flag(Opt::NoTcp, "no-tcp", None),
    OptSpec::flag(Opt::NoUdp, "no-udp", None),
    OptSpec::flag(Opt::NoIcmp, "no-icmp", None),
    OptSpec::flag(Opt::NoDhcp, "no-dhcp", None),
    OptSpec::flag(Opt::NoDhcpv6, "no-dhcpv6", None),
    OptSpec::flag(Opt::NoNdp, "no-ndp", None),
    OptSpec::flag(Opt::NoRa, "no-ra", None),
    OptSpec::flag(Opt::NoSplice, "no-splice", None),
    OptSpec::flag(Opt::SpliceOnly, "splice-only", None).pasta(),
    OptSpec::flag(Opt::Freebind, "freebind", None),
    OptSpec::flag(Opt::NoMapGw, "no-map-gw", None),
    OptSpec::flag(Opt::Ipv4Only, "ipv4-only", Some('4')),
    OptSpec::flag(Opt::Ipv6Only, "ipv6-only", Some('6')),
    OptSpec::flag(Opt::OneOff, "one-off", Some('1')).passt(),
    OptSpec::value(Opt::TcpPorts, "tcp-ports", Some('t')),
    OptSpec::value(Opt::UdpPorts, "udp-ports", Some('u')),
    OptSpec::value(Opt::TcpNs, "tcp-ns", Some('T')).pasta(),
    OptSpec::value(Opt::UdpNs, "udp-ns", Some('U')).pasta(),
    OptSpec::value(Opt::Userns, "userns", None).pasta(),
    OptSpec::value(Opt::Netns, "netns", None).pasta(),
    OptSpec::value(Opt::NsMacAddr, "ns-mac-addr", None).pasta(),
    OptSpec::flag(Opt::DhcpDns, "dhcp-dns", None).pasta(),
    OptSpec::flag(Opt::NoDhcpDns, "no-dhcp-dns", None).passt(),
    OptSpec::flag(Opt::DhcpSearch, "dhcp-search", None).pasta(),
    OptSpec::flag(Opt::NoDhcpSearch, "no-dhcp-search", None).passt(),
    OptSpec::value(Opt::DnsForward, "dns-forward", None),
    OptSpec::flag(Opt::NoNetnsQuit, "no-netns-quit", None).pasta(),
    OptSpec::flag(Opt::Trace, "trace", None),
    OptSpec::value(Opt::Runas, "runas", None),
    OptSpec::value(Opt::LogSize, "log-size", None),
    OptSpec::flag(Opt::Version, "version", None),
    OptSpec::value(Opt::OutboundIf4, "outbound-if4", None),
    OptSpec::value(Opt::OutboundIf6, "outbound-if6", None),
    OptSpec::flag(Opt::ConfigNet, "config-net", None).pasta(),
    OptSpec::flag(Opt::NoCopyRoutes, "no-copy-routes", None).pasta(),
    OptSpec::flag(Opt::NoCopyAddrs, "no-copy-addrs", None).pasta(),
    OptSpec::flag(Opt::NetnsOnly, "netns-only", None).pasta(),
    OptSpec::value(Opt::MapHostLoopback, "map-host-loopback", None),
    OptSpec::value(Opt::MapGuestAddr, "map-guest-addr", None),
    OptSpec::flag(Opt::HostLoToNsLo, "host-lo-to-ns-lo", None).pasta(),
    OptSpec::flag(Opt::Ebpf, "ebpf", None).pasta(),
    OptSpec::value(Opt::EbpfHelper, "ebpf-helper", None).pasta(),
    OptSpec::value(Opt::EbpfCgroup, "ebpf-cgroup", None).pasta(),
    OptSpec::value(Opt::DnsHost, "dns-host", None),
    OptSpec::flag(Opt::VhostUser, "vhost-user", None).passt(),
    OptSpec::flag(Opt::PrintCapabilities, "print-capabilities", None).passt(),
    OptSpec::value(Opt::Fqdn, "fqdn", None),
    OptSpec::value(Opt::RepairPath, "repair-path", None)
        .passt()
        .later(),
    OptSpec::flag(Opt::MigrateExit, "migrate-exit", None)
        .passt()
        .later(),
    OptSpec::flag(Opt::MigrateNoLinger, "migrate-no-linger", None)
        .passt()
        .later(),
    OptSpec::value(Opt::Stats, "stats", None),
    OptSpec::value(Opt::ConfPath, "conf-path", Some('c')).later(),
    OptSpec::flag(Opt::ChrootFallback, "chroot-fallback", None).later(),
    // passt-rs extensions, last: upstream's ambiguity messages list theirs first.
    OptSpec::value(Opt::MaxFlows, "max-flows", None),
    OptSpec::value(Opt::Threads, "threads", None),
];

/// Program name for messages.
fn prog(mode: Mode) -> &'static str {
    match mode {
        Mode::Passt => "passt",
        Mode::Pasta => "pasta",
    }
}

/// The clap command: a tokenizer configured like `getopt_long()` with `+`.
fn command(mode: Mode) -> Command {
    let mut cmd = Command::new(prog(mode))
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .infer_long_args(true)
        // Repeated flags are fine (getopt has no notion of conflicts).
        .args_override_self(true);
    for spec in OPTIONS {
        let mut arg = Arg::new(spec.long).long(spec.long);
        if let Some(c) = spec.short {
            arg = arg.short(c);
        }
        if let Some(alias) = spec.alias {
            arg = arg.alias(alias);
        }
        arg = if spec.takes_value {
            arg.num_args(1)
                .action(ArgAction::Append)
                .allow_hyphen_values(true)
                .value_parser(value_parser!(OsString))
        } else {
            arg.action(ArgAction::SetTrue)
        };
        cmd = cmd.arg(arg);
    }
    cmd.arg(
        Arg::new(TRAILING)
            .num_args(1..)
            .action(ArgAction::Append)
            .trailing_var_arg(true)
            .value_parser(value_parser!(OsString)),
    )
}

/// One option occurrence, at its position on the command line.
struct Event<'m> {
    index: usize,
    spec: &'static OptSpec,
    value: Option<&'m OsStr>,
}

/// Options in command-line order, and the trailing non-option words.
fn events(m: &ArgMatches) -> (Vec<Event<'_>>, Vec<OsString>) {
    let mut out = Vec::new();
    for spec in OPTIONS {
        let Some(indices) = m.indices_of(spec.long) else {
            continue;
        };
        if spec.takes_value {
            let values = m.get_raw(spec.long).into_iter().flatten();
            for (index, value) in indices.zip(values) {
                out.push(Event {
                    index,
                    spec,
                    value: Some(value),
                });
            }
        } else if m.get_flag(spec.long) {
            // SetTrue keeps only the last occurrence: see the module docs.
            for index in indices {
                out.push(Event {
                    index,
                    spec,
                    value: None,
                });
            }
        }
    }
    out.sort_by_key(|e| e.index);
    let trailing = m
        .get_raw(TRAILING)
        .into_iter()
        .flatten()
        .map(OsStr::to_os_string)
        .collect();
    (out, trailing)
}

/// Long options that `name` (without `--`) abbreviates, or names exactly.
fn long_candidates(name: &str) -> Vec<&'static OptSpec> {
    if let Some(exact) = OPTIONS
        .iter()
        .find(|s| s.long == name || s.alias == Some(name))
    {
        return vec![exact];
    }
    OPTIONS
        .iter()
        .filter(|s| s.long.starts_with(name) || s.alias.is_some_and(|a| a.starts_with(name)))
        .collect()
}

/// The option a clap "invalid arg" context names: "--mtu <mtu>" -> mtu.
fn spec_from_display(display: &str) -> Option<&'static OptSpec> {
    let word = display.split_whitespace().next()?;
    let long = word.strip_prefix("--")?;
    OPTIONS.iter().find(|s| s.long == long)
}

/// If the last word is an option still waiting for its argument, the glibc
/// message for it.
fn missing_argument(prog: &str, args: &[OsString]) -> Option<String> {
    let last = args.last()?.to_str()?;
    if let Some(name) = last.strip_prefix("--") {
        if name.contains('=') {
            return None;
        }
        match long_candidates(name).as_slice() {
            [spec] if spec.takes_value => Some(format!(
                "{prog}: option '--{}' requires an argument",
                spec.long
            )),
            _ => None,
        }
    } else {
        let cluster = last.strip_prefix('-')?;
        let mut chars = cluster.chars();
        while let Some(c) = chars.next() {
            let spec = OPTIONS.iter().find(|s| s.short == Some(c))?;
            if spec.takes_value {
                return chars
                    .as_str()
                    .is_empty()
                    .then(|| format!("{prog}: option requires an argument -- '{c}'"));
            }
        }
        None
    }
}

/// Turn a clap tokenizing error into glibc getopt's message.
fn getopt_message(mode: Mode, args: &[OsString], err: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};

    let prog = prog(mode);
    let invalid_arg = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    match (err.kind(), invalid_arg) {
        (ErrorKind::UnknownArgument, Some(arg)) => {
            if let Some(name) = arg.strip_prefix("--") {
                // The word as written, "=value" included, like glibc.
                let word = args
                    .iter()
                    .filter_map(|a| a.to_str())
                    .find(|a| {
                        *a == arg
                            || a.strip_prefix(arg)
                                .is_some_and(|rest| rest.starts_with('='))
                    })
                    .unwrap_or(arg);
                let candidates = long_candidates(name);
                if candidates.len() > 1 {
                    let list: Vec<String> = candidates
                        .iter()
                        .map(|s| format!("'--{}'", s.long))
                        .collect();
                    format!(
                        "{prog}: option '{word}' is ambiguous; possibilities: {}",
                        list.join(" ")
                    )
                } else {
                    format!("{prog}: unrecognized option '{word}'")
                }
            } else if let Some(c) = arg.strip_prefix('-').and_then(|s| s.chars().next()) {
                format!("{prog}: invalid option -- '{c}'")
            } else {
                format!("{prog}: unrecognized option '{arg}'")
            }
        }
        (ErrorKind::TooManyValues, Some(arg)) => match spec_from_display(arg) {
            Some(spec) => format!("{prog}: option '--{}' doesn't allow an argument", spec.long),
            None => format!("{prog}: option '{arg}' doesn't allow an argument"),
        },
        _ => missing_argument(prog, args).unwrap_or_else(|| {
            // Not expected with this command; keep clap's own first line.
            let rendered = err.to_string();
            let line = rendered.lines().next().unwrap_or_default();
            format!("{prog}: {}", line.strip_prefix("error: ").unwrap_or(line))
        }),
    }
}

/// Parse an unsigned number like strtoul(3) with base 0: decimal, `0x` hex
/// or leading-`0` octal; no sign, no white space.
fn parse_ulong(s: &str) -> Option<u64> {
    let (digits, radix) = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (hex, 16)
    } else if let Some(oct) = s.strip_prefix('0').filter(|o| !o.is_empty()) {
        (oct, 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Parse a MAC address in the form `xx:xx:xx:xx:xx:xx`.
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 || !part.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Parse `-n`: a contiguous dot-decimal netmask, or a number of bits (0-32).
fn parse_netmask(s: &str) -> Option<u8> {
    if let Ok(mask) = s.parse::<Ipv4Addr>() {
        let bits = u32::from(mask);
        let len = bits.leading_ones();
        // Contiguous: nothing set after the leading ones.
        return (bits.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8);
    }
    parse_ulong(s).filter(|&n| n <= 32).map(|n| n as u8)
}

/// Class-based prefix length of an IPv4 address (RFC 791 classes A, B, C).
fn class_prefix_len(addr: Ipv4Addr) -> u8 {
    match addr.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        192..=223 => 24,
        _ => 32,
    }
}

/// fe80::/10.
fn is_link_local6(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// IPv4-compatible IPv6 address (RFC 4291 §2.5.5.1, deprecated): ::a.b.c.d
/// with a.b.c.d > 0.0.0.1.
fn is_v4_compat(a: &Ipv6Addr) -> bool {
    let o = a.octets();
    o[..12].iter().all(|&b| b == 0) && u32::from_be_bytes([o[12], o[13], o[14], o[15]]) > 1
}

/// Parse state: the [`Conf`] being built, and what getopt keeps on the side.
struct Builder {
    conf: Conf,
    /// The last `-a` had a /prefix_len.
    a_had_prefix: bool,
    /// `-n` was given.
    netmask_given: bool,
    /// `--netns`, already expanded to a path.
    netns: Option<PathBuf>,
    /// The host's ephemeral ports (never covered by `all`/`auto`).
    ephemeral: PortRange,
}

impl Builder {
    fn new(mode: Mode) -> Self {
        let passt = mode == Mode::Passt;
        let conf = Conf {
            mode,
            foreground: false,
            debug: false,
            trace: false,
            quiet: false,
            log_file: None,
            log_size: crate::log::LOG_SIZE_DEFAULT,
            stats: 0,
            pid_file: None,
            socket: None,
            fd: None,
            one_off: false,
            vhost_user: false,
            pcap: None,
            mtu: None,
            max_flows: None,
            threads: 1,
            addr4: None,
            addr6: None,
            netmask4: None,
            our_mac: DEFAULT_MAC,
            gw4: None,
            gw6: None,
            interface: None,
            outbound_if4: None,
            outbound_if6: None,
            outbound4: None,
            outbound6: None,
            dns: DnsOpt::Host,
            search: SearchOpt::Host,
            dhcp_dns: passt,
            dhcp_search: passt,
            dns_forward4: None,
            dns_forward6: None,
            dns_host4: None,
            dns_host6: None,
            map_host_loopback4: None,
            map_host_loopback6: None,
            no_map_gw: false,
            no_copy_routes: false,
            no_copy_addrs: false,
            freebind: false,
            map_guest_addr4: None,
            map_guest_addr6: None,
            fwd_in: FwdTable::new(),
            fwd_out: FwdTable::new(),
            fwd_given: [false; 4],
            no_splice: false,
            splice_only: false,
            host_lo_to_ns_lo: false,
            ebpf: false,
            ebpf_helper: None,
            ebpf_cgroup: None,
            hostname: None,
            fqdn: None,
            no_tcp: false,
            no_udp: false,
            no_icmp: false,
            no_dhcp: false,
            no_ndp: false,
            no_dhcpv6: false,
            no_ra: false,
            ipv4_only: false,
            ipv6_only: false,
            target: PastaTarget::Spawn { argv: Vec::new() },
            userns: None,
            netns_only: false,
            no_netns_quit: false,
            config_net: false,
            ns_ifname: None,
            ns_mac: None,
            runas: None,
        };
        Builder {
            conf,
            a_had_prefix: false,
            netmask_given: false,
            netns: None,
            ephemeral: ephemeral_ports(),
        }
    }

    fn prog(&self) -> &'static str {
        prog(self.conf.mode)
    }

    fn invalid(&self, msg: impl Display) -> ConfError {
        ConfError::Invalid(format!("{}: {msg}", self.prog()))
    }

    /// The value as UTF-8, or `what: value` as the error.
    fn text<'v>(&self, value: &'v OsStr, what: &str) -> Result<&'v str, ConfError> {
        value
            .to_str()
            .ok_or_else(|| self.invalid(format!("{what}: {}", value.to_string_lossy())))
    }

    /// A path value: not empty, shorter than PATH_MAX.
    fn path(&self, value: &OsStr, what: &str) -> Result<PathBuf, ConfError> {
        if value.is_empty() || value.len() >= PATH_MAX {
            return Err(self.invalid(format!("{what}: {}", value.to_string_lossy())));
        }
        Ok(PathBuf::from(value))
    }

    /// An interface name: 1 to IFNAMSIZ - 1 bytes.
    fn ifname(&self, value: &OsStr) -> Result<String, ConfError> {
        let s = self.text(value, "Invalid interface name")?;
        if s.is_empty() || s.len() >= IFNAMSIZ {
            return Err(self.invalid(format!("Invalid interface name: {s}")));
        }
        Ok(s.to_owned())
    }

    /// A domain name for `-H` / `--fqdn`: at most 253 bytes.
    fn dname(&self, value: &OsStr, what: &str) -> Result<String, ConfError> {
        let s = self.text(value, what)?;
        if s.len() > MAX_DNAME_LEN {
            return Err(self.invalid(format!("{what}: {s}")));
        }
        Ok(s.to_owned())
    }

    fn mac(&self, value: &OsStr) -> Result<[u8; 6], ConfError> {
        let s = self.text(value, "Invalid MAC address")?;
        parse_mac(s).ok_or_else(|| self.invalid(format!("Invalid MAC address: {s}")))
    }

    /// Apply one option, as getopt_long's loop body does.
    fn apply(&mut self, spec: &OptSpec, value: Option<&OsStr>) -> Result<(), ConfError> {
        if let Some(only) = spec.only {
            if only != self.conf.mode {
                return Err(self.invalid(format!(
                    "--{} is for {} mode only",
                    spec.long,
                    prog(only)
                )));
            }
        }
        if !spec.built {
            return Err(self.invalid(format!("option --{} is not supported yet", spec.long)));
        }
        let value = match (spec.takes_value, value) {
            (true, Some(v)) => v,
            (true, None) => {
                return Err(self.invalid(format!("option '--{}' requires an argument", spec.long)))
            }
            (false, _) => OsStr::new(""),
        };
        let c = &mut self.conf;
        match spec.opt {
            Opt::Debug => {
                c.debug = true;
                c.quiet = false;
            }
            Opt::Trace => {
                c.trace = true;
                c.debug = true;
                c.quiet = false;
            }
            Opt::Quiet => {
                c.quiet = true;
                c.debug = false;
                c.trace = false;
            }
            Opt::Foreground => c.foreground = true,
            // Deprecated upstream, no effect.
            Opt::Stderr => {}
            Opt::LogFile => self.conf.log_file = Some(self.path(value, "Invalid log file")?),
            Opt::PidFile => self.conf.pid_file = Some(self.path(value, "Invalid PID file")?),
            Opt::LogSize => {
                let s = self.text(value, "Invalid --log-size")?;
                match parse_ulong(s) {
                    Some(n) if n >= crate::log::LOG_SIZE_MIN => self.conf.log_size = n,
                    _ => return Err(self.invalid(format!("Invalid --log-size: {s}"))),
                }
            }
            Opt::Stats => {
                let s = self.text(value, "Invalid --stats")?;
                match parse_ulong(s) {
                    // Seconds; more than a year is surely a mistake.
                    Some(n) if n <= 366 * 86400 => self.conf.stats = n,
                    _ => return Err(self.invalid(format!("Invalid --stats: {s}"))),
                }
            }
            Opt::Help => return Err(ConfError::Help(usage(self.conf.mode))),
            Opt::Version => return Err(ConfError::Version(version(self.conf.mode))),
            Opt::Mtu => self.mtu(value)?,
            Opt::MaxFlows => self.max_flows(value)?,
            Opt::Threads => self.threads(value)?,
            Opt::Address => self.address(value)?,
            Opt::Netmask => self.netmask(value)?,
            Opt::MacAddr => self.conf.our_mac = self.mac(value)?,
            Opt::NsMacAddr => self.conf.ns_mac = Some(self.mac(value)?),
            Opt::Gateway => self.gateway(value)?,
            Opt::Interface => self.conf.interface = Some(self.ifname(value)?),
            Opt::OutboundIf4 => self.conf.outbound_if4 = Some(self.ifname(value)?),
            Opt::OutboundIf6 => self.conf.outbound_if6 = Some(self.ifname(value)?),
            Opt::NsIfname => self.conf.ns_ifname = Some(self.ifname(value)?),
            Opt::Outbound => self.outbound(value)?,
            Opt::Dns => self.dns(value)?,
            Opt::Search => self.search(value)?,
            Opt::Hostname => self.conf.hostname = Some(self.dname(value, "Invalid hostname")?),
            Opt::Fqdn => self.conf.fqdn = Some(self.dname(value, "Invalid FQDN")?),
            Opt::DnsForward => self.dns_forward(value)?,
            Opt::DnsHost => self.dns_host(value)?,
            Opt::MapHostLoopback => self.map_host_loopback(value)?,
            Opt::MapGuestAddr => self.map_guest_addr(value)?,
            Opt::NoSplice => c.no_splice = true,
            Opt::SpliceOnly => c.splice_only = true,
            Opt::HostLoToNsLo => c.host_lo_to_ns_lo = true,
            Opt::Ebpf => c.ebpf = true,
            Opt::NoTcp => c.no_tcp = true,
            Opt::NoUdp => c.no_udp = true,
            Opt::NoIcmp => c.no_icmp = true,
            Opt::NoDhcp => c.no_dhcp = true,
            Opt::NoDhcpv6 => c.no_dhcpv6 = true,
            Opt::NoNdp => c.no_ndp = true,
            Opt::NoRa => c.no_ra = true,
            Opt::NoMapGw => c.no_map_gw = true,
            Opt::NoCopyRoutes => c.no_copy_routes = true,
            Opt::NoCopyAddrs => c.no_copy_addrs = true,
            Opt::Freebind => c.freebind = true,
            Opt::Ipv4Only => {
                c.ipv4_only = true;
                c.ipv6_only = false;
            }
            Opt::Ipv6Only => {
                c.ipv6_only = true;
                c.ipv4_only = false;
            }
            Opt::DhcpDns => c.dhcp_dns = true,
            Opt::NoDhcpDns => c.dhcp_dns = false,
            Opt::DhcpSearch => c.dhcp_search = true,
            Opt::NoDhcpSearch => c.dhcp_search = false,
            Opt::NoNetnsQuit => c.no_netns_quit = true,
            Opt::ConfigNet => c.config_net = true,
            Opt::NetnsOnly => {
                c.netns_only = true;
                c.userns = None;
            }
            Opt::Userns => {
                self.conf.userns = Some(self.path(value, "Invalid userns")?);
                self.conf.netns_only = false;
            }
            Opt::Netns => self.netns(value)?,
            Opt::TcpPorts => self.port_forwarding(FwdOpt::TcpPorts, value)?,
            Opt::UdpPorts => self.port_forwarding(FwdOpt::UdpPorts, value)?,
            Opt::TcpNs => self.port_forwarding(FwdOpt::TcpNs, value)?,
            Opt::UdpNs => self.port_forwarding(FwdOpt::UdpNs, value)?,
            Opt::Socket => {
                self.conf.socket = Some(self.path(value, "Invalid socket path")?);
                self.conf.fd = None;
            }
            Opt::Fd => {
                let t = self.text(value, "Invalid --fd")?;
                let fd = parse_ulong(t)
                    .filter(|&v| v <= i32::MAX as u64)
                    .ok_or_else(|| self.invalid(format!("Invalid --fd: {t}")))?;
                self.conf.fd = Some(fd as i32);
                self.conf.one_off = true;
                self.conf.socket = None;
            }
            Opt::Pcap => self.conf.pcap = Some(self.path(value, "Invalid pcap path")?),
            Opt::EbpfHelper => {
                self.conf.ebpf_helper = Some(self.path(value, "Invalid eBPF helper socket path")?);
                self.conf.ebpf = true;
            }
            Opt::EbpfCgroup => {
                self.conf.ebpf_cgroup = Some(self.path(value, "Invalid cgroup path")?);
                self.conf.ebpf = true;
            }
            Opt::OneOff => self.conf.one_off = true,
            Opt::VhostUser => self.conf.vhost_user = true,
            Opt::PrintCapabilities => return Err(ConfError::Version(crate::tap::vhost_user::print_capabilities().to_owned())),
            Opt::Runas => {
                let t = self.text(value, "Invalid --runas option")?;
                let ids = crate::isolation::parse_runas(t, &crate::isolation::SystemDb)
                    .map_err(|_| self.invalid(format!("Invalid --runas option: {t}")))?;
                self.conf.runas = Some(ids);
            }
            Opt::RepairPath
            | Opt::MigrateExit
            | Opt::MigrateNoLinger
            | Opt::ConfPath
            | Opt::ChrootFallback => {
                // Refused above (built: false); a table mistake lands here.
                return Err(self.invalid(format!("option --{} is not supported yet", spec.long)));
            }
        }
        Ok(())
    }

    /// `-t`, `-u`, `-T`, `-U`: parse the specifier with
    /// [`crate::fwd_rule::parse_spec`] and add its rules (repeated options
    /// accumulate; see [`FwdTable::add_spec`]).
    fn port_forwarding(&mut self, opt: FwdOpt, value: &OsStr) -> Result<(), ConfError> {
        let text = value.to_string_lossy().into_owned();
        let mut ctx = SpecCtx::new(opt, self.conf.mode == Mode::Pasta);
        ctx.ephemeral = self.ephemeral;
        let table = if opt.from_ns() { &mut self.conf.fwd_out } else { &mut self.conf.fwd_in };
        let r = table.add_spec(&text, ctx);
        r.map_err(|e| self.invalid(e.to_string()))?;
        self.conf.fwd_given[opt as usize] = true;
        Ok(())
    }

    /// `-m`: 0 to 65520 (upstream: "MTU %lu too large (max %lu)").
    fn mtu(&mut self, value: &OsStr) -> Result<(), ConfError> {
        let s = self.text(value, "Invalid MTU")?;
        let mtu = parse_ulong(s).ok_or_else(|| self.invalid(format!("Invalid MTU: {s}")))?;
        match u16::try_from(mtu) {
            Ok(mtu) if mtu <= DEFAULT_MTU => {
                self.conf.mtu = Some(mtu);
                Ok(())
            }
            _ => Err(self.invalid(format!("MTU {mtu} too large (max {DEFAULT_MTU})"))),
        }
    }

    /// `--max-flows N`: 1 to [`MAX_FLOWS_LIMIT`], in the bases of
    /// strtoul(3) like every number here.
    fn max_flows(&mut self, value: &OsStr) -> Result<(), ConfError> {
        let s = self.text(value, "Invalid maximum number of flows")?;
        let n = parse_ulong(s).ok_or_else(|| self.invalid(format!("Invalid maximum number of flows: {s}")))?;
        match usize::try_from(n) {
            Ok(0) => Err(self.invalid("Maximum number of flows must be at least 1")),
            Ok(n) if n <= MAX_FLOWS_LIMIT => {
                self.conf.max_flows = Some(n);
                Ok(())
            }
            _ => Err(self.invalid(format!("Maximum number of flows {n} too large (max {MAX_FLOWS_LIMIT})"))),
        }
    }

    /// `--threads N`: 1 to [`MAX_THREADS`], in the bases of strtoul(3).
    fn threads(&mut self, value: &OsStr) -> Result<(), ConfError> {
        let s = self.text(value, "Invalid number of threads")?;
        let n = parse_ulong(s)
            .ok_or_else(|| self.invalid(format!("Invalid number of threads: {s}")))?;
        match usize::try_from(n) {
            Ok(0) => Err(self.invalid("Number of threads must be at least 1")),
            Ok(n) if n <= MAX_THREADS => {
                self.conf.threads = n;
                Ok(())
            }
            _ => Err(self.invalid(format!(
                "Number of threads {n} too large (max {MAX_THREADS})"
            ))),
        }
    }

    /// `-a ADDR[/PREFIX_LEN]`, brackets allowed around the address.
    fn address(&mut self, value: &OsStr) -> Result<(), ConfError> {
        let s = self.text(value, "Invalid guest address")?;
        let bad = || self.invalid(format!("Invalid guest address: {s}"));
        let (addr_s, prefix_s) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr_s = addr_s
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr_s);
        let addr: IpAddr = addr_s.parse().map_err(|_| bad())?;
        let prefix = match prefix_s {
            None => None,
            Some(p) => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                if self.netmask_given {
                    return Err(self.invalid("Redundant prefix length specification"));
                }
                let max = if addr.is_ipv4() { 32 } else { 128 };
                match p.parse::<u8>() {
                    Ok(n) if n <= max => Some(n),
                    _ => return Err(self.invalid(format!("Invalid prefix length: {s}"))),
                }
            }
        };
        // ::ffff:a.b.c.d is IPv4, as upstream's inany addresses.
        let (addr, prefix) = match addr {
            IpAddr::V6(a6) => match a6.to_ipv4_mapped() {
                Some(a4) => match prefix {
                    None => (IpAddr::V4(a4), None),
                    Some(p) if p >= 96 => (IpAddr::V4(a4), Some(p - 96)),
                    Some(_) => return Err(self.invalid(format!("Invalid prefix length: {s}"))),
                },
                None => (addr, prefix),
            },
            IpAddr::V4(_) => (addr, prefix),
        };
        match addr {
            IpAddr::V4(a)
                if !(a.is_unspecified()
                    || a.is_broadcast()
                    || a.is_multicast()
                    || a.is_loopback()) =>
            {
                self.conf.addr4 = Some((a, prefix));
            }
            // The prefix length given for IPv6 is overridden by 64 (passt(1)).
            IpAddr::V6(a) if !(a.is_unspecified() || a.is_multicast() || a.is_loopback()) => {
                self.conf.addr6 = Some(a);
            }
            _ => return Err(bad()),
        }
        self.a_had_prefix = prefix.is_some();
        Ok(())
    }

    /// `-n MASK`: dot-decimal or bits; refused after `-a` with a prefix.
    fn netmask(&mut self, value: &OsStr) -> Result<(), ConfError> {
        if self.a_had_prefix {
            return Err(self.invalid("Redundant prefix length specification"));
        }
        let s = self.text(value, "Invalid prefix length")?;
        let len =
            parse_netmask(s).ok_or_else(|| self.invalid(format!("Invalid prefix length: {s}")))?;
        self.conf.netmask4 = Some(len);
        self.netmask_given = true;
        Ok(())
    }

    /// `-g ADDR`, for the version of the address.
    fn gateway(&mut self, value: &OsStr) -> Result<(), ConfError> {
        let s = self.text(value, "Invalid gateway address")?;
        match s.parse::<IpAddr>() {
            Ok(IpAddr::V6(a)) if !(a.is_unspecified() || a.is_loopback()) => {
                self.conf.gw6 = Some(a)
            }
            Ok(IpAddr::V4(a)) if !(a.is_unspecified() || a.is_broadcast() || a.is_loopback()) => {
                self.conf.gw4 = Some(a)
            }
            _ => return Err(self.invalid(format!("Invalid gateway address: {s}"))),
        }
        Ok(())
    }

    /// `-o ADDR`, for the version of the address.
    fn outbound(&mut self, value: &OsStr) -> Result<(), ConfError> {
        let s = self.text(value, "Invalid or redundant outbound address")?;
        match s.parse::<IpAddr>() {
            Ok(IpAddr::V6(a))
                if !(a.is_unspecified()
                    || a.is_loopback()
                    || a.to_ipv4_mapped().is_some()
                    || is_v4_compat(&a)
                    || a.is_multicast()) =>
            {
                self.conf.outbound6 = Some(a)
            }
            Ok(IpAddr::V4(a)) if !(a.is_unspecified() || a.is_broadcast() || a.is_multicast()) => {
                self.conf.outbound4 = Some(a)
            }
            _ => return Err(self.invalid(format!("Invalid or redundant outbound address: {s}"))),
        }
        Ok(())
    }

    /// `-D ADDR|none`.
    fn dns(&mut self, value: &OsStr) -> Result<(), ConfError> {
        let s = self.text(value, "Cannot use DNS address")?;
        if s == "none" {
            self.conf.dns = DnsOpt::None;
            self.conf.dns_forward4 = None;
            self.conf.dns_forward6 = None;
            self.conf.dns_host4 = None;
            self.conf.dns_host6 = None;
            return Ok(());
        }
        let addr: IpAddr = s
            .parse()
            .map_err(|_| self.invalid(format!("Cannot use DNS address {s}")))?;
        match &mut self.conf.dns {
            DnsOpt::List(list) => list.push(addr),
            other => *other = DnsOpt::List(vec![addr]),
        }
        Ok(())
    }

    /// `-S LIST|none`: white-space separated domains.
    fn search(&mut self, value: &OsStr) -> Result<(), ConfError> {
        let s = self.text(value, "Cannot use DNS search domain")?;
        if s == "none" {
            self.conf.search = SearchOpt::None;
            return Ok(());
        }
        let mut domains = Vec::new();
        for domain in s.split_whitespace() {
            if domain.len() > MAX_DNAME_LEN {
                return Err(self.invalid(format!("Cannot use DNS search domain {domain}")));
            }
            domains.push(domain.to_owned());
        }
        match &mut self.conf.search {
            SearchOpt::List(list) => list.extend(domains),
            other => *other = SearchOpt::List(domains),
        }
        Ok(())
    }

    /// `--dns-forward ADDR`.
    fn dns_forward(&mut self, value: &OsStr) -> Result<(), ConfError> {
        let s = self.text(value, "Invalid DNS forwarding address")?;
        match s.parse::<IpAddr>() {
            Ok(IpAddr::V6(a)) if !(a.is_unspecified() || a.is_loopback()) => {
                self.conf.dns_forward6 = Some(a)
            }
            Ok(IpAddr::V4(a)) if !(a.is_unspecified() || a.is_broadcast() || a.is_loopback()) => {
                self.conf.dns_forward4 = Some(a)
            }
            _ => return Err(self.invalid(format!("Invalid DNS forwarding address: {s}"))),
        }
        Ok(())
    }

    /// `--dns-host ADDR`.
    fn dns_host(&mut self, value: &OsStr) -> Result<(), ConfError> {
        let s = self.text(value, "Invalid host nameserver address")?;
        match s.parse::<IpAddr>() {
            Ok(IpAddr::V6(a)) if !a.is_unspecified() => self.conf.dns_host6 = Some(a),
            Ok(IpAddr::V4(a)) if !(a.is_unspecified() || a.is_broadcast()) => {
                self.conf.dns_host4 = Some(a)
            }
            _ => return Err(self.invalid(format!("Invalid host nameserver address: {s}"))),
        }
        Ok(())
    }

    /// A mapped address option's value: `none` (`Ok(None)`) or a unicast
    /// address that is neither unspecified nor loopback; `what` names the
    /// option in the error, as upstream ("Invalid address to remap to host").
    fn mapped_addr(&self, value: &OsStr, what: &str) -> Result<Option<IpAddr>, ConfError> {
        let s = self.text(value, what)?;
        if s == "none" {
            return Ok(None);
        }
        match s.parse::<IpAddr>() {
            Ok(a) if !(a.is_unspecified() || a.is_loopback() || a.is_multicast()) => Ok(Some(a)),
            _ => Err(self.invalid(format!("{what}: {s}"))),
        }
    }

    /// `--map-host-loopback ADDR|none` (`none` implies `--no-map-gw`).
    fn map_host_loopback(&mut self, value: &OsStr) -> Result<(), ConfError> {
        match self.mapped_addr(value, "Invalid address to remap to host")? {
            None => {
                self.conf.map_host_loopback4 = Some(None);
                self.conf.map_host_loopback6 = Some(None);
                self.conf.no_map_gw = true;
            }
            Some(IpAddr::V4(a)) => self.conf.map_host_loopback4 = Some(Some(a)),
            Some(IpAddr::V6(a)) => self.conf.map_host_loopback6 = Some(Some(a)),
        }
        Ok(())
    }

    /// `--map-guest-addr ADDR|none`.
    fn map_guest_addr(&mut self, value: &OsStr) -> Result<(), ConfError> {
        match self.mapped_addr(value, "Invalid address to remap to guest")? {
            None => {
                self.conf.map_guest_addr4 = Some(None);
                self.conf.map_guest_addr6 = Some(None);
            }
            Some(IpAddr::V4(a)) => self.conf.map_guest_addr4 = Some(Some(a)),
            Some(IpAddr::V6(a)) => self.conf.map_guest_addr6 = Some(Some(a)),
        }
        Ok(())
    }

    /// `--netns PATH|NAME`: a word without '/' is a name in /run/netns.
    fn netns(&mut self, value: &OsStr) -> Result<(), ConfError> {
        if value.is_empty() || value.len() >= PATH_MAX {
            return Err(self.invalid(format!(
                "Network namespace name/path '{}' not usable",
                value.to_string_lossy()
            )));
        }
        let has_slash = value.as_encoded_bytes().contains(&b'/');
        self.netns = Some(if has_slash {
            PathBuf::from(value)
        } else {
            PathBuf::from(NETNS_RUN_DIR).join(value)
        });
        Ok(())
    }

    /// Checks and implications after the last option, as upstream's conf()
    /// and conf_pasta_ns() do.
    fn finish(mut self, trailing: Vec<OsString>) -> Result<Conf, ConfError> {
        match self.conf.mode {
            Mode::Passt => {
                if let Some(word) = trailing.first() {
                    return Err(self.invalid(format!(
                        "Extra non-option argument: {}",
                        word.to_string_lossy()
                    )));
                }
            }
            Mode::Pasta => {
                if let Some(netns) = self.netns.take() {
                    if !trailing.is_empty() {
                        return Err(self.invalid("Both --netns and PID or command given"));
                    }
                    if self.conf.userns.is_none() {
                        self.conf.netns_only = true;
                    }
                    self.conf.target = PastaTarget::NetNs(netns);
                } else if let [word] = trailing.as_slice() {
                    match pid_word(word) {
                        Some(Ok(pid)) => self.conf.target = PastaTarget::Pid(pid),
                        Some(Err(())) => {
                            return Err(
                                self.invalid(format!("Invalid PID {}", word.to_string_lossy()))
                            )
                        }
                        None => self.spawn(trailing),
                    }
                } else {
                    self.spawn(trailing);
                }
            }
        }
        if self.conf.stats > 0 && !self.conf.foreground {
            return Err(self.invalid("Can't display statistics if not running in foreground"));
        }
        if self.conf.threads > 1 {
            if self.conf.mode == Mode::Passt {
                return Err(self
                    .invalid("--threads is for pasta only (vhost-user multi-queue is not built)"));
            }
            if self.conf.splice_only {
                return Err(self.invalid("--threads needs a tap device, not --splice-only"));
            }
            if self.conf.pcap.is_some() {
                return Err(self.invalid("--pcap captures one thread: not with --threads above 1"));
            }
        }
        let pasta = self.conf.mode == Mode::Pasta;
        if !pasta && self.conf.splice_only {
            return Err(self.invalid("--splice-only is for pasta mode only"));
        }
        if !pasta {
            self.conf.no_splice = true;
        }
        if self.conf.host_lo_to_ns_lo && self.conf.no_splice {
            return Err(self.invalid("--host-lo-to-ns-lo is incompatible with --no-splice"));
        }
        if self.conf.splice_only {
            self.conf.host_lo_to_ns_lo = true;
            self.conf.no_icmp = true;
        }
        if self.conf.no_icmp {
            self.conf.no_ndp = true;
        }
        if self.conf.config_net {
            self.conf.no_ra = true;
        }
        if pasta {
            // passt(1): "Default is none for passt and auto for pasta".
            for opt in [FwdOpt::TcpPorts, FwdOpt::UdpPorts, FwdOpt::TcpNs, FwdOpt::UdpNs] {
                if !self.conf.fwd_given[opt as usize] {
                    let mut ctx = SpecCtx::new(opt, true);
                    ctx.ephemeral = self.ephemeral;
                    let t = if opt.from_ns() { &mut self.conf.fwd_out } else { &mut self.conf.fwd_in };
                    let r = t.add_spec("auto", ctx);
                    r.map_err(|e| self.invalid(e.to_string()))?;
                }
            }
        }
        Ok(self.conf)
    }

    /// pasta's spawn form: foreground, and quiet unless debugging.
    fn spawn(&mut self, argv: Vec<OsString>) {
        self.conf.target = PastaTarget::Spawn { argv };
        self.conf.foreground = true;
        if !self.conf.debug {
            self.conf.quiet = true;
        }
    }
}

/// The host's ephemeral port range from
/// `/proc/sys/net/ipv4/ip_local_port_range` ("first<TAB>last"), or
/// [`EPHEMERAL_DEFAULT`] if it can't be read or makes no sense.
fn ephemeral_ports() -> PortRange {
    let Ok(s) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return EPHEMERAL_DEFAULT;
    };
    let mut it = s.split_whitespace().map(str::parse::<u16>);
    match (it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b))) => PortRange::new(a, b).unwrap_or(EPHEMERAL_DEFAULT),
        _ => EPHEMERAL_DEFAULT,
    }
}

/// A lone all-digit word: `Some(Ok(pid))`, or `Some(Err)` if it is too large
/// for a PID (above `INT_MAX`); `None` if it is not a number at all (a
/// command, even if it overflows 64 bits, as with upstream's strtoul()).
fn pid_word(word: &OsStr) -> Option<Result<u32, ()>> {
    let s = word.to_str()?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = s.parse().ok()?;
    Some(
        u32::try_from(n)
            .ok()
            .filter(|&p| p <= i32::MAX as u32)
            .ok_or(()),
    )
}

/// Apply the options in order; the first `-h`, `--version` or bad value wins.
fn apply_all(b: &mut Builder, events: &[Event<'_>]) -> Result<(), ConfError> {
    for e in events {
        b.apply(e.spec, e.value)?;
    }
    Ok(())
}

impl Conf {
    /// Parse a command line with upstream's options and semantics (passt(1)).
    ///
    /// `args` excludes `argv[0]`; `mode` comes from `argv[0]`. See the module
    /// documentation for how `getopt_long()` is reproduced.
    ///
    /// # Errors
    /// - [`ConfError::Help`] at the first `-h/--help`: the usage text.
    /// - [`ConfError::Version`] at the first `--version`: the version text.
    /// - [`ConfError::Invalid`] for anything refused, with the whole message
    ///   line, e.g. `pasta: unrecognized option '--x'`,
    ///   `pasta: invalid option -- 'x'`,
    ///   `pasta: option '--mtu' requires an argument`,
    ///   `pasta: MTU 70000 too large (max 65520)`,
    ///   `pasta: option --pcap is not supported yet`,
    ///   `passt: --netns is for pasta mode only`,
    ///   `passt: Extra non-option argument: x`.
    ///
    /// # Panics
    /// Never on any input.
    pub fn parse(mode: Mode, args: &[OsString]) -> Result<Conf, ConfError> {
        match command(mode).try_get_matches_from(args) {
            Ok(m) => {
                let (events, trailing) = events(&m);
                let mut b = Builder::new(mode);
                apply_all(&mut b, &events)?;
                b.finish(trailing)
            }
            Err(err) => {
                // getopt would have acted on every word before the bad one:
                // apply the longest prefix that tokenizes.
                let mut k = args.len();
                while k > 0 {
                    k -= 1;
                    let Some(prefix) = args.get(..k) else { break };
                    if let Ok(m) = command(mode).try_get_matches_from(prefix) {
                        let (events, _) = events(&m);
                        apply_all(&mut Builder::new(mode), &events)?;
                        break;
                    }
                }
                Err(ConfError::Invalid(getopt_message(mode, args, &err)))
            }
        }
    }
}

/// `--version` text, like upstream's: name and version first.
fn version(mode: Mode) -> String {
    format!(
        "{} {} (passt-rs)\n\
         A Rust reimplementation of passt and pasta (https://passt.top)\n\
         License GPL-2.0-or-later <https://www.gnu.org/licenses/old-licenses/gpl-2.0.html>\n\
         This is free software: you are free to change and redistribute it.\n\
         There is NO WARRANTY, to the extent permitted by law.\n",
        prog(mode),
        env!("CARGO_PKG_VERSION")
    )
}

/// `--help` text: synopsis and every option of this mode, one per line.
fn usage(mode: Mode) -> String {
    /// One option: the option words, then its description.
    fn opt(u: &mut String, left: &str, right: &str) {
        *u += &format!("  {left:<28} {right}\n");
    }
    /// A continuation line under the previous option.
    fn more(u: &mut String, text: &str) {
        *u += &format!("        {text}\n");
    }

    let name = prog(mode);
    let pasta = mode == Mode::Pasta;
    let guest = if pasta { "namespace" } else { "guest" };
    let mut u = String::new();
    if pasta {
        u += &format!("Usage: {name} [OPTION]... [COMMAND] [ARGS]...\n");
        u += &format!("       {name} [OPTION]... PID\n");
        u += &format!("       {name} [OPTION]... --netns [PATH|NAME]\n\n");
        u += "Without PID or --netns, run COMMAND (default: a login shell) in a new\n";
        u += "user and network namespace, connected to the host by pasta.\n";
    } else {
        u += &format!("Usage: {name} [OPTION]...\n");
    }
    u += "\n";
    let u = &mut u;
    opt(u, "-d, --debug", "Be verbose");
    opt(u, "    --trace", "Be extra verbose, implies --debug");
    opt(u, "-q, --quiet", "Don't print informational messages");
    opt(u, "-f, --foreground", "Don't run in background");
    opt(u, "-e, --stderr", "Deprecated, no effect");
    opt(u, "-l, --log-file PATH", "Log (only) to PATH");
    opt(u, "    --log-size BYTES", "Maximum size of log file");
    more(u, "default: 1 MiB");
    opt(u, "    --stats DELAY", "Display events statistics, at most every DELAY seconds");
    more(u, "requires running in foreground");
    opt(u, "-P, --pid FILE", "Write own PID to FILE once ready");
    opt(u, "    --runas UID|UID:GID", "Run as given UID, GID, which can be");
    more(u, "numeric, or login and group names");
    more(u, "default: drop to user \"nobody\"");
    opt(u, "-h, --help", "Display this help message and exit");
    opt(u, "    --version", "Show version and exit");
    if pasta {
        opt(
            u,
            "-I, --ns-ifname NAME",
            "Tap interface name in the namespace",
        );
        more(u, "default: same name as the host interface, else tap0");
    }
    if !pasta {
        opt(u, "-s, --socket PATH", "UNIX domain socket path (also --socket-path)");
        more(u, "default: probe free path from /tmp/passt_1.socket");
        opt(u, "-F, --fd FD", "Use FD as pre-opened connected socket");
        opt(u, "-1, --one-off", "Quit after handling a single client");
        opt(u, "    --vhost-user", "Enable vhost-user mode");
        opt(u, "    --print-capabilities", "Print back-end capabilities in JSON format");
    }
    opt(u, "-p, --pcap FILE", "Log tap-facing traffic to pcap FILE");
    opt(u, "-m, --mtu MTU", "Tap MTU, advertised via DHCP and NDP");
    more(u, "0: don't advertise; default: 65520");
    opt(
        u,
        "-a, --address ADDR[/LEN]",
        &format!("Assign IPv4 or IPv6 ADDR to the {guest}"),
    );
    more(u, "zero to two times (IPv4 and IPv6); default: the host's");
    opt(u, "-n, --netmask MASK", "IPv4 netmask, dot-decimal or bits");
    opt(
        u,
        "-M, --mac-addr ADDR",
        "Our MAC address; default: 9a:55:9a:55:9a:55",
    );
    opt(
        u,
        "-g, --gateway ADDR",
        "IPv4 or IPv6 gateway; default: the host's",
    );
    opt(
        u,
        "-i, --interface NAME",
        "Host interface for addresses and routes",
    );
    opt(
        u,
        "-o, --outbound ADDR",
        "Source address of outbound IPv4 or IPv6 sockets",
    );
    opt(u, "    --outbound-if4 NAME", "Bind IPv4 outbound sockets to NAME");
    more(u, "and, without -i, take IPv4 addresses and routes from it");
    opt(u, "    --outbound-if6 NAME", "Bind IPv6 outbound sockets to NAME");
    more(u, "and, without -i, take IPv6 addresses and routes from it");
    opt(
        u,
        "-D, --dns ADDR",
        "Resolver to advertise, repeatable; 'none': none",
    );
    more(u, "default: the resolvers in /etc/resolv.conf");
    opt(
        u,
        "-S, --search LIST",
        "Space-separated search domains; 'none': none",
    );
    more(u, "default: the search list in /etc/resolv.conf");
    opt(
        u,
        "-H, --hostname NAME",
        &format!("Hostname for the {guest} (DHCP option 12)"),
    );
    opt(
        u,
        "    --fqdn NAME",
        &format!("FQDN for the {guest} (DHCP 81, DHCPv6 39)"),
    );
    if pasta {
        opt(u, "    --threads N", "Worker threads, one per tap queue");
        more(u, &format!("(passt-rs extension) 1 to {MAX_THREADS}; default: 1"));
    } else {
        opt(u, "    --threads N", "1 only (passt-rs extension, pasta's)");
    }
    if pasta {
        opt(
            u,
            "    --dhcp-dns",
            "Advertise resolvers via DHCP, DHCPv6, NDP",
        );
        opt(u, "    --dhcp-search", "Advertise the search list likewise");
    } else {
        opt(u, "    --no-dhcp-dns", "Don't advertise resolvers");
        opt(u, "    --no-dhcp-search", "Don't advertise the search list");
    }
    opt(
        u,
        "    --map-host-loopback ADDR",
        "Map ADDR to the host's loopback",
    );
    more(u, "'none': map nothing; default: the gateway address");
    opt(
        u,
        "    --dns-forward ADDR",
        "Forward DNS queries sent to ADDR",
    );
    opt(
        u,
        "    --dns-host ADDR",
        "Host resolver for --dns-forward queries",
    );
    more(u, "default: the first resolver in /etc/resolv.conf");
    opt(u, "    --no-tcp", "Disable the TCP handler");
    opt(u, "    --no-udp", "Disable the UDP handler");
    opt(
        u,
        "    --no-icmp",
        "Disable the ICMP/ICMPv6 handler, implies --no-ndp",
    );
    opt(u, "    --no-dhcp", "Disable the DHCP server");
    opt(u, "    --no-ndp", "Disable NDP responses");
    opt(u, "    --no-dhcpv6", "Disable the DHCPv6 server");
    opt(u, "    --no-ra", "Disable router advertisements");
    opt(
        u,
        "    --no-map-gw",
        "Don't map the gateway address to the host",
    );
    opt(u, "    --freebind", "Bind -t/-u sockets to any address");
    more(u, "also one not configured on the host (yet)");
    opt(u, "-4, --ipv4-only", "IPv4 only");
    opt(u, "-6, --ipv6-only", "IPv6 only");
    let default = if pasta { "auto" } else { "none" };
    opt(u, "-t, --tcp-ports SPEC", "TCP port forwarding to the guest or namespace");
    more(u, "SPEC: none, all, auto (pasta), [ADDR[%IF]/]PORTS, ~PORTS,");
    more(u, "PORTS[:[TOADDR/]TOPORTS]; see passt(1)");
    more(u, &format!("default: {default}"));
    opt(u, "-u, --udp-ports SPEC", "UDP port forwarding, SPEC as -t");
    more(u, &format!("default: {default}"));
    opt(u, "    --map-guest-addr ADDR", "Address standing for the host's");
    more(u, "address assigned to the guest; 'none' for none");
    opt(u, "    --no-splice", "No bypass of the tap for local traffic");
    opt(u, "    --max-flows N", "Flow table capacity (passt-rs extension)");
    more(u, &format!("new flows beyond it are refused; default: {}", crate::daemon::FLOW_CAPACITY));
    if pasta {
        opt(u, "-T, --tcp-ns SPEC", "TCP forwarding to the init namespace");
        more(u, "SPEC as -t, no address; default: auto");
        opt(u, "-U, --udp-ns SPEC", "UDP forwarding to the init namespace");
        more(u, "SPEC as -t, no address; default: auto");
        opt(u, "    --splice-only", "No tap device: only spliced local traffic");
        opt(u, "    --host-lo-to-ns-lo", "Spliced connections to host loopback");
        more(u, "reach loopback in the namespace");
        opt(u, "    --ebpf", "Load the eBPF fast paths if permitted");
        more(u, "else log why and keep to splice()");
        opt(u, "    --ebpf-helper PATH", "Privileged passt-ebpf-helper socket");
        more(u, "loads the programs for us; implies --ebpf");
        opt(u, "    --ebpf-cgroup PATH", "cgroup v2 whose sockets may be");
        more(u, "short-circuited; default: the cgroup2 root");
        opt(u, "    --userns NSPATH", "User namespace to join");
        opt(u, "    --netns PATH|NAME", "Network namespace to join");
        opt(
            u,
            "    --netns-only",
            "Don't join or create a user namespace",
        );
        more(u, "implied by --netns without --userns");
        opt(
            u,
            "    --no-netns-quit",
            "Don't quit when the namespace goes away",
        );
        opt(
            u,
            "    --config-net",
            "Configure the tap interface in the namespace",
        );
        opt(u, "    --no-copy-routes", "With --config-net: default route only");
        opt(u, "    --no-copy-addrs", "With --config-net: one address only");
        opt(
            u,
            "    --ns-mac-addr ADDR",
            "MAC address of the tap interface",
        );
    }
    *u += "\nRecognised but not supported yet:\n";
    let mut line = String::from(" ");
    for spec in OPTIONS
        .iter()
        .filter(|s| !s.built && s.only.is_none_or(|m| m == mode))
    {
        let word = format!(" --{}", spec.long);
        if line.len() + word.len() > 78 {
            *u += &line;
            *u += "\n";
            line = String::from(" ");
        }
        line += &word;
    }
    *u += &line;
    *u += "\n";
    std::mem::take(u)
}

/// What [`resolve`] needs from an address type, for code shared by IPv4 and
/// IPv6.
trait Family: Copy + Eq {
    /// `Some` if `ip` is of this version.
    fn from_ip(ip: IpAddr) -> Option<Self>;
    /// 127.0.0.0/8 or ::1.
    fn loopback(&self) -> bool;
}

impl Family for Ipv4Addr {
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }
    fn loopback(&self) -> bool {
        self.is_loopback()
    }
}

impl Family for Ipv6Addr {
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }
    fn loopback(&self) -> bool {
        self.is_loopback()
    }
}

/// The address with the longest prefix, the first one among equals (as
/// upstream's `nl_addr_get()` picks the host address to copy).
fn longest_prefix<A: Copy>(addrs: impl Iterator<Item = (A, u8)>) -> Option<(A, u8)> {
    let mut best: Option<(A, u8)> = None;
    for (addr, len) in addrs {
        if best.is_none_or(|(_, best_len)| len > best_len) {
            best = Some((addr, len));
        }
    }
    best
}

/// Resolved DNS settings of one IP version.
struct DnsOut<A> {
    dns: Vec<A>,
    dns_match: Option<A>,
    dns_host: Option<A>,
}

/// DNS for one IP version; see [`resolve`] for the rules.
fn resolve_dns<A: Family>(
    opt: &DnsOpt,
    forward: Option<A>,
    explicit_host: Option<A>,
    map: Option<A>,
    resolv: &Resolv,
    advertise: bool,
) -> DnsOut<A> {
    let host_ns: Vec<A> = resolv
        .nameservers
        .iter()
        .filter_map(|&ip| A::from_ip(ip))
        .collect();
    let user: Vec<A> = match opt {
        DnsOpt::List(list) => list.iter().filter_map(|&ip| A::from_ip(ip)).collect(),
        DnsOpt::Host | DnsOpt::None => Vec::new(),
    };
    let mut dns_match = forward;
    let mut dns_host = explicit_host;
    let mut dns = Vec::new();
    match opt {
        DnsOpt::None => {}
        DnsOpt::List(_) if !user.is_empty() => dns = user,
        DnsOpt::List(_) | DnsOpt::Host => {
            for &ns in &host_ns {
                let advertised = if ns.loopback() || Some(ns) == map {
                    if let Some(m) = dns_match {
                        // --dns-forward given (or a mapping made already):
                        // advertise that address instead.
                        m
                    } else if let Some(m) = map {
                        dns_match = Some(m);
                        if dns_host.is_none() {
                            dns_host = Some(ns);
                        }
                        m
                    } else {
                        // Unreachable from the guest: no mapping to the host.
                        continue;
                    }
                } else {
                    ns
                };
                if !dns.contains(&advertised) {
                    dns.push(advertised);
                }
            }
        }
    }
    if dns_match.is_some() && dns_host.is_none() {
        dns_host = host_ns.first().copied();
    }
    if !advertise {
        dns.clear();
    }
    DnsOut {
        dns,
        dns_match,
        dns_host,
    }
}

/// `--map-host-loopback`, else the gateway unless `--no-map-gw`.
fn host_loopback_map<A: Copy>(
    given: Option<Option<A>>,
    no_map_gw: bool,
    gw: Option<A>,
) -> Option<A> {
    match given {
        Some(choice) => choice,
        None if no_map_gw => None,
        None => gw,
    }
}

/// IPv4 half of [`resolve`]: settings, template interface name, local mode.
fn resolve4(
    conf: &Conf,
    hif: Option<&HostIf<Ipv4Addr>>,
    resolv: &Resolv,
) -> (Ip4Conf, String, bool) {
    let host_best = hif.and_then(|h| longest_prefix(h.addrs.iter().copied()));
    let template = hif.filter(|_| conf.addr4.is_some() || host_best.is_some());
    let local = template.is_none();

    let (addr, prefix_len) = match (conf.addr4, host_best) {
        (Some((a, Some(len))), _) => (a, len),
        (Some((a, None)), _) => (a, conf.netmask4.unwrap_or_else(|| class_prefix_len(a))),
        (None, Some((a, len))) => (a, conf.netmask4.unwrap_or(len)),
        (None, None) => (LOCAL_ADDR4, conf.netmask4.unwrap_or(LOCAL_PREFIX_LEN4)),
    };
    let gw = conf
        .gw4
        .or_else(|| template.and_then(|h| h.gw))
        .unwrap_or(if local {
            LOCAL_GW4
        } else {
            Ipv4Addr::UNSPECIFIED
        });
    let map = host_loopback_map(
        conf.map_host_loopback4,
        conf.no_map_gw,
        Some(gw).filter(|g| !g.is_unspecified()),
    );
    let dns = resolve_dns(
        &conf.dns,
        conf.dns_forward4,
        conf.dns_host4,
        map,
        resolv,
        conf.dhcp_dns,
    );

    let single = vec![(addr, prefix_len)];
    let copy_addrs = match template {
        Some(h) if conf.addr4.is_none() && conf.netmask4.is_none() && !conf.no_copy_addrs => {
            let all: Vec<_> = h
                .addrs
                .iter()
                .copied()
                .filter(|(a, _)| !a.is_link_local())
                .collect();
            if all.is_empty() {
                single
            } else {
                all
            }
        }
        _ => single,
    };
    let default_route = vec![Route {
        dst: Ipv4Addr::UNSPECIFIED,
        prefix_len: 0,
        gw: Some(gw),
        metric: None,
    }];
    let copy_routes = match template {
        Some(h) if conf.gw4.is_none() && !conf.no_copy_routes => h.routes.clone(),
        _ => default_route,
    };
    let ip4 = Ip4Conf {
        addr,
        prefix_len,
        gw,
        dns: dns.dns,
        dns_match: dns.dns_match,
        dns_host: dns.dns_host,
        map_host_loopback: map,
        map_guest_addr: conf.map_guest_addr4.flatten(),
        outbound: conf.outbound4,
        copy_addrs,
        copy_routes,
    };
    (
        ip4,
        template.map(|h| h.name.clone()).unwrap_or_default(),
        local,
    )
}

/// IPv6 half of [`resolve`]: settings and template interface name.
fn resolve6(conf: &Conf, hif: Option<&HostIf<Ipv6Addr>>, resolv: &Resolv) -> (Ip6Conf, String) {
    let global = |h: &HostIf<Ipv6Addr>| {
        longest_prefix(h.addrs.iter().copied().filter(|(a, _)| !is_link_local6(a)))
    };
    let template = hif.filter(|h| conf.addr6.is_some() || global(h).is_some());

    let addr = conf
        .addr6
        .or_else(|| template.and_then(global).map(|(a, _)| a))
        .unwrap_or(Ipv6Addr::UNSPECIFIED);
    let gw = conf
        .gw6
        .or_else(|| template.and_then(|h| h.gw))
        .unwrap_or(LOCAL_GW6);
    let our_ll = if is_link_local6(&gw) {
        gw
    } else {
        template
            .and_then(|h| {
                longest_prefix(h.addrs.iter().copied().filter(|(a, _)| is_link_local6(a)))
            })
            .map_or(LOCAL_GW6, |(a, _)| a)
    };
    let map = host_loopback_map(conf.map_host_loopback6, conf.no_map_gw, Some(gw));
    let dns = resolve_dns(
        &conf.dns,
        conf.dns_forward6,
        conf.dns_host6,
        map,
        resolv,
        conf.dhcp_dns,
    );

    let single = if addr.is_unspecified() {
        Vec::new()
    } else {
        vec![(addr, PREFIX_LEN6)]
    };
    let copy_addrs = match template {
        Some(h) if conf.addr6.is_none() && !conf.no_copy_addrs => h
            .addrs
            .iter()
            .copied()
            .filter(|(a, _)| !is_link_local6(a))
            .collect(),
        _ => single,
    };
    let default_route = vec![Route {
        dst: Ipv6Addr::UNSPECIFIED,
        prefix_len: 0,
        gw: Some(gw),
        metric: None,
    }];
    let copy_routes = match template {
        Some(h) if conf.gw6.is_none() && !conf.no_copy_routes => h.routes.clone(),
        _ => default_route,
    };
    let ip6 = Ip6Conf {
        addr,
        prefix_len: PREFIX_LEN6,
        gw,
        our_ll,
        dns: dns.dns,
        dns_match: dns.dns_match,
        dns_host: dns.dns_host,
        map_host_loopback: map,
        map_guest_addr: conf.map_guest_addr6.flatten(),
        outbound: conf.outbound6,
        copy_addrs,
        copy_routes,
    };
    (ip6, template.map(|h| h.name.clone()).unwrap_or_default())
}

/// Resolve the parsed options against the host: what the guest or namespace
/// gets (passt(1): `-a`, `-n`, `-g`, `-D`, `-S`, `--dns-forward`,
/// `--dns-host`, `--map-host-loopback`, `--no-map-gw`, NOTES).
///
/// `host` holds the template interface of each IP version, already chosen
/// (with `-i` applied) by host discovery; `resolv` is /etc/resolv.conf.
///
/// IPv4 (unless `-6`):
/// - The host interface is a template if it has an address (or `-a` was
///   given). Address: `-a`, else the host address with the longest prefix
///   (the first among equals). Prefix length: from `-a ADDR/LEN`, else `-n`,
///   else the host's for a host address, else the address class for `-a`.
///   Gateway: `-g`, else the host's default gateway, else unspecified.
/// - No template: local mode, 169.254.2.1/16 with gateway 169.254.2.2,
///   `local_mode4`; `-a`, `-n` and `-g` still apply ("unless configured
///   otherwise", passt(1) NOTES).
///
/// IPv6 (unless `-4`):
/// - The host interface is a template if it has a global address (or `-a`).
///   Address: `-a`, else the host's global address with the longest prefix;
///   prefix length 64. Gateway: `-g`, else the host's, else fe80::1. Our
///   link-local address: the gateway if link-local, else the host
///   interface's link-local address, else fe80::1.
/// - No template: local mode, no address (unspecified), gateway fe80::1
///   (or `-g`, `-a`).
///
/// Both versions:
/// - `map_host_loopback`: `--map-host-loopback`, else the gateway unless
///   `--no-map-gw` (and unless the gateway is unspecified).
/// - Resolvers: `-D` addresses of that version as given; with no `-D` of that
///   version (or no `-D`), the resolv.conf nameservers of that version. A
///   nameserver that is loopback, or equal to the mapped address, cannot be
///   reached as such: the `--dns-forward` address is advertised instead if
///   given, else the mapped address, which becomes `dns_match` with that
///   nameserver as `dns_host`; without a mapping it is left out. `-D none`:
///   nothing. Duplicates are dropped. The list is empty unless `dhcp_dns`.
/// - `dns_match` from `--dns-forward`; `dns_host`: `--dns-host`, else (when
///   `dns_match` is set) the first resolv.conf nameserver of that version.
/// - `copy_addrs` (for `--config-net`): with `-a` (or `-n`, IPv4),
///   `--no-copy-addrs`, or in local mode, just the assigned address; else
///   every non-link-local address of the host interface. `copy_routes`: with
///   `-g`, `--no-copy-routes`, or in local mode, just a default route via the
///   gateway; else every route of the host interface.
///
/// MTU: `mtu` is `-m` or 65520; `advertise_mtu` is `None` with `-m 0`. An
/// MTU below 68 with IPv4, or below 1280 with IPv6, is logged as a warning,
/// as upstream does; nothing else has side effects.
///
/// Differences from upstream's code (all within what passt(1) says): `-n`
/// also applies to a host address; `-a`/`-g` also apply in local mode; when
/// a loopback resolver creates the mapping, `dns_host` is that resolver, not
/// the first one listed; `dns_host` defaults to the first resolver even when
/// `-D` was given; the search list given with `-S` is split on white space.
///
/// # Errors
/// None today: every combination of options and host facts resolves (an
/// `-i` or `--outbound-if4/6` naming no interface fails before, in
/// [`crate::host::discover`]).
///
/// # Panics
/// Never.
pub fn resolve(conf: &Conf, host: &HostNet, resolv: &Resolv) -> Result<NetConf, ConfError> {
    let (ip4, ifname4, local_mode4) = if conf.ipv6_only {
        (None, String::new(), false)
    } else {
        let (ip4, name, local) = resolve4(conf, host.v4.as_ref(), resolv);
        (Some(ip4), name, local)
    };
    let (ip6, ifname6) = if conf.ipv4_only {
        (None, String::new())
    } else {
        let (ip6, name) = resolve6(conf, host.v6.as_ref(), resolv);
        (Some(ip6), name)
    };

    let mtu = conf.mtu.unwrap_or(DEFAULT_MTU);
    if mtu != 0 && ip4.is_some() && mtu < IPV4_MIN_MTU {
        log::warn!("MTU {mtu} is too small for IPv4 (minimum {IPV4_MIN_MTU})");
    }
    if mtu != 0 && ip6.is_some() && mtu < IPV6_MIN_MTU {
        log::warn!("MTU {mtu} is too small for IPv6 (minimum {IPV6_MIN_MTU})");
    }

    let search = if conf.dhcp_search {
        match &conf.search {
            SearchOpt::Host => resolv.search.clone(),
            SearchOpt::None => Vec::new(),
            SearchOpt::List(list) => list.clone(),
        }
    } else {
        Vec::new()
    };

    Ok(NetConf {
        ifname4,
        ifname6,
        ip4,
        ip6,
        mtu,
        advertise_mtu: (mtu != 0).then_some(mtu),
        our_mac: conf.our_mac,
        search,
        hostname: conf.hostname.clone(),
        fqdn: conf.fqdn.clone(),
        local_mode4,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn pasta(words: &[&str]) -> Result<Conf, ConfError> {
        Conf::parse(Mode::Pasta, &os(words))
    }

    fn passt(words: &[&str]) -> Result<Conf, ConfError> {
        Conf::parse(Mode::Passt, &os(words))
    }

    fn ok(r: Result<Conf, ConfError>) -> Conf {
        match r {
            Ok(c) => c,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }

    fn invalid(r: Result<Conf, ConfError>) -> String {
        match r {
            Err(ConfError::Invalid(msg)) => msg,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().expect("test address")
    }

    // ---- defaults and the three pasta forms ----

    #[test]
    fn passt_defaults() {
        let c = ok(passt(&[]));
        assert_eq!(c.mode, Mode::Passt);
        assert_eq!(c.our_mac, [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55]);
        assert!(c.dhcp_dns && c.dhcp_search);
        assert!(!c.foreground && !c.quiet && !c.debug);
        assert_eq!(c.mtu, None);
        assert_eq!(c.dns, DnsOpt::Host);
        assert_eq!(c.search, SearchOpt::Host);
        assert_eq!(c.target, PastaTarget::Spawn { argv: vec![] });
    }

    #[test]
    fn log_size_defaults_to_1_mib_and_takes_strtoul_numbers() {
        assert_eq!(ok(passt(&[])).log_size, 1 << 20);
        assert_eq!(ok(passt(&["-l", "/tmp/l", "--log-size", "65536"])).log_size, 65536);
        assert_eq!(ok(passt(&["--log-size", "0x10000"])).log_size, 65536);
        assert_eq!(ok(pasta(&["--log-size", "40960", "--", "true"])).log_size, 40960);
    }

    #[test]
    fn log_size_junk_or_below_minimum_is_refused() {
        for bad in ["40959", "0", "1k", "", "-65536", "65536 ", "99999999999999999999999"] {
            assert_eq!(invalid(passt(&["--log-size", bad])), format!("passt: Invalid --log-size: {bad}"));
        }
    }

    #[test]
    fn stats_needs_foreground_and_a_number_of_seconds() {
        assert_eq!(ok(passt(&[])).stats, 0);
        assert_eq!(ok(passt(&["-f", "--stats", "2"])).stats, 2);
        assert_eq!(ok(passt(&["--stats", "2", "-f"])).stats, 2);
        // pasta's spawn form runs in the foreground.
        assert_eq!(ok(pasta(&["--stats", "1", "--", "true"])).stats, 1);
        assert_eq!(invalid(passt(&["--stats", "1"])), "passt: Can't display statistics if not running in foreground");
        assert_eq!(
            invalid(pasta(&["--stats", "1", "1234"])),
            "pasta: Can't display statistics if not running in foreground"
        );
        for bad in ["x", "-1", "1.5", ""] {
            assert_eq!(invalid(passt(&["-f", "--stats", bad])), format!("passt: Invalid --stats: {bad}"));
        }
    }

    #[test]
    fn pasta_without_arguments_spawns_shell_in_foreground_quietly() {
        let c = ok(pasta(&[]));
        assert!(!c.dhcp_dns && !c.dhcp_search);
        assert_eq!(c.target, PastaTarget::Spawn { argv: vec![] });
        assert!(c.foreground);
        assert!(c.quiet);
    }

    #[test]
    fn pasta_spawn_with_debug_is_not_quiet() {
        let c = ok(pasta(&["-d"]));
        assert!(c.foreground && c.debug && !c.quiet);
        let c = ok(pasta(&["--trace"]));
        assert!(c.trace && c.debug && !c.quiet);
    }

    #[test]
    fn pasta_lone_number_is_pid_without_implied_foreground() {
        let c = ok(pasta(&["-q", "1234"]));
        assert_eq!(c.target, PastaTarget::Pid(1234));
        assert!(!c.foreground);
        assert!(!c.netns_only);
    }

    #[test]
    fn pasta_pid_above_int_max_is_refused() {
        assert_eq!(
            invalid(pasta(&["2147483648"])),
            "pasta: Invalid PID 2147483648"
        );
        assert_eq!(
            ok(pasta(&["2147483647"])).target,
            PastaTarget::Pid(2147483647)
        );
    }

    #[test]
    fn pasta_command_arguments_are_verbatim() {
        let c = ok(pasta(&["-f", "sh", "-c", "--debug", "-x", "--bogus"]));
        assert_eq!(
            c.target,
            PastaTarget::Spawn {
                argv: os(&["sh", "-c", "--debug", "-x", "--bogus"])
            }
        );
        assert!(!c.debug);
    }

    #[test]
    fn pasta_number_with_more_words_is_a_command() {
        let c = ok(pasta(&["1234", "5"]));
        assert_eq!(
            c.target,
            PastaTarget::Spawn {
                argv: os(&["1234", "5"])
            }
        );
    }

    #[test]
    fn pasta_non_numeric_single_word_is_a_command() {
        for word in ["12a", "+12", "", "-"] {
            let c = ok(pasta(&[word]));
            assert_eq!(
                c.target,
                PastaTarget::Spawn { argv: os(&[word]) },
                "{word:?}"
            );
        }
    }

    #[test]
    fn double_dash_ends_options() {
        let c = ok(pasta(&["-d", "--", "-f", "--netns", "x"]));
        assert_eq!(
            c.target,
            PastaTarget::Spawn {
                argv: os(&["-f", "--netns", "x"])
            }
        );
        let c = ok(pasta(&["--", "77"]));
        assert_eq!(c.target, PastaTarget::Pid(77));
        let c = ok(pasta(&["--"]));
        assert_eq!(c.target, PastaTarget::Spawn { argv: vec![] });
    }

    #[test]
    fn non_utf8_command_words_are_kept() {
        let word = OsString::from_vec(vec![b'a', 0xff, b'b']);
        let c = ok(Conf::parse(
            Mode::Pasta,
            &[OsString::from("cmd"), word.clone()],
        ));
        assert_eq!(
            c.target,
            PastaTarget::Spawn {
                argv: vec![OsString::from("cmd"), word]
            }
        );
    }

    #[test]
    fn netns_name_is_under_run_netns_and_implies_netns_only() {
        let c = ok(pasta(&["--netns", "ctr1"]));
        assert_eq!(
            c.target,
            PastaTarget::NetNs(PathBuf::from("/run/netns/ctr1"))
        );
        assert!(c.netns_only);
        assert!(!c.foreground && !c.quiet);
    }

    #[test]
    fn netns_path_is_kept_and_userns_cancels_netns_only() {
        let c = ok(pasta(&[
            "--netns=/run/user/1000/netns/x",
            "--userns",
            "/proc/1/ns/user",
        ]));
        assert_eq!(
            c.target,
            PastaTarget::NetNs(PathBuf::from("/run/user/1000/netns/x"))
        );
        assert_eq!(c.userns, Some(PathBuf::from("/proc/1/ns/user")));
        assert!(!c.netns_only);
    }

    #[test]
    fn netns_with_command_or_pid_is_refused() {
        assert_eq!(
            invalid(pasta(&["--netns", "x", "sh"])),
            "pasta: Both --netns and PID or command given"
        );
        assert_eq!(
            invalid(pasta(&["--netns", "x", "42"])),
            "pasta: Both --netns and PID or command given"
        );
    }

    #[test]
    fn netns_only_and_userns_last_one_wins() {
        let c = ok(pasta(&["--userns", "/u", "--netns-only", "42"]));
        assert!(c.netns_only);
        assert_eq!(c.userns, None);
        let c = ok(pasta(&["--netns-only", "--userns", "/u", "42"]));
        assert!(!c.netns_only);
        assert_eq!(c.userns, Some(PathBuf::from("/u")));
    }

    #[test]
    fn passt_refuses_non_option_arguments() {
        assert_eq!(
            invalid(passt(&["-f", "foo", "bar"])),
            "passt: Extra non-option argument: foo"
        );
        assert_eq!(
            invalid(passt(&["--", "-f"])),
            "passt: Extra non-option argument: -f"
        );
    }

    // ---- tokenizing like getopt_long ----

    #[test]
    fn long_options_take_values_with_equals_or_next_word() {
        assert_eq!(ok(pasta(&["--mtu=1500"])).mtu, Some(1500));
        assert_eq!(ok(pasta(&["--mtu", "1500"])).mtu, Some(1500));
    }

    #[test]
    fn short_options_take_attached_or_next_word() {
        assert_eq!(ok(pasta(&["-m1500"])).mtu, Some(1500));
        assert_eq!(ok(pasta(&["-m", "1500"])).mtu, Some(1500));
    }

    #[test]
    fn short_flags_bundle() {
        let c = ok(passt(&["-fd"]));
        assert!(c.foreground && c.debug);
        let c = ok(passt(&["-fdm1400"]));
        assert!(c.foreground && c.debug);
        assert_eq!(c.mtu, Some(1400));
        let c = ok(passt(&["-f4m", "1400"]));
        assert!(c.foreground && c.ipv4_only);
        assert_eq!(c.mtu, Some(1400));
    }

    #[test]
    fn unambiguous_long_prefixes_are_accepted() {
        let c = ok(passt(&[
            "--fore",
            "--deb",
            "--mt",
            "1280",
            "--no-ic",
            "--addr=10.1.2.3",
        ]));
        assert!(c.foreground && c.debug && c.no_icmp);
        assert_eq!(c.mtu, Some(1280));
        assert_eq!(c.addr4, Some((v4("10.1.2.3"), None)));
    }

    #[test]
    fn exact_long_name_wins_over_longer_names() {
        // --no-dhcp is also a prefix of --no-dhcp-dns, --no-dhcpv6...
        let c = ok(passt(&["--no-dhcp"]));
        assert!(c.no_dhcp && c.dhcp_dns && !c.no_dhcpv6);
        // --netns is also a prefix of --netns-only.
        let c = ok(pasta(&["--netns", "x"]));
        assert_eq!(c.target, PastaTarget::NetNs(PathBuf::from("/run/netns/x")));
    }

    #[test]
    fn ambiguous_prefix_lists_possibilities() {
        assert_eq!(
            invalid(passt(&["--no-dhcp-"])),
            "passt: option '--no-dhcp-' is ambiguous; possibilities: '--no-dhcp-dns' '--no-dhcp-search'"
        );
        assert_eq!(
            invalid(pasta(&["--ma", "x"])),
            "pasta: option '--ma' is ambiguous; possibilities: '--mac-addr' '--map-host-loopback' '--map-guest-addr' '--max-flows'"
        );
    }

    #[test]
    fn socket_path_is_the_same_option_as_socket() {
        assert_eq!(ok(passt(&["--sock", "/tmp/s"])).socket, Some(PathBuf::from("/tmp/s")));
        assert_eq!(ok(passt(&["--socket-path=/tmp/s"])).socket, Some(PathBuf::from("/tmp/s")));
        assert_eq!(invalid(passt(&["-s", ""])), "passt: Invalid socket path: ");
    }

    #[test]
    fn fd_takes_c_numbers_and_implies_one_off() {
        for (w, fd) in [("5", 5), ("0x10", 16), ("010", 8), ("0", 0)] {
            let c = ok(passt(&["-F", w]));
            assert_eq!((c.fd, c.one_off), (Some(fd), true), "{w}");
        }
        for w in ["", "x", "-1", "5x", "0x", "2147483648", "09"] {
            assert_eq!(invalid(passt(&["--fd", w])), format!("passt: Invalid --fd: {w}"));
        }
        // The later of --fd and --socket wins, as upstream.
        let c = ok(passt(&["-F", "5", "-s", "/tmp/s"]));
        assert_eq!((c.fd, c.socket.as_deref()), (None, Some(std::path::Path::new("/tmp/s"))));
        assert!(c.one_off, "-F implied --one-off");
        assert_eq!(ok(passt(&["-s", "/tmp/s", "-F", "5"])).socket, None);
    }

    #[test]
    fn passt_back_end_options() {
        let c = ok(passt(&["-1", "--vhost-user", "-p", "/tmp/x.pcap"]));
        assert!(c.one_off && c.vhost_user);
        assert_eq!(c.pcap, Some(PathBuf::from("/tmp/x.pcap")));
        assert_eq!(ok(pasta(&["-p", "x.pcap"])).pcap, Some(PathBuf::from("x.pcap")));
        match passt(&["--print-capabilities", "--bogus-later"]) {
            Err(ConfError::Version(v)) => assert_eq!(v, "{\n  \"type\": \"net\"\n}\n"),
            other => panic!("{other:?}"),
        }
        assert_eq!(invalid(pasta(&["--vhost-user"])), "pasta: --vhost-user is for passt mode only");
        assert_eq!(invalid(pasta(&["-1"])), "pasta: --one-off is for passt mode only");
    }

    #[test]
    fn unknown_long_option_uses_getopt_wording() {
        assert_eq!(invalid(pasta(&["--x"])), "pasta: unrecognized option '--x'");
        assert_eq!(
            invalid(passt(&["-f", "--bogus=1"])),
            "passt: unrecognized option '--bogus=1'"
        );
    }

    #[test]
    fn unknown_short_option_uses_getopt_wording() {
        assert_eq!(invalid(pasta(&["-x"])), "pasta: invalid option -- 'x'");
        assert_eq!(invalid(passt(&["-fx"])), "passt: invalid option -- 'x'");
        // '=' after a flag is just another (invalid) option letter.
        assert_eq!(invalid(passt(&["-d=1"])), "passt: invalid option -- '='");
    }

    #[test]
    fn missing_argument_uses_getopt_wording() {
        assert_eq!(
            invalid(pasta(&["--mtu"])),
            "pasta: option '--mtu' requires an argument"
        );
        assert_eq!(
            invalid(pasta(&["-f", "--mt"])),
            "pasta: option '--mtu' requires an argument"
        );
        assert_eq!(
            invalid(pasta(&["-m"])),
            "pasta: option requires an argument -- 'm'"
        );
        assert_eq!(
            invalid(pasta(&["-fm"])),
            "pasta: option requires an argument -- 'm'"
        );
    }

    #[test]
    fn flag_with_attached_value_is_refused() {
        assert_eq!(
            invalid(pasta(&["--debug=1"])),
            "pasta: option '--debug' doesn't allow an argument"
        );
        assert_eq!(
            invalid(pasta(&["--deb=1"])),
            "pasta: option '--debug' doesn't allow an argument"
        );
    }

    #[test]
    fn option_argument_may_start_with_dash() {
        assert_eq!(
            invalid(pasta(&["--mtu", "--debug"])),
            "pasta: Invalid MTU: --debug"
        );
        assert_eq!(invalid(pasta(&["-m", "--"])), "pasta: Invalid MTU: --");
    }

    #[test]
    fn non_utf8_option_value_is_refused_clearly() {
        let bad = OsString::from_vec(vec![b'1', 0xfe]);
        let msg = invalid(Conf::parse(Mode::Pasta, &[OsString::from("-m"), bad]));
        assert!(msg.starts_with("pasta: Invalid MTU: 1"), "{msg}");
    }

    #[test]
    fn last_value_wins() {
        let c = ok(passt(&[
            "-m",
            "1000",
            "--mtu",
            "1500",
            "-M",
            "02:00:00:00:00:01",
            "-M",
            "02:00:00:00:00:02",
        ]));
        assert_eq!(c.mtu, Some(1500));
        assert_eq!(c.our_mac, [2, 0, 0, 0, 0, 2]);
    }

    // ---- --version and --help ----

    fn version_text(r: Result<Conf, ConfError>) -> String {
        match r {
            Err(ConfError::Version(v)) => v,
            other => panic!("expected Version, got {other:?}"),
        }
    }

    #[test]
    fn version_names_program_and_crate_version() {
        let v = version_text(pasta(&["--version"]));
        assert!(
            v.starts_with(&format!("pasta {} (passt-rs)\n", env!("CARGO_PKG_VERSION"))),
            "{v}"
        );
        let v = version_text(passt(&["--vers"]));
        assert!(
            v.starts_with(&format!("passt {} (passt-rs)\n", env!("CARGO_PKG_VERSION"))),
            "{v}"
        );
    }

    #[test]
    fn version_wins_among_valid_options() {
        version_text(pasta(&[
            "-f",
            "--mtu",
            "1500",
            "--version",
            "-d",
            "--netns",
            "x",
        ]));
        version_text(passt(&["-fd", "--version"]));
    }

    #[test]
    fn version_wins_over_later_errors_only() {
        version_text(pasta(&["--version", "--bogus"]));
        version_text(pasta(&["-d", "--version", "-x"]));
        version_text(pasta(&["--version", "--mtu"]));
        version_text(pasta(&["--version", "-m", "99999"]));
        assert_eq!(
            invalid(pasta(&["--bogus", "--version"])),
            "pasta: unrecognized option '--bogus'"
        );
        assert_eq!(
            invalid(pasta(&["-m", "99999", "--version"])),
            "pasta: MTU 99999 too large (max 65520)"
        );
    }

    #[test]
    fn value_error_before_unknown_option_is_reported_first() {
        assert_eq!(
            invalid(pasta(&["-m", "x", "--bogus"])),
            "pasta: Invalid MTU: x"
        );
    }

    #[test]
    fn help_after_a_bad_value_is_not_reached() {
        assert_eq!(invalid(pasta(&["-m", "x", "-h"])), "pasta: Invalid MTU: x");
    }

    #[test]
    fn arbitrary_words_never_panic_and_errors_name_the_program() {
        let words: Vec<OsString> = [
            "-",
            "--",
            "-m",
            "--mtu",
            "--mtu=",
            "1500",
            "-fdm",
            "--net",
            "--netns",
            "x",
            "--version",
            "-h",
            "--bogus",
            "-x",
            "none",
            "-t",
            "=",
            "--=",
            "---",
            "-=",
            "-a",
            "10.0.0.1/8",
            "-n",
            "--dns-f",
            "::1",
            "42",
            "-46",
            "--no-dhcp-",
            "-I",
            "--userns",
            "-D",
        ]
        .iter()
        .map(OsString::from)
        .chain([
            OsString::from_vec(vec![0xff]),
            OsString::from_vec(vec![b'-', 0xfe]),
            OsString::from_vec(vec![b'-', b'-', 0x80, b'=']),
        ])
        .collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for _ in 0..500 {
            let len = next() % 7;
            let line: Vec<OsString> = (0..len)
                .filter_map(|_| words.get(next() % words.len()).cloned())
                .collect();
            for mode in [Mode::Passt, Mode::Pasta] {
                if let Err(ConfError::Invalid(msg)) = Conf::parse(mode, &line) {
                    assert!(
                        msg.starts_with(&format!("{}: ", prog(mode))),
                        "{line:?}: {msg}"
                    );
                    assert!(!msg.contains('\n'), "{line:?}: {msg}");
                }
            }
        }
    }

    #[test]
    fn help_lists_options_of_the_mode() {
        let h = match pasta(&["-f", "-h", "--bogus"]) {
            Err(ConfError::Help(h)) => h,
            other => panic!("expected Help, got {other:?}"),
        };
        assert!(h.starts_with("Usage: pasta [OPTION]..."), "{h}");
        for word in [
            "--netns",
            "--config-net",
            "--dhcp-dns",
            "--mtu",
            "--dns-forward",
            "--pcap",
        ] {
            assert!(h.contains(word), "{word} missing");
        }
        assert!(!h.contains("--no-dhcp-dns"));
        let h = match passt(&["--help"]) {
            Err(ConfError::Help(h)) => h,
            other => panic!("expected Help, got {other:?}"),
        };
        assert!(h.starts_with("Usage: passt [OPTION]...\n"), "{h}");
        assert!(h.contains("--no-dhcp-dns") && h.contains("--vhost-user"));
        assert!(!h.contains("--netns") && !h.contains("--splice-only"));
    }

    #[test]
    fn help_mentions_every_option_of_the_mode() {
        for mode in [Mode::Passt, Mode::Pasta] {
            let h = usage(mode);
            for spec in OPTIONS.iter().filter(|s| s.only.is_none_or(|m| m == mode)) {
                assert!(
                    h.contains(&format!("--{} ", spec.long))
                        || h.contains(&format!("--{}\n", spec.long)),
                    "{mode:?}: --{}",
                    spec.long
                );
            }
        }
    }

    // ---- options not built yet, and mode-specific options ----

    #[test]
    fn every_unbuilt_option_is_recognised_and_refused() {
        for spec in OPTIONS.iter().filter(|s| !s.built) {
            for mode in [Mode::Passt, Mode::Pasta] {
                let mut words = vec![OsString::from(format!("--{}", spec.long))];
                if spec.takes_value {
                    words.push(OsString::from("1"));
                }
                let msg = invalid(Conf::parse(mode, &words));
                let expected = match spec.only {
                    Some(only) if only != mode => {
                        format!(
                            "{}: --{} is for {} mode only",
                            prog(mode),
                            spec.long,
                            prog(only)
                        )
                    }
                    _ => format!(
                        "{}: option --{} is not supported yet",
                        prog(mode),
                        spec.long
                    ),
                };
                assert_eq!(msg, expected);
            }
        }
    }

    #[test]
    fn unbuilt_short_options_are_refused_by_long_name() {
        assert_eq!(
            invalid(pasta(&["-c", "/tmp/c"])),
            "pasta: option --conf-path is not supported yet"
        );
        assert_eq!(
            invalid(pasta(&["-s", "/tmp/s"])),
            "pasta: --socket is for passt mode only"
        );
    }

    #[test]
    fn pasta_only_options_are_refused_by_passt() {
        for words in [
            &["--netns", "x"][..],
            &["--userns", "x"],
            &["--netns-only"],
            &["--no-netns-quit"],
            &["--config-net"],
            &["-I", "eth0"],
            &["--ns-mac-addr", "02:00:00:00:00:01"],
            &["--dhcp-dns"],
            &["--dhcp-search"],
            &["-T", "none"],
            &["-U", "none"],
        ] {
            let msg = invalid(passt(words));
            assert!(
                msg.starts_with("passt: --") && msg.ends_with(" is for pasta mode only"),
                "{msg}"
            );
        }
    }

    #[test]
    fn passt_only_options_are_refused_by_pasta() {
        assert_eq!(
            invalid(pasta(&["--no-dhcp-dns"])),
            "pasta: --no-dhcp-dns is for passt mode only"
        );
        assert_eq!(
            invalid(pasta(&["--no-dhcp-search"])),
            "pasta: --no-dhcp-search is for passt mode only"
        );
    }

    #[test]
    fn port_forwarding_defaults_to_auto_for_pasta_and_none_for_passt() {
        let c = ok(pasta(&[]));
        // `auto` for each of -t, -u, -T, -U (split around the ephemeral ports).
        for t in [&c.fwd_in, &c.fwd_out] {
            for p in [crate::fwd_rule::Proto::Tcp, crate::fwd_rule::Proto::Udp] {
                assert!(t.rules.iter().any(|r| r.proto == p), "{t:?}");
            }
            assert!(t.rules.iter().all(|r| r.scan && r.weak), "{t:?}");
        }
        let c = ok(pasta(&["-t", "none", "-u", "none", "-T", "none", "-U", "none"]));
        assert!(c.fwd_in.rules.is_empty() && c.fwd_out.rules.is_empty());
        // An explicit -t leaves the UDP default alone.
        let c = ok(pasta(&["-t", "8080-8080:80-80"]));
        let tcp: Vec<_> = c.fwd_in.rules.iter().filter(|r| r.proto == crate::fwd_rule::Proto::Tcp).collect();
        assert_eq!(tcp.len(), 1);
        assert_eq!((tcp[0].ports.first(), tcp[0].to, tcp[0].scan), (8080, 80, false));
        assert!(ok(passt(&[])).fwd_in.rules.is_empty());
        assert_eq!(ok(passt(&["--tcp-ports=22"])).fwd_in.rules.len(), 1);
        assert_eq!(invalid(passt(&["-T", "none"])), "passt: --tcp-ns is for pasta mode only");
    }

    #[test]
    fn repeated_forwarding_options_accumulate_and_overlaps_are_refused() {
        let c = ok(pasta(&["-t", "127.0.0.1/8080-8080:80-80", "-t", "8081:81", "-u", "::1/5353-5353:53-53"]));
        assert_eq!(c.fwd_in.rules.iter().filter(|r| r.proto == crate::fwd_rule::Proto::Tcp).count(), 2);
        let e = invalid(pasta(&["-t", "80", "-t", "70-90"]));
        assert!(e.starts_with("pasta: "), "{e}");
        let none_after = crate::fwd_rule::SpecError::NoneConflict { letter: 't' };
        assert_eq!(invalid(pasta(&["-t", "80", "-t", "none"])), format!("pasta: {none_after}"));
    }

    #[test]
    fn splice_options_and_their_conflicts() {
        let c = ok(pasta(&["--splice-only"]));
        assert!(c.splice_only && c.host_lo_to_ns_lo && c.no_icmp);
        assert_eq!(
            invalid(pasta(&["--host-lo-to-ns-lo", "--no-splice"])),
            "pasta: --host-lo-to-ns-lo is incompatible with --no-splice"
        );
        assert!(ok(passt(&[])).no_splice, "passt never splices");
        assert_eq!(invalid(passt(&["--host-lo-to-ns-lo"])), "passt: --host-lo-to-ns-lo is for pasta mode only");
    }

    #[test]
    fn ebpf_options_for_pasta_helper_and_cgroup_imply_ebpf() {
        let c = pasta(&[]).unwrap();
        assert!(!c.ebpf && c.ebpf_helper.is_none() && c.ebpf_cgroup.is_none());
        assert!(pasta(&["--ebpf"]).unwrap().ebpf);
        let c = pasta(&["--ebpf-helper", "/run/h.sock"]).unwrap();
        assert!(c.ebpf);
        assert_eq!(c.ebpf_helper.as_deref(), Some(std::path::Path::new("/run/h.sock")));
        let c = pasta(&["--ebpf-cgroup", "/sys/fs/cgroup/x"]).unwrap();
        assert!(c.ebpf);
        assert_eq!(c.ebpf_cgroup.as_deref(), Some(std::path::Path::new("/sys/fs/cgroup/x")));
        assert_eq!(invalid(passt(&["--ebpf"])), "passt: --ebpf is for pasta mode only");
        assert!(invalid(pasta(&["--ebpf-helper", ""])).contains("Invalid eBPF helper socket path"));
        let c = ok(pasta(&["--map-guest-addr", "169.254.1.2", "--map-guest-addr", "fd00::2"]));
        assert_eq!(c.map_guest_addr4, Some(Some(v4("169.254.1.2"))));
        assert_eq!(c.map_guest_addr6, Some(Some(v6("fd00::2"))));
        assert_eq!(ok(pasta(&["--map-guest-addr", "none"])).map_guest_addr4, Some(None));
        assert_eq!(invalid(pasta(&["--map-guest-addr", "127.0.0.1"])), "pasta: Invalid address to remap to guest: 127.0.0.1");
    }

    #[test]
    fn invalid_port_forwarding_specs_are_refused_with_the_parse_error() {
        assert_eq!(
            invalid(pasta(&["-t", "70000"])),
            "pasta: Invalid port specifier 70000: ports are 1 to 65535"
        );
        assert_eq!(
            invalid(pasta(&["--udp-ports=1-3:4-9"])),
            "pasta: Mismatched port range lengths in 1-3:4-9"
        );
        assert_eq!(
            invalid(pasta(&["-U", "127.0.0.1/53"])),
            "pasta: Listening address not allowed for -U 127.0.0.1/53"
        );
        assert_eq!(invalid(pasta(&["-T", ""])), "pasta: Empty port specifier");
        assert_eq!(
            invalid(passt(&["-t", "auto"])),
            "passt: 'auto' port forwarding is only allowed for pasta"
        );
        assert_eq!(
            invalid(passt(&["-t", "22,"])),
            "passt: Empty entry in port specifier 22,"
        );
        // The first invalid option stops processing, as getopt_long's loop.
        assert_eq!(
            invalid(pasta(&["-t", "abc", "-t", "22"])),
            "pasta: Invalid port specifier abc"
        );
    }

    const PODMAN: &[&str] = &[
        "--config-net",
        "-t",
        "none",
        "-u",
        "none",
        "-T",
        "none",
        "-U",
        "none",
        "--no-map-gw",
        "--quiet",
        "--netns",
        "/run/user/1000/netns/x",
        "--map-guest-addr",
        "169.254.1.2",
        "--dns-forward",
        "169.254.1.1",
    ];

    #[test]
    fn podman_invocation_is_accepted() {
        let mut args = PODMAN.to_vec();
        args.extend(["-t", "8080-8080:80-80", "-t", "127.0.0.1/8081-8081:81-81", "-u", "::1/5353-5353:53-53"]);
        let c = ok(pasta(&args));
        assert_eq!(c.map_guest_addr4, Some(Some(v4("169.254.1.2"))));
        assert_eq!(c.fwd_in.rules.len(), 3);
        assert!(c.fwd_out.rules.is_empty());
        assert_eq!(
            c.target,
            PastaTarget::NetNs(PathBuf::from("/run/user/1000/netns/x"))
        );
        assert!(c.netns_only && c.config_net && c.no_map_gw && c.quiet && c.no_ra);
        assert_eq!(c.dns_forward4, Some(v4("169.254.1.1")));
        assert!(!c.foreground);
    }

    // ---- logging, files ----

    #[test]
    fn verbosity_options_last_one_wins() {
        let c = ok(passt(&["-d", "-q"]));
        assert!(c.quiet && !c.debug);
        let c = ok(passt(&["-q", "-d"]));
        assert!(!c.quiet && c.debug);
        let c = ok(passt(&["--trace", "-q"]));
        assert!(c.quiet && !c.trace && !c.debug);
        let c = ok(passt(&["-q", "--trace"]));
        assert!(!c.quiet && c.trace && c.debug);
        let c = ok(passt(&["-d", "--trace", "-q", "-d"]));
        assert!(!c.quiet && c.debug && !c.trace);
    }

    #[test]
    fn stderr_is_accepted_without_effect() {
        assert_eq!(ok(passt(&["-e", "--stderr"])), ok(passt(&[])));
    }

    #[test]
    fn log_and_pid_files() {
        let c = ok(passt(&["-l", "/tmp/log", "--pid=/tmp/pid"]));
        assert_eq!(c.log_file, Some(PathBuf::from("/tmp/log")));
        assert_eq!(c.pid_file, Some(PathBuf::from("/tmp/pid")));
        let c = ok(passt(&["--log-file=/a", "-P", "/b"]));
        assert_eq!(c.log_file, Some(PathBuf::from("/a")));
        assert_eq!(c.pid_file, Some(PathBuf::from("/b")));
        assert_eq!(invalid(passt(&["-P", ""])), "passt: Invalid PID file: ");
        let long = "x".repeat(PATH_MAX);
        assert!(invalid(passt(&["-P", &long])).starts_with("passt: Invalid PID file: x"));
    }

    // ---- MTU ----

    #[test]
    fn threads_is_validated_and_pasta_only() {
        assert_eq!(ok(pasta(&[])).threads, 1);
        assert_eq!(ok(pasta(&["--threads", "2"])).threads, 2);
        assert_eq!(ok(pasta(&["--threads=0x3"])).threads, 3);
        assert_eq!(ok(pasta(&["--threads", "16"])).threads, MAX_THREADS);
        assert_eq!(ok(passt(&["--threads", "1"])).threads, 1);
        assert_eq!(
            invalid(pasta(&["--threads", "0"])),
            "pasta: Number of threads must be at least 1"
        );
        assert_eq!(
            invalid(pasta(&["--threads", "two"])),
            "pasta: Invalid number of threads: two"
        );
        assert_eq!(
            invalid(pasta(&["--threads", "-2"])),
            "pasta: Invalid number of threads: -2"
        );
        assert_eq!(
            invalid(pasta(&["--threads", "17"])),
            "pasta: Number of threads 17 too large (max 16)"
        );
        assert_eq!(
            invalid(passt(&["--threads", "2"])),
            "passt: --threads is for pasta only (vhost-user multi-queue is not built)"
        );
        assert_eq!(
            invalid(pasta(&["--threads", "2", "--splice-only"])),
            "pasta: --threads needs a tap device, not --splice-only"
        );
        assert_eq!(
            invalid(pasta(&["--threads", "2", "-p", "/tmp/x.pcap"])),
            "pasta: --pcap captures one thread: not with --threads above 1"
        );
    }

    #[test]
    fn max_flows_is_validated_and_in_help() {
        assert_eq!(ok(pasta(&[])).max_flows, None);
        assert_eq!(ok(pasta(&["--max-flows", "16"])).max_flows, Some(16));
        assert_eq!(ok(passt(&["--max-flows=1"])).max_flows, Some(1));
        assert_eq!(ok(passt(&["--max-flows", "0x100"])).max_flows, Some(256));
        assert_eq!(ok(passt(&["--max-flows", "1048576"])).max_flows, Some(MAX_FLOWS_LIMIT));
        assert_eq!(invalid(pasta(&["--max-flows", "0"])), "pasta: Maximum number of flows must be at least 1");
        assert_eq!(invalid(pasta(&["--max-flows", "12x"])), "pasta: Invalid maximum number of flows: 12x");
        assert_eq!(invalid(pasta(&["--max-flows", "-1"])), "pasta: Invalid maximum number of flows: -1");
        assert_eq!(invalid(pasta(&["--max-flows", ""])), "pasta: Invalid maximum number of flows: ");
        assert_eq!(
            invalid(passt(&["--max-flows", "1048577"])),
            "passt: Maximum number of flows 1048577 too large (max 1048576)"
        );
        assert_eq!(
            invalid(passt(&["--max-flows", "99999999999999999999999"])),
            "passt: Invalid maximum number of flows: 99999999999999999999999"
        );
        assert_eq!(invalid(pasta(&["--max-flows"])), "pasta: option '--max-flows' requires an argument");
        for m in [Mode::Pasta, Mode::Passt] {
            let u = usage(m);
            assert!(u.contains("--max-flows N"), "{u}");
            assert!(u.contains(&format!("default: {}", crate::daemon::FLOW_CAPACITY)));
        }
    }

    #[test]
    fn mtu_range_and_bases() {
        assert_eq!(ok(passt(&["-m", "0"])).mtu, Some(0));
        assert_eq!(ok(passt(&["-m", "65520"])).mtu, Some(65520));
        assert_eq!(ok(passt(&["-m", "0x5dc"])).mtu, Some(1500));
        assert_eq!(ok(passt(&["-m", "02734"])).mtu, Some(1500));
        // Small values are accepted here; resolve() warns as upstream.
        assert_eq!(ok(passt(&["-m", "60"])).mtu, Some(60));
        assert_eq!(
            invalid(passt(&["-m", "65521"])),
            "passt: MTU 65521 too large (max 65520)"
        );
        assert_eq!(
            invalid(passt(&["-m", "99999999999999999999999"])),
            "passt: Invalid MTU: 99999999999999999999999"
        );
        for bad in ["", "abc", "15x", "-1", "+1", " 1", "0x", "09"] {
            assert_eq!(
                invalid(passt(&["-m", bad])),
                format!("passt: Invalid MTU: {bad}")
            );
        }
    }

    // ---- addresses ----

    #[test]
    fn address_per_family_with_and_without_prefix() {
        let c = ok(passt(&["-a", "192.0.2.5", "--address", "2001:db8::5"]));
        assert_eq!(c.addr4, Some((v4("192.0.2.5"), None)));
        assert_eq!(c.addr6, Some(v6("2001:db8::5")));
        let c = ok(passt(&["-a", "192.0.2.5/20", "-a", "[2001:db8::5]/48"]));
        assert_eq!(c.addr4, Some((v4("192.0.2.5"), Some(20))));
        assert_eq!(c.addr6, Some(v6("2001:db8::5")));
    }

    #[test]
    fn address_v4_mapped_is_ipv4() {
        let c = ok(passt(&["-a", "::ffff:192.0.2.5/120"]));
        assert_eq!(c.addr4, Some((v4("192.0.2.5"), Some(24))));
        assert_eq!(c.addr6, None);
    }

    #[test]
    fn address_invalid_values() {
        for bad in [
            "300.1.1.1",
            "127.0.0.1",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "ff02::1",
            "x",
            "10.0.0.1/",
            "10.0.0.1/a",
        ] {
            assert_eq!(
                invalid(passt(&["-a", bad])),
                format!("passt: Invalid guest address: {bad}")
            );
        }
        assert_eq!(
            invalid(passt(&["-a", "10.0.0.1/33"])),
            "passt: Invalid prefix length: 10.0.0.1/33"
        );
        assert_eq!(
            invalid(passt(&["-a", "2001:db8::1/129"])),
            "passt: Invalid prefix length: 2001:db8::1/129"
        );
    }

    #[test]
    fn address_prefix_and_netmask_do_not_mix() {
        assert_eq!(
            invalid(passt(&["-a", "10.0.0.1/24", "-n", "24"])),
            "passt: Redundant prefix length specification"
        );
        assert_eq!(
            invalid(passt(&["-n", "24", "-a", "10.0.0.1/24"])),
            "passt: Redundant prefix length specification"
        );
        let c = ok(passt(&["-a", "10.0.0.1", "-n", "255.255.240.0"]));
        assert_eq!(c.addr4, Some((v4("10.0.0.1"), None)));
        assert_eq!(c.netmask4, Some(20));
    }

    #[test]
    fn netmask_dot_decimal_or_bits() {
        assert_eq!(ok(passt(&["-n", "255.255.255.0"])).netmask4, Some(24));
        assert_eq!(ok(passt(&["--netmask=0.0.0.0"])).netmask4, Some(0));
        assert_eq!(ok(passt(&["-n", "255.255.255.255"])).netmask4, Some(32));
        assert_eq!(ok(passt(&["-n", "16"])).netmask4, Some(16));
        for bad in ["255.0.255.0", "33", "x", "0.255.255.255"] {
            assert_eq!(
                invalid(passt(&["-n", bad])),
                format!("passt: Invalid prefix length: {bad}")
            );
        }
    }

    #[test]
    fn mac_addresses() {
        let c = ok(pasta(&[
            "-M",
            "02:00:0a:0B:ff:01",
            "--ns-mac-addr",
            "02:00:00:00:00:09",
        ]));
        assert_eq!(c.our_mac, [2, 0, 0x0a, 0x0b, 0xff, 1]);
        assert_eq!(c.ns_mac, Some([2, 0, 0, 0, 0, 9]));
        for bad in [
            "02:00:00:00:00",
            "02:00:00:00:00:0g",
            "2:00:00:00:00:01",
            "02:00:00:00:00:01:03",
            "02-00-00-00-00-01",
            "",
        ] {
            assert_eq!(
                invalid(passt(&["--mac-addr", bad])),
                format!("passt: Invalid MAC address: {bad}")
            );
        }
    }

    #[test]
    fn gateway_per_family() {
        let c = ok(passt(&["-g", "192.0.2.1", "--gateway", "fe80::1"]));
        assert_eq!(c.gw4, Some(v4("192.0.2.1")));
        assert_eq!(c.gw6, Some(v6("fe80::1")));
        for bad in ["127.0.0.1", "0.0.0.0", "255.255.255.255", "::1", "::", "gw"] {
            assert_eq!(
                invalid(passt(&["-g", bad])),
                format!("passt: Invalid gateway address: {bad}")
            );
        }
    }

    #[test]
    fn interface_names() {
        let c = ok(pasta(&["-i", "eth0", "-I", "tap9"]));
        assert_eq!(c.interface.as_deref(), Some("eth0"));
        assert_eq!(c.ns_ifname.as_deref(), Some("tap9"));
        assert_eq!(
            ok(passt(&["--interface=enp0s31f6abcdef"]))
                .interface
                .as_deref(),
            Some("enp0s31f6abcdef")
        );
        assert_eq!(
            invalid(passt(&["-i", "enp0s31f6abcdefg"])),
            "passt: Invalid interface name: enp0s31f6abcdefg"
        );
        assert_eq!(
            invalid(pasta(&["--ns-ifname", ""])),
            "pasta: Invalid interface name: "
        );
    }

    #[test]
    fn outbound_per_family() {
        let c = ok(passt(&["-o", "192.0.2.7", "-o", "2001:db8::7"]));
        assert_eq!(c.outbound4, Some(v4("192.0.2.7")));
        assert_eq!(c.outbound6, Some(v6("2001:db8::7")));
        for bad in [
            "::ffff:192.0.2.7",
            "::192.0.2.7",
            "ff02::1",
            "224.0.0.1",
            "0.0.0.0",
            "::1",
        ] {
            assert_eq!(
                invalid(passt(&["--outbound", bad])),
                format!("passt: Invalid or redundant outbound address: {bad}")
            );
        }
    }

    // ---- DNS ----

    #[test]
    fn dns_is_repeatable_and_none_clears() {
        let c = ok(passt(&[
            "-D",
            "192.0.2.53",
            "--dns=2001:db8::53",
            "-D",
            "127.0.0.1",
        ]));
        assert_eq!(
            c.dns,
            DnsOpt::List(vec![
                "192.0.2.53".parse().unwrap(),
                "2001:db8::53".parse().unwrap(),
                "127.0.0.1".parse().unwrap()
            ])
        );
        let c = ok(passt(&[
            "-D",
            "192.0.2.53",
            "--dns-forward",
            "192.0.2.99",
            "--dns-host",
            "192.0.2.98",
            "-D",
            "none",
        ]));
        assert_eq!(c.dns, DnsOpt::None);
        assert_eq!((c.dns_forward4, c.dns_host4), (None, None));
        let c = ok(passt(&["-D", "none", "-D", "192.0.2.53"]));
        assert_eq!(c.dns, DnsOpt::List(vec!["192.0.2.53".parse().unwrap()]));
        assert_eq!(
            invalid(passt(&["-D", "dns.example"])),
            "passt: Cannot use DNS address dns.example"
        );
    }

    #[test]
    fn search_list_is_split_and_concatenated() {
        let c = ok(passt(&[
            "-S",
            "a.example  b.example",
            "--search",
            "c.example",
        ]));
        assert_eq!(
            c.search,
            SearchOpt::List(vec![
                "a.example".into(),
                "b.example".into(),
                "c.example".into()
            ])
        );
        assert_eq!(
            ok(passt(&["-S", "a.example", "-S", "none"])).search,
            SearchOpt::None
        );
        assert_eq!(ok(passt(&["-S", ""])).search, SearchOpt::List(vec![]));
        let long = "a".repeat(254);
        assert_eq!(
            invalid(passt(&["-S", &long])),
            format!("passt: Cannot use DNS search domain {long}")
        );
    }

    #[test]
    fn dhcp_dns_and_search_defaults_and_switches() {
        let c = ok(pasta(&["--dhcp-dns", "--dhcp-search"]));
        assert!(c.dhcp_dns && c.dhcp_search);
        let c = ok(passt(&["--no-dhcp-dns", "--no-dhcp-search"]));
        assert!(!c.dhcp_dns && !c.dhcp_search);
    }

    #[test]
    fn dns_forward_and_host_per_family() {
        let c = ok(passt(&[
            "--dns-forward",
            "192.0.2.99",
            "--dns-forward",
            "2001:db8::99",
            "--dns-host",
            "127.0.0.53",
            "--dns-host",
            "::1",
        ]));
        assert_eq!(c.dns_forward4, Some(v4("192.0.2.99")));
        assert_eq!(c.dns_forward6, Some(v6("2001:db8::99")));
        assert_eq!(c.dns_host4, Some(v4("127.0.0.53")));
        assert_eq!(c.dns_host6, Some(v6("::1")));
        assert_eq!(
            invalid(passt(&["--dns-forward", "127.0.0.1"])),
            "passt: Invalid DNS forwarding address: 127.0.0.1"
        );
        assert_eq!(
            invalid(passt(&["--dns-host", "0.0.0.0"])),
            "passt: Invalid host nameserver address: 0.0.0.0"
        );
    }

    #[test]
    fn map_host_loopback_per_family_and_none() {
        let c = ok(passt(&[
            "--map-host-loopback",
            "192.0.2.2",
            "--map-host-loopback",
            "fe80::2",
        ]));
        assert_eq!(c.map_host_loopback4, Some(Some(v4("192.0.2.2"))));
        assert_eq!(c.map_host_loopback6, Some(Some(v6("fe80::2"))));
        assert!(!c.no_map_gw);
        let c = ok(passt(&[
            "--map-host-loopback",
            "none",
            "--map-host-loopback",
            "192.0.2.2",
        ]));
        assert_eq!(c.map_host_loopback4, Some(Some(v4("192.0.2.2"))));
        assert_eq!(c.map_host_loopback6, Some(None));
        assert!(c.no_map_gw);
        assert_eq!(
            invalid(passt(&["--map-host-loopback", "127.0.0.1"])),
            "passt: Invalid address to remap to host: 127.0.0.1"
        );
    }

    #[test]
    fn hostname_and_fqdn() {
        let c = ok(passt(&["-H", "guest", "--fqdn", "guest.example"]));
        assert_eq!(c.hostname.as_deref(), Some("guest"));
        assert_eq!(c.fqdn.as_deref(), Some("guest.example"));
        let long = "h".repeat(254);
        assert_eq!(
            invalid(passt(&["--hostname", &long])),
            format!("passt: Invalid hostname: {long}")
        );
        assert_eq!(
            invalid(passt(&["--fqdn", &long])),
            format!("passt: Invalid FQDN: {long}")
        );
    }

    // ---- flags ----

    #[test]
    fn protocol_and_service_switches() {
        let c = ok(passt(&[
            "--no-tcp",
            "--no-udp",
            "--no-dhcp",
            "--no-dhcpv6",
            "--no-ra",
            "--no-map-gw",
        ]));
        assert!(c.no_tcp && c.no_udp && c.no_dhcp && c.no_dhcpv6 && c.no_ra && c.no_map_gw);
        assert!(!c.no_icmp && !c.no_ndp);
        let c = ok(passt(&["--no-icmp"]));
        assert!(c.no_icmp && c.no_ndp);
        let c = ok(passt(&["--no-ndp"]));
        assert!(c.no_ndp && !c.no_icmp);
    }

    #[test]
    fn ip_version_switches_last_one_wins() {
        let c = ok(passt(&["-4"]));
        assert!(c.ipv4_only && !c.ipv6_only);
        let c = ok(passt(&["--ipv6-only"]));
        assert!(c.ipv6_only && !c.ipv4_only);
        let c = ok(passt(&["-4", "-6"]));
        assert!(c.ipv6_only && !c.ipv4_only);
        let c = ok(passt(&["-6", "--ipv4-only"]));
        assert!(c.ipv4_only && !c.ipv6_only);
    }

    #[test]
    fn pasta_namespace_switches() {
        let c = ok(pasta(&["--config-net", "--no-netns-quit", "42"]));
        assert!(c.config_net && c.no_netns_quit && c.no_ra);
        let c = ok(pasta(&["42"]));
        assert!(!c.config_net && !c.no_netns_quit && !c.no_ra);
    }

    // ---- resolve ----

    fn host_v4() -> HostIf<Ipv4Addr> {
        HostIf {
            name: "eth0".into(),
            index: 2,
            mtu: 1500,
            addrs: vec![
                (v4("192.0.2.10"), 24),
                (v4("169.254.7.7"), 16),
                (v4("198.51.100.20"), 24),
            ],
            gw: Some(v4("192.0.2.1")),
            routes: vec![
                Route {
                    dst: Ipv4Addr::UNSPECIFIED,
                    prefix_len: 0,
                    gw: Some(v4("192.0.2.1")),
                    metric: Some(100),
                },
                Route {
                    dst: v4("192.0.2.0"),
                    prefix_len: 24,
                    gw: None,
                    metric: Some(100),
                },
            ],
        }
    }

    fn host_v6() -> HostIf<Ipv6Addr> {
        HostIf {
            name: "wlan0".into(),
            index: 3,
            mtu: 1500,
            addrs: vec![
                (v6("2001:db8::5"), 64),
                (v6("fe80::1234"), 64),
                (v6("2001:db8::10"), 128),
            ],
            gw: Some(v6("fe80::1:1")),
            routes: vec![
                Route {
                    dst: Ipv6Addr::UNSPECIFIED,
                    prefix_len: 0,
                    gw: Some(v6("fe80::1:1")),
                    metric: Some(1024),
                },
                Route {
                    dst: v6("2001:db8::"),
                    prefix_len: 64,
                    gw: None,
                    metric: Some(256),
                },
            ],
        }
    }

    fn host() -> HostNet {
        HostNet {
            v4: Some(host_v4()),
            v6: Some(host_v6()),
        }
    }

    fn resolv(ns: &[&str], search: &[&str]) -> Resolv {
        Resolv {
            nameservers: ns
                .iter()
                .map(|s| s.parse().expect("test address"))
                .collect(),
            search: search.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn net(conf: &Conf, host: &HostNet, resolv: &Resolv) -> NetConf {
        match resolve(conf, host, resolv) {
            Ok(n) => n,
            Err(e) => panic!("resolve failed: {e:?}"),
        }
    }

    fn ip4(n: &NetConf) -> &Ip4Conf {
        n.ip4.as_ref().expect("IPv4 enabled")
    }

    fn ip6(n: &NetConf) -> &Ip6Conf {
        n.ip6.as_ref().expect("IPv6 enabled")
    }

    #[test]
    fn host_with_both_versions_is_mirrored() {
        let n = net(&ok(passt(&[])), &host(), &resolv(&[], &[]));
        assert_eq!((n.ifname4.as_str(), n.ifname6.as_str()), ("eth0", "wlan0"));
        assert!(!n.local_mode4);
        let i4 = ip4(&n);
        assert_eq!(
            (i4.addr, i4.prefix_len, i4.gw),
            (v4("192.0.2.10"), 24, v4("192.0.2.1"))
        );
        assert_eq!(i4.map_host_loopback, Some(v4("192.0.2.1")));
        assert_eq!(
            i4.copy_addrs,
            vec![(v4("192.0.2.10"), 24), (v4("198.51.100.20"), 24)]
        );
        assert_eq!(i4.copy_routes, host_v4().routes);
        let i6 = ip6(&n);
        // Longest prefix wins: the /128 (DHCPv6) address over the /64 one.
        assert_eq!(i6.addr, v6("2001:db8::10"));
        assert_eq!(i6.prefix_len, 64);
        assert_eq!(i6.gw, v6("fe80::1:1"));
        assert_eq!(i6.our_ll, v6("fe80::1:1"));
        assert_eq!(i6.map_host_loopback, Some(v6("fe80::1:1")));
        assert_eq!(
            i6.copy_addrs,
            vec![(v6("2001:db8::5"), 64), (v6("2001:db8::10"), 128)]
        );
        assert_eq!(i6.copy_routes, host_v6().routes);
        assert_eq!((n.mtu, n.advertise_mtu), (65520, Some(65520)));
        assert_eq!(n.our_mac, DEFAULT_MAC);
    }

    #[test]
    fn ipv4_address_with_longest_prefix_is_chosen() {
        let mut h = host();
        if let Some(v4if) = h.v4.as_mut() {
            v4if.addrs = vec![
                (v4("192.0.2.10"), 24),
                (v4("203.0.113.9"), 28),
                (v4("198.51.100.1"), 28),
            ];
        }
        let n = net(&ok(passt(&[])), &h, &resolv(&[], &[]));
        assert_eq!((ip4(&n).addr, ip4(&n).prefix_len), (v4("203.0.113.9"), 28));
    }

    #[test]
    fn global_ipv6_gateway_uses_host_link_local_as_ours() {
        let c = ok(passt(&["-g", "2001:db8::1"]));
        let n = net(&c, &host(), &resolv(&[], &[]));
        assert_eq!(ip6(&n).gw, v6("2001:db8::1"));
        assert_eq!(ip6(&n).our_ll, v6("fe80::1234"));
        let mut h = host();
        if let Some(v6if) = h.v6.as_mut() {
            v6if.addrs.retain(|(a, _)| !is_link_local6(a));
        }
        let n = net(&c, &h, &resolv(&[], &[]));
        assert_eq!(ip6(&n).our_ll, LOCAL_GW6);
    }

    #[test]
    fn no_host_ipv4_is_local_mode() {
        let h = HostNet {
            v4: None,
            v6: Some(host_v6()),
        };
        let n = net(&ok(pasta(&[])), &h, &resolv(&[], &[]));
        assert!(n.local_mode4);
        assert_eq!(n.ifname4, "");
        let i4 = ip4(&n);
        assert_eq!(
            (i4.addr, i4.prefix_len, i4.gw),
            (v4("169.254.2.1"), 16, v4("169.254.2.2"))
        );
        assert_eq!(i4.map_host_loopback, Some(v4("169.254.2.2")));
        assert_eq!(i4.copy_addrs, vec![(v4("169.254.2.1"), 16)]);
        assert_eq!(
            i4.copy_routes,
            vec![Route {
                dst: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
                gw: Some(v4("169.254.2.2")),
                metric: None
            }]
        );
    }

    #[test]
    fn host_ipv4_interface_without_address_is_local_mode() {
        let mut h = host();
        if let Some(v4if) = h.v4.as_mut() {
            v4if.addrs.clear();
        }
        let n = net(&ok(passt(&[])), &h, &resolv(&[], &[]));
        assert!(n.local_mode4);
        assert_eq!(ip4(&n).addr, LOCAL_ADDR4);
    }

    #[test]
    fn local_mode_honours_address_and_gateway_options() {
        let c = ok(passt(&["-a", "10.0.2.15/24", "-g", "10.0.2.2"]));
        let n = net(&c, &HostNet::default(), &resolv(&[], &[]));
        assert!(n.local_mode4);
        let i4 = ip4(&n);
        assert_eq!(
            (i4.addr, i4.prefix_len, i4.gw),
            (v4("10.0.2.15"), 24, v4("10.0.2.2"))
        );
    }

    #[test]
    fn no_host_ipv6_is_link_local_only() {
        let n = net(
            &ok(passt(&[])),
            &HostNet {
                v4: Some(host_v4()),
                v6: None,
            },
            &resolv(&[], &[]),
        );
        assert_eq!(n.ifname6, "");
        let i6 = ip6(&n);
        assert_eq!(i6.addr, Ipv6Addr::UNSPECIFIED);
        assert_eq!((i6.gw, i6.our_ll), (LOCAL_GW6, LOCAL_GW6));
        assert_eq!(i6.map_host_loopback, Some(LOCAL_GW6));
        assert!(i6.copy_addrs.is_empty());
        assert_eq!(
            i6.copy_routes,
            vec![Route {
                dst: Ipv6Addr::UNSPECIFIED,
                prefix_len: 0,
                gw: Some(LOCAL_GW6),
                metric: None
            }]
        );
    }

    #[test]
    fn host_ipv6_with_only_link_local_is_local_mode() {
        let mut h = host();
        if let Some(v6if) = h.v6.as_mut() {
            v6if.addrs = vec![(v6("fe80::1234"), 64)];
        }
        let n = net(&ok(passt(&[])), &h, &resolv(&[], &[]));
        assert_eq!(n.ifname6, "");
        assert_eq!(ip6(&n).addr, Ipv6Addr::UNSPECIFIED);
        assert_eq!(ip6(&n).gw, LOCAL_GW6);
    }

    #[test]
    fn address_options_override_host() {
        let n = net(&ok(passt(&["-a", "10.1.2.3"])), &host(), &resolv(&[], &[]));
        assert_eq!((ip4(&n).addr, ip4(&n).prefix_len), (v4("10.1.2.3"), 8));
        assert_eq!(ip4(&n).copy_addrs, vec![(v4("10.1.2.3"), 8)]);
        assert_eq!(ip4(&n).gw, v4("192.0.2.1"));
        let n = net(
            &ok(passt(&["-a", "172.16.1.2"])),
            &host(),
            &resolv(&[], &[]),
        );
        assert_eq!(ip4(&n).prefix_len, 16);
        let n = net(
            &ok(passt(&["-a", "10.1.2.3/20"])),
            &host(),
            &resolv(&[], &[]),
        );
        assert_eq!(ip4(&n).prefix_len, 20);
        let n = net(
            &ok(passt(&["-a", "10.1.2.3", "-n", "255.255.255.192"])),
            &host(),
            &resolv(&[], &[]),
        );
        assert_eq!(ip4(&n).prefix_len, 26);
        let n = net(&ok(passt(&["-n", "28"])), &host(), &resolv(&[], &[]));
        assert_eq!((ip4(&n).addr, ip4(&n).prefix_len), (v4("192.0.2.10"), 28));
        assert_eq!(ip4(&n).copy_addrs, vec![(v4("192.0.2.10"), 28)]);
        let n = net(
            &ok(passt(&["-a", "2001:db8:1::9/48"])),
            &host(),
            &resolv(&[], &[]),
        );
        assert_eq!(
            (ip6(&n).addr, ip6(&n).prefix_len),
            (v6("2001:db8:1::9"), 64)
        );
        assert_eq!(ip6(&n).copy_addrs, vec![(v6("2001:db8:1::9"), 64)]);
    }

    #[test]
    fn no_copy_options_keep_one_address_and_the_default_route() {
        let n = net(&ok(pasta(&["--no-copy-routes", "--no-copy-addrs"])), &host(), &resolv(&[], &[]));
        let (i4, i6) = (ip4(&n), ip6(&n));
        // The same address and gateway as without them.
        assert_eq!((i4.addr, i4.prefix_len, i4.gw), (v4("192.0.2.10"), 24, v4("192.0.2.1")));
        assert_eq!(i4.copy_addrs, vec![(v4("192.0.2.10"), 24)]);
        assert_eq!(i4.copy_routes, vec![Route { dst: Ipv4Addr::UNSPECIFIED, prefix_len: 0, gw: Some(v4("192.0.2.1")), metric: None }]);
        assert_eq!(i6.copy_addrs, vec![(v6("2001:db8::10"), 64)]);
        assert_eq!(i6.copy_routes, vec![Route { dst: Ipv6Addr::UNSPECIFIED, prefix_len: 0, gw: Some(v6("fe80::1:1")), metric: None }]);
        // Each on its own.
        let n = net(&ok(pasta(&["--no-copy-routes"])), &host(), &resolv(&[], &[]));
        assert_eq!((ip4(&n).copy_addrs.len(), ip4(&n).copy_routes.len()), (2, 1));
        let n = net(&ok(pasta(&["--no-copy-addrs"])), &host(), &resolv(&[], &[]));
        assert_eq!((ip4(&n).copy_addrs.len(), &ip4(&n).copy_routes), (1, &host_v4().routes));
        // pasta only, as upstream.
        assert!(passt(&["--no-copy-routes"]).is_err());
    }

    #[test]
    fn freebind_and_outbound_if_parse_in_both_modes() {
        assert!(ok(passt(&["--freebind"])).freebind && ok(pasta(&["--freebind"])).freebind);
        let c = ok(pasta(&["--outbound-if4", "eth1", "--outbound-if6", "wlan0"]));
        assert_eq!((c.outbound_if4.as_deref(), c.outbound_if6.as_deref()), (Some("eth1"), Some("wlan0")));
        assert!(passt(&["--outbound-if4", "a-name-longer-than-15"]).is_err());
        assert!(passt(&["--outbound-if6", ""]).is_err());
    }

    #[test]
    fn gateway_option_overrides_host_and_copies_only_default_route() {
        let n = net(
            &ok(passt(&["-g", "192.0.2.254"])),
            &host(),
            &resolv(&[], &[]),
        );
        let i4 = ip4(&n);
        assert_eq!(i4.gw, v4("192.0.2.254"));
        assert_eq!(i4.map_host_loopback, Some(v4("192.0.2.254")));
        assert_eq!(
            i4.copy_routes,
            vec![Route {
                dst: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
                gw: Some(v4("192.0.2.254")),
                metric: None
            }]
        );
        // IPv6 untouched.
        assert_eq!(ip6(&n).copy_routes, host_v6().routes);
    }

    #[test]
    fn host_without_default_gateway() {
        let mut h = host();
        if let Some(v4if) = h.v4.as_mut() {
            v4if.gw = None;
        }
        let n = net(&ok(passt(&[])), &h, &resolv(&[], &[]));
        assert!(!n.local_mode4);
        assert_eq!(ip4(&n).gw, Ipv4Addr::UNSPECIFIED);
        assert_eq!(ip4(&n).map_host_loopback, None);
    }

    #[test]
    fn ip_version_options_disable_the_other() {
        let n = net(&ok(passt(&["-4"])), &host(), &resolv(&[], &[]));
        assert!(n.ip4.is_some() && n.ip6.is_none());
        assert_eq!(n.ifname6, "");
        let n = net(&ok(passt(&["-6"])), &HostNet::default(), &resolv(&[], &[]));
        assert!(n.ip4.is_none() && n.ip6.is_some());
        assert!(!n.local_mode4);
    }

    #[test]
    fn map_host_loopback_options() {
        let n = net(&ok(passt(&["--no-map-gw"])), &host(), &resolv(&[], &[]));
        assert_eq!(
            (ip4(&n).map_host_loopback, ip6(&n).map_host_loopback),
            (None, None)
        );
        let n = net(
            &ok(passt(&["--map-host-loopback", "192.0.2.3"])),
            &host(),
            &resolv(&[], &[]),
        );
        assert_eq!(ip4(&n).map_host_loopback, Some(v4("192.0.2.3")));
        assert_eq!(ip6(&n).map_host_loopback, Some(v6("fe80::1:1")));
        let n = net(
            &ok(passt(&["--map-host-loopback", "none"])),
            &host(),
            &resolv(&[], &[]),
        );
        assert_eq!(
            (ip4(&n).map_host_loopback, ip6(&n).map_host_loopback),
            (None, None)
        );
        let n = net(
            &ok(passt(&[
                "--no-map-gw",
                "--map-host-loopback",
                "2001:db8::77",
            ])),
            &host(),
            &resolv(&[], &[]),
        );
        assert_eq!(
            (ip4(&n).map_host_loopback, ip6(&n).map_host_loopback),
            (None, Some(v6("2001:db8::77")))
        );
    }

    #[test]
    fn host_resolvers_are_advertised_per_version() {
        let r = resolv(
            &["203.0.113.53", "2001:db8::53", "198.51.100.53"],
            &["example.org"],
        );
        let n = net(&ok(passt(&[])), &host(), &r);
        assert_eq!(ip4(&n).dns, vec![v4("203.0.113.53"), v4("198.51.100.53")]);
        assert_eq!(ip6(&n).dns, vec![v6("2001:db8::53")]);
        assert_eq!((ip4(&n).dns_match, ip4(&n).dns_host), (None, None));
        assert_eq!(n.search, vec!["example.org".to_string()]);
    }

    #[test]
    fn pasta_does_not_advertise_by_default() {
        let r = resolv(&["203.0.113.53"], &["example.org"]);
        let n = net(&ok(pasta(&[])), &host(), &r);
        assert!(ip4(&n).dns.is_empty() && n.search.is_empty());
        let n = net(&ok(pasta(&["--dhcp-dns", "--dhcp-search"])), &host(), &r);
        assert_eq!(ip4(&n).dns, vec![v4("203.0.113.53")]);
        assert_eq!(n.search, vec!["example.org".to_string()]);
    }

    #[test]
    fn loopback_resolver_is_reached_through_mapped_gateway() {
        let r = resolv(&["127.0.0.53", "::1"], &[]);
        let n = net(&ok(passt(&[])), &host(), &r);
        let i4 = ip4(&n);
        assert_eq!(i4.dns, vec![v4("192.0.2.1")]);
        assert_eq!(i4.dns_match, Some(v4("192.0.2.1")));
        assert_eq!(i4.dns_host, Some(v4("127.0.0.53")));
        let i6 = ip6(&n);
        assert_eq!(i6.dns, vec![v6("fe80::1:1")]);
        assert_eq!(i6.dns_match, Some(v6("fe80::1:1")));
        assert_eq!(i6.dns_host, Some(v6("::1")));
        // Forwarding works even when nothing is advertised (pasta default).
        let n = net(&ok(pasta(&[])), &host(), &r);
        assert!(ip4(&n).dns.is_empty());
        assert_eq!(ip4(&n).dns_match, Some(v4("192.0.2.1")));
        assert_eq!(ip4(&n).dns_host, Some(v4("127.0.0.53")));
    }

    #[test]
    fn loopback_resolver_after_a_public_one_still_is_the_dns_host() {
        let r = resolv(&["203.0.113.53", "127.0.0.1", "127.0.0.53"], &[]);
        let n = net(&ok(passt(&[])), &host(), &r);
        let i4 = ip4(&n);
        assert_eq!(i4.dns, vec![v4("203.0.113.53"), v4("192.0.2.1")]);
        assert_eq!(i4.dns_match, Some(v4("192.0.2.1")));
        assert_eq!(i4.dns_host, Some(v4("127.0.0.1")));
    }

    #[test]
    fn loopback_resolver_without_mapping_is_dropped() {
        let r = resolv(&["127.0.0.53", "203.0.113.53"], &[]);
        let n = net(&ok(passt(&["--no-map-gw"])), &host(), &r);
        assert_eq!(ip4(&n).dns, vec![v4("203.0.113.53")]);
        assert_eq!((ip4(&n).dns_match, ip4(&n).dns_host), (None, None));
    }

    #[test]
    fn gateway_that_is_also_resolver_keeps_dns_to_it() {
        let r = resolv(&["192.0.2.1"], &[]);
        let n = net(&ok(passt(&[])), &host(), &r);
        let i4 = ip4(&n);
        assert_eq!(i4.dns, vec![v4("192.0.2.1")]);
        assert_eq!(i4.dns_match, Some(v4("192.0.2.1")));
        assert_eq!(i4.dns_host, Some(v4("192.0.2.1")));
    }

    #[test]
    fn dns_forward_defaults_host_to_first_resolver() {
        let r = resolv(&["127.0.0.53", "203.0.113.53"], &[]);
        let c = ok(pasta(&[
            "--dns-forward",
            "169.254.1.1",
            "--no-map-gw",
            "--dhcp-dns",
        ]));
        let n = net(&c, &host(), &r);
        let i4 = ip4(&n);
        assert_eq!(i4.dns_match, Some(v4("169.254.1.1")));
        assert_eq!(i4.dns_host, Some(v4("127.0.0.53")));
        // The loopback resolver is advertised as the forwarding address.
        assert_eq!(i4.dns, vec![v4("169.254.1.1"), v4("203.0.113.53")]);
        // No IPv6 forwarding asked for, no IPv6 resolver.
        assert_eq!((ip6(&n).dns_match, ip6(&n).dns_host), (None, None));
    }

    #[test]
    fn dns_forward_with_explicit_dns_host() {
        let r = resolv(&["203.0.113.53", "2001:db8::53"], &[]);
        let c = ok(passt(&[
            "--dns-forward",
            "2001:db8::99",
            "--dns-host",
            "2001:db8::100",
        ]));
        let n = net(&c, &host(), &r);
        assert_eq!(ip6(&n).dns_match, Some(v6("2001:db8::99")));
        assert_eq!(ip6(&n).dns_host, Some(v6("2001:db8::100")));
        assert_eq!(ip6(&n).dns, vec![v6("2001:db8::53")]);
    }

    #[test]
    fn dns_none_advertises_nothing() {
        let r = resolv(&["127.0.0.53", "203.0.113.53", "2001:db8::53"], &[]);
        let n = net(&ok(passt(&["-D", "none"])), &host(), &r);
        assert!(ip4(&n).dns.is_empty() && ip6(&n).dns.is_empty());
        assert_eq!((ip4(&n).dns_match, ip4(&n).dns_host), (None, None));
    }

    #[test]
    fn dns_list_replaces_host_resolvers_of_its_version_only() {
        let r = resolv(&["203.0.113.53", "2001:db8::53"], &[]);
        let n = net(
            &ok(passt(&["-D", "127.0.0.1", "-D", "192.0.2.200"])),
            &host(),
            &r,
        );
        // Given addresses are not remapped.
        assert_eq!(ip4(&n).dns, vec![v4("127.0.0.1"), v4("192.0.2.200")]);
        assert_eq!(ip4(&n).dns_match, None);
        assert_eq!(ip6(&n).dns, vec![v6("2001:db8::53")]);
    }

    #[test]
    fn search_options() {
        let r = resolv(&[], &["a.example", "b.example"]);
        let n = net(&ok(passt(&["-S", "c.example d.example"])), &host(), &r);
        assert_eq!(
            n.search,
            vec!["c.example".to_string(), "d.example".to_string()]
        );
        let n = net(&ok(passt(&["-S", "none"])), &host(), &r);
        assert!(n.search.is_empty());
        let n = net(
            &ok(passt(&["--no-dhcp-search", "-S", "c.example"])),
            &host(),
            &r,
        );
        assert!(n.search.is_empty());
    }

    #[test]
    fn mtu_zero_is_not_advertised() {
        let n = net(&ok(passt(&["-m", "0"])), &host(), &resolv(&[], &[]));
        assert_eq!((n.mtu, n.advertise_mtu), (0, None));
        let n = net(&ok(passt(&["-m", "1500"])), &host(), &resolv(&[], &[]));
        assert_eq!((n.mtu, n.advertise_mtu), (1500, Some(1500)));
        // Too small for IPv6: a warning only, as upstream.
        let n = net(&ok(passt(&["-m", "1000"])), &host(), &resolv(&[], &[]));
        assert_eq!(n.advertise_mtu, Some(1000));
    }

    #[test]
    fn identity_options_are_carried() {
        let c = ok(passt(&[
            "-M",
            "02:00:00:00:00:42",
            "-H",
            "vm",
            "--fqdn",
            "vm.example",
            "-o",
            "192.0.2.10",
            "-o",
            "2001:db8::10",
        ]));
        let n = net(&c, &host(), &resolv(&[], &[]));
        assert_eq!(n.our_mac, [2, 0, 0, 0, 0, 0x42]);
        assert_eq!(n.hostname.as_deref(), Some("vm"));
        assert_eq!(n.fqdn.as_deref(), Some("vm.example"));
        assert_eq!(ip4(&n).outbound, Some(v4("192.0.2.10")));
        assert_eq!(ip6(&n).outbound, Some(v6("2001:db8::10")));
    }

    #[test]
    fn helpers_parse_numbers_and_masks() {
        assert_eq!(parse_ulong("0"), Some(0));
        assert_eq!(parse_ulong("0x10"), Some(16));
        assert_eq!(parse_ulong("010"), Some(8));
        assert_eq!(parse_ulong("08"), None);
        assert_eq!(parse_netmask("255.255.128.0"), Some(17));
        assert_eq!(class_prefix_len(v4("10.0.0.1")), 8);
        assert_eq!(class_prefix_len(v4("172.16.0.1")), 16);
        assert_eq!(class_prefix_len(v4("192.168.0.1")), 24);
        assert_eq!(class_prefix_len(v4("240.0.0.1")), 32);
        assert!(is_v4_compat(&v6("::192.0.2.1")) && !is_v4_compat(&v6("::1")));
    }
}
