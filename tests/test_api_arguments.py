"""The Python API refuses a wrong argument with a UsageError naming the parameter, before
anything runs: never a TypeError or AttributeError from deep inside a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import harness

pytestmark = pytest.mark.usefixtures("results_in_tmp")

PROBE = "tracepoint:syscalls:sys_enter_getppid"


# (function, its arguments, the bad keyword and value, words the message must hold)
CASES: list[tuple[str, dict[str, Any], str, Any, list[str]]] = [
    ("trace", {}, "target", None, ["target=None", "non-empty string"]),
    ("trace", {}, "duration", "5s", ["duration='5s'", "units", "duration=5"]),
    ("trace", {}, "bpftrace", 0.27, ["bpftrace=0.27", "bpftrace='0.27'"]),
    ("trace", {}, "workload", ["echo", "a\0b"], ["workload word 1", "NUL"]),
    ("trace", {}, "workload", 5, ["workload=5", "list of strings"]),
    ("trace", {}, "workload", [""], ["workload's program", "empty"]),  # found by the fuzz
    ("trace", {}, "workload", [" ", "-c1"], ["workload's program", "empty"]),
    ("trace", {}, "duration", float("nan"), ["duration=nan", "positive"]),
    ("trace", {}, "duration", True, ["duration=True", "number of seconds"]),
    ("trace", {}, "timeout", None, ["timeout=None", "number of seconds"]),
    ("trace", {}, "lane", 5, ["lane=5"]),
    ("trace", {}, "out", True, ["out=True", "pass a path"]),
    ("trace", {}, "out", 7, ["out=7", "path"]),
    ("trace", {}, "out", "\r", ["out=", "path"]),  # the fuzz found it: made a directory '\r'
    ("trace", {}, "out", "a\0b", ["out", "NUL"]),
    ("trace", {}, "attach", "uprobe", ["attach='uprobe'", "kprobe, kfunc, tracepoint"]),
    ("trace", {}, "count", "9", ["count='9'", "integer"]),
    ("trace", {}, "count", -1, ["count=-1", "below 0"]),
    ("trace", {}, "sizes", "1,x", ["sizes='1,x'", "0 to 65507"]),
    ("trace", {}, "sizes", "70000", ["sizes='70000'", "0 to 65507"]),
    ("trace", {}, "report", "no", ["report='no'", "True or False"]),
    ("trace", {}, "check", None, ["check=None", "True or False"]),
    ("trace", {}, "on_progress", "print", ["on_progress='print'", "function"]),
    ("trace", {}, "pid", "1", ["pid='1'", "integer"]),
    ("trace", {}, "pid", True, ["pid=True", "integer"]),
    ("trace", {}, "comm", 5, ["comm=5", "string"]),
    ("trace", {}, "comm", "", ["--comm is empty"]),
    ("trace", {}, "count_by", 5, ["count_by=5", "list of strings"]),
    ("trace", {}, "count_by", ["comm", 5], ["count_by[1]=5", "string"]),
    ("trace", {}, "workload_pid", "yes", ["workload_pid='yes'", "True or False"]),
    ("plan", {}, "twin", "yes", ["twin='yes'", "True or False"]),
    ("plan", {}, "duration", -3, ["duration=-3", "positive"]),
    ("again", {"run": "results/none"}, "run", None, ["run=None", "path"]),
    ("again", {"run": "results/none"}, "timeout", "60", ["timeout='60'", "number"]),
    ("crosscheck", {}, "target", 7, ["target=7"]),
    ("crosscheck", {}, "timeout", 0, ["timeout=0", "positive"]),
    ("crosscheck", {}, "count", 1.5, ["count=1.5", "integer"]),
    ("crosscheck", {}, "prebuilt", 3, ["prebuilt=3", "path"]),
    ("crosscheck", {}, "prebuilt", "/nonexistent", ["prebuilt='/nonexistent'", "directory"]),
    ("crosscheck", {}, "workload", "true", ["brings its own workload", "--count"]),
    ("trace", {}, "bpftrace", "", ["bpftrace=''", "names no release"]),
    ("matrix", {}, "target", "nosuch", ["no catalog entry named 'nosuch'"]),
    ("crosscheck", {}, "libbpf_pid_offset", "1", ["libbpf_pid_offset='1'", "integer"]),
    ("crosscheck", {}, "force", 1, ["force=1", "True or False"]),
    ("plan_crosscheck", {}, "attach", 1, ["attach=1"]),
    ("trace", {}, "options", {"count": 5}, ["options={'count': 5}", "TraceOptions"]),
    ("plan", {}, "options", harness.CrosscheckOptions(), ["options=", "not a TraceOptions"]),
    ("crosscheck", {}, "options", harness.TraceOptions(), ["not a CrosscheckOptions"]),
    ("plan_crosscheck", {"options": harness.CrosscheckOptions(count=0)}, "workload", None,
     ["count 0 sends no datagram"]),  # the options object's values are checked as keywords are
    ("matrix", {}, "kernels", "6.1", ["kernels='6.1'", "list of names"]),
    ("matrix", {}, "kernels", [6.1], ["kernels[0]=6.1", "string"]),
    ("matrix", {}, "bpftrace", "0.27", ["bpftrace='0.27'", "list of names"]),
    ("matrix", {}, "count", 0, ["count=0", "below 1"]),
    ("matrix", {}, "timeout", "600s", ["timeout='600s'", "units"]),
    ("matrix", {}, "on_kernel", 5, ["on_kernel=5", "function"]),
]
# What each function is called with apart from the bad keyword: enough for a quick, real run,
# so an argument that is not refused shows as a run instead of an error.
BASE: dict[str, dict[str, Any]] = {
    "trace": {"target": PROBE, "duration": 0.2, "out": False},
    "plan": {"target": PROBE, "duration": 0.2},
    "again": {},
    "crosscheck": {"target": "ktrace", "count": 5, "out": False},
    "plan_crosscheck": {"target": "ktrace"},
    "matrix": {"target": "ktrace", "kernels": ["host"], "count": 5, "out": False},
}


@pytest.mark.parametrize(
    ("func", "given", "name", "value", "said"), CASES,
    ids=[f"{c[0]}-{c[2]}={c[3]!r:.20}" for c in CASES],
)
def test_a_wrong_argument_is_a_usage_error_naming_it(
    func: str, given: dict[str, Any], name: str, value: Any, said: list[str]
) -> None:
    args = {**BASE[func], **given, name: value}
    first = args.pop("run" if func == "again" else "target")
    with pytest.raises(harness.UsageError) as refused:
        getattr(harness, func)(first, **args)
    message = str(refused.value)
    assert "\n" not in message
    for word in said:
        assert word in message, message


def test_a_path_like_out_and_workload_are_taken(tmp_path: Path) -> None:
    plan = harness.plan(PROBE, workload=[Path("/bin/true")], lane="host")
    assert plan.workload == ("/bin/true",)


def test_one_options_object_says_what_the_keywords_say_and_a_keyword_wins() -> None:
    """TraceOptions carries what the keywords do; a keyword beside it wins. The plan is the
    same either way (its spec, attach type and workload), and the spec keywords stay apart."""
    by_keywords = harness.plan(PROBE, workload="/bin/true", duration=2.0, count_by=["comm"])
    options = harness.TraceOptions(workload="/bin/false", duration=2.0)
    by_options = harness.plan(PROBE, options=options, workload="/bin/true", count_by=["comm"])
    assert by_options.spec == by_keywords.spec and by_options.attach == by_keywords.attach
    assert "@count[comm]" in by_options.program()  # (its ready marker is each plan's own)
    assert by_options.workload == by_keywords.workload == ("/bin/true",)
    got, spec = harness.TraceOptions.split(options, {"count": 7, "count_by": ["comm"]})
    assert (got.count, got.workload, got.duration, spec) == (7, "/bin/false", 2.0,
                                                             {"count_by": ["comm"]})
    assert options.count == 100  # frozen: split made a new object

