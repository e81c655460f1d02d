"""One table across dimensions: in-kernel ns per event per kernel x bpftrace release x tracer.

Each cell is one `harness bench` (its own CSV, rounds, verdicts); the table is read back from
those CSVs alone, so it says exactly what the cells' files say. Per tracer (floor, bpftrace, the
twin): the median in-kernel ns per event of its own runs with its 95% interval, and above the
floor on the same events (the run with all attached at once); per bpftrace row, the headline
ratio to the twin with its interval and its verdict. Under TCG every instruction is emulated, so
absolute figures compare only within a kernel; ratios compare across the whole table.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from harness.compare import bench, stats

TRACERS = ("floor", "bpftrace", "libbpf")
FIELDS = (
    "kernel_series", "kernel", "accel", "bpftrace", "attach", "tracer", "rounds",
    "kernel_ns_per_event", "kernel_lo", "kernel_hi",
    "above_floor_ns_per_event", "above_floor_lo", "above_floor_hi",
    "ratio_to_twin", "ratio_lo", "ratio_hi", "verdict", "pmu", "csv", "note", "error",
)


@dataclass
class Cell:
    """One bench of the table: where it ran, which release, its CSV (None when it failed)."""

    series: str  # 6.1, 6.12, host
    release: str  # as asked: 0.17, 0.27, system
    csv: Path | None
    accel: str = ""  # tcg/kvm for a guest, empty on the host
    pmu: str = ""  # what the cell's kernel offers for cycles/instructions (compare.pmu)
    error: str = ""  # why the cell has no figures (its row says it)
    note: str = ""  # what to know of its figures (interrupted after N rounds)


def _estimate(values: list[float]) -> tuple[object, object, object]:
    """(median, lo, hi) rounded to 0.1 ns; empty cells where there is no value or interval."""
    if not values:
        return "", "", ""
    e = stats.median_ci(values)

    def cell(x: float) -> object:
        return round(x, 1) if math.isfinite(x) else ""

    return cell(e.value), cell(e.lo), cell(e.hi)


def cell_rows(cell: Cell) -> list[dict[str, object]]:
    """The table's rows of one cell: a row per tracer, or one row with the cell's error."""
    base: dict[str, object] = {"kernel_series": cell.series, "accel": cell.accel,
                               "bpftrace": cell.release, "pmu": cell.pmu, "note": cell.note}
    if cell.csv is None:
        return [{**base, "error": cell.error}]
    with cell.csv.open(newline="") as fh:
        table = list(csv.DictReader(fh))
    samples = bench.read_rows(cell.csv)
    head = stats.headline(samples)
    first = table[0] if table else {}
    base |= {"kernel": first.get("kernel", ""), "attach": first.get("attach", ""),
             "rounds": len({r["round"] for r in table}), "csv": cell.csv.name,
             "bpftrace": first.get("bpftrace_version", cell.release).removeprefix("bpftrace ")}
    out = []
    for tracer in TRACERS:
        own = [s.kernel_ns_per_event for s in samples if s.mode == tracer]
        above = [s.program_ns_per_event for s in samples
                 if s.mode == stats.TOGETHER + tracer and s.program_ns_per_event is not None]
        row = {**base, "tracer": tracer}
        why = _unmeasured(tracer, own, samples)
        if why:  # the row is there all the same, saying why it has no figure
            out.append({**row, "error": why})
            continue
        row["kernel_ns_per_event"], row["kernel_lo"], row["kernel_hi"] = _estimate(
            [v for v in own if v is not None])
        (row["above_floor_ns_per_event"], row["above_floor_lo"],
         row["above_floor_hi"]) = _estimate(above)  # type: ignore[arg-type]
        if tracer == "bpftrace" and head is not None:
            r = head.ratio
            row |= {"ratio_to_twin": round(r.value, 3), "verdict": head.verdict,
                    **{k: round(v, 3) if math.isfinite(v) else ""
                       for k, v in (("ratio_lo", r.lo), ("ratio_hi", r.hi))}}
        out.append(row)
    return out


def _unmeasured(tracer: str, own: list[float | None], samples: list[bench.Row]) -> str:
    """Why a tracer of a cell has no in-kernel figure ('' when it has one)."""
    if not own:
        if any(s.mode == stats.TOGETHER + tracer for s in samples):
            return f"no run of {tracer} alone finished (only attached together)"
        return (f"not benched: {tracer} was not among the cell's --modes" if samples
                else "no run finished")
    if all(v is None for v in own):
        return "no in-kernel figure: the kernel's per-program clock was not read " \
               "(--no-kernel-stats)"
    return ""


def write(cells: list[Cell], path: Path) -> tuple[Path, Path]:
    """`<stem>.csv` and `<stem>.md` of the cells' rows; returns both paths."""
    rows = [row for cell in cells for row in cell_rows(cell)]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: row.get(k, "") for k in FIELDS} for row in rows)
    md = path.with_suffix(".md")
    md.write_text(markdown(rows, path.stem))
    return path, md


