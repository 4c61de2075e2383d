#!/bin/bash
# run.sh - run one integration case inside its own private lab.
#
#   tests/lab/run.sh CASE        CASE = name (tests/cases/CASE.sh) or a path
#
# Environment:
#   PASTA_BIN        binary under test (default <workspace>/target/release/pasta)
#   PASST_BIN        passt binary for the passt-mode cases (default: passt in
#                    PASTA_BIN's directory; see lab.sh)
#   LAB_TIMEOUT      hard limit for the whole case in seconds (default 120,
#                    or the case's "# lab-timeout: EXPR" line)
#   LAB_KEEP=1       keep the work directory even when the case passes
#   LAB_INTERACTIVE=1  keep the terminal (timeout --foreground), for
#                    `cargo xtask run --lab` (CASE = tests/lab/pasta-shell.sh)
#
# Needs root (for unshare --net --mount --pid) and the tools listed in REQUIRED.
# Exit status: the case's (0 pass, 1 fail), 2 lab/set-up problem, 3 missing
# prerequisite, 124/137 hard timeout.
set -uo pipefail
export LC_ALL=C
LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LAB_DIR/../.." && pwd)
REQUIRED="unshare nsenter ip sysctl mount umount timeout socat dnsmasq dig busybox dhclient ping python3 tcpdump awk ps"

case_arg=${1:?usage: run.sh CASE}
if [[ -f $case_arg ]]; then LAB_CASE_FILE=$(readlink -f "$case_arg")
else LAB_CASE_FILE=$ROOT/tests/cases/$case_arg.sh; fi
[[ -f $LAB_CASE_FILE ]] || { echo "run.sh: no case $case_arg ($LAB_CASE_FILE)"; exit 3; }
LAB_CASE=$(basename "$LAB_CASE_FILE" .sh)

PASTA_BIN=${PASTA_BIN:-$ROOT/target/release/pasta}
[[ $PASTA_BIN == /* ]] || PASTA_BIN=$PWD/$PASTA_BIN

missing=""
((EUID == 0)) || { echo "run.sh: must run as root (unshare --net --mount --pid)"; exit 3; }
for t in $REQUIRED; do command -v "$t" >/dev/null || missing+=" $t"; done
[[ -z $missing ]] || { echo "run.sh: missing tools:$missing (cargo xtask test installs them)"; exit 3; }
[[ -x $PASTA_BIN ]] || { echo "run.sh: PASTA_BIN $PASTA_BIN is not an executable file"; exit 3; }

LAB_WORK=$(mktemp -d "${TMPDIR:-/tmp}/passt-lab.$LAB_CASE.XXXXXX") || exit 2
chmod 1777 "$LAB_WORK"   # spawned commands may run unmapped (nobody)
export LAB_DIR LAB_CASE LAB_CASE_FILE LAB_WORK PASTA_BIN
fg=()
[[ -n ${LAB_INTERACTIVE:-} ]] && fg=(--foreground)
# A case may need longer: a line "# lab-timeout: EXPR" in it (digits, + and
# environment variable names, e.g. "SOAK_SECS + 300") gives its default.
if [[ -z ${LAB_TIMEOUT:-} ]]; then
	lt=$(sed -n 's/^# lab-timeout: *\([A-Za-z0-9_ +]*\)$/\1/p' "$LAB_CASE_FILE" | head -n 1)
	[[ -n $lt ]] && LAB_TIMEOUT=$(set +u; echo $((lt)))
fi
timeout "${fg[@]}" -k 5 "${LAB_TIMEOUT:-120}" \
	unshare --net --mount --pid --fork --kill-child --mount-proc bash "$LAB_DIR/inner.sh" 2>&1
rc=$?
if ((rc == 124 || rc == 137)); then echo "run.sh: case $LAB_CASE killed after ${LAB_TIMEOUT:-120}s"; fi
if ((rc == 0)) && [[ -z ${LAB_KEEP:-} ]]; then rm -rf "$LAB_WORK"
else echo "run.sh: work directory kept: $LAB_WORK"; fi
exit $rc
