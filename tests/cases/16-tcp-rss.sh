# 16-tcp-rss: pasta's memory stays bounded while the namespace pushes data at a
# peer that never reads (so everything backs up into pasta's path).
#
#   server: tcplab.py serve-sink (accepts, never reads) on the remote host,
#           port 9, IPv4 and IPv6
#   pasta --config-net -P PIDFILE -- sh: tcplab.py client-write sends 64 KiB
#           blocks for 5 s (it blocks once the buffers are full), marking
#           2 s and the end with files, one run per address family
#   meanwhile the case samples pasta's VmRSS (/proc/PID/status, PID from
#   -P) every 0.1 s and at both marks.
# Limits: VmRSS never above RSS_MAX_KIB (64 MiB), and at the end of each run
# at most RSS_GROWTH_KIB (4 MiB) above its value at 2 s.

SINK_PORT=9 RSS_MAX_KIB=$((64 * 1024)) RSS_GROWTH_KIB=$((4 * 1024))
export SINK_PORT
lab_tcp_server sink up serve-sink $SINK_PORT --bind $R4 --bind "$R6"
dump_file "$LAB_WORK/rss.samples"

# rss_sampler: writes "w4 at2 KIB", "w4 atend KIB", ... and "max KIB" lines.
rss_sampler() {
	local pid r max=0 d n at2
	wait_until 10 test -s "$LAB_WORK/rss.pid" || { echo "error: no pid file"; return; }
	pid=$(tr -d ' \n' <"$LAB_WORK/rss.pid")
	echo "pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null)) start $(vm_rss_kib "$pid")"
	for d in 4 6; do
		at2=""
		for ((n = 0; n < 300; n++)); do  # at most 30 s per run
			[[ -e $LAB_WORK/w$d/mark.end ]] && break
			alive "$pid" || { echo "error: pasta ($pid) gone"; return; }
			r=$(vm_rss_kib "$pid")
			((${r:-0} > max)) && max=$r
			if [[ -z $at2 && -e $LAB_WORK/w$d/mark.2 ]]; then at2=$r; echo "w$d at2 $r"; fi
			sleep 0.1
		done
		r=$(vm_rss_kib "$pid")
		((${r:-0} > max)) && max=$r
		echo "w$d atend $r"
		touch "$LAB_WORK/w$d/sampled.end"
	done
	echo "max $max"
}
mkdir -p "$LAB_WORK/w4" "$LAB_WORK/w6"
chmod 1777 "$LAB_WORK/w4" "$LAB_WORK/w6"
rss_sampler >"$LAB_WORK/rss.samples" 2>&1 &
SAMPLER=$!

pasta_spawn rss 60 --config-net -P "$LAB_WORK/rss.pid" <<'NS'
for t in "4 $R4" "6 $R6"; do
	set -- $t
	echo "w$1 $(timeout 25 $PYTHON $LAB_DIR/tcplab.py client-write --addr $2 --port $SINK_PORT \
		--seconds 5 --mark-dir "$LAB_WORK/w$1" 2>&1 | tr '\n' ' ')"
done
exit 0
NS
rc=$?
wait_until 5 eval '! alive $SAMPLER'
sed 's/^/    rss| /' "$LAB_WORK/rss.samples"
((rc == 0)) || fail "pasta exited with status $rc"
grep -q '^error' "$LAB_WORK/rss.samples" && fail "sampler: $(grep '^error' "$LAB_WORK/rss.samples")"

max=$(sed -n 's/^max //p' "$LAB_WORK/rss.samples")
[[ $max =~ ^[0-9]+$ ]] || fail "no VmRSS samples of pasta"
for d in 4 6; do
	w=$(grep "^w$d " "$LAB_WORK/rss.out")
	[[ $w == *"result written="* ]] || fail "IPv$d writer failed: ${w:-no result}"
	written=$(sed -n 's/.*written=\([0-9]*\).*/\1/p' <<<"$w")
	((written > 0)) || fail "IPv$d writer wrote nothing: $w"
	a2=$(sed -n "s/^w$d at2 //p" "$LAB_WORK/rss.samples")
	ae=$(sed -n "s/^w$d atend //p" "$LAB_WORK/rss.samples")
	[[ $a2 =~ ^[0-9]+$ && $ae =~ ^[0-9]+$ ]] || fail "IPv$d: no VmRSS sample at 2 s / at the end: '$a2' '$ae'"
	((ae - a2 <= RSS_GROWTH_KIB)) ||
		fail "IPv$d: pasta's VmRSS grew by $((ae - a2)) KiB between 2 s and 5 s (limit $RSS_GROWTH_KIB KiB): $a2 -> $ae KiB"
	ok "IPv$d: wrote $((written / 1024)) KiB to a peer that never reads (blocked at $(sed -n 's/.*blocked_at=\([^ ]*\).*/\1/p' <<<"$w") s); pasta VmRSS $a2 KiB at 2 s, $ae KiB at 5 s"
done
((max <= RSS_MAX_KIB)) || fail "pasta's VmRSS reached $max KiB (limit $RSS_MAX_KIB KiB)"
ok "pasta's VmRSS peak $max KiB (limit $RSS_MAX_KIB KiB)"
