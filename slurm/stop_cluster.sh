#!/usr/bin/env bash
# Stop the local single-node SLURM cluster started by slurm/start_cluster.sh:
# slurmd, slurmctld, then munged.
#
#   bash slurm/stop_cluster.sh            # from any directory; a no-op if nothing runs
#   KEEP_MUNGE=1 bash slurm/stop_cluster.sh   # leave munged running
#
# First asks the controller to shut everything down cleanly (`scontrol shutdown` saves state,
# so queued jobs survive a restart), then falls back to signalling the daemons by the pids in
# their pid files -- never by process name, so nothing else on the machine is touched.
# Running jobs are killed with slurmd; this is a test cluster.
set -euo pipefail

SLURM_CONF=/etc/slurm/slurm.conf
RUN_DIR=/run/slurm
MUNGE_PID=/run/munge/munged.pid
export SLURM_CONF

log() { echo "[stop_cluster] $*"; }

if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null; then exec sudo -E bash "$(readlink -f "$0")" "$@"; fi
    echo "[stop_cluster] ERROR: must run as root" >&2; exit 1
fi

# A dying daemon can linger as a zombie until init reaps it, and `kill -0` succeeds on zombies.
alive() { kill -0 "$1" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]; }
pid_alive() { local pid; pid="$(cat "$1" 2>/dev/null)" && [[ -n "$pid" ]] && alive "$pid"; }

wait_gone() {  # wait_gone PIDFILE SECONDS -> 0 if the process exited
    local pid; pid="$(cat "$1" 2>/dev/null || true)"
    [[ -n "$pid" ]] || return 0
    for _ in $(seq 1 $(( $2 * 4 ))); do alive "$pid" || return 0; sleep 0.25; done
    return 1
}

stop_pidfile() {  # stop_pidfile NAME PIDFILE: TERM, wait 10 s, then KILL
    local name=$1 pidfile=$2 pid
    if ! pid_alive "$pidfile"; then rm -f "$pidfile"; return 0; fi
    pid="$(cat "$pidfile")"
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pidfile" 10; then
        log "$name did not exit after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pidfile" 5 || true
    fi
    rm -f "$pidfile"
}

# 1. Clean shutdown through the controller (stops slurmd too and saves state).
if [[ -f "$SLURM_CONF" ]] && pid_alive "$RUN_DIR/slurmctld.pid"; then
    log "scontrol shutdown"
    timeout 15 scontrol shutdown 2>/dev/null || log "scontrol shutdown failed; falling back to signals"
    wait_gone "$RUN_DIR/slurmd.pid" 15 || true
    wait_gone "$RUN_DIR/slurmctld.pid" 15 || true
fi

# 2. Fallback: whatever is still alive gets signalled through its pid file.
stop_pidfile slurmd "$RUN_DIR/slurmd.pid"
stop_pidfile slurmctld "$RUN_DIR/slurmctld.pid"

# 3. munged last: the SLURM daemons need it until they are gone.
if [[ "${KEEP_MUNGE:-0}" != 1 ]]; then
    stop_pidfile munged "$MUNGE_PID"
fi

log "stopped."
