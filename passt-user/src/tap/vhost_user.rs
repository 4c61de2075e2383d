//! # Theory of operation
//!
//! passt's `--vhost-user` back-end: the guest's virtio-net device is
//! implemented here, in passt, and QEMU (the vhost-user *front-end*) only
//! hands us the guest's memory and the queues' notification fds over a UNIX
//! socket. Frames then move by copying between guest memory and our
//! buffers, with no system call per frame.
//!
//! ## Protocol flow (QEMU docs/interop/vhost-user.rst)
//!
//! One front-end at a time connects to the listening socket; a second
//! connection while one is active is accepted and closed at once. Its
//! messages arrive on the control socket, each one handled by the `vhost`
//! crate's [`BackendReqHandler`] (framing, fd passing, REPLY_ACK) calling
//! into [`VhostUserBackendReqHandlerMut`] here. QEMU's usual sequence:
//!
//! 1. GET_FEATURES, GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, SET_OWNER
//!    at start-up;
//! 2. when the guest driver starts the device: SET_FEATURES (what the
//!    guest accepted), SET_MEM_TABLE, then per queue SET_VRING_NUM,
//!    SET_VRING_BASE, SET_VRING_ADDR, SET_VRING_KICK, SET_VRING_CALL, and
//!    SET_VRING_ENABLE 1;
//! 3. GET_VRING_BASE stops a queue (guest reset, QEMU stopping); step 2
//!    may follow again.
//!
//! A queue is *usable* once it has a kick fd (started), is enabled (at
//! once when VHOST_USER_F_PROTOCOL_FEATURES is not negotiated) and its
//! rings lie inside the memory table. The device is *ready* when both
//! queues are: that transition gives [`TapEvent::Connected`] (once per
//! start of the device, so once per plain connection). A closed control
//! socket, or a message we cannot make sense of, ends the connection:
//! [`TapEvent::Disconnected`] and back to listening, or
//! [`TapError::Gone`] with `--one-off`.
//!
//! Offered: VIRTIO_F_VERSION_1, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM,
//! VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
//! VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6,
//! VIRTIO_NET_F_MRG_RXBUF, VIRTIO_RING_F_EVENT_IDX,
//! VIRTIO_RING_F_INDIRECT_DESC, VHOST_USER_F_PROTOCOL_FEATURES; protocol
//! features: REPLY_ACK only (no MQ, CONFIG, LOG_SHMFD, CONFIGURE_MEM_SLOTS,
//! DEVICE_STATE: no migration).
//!
//! Offloads ([`super::offload`], virtio 1.2 §5.1.6.2-§5.1.6.4): the header
//! of every frame from the guest becomes its [`Offload`] metadata (with
//! CSUM and HOST_TSO4/6 acked, TCP super-frames of up to 64 KiB with
//! partial checksums); frames towards the guest get their header from
//! theirs, and [`Tap::offloads`] offers only what the guest acked:
//! partial checksums with GUEST_CSUM, TCP super-frames with GUEST_TSO4 and
//! GUEST_TSO6 too. A plain frame (complete, valid checksums) has, with
//! GUEST_CSUM acked, VIRTIO_NET_HDR_F_DATA_VALID (as upstream), so the
//! guest skips verifying it, else flags 0; `gso_type` 0.
//! Like upstream passt, VIRTIO_NET_F_MAC is not offered: QEMU gives the
//! guest its MAC.
//!
//! ## Memory
//!
//! SET_MEM_TABLE carries up to 8 regions, each an fd (QEMU's
//! memory-backend-memfd) with an offset, a guest-physical address (GPA) and
//! the address at which QEMU maps it (its user address, QVA). Each region is
//! mmap()ed MAP_SHARED from fd + offset (the offset must be page-aligned, as
//! QEMU's are) into a `vm_memory::GuestMemoryMmap` indexed by GPA, which
//! bounds-checks every access: a descriptor pointing outside the table is an
//! error, never a stray access. Descriptors carry GPAs, but SET_VRING_ADDR
//! carries QVAs: the ring addresses are translated QVA -> GPA through the
//! table, again after every new table.
//!
//! ## Queues (virtio 1.1 §5.1.2, §2.6)
//!
//! Queue 0 receives (frames towards the guest: [`Tap::send_batch`]), queue
//! 1 transmits (frames from the guest: [`Tap::recv_batch`]). Split
//! virtqueues only (virtio 1.1 §2.6): `virtio_queue::Queue` walks the
//! available ring and the descriptor chains (direct or indirect, §2.6.5.3,
//! loops cut by a descriptor budget). Used-ring entries are written here,
//! and the used index published once per batch (one Release store after
//! all entries, §2.6.8): a frame spread over several receive buffers thus
//! appears to the guest all at once. After a batch the guest is signalled
//! through the queue's call eventfd unless it asked not to be: the
//! `used_event` index with VIRTIO_RING_F_EVENT_IDX, else the avail ring's
//! VRING_AVAIL_F_NO_INTERRUPT flag (§2.6.7).
//!
//! Transmit: the TX queue's kick eventfd is polled. On a kick, chains are
//! popped with notifications off; when the ring is empty they are turned
//! back on and the ring checked once more, so that a frame offered in
//! between is not left without a kick (§2.6.10). A batch that stops at
//! [`BATCH`] frames kicks its own eventfd, so the loop comes back for any
//! more. An available index that announces more than the queue can hold
//! stops the queue (a warning) until the guest resets the device.
//!
//! Receive: frames that find no receive buffer wait, in order, in a
//! backlog of at most [`BATCH`] slots' worth of bytes (allocated once),
//! as in a device queue: the guest refills its buffers in bursts, and TCP
//! recovers badly from frames lost at the end of a window. While frames
//! wait, the guest is asked to kick the receive queue when it adds buffers
//! (its kick eventfd is polled too), and the next [`Tap::send_batch`]
//! writes the waiting frames first. Frames past the backlog's room are
//! dropped and counted in [`TxResult::dropped`]; frames that wait count as
//! sent.
//!
//! ## Header (virtio 1.1 §5.1.6)
//!
//! Every frame is preceded, in the guest's buffers, by the 12-byte
//! `struct virtio_net_hdr_mrg_rxbuf`, little-endian (virtio 1.x):
//!
//! ```text
//! 0 flags u8 | 1 gso_type u8 | 2 hdr_len le16 | 4 gso_size le16
//! 6 csum_start le16 | 8 csum_offset le16 | 10 num_buffers le16
//! ```
//!
//! On transmit it is skipped (it may span descriptors, §5.1.6.2); on
//! receive it is written with everything 0 but `num_buffers`: the number of
//! descriptor chains (receive buffers) the frame fills, more than 1 only
//! with VIRTIO_NET_F_MRG_RXBUF (§5.1.6.3, §5.1.6.4).
//!
//! ## Malformed input
//!
//! A transmit chain that points outside guest memory, is broken (a `next`
//! out of the table, a loop), holds device-writable descriptors, carries
//! less than the header plus an Ethernet header, or more than
//! [`MAX_FRAME`] bytes of frame, is returned to the guest unused, its frame
//! dropped and counted ([`VhostUserTap::malformed`]). A receive chain that
//! cannot be written is returned with length 0, and the frame being written
//! dropped and counted the same way. Nothing the guest or the front-end
//! writes can make this code panic.
//!
//! Everything runs in the caller's epoll loop: the listener, the control
//! socket and both queues' kick eventfds are listed by [`Tap::poll_fds`];
//! no thread of the crates' own.
//!
//! One deviation from the `vhost` crate's message handling: QEMU (7.2)
//! sends SET_VRING_ENABLE before SET_FEATURES, which the crate refuses,
//! without a reply, until SET_FEATURES acks VHOST_USER_F_PROTOCOL_FEATURES;
//! until then that message is read and answered here (see
//! `VhostUserTap::early_vring_enable`). vhost-user messages are in the
//! host's byte order; everything in guest memory is little-endian.
//!
//! Syscalls: accept4, recvmsg, sendmsg, recvfrom, sendto, fcntl,
//! setsockopt (SO_RCVTIMEO, SO_SNDTIMEO), mmap, munmap, read, write
//! (eventfds), close.

use std::fs::File;
use std::io;
use std::num::Wrapping;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{fence, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight, VhostUserLog,
    VhostUserMemoryRegion, VhostUserShMemConfig, VhostUserSharedMsg, VhostUserSingleMemoryRegion,
    VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{
    BackendReqHandler, Error as VuError, GpuBackend, Result as VuResult, VhostUserBackendReqHandlerMut,
    VhostUserProtocolFeatures,
};
use vhost::VhostUserMemoryRegionBase;
use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap, GuestRegionMmap};
use vmm_sys_util::eventfd::EventFd;

use super::{Offload, OffloadCaps, PollFd, RxBatch, Tap, TapError, TapEvent, TxBatch, TxResult, BATCH, MAX_FRAME};

/// Index of the receive queue: frames towards the guest (virtio 1.1 §5.1.2).
pub const RX_QUEUE: usize = 0;
/// Index of the transmit queue: frames from the guest (virtio 1.1 §5.1.2).
pub const TX_QUEUE: usize = 1;
/// Queues of the device: one receive/transmit pair, no control queue.
const NUM_QUEUES: usize = 2;

/// Length in bytes of `struct virtio_net_hdr_mrg_rxbuf` in front of every
/// frame (virtio 1.1 §5.1.6; 12 bytes whenever VIRTIO_F_VERSION_1 is
/// negotiated).
pub const VNET_HDR_LEN: usize = 12;
/// Offset of the header's `num_buffers` field (le16).
const NUM_BUFFERS_OFF: usize = 10;
/// Shortest frame taken from the guest: an Ethernet header.
const MIN_FRAME: usize = 14;

/// Largest queue size of a split virtqueue (virtio 1.1 §2.6: 32768).
const MAX_QUEUE_SIZE: u16 = 32768;

/// VIRTIO_NET_F_GUEST_CSUM (virtio 1.1 §5.1.3): the driver handles
/// packets with partial or already validated checksums.
pub const VIRTIO_NET_F_GUEST_CSUM: u64 = 1 << 1;
/// `flags` bit of the header (virtio 1.1 §5.1.6): checksums validated.
const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
/// VIRTIO_NET_F_CSUM (virtio 1.2 §5.1.3): the device takes packets with
/// partial checksums (from the guest).
pub const VIRTIO_NET_F_CSUM: u64 = 1 << 0;
/// VIRTIO_NET_F_GUEST_TSO4: the driver takes TCPv4 super-frames.
pub const VIRTIO_NET_F_GUEST_TSO4: u64 = 1 << 7;
/// VIRTIO_NET_F_GUEST_TSO6: the driver takes TCPv6 super-frames.
pub const VIRTIO_NET_F_GUEST_TSO6: u64 = 1 << 8;
/// VIRTIO_NET_F_HOST_TSO4: the device takes TCPv4 super-frames.
pub const VIRTIO_NET_F_HOST_TSO4: u64 = 1 << 11;
/// VIRTIO_NET_F_HOST_TSO6: the device takes TCPv6 super-frames.
pub const VIRTIO_NET_F_HOST_TSO6: u64 = 1 << 12;
/// VIRTIO_NET_F_MRG_RXBUF (virtio 1.1 §5.1.3): a frame may span receive
/// buffers.
pub const VIRTIO_NET_F_MRG_RXBUF: u64 = 1 << 15;
/// VIRTIO_RING_F_INDIRECT_DESC (virtio 1.1 §6).
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
/// VIRTIO_RING_F_EVENT_IDX (virtio 1.1 §6): `used_event`/`avail_event`.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
/// VHOST_USER_F_PROTOCOL_FEATURES (vhost-user.rst): protocol features and
/// SET_VRING_ENABLE.
pub const VHOST_USER_F_PROTOCOL_FEATURES: u64 = 1 << 30;
/// VIRTIO_F_VERSION_1 (virtio 1.1 §6): little-endian, 12-byte header.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Every virtio feature bit we offer with GET_FEATURES.
pub const FEATURES: u64 = VIRTIO_F_VERSION_1
    | VIRTIO_NET_F_CSUM
    | VIRTIO_NET_F_GUEST_CSUM
    | VIRTIO_NET_F_GUEST_TSO4
    | VIRTIO_NET_F_GUEST_TSO6
    | VIRTIO_NET_F_HOST_TSO4
    | VIRTIO_NET_F_HOST_TSO6
    | VIRTIO_NET_F_MRG_RXBUF
    | VIRTIO_RING_F_EVENT_IDX
    | VIRTIO_RING_F_INDIRECT_DESC
    | VHOST_USER_F_PROTOCOL_FEATURES;

/// Avail ring flag: the driver wants no used buffer notification (virtio
/// 1.1 §2.6.7).
const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;

/// Poll id of the listening socket.
const ID_LISTEN: u32 = 0;
/// Poll id of the front-end's control socket.
const ID_CTRL: u32 = 1;
/// Poll id of the transmit queue's kick eventfd.
const ID_KICK: u32 = 2;
/// Poll id of the receive queue's kick eventfd.
const ID_RX_KICK: u32 = 3;

/// vhost-user request code of SET_VRING_ENABLE (vhost-user.rst).
const REQ_SET_VRING_ENABLE: u32 = 18;
/// A SET_VRING_ENABLE message: header (request, flags, size: u32 each)
/// and `struct vhost_vring_state` (index, num: u32 each), in the host's
/// byte order as every vhost-user message.
const VRING_ENABLE_MSG_LEN: usize = 20;
/// Header flags (vhost-user.rst "Header"): version 1, reply, need reply.
const HDR_VERSION_1: u32 = 0x1;
const HDR_REPLY: u32 = 0x4;
const HDR_NEED_REPLY: u32 = 0x8;

/// Longest wait for the rest of a control message header once it started
/// arriving (then the front-end is disconnected), for each further read of
/// its body, or for room to write a reply: the socket is blocking, read
/// only when epoll says it is readable.
const CTRL_TIMEOUT: Duration = Duration::from_secs(1);
/// Bytes of a vhost-user message header (request, flags, size: 3 x u32).
const HDR_LEN: usize = 12;

/// The JSON object QEMU's vhost-user back-end convention (QEMU
/// docs/interop/vhost-user.json, "type": "net") expects from
/// `--print-capabilities`: the same bytes upstream passt prints.
pub fn print_capabilities() -> &'static str {
    "{\n  \"type\": \"net\"\n}\n"
}

/// One region of the memory table: where QEMU maps it (QVA) and where the
/// guest sees it (GPA), sizes in bytes.
#[derive(Debug, Clone, Copy)]
struct MemRegion {
    gpa: u64,
    size: u64,
    qva: u64,
}

