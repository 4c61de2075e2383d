//! # Theory of operation
//!
//! A fixed-capacity slab of flows plus an open-addressing hash index.
//!
//! - Slots are allocated from a free list (LIFO, so recently used slots and
//!   their cache lines are reused first). Capacity is fixed at start-up:
//!   when every slot is taken, [`FlowTable::alloc`] returns `None` and the
//!   caller refuses the new flow (and counts it); existing flows are
//!   unaffected. Nothing is allocated after start-up.
//! - The index maps (pif, protocol, flowside) of one side to its [`Sidx`].
//!   A flow puts at most two sides in it (UDP flows from forwarded ports
//!   are found from both), so it has four times as many buckets as the
//!   slab has slots, rounded up to a power of two: the load factor stays
//!   at or below 1/2, and there is always an empty bucket; collisions are
//!   resolved by linear probing, and removal shifts later entries back
//!   (no tombstones, so lookups never degrade over time).
//! - The hash is SipHash-1-3 with a 128-bit key from getrandom(2), so that
//!   a guest cannot choose flowsides that collide on purpose.
//! - Flows are freed in the deferred pass ([`FlowTable::defer_free`]) after
//!   each epoll cycle.

use std::hash::Hasher;

use siphasher::sip::SipHasher13;

use super::{FlowSide, FlowState, Pif, Proto, Sidx};

/// One flow: the common part, plus protocol data `D`.
#[derive(Debug)]
pub struct Flow<D> {
    /// Lifecycle state.
    pub state: FlowState,
    /// Protocol.
    pub proto: Proto,
    /// Interface of each side ([`super::INI`], [`super::TGT`]).
    pub pif: [Pif; 2],
    /// Addresses and ports of each side.
    pub side: [FlowSide; 2],
    /// Protocol-specific state.
    pub data: D,
    /// Sides that are in the hash index.
    hashed: [bool; 2],
}

impl<D> Flow<D> {
    /// The side on the tap ([`super::INI`] for flows the guest opened,
    /// [`super::TGT`] for flows forwarded to it).
    pub fn tap_side(&self) -> usize {
        usize::from(self.pif[super::INI] != Pif::Tap)
    }
}

/// The flow table; see the module documentation.
#[derive(Debug)]
pub struct FlowTable<D> {
    flows: Vec<Flow<D>>,
    free: Vec<u32>,
    buckets: Vec<u32>,
    mask: usize,
    key: (u64, u64),
    closing: Vec<u32>,
    active: usize,
}

const EMPTY: u32 = u32::MAX;

impl<D: Default> FlowTable<D> {
    /// A table of `capacity` flows (at least 1, at most 2^30), keyed with
    /// `key` (use [`random_key`]).
    pub fn new(capacity: usize, key: (u64, u64)) -> Self {
        let capacity = capacity.clamp(1, 1 << 30);
        let nbuckets = (capacity * 4).next_power_of_two();
        let flows = (0..capacity)
            .map(|_| Flow {
                state: FlowState::Free,
                proto: Proto::Udp,
                pif: [Pif::None; 2],
                side: [FlowSide::UNSPEC; 2],
                data: D::default(),
                hashed: [false; 2],
            })
            .collect();
        FlowTable {
            flows,
            free: (0..capacity as u32).rev().collect(),
            buckets: vec![EMPTY; nbuckets],
            mask: nbuckets - 1,
            key,
            closing: Vec::with_capacity(capacity),
            active: 0,
        }
    }
}

impl<D> FlowTable<D> {
    /// Slots in the table.
    pub fn capacity(&self) -> usize {
        self.flows.len()
    }

    /// Flows in use (active or closing).
    pub fn len(&self) -> usize {
        self.active
    }

    /// True if every slot is taken: a new flow would be refused.
    pub fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    /// True if no flow is in use.
    pub fn is_empty(&self) -> bool {
        self.active == 0
    }

    fn hash(&self, pif: Pif, proto: Proto, s: &FlowSide) -> usize {
        let mut h = SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write_u8(pif as u8);
        h.write_u8(proto as u8);
        h.write(&s.eaddr.0);
        h.write(&s.oaddr.0);
        h.write_u16(s.eport);
        h.write_u16(s.oport);
        h.finish() as usize
    }

    /// Take a free slot and make it an active flow with the given sides.
    /// Returns `None` when the table is full.
    pub fn alloc(&mut self, proto: Proto, pif: [Pif; 2], side: [FlowSide; 2], data: D) -> Option<usize> {
        let idx = self.free.pop()? as usize;
        let f = &mut self.flows[idx];
        debug_assert_eq!(f.state, FlowState::Free);
        f.state = FlowState::Active;
        f.proto = proto;
        f.pif = pif;
        f.side = side;
        f.data = data;
        f.hashed = [false; 2];
        self.active += 1;
        Some(idx)
    }

