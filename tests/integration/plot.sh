# scripts/plot-checkpoint and scripts/plot-runs on two short runs, rendered headless: the
# PNGs are real and of a sensible size, and --summary (read back from the drawn matplotlib
# objects) shows a log loss axis, run names in the legends, a confusion matrix of per-row
# percentages with its diagonal on a scale of its own, and colour bars. Figures of another
# run are never overwritten; bad input is one error line and exit 1.
source "$(dirname "$0")/../lib.sh"
export MPLBACKEND=Agg
PLOT=$ROOT/scripts/plot-checkpoint
RUNS=$ROOT/scripts/plot-runs

# Two runs whose directory holds the checkpoints and metrics.csv; runB evaluates the test
# set every 2nd epoch only, so its test_acc column has NaN rows.
train() {   # name, extra --set arguments...
    local name=$1 cfg
    shift
    cfg=$(small_config "$name")
    run_np 2 "$cfg" --set checkpoint.dir=$T/$name "$@" > "$T/$name.txt" 2>&1 ||
        { cat "$T/$name.txt"; fail "training $name failed"; }
    [ -s "$T/$name/metrics.csv" ] || fail "no $T/$name/metrics.csv"
}
train runA
train runB --set train.epochs=3 --set train.lr=0.2 --set train.eval_every=2