/// Translate a front-end (QEMU) virtual address to a guest physical one.
fn qva_to_gpa(regions: &[MemRegion], qva: u64) -> Option<u64> {
    regions.iter().find_map(|r| {
        let off = qva.checked_sub(r.qva)?;
        (off < r.size).then(|| r.gpa.checked_add(off)).flatten()
    })
}

/// Ring addresses from SET_VRING_ADDR, in the front-end's address space.
#[derive(Debug, Clone, Copy)]
struct RingAddrs {
    desc: u64,
    avail: u64,
    used: u64,
}

/// One virtqueue and its vhost-user state.
struct Vring {
    queue: Queue,
    addrs: Option<RingAddrs>,
    kick: Option<EventFd>,
    call: Option<EventFd>,
    err: Option<File>,
    /// A kick fd was given (vhost-user.rst: "Starting and stopping rings").
    started: bool,
    /// SET_VRING_ENABLE 1, or no protocol features.
    enabled: bool,
}

impl Vring {
    fn new() -> io::Result<Self> {
        let queue = Queue::new(MAX_QUEUE_SIZE).map_err(|e| io::Error::other(format!("virtqueue: {e}")))?;
        Ok(Vring { queue, addrs: None, kick: None, call: None, err: None, started: false, enabled: false })
    }

    fn reset(&mut self, retired: &mut Vec<EventFd>) {
        self.queue.reset();
        self.addrs = None;
        retired.extend(self.kick.take());
        self.call = None;
        self.err = None;
        self.started = false;
        self.enabled = false;
    }

    fn usable(&self) -> bool {
        self.started && self.enabled && self.queue.ready()
    }
}

/// The device state the front-end's messages set up.
struct Device {
    /// Virtio features acked with SET_FEATURES.
    features: u64,
    /// Protocol features acked with SET_PROTOCOL_FEATURES.
    protocol: u64,
    mem: Option<GuestMemoryMmap>,
    regions: Vec<MemRegion>,
    vq: [Vring; NUM_QUEUES],
    /// Moves whenever the TX kick fd may have changed (never reset).
    fd_gen: u64,
    /// Kick eventfds replaced or dropped, still open until the data plane
    /// has removed their registrations ([`Tap::polled`]): closing one
    /// first would leave its registration behind (the front-end holds the
    /// same eventfd).
    retired: Vec<EventFd>,
}

fn lock(dev: &Mutex<Device>) -> MutexGuard<'_, Device> {
    dev.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request we do not serve (its feature is not offered).
fn unsupported(what: &'static str) -> VuError {
    VuError::InvalidOperation(what)
}

impl Device {
    fn new() -> io::Result<Self> {
        Ok(Device {
            features: 0,
            protocol: 0,
            mem: None,
            regions: Vec::new(),
            vq: [Vring::new()?, Vring::new()?],
            fd_gen: 0,
            retired: Vec::with_capacity(4),
        })
    }

    /// Back to the state of a fresh connection.
    fn reset(&mut self) {
        self.features = 0;
        self.protocol = 0;
        self.mem = None;
        self.regions.clear();
        for vq in &mut self.vq {
            vq.reset(&mut self.retired);
        }
        self.fd_gen = self.fd_gen.wrapping_add(1);
    }

    fn vring(&mut self, index: u32) -> VuResult<&mut Vring> {
        usize::try_from(index).ok().and_then(|i| self.vq.get_mut(i)).ok_or(VuError::InvalidParam)
    }

    fn has(&self, feature: u64) -> bool {
        self.features & feature != 0
    }

    /// Point queue `i` at its rings, if both its addresses and the memory
    /// table are known and the rings fit in memory; the queue is usable
    /// (ready) only then. A queue coming to life takes its used index from
    /// guest memory (it may resume after a stop).
    fn refresh(&mut self, i: usize) {
        let event_idx = self.has(VIRTIO_RING_F_EVENT_IDX);
        let Some(vq) = self.vq.get_mut(i) else { return };
        let was_ready = vq.queue.ready();
        vq.queue.set_ready(false);
        vq.queue.set_event_idx(event_idx);
        let (Some(mem), Some(a)) = (self.mem.as_ref(), vq.addrs) else { return };
        let (Some(desc), Some(avail), Some(used)) =
            (qva_to_gpa(&self.regions, a.desc), qva_to_gpa(&self.regions, a.avail), qva_to_gpa(&self.regions, a.used))
        else {
            log::warn!("vhost-user: rings of queue {i} outside the memory table");
            return;
        };
        if vq.queue.try_set_desc_table_address(GuestAddress(desc)).is_err()
            || vq.queue.try_set_avail_ring_address(GuestAddress(avail)).is_err()
            || vq.queue.try_set_used_ring_address(GuestAddress(used)).is_err()
        {
            log::warn!("vhost-user: misaligned rings for queue {i}");
            return;
        }
        vq.queue.set_ready(true);
        if !vq.queue.is_valid(mem) {
            vq.queue.set_ready(false);
            return;
        }
        log::debug!("vhost-user: queue {i}: rings at GPA {desc:#x} {avail:#x} {used:#x}, size {}", vq.queue.size());
        if !was_ready {
            if let Ok(idx) = vq.queue.used_idx(mem, Ordering::Acquire) {
                vq.queue.set_next_used(idx.0);
            }
        }
    }

    fn queue_usable(&self, i: usize) -> bool {
        self.mem.is_some() && self.vq.get(i).is_some_and(Vring::usable)
    }

    /// Both queues usable.
    fn ready(&self) -> bool {
        self.queue_usable(RX_QUEUE) && self.queue_usable(TX_QUEUE)
    }

    /// Stop every queue, keeping features and memory (RESET_OWNER,
    /// RESET_DEVICE).
    fn reset_rings(&mut self) {
        for vq in &mut self.vq {
            vq.reset(&mut self.retired);
        }
        self.fd_gen = self.fd_gen.wrapping_add(1);
    }
}

impl VhostUserBackendReqHandlerMut for Device {
    fn set_owner(&mut self) -> VuResult<()> {
        Ok(())
    }

    fn reset_owner(&mut self) -> VuResult<()> {
        self.reset_rings();
        Ok(())
    }

    fn reset_device(&mut self) -> VuResult<()> {
        self.reset_rings();
        Ok(())
    }

    fn get_features(&mut self) -> VuResult<u64> {
        Ok(FEATURES)
    }

    fn set_features(&mut self, features: u64) -> VuResult<()> {
        if features & !FEATURES != 0 {
            log::warn!("vhost-user: front-end acked features {features:#x}, offered {FEATURES:#x}");
            return Err(VuError::InvalidParam);
        }
        if features & VIRTIO_F_VERSION_1 == 0 {
            log::warn!("vhost-user: legacy (pre-1.0) virtio devices are not supported");
            return Err(VuError::InvalidParam);
        }
        log::debug!("vhost-user: SET_FEATURES {features:#x}");
        self.features = features;
        if !self.has(VHOST_USER_F_PROTOCOL_FEATURES) {
            // vhost-user.rst: without protocol features, rings start enabled.
            for vq in &mut self.vq {
                vq.enabled = true;
            }
        }
        for i in 0..NUM_QUEUES {
            self.refresh(i);
        }
        Ok(())
    }

    fn set_mem_table(
        &mut self,
        ctx: &[VhostUserMemoryRegion],
        files: Vec<File>,
        _postcopy_listening: Option<bool>,
    ) -> VuResult<Option<Vec<VhostUserMemoryRegionBase>>> {
        let mut maps = Vec::with_capacity(ctx.len());
        for (r, file) in ctx.iter().zip(files) {
            let (gpa, size, qva, off) = (r.guest_phys_addr, r.memory_size, r.user_addr, r.mmap_offset);
            log::debug!("vhost-user: memory region GPA {gpa:#x} size {size:#x} QVA {qva:#x} offset {off:#x}");
            // A mapping past the file's end would kill us with SIGBUS on
            // the first access there.
            let len = file.metadata().map_err(VuError::ReqHandlerError)?.len();
            if off.checked_add(size).is_none_or(|end| end > len) {
                log::warn!("vhost-user: memory region of {size:#x} bytes at offset {off:#x} past the end of its file ({len:#x})");
                return Err(VuError::InvalidParam);
            }
            let mmap = r.mmap_region::<()>(file)?;
            let region = GuestRegionMmap::new(mmap, GuestAddress(gpa)).ok_or(VuError::InvalidParam)?;
            maps.push((region, MemRegion { gpa, size, qva }));
        }
        maps.sort_by_key(|(_, m)| m.gpa);
        let regions: Vec<MemRegion> = maps.iter().map(|(_, m)| *m).collect();
        let mem = GuestMemoryMmap::from_regions(maps.into_iter().map(|(r, _)| r).collect())
            .map_err(|e| VuError::ReqHandlerError(io::Error::other(e)))?;
        self.mem = Some(mem);
        self.regions = regions;
        for i in 0..NUM_QUEUES {
            self.refresh(i);
        }
        Ok(None)
    }

    fn set_vring_num(&mut self, index: u32, num: u32) -> VuResult<()> {
        log::debug!("vhost-user: SET_VRING_NUM {index} {num}");
        let num = u16::try_from(num).map_err(|_| VuError::InvalidParam)?;
        self.vring(index)?.queue.try_set_size(num).map_err(|_| VuError::InvalidParam)?;
        self.refresh(index as usize);
        Ok(())
    }

    fn set_vring_addr(
        &mut self,
        index: u32,
        _flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> VuResult<()> {
        log::debug!("vhost-user: SET_VRING_ADDR {index} desc {descriptor:#x} used {used:#x} avail {available:#x}");
        let vq = self.vring(index)?;
        vq.addrs = Some(RingAddrs { desc: descriptor, avail: available, used });
        vq.queue.set_ready(false);
        self.refresh(index as usize);
        Ok(())
    }

    fn set_vring_base(&mut self, index: u32, base: u32) -> VuResult<()> {
        log::debug!("vhost-user: SET_VRING_BASE {index} {base}");
        let base = u16::try_from(base).map_err(|_| VuError::InvalidParam)?;
        self.vring(index)?.queue.set_next_avail(base);
        Ok(())
    }

    fn get_vring_base(&mut self, index: u32) -> VuResult<VhostUserVringState> {
        let vq = self.vring(index)?;
        let base = vq.queue.next_avail();
        log::debug!("vhost-user: GET_VRING_BASE {index}: {base}, ring stopped");
        // vhost-user.rst: GET_VRING_BASE stops the ring.
        vq.started = false;
        let kick = vq.kick.take();
        vq.call = None;
        vq.addrs = None;
        vq.queue.set_ready(false);
        self.retired.extend(kick);
        self.fd_gen = self.fd_gen.wrapping_add(1);
        Ok(VhostUserVringState::new(index, u32::from(base)))
    }

    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        log::debug!("vhost-user: SET_VRING_KICK {index} (fd: {})", fd.is_some());
        if let Some(f) = &fd {
            // Kicks are read when epoll says so, but a stale event must not
            // block the loop: whatever the front-end passed, read it
            // non-blocking.
            let raw = f.as_raw_fd();
            // SAFETY: fcntl on an fd we own.
            let fl = unsafe { libc::fcntl(raw, libc::F_GETFL) };
            // SAFETY: as above.
            if fl < 0 || unsafe { libc::fcntl(raw, libc::F_SETFL, fl | libc::O_NONBLOCK) } < 0 {
                return Err(VuError::ReqHandlerError(io::Error::last_os_error()));
            }
        }
        let vq = self.vring(u32::from(index))?;
        // SAFETY: the fd comes out of a File we own, and ownership moves to
        // the EventFd.
        let new = fd.map(|f| unsafe { EventFd::from_raw_fd(f.into_raw_fd()) });
        let old = std::mem::replace(&mut vq.kick, new);
        vq.started = true;
        self.retired.extend(old);
        self.fd_gen = self.fd_gen.wrapping_add(1);
        Ok(())
    }

    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        log::debug!("vhost-user: SET_VRING_CALL {index} (fd: {})", fd.is_some());
        let vq = self.vring(u32::from(index))?;
        // SAFETY: as in set_vring_kick.
        vq.call = fd.map(|f| unsafe { EventFd::from_raw_fd(f.into_raw_fd()) });
        // A notification the guest may have missed across a reconnection
        // costs it one spurious interrupt at most.
        if let Some(call) = &vq.call {
            let _ = call.write(1);
        }
        Ok(())
    }

    fn set_vring_err(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        self.vring(u32::from(index))?.err = fd;
        Ok(())
    }

    fn get_protocol_features(&mut self) -> VuResult<VhostUserProtocolFeatures> {
        Ok(VhostUserProtocolFeatures::REPLY_ACK)
    }

    fn set_protocol_features(&mut self, features: u64) -> VuResult<()> {
        log::debug!("vhost-user: SET_PROTOCOL_FEATURES {features:#x}");
        if features & !VhostUserProtocolFeatures::REPLY_ACK.bits() != 0 {
            return Err(VuError::InvalidParam);
        }
        self.protocol = features;
        Ok(())
    }

    fn get_queue_num(&mut self) -> VuResult<u64> {
        Ok(NUM_QUEUES as u64)
    }

    fn set_vring_enable(&mut self, index: u32, enable: bool) -> VuResult<()> {
        log::debug!("vhost-user: SET_VRING_ENABLE {index} {enable}");
        self.vring(index)?.enabled = enable;
        Ok(())
    }

    fn get_config(&mut self, _offset: u32, _size: u32, _flags: VhostUserConfigFlags) -> VuResult<Vec<u8>> {
        Err(unsupported("GET_CONFIG: CONFIG not offered"))
    }

    fn set_config(&mut self, _offset: u32, _buf: &[u8], _flags: VhostUserConfigFlags) -> VuResult<()> {
        Err(unsupported("SET_CONFIG: CONFIG not offered"))
    }

    fn set_gpu_socket(&mut self, _gpu_backend: GpuBackend) -> VuResult<()> {
        Err(unsupported("GPU_SET_SOCKET: not a GPU"))
    }

    fn get_shared_object(&mut self, _uuid: VhostUserSharedMsg) -> VuResult<File> {
        Err(unsupported("GET_SHARED_OBJECT: SHARED_OBJECT not offered"))
    }

    fn get_inflight_fd(&mut self, _inflight: &VhostUserInflight) -> VuResult<(VhostUserInflight, File)> {
        Err(unsupported("GET_INFLIGHT_FD: INFLIGHT_SHMFD not offered"))
    }

    fn set_inflight_fd(&mut self, _inflight: &VhostUserInflight, _file: File) -> VuResult<()> {
        Err(unsupported("SET_INFLIGHT_FD: INFLIGHT_SHMFD not offered"))
    }

    fn get_max_mem_slots(&mut self) -> VuResult<u64> {
        Err(unsupported("GET_MAX_MEM_SLOTS: CONFIGURE_MEM_SLOTS not offered"))
    }

    fn add_mem_region(
        &mut self,
        _region: &VhostUserSingleMemoryRegion,
        _fd: File,
        _postcopy_listening: Option<bool>,
    ) -> VuResult<Option<VhostUserMemoryRegionBase>> {
        Err(unsupported("ADD_MEM_REG: CONFIGURE_MEM_SLOTS not offered"))
    }

    fn remove_mem_region(&mut self, _region: &VhostUserSingleMemoryRegion) -> VuResult<()> {
        Err(unsupported("REM_MEM_REG: CONFIGURE_MEM_SLOTS not offered"))
    }

    fn set_device_state_fd(
        &mut self,
        _direction: VhostTransferStateDirection,
        _phase: VhostTransferStatePhase,
        _fd: File,
    ) -> VuResult<Option<File>> {
        Err(unsupported("SET_DEVICE_STATE_FD: DEVICE_STATE not offered"))
    }

    fn check_device_state(&mut self) -> VuResult<()> {
        Err(unsupported("CHECK_DEVICE_STATE: DEVICE_STATE not offered"))
    }

    fn get_shmem_config(&mut self) -> VuResult<VhostUserShMemConfig> {
        Err(unsupported("GET_SHMEM_CONFIG: SHMEM not offered"))
    }

    fn set_log_base(&mut self, _log: &VhostUserLog, _file: File) -> VuResult<()> {
        Err(unsupported("SET_LOG_BASE: LOG_SHMFD not offered"))
    }
}

