# lab.sh - the private network lab shared by every integration case.
#
# Sourced (never executed) by tests/lab/inner.sh, which runs as PID 1 of a fresh
# `unshare --net --mount --pid --fork --mount-proc`. Nothing here can reach a real
# network: the only interfaces are lo and a veth pair whose far end lives in a
# second private namespace ("upstream") created below.
#
# Topology
#
#   host netns (this one, PID 1 = runner)          upstream netns ("up")
#   lo        127.0.0.1 ::1                        lo   198.51.100.1/32 2001:db8:100::1/128
#             UDP echo :7  ("lo:<line>")                UDP echo :7 ("remote:<line>")
#             decoy dnsmasq :53 (answers 203.0.113.66)
#   lab0      192.0.2.2/24 2001:db8:2::2/64  <-veth->  lab1 192.0.2.1/24 2001:db8:2::1/64
#             default via 192.0.2.1 / 2001:db8:2::1     dnsmasq :53 on all four addresses
#                                                      (www.lab.test -> 203.0.113.7,
#                                                       2001:db8:7::7)
#
# /etc/resolv.conf is bind-mounted (private mount namespace) to name 192.0.2.1 and
# 2001:db8:2::1 with "search lab.test". /run is a private tmpfs (for `ip netns`).
# net.ipv4.ping_group_range is opened so pasta (root of its own user namespace)
# can use ICMP echo sockets.
#
# Helpers for cases: log, ok, fail, expect_eq, expect_match, wait_until, PASTA,
# PASST_BIN, passt_is_ours, pasta_spawn, pasta_is_ours, skip_unless_ours,
# ns_ifname_cmd, alive, kv, capture_start/capture_stop; optional:
# lab_local_mode, lab_tcp_server (servers from tcplab.py), vm_rss_kib,
# need_tools, need_ebpf. Every external command a case runs
# must be bounded by `timeout`; wait_until is bounded by count and time.

# ---- addresses (read-only for cases) ---------------------------------------
LAB_IF=lab0          # host-side veth: pasta's outbound interface and template
LAB_PEER_IF=lab1     # upstream side
H4=192.0.2.2 GW4=192.0.2.1 PLEN4=24 MASK4=255.255.255.0
H6=2001:db8:2::2 GW6=2001:db8:2::1 PLEN6=64
R4=198.51.100.1 R6=2001:db8:100::1                 # "remote test host" in upstream
DNS_NAME=www.lab.test DNS_A=203.0.113.7 DNS_AAAA=2001:db8:7::7
DECOY_A=203.0.113.66 DECOY_AAAA=2001:db8:66::66     # what host loopback :53 answers
SEARCH=lab.test
ECHO_PORT=7
DEFAULT_MTU=65520
UP="ip netns exec up"
PYTHON=$(command -v /usr/bin/python3 || command -v python3)   # the system one if present
export PYTHON LAB_IF LAB_PEER_IF H4 GW4 PLEN4 MASK4 H6 GW6 PLEN6 R4 R6 DNS_NAME DNS_A DNS_AAAA \
	DECOY_A DECOY_AAAA SEARCH ECHO_PORT DEFAULT_MTU

# ---- reporting --------------------------------------------------------------
export LAB_T0=${LAB_T0:-${EPOCHREALTIME/./}}
log() {
	local now=${EPOCHREALTIME/./} d
	d=$(((now - LAB_T0) / 1000))
	printf '[%3d.%03d] %s\n' $((d / 1000)) $((d % 1000)) "$*"
}
ok() { log "ok: $*"; }

# Files whose content is printed when a case fails (cases append their own).
LAB_DUMP=()
dump_file() { LAB_DUMP+=("$@"); }

lab_dump() {
	local f
	for f in "${LAB_DUMP[@]}"; do
		[[ -e $f ]] || { echo "----- $f: (missing)"; continue; }
		echo "----- $f (last 60 lines)"
		tail -n 60 "$f"
	done
	echo "----- lab state"
	ip -br addr 2>&1; ip route 2>&1; ip -6 route 2>&1
	echo "----- processes"
	ps -eo pid,ppid,stat,args 2>&1 | head -n 40
}

# fail MESSAGE: print MESSAGE plus the collected logs, end the case with status 1.
fail() {
	log "FAIL: $*"
	lab_dump
	exit 1
}

# expect_eq WHAT GOT WANT
expect_eq() {
	if [[ $2 == "$3" ]]; then ok "$1 = '$3'"; else fail "$1: got '$2', want '$3'"; fi
}