def _ci(row: dict[str, object], value: str, lo: str, hi: str, unit: str = "") -> str:
    if row.get(value) in (None, ""):
        return "-"
    if row.get(lo) in (None, ""):
        return f"{row[value]}{unit} (no interval)"
    return f"{row[value]}{unit} ({row[lo]}-{row[hi]}{unit})"


def markdown(rows: list[dict[str, object]], title: str) -> str:
    lines = [
        f"# `{title}`: in-kernel ns per event per kernel x bpftrace release x tracer",
        "",
        "Median (95% CI) over rounds of `run_time_ns` per workload event: each tracer in runs "
        "of its own, and above the floor on the same events (floor, bpftrace and the twin "
        "attached in one run); ratio = the bench's headline, bpftrace / the twin. Under TCG "
        "every instruction is emulated: absolute figures compare within a kernel, ratios "
        "across the table.",
        "",
        "| kernel | bpftrace | attach | tracer | rounds | in-kernel ns/event | above the floor "
        "| bpftrace / twin |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        accel = f", {r['accel']}" if r.get("accel") else ""
        kernel = f"{r.get('kernel_series')} ({r.get('kernel') or '?'}{accel})"
        if r.get("error"):
            lines.append(f"| {kernel} | {r.get('bpftrace')} | {r.get('attach') or '-'} "
                         f"| {r.get('tracer') or '-'} | {r.get('rounds') or '-'} "
                         f"| not measured: {r['error']} | - | - |")
            continue
        lines.append(
            f"| {kernel} | {r.get('bpftrace')} | {r.get('attach')} | {r.get('tracer')} "
            f"| {r.get('rounds')} "
            f"| {_ci(r, 'kernel_ns_per_event', 'kernel_lo', 'kernel_hi')} "
            f"| {_ci(r, 'above_floor_ns_per_event', 'above_floor_lo', 'above_floor_hi')} "
            f"| {_ratio(r)} |"
        )
    verdicts = [f"- {r['kernel_series']}, bpftrace {r['bpftrace']}: {r['verdict']}."
                for r in rows if r.get("verdict")]
    notes = {f"- {r['kernel_series']}, bpftrace {r['bpftrace']}: {r['note']}.": None
             for r in rows if r.get("note")}
    pmu = {f"- {r['kernel_series']}: {r['pmu']}.": None for r in rows if r.get("pmu")}
    return "\n".join([*lines, "", "Verdicts:", "", *verdicts, "",
                      *(["Cut short:", "", *notes, ""] if notes else []),
                      "Cycles and instructions per run (`bpftool prog profile`):", "", *pmu, ""])


def _ratio(row: dict[str, object]) -> str:
    value, lo, hi = (row.get(k) for k in ("ratio_to_twin", "ratio_lo", "ratio_hi"))
    if value in (None, ""):
        return "-"
    if lo in (None, ""):
        return f"{float(value):.2f}x (no interval)"  # type: ignore[arg-type]
    return f"{float(value):.2f}x ({float(lo):.2f}x-{float(hi):.2f}x)"  # type: ignore[arg-type]
