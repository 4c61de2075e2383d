# 03-config-net: with --config-net, pasta itself configures the namespace like
# the host's outbound interface: same name, the host's addresses and prefix
# lengths, default routes via the host's gateways, MTU 65520, link and lo up.
#
#   pasta --config-net -- sh: ip -j addr / ip -j link / ip -j -4 route / ip -j -6 route

pasta_spawn confignet 30 --config-net <<'NS'
ip -j addr show >"$LAB_WORK/addr.json" || exit 10
ip -j link show >"$LAB_WORK/link.json" || exit 10
ip -j -4 route show >"$LAB_WORK/route4.json" || exit 10
ip -j -6 route show >"$LAB_WORK/route6.json" || exit 10
ip -br addr; ip -br link; ip -4 route; ip -6 route
NS
rc=$?
((rc == 0)) || fail "pasta/ip exited with status $rc"
dump_file "$LAB_WORK/addr.json" "$LAB_WORK/route4.json" "$LAB_WORK/route6.json"
for f in addr link route4 route6; do
	[[ -s $LAB_WORK/$f.json ]] || fail "no ip -j output $f.json from the namespace"
done

# one "name: verdict" line per check; the case fails on any "FAIL"
"$PYTHON" - "$LAB_WORK" >"$LAB_WORK/checks.txt" 2>&1 <<'PY'
import json, os, sys
w = sys.argv[1]
e = os.environ
load = lambda n: json.load(open(os.path.join(w, n)))
links, addrs, r4, r6 = load("link.json"), load("addr.json"), load("route4.json"), load("route6.json")

def check(name, got, want):
    print(f"{'ok  ' if got == want else 'FAIL'} {name}: got {got!r}, want {want!r}")

ifs = [l for l in links if l["ifname"] != "lo"]
check("one interface besides lo", len(ifs), 1)
ifname = ifs[0]["ifname"] if ifs else None
check("interface named like the host's outbound interface", ifname, e["LAB_IF"])
tap = next((l for l in links if l["ifname"] == ifname), {})
lo = next((l for l in links if l["ifname"] == "lo"), {})
check("lo is UP", "UP" in lo.get("flags", []), True)
check(f"{ifname} is UP", "UP" in tap.get("flags", []), True)
check(f"{ifname} MTU", tap.get("mtu"), int(e["DEFAULT_MTU"]))

ai = next((a for a in addrs if a["ifname"] == ifname), {"addr_info": []})
have = sorted((a["family"], a["local"], a["prefixlen"]) for a in ai["addr_info"]
              if a.get("scope") == "global")
want = sorted([("inet", e["H4"], int(e["PLEN4"])), ("inet6", e["H6"], int(e["PLEN6"]))])
check(f"global addresses on {ifname}", have, want)

d4 = [(r.get("gateway"), r.get("dev")) for r in r4 if r.get("dst") == "default"]
d6 = [(r.get("gateway"), r.get("dev")) for r in r6 if r.get("dst") == "default"]
check("IPv4 default route", d4, [(e["GW4"], ifname)])
check("IPv6 default route", d6, [(e["GW6"], ifname)])
PY
sed 's/^/    /' "$LAB_WORK/checks.txt"
[[ -s $LAB_WORK/checks.txt ]] || fail "no checks ran"
if grep -q -v '^ok  ' "$LAB_WORK/checks.txt"; then
	fail "configuration differs: $(grep -v '^ok  ' "$LAB_WORK/checks.txt" | head -n 3 | tr '\n' ';')"
fi
ok "$(wc -l <"$LAB_WORK/checks.txt") configuration checks"
