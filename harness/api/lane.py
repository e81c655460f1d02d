"""Guests kept up between runs (`harness lane up|down|status`): `lane_up`, `lane_down` and
`lane_status` name a guest lane (`vm`, `vm:6.1`, `vm:6.12`), check it, and ask harness.lanes.up,
which boots, finds and stops the guests. A run that names the lane then reaches the guest over
SSH instead of booting its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness import arguments
from harness.errors import UsageError
from harness.lanes import up as kept
from harness.lanes.debian import SUITES
from harness.lanes.vm import VMError, lane_series
from harness.progress import Progress, silent

__all__ = ["Guest", "lane_down", "lane_status", "lane_up"]


@dataclass(frozen=True)
class Guest:
    """A guest as its lane directory records it: `condition` is 'up', 'booting' (its `lane
    up` still waits) or 'gone' (recorded, its qemu no longer running); `record` is all that
    is recorded (state.json, with `condition` and `dir`), what `lane status --json` prints."""

    lane: str
    series: str
    condition: str
    release: str | None
    accel: str | None
    port: int | None
    started: str | None
    pgid: int | None
    dir: str
    boot_s: float | None
    warnings: tuple[str, ...]
    record: Mapping[str, Any]

    @classmethod
    def of(cls, state: Mapping[str, Any]) -> Guest:
        series = str(state["series"])
        record = {**state, "condition": state.get("condition") or kept.condition(dict(state)),
                  "dir": state.get("dir") or str(kept.lane_dir(series))}
        return cls(
            lane=str(record.get("lane") or f"vm:{series}"), series=series,
            condition=str(record["condition"]), release=record.get("release"),
            accel=record.get("accel"), port=record.get("port"), started=record.get("started"),
            pgid=record.get("pgid"), dir=str(record["dir"]), boot_s=record.get("boot_s"),
            warnings=tuple(record.get("warnings") or ()), record=record,
        )


def guest_series(lane: Any) -> str:
    """The Debian kernel series a guest lane names (`vm` is 6.1), or a one-line UsageError."""
    name = arguments.string("lane", lane, "'vm:6.1'")
    if not name.strip():
        raise UsageError("the lane is empty", "name a guest: vm:6.1 or vm:6.12")
    try:
        series = lane_series(name)
    except VMError:
        raise UsageError(
            f"{name!r} is no guest lane",
            "name a guest: vm, vm:6.1 or vm:6.12 (ssh hosts need no `lane up`)",
        ) from None
    if series not in SUITES:
        raise UsageError(f"no Debian kernel series {series!r}",
                         f"use one of {', '.join('vm:' + s for s in SUITES)}")
    return series


def lane_up(lane: str = "vm:6.1", *, timeout: float | None = None,
            progress: Progress | None = None) -> Guest:
    """Boot guest `lane` with sshd and leave it running (or return the one already up).
    `timeout`: seconds the boot may take (None: KTRACE_VM_BOOT_TIMEOUT, else 15 minutes);
    `progress` hears the kernel fetch and the boot. A boot that fails leaves nothing behind."""
    series = guest_series(lane)
    seconds = arguments.optional_seconds("timeout", timeout, "900")
    arguments.callback("progress", progress)
    state = kept.up(series, progress or silent, **({"timeout": seconds} if seconds else {}))
    return Guest.of(state)


def lane_down(lane: str | None = None) -> dict[str, bool]:
    """Stop guest `lane` (None: every guest recorded) and remove its lane directory; returns
    each lane asked for and whether a guest (or what one left) was there to stop."""
    wanted = [guest_series(lane)] if lane is not None else [
        str(g["series"]) for g in kept.listing()]
    return {f"vm:{series}": kept.down(series) is not None for series in wanted}


def lane_status(lane: str | None = None) -> list[Guest]:
    """The guests recorded (only `lane`'s when one is named), up, booting or gone."""
    series = None if lane is None else guest_series(lane)
    return [Guest.of(g) for g in kept.listing() if series is None or g["series"] == series]
