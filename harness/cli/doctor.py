"""`harness doctor`: what this kernel and toolchain can trace, and which attach type ktrace gets."""

from __future__ import annotations

import argparse

from harness.errors import HarnessError
from harness.host.capabilities import ATTACH_ORDER, capabilities, choose_attach


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the capabilities as JSON")


def run(args: argparse.Namespace) -> int:
    caps = capabilities()
    if args.json:
        import json

        print(json.dumps(caps.as_dict(), indent=2))
        return 0
    from harness.lanes.vm import cached_accel

    rows = [(k, _show(v)) for k, v in caps.as_dict().items()]
    accel = cached_accel()
    rows.append(("vm lane", f"guests boot with {accel}" if accel else "not probed yet"))
    try:
        attach, why = choose_attach(dict.fromkeys(ATTACH_ORDER), caps)
        rows.append(("attach choice", f"{attach}: {why}"))
    except HarnessError as err:
        rows.append(("attach choice", str(err)))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def _show(value: object) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return "missing" if value in (None, "") else str(value)
