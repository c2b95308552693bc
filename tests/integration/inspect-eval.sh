# `mlp inspect` and `mlp eval` on a checkpoint of a short 2-rank run, both as a plain
# process (no mpirun): what they print is checked against the checkpoint (h5py), the
# metrics CSV and the test labels; broken files give one `mlp: error:` line and exit 1.
source "$(dirname "$0")/../lib.sh"
cfg=$(small_config ie)
run_np 2 "$cfg" > "$T/train.txt" 2>&1 || { cat "$T/train.txt"; fail "training failed"; }
ck=$T/ie/ckpt/latest.h5
csv=$T/ie/metrics.csv
[ "$(wc -l < "$csv")" -eq 3 ] || fail "metrics should have 2 rows"
labels=$ROOT/data/mnist/t10k-labels-idx1-ubyte

note "--help"
"$MLP" --help > "$T/help.txt" || fail "--help exit status $?"
grep -q '^ *mlp inspect CHECKPOINT.h5' "$T/help.txt" || fail "--help does not list inspect"
grep -q '^ *mlp eval CHECKPOINT.h5 \[CONFIG.ini\]' "$T/help.txt" || fail "--help does not list eval"

# Runs a subcommand; sets rc, and leaves stdout in $T/out, stderr in $T/err.
sub() {
    rc=0
    "$MLP" "$@" > "$T/out" 2> "$T/err" || rc=$?
}

note "inspect"
sub inspect "$ck"
cat "$T/out" "$T/err"
[ $rc -eq 0 ] || fail "inspect exit status $rc"
[ ! -s "$T/err" ] || fail "inspect wrote to stderr"
grep -qx "file: $ck" "$T/out" || fail "inspect: no file line"
for s in 'W1  \[784,32\]' 'b1  \[32\]' 'W2  \[32,10\]' 'b2  \[10\]'; do
    grep -qx "  $s" "$T/out" || fail "inspect: no shape line '$s'"
done
for a in 'format = mlp-checkpoint' 'format_version = 2' 'd = 784' 'hidden = 32' \
         'classes = 10' 'epoch = 2' 'ranks = 2' 'reduce = exact' 'lr = 0.5' 'batch = 50'; do
    grep -qE "^  ${a%% = *} += ${a#* = }\$" "$T/out" || fail "inspect: no attribute line '$a'"
done
grep -qx '  config:' "$T/out" || fail "inspect: no config: heading"
grep -qx '    hidden = 32' "$T/out" || fail "inspect: config text not indented under config:"
# History rows and weight statistics against the checkpoint itself.
$PY - "$ck" "$T/out" <<'PY' || fail "inspect: history or statistics differ from the checkpoint"
import math, re, sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
out = open(sys.argv[2]).read().splitlines()
hist = f["history"]
assert len(hist["epoch"]) == 2, len(hist["epoch"])
i = out.index("history (2 epochs):")
assert out[i + 1].split() == ["epoch", "train_loss", "train_acc", "test_acc", "seconds"], out[i + 1]
for r in range(2):
    want = [str(hist["epoch"][r]), "%.6f" % hist["train_loss"][r], "%.4f" % hist["train_acc"][r],
            "%.4f" % hist["test_acc"][r], "%.2f" % hist["seconds"][r]]
    assert out[i + 2 + r].split() == want, (out[i + 2 + r], want)
j = [n for n, l in enumerate(out) if l.startswith("weights (")][0]
assert out[j + 1].split() == ["tensor", "min", "max", "mean", "std", "nonfinite"], out[j + 1]
for r, name in enumerate(("W1", "b1", "W2", "b2")):
    x = f["model"][name][()].astype(np.float64).ravel()
    cells = out[j + 2 + r].split()
    assert cells[0] == name and cells[5] == "0", cells
    got = [float(c) for c in cells[1:5]]
    want = [x.min(), x.max(), x.mean(), x.std()]
    for g, w in zip(got, want):
        assert math.isclose(g, w, rel_tol=1e-5, abs_tol=1e-12), (name, got, want)
print("inspect: history and statistics ok")
PY