# Each named file is a PNG (signature, IHDR) of 300 to 4000 pixels each way.
check_pngs() {
    local f
    for f in "$@"; do
        [ -s "$f" ] || fail "$f missing or empty"
    done
    $PY - "$@" <<'PY' || fail "not valid PNGs of 300 to 4000 pixels each way: $*"
import struct, sys
for path in sys.argv[1:]:
    b = open(path, "rb").read(33)
    assert b[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: no PNG signature"
    length, kind, w, h = struct.unpack(">I4sII", b[8:24])
    assert kind == b"IHDR" and length == 13, f"{path}: first chunk {kind!r}"
    assert 300 <= w <= 4000 and 300 <= h <= 4000, f"{path}: {w}x{h}"
    print(f"{path}: {w}x{h}")
PY
}

# Run a plotting command expecting exit status $1; its stdout and stderr in $T/stdout,
# $T/stderr. Usage: expect_rc RC command...
expect_rc() {
    local want=$1 rc=0
    shift
    "$@" > "$T/stdout" 2> "$T/stderr" || rc=$?
    cat "$T/stdout" "$T/stderr"
    [ $rc -eq "$want" ] || fail "$*: exit status $rc, expected $want"
}

note "plot-checkpoint RUN_DIR --out DIR"
expect_rc 0 "$PLOT" --summary "$T/ck.json" "$T/runA" --out "$T/out"
check_pngs "$T/out/curves.png" "$T/out/confusion.png" "$T/out/weights.png"
[ "$(wc -l < "$T/stdout")" -eq 3 ] || fail "expected the three written paths on stdout"
[ ! -s "$T/stderr" ] || fail "plot-checkpoint wrote to stderr"
$PY - "$T/ck.json" "$T/out" "$T/runA" <<'PY' || fail "plot-checkpoint: the figures are not as described"
import json, os, sys
sys.path.insert(0, "scripts")
sys.dont_write_bytecode = True
import mlp_plot
summary, out, run = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
epochs = len(open(f"{run}/metrics.csv").readlines()) - 1
curves = summary[f"{out}/curves.png"]
loss, acc = curves["axes"]
assert loss["yscale"] == "log", loss
# the checkpoint's history has test_loss since format_version 2: its curve is drawn too
assert loss["legend"] == ["runA train", "runA test"], loss["legend"]
assert acc["legend"] == ["runA train", "runA test"], acc["legend"]
assert acc["lines"] == {"runA train": epochs, "runA test": epochs}, acc["lines"]

conf = summary[f"{out}/confusion.png"]
(ax,) = conf["axes"]
mistakes, hits = ax["images"]
k = mistakes["shape"][0]
assert mistakes["shape"] == [k, k] and k == 10, mistakes["shape"]
diagonal = [[i, i] for i in range(k)]
assert mistakes["masked"] == diagonal, mistakes["masked"]       # the diagonal masked ...
assert sorted(hits["masked"]) == sorted([[i, j] for i in range(k) for j in range(k) if i != j])
assert mistakes["cmap"] != hits["cmap"]                         # ... and on its own scale
off_max = max(v for i, row in enumerate(mistakes["values"]) for j, v in enumerate(row) if i != j)
assert mistakes["clim"] == [0, max(off_max, 1.0)], (mistakes["clim"], off_max)
hit_min = min(hits["values"][i][i] for i in range(k))
assert hits["clim"] == [min(hit_min, 99.0), 100], (hits["clim"], hit_min)
for i in range(k):                                              # per-row percentages
    row = [hits["values"][i][i] if j == i else mistakes["values"][i][j] for j in range(k)]
    assert abs(sum(row) - 100) < 1e-6, (i, row)
assert len(conf["colorbars"]) == 2, conf["colorbars"]
assert "accuracy" in ax["title"] and f"run runA, after {epochs} epochs" in ax["title"], ax["title"]

weights = summary[f"{out}/weights.png"]
assert len(weights["colorbars"]) == 1 and "weight" in weights["colorbars"][0], weights["colorbars"]
assert len([a for a in weights["axes"] if a["images"]]) == 32   # model.hidden = 32 units
assert "runA" in weights["suptitle"]

for name in ("curves", "confusion", "weights"):                 # each PNG names its run
    assert mlp_plot.png_text(f"{out}/{name}.png")["mlp-source"] == os.path.realpath(run)
print("figures ok")
PY

note "plot-checkpoint CHECKPOINT.h5: default output RUN_DIR/plots; re-plotting the same run"
expect_rc 0 "$PLOT" "$T/runA/latest.h5"
check_pngs "$T/runA/plots/curves.png" "$T/runA/plots/confusion.png" "$T/runA/plots/weights.png"
expect_rc 0 "$PLOT" "$T/runA"
[[ $(cat "$T/stdout") == *"$T/runA/plots/confusion.png"* ]] || fail "same run: not re-plotted"

note "another run's figures are not overwritten"
sha() { sha256sum "$@" | cut -d' ' -f1; }
before=$(sha "$T/runA/plots/"*.png)
expect_rc 1 "$PLOT" "$T/runB" --out "$T/runA/plots"
[ "$(wc -l < "$T/stderr")" -eq 1 ] || fail "refusal: not one stderr line"
[[ $(cat "$T/stderr") == "plot-checkpoint: error: $T/runA/plots/curves.png: holds a figure of another run ($T/runA);"* ]] ||
    fail "refusal: message does not name the file and its run"
[ ! -s "$T/stdout" ] || fail "refusal: a path printed"
[ "$(sha "$T/runA/plots/"*.png)" = "$before" ] || fail "refusal: runA's figures changed"
mkdir -p "$T/foreign"
echo "not a figure" > "$T/foreign/confusion.png"
expect_rc 1 "$PLOT" "$T/runB" --out "$T/foreign"
[[ $(cat "$T/stderr") == *"foreign/confusion.png: exists and is not a figure written by these scripts"* ]] ||
    fail "foreign file: wrong message"
[ ! -e "$T/foreign/curves.png" ] || fail "foreign file: curves.png written anyway"
expect_rc 0 "$PLOT" "$T/runB" --out "$T/foreign" --force
check_pngs "$T/foreign/confusion.png"

note "plot-runs: two runs and a CSV with val/test loss columns, empty cells and nan"
mkdir -p "$T/synth"
cat > "$T/synth/metrics.csv" <<'CSV'
epoch,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,seconds,samples_per_s,param_hash
1,0.9,0.70,0.8,0.72,,,1.0,1000,00000000000000aa
2,0.3,0.90,0.35,0.88,0.36,0.87,1.0,1100,00000000000000bb
3,0.1,0.97,0.2,0.94,nan,nan,1.0,,00000000000000cc
4,0.01,0.995,0.15,0.95,0.16,0.95,1.0,1200,00000000000000dd
CSV
expect_rc 0 "$RUNS" --summary "$T/runs.json" "$T/runA" "$T/runB/metrics.csv" "$T/synth"
out=$T/plots/compare-runA-vs-runB-vs-synth.png
[ "$(cat "$T/stdout")" = "$out" ] || fail "plot-runs: default output is not $out"
check_pngs "$out"
$PY - "$T/runs.json" "$out" "$T/runA/metrics.csv" <<'PY' || fail "plot-runs: the figure is not as described"
import json, sys
fig = json.load(open(sys.argv[1]))[sys.argv[2]]
a = len(open(sys.argv[3]).readlines()) - 1   # runA's epochs
loss, acc, speed = fig["axes"]
assert loss["yscale"] == "log", loss["yscale"]
# mlp's metrics have test_loss (empty where the test set was not evaluated)
assert loss["lines"] == {"runA train": a, "runA test": a, "runB train": 3, "runB test": 2,
                         "synth train": 4, "synth val": 4, "synth test": 2}, loss["lines"]
assert acc["legend"] == ["runA train", "runA test", "runB train", "runB test",
                         "synth train", "synth val", "synth test"], acc["legend"]
assert acc["lines"]["runB test"] == 2, acc["lines"]       # epochs 2 and 3 (the last) only
assert speed["lines"] == {"runA": a, "runB": 3, "synth": 3}, speed["lines"]
assert fig["suptitle"] == "3 runs: runA, runB, synth", fig["suptitle"]
print("comparison ok")
PY

note "plot-runs --splits train,val --error: no test line, the error rate in % on a log scale"
expect_rc 0 "$RUNS" --summary "$T/err.json" --out "$T/err.png" --splits train,val --error "$T/synth"
check_pngs "$T/err.png"
$PY - "$T/err.json" "$T/err.png" <<'PY' || fail "plot-runs --splits --error: the figure is not as described"
import json, sys
loss, err, speed = json.load(open(sys.argv[1]))[sys.argv[2]]["axes"]
assert loss["lines"] == {"synth train": 4, "synth val": 4}, loss["lines"]
assert err["yscale"] == "log" and err["title"] == "error", err
assert err["legend"] == ["synth train", "synth val"], err["legend"]
PY
expect_rc 2 "$RUNS" --splits train,dev "$T/synth"
grep -q "^plot-runs: usage error: --splits train,dev: each must be one of train, val, test" "$T/stderr" ||
    fail "plot-runs --splits: bad split not refused"

note "plot-runs: runs of the same name are told apart; --out FILE.png; refusal"
mkdir -p "$T/x/run" "$T/y/run"
cp "$T/runA/metrics.csv" "$T/x/run/"
cp "$T/runB/metrics.csv" "$T/y/run/"
expect_rc 0 "$RUNS" --summary "$T/same.json" --out "$T/same.png" "$T/x/run" "$T/y/run"
check_pngs "$T/same.png"
$PY - "$T/same.json" "$T/same.png" <<'PY' || fail "plot-runs: same-named runs not told apart"
import json, sys
acc = json.load(open(sys.argv[1]))[sys.argv[2]]["axes"][1]
assert acc["legend"][0] == "x/run train" and "y/run test" in acc["legend"], acc["legend"]
PY
expect_rc 1 "$RUNS" --out "$T/same.png" "$T/x/run"
[[ $(cat "$T/stderr") == *"same.png: holds a figure of another run ("* ]] || fail "plot-runs: no refusal"

note "errors: one line, exit 1"
expect_rc 1 "$PLOT" "$T/missing.h5" "$T/none"
[ "$(wc -l < "$T/stderr")" -eq 1 ] || fail "missing checkpoint: not one stderr line"
grep -q "^plot-checkpoint: error: $T/missing.h5: No such file" "$T/stderr" ||
    fail "missing checkpoint: message lacks the file"
[ ! -e "$T/none" ] || fail "missing checkpoint: OUTDIR created anyway"
expect_rc 1 "$PLOT" "$T/synth"
grep -q "^plot-checkpoint: error: $T/synth: a directory without latest.h5" "$T/stderr" ||
    fail "run directory without a checkpoint: wrong message"
expect_rc 1 "$RUNS" "$T/foreign"
grep -q "^plot-runs: error: $T/foreign: a directory without metrics.csv" "$T/stderr" ||
    fail "directory without metrics.csv: wrong message"
printf 'epoch,train_loss\n1,0.5\n2,abc\n' > "$T/bad.csv"
expect_rc 1 "$RUNS" "$T/bad.csv" --out "$T/bad.png"
grep -q "^plot-runs: error: $T/bad.csv:3: column train_loss = 'abc': not a number" "$T/stderr" ||
    fail "bad CSV cell: message lacks file:line and the value"
[ ! -e "$T/bad.png" ] || fail "bad CSV: a figure written anyway"
expect_rc 2 "$RUNS"
[ "$(wc -l < "$T/stderr")" -eq 1 ] || fail "usage error: not one stderr line"
echo "plot: ok"
