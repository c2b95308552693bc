"""Shared code of scripts/plot-checkpoint and scripts/plot-runs (imported, not run).

What a run is: a run directory holds metrics.csv and the checkpoints (latest.h5); either
script also takes the files themselves. A run's name, shown in every legend and title,
is the name of its directory.

Figures never overwrite another run's: every PNG written here carries a text chunk
`mlp-source` naming the run(s) it shows (their absolute paths), and an existing file is
replaced only if it names the same runs (or with --force). All targets are checked
before the first one is written.
"""
import csv
import json
import math
import os
import struct
import zlib

import matplotlib

matplotlib.use("Agg")  # headless: no display on cluster nodes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import LogFormatter, MaxNLocator, PercentFormatter  # noqa: E402

SOURCE_KEY = "mlp-source"
METRICS = "metrics.csv"
LATEST = "latest.h5"
# (split, line style, marker): the same split looks the same in every figure.
SPLITS = (("train", "-", "o"), ("val", "--", "s"), ("test", ":", "^"))
MARKERS_UP_TO = 40  # epochs: beyond that, markers only clutter the lines


class Failure(Exception):
    """A user error: reported as one line, exit 1."""


# ---------------------------------------------------------------- runs and their data

def run_dir_of(path):
    """The run directory of a file (its folder) or of a directory (itself), absolute."""
    path = os.path.abspath(path)
    return path if os.path.isdir(path) else os.path.dirname(path)


def run_names(dirs):
    """The directory names; where two are equal, as many parent folders as tell them apart."""
    parts = [d.rstrip(os.sep).split(os.sep) for d in dirs]
    names = []
    for i, p in enumerate(parts):
        depth = 1
        while depth < len(p) and any(j != i and q[-depth:] == p[-depth:] and q != p
                                     for j, q in enumerate(parts)):
            depth += 1
        names.append("/".join(p[-depth:]) or os.sep)
    return names


def parse_number(text):
    """A CSV cell as a float: empty, '-' and 'nan' are NaN (a value not measured)."""
    text = text.strip()
    if text in ("", "-") or text.lower() == "nan":
        return math.nan
    return float(text)


def read_metrics(path):
    """{column: float array} of a metrics CSV; only numeric columns, 'epoch' required."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise Failure(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise Failure(f"{path}: not a text CSV file") from None
    if not rows or "epoch" not in [c.strip() for c in rows[0]]:
        raise Failure(f"{path}: not a metrics CSV (no header line with an 'epoch' column)")
    header = [c.strip() for c in rows[0]]
    skip = {"param_hash"}  # hex text, not a number
    cols = {name: [] for name in header if name and name not in skip}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise Failure(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
        for name, cell in zip(header, row):
            if name in cols:
                try:
                    cols[name].append(parse_number(cell))
                except ValueError:
                    raise Failure(f"{path}:{line}: column {name} = '{cell}': "
                                  "not a number") from None
    return {name: np.array(v, dtype=np.float64) for name, v in cols.items()}


def read_history(h5file, path):
    """{column: float array} of a checkpoint's /history (every 1-D dataset there)."""
    if "history" not in h5file or "epoch" not in h5file["history"]:
        raise Failure(f"{path}: incomplete or corrupt checkpoint (no /history/epoch)")
    group = h5file["history"]
    n = group["epoch"].shape[0] if group["epoch"].ndim == 1 else -1
    cols = {}
    for name, ds in group.items():
        if getattr(ds, "ndim", 0) == 1 and ds.shape[0] == n and ds.dtype.kind in "fiu":
            cols[name] = ds[()].astype(np.float64)
    return cols


def resolve_metrics(arg):
    """(csv path, run dir) of a run directory or a metrics CSV named on the command line."""
    if os.path.isdir(arg):
        path = os.path.join(arg, METRICS)
        if not os.path.isfile(path):
            raise Failure(f"{arg}: a directory without {METRICS} (not a run directory)")
        return path, run_dir_of(arg)
    if not os.path.exists(arg):
        raise Failure(f"{arg}: No such file or directory")
    return arg, run_dir_of(arg)


