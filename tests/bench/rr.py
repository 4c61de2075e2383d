#!/usr/bin/env python3
"""rr.py - request/response and connection-rate load for the splice bench.

Started by tests/bench/lab-bench.sh (cargo xtask bench) inside its private
lab; stdlib only, because netperf is not in Debian main.

Servers (run until killed; the lab bounds them with timeout(1)):
  rr.py serve-tcp PORT [HOST]
                         echo every byte back on every accepted connection
  rr.py serve-udp PORT   echo every datagram back to its sender
  rr.py stall-server PORT HOST READ_BYTES
                         accept connections, read the first READ_BYTES of
                         each, then stop reading (the connection stays open)
Without HOST they bind [::]:PORT with IPV6_V6ONLY off, so they answer IPv4
and IPv6; with HOST (the eBPF section: dual-stack listeners are left on
splice) only HOST:PORT (IPV6_V6ONLY on for an IPv6 HOST).

Clients (run for SECS seconds, then print "COUNT SECONDS" on stdout, exit 0;
on failure print the reason on stderr and exit 1):
  rr.py tcp-rr  HOST PORT SECS   one connection, TCP_NODELAY, 64-byte request,
                                 wait for the 64-byte echo: COUNT transactions
  rr.py udp-rr  HOST PORT SECS   64-byte datagram, wait for its echo (1 s per
                                 try; a lost datagram is retried, not counted)
  rr.py tcp-crr HOST PORT SECS   connect, send 1 byte, read 1 byte, close:
                                 COUNT connections
  rr.py stall-client HOST PORT CAP_BYTES IDLE_S
      send 64 KiB writes to a stall-server as fast as the socket takes them
      until none fits for IDLE_S seconds (blocked) or CAP_BYTES were sent;
      print "SENT BLOCKED SECS TCP_MEM0 TCP_MEM1 AVAIL0 AVAIL1": bytes sent,
      1 if it blocked (0: reached the cap), seconds until then, kernel TCP
      memory in bytes (the "TCP: ... mem" pages of /proc/net/sockstat times
      the page size, a count for the whole machine) and MemAvailable of
      /proc/meminfo in bytes, read before connecting (0) and once blocked or
      at the cap, with the connection still open (1)
"""

import os
import selectors
import socket
import sys
import time

MSG_LEN = 64
# per-operation timeout of the clients, seconds
OP_TIMEOUT_S = 3.0


def tcp_listener(port, host):
    """A listening TCP socket on [::]:port, dual-stack, or on host:port."""
    lsock = socket.socket(family(host) if host else socket.AF_INET6, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if host:
        if family(host) == socket.AF_INET6:
            lsock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        lsock.bind((host, port))
    else:
        lsock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        lsock.bind(("::", port))
    lsock.listen(1024)
    return lsock


def serve_tcp(port, host=None):
    lsock = tcp_listener(port, host)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, None)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                try:
                    conn, _ = lsock.accept()
                except (BlockingIOError, ConnectionAbortedError):
                    continue
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ, "conn")
                continue
            conn = key.fileobj
            try:
                data = conn.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(conn)
                conn.close()
                continue
            try:
                conn.setblocking(True)
                conn.sendall(data)
                conn.setblocking(False)
            except OSError:
                sel.unregister(conn)
                conn.close()


def serve_udp(port):
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", port))
    while True:
        data, peer = sock.recvfrom(65536)
        try:
            sock.sendto(data, peer)
        except OSError:
            pass


def stall_server(port, host, read_bytes):
    lsock = tcp_listener(port, host)
    held = []
    while True:
        conn, _ = lsock.accept()
        held.append(conn)
        left = read_bytes
        while left > 0:
            chunk = conn.recv(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)


