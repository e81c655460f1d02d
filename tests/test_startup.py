"""What `harness run` imports before bpftrace starts: only what the spawn needs (issue 12).

Everything else (the output parser, the report, the tables, pandas, matplotlib) is loaded while
bpftrace attaches and traces, in a thread, or not at all. A fresh interpreter runs the CLI with
BpftraceProcess.start replaced by a stop that lists the modules loaded by then: a structural
check, not a timing one, so that no later change puts an import back in the way of the spawn.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = r"""
import json, sys
from harness.host import runner

class Spawned(BaseException):
    pass

def start(self):
    print(json.dumps(sorted(sys.modules)))
    raise Spawned

runner.BpftraceProcess.start = start
import harness.cli
try:
    harness.cli.main(sys.argv[1:])
except Spawned:
    pass
"""
NEVER = ("pandas", "matplotlib", "numpy", "plotly", "tabulate", "rich")
AFTER_SPAWN = ("lark", "harness.output.parse", "harness.report.summary", "harness.cli.tables",
               "harness.output.columns")


def loaded_at_spawn(tmp_path: Path, *args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "run", *args, "--out", str(tmp_path / "out"), "-q"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.stdout.strip(), done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_a_whole_program_spawns_with_no_spec_parser_and_no_report(tmp_path: Path) -> None:
    loaded = loaded_at_spawn(
        tmp_path, "tracepoint:syscalls:sys_enter_getppid { @c = count(); }", "--duration", "1"
    )
    assert "harness.host.runner" in loaded  # the probe ran where the spawn happens
    early = [m for m in (*NEVER, *AFTER_SPAWN, "harness.spec.model", "harness.spec.codegen")
             if m in loaded]
    assert early == []


def test_a_catalog_entry_spawns_with_its_spec_but_no_report(tmp_path: Path) -> None:
    loaded = loaded_at_spawn(tmp_path, "ktrace", "--count", "1")
    assert "harness.spec.codegen" in loaded  # its program was generated
    early = [m for m in (*NEVER, *AFTER_SPAWN[1:]) if m in loaded]
    assert early == []
