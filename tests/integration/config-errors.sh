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
printf '[bogus]\nx = 1\n' | cat "$T/good.ini" - > "$T/section.ini"
expect unknown-section "$T/section.ini:21: unknown section [bogus]" "$T/section.ini"
expect missing-file "$T/nope.ini" "$T/nope.ini"
expect set-malformed "--set train.lr=-1" "$T/good.ini" --set train.lr=-1
expect set-shape "--set trainlr" "$T/good.ini" --set trainlr
[ "$(cat "$ck/latest.h5")" = precious ] || fail "a bad config touched the checkpoint directory"
[ "$(ls "$ck")" = latest.h5 ] || fail "a bad config wrote into the checkpoint directory"
