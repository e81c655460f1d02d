"""Spec options are one typed object for the command line and the library (issue 22): the flags
are made from its fields, keywords are checked against the same fields, and both give one spec."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from test_layout import imported_modules

import harness
from harness.errors import UsageError
from harness.spec.options import SpecOptions, add_flags

PROBE = "tracepoint:net:net_dev_queue"
# (command-line flags, the same as library keywords)
SAME = [
    ([], {}),
    (["--count-by", "comm,kstack"], {"count_by": "comm,kstack"}),
    (["--count-by", "comm", "--count-by", "kstack"], {"count_by": ["comm", "kstack"]}),
    (["--hist", "args.len", "--by", "comm", "--filter", "args.len > 100", "-p", "42"],
     {"hist": "args.len", "by": ("comm",), "filter": ["args.len > 100"], "pid": 42}),
    (["--lhist", "args.len:0:2000:100", "--sum", "args.len", "--sum", "args.len * 2",
      "--comm", "ping", "--workload-pid"],
     {"lhist": "args.len:0:2000:100", "sum": ["args.len", "args.len * 2"], "comm": "ping",
      "workload_pid": True}),
]


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser(add_help=False)
    add_flags(made)
    return made


@pytest.mark.parametrize(("argv", "keywords"), SAME)
def test_flags_and_keywords_make_one_options_object_and_one_spec(
    argv: list[str], keywords: dict[str, object]
) -> None:
    from_flags = SpecOptions.from_namespace(parser().parse_args(argv))
    from_keywords = SpecOptions.from_keywords(keywords)
    assert from_flags == from_keywords
    assert from_flags.to_spec(PROBE) == from_keywords.to_spec(PROBE)
    assert set(from_flags.given()) == set(keywords)


def test_every_field_is_a_flag_and_nothing_else_is() -> None:
    dests = {a.dest for a in parser()._actions}
    assert dests == set(SpecOptions.names())
    assert "count_by" in dests and "workload_pid" in dests


def test_a_repeated_value_function_gets_numbered_maps() -> None:
    spec = SpecOptions.from_keywords({"hist": ["args.len", "args.len / 2"]}).to_spec(PROBE)
    assert [a.map for a in spec.aggs] == ["@hist", "@hist2"]


def test_an_unknown_or_mistyped_keyword_is_a_usage_error_naming_it() -> None:
    with pytest.raises(UsageError, match=r"unknown spec option.*count_bye.*use any of.*count_by"):
        SpecOptions.from_keywords({"count_bye": "comm"})
    with pytest.raises(UsageError, match="hist=5 is neither a string nor a list"):
        SpecOptions.from_keywords({"hist": 5})
    with pytest.raises(UsageError, match="pid"):
        harness.plan(PROBE, pid="1", duration=1, lane="host")


def test_the_library_path_builds_no_argument_parser() -> None:
    library = sorted((Path(harness.__file__).parent / "api").glob("*.py"))
    assert len(library) >= 8
    for path in library:
        assert "argparse" not in {module for _, module in imported_modules(path)}, path.name
