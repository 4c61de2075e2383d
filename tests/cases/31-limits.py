#!/usr/bin/env python3
"""31-limits helper: fill pasta's flow table (or its descriptors) with real
connections, check that one more of each kind is refused promptly, and that
the earlier ones still move data byte-exact.

One process makes every socket, switching network namespaces with setns(2)
before creating each one (a socket stays in the namespace it was made in):
"ns" is pasta's namespace (/proc/NS_PID/ns/net), "up" the lab's upstream
namespace (/run/netns/up), "host" the lab's own.

    31-limits.py full --ns-pid PID --fwd-tcp PORT --fwd-udp PORT --max N
    31-limits.py fds  --ns-pid PID --fwd-tcp PORT --pasta-pid PID --spare K

Servers (threads of this process): an echo server in "up" on R4/R6 port
ECHO_TCP, and one in "ns" on PORT (the forwarded port).

full: N flows are opened: N-2 outbound TCP connections from ns to R4, one
inbound from up to the host's forwarded port (through the tap), one from
host loopback to the forwarded port (spliced). Then, each must be refused
within REFUSE_S seconds: one more outbound TCP (ECONNREFUSED), one more
inbound through the tap and one spliced (ECONNRESET or EOF before any data),
UDP from ns to R4 and R6 (EHOSTUNREACH / EACCES from the ICMP error), ping
from ns (non-zero exit, "filtered"/"prohibited"), a datagram to the
forwarded UDP port (only counted: nothing to observe). Then every earlier
connection echoes 1 MiB byte-exact, and after they close a new outbound
connection works again.

fds: the caller has lowered pasta's RLIMIT_NOFILE to its descriptors in use
plus K: outbound connections are opened until one is refused (ECONNREFUSED
within REFUSE_S; at most K + 8 tried), then an inbound one through the tap
and a spliced one must be reset, UDP must get the ICMP error; pasta's CPU
time over IDLE_S idle seconds must stay under IDLE_CPU_S; the established
connections echo 1 MiB byte-exact.

Output: "ok: ..." lines, and "FAIL: ..." lines (exit status 1).
"""

import argparse
import ctypes
import errno
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time

R4, R6 = "198.51.100.1", "2001:db8:100::1"
H4 = "192.0.2.2"
ECHO_TCP = 10700
REFUSE_S = 3.0
IDLE_S = 3.0
IDLE_CPU_S = 0.3
MIB = 1 << 20

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
NS_FILES = {}
failed = []


def say(*a):
    print(*a, flush=True)


def ok(msg):
    say("ok: " + msg)


def fail(msg):
    say("FAIL: " + msg)
    failed.append(msg)


