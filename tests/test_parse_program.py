"""What the parser is told besides the text: the program that printed it, and whether the
stream ended inside a line.

- A printf line shaped like a map line (`@x: 5`) is a printed line when the program has no map
  `@x`: checked against the same program's `-f json` run, where printf text is typed.
- A stream that ends without a newline was cut off: the runner keeps that end from the pty to
  the parser (tests/test_parse_cuts.py sweeps the cuts themselves).
- Numbers no 64-bit integer holds and json records of shapes bpftrace never writes end in a
  value read as text with a warning, or in one error line, never in a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import harness
from harness.host.runner import _StreamReader, stdout_to_parse
from harness.output.frames import to_frames
from harness.output.parse import ParseError, parse_json, parse_text
from harness.spec.literal import map_names, print_targets

kernel = pytest.mark.usefixtures("needs_bpf")

# printf lines shaped as every kind of map line, beside the maps the program really has
PRINTF_PROGRAM = r"""BEGIN {
  @y[1] = 1; @y[2] = 22;
  @z = stats(5);
  printf("@x: 5\n");
  printf("@n[1]: count 2, average 3, total 6\n");
  printf("@h:\n[4, 8)   3 |@@@@ |\n");
  printf("@[python]: 12\n");
  exit();
}
"""
PRINTED = ["@x: 5", "@n[1]: count 2, average 3, total 6", "@h:", "[4, 8)   3 |@@@@ |",
           "@[python]: 12"]


def test_map_names_skip_strings_and_comments() -> None:
    program = 'BEGIN { @a = 1; @[comm] = count(); printf("@b: %d\\n", 1); } // @c\n/* @d */'
    assert map_names(program) == {"@a", "@"}
    assert map_names(PRINTF_PROGRAM) == {"@y", "@z"}


def test_print_targets_skip_strings_and_comments() -> None:
    program = ('interval:s:1 { print(@a); printf("print(@b)\\n"); } // print(@c)\n'
               "/* print(@d) */ END { print( @ ); }")
    assert print_targets(program) == {"@a", "@"}


def test_a_printf_line_shaped_like_a_map_line_stays_printed() -> None:
    text = ("Attaching 1 probe...\n@x: 5\n@y[7]: 3\n@x[2]: 4\n@z: count 1, average 5, total 5\n"
            "\n@y[1]: 1\n@x: 6\n@y[2]: 22\n")
    out = parse_text(text, program=PRINTF_PROGRAM)
    assert [(m.name, m.packed_keys, m.values) for m in out.maps] == [
        ("@y", [7], [3]), ("@z", [()], [harness.output.model.Stats(1, 5, 5)]),
        ("@y", [1], [1]), ("@y", [2], [22])]
    assert out.lines == ["@x: 5", "@x[2]: 4", "@x: 6"] and not out.warnings
    blind = parse_text(text)  # without the program, the text format cannot tell (a limit)
    assert "@x" in blind.names()


@kernel
def test_printf_lines_match_the_json_runs_printf_records(run_cli: Any, tmp_path: Path) -> None:
    """The run's maps and printed lines are those of the same program run with -f json,
    where bpftrace types each record (printf vs map)."""
    t = harness.trace(PRINTF_PROGRAM, out=tmp_path / "run", report=False)
    assert t.error is None, t.error
    done = subprocess.run(["bpftrace", "-f", "json", "-e", PRINTF_PROGRAM], capture_output=True,
                          text=True, timeout=60, check=True)
    json_out = parse_json(done.stdout)
    assert t.output.names() == json_out.names() == ["@y", "@z"]
    for name in ("@y", "@z"):
        assert to_frames(t.output)[name].equals(to_frames(json_out)[name]), name
    printed = [ln for ln in json_out.lines if ln]
    assert [ln for ln in t.output.lines if ln in printed] == printed == PRINTED
    assert not t.output.unparsed
    # the run directory re-parses the same: `harness parse` takes the program from run.json
    again = run_cli("parse", str(tmp_path / "run" / "stdout.txt"))
    assert again.status == 0 and "program from" in again.out, again.err
    assert "2 maps, program from" in again.out, again.out  # (its printed lines: + the marker)


def test_parse_cli_takes_the_program(run_cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    out.write_text("Attaching 1 probe...\n@x: 5\n\n@y[1]: 1\n")
    prog = tmp_path / "p.bt"
    prog.write_text(PRINTF_PROGRAM)
    blind = run_cli("parse", str(out))
    told = run_cli("parse", str(out), "--program", str(prog))
    assert blind.status == told.status == 0, (blind.err, told.err)
    assert "2 maps" in blind.out and "1 maps" in told.out and f"program from {prog}" in told.out
    assert "1 printed lines" in told.out


def _read_through_pty(data: bytes) -> _StreamReader:
    """A real process writes `data` to a pty and exits; the runner's reader reads it."""
    main_fd, sub_fd = os.openpty()
    err_r, err_w = os.pipe()
    proc = subprocess.Popen(["head", "-c", str(len(data))], stdin=subprocess.PIPE,
                            stdout=sub_fd, stderr=err_w)
    os.close(sub_fd)
    os.close(err_w)
    reader = _StreamReader(main_fd, err_r)
    reader.start()
    assert proc.communicate(data, timeout=10)
    reader.wait_for(lambda: reader.out_eof, time.monotonic() + 10)
    reader.join(10)
    os.close(main_fd)
    os.close(err_r)
    return reader


