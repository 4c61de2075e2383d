# 21-fwd-udp: UDP port forwarding, -u (host -> namespace) and -U (namespace ->
# host loopback), IPv4 and IPv6. Server and client: tests/cases/21-fwd-udp.py
# (the server answers each datagram with the peer address and port it saw;
# the client sends COUNT datagrams of distinct contents from one socket, each
# answered before the next, and checks every answer's contents).
#
# pasta --config-net -t none -T none -u 10601 -u 10610:20610 -U 10622
#       -U 10621:7 -U 10623,7
#   - -u via the host's loopback (splice): 127.0.0.1 / ::1 -> servers on 10601
#     and (translated) 20610 in the namespace, which see the namespace's
#     address 192.0.2.2 / 2001:db8:2::2 and the client's own source port;
#     answers come back from 127.0.0.1:10601 / [::1]:10601 (10610 translated);
#   - -u from upstream through the tap: to 192.0.2.2 / 2001:db8:2::2 from
#     198.51.100.1 / 2001:db8:100::1 and from 192.0.2.1 / 2001:db8:2::1: the
#     server sees that address and port; answers come back from the address
#     and port the client sent to;
#   - the host sending to its own 192.0.2.2 / 2001:db8:2::2 goes through the
#     tap: the server sees 192.0.2.1 (--map-guest-addr's default) / a
#     link-local address (fe80::/10);
#   - -U from the namespace: 127.0.0.1 / ::1 port 10622 reach a host loopback
#     server on 10622 (which sees 127.0.0.1 / ::1 and the client's port), ports
#     7 and 10621 (translated) reach the lab's host loopback echo on port 7
#     ("lo:<line>");
#   - datagrams of 1000 and 8000 bytes, 5 per flow.
# Then --host-lo-to-ns-lo -u 10601: the server in the namespace sees
# 127.0.0.1 / ::1 (and the client's port) for the host's loopback clients,
# the real address for upstream's.

need_tools ss nsenter
U=("$PYTHON" "${LAB_CASE_FILE%.sh}.py")
[[ -f ${U[1]} ]] || fail "helper ${U[1]} missing"

# udp_client [PREFIX...] -- ADDR PORT COUNT SIZE [SRC]: the client's result
# line without its "retries=N" (datagrams sent again after 2 s without an
# answer), which is logged
udp_client() {
	local pre=() r
	while [[ $1 != -- ]]; do pre+=("$1"); shift; done
	shift
	r=$(timeout 40 "${pre[@]}" "${U[@]}" client "$@" 2>&1 | tr '\n' ' ' | sed 's/ *$//')
	[[ $r == *" retries=0" ]] || log "note: client $*: $r" >&2
	echo "${r% retries=*}"
}
br() { if [[ $1 == *:* ]]; then echo "[$1]"; else echo "$1"; fi; }

pasta_bg udp --config-net -t none -T none -u 10601 -u 10610:20610 -U 10622 -U 10621:7 -U 10623,7
for p in 10601 20610; do
	lab_bg "ns$p" "${NS[@]}" timeout 100 "${U[@]}" serve $p
	dump_file "$LAB_WORK/ns$p.log"
done
lab_bg host10622 timeout 100 "${U[@]}" serve 10622
dump_file "$LAB_WORK/host10622.log"
wait_until 5 udp_bound "${NS[@]}" -- 10601 20610 || fail "servers in the namespace not bound: $("${NS[@]}" ss -uan)"
wait_until 5 udp_bound -- 10601 10610 10622 || fail "pasta not bound on the host to 10601, 10610: $(ss -uanp)"
wait_until 5 udp_bound "${NS[@]}" -- 10621 10622 10623 7 ||
	fail "pasta not bound in the namespace to 7, 10621-10623: $("${NS[@]}" ss -uanp)"

# splice: host loopback -> namespace
for a in 127.0.0.1 ::1; do
	if [[ $a == *:* ]]; then peer=$H6; else peer=$H4; fi
	for t in "10601 1000" "10610 8000"; do
		set -- $t
		expect_eq "-u splice, $(br $a):$1, 5 x $2 bytes" "$(udp_client -- $a $1 5 $2)" \
			"result replies=5/5 from=$(br $a):$1 peer=$peer port=same"
	done
done
# tap: upstream -> host address -> namespace
for t in "$H4 $R4" "$H6 $R6" "$H4 $GW4" "$H6 $GW6"; do
	set -- $t
	for p in 10601 10610; do
		expect_eq "-u tap, $(br $1):$p from $2, 5 x 1000 bytes" "$(udp_client $UP -- $1 $p 5 1000 $2)" \
			"result replies=5/5 from=$(br $1):$p peer=$2 port=same"
	done
done
expect_eq "-u tap, $H4:10610 from $R4, 5 x 8000 bytes" "$(udp_client $UP -- $H4 10610 5 8000 $R4)" \
	"result replies=5/5 from=$H4:10610 peer=$R4 port=same"
# the host to its own address: through the tap, seen from 192.0.2.1 / link-local
expect_eq "-u, the host to its own $H4:10601" "$(udp_client -- $H4 10601 5 1000)" \
	"result replies=5/5 from=$H4:10601 peer=$GW4 port=same"
r=$(udp_client -- $H6 10601 5 1000)
expect_match "-u, the host to its own [$H6]:10601" "$r" \
	"^result replies=5/5 from=\\[$H6\\]:10601 peer=fe80:[0-9a-f:]+ port=same$"
# -U: namespace loopback -> host loopback
for a in 127.0.0.1 ::1; do
	for s in 1000 8000; do
		expect_eq "-U, $(br $a):10622 from the namespace, 5 x $s bytes" "$(udp_client "${NS[@]}" -- $a 10622 5 $s)" \
			"result replies=5/5 from=$(br $a):10622 peer=$a port=same"
	done
	for p in 7 10621; do
		tok=tok$RANDOM
		got=$(echo "$tok" | timeout 10 "${NS[@]}" socat -T 3 - "UDP:$(br $a):$p" 2>&1 | head -n 1)
		expect_eq "-U, $(br $a):$p from the namespace to the host's echo on port 7" "$got" "lo:$tok"
	done
done
grep -q . "$LAB_WORK/ns20610.log" || fail "the server on 20610 got nothing"
grep -q "^from " "$LAB_WORK/ns10601.log" || fail "the server on 10601 got nothing"
pasta_bg_stop || fail "pasta did not exit after its command ended"

# ---- --host-lo-to-ns-lo ------------------------------------------------------------
pasta_bg udplo --config-net -t none -T none -U none --host-lo-to-ns-lo -u 10601
lab_bg lo10601 "${NS[@]}" timeout 100 "${U[@]}" serve 10601
dump_file "$LAB_WORK/lo10601.log"
wait_until 5 udp_bound "${NS[@]}" -- 10601 || fail "the server in the namespace is not bound: $("${NS[@]}" ss -uan)"
wait_until 5 udp_bound -- 10601 || fail "pasta not bound on the host to 10601: $(ss -uanp)"
for a in 127.0.0.1 ::1; do
	expect_eq "--host-lo-to-ns-lo -u, $(br $a):10601" "$(udp_client -- $a 10601 5 1000)" \
		"result replies=5/5 from=$(br $a):10601 peer=$a port=same"
done
expect_eq "--host-lo-to-ns-lo -u, tap from $R4" "$(udp_client $UP -- $H4 10601 5 1000 $R4)" \
	"result replies=5/5 from=$H4:10601 peer=$R4 port=same"
pasta_bg_stop || fail "pasta did not exit after its command ended"
