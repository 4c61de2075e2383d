# 11-ping-group: with net.ipv4.ping_group_range = "1 0" (no group may open ICMP
# echo sockets) in the host namespace, pasta cannot forward echo requests:
#
#   pasta --config-net -l LOG -- sh: ping the gateway and the remote host,
#   IPv4 and IPv6, in two rounds (ping -c1 -W1)
# - every ping fails (no reply comes back);
# - passt-rs only: pasta's log has exactly one line mentioning
#   ping_group_range (a warning given once, not per request).
# Control: the same run with the lab's open range ("0 2147483647") gets every
# reply and logs no such line.

# two rounds, the four targets in parallel in each
PING_NS='for round in 1 2; do
	for a in $GW4 $R4 $GW6 $R6; do
		{ timeout 5 ping -n -c1 -W1 "$a" >/dev/null 2>&1; echo "result ping $a rc=$?" >"$LAB_WORK/r$round-$a"; } &
	done
	wait
	cat "$LAB_WORK"/r$round-*
done
exit 0'

sysctl -qw net.ipv4.ping_group_range="1 0" || fail "cannot set net.ipv4.ping_group_range"
expect_eq "host ping_group_range" "$(sysctl -n net.ipv4.ping_group_range | tr -s ' \t' ' ')" "1 0"
pasta_spawn closed 60 --config-net <<<"$PING_NS"
rc=$?
((rc == 0)) || fail "pasta exited with status $rc"
n=$(grep -c '^result ping ' "$LAB_WORK/closed.out")
((n == 8)) || fail "$n of 8 ping results from the namespace"
n=$(grep -c '^result ping .* rc=0$' "$LAB_WORK/closed.out")
((n == 0)) || fail "$n of 8 pings got a reply although ping_group_range is \"1 0\""
ok "8 of 8 pings failed with ping_group_range \"1 0\""
if skip_unless_ours "one log line mentioning ping_group_range"; then
	n=$(grep -c 'ping_group_range' "$LAB_WORK/closed.pasta.log")
	((n == 1)) || fail "$n lines mentioning ping_group_range in pasta's log, want 1"
	ok "log: $(grep 'ping_group_range' "$LAB_WORK/closed.pasta.log")"
fi

# control: the lab's open range
sysctl -qw net.ipv4.ping_group_range="0 2147483647" || fail "cannot reopen net.ipv4.ping_group_range"
pasta_spawn open 60 --config-net <<<"$PING_NS"
rc=$?
((rc == 0)) || fail "control: pasta exited with status $rc"
n=$(grep -c '^result ping .* rc=0$' "$LAB_WORK/open.out")
((n == 8)) || fail "control: $n of 8 pings answered with the open ping_group_range"
ok "control: 8 of 8 pings answered with ping_group_range \"0 2147483647\""
if skip_unless_ours "no ping_group_range line in the control run's log"; then
	n=$(grep -c 'ping_group_range' "$LAB_WORK/open.pasta.log")
	((n == 0)) || fail "control: $n lines mentioning ping_group_range in pasta's log, want 0"
	ok "control: no ping_group_range line in the log"
fi
