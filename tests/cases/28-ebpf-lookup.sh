# 28-ebpf-lookup: port forwarding by socket lookup (pasta --ebpf: an sk_lookup
# program hands connections and datagrams for forwarded ports to one socket per
# rule, instead of one bound socket per port). Servers and clients:
# tests/cases/28-ebpf-lookup.py.
#
# A host application holds TCP port HELD_T and UDP port HELD_U (and the lab's
# own UDP echo :7 and dnsmasq :53 are there); the namespace has servers on 1000
# random TCP ports and 100 random UDP ports (1024-20000), and on HELD_T/HELD_U
# too, each answering "ns PORT".
#
# Run A: pasta as real root (it loads the programs itself), --ebpf
#   -t all -u all -T ~1-20099,~20200-65535 -U (the same):
#   - the log says the programs are loaded and that the rules (-t all and
#     -u all are two rules each, ports below and above the ephemeral range)
#     go through 4 sockets, one per protocol and direction;
#   - every one of the 1000 TCP ports answers "ns PORT" from the host's
#     127.0.0.1 (spliced), 100 of them from ::1 and from the host's address
#     192.0.2.2 (through the tap), every UDP port from 127.0.0.1, 20 from
#     ::1;
#   - HELD_T, HELD_U and the lab's UDP echo on :7 still reach the host's
#     applications, not the namespace;
#   - a host application that binds port LATE (TCP and UDP) while pasta
#     runs gets it within 5 s (at the next scan: the race window is about a
#     second);
#   - -T/-U: from the namespace's loopback, port 20150 (TCP and UDP) reaches
#     a host loopback server;
#   - before any traffic, pasta holds fewer than 10 sockets (/proc/PID/fd),
#     and at most 2 of the host's listening TCP / bound UDP sockets are its
#     (ss -p), as in the namespace (also after the probes);
#   - at exit, the summary names the 6 rules served by socket lookup.
# Run C: the same with --ebpf -t auto -u auto (and the default -T auto
#   -U auto): 4 sockets for socket lookup, at most 2 on the host; the
#   namespace's servers, started after pasta, become reachable (100 TCP, 20
#   UDP ports) within 10 s; the log says the TCP rule takes their 1000
#   ports (not HELD_T, held on the host), and 0 once they stop.
# Run D: run A's options for pasta as root of a user namespace, with
#   --ebpf-helper: a passt-ebpf-helper started as root loads and attaches
#   the programs (this pasta is root outside its user namespace, so the
#   helper lets it steer the host's ports too): 4 sockets, fewer than 10
#   held; 100 TCP and 20 UDP ports, held ports and -T/-U as in run A.
# Run B: --ebpf as root of a user namespace (the lab's usual PASTA): eBPF
#   can't be loaded, the log says why, and the rules get one socket per port
#   as without --ebpf. One socket per port for -t all -u all would be about
#   75000 descriptors, over the hard limit of CI containers (20000), so the
#   rules are -t ~10001-65535 -u ~5001-65535 (best effort too: TCP 1-10000,
#   UDP 1-5000) and -T/-U as in run A: more than 1000 sockets; 100 TCP ports
#   (spliced), the UDP ports below 5001 and HELD_T/HELD_U behave as in run A.
# Run E (if capsh is there): run B's options for pasta as real root without
#   CAP_BPF, CAP_SYS_ADMIN, CAP_PERFMON and CAP_NET_ADMIN (capsh --drop):
#   the same fallback.
# Sockets and fds held by pasta in both runs, and the TCP connection rate of
# the probe, are logged (for the README's numbers).

