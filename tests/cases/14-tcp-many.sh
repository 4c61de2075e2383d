# 14-tcp-many: 500 concurrent TCP connections through pasta (--config-net),
# IPv4 and IPv6, to an echo server on the remote host in upstream (tcplab.py
# serve-echo, port 7). tcplab.py client-many opens all 500 at once
# (non-blocking connects, all held open), then sends one token line on each
# and reads the echo "echo:<token>". All 500 must connect and echo correctly
# within 30 s per address family, and the server must have had all 500 open
# at the same time (its "peak" log line).

ECHO_TCP_PORT=7 COUNT=500
export ECHO_TCP_PORT COUNT
lab_tcp_server echo up serve-echo $ECHO_TCP_PORT --bind $R4 --bind "$R6"

pasta_spawn many 80 --config-net <<'NS'
ulimit -n 4096 2>/dev/null || ulimit -n
for a in $R4 $R6; do
	echo "many $a $(timeout 35 $PYTHON $LAB_DIR/tcplab.py client-many --addr $a --port $ECHO_TCP_PORT \
		--count $COUNT --timeout 30 2>&1 | tr '\n' ' ')"
done
exit 0
NS
rc=$?
((rc == 0)) || fail "pasta exited with status $rc"
for a in $R4 $R6; do
	r=$(grep "^many $a " "$LAB_WORK/many.out")
	[[ -n $r ]] || fail "no result for $a"
	[[ $r == *"result connected=$COUNT echoed=$COUNT failed=0 "* ]] ||
		fail "$COUNT concurrent connections to $a: ${r#many $a }"
	r=${r#many $a result }
	ok "$COUNT concurrent connections to $a: ${r% }"
done
for f in IPv4 IPv6; do
	grep -q "^echo: $f peak $COUNT connections open at once" "$LAB_WORK/echo.log" ||
		fail "the echo server never had $COUNT $f connections open at once: $(grep "echo: $f peak" "$LAB_WORK/echo.log" | tail -n 1)"
	ok "echo server: $COUNT $f connections open at once"
done
