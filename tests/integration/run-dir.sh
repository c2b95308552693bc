# One run per directory, nothing lost. A finished run's directory is hit with every hostile
# case we know (a second fresh run, a bad config, a resume from elsewhere, "nothing to
# train", a FIFO as metrics file, ...) and the bytes of its files are compared before and
# after each. Then: the lock (a second run at once is refused naming the holder; a SIGKILL'd
# holder blocks nothing), a checkpoint.dir that cannot be used is refused before training,
# resume = auto falls back to the newest loadable file, rows after the resume point are set
# aside, a partial last line is dropped from the file, a symlinked metrics file is written
# through, and checkpoint.overwrite replaces the old run when asked to.
source "$(dirname "$0")/../lib.sh"
cfg=$(small_config rd)
export OMP_NUM_THREADS=1
# small_config writes metrics beside ckpt/; the run directory holds them here.
sed -i '/^metrics = /d' "$cfg"
run() { timeout 60 "$MLP" "$cfg" --set train.epochs=2 --set data.train_limit=600 "$@"; }
D=$T/rd/run
snapshot() { (cd "$1" && find . -path ./.lock -prune -o \( -type f -o -type l \) -print0 | sort -z |
              xargs -0 -r sha256sum; find . -type l -printf '%p -> %l\n' | sort); }
# expect_refused NAME WANT args...: exit status 1, one error line holding WANT, D unchanged.
expect_refused() {
    local name=$1 want=$2 rc=0
    shift 2
    "$@" > "$T/$name.out" 2> "$T/$name.err" || rc=$?
    [ $rc -eq 1 ] || { cat "$T/$name.out" "$T/$name.err"; fail "$name: exit status $rc, expected 1"; }
    grep -qF -- "$want" "$T/$name.err" || { cat "$T/$name.err"; fail "$name: message lacks '$want'"; }
    [ "$(snapshot "$D")" = "$before" ] || fail "$name: the finished run's files changed"
    note "$name: $(grep '^mlp:' "$T/$name.err")"
}

note "a finished run"
run --set checkpoint.dir="$D" --set checkpoint.every=1 --set checkpoint.keep=0 > "$T/first.out"
for f in epoch-0001.h5 epoch-0002.h5 latest.h5 metrics.csv config.ini; do
    [ -e "$D/$f" ] || fail "the run directory lacks $f: $(ls -A "$D")"
done
[ "$(tail -n +2 "$D/metrics.csv" | wc -l)" -eq 2 ] || fail "metrics.csv: $(cat "$D/metrics.csv")"
grep -q "^dir = $D\$" "$D/config.ini" || fail "config.ini is not the resolved config"
before=$(snapshot "$D")

expect_refused second-fresh-run "holds another run (2 checkpoints up to epoch-0002.h5, latest.h5, config.ini, $D/metrics.csv with 2 rows)" \
    run --set checkpoint.dir="$D"
grep -qF -- "--set checkpoint.resume=auto" "$T/second-fresh-run.err" || fail "no way on named"
grep -qF -- "--set checkpoint.overwrite=true" "$T/second-fresh-run.err" || fail "no overwrite named"
expect_refused second-fresh-run-np2 "holds another run" \
    timeout 60 "$ROOT/scripts/mpirun-local" -np 2 "$MLP" "$cfg" --set checkpoint.dir="$D"
expect_refused bad-config "train.lr" run --set checkpoint.dir="$D" --set train.lr=abc
mkdir -p "$T/other"
run --set checkpoint.dir="$T/other" --set train.epochs=1 > /dev/null
expect_refused resume-from-elsewhere "holds another run" \
    run --set checkpoint.dir="$D" --set checkpoint.resume="$T/other/latest.h5"
expect_refused overwrite-with-auto "contradict" \
    run --set checkpoint.dir="$D" --set checkpoint.resume=auto --set checkpoint.overwrite=true
mkfifo "$T/fifo"
expect_refused fifo-metrics "log.metrics = $T/fifo: a FIFO, not a regular file" \
    run --set checkpoint.dir="$D" --set checkpoint.resume=auto --set log.metrics="$T/fifo"
: > "$T/plain-file"
expect_refused dir-is-a-file "checkpoint.dir = $T/plain-file exists and is not a directory" \
    run --set checkpoint.dir="$T/plain-file"
expect_refused dir-below-a-file "checkpoint.dir = $T/plain-file/sub: cannot create $T/plain-file/sub: $T/plain-file exists and is not a directory" \
    run --set checkpoint.dir="$T/plain-file/sub"
[ ! -s "$T/plain-file" ] || fail "the file in the way was written"

