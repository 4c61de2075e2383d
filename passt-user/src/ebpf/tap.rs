//! # Theory of operation
//!
//! The tap classifier (`passt_ebpf::tc`): attached at the tap device's
//! egress in the namespace, it sees every frame the namespace sends us
//! before the tap fd does, counts them per protocol in a per-CPU array, and
//! answers ARP requests and neighbour solicitations in the kernel.
//!
//! Its answers are the ones `svc::arp` and `svc::ndp` would give: pasta
//! writes what they need ([`tap_conf`]: our MAC and link-local address, the
//! guest's addresses, which families are on) into the program's config map
//! once, right after the attach ([`TapCounters::configure`]); until then the
//! program answers nothing and requests reach us as before. Anything the
//! program doesn't answer still reaches the tap fd, so userspace keeps
//! answering whatever is left, and everything when the program is absent or
//! detached.
//!
//! pasta prints both counter sets at exit next to its own counters
//! (`svc_arp_frames`, `svc_ns_requests`: what userspace still saw).

use std::os::fd::OwnedFd;

use aya::maps::{Array, Map, MapData, PerCpuArray};
use passt_ebpf::tc::{TapConf, ANSWER_NAMES, CONF_ARP, CONF_NDP, PROG, PROTO_NAMES, TC_ANSWERS, TC_COUNTERS};

use super::Attach;
use crate::svc::SvcConf;

/// What the tap classifier needs: egress of `ifname` in `netns`.
pub fn attaches(netns: OwnedFd, ifname: &str) -> Vec<Attach> {
    vec![Attach::Tc { prog: PROG.into(), netns, ifname: ifname.into(), egress: true }]
}

/// The program's configuration for answering as the userspace responders
/// configured by `svc` do: ARP if IPv4 is on (`v4` and `svc.v4`), NS if
/// IPv6 is on (`v6` and `svc.v6`) and NDP isn't disabled (`svc.no_ndp`).
/// Addresses go in as network-order octets.
pub fn tap_conf(svc: &SvcConf, v4: bool, v6: bool) -> TapConf {
    let mut c = TapConf { our_mac: svc.our_mac, ..TapConf::default() };
    if let Some(a) = svc.v4.as_ref().filter(|_| v4) {
        c.flags |= CONF_ARP;
        c.guest4 = a.addr.octets();
    }
    if let Some(a) = svc.v6.as_ref().filter(|_| v6 && !svc.no_ndp) {
        c.flags |= CONF_NDP;
        c.guest6 = a.addr.octets();
        c.our_ll = a.our_ll.octets();
    }
    c
}

/// The classifier's maps: frame counters, answer counters, configuration.
pub struct TapCounters {
    /// `TAP_COUNTERS`: frames per protocol.
    frames: PerCpuArray<MapData, u64>,
    /// `TAP_ANSWERS`: what it did with requests.
    answers: PerCpuArray<MapData, u64>,
    /// `TAP_CONF`: what it answers for.
    conf: Array<MapData, TapConf>,
}

impl TapCounters {
    /// From the `TAP_COUNTERS`, `TAP_ANSWERS` and `TAP_CONF` maps.
    ///
    /// # Errors
    /// Wrong map type, key or value size.
    pub fn new(frames: Map, answers: Map, conf: Map) -> anyhow::Result<Self> {
        Ok(Self {
            frames: PerCpuArray::try_from(frames)?,
            answers: PerCpuArray::try_from(answers)?,
            conf: Array::try_from(conf)?,
        })
    }

    /// Have the program answer as `conf` says (see [`tap_conf`]).
    ///
    /// # Errors
    /// The map update failed (bpf(2) BPF_MAP_UPDATE_ELEM).
    pub fn configure(&mut self, conf: &TapConf) -> anyhow::Result<()> {
        Ok(self.conf.set(0, conf, 0)?)
    }

    /// Frames counted per protocol (summed over CPUs), indexed like
    /// `passt_ebpf::tc::Proto`.
    pub fn read(&self) -> [u64; TC_COUNTERS as usize] {
        sum(&self.frames)
    }

    /// Requests answered, passed and failed (summed over CPUs), indexed
    /// like `passt_ebpf::tc::Answer`.
    pub fn answers(&self) -> [u64; TC_ANSWERS as usize] {
        sum(&self.answers)
    }
}

/// Each slot of a per-CPU counter array, summed over CPUs (0 if unreadable).
fn sum<const N: usize>(m: &PerCpuArray<MapData, u64>) -> [u64; N] {
    let mut out = [0; N];
    for (i, o) in out.iter_mut().enumerate() {
        if let Ok(v) = m.get(&(i as u32), 0) {
            *o = v.iter().sum();
        }
    }
    out
}

impl std::fmt::Display for TapCounters {
    /// `ebpf tap frames: arp N tcp4 N ...; answers: arp_replies N ...`
    /// (non-zero counts only).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ebpf tap frames:")?;
        for (name, n) in PROTO_NAMES.iter().zip(self.read()) {
            if n != 0 {
                write!(f, " {name} {n}")?;
            }
        }
        write!(f, "; answers:")?;
        for (name, n) in ANSWER_NAMES.iter().zip(self.answers()) {
            if n != 0 {
                write!(f, " {name} {n}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svc::test_util::conf as svc;
    use std::net::Ipv6Addr;

    #[test]
    fn conf_carries_addresses_in_network_order() {
        let c = tap_conf(&svc(), true, true);
        assert_eq!(c.flags, CONF_ARP | CONF_NDP);
        assert_eq!(c.guest4, [192, 0, 2, 10]);
        assert_eq!(c.guest6, "2001:db8::10".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(c.our_ll[..2], [0xfe, 0x80]);
        assert_eq!(c.our_ll[15], 1);
        assert_eq!(c.our_mac, svc().our_mac);
        assert_eq!(std::mem::size_of::<TapConf>(), 48, "no implicit padding");
    }

    #[test]
    fn conf_answers_nothing_for_disabled_families() {
        let c = tap_conf(&svc(), false, true);
        assert_eq!(c.flags, CONF_NDP);
        assert_eq!(c.guest4, [0; 4]);
        let mut s = svc();
        s.no_ndp = true;
        let c = tap_conf(&s, true, true);
        assert_eq!(c.flags, CONF_ARP);
        assert_eq!(c.our_ll, [0; 16]);
        s.v4 = None;
        assert_eq!(tap_conf(&s, true, true).flags, 0);
    }
}
