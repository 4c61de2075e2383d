# 33-logging: log destinations, levels, the bounded log file and --stats.
#
# A. --log-size: pasta --trace --log-size 40960 -l FILE (spawn form) under
#    traffic (ping, 200 TCP connections to the remote echo, UDP), once with
#    FILE in the work directory, once on a tmpfs (no FALLOC_FL_COLLAPSE_RANGE
#    there: the copy-down path). The file's
#    size, sampled every 50 ms while pasta runs, never exceeds 40960 bytes;
#    afterwards it starts with the header line "pasta VERSION: EXE (PID) -
#    log truncated at SECS.FRAC" (so it was cut), every other line is a whole
#    entry ("SECS.FRAC: TAG" prefix) or an indented continuation, time stamps
#    never go backwards, there are per-event trace lines, and the newest
#    entries, the ones logged at exit, are there.
# B. Levels, passt -f -l FILE with one guest (ARP) each time:
#    default: info lines in the file and on stderr (foreground), no debug;
#    -q: no info line anywhere; -d: debug lines, no trace; --trace: per-event
#    lines ("epoll event on").
# C. syslog: in a mount namespace of its own, /dev is a tmpfs holding bind
#    mounts of the few nodes needed and a /dev/log datagram socket of ours
#    (the machine's /dev is never touched). passt daemonized without -l sends
#    "<30> passt: MESSAGE" datagrams (daemon.info), including "accepted
#    connection from PID <guest>" logged after daemonizing; with -d nothing
#    goes to syslog (passt(1): "don't log to the system logger").
# D. --stats 1: passt -f --stats 1: idle for 2.5 s -> no statistics on stderr;
#    a guest connects -> the table header (naming "connected qemu socket")
#    and a row of counters; idle again for 2.5 s -> no new row. --stats
#    without -f is refused.

need_tools ss socat stat
[[ -x $PASST_BIN ]] || { log "no executable passt at $PASST_BIN (set PASST_BIN)"; exit 3; }
GUEST=("$PYTHON" "$(dirname "$LAB_CASE_FILE")/25-passt-stream.py")
[[ -f ${GUEST[1]} ]] || fail "guest helper ${GUEST[1]} missing"
W=$LAB_WORK
ECHO_TCP=10033
ours=0
pasta_is_ours && passt_is_ours && ours=1

# guest_arp SOCK NAME: one guest connection with an ARP exchange; prints the
# guest's pid
guest_arp() {
	timeout 20 "${GUEST[@]}" arp "$1" >"$W/guest-$2.out" 2>&1 || {
		sed "s/^/    guest-$2| /" "$W/guest-$2.out"
		fail "$2: guest ARP exchange with passt failed"
	}
	sed -n 's/^pid=//p' "$W/guest-$2.out" | head -n 1
}

