# The job scripts in jobs/ on a real single-node SLURM cluster (tests/slurm/cluster.sh,
# brought up here and torn down on exit, even on failure):
#   a. jobs/mnist.sbatch with srun --mpi=pmix (2x1) and with mpirun (2x2) -> COMPLETED, the
#      final line, latest.h5 in runs/slurm-JOBID, the same weights for both shapes;
#      a broken config -> FAILED with the trainer's one-line error.
#   b. pre-emption: jobs/preemptible.sbatch gets SIGUSR1 after its first epoch, checkpoints,
#      requeues itself, resumes and completes with Restarts=1 and every epoch's param_hash
#      equal to an uninterrupted run's.
#   c. jobs/scaling.sbatch writes its table for a 2x2 sweep.
# Run alone: bash tests/integration/slurm.sh   (45-75 s here; installs munge and slurm
# from Debian if missing).
source "$(dirname "$0")/../lib.sh"
CLUSTER=$ROOT/tests/slurm/cluster.sh
export MLP_SLURM_STATE=$T/cluster.state   # a private cluster, even beside another one

on_exit() {
    local rc=$?
    if [ $rc -ne 0 ] && [ -n "${SLURM_CONF:-}" ]; then
        local f
        for f in "$T"/out-*; do
            [ -e "$f" ] && { echo "== $f (last 40 lines)"; tail -n 40 "$f"; }
        done
        squeue 2>/dev/null || true
        for f in "${SLURM_CONF%/etc/slurm.conf}"/log/slurm*.log; do
            [ -e "$f" ] && { echo "== $f (last 20 lines)"; tail -n 20 "$f"; }
        done
    fi
    bash "$CLUSTER" down || true
    rm -rf "$T"
    exit $rc
}
trap on_exit EXIT

start=$SECONDS
env_line=$(bash "$CLUSTER" up) || fail "cluster up failed"
eval "$env_line"
[ -n "${SLURM_CONF:-}" ] || fail "cluster up gave no SLURM_CONF"
note "cluster up in $((SECONDS - start)) s"
if [ "$(id -u)" -eq 0 ]; then   # mpirun refuses root otherwise; sbatch passes these on
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export MLP MLP_RUNS=$T/runs
unset MLP_LAUNCHER MLP_CONFIG MLP_RUN_DIR MLP_MPIRUN_ARGS
[ -x "$MLP" ] || fail "no trainer at $MLP"

# --- helpers: job ids restart at 1 with every cluster, so every output goes into $T -----
submit() { local id; id=$(sbatch --parsable -o "$T/out-%j" "$@") || fail "sbatch $*"; echo "${id%%;*}"; }
field() { scontrol -o show job "$1" | awk -v k=" $2=" '{ i = index($0, k); if (i && !done) { v = substr($0, i + length(k)); sub(/ .*/, "", v); print v; done = 1 } }'; }
# Poll every 0.5 s (never sbatch --wait) until the job ends; prints its final state.
wait_job() {   # job [timeout seconds]
    local job=$1 deadline=$((SECONDS + ${2:-120})) state
    while :; do
        state=$(field "$job" JobState)
        case $state in
            COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED)
                echo "$state"; return 0 ;;
        esac
        [ $SECONDS -lt $deadline ] || { scontrol show job "$job" >&2; fail "job $job still $state after ${2:-120} s"; }
        sleep 0.5
    done
}
last_hash() { tail -n 1 "$1" | cut -d, -f7; }
# h = 512 as in part b, whose size is chosen from the speed job $a measures.
small=(--set train.epochs=2 --set data.train_limit=3000 --set model.hidden=512)

# --- a. mnist.sbatch (srun and mpirun) and a broken config -----------------------------
note "a. jobs/mnist.sbatch: srun 2x1, mpirun 2x2, and a broken config"
t0=$SECONDS
a=$(submit -n 2 -c 1 jobs/mnist.sbatch "${small[@]}")
wait_job "$a" > /dev/null   # alone, so that its samples/s calibrates part b
m=$(MLP_LAUNCHER=mpirun submit -n 2 -c 2 jobs/mnist.sbatch configs/mnist.ini "${small[@]}")
bad=$(submit -n 2 -c 1 jobs/mnist.sbatch --set train.lr=abc)
for j in $a $m; do
    st=$(wait_job "$j")
    [ "$st" = COMPLETED ] || fail "job $j ended $st, expected COMPLETED"
    [ "$(field "$j" ExitCode)" = 0:0 ] || fail "job $j: ExitCode $(field "$j" ExitCode)"
    grep -q '^done: test accuracy 0\.[0-9]* ' "$T/out-$j" || fail "job $j: no 'done: test accuracy' line"
    [ -e "$MLP_RUNS/slurm-$j/latest.h5" ] || fail "job $j: no $MLP_RUNS/slurm-$j/latest.h5"
    [ "$(wc -l < "$MLP_RUNS/slurm-$j/metrics.csv")" -eq 3 ] || fail "job $j: metrics.csv should have 2 rows"
