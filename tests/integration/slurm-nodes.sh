# The job scripts on a two-node SLURM cluster: tests/slurm/cluster.sh up 2 (two simulated
# nodes of tests/cluster/cluster.sh, one slurmd each with its own NodeName and address,
# slurmctld on node 1), brought up here and torn down on exit, even on failure:
#   a. jobs/mnist.sbatch --nodes=2 --ntasks-per-node=2, with srun --mpi=pmix and with
#      mpirun -> COMPLETED, 4 ranks on 2 nodes, the same weights and param_hash rows as
#      1 rank on 1 node.
#   b. jobs/preemptible.sbatch --nodes=2, srun and mpirun: SIGUSR1 after the first epoch, checkpoint,
#      requeue, resume on both nodes -> COMPLETED with Restarts=1 and every epoch's
#      param_hash equal to an uninterrupted run's.
# Run alone: bash tests/integration/slurm-nodes.sh   (needs root; 40-70 s here)
source "$(dirname "$0")/../lib.sh"
CLUSTER=$ROOT/tests/slurm/cluster.sh
NODES_SH=$ROOT/tests/cluster/cluster.sh
export MLP_SLURM_STATE=$T/cluster.state   # a private cluster, even beside another one
if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: simulated nodes need root (network and UTS namespaces)"
    exit 0
fi
on_exit() {
    local rc=$?
    if [ $rc -ne 0 ] && [ -n "${SLURM_CONF:-}" ]; then
        local f
        for f in "$T"/out-*; do
            [ -e "$f" ] && { echo "== $f (last 40 lines)"; tail -n 40 "$f"; }
        done
        on1 squeue 2>/dev/null || true
        for f in "${SLURM_CONF%/etc/slurm.conf}"/log/slurm*.log; do
            [ -e "$f" ] && { echo "== $f (last 20 lines)"; tail -n 20 "$f"; }
        done
    fi
    bash "$CLUSTER" down || true
    rm -rf "$T"
    exit $rc
}
trap on_exit EXIT
# The controller listens on the nodes' bridge only: clients run on node 1.
on1() { "$NODES_SH" exec 1 "$@"; }

start=$SECONDS
env_lines=$(bash "$CLUSTER" up 2) || fail "cluster up failed"
eval "$env_lines"
[ -n "${SLURM_CONF:-}" ] && [ -n "${MLP_CLUSTER:-}" ] || fail "cluster up gave no SLURM_CONF or MLP_CLUSTER"
nodelist=$(on1 sinfo -h -o %N)
note "cluster up in $((SECONDS - start)) s: nodes $nodelist"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Both simulated nodes share this machine's 2 cores: waiting ranks and threads must yield.
export OMPI_MCA_mpi_yield_when_idle=1 OMP_WAIT_POLICY=passive
export MLP MLP_RUNS=$T/runs
unset MLP_LAUNCHER MLP_CONFIG MLP_RUN_DIR MLP_MPIRUN_ARGS
[ -x "$MLP" ] || fail "no trainer at $MLP"

submit() { local id; id=$(on1 sbatch --parsable -o "$T/out-%j" "$@") || fail "sbatch $*"; echo "${id%%;*}"; }
field() { on1 scontrol -o show job "$1" | awk -v k=" $2=" '{ i = index($0, k); if (i && !done) { v = substr($0, i + length(k)); sub(/ .*/, "", v); print v; done = 1 } }'; }
wait_job() {   # job [timeout seconds]: prints the final state
    local job=$1 deadline=$((SECONDS + ${2:-120})) state
    while :; do
        state=$(field "$job" JobState)
        case $state in
            COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED)
                echo "$state"; return 0 ;;
        esac
        [ $SECONDS -lt $deadline ] || { on1 scontrol show job "$job" >&2; fail "job $job still $state after ${2:-120} s"; }
        sleep 0.5
    done
}
shape=(--nodes=2 --ntasks=4 --ntasks-per-node=2 --cpus-per-task=1)
small=(--set train.epochs=2 --set data.train_limit=2000 --set model.hidden=24 --set train.chunk=5)

# --- a. mnist.sbatch on 2 nodes, srun and mpirun -----------------------------------------
note "a. 1 rank on 1 node (no SLURM), then jobs/mnist.sbatch on 2 nodes x 2 ranks: srun, mpirun"
# The jobs' own config (configs/mnist.ini, relative data paths: the submit directory).
one_rank() {   # dir, --set...: configs/mnist.ini on 1 rank, no SLURM, into dir
    local dir=$1
    shift
    run_np 1 configs/mnist.ini "$@" --set checkpoint.dir="$dir" --set log.metrics="$dir/metrics.csv" \
        --set log.progress=off > "$dir.log" 2>&1 || { cat "$dir.log"; fail "1 rank into $dir"; }
}
one_rank "$T/ref" "${small[@]}"
: > "$T/ref.log" 2>&1 || { cat "$T/ref.log"; fail "1 rank"; }
t0=$SECONDS
# The two jobs run at once on the same nodes, whose /tmp is this machine's: each gets its own
# TMPDIR (as a cluster's per-job TMPDIR would), so that the two Open MPI jobs do not share
# a session directory under /tmp/ompi.HOST.UID that one can remove while the other is
# still setting up its shared memory in it (seen once: open(2) ENOENT in Open MPI's
# shared-memory initialisation, then a crash of the srun job; the mpirun job ran on).
mkdir -p "$T/tmp-srun" "$T/tmp-mpirun"
s=$(TMPDIR=$T/tmp-srun submit "${shape[@]}" jobs/mnist.sbatch "${small[@]}")
m=$(TMPDIR=$T/tmp-mpirun MLP_LAUNCHER=mpirun submit "${shape[@]}" jobs/mnist.sbatch "${small[@]}")
for j in $s $m; do
    st=$(wait_job "$j")
    [ "$st" = COMPLETED ] || fail "job $j ended $st, expected COMPLETED"
    out=$T/out-$j run=$MLP_RUNS/slurm-$j
    grep -q '^mlp .*: 4 ranks on 2 nodes, 1 thread per rank (OMP_NUM_THREADS), ' "$out" ||
        fail "job $j: the banner should say 4 ranks on 2 nodes, 1 thread each"
    grep -qxF "slurm: job $j, nodes $nodelist, restart count 0" "$out" ||
        fail "job $j: the banner lacks the job id and both nodes ($nodelist)"
    grep -q '^done: test accuracy' "$out" || fail "job $j: no 'done:' line"
    [ "$(hashes "$run/metrics.csv")" = "$(hashes "$T/ref/metrics.csv")" ] ||
        fail "job $j: param_hash rows differ from 1 rank's"
    [ "$(model_sha "$run/latest.h5")" = "$(model_sha "$T/ref/latest.h5")" ] ||
        fail "job $j: weights differ from 1 rank's"
