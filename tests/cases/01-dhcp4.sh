# 01-dhcp4: a DHCPv4 client in the spawned namespace gets the host's address,
# netmask, gateway, DNS server, search domain and MTU from pasta's DHCP server.
#
#   pasta --dhcp-dns --dhcp-search -- sh dhcp4.sh
#   (the tap is left down and unconfigured: no --config-net)
#   inside: busybox udhcpc -i IF -n -q -f -s SCRIPT, SCRIPT records the lease
# udhcpc exports option 119 (domain search) as $search and option 15 (domain
# name) as $domain: either must carry the search domain.

cat >"$LAB_WORK/udhcpc.script" <<'SCRIPT'
#!/bin/sh
case "$1" in
bound|renew)
	for v in interface ip subnet router dns domain search mtu lease serverid; do
		eval "echo \"$v=\$$v\""
	done >"$LAB_WORK/dhcp4.env"
	;;
esac
exit 0
SCRIPT
chmod 755 "$LAB_WORK/udhcpc.script"
dump_file "$LAB_WORK/dhcp4.env"

pasta_spawn dhcp4 30 --dhcp-dns --dhcp-search <<'NS'
IF=$(eval "$ns_ifname_cmd")
echo "ifname=$IF"
ip link set "$IF" up || exit 10
timeout 20 busybox udhcpc -i "$IF" -n -q -f -t 5 -T 2 -A 1 -s "$LAB_WORK/udhcpc.script" || exit 11
NS
rc=$?
((rc == 0)) || fail "pasta/udhcpc exited with status $rc (10: link up failed, 11: no lease)"
[[ -s $LAB_WORK/dhcp4.env ]] || fail "udhcpc script did not record a lease"
sed 's/^/    lease| /' "$LAB_WORK/dhcp4.env"

expect_eq "interface name (host's outbound interface)" "$(kv "$LAB_WORK/dhcp4.env" interface)" "$LAB_IF"
expect_eq "ip" "$(kv "$LAB_WORK/dhcp4.env" ip)" "$H4"
expect_eq "subnet" "$(kv "$LAB_WORK/dhcp4.env" subnet)" "$MASK4"
expect_eq "router" "$(kv "$LAB_WORK/dhcp4.env" router)" "$GW4"
expect_eq "dns" "$(kv "$LAB_WORK/dhcp4.env" dns)" "$GW4"
domain=$(kv "$LAB_WORK/dhcp4.env" search)
[[ -n $domain ]] || domain=$(kv "$LAB_WORK/dhcp4.env" domain)
expect_eq "search domain (option 119, else 15)" "$domain" "$SEARCH"
expect_eq "mtu" "$(kv "$LAB_WORK/dhcp4.env" mtu)" "$DEFAULT_MTU"
