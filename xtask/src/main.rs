//! # Theory of operation
//!
//! `cargo xtask <command>` (alias in `.cargo/config.toml`): developer and CI
//! entry points that need more than cargo alone. Each command is a plain
//! sequence of child processes; the first failure stops it with a non-zero exit.
//!
//! - `test [--no-install] [--no-fuzz] [--fuzz-secs N]`: install the Debian
//!   packages the integration lab needs (only those missing, checked with
//!   `dpkg -s`; `apt-get update` only if something is missing), build
//!   `pasta`/`passt` in release mode, run `cargo test --workspace --release`
//!   (unit tests and the netns integration cases in `tests/`), then, if
//!   `passt-user/fuzz` exists, every fuzz target for N seconds ([`run_fuzz`]).
//! - `run [--lab] [-- PASTA_ARGS...]`: build release and run
//!   `pasta --config-net PASTA_ARGS...`; with `--lab` inside the same private
//!   namespaces as the integration tests (`tests/lab`), so nothing reaches a
//!   real network. Without `--lab` it runs on this machine's real network.
//!   `PASTA_BIN` overrides the binary (e.g. to compare with Debian's pasta).
//! - `bench [--rounds N] [--secs S] [--quick] [--tools LIST] [--guest-tools LIST] [--only PART,...] [--ebpf] [--no-install]`:
//!   iperf3 TCP through the tap of pasta-rs, Debian's pasta and slirp4netns
//!   beside the lab veth (one flow, and `-P 4` with pasta-rs also at
//!   `--threads 2`), TCP round trips, connections/s and UDP through the tap,
//!   the splice path (throughput, round trips, connections per second)
//!   beside Debian's pasta, slirp4netns and plain loopback, in a private
//!   lab, with CPU s/GB and peak RSS, a summary over every path and a PNG
//!   plot; on request the eBPF
//!   section (pasta-rs without and with `--ebpf` beside plain loopback, a
//!   stalled reader, fds held for `-t all -u all`; `--ebpf` runs only it),
//!   and iperf3 from a QEMU guest through passt (stream, Debian's passt,
//!   vhost-user); tables with ratios and CPU s/GB ([`bench`]).
//! - `build-ebpf`: install the eBPF toolchain if missing (nightly rust-src,
//!   bpf-linker against nightly's LLVM) and build `passt-ebpf` into
//!   `target/ebpf-obj/passt-ebpf.o`, which the userspace build embeds ([`ebpf`]).
//!   `test` does this first unless `--no-ebpf`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

mod bench;
mod ebpf;

/// Debian packages the integration lab and the guest/bench tooling use.
const HOST_PACKAGES: &[&str] = &[
    "busybox",
    "curl",
    "isc-dhcp-client",
    "dnsmasq-base",
    "socat",
    "iputils-ping",
    "dnsutils",
    "tcpdump",
    "iproute2",
    "python3",
    "passt",
    "iperf3",
    "util-linux",
    // ethtool -k in the namespace (36-offload)
    "ethtool",
    // capsh, for the eBPF fallback case (29-ebpf-fallback)
    "libcap2-bin",
    // the real-guest runs (../shared/guest/guestlab.sh)
    "qemu-system-x86",
    "cpio",
    "procps",
];

/// passt back-ends the real-guest step boots a guest through
/// (`guestlab.sh run --mode M`).
const GUEST_MODES: &[&str] = &["stream", "vhost-user"];
/// Checks a guestlab run makes; each must pass.
const GUEST_CHECKS: u32 = 26;

/// Default run time of each fuzz target in seconds (`--fuzz-secs`): nine
/// targets at 25 s plus one build of them all stay under ~8 minutes.
const FUZZ_SECS_DEFAULT: u64 = 25;

