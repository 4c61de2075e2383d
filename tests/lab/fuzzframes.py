#!/usr/bin/env python3
"""fuzzframes.py - write malformed Ethernet frames to a tap through AF_PACKET.

    fuzzframes.py IFNAME PEER_MAC COUNT SEED

Run inside the namespace pasta serves (as root of that namespace). Every frame is
built by one of the generators below from a seeded RNG, so a run is reproducible
from SEED. Destinations stay inside the lab (192.0.2.0/24, 198.51.100.0/24,
2001:db8::/32, link-local, multicast, broadcast): nothing pasta forwards can leave
the lab's private namespaces.

Prints one "sent=N rejected=M" summary line plus per-generator and per-errno
counts. Frames the kernel refuses (e.g. EMSGSIZE above the tap MTU) are counted as
rejected, not errors. Exit status 0 unless the socket cannot be opened.
"""
import errno
import random
import socket
import struct
import sys

GW4, H4, R4 = "192.0.2.1", "192.0.2.2", "198.51.100.1"
GW6, H6, R6 = "2001:db8:2::1", "2001:db8:2::2", "2001:db8:100::1"
DST4 = [GW4, R4, "192.0.2.77", "198.51.100.9", "255.255.255.255", "224.0.0.1", "0.0.0.0"]
DST6 = [GW6, R6, "2001:db8:2::99", "ff02::1", "ff02::2", "ff02::1:2", "fe80::1", "::"]
SRC4 = [H4, "0.0.0.0", "192.0.2.200", "127.0.0.1", "255.255.255.255"]
SRC6 = [H6, "fe80::2", "::", "::1", "2001:db8:2::42"]


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


