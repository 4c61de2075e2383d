//! # Theory of operation
//!
//! Checksum speed of [`passt::wire::csum::sum`] in bytes per nanosecond,
//! for the frame sizes of the tap path (a 64-byte segment, an MTU 1500
//! frame, a 64 KiB segment), at an aligned and an odd start. Prints one
//! line per case; the result of every pass goes into a running value
//! printed at the end, so the work can't be optimised away. Bounded: a
//! fixed number of bytes per case (7 timed passes of 64 MiB, the fastest
//! reported), whatever the speed.
//!
//! Run: `cargo run --release -p passt-user --example csum_speed`
//! (docs/hotpath.md). A measurement tool, not a test: nothing is asserted.
//!
//! Syscalls: write (stdout), clock_gettime (vDSO).

use std::time::Instant;

use passt::wire::csum;

/// Bytes summed per timed pass; each case is timed [`REPEATS`] times.
const BYTES_PER_PASS: usize = 64 << 20;

/// Timed passes per case: the fastest one is reported (the machine may be
/// shared, and other load only ever slows a pass down).
const REPEATS: usize = 7;

fn main() {
    let buf: Vec<u8> = (0..(64 << 10) + 64)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut keep: u32 = 0;
    println!("{:>8} {:>6} {:>10}", "len", "offset", "bytes/ns");
    for len in [64usize, 1500, 65536] {
        for offset in [0usize, 1] {
            let data = &buf[offset..offset + len];
            let passes = BYTES_PER_PASS / len;
            let mut best_ns = u128::MAX;
            for _ in 0..REPEATS {
                let t0 = Instant::now();
                for _ in 0..passes {
                    keep = keep.wrapping_add(csum::sum(0, std::hint::black_box(data)));
                }
                best_ns = best_ns.min(t0.elapsed().as_nanos().max(1));
            }
            println!(
                "{len:>8} {offset:>6} {:>10.2}",
                (passes * len) as f64 / best_ns as f64
            );
        }
    }
    println!("(sum of all results: {keep:#x})");
}
