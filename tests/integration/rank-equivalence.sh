# train.reduce = exact: configs/mnist.ini gives bitwise-identical weights for -np 1, 2, 3,
# 4 and 8, each with 1 and 2 threads per rank: equal param_hash on every row, equal
# /model bytes in the final checkpoint, equal printed loss and accuracies. The batch is
# cut into 7 chunks (40 / 6), so ranks hold unequal numbers of chunks and at -np 8 one rank
# holds none; 1010 samples leave a short last minibatch of 10 (chunks of 6 and 4).
# train.reduce = fast agrees with exact to float rounding. hidden = 35 with chunks of 4
# (tiles that straddle the ranks' shards, columns past the last vector): the same bits
# for -np 1, 2 and 3.
source "$(dirname "$0")/../lib.sh"
sets=(--set train.epochs=2 --set data.train_limit=1010 --set train.batch=40 --set train.chunk=6
      --set train.eval_every=1 --set log.progress=off)
run_case() {   # name np threads [extra sets...]
    local name=$1 np=$2 th=$3 d=$T/$1
    shift 3
    OMP_NUM_THREADS=$th run_np "$np" configs/mnist.ini "${sets[@]}" --set checkpoint.dir="$d" \
        --set log.metrics="$d/metrics.csv" "$@" > "$d.log" 2>&1 || { cat "$d.log"; fail "$name"; }
    grep '^epoch ' "$d.log" | sed 's/  [0-9.]* s .*//' > "$d.lines"
}
ref=
for np in 1 2 3 4 8; do
    for th in 1 2; do
        name=exact-$np-$th
        run_case "$name" "$np" "$th"
        h=$(hashes "$T/$name/metrics.csv" | tr '\n' ' ')
        sha=$(model_sha "$T/$name/latest.h5")
        note "np=$np threads=$th: param_hash $h /model sha256 ${sha:0:16}"
        if [ -z "$ref" ]; then
            ref=$h refsha=$sha
            [ "$(wc -l < "$T/$name.lines")" -eq 2 ] || fail "expected 2 epoch lines"
        fi
        [ "$h" = "$ref" ] || fail "np=$np threads=$th: param_hash $h != $ref"
        [ "$sha" = "$refsha" ] || fail "np=$np threads=$th: /model bytes differ"
        cmp -s "$T/$name.lines" "$T/exact-1-1.lines" ||
            { diff "$T/exact-1-1.lines" "$T/$name.lines"; fail "printed loss/accuracy differ at np=$np threads=$th"; }
    done
done
# A hidden width with columns past the kernels' last full vector (35 = 4 x 8 + 3 with
# AVX2), and chunks of 4, so that each rank's shard starts inside a 6- or 8-sample tile of
# the 1-rank run: every rank's tiles hold other samples, which must not change a bit.
ref35=
for np in 1 2 3; do
    run_case "h35-$np" "$np" 1 --set model.hidden=35 --set train.chunk=4
    h=$(hashes "$T/h35-$np/metrics.csv" | tr '\n' ' ')
    note "hidden 35, chunk 4, np=$np: param_hash $h"
    [ -n "$ref35" ] || ref35=$h
    [ "$h" = "$ref35" ] || fail "hidden 35, np=$np: param_hash $h != $ref35"
done
# Nesterov momentum with weight decay: with several ranks on a node each rank updates its
# slice of the node's one copy of the parameters and velocity (W1 b1 W2 b2 decayed or
# not across the slices' edges): the same bits as one rank's whole update.
refn=
for np in 1 3; do
    run_case "nesterov-$np" "$np" 1 --set train.optimizer=nesterov --set train.momentum=0.9 \
        --set train.weight_decay=1e-4
    h=$(hashes "$T/nesterov-$np/metrics.csv" | tr '\n' ' ')
    note "nesterov, decay, np=$np: param_hash $h"
    [ -n "$refn" ] || refn=$h
    [ "$h" = "$refn" ] || fail "nesterov, np=$np: param_hash $h != $refn"
done
# A different chunk size is different (but equally valid) rounding: the hash must change,
# which shows that the comparison above can fail.
run_case chunk5 2 1 --set train.chunk=5
[ "$(hashes "$T/chunk5/metrics.csv" | tr '\n' ' ')" != "$ref" ] || fail "chunk 5 gave the same bits as chunk 6"

for np in 1 3; do
    run_case "fast-$np" "$np" 1 --set train.reduce=fast
done
$PY - "$T/fast-1/latest.h5" "$T/fast-3/latest.h5" "$T/exact-1-1/latest.h5" <<'PY' || fail "fast mode disagrees"
import sys, h5py, numpy as np
a, b, e = (h5py.File(p, "r") for p in sys.argv[1:])
for n in ("W1", "b1", "W2", "b2"):
    x, y, z = a["model"][n][()], b["model"][n][()], e["model"][n][()]
    scale = np.abs(x).max()
    r1, r2 = np.abs(x - y).max() / scale, np.abs(x - z).max() / scale
    print(f"{n}: fast np1 vs np3 {r1:.2e}, fast vs exact {r2:.2e}")
    assert r1 < 1e-5 and r2 < 1e-5
PY
