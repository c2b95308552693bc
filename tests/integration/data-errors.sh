# Bad data files through the trainer: truncated, wrong magic, gzip copies that load.
source "$(dirname "$0")/../lib.sh"
cfg=$(small_config data)
img=$ROOT/data/mnist/t10k-images-idx3-ubyte
head -c 1000000 "$img" > "$T/trunc"
{ printf '\x00\x00\x08\x01'; tail -c +5 "$img"; } > "$T/magic"
# A FIFO with no writer used to hang every rank at start-up; now refused at once.
mkfifo "$T/fifo"
for case in trunc:truncated magic:magic fifo:FIFO; do
    f=${case%%:*} want=${case#*:} rc=0
    timeout 60 "$ROOT/scripts/mpirun-local" -np 2 "$MLP" "$cfg" --set data.test_images=$T/$f \
        > "$T/out" 2> "$T/err" || rc=$?
    cat "$T/err"
    [ $rc -eq 1 ] || fail "$f: exit status $rc"
    grep -q "^mlp: \[rank 0\] error: $T/$f: .*$want" "$T/err" || fail "$f: message lacks '$want'"
done
# The usual .gz files are read directly.
gzip -c "$img" > "$T/t10k.gz"
gzip -c "$ROOT/data/mnist/t10k-labels-idx1-ubyte" > "$T/t10k-labels.gz"
"$ROOT/scripts/mpirun-local" -np 1 "$MLP" "$cfg" --set train.epochs=1 \
    --set data.test_images=$T/t10k.gz --set data.test_labels=$T/t10k-labels.gz > "$T/out" 2>&1 ||
    { cat "$T/out"; fail "gzip data did not load"; }
grep -q '10000 test samples' "$T/out" || fail "gzip test set not read whole"
