# 23-fwd-cli: invalid port forwarding options are refused before anything is
# started (08-cli covers unknown options and --version):
#
#   pasta --config-net OPTION... -- sh -c 'touch ran'   (as root of a user
#   namespace, like every spawn in the lab)
#
# - control: the same spawn with valid specifiers (-t 10001-10002:20001-20002
#   -u 127.0.0.1/10003 -T 10004 -U 10005) runs the command and exits 0;
# - malformed specifiers for -t, -u, -T and -U (port above 65535, reversed
#   range, empty parts, stray characters, target range of another length,
#   bad address): exit status 1, the command is not run, and stderr has exactly
#   one line (besides upstream's "Started as root..." / "Can't run AVX2..."
#   notices) that mentions "port" or the specifier;
# - `-t 10001 -t none` (none after ports): exit 1, one line naming "none";
# - --host-lo-to-ns-lo with --no-splice: exit 1, one line naming both options;
# - the same port twice, or inside a range given before: exit 1, not run.

run_spawn() {  # NAME OPTION...: spawn `touch NAME.ran`; status; NAME.err = stderr minus notices
	local name=$1 rc; shift
	rm -f "$LAB_WORK/$name.ran"
	timeout 20 "${PASTA[@]}" --config-net "$@" -- sh -c "touch '$LAB_WORK/$name.ran'" \
		>"$LAB_WORK/$name.out" 2>"$LAB_WORK/$name.stderr" </dev/null
	rc=$?
	grep -v -e '^$' -e "^Can't run AVX2" -e '^Started as root' "$LAB_WORK/$name.stderr" >"$LAB_WORK/$name.err"
	dump_file "$LAB_WORK/$name.stderr"
	return $rc
}

run_spawn control -t 10001-10002:20001-20002 -u 127.0.0.1/10003 -T 10004 -U 10005
rc=$?
expect_eq "exit status with valid specifiers (control)" "$rc" 0
[[ -e $LAB_WORK/control.ran ]] || fail "control: the command did not run"

# refused NAME WANT-ERE OPTION...: exit 1, not run, exactly one line matching WANT-ERE
# (case-insensitive) or containing $SPEC (if set); WANT-ERE empty: any number of lines
refused() {
	local name=$1 want=$2 rc n; shift 2
	run_spawn "$name" "$@"
	rc=$?
	((rc == 1)) || fail "$*: exit status $rc, want 1 (stderr: $(head -c 300 "$LAB_WORK/$name.stderr"))"
	[[ ! -e $LAB_WORK/$name.ran ]] || fail "$*: the command was run"
	n=$(wc -l <"$LAB_WORK/$name.err")
	if [[ -n $want ]]; then
		((n == 1)) || fail "$*: $n lines on stderr, want one: $(head -c 300 "$LAB_WORK/$name.err")"
		grep -qiE -- "$want" "$LAB_WORK/$name.err" || { [[ -n ${SPEC:-} ]] && grep -qF -- "$SPEC" "$LAB_WORK/$name.err"; } ||
			fail "$*: the message matches neither /$want/ nor '${SPEC:-}': $(cat "$LAB_WORK/$name.err")"
	else
		((n >= 1)) || fail "$*: no message on stderr"
	fi
	ok "$* refused: $(head -n 1 "$LAB_WORK/$name.err")"
}

i=0
for spec in 70000 65536 10-5 foo 10001: :10001 10001-10002:20001 10001-10002:20001-20005 \
	10001:70000 999.0.0.1/80 127.0.0.1/ %/80 10001, ,10001 10001,,10002 10001- -10001 \
	'~70000' auto:80 10001x 01234567890 ''; do
	i=$((i + 1))
	SPEC=$spec refused "tcp$i" port -t "$spec"
done
SPEC=70000 refused udp port -u 70000
SPEC=70000 refused tcpns port -T 70000
SPEC=foo refused udpns port -U foo
refused none-after none -t 10001 -t none
refused lo-nosplice 'host-lo-to-ns-lo.*no-splice|no-splice.*host-lo-to-ns-lo' --host-lo-to-ns-lo --no-splice
refused twice '' -t 10001 -t 10001
refused overlap '' -t 10001-10005 -t 10003
