#!/bin/bash
# lab-bench.sh - iperf3 TCP through each forwarder's tap, and pasta's spliced
# loopback path beside plain loopback, inside a private lab.
#
# Started by `cargo xtask bench` (xtask/src/bench.rs) as PID 1 of fresh
#   timeout T unshare --net --mount --pid --fork --kill-child --mount-proc bash lab-bench.sh
# and refuses to run anywhere else: nothing here can reach a real network. The
# only interfaces are lo, the lab veth to a private "upstream" namespace and the
# forwarders' taps in namespaces created below.
#
# Topology (addresses and helpers from tests/lab/lab.sh)
#
#   lab ("host") netns, PID 1 = this script         upstream netns "up"
#   lab0 192.0.2.2/24 2001:db8:2::2/64  <-veth->    lab1 192.0.2.1/24 2001:db8:2::1/64
#   MTU 1500, default routes via upstream           lo 198.51.100.1 2001:db8:100::1
#                                                   iperf3 -s -1 (fresh for each run)
#   forwarder under test (in the lab netns, as root of user namespace U)
#     `-- tap in netns "fw-TOOL" (owned by U): iperf3 -c 198.51.100.1 / 2001:db8:100::1
#
# Per forwarder start: `unshare --user --map-root-user --net sleep` creates U and
# the netns (root of U = root, as `unshare --user --map-root-user` gives Podman's
# pasta), `ip netns attach` names the netns, and the forwarder runs via
# `nsenter --user=U`: root of its own user namespace, in the lab netns, attached
# to a netns U owns. Debian's pasta started as plain root would drop to nobody
# and could not enter the namespace (see /work/shared/research/peers.md).
#   pasta-rs, debian-pasta: pasta --config-net -m MTU -t none -u none -T none
#                           -U none -f -l LOG --netns /run/netns/fw-TOOL
#   slirp4netns:            slirp4netns --configure --mtu=MTU --enable-ipv6
#                           --netns-type=path /run/netns/fw-TOOL tap0
#
# Order: for each round, for each MTU, for each tool (order rotated by one per
# round), start the forwarder, wait for both address families (10 s), run the
# four paths (IPv4/IPv6 x namespace sends / namespace receives = iperf3 -R),
# stop it. The forwarder's CPU time is utime+stime of /proc/PID/stat (all its
# threads, not its reaped children) read right before and after each iperf3
# client, so start-up and idle time are not counted.
#
# Environment (all required):
#   BENCH_OUT     output directory (created): runs.tsv, env.txt, raw/, logs/
#   BENCH_ROUNDS  number of rounds
#   BENCH_SECS    iperf3 -t per run, seconds
#   BENCH_MTUS    tap MTUs, space separated ("65520 1500")
#   BENCH_TOOLS   "ID=PATH ..." with ID one of pasta-rs, debian-pasta, slirp4netns
# and optionally
#   BENCH_PARTS   a subset of "tap p4 splice tap-rr ebpf" (default "tap
#                 splice"): which parts run; the splice part is described and
#                 its splice.tsv documented under "splice path" below, the
#                 ebpf part and its files under "eBPF section", p4 and tap-rr
#                 under "parallel flows" and "tap round trips"
#
# Ceilings, no forwarder: tool "veth" runs the same client in this (lab)
# namespace straight to upstream over the lab veth (MTU 1500), once per round
# (its runs.tsv/p4.tsv lines say MTU 1500); "loopback" (splice part) runs
# client and server over lo of this namespace.
#
# Peak memory: $RSS (rss.tsv), one line per forwarder session, read right
# before it is stopped:  part round tool mtu kib
# kib = VmHWM of /proc/PID/status summed over the forwarder and every
# process below it (its children's children included), KiB.
#
# Output: $BENCH_OUT/runs.tsv, one line per iperf3 run, tab separated:
#   round tool mtu af dir status bytes secs cpu_s note busy
# af = 4|6, dir = send (namespace sends) | recv (namespace receives, -R),
# status = ok|fail, bytes/secs = iperf3 end.sum_received, cpu_s = forwarder
# CPU seconds during the run ("-" if unknown), note = why it failed ("-" if ok),
# busy = the share of the whole machine's CPU time (all CPUs, /proc/stat)
# that was not idle or iowait during the iperf3 client, 0..1 ("-" if
# unknown): 1 means the run was bound by the machine, whoever used it.
# Exit status: 0 after all runs (failed runs included), 2 lab set-up problem,
# 3 not started as PID 1 of a private namespace or bad environment.
set -uo pipefail
export LC_ALL=C
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if (($$ != 1)); then
	echo "lab-bench.sh: must run as PID 1 of unshare --net --mount --pid --fork (use cargo xtask bench)"
	exit 3
fi
for v in BENCH_OUT BENCH_ROUNDS BENCH_SECS BENCH_MTUS BENCH_TOOLS; do
	[[ -n ${!v:-} ]] || { echo "lab-bench.sh: $v is not set"; exit 3; }
done
[[ $BENCH_ROUNDS =~ ^[1-9][0-9]*$ && $BENCH_SECS =~ ^[1-9][0-9]*$ ]] ||
	{ echo "lab-bench.sh: BENCH_ROUNDS and BENCH_SECS must be positive integers"; exit 3; }

# lab.sh wants these for its pasta helpers, which this script does not use
export PASTA_BIN=/bin/false LAB_WORK=$BENCH_OUT
source "$BENCH_DIR/../lab/lab.sh"

PORT=5201
CLK_TCK=$(getconf CLK_TCK)
RUNS=$BENCH_OUT/runs.tsv
SPLICE=$BENCH_OUT/splice.tsv
P4=$BENCH_OUT/p4.tsv
TAPRR=$BENCH_OUT/taprr.tsv
RSS=$BENCH_OUT/rss.tsv
# runs.tsv-format file run_one writes to, the session's part (rss.tsv) and
# iperf3 options added to run_one's client (-P 4)
RUN_FILE=$RUNS RSS_PART=tap IPERF_EXTRA=()
BENCH_PARTS=${BENCH_PARTS:-tap splice}
NSX="nsenter --net=/run/netns"   # $NSX/NAME CMD...: run CMD in netns NAME

