"""The `harness` command: a thin dispatcher over `harness.cli.<name>` modules."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from harness.errors import HarnessError
from harness.host.lifetime import shielded
from harness.paths import cache_home

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
    "lane": ("lane", "keep a VM guest up between runs (up, down, status)"),
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


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# What main() says of an exception no code path expected; tests treat this line as a failure.
INTERNAL = "internal error"


class _StopOnSignal:
    """SIGINT, SIGTERM and SIGHUP all take the Ctrl-C path: the first one raises
    KeyboardInterrupt (carrying `signum`) so the run stops and keeps what it gathered; later
    ones are only acknowledged, so a second Ctrl-C cannot cut the saving of partial results.
    SIGKILL cannot be caught: children die with the harness through PDEATHSIG instead.

    A signal that lands while a finalizer runs (a ZipFile's __del__, a weakref callback) raises
    there, where Python ignores exceptions: it printed "Exception ignored ... KeyboardInterrupt"
    with a traceback and the run went on. `unraisable` takes such a stop back and raises it
    again a moment later (SIGALRM), outside the finalizer."""

    REDELIVER_S = 0.02

    def __init__(self, command: str) -> None:
        self.command = command
        self.signum: int | None = None
        self.pending: int | None = None
        self._hook = sys.unraisablehook

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self.handle)
        signal.signal(signal.SIGALRM, self.redeliver)
        self._hook = sys.unraisablehook
        sys.unraisablehook = self.unraisable

    def unraisable(self, info: Any) -> None:
        exc = info.exc_value
        if (isinstance(exc, KeyboardInterrupt) and getattr(exc, "signum", None) is not None
                and self.signum is not None):
            self.pending, self.signum = self.signum, None
            signal.setitimer(signal.ITIMER_REAL, self.REDELIVER_S)
            return
        self._hook(info)

    def redeliver(self, signum: int, frame: FrameType | None) -> None:
        if self.pending is not None and self.signum is None:
            pending, self.pending = self.pending, None
            self.handle(pending, frame)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            with contextlib.suppress(OSError):
                print(f"harness {self.command}: still stopping; partial results are being "
                      "saved (SIGKILL ends it at once)", file=sys.stderr)
            return
        self.signum = signum
        stop = KeyboardInterrupt()
        stop.signum = signum  # type: ignore[attr-defined]
        raise stop


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = _available()
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    parser.add_argument("--version", action=_VersionAction,
                        help="show the installed version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = argv[0] if argv and argv[0] in commands else None
    chosen_parser = parser
    for name, (module, help_text) in commands.items():
        if name != chosen:
            sub.add_parser(name, help=help_text, description=help_text)
            continue
        mod = importlib.import_module(f"harness.cli.{module}")
        sp = sub.add_parser(name, help=help_text, description=help_text,
                            epilog=getattr(mod, "EXAMPLES", None), formatter_class=HelpFormatter)
        mod.add_arguments(sp)
        chosen_parser = sp
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's parser: `harness lane: error: ...`, like its other errors
        chosen_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = argv  # the exact words, for lanes that re-run the same command elsewhere
    mod = importlib.import_module(f"harness.cli.{commands[args.command][0]}")
    stopper = _StopOnSignal(args.command)
    stopper.install()
    try:
        status = int(mod.run(args) or 0)
    except HarnessError as err:
        _say(f"harness {args.command}: error: {err}")
        status = err.exit_code
    except PermissionError as err:
        _say(f"harness {args.command}: error: permission denied: {err.filename or err}; "
             "run the harness as root (sudo), or fix that path's permissions")
        status = 2
    except BrokenPipeError:  # the reader went away: entry() stops quietly
        raise
    except OSError as err:  # the system refused something (disk full, a path too long, ...)
        _say(f"harness {args.command}: error: {_os_error(err)}")
        status = 2
    except Exception as err:  # a bug: one line (and a non-zero exit), not a traceback
        if os.environ.get("KTRACE_TRACEBACK"):
            raise
        said = " ".join(str(err).split())[:200]
        _say(f"harness {args.command}: {INTERNAL}: {err.__class__.__name__}: {said}; "
             "this is a harness bug: run again with KTRACE_TRACEBACK=1 and report the traceback")
        status = 1
    except KeyboardInterrupt as stop:
        signum = getattr(stop, "signum", signal.SIGINT)
        _say(f"harness {args.command}: interrupted by "
             f"{'Ctrl-C' if signum == signal.SIGINT else signal.Signals(signum).name}")
        status = 128 + signum
    finally:
        _close_lanes()
    if stopper.signum is not None and status < 128:
        # The run ended on a signal but finished its stop normally: the shell still hears it.
        status = 128 + stopper.signum
    return status


def _close_lanes() -> None:
    """Shut down the guests this command booted, here: `entry` leaves through os._exit, which
    skips the atexit hook that would (the watchdog would only kill them, and remove their
    scratch directories)."""
    lanes = sys.modules.get("harness.lanes.registry")
    if lanes is not None:
        with shielded(deliver=True):
            lanes.close_all()


def _os_error(err: OSError) -> str:
    """An OSError as cause; fix. A path in the cache is named as the cache (KTRACE_CACHE),
    which is what the user can change."""
    where = f": {err.filename}" if err.filename else ""
    cache = str(cache_home())
    if err.filename and str(err.filename).startswith(cache):
        return (f"the cache {cache} cannot be used ({err.strerror or err}{where}); "
                "set KTRACE_CACHE to a writable directory")
    return f"{err.strerror or err}{where}; check that path, its file system and free space"


def _say(line: str) -> None:
    with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
        print(line, file=sys.stderr)


def entry() -> None:
    """The `harness` console script: main(), then an exit that skips interpreter teardown.

    Everything is written, closed and reaped by the time main() returns; tearing down the
    loaded modules (lark's grammar objects, pexpect, ...) still took 0.2-0.4 s of a quick
    `harness run` on a loaded 2-core VM (scripts/bench_run.py). Library callers and tests
    call main() and keep the normal exit.
    """
    try:
        try:
            rc = main()
        finally:  # from here on a stop signal is held, never delivered: os._exit follows
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as cat does
        rc = 128 + 13  # SIGPIPE
    except KeyboardInterrupt as stop:  # a stop signal that came just as main() returned
        rc = 128 + getattr(stop, "signum", signal.SIGINT)
    pending = signal.sigpending().intersection(STOP_SIGNALS)
    if pending and rc < 128:  # stopped while leaving: the results are saved, the shell hears it
        rc = 128 + min(pending)
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
