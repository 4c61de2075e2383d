# 24-fwd-splice-only: pasta --splice-only (passt(1): "Do not create a tap
# device in the namespace. In this mode, pasta only forwards loopback traffic
# between namespaces"), which also implies --host-lo-to-ns-lo.
#
# pasta --splice-only -t 10701 -T 10702 -u 10703 -U none:
#   - the namespace has no interface but lo (and lo is up);
#   - TCP from the host's 127.0.0.1 and ::1 to 10701 reaches a server in the
#     namespace, which sees loopback as peer; 1 MiB echoed back intact;
#   - UDP from the host's 127.0.0.1 to 10703 reaches an echo in the namespace;
#   - TCP from the namespace's loopback to 10702 reaches a host loopback server;
#   - a client from upstream to the host's address on 10701 is not forwarded
#     (there is no tap to send it through): it gets no data.

need_tools socat sha256sum
head -c 1M /dev/urandom >"$LAB_WORK/blob" || fail "cannot write test data"
want=$(sha256sum <"$LAB_WORK/blob" | cut -c1-64)
lab_bg hostsrv timeout 60 socat TCP4-LISTEN:10702,bind=127.0.0.1,reuseaddr,fork SYSTEM:'echo host-saw=$SOCAT_PEERADDR'
wait_until 5 tcp_listening -- 10702 || fail "host loopback server not listening"

(
	for _ in $(seq 100); do [[ -e $LAB_WORK/ready ]] && break; sleep 0.1; done
	for a in 127.0.0.1 '[::1]'; do
		got=$(timeout 10 socat -t 5 - TCP:$a:10701 <"$LAB_WORK/blob" 2>/dev/null | sha256sum | cut -c1-64)
		echo "tcp $a $got"
	done
	echo "udp $(echo udp-ping | timeout 5 socat -T 2 - UDP4:127.0.0.1:10703 2>&1)"
	echo "remote $(timeout 5 $UP socat -T 2 - TCP4:$H4:10701 </dev/null 2>&1 | head -c 200 | tr '\n' ' ')"
	touch "$LAB_WORK/done"
) >"$LAB_WORK/client.log" 2>&1 &
dump_file "$LAB_WORK/client.log" "$LAB_WORK/ns.log"

pasta_spawn so 40 --splice-only -t 10701 -T 10702 -u 10703 -U none <<'NS'
exec >"$LAB_WORK/ns.log" 2>&1
ip -o link show | awk '{ print $2, $3 }'
socat TCP6-LISTEN:10701,ipv6only=0,reuseaddr,fork SYSTEM:'echo peer=$SOCAT_PEERADDR >>'"$LAB_WORK"'/peers; cat' &
socat UDP4-LISTEN:10703,bind=127.0.0.1,fork SYSTEM:'cat' &
sleep 0.5
echo "ns-to-host $(timeout 5 socat -T 2 - TCP4:127.0.0.1:10702 </dev/null 2>&1)"
touch "$LAB_WORK/ready"
for _ in $(seq 200); do [ -e "$LAB_WORK/done" ] && break; sleep 0.1; done
NS
rc=$?
((rc == 0)) || fail "pasta exited with status $rc"

links=$(grep -c ': <' "$LAB_WORK/ns.log")
expect_eq "interfaces in the namespace" "$links" 1
grep -q '^lo: <.*UP' "$LAB_WORK/ns.log" || fail "lo is not up in the namespace: $(cat "$LAB_WORK/ns.log")"
ok "only lo in the namespace, up"
for a in 127.0.0.1 '[::1]'; do
	expect_eq "TCP via $a, 1 MiB echoed" "$(grep -F "tcp $a " "$LAB_WORK/client.log" | cut -d' ' -f3)" "$want"
done
grep -qv -e '127.0.0.1' -e '0000:0000:0000:0000:0000:0000:0000:0001' -e 'ffff:7f00:0001' "$LAB_WORK/peers" &&
	fail "a spliced connection was not seen from loopback: $(cat "$LAB_WORK/peers")"
ok "server saw loopback peers: $(sort -u "$LAB_WORK/peers" | tr '\n' ' ')"
expect_eq "UDP echo via 127.0.0.1" "$(grep '^udp ' "$LAB_WORK/client.log")" "udp udp-ping"
expect_eq "-T to the host's loopback" "$(grep '^ns-to-host ' "$LAB_WORK/ns.log")" "ns-to-host host-saw=127.0.0.1"
expect_eq "client from upstream gets nothing" "$(grep '^remote ' "$LAB_WORK/client.log" | grep -c peer=)" 0
ok "splice-only forwards loopback traffic only"