def resolve_checkpoint(arg):
    """(checkpoint path, run dir) of a run directory (its latest.h5) or a checkpoint file."""
    if os.path.isdir(arg):
        path = os.path.join(arg, LATEST)
        if not os.path.exists(path):
            raise Failure(f"{arg}: a directory without {LATEST} (not a run directory "
                          "with a checkpoint)")
        return path, run_dir_of(arg)
    if not os.path.exists(arg):
        raise Failure(f"{arg}: No such file or directory")
    return arg, run_dir_of(arg)


# ---------------------------------------------------------------- the curves figure

class PlainLogFormatter(LogFormatter):
    """Log-axis labels as plain numbers (0.3, not 3x10^-1); LogFormatter still decides
    which ticks get one, so a span of many decades is not crowded."""

    def _num_to_string(self, x, vmin, vmax):
        return f"{x:g}"


def finite_series(cols, x_name, y_name, positive=False):
    """x, y of the rows where both are finite (and y > 0 for a log axis): a value not
    measured every epoch is then a line through the epochs that have it, not a gap."""
    if x_name not in cols or y_name not in cols:
        return None
    x, y = cols[x_name], cols[y_name]
    keep = np.isfinite(x) & np.isfinite(y)
    if positive:
        keep &= y > 0
    if not keep.any():
        return None
    return x[keep], y[keep]


def plot_curves(runs, title, throughput=False, splits=None, error=False):
    """Loss (log scale) and accuracy against the epoch, for every split present in each
    run (or those named in splits); with throughput, a third panel of samples/s; with
    error, the error rate in % on a log scale instead of the accuracy (what tells
    98.2% from 98.4%; epochs at 100% have no place on it and are left out). runs: [(name, {column: array})]. One colour per run, one line
    style per split; every legend entry names its run."""
    panels = 3 if throughput else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.4), squeeze=False)
    ax_loss, ax_acc = axes[0][0], axes[0][1]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = {ax: 0 for ax in axes[0]}
    for i, (name, cols) in enumerate(runs):
        colour = colours[i % len(colours)]
        many = len(cols.get("epoch", ())) > MARKERS_UP_TO
        for split, style, marker in SPLITS:
            if splits is not None and split not in splits:
                continue
            for ax, column, positive in ((ax_loss, f"{split}_loss", True),
                                         (ax_acc, f"{split}_acc", False)):
                xy = finite_series(cols, "epoch", column, positive)
                if xy is not None and ax is ax_acc and error:
                    keep = xy[1] < 1  # an error of 0 has no place on a log axis
                    xy = (xy[0][keep], 100 * (1 - xy[1][keep])) if keep.any() else None
                if xy is None:
                    continue
                ax.plot(*xy, linestyle=style, marker=None if many else marker,
                        markersize=4, color=colour, label=f"{name} {split}")
                drawn[ax] += 1
        if throughput:
            xy = finite_series(cols, "epoch", "samples_per_s", True)
            if xy is not None:
                axes[0][2].plot(*xy, marker=None if many else "o", markersize=4,
                                color=colour, label=name)
                drawn[axes[0][2]] += 1
    ax_loss.set_yscale("log")
    ax_loss.yaxis.set_major_formatter(PlainLogFormatter())
    ax_loss.yaxis.set_minor_formatter(PlainLogFormatter(minor_thresholds=(2, 1)))
    ax_loss.set_ylabel("mean cross-entropy (log scale)")
    ax_loss.set_title("loss")
    if error:
        ax_acc.set_yscale("log")
        ax_acc.yaxis.set_major_formatter(PlainLogFormatter())
        ax_acc.yaxis.set_minor_formatter(PlainLogFormatter(minor_thresholds=(2, 1)))
        ax_acc.set_ylabel("error, % = 100 (1 - accuracy) (log scale)")
        ax_acc.set_title("error")
    else:
        ax_acc.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax_acc.set_ylabel("accuracy")
        ax_acc.set_title("accuracy")
    if throughput:
        axes[0][2].set_ylabel("samples/s (training steps)")
        axes[0][2].set_title("throughput")
        axes[0][2].set_ylim(bottom=0)
    for ax in axes[0]:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.grid(which="minor", alpha=0.12)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if drawn[ax]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no epoch completed", ha="center", transform=ax.transAxes)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- writing figures

