#!/usr/bin/env bash
# Start (or repair) a real single-node SLURM cluster on this host: munged + slurmctld + slurmd.
#
#   bash slurm/start_cluster.sh          # from any directory; idempotent
#
# - If the cluster is already up and healthy (sinfo answers, node idle/mix/alloc, munge works,
#   and the generated slurm.conf is unchanged) it says so and exits 0 in well under a second.
# - Otherwise it (re)starts whatever is dead, resumes a down/drained node, and waits for it.
#
# Written for containers (no systemd, no cgroups): the daemons are started directly, process
# tracking is proctrack/linuxproc, no slurmdbd (so no sacct). slurm.conf is generated from
# this machine (`slurmd -C`) into /etc/slurm/slurm.conf; nothing machine-specific lives in the
# repo. Needs root for anything but the "already healthy" fast path.
# slurmctld and slurmd listen on 127.0.0.1 only when the host name resolves to loopback (see
# BIND_ADDR below); the summary line says where they listen. munged has no TCP port.
#
# Environment knobs (all optional):
#   MIXERLAB_SLURM_PARTITION   partition name                           (default: debug)
#   MIXERLAB_SLURM_OVERSUB     jobs allowed per core (OverSubscribe=FORCE:N) (default: 4)
#   MIXERLAB_SLURM_MEM_MARGIN  MB kept back from RealMemory for the OS (default: 5%, >=512)
#   MIXERLAB_SLURM_WAIT_S      seconds to wait for the node to become idle (default: 60)
set -euo pipefail

PARTITION="${MIXERLAB_SLURM_PARTITION:-debug}"
OVERSUB="${MIXERLAB_SLURM_OVERSUB:-4}"
WAIT_S="${MIXERLAB_SLURM_WAIT_S:-60}"
CLUSTER_NAME="mixerlab"

SLURM_ETC=/etc/slurm
SLURM_CONF="$SLURM_ETC/slurm.conf"
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge
export SLURM_CONF   # every slurm client/daemon below reads this exact file

log() { echo "[start_cluster] $*"; }
die() { echo "[start_cluster] ERROR: $*" >&2; exit 1; }

NODE="$(hostname -s)"

# Where the daemons listen. By default slurmctld (TCP 6817) and slurmd (TCP 6818) bind every
# interface. CommunicationParameters=NoCtldInAddrAny,NoInAddrAny make them (and srun's I/O
# ports) bind instead to the address that gethostname() resolves to (Slurm's
# slurm_setup_addr). Everything here talks over 127.0.0.1 (SlurmctldHost, NodeAddr), so use it
# only when that address is loopback: bound to a LAN address, slurmd would be unreachable.
# munged listens on a Unix socket only (/run/munge/munge.socket.2), no TCP port.
BIND_ADDR="$(getent ahostsv4 "$(hostname)" 2>/dev/null | awk 'NR == 1 {print $1}')"
if [[ "$BIND_ADDR" == 127.* ]]; then
    COMM_PARAMS="CommunicationParameters=NoCtldInAddrAny,NoInAddrAny"
    LISTEN="$BIND_ADDR only"
else
    COMM_PARAMS="# (hostname '$(hostname)' resolves to '${BIND_ADDR:-nothing}', not loopback: daemons bind all interfaces)"
    LISTEN="ALL interfaces (hostname resolves to '${BIND_ADDR:-nothing}', not loopback)"
fi

# ---------------------------------------------------------------------------------------------
# Health checks (usable without root)
# ---------------------------------------------------------------------------------------------
munge_ok() { command -v munge >/dev/null && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

# Node state in sinfo's compact form: idle, mix, alloc, comp, down*, drain, idle* ...
node_state() { timeout 10 sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n1 || true; }

node_healthy() {
    case "$(node_state)" in
        idle|mix|alloc|comp) return 0 ;;  # no '*' suffix = slurmd responding
        *) return 1 ;;
    esac
}

summary() {
    local info
    info="$(timeout 10 sinfo -h -p "$PARTITION" -o '%D|%c|%m|%P|%t' 2>/dev/null | head -n1)"
    IFS='|' read -r n cpus mem part state <<<"$info"
    log "cluster '$CLUSTER_NAME' up: nodes=$n ($NODE) cpus/node=$cpus mem/node=${mem}MB" \
        "partition=$part state=$state oversubscribe=FORCE:$OVERSUB conf=$SLURM_CONF"
    log "slurmctld (TCP 6817) and slurmd (TCP 6818) listen on $LISTEN; munged on a Unix socket"
}

