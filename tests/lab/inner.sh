#!/bin/bash
# inner.sh - PID 1 of a case's private net+mount+pid namespaces (started by
# run.sh): build the lab, then run the case script in it. When this shell
# exits, the kernel kills everything left in the PID namespace.
set -uo pipefail
source "$LAB_DIR/lab.sh"
lab_setup || { echo "lab: set-up failed"; exit 2; }
log "case $LAB_CASE"
# the case runs in a child shell so that `exit` in fail() ends the case, not PID 1
bash -c 'set -uo pipefail; source "$LAB_DIR/lab.sh"; source "$1"' case "$LAB_CASE_FILE"
rc=$?
if ((rc == 0)); then log "PASS $LAB_CASE"; else log "case $LAB_CASE exited with status $rc"; fi
exit $rc
