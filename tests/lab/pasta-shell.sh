# pasta-shell.sh - not a test: the "case" `cargo xtask run --lab` runs through
# tests/lab/run.sh. Starts pasta --config-net with the arguments stored
# NUL-separated in $LAB_ARGS_FILE (by xtask), inside the private lab, attached
# to the terminal. Without arguments pasta spawns an interactive shell in a new
# namespace; try `ping 198.51.100.1`, `dig www.lab.test`, `udhcpc -i lab0`.
args=()
[[ -s ${LAB_ARGS_FILE:-} ]] && mapfile -d '' args <"$LAB_ARGS_FILE"
log "lab: $H4/$PLEN4 $H6/$PLEN6 via $GW4 / $GW6; remote host $R4 $R6 (UDP echo :$ECHO_PORT); DNS $DNS_NAME"
log "\$ pasta --config-net ${args[*]}"
"${PASTA[@]}" --config-net "${args[@]}"
