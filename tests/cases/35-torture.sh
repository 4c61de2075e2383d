# 35-torture: a million random and mutated frames while real transfers run.
#
# lab-timeout: 300
#
# 1. pasta (background, --config-net -d -t FWD_PORT --host-lo-to-ns-lo). In
#    its namespace: an HTTP server on 127.0.0.1:FWD_PORT (the forwarded,
#    spliced transfer; --host-lo-to-ns-lo makes its target the namespace's
#    loopback, not the guest address pasta last saw, which the injected
#    frames' spoofed sources move, as upstream's do).
#    Four transfers, each repeated in a loop until the injection is over,
#    then once more; every round is checked by content:
#      down4   curl http://R4/blob in the namespace (lab server -> namespace,
#              TCP over the tap), sha256 against the server's;
#      up6     16 MiB PUT to http://[R6]/up (namespace -> lab server, TCP
#              over the tap, IPv6): the server's sha256 and length of it;
#      splice  curl http://127.0.0.1:FWD_PORT/blob on the host (-t forward,
#              spliced to the namespace's loopback), sha256;
#      udp     300 numbered 1200-byte datagrams to a UDP echo on R4, each
#              resent until its exact copy returns (torture.py udp-xfer),
#              sha256 of the echoed stream.
#    Once all four ran a round, torture.py tap writes FRAMES (1,000,000)
#    frames to the tap through AF_PACKET: fuzzframes.py's generators (bad
#    lengths, versions, options, truncations...) and mutated copies of
#    frames captured from the live transfers (moved to other ports so that
#    they can never belong to a live connection; frames the kernel refuses
#    leave the pool; frames the tap's queue drops when pasta lags are made
#    up for, so FRAMES reach pasta's side of the tap). Then: pasta alive, every
#    round of every transfer intact, each transfer completed at least one
#    round while the frames went in, and (passt-rs) the debug log's last
#    "counters:" line has drop_* counters adding up to more than 0.
#    SIGKILL of the namespace's placeholder: pasta exits by itself.
# 2. passt -f -s SOCK -d with torture.py relay in front of its socket: the
#    25-passt-stream.py guest downloads 8 MiB over IPv4 and IPv6 (every
#    frame checked, sha256 as the server's) through the relay, which after
#    each of the guest's frames injects PASST_PER_FRAME (4000) random and
#    mutated frames, at frame boundaries, up to PASST_FRAMES (1,000,000).
#    passt alive, download intact, drops counted; SIGTERM: exit 0.
#
# Time here (2 shared CPUs): 30-70 s (run.sh limit 120 s). FRAMES, PASST_FRAMES and
# TORTURE_SEED can be set; the seed is logged for reruns.

need_tools curl sha256sum
FRAMES=${TORTURE_FRAMES:-1000000}
PASST_FRAMES=${TORTURE_PASST_FRAMES:-1000000} PASST_PER_FRAME=${TORTURE_PASST_PER_FRAME:-4000}
SEED=${TORTURE_SEED:-$((RANDOM * 32768 + RANDOM))}
HTTP_PORT=8080 FWD_PORT=18080 UDP_PORT=10007 BULK_PORT=10026 MIB=16 BULK_MIB=8
TORT="$PYTHON -u $LAB_DIR/torture.py"
T=$LAB_WORK
log "seed $SEED ($FRAMES frames into the tap, $PASST_FRAMES into passt's socket; rerun with TORTURE_SEED=$SEED)"

