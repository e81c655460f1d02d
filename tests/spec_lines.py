"""A probe spec as the command line makes it: `line("tracepoint:...", "--count-by", "comm")` is
the spec of `harness run tracepoint:... --count-by comm`, through the CLI's own flags
(harness.spec.options), so tests of codegen, twins and stacks start where a user does."""

from __future__ import annotations

import argparse

from harness.spec.model import ProbeSpec
from harness.spec.options import SpecOptions, add_flags


def line(probe: str, *argv: str) -> ProbeSpec:
    parser = argparse.ArgumentParser()
    add_flags(parser)
    return SpecOptions.from_namespace(parser.parse_args(list(argv))).to_spec(probe)
