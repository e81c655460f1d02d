"""The lane protocol's codec and the agent's code as it travels: records cross as JSON and come
back as the same dataclasses and typed errors; the agent needs nothing but what is shipped."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

from harness.compare.bench import Rounds, Sample, Workload
from harness.compare.gather import Gathered, GatherRequest
from harness.host.bpfstats import ProgramRun
from harness.host.runner import BpftraceSyntaxError, Capture, Interrupted, RunRequest
from harness.lanes import wire
from harness.lanes.elsewhere import NAMES
from harness.lanes.protocol import BenchAnswer, BenchRequest, RunAnswer, TracerData
from harness.lanes.remote import RemoteError, classify_ssh_failure, payload
from harness.twin.generic import MapDump


def _across(value: object) -> object:
    return json.loads(json.dumps(wire.encode(value)))


def test_a_capture_crosses_with_its_typed_error() -> None:
    result = Capture("prog", "a\nb\n", "diag", 0, True, 1.0, 1.5, 3.0, probes=2,
                     error=Interrupted(15), line_times=[0.25, 0.5], extra={"stop_s": 0.1},
                     warnings=["w"], ended_by="signal")
    back = wire.decode(RunAnswer, _across(RunAnswer(result)), NAMES).result
    assert type(back) is Capture and not hasattr(back, "output")
    assert (back.stdout, back.line_times, back.extra, back.ended_by) == (
        "a\nb\n", [0.25, 0.5], {"stop_s": 0.1}, "signal")
    assert type(back.error) is Interrupted and back.error.signum == 15
    assert back.error.exit_code == 143 and str(back.error) == str(Interrupted(15))
    syntax = wire.decode(BpftraceSyntaxError, _across(BpftraceSyntaxError("c", "f", 3, 7)))
    assert type(syntax) is BpftraceSyntaxError and (syntax.line, syntax.column) == (3, 7)


def test_map_dumps_cross_as_bytes_in_tuples() -> None:
    dump = MapDump("m", 1, 4, 8, 2, [(b"\x01\x00\x00\x00", bytes(range(16)))])
    run = Capture("p", "", "", 0, False, 0.0, None, 0.0)
    got = Gathered(run, {"m": dump}, "libbpf: log", 1234, 0.02)
    back = wire.decode(Gathered, _across(got), NAMES)
    assert back.dumps["m"] == dump and type(back.bpftrace) is Capture
    assert (back.log, back.workload_pid, back.libbpf_attach_s) == ("libbpf: log", 1234, 0.02)
    sample = Sample(1, "bpftrace", 100, 3, 5000, attach_ms=1.5)
    assert wire.decode(Sample, _across(sample)) == sample


def test_every_request_and_answer_crosses_as_the_same_record() -> None:
    """Both ends build and read one set of classes: each comes back equal, field for field."""
    run = RunRequest("MARK", ["/bin/true"], 1.5, 300.0, "bpftrace", None, True, "AAEC")
    gather = GatherRequest("MARK", ["w"], "/l", "/o.bpf.o", ["target_pid"], "f", 1, None, 60.0)
    bench = BenchRequest(
        Workload(["python3", "-m", "w"], 1000, "w", ["--wait-go"]),
        [TracerData("bpftrace", ["bpftrace", "-e", "{program}"], "READY", None)],
        Rounds(rounds=2, max_rounds=4, warmup=0, timeout=300.0),
    )
    ran = ProgramRun(7, "p", "ab12", "kprobe", 9, 3)
    sample = Sample(1, "bpftrace", 100, 0, 5000, programs=[ran])
    answer = BenchAnswer([sample], ["@: 100\n"], 15)
    for record in (run, gather, bench, answer):
        assert wire.decode(type(record), _across(record)) == record, type(record).__name__
    assert wire.record(run)["aot"] is True  # the body of a message: a JSON object


def test_an_unexpected_remote_exception_names_itself() -> None:
    try:
        raise KeyError("missing")
    except KeyError as err:
        data = wire.error_dict(err)
    back = wire.typed_error(data)
    assert isinstance(back, wire.RemoteFailure)
    assert "KeyError" in str(back) and "missing" in str(back) and "\n" not in str(back)


def test_messages_are_lines() -> None:
    buf = io.BytesIO()
    wire.write_message(buf, {"op": "run", "data": b"\x00\xff"})
    wire.write_message(buf, {"op": "beat"})
    buf.seek(0)
    assert wire.read_message(buf) == {"op": "run", "data": "00ff"}
    assert wire.read_message(buf) == {"op": "beat"}
    assert wire.read_message(buf) is None


def test_the_agent_runs_on_the_shipped_code_alone(tmp_path: Path) -> None:
    """`python3 -I -S` (no site-packages) with only the payload on its path imports everything
    the machine side runs: the agent, the VM guest's, the runner, gather, bench and the twin
    loader; and none of them imports the parser (parsing is the harness's, once)."""
    with tarfile.open(fileobj=io.BytesIO(payload().data)) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path, filter="data")
    assert {n.split("/")[0] for n in names} == {"harness", "pexpect", "ptyprocess"}
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "import harness.lanes.agent, harness.lanes.guest, harness.lanes.protocol; "
            "import harness.host.runner, harness.compare.gather, harness.compare.bench, "
            "harness.twin.generic; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('lark', 'pandas', 'numpy', 'rich', 'tabulate', 'grammar') "
            "or m.startswith(('harness.output', 'harness.host.parsed'))))")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_ssh_failures_name_cause_and_fix() -> None:
    cases = {
        "ssh: connect to host x port 22: Connection refused": "cannot reach x (",
        "root@x: Permission denied (publickey).": "x refused the login (",
        "Host key verification failed.": "x: its host key is unknown or changed (",
        "bash: line 1: python3: command not found": "x has no python3 (",
    }
    for line, start in cases.items():
        err = classify_ssh_failure("x", 255 if "python3" not in line else 127, [line])
        assert isinstance(err, RemoteError) and str(err).startswith(start), str(err)
        assert err.fix and "\n" not in str(err)
