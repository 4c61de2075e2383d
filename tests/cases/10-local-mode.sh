# 10-local-mode: pasta on a host without a usable uplink (lab_local_mode: lab0
# up with only its link-local address, no default route, no global address)
# falls back to "local mode" (man page, "Local mode for disconnected setups"):
#
#   pasta --config-net -- sh: ip -j addr / ip -j -4 route / ip -j -6 route
# - the namespace's interface gets 169.254.2.1/16 and no global IPv6 address;
# - default routes via 169.254.2.2 and fe80::1 (what upstream pasta does);
# - ping 169.254.2.2 and ping -6 fe80::1%IF are answered, and UDP echo to both
#   comes back from the host's loopback echo servers ("lo:<token>"): the
#   gateway addresses are mapped to the host's loopback.

LM4=169.254.2.1 LM4_PLEN=16 LMGW4=169.254.2.2 LMGW6=fe80::1
export LM4 LM4_PLEN LMGW4 LMGW6
lab_local_mode || fail "cannot set up local mode: $(ip -br addr; ip route; ip -6 route)"

TOKEN=tok$RANDOM$RANDOM
export TOKEN
pasta_spawn local 40 --config-net <<'NS'
IF=$(eval "$ns_ifname_cmd")
ip -j addr show >"$LAB_WORK/addr.json" || exit 10
ip -j -4 route show >"$LAB_WORK/route4.json" || exit 10
ip -j -6 route show >"$LAB_WORK/route6.json" || exit 10
ip -br addr; ip -4 route; ip -6 route
# the IPv6 link-local source address must leave DAD before ping -6 can use it
n=0
while [ $n -lt 50 ] && [ -n "$(ip -6 addr show dev "$IF" tentative)" ]; do sleep 0.1; n=$((n + 1)); done
for t in "4 $LMGW4" "6 $LMGW6%$IF"; do
	set -- $t
	rc=1; n=0
	while [ $n -lt 3 ] && [ $rc -ne 0 ]; do
		n=$((n + 1))
		timeout 5 ping -$1 -n -c1 -W2 "$2" >"$LAB_WORK/ping$1.txt" 2>&1
		rc=$?
	done
	cat "$LAB_WORK/ping$1.txt"
	echo "result ping$1 rc=$rc tries=$n"
done
for t in "4 UDP4:$LMGW4:$ECHO_PORT" "6 UDP6:[$LMGW6%$IF]:$ECHO_PORT"; do
	set -- $t
	n=0; out=""
	while [ $n -lt 3 ] && [ -z "$out" ]; do
		n=$((n + 1))
		out=$(echo "u$1-$TOKEN" | timeout 5 socat -T 2 - "$2" 2>&1 | head -n 1)
	done
	echo "result udp$1 $out"
done
exit 0
NS
rc=$?
((rc == 0)) || fail "pasta exited with status $rc"
dump_file "$LAB_WORK/addr.json" "$LAB_WORK/route4.json" "$LAB_WORK/route6.json"
for f in addr route4 route6; do
	[[ -s $LAB_WORK/$f.json ]] || fail "no ip -j output $f.json from the namespace"
done

"$PYTHON" - "$LAB_WORK" >"$LAB_WORK/checks.txt" 2>&1 <<'PY'
import json, os, sys
w = sys.argv[1]
e = os.environ
load = lambda n: json.load(open(os.path.join(w, n)))
addrs, r4, r6 = load("addr.json"), load("route4.json"), load("route6.json")

def check(name, got, want):
    print(f"{'ok  ' if got == want else 'FAIL'} {name}: got {got!r}, want {want!r}")

ifs = [a for a in addrs if a["ifname"] != "lo"]
check("one interface besides lo", len(ifs), 1)
ai = ifs[0] if ifs else {"ifname": None, "addr_info": []}
ifname = ai["ifname"]
v4 = sorted((a["local"], a["prefixlen"]) for a in ai["addr_info"] if a["family"] == "inet")
check(f"IPv4 addresses on {ifname}", v4, [(e["LM4"], int(e["LM4_PLEN"]))])
g6 = sorted(a["local"] for a in ai["addr_info"]
            if a["family"] == "inet6" and a.get("scope") != "link")
check(f"IPv6 addresses other than link-local on {ifname}", g6, [])
d4 = [(r.get("gateway"), r.get("dev")) for r in r4 if r.get("dst") == "default"]
d6 = [(r.get("gateway"), r.get("dev")) for r in r6 if r.get("dst") == "default"]
check("IPv4 default route", d4, [(e["LMGW4"], ifname)])
check("IPv6 default route", d6, [(e["LMGW6"], ifname)])
PY
sed 's/^/    /' "$LAB_WORK/checks.txt"
[[ -s $LAB_WORK/checks.txt ]] || fail "no checks ran"
if grep -q -v '^ok  ' "$LAB_WORK/checks.txt"; then
	fail "local-mode configuration differs: $(grep -v '^ok  ' "$LAB_WORK/checks.txt" | head -n 3 | tr '\n' ';')"
fi
ok "$(wc -l <"$LAB_WORK/checks.txt") local-mode configuration checks"

for f in 4 6; do
	line=$(grep "^result ping$f " "$LAB_WORK/local.out")
	[[ $line == *" rc=0 "* ]] || fail "ping -$f to the local-mode gateway failed: ${line:-no result}"
	ok "ping -$f local-mode gateway: ${line#result }"
done
expect_eq "UDP echo via $LMGW4 (host loopback)" "$(sed -n 's/^result udp4 //p' "$LAB_WORK/local.out")" "lo:u4-$TOKEN"
expect_eq "UDP echo via $LMGW6 (host loopback)" "$(sed -n 's/^result udp6 //p' "$LAB_WORK/local.out")" "lo:u6-$TOKEN"
