# 13-tcp-halfclose: TCP half-close through pasta (--config-net), IPv4 and IPv6,
# with servers on the remote host in upstream.
#
# A. The namespace closes first: socat sends 4 MiB, shuts its write side down
#    (FIN) and keeps reading; the server (socat TCP-LISTEN ... EXEC:sha256sum)
#    can only answer after that EOF. The client must get the sha256 of what it
#    sent, then EOF.
# B. The host side closes first: the server (tcplab.py serve-sendclose) sends
#    4 MiB and shuts its write side down; the client (tcplab.py
#    client-sendclose) reads to EOF, then still sends 3 MiB and shuts down,
#    and waits until the server has logged what it read up to that FIN. The
#    client must get all 4 MiB intact, and the server all 3 MiB.
# Time limits: each exchange at most HC_TIMEOUT (45) seconds, all four at most
# HC_BUDGET (95) seconds together (run.sh's limit is 120 s). Upstream pasta's
# namespace-to-host path stalls here for up to ~25 s at times.

need_tools ss sha256sum
SHA_PORT=8001 SC_PORT=8002 HC_TIMEOUT=${HC_TIMEOUT:-45} HC_BUDGET=${HC_BUDGET:-95}
export SHA_PORT SC_PORT HC_TIMEOUT HC_BUDGET
lab_bg sha4 $UP timeout 300 socat -t 10 TCP4-LISTEN:$SHA_PORT,bind=$R4,reuseaddr,fork EXEC:sha256sum
lab_bg sha6 $UP timeout 300 socat -t 10 "TCP6-LISTEN:$SHA_PORT,bind=[$R6],reuseaddr,fork" EXEC:sha256sum
dump_file "$LAB_WORK/sha4.log" "$LAB_WORK/sha6.log"
sha_listening() { [[ $($UP ss -Htln "sport = :$SHA_PORT" | wc -l) -ge 2 ]]; }
wait_until 5 sha_listening || fail "socat sha256sum servers not listening: $($UP ss -tln)"
lab_tcp_server sendclose up serve-sendclose $SC_PORT --mib 4 --bind $R4 --bind "$R6"

T=("$PYTHON" "$LAB_DIR/tcplab.py")
timeout 30 "${T[@]}" blob --mib 4 --seed up >"$LAB_WORK/a.data" || fail "cannot write the 4 MiB test data"
a_want="$(sha256sum <"$LAB_WORK/a.data" | cut -d' ' -f1)  -"
b_down=$(timeout 30 "${T[@]}" blob-sha --mib 4 --seed down)
b_up=$(timeout 30 "${T[@]}" blob-sha --mib 3 --seed up)

pasta_spawn halfclose $((HC_BUDGET + 10)) --config-net <<'NS'
t_end=$(($(date +%s) + HC_BUDGET))
lim() {  # seconds for the next exchange: min(HC_TIMEOUT, what is left), >= 3
	l=$((t_end - $(date +%s)))
	[ $l -gt $HC_TIMEOUT ] && l=$HC_TIMEOUT
	[ $l -lt 3 ] && l=3
	echo $l
}
for t in "4 TCP4:$R4:$SHA_PORT" "6 TCP6:[$R6]:$SHA_PORT"; do
	set -- $t
	s=$(date +%s%N); l=$(lim)
	timeout $l socat -t $l -T $l - "$2" <"$LAB_WORK/a.data" >"$LAB_WORK/a$1.reply" 2>"$LAB_WORK/a$1.err"
	rc=$?
	echo "A$1 rc=$rc ms=$((($(date +%s%N) - s) / 1000000)) limit=${l}s reply=$(cat "$LAB_WORK/a$1.reply") err=$(head -c 200 "$LAB_WORK/a$1.err")"
done
for t in "4 $R4" "6 $R6"; do
	set -- $t
	s=$(date +%s%N); l=$(lim)
	r=$(timeout $l $PYTHON $LAB_DIR/tcplab.py client-sendclose --addr $2 --port $SC_PORT --mib 3 \
		--timeout $((l - 1)) --wait-file "$LAB_WORK/sendclose.log" 2>&1 | tr '\n' ' ')
	echo "B$1 ms=$((($(date +%s%N) - s) / 1000000)) limit=${l}s $r"
done
exit 0
NS
rc=$?
((rc == 0)) || fail "pasta exited with status $rc"

for f in 4 6; do
	a=$(grep "^A$f " "$LAB_WORK/halfclose.out")
	[[ -n $a ]] || fail "A: no IPv$f result"
	[[ $a == "A$f rc=0 "* ]] || fail "A IPv$f: socat did not finish cleanly after the half-close: $a"
	expect_eq "A IPv$f: reply after the client's FIN" "$(sed -n 's/.* reply=\(.*\) err=.*/\1/p' <<<"$a")" "$a_want"
	ok "A IPv$f: client half-closed, got the server's answer and EOF in $(sed -n 's/.* ms=\([0-9]*\) .*/\1/p' <<<"$a") ms"

	b=$(grep "^B$f " "$LAB_WORK/halfclose.out")
	[[ -n $b ]] || fail "B: no IPv$f result"
	[[ $b == *"result recv_len="* ]] || fail "B IPv$f: client-sendclose failed: $b"
	expect_eq "B IPv$f: bytes after the server's FIN (sha256 len)" \
		"$(sed -n 's/.*recv_len=\([0-9]*\) recv_sha=\([0-9a-f]*\).*/\2 \1/p' <<<"$b")" "$b_down"
	if [[ $f == 4 ]]; then peer=$H4; else peer=$H6; fi
	got=$(sed -n "s/^sendclose from $peer: received \([0-9]*\) sha256 \([0-9a-f]*\)$/\2 \1/p" "$LAB_WORK/sendclose.log")
	expect_eq "B IPv$f: what the server received after its own FIN (sha256 len)" "$got" "$b_up"
	[[ $b == *"server_done=yes"* ]] || fail "B IPv$f: the client did not see the server's log line in time: $b"
	ok "B IPv$f: server half-closed, the client read to EOF and still delivered its data in $(sed -n 's/.* ms=\([0-9]*\) .*/\1/p' <<<"$b") ms"
done
