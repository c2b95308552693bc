# Resume: a run stopped after epoch k, or mid-epoch by a signal, and resumed — with another
# rank and thread count — ends with /model byte-identical to an uninterrupted run, and the
# metrics CSV continues without duplicate rows. Pre-emption: SIGUSR1 to mpirun (forwarded)
# or SIGTERM to one rank stops every rank at one step boundary, checkpoints, exits 0; a
# second signal ends the run at once. Mismatched shapes are a clear error.
source "$(dirname "$0")/../lib.sh"
cfg=$(small_config res)
# Data columns of the metrics rows without the timing ones (seconds, samples/s).
rows() { cut -d, -f1-4,7 "$1"; }

note "reference: 4 epochs uninterrupted at -np 2"
run_np 2 "$cfg" --set train.epochs=4 --set checkpoint.dir=$T/ref \
    --set log.metrics=$T/ref/m.csv > $T/ref.log 2>&1 || { cat $T/ref.log; fail "reference run"; }
ref=$(model_sha $T/ref/latest.h5)

note "stop after epoch 2, resume at -np 3 with 2 threads"
run_np 2 "$cfg" --set train.epochs=2 --set checkpoint.dir=$T/a --set log.metrics=$T/a/m.csv \
    > $T/a1.log 2>&1 || { cat $T/a1.log; fail "first half"; }
echo "5,bogus,row,from,a,run,that,crashed" >> $T/a/m.csv   # a row past the checkpoint
OMP_NUM_THREADS=2 run_np 3 "$cfg" --set train.epochs=4 --set checkpoint.dir=$T/a \
    --set log.metrics=$T/a/m.csv --set checkpoint.resume=auto > $T/a2.log 2>&1 ||
    { cat $T/a2.log; fail "resumed half"; }
grep -q "^resuming from $T/a/latest.h5: after epoch 2 (global step " $T/a2.log || fail "no resume line"
[ "$(model_sha $T/a/latest.h5)" = "$ref" ] || fail "resumed /model differs from uninterrupted"
diff <(rows $T/ref/m.csv) <(rows $T/a/m.csv) || fail "metrics rows differ or repeat after resume"

note "mid-epoch checkpoints every 7 steps; resume from one by path at -np 4"
run_np 1 "$cfg" --set train.epochs=2 --set checkpoint.every_steps=7 --set checkpoint.keep=2 \
    --set checkpoint.dir=$T/b --set log.metrics=$T/b/m.csv > $T/b1.log 2>&1 || { cat $T/b1.log; fail "every_steps run"; }
ls $T/b
[ -e $T/b/epoch-0001-000059.h5 ] || fail "expected epoch-0001-000059.h5 (global step 119 = 7 x 17 is step 59 of epoch 2)"
[ "$(ls $T/b | grep -c '^epoch-')" -eq 2 ] || fail "keep=2 not applied to mid-epoch files"
run_np 4 "$cfg" --set train.epochs=4 --set checkpoint.dir=$T/b2 --set log.metrics=$T/b2/m.csv \
    --set checkpoint.resume=$T/b/epoch-0001-000059.h5 > $T/b2.log 2>&1 || { cat $T/b2.log; fail "resume by path"; }
grep -q "at epoch 2 step 59/" $T/b2.log || fail "mid-epoch position not resumed"
[ "$(model_sha $T/b2/latest.h5)" = "$ref" ] || fail "resume from mid-epoch differs"
[ "$(tail -n +2 $T/b2/m.csv | cut -d, -f1 | tr '\n' ' ')" = "2 3 4 " ] || fail "rows after mid-epoch resume"
[ "$(rows $T/b2/m.csv | tail -3)" = "$(rows $T/ref/m.csv | tail -3)" ] || fail "resumed epoch 2 row differs"

# A longer run to interrupt: all 60000 samples, 3 epochs.
long=(--set data.train_limit=0 --set train.epochs=3 --set model.hidden=64)
run_np 2 "$cfg" "${long[@]}" --set checkpoint.dir=$T/lref --set log.metrics=$T/lref/m.csv \
    > $T/lref.log 2>&1 || { cat $T/lref.log; fail "long reference"; }
lref=$(model_sha $T/lref/latest.h5)

