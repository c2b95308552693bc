# scripts/plot-checkpoint on a short run's checkpoint: three real PNGs in OUTDIR (and by
# default beside the checkpoint); a missing checkpoint is one error line and exit 1.
source "$(dirname "$0")/../lib.sh"
export MPLBACKEND=Agg
PLOT=$ROOT/scripts/plot-checkpoint
cfg=$(small_config plot)
run_np 2 "$cfg" > "$T/train.txt" 2>&1 || { cat "$T/train.txt"; fail "training failed"; }
ck=$T/plot/ckpt/latest.h5

# Each named file exists, is non-empty, and is a PNG wider and taller than 100 pixels.
check_pngs() {
    local f
    for f in "$@"; do
        [ -s "$f" ] || fail "$f missing or empty"
    done
    $PY - "$@" <<'PY' || fail "not valid PNGs of more than 100x100 pixels: $*"
import struct, sys
for path in sys.argv[1:]:
    b = open(path, "rb").read(33)
    assert b[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: no PNG signature"
    length, kind, w, h = struct.unpack(">I4sII", b[8:24])
    assert kind == b"IHDR" and length == 13, f"{path}: first chunk {kind!r}"
    assert w > 100 and h > 100, f"{path}: {w}x{h}"
    print(f"{path}: {w}x{h}")
PY
}

note "explicit OUTDIR"
rc=0
"$PLOT" "$ck" "$T/out" > "$T/stdout" 2> "$T/stderr" || rc=$?
cat "$T/stdout" "$T/stderr"
[ $rc -eq 0 ] || fail "plot-checkpoint exit status $rc"
check_pngs "$T/out/curves.png" "$T/out/confusion.png" "$T/out/weights.png"
[ "$(wc -l < "$T/stdout")" -eq 3 ] || fail "expected the three written paths on stdout"

note "default OUTDIR: the checkpoint's directory"
rc=0
"$PLOT" "$ck" > "$T/stdout" 2>&1 || rc=$?
cat "$T/stdout"
[ $rc -eq 0 ] || fail "plot-checkpoint (default OUTDIR) exit status $rc"
check_pngs "$T/plot/ckpt/curves.png" "$T/plot/ckpt/confusion.png" "$T/plot/ckpt/weights.png"

note "missing checkpoint"
rc=0
"$PLOT" "$T/missing.h5" "$T/none" > "$T/stdout" 2> "$T/stderr" || rc=$?
cat "$T/stderr"
[ $rc -eq 1 ] || fail "missing checkpoint: exit status $rc"
[ "$(wc -l < "$T/stderr")" -eq 1 ] || fail "missing checkpoint: not one stderr line"
grep -q "^plot-checkpoint: error: $T/missing.h5: No such file" "$T/stderr" ||
    fail "missing checkpoint: message lacks the file"
[ ! -e "$T/none" ] || fail "missing checkpoint: OUTDIR created anyway"
echo "plot: ok"
