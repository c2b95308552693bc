#!/usr/bin/env bash
# A cluster in a box: N simulated nodes on this one machine, for the multi-node tests.
#
#   tests/cluster/cluster.sh up [N]            bring up N nodes (default 2); prints
#                                              `export MLP_CLUSTER=D` for eval
#   tests/cluster/cluster.sh down              stop what `up` made: processes, namespaces, D
#   tests/cluster/cluster.sh status            exit 0 and list the nodes if up, 1 if down
#   tests/cluster/cluster.sh exec NODE CMD...  run CMD on node NODE (1..N, or its hostname
#                                              or address), in its namespaces
#   tests/cluster/cluster.sh nodes             one line per node: index hostname address
#   tests/cluster/cluster.sh rsh               the path of the ssh stand-in for Open MPI
#
# What a node is: a network namespace (`ip netns add`) with its own loopback and one veth
# into a switch namespace that holds a bridge, address 10.77.0.I/24 (node I, from 1); and a
# UTS namespace (`unshare --uts=FILE`, kept alive by a bind mount of it on FILE) with its own
# hostname, because Open MPI and SLURM tell nodes apart by hostname. Everything else is
# shared with the machine: the file system (as on a cluster with a shared home), /dev/shm,
# the processes and the CPUs. The host's network is never touched: the veths are created
# inside the namespaces, and nothing routes out of 10.77.0.0/24, so every packet stays
# between the namespaces this script made.
#
# Open MPI across the nodes: tests/cluster/mpirun runs mpirun on node 1 with the hostfile
# D/hostfile (MLP_CLUSTER_SLOTS slots per node, default 2), `--mca plm_rsh_agent
# tests/cluster/rsh` (it runs Open MPI's daemon on the named node, as ssh would) and
# `--mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24`.
# `exec` sets MLP_CLUSTER, which the stand-in reads to find the nodes.
#
# Names are unique per `up` (the namespaces are mlp<PID>-s, mlp<PID>-nI; the hostnames
# mlp<PID>nI), so two clusters can run side by side. State: D is recorded in
# $MLP_CLUSTER_STATE (default build/cluster/state). `down` kills only processes whose
# network namespace is one of ours (compared by inode in /proc/PID/ns/net), then deletes
# our namespaces, unmounts our UTS files and removes D; it is idempotent, and a failed `up`
# runs it. Needs root, `ip` (iproute2) and `unshare`/`nsenter` (util-linux).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${MLP_CLUSTER_STATE:-$ROOT/build/cluster/state}
SUBNET=10.77.0

say() { echo "cluster: $*" >&2; }
die() { echo "cluster: error: $*" >&2; exit 1; }

load_state() { D=$(cat "$STATE" 2>/dev/null || true); }
# The node table, D/nodes: "index hostname address netns utsfile" per line.
node_line() {   # index | hostname | address
    [ -s "$D/nodes" ] || die "not up (no $D/nodes)"
    awk -v n="$1" '$1 == n || $2 == n || $3 == n { print; found = 1 } END { exit !found }' \
        "$D/nodes" || die "no node '$1' in this cluster ($(awk '{ printf "%s ", $2 }' "$D/nodes"))"
}
ns_inode() { stat -L -c %i "$1" 2>/dev/null; }

