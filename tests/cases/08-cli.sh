# 08-cli: command-line behaviour (invoked with argv[0] = "pasta", as from $PATH).
#
# - an unknown option prints exactly "pasta: unrecognized option '--bogus'" on
#   stderr and exits 1 (getopt_long's wording; a usage text may follow);
# - --version and --quiet --version exit 0 and print a version line;
# - passt-rs only: the version line starts with "pasta " and names passt-rs,
#   and an invalid forwarding specifier (`-t 70000`) is rejected with exit
#   status 1 and a one-line message naming the specifier, before the command
#   is started (while the same spawn without it does run it).

run() {  # name args...: stdout -> NAME.stdout, stderr -> NAME.stderr, returns status
	local name=$1; shift
	timeout 10 bash -c 'exec -a pasta "$0" "$@"' "$PASTA_BIN" "$@" >"$LAB_WORK/$name.stdout" 2>"$LAB_WORK/$name.stderr" </dev/null
	local rc=$?
	dump_file "$LAB_WORK/$name.stdout" "$LAB_WORK/$name.stderr"
	return $rc
}

run bogus --bogus
rc=$?
expect_eq "exit status for --bogus" "$rc" 1
grep -qxF "pasta: unrecognized option '--bogus'" "$LAB_WORK/bogus.stderr" ||
	fail "no stderr line exactly \"pasta: unrecognized option '--bogus'\"; stderr: $(head -c 300 "$LAB_WORK/bogus.stderr")"
ok "stderr has exactly: pasta: unrecognized option '--bogus'"

for v in "version --version" "quietversion --quiet --version"; do
	set -- $v
	name=$1; shift
	run "$name" "$@"
	rc=$?
	expect_eq "exit status for $*" "$rc" 0
	line=$(grep -v -e '^$' -e "^Can't run AVX2" "$LAB_WORK/$name.stdout" | head -n 1)
	expect_match "version line for $*" "$line" "^pasta [^ ]"
done

if skip_unless_ours "version names passt-rs, -t 70000 rejected"; then
	expect_match "passt-rs version line" "$(head -n 1 "$LAB_WORK/version.stdout")" "^pasta .*passt-rs"
	# control: the same spawn without -t 70000 runs the command
	timeout 20 "${PASTA[@]}" --config-net -- sh -c "touch '$LAB_WORK/control.ran'" \
		>"$LAB_WORK/control.out" 2>&1
	rc=$?
	dump_file "$LAB_WORK/control.out"
	expect_eq "exit status without -t 70000 (control)" "$rc" 0
	[[ -e $LAB_WORK/control.ran ]] || fail "control: the command did not run without -t 70000"
	timeout 20 "${PASTA[@]}" -t 70000 --config-net -- sh -c "touch '$LAB_WORK/tauto.ran'" \
		>"$LAB_WORK/tauto.stdout" 2>"$LAB_WORK/tauto.stderr"
	rc=$?
	dump_file "$LAB_WORK/tauto.stdout" "$LAB_WORK/tauto.stderr"
	expect_eq "exit status for -t 70000" "$rc" 1
	[[ ! -e $LAB_WORK/tauto.ran ]] || fail "-t 70000: the command was started although the option is rejected"
	grep -q -e "70000" "$LAB_WORK/tauto.stderr" ||
		fail "-t 70000: the message does not name the specifier: $(head -c 300 "$LAB_WORK/tauto.stderr")"
	expect_eq "-t 70000: lines of the message" "$(wc -l <"$LAB_WORK/tauto.stderr")" 1
	ok "-t 70000 rejected: $(head -n 1 "$LAB_WORK/tauto.stderr")"
fi