/// Control-socket errors after which the stream is still in step (the
/// whole message was read and answered): the connection goes on.
fn recoverable(e: &VuError) -> bool {
    matches!(
        e,
        VuError::InvalidParam
            | VuError::InvalidOperation(_)
            | VuError::InactiveFeature(_)
            | VuError::InactiveOperation(_)
            | VuError::ReqHandlerError(_)
            | VuError::BackendInternalError
            | VuError::FeatureMismatch
    )
}

/// Copy the frame of a transmit chain to the start of `dst`, its
/// virtio-net header to `hdr`; returns the frame's length in bytes.
///
/// # Errors
/// [`crate::wire::Error`] if a descriptor is device-writable or outside
/// guest memory, the chain is broken (it ends on a descriptor that has a
/// next one), or the frame is shorter than [`MIN_FRAME`] or longer than
/// `dst`.
fn read_chain(
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<&GuestMemoryMmap>,
    dst: &mut [u8],
    hdr: &mut [u8; VNET_HDR_LEN],
) -> Result<usize, crate::wire::Error> {
    use crate::wire::Error;
    let mut skip = VNET_HDR_LEN;
    let mut len = 0usize;
    let mut broken = true;
    for desc in chain {
        broken = desc.has_next();
        if desc.is_write_only() {
            return Err(Error);
        }
        let dlen = usize::try_from(desc.len()).map_err(|_| Error)?;
        let s = skip.min(dlen);
        if s > 0 {
            let at = VNET_HDR_LEN - skip;
            mem.read_slice(&mut hdr[at..at + s], desc.addr()).map_err(|_| Error)?;
        }
        skip -= s;
        let n = dlen - s;
        if n == 0 {
            continue;
        }
        let addr = desc.addr().checked_add(s as u64).ok_or(Error)?;
        let end = len.checked_add(n).ok_or(Error)?;
        let out = dst.get_mut(len..end).ok_or(Error)?;
        mem.read_slice(out, addr).map_err(|_| Error)?;
        len = end;
    }
    if broken || skip > 0 || len < MIN_FRAME {
        return Err(Error);
    }
    Ok(len)
}

/// A frame being written to receive buffers, header first.
struct RxFrame<'a> {
    hdr: [u8; VNET_HDR_LEN],
    /// Header bytes written so far.
    hdr_done: usize,
    /// Frame bytes still to write.
    data: &'a [u8],
    /// Where the two bytes of `num_buffers` landed in guest memory.
    num_buffers_at: [Option<GuestAddress>; 2],
}

impl<'a> RxFrame<'a> {
    /// `hdr`: the header (its `num_buffers` is set at the end).
    fn new(data: &'a [u8], hdr: [u8; VNET_HDR_LEN]) -> Self {
        RxFrame { hdr, hdr_done: 0, data, num_buffers_at: [None; 2] }
    }

    fn done(&self) -> bool {
        self.hdr_done == VNET_HDR_LEN && self.data.is_empty()
    }

    /// Write as much of the rest of the frame as fits in the writable
    /// descriptors of `chain`; returns the bytes written.
    ///
    /// # Errors
    /// [`crate::wire::Error`] if a descriptor is device-readable or outside
    /// guest memory, the chain is broken, or nothing could be written.
    fn write_chain(&mut self, mem: &GuestMemoryMmap, chain: DescriptorChain<&GuestMemoryMmap>) -> Result<u32, crate::wire::Error> {
        use crate::wire::Error;
        let mut written = 0u32;
        let mut broken = true;
        for desc in chain {
            broken = desc.has_next();
            if !desc.is_write_only() {
                return Err(Error);
            }
            if self.done() {
                continue; // Walk to the end to check the chain.
            }
            let mut addr = desc.addr();
            let mut room = usize::try_from(desc.len()).map_err(|_| Error)?;
            if self.hdr_done < VNET_HDR_LEN && room > 0 {
                let k = (VNET_HDR_LEN - self.hdr_done).min(room);
                let src = self.hdr.get(self.hdr_done..self.hdr_done + k).ok_or(Error)?;
                mem.write_slice(src, addr).map_err(|_| Error)?;
                for (b, at) in self.num_buffers_at.iter_mut().enumerate() {
                    let pos = NUM_BUFFERS_OFF + b;
                    if (self.hdr_done..self.hdr_done + k).contains(&pos) {
                        *at = addr.checked_add((pos - self.hdr_done) as u64);
                    }
                }
                self.hdr_done += k;
                room -= k;
                addr = addr.checked_add(k as u64).ok_or(Error)?;
                written += k as u32;
            }
            if self.hdr_done == VNET_HDR_LEN && room > 0 && !self.data.is_empty() {
                let k = room.min(self.data.len());
                let (now, rest) = self.data.split_at(k);
                mem.write_slice(now, addr).map_err(|_| Error)?;
                self.data = rest;
                written = written.checked_add(u32::try_from(k).map_err(|_| Error)?).ok_or(Error)?;
            }
        }
        if broken || written == 0 {
            return Err(Error);
        }
        Ok(written)
    }

    /// Store `num_buffers` (le16) into the header already written.
    fn set_num_buffers(&self, mem: &GuestMemoryMmap, n: u16) {
        for (at, b) in self.num_buffers_at.iter().zip(n.to_le_bytes()) {
            if let Some(at) = at {
                let _ = mem.write_obj(b, *at);
            }
        }
    }
}

/// Append `entries` (head index, bytes written) to the used ring of `q` and
/// publish them with one store of the used index (virtio 1.1 §2.6.8).
/// Returns the used index before and after.
fn flush_used(mem: &GuestMemoryMmap, q: &mut Queue, entries: &[(u16, u32)]) -> Option<(u16, u16)> {
    let size = q.size();
    let used = GuestAddress(q.used_ring());
    let old = q.next_used();
    let mut idx = Wrapping(old);
    for &(head, len) in entries {
        let slot = u64::from(idx.0.checked_rem(size)?);
        let addr = used.checked_add(4 + 8 * slot)?;
        let mut elem = [0u8; 8];
        elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        mem.write_slice(&elem, addr).ok()?;
        idx += 1;
    }
    mem.store(idx.0.to_le(), used.checked_add(2)?, Ordering::Release).ok()?;
    q.set_next_used(idx.0);
    Some((old, idx.0))
}

/// Whether the driver wants a used buffer notification after the used
/// index moved from `old` to `new` (virtio 1.1 §2.6.7.2).
fn needs_call(mem: &GuestMemoryMmap, q: &Queue, old: u16, new: u16) -> bool {
    if old == new {
        return false;
    }
    // The used index store must be visible before we read the driver's
    // suppression fields.
    fence(Ordering::SeqCst);
    let avail = GuestAddress(q.avail_ring());
    if q.event_idx_enabled() {
        let at = avail.checked_add(4 + 2 * u64::from(q.size()));
        let Some(ev) = at.and_then(|a| mem.load::<u16>(a, Ordering::Acquire).ok()) else { return true };
        let ev = u16::from_le(ev);
        new.wrapping_sub(ev).wrapping_sub(1) < new.wrapping_sub(old)
    } else {
        match mem.load::<u16>(avail, Ordering::Acquire) {
            Ok(flags) => u16::from_le(flags) & VRING_AVAIL_F_NO_INTERRUPT == 0,
            Err(_) => true,
        }
    }
}

/// Publish `entries` on queue `vq` and signal its call eventfd if the
/// driver wants it.
fn complete(mem: &GuestMemoryMmap, vq: &mut Vring, entries: &[(u16, u32)]) {
    if entries.is_empty() {
        return;
    }
    let Some((old, new)) = flush_used(mem, &mut vq.queue, entries) else { return };
    if needs_call(mem, &vq.queue, old, new) {
        if let Some(call) = &vq.call {
            let _ = call.write(1);
        }
    }
}

/// What became of a frame offered to the receive queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Put {
    /// Written; its buffers are in `used`.
    Sent,
    /// Not enough buffers now; none consumed.
    NoRoom,
    /// It can never fit: larger than one buffer without MRG_RXBUF, or than
    /// a whole queue of buffers. None consumed.
    TooBig,
    /// A buffer could not be written: the buffers taken are in `used`
    /// with length 0, the frame is lost.
    Malformed,
}

/// How frames are written to receive buffers, from the features acked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RxMode {
    /// VIRTIO_NET_F_MRG_RXBUF: a frame may span several buffers.
    mrg: bool,
    /// The header's `flags`: VIRTIO_NET_HDR_F_DATA_VALID with
    /// VIRTIO_NET_F_GUEST_CSUM (every frame we build carries valid
    /// checksums, so the guest need not verify them), else 0.
    hdr_flags: u8,
}

impl RxMode {
    fn of(dev: &Device) -> Self {
        RxMode {
            mrg: dev.has(VIRTIO_NET_F_MRG_RXBUF),
            hdr_flags: if dev.has(VIRTIO_NET_F_GUEST_CSUM) { VIRTIO_NET_HDR_F_DATA_VALID } else { 0 },
        }
    }

    /// The header of a frame with metadata `off`: a plain frame gets
    /// `hdr_flags`, others their own fields.
    fn header(self, off: Offload) -> [u8; VNET_HDR_LEN] {
        let mut h = [0; VNET_HDR_LEN];
        if off == Offload::default() {
            h[0] = self.hdr_flags;
        } else {
            off.encode(&mut h);
        }
        h
    }
}

/// What the driver acked of the offloads towards it.
fn caps_of(dev: &Device) -> OffloadCaps {
    let csum = dev.has(VIRTIO_NET_F_GUEST_CSUM);
    // GUEST_USO4/6 are not offered: UDP goes to the guest one datagram per frame.
    OffloadCaps { csum, tso: csum && dev.has(VIRTIO_NET_F_GUEST_TSO4) && dev.has(VIRTIO_NET_F_GUEST_TSO6), uso: false }
}

/// Write `frame`, header first, to the next receive buffers of `q`
/// (several with MRG_RXBUF), appending the buffers used (head, bytes) to
/// `used`. The header comes from `off` ([`RxMode::header`]).
fn put_frame(mem: &GuestMemoryMmap, q: &mut Queue, mode: RxMode, frame: &[u8], off: Offload, used: &mut Vec<(u16, u32)>) -> Put {
    let size = q.size();
    let avail_start = q.next_avail();
    let mark = used.len();
    let mut f = RxFrame::new(frame, mode.header(off));
    let mut nbufs = 0u16;
    while !f.done() {
        let too_big = (!mode.mrg && nbufs > 0) || nbufs >= size;
        let chain = if too_big { None } else { q.pop_descriptor_chain(mem) };
        let Some(chain) = chain else {
            // Its buffers go back to the available ring, unused.
            q.set_next_avail(avail_start);
            used.truncate(mark);
            return if too_big { Put::TooBig } else { Put::NoRoom };
        };
        nbufs += 1;
        let head = chain.head_index();
        let r = f.write_chain(mem, chain);
        if head < size {
            used.push((head, *r.as_ref().unwrap_or(&0)));
        }
        if r.is_err() {
            // Give the buffers back empty: the guest drops them.
            for e in used.get_mut(mark..).into_iter().flatten() {
                e.1 = 0;
            }
            return Put::Malformed;
        }
    }
    f.set_num_buffers(mem, nbufs);
    Put::Sent
}

/// Rounds of flushing while the guest keeps adding buffers, before waiting
/// for its kick.
const ARM_TRIES: usize = 4;

/// The available ring's index (virtio 1.1 §2.6.6).
fn avail_idx(mem: &GuestMemoryMmap, q: &Queue) -> Option<u16> {
    q.avail_idx(mem, Ordering::Acquire).ok().map(|i| i.0)
}

/// Ask the driver to notify the device once the available index moves
/// past `seen` (virtio 1.1 §2.6.10): `avail_event` = `seen` with
/// VIRTIO_RING_F_EVENT_IDX, else clear VRING_USED_F_NO_NOTIFY.
fn kick_past(mem: &GuestMemoryMmap, q: &Queue, seen: u16) -> Option<()> {
    let used = GuestAddress(q.used_ring());
    if q.event_idx_enabled() {
        let at = used.checked_add(4 + 8 * u64::from(q.size()))?;
        mem.store(seen.to_le(), at, Ordering::Relaxed).ok()
    } else {
        mem.store(0u16.to_le(), used, Ordering::Relaxed).ok()
    }
}

/// How long frames may wait for receive buffers before we say so (and
/// how often we say it again).
const STALL_REPORT: Duration = Duration::from_secs(2);

