# 07-daemon: pasta attaching to existing namespaces and going to background,
# as Podman uses it, and its life cycle.
#
# The whole case runs as root of one user namespace (unshare --user
# --map-root-user --mount): the target namespaces are created from it, so
# pasta, running there too, owns them, like Podman's rootless pasta.
#
# A. PID form:  target = `unshare --user --net --map-root-user sleep` (its own
#    user namespace, a child of pasta's); pasta --config-net -P FILE PID must
#    return 0 only once FILE holds the live daemon's PID and the tap in the
#    target already has the host's address; killing the target -> pasta exits
#    within 5 s.
# B. --netns PATH (Podman's option set): a bind-mounted netns file; after lazy
#    umount + rm of the file, pasta exits within 5 s.
# C. --no-netns-quit: the same removal leaves pasta running (checked 3 s).
#    SIGTERM -> it is gone within 5 s.
# D. SIGTERM to a foreground pasta (-f --netns PATH) -> exit status 0 within 5 s.

if [[ -z ${DAEMON_IN_USERNS:-} ]]; then
	DAEMON_IN_USERNS=1 exec timeout -k 2 100 unshare --user --map-root-user --mount \
		bash -c 'set -uo pipefail; source "$LAB_DIR/lab.sh"; source "$LAB_CASE_FILE"'
fi

# has_addr NETNS-ENTER-ARGS...: the tap in that namespace holds $H4/$PLEN4
tap_addrs() { timeout 5 nsenter "$@" ip -o addr show dev $LAB_IF 2>&1; }
has_addr() { tap_addrs "$@" | grep -q " inet $H4/$PLEN4 "; }

# pasta_gone PID SECONDS: PID ends within SECONDS (polled every 0.1 s)
pasta_gone() { wait_until "$2" eval "! alive $1"; }

daemon_pid() {  # pidfile: DPID = the pid it holds; fail unless it is a live process
	local f=$1
	[[ -s $f ]] || fail "pid file $f missing or empty right after pasta returned"
	DPID=$(tr -d ' \n' <"$f")
	[[ $DPID =~ ^[0-9]+$ ]] || fail "pid file $f holds '$DPID', not a PID"
	alive "$DPID" || fail "pid file $f holds $DPID, which is not a live process"
}

# ---- A. PID form -------------------------------------------------------------
unshare --user --net --map-root-user sleep 120 &
SPID=$!
target_ready() {
	[[ $(readlink /proc/$SPID/ns/net) != "$(readlink /proc/self/ns/net)" &&
		$(cat /proc/$SPID/comm 2>/dev/null) == sleep ]]
}
wait_until 5 target_ready || fail "target namespace (pid $SPID) did not come up"
dump_file "$LAB_WORK/pid.pasta.log"
log "A: pasta --config-net -P pid.pid $SPID"
timeout 20 "$PASTA_BIN" --config-net -l "$LAB_WORK/pid.pasta.log" -P "$LAB_WORK/pid.pid" "$SPID" \
	>"$LAB_WORK/pid.out" 2>&1
rc=$?
# snapshot at the moment pasta returned
snap=$(tap_addrs -t "$SPID" -n)
sed 's/^/    pasta| /' "$LAB_WORK/pid.out"
((rc == 0)) || fail "pasta PID form exited with status $rc"
daemon_pid "$LAB_WORK/pid.pid"
PPID_A=$DPID
ok "A: pasta returned 0, pid file holds live pid $PPID_A"
[[ $snap == *" inet $H4/$PLEN4 "* ]] || fail "A: tap in target lacks $H4/$PLEN4 when pasta returned: $snap"
ok "A: tap in the target had $H4/$PLEN4 when pasta returned"
kill "$SPID"; wait "$SPID" 2>/dev/null
pasta_gone "$PPID_A" 5 || fail "A: pasta ($PPID_A) still running 5 s after its target process exited"
ok "A: pasta exited after the target process was killed"

