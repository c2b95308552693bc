# HDF5 input end to end (files made with h5py here): every feature type; d = 1, 5, 300 and
# K = 2, 3, 37; chunked + gzip read as contiguous (same bits); one file with groups and two
# files (same bits); a separable problem trained to 100%; bitwise-equal weights for -np 1,
# 2, 3 x 1, 2 threads on float64 inputs, standardised; standardisation against numpy (the
# validation split left out of its statistics);
# predict against eval (classes, accuracy, confusion) and against a numpy forward pass;
# predict on IDX; scripts/to-h5; every bad input a one-line error naming file, dataset and
# index (a dataset partly unwritten without fill values, values in an external file, a
# float type not IEEE's included; a 12-bit uint16 and an all-written dataset without fill
# values, gzip and edge chunks, accepted).
source "$(dirname "$0")/../lib.sh"
cd "$T"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# make.py NAME N D K DTYPE [options]: a separable problem (class centres far apart, small
# noise), written as NAME-train.h5 / NAME-test.h5 (/X, /y), or with --one NAME.h5 holding
# /train/{X,y} and /test/{X,y}; --gzip: chunked + gzip.
cat > make.py <<'PY'
import sys, numpy as np, h5py
name, n, d, k, dtype = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
opts = sys.argv[6:]
rng = np.random.default_rng(n * 1000 + d * 10 + k)
centres = rng.uniform(-1, 1, (k, d)) * 4
def draw(m):
    y = np.arange(m) % k
    rng.shuffle(y)
    x = centres[y] + rng.normal(0, 0.2, (m, d))
    if np.dtype(dtype).kind in "iu":
        lo = 0 if np.dtype(dtype).kind == "u" else -100
        x = np.clip(np.round(x * 20 + 120), lo, 250)
    return x.astype(dtype), y.astype(np.int64)
