#!/usr/bin/env python3
"""32-soak helper: mixed traffic through pasta for SECS seconds, sampling
pasta's VmRSS and descriptors; then wait for its descriptors to come back.

    32-soak.py --ns-pid PID --pasta-pid PID --fwd-tcp PORT --secs SECS
               [--sample S] [--fd-wait S] [--rss-tol-kib K]

Sockets are made in the lab's namespaces as in 31-limits.py (whose helpers
this imports): "ns" = pasta's, "up" = upstream, "host" = the lab's.
Traffic, one thread each, until SECS are over:
  churn    short TCP connections ns -> R4 (1 KiB echoed, closed), IPv4/IPv6
  bulk     ns -> R4: 8 MiB each way at once per connection (echo)
  splice   host 127.0.0.1/::1 -> forwarded port (spliced): 256 KiB echoed
  inbound  up -> 192.0.2.2:forwarded port (through the tap): 64 KiB echoed
  udp      ns -> R4/R6 UDP echo, from a pool of 16 source ports
  ping     ping -c 3 to R4 and R6 from ns
Every echo is checked byte for byte; a mismatch, or a thread with no
successful round at all, fails.

Samples every S seconds (default 5): "sample T rss_kib sockets pipes".
RSS: the first sample at or after the warm-up (SECS / 5) is the reference;
every later one must stay within --rss-tol-kib (default 4096) of it.
Descriptors: within --fd-wait seconds (default 200: UDP flows are closed
after 180 s idle, ping flows after 60 s, on a one-second tick) pasta must
hold no socket of a flow any more (ss in both namespaces: nothing but
listeners), and its sockets and pipes must be back to their counts before
the traffic plus at most the bounded caches that outlive flows: 64 unbound
sockets made in the namespace ahead of spliced connections, 128 pipe ends
of empty pipes kept for the splice path.
"""

import argparse
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time

spec = importlib.util.spec_from_file_location("limits", os.path.join(os.path.dirname(__file__), "31-limits.py"))
L = importlib.util.module_from_spec(spec)
spec.loader.exec_module(L)

UDP_ECHO = 10707
stats = {}
stats_lock = threading.Lock()
sock_lock = threading.Lock()   # setns is per thread, but keep socket making serial
stop = threading.Event()


def bump(name, key):
    with stats_lock:
        stats.setdefault(name, {"ok": 0, "err": 0, "bad": 0, "last": ""})
        stats[name][key] += 1


def note(name, e):
    with stats_lock:
        stats.setdefault(name, {"ok": 0, "err": 0, "bad": 0, "last": ""})
        stats[name]["last"] = str(e)


def connect(ns, addr, port):
    with sock_lock:
        return L.connect(ns, addr, port, 10)


def echo_exact(s, data):
    s.settimeout(20)
    t = threading.Thread(target=s.sendall, args=(data,), daemon=True)
    t.start()
    got = bytearray()
    while len(got) < len(data):
        b = s.recv(min(1 << 20, len(data) - len(got)))
        if not b:
            break
        got += b
    t.join(20)
    return bytes(got) == data


def tcp_worker(name, ns, addrs, port, size, pause):
    i = 0
    while not stop.is_set():
        addr = addrs[i % len(addrs)]
        i += 1
        try:
            s = connect(ns, addr, port)
            with s:
                data = os.urandom(size)
                bump(name, "ok" if echo_exact(s, data) else "bad")
        except OSError as e:
            bump(name, "err")
            note(name, e)
        stop.wait(pause)


def udp_echo_server():
    for a in (L.R4, L.R6):
        with sock_lock:
            s = L.sock_in("up", L.fam_of(a), socket.SOCK_DGRAM)
        s.bind((a, UDP_ECHO))

        def loop(s=s):
            while True:
                b, peer = s.recvfrom(65536)
                s.sendto(b, peer)

        threading.Thread(target=loop, daemon=True).start()


def udp_worker():
    socks = []
    for i in range(16):
        a = (L.R4, L.R6)[i % 2]
        with sock_lock:
            s = L.sock_in("ns", L.fam_of(a), socket.SOCK_DGRAM)
        s.settimeout(2)
        s.connect((a, UDP_ECHO))
        socks.append(s)
    i = 0
    while not stop.is_set():
        s = socks[i % len(socks)]
        i += 1
        data = os.urandom(512)
        try:
            s.send(data)
            b = s.recv(65536)
            bump("udp", "ok" if b == data else "bad")
        except OSError as e:
            bump("udp", "err")
            note("udp", e)
        stop.wait(0.05)


def ping_worker(ns_pid):
    i = 0
    while not stop.is_set():
        a = (L.R4, L.R6)[i % 2]
        i += 1
        r = subprocess.run(["timeout", "10", "nsenter", "-t", str(ns_pid), "-n", "ping", "-n", "-q", "-c3", "-i0.2", "-W2", a],
                           capture_output=True, text=True)
        bump("ping", "ok" if r.returncode == 0 else "err")
        if r.returncode:
            note("ping", r.stdout + r.stderr)
        stop.wait(1)


def fds(pid):
    n_sock = n_pipe = 0
    for f in os.listdir(f"/proc/{pid}/fd"):
        try:
            t = os.readlink(f"/proc/{pid}/fd/{f}")
        except OSError:
            continue
        n_sock += t.startswith("socket:")
        n_pipe += t.startswith("pipe:")
    return n_sock, n_pipe