# ---- B. --netns PATH, Podman's options ---------------------------------------
mkdir -p "$LAB_WORK/ns"
mount -t tmpfs -o mode=755 netns "$LAB_WORK/ns" || fail "cannot mount tmpfs for netns files"
mkns() {
	touch "$LAB_WORK/ns/$1" && unshare --net="$LAB_WORK/ns/$1" true ||
		fail "cannot create bound netns $LAB_WORK/ns/$1"
}
rmns() {  # as Podman does: lazy unmount, then unlink
	umount -l "$LAB_WORK/ns/$1" && rm -f "$LAB_WORK/ns/$1" || fail "cannot remove $LAB_WORK/ns/$1"
}

mkns b
dump_file "$LAB_WORK/netns.pasta.log"
log "B: pasta --config-net --pid F --dns-forward 169.254.1.1 -t none -u none -T none -U none --no-map-gw --quiet --netns ns/b"
timeout 20 "$PASTA_BIN" --config-net -l "$LAB_WORK/netns.pasta.log" --pid "$LAB_WORK/netns.pid" \
	--dns-forward 169.254.1.1 -t none -u none -T none -U none --no-map-gw --quiet \
	--netns "$LAB_WORK/ns/b" >"$LAB_WORK/netns.out" 2>&1
rc=$?
snap=$(tap_addrs --net="$LAB_WORK/ns/b")
sed 's/^/    pasta| /' "$LAB_WORK/netns.out"
((rc == 0)) || fail "B: pasta --netns exited with status $rc"
daemon_pid "$LAB_WORK/netns.pid"
PPID_B=$DPID
[[ $snap == *" inet $H4/$PLEN4 "* ]] || fail "B: tap in ns/b lacks $H4/$PLEN4 when pasta returned: $snap"
ok "B: pasta returned 0 with live pid $PPID_B and the tap configured"
rmns b
pasta_gone "$PPID_B" 5 || fail "B: pasta ($PPID_B) still running 5 s after its netns file was removed"
ok "B: pasta exited after umount+rm of its netns file"

# ---- C. --no-netns-quit ------------------------------------------------------
mkns c
dump_file "$LAB_WORK/noquit.pasta.log"
timeout 20 "$PASTA_BIN" --config-net --no-netns-quit -l "$LAB_WORK/noquit.pasta.log" \
	-P "$LAB_WORK/noquit.pid" --netns "$LAB_WORK/ns/c" >"$LAB_WORK/noquit.out" 2>&1
rc=$?
sed 's/^/    pasta| /' "$LAB_WORK/noquit.out"
((rc == 0)) || fail "C: pasta --no-netns-quit exited with status $rc"
daemon_pid "$LAB_WORK/noquit.pid"
PPID_C=$DPID
rmns c
sleep 3
alive "$PPID_C" || fail "C: pasta --no-netns-quit ($PPID_C) exited after its netns file was removed"
ok "C: pasta --no-netns-quit still running 3 s after the netns file was removed"
kill -TERM "$PPID_C"
pasta_gone "$PPID_C" 5 || fail "C: pasta ($PPID_C) still running 5 s after SIGTERM"
ok "C: SIGTERM ended pasta"

# ---- D. SIGTERM to a foreground pasta: exit status 0 ---------------------------
mkns d
dump_file "$LAB_WORK/fg.pasta.log"
timeout 30 "$PASTA_BIN" -f --config-net -l "$LAB_WORK/fg.pasta.log" --netns "$LAB_WORK/ns/d" \
	>"$LAB_WORK/fg.out" 2>&1 &
FG=$!
# FG is `timeout`: it forwards SIGTERM to pasta and exits with pasta's status
wait_until 10 has_addr --net="$LAB_WORK/ns/d" || fail "D: foreground pasta never configured the tap"
kill -TERM "$FG"
pasta_gone "$FG" 5 || fail "D: foreground pasta still running 5 s after SIGTERM"
wait "$FG"; rc=$?
sed 's/^/    pasta| /' "$LAB_WORK/fg.out"
expect_eq "D: exit status of pasta -f after SIGTERM" "$rc" 0
