"""`harness matrix` on the host row (the VM rows run the same crosscheck inside guests)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from harness.cli import main
from harness.compare.crosscheck import resolve_spec, twin_program
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
