# Fuzz regressions without clang: the three fuzz harnesses, built with the normal compiler
# and flags as build/fuzz/replay (build/san/fuzz/replay under `make SAN=1 test`), run on
# every seed (fuzz/corpus/) and every input the fuzzers found (fuzz/regressions/), one
# process per input. Each must end with status 0 (a broken invariant aborts), and where
# fuzz/regressions/expected names a message, the loader must give it.
source "$(dirname "$0")/../lib.sh"
# The make that runs the tests exports its command-line variables (SAN=1) in MAKEFLAGS,
# so this builds the same variant.
replay=$(make -s --no-print-directory fuzz-replay | tail -n 1)
[ -x "$replay" ] || fail "make fuzz-replay did not build the replay driver ($replay)"
expected=fuzz/regressions/expected
n=0
for t in config idx checkpoint h5data; do
    inputs=(fuzz/corpus/$t/* fuzz/regressions/$t/*)
    [ -e "${inputs[0]}" ] || fail "no seeds in fuzz/corpus/$t"
    for f in "${inputs[@]}"; do
        [ -e "$f" ] || continue
        rc=0
        FUZZ_VERBOSE=1 timeout 60 "$replay" "$t" "$f" > "$T/out" 2>&1 || rc=$?
        [ $rc -eq 0 ] || { cat "$T/out"; fail "$f: replay exit status $rc"; }
        n=$((n + 1))
    done
done
# Each line: PATH (under fuzz/regressions/) then the text its outcome must contain.
while read -r path want; do
    case $path in ''|'#'*) continue ;; esac
    [ -f "fuzz/regressions/$path" ] || fail "$expected names a missing input: $path"
    FUZZ_VERBOSE=1 "$replay" "${path%%/*}" "fuzz/regressions/$path" > "$T/out" 2>&1 ||
        { cat "$T/out"; fail "$path: replay failed"; }
    grep -qF -- "$want" "$T/out" || { cat "$T/out"; fail "$path: expected '$want'"; }
    note "$path: $want"
done < "$expected"
note "$n inputs replayed"
