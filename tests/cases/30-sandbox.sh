# 30-sandbox: after start-up, the running daemon is locked in (passt(1),
# "Security and Privileges"), checked on the live process from outside.
#
# For every task (thread) of the process, /proc/PID/task/*/status must show
# CapInh CapPrm CapEff CapBnd CapAmb all 0, NoNewPrivs 1, Seccomp 2 and
# Seccomp_filters >= 1; /proc/PID/root is empty; its mount namespace is not
# ours; every fd in /proc/PID/fd above 2 (stdio) is a socket, pipe, anonymous inode,
# namespace, /dev/null, /dev/net/tun or one of the files it was asked to
# use (log, --netns file and its directory), and an fd we leaked into it on purpose (7, open on
# this case's script) is closed. Traffic must still work after all this.
#
# A. pasta spawn form, foreground (-f implied), as Podman runs it (root of its
#    own user namespace): 2 tasks (main + namespace helper thread). Inside:
#    TCP to an upstream server (tap), TCP to a host loopback server through
#    -T (splice), UDP echo to upstream, ping upstream.
# B. passt -f --runas 1234:1234 (the lab is real root): Uid and Gid lines
#    1234, its own user namespace, 1 task; a client can still connect.
#    passt without --runas, in the background (-P): changes to nobody (Uid
#    65534 for the real, effective, saved and fs UIDs) and logs "Started as
#    root, will change to nobody.".
# C. pasta --netns PATH in the background (-P), run as root of a user
#    namespace that owns the target network namespace, like Podman: same
#    checks, TCP via the tap and via -T splice from the namespace, ping; then
#    removing the netns file still ends pasta within 5 s (the watch works from
#    inside the empty root).
# E. The one exception, as upstream: pasta -U 53 (UDP from a namespace port
#    below 1024, whose per-client reply sockets are bound to port 53 at run
#    time) keeps CAP_NET_BIND_SERVICE, permitted and effective only, on its
#    main thread: CapEff = CapPrm = 0000000000000400 there, everything else
#    as above, the helper thread all 0; a DNS query to the namespace's
#    127.0.0.1:53 gets the host loopback resolver's (decoy) answer.
# D. seccomp refuses on the live process (debug build, whose
#    PASST_RS_FORBIDDEN_SYSCALL=main|netns makes the sandboxed process call
#    execve(2)): pasta with "main" and with "netns" (the helper thread: the
#    filter covers every thread) and passt with "main" exit with status 159
#    (128 + SIGSYS) and log "seccomp: forbidden syscall N", N = execve.
#    The debug binary is $PASTA_DEBUG_BIN, by default target/debug/pasta next
#    to target/release/pasta (cargo xtask test builds it); missing = failure.

if ! pasta_is_ours; then
	log "skip: 30-sandbox checks passt-rs's sandbox ($PASTA_BIN is not passt-rs)"
	exit 0
fi
PASTA_DEBUG_BIN=${PASTA_DEBUG_BIN:-${PASTA_BIN%/release/pasta}/debug/pasta}
case $(uname -m) in
x86_64) NR_EXECVE=59 ;;
aarch64 | riscv64) NR_EXECVE=221 ;;
*) NR_EXECVE= ;;
esac
TCP_PORT=10700 SPLICE_PORT=10701

# check_status PID LABEL TASKS: every task's status has all capability sets 0,
# NoNewPrivs 1, Seccomp 2, Seccomp_filters >= 1; exactly TASKS tasks.
check_status() {
	local pid=$1 what=$2 tasks=$3 n=0 t f v
	for t in /proc/$pid/task/*; do
		n=$((n + 1))
		for f in CapInh CapPrm CapEff CapBnd CapAmb; do
			v=$(awk -v k="$f:" '$1 == k { print $2 }' "$t/status")
			[[ $v == 0000000000000000 ]] || fail "$what: task ${t##*/} $f is '$v', not 0"
		done
		v=$(awk '$1 == "NoNewPrivs:" { print $2 }' "$t/status")
		[[ $v == 1 ]] || fail "$what: task ${t##*/} NoNewPrivs '$v', not 1"
		v=$(awk '$1 == "Seccomp:" { print $2 }' "$t/status")
		[[ $v == 2 ]] || fail "$what: task ${t##*/} Seccomp '$v', not 2 (filter)"
		v=$(awk '$1 == "Seccomp_filters:" { print $2 }' "$t/status")
		[[ -n $v && $v -ge 1 ]] || fail "$what: task ${t##*/} Seccomp_filters '$v'"
	done
	((n == tasks)) || fail "$what: $n tasks, expected $tasks"
	ok "$what: $n task(s): all Cap* 0, NoNewPrivs 1, Seccomp 2"
}

