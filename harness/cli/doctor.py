"""`harness doctor`: what this kernel and toolchain can trace, and which attach type ktrace gets
(harness.api.doctor reads it; this prints it)."""

from __future__ import annotations

import argparse
import json

from harness.api.doctor import doctor

EXAMPLES = """examples:
  harness doctor            # kernel, BTF, kprobes/kfunc, tools, and the attach type ktrace gets
  harness doctor --json     # the same as JSON, for scripts
"""

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the capabilities as JSON")


def run(args: argparse.Namespace) -> int:
    found = doctor()
    if args.json:
        print(json.dumps(found.as_dict(), indent=2))
        return 0
    accel, choice = found.vm_lane["accelerator"], found.attach_choice
    rows = [(k, _show(v)) for k, v in found.capabilities.items()]
    rows.append(("vm lane", f"guests boot with {accel}" if accel else "not probed yet"))
    rows.append(("vm kept up", "; ".join(
        f"{g['lane']} {g['condition']} (qemu group {g.get('pgid')}, ssh port {g.get('port')})"
        + (" - `harness lane down` clears it" if g["condition"] == "gone" else "")
        for g in found.vm_lane["kept_up"]) or "none (`harness lane up vm:6.1` keeps one)"))
    shown = f"{choice['attach']}: " if choice["attach"] else ""
    rows.append(("attach choice", f"{shown}{choice['reason']}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    # --bpftrace NAME: one row per release, with where it comes from.
    print("\nbpftrace releases (--bpftrace NAME):")
    name_width = max(len(b["name"]) for b in found.bpftraces)
    for b in found.bpftraces:
        print(f"  {b['name']:<{name_width}}  {b['version']}: {b['origin']}")
    return 0


def _show(value: object) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return "missing" if value in (None, "") else str(value)
