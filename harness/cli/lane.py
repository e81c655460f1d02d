"""`harness lane up|down|status [vm:SERIES]`: guests kept up between runs (harness.lanes.up)."""

from __future__ import annotations

import argparse
import json
import sys

from harness.api.lane import guest_series, lane_down, lane_status, lane_up
from harness.cli.options import duration
from harness.cli.progress import terminal_progress
from harness.errors import UsageError

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


def run(args: argparse.Namespace) -> int:
    if args.action != "up" and args.timeout is not None:
        raise UsageError(f"--timeout is for `lane up`, not `lane {args.action}`",
                         "drop --timeout")
    if args.action != "status" and args.json:
        raise UsageError(f"--json is for `lane status`, not `lane {args.action}`", "drop --json")
    if args.action == "up":
        return _up("vm:6.1" if args.lane is None else args.lane, args.timeout)
    if args.action == "down":
        stopped = lane_down(args.lane)
        if not stopped:
            print("no guest is up")
        for lane, was_up in stopped.items():
            print(f"{lane}: " + ("down" if was_up else "was not up"))
        return 0
    guests = lane_status(args.lane)
    if args.json:
        print(json.dumps([g.record for g in guests], indent=2))
        return 0
    if not guests:
        print("no guest is up" + (f" for vm:{guest_series(args.lane)}" if args.lane else ""))
    for g in guests:
        print(f"{g.lane}: {g.condition}, {g.release} ({g.accel}), ssh 127.0.0.1:{g.port}, "
              f"since {g.started}, qemu group {g.pgid}, console {g.dir}/console.log")
    return 0


def _up(lane: str, timeout: float | None) -> int:
    with terminal_progress() as progress:
        guest = lane_up(lane, timeout=timeout, progress=progress)
    for warning in guest.warnings:
        print(f"warning: {guest.lane}: {warning}", file=sys.stderr)
    print(f"{guest.lane}: up, {guest.release} ({guest.accel}), booted in "
          f"{guest.boot_s or 0:.0f}s; runs with --lane {guest.lane} use it until "
          f"`harness lane down {guest.lane}`")
    return 0
