//! # Theory of operation
//!
//! One `#[test]` per script in `tests/cases/` (see `passt_tests::CASES`). Each
//! runs its case in a private lab through `tests/lab/run.sh` and fails with the
//! case's full output (what it saw, and the logs it collected) when the script
//! exits non-zero. Not root: fail with a clear message, or skip when
//! `PASST_SKIP_PRIV_TESTS=1`. The binary under test is `$PASTA_BIN`, default
//! `<workspace>/target/release/pasta` (build it first: `cargo xtask test` does).

fn case(name: &str) {
    if passt_tests::skip_privileged() {
        eprintln!("skipped {name}: PASST_SKIP_PRIV_TESTS=1");
        return;
    }
    match passt_tests::run_case(name) {
        // printed output is shown by the test harness with --nocapture only
        Ok(output) => print!("{output}"),
        Err(e) => panic!("{e}"),
    }
}

/// The lab itself (veth, upstream echo) works without pasta.
#[test]
fn lab_fixture() {
    case("00-lab")
}

/// busybox udhcpc gets address, mask, router, DNS, search domain, MTU.
#[test]
fn dhcp4() {
    case("01-dhcp4")
}

/// SLAAC address and link-local default route from RA; dhclient -6 IA_NA, DNS, search.
#[test]
fn dhcp6_slaac() {
    case("02-dhcp6-slaac")
}

/// --config-net: name, addresses, default routes, MTU 65520, lo up.
#[test]
fn config_net() {
    case("03-config-net")
}

/// ICMP/ICMPv6 echo to the gateway (host loopback) and to a remote host.
#[test]
fn ping() {
    case("04-ping")
}

/// DNS to the gateway resolver (A, AAAA) and through --dns-forward 169.254.1.1.
#[test]
fn dns() {
    case("05-dns")
}

/// UDP echo to a remote host and to the gateway (host loopback), IPv4 and IPv6.
#[test]
fn udp() {
    case("06-udp")
}

/// PID form with -P, --netns (Podman's options), --no-netns-quit, SIGTERM.
#[test]
fn daemon() {
    case("07-daemon")
}

/// Unknown option, --version, rejected -t auto.
#[test]
fn cli() {
    case("08-cli")
}

/// 2000 malformed frames on the tap, then ping/UDP still work; drop counters.
#[test]
fn robustness() {
    case("09-robustness")
}

/// Host without uplink: 169.254.2.1/16, default routes via 169.254.2.2 and
/// fe80::1, both mapped to the host's loopback (ping, UDP echo).
#[test]
fn local_mode() {
    case("10-local-mode")
}

/// ping_group_range "1 0": pings fail, one log line names the sysctl; control run.
#[test]
fn ping_group() {
    case("11-ping-group")
}

/// 200 MiB download and upload over TCP (curl), IPv4 and IPv6, compared by sha256.
#[test]
fn tcp_bulk() {
    case("12-tcp-bulk")
}

/// TCP half-close both ways: client FIN then reply; server FIN then client still sends.
#[test]
fn tcp_halfclose() {
    case("13-tcp-halfclose")
}

/// 500 concurrent TCP connections, each echoing a token, IPv4 and IPv6.
#[test]
fn tcp_many() {
    case("14-tcp-many")
}

/// Connecting to a closed port (remote host, gateway) is refused within 1 s; control to an open port.
#[test]
fn tcp_refused() {
    case("15-tcp-refused")
}

/// pasta's VmRSS stays bounded while the namespace writes to a peer that never reads.
#[test]
fn tcp_rss() {
    case("16-tcp-rss")
}

/// iperf3 3 s each direction (-R), IPv4 and IPv6, completes; bitrates printed.
#[test]
fn tcp_iperf3() {
    case("17-tcp-iperf3")
}

/// TCP to the gateway address reaches the host's loopback (echo vs a decoy, 64 MiB each way).
#[test]
fn tcp_gateway() {
    case("18-tcp-gateway")
}

/// -t in every specifier form, via splice (host loopback) and tap (real client address), 10 MiB each way.
#[test]
fn fwd_tcp() {
    case("19-fwd-tcp")
}

/// Splice path: half-close and RST both ways, 200 concurrent connections, -T, -t auto, --no-splice.
#[test]
fn fwd_tcp_splice() {
    case("20-fwd-tcp-splice")
}

/// -u via splice and tap (addresses, source ports, reply sources), translated; -U to host loopback.
#[test]
fn fwd_udp() {
    case("21-fwd-udp")
}

/// Podman's --netns invocation with forwards, --map-guest-addr, --dns-forward; rootlesskit's forms.
#[test]
fn fwd_podman() {
    case("22-fwd-podman")
}

/// Invalid forwarding specifiers and option conflicts: exit 1, one line, nothing started.
#[test]
fn fwd_cli() {
    case("23-fwd-cli")
}

/// --splice-only: no tap device, loopback traffic forwarded both ways, nothing else.
#[test]
fn fwd_splice_only() {
    case("24-fwd-splice-only")
}

/// passt mode with a socketpair guest: DHCP/ARP/NDP/DHCPv6, UDP/ICMP/TCP, stream framing, -1, --fd, daemon, socket probing, pcap.
#[test]
fn passt_stream() {
    case("25-passt-stream")
}