# check_jail PID LABEL ALLOWED-FILE...: empty root, other mount namespace,
# only expected fds, the leaked fd 7 closed.
check_jail() {
	local pid=$1 what=$2 l fd target ok_file; shift 2
	l=$(ls -A "/proc/$pid/root/" 2>&1) || fail "$what: can't list /proc/$pid/root: $l"
	[[ -z $l ]] || fail "$what: root not empty: $l"
	[[ $(readlink /proc/$pid/ns/mnt) != "$(readlink /proc/self/ns/mnt)" ]] ||
		fail "$what: still in our mount namespace"
	for fd in /proc/$pid/fd/*; do
		[[ ${fd##*/} == [012] ]] && continue   # stdio, as started
		target=$(readlink "$fd") || continue
		case $target in
		socket:* | pipe:* | anon_inode:* | net:* | /dev/null | /dev/net/tun | /dev/pts/*) continue ;;
		esac
		ok_file=0
		for f in "$@"; do [[ $target == "$f" ]] && ok_file=1; done
		((ok_file)) || fail "$what: fd ${fd##*/} open on '$target'"
	done
	[[ $(readlink "/proc/$pid/fd/7" 2>/dev/null) != "$LAB_CASE_FILE" ]] ||
		fail "$what: fd 7 leaked by the parent is still open"
	ok "$what: empty root, own mount namespace, $(ls /proc/$pid/fd | wc -l) fds, none unexpected"
}

