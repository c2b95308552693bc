# The pixels are held once per node (an MPI shared-memory window), not once per rank:
# (a) at -np 4 the node's total memory (the ranks' PSS summed, from mlp's `memory:` line)
# grows by much less than a copy of the pixels per extra rank, no rank holds a private
# copy, and the results are bitwise those of -np 1; (b) a rank whose files differ in size
# from rank 0's is refused; (c) an error while the leader fills the window (after it was
# made) still ends every rank promptly with the one-line error; (d) a shared-memory
# directory that is missing or too small is a one-line error, not a hang.
source "$(dirname "$0")/../lib.sh"
mnist=$ROOT/data/mnist
over=()
[ "$(nproc)" -lt 4 ] && over=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && over+=(--allow-run-as-root)

sets=(--set data.train_limit=2000 --set train.epochs=1 --set log.progress=off)
# One copy of the pixels, train then test, in MiB.
pixels=$(( $(stat -c %s "$mnist/train-images-idx3-ubyte") + $(stat -c %s "$mnist/t10k-images-idx3-ubyte") ))
copy=$(awk -v b=$pixels 'BEGIN { printf "%.1f", b / 1048576 }')

if [ ! -r /proc/self/smaps_rollup ]; then
    echo "SKIP (a): no /proc/self/smaps_rollup, so mlp reports no PSS"
else
    note "(a) -np 1 and -np 4: one copy of $copy MiB of pixels per node"
    declare -A node priv
    for np in 1 4; do
        d=$T/np$np
        run_np $np configs/mnist.ini "${sets[@]}" --set checkpoint.dir=$d \
            --set log.metrics=$d/m.csv > $d.log 2>&1 || { cat $d.log; fail "-np $np"; }
        line=$(grep '^memory: ' $d.log) || { cat $d.log; fail "-np $np: no memory line"; }
        echo "-np $np: $line"
        # The exact format, which bench/run parses.
        s=s; [ $np -eq 1 ] && s=
        echo "$line" | grep -Eq "^memory: peak RSS [0-9]+\.[0-9] MiB per rank \(max over ranks\); now: private [0-9]+\.[0-9] MiB per rank \(max\), node total \(PSS\) [0-9]+\.[0-9] MiB over $np rank$s$" ||
            fail "-np $np: memory line format"
        node[$np]=$(echo "$line" | sed -n 's/.*node total (PSS) \([0-9.]*\) MiB.*/\1/p')
        priv[$np]=$(echo "$line" | sed -n 's/.*now: private \([0-9.]*\) MiB.*/\1/p')
        grep '^epoch \|^done: ' $d.log | sed 's/  [0-9.]* s .*//; s/checkpoint [^;]*;.*//' > $d.lines
    done
    # Private copies would add a whole copy per extra rank (3 x $copy MiB); shared, each
    # extra rank adds only its model, buffers and libraries (about 8 MiB here). Not under
    # AddressSanitizer (make SAN=1), whose shadow memory adds tens of MiB to every rank.
    # Not `ldd | grep -q`: under pipefail, grep's early exit can kill ldd with SIGPIPE and
    # make the pipeline false (it did, in CI, on the SAN build).
    if [[ $(ldd "$MLP") == *libasan* ]]; then
        echo "SKIP the memory figures: $MLP is built with AddressSanitizer"
    else
        awk -v n1=${node[1]} -v n4=${node[4]} -v c=$copy 'BEGIN { exit !(n4 < n1 + 3 * c / 2 && n4 < 2 * n1) }' ||
            fail "node total at -np 4 is ${node[4]} MiB, -np 1 ${node[1]} MiB: the pixels are not shared ($copy MiB a copy)"
        awk -v p=${priv[4]} -v c=$copy 'BEGIN { exit !(p < c / 2) }' ||
            fail "a rank at -np 4 holds ${priv[4]} MiB privately: a private copy of the $copy MiB of pixels?"
    fi
    [ "$(hashes $T/np4/m.csv)" = "$(hashes $T/np1/m.csv)" ] || fail "param_hash differs at -np 4"
    cmp -s $T/np1.lines $T/np4.lines || { diff $T/np1.lines $T/np4.lines; fail "printed results differ at -np 4"; }
    [ "$(model_sha $T/np4/latest.h5)" = "$(model_sha $T/np1/latest.h5)" ] || fail "/model bytes differ at -np 4"
