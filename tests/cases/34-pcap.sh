# 34-pcap: -p/--pcap captures every tap frame, both directions, for pasta and
# passt, in a file tcpdump reads.
#
# A. pasta --config-net -p FILE (spawn form); in the namespace: ping and
#    ping -6 to the remote host, UDP to the remote echo (IPv4 and IPv6), one
#    TCP connection with a line each way to the remote echo server, and a
#    1 MiB upload after a 1 MiB download (tcplab.py sendclose: large frames
#    both ways). `tcpdump -nn -r FILE` shows ARP request and reply for the
#    gateway, an NDP neighbour solicitation and advertisement, ICMP and
#    ICMPv6 echo request and reply, UDP both ways (IPv4 and IPv6), and the TCP
#    connection's SYN, SYN-ACK, data both ways and FIN both ways.
# B. passt -f -s SOCK -p FILE with the stream guest of 25-passt-stream.py
#    (modes config and traffic): ARP, NDP, DHCP, ICMP, UDP and TCP, both
#    ways, the same way.
# Both files, parsed record by record: the pcap header (magic, version 2.4,
#    Ethernet), every record whole (captured length = length <= snaplen),
#    time stamps (wall clock, microseconds) between the case's start and end
#    and never going backwards, and pasta's file holding frames longer than
#    1514 bytes (its MTU is 65520) whole. Both files are complete once the
#    process is gone (written before exit).

need_tools tcpdump socat
[[ -x $PASST_BIN ]] || { log "no executable passt at $PASST_BIN (set PASST_BIN)"; exit 3; }
GUEST=("$PYTHON" "$(dirname "$LAB_CASE_FILE")/25-passt-stream.py")
[[ -f ${GUEST[1]} ]] || fail "guest helper ${GUEST[1]} missing"
W=$LAB_WORK
ECHO_TCP=10034 BULK=10035
ours=0
pasta_is_ours && ours=1

cat >"$W/pcapcheck.py" <<'EOF'
"""pcapcheck.py FILE T0 T1 MINMAX: check a classic pcap file record by record."""
import struct, sys
path, t0, t1, minmax = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
b = open(path, "rb").read()
if len(b) < 24:
    sys.exit(f"FAIL: {len(b)} bytes, no pcap header")
magic = struct.unpack("<I", b[:4])[0]
e = "<" if magic == 0xa1b2c3d4 else ">" if magic == 0xd4c3b2a1 else None
if e is None:
    sys.exit(f"FAIL: magic {b[:4].hex()}")
_, vmaj, vmin, _, _, snaplen, link = struct.unpack(e + "IHHiIII", b[:24])
if (vmaj, vmin, link) != (2, 4, 1):
    sys.exit(f"FAIL: version {vmaj}.{vmin} link type {link}")
off, n, last, big = 24, 0, 0.0, 0
while off < len(b):
    if off + 16 > len(b):
        sys.exit(f"FAIL: record {n}: header cut at the end of the file")
    sec, usec, cap, ln = struct.unpack(e + "IIII", b[off:off + 16])
    t = sec + usec / 1e6
    if usec >= 1000000:
        sys.exit(f"FAIL: record {n}: {usec} microseconds")
    if cap != ln or ln > snaplen or ln < 14:
        sys.exit(f"FAIL: record {n}: captured {cap} of {ln} bytes, snaplen {snaplen}")
    if not t0 - 1 <= t <= t1 + 1:
        sys.exit(f"FAIL: record {n}: time stamp {t:.6f} outside {t0:.0f}..{t1:.0f}")
    if t < last:
        sys.exit(f"FAIL: record {n}: time stamp {t:.6f} before the previous one {last:.6f}")
    if off + 16 + cap > len(b):
        sys.exit(f"FAIL: record {n}: frame cut at the end of the file")
    last, big, off, n = t, max(big, ln), off + 16 + cap, n + 1
if big < minmax:
    sys.exit(f"FAIL: longest frame {big} bytes, expected at least {minmax}")
print(f"records={n} snaplen={snaplen} longest={big}")
EOF

