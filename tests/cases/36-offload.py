#!/usr/bin/env python3
"""36-offload.py - UDP segmentation offload (USO) sender for 36-offload.sh.

  uso ADDR PORT SEGS SIZE
      one send() of SEGS * SIZE bytes with the UDP_SEGMENT socket option
      set to SIZE (udp(7)): the kernel hands the namespace's tap one UDP
      super-frame (GSO type UDP_L4) when the device offers USO. Segment i
      is the line "seg<i>-" padded with "x" to SIZE - 1 bytes plus "\\n".
      Then reads the replies (socat echo servers answer each datagram's
      first line with "remote:<line>") for up to 3 s and prints
      "replies N" and one "reply <first 12 characters> len=<length>" per
      reply (trailing whitespace stripped), sorted.

  burst-serve ADDR PORT
      UDP server: to each datagram "burst SEGS SIZE" it answers with one
      sendmsg() of SEGS - 1 datagrams of SIZE bytes and a last one of
      SIZE / 2, with UDP_SEGMENT (so they reach the peer back to back).
      Datagram i is "dgr<i>-" padded with "y". Runs for 300 s at most.

  burst ADDR PORT SEGS SIZE
      asks burst-serve at ADDR PORT for a burst and checks it: prints
      "burst ok N" if N datagrams came, each of the right size and
      content, in order, else "burst bad ..." with what differed.
Standard library only.
"""
import select, socket, struct, sys, time

SOL_UDP = 17
UDP_SEGMENT = 103


def uso(addr, port, segs, size):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(SOL_UDP, UDP_SEGMENT, size)
    s.connect((addr, port))
    data = b"".join(f"seg{i}-".encode().ljust(size - 1, b"x") + b"\n" for i in range(segs))
    s.send(data)
    replies, end = [], time.monotonic() + 3
    while len(replies) < segs + 1 and time.monotonic() < end:
        r, _, _ = select.select([s], [], [], max(0.0, end - time.monotonic()))
        if not r:
            break
        replies.append(s.recv(65536).decode(errors="replace").strip())
    print(f"replies {len(replies)}")
    for r in sorted(replies):
        print(f"reply {r[:12]} len={len(r)}")


def burst_data(i, size):
    return f"dgr{i}-".encode().ljust(size, b"y")


def burst_sizes(segs, size):
    return [size] * (segs - 1) + [size // 2]


def burst_serve(addr, port):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    print(f"listening {addr} {port}", flush=True)
    end = time.monotonic() + 300
    while time.monotonic() < end:
        r, _, _ = select.select([s], [], [], 1.0)
        if not r:
            continue
        msg, peer = s.recvfrom(2048)
        f = msg.split()
        if len(f) != 3 or f[0] != b"burst":
            continue
        segs, size = int(f[1]), int(f[2])
        data = b"".join(burst_data(i, n) for i, n in enumerate(burst_sizes(segs, size)))
        try:
            s.sendmsg([data], [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))], 0, peer)
            print(f"sent {segs} x {size} to {peer[0]}", flush=True)
        except OSError as e:
            print(f"send to {peer[0]}: {e}", flush=True)


def burst(addr, port, segs, size):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.connect((addr, port))
    s.send(f"burst {segs} {size}".encode())
    want = [burst_data(i, n) for i, n in enumerate(burst_sizes(segs, size))]
    got, end = [], time.monotonic() + 3
    while len(got) < segs and time.monotonic() < end:
        r, _, _ = select.select([s], [], [], max(0.0, end - time.monotonic()))
        if not r:
            break
        got.append(s.recv(65536))
    if got == want:
        print(f"burst ok {len(got)}")
        return
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
    print(f"burst bad: {len(got)} of {segs} datagrams, sizes {[len(g) for g in got]}, wrong at {bad[:8]}")


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "uso":
        uso(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif len(sys.argv) == 4 and sys.argv[1] == "burst-serve":
        burst_serve(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 6 and sys.argv[1] == "burst":
        burst(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
