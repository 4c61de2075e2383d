#!/usr/bin/env python3
"""20-fwd-tcp-splice.py - servers (run in pasta's namespace, or on the host for
-T) and clients for 20-fwd-tcp-splice.sh. Servers listen on 0.0.0.0 and :: (IPV6_V6ONLY) and log
one line per connection to stdout; clients print one "result ..." line.

  serve-after    PORT: reads "N\\n" then to EOF; answers "got LEN SHA\\n" and N
                 bytes (pattern), then closes: a reply after the client's FIN
  serve-first    PORT: sends "N\\n" + N bytes (pattern), shuts its write side
                 down, reads to EOF, logs "first PEER: got LEN SHA"
  serve-rst      PORT: reads a line, then closes with SO_LINGER 0 (RST);
                 logs "rst PEER"
  serve-watch    PORT: sends "ready\\n", reads until EOF or error; logs
                 "watch PEER: EOF" or "watch PEER: ERRNO-NAME"
  serve-xfer     PORT: reads "N M\\n" and N bytes, answers "got LEN SHA\\n"
                 and M bytes (pattern), then reads to EOF (no half-close
                 before all data is through); logs "xfer PEER: got LEN SHA"
  serve-echo     PORT: echoes everything it reads until EOF; logs "echo PEER:
                 LEN SHA"
  client-chatter ADDR PORT N: N request/response rounds of sizes cycling
                 through CHAT_SIZES (small ones below pasta-rs's copy-path
                 thresholds, 2 KiB and 16 KiB, and bulk ones above), each
                 echoed in full before the next: "result msgs=N sent=LEN SHA
                 echoed=LEN SHA"
  client-after   ADDR PORT SEND N: sends SEND bytes after "N\\n", shuts down,
                 reads to EOF: "result reply=LEN SHA tail=LEN SHA"
  client-first   ADDR PORT SEND: reads "N\\n" and to EOF, then sends SEND bytes
                 and closes: "result got=LEN SHA sent=LEN SHA"
  client-rst     ADDR PORT: sends a line, reads: "result errno=NAME" / "result eof"
  client-abort   ADDR PORT: reads "ready", closes with SO_LINGER 0: "result aborted"
  client-xfer    ADDR PORT N M [SRC]: (from source address SRC) sends "N M\\n"
                 and N bytes, reads the answer line and M bytes, then closes:
                 "result reply=got LEN SHA down=LEN SHA"
  pattern-sha    N SEED: "LEN SHA" of the first N pattern bytes (seeds: "up"
                 from clients, "after", "first", "down" from servers)
Every socket operation times out after 20 s. Standard library only.
"""
import errno, hashlib, socket, struct, sys, threading, time

TIMEOUT = 20


def pattern(n, seed):
    blk = hashlib.shake_256(seed.encode()).digest(65536)
    while n > 0:
        yield blk[:n]
        n -= min(n, len(blk))


def pat_sha(n, seed):
    h = hashlib.sha256()
    for b in pattern(n, seed):
        h.update(b)
    return f"{n} {h.hexdigest()}"


def say(*a):
    print(*a, flush=True)


