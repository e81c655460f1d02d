"""What the running kernel and toolchain can trace, and which attach type a probe should use.

Each check is a small cached function so `harness doctor` and `harness run` ask the machine once.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.paths import cache_home

TRACEFS = Path("/sys/kernel/tracing")
DEBUGFS = Path("/sys/kernel/debug")
BTF = Path("/sys/kernel/btf/vmlinux")
ATTACH_ORDER = ("kprobe", "kfunc", "tracepoint", "profile")
# The kernel feature a probe kind rests on, where it is not the kind itself; kinds outside
# ATTACH_ORDER and this table (uprobe, uretprobe) need nothing the capability probe checks.
NEEDS = {"kretprobe": "kprobe", "kretfunc": "kfunc"}


class NoAttachPoint(HarnessError):
    """None of a probe's attach types works on this kernel."""


def _first_line(argv: list[str]) -> str | None:
    """First output line of a version command, or None when the tool is missing."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else None


def _is_dir(path: Path) -> bool:
    """is_dir() that says False where a non-root user may not look (tracefs is mode 700)."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def mount_tracefs() -> list[str]:
    """Mount tracefs and debugfs where they are missing (root only); returns what it mounted.

    An explicit step, run by the host lane before a run: tracepoints and kprobes are listed
    there, and a fresh container or guest may not have them mounted. `capabilities()` only looks.
    """
    mounted = []
    for fs, path in (("tracefs", TRACEFS), ("debugfs", DEBUGFS)):
        probe = path / "events" if fs == "tracefs" else path / "tracing"
        if _is_dir(path) and not _exists(probe) and os.geteuid() == 0:
            done = subprocess.run(
                ["mount", "-t", fs, fs, str(path)], capture_output=True, check=False
            )
            if done.returncode == 0:
                mounted.append(str(path))
    if mounted:
        capabilities.cache_clear()
    return mounted


def tracefs_root() -> str:
    """Where tracefs's `events/` lives (tracefs, else debugfs/tracing), or '' when unmounted."""
    if _is_dir(TRACEFS / "events"):
        return str(TRACEFS)
    if _is_dir(DEBUGFS / "tracing" / "events"):
        return str(DEBUGFS / "tracing")
    return ""


def kprobes_built_in() -> bool:
    """kprobes exist when the tracing fs offers kprobe_events (CONFIG_KPROBE_EVENTS)."""
    root = tracefs_root()
    return bool(root) and _exists(Path(root, "kprobe_events"))


# Capability bits (linux/capability.h) that loading tracing BPF programs needs.
CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39


def effective_capabilities(status: str | None = None) -> int:
    """The CapEff bit mask of this process (from /proc/self/status, or the text given)."""
    if status is None:
        status = Path("/proc/self/status").read_text()
    m = re.search(r"^CapEff:\s*([0-9a-fA-F]+)$", status, re.M)
    return int(m.group(1), 16) if m else 0


