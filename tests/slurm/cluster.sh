#!/usr/bin/env bash
# A private SLURM cluster on this machine, for the job-script tests: one node, or several
# simulated ones.
#
#   tests/slurm/cluster.sh up       install munge + slurm if missing, start the cluster
#   tests/slurm/cluster.sh up N     the same on N simulated nodes (tests/cluster/cluster.sh:
#                                   network + UTS namespaces on a private bridge), one
#                                   slurmd per node with its own NodeName and address
#   tests/slurm/cluster.sh down     stop exactly the daemons `up` started, and their jobs
#   tests/slurm/cluster.sh status   exit 0 and describe it if up, exit 1 if down
#   tests/slurm/cluster.sh env      print `export SLURM_CONF=...` for eval
#
# `up` writes slurm.conf into a fresh temporary directory D, starts munged, slurmctld and
# slurmd by hand (no systemd, no cgroups) and waits until the node is idle; it prints the
# export line too, so callers do `eval "$(tests/slurm/cluster.sh up)"` (the progress
# messages go to stderr). D is recorded in the state file $MLP_SLURM_STATE (default
# build/slurm/state); give each concurrent user its own state file. Ports are picked free
# at `up`, so two clusters can run side by side. Both `up` and `down` are idempotent.
#
# `down` cancels the jobs, stops the daemons by the PIDs in their pid files (after checking
# that each PID still runs our daemon with our D), waits for them to die (kill -9 after
# 10 s), and kills job processes that escaped proctrack/linuxproc (re-parented to init),
# found through SLURM_CONF=D/etc/slurm.conf and SLURMD_NODENAME in /proc/PID/environ.
# Never anything by name. MLP_SLURM_KEEP=1 keeps D (logs) after `down`.
#
# With N nodes: slurmctld runs on node 1 (address 10.77.0.1) and slurmd -N HOSTNAME on each
# node, inside its namespaces; munged stays on the machine (its socket is a file, which the
# nodes share). The controller is reachable only from the nodes, so clients run there:
# `up` prints `export MLP_CLUSTER=...` too, and callers run sbatch, scontrol, squeue ... as
# `tests/cluster/cluster.sh exec 1 sbatch ...`. `down` also tears the nodes down.
# Settings and pitfalls: the project's shared notes on SLURM on this machine (slurm-local).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${MLP_SLURM_STATE:-$ROOT/build/slurm/state}
NODES_SH=$ROOT/tests/cluster/cluster.sh
NODE=localhost   # the node names, space-separated: localhost, or the simulated nodes'
NNODES=1

say() { echo "cluster: $*" >&2; }
die() { echo "cluster: error: $*" >&2; exit 1; }

