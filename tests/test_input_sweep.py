"""Bad values at every option of every `harness` command: each ends in exactly one error line
(`harness CMD: error: ...` naming the cause and the fix), a non-zero exit, no traceback and no
"internal error". The option list is read from the commands' own parsers, so a new option
without bad values here fails `test_every_option_has_bad_values`.

Each command starts from a base that would run quickly if a bad value were taken for a good one
(a 200 ms run, a one-round bench, a five-datagram crosscheck on the host), so a value the
harness wrongly accepts shows as "accepted (exit 0)", not as a long wait.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

import pytest
from cli_errors import Said, words

from harness.cli import COMMANDS

PROBE = "tracepoint:syscalls:sys_enter_getppid"
UNWRITABLE = "/proc/ktrace-results"
LONG_NAME = "{tmp}/" + "n" * 300

# What each command runs when no bad value stops it: quick, and writing only under {tmp}.
BASE: dict[str, list[str]] = {
    "parse": ["{text}"],
    "run": [PROBE, "-d", "200ms", "-q", "--out", "{tmp}/run"],
    "doctor": [],
    "crosscheck": ["ktrace", "--count", "5", "-q", "--out", "{tmp}/xc"],
    "matrix": ["ktrace", "--kernels", "host", "--count", "5", "-q", "--out", "{tmp}/m"],
    "bench": ["syscalls", "--rounds", "1", "--warmup", "0", "--events", "2000", "--no-report",
              "-q", "--out", "{tmp}/bench"],
    "report": ["{run}"],
    "diff": ["{folded}", "{folded}", "--out", "{tmp}/diff"],
    "lane": ["status", "vm:6.1"],
}

WHOLE = ["abc", "-1", "1.5", "", "9" * 5000]
WHOLE_1 = [*WHOLE, "0"]
DURATION = ["abc", "0", "-1s", "nan", "inf", "5 parsecs", "1e999", ""]
OUT = ["{file}", UNWRITABLE, LONG_NAME]
EXPR = ["", "(", "1 +", "!" * 900 + "1", "nosuch > 1", "x" * 2000, "args.len ; exit()"]
SPEC: dict[str, list[str]] = {
    "--arg": ["x", "=int", "1x=int", "x=", "comm=int", "x=struct"],
    "--count-by": ["", ",", "nosuch", "(", "kstack,", "args"],
    "--sum": EXPR, "--avg": EXPR, "--min": EXPR, "--max": EXPR, "--stats": EXPR,
    "--hist": EXPR, "--collect": EXPR,
    "--lhist": ["x", "args.len:0:10", "args.len:a:b:c", "nosuch:0:10:1", "args.len:0:10:"],
    "--by": ["", ",", "nosuch"],
    "--filter": EXPR,
    "-p": ["abc", "0", "-1", "4294967296", "1.5", ""],
    "--comm": ["", "a-name-of-twenty-b"],
    "--cgroup": [""],
}
FLEET: dict[str, list[str]] = {
    "--hosts": ["", ",", "a b", "h,h", "ssh:", "ktrace-localhost,ssh:ktrace-localhost"],
    "--inventory": ["{tmp}/missing", "{tmp}/empty", "{binary}", "{no_hosts}", "{bad_yaml}",
                    "{bad_ini}", "{bad_range}"],
    "--jobs": [*WHOLE_1, "3"],
}
# option (or positional dest) -> bad values; per command where the commands differ.
BAD: dict[str, dict[str, list[str]]] = {
    "parse": {
        # (a 10 MB number or a 38-digit value is no bad input: bpftrace prints strings raw,
        # so they are string values; tests/test_bad_inputs.py reads them so, with a warning)
        "file": ["{tmp}/missing", "{tmp}", "{binary}", "{json_list}", "{json_shapes}",
                 "{json_empty}", LONG_NAME],
        "--format": ["bogus", ""],
        "--csv": OUT,
        "--program": ["{tmp}/missing", "{tmp}", "{binary}"],
        "--rows": WHOLE,
    },
    "run": {
        "target": ["", "nosuch", "kprobe:", ":", "{", "BEGIN {", "kprobe:a b", "x" * 5000,
                   "tracepoint:no:such", "uprobe:/nonexistent:f"],
        "--again": ["{tmp}/missing", "{file}", "{again:schema=1}", "{again:spec=[]}",
                    "{again:workload=5}", "{again:workload=[\"a\\u0000b\"]}",
                    "{again:timeout_s=0}", "{again:bpftrace=\"x\"}", "{again:target=\"\"}"],
        "-c": ["", "   ", "'unbalanced", "/nonexistent/cmd", "sh -c 'exit 3'"],
        "--count": WHOLE, "--sizes": ["abc", "-1", "70000", "", ","],
        "-d": DURATION, "--timeout": DURATION,
        "--attach": ["bogus", "", "kprobe"],
        "--lane": ["", "bogus", "vm:9.99", "ssh:"], "--bpftrace": ["", "9.99", "bogus"],
        "--top": WHOLE, "--out": OUT, "-F": [*WHOLE_1, "99"], **SPEC, **FLEET,
    },
    "crosscheck": {
        "name": ["", "nosuch", "kprobe:", "tracepoint:no:such", "{ }"],
        "-c": ["", "'unbalanced", "/nonexistent/cmd"],
        "--attach": ["bogus", ""], "--count": WHOLE, "--sizes": ["abc", "70000", ""],
        "--timeout": DURATION, "--out": OUT, "--prebuilt": ["{tmp}/missing", "{file}"],
        "--lane": ["", "bogus", "vm:9.99", "ssh:"], "--bpftrace": ["", "9.99"],
        "--libbpf-pid-offset": ["abc", "1.5", ""], **SPEC, **FLEET,
    },
    "matrix": {
        "name": ["", "nosuch"], "--kernels": ["bogus", "", ",", "6.1,bogus"],
        "--count": WHOLE_1, "--timeout": DURATION, "--out": OUT, "--bpftrace": ["9.99", ","],
    },
    "bench": {
        "name": ["", "nosuch", "kprobe:", "tracepoint:no:such"],
        "--rounds": WHOLE_1, "--warmup": WHOLE, "--events": WHOLE_1, "--max-rounds": WHOLE_1,
        "--precision": ["abc", "0", "1", "nan", "-0.1", ""],
        "--attach": ["bogus", ""], "--modes": ["bogus", "", ","], "--out": OUT,
        "--timeout": DURATION, "--label": ["a/b", "", "../x"],
        "--lane": ["", "bogus", "vm:9.99", "ssh:"],
        "--bpftrace": ["", "9.99", ",", "0.17,9.99"],
        "--kernels": ["", ",", "bogus", "6.1,bogus", "9.99"],
        "--prebuilt": ["{tmp}/missing", "{file}"], **SPEC,
    },
    "report": {"run_dir": ["{tmp}/missing", "{file}", "{tmp}/empty", "{bad_stacks}",
                           "{bad_hist}", "{binary_meta}"], "--out": OUT},
    "diff": {
        "run_a": ["{tmp}/missing", "{tmp}/empty", "{binary}", "{bad_folded}", "{bad_stacks}"],
        "run_b": ["{tmp}/missing", "{tmp}/empty", "{binary}", "{bad_folded}", "{bad_stacks}"],
        "--map": ["@nosuch", ""], "--out": OUT, "--top": WHOLE,
    },
    "doctor": {},
    "lane": {"action": ["", "bogus", "upp"],
             "lane": ["", " ", "bogus", "host", "vm:9.99", "ssh:box", "vm:6.1:x", "-:"],
             "--timeout": DURATION},
}
POSITIONAL_AT = {"parse": {"file": 0}, "run": {"target": 0}, "crosscheck": {"name": 0},
                 "matrix": {"name": 0}, "bench": {"name": 0}, "report": {"run_dir": 0},
                 "diff": {"run_a": 0, "run_b": 1}, "lane": {"action": 0, "lane": 1}}


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    importlib.import_module(f"harness.cli.{COMMANDS[command][0]}").add_arguments(parser)
    return parser


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0 and not isinstance(action, argparse._HelpAction)


def _name(action: argparse.Action) -> str:
    return action.option_strings[0] if action.option_strings else action.dest


def cases() -> list[tuple[str, str, str]]:
    """(command, option, bad value) for every option that takes a value."""
    found = []
    for command in COMMANDS:
        for action in _parser(command)._actions:
            if _takes_value(action):
                found += [(command, _name(action), v) for v in BAD[command].get(_name(action), [])]
    return found


def test_every_option_has_bad_values() -> None:
    for command in COMMANDS:
        options = {_name(a) for a in _parser(command)._actions if _takes_value(a)}
        assert options == set(BAD[command]), command


def _argv(command: str, option: str, value: str) -> list[str]:
    base = list(BASE[command])
    if command == "bench" and option in SPEC:  # spec options shape a probe's bench only
        base[0] = PROBE
    at = POSITIONAL_AT.get(command, {}).get(option)
    if at is not None:
        base[at] = value
        return [command, *base]
    return [command, *base, option, value]  # the last one given wins, for an option in BASE


def _files(tmp: Path) -> dict[str, str]:
    """The placeholders' files: good ones for the bases, bad ones to be refused."""
    (tmp / "empty").mkdir()
    text = tmp / "out.txt"
    text.write_text("Attaching 2 probes...\n@x[1]: 2\n")
    file = tmp / "a-file"
    file.write_text("hello\n")
    binary = tmp / "binary"
    binary.write_bytes(b"\xff\xfe\x00@x: 1\n")
    folded = tmp / "s.folded"
    folded.write_text("main;f 3\nmain;g 1\n")
    run = tmp / "run-dir"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"target": PROBE}))
    (run / "x.csv").write_text("value\n1\n")
    made = {"tmp": tmp, "text": text, "file": file, "binary": binary, "folded": folded,
            "run": run}
    for name, csv, body in [("bad_stacks", "stacks.csv", 'kstack,value\n"f+1;g+2",zz\n'),
                            ("bad_hist", "h.csv", "lo,hi,count\n1,2,x\n"),
                            ("binary_meta", "x.csv", "value\n1\n")]:
        made[name] = tmp / name
        made[name].mkdir()
        (made[name] / csv).write_text(body)
        (made[name] / "run.json").write_bytes(b"\xff{" if name == "binary_meta" else b"{}")
    made["bad_folded"] = tmp / "bad.folded"
    made["bad_folded"].write_text("main;f 3\nmain;g x\n")
    for name, body in {
        "json_list": '{"type": "map", "data": [1, 2, 3]}\n',
        "json_shapes": '{"type": "map", "data": {"@x": {"1": [2]}}}\n{"type": 5}\n',
        "json_empty": '{"type": "hist", "data": {"@h": [{"min": "a"}]}}\n',
        "no_hosts": "# a fleet of none\n[web]\n[web:vars]\nntp=1\n",
        "bad_yaml": "all:\n  hosts: [a, b\n",
        "bad_ini": "[web\nh1\n",
        "bad_range": "web[9:1]\n",
    }.items():
        made[name] = tmp / name
        made[name].write_text(body)
    return {k: str(v) for k, v in made.items()}


def _fill(word: str, tmp: Path, files: dict[str, str]) -> str:
    if word.startswith("{again:"):
        from test_bad_inputs import recorded_run

        field, _, raw = word[len("{again:"):-1].partition("=")
        return str(recorded_run(tmp / "again", **{field: json.loads(raw)}))
    if word.startswith("{tmp}/"):
        return str(tmp) + word[len("{tmp}"):]
    return files.get(word[1:-1], word) if word.startswith("{") else word


CASES = cases()


@pytest.mark.kernel
@pytest.mark.usefixtures("needs_bpf")
@pytest.mark.parametrize(("command", "option", "value"), CASES,
                         ids=[words([c, o, v]) for c, o, v in CASES])
def test_a_bad_value_is_one_error_line(run_cli: Any, tmp_path: Path, command: str, option: str,
                                       value: str) -> None:
    files = _files(tmp_path)
    argv = [_fill(w, tmp_path, files) for w in _argv(command, option, value)]
    done: Said = run_cli(*argv)
    line = done.error_line(command)
    assert len(line) > len(f"harness {command}: error: ") + 15, line
