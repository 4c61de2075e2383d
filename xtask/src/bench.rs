//! # Theory of operation
//!
//! `cargo xtask bench [--rounds N] [--secs S] [--quick] [--tools LIST]
//! [--guest-tools LIST] [--only PART[,PART...]] [--ebpf] [--no-install]`:
//! six parts, all but ebpf by default (`--ebpf` is `--only ebpf`; `--only`
//! takes a comma-separated list of [`PARTS`]).
//!
//! - tap: iperf3 TCP throughput through the tap of pasta-rs, side by side in
//!   the same run with Debian's pasta (`/usr/bin/pasta`, package `passt`) and
//!   slirp4netns (package `slirp4netns`), plus each forwarder's CPU seconds
//!   per GB, beside the ceiling [`VETH`] (the same client in the lab's
//!   "host" namespace straight over the lab veth, no forwarder);
//! - p4: the same with `iperf3 -P 4` (IPv4, both directions, both MTUs), and
//!   pasta-rs once more with `--threads 2` ([`T2`]; the table's last ratio is
//!   `--threads 2` / `--threads 1`). A pasta-rs without the option fails to
//!   start: its cells say `fail` and the reason is listed, the rest goes on.
//!   Runs come from `target/bench/p4.tsv` (runs.tsv's format);
//! - splice: pasta's loopback relay ("Handling of local traffic in pasta",
//!   passt(1)): iperf3 host -> namespace through `-t` and namespace -> host
//!   through `-T` (IPv4 and IPv6), 64-byte TCP round trips and connections
//!   per second through `-t`, 64-byte UDP round trips through `-u` (the last
//!   three with `tests/bench/rr.py`, IPv4), for pasta-rs, Debian's pasta and
//!   slirp4netns (its API's `add_hostfwd` port forwarding; it has no
//!   namespace -> host forwarding, so that cell says `n/a`,
//!   [`SplicePath::unsupported`]) beside the same clients over plain
//!   loopback (the ceiling), with the ratios pasta-rs / each peer and each
//!   / loopback, and CPU s/GB on the throughput rows. Rows come from
//!   `target/bench/splice.tsv` ([`parse_splice_runs`]); the table follows
//!   the tap table, bench.json holds `splice_runs` and `splice_summary`;
//! - tap-rr: through the tap at MTU 65520 to the upstream server, IPv4:
//!   rr.py TCP round trips and connections per second, and UDP throughput
//!   (`iperf3 -u -b 0 -l 1400`, the receiver's rate, both directions, with
//!   CPU s/GB), every tool beside [`VETH`]; `target/bench/taprr.tsv`
//!   (splice.tsv's format, [`TAPRR_PATHS`]), bench.json `tap_rr_*`;
//! - ebpf (the eBPF section): pasta-rs's spliced TCP path without `--ebpf`
//!   (splice) and with `--ebpf --ebpf-cgroup CG`, beside the same clients
//!   over plain loopback, one session per tool and round, round-robin:
//!   iperf3 host -> namespace (`-t`) and namespace -> host (`-T`), 64-byte
//!   round trips (rr.py, and sockperf ping-pong, whose client costs little
//!   enough for the relay's own cost to show; once more with client, server
//!   and pasta on CPU 0, without the cross-CPU wakeups that cost tens of
//!   microseconds each on this kind of VM) and connections per second
//!   through `-t` (IPv4), with the ratios eBPF / splice and loopback /
//!   splice. Both pasta-rs columns run
//!   as root of the initial user namespace (so that `--ebpf` can load its
//!   own programs: the only difference between them is the flag); the lab
//!   creates a cgroup v2 CG under the cgroup2 mount and starts every client
//!   and server in it (the sockops program sees only sockets of processes in
//!   CG that were created after the attach), and the servers listen on
//!   0.0.0.0, not dual-stack `[::]`, which the short-circuit leaves on
//!   splice. Whether the programs loaded is read from pasta's log ("eBPF
//!   programs loaded", or "eBPF off, using splice(): WHY") and stated above
//!   the table ([`ebpf_status_phrase`]): an eBPF column at ~1.0x with the
//!   programs loaded means no feature short-circuited those flows. Each
//!   session also runs a stalled reader (`rr.py stall-client`: a server
//!   reads 1 MiB then stops; bytes the client wrote until no write fitted
//!   for 2 s, or 256 MiB if it never blocked; /proc/net/sockstat's TCP
//!   memory and MemAvailable before and then, both machine-wide). First,
//!   pasta-rs without and with `--ebpf` starts once with `-t all -u all`
//!   (after the lab's TIME_WAIT sockets are gone: they would hold ports
//!   against its listeners): its /proc/PID/fd entries, sockets, and TCP
//!   listeners and UDP sockets as `ss -p` lists them (with SK_LOOKUP, a
//!   handful instead of one per port), and how many ports it logged
//!   "Listen failed" for. Rows come from `target/bench/ebpf.tsv` (splice.tsv's format),
//!   `ebpf-status.tsv`, `ebpf-mem.tsv` and `ebpf-fds.tsv`
//!   ([`read_ebpf_part`]); the section follows the splice table; bench.json
//!   holds `ebpf_runs`, `ebpf_summary`, `ebpf_status`, `ebpf_stall`,
//!   `ebpf_stall_summary` and `ebpf_fds`;
//! - guest: iperf3 from a real QEMU guest through passt-rs in stream mode
//!   (`passt-rs`), Debian's passt in stream mode (`debian-passt`,
//!   `/usr/bin/passt`) and passt-rs as a vhost-user back-end
//!   (`passt-rs-vu`), one `../shared/guest/guestlab.sh run` per round and
//!   back-end (round-robin, rotated each round; see [`run_guest_part`]). The
//!   guest runs under TCG here (no usable KVM), so the absolute Mbit/s mean
//!   little: the table's point is the ratios passt-rs / Debian passt and
//!   vhost-user / stream of runs made side by side. Rows come from
//!   guestlab's `CHECK iperf3_out|iperf3_in` lines ([`parse_guestlab`],
//!   [`guest_outcome`]); runs go to `target/bench/guest.tsv`
//!   ([`guest_tsv`]), each run's summary.txt to `target/bench/raw/`, the
//!   table follows the splice table, bench.json holds `guest_runs` and
//!   `guest_summary`.
//!
//! Steps: install the missing Debian packages (`iperf3 passt slirp4netns`
//! and the tools the lab script calls; [`super::ensure_packages`]), build
//! release ([`super::build_release`]), then run `tests/bench/lab-bench.sh` as
//! PID 1 of `unshare --net --mount --pid --fork` under a hard `timeout`: a
//! private lab (a "host" namespace with a veth, MTU 1500, to an "upstream"
//! namespace holding the iperf3 server), so no traffic reaches anything but
//! the lab. The script starts each forwarder as root of its own user
//! namespace (as Podman runs pasta) connecting a fresh namespace, runs
//! `iperf3 -c` in it towards upstream (namespace sends) and with `-R`
//! (namespace receives), IPv4 and IPv6, at tap MTU 65520 and 1500, tools
//! round-robin within each round, and writes one line per run to
//! `target/bench/runs.tsv` ([`parse_runs`] documents the format).
//!
//! Every forwarder session's peak RSS (VmHWM of /proc/PID/status summed
//! over its processes, read right before it is stopped) goes to
//! `target/bench/rss.tsv` ([`parse_rss`]) and a table per part and MTU. The
//! report ends with a summary over every path of every part that ran
//! ([`summary_rows`]: pasta-rs, and pasta-rs `--threads 2` on the p4 rows,
//! beside the best peer, with the 1.1x target) and the issue's three checks
//! ([`checks`]), all computed from this run's medians; the summary's ratios
//! are drawn to `target/bench/bench.png` by gnuplot ([`render_plot`]).
//!
//! This module then summarises: per path (MTU, address family, direction)
//! and tool, the median and range of the throughput over the successful
//! runs, the ratio pasta-rs / best peer (the faster of Debian's pasta and
//! slirp4netns by median), and the median forwarder CPU seconds per GB
//! received (utime+stime during the iperf3 client, decimal GB). A tool that
//! fails on a path shows `fail` there; the bench goes on. The Markdown table
//! goes to stdout and `target/bench/bench.md`, raw numbers and the summary to
//! `target/bench/bench.json`; raw iperf3 JSON and forwarder logs stay in
//! `target/bench/raw` and `target/bench/logs`.
//!
//! The guest part does not use the lab script: the bench starts guestlab.sh
//! itself (which makes its own private namespaces) once per run, each under
//! its own `timeout` ([`guest_timeouts`]); guestlab's kernel and initramfs
//! are built (and its KVM probe cached) before the clock starts, like the
//! release build. The hard limit of the whole bench ([`hard_limit_secs`])
//! is the lab's limit plus the sum of those per-run limits.
//!
//! Exit status: 0 when at least one run of any tool succeeded, 1 when every
//! tool failed everywhere, when the lab could not be set up, or when the
//! hard timeout killed the lab (the partial table is still printed). A guest
//! run killed by its timeout is a failed run; the bench goes on.
//!
//! Limits: one machine's numbers; the client, server and forwarder share its
//! CPUs, so other load skews them (the medians and ranges show how much).
//! CPU time has clock-tick resolution (10 ms at `CLK_TCK` 100). The eBPF
//! section measures IPv4 only; its memory figures are machine-wide, so other
//! load shows in them (TCP memory less than MemAvailable); its `-t all`
//! count covers fewer ports than the kernel's default when the bench cannot
//! raise the fd limit (no CAP_SYS_RESOURCE: lab-bench.sh's FDS_PORT_RANGE).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{build_release, ensure_packages, show, workspace_root};

/// Debian packages the bench needs (iperf3, the two peers, and what
/// `tests/bench/lab-bench.sh` calls: unshare/nsenter, ip/ss, ping, python3).
const BENCH_PACKAGES: &[&str] = &[
    "iperf3",
    "passt",
    "slirp4netns",
    "iproute2",
    "iputils-ping",
    "python3",
    "util-linux",
    // the eBPF section's round trips (tcp-pp)
    "sockperf",
    // target/bench/bench.png (pngcairo terminal) and its font
    "gnuplot-nox",
    "fonts-dejavu-core",
];

/// The lab script, relative to the workspace root.
const LAB_SCRIPT: &str = "tests/bench/lab-bench.sh";

/// Tap MTUs measured, in bytes, in table order.
const MTUS: &[u16] = &[65520, 1500];

/// Default number of rounds (`--rounds`).
const ROUNDS_DEFAULT: u32 = 3;
/// Default iperf3 run length in seconds (`--secs`).
const SECS_DEFAULT: u32 = 5;

/// One forwarder the bench can measure.
#[derive(Debug, PartialEq, Eq)]
struct Tool {
    /// Name in `--tools`, in runs.tsv and in bench.json.
    id: &'static str,
    /// Column heading in the table.
    label: &'static str,
    /// A peer pasta-rs is compared with (the ratio column).
    peer: bool,
}

/// Every tool, in column order.
const TOOLS: &[Tool] = &[
    Tool { id: "pasta-rs", label: "pasta-rs", peer: false },
    Tool { id: "debian-pasta", label: "Debian pasta", peer: true },
    Tool { id: "slirp4netns", label: "slirp4netns", peer: true },
];

/// The id of the tool under test (numerator of the ratio).
const OURS: &str = "pasta-rs";

/// pasta-rs with `--threads 2` (the p4 part only; lab-bench.sh adds the
/// option): compared with pasta-rs (`--threads 1`, the default).
const T2: Tool = Tool {
    id: "pasta-rs-t2",
    label: "pasta-rs --threads 2",
    peer: false,
};

/// The tap parts' ceiling: the same iperf3 or rr.py client in the lab's
/// "host" namespace straight to upstream over the lab veth (MTU 1500), no
/// forwarder; one session per round, shown in the rows of every MTU.
const VETH: Tool = Tool {
    id: "veth",
    label: "veth (no forwarder)",
    peer: false,
};

/// Whether `id` is a ceiling without a forwarder (no CPU time, no RSS).
fn is_ceiling(id: &str) -> bool {
    id == VETH.id || id == LOOPBACK.id
}

/// The tap table's tools: the selected ones, then [`VETH`].
fn tap_tools(tools: &[&'static Tool]) -> Vec<&'static Tool> {
    let mut v = tools.to_vec();
    v.push(&VETH);
    v
}

/// The p4 table's tools: the selected ones with [`T2`] right after
/// pasta-rs, then [`VETH`].
fn p4_tools(tools: &[&'static Tool]) -> Vec<&'static Tool> {
    let mut v = Vec::new();
    for &t in tools {
        v.push(t);
        if t.id == OURS {
            v.push(&T2);
        }
    }
    v.push(&VETH);
    v
}

/// The tap-rr table's tools: the selected ones, then [`VETH`].
fn taprr_tools(tools: &[&'static Tool]) -> Vec<&'static Tool> {
    tap_tools(tools)
}

/// Parsed command line.
#[derive(Debug, PartialEq)]
struct Opts {
    /// Rounds; every round runs every path with every tool once.
    rounds: u32,
    /// iperf3 `-t` of each run, seconds.
    secs: u32,
    /// Install missing packages first.
    install: bool,
    /// Selected tools, in column order.
    tools: Vec<&'static Tool>,
    /// Run the tap part (`--only tap`, or by default).
    tap: bool,
    /// Run the parallel-flows part (`--only p4`, or by default).
    p4: bool,
    /// Run the splice part (`--only splice`, or by default).
    splice: bool,
    /// Run the tap round-trip part (`--only tap-rr`, or by default).
    taprr: bool,
    /// Run the eBPF section (`--only ebpf`, `--ebpf`; not by default).
    ebpf: bool,
    /// Run the guest part (`--only guest`, or by default).
    guest: bool,
    /// Selected guest back-ends, in column order.
    guest_tools: Vec<&'static GuestTool>,
}

const USAGE: &str = "\
usage: cargo xtask bench [--rounds N] [--secs S] [--quick] [--tools LIST] [--guest-tools LIST]
                         [--only PART[,PART...]] [--ebpf] [--no-install]
  --rounds N    rounds, each running every path with every tool (default 3)
  --secs S      seconds per run (default 5; the guest part: per direction)
  --quick       1 round x 2 s (smoke test)
  --tools LIST  comma-separated subset of pasta-rs,debian-pasta,slirp4netns
                (pasta-rs also runs with --threads 2 in the p4 part; the
                ceilings veth and loopback always run)
  --guest-tools LIST
                comma-separated subset of passt-rs,debian-passt,passt-rs-vu
                (the guest part's back-ends: stream, stream, vhost-user)
  --only PARTS  comma-separated: tap (iperf3 through the tap), p4 (iperf3
                -P 4 through the tap, pasta-rs also with --threads 2),
                splice (pasta's loopback relay beside plain loopback),
                tap-rr (TCP round trips, connections/s and UDP throughput
                through the tap), ebpf (pasta-rs's spliced TCP with and
                without --ebpf beside plain loopback, a stalled reader, fds
                held for -t all -u all) or guest (iperf3 from a QEMU guest
                through passt, ../shared/guest/guestlab.sh); default all
                but ebpf
  --ebpf        the same as --only ebpf
  --no-install  do not install missing Debian packages";

fn parse_args(args: &[OsString]) -> Result<Opts> {
    let mut o = Opts {
        rounds: ROUNDS_DEFAULT,
        secs: SECS_DEFAULT,
        install: true,
        tools: TOOLS.iter().collect(),
        tap: true,
        p4: true,
        splice: true,
        taprr: true,
        ebpf: false,
        guest: true,
        guest_tools: GUEST_TOOLS.iter().collect(),
    };
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    let positive = |name: &str, v: Option<String>| -> Result<u32> {
        let v = v.with_context(|| format!("{name} needs a number"))?;
        match v.parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("{name}: '{v}' is not a positive number"),
        }
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rounds" => o.rounds = positive("--rounds", it.next())?,
            "--secs" => o.secs = positive("--secs", it.next())?,
            "--quick" => {
                o.rounds = 1;
                o.secs = 2;
            }
            "--no-install" => o.install = false,
            "--ebpf" => o.select_parts(&["ebpf"])?,
            "--only" => {
                let v = it.next().unwrap_or_default();
                let want: Vec<&str> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                if want.is_empty() {
                    bail!(
                        "--only: want a part among {}, not nothing",
                        PARTS.join(", ")
                    );
                }
                o.select_parts(&want)?;
            }
            "--guest-tools" => {
                let v = it.next().context("--guest-tools needs a list")?;
                let mut want = Vec::new();
                for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let Some(t) = GUEST_TOOLS.iter().find(|t| t.id == name) else {
                        bail!("--guest-tools: unknown back-end '{name}' (passt-rs, debian-passt, passt-rs-vu)");
                    };
                    want.push(t.id);
                }
                if want.is_empty() {
                    bail!("--guest-tools: empty list");
                }
                o.guest_tools = GUEST_TOOLS.iter().filter(|t| want.contains(&t.id)).collect();
            }
            "--tools" => {
                let v = it.next().context("--tools needs a list")?;
                let mut want = Vec::new();
                for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let Some(t) = TOOLS.iter().find(|t| t.id == name) else {
                        bail!("--tools: unknown tool '{name}' (pasta-rs, debian-pasta, slirp4netns)");
                    };
                    want.push(t.id);
                }
                if want.is_empty() {
                    bail!("--tools: empty list");
                }
                o.tools = TOOLS.iter().filter(|t| want.contains(&t.id)).collect();
            }
            other => bail!("bench: unknown option '{other}'\n{USAGE}"),
        }
    }
    Ok(o)
}

/// Every part's name for `--only`, in run order.
const PARTS: &[&str] = &["tap", "p4", "splice", "tap-rr", "ebpf", "guest"];

impl Opts {
    /// Run exactly the parts named in `want` (names of [`PARTS`]).
    ///
    /// # Errors
    /// A name that is not a part.
    fn select_parts(&mut self, want: &[&str]) -> Result<()> {
        if let Some(bad) = want.iter().find(|w| !PARTS.contains(w)) {
            bail!("--only: want {}, not {bad}", PARTS.join(", "));
        }
        let has = |p: &str| want.contains(&p);
        (
            self.tap,
            self.p4,
            self.splice,
            self.taprr,
            self.ebpf,
            self.guest,
        ) = (
            has("tap"),
            has("p4"),
            has("splice"),
            has("tap-rr"),
            has("ebpf"),
            has("guest"),
        );
        Ok(())
    }

    /// Whether any part that runs in the lab script is selected.
    fn lab_part(&self) -> bool {
        self.tap || self.p4 || self.splice || self.taprr || self.ebpf
    }
}

/// `cargo xtask bench ARGS`: see the module documentation.
pub fn cmd_bench(args: &[OsString]) -> Result<ExitCode> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    let opts = parse_args(args)?;
    if !is_root()? {
        bail!("bench must run as root (unshare --net --mount --pid for the private lab)");
    }
    let lab_part = opts.lab_part();
    if opts.ebpf && !opts.tools.iter().any(|t| t.id == OURS) {
        bail!("the eBPF section measures pasta-rs: --tools must include it");
    }
    if opts.install {
        let mut pkgs: Vec<&str> = Vec::new();
        if lab_part {
            pkgs.extend(BENCH_PACKAGES);
        }
        if opts.guest {
            pkgs.extend(GUEST_PACKAGES.iter().filter(|p| !pkgs.contains(p)).collect::<Vec<_>>());
        }
        ensure_packages(&pkgs)?;
    }
    let root = workspace_root();
    let mut built = false;
    let mut build_once = || -> Result<()> {
        if !built {
            build_release()?;
            built = true;
        }
        Ok(())
    };
    let mut tool_bins = Vec::new();
    for t in opts.tools.iter().filter(|_| lab_part) {
        let bin = match t.id {
            "pasta-rs" => {
                build_once()?;
                std::env::var_os("PASTA_BIN")
                    .filter(|p| !p.is_empty())
                    .map_or_else(|| target_dir().join("release/pasta"), PathBuf::from)
            }
            "debian-pasta" => PathBuf::from("/usr/bin/pasta"),
            _ => PathBuf::from("/usr/bin/slirp4netns"),
        };
        // absolute but not canonical: /usr/bin/pasta is a symlink to passt,
        // which picks its mode from the name it was started by
        let bin = std::path::absolute(&bin)
            .with_context(|| format!("{}: bad path {}", t.id, bin.display()))?;
        if !bin.is_file() {
            bail!("{}: {} not found", t.id, bin.display());
        }
        tool_bins.push(format!("{}={}", t.id, bin.display()));
    }
    let guestlab = root.join(GUESTLAB);
    let mut guest_bins = Vec::new();
    let mut guest_env = String::new();
    if opts.guest {
        if !guestlab.is_file() {
            bail!(
                "{} is missing: the guest part needs ../shared beside the checkout (or --only tap|splice)",
                guestlab.display()
            );
        }
        for &t in &opts.guest_tools {
            let bin = if t.id == "debian-passt" {
                PathBuf::from("/usr/bin/passt")
            } else {
                build_once()?;
                std::env::var_os("PASST_BIN")
                    .filter(|p| !p.is_empty())
                    .map_or_else(|| target_dir().join("release/passt"), PathBuf::from)
            };
            let bin = std::path::absolute(&bin)
                .with_context(|| format!("{}: bad path {}", t.id, bin.display()))?;
            if !bin.is_file() {
                bail!("{}: {} not found", t.id, bin.display());
            }
            guest_bins.push((t, bin));
        }
        guest_env = prepare_guestlab(&guestlab, &root)?;
    }
    let out = target_dir().join("bench");
    for d in ["raw", "logs"] {
        let p = out.join(d);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("rm -r {}", p.display()))?;
        }
    }
    std::fs::create_dir_all(out.join("raw")).with_context(|| format!("mkdir {}/raw", out.display()))?;
    let runs_file = out.join("runs.tsv");
    let guest_file = out.join("guest.tsv");
    for f in [&runs_file, &guest_file] {
        let _ = std::fs::remove_file(f);
    }

    let limit = hard_limit_secs(&opts);
    let mut which = Vec::new();
    if lab_part {
        which.push(format!("tools {}", opts.tools.iter().map(|t| t.id).collect::<Vec<_>>().join(",")));
    }
    if opts.guest {
        which.push(format!(
            "guest back-ends {}",
            opts.guest_tools.iter().map(|t| t.id).collect::<Vec<_>>().join(",")
        ));
    }
    eprintln!(
        "xtask: bench: {} rounds x {} s, parts {}, {}, at most {limit} s",
        opts.rounds,
        opts.secs,
        parts(&opts),
        which.join(", ")
    );
    let t0 = Instant::now();
    let mut killed = false;
    let (mut runs, mut splice_runs, mut env) = (Vec::new(), Vec::new(), String::new());
    let (mut p4_runs, mut taprr_runs, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    let mut ebpf = EbpfPart::default();
    if lab_part {
        let lab_limit = lab_limit_secs(&opts);
        let mtus: Vec<String> = MTUS.iter().map(u16::to_string).collect();
        let mut c = Command::new("timeout");
        c.args(["-k", "10", &lab_limit.to_string()])
            .args(["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc"])
            .arg("bash")
            .arg(root.join(LAB_SCRIPT))
            .env("BENCH_OUT", &out)
            .env("BENCH_ROUNDS", opts.rounds.to_string())
            .env("BENCH_SECS", opts.secs.to_string())
            .env("BENCH_MTUS", mtus.join(" "))
            .env("BENCH_TOOLS", tool_bins.join(" "))
            .env("BENCH_PARTS", lab_parts(&opts))
            // progress to stderr: stdout carries only the table
            .stdout(Stdio::from(std::io::stderr()));
        eprintln!("xtask: $ {}", show(&c));
        let status = c.status().context("cannot start timeout/unshare")?;
        killed = matches!(status.code(), Some(124 | 137)) || status.code().is_none();
        if !status.success() && !killed {
            bail!("bench lab failed ({status}); see the log above");
        }
        if killed {
            eprintln!("xtask: bench: the lab was killed after {lab_limit} s; partial results follow");
        }
        let text = std::fs::read_to_string(&runs_file)
            .with_context(|| format!("cannot read {}", runs_file.display()))?;
        runs = parse_runs(&text)?;
        let splice_file = out.join("splice.tsv");
        let text = std::fs::read_to_string(&splice_file)
            .with_context(|| format!("cannot read {}", splice_file.display()))?;
        splice_runs = parse_splice_runs(&text)?;
        // written by this version of the lab script only: absent is empty
        let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
        p4_runs = parse_runs(&read("p4.tsv")).context("p4.tsv")?;
        taprr_runs = parse_rate_runs("taprr.tsv", &read("taprr.tsv"))?;
        rss = parse_rss(&read("rss.tsv"))?;
        ebpf = read_ebpf_part(&out)?;
        env = std::fs::read_to_string(out.join("env.txt")).unwrap_or_default();
    }
    let guest_runs =
        if opts.guest { run_guest_part(&opts, &guestlab, &root, &guest_bins, &out)? } else { Vec::new() };
    let elapsed = t0.elapsed();
    let summary = summarise(&runs, &tap_tools(&opts.tools));
    let mut md = if opts.tap {
        render_markdown(&summary, &opts, &env, elapsed, &runs)
    } else {
        render_markdown_head(&opts, &env, elapsed)
    };
    let p4_rows = summarise(&p4_runs, &p4_tools(&opts.tools));
    if opts.p4 {
        md.push('\n');
        md.push_str(&render_p4_markdown(&p4_rows, &opts, &p4_runs));
    }
    let stools = splice_tools(&opts.tools);
    let splice_rows = summarise_splice(&splice_runs, &stools);
    if opts.splice {
        md.push('\n');
        md.push_str(&render_splice_markdown(&splice_rows, &stools, &opts, &splice_runs));
    }
    let rtools = taprr_tools(&opts.tools);
    let taprr_rows = summarise_splice(&taprr_runs, &rtools);
    if opts.taprr {
        md.push('\n');
        md.push_str(&render_taprr_markdown(
            &taprr_rows,
            &rtools,
            &opts,
            &taprr_runs,
        ));
    }
    let ebpf_rows = summarise_splice(&ebpf.runs, &ebpf_tools());
    let stall_rows = summarise_stall(&ebpf.stall);
    if opts.ebpf {
        if !md.ends_with("\n\n") {
            md.push('\n');
        }
        md.push_str(&render_ebpf_markdown(&ebpf_rows, &stall_rows, &opts, &ebpf));
    }
    let guest_rows = summarise_guest(&guest_runs, &opts.guest_tools);
    if opts.guest {
        if !md.ends_with("\n\n") {
            md.push('\n');
        }
        md.push_str(&render_guest_markdown(&guest_rows, &opts, &guest_env, &guest_runs));
    }
    if !rss.is_empty() {
        md.push('\n');
        md.push_str(&render_rss_markdown(&rss, &p4_tools(&opts.tools)));
    }
    let sum_rows = summary_rows(&summary, &p4_rows, &splice_rows, &taprr_rows, &guest_rows);
    let checks = checks(&summary, &p4_rows, &splice_rows, &taprr_rows);
    md.push('\n');
    md.push_str(&render_summary_markdown(&sum_rows, &checks));
    print!("{md}");
    let md_path = out.join("bench.md");
    std::fs::write(&md_path, &md).with_context(|| format!("cannot write {}", md_path.display()))?;
    let json_path = out.join("bench.json");
    let json = render_json(
        &opts,
        &env,
        elapsed,
        (&splice_rows, &splice_runs),
        (&ebpf_rows, &stall_rows, &ebpf),
        (&guest_rows, &guest_runs, &guest_env),
        &MoreJson {
            tap: (&summary, &runs),
            p4: (&p4_rows, &p4_runs),
            taprr: (&taprr_rows, &taprr_runs),
            rss: &rss,
            sum_rows: &sum_rows,
            checks: &checks,
        },
    );
    std::fs::write(&json_path, json)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    eprintln!(
        "xtask: bench: wrote {} and {}",
        md_path.display(),
        json_path.display()
    );
    eprintln!("xtask: bench: {}", render_plot(&sum_rows, &out));
    if killed {
        return Ok(ExitCode::FAILURE);
    }
    let tap_like: Vec<Run> = runs.iter().chain(&p4_runs).cloned().collect();
    let rate_like: Vec<SpliceRun> = splice_runs.iter().chain(&taprr_runs).cloned().collect();
    Ok(exit_code(&tap_like, &rate_like, &ebpf.runs, &guest_runs))
}

/// The selected parts, space-separated, in run order: a subset of "tap
/// splice guest" (bench.json's `parts`).
fn parts(o: &Opts) -> String {
    let on = [o.tap, o.p4, o.splice, o.taprr, o.ebpf, o.guest];
    PARTS
        .iter()
        .zip(on)
        .filter(|(_, on)| *on)
        .map(|(p, _)| *p)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `BENCH_PARTS` for the lab script: the selected parts among "tap p4
/// splice tap-rr ebpf" (the guest part does not use the lab).
fn lab_parts(o: &Opts) -> String {
    let on = [o.tap, o.p4, o.splice, o.taprr, o.ebpf];
    PARTS
        .iter()
        .zip(on)
        .filter(|(_, on)| *on)
        .map(|(p, _)| *p)
        .collect::<Vec<_>>()
        .join(" ")
}

/// 0 if any run (tap, splice, eBPF section or guest) succeeded, else 1
/// (every tool failed everywhere).
fn exit_code(
    runs: &[Run],
    splice_runs: &[SpliceRun],
    ebpf_runs: &[SpliceRun],
    guest_runs: &[GuestRun],
) -> ExitCode {
    if runs.iter().any(|r| r.ok && !is_ceiling(&r.tool))
        || splice_runs.iter().any(|r| r.ok && !is_ceiling(&r.tool))
        || ebpf_runs.iter().any(|r| r.ok)
        || guest_runs.iter().any(|r| r.ok)
    {
        ExitCode::SUCCESS
    } else {
        eprintln!("xtask: bench: every run of every tool failed");
        ExitCode::FAILURE
    }
}

/// Runs per splice session (lab-bench.sh's SPLICE_PATHS): both families
/// for the two iperf3 paths, IPv4 for the other three.
const SPLICE_RUNS_PER_SESSION: u64 = 7;

/// Upper bound of the lab (tap and splice parts, eBPF section) in seconds:
/// per forwarder start 21 s (5 s namespace, 10 s addresses, 6 s stop), per
/// run the client limit (S + 20 s) plus 10 s for the server and the kill,
/// per stalled reader and `-t all` count their own limits
/// ([`EBPF_STALL_LIMIT_S`], [`EBPF_FDS_LIMIT_S`]), and 60 s for set-up. 0
/// if none of them is selected.
fn lab_limit_secs(o: &Opts) -> u64 {
    if !o.lab_part() {
        return 0;
    }
    let per_run = u64::from(o.secs) + 30;
    let rounds = u64::from(o.rounds);
    let mut secs = 60;
    if o.tap {
        let sessions = rounds * MTUS.len() as u64 * o.tools.len() as u64;
        // the veth ceiling: 4 runs per round, no forwarder
        secs += sessions * (21 + 4 * per_run) + rounds * 4 * per_run;
    }
    if o.p4 {
        let fwd = p4_tools(&o.tools)
            .iter()
            .filter(|t| t.id != VETH.id)
            .count() as u64;
        secs += rounds * MTUS.len() as u64 * fwd * (21 + 2 * per_run) + rounds * 2 * per_run;
    }
    if o.splice {
        let sessions = rounds * splice_tools(&o.tools).len() as u64;
        secs += sessions * (21 + SPLICE_RUNS_PER_SESSION * per_run);
    }
    if o.taprr {
        let sessions = rounds * taprr_tools(&o.tools).len() as u64;
        secs += sessions * (21 + TAPRR_PATHS.len() as u64 * per_run);
    }
    if o.ebpf {
        let sessions = u64::from(o.rounds) * EBPF_TOOLS.len() as u64;
        secs += sessions * (21 + EBPF_RUNS_PER_SESSION * per_run + EBPF_STALL_LIMIT_S) + 2 * EBPF_FDS_LIMIT_S;
    }
    secs
}

/// Upper bound of the whole bench in seconds: the lab's
/// ([`lab_limit_secs`]) plus, for the guest part, every guestlab run at its
/// outer timeout plus the 10 s `timeout -k` grace ([`guest_timeouts`]).
fn hard_limit_secs(o: &Opts) -> u64 {
    let mut secs = lab_limit_secs(o);
    if o.guest {
        let runs = u64::from(o.rounds) * o.guest_tools.len() as u64;
        secs += runs * (guest_timeouts(o.secs).outer + 10);
    }
    secs
}

/// `$CARGO_TARGET_DIR` or `<workspace>/target`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|p| !p.is_empty())
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// Effective UID 0, from the `Uid:` line of /proc/self/status.
fn is_root() -> Result<bool> {
    let s = std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    Ok(euid_from_status(&s) == Some(0))
}

/// The effective UID (second field of `Uid:`) in /proc/PID/status text.
fn euid_from_status(s: &str) -> Option<u32> {
    let line = s.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---- runs -------------------------------------------------------------------

/// Direction of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    /// The namespace sends (iperf3 -c).
    Send,
    /// The namespace receives (iperf3 -c -R).
    Recv,
}

impl Dir {
    fn id(self) -> &'static str {
        match self {
            Dir::Send => "send",
            Dir::Recv => "recv",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Dir::Send => "namespace sends",
            Dir::Recv => "namespace receives",
        }
    }
}

/// One iperf3 run (a line of runs.tsv).
#[derive(Clone, Debug, PartialEq)]
struct Run {
    /// Round, from 1.
    round: u32,
    /// Tool id (see [`TOOLS`]).
    tool: String,
    /// Tap MTU, bytes.
    mtu: u16,
    /// Address family: 4 or 6.
    af: u8,
    /// Direction.
    dir: Dir,
    /// iperf3 succeeded and moved data.
    ok: bool,
    /// Bytes received (iperf3 end.sum_received.bytes); 0 if failed.
    bytes: u64,
    /// Seconds of the transfer (end.sum_received.seconds); 0 if failed.
    secs: f64,
    /// Forwarder CPU seconds (utime+stime) during the run, if known.
    cpu_s: Option<f64>,
    /// Why it failed, or a remark on a successful run; empty if none.
    note: String,
    /// Share of the whole machine's CPU time busy during the run (0..1),
    /// if known.
    busy: Option<f64>,
}

impl Run {
    /// Throughput in Gbit/s (10^9 bit/s).
    fn gbps(&self) -> f64 {
        if self.secs > 0.0 {
            self.bytes as f64 * 8.0 / self.secs / 1e9
        } else {
            0.0
        }
    }
    /// Forwarder CPU seconds per GB (10^9 bytes) received.
    fn cpu_s_per_gb(&self) -> Option<f64> {
        match self.cpu_s {
            Some(c) if self.ok && self.bytes > 0 => Some(c / (self.bytes as f64 / 1e9)),
            _ => None,
        }
    }
}

/// Parse runs.tsv as written by tests/bench/lab-bench.sh: one run per line,
/// eleven tab-separated fields `round tool mtu af dir status bytes secs
/// cpu_s note busy`, with af `4|6`, dir `send|recv`, status `ok|fail`, cpu_s
/// a decimal or `-`, note `-` for none, busy a share 0..1 or `-` (absent in
/// files of older benches: ten fields). Empty lines are skipped.
///
/// # Errors
/// A line with another field count or an unparsable field, naming the line.
fn parse_runs(text: &str) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let n = i + 1;
        let f: Vec<&str> = line.split('\t').collect();
        let (round, tool, mtu, af, dir, status, bytes, secs, cpu, note, busy) = match f[..] {
            [round, tool, mtu, af, dir, status, bytes, secs, cpu, note] => {
                (round, tool, mtu, af, dir, status, bytes, secs, cpu, note, "-")
            }
            [round, tool, mtu, af, dir, status, bytes, secs, cpu, note, busy] => {
                (round, tool, mtu, af, dir, status, bytes, secs, cpu, note, busy)
            }
            _ => bail!("runs.tsv line {n}: {} fields, want 11 (10 before busy): {line:?}", f.len()),
        };
        let num = |what: &str, v: &str| format!("runs.tsv line {n}: bad {what} '{v}'");
        let af: u8 = af.parse().with_context(|| num("af", af))?;
        if af != 4 && af != 6 {
            bail!("{}", num("af", &af.to_string()));
        }
        let secs: f64 = secs.parse().with_context(|| num("secs", secs))?;
        if !secs.is_finite() || secs < 0.0 {
            bail!("{}", num("secs", &secs.to_string()));
        }
        let cpu_s = match cpu {
            "-" => None,
            c => {
                let v: f64 = c.parse().with_context(|| num("cpu_s", c))?;
                if !v.is_finite() || v < 0.0 {
                    bail!("{}", num("cpu_s", c));
                }
                Some(v)
            }
        };
        let busy = match busy {
            "-" => None,
            b => {
                let v: f64 = b.parse().with_context(|| num("busy", b))?;
                if !(0.0..=1.5).contains(&v) {
                    bail!("{}", num("busy", b));
                }
                Some(v.min(1.0))
            }
        };
        runs.push(Run {
            round: round.parse().with_context(|| num("round", round))?,
            tool: tool.to_string(),
            mtu: mtu.parse().with_context(|| num("mtu", mtu))?,
            af,
            dir: match dir {
                "send" => Dir::Send,
                "recv" => Dir::Recv,
                d => bail!("{}", num("dir", d)),
            },
            ok: match status {
                "ok" => true,
                "fail" => false,
                s => bail!("{}", num("status", s)),
            },
            bytes: bytes.parse().with_context(|| num("bytes", bytes))?,
            secs,
            cpu_s,
            note: if note == "-" { String::new() } else { note.to_string() },
            busy,
        });
    }
    Ok(runs)
}