# ---------------------------------------------------------------------------------------------
# slurm.conf generation (from this machine)
# ---------------------------------------------------------------------------------------------
generate_conf() {
    local hw cpus sockets cores threads boards realmem margin mem
    # `slurmd -C` prints exactly what slurmd itself will detect and register, e.g.
    #   NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105
    # Using its numbers avoids the node being drained for "Low socket*core*thread count".
    hw="$(slurmd -C 2>/dev/null | head -n1)" || true
    field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$hw"; }
    cpus="$(field CPUs)"; boards="$(field Boards)"; sockets="$(field SocketsPerBoard)"
    cores="$(field CoresPerSocket)"; threads="$(field ThreadsPerCore)"; realmem="$(field RealMemory)"
    # Fallbacks if slurmd -C ever fails: flat topology from nproc and /proc/meminfo.
    [[ -n "$cpus" ]] || cpus="$(nproc)"
    [[ -n "$boards" ]] || boards=1
    [[ -n "$sockets" ]] || sockets=1
    [[ -n "$threads" ]] || threads=1
    [[ -n "$cores" ]] || cores=$((cpus / threads / sockets))
    [[ -n "$realmem" ]] || realmem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 ))
    # Declaring more memory than slurmd sees drains the node ("Low RealMemory"), and memory can
    # fluctuate a little in VMs/containers, so keep a margin back for the OS.
    margin="${MIXERLAB_SLURM_MEM_MARGIN:-$(( realmem / 20 > 512 ? realmem / 20 : 512 ))}"
    mem=$(( realmem - margin ))
    (( mem > 256 )) || mem=$realmem

    cat <<EOF
# Generated by slurm/start_cluster.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ) -- do not edit by hand;
# edit the generator and rerun it. Single-node test cluster for a container (no systemd/cgroups).
ClusterName=$CLUSTER_NAME
SlurmctldHost=$NODE(127.0.0.1)
# Listen on loopback, not on every interface (see BIND_ADDR in start_cluster.sh).
$COMM_PARAMS
# Single-user container: run slurmctld as root so the spool/log dirs need no special ownership.
SlurmUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
# No mail in a container; the default /bin/mail is missing and slurmctld logs an error.
MailProg=/bin/true

# Paths (created by start_cluster.sh)
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# No cgroups in a container: track processes through /proc, no task binding/confinement.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd: sacct is unavailable (submitit then relies on its result pickles, see README).
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log

# Scheduling: cores and memory are the consumables, so several 1-CPU jobs share the node.
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job that does not ask for memory would be given the whole node.
DefMemPerCPU=1024
# Send the user's --signal (submitit's USR2 checkpoint signal) on preemption too; harmless
# here since no preemption is configured, but matches what real clusters should set.
SlurmctldParameters=preempt_send_user_signal

# Timers: come back quickly after a restart, keep finished jobs visible in squeue for 5 min.
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0

NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus Boards=$boards SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$mem State=UNKNOWN
# OverSubscribe=FORCE:$OVERSUB lets up to $OVERSUB jobs share each core (memory is still a hard
# consumable), so e.g. a 4-task array of tiny 1-CPU jobs runs at once on a 2-core machine.
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:$OVERSUB
EOF
}

# Compare configs ignoring the timestamp comment line.
conf_body() { grep -v '^# Generated by' "$1" 2>/dev/null || true; }

# ---------------------------------------------------------------------------------------------
# sacct stand-in (no slurmdbd here): see slurm/sacct_fallback.sh for why submitit needs it.
# Set MIXERLAB_SACCT_SHIM=0 to skip (submitit then cannot tell that a killed job has ended).
# ---------------------------------------------------------------------------------------------
SACCT_SHIM_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/sacct_fallback.sh"
SACCT_SHIM_DST=/usr/local/bin/sacct
install_sacct_shim() {
    [[ "${MIXERLAB_SACCT_SHIM:-1}" != 0 ]] || return 0
    cmp -s "$SACCT_SHIM_SRC" "$SACCT_SHIM_DST" && return 0
    if [[ "$(id -u)" != 0 ]]; then log "note: $SACCT_SHIM_DST is missing/outdated (rerun as root)"; return 0; fi
    install -m 0755 "$SACCT_SHIM_SRC" "$SACCT_SHIM_DST"
    log "installed $SACCT_SHIM_DST (sacct answered from squeue + jobcomp log; no slurmdbd)"
}

# ---------------------------------------------------------------------------------------------
# Fast path: already healthy and config unchanged -> nothing to do.
# ---------------------------------------------------------------------------------------------
# sinfo alone is not enough: after slurmd dies the node still reads "idle" until SlurmdTimeout,
# so also check that the local daemons' pids are alive.
# A killed daemon can linger as a zombie until init reaps it, and `kill -0` succeeds on zombies.
alive() { kill -0 "$1" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]; }
pid_alive() { local pid; pid="$(cat "$1" 2>/dev/null)" && [[ -n "$pid" ]] && alive "$pid"; }
if command -v slurmd >/dev/null && [[ -f "$SLURM_CONF" ]] && munge_ok \
    && pid_alive "$RUN_DIR/slurmctld.pid" && pid_alive "$RUN_DIR/slurmd.pid" && node_healthy; then
    if [[ "$(generate_conf | grep -v '^# Generated by')" == "$(conf_body "$SLURM_CONF")" ]]; then
        install_sacct_shim
        log "already running and healthy; nothing to do."
        summary
        exit 0
    fi
    log "cluster is up but the generated slurm.conf changed; restarting daemons."
