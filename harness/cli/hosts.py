"""`--hosts` / `--inventory` / `--jobs` for run and crosscheck: the same command on a fleet
(harness.api.fleet), printed as one line per host as it finishes, then the merged tables."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from harness.api.fleet import DEFAULT_JOBS, HostRun
from harness.cli.options import at_least
from harness.errors import UsageError


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("fleet (every host at once, over ssh)")
    group.add_argument(
        "--hosts", metavar="H1,H2,...",
        help="run on each of these hosts at once: [USER@]HOST[:PORT] (your ssh config applies) "
        "or a lane such as vm:6.1; frames gain a host column",
    )
    group.add_argument(
        "--inventory", type=Path, metavar="FILE",
        help="the hosts from a file: one per line, or an Ansible INI/YAML inventory",
    )
    group.add_argument("--jobs", type=at_least(1), metavar="N",
                       help=f"hosts that run at once (default {DEFAULT_JOBS})")


def wanted(args: argparse.Namespace) -> bool:
    """The command runs on a fleet; options that make no sense there are refused."""
    if args.hosts is None and args.inventory is None:
        if args.jobs is not None:
            raise UsageError("--jobs sets how many hosts of a fleet run at once, and no fleet "
                             "is given", "add --hosts H1,H2 or --inventory FILE, or drop --jobs")
        return False
    if args.hosts is not None and args.inventory is not None:
        raise UsageError("--hosts and --inventory both name the fleet", "give one of them")
    given = [flag for flag, on in (
        ("--lane", args.lane != "host"), ("--dry-run", args.dry_run),
        ("-v", args.print_program), ("--again", getattr(args, "again", None) is not None),
    ) if on]
    if given:
        raise UsageError(
            f"{' and '.join(given)} cannot be combined with a fleet (--hosts/--inventory)",
            "each host is a lane of its own; to plan one host, use --lane ssh:HOST --dry-run",
        )
    return True


def jobs(args: argparse.Namespace) -> int:
    return DEFAULT_JOBS if args.jobs is None else int(args.jobs)


def hosts_list(args: argparse.Namespace) -> list[str] | None:
    if args.hosts is None:
        return None
    return [h.strip() for h in args.hosts.split(",") if h.strip()]


def finished(command: str) -> Callable[[HostRun], None]:
    """The on_host callback: one line per host as it finishes (errors on stderr)."""

    def say(r: HostRun) -> None:
        if r.ok:
            print(f"{r.label}: done in {r.seconds:.1f}s", flush=True)
        else:  # the error names the host already when it is about reaching it
            said = r.error if (r.error or "").startswith(r.label) else f"{r.label}: {r.error}"
            print(f"harness {command}: error: {said}", file=sys.stderr, flush=True)

    return say


def summary(runs: list[HostRun], path: Path | None) -> str:
    bad = [r.label for r in runs if not r.ok]
    ok = len(runs) - len(bad)
    return (f"hosts: {ok} of {len(runs)} ok" + (f" (failed: {', '.join(bad)})" if bad else "")
            + f"; results: {path}")
