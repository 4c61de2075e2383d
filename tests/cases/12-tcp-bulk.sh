# 12-tcp-bulk: 200 MiB over TCP each way between the namespace (pasta
# --config-net) and an HTTP server on the remote host in upstream
# (tcplab.py serve-http on 198.51.100.1 and 2001:db8:100::1, port 8080):
#
#   curl http://R/blob | sha256sum             download, vs the server's hash
#   tcplab.py blob --seed up | curl -T - R/up  upload (chunked PUT); the server
#                                              replies the sha256 and length it got
# IPv4 and IPv6. Time limits: each transfer at most XFER_TIMEOUT (60) seconds,
# and all four together at most XFER_BUDGET (95) seconds (run.sh kills the
# whole case at 120 s); a transfer starting late gets what is left of the
# budget. At several Gbit/s a transfer takes well under a second. The rate
# curl measured is printed.
#
# Upload size: BULK_UP_MIB, default 200 MiB for passt-rs and 8 MiB for other
# binaries: upstream pasta's namespace-to-host path stalls in this lab (the
# namespace's TCP retransmits and backs off): 200 MiB took 14 s to over 60 s
# per upload, 20 MiB 0.6 s to 53 s, which cannot fit the case's 120 s.

need_tools curl sha256sum
HTTP_PORT=8080 MIB=200 XFER_TIMEOUT=${XFER_TIMEOUT:-60} XFER_BUDGET=${XFER_BUDGET:-95}
if [[ -n ${BULK_UP_MIB:-} ]]; then UP_MIB=$BULK_UP_MIB
elif pasta_is_ours; then UP_MIB=$MIB
else
	UP_MIB=8
	log "relaxed: uploads of $UP_MIB MiB, not $MIB, for a binary other than passt-rs (slow namespace-to-host path)"
fi
export HTTP_PORT MIB UP_MIB XFER_TIMEOUT XFER_BUDGET
lab_tcp_server http up serve-http $HTTP_PORT --mib $MIB --bind $R4 --bind "$R6"
down_want=$(sed -n "s/^blob $MIB MiB sha256 //p" "$LAB_WORK/http.log")
[[ $down_want =~ ^[0-9a-f]{64}$ ]] || fail "serve-http logged no blob hash: $(head -n 3 "$LAB_WORK/http.log")"
up_want=$(timeout 30 "$PYTHON" "$LAB_DIR/tcplab.py" blob-sha --mib $UP_MIB --seed up)
[[ $up_want =~ ^[0-9a-f]{64}\ [0-9]+$ ]] || fail "tcplab.py blob-sha printed '$up_want'"
log "want: download sha256 $down_want, upload '$up_want'"

pasta_spawn bulk $((XFER_BUDGET + 10)) --config-net <<'NS'
T="$PYTHON $LAB_DIR/tcplab.py"
t_end=$(($(date +%s) + XFER_BUDGET))
lim() {  # seconds for the next transfer: min(XFER_TIMEOUT, what is left), >= 1
	l=$((t_end - $(date +%s)))
	[ $l -gt $XFER_TIMEOUT ] && l=$XFER_TIMEOUT
	[ $l -lt 1 ] && l=1
	echo $l
}
WD='%{stderr}code=%{http_code} bytes=%{size_download} bps=%{speed_download} seconds=%{time_total}\n'
WU='%{stderr}code=%{http_code} bytes=%{size_upload} bps=%{speed_upload} seconds=%{time_total}\n'
for t in "4 $R4" "6 [$R6]"; do
	set -- $t
	url=http://$2:$HTTP_PORT
	l=$(lim)
	{ timeout $l curl -sS -g --connect-timeout 5 -w "$WD" "$url/blob" 2>"$LAB_WORK/down$1.info"
	  echo "rc=$? limit=${l}s" >>"$LAB_WORK/down$1.info"; } | sha256sum | cut -d' ' -f1 >"$LAB_WORK/down$1.sha"
	echo "down$1 $(tr '\n' ' ' <"$LAB_WORK/down$1.info") sha256=$(cat "$LAB_WORK/down$1.sha")"
	l=$(lim)
	timeout $l $T blob --mib $UP_MIB --seed up |
		timeout $l curl -sS -g --connect-timeout 5 -w "$WU" -T - "$url/up" \
		>"$LAB_WORK/up$1.reply" 2>"$LAB_WORK/up$1.info"
	echo "rc=$? limit=${l}s" >>"$LAB_WORK/up$1.info"
	echo "up$1 $(tr '\n' ' ' <"$LAB_WORK/up$1.info") reply=$(cat "$LAB_WORK/up$1.reply")"
done
exit 0
NS
rc=$?
((rc == 0)) || fail "pasta exited with status $rc"

gbit() {  # bytes/s -> "N.NN Gbit/s"
	awk -v b="$1" 'BEGIN { printf "%.2f Gbit/s", b * 8 / 1e9 }'
}
for f in 4 6; do
	d=$(grep "^down$f " "$LAB_WORK/bulk.out")
	[[ -n $d ]] || fail "no IPv$f download result"
	[[ $d == *" rc=0 "* ]] || fail "IPv$f download: curl failed or timed out: $d"
	expect_eq "IPv$f download sha256" "${d##*sha256=}" "$down_want"
	ok "IPv$f download: $MIB MiB in $(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$d") s, $(gbit "$(sed -n 's/.* bps=\([0-9]*\).*/\1/p' <<<"$d")")"
	u=$(grep "^up$f " "$LAB_WORK/bulk.out")
	[[ -n $u ]] || fail "no IPv$f upload result"
	[[ $u == *" rc=0 "* ]] || fail "IPv$f upload: curl failed or timed out: $u"
	expect_eq "IPv$f upload: sha256 and length the server received" "${u##*reply=}" "$up_want"
	ok "IPv$f upload: $UP_MIB MiB in $(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$u") s, $(gbit "$(sed -n 's/.* bps=\([0-9]*\).*/\1/p' <<<"$u")")"
done