# ---- C runs as root of its own user namespace (see the top) ------------------
if [[ -n ${SANDBOX_PART_C:-} ]]; then
	mkdir -p "$LAB_WORK/ns"
	mount -t tmpfs -o mode=755 netns "$LAB_WORK/ns" || fail "C: cannot mount tmpfs for netns files"
	touch "$LAB_WORK/ns/c" && unshare --net="$LAB_WORK/ns/c" true || fail "C: cannot create netns file"
	dump_file "$LAB_WORK/c.pasta.log"
	timeout 20 "$PASTA_BIN" --config-net -l "$LAB_WORK/c.pasta.log" -P "$LAB_WORK/c.pid" \
		-t none -u none -T $SPLICE_PORT -U none --netns "$LAB_WORK/ns/c" 7<"$LAB_CASE_FILE" \
		>"$LAB_WORK/c.out" 2>&1
	rc=$?
	sed 's/^/    pasta| /' "$LAB_WORK/c.out"
	((rc == 0)) || fail "C: pasta --netns -P exited with status $rc"
	CPID=$(tr -d ' \n' <"$LAB_WORK/c.pid")
	alive "$CPID" || fail "C: pid file holds '$CPID', not a live process"
	check_status "$CPID" "C: pasta --netns (background)" 2
	# the target namespace (through its file) and its directory (O_PATH, for
	# the exit-when-gone watch)
	check_jail "$CPID" "C: pasta --netns (background)" "$LAB_WORK/c.pasta.log" "$LAB_WORK/ns/c" "$LAB_WORK/ns"
	r=$(timeout 10 nsenter --net="$LAB_WORK/ns/c" sh -c \
		"echo tap | socat -T 3 - TCP4:$R4:$TCP_PORT; echo splice | socat -T 3 - TCP4:127.0.0.1:$SPLICE_PORT;
		 ping -c1 -W2 $R4 >/dev/null && echo ping-ok" 2>&1)
	expect_eq "C: TCP via tap, TCP via splice, ping from the namespace" "$(echo $r)" "up:tap lo:splice ping-ok"
	umount -l "$LAB_WORK/ns/c" && rm -f "$LAB_WORK/ns/c" || fail "C: cannot remove the netns file"
	wait_until 5 eval "! alive $CPID" || fail "C: pasta ($CPID) still running 5 s after its netns file was removed"
	ok "C: pasta exited after its netns file was removed"
	exit 0
fi

# ---- servers: TCP on upstream's remote address and on host loopback -----------
lab_bg tcp-up $UP socat -T 5 TCP4-LISTEN:$TCP_PORT,bind=$R4,reuseaddr,fork SYSTEM:'read l; echo "up:$l"'
lab_bg tcp-lo socat -T 5 TCP4-LISTEN:$SPLICE_PORT,bind=127.0.0.1,reuseaddr,fork SYSTEM:'read l; echo "lo:$l"'
wait_until 5 eval "ss -Hltn 'sport = :$SPLICE_PORT' | grep -q ." || fail "host loopback TCP server not listening"

# ---- A. pasta spawn form, foreground ------------------------------------------
cat >"$LAB_WORK/a.sh" <<NS
echo started >"$LAB_WORK/a.started"
n=0; while [ ! -e "$LAB_WORK/a.go" ] && [ \$n -lt 200 ]; do sleep 0.1; n=\$((n + 1)); done
echo tap | socat -T 3 - TCP4:$R4:$TCP_PORT
echo splice | socat -T 3 - TCP4:127.0.0.1:$SPLICE_PORT
echo udp | socat -T 3 - UDP4:$R4:$ECHO_PORT
ping -c1 -W2 $R4 >/dev/null && echo ping-ok
NS
dump_file "$LAB_WORK/a.pasta.log"
timeout -k 2 40 "${PASTA[@]}" --config-net -l "$LAB_WORK/a.pasta.log" -t none -u none -T $SPLICE_PORT -U none \
	-- sh "$LAB_WORK/a.sh" 7<"$LAB_CASE_FILE" >"$LAB_WORK/a.out" 2>&1 &
APID=$!   # timeout; pasta is its child (unshare execs it)
wait_until 10 test -e "$LAB_WORK/a.started" || fail "A: the spawned command never started"
PPID_A=$(pgrep -P "$APID" -x pasta) || fail "A: no pasta child of timeout ($APID)"
check_status "$PPID_A" "A: pasta spawn form" 2
check_jail "$PPID_A" "A: pasta spawn form" "$LAB_WORK/a.pasta.log"
touch "$LAB_WORK/a.go"
wait "$APID"; rc=$?
sed 's/^/    a| /' "$LAB_WORK/a.out"
expect_eq "A: exit status (the command's)" "$rc" 0
expect_eq "A: TCP via tap, TCP via splice, UDP, ping" "$(echo $(cat "$LAB_WORK/a.out"))" "up:tap lo:splice remote:udp ping-ok"

# ---- B. passt --runas, and passt dropping root to nobody -----------------------
dump_file "$LAB_WORK/b.log" "$LAB_WORK/b2.log"
timeout -k 2 30 "$PASST_BIN" -f -s "$LAB_WORK/b.sock" -l "$LAB_WORK/b.log" --runas 1234:1234 7<"$LAB_CASE_FILE" \
	>"$LAB_WORK/b.out" 2>&1 &
BT=$!
wait_until 10 test -S "$LAB_WORK/b.sock" || fail "B: passt never bound its socket"
BPID=$(pgrep -P "$BT" -x passt) || fail "B: no passt child of timeout ($BT)"
wait_until 5 eval "[[ \$(awk '\$1 == \"NoNewPrivs:\" { print \$2 }' /proc/$BPID/status) == 1 ]]" ||
	fail "B: passt never reached its sandbox"
check_status "$BPID" "B: passt --runas" 1
check_jail "$BPID" "B: passt --runas" "$LAB_WORK/b.log"
expect_eq "B: Uid line" "$(awk '$1 == "Uid:" { print $2, $3, $4, $5 }' /proc/$BPID/status)" "1234 1234 1234 1234"
expect_eq "B: Gid line" "$(awk '$1 == "Gid:" { print $2, $3, $4, $5 }' /proc/$BPID/status)" "1234 1234 1234 1234"
[[ $(readlink /proc/$BPID/ns/user) != "$(readlink /proc/self/ns/user)" ]] || fail "B: passt is still in our user namespace"
ok "B: passt has its own user namespace"
timeout 5 socat -u OPEN:/dev/null UNIX-CONNECT:"$LAB_WORK/b.sock" || fail "B: can't connect to passt's socket"
wait_until 5 grep -q "accepted connection" "$LAB_WORK/b.log" || fail "B: passt did not log the accepted connection"
ok "B: the sandboxed passt accepted a connection"
kill -TERM "$BPID"
wait "$BT"; rc=$?
expect_eq "B: passt exit status after SIGTERM" "$rc" 0

timeout 20 "$PASST_BIN" -s "$LAB_WORK/b2.sock" -l "$LAB_WORK/b2.log" -P "$LAB_WORK/b2.pid" >"$LAB_WORK/b2.out" 2>&1
rc=$?
((rc == 0)) || fail "B: passt in the background exited with status $rc"
B2=$(tr -d ' \n' <"$LAB_WORK/b2.pid")
alive "$B2" || fail "B: pid file holds '$B2', not a live process"
wait_until 5 eval "[[ \$(awk '\$1 == \"Seccomp:\" { print \$2 }' /proc/$B2/status) == 2 ]]" || fail "B: background passt never reached its sandbox"
check_status "$B2" "B: passt (background, no --runas)" 1
expect_eq "B: Uid line without --runas" "$(awk '$1 == "Uid:" { print $2, $3, $4, $5 }' /proc/$B2/status)" "65534 65534 65534 65534"
grep -q "Started as root, will change to nobody." "$LAB_WORK/b2.log" || fail "B: no 'Started as root, will change to nobody.' in the log"
ok "B: started as root, passt changed to nobody and said so"
kill -TERM "$B2"
wait_until 5 eval "! alive $B2" || fail "B: background passt still running 5 s after SIGTERM"

# ---- C. pasta --netns PATH, background, in its own user namespace -------------
SANDBOX_PART_C=1 timeout -k 2 60 unshare --user --map-root-user --mount \
	bash -c 'set -uo pipefail; source "$LAB_DIR/lab.sh"; source "$LAB_CASE_FILE"' || exit $?

# ---- E. pasta -U 53 keeps CAP_NET_BIND_SERVICE on its main thread ---------------
cat >"$LAB_WORK/e.sh" <<NS
echo started >"$LAB_WORK/e.started"
n=0; while [ ! -e "$LAB_WORK/e.go" ] && [ \$n -lt 200 ]; do sleep 0.1; n=\$((n + 1)); done
dig +short +time=2 +tries=2 @127.0.0.1 $DNS_NAME A
NS
dump_file "$LAB_WORK/e.pasta.log"
timeout -k 2 40 "${PASTA[@]}" --config-net -l "$LAB_WORK/e.pasta.log" -t none -u none -T none -U 53 \
	-- sh "$LAB_WORK/e.sh" >"$LAB_WORK/e.out" 2>&1 &
ET=$!
wait_until 10 test -e "$LAB_WORK/e.started" || fail "E: the spawned command never started"
EPID=$(pgrep -P "$ET" -x pasta) || fail "E: no pasta child of timeout ($ET)"
tasks=(/proc/$EPID/task/*)
((${#tasks[@]} == 2)) || fail "E: ${#tasks[@]} tasks, expected 2"
for t in "${tasks[@]}"; do
	want=0000000000000000
	[[ ${t##*/} == "$EPID" ]] && want=0000000000000400
	for f in CapEff CapPrm; do
		expect_eq "E: task ${t##*/} $f" "$(awk -v k="$f:" '$1 == k { print $2 }' "$t/status")" "$want"
	done
	for f in CapInh CapBnd CapAmb; do
		expect_eq "E: task ${t##*/} $f" "$(awk -v k="$f:" '$1 == k { print $2 }' "$t/status")" 0000000000000000
	done
	expect_eq "E: task ${t##*/} Seccomp" "$(awk '$1 == "Seccomp:" { print $2 }' "$t/status")" 2
