//! # Theory of operation
//!
//! Runner for the integration cases in `tests/cases/*.sh`. Each case is a bash
//! script that drives the pasta binary under test with real clients (busybox
//! udhcpc, ISC dhclient, ping, dig, socat, a Python AF_PACKET frame writer).
//! [`run_case`] starts `tests/lab/run.sh CASE`, which:
//!
//! 1. checks the prerequisites (root, tools, an executable `PASTA_BIN`) and
//!    exits with status 3 and a message if one is missing;
//! 2. enters fresh `unshare --net --mount --pid --fork` namespaces under a hard
//!    `timeout` (`LAB_TIMEOUT`, default 120 s), so every process of the case
//!    dies with the PID namespace;
//! 3. builds the lab there (`tests/lab/lab.sh`): a veth pair to a private
//!    "upstream" namespace with dnsmasq and UDP echo servers, a private
//!    `/etc/resolv.conf`, nothing routed to any real network;
//! 4. sources the case, which exits 0 on success or prints `FAIL: ...` followed
//!    by the logs it collected and exits 1.
//!
//! Cases are independent and may run in parallel: each has its own namespaces
//! and its own work directory (`$TMPDIR/passt-lab.CASE.XXXXXX`, removed on
//! success, kept and named in the output on failure).
//!
//! Environment: `PASTA_BIN` (binary under test, default
//! `<workspace>/target/release/pasta`), `PASST_BIN` (passt for the
//! passt-mode cases, default: `passt` next to `PASTA_BIN`),
//! `PASST_SKIP_PRIV_TESTS=1` (skip every case instead of failing when not
//! root), `LAB_TIMEOUT`, `LAB_KEEP=1`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Every case script in `tests/cases/`, by file stem, in run order.
///
/// `tests/integration.rs` has one `#[test]` per entry; the unit test
/// `every_case_script_is_listed` keeps this list and the directory in step.
pub const CASES: &[&str] = &[
    "00-lab",
    "01-dhcp4",
    "02-dhcp6-slaac",
    "03-config-net",
    "04-ping",
    "05-dns",
    "06-udp",
    "07-daemon",
    "08-cli",
    "09-robustness",
    "10-local-mode",
    "11-ping-group",
    "12-tcp-bulk",
    "13-tcp-halfclose",
    "14-tcp-many",
    "15-tcp-refused",
    "16-tcp-rss",
    "17-tcp-iperf3",
    "18-tcp-gateway",
    "19-fwd-tcp",
    "20-fwd-tcp-splice",
    "21-fwd-udp",
    "22-fwd-podman",
    "23-fwd-cli",
    "24-fwd-splice-only",
    "25-passt-stream",
    "26-ebpf-tc",
    "27-ebpf-sockmap",
    "28-ebpf-lookup",
    "29-ebpf-fallback",
    "30-sandbox",
    "31-limits",
    "32-soak",
    "33-logging",
    "34-pcap",
    "35-torture",
    "36-offload",
    "37-threads",
    "38-tcp-delack",
    "39-config-copy-freebind",
    "40-outbound-if",
];

/// Why a case did not pass.
#[derive(Debug)]
pub enum CaseError {
    /// The runner script could not be started at all (spawn error text).
    Spawn(String),
    /// The tests need root (for `unshare --net --mount --pid`); the effective
    /// UID found is given.
    NotRoot(u32),
    /// The case (or the lab, or a prerequisite check) exited non-zero.
    /// `status` is the exit status (`None` when killed by a signal), `output`
    /// everything the case printed.
    Failed {
        /// Case name.
        case: String,
        /// Exit status of `run.sh`: 1 case failure, 2 lab set-up failure, 3
        /// missing prerequisite, 124/137 hard timeout.
        status: Option<i32>,
        /// Combined stdout and stderr of the run.
        output: String,
    },
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaseError::Spawn(e) => write!(f, "cannot start tests/lab/run.sh: {e}"),
            CaseError::NotRoot(uid) => write!(
                f,
                "integration tests need root for unshare --net --mount --pid (effective uid {uid}); \
                 run them as root (cargo xtask test) or set PASST_SKIP_PRIV_TESTS=1 to skip them"
            ),
            CaseError::Failed { case, status, output } => {
                let what = match status {
                    Some(3) => "missing prerequisite".to_string(),
                    Some(2) => "lab set-up failed".to_string(),
                    Some(124) | Some(137) => "hard timeout".to_string(),
                    Some(s) => format!("exit status {s}"),
                    None => "killed by a signal".to_string(),
                };
                write!(f, "case {case} failed ({what}); its output:\n{output}")
            }
        }
    }
}

impl std::error::Error for CaseError {}

/// The workspace root (parent of this package's directory).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The binary under test: `$PASTA_BIN` if set, else
/// `<workspace>/target/release/pasta` (built by
/// `cargo build --release -p passt-user`).
pub fn pasta_bin() -> PathBuf {
    match std::env::var_os("PASTA_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join("target/release/pasta"),
    }
}

