#!/usr/bin/env python3
"""Write the seed inputs of every fuzz target (passt/src/fuzz_entry.rs gives
each target's input format), one folder per target. Deterministic: run from
this folder, and the same files come out."""
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
def write(target, name, data):
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, name + ".bin"), "wb") as f:
        f.write(data)

# frame_dispatch: frames behind 16-bit lengths (top bit: fix checksums).
for name, frames in seeds.items():
    write("frame_dispatch", name, b"".join(struct.pack("!H", len(fr)) + fr for fr in frames))

# Responders: a byte (odd: checksums fixed) then the frame.
for target, frames in {"arp": [arp], "dhcp": dhcp, "ndp": [rs, ns], "dhcpv6": [dhcpv6]}.items():
    for i, fr in enumerate(frames):
        write(target, "valid%d" % i, b"\0" + fr)
        write(target, "fixed%d" % i, b"\1" + fr)

# wire: a byte (odd: checksums fixed) then a frame; TCP with options too.
synopt = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 0x70, 0x02, 65535, 0, 0) + bytes([2, 4, 5, 0xb4, 3, 3, 7, 0])
t4o = eth(OURS, 0x0800, ip4(G4, R4, 6, l4csum4(G4, R4, 6, synopt, 16)))
data6 = struct.pack("!HHIIBBHHH", 40000, 80, 2, 5, 0x50, 0x18, 512, 0, 0) + b"payload"
t6 = eth(OURS, 0x86dd, ip6(G6, GW6, 6, l4csum6(G6, GW6, 6, data6, 16)))
for name, fr in {"arp": arp, "dhcp": dhcp[0], "udp4": u4, "udp6": u6, "ping4": p4, "ping6": p6,
                 "syn4": t4, "synopt4": t4o, "data6": t6, "ns": ns}.items():
    write("wire", name, b"\0" + fr)

# stream: 4 bits of chunk count, 16-bit chunk sizes, then the byte stream.
def framed(frames): return b"".join(struct.pack("!I", len(fr)) + fr for fr in frames)
allf = [arp, dhcp[0], rs, ns, dhcpv6, u4, u6, p4, p6, t4]
write("stream", "whole", b"\0" + framed(allf))
write("stream", "chunks", b"\3" + struct.pack("!HHH", 0, 6, 99) + framed(allf))
write("stream", "bigframe", b"\1" + struct.pack("!H", 4095) + framed([eth(OURS, 0x0800, b"\x45" + b"\0" * 9000)]))
write("stream", "badlen", b"\0" + framed([arp, u4]) + struct.pack("!I", 13) + arp)

# port_spec: option and mode (bits 0-1: t u T U; bit 2: pasta), then
# specifiers separated by NUL.
specs = {
    "tcp_passt": (0, ["22", "1000-1010:2000-2010", "~1005", "127.0.0.1/8080-8080:80-80"]),
    "udp_pasta": (5, ["auto", "53"]),
    "all": (4, ["0.0.0.0/all:192.0.2.6,~22", "none"]),
    "v6": (0, ["[::1]/5353", "::1/5353-5353:53-53", "%eth0/22", "*%lo/23"]),
    "ns": (6, ["10-12:20-22,~11", "1-65535"]),
    "bad": (0, ["1-", "22-23:80", "0.0.0.0/22:224.0.0.1", "%abcdefghijklmnop/22"]),
}
for name, (sel, l) in specs.items():
    write("port_spec", name, bytes([sel]) + b"\0".join(x.encode() for x in l))

# tcp_conn: header (socket room/16, our ISN, the guest's ISN, who opens:
# even the guest, then its SYN's window, MSS, window scale), then events.
def seg(flags, mode=0, seq=None, ack=None, wnd=512, dlen=0, opts=None):
    b = bytes([0, flags, mode | (0x10 if opts else 0)])
    if mode & 3 in (1, 2): b += struct.pack("!H", seq)
    elif mode & 3 == 3: b += struct.pack("!I", seq)
    m = (mode >> 2) & 3
    if m == 1: b += struct.pack("!H", ack)
    elif m == 2: b += bytes([ack])
    elif m == 3: b += struct.pack("!I", ack)
    b += struct.pack("!HH", wnd, dlen)
    if opts: b += struct.pack("!HB", *opts)
    return b
def data(n): return bytes([3]) + struct.pack("!H", n)
def eof(): return bytes([4, 0])
def rst(): return bytes([4, 1])
def room(n): return bytes([5]) + struct.pack("!H", n)
def wndup(): return bytes([6])
def wait(v, unit): return bytes([7]) + struct.pack("!HB", v, unit)
guest = struct.pack("!HIIB", 4096, 0x1000, 0x2000, 0) + struct.pack("!HHB", 65535, 1460, 7)
host = struct.pack("!HIIB", 4096, 0xfffffff0, 0x2000, 1)
A, PA, FA, SA, R = 0x10, 0x18, 0x11, 0x12, 0x04
write("tcp_conn", "guest_bulk_close", guest + seg(A) + seg(PA, dlen=1000) + data(3000) + seg(A) + eof()
      + seg(A) + seg(FA) + wait(100, 0))
write("tcp_conn", "host_open_dupacks", host + seg(SA, opts=(1400, 5)) + data(60000)
      + seg(A, mode=4, ack=0) + seg(A, mode=4, ack=0) + seg(A, mode=4, ack=0) + seg(A, mode=4, ack=0)
      + wait(1500, 0) + seg(R))
write("tcp_conn", "zero_window_persist", guest + seg(A, wnd=0) + data(500) + wait(2, 1) + wait(5, 1)
      + seg(A, wnd=100) + wait(3, 2) + rst())
write("tcp_conn", "socket_full", struct.pack("!HIIB", 1, 7, 0xffffff00, 0) + struct.pack("!HHB", 1000, 0, 0xff)
      + seg(A) + seg(PA, dlen=2000) + seg(PA, dlen=2000) + room(4000) + wndup() + seg(PA, mode=2, seq=10, dlen=2999)
      + seg(FA, mode=1, seq=5) + wait(9000, 2))
write("tcp_conn", "synack_lost", guest + wait(1100, 0) + wait(3000, 0) + seg(0x02, mode=3, seq=0x2000) + seg(A) + eof()
      + wait(70, 1))