def enter(name):
    fd = os.open(NS_FILES[name], os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns {name}: {os.strerror(e)}")
    finally:
        os.close(fd)


def sock_in(name, fam, typ):
    enter(name)
    try:
        return socket.socket(fam, typ)
    finally:
        enter("host")


def fam_of(a):
    return socket.AF_INET6 if ":" in a else socket.AF_INET


def echo_server(ns, binds, port):
    def conn(c):
        with c:
            try:
                while True:
                    b = c.recv(65536)
                    if not b:
                        break
                    c.sendall(b)
            except OSError:
                pass

    def loop(ls):
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=conn, args=(c,), daemon=True).start()

    for a in binds:
        ls = sock_in(ns, fam_of(a), socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if ":" in a:
            ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        ls.bind((a, port))
        ls.listen(256)
        threading.Thread(target=loop, args=(ls,), daemon=True).start()


def connect(ns, addr, port, timeout=REFUSE_S):
    s = sock_in(ns, fam_of(addr), socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((addr, port))
    return s


def roundtrip(s, what):
    s.settimeout(5)
    s.sendall(b"hello")
    got = b""
    while len(got) < 5:
        b = s.recv(5 - len(got))
        if not b:
            break
        got += b
    if got != b"hello":
        fail(f"{what}: echo returned {got!r}")
        return False
    return True


def bulk(s, what):
    """Send 1 MiB, read it back: byte-exact (sha256)."""
    data = os.urandom(MIB)
    s.settimeout(15)
    t = threading.Thread(target=s.sendall, args=(data,), daemon=True)
    t.start()
    h, n = hashlib.sha256(), 0
    try:
        while n < MIB:
            b = s.recv(65536)
            if not b:
                break
            h.update(b)
            n += len(b)
    except OSError as e:
        fail(f"{what}: 1 MiB echo: {e}")
        return
    t.join(15)
    if n != MIB or h.digest() != hashlib.sha256(data).digest():
        fail(f"{what}: 1 MiB echo: {n} bytes back, sha256 {'matches' if h.digest() == hashlib.sha256(data).digest() else 'differs'}")
    else:
        ok(f"{what}: 1 MiB echoed byte-exact")


def expect_refused_connect(ns, addr, port, what):
    t0 = time.monotonic()
    try:
        s = connect(ns, addr, port)
    except ConnectionRefusedError:
        ok(f"{what}: ECONNREFUSED after {time.monotonic() - t0:.2f} s")
        return
    except OSError as e:
        fail(f"{what}: {e} after {time.monotonic() - t0:.2f} s, not ECONNREFUSED")
        return
    fail(f"{what}: connected, not refused")
    s.close()


def expect_reset(ns, addr, port, what):
    """The listener accepts (kernel backlog); pasta must then reset it."""
    t0 = time.monotonic()
    try:
        s = connect(ns, addr, port)
        s.settimeout(REFUSE_S)
        s.sendall(b"x")
        b = s.recv(1)
    except ConnectionResetError:
        ok(f"{what}: reset after {time.monotonic() - t0:.2f} s")
        return
    except ConnectionRefusedError:
        ok(f"{what}: refused after {time.monotonic() - t0:.2f} s")
        return
    except OSError as e:
        fail(f"{what}: {e} after {time.monotonic() - t0:.2f} s, not a reset")
        return
    if b == b"":
        ok(f"{what}: closed before any data after {time.monotonic() - t0:.2f} s")
    else:
        fail(f"{what}: got data {b!r}, not refused")
    s.close()


def expect_udp_unreach(addr, what):
    want = errno.EHOSTUNREACH if ":" not in addr else errno.EACCES
    s = sock_in("ns", fam_of(addr), socket.SOCK_DGRAM)
    s.settimeout(REFUSE_S)
    t0 = time.monotonic()
    try:
        s.connect((addr, 7))
        s.send(b"refuse me\n")
        b = s.recv(100)
        fail(f"{what}: got an answer {b!r}")
    except OSError as e:
        dt = time.monotonic() - t0
        if e.errno == want:
            ok(f"{what}: {errno.errorcode[e.errno]} (ICMP administratively prohibited) after {dt:.2f} s")
        else:
            fail(f"{what}: {e} after {dt:.2f} s, want {errno.errorcode[want]}")
    finally:
        s.close()


def expect_ping_refused(ns_pid):
    r = subprocess.run(["timeout", "10", "nsenter", "-t", str(ns_pid), "-n", "ping", "-n", "-c1", "-W3", R4],
                       capture_output=True, text=True)
    out = (r.stdout + r.stderr).replace("\n", " | ")
    if r.returncode != 0 and ("filtered" in out.lower() or "prohibited" in out.lower()):
        ok(f"ping: refused: {out}")
    else:
        fail(f"ping {R4}: status {r.returncode}, {out}")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        st = f.read().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["full", "fds"])
    ap.add_argument("--ns-pid", type=int, required=True)
    ap.add_argument("--fwd-tcp", type=int, required=True)
    ap.add_argument("--fwd-udp", type=int, default=0)
    ap.add_argument("--max", type=int, default=0)
    ap.add_argument("--pasta-pid", type=int, default=0)
    ap.add_argument("--spare", type=int, default=0)
    a = ap.parse_args()
    NS_FILES["host"] = "/proc/self/ns/net"
    host_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    NS_FILES["host"] = f"/proc/self/fd/{host_fd}"
    NS_FILES["ns"] = f"/proc/{a.ns_pid}/ns/net"
    NS_FILES["up"] = "/run/netns/up"

    echo_server("up", [R4, R6], ECHO_TCP)
    echo_server("ns", ["0.0.0.0", "::"], a.fwd_tcp)
    time.sleep(0.2)

    held = []
    if a.mode == "full":
        for i in range(a.max - 2):
            s = connect("ns", R4, ECHO_TCP, 10)
            if roundtrip(s, f"outbound {i + 1}"):
                held.append((f"outbound {i + 1}", s))
        s = connect("up", H4, a.fwd_tcp, 10)
        if roundtrip(s, "inbound through the tap"):
            held.append(("inbound through the tap", s))
        s = connect("host", "127.0.0.1", a.fwd_tcp, 10)
        if roundtrip(s, "inbound spliced"):
            held.append(("inbound spliced", s))
        if len(held) != a.max:
            fail(f"only {len(held)} of {a.max} connections set up")
            return
        ok(f"{a.max} connections fill the table")
        expect_refused_connect("ns", R4, ECHO_TCP, "outbound TCP beyond the table")
        expect_refused_connect("ns", R6, ECHO_TCP, "outbound TCP/IPv6 beyond the table")
        expect_reset("up", H4, a.fwd_tcp, "inbound TCP through the tap beyond the table")
        expect_reset("host", "127.0.0.1", a.fwd_tcp, "inbound spliced TCP beyond the table")
        expect_udp_unreach(R4, "UDP beyond the table")
        expect_udp_unreach(R6, "UDP/IPv6 beyond the table")
        expect_ping_refused(a.ns_pid)
        if a.fwd_udp:
            u = sock_in("up", socket.AF_INET, socket.SOCK_DGRAM)
            u.sendto(b"dropped\n", (H4, a.fwd_udp))
            u.close()
        for what, s in held:
            bulk(s, what)
        for _, s in held:
            s.close()
        # Freed once both sides closed: a new connection works again.
        deadline = time.monotonic() + 10
        while True:
            try:
                s = connect("ns", R4, ECHO_TCP, 3)
                if roundtrip(s, "outbound after the others closed"):
                    ok("a new outbound connection works once the others closed")
                s.close()
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    fail(f"no new connection within 10 s of closing the others: {e}")
                    break
                time.sleep(0.3)
    else:
        refused = False
        for i in range(a.spare + 8):
            try:
                s = connect("ns", R4, ECHO_TCP, REFUSE_S)
            except ConnectionRefusedError:
                ok(f"outbound TCP {i + 1}: ECONNREFUSED (out of descriptors) after {i} connections")
                refused = True
                break
            except OSError as e:
                fail(f"outbound TCP {i + 1}: {e}, not ECONNREFUSED")
                break
            if roundtrip(s, f"outbound {i + 1}"):
                held.append((f"outbound {i + 1}", s))
        if not refused:
            fail(f"no outbound connection refused after {a.spare + 8}")
        expect_refused_connect("ns", R4, ECHO_TCP, "outbound TCP again")
        expect_reset("up", H4, a.fwd_tcp, "inbound TCP through the tap out of descriptors")
        expect_reset("host", "127.0.0.1", a.fwd_tcp, "inbound spliced TCP out of descriptors")
        expect_udp_unreach(R4, "UDP out of descriptors")
        c0 = cpu_s(a.pasta_pid)
        time.sleep(IDLE_S)
        c1 = cpu_s(a.pasta_pid)
        if c1 - c0 > IDLE_CPU_S:
            fail(f"pasta used {c1 - c0:.2f} s of CPU in {IDLE_S} idle seconds (spinning?)")
        else:
            ok(f"pasta idle: {c1 - c0:.2f} s of CPU in {IDLE_S} s")
        for what, s in held:
            bulk(s, what)
        for _, s in held:
            s.close()
    say(f"summary: {len(failed)} failure(s)")


if __name__ == "__main__":
    main()
    sys.exit(1 if failed else 0)
