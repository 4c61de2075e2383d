# 06-udp: UDP from the namespace (pasta --config-net) to echo servers, IPv4 and
# IPv6: a remote host beyond the host's default route (echo "remote:<token>")
# and the gateway address, which pasta maps to the host's loopback (echo
# "lo:<token>" from 127.0.0.1:7 / [::1]:7; the upstream gateway has no echo).
# Then one 16000-byte datagram each way to the remote host (larger than any
# Ethernet MTU, below pasta's 65520): the echo must come back intact.

TOKEN=tok$RANDOM$RANDOM
pasta_spawn udp 40 --config-net <<NS
e() {  # name socat-address: one datagram out, first line back, 3 attempts
	n=0; out=""
	while [ \$n -lt 3 ] && [ -z "\$out" ]; do
		n=\$((n + 1))
		out=\$(echo "\$1-$TOKEN" | timeout 5 socat -T 2 - "\$2" 2>&1 | head -n 1)
	done
	echo "echo \$1: \$out"
}
e r4 UDP4:$R4:$ECHO_PORT
e r6 "UDP6:[$R6]:$ECHO_PORT"
e g4 UDP4:$GW4:$ECHO_PORT
e g6 "UDP6:[$GW6]:$ECHO_PORT"
big() {  # name socat-address: 16000-byte line, sha256 of what came back
	head -c 12000 /dev/zero | base64 -w 0 >"$LAB_WORK/big-\$1.in"
	timeout 5 socat -b 65536 -T 2 - "\$2" <"$LAB_WORK/big-\$1.in" >"$LAB_WORK/big-\$1.back" 2>&1
	echo "big \$1: \$(wc -c <"$LAB_WORK/big-\$1.back") bytes, sha256 \$(sha256sum <"$LAB_WORK/big-\$1.back" | cut -c1-16)"
}
big r4 UDP4:$R4:$ECHO_PORT
big r6 "UDP6:[$R6]:$ECHO_PORT"
NS
rc=$?
((rc == 0)) || fail "pasta exited with status $rc"
for c in "r4 remote $R4" "r6 remote $R6" "g4 lo $GW4" "g6 lo $GW6"; do
	set -- $c
	got=$(sed -n "s/^echo $1: //p" "$LAB_WORK/udp.out")
	expect_eq "UDP echo via $3" "$got" "$2:$1-$TOKEN"
done
want_big=$( { printf remote:; head -c 12000 /dev/zero | base64 -w 0; echo; } )
want="$(( ${#want_big} + 1 )) bytes, sha256 $(printf '%s\n' "$want_big" | sha256sum | cut -c1-16)"
for c in "r4 $R4" "r6 $R6"; do
	set -- $c
	expect_eq "16000-byte UDP echo via $2" "$(sed -n "s/^big $1: //p" "$LAB_WORK/udp.out")" "$want"
done
