"""`matrix`: one crosscheck per kernel (VM lane guests and/or the host) and bpftrace release,
with matrix.csv, the releases' frames compared, and CO-RE's one .bpf.o per attach type
(`harness matrix`)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import arguments
from harness.api.crosscheck import Crosscheck, crosscheck
from harness.api.inputs import Out
from harness.compare.objects import OneObjectPerAttach
from harness.errors import HarnessError, UsageError
from harness.host.bpftrace_versions import resolve
from harness.host.runner import Interrupted
from harness.lanes.debian import SUITES
from harness.lanes.registry import get_lane
from harness.report.rundir import new_run_dir
from harness.spec import catalog

if TYPE_CHECKING:
    import pandas as pd

    from harness.progress import Progress


MATRIX_COLUMNS = (
    "kernel_series",
    "kernel",
    "bpftrace",
    "lane",
    "accel",
    "attach",
    "bpftrace_events",
    "libbpf_events",
    "verdict",
    "versions_agree",
    "core_relocations",
    "bpf_obj_sha256",
    "error",
)


@dataclass
class Matrix(OneObjectPerAttach):
    """What `matrix` found: one row per (kernel, bpftrace release), as matrix.csv holds them.

    rows: dicts keyed by MATRIX_COLUMNS (kernel_series, kernel, bpftrace, lane, accel, attach,
        bpftrace_events, libbpf_events, verdict `pass`/`FAIL`/`error`, versions_agree,
        core_relocations, bpf_obj_sha256, error); a kernel that failed keeps its row.
    path: the matrix directory (matrix.csv, one crosscheck directory per kernel), or None.
    notes: the releases' map-by-map comparison, as lines to print.
    """

    rows: list[dict[str, Any]]
    path: Path | None
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every kernel passed, one .bpf.o per attach type, every release agreed."""
        agree = all(r["versions_agree"] in ("-", "yes") for r in self.rows)
        return all(r["verdict"] == "pass" for r in self.rows) and (
            self.one_object_per_attach and agree
        )


def matrix(
    target: str = "ktrace",
    *,
    kernels: Sequence[str] = ("6.1", "6.12", "host"),
    count: int = 60,
    timeout: float = 600.0,
    out: Out = None,
    bpftrace: Sequence[str | None] = (None,),
    on_kernel: Callable[[str], None] | None = None,
    progress: Progress | None = None,
) -> Matrix:
    """`crosscheck` on each kernel, one booted guest per series; a failing kernel keeps its row.

    kernels: Debian series of the VM lane (`6.1`, `6.12`) and/or `host`.
    count: datagrams per crosscheck. timeout: seconds per step in each kernel.
    out: where matrix.csv and one crosscheck directory per kernel go; None makes
        results/matrix-<target>-<UTC time>/, False writes nothing.
    bpftrace: the releases to run on each kernel (None: the system's); with several, each
        kernel's bpftrace frames are compared across them (harness.compare.versions) and a
        differing map is written as <kernel>/versions-A-vs-B/<map>.csv.
    on_kernel: called with each series before its crosscheck starts (progress).
    progress: hears each guest's boot and each crosscheck's phases, as in `crosscheck`.
    """
    arguments.text("target", target, "'ktrace'")
    catalog.get(target)  # an unknown entry fails once, not once per kernel
    kernels = arguments.names("kernels", kernels, "['6.1', 'host']")
    bpftrace = arguments.names("bpftrace", bpftrace, "['0.17', '0.27']", none_ok=True)
    arguments.integer("count", count, 1, "60")
    arguments.seconds("timeout", timeout, "600")
    arguments.out(out)
    arguments.callback("on_kernel", on_kernel)
    arguments.callback("progress", progress)
    unknown = [k for k in kernels if k != "host" and k not in SUITES]
    if unknown or not kernels:
        raise UsageError(
            f"unknown kernels: {', '.join(unknown) or '(none given)'}",
            f"choose from: {', '.join([*SUITES, 'host'])}",
        )
    path = None if out is False else Path(out) if out is not None else new_run_dir(
        f"matrix-{target}"
    )
    # Unknown names fail before any guest boots, and roots are built here; the system's own
    # release runs as the default, the same binary in a guest.
    chosen = {name: (None if resolve(name).name == "system" else name) for name in bpftrace}
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for series in kernels:
        if on_kernel is not None:
            on_kernel(series)
        lane = get_lane("host" if series == "host" else f"vm:{series}")
        runs: list[tuple[str, Crosscheck | None, dict[str, Any]]] = []
        for version in bpftrace:
            sub = None if path is None else path / series
            if sub is not None and version:
                sub = sub / f"bpftrace-{version}"
            try:
                x: Crosscheck | None = crosscheck(
                    target,
                    lane=lane,
                    count=count,
                    timeout=timeout,
                    out=False if sub is None else sub,
                    bpftrace=chosen[version],
                    progress=progress,
                )
                rows.append(_matrix_row(series, x, ""))
            except Interrupted as err:
                # Ctrl-C/SIGTERM: the interrupted crosscheck wrote what it gathered; the
                # rows so far are written too, and nothing more runs.
                rows.append(_matrix_row(series, None, str(err), lane.describe()))
                _matrix_csv(path, rows)
                raise
            except HarnessError as err:
                x = None
                rows.append(_matrix_row(series, None, str(err), lane.describe()))
            runs.append((version or "system", x, rows[-1]))
        if series != "host":
            # One guest at a time: two TCG guests would share the host's cores, and a guest
            # left running beside the next one's boot has been seen to make that boot fail.
            lane.close()
        notes += _compare_versions(runs, None if path is None else path / series)
    _matrix_csv(path, rows)
    return Matrix(rows, path, notes)


