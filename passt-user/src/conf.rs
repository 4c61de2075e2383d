//! # Theory of operation
//!
//! Command-line parsing (clap) with upstream's option names and semantics
//! (passt(1)), and the resolution of the parsed options against what the host
//! has ([`crate::host::HostNet`], /etc/resolv.conf) into the [`NetConf`] that
//! the data plane and the local services use.
//!
//! Parsing is pure: [`Conf::parse`] takes argv and returns either a [`Conf`]
//! or a [`ConfError`] whose `Display` is the one line printed before exiting
//! with status 1. [`resolve`] is pure as well: host facts in, [`NetConf`] out.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::host::{HostNet, Resolv};

/// Which program we are, chosen by argv[0] (basename starting with "pasta").
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
    /// `-D addr` (repeatable): advertise exactly these, unmapped.
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
    /// passt or pasta (argv[0]).
    pub mode: Mode,
    /// `-f/--foreground` (implied for pasta's spawn form).
    pub foreground: bool,
    /// `-d/--debug`.
    pub debug: bool,
    /// `--trace` (implies `debug`).
    pub trace: bool,
    /// `-q/--quiet`.
    pub quiet: bool,
    /// `-l/--log-file PATH`.
    pub log_file: Option<PathBuf>,
    /// `-P/--pid FILE`.
    pub pid_file: Option<PathBuf>,
    /// `-m/--mtu`: `None` is the default (65520), `Some(0)` disables advertising.
    pub mtu: Option<u16>,
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
    /// `-o/--outbound` IPv4 source address for outbound sockets.
    pub outbound4: Option<Ipv4Addr>,
    /// `-o/--outbound` IPv6 source address for outbound sockets.
    pub outbound6: Option<Ipv6Addr>,
    /// `-D/--dns`.
    pub dns: DnsOpt,
    /// `-S/--search`.
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
    /// `-H/--hostname` (DHCP option 12).
    pub hostname: Option<String>,
    /// `--fqdn` (DHCP option 81, DHCPv6 option 39).
    pub fqdn: Option<String>,
    /// `--no-udp`.
    pub no_udp: bool,
    /// `--no-icmp` (implies `no_ndp`).
    pub no_icmp: bool,
    /// `--no-dhcp`.
    pub no_dhcp: bool,
    /// `--no-ndp`.
    pub no_ndp: bool,
    /// `--no-dhcpv6`.
    pub no_dhcpv6: bool,
    /// `--no-ra`.
    pub no_ra: bool,
    /// `-4/--ipv4-only`.
    pub ipv4_only: bool,
    /// `-6/--ipv6-only`.
    pub ipv6_only: bool,
    /// pasta: what to attach to.
    pub target: PastaTarget,
    /// `--userns PATH`.
    pub userns: Option<PathBuf>,
    /// `--netns-only` (implied by `--netns` without `--userns`).
    pub netns_only: bool,
    /// `--no-netns-quit`.
    pub no_netns_quit: bool,
    /// `--config-net`.
    pub config_net: bool,
    /// `-I/--ns-ifname`.
    pub ns_ifname: Option<String>,
    /// `--ns-mac-addr`.
    pub ns_mac: Option<[u8; 6]>,
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
    pub gw: Ipv4Addr,
    /// Resolvers advertised via DHCP option 6 (empty: none).
    pub dns: Vec<Ipv4Addr>,
    /// Guest-side address whose port 53 traffic goes to `dns_host`
    /// (`--dns-forward`, or the mapped gateway when a host resolver is loopback).
    pub dns_match: Option<Ipv4Addr>,
    /// Host-side resolver that `dns_match` traffic is sent to.
    pub dns_host: Option<Ipv4Addr>,
    /// Guest-side address translated to 127.0.0.1 (`--map-host-loopback`).
    pub map_host_loopback: Option<Ipv4Addr>,
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
    /// IPv6 settings; `None` when IPv6 is disabled (`-4`) or unavailable.
    pub ip6: Option<Ip6Conf>,
    /// Tap MTU (65520 by default).
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