// ---- summary ----------------------------------------------------------------

/// The median of `v` (mean of the middle two for an even count); `None` if empty.
fn median(v: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => s.get(n / 2).copied(),
        _ => Some((s.get(n / 2 - 1)? + s.get(n / 2)?) / 2.0),
    }
}

/// Median, minimum and maximum of `v`; `None` if empty.
fn spread(v: &[f64]) -> Option<(f64, f64, f64)> {
    median(v).map(|m| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (m, lo, hi)
    })
}

/// One tool on one path.
#[derive(Debug, PartialEq)]
struct Cell {
    /// Tool id.
    tool: &'static str,
    /// Runs attempted.
    runs: usize,
    /// Runs that succeeded.
    ok: usize,
    /// Median, minimum, maximum Gbit/s over the successful runs.
    gbps: Option<(f64, f64, f64)>,
    /// Median forwarder CPU seconds per GB over the successful runs.
    cpu_s_per_gb: Option<f64>,
    /// Median share of the machine's CPU busy over the successful runs
    /// (tap and p4 parts only).
    busy: Option<f64>,
}

impl Cell {
    /// The cell of tool `tool` from `runs` attempts: the spread of the
    /// successful runs' rates `good`, the medians of their CPU s/GB `cpu`
    /// and machine busy shares `busy` (either may be empty).
    fn of(tool: &'static str, runs: usize, good: &[f64], cpu: &[f64], busy: &[f64]) -> Cell {
        Cell { tool, runs, ok: good.len(), gbps: spread(good), cpu_s_per_gb: median(cpu), busy: median(busy) }
    }
}

/// Median of tool `num` / median of tool `den` among `cells`, if both
/// exist and `den`'s is > 0.
fn cells_ratio(cells: &[Cell], num: &str, den: &str) -> Option<f64> {
    let median = |tool: &str| cells.iter().find(|c| c.tool == tool).and_then(|c| c.gbps).map(|g| g.0);
    match (median(num), median(den)) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// The JSON members `"num/den": ratio` of the `pairs` whose numerator is
/// `tool` (see [`cells_ratio`]), comma separated.
fn ratios_json(pairs: &[(&str, &str)], tool: &str, cells: &[Cell]) -> String {
    let members: Vec<String> = pairs
        .iter()
        .filter(|(a, _)| *a == tool)
        .map(|(a, b)| format!("{}: {}", json_str(&format!("{a}/{b}")), json_num(cells_ratio(cells, a, b))))
        .collect();
    members.join(", ")
}

/// One table row: a path and every selected tool on it.
#[derive(Debug, PartialEq)]
struct Row {
    /// Tap MTU, bytes.
    mtu: u16,
    /// 4 or 6.
    af: u8,
    /// Direction.
    dir: Dir,
    /// One cell per selected tool, in column order.
    cells: Vec<Cell>,
    /// pasta-rs median / best peer median, if both exist.
    ratio: Option<f64>,
}

/// Group `runs` into rows (MTU, then family, then direction, in [`MTUS`]
/// order) with one cell per tool of `tools`.
fn summarise(runs: &[Run], tools: &[&'static Tool]) -> Vec<Row> {
    let mut rows = Vec::new();
    for &mtu in MTUS {
        for af in [4u8, 6] {
            for dir in [Dir::Send, Dir::Recv] {
                let cells: Vec<Cell> = tools
                    .iter()
                    .map(|t| {
                        // the veth ceiling's runs (MTU 1500) stand in every MTU's rows
                        let mine: Vec<&Run> = runs
                            .iter()
                            .filter(|r| {
                                r.tool == t.id
                                    && (r.mtu == mtu || t.id == VETH.id)
                                    && r.af == af
                                    && r.dir == dir
                            })
                            .collect();
                        let good: Vec<f64> = mine.iter().filter(|r| r.ok).map(|r| r.gbps()).collect();
                        let cpu: Vec<f64> = mine.iter().filter_map(|r| r.cpu_s_per_gb()).collect();
                        let busy: Vec<f64> = mine.iter().filter(|r| r.ok).filter_map(|r| r.busy).collect();
                        Cell::of(t.id, mine.len(), &good, &cpu, &busy)
                    })
                    .collect();
                let ours = cells.iter().find(|c| c.tool == OURS).and_then(|c| c.gbps).map(|g| g.0);
                let best_peer = cells
                    .iter()
                    .filter(|c| TOOLS.iter().any(|t| t.id == c.tool && t.peer))
                    .filter_map(|c| c.gbps.map(|g| g.0))
                    .fold(None, |b: Option<f64>, x| Some(b.map_or(x, |b| b.max(x))));
                let ratio = match (ours, best_peer) {
                    (Some(o), Some(p)) if p > 0.0 => Some(o / p),
                    _ => None,
                };
                if cells.iter().any(|c| c.runs > 0 && c.tool != VETH.id) {
                    rows.push(Row {
                        mtu,
                        af,
                        dir,
                        cells,
                        ratio,
                    });
                }
            }
        }
    }
    rows
}

/// `x` with three significant digits (at least two decimals below 1 000), no exponent.
fn sig3(x: f64) -> String {
    let a = x.abs();
    let decimals = if a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 || a == 0.0 {
        2
    } else if a >= 0.1 {
        3
    } else {
        4
    };
    format!("{x:.decimals$}")
}

fn gbps_cell(c: &Cell) -> String {
    let Some((m, lo, hi)) = c.gbps else {
        return if c.runs == 0 { "-".into() } else { "fail".into() };
    };
    let mut s = sig3(m);
    if c.ok > 1 {
        let _ = write!(s, " ({}-{})", sig3(lo), sig3(hi));
    }
    if c.ok < c.runs {
        let _ = write!(s, ", {}/{} fail", c.runs - c.ok, c.runs);
    }
    s
}

/// The report's title and environment lines when the tap part did not run
/// (`--only splice` or `--only guest`).
fn render_markdown_head(o: &Opts, env: &str, elapsed: Duration) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# cargo xtask bench --only {}\n", parts(o));
    let _ = writeln!(s, "{} round(s) x {} s. Run time {:.0} s.\n", o.rounds, o.secs, elapsed.as_secs_f64());
    for l in env.lines().filter(|l| !l.trim().is_empty()) {
        let _ = writeln!(s, "- {l}");
    }
    s
}

/// The report: header, the tap table, failure notes.
fn render_markdown(rows: &[Row], o: &Opts, env: &str, elapsed: Duration, runs: &[Run]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# cargo xtask bench: iperf3 TCP through the tap\n");
    let _ = writeln!(
        s,
        "Namespace <-> upstream across the lab veth (MTU 1500), tap MTU as in the row; \
         {} round(s) x {} s, tools round-robin per round. Gbit/s: median (min-max) of the \
         successful runs. Ratio: pasta-rs / best peer by median. CPU: forwarder utime+stime \
         per GB received (10^9 bytes), median. veth: the same client in the lab namespace \
         straight over the lab veth, no forwarder (the ceiling; the same runs in every MTU's \
         rows). Run time {:.0} s.\n",
        o.rounds,
        o.secs,
        elapsed.as_secs_f64()
    );
    for l in env.lines().filter(|l| !l.trim().is_empty()) {
        let _ = writeln!(s, "- {l}");
    }
    if !env.trim().is_empty() {
        s.push('\n');
    }
    s.push_str(&render_tap_table(rows, &tap_tools(&o.tools), runs, |r| {
        format!("MTU {}, IPv{}, {}", r.mtu, r.af, r.dir.label())
    }));
    s
}

/// The p4 part's section: heading and its table.
fn render_p4_markdown(rows: &[Row], o: &Opts, runs: &[Run]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## iperf3 -P 4 through the tap: 4 parallel flows\n");
    let _ = writeln!(
        s,
        "As the tap table, with `iperf3 -P 4` (the sum of the 4 flows), IPv4, at each tap MTU; \
         pasta-rs once more with `--threads 2` (its ratio to pasta-rs's default, one thread, \
         in the last ratio column). {} round(s) x {} s.\n",
        o.rounds, o.secs
    );
    s.push_str(&render_tap_table(rows, &p4_tools(&o.tools), runs, |r| {
        format!("-P 4, MTU {}, IPv{}, {}", r.mtu, r.af, r.dir.label())
    }));
    s
}

/// A table of tap throughput rows (the tap and p4 parts): Gbit/s per tool,
/// pasta-rs / best peer, `--threads 2` / `--threads 1` if [`T2`] is among
/// `tools`, CPU s/GB per forwarder; then why runs failed.
fn render_tap_table(
    rows: &[Row],
    tools: &[&'static Tool],
    runs: &[Run],
    path: impl Fn(&Row) -> String,
) -> String {
    let mut s = String::new();
    let ours = tools.iter().any(|t| t.id == OURS);
    let peers = tools.iter().any(|t| t.peer);
    let t2 = ours && tools.iter().any(|t| t.id == T2.id);
    let mut head = vec!["path".to_string()];
    head.extend(tools.iter().map(|t| format!("{} Gbit/s", t.label)));
    if ours && peers {
        head.push("pasta-rs / best peer".into());
    }
    if t2 {
        head.push("--threads 2 / --threads 1".into());
    }
    let fwd: Vec<&&Tool> = tools.iter().filter(|t| !is_ceiling(t.id)).collect();
    head.extend(fwd.iter().map(|t| format!("CPU s/GB {}", t.label)));
    // with --threads 2 beside one thread: was the machine the bound?
    let busy_of = [OURS, T2.id];
    if t2 {
        head.extend(busy_of.iter().map(|id| format!("machine busy % {}", tool_label(tools, id))));
    }
    let _ = writeln!(s, "| {} |", head.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(head.len()));
    for r in rows {
        let mut cols = vec![path(r)];
        cols.extend(r.cells.iter().map(gbps_cell));
        if ours && peers {
            cols.push(r.ratio.map_or_else(|| "-".into(), |x| format!("{x:.2}")));
        }
        if t2 {
            cols.push(
                cells_ratio(&r.cells, T2.id, OURS)
                    .map_or_else(|| "-".into(), |x| format!("{x:.2}")),
            );
        }
        cols.extend(
            r.cells
                .iter()
                .filter(|c| !is_ceiling(c.tool))
                .map(|c| c.cpu_s_per_gb.map_or_else(|| "-".into(), sig3)),
        );
        if t2 {
            cols.extend(busy_of.iter().map(|id| {
                r.cells
                    .iter()
                    .find(|c| c.tool == *id)
                    .and_then(|c| c.busy)
                    .map_or_else(|| "-".into(), |b| format!("{:.0}", b * 100.0))
            }));
        }
        let _ = writeln!(s, "| {} |", cols.join(" | "));
    }
    let label = |id: &str| tool_label(tools, id).to_string();
    // why runs failed, once per tool and reason
    let mut reasons: Vec<(String, String, usize)> = Vec::new();
    for r in runs.iter().filter(|r| !r.ok) {
        let why = if r.note.is_empty() { "unknown" } else { r.note.as_str() };
        match reasons.iter_mut().find(|(t, w, _)| *t == r.tool && w == why) {
            Some(e) => e.2 += 1,
            None => reasons.push((r.tool.clone(), why.to_string(), 1)),
        }
    }
    let remarks: Vec<(String, String)> = {
        let mut v: Vec<(String, String)> = Vec::new();
        for r in runs.iter().filter(|r| r.ok && !r.note.is_empty()) {
            if !v.iter().any(|(t, n)| *t == r.tool && *n == r.note) {
                v.push((r.tool.clone(), r.note.clone()));
            }
        }
        v
    };
    if !reasons.is_empty() || !remarks.is_empty() {
        s.push('\n');
    }
    for (t, why, n) in &reasons {
        let _ = writeln!(s, "- {} failed {n} run(s): {why}", label(t));
    }
    for (t, note) in &remarks {
        let _ = writeln!(s, "- {}: {note}", label(t));
    }
    s
}

// ---- splice path --------------------------------------------------------------

/// The ceiling of the splice table: the same client and server over `lo` of
/// one namespace, no forwarder (not selectable with `--tools`; always run).
const LOOPBACK: Tool = Tool { id: "loopback", label: "loopback", peer: false };

/// The peer pasta-rs is compared with on the splice path.
const SPLICE_PEER: &str = "debian-pasta";

/// One measurement of the splice part (`splice.tsv` field `path`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SplicePath {
    /// iperf3 from the host's loopback to the namespace's, through `-t`.
    TcpH2n,
    /// iperf3 from the namespace's loopback to the host's, through `-T`.
    TcpN2h,
    /// 64-byte TCP request/response on one connection, through `-t`.
    TcpRr,
    /// The same with sockperf ping-pong (C++, so the client's own cost
    /// doesn't hide the relay's as rr.py's Python does).
    TcpPp,
    /// sockperf ping-pong with client, server and forwarder on one CPU:
    /// no cross-CPU wakeups (an IPI costs tens of microseconds on this
    /// kind of VM, and dominates when the scheduler spreads them).
    TcpPp1,
    /// TCP connect, 1 byte each way, close, through `-t`.
    TcpCrr,
    /// 64-byte UDP request/response, through `-u`.
    UdpRr,
    /// tap-rr part: 64-byte TCP request/response on one connection from
    /// the namespace to upstream, through the tap.
    TapTcpRr,
    /// tap-rr part: TCP connect, 1 byte each way, close, namespace to
    /// upstream through the tap.
    TapTcpCrr,
    /// tap-rr part: UDP throughput, namespace sends (iperf3 -u -b 0 -l
    /// 1400; the receiver's bytes).
    TapUdpSend,
    /// tap-rr part: the same, namespace receives (-R).
    TapUdpRecv,
}

/// Every splice path, in table order.
const SPLICE_PATHS: &[SplicePath] =
    &[SplicePath::TcpH2n, SplicePath::TcpN2h, SplicePath::TcpRr, SplicePath::TcpPp, SplicePath::TcpPp1, SplicePath::TcpCrr, SplicePath::UdpRr];

/// The tap-rr part's paths, in table order (lab-bench.sh's TAPRR_PATHS).
const TAPRR_PATHS: &[SplicePath] = &[
    SplicePath::TapTcpRr,
    SplicePath::TapTcpCrr,
    SplicePath::TapUdpSend,
    SplicePath::TapUdpRecv,
];

impl SplicePath {
    fn id(self) -> &'static str {
        match self {
            SplicePath::TcpH2n => "tcp-h2n",
            SplicePath::TcpN2h => "tcp-n2h",
            SplicePath::TcpRr => "tcp-rr",
            SplicePath::TcpPp => "tcp-pp",
            SplicePath::TcpPp1 => "tcp-pp1",
            SplicePath::TcpCrr => "tcp-crr",
            SplicePath::UdpRr => "udp-rr",
            SplicePath::TapTcpRr => "tap-tcp-rr",
            SplicePath::TapTcpCrr => "tap-tcp-crr",
            SplicePath::TapUdpSend => "tap-udp-send",
            SplicePath::TapUdpRecv => "tap-udp-recv",
        }
    }
    fn label(self) -> &'static str {
        match self {
            SplicePath::TcpH2n => "TCP host -> namespace (-t)",
            SplicePath::TcpN2h => "TCP namespace -> host (-T)",
            SplicePath::TcpRr => "TCP 64-byte round trips (-t)",
            SplicePath::TcpPp => "TCP 64-byte round trips, sockperf (-t)",
            SplicePath::TcpPp1 => "TCP 64-byte round trips, sockperf, all on one CPU (-t)",
            SplicePath::TcpCrr => "TCP connections (-t)",
            SplicePath::UdpRr => "UDP 64-byte round trips (-u)",
            SplicePath::TapTcpRr => "tap TCP 64-byte round trips",
            SplicePath::TapTcpCrr => "tap TCP connections",
            SplicePath::TapUdpSend => "tap UDP 1400-byte datagrams, namespace sends",
            SplicePath::TapUdpRecv => "tap UDP 1400-byte datagrams, namespace receives",
        }
    }
    /// Unit of [`SpliceRun::rate`].
    fn unit(self) -> &'static str {
        match self {
            SplicePath::TcpH2n
            | SplicePath::TcpN2h
            | SplicePath::TapUdpSend
            | SplicePath::TapUdpRecv => "Gbit/s",
            SplicePath::TcpRr
            | SplicePath::TcpPp
            | SplicePath::TcpPp1
            | SplicePath::UdpRr
            | SplicePath::TapTcpRr => "round trips/s",
            SplicePath::TcpCrr | SplicePath::TapTcpCrr => "connections/s",
        }
    }
    /// Whether `count` is bytes (iperf3) rather than transactions (rr.py).
    fn counts_bytes(self) -> bool {
        matches!(
            self,
            SplicePath::TcpH2n
                | SplicePath::TcpN2h
                | SplicePath::TapUdpSend
                | SplicePath::TapUdpRecv
        )
    }
    fn from_id(id: &str) -> Option<Self> {
        SPLICE_PATHS
            .iter()
            .chain(TAPRR_PATHS)
            .copied()
            .find(|p| p.id() == id)
    }
    /// Why tool `tool` can't do this path in address family `af`, if it
    /// can't (its cell says so instead of `fail`): slirp4netns has no
    /// namespace -> host loopback forwarding (`-T`), and its API's
    /// `add_hostfwd` takes IPv4 host addresses only (slirp4netns 1.2.0:
    /// "bad arguments.host_addr" for ::1).
    fn unsupported(self, tool: &str, af: u8) -> Option<&'static str> {
        match (tool, self, af) {
            ("slirp4netns", SplicePath::TcpN2h, _) => {
                Some("n/a: no namespace -> host loopback forwarding")
            }
            ("slirp4netns", _, 6) if !self.id().starts_with("tap-") => {
                Some("n/a: add_hostfwd takes IPv4 host addresses only")
            }
            _ => None,
        }
    }
}

/// One run of the splice part (a line of splice.tsv).
#[derive(Clone, Debug, PartialEq)]
struct SpliceRun {
    /// Round, from 1.
    round: u32,
    /// Tool id: pasta-rs, debian-pasta or loopback.
    tool: String,
    /// What was measured.
    path: SplicePath,
    /// Address family: 4 (127.0.0.1) or 6 (::1).
    af: u8,
    /// The client succeeded.
    ok: bool,
    /// Bytes received (iperf3 paths) or transactions (rr.py); 0 if failed.
    count: u64,
    /// Seconds the client ran; 0 if failed.
    secs: f64,
    /// Forwarder CPU seconds (utime+stime) during the run, if known.
    cpu_s: Option<f64>,
    /// Why it failed; empty if none.
    note: String,
}