def test_a_stream_cut_inside_its_last_line_stays_cut_to_the_parser() -> None:
    cut = _read_through_pty(b"Attaching 1 probe...\nREADY\n@c[1]: 12\n@c[2]: 49")
    whole = _read_through_pty(b"Attaching 1 probe...\nREADY\n@c[1]: 12\n@c[2]: 4908\n")
    assert cut.cut and not whole.cut
    for reader, end in ((cut, "@c[2]: 49"), (whole, "@c[2]: 4908\n")):
        text = stdout_to_parse(reader.stdout(), "READY", 1)
        assert text.endswith(end) and text.split("\n")[1] == ""  # marker blanked
        out = parse_text(text)
        assert out.maps[0].values == ([12] if reader.cut else [12, 4908])
        assert bool(out.unparsed) == reader.cut == any("line 4: incomplete" in w
                                                       for w in out.warnings)


# --- values the parser cannot take as bpftrace's -----------------------------------------------

@pytest.mark.parametrize("digits", ["12345678901234567890123456789012345678", "9" * 10_000_000,
                                    "99999999999999999999"])
def test_a_number_no_64_bits_hold_is_a_string_value(run_cli: Any, tmp_path: Path,
                                                    digits: str) -> None:
    """bpftrace prints integers of 64 bits and strings raw: a longer run of digits is a string
    value, so its map is a string map; one warning says so, the CSV holds it whole."""
    path = tmp_path / "out.txt"
    path.write_text(f"Attaching 1 probe...\n@x[1]: 5\n@x[2]: {digits}\n")
    done = run_cli("parse", str(path), "--csv", str(tmp_path / "csv"))
    assert done.status == 0 and "Traceback" not in done.err
    assert done.err.splitlines() == [
        f"warning: line 2: @x holds a value of {len(digits)} digits, beyond bpftrace's 64-bit "
        "integers: its values are read as strings"]
    assert (tmp_path / "csv" / "x.csv").read_text() == f"key0,value\n1,5\n2,{digits}\n"


@pytest.mark.parametrize(("record", "said"), [
    ({"type": "map", "data": [1, 2, 3]}, "the \"data\" of a map record is not an object"),
    ({"type": 5}, "\"type\" is not a string"),
    ({"type": "hist", "data": {"@h": [{"min": "a"}]}}, "@h: a hist bucket has an int count"),
    ({"type": "hist", "data": {"@h": {"k": 3}}}, "@h: a hist value is a list of buckets"),
    ({"type": "stats", "data": {"@s": {"count": 1, "average": "x", "total": 1}}},
     "@s: a stats value has int count"),
    ({"type": "map", "data": {"@x": {"1": 10 ** 40}}}, "@x: an int of 41 digits"),
    ({"type": "attached_probes", "data": {"probes": "x"}}, "no int probe count"),
])
def test_a_json_record_of_a_wrong_shape_is_one_error(run_cli: Any, tmp_path: Path,
                                                     record: dict[str, Any], said: str) -> None:
    path = tmp_path / "out.json"
    path.write_text('{"type": "attached_probes", "data": {"probes": 1}}\n' + json.dumps(record))
    with pytest.raises(ParseError, match="line 2") as info:
        parse_json(path.read_text())
    assert said in str(info.value)
    line = run_cli("parse", str(path), "--format", "json").error_line("parse")
    assert "line 2" in line and said in line
