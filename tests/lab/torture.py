#!/usr/bin/env python3
"""torture.py - floods of random and mutated frames for 35-torture.sh.

    torture.py tap IFNAME PEER_MAC COUNT SEED DONE_FILE
        Inside pasta's namespace: capture up to 1000 real frames on the tap
        (both directions, AF_PACKET, at most 3 s), build a pool of frames
        from them (mutated, see mutate()) and from fuzzframes.py's
        generators, then write frames from the pool, in turn, to the tap
        until COUNT of them went past the tap's queue (frames the kernel
        drops there when pasta lags are counted, "tap_queue_drops", and
        made up for; at most 3 x COUNT sends). Creates DONE_FILE at the end.
    torture.py relay LISTEN_PATH PASST_PATH PER_FRAME COUNT SEED GUEST_MAC
        Between a guest and passt's UNIX socket (QEMU stream framing):
        accepts one guest on LISTEN_PATH, connects to PASST_PATH, copies
        passt's bytes to the guest unchanged, and passes the guest's frames
        on whole, each followed by PER_FRAME frames of the pool (sent with
        it in one write, at a frame boundary) until COUNT were injected.
        Injected frames have GUEST_MAC as their source, as a guest's own
        frames would, and lengths 14..65535 (anything else ends the
        connection by design). Exits when either side closes.
    torture.py udp-echo ADDR PORT SECONDS
        UDP echo server: every datagram back to its sender, unchanged.
    torture.py udp-xfer ADDR PORT COUNT
        COUNT numbered datagrams of 1200 bytes to the echo server, one at a
        time, each resent (every 0.2 s, at most 25 times) until its exact
        copy comes back; prints "udp datagrams=N resent=R sha256=HEX" of
        the echoed stream, exits 0 only if all came back intact.

Frames of the real flows are never replayed as they are: a mutated copy
gets new TCP/UDP ports (source 1024-9999, destination 9, 13 or random
below 1024), so it can never belong to a live connection, then random
bytes changed (never the ports' bytes) and, for a third, a random cut.
Every destination stays inside the lab. Both modes print one summary line
"injected=N rejected=M pool=P captured=C seconds=S" (rejected: refused by
the kernel, e.g. beyond the MTU). Standard library only.
"""
import os
import random
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fuzzframes  # noqa: E402


def l4_offset(f):
    """(offset of the L4 header, protocol) of an Ethernet frame, or None."""
    if len(f) < 14:
        return None
    et = struct.unpack("!H", f[12:14])[0]
    if et == 0x0800 and len(f) >= 34:
        return 14 + (f[14] & 15) * 4, f[23]
    if et == 0x86DD and len(f) >= 54:
        return 54, f[20]
    return None


def mutate(r, f, own, peer):
    """A mutated copy of the real frame f (see the module documentation)."""
    f = bytearray(peer + own + f[12:])
    lo = l4_offset(f)
    keep = set()
    if lo and lo[1] in (6, 17) and len(f) >= lo[0] + 4:
        o = lo[0]
        dport = r.choice([9, 13, r.randint(1, 1023)])
        f[o:o + 4] = struct.pack("!HH", r.randint(1024, 9999), dport)
        keep = set(range(o, o + 4))
    elif lo and lo[1] in (6, 17):
        return None  # too short to move off the live ports
    for _ in range(r.randint(1, 4)):
        i = r.randint(14, max(14, len(f) - 1))
        if i < len(f) and i not in keep:
            f[i] = r.getrandbits(8)
    if r.random() < 0.33:
        f = f[: r.randint(max(14, min(len(f), 34)), len(f))]
    return bytes(f)


def pool_of(r, own, peer, captured, n_gen):
    g = fuzzframes.Gen(r, own, peer)
    gens = [getattr(g, n) for n in sorted(dir(g)) if n.startswith("g_") and n != "g_oversized"]
    pool = [fn() for fn in (r.choice(gens) for _ in range(n_gen))]
    for f in captured:
        for _ in range(3):
            m = mutate(r, f, own, peer)
            if m:
                pool.append(m)
    r.shuffle(pool)
    return pool


