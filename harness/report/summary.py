"""Turn a results directory (CSV per map + run.json, or benchmark CSVs) into files people read:
folded stacks, interactive flame graphs, histogram and benchmark PNGs, and a summary.md that says
what was measured and where each file is.

Pure Python over files: it never touches the kernel, so any saved run can be re-reported.
`write_report(run_dir)` is the one entry point; `harness run`, `crosscheck` and `bench` call it.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.compare import bench, stats
from harness.errors import HarnessError
from harness.output.printed import printed_total
from harness.output.stacks import stack_kinds_in_program
from harness.report import flamegraph
from harness.report import plots as plotting
from harness.report.record import RecordError, RunRecord, read_record
from harness.report.rundir import check_writable, map_of

if TYPE_CHECKING:
    import pandas as pd

SUMMARY = "summary.md"
BENCH_COLUMNS = ("mode", "round", "ns_per_event")
_TIME_KEYS = ("start", "stop", "started", "stopped")
_META_ORDER = (
    "command",
    "spec",
    "name",
    "attach",
    "attach_reason",
    "kernel",
    "bpftrace_version",
    "started_at",
    "ended_at",
    "durations",
    "ended_by",
    "exit_status",
    "start",
    "stop",
    "started",
    "stopped",
)

# A probe header in a bpftrace program: `provider:target[:name]` before its predicate or block.
_INT = re.compile(r"-?\d{1,20}")  # bpftrace prints 64-bit ints; longer digit runs are strings
_PROBE_LINE = re.compile(r"^\s*([A-Za-z_]+:[^\s{/]*|BEGIN|END)\s*(?:/|\{|,|$)")


class ReportError(HarnessError):
    """The directory given to `harness report` cannot be reported on."""


@dataclass
class MapReport:
    """What the report made of one CSV."""

    csv: Path
    kind: str  # 'stacks' | 'hist' | 'bench' | 'table'
    rows: int
    total: int | None = None
    files: list[tuple[Path, str]] = field(default_factory=list)
    note: str = ""


def read_csv(path: Path) -> pd.DataFrame:
    """A run CSV as written by report.rundir; empty cells are missing, 'NA' stays a string."""
    import pandas as pd

    try:
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ReportError(
            f"{path} is not a readable CSV ({str(err).splitlines()[0]})",
            "remove it or re-create the run directory with `harness run`",
        ) from err


def read_meta(run_dir: Path) -> dict[str, Any]:
    """run.json as its file holds it (command, program, versions, attach type, times), read
    through its one reader (harness.report.record), or {} when absent."""
    record = read_run(run_dir)
    return record.as_read() if record is not None else {}


def read_run(run_dir: Path) -> RunRecord | None:
    """run_dir's run.json as its record (None when absent); one that cannot be read is a
    ReportError naming the fix."""
    try:
        return read_record(run_dir)
    except RecordError as err:
        raise ReportError(err.cause, f"{err.fix}; the CSVs are reported without it") from None


def _what_ran(meta: dict[str, Any]) -> str:
    """`ktrace (tracepoint)`: what ran (a short name) and the attach type, or ''."""
    names = [meta.get(k) for k in ("target", "catalog", "name", "spec", "command")]
    where = next((n for n in names if isinstance(n, str) and n and len(n) <= 60), None)
    attach = meta.get("attach")
    parts = [where] if where else []
    if isinstance(attach, str) and attach:
        parts.append(f"({attach})")
    return " ".join(parts)


def _title(stem: str, meta: dict[str, Any]) -> str:
    """`@len - ktrace (tracepoint)`: the map, what ran (a short name), the attach type."""
    label = map_of(stem)
    what = _what_ran(meta)
    return f"{label} - {what}" if what else label


def probe_of(meta: dict[str, Any]) -> str | None:
    """The traced probe(s) of a run: the program's probe lines other than BEGIN/END/interval."""
    program = meta.get("program")
    if not isinstance(program, str):
        return None
    probes = []
    for line in program.splitlines():
        match = _PROBE_LINE.match(line)
        if match and not match.group(1).startswith(("BEGIN", "END", "interval:")):
            probes.append(match.group(1).rstrip(","))
    return ", ".join(dict.fromkeys(probes)) or None


