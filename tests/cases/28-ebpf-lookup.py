#!/usr/bin/env python3
"""28-ebpf-lookup.py - many-port servers and clients for 28-ebpf-lookup.sh.

  ports SEED N LO HI AVOID...
                  print N distinct random ports in LO..HI (random.Random(SEED)),
                  none of AVOID, one per line
  serve TAG TCPFILE UDPFILE READY
                  a TCP listener (dual-stack [::], SO_REUSEADDR) on every port
                  of TCPFILE and a UDP socket (dual-stack [::], without
                  SO_REUSEADDR) on every port of UDPFILE;
                  each accepted connection gets "TAG PORT\\n" and is closed,
                  each datagram is answered with "TAG PORT\\n"; touches READY
                  once every socket is bound; runs until killed
  probe ADDR TCPFILE UDPFILE
                  connect to ADDR on every port of TCPFILE (one at a time,
                  2 s timeout) and read the answer; send one datagram to each
                  port of UDPFILE (3 tries, 1 s each); prints one line per
                  port that did not get "<tag> PORT" back ("bad tcp PORT GOT"),
                  then "result tcp=OK/N udp=OK/N tags=T,... tcp_per_s=R"
Standard library only.
"""
import os, random, selectors, socket, sys, time


def read_ports(path):
    with open(path) as f:
        return [int(x) for x in f.read().split()]


def ports(seed, n, lo, hi, avoid):
    rng = random.Random(int(seed))
    avoid = {int(a) for a in avoid}
    out = [p for p in rng.sample(range(int(lo), int(hi) + 1), int(n) + len(avoid)) if p not in avoid]
    print("\n".join(str(p) for p in out[: int(n)]))


def serve(tag, tcpfile, udpfile, ready):
    sel = selectors.DefaultSelector()
    for kind, path in ((socket.SOCK_STREAM, tcpfile), (socket.SOCK_DGRAM, udpfile)):
        for p in read_ports(path):
            s = socket.socket(socket.AF_INET6, kind)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            if kind == socket.SOCK_STREAM:
                # not for UDP: two sockets with it may share a port
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("::", p))
            if kind == socket.SOCK_STREAM:
                s.listen(64)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, (kind, p))
    open(ready, "w").close()
    while True:
        for key, _ in sel.select():
            s, (kind, p) = key.fileobj, key.data
            msg = f"{tag} {p}\n".encode()
            try:
                if kind == socket.SOCK_STREAM:
                    c, _ = s.accept()
                    c.setblocking(True)
                    c.sendall(msg)
                    c.close()
                else:
                    _, peer = s.recvfrom(2048)
                    s.sendto(msg, peer)
            except OSError:
                pass


def probe(addr, tcpfile, udpfile):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    tags = set()
    ok_tcp = ok_udp = 0
    tcp, udp = read_ports(tcpfile), read_ports(udpfile)
    t0 = time.monotonic()
    for p in tcp:
        got = b""
        try:
            with socket.create_connection((addr, p), timeout=2) as c:
                while True:
                    d = c.recv(256)
                    if not d:
                        break
                    got += d
        except OSError as e:
            got = str(e).encode()
        words = got.decode(errors="replace").split()
        if len(words) == 2 and words[1] == str(p):
            ok_tcp += 1
            tags.add(words[0])
        else:
            print(f"bad tcp {p} {got[:60]!r}")
    dt = time.monotonic() - t0
    for p in udp:
        got = b""
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.settimeout(1)
            for _ in range(3):
                try:
                    s.sendto(b"ping", (addr, p))
                    got, _ = s.recvfrom(2048)
                    break
                except OSError as e:
                    got = str(e).encode()
        words = got.decode(errors="replace").split()
        if len(words) == 2 and words[1] == str(p):
            ok_udp += 1
            tags.add(words[0])
        else:
            print(f"bad udp {p} {got[:60]!r}")
    rate = int(len(tcp) / dt) if dt > 0 else 0
    print(f"result tcp={ok_tcp}/{len(tcp)} udp={ok_udp}/{len(udp)} tags={','.join(sorted(tags))} tcp_per_s={rate}", flush=True)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"ports": lambda: ports(args[0], args[1], args[2], args[3], args[4:]),
     "serve": lambda: serve(*args),
     "probe": lambda: probe(*args)}[cmd]()
