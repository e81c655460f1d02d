"""Every subcommand explains itself: help on every flag, real defaults shown, examples."""

from __future__ import annotations

import argparse
import importlib

import pytest

from harness.cli import COMMANDS, HelpFormatter


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_flag_has_help_and_every_command_examples(name: str) -> None:
    module = importlib.import_module(f"harness.cli.{COMMANDS[name][0]}")
    parser = argparse.ArgumentParser(prog=f"harness {name}", formatter_class=HelpFormatter,
                                     epilog=getattr(module, "EXAMPLES", None))
    module.add_arguments(parser)
    silent = [a.dest for a in parser._actions if not a.help]
    assert silent == []
    text = " ".join(parser.format_help().split())  # argparse wraps lines anywhere
    assert "examples: harness " + name in text
    for action in parser._actions:
        if action.option_strings and isinstance(action.default, (int, float)) and not \
                isinstance(action.default, bool) and action.default is not None:
            assert f"(default: {action.default})" in text or "default" in (action.help or "")