kw = dict(chunks=(7, min(d, 3)), compression="gzip", compression_opts=6) if "--gzip" in opts else {}
sets = {"train": draw(n), "test": draw(max(n // 3, k))}
if "--one" in opts:
    with h5py.File(name + ".h5", "w") as f:
        for s, (x, y) in sets.items():
            f.create_dataset(s + "/X", data=x, **kw)
            f.create_dataset(s + "/y", data=y.astype(np.int32))
else:
    for s, (x, y) in sets.items():
        with h5py.File(f"{name}-{s}.h5", "w") as f:
            f.create_dataset("X", data=x, **kw)
            f.create_dataset("y", data=y)
PY

# config NAME [extra ini lines...]: a run on NAME-train.h5 / NAME-test.h5 into run-NAME
config() {
    local name=$1; shift
    cat > "$name.ini" <<INI
[data]
train_images = $T/$name-train.h5
train_labels = $T/$name-train.h5
test_images = $T/$name-test.h5
test_labels = $T/$name-test.h5
$(printf '%s\n' "$@")
[model]
hidden = 16
seed = 3
[train]
epochs = 8
batch = 16
lr = 0.2
chunk = 4
[checkpoint]
dir = $T/run-$name
[log]
progress = off
INI
}
last_acc() { tail -n 1 "$1" | cut -d, -f3,4; }   # train_acc,test_acc of the last epoch

note "every feature type, d = 1, 5, 300, K = 2, 3, 37"
for spec in "f32 120 1 2 float32 0.2" "f64 150 5 3 float64 0.2" "u8 150 300 37 uint8 0.5" \
            "u16 90 5 3 uint16 0.5" "i32 90 5 2 int32 0.5" "i64 111 300 37 int64 0.5"; do
    set -- $spec
    $PY make.py "$1" "$2" "$3" "$4" "$5"
    norm=none
    case $5 in uint16|int32|int64) norm=standardize ;; esac
    config "$1" "normalize = $norm"
    $MLP "$1.ini" --set train.epochs=40 --set model.hidden=32 --set train.lr="$6" > "$1.log" 2>&1 ||
        { cat "$1.log"; fail "$5 run"; }
    grep -q "^data: .* d = $3 ($5 as " "$1.log" || { cat "$1.log"; fail "$5: banner"; }
    grep -q "K = $4 classes" "$1.log" || fail "$5: K"
    acc=$(last_acc "$T/run-$1/metrics.csv")
    note "$5 d=$3 K=$4 normalize=$norm: train_acc,test_acc = $acc"
    [ "$acc" = "1,1" ] || fail "$5: the separable problem is not learnt to 100% ($acc)"
    [ "$($PY -c "import h5py; print(h5py.File('$T/run-$1/latest.h5')['/'].attrs['input_type'])")" = \
      "$([ "$5/$norm" = uint8/none ] && echo uint8 || echo float32)" ] || fail "$5: input_type"
done

note "chunked + gzip reads as contiguous; one file with groups as two files"
$PY make.py gz 100 5 3 float64 --gzip
$PY make.py one 100 5 3 float64 --one
$PY make.py plain 100 5 3 float64   # the same draw as gz and one (same seed and shapes)
config plain
config gz
config one
sed -i "s|$T/one-train.h5|$T/one.h5|; s|$T/one-test.h5|$T/one.h5|" one.ini
for n in plain gz; do $MLP "$n.ini" > "$n.log" 2>&1 || { cat "$n.log"; fail "$n run"; }; done
$MLP one.ini --set data.train_group=/train --set data.test_group=test > one.log 2>&1 ||
    { cat one.log; fail "one-file run"; }
[ "$(hashes run-plain/metrics.csv)" = "$(hashes run-gz/metrics.csv)" ] ||
    fail "chunked + gzip gave other weights than contiguous"
$PY - <<'PY' || fail "gz and one-file data differ from plain"
import h5py, numpy as np
for s in ("train", "test"):
    a = h5py.File(f"plain-{s}.h5")
    b = h5py.File(f"gz-{s}.h5")
    assert b["X"].chunks and b["X"].compression == "gzip"
    assert np.array_equal(a["X"][()], b["X"][()])
PY
[ "$(hashes run-plain/metrics.csv)" = "$(hashes run-one/metrics.csv)" ] ||
    fail "one file with groups gave other weights than two files"

note "bitwise-equal weights for -np 1, 2, 3 x threads 1, 2 (float64, standardised)"
$PY make.py eq 203 7 3 float64
config eq "normalize = standardize"
ref= refsha=
for np in 1 2 3; do
    for th in 1 2; do
        d=run-eq-$np-$th
        OMP_NUM_THREADS=$th run_np "$np" eq.ini --set checkpoint.dir="$T/$d" --set train.epochs=3 \
            > "$d.log" 2>&1 || { cat "$d.log"; fail "np=$np threads=$th"; }
        h=$(hashes "$d/metrics.csv" | tr '\n' ' ')
        sha=$(model_sha "$d/latest.h5")
        note "np=$np threads=$th: param_hash $h sha ${sha:0:16}"
        [ -n "$ref" ] || ref=$h refsha=$sha
        [ "$h" = "$ref" ] || fail "np=$np threads=$th: param_hash $h != $ref"
        [ "$sha" = "$refsha" ] || fail "np=$np threads=$th: /model bytes differ"
    done
done
# exact resume: 2 epochs, then on to 3 from the checkpoint, on another rank count
run_np 2 eq.ini --set checkpoint.dir="$T/run-eq-resume" --set train.epochs=2 > eq-r1.log 2>&1 ||
    { cat eq-r1.log; fail "resume: first part"; }
run_np 3 eq.ini --set checkpoint.dir="$T/run-eq-resume" --set train.epochs=3 \
    --set checkpoint.resume=auto > eq-r2.log 2>&1 || { cat eq-r2.log; fail "resume: second part"; }
[ "$(hashes run-eq-resume/metrics.csv | tr '\n' ' ')" = "$ref" ] || fail "resumed run differs"
[ "$(model_sha run-eq-resume/latest.h5)" = "$refsha" ] || fail "resumed /model bytes differ"
# a checkpoint whose statistics differ from this run's (another file, an older mlp): warned
cp -r run-eq-resume run-eq-stats
$PY - run-eq-stats/latest.h5 <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    f["model/x_mean"][0] += 1.0
PY
"$MLP" reseal run-eq-stats/latest.h5 > /dev/null || fail "reseal"
run_np 1 eq.ini --set checkpoint.dir="$T/run-eq-stats" --set train.epochs=4 \
    --set checkpoint.resume=auto > eq-stats.log 2>&1 || { cat eq-stats.log; fail "resume (statistics)"; }
grep -q "^warning: the standardisation statistics of this run's training samples differ from those in $T/run-eq-stats/latest.h5" \
    eq-stats.log || { cat eq-stats.log; fail "no warning for other statistics"; }
! grep -q "standardisation statistics" eq-r2.log || fail "a statistics warning on an exact resume"
# resuming with another normalisation is refused (the weights would not apply)
if run_np 1 eq.ini --set checkpoint.dir="$T/run-eq-resume" --set train.epochs=4 \
    --set checkpoint.resume=auto --set data.normalize=none > eq-r3.log 2>&1; then
    fail "resume with data.normalize changed was accepted"
fi
grep -q "trained on float32 inputs with data.normalize = standardize but this run's are float32 with none" \
    eq-r3.log || { cat eq-r3.log; fail "resume normalize message"; }
# and the comparison can fail: another seed gives other bits
run_np 2 eq.ini --set checkpoint.dir="$T/run-eq-seed" --set train.epochs=3 --set model.seed=4 \
    > eq-seed.log 2>&1 || fail "seed run"
[ "$(hashes run-eq-seed/metrics.csv | tr '\n' ' ')" != "$ref" ] || fail "seed 4 gave seed 3's bits"

note "standardisation leaves the validation split out of its statistics"
run_np 1 eq.ini --set checkpoint.dir="$T/run-eq-val" --set train.epochs=1 \
    --set data.validation=50 > eq-val.log 2>&1 || { cat eq-val.log; fail "validation run"; }
$PY - <<'PY' || fail "statistics with a validation split"
import h5py, numpy as np
m = h5py.File("run-eq-val/latest.h5")["model"]
X = h5py.File("eq-train.h5")["X"][()].astype(np.float32).astype(np.float64)
mean = m["x_mean"][()]
# not the mean of all 203 samples, but that of 153 of them: the other 50 average to what
# the total leaves, a mean of real rows (inside the features' range)
assert not np.allclose(mean, X.mean(axis=0), rtol=1e-9, atol=0), "validation rows counted"
held = (X.sum(axis=0) - 153 * mean) / 50
assert np.all(held >= X.min(axis=0) - 1e-9) and np.all(held <= X.max(axis=0) + 1e-9)
PY

note "standardisation against numpy; predict against eval and a numpy forward pass"
ck=run-eq-1-1/latest.h5
$MLP eval "$ck" > eval.out 2>&1 || { cat eval.out; fail "eval"; }
$MLP predict "$ck" eq-test.h5 > pred.csv 2> pred.err || { cat pred.err; fail "predict"; }
$MLP predict "$ck" eq-test.h5 --out pred.h5 > pred-h5.out || fail "predict --out"
[ "$(wc -l < pred.err)" -eq 1 ] && grep -q '^accuracy: ' pred.err || fail "predict: accuracy line"
$PY - "$ck" <<'PY' || fail "predict/eval/numpy disagree"
import sys, re, h5py, numpy as np
ck = h5py.File(sys.argv[1])
m = ck["model"]
Xtr = h5py.File("eq-train.h5")["X"][()].astype(np.float32).astype(np.float64)
mean, std = Xtr.mean(axis=0), Xtr.std(axis=0)
assert np.allclose(m["x_mean"][()], mean, rtol=1e-12, atol=1e-12), "mean"
assert np.allclose(m["x_std"][()], std, rtol=1e-12, atol=0), "std"
assert ck.attrs["normalize"] == "standardize" and ck.attrs["train_samples"] == 203
f = h5py.File("eq-test.h5")
X = f["X"][()].astype(np.float32).astype(np.float64)
y = f["y"][()]
Xs = ((X - m["x_mean"][()]) / m["x_std"][()]).astype(np.float32).astype(np.float64)
A = 1 / (1 + np.exp(-(Xs @ m["W1"][()].astype(np.float64) + m["b1"][()])))
Z = A @ m["W2"][()].astype(np.float64) + m["b2"][()]
P = np.exp(Z - Z.max(axis=1, keepdims=True)); P /= P.sum(axis=1, keepdims=True)
rows = [l.split(",") for l in open("pred.csv").read().split("\n")[1:] if l]
assert len(rows) == len(y), (len(rows), len(y))
idx = np.array([int(r[0]) for r in rows]); pred = np.array([int(r[1]) for r in rows])
prob = np.array([[float(v) for v in r[2:]] for r in rows])
assert np.array_equal(idx, np.arange(len(y)))
err = np.abs(prob - P).max()
print(f"predict vs numpy: max |p - p_numpy| = {err:.2e}")
assert err < 1e-6, err
assert np.array_equal(pred, P.argmax(axis=1))
h = h5py.File("pred.h5")
assert np.array_equal(h["predicted"][()], pred) and np.array_equal(h["probabilities"][()], prob.astype(np.float32))
# eval's confusion matrix and accuracy from predict's classes
k = P.shape[1]
conf = np.zeros((k, k), int)
np.add.at(conf, (y, pred), 1)
out = open("eval.out").read()
acc = re.search(r"accuracy: +([0-9.]+) \((\d+) / (\d+)\)", out)
assert int(acc.group(2)) == (pred == y).sum() and int(acc.group(3)) == len(y)
lines = out.split("confusion matrix")[1].split("\n")[2:2 + k]
got = np.array([[int(v) for v in l.split()[1:1 + k]] for l in lines])
assert np.array_equal(got, conf), (got, conf)
assert abs(h.attrs["accuracy"] - (pred == y).mean()) < 1e-15
PY
grep -q "^accuracy: " pred-h5.out || fail "predict --out: accuracy on stdout"
# an HDF5 file without /y: no accuracy, the same probabilities
$PY -c "import h5py; h5py.File('nolab.h5', 'w')['X'] = h5py.File('eq-test.h5')['X'][()]"
$MLP predict "$ck" nolab.h5 > nolab.csv 2> nolab.err || { cat nolab.err; fail "predict without /y"; }
[ ! -s nolab.err ] || fail "predict without labels printed: $(cat nolab.err)"
cmp -s <(cut -d, -f3- pred.csv) <(cut -d, -f3- nolab.csv) || fail "probabilities depend on labels"

note "predict on IDX (MNIST subset) agrees with eval"
cfg=$(small_config idx)
$MLP "$cfg" --set train.epochs=1 > idx.log 2>&1 || { cat idx.log; fail "MNIST run"; }
$MLP eval "$T/idx/ckpt/latest.h5" > idx-eval.out || fail "MNIST eval"
$MLP predict "$T/idx/ckpt/latest.h5" "$ROOT/data/mnist/t10k-images-idx3-ubyte" \
    --labels "$ROOT/data/mnist/t10k-labels-idx1-ubyte" > idx-pred.csv 2> idx-pred.err ||
    { cat idx-pred.err; fail "predict IDX"; }
a=$(grep -o '([0-9]* / 10000)' idx-eval.out) b=$(grep -o '([0-9]* / 10000)' idx-pred.err)
note "eval $a, predict $b"
[ -n "$a" ] && [ "$a" = "$b" ] || fail "predict IDX accuracy $b != eval $a"
[ "$(wc -l < idx-pred.csv)" -eq 10001 ] || fail "predict IDX: rows"
$MLP predict "$T/idx/ckpt/latest.h5" "$ROOT/data/mnist/t10k-images-idx3-ubyte" > idx-nolab.csv \
    2> idx-nolab.err || fail "predict IDX without labels"
[ ! -s idx-nolab.err ] || fail "predict without labels printed: $(cat idx-nolab.err)"
cmp -s <(cut -d, -f1,2 idx-pred.csv) <(cut -d, -f1,2 idx-nolab.csv) ||
    note "(classes with and without labels differ only at near ties)"

note "scripts/to-h5: CSV, .npy, .npz, then train and predict"
$PY - <<'PY'
import numpy as np
rng = np.random.default_rng(5)
y = np.arange(60) % 2
x = np.c_[y * 6 + rng.normal(0, .3, 60), rng.normal(0, 1, 60)]
with open("tab.csv", "w") as f:
    f.write("a,b,kind\n")
    for (u, v), c in zip(x, y):
        f.write(f"{u},{v},{'yes' if c else 'no'}\n")
np.save("tx.npy", x); np.save("ty.npy", y)
np.savez("t.npz", X=x.astype(np.float32), y=y)
PY
"$ROOT/scripts/to-h5" tab.csv csv-train.h5 --label kind > to.out || fail "to-h5 csv"
grep -q "no -> 0, yes -> 1" to.out || fail "to-h5: label mapping"
"$ROOT/scripts/to-h5" tx.npy csv-test.h5 --labels ty.npy --compress > /dev/null || fail "to-h5 npy"
"$ROOT/scripts/to-h5" t.npz npz.h5 --group train --dtype float32 > /dev/null || fail "to-h5 npz"
$PY -c "import h5py; f = h5py.File('npz.h5'); assert f['train/X'].dtype == 'float32' and f['train/y'].shape == (60,)" ||
    fail "to-h5 npz layout"
config csv
$MLP csv.ini > csv.log 2>&1 || { cat csv.log; fail "train on to-h5 output"; }
[ "$(last_acc run-csv/metrics.csv)" = "1,1" ] || fail "to-h5 data not learnt"
$MLP predict run-csv/latest.h5 npz.h5 --features /train/X --labels /train/y > /dev/null 2> npz.err ||
    { cat npz.err; fail "predict on npz.h5"; }
grep -q "(60 / 60)" npz.err || fail "predict npz accuracy: $(cat npz.err)"
"$ROOT/scripts/to-h5" tab.csv bad.h5 --dtype uint8 2> to.err && fail "to-h5 accepted a lossy dtype"
[ "$(wc -l < to.err)" -eq 1 ] || fail "to-h5 error is not one line"

note "bad inputs: one line, exit 1, naming file, dataset and index"
# bad.py CASE: writes bad-train.h5 (and a good bad-test.h5)
cat > bad.py <<'PY'
import sys, numpy as np, h5py
case = sys.argv[1]
x = np.ones((6, 3)); y = np.array([0, 1, 2, 0, 1, 2])
kw = {}
if case == "nan": x[4, 1] = np.nan
if case == "inf": x[2, 0] = -np.inf
if case == "big": x[1, 2] = 1e300
if case == "neg": y[3] = -1
if case == "range": y[5] = 7
if case == "k300": y[2] = 300
if case == "mismatch": y = y[:5]
if case == "rank3": x = np.ones((6, 3, 2))
if case == "empty": x = np.ones((0, 3)); y = y[:0]
if case == "flabels": y = y.astype(np.float32)
if case == "string": x = np.array([[b"a"] * 3] * 6)
if case == "rank1": x = np.ones(6)
with h5py.File("bad-train.h5", "w") as f:
    # /X without fill values (fill time 'never'): every chunk must be stored. "unwritten":
    # one chunk of two written; "neverfull": all written, gzip, edge chunks (the stored
    # bytes differ from the data's size either way). An undefined fill value, which h5py
    # cannot declare: fuzz/regressions/h5data/undefined-fill.h5
    if case in ("unwritten", "neverfull"):
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        dcpl.set_chunk((4, 2) if case == "neverfull" else (3, 3))
        if case == "neverfull":
            dcpl.set_deflate(6)
        h5py.h5d.create(f.id, b"X", h5py.h5t.NATIVE_DOUBLE, h5py.h5s.create_simple(x.shape), dcpl=dcpl)
        f["X"][0:(6 if case == "neverfull" else 3)] = x[0:(6 if case == "neverfull" else 3)]
        case = "nox"
    if case == "external":   # /X's values in another file
        f.create_dataset("X", data=x, external=[("bad-x.raw", 0, h5py.h5f.UNLIMITED)])
        case = "nox"
    if case == "u12":   # uint16 with 12 bits of precision: read as HDF5 converts it
        tid = h5py.h5t.STD_U16LE.copy()
        tid.set_precision(12)
        h5py.h5d.create(f.id, b"X", tid, h5py.h5s.create_simple(x.shape)).write(
            h5py.h5s.ALL, h5py.h5s.ALL, x.astype(np.uint16))
        case = "nox"
    if case == "vaxfloat":   # float32 with another exponent bias: not IEEE 754
        tid = h5py.h5t.IEEE_F32LE.copy()
        tid.set_ebias(100)
        h5py.h5d.create(f.id, b"X", tid, h5py.h5s.create_simple(x.shape)).write(
            h5py.h5s.ALL, h5py.h5s.ALL, x.astype(np.float32))
        case = "nox"
    if case == "gzipnan":
        x[5, 2] = np.nan
        kw = dict(chunks=(2, 3), compression="gzip")
    if case != "nox":
        f.create_dataset("X", data=x, **kw)
    if case != "noy":
        f.create_dataset("y", data=y)
with h5py.File("bad-test.h5", "w") as f:
    f["X"] = np.ones((4, 3 if case != "testd" else 4)); f["y"] = np.array([0, 1, 2, 0])
PY
config bad
expect() {   # CASE REGEX [extra mlp args]
    local c=$1 re=$2; shift 2
    $PY bad.py "$c"
    rm -rf run-bad
    if $MLP bad.ini "$@" > bad.out 2> bad.err; then fail "$c: accepted"; fi
    [ "$(wc -l < bad.err)" -eq 1 ] || { cat bad.err; fail "$c: not one line"; }
    grep -Eq "$re" bad.err || fail "$c: message '$(cat bad.err)' does not match '$re'"
    note "$c: $(sed "s|$T/||g" bad.err)"
}
B="$T/bad-train.h5: "
expect nan "^mlp: \[rank 0\] error: ${B}dataset /X: value nan at sample index 4, feature 1 is not finite$"
expect inf "${B}dataset /X: value -inf at sample index 2, feature 0 is not finite"
expect big "${B}dataset /X: value 1e\+300 at sample index 1, feature 2 is beyond float32's range"
expect gzipnan "${B}dataset /X: value nan at sample index 5, feature 2"
expect neg "${B}dataset /y: label -1 at sample index 3 is negative"
expect range "${B}dataset /y: label 7 at sample index 5 is out of range: classes = 3" --set model.classes=3
expect k300 "${B}dataset /y: label 300 at sample index 2 .*at most 256 classes"
expect mismatch "${B}dataset /X holds 6 samples but /y in .*bad-train.h5 holds 5 labels"
expect rank3 "${B}dataset /X has 3 dimensions; the features must have 2"
expect rank1 "${B}dataset /X has 1 dimension; the features must have 2"
expect empty "${B}dataset /X is empty \(shape 0 x 3\)"
expect flabels "${B}dataset /y: the labels must be integers"
expect string "${B}dataset /X: the features must be integers of 1 to 8 bytes or float32/float64"
expect nox "${B}no dataset '/X' for the features"
expect unwritten "${B}dataset /X \(the features\) has no fill values \(fill time 'never'\) and 1 of its 2 chunks stored: values never written are undefined$"
expect external "${B}dataset /X \(the features\) keeps its values in 1 external file: not read by mlp"
expect vaxfloat "${B}dataset /X: the features' float type is not IEEE 754 binary32 or binary64"
for c in neverfull u12; do   # read, and trained on
    $PY bad.py $c
    rm -rf run-bad
    $MLP bad.ini > bad.out 2>&1 || { cat bad.out; fail "$c: refused"; }
done
expect noy "${B}no dataset '/y' for the labels"
expect testd "$T/bad-test.h5: 4 features per sample but .*bad-train.h5 has 3"
expect nan "no dataset '/train/X'" --set data.train_group=/train
printf 'not hdf5' > bad-train.h5
if $MLP bad.ini --set data.format=hdf5 > bad.out 2> bad.err; then fail "format=hdf5 on junk accepted"; fi
grep -q "bad-train.h5: cannot open as HDF5" bad.err || fail "junk as HDF5: $(cat bad.err)"
$PY bad.py good
$MLP bad.ini --set data.format=idx > bad.out 2> bad.err && fail "format=idx on HDF5 accepted"
grep -q "bad magic number" bad.err || fail "HDF5 read as IDX: $(cat bad.err)"
# predict: d mismatch, u8-trained model on float inputs
if $MLP predict run-eq-1-1/latest.h5 bad-test.h5 > /dev/null 2> p.err; then fail "predict d mismatch"; fi
grep -q "^mlp: error: bad-test.h5: 3 features per sample but checkpoint run-eq-1-1/latest.h5 has d = 7$" p.err ||
    fail "predict d: $(cat p.err)"
if $MLP predict run-u8/latest.h5 f64-test.h5 > /dev/null 2> p.err; then fail "predict float on u8 model"; fi
grep -q "holds float64 features but checkpoint .* was trained on uint8" p.err || fail "u8 model: $(cat p.err)"
if $MLP predict run-eq-1-1/latest.h5 eq-test.h5 --labels /nope > /dev/null 2> p.err; then fail "predict missing labels"; fi
grep -q "no dataset '/nope' for the labels" p.err || fail "predict --labels: $(cat p.err)"
echo "PASS h5data"