# ---- A. --log-size under --trace traffic ---------------------------------------
lab_tcp_server echo up serve-echo $ECHO_TCP --bind $R4 --bind "$R6"
SIZE=40960
# rotation NAME FILE: pasta -l FILE --trace --log-size $SIZE under traffic
rotation() {
	local name=$1 L=$2 sampler rc max size bad back n fs
	fs=$(stat -f -c %T "$(dirname "$L")")
	(
		max=0
		for ((i = 0; i < 1800; i++)); do
			s=$(stat -c %s "$L" 2>/dev/null) || s=0
			((s > max)) && { max=$s; echo "$max" >"$W/$name.max"; }
			[[ -e $W/$name.done ]] && break
			sleep 0.05
		done
	) &
	sampler=$!
	dump_file "$L"
	# the last -l wins (passt(1)), over pasta_spawn's own
	pasta_spawn "$name" 90 -l "$L" --config-net --trace --log-size $SIZE -t none -u none -T none -U none <<EOF
ping -c 3 -i 0.2 -W 2 $R4 >/dev/null && echo ping=ok
"$PYTHON" "$LAB_DIR/tcplab.py" client-many --addr $R4 --port $ECHO_TCP --count 100 --timeout 20
"$PYTHON" "$LAB_DIR/tcplab.py" client-many --addr $R6 --port $ECHO_TCP --count 100 --timeout 20
for i in 1 2 3 4 5; do echo tok\$i | timeout 3 socat -T 2 - UDP:$R4:$ECHO_PORT; done
EOF
	rc=$?
	touch "$W/$name.done"
	wait $sampler
	((rc == 0)) || fail "A ($name): pasta (or the traffic in its namespace) exited with status $rc"
	grep -q "^ping=ok" "$W/$name.out" || fail "A ($name): ping in the namespace failed"
	[[ $(grep -c "^result connected=100 echoed=100 failed=0" "$W/$name.out") == 2 ]] ||
		fail "A ($name): TCP echo connections failed"
	grep -q "remote:tok5" "$W/$name.out" || fail "A ($name): UDP echo failed"
	max=$(<"$W/$name.max") size=$(stat -c %s "$L")
	((max <= SIZE && size <= SIZE)) || fail "A ($name): log file reached $max bytes (now $size), --log-size $SIZE"
	ok "A ($name, on $fs): log file at most $max bytes while pasta ran (now $size), --log-size $SIZE"
	head -n 1 "$L" | grep -Eq "^pasta [^ ]+: /[^ ]+ \([0-9]+\) - log truncated at [0-9]+\.[0-9]{4} *$" ||
		fail "A ($name): first line is not the header with 'log truncated at': '$(head -n 1 "$L")'"
	ok "A ($name): the log was cut; first line: $(head -n 1 "$L" | sed 's/ *$//')"
	bad=$(tail -n +2 "$L" | grep -Evn '^([0-9]+\.[0-9]{4}: (info:    |WARNING: |ERROR:   |         )|    |$)' | head -n 3)
	[[ -z $bad ]] || fail "A ($name): lines that are neither whole entries nor continuations: $bad"
	back=$(tail -n +2 "$L" | awk -F: '/^[0-9]+\.[0-9]{4}: / { if ($1 + 0 < last) { print NR ": " $0; exit } last = $1 + 0 }')
	[[ -z $back ]] || fail "A ($name): time stamps go backwards at line $back"
	ok "A ($name): every line is a whole entry or continuation, time stamps in order"
	n=$(grep -c "epoll event on" "$L")
	((n > 10)) || fail "A ($name): only $n 'epoll event on' trace lines"
	ok "A ($name): $n per-event trace lines kept"
	if ((ours)); then
		tail -n 5 "$L" | grep -q "counters:" || fail "A ($name): the counters line logged at exit is not among the last lines"
		ok "A ($name): the newest entry (counters at exit) is at the end: $(grep "counters:" "$L" | tail -n 1 | cut -c1-60)..."
	fi
}
rotation rot "$W/rot.pasta.log"
# tmpfs has no FALLOC_FL_COLLAPSE_RANGE: the copy-down path
mkdir -p "$W/tmpfs" && mount -t tmpfs -o size=8m,mode=1777 lab-logs "$W/tmpfs" || fail "A: can't mount a tmpfs"
rotation rot-tmpfs "$W/tmpfs/rot.log"