lab_tcp_server http up serve-http $HTTP_PORT --mib $MIB --bind $R4 --bind "$R6"
down_want=$(sed -n "s/^blob $MIB MiB sha256 //p" "$T/http.log")
[[ $down_want =~ ^[0-9a-f]{64}$ ]] || fail "serve-http logged no blob hash: $(head -n 3 "$T/http.log")"
up_want=$(timeout 30 $PYTHON "$LAB_DIR/tcplab.py" blob-sha --mib $MIB --seed up)
[[ $up_want =~ ^[0-9a-f]{64}\ [0-9]+$ ]] || fail "tcplab.py blob-sha printed '$up_want'"
lab_bg udpecho $UP timeout 300 $TORT udp-echo $R4 $UDP_PORT 290
dump_file "$T/udpecho.log"
wait_until 10 grep -q '^listening' "$T/udpecho.log" || fail "UDP echo not listening: $(cat "$T/udpecho.log")"
udp_want=$($PYTHON -c '
import hashlib, struct
h = hashlib.sha256()
for i in range(300):
    h.update(struct.pack("!Q", i) + hashlib.shake_256(struct.pack("!Q", i)).digest(1192))
print(h.hexdigest())')

# ---- 1. pasta ------------------------------------------------------------------
pasta_bg tort --config-net -d -t $FWD_PORT --host-lo-to-ns-lo
lab_bg nshttp "${NS[@]}" timeout 300 $PYTHON -u "$LAB_DIR/tcplab.py" serve-http --port $FWD_PORT --mib $MIB --bind 127.0.0.1
dump_file "$T/nshttp.log"
wait_until 15 grep -q '^listening' "$T/nshttp.log" || fail "namespace HTTP server not listening: $(tail -n 3 "$T/nshttp.log")"

r_down4() {
	local s
	s=$("${NS[@]}" timeout 60 curl -sS --connect-timeout 5 "http://$R4:$HTTP_PORT/blob" | sha256sum | cut -d' ' -f1)
	[[ $s == "$down_want" ]] || { echo "sha256 $s"; return 1; }
}
r_up6() {
	local r
	r=$("${NS[@]}" sh -c "timeout 60 $PYTHON $LAB_DIR/tcplab.py blob --mib $MIB --seed up |
		timeout 60 curl -sS -g --connect-timeout 5 -T - 'http://[$R6]:$HTTP_PORT/up'" 2>&1)
	[[ $r == "$up_want" ]] || { echo "reply $r"; return 1; }
}
r_splice() {
	local s
	s=$(timeout 60 curl -sS --connect-timeout 5 "http://127.0.0.1:$FWD_PORT/blob" | sha256sum | cut -d' ' -f1)
	[[ $s == "$down_want" ]] || { echo "sha256 $s"; return 1; }
}
r_udp() {
	local r
	r=$("${NS[@]}" timeout 120 $TORT udp-xfer $R4 $UDP_PORT 300 2>&1)
	[[ $r == *"sha256=$udp_want" ]] || { echo "$r"; return 1; }
	echo "$r" >>"$T/udp.rounds"
}
# worker NAME: rounds of r_NAME until the injection ended, then one more
# (at most 500, each bounded); NAME.result: rounds, bad, rounds done during
# the injection, the slowest round (seconds)
worker() {
	local name=$1 i=0 bad=0 during=0 last=0 r t slow=0
	while ((i < 500)); do
		[[ -e $T/inj.done ]] && last=1
		i=$((i + 1))
		t=$SECONDS
		if ! r=$("r_$name" 2>&1); then
			bad=$((bad + 1))
			echo "$name round $i: $r" >>"$T/$name.bad"
		fi
		[[ -e $T/inj.started && ! -e $T/inj.done ]] && during=$((during + 1))
		((SECONDS - t > slow)) && slow=$((SECONDS - t))
		((last)) && break
		[[ -e $T/inj.abort ]] && break
	done
	echo "rounds=$i bad=$bad during=$during slowest=${slow}s" >"$T/$name.result"
}
dump_file "$T/down4.bad" "$T/up6.bad" "$T/splice.bad" "$T/udp.bad" "$T/inject.out"
pids=()
for w in down4 up6 splice udp; do
	worker $w &
	pids+=($!)
done
# the transfers are running (each finished a round or is well into one)
sleep 2
IF=$("${NS[@]}" sh -c "$ns_ifname_cmd")
"${NS[@]}" timeout 5 ping -c1 -W2 $GW4 >/dev/null 2>&1
peer=$("${NS[@]}" ip neigh show $GW4 dev "$IF" | awk '{ for (i = 1; i < NF; i++) if ($i == "lladdr") print $(i + 1) }')
[[ -n $peer ]] || peer=ff:ff:ff:ff:ff:ff
log "injecting $FRAMES frames on $IF (pasta's MAC $peer)"
touch "$T/inj.started"
t0=$SECONDS
"${NS[@]}" timeout 240 $TORT tap "$IF" "$peer" $FRAMES $SEED "$T/inj.done" >"$T/inject.out" 2>&1
irc=$?
touch "$T/inj.done"
sed 's/^/    inject| /' "$T/inject.out"
((irc == 0)) || { touch "$T/inj.abort"; fail "torture.py tap: status $irc"; }
log "injection took $((SECONDS - t0)) s; waiting for the transfers' last rounds"
for p in "${pids[@]}"; do
	wait_until 200 eval '! alive '"$p" || { touch "$T/inj.abort"; fail "a transfer loop still running 200 s after the injection"; }
done
alive $PASTA_BG_PID || fail "pasta died during the torture: $(tail -n 5 "$T/tort.pasta.log")"
line=$(grep '^injected=' "$T/inject.out")
sent=$(sed -n 's/^injected=\([0-9]*\) .*/\1/p' <<<"$line")
qd=$(sed -n 's/.* tap_queue_drops=\([0-9]*\).*/\1/p' <<<"$line")
((sent - qd >= FRAMES)) || fail "$((sent - qd)) of $FRAMES frames went past the tap's queue: $line"
ok "pasta alive after $line"
for w in down4 up6 splice udp; do
	res=$(cat "$T/$w.result" 2>/dev/null)
	[[ $res =~ ^rounds=([0-9]+)\ bad=([0-9]+)\ during=([0-9]+)\ slowest= ]] || fail "$w: no result ($res)"
	((BASH_REMATCH[2] == 0)) || fail "$w: ${BASH_REMATCH[2]} of ${BASH_REMATCH[1]} rounds wrong: $(head -n 3 "$T/$w.bad")"
	((BASH_REMATCH[3] >= 1)) || fail "$w: no round completed while the frames went in ($res)"
	ok "$w: $res, every round intact"
done
ok "udp: $(tail -n 1 "$T/udp.rounds")"

if skip_unless_ours "pasta's counters: drop_* > 0 after the torture"; then
	cl=$(grep -E 'counters:' "$T/tort.pasta.log" | tail -n 1)
	[[ -n $cl ]] || fail "no 'counters:' line in pasta's log"
	cl=${cl#*counters:}
	sum=0
	for f in $cl; do [[ $f == drop_* && $f =~ =([0-9]+)$ ]] && sum=$((sum + BASH_REMATCH[1])); done
	((sum > 0)) || fail "drop_* counters add up to 0: $cl"
	ok "pasta's counters: drop_* sum $sum; $(tr ' ' '\n' <<<"$cl" | grep -E '^tap_rx_frames=' || true)"
fi
pasta_bg_stop || fail "pasta did not exit after its namespace's command ended"

# ---- 2. passt, frames injected into its socket --------------------------------
[[ -x $PASST_BIN ]] || { log "skip: no executable passt at $PASST_BIN"; exit 0; }
lab_tcp_server bulk up serve-sendclose $BULK_PORT --mib $BULK_MIB --bind $R4 --bind "$R6"
bulk_sha=$(timeout 10 $PYTHON "$LAB_DIR/tcplab.py" blob-sha --mib $BULK_MIB --seed down)
[[ $bulk_sha =~ ^[0-9a-f]{64}\ [0-9]+$ ]] || fail "tcplab.py blob-sha printed '$bulk_sha'"
dump_file "$T/passt.log" "$T/passt.out" "$T/relay.out" "$T/guest.out"
timeout -k 2 200 "$PASST_BIN" -f -d -s "$T/passt.sock" -l "$T/passt.log" >"$T/passt.out" 2>&1 &
PASST_PID=$!
wait_until 10 test -S "$T/passt.sock" || fail "passt did not create its socket: $(tail -n 3 "$T/passt.out")"
timeout 180 $TORT relay "$T/relay.sock" "$T/passt.sock" $PASST_PER_FRAME $PASST_FRAMES $SEED 52:54:00:12:34:56 \
	>"$T/relay.out" 2>&1 &
RELAY_PID=$!
wait_until 10 grep -q '^listening' "$T/relay.out" || fail "relay not listening: $(cat "$T/relay.out")"
t0=$SECONDS
timeout 150 "$PYTHON" "${LAB_CASE_FILE%/*}/25-passt-stream.py" download "$T/relay.sock" \
	$BULK_PORT $bulk_sha >"$T/guest.out" 2>&1
grc=$?
sed 's/^/    guest| /' "$T/guest.out"
wait_until 10 eval '! alive $RELAY_PID' || kill $RELAY_PID 2>/dev/null
sed 's/^/    relay| /' "$T/relay.out"
((grc == 0)) || fail "the guest's download through the relay failed (status $grc)"
alive $PASST_PID || fail "passt died during the torture: $(tail -n 5 "$T/passt.log")"
line=$(grep '^injected=' "$T/relay.out")
ok "passt alive, 2 x $BULK_MIB MiB downloads intact in $((SECONDS - t0)) s with $line"
kill -TERM $PASST_PID
wait_until 5 eval '! alive $PASST_PID' || fail "passt still running 5 s after SIGTERM"
wait $PASST_PID
expect_eq "passt exit status after SIGTERM" "$?" 0
if skip_unless_ours "passt's counters: drop_* > 0"; then
	cl=$(grep -E 'counters:' "$T/passt.log" | tail -n 1)
	cl=${cl#*counters:}
	sum=0
	for f in $cl; do [[ $f == drop_* && $f =~ =([0-9]+)$ ]] && sum=$((sum + BASH_REMATCH[1])); done
	((sum > 0)) || fail "passt's drop_* counters add up to 0: ${cl:-no counters line}"
	ok "passt's counters: drop_* sum $sum; $(tr ' ' '\n' <<<"$cl" | grep -E '^tap_rx_frames=' || true)"
fi