need_tools ss
L=("$PYTHON" "${LAB_CASE_FILE%.sh}.py")
HELD_T=4001 HELD_U=4002 NS_T=20150 LATE=4003
W=$LAB_WORK
"${L[@]}" ports 28 1000 1024 20000 $HELD_T $HELD_U $LATE 53 $NS_T >"$W/tcp.ports" || fail "ports"
"${L[@]}" ports 29 100 1024 20000 $HELD_T $HELD_U $LATE 53 $NS_T >"$W/udp.ports" || fail "ports"
head -n 100 "$W/tcp.ports" >"$W/tcp100.ports"
head -n 20 "$W/udp.ports" >"$W/udp20.ports"
{ cat "$W/tcp.ports"; echo $HELD_T; } >"$W/ns-tcp.ports"
{ cat "$W/udp.ports"; echo $HELD_U; } >"$W/ns-udp.ports"
echo $HELD_T >"$W/held-tcp.ports"
echo $HELD_U >"$W/held-udp.ports"
echo $NS_T >"$W/nst.ports"
: >"$W/none.ports"

lab_bg held timeout 200 "${L[@]}" serve host "$W/held-tcp.ports" "$W/held-udp.ports" "$W/held.ready"
lab_bg hostlo timeout 200 "${L[@]}" serve hostlo "$W/nst.ports" "$W/nst.ports" "$W/hostlo.ready"
wait_until 10 test -e "$W/held.ready" -a -e "$W/hostlo.ready" || fail "host servers not ready"

# sockets NAME PID: log pasta's socket fds and its host-side listening/bound
# sockets; sets SOCK_FDS, ALL_FDS, HOST_SS, NS_SS.
sockets() {
	SOCK_FDS=$(ls -l "/proc/$2/fd" 2>/dev/null | grep -c 'socket:')
	ALL_FDS=$(ls "/proc/$2/fd" 2>/dev/null | wc -l)
	HOST_SS=$(timeout 10 ss -Htulnp 2>/dev/null | grep -c "pid=$2,")
	NS_SS=$(timeout 10 "${NS[@]}" ss -Htulnp 2>/dev/null | grep -c "pid=$2,")
	log "$1: pasta holds $SOCK_FDS sockets, $ALL_FDS fds; listening/bound: $HOST_SS on the host, $NS_SS in the namespace"
}

# ns_serve: the namespace's servers, ready.
ns_serve() {
	rm -f "$W/ns.ready"
	"${NS[@]}" timeout 200 "${L[@]}" serve ns "$W/ns-tcp.ports" "$W/ns-udp.ports" "$W/ns.ready" >"$W/ns-serve.log" 2>&1 &
	NS_SERVE=$!
	wait_until 20 test -e "$W/ns.ready" || fail "namespace servers not ready: $(cat "$W/ns-serve.log")"
}

# probe NAME ADDR TCPFILE UDPFILE: the client on the host; prints its result line.
probe() {
	timeout 120 "${L[@]}" probe "$2" "$3" "$4" >"$W/probe-$1.log" 2>&1
	dump_file "$W/probe-$1.log"
	log "probe $1: $(tail -n 1 "$W/probe-$1.log")" >&2
	tail -n 1 "$W/probe-$1.log"
}

ALL='~1-20099,~20200-65535'
OPTS=(--debug --config-net -t all -u all -T "$ALL" -U "$ALL")
# One socket per port for -t all -u all is about 75000 descriptors, more than
# the hard limit here (20000 in CI containers): run B's rules are best-effort
# ones that fit.
OPTS_B=(--debug --config-net -t '~10001-65535' -u '~5001-65535' -T "$ALL" -U "$ALL")
awk '$1 <= 10000' "$W/tcp.ports" | head -n 100 >"$W/tcpb.ports"
awk '$1 <= 5000' "$W/udp.ports" >"$W/udpb.ports"

