"""`harness doctor`: what this kernel and toolchain can trace, and which attach type ktrace gets."""

from __future__ import annotations

import argparse

from harness.errors import HarnessError
from harness.host.bpftrace_versions import listing
from harness.host.capabilities import ATTACH_ORDER, capabilities, choose_attach

EXAMPLES = """examples:
  harness doctor            # kernel, BTF, kprobes/kfunc, tools, and the attach type ktrace gets
  harness doctor --json     # the same as JSON, for scripts
"""

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the capabilities as JSON")


def run(args: argparse.Namespace) -> int:
    from harness.lanes.vm import cached_accel

    caps = capabilities()
    accel = cached_accel()
    try:
        attach, why = choose_attach(dict.fromkeys(ATTACH_ORDER), caps)
        choice: dict[str, str | None] = {"attach": attach, "reason": why}
    except HarnessError as err:
        choice = {"attach": None, "reason": str(err)}
    versions = listing()
    from harness.lanes.up import listing as kept_up

    guests = kept_up()  # guests `harness lane up` left running (or recorded, and gone)
    if args.json:
        import json

        vm = {"accelerator": accel, "probed": accel is not None, "kept_up": guests}
        bpftraces = [{"name": n, "version": v, "origin": o} for n, v, o in versions]
        print(
            json.dumps(
                {**caps.as_dict(), "attach_choice": choice, "vm_lane": vm, "bpftraces": bpftraces},
                indent=2,
            )
        )
        return 0
    rows = [(k, _show(v)) for k, v in caps.as_dict().items()]
    rows.append(("vm lane", f"guests boot with {accel}" if accel else "not probed yet"))
    rows.append(("vm kept up", "; ".join(
        f"{g['lane']} {g['condition']} (qemu group {g.get('pgid')}, ssh port {g.get('port')})"
        + (" - `harness lane down` clears it" if g["condition"] == "gone" else "")
        for g in guests) or "none (`harness lane up vm:6.1` keeps one)"))
    shown = f"{choice['attach']}: " if choice["attach"] else ""
    rows.append(("attach choice", f"{shown}{choice['reason']}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    # --bpftrace NAME: one row per release, with where it comes from.
    print("\nbpftrace releases (--bpftrace NAME):")
    name_width = max(len(name) for name, _, _ in versions)
    for name, version, origin in versions:
        print(f"  {name:<{name_width}}  {version}: {origin}")
    return 0


def _show(value: object) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return "missing" if value in (None, "") else str(value)
