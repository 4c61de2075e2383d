#!/usr/bin/env python3
"""27-ebpf-sockmap.py - server and clients for tests/cases/27-ebpf-sockmap.sh.

Every wait is bounded. Data is a deterministic pattern: byte i of the stream
with seed S is (i * 131 + S) & 0xff over blocks, so both ends can hash what
they expect without storing it.

    serve PORT
        listens on 0.0.0.0 and [::] (IPv6 only) port PORT (threads, one
        per connection; pasta's splice connects to the namespace's own
        address); the client's first line picks the mode:
        "xfer N"   send N bytes (seed 2) and shut down, while reading to EOF;
                   then print "xfer PEER: got LEN SHA"
        "echo"     echo every byte until EOF, then close
        "hc N"     read to EOF, then send the sha256 of what came (64 hex
                   digits) and N bytes (seed 3), then close
        "rst"      read one more line, then close with SO_LINGER 0
        "watch"    read until EOF or error; print "watch PEER: EOF|ECONNRESET"
        "stall"    read nothing; hold the connection until the client goes
    pattern-sha N SEED          print "N SHA" of N bytes of the pattern
    xfer ADDR PORT N            send N bytes (seed 1) in chunks, pausing 0.3 s
                                after the first 40 MiB (past pasta's 8 MiB
                                budget, so that bytes went through its relay
                                and a switch back happens mid-stream), shut
                                down, read to EOF; print
                                "result got=LEN SHA seconds=T"
    rtt ADDR PORT COUNT         COUNT 64-byte round trips; print
                                "result rtts=COUNT per_second=R"
    hc ADDR PORT N M            send N bytes (seed 1), shut down, read the
                                reply: "result reply=SHA tail=LEN SHA"
    rst ADDR PORT               "result errno=ECONNRESET" when the server's
                                abort reaches us
    abort ADDR PORT             send a line, close with SO_LINGER 0
    stall ADDR PORT SECONDS     after 0.5 s (the server read its line),
                                non-blocking sends until no progress for
                                SECONDS; print "result sent=BYTES
                                tcp_mem_kib=DELTA memavail_kib=DELTA"
                                (kernel TCP memory, /proc/net/sockstat, and
                                MemAvailable before and after)
"""

import hashlib
import os
import select
import socket
import struct
import sys
import threading
import time

BLOCK = 1 << 16


def block(seed):
    return bytes(((i * 131 + seed) & 0xff) for i in range(BLOCK))


def chunks(n, seed):
    b = block(seed)
    while n > 0:
        k = min(n, BLOCK)
        yield b[:k]
        n -= k


def pattern_sha(n, seed):
    h = hashlib.sha256()
    for c in chunks(n, seed):
        h.update(c)
    return h.hexdigest()


def readline(s):
    line = b""
    while not line.endswith(b"\n"):
        c = s.recv(1)
        if not c:
            break
        line += c
    return line.decode().strip()


def read_all(s):
    h, n = hashlib.sha256(), 0
    while True:
        d = s.recv(1 << 20)
        if not d:
            return n, h.hexdigest()
        h.update(d)
        n += len(d)


def handle(c, peer):
    c.settimeout(120)
    try:
        words = readline(c).split()
        mode = words[0] if words else ""
        if mode == "xfer":
            n = int(words[1])
            res = {}
            t = threading.Thread(target=lambda: res.update(got=read_all(c)))
            t.start()
            for ch in chunks(n, 2):
                c.sendall(ch)
            c.shutdown(socket.SHUT_WR)
            t.join(120)
            got = res.get("got", (0, "none"))
            print(f"xfer {peer}: got {got[0]} {got[1]}", flush=True)
        elif mode == "echo":
            while True:
                d = c.recv(1 << 16)
                if not d:
                    break
                c.sendall(d)
        elif mode == "hc":
            n = int(words[1])
            _, sha = read_all(c)
            c.sendall(sha.encode())
            for ch in chunks(n, 3):
                c.sendall(ch)
        elif mode == "rst":
            readline(c)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif mode == "watch":
            try:
                read_all(c)
                print(f"watch {peer}: EOF", flush=True)
            except ConnectionResetError:
                print(f"watch {peer}: ECONNRESET", flush=True)
        elif mode == "stall":
            c.settimeout(None)
            # Hold it until the client goes away (its RST or FIN), reading
            # nothing: poll for an error or hang-up only.
            p = select.poll()
            p.register(c, select.POLLRDHUP)
            p.poll(120_000)
    except OSError as e:
        print(f"server {peer}: {e}", flush=True)
    finally:
        c.close()


