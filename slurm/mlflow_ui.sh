#!/usr/bin/env bash
# The MLflow UI over the project's tracking store, on this machine only (127.0.0.1).
#
#   bash slurm/mlflow_ui.sh                  # = make mlflow-ui; then open http://127.0.0.1:5000
#   bash slurm/mlflow_ui.sh --port 5001 --backend-store-uri sqlite:///other.db
#
# Options (each also settable through the environment variable in brackets):
#   --backend-store-uri URI   [MLFLOW_BACKEND_STORE_URI] default sqlite:///mlflow.db (the
#                             training runs' default store, in the current directory); handed
#                             to MLflow through that variable, not its command line
#   --port P                  [MIXERLAB_MLFLOW_UI_PORT] default 5000
#   --workers N               server worker processes [MIXERLAB_MLFLOW_UI_WORKERS] default 4
#
# It runs `mlflow ui` without MLflow's background job workers (MLFLOW_SERVER_ENABLE_JOB_EXECUTION
# =false: GenAI features that training runs do not use, whose huey workers outlive a SIGTERM to
# the server), in a process group of its own. Ctrl-C, SIGTERM or SIGHUP to this script ends
# that whole group (SIGKILL after 15 s), and the script returns only once none of it is left.
# A server that other machines (compute nodes) reach: slurm/mlflow_server.sh.
set -euo pipefail
umask 077   # a store or artifacts the UI creates are readable by their owner only

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=slurm/process_group.sh
source "$REPO/slurm/process_group.sh"   # group_alive, stop_group

BACKEND="${MLFLOW_BACKEND_STORE_URI:-sqlite:///mlflow.db}"
PORT="${MIXERLAB_MLFLOW_UI_PORT:-5000}"
WORKERS="${MIXERLAB_MLFLOW_UI_WORKERS:-4}"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
bad() { echo "[mlflow_ui] ERROR: $*" >&2; exit 2; }

while (($#)); do
    case "$1" in
        --backend-store-uri|--port|--workers) (($# >= 2)) || bad "$1 needs a value (see --help)" ;;&
        --backend-store-uri) BACKEND="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        --workers) WORKERS="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) bad "unknown option '$1'; valid: --backend-store-uri URI, --port P, --workers N, --help" ;;
    esac
    shift
done
[[ "$PORT" =~ ^[0-9]+$ ]] && (( PORT >= 1 && PORT <= 65535 )) \
    || bad "--port '$PORT' is not a port number (1-65535)"
[[ "$WORKERS" =~ ^[0-9]+$ ]] && (( WORKERS >= 1 )) \
    || bad "--workers '$WORKERS' is not a positive integer"

if [[ -x "$REPO/.venv/bin/mlflow" ]]; then MLFLOW="$REPO/.venv/bin/mlflow"
elif command -v mlflow >/dev/null; then MLFLOW="$(command -v mlflow)"
else echo "[mlflow_ui] ERROR: mlflow not found (make venv)" >&2; exit 1; fi

export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_BACKEND_STORE_URI="$BACKEND"
echo "[mlflow_ui] http://127.0.0.1:$PORT  (Ctrl-C stops it)"
# setsid: the UI and everything it starts form one process group, which stop_group can end
# whole; a background child of this non-interactive shell is no group leader, so setsid execs
# in place and $! is the UI's own pid (= its group id).
setsid "$MLFLOW" ui --host 127.0.0.1 --port "$PORT" --workers "$WORKERS" </dev/null &
pid=$!

stop() { trap '' INT TERM HUP; stop_group "$pid" 15; wait "$pid" 2>/dev/null || true; }
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap 'stop; exit 129' HUP

rc=0
wait "$pid" || rc=$?
# The UI ended by itself (e.g. its port was taken): end whatever it left behind too.
group_alive "$pid" && stop
exit "$rc"