# ---- run A: real root, eBPF --------------------------------------------------
PASTA=("$PASTA_BIN")
pasta_bg lka --ebpf -P "$W/lka.pid" "${OPTS[@]}"
wait_until 10 test -s "$W/lka.pid" || fail "no PID file"
PID=$(<"$W/lka.pid")
grep -q 'eBPF programs loaded' "$W/lka.pasta.log" || fail "eBPF not loaded: $(grep -i ebpf "$W/lka.pasta.log")"
n=$(grep -c 'eBPF socket lookup: .* through one socket (port [0-9]*)' "$W/lka.pasta.log")
expect_eq "sockets for socket lookup (TCP, UDP, both ways)" "$n" 4
sockets "run A (--ebpf, socket lookup), idle" "$PID"
((SOCK_FDS < 10)) || fail "pasta holds $SOCK_FDS sockets with socket lookup: $(ls -l /proc/$PID/fd)"
((HOST_SS <= 2 && NS_SS <= 2)) || fail "pasta's listening sockets: $HOST_SS on the host, $NS_SS in the namespace"
ok "fewer than 10 sockets for -t all -u all -T -U"
A_FDS=$SOCK_FDS A_ALL=$ALL_FDS
ns_serve
expect_eq "1000 TCP ports from 127.0.0.1" "$(probe a-tcp4 127.0.0.1 "$W/tcp.ports" "$W/none.ports")" \
	"result tcp=1000/1000 udp=0/0 tags=ns tcp_per_s=$(sed -n 's/.*tcp_per_s=//p' "$W/probe-a-tcp4.log")"
expect_match "100 TCP ports from ::1" "$(probe a-tcp6 ::1 "$W/tcp100.ports" "$W/none.ports")" '^result tcp=100/100 udp=0/0 tags=ns '
expect_match "100 TCP ports via the tap" "$(probe a-tap $H4 "$W/tcp100.ports" "$W/none.ports")" '^result tcp=100/100 udp=0/0 tags=ns '
expect_match "100 UDP ports from 127.0.0.1" "$(probe a-udp 127.0.0.1 "$W/none.ports" "$W/udp.ports")" '^result tcp=0/0 udp=100/100 tags=ns '
expect_match "20 UDP ports from ::1" "$(probe a-udp6 ::1 "$W/none.ports" "$W/udp20.ports")" '^result tcp=0/0 udp=20/20 tags=ns '
expect_match "held ports stay with the host's application" \
	"$(probe a-held 127.0.0.1 "$W/held-tcp.ports" "$W/held-udp.ports")" '^result tcp=1/1 udp=1/1 tags=host '
got=$(echo x | timeout 5 socat -T 2 - UDP4:127.0.0.1:$ECHO_PORT 2>&1)
expect_eq "the lab's UDP echo on :7" "$got" "lo:x"
# A host application that starts listening on a steered port gets it at the
# next scan (the race window: about a second).
echo $LATE >"$W/late.ports"
t0=${EPOCHREALTIME/./}
lab_bg late timeout 100 "${L[@]}" serve late "$W/late.ports" "$W/late.ports" "$W/late.ready"
wait_until 5 test -e "$W/late.ready" || fail "late server not ready"
wait_until 5 eval '[[ $(timeout 10 "${L[@]}" probe 127.0.0.1 "$W/late.ports" "$W/late.ports" | tail -n 1) == "result tcp=1/1 udp=1/1 tags=late "* ]]' ||
	fail "port $LATE not given up to the host application that bound it"
ok "a host application binding port $LATE got it within $(((${EPOCHREALTIME/./} - t0) / 1000)) ms"
sockets "run A after the probes (UDP flows keep their sockets for 180 s)" "$PID"
((HOST_SS <= 2 && NS_SS <= 2)) || fail "pasta's listening sockets: $HOST_SS on the host, $NS_SS in the namespace"
# -T/-U from the namespace's loopback to the host's
got=$(timeout 20 "${NS[@]}" "${L[@]}" probe 127.0.0.1 "$W/nst.ports" "$W/nst.ports" 2>&1 | tail -n 1)
expect_match "-T/-U to the host's loopback" "$got" '^result tcp=1/1 udp=1/1 tags=hostlo '
kill "$NS_SERVE" 2>/dev/null
pasta_bg_stop || fail "pasta did not exit"
grep -q 'ebpf socket lookup: 6 rules' "$W/lka.pasta.log" ||
	fail "no socket lookup summary: $(grep -i 'socket lookup' "$W/lka.pasta.log" | tail -n 3)"
ok "run A: socket lookup"

