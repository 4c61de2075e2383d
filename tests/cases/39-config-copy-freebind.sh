# 39-config-copy-freebind: what --config-net copies from the host's interface,
# --no-copy-addrs / --no-copy-routes (passt(1), pasta only), and --freebind.
#
# The lab's host interface gets a second address of each family
# (203.0.113.5/24, 2001:db8:77::5/48: after the lab's own, and for IPv6 with
# a shorter prefix, so that the lab's stays the one pasta picks, as upstream
# picks it: the longest prefix, then the first listed) and a route of each
# family beside the defaults (198.18.0.0/15 via 192.0.2.1, 2001:db8:99::/48
# via 2001:db8:2::1).
#   copy     pasta --config-net: both addresses of each family and both
#            routes in the namespace;
#   nocopy   pasta --config-net --no-copy-addrs --no-copy-routes: the lab's
#            own address of each family only, and no route but the defaults
#            (and the kernel's prefix routes);
#   freebind pasta --config-net -t 203.0.113.7/10061 -t [2001:db8:ff::7]/10061
#            --freebind: starts although the host has neither address; once
#            they are added (to the lab's lo), a client on the host reaches a
#            server in the namespace through each;
#   strict   the same rule without --freebind: pasta refuses to start, names
#            the port, and leaves no process behind (the spawned command's
#            process used to wait forever for a start that never came).

need_tools nsenter
ip addr add 203.0.113.5/24 dev "$LAB_IF" || fail "cannot add a second IPv4 address"
ip -6 addr add 2001:db8:77::5/48 dev "$LAB_IF" nodad || fail "cannot add a second IPv6 address"
ip route add 198.18.0.0/15 via "$GW4" dev "$LAB_IF" || fail "cannot add an IPv4 route"
ip -6 route add 2001:db8:99::/48 via "$GW6" dev "$LAB_IF" || fail "cannot add an IPv6 route"

# config NAME [PASTA_OPTION...]: the namespace's addresses and routes as JSON
config() {
	local name=$1; shift
	pasta_spawn "$name" 30 --config-net "$@" <<'NS'
ip -j addr show >"$LAB_WORK/$(basename "$0" .sh).addr.json" || exit 10
ip -j -4 route show >"$LAB_WORK/$(basename "$0" .sh).route4.json" || exit 10
ip -j -6 route show >"$LAB_WORK/$(basename "$0" .sh).route6.json" || exit 10
ip -br addr; ip -4 route; ip -6 route
NS
	local rc=$?
	((rc == 0)) || fail "$name: pasta/ip exited with status $rc"
	dump_file "$LAB_WORK/$name.addr.json" "$LAB_WORK/$name.route4.json" "$LAB_WORK/$name.route6.json"
}
config copy
config nocopy --no-copy-addrs --no-copy-routes

"$PYTHON" - "$LAB_WORK" >"$LAB_WORK/checks.txt" 2>&1 <<'PY'
import json, os, sys
w = sys.argv[1]
load = lambda n: json.load(open(os.path.join(w, n)))

def check(name, got, want):
    print(f"{'ok  ' if got == want else 'FAIL'} {name}: got {got!r}, want {want!r}")

def addrs(run, fam):
    return sorted(a["local"] for l in load(f"{run}.addr.json") if l["ifname"] != "lo"
                  for a in l["addr_info"] if a["family"] == fam and a.get("scope") == "global")

def routes(run, v):
    # everything but the kernel's prefix routes of the addresses
    return sorted(r["dst"] for r in load(f"{run}.route{v}.json")
                  if r.get("protocol") != "kernel" and not r["dst"].startswith("fe80:")
                  and r["dst"] != "multicast")

e = os.environ
check("copy: IPv4 addresses", addrs("copy", "inet"), sorted([e["H4"], "203.0.113.5"]))
check("copy: IPv6 addresses", addrs("copy", "inet6"), sorted([e["H6"], "2001:db8:77::5"]))
check("copy: IPv4 routes", routes("copy", 4), ["198.18.0.0/15", "default"])
check("copy: IPv6 routes", routes("copy", 6), ["2001:db8:99::/48", "default"])
check("nocopy: IPv4 address", addrs("nocopy", "inet"), [e["H4"]])
check("nocopy: IPv6 address", addrs("nocopy", "inet6"), [e["H6"]])
check("nocopy: IPv4 routes", routes("nocopy", 4), ["default"])
check("nocopy: IPv6 routes", routes("nocopy", 6), ["default"])
PY
sed 's/^/    /' "$LAB_WORK/checks.txt"
[[ -s $LAB_WORK/checks.txt ]] || fail "no checks ran"
if grep -q -v '^ok  ' "$LAB_WORK/checks.txt"; then
	fail "configuration differs: $(grep -v '^ok  ' "$LAB_WORK/checks.txt" | head -n 3 | tr '\n' ';')"
fi
ok "addresses and routes copied, and not copied with --no-copy-addrs --no-copy-routes"

# strict: an address the host doesn't have, without --freebind. The output
# goes to a file: a process left holding it would block a $(...) capture.
timeout 10 "${PASTA[@]}" --config-net -t 203.0.113.7/10061 -u none -T none -U none -- true \
	>"$LAB_WORK/strict.out" 2>&1
rc=$?
out=$(<"$LAB_WORK/strict.out")
echo "$out" | sed 's/^/    strict| /'
((rc != 0)) || fail "pasta started with -t 203.0.113.7/10061 and without --freebind"
[[ $out == *10061* ]] || fail "pasta's refusal doesn't name the port: $out"
# the command's process, forked before the ports are bound, must not outlive
# a refused start (it waited forever on its own copy of the start pipe)
no_pasta() { ! ps -eo comm= | grep -qx pasta; }
wait_until 3 no_pasta || fail "a pasta process is left after the refused start: $(ps -eo pid,ppid,args | grep '[p]asta')"
ok "without --freebind, -t on an address the host lacks is refused (status $rc), nothing left running"

# freebind
pasta_bg fb --config-net --freebind -t 203.0.113.7/10061 -t "[2001:db8:ff::7]/10061" -u none -T none -U none
tcp_listening -- 10061 || fail "pasta has no listener on port 10061 with --freebind"
lab_bg ns-server "${NS[@]}" timeout 60 socat TCP6-LISTEN:10061,reuseaddr,fork,ipv6only=0 SYSTEM:'echo "ns:$SOCAT_SOCKPORT"'
ns_listening() { tcp_listening "${NS[@]}" -- 10061; }
wait_until 10 ns_listening || fail "the namespace's server is not listening"
ip addr add 203.0.113.7/32 dev lo || fail "cannot add 203.0.113.7 to lo"
ip -6 addr add 2001:db8:ff::7/128 dev lo nodad || fail "cannot add 2001:db8:ff::7 to lo"
for a in 203.0.113.7 "[2001:db8:ff::7]"; do
	got=$(timeout 10 socat -T 5 - "TCP:$a:10061" </dev/null 2>&1)
	[[ $got == ns:10061 ]] || fail "through $a:10061 with --freebind: got '$got', want 'ns:10061'"
done
pasta_bg_stop || fail "pasta did not exit after its command"
ok "--freebind: pasta listened before the addresses existed and forwarded through both once added"
