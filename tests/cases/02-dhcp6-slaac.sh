# 02-dhcp6-slaac: in the spawned namespace, the kernel (accept_ra=1) forms a
# SLAAC address in the host's /64 from pasta's Router Advertisement and installs
# a default route via a link-local router; ISC dhclient -6 gets the host's
# address (IA_NA) and, with --dhcp-dns --dhcp-search, the DNS server and search
# list from pasta's DHCPv6 server.

# dhclient runs its script with a clean environment: the output path is baked in
cat >"$LAB_WORK/dhclient6.script" <<'SCRIPT'
#!/bin/sh
case "$reason" in
BOUND6|RENEW6|REBIND6|REBOOT6)
	{
		echo "reason=$reason"
		echo "interface=$interface"
		echo "addr=$new_ip6_address"
		echo "plen=$new_ip6_prefixlen"
		echo "dns=$new_dhcp6_name_servers"
		echo "search=$new_dhcp6_domain_search"
	} >"@ENV@"
	;;
esac
exit 0
SCRIPT
sed -i "s|@ENV@|$LAB_WORK/dhcp6.env|" "$LAB_WORK/dhclient6.script"
chmod 755 "$LAB_WORK/dhclient6.script"
dump_file "$LAB_WORK/dhcp6.env" "$LAB_WORK/dhclient6.leases"

pasta_spawn dhcp6 40 --dhcp-dns --dhcp-search <<'NS'
IF=$(eval "$ns_ifname_cmd")
echo "ifname=$IF"
sysctl -qw "net.ipv6.conf.$IF.accept_dad=0" "net.ipv6.conf.$IF.accept_ra=1" \
	"net.ipv6.conf.$IF.autoconf=1" "net.ipv6.conf.$IF.forwarding=0" || exit 10
ip link set "$IF" up || exit 10
# SLAAC and the RA default route: bounded wait (150 x 0.1 s); a router
# solicitation goes out when the link comes up
i=0
while [ $i -lt 150 ]; do
	slaac=$(ip -6 -o addr show dev "$IF" scope global dynamic | awk '{ print $4; exit }')
	router=$(ip -6 route show default dev "$IF" | awk '$2 == "via" && $3 ~ /^fe80:/ { print $3; exit }')
	[ -n "$slaac" ] && [ -n "$router" ] && break
	sleep 0.1; i=$((i + 1))
done
echo "slaac=$slaac"
echo "router=$router"
ip -6 addr show dev "$IF"; ip -6 route show
timeout 25 dhclient -6 -1 -v -sf "$LAB_WORK/dhclient6.script" -lf "$LAB_WORK/dhclient6.leases" \
	-pf "$LAB_WORK/dhclient6.pid" "$IF" || exit 11
NS
rc=$?
((rc == 0)) || fail "pasta/dhclient exited with status $rc (10: link set-up failed, 11: no DHCPv6 lease)"
out=$LAB_WORK/dhcp6.out

slaac=$(kv "$out" slaac)
router=$(kv "$out" router)
[[ -n $slaac ]] || fail "no SLAAC address (global, dynamic) on the tap within 15 s of link up (no usable RA?)"
[[ -n $router ]] || fail "no default route via a link-local router within 15 s of link up (no usable RA?)"
in_prefix=$("$PYTHON" -c 'import ipaddress, sys
a = ipaddress.ip_interface(sys.argv[1])
print(a.network == ipaddress.ip_network(sys.argv[2], strict=False) and a.ip != ipaddress.ip_address(sys.argv[3]))' \
	"$slaac" "$H6/$PLEN6" "$H6" 2>&1)
expect_eq "SLAAC address '$slaac' from RA is in $H6/$PLEN6 (and not the DHCPv6 one)" "$in_prefix" True
expect_match "RA default route via a link-local router" "$router" "^fe80:"

[[ -s $LAB_WORK/dhcp6.env ]] || fail "dhclient script did not record a lease"
sed 's/^/    lease| /' "$LAB_WORK/dhcp6.env"
expect_eq "interface" "$(kv "$LAB_WORK/dhcp6.env" interface)" "$LAB_IF"
expect_eq "DHCPv6 IA_NA address" "$(kv "$LAB_WORK/dhcp6.env" addr)" "$H6"
expect_eq "DHCPv6 DNS (option 23)" "$(kv "$LAB_WORK/dhcp6.env" dns)" "$GW6"
expect_match "DHCPv6 domain search (option 24)" "$(kv "$LAB_WORK/dhcp6.env" search)" "^$SEARCH\.?$"
