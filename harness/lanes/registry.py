"""Lanes by name: `get_lane("host" | "vm" | "vm:SERIES" | "ssh:[user@]host[:port]")`.

`vm:SERIES` is the guest `harness lane up` keeps up when there is one (over SSH), else a guest
booted for this process.

One booted guest per series and one connection per remote, per process, closed at exit. This
module sits above the concrete lanes (harness.lanes.vm, harness.lanes.remote), which import only
harness.lanes.base: the layering has no cycle. They are imported on first use, so a host run
does not pay their imports (~55 ms, most of it the SSH lane's).
"""

from __future__ import annotations

import atexit

from harness.lanes.base import HOST, Lane

_VMS: dict[str, Lane] = {}
_REMOTES: dict[str, Lane] = {}


def get_lane(lane: str | Lane) -> Lane:
    """`host`, `vm`, `vm:SERIES`, `ssh:[user@]host[:port]` or a Lane -> a Lane; one booted
    guest per series and one connection per remote, per process."""
    if isinstance(lane, Lane):
        return lane
    if lane == "host":
        return HOST
    if lane.startswith("ssh:"):
        from harness.lanes.remote import SSHLane

        if lane not in _REMOTES:
            _REMOTES[lane] = SSHLane(lane.removeprefix("ssh:"))
        return _REMOTES[lane]
    from harness.lanes.up import kept
    from harness.lanes.vm import VMLane, lane_series

    series = lane_series(lane)
    # A guest kept up (`harness lane up`, harness.lanes.up) is reached over SSH like any
    # remote host, instead of a guest booted for this process.
    guest = _REMOTES.get(f"up:{series}")
    if guest is None or not guest.usable():  # type: ignore[attr-defined]
        guest = kept(series)
        if guest is not None:
            _REMOTES[f"up:{series}"] = guest
    if guest is not None:
        return guest
    if series not in _VMS:
        _VMS[series] = VMLane(series)
    return _VMS[series]


@atexit.register
def close_all() -> None:
    """Close every remote connection and shut down every guest this process booted."""
    for each in [*_REMOTES.values(), *_VMS.values()]:
        each.close()
    _REMOTES.clear()
    _VMS.clear()
