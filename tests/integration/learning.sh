# Learning beyond the seed (issue 14): momentum, weight decay, schedules, the validation
# split, elastic and affine distortions. Bitwise equality over -np 1, 2, 3 x 1, 2 threads
# with every option on; resume with momentum mid-epoch at another -np byte-identical (the
# weights and the velocity); the metrics' val_loss, val_acc, test_loss columns; best.h5 and
# early stopping; a version 1 checkpoint still loads; bad values rejected naming the key.
source "$(dirname "$0")/../lib.sh"
cfg=$(small_config learn)
rows() { cut -d, -f1-4,7-10 "$1"; }   # all but the timing columns
# sha256 of the velocity datasets (/optimizer/*) of a checkpoint
velocity_sha() {
    $PY - "$1" <<'PY'
import hashlib, sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    h = hashlib.sha256()
    for name in ("W1", "b1", "W2", "b2"):
        h.update(f["optimizer"][name][()].tobytes())
    print(h.hexdigest())
PY
}
opts=(--set data.validation=500 --set data.augment=elastic --set train.optimizer=momentum
      --set train.momentum=0.9 --set train.weight_decay=0.0005 --set train.lr=0.05
      --set train.schedule=cosine --set train.warmup_epochs=0.5 --set train.epochs=3)

note "momentum + weight decay + cosine + warm-up + elastic + validation: -np 1, 2, 3 x 1, 2 threads"
ref="" refv=""
for np in 1 2 3; do
    for th in 1 2; do
        d=$T/eq-$np-$th
        OMP_NUM_THREADS=$th run_np $np "$cfg" "${opts[@]}" --set checkpoint.dir=$d \
            --set log.metrics=$d/m.csv > $d.log 2>&1 || { cat $d.log; fail "np=$np th=$th"; }
        got=$(rows $d/m.csv)
        if [ -z "$ref" ]; then ref=$got; refv=$(velocity_sha $d/latest.h5); continue; fi
        [ "$got" = "$ref" ] || { diff <(echo "$ref") <(echo "$got"); fail "np=$np th=$th: metrics (param_hash, val, test) differ from -np 1"; }
        [ "$(velocity_sha $d/latest.h5)" = "$refv" ] || fail "np=$np th=$th: velocity differs"
    done
done
note "$(echo "$ref" | tail -1)"
grep -q "^learning: momentum (momentum 0.9), weight decay 0.0005 (coupled L2, W only), schedule cosine (warm-up 0.5 epochs), augment elastic" $T/eq-1-1.log || fail "no learning line"
grep -q "^data: 2500 training samples (train_limit) (+ 500 held out for validation)" $T/eq-1-1.log || fail "no validation in the data line"

note "nesterov + step schedule + affine + decayed biases: -np 1 = -np 3 x 2 threads"
o2=(--set data.validation=300 --set data.augment=affine --set train.optimizer=nesterov
    --set train.lr=0.05 --set train.schedule=step --set train.step_epochs=1
    --set train.step_gamma=0.5 --set train.weight_decay=0.001 --set train.decay_biases=true)
run_np 1 "$cfg" "${o2[@]}" --set checkpoint.dir=$T/n1 --set log.metrics=$T/n1/m.csv > $T/n1.log 2>&1 || { cat $T/n1.log; fail "nesterov np 1"; }
OMP_NUM_THREADS=2 run_np 3 "$cfg" "${o2[@]}" --set checkpoint.dir=$T/n3 --set log.metrics=$T/n3/m.csv > $T/n3.log 2>&1 || { cat $T/n3.log; fail "nesterov np 3"; }
[ "$(rows $T/n1/m.csv)" = "$(rows $T/n3/m.csv)" ] || fail "nesterov/affine: -np 3 differs from -np 1"
[ "$(model_sha $T/n1/latest.h5)" = "$(model_sha $T/n3/latest.h5)" ] || fail "nesterov/affine: /model differs"