def flame_title(stem: str, meta: dict[str, Any], total: float, unit: str | None = None) -> str:
    """`@stacks · tracepoint:net:net_dev_queue · 57 samples`: map, probe, total and its unit
    (`@offcpu · ... · 5230 µs (sum of offcpu_us)` for a sum)."""
    label = map_of(stem)
    probe = probe_of(meta)
    unit, what = (unit, "") if unit else map_unit(stem, meta)
    number = str(int(total)) if float(total).is_integer() else f"{total:.1f}"
    amount = f"{number} {unit}" + (f" ({what})" if what else "")
    return " · ".join([label, *([probe] if probe else []), amount])


_TIME_UNITS = {"ns": "ns", "us": "µs", "ms": "ms"}


def map_unit(stem: str, meta: dict[str, Any]) -> tuple[str, str]:
    """What a stack map's values count, as (unit, what): ("samples", "") for count(); for
    sum(EXPR), EXPR's unit when its name ends in _ns/_us/_ms (offcpu's `offcpu_us` is µs) or
    else EXPR itself, and "sum of EXPR". Read from the run's spec, else from its program."""
    name = map_of(stem)
    func, value = None, None
    spec = meta.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("aggs"), list):
        for agg in spec["aggs"]:
            if isinstance(agg, dict) and agg.get("map") == name:
                func, value = agg.get("func"), agg.get("value")
    elif isinstance(meta.get("program"), str):
        assign = re.compile(re.escape(name) + r"(?:\[[^\n]*?\])?\s*=\s*(\w+)\s*\((.*?)\)\s*;")
        found = {(m.group(1), m.group(2).strip()) for m in assign.finditer(meta["program"])}
        if len(found) == 1:
            (func, value), = found
    if func != "sum" or not isinstance(value, str) or not value:
        return "samples", ""
    suffix = re.search(r"_(ns|us|ms)$", value)
    return (_TIME_UNITS[suffix.group(1)] if suffix else value), f"sum of {value}"


# The fix for a CSV the harness did not write as it is (edited, cut, or another tool's).
DAMAGED_CSV = ("remove it, or write it again from the run's raw output: "
               "`harness parse RUN/stdout.txt --csv RUN`")


def read_table(path: Path) -> dict[str, list[Any]]:
    """A run CSV as {column: cells} without pandas: a column whose cells all read as integers
    holds ints, any other holds text; empty cells are None (as read_csv's missing values)."""
    try:
        # A cell may be as long as the file (a string value of megabytes, which `harness parse`
        # keeps whole): the csv module's 128 KiB field limit would refuse the harness's own CSV.
        csv.field_size_limit(max(csv.field_size_limit(), path.stat().st_size + 1))
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except (csv.Error, UnicodeDecodeError) as err:
        raise ReportError(
            f"{path} is not a readable CSV ({err})",
            "remove it or re-create the run directory with `harness run`",
        ) from err
    if not rows:
        return {}
    header, body = rows[0], rows[1:]
    if any(len(r) != len(header) for r in body):
        raise ReportError(
            f"{path} is not a readable CSV (rows of different lengths)",
            "remove it or re-create the run directory with `harness run`",
        )
    table: dict[str, list[Any]] = {}
    for i, name in enumerate(header):
        cells = [r[i] for r in body]
        ints = all(_INT.fullmatch(c) for c in cells if c)
        table[name] = [None if c == "" else int(c) if ints else c for c in cells]
    return table


