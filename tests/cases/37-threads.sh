# 37-threads: pasta --threads 2 (passt-rs extension): a multi-queue tap, one
# worker thread per queue, flows owned by one worker whichever queue their
# frames come up on (passt-user/src/threads.rs).
#
#   pasta --config-net -d --threads 2 -t 10038 -t 10039 (background, pasta_bg)
#   - the namespace's tap has 2 queues (/sys/class/net/IF/queues/{rx,tx}-*);
#   - pasta has at least 3 threads (/proc/PID/task: worker 0, worker 1, the
#     namespace helper), each with CapEff 0 (or CAP_NET_BIND_SERVICE only),
#     NoNewPrivs 1, Seccomp 2;
#   - at once: 8 connections out of the namespace (4 to 198.51.100.1, 4 to
#     2001:db8:100::1; tcplab.py serve-sendclose upstream sends 8 MiB, the
#     client sends 4 MiB back) and 4 into it through the tap (-t 10038,
#     clients upstream to 192.0.2.2 and 2001:db8:2::2, the server in the
#     namespace sends 8 MiB, the client 4 MiB back): every byte stream checked
#     by sha256 and length, both ways;
#   - UDP echo (8 source ports, IPv4 and IPv6) and ping (4 each) answered;
#   - idle connections: 8 out of the namespace and 4 in (-t 10039, an echo
#     server in the namespace) send a line, stay silent 5 s (past tun's 3 s
#     flow expiry, so the next frame may come up on the other queue), send
#     another: both lines echoed, no reset;
#   - pasta exits when its command ends (with its status, 137: SIGKILL); its log has "worker 0: counters:"
#     and "worker 1: counters:" lines, each with tcp_flows or
#     tcp_inbound_flows above 0 (both workers carried flows), and a total
#     "counters:" line whose tcp_flows is their sum.
# Skipped (status 3) for binaries other than passt-rs: --threads is ours.
# lab-timeout: 200

need_tools ss
pasta_is_ours || { log "skip: --threads is a passt-rs extension"; exit 3; }

P_OUT=10037 P_IN=10038 P_ECHO_OUT=10040 P_ECHO_IN=10039
T=("$PYTHON" "$LAB_DIR/tcplab.py")
down8=$(timeout 30 "${T[@]}" blob-sha --mib 8 --seed down)
up4=$(timeout 30 "${T[@]}" blob-sha --mib 4 --seed up)

lab_tcp_server sendclose up serve-sendclose $P_OUT --mib 8 --bind $R4 --bind "$R6"
lab_tcp_server echo-up up serve-echo $P_ECHO_OUT --bind $R4 --bind "$R6"

pasta_bg thr --config-net -d --threads 2 -t $P_IN -t $P_ECHO_IN
PID=$(pgrep -P "$PASTA_BG_PID" -x pasta | head -n 1)
[[ -n $PID ]] || PID=$(pgrep -P "$PASTA_BG_PID" | head -n 1)
[[ -n $PID ]] || fail "pasta's PID not found (child of $PASTA_BG_PID)"

IF=$("${NS[@]}" sh -c "$ns_ifname_cmd")
# The queues in use (ip -d link shows the most the device could have): in
# the namespace's own sysfs, mounted in a private mount namespace.
q=$("${NS[@]}" unshare -m sh -c "mount -t sysfs sysfs /sys && cd /sys/class/net/$IF/queues && echo rx-* tx-*")
expect_eq "queues of $IF" "$q" "rx-0 rx-1 tx-0 tx-1"
nt=$(ls "/proc/$PID/task" | wc -l)
((nt >= 3)) || fail "pasta has $nt threads, want at least 3"
ok "pasta has $nt threads"
# Every thread sandboxed (the workers start after the sandbox and inherit it):
# no capability but CAP_NET_BIND_SERVICE (kept for -U auto, see 30-sandbox).
for t in /proc/$PID/task/*; do
	v=$(awk '$1 == "CapEff:" || $1 == "NoNewPrivs:" || $1 == "Seccomp:" { printf "%s%s ", $1, $2 }' "$t/status")
	expect_match "task ${t##*/}" "$v" "^CapEff:(0000000000000400|0000000000000000) NoNewPrivs:1 Seccomp:2 $"
done

# Servers in the namespace, reached through the tap from upstream.
lab_bg sendclose-ns "${NS[@]}" timeout 300 "$PYTHON" -u "$LAB_DIR/tcplab.py" serve-sendclose \
	--port $P_IN --mib 8 --bind $H4 --bind "$H6"
lab_bg echo-ns "${NS[@]}" timeout 300 "$PYTHON" -u "$LAB_DIR/tcplab.py" serve-echo \
	--port $P_ECHO_IN --bind $H4 --bind "$H6"
dump_file "$LAB_WORK/sendclose-ns.log" "$LAB_WORK/echo-ns.log" "$LAB_WORK/sendclose.log"
ns_listening() { [[ $(grep -c '^listening ' "$LAB_WORK/$1.log" 2>/dev/null) -ge 2 ]]; }
wait_until 15 ns_listening sendclose-ns || fail "server in the namespace not listening"
wait_until 15 ns_listening echo-ns || fail "echo server in the namespace not listening"

# --- bulk, all at once -------------------------------------------------------
pids=()
for i in 1 2 3 4; do
	for a in $R4 $R6; do
		f=4; [[ $a == *:* ]] && f=6
		timeout 90 "${NS[@]}" "${T[@]}" client-sendclose --addr $a --port $P_OUT --mib 4 --timeout 80 \
			--wait-file "$LAB_WORK/sendclose.log" >"$LAB_WORK/out$f.$i" 2>&1 &
		pids+=($!)
	done
