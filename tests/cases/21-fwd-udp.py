#!/usr/bin/env python3
"""21-fwd-udp.py - UDP echo server and client for 21-fwd-udp.sh.

  serve PORT      on 0.0.0.0 and :: (IPV6_V6ONLY): answers every datagram
                  with "PEER-ADDRESS PEER-PORT|" + the datagram; logs
                  "from PEER-ADDRESS PEER-PORT LEN" per datagram
  client ADDR PORT COUNT SIZE [SRC]
                  one unconnected socket (bound to SRC if given): COUNT
                  datagrams of SIZE bytes (distinct contents), each answered
                  before the next (up to 3 tries of 2 s). Prints
                  "result replies=R/COUNT from=A,... peer=A,... port=same|other
                  retries=N"
                  from: the source addresses of the replies ("A:P", "[A]:P"),
                  peer: what the server saw, port: whether the server saw our
                  own source port.
Standard library only.
"""
import os, socket, sys, threading, time


def serve(port):
    def loop(s):
        while True:
            d, peer = s.recvfrom(65536)
            print(f"from {peer[0]} {peer[1]} {len(d)}", flush=True)
            s.sendto(f"{peer[0]} {peer[1]}|".encode() + d, peer)

    for fam, a in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((a, port))
        threading.Thread(target=loop, args=(s,), daemon=True).start()
    print(f"listening {port}", flush=True)
    time.sleep(100)


def client(addr, port, count, size, src=None):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((src or ("::" if fam == socket.AF_INET6 else "0.0.0.0"), 0))
    s.settimeout(2)
    local = s.getsockname()[1]
    froms, peers, ports, ok, retries = set(), set(), set(), 0, 0
    for i in range(count):
        tag = f"{i}-{os.getpid()}-".encode()
        msg = (tag * (size // len(tag) + 1))[:size]
        for t in range(3):
            retries += t > 0
            s.sendto(msg, (addr, port))
            try:
                while True:
                    d, frm = s.recvfrom(65536)
                    head, _, body = d.partition(b"|")
                    if body == msg:
                        break
            except socket.timeout:
                continue
            froms.add(f"[{frm[0]}]:{frm[1]}" if fam == socket.AF_INET6 else f"{frm[0]}:{frm[1]}")
            a, p = head.decode().split()
            peers.add(a)
            ports.add("same" if int(p) == local else "other")
            ok += 1
            break
    print(f"result replies={ok}/{count} from={','.join(sorted(froms))} "
          f"peer={','.join(sorted(peers))} port={','.join(sorted(ports))} retries={retries}")
    return 0 if ok == count else 1


if __name__ == "__main__":
    m, a = sys.argv[1], sys.argv[2:]
    if m == "serve":
        serve(int(a[0]))
    elif m == "client":
        sys.exit(client(a[0], int(a[1]), int(a[2]), int(a[3]), a[4] if len(a) > 4 else None))
    else:
        sys.exit(f"unknown mode {m}")
