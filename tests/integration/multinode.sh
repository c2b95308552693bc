# mlp across two simulated nodes (tests/cluster/cluster.sh: network + UTS namespaces on a
# private bridge, the file system shared), Open MPI over TCP between them:
#   a. 2 nodes x 2 ranks, exact mode, TCP only and with shared memory inside each node
#      (the gradient summed through each node's shared memory, then across the nodes):
#      weights, param_hash rows and printed epoch lines identical to 1 rank on 1 node; the
#      banner says 2 nodes; one shared-memory window per node (the ranks' mapped
#      segments), and shared-memory messages (btl vader) only between the ranks of a
#      node; the memory line gives the largest node's total. 3 ranks on the 2 nodes
#      (2 + 1): the gradient summed with MPI_Allreduce, the same weights.
#   b. the second node's data file differs: every rank stops with the checksum error.
#   c. SIGKILL of a rank on the second node: the job ends within 15 s, latest.h5 loads,
#      and resuming it on 1 node ends bitwise as an uninterrupted run.
#   d. the banner sees every rank: OMP_NUM_THREADS on one node only, a node with fewer
#      CPUs, another binary -> ranges and warnings.
# Run alone: MLP=$PWD/mlp bash tests/integration/multinode.sh   (needs root; 40-80 s here)
source "$(dirname "$0")/../lib.sh"
CLUSTER=$ROOT/tests/cluster/cluster.sh
NODES_MPIRUN=$ROOT/tests/cluster/mpirun
export MLP_CLUSTER_STATE=$T/cluster.state   # a private cluster, even beside another one
if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: simulated nodes need root (network and UTS namespaces)"
    exit 0
fi
on_exit() {
    local rc=$?
    bash "$CLUSTER" down || true
    rm -rf "$T"
    exit $rc
}
trap on_exit EXIT
start=$SECONDS
eval "$(bash "$CLUSTER" up 2)" || fail "cluster up failed"
mapfile -t hosts < <(bash "$CLUSTER" nodes | awk '{ print $2 }')
note "cluster up: ${hosts[*]} in $((SECONDS - start)) s"

# Ranks x threads exceed the 2 cores here: idle OpenMP threads must sleep. mpirun passes
# these (and AddressSanitizer's options, under make SAN=1) to the second node's ranks.
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1
# (In an MPMD launch, `A : B`, each app context needs its own -x.)
pass=(-x OMP_WAIT_POLICY -x OMP_NUM_THREADS -x ASAN_OPTIONS)
nodes_np() { "$NODES_MPIRUN" --bind-to none "${pass[@]}" "$@"; }
# The printed results without timings: epoch lines and the final line up to its paths.
results() { grep '^epoch \|^done: ' "$1" | sed 's/  [0-9.]* s .*//; s/; checkpoint .*//'; }
# The PIDs of our ranks (their command line holds $T; comm is the binary's name) with
# their world rank and node index (by network namespace): "pid rank node" per line.
ns_node() {   # pid -> node index
    local ino i ns
    ino=$(stat -L -c %i "/proc/$1/ns/net" 2>/dev/null) || return 0
    while read -r i _ _ ns _; do
        [ "$(stat -L -c %i "/run/netns/$ns" 2>/dev/null)" = "$ino" ] && { echo "$i"; return 0; }
    done < "$MLP_CLUSTER/nodes"
    return 0
}
ranks() {
    local pid r
    for pid in $(pgrep -f -- "$1"); do
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == mlp* ]] || continue
        r=$({ tr '\0' '\n' < "/proc/$pid/environ"; } 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
        [ -n "$r" ] && echo "$pid $r $(ns_node "$pid")"
    done
    return 0
}

