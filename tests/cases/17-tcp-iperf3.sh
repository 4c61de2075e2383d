# 17-tcp-iperf3: iperf3 through pasta (--config-net) to an iperf3 server on the
# remote host in upstream, IPv4 and IPv6, both directions:
#
#   iperf3 -c R -t 3 -J       namespace -> remote host
#   iperf3 -c R -t 3 -J -R    remote host -> namespace
# Each run must complete (exit 0, within 15 s, no "error" in the JSON) with a
# non-zero received byte count; the bitrates are printed (not judged). Before
# each run the server must be listening again (its log line "Server
# listening on 5201 (test #N)", at most 10 s after the previous run): the
# previous test's end exchange and close got through.

need_tools iperf3 ss
IPERF_PORT=5201
export IPERF_PORT
lab_bg iperf3 $UP timeout 300 iperf3 -s --forceflush -p $IPERF_PORT
dump_file "$LAB_WORK/iperf3.log"
iperf_listening() { $UP ss -Htln "sport = :$IPERF_PORT" | grep -q .; }
wait_until 5 iperf_listening || fail "iperf3 server not listening: $(cat "$LAB_WORK/iperf3.log")"

pasta_spawn iperf 100 --config-net <<'NS'
n=0
for t in "4 $R4 up" "4 $R4 down" "6 $R6 up" "6 $R6 down"; do
	set -- $t
	r=""; [ $3 = down ] && r=-R
	# the server takes one test at a time: wait (at most 10 s) until it is
	# back to listening, i.e. it got the end of the previous test
	n=$((n + 1)); w=0
	while [ $w -lt 100 ] && ! grep -q "^Server listening on $IPERF_PORT (test #$n)" "$LAB_WORK/iperf3.log"; do
		sleep 0.1; w=$((w + 1))
	done
	echo "ready $1 $3 test=$n waited=$((w * 100))ms"
	timeout 15 iperf3 -c $2 -p $IPERF_PORT -t 3 --connect-timeout 5000 -J $r >"$LAB_WORK/$1-$3.json" 2>"$LAB_WORK/$1-$3.err"
	echo "iperf $1 $3 rc=$?"
done
exit 0
NS
rc=$?
((rc == 0)) || fail "pasta exited with status $rc"

for t in "4 up" "4 down" "6 up" "6 down"; do
	set -- $t
	what="IPv$1 $([[ $2 == up ]] && echo "namespace -> remote" || echo "remote -> namespace (-R)")"
	dump_file "$LAB_WORK/$1-$2.err"
	ready=$(grep "^ready $1 $2 " "$LAB_WORK/iperf.out")
	[[ $ready == *" waited="[0-9]*ms && ${ready##*waited=} != 10000ms ]] ||
		fail "iperf3 $what: the server was not listening for a new test 10 s after the previous one ended (${ready:-no result}): the end of the previous test did not reach it"
	line=$(grep "^iperf $1 $2 " "$LAB_WORK/iperf.out")
	[[ $line == *" rc=0" ]] || fail "iperf3 $what: ${line:-no result}; $(head -c 300 "$LAB_WORK/$1-$2.json")"
	res=$("$PYTHON" - "$LAB_WORK/$1-$2.json" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    if d.get("error"):
        raise ValueError(d["error"])
    s = d["end"]["sum_received"]
    print(f'{int(s["bytes"])} {s["bits_per_second"] / 1e9:.2f} {s["seconds"]:.1f}')
except Exception as e:
    print(f"error {e!r}")
PY
	)
	read -r bytes gbit secs <<<"$res"
	[[ $bytes =~ ^[0-9]+$ ]] || fail "iperf3 $what: cannot read the JSON result: $res"
	((bytes > 0)) || fail "iperf3 $what: nothing received"
	ok "iperf3 $what: $gbit Gbit/s received ($((bytes / 1048576)) MiB in $secs s)"
done
