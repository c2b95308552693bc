# Shared helpers for the integration tests (sourced, not run). Each test runs from the
# repo root in a private temporary directory that is removed on exit.
# Under pipefail, never pipe into a reader that stops early (`cmd | grep -q`, `cmd | head`):
# when it exits first, cmd dies of SIGPIPE and the pipeline fails now and then. Test a
# captured string ([[ $(cmd) == *x* ]]), or let a reader that reads to the end come last.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
MLP=${MLP:-$ROOT/mlp}
T=$(mktemp -d "${TMPDIR:-/tmp}/mlp-test.XXXXXX")
trap 'rm -rf "$T"' EXIT
PY=/usr/bin/python3   # Debian's python, which has h5py (python3-h5py)
# Under `make SAN=1 test`: LeakSanitizer's exit-time scan crashes inside Open MPI's
# progress threads, so leaks are left to the valgrind test (tests/integration/valgrind.sh);
# AddressSanitizer and UBSan stay on.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "--- $*"; }

# mpirun with the local launch flags. Usage: run_np N [mlp args...]
run_np() { local np=$1; shift; "$ROOT/scripts/mpirun-local" -np "$np" "$MLP" "$@"; }

# A small, fast configuration writing into $T/$1 (MNIST subset, few epochs).
small_config() {
    local dir=$T/$1
    mkdir -p "$dir"
    cat > "$dir/small.ini" <<INI
[data]
train_images = $ROOT/data/mnist/train-images-idx3-ubyte
train_labels = $ROOT/data/mnist/train-labels-idx1-ubyte
test_images = $ROOT/data/mnist/t10k-images-idx3-ubyte
test_labels = $ROOT/data/mnist/t10k-labels-idx1-ubyte
train_limit = 3000
[model]
hidden = 32
seed = 7
[train]
epochs = 2
batch = 50
lr = 0.5
chunk = 8
[checkpoint]
dir = $dir/ckpt
[log]
metrics = $dir/metrics.csv
progress = off
INI
    echo "$dir/small.ini"
}

# The param_hash column of a metrics CSV, one line per epoch.
hashes() { tail -n +2 "$1" | cut -d, -f7; }

# Raw bytes of /model/* of a checkpoint, hashed (bitwise comparison of weights).
model_sha() {
    $PY - "$1" <<'PY'
import hashlib, sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    h = hashlib.sha256()
    for name in ("W1", "b1", "W2", "b2"):
        h.update(f["model"][name][()].tobytes())
    print(h.hexdigest())
PY
}