done
touch "$LAB_WORK/e.go"
wait "$ET"; rc=$?
sed 's/^/    e| /' "$LAB_WORK/e.out"
expect_eq "E: exit status" "$rc" 0
expect_eq "E: DNS through -U 53 from the namespace" "$(cat "$LAB_WORK/e.out")" "$DECOY_A"

# ---- D. forbidden syscalls in the live daemon (debug build) -------------------
[[ -x $PASTA_DEBUG_BIN ]] ||
	fail "D: no debug build at $PASTA_DEBUG_BIN (cargo build -p passt-user, or set PASTA_DEBUG_BIN)"
[[ -n $NR_EXECVE ]] || fail "D: execve's number on $(uname -m) unknown to this case"
for where in main netns; do
	dump_file "$LAB_WORK/d-$where.log"
	PASST_RS_FORBIDDEN_SYSCALL=$where timeout -k 2 30 unshare --user --map-root-user "$PASTA_DEBUG_BIN" \
		--config-net -l "$LAB_WORK/d-$where.log" -- sh -c "echo ran >'$LAB_WORK/d-$where.ran'" \
		>"$LAB_WORK/d-$where.out" 2>&1
	rc=$?
	sed "s/^/    d-$where| /" "$LAB_WORK/d-$where.out"
	expect_eq "D: pasta exit status after execve() on the $where thread" "$rc" 159
	grep -q "seccomp: forbidden syscall $NR_EXECVE\$" "$LAB_WORK/d-$where.log" ||
		fail "D: no 'seccomp: forbidden syscall $NR_EXECVE' in d-$where.log"
	[[ ! -e $LAB_WORK/d-$where.ran ]] || fail "D: the command ran although pasta died in start-up"
	ok "D: pasta ($where thread): execve refused by seccomp, logged"
done
dump_file "$LAB_WORK/d-passt.log"
PASST_RS_FORBIDDEN_SYSCALL=main timeout -k 2 30 "${PASTA_DEBUG_BIN%/pasta}/passt" -f -s "$LAB_WORK/d.sock" \
	-l "$LAB_WORK/d-passt.log" >"$LAB_WORK/d-passt.out" 2>&1
rc=$?
expect_eq "D: passt exit status after execve()" "$rc" 159
grep -q "seccomp: forbidden syscall $NR_EXECVE\$" "$LAB_WORK/d-passt.log" ||
	fail "D: no 'seccomp: forbidden syscall $NR_EXECVE' in d-passt.log"
ok "D: passt: execve refused by seccomp, logged"
