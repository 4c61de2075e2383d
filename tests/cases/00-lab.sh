# 00-lab: the lab itself works without pasta (sanity of the fixture).
out=$(timeout 5 socat -T 3 - UDP4:$R4:$ECHO_PORT <<<"t1")
expect_eq "remote UDP echo via veth" "$out" "remote:t1"
