"""output.columns (the pandas-free tables `harness run` writes from) against output.frames: the
same run gives byte-identical CSVs either way, over every corpus capture (text and json) and a
capture with timed printings; and importing the quick path pulls in no pandas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.output.columns import to_tables
from harness.output.frames import to_frames
from harness.output.parse import parse_json, parse_text
from harness.report.rundir import write_run_dir, write_tables

DATA = Path(__file__).resolve().parent / "data"
CAPTURES = sorted(
    [*DATA.glob("corpus*/*/stdout.txt"), *DATA.glob("corpus*/*/stdout.json")]
)


def parsed(path: Path, timed: bool = False):  # type: ignore[no-untyped-def]
    text = path.read_text()
    times = [0.25 * i + 0.1 for i in range(text.count("\n") + 1)] if timed else None
    parse = parse_json if path.suffix == ".json" else parse_text
    return parse(text, line_times=times)


@pytest.mark.parametrize(
    "path", CAPTURES, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name}"
)
@pytest.mark.parametrize("timed", [False, True])
def test_tables_write_the_same_csv_bytes_as_frames(path: Path, timed: bool, tmp_path: Path) -> None:
    output = parsed(path, timed)
    assert output.maps, "a capture with maps"
    frames_dir = write_run_dir(tmp_path / "frames", to_frames(output), {})
    tables_dir = write_tables(tmp_path / "tables", to_tables(output), {})
    names = sorted(p.name for p in frames_dir.glob("*.csv"))
    assert names == sorted(p.name for p in tables_dir.glob("*.csv")) and names
    for name in names:
        assert (tables_dir / name).read_bytes() == (frames_dir / name).read_bytes(), name


def test_key_names_apply_to_tables_as_to_frames() -> None:
    output = parsed(DATA / "corpus" / "udp_kstack" / "stdout.txt")
    names = {"@by_comm_stack": ["comm", "kstack"]}
    tables, frames = to_tables(output, names), to_frames(output, names)
    assert tables["@by_comm_stack"].columns == list(frames["@by_comm_stack"].columns)
    assert tables["@by_comm_stack"].columns[:2] == ["comm", "kstack"]


def test_quick_path_imports_no_pandas() -> None:
    code = (
        "import sys\n"
        "from harness.output.parse import parse_text\n"
        "from harness.output.columns import to_tables\n"
        "from harness.report.rundir import write_tables\n"
        "from harness.report import flamegraph, summary\n"
        "import harness.api.trace, harness.api.again, harness.cli.run, harness.cli.tables\n"
        "print('pandas' in sys.modules, 'matplotlib' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
