# 36-offload: tap offloads (IFF_VNET_HDR, TUNSETOFFLOAD) at MTU 1500.
# pasta -m 1500 --config-net; in the namespace:
#
#   ethtool -k IF                      tx-checksumming, tcp-segmentation-offload
#                                      (and tx-udp-segmentation) are on
#   curl http://R/blob | sha256sum     24 MiB download, vs the server's hash
#   tcplab.py blob | curl -T - R/up    24 MiB upload, the server replies the
#                                      sha256 and length it got
#   36-offload.py uso R 7 4 1000       one send of 4 x 1000 bytes with
#                                      UDP_SEGMENT: a UDP super-frame on the
#                                      tap; the remote echo server must get 4
#                                      datagrams (4 replies, one per segment)
#   36-offload.py burst R 5555 24 1200 a server upstream answers with 23
#                                      datagrams of 1200 bytes and one of
#                                      600, back to back (one UDP_SEGMENT
#                                      send): all 24 must arrive, in order
#                                      and intact, whether pasta wrote them
#                                      as one UDP super-frame or not
#   ping -c1 R                         ICMP and ICMPv6 echo
#
# IPv4 and IPv6. pasta's exit counters line must show super-frames both
# ways (tap_rx_gso > 0: frames larger than the MTU from the namespace;
# tap_tx_gso > 0: frames of several MSS to it) and no drop_offload_malformed
# (-d: the counters line is logged at exit), batched writes of the
# uploads (tcp_batched_writes > 0) and, with offloads, the UDP super-frames
# sent with UDP_SEGMENT (udp_gso_sends >= 2) and datagrams from the host
# gathered into UDP super-frames to the namespace (udp_uso_frames > 0).
# With PASST_RS_NO_OFFLOAD=1 in the environment the same case checks the
# plain path (offloads off, counters 0; the integration test offload_off):
# there a download fills a whole transmit batch (64 frames of one MSS) per
# peek of the socket, which once stalled (a peek one buffer short was taken
# for a drained socket). Foreign binaries skip the passt-rs-only checks.
# lab-timeout: 150

need_tools curl sha256sum ethtool
HTTP_PORT=8080 MIB=24
export HTTP_PORT MIB
lab_tcp_server http up serve-http $HTTP_PORT --mib $MIB --bind $R4 --bind "$R6"
down_want=$(sed -n "s/^blob $MIB MiB sha256 //p" "$LAB_WORK/http.log")
[[ $down_want =~ ^[0-9a-f]{64}$ ]] || fail "serve-http logged no blob hash: $(head -n 3 "$LAB_WORK/http.log")"
up_want=$(timeout 30 "$PYTHON" "$LAB_DIR/tcplab.py" blob-sha --mib $MIB --seed up)
[[ $up_want =~ ^[0-9a-f]{64}\ [0-9]+$ ]] || fail "tcplab.py blob-sha printed '$up_want'"
PY36=${LAB_CASE_FILE%.sh}.py
BURST_PORT=5555
export PY36 BURST_PORT
lab_bg burst-remote4 $UP timeout 300 "$PYTHON" -u "$PY36" burst-serve $R4 $BURST_PORT
lab_bg burst-remote6 $UP timeout 300 "$PYTHON" -u "$PY36" burst-serve "$R6" $BURST_PORT
burst_listening() { grep -q '^listening' "$LAB_WORK/burst-remote$1.log" 2>/dev/null; }
wait_until 15 burst_listening 4 && wait_until 15 burst_listening 6 ||
	fail "burst servers not listening: $(cat "$LAB_WORK"/burst-remote*.log)"

pasta_spawn off 110 -m 1500 --config-net -d <<'NS'
IF=$(eval "$ns_ifname_cmd")
echo "mtu $(ip -o link show "$IF" | sed -n 's/.* mtu \([0-9]*\) .*/\1/p')"
ethtool -k "$IF" | sed -n 's/^\(tx-checksumming\|tcp-segmentation-offload\|tx-udp-segmentation\): \([a-z]*\).*/feature \1 \2/p'
T="$PYTHON $LAB_DIR/tcplab.py"
WD='%{stderr}code=%{http_code} bytes=%{size_download} bps=%{speed_download}\n'
for t in "4 $R4" "6 [$R6]"; do
	set -- $t
	url=http://$2:$HTTP_PORT
	{ timeout 30 curl -sS -g --connect-timeout 5 -w "$WD" "$url/blob" 2>"$LAB_WORK/down$1.info"
	  echo "rc=$?" >>"$LAB_WORK/down$1.info"; } | sha256sum | cut -d' ' -f1 >"$LAB_WORK/down$1.sha"
	echo "down$1 $(tr '\n' ' ' <"$LAB_WORK/down$1.info") sha256=$(cat "$LAB_WORK/down$1.sha")"
	timeout 30 $T blob --mib $MIB --seed up |
		timeout 30 curl -sS -g --connect-timeout 5 -T - "$url/up" >"$LAB_WORK/up$1.reply" 2>"$LAB_WORK/up$1.info"
	echo "up$1 rc=$? $(tr '\n' ' ' <"$LAB_WORK/up$1.info") reply=$(cat "$LAB_WORK/up$1.reply")"