# Bounded caches that outlive flows: pasta's pool of unbound TCP sockets made
# in the namespace for spliced connections (netns::POOL = 32 per family) and
# of empty pipes for the splice path (tcp::splice::POOL_MAX = 64 pipes).
NS_POOL = 64
PIPE_POOL = 128


def flow_sockets(pid, ns_pid):
    """pasta's sockets that belong to a flow (anything but a listener, as
    ss shows them in the lab's namespace and in pasta's)."""
    left = []
    for where, pre in (("host", []), ("ns", ["nsenter", "-t", str(ns_pid), "-n"])):
        r = subprocess.run(["timeout", "5"] + pre + ["ss", "-tuanp"], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            f = line.split()
            if f"pid={pid}," in line and len(f) > 1 and f[1] not in ("LISTEN", "UNCONN"):
                left.append(f"{where}: {line}")
    return left


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ns-pid", type=int, required=True)
    ap.add_argument("--pasta-pid", type=int, required=True)
    ap.add_argument("--fwd-tcp", type=int, required=True)
    ap.add_argument("--secs", type=int, required=True)
    ap.add_argument("--sample", type=float, default=5)
    ap.add_argument("--fd-wait", type=int, default=200)
    ap.add_argument("--rss-tol-kib", type=int, default=4096)
    a = ap.parse_args()
    host_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    L.NS_FILES["host"] = f"/proc/self/fd/{host_fd}"
    L.NS_FILES["ns"] = f"/proc/{a.ns_pid}/ns/net"
    L.NS_FILES["up"] = "/run/netns/up"
    pid = a.pasta_pid
    failed = []

    L.echo_server("up", [L.R4, L.R6], L.ECHO_TCP)
    L.echo_server("ns", ["0.0.0.0", "::"], a.fwd_tcp)
    udp_echo_server()
    time.sleep(0.3)
    base_sock, base_pipe = fds(pid)
    L.say(f"baseline: rss_kib {rss_kib(pid)} sockets {base_sock} pipes {base_pipe}")

    workers = [
        threading.Thread(target=tcp_worker, args=("churn", "ns", [L.R4, L.R6], L.ECHO_TCP, 1024, 0.02)),
        threading.Thread(target=tcp_worker, args=("bulk", "ns", [L.R4, L.R6], L.ECHO_TCP, 8 << 20, 0.1)),
        threading.Thread(target=tcp_worker, args=("splice", "host", ["127.0.0.1", "::1"], a.fwd_tcp, 256 << 10, 0.05)),
        threading.Thread(target=tcp_worker, args=("inbound", "up", [L.H4, "2001:db8:2::2"], a.fwd_tcp, 64 << 10, 0.1)),
        threading.Thread(target=udp_worker),
        threading.Thread(target=ping_worker, args=(a.ns_pid,)),
    ]
    for w in workers:
        w.daemon = True
        w.start()
    t0 = time.monotonic()
    warm = a.secs / 5
    ref = None
    peak = 0
    while True:
        t = time.monotonic() - t0
        if t >= a.secs:
            break
        r = rss_kib(pid)
        s, p = fds(pid)
        L.say(f"sample {t:.0f} {r} {s} {p}")
        if t >= warm:
            if ref is None:
                ref = r
                L.say(f"warm-up over after {t:.0f} s: reference rss_kib {ref}")
            peak = max(peak, r)
        time.sleep(a.sample)
    stop.set()
    for w in workers:
        w.join(30)
    with stats_lock:
        for name, st in sorted(stats.items()):
            L.say(f"traffic {name}: {st['ok']} ok, {st['err']} errors, {st['bad']} mismatches; last error: {st['last'][:200]!r}")
            if st["bad"]:
                failed.append(f"{name}: {st['bad']} echoes not byte-exact")
            if st["ok"] == 0:
                failed.append(f"{name}: no successful round")
            elif st["err"] > st["ok"] / 100 + 2:
                failed.append(f"{name}: {st['err']} errors for {st['ok']} rounds")
        for name in ("churn", "bulk", "splice", "inbound", "udp", "ping"):
            if name not in stats:
                failed.append(f"{name}: never ran")
    if ref is None:
        failed.append("no sample after the warm-up")
    elif peak > ref + a.rss_tol_kib:
        failed.append(f"RSS grew after the warm-up: {ref} KiB -> peak {peak} KiB (tolerance {a.rss_tol_kib} KiB)")
    else:
        L.say(f"ok: RSS flat after the warm-up: reference {ref} KiB, peak {peak} KiB (+{peak - ref}, tolerance {a.rss_tol_kib})")

    t1 = time.monotonic()
    while True:
        s, p = fds(pid)
        held = flow_sockets(pid, a.ns_pid)
        if s <= base_sock + NS_POOL and p <= base_pipe + PIPE_POOL and not held:
            L.say(f"ok: flows gone after {time.monotonic() - t1:.0f} s: no connected socket left; sockets {s} "
                  f"(baseline {base_sock} + at most {NS_POOL} pooled), pipes {p} (baseline {base_pipe} + at most {PIPE_POOL} pooled)")
            break
        if time.monotonic() - t1 > a.fd_wait:
            failed.append(f"descriptors not back within {a.fd_wait} s: sockets {s} (baseline {base_sock} + {NS_POOL}), "
                          f"pipes {p} (baseline {base_pipe} + {PIPE_POOL}), {len(held)} flow sockets")
            for line in held:
                L.say(f"left: {line}")
            break
        time.sleep(2)
    L.say(f"final: rss_kib {rss_kib(pid)}")
    for f in failed:
        L.say("FAIL: " + f)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
