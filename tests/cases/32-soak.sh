# 32-soak: a bounded soak of mixed traffic through pasta; its memory stays flat
# and its descriptors come back (see passt-user/src/limits.rs).
#
# lab-timeout: 600 + SOAK_SECS
#
#   pasta --config-net -P PIDFILE -t 10801 -T none -U none, then
#   tests/cases/32-soak.py for SOAK_SECS seconds (default 300): TCP connection
#   churn, 8 MiB bulk echo, spliced TCP from host loopback, inbound TCP from
#   upstream through the tap, UDP echo (IPv4 and IPv6) and ping, every echo
#   byte-exact; pasta's VmRSS and descriptors sampled every 5 s.
# Pass: after the warm-up (the first fifth), VmRSS never more than
#   SOAK_RSS_TOL_KIB (default 4096) above its value at the end of the warm-up:
#   every buffer and the flow table are allocated at start-up and slots are
#   reused last-freed-first, so what may still move is the allocator's and the
#   kernel's page accounting (a few hundred KiB), while a leak of one small
#   allocation per flow (tens of thousands of flows in 5 minutes) or per packet
#   goes past it. When traffic stops, pasta's sockets come back to their count
#   before the traffic and its pipes to at most that plus 128 (the splice
#   path's pool of 64 empty pipes) within 200 s (UDP flows idle out after
#   180 s). Then pasta exits normally when its command ends.
# run.sh sets LAB_TIMEOUT from the "lab-timeout:" line above unless given.

need_tools nsenter
S=("$PYTHON" "${LAB_CASE_FILE%.sh}.py")
[[ -f ${S[1]} ]] || fail "helper ${S[1]} missing"
SOAK_SECS=${SOAK_SECS:-300}
[[ $SOAK_SECS =~ ^[0-9]+$ ]] && ((SOAK_SECS >= 10)) || fail "SOAK_SECS=$SOAK_SECS: want a number of seconds >= 10"
log "soak: $SOAK_SECS s of traffic (SOAK_SECS), RSS tolerance ${SOAK_RSS_TOL_KIB:-4096} KiB"

PASTA_BG_SECS=$((SOAK_SECS + 400)) pasta_bg soak --config-net -d -P "$LAB_WORK/soak.pid" -t 10801 -T none -U none
wait_until 5 test -s "$LAB_WORK/soak.pid" || fail "no pid file"
pid=$(tr -d ' \n' <"$LAB_WORK/soak.pid")
dump_file "$LAB_WORK/soak.py.out"
timeout $((SOAK_SECS + 260)) "${S[@]}" --ns-pid "$NS_PID" --pasta-pid "$pid" --fwd-tcp 10801 \
	--secs "$SOAK_SECS" --rss-tol-kib "${SOAK_RSS_TOL_KIB:-4096}" >"$LAB_WORK/soak.py.out" 2>&1
rc=$?
grep -v '^sample ' "$LAB_WORK/soak.py.out" | sed 's/^/    soak.py| /'
log "samples (t rss_kib sockets pipes): $(awk '$1 == "sample" { printf "%s:%s/%s/%s ", $2, $3, $4, $5 }' "$LAB_WORK/soak.py.out")"
alive "$pid" || fail "pasta died during the soak"
pasta_bg_stop || fail "pasta did not exit after its command ended"
((rc == 0)) || fail "soak: $(grep -c '^FAIL' "$LAB_WORK/soak.py.out") check(s) failed (status $rc)"
ok "soak: $SOAK_SECS s of mixed traffic, RSS flat, descriptors back"
