# 05-dns: name resolution from the namespace (pasta --config-net).
#
# 1. DNS to the gateway address: the host's resolver *is* the gateway
#    (resolv.conf names 192.0.2.1 / 2001:db8:2::1), so pasta must send DNS
#    there rather than to the host's loopback (where a decoy dnsmasq answers
#    203.0.113.66 / 2001:db8:66::66): dig @192.0.2.1 A, dig @2001:db8:2::1 AAAA.
# 2. Podman's form: --dns-forward 169.254.1.1: queries to 169.254.1.1 reach the
#    host's resolver and the answer comes back from 169.254.1.1.

# q SERVER TYPE (in the namespace): prints "answer @SERVER TYPE: <records>"
Q='q() { echo "answer @$1 $2: $(timeout 10 dig +short +time=2 +tries=2 @"$1" "$DNS_NAME" "$2" 2>&1 | tr "\n" " ")"; }'

pasta_spawn dns 40 --config-net <<NS
$Q
q $GW4 A
q $GW6 AAAA
q $GW4 AAAA
NS
rc=$?
((rc == 0)) || fail "pasta exited with status $rc"

pasta_spawn dnsfwd 40 --config-net --dns-forward 169.254.1.1 <<NS
$Q
q 169.254.1.1 A
q 169.254.1.1 AAAA
NS
rc=$?
((rc == 0)) || fail "pasta (--dns-forward) exited with status $rc"

check() {  # out-file server type want
	local got
	got=$(sed -n "s/^answer @$2 $3: //p" "$LAB_WORK/$1.out" | sed 's/ *$//')
	case $got in
	"$4") ok "$3 $DNS_NAME via $2 = $4" ;;
	*"$DECOY_A"* | *"$DECOY_AAAA"*)
		fail "$3 $DNS_NAME via $2: got '$got', the host loopback decoy's answer: DNS to the gateway went to the host's loopback, not to the host's resolver" ;;
	*) fail "$3 $DNS_NAME via $2: got '$got', want '$4'" ;;
	esac
}
check dns $GW4 A $DNS_A
check dns $GW6 AAAA $DNS_AAAA
check dns $GW4 AAAA $DNS_AAAA
check dnsfwd 169.254.1.1 A $DNS_A
check dnsfwd 169.254.1.1 AAAA $DNS_AAAA
