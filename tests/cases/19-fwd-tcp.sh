# 19-fwd-tcp: inbound TCP port forwarding (-t), host -> namespace, in every
# specifier form, through both of pasta's paths:
#
#   splice  a client on the host's loopback (127.0.0.1, ::1); the server in the
#           namespace sees the namespace's own address (192.0.2.2,
#           2001:db8:2::2) as peer, or loopback with --host-lo-to-ns-lo;
#   tap     a client in the upstream namespace connecting to the host's address
#           (192.0.2.2, 2001:db8:2::2) from 198.51.100.1 / 2001:db8:100::1
#           (bind=) or from its veth address 192.0.2.1 / 2001:db8:2::1: the
#           server sees that real client address.
#
# Each transfer is two connections to a socat server in the namespace, which
# logs its peer address for each:
#   up    the client sends "up" and 10 MiB of random data and shuts its write
#         side down; the server answers the sha256 of what it read;
#   down  the client sends "down N" (and keeps its write side open: shut-none);
#         the server sends the first N bytes of the same data and closes.
# Both hashes must match, and both peer addresses must be the expected one.
# Downloads through the tap are 1 MiB, not 10, for binaries other than
# passt-rs (FWD_TAP_DOWN_MIB overrides): upstream pasta's namespace-to-host
# tap path stalls in this lab (the namespace's TCP retransmits with backoff):
# 10 MiB took 27 ms to over 40 s, 1 MiB 10 ms to 3.5 s.
# (One connection for both directions, with the 10 MiB answer sent after the
# client's FIN, would hit an upstream pasta bug: the spliced path drops the
# data still queued when both sides have closed; 20-fwd-tcp-splice covers
# replies after a half-close.)
#
# Run A: --config-net -t 10001 -t 10010-10012 -t 10020:20020
#        -t 10030-10031:20030-20031 -t 127.0.0.1/10040 -t 192.0.2.2/10041
#        -t %lo/10050 -t 192.0.2.2%lab0/10051 -t 10002 (-u/-T/-U none)
#   - single, range (2 ports of 3) and translated forms via both paths, IPv4
#     and IPv6; the translated ones reach the target port (20020, 20030-20031);
#   - the host connecting to its own address 192.0.2.2 goes through the tap and
#     is seen from 192.0.2.1 (--map-guest-addr's default, the gateway); IPv6
#     2001:db8:2::2 is seen from a link-local address (fe80::/10);
#   - address-bound: 127.0.0.1/10040 spliced, refused on 192.0.2.2 and ::1;
#     192.0.2.2/10041 via the tap, refused on 127.0.0.1;
#   - interface-bound: %lo/10050 spliced (IPv4 and IPv6), refused from
#     upstream; 192.0.2.2%lab0/10051 via the tap;
#   - a server listening only on the namespace's loopback (port 10002) is not
#     reached from the host's loopback (its connection is closed without data).
# Run B: --host-lo-to-ns-lo -t 10001 -t 10002: spliced clients are seen from
#   127.0.0.1 / ::1, the loopback-only server is reached, the tap path still
#   sees the real client address.

need_tools sha256sum ss nsenter
DATA=$LAB_WORK/data.bin
timeout 20 head -c 10M /dev/urandom >"$DATA" || fail "cannot write 10 MiB of test data"
DATA_SHA=$(sha256sum <"$DATA" | cut -c1-64)
if [[ -n ${FWD_TAP_DOWN_MIB:-} ]]; then TAP_DOWN_MIB=$FWD_TAP_DOWN_MIB
elif pasta_is_ours; then TAP_DOWN_MIB=10
else
	TAP_DOWN_MIB=1
	log "relaxed: downloads through the tap of $TAP_DOWN_MIB MiB, not 10, for a binary other than passt-rs (slow namespace-to-host tap path)"
fi
TAP_DOWN_SHA=$(head -c ${TAP_DOWN_MIB}M "$DATA" | sha256sum | cut -c1-64)

