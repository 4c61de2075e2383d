//! # Theory of operation
//!
//! The tap classifier (`passt_ebpf::tc`): attached at the tap device's
//! egress in the namespace, it sees every frame the namespace sends us
//! before the tap fd does, and counts them per protocol in a per-CPU array.
//! pasta prints the counts at exit next to its own counters.

use std::os::fd::OwnedFd;

use aya::maps::{Map, MapData, PerCpuArray};
use passt_ebpf::tc::{PROG, PROTO_NAMES, TC_COUNTERS};

use super::Attach;

/// What the tap classifier needs: egress of `ifname` in `netns`.
pub fn attaches(netns: OwnedFd, ifname: &str) -> Vec<Attach> {
    vec![Attach::Tc { prog: PROG.into(), netns, ifname: ifname.into(), egress: true }]
}

/// The classifier's counters.
pub struct TapCounters(PerCpuArray<MapData, u64>);

impl TapCounters {
    /// From the `TAP_COUNTERS` map.
    ///
    /// # Errors
    /// Wrong map type or value size.
    pub fn new(map: Map) -> anyhow::Result<Self> {
        Ok(Self(PerCpuArray::try_from(map)?))
    }

    /// Frames counted per protocol (summed over CPUs), indexed like
    /// `passt_ebpf::tc::Proto`.
    pub fn read(&self) -> [u64; TC_COUNTERS as usize] {
        let mut out = [0; TC_COUNTERS as usize];
        for (i, o) in out.iter_mut().enumerate() {
            if let Ok(v) = self.0.get(&(i as u32), 0) {
                *o = v.iter().sum();
            }
        }
        out
    }
}

impl std::fmt::Display for TapCounters {
    /// `ebpf tap frames: arp N tcp4 N ...` (non-zero counts only).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ebpf tap frames:")?;
        for (name, n) in PROTO_NAMES.iter().zip(self.read()) {
            if n != 0 {
                write!(f, " {name} {n}")?;
            }
        }
        Ok(())
    }
}
