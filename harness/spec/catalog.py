"""Built-in probes, each with its equivalents per attach type and a default workload.

`ktrace` is the CO-RE example's probe. Its maps and shapes are the same whichever attach type the
kernel allows: kprobe:udp_send_skb where kprobes exist, kfunc:udp_send_skb where fentry works, and
the net:net_dev_queue tracepoint (which sees the same loopback sends, udp_send_skb in its stack)
where neither does. The tracepoint sees every packet a device queues, and a packet queued in a
softirq (a TCP ACK of another connection) lands on whichever process is current: measured here
with ssh traffic beside the workload, two TCP packets of other connections under the workload
pid, so that equivalent also keeps to packets of UDP sockets (`skb->sk->sk_protocol`), which is
what udp_send_skb sees.

`profile` and `offcpu` are the two flame graphs of perf and BCC (profile, offcputime): on-CPU
samples and off-CPU time by thread name, user stack and kernel stack. They have no workload of
their own: with one (-c CMD) they watch its process, with -p PID that one, else every CPU.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from harness.errors import UsageError
from harness.paths import WORKLOADS
from harness.spec.model import OFFCPU_PROBE, OFFCPU_US, Agg, Arg, Probe, ProbeSpec

SKB = "struct sk_buff *"
UDP_ONLY = "skb->sk->sk_protocol == 17"  # IPPROTO_UDP: net_dev_queue also queues other sockets'


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
    only = {"tracepoint": (UDP_ONLY,)}
    return Entry(
        "ktrace",
        "udp_send_skb: kernel stacks, skb->hash values and skb->len histogram of one process",
        {
            attach: ProbeSpec(probe, maps, (arg,), only.get(attach, ()), workload_pid=True)
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


# The keys of both profiles: the thread's name, then its stacks, user first (folded root first).
PROFILE_KEYS = ("comm", "ustack", "kstack")
DEFAULT_HZ = 99  # off the 100 Hz of timers, so samples do not march in step with them


def _profile(hz: int = DEFAULT_HZ) -> Entry:
    spec = ProbeSpec(
        Probe("profile", f"hz:{hz}"),
        (Agg("@profile", "count", keys=PROFILE_KEYS),),
        workload_pid=True,
    )
    return Entry(
        "profile",
        f"on-CPU samples at {hz} Hz by thread name, user and kernel stack (a CPU flame graph)",
        {"profile": spec},
        None,
    )


def _offcpu() -> Entry:
    spec = ProbeSpec(
        Probe(*OFFCPU_PROBE),
        (Agg("@offcpu", "sum", value=OFFCPU_US, keys=PROFILE_KEYS),),
        workload_pid=True,
        offcpu=True,
    )
    return Entry(
        "offcpu",
        "off-CPU time (us) by thread name and the user and kernel stack it blocked in",
        {"tracepoint": spec},
        None,
    )


ENTRIES: dict[str, Callable[[], Entry]] = {
    "ktrace": _ktrace, "syscalls": _syscalls, "profile": _profile, "offcpu": _offcpu,
}


def names() -> list[str]:
    return sorted(ENTRIES)


def get(name: str, *, hz: int | None = None) -> Entry:
    """The entry called `name`; `hz` is profile's sampling rate (-F)."""
    if name not in ENTRIES:
        raise UsageError(
            f"no catalog entry named {name!r}",
            f"known: {', '.join(names())}; or give a probe such as kprobe:udp_send_skb",
        )
    if hz is None:
        return ENTRIES[name]()
    if name != "profile":
        raise UsageError(f"-F/--frequency samples with `profile`, not {name}",
                         f"drop -F, or run `harness run profile -F {hz}`")
    if not 0 < hz <= 10_000:
        raise UsageError(f"bad -F {hz}", "sample at 1 to 10000 Hz (perf and BCC use 49-999)")
    return _profile(hz)
