#!/usr/bin/env python3
"""tcplab.py - TCP servers and clients for the lab's TCP cases (tests/cases/1*).

Servers (run in the upstream namespace or on the host's loopback; every one
prints "listening ADDR PORT" per address once it accepts, and exits by itself
after --lifetime seconds):

    serve-http      --bind A [--bind A...] --port P [--mib N]
        GET /blob        N MiB (default 200) of the deterministic blob (seed "down")
        GET /blob.sha256 its sha256 (hex) and length: "HEX LEN"
        PUT or POST *    reads the body (Content-Length or chunked, answers
                         "Expect: 100-continue") and replies "HEX LEN" of it
        One request per connection (Connection: close).
    serve-echo      --bind ... --port P [--prefix S]
        per line received: replies S + line; closes after the client's EOF.
        Prints "echo: IPv4|IPv6 peak N connections open at once" whenever
        the peak of simultaneously open connections reaches a multiple of 100.
    serve-sink      --bind ... --port P
        accepts and never reads (connections are held until --lifetime).
    serve-sendclose --bind ... --port P [--mib N]
        sends N MiB of the blob (seed "down"), shuts its write side down,
        then reads until EOF and prints
        "sendclose from PEER: received LEN sha256 HEX".

Clients (run in pasta's namespace; each prints one "result ..." line, and
exits 0 only when the result is the expected one):

    client-many      --addr A --port P [--count N] [--timeout S]
        opens N connections to an echo server (all open at once, then each
        sends one token line and reads --prefix + token back), prints
        "result connected=C echoed=E failed=F seconds=T [first error]".
    client-sendclose --addr A --port P [--mib N] [--timeout S] [--wait-file F]
        reads until EOF (the server's half-close), then sends N MiB (seed
        "up") and shuts down; with --wait-file, keeps the socket open until F
        (the server's log) has a "sendclose from OUR-ADDRESS:" line, so the
        data is not cut off by pasta exiting. Prints "result recv_len=..
        recv_sha=.. sent_len=.. sent_sha=.. server_done=yes|no".
    client-write     --addr A --port P --seconds S --mark-dir D
        writes 64 KiB blocks (non-blocking, poll) for S seconds; creates
        D/mark.2 at 2 s and D/mark.end at S s, then waits for D/sampled.end
        (at most 10 s) before closing; prints "result written=N blocked_at=T".
    client-connect   --addr A --port P [--timeout S]
        one connect(); prints "result errno=NAME seconds=T".
    client-rr        --addr A --port P [--count N] [--prefix S] [--timeout S]
        one connection to an echo server (TCP_NODELAY), N lines of 64 bytes
        sent one at a time, each waiting for --prefix + line; prints
        "result rr=N" if every answer was right, else "result rr=bad
        line=I got=..." for the first that was not.
    client-trickle   --addr A --port P [--count N] [--size B] [--gap-ms G]
        a PUT to serve-http with Content-Length N * B, its body written in N
        writes of B bytes G ms apart (Nagle's algorithm on: the default);
        prints "result trickle=LEN" if the server's "HEX LEN" answer is
        the sha256 and length sent, else "result trickle=bad got=...".

Helpers: `blob --mib N [--seed S]` writes the blob to stdout;
`blob-sha --mib N [--seed S]` prints "HEX LEN".

The blob: MiB i is an 8-byte big-endian i followed by the first
1 MiB - 8 bytes of SHAKE-256(seed), so reordered, lost or repeated MiB
change the hash. Only the Python standard library is used.
"""
import argparse
import errno
import hashlib
import os
import select
import socket
import sys
import threading
import time

MIB = 1 << 20


def blob_blocks(mib, seed):
    base = hashlib.shake_256(("passt-rs lab blob " + seed).encode()).digest(MIB - 8)
    for i in range(mib):
        yield i.to_bytes(8, "big") + base


def blob_sha(mib, seed):
    h = hashlib.sha256()
    for b in blob_blocks(mib, seed):
        h.update(b)
    return h.hexdigest(), mib * MIB


def say(*a):
    print(*a, flush=True)


# ---- servers -----------------------------------------------------------------

def listeners(binds, port):
    socks = []
    for a in binds:
        fam = socket.AF_INET6 if ":" in a else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((a, port))
        s.listen(1024)
        socks.append(s)
    return socks