# --- a. 2 nodes x 2 ranks == 1 rank ------------------------------------------------------
cfg=$(small_config ref)
sets=(--set train.epochs=3 --set data.train_limit=1500 --set model.hidden=24 --set train.chunk=5)
note "a. 1 rank on 1 node, then 2 nodes x 2 ranks over TCP, then with shared memory per node"
run_np 1 "$cfg" "${sets[@]}" > "$T/ref.log" 2>&1 || { cat "$T/ref.log"; fail "1 rank"; }
results "$T/ref.log" > "$T/ref.lines"
ref_sha=$(model_sha "$T/ref/ckpt/latest.h5")
for btl in tcp,self tcp,self,vader; do
    d=$T/$btl
    t0=$SECONDS
    nodes_np -np 4 --mca btl $btl "$MLP" "$cfg" "${sets[@]}" --set checkpoint.dir="$d" \
        --set log.metrics="$d/metrics.csv" > "$d.log" 2>&1 &
    pid=$!
    {
        # While it runs: each rank's mapping of the data window (Open MPI's osc_sm file),
        # as "device:inode". A rank seen with it is stopped (SIGSTOP) until all four are
        # seen, so that the run cannot end first: the others then wait for it in a
        # collective, the window still mapped.
        declare -A seg=() vader=()
        stopped=()
        for _ in $(seq 1200); do
            while read -r p r n; do
                [ -n "${seg[$r]:-}" ] && continue
                s=$(awk '$6 ~ /\/osc_sm\./ { print $4 ":" $5; exit }' "/proc/$p/maps" 2>/dev/null || true)
                [ -n "$s" ] || continue
                kill -STOP "$p" && stopped+=("$p") && seg[$r]="$n $s"
                # The hosts of the shared-memory message segments (btl vader) it maps.
                vader[$r]=$(awk '$6 ~ /\/vader_segment\./ { sub(/.*\/vader_segment\./, "", $6); sub(/\..*/, "", $6); print $6 }' \
                    "/proc/$p/maps" 2>/dev/null | sort -u | tr '\n' ' ')
            done < <(ranks "$d")
            [ ${#seg[@]} -eq 4 ] && break
            kill -0 $pid 2>/dev/null || break
            sleep 0.05
        done
        [ ${#stopped[@]} -eq 0 ] || kill -CONT "${stopped[@]}"
        [ ${#seg[@]} -eq 4 ] || { cat "$d.log"; fail "a. found the window mapped in ${#seg[@]} of 4 ranks"; }
        for r in 0 1 2 3; do
            echo "rank $r: node ${seg[$r]% *}, window ${seg[$r]#* }, message segments of ${vader[$r]:-no host}"
        done
        [ "${seg[0]% *}" = 1 ] && [ "${seg[1]% *}" = 1 ] && [ "${seg[2]% *}" = 2 ] &&
            [ "${seg[3]% *}" = 2 ] || fail "a. ranks 0,1 should run on node 1 and 2,3 on node 2"
        [ "${seg[0]#* }" = "${seg[1]#* }" ] || fail "a. ranks 0 and 1 (node 1) map different windows"
        [ "${seg[2]#* }" = "${seg[3]#* }" ] || fail "a. ranks 2 and 3 (node 2) map different windows"
        [ "${seg[0]#* }" != "${seg[2]#* }" ] || fail "a. the two nodes share one window"
        # With vader: shared-memory messages between the ranks of a node, never across
        # nodes. Without: none at all, every message goes over TCP.
        if [ $btl = tcp,self,vader ]; then
            [ "${vader[0]}" = "${hosts[0]} " ] && [ "${vader[1]}" = "${hosts[0]} " ] &&
                [ "${vader[2]}" = "${hosts[1]} " ] && [ "${vader[3]}" = "${hosts[1]} " ] ||
                fail "a. each rank should map the shared-memory segments of its own node only"
        else
            [ -z "${vader[0]}${vader[1]}${vader[2]}${vader[3]}" ] ||
                fail "a. btl tcp,self: a rank maps shared-memory message segments"
        fi
    }
    wait $pid || { cat "$d.log"; fail "a. 2x2 with btl $btl"; }
    note "btl $btl: $((SECONDS - t0)) s"
    grep -q '^mlp .*: 4 ranks on 2 nodes, 1 thread per rank (OMP_NUM_THREADS), 2 CPUs per node, ISA ' "$d.log" ||
        { head -n 3 "$d.log"; fail "a. btl $btl: the banner should say 4 ranks on 2 nodes"; }
    if grep -q '^warning: \(threads\|CPUs\|the ranks run\)' "$d.log"; then
        fail "a. btl $btl: a warning about differing ranks, but all are alike"
    fi
    [ "$(hashes "$d/metrics.csv")" = "$(hashes "$T/ref/metrics.csv")" ] ||
        fail "a. btl $btl: param_hash rows differ from 1 rank's"
    results "$d.log" | cmp -s - "$T/ref.lines" ||
        { results "$d.log" | diff - "$T/ref.lines"; fail "a. btl $btl: printed lines differ"; }
    [ "$(model_sha "$d/latest.h5")" = "$ref_sha" ] || fail "a. btl $btl: weights differ from 1 rank's"
    if [ -r /proc/self/smaps_rollup ]; then
        grep -Eq '^memory: .* node total \(PSS\) [0-9]+\.[0-9] MiB over 2 ranks \(the largest of 2 nodes\)$' "$d.log" ||
            { grep '^memory' "$d.log"; fail "a. btl $btl: the memory line should give the largest of 2 nodes"; }
    fi
done
note "a. ok: $(hashes "$T/ref/metrics.csv" | tail -n 1) on 1 rank and on 2 x 2"
# Nodes of different sizes (3 ranks: 2 on node 1, 1 on node 2) sum the gradient with one
# MPI_Allreduce instead of through the nodes' shared memory: the same weights.
d=$T/uneven
nodes_np -np 3 "$MLP" "$cfg" "${sets[@]}" --set checkpoint.dir="$d" \
    --set log.metrics="$d/metrics.csv" > "$d.log" 2>&1 || { cat "$d.log"; fail "a. 3 ranks on 2 nodes"; }
grep -q '^mlp .*: 3 ranks on 2 nodes' "$d.log" && grep -q 'summed with MPI_Allreduce)' "$d.log" ||
    { head -n 8 "$d.log"; fail "a. 3 ranks on 2 nodes: the banner should say so, and MPI_Allreduce"; }
grep -q "summed through the node's shared memory, where the parameters are too" "$T/tcp,self.log" ||
    fail "a. 2 x 2: the banner should say that the gradient is summed through shared memory"
[ "$(model_sha "$d/latest.h5")" = "$ref_sha" ] || fail "a. 3 ranks on 2 nodes: weights differ from 1 rank's"
note "a. ok: 3 ranks on 2 nodes (2 + 1) sum with MPI_Allreduce, the same weights"

# --- b. the second node reads other data --------------------------------------------------
note "b. the second node's test images differ in one byte"
cp "$ROOT/data/mnist/t10k-images-idx3-ubyte" "$T/other-images"
printf '\x01' | dd of="$T/other-images" bs=1 seek=5000 conv=notrunc 2>/dev/null
rc=0 cfg=$(small_config b)
timeout 60 "$NODES_MPIRUN" --bind-to none "${pass[@]}" -np 2 "$MLP" "$cfg" : \
    -np 2 "${pass[@]}" "$MLP" "$cfg" --set data.test_images="$T/other-images" \
    > "$T/b.log" 2> "$T/b.err" || rc=$?
grep mlp "$T/b.err" || true
[ $rc -eq 1 ] || fail "b. exit status $rc, expected 1 (124: a hang)"
grep -q "^mlp: \[rank 2\] error: $T/other-images, .*content differs from rank 0's" "$T/b.err" ||
    fail "b. no checksum error from rank 2 (node 2)"
[ "$(grep -c 'error' "$T/b.err")" -eq 1 ] || fail "b. expected one error line"
if grep -q '^epoch ' "$T/b.log"; then fail "b. a rank trained"; fi

# --- c. SIGKILL of a rank on node 2, then resume on 1 node ----------------------------------
# 30 epochs over TCP only (0.2-0.5 s each here): seconds to kill after the first, also
# on a machine many times faster.
note "c. SIGKILL of rank 3 (node 2) after the first epoch's checkpoint"
long=(--set train.epochs=30 --set data.train_limit=4000 --set model.hidden=24 --set train.chunk=5
      --set checkpoint.every=1 --set checkpoint.resume=auto)
cfg_r=$(small_config cref)
run_np 1 "$cfg_r" "${long[@]}" > "$T/cref.log" 2>&1 || { cat "$T/cref.log"; fail "c. 1 rank, 30 epochs"; }
cfg_c=$(small_config kill)
nodes_np -np 4 --mca btl tcp,self "$MLP" "$cfg_c" "${long[@]}" > "$T/c.log" 2>&1 &
pid=$!
victim=
for _ in $(seq 1200); do
    victim=$(ranks "$T/kill/" | awk '$2 == 3 && $3 == 2 { print $1 }')
    [ -n "$victim" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.05
done
[ -n "$victim" ] || { cat "$T/c.log"; ranks "$T/kill/"; fail "c. rank 3 not found on node 2"; }
csv=$T/kill/metrics.csv
for _ in $(seq 6000); do
    [ -s "$csv" ] && [ "$(wc -l < "$csv")" -ge 2 ] && [ -e "$T/kill/ckpt/latest.h5" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.01
done
[ -e "$T/kill/ckpt/latest.h5" ] || { cat "$T/c.log"; fail "c. no checkpoint after epoch 1"; }
t0=$SECONDS rc=0
kill -KILL "$victim" || fail "c. rank 3 had ended before the SIGKILL"
echo "killed rank 3 (pid $victim) after epoch $(tail -n 1 "$csv" | cut -d, -f1)"
timeout 60 tail --pid=$pid -f /dev/null || true
wait $pid || rc=$?
took=$((SECONDS - t0))
tail -n 5 "$T/c.log"
[ $rc -ne 0 ] || fail "c. exit status 0 after a rank was killed"
[ $took -le 15 ] || fail "c. the job took $took s to end after the SIGKILL"
[ -z "$(ranks "$T/kill/")" ] || fail "c. ranks still running: $(ranks "$T/kill/")"
done_epochs=$(($(wc -l < "$csv") - 1))
[ $done_epochs -lt 30 ] || fail "c. the run had finished before the SIGKILL"
"$MLP" inspect "$T/kill/ckpt/latest.h5" > "$T/c.inspect" || fail "c. latest.h5 does not load"
note "c. the job ended $took s after the SIGKILL, $done_epochs epochs done; resuming on 1 node"
run_np 1 "$cfg_c" "${long[@]}" > "$T/c2.log" 2>&1 || { cat "$T/c2.log"; fail "c. resume on 1 node"; }
grep '^resuming from ' "$T/c2.log" || fail "c. the run on 1 node did not resume"
[ "$(model_sha "$T/kill/ckpt/latest.h5")" = "$(model_sha "$T/cref/ckpt/latest.h5")" ] ||
    fail "c. resumed weights differ from the uninterrupted run's"
[ "$(hashes "$csv")" = "$(hashes "$T/cref/metrics.csv")" ] ||
    fail "c. the param_hash rows differ from the uninterrupted run's: $(hashes "$csv" | tr '\n' ' ')"
note "c. ok: resumed on 1 node, $(hashes "$csv" | tail -n 1) as uninterrupted"

# --- d. the banner sees every rank ---------------------------------------------------------
note "d. ranks that differ: threads, CPUs per node, binary"
one=(--set train.epochs=1 --set data.train_limit=200 --set model.hidden=16)
# OMP_NUM_THREADS=2 here but not passed on (no -x): node 2's ranks choose their own.
OMP_NUM_THREADS=2 "$NODES_MPIRUN" --bind-to none -x OMP_WAIT_POLICY -x ASAN_OPTIONS -np 4 \
    "$MLP" "$(small_config d1)" "${one[@]}" > "$T/d1.log" 2>&1 ||
    { cat "$T/d1.log"; fail "d. OMP_NUM_THREADS on node 1 only"; }
head -n 2 "$T/d1.log"
grep -q '^mlp .*: 4 ranks on 2 nodes, 1-2 threads per rank (OMP_NUM_THREADS on 2 of 4 ranks), 2 CPUs per node' "$T/d1.log" ||
    fail "d. the banner should give 1-2 threads, OMP_NUM_THREADS on 2 of 4 ranks"
grep -q '^warning: threads per rank differ between ranks (1-2)' "$T/d1.log" || fail "d. no thread warning"
# Node 2's ranks on one CPU, and a copy of the binary with one byte more (it still runs).
cp "$MLP" "$T/mlp-other"
printf '\0' >> "$T/mlp-other"
cfg=$(small_config d2)
"$NODES_MPIRUN" --bind-to none "${pass[@]}" -np 2 "$MLP" "$cfg" "${one[@]}" : \
    -np 2 "${pass[@]}" taskset -c 0 "$T/mlp-other" "$cfg" "${one[@]}" > "$T/d2.log" 2>&1 || { cat "$T/d2.log"; fail "d. another binary"; }
head -n 4 "$T/d2.log"
grep -q '^mlp .*: 4 ranks on 2 nodes, 1 thread per rank (OMP_NUM_THREADS), 1-2 CPUs per node' "$T/d2.log" ||
    fail "d. the banner should give 1-2 CPUs per node"
grep -q '^warning: CPUs per node differ between nodes (1-2)' "$T/d2.log" || fail "d. no CPU warning"
grep -q '^warning: the ranks run different binaries (ISA .*so the bits may differ' "$T/d2.log" ||
    fail "d. no warning about different binaries"
grep -q '^warning: oversubscribed: 2 ranks with 2 threads in all on a node with 1 CPUs' "$T/d2.log" ||
    fail "d. the oversubscription warning should give node 2's figures"
# Another ISA: the portable build (ARCH=x86-64), as tests/integration/generic-build.sh
# makes it (up to date then: a binary of other sources could not even start with this one).
generic=$ROOT/build/x86-64/mlp
if [ "$(uname -m)" = x86_64 ] && [[ $(ldd "$MLP") != *libasan* ]] &&
   env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$ROOT" ARCH=x86-64 build/x86-64/mlp \
       > "$T/make.log" 2>&1; then
    cfg=$(small_config d3)
    "$NODES_MPIRUN" --bind-to none "${pass[@]}" -np 2 "$MLP" "$cfg" "${one[@]}" : \
        -np 2 "${pass[@]}" "$generic" "$cfg" "${one[@]}" > "$T/d3.log" 2>&1 || { cat "$T/d3.log"; fail "d. another ISA"; }
    head -n 1 "$T/d3.log"
    grep -q '^mlp .*, ISA x86-64[^;]*; x86-64$' "$T/d3.log" || fail "d. the banner should list both ISAs"
    grep -q '^warning: the ranks run different binaries (ISA x86-64.*; x86-64)' "$T/d3.log" ||
        fail "d. no warning about different ISAs"
else
    echo "SKIP the other ISA: not x86-64, or an AddressSanitizer build, or make ARCH=x86-64 failed"
fi
note "all multi-node tests passed in $((SECONDS - start)) s"
