# What a user sees under mpirun with output piped to a file (as under SLURM): rank 0 alone
# prints a plain progress line every log.progress_seconds (0: after every step) with the
# step, samples/s, running loss and ETA; log.progress = off silences it; messages number
# epochs as the progress lines do, with correct plurals; a missing relative path names the
# directory it was resolved against.
source "$(dirname "$0")/../lib.sh"
cfg=$(small_config prog)
sed -i '/^metrics = /d' "$cfg"   # each run's metrics in its own run directory
# 600 samples, batch 50: 12 steps an epoch.
run_np 2 "$cfg" --set data.train_limit=600 --set train.epochs=2 --set log.progress=auto \
    --set log.progress_seconds=0 > "$T/out" 2> "$T/err" || { cat "$T/out" "$T/err"; fail "run"; }
lines=$(grep -c '^progress: epoch [12]/2  step [0-9]*/12 ([0-9]*%)  [0-9]* samples/s  loss [0-9.]*  ETA [0-9:]* (run [0-9:]*)$' "$T/err" || true)
[ "$lines" -eq 24 ] || { cat "$T/err"; fail "expected 24 progress lines (12 steps x 2 epochs, rank 0 only), got $lines"; }
grep -q '^progress: epoch 2/2  step 12/12 (100%)' "$T/err" || fail "no last-step line"
! grep -q $'\r' "$T/err" || fail "carriage returns in a piped log"
grep -q '^done: test accuracy .* after 2 epochs;' "$T/out" || fail "final line: $(grep done "$T/out")"

note "off: silent"
run_np 2 "$cfg" --set data.train_limit=600 --set train.epochs=1 --set log.progress=off \
    --set log.progress_seconds=0 --set checkpoint.dir="$T/prog/off" > "$T/out2" 2> "$T/err2" ||
    { cat "$T/out2" "$T/err2"; fail "run (off)"; }
! grep -q '^progress' "$T/err2" || fail "progress = off printed progress"
grep -q '^done: test accuracy .* after 1 epoch;' "$T/out2" || fail "plural: $(grep done "$T/out2")"

note "a stop by signal names the epoch and step as the progress line does"
# mpirun itself in the background (mpirun-local execs it), so that $! is mpirun's PID
"$ROOT/scripts/mpirun-local" -np 1 "$MLP" "$cfg" --set data.train_limit=0 --set train.epochs=3 --set log.progress=on \
    --set log.progress_seconds=0 \
    --set checkpoint.dir="$T/prog/sig" > "$T/out3" 2> "$T/err3" &
pid=$!
for _ in $(seq 600); do grep -q '^progress: epoch 1/3  step 2[0-9]/' "$T/err3" 2> /dev/null && break; sleep 0.05; done
kill -USR1 $pid
wait $pid || fail "stopped run: exit status $?"
last=$(grep '^progress:' "$T/err3" | tail -n 1 | sed -n 's|^progress: epoch \([0-9]*\)/3  step \([0-9]*\)/1200 .*|\1 \2|p')
stop=$(sed -n 's|^mlp: stopped by signal at epoch \([0-9]*\) step \([0-9]*\)/1200 (global step [0-9]*);.*|\1 \2|p' "$T/out3")
[ -n "$stop" ] || fail "stop line: $(grep stopped "$T/out3")"
[ "$stop" = "$last" ] || fail "the stop line says '$stop', the last progress line '$last'"
run_np 1 "$cfg" --set data.train_limit=0 --set train.epochs=1 \
    --set checkpoint.resume=auto --set checkpoint.dir="$T/prog/sig" > "$T/out4" 2>&1 || true
read -r e st <<< "$stop"
grep -q "^resuming from $T/prog/sig/latest.h5: at epoch $e step $st/1200 " "$T/out4" ||
    fail "resume line: $(grep resuming "$T/out4")"

note "a missing relative path names the directory it was resolved against"
rc=0
(cd "$T" && "$MLP" "$cfg" --set data.train_images=data/nope --set checkpoint.dir="$T/prog/rel") \
    > /dev/null 2> "$T/rel.err" || rc=$?
[ $rc -eq 1 ] || fail "missing relative path: exit status $rc"
grep -qF "data/nope: cannot open: No such file or directory (relative to $T)" "$T/rel.err" ||
    fail "no directory named: $(cat "$T/rel.err")"
