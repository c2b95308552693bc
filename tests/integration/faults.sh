# Fault injection under mpirun -np 4: (a) SIGKILL of one rank mid-training ends the job
# within 10 s with a non-zero status, and latest.h5 loads and resumes; (b) a full disk (at
# start-up: the probe file; at checkpoint time: the save) and
# (c) a read-only checkpoint directory are clear errors that leave the
# previous checkpoint intact; (d) one rank reading different data under the same path is
# caught at start-up by the checksum agreement.
source "$(dirname "$0")/../lib.sh"
cfg=$(small_config f)
mounted=()
cleanup() { for m in "${mounted[@]}"; do umount "$m" 2>/dev/null || true; done; rm -rf "$T"; }
trap cleanup EXIT

note "(a) SIGKILL of one rank"
"$ROOT/scripts/mpirun-local" -np 4 "$MLP" "$cfg" --set data.train_limit=0 --set train.epochs=5 \
    --set checkpoint.every_steps=200 --set checkpoint.dir=$T/a --set log.metrics=$T/a/m.csv \
    > $T/a.log 2>&1 &
pid=$!
for _ in $(seq 600); do [ -e $T/a/latest.h5 ] && break; sleep 0.05; done
[ -e $T/a/latest.h5 ] || fail "(a) no mid-epoch checkpoint appeared"
victim=$(pgrep -P $pid | sed -n 2p)
start=$SECONDS rc=0
kill -KILL "$victim"
wait $pid || rc=$?
took=$((SECONDS - start))
tail -n 12 $T/a.log
[ $rc -ne 0 ] || fail "(a) exit status 0 after a rank was killed"
[ $took -le 10 ] || fail "(a) the job took ${took}s to end"
grep -qi "signal 9\|killed" $T/a.log || fail "(a) no message about the killed rank"
"$MLP" inspect $T/a/latest.h5 > /dev/null || fail "(a) latest.h5 does not load"
"$ROOT/scripts/mpirun-local" -np 2 "$MLP" "$cfg" --set data.train_limit=0 --set train.epochs=1 \
    --set checkpoint.resume=auto --set checkpoint.dir=$T/a --set log.metrics=$T/a/m.csv \
    > $T/a2.log 2>&1 || { cat $T/a2.log; fail "(a) resume after the kill"; }
grep '^resuming' $T/a2.log || fail "(a) did not resume"

# (b), (c): a small file system of our own when we may mount one (root), else permissions.
fs=$T/fs
mkdir -p $fs
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=2m tmpfs $fs 2>/dev/null; then
    mounted+=($fs)
    note "(b) full disk at checkpoint time (2 MiB tmpfs)"
    "$ROOT/scripts/mpirun-local" -np 4 "$MLP" "$cfg" --set train.epochs=1 --set checkpoint.dir=$fs/ck \
        --set log.metrics=$T/b.csv > $T/b1.log 2>&1 || { cat $T/b1.log; fail "(b) first run"; }
    good=$(model_sha $fs/ck/latest.h5)
    dd if=/dev/zero of=$fs/filler bs=64k 2>/dev/null || true   # fill what is left
    rc=0
    note "(b) a full disk is found at start-up, before any training (the probe file)"
    "$ROOT/scripts/mpirun-local" -np 4 "$MLP" "$cfg" --set train.epochs=2 --set checkpoint.resume=auto \
        --set checkpoint.dir=$fs/ck --set log.metrics=$T/b.csv > $T/b2.log 2> $T/b2.err || rc=$?
    grep mlp $T/b2.err || true
    [ $rc -eq 1 ] || fail "(b) exit status $rc, expected 1"
    grep -q "^mlp: \[rank 0\] error: .*No space left on device" $T/b2.err || fail "(b) message"
    ! grep -q "^epoch" $T/b2.log || fail "(b) trained before finding the disk full"
    note "(b) room for the probe but not for a checkpoint: the save fails, nothing is left half-written"
    truncate -s -16K $fs/filler
    rc=0
    "$ROOT/scripts/mpirun-local" -np 4 "$MLP" "$cfg" --set train.epochs=2 --set checkpoint.resume=auto \
        --set checkpoint.dir=$fs/ck --set log.metrics=$T/b.csv > $T/b3.log 2> $T/b3.err || rc=$?
    grep mlp $T/b3.err || true
    [ $rc -eq 1 ] || fail "(b) exit status $rc, expected 1"
    grep -q "^epoch   2/2" $T/b3.log || fail "(b) the run did not get to its checkpoint"
    grep -q "^mlp: \[rank 0\] error: .*No space left on device" $T/b3.err || fail "(b) message at save"
    [ "$(model_sha $fs/ck/latest.h5)" = "$good" ] || fail "(b) previous checkpoint changed"
    [ -z "$(ls -A $fs/ck | grep -v '^epoch-0001.h5$\|^latest.h5$\|^config.ini$\|^.lock$')" ] || fail "(b) leftovers: $(ls -A $fs/ck)"
    rm -f $fs/filler
    note "(c) read-only checkpoint directory"
    mount -o remount,ro $fs
    want="Read-only file system"