impl SpliceRun {
    /// Gbit/s (10^9 bit/s) for the iperf3 paths, transactions per second for
    /// the others; 0 if the run lasted no time.
    fn rate(&self) -> f64 {
        if self.secs <= 0.0 {
            return 0.0;
        }
        if self.path.counts_bytes() {
            self.count as f64 * 8.0 / self.secs / 1e9
        } else {
            self.count as f64 / self.secs
        }
    }
}

/// Parse splice.tsv as written by tests/bench/lab-bench.sh: one run per
/// line, nine tab-separated fields `round tool path af status count secs
/// cpu_s note`, path one of [`SPLICE_PATHS`]' ids, af `4|6`, status
/// `ok|fail`, cpu_s a decimal or `-`, note `-` for none. Empty lines are
/// skipped.
///
/// # Errors
/// A line with another field count or an unparsable field, naming the line.
fn parse_splice_runs(text: &str) -> Result<Vec<SpliceRun>> {
    parse_rate_runs("splice.tsv", text)
}

/// [`parse_splice_runs`] for a file of that format named `file` in errors
/// (splice.tsv, ebpf.tsv).
fn parse_rate_runs(file: &str, text: &str) -> Result<Vec<SpliceRun>> {
    let mut runs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let n = i + 1;
        let f: Vec<&str> = line.split('\t').collect();
        let [round, tool, path, af, status, count, secs, cpu, note] = f[..] else {
            bail!("{file} line {n}: {} fields, want 9: {line:?}", f.len());
        };
        let bad = |what: &str, v: &str| format!("{file} line {n}: bad {what} '{v}'");
        let af = match af {
            "4" => 4,
            "6" => 6,
            a => bail!("{}", bad("af", a)),
        };
        let nonneg = |what: &str, v: &str| -> Result<f64> {
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
                _ => bail!("{}", bad(what, v)),
            }
        };
        runs.push(SpliceRun {
            round: round.parse().with_context(|| bad("round", round))?,
            tool: tool.to_string(),
            path: SplicePath::from_id(path).with_context(|| bad("path", path))?,
            af,
            ok: match status {
                "ok" => true,
                "fail" => false,
                s => bail!("{}", bad("status", s)),
            },
            count: count.parse().with_context(|| bad("count", count))?,
            secs: nonneg("secs", secs)?,
            cpu_s: if cpu == "-" { None } else { Some(nonneg("cpu_s", cpu)?) },
            note: if note == "-" { String::new() } else { note.to_string() },
        });
    }
    Ok(runs)
}

/// The splice table's tools for the selected `tools`: every selected
/// forwarder (slirp4netns with its API's port forwarding, `-t`/`-u` paths
/// only), then [`LOOPBACK`].
fn splice_tools(tools: &[&'static Tool]) -> Vec<&'static Tool> {
    let mut v = tools.to_vec();
    v.push(&LOOPBACK);
    v
}

/// One splice path and family, every splice tool on it.
#[derive(Debug, PartialEq)]
struct SpliceRow {
    /// What was measured.
    path: SplicePath,
    /// 4 or 6.
    af: u8,
    /// One cell per splice tool, in column order ([`splice_tools`]); `gbps`
    /// holds the median and range of [`SpliceRun::rate`], `cpu_s_per_gb` is
    /// unused (None).
    cells: Vec<Cell>,
}

impl SpliceRow {
    /// See [`cells_ratio`].
    fn ratio(&self, num: &str, den: &str) -> Option<f64> {
        cells_ratio(&self.cells, num, den)
    }
}

/// The ratios of the splice table: (numerator, denominator) tool ids.
const SPLICE_RATIOS: &[(&str, &str)] = &[
    (OURS, SPLICE_PEER),
    (OURS, "slirp4netns"),
    (OURS, "loopback"),
    (SPLICE_PEER, "loopback"),
];

/// The ratios of the tap-rr table.
const TAPRR_RATIOS: &[(&str, &str)] = &[(OURS, SPLICE_PEER), (OURS, "slirp4netns"), (OURS, "veth")];

/// Group splice `runs` into rows ([`SPLICE_PATHS`] then [`TAPRR_PATHS`]
/// order, IPv4 before IPv6) with one cell per tool of `tools` (from
/// [`splice_tools`]); rows without any run are left out. Cells of byte
/// paths get the median CPU s/GB of the forwarder.
fn summarise_splice(runs: &[SpliceRun], tools: &[&'static Tool]) -> Vec<SpliceRow> {
    let mut rows = Vec::new();
    for &path in SPLICE_PATHS.iter().chain(TAPRR_PATHS) {
        for af in [4u8, 6] {
            let cells: Vec<Cell> = tools
                .iter()
                .map(|t| {
                    let mine: Vec<&SpliceRun> =
                        runs.iter().filter(|r| r.tool == t.id && r.path == path && r.af == af).collect();
                    let good: Vec<f64> = mine.iter().filter(|r| r.ok).map(|r| r.rate()).collect();
                    let cpu: Vec<f64> = mine
                        .iter()
                        .filter(|r| r.ok && r.count > 0 && path.counts_bytes())
                        .filter_map(|r| r.cpu_s.map(|c| c / (r.count as f64 / 1e9)))
                        .collect();
                    Cell::of(t.id, mine.len(), &good, &cpu, &[])
                })
                .collect();
            if cells.iter().any(|c| c.runs > 0 && !is_ceiling(c.tool)) {
                rows.push(SpliceRow { path, af, cells });
            }
        }
    }
    rows
}

/// The label of tool `id` among `tools`, else its id.
fn tool_label<'a>(tools: &[&'a Tool], id: &'a str) -> &'a str {
    tools.iter().find(|t| t.id == id).map_or(id, |t| t.label)
}

/// The splice report: a heading, the table, failure notes.
fn render_splice_markdown(rows: &[SpliceRow], tools: &[&'static Tool], o: &Opts, runs: &[SpliceRun]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Splice path: pasta's loopback relay beside plain loopback\n");
    let _ = writeln!(
        s,
        "Host loopback <-> namespace loopback through pasta's `-t`/`-T`/`-u` ports (spliced, \
         not through the tap); loopback: the same client and server over `lo` of one \
         namespace, no forwarder (the ceiling). {} round(s) x {} s, tools round-robin per \
         round. Cells: median (min-max) of the successful runs, in the row's unit. Ratios: \
         of the medians.\n",
        o.rounds, o.secs
    );
    s.push_str(&render_rate_table(
        rows,
        tools,
        SPLICE_RATIOS,
        runs,
        "splice",
        true,
    ));
    s
}

/// The tap-rr part's section: heading and its table.
fn render_taprr_markdown(
    rows: &[SpliceRow],
    tools: &[&'static Tool],
    o: &Opts,
    runs: &[SpliceRun],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Tap round trips, connections and UDP\n");
    let _ = writeln!(
        s,
        "Namespace -> upstream server through the tap at MTU 65520, IPv4: rr.py 64-byte TCP \
         round trips on one connection and TCP connections per second (connect, 1 byte each \
         way, close), and UDP throughput (`iperf3 -u -b 0 -l 1400`, the receiver's rate) both \
         ways; veth: the same client in the lab namespace, no forwarder. {} round(s) x {} s, \
         tools round-robin per round. Cells: median (min-max) of the successful runs, in the \
         row's unit; CPU s/GB for the UDP rows.\n",
        o.rounds, o.secs
    );
    s.push_str(&render_rate_table(
        rows,
        tools,
        TAPRR_RATIOS,
        runs,
        "tap-rr",
        true,
    ));
    s
}

/// A table of rate rows (the splice part's and the eBPF section's): one
/// column per tool of `tools`, then one per ratio of `ratios` whose two tools
/// are there; then why runs failed, one line per tool and reason ("failed N
/// `what` run(s): why").
fn render_rate_table(
    rows: &[SpliceRow],
    tools: &[&'static Tool],
    ratios: &[(&str, &str)],
    runs: &[SpliceRun],
    what: &str,
    cpu: bool,
) -> String {
    let mut s = String::new();
    // CPU s/GB columns: per forwarder, if asked and any row moves bytes
    let cpu_tools: Vec<&&Tool> = if cpu && rows.iter().any(|r| r.path.counts_bytes()) {
        tools.iter().filter(|t| !is_ceiling(t.id)).collect()
    } else {
        Vec::new()
    };
    let ratios: Vec<(&str, &str)> = ratios
        .iter()
        .copied()
        .filter(|(a, b)| tools.iter().any(|t| t.id == *a) && tools.iter().any(|t| t.id == *b))
        .collect();
    let mut head = vec!["path".to_string()];
    head.extend(tools.iter().map(|t| t.label.to_string()));
    head.extend(
        ratios
            .iter()
            .map(|(a, b)| format!("{} / {}", tool_label(tools, a), tool_label(tools, b))),
    );
    head.extend(cpu_tools.iter().map(|t| format!("CPU s/GB {}", t.label)));
    let _ = writeln!(s, "| {} |", head.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(head.len()));
    for r in rows {
        let mut cols = vec![format!(
            "{}, IPv{}, {}",
            r.path.label(),
            r.af,
            r.path.unit()
        )];
        cols.extend(
            r.cells
                .iter()
                .map(|c| match r.path.unsupported(c.tool, r.af) {
                    Some(why) if c.runs == 0 => why.to_string(),
                    _ => gbps_cell(c),
                }),
        );
        cols.extend(ratios.iter().map(|(a, b)| {
            r.ratio(a, b)
                .map_or_else(|| "-".into(), |x| format!("{x:.2}"))
        }));
        cols.extend(cpu_tools.iter().map(|t| {
            r.cells
                .iter()
                .find(|c| c.tool == t.id)
                .and_then(|c| c.cpu_s_per_gb)
                .map_or_else(|| "-".into(), sig3)
        }));
        let _ = writeln!(s, "| {} |", cols.join(" | "));
    }
    let mut reasons: Vec<(String, String, usize)> = Vec::new();
    for r in runs.iter().filter(|r| !r.ok) {
        let why = if r.note.is_empty() { "unknown" } else { r.note.as_str() };
        match reasons.iter_mut().find(|(t, w, _)| *t == r.tool && w == why) {
            Some(e) => e.2 += 1,
            None => reasons.push((r.tool.clone(), why.to_string(), 1)),
        }
    }
    if !reasons.is_empty() {
        s.push('\n');
    }
    for (t, why, n) in &reasons {
        let _ = writeln!(s, "- {} failed {n} {what} run(s): {why}", tool_label(tools, t));
    }
    s
}

/// The splice part of bench.json: `"splice_runs": [...], "splice_summary":
/// [...]` (two members, no surrounding braces, no trailing comma).
fn render_splice_json(rows: &[SpliceRow], runs: &[SpliceRun]) -> String {
    render_rate_json("splice", rows, runs, SPLICE_RATIOS)
}

/// `"NAME_runs": [...], "NAME_summary": [...]` for rate rows and their runs,
/// the summary's ratios from `ratios` (see [`ratios_json`]).
fn render_rate_json(name: &str, rows: &[SpliceRow], runs: &[SpliceRun], ratios: &[(&str, &str)]) -> String {
    let mut s = format!("  \"{name}_runs\": [\n");
    let lines: Vec<String> = runs
        .iter()
        .map(|r| {
            format!(
                "    {{\"round\": {}, \"tool\": {}, \"path\": {}, \"af\": {}, \"ok\": {}, \"count\": {}, \
                 \"secs\": {}, \"rate\": {}, \"unit\": {}, \"cpu_s\": {}, \"note\": {}}}",
                r.round,
                json_str(&r.tool),
                json_str(r.path.id()),
                r.af,
                r.ok,
                r.count,
                json_num(Some(r.secs)),
                json_num(r.ok.then(|| r.rate())),
                json_str(r.path.unit()),
                json_num(r.cpu_s),
                json_str(&r.note)
            )
        })
        .collect();
    s.push_str(&lines.join(",\n"));
    let _ = write!(s, "\n  ],\n  \"{name}_summary\": [\n");
    let mut lines = Vec::new();
    for r in rows {
        for c in &r.cells {
            let (m, lo, hi) = c.gbps.map_or((None, None, None), |(m, lo, hi)| (Some(m), Some(lo), Some(hi)));
            let ratios = ratios_json(ratios, c.tool, &r.cells);
            lines.push(format!(
                "    {{\"path\": {}, \"af\": {}, \"tool\": {}, \"unit\": {}, \"runs\": {}, \"ok\": {}, \
                 \"median\": {}, \"min\": {}, \"max\": {}, \"ratios\": {{{}}}}}",
                json_str(r.path.id()),
                r.af,
                json_str(c.tool),
                json_str(r.path.unit()),
                c.runs,
                c.ok,
                json_num(m),
                json_num(lo),
                json_num(hi),
                ratios
            ));
        }
    }
    s.push_str(&lines.join(",\n"));
    s.push_str("\n  ]");
    s
}

// ---- eBPF section -------------------------------------------------------------

/// The tool id of pasta-rs started with `--ebpf --ebpf-cgroup CG` in the
/// eBPF section (ebpf.tsv, ebpf-mem.tsv, ebpf-fds.tsv, bench.json).
const EBPF_OURS: &str = "pasta-rs-ebpf";

/// The eBPF section's tools, in column order: pasta-rs without `--ebpf`
/// (splice), with it, both as root of the initial user namespace, and the
/// [`LOOPBACK`] ceiling.
const EBPF_TOOLS: &[Tool] = &[
    Tool { id: OURS, label: "pasta-rs splice", peer: false },
    Tool { id: EBPF_OURS, label: "pasta-rs --ebpf", peer: false },
    LOOPBACK,
];

/// The ratios of the eBPF table: (numerator, denominator) tool ids.
const EBPF_RATIOS: &[(&str, &str)] = &[(EBPF_OURS, OURS), ("loopback", OURS)];

/// Rate runs per eBPF session (lab-bench.sh's EBPF_PATHS); each session
/// also runs one stalled reader.
const EBPF_RUNS_PER_SESSION: u64 = 6;

/// Limits of lab-bench.sh's eBPF section, seconds: a stalled-reader run
/// (client limit, server grace and start), and a `-t all -u all` count
/// (forwarder start and stop, the TIME_WAIT wait, FDS_SETTLE, the `ss`
/// listings).
const EBPF_STALL_LIMIT_S: u64 = 60 + 10 + 5;
const EBPF_FDS_LIMIT_S: u64 = 21 + 70 + 60 + 30;

fn ebpf_tools() -> Vec<&'static Tool> {
    EBPF_TOOLS.iter().collect()
}

/// What pasta-rs `--ebpf` logged about its programs at one start (a line of
/// ebpf-status.tsv).
#[derive(Clone, Debug, PartialEq)]
struct EbpfStatus {
    /// Round, from 1.
    round: u32,
    /// `loaded` ("eBPF programs loaded"), `off` ("eBPF off, using splice():
    /// WHY") or `unknown` (neither, or pasta did not start).
    state: String,
    /// The log line (`loaded`), WHY (`off`) or what happened (`unknown`).
    detail: String,
}

/// One stalled-reader run (a line of ebpf-mem.tsv): a client writing to a
/// server that read 1 MiB and stopped (`rr.py stall-client`).
#[derive(Clone, Debug, PartialEq)]
struct StallRun {
    /// Round, from 1.
    round: u32,
    /// Tool id ([`EBPF_TOOLS`]).
    tool: String,
    /// The client ran and reported.
    ok: bool,
    /// Bytes the client wrote before no write fitted for 2 s, or until the
    /// cap (256 MiB) when it never blocked.
    sent: u64,
    /// The client blocked (false: it reached the cap).
    blocked: bool,
    /// Seconds until the last write that fitted (or the cap).
    secs: f64,
    /// Kernel TCP memory before connecting and once blocked, bytes
    /// (/proc/net/sockstat "TCP: mem" pages x page size, machine-wide).
    tcp_mem: (u64, u64),
    /// MemAvailable before connecting and once blocked, bytes (machine-wide).
    avail: (u64, u64),
    /// Why it failed; empty if none.
    note: String,
}

impl StallRun {
    /// Growth of kernel TCP memory while the client filled the path, bytes
    /// (negative if it shrank).
    fn tcp_mem_growth(&self) -> f64 {
        self.tcp_mem.1 as f64 - self.tcp_mem.0 as f64
    }
    /// Drop of MemAvailable over the same time, bytes (negative if it grew).
    fn avail_drop(&self) -> f64 {
        self.avail.0 as f64 - self.avail.1 as f64
    }
}

/// What pasta-rs held with `-t all -u all` (a line of ebpf-fds.tsv).
#[derive(Clone, Debug, PartialEq)]
struct FdCount {
    /// Tool id: pasta-rs or pasta-rs-ebpf.
    tool: String,
    /// pasta started and was counted.
    ok: bool,
    /// Entries of /proc/PID/fd.
    fds: u64,
    /// Those that are sockets.
    sockets: u64,
    /// TCP listeners `ss -tlnp` lists for pasta.
    tcp_listen: u64,
    /// UDP sockets `ss -ualnp` lists for pasta.
    udp: u64,
    /// pasta's fd limit (RLIMIT_NOFILE): raised to 2^20 where the bench may
    /// (CAP_SYS_RESOURCE), else the machine's hard limit.
    nofile: u64,
    /// Ports `all` covered (those outside the ephemeral range pasta read):
    /// 37303 with the kernel's default range, fewer when the fd limit could
    /// not be raised (see lab-bench.sh's FDS_PORT_RANGE).
    ports: u64,
    /// Why it failed, or a remark; empty if none.
    note: String,
}

/// Everything the eBPF section measured.
#[derive(Debug, Default, PartialEq)]
struct EbpfPart {
    /// Rate runs (ebpf.tsv, the format of splice.tsv).
    runs: Vec<SpliceRun>,
    /// One per pasta-rs `--ebpf` start.
    status: Vec<EbpfStatus>,
    /// Stalled-reader runs.
    stall: Vec<StallRun>,
    /// `-t all -u all` counts.
    fds: Vec<FdCount>,
}

/// The tab-separated fields of each non-empty line of `text`, which must
/// number `want`.
///
/// # Errors
/// A line with another field count, naming `file` and the line.
fn tsv_lines<'a>(file: &str, text: &'a str, want: usize) -> Result<Vec<(usize, Vec<&'a str>)>> {
    let mut v = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != want {
            bail!("{file} line {}: {} fields, want {want}: {line:?}", i + 1, f.len());
        }
        v.push((i + 1, f));
    }
    Ok(v)
}

/// `v` parsed as `T`, or an error naming `file`, the line `n` and `what`.
fn tsv_field<T: std::str::FromStr>(file: &str, n: usize, what: &str, v: &str) -> Result<T> {
    v.parse().map_err(|_| anyhow::anyhow!("{file} line {n}: bad {what} '{v}'"))
}

/// A tsv status field: `ok` or `fail`.
///
/// # Errors
/// Anything else, naming `file` and the line `n`.
fn tsv_ok(file: &str, n: usize, v: &str) -> Result<bool> {
    match v {
        "ok" => Ok(true),
        "fail" => Ok(false),
        s => bail!("{file} line {n}: bad status '{s}'"),
    }
}

/// `note` of a tsv line: "-" is none.
fn tsv_note(note: &str) -> String {
    if note == "-" { String::new() } else { note.to_string() }
}

/// Parse ebpf-status.tsv: `round tool state detail` per line, tool
/// pasta-rs-ebpf, state `loaded|off|unknown`.
///
/// # Errors
/// A malformed line, naming it.
fn parse_ebpf_status(text: &str) -> Result<Vec<EbpfStatus>> {
    const F: &str = "ebpf-status.tsv";
    tsv_lines(F, text, 4)?
        .into_iter()
        .map(|(n, f)| {
            if !matches!(f[2], "loaded" | "off" | "unknown") {
                bail!("{F} line {n}: bad state '{}'", f[2]);
            }
            Ok(EbpfStatus { round: tsv_field(F, n, "round", f[0])?, state: f[2].into(), detail: tsv_note(f[3]) })
        })
        .collect()
}

/// Parse ebpf-mem.tsv: `round tool status sent blocked secs tcp_mem0
/// tcp_mem1 avail0 avail1 note` per line, status `ok|fail`; on `fail` the
/// seven numbers are `-`.
///
/// # Errors
/// A malformed line, naming it.
fn parse_stall_runs(text: &str) -> Result<Vec<StallRun>> {
    const F: &str = "ebpf-mem.tsv";
    tsv_lines(F, text, 11)?
        .into_iter()
        .map(|(n, f)| {
            let ok = tsv_ok(F, n, f[2])?;
            let num = |i: usize, what: &str| if ok { tsv_field::<u64>(F, n, what, f[i]) } else { Ok(0) };
            let secs: f64 = if ok { tsv_field(F, n, "secs", f[5])? } else { 0.0 };
            if !secs.is_finite() || secs < 0.0 {
                bail!("{F} line {n}: bad secs '{}'", f[5]);
            }
            Ok(StallRun {
                round: tsv_field(F, n, "round", f[0])?,
                tool: f[1].to_string(),
                ok,
                sent: num(3, "sent")?,
                blocked: match (ok, f[4]) {
                    (false, _) | (true, "0") => false,
                    (true, "1") => true,
                    (true, b) => bail!("{F} line {n}: bad blocked '{b}'"),
                },
                secs,
                tcp_mem: (num(6, "tcp_mem0")?, num(7, "tcp_mem1")?),
                avail: (num(8, "avail0")?, num(9, "avail1")?),
                note: tsv_note(f[10]),
            })
        })
        .collect()
}

/// Parse ebpf-fds.tsv: `tool status fds sockets tcp_listen udp nofile
/// ports note` per line, status `ok|fail`; on `fail` the first four counts
/// are `-`.
///
/// # Errors
/// A malformed line, naming it.
fn parse_fd_counts(text: &str) -> Result<Vec<FdCount>> {
    const F: &str = "ebpf-fds.tsv";
    tsv_lines(F, text, 9)?
        .into_iter()
        .map(|(n, f)| {
            let ok = tsv_ok(F, n, f[1])?;
            let num = |i: usize, what: &str| if ok { tsv_field::<u64>(F, n, what, f[i]) } else { Ok(0) };
            Ok(FdCount {
                tool: f[0].to_string(),
                ok,
                fds: num(2, "fds")?,
                sockets: num(3, "sockets")?,
                tcp_listen: num(4, "tcp_listen")?,
                udp: num(5, "udp")?,
                nofile: tsv_field(F, n, "nofile", f[6])?,
                ports: tsv_field(F, n, "ports", f[7])?,
                note: tsv_note(f[8]),
            })
        })
        .collect()
}

/// Read the eBPF section's files from `out` (missing files: nothing
/// measured), and remove the section's cgroup if the lab was killed before
/// it could (`out/ebpf-cgroup` names it; only a `passt-bench.*` directory).
///
/// # Errors
/// A file that exists but does not parse.
fn read_ebpf_part(out: &std::path::Path) -> Result<EbpfPart> {
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    let cg = read("ebpf-cgroup");
    let cg = std::path::Path::new(cg.trim());
    if cg.file_name().is_some_and(|n| n.to_string_lossy().starts_with("passt-bench.")) {
        match std::fs::remove_dir(cg) {
            Ok(()) => eprintln!("xtask: bench: removed the eBPF section's cgroup {}", cg.display()),
            Err(e) => eprintln!("xtask: bench: cannot remove the eBPF section's cgroup {}: {e}", cg.display()),
        }
    }
    Ok(EbpfPart {
        runs: parse_rate_runs("ebpf.tsv", &read("ebpf.tsv"))?,
        status: parse_ebpf_status(&read("ebpf-status.tsv"))?,
        stall: parse_stall_runs(&read("ebpf-mem.tsv"))?,
        fds: parse_fd_counts(&read("ebpf-fds.tsv"))?,
    })
}

/// One line on pasta-rs `--ebpf`'s programs over all its starts: "loaded in
/// N of M starts", then each other outcome with its count and reason.
fn ebpf_status_phrase(status: &[EbpfStatus]) -> String {
    if status.is_empty() {
        return "never started".into();
    }
    let loaded = status.iter().filter(|s| s.state == "loaded").count();
    let mut s = format!("eBPF programs loaded in {loaded} of {} start(s)", status.len());
    let mut others: Vec<(&str, &str, usize)> = Vec::new();
    for st in status.iter().filter(|s| s.state != "loaded") {
        match others.iter_mut().find(|(a, d, _)| *a == st.state && *d == st.detail) {
            Some(e) => e.2 += 1,
            None => others.push((&st.state, &st.detail, 1)),
        }
    }
    for (state, detail, n) in others {
        let _ = write!(s, "; {state} in {n}: {detail}");
    }
    s
}

/// `bytes` in MiB with three significant digits.
fn mib(bytes: f64) -> String {
    sig3(bytes / f64::from(1u32 << 20))
}

/// A [`spread`] over `ok` runs in MiB: "median (min to max)" (the values
/// may be negative), the median alone for one run, "-" for none.
fn mib_cell(x: Option<(f64, f64, f64)>, ok: usize) -> String {
    match x {
        None => "-".into(),
        Some((m, lo, hi)) if ok > 1 => format!("{} ({} to {})", mib(m), mib(lo), mib(hi)),
        Some((m, _, _)) => mib(m),
    }
}

/// One row of the stalled-reader table per tool of [`EBPF_TOOLS`] that ran.
#[derive(Debug, PartialEq)]
struct StallRow {
    /// Tool id.
    tool: &'static str,
    /// Runs attempted, succeeded, and blocked before the cap.
    runs: usize,
    ok: usize,
    blocked: usize,
    /// Median, minimum, maximum over the successful runs: bytes sent, TCP
    /// memory growth (bytes), MemAvailable drop (bytes).
    sent: Option<(f64, f64, f64)>,
    tcp_mem_growth: Option<(f64, f64, f64)>,
    avail_drop: Option<(f64, f64, f64)>,
}

fn summarise_stall(runs: &[StallRun]) -> Vec<StallRow> {
    EBPF_TOOLS
        .iter()
        .filter_map(|t| {
            let mine: Vec<&StallRun> = runs.iter().filter(|r| r.tool == t.id).collect();
            let good: Vec<&StallRun> = mine.iter().copied().filter(|r| r.ok).collect();
            let of = |f: fn(&StallRun) -> f64| spread(&good.iter().map(|r| f(r)).collect::<Vec<_>>());
            (!mine.is_empty()).then(|| StallRow {
                tool: t.id,
                runs: mine.len(),
                ok: good.len(),
                blocked: good.iter().filter(|r| r.blocked).count(),
                sent: of(|r| r.sent as f64),
                tcp_mem_growth: of(StallRun::tcp_mem_growth),
                avail_drop: of(StallRun::avail_drop),
            })
        })
        .collect()
}

/// The eBPF section of the report: heading, what pasta logged, the rate
/// table, the stalled-reader table and the `-t all -u all` counts.
fn render_ebpf_markdown(rows: &[SpliceRow], stall: &[StallRow], o: &Opts, part: &EbpfPart) -> String {
    let tools = ebpf_tools();
    let mut s = String::new();
    let _ = writeln!(s, "## eBPF section: pasta-rs with and without --ebpf beside plain loopback\n");
    let _ = writeln!(
        s,
        "pasta-rs's spliced TCP path (`-t`/`-T`, host loopback <-> namespace loopback) \
         without `--ebpf` (splice) and with `--ebpf --ebpf-cgroup CG`, both started as root \
         of the initial user namespace, clients and servers in the cgroup CG the bench \
         created, IPv4 servers bound to 0.0.0.0 (not dual-stack); loopback: the same client and server over `lo` \
         of one namespace, no relay. {} round(s) x {} s, tools round-robin per round. Cells: \
         median (min-max) of the successful runs. Ratios: of the medians.\n",
        o.rounds, o.secs
    );
    let _ = writeln!(
        s,
        "- pasta-rs --ebpf: {}\n",
        ebpf_status_phrase(&part.status)
    );
    s.push_str(&render_rate_table(
        rows,
        &tools,
        EBPF_RATIOS,
        &part.runs,
        "eBPF section",
        false,
    ));
    let _ = writeln!(s, "\n### Stalled reader\n");
    let _ = writeln!(
        s,
        "A client writes 64 KiB at a time through `-t` to a server that reads 1 MiB and \
         stops; the client counts as blocked when no write fits for 2 s, and stops at 256 MiB \
         if it never blocks. Kernel TCP memory (/proc/net/sockstat) and MemAvailable are \
         machine-wide, read before connecting and once blocked: other load on the machine \
         shows in them. MiB: median (min to max).\n"
    );
    let _ = writeln!(s, "| tool | blocked | sent until blocked or the cap, MiB | kernel TCP memory growth, MiB | MemAvailable drop, MiB |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for r in stall {
        let mut blocked = format!("{} of {}", r.blocked, r.ok);
        if r.ok < r.runs {
            let _ = write!(blocked, ", {}/{} fail", r.runs - r.ok, r.runs);
        }
        let _ = writeln!(
            s,
            "| {} | {blocked} | {} | {} | {} |",
            tool_label(&tools, r.tool),
            mib_cell(r.sent, r.ok),
            mib_cell(r.tcp_mem_growth, r.ok),
            mib_cell(r.avail_drop, r.ok)
        );
    }
    if part.stall.iter().any(|r| !r.ok) {
        s.push('\n');
    }
    for r in part.stall.iter().filter(|r| !r.ok) {
        let _ = writeln!(s, "- {} stalled reader, round {}: failed: {}", tool_label(&tools, &r.tool), r.round, r.note);
    }
    let _ = writeln!(s, "\n### -t all -u all: what pasta-rs holds\n");
    let _ = writeln!(
        s,
        "pasta-rs started with `-t all -u all`, counted once its fd count held still: \
         /proc/PID/fd entries, the sockets among them, and its TCP listeners and UDP sockets \
         as `ss -p` lists them. Ports: how many `all` covered (every port outside the \
         ephemeral range: the kernel's default 32768-60999 where the bench could raise the fd \
         limit, else a range that leaves room under the machine's hard limit).\n"
    );
    let _ = writeln!(s, "| tool | ports | fds | sockets | TCP listeners | UDP sockets | fd limit |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for c in &part.fds {
        let label = tool_label(&tools, &c.tool);
        if c.ok {
            let _ = writeln!(
                s,
                "| {label} | {} | {} | {} | {} | {} | {} |",
                c.ports, c.fds, c.sockets, c.tcp_listen, c.udp, c.nofile
            );
        } else {
            let _ = writeln!(s, "| {label} | {} | fail | - | - | - | {} |", c.ports, c.nofile);
        }
    }
    if part.fds.iter().any(|c| !c.note.is_empty()) {
        s.push('\n');
    }
    for c in part.fds.iter().filter(|c| !c.note.is_empty()) {
        let _ = writeln!(s, "- {} -t all -u all: {}", tool_label(&tools, &c.tool), c.note);
    }
    s
}

/// The eBPF section of bench.json: `ebpf_runs`, `ebpf_summary` (as the
/// splice part's), `ebpf_status`, `ebpf_stall` (runs, bytes),
/// `ebpf_stall_summary` and `ebpf_fds` (members, no surrounding braces, no
/// trailing comma).
fn render_ebpf_json(rows: &[SpliceRow], stall: &[StallRow], part: &EbpfPart) -> String {
    let mut s = render_rate_json("ebpf", rows, &part.runs, EBPF_RATIOS);
    let join = |v: Vec<String>| v.join(",\n");
    let status: Vec<String> = part
        .status
        .iter()
        .map(|x| {
            format!("    {{\"round\": {}, \"state\": {}, \"detail\": {}}}", x.round, json_str(&x.state), json_str(&x.detail))
        })
        .collect();
    let _ = write!(s, ",\n  \"ebpf_status\": [\n{}\n  ]", join(status));
    let num = |ok: bool, x: u64| if ok { x.to_string() } else { "null".into() };
    let runs: Vec<String> = part
        .stall
        .iter()
        .map(|r| {
            format!(
                "    {{\"round\": {}, \"tool\": {}, \"ok\": {}, \"sent\": {}, \"blocked\": {}, \"secs\": {}, \
                 \"tcp_mem_before\": {}, \"tcp_mem_after\": {}, \"mem_available_before\": {}, \
                 \"mem_available_after\": {}, \"note\": {}}}",
                r.round,
                json_str(&r.tool),
                r.ok,
                num(r.ok, r.sent),
                if r.ok { r.blocked.to_string() } else { "null".into() },
                json_num(r.ok.then_some(r.secs)),
                num(r.ok, r.tcp_mem.0),
                num(r.ok, r.tcp_mem.1),
                num(r.ok, r.avail.0),
                num(r.ok, r.avail.1),
                json_str(&r.note)
            )
        })
        .collect();
    let _ = write!(s, ",\n  \"ebpf_stall\": [\n{}\n  ]", join(runs));
    let trio = |x: Option<(f64, f64, f64)>| {
        let (m, lo, hi) = x.map_or((None, None, None), |(m, lo, hi)| (Some(m), Some(lo), Some(hi)));
        format!("{{\"median\": {}, \"min\": {}, \"max\": {}}}", json_num(m), json_num(lo), json_num(hi))
    };
    let rows: Vec<String> = stall
        .iter()
        .map(|r| {
            format!(
                "    {{\"tool\": {}, \"runs\": {}, \"ok\": {}, \"blocked\": {}, \"sent\": {}, \
                 \"tcp_mem_growth\": {}, \"mem_available_drop\": {}}}",
                json_str(r.tool),
                r.runs,
                r.ok,
                r.blocked,
                trio(r.sent),
                trio(r.tcp_mem_growth),
                trio(r.avail_drop)
            )
        })
        .collect();
    let _ = write!(s, ",\n  \"ebpf_stall_summary\": [\n{}\n  ]", join(rows));
    let fds: Vec<String> = part
        .fds
        .iter()
        .map(|c| {
            format!(
                "    {{\"tool\": {}, \"ok\": {}, \"fds\": {}, \"sockets\": {}, \"tcp_listen\": {}, \"udp\": {}, \"nofile\": {}, \"ports\": {}, \"note\": {}}}",
                json_str(&c.tool),
                c.ok,
                num(c.ok, c.fds),
                num(c.ok, c.sockets),
                num(c.ok, c.tcp_listen),
                num(c.ok, c.udp),
                c.nofile,
                c.ports,
                json_str(&c.note)
            )
        })
        .collect();
    let _ = write!(s, ",\n  \"ebpf_fds\": [\n{}\n  ]", join(fds));
    s
}

// ---- guest part ---------------------------------------------------------------

/// The real-guest harness, relative to the workspace root (as `xtask test`
/// finds it).
const GUESTLAB: &str = "../shared/guest/guestlab.sh";

/// Debian packages the guest part needs: guestlab.sh's HOST_PKGS, and
/// `passt` for Debian's `/usr/bin/passt`.
const GUEST_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "socat",
    "iperf3",
    "dnsmasq-base",
    "cpio",
    "iproute2",
    "util-linux",
    "procps",
    "passt",
];

/// One passt-compatible back-end the guest part boots a guest through.
#[derive(Debug, PartialEq, Eq)]
struct GuestTool {
    /// Name in `--guest-tools`, guest.tsv and bench.json.
    id: &'static str,
    /// Column heading in the table.
    label: &'static str,
    /// guestlab.sh `--mode`: `stream` (QEMU `-netdev stream`, passt's
    /// length-prefixed frames on a UNIX socket) or `vhost-user`.
    mode: &'static str,
}

/// Every guest back-end, in column order.
const GUEST_TOOLS: &[GuestTool] = &[
    GuestTool { id: "passt-rs", label: "passt-rs stream", mode: "stream" },
    GuestTool { id: "debian-passt", label: "Debian passt stream", mode: "stream" },
    GuestTool { id: "passt-rs-vu", label: "passt-rs vhost-user", mode: "vhost-user" },
];

/// The ratios of the guest table: (numerator, denominator) tool ids.
const GUEST_RATIOS: &[(&str, &str)] = &[("passt-rs", "debian-passt"), ("passt-rs-vu", "passt-rs")];

fn guest_label(id: &str) -> &str {
    GUEST_TOOLS.iter().find(|t| t.id == id).map_or(id, |t| t.label)
}

/// The guestlab check that measures direction `dir`: the guest sends
/// (`iperf3 -c`, "iperf3_out") or receives (`iperf3 -c -R`, "iperf3_in").
fn guest_check(dir: Dir) -> &'static str {
    match dir {
        Dir::Send => "iperf3_out",
        Dir::Recv => "iperf3_in",
    }
}

