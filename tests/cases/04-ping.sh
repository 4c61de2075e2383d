# 04-ping: ICMP and ICMPv6 echo from the namespace (pasta --config-net) are
# answered, both for the gateway address (pasta maps it to the host's loopback)
# and for a remote host beyond the host's default route.
#
#   ping -c1 -W2 192.0.2.1 / 198.51.100.1, ping -6 -c1 -W2 2001:db8:2::1 / 2001:db8:100::1
# Each target gets up to 3 attempts (the first IPv6 one may wait on NDP).
# A capture on the host's veth shows the echo requests to the remote host
# leaving the host, and none to the gateway (that one must stay on loopback).
# pasta's own capture of its tap (-p, read back with tcpdump -r) holds an
# echo request and its reply for each of the four targets.

capture_start ping icmp or icmp6

pasta_spawn ping 40 --config-net -p "$LAB_WORK/pasta-tap.pcap" <<'NS'
for t in "4 $GW4" "4 $R4" "6 $GW6" "6 $R6"; do
	set -- $t
	rc=1; n=0
	while [ $n -lt 3 ] && [ $rc -ne 0 ]; do
		n=$((n + 1))
		timeout 5 ping -$1 -n -c1 -W2 "$2" >"$LAB_WORK/ping-$2.txt" 2>&1
		rc=$?
	done
	cat "$LAB_WORK/ping-$2.txt"
	echo "result $2 rc=$rc tries=$n"
done
exit 0
NS
rc=$?
capture_stop ping
((rc == 0)) || fail "pasta exited with status $rc"
for t in "$GW4 (gateway, mapped to host loopback)" "$R4 (remote host)" \
	"$GW6 (gateway, mapped to host loopback)" "$R6 (remote host)"; do
	a=${t%% *}
	line=$(grep "^result $a " "$LAB_WORK/ping.out")
	[[ -n $line ]] || fail "no ping result for $a"
	[[ $line == *" rc=0 "* ]] || fail "ping $t failed: $line"
	grep -q "bytes from $a" "$LAB_WORK/ping-$a.txt" || fail "ping $t: no reply from $a"
	ok "ping $t: ${line#result }"
done

n=$(grep -c "> $R4: ICMP echo request" "$LAB_WORK/ping.txt")
((n >= 1)) || fail "no ICMP echo request to $R4 seen on $LAB_IF"
n=$(grep -c "> $R6: ICMP6, echo request" "$LAB_WORK/ping.txt")
((n >= 1)) || fail "no ICMPv6 echo request to $R6 seen on $LAB_IF"
n=$(grep -c -E "> ($GW4|$GW6): ICMP6?,? echo request" "$LAB_WORK/ping.txt")
((n == 0)) || fail "$n echo requests to the gateway left the host on $LAB_IF (gateway not mapped to host loopback)"
ok "capture on $LAB_IF: remote echoes left the host, gateway echoes did not"

timeout 10 tcpdump -r "$LAB_WORK/pasta-tap.pcap" -nn >"$LAB_WORK/pasta-tap.pcap.txt" 2>&1 ||
	fail "tcpdump -r pasta's capture: $(tail -n 3 "$LAB_WORK/pasta-tap.pcap.txt")"
dump_file "$LAB_WORK/pasta-tap.pcap.txt"
for a in $GW4 $R4 $GW6 $R6; do
	grep -qE "> $a: ICMP6?,? echo request" "$LAB_WORK/pasta-tap.pcap.txt" || fail "pasta's capture: no echo request to $a"
	grep -qE "IP6? $a > .*: ICMP6?,? echo reply" "$LAB_WORK/pasta-tap.pcap.txt" || fail "pasta's capture: no echo reply from $a"
done
ok "pasta's capture (-p): echo requests and replies for all four targets"
