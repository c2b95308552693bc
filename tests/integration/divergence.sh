# A learning rate that blows up stops training with a message naming the epoch and step,
# exit status 1, and no checkpoint of the broken weights. Both reduction modes.
source "$(dirname "$0")/../lib.sh"
cfg=$(small_config div)
for mode in exact fast; do
    rc=0
    timeout 120 "$ROOT/scripts/mpirun-local" -np 2 "$MLP" "$cfg" --set train.lr=1e6 \
        --set train.reduce=$mode --set checkpoint.dir=$T/div/ckpt-$mode > "$T/out" 2> "$T/err" || rc=$?
    cat "$T/err"
    [ $rc -eq 1 ] || fail "$mode: exit status $rc, expected 1"
    grep -qE '^mlp: \[rank 0\] error: training diverged at epoch 1 step [0-9]+' "$T/err" ||
        fail "$mode: no divergence message"
    [ ! -e "$T/div/ckpt-$mode/latest.h5" ] || fail "$mode: a checkpoint was written"
done
# A good checkpoint exists; resuming from it with a learning rate that blows up stops with
# the error and leaves the checkpoint (and latest.h5) exactly as they were.
"$ROOT/scripts/mpirun-local" -np 2 "$MLP" "$cfg" --set train.epochs=1 --set checkpoint.dir=$T/good \
    --set log.metrics=$T/good/m.csv > "$T/out" 2>&1 || { cat "$T/out"; fail "good run"; }
before=$(model_sha "$T/good/latest.h5")
rc=0
"$ROOT/scripts/mpirun-local" -np 2 "$MLP" "$cfg" --set train.epochs=3 --set train.lr=1e6 \
    --set checkpoint.resume=auto --set checkpoint.dir=$T/good --set log.metrics=$T/good/m.csv \
    > "$T/out" 2> "$T/err" || rc=$?
cat "$T/err"
[ $rc -eq 1 ] || fail "resumed divergence: exit status $rc"
grep -q 'training diverged at epoch 2 step' "$T/err" || fail "resumed divergence: message"
[ "$(model_sha "$T/good/latest.h5")" = "$before" ] || fail "the good checkpoint changed"
[ "$(ls "$T/good" | grep -c '^epoch-')" -eq 1 ] || fail "a checkpoint file was added"