class Gen:
    def __init__(self, rnd, own_mac, peer_mac):
        self.r = rnd
        self.own = own_mac
        self.peer = peer_mac

    # ---- helpers -----------------------------------------------------------
    def junk(self, lo, hi):
        """lo..hi random bytes (hi below lo means exactly lo)."""
        return bytes(self.r.getrandbits(8) for _ in range(self.r.randint(lo, max(lo, hi))))

    def eth(self, ethertype, payload, dst=None):
        dst = dst or self.r.choice([self.peer, self.peer, b"\xff" * 6, b"\x33\x33\x00\x00\x00\x01"])
        return dst + self.own + struct.pack("!H", ethertype) + payload

    def maybe_cut(self, b):
        """Truncate b at a random point in a third of the cases."""
        if self.r.random() < 0.33 and len(b) > 1:
            return b[: self.r.randint(0, len(b) - 1)]
        return b

    def ip4(self, proto, l4, src=None, dst=None, bad=True):
        ihl = 5
        opts = b""
        tot = 20 + len(l4)
        ver = 4
        frag = 0x4000
        if bad:
            k = self.r.randint(0, 9)
            if k == 0:
                ihl = self.r.randint(0, 4)
            elif k == 1:
                ihl = self.r.randint(6, 15)
                opts = self.junk(0, (ihl - 5) * 4)
            elif k == 2:
                tot = self.r.choice([0, 1, 19, 20, tot + 1, tot + 100, 65535])
            elif k == 3:
                ver = self.r.choice([0, 5, 6, 15])
            elif k == 4:
                frag = self.r.choice([0x2000, 0x2001, 0x1FFF, 0x3FFF, 0xFFFF])
        src = socket.inet_aton(src or self.r.choice(SRC4))
        dst = socket.inet_aton(dst or self.r.choice(DST4))
        hdr = struct.pack("!BBHHHBBH4s4s", (ver << 4) | (ihl & 15), 0, tot & 0xFFFF,
                          self.r.getrandbits(16), frag, self.r.choice([0, 1, 64, 255]),
                          proto, 0, src, dst) + opts
        if self.r.random() < 0.8:
            hdr = hdr[:10] + struct.pack("!H", csum(hdr[:20])) + hdr[12:]
        return self.eth(0x0800, self.maybe_cut(hdr + l4) if bad else hdr + l4)

    def ip6(self, nh, l4, src=None, dst=None, bad=True):
        plen = len(l4)
        ver = 6
        if bad:
            k = self.r.randint(0, 6)
            if k == 0:
                plen = self.r.choice([0, 1, plen + 1, plen + 500, 65535])
            elif k == 1:
                ver = self.r.choice([0, 4, 7, 15])
        src = socket.inet_pton(socket.AF_INET6, src or self.r.choice(SRC6))
        dst = socket.inet_pton(socket.AF_INET6, dst or self.r.choice(DST6))
        hdr = struct.pack("!IHBB16s16s", (ver << 28) | self.r.getrandbits(20), plen & 0xFFFF,
                          nh, self.r.choice([0, 1, 64, 255]), src, dst)
        return self.eth(0x86DD, self.maybe_cut(hdr + l4) if bad else hdr + l4)

    def udp(self, sport, dport, payload):
        ln = 8 + len(payload)
        k = self.r.randint(0, 5)
        if k == 0:
            ln = self.r.choice([0, 1, 7])
        elif k == 1:
            ln = min(ln + self.r.randint(1, 2000), 65535)
        return struct.pack("!HHHH", sport, dport, ln & 0xFFFF, self.r.getrandbits(16)) + payload

    def dhcp_opts(self):
        out = b""
        for _ in range(self.r.randint(0, 12)):
            code = self.r.choice([53, 53, 50, 51, 54, 55, 61, 12, 52, 57, 119, 0, 255,
                                  self.r.randint(1, 254)])
            if code in (0, 255):
                out += bytes([code])
                continue
            ln = self.r.choice([0, 1, 2, 4, 255, self.r.randint(0, 40)])
            out += bytes([code, ln]) + self.junk(0, ln + self.r.choice([-3, 0, 0, 5]))
        if self.r.random() < 0.5:
            out += b"\xff"
        return out

    # ---- generators ---------------------------------------------------------
    def g_eth_short(self):
        return self.junk(0, 13)

    def g_eth_junk(self):
        et = self.r.choice([0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8, 0x0000, 0xFFFF,
                            self.r.getrandbits(16)])
        return self.eth(et, self.junk(0, 200))

    def g_vlan(self):
        inner = self.eth(0x0800, self.junk(0, 60))[12:]
        return self.eth(0x8100, struct.pack("!H", self.r.getrandbits(16)) + inner)

    def g_arp(self):
        hlen = self.r.choice([6, 6, 0, 255, 16])
        plen = self.r.choice([4, 4, 0, 16, 255])
        body = struct.pack("!HHBBH", self.r.choice([1, 6, 0xFFFF]), self.r.choice([0x0800, 0x86DD, 0]),
                           hlen, plen, self.r.choice([1, 2, 0, 3, 0xFFFF]))
        body += self.own + socket.inet_aton(self.r.choice(SRC4)) + b"\0" * 6 + \
            socket.inet_aton(self.r.choice(DST4)) + self.junk(0, 20)
        return self.eth(0x0806, self.maybe_cut(body))

    def g_ip4_raw(self):
        return self.ip4(self.r.choice([1, 6, 17, 58, 0, 255]), self.junk(0, 64))

    def g_ip4_udp(self):
        dport = self.r.choice([7, 53, 67, 68, 123, self.r.randint(1, 65535)])
        return self.ip4(17, self.maybe_cut(self.udp(self.r.randint(1, 65535), dport, self.junk(0, 300))))

    def g_ip4_icmp(self):
        t = self.r.choice([8, 8, 0, 3, 11, 13, 17, 255])
        body = struct.pack("!BBH", t, self.r.choice([0, 1, 255]), self.r.getrandbits(16))
        body += self.junk(0, 3) if self.r.random() < 0.5 else struct.pack("!HH", self.r.getrandbits(16),
                                                                            self.r.getrandbits(16)) + self.junk(0, 100)
        return self.ip4(1, body)

    def g_dhcp4(self):
        op = self.r.choice([1, 1, 2, 0, 255])
        bootp = struct.pack("!BBBB", op, self.r.choice([1, 0, 255]), self.r.choice([6, 0, 16, 255]), 0)
        bootp += struct.pack("!IHH", self.r.getrandbits(32), 0, self.r.choice([0, 0x8000]))
        bootp += b"\0" * 16 + self.own + b"\0" * 10 + b"\0" * 192
        cookie = self.r.choice([b"\x63\x82\x53\x63"] * 4 + [b"\0\0\0\0", b"\x63\x82\x53"])
        msg = bootp + cookie + self.dhcp_opts()
        if self.r.random() < 0.3:
            msg = msg[: self.r.randint(0, len(msg))]
        return self.ip4(17, self.udp(68, 67, msg), src="0.0.0.0", dst="255.255.255.255",
                        bad=self.r.random() < 0.3)

    def g_ip6_raw(self):
        return self.ip6(self.r.choice([0, 6, 17, 43, 44, 58, 59, 60, 255]), self.junk(0, 80))

    def g_ip6_ext(self):
        # chains of extension headers with lengths that disagree with the frame
        chain = b""
        nhs = [self.r.choice([0, 43, 44, 60]) for _ in range(self.r.randint(1, 4))]
        last = self.r.choice([17, 58, 6, 59])
        for i, _ in enumerate(nhs):
            nxt = nhs[i + 1] if i + 1 < len(nhs) else last
            hl = self.r.choice([0, 1, 255])
            chain += bytes([nxt, hl]) + self.junk(0, 14)
        return self.ip6(nhs[0], chain + self.junk(0, 40))

    def g_ip6_udp(self):
        dport = self.r.choice([7, 53, 547, 546, self.r.randint(1, 65535)])
        return self.ip6(17, self.maybe_cut(self.udp(self.r.randint(1, 65535), dport, self.junk(0, 300))))

    def g_dhcp6(self):
        msg = bytes([self.r.choice([1, 3, 5, 6, 8, 11, 12, 0, 255])]) + self.junk(3, 3)
        for _ in range(self.r.randint(0, 8)):
            code = self.r.choice([1, 2, 3, 6, 8, 14, 23, 24, 25, 39, self.r.randint(0, 65535)])
            ln = self.r.choice([0, 2, 4, 12, 14, 65535, self.r.randint(0, 60)])
            msg += struct.pack("!HH", code, ln) + self.junk(0, min(ln, 80) + self.r.choice([-2, 0, 3]))
        return self.ip6(17, self.udp(546, 547, msg), src="fe80::2", dst="ff02::1:2",
                        bad=self.r.random() < 0.3)

    def ndp_opts(self):
        out = b""
        for _ in range(self.r.randint(0, 6)):
            t = self.r.choice([1, 2, 3, 5, 14, 25, 31, 0, 255])
            ln = self.r.choice([0, 1, 1, 2, 255, self.r.randint(0, 8)])
            out += bytes([t, ln]) + self.junk(0, max(ln * 8 - 2, 0) + self.r.choice([-4, 0, 0, 6]))
        return out

    def g_icmp6(self):
        t = self.r.choice([128, 128, 133, 133, 135, 135, 136, 134, 137, 143, 1, 255])
        body = struct.pack("!BBH", t, self.r.choice([0, 0, 1, 255]), self.r.getrandbits(16))
        if t in (135, 136, 137):
            body += b"\0" * 4 + socket.inet_pton(socket.AF_INET6, self.r.choice(DST6))
            if self.r.random() < 0.3:
                body = body[: self.r.randint(0, len(body))]
        elif t in (133, 134):
            body += self.junk(0, 12)
        elif t == 128:
            body += self.junk(0, 3) if self.r.random() < 0.4 else self.junk(4, 120)
        else:
            body += self.junk(0, 40)
        body += self.ndp_opts()
        return self.ip6(58, body, src=self.r.choice(["fe80::2", H6, "::"]),
                        dst=self.r.choice(["ff02::2", "ff02::1", GW6, "ff02::1:ff00:1", R6]),
                        bad=self.r.random() < 0.4)

    def g_oversized(self):
        # at and beyond the largest frame a 65520-byte MTU allows: the kernel
        # refuses what does not fit (counted as rejected)
        n = self.r.choice([65520, 65520, 65535, 70000])
        if self.r.random() < 0.5:
            return self.ip4(17, self.udp(40000, 7, b"\xaa" * (n - 28)), dst=R4, bad=False)[: n + 14]
        return self.ip6(17, self.udp(40000, 7, b"\xbb" * (n - 48)), dst=R6, bad=False)[: n + 14]


def main():
    ifname, peer, count, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.bind((ifname, 0))
    own = s.getsockname()[4]  # (ifname, proto, pkttype, hatype, addr)
    g = Gen(random.Random(seed), own, bytes.fromhex(peer.replace(":", "")))
    gens = [(n, getattr(g, n)) for n in sorted(dir(g)) if n.startswith("g_")]
    weights = {"g_oversized": 1, "g_eth_short": 2}
    pool = [x for x in gens for _ in range(weights.get(x[0], 4))]
    sent, rejected, per_gen, per_errno = 0, 0, {}, {}
    for _ in range(count):
        name, fn = g.r.choice(pool)
        frame = fn()
        try:
            s.send(frame)
            sent += 1
            per_gen[name] = per_gen.get(name, 0) + 1
        except OSError as e:
            rejected += 1
            k = errno.errorcode.get(e.errno, str(e.errno))
            per_errno[k] = per_errno.get(k, 0) + 1
    print("sent=%d rejected=%d seed=%d" % (sent, rejected, seed))
    print("by generator: " + " ".join("%s=%d" % kv for kv in sorted(per_gen.items())))
    print("kernel refused: " + (" ".join("%s=%d" % kv for kv in sorted(per_errno.items())) or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