# ---- lab --------------------------------------------------------------------
bench_setup() {
	mkdir -p "$BENCH_OUT/raw" "$BENCH_OUT/logs" || return 2
	: >"$RUNS" || return 2
	: >"$SPLICE" || return 2
	: >"$P4" || return 2
	: >"$TAPRR" || return 2
	: >"$RSS" || return 2
	# the eBPF section's files only if it runs (an earlier run's would be
	# read as this one's)
	rm -f "$BENCH_OUT"/ebpf.tsv "$BENCH_OUT"/ebpf-status.tsv "$BENCH_OUT"/ebpf-mem.tsv "$BENCH_OUT"/ebpf-fds.tsv
	# refuse to go on if this namespace has anything but lo: not a fresh netns
	local links
	links=$(ip -o link show | awk -F': ' '{ print $2 }' | tr '\n' ' ')
	[[ $links == "lo " ]] || { echo "lab-bench.sh: unexpected interfaces here: $links"; return 3; }
	mount -t tmpfs -o mode=755 bench-run /run || return 2
	sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
	ip link set lo up
	# connection-rate runs on the host side: room for short connections' TIME_WAIT,
	# but never the bench's own ports as ephemeral ones (a client's TIME_WAIT
	# socket on 5202 made later iperf3 servers fail with "Address already in use")
	sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1 \
		net.ipv4.ip_local_reserved_ports=5201-5204
	ip netns add up || return 2
	$NSX/up sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
	$NSX/up ip link set lo up
	ip link add name $LAB_IF type veth peer name $LAB_PEER_IF netns up || return 2
	ip addr add $H4/$PLEN4 dev $LAB_IF
	ip -6 addr add $H6/$PLEN6 dev $LAB_IF nodad
	$NSX/up ip addr add $GW4/$PLEN4 dev $LAB_PEER_IF
	$NSX/up ip -6 addr add $GW6/$PLEN6 dev $LAB_PEER_IF nodad
	$NSX/up ip addr add $R4/32 dev lo
	$NSX/up ip -6 addr add $R6/128 dev lo nodad
	$NSX/up ip link set $LAB_PEER_IF up
	ip link set $LAB_IF up
	ip route add default via $GW4 dev $LAB_IF || return 2
	ip -6 route add default via $GW6 dev $LAB_IF || return 2
	wait_until 5 ping -c1 -W1 -q $R4 >/dev/null || { echo "lab: $R4 unreachable"; return 2; }
	wait_until 5 ping -6 -c1 -W1 -q $R6 >/dev/null || { echo "lab: $R6 unreachable"; return 2; }
	log "lab up: $LAB_IF $(ip -o link show $LAB_IF | grep -o 'mtu [0-9]*'), upstream $R4 $R6"
}

bench_env() {
	local id bin
	{
		echo "kernel: $(uname -r)"
		echo "cpus: $(nproc)"
		echo "iperf3: $(iperf3 --version 2>&1 | head -n 1)"
		for t in $BENCH_TOOLS; do
			id=${t%%=*} bin=${t#*=}
			echo "$id: $bin: $(timeout 5 "$bin" --version 2>&1 | grep -v -i syslog | head -n 1)"
		done
		echo "rounds: $BENCH_ROUNDS x $BENCH_SECS s; MTUs: $BENCH_MTUS"
	} >"$BENCH_OUT/env.txt"
}

# ---- forwarders -------------------------------------------------------------
FWD_PID="" HOLD_PID=""
# pasta's port options: none for the tap runs; the splice part sets its ports
FWD_PORTS=(-t none -u none -T none -U none)
FWD_PRE=() FWD_EXTRA=() FWD_REAL_ROOT=""

# fwd_start ID BIN MTU: user namespace + netns fw-ID, forwarder attached to it.
# Sets FWD_PID and HOLD_PID. Fails if the forwarder exits or the namespace does
# not get both address families and default routes within 10 s (IPv4 alone is
# accepted with a log line: the IPv6 runs then fail on their own).
fwd_start() {
	local id=$1 bin=$2 mtu=$3 ns=fw-$1 log=$BENCH_OUT/logs/$1-${FWD_TAG:-$3}.log self
	: >"$log"
	: >"$log.out"
	self=$(readlink /proc/self/ns/net)
	# the holder bounds its own life: longer than any round could last
	unshare --user --map-root-user --net sleep $((BENCH_SECS * 8 + 300)) &
	HOLD_PID=$!
	wait_until 5 holder_ready "$self" || { fwd_fail "$id" "holder namespace not created"; return 1; }
	ip netns attach "$ns" $HOLD_PID || { fwd_fail "$id" "ip netns attach failed"; return 1; }
	$NSX/$ns sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
	# connection-rate runs: room for TIME_WAIT sockets of short connections,
	# the bench's own ports excepted
	$NSX/$ns sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1 \
		net.ipv4.ip_local_reserved_ports=5201-5204
	$NSX/$ns ip link set lo up
	# FWD_REAL_ROOT (eBPF section): pasta as root of the initial user
	# namespace, which may load eBPF programs; FWD_PRE: a command prefix
	# (prlimit); FWD_EXTRA: more pasta options (--ebpf ...)
	local userns=(nsenter --user=/proc/$HOLD_PID/ns/user)
	[[ -n ${FWD_REAL_ROOT:-} ]] && userns=()
	case $id in
	pasta-rs | pasta-rs-ebpf | pasta-rs-t2 | debian-pasta)
		local extra=("${FWD_EXTRA[@]}")
		# the -P 4 part's second pasta-rs column
		[[ $id == pasta-rs-t2 ]] && extra+=(--threads 2)
		"${FWD_PRE[@]}" "${userns[@]}" "$bin" --config-net -m "$mtu" \
			"${FWD_PORTS[@]}" "${extra[@]}" -f -l "$log" --netns /run/netns/$ns \
			>>"$log.out" 2>&1 &
		;;
	slirp4netns)
		local api=()
		[[ -n ${SLIRP_FWD:-} ]] && api=(--api-socket /run/slirp-$id.sock)
		rm -f /run/slirp-$id.sock
		nsenter --user=/proc/$HOLD_PID/ns/user "$bin" --configure --mtu="$mtu" --enable-ipv6 \
			"${api[@]}" --netns-type=path /run/netns/$ns tap0 >>"$log" 2>&1 &
		;;
	*) fwd_fail "$id" "unknown tool"; return 1 ;;
	esac
	FWD_PID=$!
	wait_until 10 fwd_settled "$ns"
	if ! alive $FWD_PID; then
		wait $FWD_PID
		fwd_fail "$id" "exited at start (status $?): $(cat "$log" "$log.out" 2>/dev/null | grep -v -i syslog | head -n 2)"
		return 1
	fi
	if ! ns_ready "$ns" 6; then
		ns_ready "$ns" 4 || { fwd_fail "$id" "no IPv4 address/route in 10 s"; return 1; }
		log "$id: no IPv6 address/route in 10 s; IPv6 runs will fail"
	fi
	if [[ $id == slirp4netns && -n ${SLIRP_FWD:-} ]]; then
		slirp_hostfwd /run/slirp-$id.sock || { fwd_fail "$id" "$SLIRP_WHY"; return 1; }
	fi
	FWD_MTU=$($NSX/$ns ip -o link show | awk '$2 != "lo:" { for (i = 1; i < NF; i++) if ($i == "mtu") { print $(i + 1); exit } }')
	log "$id: pid $FWD_PID, netns $ns ready: $($NSX/$ns ip -br addr | grep -v '^lo ' | tr -s ' ' | tr '\n' ' ')mtu $FWD_MTU"
}