const USAGE: &str = "\
usage: cargo xtask <command>

  test [--no-install] [--no-fuzz] [--fuzz-secs N] [--no-guest] [--no-ebpf]
        install missing host packages, build-ebpf (unless --no-ebpf), build release, cargo test --workspace
        --release (unit + netns integration tests, needs root), boot a real
        QEMU guest through passt in each back-end mode with
        ../shared/guest/guestlab.sh (every check must pass), then fuzz each
        target N seconds (default 25) if passt-user/fuzz exists
  run [--lab] [-- PASTA_ARGS...]
        build release and run pasta --config-net PASTA_ARGS...; --lab: inside
        the private test lab (nothing reaches a real network); PASTA_BIN=path
        runs another pasta instead
  build-ebpf
        install what the eBPF build needs when missing (rust-src for nightly,
        bpf-linker against nightly's LLVM 22), build passt-ebpf into
        target/ebpf-obj/passt-ebpf.o; later builds of passt/pasta embed it
  bench [--rounds N] [--secs S] [--quick] [--tools LIST] [--guest-tools LIST]
        [--only tap,p4,splice,tap-rr,ebpf,guest] [--ebpf] [--no-install]
        iperf3 TCP through the tap (IPv4/IPv6, both directions, MTU 65520 and
        1500) of pasta-rs, Debian's pasta and slirp4netns beside the lab veth
        (p4: iperf3 -P 4, pasta-rs also with --threads 2; tap-rr: TCP round
        trips, connections/s, UDP), the splice path (-t/-T throughput,
        64-byte round trips, connections/s) beside Debian's pasta,
        slirp4netns and plain loopback, in a private lab (needs root), peak
        RSS, a summary over every path with the issue's checks and
        target/bench/bench.png; only on request the eBPF
        section (--ebpf = --only ebpf: the same TCP paths through pasta-rs
        without and with --ebpf beside plain loopback, a stalled reader's
        bytes and kernel memory, fds held for -t all -u all), and iperf3
        from a QEMU guest through passt-rs (stream, vhost-user) and Debian's
        passt (../shared/guest/guestlab.sh); medians of N
        rounds (default 3) x S s (default 5), --quick = 1 x 2 s; tables with
        ratios and CPU s/GB to stdout and target/bench/bench.md, raw numbers
        in target/bench/bench.json
";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[OsString]) -> Result<ExitCode> {
    let Some(cmd) = args.first().and_then(|a| a.to_str()) else {
        eprint!("{USAGE}");
        return Ok(ExitCode::FAILURE);
    };
    let rest = &args[1..];
    match cmd {
        "test" => cmd_test(rest).map(|()| ExitCode::SUCCESS),
        "run" => cmd_run(rest),
        "build-ebpf" => ebpf::cmd_build_ebpf(rest).map(|()| ExitCode::SUCCESS),
        "bench" => bench::cmd_bench(rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => {
            eprint!("xtask: unknown command '{other}'\n{USAGE}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The cargo that started us (`$CARGO`), else `cargo` from `PATH`.
fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

/// Run `cmd`, echoing it first; error if it cannot start or exits non-zero.
fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {}", show(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", show(cmd));
    }
    Ok(())
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

// ---- test -----------------------------------------------------------------

fn cmd_test(args: &[OsString]) -> Result<()> {
    let mut install = true;
    let mut fuzz = true;
    let mut guest = true;
    let mut bpf = true;
    let mut fuzz_secs = FUZZ_SECS_DEFAULT;
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        match a.as_str() {
            "--no-install" => install = false,
            "--no-fuzz" => fuzz = false,
            "--no-guest" => guest = false,
            "--no-ebpf" => bpf = false,
            "--fuzz-secs" => {
                let v = it.next().context("--fuzz-secs needs a number of seconds")?;
                fuzz_secs = v
                    .parse()
                    .with_context(|| format!("--fuzz-secs: '{v}' is not a number"))?;
            }
            other => bail!("test: unknown option '{other}'\n{USAGE}"),
        }
    }
    if install {
        ensure_packages(HOST_PACKAGES)?;
    }
    if bpf {
        ebpf::build()?;
    }
    build_release()?;
    let root = workspace_root();
    let mut t = cargo();
    t.args(["test", "--workspace", "--release"]);
    if std::env::var_os("PASTA_BIN").is_none() {
        t.env("PASTA_BIN", root.join("target/release/pasta"));
    }
    let (mut passed, failed) = run_counting_tests(&mut t)?;
    if guest {
        passed += run_guests(&root)?;
    }
    let fuzz_dir = root.join("passt-user/fuzz");
    if fuzz && fuzz_dir.is_dir() {
        run_fuzz(&fuzz_dir, fuzz_secs)?;
    } else if fuzz {
        eprintln!("xtask: no {} yet: fuzzing skipped", fuzz_dir.display());
    }
    eprintln!("xtask: test: all steps passed");
    // One closing line for the whole run (cargo's last lines are per test
    // binary, often doc-tests with nothing to run).
    println!("tests: {passed} passed, {failed} failed");
    Ok(())
}

/// Boot a real guest through `target/release/passt` once per back-end mode
/// ([`GUEST_MODES`]) with the shared harness `../shared/guest/guestlab.sh`
/// (QEMU, a Debian kernel and busybox userland it downloads and builds on
/// first use, in private namespaces). Every one of its [`GUEST_CHECKS`]
/// checks must pass. Returns the number of runs that passed.
fn run_guests(root: &Path) -> Result<u64> {
    let lab = root.join("../shared/guest/guestlab.sh");
    if !lab.is_file() {
        bail!(
            "{} is missing: the real-guest runs need ../shared beside the checkout (or pass --no-guest)",
            lab.display()
        );
    }
    let mut passed = 0;
    for mode in GUEST_MODES {
        let mut c = Command::new("bash");
        c.arg(&lab)
            .args(["run", "--backend", "target/release/passt", "--mode", mode])
            .current_dir(root);
        eprintln!("xtask: $ {}", show(&c));
        let out = c.output().with_context(|| format!("cannot start {}", show(&c)))?;
        let text = String::from_utf8_lossy(&out.stdout);
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        print!("{text}");
        let summary = text.lines().find(|l| l.starts_with("SUMMARY ")).unwrap_or("");
        let want = format!(" pass={GUEST_CHECKS} fail=0 ");
        if !out.status.success() || !summary.contains(&want) {
            bail!("real guest in {mode} mode: not every check passed ({}): {summary}", out.status);
        }
        println!("test guest::{mode} ... ok");
        passed += 1;
    }
    Ok(passed)
}

/// Run `cmd` (a `cargo test`), passing its output through, and add up the
/// `test result:` lines. Fails like [`run`] when the command fails.
fn run_counting_tests(cmd: &mut Command) -> Result<(u64, u64)> {
    use std::io::{BufRead, BufReader, Write};
    eprintln!("xtask: $ {}", show(cmd));
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    let out = child.stdout.take().context("no stdout pipe")?;
    let (mut passed, mut failed) = (0, 0);
    let stdout = std::io::stdout();
    for line in BufReader::new(out).lines() {
        let line = line.context("reading test output")?;
        let _ = writeln!(stdout.lock(), "{line}");
        if let Some((p, f)) = parse_test_result(&line) {
            passed += p;
            failed += f;
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() {
        println!("tests: {passed} passed, {failed} failed");
        bail!("{} failed ({status})", show(cmd));
    }
    Ok((passed, failed))
}

/// `(passed, failed)` from a libtest line such as
/// `test result: ok. 5 passed; 0 failed; 0 ignored; ...`.
fn parse_test_result(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
    let num = |word: &str| -> Option<u64> {
        rest.split(';').find_map(|part| {
            let part = part.trim().trim_start_matches("ok.").trim_start_matches("FAILED.").trim();
            part.strip_suffix(word).and_then(|n| n.trim().parse().ok())
        })
    };
    Some((num(" passed")?, num(" failed")?))
}

/// True if `dpkg -s PKG` reports "Status: install ok installed".
fn package_installed(pkg: &str) -> Result<bool> {
    let out = Command::new("dpkg")
        .args(["-s", pkg])
        .output()
        .context("cannot run dpkg (is this a Debian system?)")?;
    Ok(out.status.success()
        && String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == "Status: install ok installed"))
}

/// Install the packages `dpkg -s` does not report as installed; runs
/// `apt-get update` first, only when something is missing. Idempotent.
fn ensure_packages(pkgs: &[&str]) -> Result<()> {
    let mut missing = Vec::new();
    for p in pkgs {
        if !package_installed(p)? {
            missing.push(*p);
        }
    }
    if missing.is_empty() {
        eprintln!("xtask: host packages present: {}", pkgs.join(" "));
        return Ok(());
    }
    eprintln!(
        "xtask: installing missing host packages: {}",
        missing.join(" ")
    );
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing))?;
    for p in &missing {
        if !package_installed(p)? {
            bail!("package {p} still not installed after apt-get install");
        }
    }
    Ok(())
}

fn build_release() -> Result<()> {
    run(cargo().args(["build", "--release", "-p", "passt-user"]))?;
    // 30-sandbox makes the debug build's sandboxed daemon call a forbidden
    // syscall (a trigger release builds don't have).
    run(cargo().args(["build", "-p", "passt-user", "--bin", "pasta", "--bin", "passt"]))
}

// ---- fuzz -------------------------------------------------------------------

/// FUZZ STEP: build every cargo-fuzz target of `fuzz_dir` (passt-user/fuzz)
/// once (`cargo +nightly fuzz build`), then run each for `secs` seconds
/// (`cargo +nightly fuzz run <target> corpus/<target> seeds/<target> --
/// -max_total_time=<secs>`), targets from `cargo fuzz list`, each in a
/// network namespace of its own. Prints one summary line per target (runs,
/// executions per second, time, corpus); libFuzzer's own output goes to
/// `fuzz/artifacts/<target>.log`. Installs cargo-fuzz
/// (`cargo install cargo-fuzz --locked`) and the nightly toolchain (rustup)
/// if missing. Every target runs; then the step fails if any crashed,
/// naming the target and the crashing input (`fuzz/artifacts/<target>/…`,
/// replay with `cargo +nightly fuzz run <target> <input>`).
fn run_fuzz(fuzz_dir: &Path, secs: u64) -> Result<()> {
    let crate_dir = fuzz_dir.parent().context("fuzz directory has no parent")?;
    let has_fuzz = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_fuzz {
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !nightly {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let out = Command::new("cargo")
        .args(["+nightly", "fuzz", "list"])
        .current_dir(crate_dir)
        .output()
        .context("cannot run cargo fuzz list")?;
    if !out.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let targets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if targets.is_empty() {
        bail!("cargo fuzz list found no targets in {}", fuzz_dir.display());
    }
    // One build for all targets, with the network: the fuzz crate has a
    // lockfile of its own, and its runs below have no network to fetch
    // anything (`cargo fuzz run` then finds everything up to date).
    let t0 = std::time::Instant::now();
    run(Command::new("cargo").args(["+nightly", "fuzz", "build"]).current_dir(crate_dir))?;
    eprintln!("xtask: fuzz build of {} targets took {} s", targets.len(), t0.elapsed().as_secs());
    let logs = fuzz_dir.join("artifacts");
    std::fs::create_dir_all(&logs).with_context(|| format!("mkdir {}", logs.display()))?;
    let mut crashed = Vec::new();
    for t in &targets {
        // In a network namespace of its own with only a (down) loopback:
        // flows the fuzzer opens from random frames can reach nothing.
        // New inputs go to the (ignored) corpus.
        let corpus = fuzz_dir.join("corpus").join(t);
        std::fs::create_dir_all(&corpus).with_context(|| format!("mkdir {}", corpus.display()))?;
        let log_path = logs.join(format!("{t}.log"));
        let log = std::fs::File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        let mut cmd = Command::new("unshare");
        cmd.args(["--net", "--", "cargo", "+nightly", "fuzz", "run", t]).arg(&corpus);
        // Committed seeds and regression inputs are read too.
        for dir in ["seeds", "regressions"] {
            let d = fuzz_dir.join(dir).join(t);
            if d.is_dir() {
                cmd.arg(d);
            }
        }
        cmd.arg("--")
            .arg(format!("-max_total_time={secs}"))
            .arg("-print_final_stats=1")
            .current_dir(crate_dir)
            .stdout(log.try_clone()?)
            .stderr(log);
        let start = std::time::Instant::now();
        let status = cmd.status().context("cannot run cargo fuzz run")?;
        let took = start.elapsed().as_secs_f64();
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let stat = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| "?".into())
        };
        let runs = stat("stat::number_of_executed_units:");
        let speed = stat("stat::average_exec_per_sec:");
        let corpus_n = std::fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0);
        if status.success() {
            eprintln!("xtask: fuzz {t}: ok, {runs} runs, {speed} execs/s, {took:.0} s, corpus {corpus_n}");
            continue;
        }
        let input = text
            .lines()
            .find_map(|l| l.split("Test unit written to ").nth(1))
            .map_or_else(|| format!("(none written; see {})", log_path.display()), |p| p.trim().to_string());
        eprintln!("xtask: fuzz {t}: FAILED ({status}) after {runs} runs, {took:.0} s; input {input}");
        // The panic and its message (the line after), libFuzzer's verdict.
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.contains("panicked at") {
                eprintln!("xtask:   {l} {}", lines.get(i + 1).unwrap_or(&""));
            } else if l.contains("ERROR: libFuzzer") {
                eprintln!("xtask:   {l}");
            }
        }
        crashed.push(format!("{t}: {input}"));
    }
    if !crashed.is_empty() {
        bail!(
            "fuzzing found {} crash(es); replay with `cargo +nightly fuzz run TARGET INPUT` in {}:\n  {}",
            crashed.len(),
            crate_dir.display(),
            crashed.join("\n  ")
        );
    }
    eprintln!("xtask: fuzzed {} targets for {secs} s each", targets.len());
    Ok(())
}

