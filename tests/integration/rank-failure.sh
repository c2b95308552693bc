# An error on ONE rank only (its data path unreadable) ends every rank promptly with exit
# status 1 and one message naming that rank. mpirun's MPMD form gives rank 3 another path.
source "$(dirname "$0")/../lib.sh"
cfg=$(small_config fail)
np=4
over=()
[ "$(nproc)" -lt $np ] && over=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && over+=(--allow-run-as-root)
start=$SECONDS rc=0
timeout 60 mpirun "${over[@]}" -np 3 "$MLP" "$cfg" : -np 1 "$MLP" "$cfg" \
    --set data.test_images=$T/missing-images > "$T/out" 2> "$T/err" || rc=$?
took=$((SECONDS - start))
cat "$T/err"
[ $rc -eq 1 ] || fail "exit status $rc, expected 1"
[ $took -le 20 ] || fail "took ${took}s to end"
grep -q "^mlp: \[rank 3\] error: $T/missing-images" "$T/err" || fail "no message from rank 3"
[ "$(grep -c '^mlp: \[rank' "$T/err")" -eq 1 ] || fail "expected exactly one error line"
[ ! -e "$T/fail/ckpt" ] || fail "a failed start wrote a checkpoint"