note "eval"
acc_csv=$(tail -n 1 "$csv" | cut -d, -f4)
sub eval "$ck"
cat "$T/out" "$T/err"
[ $rc -eq 0 ] || fail "eval (stored config) exit status $rc"
[ ! -s "$T/err" ] || fail "eval wrote to stderr"
grep -qx 'config:      the one stored in the checkpoint' "$T/out" || fail "eval: config source"
cp "$T/out" "$T/eval-stored.txt"
sub eval "$ck" "$cfg"
cat "$T/out" "$T/err"
[ $rc -eq 0 ] || fail "eval CONFIG exit status $rc"
[ ! -s "$T/err" ] || fail "eval CONFIG wrote to stderr"
grep -qx "config:      $cfg" "$T/out" || fail "eval: config source"
cp "$T/out" "$T/eval-config.txt"
# Everything but the config line is the same either way.
diff <(grep -v '^config:' "$T/eval-stored.txt") <(grep -v '^config:' "$T/eval-config.txt") ||
    fail "eval with and without CONFIG differ"
$PY - "$T/eval-stored.txt" "$acc_csv" "$labels" "$ck" <<'PY' || fail "eval output wrong"
import re, sys, h5py, numpy as np
out = open(sys.argv[1]).read().splitlines()
acc_csv = "%.4f" % float(sys.argv[2])
m = [re.fullmatch(r"accuracy: +([0-9.]+) \((\d+) / (\d+)\)", l) for l in out]
m = [x for x in m if x]
assert len(m) == 1, "no accuracy line"
acc, correct, n = m[0].group(1), int(m[0].group(2)), int(m[0].group(3))
assert acc == acc_csv, f"eval accuracy {acc} != metrics test_acc {acc_csv}"
assert n == 10000, n
# The matrix: rows "LABEL c0 .. c9 TOTAL" after the "true\pred 0 .. 9 total" header.
h = [i for i, l in enumerate(out) if l.split()[:1] == ["true\\pred"]]
assert len(h) == 1, "no confusion header"
assert out[h[0]].split()[1:] == [str(j) for j in range(10)] + ["total"], out[h[0]]
rows = [out[h[0] + 1 + i].split() for i in range(10)]
assert [r[0] for r in rows] == [str(i) for i in range(10)], rows
conf = np.array([[int(c) for c in r[1:11]] for r in rows])
assert all(int(r[11]) == sum(map(int, r[1:11])) for r in rows), "row totals"
assert conf.sum() == 10000, conf.sum()
assert np.trace(conf) == correct, (np.trace(conf), correct)
assert "%.4f" % (np.trace(conf) / 10000) == acc, (np.trace(conf), acc)
tot = out[h[0] + 11].split()
assert tot[0] == "total" and [int(c) for c in tot[1:]] == list(conf.sum(0)) + [10000], tot
# Rows are TRUE labels: their totals are the label counts of the test set.
y = np.frombuffer(open(sys.argv[3], "rb").read()[8:], dtype=np.uint8).astype(np.int64)
assert list(conf.sum(1)) == list(np.bincount(y, minlength=10)), "row totals != label counts"
# Columns are PREDICTIONS and the loss is the mean cross-entropy: a float64 forward pass
# agrees (up to the odd near-tie between the float32 and float64 argmax).
f = h5py.File(sys.argv[4], "r")
W1, b1, W2, b2 = (f["model"][k][()].astype(np.float64) for k in ("W1", "b1", "W2", "b2"))
raw = open(sys.argv[3].replace("labels-idx1", "images-idx3"), "rb").read()[16:]
X = np.frombuffer(raw, dtype=np.uint8).reshape(10000, 784) / 255.0
Z = 1 / (1 + np.exp(-(X @ W1 + b1))) @ W2 + b2
zmax = Z.max(1, keepdims=True)
loss = np.mean(np.log(np.exp(Z - zmax).sum(1)) + zmax[:, 0] - Z[np.arange(10000), y])
ref = np.zeros((10, 10), dtype=np.int64)
np.add.at(ref, (y, Z.argmax(1)), 1)
assert np.abs(ref - conf).sum() <= 4, (ref, conf)
ml = [re.fullmatch(r"loss: +([0-9.]+) \(mean cross-entropy\)", l) for l in out]
ml = [x for x in ml if x]
assert len(ml) == 1 and abs(float(ml[0].group(1)) - loss) < 1e-5, (ml, loss)
print(f"eval: accuracy {acc} = metrics, {correct} on the diagonal, loss {loss:.6f}: ok")
PY

note "errors: one line, exit 1, naming the file"
echo "not a checkpoint" > "$T/text.h5"
size=$(stat -c %s "$(readlink -f "$ck")")
head -c $((size / 2)) "$ck" > "$T/half.h5"
for f in "$T/missing.h5" "$T/text.h5" "$T/half.h5"; do
    for cmd in inspect eval; do
        sub $cmd "$f"
        cat "$T/err"
        [ $rc -eq 1 ] || fail "$cmd $(basename "$f"): exit status $rc"
        [ "$(wc -l < "$T/err")" -eq 1 ] || fail "$cmd $(basename "$f"): not one stderr line"
        grep -q "^mlp: error: $f: " "$T/err" || fail "$cmd $(basename "$f"): message lacks the file"
        [ ! -s "$T/out" ] || fail "$cmd $(basename "$f"): wrote to stdout"
    done
