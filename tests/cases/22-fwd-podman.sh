# 22-fwd-podman: port forwarding the way Podman and rootlesskit start pasta.
#
# A. Podman (rootless, `podman run -p 8080:80 -p 127.0.0.1:8081:81
#    -p [::1]:5353:53/udp`): as root of a user namespace (unshare --user
#    --map-root-user --mount, like 07-daemon), a netns bound to a file, then
#      pasta --config-net -t none -u none -T none -U none --no-map-gw --quiet
#            --netns FILE --map-guest-addr 169.254.1.2 --dns-forward 169.254.1.1
#            -t 8080-8080:80-80 -t 127.0.0.1/8081-8081:81-81
#            -u ::1/5353-5353:53-53 --pid F
#    Servers in the namespace on TCP 80 and 81 and UDP 53 (run by the lab's
#    root through nsenter); from the host:
#    - TCP 127.0.0.1:8080 reaches port 80 (peer 192.0.2.2, the namespace's own
#      address), upstream's 198.51.100.1 -> 192.0.2.2:8080 reaches port 80
#      (peer 198.51.100.1);
#    - TCP 127.0.0.1:8081 reaches port 81; 192.0.2.2:8081 is refused;
#    - UDP [::1]:5353 reaches the UDP server on 53 (peer 2001:db8:2::2);
#      127.0.0.1:5353 is not forwarded;
#    from the namespace:
#    - TCP to 169.254.1.2 reaches a server on the host's address 192.0.2.2;
#    - DNS to 169.254.1.1 is answered by the host's resolver (the upstream
#      dnsmasq, www.lab.test -> 203.0.113.7), not by host loopback's decoy.
# B. rootlesskit: `pasta --host-lo-to-ns-lo --version` exits 0; then
#      pasta --config-net --tcp-ports=auto --udp-ports=auto --host-lo-to-ns-lo
#    a TCP and a UDP server started in the namespace after pasta are reachable
#    from the host's 127.0.0.1 within 5 s, and see 127.0.0.1 as peer.
#
# Servers and clients: 20-fwd-tcp-splice.py (serve-xfer, client-xfer) and
# 21-fwd-udp.py (serve, client).

need_tools ss nsenter dig
T=("$PYTHON" "$(dirname "$LAB_CASE_FILE")/20-fwd-tcp-splice.py")
U=("$PYTHON" "$(dirname "$LAB_CASE_FILE")/21-fwd-udp.py")
MIB1=$((1 << 20))
SHA_UP=$(timeout 20 "${T[@]}" pattern-sha $MIB1 up) SHA_DOWN=$(timeout 20 "${T[@]}" pattern-sha $MIB1 down)
XFER_OK="result reply=got $SHA_UP down=$SHA_DOWN"

# xfer_to [PREFIX...] -- ADDR PORT [SRC]: 1 MiB each way with client-xfer
xfer_to() {
	local pre=()
	while [[ $1 != -- ]]; do pre+=("$1"); shift; done
	shift
	timeout 40 "${pre[@]}" "${T[@]}" client-xfer "$1" "$2" $MIB1 $MIB1 ${3:-} 2>&1 | tr '\n' ' ' | sed 's/ *$//'
}
# udp_to [PREFIX...] -- ADDR PORT: 3 datagrams with 21-fwd-udp.py client
udp_to() {
	local pre=()
	while [[ $1 != -- ]]; do pre+=("$1"); shift; done
	shift
	timeout 40 "${pre[@]}" "${U[@]}" client "$1" "$2" 3 500 2>&1 | tr '\n' ' ' | sed 's/ *$//; s/ retries=[0-9]*$//'
}
# seen LOG PEER: the TCP server's log names PEER within 5 s
seen() { wait_until 5 grep -q "^xfer $2: got $MIB1 " "$1"; }

# ---- A. Podman ----------------------------------------------------------------
PODMAN_ARGS=(--config-net -t none -u none -T none -U none --no-map-gw --quiet
	--netns "$LAB_WORK/ns/podman" --map-guest-addr 169.254.1.2 --dns-forward 169.254.1.1
	-t 8080-8080:80-80 -t 127.0.0.1/8081-8081:81-81 -u ::1/5353-5353:53-53
	--pid "$LAB_WORK/podman.pid" -l "$LAB_WORK/podman.pasta.log")