# ---- run C: real root, eBPF, -t auto -u auto -------------------------------------
pasta_bg lkc --ebpf -P "$W/lkc.pid" --debug --config-net -t auto -u auto
wait_until 10 test -s "$W/lkc.pid" || fail "no PID file"
PID=$(<"$W/lkc.pid")
n=$(grep -c 'eBPF socket lookup: .* through one socket (port [0-9]*)' "$W/lkc.pasta.log")
# (-T auto -U auto are pasta's default)
expect_eq "sockets for socket lookup (-t auto -u auto, -T auto -U auto)" "$n" 4
ns_serve
# the scan (about once a second) finds the servers
wait_until 10 eval '[[ $(timeout 20 "${L[@]}" probe 127.0.0.1 "$W/tcp100.ports" "$W/udp20.ports" | tail -n 1) == "result tcp=100/100 udp=20/20 tags=ns "* ]]' ||
	fail "auto: servers started after pasta not reachable: $(timeout 20 "${L[@]}" probe 127.0.0.1 "$W/tcp100.ports" "$W/udp20.ports" | tail -n 3)"
ok "auto: 100 TCP and 20 UDP ports of servers started after pasta reachable"
sockets "run C (--ebpf -t auto -u auto)" "$PID"
((HOST_SS <= 2)) || fail "pasta's listening sockets on the host: $HOST_SS"
kill "$NS_SERVE" 2>/dev/null
wait "$NS_SERVE" 2>/dev/null
grep -qE 'eBPF socket lookup: TCP \[\*\] 1-[0-9]+ now takes 1000 ports' "$W/lkc.pasta.log" ||
	fail "auto: not 1000 TCP ports taken: $(grep 'now takes' "$W/lkc.pasta.log" | tail -n 4)"
ok "auto: the namespace's 1000 TCP ports taken (its HELD_T is held on the host)"
# once they are gone, their ports are no longer taken
wait_until 10 grep -qE 'eBPF socket lookup: TCP \[\*\] 1-[0-9]+ now takes 0 ports' "$W/lkc.pasta.log" ||
	fail "auto: ports still taken after the servers stopped: $(grep 'now takes' "$W/lkc.pasta.log" | tail -n 4)"
ok "auto: ports released once the namespace's servers stopped"
pasta_bg_stop || fail "pasta did not exit"