# --- process helpers (a zombie counts as dead: PID 1 may reap late) --------------------
alive() {
    local s
    s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
}
# PID from a pid file, only if that process still runs with our directory in its command
# line (a stale pid file must never make us signal an unrelated process).
our_pid() {   # pidfile
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    [[ $(tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline") == *"$D/"* ]] || return 1
    echo "$pid"
}
# Wait up to $2 tenths of a second for every PID in $1 to die.
wait_dead() {   # "pids" tenths
    local i p left
    for ((i = 0; i < $2; i++)); do
        left=
        for p in $1; do alive "$p" && left+=" $p"; done
        [ -z "$left" ] && return 0
        sleep 0.1
    done
    return 1
}
stop_pids() {   # "pids" what
    local p
    [ -n "${1// /}" ] || return 0
    for p in $1; do kill -TERM "$p" 2>/dev/null || true; done
    if ! wait_dead "$1" 100; then
        say "$2 still running after 10 s; kill -9"
        for p in $1; do
            if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
        done
        wait_dead "$1" 50 || say "warning: $2 did not die: $1"
    fi
}
# Job processes of this cluster still running (escaped ones outlive their job): those
# with our SLURM_CONF in their environment that are job tasks (SLURMD_NODENAME, which the
# callers' shells lack) or slurmstepds (they inherit slurmd's environment).
job_pids() {
    local f pid comm
    for f in /proc/[0-9]*/environ; do
        pid=${f#/proc/}; pid=${pid%/environ}
        [ "$pid" = $$ ] && continue
        grep -qzxF "SLURM_CONF=$D/etc/slurm.conf" "$f" 2>/dev/null || continue
        comm=$(cat "/proc/$pid/comm" 2>/dev/null) || continue
        if [[ $comm == slurmstepd* ]] || grep -qzx "SLURMD_NODENAME=\(${NODE// /\|}\)" "$f" 2>/dev/null; then
            alive "$pid" && echo "$pid"
        fi
    done
    return 0
}

# --- packages ---------------------------------------------------------------------------
install_packages() {
    local missing=() sudo=() made_policy=
    command -v munged    >/dev/null 2>&1 || missing+=(munge)
    command -v slurmctld >/dev/null 2>&1 || missing+=(slurmctld)
    command -v slurmd    >/dev/null 2>&1 || missing+=(slurmd)
    command -v sbatch    >/dev/null 2>&1 || missing+=(slurm-client)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "no apt-get here; install ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "need root or sudo to install ${missing[*]}"
        sudo=(sudo)
    fi
    say "installing ${missing[*]}"
    # The packages' postinst would start the system munge/slurm services; a policy-rc.d
    # that answers 101 ("action forbidden") stops that. Only ours is removed afterwards.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# temporary, from mlp tests/slurm/cluster.sh\nexit 101\n' |
            "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local rc=0
    export DEBIAN_FRONTEND=noninteractive
    if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
        "${sudo[@]}" apt-get update -qq >&2 &&
            "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || rc=$?
    fi
    [ -n "$made_policy" ] && "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
    [ $rc -eq 0 ] || die "apt-get install ${missing[*]} failed"
}

# --- config -----------------------------------------------------------------------------
free_ports() {   # prints two free TCP ports on 127.0.0.1
    python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

write_config() {
    local ports ctld_port slurmd_port cpus mem user ctld_host nodes_conf
    if [ "$NNODES" -gt 1 ]; then
        # The nodes' own network namespaces: nothing else listens there.
        ports="6817 6818"
    else
        ports=$(free_ports 2>/dev/null) || ports="6817 6818"
    fi
    read -r ctld_port slurmd_port <<< "$ports"
    # At least 8 CPUs so that 2x4 and 8x1 jobs fit on a 2-core machine (config_overrides
    # accepts more CPUs than the hardware has); memory in MB, not a consumable here.
    cpus=$(nproc --all); [ "$cpus" -ge 8 ] || cpus=8
    mem=$(awk '/^MemTotal:/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)
    user=$(id -un)
    mkdir -p "$D"/{etc,munge,state,spool/slurmd,run,log,tmp}
    ctld_host="localhost(127.0.0.1)"
    local hw="CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem"
    nodes_conf="NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=localhost $hw State=UNKNOWN"
    if [ "$NNODES" -gt 1 ]; then
        local i host addr
        nodes_conf=
        while read -r i host addr; do
            [ "$i" = 1 ] && ctld_host="$host($addr)"
            nodes_conf+="NodeName=$host NodeAddr=$addr NodeHostname=$host $hw State=UNKNOWN"$'\n'
            mkdir -p "$D/spool/slurmd-$host"
        done < <(MLP_CLUSTER=$MLP_CLUSTER "$NODES_SH" nodes)
        nodes_conf=${nodes_conf%$'\n'}
    fi
    chmod 0755 "$D" "$D/munge"   # munged refuses a socket dir not searchable by all
    cat > "$D/etc/slurm.conf" <<EOF
# Written by mlp tests/slurm/cluster.sh: a private cluster of $NNODES node(s), no cgroups.
ClusterName=mlptest
SlurmctldHost=$ctld_host
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/munge.socket,cred_expire=10
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/slurmd$( [ "$NNODES" -gt 1 ] && echo -%n)
TmpFS=$D/tmp$( [ "$NNODES" -gt 1 ] && echo /%n)
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd$( [ "$NNODES" -gt 1 ] && echo -%n).pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd$( [ "$NNODES" -gt 1 ] && echo -%n).log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.txt
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=pmix
SlurmdParameters=config_overrides
ReturnToService=2
EnforcePartLimits=ALL
KillWait=10
InactiveLimit=0
MinJobAge=300
Waittime=0
$nodes_conf
PartitionName=debug Nodes=${NODE// /,} Default=YES MaxTime=INFINITE State=UP
EOF
    # PMIx client files of srun --mpi=pmix steps go into D too, not into a shared /tmp.
    # Several nodes: each into its own TmpFS (D/tmp/NODE, slurmstepd's default when no
    # base is set), since the names are per step, not per node, and D is shared.
    if [ "$NNODES" -gt 1 ]; then
        local n
        for n in $NODE; do mkdir -p "$D/tmp/$n"; done
        : > "$D/etc/mpi.conf"
    else
        echo "PMIxCliTmpDirBase=$D/tmp" > "$D/etc/mpi.conf"
    fi
    dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
    chmod 0400 "$D/munge/munge.key"
}

wait_for() {   # tenths, command...: until the command succeeds
    local n=$1 i
    shift
    for ((i = 0; i < n; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
# A client command (sinfo, scontrol, squeue, scancel): on node 1 when the nodes are
# simulated, since the controller listens on the bridge only.
client() {
    if [ "$NNODES" -gt 1 ]; then
        MLP_CLUSTER=$MLP_CLUSTER "$NODES_SH" exec 1 "$@"
    else
        "$@"
    fi
}
node_idle() {   # every node idle
    local states
    states=$(client sinfo -h -N -o %T 2>/dev/null) || return 1
    [ "$(grep -cx idle <<< "$states")" -eq "$NNODES" ] && [ "$(wc -l <<< "$states")" -eq "$NNODES" ]
}

slurmd_pidfiles() {
    local n
    if [ "$NNODES" -gt 1 ]; then
        for n in $NODE; do echo "$D/run/slurmd-$n.pid"; done
    else
        echo "$D/run/slurmd.pid"
    fi
}
is_up() {   # D set; all daemons of D alive
    [ -n "${D:-}" ] && [ -d "$D" ] &&
        our_pid "$D/munge/munged.pid" >/dev/null &&
        our_pid "$D/run/slurmctld.pid" >/dev/null || return 1
    local f
    for f in $(slurmd_pidfiles); do our_pid "$f" >/dev/null || return 1; done
}
# D, and with simulated nodes their count, names and cluster (D/nodes.state).
load_state() {
    D=$(cat "$STATE" 2>/dev/null || true)
    NNODES=1 NODE=localhost
    if [ -n "$D" ] && [ -s "$D/nnodes" ]; then
        NNODES=$(cat "$D/nnodes")
        MLP_CLUSTER=$(cat "$D/nodes.state" 2>/dev/null || true)
        NODE=$(cat "$D/nodenames" 2>/dev/null || true)
    fi
}
print_env() {
    echo "export SLURM_CONF=$D/etc/slurm.conf"
    [ "$NNODES" -gt 1 ] && echo "export MLP_CLUSTER=$MLP_CLUSTER"
    return 0
}
show_logs() {
    local f
    for f in "$D"/log/*.log; do
        [ -s "$f" ] && { echo "== $f (last 20 lines)"; tail -n 20 "$f"; } >&2
    done
    return 0
}

# A failed `up` leaves nothing running: show the logs, stop what started, then fail.
up_failed() {
    show_logs
    cmd_down
    die "$1"
}

cmd_up() {
    local want=${1:-1}
    [[ $want =~ ^[0-9]+$ ]] && [ "$want" -ge 1 ] || die "up: N must be a number of nodes, not '$want'"
    load_state
    if is_up && [ "$NNODES" = "$want" ]; then
        say "already up in $D"
        print_env
        return 0
    fi
    [ -n "${D:-}" ] && { say "stale state $D (or another size): cleaning up"; cmd_down; }
    install_packages
    mkdir -p "$(dirname "$STATE")"
    D=$(mktemp -d "${TMPDIR:-/tmp}/mlp-slurm.XXXXXX")
    echo "$D" > "$STATE"
    NNODES=$want
    if [ "$NNODES" -gt 1 ]; then
        echo "$NNODES" > "$D/nnodes"
        local line
        line=$(MLP_CLUSTER_STATE=$D/nodes.state "$NODES_SH" up "$NNODES") || up_failed "simulated nodes failed"
        MLP_CLUSTER=${line#export MLP_CLUSTER=}
        NODE=$(MLP_CLUSTER=$MLP_CLUSTER "$NODES_SH" nodes | awk '{ printf "%s%s", sep, $2; sep = " " }')
        echo "$NODE" > "$D/nodenames"
    fi
    write_config
    export SLURM_CONF=$D/etc/slurm.conf
    local start=$SECONDS
    munged --key-file="$D/munge/munge.key" --socket="$D/munge/munge.socket" \
        --pid-file="$D/munge/munged.pid" --log-file="$D/log/munged.log" \
        --seed-file="$D/munge/munged.seed" || up_failed "munged failed to start"
    wait_for 50 test -S "$D/munge/munge.socket" || up_failed "no munge socket after 5 s"
    client slurmctld -f "$SLURM_CONF" -i || up_failed "slurmctld failed to start"
    wait_for 100 client scontrol ping || up_failed "slurmctld does not answer after 10 s"
    if [ "$NNODES" -gt 1 ]; then
        local i=0 n
        for n in $NODE; do
            i=$((i + 1))
            MLP_CLUSTER=$MLP_CLUSTER "$NODES_SH" exec "$i" slurmd -f "$SLURM_CONF" -N "$n" ||
                up_failed "slurmd on node $i ($n) failed to start"
        done
    else
        slurmd -f "$SLURM_CONF" -N "$NODE" || up_failed "slurmd failed to start"
    fi
    wait_for 300 node_idle ||
        up_failed "nodes not idle after 30 s: $(client sinfo -h -N -o '%N %T %E' 2>&1)"
    say "up in $((SECONDS - start)) s: $D (SLURM_CONF=$SLURM_CONF)"
    print_env
}

cmd_down() {
    [ -n "${D:-}" ] || load_state
    if [ -z "$D" ] || [ ! -d "$D" ]; then
        rm -f "$STATE"
        say "not up"
        return 0
    fi
    export SLURM_CONF=$D/etc/slurm.conf
    local ctld slurmd='' munged jobs f
    ctld=$(our_pid "$D/run/slurmctld.pid" || true)
    for f in $(slurmd_pidfiles); do slurmd+=" $(our_pid "$f" || true)"; done
    munged=$(our_pid "$D/munge/munged.pid" || true)
    # Cancel the jobs first, so that slurmd and its slurmstepds end them cleanly.
    if [ -n "$ctld" ] && [ -n "$munged" ]; then
        jobs=$(client squeue -h -o %i 2>/dev/null || true)
        if [ -n "$jobs" ]; then
            say "cancelling jobs: $(tr '\n' ' ' <<< "$jobs")"
            # shellcheck disable=SC2086
            client scancel $jobs 2>/dev/null || true
            wait_for 150 jobs_gone || say "warning: jobs still running after 15 s"
        fi
    fi
    stop_pids "$slurmd" slurmd
    stop_pids "$ctld" slurmctld
    stop_pids "$munged" munged
    # Processes that escaped their job (re-parented to init) carry our SLURM_CONF.
    local stray
    stray=$(job_pids)
    if [ -n "$stray" ]; then
        say "killing leftover job processes: $(tr '\n' ' ' <<< "$stray")"
        # shellcheck disable=SC2086
        stop_pids "$stray" "job processes"
    fi
    # The simulated nodes last: what still runs inside them is ended there.
    if [ "$NNODES" -gt 1 ] && [ -s "$D/nodes.state" ]; then
        MLP_CLUSTER_STATE=$D/nodes.state "$NODES_SH" down || say "warning: the simulated nodes did not come down"
    fi
    rm -f "$STATE"
    if [ "${MLP_SLURM_KEEP:-0}" = 1 ]; then
        say "down; kept $D"
    else
        rm -rf "$D"
        say "down"
    fi
}

cmd_status() {
    load_state
    if [ -z "$D" ]; then echo "down"; return 1; fi
    export SLURM_CONF=$D/etc/slurm.conf
    local name file pid state=up
    for file in "$D/munge/munged.pid" "$D/run/slurmctld.pid" $(slurmd_pidfiles); do
        name=$(basename "$file" .pid)
        if pid=$(our_pid "$file"); then echo "$name: pid $pid"; else echo "$name: not running"; state=partial; fi
    done
    echo "dir: $D"
    echo "SLURM_CONF=$SLURM_CONF"
    [ "$NNODES" -gt 1 ] && echo "simulated nodes: $NODE (MLP_CLUSTER=$MLP_CLUSTER)"
    if [ $state = up ]; then
        client sinfo 2>&1 || true
        client squeue 2>&1 || true
    fi
    local stray
    stray=$(job_pids)
    [ -z "$stray" ] || echo "job processes: $(tr '\n' ' ' <<< "$stray")"
    echo "$state"
    [ $state = up ]
}

jobs_gone() { [ -z "$(client squeue -h -t R,CG,CF,S -o %i 2>/dev/null)" ]; }

D='' MLP_CLUSTER=${MLP_CLUSTER:-}
case ${1:-} in
    up) cmd_up "${2:-1}" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) load_state; [ -n "$D" ] || die "not up"; print_env ;;
    *) echo "usage: $0 up [N]|down|status|env" >&2; exit 2 ;;
esac
