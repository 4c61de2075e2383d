//! The tap classifier (`tap_tc`): counts the frames it sees per protocol,
//! and answers ARP requests and IPv6 neighbour solicitations for the
//! addresses pasta answers for, in the kernel.
//!
//! Attached to the tap device (TCX, or clsact on older kernels), egress: the
//! frames the namespace sends, which pasta reads from the tap fd. A request
//! it answers is rewritten in place into the reply and redirected to the
//! tap's ingress (`bpf_redirect(ifindex, BPF_F_INGRESS)`), so the namespace
//! receives it as if pasta had written it and pasta never reads the request.
//! What it answers mirrors pasta's userspace responders (`svc::arp`,
//! `svc::ndp`): any address but the guest's own, never probes, gratuitous
//! ARP or DAD. Anything else, or anything it doesn't fully check (NS with
//! options other than one source link-layer address), goes to pasta as
//! before, unchanged. Until pasta fills [`CONF_MAP`] it answers nothing.

/// Program name in the object (a `classifier`).
pub const PROG: &str = "tap_tc";
/// `PerCpuArray<u64>` of [`TC_COUNTERS`] frame counters, indexed by [`Proto`].
pub const COUNTERS_MAP: &str = "TAP_COUNTERS";

/// Index into [`COUNTERS_MAP`]: what a frame carried, by its EtherType and,
/// for IP, its protocol number (first header only, no extension-header walk).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// ARP (EtherType 0x0806).
    Arp = 0,
    /// IPv4, TCP.
    Tcp4 = 1,
    /// IPv4, UDP.
    Udp4 = 2,
    /// IPv4, ICMP.
    Icmp4 = 3,
    /// IPv6, TCP.
    Tcp6 = 4,
    /// IPv6, UDP.
    Udp6 = 5,
    /// IPv6, ICMPv6.
    Icmp6 = 6,
    /// Any other IPv4 or IPv6 protocol, or IPv6 with extension headers.
    OtherIp = 7,
    /// Any other EtherType, or a frame too short for its headers.
    Other = 8,
}

/// Number of counters in [`COUNTERS_MAP`].
pub const TC_COUNTERS: u32 = 9;

/// Counter names, indexed like [`Proto`], as pasta prints them.
pub const PROTO_NAMES: [&str; TC_COUNTERS as usize] = [
    "arp", "tcp4", "udp4", "icmp4", "tcp6", "udp6", "icmp6", "other_ip", "other",
];

/// `Array<TapConf>` of one entry (index 0): what to answer, filled by pasta
/// once the program is attached. All zero (the initial state): answer
/// nothing.
pub const CONF_MAP: &str = "TAP_CONF";
/// `PerCpuArray<u64>` of [`TC_ANSWERS`] counters, indexed by [`Answer`].
pub const ANSWERS_MAP: &str = "TAP_ANSWERS";

/// [`TapConf::flags`] bit: answer ARP requests (IPv4 is configured).
pub const CONF_ARP: u32 = 1;
/// [`TapConf::flags`] bit: answer neighbour solicitations (IPv6 is
/// configured and NDP is not disabled).
pub const CONF_NDP: u32 = 2;

/// What the tap classifier answers for, as pasta's responders do. Addresses
/// are stored as their network-order octets; 48 bytes, no padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapConf {
    /// [`CONF_ARP`], [`CONF_NDP`]; other bits must be zero.
    pub flags: u32,
    /// The guest's IPv4 address: ARP requests for it are left alone.
    pub guest4: [u8; 4],
    /// The guest's IPv6 address: solicitations for it are left alone
    /// (unspecified: none).
    pub guest6: [u8; 16],
    /// Our link-local address, the source of neighbour advertisements.
    pub our_ll: [u8; 16],
    /// Our MAC: source of every reply and the address they announce.
    pub our_mac: [u8; 6],
    /// Zero.
    pub pad: [u8; 2],
}

/// Index into [`ANSWERS_MAP`]: what the classifier did with a request.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// ARP requests answered in the kernel.
    Arp = 0,
    /// Neighbour solicitations answered in the kernel.
    Ns = 1,
    /// ARP requests or solicitations seen but left to pasta: not for us
    /// (probe, gratuitous, DAD, the guest's own address), with options we
    /// don't check, or malformed (pasta counts and drops those).
    Passed = 2,
    /// Answers built but not sent: resizing the frame failed (the request
    /// went to pasta unchanged) or writing the reply did (the frame was
    /// dropped; the namespace retries).
    Failed = 3,
}

/// Number of counters in [`ANSWERS_MAP`].
pub const TC_ANSWERS: u32 = 4;

/// Answer counter names, indexed like [`Answer`], as pasta prints them.
pub const ANSWER_NAMES: [&str; TC_ANSWERS as usize] = ["arp_replies", "na_replies", "passed", "failed"];

crate::pod!(TapConf);
