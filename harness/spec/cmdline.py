"""One command line -> ProbeSpec, in the spirit of BCC's stackcount, funccount and argdist.

    harness run kprobe:udp_send_skb --arg skb='struct sk_buff *' --count-by kstack
    harness run tracepoint:net:net_dev_queue --hist args.len --by comm --filter 'args.len > 100'
    harness run kprobe:udp_send_skb --arg skb='struct sk_buff *' --collect skb->hash

Arguments of kprobes/uprobes are bound to registers in order (`--arg` N binds argN-1); for kfunc
and tracepoints write `args.FIELD` (codegen emits `args->FIELD` for older bpftrace).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from harness.errors import UsageError
from harness.spec.keys import BUILTIN_KEYS

if TYPE_CHECKING:  # the model (and its expression grammar) loads only when a spec is built
    from harness.spec.model import Arg, Probe, ProbeSpec

VALUE_FUNCS = ("sum", "avg", "min", "max", "stats", "hist", "collect")
VALUE_HELP = {
    "sum": "sum of EXPR over the events, e.g. skb->len (a map @sum)",
    "avg": "integer average of EXPR (a map @avg)",
    "min": "smallest EXPR seen (a map @min)",
    "max": "largest EXPR seen (a map @max)",
    "stats": "count, average and total of EXPR (a map @stats)",
    "hist": "power-of-two histogram of EXPR (a map @hist)",
    "collect": "how often each value of EXPR occurs, e.g. skb->hash (a map @collect)",
}


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("probe spec (when TARGET is a probe)")
    g.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="NAME=TYPE",
        help="name and C type of the next argument, e.g. skb='struct sk_buff *'",
    )
    g.add_argument(
        "--count-by",
        action="append",
        default=[],
        metavar="KEY",
        help=f"count events by KEY ({', '.join(BUILTIN_KEYS[:6])}, or an expression)",
    )
    for func in VALUE_FUNCS:
        g.add_argument(f"--{func}", action="append", default=[], metavar="EXPR",
                       help=VALUE_HELP[func])
    g.add_argument("--lhist", action="append", default=[], metavar="EXPR:MIN:MAX:STEP",
                   help="linear histogram of EXPR in STEP-wide buckets, e.g. skb->len:0:2000:100")
    g.add_argument("--by", action="append", default=[], metavar="KEY",
                   help="keys of the value maps above, e.g. --by comm or --by comm,kstack")
    g.add_argument("--filter", action="append", default=[], metavar="PRED",
                   help="only events where PRED holds, e.g. 'skb->len > 100' (repeat to AND)")
    g.add_argument("-p", "--pid", type=int, help="only events of this process id")
    g.add_argument("--comm", help="only events of this command name (as in /proc/PID/comm)")
    g.add_argument("--cgroup", help="only events in this cgroup (path under /sys/fs/cgroup)")
    g.add_argument(
        "--workload-pid", action="store_true", help="only the workload's pid (needs --workload)"
    )


def _args(probe: Probe, items: list[str]) -> tuple[Arg, ...]:
    from harness.spec.model import Arg

    out = []
    for i, item in enumerate(items):
        name, sep, ctype = item.partition("=")
        if not sep or not name.isidentifier() or not ctype.strip():
            raise UsageError(f"bad --arg {item!r}", "write NAME=TYPE, e.g. skb='struct sk_buff *'")
        typed = probe.kind in ("kfunc", "kretfunc", "tracepoint")
        source = f"args.{name}" if typed else f"arg{i}"
        out.append(Arg(name, ctype.strip(), source))
    return tuple(out)


def _lhist(item: str) -> tuple[str, tuple[int, int, int]]:
    expr, *bounds = item.rsplit(":", 3)
    try:
        lo, hi, step = (int(b) for b in bounds)
    except ValueError:
        raise UsageError(
            f"bad --lhist {item!r}", "write EXPR:MIN:MAX:STEP, e.g. skb->len:0:2000:100"
        ) from None
    return expr, (lo, hi, step)


def split_keys(items: list[str]) -> tuple[str, ...]:
    """`--count-by ustack,kstack` (and repeated flags) -> one key per part.

    Commas inside parentheses, brackets or string literals belong to the expression.
    """
    keys: list[str] = []
    for item in items:
        depth, quote, start = 0, "", 0
        for i, ch in enumerate(item):
            if quote:
                quote = "" if ch == quote and item[i - 1] != "\\" else quote
            elif ch in "\"'":
                quote = ch
            elif ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif ch == "," and depth == 0:
                keys.append(item[start:i].strip())
                start = i + 1
        keys.append(item[start:].strip())
    if any(not k for k in keys):
        raise UsageError(f"empty key in {', '.join(items)!r}",
                         "separate keys with one comma, e.g. --count-by comm,kstack")
    return tuple(keys)


def spec_from_args(probe_text: str, args: argparse.Namespace) -> ProbeSpec:
    """Build the spec a command line asks for; every map gets a name from its function."""
    from harness.spec.model import Agg, Probe, ProbeSpec

    probe = Probe.parse(probe_text)
    by = split_keys(args.by)
    aggs: list[Agg] = []
    if args.count_by:
        aggs.append(Agg("@count", "count", keys=split_keys(args.count_by)))
    for func in VALUE_FUNCS:
        for i, expr in enumerate(getattr(args, func)):
            name = f"@{func}" if i == 0 else f"@{func}{i + 1}"
            aggs.append(Agg(name, func, value=expr, keys=() if func == "collect" else by))
    for i, item in enumerate(args.lhist):
        expr, bounds = _lhist(item)
        aggs.append(Agg(f"@lhist{i + 1 if i else ''}", "lhist", value=expr, keys=by, lhist=bounds))
    if not aggs:
        aggs.append(Agg("@count", "count", keys=by))
    return ProbeSpec(
        probe,
        tuple(aggs),
        _args(probe, args.arg),
        predicates=tuple(args.filter),
        pid=args.pid,
        workload_pid=args.workload_pid,
        comm=args.comm,
        cgroup=args.cgroup,
    )
