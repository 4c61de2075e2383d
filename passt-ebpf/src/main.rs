//! passt's eBPF programs. Built only for `bpfel-unknown-none` by
//! `cargo xtask build-ebpf`; userspace embeds the resulting object.
#![no_std]
#![no_main]

mod programs;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier proves programs can't reach this; there is nothing to unwind.
    loop {}
}
