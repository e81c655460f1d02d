"""`harness lane up|down|status [vm:SERIES]`: guests kept up between runs (harness.lanes.up)."""

from __future__ import annotations

import argparse
import json
import sys

from harness.cli.options import duration
from harness.cli.progress import terminal_progress
from harness.errors import UsageError
from harness.lanes import up as kept
from harness.lanes.debian import SUITES
from harness.lanes.vm import VMError, lane_series

EXAMPLES = """examples:
  harness lane up vm:6.1          # boot a 6.1 guest with sshd and leave it running
  harness run ktrace --lane vm:6.1  # ... now runs in it over SSH, no boot
  harness lane status             # guests kept up (or gone, or still booting)
  harness lane down vm:6.1        # stop it (`harness lane down` stops every one)
"""

ACTIONS = ("up", "down", "status")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS, help="up, down or status")
    parser.add_argument("lane", nargs="?",
                        help="vm[:SERIES] (6.1 or 6.12); up takes vm:6.1 when none is named, "
                        "down and status take every guest")
    parser.add_argument("--timeout", type=duration, metavar="TIME",
                        help="up: how long the boot may take (default 15m under TCG)")
    parser.add_argument("--json", action="store_true", help="status: print the guests as JSON")


def _series(lane: str) -> str:
    try:
        series = lane_series(lane)
    except VMError:
        raise UsageError(
            f"{lane!r} is no guest lane",
            "name a guest: vm, vm:6.1 or vm:6.12 (ssh hosts need no `lane up`)",
        ) from None
    if series not in SUITES:
        raise UsageError(f"no Debian kernel series {series!r}",
                         f"use one of {', '.join('vm:' + s for s in SUITES)}")
    return series


def run(args: argparse.Namespace) -> int:
    if args.lane is not None and not args.lane.strip():
        raise UsageError("the lane is empty", "name a guest: vm:6.1 or vm:6.12")
    if args.action != "up" and args.timeout is not None:
        raise UsageError(f"--timeout is for `lane up`, not `lane {args.action}`",
                         "drop --timeout")
    if args.action != "status" and args.json:
        raise UsageError(f"--json is for `lane status`, not `lane {args.action}`", "drop --json")
    wanted = [_series(args.lane)] if args.lane is not None else None
    if args.action == "up":
        return _up(wanted[0] if wanted else "6.1", args.timeout)
    if args.action == "down":
        series = wanted or [str(g["series"]) for g in kept.listing()]
        if not series:
            print("no guest is up")
        for s in series:
            state = kept.down(s)
            print(f"vm:{s}: " + ("was not up" if state is None else "down"))
        return 0
    guests = [g for g in kept.listing() if wanted is None or g["series"] in wanted]
    if args.json:
        print(json.dumps(guests, indent=2))
        return 0
    if not guests:
        print("no guest is up" + (f" for vm:{wanted[0]}" if wanted else ""))
    for g in guests:
        print(f"{g['lane']}: {g['condition']}, {g.get('release')} ({g.get('accel')}), "
              f"ssh 127.0.0.1:{g.get('port')}, since {g.get('started')}, qemu group "
              f"{g.get('pgid')}, console {g['dir']}/console.log")
    return 0


def _up(series: str, timeout: float | None) -> int:
    with terminal_progress() as progress:
        state = kept.up(series, progress, **({"timeout": timeout} if timeout else {}))
    for warning in state.get("warnings", []):
        print(f"warning: vm:{series}: {warning}", file=sys.stderr)
    print(f"vm:{series}: up, {state['release']} ({state['accel']}), booted in "
          f"{state.get('boot_s', 0):.0f}s; runs with --lane vm:{series} use it until "
          f"`harness lane down vm:{series}`")
    return 0
