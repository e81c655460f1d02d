"""Built-in probes, each with its equivalents per attach type and a default workload.

`ktrace` is the CO-RE example's probe. Its maps and shapes are the same whichever attach type the
kernel allows: kprobe:udp_send_skb where kprobes exist, kfunc:udp_send_skb where fentry works, and
the net:net_dev_queue tracepoint (which sees the same loopback sends, udp_send_skb in its stack)
where neither does.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from harness.errors import UsageError
from harness.paths import WORKLOADS
from harness.spec.model import Agg, Arg, Probe, ProbeSpec

SKB = "struct sk_buff *"


@dataclass(frozen=True)
class Entry:
    """A catalog entry: a description, the spec per attach type, the default workload argv.

    Workload argv placeholders: {python} (this interpreter), {workloads} (the package's workloads/),
    {count} and {sizes} (from the CLI).
    """

    name: str
    description: str
    equivalents: dict[str, ProbeSpec]
    workload: list[str] | None

    def workload_argv(self, count: int, sizes: str) -> list[str] | None:
        """The default workload with its placeholders filled in."""
        if self.workload is None:
            return None
        values = {
            "python": sys.executable,
            "workloads": str(WORKLOADS),
            "count": str(count),
            "sizes": sizes,
        }
        return [part.format(**values) for part in self.workload]


def _ktrace_maps() -> tuple[Agg, ...]:
    return (
        Agg("@stacks", "count", keys=("kstack",)),
        Agg("@hash", "collect", value="skb->hash"),
        Agg("@len", "hist", value="skb->len"),
    )


def _ktrace() -> Entry:
    maps = _ktrace_maps()
    specs = {
        "kprobe": (Probe("kprobe", "udp_send_skb"), Arg("skb", SKB, "arg0")),
        "kfunc": (Probe("kfunc", "udp_send_skb"), Arg("skb", None, "args.skb")),
        "tracepoint": (Probe("tracepoint", "net:net_dev_queue"), Arg("skb", SKB, "args.skbaddr")),
    }
    return Entry(
        "ktrace",
        "udp_send_skb: kernel stacks, skb->hash values and skb->len histogram of one process",
        {
            attach: ProbeSpec(probe, maps, (arg,), workload_pid=True)
            for attach, (probe, arg) in specs.items()
        },
        [
            "{python}",
            "{workloads}/udp_send.py",
            "--no-wait",
            "--count",
            "{count}",
            "--sizes",
            "{sizes}",
        ],
    )


def _syscalls() -> Entry:
    maps = (Agg("@calls", "count", keys=("comm",)), Agg("@stacks", "count", keys=("kstack",)))
    spec = ProbeSpec(Probe("tracepoint", "syscalls:sys_enter_getppid"), maps, workload_pid=True)
    return Entry(
        "syscalls",
        "getppid() system calls of one process, by comm and kernel stack",
        {"tracepoint": spec},
        ["{python}", "{workloads}/syscall_loop.py", "--count", "{count}"],
    )


ENTRIES: dict[str, Callable[[], Entry]] = {"ktrace": _ktrace, "syscalls": _syscalls}


def names() -> list[str]:
    return sorted(ENTRIES)


def get(name: str) -> Entry:
    try:
        return ENTRIES[name]()
    except KeyError:
        raise UsageError(
            f"no catalog entry named {name!r}",
            f"known: {', '.join(names())}; or give a probe such as kprobe:udp_send_skb",
        ) from None