# Processes that live in one of our network namespaces (started there by exec, the rsh
# stand-in or slurmd); never anything else.
our_procs() {
    local inodes="" f ino pid
    [ -s "$D/nodes" ] || return 0
    while read -r _ _ _ ns _; do
        ino=$(ns_inode "/run/netns/$ns") && inodes+=" $ino"
    done < "$D/nodes"
    [ -n "$inodes" ] || return 0
    for f in /proc/[0-9]*/ns/net; do
        ino=$(ns_inode "$f") || continue
        if [[ " $inodes " == *" $ino "* ]]; then
            pid=${f#/proc/}; pid=${pid%/ns/net}
            [ "$pid" != $$ ] && echo "$pid"
        fi
    done
    return 0
}

alive() {
    local s
    s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
}

cmd_down() {
    [ -n "${D:-}" ] || load_state
    if [ -z "$D" ] || [ ! -d "$D" ]; then
        rm -f "$STATE"
        say "not up"
        return 0
    fi
    local pids p i left
    pids=$(our_procs | tr '\n' ' ')
    if [ -n "${pids// /}" ]; then
        say "stopping processes left on the nodes: $pids"
        for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
        for ((i = 0; i < 50; i++)); do
            left=
            for p in $pids; do alive "$p" && left+=" $p"; done
            [ -z "$left" ] && break
            sleep 0.1
        done
        for p in $left; do kill -KILL "$p" 2>/dev/null || true; done
    fi
    if [ -s "$D/nodes" ]; then
        while read -r _ _ _ ns uts; do
            mountpoint -q "$uts" 2>/dev/null && umount "$uts"
            ip netns del "$ns" 2>/dev/null || true
        done < "$D/nodes"
    fi
    local sw
    sw=$(cat "$D/switch" 2>/dev/null || true)
    [ -n "$sw" ] && { ip netns del "$sw" 2>/dev/null || true; }
    rm -rf "$D"
    rm -f "$STATE"
    say "down"
}

up_failed() { trap - EXIT; say "$1"; cmd_down; exit 1; }

cmd_up() {
    local n=${1:-2} i id sw ns uts host
    [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "up: N must be 1..200, not '$n'"
    [ "$(id -u)" -eq 0 ] || die "needs root (network and UTS namespaces)"
    local tool
    for tool in ip unshare nsenter mountpoint; do
        command -v $tool >/dev/null 2>&1 || die "no $tool: install iproute2 and util-linux (scripts/install-deps)"
    done
    load_state
    if [ -n "$D" ] && [ -s "$D/nodes" ]; then
        say "already up in $D (down first)"
        echo "export MLP_CLUSTER=$D"
        return 0
    fi
    mkdir -p "$(dirname "$STATE")"
    D=$(mktemp -d "${TMPDIR:-/tmp}/mlp-cluster.XXXXXX")
    chmod 0755 "$D"
    echo "$D" > "$STATE"
    mkdir -p "$D/uts"
    : > "$D/nodes.new"
    # Whatever stops `up` half-way (a failed command under set -e, a signal) tears down
    # what it made so far.
    trap 'up_failed "up interrupted"' INT TERM
    trap 'rc=$?; [ $rc -eq 0 ] || { say "up failed (status $rc): tearing down"; cmd_down; }' EXIT
    id=mlp$$
    sw=$id-s
    echo "$sw" > "$D/switch"
    ip netns add "$sw" || up_failed "ip netns add $sw failed"
    ip -n "$sw" link set lo up
    ip -n "$sw" link add br0 type bridge || up_failed "no bridge in $sw"
    ip -n "$sw" link set br0 up
    for ((i = 1; i <= n; i++)); do
        ns=$id-n$i uts=$D/uts/node$i host=${id}n$i
        # Recorded before it exists, so that a failure half-way is still torn down.
        echo "$i $host $SUBNET.$i $ns $uts" >> "$D/nodes.new"
        cp "$D/nodes.new" "$D/nodes"
        ip netns add "$ns" || up_failed "ip netns add $ns failed"
        ip -n "$ns" link set lo up
        ip link add v$i netns "$ns" type veth peer name p$i netns "$sw" ||
            up_failed "veth for node $i failed"
        ip -n "$ns" link set v$i name eth0
        ip -n "$ns" addr add "$SUBNET.$i/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$sw" link set p$i master br0
        ip -n "$sw" link set p$i up
        touch "$uts"
        unshare --uts="$uts" hostname "$host" || up_failed "unshare --uts for node $i failed"
    done
    rm -f "$D/nodes.new"
    # A hostfile for mpirun: each node's hostname and its slots (MLP_CLUSTER_SLOTS, default 2).
    awk -v s="${MLP_CLUSTER_SLOTS:-2}" '{ print $2, "slots=" s }' "$D/nodes" > "$D/hostfile"
    # The bridge forwards once its ports are up; wait until node 1 reaches the last node.
    local ok=0
    for ((i = 0; i < 50; i++)); do
        # "Connection refused" is an answer from node n's kernel: the path works.
        if [[ $(nsenter --net="/run/netns/$id-n1" bash -c "exec 3<>/dev/tcp/$SUBNET.$n/1" 2>&1) == *refused* ]]; then
            ok=1; break
        fi
        sleep 0.1
    done
    [ $ok = 1 ] || up_failed "node 1 cannot reach node $n over the bridge"
    trap - INT TERM EXIT
    say "up: $n nodes in $D: $(awk '{ printf "%s=%s ", $2, $3 }' "$D/nodes")"
    echo "export MLP_CLUSTER=$D"
}

cmd_exec() {
    [ $# -ge 2 ] || die "usage: exec NODE COMMAND..."
    [ -n "${MLP_CLUSTER:-}" ] && D=$MLP_CLUSTER || load_state
    [ -n "$D" ] || die "not up"
    local line ns uts
    line=$(node_line "$1")
    shift
    read -r _ _ _ ns uts <<< "$line"
    MLP_CLUSTER=$D exec nsenter --net="/run/netns/$ns" --uts="$uts" -- "$@"
}

cmd_status() {
    load_state
    if [ -z "$D" ] || [ ! -s "$D/nodes" ]; then echo "down"; return 1; fi
    echo "dir: $D"
    cat "$D/nodes"
    local p
    p=$(our_procs | tr '\n' ' ')
    [ -z "${p// /}" ] || echo "processes on the nodes: $p"
    echo up
}

D=
case ${1:-} in
    up) cmd_up "${2:-2}" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    exec) shift; cmd_exec "$@" ;;
    nodes) [ -n "${MLP_CLUSTER:-}" ] && D=$MLP_CLUSTER || load_state
           [ -n "$D" ] && [ -s "$D/nodes" ] || die "not up"
           awk '{ print $1, $2, $3 }' "$D/nodes" ;;
    rsh) echo "$ROOT/tests/cluster/rsh" ;;
    *) echo "usage: $0 up [N] | down | status | exec NODE CMD... | nodes | rsh" >&2; exit 2 ;;
esac
