#!/usr/bin/env bash
# Minimal `sacct` for a SLURM cluster WITHOUT slurmdbd (the local test cluster).
#
# Why: submitit (and so hydra-submitit-launcher) learns that a job has ended either from its
# result pickle or from `sacct -o JobID,State,NodeList --parsable2 -j ID ...`. It has no squeue
# fallback: when sacct fails ("Slurm accounting storage is disabled") every job reads as UNKNOWN,
# and a job that dies without writing its result (scancel, OOM kill, segfault, node failure)
# makes `job.result()` -- and the whole sweep -- wait forever.
#
# start_cluster.sh installs this file as /usr/local/bin/sacct (ahead of /usr/bin/sacct on PATH).
# When accounting storage is configured it just runs the real sacct. Otherwise it answers from
#   1. the controller (`squeue -t all`: pending/running jobs, and finished ones for MinJobAge), and
#   2. the job-completion log (JobCompType=jobcomp/filetxt) for jobs the controller has purged.
# Supported: -j/--jobs, -o/--format (JobID, JobIDRaw, JobName, State, NodeList, Partition,
# ExitCode; anything else prints empty), -P/--parsable2, -p/--parsable, -n/--noheader.
# Other options are accepted and ignored. Job steps are not reported (submitit skips them).
set -euo pipefail

REAL_SACCT=/usr/bin/sacct
CONF="${SLURM_CONF:-/etc/slurm/slurm.conf}"

acct_type="$(sed -n 's/^[[:space:]]*AccountingStorageType[[:space:]]*=[[:space:]]*//Ip' "$CONF" 2>/dev/null | tail -n1)"
if [[ -n "$acct_type" && "$acct_type" != "accounting_storage/none" ]]; then
    exec "$REAL_SACCT" "$@"
fi
jobcomp_log="$(sed -n 's/^[[:space:]]*JobCompLoc[[:space:]]*=[[:space:]]*//Ip' "$CONF" 2>/dev/null | tail -n1)"

fields="JobID,JobName,Partition,State,ExitCode,NodeList"
jobs=""
sep="|"
trailing=""
header=1
while (($#)); do
    case "$1" in
        -j|--jobs) jobs="$jobs,$2"; shift ;;
        -j*) jobs="$jobs,${1#-j}" ;;
        --jobs=*) jobs="$jobs,${1#--jobs=}" ;;
        -o|--format) fields="$2"; shift ;;
        -o*) fields="${1#-o}" ;;
        --format=*) fields="${1#--format=}" ;;
        -P|--parsable2) sep="|"; trailing="" ;;
        -p|--parsable) sep="|"; trailing="|" ;;
        -n|--noheader) header=0 ;;
        # options taking a value we ignore
        -S|--starttime|-E|--endtime|-u|--user|-A|--account|-s|--state|-r|--partition|-M|--clusters) shift ;;
        *) ;;
    esac
    shift
done

# Requested job ids, reduced to the numeric job/array id ("123_4" -> 123).
want="$(tr ',' '\n' <<<"$jobs" | sed -e 's/[._].*//' -e '/^$/d' | sort -u | tr '\n' ' ')"

{
    # Finished jobs from the completion log, oldest first (so later lines win in the reader).
    if [[ -n "$jobcomp_log" && -r "$jobcomp_log" ]]; then
        awk -v want=" $want" '
        {
            id = ""; arr = ""; task = ""; state = ""; nodes = ""; name = ""; part = ""; ec = ""
            for (i = 1; i <= NF; i++) {
                split($i, kv, "=")
                k = kv[1]; v = substr($i, length(k) + 2)
                if (k == "JobId") id = v
                else if (k == "ArrayJobId") arr = v
                else if (k == "ArrayTaskId") task = v
                else if (k == "JobState") state = v
                else if (k == "NodeList") nodes = v
                else if (k == "Name") name = v
                else if (k == "Partition") part = v
                else if (k == "ExitCode") ec = v
            }
            base = (arr != "") ? arr : id
            if (want != " " && index(want " ", " " base " ") == 0 && index(want " ", " " id " ") == 0) next
            jobid = (arr != "") ? arr "_" task : id
            print jobid "\t" id "\t" name "\t" part "\t" state "\t" ec "\t" nodes
        }' "$jobcomp_log"
    fi
    # Jobs the controller still knows (current state wins: printed last).
    # %i id (123 or 123_4 or 123_[5-9]), %A raw id, %F array id, %j name, %P partition, %T state,
    # %N nodes. Filtering here rather than with `squeue -j`, which fails if any id is purged.
    squeue -h -t all -o '%i	%A	%F	%j	%P	%T	%N' 2>/dev/null | awk -F'\t' -v OFS='\t' -v want=" $want" '
        want != " " && index(want " ", " " $3 " ") == 0 && index(want " ", " " $2 " ") == 0 { next }
        { print $1, $2, $4, $5, $6, "", $7 }'
} | awk -F'\t' -v OFS='\t' '  # one line per job id, keeping the latest information
    !($1 in last) { order[++n] = $1 }
    {   # squeue has no exit code: keep the one from the completion log
        if ($6 == "" && ($1 in ec)) { $6 = ec[$1] }
        if ($6 != "") ec[$1] = $6
        last[$1] = $0
    }
    END { for (i = 1; i <= n; i++) print last[order[i]] }
' | awk -F'\t' -v fields="$fields" -v sep="$sep" -v trailing="$trailing" -v header="$header" '
    BEGIN {
        n = split(fields, f, ",")
        for (i = 1; i <= n; i++) { sub(/%.*/, "", f[i]); lf[i] = tolower(f[i]) }
        if (header) { line = ""; for (i = 1; i <= n; i++) line = line (i > 1 ? sep : "") f[i]; print line trailing }
    }
    {
        line = ""
        for (i = 1; i <= n; i++) {
            k = lf[i]
            v = (k == "jobid") ? $1 : (k == "jobidraw") ? $2 : (k == "jobname") ? $3 : \
                (k == "partition") ? $4 : (k == "state") ? $5 : (k == "exitcode") ? $6 : \
                (k == "nodelist") ? $7 : ""
            line = line (i > 1 ? sep : "") v
        }
        print line trailing
    }'