fi

note "(b) a rank whose training files hold another number of samples than rank 0's"
# The same files less the last sample: valid IDX pairs, smaller by one image and one label.
# (head first, then tail, which reads to the end: `tail | head -c` would end tail with
# SIGPIPE, now and then, and the script with it under pipefail.)
{ printf '\x00\x00\x08\x03\x00\x00\xea\x5f'; head -c $((16 + 59999 * 784)) "$mnist/train-images-idx3-ubyte" | tail -c +9; } > $T/img59999
{ printf '\x00\x00\x08\x01\x00\x00\xea\x5f'; head -c $((8 + 59999)) "$mnist/train-labels-idx1-ubyte" | tail -c +9; } > $T/lab59999
cfg=$(small_config b)
rc=0
timeout 60 mpirun "${over[@]}" -np 1 "$MLP" "$cfg" : -np 1 "$MLP" "$cfg" \
    --set data.train_images=$T/img59999 --set data.train_labels=$T/lab59999 > $T/b.log 2> $T/b.err || rc=$?
grep mlp $T/b.err || true
[ $rc -eq 1 ] || fail "(b) exit status $rc, expected 1"
grep -q "^mlp: \[rank 1\] error: $T/img59999, $T/lab59999: content differs from rank 0's (59999 samples of 784 pixels, rank 0 has 60000 of 784)" $T/b.err ||
    fail "(b) message"

note "(c) the leader's file fails after the window is made (a trailing byte)"
{ cat "$mnist/train-images-idx3-ubyte"; printf '\x00'; } > $T/long-images
rc=0 start=$SECONDS
timeout 60 mpirun "${over[@]}" -np 1 "$MLP" "$cfg" --set data.train_images=$T/long-images : \
    -np 2 "$MLP" "$cfg" > $T/c.log 2> $T/c.err || rc=$?
grep mlp $T/c.err || true
[ $rc -eq 1 ] || fail "(c) exit status $rc, expected 1"
[ $((SECONDS - start)) -lt 30 ] || fail "(c) took $((SECONDS - start)) s"
grep -q "^mlp: \[rank 0\] error: $T/long-images: 1 trailing bytes after the 47040000 bytes of pixel data" $T/c.err ||
    fail "(c) message"
[ "$(grep -c 'error' $T/c.err)" -eq 1 ] || fail "(c) more than one error line"

note "(d) Open MPI's shared-memory directory missing, or too small for the pixels"
mounted=
trap '[ -n "$mounted" ] && umount "$mounted"; rm -rf "$T"' EXIT
cases=("$T/no-such-dir:is not usable: No such file or directory")
mkdir $T/small
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=8m tmpfs $T/small 2>/dev/null; then
    mounted=$T/small
    cases+=("$T/small:has [0-9]* bytes free; make it larger")
else
    echo "SKIP the small directory: cannot mount a tmpfs (not root)"
fi
for c in "${cases[@]}"; do
    dir=${c%%:*} want=${c#*:} rc=0 start=$SECONDS
    OMPI_MCA_osc_sm_backing_directory=$dir timeout 60 "$ROOT/scripts/mpirun-local" -np 3 "$MLP" \
        "$cfg" > $T/d.log 2> $T/d.err || rc=$?
    grep mlp $T/d.err || true
    [ $rc -eq 1 ] || fail "(d) $dir: exit status $rc, expected 1 (124: a hang)"
    grep -q "^mlp: \[rank 0\] error: cannot share [0-9]* bytes between the ranks of this node: $dir, where Open MPI keeps shared memory (osc_sm_backing_directory), $want" $T/d.err ||
        fail "(d) $dir: message"
done