def serve(port):
    ls = []
    for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            # Not dual-stack: IPv4 peers would be seen as mapped addresses.
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, port))
        s.listen(64)
        ls.append(s)
        print(f"listening {addr} {port}", flush=True)

    def loop(s):
        while True:
            c, a = s.accept()
            threading.Thread(target=handle, args=(c, a[0]), daemon=True).start()

    for s in ls[1:]:
        threading.Thread(target=loop, args=(s,), daemon=True).start()
    loop(ls[0])


def connect(addr, port):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.create_connection((addr, port), timeout=10)
    assert s.family == fam
    s.settimeout(120)
    return s


def xfer(addr, port, n):
    s = connect(addr, port)
    s.sendall(f"xfer {n}\n".encode())
    res = {}
    t0 = time.monotonic()
    t = threading.Thread(target=lambda: res.update(got=read_all(s)))
    t.start()
    sent = 0
    for ch in chunks(n, 1):
        s.sendall(ch)
        sent += len(ch)
        if sent == 40 << 20:
            time.sleep(0.3)
    s.shutdown(socket.SHUT_WR)
    t.join(120)
    got = res.get("got", (0, "none"))
    print(f"result got={got[0]} {got[1]} seconds={time.monotonic() - t0:.2f}")


def rtt(addr, port, count):
    s = connect(addr, port)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"echo\n")
    msg = bytes(range(64))
    t0 = time.monotonic()
    for _ in range(count):
        s.sendall(msg)
        got = b""
        while len(got) < 64:
            d = s.recv(64 - len(got))
            if not d:
                print("result early EOF")
                return
            got += d
        if got != msg:
            print("result mismatch")
            return
    dt = time.monotonic() - t0
    s.close()
    print(f"result rtts={count} per_second={count / dt:.0f}")


def hc(addr, port, n, m):
    s = connect(addr, port)
    s.sendall(f"hc {m}\n".encode())
    for ch in chunks(n, 1):
        s.sendall(ch)
    s.shutdown(socket.SHUT_WR)
    reply = b""
    while len(reply) < 64:
        d = s.recv(64 - len(reply))
        if not d:
            break
        reply += d
    ln, sha = read_all(s)
    print(f"result reply={reply.decode()} tail={ln} {sha}")


def rst(addr, port):
    s = connect(addr, port)
    s.sendall(b"rst\nbye\n")
    try:
        d = s.recv(10)
        print(f"result got {d!r}")
    except ConnectionResetError:
        print("result errno=ECONNRESET")
    except OSError as e:
        print(f"result {e}")


def abort(addr, port):
    s = connect(addr, port)
    s.sendall(b"watch\n" + b"x" * 1000)
    time.sleep(0.3)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    print("result aborted")


def tcp_mem_kib():
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                w = line.split()
                return int(w[w.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    return 0


def mem_avail_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def stall(addr, port, seconds):
    m0, a0 = tcp_mem_kib(), mem_avail_kib()
    s = connect(addr, port)
    s.sendall(b"stall\n")
    # Let the server read its line first: with --ebpf, the direction is
    # then switched to redirect, so the flood fills its budget first.
    time.sleep(0.5)
    s.setblocking(False)
    buf = block(1)
    sent, last = 0, time.monotonic()
    p = select.poll()
    p.register(s, select.POLLOUT)
    t_end = time.monotonic() + 60
    while time.monotonic() - last < seconds and time.monotonic() < t_end:
        try:
            k = s.send(buf)
            sent += k
            last = time.monotonic()
        except BlockingIOError:
            p.poll(100)
    m1, a1 = tcp_mem_kib(), mem_avail_kib()
    print(f"result sent={sent} tcp_mem_kib={m1 - m0} memavail_kib={a0 - a1}")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def main():
    a = sys.argv[1:]
    cmd = a[0] if a else ""
    if cmd == "serve":
        serve(int(a[1]))
    elif cmd == "pattern-sha":
        print(f"{a[1]} {pattern_sha(int(a[1]), int(a[2]))}")
    elif cmd == "xfer":
        xfer(a[1], int(a[2]), int(a[3]))
    elif cmd == "rtt":
        rtt(a[1], int(a[2]), int(a[3]))
    elif cmd == "hc":
        hc(a[1], int(a[2]), int(a[3]), int(a[4]))
    elif cmd == "rst":
        rst(a[1], int(a[2]))
    elif cmd == "abort":
        abort(a[1], int(a[2]))
    elif cmd == "stall":
        stall(a[1], int(a[2]), float(a[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
