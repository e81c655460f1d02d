"""Can cycles and instructions per BPF program run be counted here? (`bpftool prog profile`)

`bpftool prog profile` counts a program's cycles and instructions with hardware performance
counters, so it needs two things: a CPU whose PMU the kernel exposes (a hardware perf event must
open), and a bpftool built with its BPF skeletons (Debian 12's 7.1 is not: it prints "command is
not supported" and exits 0). Each is asked of the machine directly: a hardware cycles counter
is opened on this process and closed, and bpftool is asked to profile a program id that cannot
exist, which a capable bpftool refuses for the id and an incapable one for the command.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
import subprocess

PERF_TYPE_HARDWARE = 0
PERF_COUNT_HW_CPU_CYCLES = 0
PERF_ATTR_SIZE = 128
SYS_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}


def hardware_counters() -> str | None:
    """None when a hardware cycles counter opens on this process; else why not."""
    number = SYS_PERF_EVENT_OPEN.get(platform.machine())
    if number is None:
        return f"perf_event_open's number on {platform.machine()} is not known here"
    attr = ctypes.create_string_buffer(PERF_ATTR_SIZE)
    struct.pack_into("<IIQ", attr, 0, PERF_TYPE_HARDWARE, PERF_ATTR_SIZE, PERF_COUNT_HW_CPU_CYCLES)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(number, attr, 0, -1, -1, 0)  # this process, any CPU, no group, no flags
    if fd < 0:
        err = ctypes.get_errno()
        return f"no hardware PMU (the kernel refuses a cycles perf event: {os.strerror(err)})"
    os.close(fd)
    return None


def bpftool_profile() -> str | None:
    """None when bpftool has `prog profile`; else why not."""
    try:
        done = subprocess.run(
            ["bpftool", "prog", "profile", "id", "4294967295", "duration", "1", "cycles"],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bpftool did not run ({exc})"
    said = done.stdout + done.stderr
    if "not supported" in said:
        return "bpftool was built without `prog profile` (its BPF skeletons need clang >= 10)"
    return None


def state() -> str:
    """One line for a report: `available` or why cycles and instructions are not measured."""
    reasons = [r for r in (hardware_counters(), bpftool_profile()) if r]
    if not reasons:
        return "available"
    return "not measured here: " + "; ".join(reasons)


def guest_state(accel: str) -> str:
    """The same line for a VM guest, from how it runs: QEMU's TCG emulates no PMU."""
    if accel == "tcg":
        return "not measured in the guest: QEMU's TCG emulates no hardware PMU"
    return "not measured in the guest: the guest's PMU is not probed"