def ename(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if getattr(e, "errno", None) else type(e).__name__


def read_line(s):
    b = b""
    while not b.endswith(b"\n") and len(b) < 100:
        d = s.recv(1)
        if not d:
            break
        b += d
    return b.decode(errors="replace").strip()


def read_all(s):
    h, n = hashlib.sha256(), 0
    while True:
        d = s.recv(1 << 20)
        if not d:
            return f"{n} {h.hexdigest()}"
        h.update(d)
        n += len(d)


def serve(port, handler):
    def loop(ls):
        while True:
            c, peer = ls.accept()
            c.settimeout(TIMEOUT)
            threading.Thread(target=one, args=(c, peer[0]), daemon=True).start()

    def one(c, peer):
        try:
            handler(c, peer)
        except OSError as e:
            say(f"error {peer}: {ename(e)}")
        finally:
            c.close()

    for fam, a in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        ls = socket.socket(fam, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        ls.bind((a, port))
        ls.listen(512)
        threading.Thread(target=loop, args=(ls,), daemon=True).start()
    say(f"listening {port}")
    time.sleep(100)


def h_after(c, peer):
    n = int(read_line(c))
    got = read_all(c)
    c.sendall(f"got {got}\n".encode())
    for b in pattern(n, "after"):
        c.sendall(b)
    say(f"after {peer}: got {got}, sent {n}")


def h_first(c, peer):
    n = 4 << 20
    c.sendall(f"{n}\n".encode())
    for b in pattern(n, "first"):
        c.sendall(b)
    c.shutdown(socket.SHUT_WR)
    say(f"first {peer}: got {read_all(c)}")


def h_rst(c, peer):
    read_line(c)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    say(f"rst {peer}")


def h_watch(c, peer):
    c.sendall(b"ready\n")
    try:
        while True:
            if not c.recv(65536):
                say(f"watch {peer}: EOF")
                return
    except OSError as e:
        say(f"watch {peer}: {ename(e)}")


def h_xfer(c, peer):
    n, m = (int(x) for x in read_line(c).split())
    h, got = hashlib.sha256(), 0
    while got < n:
        d = c.recv(min(1 << 20, n - got))
        if not d:
            break
        h.update(d)
        got += len(d)
    c.sendall(f"got {got} {h.hexdigest()}\n".encode())
    for b in pattern(m, "down"):
        c.sendall(b)
    say(f"xfer {peer}: got {got} {h.hexdigest()}, sent {m}, then {read_all(c)} after")


CHAT_SIZES = (1, 64, 700, 1500, 2047, 2048, 2049, 4000, 16383, 16384, 16385, 65536, 300000, 64, 3)


def h_echo(c, peer):
    h, got = hashlib.sha256(), 0
    while True:
        d = c.recv(1 << 16)
        if not d:
            break
        h.update(d)
        got += len(d)
        c.sendall(d)
    say(f"echo {peer}: {got} {h.hexdigest()}")


def read_n(s, n):
    h, got = hashlib.sha256(), 0
    while got < n:
        d = s.recv(min(1 << 20, n - got))
        if not d:
            break
        h.update(d)
        got += len(d)
    return f"{got} {h.hexdigest()}"


def connect(addr, port, src=None):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    if src:
        s.bind((src, 0))
    s.connect((addr, int(port)))
    return s


def main():
    m, a = sys.argv[1], sys.argv[2:]
    servers = {"serve-after": h_after, "serve-first": h_first, "serve-rst": h_rst, "serve-watch": h_watch,
               "serve-xfer": h_xfer, "serve-echo": h_echo}
    if m in servers:
        serve(int(a[0]), servers[m])
    elif m == "pattern-sha":
        say(pat_sha(int(a[0]), a[1]))
    elif m == "client-after":
        s = connect(a[0], a[1])
        send, n = int(a[2]), int(a[3])
        s.sendall(f"{n}\n".encode())
        for b in pattern(send, "up"):
            s.sendall(b)
        s.shutdown(socket.SHUT_WR)
        line = read_line(s)
        say(f"result reply={line} tail={read_all(s)}")
    elif m == "client-first":
        s = connect(a[0], a[1])
        n = read_line(s)
        got = read_all(s)
        send = int(a[2])
        for b in pattern(send, "up"):
            s.sendall(b)
        s.close()
        say(f"result announced={n} got={got} sent={pat_sha(send, 'up')}")
    elif m == "client-xfer":
        s = connect(a[0], a[1], a[4] if len(a) > 4 else None)
        n, mm = int(a[2]), int(a[3])
        s.sendall(f"{n} {mm}\n".encode())
        for b in pattern(n, "up"):
            s.sendall(b)
        line = read_line(s)
        say(f"result reply={line} down={read_n(s, mm)}")
        s.close()
    elif m == "client-chatter":
        s = connect(a[0], a[1])
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        n = int(a[2])
        hs, he, ns, ne = hashlib.sha256(), hashlib.sha256(), 0, 0
        for i in range(n):
            size = CHAT_SIZES[i % len(CHAT_SIZES)]
            msg = hashlib.shake_256(f"chat{i}".encode()).digest(size)
            s.sendall(msg)
            hs.update(msg)
            ns += size
            got = 0
            while got < size:
                d = s.recv(size - got)
                if not d:
                    break
                he.update(d)
                got += len(d)
            ne += got
            if got < size:
                break
        s.close()
        say(f"result msgs={n} sent={ns} {hs.hexdigest()} echoed={ne} {he.hexdigest()}")
    elif m == "client-rst":
        s = connect(a[0], a[1])
        s.sendall(b"hello\n")
        try:
            d = s.recv(65536)
            say("result eof" if not d else f"result data={d!r}")
        except OSError as e:
            say(f"result errno={ename(e)}")
    elif m == "client-abort":
        s = connect(a[0], a[1])
        line = read_line(s)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        say(f"result aborted after {line!r}")
    else:
        sys.exit(f"unknown mode {m}")


if __name__ == "__main__":
    main()