/// The indices of queue `q` as the guest and we see them, for logs.
fn ring_state(mem: &GuestMemoryMmap, q: &Queue) -> String {
    let at = |base: u64, off: u64| {
        GuestAddress(base).checked_add(off).and_then(|a| mem.load::<u16>(a, Ordering::Acquire).ok()).map(u16::from_le)
    };
    let size = u64::from(q.size());
    format!(
        "avail flags {:?} idx {:?} used_event {:?}; used flags {:?} idx {:?} avail_event {:?}; next avail {} next used {}",
        at(q.avail_ring(), 0),
        at(q.avail_ring(), 2),
        at(q.avail_ring(), 4 + 2 * size),
        at(q.used_ring(), 0),
        at(q.used_ring(), 2),
        at(q.used_ring(), 4 + 8 * size),
        q.next_avail(),
        q.next_used()
    )
}

/// Bytes of frames the backlog holds at most: as much as a transmit batch.
const BACKLOG_BYTES: usize = BATCH * super::SLOT;
/// Frames the backlog holds at most.
const BACKLOG_FRAMES: usize = 4 * BATCH;

/// Frames accepted by [`Tap::send_batch`] that found no receive buffer,
/// oldest first, as a device's queue would hold them: the guest refills
/// its receive queue in bursts, and TCP recovers badly from frames lost at
/// the end of a window. Frames are stored back to back in `buf`, allocated
/// once; while any wait, the receive queue asks the guest for a kick when
/// it adds buffers.
#[derive(Debug)]
struct Backlog {
    buf: Vec<u8>,
    /// (start, length) in `buf`, and the frame's offload metadata.
    frames: std::collections::VecDeque<(usize, usize, Offload)>,
}

impl Backlog {
    fn new() -> Self {
        Backlog { buf: Vec::with_capacity(BACKLOG_BYTES), frames: std::collections::VecDeque::with_capacity(BACKLOG_FRAMES) }
    }

    fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.frames.clear();
    }

    /// Keep a copy of `frame` (metadata `off`); false if there is no room
    /// for it.
    fn push(&mut self, frame: &[u8], off: Offload) -> bool {
        if self.frames.len() >= BACKLOG_FRAMES {
            return false;
        }
        if self.buf.len() + frame.len() > BACKLOG_BYTES {
            // Move the waiting frames to the front, then try again.
            let start = self.frames.front().map_or(self.buf.len(), |f| f.0);
            self.buf.copy_within(start.., 0);
            self.buf.truncate(self.buf.len() - start);
            for f in &mut self.frames {
                f.0 -= start;
            }
            if self.buf.len() + frame.len() > BACKLOG_BYTES {
                return false;
            }
        }
        self.frames.push_back((self.buf.len(), frame.len(), off));
        self.buf.extend_from_slice(frame);
        true
    }

    /// Write waiting frames to receive buffers, oldest first, until one
    /// finds no room. Returns the frames lost to malformed buffers.
    fn flush(&mut self, mem: &GuestMemoryMmap, q: &mut Queue, mode: RxMode, used: &mut Vec<(u16, u32)>) -> u64 {
        let mut malformed = 0;
        while let Some(&(start, len, off)) = self.frames.front() {
            let Some(frame) = self.buf.get(start..start + len) else { break };
            match put_frame(mem, q, mode, frame, off, used) {
                Put::NoRoom => break,
                Put::Malformed => malformed += 1,
                Put::Sent | Put::TooBig => {}
            }
            self.frames.pop_front();
        }
        if self.frames.is_empty() {
            self.buf.clear();
        }
        malformed
    }

    /// After a flush: while frames wait, have the guest kick the receive
    /// queue when it adds buffers beyond those there now (the oldest frame
    /// may need more than are there), then flush again: buffers the guest
    /// published before it could see our request (it decides whether to
    /// kick when it publishes them) must be tried now, or nobody would come
    /// back for them. Stops when a flush has seen every buffer up to the
    /// index we asked to be kicked past; otherwise, no kicks. Returns the
    /// frames lost to malformed buffers.
    fn arm(&mut self, mem: &GuestMemoryMmap, vq: &mut Vring, mode: RxMode, used: &mut Vec<(u16, u32)>) -> u64 {
        let q = &mut vq.queue;
        let mut malformed = 0;
        for _ in 0..ARM_TRIES {
            if self.is_empty() {
                let _ = q.disable_notification(mem);
                return malformed;
            }
            let Some(seen) = avail_idx(mem, q) else { return malformed };
            if kick_past(mem, q, seen).is_none() {
                return malformed;
            }
            // The driver reads the field after publishing its index
            // (virtio 1.1 §2.6.10): every buffer up to `seen` is ours to
            // try once our request is visible, later ones will be kicked.
            fence(Ordering::SeqCst);
            malformed += self.flush(mem, q, mode, used);
            if self.is_empty() {
                let _ = q.disable_notification(mem);
                return malformed;
            }
            if avail_idx(mem, q) == Some(seen) {
                return malformed;
            }
        }
        // The guest keeps adding buffers: come back through the loop.
        if let Some(kick) = vq.kick.as_ref().filter(|_| !self.is_empty()) {
            let _ = kick.write(1);
        }
        malformed
    }
}

/// The vhost-user back-end: a listening socket, at most one front-end and
/// the virtio-net device it drives. See the module documentation.
pub struct VhostUserTap {
    listener: UnixListener,
    one_off: bool,
    conn: Option<BackendReqHandler<Mutex<Device>>>,
    dev: Arc<Mutex<Device>>,
    /// Moves on every accepted or closed connection.
    conn_gen: u64,
    /// The device was ready after the last control message.
    was_ready: bool,
    /// Chains dropped as malformed, both queues.
    malformed: u64,
    /// Used ring entries of the batch being completed (head, bytes).
    used: Vec<(u16, u32)>,
    /// Since when frames wait in the backlog, and when that was last
    /// reported.
    waiting: Option<(Instant, Instant)>,
    /// The transmit queue waits for a kick (notifications on, ring empty).
    tx_armed: bool,
    /// Times the transmit ring held frames while it waited for a kick
    /// that had not come when we next wrote to the guest (usually a kick
    /// on its way; a lost one would otherwise stall the guest's sending).
    tx_rescues: u64,
    /// Frames waiting for receive buffers.
    backlog: Backlog,
}

impl std::fmt::Debug for VhostUserTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhostUserTap")
            .field("listener", &self.listener.as_raw_fd())
            .field("one_off", &self.one_off)
            .field("connected", &self.conn.is_some())
            .field("ready", &self.was_ready)
            .field("malformed", &self.malformed)
            .finish()
    }
}

impl VhostUserTap {
    /// A back-end serving front-ends that connect to `listener`, a bound
    /// and listening UNIX stream socket (it is made non-blocking here).
    /// With `one_off`, the end of the first front-end's connection ends the
    /// back-end ([`TapError::Gone`]); otherwise it waits for the next one.
    ///
    /// # Errors
    /// The OS error of fcntl on `listener`.
    ///
    /// Syscalls: fcntl.
    pub fn new(listener: UnixListener, one_off: bool) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(VhostUserTap {
            listener,
            one_off,
            conn: None,
            dev: Arc::new(Mutex::new(Device::new()?)),
            conn_gen: 0,
            was_ready: false,
            malformed: 0,
            used: Vec::with_capacity(usize::from(MAX_QUEUE_SIZE)),
            backlog: Backlog::new(),
            waiting: None,
            tx_armed: false,
            tx_rescues: 0,
        })
    }

    /// Descriptor chains dropped as malformed so far (both queues): see the
    /// module documentation for what counts.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Times the transmit ring was found holding frames, without a kick,
    /// while we wrote to the guest (each time, the ring is read then).
    pub fn tx_rescues(&self) -> u64 {
        self.tx_rescues
    }

    /// True while a front-end is connected.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// True while both queues can carry frames.
    pub fn is_ready(&self) -> bool {
        lock(&self.dev).ready()
    }

    /// Accept pending connections: the first one, if none is active,
    /// becomes the front-end; the others are closed at once.
    fn accept(&mut self) -> Result<TapEvent, TapError> {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(TapEvent::Nothing),
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => continue,
                Err(e) => return Err(TapError::Io(e)),
            };
            if self.conn.is_some() {
                log::info!("vhost-user: another front-end connected while one is active, closing it");
                continue;
            }
            let setup = stream
                .set_nonblocking(false)
                .and_then(|()| stream.set_read_timeout(Some(CTRL_TIMEOUT)))
                .and_then(|()| stream.set_write_timeout(Some(CTRL_TIMEOUT)));
            if let Err(e) = setup {
                log::warn!("vhost-user: can't set up the front-end's socket: {e}");
                continue;
            }
            lock(&self.dev).reset();
            self.backlog.clear();
            self.conn = Some(BackendReqHandler::from_stream(stream, Arc::clone(&self.dev)));
            self.conn_gen = self.conn_gen.wrapping_add(1);
            self.was_ready = false;
            log::info!("vhost-user: front-end connected");
        }
    }

    /// Drop the front-end and everything it set up.
    fn disconnect(&mut self) -> Result<TapEvent, TapError> {
        self.conn = None;
        lock(&self.dev).reset();
        if !self.backlog.is_empty() {
            log::debug!("vhost-user: {} frames lost with the front-end", self.backlog.frames.len());
        }
        self.backlog.clear();
        self.conn_gen = self.conn_gen.wrapping_add(1);
        self.was_ready = false;
        if self.one_off {
            return Err(TapError::Gone(io::Error::other("vhost-user front-end disconnected (--one-off)")));
        }
        log::info!("vhost-user: front-end disconnected, waiting for the next one");
        Ok(TapEvent::Disconnected)
    }

    /// QEMU (7.2 at least) sends SET_VRING_ENABLE as soon as the guest
    /// driver accepts its features, that is, before SET_FEATURES, once
    /// VHOST_USER_F_PROTOCOL_FEATURES was offered and protocol features
    /// exchanged; libvhost-user and upstream passt take it. The `vhost`
    /// crate refuses it, without a reply, until SET_FEATURES acks that bit.
    /// So until then this message is read and handled here: returns true
    /// if the next message was one and has been consumed.
    ///
    /// Syscalls: recvfrom (MSG_PEEK), sendto.
    fn early_vring_enable(&mut self, fd: std::os::fd::RawFd) -> bool {
        use nix::sys::socket::{recv, send, MsgFlags};
        if lock(&self.dev).has(VHOST_USER_F_PROTOCOL_FEATURES) {
            return false;
        }
        let mut msg = [0u8; VRING_ENABLE_MSG_LEN];
        match recv(fd, &mut msg, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT) {
            Ok(VRING_ENABLE_MSG_LEN) => {}
            _ => return false,
        }
        let word = |i: usize| msg.get(i..i + 4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_ne_bytes);
        let (req, flags, size, index, num) = (word(0), word(4), word(8), word(12), word(16));
        if req != REQ_SET_VRING_ENABLE || size != 8 {
            return false;
        }
        if recv(fd, &mut msg, MsgFlags::MSG_WAITALL) != Ok(VRING_ENABLE_MSG_LEN) {
            return false;
        }
        log::debug!("vhost-user: SET_VRING_ENABLE {index} {num} (before SET_FEATURES)");
        let mut dev = lock(&self.dev);
        let ok = num <= 1 && dev.vring(index).map(|vq| vq.enabled = num == 1).is_ok();
        if flags & HDR_NEED_REPLY != 0 && dev.protocol & VhostUserProtocolFeatures::REPLY_ACK.bits() != 0 {
            let mut reply = [0u8; VRING_ENABLE_MSG_LEN];
            reply[0..4].copy_from_slice(&REQ_SET_VRING_ENABLE.to_ne_bytes());
            reply[4..8].copy_from_slice(&(HDR_VERSION_1 | HDR_REPLY).to_ne_bytes());
            reply[8..12].copy_from_slice(&8u32.to_ne_bytes());
            reply[12..20].copy_from_slice(&u64::from(!ok).to_ne_bytes());
            let _ = send(fd, &reply, MsgFlags::MSG_NOSIGNAL);
        }
        true
    }

    /// Wait (at most [`CTRL_TIMEOUT`], the socket's receive timeout) for
    /// a whole message header, without consuming it: the `vhost` crate
    /// retries a short header read forever, which would stall the data
    /// plane on a front-end that sent part of one. `None`: the front-end
    /// is gone or too slow, disconnect; `Some(false)`: interrupted, come
    /// back on the next event.
    ///
    /// Syscalls: recvfrom (MSG_PEEK | MSG_WAITALL).
    fn header_ready(fd: std::os::fd::RawFd) -> Option<bool> {
        use nix::sys::socket::{recv, MsgFlags};
        let mut hdr = [0u8; HDR_LEN];
        match recv(fd, &mut hdr, MsgFlags::MSG_PEEK | MsgFlags::MSG_WAITALL) {
            Ok(HDR_LEN) => Some(true),
            Err(nix::errno::Errno::EINTR) => Some(false),
            Ok(0) => None,
            Ok(n) => {
                log::warn!("vhost-user: only {n} bytes of a message header in {CTRL_TIMEOUT:?}, closing the connection");
                None
            }
            Err(e) => {
                log::warn!("vhost-user: control socket: {e}, closing the connection");
                None
            }
        }
    }

    /// Handle one message on the control socket.
    fn control(&mut self) -> Result<TapEvent, TapError> {
        let Some(fd) = self.conn.as_ref().map(AsRawFd::as_raw_fd) else { return Ok(TapEvent::Nothing) };
        match Self::header_ready(fd) {
            Some(true) => {}
            Some(false) => return Ok(TapEvent::Nothing),
            None => return self.disconnect(),
        }
        let handled = self.early_vring_enable(fd);
        let Some(conn) = self.conn.as_mut() else { return Ok(TapEvent::Nothing) };
        match if handled { Ok(()) } else { conn.handle_request() } {
            Ok(()) => {}
            Err(e) if recoverable(&e) => log::warn!("vhost-user: {e}"),
            Err(VuError::Disconnected) => return self.disconnect(),
            Err(e) => {
                log::warn!("vhost-user: {e}, closing the connection");
                return self.disconnect();
            }
        }
        let dev = lock(&self.dev);
        let ready = dev.ready();
        let became_ready = ready && !self.was_ready;
        self.was_ready = ready;
        if !became_ready {
            return Ok(TapEvent::Nothing);
        }
        // Frames offered while the queue was not usable had their kick
        // consumed: look at the queue once more.
        if let Some(kick) = &dev.vq[TX_QUEUE].kick {
            let _ = kick.write(1);
        }
        // Frames waiting were for the driver before the ring restarted.
        if !self.backlog.is_empty() {
            log::debug!("vhost-user: {} waiting frames dropped with the ring restart", self.backlog.frames.len());
            self.backlog.clear();
        }
        // Kicks on the receive queue only matter while the backlog waits.
        let mut dev = dev;
        let dev = &mut *dev;
        if let (Some(mem), Some(vq)) = (dev.mem.as_ref(), dev.vq.get_mut(RX_QUEUE)) {
            let _ = vq.queue.disable_notification(mem);
        }
        log::info!("vhost-user: device ready");
        Ok(TapEvent::Connected)
    }

    /// A kick on the transmit queue.
    fn kick(&mut self) -> TapEvent {
        let dev = lock(&self.dev);
        if let Some(kick) = &dev.vq[TX_QUEUE].kick {
            let _ = kick.read();
        }
        if dev.queue_usable(TX_QUEUE) {
            TapEvent::Readable
        } else {
            TapEvent::Nothing
        }
    }

    /// Pop up to [`BATCH`] transmit chains into `rx`.
    fn receive(&mut self, rx: &mut RxBatch) {
        let mut guard = lock(&self.dev);
        let dev = &mut *guard;
        if !dev.queue_usable(TX_QUEUE) {
            return;
        }
        let Some(mem) = dev.mem.as_ref() else { return };
        let Some(vq) = dev.vq.get_mut(TX_QUEUE) else { return };
        let size = vq.queue.size();
        self.used.clear();
        self.tx_armed = false;
        let _ = vq.queue.disable_notification(mem);
        let mut off = 0usize;
        let mut popped = 0usize;
        let mut popped_before = usize::MAX;
        let mut more = false;
        loop {
            while popped < BATCH {
                if rx.buf.len().saturating_sub(off) < MAX_FRAME {
                    more = off > 0;
                    break;
                }
                let Some(chain) = vq.queue.pop_descriptor_chain(mem) else { break };
                popped += 1;
                let head = chain.head_index();
                let mut hdr = [0; VNET_HDR_LEN];
                match read_chain(mem, chain, &mut rx.buf[off..off + MAX_FRAME], &mut hdr) {
                    Ok(len) => {
                        rx.frames.push(off..off + len);
                        rx.meta.push(Offload::decode(&hdr).unwrap_or_default());
                        off += len;
                    }
                    Err(_) => self.malformed += 1,
                }
                if head < size {
                    self.used.push((head, 0));
                }
            }
            if popped >= BATCH {
                more = true;
            }
            if more || rx.buf.len().saturating_sub(off) < MAX_FRAME {
                break;
            }
            // Empty: ask for kicks again, then look once more for a frame
            // offered before the driver could see that.
            match vq.queue.enable_notification(mem) {
                Ok(true) => {
                    let _ = vq.queue.disable_notification(mem);
                }
                Ok(false) => {
                    self.tx_armed = true;
                    break;
                }
                Err(_) => break,
            }
            // More is announced but nothing could be popped: an available
            // index further ahead than the queue holds (virtio 1.1
            // §2.6.6: a driver bug or a hostile guest). Stop serving the
            // queue instead of looping; the guest's next device reset
            // starts it again.
            if popped == popped_before {
                log::warn!(
                    "vhost-user: TX available index {:?} inconsistent with our position {} (queue size {size}): queue stopped",
                    avail_idx(mem, &vq.queue),
                    vq.queue.next_avail()
                );
                vq.queue.set_ready(false);
                break;
            }
            popped_before = popped;
        }
        complete(mem, vq, &self.used);
        if more {
            if let Some(kick) = &vq.kick {
                let _ = kick.write(1);
            }
        }
    }

    /// Write the frames of `tx` to receive buffers, after those waiting in
    /// the backlog; frames that find no buffer wait in the backlog while it
    /// has room.
    fn transmit(&mut self, tx: &TxBatch) -> TxResult {
        let mut res = TxResult::default();
        let mut guard = lock(&self.dev);
        let dev = &mut *guard;
        let mode = RxMode::of(dev);
        let (Some(mem), Some(vq)) = (dev.mem.as_ref(), dev.vq.get_mut(RX_QUEUE)) else {
            res.dropped = tx.len();
            return res;
        };
        if !vq.usable() {
            res.dropped = tx.len();
            return res;
        }
        self.used.clear();
        self.malformed += self.backlog.flush(mem, &mut vq.queue, mode, &mut self.used);
        for (frame, off) in tx.frames_offload() {
            let put = if self.backlog.is_empty() { put_frame(mem, &mut vq.queue, mode, frame, off, &mut self.used) } else { Put::NoRoom };
            match put {
                Put::Sent => res.sent += 1,
                Put::NoRoom if self.backlog.push(frame, off) => res.sent += 1,
                Put::NoRoom | Put::TooBig => res.dropped += 1,
                Put::Malformed => {
                    self.malformed += 1;
                    res.dropped += 1;
                }
            }
        }
        self.malformed += self.backlog.arm(mem, vq, mode, &mut self.used);
        complete(mem, vq, &self.used);
        self.waiting = match (self.waiting, self.backlog.is_empty()) {
            (_, true) => None,
            (None, false) => Some((Instant::now(), Instant::now())),
            (Some((since, told)), false) if told.elapsed() >= STALL_REPORT && since.elapsed() >= STALL_REPORT => {
                log::warn!(
                    "vhost-user: {} frames wait {:?} for receive buffers: {}",
                    self.backlog.frames.len(),
                    since.elapsed(),
                    ring_state(mem, &vq.queue)
                );
                Some((since, Instant::now()))
            }
            (w, false) => w,
        };
        // Whenever we write to the guest, look at its transmit ring too: a
        // kick lost on the way would otherwise leave its frames (its ACKs
        // among them) unread until it sends again, which it may be waiting
        // for us to make it do.
        if let Some(txq) = dev.vq.get(TX_QUEUE).filter(|_| self.tx_armed) {
            if txq.usable() && avail_idx(mem, &txq.queue).is_some_and(|a| a != txq.queue.next_avail()) {
                self.tx_armed = false;
                self.tx_rescues += 1;
                // Mostly a kick still on its way (the guest kicked, the
                // eventfd is not read yet): reading now costs nothing.
                if self.tx_rescues.is_power_of_two() {
                    log::debug!("vhost-user: transmit ring read on a write to the guest, without its kick ({} times so far)", self.tx_rescues);
                }
                if let Some(kick) = &txq.kick {
                    let _ = kick.write(1);
                }
            }
        }
        res
    }

    /// A kick on the receive queue: the guest added buffers while the
    /// backlog waited for some.
    fn rx_kick(&mut self) {
        let mut guard = lock(&self.dev);
        let dev = &mut *guard;
        let mode = RxMode::of(dev);
        let (Some(mem), Some(vq)) = (dev.mem.as_ref(), dev.vq.get_mut(RX_QUEUE)) else { return };
        if let Some(kick) = &vq.kick {
            let _ = kick.read();
        }
        if !vq.usable() || self.backlog.is_empty() {
            return;
        }
        self.used.clear();
        self.malformed += self.backlog.flush(mem, &mut vq.queue, mode, &mut self.used);
        self.malformed += self.backlog.arm(mem, vq, mode, &mut self.used);
        complete(mem, vq, &self.used);
    }
}

