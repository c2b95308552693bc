# The portable build (make ARCH=x86-64: SSE2 only, no FMA, no AVX) must pass the kernel
# and model tests too, and keep exact mode's promise: the same weights for any ranks and
# threads. The default build uses -march=native, so without this test the fallback code
# paths of the vector kernels would only run under valgrind.
source "$(dirname "$0")/../lib.sh"
# Not the build of the surrounding `make SAN=1 test`: the plain generic one.
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$ROOT" ARCH=x86-64 build/x86-64/mlp \
    build/x86-64/tests/test_model build/x86-64/tests/test_kernels > "$T/make.log" 2>&1 ||
    { cat "$T/make.log"; fail "generic build"; }
if grep -q 'warning:' "$T/make.log"; then cat "$T/make.log"; fail "the generic build warns"; fi
objdump -d "$ROOT/build/x86-64/src/kernels.o" > "$T/kernels.asm"
if grep -qE '%[yz]mm|vfmadd' "$T/kernels.asm"; then
    fail "the generic build's kernels use AVX registers or FMA"
fi
"$ROOT/build/x86-64/tests/test_model" || fail "kernel and model tests, generic build"
"$ROOT/build/x86-64/tests/test_kernels" || fail "fast against reference kernels, generic build"

# same_weights NAME LAUNCH...: $MLP trains $cfg for one epoch at h = 212 = 128 + 64 + 16 +
# 4 (every register path of the kernels, and the scalar tail) at each launch ("RANKS
# THREADS"); every launch must give the first one's weights.
cfg=$(small_config gen)
same_weights() {
    local name=$1 first="" tag
    shift
    for launch in "$@"; do
        set -- $launch
        tag=${name// /-}-$1x$2
        OMP_NUM_THREADS=$2 run_np "$1" "$cfg" --set model.hidden=212 --set train.epochs=1 \
            --set checkpoint.dir="$T/gen/ck-$tag" --set log.metrics="$T/gen/m-$tag.csv" \
            > "$T/gen/out-$tag" 2>&1 || { cat "$T/gen/out-$tag"; fail "$name: training $1 x $2"; }
        hashes "$T/gen/m-$tag.csv" > "$T/gen/h-$tag"
        note "$name, $1 ranks x $2 threads: $(cat "$T/gen/h-$tag")"
        [ -n "$first" ] || first=$T/gen/h-$tag
        cmp -s "$first" "$T/gen/h-$tag" || fail "$name: $1 x $2 weights differ from the first launch"
    done
    echo "$name: kernel tests pass, same weights at every launch"
}
MLP=$ROOT/build/x86-64/mlp same_weights "generic build" "1 1" "1 2" "2 1" "3 2"

# The AVX-512 shape of the kernels (16 lanes, 8 x 32 micro-tiles, the 8-row packing) on
# whatever this machine has (make KVL=16: GCC splits the wide vectors): the same tests and
# the same weights for any ranks and threads. Without it, that shape would run only on an
# AVX-512 machine.
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$ROOT" KVL=16 build/vl16/mlp \
    build/vl16/tests/test_model build/vl16/tests/test_kernels > "$T/make16.log" 2>&1 ||
    { cat "$T/make16.log"; fail "KVL=16 build"; }
if grep -q 'warning:' "$T/make16.log"; then cat "$T/make16.log"; fail "the KVL=16 build warns"; fi
"$ROOT/build/vl16/tests/test_model" || fail "kernel and model tests, KVL=16"
"$ROOT/build/vl16/tests/test_kernels" || fail "fast against reference kernels, KVL=16"
MLP=$ROOT/build/vl16/mlp same_weights "KVL=16" "1 1" "1 2" "2 1"
