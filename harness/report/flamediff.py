"""Two runs' stack maps compared: a differential flame graph and a per-stack table.

The convention is difffolded's (Brendan Gregg's differential flame graphs): frame widths come from
the second run (B), colour from the change A -> B, red where a path grew and blue where it
shrank. Paths only A has have no width in B's graph; the CSV lists every stack of either run with
both counts, so nothing is left out. `<map>.diff.folded` holds `stack count_a count_b` lines,
which flamegraph.pl draws as the same differential graph.

Kernel stacks of two builds differ in every `+offset` even where the code path is the same, so
offsets are dropped by default (`keep_offsets=True` keeps them).
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.output.printed import printed_total, shown_printing
from harness.report import flamegraph
from harness.report.rundir import check_writable, csv_name, map_of, new_run_dir
from harness.report.summary import DAMAGED_CSV, probe_of, read_csv, read_run, run_parts

_OFFSET = re.compile(r"\+(?:0x[0-9a-fA-F]+|\d+)(?= \(|_\[k\]$|$)")
CSV_COLUMNS = ("stack", "count_a", "count_b", "delta", "ratio", "share_a_pct", "share_b_pct")


class DiffError(HarnessError):
    """The runs given to `harness diff` have no stack map to compare."""


@dataclass
class Stacks:
    """One side of a diff: the stack counts of one map and where they came from."""

    counts: Counter[tuple[str, ...]]
    source: Path
    map_name: str
    meta: dict[str, Any] = field(default_factory=dict)
    printing: int = 1  # the printing of the map the counts are (a CSV keeps every one)
    notes: list[str] = field(default_factory=list)  # what its run.json lacked (an older one)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def printed_total(self) -> int | None:
        """The total bpftrace printed for this printing of the map (run.json's `printed`),
        None for a .folded file or a run that recorded none."""
        return printed_total(self.meta.get("printed") or {}, self.map_name, self.printing)


@dataclass
class DiffRow:
    stack: tuple[str, ...]
    count_a: int
    count_b: int

    @property
    def delta(self) -> int:
        return self.count_b - self.count_a

    @property
    def ratio(self) -> float | None:
        return self.count_b / self.count_a if self.count_a else None


@dataclass
class Diff:
    """What `write_diff` wrote and the numbers a caller prints."""

    a: Stacks
    b: Stacks
    rows: list[DiffRow]
    files: list[Path]

    @property
    def differences(self) -> list[str]:
        """Where a side's stacks do not add up to what bpftrace printed for that map, one
        line each (the printed-totals invariant, as `harness run` checks its own files)."""
        lines = []
        for side, s in (("A", self.a), ("B", self.b)):
            want = s.printed_total()
            if want is not None and want != s.total:
                lines.append(f"{side} ({_short(s.source)}) {s.map_name}: the diff holds "
                             f"{s.total} of the {want} bpftrace printed (printing {s.printing})")
        return lines

    @property
    def notes(self) -> list[str]:
        """What either side's run.json lacked (an older run directory), one line each."""
        return [f"{side} ({_short(s.source)}): {note}" for side, s in (("A", self.a), ("B", self.b))
                for note in s.notes]

    @property
    def only_a(self) -> list[DiffRow]:
        return [r for r in self.rows if r.count_b == 0]

    @property
    def only_b(self) -> list[DiffRow]:
        return [r for r in self.rows if r.count_a == 0]


def _stack_maps(run_dir: Path) -> dict[str, Path]:
    """`@name` -> CSV for every map in run_dir that holds stacks."""
    found = {}
    for path in sorted(run_dir.glob("*.csv")):
        if flamegraph.stack_columns(read_csv(path)):
            found[map_of(path.stem)] = path
    return found


def _from_csv(path: Path) -> Stacks:
    """The stacks of a run CSV: its last printing, as the run's .folded and page show it; the
    run.json beside it (read through harness.report.record) says what bpftrace printed."""
    record = read_run(path.parent)
    meta = record.as_read() if record is not None else {}

    frame = read_csv(path)
    cols = flamegraph.stack_columns(frame)
    if not cols:
        raise DiffError(f"{path} holds no stacks", "pass a stack map with --map (e.g. @stacks)")
    try:
        counts = flamegraph.folded_counts(frame, cols)
    except ValueError as err:
        raise DiffError(f"{path}: {err}", DAMAGED_CSV) from None
    printing = shown_printing({"printing": frame["printing"].tolist()}
                              if "printing" in frame.columns else {})
    return Stacks(counts, path, map_of(path.stem), meta, printing,
                  record.notes if record is not None else [])


def load_stacks(source: Path, map_name: str | None = None) -> Stacks:
    """The stack map of a run directory (or a crosscheck's bpftrace/ part), a CSV or a .folded.

    Without `map_name` the run must hold exactly one stack map.
    """
    source = Path(source)
    if source.is_file():
        if source.suffix == ".folded":
            try:
                with source.open() as f:
                    counts = flamegraph.parse_folded(f)
            except (ValueError, UnicodeDecodeError) as err:  # UnicodeDecodeError is one
                raise DiffError(f"{source} is not a folded-stacks file ({err})",
                                "pass a .folded written by harness or stackcollapse") from None
            return Stacks(counts, source, map_of(source.name.split(".")[0]))
        return _from_csv(source)  # a run's CSV: its run.json beside
    if not source.is_dir():
        raise DiffError(f"no run directory or file at {source}", "pass a `harness run` directory")
    # A crosscheck (and each kernel of a matrix) keeps bpftrace's maps in bpftrace/.
    parts = run_parts(source)
    dirs = [source, *sorted(parts, key=lambda d: d.name != "bpftrace")]
    for run_dir in dirs:
        if map_name is not None:
            path = run_dir / csv_name(map_name)
            if path.exists():
                return _from_csv(path)
            continue
        maps = _stack_maps(run_dir)
        if len(maps) == 1:
            (_label, path), = maps.items()
            return _from_csv(path)
        if len(maps) > 1:
            raise DiffError(
                f"{run_dir} has several stack maps ({', '.join(maps)})",
                "choose one with --map, e.g. --map " + next(iter(maps)),
            )
    wanted = f"map {map_name}" if map_name else "stack map"
    nor = f" (nor in {', '.join(d.name + '/' for d in parts)})" if parts else ""
    raise DiffError(
        f"no {wanted} in {source}{nor}",
        "pass a directory made by `harness run` or `crosscheck` that counted stacks",
    )


def strip_offsets(counts: Mapping[tuple[str, ...], int]) -> Counter[tuple[str, ...]]:
    """`udp_send_skb+423` -> `udp_send_skb`; stacks that become equal add up."""
    out: Counter[tuple[str, ...]] = Counter()
    for stack, count in counts.items():
        out[tuple(_OFFSET.sub("", f) for f in stack)] += count
    return out


def diff_rows(a: Mapping[tuple[str, ...], int], b: Mapping[tuple[str, ...], int]) -> list[DiffRow]:
    """Every stack of either side with both counts; largest change first, then by stack."""
    rows = [DiffRow(s, int(a.get(s, 0)), int(b.get(s, 0))) for s in set(a) | set(b)]
    return sorted(rows, key=lambda r: (-abs(r.delta), r.stack))


def write_diff_csv(rows: list[DiffRow], total_a: int, total_b: int, path: Path) -> Path:
    """stack (root first, ';' joined), both counts, delta B-A, ratio B/A and each side's share."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in rows:
            writer.writerow(
                [
                    ";".join(r.stack),
                    r.count_a,
                    r.count_b,
                    r.delta,
                    "" if r.ratio is None else f"{r.ratio:.4f}",
                    f"{100 * r.count_a / total_a:.3f}" if total_a else "",
                    f"{100 * r.count_b / total_b:.3f}" if total_b else "",
                ]
            )
    return path


def write_diff_folded(rows: list[DiffRow], path: Path) -> Path:
    """difffolded's format: `stack count_a count_b`, readable by flamegraph.pl."""
    ordered = sorted(rows, key=lambda r: r.stack)
    path.write_text("".join(f"{';'.join(r.stack)} {r.count_a} {r.count_b}\n" for r in ordered))
    return path


def _short(path: Path) -> str:
    """The last two parts of a run's path: enough to tell `6.1/` from `6.12/` or two run ids."""
    return "/".join(Path(path).resolve().parts[-2:])


def write_diff(
    run_a: Path,
    run_b: Path,
    out_dir: Path | None = None,
    *,
    map_name: str | None = None,
    keep_offsets: bool = False,
) -> Diff:
    """Compare one stack map of two runs; write `<map>.diff.html`, `.diff.csv`, `.diff.folded`.

    `out_dir` None makes results/diff-<time>/, once both inputs have been read.
    The page colours each frame by its own relative change; when the totals differ it compares
    shares (A scaled to B's total) and says so. The CSV always holds the raw counts (and each
    side's share).
    """
    a = load_stacks(run_a, map_name)
    b = load_stacks(run_b, map_name or a.map_name)
    if not keep_offsets:
        a.counts, b.counts = strip_offsets(a.counts), strip_offsets(b.counts)
    rows = diff_rows(a.counts, b.counts)
    if out_dir is None:
        out_dir = new_run_dir("diff")
    check_writable(out_dir, "pass --out DIR, a directory you can write")
    stem = csv_name(b.map_name)[: -len(".csv")]
    files = [
        write_diff_csv(rows, a.total, b.total, out_dir / f"{stem}.diff.csv"),
        write_diff_folded(rows, out_dir / f"{stem}.diff.folded"),
    ]
    probe = probe_of(b.meta) or probe_of(a.meta)
    title = " · ".join(
        [b.map_name, *([probe] if probe else []), f"{b.total} samples (A: {a.total})"]
    )
    gone = [r for r in rows if r.count_b == 0]
    diff = Diff(a, b, rows, files)  # the page, written last, joins its files
    missing = diff.differences
    subtitle = ("NOT ALL PRINTED SAMPLES: " + "; ".join(missing) + ". " if missing else "") + (
        f"A = {_short(run_a)}, B = {_short(run_b)}. Widths from B, colour from A->B."
        + (
            f" {len(gone)} stacks only in A ({sum(r.count_a for r in gone)} samples) have no "
            f"width here; {stem}.diff.csv lists them."
            if gone
            else ""
        )
    )
    files.append(
        flamegraph.write_flame_html(
            b.counts, out_dir / f"{stem}.diff.html", title, subtitle=subtitle,
            baseline=a.counts, merge=not keep_offsets,
        )
    )
    return diff