done
grep -q 'via srun' "$T/out-$a" || fail "job $a did not launch with srun"
grep -q "^slurm: job $a, nodes localhost, restart count 0$" "$T/out-$a" ||
    fail "job $a: the banner lacks SLURM's job id, node list and restart count"
grep -q 'via mpirun' "$T/out-$m" || fail "job $m did not launch with mpirun"
grep -q '^mlp .*2 ranks on 1 node, 2 threads per rank' "$T/out-$m" || fail "job $m: not 2 ranks x 2 threads"
[ "$(last_hash "$MLP_RUNS/slurm-$a/metrics.csv")" = "$(last_hash "$MLP_RUNS/slurm-$m/metrics.csv")" ] ||
    fail "2x1 (srun) and 2x2 (mpirun) jobs ended with different weights"
st=$(wait_job "$bad")
[ "$st" = FAILED ] || fail "broken-config job $bad ended $st, expected FAILED"
[ "$(field "$bad" ExitCode)" = 1:0 ] || fail "job $bad: ExitCode $(field "$bad" ExitCode), expected 1:0"
grep -q "^mlp: \[rank 0\] error: --set train.lr=abc: .*not a number" "$T/out-$bad" ||
    fail "job $bad: no 'mlp: [rank 0] error:' line"
[ ! -e "$MLP_RUNS/slurm-$bad/latest.h5" ] || fail "the failed job wrote a checkpoint"
note "a. ok in $((SECONDS - t0)) s"

# --- b. pre-emption: USR1 to the batch shell, checkpoint, requeue, resume ----------------
# A run long enough to interrupt after its first epoch, yet short on any build (SAN=1 is
# ~10 times slower): 8 epochs of as many samples as job $a (same h and shape) trains in
# 1.5 s. An epoch of many samples runs up to half as fast as job $a's 3000, so 8 epochs
# take 12-25 s (timings here vary with load); a reference under 5 s is redone, sized
# from its own time.
epochs=8
sps=$(tail -n 1 "$MLP_RUNS/slurm-$a/metrics.csv" | cut -d, -f6)
limit=$(awk -v s="$sps" 'BEGIN { n = int(s * 1.5); print (n < 2000 ? 2000 : n > 60000 ? 60000 : n) }')
for attempt in 1 2; do
    long=(--set "train.epochs=$epochs" --set "data.train_limit=$limit" --set model.hidden=512)
    note "b. reference run ($sps samples/s in job $a): jobs/mnist.sbatch ${long[*]}"
    t0=$SECONDS
    ref=$(submit -n 2 -c 1 jobs/mnist.sbatch "${long[@]}")
    st=$(wait_job "$ref" 240)
    took=$((SECONDS - t0))
    [ "$st" = COMPLETED ] || fail "reference job $ref ended $st"
    note "reference took $took s"
    [ $took -ge 5 ] && break   # 8 epochs: the signal after epoch 1 has >= 4 s to land
    if [ $attempt -eq 2 ] || [ "$limit" -ge 60000 ]; then
        fail "the reference run took only $took s: too short to interrupt"
    fi
    limit=$((limit * 16 / (took > 0 ? took : 1)))   # aim at 16 s this time
    limit=$((limit > 60000 ? 60000 : limit))
done
refcsv=$MLP_RUNS/slurm-$ref/metrics.csv

note "b. jobs/preemptible.sbatch, SIGUSR1 after epoch 1"
t0=$SECONDS
p=$(submit -n 2 -c 1 jobs/preemptible.sbatch "${long[@]}")
csv=$MLP_RUNS/slurm-$p/metrics.csv
deadline=$((SECONDS + 120))
until [ -s "$csv" ] && [ "$(wc -l < "$csv")" -ge 2 ]; do
    case $(field "$p" JobState) in PENDING|RUNNING|CONFIGURING) ;; *) fail "job $p ended before its first epoch" ;; esac
    [ $SECONDS -lt $deadline ] || fail "job $p: no epoch in $csv after 120 s"
    sleep 0.5
