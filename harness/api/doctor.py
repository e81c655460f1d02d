"""`doctor`: what this kernel and toolchain can trace, the attach type ktrace gets and why, the
VM lane's accelerator and the guests kept up, and the bpftrace releases (`harness doctor`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.api.planner import choose
from harness.errors import HarnessError
from harness.host.bpftrace_versions import listing
from harness.host.capabilities import ATTACH_ORDER, capabilities
from harness.lanes.up import listing as kept_up
from harness.lanes.vm import cached_accel


@dataclass
class Doctor:
    """What `harness doctor` shows; `as_dict()` is its --json.

    capabilities: the host's (harness.host.capabilities), field by field.
    attach_choice: {"attach": the type a kprobe/kfunc/tracepoint entry gets, or None; "reason"}.
    vm_lane: {"accelerator": kvm/tcg once probed, "probed", "kept_up": guests `lane up` left}.
    bpftraces: the releases `--bpftrace NAME` takes: {"name", "version", "origin"} each.
    """

    capabilities: dict[str, Any]
    attach_choice: dict[str, str | None]
    vm_lane: dict[str, Any]
    bpftraces: list[dict[str, str]]

    def as_dict(self) -> dict[str, Any]:
        return {**self.capabilities, "attach_choice": self.attach_choice, "vm_lane": self.vm_lane,
                "bpftraces": self.bpftraces}


def doctor() -> Doctor:
    """Read the host's capabilities, the planner's attach choice on them, the VM lane's state
    and the bpftrace releases; nothing is started (a guest kept up is only listed)."""
    caps = capabilities()
    accel = cached_accel()
    try:
        attach, why = choose(dict.fromkeys(ATTACH_ORDER), None, None, caps)
        choice: dict[str, str | None] = {"attach": attach, "reason": why}
    except HarnessError as err:
        choice = {"attach": None, "reason": str(err)}
    versions = listing()
    guests = kept_up()  # guests `harness lane up` left running (or recorded, and gone)
    return Doctor(
        caps.as_dict(), choice, {"accelerator": accel, "probed": accel is not None,
                                 "kept_up": guests},
        [{"name": n, "version": v, "origin": o} for n, v, o in versions],
    )