done
# try3 OUT PATTERN CMD...: run CMD, output to OUT, until OUT has a line
# matching PATTERN, at most 3 times (the first IPv6 datagram may wait on NDP).
try3() {
	out=$1 pat=$2 n=0
	shift 2
	while [ $n -lt 3 ]; do
		n=$((n + 1))
		"$@" >"$out" 2>&1
		grep -q "$pat" "$out" && return 0
	done
	return 1
}
for t in "4 $R4" "6 $R6"; do
	set -- $t
	try3 "$LAB_WORK/uso$1.out" '^replies 4$' timeout 10 $PYTHON "$PY36" uso "$2" $ECHO_PORT 4 1000
	sed "s/^/uso$1 /" "$LAB_WORK/uso$1.out"
	try3 "$LAB_WORK/burst$1.out" '^burst ok' timeout 10 $PYTHON "$PY36" burst "$2" $BURST_PORT 24 1200
	echo "burst$1 $(cat "$LAB_WORK/burst$1.out")"
	rc=1; n=0
	while [ $n -lt 3 ] && [ $rc -ne 0 ]; do
		n=$((n + 1))
		timeout 5 ping -$1 -n -c1 -W2 "$2" >/dev/null 2>&1
		rc=$?
	done
	echo "ping$1 rc=$rc"
done
exit 0
NS
rc=$?
((rc == 0)) || fail "pasta exited with status $rc"
out=$LAB_WORK/off.out
expect_eq "namespace MTU" "$(sed -n 's/^mtu //p' "$out")" 1500
for v in 4 6; do
	expect_eq "IPv$v download sha256" "$(sed -n "s/^down$v .*sha256=//p" "$out")" "$down_want"
	expect_eq "IPv$v upload: sha256 and length the server received" "$(sed -n "s/^up$v rc=0 .*reply=//p" "$out")" "$up_want"
	expect_eq "IPv$v ping" "$(sed -n "s/^ping$v //p" "$out")" "rc=0"
	want="replies 4"
	# "remote:" and the 999-byte line of each segment.
	for i in 0 1 2 3; do want+=" reply remote:seg$i- len=1006"; done
	expect_eq "IPv$v UDP burst from upstream: 24 datagrams in order, intact" "$(sed -n "s/^burst$v //p" "$out")" "burst ok 24"
	expect_eq "IPv$v UDP_SEGMENT send: 4 datagrams echoed" "$(sed -n "s/^uso$v //p" "$out" | tr '\n' ' ' | sed 's/ $//')" "$want"
done
if skip_unless_ours "offload features and GSO counters"; then
	cl=$(grep -E '^([0-9]+\.[0-9]+: +)?([A-Za-z]+: +)?counters:' "$LAB_WORK/off.pasta.log" | tail -n 1)
	[[ -n $cl ]] || fail "no 'counters:' line in pasta's log"
	c() { local v; v=$(sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<" ${cl#*counters:} "); echo "${v:-0}"; }
	expect_eq "drop_offload_malformed" "$(c drop_offload_malformed)" 0
	# The uploads (sha256 checked above) went through the batched writes:
	# several segments of a tap batch with one sendmsg.
	bw=$(c tcp_batched_writes)
	((bw > 0)) || fail "no batched TCP write to the host (tcp_batched_writes=0): $cl"
	ok "batched TCP writes: $bw carrying $(c tcp_batched_segs) segments"
	if [[ -n ${PASST_RS_NO_OFFLOAD:-} ]]; then
		expect_eq "ethtool: tx-checksumming without offloads" "$(sed -n 's/^feature tx-checksumming //p' "$out")" off
		expect_eq "super-frames without offloads" "$(c tap_rx_gso) $(c tap_tx_gso) $(c udp_uso_frames)" "0 0 0"
	else
		for f in tx-checksumming tcp-segmentation-offload tx-udp-segmentation; do
			expect_eq "ethtool -k: $f" "$(sed -n "s/^feature $f //p" "$out")" on
		done
		rx=$(c tap_rx_gso) tx=$(c tap_tx_gso)
		((rx > 0)) || fail "no super-frame from the namespace (tap_rx_gso=0): $cl"
		((tx > 0)) || fail "no super-frame to the namespace (tap_tx_gso=0): $cl"
		ok "super-frames: $rx from the namespace, $tx to it ($cl)"
		# The UDP_SEGMENT super-frame of each family: its datagrams went
		# to the host with one UDP_SEGMENT send (echoed one by one above).
		ug=$(c udp_gso_sends)
		((ug >= 2)) || fail "UDP super-frames not sent with UDP_SEGMENT (udp_gso_sends=$ug): $cl"
		ok "UDP_SEGMENT sends: $ug, $(c udp_gso_segs) datagrams, fallbacks $(c udp_gso_fallbacks)"
		# Datagrams from the host that were queued together (the bursts,
		# the echoes) went to the namespace as UDP super-frames.
		uf=$(c udp_uso_frames)
		((uf > 0)) || fail "no UDP super-frame to the namespace (udp_uso_frames=0): $cl"
		ok "UDP super-frames to the namespace: $uf, carrying $(c udp_uso_segs) datagrams"
	fi
fi
