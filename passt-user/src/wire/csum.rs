//! # Theory of operation
//!
//! Internet checksum (RFC 1071), with IPv4/IPv6 pseudo-headers (RFC 768,
//! RFC 8200 §8.1). A running sum is a `u32` that callers chain through
//! [`sum`], [`pseudo4`] and [`pseudo6`], and [`fold`] turns it into the
//! 16-bit checksum. Pure computation: no syscalls.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Add `data` to a running 32-bit one's-complement sum; bytes are taken as
/// big-endian 16-bit words, an odd trailing byte padded with zero.
///
/// The one's-complement sum does not depend on byte order (RFC 1071 §2(B)),
/// so the bulk is summed as native 32-bit words into eight 64-bit
/// accumulators (carries pile up in their upper halves, none is lost),
/// folded, and swapped to network order once at the end. Speed
/// (docs/hotpath.md, `cargo run --release -p passt-user --example
/// csum_speed`): about 59 bytes/ns for 1500 and 65536 bytes, 30 for 64.
#[inline]
pub fn sum(acc: u32, data: &[u8]) -> u32 {
    // Eight independent accumulators of 32-bit words, 64 bytes a round:
    // no carry chain between them, so the compiler keeps them in vector
    // registers (SSE2 on baseline x86-64). The words of a slice of L bytes
    // add up to less than L * 2^30: no overflow below 16 GiB (frames and
    // segments here are at most 64 KiB).
    let mut a = [0u64; 8];
    let mut blocks = data.chunks_exact(64);
    for b in &mut blocks {
        for (i, w) in b.chunks_exact(4).enumerate() {
            a[i & 7] += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
        }
    }
    let mut s: u64 = a.iter().sum();
    let mut words = blocks.remainder().chunks_exact(4);
    for w in &mut words {
        s += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut rest = words.remainder().chunks_exact(2);
    for c in &mut rest {
        s += u64::from(u16::from_ne_bytes([c[0], c[1]]));
    }
    if let [last] = rest.remainder() {
        // The pad byte follows: in native order the pair is [last, 0].
        s += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    // Fold to 16 bits in native order, then to network order.
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    let folded = u16::from_be_bytes((s as u16).to_ne_bytes());
    let r = u64::from(acc) + u64::from(folded);
    ((r & 0xffff_ffff) + (r >> 32)) as u32
}

/// The straightforward RFC 1071 loop, one 16-bit word at a time: the
/// reference [`sum`] is checked against.
#[cfg(test)]
fn sum_reference(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
        if acc >= 0xffff_0000 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// Fold a running sum into the final 16-bit checksum (one's complement).
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Running sum of the IPv4 pseudo-header for an L4 payload of `l4len` bytes.
pub fn pseudo4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4len: u16) -> u32 {
    let acc = sum(0, &src.octets());
    let acc = sum(acc, &dst.octets());
    acc + u32::from(proto) + u32::from(l4len)
}

/// Running sum of the IPv6 pseudo-header for an L4 payload of `l4len` bytes.
pub fn pseudo6(src: &Ipv6Addr, dst: &Ipv6Addr, proto: u8, l4len: u32) -> u32 {
    let acc = sum(0, &src.octets());
    let acc = sum(acc, &dst.octets());
    acc + u32::from(proto) + (l4len >> 16) + (l4len & 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to ddf2, checksum 220d.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &d)), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(0, &[0x12, 0x34, 0x56])), fold(sum(0, &[0x12, 0x34, 0x56, 0x00])));
    }

    #[test]
    fn fast_sum_matches_the_reference_on_every_length_and_offset() {
        let mut x: u32 = 0x1234_5678;
        let data: Vec<u8> = (0..4099)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for start in 0..9 {
            for len in (0..300).chain([1499, 1500, 4000]) {
                let d = &data[start..(start + len).min(data.len())];
                for acc in [0, 0xffff, 0x1_2345, 0xfffe_0001] {
                    assert_eq!(fold(sum(acc, d)), fold(sum_reference(acc, d)), "start {start} len {len} acc {acc:#x}");
                }
            }
        }
        // All ones: the largest sums, carries everywhere, at every length
        // around the 64-byte rounds and at odd starts.
        let ones = vec![0xffu8; 65536];
        for start in [0, 1, 3] {
            for len in (0..200).chain([1500, 65535 - start]) {
                let d = &ones[start..start + len];
                assert_eq!(fold(sum(0, d)), fold(sum_reference(0, d)), "ones: start {start} len {len}");
            }
        }
    }

    #[test]
    fn ipv4_header_checksum_verifies_to_zero() {
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(fold(sum(0, &hdr)), 0);
    }
}
