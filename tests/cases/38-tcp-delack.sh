# 38-tcp-delack: small TCP writes from the namespace (pasta --config-net -d)
# to servers on the remote host in upstream (tcplab.py), IPv4 and IPv6.
# pasta delays the ACK for less than a full segment of data by up to 1 ms,
# so that the next segment to the namespace carries it (README, "Delayed
# ACKs"):
#
#   tcplab.py client-rr --count 500       500 lines of 64 bytes to serve-echo
#                                         on one connection, each answered
#                                         before the next: the answers carry
#                                         the ACKs
#   tcplab.py client-trickle --count 40 --size 100 --gap-ms 5
#                                         a PUT to serve-http whose body goes
#                                         in 40 writes of 100 bytes, 5 ms
#                                         apart, Nagle on, unanswered until
#                                         the end: every ACK goes at its
#                                         deadline
#
# Checks: every answer right, the server got every byte (sha256), and the
# namespace's TCP retransmitted nothing (RetransSegs of /proc/net/snmp in
# the namespace, before and after): a delayed ACK must never be late enough
# for a retransmission. passt-rs's exit counters (tcp_acks_delayed,
# tcp_delayed_acks_sent) must show ACKs delayed, some sent at their
# deadline (the trickles) and at least a tenth carried by answers.

ECHO_TCP_PORT=8038 HTTP_PORT=8039 RR_N=500
export ECHO_TCP_PORT HTTP_PORT RR_N
lab_tcp_server echo up serve-echo $ECHO_TCP_PORT --bind $R4 --bind "$R6"
lab_tcp_server http up serve-http $HTTP_PORT --mib 1 --bind $R4 --bind "$R6"

pasta_spawn delack 100 --config-net -d <<'NS'
retrans() { awk '/^Tcp:/ { if (!f) { for (i = 1; i <= NF; i++) if ($i == "RetransSegs") f = i } else print $f }' /proc/net/snmp; }
echo "retrans0 $(retrans)"
for t in "4 $R4" "6 $R6"; do
	set -- $t
	echo "rr$1 $(timeout 30 $PYTHON "$LAB_DIR/tcplab.py" client-rr --addr "$2" --port $ECHO_TCP_PORT --count $RR_N 2>&1 | tail -n 1)"
	echo "trickle$1 $(timeout 30 $PYTHON "$LAB_DIR/tcplab.py" client-trickle --addr "$2" --port $HTTP_PORT --count 40 --size 100 --gap-ms 5 2>&1 | tail -n 1)"
done
echo "retrans1 $(retrans)"
exit 0
NS
rc=$?
((rc == 0)) || fail "pasta exited with status $rc"
out=$LAB_WORK/delack.out
for v in 4 6; do
	expect_eq "IPv$v: $RR_N requests of 64 bytes answered" "$(sed -n "s/^rr$v //p" "$out")" "result rr=$RR_N"
	expect_eq "IPv$v: 40 small writes, sha256 at the server" "$(sed -n "s/^trickle$v //p" "$out")" "result trickle=4000"
done
r0=$(sed -n 's/^retrans0 //p' "$out") r1=$(sed -n 's/^retrans1 //p' "$out")
[[ $r0 =~ ^[0-9]+$ && $r1 =~ ^[0-9]+$ ]] || fail "no RetransSegs read in the namespace: '$r0' '$r1'"
expect_eq "TCP segments the namespace retransmitted" $((r1 - r0)) 0
if skip_unless_ours "delayed ACK counters"; then
	cl=$(grep -E '^([0-9]+\.[0-9]+: +)?([A-Za-z]+: +)?counters:' "$LAB_WORK/delack.pasta.log" | tail -n 1)
	[[ -n $cl ]] || fail "no 'counters:' line in pasta's log"
	c() { local v; v=$(sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<" ${cl#*counters:} "); echo "${v:-0}"; }
	d=$(c tcp_acks_delayed) s=$(c tcp_delayed_acks_sent)
	((d >= RR_N)) || fail "ACKs delayed: $d, want at least $RR_N ($cl)"
	((s > 0)) || fail "no delayed ACK sent at its deadline (the trickles): $cl"
	((d - s >= RR_N / 10)) || fail "only $((d - s)) of $d delayed ACKs carried by a segment: $cl"
	ok "ACKs delayed: $d, $s of them sent at their deadline"
fi