printf '%s\n' "${PODMAN_ARGS[@]}" >"$LAB_WORK/podman.args"
dump_file "$LAB_WORK/podman.pasta.log" "$LAB_WORK/podman.out" "$LAB_WORK/podman.inner.log"
# the user namespace's side: netns file, a process holding it for nsenter, pasta
cat >"$LAB_WORK/podman.inner.sh" <<'INNER'
set -u
W=$LAB_WORK
mkdir -p "$W/ns" && mount -t tmpfs -o mode=755 netns "$W/ns" || exit 10
touch "$W/ns/podman" && unshare --net="$W/ns/podman" true || exit 11
nsenter --net="$W/ns/podman" sleep 100 &
echo $! >"$W/podman.holder.tmp" && mv "$W/podman.holder.tmp" "$W/podman.holder"
mapfile -t args <"$W/podman.args"
timeout 20 "$PASTA_BIN" "${args[@]}" >"$W/podman.out" 2>&1
echo $? >"$W/podman.rc"
i=0
while [ ! -e "$W/podman.done" ] && [ $i -lt 900 ]; do sleep 0.1; i=$((i + 1)); done
[ -s "$W/podman.pid" ] && kill "$(cat "$W/podman.pid")"
INNER
log "A: pasta ${PODMAN_ARGS[*]}"
timeout -k 2 100 unshare --user --map-root-user --mount bash "$LAB_WORK/podman.inner.sh" \
	>"$LAB_WORK/podman.inner.log" 2>&1 &
INNER_PID=$!
wait_until 20 test -s "$LAB_WORK/podman.rc" ||
	fail "pasta (Podman's options) did not return within 20 s (status file missing)"
rc=$(<"$LAB_WORK/podman.rc")
sed 's/^/    podman| /' "$LAB_WORK/podman.out"
expect_eq "exit status of pasta with Podman's options" "$rc" 0
[[ -s $LAB_WORK/podman.holder ]] || fail "no process holding the netns"
NSP=(nsenter -t "$(<"$LAB_WORK/podman.holder")" -n)

lab_bg p80 "${NSP[@]}" timeout 100 "${T[@]}" serve-xfer 80
lab_bg p81 "${NSP[@]}" timeout 100 "${T[@]}" serve-xfer 81
lab_bg p53 "${NSP[@]}" timeout 100 "${U[@]}" serve 53
lab_bg h10700 timeout 100 "${T[@]}" serve-xfer 10700
dump_file "$LAB_WORK/p80.log" "$LAB_WORK/p81.log" "$LAB_WORK/p53.log" "$LAB_WORK/h10700.log"
wait_until 5 tcp_listening "${NSP[@]}" -- 80 81 || fail "servers on 80, 81 not listening: $("${NSP[@]}" ss -tln)"
wait_until 5 udp_bound "${NSP[@]}" -- 53 || fail "UDP server on 53 not bound: $("${NSP[@]}" ss -uan)"
wait_until 5 tcp_listening -- 8080 8081 10700 || fail "not listening on the host on 8080, 8081: $(ss -tlnp)"
wait_until 5 udp_bound -- 5353 || fail "pasta not bound to UDP 5353 on the host: $(ss -uanp)"

expect_eq "TCP 127.0.0.1:8080 -> namespace port 80" "$(xfer_to -- 127.0.0.1 8080)" "$XFER_OK"
seen "$LAB_WORK/p80.log" "$H4" || fail "the server on 80 did not see $H4: $(tail -n 3 "$LAB_WORK/p80.log")"
ok "the server on 80 saw $H4 (splice)"
expect_eq "TCP $H4:8080 from upstream's $R4 -> namespace port 80" "$(xfer_to $UP -- $H4 8080 $R4)" "$XFER_OK"
seen "$LAB_WORK/p80.log" "$R4" || fail "the server on 80 did not see $R4: $(tail -n 3 "$LAB_WORK/p80.log")"
ok "the server on 80 saw $R4 (tap)"
expect_eq "TCP 127.0.0.1:8081 -> namespace port 81" "$(xfer_to -- 127.0.0.1 8081)" "$XFER_OK"
seen "$LAB_WORK/p81.log" "$H4" || fail "the server on 81 did not see $H4: $(tail -n 3 "$LAB_WORK/p81.log")"
ok "the server on 81 saw $H4"
r=$(timeout 10 $UP socat -T 3 - TCP4:$H4:8081 </dev/null 2>&1)
[[ $r == *"Connection refused"* ]] || fail "127.0.0.1/8081 is reachable on $H4 from upstream: $r"
ok "$H4:8081 refused (forwarded on 127.0.0.1 only)"
expect_eq "UDP [::1]:5353 -> namespace port 53" "$(udp_to -- ::1 5353)" \
	"result replies=3/3 from=[::1]:5353 peer=$H6 port=same"
