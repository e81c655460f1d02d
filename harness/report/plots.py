"""PNG plots for reports: histogram maps as bar charts and benchmark rounds side by side.

Uses matplotlib's object API with the Agg canvas (no display, no global pyplot state), so it
runs headless and in threads.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import MissingDependency

if TYPE_CHECKING:
    import pandas as pd

HIST_COLUMNS = ("lo", "hi", "count")
MAX_HIST_PANELS = 6
MAX_SERIES = 8
SERIES_VALUES = ("value", "count", "total")
MODE_COLORS = {"untraced": "#7f7f7f", "bpftrace": "#d62728", "libbpf": "#1f77b4"}


def is_hist(frame: pd.DataFrame) -> bool:
    return all(c in frame.columns for c in HIST_COLUMNS)


def _missing(value: Any) -> bool:
    """None, pandas' NA or NaN: an open bucket end, however the frame stored it."""
    return (value is None or type(value).__name__ == "NAType"
            or (isinstance(value, float) and value != value))


def _si(value: Any) -> str:
    """Bucket bound the way bpftrace prints it (1024 -> 1K), '...' for an open end."""
    if _missing(value):
        return "..."
    n = int(value)
    for suffix, size in (
        ("P", 1 << 50),
        ("T", 1 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ):
        if n and abs(n) >= size and n % size == 0:
            return f"{n // size}{suffix}"
    return str(n)


def bucket_label(lo: Any, hi: Any) -> str:
    """`[2, 4)` style label; open ends as bpftrace prints them."""
    lo_open = _missing(lo)
    hi_open = _missing(hi)
    if lo_open:
        return f"(..., {_si(hi)})"
    if hi_open:
        return f"[{_si(lo)}, ...)"
    if int(hi) - int(lo) == 1:
        return f"[{_si(lo)}]"
    return f"[{_si(lo)}, {_si(hi)})"


def _new_figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependency(
            "matplotlib is not installed, and the PNG plots need it",
            "pip install 'ktrace-harness[report]' (scripts/setup.sh does), or leave out --plots",
        ) from None

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _hist_groups(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One (title, buckets) group per key tuple; the heaviest MAX_HIST_PANELS groups."""
    keys = [c for c in frame.columns if c not in HIST_COLUMNS]
    if not keys:
        return [("", frame)]
    groups = [
        (
            ", ".join(
                f"{k}={v}"
                for k, v in zip(keys, key if isinstance(key, tuple) else (key,), strict=True)
            ),
            g,
        )
        for key, g in frame.groupby(keys, sort=False, dropna=False)
    ]
    groups.sort(key=lambda item: -int(item[1]["count"].sum()))
    return groups[:MAX_HIST_PANELS]


def _bucket_order(group: pd.DataFrame) -> pd.DataFrame:
    """Open low end first, then by lower bound."""
    lo = group["lo"].astype("Float64")
    order = lo.fillna(-math.inf).astype(float).argsort(kind="stable")
    return group.iloc[list(order)]


def plot_hist(frame: pd.DataFrame, title: str, path: Path) -> Path:
    """Bar chart of one hist/lhist map (one panel per key, heaviest keys first)."""
    groups = _hist_groups(frame)
    fig = _new_figure(9, 3.2 * len(groups) + 0.6)
    axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
    for ax, (label, group) in zip(axes, groups, strict=True):
        group = _bucket_order(group)
        labels = [bucket_label(lo, hi) for lo, hi in zip(group["lo"], group["hi"], strict=True)]
        counts = [int(c) for c in group["count"]]
        ax.bar(range(len(counts)), counts, color="#4c72b0")
        ax.set_xticks(range(len(counts)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("count")
        if label:
            ax.set_title(label, fontsize=10)
        ax.set_xlabel("bucket [lo, hi)")
        for x, c in enumerate(counts):
            if c:
                ax.annotate(str(c), (x, c), ha="center", va="bottom", fontsize=7)
        ax.margins(y=0.15)
    context = [str(frame[c].iloc[0]) for c in ("workload", "attach", "kernel") if c in frame]
    fig.suptitle(title + (f"\n{' | '.join(context)}" if context else ""))
    fig.savefig(path)
    return path


def _strip(ax: Any, series: Sequence[tuple[str, list[float]]], ylabel: str, title: str) -> None:
    """Every round as a dot, the median as a bar, per mode."""
    for x, (mode, values) in enumerate(series):
        finite = [v for v in values if v == v and math.isfinite(v)]
        color = MODE_COLORS.get(mode, "#2ca02c")
        if finite:
            med = statistics.median(finite)
            ax.bar(x, med, color=color, alpha=0.35, width=0.6)
            ax.scatter([x] * len(finite), finite, color=color, s=18, zorder=3)
            ax.annotate(
                f"{med:,.0f}" if abs(med) >= 100 else f"{med:.3g}",
                (x, med),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    ax.set_xticks(range(len(series)), [m for m, _ in series])
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.margins(y=0.15)
    lowest = min((v for _, vs in series for v in vs if v == v and math.isfinite(v)), default=0.0)
    ax.set_ylim(bottom=min(0.0, lowest * 1.15))


def plot_bench(frame: pd.DataFrame, title: str, path: Path) -> Path:
    """2x2 comparison of one benchmark: cost per event, overhead, time to attached, memory."""
    modes = [m for m in ("untraced", "bpftrace", "libbpf") if m in set(frame["mode"])]
    modes += sorted(set(frame["mode"]) - set(modes))
    tracers = [m for m in modes if m != "untraced"]

    def values(mode: str, col: str, scale: float = 1.0) -> list[float]:
        if col not in frame.columns:
            return []
        col_values = frame.loc[frame["mode"] == mode, col]
        return [float(v) * scale for v in col_values.dropna()]

    fig = _new_figure(11, 7.5)
    (a, b), (c, d) = fig.subplots(2, 2)
    _strip(
        a, [(m, values(m, "ns_per_event")) for m in modes], "ns / event", "workload time per event"
    )
    _strip(
        b,
        [(m, values(m, "overhead_ns_per_event")) for m in tracers],
        "ns / event",
        "tracing overhead per event (traced - untraced)",
    )
    _strip(c, [(m, values(m, "attach_ms")) for m in tracers], "ms", "spawn -> probes attached")
    _strip(
        d,
        [(m, values(m, "peak_rss_kib", 1 / 1024)) for m in tracers],
        "MiB",
        "tracer peak memory (VmHWM)",
    )
    context = [str(frame[c].iloc[0]) for c in ("workload", "attach", "kernel") if c in frame]
    fig.suptitle(title + (f"\n{' | '.join(context)}" if context else ""))
    fig.savefig(path)
    return path


def plot_bench_table(csv_path: Path, title: str, path: Path) -> Path:
    """In-kernel ns per event per kernel x bpftrace release (a group each), a bar per tracer
    (its median in runs of its own, the 95% interval as the error bar), on a log scale: a TCG
    guest's figures are tens of times the host's, and each group's ratios still read."""
    import pandas as pd

    every = pd.read_csv(csv_path, dtype=str).fillna("")
    frame = every[every["error"] == ""]
    # every cell is a group, one that was not measured too: it is labelled with why
    groups = list(dict.fromkeys(zip(every["kernel_series"], every["bpftrace"], strict=True)))
    tracers = [t for t in ("floor", "bpftrace", "libbpf") if t in set(every["tracer"])] or [
        "bpftrace"]
    fig = _new_figure(max(6.0, 1.6 * len(groups) + 2), 5)
    ax = fig.subplots()
    width = 0.8 / max(1, len(tracers))
    missing: list[tuple[float, str]] = []  # (x, why) of each bar that has no figure
    for i, tracer in enumerate(tracers):
        xs, ys, lows, highs = [], [], [], []
        for g, (series, release) in enumerate(groups):
            rows = frame[(frame["kernel_series"] == series) & (frame["bpftrace"] == release)
                         & (frame["tracer"] == tracer)]
            if rows.empty or not rows["kernel_ns_per_event"].iloc[0]:
                cell = every[(every["kernel_series"] == series) & (every["bpftrace"] == release)]
                whole = cell[cell["tracer"] == ""]["error"]  # the cell failed or did not run
                if len(whole):
                    if i == 0:
                        missing.append((g, whole.iloc[0]))
                    continue
                why = cell[cell["tracer"] == tracer]["error"]
                missing.append((g + (i - (len(tracers) - 1) / 2) * width,
                                f"{tracer}: " + (why.iloc[0] if len(why) else "no figure")))
                continue
            row = rows.iloc[0]
            value = float(row["kernel_ns_per_event"])
            xs.append(g + (i - (len(tracers) - 1) / 2) * width)
            ys.append(value)
            lo = float(row["kernel_lo"]) if row["kernel_lo"] else value
            hi = float(row["kernel_hi"]) if row["kernel_hi"] else value
            lows.append(value - lo)
            highs.append(hi - value)
        ax.bar(xs, ys, width, yerr=[lows, highs], capsize=3, label=tracer,
               color=MODE_COLORS.get(tracer, "#2ca02c"))
        for x, y in zip(xs, ys, strict=True):
            ax.annotate(f"{y:.0f}", (x, y), ha="center", va="bottom", fontsize=7)
    ratios = {
        (r["kernel_series"], r["bpftrace"]): r["ratio_to_twin"]
        for _, r in frame.iterrows() if r["tracer"] == "bpftrace" and r["ratio_to_twin"]
    }
    cut = {(r["kernel_series"], r["bpftrace"]) for _, r in every.iterrows() if r.get("note")}
    labels = [
        f"{series}\nbpftrace {release}"
        + (f"\n{float(ratios[(series, release)]):.2f}x the twin" if (series, release) in ratios
           else "")
        + ("\n(interrupted)" if (series, release) in cut else "")
        for series, release in groups
    ]
    ax.set_xticks(range(len(groups)), labels, fontsize=8)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_yscale("log")
    if not len(frame):
        ax.set_ylim(1, 10)  # nothing measured: an axis for the notes below
    bottom = ax.get_ylim()[0]
    for x, why in missing:  # not measured, said where its bar would be
        ax.annotate(textwrap.fill(why, 28), (x, bottom), xytext=(0, 4),
                    textcoords="offset points", rotation=90, ha="center", va="bottom",
                    fontsize=6, color="#b00000")
    ax.set_ylabel("in-kernel ns per event (log scale)")
    ax.legend(fontsize=8)
    fig.suptitle(title + "\nmedian over rounds, 95% CI; ratio: the headline, on the same events")
    fig.savefig(path)
    return path


def is_series(frame: pd.DataFrame) -> bool:
    """A map printed more than once (interval `print(); clear();`): a time series."""
    return "printing" in frame.columns and frame["printing"].nunique() > 1


def _series_label(value: Any) -> str:
    """A key part as a legend entry: a stack by its leaf frame, long strings cut."""
    text = str(value)
    if ";" in text:  # a folded stack, root first
        text = text.rsplit(";", 1)[-1] + " (stack)"
    return text if len(text) <= 40 else text[:37] + "..."


def plot_series(frame: pd.DataFrame, title: str, path: Path, top: int = MAX_SERIES) -> Path:
    """One line per key over the printings of a map: its value (or, for a histogram, its
    count summed over the buckets) at each printing's t_s, the heaviest `top` keys."""
    import pandas as pd

    value = next(c for c in SERIES_VALUES if c in frame.columns)
    x = "t_s" if "t_s" in frame.columns and frame["t_s"].notna().any() else "printing"
    keys = [c for c in frame.columns
            if c not in ("printing", "t_s", "lo", "hi", "average", *SERIES_VALUES)]
    data = frame.copy()
    data["_key"] = (data[keys].astype(str).agg(", ".join, axis=1) if keys
                    else pd.Series("all", index=data.index))
    per = data.groupby(["_key", "printing"], sort=False).agg(y=(value, "sum"), x=(x, "first"))
    totals = per["y"].groupby(level="_key").sum().sort_values(ascending=False)
    fig = _new_figure(9, 4.5)
    ax = fig.subplots()
    for key in totals.index[:top]:
        line = per.loc[key].sort_values("x")
        ax.plot(line["x"], line["y"], marker="o", markersize=3,
                label=", ".join(_series_label(p) for p in str(key).split(", ")))
    hidden = len(totals) - min(top, len(totals))
    ax.set_xlabel("seconds since the probes attached" if x == "t_s" else "printing")
    ax.set_ylabel(value if value != "count" or "lo" not in frame else "events (all buckets)")
    ax.legend(fontsize=7, title=f"{hidden} more keys not drawn" if hidden else None,
              title_fontsize=7)
    ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path)
    return path
