#!/bin/bash
# hotpath-lab.sh - syscall counts of a pasta on the splice path, per
# transaction / connection / byte (docs/hotpath.md).
#
# Run as PID 1 of a private lab, never on the host's own namespace:
#   unshare --net --mount --pid --fork bash tests/bench/hotpath-lab.sh PASTA LOAD SECS [strace|perf|none]
# PASTA: a pasta binary (target/release/pasta, /usr/bin/pasta); LOAD: one of
# rr.py's clients (tcp-rr, tcp-crr, udp-rr), "stream" (iperf3 over the
# splice path, bytes) or "tap-send" / "tap-recv" (iperf3 from the namespace
# to the gateway address, through the tap; -R: the namespace receives),
# "tap-rr" / "tap-crr" (rr.py tcp-rr / tcp-crr from the namespace to the
# gateway address, through the tap, to a server here on loopback), at
# MTU $HOTPATH_MTU (default 65520);
# SECS: seconds of load. The lab: a veth (its peer up, without addresses) with documentation
# addresses and a default route (nothing leaves: the peer has no address, no forwarding),
# a namespace owned by its own user namespace, pasta attached to it with
# -t 5203,5201 -u 5203; the server in the namespace, the client here over
# 127.0.0.1. With "strace", strace -c -f counts pasta's syscalls during the
# load (slows it: the rates printed then mean nothing); with "perf", perf
# record -g writes $HOTPATH_OUT/perf.data; with "sched", perf stat prints
# pasta's task-clock, context switches and CPU migrations during the load.
set -uo pipefail
export LC_ALL=C
(($$ == 1)) || { echo "hotpath-lab.sh: run as PID 1 of unshare --net --mount --pid --fork"; exit 3; }
BIN=$1 LOAD=$2 SECS=$3 MODE=${4:-none}
OUT=${HOTPATH_OUT:-/tmp/hotpath}
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$OUT"
mount -t tmpfs -o mode=755 hp-run /run
mount -t proc proc /proc
ip link set lo up
ip link add hp0 type veth peer name hp1
ip link set hp1 up
ip addr add 192.0.2.2/24 dev hp0
ip -6 addr add 2001:db8::2/64 dev hp0 nodad
ip link set hp0 up
ip route add default via 192.0.2.1
ip -6 route add default via 2001:db8::1 dev hp0
sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
unshare --user --map-root-user --net sleep $((SECS + 120)) &
HOLD=$!
for _ in $(seq 50); do [[ $(readlink /proc/$HOLD/ns/net) != $(readlink /proc/self/ns/net) ]] && break; sleep 0.1; done
mkdir -p /run/netns && touch /run/netns/hp && mount --bind /proc/$HOLD/ns/net /run/netns/hp
NS="nsenter --net=/run/netns/hp"
$NS sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
nsenter --user=/proc/$HOLD/ns/user "$BIN" --config-net -m "${HOTPATH_MTU:-65520}" -t 5201,5203 -T none -u 5203 -U none \
	-f -q --netns /run/netns/hp >"$OUT/pasta.log" 2>&1 &
PASTA=$!
for _ in $(seq 50); do [[ -n $($NS ip -4 route show default 2>/dev/null) ]] && break; sleep 0.1; done
case $LOAD in
stream) $NS iperf3 -s -1 -p 5201 >/dev/null 2>&1 & CLI=(iperf3 -c 127.0.0.1 -p 5201 -t "$SECS" -J) ;;
tap-send | tap-recv)
	# the tap path: the client in the namespace to the gateway address,
	# which pasta maps to this namespace's loopback (--map-host-loopback)
	iperf3 -s -1 -p 5202 >/dev/null 2>&1 &
	CLI=($NS iperf3 -c 192.0.2.1 -p 5202 -t "$SECS" -J)
	[[ $LOAD == tap-recv ]] && CLI+=(-R) ;;
tap-rr | tap-crr)
	# rr.py's TCP loads the other way, through the tap: the client in the
	# namespace to the gateway address, the server here on loopback
	python3 "$DIR/rr.py" serve-tcp 5204 &
	CLI=($NS python3 "$DIR/rr.py" "tcp-${LOAD#tap-}" 192.0.2.1 5204 "$SECS") ;;
udp-rr) $NS python3 "$DIR/rr.py" serve-udp 5203 & CLI=(python3 "$DIR/rr.py" udp-rr 127.0.0.1 5203 "$SECS") ;;
*) $NS python3 "$DIR/rr.py" serve-tcp 5203 & CLI=(python3 "$DIR/rr.py" "$LOAD" 127.0.0.1 5203 "$SECS") ;;
esac
SRV=$!
sleep 1.5
TPID=""
case $MODE in
strace) strace ${HOTPATH_STRACE:--c} -f -p $PASTA -o "$OUT/strace.txt" & TPID=$! ; sleep 1 ;;
perf) perf record -g -p $PASTA -o "$OUT/perf.data" >/dev/null 2>&1 & TPID=$! ; sleep 1 ;;
sched) perf stat -e task-clock,context-switches,cpu-migrations -p $PASTA -o "$OUT/sched.txt" & TPID=$! ; sleep 1 ;;
esac
T0=$(awk '{print $14+$15}' /proc/$PASTA/stat)
"${CLI[@]}" >"$OUT/client.out" 2>"$OUT/client.err"
T1=$(awk '{print $14+$15}' /proc/$PASTA/stat)
[[ -n $TPID ]] && { kill -INT $TPID; wait $TPID; }
if [[ $LOAD == stream || $LOAD == tap-send || $LOAD == tap-recv ]]; then
	python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["end"]["sum_received"]; print(int(e["bytes"]), e["seconds"])' "$OUT/client.out"
else
	cat "$OUT/client.out"
fi
echo "cpu_ticks $((T1 - T0))"
[[ $MODE == strace ]] && cat "$OUT/strace.txt"
[[ $MODE == sched ]] && grep -E 'task-clock|context-switches|cpu-migrations' "$OUT/sched.txt"
kill $SRV $PASTA $HOLD 2>/dev/null
wait