done
for i in 1 2; do
	for a in $H4 $H6; do
		f=4; [[ $a == *:* ]] && f=6
		timeout 90 $UP "${T[@]}" client-sendclose --addr $a --port $P_IN --mib 4 --timeout 80 \
			--wait-file "$LAB_WORK/sendclose-ns.log" >"$LAB_WORK/in$f.$i" 2>&1 &
		pids+=($!)
	done
done
# Meanwhile: UDP echo and ping from the namespace.
for i in 1 2 3 4; do
	for a in "UDP4:$R4:$ECHO_PORT" "UDP6:[$R6]:$ECHO_PORT"; do
		r=$(echo "u$i" | timeout 5 "${NS[@]}" socat -T 3 - "$a" 2>&1 | head -n 1)
		expect_eq "UDP echo $a ($i)" "$r" "remote:u$i"
	done
done
for a in $R4 $R6; do
	timeout 10 "${NS[@]}" ping -n -c 4 -i 0.2 -W 2 $a >"$LAB_WORK/ping.$a" 2>&1 ||
		fail "ping $a: $(tail -n 3 "$LAB_WORK/ping.$a")"
	ok "ping $a: $(grep -o '[0-9]* received' "$LAB_WORK/ping.$a")"
done
for p in "${pids[@]}"; do wait "$p"; done

# check_clients DIR FAMILY COUNT: each client-sendclose result file
# $LAB_WORK/DIR<FAMILY>.<i> shows the whole download and the server's end
check_clients() {
	local dir=$1 f=$2 count=$3 i r
	for ((i = 1; i <= count; i++)); do
		r=$(<"$LAB_WORK/$dir$f.$i")
		[[ $r == *"result recv_len="* ]] || fail "$dir IPv$f #$i: client-sendclose failed: $r"
		expect_eq "$dir IPv$f #$i: download (sha256 len)" \
			"$(sed -n 's/.*recv_len=\([0-9]*\) recv_sha=\([0-9a-f]*\).*/\2 \1/p' <<<"$r")" "$down8"
		[[ $r == *"server_done=yes"* ]] || fail "$dir IPv$f #$i: the server did not log its end: $r"
	done
}
for f in 4 6; do
	check_clients out $f 4
	if [[ $f == 4 ]]; then peer=$H4; else peer=$H6; fi
	# Counted with -o: the server's threads may write two lines as one.
	n=$(grep -o "sendclose from $peer: received ${up4#* } sha256 ${up4% *}" "$LAB_WORK/sendclose.log" | wc -l)
	expect_eq "out IPv$f: uploads received whole by the server" "$n" 4
	check_clients in $f 2
done
n=$(grep -o "received ${up4#* } sha256 ${up4% *}" "$LAB_WORK/sendclose-ns.log" | wc -l)
expect_eq "in: uploads received whole by the server in the namespace" "$n" 4

# --- idle connections, past tun's flow expiry -----------------------------------
idle() {  # name prefix-cmd... -- socat-address
	local name=$1; shift
	{ echo "a-$name"; sleep 5; echo "b-$name"; sleep 1; } |
		timeout 20 "$@" >"$LAB_WORK/idle.$name" 2>&1
}
pids=()
for i in 1 2 3 4; do
	idle o4$i "${NS[@]}" socat -t 5 - TCP4:$R4:$P_ECHO_OUT & pids+=($!)
	idle o6$i "${NS[@]}" socat -t 5 - "TCP6:[$R6]:$P_ECHO_OUT" & pids+=($!)
done
for i in 1 2; do
	idle i4$i $UP socat -t 5 - TCP4:$H4:$P_ECHO_IN & pids+=($!)
	idle i6$i $UP socat -t 5 - "TCP6:[$H6]:$P_ECHO_IN" & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for n in o41 o42 o43 o44 o61 o62 o63 o64 i41 i42 i61 i62; do
	expect_eq "idle connection $n: both lines echoed" "$(tr '\n' ' ' <"$LAB_WORK/idle.$n")" "echo:a-$n echo:b-$n "
done

# --- exit and per-worker counters -----------------------------------------------
pasta_bg_stop || fail "pasta did not exit after its command ended"
expect_eq "pasta exit status (its command's, killed)" "$PASTA_BG_RC" 137
L=$LAB_WORK/thr.pasta.log
tot=0
for w in 0 1; do
	cl=$(grep -E "worker $w: counters:" "$L" | tail -n 1)
	[[ -n $cl ]] || fail "no 'worker $w: counters:' line in pasta's log"
	t=$(grep -o ' tcp_flows=[0-9]*' <<<"$cl" | cut -d= -f2)
	ti=$(grep -o ' tcp_inbound_flows=[0-9]*' <<<"$cl" | cut -d= -f2)
	((${t:-0} + ${ti:-0} > 0)) || fail "worker $w carried no TCP flow: $cl"
	ok "worker $w: tcp_flows=${t:-0} tcp_inbound_flows=${ti:-0}"
	tot=$((tot + ${t:-0}))
done
cl=$(grep -E '^([0-9]+\.[0-9]+: +)?([A-Za-z]+: +)?counters:' "$L" | tail -n 1)
expect_eq "total tcp_flows" "$(grep -o ' tcp_flows=[0-9]*' <<<"$cl" | cut -d= -f2)" "$tot"
h=$(grep -o ' thread_frames_handed=[0-9]*' <<<"$cl" | cut -d= -f2)
ok "frames handed between workers: ${h:-0}; $cl"