note "nothing to train: exit 0, no file changed (make run twice)"
run --set checkpoint.dir="$D" --set checkpoint.resume=auto > "$T/nothing.out"
grep -q "^done: nothing to train" "$T/nothing.out" || fail "nothing to train: $(cat "$T/nothing.out")"
[ "$(snapshot "$D")" = "$before" ] || fail "nothing to train changed files"

note "the lock: a second run at once is refused naming the holder; a killed holder blocks nothing"
L=$T/rd/locked
"$MLP" "$cfg" --set checkpoint.dir="$L" --set data.train_limit=0 --set train.epochs=50 \
    > "$T/holder.out" 2>&1 &
holder=$!
for _ in $(seq 600); do grep -q "^pid $holder " "$L/.lock" 2> /dev/null && break; sleep 0.05; done
grep -q "^pid $holder on $(hostname) since " "$L/.lock" || fail "lock file: $(cat "$L/.lock" 2>&1)"
rc=0
"$MLP" "$cfg" --set checkpoint.dir="$L" --set checkpoint.resume=auto > "$T/second.out" 2> "$T/second.err" || rc=$?
[ $rc -eq 1 ] || fail "a second run on a locked directory: exit status $rc"
grep -qF "checkpoint.dir = $L is in use by another run (pid $holder on $(hostname) since" "$T/second.err" ||
    fail "second run: $(cat "$T/second.err")"
kill -KILL $holder
wait $holder 2> /dev/null || true
run --set checkpoint.dir="$L" --set checkpoint.resume=auto --set train.epochs=1 > "$T/after-kill.out" ||
    fail "a run after the holder was killed: $(cat "$T/after-kill.out")"

note "a directory refused at start-up is not left behind"
rc=0
run --set checkpoint.dir="$T/rd/never" --set model.hidden=1048576 --set train.batch=1048576 \
    > /dev/null 2>&1 || rc=$?
[ $rc -eq 1 ] || fail "impossible model: exit status $rc"
[ ! -e "$T/rd/never" ] || fail "a refused run left its directory: $(ls -A "$T/rd/never")"

note "read-only run directory: refused before training"
if [ "$(id -u)" -eq 0 ] && mkdir -p "$T/ro" && mount -t tmpfs -o size=1m,ro tmpfs "$T/ro" 2> /dev/null; then
    rc=0
    run --set checkpoint.dir="$T/ro/x" > "$T/ro.out" 2> "$T/ro.err" || rc=$?
    umount "$T/ro"
    [ $rc -eq 1 ] || fail "read-only: exit status $rc"
    grep -q "Read-only file system" "$T/ro.err" || fail "read-only: $(cat "$T/ro.err")"
    ! grep -q "^epoch" "$T/ro.out" || fail "read-only: trained before failing"
else
    note "(not root: no read-only mount here; the unit of this case is root-only)"
fi

note "resume = auto falls back when latest.h5 is missing, dangling or damaged"
R=$T/rd/fallback
cp -a "$D" "$R"
rm "$R/latest.h5"
sed -i "s|^dir = .*|dir = $R|" "$R/config.ini"
run --set checkpoint.dir="$R" --set checkpoint.resume=auto --set train.epochs=3 > "$T/fb1.out"
grep -qF "resume: $R/latest.h5: missing; resuming from $R/epoch-0002.h5, the newest checkpoint that loads" "$T/fb1.out" ||
    fail "fallback (missing): $(grep resum "$T/fb1.out")"
ln -sfn epoch-0009.h5 "$R/latest.h5"                     # dangling
run --set checkpoint.dir="$R" --set checkpoint.resume=auto --set train.epochs=4 > "$T/fb2.out"
grep -q "^resuming from $R/epoch-0003.h5" "$T/fb2.out" || fail "fallback (dangling): $(grep resum "$T/fb2.out")"
[ "$(tail -n +2 "$R/metrics.csv" | cut -d, -f1 | tr '\n' ' ')" = "1 2 3 4 " ] || fail "metrics after fallbacks: $(cat "$R/metrics.csv")"
for f in "$R"/epoch-*.h5; do printf 'garbage' | dd of="$f" bs=1 seek=600 conv=notrunc 2> /dev/null; done
before_r=$(snapshot "$R")
rc=0
run --set checkpoint.dir="$R" --set checkpoint.resume=auto --set train.epochs=5 > /dev/null 2> "$T/fb3.err" || rc=$?
[ $rc -eq 1 ] || fail "no checkpoint loads: exit status $rc"
grep -q "holds checkpoints but none of the .* loads" "$T/fb3.err" || fail "no checkpoint loads: $(cat "$T/fb3.err")"
[ "$(snapshot "$R")" = "$before_r" ] || fail "a refused resume changed files"