# ---- B. levels ------------------------------------------------------------------
# level NAME OPTIONS...: passt -f -l NAME.log OPTIONS, one guest, SIGTERM
level() {
	local name=$1 pid gpid; shift
	dump_file "$W/$name.log" "$W/$name.err"
	log "B: passt -f -l $name.log -s $name.sock $*"
	timeout -k 2 60 "$PASST_BIN" -f -l "$W/$name.log" -s "$W/$name.sock" "$@" >"$W/$name.err" 2>&1 &
	pid=$!
	wait_until 5 test -S "$W/$name.sock" || fail "B: $name: no socket"
	gpid=$(guest_arp "$W/$name.sock" "$name")
	if [[ $name != quiet ]]; then
		wait_until 5 grep -q "accepted connection from PID $gpid" "$W/$name.log" ||
			fail "B: $name: no 'accepted connection from PID $gpid'"
	fi
	# a timer tick after the guest's frames: -d logs the changed counters
	sleep 1.2
	kill -TERM $pid
	wait_until 5 eval "! alive $pid" || fail "B: $name: passt still running 5 s after SIGTERM"
	wait $pid
}
is_debug='^[0-9]+\.[0-9]{4}:          '
level default
grep -q "info:    UNIX domain socket bound at $W/default.sock" "$W/default.log" || fail "B: default: no info line in the file"
grep -q "^UNIX domain socket bound at $W/default.sock" "$W/default.err" || fail "B: default: no info line on stderr"
grep -Eq "$is_debug" "$W/default.log" && fail "B: default: debug lines in the file"
ok "B: default: info lines in the file and on stderr, no debug"
level quiet -q
grep -q "info:" "$W/quiet.log" && fail "B: -q: info lines in the file: $(grep -m1 "info:" "$W/quiet.log")"
grep -q "UNIX domain socket\|accepted connection" "$W/quiet.err" && fail "B: -q: info lines on stderr"
[[ $(wc -l <"$W/quiet.log") -ge 1 ]] || fail "B: -q: not even the header line in the file"
ok "B: -q: no info lines in the file ($(wc -l <"$W/quiet.log") lines) or on stderr"
level debug -d
grep -Eq "$is_debug" "$W/debug.log" || fail "B: -d: no debug lines"
grep -q "epoll event on" "$W/debug.log" && fail "B: -d: trace lines without --trace"
ok "B: -d: $(grep -Ec "$is_debug" "$W/debug.log") debug lines, no trace lines"
level trace --trace
n=$(grep -c "epoll event on tap" "$W/trace.log")
((n >= 2)) || fail "B: --trace: $n 'epoll event on tap' lines"
ok "B: --trace: $n per-event lines for the tap, e.g. '$(grep -m1 "epoll event on tap" "$W/trace.log" | cut -c1-70)'"

# ---- C. syslog ------------------------------------------------------------------
cat >"$W/syslog-listen.py" <<'EOF'
import os, socket, sys, time
path, out, stop = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)
s.settimeout(0.1)
print("listening", flush=True)
end = time.time() + 60
with open(out, "ab") as f:
    while time.time() < end and not os.path.exists(stop):
        try:
            d = s.recv(65536)
        except socket.timeout:
            continue
        f.write(repr(d).encode() + b"\n")
        f.flush()
EOF
cat >"$W/syslog.sh" <<'EOF'
set -u
W=$1
mkdir -p /run/lab-olddev && mount --bind /dev /run/lab-olddev || exit 2
mount -t tmpfs -o mode=755 lab-dev /dev || exit 2
for n in null zero urandom random; do
	touch /dev/$n && mount --bind /run/lab-olddev/$n /dev/$n || exit 2
done
timeout 60 "$PYTHON" "$W/syslog-listen.py" /dev/log "$W/syslog.txt" "$W/syslog.stop" >"$W/syslog-listen.out" 2>&1 &
for ((i = 0; i < 50; i++)); do grep -qs listening "$W/syslog-listen.out" && break; sleep 0.1; done
guest() { timeout 20 "$PYTHON" "$2" arp "$1" >"$W/guest-$3.out" 2>&1; }
for run in info debug; do
	opt=(); [[ $run == debug ]] && opt=(-d)
	timeout 10 "$PASST_BIN" "${opt[@]}" -s "$W/sl-$run.sock" -P "$W/sl-$run.pid" >"$W/sl-$run.out" 2>&1
	echo "$run-rc=$?"
	guest "$W/sl-$run.sock" "$GUEST_PY" "sl-$run"
	pid=$(cat "$W/sl-$run.pid")
	sleep 0.5
	kill -TERM "$pid"
	for ((i = 0; i < 50; i++)); do [[ -e /proc/$pid ]] || break; sleep 0.1; done
	echo "$run-pid=$pid"
