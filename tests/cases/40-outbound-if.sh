# 40-outbound-if: --outbound-if4 / --outbound-if6 (passt(1)): outbound sockets
# bound to that host interface (SO_BINDTODEVICE), whose addresses and routes
# the namespace then gets.
#
# The lab gets a second link to upstream, lab2 (198.18.0.2/24,
# 2001:db8:4::2/64) <-> lab3 in "up" (198.18.0.1, 2001:db8:4::1), with default
# routes through it at a worse metric (2000) than lab0's (0 for IPv4, 1024
# for IPv6). Servers upstream on 198.51.100.1 / 2001:db8:100::1 answer with
# the peer address they see (TCP and UDP).
#   plain   pasta --config-net: the namespace has lab0's address, and
#           upstream sees 192.0.2.2 / 2001:db8:2::2 (the host's default route);
#   bound   pasta --config-net --outbound-if4 lab2 --outbound-if6 lab2: the
#           namespace has lab2's addresses; upstream sees 198.18.0.2 /
#           2001:db8:4::2 over TCP and UDP; ping gets through;
#   only4   --outbound-if4 lab2 alone: IPv4 through lab2, IPv6 as plain;
#   bad     --outbound-if4 nosuch0: pasta refuses to start, naming it.

need_tools nsenter
ip link add name lab2 type veth peer name lab3 netns up || fail "cannot create lab2"
ip addr add 198.18.0.2/24 dev lab2
ip -6 addr add 2001:db8:4::2/64 dev lab2 nodad
$UP ip addr add 198.18.0.1/24 dev lab3
$UP ip -6 addr add 2001:db8:4::1/64 dev lab3 nodad
$UP ip link set lab3 up
ip link set lab2 up
ip route add default via 198.18.0.1 dev lab2 metric 2000 || fail "cannot add the IPv4 route via lab2"
ip -6 route add default via 2001:db8:4::1 dev lab2 metric 2000 || fail "cannot add the IPv6 route via lab2"

for a in "$R4" "[$R6]"; do
	v=4; [[ $a == \[* ]] && v=6
	lab_bg peer-tcp$v $UP timeout 120 socat TCP$v-LISTEN:10070,bind=$a,reuseaddr,fork SYSTEM:'echo "tcp $SOCAT_PEERADDR"'
	lab_bg peer-udp$v $UP timeout 120 socat UDP$v-RECVFROM:10071,bind=$a,reuseaddr,fork SYSTEM:'read l; echo "udp $SOCAT_PEERADDR"'
done
up_listening() { tcp_listening $UP -- 10070 && udp_bound $UP -- 10071; }
wait_until 10 up_listening || fail "upstream peer-address servers not listening"

# probe NAME [PASTA_OPTION...]: from the namespace, TCP and UDP to both
# servers and a ping; $LAB_WORK/NAME.out holds "tcp ADDR", "udp ADDR" lines,
# the namespace's global addresses ("addr ADDR") and "ping4/6 ok|fail"
probe() {
	local name=$1; shift
	pasta_spawn "$name" 40 --config-net "$@" <<NS
for a in $R4 [$R6]; do
	timeout 5 socat -T 3 - TCP:\$a:10070 </dev/null
	echo x | timeout 5 socat -T 3 - UDP:\$a:10071
done
ip -o addr show scope global | awk '{ split(\$4, a, "/"); print "addr " a[1] }'
ping -c1 -W2 $R4 >/dev/null 2>&1 && echo "ping4 ok" || echo "ping4 fail"
ping -6 -c1 -W2 $R6 >/dev/null 2>&1 && echo "ping6 ok" || echo "ping6 fail"
NS
	local rc=$?
	((rc == 0)) || fail "$name: pasta or the probe exited with status $rc"
}

# expect_lines NAME WANT...: each WANT is a line of NAME.out (as a set)
expect_lines() {
	local name=$1 w; shift
	for w in "$@"; do
		grep -qxF "$w" "$LAB_WORK/$name.out" || fail "$name: no line '$w' in: $(tr '\n' ';' <"$LAB_WORK/$name.out")"
	done
}
# norm6: socat prints IPv6 peers in full ([2001:0db8:0002:0000:...])
v6peer() { "$PYTHON" -c 'import ipaddress, sys; print("[" + ipaddress.ip_address(sys.argv[1]).exploded + "]")' "$1"; }

probe plain
expect_lines plain "tcp $H4" "udp $H4" "tcp $(v6peer "$H6")" "udp $(v6peer "$H6")" "addr $H4" "addr $H6"
ok "without --outbound-if: upstream sees lab0's addresses, the namespace has them"

ping_ok() { expect_lines "$1" "ping4 ok" "ping6 ok"; }
probe bound --outbound-if4 lab2 --outbound-if6 lab2
expect_lines bound "tcp 198.18.0.2" "udp 198.18.0.2" "tcp $(v6peer 2001:db8:4::2)" "udp $(v6peer 2001:db8:4::2)" \
	"addr 198.18.0.2" "addr 2001:db8:4::2"
grep -qxF "addr $H4" "$LAB_WORK/bound.out" && fail "bound: the namespace still has lab0's address $H4"
ping_ok bound
ok "--outbound-if4/6 lab2: upstream sees lab2's addresses over TCP and UDP, the namespace has them, ping works"

probe only4 --outbound-if4 lab2
expect_lines only4 "tcp 198.18.0.2" "udp 198.18.0.2" "tcp $(v6peer "$H6")" "udp $(v6peer "$H6")" \
	"addr 198.18.0.2" "addr $H6"
ok "--outbound-if4 alone: IPv4 through lab2, IPv6 as without it"

timeout 10 "${PASTA[@]}" --config-net --outbound-if4 nosuch0 -- true >"$LAB_WORK/bad.out" 2>&1
rc=$?
sed 's/^/    bad| /' "$LAB_WORK/bad.out"
((rc != 0)) || fail "pasta started with --outbound-if4 nosuch0"
grep -q nosuch0 "$LAB_WORK/bad.out" || fail "the refusal doesn't name nosuch0"
ok "--outbound-if4 nosuch0 refused (status $rc)"
