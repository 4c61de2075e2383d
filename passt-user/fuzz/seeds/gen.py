#!/usr/bin/env python3
"""Write seed inputs for the frame_dispatch fuzz target: valid frames of every
kind the dispatcher handles, each input a sequence of frames prefixed by a
16-bit big-endian length (the target's input format). Run from this folder."""
import struct, os

GUEST = bytes([2, 0, 0, 0, 0, 2]); OURS = bytes([0x9a, 0x55] * 3); BCAST = b"\xff" * 6

def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff

def ip4(src, dst, proto, l4):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0, bytes(src), bytes(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + l4

def ip6(src, dst, nh, l4):
    return struct.pack("!IHBB16s16s", 6 << 28, len(l4), nh, 255, src, dst) + l4

def l4csum4(src, dst, proto, l4, off):
    ph = bytes(src) + bytes(dst) + struct.pack("!BBH", 0, proto, len(l4))
    c = csum(ph + l4); return l4[:off] + struct.pack("!H", c) + l4[off + 2:]

def l4csum6(src, dst, nh, l4, off):
    ph = src + dst + struct.pack("!IxxxB", len(l4), nh)
    c = csum(ph + l4); return l4[:off] + struct.pack("!H", c) + l4[off + 2:]

def udp(sp, dp, data): return struct.pack("!HHHH", sp, dp, 8 + len(data), 0) + data
def eth(dst, et, payload): return dst + GUEST + struct.pack("!H", et) + payload
def v6(s): import ipaddress; return ipaddress.IPv6Address(s).packed

G4, GW4, R4 = [192, 0, 2, 2], [192, 0, 2, 1], [198, 51, 100, 1]
G6, LL, GW6, MC = v6("2001:db8::2"), v6("fe80::2"), v6("fe80::1"), v6("ff02::2")

arp = eth(BCAST, 0x0806, struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, GUEST, bytes(G4), b"\0" * 6, bytes(GW4)))
bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, 0x1234, 0, 0x8000, b"\0"*4, b"\0"*4, b"\0"*4, b"\0"*4, GUEST + b"\0"*10, b"", b"")
discover = bootp + b"\x63\x82\x53\x63" + bytes([53, 1, 1, 55, 4, 1, 3, 6, 26, 255])
request = bootp + b"\x63\x82\x53\x63" + bytes([53, 1, 3, 50, 4] + G4 + [54, 4] + GW4 + [255])
dhcp = [eth(BCAST, 0x0800, ip4([0]*4, [255]*4, 17, udp(68, 67, m))) for m in (discover, request)]
rs = bytes([133, 0, 0, 0, 0, 0, 0, 0, 1, 1]) + GUEST
rs = eth(b"\x33\x33\0\0\0\x02", 0x86dd, ip6(LL, MC, 58, l4csum6(LL, MC, 58, rs, 2)))
ns = bytes([135, 0, 0, 0, 0, 0, 0, 0]) + GW6 + bytes([1, 1]) + GUEST
sn = v6("ff02::1:ff00:1")
ns = eth(b"\x33\x33\xff\0\0\x01", 0x86dd, ip6(LL, sn, 58, l4csum6(LL, sn, 58, ns, 2)))
solicit = bytes([1, 0x12, 0x34, 0x56]) + struct.pack("!HHHH6s", 1, 10, 3, 1, GUEST) + struct.pack("!HHIII", 3, 12, 1, 0, 0) + struct.pack("!HHH", 6, 2, 23)
d6 = v6("ff02::1:2")
dhcpv6 = eth(b"\x33\x33\0\x01\0\x02", 0x86dd, ip6(LL, d6, 17, l4csum6(LL, d6, 17, udp(546, 547, solicit), 6)))
u4 = eth(OURS, 0x0800, ip4(G4, R4, 17, l4csum4(G4, R4, 17, udp(40000, 7, b"hello"), 6)))
u6 = eth(OURS, 0x86dd, ip6(G6, GW6, 17, l4csum6(G6, GW6, 17, udp(40000, 53, b"\x12\x34\x01\x00"), 6)))
echo = bytes([8, 0, 0, 0, 0x12, 0x34, 0, 1]) + b"ping" * 8
p4 = eth(OURS, 0x0800, ip4(G4, GW4, 1, echo[:2] + struct.pack("!H", csum(echo)) + echo[4:]))
echo6 = bytes([128, 0, 0, 0, 0x12, 0x34, 0, 1]) + b"ping6"
p6 = eth(OURS, 0x86dd, ip6(G6, GW6, 58, l4csum6(G6, GW6, 58, echo6, 2)))
syn = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 0x50, 0x02, 65535, 0, 0)
t4 = eth(OURS, 0x0800, ip4(G4, R4, 6, l4csum4(G4, R4, 6, syn, 16)))

seeds = {"arp": [arp], "dhcp": dhcp, "ndp": [rs, ns], "dhcpv6": [dhcpv6], "udp": [u4, u6],
         "ping": [p4, p6], "tcp": [t4], "mixed": [arp, dhcp[0], rs, ns, dhcpv6, u4, u6, p4, p6, t4]}
os.makedirs("frame_dispatch", exist_ok=True)
for name, frames in seeds.items():
    with open(os.path.join("frame_dispatch", name + ".bin"), "wb") as f:
        for fr in frames: f.write(struct.pack("!H", len(fr)) + fr)
