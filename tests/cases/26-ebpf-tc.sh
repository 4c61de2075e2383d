# 26-ebpf-tc: the eBPF tap classifier answers ARP and neighbour solicitations
# in the kernel (pasta --ebpf, pasta run as real root so that it loads the
# programs itself), and pasta answers them in userspace without it.
#
#   pasta -d --config-net --ebpf -p tap.pcap (-d: spawning a command, pasta
#   logs only warnings otherwise): the namespace pings the gateway over
#   IPv4 and IPv6 (resolving it by ARP and NDP), `ip neigh` shows pasta's MAC
#   for both; pasta's capture of what it read from the tap (-p) holds no ARP
#   request and no neighbour solicitation from a unicast address, its exit
#   counters show none read (svc_arp_requests, svc_ns_requests) while the
#   program counted its answers (arp_replies, na_replies). A crafted ARP
#   request for a non-Ethernet hardware type is left to pasta by the program,
#   which says so in pasta's log ("ebpf: tap_tc: ...").
#   Without --ebpf: the same pings work, pasta reads and answers the ARP and NS
#   requests itself (counters), and no eBPF line appears.

need_tools python3
skip_unless_ours "the eBPF tap classifier" || exit 0
PASTA=("$PASTA_BIN")

# The namespace side, shared by both runs: ping each gateway (3 tries, the
# first may wait for the neighbour), then show the neighbour entries.
ns_script() {
	cat <<'NS'
for t in "4 $GW4" "6 $GW6"; do
	set -- $t
	rc=1; n=0
	while [ $n -lt 3 ] && [ $rc -ne 0 ]; do
		n=$((n + 1))
		timeout 5 ping -$1 -n -c1 -W2 "$2" >/dev/null 2>&1
		rc=$?
	done
	echo "ping $2 rc=$rc tries=$n"
	echo "neigh $2 $(ip -$1 neigh show "$2" | head -n 1)"
done
NS
}

# A broadcast ARP request from the namespace with hardware type 6 (IEEE 802):
# well-formed enough to be an ARP frame, not one the program answers.
crafted_arp() {
	cat <<'NS'
ifname=$(eval "$ns_ifname_cmd")
python3 - "$ifname" "$(ip -br link show dev "$ifname" | awk '{ print $3 }')" <<'PY'
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
src = bytes.fromhex(sys.argv[2].replace(":", ""))
frame = b"\xff" * 6 + src + b"\x08\x06" + bytes.fromhex("0006 0800 06 04 0001".replace(" ", "")) \
    + src + bytes([192, 0, 2, 2]) + b"\0" * 6 + bytes([192, 0, 2, 77])
print("crafted ARP sent:", s.send(frame))
PY
NS
}

# counter LOG NAME: value of NAME=N in pasta's exit "counters:" line (0 if absent).
counter() {
	local v
	v=$(grep -o "counters:.*" "$1" | tail -n 1 | grep -oE "(^| )$2=[0-9]+" | cut -d= -f2)
	echo "${v:-0}"
}
# answer LOG NAME: N of "NAME N" in the "ebpf tap frames: ...; answers: ..." line.
answer() {
	local v
	v=$(grep -o "answers:.*" "$1" | tail -n 1 | grep -oE " $2 [0-9]+" | awk '{ print $2 }')
	echo "${v:-0}"
}

check_pings() {
	local out=$1 a line
	for a in $GW4 $GW6; do
		line=$(grep "^ping $a " "$out")
		[[ $line == *" rc=0 "* ]] || fail "ping $a failed: $line"
		line=$(grep "^neigh $a " "$out")
		[[ $line == *"lladdr 9a:55:9a:55:9a:55"* ]] || fail "neighbour $a is not pasta's MAC: $line"
		ok "ping $a, neighbour entry: ${line#neigh }"
	done
}

# ---- with the program ----------------------------------------------------------
pasta_spawn tc 60 -d --config-net --ebpf -p "$LAB_WORK/tap.pcap" < <(ns_script; crafted_arp)
rc=$?
plog=$LAB_WORK/tc.pasta.log
((rc == 0)) || fail "pasta --ebpf exited with status $rc"
grep -q "eBPF programs loaded by pasta" "$plog" || fail "pasta did not load the eBPF programs: $(grep -i ebpf "$plog")"
check_pings "$LAB_WORK/tc.out"

arp=$(answer "$plog" arp_replies) na=$(answer "$plog" na_replies)
((arp >= 1)) || fail "the program answered no ARP request: $(grep 'answers:' "$plog")"
((na >= 1)) || fail "the program answered no neighbour solicitation: $(grep 'answers:' "$plog")"
ok "program answers: arp_replies $arp, na_replies $na"

timeout 10 tcpdump -r "$LAB_WORK/tap.pcap" -nn -e >"$LAB_WORK/tap.txt" 2>&1 || fail "tcpdump -r: $(tail -n 3 "$LAB_WORK/tap.txt")"
dump_file "$LAB_WORK/tap.txt"
n=$(grep "Request who-has" "$LAB_WORK/tap.txt" | grep -vc "who-has 192.0.2.77 ")
((n == 0)) || fail "pasta read $n ARP requests (besides the crafted one) from the tap"
n=$(grep "neighbor solicitation" "$LAB_WORK/tap.txt" | grep -vc " :: > ")
((n == 0)) || fail "pasta read $n neighbour solicitations (not DAD) from the tap"
grep -q "who-has 192.0.2.77 " "$LAB_WORK/tap.txt" || fail "pasta's capture lacks the crafted ARP frame (the capture saw nothing?)"
ok "pasta's capture: no ARP request and no neighbour solicitation reached the tap reader"

# Userspace saw exactly what the program left to it: the crafted frame, and
# DAD probes (from ::) if any.
sarp=$(counter "$plog" svc_arp_requests) sns=$(counter "$plog" svc_ns_requests)
passed=$(answer "$plog" passed)
((sarp == 1)) || fail "pasta read $sarp ARP frames from the tap, want 1 (the crafted one)"
((sarp + sns == passed)) || fail "pasta read $sarp ARP + $sns NS frames, the program passed $passed"
ok "userspace counters: svc_arp_requests $sarp (the crafted frame), svc_ns_requests $sns, program passed $passed"

grep -q "ebpf: tap_tc: ARP not for Ethernet/IPv4, hardware type (6), left to pasta" "$plog" ||
	fail "the program's log line did not reach pasta's log: $(grep 'ebpf' "$plog")"
ok "program log line relayed: $(grep -o 'ebpf: tap_tc:.*' "$plog" | head -n 1)"

# ---- without it ------------------------------------------------------------------
pasta_spawn user 60 -d --config-net < <(ns_script)
rc=$?
plog=$LAB_WORK/user.pasta.log
((rc == 0)) || fail "pasta exited with status $rc"
check_pings "$LAB_WORK/user.out"
sarp=$(counter "$plog" svc_arp_requests) sns=$(counter "$plog" svc_ns_requests)
((sarp >= 1 && sns >= 1)) || fail "without --ebpf pasta read svc_arp_requests=$sarp svc_ns_requests=$sns, want both >= 1"
! grep -qi "ebpf" "$plog" || fail "eBPF mentioned without --ebpf: $(grep -i ebpf "$plog")"
ok "without --ebpf: userspace answered (svc_arp_requests $sarp, svc_ns_requests $sns)"