# slirp_hostfwd SOCK: slirp4netns's port forwarding for the splice part
# (slirp4netns(1), API "add_hostfwd"): each "proto:host_addr:port" of
# SLIRP_FWD from host_addr:port in this namespace to the same port of the
# namespace's address. Sets SLIRP_WHY on failure.
slirp_hostfwd() {
	local sock=$1 f res
	wait_until 5 test -S "$sock" || { SLIRP_WHY="no API socket $sock"; return 1; }
	for f in $SLIRP_FWD; do
		res=$(timeout 5 python3 - "$sock" "$f" <<'EOF' 2>&1
import json, socket, sys
proto, rest = sys.argv[2].split(":", 1)
addr, port = rest.rsplit(":", 1)
req = {"execute": "add_hostfwd", "arguments": {"proto": proto, "host_addr": addr,
       "host_port": int(port), "guest_port": int(port)}}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(json.dumps(req).encode())
s.shutdown(socket.SHUT_WR)
reply = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    reply += b
r = json.loads(reply or b"{}")
if "return" not in r:
    print("add_hostfwd %s: %s" % (sys.argv[2], r.get("error", r)))
    sys.exit(1)
EOF
		) || { SLIRP_WHY=$(printf '%s' "$res" | tail -n 1 | tr '\t\n' '  ' | cut -c1-150); return 1; }
	done
}

# holder_ready NETNS: $HOLD_PID lives in a network namespace other than NETNS
holder_ready() {
	local n
	n=$(readlink "/proc/$HOLD_PID/ns/net" 2>/dev/null) && [[ -n $n && $n != "$1" ]]
}

# fwd_fail ID WHY: log why the forwarder could not start; its runs record WHY
fwd_fail() {
	FWD_FAIL=$(printf '%s' "$2" | tr '\t\n' '  ' | cut -c1-160)
	log "$1: $FWD_FAIL"
}

# fwd_settled NS: the forwarder is gone or NS is ready for both families
fwd_settled() {
	! alive $FWD_PID || ns_ready "$1" 6
}

# ns_ready NS AF: global (non-tentative) address of family AF and a default route
ns_ready() {
	local n="$NSX/$1"
	[[ -n $($n ip -"$2" -o addr show scope global -tentative 2>/dev/null) ]] &&
		[[ -n $($n ip -"$2" route show default 2>/dev/null) ]] &&
		{ [[ $2 == 4 ]] || ns_ready "$1" 4; }
}

fwd_stop() {
	local id=$1 i kib
	if [[ -n $FWD_PID ]]; then
		kib=$(rss_hwm_kib $FWD_PID)
		[[ -n $kib ]] && tsv_record "$RSS" "$RSS_PART" "${RSS_ROUND:-0}" "$id" "${RSS_MTU:-0}" "$kib"
		kill -TERM $FWD_PID 2>/dev/null
		for ((i = 0; i < 50; i++)); do alive $FWD_PID || break; sleep 0.1; done
		kill -KILL $FWD_PID 2>/dev/null
		wait $FWD_PID 2>/dev/null
	fi
	[[ -n $HOLD_PID ]] && { kill -KILL $HOLD_PID 2>/dev/null; wait $HOLD_PID 2>/dev/null; }
	ip netns delete "fw-$id" 2>/dev/null
	FWD_PID="" HOLD_PID=""
}

