"""Hypothesis over the command-line options and the API keywords: whatever the value, a command
exits 0 or says one error line (never a traceback, never "internal error"), and the API returns
or raises a HarnessError (a wrong type: a UsageError naming the keyword), never a TypeError or
AttributeError from deep inside.

Commands run with --dry-run (or `parse`, which only reads), so nothing is traced: the fuzz
reaches every check before the spawn. tests/test_input_sweep.py runs the real thing on a fixed
list of bad values.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from cli_errors import Said
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from test_input_sweep import BASE, POSITIONAL_AT, SPEC, _files, _fill, _name, _parser, _takes_value

import harness
from harness.cli import COMMANDS, INTERNAL

pytestmark = pytest.mark.usefixtures("results_in_tmp")

PROBE = "tracepoint:syscalls:sys_enter_getppid"
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

FRAGMENTS = ['"', "\\", "{", "}", ";", "(", ")", "@x", "BEGIN", "kprobe:f", "*", "->", ".", "==",
             "&&", "!", "//", "/*", "\t", "'", "arg0", "args.len", "comm", "kstack", "1", "0x10",
             " ", ",", ":", "-1", "9" * 30, "\0", "é", "nan", "5s", "vm"]
text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=8).map(
    "".join)


def one_line_or_success(done: Said, command: str) -> None:
    assert "Traceback" not in done.err and INTERNAL not in done.err, done.err
    if done.status != 0:
        done.error_line(command)


STRING_OPTIONS = ["--arg", "--count-by", "--sum", "--avg", "--min", "--max", "--stats", "--hist",
                  "--collect", "--lhist", "--by", "--filter", "--comm", "--cgroup", "-p",
                  "--sizes", "--count", "-d", "--timeout", "--bpftrace", "--lane", "-c",
                  "--attach", "--top"]


@pytest.mark.kernel
@pytest.mark.usefixtures("needs_bpf")
@FUZZ
@given(option=st.sampled_from(STRING_OPTIONS), value=text, target=st.sampled_from(
    [PROBE, "ktrace", "syscalls", "kprobe:udp_send_skb"]))
def test_run_dry_run_options(run_cli: Any, option: str, value: str, target: str) -> None:
    assume("\0" not in value)  # a command line cannot hold a NUL (execve cuts it there)
    if option == "--lane":
        assume("vm" not in value)  # a real guest would boot
    done = run_cli("run", target, "-d", "1s", "--dry-run", "-q", f"{option}={value}")
    one_line_or_success(done, "run")


@pytest.mark.kernel
@pytest.mark.usefixtures("needs_bpf")
@FUZZ
@given(target=text)
def test_run_dry_run_targets(run_cli: Any, target: str) -> None:
    assume("\0" not in target)
    one_line_or_success(run_cli("run", "-d", "1s", "--dry-run", "-q", "--", target), "run")


@FUZZ
@given(body=st.lists(st.one_of(
    st.sampled_from(["@x: 1", "@x[1]: 2", "@x[a, b]: 3", "@h:", "[1, 2) 3 |@@|", "[4, 8)",
                     "@s: count 2, average 3, total 6", "Attaching 2 probes...", "@x[",
                     "    f+1", "]: 5", "@y: 12345678901234567890123456789", "{", "\x00", ""]),
    text), max_size=12).map("\n".join), fmt=st.sampled_from(["text", "json"]))
def test_parse_any_text(run_cli: Any, tmp_path: Path, body: str, fmt: str) -> None:
    path = tmp_path / "out.txt"
    path.write_text(body)
    one_line_or_success(run_cli("parse", str(path), "--format", fmt), "parse")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=8,
)


@FUZZ
@given(kind=st.sampled_from(["map", "hist", "stats", "lhist", "attached_probes", "printf",
                             "time", "lost_events", "x"]),
       data=json_values)
def test_parse_any_json_record(run_cli: Any, tmp_path: Path, kind: str, data: Any) -> None:
    import json

    path = tmp_path / "out.json"
    path.write_text(json.dumps({"type": kind, "data": data}) + "\n")
    one_line_or_success(run_cli("parse", str(path), "--format", "json"), "parse")


# --- the API -------------------------------------------------------------------------------

anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
    st.binary(max_size=4), st.lists(st.one_of(st.integers(), st.text(max_size=4)), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.just(Path("x")),
)


def _seconds(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v) and v > 0


def _text(v: Any) -> bool:
    return isinstance(v, str | Path) and bool(str(v).strip()) and "\0" not in str(v)


def _sizes(v: Any) -> bool:
    from harness.workloads.udp_send import parse_sizes

    try:
        return isinstance(v, str) and bool(parse_sizes(v))
    except SystemExit:
        return False


# keyword -> whether a value may be a good one (then it is not thrown: it would run); every
# other value must be a UsageError naming the keyword
MAYBE_GOOD: dict[str, Any] = {
    "duration": lambda v: v is None or _seconds(v),
    "timeout": _seconds,
    "count": lambda v: type(v) is int and v >= 0,
    "attach": lambda v: v is None or v in ("kprobe", "kfunc", "tracepoint"),
    "lane": lambda v: _text(v) and str(v).strip().startswith(("host", "vm", "ssh")),
    "bpftrace": lambda v: v is None or _text(v),
    "out": lambda v: v is None or v is False or _text(v),
    "report": lambda v: type(v) is bool,
    "plots": lambda v: type(v) is bool,
    "check": lambda v: type(v) is bool,
    "force": lambda v: type(v) is bool,
    "on_progress": lambda v: v is None or callable(v),
    "on_plan": lambda v: v is None or callable(v),
    "progress": lambda v: v is None or callable(v),
    "workload": lambda v: v is None or _text(v) or (  # an argument may be '' (printf '')
        isinstance(v, list) and bool(v) and _text(v[0])
        and all(isinstance(w, str | Path) and "\0" not in str(w) for w in v)),
    "sizes": _sizes,
}


@pytest.mark.kernel
@pytest.mark.usefixtures("needs_bpf")
@FUZZ
@given(keyword=st.sampled_from(sorted(MAYBE_GOOD)), value=anything)
def test_trace_keywords(keyword: str, value: Any) -> None:
    assume(not MAYBE_GOOD[keyword](value))
    args: dict[str, Any] = {"duration": 0.2, "out": False, "report": False, keyword: value}
    with pytest.raises(harness.UsageError) as refused:
        harness.trace(PROBE, **args)
    assert keyword in str(refused.value) or "workload" in str(refused.value)


@pytest.mark.kernel
@pytest.mark.usefixtures("needs_bpf")
@FUZZ
@given(target=anything, options=st.dictionaries(
    st.sampled_from(["count_by", "hist", "filter", "pid", "comm", "cgroup", "by", "arg",
                     "workload_pid", "lhist", "duration", "workload", "count", "sizes",
                     "attach", "bpftrace", "twin", "nosuch"]), anything, max_size=3))
def test_plan_takes_anything(target: Any, options: dict[str, Any]) -> None:
    """Whatever it is given, plan() returns a Plan or raises a HarnessError."""
    try:
        assert isinstance(harness.plan(target, **options), harness.Plan)
    except harness.HarnessError as err:
        assert "\n" not in str(err)


# --- every option of every command ---------------------------------------------------------

class _WouldRun(BaseException):
    """Raised where an accepted bench or matrix would start its work: the options were taken
    (a BaseException, so no `except Exception` on the way turns it into an error line)."""


# Bases that stop before anything is traced: run and crosscheck plan only (--dry-run); bench
# and matrix stop at their first round or crosscheck (_WouldRun); parse, report and diff read.
FUZZ_BASE: dict[str, list[str]] = {
    **BASE,
    "run": [PROBE, "-d", "1s", "--dry-run", "-q"],
    "crosscheck": ["ktrace", "--dry-run", "-q"],
}
# Options naming a path: a fuzzed value lands inside the test's directory (no "/" can climb
# out of it), or is one of the sweep's prepared files (a good one, or a bad one).
PATHS = {"file", "--csv", "--program", "--out", "--again", "--prebuilt", "run_dir", "run_a",
         "run_b"}
PREPARED = ["{text}", "{file}", "{binary}", "{folded}", "{run}", "{json_list}", "{bad_folded}",
            "{bad_stacks}", "{tmp}/empty"]
OPTIONS = {command: [_name(a) for a in _parser(command)._actions if _takes_value(a)]
           for command in COMMANDS}
# a command, then one of its options: each command as often as the others
OPTION = st.sampled_from(sorted(c for c in OPTIONS if OPTIONS[c])).flatmap(
    lambda c: st.tuples(st.just(c), st.sampled_from(OPTIONS[c])))


def _fuzz_argv(command: str, option: str, value: str, fill: Any) -> list[str]:
    """The argv, placeholders filled (`fill`) before an option and its value are joined."""
    base = [fill(w) for w in FUZZ_BASE[command]]
    if command == "bench" and option in SPEC:  # spec options shape a probe's bench only
        base[0] = PROBE
    at = POSITIONAL_AT.get(command, {}).get(option)
    if at is not None:
        base[at] = fill(value)
        return [command, *base]
    return [command, *base, f"{option}={fill(value)}"]  # `=`: a value may begin with '-'


@pytest.mark.kernel
@pytest.mark.usefixtures("needs_bpf")
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=OPTION, value=text, prepared=st.sampled_from(PREPARED),
       use_prepared=st.booleans())
def test_every_option_of_every_command(run_cli: Any, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, pair: tuple[str, str],
                                       value: str, prepared: str, use_prepared: bool) -> None:
    """Any value at any option of any command: exit 0 (or the work about to start) or one
    error line, never a traceback or 'internal error'."""
    import tempfile

    import harness.api.crosscheck
    from harness.lanes.base import HostLane

    command, option = pair
    assume("\0" not in value)  # a command line cannot hold a NUL (execve cuts it there)
    if option in ("--lane", "--kernels"):
        assume(not re.search(r"vm|ssh|\d", value))  # a real guest would boot, a host be dialled
    tmp = Path(tempfile.mkdtemp(dir=tmp_path))
    files = _files(tmp)
    monkeypatch.chdir(tmp)  # a relative path a command takes lands here, not in the checkout
    if option in PATHS:
        value = prepared if use_prepared else str(tmp / value.replace("/", "_"))
    argv = _fuzz_argv(command, option, value, lambda w: _fill(w, tmp, files))

    def would_run(*_: Any, **__: Any) -> None:
        raise _WouldRun

    monkeypatch.setattr(HostLane, "bench", would_run)
    monkeypatch.setattr(harness.api.crosscheck, "run_crosscheck", would_run)
    try:
        done = run_cli(*argv)
    except _WouldRun:
        event(f"{command}: would run")
        return
    event(f"{command}: {'exit 0' if done.status == 0 else 'refused'}")
    one_line_or_success(done, command)


# --- the API's other entry points ----------------------------------------------------------

@FUZZ
@given(target=anything, options=st.dictionaries(
    st.sampled_from(["lane", "attach", "count", "sizes", "workload", "bpftrace", "progress",
                     "count_by", "filter", "nosuch"]), anything, max_size=3))
def test_plan_crosscheck_takes_anything(target: Any, options: dict[str, Any]) -> None:
    """Whatever it is given, plan_crosscheck() returns a Plan or raises a HarnessError."""
    if isinstance(options.get("lane"), str):
        assume(not re.search(r"vm|ssh", options["lane"]))
    try:
        assert isinstance(harness.plan_crosscheck(target, **options), harness.Plan)
    except harness.HarnessError as err:
        assert "\n" not in str(err)


CROSSCHECK_GOOD: dict[str, Any] = {
    **{k: MAYBE_GOOD[k] for k in ("timeout", "attach", "lane", "bpftrace", "out", "force",
                                   "progress", "on_plan", "sizes")},
    "count": lambda v: type(v) is int and v > 0,
    "prebuilt": lambda v: v is None or _text(v),
    "libbpf_pid_offset": lambda v: type(v) is int,
    "workload": lambda v: v is None,  # ktrace brings its own: any other is refused
}


@pytest.mark.kernel
@pytest.mark.usefixtures("needs_bpf")
@FUZZ
@given(keyword=st.sampled_from(sorted(CROSSCHECK_GOOD)), value=anything)
def test_crosscheck_keywords(keyword: str, value: Any) -> None:
    assume(not CROSSCHECK_GOOD[keyword](value))
    with pytest.raises(harness.UsageError) as refused:
        harness.crosscheck("ktrace", **{"count": 5, "out": False, keyword: value})
    assert keyword in str(refused.value) or "workload" in str(refused.value)


MATRIX_GOOD: dict[str, Any] = {
    "kernels": lambda v: isinstance(v, list | tuple) and bool(v) and all(
        _text(k) for k in v),
    "count": lambda v: type(v) is int and v > 0,
    "timeout": _seconds,
    "out": MAYBE_GOOD["out"],
    "bpftrace": lambda v: isinstance(v, list | tuple) and bool(v) and all(
        b is None or _text(b) for b in v),
    "on_kernel": MAYBE_GOOD["on_progress"],
    "progress": MAYBE_GOOD["progress"],
}


@FUZZ
@given(keyword=st.sampled_from(sorted(MATRIX_GOOD)), value=anything)
def test_matrix_keywords(keyword: str, value: Any) -> None:
    assume(not MATRIX_GOOD[keyword](value))
    with pytest.raises(harness.UsageError) as refused:
        harness.matrix("ktrace", **{"kernels": ["host"], "out": False, keyword: value})
    assert keyword in str(refused.value)


@FUZZ
@given(run=anything, options=st.dictionaries(
    st.sampled_from(["out", "timeout", "report", "plots", "check", "force", "progress"]),
    anything, max_size=2))
def test_again_takes_anything(tmp_path: Path, run: Any, options: dict[str, Any]) -> None:
    """again() of something that is no run directory is a HarnessError, whatever else."""
    if isinstance(run, str | Path):
        run = tmp_path / str(run).replace("/", "_").replace("\0", "")
    with pytest.raises(harness.HarnessError) as refused:
        harness.again(run, **options)
    assert "\n" not in str(refused.value)


@FUZZ
@given(text_=st.one_of(text, anything), fmt=st.sampled_from(["text", "json"]),
       options=st.dictionaries(st.sampled_from(["line_times", "program"]),
                               st.one_of(anything, text), max_size=2),
       key_names=st.one_of(st.none(), anything, st.dictionaries(
           st.sampled_from(["@x", "@h", "@"]), st.lists(st.text(max_size=3), max_size=3))))
def test_parse_and_frames_take_anything(text_: Any, fmt: str, options: dict[str, Any],
                                        key_names: Any) -> None:
    """parse_text, parse_json and to_frames return or raise a HarnessError (a wrong type: a
    UsageError naming the parameter), never a TypeError from inside."""
    parse = harness.parse_text if fmt == "text" else harness.parse_json
    if fmt == "json":
        options.pop("program", None)
    try:
        harness.to_frames(parse(text_, **options), key_names)
    except harness.HarnessError as err:
        assert "\n" not in str(err)
