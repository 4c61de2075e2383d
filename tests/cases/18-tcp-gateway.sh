# 18-tcp-gateway: TCP from the namespace (pasta --config-net) to the gateway
# address reaches the host's loopback (pasta maps 192.0.2.1 -> 127.0.0.1 and
# 2001:db8:2::1 -> ::1), not the real gateway:
#
# - echo: tcplab.py serve-echo on 127.0.0.1 / ::1 port 7 answers "lo:<token>";
#   a decoy on the real gateway in upstream (192.0.2.1 / 2001:db8:2::1 port 7)
#   answers "gw:<token>". 20 connections per family must all get "lo:".
# - bulk: 64 MiB download (curl | sha256sum) and upload (chunked PUT, the
#   server replies the sha256) from serve-http on 127.0.0.1 / ::1 port 8080
#   via the gateway address, each within 20 s (the echo runs within 8 s). Uploads are 8 MiB for binaries
#   other than passt-rs (upstream's slow namespace-to-host path, see
#   12-tcp-bulk), or GW_UP_MIB.

need_tools curl sha256sum
ECHO_TCP_PORT=7 HTTP_PORT=8080 MIB=64 XFER_TIMEOUT=20
if [[ -n ${GW_UP_MIB:-} ]]; then UP_MIB=$GW_UP_MIB
elif pasta_is_ours; then UP_MIB=$MIB
else
	UP_MIB=8
	log "relaxed: uploads of $UP_MIB MiB, not $MIB, for a binary other than passt-rs (slow namespace-to-host path)"
fi
export ECHO_TCP_PORT HTTP_PORT MIB UP_MIB XFER_TIMEOUT
lab_tcp_server echo-lo host serve-echo $ECHO_TCP_PORT --prefix lo: --bind 127.0.0.1 --bind ::1
lab_tcp_server echo-gw up serve-echo $ECHO_TCP_PORT --prefix gw: --bind $GW4 --bind "$GW6"
lab_tcp_server http-lo host serve-http $HTTP_PORT --mib $MIB --bind 127.0.0.1 --bind ::1
down_want=$(sed -n "s/^blob $MIB MiB sha256 //p" "$LAB_WORK/http-lo.log")
[[ $down_want =~ ^[0-9a-f]{64}$ ]] || fail "serve-http logged no blob hash: $(head -n 3 "$LAB_WORK/http-lo.log")"
up_want=$(timeout 30 "$PYTHON" "$LAB_DIR/tcplab.py" blob-sha --mib $UP_MIB --seed up)

pasta_spawn gw 105 --config-net <<'NS'
T="$PYTHON $LAB_DIR/tcplab.py"
WD='%{stderr}code=%{http_code} bytes=%{size_download} bps=%{speed_download} seconds=%{time_total}\n'
WU='%{stderr}code=%{http_code} bytes=%{size_upload} bps=%{speed_upload} seconds=%{time_total}\n'
for t in "4 $GW4 $GW4" "6 $GW6 [$GW6]"; do
	set -- $t
	echo "echo$1 $(timeout 8 $T client-many --addr $2 --port $ECHO_TCP_PORT --count 20 --prefix lo: \
		--timeout 6 2>&1 | tr '\n' ' ')"
	url=http://$3:$HTTP_PORT
	{ timeout $XFER_TIMEOUT curl -sS -g --connect-timeout 5 -w "$WD" "$url/blob" 2>"$LAB_WORK/down$1.info"
	  echo "rc=$?" >>"$LAB_WORK/down$1.info"; } | sha256sum | cut -d' ' -f1 >"$LAB_WORK/down$1.sha"
	echo "down$1 $(tr '\n' ' ' <"$LAB_WORK/down$1.info") sha256=$(cat "$LAB_WORK/down$1.sha")"
	timeout $XFER_TIMEOUT $T blob --mib $UP_MIB --seed up |
		timeout $XFER_TIMEOUT curl -sS -g --connect-timeout 5 -w "$WU" -T - "$url/up" \
		>"$LAB_WORK/up$1.reply" 2>"$LAB_WORK/up$1.info"
	echo "rc=$?" >>"$LAB_WORK/up$1.info"
	echo "up$1 $(tr '\n' ' ' <"$LAB_WORK/up$1.info") reply=$(cat "$LAB_WORK/up$1.reply")"
done
exit 0
NS
rc=$?
((rc == 0)) || fail "pasta exited with status $rc"

gbit() { awk -v b="$1" 'BEGIN { printf "%.2f Gbit/s", b * 8 / 1e9 }'; }
for f in 4 6; do
	if [[ $f == 4 ]]; then gw=$GW4 lo=127.0.0.1; else gw=$GW6 lo=::1; fi
	e=$(grep "^echo$f " "$LAB_WORK/gw.out")
	[[ $e == *"result connected=20 echoed=20 failed=0 "* ]] || {
		[[ $e == *"gw:"* ]] && fail "TCP to $gw reached the real gateway, not the host's loopback: $e"
		fail "TCP echo via $gw: ${e:-no result}"
	}
	ok "TCP echo via $gw: 20 connections answered by $lo"
	d=$(grep "^down$f " "$LAB_WORK/gw.out")
	[[ $d == *" rc=0 "* ]] || fail "download via $gw: curl failed or timed out: ${d:-no result}"
	expect_eq "download via $gw sha256" "${d##*sha256=}" "$down_want"
	ok "download via $gw from $lo: $MIB MiB in $(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$d") s, $(gbit "$(sed -n 's/.* bps=\([0-9]*\).*/\1/p' <<<"$d")")"
	u=$(grep "^up$f " "$LAB_WORK/gw.out")
	[[ $u == *" rc=0 "* ]] || fail "upload via $gw: curl failed or timed out: ${u:-no result}"
	expect_eq "upload via $gw: sha256 and length $lo received" "${u##*reply=}" "$up_want"
	ok "upload via $gw to $lo: $UP_MIB MiB in $(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$u") s, $(gbit "$(sed -n 's/.* bps=\([0-9]*\).*/\1/p' <<<"$u")")"
done