signal_run() {   # name how: start -np 4, signal once training is under way, resume at -np 2
    local name=$1 how=$2 rc=0
    # mpirun itself in the background (mpirun-local execs it), so that $! is mpirun's PID
    "$ROOT/scripts/mpirun-local" -np 4 "$MLP" "$cfg" "${long[@]}" --set checkpoint.dir=$T/$name \
        --set log.metrics=$T/$name/m.csv > $T/$name.log 2>&1 &
    local pid=$!
    # signal as soon as epoch 1 is recorded: the stop falls inside epoch 2
    for _ in $(seq 600); do [ "$(cat $T/$name/m.csv 2>/dev/null | wc -l)" = 2 ] && break; sleep 0.05; done
    case $how in
        usr1-mpirun) kill -USR1 $pid ;;
        term-one-rank) kill -TERM "$(pgrep -P $pid | head -1)" ;;
    esac
    wait $pid || rc=$?
    cat $T/$name.log | grep -v '^[a-z_]* = \|^\[\|^;\|^$'
    [ $rc -eq 0 ] || fail "$name: exit status $rc after the signal, expected 0"
    grep -Eq '^mlp: stopped by signal (after|at) epoch' $T/$name.log || fail "$name: no stop line"
    run_np 2 "$cfg" "${long[@]}" --set checkpoint.dir=$T/$name --set log.metrics=$T/$name/m.csv \
        --set checkpoint.resume=auto > $T/$name-2.log 2>&1 || { cat $T/$name-2.log; fail "$name: resume"; }
    grep '^resuming' $T/$name-2.log
    grep -q '^resuming.*: at epoch 2 step [1-9][0-9]*/' $T/$name-2.log || fail "$name: did not stop mid-epoch 2"
    [ "$(model_sha $T/$name/latest.h5)" = "$lref" ] || fail "$name: resumed run differs from uninterrupted"
    diff <(rows $T/lref/m.csv) <(rows $T/$name/m.csv) || fail "$name: metrics rows differ"
}
note "SIGUSR1 to mpirun (forwarded to every rank)"
signal_run usr1 usr1-mpirun
note "SIGTERM to one rank only"
signal_run term term-one-rank

note "a second signal ends the run at once"
"$ROOT/scripts/mpirun-local" -np 2 "$MLP" "$cfg" "${long[@]}" --set checkpoint.dir=$T/twice \
    --set log.metrics=$T/twice/m.csv > $T/twice.log 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q '^model:' $T/twice.log 2>/dev/null && break; sleep 0.05; done
rank=$(pgrep -P $pid | head -1)
start=$SECONDS rc=0
# Two DIFFERENT signals: a second pending USR1 would merge with the first (standard
# signals do not queue), TERM after USR1 is always a second delivery.
kill -USR1 $rank; kill -TERM $rank
wait $pid || rc=$?
[ $rc -ne 0 ] || fail "two signals: exit status 0"
[ $((SECONDS - start)) -le 10 ] || fail "two signals: took $((SECONDS - start)) s"

note "resuming with another hidden size is an error"
rc=0
run_np 2 "$cfg" --set model.hidden=16 --set checkpoint.dir=$T/a --set log.metrics=$T/x.csv \
    --set checkpoint.resume=auto > $T/bad.log 2>&1 || rc=$?
cat $T/bad.log | grep error
[ $rc -eq 1 ] || fail "shape mismatch: exit status $rc"
grep -q "^mlp: \[rank 0\] error: $T/a/latest.h5: checkpoint model is 784-32-10 but this run's is 784-16-10" $T/bad.log ||
    fail "shape mismatch message"
[ "$(model_sha $T/a/latest.h5)" = "$ref" ] || fail "a failed resume touched the checkpoint"

note "ranks that see different checkpoints (a node-local checkpoint.dir) refuse to start"
over=()
[ "$(id -u)" -eq 0 ] && over+=(--allow-run-as-root)
rc=0
timeout 60 mpirun "${over[@]}" -np 1 "$MLP" "$cfg" --set checkpoint.resume=auto --set checkpoint.dir=$T/a \
    --set log.metrics=$T/y.csv : -np 1 "$MLP" "$cfg" --set checkpoint.resume=auto \
    --set checkpoint.dir=$T/empty --set log.metrics=$T/y.csv > $T/split.log 2> $T/split.err || rc=$?
grep error $T/split.err
[ $rc -eq 1 ] || fail "split view: exit status $rc, expected 1"
grep -q "^mlp: \[rank 1\] error: resume: this rank starts from scratch (epoch 0, step 0) but rank 0 from another state" $T/split.err ||
    fail "split view: message"
[ "$(model_sha $T/a/latest.h5)" = "$ref" ] || fail "split view: the checkpoint changed"
