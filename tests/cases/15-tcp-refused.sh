# 15-tcp-refused: a TCP connection from the namespace (pasta --config-net) to a
# closed port fails at once with "connection refused" (the peer's RST is
# passed on), not after a timeout: tcplab.py client-connect (connect() with a
# 5 s timeout) must give ECONNREFUSED within 1 s, IPv4 and IPv6, for
# - the remote host in upstream (port 1: nothing listens there), and
# - the gateway address, which pasta maps to the host's loopback (port 1).
# Control: the same connect to an open port (a TCP echo server on port 7 on
# the remote host and on the host's loopback) succeeds.

need_tools ss
CLOSED_PORT=1 OPEN_PORT=7 LIMIT_MS=1000
export CLOSED_PORT OPEN_PORT
for ns in "$UP" ""; do
	$ns ss -Htln "sport = :$CLOSED_PORT" | grep -q . && fail "something listens on port $CLOSED_PORT: $($ns ss -tln)"
done
lab_tcp_server echo-remote up serve-echo $OPEN_PORT --bind $R4 --bind "$R6"
lab_tcp_server echo-lo host serve-echo $OPEN_PORT --bind 127.0.0.1 --bind ::1

pasta_spawn refused 60 --config-net <<'NS'
for a in $R4 $R6 $GW4 $GW6; do
	for p in $CLOSED_PORT $OPEN_PORT; do
		echo "connect $a $p $(timeout 10 $PYTHON $LAB_DIR/tcplab.py client-connect --addr $a --port $p --timeout 5 2>&1 | tr '\n' ' ')"
	done
done
exit 0
NS
rc=$?
((rc == 0)) || fail "pasta exited with status $rc"
for t in "$R4 remote host" "$R6 remote host" "$GW4 gateway (host loopback)" "$GW6 gateway (host loopback)"; do
	a=${t%% *}
	r=$(grep "^connect $a $OPEN_PORT " "$LAB_WORK/refused.out")
	[[ $r == *"result errno=none(connected) "* ]] || fail "control: connect to open port $OPEN_PORT on $t: ${r:-no result}"
	r=$(grep "^connect $a $CLOSED_PORT " "$LAB_WORK/refused.out")
	[[ -n $r ]] || fail "no result for $t port $CLOSED_PORT"
	err=$(sed -n 's/.*errno=\([^ ]*\).*/\1/p' <<<"$r")
	secs=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$r")
	[[ $err == ECONNREFUSED ]] || fail "connect to closed port $CLOSED_PORT on $t: got $err after ${secs}s, want ECONNREFUSED"
	ms=$(awk -v s="$secs" 'BEGIN { printf "%d", s * 1000 }')
	((ms <= LIMIT_MS)) || fail "connect to closed port $CLOSED_PORT on $t: ECONNREFUSED only after ${ms} ms (limit $LIMIT_MS ms)"
	ok "closed port $CLOSED_PORT on $t: ECONNREFUSED after ${ms} ms; open port $OPEN_PORT connects"
done
