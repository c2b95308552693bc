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