// ---- run --------------------------------------------------------------------

fn cmd_run(args: &[OsString]) -> Result<ExitCode> {
    let mut lab = false;
    let mut pasta_args: Vec<OsString> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--lab") => lab = true,
            Some("--") => {
                pasta_args.extend(it.by_ref().cloned());
                break;
            }
            _ => bail!(
                "run: unknown option '{}' (pasta options go after --)\n{USAGE}",
                a.to_string_lossy()
            ),
        }
    }
    build_release()?;
    let root = workspace_root();
    let pasta = std::env::var_os("PASTA_BIN")
        .filter(|p| !p.is_empty())
        .map_or_else(|| root.join("target/release/pasta"), PathBuf::from);
    let status = if lab {
        // tests/lab/run.sh with the pasta-shell "case": private namespaces, a
        // private upstream, an interactive terminal (timeout --foreground)
        let args_file =
            std::env::temp_dir().join(format!("xtask-pasta-args.{}", std::process::id()));
        let mut buf = Vec::new();
        for a in &pasta_args {
            buf.extend_from_slice(a.as_encoded_bytes());
            buf.push(0);
        }
        std::fs::write(&args_file, &buf)
            .with_context(|| format!("cannot write {}", args_file.display()))?;
        let mut c = Command::new("bash");
        c.arg(root.join("tests/lab/run.sh"))
            .arg(root.join("tests/lab/pasta-shell.sh"))
            .env("PASTA_BIN", &pasta)
            .env("LAB_ARGS_FILE", &args_file)
            .env("LAB_INTERACTIVE", "1")
            .env(
                "LAB_TIMEOUT",
                std::env::var("LAB_TIMEOUT").unwrap_or_else(|_| "3600".into()),
            );
        eprintln!("xtask: $ {}", show(&c));
        let st = c.status().context("cannot start tests/lab/run.sh");
        let _ = std::fs::remove_file(&args_file);
        st?
    } else {
        let mut c = Command::new(&pasta);
        c.arg("--config-net").args(&pasta_args);
        eprintln!("xtask: $ {}", show(&c));
        c.status()
            .with_context(|| format!("cannot start {}", pasta.display()))?
    };
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_result_lines_are_summed_and_others_ignored() {
        assert_eq!(
            parse_test_result("test result: ok. 244 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.14s"),
            Some((244, 0))
        );
        assert_eq!(
            parse_test_result("test result: FAILED. 9 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out"),
            Some((9, 1))
        );
        assert_eq!(parse_test_result("running 10 tests"), None);
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn unknown_command_fails() {
        assert_eq!(dispatch(&os(&["frobnicate"])).unwrap(), ExitCode::FAILURE);
    }

    #[test]
    fn build_ebpf_rejects_options_before_doing_anything() {
        let e = ebpf::cmd_build_ebpf(&os(&["--bogus"])).unwrap_err();
        assert!(e.to_string().contains("unknown option '--bogus'"), "{e}");
    }

    #[test]
    fn test_rejects_unknown_option_before_doing_anything() {
        let e = cmd_test(&os(&["--bogus"])).unwrap_err();
        assert!(e.to_string().contains("unknown option '--bogus'"), "{e}");
    }

    #[test]
    fn fuzz_secs_must_be_a_number() {
        let e = cmd_test(&os(&["--fuzz-secs", "soon"])).unwrap_err();
        assert!(e.to_string().contains("'soon' is not a number"), "{e}");
    }

    #[test]
    fn run_rejects_options_before_double_dash() {
        let e = cmd_run(&os(&["--config-net"])).unwrap_err();
        assert!(e.to_string().contains("pasta options go after --"), "{e}");
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let m = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(m.contains("[workspace]"));
    }
}
