"""`harness matrix` on the host row (the VM rows run the same crosscheck inside guests)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from harness.api.planner import resolve_spec
from harness.cli import main
from harness.compare.crosscheck import twin_program
from harness.twin.build import build_twin


@pytest.mark.usefixtures("needs_bpf")
def test_host_row_has_verdict_attach_and_core_offsets(tmp_path: Path) -> None:
    assert (
        main(["matrix", "ktrace", "--kernels", "host", "--count", "30", "--out", str(tmp_path)])
        == 0
    )
    (row,) = list(csv.DictReader((tmp_path / "matrix.csv").open()))
    assert row["verdict"] == "pass" and row["lane"] == "host"
    assert row["bpftrace_events"] == row["libbpf_events"] == "30"
    assert "sk_buff.hash@" in row["core_relocations"]
    spec, *_ = resolve_spec("ktrace", None, row["attach"])
    assert row["bpf_obj_sha256"] == build_twin(twin_program(spec).text).sha256


def test_unknown_kernel_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", "ktrace", "--kernels", "5.4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "harness matrix: error: unknown kernels: 5.4; choose from: 6.1, 6.12, host"


def _row(series: str, attach: str, sha: str) -> dict[str, object]:
    return {"kernel_series": series, "attach": attach, "bpf_obj_sha256": sha,
            "verdict": "pass", "versions_agree": "-"}


def test_one_object_per_attach_type_not_one_for_all() -> None:
    from harness.api.matrix import Matrix

    # The host (no kprobes) runs the tracepoint twin; the guests share the kprobe object.
    rows = [_row("6.1", "kprobe", "a" * 64), _row("6.12", "kprobe", "a" * 64),
            _row("host", "tracepoint", "b" * 64)]
    m = Matrix(rows, None)
    assert m.passed and m.objects() == {"kprobe": {"a" * 64}, "tracepoint": {"b" * 64}}
    rows[1]["bpf_obj_sha256"] = "c" * 64  # a guest that rebuilt its own object breaks CO-RE
    assert not Matrix(rows, None).passed