done
touch "$W/syslog.stop"
wait
EOF
dump_file "$W/syslog.txt" "$W/syslog.run"
GUEST_PY=${GUEST[1]} PASST_BIN=$PASST_BIN timeout 60 unshare --mount bash "$W/syslog.sh" "$W" >"$W/syslog.run" 2>&1
rc=$?
sed 's/^/    syslog| /' "$W/syslog.run"
((rc == 0)) || fail "C: the syslog part failed (status $rc)"
grep -q "^info-rc=0" "$W/syslog.run" || fail "C: passt did not return 0 when going to the background"
[[ -e /dev/log ]] && log "note: the lab's own /dev/log exists, untouched"
gpid=$(sed -n 's/^pid=//p' "$W/guest-sl-info.out" | head -n 1)
[[ -n $gpid ]] || fail "C: the guest printed no pid"
grep -qF "b'<30> passt: accepted connection from PID $gpid\\n'" "$W/syslog.txt" ||
	fail "C: no '<30> passt: accepted connection from PID $gpid' datagram"
grep -qF "b'<30> passt: UNIX domain socket bound at $W/sl-info.sock\\n'" "$W/syslog.txt" ||
	fail "C: no '<30> passt: UNIX domain socket bound at ...' datagram"
bad=$(grep -v "^b'<[0-9]*> passt: " "$W/syslog.txt" | head -n 2)
[[ -z $bad ]] || fail "C: datagrams not in '<PRI> passt: MESSAGE' form: $bad"
ok "C: syslog got $(wc -l <"$W/syslog.txt") '<PRI> passt: MESSAGE' datagrams, with the guest's connection logged after daemonizing"
grep -q "sl-debug.sock" "$W/syslog.txt" && fail "C: passt -d logged to syslog"
grep -q "^debug-rc=0" "$W/syslog.run" || fail "C: passt -d did not go to the background"
ok "C: passt -d sent nothing to syslog"

# ---- D. --stats --------------------------------------------------------------------
out=$(timeout 5 "$PASST_BIN" --stats 1 -s "$W/nofg.sock" 2>&1)
[[ $? != 0 && $out == *"Can't display statistics if not running in foreground"* ]] ||
	fail "D: --stats without -f: '$out'"
ok "D: --stats without -f refused: $out"
dump_file "$W/stats.err"
timeout -k 2 60 "$PASST_BIN" -f -q --stats 1 -s "$W/stats.sock" >"$W/stats.err" 2>&1 &
pid=$!
wait_until 5 test -S "$W/stats.sock" || fail "D: no socket"
sleep 2.5
# Started as real root, passt warns (-q keeps warnings) that it drops to nobody.
idle=$(grep -v '^Started as root, will change to nobody\.$' "$W/stats.err")
[[ -n $idle ]] && fail "D: statistics printed while idle: $(head -n 3 <<<"$idle")"
ok "D: nothing printed during 2.5 s without events"
guest_arp "$W/stats.sock" stats >/dev/null
rows() { grep -Ec '^ ( +[0-9]+)+$' "$W/stats.err"; }
wait_until 3 grep -q "connected qemu socket" "$W/stats.err" || fail "D: no statistics table after a guest came"
wait_until 3 eval '(($(rows) >= 1))' || fail "D: no row of counters"
sleep 1.2
r1=$(rows)
first=$(grep -Em1 '^ ( +[0-9]+)+$' "$W/stats.err")
ok "D: a guest's events printed the header and $r1 row(s), first: '$first'"
sleep 2.5
r2=$(rows)
((r2 == r1)) || fail "D: $((r2 - r1)) rows printed while idle"
ok "D: no new row during 2.5 s without events"
kill -TERM $pid
wait_until 5 eval "! alive $pid" || fail "D: passt still running 5 s after SIGTERM"
