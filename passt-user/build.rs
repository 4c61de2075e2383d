//! Embeds the eBPF object when `cargo xtask build-ebpf` has built it.
//!
//! The object is looked for at `$PASST_EBPF_OBJ`, else at
//! `<workspace>/target/ebpf-obj/passt-ebpf.o`. When present it is copied into
//! `OUT_DIR` and the `passt_ebpf` cfg is set (`crate::ebpf::OBJECT` is then
//! `Some`); when absent the binaries build without it and `--ebpf` falls back
//! to splice() with a log line saying so.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(passt_ebpf)");
    println!("cargo::rerun-if-env-changed=PASST_EBPF_OBJ");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let obj = std::env::var_os("PASST_EBPF_OBJ")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target/ebpf-obj/passt-ebpf.o"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("passt-ebpf.o");
    if obj.is_file() {
        println!("cargo::rerun-if-changed={}", obj.display());
        std::fs::copy(&obj, &out).unwrap_or_else(|e| panic!("copying {}: {e}", obj.display()));
        println!("cargo::rustc-cfg=passt_ebpf");
    } else {
        // A missing file would rerun this script on every build; the
        // directory's mtime changes when the object appears in it (nothing
        // else is written there).
        match obj.parent() {
            Some(dir) if std::fs::create_dir_all(dir).is_ok() => {
                println!("cargo::rerun-if-changed={}", dir.display())
            }
            _ => println!("cargo::rerun-if-changed=build.rs"),
        }
        let _ = std::fs::remove_file(&out);
    }
}