note "every option changes the weights (the options are really applied)"
declare -A seen
seen[$(hashes $T/eq-1-1/m.csv | tail -1)]=all
for o in "data.augment=none" "train.weight_decay=0" "train.optimizer=sgd" "train.schedule=constant" "train.warmup_epochs=0"; do
    d=$T/off-${o//[.=]/-}
    run_np 1 "$cfg" "${opts[@]}" --set "$o" --set checkpoint.dir=$d --set log.metrics=$d/m.csv > $d.log 2>&1 || { cat $d.log; fail "$o"; }
    h=$(hashes $d/m.csv | tail -1)
    [ -z "${seen[$h]:-}" ] || fail "$o: same weights as ${seen[$h]}: the option has no effect"
    seen[$h]=$o
done

note "metrics columns: val_loss, val_acc, test_loss at the end; empty where not evaluated"
[ "$(head -1 $T/eq-1-1/m.csv)" = "epoch,train_loss,train_acc,test_acc,seconds,samples_per_s,param_hash,val_loss,val_acc,test_loss" ] || fail "metrics header"
tail -n +2 $T/eq-1-1/m.csv | awk -F, 'NF != 10 || $8 == "" || $9 == "" || $10 == "" || $9 < 0.5 || $9 > 1 { bad = 1 } END { exit bad }' || fail "val columns missing or out of range"
run_np 1 "$cfg" --set train.eval_every=2 --set checkpoint.dir=$T/ev --set log.metrics=$T/ev/m.csv --set train.epochs=3 > $T/ev.log 2>&1 || { cat $T/ev.log; fail "eval_every run"; }
[ "$(sed -n 2p $T/ev/m.csv | cut -d, -f4,8-10)" = "nan,,," ] || fail "epoch 1 without evaluation: $(sed -n 2p $T/ev/m.csv)"
[ -n "$(sed -n 3p $T/ev/m.csv | cut -d, -f10)" ] || fail "epoch 2's test_loss missing"

note "resume with momentum mid-epoch at another -np: byte-identical weights and velocity"
run_np 1 "$cfg" "${opts[@]}" --set checkpoint.every_steps=7 --set checkpoint.keep=0 \
    --set checkpoint.dir=$T/mid --set log.metrics=$T/mid/m.csv > $T/mid.log 2>&1 || { cat $T/mid.log; fail "mid run"; }
[ -e $T/mid/epoch-0000-000035.h5 ] || { ls $T/mid; fail "no mid-epoch checkpoint at step 35"; }
OMP_NUM_THREADS=2 run_np 3 "$cfg" "${opts[@]}" --set checkpoint.resume=$T/mid/epoch-0000-000035.h5 \
    --set checkpoint.dir=$T/mid3 --set log.metrics=$T/mid3/m.csv > $T/mid3.log 2>&1 || { cat $T/mid3.log; fail "resumed run"; }
grep -q "at epoch 1 step 35/" $T/mid3.log || fail "mid-epoch position not resumed"
[ "$(model_sha $T/mid3/latest.h5)" = "$(model_sha $T/eq-1-1/latest.h5)" ] || fail "resumed /model differs from uninterrupted"
[ "$(velocity_sha $T/mid3/latest.h5)" = "$refv" ] || fail "resumed velocity differs from uninterrupted"
[ "$(rows $T/mid3/m.csv)" = "$ref" ] || fail "resumed metrics rows differ"

note "checkpoint.best: best.h5 = the epoch of the best val_acc, loads, survives pruning"
run_np 2 "$cfg" "${opts[@]}" --set checkpoint.best=true --set checkpoint.keep=1 \
    --set checkpoint.every=1 --set checkpoint.dir=$T/best --set log.metrics=$T/best/m.csv > $T/best.log 2>&1 || { cat $T/best.log; fail "best run"; }
[ -e $T/best/best.h5 ] || fail "no best.h5"
want=$(tail -n +2 $T/best/m.csv | sort -t, -k9,9gr -k1,1n | head -1 | cut -d, -f1,7)
got=$($PY - $T/best/best.h5 <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    print(f"{f.attrs['epoch']},{int(f.attrs['best_epoch'])},{int(f.attrs['format_version'])}")
PY
)
[ "${got%%,*}" = "${want%%,*}" ] || fail "best.h5 is epoch ${got%%,*}, best val_acc is epoch ${want%%,*}"
[ "${got#*,}" = "${want%%,*},2" ] || fail "best.h5 attributes: $got"
"$MLP" inspect $T/best/best.h5 > $T/best-inspect.log 2>&1 || { cat $T/best-inspect.log; fail "inspect best.h5"; }
grep -q "^best: val_acc .* after epoch ${want%%,*}; checkpoint $T/best/best.h5" $T/best.log || fail "no best line"

note "train.patience: a run that cannot improve stops after P epochs, and stays stopped"
run_np 2 "$cfg" --set data.validation=400 --set train.lr=1e-30 --set train.patience=2 \
    --set train.epochs=10 --set checkpoint.dir=$T/pat --set log.metrics=$T/pat/m.csv > $T/pat.log 2>&1 || { cat $T/pat.log; fail "patience run"; }
grep -q "^early stop: no better val_acc for 2 epochs (train.patience); the best, .*, was after epoch 1" $T/pat.log || { cat $T/pat.log; fail "no early stop line"; }
[ "$(tail -n +2 $T/pat/m.csv | wc -l)" = 3 ] || fail "patience 2 should stop after epoch 3"
[ -e $T/pat/epoch-0003.h5 ] || fail "no checkpoint at the early stop"
run_np 1 "$cfg" --set data.validation=400 --set train.lr=1e-30 --set train.patience=2 \
    --set train.epochs=10 --set checkpoint.dir=$T/pat --set log.metrics=$T/pat/m.csv \
    --set checkpoint.resume=auto > $T/pat2.log 2>&1 || { cat $T/pat2.log; fail "patience resume"; }
grep -q "^done: nothing to train: .* stopped early at epoch 3" $T/pat2.log || { cat $T/pat2.log; fail "resumed early-stopped run trained on"; }

note "a format_version 1 checkpoint (no /optimizer, no best_epoch) still loads and resumes"
cp $T/eq-1-1/latest.h5 $T/v1.h5
$PY - $T/v1.h5 <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    del f["optimizer"]
    for a in ("best_val_acc", "best_epoch"):
        del f.attrs[a]
    f.attrs.modify("format_version", 1)
PY
"$MLP" reseal $T/v1.h5 > /dev/null || fail "reseal of the version 1 file"
"$MLP" inspect $T/v1.h5 > $T/v1.log 2>&1 || { cat $T/v1.log; fail "a version 1 file does not load"; }
grep -q "^  format_version   = 1$" $T/v1.log || { cat $T/v1.log; fail "inspect: not the file's format_version"; }
run_np 1 "$cfg" "${opts[@]}" --set train.epochs=4 --set checkpoint.resume=$T/v1.h5 \
    --set checkpoint.dir=$T/v1r --set log.metrics=$T/v1r/m.csv > $T/v1r.log 2>&1 || { cat $T/v1r.log; fail "resume from version 1"; }
grep -q "holds no optimizer velocity" $T/v1r.log || fail "no warning about the missing velocity"

note "bad values are config errors naming the key"
bad() {   # expected message, then --set arguments
    local want=$1 rc=0; shift
    "$MLP" "$cfg" "$@" > $T/bad.log 2>&1 || rc=$?
    [ $rc -eq 1 ] || { cat $T/bad.log; fail "$*: exit status $rc, expected 1"; }
    grep -qF -- "$want" $T/bad.log || { cat $T/bad.log; fail "$*: message lacks '$want'"; }
}
bad "[train] momentum = '1': out of range (0 <= value < 1)" --set train.momentum=1
bad "[train] momentum = '1.5': out of range" --set train.momentum=1.5
bad "[train] weight_decay = '-0.0001': out of range (0 <= value <= 1)" --set train.weight_decay=-0.0001
bad "[train] schedule = 'linear': must be constant, step or cosine" --set train.schedule=linear
bad "[train] optimizer = 'adam': must be sgd, momentum or nesterov" --set train.optimizer=adam
bad "[data] augment = 'mixup': must be none, elastic or affine" --set data.augment=mixup
bad "[train] warmup_epochs = 'nan': out of range" --set train.warmup_epochs=nan
bad "[train] step_epochs = '0'" --set train.step_epochs=0
bad "[data] elastic_sigma = '0': out of range" --set data.elastic_sigma=0
bad "[data] validation = 3000: must be less than the 3000 training samples (after data.train_limit)" --set data.validation=3000
bad "[checkpoint] best = true needs a validation split: set [data] validation = N" --set checkpoint.best=true
bad "[train] patience > 0 needs a validation split" --set train.patience=3
printf '[train]\nmomentum = 1\n' > $T/bad.ini
rc=0; "$MLP" $T/bad.ini > $T/bad.log 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -qF "$T/bad.ini:2: [train] momentum = '1': out of range" $T/bad.log || { cat $T/bad.log; fail "momentum = 1 in a file"; }
note "ok"
