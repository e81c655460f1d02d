"""Capability probe on the real machine, and the attach-type choice."""

from __future__ import annotations

import dataclasses
import json
import platform
from pathlib import Path

import pytest

from harness.cli import main
from harness.host.capabilities import Capabilities, NoAttachPoint, capabilities, choose_attach

ALL = dict.fromkeys(("kprobe", "kfunc", "tracepoint"))


# A literal machine for the pure tests: they must not depend on what this host can do.
LITERAL = Capabilities(
    kernel="6.1.0-test",
    arch="x86_64",
    root=True,
    btf=True,
    tracefs="/sys/kernel/tracing",
    kprobes=True,
    kfunc=True,
    lockdown="none",
    bpftrace="bpftrace v0.17.0",
    clang="Debian clang version 14.0.6",
    bpftool="bpftool v7.1.0",
    libbpf="1.1.0",
    qemu=None,
    kvm=False,
)


def caps_with(**changes: object) -> Capabilities:
    return dataclasses.replace(LITERAL, **changes)  # type: ignore[arg-type]


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


@pytest.mark.usefixtures("needs_bpf")
def test_doctor_json_has_the_attach_choice_and_the_vm_lane(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["attach_choice"]["attach"] in ("kprobe", "kfunc", "tracepoint")
    assert report["attach_choice"]["reason"]
    assert set(report["vm_lane"]) == {"accelerator", "probed", "kept_up"}


def test_kfunc_reason_does_not_contradict_btf() -> None:
    caps = Capabilities(kernel="6.18", arch="x86_64", root=True, btf=True, tracefs="/t",
                        kprobes=False, kfunc=False, lockdown="none", bpftrace="v0.17.0",
                        clang=None, bpftool=None, libbpf=None, qemu=None, kvm=False)
    _, why = choose_attach(dict.fromkeys(("kfunc", "tracepoint")), caps)
    assert "BTF is present" in why and "no BTF" not in why
    _, why = choose_attach(dict.fromkeys(("kfunc", "tracepoint")),
                           dataclasses.replace(caps, btf=False))
    assert "needs BTF" in why


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("harness 0.")
