"""summary.md says only what is true: totals for maps that count, nothing for unset fields."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.report.summary import write_report


def test_totals_only_for_count_and_sum_maps_and_no_none_fields(tmp_path: Path) -> None:
    program = ("tracepoint:syscalls:sys_enter_getppid {\n  @calls[comm] = count();\n"
               "  @mean[comm] = avg(args->__syscall_nr);\n  @bytes = sum(args->__syscall_nr);\n}\n")
    pd.DataFrame({"comm": ["a", "b"], "value": [3, 4]}).to_csv(tmp_path / "calls.csv", index=False)
    pd.DataFrame({"comm": ["a", "b"], "value": [110, 110]}).to_csv(tmp_path / "mean.csv",
                                                                    index=False)
    pd.DataFrame({"value": [220]}).to_csv(tmp_path / "bytes.csv", index=False)
    (tmp_path / "run.json").write_text(json.dumps({"program": program, "error": None}))
    write_report(tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    rows = {line.split("|")[1].strip(): line.split("|") for line in summary.splitlines()
            if line.startswith("| [")}
    assert rows["[calls.csv](calls.csv)"][4].strip() == "7"
    assert rows["[bytes.csv](bytes.csv)"][4].strip() == "220"
    assert rows["[mean.csv](mean.csv)"][4].strip() == ""
    assert "| error |" not in summary


def test_a_map_printed_several_times_gets_a_line_plot_over_time(tmp_path: Path) -> None:
    frame = pd.DataFrame({"printing": [1, 1, 2, 2, 3], "t_s": [0.2, 0.2, 0.4, 0.4, 0.6],
                          "comm": ["a", "b", "a", "b", "a"], "value": [5, 1, 7, 2, 9]})
    frame.to_csv(tmp_path / "c.csv", index=False)
    (tmp_path / "run.json").write_text(json.dumps({"program": "i:ms:200 { @c[comm] = count(); }"}))
    write_report(tmp_path, plots=False)
    assert "line plot over time: `harness report` draws it" in (tmp_path / "summary.md").read_text()
    assert not (tmp_path / "c.series.png").exists()
    write_report(tmp_path, plots=True)
    png = tmp_path / "c.series.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "[c.series.png](c.series.png)" in (tmp_path / "summary.md").read_text()
