"""Run the generated bpftrace program and the libbpf CO-RE twin on the same events; compare.

Both tracers filter on the pid of one gated workload: the workload starts first (its pid known),
both tracers attach, and only then is it released, so both see exactly the same sends. The
comparison is exact: counts per kernel stack, the log2 length histogram, the multiset of hashes.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.paths import workload

if TYPE_CHECKING:
    import pandas as pd

    from harness.twin.build import BuildOutputs



class CrosscheckError(HarnessError):
    """The crosscheck could not run (as opposed to running and finding a mismatch)."""


@dataclass
class Comparison:
    """One compared map: equal or not, and the rows that differ (key, bpftrace, libbpf)."""

    map_name: str
    what: str
    equal: bool
    diff: list[tuple[str, int, int]] = field(default_factory=list)


def _stack_counts(frame: pd.DataFrame, col: str) -> Counter[Any]:
    return Counter({tuple(k): int(v) for k, v in zip(frame[col], frame["value"], strict=True)})


def _key_counts(frame: pd.DataFrame, col: str) -> Counter[Any]:
    return Counter({int(k): int(v) for k, v in zip(frame[col], frame["value"], strict=True)})


def _hist_counts(frame: pd.DataFrame) -> Counter[Any]:
    rows = zip(frame["lo"], frame["hi"], frame["count"], strict=True)
    return Counter({(_bound(lo), _bound(hi)): int(c) for lo, hi, c in rows if int(c)})


def _bound(v: object) -> int | None:
    import pandas as pd

    return None if v is None or v is pd.NA else int(v)  # type: ignore[call-overload]


def _compare(name: str, what: str, left: Counter[Any], right: Counter[Any]) -> Comparison:
    keys = sorted(set(left) | set(right), key=repr)
    diff = [(_show_key(k), left[k], right[k]) for k in keys if left[k] != right[k]]
    return Comparison(name, what, not diff, diff)


def _show_key(key: object) -> str:
    if isinstance(key, tuple) and key and all(isinstance(f, str) for f in key):
        return ";".join(reversed(key))  # root first, as folded stacks read
    if isinstance(key, tuple) and len(key) == 2:
        lo, hi = key
        return f"[{'...' if lo is None else lo}, {'...' if hi is None else hi})"
    return str(key)


def compare_frames(
    bpftrace: dict[str, pd.DataFrame],
    libbpf: dict[str, pd.DataFrame],
    key_names: dict[str, list[str]],
) -> list[Comparison]:
    """Exact comparison of the ktrace maps: stacks, hash multiset, length histogram."""
    stack_col = key_names["@stacks"][0]
    hash_col = key_names["@hash"][0]
    return [
        _compare(
            "@stacks",
            "count per kernel stack",
            _stack_counts(bpftrace["@stacks"], stack_col),
            _stack_counts(libbpf["@stacks"], stack_col),
        ),
        _compare(
            "@hash",
            "multiset of skb->hash",
            _key_counts(bpftrace["@hash"], hash_col),
            _key_counts(libbpf["@hash"], hash_col),
        ),
        _compare(
            "@len",
            "log2 histogram of skb->len",
            _hist_counts(bpftrace["@len"]),
            _hist_counts(libbpf["@len"]),
        ),
    ]


@dataclass
class CrosscheckResult:
    attach: str
    reason: str
    comparisons: list[Comparison]
    bpftrace_frames: dict[str, pd.DataFrame]
    libbpf_frames: dict[str, pd.DataFrame]
    build: BuildOutputs
    meta: dict[str, Any]

    @property
    def passed(self) -> bool:
        return all(c.equal for c in self.comparisons)


def run_crosscheck(
    name: str = "ktrace",
    *,
    attach: str | None = None,
    count: int = 200,
    sizes: str = "1,100,1000,1400",
    sockets: int = 3,
    libbpf_pid_offset: int = 0,
    timeout: float = 60.0,
    prebuilt: Path | None = None,
) -> CrosscheckResult:
    """Run both tracers around one workload and compare their frames.

    `libbpf_pid_offset` deliberately points the twin at another pid: a test uses it to prove a
    mismatch is caught. `prebuilt` is a build directory made elsewhere (the VM lane runs the
    host's object in the guest, so one .bpf.o serves every kernel).
    """
    from harness.host.capabilities import bpftrace_version, capabilities, choose_attach
    from harness.host.runner import BpftraceProcess
    from harness.host.symbols import probe_symbol
    from harness.host.workload import GatedWorkload
    from harness.output.frames import to_frames
    from harness.spec import catalog, codegen
    from harness.twin.build import build, prebuilt_outputs
    from harness.twin.loader import TwinProcess, core_relocations, twin_frames

    if name != "ktrace":
        raise CrosscheckError(
            f"no libbpf twin for catalog entry '{name}'", "crosscheck supports: ktrace"
        )
    entry = catalog.get(name)
    caps = capabilities()
    if attach is None:
        attach, reason = choose_attach(entry.equivalents, caps)
    else:
        reason = "chosen with --attach"
    spec = entry.equivalents[attach]
    key_names = spec.key_names()
    outputs = prebuilt_outputs(prebuilt) if prebuilt else build()
    loader = outputs.loader
    marker = f"KTRACE_XCHECK_{int(time.time() * 1000)}"
    argv = [
        sys.executable,
        str(workload("udp_send.py")),
        "--no-wait",
        "--count",
        str(count),
        "--sizes",
        sizes,
        "--sockets",
        str(sockets),
    ]
    work = GatedWorkload(argv)
    twin: TwinProcess | None = None
    bt: BpftraceProcess | None = None
    started = time.time()
    try:
        symbol = probe_symbol(spec)
        program = codegen.generate(
            spec, attach, bpftrace_version(), marker, pid=work.pid, symbol=symbol
        )
        bt = BpftraceProcess(program, marker)
        bt.start()
        twin = TwinProcess(loader, attach, work.pid + libbpf_pid_offset, verbose=True, func=symbol)
        twin.wait_attached(timeout)
        bt.wait_attached(timeout)
        work.go()
        status = work.wait(timeout)
        if status != 0:
            raise CrosscheckError(f"workload exited with status {status}", "run it by hand")
        bt_result = bt.stop()
        twin_rec = twin.stop()
    finally:
        work.close()
        if bt is not None and bt.child is not None and bt.child.isalive():
            bt.stop()
        if twin is not None:
            twin.stop_quietly()
    if bt_result.error is not None:
        raise bt_result.error
    assert bt_result.output is not None
    bt_frames = to_frames(bt_result.output, key_names)
    lb_frames = twin_frames(twin_rec, key_names)
    comparisons = compare_frames(bt_frames, lb_frames, key_names)
    meta = {
        "command": " ".join(sys.argv),
        "catalog": name,
        "attach": attach,
        "attach_reason": reason,
        "program": program,
        "workload": argv,
        "workload_pid": work.pid,
        "bpf_obj_sha256": outputs.sha256,
        "arch_define": outputs.arch_define,
        "kernel": caps.kernel,
        "bpftrace": caps.bpftrace,
        "libbpf": caps.libbpf,
        "libbpf_lost": twin_rec.lost,
        "core_relocations": core_relocations(twin_rec.log),
        "bpftrace_time_to_attached_s": bt_result.time_to_attached,
        "libbpf_time_to_attached_s": None
        if twin.attached is None
        else twin.attached - twin.started,
        "started": started,
        "stopped": time.time(),
    }
    return CrosscheckResult(attach, reason, comparisons, bt_frames, lb_frames, outputs, meta)