def _matrix_csv(path: Path | None, rows: list[dict[str, Any]]) -> None:
    """matrix.csv: one row per kernel and release run (nothing when `path` is None)."""
    if path is None:
        return
    path.mkdir(parents=True, exist_ok=True)
    with (path / "matrix.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MATRIX_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _compare_versions(
    runs: list[tuple[str, Crosscheck | None, dict[str, Any]]], where: Path | None
) -> list[str]:
    """Each release's bpftrace frames against the first release's, on one kernel; the verdict
    goes into the rows, each differing map into <kernel>/versions-<A>-vs-<B>/<map>.csv."""
    from harness.compare.versions import compare_frames

    notes: list[str] = []
    if len(runs) < 2:
        return notes
    base_label, base, _ = runs[0]
    for label, x, row in runs[1:]:
        if base is None or x is None:
            row["versions_agree"] = "not compared (a run failed)"
            continue
        diffs = compare_frames(base.bpftrace, x.bpftrace, (base_label, label))
        bad = [d for d in diffs if not d.equal]
        row["versions_agree"] = "yes" if not bad else "NO: " + ", ".join(d.map_name for d in bad)
        notes += [
            f"   {base_label} vs {label} {d.map_name}: {'equal' if d.equal else 'DIFFER'} ({d.how})"
            for d in diffs
        ]
        for d in bad:
            notes.append(d.diff.head(20).to_string(index=False))
            if where is not None:
                folder = where / f"versions-{base_label}-vs-{label}"
                folder.mkdir(parents=True, exist_ok=True)
                d.diff.to_csv(folder / f"{d.map_name.lstrip('@') or 'map'}.csv", index=False)
    return notes


def _matrix_row(
    series: str, x: Crosscheck | None, error: str, lane: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    lane = x.meta.lane if x is not None else (lane or {})

    def events(frames: Mapping[str, pd.DataFrame]) -> int | None:
        frame = frames.get("@stacks")
        return None if frame is None else int(frame["value"].sum())

    return {
        "kernel_series": series,
        "kernel": x.meta.kernel if x is not None else lane.get("release", ""),
        "bpftrace": x.meta.bpftrace if x is not None else "",
        "lane": "host" if series == "host" else "vm",
        "accel": lane.get("accel") or "-",
        "attach": x.attach if x is not None else "",
        "bpftrace_events": events(x.bpftrace) if x is not None else None,
        "libbpf_events": events(x.libbpf) if x is not None else None,
        "verdict": ("pass" if x.passed else "FAIL") if x is not None else "error",
        "versions_agree": "-",
        "core_relocations": " ".join(
            f"{k}@{v}" for k, v in sorted((x.meta.core_relocations if x else {}).items())
        ),
        "bpf_obj_sha256": x.bpf_obj_sha256 if x is not None else "",
        "error": error or ("; ".join(k for k, v in (x.maps if x else {}).items() if not v.equal)),
    }
