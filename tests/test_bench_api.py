"""harness.bench and harness.doctor from Python: the library behind `harness bench` and
`harness doctor`, which only print what these return.

The bench's counts are read against the workload's own: the getppid loop makes exactly N calls,
so the traced run's bpftrace map counts N. No timing is asserted.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

import harness
from harness.api.bench import BenchStart
from harness.compare.bench import Sample

N = 3000


def test_bench_returns_its_rounds_and_files(needs_bpf: None, tmp_path: Path) -> None:
    starts: list[BenchStart] = []
    heard: list[Sample] = []
    done = harness.bench(
        "syscalls", rounds=1, max_rounds=1, warmup=0, events=N, modes=["bpftrace"],
        together=False, out=tmp_path, report=False, on_start=starts.append,
        on_sample=heard.append,
    )
    assert [s.name for s in starts] == ["syscalls"] and starts[0].runs == 2
    assert starts[0].modes == ["untraced", "bpftrace"] and not starts[0].together
    assert heard == done.result.samples and [s.mode for s in heard] == ["untraced", "bpftrace"]
    with done.csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert done.csv == tmp_path / "syscalls.csv"
    assert [(r["mode"], r["events_counted"]) for r in rows] == [("untraced", ""),
                                                               ("bpftrace", str(N))]
    assert done.md.read_text() == done.summary and "| bpftrace |" in done.summary
    # the measured program, once under sources/ named by its content; the CSV names it
    [source] = done.sources
    text = source.read_text()
    assert source == tmp_path / "sources" / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.bt"
    assert "sys_enter_getppid" in text
    assert [r["program"] for r in rows] == ["", "sources/" + source.name]
    assert f"bpftrace [sources/{source.name}]" in done.summary
    assert done.report == [] and not (tmp_path / "summary.md").exists()


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"rounds": 0}, ["rounds=0", "below 1"]),
        ({"rounds": 5, "max_rounds": 2}, ["--max-rounds 2 is below --rounds 5"]),
        ({"precision": 2.0}, ["--precision 2.0", "fraction"]),
        ({"modes": "bpftrace"}, ["modes='bpftrace'", "list of modes"]),
        ({"modes": ["nosuch"]}, ["unknown mode 'nosuch'"]),
        ({"label": "a/b"}, ["--label 'a/b'", "file-name suffix"]),
        ({"count_by": "comm"}, ["spec options (count_by)", "catalog entry 'syscalls'"]),
        ({"prebuilt": "/nonexistent"}, ["--prebuilt /nonexistent is not a directory"]),
        ({"lane": 5}, ["lane=5"]),
        ({"on_sample": "print"}, ["on_sample='print'", "function"]),
        ({"bpftrace": 0.27}, ["bpftrace=0.27"]),
    ],
)
def test_a_wrong_bench_argument_is_refused_before_anything_runs(
    tmp_path: Path, given: dict[str, object], said: list[str]
) -> None:
    out = tmp_path / "bench"
    with pytest.raises(harness.UsageError) as refused:
        harness.bench("syscalls", out=out, **given)  # type: ignore[arg-type]
    assert "\n" not in str(refused.value)
    for word in said:
        assert word in str(refused.value)
    assert not out.exists()


def test_a_table_refuses_an_unknown_kernel_before_any_boot(tmp_path: Path) -> None:
    with pytest.raises(harness.UsageError, match=r"unknown kernels: 7\.0"):
        harness.bench_table("syscalls", kernels=["7.0", "host"], out=tmp_path)
    with pytest.raises(harness.UsageError, match=r"kernels='6\.1'"):
        harness.bench_table("syscalls", kernels="6.1", out=tmp_path)  # type: ignore[arg-type]


def test_doctor_names_the_attach_type_a_run_of_ktrace_gets(needs_bpf: None) -> None:
    found = harness.doctor()
    planned = harness.plan("ktrace", duration=1, twin=False)
    assert found.attach_choice["attach"] == planned.attach
    assert planned.reason.startswith(str(found.attach_choice["reason"]).split(" (")[0])
    names = [b["name"] for b in found.bpftraces]
    assert names[0].startswith("system")
    assert found.as_dict()["kernel"] == found.capabilities["kernel"]
