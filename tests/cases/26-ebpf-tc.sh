# 26-ebpf-tc: the eBPF tap classifier answers ARP and neighbour solicitations
# in the kernel (pasta --ebpf, pasta run as real root so that it loads the
# programs itself), and pasta answers them in userspace without it.
#
#   pasta -d --config-net --ebpf -p tap.pcap (-d: spawning a command, pasta
#   logs only warnings otherwise): the namespace pings the gateway over
#   IPv4 and IPv6 (resolving it by ARP and NDP), `ip neigh` shows pasta's MAC
#   for both. Crafted frames (26-ebpf-tc.py): a padded ARP request and an NS
#   without options get exact replies (42 and 86 bytes: the program shrinks and
#   grows the frame, the NA checksum is valid); an ARP request for hardware
#   type 6, an NS with hop limit 64 and one with a bad checksum get none, and
#   the program logs why it left each to pasta ("ebpf: tap_tc: ..." lines in
#   pasta's log, relayed from aya-log). pasta's capture of what it read from
#   the tap (-p) holds no ARP request and no valid solicitation, only those
#   three; its exit counters (svc_arp_frames, svc_ns_requests) add up to
#   what the program passed, while the program counted its answers
#   (arp_replies, na_replies >= 2: the gateway and the crafted one).
#   Without --ebpf: the same pings and crafted-frame checks pass (userspace
#   gives byte-identical replies), pasta reads the requests itself
#   (counters), and no eBPF line appears.

need_tools python3
skip_unless_ours "the eBPF tap classifier" || exit 0
need_ebpf
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

# Crafted frames (26-ebpf-tc.py, run in the namespace): a padded ARP request
# and a solicitation without options get exact answers (from the program, or
# from pasta without it); an ARP request for another hardware type, an NS with
# hop limit 64 and one with a bad checksum get none (the program leaves them
# to pasta, logging why; pasta drops them as malformed).
crafted() {
	echo "ifname=\$(eval \"\$ns_ifname_cmd\")"
	for c in arp-padded ns-noopt arp-htype6 ns-hop64 ns-badsum; do
		echo "python3 '${LAB_CASE_FILE%.sh}.py' \"\$ifname\" $c || echo '$c FAIL: status'\$?"
	done
}

check_crafted() {
	local out=$1 c line
	for c in arp-padded ns-noopt arp-htype6 ns-hop64 ns-badsum; do
		line=$(grep "^$c " "$out")
		[[ $line == "$c ok"* ]] || fail "crafted frame $c: ${line:-no result}"
		ok "crafted: $line"
	done
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
pasta_spawn tc 60 -d --config-net --ebpf -p "$LAB_WORK/tap.pcap" < <(ns_script; crafted)
rc=$?
plog=$LAB_WORK/tc.pasta.log
((rc == 0)) || fail "pasta --ebpf exited with status $rc"
grep -q "eBPF programs loaded by pasta" "$plog" || fail "pasta did not load the eBPF programs: $(grep -i ebpf "$plog")"
check_pings "$LAB_WORK/tc.out"
check_crafted "$LAB_WORK/tc.out"

arp=$(answer "$plog" arp_replies) na=$(answer "$plog" na_replies)
((arp >= 2)) || fail "the program answered $arp ARP requests, want the gateway's and the padded one: $(grep 'answers:' "$plog")"
((na >= 2)) || fail "the program answered $na solicitations, want the gateway's and the crafted one: $(grep 'answers:' "$plog")"
ok "program answers: arp_replies $arp, na_replies $na"

timeout 10 tcpdump -r "$LAB_WORK/tap.pcap" -nn -e >"$LAB_WORK/tap.txt" 2>&1 || fail "tcpdump -r: $(tail -n 3 "$LAB_WORK/tap.txt")"
dump_file "$LAB_WORK/tap.txt"
n=$(grep "Request who-has" "$LAB_WORK/tap.txt" | grep -vc "who-has 192.0.2.77 ")
((n == 0)) || fail "pasta read $n Ethernet ARP requests from the tap"
grep -q "who-has 192.0.2.77 " "$LAB_WORK/tap.txt" || fail "pasta's capture lacks the hardware type 6 request"
# From unicast sources: only the two invalid ones (hop limit 64, bad checksum).
n=$(grep "neighbor solicitation" "$LAB_WORK/tap.txt" | grep -vc " :: > ")
((n == 2)) || fail "pasta read $n neighbour solicitations (not DAD) from the tap, want the 2 invalid ones"
ok "pasta's capture: no ARP request or valid solicitation reached the tap reader, only the refused ones"

# Userspace saw exactly what the program left to it: the crafted frame, and
# DAD probes (from ::) if any.
sarp=$(counter "$plog" svc_arp_frames) sns=$(counter "$plog" svc_ns_requests)
passed=$(answer "$plog" passed)
((sarp == 1)) || fail "pasta read $sarp ARP frames from the tap, want 1 (hardware type 6)"
((sns >= 2)) || fail "pasta read $sns solicitations from the tap, want the two invalid ones at least"
# A DAD probe sent while the tap came up, before the program was attached,
# reaches pasta without passing the program: the only allowed difference.
dad=$(grep "neighbor solicitation" "$LAB_WORK/tap.txt" | grep -c " :: > ")
((sarp + sns >= passed && sarp + sns - passed <= dad)) ||
	fail "pasta read $sarp ARP + $sns NS frames, the program passed $passed ($dad DAD probes in the capture)"
ok "userspace counters: svc_arp_frames $sarp, svc_ns_requests $sns (the refused ones, DAD), program passed $passed"

for l in "ARP not for Ethernet/IPv4, hardware type (6)" "neighbour solicitation with a hop limit other than 255 (64)" \
	"neighbour solicitation with a bad checksum, sum"; do
	grep -qF "ebpf: tap_tc: $l" "$plog" || fail "no program log line '$l' in pasta's log: $(grep 'ebpf' "$plog")"
done
ok "program log lines relayed: $(grep -c 'ebpf: tap_tc:' "$plog")"

# ---- without it ------------------------------------------------------------------
pasta_spawn user 60 -d --config-net < <(ns_script; crafted)
rc=$?
plog=$LAB_WORK/user.pasta.log
((rc == 0)) || fail "pasta exited with status $rc"
check_pings "$LAB_WORK/user.out"
check_crafted "$LAB_WORK/user.out"
sarp=$(counter "$plog" svc_arp_frames) sns=$(counter "$plog" svc_ns_requests)
((sarp >= 1 && sns >= 1)) || fail "without --ebpf pasta read svc_arp_frames=$sarp svc_ns_requests=$sns, want both >= 1"
! grep -qi "ebpf" "$plog" || fail "eBPF mentioned without --ebpf: $(grep -i ebpf "$plog")"
ok "without --ebpf: userspace answered (svc_arp_frames $sarp, svc_ns_requests $sns)"