else
    note "(c) unwritable checkpoint directory (not root: permissions)"
    "$ROOT/scripts/mpirun-local" -np 4 "$MLP" "$cfg" --set train.epochs=1 --set checkpoint.dir=$fs/ck \
        --set log.metrics=$T/b.csv > $T/b1.log 2>&1 || { cat $T/b1.log; fail "(c) first run"; }
    good=$(model_sha $fs/ck/latest.h5)
    chmod 555 $fs/ck
    want="Permission denied"
fi
rc=0
"$ROOT/scripts/mpirun-local" -np 4 "$MLP" "$cfg" --set train.epochs=2 --set checkpoint.resume=auto \
    --set checkpoint.dir=$fs/ck --set log.metrics=$T/c.csv > $T/c.log 2> $T/c.err || rc=$?
grep mlp $T/c.err || true
[ $rc -eq 1 ] || fail "(c) exit status $rc, expected 1"
grep -q "^mlp: \[rank 0\] error: .*$want" $T/c.err || fail "(c) message"
[ "$(model_sha $fs/ck/latest.h5)" = "$good" ] || fail "(c) previous checkpoint changed"

note "(d) one rank's data differs"
cp "$ROOT/data/mnist/t10k-images-idx3-ubyte" $T/other-images
printf '\x01' | dd of=$T/other-images bs=1 seek=5000 conv=notrunc 2>/dev/null
over=()
[ "$(nproc)" -lt 4 ] && over=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && over+=(--allow-run-as-root)
rc=0
timeout 60 mpirun "${over[@]}" -np 3 "$MLP" "$cfg" : -np 1 "$MLP" "$cfg" \
    --set data.test_images=$T/other-images > $T/d.log 2> $T/d.err || rc=$?
grep mlp $T/d.err || true
[ $rc -eq 1 ] || fail "(d) exit status $rc, expected 1"
grep -q "^mlp: \[rank 3\] error: $T/other-images, .*content differs from rank 0's" $T/d.err ||
    fail "(d) message"

note "(e) a model that cannot fit is refused at start-up with the bytes it needs"
rc=0
timeout 60 "$ROOT/scripts/mpirun-local" -np 2 "$MLP" "$cfg" --set model.hidden=1048576 \
    --set train.batch=1048576 --set checkpoint.dir=$T/e > $T/e.log 2> $T/e.err || rc=$?
grep mlp $T/e.err || true
[ $rc -eq 1 ] || fail "(e) exit status $rc, expected 1"
grep -q "^mlp: \[rank 0\] error: \[model\] hidden = 1048576 with \[train\] batch = 1048576 needs [0-9]* bytes per rank" $T/e.err ||
    fail "(e) message"
[ ! -e $T/e ] || fail "(e) wrote a checkpoint directory"