r=$(timeout 10 "${U[@]}" client 127.0.0.1 5353 1 100 2>&1 | tr '\n' ' ')
[[ $r == "result replies=0/1 "* ]] || fail "UDP 127.0.0.1:5353 answered although only ::1 is forwarded: $r"
ok "UDP 127.0.0.1:5353 not forwarded (-u ::1/...)"

expect_eq "TCP from the namespace to 169.254.1.2:10700 (the host's $H4)" \
	"$(xfer_to "${NSP[@]}" -- 169.254.1.2 10700)" "$XFER_OK"
wait_until 5 grep -q "^xfer [^:]*: got $MIB1 " "$LAB_WORK/h10700.log" ||
	fail "the host's server on 10700 logged no transfer: $(tail -n 3 "$LAB_WORK/h10700.log")"
ok "the host's server: $(grep "^xfer " "$LAB_WORK/h10700.log" | head -n 1 | cut -d: -f1)"
got=$(timeout 10 "${NSP[@]}" dig +short +time=2 +tries=2 @169.254.1.1 $DNS_NAME A 2>&1)
expect_eq "DNS from the namespace to 169.254.1.1 (--dns-forward)" "$got" "$DNS_A"
touch "$LAB_WORK/podman.done"
wait "$INNER_PID"

# ---- B. rootlesskit -------------------------------------------------------------
timeout 10 "$PASTA_BIN" --host-lo-to-ns-lo --version >"$LAB_WORK/lo2lo.version" 2>&1
rc=$?
dump_file "$LAB_WORK/lo2lo.version"
expect_eq "exit status of pasta --host-lo-to-ns-lo --version" "$rc" 0
pasta_bg rlk --config-net --tcp-ports=auto --udp-ports=auto --host-lo-to-ns-lo
sleep 1
lab_bg rlkt "${NS[@]}" timeout 100 "${T[@]}" serve-xfer 10710
lab_bg rlku "${NS[@]}" timeout 100 "${U[@]}" serve 10711
dump_file "$LAB_WORK/rlkt.log" "$LAB_WORK/rlku.log"
wait_until 5 tcp_listening "${NS[@]}" -- 10710 || fail "the namespace's TCP server on 10710 did not start"
wait_until 5 udp_bound "${NS[@]}" -- 10711 || fail "the namespace's UDP server on 10711 did not start"
wait_until 5 tcp_listening -- 10710 || fail "--tcp-ports=auto: pasta does not listen on 10710 on the host within 5 s: $(ss -tlnp)"
wait_until 5 udp_bound -- 10711 || fail "--udp-ports=auto: pasta is not bound to UDP 10711 on the host within 5 s: $(ss -uanp)"
expect_eq "--tcp-ports=auto --host-lo-to-ns-lo: TCP 127.0.0.1:10710" "$(xfer_to -- 127.0.0.1 10710)" "$XFER_OK"
seen "$LAB_WORK/rlkt.log" 127.0.0.1 || fail "the server on 10710 did not see 127.0.0.1: $(tail -n 3 "$LAB_WORK/rlkt.log")"
ok "the namespace's TCP server saw 127.0.0.1"
expect_eq "--udp-ports=auto --host-lo-to-ns-lo: UDP 127.0.0.1:10711" "$(udp_to -- 127.0.0.1 10711)" \
	"result replies=3/3 from=127.0.0.1:10711 peer=127.0.0.1 port=same"
pasta_bg_stop || fail "pasta did not exit after its command ended"
