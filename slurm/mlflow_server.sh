#!/usr/bin/env bash
# Start an MLflow tracking server that SLURM jobs log to (runs, metrics, and artifacts uploaded
# through the server, so compute nodes need no shared artifact directory).
#
#   bash slurm/mlflow_server.sh                     # 127.0.0.1:5000 (this machine), background
#   bash slurm/mlflow_server.sh --host 0.0.0.0 --allow-remote    # reachable from compute nodes
#   bash slurm/mlflow_server.sh --host 0.0.0.0 --allow-remote --basic-auth   # ... with logins
#   MLFLOW_BACKEND_STORE_URI=postgresql://user:pw@dbhost/mlflow bash slurm/mlflow_server.sh
#   bash slurm/mlflow_server.sh --foreground        # e.g. inside its own sbatch job
#   bash slurm/mlflow_server.sh --status | --stop
#
# It prints the override to give the jobs, e.g.  tracking.uri=http://127.0.0.1:5000
# and returns once /health answers (and a real API call is accepted under that host name).
# Idempotent: if a server already answers on the port, it just prints the override.
#
# MLflow has no authentication of its own: whoever reaches the port can read, change and delete
# every run. So the server listens on 127.0.0.1 unless told otherwise, and any other address
# needs --allow-remote, which prints that warning (--basic-auth turns MLflow's login app on).
#
# Options (each also settable through the environment variable in brackets):
#   --backend-store-uri URI   runs/metrics DB  [MLFLOW_BACKEND_STORE_URI]
#                             default sqlite:///<data-dir>/mlflow.db; for many concurrent jobs
#                             use PostgreSQL (SQLite serialises writers). A password in it
#                             reaches MLflow through the environment, never a command line
#                             (the script re-executes itself without the flag at once), and is
#                             printed/logged as user:***@. Prefer the variable all the same:
#                             the flag stays in your shell history.
#   --artifacts-destination D where the server stores uploaded artifacts
#                             [MLFLOW_ARTIFACTS_DESTINATION] default <data-dir>/artifacts
#   --data-dir DIR            default home of the two above, plus server.log / server.pid
#                             [MIXERLAB_MLFLOW_DIR] default <repo>/slurm/run/mlflow-server
#   --host H                  interface to bind [MIXERLAB_MLFLOW_HOST] default 127.0.0.1;
#                             loopback (127.x, ::1, localhost) only, unless --allow-remote
#   --allow-remote            allow a non-loopback --host (0.0.0.0 = every interface, which
#                             compute nodes need) [MIXERLAB_MLFLOW_ALLOW_REMOTE=1]
#   --basic-auth              MLflow's basic-auth app (mlflow server --app-name basic-auth):
#                             users and passwords, in <data-dir>/basic_auth.db. Needs
#                             `pip install 'mlflow[auth]'`, and on first start the admin
#                             password in MLFLOW_AUTH_ADMIN_PASSWORD [MIXERLAB_MLFLOW_BASIC_AUTH=1]
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
#                             (--stop ends its whole process group and waits until it is gone)
#
# Everything it creates (data dir, SQLite store, artifacts, server.log, server.pid) is readable
# by its owner only (umask 077; an existing data dir and those files in it get chmod go-rwx).
# The server runs without MLflow's background job workers (MLFLOW_SERVER_ENABLE_JOB_EXECUTION
# =false unless exported as true).
#
# Note (MLflow >= 3.5): the server rejects requests whose Host header is not in --allowed-hosts
# with "403 Invalid Host header" -- except /health, which is exempt, so a passing health check
# alone proves nothing. Passing --allowed-hosts REPLACES MLflow's defaults, so this script
# always includes localhost and private-IP patterns and adds the machine's own names; jobs that
# reach the server by another DNS name need it added here.
set -euo pipefail
# First of all, before a subshell copies this command line: a password in --backend-store-uri
# would show in it (/proc/<pid>/cmdline, readable by anyone on the machine) as long as this
# script waits for the server, so hand the URI over through the environment and start again
# without it.
if [[ " $* " == *" --backend-store-uri "* ]]; then
    rest=()
    while (($#)); do
        if [[ "$1" == --backend-store-uri && $# -ge 2 ]]; then
            export MLFLOW_BACKEND_STORE_URI="$2"; shift 2; continue
        fi
        rest+=("$1"); shift
    done
    exec "$BASH" "${BASH_SOURCE[0]}" "${rest[@]}"
fi
# Run data is private: the data dir, SQLite store, artifacts and log get no group/other bits.
umask 077

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

DATA_DIR="${MIXERLAB_MLFLOW_DIR:-$REPO/slurm/run/mlflow-server}"
BACKEND="${MLFLOW_BACKEND_STORE_URI:-}"
ARTIFACTS="${MLFLOW_ARTIFACTS_DESTINATION:-}"
HOST="${MIXERLAB_MLFLOW_HOST:-127.0.0.1}"
ALLOW_REMOTE="${MIXERLAB_MLFLOW_ALLOW_REMOTE:-0}"
BASIC_AUTH="${MIXERLAB_MLFLOW_BASIC_AUTH:-0}"
PORT="${MIXERLAB_MLFLOW_PORT:-5000}"
ncpu="$(nproc 2>/dev/null || echo 1)"
WORKERS="${MIXERLAB_MLFLOW_WORKERS:-$(( ncpu < 4 ? ncpu : 4 ))}"
ADVERTISE="${MIXERLAB_MLFLOW_ADVERTISE:-}"
ALLOWED="${MIXERLAB_MLFLOW_ALLOWED_HOSTS:-}"
ACTION=start
FOREGROUND=0
WAIT_S="${MIXERLAB_MLFLOW_WAIT_S:-180}"   # first start creates the DB; slow machines need ~1 min
# MLflow 3.x also starts a background job runner (7 huey worker processes) for GenAI features
# (LLM judges, trace rollups); training runs do not use it, it doubles the start-up time on a
# small machine, and its workers outlive a SIGTERM to the server. Export
# MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true to keep it.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

# user:password@ in a URI -> user:***@ (for everything printed or logged).
REDACT_SED='s#([A-Za-z][A-Za-z0-9+.-]*://[^:/@[:space:]]*):[^[:space:]]*@#\1:***@#g'
redact() { sed -u -E "$REDACT_SED"; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
log() { echo "[mlflow_server] $*"; }
die() { echo "[mlflow_server] ERROR: $*" >&2; exit 1; }
bad() { echo "[mlflow_server] ERROR: $*" >&2; exit 2; }   # bad usage: exit 2

while (($#)); do
    case "$1" in
        --backend-store-uri|--artifacts-destination|--data-dir|--host|--port|--workers|\
        --advertise|--allowed-hosts)
            (($# >= 2)) || bad "$1 needs a value (see --help)" ;;&
        --backend-store-uri) BACKEND="$2"; shift ;;
        --artifacts-destination) ARTIFACTS="$2"; shift ;;
        --data-dir) DATA_DIR="$2"; shift ;;
        --host) HOST="$2"; shift ;;
        --allow-remote) ALLOW_REMOTE=1 ;;
        --basic-auth) BASIC_AUTH=1 ;;
        --port) PORT="$2"; shift ;;
        --workers) WORKERS="$2"; shift ;;
        --advertise) ADVERTISE="$2"; shift ;;
        --allowed-hosts) ALLOWED="$2"; shift ;;
        --foreground) FOREGROUND=1 ;;
        --status) ACTION=status ;;
        --stop) ACTION=stop ;;
        -h|--help) usage; exit 0 ;;
        *) bad "unknown option '$1'; valid: --backend-store-uri --artifacts-destination" \
               "--data-dir --host --allow-remote --basic-auth --port --workers --advertise" \
               "--allowed-hosts --foreground --status --stop --help" ;;
    esac
    shift
