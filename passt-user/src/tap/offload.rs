//! # Theory of operation
//!
//! Per-frame offload metadata, and the virtio-net header that carries it
//! on the tap (IFF_VNET_HDR) and on vhost-user queues.
//!
//! A frame moved between the protocol code and a back-end may be a
//! *super-frame* (one TCP or UDP header, a payload of many segments, split
//! by whoever receives it: generic segmentation offload) and may carry a
//! *partial checksum* (the L4 checksum field holds only the pseudo-header
//! sum; the receiver completes it or trusts the data). [`Offload`] says
//! which, per frame. Back-ends that cannot express either (passt's stream
//! socket) report an empty [`OffloadCaps`]: frame builders then produce
//! MSS-sized frames with full checksums, exactly as without offloads.
//!
//! Header layout (Linux include/uapi/linux/virtio_net.h, struct
//! virtio_net_hdr_mrg_rxbuf, the 12-byte header of virtio 1.x, §5.1.6),
//! every field little-endian:
//!
//! | bytes | field       | meaning                                        |
//! |-------|-------------|------------------------------------------------|
//! | 0     | flags       | 1: NEEDS_CSUM, 2: DATA_VALID                   |
//! | 1     | gso_type    | 0 none, 1 TCPv4, 3 UDP (UFO), 4 TCPv6, 5 UDP_L4; 0x80 ECN |
//! | 2..4  | hdr_len     | bytes of headers (Ethernet to end of L4 header) |
//! | 4..6  | gso_size    | payload bytes per segment                      |
//! | 6..8  | csum_start  | offset of the L4 header from the frame start   |
//! | 8..10 | csum_offset | offset of the checksum field from csum_start   |
//! | 10..12| num_buffers | descriptors a received frame spans (mrg_rxbuf)  |
//!
//! Decoding never fails: unknown GSO types are kept as
//! [`GsoType::Unknown`] and [`Offload::check`] turns anything inconsistent
//! with the frame into an error the caller counts as a drop.

use crate::wire;

/// Length of the virtio-net header with `num_buffers` (bytes): the layout
/// used on pasta's tap (TUNSETVNETHDRSZ) and on vhost-user queues.
pub const VNET_HDR_LEN: usize = 12;

/// virtio_net_hdr flag: the checksum at `csum_start + csum_offset` holds
/// only the pseudo-header sum (VIRTIO_NET_HDR_F_NEEDS_CSUM).
pub const F_NEEDS_CSUM: u8 = 1;
/// virtio_net_hdr flag: the checksum was verified (VIRTIO_NET_HDR_F_DATA_VALID).
pub const F_DATA_VALID: u8 = 2;
/// gso_type bit: the TCP super-frame carries ECN CWR (VIRTIO_NET_HDR_GSO_ECN).
pub const GSO_ECN: u8 = 0x80;

/// Most datagrams a UDP super-frame may carry (Linux UDP_MAX_SEGMENTS).
pub const UDP_GSO_MAX_SEGS: usize = 128;

/// Offset of the checksum field in a TCP header (RFC 9293 §3.1).
pub const TCP_CSUM_OFF: u16 = 16;
/// Offset of the checksum field in a UDP header (RFC 768).
pub const UDP_CSUM_OFF: u16 = 6;

/// Segmentation of a super-frame (virtio_net_hdr.gso_type, without the ECN bit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GsoType {
    /// A plain frame.
    #[default]
    None,
    /// TCP over IPv4, split at `gso_size` payload bytes (VIRTIO_NET_HDR_GSO_TCPV4).
    TcpV4,
    /// TCP over IPv6 (VIRTIO_NET_HDR_GSO_TCPV6).
    TcpV6,
    /// UDP, one datagram per `gso_size` payload bytes (VIRTIO_NET_HDR_GSO_UDP_L4).
    UdpL4,
    /// Any other value (UFO, 3, included): never accepted.
    Unknown(u8),
}

impl GsoType {
    fn from_wire(v: u8) -> Self {
        match v & !GSO_ECN {
            0 => GsoType::None,
            1 => GsoType::TcpV4,
            4 => GsoType::TcpV6,
            5 => GsoType::UdpL4,
            x => GsoType::Unknown(x),
        }
    }

    fn to_wire(self) -> u8 {
        match self {
            GsoType::None => 0,
            GsoType::TcpV4 => 1,
            GsoType::TcpV6 => 4,
            GsoType::UdpL4 => 5,
            GsoType::Unknown(x) => x,
        }
    }
}

