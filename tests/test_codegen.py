"""Specs, the one-line spec syntax, and codegen; every generated program is checked by bpftrace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from spec_lines import line

from harness.errors import UsageError
from harness.host.capabilities import bpftrace_version
from harness.host.parsed import run_bpftrace
from harness.host.runner import classify
from harness.host.symbols import Kallsyms, probe_symbol
from harness.spec import catalog, codegen
from harness.spec.model import Agg, Probe

REPO = Path(__file__).resolve().parent.parent


KTRACE_KPROBE = """BEGIN { printf("MK\\n"); }
kprobe:udp_send_skb /pid == 42/
{
  @stacks[kstack] = count();
  @hash[((struct sk_buff *)arg0)->hash] = count();
  @len = hist(((struct sk_buff *)arg0)->len);
}
"""


def test_ktrace_kprobe_program_is_the_seed_probe() -> None:
    spec = catalog.get("ktrace").equivalents["kprobe"]
    assert codegen.generate(spec, "kprobe", (0, 17, 0), "MK", pid=42) == KTRACE_KPROBE
    assert spec.key_names() == {"@stacks": ["kstack"], "@hash": ["hash"], "@len": []}
    assert [spec.value_kind(m) for m in ("@stacks", "@hash", "@len")] == ["int", "int", "hist"]


def test_args_syntax_follows_the_bpftrace_version() -> None:
    entry = catalog.get("ktrace")
    tp, kf = entry.equivalents["tracepoint"], entry.equivalents["kfunc"]
    assert "((struct sk_buff *)args->skbaddr)->len" in codegen.generate(tp, None, (0, 17, 0), pid=1)
    assert "((struct sk_buff *)args.skbaddr)->len" in codegen.generate(tp, None, (0, 23, 0), pid=1)
    assert "hist(args->skb->len)" in codegen.generate(kf, None, (0, 17, 0), pid=1)
    assert "hist(args.skb->len)" in codegen.generate(kf, None, (0, 23, 0), pid=1)


def test_every_entry_has_the_same_maps_on_every_attach_type() -> None:
    for name in catalog.names():
        specs = list(catalog.get(name).equivalents.values())
        assert all(s.key_names() == specs[0].key_names() for s in specs)


def test_clone_symbols_are_resolved() -> None:
    kallsyms = "ffff0001 t udp_send_skb.isra.0\nffff0002 T udp_sendmsg\nffff0003 t x.cold\n"
    assert Kallsyms(kallsyms).resolve("udp_send_skb") == "udp_send_skb.isra.0"
    assert Kallsyms(kallsyms).resolve("udp_sendmsg") == "udp_sendmsg"
    with pytest.raises(UsageError, match="not in /proc/kallsyms"):
        Kallsyms(kallsyms).resolve("nope")
    spec = catalog.get("ktrace").equivalents["kprobe"]
    assert "kprobe:udp_send_skb.isra.0 /" in codegen.generate(
        spec, symbol="udp_send_skb.isra.0", pid=1
    )


def test_version_parsing() -> None:
    from harness.host.bpftrace_versions import parse_version

    assert parse_version("bpftrace v0.17.0") == (0, 17, 0)
    assert parse_version("bpftrace v0.23.2-1") == (0, 23, 2)
    assert parse_version("no version here") == (0, 0, 0)


def test_specline_builds_maps_filters_and_args() -> None:
    spec = line(
        "kprobe:udp_send_skb",
        "--arg",
        "skb=struct sk_buff *",
        "--count-by",
        "kstack",
        "--lhist",
        "skb->len:0:2000:100",
        "--by",
        "comm",
        "--filter",
        "skb->len > 100",
        "--comm",
        "python3",
    )
    text = codegen.generate(spec, None, (0, 17, 0), "MK")
    assert '/comm == "python3" && (((struct sk_buff *)arg0)->len > 100)/' in text
    assert "@lhist[comm] = lhist(((struct sk_buff *)arg0)->len, 0, 2000, 100);" in text
    assert spec.key_names() == {"@count": ["kstack"], "@lhist": ["comm"]}


def test_specline_errors_are_one_line() -> None:
    cases = [
        (("kprobe",), "not a probe"),
        (("tracepoint:net_dev_queue",), "tracepoint needs CATEGORY:NAME"),
        (("kprobe:f", "--arg", "skb"), "bad --arg"),
        (("kprobe:f", "--lhist", "x:0:10"), "bad --lhist"),
        (("kprobe:f", "--lhist", "x:10:0:1"), "bad lhist range"),
    ]
    for argv, message in cases:
        with pytest.raises(UsageError, match=message) as info:
            line(*argv)
        assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match="needs a value expression"):
        Agg("@s", "sum")
    with pytest.raises(UsageError, match="workload's pid but no workload"):
        codegen.generate(catalog.get("ktrace").equivalents["tracepoint"])


def test_unknown_catalog_name_lists_known_ones() -> None:
    with pytest.raises(UsageError, match="known: ktrace, offcpu, profile, syscalls"):
        catalog.get("nope")
    assert Probe.parse("fentry:vfs_read") == Probe("kfunc", "vfs_read")


def dry_run(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """bpftrace compiles the program to an ELF without attaching (works without kprobes)."""
    return subprocess.run(
        ["bpftrace", "--emit-elf", str(tmp_path / "p.elf"), "-e", text],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.usefixtures("needs_bpf")
@pytest.mark.parametrize("attach", ["kprobe", "tracepoint"])
def test_bpftrace_compiles_every_ktrace_program(attach: str, tmp_path: Path) -> None:
    """bpftrace's own dry run (--emit-elf) type-checks the program against this kernel's BTF."""
    spec = catalog.get("ktrace").equivalents[attach]
    text = codegen.generate(spec, attach, bpftrace_version(), "MK", pid=1)
    done = dry_run(text, tmp_path)
    assert classify(done.stderr, text) is None, done.stderr
    assert (tmp_path / "p.elf").stat().st_size > 0


@pytest.mark.usefixtures("needs_bpf")
def test_dry_run_catches_a_field_typo(tmp_path: Path) -> None:
    spec = line("kprobe:udp_send_skb", "--arg", "skb=struct sk_buff *", "--collect", "skb->hashh")
    text = codegen.generate(spec, None, bpftrace_version(), "MK")
    done = dry_run(text, tmp_path)
    assert "does not contain a field named 'hashh'" in done.stderr


@pytest.mark.usefixtures("needs_bpf")
def test_specline_tracepoint_program_runs_with_exact_counts() -> None:
    # UDP sockets' packets only, as the catalog's ktrace does: net_dev_queue also queues other
    # sockets' packets (TCP ACKs of other tests' ssh) while the workload's pid is current
    spec = line(
        "tracepoint:net:net_dev_queue",
        "--arg",
        "skbaddr=struct sk_buff *",
        "--filter",
        "skbaddr->sk->sk_protocol == 17",
        "--count-by",
        "comm",
        "--hist",
        "args.len",
        "--workload-pid",
    )
    version = bpftrace_version()
    n = 15
    result = run_bpftrace(
        lambda pid: codegen.generate(spec, None, version, "SPECLINE_MK", pid=pid),
        "SPECLINE_MK",
        workload=[
            sys.executable,
            str(REPO / "harness/workloads/udp_send.py"),
            "--no-wait",
            "--count",
            str(n),
            "--sizes",
            "500",
        ],
    )
    assert result.error is None, result.error
    from harness.output.frames import to_frames

    frames = to_frames(result.output, spec.key_names())
    assert frames["@count"]["value"].sum() == n
    hist = frames["@hist"]
    assert hist[hist["count"] > 0][["lo", "hi", "count"]].values.tolist() == [[512, 1024, n]]


def test_names_resolve_as_a_reading_of_the_whole_table_does() -> None:
    """Kallsyms.resolve searches the text for the name instead of sorting the table: on this
    kernel's table (and one with a data symbol, a module's and odd spacing), every name, clone
    or not, resolves as a line-by-line reading of the whole table says."""
    text = Path("/proc/kallsyms").read_text() + (
        "ffff0009 d udp_data_only\nffff000a t  spaced_fn\t[mod]\nffff000b t spaced_fn.part.0\n"
        "ffff000c T clone_only.isra.0 [mod]\nffff000d t clone_only.cold\n")
    names = [p[2] for p in map(str.split, text.splitlines()) if len(p) >= 3 and p[1] in "tTwW"]
    table = Kallsyms(text)
    import collections
    import random

    wanted = [*random.Random(21).sample(names, 200),
              "udp_send_skb", "udp_data_only", "spaced_fn", "clone_only", "no_such_function"]
    known, clones_of = set(names), collections.defaultdict(list)
    for n in names:  # a dotless name's clones: the names of its first part with a suffix
        if "." in n and not n.endswith(".cold"):
            clones_of[n.split(".")[0]].append(n)
    for name in {n.split(".")[0] for n in wanted}:
        clones = sorted(clones_of[name])
        expected = name if name in known else clones[0] if clones else None
        if expected is None:
            with pytest.raises(UsageError):
                table.resolve(name)
        else:
            assert table.resolve(name) == expected, name
    assert table and not Kallsyms("") and not Kallsyms("ffff0009 d udp_data_only\n")


def test_probe_symbol_only_for_kernel_function_probes() -> None:
    entry = catalog.get("ktrace")
    table = Kallsyms("ffff0001 t udp_send_skb.constprop.0\nffff0002 T udp_sendmsg\n")
    assert probe_symbol(entry.equivalents["tracepoint"], table) is None
    assert probe_symbol(entry.equivalents["kprobe"], table) == "udp_send_skb.constprop.0"
    assert probe_symbol(entry.equivalents["kfunc"], Kallsyms("")) == "udp_send_skb"  # unreadable
