//! `cargo xtask build-ebpf`: install the eBPF toolchain when it is missing
//! and build `passt-ebpf` into `target/ebpf-obj/passt-ebpf.o`, which `passt-user`'s
//! build script embeds.
//!
//! The toolchain (as DEVELOPERS.md / the project brief give it): nightly's
//! `rust-src` (for `-Z build-std=core`), and `bpf-linker` built against the
//! nightly rustc's own libLLVM (22), found through `LLVM_PREFIX` pointing at
//! symlinks in `~/.local/rust-llvm/lib`. Each step is skipped when already
//! done, so the command is idempotent. The nightly toolchain itself is
//! expected to be installed (it is never updated from here).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{run, workspace_root};

/// The nightly toolchain the programs are built with (must ship LLVM 22).
const NIGHTLY: &str = "nightly";
/// bpf-linker release known to work with aya 0.14 and LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Where the object is copied for `passt-user/build.rs`.
pub const OBJECT: &str = "target/ebpf-obj/passt-ebpf.o";

/// `rustup run nightly <tool>`, with the variables the outer (stable) cargo
/// set for us removed so they don't leak into the nightly build.
fn nightly(tool: &str) -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", NIGHTLY, tool]);
    for v in ["RUSTC", "RUSTDOC", "RUSTC_WRAPPER", "RUSTUP_TOOLCHAIN", "CARGO", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET"] {
        c.env_remove(v);
    }
    c
}

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from).context("HOME is not set")
}

/// `bpf-linker` on PATH or in `~/.cargo/bin`, if it runs.
fn bpf_linker() -> Option<PathBuf> {
    let mut cands = vec![PathBuf::from("bpf-linker")];
    if let Ok(h) = home() {
        cands.push(h.join(".cargo/bin/bpf-linker"));
    }
    cands.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

/// Install rust-src for nightly and bpf-linker, each only if missing.
pub fn ensure_toolchain() -> Result<()> {
    let out = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", NIGHTLY])
        .output()
        .context("cannot run rustup (the eBPF build needs rustup with a nightly toolchain)")?;
    if !out.status.success() {
        bail!("rustup has no '{NIGHTLY}' toolchain: the eBPF programs need it (rustup toolchain install nightly)");
    }
    if !String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with("rust-src")) {
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))?;
    } else {
        eprintln!("xtask: rust-src for {NIGHTLY}: present");
    }
    if let Some(l) = bpf_linker() {
        eprintln!("xtask: bpf-linker: present ({})", l.display());
        return Ok(());
    }
    // bpf-linker links against LLVM; use the nightly rustc's own libLLVM so
    // the bitcode versions match.
    let out = nightly("rustc").args(["--print", "sysroot"]).output().context("rustc +nightly --print sysroot")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let prefix = home()?.join(".local/rust-llvm");
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("mkdir {}", lib.display()))?;
    let mut found = false;
    for e in std::fs::read_dir(sysroot.join("lib")).with_context(|| format!("reading {}/lib", sysroot.display()))? {
        let p = e?.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else { continue };
        if !name.starts_with("libLLVM.so.") {
            continue;
        }
        for link in [lib.join(name), lib.join("libLLVM.so")] {
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&p, &link).with_context(|| format!("symlink {}", link.display()))?;
        }
        found = true;
    }
    if !found {
        bail!("no libLLVM.so.* in {}/lib: can't build bpf-linker against nightly's LLVM", sysroot.display());
    }
    run(Command::new("cargo")
        .env("LLVM_PREFIX", &prefix)
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION, "--no-default-features", "--features", "llvm-22"]))?;
    if bpf_linker().is_none() {
        bail!("bpf-linker still not runnable after cargo install");
    }
    Ok(())
}

/// Build the programs and copy the object to [`OBJECT`]. Returns its path.
pub fn build() -> Result<PathBuf> {
    ensure_toolchain()?;
    let root = workspace_root();
    let target_dir = root.join("target/ebpf");
    let mut c = nightly("cargo");
    c.current_dir(root.join("passt-ebpf"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .args(["build", "--locked", "--release", "--target", "bpfel-unknown-none", "-Z", "build-std=core", "--bin", "passt-ebpf"]);
    // bpf-linker from ~/.cargo/bin even when that isn't on PATH.
    if let (Ok(h), Some(path)) = (home(), std::env::var_os("PATH")) {
        let mut paths: Vec<PathBuf> = std::env::split_paths(&path).collect();
        paths.push(h.join(".cargo/bin"));
        c.env("PATH", std::env::join_paths(paths).context("PATH")?);
    }
    run(&mut c)?;
    let built = target_dir.join("bpfel-unknown-none/release/passt-ebpf");
    let dest = root.join(OBJECT);
    if let Some(d) = dest.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("mkdir {}", d.display()))?;
    }
    copy_if_changed(&built, &dest)?;
    eprintln!("xtask: eBPF object: {} ({} bytes)", dest.display(), std::fs::metadata(&dest)?.len());
    Ok(dest)
}

/// Copy `from` to `to` unless `to` already has the same bytes (so cargo does
/// not rebuild passt-user for nothing).
fn copy_if_changed(from: &Path, to: &Path) -> Result<()> {
    let new = std::fs::read(from).with_context(|| format!("{} (build output)", from.display()))?;
    if std::fs::read(to).ok().as_deref() == Some(&new[..]) {
        return Ok(());
    }
    std::fs::write(to, &new).with_context(|| format!("writing {}", to.display()))
}

/// `build-ebpf` command line: no options.
pub fn cmd_build_ebpf(args: &[std::ffi::OsString]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("build-ebpf: unknown option '{}'", a.to_string_lossy());
    }
    build().map(|_| ())
}
