# 31-limits: a full flow table, and no file descriptors left, refuse one new
# flow cleanly and leave the others alone (passt-rs: --max-flows; see
# passt-user/src/limits.rs). The connections and checks are made by
# tests/cases/31-limits.py (its docstring has the details).
#
# Run A: pasta --config-net --max-flows 6 -t 10601 -u 10602 -T none -U none
#   six connections fill the table: four outbound from the namespace through
#   the tap to an upstream echo server, one inbound from upstream to the
#   forwarded port (through the tap), one from host loopback (spliced). Then,
#   each within 3 s: outbound TCP (IPv4, IPv6) -> ECONNREFUSED (our RST);
#   inbound through the tap and spliced -> reset; UDP from the namespace
#   (IPv4, IPv6) -> EHOSTUNREACH / EACCES (ICMP/ICMPv6 administratively
#   prohibited); ping -> "Packet filtered"; a datagram to the forwarded UDP
#   port is dropped. The six connections then echo 1 MiB each byte-exact; once
#   closed, a new connection works. pasta's exit log ("counters:" line) has
#   drop_flow_table_full >= 7 and unreach_to_tap >= 3.
# Run B: pasta -t 10601 -T none (default table), then `prlimit --pid` lowers its
#   RLIMIT_NOFILE to the descriptors it has open plus 3: outbound connections
#   are opened until one gets ECONNREFUSED (at most 11 tried); one more
#   outbound, one inbound through the tap and one spliced are refused, UDP gets
#   the ICMP error; pasta uses at most 0.3 s of CPU over 3 idle seconds (no busy
#   loop on a listener it can't accept from); the established connections echo
#   1 MiB byte-exact. Exit log: drop_no_fds >= 4.

need_tools nsenter prlimit
S=("$PYTHON" "${LAB_CASE_FILE%.sh}.py")
[[ -f ${S[1]} ]] || fail "helper ${S[1]} missing"
skip_unless_ours "--max-flows (a passt-rs extension)" || exit 0

# counter FILE NAME: value of NAME in the last "counters:" line of FILE (0 if
# not listed, empty if there is no such line).
counter() {
	local cl
	cl=$(grep -E '^([0-9]+\.[0-9]+: +)?([A-Za-z]+: +)?counters:' "$1" | tail -n 1)
	[[ -n $cl ]] || return 0
	sed -n "s/.* $2=\([0-9]*\).*/\1/p" <<<"$cl" | grep . || echo 0
}

# ---- A: the table is full ----
pasta_bg full --config-net -d --max-flows 6 -t 10601 -u 10602 -T none -U none
timeout 90 "${S[@]}" full --ns-pid "$NS_PID" --fwd-tcp 10601 --fwd-udp 10602 --max 6 \
	>"$LAB_WORK/full.py.out" 2>&1
rc=$?
sed 's/^/    full.py| /' "$LAB_WORK/full.py.out"
pasta_bg_stop || fail "pasta did not exit after its command ended"
((rc == 0)) || fail "table full: $(grep -c '^FAIL' "$LAB_WORK/full.py.out") check(s) failed (status $rc)"
ok "table full: one more flow of each kind refused promptly, the others byte-exact"
n=$(counter "$LAB_WORK/full.pasta.log" drop_flow_table_full)
[[ -n $n ]] && ((n >= 7)) || fail "drop_flow_table_full=$n in the exit counters, want >= 7"
u=$(counter "$LAB_WORK/full.pasta.log" unreach_to_tap)
[[ -n $u ]] && ((u >= 3)) || fail "unreach_to_tap=$u in the exit counters, want >= 3"
ok "counters: drop_flow_table_full=$n unreach_to_tap=$u"

# ---- B: out of file descriptors ----
pasta_bg fds --config-net -d -P "$LAB_WORK/fds.pid" -t 10601 -T none -U none
wait_until 5 test -s "$LAB_WORK/fds.pid" || fail "no pid file"
pid=$(tr -d ' \n' <"$LAB_WORK/fds.pid")
nfd=$(ls "/proc/$pid/fd" | wc -l)
lim=$((nfd + 3))
timeout 5 prlimit --pid "$pid" --nofile=$lim:$lim || fail "prlimit --pid $pid failed"
log "pasta ($pid) has $nfd descriptors open; RLIMIT_NOFILE now $lim"
timeout 90 "${S[@]}" fds --ns-pid "$NS_PID" --fwd-tcp 10601 --pasta-pid "$pid" --spare 3 \
	>"$LAB_WORK/fds.py.out" 2>&1
rc=$?
sed 's/^/    fds.py| /' "$LAB_WORK/fds.py.out"
pasta_bg_stop || fail "pasta did not exit after its command ended"
((rc == 0)) || fail "out of descriptors: $(grep -c '^FAIL' "$LAB_WORK/fds.py.out") check(s) failed (status $rc)"
ok "out of descriptors: new flows refused promptly, no busy loop, the others byte-exact"
n=$(counter "$LAB_WORK/fds.pasta.log" drop_no_fds)
[[ -n $n ]] && ((n >= 4)) || fail "drop_no_fds=$n in the exit counters, want >= 4"
ok "counters: drop_no_fds=$n"