def _report_map(csv: Path, meta: dict[str, Any], plots: bool, dest: Path) -> MapReport:
    """What one CSV is, its folded stacks and flame graph; PNGs only when `plots` (matplotlib
    and pandas cost a second or more of start-up, so `harness run` leaves them to `harness
    report` unless --plots). A map printed several times also gets a line plot over time."""
    table = read_table(csv)
    for col in ("lo", "hi", "count"):  # what a histogram's report adds up
        bad = next((c for c in table.get(col, ()) if isinstance(c, str)), None)
        if bad is not None and {"lo", "hi", "count"} <= set(table):
            raise ReportError(f"{csv}: column {col} holds {bad[:40]!r}, not a whole number",
                              DAMAGED_CSV)
    try:
        report = _report_kind(csv, table, meta, plots, dest)
    except ValueError as err:  # a count that is no number (flamegraph.folded_counts)
        raise ReportError(f"{csv}: {err}", DAMAGED_CSV) from None
    if len(set(table.get("printing") or ())) > 1 and report.kind != "bench":
        if plots:
            png = plotting.plot_series(read_csv(csv), f"{_title(csv.stem, meta)} over time",
                                       dest / f"{csv.stem}.series.png")
            report.files.append((png, "line plot of the top keys over the printings"))
        else:
            note = "line plot over time: `harness report` draws it"
            report.note = f"{report.note}; {note}" if report.note else note
    return report


def _report_kind(csv: Path, table: dict[str, list[Any]], meta: dict[str, Any],
                 plots: bool, out: Path) -> MapReport:
    """The report of one map by its kind: bench rounds, histogram, stacks or a table; its
    files go into `out`."""
    stem = csv.stem
    rows = len(next(iter(table.values()), []))
    if not rows:
        return MapReport(csv, "table", 0, note="no events")
    if all(c in table for c in BENCH_COLUMNS):
        return _report_bench(csv, plots, out)
    if all(c in table for c in ("lo", "hi", "count")):
        report = MapReport(csv, "hist", rows, sum(c for c in table["count"] if c is not None))
        if plots:
            png = plotting.plot_hist(read_csv(csv), _title(stem, meta), out / f"{stem}.hist.png")
            report.files.append((png, "histogram bar chart"))
        else:
            report.note = "bar chart: `harness report` draws it"
        return report
    key_hints, value_hint = program_stacks(stem, meta)
    stack_cols = flamegraph.stack_columns(table)
    as_values = not stack_cols and flamegraph.stack_values(table, value_hint)
    if stack_cols or as_values:
        hints = dict(zip([c for c in table if c not in _NOT_KEY_COLUMNS], key_hints,
                         strict=False))
        hints["value"] = value_hint
        stack_cols = stack_cols or ["value"]
        kernel = [c for c in stack_cols
                  if flamegraph.column_kind(c, table[c], hints.get(c)) == "kstack"]
        counts = flamegraph.folded_counts(table, stack_cols, kernel=kernel)
        report = MapReport(csv, "stacks", rows, sum(counts.values()))
        folded = flamegraph.write_folded(counts, out / f"{stem}.folded")
        report.files.append((folded, "folded stacks (flamegraph.pl / speedscope input)"))
        _, printing = flamegraph.last_printing(table)
        shown = printing or 1  # the printing the .folded file and the page show
        printed = meta.get("printed")
        expected = (printed_total(printed, map_of(stem), shown)
                    if isinstance(printed, dict) else None)
        html = flamegraph.write_flame_html(
            counts,
            out / f"{stem}.flame.html",
            flame_title(stem, meta, report.total or 0, "entries" if as_values else None),
            subtitle=_what_ran(meta) + (f" · printing {printing}, the last (the CSV has "
                                        "every printing)" if printing else ""),
            unit="entries" if as_values else map_unit(stem, meta)[0],
            printed_total=expected,
        )
        report.files.append((html, "flame graph: search, click to zoom (a browser, offline)"))
        if printing:
            report.note = (f".folded and flame page show printing {printing}, the last; "
                           "the CSV has every printing")
        if expected is not None and expected != report.total:
            gap = f"{report.total} of {expected} printed shown"
            report.note = f"{report.note}; {gap}" if report.note else gap
        return report
    total = None
    values = table.get("value")
    if summable(stem, meta) and values and all(isinstance(v, int) for v in values):
        total = sum(values)
    return MapReport(csv, "table", rows, total)


