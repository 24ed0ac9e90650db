# Process-group helpers for the scripts that start servers (sourced, not run):
#   group_alive PGID        is any live process left in that group? (zombies do not count)
#   stop_group PGID [S]     SIGTERM the whole group, wait up to S seconds (default 15) for it to
#                           empty, then SIGKILL what is left; returns once nothing is left.
# The servers are started with setsid, so the group holds exactly the server, its workers and
# helpers, and signalling it reaches processes the server itself would orphan.

group_alive() {
    local f st pg rest
    for f in /proc/[0-9]*/stat; do
        rest="$(cat "$f" 2>/dev/null)" || continue
        read -r st _ pg _ <<<"${rest##*) }"   # after "pid (comm) ": state ppid pgrp ...
        [[ "$pg" == "$1" && "$st" != Z ]] && return 0
    done
    return 1
}

stop_group() {
    local pgid=$1 grace=${2:-15} _
    kill -TERM -- "-$pgid" 2>/dev/null || true
    for _ in $(seq 1 $(( grace * 4 ))); do group_alive "$pgid" || return 0; sleep 0.25; done
    echo "[${0##*/}] process group $pgid still running after ${grace} s; sending SIGKILL" >&2
    kill -KILL -- "-$pgid" 2>/dev/null || true
    for _ in $(seq 1 20); do group_alive "$pgid" || return 0; sleep 0.25; done
}