def missing_bpf_privileges(euid: int | None = None, cap_eff: int | None = None) -> str | None:
    """Why this process cannot load tracing BPF programs, or None when it can.

    Root whose capabilities were dropped (a container, `setpriv --bounding-set=-all`) makes
    bpftrace fail later with a misleading "Unknown struct/union"; say the real cause instead.
    """
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        return "not root: loading BPF programs needs root"
    caps = effective_capabilities() if cap_eff is None else cap_eff
    if caps & (1 << CAP_SYS_ADMIN):
        return None
    missing = [name for bit, name in ((CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON"))
               if not caps & (1 << bit)]
    if missing:
        return f"root without {'/'.join(missing)} (capabilities dropped; CAP_SYS_ADMIN absent too)"
    return None


@functools.cache
def bpftrace_info() -> dict[str, str]:
    """`bpftrace --info` as a flat {'kfunc': 'no', 'btf': 'yes', ...} mapping ({} if missing)."""
    if shutil.which("bpftrace") is None:
        return {}
    try:
        done = subprocess.run(
            ["bpftrace", "--info"], capture_output=True, text=True, timeout=60, check=False
        )
    except subprocess.TimeoutExpired:  # a TCG guest on a busy host: no answer means no kfunc
        return {}
    info: dict[str, str] = {}
    for line in (done.stdout + done.stderr).splitlines():
        m = re.match(r"^\s+([\w:. ()/-]+?):\s+(.+)$", line)
        if m:
            info.setdefault(m.group(1).strip(), m.group(2).strip())
    return info


def lockdown_mode() -> str:
    """The active lockdown mode (`none`, `integrity`, `confidentiality`) or 'unknown'."""
    try:
        text = Path("/sys/kernel/security/lockdown").read_text()
    except OSError:
        return "unknown"
    m = re.search(r"\[(\w+)\]", text)
    return m.group(1) if m else "unknown"


def kvm_usable() -> bool:
    """/dev/kvm opens read-write; whether a guest really boots on it is the VM lane's probe."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


@dataclass(frozen=True)
class Capabilities:
    """One snapshot of what this machine can trace; recorded in run.json."""

    kernel: str
    arch: str
    root: bool
    btf: bool
    tracefs: str
    kprobes: bool
    kfunc: bool
    lockdown: str
    bpftrace: str | None
    clang: str | None
    bpftool: str | None
    libbpf: str | None
    qemu: str | None
    kvm: bool

    def supports(self, attach: str) -> bool:
        """Whether an attach type can work here (tracepoints only need tracefs and root; a
        profile probe a perf event, which bpftrace reports itself where there is none)."""
        if attach == "profile":
            return True
        if attach == "kprobe":
            return self.kprobes
        if attach == "kfunc":
            return self.kfunc and self.btf
        return bool(self.tracefs)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


TOOL_COMMANDS = {
    "bpftrace": ["bpftrace", "--version"],
    "clang": ["clang", "--version"],
    "bpftool": ["bpftool", "version"],
    "libbpf": ["pkg-config", "--modversion", "libbpf"],
    "qemu": ["qemu-system-x86_64", "--version"],
}


def _probe_tools() -> dict[str, Any]:
    """`bpftrace --info` and every tool's version, queried side by side (~0.3 s idle, more
    under load: bpftrace --info probes kernel features); a run whose capabilities are cached
    never needs it."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(TOOL_COMMANDS) + 1) as pool:
        info_future = pool.submit(bpftrace_info)
        versions = {name: pool.submit(_first_line, argv) for name, argv in TOOL_COMMANDS.items()}
        return {
            "info": info_future.result(),
            "tools": {name: future.result() for name, future in versions.items()},
        }


def _cache_key() -> dict[str, Any]:
    """What the tool answers depend on: this boot of this kernel, and each tool binary."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    binaries: dict[str, Any] = {}
    for argv in TOOL_COMMANDS.values():
        path = shutil.which(argv[0])
        if path is not None:
            st = os.stat(path)
            binaries[argv[0]] = [os.path.realpath(path), st.st_mtime_ns, st.st_size]
    libbpf = Path("/usr/lib/x86_64-linux-gnu/pkgconfig/libbpf.pc")
    binaries["libbpf.pc"] = libbpf.stat().st_mtime_ns if libbpf.exists() else None
    return {"kernel": platform.release(), "boot": boot, "euid": os.geteuid(), "bin": binaries}


def _tool_answers() -> dict[str, Any]:
    """_probe_tools(), from the cache when this boot and the same binaries asked before.

    `harness run` needs the answers before bpftrace starts, and re-asking costs 0.3-0.8 s per
    run; a new boot, kernel or tool binary invalidates the cache.
    """
    path = cache_home() / "capabilities.json"
    key = _cache_key()
    try:
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return {"info": cached["info"], "tools": cached["tools"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    answers = _probe_tools()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, **answers}))
        tmp.replace(path)
    except OSError:
        pass  # an unwritable cache only costs the next run the probe again
    return answers


@functools.cache
def capabilities(*, fresh: bool = False) -> Capabilities:
    """Probe the machine once per process; tool answers cached per boot (`fresh` re-asks)."""
    answers = _probe_tools() if fresh else _tool_answers()
    info, tools = answers["info"], answers["tools"]
    return Capabilities(
        kernel=platform.release(),
        arch=platform.machine(),
        root=os.geteuid() == 0,
        btf=BTF.exists(),
        tracefs=tracefs_root(),
        kprobes=kprobes_built_in(),
        # bpftrace checks kernel support for kfunc itself (BTF func + trampolines).
        kfunc=info.get("kfunc") == "yes",
        lockdown=lockdown_mode(),
        kvm=kvm_usable(),
        **tools,
    )


def parse_version(text: str) -> tuple[int, int, int]:
    """`bpftrace v0.23.2-1` -> (0, 23, 2); (0, 0, 0) when the text holds no version. Here, not
    in codegen (which takes the tuple): every run needs it before bpftrace starts, codegen only
    for a spec; harness.host.bpftrace_versions reads release versions with it too."""
    m = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return (0, 0, 0)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def bpftrace_version() -> tuple[int, int, int]:
    """The installed bpftrace's version, e.g. (0, 17, 0); (0, 0, 0) when it is missing.

    Read from the capability probe, which has already asked `bpftrace --version` once.
    """
    return parse_version(capabilities().bpftrace or "")


def choose_attach(available: Mapping[str, object], caps: Capabilities) -> tuple[str, str]:
    """Pick kprobe, else kfunc, else the tracepoint equivalent; say why in one sentence.

    `available` maps the attach types a catalog entry or spec declares to their probes.
    """
    if not caps.root:  # tracefs is unreadable then, which would read as "not mounted"
        raise NoAttachPoint("cannot trace: not root", "run the harness as root (sudo)")
    skipped: list[str] = []
    ordered = [a for a in ATTACH_ORDER if a in available]
    for attach in ordered + [a for a in available if a not in ATTACH_ORDER]:
        needs = NEEDS.get(attach, attach)
        if needs not in ATTACH_ORDER or caps.supports(needs):
            why = f"{attach} works on this kernel"
            if skipped:
                why += f" ({'; '.join(skipped)})"
            return attach, why
        skipped.append(_why_not(needs, caps))
    raise NoAttachPoint(
        f"no attach point of this probe works on kernel {caps.kernel}: " + "; ".join(skipped),
        "run it in a kernel that has them with --lane vm",
    )


def _why_not(attach: str, caps: Capabilities) -> str:
    if attach == "kprobe":
        return "kprobes are not built into this kernel"
    if attach == "kfunc":
        if not caps.btf:
            return "kfunc/fentry needs BTF, and /sys/kernel/btf/vmlinux is missing"
        return "kfunc/fentry is not available (BTF is present; bpftrace finds no fentry support)"
    return "tracefs is not mounted"
