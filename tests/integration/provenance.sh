# Which binary, on which CPU: `mlp --version` prints the commit, compiler, flags, ARCH and
# kernel ISA; every checkpoint records the same plus the CPU model and the launch; resuming
# from a checkpoint of another binary or CPU warns that the bits may differ; a checkpoint
# without these attributes (an older mlp's) still loads; resuming with another train.chunk
# warns. `mlp config` prints the resolved configuration that a run saves as DIR/config.ini.
source "$(dirname "$0")/../lib.sh"
cfg=$(small_config prov)
sed -i '/^metrics = /d' "$cfg"
"$MLP" --version > "$T/version"
cat "$T/version"
for field in commit compiler flags arch kernels; do
    grep -q "^  $field  *[^ ]" "$T/version" || fail "--version lacks $field"
done
commit=$(sed -n 's/^  commit  *//p' "$T/version")
isa=$(sed -n 's/^  kernels  *//p' "$T/version")
[ "$commit" != unknown ] || fail "--version: no commit in a git checkout"

"$MLP" config "$cfg" --set train.lr=0.25 > "$T/config.ini"
grep -q '^lr = 0.25$' "$T/config.ini" || fail "mlp config: $(cat "$T/config.ini")"
rc=0; "$MLP" config "$cfg" --set train.lr=abc 2> "$T/config.err" || rc=$?
[ $rc -eq 1 ] || fail "mlp config with a bad value: exit status $rc"

D=$T/prov/run
run_np 2 "$cfg" --set checkpoint.dir="$D" --set train.epochs=1 --set data.train_limit=500 > "$T/run.out"
grep -q "^mlp .*, ISA $isa\$" "$T/run.out" || fail "banner ISA: $(head -n 1 "$T/run.out")"
grep -q "^build: commit $commit, -O" "$T/run.out" || fail "banner: $(grep build "$T/run.out")"
grep -q "^config: $cfg resolved into $D/config.ini" "$T/run.out" || fail "banner config line"
! grep -q '^lr = ' "$T/run.out" || fail "the resolved config is printed on every run"
cmp <("$MLP" config "$cfg" --set checkpoint.dir="$D" --set train.epochs=1 --set data.train_limit=500) \
    "$D/config.ini" || fail "DIR/config.ini differs from mlp config's"
$PY - "$D/latest.h5" "$commit" "$isa" <<'PY' || fail "checkpoint provenance"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
a = f.attrs
assert a["build_commit"] == sys.argv[2], a["build_commit"]
assert a["build_isa"] == sys.argv[3], a["build_isa"]
assert a["build_compiler"] and a["build_flags"] and a["cpu_model"], dict(a)
assert a["nodes"] == 1 and a["ranks"] == 2, (a["nodes"], a["ranks"])
PY

note "a checkpoint from another binary: resuming warns"
$PY - "$D/latest.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    f.attrs["build_commit"] = "0123456789ab"
PY
"$MLP" reseal "$D/latest.h5" > /dev/null || fail "reseal"
run_np 1 "$cfg" --set checkpoint.dir="$D" --set train.epochs=2 --set data.train_limit=500 \
    --set checkpoint.resume=auto > "$T/resume.out" || fail "resume"
grep -q "^warning: resuming on another binary (commit) than $D/latest.h5 was written by (commit 0123456789ab, " "$T/resume.out" ||
    fail "no warning: $(grep -i warn "$T/resume.out")"

note "a checkpoint of an older mlp (no provenance attributes) loads, and resuming warns"
E=$T/prov/old
run_np 1 "$cfg" --set checkpoint.dir="$E" --set train.epochs=1 --set data.train_limit=500 > /dev/null
$PY - "$E/latest.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    for k in ("build_commit", "build_compiler", "build_flags", "build_isa", "cpu_model", "nodes"):
        del f.attrs[k]
PY
"$MLP" reseal "$E/latest.h5" > /dev/null || fail "reseal (old)"
"$MLP" inspect "$E/latest.h5" > "$T/inspect-old" || fail "inspect of an older file"
run_np 1 "$cfg" --set checkpoint.dir="$E" --set train.epochs=2 --set data.train_limit=500 \
    --set checkpoint.resume=auto > "$T/resume-old.out" || fail "resume (old)"
grep -q "^warning: resuming on another binary (commit) than .*(commit unrecorded" "$T/resume-old.out" ||
    fail "no warning (old): $(grep -i warn "$T/resume-old.out")"
note "no warning when nothing changed"
run_np 1 "$cfg" --set checkpoint.dir="$E" --set train.epochs=3 --set data.train_limit=500 \
    --set checkpoint.resume=auto > "$T/resume-same.out" || fail "resume (same)"
! grep -q "^warning: resuming on another" "$T/resume-same.out" || fail "a warning for the same binary"

note "another train.chunk than the checkpoint's: resuming warns, naming the way back"
run_np 1 "$cfg" --set checkpoint.dir="$E" --set train.epochs=4 --set data.train_limit=500 \
    --set checkpoint.resume=auto --set train.chunk=5 > "$T/resume-chunk.out" || fail "resume (chunk)"
grep -q "^warning: $E/latest.h5 was trained with train.chunk = 8, this run has 5: .*(set train.chunk = 8 to continue exactly)" \
    "$T/resume-chunk.out" || fail "no chunk warning: $(grep -i warn "$T/resume-chunk.out")"

