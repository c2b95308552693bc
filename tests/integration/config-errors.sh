# Every config error class: one line naming file:line (or --set) and the key, exit status 1,
# on every rank under mpirun, no hang; an existing checkpoint is never touched.
source "$(dirname "$0")/../lib.sh"
cfg=$(small_config cfg)
ck=$T/cfg/ckpt
mkdir -p "$ck"
echo precious > "$ck/latest.h5"
sed "s|^dir = .*|dir = $ck|" "$cfg" > "$T/good.ini"

# expect NAME EXPECTED-SUBSTRING mlp-args...
expect() {
    local name=$1 want=$2 rc=0
    shift 2
    timeout 60 "$ROOT/scripts/mpirun-local" -np 2 "$MLP" "$@" > "$T/$name.out" 2> "$T/$name.err" || rc=$?
    [ $rc -eq 1 ] || { cat "$T/$name.err"; fail "$name: exit status $rc, expected 1"; }
    local lines
    lines=$(grep -c '^mlp: \[rank' "$T/$name.err" || true)
    [ "$lines" -eq 1 ] || { cat "$T/$name.err"; fail "$name: $lines error lines, expected 1"; }
    grep -qF -- "$want" "$T/$name.err" || { cat "$T/$name.err"; fail "$name: message lacks '$want'"; }
    note "$name: $(grep '^mlp: \[rank' "$T/$name.err")"
}
# bad NAME LINE-TO-APPEND-TO-SECTION SECTION EXPECTED
bad() {
    local name=$1 line=$2 section=$3 want=$4
    awk -v s="[$section]" -v l="$line" '{print} $0==s {print l}' "$T/good.ini" > "$T/$name.ini"
    expect "$name" "$T/$name.ini$want" "$T/$name.ini"
}
bad unknown-key   "bogus = 1"        train ":11: unknown key 'bogus' in [train]"
bad malformed     "lr = abc"         train ":11: [train] lr = 'abc'"
bad trailing-junk "epochs = 3x"      train ":11: [train] epochs = '3x'"
bad out-of-range  "hidden = 0"       model ":8: [model] hidden = '0'"
bad bad-enum      "reduce = sloppy"  train ":11: [train] reduce = 'sloppy'"
bad duplicate     "epochs = 4"       train ":12: [train] epochs"
bad lr-subnormal  "lr = 1e-40"       train ":11: [train] lr = '1e-40': out of range (1.17549435e-38..1e6"
bad classes       "classes = 1"      model ":8: [model] classes = '1': out of range (0 = from the training labels, or 2..256)"
bad bad-bool      "overwrite = yes"  checkpoint ":16: [checkpoint] overwrite = 'yes': must be true or false"
# A NUL used to end the line unseen: this trained with hidden = 16.
{ head -n 7 "$T/good.ini"; printf 'hidden = 16\0garbage\n'; tail -n +8 "$T/good.ini"; } > "$T/nul.ini"
expect nul "$T/nul.ini:8: control character 0x00 at column 12" "$T/nul.ini"
printf '[bogus]\nx = 1\n' | cat "$T/good.ini" - > "$T/section.ini"
expect unknown-section "$T/section.ini:21: unknown section [bogus]" "$T/section.ini"
expect missing-file "$T/nope.ini" "$T/nope.ini"
# Not a regular file: refused at once (a FIFO with no writer used to hang the start-up).
mkfifo "$T/fifo.ini"
expect fifo "$T/fifo.ini: cannot read config: a FIFO, not a regular file" "$T/fifo.ini"
expect directory "$T/cfg: cannot read config: a directory, not a regular file" "$T/cfg"
expect set-malformed "--set train.lr=-1" "$T/good.ini" --set train.lr=-1
expect set-shape "--set trainlr" "$T/good.ini" --set trainlr
expect set-control "--set train.epochs=3?: control character 0x0A at column 15" "$T/good.ini" \
    --set "train.epochs=3
"
[ "$(cat "$ck/latest.h5")" = precious ] || fail "a bad config touched the checkpoint directory"
[ "$(ls "$ck")" = latest.h5 ] || fail "a bad config wrote into the checkpoint directory"

note "every shipped configuration loads, and what the docs say of each holds"
for f in "$ROOT"/configs/*.ini; do
    "$MLP" config "$f" > "$T/shipped.ini" 2> "$T/shipped.err" || { cat "$T/shipped.err"; fail "$f does not load"; }
done
"$MLP" config "$ROOT/configs/mnist.ini" | grep -q '^chunk = 4$' || fail "configs/mnist.ini: chunk is not 4"
"$MLP" config "$ROOT/configs/mnist-elastic.ini" | grep -q '^epochs = 250$' || fail "mnist-elastic.ini: not 250 epochs"
