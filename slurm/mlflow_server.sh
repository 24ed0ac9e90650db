#!/usr/bin/env bash
# Start an MLflow tracking server that SLURM jobs log to (runs, metrics, and artifacts uploaded
# through the server, so compute nodes need no shared artifact directory).
#
#   bash slurm/mlflow_server.sh                     # cluster: bind 0.0.0.0:5000, in the background
#   bash slurm/mlflow_server.sh --host 127.0.0.1    # this machine only (local cluster / laptop)
#   bash slurm/mlflow_server.sh --backend-store-uri postgresql://user:pw@dbhost/mlflow
#   bash slurm/mlflow_server.sh --foreground        # e.g. inside its own sbatch job
#   bash slurm/mlflow_server.sh --status | --stop
#
# It prints the override to give the jobs, e.g.  tracking.uri=http://login01:5000
# and returns once /health answers (and a real API call is accepted under that host name).
# Idempotent: if a server already answers on the port, it just prints the override.
#
# Options (each also settable through the environment variable in brackets):
#   --backend-store-uri URI   runs/metrics DB  [MLFLOW_BACKEND_STORE_URI]
#                             default sqlite:///<data-dir>/mlflow.db; for many concurrent jobs
#                             use PostgreSQL (SQLite serialises writers).
#   --artifacts-destination D where the server stores uploaded artifacts
#                             [MLFLOW_ARTIFACTS_DESTINATION] default <data-dir>/artifacts
#   --data-dir DIR            default home of the two above, plus server.log / server.pid
#                             [MIXERLAB_MLFLOW_DIR] default <repo>/slurm/run/mlflow-server
#   --host H                  interface to bind [MIXERLAB_MLFLOW_HOST] default 0.0.0.0
#                             (reachable from compute nodes); 127.0.0.1 = this machine only
#   --port P                  [MIXERLAB_MLFLOW_PORT] default 5000
#   --workers N               server worker processes [MIXERLAB_MLFLOW_WORKERS] default min(4, nproc)
#   --advertise NAME          host name the jobs should use [MIXERLAB_MLFLOW_ADVERTISE]
#                             default: --host, or `hostname -f` when binding 0.0.0.0
#   --allowed-hosts LIST      Host headers the server accepts [MIXERLAB_MLFLOW_ALLOWED_HOSTS];
#                             see the note below. Default: MLflow's own defaults (localhost,
#                             private IPs) plus this machine's names, with and without :port.
#   --foreground              run in the foreground (exec) instead of the background
#   (also: MIXERLAB_MLFLOW_WAIT_S, seconds to wait for /health, default 180)
#   --status / --stop         report on / stop the server started from this data dir
#
# Note (MLflow >= 3.5): the server rejects requests whose Host header is not in --allowed-hosts
# with "403 Invalid Host header" -- except /health, which is exempt, so a passing health check
# alone proves nothing. Passing --allowed-hosts REPLACES MLflow's defaults, so this script
# always includes localhost and private-IP patterns and adds the machine's own names; jobs that
# reach the server by another DNS name need it added here.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

DATA_DIR="${MIXERLAB_MLFLOW_DIR:-$REPO/slurm/run/mlflow-server}"
BACKEND="${MLFLOW_BACKEND_STORE_URI:-}"
ARTIFACTS="${MLFLOW_ARTIFACTS_DESTINATION:-}"
HOST="${MIXERLAB_MLFLOW_HOST:-0.0.0.0}"
PORT="${MIXERLAB_MLFLOW_PORT:-5000}"
ncpu="$(nproc 2>/dev/null || echo 1)"
WORKERS="${MIXERLAB_MLFLOW_WORKERS:-$(( ncpu < 4 ? ncpu : 4 ))}"
ADVERTISE="${MIXERLAB_MLFLOW_ADVERTISE:-}"
ALLOWED="${MIXERLAB_MLFLOW_ALLOWED_HOSTS:-}"
ACTION=start
FOREGROUND=0
WAIT_S="${MIXERLAB_MLFLOW_WAIT_S:-180}"   # first start creates the DB; slow machines need ~1 min
# MLflow 3.x also starts a background job runner (7 huey worker processes) for GenAI features
# (LLM judges, trace rollups); training runs do not use it, and on a small machine it doubles
# the start-up time. Export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true to keep it.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
log() { echo "[mlflow_server] $*"; }
die() { echo "[mlflow_server] ERROR: $*" >&2; exit 1; }

while (($#)); do
    case "$1" in
        --backend-store-uri) BACKEND="$2"; shift ;;
        --artifacts-destination) ARTIFACTS="$2"; shift ;;
        --data-dir) DATA_DIR="$2"; shift ;;
        --host) HOST="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        --workers) WORKERS="$2"; shift ;;
        --advertise) ADVERTISE="$2"; shift ;;
        --allowed-hosts) ALLOWED="$2"; shift ;;
        --foreground) FOREGROUND=1 ;;
        --status) ACTION=status ;;
        --stop) ACTION=stop ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done

