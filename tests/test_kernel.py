"""Capability probe on the real machine, and the attach-type choice."""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path

import pytest

from harness.cli import main
from harness.host.capabilities import Capabilities, NoAttachPoint, capabilities, choose_attach

ALL = dict.fromkeys(("kprobe", "kfunc", "tracepoint"))


def caps_with(**changes: object) -> Capabilities:
    return dataclasses.replace(capabilities(), **changes)  # type: ignore[arg-type]


@pytest.mark.usefixtures("needs_bpf")
def test_capabilities_match_the_machine() -> None:
    caps = capabilities()
    assert caps.kernel == platform.release()
    assert caps.btf == Path("/sys/kernel/btf/vmlinux").exists()
    assert caps.tracefs and Path(caps.tracefs, "events", "net", "net_dev_queue").is_dir()
    assert caps.kprobes == Path(caps.tracefs, "kprobe_events").exists()
    assert caps.bpftrace is not None and caps.bpftrace.startswith("bpftrace v")


def test_choice_prefers_kprobe_then_kfunc_then_tracepoint() -> None:
    assert choose_attach(ALL, caps_with(kprobes=True, kfunc=True))[0] == "kprobe"
    attach, why = choose_attach(ALL, caps_with(kprobes=False, kfunc=True, btf=True))
    assert attach == "kfunc" and "kprobes are not built into this kernel" in why
    attach, why = choose_attach(ALL, caps_with(kprobes=False, kfunc=False, tracefs="/t"))
    assert attach == "tracepoint" and "kfunc" in why


def test_no_attach_point_names_what_is_missing_and_the_vm_lane() -> None:
    with pytest.raises(NoAttachPoint) as info:
        choose_attach({"kprobe": None}, caps_with(kprobes=False))
    assert "kprobes are not built into this kernel" in str(info.value)
    assert "--lane vm" in str(info.value)


@pytest.mark.usefixtures("needs_bpf")
def test_doctor_prints_the_attach_choice(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    expected = "kprobe" if capabilities().kprobes else "tracepoint"
    assert f"attach choice  {expected}:" in out