# rss_hwm_kib PID: VmHWM (KiB) of PID plus that of every process below it,
# empty if PID is gone
rss_hwm_kib() {
	local pids=("$1") all=() p c sum=0 v
	while ((${#pids[@]})); do
		p=${pids[0]}
		pids=("${pids[@]:1}")
		all+=("$p")
		for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do pids+=("$c"); done
	done
	for p in "${all[@]}"; do
		v=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$p/status" 2>/dev/null)
		[[ -n $v ]] && sum=$((sum + v))
	done
	alive "$1" && ((sum > 0)) && echo "$sum"
}

# cpu_ticks PID: utime+stime (clock ticks) of PID's threads, empty if gone.
# /proc/PID/stat fields 14 and 15; the command name (field 2) may hold spaces,
# so count from the last ')'.
cpu_ticks() {
	local s rest
	read -r s 2>/dev/null <"/proc/$1/stat" || return 1
	rest=${s##*) }
	# shellcheck disable=SC2086
	set -- $rest
	echo $((${12} + ${13}))
}

# ---- one iperf3 run -----------------------------------------------------------
# record ROUND ID MTU AF DIR STATUS BYTES SECS CPU NOTE [BUSY]
record() {
	local IFS=$'\t'
	(($# < 11)) && set -- "$@" -
	echo "$*" >>"$RUN_FILE"
}

# machine_ticks: "BUSY TOTAL" jiffies of all CPUs so far (/proc/stat "cpu"
# line; idle and iowait are not busy; guest time is already in user)
machine_ticks() {
	local _ user nice sys idle iow irq sirq steal
	read -r _ user nice sys idle iow irq sirq steal _ </proc/stat
	echo "$((user + nice + sys + irq + sirq + steal)) $((user + nice + sys + idle + iow + irq + sirq + steal))"
}

# busy_share "B0 T0" "B1 T1": busy jiffies / all jiffies between the two
# machine_ticks readings, two decimals, or - if none passed
busy_share() {
	awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
		t = y[2] - x[2]; if (t <= 0) { print "-"; exit } printf "%.2f", (y[1] - x[1]) / t }'
}

# run_one ROUND ID MTU AF DIR
run_one() {
	local round=$1 id=$2 mtu=$3 af=$4 dir=$5 cli=($NSX/fw-$2)
	local tag="${RSS_PART}-r$1-$2-$3-v$4-$5" dst=$R4 rflag=() srv c0="" c1="" rc out cpu note m0 busy
	[[ $af == 6 ]] && dst=$R6
	[[ $dir == recv ]] && rflag=(-R)
	local json=$BENCH_OUT/raw/$tag.json err=$BENCH_OUT/raw/$tag.err
	# the veth ceiling: the client here, no forwarder
	[[ $id == veth ]] && cli=()
	if [[ $id != veth ]] && { [[ -z $FWD_PID ]] || ! alive $FWD_PID; }; then
		record "$round" "$id" "$mtu" "$af" "$dir" fail 0 0 - "forwarder not running${FWD_FAIL:+: $FWD_FAIL}"
		log "$tag: fail (forwarder not running)"
		return
	fi
	$NSX/up timeout -k 2 $((BENCH_SECS + 40)) iperf3 -s -1 -p $PORT >"$BENCH_OUT/raw/$tag.server" 2>&1 &
	srv=$!
	wait_until 5 server_listening || {
		record "$round" "$id" "$mtu" "$af" "$dir" fail 0 0 - "iperf3 server did not start"
		kill $srv 2>/dev/null; wait $srv 2>/dev/null
		return
	}
	[[ $id != veth ]] && c0=$(cpu_ticks $FWD_PID)
	m0=$(machine_ticks)
	"${cli[@]}" timeout -k 2 $((BENCH_SECS + 20)) iperf3 -c "$dst" -p $PORT -t "$BENCH_SECS" -J \
		--connect-timeout 3000 "${IPERF_EXTRA[@]}" "${rflag[@]}" >"$json" 2>"$err"
	rc=$?
	busy=$(busy_share "$m0" "$(machine_ticks)")
	[[ $id != veth ]] && c1=$(cpu_ticks $FWD_PID)
	kill $srv 2>/dev/null
	wait $srv 2>/dev/null
	cpu=-
	[[ -n $c0 && -n $c1 ]] && cpu=$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / t }')
	# "bytes secs" or "error: why"
	out=$(iperf3_result "$json")
	if ((rc == 0)) && [[ $out =~ ^([0-9]+)\ ([0-9.]+)$ ]] && ((BASH_REMATCH[1] > 0)); then
		record "$round" "$id" "$mtu" "$af" "$dir" ok "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "$cpu" "${MTU_NOTE:--}" "$busy"
		log "$tag: $(awk -v b="${BASH_REMATCH[1]}" -v s="${BASH_REMATCH[2]}" 'BEGIN { printf "%.3f", b * 8 / s / 1e9 }') Gbit/s, forwarder CPU $cpu s, machine busy $busy"
	else
		note=${out#error: }
		((rc == 124 || rc == 137)) && note="timed out after $((BENCH_SECS + 20)) s; $note"
		[[ -z $note ]] && note="iperf3 exit status $rc"
		note=$(printf '%s' "$note" | tr '\t\n' '  ' | cut -c1-200)
		record "$round" "$id" "$mtu" "$af" "$dir" fail 0 0 "$cpu" "$note" "$busy"
		log "$tag: fail ($note)"
	fi
}

server_listening() {
	[[ -n $($NSX/up ss -Htln "sport = :$PORT" 2>/dev/null) ]]
}

# iperf3_result JSON: "BYTES SECONDS" of end.sum_received, or "error: WHY"
iperf3_result() {
	timeout 10 python3 - "$1" <<'EOF' 2>/dev/null || echo "error: no iperf3 JSON"
import json, sys
try:
    with open(sys.argv[1]) as f:
        j = json.load(f)
except Exception as e:
    print("error: no iperf3 JSON (%s)" % type(e).__name__)
    sys.exit(0)
if j.get("error"):
    print("error: " + str(j["error"]))
    sys.exit(0)
s = j.get("end", {}).get("sum_received", {})
b, t = s.get("bytes"), s.get("seconds")
if not isinstance(b, int) or not isinstance(t, (int, float)) or t <= 0:
    print("error: no end.sum_received in iperf3 JSON")
else:
    print("%d %.6f" % (b, t))
EOF
}

# ---- splice path ------------------------------------------------------------
# pasta's loopback-to-loopback path ("Handling of local traffic in pasta" in
# passt(1)): with -t PORT it listens in this (host) netns and connects to the
# namespace's loopback, with -T PORT the reverse, relaying TCP with splice(2);
# with -u PORT it relays UDP between the two loopbacks. Tool "loopback" runs
# the same server and client over lo of this netns, without any forwarder:
# the ceiling.
#   pasta (both): --config-net -t 5201,5203 -T 5202 -u 5203 -U none
# Paths (af 4: 127.0.0.1, af 6: ::1; server side / client side):
#   tcp-h2n  iperf3 -s in the namespace, iperf3 -c here to port 5201 (via -t)
#   tcp-n2h  iperf3 -s here, iperf3 -c in the namespace to port 5202 (via -T)
#   tcp-rr   rr.py serve-tcp in the namespace, rr.py tcp-rr here, port 5203
#   tcp-pp   sockperf sr in the namespace, sockperf pp -m 64 here, port 5203
#            (round trips: ReceivedMessages over the valid RunTime)
#   tcp-pp1  the same with client, server and forwarder (all its threads,
#            for the run only) on CPU 0
#   tcp-crr  rr.py serve-tcp in the namespace, rr.py tcp-crr here, port 5203
#   udp-rr   rr.py serve-udp in the namespace, rr.py udp-rr here, port 5203
# Output: $SPLICE (splice.tsv), one line per run, tab separated:
#   round tool path af status count secs cpu_s note
# count = bytes received (tcp-h2n, tcp-n2h: iperf3 end.sum_received) or
# transactions (rr.py), secs = their duration, cpu_s and note as in runs.tsv.
SPLICE_PATHS="tcp-h2n:4 tcp-h2n:6 tcp-n2h:4 tcp-n2h:6 tcp-rr:4 tcp-crr:4 udp-rr:4"
# slirp4netns's port forwards in the splice part (slirp_hostfwd): its API
# takes IPv4 host addresses only ("bad arguments.host_addr" for ::1)
SLIRP_SPLICE_FWD="tcp:127.0.0.1:5201 tcp:127.0.0.1:5203 udp:127.0.0.1:5203"
RR=$BENCH_DIR/rr.py
# the eBPF section's wrappers, empty elsewhere: CGX=(prefix) runs a command in
# the section's cgroup; SRV_BIND=1 binds TCP servers to the wildcard address
# of the run's family only (0.0.0.0, or :: with IPV6_V6ONLY), not [::]
# dual-stack
CGX=() SRV_BIND=""

want_part() { [[ " $BENCH_PARTS " == *" $1 "* ]]; }

# splice_record ROUND ID PATH AF STATUS COUNT SECS CPU NOTE
splice_record() {
	local IFS=$'\t'
	echo "$*" >>"$SPLICE"
}

# splice_one ROUND ID PATH AF
splice_one() {
	local round=$1 id=$2 path=$3 af=$4 tag="s$1-$2-$3-v$4"
	local dst=127.0.0.1 bind=0.0.0.0 port=5203 proto=t srvns=() clins=() srv=() cli=()
	local out=$BENCH_OUT/raw/$tag.out err=$BENCH_OUT/raw/$tag.err
	local spid c0 c1 rc res cpu note
	[[ $af == 6 ]] && dst=::1 bind=::
	# tap-rr part (tap-*): the server upstream, the client in the forwarder's
	# namespace (here for the veth ceiling), to upstream's address
	if [[ $path == tap-* ]]; then
		srvns=($NSX/up) dst=$R4
		[[ $af == 6 ]] && dst=$R6
		[[ $id != veth ]] && clins=($NSX/fw-$id)
	fi
	if [[ $id != loopback && $id != veth ]]; then
		if [[ -z $FWD_PID ]] || ! alive $FWD_PID; then
			splice_record "$round" "$id" "$path" "$af" fail 0 0 - "forwarder not running${FWD_FAIL:+: $FWD_FAIL}"
			log "$tag: fail (forwarder not running)"
			return
		fi
		# the client runs here, the server in the namespace; -T: the reverse
		if [[ $path == tap-* ]]; then
			:
		elif [[ $path == tcp-n2h ]]; then
			clins=($NSX/fw-$id)
		else
			srvns=($NSX/fw-$id)
		fi
	fi
	case $path in
	tcp-h2n | tcp-n2h)
		[[ $path == tcp-h2n ]] && port=5201 || port=5202
		srv=(iperf3 -s -1 -p $port ${SRV_BIND:+-B $bind})
		cli=(iperf3 -c $dst -p $port -t "$BENCH_SECS" -J --connect-timeout 3000)
		;;
	tcp-rr | tcp-crr)
		srv=(python3 "$RR" serve-tcp $port ${SRV_BIND:+$bind})
		cli=(python3 "$RR" "$path" $dst $port "$BENCH_SECS")
		;;
	tap-tcp-rr | tap-tcp-crr)
		srv=(python3 "$RR" serve-tcp $port)
		cli=(python3 "$RR" "${path#tap-}" $dst $port "$BENCH_SECS")
		;;
	tap-udp-send | tap-udp-recv)
		# UDP throughput: unlimited rate, 1400-byte datagrams; count is
		# the receiver's bytes (end.sum_received)
		# bound to upstream's address: a wildcard UDP server would answer
		# from the veth's address, which the client's connected socket
		# refuses (ICMP port unreachable)
		port=5201
		srv=(iperf3 -s -1 -p $port -B $dst)
		cli=(iperf3 -c $dst -p $port -t "$BENCH_SECS" -J --connect-timeout 3000 -u -b 0 -l 1400)
		[[ $path == tap-udp-recv ]] && cli+=(-R)
		;;
	tcp-pp | tcp-pp1)
		srv=(sockperf sr --tcp -i $bind -p $port)
		cli=(sockperf pp --tcp -i $dst -p $port -t "$BENCH_SECS" -m 64)
		if [[ $path == tcp-pp1 ]]; then
			srv=(taskset -c 0 "${srv[@]}") cli=(taskset -c 0 "${cli[@]}")
		fi
		;;
	udp-rr)
		proto=u
		srv=(python3 "$RR" serve-udp $port)
		cli=(python3 "$RR" udp-rr $dst $port "$BENCH_SECS")
		;;
	esac
	"${srvns[@]}" "${CGX[@]}" timeout -k 2 $((BENCH_SECS + 40)) "${srv[@]}" >"$BENCH_OUT/raw/$tag.server" 2>&1 &
	spid=$!
	wait_until 5 splice_listening "$proto" "$port" "${srvns[@]}" || {
		# say why, and who holds the port (for the record under the table)
		local why holder
		why=$(head -n 1 "$BENCH_OUT/raw/$tag.server" 2>/dev/null | tr '\t\n' '  ' | cut -c1-100)
		holder=$("${srvns[@]}" ss -Hanp "sport = :$port" 2>/dev/null | awk '{ print $1, $5, $NF }' | head -n 3 | tr '\n' ';' | cut -c1-200)
		splice_record "$round" "$id" "$path" "$af" fail 0 0 - "server did not start: ${why:-no output}; port $port: ${holder:-free}"
		kill $spid 2>/dev/null; wait $spid 2>/dev/null
		return
	}
	c0="" c1=""
	local fwd=1
	[[ $id == loopback || $id == veth ]] && fwd=""
	[[ -n $fwd ]] && c0=$(cpu_ticks $FWD_PID)
	[[ $path == tcp-pp1 && $id != loopback ]] && taskset -a -p -c 0 $FWD_PID >/dev/null 2>&1
	"${clins[@]}" "${CGX[@]}" timeout -k 2 $((BENCH_SECS + 20)) "${cli[@]}" >"$out" 2>"$err"
	rc=$?
	[[ $path == tcp-pp1 && $id != loopback ]] && taskset -a -p -c 0-$(($(nproc) - 1)) $FWD_PID >/dev/null 2>&1
	[[ -n $fwd ]] && c1=$(cpu_ticks $FWD_PID)
	kill $spid 2>/dev/null
	wait $spid 2>/dev/null
	cpu=-
	[[ -n $c0 && -n $c1 ]] && cpu=$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / t }')
	# "COUNT SECONDS" or "error: why"
	if [[ ${cli[0]} == iperf3 ]]; then
		res=$(iperf3_result "$out")
	elif [[ ${cli[*]} == *"sockperf pp"* ]]; then
		# "[Valid Duration] RunTime=1.550 sec; SentMessages=N; ReceivedMessages=N"
		res=$(sed -n 's/.*RunTime=\([0-9.]*\) sec;.*ReceivedMessages=\([0-9]*\).*/\2 \1/p' "$out" | head -n 1)
		[[ -z $res ]] && res="error: $(grep -i error "$out" "$err" | tail -n 1)"
	else
		res=$(head -n 1 "$out")
		[[ -z $res ]] && res="error: $(tail -n 1 "$err")"
	fi
	if ((rc == 0)) && [[ $res =~ ^([0-9]+)\ ([0-9.]+)$ ]] && ((BASH_REMATCH[1] > 0)); then
		splice_record "$round" "$id" "$path" "$af" ok "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "$cpu" -
		log "$tag: $(awk -v n="${BASH_REMATCH[1]}" -v s="${BASH_REMATCH[2]}" -v p="$path" \
			'BEGIN { if (p ~ /^tcp-[hn]2/ || p ~ /^tap-udp/) printf "%.3f Gbit/s", n * 8 / s / 1e9; else printf "%.0f /s", n / s }'), forwarder CPU $cpu s"
	else
		note=${res#error: }
		((rc == 124 || rc == 137)) && note="timed out after $((BENCH_SECS + 20)) s; $note"
		[[ -z $note || $note == "$res" ]] && note="$path client exit status $rc"
		note=$(printf '%s' "$note" | tr '\t\n' '  ' | cut -c1-200)
		splice_record "$round" "$id" "$path" "$af" fail 0 0 "$cpu" "$note"
		log "$tag: fail ($note)"
	fi
}