# norm_ip ADDR: canonical text form of an IPv4/IPv6 address (socat's
# SOCAT_PEERADDR is "192.0.2.2" or "[2001:0db8:0002:...]")
norm_ip() {
	"$PYTHON" -c 'import ipaddress, sys
try: print(ipaddress.ip_address(sys.argv[1].strip("[]")))
except ValueError: print("invalid:" + sys.argv[1])' "$1"
}

# ns_server PORT [BIND4 BIND6]: TCP servers on PORT in pasta's namespace (IPv4
# and IPv6 sockets; on every address unless BIND4/BIND6), logging each peer to
# $LAB_WORK/peers.$RUN.PORT; "up": reads to EOF and answers the sha256,
# "down N": sends the first N bytes of $DATA
ns_server() {
	local port=$1 b4=${2:-} b6=${3:-} sys
	sys="read m n; echo \$SOCAT_PEERADDR >>$LAB_WORK/peers.$RUN.$port
		if [ \"\$m\" = up ]; then sha256sum | cut -c1-64; else head -c \$n $DATA; fi"
	: >"$LAB_WORK/peers.$RUN.$port"
	lab_bg "srv.$RUN.$port.4" "${NS[@]}" timeout 100 socat -t 30 -T 30 -b 65536 \
		"TCP4-LISTEN:$port,reuseaddr,fork${b4:+,bind=$b4}" SYSTEM:"$sys"
	lab_bg "srv.$RUN.$port.6" "${NS[@]}" timeout 100 socat -t 30 -T 30 -b 65536 \
		"TCP6-LISTEN:$port,reuseaddr,fork,ipv6only=1${b6:+,bind=[$b6]}" SYSTEM:"$sys"
}

# xfer LABEL WHERE SOCAT-ADDRESS SERVER-PORT PEER: 10 MiB up, 10 MiB (or
# TAP_DOWN_MIB through the tap) down through the forwarded port (client on
# the host, WHERE=host, or in upstream, WHERE=up; WHERE=host-tap: on the host,
# through the tap);
# the server on SERVER-PORT in the namespace must log PEER as its peer
# (fe80:: : any link-local address)
xfer() {
	local label=$1 where=$2 addr=$3 sport=$4 want_peer=$5 pre=() n rc t0 ms got peer
	local down_mib=10 down_sha=$DATA_SHA
	[[ $where == up ]] && pre=($UP)
	[[ $where != host ]] && down_mib=$TAP_DOWN_MIB down_sha=$TAP_DOWN_SHA
	n=$(wc -l <"$LAB_WORK/peers.$RUN.$sport")
	t0=${EPOCHREALTIME/./}
	{ echo up; cat "$DATA"; } | timeout 40 "${pre[@]}" socat -t 30 -T 30 -b 65536 - "$addr" \
		>"$LAB_WORK/reply" 2>"$LAB_WORK/reply.err"
	rc=$?
	ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
	((rc == 0)) || fail "$label: upload: socat $addr exited with status $rc after $ms ms: $(head -c 300 "$LAB_WORK/reply.err")"
	got=$(head -c 100 "$LAB_WORK/reply")
	[[ $got == "$DATA_SHA" ]] || fail "$label: upload: the server read data with sha256 '$got', want $DATA_SHA"
	t0=${EPOCHREALTIME/./}
	echo down $((down_mib << 20)) | timeout 40 "${pre[@]}" socat -t 30 -T 30 -b 65536 - "$addr,shut-none" \
		>"$LAB_WORK/reply" 2>"$LAB_WORK/reply.err"
	rc=$?
	ms="$ms+$(((${EPOCHREALTIME/./} - t0) / 1000))"
	((rc == 0)) || fail "$label: download: socat $addr exited with status $rc after $ms ms: $(head -c 300 "$LAB_WORK/reply.err")"
	got=$(sha256sum <"$LAB_WORK/reply" | cut -c1-64)
	[[ $got == "$down_sha" ]] ||
		fail "$label: download: the client got $(wc -c <"$LAB_WORK/reply") bytes with sha256 $got, want $down_mib MiB with $down_sha"
	for n in $((n + 1)) $((n + 2)); do
		peer=$(sed -n "${n}p" "$LAB_WORK/peers.$RUN.$sport")
		[[ -n $peer ]] || fail "$label: the server on port $sport logged no peer for connection $n"
		peer=$(norm_ip "$peer")
		if [[ $want_peer == fe80:: ]]; then
			[[ $peer == fe80:* ]] || fail "$label: server on port $sport saw peer $peer, want a link-local address"
		else
			[[ $peer == "$want_peer" ]] || fail "$label: server on port $sport saw peer $peer, want $want_peer"
		fi
	done
	ok "$label: 10 MiB up, $down_mib MiB down in $ms ms, server port $sport saw $peer"
}

# refused LABEL WHERE SOCAT-ADDRESS: the connection is refused
refused() {
	local label=$1 where=$2 addr=$3 pre=() out rc
	[[ $where == up ]] && pre=($UP)
	out=$(timeout 10 "${pre[@]}" socat -T 3 - "$addr" </dev/null 2>&1)
	rc=$?
	((rc != 0)) && [[ $out == *"Connection refused"* ]] ||
		fail "$label: $addr not refused (status $rc): $(head -c 300 <<<"$out")"
	ok "$label: $addr refused"
}

# not_reached LABEL SOCAT-ADDRESS SERVER-PORT: a host loopback client gets no
# data back and the server on SERVER-PORT logs no connection
not_reached() {
	local label=$1 addr=$2 sport=$3 out
	out=$(timeout 10 socat -T 3 - "$addr" </dev/null 2>&1)
	sleep 0.5
	[[ -z $out || $out == *"Connection reset"* || $out == *"Connection refused"* ]] ||
		fail "$label: $addr answered: $(head -c 300 <<<"$out")"
	[[ ! -s $LAB_WORK/peers.$RUN.$sport ]] ||
		fail "$label: the server on port $sport was reached from $(cat "$LAB_WORK/peers.$RUN.$sport")"
	ok "$label: $addr did not reach the server on port $sport"
}

NO_AUTO=(-u none -T none -U none)

# ---- A: every form, default address translation -----------------------------
RUN=a
pasta_bg fwda --config-net "${NO_AUTO[@]}" -t 10001 -t 10010-10012 -t 10020:20020 \
	-t 10030-10031:20030-20031 -t 127.0.0.1/10040 -t 192.0.2.2/10041 \
	-t %lo/10050 -t 192.0.2.2%lab0/10051 -t 10002
for p in 10001 10010 10012 20020 20030 20031 10040 10041 10050 10051; do ns_server $p; done
ns_server 10002 127.0.0.1 ::1
wait_until 5 tcp_listening "${NS[@]}" -- 10001 10010 10012 20020 20030 20031 10040 10041 10050 10051 10002 ||
	fail "servers in the namespace not listening: $("${NS[@]}" ss -tln)"
wait_until 5 tcp_listening -- 10001 10010 10011 10012 10020 10030 10031 10040 10041 10050 10051 10002 ||
	fail "pasta is not listening on every forwarded port on the host: $(ss -tlnp)"
ok "pasta listens on the host: $(ss -Htln | awk '{ print $4 }' | grep -E ':100[0-9][0-9]$' | sort | tr '\n' ' ')"

xfer "single, splice IPv4" host TCP4:127.0.0.1:10001 10001 $H4
xfer "single, splice IPv6" host "TCP6:[::1]:10001" 10001 $H6
xfer "single, tap IPv4 from $R4" up "TCP4:$H4:10001,bind=$R4" 10001 $R4
xfer "single, tap IPv6 from $R6" up "TCP6:[$H6]:10001,bind=[$R6]" 10001 $R6
xfer "single, tap IPv4 from $GW4" up "TCP4:$H4:10001" 10001 $GW4
xfer "single, tap IPv6 from $GW6" up "TCP6:[$H6]:10001" 10001 $GW6
xfer "single, host to its own $H4 (tap)" host-tap "TCP4:$H4:10001" 10001 $GW4
xfer "single, host to its own $H6 (tap)" host-tap "TCP6:[$H6]:10001" 10001 fe80::
xfer "range, first port, splice IPv4" host TCP4:127.0.0.1:10010 10010 $H4
xfer "range, last port, splice IPv6" host "TCP6:[::1]:10012" 10012 $H6
xfer "range, first port, tap IPv6" up "TCP6:[$H6]:10010,bind=[$R6]" 10010 $R6
xfer "range, last port, tap IPv4" up "TCP4:$H4:10012,bind=$R4" 10012 $R4
xfer "translated 10020:20020, splice IPv4" host TCP4:127.0.0.1:10020 20020 $H4
xfer "translated 10020:20020, tap IPv6" up "TCP6:[$H6]:10020,bind=[$R6]" 20020 $R6
xfer "translated range 10030:20030, splice IPv6" host "TCP6:[::1]:10030" 20030 $H6
xfer "translated range 10031:20031, splice IPv4" host TCP4:127.0.0.1:10031 20031 $H4
xfer "translated range 10031:20031, tap IPv4" up "TCP4:$H4:10031,bind=$R4" 20031 $R4
xfer "translated range 10030:20030, tap IPv6" up "TCP6:[$H6]:10030,bind=[$R6]" 20030 $R6
xfer "127.0.0.1/10040, splice" host TCP4:127.0.0.1:10040 10040 $H4
refused "127.0.0.1/10040 from upstream" up "TCP4:$H4:10040"
refused "127.0.0.1/10040 on ::1" host "TCP6:[::1]:10040"
xfer "$H4/10041, tap" up "TCP4:$H4:10041,bind=$R4" 10041 $R4
refused "$H4/10041 on 127.0.0.1" host TCP4:127.0.0.1:10041
xfer "%lo/10050, splice IPv4" host TCP4:127.0.0.1:10050 10050 $H4
xfer "%lo/10050, splice IPv6" host "TCP6:[::1]:10050" 10050 $H6
refused "%lo/10050 from upstream" up "TCP4:$H4:10050"
xfer "$H4%lab0/10051, tap" up "TCP4:$H4:10051,bind=$R4" 10051 $R4
not_reached "loopback-only server in the namespace, IPv4" TCP4:127.0.0.1:10002 10002
not_reached "loopback-only server in the namespace, IPv6" "TCP6:[::1]:10002" 10002
pasta_bg_stop || fail "pasta did not exit after its command ended"

# ---- B: --host-lo-to-ns-lo ---------------------------------------------------
RUN=b
pasta_bg fwdb --config-net "${NO_AUTO[@]}" --host-lo-to-ns-lo -t 10001 -t 10002
ns_server 10001
ns_server 10002 127.0.0.1 ::1
wait_until 5 tcp_listening "${NS[@]}" -- 10001 10002 || fail "servers in the namespace not listening"
wait_until 5 tcp_listening -- 10001 10002 || fail "pasta is not listening on 10001 and 10002: $(ss -tlnp)"
xfer "--host-lo-to-ns-lo, splice IPv4" host TCP4:127.0.0.1:10001 10001 127.0.0.1
xfer "--host-lo-to-ns-lo, splice IPv6" host "TCP6:[::1]:10001" 10001 ::1
xfer "--host-lo-to-ns-lo, tap IPv4" up "TCP4:$H4:10001,bind=$R4" 10001 $R4
xfer "--host-lo-to-ns-lo, loopback-only server, IPv4" host TCP4:127.0.0.1:10002 10002 127.0.0.1
xfer "--host-lo-to-ns-lo, loopback-only server, IPv6" host "TCP6:[::1]:10002" 10002 ::1
pasta_bg_stop || fail "pasta did not exit after its command ended"