done
grep -q 'via srun' "$T/out-$s" || fail "job $s did not launch with srun"
grep -q 'via mpirun' "$T/out-$m" || fail "job $m did not launch with mpirun"
note "a. ok in $((SECONDS - t0)) s: $(hashes "$T/ref/metrics.csv" | tail -n 1) on 1 rank and in both jobs"

# --- b. pre-emption on 2 nodes ---------------------------------------------------------------
# 10 epochs of 6000 samples over TCP (0.3-1 s each here): time to signal after the first.
long=(--set train.epochs=10 --set data.train_limit=6000 --set model.hidden=24 --set train.chunk=5)
note "b. jobs/preemptible.sbatch on 2 nodes, srun and mpirun, SIGUSR1 after epoch 1"
one_rank "$T/lref" "${long[@]}"
for launcher in srun mpirun; do
    t0=$SECONDS
    p=$(MLP_LAUNCHER=$launcher submit "${shape[@]}" jobs/preemptible.sbatch "${long[@]}")
    csv=$MLP_RUNS/slurm-$p/metrics.csv
    deadline=$((SECONDS + 120))
    until [ -s "$csv" ] && [ "$(wc -l < "$csv")" -ge 2 ]; do
        case $(field "$p" JobState) in PENDING|RUNNING|CONFIGURING) ;; *) fail "job $p ended before its first epoch" ;; esac
        [ $SECONDS -lt $deadline ] || fail "job $p: no epoch in $csv after 120 s"
        sleep 0.1
    done
    on1 scancel --signal=USR1 --batch "$p" || fail "scancel --signal=USR1 --batch $p"
    note "signalled job $p at $((SECONDS - t0)) s, after epoch $(tail -n 1 "$csv" | cut -d, -f1)"
    # As in slurm.sh: start the requeued job at once, once both nodes are idle and a second
    # has passed (a credential issued in the second of the old one's revocation is revoked).
    deadline=$((SECONDS + 120))
    while :; do
        st=$(field "$p" JobState) restarts=$(field "$p" Restarts)
        case $st in
            COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL) break ;;
            PENDING)
                if [ "$restarts" = 1 ] && [ "$(field "$p" Reason)" = BeginTime ] &&
                   [ "$(on1 sinfo -h -o %T | sort -u)" = idle ]; then
                    sleep 1.2
                    on1 scontrol update jobid="$p" StartTime=now 2>/dev/null && note "requeued; started it now"
                fi ;;
        esac
        [ $SECONDS -lt $deadline ] || { on1 scontrol show job "$p"; fail "job $p still $st (Restarts=$restarts)"; }
        sleep 0.5
    done
    note "b. $launcher: job $p ended $st with Restarts=$restarts in $((SECONDS - t0)) s"
    out=$T/out-$p
    [ "$st" = COMPLETED ] || fail "preempted job $p ended $st, expected COMPLETED"
    [ "$restarts" = 1 ] || fail "job $p: Restarts=$restarts, expected 1"
    [ "$(grep -c '^mlp: stopped by signal' "$out")" -eq 1 ] || fail "job $p: expected one 'mlp: stopped by signal' line"
    grep -q '^preemptible.sbatch: requeueing job' "$out" || fail "job $p did not requeue itself"
    grep -qxF "slurm: job $p, nodes $nodelist, restart count 1" "$out" ||
        fail "job $p: the resumed run's banner lacks restart count 1 on both nodes"
    [ "$(grep -c '^mlp .*: 4 ranks on 2 nodes' "$out")" -eq 2 ] || fail "job $p: both runs should have 4 ranks on 2 nodes"
    [ "$(cut -d, -f1 "$csv" | tr '\n' ' ')" = "epoch $(seq -s ' ' 10) " ] ||
        fail "job $p: metrics epochs $(cut -d, -f1 "$csv" | tr '\n' ' '), expected 1..10 once each"
    [ "$(hashes "$csv")" = "$(hashes "$T/lref/metrics.csv")" ] ||
        fail "job $p: param_hash rows differ from the uninterrupted 1-rank run's"
    [ "$(model_sha "$MLP_RUNS/slurm-$p/latest.h5")" = "$(model_sha "$T/lref/latest.h5")" ] ||
        fail "job $p: final weights differ from the uninterrupted 1-rank run's"
    grep -q "via $launcher" "$out" || fail "job $p did not launch with $launcher"
    note "b. ok ($launcher): $(hashes "$csv" | tail -n 1) after a requeue on 2 nodes, as on 1 rank"
done
note "all two-node SLURM tests passed in $((SECONDS - start)) s"