done

# ---- validate before anything starts ------------------------------------------------------------
is_loopback() { case "$1" in localhost|::1|127.*) return 0 ;; *) return 1 ;; esac; }
[[ "$PORT" =~ ^[0-9]+$ ]] && (( PORT >= 1 && PORT <= 65535 )) \
    || bad "--port '$PORT' is not a port number (1-65535)"
[[ "$WORKERS" =~ ^[0-9]+$ ]] && (( WORKERS >= 1 )) \
    || bad "--workers '$WORKERS' is not a positive integer"
[[ -n "$HOST" ]] || bad "--host '' is empty; give an address such as 127.0.0.1"
[[ "$ALLOW_REMOTE" == 0 || "$ALLOW_REMOTE" == 1 ]] \
    || bad "MIXERLAB_MLFLOW_ALLOW_REMOTE='$ALLOW_REMOTE' must be 0 or 1"
[[ "$BASIC_AUTH" == 0 || "$BASIC_AUTH" == 1 ]] \
    || bad "MIXERLAB_MLFLOW_BASIC_AUTH='$BASIC_AUTH' must be 0 or 1"
if [[ "$ACTION" == start ]] && ! is_loopback "$HOST" && [[ "$ALLOW_REMOTE" != 1 ]]; then
    bad "--host '$HOST' is not a loopback address (127.0.0.1, ::1, localhost) and MLflow has no" \
        "authentication; to listen there anyway add --allow-remote (and consider --basic-auth)"