fn guest_dir_label(dir: Dir) -> &'static str {
    match dir {
        Dir::Send => "guest sends (iperf3_out)",
        Dir::Recv => "guest receives (iperf3_in)",
    }
}

/// Time limits of one guestlab run, seconds.
#[derive(Debug, PartialEq, Eq)]
struct GuestTimeouts {
    /// guestlab `--guest-timeout`: QEMU's limit.
    guest: u64,
    /// guestlab `--timeout`: its namespaces, QEMU and the judging.
    run: u64,
    /// Our `timeout` around guestlab.sh (then 10 s to SIGKILL).
    outer: u64,
}

/// Limits for iperf3 runs of `secs` per direction. A whole run takes about
/// 35 s + 2 x `secs` under TCG with passt-rs and about 80 s + 2 x `secs`
/// with Debian's passt (the guest waits for an inbound UDP/IPv6 probe that
/// never arrives) on an idle 2-CPU host; the guest's own iperf3 clients
/// stop at `secs` + 30 s each. QEMU gets 240 s + 2 x `secs` (room for a
/// loaded host), guestlab 30 s more, we 20 s more.
fn guest_timeouts(secs: u32) -> GuestTimeouts {
    let guest = 240 + 2 * u64::from(secs);
    GuestTimeouts { guest, run: guest + 30, outer: guest + 50 }
}

/// Build guestlab's kernel and initramfs if needed and cache its KVM probe
/// (`guestlab.sh probe-kvm`; downloads Debian packages on first use), so
/// that the timed runs do not. Returns environment lines for the report:
/// guestlab's accelerator verdict, QEMU's version, the guest kernel and
/// Debian's passt version.
///
/// # Errors
/// guestlab.sh failing (its stderr is passed through).
fn prepare_guestlab(guestlab: &std::path::Path, root: &std::path::Path) -> Result<String> {
    let mut c = Command::new("bash");
    c.arg(guestlab).arg("probe-kvm").current_dir(root).stderr(Stdio::inherit());
    eprintln!("xtask: $ {}", show(&c));
    let o = c.output().with_context(|| format!("cannot start {}", show(&c)))?;
    if !o.status.success() {
        bail!("{} failed ({}): guestlab could not build its guest", show(&c), o.status);
    }
    let verdict = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let first_line = |cmd: &mut Command| -> String {
        cmd.output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(|l| l.trim().to_string()))
            .unwrap_or_else(|| "unknown".into())
    };
    let qemu = first_line(Command::new("qemu-system-x86_64").arg("--version"));
    let passt = first_line(Command::new("dpkg-query").args(["-W", "-f", "${Version}\n", "passt"]));
    let lab_dir = std::env::var_os("GUESTLAB_DIR")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("/tmp/guestlab"), PathBuf::from);
    let kernel = std::fs::read_to_string(lab_dir.join("out/kernel-version"))
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_string());
    Ok(format!(
        "guestlab accelerator probe: {verdict}\nQEMU: {qemu}\nguest kernel: {kernel}\nDebian passt: {passt}\n"
    ))
}

/// One guestlab check line: `CHECK <name> <status> <detail>`.
#[derive(Debug, PartialEq)]
struct GuestCheck {
    /// Check name, e.g. `iperf3_out`, `boot`, `backend_start`.
    name: String,
    /// `PASS`, `FAIL`, `SKIP`, or one of those with `(optional)`.
    status: String,
    /// The rest of the line, trimmed (may be empty).
    detail: String,
}

/// guestlab's `SUMMARY backend=B mode=M accel=A pass=P fail=F
/// optional/skipped=O run=DIR` line.
#[derive(Debug, PartialEq)]
struct GuestSummary {
    /// `tcg` or `kvm`.
    accel: String,
    /// Checks passed.
    pass: u32,
    /// Checks failed (not counting optional or skipped ones).
    fail: u32,
    /// Optional checks that failed plus skipped ones.
    other: u32,
    /// The run directory (summary.txt, backend.log, ...).
    run_dir: String,
}

/// What a guestlab run printed on stdout.
#[derive(Debug, PartialEq, Default)]
struct GuestlabOutput {
    /// Every `CHECK` line, in order.
    checks: Vec<GuestCheck>,
    /// The `SUMMARY` line, if there was a well-formed one.
    summary: Option<GuestSummary>,
}