# ---- run D: no privilege, served by the helper ------------------------------------
HELPER=${PASTA_BIN%/*}/passt-ebpf-helper
[[ -x $HELPER ]] || fail "no $HELPER"
lab_bg helper timeout 200 "$HELPER" -s "$W/helper.sock"
wait_until 10 test -S "$W/helper.sock" || fail "helper not listening: $(cat "$W/helper.log")"
PASTA=(unshare --user --map-root-user "$PASTA_BIN")
pasta_bg lkd --ebpf-helper "$W/helper.sock" -P "$W/lkd.pid" "${OPTS[@]}"
wait_until 10 test -s "$W/lkd.pid" || fail "no PID file"
PID=$(<"$W/lkd.pid")
grep -q "eBPF programs via helper at $W/helper.sock" "$W/lkd.pasta.log" ||
	fail "eBPF not loaded by the helper: $(grep -i ebpf "$W/lkd.pasta.log")"
n=$(grep -c 'eBPF socket lookup: .* through one socket (port [0-9]*)' "$W/lkd.pasta.log")
expect_eq "sockets for socket lookup through the helper" "$n" 4
sockets "run D (--ebpf-helper, unprivileged pasta), idle" "$PID"
((SOCK_FDS < 10)) || fail "pasta holds $SOCK_FDS sockets with socket lookup: $(ls -l /proc/$PID/fd)"
ns_serve
expect_match "100 TCP ports from 127.0.0.1" "$(probe d-tcp4 127.0.0.1 "$W/tcp100.ports" "$W/none.ports")" '^result tcp=100/100 udp=0/0 tags=ns '
expect_match "20 UDP ports from 127.0.0.1" "$(probe d-udp 127.0.0.1 "$W/none.ports" "$W/udp20.ports")" '^result tcp=0/0 udp=20/20 tags=ns '
expect_match "held ports stay with the host's application" \
	"$(probe d-held 127.0.0.1 "$W/held-tcp.ports" "$W/held-udp.ports")" '^result tcp=1/1 udp=1/1 tags=host '
got=$(timeout 20 "${NS[@]}" "${L[@]}" probe 127.0.0.1 "$W/nst.ports" "$W/nst.ports" 2>&1 | tail -n 1)
expect_match "-T/-U to the host's loopback" "$got" '^result tcp=1/1 udp=1/1 tags=hostlo '
kill "$NS_SERVE" 2>/dev/null
pasta_bg_stop || fail "pasta did not exit"
ok "run D: socket lookup through the helper"

# ---- run B: no privilege, fallback ----------------------------------------------
PASTA=(unshare --user --map-root-user "$PASTA_BIN")
pasta_bg lkb --ebpf -P "$W/lkb.pid" "${OPTS_B[@]}"
wait_until 10 test -s "$W/lkb.pid" || fail "no PID file"
PID=$(<"$W/lkb.pid")
grep -q 'eBPF off, using splice(): not permitted' "$W/lkb.pasta.log" ||
	fail "no fallback line: $(grep -i ebpf "$W/lkb.pasta.log")"
grep -q 'through one socket' "$W/lkb.pasta.log" && fail "socket lookup without eBPF"
ok "fallback logged: $(grep -o 'eBPF off.*' "$W/lkb.pasta.log" | cut -c1-100)"
ns_serve
nb=$(wc -l <"$W/udpb.ports")
expect_match "100 TCP ports from 127.0.0.1" "$(probe b-tcp4 127.0.0.1 "$W/tcpb.ports" "$W/none.ports")" '^result tcp=100/100 udp=0/0 tags=ns '
expect_match "$nb UDP ports from 127.0.0.1" "$(probe b-udp 127.0.0.1 "$W/none.ports" "$W/udpb.ports")" "^result tcp=0/0 udp=$nb/$nb tags=ns "
expect_match "held ports stay with the host's application" \
	"$(probe b-held 127.0.0.1 "$W/held-tcp.ports" "$W/held-udp.ports")" '^result tcp=1/1 udp=1/1 tags=host '
sockets "run B (fallback, one socket per port), after the probes" "$PID"
((SOCK_FDS > 1000)) || fail "only $SOCK_FDS sockets without socket lookup"
B_FDS=$SOCK_FDS B_ALL=$ALL_FDS
kill "$NS_SERVE" 2>/dev/null
pasta_bg_stop || fail "pasta did not exit"

# ---- run E: root without the capabilities (capsh), fallback -------------------------
if command -v capsh >/dev/null; then
	PASTA=(capsh --drop=cap_bpf,cap_sys_admin,cap_perfmon,cap_net_admin -- -c 'exec "$@"' -- "$PASTA_BIN")
	pasta_bg lke --ebpf -P "$W/lke.pid" "${OPTS_B[@]}"
	wait_until 10 test -s "$W/lke.pid" || fail "no PID file"
	PID=$(<"$W/lke.pid")
	grep -q 'eBPF off, using splice(): not permitted' "$W/lke.pasta.log" ||
		fail "no fallback line: $(grep -i ebpf "$W/lke.pasta.log")"
	grep -q 'through one socket' "$W/lke.pasta.log" && fail "socket lookup without eBPF"
	ns_serve
	expect_match "capsh: 100 TCP ports from 127.0.0.1" "$(probe e-tcp4 127.0.0.1 "$W/tcpb.ports" "$W/none.ports")" '^result tcp=100/100 udp=0/0 tags=ns '
	sockets "run E (capabilities dropped, one socket per port)" "$PID"
	((SOCK_FDS > 1000)) || fail "only $SOCK_FDS sockets without socket lookup"
	kill "$NS_SERVE" 2>/dev/null
	pasta_bg_stop || fail "pasta did not exit"
	ok "run E: capabilities dropped: fallback to one socket per port"
else
	log "skip: run E (no capsh)"
fi
ok "sockets (fds) held by pasta: $A_FDS ($A_ALL) with socket lookup for -t all -u all -T -U, idle; $B_FDS ($B_ALL) without, for 15200 ports, after the probes"