fi

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
url_host() { if [[ "$1" == *:* ]]; then echo "[$1]"; else echo "$1"; fi; }  # IPv6 in brackets
URI="http://$(url_host "$ADVERTISE"):$PORT"
LOCAL_URL="http://127.0.0.1:$PORT"
[[ "$HOST" == 0.0.0.0 || "$HOST" == :: ]] || LOCAL_URL="http://$(url_host "$HOST"):$PORT"

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
# shellcheck source=slurm/process_group.sh
source "$REPO/slurm/process_group.sh"   # group_alive, stop_group
healthy() { curl -fsS -m 3 "$LOCAL_URL/health" >/dev/null 2>&1; }
# A real API request under the advertised name: catches a 403 from host validation (with
# --basic-auth an anonymous request gets 401, which still means the host was accepted).
api_ok() {
    local code
    code="$(curl -sS -m 5 -o /dev/null -w '%{http_code}' -H "Host: $ADVERTISE:$PORT" \
        "$LOCAL_URL/api/2.0/mlflow/experiments/search?max_results=1" 2>/dev/null)" || return 1
    [[ "$code" == 200 || ( "$BASIC_AUTH" == 1 && "$code" == 401 ) ]]
}
print_uri() {
    log "tracking server at $URI (backend $(redact <<<"$BACKEND"), artifacts $(redact <<<"$ARTIFACTS"))"
    log "point jobs at it with the override:  tracking.uri=$URI"
    echo "tracking.uri=$URI"
}

case "$ACTION" in
    status)
        if healthy; then log "up on port $PORT"; print_uri; exit 0; fi
        log "not answering on $LOCAL_URL"; exit 1 ;;
    stop)
        if [[ -f "$PIDFILE" ]] && group_alive "$(cat "$PIDFILE")"; then
            pid="$(cat "$PIDFILE")"
            log "stopping server (process group $pid: launcher, server, workers, log filter)"
            # started with setsid: the launcher is the leader of the server's process group
            stop_group "$pid" 15
        else
            log "no server started from $DATA_DIR is running"
        fi
        rm -f "$PIDFILE"
        exit 0 ;;
esac

command -v curl >/dev/null || die "curl is needed for the health check"

if ! is_loopback "$HOST"; then
    if [[ "$BASIC_AUTH" == 1 ]]; then
        log "listening on $HOST:$PORT, beyond this machine; logins required (--basic-auth)"
    else
        echo "[mlflow_server] WARNING: listening on $HOST:$PORT, beyond this machine, and MLflow" \
             "has no authentication unless it is turned on: anyone who reaches this port can" \
             "read, change and delete every run. Add --basic-auth (MLflow's basic-auth app," \
             "mlflow server --app-name basic-auth; https://mlflow.org/docs/latest/auth.html)" \
             "or firewall the port." >&2
    fi
fi

if healthy; then
    log "a server already answers on port $PORT"
    api_ok || log "warning: it rejects requests for host '$ADVERTISE' (restart it with this script, or --allowed-hosts)"
    print_uri
    exit 0
fi

# The DB URI (and artifact destination) reach MLflow through its own environment variables
# (click envvar= of `mlflow server`), not argv: argv is world-readable in /proc/<pid>/cmdline.
export MLFLOW_BACKEND_STORE_URI="$BACKEND" MLFLOW_ARTIFACTS_DESTINATION="$ARTIFACTS"
cmd=("$MLFLOW" server
     --serve-artifacts
     # New experiments store artifacts as mlflow-artifacts:/ URIs, i.e. uploaded via the server.
     --default-artifact-root mlflow-artifacts:/
     --host "$HOST" --port "$PORT" --workers "$WORKERS"
     --allowed-hosts "$ALLOWED")