def serve(binds, port, handler, lifetime):
    threading.stack_size(256 * 1024)

    def accept_loop(ls):
        while True:
            try:
                c, peer = ls.accept()
            except OSError as e:
                say(f"accept: {e}")
                continue
            threading.Thread(target=conn_main, args=(c, peer), daemon=True).start()

    def conn_main(c, peer):
        try:
            handler(c, peer)
        except OSError as e:
            say(f"connection from {peer[0]} port {peer[1]}: {e}")
        finally:
            try:
                c.close()
            except OSError:
                pass

    for ls in listeners(binds, port):
        threading.Thread(target=accept_loop, args=(ls,), daemon=True).start()
        say(f"listening {ls.getsockname()[0]} {port}")
    time.sleep(lifetime)
    say("lifetime over")


class Reader:
    """Buffered reads from a socket: lines and exact byte counts."""

    def __init__(self, sock):
        self.f = sock.makefile("rb", buffering=MIB)

    def line(self, limit=65536):
        return self.f.readline(limit)

    def read(self, n):
        return self.f.read(n)


def http_handler(mib):
    down_blocks = list(blob_blocks(mib, "down"))
    h = hashlib.sha256()
    for b in down_blocks:
        h.update(b)
    down_sha = h.hexdigest()
    say(f"blob {mib} MiB sha256 {down_sha}")

    def reply(c, code, body, length=None, blocks=None):
        hdr = (f"HTTP/1.1 {code}\r\nContent-Type: application/octet-stream\r\n"
               f"Content-Length: {len(body) if length is None else length}\r\n"
               "Connection: close\r\n\r\n")
        c.sendall(hdr.encode())
        if blocks is None:
            c.sendall(body)
        else:
            for b in blocks:
                c.sendall(b)

    def handler(c, peer):
        r = Reader(c)
        req = r.line()
        if not req:
            return
        parts = req.decode("latin-1").split()
        if len(parts) < 2:
            reply(c, "400 Bad Request", b"bad request line\n")
            return
        method, path = parts[0], parts[1]
        headers = {}
        while True:
            ln = r.line()
            if ln in (b"\r\n", b"\n", b""):
                break
            k, _, v = ln.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        if method == "GET" and path == "/blob":
            reply(c, "200 OK", None, length=mib * MIB, blocks=down_blocks)
            say(f"GET /blob from {peer[0]}: sent {mib * MIB}")
        elif method == "GET" and path == "/blob.sha256":
            reply(c, "200 OK", f"{down_sha} {mib * MIB}\n".encode())
        elif method in ("PUT", "POST"):
            if headers.get("expect", "").lower() == "100-continue":
                c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            h, n = hashlib.sha256(), 0
            if "chunked" in headers.get("transfer-encoding", "").lower():
                while True:
                    size = int(r.line().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while r.line() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    while size:
                        d = r.read(min(size, MIB))
                        if not d:
                            raise OSError("EOF inside a chunk")
                        h.update(d)
                        n += len(d)
                        size -= len(d)
                    r.line()
            else:
                left = int(headers.get("content-length", "0"))
                while left:
                    d = r.read(min(left, MIB))
                    if not d:
                        raise OSError(f"EOF with {left} body bytes missing")
                    h.update(d)
                    n += len(d)
                    left -= len(d)
            reply(c, "200 OK", f"{h.hexdigest()} {n}\n".encode())
            say(f"{method} {path} from {peer[0]}: received {n} sha256 {h.hexdigest()}")
        else:
            reply(c, "404 Not Found", b"not found\n")

    return handler


def echo_handler(prefix):
    p = prefix.encode()
    lock = threading.Lock()
    open_now, peak = {}, {}

    def handler(c, peer):
        fam = "IPv6" if c.family == socket.AF_INET6 else "IPv4"
        with lock:
            open_now[fam] = open_now.get(fam, 0) + 1
            if open_now[fam] > peak.get(fam, 0):
                peak[fam] = open_now[fam]
                if peak[fam] % 100 == 0:
                    say(f"echo: {fam} peak {peak[fam]} connections open at once")
        try:
            r = Reader(c)
            while True:
                ln = r.line()
                if not ln:
                    return
                c.sendall(p + ln)
        finally:
            with lock:
                open_now[fam] -= 1

    return handler


def sink_handler(lifetime):
    def handler(c, peer):
        say(f"sink: connection from {peer[0]} port {peer[1]}, not reading")
        time.sleep(lifetime)

    return handler


def sendclose_handler(mib):
    def handler(c, peer):
        for b in blob_blocks(mib, "down"):
            c.sendall(b)
        c.shutdown(socket.SHUT_WR)
        h, n = hashlib.sha256(), 0
        while True:
            d = c.recv(MIB)
            if not d:
                break
            h.update(d)
            n += len(d)
        say(f"sendclose from {peer[0]}: received {n} sha256 {h.hexdigest()}")

    return handler


# ---- clients -----------------------------------------------------------------

def connect(addr, port, timeout):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((addr, port))
    return s


def errname(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if isinstance(e, OSError) and e.errno else type(e).__name__


def client_many(a):
    t0 = time.monotonic()
    deadline = t0 + a.timeout
    fam = socket.AF_INET6 if ":" in a.addr else socket.AF_INET
    socks, first_err = [], ""
    # non-blocking connects, all in flight at once
    for i in range(a.count):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((a.addr, a.port))
        if err not in (0, errno.EINPROGRESS):
            first_err = first_err or f"connect {i}: {errno.errorcode.get(err, err)}"
            s.close()
            continue
        socks.append(s)
    pending = {s.fileno(): s for s in socks}
    connected = []
    poll = select.poll()
    for fd in pending:
        poll.register(fd, select.POLLOUT)
    while pending and time.monotonic() < deadline:
        for fd, ev in poll.poll(200):
            s = pending.pop(fd)
            poll.unregister(fd)
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                first_err = first_err or f"connect: {errno.errorcode.get(err, err)}"
                s.close()
            else:
                connected.append(s)
    if pending:
        first_err = first_err or f"{len(pending)} connects still pending at the deadline"
    n_conn = len(connected)
    # all connected and open: now one token each
    want, got = {}, {}
    poll = select.poll()
    for i, s in enumerate(connected):
        tok = f"tok-{i}-{os.getpid()}\n".encode()
        want[s.fileno()] = tok
        got[s.fileno()] = b""
        try:
            s.send(tok)
        except OSError as e:
            first_err = first_err or f"send: {errname(e)}"
            continue
        poll.register(s.fileno(), select.POLLIN)
    byfd = {s.fileno(): s for s in connected}
    echoed, waiting = 0, len(want)
    while waiting and time.monotonic() < deadline:
        for fd, ev in poll.poll(200):
            try:
                d = byfd[fd].recv(4096)
            except OSError as e:
                d, first_err = b"", first_err or f"recv: {errname(e)}"
            got[fd] += d
            if not d or got[fd].endswith(b"\n"):
                poll.unregister(fd)
                waiting -= 1
                if got[fd] == a.prefix.encode() + want[fd]:
                    echoed += 1
                elif not first_err:
                    first_err = f"token {want[fd]!r}: got {got[fd]!r}"
    if waiting:
        first_err = first_err or f"{waiting} echoes missing at the deadline"
    for s in connected:
        s.close()
    failed = a.count - echoed
    say(f"result connected={n_conn} echoed={echoed} failed={failed} "
        f"seconds={time.monotonic() - t0:.2f} {first_err}".rstrip())
    return 0 if echoed == a.count else 1


def client_sendclose(a):
    s = connect(a.addr, a.port, a.timeout)
    h, n = hashlib.sha256(), 0
    while True:
        d = s.recv(MIB)
        if not d:
            break
        h.update(d)
        n += len(d)
    recv = f"recv_len={n} recv_sha={h.hexdigest()}"
    h2, n2 = hashlib.sha256(), 0
    for b in blob_blocks(a.mib, "up"):
        s.sendall(b)
        h2.update(b)
        n2 += len(b)
    s.shutdown(socket.SHUT_WR)
    if a.wait_file:
        # the server's log names us once it has read everything up to our FIN
        t_end = time.monotonic() + a.timeout
        mine = f"sendclose from {s.getsockname()[0]}:"
        while time.monotonic() < t_end:
            try:
                if any(ln.startswith(mine) for ln in open(a.wait_file)):
                    break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            say(f"result {recv} sent_len={n2} sent_sha={h2.hexdigest()} server_done=no")
            return 1
    s.close()
    say(f"result {recv} sent_len={n2} sent_sha={h2.hexdigest()} server_done=yes")
    return 0


def client_write(a):
    s = connect(a.addr, a.port, 5)
    s.setblocking(False)
    block = b"\x5a" * 65536
    t0 = time.monotonic()
    written, blocked_at, mark2 = 0, None, False
    p = select.poll()
    p.register(s.fileno(), select.POLLOUT)
    while True:
        now = time.monotonic() - t0
        if not mark2 and now >= 2:
            open(os.path.join(a.mark_dir, "mark.2"), "w").close()
            mark2 = True
        if now >= a.seconds:
            break
        if not p.poll(100):
            if blocked_at is None:
                blocked_at = now
            continue
        try:
            written += s.send(block)
        except BlockingIOError:
            pass
    open(os.path.join(a.mark_dir, "mark.end"), "w").close()
    for _ in range(100):
        if os.path.exists(os.path.join(a.mark_dir, "sampled.end")):
            break
        time.sleep(0.1)
    s.close()
    b = "never" if blocked_at is None else f"{blocked_at:.2f}"
    say(f"result written={written} blocked_at={b}")
    return 0


def client_connect(a):
    t0 = time.monotonic()
    try:
        s = connect(a.addr, a.port, a.timeout)
        s.close()
        name = "none(connected)"
    except socket.timeout:
        name = "timeout"
    except OSError as e:
        name = errname(e)
    say(f"result errno={name} seconds={time.monotonic() - t0:.3f}")
    return 0


def client_rr(a):
    s = connect(a.addr, a.port, a.timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    r, p = Reader(s), a.prefix.encode()
    for i in range(a.count):
        ln = f"rr{i}-".encode().ljust(63, b"r") + b"\n"
        s.sendall(ln)
        got = r.line()
        if got != p + ln:
            say(f"result rr=bad line={i} got={got[:80]!r}")
            return 1
    s.close()
    say(f"result rr={a.count}")
    return 0


def client_trickle(a):
    s = connect(a.addr, a.port, a.timeout)
    n = a.count * a.size
    s.sendall(f"PUT /up HTTP/1.1\r\nHost: lab\r\nContent-Length: {n}\r\n\r\n".encode())
    h = hashlib.sha256()
    for i in range(a.count):
        d = f"w{i}-".encode().ljust(a.size, b"t")
        s.sendall(d)
        h.update(d)
        time.sleep(a.gap_ms / 1000)
    r = Reader(s)
    while r.line() not in (b"\r\n", b"\n", b""):
        pass
    got = r.line().decode(errors="replace").strip()
    if got != f"{h.hexdigest()} {n}":
        say(f"result trickle=bad got={got[:100]!r}")
        return 1
    say(f"result trickle={n}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode")
    ap.add_argument("--bind", action="append", default=[])
    ap.add_argument("--addr")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mib", type=int, default=200)
    ap.add_argument("--seed", default="down")
    ap.add_argument("--prefix", default="echo:")
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--mark-dir")
    ap.add_argument("--wait-file")
    ap.add_argument("--lifetime", type=float, default=300)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--gap-ms", type=float, default=5)
    a = ap.parse_args()
    if a.mode == "blob":
        out = sys.stdout.buffer
        try:
            for b in blob_blocks(a.mib, a.seed):
                out.write(b)
            out.flush()
        except BrokenPipeError:
            return 1
        return 0
    if a.mode == "blob-sha":
        sha, n = blob_sha(a.mib, a.seed)
        say(f"{sha} {n}")
        return 0
    servers = {
        "serve-http": lambda: http_handler(a.mib),
        "serve-echo": lambda: echo_handler(a.prefix),
        "serve-sink": lambda: sink_handler(a.lifetime),
        "serve-sendclose": lambda: sendclose_handler(a.mib),
    }
    if a.mode in servers:
        serve(a.bind, a.port, servers[a.mode](), a.lifetime)
        return 0
    clients = {"client-many": client_many, "client-sendclose": client_sendclose,
               "client-write": client_write, "client-connect": client_connect,
               "client-rr": client_rr, "client-trickle": client_trickle}
    if a.mode in clients:
        return clients[a.mode](a)
    ap.error(f"unknown mode {a.mode}")


if __name__ == "__main__":
    sys.exit(main())