# splice_listening t|u PORT [NSENTER...]: a TCP listener / UDP socket on PORT
splice_listening() {
	local proto=$1 port=$2
	shift 2
	[[ -n $("$@" ss -Hn"$proto"l "sport = :$port" 2>/dev/null) ]]
}

# splice_all: every round, the pasta tools of $BENCH_TOOLS and the loopback
# ceiling round-robin (order rotated by one per round), every path each.
splice_all() {
	local tools=() t round k n id bin p
	for t in $BENCH_TOOLS; do
		case ${t%%=*} in pasta-rs | debian-pasta | slirp4netns) tools+=("$t") ;; esac
	done
	tools+=(loopback=-)
	n=${#tools[@]}
	FWD_PORTS=(-t 5201,5203 -T 5202 -u 5203 -U none)
	FWD_TAG=splice RSS_PART=splice RSS_MTU=65520
	for ((round = 1; round <= BENCH_ROUNDS; round++)); do
		for ((k = 0; k < n; k++)); do
			t=${tools[(k + round - 1) % n]}
			id=${t%%=*} bin=${t#*=}
			log "splice round $round: $id ($bin)"
			FWD_FAIL="" RSS_ROUND=$round SLIRP_FWD=""
			# slirp4netns: host loopback -> namespace through its API's
			# port forwarding, IPv4 only; it has no namespace -> host
			# loopback forwarding (-T)
			[[ $id == slirp4netns ]] && SLIRP_FWD=$SLIRP_SPLICE_FWD
			if [[ $id != loopback ]] && ! fwd_start "$id" "$bin" 65520; then
				fwd_stop "$id"   # every splice_one below records "forwarder not running"
			fi
			for p in $SPLICE_PATHS; do
				[[ $id == slirp4netns && (${p%:*} == tcp-n2h || ${p#*:} == 6) ]] && continue
				splice_one "$round" "$id" "${p%:*}" "${p#*:}"
			done
			[[ $id != loopback ]] && fwd_stop "$id"
		done
	done
	SLIRP_FWD=""
}

# ---- parallel flows (p4) ------------------------------------------------------
# iperf3 -P 4 through the tap, IPv4, namespace sends and receives, at each
# MTU, for every tool, pasta-rs again with --threads 2 (tool pasta-rs-t2),
# and the veth ceiling once per round. Lines go to $P4 (runs.tsv format).
p4_all() {
	local tools=() t
	for t in $BENCH_TOOLS; do
		tools+=("$t")
		[[ ${t%%=*} == pasta-rs ]] && tools+=("pasta-rs-t2=${t#*=}")
	done
	local RUN_FILE=$P4 RSS_PART=p4 IPERF_EXTRA=(-P 4)
	iperf_rounds p4 4 "${tools[@]}"
}

# iperf_rounds PART AFS TOOL...: every round, every MTU of $BENCH_MTUS, the
# TOOLs ("ID=PATH") round-robin (order rotated by one per round): start the
# forwarder, run_one for each address family of AFS ("4 6" or "4") and both
# directions, stop it; then the veth ceiling once per round. run_one writes
# to $RUN_FILE with $IPERF_EXTRA, as the caller set them. Logs are named
# ID-MTU (part tap) or ID-PART-MTU.
iperf_rounds() {
	local part=$1 afs=$2 round mtu k n t id bin af dir
	shift 2
	local tools=("$@")
	n=${#tools[@]}
	FWD_PORTS=(-t none -u none -T none -U none)
	for ((round = 1; round <= BENCH_ROUNDS; round++)); do
		for mtu in "${MTUS[@]}"; do
			for ((k = 0; k < n; k++)); do
				t=${tools[(k + round - 1) % n]}
				id=${t%%=*} bin=${t#*=}
				log "$part round $round, MTU $mtu: $id ($bin)"
				FWD_MTU="" MTU_NOTE="" FWD_FAIL="" RSS_ROUND=$round RSS_MTU=$mtu FWD_TAG=""
				[[ $part != tap ]] && FWD_TAG=$part-$mtu
				if ! fwd_start "$id" "$bin" "$mtu"; then
					fwd_stop "$id"   # every run_one below then records "forwarder not running"
				elif [[ $FWD_MTU != "$mtu" ]]; then
					MTU_NOTE="tap MTU is $FWD_MTU, not $mtu"
					log "$id: $MTU_NOTE"
				fi
				for af in $afs; do
					for dir in send recv; do
						run_one "$round" "$id" "$mtu" "$af" "$dir"
					done
				done
				fwd_stop "$id"
			done
		done
		# the ceiling: the same clients from this namespace over the lab veth
		MTU_NOTE=""
		for af in $afs; do
			for dir in send recv; do
				run_one "$round" veth 1500 "$af" "$dir"
			done
		done
	done
	FWD_TAG=""
}

# ---- tap round trips (tap-rr) -------------------------------------------------
# Through the tap at MTU 65520, namespace -> upstream server, IPv4: rr.py
# 64-byte TCP round trips and connections per second, and UDP throughput
# (iperf3 -u -b 0 -l 1400, the receiver's bytes) both ways, for every tool
# and the veth ceiling (client here), round-robin per round. Lines go to
# $TAPRR (splice.tsv format, paths TAPRR_PATHS).
TAPRR_PATHS="tap-tcp-rr:4 tap-tcp-crr:4 tap-udp-send:4 tap-udp-recv:4"
taprr_all() {
	local tools=() t round k n id bin p
	read -r -a tools <<<"$BENCH_TOOLS"
	tools+=(veth=-)
	n=${#tools[@]}
	local SPLICE=$TAPRR RSS_PART=tap-rr RSS_MTU=65520
	FWD_PORTS=(-t none -u none -T none -U none) FWD_TAG=tap-rr
	for ((round = 1; round <= BENCH_ROUNDS; round++)); do
		for ((k = 0; k < n; k++)); do
			t=${tools[(k + round - 1) % n]}
			id=${t%%=*} bin=${t#*=}
			log "tap-rr round $round: $id ($bin)"
			FWD_FAIL="" RSS_ROUND=$round
			if [[ $id != veth ]] && ! fwd_start "$id" "$bin" 65520; then
				fwd_stop "$id"
			fi
			for p in $TAPRR_PATHS; do
				splice_one "$round" "$id" "${p%:*}" "${p#*:}"
			done
			[[ $id != veth ]] && fwd_stop "$id"
		done
	done
	FWD_TAG=""
}

# ---- eBPF section -----------------------------------------------------------
# pasta-rs's spliced TCP path with and without --ebpf, beside plain loopback,
# in the same run. pasta-rs runs as root of the initial user namespace in both
# columns (so the only difference is --ebpf); with --ebpf it loads its own
# programs, and its sockops program watches the cgroup v2 EBPF_CG that this
# section creates (mktemp -d under the cgroup2 mount) and moves every client
# and server into (CGX) before they open a socket. Servers bind 0.0.0.0, not
# [::] (dual-stack listeners stay on splice); -t connects to the namespace's
# own address, -T to the host's 127.0.0.1. Tools, round-robin per round:
#   pasta-rs       pasta --config-net -t 5201,5203,5204 -T 5202 -u none -U none
#   pasta-rs-ebpf  the same plus --ebpf --ebpf-cgroup EBPF_CG
#   loopback       no forwarder, client and server over lo of this netns
# Per session: the paths of EBPF_PATHS (see "splice path" above) and one
# stalled-reader run (stall_one). Before the rounds, ebpf_fds counts what
# pasta-rs holds for -t all -u all with and without --ebpf.
# Output:
#   $EBPF (ebpf.tsv): the format of splice.tsv
#   $EBPF_STATUS (ebpf-status.tsv): round tool state detail, one line per
#     pasta-rs-ebpf start: state loaded (pasta logged "eBPF programs loaded"),
#     off (it logged "eBPF off, using splice(): WHY", detail WHY) or unknown
#     (neither line within 5 s, or it did not start)
#   $EBPF_MEM (ebpf-mem.tsv): round tool status sent blocked secs tcp_mem0
#     tcp_mem1 avail0 avail1 note: rr.py stall-client's fields (bytes, 1|0,
#     seconds, bytes x4), "-" for each if it failed
#   $EBPF_FDS (ebpf-fds.tsv): tool status fds sockets tcp_listen udp nofile
#     ports note: entries of /proc/PID/fd, those that are sockets, pasta's TCP
#     listeners and UDP sockets as `ss -p` lists them, the fd limit
#     (RLIMIT_NOFILE) pasta had, and how many ports "all" covered
#   $BENCH_OUT/ebpf-cgroup: the cgroup's path while it exists (the bench
#     removes it if this script is killed first)
EBPF_PATHS="tcp-h2n:4 tcp-n2h:4 tcp-rr:4 tcp-pp:4 tcp-pp1:4 tcp-crr:4"
EBPF=$BENCH_OUT/ebpf.tsv
EBPF_STATUS=$BENCH_OUT/ebpf-status.tsv
EBPF_MEM=$BENCH_OUT/ebpf-mem.tsv
EBPF_FDS=$BENCH_OUT/ebpf-fds.tsv
EBPF_CG="" EBPF_CG_FAIL=""
# the stalled reader: port, bytes it reads before it stops, the client's cap
# (bytes) and how long no write fits before it counts as blocked (seconds)
STALL_PORT=5204 STALL_READ=$((1 << 20)) STALL_CAP=$((256 << 20)) STALL_IDLE=2
STALL_LIMIT=60
# -t all -u all: "all" is every port outside the ephemeral range pasta reads
# at start. Where this machine lets us raise the hard fd limit
# (CAP_SYS_RESOURCE) to FDS_NOFILE: the kernel's default range (the lab's
# 1024-65535 would leave "all" nothing above 1023); else, with the machine's
# hard limit N, a range that leaves "all" (N - 200) / 4 ports, so that one
# socket per port, protocol and family fits
FDS_PORT_RANGE="32768 60999" FDS_NOFILE=1048576 FDS_SETTLE=60

# tsv_record FILE FIELD...: one tab-separated line
tsv_record() {
	local f=$1 IFS=$'\t'
	shift
	echo "$*" >>"$f"
}

# ebpf_cgroup: create EBPF_CG under the cgroup2 mount and set CGX, or say why
# not in EBPF_CG_FAIL (the pasta-rs-ebpf runs then fail with it)
ebpf_cgroup() {
	local mnt
	mnt=$(findmnt -n -o TARGET -t cgroup2 | head -n 1)
	[[ -n $mnt ]] || { EBPF_CG_FAIL="no cgroup v2 mount for --ebpf-cgroup"; return 1; }
	EBPF_CG=$(mktemp -d "$mnt/passt-bench.XXXXXX") ||
		{ EBPF_CG_FAIL="cannot create a cgroup under $mnt"; EBPF_CG=""; return 1; }
	echo "$EBPF_CG" >"$BENCH_OUT/ebpf-cgroup"
	# shellcheck disable=SC2016
	CGX=(bash -c 'echo 0 >"$0/cgroup.procs" && exec "$@"' "$EBPF_CG")
	log "eBPF section: clients and servers in cgroup $EBPF_CG"
}

ebpf_cgroup_remove() {
	[[ -n $EBPF_CG ]] && rmdir "$EBPF_CG" 2>/dev/null && rm -f "$BENCH_OUT/ebpf-cgroup"
	CGX=()
}

# ebpf_status ROUND: what pasta-rs-ebpf's log says about its programs
ebpf_status() {
	local round=$1 log=$BENCH_OUT/logs/pasta-rs-ebpf-$FWD_TAG.log line
	if [[ -z $FWD_PID ]]; then
		tsv_record "$EBPF_STATUS" "$round" pasta-rs-ebpf unknown "not started: ${FWD_FAIL:-?}"
		return
	fi
	wait_until 5 grep -q -e 'eBPF programs loaded' -e 'eBPF off' "$log" "$log.out" 2>/dev/null
	line=$(grep -h -o -e 'eBPF programs loaded.*' -e 'eBPF off.*' "$log" "$log.out" 2>/dev/null | head -n 1 |
		tr '\t\n' '  ' | cut -c1-200 | sed 's/ *$//')
	case $line in
	'eBPF programs loaded'*) tsv_record "$EBPF_STATUS" "$round" pasta-rs-ebpf loaded "$line" ;;
	'eBPF off'*) tsv_record "$EBPF_STATUS" "$round" pasta-rs-ebpf off "${line#eBPF off, using splice(): }" ;;
	*) tsv_record "$EBPF_STATUS" "$round" pasta-rs-ebpf unknown "no eBPF line in its log within 5 s" ;;
	esac
	log "pasta-rs-ebpf: ${line:-no eBPF line in its log}"
}

# stall_one ROUND ID: a client writing to a server that reads STALL_READ
# bytes and stops: bytes sent until no write fits for STALL_IDLE s, kernel
# TCP memory and MemAvailable before and then (rr.py stall-client)
stall_one() {
	local round=$1 id=$2 tag="m$1-$2" dst=127.0.0.1 srvns=() spid rc res note
	local out=$BENCH_OUT/raw/$tag.out err=$BENCH_OUT/raw/$tag.err
	local fail=(- - - - - - -)
	if [[ $id != loopback ]]; then
		if [[ -z $FWD_PID ]] || ! alive $FWD_PID; then
			tsv_record "$EBPF_MEM" "$round" "$id" fail "${fail[@]}" "forwarder not running${FWD_FAIL:+: $FWD_FAIL}"
			return
		fi
		srvns=($NSX/fw-$id)
	fi
	"${srvns[@]}" "${CGX[@]}" timeout -k 2 $((STALL_LIMIT + 10)) \
		python3 "$RR" stall-server $STALL_PORT 0.0.0.0 $STALL_READ >"$BENCH_OUT/raw/$tag.server" 2>&1 &
	spid=$!
	if ! wait_until 5 splice_listening t $STALL_PORT "${srvns[@]}"; then
		tsv_record "$EBPF_MEM" "$round" "$id" fail "${fail[@]}" "stall server did not start"
		kill $spid 2>/dev/null; wait $spid 2>/dev/null
		return
	fi
	"${CGX[@]}" timeout -k 2 $STALL_LIMIT \
		python3 "$RR" stall-client $dst $STALL_PORT $STALL_CAP $STALL_IDLE >"$out" 2>"$err"
	rc=$?
	kill $spid 2>/dev/null
	wait $spid 2>/dev/null
	res=$(head -n 1 "$out")
	if ((rc == 0)) && [[ $res =~ ^[0-9]+\ [01]\ [0-9.]+(\ [0-9]+){4}$ ]]; then
		# shellcheck disable=SC2086
		tsv_record "$EBPF_MEM" "$round" "$id" ok $res -
		log "$tag: $res (sent blocked secs tcp_mem0 tcp_mem1 avail0 avail1)"
	else
		note=$(tail -n 1 "$err")
		((rc == 124 || rc == 137)) && note="timed out after $STALL_LIMIT s; $note"
		[[ -z $note ]] && note="stall client exit status $rc"
		note=$(printf '%s' "$note" | tr '\t\n' '  ' | cut -c1-200)
		tsv_record "$EBPF_MEM" "$round" "$id" fail "${fail[@]}" "$note"
		log "$tag: fail ($note)"
	fi
}

# no_time_wait: no TCP socket of this netns is in TIME_WAIT (one would hold
# its local port against a listener without SO_REUSEADDR)
no_time_wait() {
	[[ -z $(ss -Htan state time-wait 2>/dev/null | head -n 1) ]]
}

# fd_count PID: entries of /proc/PID/fd, empty if gone
fd_count() {
	local n
	n=$(find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l) && ((n > 0)) && echo "$n"
}

# ebpf_fds ID BIN: start pasta-rs (ID pasta-rs or pasta-rs-ebpf) with -t all
# -u all once no socket here is in TIME_WAIT (at most 70 s: earlier parts'
# short connections), wait until its fd count holds still for 2 s (at most
# FDS_SETTLE s), count what it holds; the note counts the ports pasta logged
# "Listen failed" for
ebpf_fds() {
	local id=$1 bin=$2 range prev="" n="" i fds socks tl ul note=- nofile eph lo hi ports
	range=$(sysctl -n net.ipv4.ip_local_port_range | tr -s '\t ' ' ')
	if prlimit --nofile=$FDS_NOFILE:$FDS_NOFILE true 2>/dev/null; then
		FWD_PRE=(prlimit --nofile=$FDS_NOFILE:$FDS_NOFILE) nofile=$FDS_NOFILE eph=$FDS_PORT_RANGE
	else
		FWD_PRE=() nofile=$(ulimit -Hn)
		lo=$(((nofile - 200) / 4 + 1))
		((lo < 2)) && lo=2
		eph="$lo 65535"
	fi
	read -r lo hi <<<"$eph"
	ports=$((lo - 1 + 65535 - hi))
	sysctl -qw net.ipv4.ip_local_port_range="$eph"
	FWD_PORTS=(-t all -u all -T none -U none) FWD_TAG=fds FWD_FAIL=""
	# its peak RSS with a socket per port: a row of its own in rss.tsv
	local RSS_PART=ebpf-fds
	wait_until 70 no_time_wait || log "$id: TIME_WAIT sockets left after 70 s"
	if [[ $id == pasta-rs-ebpf ]]; then
		FWD_EXTRA=(--ebpf ${EBPF_CG:+--ebpf-cgroup "$EBPF_CG"})
	else
		FWD_EXTRA=()
	fi
	if ! fwd_start "$id" "$bin" 65520; then
		tsv_record "$EBPF_FDS" "$id" fail - - - - "$nofile" "$ports" "${FWD_FAIL:-did not start}"
		fwd_stop "$id"
		sysctl -qw net.ipv4.ip_local_port_range="$range"
		FWD_PRE=() FWD_EXTRA=()
		return
	fi
	for ((i = 0; i < FDS_SETTLE; i++)); do
		n=$(fd_count $FWD_PID) || break
		[[ $n == "$prev" ]] && ((i >= 2)) && break
		prev=$n
		sleep 1
	done
	sysctl -qw net.ipv4.ip_local_port_range="$range"
	if [[ -z $n ]] || ! alive $FWD_PID; then
		tsv_record "$EBPF_FDS" "$id" fail - - - - "$nofile" "$ports" "exited while binding: $(tail -n 1 "$BENCH_OUT/logs/$id-fds.log" | tr '\t' ' ' | cut -c1-150)"
	else
		local log=$BENCH_OUT/logs/$id-fds.log failed
		failed=$(grep -c 'Listen failed' "$log")
		note=""
		((i >= FDS_SETTLE)) && note="fd count still changing after $FDS_SETTLE s; "
		((failed > 0)) && note+="$failed listens failed, e.g. $(grep -m 1 -o 'Listen failed.*' "$log" | tr '\t' ' ' | cut -c1-120)"
		note=${note%; }
		[[ -z $note ]] && note=-
		fds=$(fd_count $FWD_PID)
		socks=$(find "/proc/$FWD_PID/fd" -mindepth 1 -maxdepth 1 -lname 'socket:*' 2>/dev/null | wc -l)
		tl=$(ss -Htlnp 2>/dev/null | grep -c "pid=$FWD_PID,")
		ul=$(ss -Hualnp 2>/dev/null | grep -c "pid=$FWD_PID,")
		tsv_record "$EBPF_FDS" "$id" ok "$fds" "$socks" "$tl" "$ul" "$nofile" "$ports" "$note"
		log "$id -t all -u all ($ports ports, fd limit $nofile): $fds fds, $socks sockets, $tl TCP listeners, $ul UDP sockets"
	fi
	fwd_stop "$id"
	FWD_PRE=() FWD_EXTRA=()
}

# ebpf_all: the -t all -u all counts, then every round, pasta-rs,
# pasta-rs-ebpf and loopback round-robin (order rotated by one per round),
# every path of EBPF_PATHS and a stalled reader each
ebpf_all() {
	local bin="" t round k n id p tools=(pasta-rs pasta-rs-ebpf loopback)
	for t in $BENCH_TOOLS; do
		[[ ${t%%=*} == pasta-rs ]] && bin=${t#*=}
	done
	[[ -n $bin ]] || { log "eBPF section: pasta-rs is not among the tools; skipped"; return; }
	: >"$EBPF"; : >"$EBPF_STATUS"; : >"$EBPF_MEM"; : >"$EBPF_FDS"
	ebpf_cgroup || log "eBPF section: $EBPF_CG_FAIL"
	n=${#tools[@]}
	# splice_one's output file and server binding for this section
	local SPLICE=$EBPF SRV_BIND=1
	local RSS_PART=ebpf RSS_MTU=65520 RSS_ROUND=0
	FWD_REAL_ROOT=1
	# first, while the fewest of this section's connections linger
	ebpf_fds pasta-rs "$bin"
	ebpf_fds pasta-rs-ebpf "$bin"
	for ((round = 1; round <= BENCH_ROUNDS; round++)); do
		for ((k = 0; k < n; k++)); do
			id=${tools[(k + round - 1) % n]}
			log "eBPF round $round: $id"
			RSS_ROUND=$round
			FWD_FAIL="" FWD_TAG=ebpf-r$round FWD_PORTS=(-t 5201,5203,$STALL_PORT -T 5202 -u none -U none)
			FWD_EXTRA=()
			[[ $id == pasta-rs-ebpf ]] && FWD_EXTRA=(--ebpf --ebpf-cgroup "$EBPF_CG")
			if [[ $id == pasta-rs-ebpf && -n $EBPF_CG_FAIL ]]; then
				FWD_FAIL=$EBPF_CG_FAIL FWD_PID=""
			elif [[ $id != loopback ]] && ! fwd_start "$id" "$bin" 65520; then
				fwd_stop "$id"   # every run below records "forwarder not running"
			fi
			[[ $id == pasta-rs-ebpf ]] && ebpf_status "$round"
			for p in $EBPF_PATHS; do
				splice_one "$round" "$id" "${p%:*}" "${p#*:}"
			done
			stall_one "$round" "$id"
			[[ $id != loopback ]] && fwd_stop "$id"
		done
	done
	FWD_REAL_ROOT="" FWD_EXTRA=()
	ebpf_cgroup_remove
}

# ---- main -------------------------------------------------------------------
bench_setup || exit $?
bench_env
read -r -a TOOLS <<<"$BENCH_TOOLS"
read -r -a MTUS <<<"$BENCH_MTUS"
want_part tap && iperf_rounds tap "4 6" "${TOOLS[@]}"
want_part p4 && p4_all
want_part splice && splice_all
want_part tap-rr && taprr_all
want_part ebpf && ebpf_all
log "bench done: tap $(grep -c $'\tok\t' "$RUNS") ok, $(grep -c $'\tfail\t' "$RUNS") failed runs;" \
	"splice $(grep -c $'\tok\t' "$SPLICE") ok, $(grep -c $'\tfail\t' "$SPLICE") failed runs;" \
	"p4 $(grep -c $'\tok\t' "$P4") ok, $(grep -c $'\tfail\t' "$P4") failed runs;" \
	"tap-rr $(grep -c $'\tok\t' "$TAPRR") ok, $(grep -c $'\tfail\t' "$TAPRR") failed runs;" \
	"eBPF section $(grep -c $'\tok\t' "$EBPF" 2>/dev/null) ok, $(grep -c $'\tfail\t' "$EBPF" 2>/dev/null) failed runs"
exit 0