# check_pcap NAME FILE T0 T1 MINMAX: the record-level checks, then NAME.txt =
# `tcpdump -nn -r FILE`
check_pcap() {
	local r
	r=$(timeout 20 "$PYTHON" "$W/pcapcheck.py" "$2" "$3" "$4" "$5" 2>&1) || fail "$1: $r"
	ok "$1: pcap header and every record well-formed, time stamps in range and in order: $r"
	timeout 20 tcpdump -nn -r "$2" >"$W/$1.txt" 2>"$W/$1.tcpdump.err" ||
		fail "$1: tcpdump -r: $(tail -n 3 "$W/$1.tcpdump.err")"
	dump_file "$W/$1.txt"
	ok "$1: tcpdump -r read $(wc -l <"$W/$1.txt") frames ($(head -n 1 "$W/$1.tcpdump.err"))"
}
# has NAME WHAT ERE: NAME.txt has a line matching ERE
has() { grep -Eq -- "$3" "$W/$1.txt" || fail "$1: no $2 in the capture (/$3/)"; }
q() { sed 's/[.]/\\./g' <<<"$1"; }   # dots of an address, for an ERE

# both NAME FROM TO PROTO-ERE: frames FROM > TO and TO > FROM matching PROTO-ERE
both() {
	has "$1" "$4 $2 -> $3" "$(q "$2")[.0-9]* > $(q "$3")[.0-9]*: $4"
	has "$1" "$4 $3 -> $2" "$(q "$3")[.0-9]* > $(q "$2")[.0-9]*: $4"
}

# tcp_conn NAME CLIENT SERVER PORT: SYN, SYN-ACK, data both ways, FIN both ways
tcp_conn() {
	local c s
	c=$(q "$2") s=$(q "$3")
	has "$1" "SYN to $3.$4" "$c\.[0-9]+ > $s\.$4: Flags \[S\]"
	has "$1" "SYN-ACK from $3.$4" "$s\.$4 > $c\.[0-9]+: Flags \[S\.\]"
	has "$1" "data to $3.$4" "$c\.[0-9]+ > $s\.$4: Flags \[[^]]*\], seq [0-9]+:[0-9]+, .*length [1-9]"
	has "$1" "data from $3.$4" "$s\.$4 > $c\.[0-9]+: Flags \[[^]]*\], seq [0-9]+:[0-9]+, .*length [1-9]"
	has "$1" "FIN to $3.$4" "$c\.[0-9]+ > $s\.$4: Flags \[FP?\.\]"
	has "$1" "FIN from $3.$4" "$s\.$4 > $c\.[0-9]+: Flags \[FP?\.\]"
}

# ---- A. pasta ---------------------------------------------------------------------
lab_tcp_server echo up serve-echo $ECHO_TCP --bind $R4 --bind "$R6"
lab_tcp_server bulk up serve-sendclose $BULK --mib 1 --bind $R4
t0=$EPOCHREALTIME
pasta_spawn pasta 60 --config-net -p "$W/pasta.pcap" -t none -u none -T none -U none <<EOF
ping -c 2 -i 0.2 -W 2 $R4 >/dev/null && echo ping4=ok
ping -6 -c 2 -i 0.2 -W 2 $R6 >/dev/null && echo ping6=ok
echo tok4 | timeout 3 socat -T 2 - UDP:$R4:$ECHO_PORT
echo tok6 | timeout 3 socat -T 2 - UDP6:[$R6]:$ECHO_PORT
"$PYTHON" "$LAB_DIR/tcplab.py" client-many --addr $R4 --port $ECHO_TCP --count 1 --timeout 10
"$PYTHON" "$LAB_DIR/tcplab.py" client-sendclose --addr $R4 --port $BULK --mib 1 --timeout 20 --wait-file "$W/bulk.log"
EOF
rc=$?
t1=$EPOCHREALTIME
((rc == 0)) || fail "A: pasta (or the traffic in its namespace) exited with status $rc"
for w in ping4=ok ping6=ok remote:tok4 remote:tok6 "result connected=1 echoed=1 failed=0" "server_done=yes"; do
	grep -q "$w" "$W/pasta.out" || fail "A: traffic in the namespace: no '$w'"
