# The same config under -np 1, 2, 3, 4 (and 1 vs 2 threads per rank) gives the same
# weights: bitwise in exact mode (equal param_hash and /model bytes), within 1e-5 relative
# in fast mode.
source "$(dirname "$0")/../lib.sh"
cfg=$(small_config base)
sets=(--set data.train_limit=1000 --set train.batch=40 --set train.chunk=6)
ref=
for np in 1 2 3 4; do
    for th in 1 2; do
        [ $np -ge 3 ] && [ $th -eq 2 ] && continue   # keep the suite short on 2 cores
        d=$T/exact-$np-$th
        OMP_NUM_THREADS=$th run_np $np "$cfg" "${sets[@]}" --set checkpoint.dir=$d \
            --set log.metrics=$d/metrics.csv > "$d.log" 2>&1 || { cat "$d.log"; fail "np=$np threads=$th"; }
        h=$(hashes "$d/metrics.csv" | tr '\n' ' ')
        note "exact np=$np threads=$th: $h"
        [ -z "$ref" ] && ref=$h
        [ "$h" = "$ref" ] || fail "exact np=$np threads=$th: param_hash $h != $ref"
        grep '^epoch' "$d.log" | sed 's/  [0-9.]* s .*//' > "$d.lines"
        cmp -s "$d.lines" "$T/exact-1-1.lines" || fail "printed loss/accuracy differ at np=$np threads=$th"
    done
done
[ "$(model_sha $T/exact-4-1/latest.h5)" = "$(model_sha $T/exact-1-1/latest.h5)" ] ||
    fail "exact: /model bytes differ between -np 1 and -np 4"

for np in 1 3; do
    d=$T/fast-$np
    run_np $np "$cfg" "${sets[@]}" --set train.reduce=fast --set checkpoint.dir=$d \
        --set log.metrics=$d/metrics.csv > "$d.log" 2>&1 || { cat "$d.log"; fail "fast np=$np"; }
done
$PY - $T/fast-1/latest.h5 $T/fast-3/latest.h5 $T/exact-1-1/latest.h5 <<'PY' || fail "fast mode disagrees"
import sys, h5py, numpy as np
a, b, e = (h5py.File(p, "r") for p in sys.argv[1:])
for n in ("W1", "b1", "W2", "b2"):
    x, y, z = a["model"][n][()], b["model"][n][()], e["model"][n][()]
    scale = np.abs(x).max()
    r1 = np.abs(x - y).max() / scale
    r2 = np.abs(x - z).max() / scale
    print(f"{n}: fast np1 vs np3 {r1:.2e}, fast vs exact {r2:.2e}")
    assert r1 < 1e-5 and r2 < 1e-5
PY