/// Offload metadata of one frame. `Default` is a plain frame with a full
/// checksum (what every back-end without offloads sees).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offload {
    /// Segmentation of a super-frame.
    pub gso: GsoType,
    /// Payload bytes per segment (the MSS for TCP); 0 without GSO.
    pub gso_size: u16,
    /// Bytes of headers, from the Ethernet header to the end of the L4
    /// header; a hint (0: unknown).
    pub hdr_len: u16,
    /// Partial checksum: (`csum_start`, `csum_offset`) in bytes, the L4
    /// header's offset from the start of the frame and the checksum
    /// field's offset from there. The field holds the folded pseudo-header
    /// sum (not complemented).
    pub csum: Option<(u16, u16)>,
    /// The sender verified the checksum (or generated the data).
    pub data_valid: bool,
}

/// Which L4 protocol and IP family a frame carries, for [`Offload::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Kind {
    /// TCP; `true` for IPv6.
    Tcp(bool),
    /// UDP; `true` for IPv6.
    Udp(bool),
    /// Anything else (ICMP, ARP, ...).
    Other,
}

impl Offload {
    /// Decode a virtio-net header (`h`: at least 10 bytes, little-endian).
    ///
    /// # Errors
    /// [`wire::Error`] when `h` is shorter than 10 bytes.
    pub fn decode(h: &[u8]) -> Result<Self, wire::Error> {
        let h = h.get(..10).ok_or(wire::Error)?;
        let le = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
        let flags = h[0];
        Ok(Offload {
            gso: GsoType::from_wire(h[1]),
            gso_size: le(4),
            hdr_len: le(2),
            csum: (flags & F_NEEDS_CSUM != 0).then(|| (le(6), le(8))),
            data_valid: flags & F_DATA_VALID != 0,
        })
    }

