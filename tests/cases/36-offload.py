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
Standard library only.
"""
import select, socket, sys, time

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


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "uso":
        uso(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
