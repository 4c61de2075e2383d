# 29-ebpf-fallback: pasta --ebpf where the programs can't be loaded, or stop
# being there, keeps working on splice() and userspace answers, and says why
# in one log line ("eBPF off, using splice(): REASON").
#
# Each run: pasta --config-net -t PORT --ebpf... -- sh script, where the script
# starts a TCP echo server on the namespace's port PORT, pings the
# gateway, waits until a client on the host's 127.0.0.1:PORT (spliced) has
# sent 4 MiB of random data and read it back, then exits with status 7. Checks:
# pasta exits 7, the ping works, the data came back byte-exact, and pasta's log
# has exactly one "eBPF off" line with the expected reason:
#   (a) unprivileged pasta (the lab's unshare --user): "not permitted ...";
#   (b) pasta as real root with CAP_BPF and CAP_SYS_ADMIN dropped (capsh):
#       "not permitted ...";
#   (e) --ebpf-helper /nonexistent: the connect error.
# With a passt-ebpf-helper daemon (started as root):
#   (c) the unprivileged pasta with --ebpf-helper gets the tap classifier
#       (the helper logs the attach, the program answers ARP), then the helper
#       is killed: pasta logs that the programs are detached, and the
#       namespace, its neighbour cache flushed, still pings the gateway
#       (userspace answers ARP) and a second transfer is byte-exact;
#   (d) pasta as uid 4242 (setpriv, then its own user namespace), which the
#       helper doesn't allow: the refusal in pasta's log and the fallback; as
#       uid 4243, given with --allow-uid, the programs are attached (the
#       namespace belongs to 4243's user namespace, so the ownership check
#       passes) and answer ARP.

