//! Types shared between passt's eBPF programs (the `passt-ebpf` binary, built
//! for `bpfel-unknown-none`) and userspace (`passt-user`, which loads them with
//! aya). Everything here is `#[repr(C)]` plain data with the exact layout the
//! programs see in their maps; integers are in host byte order unless a field
//! says otherwise.
//!
//! Map and program names are the ELF symbol names in the object, so userspace
//! finds them with `Ebpf::map_mut(NAME)` / `Ebpf::program_mut(NAME)`.
#![no_std]

pub mod lookup;
pub mod sockmap;
pub mod tc;

/// `unsafe impl aya::Pod` for plain `#[repr(C)]` map types (userspace only).
#[cfg(feature = "user")]
macro_rules! pod {
    ($($t:ty),* $(,)?) => { $(
        // SAFETY: #[repr(C)], only integer fields, no padding left implicit.
        unsafe impl aya::Pod for $t {}
    )* };
}
#[cfg(not(feature = "user"))]
macro_rules! pod {
    ($($t:ty),* $(,)?) => {};
}
pub(crate) use pod;
