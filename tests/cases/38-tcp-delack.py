#!/usr/bin/env python3
"""38-tcp-delack.py - small TCP writes for 38-tcp-delack.sh.

  serve ADDR PORT
      TCP server (one thread per connection, for 300 s at most). The first
      byte of a connection picks what it does:
        "R"  echo: every 64-byte request is answered with its 64 bytes
             reversed, until end of file;
        "T"  sink: reads to end of file, then answers "got LEN SHA256HEX"
             and closes.
      Prints "listening ADDR PORT" once it accepts.

  rr ADDR PORT N
      one connection (TCP_NODELAY), N requests of 64 bytes, each waiting
      for its answer; prints "rr ok N" if every answer was right, else
      "rr bad ..." with the first that was not.

  trickle ADDR PORT N SIZE GAP_MS
      one connection with Nagle's algorithm on (the default), N writes of
      SIZE bytes GAP_MS apart with no answer in between, then end of file;
      prints "trickle ok LEN" if the sink's "got" line matches what was
      sent, else "trickle bad ...".

Every client gives up after 20 s. Standard library only.
"""
import hashlib, socket, sys, threading, time


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def read_exact(c, n):
    b = b""
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d:
            return b
        b += d
    return b


def handle(c):
    with c:
        mode = read_exact(c, 1)
        if mode == b"R":
            while True:
                req = read_exact(c, 64)
                if len(req) < 64:
                    return
                c.sendall(req[::-1])
        elif mode == b"T":
            h, n = hashlib.sha256(), 0
            while True:
                d = c.recv(65536)
                if not d:
                    break
                h.update(d)
                n += len(d)
            c.sendall(f"got {n} {h.hexdigest()}\n".encode())


def serve(addr, port):
    s = socket.socket(family(addr), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(16)
    s.settimeout(1)
    print(f"listening {addr} {port}", flush=True)
    end = time.monotonic() + 300
    while time.monotonic() < end:
        try:
            c, _ = s.accept()
        except socket.timeout:
            continue
        c.settimeout(30)
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def connect(addr, port):
    c = socket.create_connection((addr, port), timeout=20)
    c.settimeout(20)
    return c


def rr(addr, port, n):
    c = connect(addr, port)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.sendall(b"R")
    for i in range(n):
        req = f"req{i}-".encode().ljust(64, b"r")
        c.sendall(req)
        got = read_exact(c, 64)
        if got != req[::-1]:
            print(f"rr bad: request {i} answered {got!r}")
            return
    c.close()
    print(f"rr ok {n}")


def trickle(addr, port, n, size, gap_ms):
    c = connect(addr, port)
    c.sendall(b"T")
    h, sent = hashlib.sha256(), 0
    for i in range(n):
        d = f"w{i}-".encode().ljust(size, b"t")
        c.sendall(d)
        h.update(d)
        sent += len(d)
        time.sleep(gap_ms / 1000)
    c.shutdown(socket.SHUT_WR)
    line = b""
    while not line.endswith(b"\n"):
        d = c.recv(256)
        if not d:
            break
        line += d
    want = f"got {sent} {h.hexdigest()}"
    got = line.decode(errors="replace").strip()
    print(f"trickle ok {sent}" if got == want else f"trickle bad: sink said '{got}', want '{want}'")


def main(a):
    if len(a) == 3 and a[0] == "serve":
        serve(a[1], int(a[2]))
    elif len(a) == 4 and a[0] == "rr":
        rr(a[1], int(a[2]), int(a[3]))
    elif len(a) == 6 and a[0] == "trickle":
        trickle(a[1], int(a[2]), int(a[3]), int(a[4]), float(a[5]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