impl Tap for VhostUserTap {
    fn poll_fds(&self, out: &mut Vec<PollFd>) {
        out.push(PollFd { fd: self.listener.as_raw_fd(), events: libc::EPOLLIN as u32, id: ID_LISTEN });
        if let Some(conn) = &self.conn {
            out.push(PollFd { fd: conn.as_raw_fd(), events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32, id: ID_CTRL });
        }
        let dev = lock(&self.dev);
        if let Some(kick) = &dev.vq[TX_QUEUE].kick {
            out.push(PollFd { fd: kick.as_raw_fd(), events: libc::EPOLLIN as u32, id: ID_KICK });
        }
        if let Some(kick) = &dev.vq[RX_QUEUE].kick {
            out.push(PollFd { fd: kick.as_raw_fd(), events: libc::EPOLLIN as u32, id: ID_RX_KICK });
        }
    }

    fn polled(&mut self) {
        lock(&self.dev).retired.clear();
    }

    fn poll_gen(&self) -> u64 {
        // Both counters only move forward, so their sum changes whenever
        // either does.
        self.conn_gen.wrapping_add(lock(&self.dev).fd_gen)
    }

    fn event(&mut self, id: u32, _events: u32) -> Result<TapEvent, TapError> {
        match id {
            ID_LISTEN => self.accept(),
            // Data, hang-up or error: reading tells which.
            ID_CTRL => self.control(),
            ID_KICK => Ok(self.kick()),
            ID_RX_KICK => {
                self.rx_kick();
                Ok(TapEvent::Nothing)
            }
            _ => Ok(TapEvent::Nothing),
        }
    }

    fn recv_batch(&mut self, rx: &mut RxBatch) -> Result<usize, TapError> {
        rx.frames.clear();
        rx.meta.clear();
        self.receive(rx);
        Ok(rx.frames.len())
    }

    fn send_batch(&mut self, tx: &TxBatch) -> Result<TxResult, TapError> {
        Ok(self.transmit(tx))
    }