def png_text(path):
    """The tEXt/iTXt chunks of a PNG as {key: value}; None if the file is not a PNG."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    text, pos = {}, 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"tEXt" and b"\0" in body:
            key, value = body.split(b"\0", 1)
            text[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"iTXt" and b"\0" in body:
            key, rest = body.split(b"\0", 1)
            compressed = rest[:1] == b"\1"
            rest = rest[2:].split(b"\0", 2)  # language, translated keyword, text
            if len(rest) == 3:
                value = zlib.decompress(rest[2]) if compressed else rest[2]
                text[key.decode("latin-1")] = value.decode("utf-8", "replace")
        elif kind == b"IEND":
            break
        pos += 12 + length
    return text


def source_of(run_dirs):
    """The mlp-source text of a figure of these runs: their absolute paths, one a line."""
    return "\n".join(os.path.realpath(d) for d in run_dirs)


def check_targets(paths, source, force):
    """Refuse (Failure) if any target exists and is not a figure of these same runs."""
    if force:
        return
    for path in paths:
        if not os.path.lexists(path):
            continue
        text = png_text(path)
        owner = None if text is None else text.get(SOURCE_KEY)
        if owner == source:
            continue
        if owner is None:
            why = "exists and is not a figure written by these scripts"
        else:
            why = "holds a figure of another run (" + owner.replace("\n", ", ") + ")"
        raise Failure(f"{path}: {why}; not overwritten: choose another folder with "
                      "--out, or replace it with --force")


def save(fig, path, source):
    """Write fig as PNG with its mlp-source chunk, atomically (a partial PNG never shows)."""
    tmp = f"{path}.tmp{os.getpid()}.png"
    try:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", pad_inches=0.15,
                    metadata={SOURCE_KEY: source})
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


# ---------------------------------------------------------------- --summary

def describe(fig):
    """What a figure shows, from the drawn matplotlib objects, for --summary (tests)."""
    out = {"axes": [], "colorbars": []}
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            out["colorbars"].append(ax.get_ylabel() or ax.get_xlabel())
            continue
        legend = ax.get_legend()
        info = {"title": ax.get_title(), "xlabel": ax.get_xlabel(),
                "ylabel": ax.get_ylabel(), "yscale": ax.get_yscale(),
                "legend": [t.get_text() for t in legend.get_texts()] if legend else [],
                "lines": {ln.get_label(): len(ln.get_xdata()) for ln in ax.get_lines()
                          if not ln.get_label().startswith("_")},
                "images": []}
        for im in ax.get_images():
            a = im.get_array()
            mask = np.ma.getmaskarray(a)
            info["images"].append({
                "shape": list(a.shape), "cmap": im.get_cmap().name,
                "clim": [float(v) for v in im.get_clim()],
                "masked": [[int(i), int(j)] for i, j in zip(*np.nonzero(mask))]
                if a.ndim == 2 and a.size <= 10000 else None,
                "values": np.ma.filled(a.astype(np.float64), np.nan).tolist()
                if a.ndim == 2 and a.size <= 10000 else None})
        out["axes"].append(info)
    out["suptitle"] = fig._suptitle.get_text() if fig._suptitle else ""
    return out


def write_summary(path, figures):
    """figures: {png path: description}; JSON, NaN written as null."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v
    try:
        with open(path, "w") as f:
            json.dump(clean(figures), f, indent=1)
            f.write("\n")
    except OSError as e:
        raise Failure(f"{path}: cannot write: {e.strerror or e}") from None