def _report_bench(csv: Path, plots: bool, out: Path) -> MapReport:
    frame = read_csv(csv)
    report = MapReport(csv, "bench", len(frame))
    if plots:
        png = out / f"{csv.stem}.bench.png"
        plotting.plot_bench(frame, f"benchmark {csv.stem}", png)
        report.files.append((png, "benchmark comparison: per-event cost, overhead, attach, memory"))
    report.note = _bench_note(csv)
    return report


_NOT_KEY_COLUMNS = ("printing", "t_s", "value", "count", "average", "total", "lo", "hi")


def program_stacks(stem: str, meta: dict[str, Any]) -> tuple[list[str | None], str | None]:
    """What the run's program says of a map's stacks: per key part 'ustack', 'kstack' or None,
    and the value's kind (harness.output.stacks.stack_kinds_in_program); nothing without one."""
    program = meta.get("program")
    if not isinstance(program, str):
        return [], None
    return stack_kinds_in_program(program).get(map_of(stem), ([], None))


def summable(stem: str, meta: dict[str, Any]) -> bool:
    """Whether a map's values add up to something (count() and sum() maps do; avg, min, max
    and plain assignments do not), read from the program that filled it."""
    program = meta.get("program")
    if not isinstance(program, str):
        return False
    name = map_of(stem)
    assign = re.compile(re.escape(name) + r"(?:\[[^\n]*?\])?\s*=\s*(\w+)\s*\(")
    funcs = {m.group(1) for m in assign.finditer(program)}
    return bool(funcs) and funcs <= {"count", "sum"}


def _bench_note(csv: Path) -> str:
    """The bench's headline verdict, made again from its CSV: a ratio with its interval, or
    "inconclusive" with the noise, never a bare ratio."""
    try:
        found = stats.headline(bench.read_rows(csv))
    except (KeyError, ValueError):
        return "no verdict: the CSV lacks a bench's round/mode columns"
    return found.verdict if found is not None else "no verdict: needs bpftrace and libbpf"


def _meta_lines(meta: dict[str, Any]) -> list[str]:
    keys = [k for k in _META_ORDER if k in meta]
    keys += sorted(k for k in meta if k not in keys and k != "program")
    lines = []
    for key in keys:
        value = meta[key]
        if value is None or value == [] or value == "" or value == {}:
            continue  # an unset field says nothing ('error | None')
        if isinstance(value, dict | list):
            value = json.dumps(value, sort_keys=True)
        elif key in _TIME_KEYS and isinstance(value, int | float) and 1e9 < value < 1e10:
            stamp = datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            value = f"{stamp} UTC"
        text = str(value).replace("\n", " ").replace("|", "\\|")
        if len(text) > 200:
            text = text[:197] + "..."
        lines.append(f"| {key} | {text} |")
    return ["| field | value |", "|---|---|", *lines] if lines else []