    /// The flow at `idx`, if that slot is in use.
    pub fn get(&self, idx: usize) -> Option<&Flow<D>> {
        self.flows.get(idx).filter(|f| f.state != FlowState::Free)
    }

    /// The flow at `idx`, mutably, if that slot is in use.
    pub fn get_mut(&mut self, idx: usize) -> Option<&mut Flow<D>> {
        self.flows.get_mut(idx).filter(|f| f.state != FlowState::Free)
    }

    /// Put side `side` of flow `idx` in the hash index.
    pub fn hash_insert(&mut self, idx: usize, side: usize) {
        let f = &self.flows[idx];
        debug_assert!(f.state == FlowState::Active && !f.hashed[side]);
        let mut b = self.hash(f.pif[side], f.proto, &f.side[side]) & self.mask;
        while self.buckets[b] != EMPTY {
            b = (b + 1) & self.mask;
        }
        self.buckets[b] = Sidx::new(idx as u32, side).raw();
        self.flows[idx].hashed[side] = true;
    }

    /// Find the flow side with this pif, protocol and flowside.
    pub fn lookup(&self, pif: Pif, proto: Proto, s: &FlowSide) -> Option<Sidx> {
        let mut b = self.hash(pif, proto, s) & self.mask;
        loop {
            let v = self.buckets[b];
            if v == EMPTY {
                return None;
            }
            let sidx = Sidx::from_raw(v);
            let f = &self.flows[sidx.flow()];
            if f.pif[sidx.side()] == pif && f.proto == proto && f.side[sidx.side()] == *s {
                return Some(sidx);
            }
            b = (b + 1) & self.mask;
        }
    }

    fn hash_remove(&mut self, idx: usize) {
        for side in [super::INI, super::TGT] {
            if std::mem::take(&mut self.flows[idx].hashed[side]) {
                self.hash_remove_side(idx, side);
            }
        }
    }

    fn hash_remove_side(&mut self, idx: usize, side: usize) {
        let want = Sidx::new(idx as u32, side).raw();
        let f = &self.flows[idx];
        let mut b = self.hash(f.pif[side], f.proto, &f.side[side]) & self.mask;
        while self.buckets[b] != want {
            debug_assert_ne!(self.buckets[b], EMPTY, "hashed flow missing from index");
            if self.buckets[b] == EMPTY {
                return;
            }
            b = (b + 1) & self.mask;
        }
        // Backward-shift deletion (Knuth 6.4, algorithm R).
        let mut hole = b;
        let mut j = b;
        loop {
            j = (j + 1) & self.mask;
            let v = self.buckets[j];
            if v == EMPTY {
                break;
            }
            let s = Sidx::from_raw(v);
            let g = &self.flows[s.flow()];
            let home = self.hash(g.pif[s.side()], g.proto, &g.side[s.side()]) & self.mask;
            // Move v into the hole unless its home lies cyclically in (hole, j].
            let in_range = if hole <= j { hole < home && home <= j } else { hole < home || home <= j };
            if !in_range {
                self.buckets[hole] = v;
                hole = j;
            }
        }
        self.buckets[hole] = EMPTY;
    }

    /// Mark flow `idx` for freeing in the next deferred pass. It leaves the
    /// hash index now, so no new packet finds it.
    pub fn close(&mut self, idx: usize) {
        if let Some(f) = self.flows.get(idx) {
            if f.state == FlowState::Active {
                self.hash_remove(idx);
                self.flows[idx].state = FlowState::Closing;
                self.closing.push(idx as u32);
            }
        }
    }

    /// Free every flow closed since the last pass, calling `release` on each
    /// first (to close its sockets). Run after each epoll cycle.
    pub fn defer_free(&mut self, mut release: impl FnMut(&mut Flow<D>)) {
        while let Some(idx) = self.closing.pop() {
            let f = &mut self.flows[idx as usize];
            release(f);
            f.state = FlowState::Free;
            self.free.push(idx);
            self.active -= 1;
        }
    }

    /// Indices of every active flow, for timer scans.
    pub fn active_indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.flows.iter().enumerate().filter(|(_, f)| f.state == FlowState::Active).map(|(i, _)| i)
    }
}

/// A random SipHash key from getrandom(2).
///
/// # Errors
/// The OS error of getrandom.
///
/// Syscalls: getrandom.
pub fn random_key() -> std::io::Result<(u64, u64)> {
    let mut b = [0u8; 16];
    let mut got = 0;
    while got < b.len() {
        // SAFETY: writes at most the remaining length into b.
        let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), b.len() - got, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        got += n as usize;
    }
    let (a, c) = b.split_at(8);
    Ok((u64::from_ne_bytes(a.try_into().unwrap_or_default()), u64::from_ne_bytes(c.try_into().unwrap_or_default())))
}