def tcp_mem_bytes():
    """Kernel TCP memory: /proc/net/sockstat "TCP: ... mem PAGES", in bytes."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            w = line.split()
            if w and w[0] == "TCP:" and "mem" in w:
                return int(w[w.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE")
    raise ValueError("no TCP mem in /proc/net/sockstat")


def mem_available_bytes():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise ValueError("no MemAvailable in /proc/meminfo")


def stall_client(host, port, cap_bytes, idle_s):
    mem0, avail0 = tcp_mem_bytes(), mem_available_bytes()
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.settimeout(OP_TIMEOUT_S)
    s.connect((host, port))
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_WRITE)
    chunk = bytes(65536)
    sent = 0
    blocked = False
    t0 = time.monotonic()
    last = t0
    while sent < cap_bytes:
        if not sel.select(timeout=0.2):
            if time.monotonic() - last >= idle_s:
                blocked = True
                break
            continue
        try:
            n = s.send(chunk[: min(len(chunk), cap_bytes - sent)])
        except BlockingIOError:
            n = 0
        if n > 0:
            sent += n
            last = time.monotonic()
        elif time.monotonic() - last >= idle_s:
            blocked = True
            break
    secs = (last if blocked else time.monotonic()) - t0
    mem1, avail1 = tcp_mem_bytes(), mem_available_bytes()
    s.close()
    return sent, blocked, secs, mem0, mem1, avail0, avail1


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def recv_exactly(sock, n):
    got = b""
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        if not chunk:
            raise ConnectionError("connection closed by peer after %d of %d bytes" % (len(got), n))
        got += chunk
    return got


def tcp_rr(host, port, secs):
    msg = bytes(range(MSG_LEN))
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.settimeout(OP_TIMEOUT_S)
    s.connect((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    count = 0
    t0 = time.monotonic()
    end = t0 + secs
    now = t0
    while now < end:
        s.sendall(msg)
        if recv_exactly(s, MSG_LEN) != msg:
            raise ValueError("echo differs from the request")
        count += 1
        now = time.monotonic()
    s.close()
    return count, now - t0


def udp_rr(host, port, secs):
    msg = bytes(range(MSG_LEN))
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.settimeout(1.0)
    s.connect((host, port))
    count = lost = 0
    t0 = time.monotonic()
    end = t0 + secs
    now = t0
    while now < end:
        s.send(msg)
        try:
            if s.recv(65536) != msg:
                raise ValueError("echo differs from the request")
            count += 1
        except socket.timeout:
            lost += 1
            if count == 0 and lost >= 3:
                raise ConnectionError("no echo to 3 datagrams")
        now = time.monotonic()
    s.close()
    return count, now - t0


def tcp_crr(host, port, secs):
    fam = family(host)
    count = 0
    t0 = time.monotonic()
    end = t0 + secs
    now = t0
    while now < end:
        s = socket.socket(fam, socket.SOCK_STREAM)
        try:
            s.settimeout(OP_TIMEOUT_S)
            s.connect((host, port))
            s.sendall(b"x")
            if recv_exactly(s, 1) != b"x":
                raise ValueError("echo differs from the request")
        finally:
            s.close()
        count += 1
        now = time.monotonic()
    return count, now - t0


def main(argv):
    try:
        mode = argv[1]
        if mode == "serve-tcp":
            serve_tcp(int(argv[2]), argv[3] if len(argv) > 3 else None)
            return 0
        if mode == "serve-udp":
            serve_udp(int(argv[2]))
            return 0
        if mode == "stall-server":
            stall_server(int(argv[2]), argv[3], int(argv[4]))
            return 0
        if mode == "stall-client":
            host, port, cap, idle = argv[2], int(argv[3]), int(argv[4]), float(argv[5])
            try:
                r = stall_client(host, port, cap, idle)
            except (OSError, ValueError) as e:
                print("%s %s:%d: %s" % (mode, host, port, e), file=sys.stderr)
                return 1
            print("%d %d %.6f %d %d %d %d" % (r[0], int(r[1]), r[2], r[3], r[4], r[5], r[6]))
            return 0
        client = {"tcp-rr": tcp_rr, "udp-rr": udp_rr, "tcp-crr": tcp_crr}[mode]
        host, port, secs = argv[2], int(argv[3]), float(argv[4])
    except (IndexError, KeyError, ValueError):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        count, elapsed = client(host, port, secs)
    except (OSError, ValueError) as e:
        print("%s %s:%d: %s" % (mode, host, port, e), file=sys.stderr)
        return 1
    if count == 0:
        print("%s %s:%d: no transaction completed" % (mode, host, port), file=sys.stderr)
        return 1
    print("%d %.6f" % (count, elapsed))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