if [[ "$BASIC_AUTH" == 1 ]]; then
    "$(dirname "$MLFLOW")/python" -c 'import flask_wtf' 2>/dev/null \
        || die "--basic-auth needs MLflow's auth extra: $(dirname "$MLFLOW")/pip install 'mlflow[auth]'"
    # MLflow's default auth config keeps its user DB in ./basic_auth.db of whatever directory
    # the server starts in; keep it in the data dir instead (created 0600 like the rest).
    if [[ -z "${MLFLOW_AUTH_CONFIG_PATH:-}" ]]; then
        export MLFLOW_AUTH_CONFIG_PATH="$DATA_DIR/basic_auth.ini"
        [[ -f "$MLFLOW_AUTH_CONFIG_PATH" ]] || cat >"$MLFLOW_AUTH_CONFIG_PATH" <<EOF
[mlflow]
default_permission = READ
database_uri = sqlite:///$DATA_DIR/basic_auth.db
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
        if [[ ! -f "$DATA_DIR/basic_auth.db" && -z "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ]]; then
            die "--basic-auth: first start, export MLFLOW_AUTH_ADMIN_PASSWORD=<admin password>" \
                "(user 'admin'; jobs log in with MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD)"
        fi
    fi
    # The auth app's CSRF key: stable across restarts, kept in the data dir.
    if [[ -z "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ]]; then
        [[ -s "$DATA_DIR/flask_secret_key" ]] || od -An -tx1 -N32 /dev/urandom | tr -d ' \n' \
            >"$DATA_DIR/flask_secret_key"
        MLFLOW_FLASK_SERVER_SECRET_KEY="$(cat "$DATA_DIR/flask_secret_key")"
        export MLFLOW_FLASK_SERVER_SECRET_KEY
    fi
    cmd+=(--app-name basic-auth)
fi

# Files from before this script set umask 077 may still be group/world-readable.
[[ "$ARTIFACTS" == *://* ]] || mkdir -p "$ARTIFACTS"
touch "$LOGFILE"
private=("$LOGFILE" "$DATA_DIR/mlflow.db" "$DATA_DIR/mlflow.db-wal" "$DATA_DIR/mlflow.db-shm"
         "$DATA_DIR/mlflow.db-journal" "$DATA_DIR/artifacts" "$DATA_DIR/basic_auth.ini"
         "$DATA_DIR/basic_auth.db")
for f in "${private[@]}"; do [[ -e "$f" ]] && chmod -R go-rwx "$f"; done
chmod go-rwx "$DATA_DIR"

log "starting: ${cmd[*]}  (backend $(redact <<<"$BACKEND"), from MLFLOW_BACKEND_STORE_URI)"
if (( FOREGROUND )); then
    print_uri
    # MLflow's own messages may quote the DB URI (e.g. "Invalid database URI: '...'").
    exec > >(exec sed -u -E "$REDACT_SED") 2>&1
    exec "${cmd[@]}"
fi

# setsid: a process group of its own (so --stop can end the workers too) and no tie to this
# terminal. The launcher bash pipes the server's output through the redacting filter into the
# log; its arguments are the command above, which holds no secret. It outlives a SIGTERM
# (`trap :` runs only after the pipeline ends) so that it reaps the server: a server whose
# parent died first would linger as a zombie where PID 1 does not reap orphans.
export _MIXERLAB_LOGFILE="$LOGFILE" _MIXERLAB_REDACT_SED="$REDACT_SED"
setsid nohup bash -c \
    'trap : TERM; "$@" 2>&1 </dev/null | sed -u -E "$_MIXERLAB_REDACT_SED" >>"$_MIXERLAB_LOGFILE"' \
    mlflow-server-launcher "${cmd[@]}" >/dev/null 2>&1 </dev/null &
echo $! >"$PIDFILE"
pid=$(cat "$PIDFILE")

deadline=$(( SECONDS + WAIT_S ))
until healthy; do
    if ! alive "$pid"; then
        echo "[mlflow_server] ERROR: server exited; last lines of $LOGFILE:" >&2
        tail -n 30 "$LOGFILE" >&2
        rm -f "$PIDFILE"
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