note "rows after the resume point and a partial last line are set aside, not deleted"
S=$T/rd/aside
cp -a "$D" "$S"
sed -i "s|^dir = .*|dir = $S|" "$S/config.ini"
ln -sfn epoch-0001.h5 "$S/latest.h5"
printf '3,0.1,0.9,0.9,1.0,1.0,0123456789abcdef\n4,0.1' >> "$S/metrics.csv"
tail -n +3 "$S/metrics.csv" > "$T/later-rows"
run --set checkpoint.dir="$S" --set checkpoint.resume=auto > "$T/aside.out"
aside=$(ls "$S"/metrics.csv.aside-*)
grep -qF "metrics: rows after epoch 1 (from a run that went on past its last checkpoint) moved to $aside" "$T/aside.out" ||
    fail "no aside message: $(cat "$T/aside.out")"
[ "$(tail -n +2 "$aside")" = "$(cat "$T/later-rows")" ] || fail "aside file: $(cat "$aside")"
[ "$(tail -n +2 "$S/metrics.csv" | cut -d, -f1 | tr '\n' ' ')" = "1 2 " ] || fail "metrics: $(cat "$S/metrics.csv")"
[ "$(sed -n 3p "$S/metrics.csv" | cut -d, -f1-4,7)" = "$(sed -n 3p "$D/metrics.csv" | cut -d, -f1-4,7)" ] || fail "epoch 2 differs from the uninterrupted run's"
note "checkpoints of later places than the resume point are moved aside, not overwritten"
grep -q "^checkpoints: 1 file of later places than the resume point moved aside ($S/epoch-0002.h5.aside-" "$T/aside.out" ||
    fail "no checkpoint set aside: $(grep -i aside "$T/aside.out")"
cmp "$S"/epoch-0002.h5.aside-* "$D/epoch-0002.h5" || fail "the set-aside checkpoint is not the old run's"
[ "$(model_sha "$S/epoch-0002.h5")" = "$(model_sha "$D/epoch-0002.h5")" ] || fail "the resumed run's epoch 2 differs"

note "a symlinked metrics file is written through"
Y=$T/rd/link
cp -a "$D" "$Y"
sed -i "s|^dir = .*|dir = $Y|" "$Y/config.ini"
ln -sfn epoch-0001.h5 "$Y/latest.h5"
mv "$Y/metrics.csv" "$T/real-metrics.csv"
ln -s "$T/real-metrics.csv" "$Y/metrics.csv"
run --set checkpoint.dir="$Y" --set checkpoint.resume=auto > /dev/null
[ -L "$Y/metrics.csv" ] || fail "the metrics symlink was replaced by a file"
[ "$(tail -n +2 "$T/real-metrics.csv" | cut -d, -f1 | tr '\n' ' ')" = "1 2 " ] || fail "target: $(cat "$T/real-metrics.csv")"

note "checkpoint.overwrite = true replaces the previous run"
O=$T/rd/over
cp -a "$D" "$O"
run --set checkpoint.dir="$O" --set checkpoint.overwrite=true --set train.epochs=1 > "$T/over.out"
grep -q "^checkpoint.overwrite: replaced the previous run in $O (4 files removed" "$T/over.out" ||
    fail "overwrite message: $(cat "$T/over.out")"
[ "$(ls "$O" | tr '\n' ' ')" = "config.ini epoch-0001.h5 latest.h5 metrics.csv " ] || fail "after overwrite: $(ls "$O")"
[ "$(tail -n +2 "$O/metrics.csv" | wc -l)" -eq 1 ] || fail "overwrite kept old rows: $(cat "$O/metrics.csv")"
note "checkpoint.overwrite with a resume from another directory: the old run goes, the new continues"
P=$T/rd/over-path
cp -a "$D" "$P"
run --set checkpoint.dir="$P" --set checkpoint.overwrite=true --set train.epochs=2 \
    --set checkpoint.resume="$T/other/latest.h5" > "$T/over-path.out"
grep -q "^resuming from $T/other/latest.h5: after epoch 1 " "$T/over-path.out" || fail "did not resume: $(cat "$T/over-path.out")"
[ "$(ls "$P" | tr '\n' ' ')" = "config.ini epoch-0002.h5 latest.h5 metrics.csv " ] || fail "after overwrite + resume: $(ls "$P")"
[ "$(tail -n +2 "$P/metrics.csv" | cut -d, -f1 | tr '\n' ' ')" = "2 " ] || fail "metrics mixed two runs: $(cat "$P/metrics.csv")"
[ "$(snapshot "$D")" = "$before" ] || fail "the first run's files changed"
echo "run-dir: all cases passed"