fi

# ---------------------------------------------------------------------------------------------
# Everything below changes the system: needs root.
# ---------------------------------------------------------------------------------------------
if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null; then
        log "re-running as root via sudo"
        exec sudo -E bash "$(readlink -f "$0")" "$@"
    fi
    die "must run as root (writes /etc/slurm and starts daemons)."
fi

# Packages: `make system` normally installs them; do it here too so the script stands alone.
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurm-wlm and munge (apt)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge
fi

# ---- munge -------------------------------------------------------------------------------------
if ! munge_ok; then
    install -d -o munge -g munge -m 0700 /etc/munge
    install -d -o munge -g munge -m 0711 /var/lib/munge
    install -d -o munge -g munge -m 0700 /var/log/munge
    install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
    if [[ ! -s "$MUNGE_KEY" ]]; then
        log "creating munge key $MUNGE_KEY"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$MUNGE_KEY"
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
        fi
    fi
    # munged refuses keys that are readable by others or not owned by its user.
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
    # A stale pid/socket from a killed munged makes the new one refuse to start.
    if [[ -f "$MUNGE_RUN/munged.pid" ]] && ! pid_alive "$MUNGE_RUN/munged.pid"; then
        rm -f "$MUNGE_RUN/munged.pid" "$MUNGE_RUN/munge.socket.2" "$MUNGE_RUN/munge.socket.2.lock"
    fi
    if ! pid_alive "$MUNGE_RUN/munged.pid"; then
        log "starting munged"
        # Run as the munge user like the packaged service does; --force tolerates the
        # container's unusual directory permissions instead of refusing to start.
        runuser -u munge -- /usr/sbin/munged --force
    fi
    for _ in $(seq 1 20); do munge_ok && break; sleep 0.25; done
    munge_ok || die "munged is not working (see /var/log/munge/munged.log)"
fi

# ---- slurm.conf + directories -------------------------------------------------------------------
install -d -m 0755 "$SLURM_ETC" "$LOG_DIR" "$RUN_DIR" "$CTLD_SPOOL" "$SLURMD_SPOOL"
new_conf="$(mktemp)"
trap 'rm -f "$new_conf"' EXIT
generate_conf >"$new_conf"
conf_changed=0
if [[ "$(conf_body "$new_conf")" != "$(conf_body "$SLURM_CONF")" ]]; then
    conf_changed=1
    [[ -f "$SLURM_CONF" ]] && cp -f "$SLURM_CONF" "$SLURM_CONF.bak"
    install -m 0644 "$new_conf" "$SLURM_CONF"
    log "wrote $SLURM_CONF"
fi

install_sacct_shim

# ---- daemons ------------------------------------------------------------------------------------

stop_daemon() {  # stop_daemon NAME PIDFILE: TERM, wait, then KILL (by pid only)
    local name=$1 pidfile=$2 pid
    pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
    pid="$(cat "$pidfile")"
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do alive "$pid" || break; sleep 0.25; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$pidfile"
}

if (( conf_changed )); then
    # Daemons started with an older config must re-read it; a restart is the simple, sure way.
    stop_daemon slurmd "$RUN_DIR/slurmd.pid"
    stop_daemon slurmctld "$RUN_DIR/slurmctld.pid"
fi

if ! pid_alive "$RUN_DIR/slurmctld.pid" || ! timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; then
    stop_daemon slurmctld "$RUN_DIR/slurmctld.pid"
    log "starting slurmctld"
    # Keeps saved state (jobs, node states) across restarts; -c would wipe it.
    slurmctld -f "$SLURM_CONF"
fi
# Wait for the controller before slurmd, so slurmd registers at once instead of retrying.
for _ in $(seq 1 40); do timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.5; done

if ! pid_alive "$RUN_DIR/slurmd.pid"; then
    log "starting slurmd"
    slurmd -f "$SLURM_CONF"
fi

# ---- wait for the node --------------------------------------------------------------------------
deadline=$(( SECONDS + WAIT_S ))
resumed=0
state=""
while (( SECONDS < deadline )); do
    state="$(node_state)"
    case "$state" in
        idle|mix|alloc|comp) break ;;
        down*|drain*|drng*|fail*)
            # ReturnToService=2 usually handles this; a node drained by an admin, or down from
            # a previous unclean stop, still needs an explicit resume.
            if (( ! resumed )); then
                log "node $NODE is '$state'; resuming it"
                scontrol update nodename="$NODE" state=resume 2>/dev/null || true
                resumed=1
            fi ;;
    esac
    sleep 1
done

if ! node_healthy; then
    echo "[start_cluster] ERROR: node $NODE did not become idle within ${WAIT_S}s (state: '${state:-no answer}')" >&2
    timeout 5 scontrol show node "$NODE" 2>/dev/null | grep -iE 'State=|Reason=' >&2 || true
    for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log"; do
        echo "----- tail $f -----" >&2
        tail -n 25 "$f" >&2 2>/dev/null || echo "(missing)" >&2
    done
    exit 1
fi
summary