# expect_match WHAT GOT ERE
expect_match() {
	if [[ $2 =~ $3 ]]; then ok "$1 matches /$3/"; else fail "$1: got '$2', want a match for /$3/"; fi
}

# wait_until SECONDS CMD... : poll CMD every 0.1 s, at most SECONDS*10 times.
# Returns CMD's last status.
wait_until() {
	local limit=$1 i; shift
	for ((i = 0; i < limit * 10; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	"$@"
}

# ---- pasta -----------------------------------------------------------------
# "${PASTA[@]}" ARGS... : run $PASTA_BIN the way Podman does, as root of its own
# user namespace (the lab's network namespace stays the "host" side). An array,
# not a function, so that `timeout 20 "${PASTA[@]}" ...` works.
# PASTA_EXTRA: options added to every pasta run through this array (word-split,
# e.g. PASTA_EXTRA="--threads 2" to run earlier cases with worker threads).
# shellcheck disable=SC2206
PASTA=(unshare --user --map-root-user "$PASTA_BIN" ${PASTA_EXTRA:-})

# True if PASTA_BIN is passt-rs (its version line starts with "pasta " and
# contains "passt-rs"), false for upstream/Debian builds.
pasta_is_ours() {
	local v
	v=$(timeout 5 "$PASTA_BIN" --version 2>/dev/null | head -n 1)
	[[ $v == "pasta "* && $v == *passt-rs* ]]
}

# skip_unless_ours WHAT: log that an assertion is skipped for a foreign binary.
# Returns 0 when the assertion should run.
skip_unless_ours() {
	pasta_is_ours && return 0
	log "skip: $1 (only checked for passt-rs; $PASTA_BIN is not)"
	return 1
}

# ---- passt ------------------------------------------------------------------
# PASST_BIN: the passt binary under test, by default the one next to PASTA_BIN
# (the same build: target/release/passt, or /usr/bin/passt for /usr/bin/pasta).
PASST_BIN=${PASST_BIN:-${PASTA_BIN%/*}/passt}

# True if PASST_BIN is passt-rs (version line "passt ... passt-rs ...").
passt_is_ours() {
	local v
	v=$(timeout 5 "$PASST_BIN" --version 2>/dev/null | head -n 1)
	[[ $v == "passt "* && $v == *passt-rs* ]]
}

# Shell snippet that prints the first non-lo interface name (ip -o link form
# "2: lab0@if3: ..." or "2: lab0: ..."). Used inside the pasta namespace.
ns_ifname_cmd="ip -o link show | awk -F': ' '{ split(\$2, a, \"@\"); if (a[1] != \"lo\") { print a[1]; exit } }'"
export ns_ifname_cmd

# pasta_spawn NAME SECONDS [PASTA_OPTION...] <<'EOF' script EOF
# Save stdin as $LAB_WORK/NAME.sh and run it with sh in the namespace pasta
# spawns (spawn form: pasta OPTIONS -- sh NAME.sh), pasta logging to
# $LAB_WORK/NAME.pasta.log. The script's output goes to $LAB_WORK/NAME.out and
# is echoed with a "NAME|" prefix. Returns pasta's exit status (the script's);
# fails the case if the script never started.
pasta_spawn() {
	local name=$1 secs=$2 rc; shift 2
	{ echo "echo started >\"$LAB_WORK/$name.started\""; cat; } >"$LAB_WORK/$name.sh"
	dump_file "$LAB_WORK/$name.pasta.log"
	log "spawn: pasta -l $name.pasta.log $* -- sh $name.sh"
	timeout -k 2 "$secs" "${PASTA[@]}" -l "$LAB_WORK/$name.pasta.log" "$@" -- sh "$LAB_WORK/$name.sh" \
		>"$LAB_WORK/$name.out" 2>&1
	rc=$?
	sed "s/^/    $name| /" "$LAB_WORK/$name.out"
	((rc == 124 || rc == 137)) && log "pasta_spawn $name: killed after ${secs}s"
	[[ -e $LAB_WORK/$name.started ]] ||
		fail "pasta exited with status $rc without starting the command in a namespace"
	return $rc
}

# alive PID: the process exists and is not a zombie.
alive() {
	local st
	st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $st && $st != Z ]]
}

# capture_start NAME FILTER...: tcpdump on the host side of the veth ($LAB_IF)
# into $LAB_WORK/NAME.pcap; returns once tcpdump is listening (at most 5 s).
capture_start() {
	local name=$1; shift
	timeout 60 tcpdump -i $LAB_IF -n -U --immediate-mode -Z root -w "$LAB_WORK/$name.pcap" "$@" \
		>"$LAB_WORK/$name.tcpdump.log" 2>&1 &
	eval "CAPTURE_PID_$name=$!"
	wait_until 5 grep -q "listening on" "$LAB_WORK/$name.tcpdump.log" ||
		fail "tcpdump did not start: $(cat "$LAB_WORK/$name.tcpdump.log")"
}

# capture_stop NAME: stop the capture and print it as text to $LAB_WORK/NAME.txt.
capture_stop() {
	local name=$1 pid
	eval "pid=\$CAPTURE_PID_$name"
	sleep 0.2
	kill -INT "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	timeout 10 tcpdump -n -r "$LAB_WORK/$name.pcap" >"$LAB_WORK/$name.txt" 2>/dev/null
	dump_file "$LAB_WORK/$name.txt"
}

# kv FILE KEY: value of the first "KEY=value" line in FILE.
kv() { sed -n "s/^$2=//p" "$1" 2>/dev/null | head -n 1; }

# ---- lab set-up ------------------------------------------------------------
lab_bg() {  # name cmd... : start a background server, log to $LAB_WORK/name.log
	local name=$1; shift
	"$@" >"$LAB_WORK/$name.log" 2>&1 &
	echo "$name $!" >>"$LAB_WORK/servers"
}

lab_setup() {
	set -u
	cd "$LAB_WORK" || return 2
	mount -t tmpfs -o mode=755 lab-run /run || return 2
	printf 'nameserver %s\nnameserver %s\nsearch %s\n' $GW4 $GW6 $SEARCH >"$LAB_WORK/resolv.conf"
	mount --bind "$LAB_WORK/resolv.conf" /etc/resolv.conf || return 2

	sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
	sysctl -qw net.ipv4.ping_group_range="0 2147483647"
	ip link set lo up
	ip netns add up || return 2
	$UP sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
	$UP ip link set lo up
	ip link add name $LAB_IF type veth peer name $LAB_PEER_IF netns up || return 2
	ip link set $LAB_IF address 02:00:00:00:02:02
	$UP ip link set $LAB_PEER_IF address 02:00:00:00:02:01

	ip addr add $H4/$PLEN4 dev $LAB_IF
	ip -6 addr add $H6/$PLEN6 dev $LAB_IF nodad
	$UP ip addr add $GW4/$PLEN4 dev $LAB_PEER_IF
	$UP ip -6 addr add $GW6/$PLEN6 dev $LAB_PEER_IF nodad
	$UP ip addr add $R4/32 dev lo
	$UP ip -6 addr add $R6/128 dev lo nodad
	$UP ip link set $LAB_PEER_IF up
	ip link set $LAB_IF up
	ip route add default via $GW4 dev $LAB_IF || return 2
	ip -6 route add default via $GW6 dev $LAB_IF || return 2

	# upstream servers
	lab_bg dnsmasq-upstream $UP dnsmasq --keep-in-foreground --conf-file=/dev/null \
		--no-resolv --no-hosts --user=root --bind-interfaces --port=53 \
		--listen-address=$GW4,$GW6,$R4,$R6 --log-queries --log-facility=- \
		--pid-file="$LAB_WORK/dnsmasq-upstream.pid" \
		--address=/$DNS_NAME/$DNS_A --address=/$DNS_NAME/$DNS_AAAA
	lab_bg echo-remote4 $UP socat -T 5 -b 65536 UDP4-RECVFROM:$ECHO_PORT,bind=$R4,reuseaddr,fork \
		SYSTEM:'read l; echo "remote:$l"'
	lab_bg echo-remote6 $UP socat -T 5 -b 65536 "UDP6-RECVFROM:$ECHO_PORT,bind=[$R6],reuseaddr,fork" \
		SYSTEM:'read l; echo "remote:$l"'
	# host loopback servers (what the gateway address is mapped to)
	lab_bg echo-lo4 socat -T 5 -b 65536 UDP4-RECVFROM:$ECHO_PORT,bind=127.0.0.1,reuseaddr,fork \
		SYSTEM:'read l; echo "lo:$l"'
	lab_bg echo-lo6 socat -T 5 -b 65536 "UDP6-RECVFROM:$ECHO_PORT,bind=[::1],reuseaddr,fork" \
		SYSTEM:'read l; echo "lo:$l"'
	lab_bg dnsmasq-decoy dnsmasq --keep-in-foreground --conf-file=/dev/null \
		--no-resolv --no-hosts --user=root --bind-interfaces --port=53 \
		--listen-address=127.0.0.1,::1 --log-queries --log-facility=- \
		--pid-file="$LAB_WORK/dnsmasq-decoy.pid" \
		--address=/$DNS_NAME/$DECOY_A --address=/$DNS_NAME/$DECOY_AAAA
	dump_file "$LAB_WORK/dnsmasq-upstream.log" "$LAB_WORK/dnsmasq-decoy.log"

	# the lab is usable once the upstream resolver answers over the veth
	local a
	a=$(wait_until 5 lab_dig_ok) || { lab_dump; echo "lab: upstream dnsmasq not answering"; return 2; }
	log "lab up: $LAB_IF $H4/$PLEN4 $H6/$PLEN6 via $GW4/$GW6; pasta=$PASTA_BIN"
}

lab_dig_ok() {
	[[ $(timeout 2 dig +short +time=1 +tries=1 @$GW4 $DNS_NAME A 2>/dev/null) == "$DNS_A" ]]
}

# ---- optional lab variants and servers (called by cases, never by lab_setup) ----

# lab_local_mode: take the host's uplink away for "local mode" cases: lab0 stays
# up (with its kernel link-local address and fe80::/64 route) but loses its
# global addresses and every IPv4/IPv6 route through it, so the host has no
# default route and no global address. The upstream namespace becomes
# unreachable from the host.
lab_local_mode() {
	ip -4 addr flush dev $LAB_IF || return 1
	ip -6 addr flush dev $LAB_IF scope global || return 1
	ip -4 route flush dev $LAB_IF 2>/dev/null
	ip -6 route del default 2>/dev/null
	[[ -z $(ip -4 route show) && -z $(ip -6 route show default) ]] || return 1
	[[ -z $(ip -o addr show scope global) ]] || return 1
	log "lab: local mode: no default route, no global address on $LAB_IF"
}

# lab_tcp_server NAME WHERE MODE PORT [tcplab.py ARG...]: start
# `tcplab.py MODE --port PORT ARGS` (a server mode, with one --bind per address)
# in the upstream namespace (WHERE=up) or in the host's (WHERE=host), logging
# to $LAB_WORK/NAME.log (dumped on failure); returns once it listens on every
# --bind address (at most 15 s: serve-http first computes its blob's hash).
lab_tcp_server() {
	local name=$1 where=$2 mode=$3 port=$4 pre=() a n=0; shift 4
	[[ $where == up ]] && pre=($UP)
	for a in "$@"; do [[ $a == --bind ]] && n=$((n + 1)); done
	lab_bg "$name" "${pre[@]}" timeout 300 "$PYTHON" -u "$LAB_DIR/tcplab.py" "$mode" --port "$port" "$@"
	dump_file "$LAB_WORK/$name.log"
	lab_tcp_listening() {
		local c
		c=$(grep -c '^listening ' "$LAB_WORK/$1.log" 2>/dev/null)
		((${c:-0} >= $2))
	}
	wait_until 15 lab_tcp_listening "$name" $n ||
		fail "TCP server $name ($mode on port $port) not listening: $(tail -n 5 "$LAB_WORK/$name.log")"
}

# vm_rss_kib PID: VmRSS of PID in KiB (empty if the process is gone).
vm_rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status" 2>/dev/null; }

# need_tools TOOL...: end the case with status 3 ("missing prerequisite", as
# run.sh does) when a tool beyond run.sh's REQUIRED list is not installed.
need_tools() {
	local t missing=""
	for t in "$@"; do command -v "$t" >/dev/null || missing+=" $t"; done
	[[ -z $missing ]] && return 0
	log "missing tools:$missing (needed by $LAB_CASE)"
	exit 3
}

# need_ebpf: end the case with status 3 ("missing prerequisite") when PASTA_BIN
# was built without the eBPF programs (cargo xtask build-ebpf, then rebuild):
# --ebpf can then only fall back, whoever runs it.
need_ebpf() {
	local out
	out=$(timeout 10 "$PASTA_BIN" --splice-only --ebpf -- true 2>&1)
	[[ $out == *"built without the eBPF programs"* ]] || return 0
	log "$PASTA_BIN was built without the eBPF programs (needed by $LAB_CASE): $out"
	exit 3
}

# ---- pasta in the background (port forwarding cases) ---------------------------

# pasta_bg NAME [PASTA_OPTION...]: start pasta ("${PASTA[@]}", spawn form) in the
# background with a placeholder command (sleep) in the namespace it creates,
# pasta logging to $LAB_WORK/NAME.pasta.log and its output going to
# $LAB_WORK/NAME.out (both dumped on failure). Returns once the placeholder runs
# (at most 10 s; pasta and the placeholder live at most PASTA_BG_SECS, default
# 300 s), with NS_PID = the placeholder's PID as the lab sees it and
# NS=(nsenter -t NS_PID -n): `"${NS[@]}" CMD` runs CMD as the lab's root in
# pasta's network namespace (servers, clients, ss). pasta_bg_stop ends it.
pasta_bg() {
	local name=$1 ino="" d; shift
	rm -f "$LAB_WORK/$name.netns"
	dump_file "$LAB_WORK/$name.pasta.log" "$LAB_WORK/$name.out"
	local life=${PASTA_BG_SECS:-300}
	log "background: pasta -l $name.pasta.log $* -- sh -c '...; exec sleep $life'"
	timeout -k 2 "$life" "${PASTA[@]}" -l "$LAB_WORK/$name.pasta.log" "$@" -- \
		sh -c "readlink /proc/self/ns/net >'$LAB_WORK/$name.netns.tmp' &&
			mv '$LAB_WORK/$name.netns.tmp' '$LAB_WORK/$name.netns' && exec sleep $life" \
		>"$LAB_WORK/$name.out" 2>&1 &
	PASTA_BG_PID=$! PASTA_BG_NAME=$name
	wait_until 10 test -s "$LAB_WORK/$name.netns" ||
		fail "pasta $* did not start its command: $(tail -n 5 "$LAB_WORK/$name.out")"
	ino=$(<"$LAB_WORK/$name.netns")
	# the placeholder runs in pasta's PID namespace too: find it by its netns
	pasta_bg_find() {
		NS_PID=""
		for d in /proc/[0-9]*; do
			[[ $(readlink "$d/ns/net" 2>/dev/null) == "$ino" &&
				$(cat "$d/comm" 2>/dev/null) == sleep ]] && { NS_PID=${d#/proc/}; return 0; }
		done
		return 1
	}
	wait_until 5 pasta_bg_find || fail "no process found in pasta's namespace $ino"
	NS=(nsenter -t "$NS_PID" -n)
	log "pasta's namespace: $ino, placeholder pid $NS_PID"
}

# pasta_bg_stop: end the placeholder started by pasta_bg (SIGKILL: it is PID 1
# of pasta's PID namespace, which ignores SIGTERM from outside); pasta must
# then exit by itself within 5 s. Returns 1 (after killing pasta) if it did
# not, 0 otherwise; PASTA_BG_RC = pasta's exit status.
pasta_bg_stop() {
	local rc=0
	kill -KILL "$NS_PID" 2>/dev/null
	if ! wait_until 5 eval '! alive $PASTA_BG_PID'; then
		log "pasta_bg_stop: pasta still running 5 s after its command ended: killing it"
		kill "$PASTA_BG_PID" 2>/dev/null
		rc=1
	fi
	wait "$PASTA_BG_PID" 2>/dev/null
	PASTA_BG_RC=$?
	sed "s/^/    $PASTA_BG_NAME| /" "$LAB_WORK/$PASTA_BG_NAME.out" 2>/dev/null
	return $rc
}

# tcp_listening NETNS-PREFIX... -- PORT...: every PORT has a TCP listener
# (`ss -Htln`) in the namespace the prefix command enters (empty: the lab's).
# udp_bound: the same for bound UDP sockets (`ss -Huan`).
ss_has_ports() {
	local opt=$1 pre=() p out; shift
	while [[ $1 != -- ]]; do pre+=("$1"); shift; done
	shift
	out=$(timeout 5 "${pre[@]}" ss "$opt" 2>/dev/null) || return 1
	for p in "$@"; do
		awk -v p="$p" '{ n = split($4, a, ":"); if (a[n] == p) f = 1 } END { exit !f }' <<<"$out" ||
			return 1
	done
}
tcp_listening() { ss_has_ports -Htln "$@"; }
udp_bound() { ss_has_ports -Huan "$@"; }