def mode_tap(ifname, peer_mac, count, seed, done):
    r = random.Random(seed)
    peer = bytes.fromhex(peer_mac.replace(":", ""))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind((ifname, 0))
    own = s.getsockname()[4]
    s.settimeout(0.5)
    captured, end = [], time.monotonic() + 3
    while len(captured) < 1000 and time.monotonic() < end:
        try:
            captured.append(s.recv(65536)[:1600])
        except socket.timeout:
            pass
    out = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    out.bind((ifname, 0))
    pool = pool_of(r, own, peer, captured, 4000)
    # Frames the kernel refuses (beyond the MTU, too short) leave the pool,
    # so that COUNT frames really go into the tap.
    good = []
    rejected = 0
    for f in pool:
        try:
            out.send(f)
            good.append(f)
        except OSError:
            rejected += 1
    pool, n = good, len(good)
    # Paced by the tap's queue: when the kernel had to drop frames pasta
    # did not read in time, wait a little (the flood is to reach pasta).
    # (/proc/net/dev is the reading process's network namespace's, unlike
    # /sys, which is the one it was mounted in.)
    def drops():
        try:
            with open("/proc/net/dev") as fh:
                for line in fh:
                    name, _, rest = line.partition(":")
                    if name.strip() == ifname:
                        return int(rest.split()[11])  # transmit drops
        except (OSError, ValueError, IndexError):
            pass
        return 0

    d0 = last = drops()
    t0 = time.monotonic()
    send = out.send
    sent, waits = n, 0
    # Until COUNT frames went past the tap's queue to pasta (bounded: at
    # most three times as many sends).
    # Bursts of BURST frames a millisecond apart (about 30,000 frames/s,
    # well below what pasta reads) keep the queue from overflowing in the
    # first place: an overflow drops the real transfers' segments too, and
    # a TCP upload that loses retransmissions in a row backs its timer off
    # (Karn) until the round can't finish (README, "Known problems").
    BURST = 32
    while sent - (drops() - d0) < count and sent < 3 * count:
        for f in pool[: min(BURST, count - sent + drops() - d0)]:
            try:
                send(f)
                sent += 1
            except OSError:
                rejected += 1
        pool = pool[BURST:] + pool[:BURST]
        time.sleep(0.001)
        d = drops()
        if d > last:
            # The queue overflowed: let pasta drain it (the real traffic
            # shares it, and bursts of losses would only test the
            # namespace's retransmission backoff).
            waits += 1
            time.sleep(0.02)
        last = d
    secs = time.monotonic() - t0
    print("injected=%d rejected=%d pool=%d captured=%d seconds=%.1f tap_queue_drops=%d pauses=%d"
          % (sent, rejected, n, len(captured), secs, drops() - d0, waits), flush=True)
    open(done, "w").close()
    return 0


def mode_relay(listen, passt, per_frame, count, seed, guest_mac):
    r = random.Random(seed)
    own = bytes.fromhex(guest_mac.replace(":", ""))
    peer = bytes([0x9A, 0x55] * 3)
    pool = [f for f in pool_of(r, own, peer, [], 4000) if 14 <= len(f) <= 65535]
    wires = [struct.pack("!I", len(f)) + f for f in pool]
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(listen)
    ls.listen(1)
    print("listening", flush=True)
    g, _ = ls.accept()
    p = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    p.connect(passt)

    def down():
        try:
            while True:
                d = p.recv(1 << 20)
                if not d:
                    break
                g.sendall(d)
        except OSError:
            pass
        try:
            g.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    threading.Thread(target=down, daemon=True).start()
    buf, injected, k, t0 = b"", 0, 0, time.monotonic()
    guest_frames = 0
    try:
        while True:
            d = g.recv(1 << 20)
            if not d:
                break
            buf += d
            out = []
            while len(buf) >= 4:
                n = struct.unpack("!I", buf[:4])[0]
                if len(buf) < 4 + n:
                    break
                out.append(buf[:4 + n])
                buf = buf[4 + n:]
                guest_frames += 1
                for _ in range(min(per_frame, count - injected)):
                    out.append(wires[k % len(wires)])
                    k += 1
                    injected += 1
            if out:
                p.sendall(b"".join(out))
    except OSError as e:
        print("relay: %s" % e, flush=True)
    secs = time.monotonic() - t0
    print("injected=%d rejected=0 pool=%d captured=0 seconds=%.1f guest_frames=%d"
          % (injected, len(pool), secs, guest_frames), flush=True)
    p.close()
    return 0


def mode_udp_echo(addr, port, secs):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((addr, port))
    print("listening %s %d" % (addr, port), flush=True)
    end = time.monotonic() + secs
    while time.monotonic() < end:
        s.settimeout(max(0.1, end - time.monotonic()))
        try:
            d, a = s.recvfrom(65536)
            s.sendto(d, a)
        except (socket.timeout, OSError):
            pass
    return 0


def mode_udp_xfer(addr, port, count):
    import hashlib
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.connect((addr, port))
    h, resent = hashlib.sha256(), 0
    for i in range(count):
        d = struct.pack("!Q", i) + hashlib.shake_256(struct.pack("!Q", i)).digest(1192)
        for t in range(25):
            s.send(d)
            resent += t > 0
            end = time.monotonic() + 0.2
            got = None
            while time.monotonic() < end:
                s.settimeout(max(0.01, end - time.monotonic()))
                try:
                    r = s.recv(65536)
                except socket.timeout:
                    break
                except OSError:
                    continue
                if r == d:
                    got = r
                    break
            if got:
                h.update(got)
                break
        else:
            print("udp datagram %d never came back (%d resent)" % (i, resent), flush=True)
            return 1
    print("udp datagrams=%d resent=%d sha256=%s" % (count, resent, h.hexdigest()), flush=True)
    return 0


def main():
    a = sys.argv[1:]
    if a and a[0] == "tap" and len(a) == 6:
        return mode_tap(a[1], a[2], int(a[3]), int(a[4]), a[5])
    if a and a[0] == "relay" and len(a) == 7:
        return mode_relay(a[1], a[2], int(a[3]), int(a[4]), int(a[5]), a[6])
    if a and a[0] == "udp-echo" and len(a) == 4:
        return mode_udp_echo(a[1], int(a[2]), float(a[3]))
    if a and a[0] == "udp-xfer" and len(a) == 4:
        return mode_udp_xfer(a[1], int(a[2]), int(a[3]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