impl GuestlabOutput {
    fn check(&self, name: &str) -> Option<&GuestCheck> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Parse the stdout of `guestlab.sh run` (its summary.txt): `CHECK` lines
/// (`printf 'CHECK %-14s %-14s %s'`: name, status, detail) and the
/// `SUMMARY` line; other lines (`INFO`, ...) are ignored, so are `CHECK`
/// lines without a status and a `SUMMARY` line with a missing or
/// non-numeric `accel`, `pass`, `fail`, `optional/skipped` or `run` field.
/// `run=` takes the rest of the line (a path may hold spaces).
fn parse_guestlab(text: &str) -> GuestlabOutput {
    let mut out = GuestlabOutput::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("CHECK ") {
            let rest = rest.trim_start();
            let (name, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let rest = rest.trim_start();
            let (status, detail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            if !name.is_empty() && !status.is_empty() {
                out.checks.push(GuestCheck {
                    name: name.to_string(),
                    status: status.to_string(),
                    detail: detail.trim().to_string(),
                });
            }
        } else if let Some(rest) = line.strip_prefix("SUMMARY ") {
            let (fields, run_dir) = match rest.split_once(" run=") {
                Some((f, r)) => (f, r.trim()),
                None => continue,
            };
            let field = |k: &str| fields.split_whitespace().find_map(|w| w.strip_prefix(k));
            let num = |k: &str| field(k).and_then(|v| v.parse::<u32>().ok());
            if let (Some(accel), Some(pass), Some(fail), Some(other)) =
                (field("accel="), num("pass="), num("fail="), num("optional/skipped="))
            {
                if !run_dir.is_empty() {
                    out.summary = Some(GuestSummary {
                        accel: accel.to_string(),
                        pass,
                        fail,
                        other,
                        run_dir: run_dir.to_string(),
                    });
                }
            }
        }
    }
    out
}

/// `s` on one line (tabs and line breaks become spaces) and at most `max`
/// characters, with "..." when cut.
fn clip(s: &str, max: usize) -> String {
    let one: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let one = one.trim();
    if one.chars().count() <= max {
        return one.to_string();
    }
    let mut t: String = one.chars().take(max.saturating_sub(3)).collect();
    t.push_str("...");
    t
}

/// `s` on one line (as [`clip`]) and at most `max` characters, keeping its
/// start and its end (where QEMU's and passt's errors say what went wrong)
/// with " ... " between them when cut.
fn clip_middle(s: &str, max: usize) -> String {
    let one = clip(s, usize::MAX);
    let n = one.chars().count();
    if n <= max {
        return one;
    }
    let keep = max.saturating_sub(5);
    let tail = keep / 3;
    let head: String = one.chars().take(keep - tail).collect();
    let end: String = one.chars().skip(n - tail).collect();
    format!("{} ... {}", head.trim_end(), end.trim_start())
}

/// Longest failure reason kept, characters.
const GUEST_NOTE_MAX: usize = 320;
/// Longest part of a reason taken from the cause's detail (QEMU's errors
/// repeat long socket paths) and from the back-end log, characters.
const GUEST_CAUSE_MAX: usize = 180;
const GUEST_TAIL_MAX: usize = 100;

/// The outcome of direction `dir` of one guestlab run: Ok(receiver Mbit/s)
/// from a `CHECK iperf3_out|iperf3_in PASS mbps=N secs=S` line (N a
/// non-negative decimal; 0 counts as a failure), or Err(why). The reason is
/// the first failed check among `backend_start`, `run_timeout` and `boot`
/// (the cause, when the iperf3 check only failed because of it; its detail
/// cut to [`GUEST_CAUSE_MAX`]), followed by `backend_tail` (the back-end
/// log's last line, cut to [`GUEST_TAIL_MAX`]) when given; otherwise
/// the iperf3 check's own status and detail; `fallback` when guestlab
/// printed no line for the check. The run directory (from the SUMMARY
/// line) reads `RUN` in reasons, so that runs failing alike give the same
/// reason.
fn guest_outcome(out: &GuestlabOutput, dir: Dir, backend_tail: Option<&str>, fallback: &str) -> Result<f64, String> {
    let name = guest_check(dir);
    let c = out.check(name);
    if let Some(c) = c.filter(|c| c.status == "PASS") {
        let mbps = c.detail.split_whitespace().find_map(|w| w.strip_prefix("mbps="));
        return match mbps.map(str::parse::<f64>) {
            Some(Ok(v)) if v.is_finite() && v > 0.0 => Ok(v),
            Some(Ok(0.0)) => Err(format!("{name} moved no data: {}", c.detail)),
            _ => Err(clip(&format!("{name} PASS without a valid mbps=: {}", c.detail), GUEST_NOTE_MAX)),
        };
    }
    let cause = ["backend_start", "run_timeout", "boot"]
        .iter()
        .find_map(|n| out.check(n).filter(|c| c.status.starts_with("FAIL")));
    let generic = |detail: &str| match &out.summary {
        Some(sm) => detail.replace(sm.run_dir.as_str(), "RUN"),
        None => detail.to_string(),
    };
    let why = match (cause, c) {
        (Some(k), _) => {
            let mut w = format!("{} FAIL: {}", k.name, clip_middle(&generic(&k.detail), GUEST_CAUSE_MAX));
            if let Some(t) = backend_tail.map(str::trim).filter(|t| !t.is_empty()) {
                let _ = write!(w, "; back-end log: {}", clip(t, GUEST_TAIL_MAX));
            }
            w
        }
        (None, Some(c)) => format!("{} {}: {}", c.name, c.status, generic(&c.detail)),
        (None, None) => fallback.to_string(),
    };
    Err(clip(&why, GUEST_NOTE_MAX))
}

/// One direction of one guestlab run (a line of guest.tsv).
#[derive(Clone, Debug, PartialEq)]
struct GuestRun {
    /// Round, from 1.
    round: u32,
    /// Back-end id (see [`GUEST_TOOLS`]).
    tool: String,
    /// `Send`: the guest sends (iperf3_out); `Recv`: it receives (iperf3_in).
    dir: Dir,
    /// guestlab reported a throughput for this direction.
    ok: bool,
    /// Receiver Mbit/s (10^6 bit/s) as iperf3 in the guest reported it; 0 if failed.
    mbps: f64,
    /// QEMU accelerator from guestlab's SUMMARY (`tcg`, `kvm`); empty if unknown.
    accel: String,
    /// guestlab checks passed and counted (pass, pass + fail + optional/skipped), if known.
    checks: Option<(u32, u32)>,
    /// Why it failed; empty if it did not.
    note: String,
}

/// The two [`GuestRun`]s (guest sends, guest receives) of one guestlab run
/// of `tool` in `round`, from its parsed output (see [`guest_outcome`] for
/// `backend_tail` and `fallback`).
fn guest_runs_of(round: u32, tool: &str, out: &GuestlabOutput, backend_tail: Option<&str>, fallback: &str) -> [GuestRun; 2] {
    let accel = out.summary.as_ref().map_or_else(String::new, |s| s.accel.clone());
    let checks = out.summary.as_ref().map(|s| (s.pass, s.pass.saturating_add(s.fail).saturating_add(s.other)));
    [Dir::Send, Dir::Recv].map(|dir| {
        let (ok, mbps, note) = match guest_outcome(out, dir, backend_tail, fallback) {
            Ok(m) => (true, m, String::new()),
            Err(why) => (false, 0.0, why),
        };
        GuestRun { round, tool: tool.to_string(), dir, ok, mbps, accel: accel.clone(), checks, note }
    })
}

/// guest.tsv: one line per [`GuestRun`], nine tab-separated fields `round
/// tool mode dir status mbps accel checks note`: mode `stream|vhost-user`,
/// dir `send|recv`, status `ok|fail`, mbps a decimal (0 if failed), accel
/// `tcg|kvm` or `-`, checks `P/N` (guestlab checks passed / counted) or
/// `-`, note `-` for none (notes hold no tabs, see [`clip`]).
fn guest_tsv(runs: &[GuestRun]) -> String {
    let mut s = String::new();
    for r in runs {
        let mode = GUEST_TOOLS.iter().find(|t| t.id == r.tool).map_or("-", |t| t.mode);
        let dash = |v: &str| if v.is_empty() { "-".to_string() } else { v.to_string() };
        let _ = writeln!(
            s,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.round,
            r.tool,
            mode,
            r.dir.id(),
            if r.ok { "ok" } else { "fail" },
            r.mbps,
            dash(&r.accel),
            r.checks.map_or_else(|| "-".into(), |(p, n)| format!("{p}/{n}")),
            dash(&r.note)
        );
    }
    s
}

/// The order of `n` tools in `round` (from 1): 0..n rotated left by
/// `round - 1`, as lab-bench.sh orders its tools.
fn round_robin(n: usize, round: u32) -> Vec<usize> {
    let shift = (round as usize).saturating_sub(1);
    (0..n).map(|k| (k + shift) % n).collect()
}

/// The last non-empty line of `text`, if any.
fn last_line(text: &str) -> Option<&str> {
    text.lines().rev().map(str::trim).find(|l| !l.is_empty())
}

/// Run the guest part: for each round, every back-end of `bins` in turn
/// (the order rotated by one per round), one `guestlab.sh run --backend BIN
/// --mode MODE --iperf-time SECS` under [`guest_timeouts`]; its summary.txt
/// is copied to `out/raw/guest-rR-TOOL.summary.txt` (guestlab's stdout and
/// stderr to `.log` when it left none), and guest.tsv is rewritten after
/// each run so that a killed bench keeps what it measured.
///
/// # Errors
/// guestlab.sh cannot be started, or guest.tsv cannot be written.
fn run_guest_part(
    o: &Opts,
    guestlab: &std::path::Path,
    root: &std::path::Path,
    bins: &[(&'static GuestTool, PathBuf)],
    out: &std::path::Path,
) -> Result<Vec<GuestRun>> {
    let lim = guest_timeouts(o.secs);
    let tsv = out.join("guest.tsv");
    let raw = out.join("raw");
    let mut runs = Vec::new();
    for round in 1..=o.rounds {
        for i in round_robin(bins.len(), round) {
            let Some((t, bin)) = bins.get(i) else { continue };
            let mut c = Command::new("timeout");
            c.args(["-k", "10", &lim.outer.to_string(), "bash"])
                .arg(guestlab)
                .arg("run")
                .arg("--backend")
                .arg(bin)
                .args(["--mode", t.mode, "--iperf-time", &o.secs.to_string()])
                .args(["--timeout", &lim.run.to_string(), "--guest-timeout", &lim.guest.to_string()])
                .current_dir(root);
            eprintln!("xtask: bench: guest round {round}: {} ({})", t.id, t.label);
            eprintln!("xtask: $ {}", show(&c));
            let t0 = Instant::now();
            let res = c.output().with_context(|| format!("cannot start {}", show(&c)))?;
            let took = t0.elapsed().as_secs_f64();
            let stdout = String::from_utf8_lossy(&res.stdout);
            let stderr = String::from_utf8_lossy(&res.stderr);
            let parsed = parse_guestlab(&stdout);
            let killed = matches!(res.status.code(), Some(124 | 137)) || res.status.code().is_none();
            let fallback = if killed {
                format!("guestlab.sh killed after {took:.0} s (limit {} s)", lim.outer)
            } else {
                format!(
                    "no iperf3 result from guestlab.sh ({}): {}",
                    res.status,
                    last_line(&stderr).unwrap_or("no output")
                )
            };
            let run_dir = parsed.summary.as_ref().map(|s| PathBuf::from(&s.run_dir));
            let backend_log =
                run_dir.as_ref().and_then(|d| std::fs::read_to_string(d.join("backend.log")).ok()).unwrap_or_default();
            let stem = format!("guest-r{round}-{}", t.id);
            let copied = run_dir
                .as_ref()
                .map(|d| std::fs::copy(d.join("summary.txt"), raw.join(format!("{stem}.summary.txt"))).is_ok())
                .unwrap_or(false);
            if !copied {
                let _ = std::fs::write(raw.join(format!("{stem}.log")), format!("{stdout}\n--- stderr ---\n{stderr}"));
            }
            let two = guest_runs_of(round, t.id, &parsed, last_line(&backend_log), &fallback);
            for r in &two {
                let what = if r.ok { format!("{} Mbit/s", sig3(r.mbps)) } else { format!("fail: {}", r.note) };
                eprintln!("xtask: bench: guest round {round}: {} {}: {what}", t.id, guest_check(r.dir));
            }
            eprintln!("xtask: bench: guest round {round}: {} took {took:.0} s", t.id);
            runs.extend(two);
            std::fs::write(&tsv, guest_tsv(&runs)).with_context(|| format!("cannot write {}", tsv.display()))?;
        }
    }
    Ok(runs)
}

/// One direction of the guest table, every selected back-end on it.
#[derive(Debug, PartialEq)]
struct GuestRow {
    /// `Send`: the guest sends; `Recv`: it receives.
    dir: Dir,
    /// One cell per back-end, in column order; `gbps` holds the median and
    /// range of the Mbit/s (not Gbit/s), `cpu_s_per_gb` is unused (None).
    cells: Vec<Cell>,
}

impl GuestRow {
    /// See [`cells_ratio`].
    fn ratio(&self, num: &str, den: &str) -> Option<f64> {
        cells_ratio(&self.cells, num, den)
    }
}


/// Group guest `runs` into rows (guest sends, then guest receives) with one
/// cell per back-end of `tools`; rows without any run are left out.
fn summarise_guest(runs: &[GuestRun], tools: &[&'static GuestTool]) -> Vec<GuestRow> {
    let mut rows = Vec::new();
    for dir in [Dir::Send, Dir::Recv] {
        let cells: Vec<Cell> = tools
            .iter()
            .map(|t| {
                let mine: Vec<&GuestRun> = runs.iter().filter(|r| r.tool == t.id && r.dir == dir).collect();
                let good: Vec<f64> = mine.iter().filter(|r| r.ok).map(|r| r.mbps).collect();
                Cell::of(t.id, mine.len(), &good, &[], &[])
            })
            .collect();
        if cells.iter().any(|c| c.runs > 0) {
            rows.push(GuestRow { dir, cells });
        }
    }
    rows
}

/// How the guests ran, for the heading: "under TCG" when every run that
/// reported an accelerator said tcg, "accelerator unknown" when none did,
/// else the accelerators seen.
fn guest_accel_phrase(runs: &[GuestRun]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for r in runs.iter().filter(|r| !r.accel.is_empty()) {
        if !seen.contains(&r.accel.as_str()) {
            seen.push(&r.accel);
        }
    }
    match seen[..] {
        [] => "accelerator unknown".into(),
        ["tcg"] => "under TCG".into(),
        _ => format!("accelerators {}", seen.join(", ")),
    }
}

/// The guest report: a heading (stating the accelerator), the table,
/// environment lines, failure reasons and guestlab's check scores.
fn render_guest_markdown(rows: &[GuestRow], o: &Opts, env: &str, runs: &[GuestRun]) -> String {
    let mut s = String::new();
    let accel = guest_accel_phrase(runs);
    let _ = writeln!(s, "## Real guest: iperf3 through passt (QEMU {accel}: only the ratios matter)\n");
    let _ = writeln!(
        s,
        "A QEMU guest (Debian kernel, busybox; ../shared/guest/guestlab.sh) attached to each \
         back-end, {accel}: {}only runs made side by side in the same bench compare. One \
         guestlab run per round and back-end, round-robin: iperf3 -c from the guest to the \
         gateway address (host loopback) for {} s, guest sends, then receives (-R). {} \
         round(s). Mbit/s: median (min-max) of the receiver's rate over the successful runs. \
         Ratios: of the medians.\n",
        if accel == "under TCG" { "software CPU emulation, so absolute Mbit/s mean little; " } else { "" },
        o.secs,
        o.rounds
    );
    for l in env.lines().filter(|l| !l.trim().is_empty()) {
        let _ = writeln!(s, "- {l}");
    }
    if !env.trim().is_empty() {
        s.push('\n');
    }
    let tools = &o.guest_tools;
    let ratios: Vec<(&str, &str)> = GUEST_RATIOS
        .iter()
        .copied()
        .filter(|(a, b)| tools.iter().any(|t| t.id == *a) && tools.iter().any(|t| t.id == *b))
        .collect();
    let mut head = vec!["direction".to_string()];
    head.extend(tools.iter().map(|t| format!("{} Mbit/s", t.label)));
    head.extend(ratios.iter().map(|(a, b)| format!("{} / {}", guest_label(a), guest_label(b))));
    let _ = writeln!(s, "| {} |", head.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(head.len()));
    for r in rows {
        let mut cols = vec![guest_dir_label(r.dir).to_string()];
        cols.extend(r.cells.iter().map(gbps_cell));
        cols.extend(
            ratios.iter().map(|(a, b)| r.ratio(a, b).map_or_else(|| "-".into(), |x| format!("{x:.2}"))),
        );
        let _ = writeln!(s, "| {} |", cols.join(" | "));
    }
    let mut reasons: Vec<(String, String, usize)> = Vec::new();
    for r in runs.iter().filter(|r| !r.ok) {
        let why = if r.note.is_empty() { "unknown" } else { r.note.as_str() };
        match reasons.iter_mut().find(|(t, w, _)| *t == r.tool && w == why) {
            Some(e) => e.2 += 1,
            None => reasons.push((r.tool.clone(), why.to_string(), 1)),
        }
    }
    let mut scores: Vec<(String, Vec<String>)> = Vec::new();
    for r in runs.iter().filter(|r| r.dir == Dir::Send) {
        let Some((p, n)) = r.checks else { continue };
        let v = format!("{p}/{n}");
        match scores.iter_mut().find(|(t, _)| *t == r.tool) {
            Some((_, l)) if !l.contains(&v) => l.push(v),
            Some(_) => {}
            None => scores.push((r.tool.clone(), vec![v])),
        }
    }
    if !reasons.is_empty() || !scores.is_empty() {
        s.push('\n');
    }
    for (t, why, n) in &reasons {
        let _ = writeln!(s, "- {} failed {n} measurement(s): {why}", guest_label(t));
    }
    for (t, v) in &scores {
        let _ = writeln!(s, "- {}: guestlab checks passed {}", guest_label(t), v.join(", "));
    }
    s
}

/// The guest part of bench.json: `"guest_env": [...], "guest_runs": [...],
/// "guest_summary": [...]` (three members, no surrounding braces, no
/// trailing comma).
fn render_guest_json(rows: &[GuestRow], runs: &[GuestRun], env: &str) -> String {
    let env: Vec<String> = env.lines().filter(|l| !l.trim().is_empty()).map(json_str).collect();
    let mut s = format!("  \"guest_env\": [{}],\n  \"guest_runs\": [\n", env.join(", "));
    let lines: Vec<String> = runs
        .iter()
        .map(|r| {
            let (p, n) = r.checks.map_or((None, None), |(p, n)| (Some(p), Some(n)));
            format!(
                "    {{\"round\": {}, \"tool\": {}, \"mode\": {}, \"dir\": {}, \"check\": {}, \"ok\": {}, \
                 \"mbps\": {}, \"accel\": {}, \"checks_passed\": {}, \"checks_total\": {}, \"note\": {}}}",
                r.round,
                json_str(&r.tool),
                json_str(GUEST_TOOLS.iter().find(|t| t.id == r.tool).map_or("", |t| t.mode)),
                json_str(r.dir.id()),
                json_str(guest_check(r.dir)),
                r.ok,
                json_num(r.ok.then_some(r.mbps)),
                json_str(&r.accel),
                p.map_or_else(|| "null".into(), |v| v.to_string()),
                n.map_or_else(|| "null".into(), |v| v.to_string()),
                json_str(&r.note)
            )
        })
        .collect();
    s.push_str(&lines.join(",\n"));
    s.push_str("\n  ],\n  \"guest_summary\": [\n");
    let mut lines = Vec::new();
    for r in rows {
        for c in &r.cells {
            let (m, lo, hi) = c.gbps.map_or((None, None, None), |(m, lo, hi)| (Some(m), Some(lo), Some(hi)));
            let ratios = ratios_json(GUEST_RATIOS, c.tool, &r.cells);
            lines.push(format!(
                "    {{\"dir\": {}, \"tool\": {}, \"runs\": {}, \"ok\": {}, \"mbps_median\": {}, \
                 \"mbps_min\": {}, \"mbps_max\": {}, \"ratios\": {{{}}}}}",
                json_str(r.dir.id()),
                json_str(c.tool),
                c.runs,
                c.ok,
                json_num(m),
                json_num(lo),
                json_num(hi),
                ratios
            ));
        }
    }
    s.push_str(&lines.join(",\n"));
    s.push_str("\n  ]");
    s
}

// ---- JSON -------------------------------------------------------------------

// ---- peak memory ------------------------------------------------------------

/// One forwarder session's peak memory (a line of rss.tsv).
#[derive(Clone, Debug, PartialEq)]
struct RssRun {
    /// The lab part the session belonged to: tap, p4, splice or tap-rr.
    part: String,
    /// Round, from 1.
    round: u32,
    /// Tool id.
    tool: String,
    /// Tap MTU of the session, bytes.
    mtu: u16,
    /// VmHWM of /proc/PID/status (KiB), summed over the forwarder and every
    /// process below it, read right before the bench stopped it.
    kib: u64,
}

/// Parse rss.tsv as written by tests/bench/lab-bench.sh: one forwarder
/// session per line, five tab-separated fields `part round tool mtu kib`.
/// Empty lines are skipped.
///
/// # Errors
/// A line with another field count or an unparsable number, naming the line.
fn parse_rss(text: &str) -> Result<Vec<RssRun>> {
    let mut v = Vec::new();
    for (n, f) in tsv_lines("rss.tsv", text, 5)? {
        v.push(RssRun {
            part: f[0].to_string(),
            round: tsv_field("rss.tsv", n, "round", f[1])?,
            tool: f[2].to_string(),
            mtu: tsv_field("rss.tsv", n, "mtu", f[3])?,
            kib: tsv_field("rss.tsv", n, "kib", f[4])?,
        });
    }
    Ok(v)
}

/// The peak-RSS table: one row per part and MTU that has sessions, one
/// column per forwarder among `tools`; cells: MiB, median (min-max) over
/// the sessions.
fn render_rss_markdown(rss: &[RssRun], tools: &[&'static Tool]) -> String {
    let mut s = String::new();
    // the given forwarders, then any other tool with sessions (the eBPF
    // section's pasta-rs --ebpf)
    let mut fwd: Vec<&Tool> = tools
        .iter()
        .copied()
        .filter(|t| !is_ceiling(t.id))
        .collect();
    for r in rss {
        if !fwd.iter().any(|t| t.id == r.tool) {
            if let Some(t) = EBPF_TOOLS.iter().find(|t| t.id == r.tool) {
                fwd.push(t);
            }
        }
    }
    let _ = writeln!(s, "## Forwarder peak memory\n");
    let _ = writeln!(
        s,
        "VmHWM of /proc/PID/status, summed over the forwarder's processes, read right before \
         each session's forwarder was stopped; MiB (2^20 bytes), median (min-max) over the \
         sessions of the part and MTU.\n"
    );
    let mut head = vec!["part, tap MTU".to_string()];
    head.extend(fwd.iter().map(|t| format!("{} MiB", t.label)));
    let _ = writeln!(s, "| {} |", head.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(head.len()));
    let mut keys: Vec<(&str, u16)> = Vec::new();
    for r in rss {
        if !keys.contains(&(r.part.as_str(), r.mtu)) {
            keys.push((&r.part, r.mtu));
        }
    }
    for (part, mtu) in keys {
        let mut cols = vec![format!("{part}, {mtu}")];
        for t in &fwd {
            let v: Vec<f64> = rss
                .iter()
                .filter(|r| r.part == part && r.mtu == mtu && r.tool == t.id)
                .map(|r| r.kib as f64 / 1024.0)
                .collect();
            cols.push(match spread(&v) {
                None => "-".into(),
                Some((m, lo, hi)) if v.len() > 1 => {
                    format!("{} ({}-{})", sig3(m), sig3(lo), sig3(hi))
                }
                Some((m, _, _)) => sig3(m),
            });
        }
        let _ = writeln!(s, "| {} |", cols.join(" | "));
    }
    s
}

// ---- summary over every path --------------------------------------------------

/// One path of the summary table: a pasta-rs (or passt-rs) column beside
/// the best peer on that path.
#[derive(Debug, PartialEq)]
struct SumRow {
    /// The path, as a table label (part, then the row's own label).
    path: String,
    /// Unit of the two medians.
    unit: &'static str,
    /// Label of our column (pasta-rs, pasta-rs --threads 2, passt-rs ...).
    ours: String,
    /// Our median, if any run succeeded.
    ours_median: Option<f64>,
    /// The best peer's median and label, if any peer succeeded.
    best: Option<(f64, String)>,
}

impl SumRow {
    /// Our median / the best peer's median.
    fn ratio(&self) -> Option<f64> {
        match (self.ours_median, &self.best) {
            (Some(a), Some((b, _))) if *b > 0.0 => Some(a / b),
            _ => None,
        }
    }
}

/// The issue's target: every path at least this many times the best peer.
const TARGET_RATIO: f64 = 1.1;

/// A [`SumRow`] of `cells`: tool `ours` beside the best of `peers` by
/// median (labels from `label`).
fn sum_row(
    path: String,
    unit: &'static str,
    cells: &[Cell],
    ours: &str,
    peers: &[&str],
    label: impl Fn(&str) -> String,
) -> SumRow {
    let med = |id: &str| {
        cells
            .iter()
            .find(|c| c.tool == id)
            .and_then(|c| c.gbps)
            .map(|g| g.0)
    };
    let best = peers
        .iter()
        .filter_map(|p| med(p).map(|m| (m, label(p))))
        .fold(None, |b: Option<(f64, String)>, x| match b {
            Some(b) if b.0 >= x.0 => Some(b),
            _ => Some(x),
        });
    SumRow {
        path,
        unit,
        ours: label(ours),
        ours_median: med(ours),
        best,
    }
}

/// The tap peers' ids (Debian's pasta, slirp4netns).
fn peer_ids() -> Vec<&'static str> {
    TOOLS.iter().filter(|t| t.peer).map(|t| t.id).collect()
}

/// Every part's rows as the summary's paths: tap (pasta-rs), p4 (pasta-rs
/// and pasta-rs --threads 2), splice and tap-rr (pasta-rs), each beside the
/// best of Debian's pasta and slirp4netns, then guest (passt-rs stream and
/// vhost-user beside Debian's passt). Rows whose tools didn't run at all
/// are left out; ceilings are never peers.
fn summary_rows(
    tap: &[Row],
    p4: &[Row],
    splice: &[SpliceRow],
    taprr: &[SpliceRow],
    guest: &[GuestRow],
) -> Vec<SumRow> {
    let peers = peer_ids();
    let tl = |id: &str| {
        TOOLS
            .iter()
            .chain([&T2])
            .find(|t| t.id == id)
            .map_or_else(|| id.to_string(), |t| t.label.to_string())
    };
    let mut v = Vec::new();
    let has = |cells: &[Cell], id: &str| cells.iter().any(|c| c.tool == id && c.runs > 0);
    for r in tap.iter().filter(|r| has(&r.cells, OURS)) {
        let path = format!("tap TCP, MTU {}, IPv{}, {}", r.mtu, r.af, r.dir.label());
        v.push(sum_row(path, "Gbit/s", &r.cells, OURS, &peers, tl));
    }
    for r in p4 {
        for ours in [OURS, T2.id].into_iter().filter(|id| has(&r.cells, id)) {
            let path = format!(
                "tap TCP -P 4, MTU {}, IPv{}, {}",
                r.mtu,
                r.af,
                r.dir.label()
            );
            v.push(sum_row(path, "Gbit/s", &r.cells, ours, &peers, tl));
        }
    }
    for r in splice.iter().chain(taprr).filter(|r| has(&r.cells, OURS)) {
        let path = format!("{}, IPv{}", r.path.label(), r.af);
        let peers: Vec<&str> = peers
            .iter()
            .copied()
            .filter(|p| r.path.unsupported(p, r.af).is_none())
            .collect();
        v.push(sum_row(path, r.path.unit(), &r.cells, OURS, &peers, tl));
    }
    for r in guest {
        for ours in ["passt-rs", "passt-rs-vu"]
            .into_iter()
            .filter(|id| has(&r.cells, id))
        {
            let path = format!("guest TCP, {}", guest_dir_label(r.dir));
            v.push(sum_row(
                path,
                "Mbit/s",
                &r.cells,
                ours,
                &["debian-passt"],
                |id| guest_label(id).to_string(),
            ));
        }
    }
    v
}

/// One of the issue's specific checks, computed from the runs.
#[derive(Debug, PartialEq)]
struct Check {
    /// What is compared, with the target ("tap TCP MTU 1500: pasta-rs / Debian pasta >= 2x").
    what: &'static str,
    /// The worst ratio over the rows checked (the lowest for a `>=`
    /// target, the highest for a `<=` one), if any row had both numbers.
    worst: Option<f64>,
    /// Passed (every row checked meets the target); `None` without data.
    pass: Option<bool>,
    /// The ratio of each row checked: "label ratio", comma separated.
    detail: String,
}

/// Build a [`Check`] from `(row label, ratio)` pairs: at least `target`
/// (`at_least`) or at most `target`.
fn check_of(what: &'static str, pairs: &[(String, f64)], target: f64, at_least: bool) -> Check {
    let worst = pairs.iter().map(|p| p.1).fold(None, |w: Option<f64>, x| {
        Some(w.map_or(x, |w| if at_least { w.min(x) } else { w.max(x) }))
    });
    let pass = worst.map(|w| if at_least { w >= target } else { w <= target });
    let detail = pairs
        .iter()
        .map(|(l, r)| format!("{l} {r:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    Check {
        what,
        worst,
        pass,
        detail,
    }
}

/// The issue's three checks: tap TCP at MTU 1500, pasta-rs / Debian
/// pasta at least 2 on every row; -P 4, `--threads 2` / `--threads 1` at
/// least 1.3 on every row; forwarder CPU s/GB, pasta-rs / Debian pasta at
/// most 0.8 on every throughput row where both have a number (tap, p4 with
/// one thread, splice and tap-rr byte paths).
fn checks(tap: &[Row], p4: &[Row], splice: &[SpliceRow], taprr: &[SpliceRow]) -> Vec<Check> {
    let med = |cells: &[Cell], id: &str| {
        cells
            .iter()
            .find(|c| c.tool == id)
            .and_then(|c| c.gbps)
            .map(|g| g.0)
    };
    let cpu = |cells: &[Cell], id: &str| {
        cells
            .iter()
            .find(|c| c.tool == id)
            .and_then(|c| c.cpu_s_per_gb)
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let tap_label = |r: &Row| format!("MTU {} IPv{} {}", r.mtu, r.af, r.dir.id());
    let mtu1500: Vec<(String, f64)> = tap
        .iter()
        .filter(|r| r.mtu == 1500)
        .filter_map(|r| {
            ratio(med(&r.cells, OURS), med(&r.cells, SPLICE_PEER)).map(|x| (tap_label(r), x))
        })
        .collect();
    // how busy the whole machine was with one thread: near 100 %, a second
    // thread has no CPU to run on
    let busy1 = |r: &Row| {
        r.cells
            .iter()
            .find(|c| c.tool == OURS)
            .and_then(|c| c.busy)
            .map_or_else(String::new, |b| format!(" (machine {:.0}% busy at 1 thread)", b * 100.0))
    };
    let threads: Vec<(String, f64)> = p4
        .iter()
        .filter_map(|r| {
            ratio(med(&r.cells, T2.id), med(&r.cells, OURS)).map(|x| (format!("{}{}", tap_label(r), busy1(r)), x))
        })
        .collect();
    let mut cpus: Vec<(String, f64)> = Vec::new();
    for (what, rows) in [("tap", tap), ("-P 4", p4)] {
        for r in rows {
            if let Some(x) = ratio(cpu(&r.cells, OURS), cpu(&r.cells, SPLICE_PEER)) {
                cpus.push((format!("{what} {}", tap_label(r)), x));
            }
        }
    }
    for r in splice.iter().chain(taprr).filter(|r| r.path.counts_bytes()) {
        if let Some(x) = ratio(cpu(&r.cells, OURS), cpu(&r.cells, SPLICE_PEER)) {
            cpus.push((format!("{} IPv{}", r.path.id(), r.af), x));
        }
    }
    vec![
        check_of(
            "tap TCP at MTU 1500: pasta-rs / Debian pasta >= 2x",
            &mtu1500,
            2.0,
            true,
        ),
        check_of(
            "-P 4: pasta-rs --threads 2 / --threads 1 >= 1.3x",
            &threads,
            1.3,
            true,
        ),
        check_of(
            "forwarder CPU s/GB: pasta-rs / Debian pasta <= 0.8x",
            &cpus,
            0.8,
            false,
        ),
    ]
}

/// "yes", "no" or "-" (no data).
fn yes_no(x: Option<bool>) -> &'static str {
    match x {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}

/// The summary section: every path's pasta-rs / best peer with the 1.1x
/// target, then the issue's three checks.
fn render_summary_markdown(rows: &[SumRow], checks: &[Check]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Summary: every path beside the best peer\n");
    let _ = writeln!(
        s,
        "Medians of this run; best peer: the faster of Debian's pasta and slirp4netns (Debian's \
         passt for the guest), ceilings (veth, loopback) are not peers.\n"
    );
    if rows.is_empty() {
        let _ = writeln!(s, "No part with pasta-rs beside a peer ran.");
    } else {
        let _ = writeln!(
            s,
            "| path | pasta-rs | best peer (who) | ratio | >= {TARGET_RATIO}x? |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|");
    }
    for r in rows {
        let ours = r
            .ours_median
            .map_or_else(|| "fail".into(), |m| format!("{} {}", sig3(m), r.unit));
        let ours = if r.ours == "pasta-rs" {
            ours
        } else {
            format!("{ours} ({})", r.ours)
        };
        let best = r.best.as_ref().map_or_else(
            || "-".into(),
            |(m, who)| format!("{} {} ({who})", sig3(*m), r.unit),
        );
        let ratio = r.ratio();
        let _ = writeln!(
            s,
            "| {} | {ours} | {best} | {} | {} |",
            r.path,
            ratio.map_or_else(|| "-".into(), |x| format!("{x:.2}")),
            yes_no(ratio.map(|x| x >= TARGET_RATIO))
        );
    }
    let _ = writeln!(s, "\n| check | worst row | passed? | every row |");
    let _ = writeln!(s, "|---|---|---|---|");
    for c in checks {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            c.what,
            c.worst.map_or_else(|| "-".into(), |x| format!("{x:.2}")),
            yes_no(c.pass),
            if c.detail.is_empty() {
                "no data"
            } else {
                &c.detail
            }
        );
    }
    s
}

/// The summary and checks of bench.json: `"overall_summary": [...],
/// "checks": [...]` (members, no surrounding braces, no trailing comma).
fn render_summary_json(rows: &[SumRow], checks: &[Check]) -> String {
    let rows: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "    {{\"path\": {}, \"unit\": {}, \"ours\": {}, \"ours_median\": {}, \"best_peer\": {}, \
                 \"best_peer_median\": {}, \"ratio\": {}}}",
                json_str(&r.path),
                json_str(r.unit),
                json_str(&r.ours),
                json_num(r.ours_median),
                r.best.as_ref().map_or_else(|| "null".into(), |b| json_str(&b.1)),
                json_num(r.best.as_ref().map(|b| b.0)),
                json_num(r.ratio())
            )
        })
        .collect();
    let checks: Vec<String> = checks
        .iter()
        .map(|c| {
            format!(
                "    {{\"check\": {}, \"worst\": {}, \"pass\": {}, \"detail\": {}}}",
                json_str(c.what),
                json_num(c.worst),
                c.pass.map_or_else(|| "null".into(), |p| p.to_string()),
                json_str(&c.detail)
            )
        })
        .collect();
    format!(
        "  \"overall_summary\": [\n{}\n  ],\n  \"checks\": [\n{}\n  ]",
        rows.join(",\n"),
        checks.join(",\n")
    )
}

// ---- plot ---------------------------------------------------------------------

/// gnuplot's input for the plot: one line per summary row with a ratio,
/// `"label"<TAB>ratio`, top to bottom (labels' double quotes become single).
fn plot_data(rows: &[SumRow]) -> String {
    let mut s = String::new();
    for r in rows {
        if let Some(x) = r.ratio() {
            let label = if r.ours == "pasta-rs" {
                r.path.clone()
            } else {
                format!("{} ({})", r.path, r.ours)
            };
            let _ = writeln!(s, "\"{}\"\t{x}", label.replace('"', "'"));
        }
    }
    s
}

/// A gnuplot script drawing `data` (from [`plot_data`], `n` lines) as
/// horizontal bars of pasta-rs / best peer, one per path, top to bottom in
/// the data's order (green at or above [`TARGET_RATIO`], red below), with a
/// red line at [`TARGET_RATIO`], to the PNG `png` (pngcairo terminal).
fn plot_script(data: &std::path::Path, png: &std::path::Path, n: usize) -> String {
    let height = 120 + 22 * n.max(1);
    let q = |p: &std::path::Path| p.display().to_string().replace('\'', "");
    format!(
        "set terminal pngcairo noenhanced size 1400,{height} font 'DejaVu Sans,9'\n\
         set output '{png}'\n\
         set datafile separator '\\t'\n\
         set title 'pasta-rs / best peer, median of this run (red: {TARGET_RATIO}x)'\n\
         set xlabel 'ratio'\n\
         set xrange [0:*]\n\
         set yrange [{top}:-0.7]\n\
         set ytics scale 0\n\
         set grid xtics\n\
         set style fill solid 0.6 border -1\n\
         set key off\n\
         set arrow from {TARGET_RATIO}, graph 0 to {TARGET_RATIO}, graph 1 nohead lc rgb 'red' lw 2 front\n\
         plot '{data}' using ($2/2):0:($2/2):(0.35):($2 >= {TARGET_RATIO} ? 0x4aa84a : 0xd9534f):ytic(1) \
         with boxxyerror lc rgb variable, \\\n\
         \x20    '' using 2:0:(sprintf('%.2f', $2)) with labels left offset 0.5,0\n",
        png = q(png),
        data = q(data),
        top = n as f64 - 0.3,
    )
}

/// Draw target/bench/bench.png from the summary with gnuplot (package
/// gnuplot-nox); returns what happened, for the log. Not an error when
/// gnuplot is missing or fails: the tables are the result.
fn render_plot(rows: &[SumRow], out: &std::path::Path) -> String {
    let data = plot_data(rows);
    let n = data.lines().count();
    if n == 0 {
        return "no plot: no path has both pasta-rs and a peer".into();
    }
    let (dat, gp, png) = (
        out.join("bench-plot.tsv"),
        out.join("bench.gp"),
        out.join("bench.png"),
    );
    if let Err(e) =
        std::fs::write(&dat, &data).and_then(|()| std::fs::write(&gp, plot_script(&dat, &png, n)))
    {
        return format!("no plot: cannot write {}: {e}", gp.display());
    }
    match Command::new("gnuplot").arg(&gp).status() {
        Ok(st) if st.success() => format!("wrote {}", png.display()),
        Ok(st) => format!("no plot: gnuplot {} ({st})", gp.display()),
        Err(e) => format!("no plot: cannot run gnuplot: {e}"),
    }
}

/// `v` as a JSON string literal (RFC 8259 §7).
fn json_str(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for ch in v.chars() {
        match ch {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", u32::from(c));
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// `x` as a JSON number, `null` if absent or not finite.
fn json_num(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".into(),
    }
}

/// bench.json: configuration, environment lines, every run, the summary,
/// the splice part's runs and summary ([`render_splice_json`]), the eBPF
/// section's ([`render_ebpf_json`]) and the guest part's.
fn render_json(
    o: &Opts,
    env: &str,
    elapsed: Duration,
    splice: (&[SpliceRow], &[SpliceRun]),
    ebpf: (&[SpliceRow], &[StallRow], &EbpfPart),
    guest: (&[GuestRow], &[GuestRun], &str),
    more: &MoreJson,
) -> String {
    let MoreJson {
        tap: (rows, runs),
        p4: (p4_rows, p4_runs),
        taprr: (taprr_rows, taprr_runs),
        rss,
        sum_rows,
        checks,
    } = *more;
    let mut s = String::from("{\n");
    let tools: Vec<String> = o.tools.iter().map(|t| json_str(t.id)).collect();
    let gtools: Vec<String> = o.guest_tools.iter().map(|t| json_str(t.id)).collect();
    let mtus: Vec<String> = MTUS.iter().map(u16::to_string).collect();
    let _ = writeln!(
        s,
        "  \"config\": {{\"rounds\": {}, \"secs\": {}, \"parts\": {}, \"tools\": [{}], \"guest_tools\": [{}], \"mtus\": [{}], \"elapsed_s\": {}}},",
        o.rounds,
        o.secs,
        json_str(&parts(o)),
        tools.join(", "),
        gtools.join(", "),
        mtus.join(", "),
        json_num(Some(elapsed.as_secs_f64()))
    );
    let env: Vec<String> = env
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(json_str)
        .collect();
    let _ = writeln!(s, "  \"env\": [{}],", env.join(", "));
    s.push_str(&tap_json("", rows, runs));
    s.push_str(",\n");
    s.push_str(&tap_json("p4_", p4_rows, p4_runs));
    s.push_str(",\n");
    s.push_str(&render_rate_json(
        "tap_rr",
        taprr_rows,
        taprr_runs,
        TAPRR_RATIOS,
    ));
    s.push_str(",\n");
    let rss: Vec<String> = rss
        .iter()
        .map(|r| {
            format!(
                "    {{\"part\": {}, \"round\": {}, \"tool\": {}, \"mtu\": {}, \"vmhwm_kib\": {}}}",
                json_str(&r.part),
                r.round,
                json_str(&r.tool),
                r.mtu,
                r.kib
            )
        })
        .collect();
    let _ = write!(s, "  \"rss\": [\n{}\n  ],\n", rss.join(",\n"));
    s.push_str(&render_summary_json(sum_rows, checks));
    s.push_str(",\n");
    s.push_str(&render_splice_json(splice.0, splice.1));
    s.push_str(",\n");
    s.push_str(&render_ebpf_json(ebpf.0, ebpf.1, ebpf.2));
    s.push_str(",\n");
    s.push_str(&render_guest_json(guest.0, guest.1, guest.2));
    s.push_str("\n}\n");
    s
}

#[derive(Default)]
/// What bench.json holds besides the splice, eBPF and guest parts.
struct MoreJson<'a> {
    /// The tap part's rows and runs.
    tap: (&'a [Row], &'a [Run]),
    /// The p4 part's rows and runs.
    p4: (&'a [Row], &'a [Run]),
    /// The tap-rr part's rows and runs.
    taprr: (&'a [SpliceRow], &'a [SpliceRun]),
    /// Every forwarder session's peak RSS.
    rss: &'a [RssRun],
    /// The summary over every path.
    sum_rows: &'a [SumRow],
    /// The issue's checks.
    checks: &'a [Check],
}

/// `"PREFIXruns": [...], "PREFIXsummary": [...]` of a tap-format part (tap
/// with an empty prefix, p4 with `p4_`): members, no trailing comma.
fn tap_json(prefix: &str, rows: &[Row], runs: &[Run]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "  \"{prefix}runs\": [");
    let lines: Vec<String> = runs
        .iter()
        .map(|r| {
            format!(
                "    {{\"round\": {}, \"tool\": {}, \"mtu\": {}, \"af\": {}, \"dir\": {}, \"ok\": {}, \
                 \"bytes\": {}, \"secs\": {}, \"gbps\": {}, \"cpu_s\": {}, \"cpu_s_per_gb\": {}, \"note\": {}, \
                 \"machine_busy\": {}}}",
                r.round,
                json_str(&r.tool),
                r.mtu,
                r.af,
                json_str(r.dir.id()),
                r.ok,
                r.bytes,
                json_num(Some(r.secs)),
                json_num(r.ok.then(|| r.gbps())),
                json_num(r.cpu_s),
                json_num(r.cpu_s_per_gb()),
                json_str(&r.note),
                json_num(r.busy)
            )
        })
        .collect();
    s.push_str(&lines.join(",\n"));
    let _ = write!(s, "\n  ],\n  \"{prefix}summary\": [\n");
    let mut lines = Vec::new();
    for r in rows {
        for c in &r.cells {
            let (m, lo, hi) = c.gbps.map_or((None, None, None), |(m, lo, hi)| (Some(m), Some(lo), Some(hi)));
            lines.push(format!(
                "    {{\"mtu\": {}, \"af\": {}, \"dir\": {}, \"tool\": {}, \"runs\": {}, \"ok\": {}, \
                 \"gbps_median\": {}, \"gbps_min\": {}, \"gbps_max\": {}, \"cpu_s_per_gb_median\": {}, \
                 \"ratio_to_best_peer\": {}, \"ratio_to_threads_1\": {}, \"machine_busy_median\": {}}}",
                r.mtu,
                r.af,
                json_str(r.dir.id()),
                json_str(c.tool),
                c.runs,
                c.ok,
                json_num(m),
                json_num(lo),
                json_num(hi),
                json_num(c.cpu_s_per_gb),
                json_num(if c.tool == OURS { r.ratio } else { None }),
                json_num(if c.tool == T2.id { cells_ratio(&r.cells, T2.id, OURS) } else { None }),
                json_num(c.busy)
            ));
        }
    }
    s.push_str(&lines.join(",\n"));
    s.push_str("\n  ]");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of a rendered Markdown document that are table rows.
    fn table_lines(md: &str) -> Vec<&str> {
        md.lines().filter(|l| l.starts_with('|')).collect()
    }

    /// Cell separators of a table row.
    fn bars(l: &str) -> usize {
        l.matches('|').count()
    }

    /// Every row of `table` has as many cells as its head.
    fn assert_columns_agree(table: &[&str], md: &str) {
        assert!(table.iter().all(|l| bars(l) == bars(table[0])), "{md}");
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn run(tool: &str, mtu: u16, af: u8, dir: Dir, ok: bool, gbps: f64, cpu_s: Option<f64>) -> Run {
        // 1 s runs: bytes = Gbit/s * 1e9 / 8
        Run {
            round: 1,
            tool: tool.into(),
            mtu,
            af,
            dir,
            ok,
            bytes: if ok { (gbps * 1e9 / 8.0) as u64 } else { 0 },
            secs: if ok { 1.0 } else { 0.0 },
            cpu_s,
            note: if ok { String::new() } else { "unable to connect to server".into() },
            busy: None,
        }
    }

    fn all_tools() -> Vec<&'static Tool> {
        TOOLS.iter().collect()
    }

    #[test]
    fn defaults_are_three_rounds_of_five_seconds_with_every_tool() {
        let o = parse_args(&[]).unwrap();
        assert_eq!((o.rounds, o.secs, o.install, o.tools.len()), (3, 5, true, 3));
    }

    #[test]
    fn quick_is_one_round_of_two_seconds() {
        let o = parse_args(&os(&["--quick", "--no-install"])).unwrap();
        assert_eq!((o.rounds, o.secs, o.install), (1, 2, false));
    }

    #[test]
    fn rounds_and_secs_must_be_positive_numbers() {
        let o = parse_args(&os(&["--rounds", "5", "--secs", "10"])).unwrap();
        assert_eq!((o.rounds, o.secs), (5, 10));
        for bad in [["--rounds", "0"], ["--secs", "x"], ["--secs", "-1"]] {
            let e = parse_args(&os(&bad)).unwrap_err();
            assert!(e.to_string().contains("not a positive number"), "{e}");
        }
        assert!(parse_args(&os(&["--rounds"])).is_err());
    }

    #[test]
    fn tools_subset_keeps_column_order_and_rejects_unknown_names() {
        let o = parse_args(&os(&["--tools", "slirp4netns,pasta-rs"])).unwrap();
        let ids: Vec<&str> = o.tools.iter().map(|t| t.id).collect();
        assert_eq!(ids, ["pasta-rs", "slirp4netns"]);
        let e = parse_args(&os(&["--tools", "podman"])).unwrap_err();
        assert!(e.to_string().contains("unknown tool 'podman'"), "{e}");
        assert!(parse_args(&os(&["--tools", ","])).is_err());
    }

    #[test]
    fn unknown_option_is_refused_before_doing_anything() {
        let e = cmd_bench(&os(&["--bogus"])).unwrap_err();
        assert!(e.to_string().contains("unknown option '--bogus'"), "{e}");
    }

    #[test]
    fn effective_uid_is_the_second_uid_field() {
        let st = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(euid_from_status(st), Some(0));
        assert_eq!(euid_from_status("Uid:\t0\t1000\t0\t0\n"), Some(1000));
        assert_eq!(euid_from_status("Name:\tx\n"), None);
    }

    #[test]
    fn runs_tsv_lines_parse_into_runs() {
        let text = "1\tdebian-pasta\t65520\t4\tsend\tok\t111673344\t2.000365\t0.07\t-\n\
                    \n\
                    2\tpasta-rs\t1500\t6\trecv\tfail\t0\t0\t-\tunable to connect to server: Connection timed out\n\
                    3\tpasta-rs\t1500\t4\tsend\tok\t1000\t1.0\t0.5\t-\t0.97\n";
        let runs = parse_runs(text).unwrap();
        assert_eq!(runs.len(), 3);
        assert_eq!((runs[0].busy, runs[2].busy), (None, Some(0.97)));
        for bad in ["x", "2", "-0.1"] {
            let line = format!("1\tpasta-rs\t1500\t4\tsend\tok\t1000\t1.0\t0.5\t-\t{bad}\n");
            let e = parse_runs(&line).unwrap_err().to_string();
            assert!(e.contains("bad busy"), "{e}");
        }
        assert_eq!(
            runs[0],
            Run {
                round: 1,
                tool: "debian-pasta".into(),
                mtu: 65520,
                af: 4,
                dir: Dir::Send,
                ok: true,
                bytes: 111_673_344,
                secs: 2.000365,
                cpu_s: Some(0.07),
                note: String::new(),
                busy: None,
            }
        );
        assert!((runs[0].gbps() - 0.446_612).abs() < 1e-5, "{}", runs[0].gbps());
        assert!(!runs[1].ok);
        assert_eq!((runs[1].af, runs[1].dir, runs[1].cpu_s), (6, Dir::Recv, None));
        assert_eq!(runs[1].note, "unable to connect to server: Connection timed out");
    }

    #[test]
    fn malformed_runs_tsv_lines_are_errors_naming_the_line() {
        for (bad, what) in [
            ("1\tx\t1500\t4\tsend\tok\t1\t1\t-", "9 fields"),
            ("1\tx\t1500\t5\tsend\tok\t1\t1\t-\t-", "bad af"),
            ("1\tx\t1500\t4\tsideways\tok\t1\t1\t-\t-", "bad dir"),
            ("1\tx\t1500\t4\tsend\tmaybe\t1\t1\t-\t-", "bad status"),
            ("1\tx\t70000\t4\tsend\tok\t1\t1\t-\t-", "bad mtu"),
            ("1\tx\t1500\t4\tsend\tok\t-5\t1\t-\t-", "bad bytes"),
            ("1\tx\t1500\t4\tsend\tok\t1\tNaN\t-\t-", "bad secs"),
            ("1\tx\t1500\t4\tsend\tok\t1\t1\t-0.5\t-", "bad cpu_s"),
        ] {
            let e = parse_runs(&format!("\n{bad}\n")).unwrap_err().to_string();
            assert!(e.contains("line 2") && e.contains(what), "{bad:?}: {e}");
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn failing_tool_shows_fail_and_no_ratio() {
        let runs = vec![
            run("pasta-rs", 65520, 4, Dir::Send, false, 0.0, Some(0.0)),
            run("debian-pasta", 65520, 4, Dir::Send, true, 0.5, Some(0.1)),
            run("slirp4netns", 65520, 4, Dir::Send, true, 2.0, Some(1.0)),
        ];
        let rows = summarise(&runs, &all_tools());
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.ratio, None);
        assert_eq!(gbps_cell(&r.cells[0]), "fail");
        assert_eq!(r.cells[0].cpu_s_per_gb, None);
        assert_eq!(gbps_cell(&r.cells[2]), "2.00");
        // 1 s at 2 Gbit/s = 0.25 GB for 1 CPU second
        assert!((r.cells[2].cpu_s_per_gb.unwrap() - 4.0).abs() < 1e-9);
        assert_eq!(exit_code(&runs, &[], &[], &[]), ExitCode::SUCCESS);
    }

    #[test]
    fn ratio_is_to_the_best_peer_median() {
        let mut runs = Vec::new();
        for (i, g) in [1.0, 3.0, 2.0].into_iter().enumerate() {
            let mut r = run("pasta-rs", 1500, 6, Dir::Recv, true, g, None);
            r.round = i as u32 + 1;
            runs.push(r);
        }
        runs.push(run("debian-pasta", 1500, 6, Dir::Recv, true, 0.5, None));
        runs.push(run("slirp4netns", 1500, 6, Dir::Recv, true, 4.0, None));
        let rows = summarise(&runs, &all_tools());
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].mtu, rows[0].af, rows[0].dir), (1500, 6, Dir::Recv));
        assert_eq!(rows[0].ratio, Some(0.5));
        assert_eq!(gbps_cell(&rows[0].cells[0]), "2.00 (1.00-3.00)");
    }

    #[test]
    fn partly_failing_cell_counts_failures() {
        let mut runs = vec![run("slirp4netns", 65520, 4, Dir::Recv, true, 3.0, None)];
        runs.push(run("slirp4netns", 65520, 4, Dir::Recv, false, 0.0, None));
        let rows = summarise(&runs, &all_tools());
        assert_eq!(gbps_cell(&rows[0].cells[2]), "3.00, 1/2 fail");
        assert_eq!(gbps_cell(&rows[0].cells[0]), "-");
    }

    #[test]
    fn every_run_failing_exits_1() {
        let runs = vec![
            run("pasta-rs", 65520, 4, Dir::Send, false, 0.0, None),
            run("slirp4netns", 1500, 6, Dir::Recv, false, 0.0, None),
        ];
        assert_eq!(exit_code(&runs, &[], &[], &[]), ExitCode::FAILURE);
        assert_eq!(exit_code(&[], &[], &[], &[]), ExitCode::FAILURE);
    }

    #[test]
    fn rows_follow_mtu_family_direction_order() {
        let mut runs = Vec::new();
        for &mtu in MTUS.iter().rev() {
            for af in [6, 4] {
                for dir in [Dir::Recv, Dir::Send] {
                    runs.push(run("debian-pasta", mtu, af, dir, true, 1.0, None));
                }
            }
        }
        let rows = summarise(&runs, &all_tools());
        let keys: Vec<(u16, u8, Dir)> = rows.iter().map(|r| (r.mtu, r.af, r.dir)).collect();
        assert_eq!(keys.len(), 8);
        assert_eq!(keys[0], (65520, 4, Dir::Send));
        assert_eq!(keys[1], (65520, 4, Dir::Recv));
        assert_eq!(keys[2], (65520, 6, Dir::Send));
        assert_eq!(keys[7], (1500, 6, Dir::Recv));
    }

    #[test]
    fn markdown_table_rows_have_the_header_column_count() {
        let runs = vec![
            run("pasta-rs", 65520, 4, Dir::Send, false, 0.0, None),
            run("debian-pasta", 65520, 4, Dir::Send, true, 0.71, Some(0.05)),
            run("slirp4netns", 65520, 4, Dir::Send, true, 2.67, Some(0.6)),
        ];
        let o = parse_args(&[]).unwrap();
        let rows = summarise(&runs, &tap_tools(&o.tools));
        let md = render_markdown(&rows, &o, "kernel: 6.1\n", Duration::from_secs(7), &runs);
        let table = table_lines(&md);
        assert_eq!(table.len(), 3, "{md}");
        assert_columns_agree(&table, &md);
        assert_eq!(bars(table[0]), 10); // path, 3 x Gbit/s, veth, ratio, 3 x CPU (none for veth)
        assert!(
            table[2]
                .starts_with("| MTU 65520, IPv4, namespace sends | fail | 0.710 | 2.67 | - | - |"),
            "{md}"
        );
        assert!(md.contains("- kernel: 6.1"), "{md}");
        assert!(md.contains("- pasta-rs failed 1 run(s): unable to connect to server"), "{md}");
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
        assert_eq!(json_num(Some(f64::NAN)), "null");
        assert_eq!(json_num(None), "null");
        assert_eq!(json_num(Some(0.5)), "0.5");
    }

    #[test]
    fn json_holds_every_run_and_a_summary_per_cell() {
        let runs = vec![
            run("pasta-rs", 1500, 4, Dir::Send, false, 0.0, None),
            run("slirp4netns", 1500, 4, Dir::Send, true, 0.4, Some(0.2)),
        ];
        let o = parse_args(&os(&["--tools", "pasta-rs,slirp4netns"])).unwrap();
        let rows = summarise(&runs, &o.tools);
        let j = render_json(
            &o,
            "cpus: 2",
            Duration::from_millis(1500),
            (&[], &[]),
            (&[], &[], &EbpfPart::default()),
            (&[], &[], ""),
            &MoreJson {
                tap: (&rows, &runs),
                ..MoreJson::default()
            },
        );
        assert_eq!(j.matches("\"round\":").count(), 2, "{j}");
        assert_eq!(j.matches("\"gbps_median\":").count(), 2, "{j}");
        assert!(j.contains("\"tool\": \"slirp4netns\", \"runs\": 1, \"ok\": 1, \"gbps_median\": 0.4,"), "{j}");
        assert!(j.contains("\"env\": [\"cpus: 2\"]"), "{j}");
        assert!(j.contains("\"elapsed_s\": 1.5"), "{j}");
        // balanced braces and brackets (no string in the data holds any)
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        assert_eq!(j.matches('[').count(), j.matches(']').count());
    }

    #[test]
    fn hard_limit_covers_every_run_at_its_own_timeout() {
        let o = parse_args(&[]).unwrap();
        // 3 rounds x 2 MTUs x 3 tools x 4 paths x (5 s + 20 s client limit)
        assert!(hard_limit_secs(&o) > 3 * 2 * 3 * 4 * 25);
    }

    #[test]
    fn lab_script_exists_and_guards_against_running_outside_a_namespace() {
        let s = std::fs::read_to_string(workspace_root().join(LAB_SCRIPT)).unwrap();
        assert!(s.contains("if (($$ != 1)); then"));
    }

    #[test]
    fn sig3_keeps_three_significant_digits() {
        assert_eq!(sig3(17.14), "17.1");
        assert_eq!(sig3(5.714), "5.71");
        assert_eq!(sig3(0.7123), "0.712");
        assert_eq!(sig3(0.0781), "0.0781");
        assert_eq!(sig3(123.4), "123");
    }

    fn srun(tool: &str, path: SplicePath, af: u8, ok: bool, rate: f64) -> SpliceRun {
        // 1 s runs: count = rate (transactions) or Gbit/s * 1e9 / 8 (bytes)
        let count = if !ok {
            0
        } else if path.counts_bytes() {
            (rate * 1e9 / 8.0) as u64
        } else {
            rate as u64
        };
        SpliceRun {
            round: 1,
            tool: tool.into(),
            path,
            af,
            ok,
            count,
            secs: if ok { 1.0 } else { 0.0 },
            cpu_s: None,
            note: if ok { String::new() } else { "forwarder not running: exited at start (status 1)".into() },
        }
    }

    #[test]
    fn only_selects_one_part_and_rejects_others() {
        let o = parse_args(&[]).unwrap();
        assert_eq!(
            (o.tap, o.splice, o.guest, parts(&o).as_str()),
            (true, true, true, "tap p4 splice tap-rr guest")
        );
        assert_eq!(lab_parts(&o), "tap p4 splice tap-rr");
        let o = parse_args(&os(&["--only", "p4,tap-rr"])).unwrap();
        assert_eq!(
            (o.p4, o.taprr, o.tap, o.splice, o.ebpf, o.guest),
            (true, true, false, false, false, false)
        );
        assert_eq!(lab_parts(&o), "p4 tap-rr");
        let o = parse_args(&os(&["--only", "splice"])).unwrap();
        assert_eq!((o.tap, o.splice, o.guest, parts(&o).as_str()), (false, true, false, "splice"));
        let o = parse_args(&os(&["--only", "tap"])).unwrap();
        assert_eq!((o.tap, o.splice, o.guest, parts(&o).as_str()), (true, false, false, "tap"));
        let o = parse_args(&os(&["--only", "guest"])).unwrap();
        assert_eq!((o.tap, o.splice, o.guest, parts(&o).as_str()), (false, false, true, "guest"));
        assert_eq!(lab_parts(&o), "");
        for only in [&["--only", "ebpf"][..], &["--ebpf"]] {
            let o = parse_args(&os(only)).unwrap();
            assert_eq!((o.tap, o.splice, o.ebpf, o.guest, lab_parts(&o).as_str()), (false, false, true, false, "ebpf"));
        }
        let e = parse_args(&os(&["--only", "udp"])).unwrap_err();
        assert!(
            e.to_string()
                .contains("want tap, p4, splice, tap-rr, ebpf, guest, not udp"),
            "{e}"
        );
        assert!(parse_args(&os(&["--only", "tap,udp"])).is_err());
        assert!(parse_args(&os(&["--only"])).is_err());
    }

    #[test]
    fn part_tools_are_the_selected_ones_then_the_ceiling() {
        let ids = |v: Vec<&'static Tool>| v.iter().map(|t| t.id).collect::<Vec<_>>();
        assert_eq!(
            ids(splice_tools(&all_tools())),
            ["pasta-rs", "debian-pasta", "slirp4netns", "loopback"]
        );
        let o = parse_args(&os(&["--tools", "slirp4netns"])).unwrap();
        assert_eq!(ids(splice_tools(&o.tools)), ["slirp4netns", "loopback"]);
        assert_eq!(
            ids(p4_tools(&all_tools())),
            [
                "pasta-rs",
                "pasta-rs-t2",
                "debian-pasta",
                "slirp4netns",
                "veth"
            ]
        );
        assert_eq!(ids(p4_tools(&o.tools)), ["slirp4netns", "veth"]);
        assert_eq!(ids(taprr_tools(&o.tools)), ["slirp4netns", "veth"]);
    }

    #[test]
    fn splice_tsv_lines_parse_into_runs() {
        let text = "1\tdebian-pasta\ttcp-h2n\t6\tok\t1057515198\t1.049239\t0.33\t-\n\n\
                    2\tloopback\ttcp-crr\t4\tok\t8777\t1.000017\t-\t-\n\
                    1\tpasta-rs\tudp-rr\t4\tfail\t0\t0\t-\tforwarder not running: exited\n";
        let runs = parse_splice_runs(text).unwrap();
        assert_eq!(runs.len(), 3);
        assert_eq!(
            runs[0],
            SpliceRun {
                round: 1,
                tool: "debian-pasta".into(),
                path: SplicePath::TcpH2n,
                af: 6,
                ok: true,
                count: 1_057_515_198,
                secs: 1.049239,
                cpu_s: Some(0.33),
                note: String::new(),
            }
        );
        // bytes -> Gbit/s, transactions -> per second
        assert!((runs[0].rate() - 8.063).abs() < 1e-3, "{}", runs[0].rate());
        assert!((runs[1].rate() - 8776.85).abs() < 0.01, "{}", runs[1].rate());
        assert_eq!((runs[1].path, runs[1].cpu_s), (SplicePath::TcpCrr, None));
        assert_eq!((runs[2].ok, runs[2].rate()), (false, 0.0));
        assert_eq!(runs[2].note, "forwarder not running: exited");
    }

    #[test]
    fn malformed_splice_tsv_lines_are_errors_naming_the_line() {
        for (bad, what) in [
            ("1\tx\ttcp-rr\t4\tok\t1\t1\t-", "8 fields"),
            ("1\tx\ttcp-rr\t5\tok\t1\t1\t-\t-", "bad af"),
            ("1\tx\tsctp-rr\t4\tok\t1\t1\t-\t-", "bad path"),
            ("1\tx\ttcp-rr\t4\tmaybe\t1\t1\t-\t-", "bad status"),
            ("1\tx\ttcp-rr\t4\tok\t-1\t1\t-\t-", "bad count"),
            ("1\tx\ttcp-rr\t4\tok\t1\tinf\t-\t-", "bad secs"),
            ("1\tx\ttcp-rr\t4\tok\t1\t1\t-0.5\t-", "bad cpu_s"),
            ("one\tx\ttcp-rr\t4\tok\t1\t1\t-\t-", "bad round"),
        ] {
            let e = parse_splice_runs(&format!("\n{bad}\n")).unwrap_err().to_string();
            assert!(e.contains("line 2") && e.contains(what), "{bad:?}: {e}");
        }
    }

    #[test]
    fn splice_rows_have_ratios_to_debian_pasta_and_to_loopback() {
        let mut runs = Vec::new();
        for (i, r) in [9000.0, 10000.0, 11000.0].into_iter().enumerate() {
            let mut x = srun("debian-pasta", SplicePath::TcpRr, 4, true, r);
            x.round = i as u32 + 1;
            runs.push(x);
        }
        runs.push(srun("pasta-rs", SplicePath::TcpRr, 4, true, 20000.0));
        runs.push(srun("loopback", SplicePath::TcpRr, 4, true, 40000.0));
        runs.push(srun("pasta-rs", SplicePath::TcpH2n, 6, false, 0.0));
        runs.push(srun("loopback", SplicePath::TcpH2n, 6, true, 16.0));
        let tools = splice_tools(&all_tools());
        let rows = summarise_splice(&runs, &tools);
        // table order: tcp-h2n before tcp-rr, rows without runs left out
        let keys: Vec<(SplicePath, u8)> = rows.iter().map(|r| (r.path, r.af)).collect();
        assert_eq!(keys, [(SplicePath::TcpH2n, 6), (SplicePath::TcpRr, 4)]);
        let rr = &rows[1];
        assert_eq!(gbps_cell(&rr.cells[1]), "10000 (9000-11000)");
        assert_eq!(rr.ratio("pasta-rs", "debian-pasta"), Some(2.0));
        assert_eq!(rr.ratio("pasta-rs", "loopback"), Some(0.5));
        assert_eq!(rr.ratio("debian-pasta", "loopback"), Some(0.25));
        let h2n = &rows[0];
        assert_eq!(gbps_cell(&h2n.cells[0]), "fail");
        assert_eq!(gbps_cell(&h2n.cells[1]), "-");
        assert_eq!(h2n.ratio("pasta-rs", "loopback"), None);
        assert_eq!(exit_code(&[], &runs, &[], &[]), ExitCode::SUCCESS);
        assert_eq!(exit_code(&[], &runs[5..6], &[], &[]), ExitCode::FAILURE);
    }

    #[test]
    fn splice_markdown_rows_have_the_header_column_count_and_reasons() {
        let runs = vec![
            srun("pasta-rs", SplicePath::TcpCrr, 4, false, 0.0),
            srun("debian-pasta", SplicePath::TcpCrr, 4, true, 3500.0),
            srun("loopback", SplicePath::TcpCrr, 4, true, 8750.0),
        ];
        let o = parse_args(&os(&["--only", "splice"])).unwrap();
        let tools = splice_tools(&o.tools);
        let rows = summarise_splice(&runs, &tools);
        let md = render_splice_markdown(&rows, &tools, &o, &runs);
        let table = table_lines(&md);
        assert_eq!(table.len(), 3, "{md}");
        assert_columns_agree(&table, &md);
        assert_eq!(bars(table[0]), 10); // path, 4 tools, 4 ratios (no CPU: no byte path)
        assert!(table[0].contains("| pasta-rs / Debian pasta | pasta-rs / slirp4netns | pasta-rs / loopback | Debian pasta / loopback |"), "{md}");
        assert_eq!(table[2], "| TCP connections (-t), IPv4, connections/s | fail | 3500 | - | 8750 | - | - | - | 0.40 |");
        assert!(
            md.contains("- pasta-rs failed 1 splice run(s): forwarder not running"),
            "{md}"
        );
    }

    #[test]
    fn splice_json_holds_every_run_and_ratios_per_numerator_cell() {
        let runs = vec![
            srun("pasta-rs", SplicePath::UdpRr, 4, true, 30000.0),
            srun("debian-pasta", SplicePath::UdpRr, 4, true, 15000.0),
            srun("loopback", SplicePath::UdpRr, 4, true, 60000.0),
        ];
        let tools = splice_tools(&all_tools());
        let rows = summarise_splice(&runs, &tools);
        let o = parse_args(&[]).unwrap();
        let j = render_json(
            &o,
            "",
            Duration::from_secs(1),
            (&rows, &runs),
            (&[], &[], &EbpfPart::default()),
            (&[], &[], ""),
            &MoreJson {
                tap: (&[], &[]),
                ..MoreJson::default()
            },
        );
        assert_eq!(
            j.matches("\"path\": \"udp-rr\", \"af\": 4, \"ok\": true")
                .count(),
            3,
            "{j}"
        );
        assert!(j.contains("\"ratios\": {\"pasta-rs/debian-pasta\": 2, \"pasta-rs/slirp4netns\": null, \"pasta-rs/loopback\": 0.5}"), "{j}");
        assert!(
            j.contains("\"ratios\": {\"debian-pasta/loopback\": 0.25}"),
            "{j}"
        );
        assert!(j.contains("\"tool\": \"loopback\", \"unit\": \"round trips/s\", \"runs\": 1, \"ok\": 1, \"median\": 60000,"), "{j}");
        assert!(
            j.contains("\"parts\": \"tap p4 splice tap-rr guest\""),
            "{j}"
        );
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        assert_eq!(j.matches('[').count(), j.matches(']').count());
        assert!(j.ends_with("  ]\n}\n"), "{j}");
    }

    #[test]
    fn hard_limit_counts_only_the_selected_parts() {
        let all = hard_limit_secs(&parse_args(&[]).unwrap());
        let tap = hard_limit_secs(&parse_args(&os(&["--only", "tap"])).unwrap());
        let splice = hard_limit_secs(&parse_args(&os(&["--only", "splice"])).unwrap());
        let guest = hard_limit_secs(&parse_args(&os(&["--only", "guest"])).unwrap());
        let ebpf = hard_limit_secs(&parse_args(&os(&["--ebpf"])).unwrap());
        // 3 rounds x 3 splice tools x 7 runs x (5 s + 20 s client limit)
        assert!(splice > 3 * 3 * 7 * 25, "{splice}");
        // 3 rounds x 3 tools x (4 runs x 25 s + a stalled reader), two fd counts
        assert!(ebpf > 3 * 3 * (4 * 25 + EBPF_STALL_LIMIT_S) + 2 * EBPF_FDS_LIMIT_S, "{ebpf}");
        // 3 rounds x 3 back-ends x (guestlab's own limit + the outer grace)
        assert_eq!(guest, 3 * 3 * (guest_timeouts(5).outer + 10));
        let p4 = hard_limit_secs(&parse_args(&os(&["--only", "p4"])).unwrap());
        let taprr = hard_limit_secs(&parse_args(&os(&["--only", "tap-rr"])).unwrap());
        // 3 rounds x 2 MTUs x 4 forwarders x 2 runs x 25 s, the veth's 2 runs a round
        assert!(p4 > 3 * (2 * 4 * 2 + 2) * 25, "{p4}");
        // 3 rounds x (3 forwarders + veth) x 4 runs x 25 s
        assert!(taprr > 3 * 4 * 4 * 25, "{taprr}");
        // the lab's 60 s set-up counts once; the guest part adds its runs;
        // the eBPF section only on request
        assert_eq!(all, tap + p4 + splice + taprr - 3 * 60 + guest);
        let both = hard_limit_secs(&parse_args(&os(&["--only", "tap,ebpf"])).unwrap());
        assert_eq!(both, tap + ebpf - 60);
    }

    #[test]
    fn lab_script_splice_paths_match_the_run_count_and_path_ids() {
        let s = std::fs::read_to_string(workspace_root().join(LAB_SCRIPT)).unwrap();
        let line = s.lines().find_map(|l| l.strip_prefix("SPLICE_PATHS=")).unwrap().trim_matches('"');
        let paths: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(paths.len() as u64, SPLICE_RUNS_PER_SESSION);
        for p in paths {
            let (id, af) = p.split_once(':').unwrap();
            assert!(SplicePath::from_id(id).is_some() && (af == "4" || af == "6"), "{p}");
        }
    }

    // ---- eBPF section ----

    const EBPF_STATUS_TSV: &str = "1\tpasta-rs-ebpf\tloaded\teBPF programs loaded\n\
        2\tpasta-rs-ebpf\toff\tnot permitted: failed to create map\n\n\
        3\tpasta-rs-ebpf\toff\tnot permitted: failed to create map\n";
    // sent blocked secs tcp_mem0 tcp_mem1 avail0 avail1 (bytes)
    const EBPF_MEM_TSV: &str = "1\tpasta-rs\tok\t20971520\t1\t0.5\t1048576\t24117248\t8000000000\t7970000000\t-\n\
        1\tpasta-rs-ebpf\tok\t268435456\t0\t2.0\t1048576\t270532608\t8000000000\t7700000000\t-\n\
        2\tpasta-rs-ebpf\tok\t16777216\t1\t0.4\t2097152\t20971520\t8000000000\t7980000000\t-\n\
        1\tloopback\tfail\t-\t-\t-\t-\t-\t-\t-\tstall server did not start\n";
    const EBPF_FDS_TSV: &str = "pasta-rs\tok\t74620\t74606\t37303\t37303\t1048576\t37303\t-\n\
        pasta-rs-ebpf\tfail\t-\t-\t-\t-\t20000\t4950\texited while binding: too many open files\n";

    fn ebpf_part() -> EbpfPart {
        EbpfPart {
            runs: vec![
                srun("pasta-rs", SplicePath::TcpRr, 4, true, 20000.0),
                srun("pasta-rs-ebpf", SplicePath::TcpRr, 4, true, 50000.0),
                srun("loopback", SplicePath::TcpRr, 4, true, 60000.0),
                srun("pasta-rs-ebpf", SplicePath::TcpH2n, 4, false, 0.0),
            ],
            status: parse_ebpf_status(EBPF_STATUS_TSV).unwrap(),
            stall: parse_stall_runs(EBPF_MEM_TSV).unwrap(),
            fds: parse_fd_counts(EBPF_FDS_TSV).unwrap(),
        }
    }

    #[test]
    fn ebpf_tsv_files_parse_into_status_stall_runs_and_fd_counts() {
        let p = ebpf_part();
        assert_eq!(p.status.len(), 3);
        assert_eq!(p.status[1], EbpfStatus { round: 2, state: "off".into(), detail: "not permitted: failed to create map".into() });
        assert_eq!(p.stall.len(), 4);
        let r = &p.stall[0];
        assert!(r.ok && r.blocked && r.sent == 20 << 20 && r.secs == 0.5);
        assert_eq!((r.tcp_mem_growth(), r.avail_drop()), (23068672.0, 30000000.0));
        assert!(!p.stall[1].blocked);
        assert!(!p.stall[3].ok && p.stall[3].note == "stall server did not start");
        assert_eq!(
            p.fds[0],
            FdCount {
                tool: "pasta-rs".into(),
                ok: true,
                fds: 74620,
                sockets: 74606,
                tcp_listen: 37303,
                udp: 37303,
                nofile: 1048576,
                ports: 37303,
                note: String::new()
            }
        );
        assert!(!p.fds[1].ok && p.fds[1].note.contains("too many open files"));
        assert!(parse_ebpf_status("").unwrap().is_empty() && parse_stall_runs("\n").unwrap().is_empty());
    }

    #[test]
    fn malformed_ebpf_tsv_lines_are_errors_naming_the_file_and_line() {
        let e = parse_ebpf_status("\n1\tpasta-rs-ebpf\tmaybe\tx\n").unwrap_err().to_string();
        assert!(e.contains("ebpf-status.tsv line 2: bad state 'maybe'"), "{e}");
        let e = parse_ebpf_status("1\tpasta-rs-ebpf\tloaded\n").unwrap_err().to_string();
        assert!(e.contains("ebpf-status.tsv line 1: 3 fields, want 4"), "{e}");
        let bad_mem = [
            ("1\tx\tok\t10\t2\t0.5\t1\t2\t3\t4\t-", "bad blocked '2'"),
            ("1\tx\tok\t-5\t1\t0.5\t1\t2\t3\t4\t-", "bad sent '-5'"),
            ("1\tx\tok\t10\t1\tNaN\t1\t2\t3\t4\t-", "bad secs 'NaN'"),
            ("1\tx\tmeh\t10\t1\t0.5\t1\t2\t3\t4\t-", "bad status 'meh'"),
            ("one\tx\tfail\t-\t-\t-\t-\t-\t-\t-\t-", "bad round 'one'"),
        ];
        for (line, want) in bad_mem {
            let e = parse_stall_runs(line).unwrap_err().to_string();
            assert!(e.contains("ebpf-mem.tsv line 1: ") && e.contains(want), "{line}: {e}");
        }
        let e = parse_fd_counts("pasta-rs\tok\tmany\t1\t1\t1\t9\t9\t-").unwrap_err().to_string();
        assert!(e.contains("ebpf-fds.tsv line 1: bad fds 'many'"), "{e}");
        let e = parse_rate_runs("ebpf.tsv", "1\tpasta-rs\ttcp-rr\t4\tok\t1\t1\n").unwrap_err().to_string();
        assert!(e.contains("ebpf.tsv line 1: 7 fields, want 9"), "{e}");
    }

    #[test]
    fn ebpf_status_phrase_counts_loads_and_groups_reasons() {
        let p = ebpf_part();
        assert_eq!(
            ebpf_status_phrase(&p.status),
            "eBPF programs loaded in 1 of 3 start(s); off in 2: not permitted: failed to create map"
        );
        assert_eq!(ebpf_status_phrase(&[]), "never started");
    }

    #[test]
    fn stall_rows_hold_medians_and_block_counts_per_tool() {
        let rows = summarise_stall(&ebpf_part().stall);
        assert_eq!(rows.iter().map(|r| r.tool).collect::<Vec<_>>(), ["pasta-rs", "pasta-rs-ebpf", "loopback"]);
        let e = &rows[1];
        assert_eq!((e.runs, e.ok, e.blocked), (2, 2, 1));
        assert_eq!(e.sent, Some((142606336.0, 16777216.0, 268435456.0)));
        assert_eq!((rows[2].ok, rows[2].sent), (0, None));
    }

    #[test]
    fn ebpf_markdown_has_ratios_to_splice_the_stall_and_fd_tables() {
        let p = ebpf_part();
        let rows = summarise_splice(&p.runs, &ebpf_tools());
        let stall = summarise_stall(&p.stall);
        let o = parse_args(&os(&["--ebpf"])).unwrap();
        let md = render_ebpf_markdown(&rows, &stall, &o, &p);
        assert!(md.contains("- pasta-rs --ebpf: eBPF programs loaded in 1 of 3 start(s); off in 2: "), "{md}");
        assert!(
            md.contains("| path | pasta-rs splice | pasta-rs --ebpf | loopback | pasta-rs --ebpf / pasta-rs splice | loopback / pasta-rs splice |"),
            "{md}"
        );
        assert!(md.contains("| TCP 64-byte round trips (-t), IPv4, round trips/s | 20000 | 50000 | 60000 | 2.50 | 3.00 |"), "{md}");
        assert!(md.contains("| TCP host -> namespace (-t), IPv4, Gbit/s | - | fail | - | - | - |"), "{md}");
        assert!(md.contains("- pasta-rs --ebpf failed 1 eBPF section run(s): forwarder not running"), "{md}");
        assert!(md.contains("| pasta-rs splice | 1 of 1 | 20.0 | 22.0 | 28.6 |"), "{md}");
        assert!(md.contains("| pasta-rs --ebpf | 1 of 2 | 136 (16.0 to 256) | 138 (18.0 to 257) | 153 (19.1 to 286) |"), "{md}");
        assert!(md.contains("| loopback | 0 of 0, 1/1 fail | - | - | - |"), "{md}");
        assert!(md.contains("- loopback stalled reader, round 1: failed: stall server did not start"), "{md}");
        assert!(md.contains("| pasta-rs splice | 37303 | 74620 | 74606 | 37303 | 37303 | 1048576 |"), "{md}");
        assert!(md.contains("| pasta-rs --ebpf | 4950 | fail | - | - | - | 20000 |"), "{md}");
        assert!(md.contains("- pasta-rs --ebpf -t all -u all: exited while binding"), "{md}");
        for table in md.split("\n\n").filter(|b| b.starts_with('|')) {
            assert_columns_agree(&table_lines(table), table);
        }
    }

    #[test]
    fn ebpf_json_holds_runs_ratios_status_stall_and_fds() {
        let p = ebpf_part();
        let rows = summarise_splice(&p.runs, &ebpf_tools());
        let stall = summarise_stall(&p.stall);
        let o = parse_args(&os(&["--ebpf"])).unwrap();
        let j = render_json(
            &o,
            "",
            Duration::from_secs(1),
            (&[], &[]),
            (&rows, &stall, &p),
            (&[], &[], ""),
            &MoreJson {
                tap: (&[], &[]),
                ..MoreJson::default()
            },
        );
        assert!(j.contains("\"ebpf_runs\": [\n"), "{j}");
        assert!(j.contains("\"ratios\": {\"pasta-rs-ebpf/pasta-rs\": 2.5}"), "{j}");
        assert!(j.contains("\"ratios\": {\"loopback/pasta-rs\": 3}"), "{j}");
        assert!(j.contains("{\"round\": 2, \"state\": \"off\", \"detail\": \"not permitted: failed to create map\"}"), "{j}");
        assert!(j.contains("\"tool\": \"pasta-rs-ebpf\", \"ok\": true, \"sent\": 268435456, \"blocked\": false,"), "{j}");
        assert!(j.contains("\"tool\": \"loopback\", \"ok\": false, \"sent\": null, \"blocked\": null,"), "{j}");
        assert!(j.contains("\"tool\": \"pasta-rs-ebpf\", \"runs\": 2, \"ok\": 2, \"blocked\": 1, \"sent\": {\"median\": 142606336,"), "{j}");
        assert!(j.contains("{\"tool\": \"pasta-rs\", \"ok\": true, \"fds\": 74620, \"sockets\": 74606,"), "{j}");
        assert!(j.contains("\"nofile\": 20000, \"ports\": 4950, \"note\": \"exited while binding: too many open files\"}"), "{j}");
        assert!(j.contains("\"parts\": \"ebpf\""), "{j}");
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        assert_eq!(j.matches('[').count(), j.matches(']').count());
    }

    #[test]
    fn ebpf_section_needs_pasta_rs_among_the_tools() {
        let e = cmd_bench(&os(&["--ebpf", "--tools", "debian-pasta", "--no-install"])).unwrap_err();
        assert!(e.to_string().contains("must run as root") || e.to_string().contains("--tools must include it"), "{e}");
    }

    #[test]
    fn lab_script_ebpf_paths_match_the_run_count_and_path_ids() {
        let s = std::fs::read_to_string(workspace_root().join(LAB_SCRIPT)).unwrap();
        let line = s.lines().find_map(|l| l.strip_prefix("EBPF_PATHS=")).unwrap().trim_matches('"');
        let paths: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(paths.len() as u64, EBPF_RUNS_PER_SESSION);
        for p in paths {
            let (id, af) = p.split_once(':').unwrap();
            assert!(SplicePath::from_id(id).is_some() && (af == "4" || af == "6"), "{p}");
        }
        // the pasta-rs-ebpf sessions are told where the clients are
        assert!(s.contains("--ebpf --ebpf-cgroup \"$EBPF_CG\""));
    }

    // ---- guest part ----

    /// From a real passt-rs stream run (guestlab summary.txt, 3 s iperf3).
    const GUESTLAB_OK: &str = "\
CHECK boot           PASS           host_wall=2.619s guest_uptime=1.98s accel=tcg
CHECK tcp4_in        PASS           via=TCP4:127.0.0.1:18080 tries=1 after=4s
CHECK iperf3_out     PASS           mbps=874 secs=3 
CHECK iperf3_in      PASS           mbps=1578 secs=3 
CHECK shutdown       PASS           host_wall=38.053s qemu_rc=0
INFO  ping6_router   FAIL           rc=1 3 packets transmitted, 0 packets received, 100% packet loss
INFO  nic_opts none
SUMMARY backend=/work/main/target/release/passt mode=stream accel=tcg pass=26 fail=0 optional/skipped=0 run=/tmp/guestlab/runs/20261121-085418-stream-tcg-19192
";

    /// From a real Debian passt stream run: iperf3 passes, five other checks fail.
    const GUESTLAB_DEBIAN: &str = "\
CHECK ping4_gw       FAIL           rc=1 3 packets transmitted, 0 packets received, 100% packet loss  3 packets transmitted, 0 packets received, 100% packet loss 
CHECK iperf3_out     PASS           mbps=997 secs=3 
CHECK iperf3_in      PASS           mbps=1539 secs=3 
SUMMARY backend=/usr/bin/passt mode=stream accel=tcg pass=21 fail=5 optional/skipped=0 run=/tmp/guestlab-bench/runs/20261121-085717-stream-tcg-28017
";

    /// From a real passt-rs --vhost-user run before vhost-user existed: QEMU
    /// cannot connect, so nothing boots; iperf3_in's own line blames an
    /// inbound probe that never was.
    const GUESTLAB_VU_FAIL: &str = "\
CHECK boot           FAIL           no GLBOOT on console; qemu rc=1: qemu-system-x86_64: -chardev socket,id=c0,path=/tmp/guestlab-bench/runs/20261121-085844-vhost-user-tcg-1403/sock/backend.sock: Failed to connect to '/tmp/guestlab-bench/runs/20261121-085844-vhost-user-tcg-1403/sock/backend.sock': Connection refused 
CHECK link           FAIL           no result
CHECK iperf3_out     FAIL           no result
CHECK iperf3_in      FAIL           no echo from the guest before QEMU exited (see in-iperf3.log: )
CHECK shutdown       FAIL           guest did not finish (qemu rc=1)
INFO  nic_opts vectors=0
SUMMARY backend=/work/wt-gbench/target/release/passt mode=vhost-user accel=tcg pass=0 fail=26 optional/skipped=0 run=/tmp/guestlab-bench/runs/20261121-085844-vhost-user-tcg-1403
";
    const VU_BACKEND_TAIL: &str = "--vhost-user: the vhost-user back-end is not supported yet in this version";

    fn grun(tool: &str, dir: Dir, ok: bool, mbps: f64) -> GuestRun {
        GuestRun {
            round: 1,
            tool: tool.into(),
            dir,
            ok,
            mbps: if ok { mbps } else { 0.0 },
            accel: "tcg".into(),
            checks: Some(if ok { (26, 26) } else { (0, 26) }),
            note: if ok { String::new() } else { "boot FAIL: no GLBOOT on console".into() },
        }
    }

    #[test]
    fn guestlab_output_parses_into_checks_and_summary() {
        let out = parse_guestlab(GUESTLAB_OK);
        assert_eq!(out.checks.len(), 5);
        assert_eq!(
            out.check("iperf3_out"),
            Some(&GuestCheck { name: "iperf3_out".into(), status: "PASS".into(), detail: "mbps=874 secs=3".into() })
        );
        assert_eq!(out.check("tcp4_in").unwrap().detail, "via=TCP4:127.0.0.1:18080 tries=1 after=4s");
        // INFO lines are not checks, even with FAIL in them
        assert_eq!(out.check("ping6_router"), None);
        assert_eq!(
            out.summary,
            Some(GuestSummary {
                accel: "tcg".into(),
                pass: 26,
                fail: 0,
                other: 0,
                run_dir: "/tmp/guestlab/runs/20261121-085418-stream-tcg-19192".into(),
            })
        );
    }

    #[test]
    fn guestlab_lines_that_do_not_parse_are_ignored() {
        let text = "CHECK\nCHECK lonely\nCHECK backend_start FAIL no socket /r/sock/backend.sock; log: bind: EACCES\n\
                    SUMMARY backend=x mode=stream accel=tcg pass=many fail=0 optional/skipped=0 run=/r\n\
                    SUMMARY backend=x mode=stream accel=tcg pass=1 fail=0 optional/skipped=0\n\
                    SUMMARY backend=x mode=stream accel=tcg pass=1 fail=0 optional/skipped=0 run=\n";
        let out = parse_guestlab(text);
        assert_eq!(out.checks.len(), 1, "{:?}", out.checks);
        assert_eq!(out.checks[0].name, "backend_start");
        assert_eq!(out.checks[0].detail, "no socket /r/sock/backend.sock; log: bind: EACCES");
        assert_eq!(out.summary, None);
        assert_eq!(parse_guestlab(""), GuestlabOutput::default());
    }

    #[test]
    fn guest_throughput_comes_from_the_iperf3_pass_lines() {
        let out = parse_guestlab(GUESTLAB_OK);
        assert_eq!(guest_outcome(&out, Dir::Send, None, "x"), Ok(874.0));
        assert_eq!(guest_outcome(&out, Dir::Recv, None, "x"), Ok(1578.0));
        // other failed checks do not matter when iperf3 passed
        let deb = parse_guestlab(GUESTLAB_DEBIAN);
        assert_eq!(guest_outcome(&deb, Dir::Send, Some("irrelevant"), "x"), Ok(997.0));
        let frac = parse_guestlab("CHECK iperf3_in      PASS           mbps=9.45 secs=5 \n");
        assert_eq!(guest_outcome(&frac, Dir::Recv, None, "x"), Ok(9.45));
    }

    #[test]
    fn guest_failure_names_the_boot_failure_and_the_back_end_log() {
        let out = parse_guestlab(GUESTLAB_VU_FAIL);
        for dir in [Dir::Send, Dir::Recv] {
            let why = guest_outcome(&out, dir, Some(VU_BACKEND_TAIL), "x").unwrap_err();
            assert_eq!(
                why,
                format!(
                    "boot FAIL: no GLBOOT on console; qemu rc=1: qemu-system-x86_64: -chardev \
                     socket,id=c0,path=RUN/sock/backend.sock: Failed to connect to \
                     'RUN/sock/backend.sock': Connection refused; back-end log: {VU_BACKEND_TAIL}"
                )
            );
            assert!(why.chars().count() <= GUEST_NOTE_MAX, "{why}");
            assert!(!why.contains("in-iperf3.log"), "{why}");
        }
        // without a log, the cause alone; without the run directory, its path
        let why = guest_outcome(&out, Dir::Send, None, "x").unwrap_err();
        assert!(why.starts_with("boot FAIL: ") && !why.contains("back-end log"), "{why}");
        let no_summary: String = GUESTLAB_VU_FAIL.lines().filter(|l| !l.starts_with("SUMMARY")).collect::<Vec<_>>().join("\n");
        let why = guest_outcome(&parse_guestlab(&no_summary), Dir::Recv, Some(VU_BACKEND_TAIL), "x").unwrap_err();
        // QEMU's verdict survives the cut of its long socket paths
        assert!(why.contains("/tmp/guestlab-bench/runs/") && why.contains(" ... "), "{why}");
        assert!(why.contains("Connection refused; back-end log: --vhost-user"), "{why}");
        assert!(why.chars().count() <= GUEST_NOTE_MAX, "{why}");
        // the back-end never made its socket: that is the cause
        let bs = parse_guestlab("CHECK backend_start FAIL no socket /r/sock/backend.sock; log: bind: EACCES\n");
        assert_eq!(
            guest_outcome(&bs, Dir::Recv, Some(""), "x"),
            Err("backend_start FAIL: no socket /r/sock/backend.sock; log: bind: EACCES".into())
        );
    }

    #[test]
    fn guest_iperf3_failure_gives_its_own_detail_and_missing_lines_the_fallback() {
        let out = parse_guestlab(
            "CHECK boot           PASS           host_wall=2.6s\n\
             CHECK iperf3_out     FAIL           iperf3: error - unable to connect to server: Connection refused \n",
        );
        assert_eq!(
            guest_outcome(&out, Dir::Send, Some("log line"), "x"),
            Err("iperf3_out FAIL: iperf3: error - unable to connect to server: Connection refused".into())
        );
        assert_eq!(guest_outcome(&out, Dir::Recv, None, "guestlab.sh killed after 260 s"), Err("guestlab.sh killed after 260 s".into()));
        let timeout = parse_guestlab("CHECK run_timeout    FAIL           whole run exceeded 220s\n");
        assert_eq!(guest_outcome(&timeout, Dir::Send, None, "x"), Err("run_timeout FAIL: whole run exceeded 220s".into()));
    }

    #[test]
    fn guest_pass_without_a_positive_rate_is_a_failure() {
        let zero = parse_guestlab("CHECK iperf3_out     PASS           mbps=0.00 secs=5 \n");
        assert_eq!(guest_outcome(&zero, Dir::Send, None, "x"), Err("iperf3_out moved no data: mbps=0.00 secs=5".into()));
        for bad in ["secs=5", "mbps= secs=5", "mbps=fast", "mbps=-3", "mbps=inf"] {
            let out = parse_guestlab(&format!("CHECK iperf3_in      PASS           {bad}\n"));
            let why = guest_outcome(&out, Dir::Recv, None, "x").unwrap_err();
            assert!(why.starts_with("iperf3_in PASS without a valid mbps=: "), "{bad}: {why}");
        }
    }

    #[test]
    fn one_guestlab_run_gives_both_directions_with_its_accelerator_and_score() {
        let [send, recv] = guest_runs_of(2, "debian-passt", &parse_guestlab(GUESTLAB_DEBIAN), None, "x");
        assert_eq!(
            send,
            GuestRun {
                round: 2,
                tool: "debian-passt".into(),
                dir: Dir::Send,
                ok: true,
                mbps: 997.0,
                accel: "tcg".into(),
                checks: Some((21, 26)),
                note: String::new(),
            }
        );
        assert_eq!((recv.dir, recv.ok, recv.mbps), (Dir::Recv, true, 1539.0));
        let [s, r] = guest_runs_of(1, "passt-rs-vu", &parse_guestlab(""), None, "guestlab.sh killed after 9 s");
        assert!(!s.ok && !r.ok);
        assert_eq!((s.accel.as_str(), s.checks, s.note.as_str()), ("", None, "guestlab.sh killed after 9 s"));
    }

    #[test]
    fn guest_tsv_has_nine_fields_per_run_and_dashes_for_nothing() {
        let mut fail = grun("passt-rs-vu", Dir::Recv, false, 0.0);
        fail.note = "boot FAIL: a\tb\nc".into();
        fail.note = clip(&fail.note, GUEST_NOTE_MAX);
        fail.accel = String::new();
        fail.checks = None;
        let t = guest_tsv(&[grun("passt-rs", Dir::Send, true, 874.5), fail]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "1\tpasst-rs\tstream\tsend\tok\t874.5\ttcg\t26/26\t-");
        assert_eq!(lines[1], "1\tpasst-rs-vu\tvhost-user\trecv\tfail\t0\t-\t-\tboot FAIL: a b c");
        assert!(lines.iter().all(|l| l.split('\t').count() == 9));
    }

    #[test]
    fn clip_middle_keeps_both_ends() {
        assert_eq!(clip_middle("short\tline", 20), "short line");
        let s = format!("start {} the end", "x".repeat(100));
        let c = clip_middle(&s, 30);
        assert!(c.chars().count() <= 30, "{c}");
        assert_eq!(c, "start xxxxxxxxxxx ... the end");
    }

    #[test]
    fn clip_keeps_one_line_and_cuts_long_text() {
        assert_eq!(clip("  a\tb\r\nc  ", 20), "a b  c");
        assert_eq!(clip("abcdefghij", 10), "abcdefghij");
        assert_eq!(clip("abcdefghijk", 10), "abcdefg...");
        assert_eq!(clip("ééééé", 4), "é...");
    }

    #[test]
    fn guest_tools_option_selects_back_ends_in_column_order() {
        let o = parse_args(&os(&["--guest-tools", "passt-rs-vu, passt-rs"])).unwrap();
        let ids: Vec<&str> = o.guest_tools.iter().map(|t| t.id).collect();
        assert_eq!(ids, ["passt-rs", "passt-rs-vu"]);
        assert_eq!(parse_args(&[]).unwrap().guest_tools.len(), 3);
        let e = parse_args(&os(&["--guest-tools", "qemu-user"])).unwrap_err();
        assert!(e.to_string().contains("unknown back-end 'qemu-user'"), "{e}");
        assert!(parse_args(&os(&["--guest-tools", " , "])).is_err());
        assert!(parse_args(&os(&["--guest-tools"])).is_err());
    }

    #[test]
    fn round_robin_rotates_by_one_per_round() {
        assert_eq!(round_robin(3, 1), [0, 1, 2]);
        assert_eq!(round_robin(3, 2), [1, 2, 0]);
        assert_eq!(round_robin(3, 4), [0, 1, 2]);
        assert!(round_robin(0, 1).is_empty());
    }

    #[test]
    fn guest_timeouts_nest_and_leave_room_for_both_iperf3_runs() {
        let t = guest_timeouts(5);
        assert!(t.guest < t.run && t.run < t.outer, "{t:?}");
        // the slowest back-end seen, twice as slow: 2 x (~80 s of checks plus 2 iperf3 runs)
        assert!(t.guest >= 2 * (80 + 2 * 5), "{t:?}");
        assert_eq!(guest_timeouts(10).guest, t.guest + 10);
    }

    #[test]
    fn guest_rows_have_ratios_to_debian_passt_and_vhost_user_to_stream() {
        let mut runs = Vec::new();
        for (i, m) in [800.0, 900.0, 1000.0].into_iter().enumerate() {
            let mut r = grun("passt-rs", Dir::Send, true, m);
            r.round = i as u32 + 1;
            runs.push(r);
        }
        runs.push(grun("debian-passt", Dir::Send, true, 450.0));
        runs.push(grun("passt-rs-vu", Dir::Send, true, 1800.0));
        runs.push(grun("passt-rs", Dir::Recv, true, 1500.0));
        runs.push(grun("passt-rs-vu", Dir::Recv, false, 0.0));
        let all: Vec<&'static GuestTool> = GUEST_TOOLS.iter().collect();
        let rows = summarise_guest(&runs, &all);
        assert_eq!(rows.iter().map(|r| r.dir).collect::<Vec<_>>(), [Dir::Send, Dir::Recv]);
        let send = &rows[0];
        assert_eq!(gbps_cell(&send.cells[0]), "900 (800-1000)");
        assert_eq!(send.ratio("passt-rs", "debian-passt"), Some(2.0));
        assert_eq!(send.ratio("passt-rs-vu", "passt-rs"), Some(2.0));
        let recv = &rows[1];
        assert_eq!(gbps_cell(&recv.cells[1]), "-");
        assert_eq!(gbps_cell(&recv.cells[2]), "fail");
        assert_eq!(recv.ratio("passt-rs-vu", "passt-rs"), None);
        assert_eq!(exit_code(&[], &[], &[], &runs), ExitCode::SUCCESS);
        assert_eq!(exit_code(&[], &[], &[], &runs[6..7]), ExitCode::FAILURE);
        assert!(summarise_guest(&[], &all).is_empty());
    }

    #[test]
    fn guest_markdown_states_tcg_and_lists_failures_and_scores() {
        let mut deb = grun("debian-passt", Dir::Send, true, 997.0);
        deb.checks = Some((21, 26));
        let runs = vec![
            grun("passt-rs", Dir::Send, true, 874.0),
            deb,
            grun("passt-rs-vu", Dir::Send, false, 0.0),
            grun("passt-rs-vu", Dir::Recv, false, 0.0),
        ];
        let o = parse_args(&os(&["--only", "guest", "--rounds", "1"])).unwrap();
        let rows = summarise_guest(&runs, &o.guest_tools);
        let md = render_guest_markdown(&rows, &o, "QEMU: QEMU emulator version 7.2.22\n", &runs);
        assert!(md.starts_with("## Real guest: iperf3 through passt (QEMU under TCG: only the ratios matter)"), "{md}");
        let table = table_lines(&md);
        assert_eq!(table.len(), 4, "{md}");
        assert_columns_agree(&table, &md);
        assert_eq!(
            table[0],
            "| direction | passt-rs stream Mbit/s | Debian passt stream Mbit/s | passt-rs vhost-user Mbit/s \
             | passt-rs stream / Debian passt stream | passt-rs vhost-user / passt-rs stream |"
        );
        assert_eq!(table[2], "| guest sends (iperf3_out) | 874 | 997 | fail | 0.88 | - |");
        assert_eq!(table[3], "| guest receives (iperf3_in) | - | - | fail | - | - |");
        assert!(md.contains("- QEMU: QEMU emulator version 7.2.22"), "{md}");
        assert!(md.contains("- passt-rs vhost-user failed 2 measurement(s): boot FAIL: no GLBOOT on console"), "{md}");
        assert!(md.contains("- Debian passt stream: guestlab checks passed 21/26"), "{md}");
        // one back-end only: no ratio columns
        let o = parse_args(&os(&["--guest-tools", "passt-rs"])).unwrap();
        let md = render_guest_markdown(&summarise_guest(&runs, &o.guest_tools), &o, "", &runs);
        assert!(md.contains("| direction | passt-rs stream Mbit/s |\n|---|---|\n| guest sends (iperf3_out) | 874 |"), "{md}");
    }

    #[test]
    fn guest_accelerator_phrase_follows_the_runs() {
        let mut r = grun("passt-rs", Dir::Send, true, 1.0);
        assert_eq!(guest_accel_phrase(&[r.clone()]), "under TCG");
        assert_eq!(guest_accel_phrase(&[]), "accelerator unknown");
        let t = r.clone();
        r.accel = "kvm".into();
        assert_eq!(guest_accel_phrase(&[t, r]), "accelerators tcg, kvm");
    }

    #[test]
    fn guest_json_holds_every_run_and_ratios_per_numerator_cell() {
        let runs = vec![
            grun("passt-rs", Dir::Recv, true, 1500.0),
            grun("debian-passt", Dir::Recv, true, 1000.0),
            grun("passt-rs-vu", Dir::Recv, false, 0.0),
        ];
        let o = parse_args(&[]).unwrap();
        let rows = summarise_guest(&runs, &o.guest_tools);
        let j = render_json(
            &o,
            "",
            Duration::from_secs(1),
            (&[], &[]),
            (&[], &[], &EbpfPart::default()),
            (&rows, &runs, "QEMU: 7.2\n"),
            &MoreJson {
                tap: (&[], &[]),
                ..MoreJson::default()
            },
        );
        assert!(j.contains("\"guest_env\": [\"QEMU: 7.2\"]"), "{j}");
        assert!(j.contains("\"guest_tools\": [\"passt-rs\", \"debian-passt\", \"passt-rs-vu\"]"), "{j}");
        assert!(
            j.contains("{\"round\": 1, \"tool\": \"passt-rs\", \"mode\": \"stream\", \"dir\": \"recv\", \"check\": \"iperf3_in\", \"ok\": true, \"mbps\": 1500, \"accel\": \"tcg\", \"checks_passed\": 26, \"checks_total\": 26, \"note\": \"\"}"),
            "{j}"
        );
        assert!(j.contains("\"mode\": \"vhost-user\", \"dir\": \"recv\", \"check\": \"iperf3_in\", \"ok\": false, \"mbps\": null,"), "{j}");
        assert!(j.contains("\"tool\": \"passt-rs\", \"runs\": 1, \"ok\": 1, \"mbps_median\": 1500, \"mbps_min\": 1500, \"mbps_max\": 1500, \"ratios\": {\"passt-rs/debian-passt\": 1.5}"), "{j}");
        assert!(j.contains("\"tool\": \"passt-rs-vu\", \"runs\": 1, \"ok\": 0, \"mbps_median\": null, \"mbps_min\": null, \"mbps_max\": null, \"ratios\": {\"passt-rs-vu/passt-rs\": null}"), "{j}");
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        assert_eq!(j.matches('[').count(), j.matches(']').count());
        assert!(j.ends_with("  ]\n}\n"), "{j}");
    }

    // ---- p4, tap-rr, veth, peak memory, summary, checks, plot ----

    /// A tap-format run like [`run`] with a CPU figure, for the p4 part and checks.
    fn prun(tool: &str, mtu: u16, dir: Dir, gbps: f64, cpu_s: Option<f64>) -> Run {
        run(tool, mtu, 4, dir, true, gbps, cpu_s)
    }

    #[test]
    fn veth_runs_stand_in_every_mtu_row_and_alone_make_no_row() {
        let runs = vec![
            run("veth", 1500, 4, Dir::Send, true, 20.0, None),
            run("pasta-rs", 65520, 4, Dir::Send, true, 9.0, Some(0.5)),
            run("pasta-rs", 1500, 4, Dir::Send, true, 4.0, Some(0.8)),
        ];
        let tools = tap_tools(&all_tools());
        let rows = summarise(&runs, &tools);
        assert_eq!(rows.len(), 2, "{rows:?}");
        for r in &rows {
            let v = r.cells.iter().find(|c| c.tool == "veth").unwrap();
            assert_eq!(v.gbps.map(|g| g.0), Some(20.0));
        }
        // veth alone (IPv6 here) makes no row
        let rows = summarise(&[run("veth", 1500, 6, Dir::Recv, true, 20.0, None)], &tools);
        assert!(rows.is_empty());
    }

    #[test]
    fn p4_table_has_the_threads_ratio_and_why_threads_2_failed() {
        let mut t2_fail = run("pasta-rs-t2", 1500, 4, Dir::Send, false, 0.0, None);
        t2_fail.note = "forwarder not running: exited at start (status 1): pasta: unrecognized option '--threads'".into();
        let mut t2_busy = prun("pasta-rs-t2", 65520, Dir::Send, 12.0, None);
        t2_busy.busy = Some(0.994);
        let runs = vec![
            prun("pasta-rs", 65520, Dir::Send, 8.0, None),
            t2_busy,
            prun("debian-pasta", 65520, Dir::Send, 4.0, None),
            prun("pasta-rs", 1500, Dir::Send, 4.0, None),
            t2_fail,
        ];
        let o = parse_args(&[]).unwrap();
        let rows = summarise(&runs, &p4_tools(&o.tools));
        let md = render_p4_markdown(&rows, &o, &runs);
        let table = table_lines(&md);
        assert_columns_agree(&table, &md);
        // path, 5 x Gbit/s, 2 ratios, 4 x CPU (no veth), 2 x machine busy
        assert_eq!(bars(table[0]), 15, "{md}");
        assert!(
            table[0].contains("| pasta-rs / best peer | --threads 2 / --threads 1 |"),
            "{md}"
        );
        assert!(
            table[0].ends_with("| machine busy % pasta-rs | machine busy % pasta-rs --threads 2 |"),
            "{md}"
        );
        assert!(table[2].ends_with("| - | 99 |"), "{md}");
        assert!(table[2].starts_with("| -P 4, MTU 65520, IPv4, namespace sends | 8.00 | 12.0 | 4.00 | - | - | 2.00 | 1.50 |"), "{md}");
        assert!(
            table[3].starts_with(
                "| -P 4, MTU 1500, IPv4, namespace sends | 4.00 | fail | - | - | - | - | - |"
            ),
            "{md}"
        );
        assert!(md.contains("- pasta-rs --threads 2 failed 1 run(s): forwarder not running: exited at start (status 1): pasta: unrecognized option '--threads'"), "{md}");
    }

    #[test]
    fn taprr_lines_parse_and_udp_rows_get_cpu_per_gb() {
        let text = "1\tpasta-rs\ttap-tcp-rr\t4\tok\t50000\t5.0\t1.20\t-\n\
                    1\tpasta-rs\ttap-udp-send\t4\tok\t1000000000\t2.0\t0.50\t-\n\
                    1\tdebian-pasta\ttap-udp-send\t4\tok\t500000000\t2.0\t1.00\t-\n\
                    1\tveth\ttap-udp-send\t4\tok\t2000000000\t2.0\t-\t-\n";
        let runs = parse_rate_runs("taprr.tsv", text).unwrap();
        assert_eq!(runs[1].path, SplicePath::TapUdpSend);
        assert!((runs[1].rate() - 4.0).abs() < 1e-9);
        assert!((runs[0].rate() - 10000.0).abs() < 1e-9);
        let tools = taprr_tools(&all_tools());
        let rows = summarise_splice(&runs, &tools);
        assert_eq!(
            rows.iter().map(|r| r.path).collect::<Vec<_>>(),
            [SplicePath::TapTcpRr, SplicePath::TapUdpSend]
        );
        let udp = &rows[1];
        assert_eq!(
            udp.cells.iter().map(|c| c.cpu_s_per_gb).collect::<Vec<_>>(),
            [Some(0.5), Some(2.0), None, None]
        );
        let o = parse_args(&[]).unwrap();
        let md = render_taprr_markdown(&rows, &tools, &o, &runs);
        let table = table_lines(&md);
        assert!(
            table[0]
                .ends_with("| CPU s/GB pasta-rs | CPU s/GB Debian pasta | CPU s/GB slirp4netns |"),
            "{md}"
        );
        assert_eq!(table[3], "| tap UDP 1400-byte datagrams, namespace sends, IPv4, Gbit/s | 4.00 | 2.00 | - | 8.00 | 2.00 | - | 0.50 | 0.500 | 2.00 | - |");
        assert!(table[2].ends_with("| - | - | - |"), "{md}");
        assert!(parse_rate_runs(
            "taprr.tsv",
            "1\tpasta-rs\ttap-tcp-nope\t4\tok\t1\t1\t-\t-\n"
        )
        .is_err());
    }

    #[test]
    fn slirp4netns_cell_says_n_a_where_it_has_no_forwarding() {
        let runs = vec![
            srun("pasta-rs", SplicePath::TcpN2h, 4, true, 16.0),
            srun("debian-pasta", SplicePath::TcpN2h, 4, true, 15.0),
            srun("slirp4netns", SplicePath::TcpH2n, 4, true, 3.0),
            srun("pasta-rs", SplicePath::TcpH2n, 4, true, 16.0),
        ];
        let tools = splice_tools(&all_tools());
        let rows = summarise_splice(&runs, &tools);
        let o = parse_args(&[]).unwrap();
        let md = render_splice_markdown(&rows, &tools, &o, &runs);
        let n2h = md
            .lines()
            .find(|l| l.starts_with("| TCP namespace -> host"))
            .unwrap();
        assert!(
            n2h.contains("| 16.0 | 15.0 | n/a: no namespace -> host loopback forwarding | - |"),
            "{md}"
        );
        let h2n = md
            .lines()
            .find(|l| l.starts_with("| TCP host -> namespace"))
            .unwrap();
        assert!(h2n.contains("| 16.0 | - | 3.00 | - |"), "{md}");
        assert_eq!(
            SplicePath::TcpH2n.unsupported("slirp4netns", 6),
            Some("n/a: add_hostfwd takes IPv4 host addresses only")
        );
        assert_eq!(SplicePath::TcpH2n.unsupported("slirp4netns", 4), None);
        assert_eq!(SplicePath::TcpN2h.unsupported("debian-pasta", 4), None);
        assert!(!md.contains("fail"), "{md}");
        // and the summary's best peer for -T is Debian's pasta only
        let sum = summary_rows(&[], &[], &rows, &[], &[]);
        assert_eq!(sum.len(), 2);
        assert_eq!(sum[0].best, Some((3.0, "slirp4netns".to_string())));
        assert_eq!(sum[1].best, Some((15.0, "Debian pasta".to_string())));
    }

    #[test]
    fn rss_lines_parse_and_render_per_part_and_mtu() {
        let text = "tap\t1\tpasta-rs\t65520\t12288\ntap\t2\tpasta-rs\t65520\t14336\n\n\
                    tap\t1\tdebian-pasta\t65520\t32768\np4\t1\tpasta-rs-t2\t1500\t20480\n";
        let rss = parse_rss(text).unwrap();
        assert_eq!(rss.len(), 4);
        assert_eq!(
            rss[3],
            RssRun {
                part: "p4".into(),
                round: 1,
                tool: "pasta-rs-t2".into(),
                mtu: 1500,
                kib: 20480
            }
        );
        let md = render_rss_markdown(&rss, &p4_tools(&all_tools()));
        assert!(
            md.contains("| tap, 65520 | 13.0 (12.0-14.0) | - | 32.0 | - |"),
            "{md}"
        );
        assert!(md.contains("| p4, 1500 | - | 20.0 | - | - |"), "{md}");
        let rss = parse_rss("ebpf\t1\tpasta-rs-ebpf\t65520\t10240\n").unwrap();
        let md = render_rss_markdown(&rss, &p4_tools(&all_tools()));
        assert!(md.contains("| pasta-rs --ebpf MiB |"), "{md}");
        assert!(
            md.contains("| ebpf, 65520 | - | - | - | - | 10.0 |"),
            "{md}"
        );
        let e = parse_rss("tap\t1\tpasta-rs\t65520\n").unwrap_err();
        assert!(e.to_string().contains("rss.tsv line 1"), "{e}");
        assert!(parse_rss("tap\t1\tpasta-rs\t65520\tlots\n").is_err());
    }

    #[test]
    fn summary_puts_every_path_beside_the_best_peer_with_the_target() {
        let tap = summarise(
            &[
                prun("pasta-rs", 1500, Dir::Send, 4.4, None),
                prun("debian-pasta", 1500, Dir::Send, 2.0, None),
                prun("slirp4netns", 1500, Dir::Send, 3.0, None),
                prun("veth", 1500, Dir::Send, 30.0, None),
                prun("pasta-rs", 1500, Dir::Recv, 2.0, None),
                prun("debian-pasta", 1500, Dir::Recv, 2.0, None),
            ],
            &tap_tools(&all_tools()),
        );
        let p4 = summarise(
            &[
                prun("pasta-rs", 65520, Dir::Send, 8.0, None),
                prun("pasta-rs-t2", 65520, Dir::Send, 12.0, None),
            ],
            &p4_tools(&all_tools()),
        );
        let guest = summarise_guest(
            &[
                grun("passt-rs", Dir::Send, true, 900.0),
                grun("debian-passt", Dir::Send, true, 800.0),
                grun("passt-rs-vu", Dir::Send, false, 0.0),
            ],
            &GUEST_TOOLS.iter().collect::<Vec<_>>(),
        );
        let rows = summary_rows(&tap, &p4, &[], &[], &guest);
        let paths: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.path.as_str(), r.ours.as_str()))
            .collect();
        assert_eq!(
            paths,
            [
                ("tap TCP, MTU 1500, IPv4, namespace sends", "pasta-rs"),
                ("tap TCP, MTU 1500, IPv4, namespace receives", "pasta-rs"),
                ("tap TCP -P 4, MTU 65520, IPv4, namespace sends", "pasta-rs"),
                (
                    "tap TCP -P 4, MTU 65520, IPv4, namespace sends",
                    "pasta-rs --threads 2"
                ),
                ("guest TCP, guest sends (iperf3_out)", "passt-rs stream"),
                ("guest TCP, guest sends (iperf3_out)", "passt-rs vhost-user"),
            ]
        );
        // the best peer is the faster one, never the veth ceiling
        assert_eq!(rows[0].best, Some((3.0, "slirp4netns".to_string())));
        assert!((rows[0].ratio().unwrap() - 4.4 / 3.0).abs() < 1e-9);
        assert_eq!(rows[2].best, None);
        let md = render_summary_markdown(&rows, &[]);
        assert!(md.contains("| tap TCP, MTU 1500, IPv4, namespace sends | 4.40 Gbit/s | 3.00 Gbit/s (slirp4netns) | 1.47 | yes |"), "{md}");
        assert!(md.contains("| tap TCP, MTU 1500, IPv4, namespace receives | 2.00 Gbit/s | 2.00 Gbit/s (Debian pasta) | 1.00 | no |"), "{md}");
        assert!(md.contains("| tap TCP -P 4, MTU 65520, IPv4, namespace sends | 12.0 Gbit/s (pasta-rs --threads 2) | - | - | - |"), "{md}");
        assert!(md.contains("| guest TCP, guest sends (iperf3_out) | 900 Mbit/s (passt-rs stream) | 800 Mbit/s (Debian passt stream) | 1.12 | yes |"), "{md}");
        assert!(
            md.contains("| guest TCP, guest sends (iperf3_out) | fail (passt-rs vhost-user) |"),
            "{md}"
        );
    }

    /// Tap and p4 rows for the checks: pasta-rs at `ours` x Debian's pasta
    /// on every MTU 1500 row, `--threads 2` at `t2` x `--threads 1`, CPU
    /// s/GB of pasta-rs at `cpu` x Debian's pasta.
    fn check_rows(ours: f64, t2: f64, cpu: f64) -> (Vec<Row>, Vec<Row>) {
        let mut tap = Vec::new();
        for dir in [Dir::Send, Dir::Recv] {
            for mtu in [65520, 1500] {
                tap.push(run(
                    "pasta-rs",
                    mtu,
                    4,
                    dir,
                    true,
                    ours,
                    Some(cpu * 0.1 * 5.0 / 8.0 * ours),
                ));
                tap.push(run(
                    "debian-pasta",
                    mtu,
                    4,
                    dir,
                    true,
                    1.0,
                    Some(0.1 * 5.0 / 8.0),
                ));
            }
        }
        // 1 s runs of gbps Gbit/s: CPU s/GB = cpu_s / (gbps / 8); pasta-rs: cpu x 0.8 s/GB
        let p4 = vec![
            prun("pasta-rs", 1500, Dir::Send, 4.0, None),
            prun("pasta-rs-t2", 1500, Dir::Send, 4.0 * t2, None),
        ];
        (
            summarise(&tap, &tap_tools(&all_tools())),
            summarise(&p4, &p4_tools(&all_tools())),
        )
    }

    #[test]
    fn the_three_checks_pass_and_fail_from_the_runs() {
        let (tap, p4) = check_rows(2.5, 1.4, 0.7);
        let c = checks(&tap, &p4, &[], &[]);
        assert_eq!(
            c.iter().map(|c| c.pass).collect::<Vec<_>>(),
            [Some(true), Some(true), Some(true)],
            "{c:?}"
        );
        assert!((c[0].worst.unwrap() - 2.5).abs() < 1e-9);
        assert_eq!(
            c[0].detail,
            "MTU 1500 IPv4 send 2.50, MTU 1500 IPv4 recv 2.50"
        );
        assert!((c[1].worst.unwrap() - 1.4).abs() < 1e-9);
        assert!((c[2].worst.unwrap() - 0.7).abs() < 1e-6, "{c:?}");
        assert_eq!(c[2].detail.matches(", ").count(), 3, "{c:?}");

        let (tap, p4) = check_rows(1.5, 1.1, 0.9);
        let c = checks(&tap, &p4, &[], &[]);
        assert_eq!(
            c.iter().map(|c| c.pass).collect::<Vec<_>>(),
            [Some(false), Some(false), Some(false)],
            "{c:?}"
        );
        // the threads check says how busy the machine was with one thread
        let mut one = prun("pasta-rs", 1500, Dir::Send, 4.0, None);
        one.busy = Some(0.996);
        let p4 = summarise(&[one, prun("pasta-rs-t2", 1500, Dir::Send, 4.4, None)], &p4_tools(&all_tools()));
        let c = checks(&[], &p4, &[], &[]);
        assert_eq!(c[1].detail, "MTU 1500 IPv4 send (machine 100% busy at 1 thread) 1.10", "{c:?}");
        // without the runs: no verdict
        let c = checks(&[], &[], &[], &[]);
        assert!(
            c.iter().all(|c| c.pass.is_none() && c.worst.is_none()),
            "{c:?}"
        );
        let md = render_summary_markdown(&[], &c);
        assert!(
            md.contains("No part with pasta-rs beside a peer ran.\n\n| check |"),
            "{md}"
        );
        assert!(
            md.contains("| -P 4: pasta-rs --threads 2 / --threads 1 >= 1.3x | - | - | no data |"),
            "{md}"
        );
    }

    #[test]
    fn the_cpu_check_takes_the_worst_throughput_row_of_every_part() {
        let mut a = srun("pasta-rs", SplicePath::TcpH2n, 4, true, 16.0);
        a.cpu_s = Some(1.0); // 2 GB in 1 s: 0.5 s/GB
        let mut b = srun("debian-pasta", SplicePath::TcpH2n, 4, true, 16.0);
        b.cpu_s = Some(0.5); // 0.25 s/GB
        let mut rr = srun("pasta-rs", SplicePath::TcpRr, 4, true, 10000.0);
        rr.cpu_s = Some(1.0);
        let splice = summarise_splice(&[a, b, rr], &splice_tools(&all_tools()));
        let (tap, p4) = check_rows(2.5, 1.4, 0.5);
        let c = checks(&tap, &p4, &splice, &[]);
        assert_eq!(c[2].pass, Some(false), "{c:?}");
        assert!((c[2].worst.unwrap() - 2.0).abs() < 1e-9, "{c:?}");
        assert!(c[2].detail.ends_with("tcp-h2n IPv4 2.00"), "{c:?}");
    }

    #[test]
    fn plot_data_has_one_bar_per_ratio_and_the_script_the_target_line() {
        let rows = vec![
            SumRow {
                path: "tap \"x\"".into(),
                unit: "Gbit/s",
                ours: "pasta-rs".into(),
                ours_median: Some(3.0),
                best: Some((2.0, "slirp4netns".into())),
            },
            SumRow {
                path: "p4".into(),
                unit: "Gbit/s",
                ours: "pasta-rs --threads 2".into(),
                ours_median: Some(3.0),
                best: Some((3.0, "Debian pasta".into())),
            },
            SumRow {
                path: "none".into(),
                unit: "Gbit/s",
                ours: "pasta-rs".into(),
                ours_median: None,
                best: Some((2.0, "slirp4netns".into())),
            },
        ];
        assert_eq!(
            plot_data(&rows),
            "\"tap 'x'\"\t1.5\n\"p4 (pasta-rs --threads 2)\"\t1\n"
        );
        let gp = plot_script(
            std::path::Path::new("/t/d.tsv"),
            std::path::Path::new("/t/b.png"),
            2,
        );
        assert!(gp.contains("set terminal pngcairo noenhanced size 1400,164"), "{gp}");
        assert!(gp.contains("set output '/t/b.png'"), "{gp}");
        assert!(gp.contains("set yrange [1.7:-0.7]"), "{gp}");
        assert!(
            gp.contains("set arrow from 1.1, graph 0 to 1.1, graph 1"),
            "{gp}"
        );
        assert!(gp.contains("plot '/t/d.tsv' using"), "{gp}");
        assert!(
            render_plot(&rows[2..], std::path::Path::new("/nonexistent"))
                .starts_with("no plot: no path")
        );
    }

    #[test]
    fn lab_script_taprr_paths_match_the_path_ids() {
        let s = std::fs::read_to_string(workspace_root().join(LAB_SCRIPT)).unwrap();
        let line = s
            .lines()
            .find_map(|l| l.strip_prefix("TAPRR_PATHS="))
            .unwrap()
            .trim_matches('"');
        let ids: Vec<&str> = line
            .split_whitespace()
            .map(|p| p.split_once(':').unwrap().0)
            .collect();
        assert_eq!(ids, TAPRR_PATHS.iter().map(|p| p.id()).collect::<Vec<_>>());
        assert!(s.contains("[[ $id == pasta-rs-t2 ]] && extra+=(--threads 2)"));
    }

    #[test]
    fn json_holds_p4_tap_rr_rss_summary_and_checks() {
        let o = parse_args(&[]).unwrap();
        let p4_runs = vec![
            prun("pasta-rs", 1500, Dir::Send, 4.0, Some(1.0)),
            prun("pasta-rs-t2", 1500, Dir::Send, 6.0, None),
        ];
        let p4 = summarise(&p4_runs, &p4_tools(&o.tools));
        let rr_runs = parse_rate_runs(
            "taprr.tsv",
            "1\tpasta-rs\ttap-tcp-crr\t4\tok\t5000\t5.0\t1.0\t-\n",
        )
        .unwrap();
        let rr = summarise_splice(&rr_runs, &taprr_tools(&o.tools));
        let rss = parse_rss("p4\t1\tpasta-rs\t1500\t12000\n").unwrap();
        let sum = summary_rows(&[], &p4, &[], &rr, &[]);
        let c = checks(&[], &p4, &[], &rr);
        let j = render_json(
            &o,
            "",
            Duration::from_secs(1),
            (&[], &[]),
            (&[], &[], &EbpfPart::default()),
            (&[], &[], ""),
            &MoreJson {
                tap: (&[], &[]),
                p4: (&p4, &p4_runs),
                taprr: (&rr, &rr_runs),
                rss: &rss,
                sum_rows: &sum,
                checks: &c,
            },
        );
        assert!(
            j.contains("\"p4_runs\": [\n    {\"round\": 1, \"tool\": \"pasta-rs\", \"mtu\": 1500"),
            "{j}"
        );
        assert!(
            j.contains("\"tool\": \"pasta-rs-t2\", \"runs\": 1, \"ok\": 1, \"gbps_median\": 6"),
            "{j}"
        );
        assert!(j.contains("\"ratio_to_threads_1\": 1.5, \"machine_busy_median\": null}"), "{j}");
        assert!(j.contains("\"tap_rr_runs\": [\n    {\"round\": 1, \"tool\": \"pasta-rs\", \"path\": \"tap-tcp-crr\""), "{j}");
        assert!(j.contains("\"rss\": [\n    {\"part\": \"p4\", \"round\": 1, \"tool\": \"pasta-rs\", \"mtu\": 1500, \"vmhwm_kib\": 12000}"), "{j}");
        assert!(j.contains("\"overall_summary\": [\n    {\"path\": \"tap TCP -P 4, MTU 1500, IPv4, namespace sends\""), "{j}");
        assert!(j.contains("{\"check\": \"-P 4: pasta-rs --threads 2 / --threads 1 >= 1.3x\", \"worst\": 1.5, \"pass\": true,"), "{j}");
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        assert_eq!(j.matches('[').count(), j.matches(']').count());
    }
}