#[cfg(test)]
mod tests {
    use super::super::{Inany, INI, TGT};
    use super::*;
    use std::net::Ipv4Addr;

    fn side(port: u16) -> FlowSide {
        FlowSide {
            eaddr: Inany::from(Ipv4Addr::new(192, 0, 2, 2)),
            oaddr: Inany::from(Ipv4Addr::new(198, 51, 100, 1)),
            eport: port,
            oport: 53,
        }
    }

    fn add(t: &mut FlowTable<u32>, port: u16) -> Option<usize> {
        let i = t.alloc(Proto::Udp, [Pif::Tap, Pif::Host], [side(port), FlowSide::UNSPEC], u32::from(port))?;
        t.hash_insert(i, INI);
        Some(i)
    }

    #[test]
    fn lookup_finds_inserted_side_only_with_same_pif_and_proto() {
        let mut t = FlowTable::<u32>::new(16, (1, 2));
        let i = add(&mut t, 1000).unwrap();
        assert_eq!(t.lookup(Pif::Tap, Proto::Udp, &side(1000)), Some(Sidx::new(i as u32, INI)));
        assert_eq!(t.lookup(Pif::Host, Proto::Udp, &side(1000)), None);
        assert_eq!(t.lookup(Pif::Tap, Proto::Ping, &side(1000)), None);
        assert_eq!(t.lookup(Pif::Tap, Proto::Udp, &side(1001)), None);
    }

    #[test]
    fn full_table_refuses_new_flow_and_keeps_old_ones() {
        let mut t = FlowTable::<u32>::new(4, (3, 4));
        for p in 0..4 {
            assert!(add(&mut t, p).is_some());
        }
        assert!(add(&mut t, 99).is_none());
        for p in 0..4 {
            assert!(t.lookup(Pif::Tap, Proto::Udp, &side(p)).is_some());
        }
    }

    #[test]
    fn close_unhashes_at_once_and_frees_after_deferred_pass() {
        let mut t = FlowTable::<u32>::new(2, (5, 6));
        let a = add(&mut t, 1).unwrap();
        let _b = add(&mut t, 2).unwrap();
        t.close(a);
        assert_eq!(t.lookup(Pif::Tap, Proto::Udp, &side(1)), None);
        assert!(add(&mut t, 3).is_none(), "slot must stay taken until the deferred pass");
        let mut released = vec![];
        t.defer_free(|f| released.push(f.data));
        assert_eq!(released, vec![1]);
        assert!(add(&mut t, 3).is_some());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn removal_keeps_every_other_entry_reachable_under_churn() {
        // Small key space forces long probe chains and wrap-around.
        let mut t = FlowTable::<u32>::new(512, (7, 8));
        let mut live: Vec<(u16, usize)> = vec![];
        let mut x: u32 = 0x1234_5678;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if !x.is_multiple_of(3) && live.len() < 500 {
                let port = (step % 60_000) as u16;
                if t.lookup(Pif::Tap, Proto::Udp, &side(port)).is_none() {
                    let i = add(&mut t, port).unwrap();
                    live.push((port, i));
                }
            } else if !live.is_empty() {
                let (port, i) = live.swap_remove(x as usize % live.len());
                t.close(i);
                t.defer_free(|_| {});
                assert_eq!(t.lookup(Pif::Tap, Proto::Udp, &side(port)), None);
            }
            if step % 1000 == 0 {
                for &(p, i) in &live {
                    assert_eq!(t.lookup(Pif::Tap, Proto::Udp, &side(p)).map(|s| s.flow()), Some(i));
                }
            }
        }
        assert_eq!(t.len(), live.len());
        let _ = TGT;
    }

    #[test]
    fn lookup_ends_in_a_full_table_of_flows_hashed_on_both_sides() {
        // Flows from forwarded UDP ports are found from either side: a
        // table full of them must still leave empty buckets, or a lookup
        // of a new flowside never ends.
        let mut t = FlowTable::<u32>::new(4, (9, 10));
        for p in 0..4u16 {
            let i = t.alloc(Proto::Udp, [Pif::Host, Pif::Tap], [side(p), side(p + 100)], 0).unwrap();
            t.hash_insert(i, INI);
            t.hash_insert(i, TGT);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(t.lookup(Pif::Tap, Proto::Udp, &side(999)));
        });
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(2)), Ok(None), "lookup must end");
    }

    #[test]
    fn random_key_is_not_constant() {
        assert_ne!(random_key().unwrap(), random_key().unwrap());
    }
}