def _summary(run_dir: Path, meta: dict[str, Any], maps: list[MapReport], dest: Path,
             notes: list[str]) -> str:
    lines = [f"# Report: {run_dir.name}", ""]
    if meta:
        lines += ["## What was measured", "", *_meta_lines(meta), ""]
        lines += [f"Note: {_relative(note, run_dir)}" for note in notes] + ([""] if notes else [])
        program = meta.get("program")
        if isinstance(program, str) and program.strip():
            lines += ["Program:", "", "```", program.rstrip(), "```", ""]
    elif maps:
        lines += ["No run.json here: the CSVs below are reported as they are.", ""]
    if not maps:
        return "\n".join(lines)
    lines += [
        "## Maps and files",
        "",
        "| CSV | kind | rows | total count | files |",
        "|---|---|---|---|---|",
    ]
    for m in maps:
        files = "<br>".join(f"[{p.name}]({p.name}): {desc}" for p, desc in m.files) or "-"
        total = "" if m.total is None else str(m.total)
        kind = m.kind + (f" ({m.note})" if m.note and m.kind != "bench" else "")
        link = os.path.relpath(m.csv, dest)
        lines.append(f"| [{m.csv.name}]({link}) | {kind} | {m.rows} | {total} | {files} |")
    benches = [m for m in maps if m.kind == "bench" and m.note]
    if benches:
        lines += ["", "## Benchmarks", ""]
        lines += [f"- {m.csv.stem}: {m.note}" for m in benches]
    lines += [
        "",
        "Stacks in CSV and .folded files are root first, ';' joined; .folded lines end with the",
        "count (`a;b;c 12`). Histogram buckets are [lo, hi): lo inclusive, hi exclusive.",
        "",
    ]
    return "\n".join(lines)


def run_parts(run_dir: Path) -> list[Path]:
    """Sub-directories that are run directories themselves (crosscheck: bpftrace/ and libbpf/)."""
    return [
        d
        for d in sorted(run_dir.iterdir())
        if d.is_dir() and (any(d.glob("*.csv")) or (d / "run.json").exists())
    ]


def is_run_dir(path: Path) -> bool:
    """A directory the harness made for one run (run.json), crosscheck (verdict.json) or matrix
    (matrix.csv): its report is the harness's to rewrite. Anything else (results/bench, a
    folder of CSVs) may hold files people committed or wrote."""
    return any((path / name).is_file() for name in ("run.json", "verdict.json", "matrix.csv"))


def write_report(run_dir: Path, *, plots: bool = True, out: Path | None = None) -> list[Path]:
    """Write folded stacks, flame graphs, PNGs and summary.md into `out` (default: `run_dir`
    itself); return the paths. summary.md links the CSVs where they are.

    Every CSV in the directory is considered; unknown shapes are listed in the summary as tables.
    Sub-directories that are run directories (a crosscheck's two sides) get their own report,
    linked from this summary.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(
            f"no results directory at {run_dir}", "pass a directory made by `harness run`"
        )
    record = read_run(run_dir)
    meta = record.as_read() if record is not None else {}
    csvs = sorted(run_dir.glob("*.csv"))
    parts = run_parts(run_dir)
    if not csvs and not meta and not parts:
        raise ReportError(
            f"{run_dir} has no CSV files and no run.json",
            "pass a directory made by `harness run`, `crosscheck` or `bench`",
        )
    dest = run_dir if out is None else Path(out)
    check_writable(dest, "pass --out DIR, a directory you can write")
    written = [
        p for part in parts
        for p in write_report(part, plots=plots, out=None if out is None else dest / part.name)
    ]
    maps = [_report_map(csv, meta, plots, dest) for csv in csvs]
    text = _summary(run_dir, meta, maps, dest, record.notes if record is not None else [])
    if parts:
        text += "\n## Parts\n\n" + "".join(
            f"- [{p.name}/]({p.name}/summary.md): {_part_line(p)}\n" for p in parts
        )
    others = sorted(p for p in run_dir.glob("*.json") if p.name != "run.json")
    if others:
        text += "\nAlso here: " + ", ".join(
            f"[{p.name}]({os.path.relpath(p, dest)})" for p in others
        ) + "\n"
    summary = dest / SUMMARY
    summary.write_text(text)
    return [*written, *(p for m in maps for p, _ in m.files), summary]


def _relative(note: str, run_dir: Path) -> str:
    """A reader's note without the run directory's path (the report is in it)."""
    return note.replace(f"{run_dir / 'run.json'}", "run.json")


def _part_line(part: Path) -> str:
    names = sorted(p.name for p in part.glob("*.csv"))
    return ", ".join(names) or "run.json only"
