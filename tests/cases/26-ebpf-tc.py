"""26-ebpf-tc.py: crafted ARP and NDP frames from inside pasta's namespace.

    26-ebpf-tc.py IFNAME CHECK

Sends frames on IFNAME with an AF_PACKET socket (they leave through the tap,
where the eBPF classifier sees them) and reads what comes back on the same
interface. Prints one "CHECK ok ..." line or "CHECK FAIL ..." and exits 1.

CHECK:
  arp-padded   ARP request for 192.0.2.88 padded to 60 bytes: a 42-byte reply
               from 9a:55:9a:55:9a:55 with the addresses swapped.
  ns-noopt     neighbour solicitation for 2001:db8:2::99 without options (the
               reply is longer than the request): an 86-byte NA, R/S/O set,
               target link-layer option with our MAC, from a link-local
               address, with a valid ICMPv6 checksum.
  ns-hop64     the same with hop limit 64: invalid (RFC 4861 7.1.1), no NA.
  ns-badsum    the same with a wrong checksum: no NA.
  arp-htype6   ARP request for 192.0.2.77 with hardware type 6 (IEEE 802): no
               reply.
"""
import socket
import struct
import sys
import time

OUR_MAC = bytes.fromhex("9a559a559a55")
ETH_P_ALL = 0x0003


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def icmp6_csum(src, dst, msg):
    pseudo = src + dst + struct.pack("!I3xB", len(msg), 58)
    return 0xFFFF - csum(pseudo + msg)


def frames(sock, secs):
    """Frames arriving on the interface (not our own sends) for `secs`."""
    end = time.monotonic() + secs
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        sock.settimeout(left)
        try:
            data, addr = sock.recvfrom(65536)
        except socket.timeout:
            return
        if addr[2] != socket.PACKET_OUTGOING:
            yield data


def ns_frame(src_mac, src, target, hop_limit=255, bad_sum=False):
    msg = bytearray(struct.pack("!BBHI", 135, 0, 0, 0) + target)
    c = icmp6_csum(src, solicited(target), bytes(msg))
    struct.pack_into("!H", msg, 2, c ^ 0x5555 if bad_sum else c)
    ip = struct.pack("!IHBB", 0x60000000, len(msg), 58, hop_limit) + src + solicited(target)
    dst_mac = b"\x33\x33\xff" + target[13:]
    return dst_mac + src_mac + b"\x86\xdd" + ip + bytes(msg)


def solicited(addr):
    return socket.inet_pton(socket.AF_INET6, "ff02::1:ff00:0")[:13] + addr[13:]


def main():
    ifname, check = sys.argv[1], sys.argv[2]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((ifname, 0))
    mac = s.getsockname()[4]
    me4 = socket.inet_aton("192.0.2.2")
    me6 = socket.inet_pton(socket.AF_INET6, "2001:db8:2::2")
    target6 = socket.inet_pton(socket.AF_INET6, "2001:db8:2::99")

    if check in ("arp-padded", "arp-htype6"):
        htype = 1 if check == "arp-padded" else 6
        tpa = socket.inet_aton("192.0.2.88" if check == "arp-padded" else "192.0.2.77")
        arp = struct.pack("!HHBBH", htype, 0x0800, 6, 4, 1) + mac + me4 + b"\0" * 6 + tpa
        frame = b"\xff" * 6 + mac + b"\x08\x06" + arp
        frame += b"\0" * (60 - len(frame))
        s.send(frame)
        for f in frames(s, 1.0):
            if f[12:14] != b"\x08\x06" or f[20:22] != b"\x00\x02" or f[28:32] != tpa:
                continue
            if check == "arp-htype6":
                print(check, "FAIL: a reply came:", f.hex())
                return 1
            want = mac + OUR_MAC + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) \
                + OUR_MAC + tpa + mac + me4
            if f != want:
                print(check, "FAIL: reply", f.hex(), "want", want.hex())
                return 1
            print(check, "ok: reply of", len(f), "bytes from", f[6:12].hex(":"))
            return 0
        if check == "arp-htype6":
            print(check, "ok: no reply")
            return 0
        print(check, "FAIL: no reply")
        return 1

    frame = ns_frame(mac, me6, target6, hop_limit=64 if check == "ns-hop64" else 255,
                     bad_sum=check == "ns-badsum")
    s.send(frame)
    for f in frames(s, 1.0):
        if f[12:14] != b"\x86\xdd" or f[20] != 58 or f[54] != 136 or f[62:78] != target6:
            continue
        if check != "ns-noopt":
            print(check, "FAIL: an NA came:", f.hex())
            return 1
        src, dst, msg = f[22:38], f[38:54], f[54:]
        plen = struct.unpack("!H", f[18:20])[0]
        problems = []
        if len(f) != 86 or plen != 32:
            problems.append("length %d, payload length %d" % (len(f), plen))
        if f[0:6] != mac or f[6:12] != OUR_MAC:
            problems.append("MACs %s > %s" % (f[6:12].hex(":"), f[0:6].hex(":")))
        if f[21] != 255 or dst != me6 or src[:2] != b"\xfe\x80":
            problems.append("hop limit %d, %s > %s" % (f[21], socket.inet_ntop(socket.AF_INET6, src),
                                                        socket.inet_ntop(socket.AF_INET6, dst)))
        if msg[1] != 0 or msg[4] != 0xE0 or msg[24:32] != b"\x02\x01" + OUR_MAC:
            problems.append("code/flags/option " + msg.hex())
        if csum(src + dst + struct.pack("!I3xB", len(msg), 58) + msg) != 0xFFFF:
            problems.append("bad checksum")
        if problems:
            print(check, "FAIL:", "; ".join(problems))
            return 1
        print(check, "ok: NA of", len(f), "bytes from", socket.inet_ntop(socket.AF_INET6, src))
        return 0
    if check == "ns-noopt":
        print(check, "FAIL: no NA")
        return 1
    print(check, "ok: no NA")
    return 0


if __name__ == "__main__":
    sys.exit(main())