mkdir -p "$DATA_DIR"
DATA_DIR="$(cd "$DATA_DIR" && pwd)"
BACKEND="${BACKEND:-sqlite:///$DATA_DIR/mlflow.db}"
ARTIFACTS="${ARTIFACTS:-$DATA_DIR/artifacts}"
PIDFILE="$DATA_DIR/server.pid"
LOGFILE="$DATA_DIR/server.log"

short="$(hostname -s)"
fqdn="$(hostname -f 2>/dev/null || hostname)"
if [[ -z "$ADVERTISE" ]]; then
    case "$HOST" in
        0.0.0.0|::) ADVERTISE="$fqdn" ;;
        *) ADVERTISE="$HOST" ;;
    esac
fi
URI="http://$ADVERTISE:$PORT"
LOCAL_URL="http://127.0.0.1:$PORT"
[[ "$HOST" == 0.0.0.0 || "$HOST" == :: ]] || LOCAL_URL="http://$HOST:$PORT"

if [[ -z "$ALLOWED" ]]; then
    # MLflow's defaults (localhost, 0.0.0.0, private ranges; cf. mlflow.server.security_utils),
    # which --allowed-hosts would otherwise drop, plus this machine's own names.
    ALLOWED="localhost,localhost:*,127.0.0.1,127.0.0.1:*,[::1],[[]::1]:*,0.0.0.0,0.0.0.0:*"
    ALLOWED+=",10.*,192.168.*,172.1[6-9].*,172.2[0-9].*,172.3[0-1].*,fc00:*,fd00:*"
    for n in $(printf '%s\n' "$short" "$fqdn" "$ADVERTISE" | sort -u); do ALLOWED+=",$n,$n:*"; done
fi

# Prefer the project's venv so the server matches the client version the jobs use.
if [[ -x "$REPO/.venv/bin/mlflow" ]]; then MLFLOW="$REPO/.venv/bin/mlflow"
elif command -v mlflow >/dev/null; then MLFLOW="$(command -v mlflow)"
else die "mlflow not found (make venv, or pip install mlflow)"; fi

# A killed process can linger as a zombie, and `kill -0` succeeds on zombies.
alive() { kill -0 "$1" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]; }
healthy() { curl -fsS -m 3 "$LOCAL_URL/health" >/dev/null 2>&1; }
# A real API request under the advertised name: catches a 403 from host validation.
api_ok() {
    curl -fsS -m 5 -H "Host: $ADVERTISE:$PORT" \
        "$LOCAL_URL/api/2.0/mlflow/experiments/search?max_results=1" >/dev/null 2>&1
}
print_uri() {
    log "tracking server at $URI (backend $BACKEND, artifacts $ARTIFACTS)"
    log "point jobs at it with the override:  tracking.uri=$URI"
    echo "tracking.uri=$URI"
}

case "$ACTION" in
    status)
        if healthy; then log "up on port $PORT"; print_uri; exit 0; fi
        log "not answering on $LOCAL_URL"; exit 1 ;;
    stop)
        if [[ -f "$PIDFILE" ]] && alive "$(cat "$PIDFILE")"; then
            pid="$(cat "$PIDFILE")"
            log "stopping server (pid $pid and its workers)"
            # started with setsid: the server is its own process group leader
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 40); do alive "$pid" || break; sleep 0.25; done
            if alive "$pid"; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; fi
        else
            log "no server started from $DATA_DIR is running"
        fi
        rm -f "$PIDFILE"
        exit 0 ;;
esac

command -v curl >/dev/null || die "curl is needed for the health check"

if healthy; then
    log "a server already answers on port $PORT"
    api_ok || log "warning: it rejects requests for host '$ADVERTISE' (restart it with this script, or --allowed-hosts)"
    print_uri
    exit 0
fi

mkdir -p "$ARTIFACTS"
cmd=("$MLFLOW" server
     --backend-store-uri "$BACKEND"
     --serve-artifacts --artifacts-destination "$ARTIFACTS"
     # New experiments store artifacts as mlflow-artifacts:/ URIs, i.e. uploaded via the server.
     --default-artifact-root mlflow-artifacts:/
     --host "$HOST" --port "$PORT" --workers "$WORKERS"
     --allowed-hosts "$ALLOWED")

log "starting: ${cmd[*]}"
if (( FOREGROUND )); then
    print_uri
    exec "${cmd[@]}"
fi

# setsid: own process group (so --stop can end the workers too) and no tie to this terminal.
setsid nohup "${cmd[@]}" >>"$LOGFILE" 2>&1 < /dev/null &
echo $! >"$PIDFILE"
pid=$(cat "$PIDFILE")

deadline=$(( SECONDS + WAIT_S ))
until healthy; do
    if ! alive "$pid"; then
        echo "[mlflow_server] ERROR: server exited; last lines of $LOGFILE:" >&2
        tail -n 30 "$LOGFILE" >&2
        exit 1
    fi
    if (( SECONDS >= deadline )); then
        echo "[mlflow_server] ERROR: no answer from $LOCAL_URL/health after ${WAIT_S}s; see $LOGFILE" >&2
        tail -n 30 "$LOGFILE" >&2
        exit 1
    fi
    sleep 1
done
api_ok || log "warning: /health answers but an API call for host '$ADVERTISE' was refused; see $LOGFILE"
log "up (pid $pid, log $LOGFILE)"
print_uri