need_tools socat sha256sum capsh setpriv
skip_unless_ours "eBPF fallback" || exit 0
need_ebpf
HELPER=${PASTA_BIN%/*}/passt-ebpf-helper
[[ -x $HELPER ]] || fail "no passt-ebpf-helper next to $PASTA_BIN"
UNPRIV=("${PASTA[@]}")

head -c 4M /dev/urandom >"$LAB_WORK/blob" || fail "cannot write test data"
want=$(sha256sum <"$LAB_WORK/blob" | cut -c1-64)
chmod 644 "$LAB_WORK/blob"

# The namespace side, parameterised by FB_NAME and FB_PORT (environment).
cat >"$LAB_WORK/fb-ns.sh" <<'NS'
socat TCP4-LISTEN:$FB_PORT,reuseaddr,fork SYSTEM:cat &
rc=1; n=0
while [ $n -lt 3 ] && [ $rc -ne 0 ]; do
	n=$((n + 1))
	timeout 5 ping -4 -n -c1 -W2 "$GW4" >/dev/null 2>&1
	rc=$?
done
echo "ping $GW4 rc=$rc tries=$n"
touch "$LAB_WORK/$FB_NAME.ready"
i=0
while [ ! -e "$LAB_WORK/$FB_NAME.done" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
exit 7
NS

# transfer PORT: send the blob to the host's 127.0.0.1:PORT and print the
# SHA-256 of what comes back.
transfer() {
	timeout 30 socat -t 5 - TCP4:127.0.0.1:$1 <"$LAB_WORK/blob" 2>/dev/null | sha256sum | cut -c1-64
}

# fallback_run NAME PORT WANT [PASTA OPTION...]: one run with "${PASTA[@]}".
# WANT is an ERE for the reason in the "eBPF off" line, or "loaded": the
# programs must be attached through the helper (no "eBPF off" line at all).
fallback_run() {
	local name=$1 port=$2 want_log=$3 rc got n line plog=$LAB_WORK/$1.pasta.log; shift 3
	export FB_NAME=$name FB_PORT=$port
	(
		wait_until 20 test -e "$LAB_WORK/$name.ready" || exit 1
		transfer "$port" >"$LAB_WORK/$name.sha"
		touch "$LAB_WORK/$name.done"
	) &
	pasta_spawn "$name" 60 -d --config-net -t "$port" "$@" <"$LAB_WORK/fb-ns.sh"
	rc=$?
	((rc == 7)) || fail "$name: pasta exited with status $rc, want the command's 7"
	line=$(grep "^ping " "$LAB_WORK/$name.out")
	[[ $line == *" rc=0 "* ]] || fail "$name: ping failed: $line"
	got=$(<"$LAB_WORK/$name.sha")
	[[ $got == "$want" ]] || fail "$name: spliced transfer on port $port came back as $got, want $want"
	n=$(grep -c "eBPF off, using splice(): " "$plog")
	if [[ $want_log == loaded ]]; then
		((n == 0)) || fail "$name: $(grep 'eBPF off' "$plog")"
		grep -q "eBPF programs via helper at " "$plog" || fail "$name: no 'eBPF programs via helper' line"
		n=$(grep -o "answers:.* arp_replies [0-9]*" "$plog" | awk '{ print $NF }')
		((${n:-0} >= 1)) || fail "$name: the program answered no ARP request: $(grep 'answers:' "$plog")"
		ok "$name: exit 7, ping, 4 MiB spliced byte-exact, programs via the helper (arp_replies $n)"
		return
	fi
	((n == 1)) || fail "$name: $n 'eBPF off' lines in pasta's log, want 1"
	line=$(grep -o "eBPF off, using splice(): .*" "$plog")
	[[ $line =~ $want_log ]] || fail "$name: reason '$line' does not match /$want_log/"
	! grep -q "ebpf tap frames" "$plog" || fail "$name: eBPF counters despite the fallback"
	ok "$name: exit 7, ping, 4 MiB spliced byte-exact; log: $line"
}

# ---- (a) unprivileged ------------------------------------------------------------
fallback_run unpriv 10901 "not permitted to load eBPF programs" --ebpf

# ---- (b) root without CAP_BPF / CAP_SYS_ADMIN ----------------------------------------
PASTA=(capsh --drop=cap_bpf,cap_sys_admin,cap_perfmon -- -c 'exec "$0" "$@"' "$PASTA_BIN")
fallback_run capsh 10902 "not permitted to load eBPF programs" --ebpf

# ---- (e) no helper at the path ---------------------------------------------------
PASTA=("${UNPRIV[@]}")
fallback_run nohelper 10903 "eBPF helper at /nonexistent: connect: .*No such file" --ebpf-helper /nonexistent

# ---- (c) through the helper, which then goes away -----------------------------------
sock=$LAB_WORK/helper.sock
lab_bg helper "$HELPER" -s "$sock" --allow-uid 4243
dump_file "$LAB_WORK/helper.log"
wait_until 5 test -S "$sock" || fail "passt-ebpf-helper not listening: $(cat "$LAB_WORK/helper.log")"
helper_pid=$(awk '$1 == "helper" { print $2 }' "$LAB_WORK/servers")

pasta_bg hc -d --config-net -t 10904 --ebpf-helper "$sock"
plog=$LAB_WORK/hc.pasta.log
wait_until 5 grep -q "eBPF programs via helper at $sock" "$plog" ||
	fail "pasta did not get the programs from the helper: $(grep -i ebpf "$plog")"
"${NS[@]}" socat TCP4-LISTEN:10904,reuseaddr,fork SYSTEM:cat &
srv=$!
wait_until 5 tcp_listening "${NS[@]}" -- 10904 || fail "echo server in the namespace not listening"
timeout 5 "${NS[@]}" ping -4 -n -c1 -W2 $GW4 >/dev/null || fail "ping through the helper's programs failed"
got=$(transfer 10904)
[[ $got == "$want" ]] || fail "transfer with the helper's programs: $got, want $want"
grep -Eq "uid 0: attached [1-9][0-9]* program\(s\)" "$LAB_WORK/helper.log" || fail "the helper did not log the attach"
ok "helper: programs attached, ping and 4 MiB spliced byte-exact"

kill "$helper_pid"
wait_until 5 grep -q "eBPF loader closed the connection: the programs are detached" "$plog" ||
	fail "pasta did not notice the helper going away"
ok "helper killed: $(grep -o 'eBPF loader closed.*' "$plog")"
timeout 5 "${NS[@]}" ip neigh flush all
timeout 5 "${NS[@]}" ping -4 -n -c1 -W2 $GW4 >/dev/null || fail "ping after the helper went away failed"
got=$(transfer 10904)
[[ $got == "$want" ]] || fail "transfer after the helper went away: $got, want $want"
kill "$srv" 2>/dev/null
pasta_bg_stop || fail "pasta did not exit after its command"
n=$(grep -o "answers:.* arp_replies [0-9]*" "$plog" | awk '{ print $NF }')
((${n:-0} >= 1)) || fail "the program answered no ARP request before the helper went: $(grep 'answers:' "$plog")"
n2=$(grep -o "counters:.*" "$plog" | grep -oE "svc_arp_frames=[0-9]+" | cut -d= -f2)
((${n2:-0} >= 1)) || fail "userspace answered no ARP request after the helper went: $(grep 'counters:' "$plog")"
ok "after the helper went: ping and transfer work; ARP answered by the program ($n) then by pasta ($n2)"

# ---- (d) uids and the helper -----------------------------------------------------
lab_bg helper2 "$HELPER" -s "$sock" --allow-uid 4243
dump_file "$LAB_WORK/helper2.log"
wait_until 5 grep -q "listening on" "$LAB_WORK/helper2.log" || fail "second helper not listening"
# Distributions give /dev/net/tun mode 0666; this machine may not: the lab's
# private mount namespace gets a node of its own with that mode.
if [[ $(stat -c %a /dev/net/tun) != 666 ]]; then
	mknod -m 666 "$LAB_WORK/tun" c 10 200 && mount --bind "$LAB_WORK/tun" /dev/net/tun ||
		fail "cannot provide a world-usable /dev/net/tun in the lab"
fi
PASTA=(setpriv --reuid 4242 --regid 4242 --clear-groups "${UNPRIV[@]}")
fallback_run uid4242 10905 "eBPF helper at $sock: uid 4242 is not allowed" --ebpf-helper "$sock"
PASTA=(setpriv --reuid 4243 --regid 4243 --clear-groups "${UNPRIV[@]}")
fallback_run uid4243 10906 loaded --ebpf-helper "$sock"
grep -Eq "uid 4243: attached [1-9][0-9]* program\(s\)" "$LAB_WORK/helper2.log" || fail "helper: no attach for uid 4243"
ok "helper refused uid 4242, served uid 4243 (--allow-uid) on its own namespace"