done
ok "A: ping, UDP, TCP echo and a 1 MiB exchange each way ran in pasta's namespace"
check_pcap pasta "$W/pasta.pcap" "$t0" "$t1" 1515
has pasta "ARP request for the gateway" "ARP, Request who-has $(q $GW4) tell $(q $H4)"
has pasta "ARP reply from the gateway" "ARP, Reply $(q $GW4) is-at 9a:55:9a:55:9a:55"
has pasta "NDP neighbour solicitation" "ICMP6, neighbor solicitation"
has pasta "NDP neighbour advertisement" "ICMP6, neighbor advertisement"
has pasta "ICMP echo request" "$(q $H4) > $(q $R4): ICMP echo request"
has pasta "ICMP echo reply" "$(q $R4) > $(q $H4): ICMP echo reply"
has pasta "ICMPv6 echo request" "$(q $H6) > $(q $R6): ICMP6, echo request"
has pasta "ICMPv6 echo reply" "$(q $R6) > $(q $H6): ICMP6, echo reply"
both pasta $H4 $R4 "UDP"
both pasta $H6 $R6 "UDP"
tcp_conn pasta $H4 $R4 $ECHO_TCP
tcp_conn pasta $H4 $R4 $BULK
ok "A: pasta's capture: ARP, NDP, ICMP/ICMPv6 echo, UDP (IPv4, IPv6), TCP handshake, data and FIN, both ways"

# ---- B. passt ---------------------------------------------------------------------
# guest MODE ARG...: the stream guest; its output in guest-MODE.out
guest() {
	local m=$1 rc
	timeout 30 "${GUEST[@]}" "$@" >"$W/guest-$m.out" 2>&1
	rc=$?
	sed "s/^/    $m| /" "$W/guest-$m.out"
	return $rc
}
dump_file "$W/passt.log" "$W/passt.out"
t0=$EPOCHREALTIME
log "background: passt -f -l passt.log -s passt.sock -p passt.pcap"
timeout -k 2 60 "$PASST_BIN" -f -l "$W/passt.log" -s "$W/passt.sock" -p "$W/passt.pcap" >"$W/passt.out" 2>&1 &
pid=$!
wait_until 5 test -S "$W/passt.sock" || fail "B: passt made no socket"
guest config "$W/passt.sock" || fail "B: guest configuration (DHCP, ARP, NDP, DHCPv6)"
guest traffic "$W/passt.sock" $ECHO_TCP || fail "B: guest traffic (UDP, ICMP, TCP)"
kill -TERM $pid
wait_until 5 eval "! alive $pid" || fail "B: passt still running 5 s after SIGTERM"
wait $pid
t1=$EPOCHREALTIME
check_pcap passt "$W/passt.pcap" "$t0" "$t1" 0
has passt "DHCP request" "BOOTP/DHCP, Request from"
has passt "DHCP reply" "BOOTP/DHCP, Reply"
has passt "ARP request for the gateway" "ARP, Request who-has $(q $GW4)"
has passt "ARP reply from the gateway" "ARP, Reply $(q $GW4) is-at"
has passt "NDP router solicitation" "ICMP6, router solicitation"
has passt "NDP router advertisement" "ICMP6, router advertisement"
has passt "NDP neighbour solicitation" "ICMP6, neighbor solicitation"
has passt "NDP neighbour advertisement" "ICMP6, neighbor advertisement"
has passt "ICMP echo request" "> $(q $R4): ICMP echo request"
has passt "ICMP echo reply" "$(q $R4) > [0-9.]+: ICMP echo reply"
both passt $H4 $R4 "UDP"
both passt $H6 $R6 "UDP"
tcp_conn passt $H4 $R4 $ECHO_TCP
tcp_conn passt $H6 $R6 $ECHO_TCP
ok "B: passt's capture: DHCP, ARP, NDP, ICMP echo, UDP (IPv4, IPv6), TCP handshake, data and FIN (IPv4, IPv6), both ways"