/// True when `PASST_SKIP_PRIV_TESTS=1`: privileged cases are skipped, not failed.
pub fn skip_privileged() -> bool {
    std::env::var("PASST_SKIP_PRIV_TESTS").is_ok_and(|v| v == "1")
}

/// Effective UID from `/proc/self/status` (line `Uid: real effective saved fs`).
///
/// Returns `None` if the file or the line cannot be read.
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Run one case (a name from [`CASES`]) in its own lab.
///
/// Returns the case's output on success.
///
/// # Errors
/// [`CaseError::NotRoot`] when not running as root, [`CaseError::Spawn`] when
/// `bash` cannot be started, [`CaseError::Failed`] with the output when the
/// case, the lab or a prerequisite check fails.
pub fn run_case(case: &str) -> Result<String, CaseError> {
    run_case_with(case, "")
}

/// Cases of [`CASES`] run again with pasta's worker threads
/// (`PASTA_EXTRA="--threads 2"`, see tests/lab/lab.sh): the tap and TCP/UDP
/// data path, DHCP/NDP, forwarding and offloads. Left out: cases whose
/// checks depend on one thread (`-p`, task counts, `--max-flows`, which is
/// per worker), passt, eBPF, the soak and the torture.
pub const THREADS_CASES: &[&str] = &[
    "01-dhcp4",
    "02-dhcp6-slaac",
    "03-config-net",
    "05-dns",
    "06-udp",
    "07-daemon",
    "09-robustness",
    "11-ping-group",
    "12-tcp-bulk",
    "13-tcp-halfclose",
    "14-tcp-many",
    "15-tcp-refused",
    "16-tcp-rss",
    "17-tcp-iperf3",
    "18-tcp-gateway",
    "19-fwd-tcp",
    "20-fwd-tcp-splice",
    "21-fwd-udp",
    "22-fwd-podman",
    "36-offload",
    "38-tcp-delack",
];

/// [`run_case`] with `extra` added to every pasta command line of the case
/// (`PASTA_EXTRA`, word-split by tests/lab/lab.sh; empty: none).
///
/// # Errors
/// As [`run_case`].
pub fn run_case_with(case: &str, extra: &str) -> Result<String, CaseError> {
    run_case_env(case, extra, &[])
}

/// [`run_case_with`] with the variables `env` (name, value) set for the
/// case and everything it starts (e.g. `PASST_RS_NO_OFFLOAD=1`).
///
/// # Errors
/// As [`run_case`].
pub fn run_case_env(case: &str, extra: &str, env: &[(&str, &str)]) -> Result<String, CaseError> {
    match effective_uid() {
        Some(0) => {}
        Some(uid) => return Err(CaseError::NotRoot(uid)),
        None => {
            return Err(CaseError::Spawn(
                "cannot read the effective uid from /proc/self/status".into(),
            ))
        }
    }
    let root = workspace_root();
    let out = Command::new("bash")
        .arg(root.join("tests/lab/run.sh"))
        .arg(case)
        .env("PASTA_BIN", pasta_bin())
        .env("PASTA_EXTRA", extra)
        .envs(env.iter().copied())
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CaseError::Spawn(e.to_string()))?;
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(output)
    } else {
        Err(CaseError::Failed {
            case: case.to_string(),
            status: out.status.code(),
            output,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_script_is_listed() {
        let dir = workspace_root().join("tests/cases");
        let mut found: Vec<String> = std::fs::read_dir(&dir)
            .expect("tests/cases exists")
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".sh").map(str::to_string)
            })
            .collect();
        found.sort();
        let listed: Vec<String> = CASES.iter().map(|s| s.to_string()).collect();
        assert_eq!(found, listed, "tests/cases/*.sh and CASES differ");
    }

    #[test]
    fn threads_cases_are_cases() {
        for c in THREADS_CASES {
            assert!(CASES.contains(c), "{c} is not in CASES");
        }
    }

    #[test]
    fn every_listed_case_has_an_integration_test() {
        let src = std::fs::read_to_string(workspace_root().join("tests/tests/integration.rs"))
            .expect("tests/tests/integration.rs readable");
        for case in CASES {
            assert!(
                src.contains(&format!("case(\"{case}\")")),
                "no #[test] runs case {case}"
            );
        }
    }

    #[test]
    fn display_names_missing_prerequisites() {
        let e = CaseError::Failed {
            case: "01-dhcp4".into(),
            status: Some(3),
            output: "run.sh: missing tools: dig\n".into(),
        };
        let s = e.to_string();
        assert!(
            s.starts_with("case 01-dhcp4 failed (missing prerequisite)"),
            "{s}"
        );
        assert!(s.ends_with("missing tools: dig\n"), "{s}");
    }

    #[test]
    fn not_root_message_mentions_the_skip_switch() {
        assert!(CaseError::NotRoot(1000)
            .to_string()
            .contains("PASST_SKIP_PRIV_TESTS=1"));
    }

    #[test]
    fn effective_uid_is_readable() {
        assert!(effective_uid().is_some());
    }
}