    /// Encode as a virtio-net header into `h` (at least 10 bytes; bytes
    /// from 10 on, `num_buffers`, are left alone).
    ///
    /// # Panics
    /// If `h` is shorter than 10 bytes (callers pass fixed-size headers).
    pub fn encode(&self, h: &mut [u8]) {
        let mut flags = 0;
        if self.csum.is_some() {
            flags |= F_NEEDS_CSUM;
        }
        if self.data_valid {
            flags |= F_DATA_VALID;
        }
        let (start, off) = self.csum.unwrap_or((0, 0));
        h[0] = flags;
        h[1] = self.gso.to_wire();
        h[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        h[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        h[6..8].copy_from_slice(&start.to_le_bytes());
        h[8..10].copy_from_slice(&off.to_le_bytes());
    }

    /// True for a super-frame.
    pub fn is_gso(&self) -> bool {
        self.gso != GsoType::None
    }

    /// Check metadata read from a back-end against its frame of `len`
    /// bytes carrying `l4` (L4 header at byte `l4_off` of the frame):
    /// the GSO type must match the protocol and family, `gso_size` must
    /// not be 0, the partial checksum field must lie within the L4 part,
    /// `hdr_len` within the frame, a UDP super-frame at most
    /// [`UDP_GSO_MAX_SEGS`] datagrams. Legacy UFO and unknown types are
    /// refused.
    ///
    /// # Errors
    /// [`wire::Error`] for any inconsistency: the caller drops the frame
    /// and counts it.
    pub fn check(&self, len: usize, l4_off: usize, l4: L4Kind) -> Result<(), wire::Error> {
        if usize::from(self.hdr_len) > len {
            return Err(wire::Error);
        }
        if let Some((start, off)) = self.csum {
            let (start, off) = (usize::from(start), usize::from(off));
            if start < l4_off || start + off + 2 > len {
                return Err(wire::Error);
            }
        }
        let ok = match self.gso {
            GsoType::None => true,
            GsoType::TcpV4 => l4 == L4Kind::Tcp(false),
            GsoType::TcpV6 => l4 == L4Kind::Tcp(true),
            GsoType::UdpL4 => matches!(l4, L4Kind::Udp(_)),
            GsoType::Unknown(_) => false,
        };
        if !ok || (self.is_gso() && self.gso_size == 0) {
            return Err(wire::Error);
        }
        let udp_payload = len.saturating_sub(l4_off + 8);
        if self.gso == GsoType::UdpL4 && udp_payload > usize::from(self.gso_size) * UDP_GSO_MAX_SEGS {
            return Err(wire::Error);
        }
        Ok(())
    }
}

/// What a back-end accepts in frames written to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OffloadCaps {
    /// Partial checksums ([`Offload::csum`]) are completed or trusted by
    /// the receiver.
    pub csum: bool,
    /// TCP super-frames ([`GsoType::TcpV4`], [`GsoType::TcpV6`]) are split
    /// or taken whole by the receiver.
    pub tso: bool,
    /// UDP super-frames ([`GsoType::UdpL4`]: one UDP header, `gso_size`
    /// bytes of payload per datagram, the last one possibly shorter) are
    /// split or taken whole by the receiver (USO, Linux 6.2).
    pub uso: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_is_little_endian() {
        let o = Offload {
            gso: GsoType::TcpV6,
            gso_size: 1440,
            hdr_len: 74,
            csum: Some((54, 16)),
            data_valid: false,
        };
        let mut h = [0xaa; VNET_HDR_LEN];
        o.encode(&mut h);
        assert_eq!(h, [1, 4, 74, 0, 0xa0, 0x05, 54, 0, 16, 0, 0xaa, 0xaa]);
        assert_eq!(Offload::decode(&h), Ok(o));
        let v = Offload {
            data_valid: true,
            ..Offload::default()
        };
        v.encode(&mut h);
        assert_eq!(&h[..10], &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Offload::decode(&h), Ok(v));
        assert_eq!(Offload::decode(&h[..9]), Err(wire::Error));
    }

    #[test]
    fn ecn_bit_is_ignored_and_ufo_is_unknown() {
        let h = [1, 0x81, 0, 0, 100, 0, 34, 0, 16, 0];
        assert_eq!(Offload::decode(&h).map(|o| o.gso), Ok(GsoType::TcpV4));
        let h = [0, 3, 0, 0, 100, 0, 0, 0, 0, 0];
        let o = Offload::decode(&h).unwrap();
        assert_eq!(o.gso, GsoType::Unknown(3));
        assert_eq!(o.check(1000, 34, L4Kind::Udp(false)), Err(wire::Error));
    }

    #[test]
    fn malformed_metadata_is_refused() {
        let tcp4 = Offload {
            gso: GsoType::TcpV4,
            gso_size: 1460,
            hdr_len: 54,
            csum: Some((34, 16)),
            data_valid: false,
        };
        assert_eq!(tcp4.check(3000, 34, L4Kind::Tcp(false)), Ok(()));
        // Wrong family, wrong protocol.
        assert_eq!(tcp4.check(3000, 34, L4Kind::Tcp(true)), Err(wire::Error));
        assert_eq!(tcp4.check(3000, 34, L4Kind::Udp(false)), Err(wire::Error));
        assert_eq!(tcp4.check(3000, 34, L4Kind::Other), Err(wire::Error));
        // gso_size 0.
        assert_eq!(
            Offload {
                gso_size: 0,
                ..tcp4
            }
            .check(3000, 34, L4Kind::Tcp(false)),
            Err(wire::Error)
        );
        // hdr_len, csum beyond the frame; csum before the L4 header.
        assert_eq!(
            Offload {
                hdr_len: 3001,
                ..tcp4
            }
            .check(3000, 34, L4Kind::Tcp(false)),
            Err(wire::Error)
        );
        assert_eq!(
            Offload {
                csum: Some((2990, 16)),
                ..tcp4
            }
            .check(3000, 34, L4Kind::Tcp(false)),
            Err(wire::Error)
        );
        assert_eq!(
            Offload {
                csum: Some((u16::MAX, u16::MAX)),
                ..tcp4
            }
            .check(3000, 34, L4Kind::Tcp(false)),
            Err(wire::Error)
        );
        assert_eq!(
            Offload {
                csum: Some((14, 16)),
                ..tcp4
            }
            .check(3000, 34, L4Kind::Tcp(false)),
            Err(wire::Error)
        );
        let uso = Offload {
            gso: GsoType::UdpL4,
            gso_size: 1000,
            hdr_len: 62,
            csum: Some((54, 6)),
            data_valid: false,
        };
        assert_eq!(uso.check(5062, 54, L4Kind::Udp(true)), Ok(()));
        assert_eq!(uso.check(5062, 54, L4Kind::Tcp(true)), Err(wire::Error));
        // 128 datagrams at most.
        let uso1 = Offload { gso_size: 1, hdr_len: 0, csum: None, ..uso };
        assert_eq!(uso1.check(54 + 8 + 128, 54, L4Kind::Udp(true)), Ok(()));
        assert_eq!(uso1.check(54 + 8 + 129, 54, L4Kind::Udp(true)), Err(wire::Error));
        // A plain frame with a partial checksum is fine for any protocol.
        let plain = Offload {
            csum: Some((34, 2)),
            ..Offload::default()
        };
        assert_eq!(plain.check(98, 34, L4Kind::Other), Ok(()));
    }
}
