# A short training, and inspect/eval of its checkpoint, under valgrind memcheck: no memory
# errors and no definite leaks in our code. valgrind cannot run AVX-512 code, so this
# uses the generic x86-64 build (make ARCH=x86-64), which also exercises the portable path
# of the kernels. Leaks inside Open MPI's start-up and shut-down are suppressed
# (tests/valgrind-mpi.supp, plus the suppressions Open MPI ships).
source "$(dirname "$0")/../lib.sh"
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$ROOT" ARCH=x86-64 > "$T/make.log" 2>&1 || { cat "$T/make.log"; fail "generic build"; }
bin=$ROOT/build/x86-64/mlp
cfg=$(small_config vg)
supp=(--suppressions="$ROOT/tests/valgrind-mpi.supp")
[ -f /usr/share/openmpi/openmpi-valgrind.supp ] && supp+=(--suppressions=/usr/share/openmpi/openmpi-valgrind.supp)
vg() {   # name, command...
    local name=$1 rc=0
    shift
    OMP_NUM_THREADS=2 valgrind --num-callers=60 --leak-check=full --errors-for-leak-kinds=definite \
        --error-exitcode=99 "${supp[@]}" "$@" > "$T/$name.out" 2> "$T/$name.err" || rc=$?
    grep -E 'ERROR SUMMARY|definitely lost' "$T/$name.err" | sed "s/^/$name: /"
    [ $rc -eq 0 ] || { tail -n 60 "$T/$name.err"; fail "$name: valgrind status $rc"; }
}
vg train "$bin" "$cfg" --set train.epochs=1 --set data.train_limit=500
vg inspect "$bin" inspect "$T/vg/ckpt/latest.h5"
vg eval "$bin" eval "$T/vg/ckpt/latest.h5" "$cfg"