done
scancel --signal=USR1 --batch "$p" || fail "scancel --signal=USR1 --batch $p"
note "signalled job $p at $((SECONDS - t0)) s, after epoch $(tail -n 1 "$csv" | cut -d, -f1)"
# The job requeues itself, then waits cred_expire + 1 s (Reason=BeginTime) before it may
# start again. Start it at once instead, but only when its first run has left the node
# and a second has passed: a job credential issued in the same second as the old one's
# revocation is itself revoked, and slurmctld then fails the job ("Killing non-startable
# batch JobId=N: Job credential revoked").
deadline=$((SECONDS + 120))
while :; do
    st=$(field "$p" JobState) restarts=$(field "$p" Restarts)
    case $st in
        COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL) break ;;
        PENDING)
            if [ "$restarts" = 1 ] && [ "$(field "$p" Reason)" = BeginTime ] &&
               [ "$(sinfo -h -n localhost -o %T)" = idle ]; then
                sleep 1.2
                scontrol update jobid="$p" StartTime=now 2>/dev/null && note "requeued; started it now"
            fi ;;
    esac
    [ $SECONDS -lt $deadline ] || { scontrol show job "$p"; fail "job $p still $st (Restarts=$restarts)"; }
    sleep 0.5
done
note "b. preempted job $p ended $st with Restarts=$restarts in $((SECONDS - t0)) s"
out=$T/out-$p
[ "$st" = COMPLETED ] || fail "preempted job $p ended $st, expected COMPLETED"
[ "$restarts" = 1 ] || fail "job $p: Restarts=$restarts, expected 1"
[ "$(grep -c '^mlp: stopped by signal' "$out")" -eq 1 ] || fail "job $p: expected one 'mlp: stopped by signal' line"
grep -q '^preemptible.sbatch: requeueing job' "$out" || fail "job $p did not requeue itself"
grep -q "^slurm: job $p, nodes localhost, restart count 1$" "$out" ||
    fail "job $p: the resumed run's banner lacks restart count 1"
grep -q '^preemptible.sbatch: job .* (restart 1)' "$out" || fail "job $p: no second run in the output"
[ "$(grep -c '^done: test accuracy' "$out")" -eq 1 ] || fail "job $p: expected one 'done:' line"
stop_line=$(grep -n '^mlp: stopped by signal' "$out" | cut -d: -f1)
done_line=$(grep -n '^done: test accuracy' "$out" | cut -d: -f1)
[ "$stop_line" -lt "$done_line" ] || fail "job $p: 'done' comes before the stop"
[ "$(cut -d, -f1 "$csv" | tr '\n' ' ')" = "epoch $(seq -s ' ' "$epochs") " ] ||
    fail "job $p: metrics epochs $(cut -d, -f1 "$csv" | tr '\n' ' '), expected 1..$epochs once each"
[ "$(hashes "$csv")" = "$(hashes "$refcsv")" ] ||
    fail "resumed run's param_hash differs from the uninterrupted run's: $(last_hash "$csv") vs $(last_hash "$refcsv")"
note "b. ok: last param_hash $(last_hash "$csv") in both runs"

# --- c. the scaling sweep -----------------------------------------------------------------
note "c. jobs/scaling.sbatch, ranks {1,2} x threads {1,2}"
t0=$SECONDS
s=$(MLP_RANKS="1 2" MLP_THREADS="1 2" submit -n 2 -c 2 jobs/scaling.sbatch \
    --set data.train_limit=4000 --set model.hidden=32)
st=$(wait_job "$s")
[ "$st" = COMPLETED ] || fail "scaling job $s ended $st"
table=$MLP_RUNS/slurm-$s/scaling.txt
[ -s "$table" ] || fail "job $s: no $table"
cat "$table"
[ "$(grep -cE '^ *[12] +[12] +[0-9]+ +[0-9.]+ +[0-9]+ +[0-9.]+ +[0-9.]+ *$' "$table")" -eq 4 ] ||
    fail "job $s: the table should have 4 rows of numbers"
grep -qE '^ *1 +1 .* 1\.00 +1\.00 *$' "$table" || fail "job $s: the 1x1 row should have speedup and efficiency 1.00"
note "c. ok in $((SECONDS - t0)) s"
note "all SLURM tests passed in $((SECONDS - start)) s"