/// --ebpf as root: the tap classifier answers ARP and NS in the kernel (the tap reader sees none), program logs reach pasta's log; userspace answers without it.
#[test]
fn ebpf_tc() {
    case("26-ebpf-tc")
}

/// pasta --ebpf: spliced TCP short-circuited by sockops + sk_msg (200 MB each way byte-exact, mid-stream switch, half-close, RST, round trips, bounded memory with a stalled reader), against splice alone.
#[test]
fn ebpf_sockmap() {
    case("27-ebpf-sockmap")
}

/// --ebpf: SK_LOOKUP steers -t/-u all/auto (and -T/-U) to one socket per protocol and address; 1000 random ports, held ports left alone, fallback to per-port sockets.
#[test]
fn ebpf_lookup() {
    case("28-ebpf-lookup")
}

/// --ebpf without privileges (user namespace, capsh), through the helper daemon (killed mid-run, uid refused) and with a missing helper: one log line, splice() and userspace answers.
#[test]
fn ebpf_fallback() {
    case("29-ebpf-fallback")
}

/// The sandbox of the running daemon (pasta spawn, pasta --netns, passt --runas and as root): every thread with no capabilities, NoNewPrivs, seccomp; empty root, no leaked fds; traffic still works; a forbidden syscall (debug build) is refused.
#[test]
fn sandbox() {
    case("30-sandbox")
}

/// --max-flows: a full table refuses one more TCP (RST), spliced and inbound connection (reset), UDP and ping (ICMP administratively prohibited), counted; out of descriptors likewise, without a busy loop; earlier flows byte-exact.
#[test]
fn limits() {
    case("31-limits")
}

/// A bounded soak (SOAK_SECS, default 300) of mixed traffic: pasta's RSS stays flat after warm-up and its descriptors return to the baseline.
#[test]
fn soak() {
    case("32-soak")
}

/// Logging: --log-size bounds the log file (cut at line boundaries, newest kept) under --trace traffic; -q, -d, --trace; syslog when daemonized without -l; --stats prints only after events.
#[test]
fn logging() {
    case("33-logging")
}

/// -p/--pcap for pasta and passt: tcpdump reads both directions of ARP/NDP, ping, UDP and a TCP connection; records whole, time stamps in range.
#[test]
fn pcap() {
    case("34-pcap")
}

/// 1,000,000 random and mutated frames into pasta's tap while 4 transfers
/// (TCP both ways over the tap, spliced -t forward, UDP) run byte-exact;
/// the same flood through a relay into passt's socket during a download.
#[test]
fn torture() {
    case("35-torture")
}

/// Tap offloads at MTU 1500: ethtool shows checksum and segmentation
/// offloads on; TCP byte-exact both ways (IPv4, IPv6) in super-frames both
/// ways (pasta's counters), a UDP_SEGMENT send split into datagrams, ping.
#[test]
fn offload() {
    case("36-offload")
}

/// pasta --threads 2: a 2-queue tap, 3+ threads, 8 transfers out of the
/// namespace and 4 into it at once (sha256 both ways), UDP, ping,
/// connections idle past tun's flow expiry, both workers carrying flows.
#[test]
fn threads() {
    case("37-threads")
}

/// Delayed ACKs: small requests answered one by one and small writes
/// nobody answers (IPv4, IPv6), every byte right, no retransmission in the
/// namespace; the counters show ACKs delayed, carried and sent at the
/// deadline.
#[test]
fn tcp_delack() {
    case("38-tcp-delack")
}

/// --config-net copies the host interface's addresses and routes, or one
/// address and the default routes with --no-copy-addrs --no-copy-routes;
/// -t on an address the host doesn't have: refused without --freebind
/// (no process left behind), forwarded with it once the address exists.
#[test]
fn config_copy_freebind() {
    case("39-config-copy-freebind")
}

/// --outbound-if4/6: upstream sees the chosen interface's addresses over
/// TCP and UDP, the namespace gets them, ping works; one family alone; an
/// unknown interface refused.
#[test]
fn outbound_if() {
    case("40-outbound-if")
}

/// 36-offload again with the tap offloads off (`PASST_RS_NO_OFFLOAD=1`):
/// plain frames of at most one MTU both ways, as with the stream back-end.
#[test]
fn offload_off() {
    if passt_tests::skip_privileged() {
        eprintln!("skipped offload_off: PASST_SKIP_PRIV_TESTS=1");
        return;
    }
    match passt_tests::run_case_env("36-offload", "", &[("PASST_RS_NO_OFFLOAD", "1")]) {
        Ok(output) => print!("{output}"),
        Err(e) => panic!("36-offload with PASST_RS_NO_OFFLOAD=1: {e}"),
    }
}

/// The data-path cases again with `--threads 2` (passt_tests::THREADS_CASES),
/// one after the other; fails with every failing case's output.
#[test]
fn with_threads() {
    if passt_tests::skip_privileged() {
        eprintln!("skipped with_threads: PASST_SKIP_PRIV_TESTS=1");
        return;
    }
    let mut failed = Vec::new();
    for c in passt_tests::THREADS_CASES {
        match passt_tests::run_case_with(c, "--threads 2") {
            Ok(output) => print!("{output}"),
            Err(e) => failed.push(format!("{c} with --threads 2: {e}")),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}
