#!/usr/bin/python3
"""Check that an mlp checkpoint reads naturally in h5py (docs/design.md section 7).

    /usr/bin/python3 tests/integration/checkpoint-h5py.py FILE.h5

String attributes must come back as str (not bytes), the model datasets as float32 of the
shapes the attributes state, the history as 1-D columns of one length. Prints OK and exits
0, or prints what is wrong and exits 1. Explicit checks, not assert (python -O drops those).
"""
import sys


def main(argv):
    if len(argv) != 2:
        print("usage: checkpoint-h5py.py FILE.h5", file=sys.stderr)
        return 2
    try:
        import h5py
        import numpy as np
    except ImportError as e:
        print(f"checkpoint-h5py: {e} (run with /usr/bin/python3, which has python3-h5py)",
              file=sys.stderr)
        return 1

    path = argv[1]
    problems = []

    def check(cond, msg):
        if not cond:
            problems.append(msg)

    with h5py.File(path, "r") as f:
        a = f.attrs
        required = ["format", "format_version", "d", "hidden", "classes", "epoch", "step",
                    "seed", "batch", "lr", "reduce", "ranks", "threads_per_rank", "config",
                    "created", "mlp_version"]
        missing = [k for k in required if k not in a]
        if missing:
            print(f"{path}: missing attributes {missing}", file=sys.stderr)
            return 1
        for k in ["format", "reduce", "config", "created", "mlp_version"]:
            check(isinstance(a[k], str), f"attribute {k} is {type(a[k]).__name__}, not str")
        check(a["format"] == "mlp-checkpoint", f"format is {a['format']!r}")
        check(int(a["format_version"]) == 2, f"format_version is {a['format_version']!r}")
        for k in ["d", "hidden", "classes", "epoch", "step", "seed", "batch", "ranks",
                  "threads_per_rank"]:
            check(np.issubdtype(np.asarray(a[k]).dtype, np.integer), f"attribute {k} not integer")
        check(np.asarray(a["lr"]).dtype == np.float64, "attribute lr not float64")
        created = str(a["created"])
        check(len(created) == 20 and created[10] == "T" and created.endswith("Z"),
              f"created {created!r} is not ISO 8601 UTC")

        d, h, k = int(a["d"]), int(a["hidden"]), int(a["classes"])
        shapes = {"W1": (d, h), "b1": (h,), "W2": (h, k), "b2": (k,)}
        for name, shape in shapes.items():
            key = f"model/{name}"
            if key not in f:
                problems.append(f"/{key} missing")
                continue
            ds = f[key]
            check(ds.shape == shape, f"/{key} shape {ds.shape}, expected {shape}")
            check(ds.dtype == np.dtype("<f4"), f"/{key} dtype {ds.dtype}, expected float32 LE")
            # the optimizer's velocity (momentum, nesterov), when present, is shaped alike
            key = f"optimizer/{name}"
            if key in f:
                check(f[key].shape == shape and f[key].dtype == np.dtype("<f4"),
                      f"/{key} shape {f[key].shape} {f[key].dtype}, expected {shape} float32")

        lengths = set()
        for name, dt in [("epoch", "<i8"), ("train_loss", "<f8"), ("train_acc", "<f8"),
                         ("test_acc", "<f8"), ("seconds", "<f8")]:
            key = f"history/{name}"
            if key not in f:
                problems.append(f"/{key} missing")
                continue
            ds = f[key]
            check(ds.ndim == 1, f"/{key} is {ds.ndim}-D")
            check(ds.dtype == np.dtype(dt), f"/{key} dtype {ds.dtype}, expected {dt}")
            lengths.add(ds.shape[0] if ds.ndim == 1 else -1)
        check(len(lengths) <= 1, f"history columns have different lengths {sorted(lengths)}")

    if problems:
        for p in problems:
            print(f"{path}: {p}", file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
