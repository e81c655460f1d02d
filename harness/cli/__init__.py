"""The `harness` command: a thin dispatcher over `harness.cli.<name>` modules."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence

from harness.errors import HarnessError

# name -> (module under harness.commands, one-line help). Modules load lazily.
COMMANDS: dict[str, tuple[str, str]] = {
    "parse": ("parse", "parse saved bpftrace output into tables and CSV"),
    "run": ("run", "generate, run and parse a bpftrace program around a workload"),
    "doctor": ("doctor", "show what this kernel and toolchain can trace"),
    "crosscheck": ("crosscheck", "run bpftrace and the libbpf CO-RE twin on the same events"),
    "matrix": ("matrix", "run a catalog entry across kernels in the VM lane"),
    "bench": ("bench", "measure tracing overhead: untraced vs bpftrace vs libbpf"),
    "report": ("report", "turn a results directory into CSV, folded stacks, plots, summary"),
    "diff": ("diff", "compare the stack maps of two runs: differential flame graph and CSV"),
}


def _available() -> dict[str, tuple[str, str]]:
    """Subcommands whose module exists (lets the CLI grow one module at a time)."""
    found = {}
    for name, (module, help_text) in COMMANDS.items():
        if importlib.util.find_spec(f"harness.cli.{module}") is not None:
            found[name] = (module, help_text)
    return found


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written, and every flag's default shown where it has a real one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default == [] or \
            default == argparse.SUPPRESS
        if unset or "default" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _version() -> str:
    """The installed distribution's version (a checkout run without install says so)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ktrace-harness")
    except PackageNotFoundError:
        return "(not installed)"


class _VersionAction(argparse.Action):
    """--version that looks the version up only when asked (importlib.metadata costs ~50 ms
    of every command's start-up otherwise)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(f"harness {_version()}")
        parser.exit()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = _available()
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    parser.add_argument("--version", action=_VersionAction,
                        help="show the installed version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = argv[0] if argv and argv[0] in commands else None
    for name, (module, help_text) in commands.items():
        if name != chosen:
            sub.add_parser(name, help=help_text, description=help_text)
            continue
        mod = importlib.import_module(f"harness.cli.{module}")
        sp = sub.add_parser(name, help=help_text, description=help_text,
                            epilog=getattr(mod, "EXAMPLES", None), formatter_class=HelpFormatter)
        mod.add_arguments(sp)
    args = parser.parse_args(argv)
    args.argv = argv  # the exact words, for lanes that re-run the same command elsewhere
    mod = importlib.import_module(f"harness.cli.{commands[args.command][0]}")
    try:
        return int(mod.run(args) or 0)
    except HarnessError as err:
        print(f"harness {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"harness {args.command}: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The `harness` console script: main(), then an exit that skips interpreter teardown.

    Everything is written, closed and reaped by the time main() returns; tearing down the
    loaded modules (lark's grammar objects, pexpect, ...) still took 0.2-0.4 s of a quick
    `harness run` on a loaded 2-core VM (scripts/bench_run.py). Library callers and tests
    call main() and keep the normal exit.
    """
    try:
        rc = main()
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as cat does
        rc = 128 + 13  # SIGPIPE
    exit_now(rc)


def exit_now(rc: int) -> None:
    """Flush and leave without interpreter teardown (see entry)."""
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError, ValueError):
            stream.flush()
    os._exit(rc)


if __name__ == "__main__":
    entry()