    fn offloads(&self) -> OffloadCaps {
        caps_of(&lock(&self.dev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixStream};
    use std::sync::atomic::AtomicU32;
    use std::thread;
    use std::time::Instant;
    use vhost::vhost_user::message::VhostUserHeaderFlag;
    use vhost::vhost_user::{Frontend, VhostUserFrontend};
    use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
    use vm_memory::{FileOffset, MmapRegion};

    /// Guest memory: MEM_SIZE bytes at GPA, mapped by the "front-end" at QVA.
    const GPA: u64 = 0x10_0000;
    const MEM_SIZE: usize = 4 << 20;
    const QVA: u64 = 0x7f12_3400_0000;
    const QSIZE: u16 = 256;
    /// Where frame buffers start.
    const BUF: u64 = GPA + 0x10000;
    const F_NEXT: u16 = 1;
    const F_WRITE: u16 = 2;
    const F_INDIRECT: u16 = 4;

    /// Descriptor table, avail ring and used ring of queue `q` (GPAs).
    fn rings(q: usize) -> (u64, u64, u64) {
        let b = GPA + q as u64 * 0x4000;
        (b, b + 0x1000, b + 0x2000)
    }

    fn memfd(size: usize) -> File {
        // SAFETY: NUL-terminated name; result checked.
        let fd = unsafe { libc::memfd_create(c"passt-vu-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
        // SAFETY: fresh fd, owned from here.
        let f = unsafe { File::from_raw_fd(fd) };
        f.set_len(size as u64).unwrap();
        f
    }

    fn listener() -> (UnixListener, SocketAddr) {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("passt-vu-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        (UnixListener::bind_addr(&addr).unwrap(), addr)
    }

    fn frame(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
    }

    fn batch(frames: &[&[u8]]) -> TxBatch {
        let mut tx = TxBatch::new();
        for f in frames {
            tx.slot(0).unwrap()[..f.len()].copy_from_slice(f);
            tx.commit(0..f.len());
        }
        tx
    }

    /// The test's side of the guest: the front-end connection, its own
    /// mapping of guest memory, and the driver's view of the rings.
    struct Guest {
        fe: Frontend,
        mem: GuestMemoryMmap,
        kick: [EventFd; 2],
        call: [EventFd; 2],
        _file: File,
    }

    impl Guest {
        fn write(&self, gpa: u64, b: &[u8]) {
            self.mem.write_slice(b, GuestAddress(gpa)).unwrap();
        }

        fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
            let mut v = vec![0; len];
            self.mem.read_slice(&mut v, GuestAddress(gpa)).unwrap();
            v
        }

        fn u16_at(&self, gpa: u64) -> u16 {
            let b = self.read(gpa, 2);
            u16::from_le_bytes([b[0], b[1]])
        }

        /// Write descriptor `i` of queue `q` (virtio 1.1 §2.6.5).
        fn desc(&self, q: usize, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
            self.desc_at(rings(q).0 + 16 * u64::from(i), addr, len, flags, next);
        }

        fn desc_at(&self, at: u64, addr: u64, len: u32, flags: u16, next: u16) {
            let mut d = Vec::new();
            d.extend_from_slice(&addr.to_le_bytes());
            d.extend_from_slice(&len.to_le_bytes());
            d.extend_from_slice(&flags.to_le_bytes());
            d.extend_from_slice(&next.to_le_bytes());
            self.write(at, &d);
        }

        /// Put chain `head` in the avail ring of queue `q`.
        fn offer(&self, q: usize, head: u16) {
            let avail = rings(q).1;
            let idx = self.u16_at(avail + 2);
            self.write(avail + 4 + 2 * u64::from(idx % QSIZE), &head.to_le_bytes());
            self.write(avail + 2, &idx.wrapping_add(1).to_le_bytes());
        }

        fn set_used_event(&self, q: usize, v: u16) {
            self.write(rings(q).1 + 4 + 2 * u64::from(QSIZE), &v.to_le_bytes());
        }

        fn used_idx(&self, q: usize) -> u16 {
            self.u16_at(rings(q).2 + 2)
        }

        /// Used element `i` of queue `q`: (id, len).
        fn used(&self, q: usize, i: u16) -> (u32, u32) {
            let b = self.read(rings(q).2 + 4 + 8 * u64::from(i % QSIZE), 8);
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]), u32::from_le_bytes([b[4], b[5], b[6], b[7]]))
        }

        /// True if the back-end signalled queue `q` since the last look.
        fn called(&self, q: usize) -> bool {
            self.call[q].read().is_ok()
        }

        fn kick(&self, q: usize) {
            self.kick[q].write(1).unwrap();
        }
    }

    /// Run the back-end's events, as the daemon's loop would, until `until`
    /// holds on the events seen or `ms` milliseconds passed.
    fn pump(tap: &mut VhostUserTap, ms: u64, mut until: impl FnMut(&[TapEvent]) -> bool) -> Vec<TapEvent> {
        let deadline = Instant::now() + Duration::from_millis(ms);
        let mut seen = Vec::new();
        while !until(&seen) && Instant::now() < deadline {
            let mut fds = Vec::new();
            tap.poll_fds(&mut fds);
            let mut pfds: Vec<libc::pollfd> =
                fds.iter().map(|p| libc::pollfd { fd: p.fd, events: libc::POLLIN | libc::POLLRDHUP, revents: 0 }).collect();
            // SAFETY: pfds is a valid array of pollfd.
            let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 10) };
            if n <= 0 {
                continue;
            }
            for (p, pf) in fds.iter().zip(&pfds) {
                if pf.revents != 0 {
                    match tap.event(p.id, libc::EPOLLIN as u32) {
                        Ok(ev) => seen.push(ev),
                        Err(e) => panic!("tap event: {e}"),
                    }
                    // The fd set may have changed: poll again.
                    break;
                }
            }
        }
        seen
    }

    /// Connect a front-end to `addr` and start the device with `features`
    /// (those offered, masked), serving it with `tap` meanwhile. Returns
    /// the guest, the features offered and the events seen.
    fn connect(tap: &mut VhostUserTap, addr: &SocketAddr, features: u64) -> (Guest, u64, Vec<TapEvent>) {
        connect_in_order(tap, addr, features, false)
    }

    /// SET_VRING_ENABLE 1 for `q` as a raw message, as QEMU 7.2 sends it
    /// (before SET_FEATURES), with NEED_REPLY; returns the ack's value.
    fn raw_vring_enable(sock: &mut UnixStream, q: u32) -> u64 {
        let mut m = Vec::new();
        for w in [REQ_SET_VRING_ENABLE, HDR_VERSION_1 | HDR_NEED_REPLY, 8, q, 1] {
            m.extend_from_slice(&w.to_ne_bytes());
        }
        io::Write::write_all(sock, &m).unwrap();
        let mut r = [0u8; 20];
        io::Read::read_exact(sock, &mut r).unwrap();
        let word = |i: usize| u32::from_ne_bytes(r[i..i + 4].try_into().unwrap());
        assert_eq!((word(0), word(4), word(8)), (REQ_SET_VRING_ENABLE, HDR_VERSION_1 | HDR_REPLY, 8));
        u64::from_ne_bytes(r[12..20].try_into().unwrap())
    }

    /// As a front-end: send the memory table (`file`, at GPA, seen at QVA
    /// by the front-end) and set up both queues at [`rings`] with their
    /// kick and call eventfds.
    fn set_mem_and_rings(fe: &mut Frontend, file: &File, kick: &[EventFd; 2], call: &[EventFd; 2]) {
        let region = VhostUserMemoryRegionInfo {
            guest_phys_addr: GPA,
            memory_size: MEM_SIZE as u64,
            userspace_addr: QVA,
            mmap_offset: 0,
            mmap_handle: file.as_raw_fd(),
        };
        fe.set_mem_table(&[region]).unwrap();
        for q in 0..NUM_QUEUES {
            let (d, a, u) = rings(q);
            let cfg = VringConfigData {
                queue_max_size: QSIZE,
                queue_size: QSIZE,
                flags: 0,
                desc_table_addr: d - GPA + QVA,
                used_ring_addr: u - GPA + QVA,
                avail_ring_addr: a - GPA + QVA,
                log_addr: None,
            };
            fe.set_vring_num(q, QSIZE).unwrap();
            fe.set_vring_base(q, 0).unwrap();
            fe.set_vring_addr(q, &cfg).unwrap();
            fe.set_vring_kick(q, &kick[q]).unwrap();
            fe.set_vring_call(q, &call[q]).unwrap();
        }
    }

    /// [`connect`]; with `qemu72`, in the order QEMU 7.2 uses: the rings
    /// are enabled right after the protocol features, before SET_FEATURES.
    fn connect_in_order(tap: &mut VhostUserTap, addr: &SocketAddr, features: u64, qemu72: bool) -> (Guest, u64, Vec<TapEvent>) {
        let addr = addr.clone();
        let file = memfd(MEM_SIZE);
        let h = thread::spawn(move || {
            let mmap = MmapRegion::from_file(FileOffset::new(file.try_clone().unwrap(), 0), MEM_SIZE).unwrap();
            let mem = GuestMemoryMmap::from_regions(vec![GuestRegionMmap::new(mmap, GuestAddress(GPA)).unwrap()]).unwrap();
            let kick = [EventFd::new(libc::EFD_NONBLOCK).unwrap(), EventFd::new(libc::EFD_NONBLOCK).unwrap()];
            let call = [EventFd::new(libc::EFD_NONBLOCK).unwrap(), EventFd::new(libc::EFD_NONBLOCK).unwrap()];
            let sock = UnixStream::connect_addr(&addr).unwrap();
            let mut raw = sock.try_clone().unwrap();
            raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut fe = Frontend::from_stream(sock, 2);
            fe.set_owner().unwrap();
            let offered = fe.get_features().unwrap();
            if !qemu72 {
                fe.set_features(offered & features).unwrap();
            }
            let proto = fe.get_protocol_features().unwrap();
            assert_eq!(proto, VhostUserProtocolFeatures::REPLY_ACK);
            fe.set_protocol_features(proto).unwrap();
            // Every message from now on waits for the back-end's ack.
            fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
            if qemu72 {
                for q in 0..NUM_QUEUES as u32 {
                    assert_eq!(raw_vring_enable(&mut raw, q), 0, "ack of SET_VRING_ENABLE {q}");
                }
                fe.set_features(offered & features).unwrap();
            }
            set_mem_and_rings(&mut fe, &file, &kick, &call);
            for q in (0..NUM_QUEUES).filter(|_| !qemu72) {
                fe.set_vring_enable(q, true).unwrap();
            }
            (Guest { fe, mem, kick, call, _file: file }, offered)
        });
        let seen = pump(tap, 10_000, |_| h.is_finished());
        let (guest, offered) = h.join().expect("front-end thread");
        // SET_VRING_CALL signals once on its own.
        guest.called(RX_QUEUE);
        guest.called(TX_QUEUE);
        (guest, offered, seen)
    }

    fn ready_tap(features: u64) -> (VhostUserTap, Guest, SocketAddr) {
        let (l, addr) = listener();
        let mut tap = VhostUserTap::new(l, false).unwrap();
        let (guest, _, seen) = connect(&mut tap, &addr, features);
        assert!(seen.contains(&TapEvent::Connected), "{seen:?}");
        (tap, guest, addr)
    }

    /// Kick the TX queue and read what the back-end gives.
    fn tx_roundtrip(tap: &mut VhostUserTap, guest: &Guest) -> Vec<Vec<u8>> {
        guest.kick(TX_QUEUE);
        let seen = pump(tap, 2000, |ev| ev.contains(&TapEvent::Readable));
        assert!(seen.contains(&TapEvent::Readable), "{seen:?}");
        let mut rx = RxBatch::new();
        let n = tap.recv_batch(&mut rx).unwrap();
        assert_eq!(n, rx.frames.len());
        rx.frames.iter().map(|r| rx.buf[r.clone()].to_vec()).collect()
    }

    const ALL: u64 = u64::MAX;

    #[test]
    fn print_capabilities_is_upstreams_json() {
        assert_eq!(print_capabilities().as_bytes(), b"{\n  \"type\": \"net\"\n}\n");
    }

    #[test]
    fn front_end_gets_offered_features_and_connected_once_queues_are_enabled() {
        let (l, addr) = listener();
        let mut tap = VhostUserTap::new(l, false).unwrap();
        assert!(!tap.is_connected());
        let (_guest, offered, seen) = connect(&mut tap, &addr, ALL);
        let tso = (1 << 12) | (1 << 11) | (1 << 8) | (1 << 7) | (1 << 0);
        assert_eq!(offered, (1 << 32) | (1 << 30) | (1 << 29) | (1 << 28) | (1 << 15) | (1 << 1) | tso);
        assert_eq!(seen.iter().filter(|e| **e == TapEvent::Connected).count(), 1, "{seen:?}");
        assert!(tap.is_connected() && tap.is_ready());
        let mut fds = Vec::new();
        tap.poll_fds(&mut fds);
        let ids: Vec<u32> = fds.iter().map(|p| p.id).collect();
        assert_eq!(ids, [ID_LISTEN, ID_CTRL, ID_KICK, ID_RX_KICK]);
    }

    #[test]
    fn rings_enabled_before_set_features_as_qemu_7_2_does_work() {
        let (l, addr) = listener();
        let mut tap = VhostUserTap::new(l, false).unwrap();
        let (g, _, seen) = connect_in_order(&mut tap, &addr, ALL, true);
        assert!(seen.contains(&TapEvent::Connected), "{seen:?}");
        let f = frame(60, 5);
        g.write(BUF + 12, &f);
        g.desc(TX_QUEUE, 0, BUF, 72, 0, 0);
        g.offer(TX_QUEUE, 0);
        assert_eq!(tx_roundtrip(&mut tap, &g), [f]);
    }

    #[test]
    fn guest_tx_frames_come_out_of_recv_batch_byte_exact() {
        let (mut tap, g, _a) = ready_tap(ALL);
        let f1 = frame(60, 1);
        let f2 = frame(1514, 2);
        let f3 = frame(100, 3);
        // Chain 0: header alone, then the frame in two descriptors.
        g.write(BUF, &[0xaa; VNET_HDR_LEN]);
        g.write(BUF + 0x100, &f1[..20]);
        g.write(BUF + 0x200, &f1[20..]);
        g.desc(TX_QUEUE, 0, BUF, 12, F_NEXT, 1);
        g.desc(TX_QUEUE, 1, BUF + 0x100, 20, F_NEXT, 2);
        g.desc(TX_QUEUE, 2, BUF + 0x200, 40, 0, 0);
        // Chain 3: header and frame in one descriptor.
        g.write(BUF + 0x1000, &[0; VNET_HDR_LEN]);
        g.write(BUF + 0x1000 + 12, &f2);
        g.desc(TX_QUEUE, 3, BUF + 0x1000, 12 + 1514, 0, 0);
        // Chain 4: indirect table of two descriptors, header split 5 + 7.
        let table = BUF + 0x2000;
        g.write(BUF + 0x3000, &[0; 5]);
        g.write(BUF + 0x3100, &[0; 7]);
        g.write(BUF + 0x3107, &f3);
        g.desc_at(table, BUF + 0x3000, 5, F_NEXT, 1);
        g.desc_at(table + 16, BUF + 0x3100, 7 + 100, 0, 0);
        g.desc(TX_QUEUE, 4, table, 32, F_INDIRECT, 0);
        for head in [0, 3, 4] {
            g.offer(TX_QUEUE, head);
        }
        let got = tx_roundtrip(&mut tap, &g);
        assert_eq!(got, [f1, f2, f3]);
        assert_eq!(g.used_idx(TX_QUEUE), 3);
        assert_eq!([g.used(TX_QUEUE, 0).0, g.used(TX_QUEUE, 1).0, g.used(TX_QUEUE, 2).0], [0, 3, 4]);
        assert!(g.called(TX_QUEUE));
        assert_eq!(tap.malformed(), 0);
        // Nothing more: the next read is empty.
        let mut rx = RxBatch::new();
        assert_eq!(tap.recv_batch(&mut rx).unwrap(), 0);
    }

    #[test]
    fn offload_metadata_goes_into_and_comes_out_of_the_header_as_acked() {
        let (mut tap, g, _a) = ready_tap(ALL);
        assert_eq!(tap.offloads(), OffloadCaps { csum: true, tso: true, uso: false });
        // To the guest: a TCPv4 super-frame of 3000 bytes over two
        // mergeable buffers; its header carries the metadata.
        for i in 0..2u16 {
            g.desc(RX_QUEUE, i, BUF + u64::from(i) * 0x1000, 2048, F_WRITE, 0);
            g.offer(RX_QUEUE, i);
        }
        let f = frame(3000, 4);
        let off = Offload { gso: super::super::GsoType::TcpV4, gso_size: 1460, hdr_len: 54, csum: Some((34, 16)), data_valid: false };
        let mut tx = TxBatch::new();
        tx.slot(0).unwrap()[..f.len()].copy_from_slice(&f);
        tx.commit_offload(0..f.len(), off);
        assert_eq!(tap.send_batch(&tx).unwrap(), TxResult { sent: 1, dropped: 0 });
        assert_eq!(g.read(BUF, 12), [1, 1, 54, 0, 0xb4, 0x05, 34, 0, 16, 0, 2, 0]);
        assert_eq!(g.read(BUF + 12, 2036), &f[..2036]);
        assert_eq!(g.read(BUF + 0x1000, 964), &f[2036..]);
        // From the guest: the header, split 3 + 9 over two descriptors,
        // becomes the frame's metadata.
        let h = [1u8, 4, 74, 0, 0xa0, 0x05, 54, 0, 16, 0, 0, 0];
        let f6 = frame(5000, 6);
        g.write(BUF + 0x4000, &h[..3]);
        g.write(BUF + 0x5000, &h[3..]);
        g.write(BUF + 0x5000 + 9, &f6);
        g.desc(TX_QUEUE, 0, BUF + 0x4000, 3, F_NEXT, 1);
        g.desc(TX_QUEUE, 1, BUF + 0x5000, 9 + 5000, 0, 0);
        g.offer(TX_QUEUE, 0);
        g.kick(TX_QUEUE);
        let seen = pump(&mut tap, 2000, |ev| ev.contains(&TapEvent::Readable));
        assert!(seen.contains(&TapEvent::Readable), "{seen:?}");
        let mut rx = RxBatch::new();
        assert_eq!(tap.recv_batch(&mut rx).unwrap(), 1);
        assert_eq!(rx.buf[rx.frames[0].clone()], f6[..]);
        let want = Offload { gso: super::super::GsoType::TcpV6, gso_size: 1440, hdr_len: 74, csum: Some((54, 16)), data_valid: false };
        assert_eq!(rx.offload(0), want);
        // Only what the guest acked is offered towards it.
        let (tap, _g, _a) = ready_tap(ALL & !VIRTIO_NET_F_GUEST_TSO6);
        assert_eq!(tap.offloads(), OffloadCaps { csum: true, tso: false, uso: false });
        let (tap, _g, _a) = ready_tap(ALL & !VIRTIO_NET_F_GUEST_CSUM);
        assert_eq!(tap.offloads(), OffloadCaps { csum: false, tso: false, uso: false });
    }

    #[test]
    fn send_batch_writes_header_and_frame_to_rx_buffers_and_signals_call() {
        let (mut tap, g, _a) = ready_tap(ALL);
        for i in 0..2u16 {
            g.desc(RX_QUEUE, i, BUF + u64::from(i) * 0x1000, 2048, F_WRITE, 0);
            g.offer(RX_QUEUE, i);
        }
        let (f1, f2) = (frame(60, 9), frame(100, 10));
        let r = tap.send_batch(&batch(&[&f1, &f2])).unwrap();
        assert_eq!(r, TxResult { sent: 2, dropped: 0 });
        assert_eq!(g.used_idx(RX_QUEUE), 2);
        assert_eq!(g.used(RX_QUEUE, 0), (0, 12 + 60));
        assert_eq!(g.used(RX_QUEUE, 1), (1, 12 + 100));
        // flags: DATA_VALID (GUEST_CSUM acked); gso_type, hdr_len,
        // gso_size, csum_start, csum_offset: 0; num_buffers: 1 (le16).
        assert_eq!(g.read(BUF, 12), [2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(g.read(BUF + 12, 60), f1);
        assert_eq!(g.read(BUF + 0x1000 + 12, 100), f2);
        assert!(g.called(RX_QUEUE));
        // Without GUEST_CSUM, flags stay 0.
        let (mut tap, g, _a) = ready_tap(ALL & !VIRTIO_NET_F_GUEST_CSUM);
        g.desc(RX_QUEUE, 0, BUF, 2048, F_WRITE, 0);
        g.offer(RX_QUEUE, 0);
        assert_eq!(tap.send_batch(&batch(&[&f1])).unwrap(), TxResult { sent: 1, dropped: 0 });
        assert_eq!(g.read(BUF, 12), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn frame_larger_than_one_rx_buffer_spans_several_with_mrg_rxbuf() {
        let (mut tap, g, _a) = ready_tap(ALL);
        // Buffer 0 is two descriptors, 11 + 989 bytes: num_buffers straddles
        // them. Buffers 1..3 are 1000 bytes each.
        g.desc(RX_QUEUE, 0, BUF, 11, F_WRITE | F_NEXT, 1);
        g.desc(RX_QUEUE, 1, BUF + 0x100, 989, F_WRITE, 0);
        g.offer(RX_QUEUE, 0);
        for i in 2..5u16 {
            g.desc(RX_QUEUE, i, BUF + u64::from(i) * 0x1000, 1000, F_WRITE, 0);
            g.offer(RX_QUEUE, i);
        }
        let f = frame(2500, 33);
        let r = tap.send_batch(&batch(&[&f])).unwrap();
        assert_eq!(r, TxResult { sent: 1, dropped: 0 });
        // 12 + 2500 bytes: 1000 + 1000 + 512, three buffers.
        assert_eq!(g.used_idx(RX_QUEUE), 3);
        assert_eq!([g.used(RX_QUEUE, 0), g.used(RX_QUEUE, 1), g.used(RX_QUEUE, 2)], [(0, 1000), (2, 1000), (3, 512)]);
        let mut hdr = g.read(BUF, 11);
        hdr.extend(g.read(BUF + 0x100, 1));
        // flags: DATA_VALID (GUEST_CSUM acked).
        assert_eq!(hdr, [2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0]);
        let mut data = g.read(BUF + 0x101, 988);
        data.extend(g.read(BUF + 0x2000, 1000));
        data.extend(g.read(BUF + 0x3000, 512));
        assert_eq!(data, f);
        assert!(g.called(RX_QUEUE));
    }

    #[test]
    fn without_mrg_rxbuf_a_frame_too_big_for_its_buffer_is_dropped_and_the_buffer_kept() {
        let (mut tap, g, _a) = ready_tap(ALL & !VIRTIO_NET_F_MRG_RXBUF);
        g.desc(RX_QUEUE, 0, BUF, 100, F_WRITE, 0);
        g.offer(RX_QUEUE, 0);
        let (big, small) = (frame(200, 1), frame(50, 2));
        let r = tap.send_batch(&batch(&[&big, &small])).unwrap();
        assert_eq!(r, TxResult { sent: 1, dropped: 1 });
        assert_eq!(g.used_idx(RX_QUEUE), 1);
        assert_eq!(g.used(RX_QUEUE, 0), (0, 62));
        assert_eq!(g.read(BUF, 12), [2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(g.read(BUF + 12, 50), small);
        assert_eq!(tap.malformed(), 0);
    }

    #[test]
    fn without_rx_buffers_frames_wait_in_order_until_the_guest_adds_some() {
        let (mut tap, g, _a) = ready_tap(ALL);
        let (f1, f2, f3, f4) = (frame(60, 1), frame(70, 2), frame(80, 3), frame(90, 4));
        let r = tap.send_batch(&batch(&[&f1, &f2, &f3])).unwrap();
        assert_eq!(r, TxResult { sent: 3, dropped: 0 });
        assert_eq!(g.used_idx(RX_QUEUE), 0);
        assert!(!g.called(RX_QUEUE));
        // The back-end asked for a kick once buffers come (EVENT_IDX:
        // avail_event in the used ring is the next avail index, 0).
        assert_eq!(g.u16_at(rings(RX_QUEUE).2 + 4 + 8 * u64::from(QSIZE)), 0);
        for i in 0..2u16 {
            g.desc(RX_QUEUE, i, BUF + u64::from(i) * 0x1000, 2048, F_WRITE, 0);
            g.offer(RX_QUEUE, i);
        }
        g.kick(RX_QUEUE);
        assert_eq!(tap.event(ID_RX_KICK, libc::EPOLLIN as u32).unwrap(), TapEvent::Nothing);
        assert_eq!(g.used_idx(RX_QUEUE), 2);
        assert!(g.called(RX_QUEUE));
        assert_eq!(g.read(BUF + 12, 60), f1);
        assert_eq!(g.read(BUF + 0x1000 + 12, 70), f2);
        // The kick was read.
        assert!(g.kick[RX_QUEUE].read().is_err());
        // Still waiting: f3. A new frame goes after it.
        g.desc(RX_QUEUE, 2, BUF + 0x2000, 2048, F_WRITE, 0);
        g.offer(RX_QUEUE, 2);
        assert_eq!(tap.send_batch(&batch(&[&f4])).unwrap(), TxResult { sent: 1, dropped: 0 });
        assert_eq!(g.used_idx(RX_QUEUE), 3);
        assert_eq!(g.read(BUF + 0x2000 + 12, 80), f3);
        g.desc(RX_QUEUE, 3, BUF + 0x3000, 2048, F_WRITE, 0);
        g.offer(RX_QUEUE, 3);
        g.kick(RX_QUEUE);
        tap.event(ID_RX_KICK, libc::EPOLLIN as u32).unwrap();
        assert_eq!(g.used(RX_QUEUE, 3), (3, 12 + 90));
        assert_eq!(g.read(BUF + 0x3000 + 12, 90), f4);
        assert_eq!(tap.malformed(), 0);
    }

    #[test]
    fn a_waiting_frame_too_big_for_the_buffers_there_asks_for_a_kick_on_more() {
        let (mut tap, g, _a) = ready_tap(ALL);
        let f = frame(2500, 8);
        g.desc(RX_QUEUE, 0, BUF, 1000, F_WRITE, 0);
        g.offer(RX_QUEUE, 0);
        assert_eq!(tap.send_batch(&batch(&[&f])).unwrap(), TxResult { sent: 1, dropped: 0 });
        assert_eq!(g.used_idx(RX_QUEUE), 0);
        // avail_event: kick once the avail index passes 1, not 0.
        assert_eq!(g.u16_at(rings(RX_QUEUE).2 + 4 + 8 * u64::from(QSIZE)), 1);
        for i in 1..3u16 {
            g.desc(RX_QUEUE, i, BUF + u64::from(i) * 0x1000, 1000, F_WRITE, 0);
            g.offer(RX_QUEUE, i);
        }
        g.kick(RX_QUEUE);
        tap.event(ID_RX_KICK, libc::EPOLLIN as u32).unwrap();
        assert_eq!(g.used_idx(RX_QUEUE), 3);
        assert_eq!(g.read(BUF + 10, 2), [3, 0]);
        // Without EVENT_IDX: the NO_NOTIFY flag is cleared while waiting.
        let (mut tap, g, _a) = ready_tap(ALL & !VIRTIO_RING_F_EVENT_IDX);
        assert_eq!(g.u16_at(rings(RX_QUEUE).2), 1, "no kicks while nothing waits");
        assert_eq!(tap.send_batch(&batch(&[&f])).unwrap(), TxResult { sent: 1, dropped: 0 });
        assert_eq!(g.u16_at(rings(RX_QUEUE).2), 0);
    }

    #[test]
    fn buffers_published_before_the_kick_request_are_used_without_a_kick() {
        // The guest publishes buffers and decides not to kick (it has not
        // seen our request yet); our request then names an index past
        // them. They must be used at once, not after a kick that never
        // comes.
        let (mut tap, g, _a) = ready_tap(ALL);
        let f = frame(60, 6);
        assert_eq!(tap.send_batch(&batch(&[&f])).unwrap(), TxResult { sent: 1, dropped: 0 });
        assert_eq!(g.used_idx(RX_QUEUE), 0);
        g.desc(RX_QUEUE, 0, BUF, 2048, F_WRITE, 0);
        g.offer(RX_QUEUE, 0);
        // No kick: arm again, as the next send_batch or rx_kick would.
        {
            let mut guard = lock(&tap.dev);
            let dev = &mut *guard;
            let (mem, vq) = (dev.mem.as_ref().unwrap(), dev.vq.get_mut(RX_QUEUE).unwrap());
            tap.used.clear();
            assert_eq!(tap.backlog.arm(mem, vq, RxMode { mrg: true, hdr_flags: 0 }, &mut tap.used), 0);
            complete(mem, vq, &tap.used);
        }
        assert!(tap.backlog.is_empty(), "the frame still waits although a buffer is there");
        assert_eq!(g.used_idx(RX_QUEUE), 1);
        assert_eq!(g.read(BUF + 12, 60), f);
        assert!(g.called(RX_QUEUE));
    }

    /// End the test process if `what` is still running after `secs`: for
    /// tests whose failure mode is an endless loop.
    fn watchdog(secs: u64, what: &'static str) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = std::sync::Arc::clone(&done);
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(secs);
            while Instant::now() < deadline {
                if d.load(Ordering::Relaxed) {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            eprintln!("{what}: still running after {secs} s");
            std::process::exit(99);
        });
        done
    }

    #[test]
    fn a_tx_available_index_beyond_the_queue_stops_the_queue_instead_of_looping() {
        let (mut tap, g, _a) = ready_tap(ALL);
        g.write(rings(TX_QUEUE).1 + 2, &(QSIZE + 1).to_le_bytes());
        g.kick(TX_QUEUE);
        let seen = pump(&mut tap, 2000, |ev| ev.contains(&TapEvent::Readable));
        assert!(seen.contains(&TapEvent::Readable), "{seen:?}");
        let done = watchdog(5, "recv_batch with an available index past the queue");
        let mut rx = RxBatch::new();
        assert_eq!(tap.recv_batch(&mut rx).unwrap(), 0);
        done.store(true, Ordering::Relaxed);
        assert!(!lock(&tap.dev).queue_usable(TX_QUEUE));
        // The other direction still works.
        g.desc(RX_QUEUE, 0, BUF, 2048, F_WRITE, 0);
        g.offer(RX_QUEUE, 0);
        let f = frame(60, 3);
        assert_eq!(tap.send_batch(&batch(&[&f])).unwrap(), TxResult { sent: 1, dropped: 0 });
        assert_eq!(g.read(BUF + 12, 60), f);
    }

    #[test]
    fn a_partial_message_header_disconnects_within_the_timeout() {
        let (l, addr) = listener();
        let mut tap = VhostUserTap::new(l, false).unwrap();
        let mut s = UnixStream::connect_addr(&addr).unwrap();
        pump(&mut tap, 2000, |_| false);
        assert!(tap.is_connected());
        io::Write::write_all(&mut s, &[1u8, 0, 0]).unwrap();
        let done = watchdog(5, "control() on a partial header");
        let t = Instant::now();
        let r = tap.event(ID_CTRL, libc::EPOLLIN as u32);
        done.store(true, Ordering::Relaxed);
        assert_eq!(r.unwrap(), TapEvent::Disconnected);
        assert!(t.elapsed() < CTRL_TIMEOUT * 3, "took {:?}", t.elapsed());
        assert!(!tap.is_connected());
    }

    #[test]
    fn a_kick_eventfd_sent_again_keeps_a_clean_epoll_registration() {
        let (mut tap, g, _a) = ready_tap(ALL);
        // As the data plane's tap_sync does: delete every registration,
        // then list and add the fds again.
        // SAFETY: plain syscall.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(ep >= 0);
        let mut regs: Vec<PollFd> = Vec::new();
        let sync = |tap: &mut VhostUserTap, regs: &mut Vec<PollFd>| -> Vec<i32> {
            let mut errs = Vec::new();
            for p in regs.drain(..) {
                // SAFETY: plain syscall.
                if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, p.fd, std::ptr::null_mut()) } < 0 {
                    errs.push(io::Error::last_os_error().raw_os_error().unwrap_or(0));
                }
            }
            tap.poll_fds(regs);
            for p in regs.iter() {
                let mut ev = libc::epoll_event { events: p.events, u64: u64::from(p.id) };
                // SAFETY: a valid event.
                if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, p.fd, &mut ev) } < 0 {
                    errs.push(io::Error::last_os_error().raw_os_error().unwrap_or(0));
                }
            }
            tap.polled();
            errs
        };
        assert!(sync(&mut tap, &mut regs).is_empty());
        // The front-end sends the TX kick eventfd it keeps open again.
        let mut g = g;
        let mut errs = Vec::new();
        for _ in 0..3 {
            let h = thread::spawn(move || {
                g.fe.set_vring_kick(TX_QUEUE, &g.kick[TX_QUEUE]).unwrap();
                g
            });
            pump(&mut tap, 3000, |_| h.is_finished());
            g = h.join().unwrap();
            errs.extend(sync(&mut tap, &mut regs));
        }
        assert!(errs.is_empty(), "epoll_ctl errors {errs:?}");
        // A kick still reaches the (one) registration of the TX queue.
        g.kick(TX_QUEUE);
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
        // SAFETY: evs is valid for 8 events.
        let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), 8, 1000) };
        let ids: Vec<u64> = evs[..n.max(0) as usize].iter().map(|e| e.u64).collect();
        assert_eq!(ids, [u64::from(ID_KICK)]);
        // SAFETY: our epoll fd.
        unsafe { libc::close(ep) };
    }

    #[test]
    fn a_memory_region_past_the_end_of_its_file_is_refused() {
        let mut dev = Device::new().unwrap();
        let file = memfd(0x10000);
        let region = VhostUserMemoryRegion::new(0, 0x20000, 0x7f00_0000_0000, 0);
        assert!(dev.set_mem_table(&[region], vec![file.try_clone().unwrap()], None).is_err());
        assert!(dev.mem.is_none());
        let region = VhostUserMemoryRegion::new(0, 0x10000, 0x7f00_0000_0000, 0);
        assert!(dev.set_mem_table(&[region], vec![file], None).is_ok());
    }

    #[test]
    fn transmit_frames_left_without_a_kick_are_read_when_we_next_write() {
        let (mut tap, g, _a) = ready_tap(ALL);
        // The queue is empty and waits for a kick.
        let mut rx = RxBatch::new();
        assert_eq!(tap.recv_batch(&mut rx).unwrap(), 0);
        let f = frame(60, 7);
        g.write(BUF, &[0; VNET_HDR_LEN]);
        g.write(BUF + 12, &f);
        g.desc(TX_QUEUE, 0, BUF, 12 + 60, 0, 0);
        g.offer(TX_QUEUE, 0);
        // No kick reaches us; we write to the guest.
        g.desc(RX_QUEUE, 0, BUF + 0x1000, 2048, F_WRITE, 0);
        g.offer(RX_QUEUE, 0);
        assert_eq!(tap.send_batch(&batch(&[&frame(70, 1)])).unwrap(), TxResult { sent: 1, dropped: 0 });
        assert_eq!(tap.tx_rescues(), 1);
        assert_eq!(tap.event(ID_KICK, libc::EPOLLIN as u32).unwrap(), TapEvent::Readable);
        assert_eq!(tap.recv_batch(&mut rx).unwrap(), 1);
        assert_eq!(&rx.buf[rx.frames[0].clone()], &f[..]);
        // Nothing pending: the next write doesn't count one.
        g.desc(RX_QUEUE, 1, BUF + 0x2000, 2048, F_WRITE, 0);
        g.offer(RX_QUEUE, 1);
        tap.send_batch(&batch(&[&frame(70, 2)])).unwrap();
        assert_eq!(tap.tx_rescues(), 1);
    }

    #[test]
    fn without_rx_buffers_frames_past_the_backlog_are_dropped_and_counted() {
        let (mut tap, g, _a) = ready_tap(ALL);
        let f = frame(60, 4);
        let full: Vec<&[u8]> = (0..BATCH).map(|_| &f[..]).collect();
        for _ in 0..BACKLOG_FRAMES / BATCH {
            assert_eq!(tap.send_batch(&batch(&full)).unwrap(), TxResult { sent: BATCH, dropped: 0 });
        }
        assert_eq!(tap.send_batch(&batch(&[&f, &f])).unwrap(), TxResult { sent: 0, dropped: 2 });
        // A frame of more bytes than the backlog holds never waits.
        let (l, _addr) = listener();
        let mut fresh = VhostUserTap::new(l, false).unwrap();
        assert!(fresh.backlog.push(&f, Offload::default()));
        let big = vec![0u8; BACKLOG_BYTES];
        assert!(!fresh.backlog.push(&big, Offload::default()));
        assert_eq!(g.used_idx(RX_QUEUE), 0);
    }

    #[test]
    fn backlog_compacts_to_take_frames_while_older_ones_left() {
        let mut b = Backlog::new();
        let half = vec![7u8; BACKLOG_BYTES / 2];
        let d = Offload::default();
        assert!(b.push(&half, d));
        assert!(b.push(&[1, 2, 3], d));
        assert!(!b.push(&half, d), "no room while both wait");
        b.frames.pop_front();
        assert!(b.push(&half, d), "room once the first is gone");
        assert_eq!(b.frames.iter().map(|f| f.1).collect::<Vec<_>>(), [3, BACKLOG_BYTES / 2]);
        let (s, l, _) = b.frames[0];
        assert_eq!(&b.buf[s..s + l], &[1, 2, 3]);
    }

    #[test]
    fn malformed_tx_chains_are_dropped_counted_and_returned() {
        let (mut tap, g, _a) = ready_tap(ALL);
        let good = frame(80, 7);
        // 0: address outside guest memory.
        g.desc(TX_QUEUE, 0, GPA + MEM_SIZE as u64 + 0x1000, 100, 0, 0);
        // 1: shorter than the virtio-net header.
        g.desc(TX_QUEUE, 1, BUF, 8, 0, 0);
        // 2 -> 3 -> 2: a loop.
        g.desc(TX_QUEUE, 2, BUF, 12, F_NEXT, 3);
        g.desc(TX_QUEUE, 3, BUF + 0x100, 60, F_NEXT, 2);
        // 4: device-writable descriptor in a transmit chain.
        g.desc(TX_QUEUE, 4, BUF, 100, F_WRITE, 0);
        // 5: frame longer than MAX_FRAME.
        g.desc(TX_QUEUE, 5, BUF, (VNET_HDR_LEN + MAX_FRAME + 1) as u32, 0, 0);
        // 6: next index past the table.
        g.desc(TX_QUEUE, 6, BUF, 80, F_NEXT, QSIZE + 5);
        // 7: straddles the end of guest memory.
        g.desc(TX_QUEUE, 7, GPA + MEM_SIZE as u64 - 50, 100, 0, 0);
        // 8: fine.
        g.write(BUF + 0x20000, &[0; VNET_HDR_LEN]);
        g.write(BUF + 0x20000 + 12, &good);
        g.desc(TX_QUEUE, 8, BUF + 0x20000, 12 + 80, 0, 0);
        for head in 0..9 {
            g.offer(TX_QUEUE, head);
        }
        let got = tx_roundtrip(&mut tap, &g);
        assert_eq!(got, [good]);
        assert_eq!(tap.malformed(), 8);
        assert_eq!(g.used_idx(TX_QUEUE), 9);
        assert!(g.called(TX_QUEUE));
    }

    #[test]
    fn malformed_rx_buffer_is_returned_empty_and_its_frame_dropped() {
        let (mut tap, g, _a) = ready_tap(ALL);
        g.desc(RX_QUEUE, 0, GPA + MEM_SIZE as u64, 2048, F_WRITE, 0);
        g.desc(RX_QUEUE, 1, BUF, 2048, 0, 0); // device-readable
        g.desc(RX_QUEUE, 2, BUF + 0x1000, 2048, F_WRITE, 0);
        for i in 0..3 {
            g.offer(RX_QUEUE, i);
        }
        let f = frame(60, 1);
        let r = tap.send_batch(&batch(&[&f, &f, &f])).unwrap();
        assert_eq!(r, TxResult { sent: 1, dropped: 2 });
        assert_eq!(tap.malformed(), 2);
        assert_eq!(g.used_idx(RX_QUEUE), 3);
        assert_eq!([g.used(RX_QUEUE, 0), g.used(RX_QUEUE, 1), g.used(RX_QUEUE, 2)], [(0, 0), (1, 0), (2, 72)]);
        assert_eq!(g.read(BUF + 0x1000 + 12, 60), f);
    }

    #[test]
    fn event_idx_suppresses_call_until_used_event_is_crossed() {
        let (mut tap, g, _a) = ready_tap(ALL);
        for i in 0..4u16 {
            g.desc(RX_QUEUE, i, BUF + u64::from(i) * 0x1000, 2048, F_WRITE, 0);
            g.offer(RX_QUEUE, i);
        }
        let f = frame(60, 1);
        // The driver wants a call once entry 2 is used.
        g.set_used_event(RX_QUEUE, 2);
        assert_eq!(tap.send_batch(&batch(&[&f])).unwrap().sent, 1);
        assert!(!g.called(RX_QUEUE));
        assert_eq!(tap.send_batch(&batch(&[&f])).unwrap().sent, 1);
        assert!(!g.called(RX_QUEUE));
        assert_eq!(tap.send_batch(&batch(&[&f])).unwrap().sent, 1);
        assert!(g.called(RX_QUEUE));
        // Without EVENT_IDX, the NO_INTERRUPT flag is what counts.
        let (mut tap, g, _a) = ready_tap(ALL & !VIRTIO_RING_F_EVENT_IDX);
        for i in 0..2u16 {
            g.desc(RX_QUEUE, i, BUF + u64::from(i) * 0x1000, 2048, F_WRITE, 0);
            g.offer(RX_QUEUE, i);
        }
        g.write(rings(RX_QUEUE).1, &VRING_AVAIL_F_NO_INTERRUPT.to_le_bytes());
        assert_eq!(tap.send_batch(&batch(&[&f])).unwrap().sent, 1);
        assert!(!g.called(RX_QUEUE));
        g.write(rings(RX_QUEUE).1, &0u16.to_le_bytes());
        assert_eq!(tap.send_batch(&batch(&[&f])).unwrap().sent, 1);
        assert!(g.called(RX_QUEUE));
    }

    #[test]
    fn a_full_batch_kicks_itself_for_the_rest() {
        let (mut tap, g, _a) = ready_tap(ALL);
        let n = BATCH as u16 + 1;
        for i in 0..n {
            let at = BUF + u64::from(i) * 0x100;
            g.write(at + 12, &frame(60, i as u8));
            g.desc(TX_QUEUE, i, at, 72, 0, 0);
            g.offer(TX_QUEUE, i);
        }
        let first = tx_roundtrip(&mut tap, &g);
        assert_eq!(first.len(), BATCH);
        // No kick from the guest: the back-end's own brings the last one.
        let seen = pump(&mut tap, 2000, |ev| ev.contains(&TapEvent::Readable));
        assert!(seen.contains(&TapEvent::Readable), "{seen:?}");
        let mut rx = RxBatch::new();
        assert_eq!(tap.recv_batch(&mut rx).unwrap(), 1);
        assert_eq!(&rx.buf[rx.frames[0].clone()], &frame(60, BATCH as u8)[..]);
        assert_eq!(g.used_idx(TX_QUEUE), n);
    }

    #[test]
    fn before_ready_send_drops_and_recv_reads_nothing() {
        let (l, _addr) = listener();
        let mut tap = VhostUserTap::new(l, false).unwrap();
        let f = frame(60, 1);
        assert_eq!(tap.send_batch(&batch(&[&f, &f])).unwrap(), TxResult { sent: 0, dropped: 2 });
        let mut rx = RxBatch::new();
        assert_eq!(tap.recv_batch(&mut rx).unwrap(), 0);
        let mut fds = Vec::new();
        tap.poll_fds(&mut fds);
        assert_eq!(fds.len(), 1);
        assert_eq!(fds[0].id, ID_LISTEN);
    }

    #[test]
    fn stopped_ring_returns_its_base_and_takes_no_more_frames() {
        let (mut tap, g, _a) = ready_tap(ALL);
        g.desc(RX_QUEUE, 0, BUF, 2048, F_WRITE, 0);
        g.offer(RX_QUEUE, 0);
        let f = frame(60, 1);
        assert_eq!(tap.send_batch(&batch(&[&f])).unwrap().sent, 1);
        let h = thread::spawn(move || {
            let base = g.fe.get_vring_base(RX_QUEUE).unwrap();
            (g, base)
        });
        pump(&mut tap, 5000, |_| h.is_finished());
        let (g, base) = h.join().unwrap();
        assert_eq!(base, 1);
        assert!(!tap.is_ready());
        g.desc(RX_QUEUE, 1, BUF, 2048, F_WRITE, 0);
        g.offer(RX_QUEUE, 1);
        assert_eq!(tap.send_batch(&batch(&[&f])).unwrap(), TxResult { sent: 0, dropped: 1 });
    }

    #[test]
    fn disconnect_gives_disconnected_and_a_second_front_end_works() {
        let (l, addr) = listener();
        let mut tap = VhostUserTap::new(l, false).unwrap();
        let (g, _, _) = connect(&mut tap, &addr, ALL);
        let gen = tap.poll_gen();
        drop(g);
        let seen = pump(&mut tap, 5000, |ev| ev.contains(&TapEvent::Disconnected));
        assert!(seen.contains(&TapEvent::Disconnected), "{seen:?}");
        assert!(!tap.is_connected() && !tap.is_ready());
        assert_ne!(tap.poll_gen(), gen);
        let mut fds = Vec::new();
        tap.poll_fds(&mut fds);
        assert_eq!(fds.len(), 1);
        let f = frame(60, 1);
        assert_eq!(tap.send_batch(&batch(&[&f])).unwrap(), TxResult { sent: 0, dropped: 1 });

        let (g, _, seen) = connect(&mut tap, &addr, ALL);
        assert!(seen.contains(&TapEvent::Connected), "{seen:?}");
        g.write(BUF + 12, &f);
        g.desc(TX_QUEUE, 0, BUF, 72, 0, 0);
        g.offer(TX_QUEUE, 0);
        assert_eq!(tx_roundtrip(&mut tap, &g), [f]);
    }

    #[test]
    fn second_front_end_while_one_is_active_is_closed() {
        let (mut tap, g, addr) = ready_tap(ALL);
        let mut other = UnixStream::connect_addr(&addr).unwrap();
        other.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        pump(&mut tap, 200, |ev| !ev.is_empty());
        let mut b = [0u8; 1];
        assert_eq!(io::Read::read(&mut other, &mut b).unwrap(), 0, "closed at once");
        assert!(tap.is_ready());
        let f = frame(64, 3);
        g.write(BUF + 12, &f);
        g.desc(TX_QUEUE, 0, BUF, 76, 0, 0);
        g.offer(TX_QUEUE, 0);
        assert_eq!(tx_roundtrip(&mut tap, &g), [f]);
    }

    #[test]
    fn one_off_disconnect_is_gone() {
        let (l, addr) = listener();
        let mut tap = VhostUserTap::new(l, true).unwrap();
        let (g, _, _) = connect(&mut tap, &addr, ALL);
        drop(g);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "no Gone");
            match tap.event(ID_CTRL, libc::EPOLLIN as u32) {
                Err(TapError::Gone(_)) => break,
                Ok(TapEvent::Nothing) => {}
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn without_protocol_features_rings_start_enabled() {
        let (l, addr) = listener();
        let mut tap = VhostUserTap::new(l, false).unwrap();
        let addr2 = addr.clone();
        let file = memfd(MEM_SIZE);
        let kick = [EventFd::new(libc::EFD_NONBLOCK).unwrap(), EventFd::new(libc::EFD_NONBLOCK).unwrap()];
        let call = [EventFd::new(libc::EFD_NONBLOCK).unwrap(), EventFd::new(libc::EFD_NONBLOCK).unwrap()];
        let h = thread::spawn(move || {
            let mut fe = Frontend::from_stream(UnixStream::connect_addr(&addr2).unwrap(), 2);
            fe.set_owner().unwrap();
            let offered = fe.get_features().unwrap();
            fe.set_features(offered & !VHOST_USER_F_PROTOCOL_FEATURES).unwrap();
            set_mem_and_rings(&mut fe, &file, &kick, &call);
            // No acks without REPLY_ACK: a reply-bearing request syncs.
            let _ = fe.get_features().unwrap();
            (fe, file)
        });
        let seen = pump(&mut tap, 10_000, |ev| h.is_finished() && ev.contains(&TapEvent::Connected));
        let _keep = h.join().unwrap();
        assert!(seen.contains(&TapEvent::Connected), "{seen:?}");
        assert!(tap.is_ready());
    }
}