done
# Test images of another size than the checkpoint's d.
$PY - "$T" <<'PY'
import struct, sys
open(sys.argv[1] + "/img14", "wb").write(struct.pack(">IIII", 0x803, 3, 14, 14) + bytes(3 * 196))
open(sys.argv[1] + "/lab14", "wb").write(struct.pack(">II", 0x801, 3) + bytes(3))
PY
printf '[data]\ntest_images = %s\ntest_labels = %s\n' "$T/img14" "$T/lab14" > "$T/d14.ini"
sub eval "$ck" "$T/d14.ini"
cat "$T/err"
[ $rc -eq 1 ] || fail "eval with 14x14 images: exit status $rc"
grep -qx "mlp: error: $T/img14: .*196 pixels .*d = 784" "$T/err" || fail "d mismatch message"
# A config error names the config file.
printf '[data]\nbogus = 1\n' > "$T/bad.ini"
sub eval "$ck" "$T/bad.ini"
cat "$T/err"
[ $rc -eq 1 ] || fail "eval with a bad config: exit status $rc"
grep -q "^mlp: error: $T/bad.ini:2: " "$T/err" || fail "bad config message"

note "an edited file: refused until resealed; escapes; non-finite weights"
# h5py edits a copy (the 512-byte block with the seal line is kept, now stale): a NaN weight
# and an mlp_version carrying terminal escape sequences (set title, clear screen).
ed=$T/edited.h5
cp "$(readlink -f "$ck")" "$ed"
$PY - "$ed" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    f["model"]["W2"][0, 0] = float("nan")
    f.attrs["mlp_version"] = "0.1\x1b]0;owned\x07\x1b[2J"
PY
sub inspect "$ed"
cat "$T/err"
[ $rc -eq 1 ] || fail "inspect of an edited file: exit status $rc"
grep -q "^mlp: error: $ed: .*changed since mlp wrote it.*mlp reseal $ed" "$T/err" ||
    fail "the stale seal's message does not name mlp reseal"
# `mlp reseal` (cli_reseal) once main.c dispatches it; until then the same seal in python.
if "$MLP" reseal --help > /dev/null 2>&1; then
    sub reseal "$ed"
    [ $rc -eq 0 ] || { cat "$T/err"; fail "mlp reseal: exit status $rc"; }
else
    note "mlp reseal not dispatched by main.c yet: resealing with python"
    $PY - "$ed" <<'PY'
import sys, zlib
raw = open(sys.argv[1], "rb").read()
line = b"mlp-checkpoint crc32 %08x size %d\n" % (zlib.crc32(raw[512:]), len(raw))
open(sys.argv[1], "wb").write(line + bytes(512 - len(line)) + raw[512:])
PY
fi
sub inspect "$ed"
[ $rc -eq 0 ] || { cat "$T/err"; fail "inspect after reseal: exit status $rc"; }
if LC_ALL=C grep -q $'[\x01-\x09\x0b-\x1f\x7f]' "$T/out"; then
    fail "inspect printed a control character"
fi
grep -qF 'mlp_version      = 0.1\x1b]0;owned\x07\x1b[2J' "$T/out" ||
    fail "inspect: mlp_version not shown escaped"
grep -qE '^  W2 .* 1$' "$T/out" || fail "inspect: W2 should count 1 non-finite value"
sub eval "$ed"
cat "$T/err"
[ $rc -eq 1 ] || fail "eval of NaN weights: exit status $rc, expected 1"
grep -q "^mlp: warning: $ed: 1 non-finite weight (NaN or Inf: W1 0, b1 0, W2 1, b2 0)" \
    "$T/err" || fail "eval of NaN weights: no warning"
[ ! -s "$T/out" ] || fail "eval of NaN weights printed results"

note "usage errors exit 2"
for args in "inspect" "inspect a b" "eval" "eval a b c" "inspect --bogus x"; do
    sub $args
    [ $rc -eq 2 ] || fail "mlp $args: exit status $rc, expected 2"
    grep -q '^usage: mlp ' "$T/err" || fail "mlp $args: no usage line"
done
echo "inspect-eval: ok"
